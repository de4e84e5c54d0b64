# forksafe %postun: what %systemd_postun_with_restart does (reload units; on upgrade,
# $1 >= 1, restart the daemon). On erase ($1 = 0) also delete forksafe's sysctl.d drop-in,
# RPM having no separate purge: the default /etc/sysctl.d/99-zz-forksafe.conf or whichever
# file [sysctl_d] file named (the config allows only /etc/sysctl.d). Only regular files whose
# first line is forksafe's header; never a symlink.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -ge 1 ]; then
    systemctl try-restart forksafe.service >/dev/null 2>&1 || :
elif [ -d /etc/sysctl.d ]; then
    for dropin in /etc/sysctl.d/*.conf; do
        if [ -f "$dropin" ] && [ ! -L "$dropin" ] \
            && head -n 1 "$dropin" | grep -q '^# Managed by forksafe'; then
            rm -f "$dropin"
        fi
    done
fi
journalctl --update-catalog >/dev/null 2>&1 || :
