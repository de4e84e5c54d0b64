#!/bin/sh
# The tuned scenario, inside the test VM: Debian's tuned running the hpc-compute profile,
# which sets transparent huge pages to always every time tuned applies it. forksafe's
# doctor must name that profile's file and line as conflicting, and the daemon's repair
# entry, when tuned sets THP back after forksafe started, must name it too (SOURCE=).
set -u

. /payload/guest-lib.sh

PROFILE=/usr/lib/tuned/hpc-compute/tuned.conf
say "INFO tuned scenario, boot $boot: $(uname -r), $RELEASE"
check 1 "tuned and its dependencies install from the payload" apt-get install -y -q --no-install-recommends /payload/deps/*.deb
check 1 "forksafe installs" dpkg -i /payload/forksafe.deb
check 1 "tuned is active" sh -c 'systemctl is-active tuned.service || { systemctl start tuned.service; systemctl is-active tuned.service; }'
line=$(grep -n '^transparent_hugepages=always' "$PROFILE" | cut -d: -f1)
check 1 "the profile sets THP always (line $line)" [ -n "$line" ]
check 1 "tuned-adm profile hpc-compute" tuned-adm profile hpc-compute
say "INFO THP after tuned applied hpc-compute: $(sel $THP/enabled)"

forksafe doctor >"$OUT/doctor-tuned.txt" 2>&1
forksafe doctor --json >"$OUT/doctor-tuned.json" 2>&1
check 2 "doctor names the tuned profile's file and line as conflicting" \
    grep -q "^FAIL  legacy:$PROFILE:$line .*tuned profile hpc-compute, active.*sets kernel/mm/transparent_hugepage/enabled = always, not never" "$OUT/doctor-tuned.txt"
check 2 "... with the child-profile fix" grep -q "include=hpc-compute" "$OUT/doctor-tuned.txt"

# The daemon looks again at what sets the knobs on a reload (and once a minute).
systemctl reload forksafe.service
since=$(date '+%Y-%m-%d %H:%M:%S')
check 3 "tuned restarts (and applies its profile again)" systemctl restart tuned.service
check 3 "forksafe repairs THP after tuned set it back" wait_until 30 sh -c "grep -q '\[never\]' $THP/enabled"
check 3 "the repair entry names the tuned profile's file and line (SOURCE=)" sh -c \
    "journalctl -u forksafe.service --since '$since' -o export MESSAGE_ID=fd55663f9c5d410482beace9df653b3a KNOB=kernel/mm/transparent_hugepage/enabled | grep -q '^SOURCE=$PROFILE:$line (tuned profile hpc-compute, active)'"
journalctl -u forksafe.service --since "$since" -o verbose MESSAGE_ID=fd55663f9c5d410482beace9df653b3a >"$OUT/repair-entries.txt" 2>&1
say "INFO $(journalctl -u forksafe.service --since "$since" -o export MESSAGE_ID=fd55663f9c5d410482beace9df653b3a | grep '^SOURCE=' | head -n1)"
finish poweroff
