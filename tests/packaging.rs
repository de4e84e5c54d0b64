//! The packages' own scripts and files, run and read for real:
//! - the scripts that delete forksafe's drop-in on purge (Debian) and erase (RPM), run in a
//!   private mount namespace whose /etc/sysctl.d is a fresh tmpfs: the default drop-in and a
//!   configured one go, a file without our header stays, and a symlink is never followed (no
//!   RPM-based system boots here; this runs the very scriptlet the .rpm carries; the .deb's
//!   purge also runs in the VM test);
//! - postinst and %post without systemd running: they say nothing was started;
//! - packaging/debian/md5sums on a .deb built here (the VM test runs `dpkg --verify` on the
//!   real one);
//! - the licence files, regenerated from `cargo metadata` and compared.
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

fn repo(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Run a maintainer script in a private mount namespace where /run is a fresh tmpfs, with
/// or without /run/systemd/system (systemd running), and with a PATH holding only what the
/// script needs besides systemctl and journalctl (so nothing on this machine is enabled or
/// rebuilt). Returns its stderr.
fn maintainer_script(script: &str, arg: &str, systemd: bool) -> String {
    let bin = tempfile::tempdir().unwrap();
    for tool in ["mkdir", "cat"] {
        let path = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| std::path::Path::new(d).join(tool))
            .find(|p| p.exists())
            .unwrap();
        std::os::unix::fs::symlink(path, bin.path().join(tool)).unwrap();
    }
    let setup = format!(
        "set -e; mount -t tmpfs tmpfs /run; {mk} PATH={bin} /bin/sh {script} {arg}",
        mk = if systemd {
            "mkdir -p /run/systemd/system;"
        } else {
            ""
        },
        bin = bin.path().display(),
        script = repo(script).display(),
    );
    let o = in_mount_namespace(&setup);
    assert!(o.status.success(), "{script}: {}", text(&o.stderr));
    text(&o.stderr)
}

/// Installed where systemd is not running (a container, a chroot), the packages say that
/// nothing was started; under systemd they say nothing more.
#[test]
fn postinst_says_when_systemd_is_not_running() {
    if !can_unshare() {
        eprintln!("SKIPPED postinst_says_when_systemd_is_not_running: needs root and unshare(1)");
        return;
    }
    for (script, arg) in [
        ("packaging/debian/postinst", "configure"),
        ("packaging/rpm/post.sh", "1"),
    ] {
        let err = maintainer_script(script, arg, false);
        assert!(
            err.contains("systemd is not running here")
                && err.contains("the kernel settings are unchanged")
                && err.contains("forksafe apply"),
            "{script}: {err}"
        );
        let err = maintainer_script(script, arg, true);
        assert!(!err.contains("systemd is not running"), "{script}: {err}");
    }
}

/// packaging/debian/md5sums on a small .deb built here: every file but the conffile is
/// summed, the sums match what the package holds, and the same input gives the same .deb.
#[test]
fn md5sums_are_added_to_a_deb() {
    if std::process::Command::new("dpkg-deb")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED md5sums_are_added_to_a_deb: no dpkg-deb");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    for (rel, content) in [
        (
            "DEBIAN/control",
            "Package: demo\nVersion: 1\nArchitecture: all\nMaintainer: x <x@example.invalid>\nDescription: demo\n",
        ),
        ("DEBIAN/conffiles", "/etc/demo.conf\n"),
        ("etc/demo.conf", "setting = 1\n"),
        ("usr/sbin/demo", "#!/bin/sh\n"),
        ("usr/share/doc/demo/with space.txt", "hello\n"),
    ] {
        let p = tree.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    let deb = dir.path().join("demo.deb");
    let run = |cmd: &mut std::process::Command| {
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{cmd:?}: {}", text(&o.stderr));
        text(&o.stdout)
    };
    let build = || {
        run(std::process::Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&tree)
            .arg(&deb)
            .env("SOURCE_DATE_EPOCH", "1700000000"));
        run(std::process::Command::new(repo("packaging/debian/md5sums")).arg(&deb));
        std::fs::read(&deb).unwrap()
    };
    let first = build();
    let sums = run(std::process::Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .arg("md5sums"));
    assert_eq!(
        sums,
        "3e2b31c72181b87149ff995e7202c0e3  usr/sbin/demo\n\
         b1946ac92492d2347c6235b4d2611184  usr/share/doc/demo/with space.txt\n",
        "the conffile is left out, as dh_md5sums does"
    );
    // The files in the .deb are the ones summed.
    let out = dir.path().join("out");
    run(std::process::Command::new("dpkg-deb")
        .arg("-R")
        .arg(&deb)
        .arg(&out));
    run(std::process::Command::new("md5sum")
        .args(["--check", "--quiet", "DEBIAN/md5sums"])
        .current_dir(&out));
    assert_eq!(build(), first, "the same input built twice differs");
}

/// The copyright file and the RPM's third-party licences are what packaging/licenses/generate
/// makes from `cargo metadata` now: a crate added or updated without regenerating fails
/// here (and in CI). They cover the crates linked into the binary, and only those.
#[test]
fn licence_files_cover_the_linked_crates() {
    let o = std::process::Command::new(repo("packaging/licenses/generate"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    let copyright = std::fs::read_to_string(repo("packaging/debian/copyright")).unwrap();
    let third = std::fs::read_to_string(repo("packaging/rpm/THIRD-PARTY-LICENSES")).unwrap();
    for linked in [
        "nix",
        "serde_core",
        "serde_json",
        "toml",
        "libc",
        "sd-notify",
        "signal-hook",
        "log",
    ] {
        assert!(
            copyright.contains(&format!("\nFiles: vendor/{linked}-")),
            "{linked} missing from the copyright file"
        );
        assert!(
            third.contains(&format!("\n{linked} ")),
            "{linked} missing from THIRD-PARTY-LICENSES"
        );
    }
    // Compile-time only (a proc-macro and what only it uses) and dev-dependencies: not
    // linked, not listed.
    for not_linked in ["serde_derive", "syn", "proc-macro2", "proptest", "tempfile"] {
        assert!(
            !copyright.contains(&format!("vendor/{not_linked}-")),
            "{not_linked} is not linked"
        );
    }
    // Every licence named has its text.
    for name in ["MIT", "Apache-2.0", "Unlicense"] {
        assert!(
            copyright.contains(&format!("\nLicense: {name}\n")),
            "no standalone {name} paragraph"
        );
    }
}
