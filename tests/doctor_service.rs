//! doctor's `service` check tells the truth: a forksafe daemon counts only when it holds
//! doctor's root with doctor's config, and its own mode is reported. A real `forksafe run`
//! holding another root (a fixture tree: what any local user can start) never makes this
//! machine look held; a real daemon on this machine's root, in audit mode (it writes
//! nothing but its state file), is found, with its mode, and with another config than
//! doctor's is said to be so.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;
use serde_json::Value;
use std::process::Command;

fn service(args: &[&str]) -> (String, String, Option<String>) {
    let o = Command::new(BIN).args(args).output().unwrap();
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&o.stdout), text(&o.stderr)));
    let c = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "service")
        .cloned()
        .unwrap();
    (
        c["status"].as_str().unwrap().to_string(),
        c["message"].as_str().unwrap().to_string(),
        c["fix"].as_str().map(str::to_string),
    )
}

#[test]
fn a_daemon_holding_another_root_does_not_count() {
    if !is_root() {
        eprintln!(
            "SKIPPED a_daemon_holding_another_root_does_not_count: needs root (/proc/PID/root of the daemon)"
        );
        return;
    }
    let tree = Tree::new("01-drift");
    let fake = Daemon::start(tree.root(), &[]);
    fake.wait_message("READY=1");
    let pid = fake.pid();
    // A real daemon, holding its own tree: it does not hold this machine's root, whatever
    // else runs here.
    let (status, msg, _) = service(&["--root", "/", "doctor", "--json"]);
    assert!(!msg.contains(&format!("(pid {pid})")), "{status}: {msg}");
    if msg.contains("no forksafe daemon holds this root") {
        assert_eq!(status, "warn");
        assert!(
            msg.contains(&format!("pid {pid} holds {}", tree.root().display())),
            "{msg}"
        );
    }
}

#[test]
fn the_daemon_on_this_root_is_found_with_its_own_mode_and_config() {
    if !is_root() {
        eprintln!(
            "SKIPPED the_daemon_on_this_root_is_found_with_its_own_mode_and_config: needs root"
        );
        return;
    }
    // A state file whose daemon is gone (killed) does not hold the machine.
    let live = std::fs::read_to_string("/run/forksafe/state.json")
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .and_then(|v| v["pid"].as_u64())
        .is_some_and(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "forksafe\n")
        });
    if live {
        eprintln!(
            "SKIPPED the_daemon_on_this_root_is_found_with_its_own_mode_and_config: another forksafe daemon holds this machine"
        );
        return;
    }
    // Audit mode, no drop-in: it reads the real knobs and writes nothing but its state.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("forksafe.toml");
    std::fs::write(
        &config,
        "[daemon]\nrepair = false\n[sysctl]\n\"vm.overcommit_memory\" = 1\n[sysctl_d]\nmanage = false\n",
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let daemon = Daemon::start_args(std::path::Path::new("/"), &["--config", c], &[], None);
    daemon.wait_message("READY=1");
    let pid = daemon.pid();
    wait_for("its state", || {
        std::fs::read_to_string("/run/forksafe/state.json").is_ok_and(|s| s.contains("\"repair\""))
    });
    let (status, msg, fix) = service(&["--root", "/", "--config", c, "doctor", "--json"]);
    assert_eq!(status, "warn", "{msg}");
    assert!(
        msg.contains(&format!("(pid {pid}) is running in audit mode")),
        "{msg}"
    );
    assert!(fix.unwrap().contains("repair = true"));
    // Another config than doctor's: said, with the daemon's mode and how to judge by its.
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "[sysctl]\n\"vm.overcommit_memory\" = 1\n").unwrap();
    let (status, msg, fix) = service(&[
        "--root",
        "/",
        "--config",
        other.to_str().unwrap(),
        "doctor",
        "--json",
    ]);
    assert_eq!(status, "warn", "{msg}");
    assert!(
        msg.contains(&format!(
            "(pid {pid}) holds this root with another config ({c}"
        )) && msg.contains("in audit mode"),
        "{msg}"
    );
    assert!(
        fix.unwrap()
            .contains(&format!("give doctor the same file: --config {c}"))
    );
    let (code, _) = daemon.stop();
    assert_eq!(code, 0);
}
