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
    tree.drift_overcommit_until_repaired("the repair under the running config");
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
    tree.drift_overcommit_until_repaired("a repair after the storm");
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

/// A full /etc/sysctl.d does not feed itself: each failed write of the drop-in makes and
/// removes a temp file (events in the directory the daemon watches), and the daemon tries
/// again after 1 s, 2 s, 4 s, ..., not at once. Counted in surveys over 6 s (a write that
/// fed itself made thousands), and the failure is said once.
#[test]
fn a_full_sysctl_d_does_not_spin_the_daemon() {
    if !needs(
        "a_full_sysctl_d_does_not_spin_the_daemon needs root and unshare(1)",
        can_unshare(),
    ) {
        return;
    }
    let tree = Tree::new("01-drift");
    tree.write(
        "etc/forksafe/forksafe.toml",
        "[daemon]\ninterval = \"100ms\"\n[sysctl]\n\"vm.overcommit_memory\" = 1\n",
    );
    let dir = tree.path("etc/sysctl.d");
    std::fs::create_dir_all(&dir).unwrap();
    let script = format!(
        "d={dir}; mount -t tmpfs -o size=64k tmpfs $d; \
         dd if=/dev/zero of=$d/.fill bs=4k count=100 2>/dev/null; \
         FORKSAFE_LOG=debug timeout --preserve-status -s TERM 6 {BIN} --root {root} run; echo \"exit=$?\"",
        dir = dir.display(),
        root = tree.root().display()
    );
    let o = in_mount_namespace(&script);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(out.contains("exit=0"), "{out}{err}");
    let surveys = err.matches("surveyed sysctl.d").count();
    let writes = err
        .matches("surveyed sysctl.d (drop-in written: true)")
        .count();
    // At start, then after 1, 2 (3 s), 4 (7 s: past the end) seconds.
    assert!(
        (2..=6).contains(&writes),
        "{writes} write attempts in 6 s:\n{err}"
    );
    assert!(surveys <= 12, "{surveys} surveys in 6 s:\n{err}");
    assert_eq!(err.matches("No space left on device").count(), 1, "{err}");
    // The knob was set all the same.
    assert_eq!(tree.read(OVERCOMMIT), "1\n");
}

