#!/bin/sh
# The Ansible scenario, inside the test VM: make the guest reachable over SSH with the
# run's throwaway key (as root, for the host's probes, and as "admin", an ordinary user
# with sudo, as which the play logs in), offer the .deb from a local apt repository, say
# READY, and wait while tests/vm/host-ansible.sh drives the forksafe role from the host;
# it touches /root/done when it is finished.
set -u

. /payload/guest-lib.sh

say "INFO ansible scenario, boot $boot: $(uname -r), $RELEASE"
# The guest is offline, and the image's lists of the whole Debian archive are of no use to
# it; left in place, apt would first build its cache from them (minutes under TCG), here
# and again when the play's apt module opens it. Without them, apt knows what dpkg has.
rm -f /var/lib/apt/lists/*_Packages /var/lib/apt/lists/*Release* /var/cache/apt/*.bin
# The apt module needs python3-apt, the login user sudo; they come on the payload, with
# exactly the dependencies the image lacks.
t=$(date +%s)
check 0 "python3-apt and sudo install from the payload" dpkg -i /payload/deps/*.deb
say "INFO the payload's packages took $(($(date +%s) - t))s to install"
mkdir -p /root/.ssh && chmod 700 /root/.ssh
cp /payload/authorized_keys /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys
# The play's login: an ordinary user, key-based, with sudo (as on a fleet's hosts). sudo
# looks its host name up: Debian's installer puts it in /etc/hosts, debootstrap does not, and
# without it every become waits 20 s for a DNS server the offline guest cannot reach.
grep -qs "[[:space:]]$(hostname)\$" /etc/hosts || echo "127.0.1.1	$(hostname)" >>/etc/hosts
useradd --create-home --shell /bin/bash admin
install -d -m 700 -o admin -g admin /home/admin/.ssh
install -m 600 -o admin -g admin /payload/authorized_keys /home/admin/.ssh/authorized_keys
echo 'admin ALL=(ALL) NOPASSWD: ALL' >/etc/sudoers.d/admin && chmod 440 /etc/sudoers.d/admin
check 0 "admin is not root and may sudo without a password" su admin -c 'test "$(id -u)" != 0 && sudo -n true'
# forksafe from a repository as well (the role's other install branch): the payload's flat
# repository, and apt's lists refreshed for it alone (the guest cannot reach the mirror).
echo 'deb [trusted=yes] file:/payload/repo ./' >/etc/apt/sources.list.d/forksafe-local.list
check 0 "apt knows forksafe from the local repository" sh -c 'apt-get update -q \
    -o Dir::Etc::SourceList=/etc/apt/sources.list.d/forksafe-local.list \
    -o Dir::Etc::SourceParts=- -o APT::Get::List-Cleanup=0 && apt-cache policy forksafe | grep -q file:/payload/repo'
check 0 "sshd is active" systemctl is-active ssh.service
check 0 "the guest has its address on QEMU's user network" sh -c 'ip -4 addr | grep -q 10.0.2.15'
say "INFO the guest's knobs before: overcommit $(cat /proc/sys/vm/overcommit_memory), THP $(sel $THP/enabled)/$(sel $THP/defrag), somaxconn $(cat /proc/sys/net/core/somaxconn)"
say "READY ssh"
i=0
while [ ! -e /root/done ] && [ "$i" -lt 2400 ]; do sleep 1; i=$((i + 1)); done
check 0 "the host finished its part" [ -e /root/done ]
finish poweroff
