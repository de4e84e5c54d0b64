#!/usr/bin/env bash
# The host's side of the Ansible scenario (started by tests/vm/run once the guest says
# READY): the example playbook of packaging/ansible, with its ansible.cfg, run over SSH
# against the VM as a fleet operator would: logged in as "admin", an ordinary user with
# sudo, the play becoming root. In order:
#   A1 a dry run (--check) on the fresh host, from the repositories, with a value forksafe
#      refuses: validated by the repository's forksafe, refused, nothing changed;
#   A2 a dry run (--check --diff) on the fresh host, from the package file: succeeds,
#      shows the config to come, nothing changed;
#   A3 the install in audit mode: the kernel values untouched and no drop-in, from the
#      daemon's first start on;
#   A4 --tags forksafe_verify on that drifted host, with a sysctl.d override: fails naming
#      the knob and the file, changes nothing;
#   A5 a net knob without the unit override: validate accepts it, the daemon refuses the
#      reload, the previous config goes back, the play fails saying why;
#   A6 the net knob with forksafe_unit_overrides, in repair mode: the host's value is set;
#   A7 a second run: changed=0;
#   A8 an enabled unit that keeps setting overcommit back: --tags forksafe_verify warns,
#      naming it (SOURCE);
#   A9 the unit override dropped, the net knob kept: the restart is refused, the previous
#      unit drop-in and config go back, forksafe runs again, the play fails saying why.
# Prints PASS/FAIL/INFO lines. Environment: VM_SSH_PORT, VM_SSH_KEY, VM_DEB.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=$(mktemp -d /tmp/forksafe-ansible.XXXXXX)
# The role takes the package file's absolute path (a relative one is looked up in the role).
VM_DEB=$(realpath "$VM_DEB")
trap 'rm -rf "$work"' EXIT

check() { # check WHAT COMMAND...
    local what=$1
    shift
    if out=$("$@" 2>&1); then echo "PASS A $what"; else echo "FAIL A $what"; echo "$out" | tail -n 20 | sed 's/^/    | /'; fi
}

ssh_opts=(-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=ERROR -i "$VM_SSH_KEY" -p "$VM_SSH_PORT")
# The test's own probes log in as root; the play never does.
vm() { ssh "${ssh_opts[@]}" root@127.0.0.1 "$@"; }
cat >"$work/inventory.ini" <<EOF
[redis]
vm ansible_host=127.0.0.1 ansible_port=$VM_SSH_PORT ansible_user=admin ansible_ssh_private_key_file=$VM_SSH_KEY ansible_python_interpreter=/usr/bin/python3
EOF
export ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=0 ANSIBLE_TIMEOUT=60 \
    ANSIBLE_SSH_ARGS="-o UserKnownHostsFile=/dev/null -o ControlMaster=auto -o ControlPersist=120s"
