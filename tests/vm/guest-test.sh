#!/bin/sh
# Runs inside the test VM (started by forksafe-vmtest.service from the payload disk).
# Boot 1 installs the .deb and reboots; boot 2 checks the running system and purges.
# Every check prints "PASS n what" or "FAIL n what" to the second serial port.
set -u

. /payload/guest-lib.sh

DROPIN=/etc/sysctl.d/99-zz-forksafe.conf
CONF=/etc/forksafe/forksafe.toml
knobs() { echo "$(cat /proc/sys/vm/overcommit_memory) $(sel $THP/enabled) $(sel $THP/defrag)"; }
is_value() { [ "$(sel "$1")" = "$2" ]; }
knobs_are() { [ "$(knobs)" = "$1" ] || { echo "knobs are '$(knobs)', expected '$1'"; return 1; }; }
active() { [ "$(systemctl is-active forksafe.service)" = active ]; }

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# wait_until MS COMMAND...: retry every 10ms until COMMAND succeeds or MS have passed.
wait_until() {
    limit=$(( $(now_ms) + $1 ))
    shift
    while ! "$@" >/dev/null 2>&1; do
        [ "$(now_ms)" -lt "$limit" ] || { "$@"; return 1; }
        sleep 0.01
    done
}

journal_has() { # journal_has FIELD=VALUE...: a forksafe entry of this boot matches
    [ -n "$(journalctl -b -u forksafe.service -o cat "$@" 2>/dev/null)" ]
}

collect() {
    journalctl -b -u forksafe.service -o json --no-pager >"$OUT/forksafe-boot$boot.json" 2>&1
}

say "INFO boot $boot: $(uname -r), systemd $(systemctl --version | head -n1 | cut -d' ' -f2), $RELEASE"

