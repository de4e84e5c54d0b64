# forksafe %post: what %systemd_post does (preset on first install; the shipped preset
# enables the unit), plus starting it at once so the knobs are set without a reboot, and
# rebuilding the journal catalog. $1: 1 on install, 2 on upgrade.
# The daemon's sandbox (ProtectSystem=strict) lets it write /etc/sysctl.d but not create it.
mkdir -p /etc/sysctl.d
if [ "$1" -eq 1 ]; then
    systemctl --no-reload preset forksafe.service forksafe-doctor.timer >/dev/null 2>&1 || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl start forksafe.service forksafe-doctor.timer >/dev/null 2>&1 || :
    fi
else
    # No systemd running (a container, a chroot, another init): nothing was started. Say so,
    # rather than leave the knobs as they were in silence.
    cat >&2 <<'EOF'
forksafe: systemd is not running here (no /run/systemd/system: a container or a chroot?).
forksafe.service is enabled for the next boot under systemd, but it was not started, so
the kernel settings are unchanged. See them with `forksafe doctor`; set them once with
`forksafe apply`, or run `forksafe run` under this system's service manager.
EOF
fi
journalctl --update-catalog >/dev/null 2>&1 || :