/// Every resource that runs out is said once, and the poll takes over: with one inotify
/// watch allowed (a user namespace's own limit), the daemon says it cannot watch (once),
/// and a drift is still repaired, by the poll.
#[test]
fn no_inotify_watches_left_is_said_once_and_the_poll_repairs() {
    let userns = std::process::Command::new("unshare")
        .args([
            "-Ur",
            "sh",
            "-c",
            "echo 1 > /proc/sys/user/max_inotify_watches",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !needs(
        "no_inotify_watches_left_is_said_once_and_the_poll_repairs needs unshare -U and a user namespace's inotify limit",
        userns,
    ) {
        return;
    }
    let tree = Tree::new("02-in-spec");
    tree.write(
        "etc/forksafe/forksafe.toml",
        "[daemon]\ninterval = \"100ms\"\n[sysctl]\n\"vm.overcommit_memory\" = 1\n\
         [sysfs]\n\"kernel/mm/transparent_hugepage/enabled\" = \"never\"\n\
         \"kernel/mm/transparent_hugepage/defrag\" = \"never\"\n",
    );
    let script = format!("echo 1 > /proc/sys/user/max_inotify_watches && exec {BIN} \"$@\"");
    let wrap = ["unshare", "-Ur", "sh", "-c", script.as_str(), "sh"];
    let d = Daemon::start_full(tree.root(), &[], &[], Some(&wrap), false);
    d.wait_message("READY=1");
    tree.drift_overcommit_until_repaired("the repair by the poll");
    tree.set(&format!("{THP}/defrag"), "always madvise [never]\n");
    tree.set(&format!("{THP}/defrag"), "[always] madvise never\n");
    wait_for("the second repair", || {
        tree.read(&format!("{THP}/defrag")) == "never\n"
    });
    let (code, log) = d.stop();
    assert_eq!(code, 0, "{log}");
    assert_eq!(count(&log, "cannot watch"), 1, "{log}");
    assert!(log.contains("max_user_watches"), "{log}");
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

/// Run a command, killing it if it is still running after PATIENCE: a test of "never
/// blocks" must not block the test suite when it fails.
fn run_bounded(cmd: &mut Command) -> std::process::Output {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = {
        let done = std::sync::Arc::clone(&done);
        std::thread::spawn(move || {
            let start = std::time::Instant::now();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                if start.elapsed() > PATIENCE {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        Signal::SIGKILL,
                    );
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            false
        })
    };
    let out = child.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(
        !watchdog.join().unwrap(),
        "the command blocked and was killed"
    );
    out
}

fn mkfifo(path: &std::path::Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
}

/// Something that is not a regular file at the config path is refused at once at start,
/// with the file named; on reload the running config stays and the daemon goes on.
#[test]
fn a_fifo_or_device_at_the_config_path_never_blocks() {
    type Setup = fn(&std::path::Path);
    let cases: &[(&str, Setup, &str)] = &[
        ("FIFO", |p| mkfifo(p), "not a regular file (a FIFO)"),
        (
            "directory",
            |p| std::fs::create_dir(p).unwrap(),
            "a directory",
        ),
        (
            "character device",
            |p| std::os::unix::fs::symlink("/dev/zero", p).unwrap(),
            "a character device",
        ),
        (
            "2 MiB file",
            |p| std::fs::write(p, vec![b'#'; 2 << 20]).unwrap(),
            "too large (2097152 bytes",
        ),
    ];
    for (what, setup, says) in cases {
        let tree = Tree::new("01-drift");
        std::fs::create_dir_all(tree.path("etc/forksafe")).unwrap();
        setup(&tree.path(CONFIG));
        let before = tree.snapshot();
        let o = run_bounded(Command::new(BIN).arg("--root").arg(tree.root()).arg("run"));
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{what}: {err}");
        assert!(
            err.contains("forksafe.toml") && err.contains(says),
            "{what}: {err}"
        );
        assert_eq!(tree.snapshot(), before, "{what}: something was written");
    }

    // A running daemon, its config replaced by a FIFO, then SIGHUP: it keeps going.
    let tree = Tree::new("02-in-spec");
    tree.write(CONFIG, MINI);
    let d = Daemon::start(tree.root(), &[]);
    d.wait_message("READY=1");
    std::fs::remove_file(tree.path(CONFIG)).unwrap();
    mkfifo(&tree.path(CONFIG));
    d.signal(Signal::SIGHUP);
    d.wait_message("READY=1");
    tree.drift_overcommit_until_repaired("a repair after the FIFO reload");
    let (code, log) = d.stop();
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("configuration rejected, the running one stays in force")
            && log.contains("not a regular file (a FIFO)"),
        "{log}"
    );
}

/// A FIFO among the sysctl.d files: check returns at once and says what systemd-sysctl
/// does with it (it blocks at boot and applies nothing); the daemon's rescan does not hang.
#[test]
fn a_fifo_in_sysctl_d_never_blocks() {
    let tree = Tree::new("02-in-spec");
    tree.write(CONFIG, &MINI.replace("manage = false", "manage = true"));
    std::fs::create_dir_all(tree.path("etc/sysctl.d")).unwrap();
    mkfifo(&tree.path("etc/sysctl.d/10-fifo.conf"));
    let o = run_bounded(
        Command::new(BIN)
            .arg("--root")
            .arg(tree.root())
            .arg("check"),
    );
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("sysctl.d: /etc/sysctl.d/10-fifo.conf is a FIFO: systemd-sysctl blocks"),
        "{out}"
    );
    assert!(
        out.contains("the next boot sets nothing from sysctl.d"),
        "{out}"
    );

    let d = Daemon::start(tree.root(), &[]);
    d.wait_message("READY=1");
    // A second FIFO while it runs: inotify makes it re-read sysctl.d at once.
    mkfifo(&tree.path("etc/sysctl.d/20-fifo.conf"));
    wait_for("the second FIFO reported", || {
        d.log().contains("20-fifo.conf is a FIFO")
    });
    tree.drift_overcommit_until_repaired("a repair");
    let (code, log) = d.stop();
    assert_eq!(code, 0, "{log}");
}

/// The trust checks follow the file that is really opened: a root-owned symlink to a file in
/// a world-writable directory is refused; a Kubernetes ConfigMap's layout (links into a
/// `..data` directory, all root's and not writable by others) is accepted.
#[test]
fn trust_is_checked_where_the_file_really_is() {
    if !needs(
        "trust_is_checked_where_the_file_really_is needs root (ownership checks apply to root)",
        is_root(),
    ) {
        return;
    }
    let tree = Tree::new("02-in-spec");
    std::fs::create_dir_all(tree.path("etc/forksafe")).unwrap();
    std::fs::create_dir_all(tree.path("tmp/open")).unwrap();
    chmod(&tree.path("tmp/open"), 0o777);
    tree.write("tmp/open/forksafe.toml", MINI);
    chmod(&tree.path("tmp/open/forksafe.toml"), 0o644);
    std::os::unix::fs::symlink("../../tmp/open/forksafe.toml", tree.path(CONFIG)).unwrap();
    let o = tree.run(&["check"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("tmp/open is group- or world-writable"),
        "{err}"
    );

    // A ConfigMap volume: forksafe.toml -> ..data/forksafe.toml, ..data -> ..2026_11_22_..
    let tree = Tree::new("02-in-spec");
    let cm = tree.path("etc/forksafe");
    std::fs::create_dir_all(cm.join("..2026_11_22_10_00_00.123")).unwrap();
    std::fs::write(cm.join("..2026_11_22_10_00_00.123/forksafe.toml"), MINI).unwrap();
    std::os::unix::fs::symlink("..2026_11_22_10_00_00.123", cm.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/forksafe.toml", cm.join("forksafe.toml")).unwrap();
    let o = tree.run(&["check"]);
    assert_ne!(o.status.code(), Some(2), "{}", text(&o.stderr));
    // ... and refused when the ConfigMap's file is writable by others.
    chmod(&cm.join("..2026_11_22_10_00_00.123/forksafe.toml"), 0o666);
    let o = tree.run(&["check"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("chmod go-w"),
        "{}",
        text(&o.stderr)
    );
}

/// journald that never reads (its socket's queue full): the daemon drops entries rather
/// than wait, keeps repairing, stops on SIGTERM, and says how many it dropped once the
/// journal takes entries again. The journal socket is ours, bound over
/// /run/systemd/journal/socket in a private mount namespace.
#[test]
fn a_stalled_journald_never_blocks_the_loop() {
    if !needs(
        "a_stalled_journald_never_blocks_the_loop needs root and unshare(1)",
        can_unshare(),
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("journal.sock");
    let journal = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    let tree = Tree::new("02-in-spec");
    tree.write(CONFIG, MINI);
    let script = format!(
        "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && \
         touch /run/systemd/journal/socket && \
         mount --bind {sock} /run/systemd/journal/socket && exec {BIN} \"$@\"",
        sock = sock_path.display()
    );
    let wrap = mount_namespace_argv(&script);
    let d = Daemon::start_full(tree.root(), &[], &[], Some(&wrap), true);
    d.wait_message("READY=1");
    // Nobody reads the journal: each reload logs a line; 40 of them overflow its queue
    // (10 datagrams by default). Repairs go on all the while.
    for i in 0..40 {
        d.signal(Signal::SIGHUP);
        d.wait_message("READY=1");
        tree.drift_overcommit_until_repaired(&format!("repair {i} with the journal stalled"));
    }
    // The journal is back: drain it, make one more entry, and find the count of the lost.
    journal.set_nonblocking(true).unwrap();
    let mut buf = vec![0u8; 65536];
    let mut first = 0;
    while journal.recv(&mut buf).is_ok() {
        first += 1;
    }
    journal.set_nonblocking(false).unwrap();
    journal
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    d.signal(Signal::SIGHUP);
    d.wait_message("READY=1");
    let mut later = String::new();
    while let Ok(n) = journal.recv(&mut buf) {
        later.push_str(&String::from_utf8_lossy(&buf[..n]));
        if later.contains("were dropped") {
            break;
        }
    }
    let (code, log) = d.stop();
    assert_eq!(code, 0, "{log}");
    assert!(
        first > 0 && first < 40,
        "the journal queued {first} entries"
    );
    assert!(
        later.contains("MESSAGE=journald was not taking entries:")
            && later.contains("were dropped"),
        "{later}"
    );
    assert!(
        later.contains("MESSAGE_ID=6ac561a86c0f4b88b0f6f82163653389"),
        "{later}"
    );
    // Nothing went to stderr instead: it may be the very journal stream that is stalled.
    assert!(!log.contains("configuration reloaded"), "{log}");
}
