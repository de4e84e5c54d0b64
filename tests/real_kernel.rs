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
use forksafe::knob::normalize;
use std::fs::OpenOptions;
use std::io::Write;
use std::process::Command;

const KNOBS: [&str; 3] = [
    "/proc/sys/vm/overcommit_memory",
    "/sys/kernel/mm/transparent_hugepage/defrag",
    "/sys/kernel/mm/transparent_hugepage/enabled",
];

fn read(path: &str) -> String {
    normalize(&std::fs::read_to_string(path).unwrap())
}

fn write(path: &str, value: &str) -> std::io::Result<()> {
    OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(format!("{value}\n").as_bytes())
}

/// Puts the saved values back when dropped.
struct Restore(Vec<(&'static str, String)>);

impl Drop for Restore {
    fn drop(&mut self) {
        // enabled before defrag on the way back is fine: we only restore what was there.
        for (path, value) in self.0.iter().rev() {
            if let Err(e) = write(path, value) {
                eprintln!("FAILED to restore {path} to {value}: {e}");
            }
        }
    }
}

fn why_not() -> Option<String> {
    if !is_root() {
        return Some("not root".into());
    }
    for k in KNOBS {
        if let Err(e) = OpenOptions::new().write(true).open(k) {
            return Some(format!("{k} is not writable here: {e}"));
        }
    }
    None
}

#[test]
fn apply_on_the_real_kernel() {
    if let Some(why) = why_not() {
        eprintln!(
            "SKIPPED apply_on_the_real_kernel: {why}; this test needs root and a writable /proc/sys and THP"
        );
        return;
    }
    let saved: Vec<(&str, String)> = KNOBS.iter().map(|k| (*k, read(k))).collect();
    eprintln!("real kernel before: {saved:?}");
    let guard = Restore(saved.clone());

    // Start from the drifted state, whatever this machine had, so apply must write.
    write(KNOBS[0], "0").unwrap();
    write(KNOBS[1], "madvise").unwrap();
    write(KNOBS[2], "madvise").unwrap();

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
    assert_eq!(read(KNOBS[0]), "1");
    assert_eq!(read(KNOBS[1]), "never");
    assert_eq!(read(KNOBS[2]), "never");
    assert_eq!(run("check").status.code(), Some(0));

    drop(guard);
    for (path, value) in &saved {
        assert_eq!(&read(path), value, "{path} was not restored");
    }
}
