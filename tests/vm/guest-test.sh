#!/bin/sh
# Runs inside the test VM (started by forksafe-vmtest.service from the payload disk).
# Boot 1 installs the .deb and reboots; boot 2 checks the running system and purges.
# Every check prints "PASS n what" or "FAIL n what" to the second serial port.
set -u

. /payload/guest-lib.sh

DROPIN=/etc/sysctl.d/99-zz-forksafe.conf
knobs() { echo "$(cat /proc/sys/vm/overcommit_memory) $(sel $THP/enabled) $(sel $THP/defrag)"; }
is_value() { [ "$(sel "$1")" = "$2" ]; }
knobs_are() { [ "$(knobs)" = "$1" ] || { echo "knobs are '$(knobs)', expected '$1'"; return 1; }; }

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# wait_until MS COMMAND...: retry every 50ms until COMMAND succeeds or MS have passed.
wait_until() {
    limit=$(( $(now_ms) + $1 ))
    shift
    while ! "$@" >/dev/null 2>&1; do
        [ "$(now_ms)" -lt "$limit" ] || { "$@"; return 1; }
        sleep 0.05
    done
}

journal_has() { # journal_has FIELD=VALUE...: a forksafe entry of this boot matches
    [ -n "$(journalctl -b -u forksafe.service -o cat "$@" 2>/dev/null)" ]
}

collect() {
    journalctl -b -u forksafe.service -o json --no-pager >"$OUT/forksafe-boot$boot.json" 2>&1
}

say "INFO boot $boot: $(uname -r), systemd $(systemctl --version | head -n1 | cut -d' ' -f2)"

