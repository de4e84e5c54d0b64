#!/usr/bin/env bash
# The host's side of the Ansible scenario (started by tests/vm/run once the guest says
# READY): the example playbook of packaging/ansible, run over SSH against the VM, as an
# operator would. Prints PASS/FAIL lines. Environment: VM_SSH_PORT, VM_SSH_KEY, VM_DEB.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=$(mktemp -d /tmp/forksafe-ansible.XXXXXX)
# Ansible looks for a relative src: in the role's directories: give it the file itself.
VM_DEB=$(realpath "$VM_DEB")
trap 'rm -rf "$work"' EXIT

check() { # check WHAT COMMAND...
    local what=$1
    shift
    if out=$("$@" 2>&1); then echo "PASS A $what"; else echo "FAIL A $what"; echo "$out" | tail -n 20 | sed 's/^/    | /'; fi
}

ssh_opts=(-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=ERROR -i "$VM_SSH_KEY" -p "$VM_SSH_PORT")
vm() { ssh "${ssh_opts[@]}" root@127.0.0.1 "$@"; }
cat >"$work/inventory.ini" <<EOF2
[redis]
vm ansible_host=127.0.0.1 ansible_port=$VM_SSH_PORT ansible_user=root ansible_ssh_private_key_file=$VM_SSH_KEY ansible_python_interpreter=/usr/bin/python3
EOF2
export ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=0 \
    ANSIBLE_ROLES_PATH="$repo/packaging/ansible/roles" ANSIBLE_TIMEOUT=60 \
    ANSIBLE_SSH_ARGS="-o UserKnownHostsFile=/dev/null -o ControlMaster=auto -o ControlPersist=120s"
play() { # play LOG ARGS...
    local log=$1
    shift
    ansible-playbook -i "$work/inventory.ini" "$repo/packaging/ansible/playbook.yml" \
        -e "forksafe_package_file=$VM_DEB" "$@" >"$work/$log" 2>&1
}
recap() { sed -n 's/.*changed=\([0-9]*\).*failed=\([0-9]*\).*/changed=\1 failed=\2/p' "$work/$1" | tail -n1; }
show() { echo "INFO ansible $1: $(recap "$1")"; }

check "the guest answers over SSH" vm true

play run1.log
rc=$?
show run1.log
check "the example playbook installs the .deb and succeeds" sh -c "[ $rc = 0 ] && grep -q 'changed=[1-9]' $work/run1.log"
check "forksafe runs in the guest, the knobs are right" vm 'systemctl is-active forksafe && forksafe check'

play run2.log
rc=$?
show run2.log
check "a second run changes nothing" sh -c "[ $rc = 0 ] && grep -q 'changed=0 .*failed=0' $work/run2.log"

play check.log --check --diff -e forksafe_thp_defrag=madvise
rc=$?
show check.log
check "--check --diff after changing a variable shows the config diff" sh -c \
    "[ $rc = 0 ] && grep -q '^-\"kernel/mm/transparent_hugepage/defrag\" = \"never\"' $work/check.log && grep -q '^+\"kernel/mm/transparent_hugepage/defrag\" = \"madvise\"' $work/check.log"
check "... and changes nothing on the guest" vm \
    'grep -q "defrag\" = \"never\"" /etc/forksafe/forksafe.toml && grep -q "\[never\]" /sys/kernel/mm/transparent_hugepage/defrag'

play run3.log -e forksafe_thp_defrag=madvise
rc=$?
show run3.log
check "a real run with the new variable applies it" sh -c "[ $rc = 0 ] && grep -q 'changed=[1-9]' $work/run3.log"
check "... the reload handler ran" grep -q 'RUNNING HANDLER \[forksafe : Reload forksafe\]' "$work/run3.log"
check "... and the daemon enforces it" vm 'grep -q "\[madvise\]" /sys/kernel/mm/transparent_hugepage/defrag'
check "... and the verify step passed" grep -q 'TASK \[forksafe : Ask forksafe whether every knob is in spec' "$work/run3.log"

vm 'echo "vm.overcommit_memory = 0" >/etc/sysctl.d/zz-override.conf'
play run4.log -e forksafe_thp_defrag=madvise
rc=$?
show run4.log
check "a play against a guest where another sysctl.d file overrides overcommit fails" [ "$rc" != 0 ]
check "... naming that file" grep -q 'vm.overcommit_memory is boot-drift (wanted 1, now 1): overridden by /etc/sysctl.d/zz-override.conf:1 (sets 0)' "$work/run4.log"
grep -h -m1 'forksafe: vm.overcommit_memory' "$work/run4.log" | sed 's/^/INFO the failure says: /' | cut -c1-300
vm 'rm -f /etc/sysctl.d/zz-override.conf'

mkdir -p "$repo/target/vm/ansible" && cp "$work"/*.log "$repo/target/vm/ansible/" 2>/dev/null
vm 'touch /root/done' || true
