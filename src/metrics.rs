//! Prometheus text-format metrics for node_exporter's textfile collector
//! (`[report] textfile`): per knob whether it is in spec now and at the next boot, how often
//! the daemon repaired it, and when it last did. The daemon rewrites the file (atomically)
//! only when its content changes.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::enforce::Status;

/// What the daemon counts per knob.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Drift repairs since the daemon started.
    pub repairs: u64,
    /// When the last repair happened.
    pub last_repair: Option<SystemTime>,
}

/// A label value, escaped as the text format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The metrics file for these knobs: (name, status, counters) each.
pub fn render(knobs: &[(&str, Status, Counters)]) -> String {
    let mut out = String::new();
    let families: [(&str, &str, &str); 4] = [
        (
            "forksafe_knob_in_spec",
            "gauge",
            "1 when the knob has its desired value now.",
        ),
        (
            "forksafe_boot_drift",
            "gauge",
            "1 when the next boot (sysctl.d) would set the knob to another value.",
        ),
        (
            "forksafe_repairs_total",
            "counter",
            "Drift repairs since the daemon started.",
        ),
        (
            "forksafe_last_repair_timestamp_seconds",
            "gauge",
            "Unix time of the knob's last repair; 0 if none since the daemon started.",
        ),
    ];
    for (i, (name, kind, help)) in families.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (knob, status, c) in knobs {
            let status = *status;
            let value = match i {
                0 => u64::from(status.in_spec_now()),
                1 => u64::from(status == Status::BootDrift),
                2 => c.repairs,
                _ => c
                    .last_repair
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs()),
            };
            let _ = writeln!(out, "{name}{{knob=\"{}\"}} {value}", label(knob));
        }
    }
    out
}