if [ "$boot" = 1 ]; then
    # ------------------------------------------------------------ 1: install
    # The image is minimal and offline: its missing dependencies come on the payload disk.
    if ls /payload/deps/*.deb >/dev/null 2>&1; then
        check 1 "dependencies from the payload install" apt-get install -y -q --no-install-recommends /payload/deps/*.deb
    fi
    check 1 "dpkg -i installs the .deb" dpkg -i /payload/forksafe.deb
    # md5sums: an admin can check every installed file against the package.
    check 1 "the package carries md5sums" test -s /var/lib/dpkg/info/forksafe.md5sums
    check 1 "dpkg --verify finds every file as installed" sh -c '[ -z "$(dpkg --verify forksafe)" ]'
    cp /usr/share/doc/forksafe/README.md "$STATE/README.md.orig"
    echo tampered >>/usr/share/doc/forksafe/README.md
    check 1 "... and names a file changed since" sh -c 'dpkg --verify forksafe | grep -q "/usr/share/doc/forksafe/README.md$"'
    cp "$STATE/README.md.orig" /usr/share/doc/forksafe/README.md
    check 1 "the unit is enabled" sh -c '[ "$(systemctl is-enabled forksafe.service)" = enabled ]'
    check 1 "the unit is active" active
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
check 2 "forksafe is active after boot" active
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
    t0=$(date +%s%6N)
    echo "$wrong" >"$file"
    if wait_until 3000 journal_has MESSAGE_ID=fd55663f9c5d410482beace9df653b3a \
        KNOB="$name" OBSERVED="$wrong" EXPECTED="$right"; then
        # The repair's own time: journald's timestamp of its entry (written after the write
        # and its read-back), against the time just before our write.
        t1=$(journalctl -b -u forksafe.service -o export MESSAGE_ID=fd55663f9c5d410482beace9df653b3a \
            KNOB="$name" | sed -n 's/^__REALTIME_TIMESTAMP=//p' | tail -n 1)
        took=$(( (t1 - t0) / 1000 ))
        say "INFO drift of $name repaired ${took}ms after the write (journal timestamp; the poll is every 1s)"
        check 4 "drift of $name is repaired within 1.5s (${took}ms)" [ "$took" -le 1500 ]
        check 4 "... and is right now" is_value "$file" "$right"
    else
        check 4 "the repair of $name is in the journal with the old and new value" false
    fi
}
drift vm.overcommit_memory /proc/sys/vm/overcommit_memory 0 1
drift kernel/mm/transparent_hugepage/enabled $THP/enabled always never
drift kernel/mm/transparent_hugepage/defrag $THP/defrag madvise never

# ---------------------------------------------------------------- 5: reload
cp "$CONF" "$STATE/forksafe.toml.orig"
sed -i 's|^"kernel/mm/transparent_hugepage/defrag" = "never"|"kernel/mm/transparent_hugepage/defrag" = "madvise"|' "$CONF"
check 5 "systemctl reload with a good config succeeds" systemctl reload forksafe.service
# No waiting: systemctl reload returns once the daemon has applied the new config.
check 5 "... and the new config is in force when it returns" knobs_are "1 never madvise"
printf '[sysctl]\n"vm.overcommit_memory" = 7\n' >"$CONF"
systemctl reload forksafe.service >"$OUT/reload-broken.txt" 2>&1
echo "exit $?" >>"$OUT/reload-broken.txt"
check 5 "systemctl reload with a broken config fails" sh -c "! grep -q '^exit 0' $OUT/reload-broken.txt"
check 5 "systemctl status names the file, the line and the reason" \
    sh -c 'systemctl status forksafe.service --no-pager -n 20 | grep -q "forksafe.toml:2: vm.overcommit_memory: \"7\" is not a valid value"'
check 5 "with a broken config the service stays active" active
check 5 "with a broken config the old values stay" knobs_are "1 never madvise"
check 5 "the journal says why the config was rejected" \
    wait_until 3000 journal_has MESSAGE_ID=df099d7d7148455cae35ece8501026a6
cp "$STATE/forksafe.toml.orig" "$CONF"
check 5 "the restored config reloads" systemctl reload forksafe.service
check 5 "the restored config is in force again" knobs_are "1 never never"

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

# ---------------------------------------------------------------- 10: per-size THP
SIZE=$THP/hugepages-2048kB/enabled
PER_SIZE='"kernel/mm/transparent_hugepage/hugepages-2048kB/enabled" = "never"'
if [ -f "$SIZE" ]; then
    # Linux >= 6.8: each size has its own switch, and "always" escapes the global never.
    echo always >"$SIZE"
    forksafe doctor >"$OUT/doctor-per-size.txt" 2>&1
    check 10 "doctor fails thp-per-size, naming hugepages-2048kB" \
        grep -q "^FAIL  thp-per-size .*hugepages-2048kB is always" "$OUT/doctor-per-size.txt"
    sed -i "s|^\"kernel/mm/transparent_hugepage/defrag\" = \"never\"|&\n$PER_SIZE|" "$CONF"
    check 10 "a config with a per-size knob reloads" systemctl reload forksafe.service
    check 10 "... and the size is set to never" is_value "$SIZE" never
    echo always >"$SIZE"
    check 10 "drift of the per-size knob is repaired" wait_until 3000 is_value "$SIZE" never
    forksafe doctor >"$OUT/doctor-per-size-after.txt" 2>&1
    check 10 "doctor is fine with per-size THP again" grep -q "^ok    thp-per-size" "$OUT/doctor-per-size-after.txt"
else
    # Linux < 6.8: no per-size files; the same config says so once and goes on.
    sed -i "s|^\"kernel/mm/transparent_hugepage/defrag\" = \"never\"|&\n$PER_SIZE|" "$CONF"
    check 10 "a config with a per-size knob reloads on a kernel without them" systemctl reload forksafe.service
    check 10 "... the knob is reported absent, once" \
        sh -c '[ "$(journalctl -b -u forksafe.service -o cat MESSAGE_ID=dacbd119305b4785a81174fb80f5e5a6 KNOB=kernel/mm/transparent_hugepage/hugepages-2048kB/enabled | wc -l)" = 1 ]'
    check 10 "... and the others are still enforced" sh -c 'echo madvise >/sys/kernel/mm/transparent_hugepage/defrag; sleep 1; [ "$(sed "s/.*\[\(.*\)\].*/\1/" /sys/kernel/mm/transparent_hugepage/defrag)" = never ]'
    check 10 "... and the service is active" active
