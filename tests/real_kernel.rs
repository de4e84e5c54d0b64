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
    let cfg = tempfile::tempdir().unwrap();
    let cfg_file = cfg.path().join("forksafe.toml");
    std::fs::write(
        &cfg_file,
        "[sysctl]\n\"vm.overcommit_memory\" = 1\n\
         [sysfs]\n\"kernel/mm/transparent_hugepage/enabled\" = \"never\"\n\
         \"kernel/mm/transparent_hugepage/defrag\" = \"never\"\n\
         [sysctl_d]\nmanage = false\n",
    )
    .unwrap();

    let run = |cmd: &str| {
        Command::new(BIN)
            .args(["--root", "/", "--config"])
            .arg(&cfg_file)
            .arg(cmd)
            .env_remove("NOTIFY_SOCKET")
            .output()
            .unwrap()
    };
    assert_eq!(run("check").status.code(), Some(1));
    let o = run("apply");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert_eq!(read_knob(REAL_KNOBS[0]), "1");
    assert_eq!(read_knob(REAL_KNOBS[1]), "never");
    assert_eq!(read_knob(REAL_KNOBS[2]), "never");
    assert_eq!(run("check").status.code(), Some(0));

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
    let swappiness = read_knob("/proc/sys/vm/swappiness");
    write_knob(REAL_KNOBS[0], "0").unwrap();
    let cfg = tempfile::tempdir().unwrap();
    let cfg_file = cfg.path().join("forksafe.toml");
    std::fs::write(
        &cfg_file,
        "[sysctl]\n\"vm.overcommit_memory\" = 1\n\"vm.swappiness\" = \"not-a-number\"\n\
         [sysctl_d]\nmanage = false\n",
    )
    .unwrap();
    let o = Command::new(BIN)
        .args(["--root", "/", "--config"])
        .arg(&cfg_file)
        .arg("apply")
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("vm.swappiness: cannot write /proc/sys/vm/swappiness: the kernel refused the value (EINVAL)"), "{err}");
    assert_eq!(read_knob(REAL_KNOBS[0]), "1");
    assert_eq!(read_knob("/proc/sys/vm/swappiness"), swappiness);
    drop(guard);
}
