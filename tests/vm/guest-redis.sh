#!/bin/sh
# Redis (or Valkey) acceptance, inside the test VM (tests/vm/run --scenario redis|valkey;
# the kernel command line has transparent_hugepage=always on every boot, and
# forksafe.db= says which database).
#   boot 1: install Redis, configure the machine the way that breaks it (overcommit 2 with a
#           tight ratio from /etc/sysctl.d/50-strict.conf), reboot;
#   boot 2: Redis starts under mode 2 with THP always; load data; BGSAVE fails and writes get
#           MISCONF; forksafe doctor names it; measure copy-on-write with THP always; install
#           forksafe: BGSAVE works at once, without restarting Redis; reboot;
#   boot 3: forksafe was ready before Redis started; Redis starts under mode 1 and THP never;
#           measure copy-on-write again; doctor is clean.
set -u

. /payload/guest-lib.sh

DB=$(sed -n 's/.*forksafe\.db=\([a-z]*\).*/\1/p' /proc/cmdline)
case ${DB:-redis} in
    valkey) NAME=Valkey SERVER=valkey-server CLI=valkey-cli CONF=/etc/valkey/valkey.conf LOG=/var/log/valkey/valkey-server.log ;;
    *) DB=redis NAME=Redis SERVER=redis-server CLI=redis-cli CONF=/etc/redis/redis.conf LOG=/var/log/redis/redis-server.log ;;
esac
UNIT=$SERVER.service

rcli() { $CLI "$@" 2>&1; }
info() { rcli INFO persistence | tr -d '\r' | sed -n "s/^$1://p"; }
wait_save() { # until no background save runs (at most 5 minutes under TCG)
    i=0
    while [ "$(info rdb_bgsave_in_progress)" != 0 ] && [ $i -lt 3000 ]; do sleep 0.1; i=$((i + 1)); done
}
wait_redis() {
    i=0
    until [ "$(rcli PING)" = PONG ] || [ $i -gt 600 ]; do sleep 0.1; i=$((i + 1)); done
}
# The same small-write load each time, while the child writes the snapshot: 3000 one-byte
# SETRANGEs spread over the 240 values, so each lands in memory the child still shares.
# This start's lines of the Redis log: from this boot's lines (those after the count the last
# boot left in $STATE: a PID can repeat from one boot to the next), the lines of the last
# start's PID (lines start with "PID:role"; Valkey 8 logs the overcommit warning before its
# "is starting" banner), up to "Ready".
start_log() {
    skip=$(cat "$STATE/$SERVER-log-lines" 2>/dev/null || echo 0)
    tail -n +"$((skip + 1))" "$LOG" >"$OUT/$SERVER-this-boot.log"
    pid=$(grep "$NAME is starting" "$OUT/$SERVER-this-boot.log" | tail -n 1 | cut -d: -f1)
    grep "^${pid:-none}:" "$OUT/$SERVER-this-boot.log" | sed '/Ready to accept connections/q'
}
cow_run() {
    rcli BGSAVE >/dev/null
    rcli EVAL "for i=1,3000 do redis.call('SETRANGE','k'..(i % 240 + 1), (i * 7919) % 1048000, 'y') end return 1" 0 >/dev/null
    wait_save
    echo "status=$(info rdb_last_bgsave_status) cow=$(info rdb_last_cow_size)"
}
collect() {
    # Stopped first, so that its shutdown lines count as this boot's.
    systemctl stop "$UNIT" 2>/dev/null
    cp "$LOG" "$OUT/$SERVER-boot$boot.log" 2>/dev/null
    wc -l <"$LOG" >"$STATE/$SERVER-log-lines" 2>/dev/null
}

say "INFO $DB scenario, boot $boot: $(uname -r), systemd $(systemctl --version | head -n1 | cut -d' ' -f2), $($SERVER --version | head -n1 | cut -c1-40), $(awk '/MemTotal/{print int($2/1024)}' /proc/meminfo) MiB RAM, THP $(sel $THP/enabled)"

