//! The package scripts that delete forksafe's drop-in on purge (Debian) and erase (RPM),
//! run for real in a private mount namespace whose /etc/sysctl.d is a fresh tmpfs: the
//! default drop-in and a configured one go, a file without our header stays, and a symlink
//! is never followed. (No RPM-based system boots here; this runs the very scriptlet the .rpm
//! carries. The .deb's purge also runs in the VM test.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;

const HEADER: &str = "# Managed by forksafe: edits are overwritten.\nvm.overcommit_memory = 1\n";

fn run_script(script: &str, args: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let victim = tempfile::tempdir().unwrap();
    let v = victim.path().join("victim.conf");
    std::fs::write(&v, HEADER).unwrap();
    let setup = format!(
        "set -e; mkdir -p /etc/sysctl.d; mount -t tmpfs tmpfs /etc/sysctl.d; cd /etc/sysctl.d; \
         printf '{h}' > 99-zz-forksafe.conf; printf '{h}' > 50-mine.conf; \
         printf 'vm.overcommit_memory = 1\\n' > 60-theirs.conf; \
         printf 'vm.x = 1\\n{h}' > 70-header-not-first.conf; \
         ln -s {v} 80-link.conf; \
         sh {path} {args}; ls /etc/sysctl.d; echo ---; cat {v}",
        h = HEADER.replace('\n', "\\n"),
        v = v.display(),
        path = path.display(),
    );
    let o = in_mount_namespace(&setup);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    text(&o.stdout)
}

#[test]
fn purge_and_erase_delete_our_dropins_only() {
    if !can_unshare() {
        eprintln!("SKIPPED purge_and_erase_delete_our_dropins_only: needs root and unshare(1)");
        return;
    }
    for (script, args) in [
        ("packaging/debian/postrm", "purge"),
        ("packaging/rpm/postun.sh", "0"),
    ] {
        let out = run_script(script, args);
        let (listing, victim) = out.split_once("---\n").unwrap();
        let left: Vec<&str> = listing.lines().collect();
        assert_eq!(
            left,
            ["60-theirs.conf", "70-header-not-first.conf", "80-link.conf"],
            "{script}: {out}"
        );
        assert_eq!(victim, HEADER, "{script} followed a symlink");
    }
    // Remove (not purge) and upgrade leave everything.
    for (script, args) in [
        ("packaging/debian/postrm", "remove"),
        ("packaging/rpm/postun.sh", "1"),
    ] {
        let out = run_script(script, args);
        for name in ["50-mine.conf", "99-zz-forksafe.conf"] {
            assert!(out.lines().any(|l| l == name), "{script} {args}: {out}");
        }
    }
}
