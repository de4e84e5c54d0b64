//! Faults and hostile setups: each leaves forksafe's other knobs enforced, its files intact,
//! and says what went wrong. The ones that need root (ownership, mount namespaces, dropped
//! capabilities) say SKIPPED when they cannot run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;
use nix::sys::signal::Signal;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

const CONFIG: &str = "etc/forksafe/forksafe.toml";
const MINI: &str = "[daemon]\ninterval = \"50ms\"\n[sysctl]\n\"vm.overcommit_memory\" = 1\n[sysctl_d]\nmanage = false\n";

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn needs(what: &str, ok: bool) -> bool {
    if !ok {
        eprintln!("SKIPPED: {what}");
    }
    ok
}

/// Running as root, a config that someone else could change is refused, at start with exit
/// 2 and nothing written.
#[test]
fn untrusted_config_is_refused_at_start() {
    if !needs(
        "untrusted_config_is_refused_at_start needs root (ownership checks apply to root)",
        is_root(),
    ) {
        return;
    }
    type Setup = fn(&Tree);
    let cases: &[(&str, Setup, &str)] = &[
        // Refused: group-writable, anyone in the group could make root write anything.
        (
            "group-writable file",
            |t| chmod(&t.path(CONFIG), 0o664),
            "chmod go-w",
        ),
        // Refused: world-writable directory, anyone could replace the file.
        (
            "world-writable directory",
            |t| chmod(&t.path("etc/forksafe"), 0o777),
            "chmod go-w",
        ),
        // Refused: owned by another user.
        (
            "file owned by nobody",
            |t| {
                nix::unistd::chown(
                    &t.path(CONFIG),
                    Some(nix::unistd::Uid::from_raw(65534)),
                    None,
                )
                .unwrap()
            },
            "chown root:root",
        ),
    ];
    for (what, setup, fix) in cases {
        let tree = Tree::new("01-drift");
        tree.write(CONFIG, MINI);
        setup(&tree);
        let before = tree.snapshot();
        let o = tree.run(&["apply"]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{what}: {err}");
        assert!(
            err.contains(fix) && err.contains("must not trust it"),
            "{what}: {err}"
        );
        assert_eq!(tree.snapshot(), before, "{what}: something was written");
    }
}

/// On reload, an untrusted or truncated config keeps the running one.
#[test]
fn untrusted_or_truncated_config_on_reload_keeps_the_running_one() {
    let tree = Tree::new("02-in-spec");
    tree.write(CONFIG, MINI);
    let d = Daemon::start(tree.root(), &[]);
    d.wait_message("READY=1");
    // Truncated while running.
    tree.write(CONFIG, "");
    d.signal(Signal::SIGHUP);
    d.wait_message("READY=1");
    if is_root() {
        tree.write(
            CONFIG,
            &MINI.replace("overcommit_memory\" = 1", "overcommit_memory\" = 2"),
        );
        chmod(&tree.path(CONFIG), 0o666);
        d.signal(Signal::SIGHUP);
        d.wait_message("READY=1");
    }
    tree.write(OVERCOMMIT, "0\n");
    wait_for("the repair under the running config", || {
        tree.read(OVERCOMMIT) == "1\n"
    });
    let (code, log) = d.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("no knobs configured"), "{log}");
    if is_root() {
        assert!(log.contains("group- or world-writable"), "{log}");
    }
    assert!(!log.contains("configuration reloaded"), "{log}");
}

