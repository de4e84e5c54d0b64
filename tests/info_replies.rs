//! doctor's reading of real replies: INFO and CONFIG GET as Redis 6.0 (Debian 11), 7.0
//! (Debian 12), 8.0 and Valkey 8.1 (Debian 13) sent them, captured by
//! tests/fixtures/info/capture, parsed and judged as doctor does.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use forksafe::{Answers, Reply, judge, parse_info, read_reply};
use forksafe::{ForkNow, Verdict};
use std::collections::BTreeMap;

fn reply(name: &str) -> Reply {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/info")
        .join(name);
    let bytes = std::fs::read(&path).unwrap();
    let mut r = std::io::BufReader::new(&bytes[..]);
    read_reply(&mut r, 0).unwrap()
}

fn answers(server: &str) -> Answers {
    let Reply::Bulk(Some(info)) = reply(&format!("{server}.info.resp")) else {
        panic!("INFO is a bulk string")
    };
    let mut config = BTreeMap::new();
    for p in ["save", "disable-thp"] {
        let got = match reply(&format!("{server}.config-{p}.resp")) {
            Reply::Array(Some(items)) => match items.get(1) {
                Some(Reply::Bulk(Some(v))) => Ok(String::from_utf8_lossy(v).into_owned()),
                _ => Err("not a parameter of this version".to_string()),
            },
            other => Err(format!("{other:?}")),
        };
        config.insert(p.to_string(), got);
    }
    Answers {
        info: parse_info(&String::from_utf8_lossy(&info)),
        config,
        at: "/run/redis/redis-server.sock".into(),
    }
}

#[test]
fn every_version_parses_and_is_judged_on_evidence() {
    for (server, version, disable_thp) in [
        ("redis-6", "Redis 6.0.16", None),
        ("redis-7", "Redis 7.0.15", Some("yes")),
        ("redis-8", "Redis 8.0.2", Some("yes")),
        ("valkey-8", "Valkey 8.1.1", Some("yes")),
    ] {
        let a = answers(server);
        // The fields the checks read exist in every version (current_cow_peak from 7 on).
        for k in [
            "rdb_last_bgsave_status",
            "aof_last_bgrewrite_status",
            "latest_fork_usec",
            "rdb_last_cow_size",
            "used_memory",
            "used_memory_rss",
            "mem_fragmentation_ratio",
            "maxmemory",
            "total_system_memory",
        ] {
            assert!(a.info.contains_key(k), "{server} has no {k}");
        }
        assert_eq!(
            a.info.contains_key("current_cow_peak"),
            server != "redis-6",
            "{server}"
        );
        assert_eq!(
            a.config["disable-thp"].as_deref().ok(),
            disable_thp,
            "{server}: {:?}",
            a.config["disable-thp"]
        );
        let checks = judge(
            4242,
            "redis-server (pid 4242)",
            &a,
            Some("1"),
            &ForkNow::Fits,
        );
        let ids: Vec<&str> = checks.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "persistence:4242",
                "fork-latency:4242",
                "cow:4242",
                "fragmentation:4242",
                "maxmemory:4242"
            ]
        );
        for c in &checks {
            assert_ne!(c.status, Verdict::Unknown, "{server}: {c:?}");
        }
        let p = &checks[0];
        assert_eq!(p.status, Verdict::Ok, "{server}: {p:?}");
        assert!(p.message.contains(version), "{server}: {p:?}");
        assert!(p.message.contains("no save schedule"), "{server}: {p:?}");
        // A fork happened (the capture made a BGSAVE) and it was quick.
        assert!(
            checks[1].message.contains("its last fork took"),
            "{server}: {:?}",
            checks[1]
        );
        // No maxmemory was set when capturing: a warning with the fix.
        assert_eq!(checks[4].status, Verdict::Warn, "{server}");
    }
}

