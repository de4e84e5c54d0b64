//! Configuration: raw TOML (serde, unknown keys refused) -> validated [`Settings`].
//!
//! Only `Settings` leaves this module, so the rest of the program never sees a knob, an
//! interval or a path that was not checked. Every refusal names the file and the line.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use toml::Spanned;

use crate::knob::{Kind, Knob};
use crate::os::fsread;
use crate::os::namespaces::Host;
use crate::os::report::{Event, EventKind};
use crate::os::root::Root;
use crate::words;

/// The shipped default, compiled in and used when no config file exists.
pub const DEFAULT_CONFIG: &str = include_str!("../etc/forksafe/forksafe.toml");

/// Where the config file lives, relative to the root.
pub(crate) const CONFIG_PATH: &str = "etc/forksafe/forksafe.toml";

/// The default managed sysctl.d drop-in.
pub(crate) const DEFAULT_DROPIN: &str = "/etc/sysctl.d/99-zz-forksafe.conf";

/// The only directory the drop-in may live in: `/run/sysctl.d` is a tmpfs, and the others
/// belong to packages.
pub(crate) const DROPIN_DIR: &str = "/etc/sysctl.d";

/// Where the running settings came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file on disk (the path as opened).
    File(PathBuf),
    /// The compiled-in default.
    Builtin,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Builtin => write!(f, "the compiled-in default"),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// How often every knob is re-read.
    pub(crate) interval: Duration,
    /// false = audit mode: report drift, never write (the daemon only).
    pub(crate) repair: bool,
    /// The knobs, in write order (THP `enabled` after `defrag`).
    pub(crate) knobs: Vec<Knob>,
    /// The line each knob is set on, by kind and name (for `validate`'s messages).
    lines: BTreeMap<(Kind, String), usize>,
    /// The managed sysctl.d drop-in (absolute, relative to the root), or `None` when
    /// `[sysctl_d] manage = false`.
    pub(crate) dropin: Option<PathBuf>,
    /// Prometheus metrics for node_exporter's textfile collector (absolute, relative to
    /// the root), or `None` (the default).
    pub(crate) textfile: Option<PathBuf>,
    /// Where these settings came from.
    pub(crate) source: Source,
}

