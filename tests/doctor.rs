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
            ("sysctl-d", "ok", "/etc/sysctl.d/99-zz-forksafe.conf:3", ""),
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
                "its largest accountable mapping (2051 MiB) is not below free + page cache + swap (871 MiB)",
                "vm.overcommit_memory = 1",
            ),
            (
                "fork-headroom:4242",
                "fail",
                "rule: mode 0 on Linux 4.18 (< 5.2)",
                "",
            ),
            (
                "sysctl-d",
                "fail",
                "nothing sets it at boot (no sysctl.d file does; the kernel default stays)",
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
                "Committed_AS 2441 MiB + the 2086 MiB the child is charged (54 accountable mappings) >= CommitLimit 3906 MiB",
                "overcommit_memory = 1",
            ),
        ],
    ),
    (
        // Mode 2 now, but Redis started under mode 1: jemalloc mapped its 2 GB arena with
        // MAP_NORESERVE, which a fork is not charged for. VmData (2 GB) would say "refused".
        "39-doctor-mode2-noreserve",
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
                "ok",
                "a fork fits: the child is charged 36 MiB in 53 mappings",
                "",
            ),
        ],
    ),
    (
        // forksafe writes no drop-in; the fix names the line that wins, not /etc/sysctl.conf.
        "38-unmanaged-override",
        1,
        &[(
            "sysctl-d",
            "fail",
            "the next boot sets 2 (/etc/sysctl.d/50-strict.conf:1)",
            "remove or change line 1 of /etc/sysctl.d/50-strict.conf (it sets vm.overcommit_memory = 2)",
        )],
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
            "hugepages-64kB is madvise, hugepages-2048kB is always",
            "a [sysfs] entry per size",
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
    (
        // A Kubernetes pod: the limit is on the pod's cgroup, the container's is max.
        "40-doctor-cgroup-parent-limit",
        1,
        &[(
            "cgroup-limit:4242",
            "fail",
            "3072 MiB (/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/memory.max) is below 2 x RSS",
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
                true if *status == "ok" && !id.starts_with("legacy:") => {
                    assert_eq!(c["fix"], Value::Null, "{fixture} {id}")
                }
                true => {}
                false => assert!(
                    c["fix"].as_str().unwrap().contains(fix),
                    "{fixture} {id}: {c:#}"
                ),
            }
        }
        // The human report says the same, with the fix under each problem.
        let human = text(&tree.run(&["doctor"]).stdout);
        // A fixture has no live database to ask: those checks are unknown, and the headline
        // must not claim more than the evidence.
        let verdict = match (*code, v["complete"].as_bool().unwrap()) {
            (0, true) => "can fork its database safely",
            (0, false) => "no check fails, but",
            _ => "is NOT fork-safe",
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

/// Run as a user who cannot read the database's /proc files (they are root's, 0600 here as
/// for any process of another user), every check that needs them is unknown, never ok.
#[test]
fn unreadable_evidence_is_unknown_never_ok() {
    let setpriv = std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok();
    if !is_root() || !setpriv {
        eprintln!("SKIPPED unreadable_evidence_is_unknown_never_ok: needs root and setpriv(1)");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let tree = Tree::new("30-doctor-safe");
    // The temp dir is root's 0700: let the unprivileged user in, as /proc lets anyone in.
    std::fs::set_permissions(tree.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["smaps", "smaps_rollup", "status"] {
        std::fs::set_permissions(
            tree.path(&format!("proc/4242/{f}")),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    let o = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(BIN)
        .arg("--root")
        .arg(tree.root())
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&o.stdout), text(&o.stderr)));
    assert_eq!(v["complete"], false, "{v:#}");
    for id in ["thp-process:4242", "cow-worst-case:4242"] {
        let c = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap();
        assert_eq!(c["status"], "unknown", "{c:#}");
        let msg = c["message"].as_str().unwrap();
        assert!(
            msg.starts_with("unknown: could not read /proc/4242/")
                && msg.ends_with("(run as root)"),
            "{msg}"
        );
    }
    // The RSS it could not read is not "0 MiB".
    let human = text(
        &std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(BIN)
            .arg("--root")
            .arg(tree.root())
            .arg("doctor")
            .output()
            .unwrap()
            .stdout,
    );
    assert!(!human.contains("RSS 0 MiB"), "{human}");
    assert!(
        human.contains("WARN  thp-process:4242     unknown: could not read"),
        "{human}"
    );
}

/// The overcommit and THP checks judge the value forksafe's config holds, not only 1 and
/// never: a config that sets a risky value is itself the risk (and `forksafe apply` is not
/// its fix); a knob the config does not hold is not held, even where it is right now; and
/// the fix under `[sysctl_d] manage = false` promises no drop-in.
#[test]
fn doctor_judges_the_knobs_against_the_config() {
    let check = |fixture: &str, config: &str, id: &str| -> Value {
        let tree = Tree::new(fixture);
        tree.write("etc/forksafe/forksafe.toml", config);
        let o = tree.run(&["doctor", "--json"]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        let c = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .cloned();
        c.unwrap_or_else(|| panic!("no {id} in {v:#}"))
    };
    let has = |c: &Value, field: &str, fragment: &str| {
        assert!(
            c[field].as_str().unwrap_or("").contains(fragment),
            "{fragment:?} not in {c:#}"
        );
    };
    // The config holds 2; the kernel is at 1 now: the daemon would set 2.
    let c = check(
        "30-doctor-safe",
        "[sysctl]\n\"vm.overcommit_memory\" = 2\n",
        "overcommit",
    );
    assert_eq!(c["status"], "fail", "{c:#}");
    has(
        &c,
        "message",
        "forksafe.toml) sets vm.overcommit_memory = 2: forksafe itself holds this risk",
    );
    has(
        &c,
        "fix",
        "set \"vm.overcommit_memory\" = \"1\" in [sysctl] of",
    );
    // The config holds madvise: a warning, fixed in the config.
    let c = check(
        "30-doctor-safe",
        "[sysfs]\n\"kernel/mm/transparent_hugepage/enabled\" = \"madvise\"\n",
        "thp-enabled",
    );
    assert_eq!(c["status"], "warn", "{c:#}");
    has(
        &c,
        "fix",
        "set \"kernel/mm/transparent_hugepage/enabled\" = \"never\" in [sysfs]",
    );
    // ... and in that config overcommit is right now, but nothing holds it.
    let c = check(
        "30-doctor-safe",
        "[sysfs]\n\"kernel/mm/transparent_hugepage/enabled\" = \"never\"\n",
        "overcommit",
    );
    assert_eq!(c["status"], "warn", "{c:#}");
    has(
        &c,
        "message",
        "does not hold vm.overcommit_memory: nothing keeps it",
    );
    has(
        &c,
        "fix",
        "add \"vm.overcommit_memory\" = \"1\" to [sysctl] of",
    );
    // Wrong now and not held: `forksafe apply` alone would not touch it.
    let c = check(
        "31-doctor-overcommit0-old-kernel",
        "[sysfs]\n\"kernel/mm/transparent_hugepage/enabled\" = \"never\"\n",
        "overcommit",
    );
    assert_eq!(c["status"], "fail", "{c:#}");
    has(
        &c,
        "fix",
        "add \"vm.overcommit_memory\" = \"1\" to [sysctl] of",
    );
    // Held, wrong now, no drop-in managed: apply sets it, and no reboot promise is made.
    let c = check(
        "31-doctor-overcommit0-old-kernel",
        "[sysctl]\n\"vm.overcommit_memory\" = 1\n[sysctl_d]\nmanage = false\n",
        "overcommit",
    );
    assert_eq!(c["status"], "fail", "{c:#}");
    has(
        &c,
        "fix",
        "forksafe apply   (sets it now; [sysctl_d] manage = false",
    );
    assert!(
        !c["fix"].as_str().unwrap().contains("across reboots"),
        "{c:#}"
    );
}

/// A `smaps_rollup` that was read but has no `Rss` makes the cgroup check unknown with that
/// reason, as the copy-on-write check says it (not "no such file").
#[test]
fn a_rollup_without_rss_is_said_as_such() {
    let tree = Tree::new("35-doctor-cgroup-limit");
    tree.write("proc/4242/smaps_rollup", "AnonHugePages:         0 kB\n");
    let o = tree.run(&["doctor", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    for id in ["cgroup-limit:4242", "cow-worst-case:4242"] {
        let c = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap();
        assert_eq!(c["status"], "unknown", "{c:#}");
        assert_eq!(
            c["message"], "unknown: /proc/4242/smaps_rollup has no Rss",
            "{c:#}"
        );
    }
}

/// `--strict`: "nothing fails, but not everything is known" is not OK for a probe (exit 1);
/// without it, exit 0 as before; a failure is 1 either way; it goes with doctor only.
#[test]
fn strict_makes_an_incomplete_diagnosis_exit_1() {
    let tree = Tree::new("30-doctor-safe");
    // A fixture has no live database to ask: those checks are unknown.
    let o = tree.run(&["doctor", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["safe"].as_bool(), v["complete"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(tree.run(&["doctor", "--strict"]).status.code(), Some(1));
    let o = tree.run(&["doctor", "--strict", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["safe"], true,
        "the JSON says the same as without --strict"
    );
    let failing = Tree::new("31-doctor-overcommit0-old-kernel");
    assert_eq!(failing.run(&["doctor", "--strict"]).status.code(), Some(1));
    assert_eq!(tree.run(&["check", "--strict"]).status.code(), Some(2));
}

/// The timer's pass: `doctor --textfile` writes the findings as metrics under the root,
/// prints only the headline, and journals a check that turns FAIL (once) and back.
#[test]
fn the_timers_pass_exports_and_says_what_changed() {
    let tree = Tree::new("31-doctor-overcommit0-old-kernel");
    let file = "/var/lib/node-exporter/forksafe-doctor.prom";
    let run = || tree.run(&["doctor", "--textfile", file]);
    let o = run();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).lines().count(), 1, "{}", text(&o.stdout));
    let metrics = tree.read(file.trim_start_matches('/'));
    assert!(
        metrics.contains(
            "forksafe_doctor_check{check=\"overcommit\",id=\"overcommit\",status=\"fail\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("forksafe_db_fork_refused{pid=\"4242\",name=\"redis-server\"} 1"),
        "{metrics}"
    );
    let err = text(&o.stderr);
    assert_eq!(count(&err, "doctor: overcommit fails"), 1, "{err}");
    // Nothing changed: nothing said.
    let err = text(&run().stderr);
    assert_eq!(count(&err, " fails: "), 0, "{err}");
    // Overcommit 1: that check (and the fork refusal) no longer fails, said once each.
    tree.set("proc/sys/vm/overcommit_memory", "1\n");
    let err = text(&run().stderr);
    assert_eq!(
        count(&err, "doctor: overcommit no longer fails (ok)"),
        1,
        "{err}"
    );
    assert_eq!(
        count(&err, "doctor: fork-headroom:4242 no longer fails"),
        1,
        "{err}"
    );
    assert_eq!(count(&err, " fails: "), 0, "{err}");
}

/// `--walk-up-to`: a database over the size is not walked (its smaps_rollup and smaps are
/// not read), the checks that need the walk say so, and the rest use /proc/PID/status.
#[test]
fn a_large_database_is_not_walked_by_the_timers_pass() {
    let tree = Tree::new("30-doctor-safe");
    // Not there: a read of it would make the checks unknown for that reason.
    std::fs::remove_file(tree.path("proc/4242/smaps_rollup")).unwrap();
    let o = tree.run(&["doctor", "--json", "--walk-up-to", "1G"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let c = |id: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no {id} in {v:#}"))
    };
    let thp = c("thp-process:4242");
    assert_eq!(thp["status"], "unknown", "{thp:#}");
    assert!(
        thp["message"].as_str().unwrap().contains("were not walked"),
        "{thp:#}"
    );
    let cow = c("cow-worst-case:4242");
    assert_eq!(cow["status"], "ok", "{cow:#}");
    assert!(
        cow["values"]["rss_bytes"].as_u64().unwrap() > 1 << 30,
        "{cow:#}"
    );
    // Refused: a size that is not one.
    let o = tree.run(&["doctor", "--walk-up-to", "lots"]);
    assert_eq!(o.status.code(), Some(2));
}