if [ "$boot" = 1 ]; then
    check 0 "$NAME and its dependencies install from the payload" apt-get install -y -q --no-install-recommends /payload/deps/*.deb
    # A save point, so a failed BGSAVE stops writes (stop-writes-on-bgsave-error, the
    # default); and disable-thp no, so THP applies to Redis as it does to Redis < 6.2 and to
    # every process that does not opt out.
    cat >>"$CONF" <<'EOF'
save 3600 1
disable-thp no
EOF
    # The machine that breaks Redis: strict overcommit with little headroom.
    printf 'vm.overcommit_memory = 2\nvm.overcommit_ratio = 50\n' >/etc/sysctl.d/50-strict.conf
    systemctl enable "$UNIT" >/dev/null 2>&1
    finish reboot
fi

if [ "$boot" = 2 ]; then
    wait_redis
    # ---------------------------------------------------------- 1: the failure, reproduced
    check 1 "$NAME started at boot under overcommit 2 and THP always" \
        sh -c '[ "$(cat /proc/sys/vm/overcommit_memory)" = 2 ] && [ "$(sed "s/.*\[\(.*\)\].*/\1/" /sys/kernel/mm/transparent_hugepage/enabled)" = always ]'
    # THP fully on, as on the machines that suffer from it: fault in huge pages eagerly.
    echo always >$THP/defrag
    rcli EVAL "for i=1,240 do redis.call('SET','k'..i, string.rep('x', 1048576)) end return 1" 0 >"$OUT/load.txt"
    start_log >"$OUT/redis-start-boot2.log"
    check 1 "$NAME itself warned at its start: overcommit must be enabled" \
        grep -q "overcommit" "$OUT/redis-start-boot2.log"
    check 1 "240 MB of data loaded" sh -c "[ \"\$($CLI DBSIZE)\" -ge 240 ]"
    grep -E "CommitLimit|Committed_AS" /proc/meminfo | tr -s ' ' | while read -r l; do say "INFO $l"; done
    rcli BGSAVE >"$OUT/bgsave-broken.txt"
    wait_save
    say "INFO BGSAVE under overcommit 2 replied: $(tr -d '\r' <"$OUT/bgsave-broken.txt")"
    check 1 "BGSAVE fails (rdb_last_bgsave_status:err)" sh -c "[ \"$(info rdb_last_bgsave_status)\" = err ]"
    check 1 "writes get MISCONF" sh -c "$CLI SET foo bar | grep -q MISCONF"

    # ---------------------------------------------------------- 4: doctor names it
    mkdir -p /tmp/fs && dpkg-deb -x /payload/forksafe.deb /tmp/fs
    /tmp/fs/usr/sbin/forksafe doctor >"$OUT/doctor-broken.txt" 2>&1
    echo "exit $?" >>"$OUT/doctor-broken.txt"
    check 4 "forksafe doctor on the broken machine exits 1 and names the failure" \
        sh -c "grep -q '^exit 1' $OUT/doctor-broken.txt && grep -q '^FAIL  overcommit .*is 2' $OUT/doctor-broken.txt && grep -q '^FAIL  fork-headroom:.*a fork now would be refused' $OUT/doctor-broken.txt"
    check 4 "... and the fix" grep -q "fix: forksafe apply" "$OUT/doctor-broken.txt"
    check 4 "... and THP always" grep -q "^FAIL  thp-enabled" "$OUT/doctor-broken.txt"
    check 4 "doctor asked $NAME: its last save failed, and the kernel explains it" \
        grep -q "^FAIL  persistence:.*rdb_last_bgsave_status is err.*the kernel explains it: under vm.overcommit_memory 2" "$OUT/doctor-broken.txt"
    check 4 "doctor found $SERVER" grep -q "$SERVER (pid" "$OUT/doctor-broken.txt"

    # Copy-on-write with THP always: overcommit 1 for one save only, then broken again.
    echo 1 >/proc/sys/vm/overcommit_memory
    cow_always=$(cow_run)
    say "INFO THP always: $cow_always (AnonHugePages of $SERVER: $(awk '/AnonHugePages/{print $2" kB"}' /proc/"$(pidof $SERVER)"/smaps_rollup))"
    echo "$cow_always" | sed -n 's/.*cow=//p' >"$STATE/cow-always"
    echo 2 >/proc/sys/vm/overcommit_memory
    rcli BGSAVE >/dev/null
    wait_save
    check 1 "back under overcommit 2, BGSAVE fails again" sh -c "[ \"$(info rdb_last_bgsave_status)\" = err ]"

    # ---------------------------------------------------------- 2: install forksafe
    check 2 "dpkg -i forksafe" dpkg -i /payload/forksafe.deb
    check 2 "right away: overcommit 1 and THP never" \
        sh -c '[ "$(cat /proc/sys/vm/overcommit_memory)" = 1 ] && [ "$(sed "s/.*\[\(.*\)\].*/\1/" /sys/kernel/mm/transparent_hugepage/enabled)" = never ]'
    redis_pid=$(pidof $SERVER)
    rcli BGSAVE >/dev/null
    wait_save
    check 2 "BGSAVE succeeds on the same running $NAME" sh -c "[ \"$(info rdb_last_bgsave_status)\" = ok ] && [ \"\$(pidof $SERVER)\" = $redis_pid ]"
    check 2 "writes work again" sh -c "[ \"\$($CLI SET foo bar)\" = OK ]"
    forksafe check >"$OUT/check-after-install.txt" 2>&1
    check 2 "forksafe check names /etc/sysctl.d/50-strict.conf, which its drop-in now outranks at boot" \
        grep -q "/etc/sysctl.d/50-strict.conf:1 sets 2" "$OUT/check-after-install.txt"
    say "INFO forksafe check after install: $(grep '^vm.overcommit_memory' "$OUT/check-after-install.txt" | head -n 3 | tr '\n' ' ')"
    finish reboot