fi
# Either way, validate accepts the per-size knob (expected to be absent before 6.8), and
# names a misspelt one.
check 10 "forksafe validate accepts the config with the per-size knob" forksafe validate
sed 's|^"vm.overcommit_memory"|"vm.overcommit_memry"|' "$CONF" >"$STATE/typo.toml"
forksafe --config "$STATE/typo.toml" validate >"$OUT/validate-typo.txt" 2>&1
code=$?
check 10 "... and exits 1 for a misspelt knob ($code), naming the nearest one" \
    sh -c "[ $code = 1 ] && grep -q 'did you mean vm.overcommit_memory?' '$OUT/validate-typo.txt'"
cp "$STATE/forksafe.toml.orig" "$CONF"
systemctl reload forksafe.service

# ---------------------------------------------------------------- 11: a namespaced knob
# The shipped unit runs the daemon in a private network namespace: a net.* knob is refused
# at start (never set in the wrong namespace), with the drop-in that fixes it named.
sed 's|^\[sysctl\]$|[sysctl]\n"net.core.somaxconn" = 4096|' "$STATE/forksafe.toml.orig" >"$CONF"
before_somaxconn=$(sysctl -n net.core.somaxconn 2>/dev/null || cat /proc/sys/net/core/somaxconn)
systemctl restart forksafe.service
check 11 "with net.core.somaxconn and the shipped unit, the daemon refuses to start" \
    sh -c '[ "$(systemctl is-active forksafe.service)" = failed ]'
check 11 "... once (exit 2 is not restarted)" \
    sh -c '[ "$(systemctl show -p NRestarts --value forksafe.service)" = 0 ]'
check 11 "... saying why and which unit setting to drop in" \
    sh -c 'journalctl -b -u forksafe.service --no-pager | grep -q "private net namespace.*PrivateNetwork=no"'
check 11 "... and the host's value is untouched" \
    sh -c "[ \"\$(cat /proc/sys/net/core/somaxconn)\" = '$before_somaxconn' ]"
# The README's recipe, exactly (what `systemctl edit forksafe` writes, then a restart).
mkdir -p /etc/systemd/system/forksafe.service.d
cat >/etc/systemd/system/forksafe.service.d/override.conf <<'EOF'
[Service]
PrivateNetwork=no
ReadWritePaths=/proc/sys/net
BindReadOnlyPaths=/proc/sys/net:/run/forksafe/host/proc/sys/net
EOF
systemctl daemon-reload
systemctl reset-failed forksafe.service
check 11 "with the README's drop-in the daemon starts" systemctl restart forksafe.service
check 11 "... and the host's network namespace has net.core.somaxconn = 4096" \
    sh -c '[ "$(cat /proc/sys/net/core/somaxconn)" = 4096 ]'
echo 128 >/proc/sys/net/core/somaxconn
check 11 "... and its drift is repaired" wait_until 3000 journal_has KNOB=net.core.somaxconn OBSERVED=128 MESSAGE_ID=fd55663f9c5d410482beace9df653b3a
check 11 "... and it is 4096 again" sh -c '[ "$(cat /proc/sys/net/core/somaxconn)" = 4096 ]'
rm -rf /etc/systemd/system/forksafe.service.d
echo "$before_somaxconn" >/proc/sys/net/core/somaxconn
cp "$STATE/forksafe.toml.orig" "$CONF"
systemctl daemon-reload
systemctl restart forksafe.service

# ---------------------------------------------------------------- 12: the doctor timer
check 12 "forksafe-doctor.timer is enabled and active" \
    sh -c '[ "$(systemctl is-enabled forksafe-doctor.timer)" = enabled ] && [ "$(systemctl is-active forksafe-doctor.timer)" = active ]'
