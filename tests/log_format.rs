//! `--log-format json` as log shippers read it: a daemon run on a fixture tree that says
//! every kind of field (a knob enforced, absent, repaired and fought over, a sysctl.d line
//! that wins at boot, a config refused on reload), and every line of its stderr parsed as
//! JSON: `time` (RFC 3339), `level`, `msg` first, and each field always of one type.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::collections::BTreeMap;

const CONFIG: &str = "[daemon]\ninterval = \"100ms\"\n\
    [sysctl]\n\"vm.overcommit_memory\" = 1\n\
    [sysfs]\n\"kernel/mm/transparent_hugepage/enabled\" = \"never\"\n\
    \"kernel/mm/transparent_hugepage/hugepages-2048kB/enabled\" = \"never\"\n\
    [sysctl_d]\nmanage = false\n";

/// `2026-11-22T10:04:05.123Z`: RFC 3339, UTC, milliseconds.
fn is_rfc3339(t: &str) -> bool {
    let b = t.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
    b.len() == 24
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && b[23] == b'Z'
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(n) if n.is_u64() => "unsigned integer",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Null => "null",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[test]
fn every_json_line_parses_with_time_level_msg_and_one_type_per_field() {
    let tree = Tree::new("01-drift");
    tree.write("etc/forksafe/forksafe.toml", CONFIG);
    tree.write("etc/sysctl.d/50-strict.conf", "vm.overcommit_memory = 2\n");
    let d = Daemon::start_args(tree.root(), &["--log-format", "json"], &[], None);
    d.wait_message("READY=1");
    // Three repairs within 60 intervals: a fight (COUNT); then calm: it is over (COUNT).
    for i in 0..3 {
        tree.drift_overcommit_until_repaired(&format!("repair {i}"));
    }
    wait_for("the fight to end", || {
        d.log().contains("no longer contested")
    });
    // A config refused on reload: CONFIG and CONFIG_LINE.
    tree.write(
        "etc/forksafe/forksafe.toml",
        "[sysctl]\n\"vm.overcommit_memory\" = 7\n",
    );
    d.signal(Signal::SIGHUP);
    d.wait_message("RELOADING=1");
    d.wait_message("READY=1");
    let (code, log) = d.stop();
    assert_eq!(code, 0, "{log}");

    let mut types: BTreeMap<String, &'static str> = BTreeMap::new();
    for line in log.lines() {
        let o: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{log}"));
        let o = o
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {line}"));
        // time, level and msg lead, for people reading `kubectl logs` too.
        let head = format!(r#"{{"time":{},"level":{},"msg":"#, o["time"], o["level"]);
        assert!(line.starts_with(&head), "{line}");
        assert!(is_rfc3339(o["time"].as_str().unwrap()), "{line}");
        assert!(
            ["error", "warning", "info", "debug"].contains(&o["level"].as_str().unwrap()),
            "{line}"
        );
        assert!(!o["msg"].as_str().unwrap().is_empty(), "{line}");
        for journald_only in ["MESSAGE", "PRIORITY", "TIMESTAMP", "SYSLOG_IDENTIFIER"] {
            assert!(!o.contains_key(journald_only), "{line}");
        }
        for (k, v) in o {
            let t = type_of(v);
            let first = *types.entry(k.clone()).or_insert(t);
            assert_eq!(first, t, "{k} is a {first} on one line and a {t} on {line}");
        }
    }
    // Every kind of field was said, numbers as numbers and the rest as text.
    for (field, t) in [
        ("LINE", "unsigned integer"),
        ("CONFIG_LINE", "unsigned integer"),
        ("COUNT", "unsigned integer"),
        ("ERRNO", "unsigned integer"),
        ("MESSAGE_ID", "string"),
        ("KNOB", "string"),
        ("EXPECTED", "string"),
        ("OBSERVED", "string"),
        ("FILE", "string"),
        ("CONFIG", "string"),
    ] {
        assert_eq!(types.get(field), Some(&t), "{field}: {types:?}\n{log}");
    }
    let warning = log
        .lines()
        .find(|l| l.contains("a9581c4f941e40d19fcb2e72f96de47e"))
        .unwrap();
    assert!(warning.contains(r#""level":"warning""#), "{warning}");
    assert!(
        warning.contains(r#""FILE":"/etc/sysctl.d/50-strict.conf","LINE":1"#),
        "{warning}"
    );
}
