//! What the daemon publishes for others: the state file the separate commands read
//! (`forksafe check`, `forksafe reload`; see [`crate::published`]) and the Prometheus
//! metrics for node_exporter's textfile collector (`[report] textfile`). Each file is
//! written (atomically) only when its content changes, and a failure to write it is said
//! once, until it works again.

use std::fmt::Write as _;
use std::path::Path;
use std::time::SystemTime;

use crate::config::{Settings, Source};
use crate::enforce::Status;
use crate::neighbours::Sources;
use crate::os::atomic::{self, Durability};
use crate::os::report::Memo;
use crate::os::root::Root;
use crate::prometheus::{self, family, label};
use crate::published::{self, Contested, State};

use super::memory::{Counters, Memory};

/// What the metrics say of one knob.
pub(crate) struct Row<'a> {
    pub(crate) knob: &'a str,
    pub(crate) status: Status,
    pub(crate) counters: Counters,
    /// Something keeps setting it back (a fight is on).
    pub(crate) contested: bool,
}

/// One metric family: its name, type, help, and its value for a knob.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&Row) -> u64,
}

/// The metrics, per knob.
const FAMILIES: [Family; 5] = [
    Family {
        name: "forksafe_knob_in_spec",
        kind: "gauge",
        help: "1 when the knob has its desired value now.",
        value: |r| u64::from(r.status.in_spec_now()),
    },
    Family {
        name: "forksafe_boot_drift",
        kind: "gauge",
        help: "1 when the next boot (sysctl.d) would set the knob to another value, or what it sets cannot be judged.",
        value: |r| u64::from(matches!(r.status, Status::BootDrift | Status::BootUnknown)),
    },
    Family {
        name: "forksafe_knob_contested",
        kind: "gauge",
        help: "1 while something keeps setting the knob back (a fight; see the journal for who).",
        value: |r| u64::from(r.contested),
    },
    Family {
        name: "forksafe_repairs_total",
        kind: "counter",
        help: "Drift repairs since the daemon started.",
        value: |r| r.counters.repairs,
    },
    Family {
        name: "forksafe_last_repair_timestamp_seconds",
        kind: "gauge",
        help: "Unix time of the knob's last repair; 0 if none since the daemon started.",
        value: |r| r.counters.last_repair.map_or(0, prometheus::unix_secs),
    },
];

/// The liveness stamp moves in steps of this many seconds: the file is rewritten at least
/// this often while the daemon passes over its knobs, and at most this often when nothing
/// else changes.
pub(crate) const LIVENESS_SECS: u64 = 30;

/// The metrics file: the build, whether the daemon is up and when it last passed over its
/// knobs (`last_pass`; `None`: it stopped), and each knob's rows.
pub(crate) fn metrics(rows: &[Row], last_pass: Option<SystemTime>) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "forksafe_build_info",
        "gauge",
        "The running forksafe's version; always 1.",
    );
    let _ = writeln!(
        out,
        "forksafe_build_info{{version=\"{}\"}} 1",
        label(env!("CARGO_PKG_VERSION"))
    );
    family(
        &mut out,
        "forksafe_up",
        "gauge",
        "1 while the daemon runs; 0 once it stopped cleanly (a daemon that was killed leaves 1 and a stale forksafe_last_pass_timestamp_seconds).",
    );
    let _ = writeln!(out, "forksafe_up {}", u8::from(last_pass.is_some()));
    let Some(pass) = last_pass else {
        return out;
    };
    let secs = prometheus::unix_secs(pass);
    family(
        &mut out,
        "forksafe_last_pass_timestamp_seconds",
        "gauge",
        "Unix time of the daemon's last pass over every knob, in steps of 30 s: older than the interval plus 30 s means the daemon is stuck or gone.",
    );
    let _ = writeln!(
        out,
        "forksafe_last_pass_timestamp_seconds {}",
        secs - secs % LIVENESS_SECS
    );
    for f in &FAMILIES {
        family(&mut out, f.name, f.kind, f.help);
        for r in rows {
            let _ = writeln!(
                out,
                "{}{{knob=\"{}\"}} {}",
                f.name,
                label(r.knob),
                (f.value)(r)
            );
        }
    }
    out
}

/// A file the daemon keeps current: written when its content changed, a failure said
/// once until a write works again.
struct Output {
    /// What it is for, to say with a failure.
    what: &'static str,
    written: Memo<String>,
    error: Memo<String>,
}

impl Output {
    fn new(what: &'static str) -> Output {
        Output {
            what,
            written: Memo::default(),
            error: Memo::default(),
        }
    }

    fn put(&mut self, root: &Root, path: &Path, content: String) {
        if self.written.is(&content) {
            return;
        }
        match atomic::write(root, path, &content, Durability::Runtime) {
            Ok(_) => {
                self.written.changed(content);
                self.error.forget();
            }
            Err(e) => {
                if self.error.changed(e.to_string()) {
                    log::warn!("{}: {e}", self.what);
                }
            }
        }
    }
}

/// What the daemon knows now, to publish.
pub(crate) struct Snapshot<'a> {
    /// The running settings.
    pub(crate) settings: &'a Settings,
    /// Each knob's memory, in the settings' order.
    pub(crate) memory: &'a [Memory],
    /// The `STATUS=` line.
    pub(crate) status: &'a str,
    /// Reloads handled.
    pub(crate) reloads: u64,
    /// Why the last reload was refused.
    pub(crate) reload_error: Option<&'a str>,
    /// What else sets the knobs, for a contested knob's likely source.
    pub(crate) sources: &'a Sources,
}

