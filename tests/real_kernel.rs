//! `forksafe apply` against the real kernel (`--root /`). Runs only as root with a writable
//! /proc/sys and THP present; saves the three real values first and restores them whatever
//! happens (a Drop guard, so a failed assertion restores too).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;
use std::fs::OpenOptions;
use std::process::Command;

fn why_not() -> Option<String> {
    if !is_root() {
        return Some("not root".into());
    }
    for k in REAL_KNOBS {
        if let Err(e) = OpenOptions::new().write(true).open(k) {
            return Some(format!("{k} is not writable here: {e}"));
        }
    }
    None
}

/// The tests here share one kernel: one at a time.
static KERNEL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn apply_on_the_real_kernel() {
    let _one_at_a_time = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = why_not() {
        eprintln!(
            "SKIPPED apply_on_the_real_kernel: {why}; this test needs root and a writable /proc/sys and THP"
        );
        return;
    }
    let guard = Restore::save();
    let saved = guard.0.clone();
    eprintln!("real kernel before: {saved:?}");

    // Start from the drifted state, whatever this machine had, so apply must write.
    write_knob(REAL_KNOBS[0], "0").unwrap();
    write_knob(REAL_KNOBS[1], "madvise").unwrap();
    write_knob(REAL_KNOBS[2], "madvise").unwrap();

    // No drop-in: this test is about the kernel, and must leave /etc alone.
    let (_cfg, cfg_file) = config_file(
        "[sysctl]\n\"vm.overcommit_memory\" = 1\n\
         [sysfs]\n\"kernel/mm/transparent_hugepage/enabled\" = \"never\"\n\
         \"kernel/mm/transparent_hugepage/defrag\" = \"never\"\n\
         [sysctl_d]\nmanage = false\n",
    );

    let run = |cmd: &str| {
        Command::new(BIN)
            .args(["--root", "/", "--config"])
            .arg(&cfg_file)
            .arg(cmd)
            .env_remove("NOTIFY_SOCKET")
            .output()
            .unwrap()
    };
    // The runtime status of each knob (whatever this machine's sysctl.d says about the next
    // boot: with manage = false that is judged too, and is not this test's business).
    let statuses = |o: std::process::Output| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["knobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| match k["status"].as_str().unwrap() {
                "boot-drift" => "ok".to_string(),
                s => s.to_string(),
            })
            .collect()
    };
    assert_eq!(run("check").status.code(), Some(1));
    let o = run("apply");
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert!(!text(&o.stderr).contains("cannot"), "{}", text(&o.stderr));
    assert_eq!(read_knob(REAL_KNOBS[0]), "1");
    assert_eq!(read_knob(REAL_KNOBS[1]), "never");
    assert_eq!(read_knob(REAL_KNOBS[2]), "never");
    let json = |cmd: &str| {
        Command::new(BIN)
            .args(["--root", "/", "--config"])
            .arg(&cfg_file)
            .args([cmd, "--json"])
            .env_remove("NOTIFY_SOCKET")
            .output()
            .unwrap()
    };
    assert_eq!(statuses(json("check")), ["ok", "ok", "ok"]);

    drop(guard);
    for (path, value) in &saved {
        assert_eq!(&read_knob(path), value, "{path} was not restored");
    }
}

/// EINVAL, for real: the kernel refuses a value, the error says so, the other knobs are
/// still enforced, and the refused knob keeps its value.
#[test]
fn the_kernel_refuses_a_value() {
    let _one_at_a_time = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = why_not() {
        eprintln!("SKIPPED the_kernel_refuses_a_value: {why}");
        return;
    }
    let guard = Restore::save();
    let ratio = read_knob("/proc/sys/vm/dirty_background_ratio");
    write_knob(REAL_KNOBS[0], "0").unwrap();
    let (_cfg, cfg_file) = config_file(
        "[sysctl]\n\"vm.overcommit_memory\" = 1\n\"vm.dirty_background_ratio\" = \"not-a-number\"\n\
         [sysctl_d]\nmanage = false\n",
    );
    let o = Command::new(BIN)
        .args(["--root", "/", "--config"])
        .arg(&cfg_file)
        .arg("apply")
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("vm.dirty_background_ratio: cannot write /proc/sys/vm/dirty_background_ratio: the kernel refused the value (EINVAL)"), "{err}");
    assert_eq!(read_knob(REAL_KNOBS[0]), "1");
    assert_eq!(read_knob("/proc/sys/vm/dirty_background_ratio"), ratio);
    drop(guard);
}