if [ "$boot" = 1 ]; then
    # ------------------------------------------------------------ 1: install
    # The image is minimal and offline: its missing dependencies come on the payload disk.
    if ls /payload/deps/*.deb >/dev/null 2>&1; then
        check 1 "dependencies from the payload install" dpkg -i /payload/deps/*.deb
    fi
    check 1 "dpkg -i installs the .deb" dpkg -i /payload/forksafe.deb
    check 1 "the unit is enabled" sh -c '[ "$(systemctl is-enabled forksafe.service)" = enabled ]'
    check 1 "the unit is active" sh -c '[ "$(systemctl is-active forksafe.service)" = active ]'
    check 1 "the knobs are set right after install" knobs_are "1 never never"
    check 1 "the drop-in is written" grep -q '^vm.overcommit_memory = 1$' "$DROPIN"
    # A unit ordered after forksafe records the knobs at its own start on the next boot.
    cat >/etc/systemd/system/knobcheck.service <<'EOF'
[Unit]
Description=Record the knobs at start (forksafe VM test)
After=forksafe.service

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "$(cat /proc/sys/vm/overcommit_memory) $(cat /sys/kernel/mm/transparent_hugepage/enabled) $(cat /sys/kernel/mm/transparent_hugepage/defrag)" >/var/lib/knobcheck'

[Install]
WantedBy=multi-user.target
EOF
    systemctl enable knobcheck.service >/dev/null 2>&1
    finish reboot
fi

# ---------------------------------------------------------------- 2: after the reboot
check 2 "PID 1 is systemd" sh -c '[ "$(cat /proc/1/comm)" = systemd ]'
check 2 "forksafe is active after boot" sh -c '[ "$(systemctl is-active forksafe.service)" = active ]'
check 2 "the knobs have the desired values" knobs_are "1 never never"
check 2 "a unit ordered after forksafe saw the knobs already set at its start" \
    sh -c 'v=$(cat /var/lib/knobcheck); echo "recorded: $v"; case "$v" in "1 "*"[never]"*"[never]"*) ;; *) exit 1;; esac'

# ---------------------------------------------------------------- 3: journal and catalog
check 3 "the journal has forksafe's 'enforced' entries with MESSAGE_ID and KNOB" \
    journal_has MESSAGE_ID=dd25fd83375d42a4b0f8587e746d5112 KNOB=vm.overcommit_memory EXPECTED=1
check 3 "journalctl -x shows the catalog text" \
    sh -c 'journalctl -b -x -u forksafe.service --no-pager | grep -q "Subject: forksafe enforced"'

# ---------------------------------------------------------------- 4: drift
drift() { # drift NAME FILE WRONG RIGHT-SELECTED
    name=$1 file=$2 wrong=$3 right=$4
    start=$(now_ms)
    echo "$wrong" >"$file"
    if wait_until 3000 is_value "$file" "$right"; then
        took=$(( $(now_ms) - start ))
        say "INFO drift of $name repaired in ${took}ms"
        check 4 "drift of $name is repaired within 1.5s (${took}ms)" [ "$took" -le 1500 ]
    else
        check 4 "drift of $name is repaired" false
    fi
    check 4 "the repair of $name is in the journal with the old and new value" \
        wait_until 3000 journal_has MESSAGE_ID=fd55663f9c5d410482beace9df653b3a \
        KNOB="$name" OBSERVED="$wrong" EXPECTED="$right"
}
drift vm.overcommit_memory /proc/sys/vm/overcommit_memory 0 1
drift kernel/mm/transparent_hugepage/enabled $THP/enabled always never
drift kernel/mm/transparent_hugepage/defrag $THP/defrag madvise never

# ---------------------------------------------------------------- 5: reload
CONF=/etc/forksafe/forksafe.toml
cp "$CONF" "$STATE/forksafe.toml.orig"
sed -i 's|^"kernel/mm/transparent_hugepage/defrag" = "never"|"kernel/mm/transparent_hugepage/defrag" = "madvise"|' "$CONF"
systemctl reload forksafe.service
check 5 "systemctl reload applies a changed config" wait_until 3000 knobs_are "1 never madvise"
printf '[sysctl]\n"vm.overcommit_memory" = 7\n' >"$CONF"
systemctl reload forksafe.service
sleep 1
check 5 "with a broken config the service stays active" \
    sh -c '[ "$(systemctl is-active forksafe.service)" = active ]'
check 5 "with a broken config the old values stay" knobs_are "1 never madvise"
check 5 "the journal says why the config was rejected" \
    wait_until 3000 journal_has MESSAGE_ID=df099d7d7148455cae35ece8501026a6
cp "$STATE/forksafe.toml.orig" "$CONF"
systemctl reload forksafe.service
check 5 "the restored config is in force again" wait_until 3000 knobs_are "1 never never"

# ---------------------------------------------------------------- 6: sysctl.d
echo "vm.overcommit_memory = 0" >/etc/sysctl.d/zz-test.conf
check 6 "an overriding /etc/sysctl.d/zz-test.conf is reported in the journal" \
    wait_until 5000 journal_has MESSAGE_ID=a9581c4f941e40d19fcb2e72f96de47e FILE=/etc/sysctl.d/zz-test.conf
check 6 "forksafe check reports the override and exits 1" \
    sh -c 'forksafe check; [ $? = 1 ] && forksafe check | grep -q "overridden by /etc/sysctl.d/zz-test.conf:1"'
rm -f /etc/sysctl.d/zz-test.conf
rm -f "$DROPIN"
check 6 "the managed drop-in is rewritten when deleted" \
    wait_until 3000 grep -q '^# Managed by forksafe' "$DROPIN"
check 6 "forksafe check is clean again" forksafe check

# ---------------------------------------------------------------- 7: sandbox score
score=$(systemd-analyze security forksafe.service 2>/dev/null | sed -n 's/.*Overall exposure level for forksafe.service: \([0-9.]*\).*/\1/p')
say "INFO systemd-analyze security forksafe.service: ${score:-?}"
check 7 "systemd-analyze security scores at most 1.0 (${score:-?})" \
    awk -v s="${score:-99}" 'BEGIN { exit !(s <= 1.0) }'

# Room for more scenarios (the Redis acceptance test) before the purge.
if [ -f /payload/guest-extra.sh ]; then . /payload/guest-extra.sh; fi

# ---------------------------------------------------------------- upgrade
# Installing the package again (as an upgrade does) restarts the daemon and keeps it on.
pid_before=$(systemctl show -p MainPID --value forksafe.service)
check 1 "dpkg -i again (upgrade) succeeds" dpkg -i /payload/forksafe.deb
pid_after=$(systemctl show -p MainPID --value forksafe.service)
check 1 "the upgrade restarted the daemon (MainPID $pid_before -> $pid_after) and it is active" \
    sh -c "[ '$pid_before' != '$pid_after' ] && [ \"\$(systemctl is-active forksafe.service)\" = active ]"

# ---------------------------------------------------------------- 8: purge
check 8 "apt-get purge forksafe" apt-get purge -y forksafe
check 8 "the unit is gone" sh -c '! systemctl cat forksafe.service && [ ! -e /usr/lib/systemd/system/forksafe.service ]'
check 8 "the managed drop-in is gone" [ ! -e "$DROPIN" ]
check 8 "nothing of ours is left" \
    sh -c '! dpkg -s forksafe 2>/dev/null | grep -q "^Status: install" && [ ! -e /etc/forksafe ] && [ ! -e /usr/sbin/forksafe ] && [ ! -e /usr/lib/systemd/catalog/forksafe.catalog ]'

finish poweroff