check 12 "... and the analyzer accepts its units (their man: links are checked in CI, where the pages are)" \
    systemd-analyze verify --man=no /usr/lib/systemd/system/forksafe-doctor.service /usr/lib/systemd/system/forksafe-doctor.timer
check 12 "without node_exporter's textfile directory, a pass is skipped, not failed" \
    sh -c 'systemctl start forksafe-doctor.service; [ "$(systemctl show -p Result --value forksafe-doctor.service)" = success ] && [ ! -e /var/lib/prometheus/node-exporter/forksafe-doctor.prom ]'
mkdir -p /var/lib/prometheus/node-exporter
echo 0 >/proc/sys/vm/overcommit_memory
systemctl stop forksafe.service
echo 0 >/proc/sys/vm/overcommit_memory
check 12 "with the directory, a pass writes doctor's metrics (the sandboxed unit succeeds)" \
    sh -c 'systemctl start forksafe-doctor.service; [ "$(systemctl show -p Result --value forksafe-doctor.service)" = success ] && grep -q "^forksafe_doctor_check{check=\"overcommit\",id=\"overcommit\",status=\"fail\"} 1" /var/lib/prometheus/node-exporter/forksafe-doctor.prom'
check 12 "... and journals the check that turned FAIL, with its MESSAGE_ID" \
    sh -c '[ -n "$(journalctl -b -u forksafe-doctor.service -o cat MESSAGE_ID=e329ac33d786414eb11c1ceee1d20f71 CHECK=overcommit)" ]'
systemctl start forksafe.service
check 12 "the daemon sets it back; the next pass journals it no longer fails" \
    sh -c 'systemctl start forksafe-doctor.service; [ -n "$(journalctl -b -u forksafe-doctor.service -o cat MESSAGE_ID=59be5d33e637439183f139b131fde5e5 CHECK=overcommit)" ]'
rm -rf /var/lib/prometheus

# ---------------------------------------------------------------- upgrade
# Installing the package again (as an upgrade does) restarts the daemon and keeps it on.
pid_before=$(systemctl show -p MainPID --value forksafe.service)
check 1 "dpkg -i again (upgrade) succeeds" dpkg -i /payload/forksafe.deb
pid_after=$(systemctl show -p MainPID --value forksafe.service)
check 1 "the upgrade restarted the daemon (MainPID $pid_before -> $pid_after) and it is active" \
    sh -c "[ '$pid_before' != '$pid_after' ] && [ \"\$(systemctl is-active forksafe.service)\" = active ]"

# ---------------------------------------------------------------- 8: purge
# A configured drop-in path: purge deletes that one too (and the default one, still there).
sed -i 's|^file = .*|file = "/etc/sysctl.d/90-redis-fork.conf"|' "$CONF"
systemctl reload forksafe.service
check 8 "a configured drop-in path is written" grep -q '^vm.overcommit_memory = 1$' /etc/sysctl.d/90-redis-fork.conf
echo "vm.swappiness = 10" >/etc/sysctl.d/91-not-ours.conf
check 8 "apt-get purge forksafe" apt-get purge -y forksafe
check 8 "the unit is gone" sh -c '! systemctl cat forksafe.service && [ ! -e /usr/lib/systemd/system/forksafe.service ]'
check 8 "the managed drop-ins are gone, the configured one too" \
    sh -c "[ ! -e $DROPIN ] && [ ! -e /etc/sysctl.d/90-redis-fork.conf ]"
check 8 "a sysctl.d file that is not ours stays" [ -e /etc/sysctl.d/91-not-ours.conf ]
check 8 "nothing of ours is left" \
    sh -c '! dpkg -s forksafe 2>/dev/null | grep -q "^Status: install" && [ ! -e /etc/forksafe ] && [ ! -e /usr/sbin/forksafe ] && [ ! -e /usr/lib/systemd/catalog/forksafe.catalog ]'

finish poweroff