fi

# -------------------------------------------------------------- 3: after the reboot
wait_redis
fs_ready=$(systemctl show -p ActiveEnterTimestampMonotonic --value forksafe.service)
redis_start=$(systemctl show -p ExecMainStartTimestampMonotonic --value "$UNIT")
say "INFO forksafe ready at ${fs_ready}us, $SERVER started at ${redis_start}us (monotonic)"
check 3 "forksafe was ready before $SERVER started" \
    sh -c "[ '${fs_ready:-0}' -gt 0 ] && [ '${fs_ready:-0}' -lt '${redis_start:-0}' ]"
start_log >"$OUT/redis-start-boot3.log"
check 3 "$NAME started under overcommit 1 (no overcommit warning at its start)" \
    sh -c "! grep -q 'overcommit' $OUT/redis-start-boot3.log"
check 3 "$NAME started with THP never (no THP warning at its start), despite transparent_hugepage=always" \
    sh -c "grep -q transparent_hugepage=always /proc/cmdline && ! grep -qi 'transparent huge pages' $OUT/redis-start-boot3.log"
check 3 "its data came back (DBSIZE >= 240)" sh -c "[ \"\$($CLI DBSIZE)\" -ge 240 ]"
cow_never=$(cow_run)
cow_always=$(cat "$STATE/cow-always")
say "INFO THP never:  $cow_never"
check 3 "BGSAVE succeeds" sh -c "echo '$cow_never' | grep -q status=ok"
cow_never_bytes=$(echo "$cow_never" | sed -n 's/.*cow=//p')
say "INFO copy-on-write during BGSAVE with 3000 small writes: THP always ${cow_always} bytes, THP never ${cow_never_bytes} bytes"
# Measured and reported, not assumed: what THP does to copy-on-write depends on the kernel.
check 3 "copy-on-write measured in both runs" sh -c "[ -n '${cow_never_bytes}' ] && [ -n '${cow_always}' ]"

/usr/sbin/forksafe doctor >"$OUT/doctor-fixed.txt" 2>&1
echo "exit $?" >>"$OUT/doctor-fixed.txt"
check 4 "forksafe doctor on the fixed machine exits 0 with no failure" \
    sh -c "grep -q '^exit 0' $OUT/doctor-fixed.txt && ! grep -q '^FAIL' $OUT/doctor-fixed.txt"
check 4 "doctor asked $NAME again: its last save succeeded" grep -q "^ok    persistence:" "$OUT/doctor-fixed.txt"

finish poweroff