/// A config that cannot be used: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or "the compiled-in default").
    pub(crate) source: Source,
    /// 1-based line, when the problem has one.
    pub(crate) line: Option<usize>,
    /// What is wrong.
    pub(crate) message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.source, line, self.message),
            None => write!(f, "{}: {}", self.source, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// The journal entry for a config refused at start: nothing was changed.
    pub(crate) fn refused_at_start(&self) -> Event {
        self.event(format!(
            "configuration refused, nothing was changed: {self}\n\
             Fix the file, then check it with `forksafe validate`."
        ))
    }

    /// The journal entry for a config refused on reload (by the daemon, or by `forksafe
    /// reload` before it signals): the running one stays.
    pub(crate) fn rejected(&self) -> Event {
        self.event(format!(
            "configuration rejected, the running one stays in force: {self}"
        ))
    }

    /// A refusal saying `message`, with the file and line in `CONFIG` and `CONFIG_LINE` (one
    /// `MESSAGE_ID` for both, for whoever watches).
    fn event(&self, message: String) -> Event {
        let event = Event::new(EventKind::ConfigRejected, message).field("CONFIG", &self.source);
        match self.line {
            Some(line) => event.number("CONFIG_LINE", line),
            None => event,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    sysctl: KnobTable,
    #[serde(default)]
    sysfs: KnobTable,
    #[serde(default)]
    sysctl_d: RawSysctlD,
    #[serde(default)]
    report: RawReport,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawReport {
    textfile: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    interval: Option<Spanned<String>>,
    repair: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSysctlD {
    manage: Option<bool>,
    file: Option<Spanned<String>>,
}

/// A knob value as written: an integer, a string, or (for an unquoted dotted key such as
/// `vm.overcommit_memory = 1`, which TOML reads as nested tables) a table of more of them.
enum RawValue {
    Int(i64),
    Str(String),
    Table(KnobTable),
}

/// The entries of `[sysctl]` or `[sysfs]`, each value with its position in the file.
#[derive(Default)]
struct KnobTable(Vec<(String, Spanned<RawValue>)>);

impl<'de> Deserialize<'de> for KnobTable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ValueVisitor).and_then(|v| match v {
            RawValue::Table(t) => Ok(t),
            _ => Err(de::Error::custom("expected a table")),
        })
    }
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = RawValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer or a string")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawValue, E> {
        Ok(RawValue::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawValue, E> {
        i64::try_from(v)
            .map(RawValue::Int)
            .map_err(|_| E::custom("integer too large"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawValue, E> {
        Ok(RawValue::Str(v.to_string()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawValue, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value::<Spanned<RawValue>>()?;
            entries.push((key, value));
        }
        Ok(RawValue::Table(KnobTable(entries)))
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl Settings {
    /// "repair mode" or "audit mode", for the log.
    pub(crate) fn mode_name(&self) -> &'static str {
        if self.repair {
            "repair mode"
        } else {
            "audit mode"
        }
    }

    /// The line of the config file that sets `knob`.
    pub(crate) fn line_of(&self, knob: &Knob) -> Option<usize> {
        self.lines
            .get(&(knob.kind(), knob.name().to_string()))
            .copied()
    }

    /// `3 knobs, interval 1s, repair mode`: what these settings do, in one line.
    pub(crate) fn summary(&self) -> String {
        format!(
            "{}, interval {}, {}",
            words::count(self.knobs.len(), "knob", "knobs"),
            words::timespan(self.interval),
            self.mode_name()
        )
    }

    /// Parse and validate `text`, which came from `source`, for a host where forksafe shares
    /// every namespace (see [`Settings::parse_for`]): the tests' way in.
    #[cfg(test)]
    pub(crate) fn parse(text: &str, source: Source) -> Result<Settings, ConfigError> {
        Settings::parse_for(text, source, &Host::shared())
    }

    /// Parse and validate `text` for `host`: a per-namespace sysctl is refused when forksafe
    /// does not share that namespace with the host.
    pub(crate) fn parse_for(
        text: &str,
        source: Source,
        host: &Host,
    ) -> Result<Settings, ConfigError> {
        let err = |line: Option<usize>, message: String| ConfigError {
            source: source.clone(),
            line,
            message,
        };
        let at = |span: std::ops::Range<usize>| Some(line_of(text, span.start));

        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| err(e.span().and_then(at), e.message().trim().to_string()))?;

        let interval = match &raw.daemon.interval {
            None => Duration::from_secs(1),
            Some(s) => parse_timespan(s.get_ref()).map_err(|m| err(at(s.span()), m))?,
        };

        let (mut knobs, lines) = validate_knobs(&raw, host, text, &source)?;
        // Sysctl before sysfs, key order within each (TOML gives tables sorted), and THP
        // `enabled` after everything else (a stable sort keeps the rest as it is).
        knobs.sort_by_key(|k| k.write_last());

        let dropin = if raw.sysctl_d.manage.unwrap_or(true) {
            let file = match &raw.sysctl_d.file {
                None => PathBuf::from(DEFAULT_DROPIN),
                Some(f) => validate_dropin(f.get_ref()).map_err(|m| err(at(f.span()), m))?,
            };
            Some(file)
        } else {
            None
        };

        let textfile = match &raw.report.textfile {
            None => None,
            Some(f) => Some(validate_textfile(f.get_ref()).map_err(|m| err(at(f.span()), m))?),
        };

        Ok(Settings {
            interval,
            repair: raw.daemon.repair.unwrap_or(true),
            knobs,
            lines,
            dropin,
            textfile,
            source,
        })
    }

    /// Load the settings: `config` when given (it must exist), else
    /// `<root>/etc/forksafe/forksafe.toml`, else the compiled-in default. The file is read
    /// through [`fsread::read_trusted`]: a FIFO, a device, a directory or a file over 1 MiB
    /// at the path is refused at once, never waited on.
    pub(crate) fn load(root: &Root, config: Option<&Path>) -> Result<Settings, ConfigError> {
        let path = match config {
            Some(p) => p.to_path_buf(),
            None => root
                .join(CONFIG_PATH)
                .unwrap_or_else(|| PathBuf::from(CONFIG_PATH)),
        };
        let source = Source::File(path.clone());
        let refuse = |message: String| ConfigError {
            source: source.clone(),
            line: None,
            message,
        };
        match fsread::read_trusted(&path, fsread::CONFIG_LIMIT) {
            Ok(bytes) => {
                let text = String::from_utf8(bytes).map_err(|e| {
                    refuse(format!(
                        "not valid UTF-8 (at byte {})",
                        e.utf8_error().valid_up_to()
                    ))
                })?;
                Settings::parse_for(&text, source, &Host::detect(root))
            }
            Err(e) if e.is_not_found() && config.is_none() => {
                Settings::parse_for(DEFAULT_CONFIG, Source::Builtin, &Host::detect(root))
            }
            Err(e @ fsread::ReadError::Untrusted(_)) => Err(refuse(e.to_string())),
            Err(e) => Err(refuse(format!("cannot read the config file: {e}"))),
        }
    }
}

impl Settings {
    /// Load again for a reload of settings that came from `running`. Like
    /// [`Settings::load`], except that when the running settings came from a file, that
    /// file vanishing is an error, not a quiet switch to the compiled-in default: a deleted
    /// or half-replaced config keeps the last good one. The daemon and `forksafe reload`
    /// (which checks before it signals) both judge a reload with this.
    pub(crate) fn load_for_reload(
        root: &Root,
        config: Option<&Path>,
        running: &Source,
    ) -> Result<Settings, ConfigError> {
        let new = Settings::load(root, config)?;
        match (running, &new.source) {
            (Source::File(path), Source::Builtin) => Err(ConfigError {
                source: running.clone(),
                line: None,
                message: format!(
                    "the config file is gone; restore {}, or restart forksafe to use the \
                     compiled-in default",
                    path.display()
                ),
            }),
            _ => Ok(new),
        }
    }

    /// [`Settings::load_for_reload`] for these (running) settings.
    pub(crate) fn reload(
        &self,
        root: &Root,
        config: Option<&Path>,
    ) -> Result<Settings, ConfigError> {
        Settings::load_for_reload(root, config, &self.source)
    }
}

/// The line each knob is set on.
type Lines = BTreeMap<(Kind, String), usize>;

/// Every knob of `[sysctl]` and `[sysfs]`, validated, each at most once, with its line;
/// refused with the line when a per-namespace sysctl is one forksafe cannot reach from
/// `host`.
fn validate_knobs(
    raw: &RawConfig,
    host: &Host,
    text: &str,
    source: &Source,
) -> Result<(Vec<Knob>, Lines), ConfigError> {
    let err = |line: Option<usize>, message: String| ConfigError {
        source: source.clone(),
        line,
        message,
    };
    let at = |span: std::ops::Range<usize>| Some(line_of(text, span.start));
    // Flatten dotted tables into full keys, then validate each knob.
    let mut knobs: Vec<Knob> = Vec::new();
    let mut lines = Lines::new();
    let mut seen: BTreeMap<(Kind, PathBuf), usize> = BTreeMap::new();
    for (kind, table) in [(Kind::Sysctl, &raw.sysctl), (Kind::Sysfs, &raw.sysfs)] {
        let mut flat = Vec::new();
        flatten("", table, &mut flat);
        for (key, value) in flat {
            let line = at(value.span());
            let value = match value.get_ref() {
                RawValue::Int(i) => i.to_string(),
                RawValue::Str(s) => s.clone(),
                RawValue::Table(_) => continue, // flatten() never yields tables
            };
            let knob = Knob::new(kind, &key, &value).map_err(|m| err(line, m))?;
            if kind == Kind::Sysctl {
                if let Some(why) = host.refuse(knob.rel()) {
                    return Err(err(line, format!("{}: {why}", knob.name())));
                }
            }
            let id = (kind, knob.rel().to_path_buf());
            let this = line.unwrap_or(0);
            if let Some(other) = seen.insert(id, this) {
                // TOML hands tables over in key order, not file order: name the later line.
                let (first, second) = (other.min(this), other.max(this));
                return Err(err(
                    Some(second),
                    format!("{} is set twice (first on line {first})", knob.name()),
                ));
            }
            lines.insert((kind, knob.name().to_string()), this);
            knobs.push(knob);
        }
    }
    if knobs.is_empty() {
        return Err(err(
            None,
            "no knobs configured in [sysctl] or [sysfs]; forksafe would do nothing".into(),
        ));
    }
    Ok((knobs, lines))
}

/// Join keys that TOML split at their dots (`vm.overcommit_memory = 1` is the table `vm`
/// holding `overcommit_memory`) back into one key.
fn flatten<'a>(prefix: &str, table: &'a KnobTable, out: &mut Vec<(String, &'a Spanned<RawValue>)>) {
    for (key, value) in &table.0 {
        let full = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value.get_ref() {
            RawValue::Table(inner) => flatten(&full, inner, out),
            _ => out.push((full, value)),
        }
    }
}

fn validate_dropin(file: &str) -> Result<PathBuf, String> {
    let p = Path::new(file);
    if p.parent() != Some(Path::new(DROPIN_DIR)) {
        let why = if p.starts_with("/run") {
            " (/run is a tmpfs: a drop-in there is gone at the next boot, which is when it is needed)"
        } else {
            ""
        };
        return Err(format!(
            "[sysctl_d] file {file:?} must be directly in {DROPIN_DIR}, the one sysctl.d \
             directory that survives a reboot{why}"
        ));
    }
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !name.ends_with(".conf") || name.starts_with('.') || name.len() <= ".conf".len() {
        return Err(format!(
            "[sysctl_d] file {file:?} must be named *.conf, or systemd-sysctl ignores it"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+')))
    {
        return Err(format!(
            "[sysctl_d] file {file:?} has the character {bad:?}; use A-Z a-z 0-9 . _ - @ +"
        ));
    }
    Ok(p.to_path_buf())
}

pub(crate) fn validate_textfile(file: &str) -> Result<PathBuf, String> {
    let p = Path::new(file);
    if !p.is_absolute()
        || p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!(
            "[report] textfile {file:?} must be an absolute path without \"..\""
        ));
    }
    if p.extension().and_then(|e| e.to_str()) != Some("prom") {
        return Err(format!(
            "[report] textfile {file:?} must end in .prom, or node_exporter's textfile collector ignores it"
        ));
    }
    Ok(p.to_path_buf())
}

/// Parse a systemd-style time span: `500ms`, `2s`, `1min 30s`, `1.5s`; a bare number is
/// seconds. At least 10ms (a shorter interval only burns CPU), at most a day.
pub(crate) fn parse_timespan(s: &str) -> Result<Duration, String> {
    let bad = |why: &str| {
        Err(format!(
            "interval {s:?}: {why}; use e.g. \"500ms\", \"2s\", \"1min\""
        ))
    };
    let mut total_ns: u128 = 0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return bad("empty");
    }
    if rest.starts_with('-') {
        return bad("negative");
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() {
            return bad("expected a number");
        }
        let tail = tail.trim_start();
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c.is_whitespace())
            .unwrap_or(tail.len());
        let (unit, after) = tail.split_at(unit_len);
        let ns_per: u128 = match unit {
            "" | "s" | "sec" | "second" | "seconds" => 1_000_000_000,
            "us" | "usec" | "µs" => 1_000,
            "ms" | "msec" => 1_000_000,
            "m" | "min" | "minute" | "minutes" => 60_000_000_000,
            "h" | "hr" | "hour" | "hours" => 3_600_000_000_000,
            "d" | "day" | "days" => 86_400_000_000_000,
            other => return bad(&format!("unknown unit {other:?}")),
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if frac.contains('.') || (int.is_empty() && frac.is_empty()) {
            return bad("malformed number");
        }
        let int_v: u128 = if int.is_empty() {
            0
        } else {
            match int.parse::<u64>() {
                Ok(v) => u128::from(v),
                Err(_) => return bad("number too large"),
            }
        };
        let mut part = int_v.saturating_mul(ns_per);
        let mut scale = ns_per;
        for d in frac.chars().take(9) {
            scale /= 10;
            part = part.saturating_add(u128::from(d.to_digit(10).unwrap_or(0)) * scale);
        }
        total_ns = total_ns.saturating_add(part);
        rest = after.trim_start();
    }
    let d = Duration::from_nanos(u64::try_from(total_ns).unwrap_or(u64::MAX));
    if d.is_zero() {
        return bad("must be more than zero");
    }
    if d < Duration::from_millis(10) {
        return bad("must be at least 10ms");
    }
    if d > Duration::from_secs(86_400) {
        return bad("must be at most 1d");
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        Settings::parse(text, Source::File(PathBuf::from("/t.toml")))
    }

    fn refused(text: &str) -> ConfigError {
        parse(text).unwrap_err()
    }

    const MIN: &str = "[sysctl]\n\"vm.overcommit_memory\" = 1\n";

    #[test]
    fn default_config_parses() {
        let s = Settings::parse(DEFAULT_CONFIG, Source::Builtin).unwrap();
        assert_eq!(s.interval, Duration::from_secs(1));
        assert!(s.repair);
        let names: Vec<_> = s.knobs.iter().map(|k| (k.name(), k.desired())).collect();
        assert_eq!(
            names,
            [
                ("vm.overcommit_memory", "1"),
                ("kernel/mm/transparent_hugepage/defrag", "never"),
                ("kernel/mm/transparent_hugepage/enabled", "never"),
            ]
        );
        assert_eq!(s.dropin, Some(PathBuf::from(DEFAULT_DROPIN)));
    }

    #[test]
    fn dotted_key_means_the_same_as_quoted() {
        let quoted = parse(MIN).unwrap();
        let dotted = parse("[sysctl]\nvm.overcommit_memory = 1\n").unwrap();
        let slashed = parse("[sysctl]\n\"vm/overcommit_memory\" = \"1\"\n").unwrap();
        assert_eq!(quoted.knobs, dotted.knobs);
        assert_eq!(quoted.knobs, slashed.knobs);
        let nested = parse("[sysctl.vm]\novercommit_memory = 1\n").unwrap();
        assert_eq!(quoted.knobs, nested.knobs);
    }

    #[test]
    fn same_knob_twice_is_refused() {
        // Refused: two spellings of one key; which one wins would be a guess.
        let e = refused("[sysctl]\n\"vm.overcommit_memory\" = 1\nvm.overcommit_memory = 1\n");
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("set twice"), "{e}");
    }

    #[test]
    fn thp_enabled_is_written_last() {
        let s = parse(
            "[sysfs]\n\"kernel/mm/transparent_hugepage/enabled\" = \"never\"\n\
             \"kernel/mm/transparent_hugepage/khugepaged/defrag\" = \"0\"\n\
             \"kernel/mm/transparent_hugepage/defrag\" = \"never\"\n",
        )
        .unwrap();
        assert!(s.knobs.last().unwrap().write_last());
    }

    #[test]
    fn refusals_name_the_line() {
        let cases: &[(&str, usize, &str)] = &[
            // Refused: a typo in a root daemon's config must fail loudly.
            ("[daemon]\nintervall = \"1s\"\n", 2, "unknown field"),
            ("[deamon]\ninterval = \"1s\"\n", 1, "unknown field"),
            // Refused: wrong types.
            ("[daemon]\nrepair = \"yes\"\n", 2, "invalid type"),
            ("[daemon]\ninterval = 5\n", 2, "invalid type"),
            (
                "[sysctl]\n\"vm.overcommit_memory\" = true\n",
                2,
                "invalid type",
            ),
            ("[sysctl]\n\"vm.swappiness\" = 1.5\n", 2, "invalid type"),
            ("[sysctl]\n\"vm.swappiness\" = [1]\n", 2, "invalid type"),
            // Refused: intervals that are zero, negative or unparseable.
            ("[daemon]\ninterval = \"0s\"\n", 2, "more than zero"),
            ("[daemon]\ninterval = \"-1s\"\n", 2, "negative"),
            ("[daemon]\ninterval = \"soon\"\n", 2, "interval"),
            ("[daemon]\ninterval = \"1 fortnight\"\n", 2, "unknown unit"),
            ("[daemon]\ninterval = \"\"\n", 2, "empty"),
            // Refused: characters outside the sysctl key alphabet, and `..`.
            ("[sysctl]\n\"vm.over commit\" = 1\n", 2, "character"),
            ("[sysctl]\n\"vm..overcommit_memory\" = 1\n", 2, "\"..\""),
            // Refused: sysfs paths that are absolute or climb.
            (
                "[sysfs]\n\"/sys/kernel/mm/transparent_hugepage/enabled\" = \"never\"\n",
                2,
                "absolute",
            ),
            ("[sysfs]\n\"kernel/../../etc/x\" = \"1\"\n", 2, "\"..\""),
            // Refused: values a known knob cannot take.
            ("[sysctl]\n\"vm.overcommit_memory\" = 3\n", 2, "0, 1 or 2"),
            (
                "\n[sysfs]\n\"kernel/mm/transparent_hugepage/enabled\" = \"sometimes\"\n",
                3,
                "always, madvise, never",
            ),
            (
                "[sysfs]\n\"kernel/mm/transparent_hugepage/defrag\" = \"inherit\"\n",
                2,
                "defer+madvise",
            ),
            // Refused: empty values.
            ("[sysctl]\n\"vm.swappiness\" = \"\"\n", 2, "empty"),
            // Refused: a drop-in systemd-sysctl would never read.
            (
                "[sysctl]\n\"vm.overcommit_memory\" = 1\n[sysctl_d]\nfile = \"/etc/forksafe.conf\"\n",
                4,
                "/etc/sysctl.d",
            ),
            (
                "[sysctl]\n\"vm.overcommit_memory\" = 1\n[sysctl_d]\nfile = \"/etc/sysctl.d/x.txt\"\n",
                4,
                "*.conf",
            ),
            // Refused: /run is a tmpfs; the drop-in would be gone at the boot it is for.
            (
                "[sysctl]\n\"vm.overcommit_memory\" = 1\n[sysctl_d]\nfile = \"/run/sysctl.d/99-x.conf\"\n",
                4,
                "gone at the next boot",
            ),
            // Refused: a name the package scripts could not handle safely.
            (
                "[sysctl]\n\"vm.overcommit_memory\" = 1\n[sysctl_d]\nfile = \"/etc/sysctl.d/a b.conf\"\n",
                4,
                "character",
            ),
            // Refused: not a value the kernel prints back; it would be rewritten every tick.
            (
                "[sysctl]\n\"vm.overcommit_memory\" = \"+1\"\n",
                2,
                "canonical",
            ),
            (
                "[sysctl]\n\"vm.overcommit_memory\" = \"01\"\n",
                2,
                "canonical",
            ),
            ("[sysctl]\n\"vm.swappiness\" = \"1e2\"\n", 2, "canonical"),
            // Refused: metrics node_exporter would never read, or a relative path.
            (
                "[sysctl]\n\"vm.overcommit_memory\" = 1\n[report]\ntextfile = \"/var/lib/x/forksafe.txt\"\n",
                4,
                ".prom",
            ),
            (
                "[sysctl]\n\"vm.overcommit_memory\" = 1\n[report]\ntextfile = \"forksafe.prom\"\n",
                4,
                "absolute",
            ),
            (
                "[sysctl]\n\"vm.overcommit_memory\" = 1\n[report]\ntextfil = \"/x.prom\"\n",
                4,
                "unknown field",
            ),
            // Refused: broken TOML.
            ("[sysctl\n", 1, ""),
        ];
        for (text, line, fragment) in cases {
            let e = refused(text);
            assert_eq!(e.line, Some(*line), "{text:?}: {e}");
            assert!(e.message.contains(fragment), "{text:?}: {e}");
            assert!(
                e.to_string().starts_with(&format!("/t.toml:{line}: ")),
                "{e}"
            );
        }
    }

    #[test]
    fn no_knobs_is_refused() {
        // Refused: a config that enforces nothing is almost certainly a mistake.
        let e = refused("[daemon]\nrepair = false\n");
        assert!(e.message.contains("no knobs"), "{e}");
    }

    #[test]
    fn accepted_settings() {
        let s = parse(
            "[daemon]\ninterval = \"1min 30s\"\nrepair = false\n\
             [sysctl]\n\"vm.overcommit_memory\" = \"1\"\n\
             [sysctl_d]\nmanage = false\n",
        )
        .unwrap();
        assert_eq!(s.interval, Duration::from_secs(90));
        assert!(!s.repair);
        assert_eq!(s.dropin, None);
        let s = parse(&format!(
            "{MIN}[sysctl_d]\nfile = \"/etc/sysctl.d/50-mine.conf\"\n"
        ))
        .unwrap();
        assert_eq!(s.dropin, Some(PathBuf::from("/etc/sysctl.d/50-mine.conf")));
        assert_eq!(s.textfile, None);
        let s = parse(&format!(
            "{MIN}[report]\ntextfile = \"/var/lib/prometheus/node-exporter/forksafe.prom\"\n"
        ))
        .unwrap();
        assert_eq!(
            s.textfile,
            Some(PathBuf::from(
                "/var/lib/prometheus/node-exporter/forksafe.prom"
            ))
        );
    }

    #[test]
    fn timespans() {
        let ok = |s: &str| parse_timespan(s).unwrap();
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("2s"), Duration::from_secs(2));
        assert_eq!(ok("2"), Duration::from_secs(2));
        assert_eq!(ok("1min"), Duration::from_secs(60));
        assert_eq!(ok("1min30s"), Duration::from_secs(90));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok(" 1h "), Duration::from_secs(3600));
        for bad in [
            "",
            "0",
            "0ms",
            "-1s",
            "1x",
            "s",
            "1..5s",
            "5ms",
            "2d",
            "99999999999999999999s",
        ] {
            assert!(parse_timespan(bad).is_err(), "{bad:?} accepted");
        }
        // What words::timespan prints, this reads back (whole values).
        for d in [100, 1000, 90_000, 3_600_000, 86_400_000].map(Duration::from_millis) {
            assert_eq!(parse_timespan(&crate::words::timespan(d)), Ok(d));
        }
    }

    /// Bytes that look a little like the inputs: TOML-ish and sysctl.d-ish fragments mixed with
    /// anything at all.
    fn config_like() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("[daemon]\n".to_string()),
            Just("[sysctl]\n".to_string()),
            Just("[sysfs]\n".to_string()),
            Just("[sysctl_d]\n".to_string()),
            Just("[report]\n".to_string()),
            Just("interval = \"".to_string()),
            Just("\"vm.overcommit_memory\" = ".to_string()),
            Just("vm.overcommit_memory = ".to_string()),
            Just("\"kernel/mm/transparent_hugepage/enabled\" = \"".to_string()),
            Just("= \"never\"\n".to_string()),
            "[0-9a-z.{}\\[\\]\"=/ \n-]{0,20}",
            any::<String>(),
        ];
        prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn config_parse_never_panics(text in config_like()) {
            let _ = Settings::parse(&text, Source::Builtin);
        }

        #[test]
        fn config_parse_any_string_never_panics(text in any::<String>()) {
            let _ = Settings::parse(&text, Source::Builtin);
        }
    }
}