/// The state file and the metrics file, each written when it changes.
pub(crate) struct Publisher {
    state: Output,
    metrics: Output,
    /// The status line and reload count last published: an idle tick that changes
    /// neither (and has no fight and no metrics to keep) builds nothing.
    last_status: Memo<String>,
    last_reloads: Memo<u64>,
}

impl Publisher {
    pub(crate) fn new() -> Publisher {
        Publisher {
            state: Output::new("state for `forksafe check` and `forksafe reload`"),
            metrics: Output::new("metrics"),
            last_status: Memo::default(),
            last_reloads: Memo::default(),
        }
    }

    /// Publish what the daemon knows now.
    pub(crate) fn publish(&mut self, root: &Root, now: &Snapshot) {
        let s = now.settings;
        let fighting = now.memory.iter().any(|m| m.contest.fighting());
        let idle =
            self.last_status.is(now.status) && self.last_reloads.is(&now.reloads) && !fighting;
        if idle && s.textfile.is_none() {
            return;
        }
        if let Some(path) = &s.textfile {
            let rows: Vec<Row> = s
                .knobs
                .iter()
                .zip(now.memory)
                .map(|(k, m)| Row {
                    knob: k.name(),
                    status: m.status,
                    counters: m.counters,
                    contested: m.contest.fighting(),
                })
                .collect();
            self.metrics
                .put(root, path, metrics(&rows, Some(SystemTime::now())));
        }
        let state = State {
            pid: std::process::id(),
            config_file: match &s.source {
                Source::File(p) => Some(p.clone()),
                Source::Builtin => None,
            },
            reloads: now.reloads,
            reload_error: now.reload_error.map(str::to_string),
            status: now.status.to_string(),
            contested: s
                .knobs
                .iter()
                .zip(now.memory)
                .filter(|(_, m)| m.contest.fighting())
                .map(|(k, m)| Contested {
                    knob: k.name().to_string(),
                    repairs: m.contest.repairs(),
                    values: m.contest.values().list().to_vec(),
                    source: now.sources.describe(k),
                })
                .collect(),
            identity: published::Identity::of(root, s),
        };
        self.state
            .put(root, Path::new(published::PATH), published::render(&state));
        self.last_status.changed_to(now.status);
        self.last_reloads.changed(now.reloads);
    }

    /// The daemon stops cleanly: the metrics say it is down (and nothing of the knobs, which
    /// no one holds from now on), and the state file goes.
    pub(crate) fn stopped(&mut self, root: &Root, settings: &Settings) {
        if let Some(path) = &settings.textfile {
            self.metrics.put(root, path, metrics(&[], None));
        }
        published::remove(root);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_named_families_per_knob() {
        let c = Counters {
            repairs: 3,
            last_repair: Some(
                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
            ),
        };
        let row = |knob, status, counters, contested| Row {
            knob,
            status,
            counters,
            contested,
        };
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_059);
        let text = metrics(
            &[
                row("vm.overcommit_memory", Status::BootDrift, c, true),
                row("a\"b", Status::Drift, Counters::default(), false),
            ],
            Some(at),
        );
        for line in [
            "# TYPE forksafe_knob_in_spec gauge",
            "forksafe_knob_in_spec{knob=\"vm.overcommit_memory\"} 1",
            "forksafe_boot_drift{knob=\"vm.overcommit_memory\"} 1",
            "forksafe_repairs_total{knob=\"vm.overcommit_memory\"} 3",
            "forksafe_last_repair_timestamp_seconds{knob=\"vm.overcommit_memory\"} 1700000000",
            "forksafe_knob_in_spec{knob=\"a\\\"b\"} 0",
            "# TYPE forksafe_repairs_total counter",
            "forksafe_knob_contested{knob=\"vm.overcommit_memory\"} 1",
            "forksafe_knob_contested{knob=\"a\\\"b\"} 0",
            "forksafe_up 1",
            // In steps of 30 s: a file that changes at most twice a minute when idle.
            "forksafe_last_pass_timestamp_seconds 1700000040",
            &format!(
                "forksafe_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        // Stopped: up 0, and no knob is claimed held.
        let down = metrics(&[], None);
        assert!(down.lines().any(|l| l == "forksafe_up 0"), "{down}");
        assert!(!down.contains("knob="), "{down}");
    }

    #[test]
    fn a_file_is_written_when_it_changes_and_its_failure_said_once() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        let mut out = Output::new("metrics");
        let path = Path::new("/m/x.prom");
        out.put(&root, path, "a\n".into());
        let file = t.path().join("m/x.prom");
        let first = std::fs::metadata(&file).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        out.put(&root, path, "a\n".into());
        assert_eq!(std::fs::metadata(&file).unwrap().modified().unwrap(), first);
        // A directory where the file should be: the write fails, and the failure is
        // remembered (said once); a later success forgets it.
        std::fs::remove_file(&file).unwrap();
        std::fs::create_dir(&file).unwrap();
        out.put(&root, path, "b\n".into());
        assert_ne!(out.error, Memo::default());
        std::fs::remove_dir(&file).unwrap();
        out.put(&root, path, "b\n".into());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "b\n");
        assert_eq!(out.error, Memo::default());
    }
}