#[test]
fn a_failed_save_is_blamed_on_the_kernel_only_when_it_explains_it() {
    let mut a = answers("redis-7");
    a.info.insert("rdb_last_bgsave_status".into(), "err".into());
    let refused = judge(
        7,
        "redis-server (pid 7)",
        &a,
        Some("2"),
        &ForkNow::Refused(
            "Committed_AS 900 MiB + the 300 MiB the child is charged >= CommitLimit 1000 MiB"
                .into(),
        ),
    );
    assert_eq!(refused[0].status, Verdict::Fail);
    assert!(
        refused[0].message.contains("the kernel explains it"),
        "{:?}",
        refused[0]
    );
    assert!(
        refused[0]
            .fix
            .as_deref()
            .unwrap()
            .starts_with("forksafe apply")
    );
    let elsewhere = judge(7, "redis-server (pid 7)", &a, Some("1"), &ForkNow::Fits);
    assert_eq!(elsewhere[0].status, Verdict::Fail);
    assert!(
        elsewhere[0].message.contains("forksafe is not the fix"),
        "{:?}",
        elsewhere[0]
    );
}

/// When the fork itself could not be judged (smaps unreadable), a failed save is neither
/// blamed on the kernel nor cleared of it: no "a fork would fit now".
#[test]
fn a_failed_save_with_the_fork_unjudged_claims_neither() {
    let mut a = answers("redis-7");
    a.info.insert("rdb_last_bgsave_status".into(), "err".into());
    let c = &judge(
        7,
        "redis-server (pid 7)",
        &a,
        Some("2"),
        &ForkNow::Unknown("could not read /proc/7/smaps: Permission denied".into()),
    )[0];
    assert_eq!(c.status, Verdict::Fail, "{c:?}");
    assert!(!c.message.contains("would fit"), "{c:?}");
    assert!(!c.message.contains("the kernel explains it:"), "{c:?}");
    assert!(!c.message.contains("forksafe is not the fix"), "{c:?}");
    assert!(
        c.message
            .contains("whether the kernel explains it is unknown"),
        "{c:?}"
    );
    assert!(c.message.contains("/proc/7/smaps"), "{c:?}");
}

/// An answer that lacks the fields a verdict needs is unknown, never ok: a missing
/// rdb_last_bgsave_status is not "the last save succeeded", a missing used_memory is not 0.
#[test]
fn an_answer_lacking_a_field_is_unknown_never_ok() {
    let cases: [(&str, &str, usize); 8] = [
        ("rdb_last_bgsave_status", "persistence", 0),
        ("aof_last_bgrewrite_status", "persistence", 0),
        ("aof_last_write_status", "persistence", 0),
        ("latest_fork_usec", "fork-latency", 1),
        ("used_memory", "cow", 2),
        ("used_memory", "fragmentation", 3),
        ("used_memory_rss", "fragmentation", 3),
        ("mem_fragmentation_ratio", "fragmentation", 3),
    ];
    for (field, id, at) in cases {
        let mut a = answers("valkey-8");
        a.info.remove(field);
        let checks = judge(9, "valkey-server (pid 9)", &a, Some("1"), &ForkNow::Fits);
        let c = &checks[at];
        assert_eq!(c.id, format!("{id}:9"));
        assert_eq!(c.status, Verdict::Unknown, "without {field}: {c:?}");
        assert!(c.message.contains(field), "{c:?}");
    }
    // Not a number is not a number: a ratio of NaN, a size of "lots".
    let mut a = answers("redis-8");
    a.info
        .insert("mem_fragmentation_ratio".into(), "NaN".into());
    a.info.insert("used_memory".into(), "lots".into());
    a.info.insert("maxmemory".into(), "1073741824".into());
    a.info.remove("total_system_memory");
    let checks = judge(9, "redis-server (pid 9)", &a, Some("1"), &ForkNow::Fits);
    for c in &checks[2..5] {
        assert_eq!(c.status, Verdict::Unknown, "{c:?}");
    }
    // A status that is neither ok nor err is not ok.
    let mut a = answers("redis-8");
    a.info
        .insert("rdb_last_bgsave_status".into(), "maybe".into());
    let p = &judge(9, "redis-server (pid 9)", &a, Some("1"), &ForkNow::Fits)[0];
    assert_eq!(p.status, Verdict::Unknown, "{p:?}");
}
