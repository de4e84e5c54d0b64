//! The Prometheus text format, as both writers of metrics use it: the daemon's
//! (`[report] textfile`) and doctor's (`doctor --textfile`), both read by node_exporter's
//! textfile collector.

use std::fmt::Write as _;
use std::time::SystemTime;

/// A label value, escaped as the text format requires.
pub(crate) fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The `# HELP` and `# TYPE` lines that open a family.
pub(crate) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// `t` as a metric's Unix time in whole seconds (0 before the epoch).
pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_value_escapes_what_the_format_requires() {
        assert_eq!(label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(label("redis-6379"), "redis-6379");
    }

    #[test]
    fn a_family_opens_with_help_and_type() {
        let mut out = String::new();
        family(&mut out, "x_total", "counter", "Things.");
        assert_eq!(out, "# HELP x_total Things.\n# TYPE x_total counter\n");
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_500);
        assert_eq!(unix_secs(t), 1);
    }
}
