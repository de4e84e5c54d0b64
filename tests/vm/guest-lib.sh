# Shared by the guest scenario scripts (sourced from the payload disk): the boot counter,
# PASS/FAIL reporting on the second serial port, and the end of a boot.
# A scenario may define collect() to save artifacts to $OUT before a boot ends.

R=/dev/ttyS1
STATE=/var/lib/forksafe-vmtest
OUT=/payload/out
THP=/sys/kernel/mm/transparent_hugepage
RELEASE=$(cat /payload/release 2>/dev/null || echo unknown)
mkdir -p "$STATE" "$OUT"
boot=$(( $(cat "$STATE/boot" 2>/dev/null || echo 0) + 1 ))
echo "$boot" >"$STATE/boot"

say() { printf '%s\n' "$*" >"$R"; printf '%s\n' "$*"; }

# check N WHAT COMMAND...: PASS when COMMAND succeeds; on FAIL its output follows.
check() {
    n=$1 what=$2
    shift 2
    if "$@" >"$OUT/last-check.log" 2>&1; then
        say "PASS $n $what"
    else
        say "FAIL $n $what"
        sed 's/^/    | /' "$OUT/last-check.log" | tail -n 20 >"$R"
    fi
}

# The kernel's choice format "always madvise [never]" -> "never".
sel() { sed 's/.*\[\(.*\)\].*/\1/' "$1"; }

# finish reboot|poweroff: save artifacts, tell the host this boot (or all) is done, go.
finish() {
    journalctl -b --no-pager >"$OUT/journal-boot$boot.txt" 2>&1
    if command -v collect >/dev/null 2>&1; then collect; fi
    say "END boot $boot"
    [ "$1" = poweroff ] && say "DONE"
    sync
    umount /payload
    systemctl "$1"
    exit 0
}

systemctl is-system-running --wait >/dev/null 2>&1

# wait_until SECONDS COMMAND...: retry every 0.2 s until COMMAND succeeds.
if ! command -v wait_until >/dev/null 2>&1; then
    wait_until() {
        _tries=$(( $1 * 5 ))
        shift
        while ! "$@" >/dev/null 2>&1; do
            _tries=$((_tries - 1))
            [ "$_tries" -gt 0 ] || { "$@"; return 1; }
            sleep 0.2
        done
    }
fi