/// A config file in a fresh directory of its own (mode 0700, so the daemon trusts it),
/// kept while the returned directory lives.
fn config_file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("forksafe.toml");
    std::fs::write(&file, text).unwrap();
    (dir, file)
}

/// `forksafe run` on this machine (root /) with the config file `cfg`.
fn daemon_on_host(cfg: &std::path::Path) -> Daemon {
    Daemon::start_args(
        std::path::Path::new("/"),
        &["--config", cfg.to_str().unwrap()],
        &[],
        None,
    )
}

/// IN_MODIFY events on a kernel file, counted by a thread that drains them every 5 ms (the
/// kernel merges an event into an identical one still unread, so counting at the end would
/// hide writes).
struct Writes {
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Writes {
    fn watch(path: &str) -> Writes {
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        use std::sync::atomic::Ordering;
        let ino = Inotify::init(InitFlags::IN_NONBLOCK).unwrap();
        ino.add_watch(path, AddWatchFlags::IN_MODIFY).unwrap();
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (c, s) = (count.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                while let Ok(events) = ino.read_events() {
                    if events.is_empty() {
                        break;
                    }
                    c.fetch_add(events.len(), Ordering::SeqCst);
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        });
        Writes { count, stop }
    }

    /// Events since the last call.
    fn take(&self) -> usize {
        self.count.swap(0, std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Writes {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A write the kernel accepts and adjusts (fs.pipe-max-size rounds up to a power of two of
/// pages: 5000 reads back 8192): reported once with both values, and not written again at
/// every tick while the knob still reads what the kernel made of it; written again once
/// something changes it, and at the once-a-minute rescan. Writes are counted with inotify.
#[test]
fn a_value_the_kernel_adjusts_is_reported_once_and_not_rewritten() {
    let _one_at_a_time = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = why_not() {
        eprintln!("SKIPPED a_value_the_kernel_adjusts_is_reported_once_and_not_rewritten: {why}");
        return;
    }
    const PIPE: &str = "/proc/sys/fs/pipe-max-size";
    let saved = read_knob(PIPE);
    struct Put(String);
    impl Drop for Put {
        fn drop(&mut self) {
            let _ = write_knob(PIPE, &self.0);
        }
    }
    let _put_back = Put(saved);
    let (_cfg, cfg_file) = config_file(
        "[daemon]\ninterval = \"50ms\"\n[sysctl]\n\"fs.pipe-max-size\" = \"5000\"\n\
         [sysctl_d]\nmanage = false\n",
    );
    let writes = Writes::watch(PIPE);
    let d = daemon_on_host(&cfg_file);
    d.wait_message("READY=1");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let first = writes.take();
    std::thread::sleep(std::time::Duration::from_secs(1)); // 20 ticks
    let idle = writes.take();
    // Something changes it: the daemon writes again, WRITE_TRIES times (the kernel makes it
    // 8192 each time), then holds off again.
    write_knob(PIPE, "16384").unwrap();
    wait_for("the retry", || read_knob(PIPE) == "8192");
    std::thread::sleep(std::time::Duration::from_millis(100));
    writes.take();
    std::thread::sleep(std::time::Duration::from_secs(1));
    let idle_again = writes.take();
    // At the once-a-minute rescan it is written again (a writer that won three races in a
    // row and stopped must not keep a knob wrong), and, the kernel's answer being the same,
    // nothing more is said.
    let rescan = std::time::Instant::now();
    while writes.take() == 0 {
        assert!(
            rescan.elapsed() < std::time::Duration::from_secs(90),
            "not written again within 90 s (the rescan is every 60 s):\n{}",
            d.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (code, log) = d.stop();
    assert_eq!(code, 0, "{log}");
    // The first repair: WRITE_TRIES writes back to back (the log line says so), which the
    // kernel may merge into fewer unread events; then none.
    assert!(
        (1..=forksafe::WRITE_TRIES).contains(&first),
        "{first} events for the first repair:\n{log}"
    );
    assert_eq!(idle, 0, "the daemon wrote {idle} times in 20 ticks:\n{log}");
    assert_eq!(
        idle_again, 0,
        "the daemon wrote {idle_again} times after the retry:\n{log}"
    );
    assert_eq!(
        count(
            &log,
            "wrote \"5000\", the kernel reports \"8192\" after each of 3 writes: the kernel \
             adjusts the value (or something rewrites it at once, every time); not written \
             again while it reads \"8192\""
        ),
        1,
        "{log}"
    );
}

/// A write through another mount of procfs (another superblock, so no inotify event on the
/// daemon's watch) is still repaired, by the poll. Counted: the daemon's own watch would see
/// such a write and the repair (2 events); ours sees only the repair (1).
#[test]
fn a_write_no_event_reports_is_repaired_by_the_poll() {
    let _one_at_a_time = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = why_not() {
        eprintln!("SKIPPED a_write_no_event_reports_is_repaired_by_the_poll: {why}");
        return;
    }
    if !can_unshare() {
        eprintln!("SKIPPED a_write_no_event_reports_is_repaired_by_the_poll: needs unshare(1)");
        return;
    }
    let guard = Restore::save();
    let (_cfg, cfg_file) = config_file(
        "[daemon]\ninterval = \"300ms\"\n[sysctl]\n\"vm.overcommit_memory\" = 1\n\
         [sysctl_d]\nmanage = false\n",
    );
    let d = daemon_on_host(&cfg_file);
    d.wait_message("READY=1");
    let writes = Writes::watch(REAL_KNOBS[0]);
    std::thread::sleep(std::time::Duration::from_millis(50));
    writes.take();
    let mnt = tempfile::tempdir().unwrap();
    let o = in_mount_namespace(&format!(
        "mount -t proc proc {m} && echo 0 > {m}/sys/vm/overcommit_memory",
        m = mnt.path().display()
    ));
    assert!(o.status.success(), "{}", text(&o.stderr));
    wait_for("the poll to repair it", || read_knob(REAL_KNOBS[0]) == "1");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let seen = writes.take();
    let (code, log) = d.stop();
    drop(guard);
    assert_eq!(code, 0, "{log}");
    assert_eq!(seen, 1, "only the repair raises an event here:\n{log}");
    assert_eq!(
        count(&log, "vm.overcommit_memory: drifted to 0, set back to 1"),
        1,
        "{log}"
    );
}

/// The undo `apply` prints is exact: run as printed (procps' sysctl, a shell's echo), it
/// puts each value it changed back, THP included.
#[test]
fn apply_prints_an_undo_that_puts_every_value_back() {
    let _one_at_a_time = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = why_not() {
        eprintln!(
            "SKIPPED apply_prints_an_undo_that_puts_every_value_back: {why}; this test needs root and a writable /proc/sys and THP"
        );
        return;
    }
    if Command::new("sysctl").arg("--version").output().is_err() {
        eprintln!("SKIPPED apply_prints_an_undo_that_puts_every_value_back: no sysctl(8) (procps)");
        return;
    }
    let _guard = Restore::save();
    let before = ["0", "madvise", "madvise"];
    for (k, v) in REAL_KNOBS.iter().zip(before) {
        write_knob(k, v).unwrap();
    }
    let (_cfg, cfg_file) = config_file(
        "[sysctl]\n\"vm.overcommit_memory\" = 1\n\
         [sysfs]\n\"kernel/mm/transparent_hugepage/enabled\" = \"never\"\n\
         \"kernel/mm/transparent_hugepage/defrag\" = \"never\"\n\
         [sysctl_d]\nmanage = false\n",
    );
    let o = Command::new(BIN)
        .args(["--root", "/", "--config"])
        .arg(&cfg_file)
        .args(["apply", "--no-persist"])
        .output()
        .unwrap();
    let out = text(&o.stdout);
    let now: Vec<String> = REAL_KNOBS.iter().map(|k| read_knob(k)).collect();
    assert_eq!(now, ["1", "never", "never"], "{out}");
    let undo = out
        .lines()
        .find_map(|l| l.strip_prefix("to undo: "))
        .unwrap_or_else(|| panic!("no undo in:\n{out}"));
    let o = Command::new("sh").args(["-ec", undo]).output().unwrap();
    assert!(o.status.success(), "{undo}: {}", text(&o.stderr));
    let after: Vec<String> = REAL_KNOBS.iter().map(|k| read_knob(k)).collect();
    assert_eq!(after, before, "{undo}");
}