play() { # play LOG ARGS...: the example playbook, from its directory (its ansible.cfg)
    local log=$1 start=$SECONDS rc
    shift
    (cd "$repo/packaging/ansible" && ansible-playbook -i "$work/inventory.ini" playbook.yml "$@") >"$work/$log" 2>&1
    rc=$?
    echo "INFO ansible $log: rc=$rc $(recap "$log") in $((SECONDS - start))s"
    return "$rc"
}
recap() { sed -n 's/.*changed=\([0-9]*\).*failed=\([0-9]*\).*/changed=\1 failed=\2/p' "$work/$1" | tail -n1; }
has() { grep -qF -- "$2" "$work/$1"; }   # has LOG TEXT
outcome() { # outcome LOG TASK: what the play said of the task (ok, changed, skipping, fatal)
    awk -v t="TASK [forksafe : $2]" 'index($0, t) == 1 { f = 1; next }
        f && /^(ok|changed|skipping|fatal|failed):/ { sub(/:.*/, ""); print; exit }' "$work/$1"
}
knobs() { vm 'cat /proc/sys/vm/overcommit_memory /sys/kernel/mm/transparent_hugepage/enabled /sys/kernel/mm/transparent_hugepage/defrag | tr "\n" " "'; }
config_sum() { vm 'sha256sum </etc/forksafe/forksafe.toml'; }
same_knobs() { [ "$(knobs)" = "$knobs_before" ]; }
# Nothing of forksafe on the guest: no package, config, cached package, unit drop-in,
# staging directory left in /tmp, and the knobs as before.
untouched() {
    vm '! dpkg -s forksafe >/dev/null 2>&1 && [ ! -e /etc/forksafe ] && ! ls /var/cache/forksafe* 2>/dev/null &&
        [ ! -e /etc/systemd/system/forksafe.service.d ] && ! ls -d /tmp/*.forksafe 2>/dev/null' &&
        same_knobs
}

check "the guest answers over SSH as admin, who is not root and may sudo" \
    ssh "${ssh_opts[@]}" admin@127.0.0.1 'test "$(id -u)" != 0 && sudo -n true'
knobs_before=$(knobs)
echo "INFO the guest's knobs before: $knobs_before"

# ------------------------------------------------------------------ the variables
cat >"$work/audit.yml" <<EOF
forksafe_package_file: $VM_DEB
forksafe_repair: false
# In audit mode the knobs stay as they are, so the check would fail the install; A4 is the
# audit.
forksafe_verify: false
EOF
cat >"$work/refused.yml" <<'EOF'
forksafe_package_file: ""
forksafe_extra_sysctls:
  vm.overcommit_ratio: "01"
EOF
cat >"$work/net-refused.yml" <<EOF
forksafe_package_file: $VM_DEB
forksafe_repair: false
forksafe_verify: false
forksafe_extra_sysctls:
  net.core.somaxconn: 8192
EOF
cat >"$work/net.yml" <<EOF
forksafe_package_file: $VM_DEB
forksafe_extra_sysctls:
  net.core.somaxconn: 8192
forksafe_unit_overrides:
  PrivateNetwork: false
  ReadWritePaths: /proc/sys/net
  BindReadOnlyPaths: /proc/sys/net:/run/forksafe/host/proc/sys/net
EOF
cat >"$work/net-no-override.yml" <<EOF
forksafe_package_file: $VM_DEB
forksafe_extra_sysctls:
  net.core.somaxconn: 8192
EOF

# ------------------------------------------------------------------ A1
play a1-check-refused.log --check -e @"$work/refused.yml"
rc=$?
check "A1 --check on the fresh host with a value forksafe refuses fails" [ "$rc" != 0 ]
from_repository() {
    [ "$(outcome a1-check-refused.log 'Download the package from the repositories to the staging directory (Debian family)')" = ok ] &&
        [ "$(outcome a1-check-refused.log 'Unpack the package into the staging directory, to validate with its forksafe (Debian family)')" = ok ]
}
check "... validated by forksafe from the repository's package, downloaded and unpacked" from_repository
check "... the failure names the line and why" \
    grep -q 'forksafe refuses the config .*/etc/forksafe/forksafe.toml:[0-9]*: vm.overcommit_ratio: \\"01\\" is not a canonical integer' "$work/a1-check-refused.log"
check "... and nothing changed on the guest" untouched

# ------------------------------------------------------------------ A2
play a2-check-fresh.log --check --diff -e @"$work/audit.yml"
rc=$?
check "A2 --check --diff on the fresh host succeeds" [ "$rc" = 0 ]
check "... shows the config it would write" has a2-check-fresh.log '+repair = false'
check "... and the package it would install" \
    test "$(outcome a2-check-fresh.log 'Install the .deb, keeping the config put in place above')" = changed
check "... validated, in check mode, by the package's forksafe" \
    test "$(outcome a2-check-fresh.log 'Validate it there with forksafe, as root')" = ok
check "... and nothing changed on the guest" untouched

# ------------------------------------------------------------------ A3
play a3-audit.log -e @"$work/audit.yml"
rc=$?
check "A3 the install in audit mode succeeds" sh -c "[ $rc = 0 ] && grep -q 'changed=[1-9]' $work/a3-audit.log"
check "... forksafe runs, with the role's config (dpkg kept it; the package's is aside)" vm \
    'systemctl is-active forksafe && grep -qx "repair = false" /etc/forksafe/forksafe.toml && [ -e /etc/forksafe/forksafe.toml.dpkg-dist ]'
check "... the kernel values are untouched" same_knobs
check "... no sysctl.d drop-in" vm '[ ! -e /etc/sysctl.d/99-zz-forksafe.conf ]'
# The journal of this boot: drift reported in audit mode, and not one write (an "enforced"
# event that set a value, or a repair).
check "... and from its first start the daemon only reported: drift in audit mode, no write" vm \
    'journalctl -q -o cat MESSAGE_ID=4bf4b112dddc49869689e3085e267f86 | grep -q "overcommit_memory: is 0, expected 1 (audit mode" &&
     ! journalctl -q -o cat MESSAGE_ID=dd25fd83375d42a4b0f8587e746d5112 | grep -q "set to" &&
     [ -z "$(journalctl -q MESSAGE_ID=fd55663f9c5d410482beace9df653b3a)" ]'
sum_audit=$(config_sum)

# ------------------------------------------------------------------ A4
vm 'echo "vm.overcommit_memory = 0" >/etc/sysctl.d/zz-override.conf'
play a4-verify-tag.log -e @"$work/audit.yml" -e forksafe_verify=true --tags forksafe_verify
rc=$?
check "A4 --tags forksafe_verify on the drifted host fails" [ "$rc" != 0 ]
check "... naming the knob and the file that overrides it" has a4-verify-tag.log \
    'vm.overcommit_memory is drift (wanted 1, now 0): overridden by /etc/sysctl.d/zz-override.conf:1 (sets 0)'
only_verified() {
    grep -q 'changed=0 ' "$work/a4-verify-tag.log" &&
        ! grep -qE 'TASK \[forksafe : (Install|Put|Copy)' "$work/a4-verify-tag.log" && [ "$(config_sum)" = "$sum_audit" ]
}
check "... having changed nothing (changed=0, no install or config task, the config as it was)" only_verified
grep -h -m1 'forksafe: vm.overcommit_memory' "$work/a4-verify-tag.log" | sed 's/^.*"msg": "/INFO the failure says: /' | cut -c1-300
vm 'rm -f /etc/sysctl.d/zz-override.conf'

# ------------------------------------------------------------------ A5
play a5-refused-reload.log -e @"$work/net-refused.yml"
rc=$?
check "A5 a net knob without the unit override: the play fails" [ "$rc" != 0 ]
check "... at the reload, with the daemon's reason" grep -q \
    "forksafe: 'Reload forksafe for the changed config.*' failed: .*net.core.somaxconn" "$work/a5-refused-reload.log"
check "... pointing at forksafe_unit_overrides where the daemon says systemctl edit" has a5-refused-reload.log \
    '`systemctl restart forksafe` (with this role: forksafe_unit_overrides). The previous config'
check "... saying the previous config is back and forksafe runs it" has a5-refused-reload.log \
    'The previous config and unit drop-in are back in place, and forksafe runs them'
back_to_audit() { [ "$(config_sum)" = "$sum_audit" ] && vm systemctl is-active forksafe; }
check "... and it is: the previous config, forksafe active" back_to_audit
grep -h -m1 "forksafe: 'Reload" "$work/a5-refused-reload.log" | sed 's/^.*"msg": "/INFO the failure says: /' | cut -c1-400

# ------------------------------------------------------------------ A6
# An enabled unit that sets overcommit back, for A8; written now, so that the daemon's start
# below finds it (it scans for such units at start and once a minute).
vm 'cat >/etc/systemd/system/fsfight.service <<EOF
[Unit]
Description=sets vm.overcommit_memory back every 3 s (the forksafe VM test)
[Service]
ExecStart=/bin/sh -c "while :; do echo 0 > /proc/sys/vm/overcommit_memory; sleep 3; done"
[Install]
WantedBy=multi-user.target
EOF
systemctl daemon-reload && systemctl enable fsfight.service 2>/dev/null'
play a6-net.log -e @"$work/net.yml"
rc=$?
check "A6 the net knob with forksafe_unit_overrides, in repair mode: the play succeeds" sh -c \
    "[ $rc = 0 ] && grep -q 'changed=[1-9]' $work/a6-net.log"
check "... the unit runs in the host's network namespace, from the role's drop-in" vm \
    'grep -qx PrivateNetwork=no /etc/systemd/system/forksafe.service.d/50-forksafe-role.conf &&
     systemctl show -p PrivateNetwork forksafe | grep -qx PrivateNetwork=no && systemctl is-active forksafe'
check "... the host's net.core.somaxconn is 8192" vm '[ "$(cat /proc/sys/net/core/somaxconn)" = 8192 ]'
check "... overcommit and THP are set, the drop-in written" vm \
    '[ "$(cat /proc/sys/vm/overcommit_memory)" = 1 ] && grep -q "\[never\]" /sys/kernel/mm/transparent_hugepage/enabled &&
     grep -q "net.core.somaxconn = 8192" /etc/sysctl.d/99-zz-forksafe.conf'
check "... and the verify step ran and passed" \
    test "$(outcome a6-net.log 'Ask forksafe whether every knob is in spec, now and at the next boot')" = ok
sum_net=$(config_sum)

# ------------------------------------------------------------------ A7
play a7-again.log -e @"$work/net.yml"
rc=$?
check "A7 a second run changes nothing" sh -c "[ $rc = 0 ] && grep -q 'changed=0 .*failed=0' $work/a7-again.log"

# ------------------------------------------------------------------ A8
vm 'systemctl start fsfight.service'
contested=$(vm 'for i in $(seq 60); do forksafe check --json | grep -q "\"source\":\"[^\"]*fsfight" && echo yes && break; sleep 1; done')
check "A8 with a unit setting overcommit back, the daemon reports a contested knob and its source" [ "$contested" = yes ]
play a8-contested.log -e @"$work/net.yml" --tags forksafe_verify
echo "INFO (a verify that catches overcommit in the milliseconds before a repair fails; the warning comes first either way)"
check "... --tags forksafe_verify warns, naming the knob and the SOURCE" grep -q \
    'WARNING forksafe: vm.overcommit_memory is contested: .* SOURCE: /etc/systemd/system/fsfight.service:[0-9]* (unit fsfight.service, enabled)' \
    "$work/a8-contested.log"
vm 'systemctl disable --now fsfight.service 2>/dev/null; rm -f /etc/systemd/system/fsfight.service; systemctl daemon-reload'

# ------------------------------------------------------------------ A9
play a9-refused-restart.log -e @"$work/net-no-override.yml"
rc=$?
check "A9 the unit override dropped with the net knob kept: the play fails" [ "$rc" != 0 ]
check "... at the restart, with the daemon's reason" grep -q \
    "forksafe: 'Restart forksafe for the changed unit drop-in' failed: .*net.core.somaxconn" "$work/a9-refused-restart.log"
check "... saying the previous files are back and forksafe runs them" has a9-refused-restart.log \
    'The previous config and unit drop-in are back in place, and forksafe runs them'
back_to_net() {
    [ "$(config_sum)" = "$sum_net" ] && vm 'systemctl is-active forksafe &&
        systemctl show -p PrivateNetwork forksafe | grep -qx PrivateNetwork=no && [ "$(cat /proc/sys/net/core/somaxconn)" = 8192 ]'
}
check "... and they are: the unit drop-in and config back, forksafe active in the host's namespace" back_to_net
grep -h -m1 "forksafe: 'Restart" "$work/a9-refused-restart.log" | sed 's/^.*"msg": "/INFO the failure says: /' | cut -c1-400

mkdir -p "$repo/target/vm/ansible" && cp "$work"/*.log "$repo/target/vm/ansible/" 2>/dev/null
vm 'touch /root/done' || true
