# forksafe %postun: what %systemd_postun_with_restart does (reload units; on upgrade,
# $1 >= 1, restart the daemon). On erase ($1 = 0) also delete the managed sysctl.d drop-in,
# RPM having no separate purge, but only if its first line is forksafe's header and it is
# not a symlink.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -ge 1 ]; then
    systemctl try-restart forksafe.service >/dev/null 2>&1 || :
else
    dropin=/etc/sysctl.d/99-zz-forksafe.conf
    if [ -f "$dropin" ] && [ ! -L "$dropin" ] \
        && head -n 1 "$dropin" | grep -q '^# Managed by forksafe'; then
        rm -f "$dropin"
    fi
fi
journalctl --update-catalog >/dev/null 2>&1 || :
