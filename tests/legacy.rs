//! The legacy scan (doctor's `legacy:` checks and the daemon's SOURCE=) on a fixture tree
//! holding the operator guides' own snippets: rc.local lines, a disable-thp.service oneshot
//! (enabled) and a THP-madvise unit (not), a cron job running `sysctl -w`, a root crontab,
//! a sysctl.conf line, a GRUB default and a kernel command line with
//! transparent_hugepage=always, and a tuned active profile whose include= parent sets THP
//! to always. Each finding is named with its file and line, its verdict and its fix.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;
use serde_json::Value;

/// (id, status, message fragment, fix fragment or "" when there is none)
const FINDINGS: &[(&str, &str, &str, &str)] = &[
    (
        "legacy:/etc/rc.local:4",
        "ok",
        "(rc.local): sets kernel/mm/transparent_hugepage/enabled = never, the value forksafe holds: safe to remove",
        "delete line 4 of /etc/rc.local",
    ),
    (
        "legacy:/etc/rc.local:6",
        "ok",
        "sets kernel/mm/transparent_hugepage/defrag = never",
        "delete line 6 of /etc/rc.local",
    ),
    (
        "legacy:/etc/rc.local:7",
        "warn",
        "writes a file in /sys/kernel/mm/transparent_hugepage (which one the line does not say), value unknown",
        "change or remove it",
    ),
    (
        "legacy:/etc/systemd/system/disable-thp.service:9",
        "ok",
        "(unit disable-thp.service, enabled): sets kernel/mm/transparent_hugepage/enabled = never, the value forksafe holds: safe to remove",
        "systemctl disable --now disable-thp.service",
    ),
    (
        "legacy:/etc/systemd/system/thp-madvise.service:6",
        "warn",
        "(unit thp-madvise.service, not enabled): sets kernel/mm/transparent_hugepage/enabled = madvise, not never",
        "systemctl disable --now thp-madvise.service",
    ),
    (
        "legacy:/etc/cron.d/tuning:2",
        "fail",
        "(cron): sets vm.overcommit_memory = 0, not 1: it works against forksafe",
        "delete line 2 of /etc/cron.d/tuning",
    ),
    (
        "legacy:/var/spool/cron/crontabs/root:1",
        "ok",
        "sets vm.overcommit_memory = 1, the value forksafe holds: safe to remove",
        "delete line 1 of /var/spool/cron/crontabs/root",
    ),
    (
        "legacy:/etc/sysctl.conf:2",
        "ok",
        "(sysctl.conf, applied last by procps' sysctl --system): sets vm.overcommit_memory = 1",
        "delete line 2 of /etc/sysctl.conf",
    ),
    (
        "legacy:/etc/default/grub:3",
        "fail",
        "(GRUB default): sets kernel/mm/transparent_hugepage/enabled = always, not never",
        "transparent_hugepage=never on line 3 of /etc/default/grub, then update-grub",
    ),
    (
        "legacy:/proc/cmdline:1",
        "warn",
        "the running kernel booted with it",
        "/etc/default/grub",
    ),
    (
        "legacy:/usr/lib/tuned/throughput-hpc/tuned.conf:8",
        "fail",
        "(tuned profile throughput-hpc, included by the active profile redis-node): sets kernel/mm/transparent_hugepage/enabled = always, not never",
        "include=redis-node",
    ),
    (
        "legacy:/usr/lib/tuned/throughput-hpc/tuned.conf:11",
        "ok",
        "sets vm.overcommit_memory = 1, the value forksafe holds",
        "",
    ),
];

#[test]
fn every_old_fix_and_neighbour_is_named_with_its_verdict_and_fix() {
    let tree = Tree::new("41-legacy");
    let before = tree.snapshot();
    let o = tree.run(&["doctor", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let checks = v["checks"].as_array().unwrap();
    let legacy: Vec<&Value> = checks
        .iter()
        .filter(|c| c["id"].as_str().unwrap().starts_with("legacy:"))
        .collect();
    assert_eq!(legacy.len(), FINDINGS.len(), "{legacy:#?}");
    for (id, status, message, fix) in FINDINGS {
        let c = legacy
            .iter()
            .find(|c| c["id"] == *id)
            .unwrap_or_else(|| panic!("no {id} in {legacy:#?}"));
        assert_eq!(c["status"], *status, "{c:#}");
        assert!(c["message"].as_str().unwrap().contains(message), "{c:#}");
        if !fix.is_empty() {
            assert!(c["fix"].as_str().unwrap().contains(fix), "{c:#}");
        }
    }
    // The tuned fix is the exact child profile to make and select.
    let tuned = legacy
        .iter()
        .find(|c| c["id"] == "legacy:/usr/lib/tuned/throughput-hpc/tuned.conf:8")
        .unwrap();
    assert!(
        tuned["fix"].as_str().unwrap().contains(
            "printf '[main]\\ninclude=redis-node\\n\\n[vm]\\ntransparent_hugepages=never\\n' > /etc/tuned/redis-node-forksafe/tuned.conf; tuned-adm profile redis-node-forksafe"
        ),
        "{tuned:#}"
    );
    assert_eq!(o.status.code(), Some(1), "conflicts that act are failures");
    // It only reads; nothing is executed (a FAIL from GRUB, not a run of update-grub).
    assert_eq!(tree.snapshot(), before);
}

/// The daemon names the likely source of a repair from the same scan, in SOURCE=.
#[test]
fn the_daemons_repairs_name_their_source() {
    let tree = Tree::new("41-legacy");
    tree.write(
        "etc/forksafe/forksafe.toml",
        "[daemon]\ninterval = \"50ms\"\n[sysctl]\n\"vm.overcommit_memory\" = 1\n\
         [sysfs]\n\"kernel/mm/transparent_hugepage/enabled\" = \"never\"\n\
         \"kernel/mm/transparent_hugepage/defrag\" = \"never\"\n",
    );
    let d = Daemon::start_args(
        tree.root(),
        &["--log-format", "json"],
        &[("FORKSAFE_LOG", "debug")],
        None,
    );
    d.wait_message("READY=1");
    // The scan runs beside the repair loop, after READY=1.
    wait_for("the scan for other setters", || {
        d.log().contains("scanned for what else sets the knobs")
    });
    tree.drift_overcommit_until_repaired("the overcommit repair");
    tree.set(&format!("{THP}/enabled"), "[always] madvise never\n");
    wait_for("the THP repair", || {
        tree.read(&format!("{THP}/enabled")) == "never\n"
    });
    let (code, log) = d.stop();
    assert_eq!(code, 0, "{log}");
    let repairs: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|o| o["MESSAGE_ID"] == "fd55663f9c5d410482beace9df653b3a")
        .collect();
    let source = |knob: &str| {
        repairs
            .iter()
            .find(|o| o["KNOB"] == knob)
            .and_then(|o| o["SOURCE"].as_str())
            .unwrap_or_else(|| panic!("no repair of {knob} with SOURCE in {repairs:#?}"))
            .to_string()
    };
    assert_eq!(
        source("vm.overcommit_memory"),
        "/etc/cron.d/tuning:2 (cron)"
    );
    // rc.local:7 writes $THP_MODE to every THP file: which value, the text does not say,
    // but it is a place that writes this knob while the system runs.
    assert_eq!(
        source("kernel/mm/transparent_hugepage/enabled"),
        "/etc/rc.local:7 (rc.local); /usr/lib/tuned/throughput-hpc/tuned.conf:8 (tuned profile throughput-hpc, included by the active profile redis-node)"
    );
}
