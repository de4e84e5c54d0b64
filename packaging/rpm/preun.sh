# forksafe %preun: what %systemd_preun does: on erase ($1 = 0) stop and disable the unit.
# The kernel values stay as they are: forksafe cannot know what they were before, and
# resetting them under a running database would break its next save.
if [ "$1" -eq 0 ]; then
    systemctl --no-reload disable --now forksafe.service forksafe-doctor.timer >/dev/null 2>&1 || :
fi
