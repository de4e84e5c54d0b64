//! `forksafe doctor` on fixture trees, one per verdict: status, evidence and fix.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;
use serde_json::Value;

/// (id, status, a fragment of the message, a fragment of the fix or "" for none)
type Expect = (&'static str, &'static str, &'static str, &'static str);

const CASES: &[(&str, i32, &[Expect])] = &[
    (
        "30-doctor-safe",
        0,
        &[
            ("overcommit", "ok", "is 1", ""),
            ("thp-enabled", "ok", "never", ""),
            ("thp-defrag", "ok", "never", ""),
            ("thp-per-size", "ok", "no per-size", ""),
            ("thp-cmdline", "ok", "not on the kernel command line", ""),
            ("sysctl-d", "ok", "/etc/sysctl.d/99-zz-forksafe.conf:2", ""),
            ("swap", "ok", "swap 4096 MiB", ""),
            ("thp-process:4242", "ok", "disabled for this process", ""),
            ("fork-headroom:4242", "ok", "never refused", ""),
            ("cow-worst-case:4242", "ok", "fits in MemAvailable", ""),
            ("cgroup-limit:4242", "ok", "no memory limit", ""),
            ("service", "ok", "running in repair mode", ""),
        ],
    ),
    (
        // Overcommit 0 with a large Redis on a RHEL 8 kernel: the classic refusal.
        "31-doctor-overcommit0-old-kernel",
        1,
        &[
            (
                "overcommit",
                "fail",
                "(< 5.2) a fork is refused",
                "forksafe apply",
            ),
            (
                "fork-headroom:4242",
                "fail",
                "the child needs 2051 MiB",
                "vm.overcommit_memory = 1",
            ),
            (
                "fork-headroom:4242",
                "fail",
                "free + page cache + swap (871 MiB): the fork would be refused",
                "",
            ),
            (
                "sysctl-d",
                "fail",
                "the next boot starts with the kernel default 0",
                "forksafe apply",
            ),
            ("swap", "warn", "no swap", "add swap"),
            (
                "cow-worst-case:4242",
                "warn",
                "MemAvailable is 879 MiB",
                "maxmemory",
            ),
            (
                "service",
                "warn",
                "not installed",
                "install the forksafe package",
            ),
        ],
    ),
    (
        "32-doctor-mode2-commitlimit",
        1,
        &[
            (
                "overcommit",
                "fail",
                "is 2 (never overcommit)",
                "forksafe apply",
            ),
            (
                "fork-headroom:4242",
                "fail",
                "Committed_AS 2441 MiB + the child's private writable 2051 MiB > CommitLimit 3906 MiB",
                "overcommit_memory = 1",
            ),
        ],
    ),
    (
        "33-doctor-thp-always",
        1,
        &[
            ("thp-enabled", "fail", "always on", "restart the database"),
            (
                "thp-cmdline",
                "warn",
                "transparent_hugepage=always",
                "GRUB_CMDLINE_LINUX",
            ),
            (
                "thp-process:4242",
                "warn",
                "1024 MiB in transparent huge pages",
                "restart it",
            ),
        ],
    ),
    (
        "34-doctor-per-size-escape",
        1,
        &[(
            "thp-per-size",
            "fail",
            "hugepages-2048kB is always, hugepages-64kB is madvise",
            "hugepages-*/enabled",
        )],
    ),
    (
        "35-doctor-cgroup-limit",
        1,
        &[(
            "cgroup-limit:4242",
            "fail",
            "2861 MiB (/sys/fs/cgroup/system.slice/redis-server.service/memory.max) is below 2 x RSS (3906 MiB)",
            "at least 2 x the dataset",
        )],
    ),
    (
        // cgroup v1 (a container): the memory controller's limit_in_bytes.
        "37-doctor-cgroup-v1",
        1,
        &[(
            "cgroup-limit:4242",
            "fail",
            "2048 MiB (/sys/fs/cgroup/memory/docker/abc123/memory.limit_in_bytes) is below 2 x RSS",
            "at least 2 x the dataset",
        )],
    ),
    // No swap is a warning: still fork-safe, exit 0.
    (
        "36-doctor-no-swap",
        0,
        &[("swap", "warn", "no swap", "add swap")],
    ),
];

#[test]
fn doctor_verdicts() {
    for (fixture, code, expects) in CASES {
        let tree = Tree::new(fixture);
        let o = tree.run(&["doctor", "--json"]);
        assert_eq!(
            o.status.code(),
            Some(*code),
            "{fixture}: {}",
            text(&o.stderr)
        );
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["safe"], *code == 0, "{fixture}");
        let checks = v["checks"].as_array().unwrap();
        for (id, status, message, fix) in *expects {
            let c = checks
                .iter()
                .find(|c| c["id"] == *id)
                .unwrap_or_else(|| panic!("{fixture}: no check {id} in {v:#}"));
            assert_eq!(c["status"], *status, "{fixture} {id}: {c:#}");
            assert!(
                c["message"].as_str().unwrap().contains(message),
                "{fixture} {id}: {c:#}"
            );
            match fix.is_empty() {
                true if *status == "ok" => assert_eq!(c["fix"], Value::Null, "{fixture} {id}"),
                true => {}
                false => assert!(
                    c["fix"].as_str().unwrap().contains(fix),
                    "{fixture} {id}: {c:#}"
                ),
            }
        }
        // The human report says the same, with the fix under each problem.
        let human = text(&tree.run(&["doctor"]).stdout);
        let verdict = if *code == 0 {
            "can fork its database safely"
        } else {
            "is NOT fork-safe"
        };
        assert!(human.contains(verdict), "{fixture}:\n{human}");
        for (id, status, _, fix) in *expects {
            if *status != "ok" {
                assert!(
                    human.contains(&format!("{}  {id}", status.to_uppercase())),
                    "{fixture}:\n{human}"
                );
                assert!(fix.is_empty() || human.contains(fix), "{fixture}:\n{human}");
            }
        }
    }
}

/// Doctor only reads: the tree is the same after it ran.
#[test]
fn doctor_writes_nothing() {
    for fixture in ["30-doctor-safe", "31-doctor-overcommit0-old-kernel"] {
        let tree = Tree::new(fixture);
        let before = tree.snapshot();
        tree.run(&["doctor"]);
        tree.run(&["doctor", "--json"]);
        assert_eq!(tree.snapshot(), before, "{fixture}");
    }
}
