//! How numbers, durations and values are said in sentences: "1 knob", "2 knobs", "420ms",
//! "1min 5s", "(empty)". Imports nothing; every layer that words a sentence uses it.

use std::time::Duration;

/// `n` and the noun in the right number: `count(1, "failure", "failures")` is "1 failure".
pub(crate) fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// [`count`] for a `u64`.
pub(crate) fn count64(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// A duration as people (and the config's `interval`) write it: milliseconds under a
/// second (`420ms`; `under 1ms` below that), else whole seconds, minutes, hours and days
/// (`2s`, `1min 30s`, `1h 5min`, `1d 2h`), the rest dropped.
pub(crate) fn timespan(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "under 1ms".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let mut secs = d.as_secs();
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1)] {
        if secs >= size {
            parts.push(format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    parts.join(" ")
}

/// A value as a sentence shows it: an empty one is `(empty)`, not nothing.
pub(crate) fn value(v: &str) -> &str {
    if v.is_empty() { "(empty)" } else { v }
}

/// Values in a list: `0, (empty)`.
pub(crate) fn values<'a>(vs: impl IntoIterator<Item = &'a String>) -> String {
    vs.into_iter()
        .map(|v| value(v))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(count(0, "failure", "failures"), "0 failures");
        assert_eq!(count(1, "failure", "failures"), "1 failure");
        assert_eq!(count(2, "repair", "repairs"), "2 repairs");
        assert_eq!(count64(1, "repair", "repairs"), "1 repair");
    }

    #[test]
    fn timespans() {
        let ms = Duration::from_millis;
        assert_eq!(timespan(Duration::from_nanos(300)), "under 1ms");
        assert_eq!(timespan(ms(420)), "420ms");
        assert_eq!(timespan(ms(2300)), "2s");
        assert_eq!(timespan(ms(60_000)), "1min");
        assert_eq!(timespan(ms(90_000)), "1min 30s");
        assert_eq!(timespan(ms(3_900_000)), "1h 5min");
        assert_eq!(timespan(ms(93_600_000)), "1d 2h");
    }

    #[test]
    fn empty_values_are_said() {
        assert_eq!(value(""), "(empty)");
        assert_eq!(value("0"), "0");
        let vs = ["0".to_string(), String::new()];
        assert_eq!(values(&vs), "0, (empty)");
    }
}