/// A storm of SIGHUPs is coalesced: far fewer reloads than signals, and the daemon is fine.
#[test]
fn a_storm_of_sighups_is_coalesced() {
    let tree = Tree::new("02-in-spec");
    tree.write(CONFIG, MINI);
    let d = Daemon::start(tree.root(), &[]);
    d.wait_message("READY=1");
    for _ in 0..200 {
        d.signal(Signal::SIGHUP);
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    tree.write(OVERCOMMIT, "0\n");
    wait_for("a repair after the storm", || {
        tree.read(OVERCOMMIT) == "1\n"
    });
    let (code, log) = d.stop();
    assert_eq!(code, 0, "{log}");
    let reloads = count(&log, "configuration reloaded");
    assert!(
        (1..=20).contains(&reloads),
        "{reloads} reloads for 200 signals:\n{log}"
    );
}

/// Told that stderr is the journal, but with no journald socket: the lines still arrive,
/// on stderr.
#[test]
fn no_journald_socket_falls_back_to_stderr() {
    if !needs(
        "no_journald_socket_falls_back_to_stderr: a journald socket exists here",
        !std::path::Path::new("/run/systemd/journal/socket").exists(),
    ) {
        return;
    }
    let tree = Tree::new("01-drift");
    let dir = tempfile::tempdir().unwrap();
    let err_path = dir.path().join("stderr");
    let err_file = std::fs::File::create(&err_path).unwrap();
    let md = err_file.metadata().unwrap();
    let o = Command::new(BIN)
        .arg("--root")
        .arg(tree.root())
        .arg("apply")
        .env("JOURNAL_STREAM", format!("{}:{}", md.dev(), md.ino()))
        .stderr(err_file)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert!(
        err.contains("using the compiled-in default configuration"),
        "{err}"
    );
}

/// No space left writing the drop-in: the old file stays whole, the error says why, and the
/// knobs are still set.
#[test]
fn enospc_writing_the_dropin_keeps_the_old_file() {
    if !needs(
        "enospc_writing_the_dropin_keeps_the_old_file needs root and unshare(1)",
        can_unshare(),
    ) {
        return;
    }
    let tree = Tree::new("01-drift");
    let dir = tree.path("etc/sysctl.d");
    std::fs::create_dir_all(&dir).unwrap();
    let old = "# Managed by forksafe from an older config: edits are overwritten.\nvm.overcommit_memory = 1\n";
    let script = format!(
        "set -e; d={dir}; mount -t tmpfs -o size=64k tmpfs $d; printf '{old}' > $d/99-zz-forksafe.conf; \
         dd if=/dev/zero of=$d/.fill bs=4k count=100 2>/dev/null || true; \
         {BIN} --root {root} apply; echo \"exit=$?\"; \
         echo ---; cat $d/99-zz-forksafe.conf; echo ---; ls -a $d",
        dir = dir.display(),
        old = old.replace('\n', "\\n"),
        root = tree.root().display()
    );
    let o = in_mount_namespace(&script.replace("set -e; ", ""));
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(out.contains("exit=1"), "{out}{err}");
    assert!(err.contains("No space left on device"), "{err}");
    let kept = out.split("---\n").nth(1).unwrap();
    assert_eq!(kept, old, "the old drop-in was damaged");
    assert!(
        !out.contains(".99-zz-forksafe.conf."),
        "a temp file was left behind: {out}"
    );
    assert_eq!(tree.read(OVERCOMMIT), "1\n");
}

/// A write the kernel accepts but that reads back different (here: /dev/null bound over the
/// knob's file) is an error, not a success.
#[test]
fn a_write_that_reads_back_different_is_an_error() {
    if !needs(
        "a_write_that_reads_back_different_is_an_error needs root and unshare(1)",
        can_unshare(),
    ) {
        return;
    }
    let tree = Tree::new("01-drift");
    let knob = tree.path(OVERCOMMIT);
    let script = format!(
        "mount --bind /dev/null {knob} && exec {BIN} --root {root} apply --no-persist",
        knob = knob.display(),
        root = tree.root().display()
    );
    let o = in_mount_namespace(&script);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("wrote but could not verify"), "{err}");
    assert_eq!(tree.read(&format!("{THP}/enabled")), "never\n");
}

/// EACCES: root without capabilities cannot write a file it does not own; the error says
/// it is likely a sandbox, and the other knobs are still set.
#[test]
fn eacces_is_reported_and_the_others_go_on() {
    let setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    if !needs(
        "eacces_is_reported_and_the_others_go_on needs root and setpriv(1)",
        is_root() && setpriv,
    ) {
        return;
    }
    let tree = Tree::new("01-drift");
    nix::unistd::chown(
        &tree.path(OVERCOMMIT),
        Some(nix::unistd::Uid::from_raw(65534)),
        None,
    )
    .unwrap();
    let o = Command::new("setpriv")
        .args(["--bounding-set=-all", "--inh-caps=-all", "--"])
        .arg(BIN)
        .arg("--root")
        .arg(tree.root())
        .args(["apply", "--no-persist"])
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Permission denied") && err.contains("likely a container or a sandbox"),
        "{err}"
    );
    assert_eq!(tree.read(OVERCOMMIT), "0\n");
    assert_eq!(tree.read(&format!("{THP}/enabled")), "never\n");
}

/// SIGTERM in the middle of a pass: the handler only sets a flag, so every write (and its
/// read-back) finishes, and then the daemon stops cleanly. 2000 drifted knobs make the
/// first pass long enough for the signal to land inside it (the test says whether it did).
#[test]
fn sigterm_during_writes_lets_them_finish() {
    const N: usize = 2000;
    let tree = Tree::new("02-in-spec");
    let mut config = String::from("[sysctl]\n");
    for i in 0..N {
        tree.write(&format!("proc/sys/fstest/k{i}"), "0\n");
        config.push_str(&format!("\"fstest.k{i}\" = 1\n"));
    }
    config.push_str("[sysctl_d]\nmanage = false\n");
    tree.write(CONFIG, &config);
    let d = Daemon::start(tree.root(), &[]);
    let first = tree.path("proc/sys/fstest/k0");
    let last = tree.path(&format!("proc/sys/fstest/k{}", N - 1));
    let start = std::time::Instant::now();
    while std::fs::read_to_string(&first).unwrap() != "1\n" {
        assert!(start.elapsed() < PATIENCE, "no knob was ever written");
    }
    d.signal(Signal::SIGTERM);
    let mid_pass = std::fs::read_to_string(&last).unwrap() != "1\n";
    d.wait_message("STOPPING=1");
    let (code, log) = d.stop();
    assert_eq!(code, 0, "{log}");
    for i in 0..N {
        assert_eq!(
            tree.read(&format!("proc/sys/fstest/k{i}")),
            "1\n",
            "knob {i}:\n{log}"
        );
    }
    eprintln!(
        "SIGTERM landed {}",
        if mid_pass {
            "mid-pass"
        } else {
            "after the pass"
        }
    );
}
