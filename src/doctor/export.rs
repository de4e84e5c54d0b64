//! doctor's findings as Prometheus metrics, for the timer (`forksafe doctor --textfile`):
//! each check's status, and per database the signals an operator alerts on (its last
//! save, its last fork's latency, copy-on-write against its data, its RSS and cgroup limit,
//! whether a fork would be refused now), labelled with where it runs. And what changed
//! since the last run: a check that turns FAIL, or back, is one journal entry; the last
//! run's verdicts are read back from the file it wrote.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use crate::os::report::{Event, EventKind};
use crate::prometheus::{self, family, label};

use super::check::{Check, Verdict};
use super::identity::Target;

/// `check="persistence",id="persistence:4242",pid=...,name=...,container=...,pod=...`.
fn labels(c: &Check) -> String {
    let kind = c.id.split(':').next().unwrap_or(&c.id);
    let mut out = format!("check=\"{}\",id=\"{}\"", label(kind), label(&c.id));
    if let Some(t) = &c.target {
        out.push(',');
        out.push_str(&target_labels(t));
    }
    out
}

/// Where a database runs, as labels a fleet tool can join with its inventory.
fn target_labels(t: &Target) -> String {
    let mut out = format!("pid=\"{}\",name=\"{}\"", t.pid, label(&t.name));
    if let Some(c) = &t.container {
        let _ = write!(
            out,
            ",runtime=\"{}\",container=\"{}\"",
            label(c.runtime),
            label(&c.id)
        );
    }
    if let Some(p) = &t.pod {
        let _ = write!(out, ",pod_uid=\"{}\"", label(&p.uid));
        if let Some(ns) = &p.namespace {
            let _ = write!(out, ",namespace=\"{}\"", label(ns));
        }
        if let Some(name) = &p.name {
            let _ = write!(out, ",pod=\"{}\"", label(name));
        }
    }
    out
}

fn status(v: Verdict) -> &'static str {
    match v {
        Verdict::Ok => "ok",
        Verdict::Unknown => "unknown",
        Verdict::Warn => "warn",
        Verdict::Fail => "fail",
    }
}

/// One per-database signal: the metric, its help, the check it comes from, and its value.
struct Signal {
    name: &'static str,
    help: &'static str,
    check: &'static str,
    value: fn(&Check) -> Option<String>,
}

/// A value from a check's numbers, scaled.
fn number(c: &Check, key: &str, scale: f64) -> Option<String> {
    c.values.get(key).map(|v| format!("{}", *v as f64 / scale))
}

const SIGNALS: [Signal; 7] = [
    Signal {
        name: "forksafe_db_last_save_ok",
        help: "1 when the database's last save and rewrite succeeded, 0 when one failed (INFO *_status err); absent when unknown.",
        check: "persistence",
        value: |c| match c.status {
            Verdict::Ok => Some("1".into()),
            Verdict::Fail => Some("0".into()),
            _ => None,
        },
    },
    Signal {
        name: "forksafe_db_fork_refused",
        help: "1 when the kernel would refuse a fork of the database now (vm.overcommit_memory 0 or 2 and its charge), 0 when it would not; absent when unknown.",
        check: "fork-headroom",
        value: |c| match c.status {
            Verdict::Ok => Some("0".into()),
            Verdict::Fail => Some("1".into()),
            _ => None,
        },
    },
    Signal {
        name: "forksafe_db_latest_fork_seconds",
        help: "How long the database's last fork froze its main thread (INFO latest_fork_usec).",
        check: "fork-latency",
        value: |c| number(c, "latest_fork_usec", 1e6),
    },
    Signal {
        name: "forksafe_db_cow_bytes",
        help: "The largest copy-on-write of the database's last saves (INFO rdb_last_cow_size, aof_last_cow_size, current_cow_peak).",
        check: "cow",
        value: |c| number(c, "cow_bytes", 1.0),
    },
    Signal {
        name: "forksafe_db_used_memory_bytes",
        help: "The database's data (INFO used_memory).",
        check: "cow",
        value: |c| number(c, "used_memory_bytes", 1.0),
    },
    Signal {
        name: "forksafe_db_rss_bytes",
        help: "The database process's resident memory.",
        check: "cow-worst-case",
        value: |c| number(c, "rss_bytes", 1.0),
    },
    Signal {
        name: "forksafe_db_cgroup_limit_bytes",
        help: "The tightest memory limit over the database's cgroup and its parents; absent when none.",
        check: "cgroup-limit",
        value: |c| number(c, "limit_bytes", 1.0),
    },
];

/// The textfile for `checks`, found at `at`.
pub(crate) fn metrics(checks: &[Check], at: SystemTime) -> String {
    let mut out = String::new();
    let secs = prometheus::unix_secs(at);
    family(
        &mut out,
        "forksafe_doctor_last_run_timestamp_seconds",
        "gauge",
        "Unix time of forksafe doctor's last run (the timer runs it every few minutes).",
    );
    let _ = writeln!(out, "forksafe_doctor_last_run_timestamp_seconds {secs}");
    family(
        &mut out,
        "forksafe_doctor_check",
        "gauge",
        "1 for each check of the last run, labelled with its status (ok, unknown, warn, fail).",
    );
    for c in checks {
        let _ = writeln!(
            out,
            "forksafe_doctor_check{{{},status=\"{}\"}} 1",
            labels(c),
            status(c.status)
        );
    }
    for s in &SIGNALS {
        let rows: Vec<String> = checks
            .iter()
            .filter(|c| c.id.split(':').next() == Some(s.check))
            .filter_map(|c| {
                let t = c.target.as_ref()?;
                Some(format!(
                    "{}{{{}}} {}",
                    s.name,
                    target_labels(t),
                    (s.value)(c)?
                ))
            })
            .collect();
        if !rows.is_empty() {
            family(&mut out, s.name, "gauge", s.help);
            for r in rows {
                let _ = writeln!(out, "{r}");
            }
        }
    }
    out
}

