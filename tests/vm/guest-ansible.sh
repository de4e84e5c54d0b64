#!/bin/sh
# The Ansible scenario, inside the test VM: make the guest reachable over SSH with the
# run's throwaway key, say READY, and wait while tests/vm/host-ansible.sh drives the
# forksafe role from the host; it touches /root/done when it is finished.
set -u

. /payload/guest-lib.sh

say "INFO ansible scenario, boot $boot: $(uname -r), $RELEASE"
# The apt module needs python3-apt; the guest is offline, so it comes on the payload.
check 0 "python3-apt installs from the payload" apt-get install -y -q --no-install-recommends /payload/deps/*.deb
mkdir -p /root/.ssh && chmod 700 /root/.ssh
cp /payload/authorized_keys /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys
check 0 "sshd is active" systemctl is-active ssh.service
check 0 "the guest has its address on QEMU's user network" sh -c 'ip -4 addr | grep -q 10.0.2.15'
say "READY ssh"
i=0
while [ ! -e /root/done ] && [ "$i" -lt 2400 ]; do sleep 1; i=$((i + 1)); done
check 0 "the host finished its part" [ -e /root/done ]
finish poweroff
