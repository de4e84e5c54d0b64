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
    let cfg = tempfile::tempdir().unwrap();
    let cfg_file = cfg.path().join("forksafe.toml");
    std::fs::write(
        &cfg_file,
        "[sysctl]\n\"vm.overcommit_memory\" = 1\n\"vm.dirty_background_ratio\" = \"not-a-number\"\n\
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
    assert!(err.contains("vm.dirty_background_ratio: cannot write /proc/sys/vm/dirty_background_ratio: the kernel refused the value (EINVAL)"), "{err}");
    assert_eq!(read_knob(REAL_KNOBS[0]), "1");
    assert_eq!(read_knob("/proc/sys/vm/dirty_background_ratio"), ratio);
    drop(guard);
}