/// The verdicts of the run that wrote `text` (our own file), by check id.
pub(crate) fn verdicts(text: &str) -> BTreeMap<String, String> {
    let pick = |labels: &str, key: &str| {
        let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
        let rest = labels.get(start..)?;
        // Our ids and statuses never hold a quote (labels are escaped).
        Some(rest.get(..rest.find('"')?)?.to_string())
    };
    text.lines()
        .filter_map(|l| l.strip_prefix("forksafe_doctor_check{"))
        .filter_map(|l| Some((pick(l, "id")?, pick(l, "status")?)))
        .collect()
}

/// The journal entries for what turned FAIL since the run before (`before`, from
/// [`verdicts`]), and what is no longer FAIL. The first run says every FAIL.
pub(crate) fn changes(before: &BTreeMap<String, String>, checks: &[Check]) -> Vec<Event> {
    let mut out = Vec::new();
    for c in checks {
        let was_fail = before.get(&c.id).is_some_and(|s| s == "fail");
        let is_fail = c.status == Verdict::Fail;
        if is_fail && !was_fail {
            let mut e = Event::new(
                EventKind::DoctorFailed,
                format!("doctor: {} fails: {}", c.id, c.message),
            )
            .field("CHECK", &c.id);
            if let Some(fix) = &c.fix {
                e = e.field("FIX", fix);
            }
            out.push(e);
        }
    }
    for (id, was) in before {
        let now = checks.iter().find(|c| &c.id == id);
        if was == "fail" && now.is_none_or(|c| c.status != Verdict::Fail) {
            let message = match now {
                Some(c) => format!(
                    "doctor: {id} no longer fails ({}): {}",
                    status(c.status),
                    c.message
                ),
                None => format!("doctor: {id} no longer fails (no such check now)"),
            };
            out.push(Event::new(EventKind::DoctorRecovered, message).field("CHECK", id));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::check::check;
    use crate::doctor::identity::{Container, Pod};

    fn on_db(mut c: Check) -> Check {
        c.target = Some(Box::new(Target {
            pid: 4242,
            name: "redis-server".into(),
            container: Some(Container {
                runtime: "containerd",
                id: "0123456789ab".into(),
            }),
            pod: Some(Pod {
                uid: "d5b4".into(),
                namespace: Some("shop".into()),
                name: Some("redis-0".into()),
            }),
        }));
        c
    }

    #[test]
    fn checks_and_database_signals_become_metrics() {
        let checks = vec![
            check("overcommit", Verdict::Fail, "is 0", Some("forksafe apply")),
            on_db(check("persistence:4242", Verdict::Fail, "err", None)),
            on_db(
                check("fork-latency:4242", Verdict::Ok, "2 ms", None)
                    .with("latest_fork_usec", Some(2500)),
            ),
            on_db(
                check("cow:4242", Verdict::Warn, "cow", None)
                    .with("cow_bytes", Some(600))
                    .with("used_memory_bytes", Some(1000)),
            ),
            on_db(check("fork-headroom:4242", Verdict::Unknown, "?", None)),
        ];
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let text = metrics(&checks, at);
        let db = "pid=\"4242\",name=\"redis-server\",runtime=\"containerd\",container=\"0123456789ab\",pod_uid=\"d5b4\",namespace=\"shop\",pod=\"redis-0\"";
        for line in [
            "forksafe_doctor_last_run_timestamp_seconds 1700000000".to_string(),
            "forksafe_doctor_check{check=\"overcommit\",id=\"overcommit\",status=\"fail\"} 1"
                .into(),
            format!(
                "forksafe_doctor_check{{check=\"persistence\",id=\"persistence:4242\",{db},status=\"fail\"}} 1"
            ),
            format!("forksafe_db_last_save_ok{{{db}}} 0"),
            format!("forksafe_db_latest_fork_seconds{{{db}}} 0.0025"),
            format!("forksafe_db_cow_bytes{{{db}}} 600"),
            format!("forksafe_db_used_memory_bytes{{{db}}} 1000"),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        // Unknown is absent, never a value.
        assert!(!text.contains("forksafe_db_fork_refused{"), "{text}");
        assert!(!text.contains("forksafe_db_rss_bytes"), "{text}");
        // Read back: the verdicts of that run.
        let v = verdicts(&text);
        assert_eq!(v.get("overcommit").map(String::as_str), Some("fail"));
        assert_eq!(
            v.get("fork-headroom:4242").map(String::as_str),
            Some("unknown")
        );
    }

    #[test]
    fn a_check_that_turns_fail_or_back_is_said_once() {
        let run = |status| vec![check("overcommit", status, "m", None)];
        let first = changes(&BTreeMap::new(), &run(Verdict::Fail));
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].kind(), EventKind::DoctorFailed);
        let before = verdicts(&metrics(&run(Verdict::Fail), SystemTime::now()));
        assert!(changes(&before, &run(Verdict::Fail)).is_empty());
        let back = changes(&before, &run(Verdict::Ok));
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].kind(), EventKind::DoctorRecovered);
        assert_eq!(
            back[0].message(),
            "doctor: overcommit no longer fails (ok): m"
        );
    }
}
