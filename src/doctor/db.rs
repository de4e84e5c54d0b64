//! The database's own answers, judged: did its last save or rewrite fail (and does the
//! kernel explain it), how long its last fork froze it, copy-on-write against its dataset,
//! fragmentation, and maxmemory against RAM. A verdict needs its fields: an answer that
//! lacks one (or holds something that is not a number) is unknown, never ok.

use std::collections::BTreeMap;

use super::ask::{Answers, NoAnswer};
use super::check::{Check, ForkNow, Verdict, check, mib};

/// The ids of the checks made from a database's answers.
pub(crate) const IDS: [&str; 5] = [
    "persistence",
    "fork-latency",
    "cow",
    "fragmentation",
    "maxmemory",
];

/// A size INFO reports, in bytes.
fn bytes(info: &BTreeMap<String, String>, k: &str) -> Option<u64> {
    info.get(k).and_then(|v| v.trim().parse().ok())
}

/// Bytes as MiB, for messages.
fn mib_of(b: u64) -> String {
    mib(b / 1024)
}

/// A ratio INFO reports: a finite, non-negative number.
fn ratio(info: &BTreeMap<String, String>, k: &str) -> Option<f64> {
    info.get(k)
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|r| r.is_finite() && *r >= 0.0)
}

/// Every database check unknown, for the same reason.
pub(crate) fn all_unknown(pid: u32, who: &str, why: &str, fix: Option<&str>) -> Vec<Check> {
    IDS.iter()
        .map(|id| {
            check(
                format!("{id}:{pid}"),
                Verdict::Unknown,
                format!("unknown: {who}: {why}"),
                fix,
            )
        })
        .collect()
}

/// The checks when the database could not be asked; `options` names what gives a password.
pub(crate) fn unanswered(pid: u32, who: &str, why: &NoAnswer, options: &str) -> Vec<Check> {
    match why {
        NoAnswer::NeedsPassword(why) => all_unknown(
            pid,
            who,
            &format!("needs a password ({why})"),
            Some(&format!("give it with {options}")),
        ),
        NoAnswer::Other(why) => all_unknown(pid, who, why, None),
    }
}

/// The INFO fields that say whether a save or a rewrite failed ("err") or not ("ok").
const STATUS_KEYS: [&str; 3] = [
    "rdb_last_bgsave_status",
    "aof_last_bgrewrite_status",
    "aof_last_write_status",
];

/// Which of [`STATUS_KEYS`] say "err" in `info`.
fn failed(info: &BTreeMap<String, String>) -> Vec<&'static str> {
    STATUS_KEYS
        .into_iter()
        .filter(|k| info.get(*k).map(String::as_str) == Some("err"))
        .collect()
}

/// The checks, from what the database at `pid` said. `mode` is vm.overcommit_memory;
/// `fork` is whether the kernel would refuse a fork of it now.
pub fn judge(pid: u32, who: &str, a: &Answers, mode: Option<&str>, fork: &ForkNow) -> Vec<Check> {
    let who = format!("{who} at {}", a.at);
    vec![
        persistence(pid, &who, a, mode, fork),
        fork_latency(pid, &who, &a.info),
        cow(pid, &who, a),
        fragmentation(pid, &who, &a.info),
        maxmemory(pid, &who, &a.info),
    ]
}

/// The unknown check `id` is when the answer lacks `fields`.
fn lacks(id: String, who: &str, fields: &[&str]) -> Check {
    check(
        id,
        Verdict::Unknown,
        format!(
            "unknown: {who} reports no valid {} (not judged without it)",
            fields.join(", ")
        ),
        None,
    )
}

/// Did the last save or rewrite fail, and is the kernel the cause?
fn persistence(pid: u32, who: &str, a: &Answers, mode: Option<&str>, fork: &ForkNow) -> Check {
    let i = &a.info;
    let s = |k: &str| i.get(k).map(String::as_str);
    // Valkey also reports the Redis version it is compatible with; its own comes first.
    let version = match (s("valkey_version"), s("redis_version")) {
        (Some(v), _) => format!("Valkey {v}"),
        (None, Some(v)) => format!("Redis {v}"),
        (None, None) => "version unknown".to_string(),
    };
    let failed = failed(i);
    let schedule = match a.config.get("save") {
        Some(Ok(v)) if v.is_empty() => "no save schedule (RDB snapshots off)".to_string(),
        Some(Ok(v)) => format!("save schedule \"{v}\""),
        Some(Err(e)) => format!("save schedule unknown (CONFIG GET: {e})"),
        None => String::new(),
    };
    let id = format!("persistence:{pid}");
    if failed.is_empty() {
        // "ok" only where each field says so: a missing one is not a success.
        let unsure: Vec<&str> = STATUS_KEYS
            .into_iter()
            .filter(|k| s(k) != Some("ok"))
            .collect();
        if !unsure.is_empty() {
            return lacks(id, &format!("{who} ({version})"), &unsure);
        }
        return check(
            id,
            Verdict::Ok,
            format!("{who} ({version}): the last save and rewrite succeeded; {schedule}"),
            None,
        );
    }
    let mode_now = mode.unwrap_or("unknown");
    let cause = match (mode, fork) {
        (Some("0" | "2"), ForkNow::Refused(why)) => (
            format!(
                "the kernel explains it: under vm.overcommit_memory {mode_now} a fork now would be refused ({why}). This is the failure forksafe prevents"
            ),
            "forksafe apply   (vm.overcommit_memory = 1; then BGSAVE again)",
        ),
        (_, ForkNow::Unknown(why)) => (
            format!(
                "whether the kernel explains it is unknown (vm.overcommit_memory {mode_now}; a fork now could not be judged: {why})"
            ),
            "read the server's log for the reason (\"Cannot allocate memory\" is the kernel: forksafe apply; \"Permission denied\", \"No space left on device\" are not), fix that, then BGSAVE",
        ),
        _ => (
            format!(
                "the kernel settings do not explain it (vm.overcommit_memory {mode_now}, and a fork would fit now): look for a full disk, permissions on its dir, or I/O errors in its log; forksafe is not the fix"
            ),
            "read the server's log for the reason (e.g. \"Permission denied\", \"No space left on device\"), fix that, then BGSAVE",
        ),
    };
    check(
        id,
        Verdict::Fail,
        format!(
            "{who} ({version}): {} is err: its last save failed, so writes may be refused (MISCONF); {}; {schedule}",
            failed.join(", "),
            cause.0
        ),
        Some(cause.1),
    )
}

/// How long the last fork froze the main thread.
fn fork_latency(pid: u32, who: &str, i: &BTreeMap<String, String>) -> Check {
    let id = format!("fork-latency:{pid}");
    match bytes(i, "latest_fork_usec") {
        None => lacks(id, who, &["latest_fork_usec"]),
        Some(0) => check(
            id,
            Verdict::Ok,
            format!("{who}: no fork since it started"),
            None,
        ),
        Some(u) if u > 500_000 => check(
            id,
            Verdict::Warn,
            format!(
                "{who}: its last fork froze the main thread for {} ms (over 500 ms: clients notice, replicas may drop)",
                u / 1000
            ),
            Some(
                "transparent huge pages never (forksafe), a smaller dataset per instance, or save from a replica",
            ),
        ),
        Some(u) => check(
            id,
            Verdict::Ok,
            format!("{who}: its last fork took {:.1} ms", u as f64 / 1000.0),
            None,
        ),
    }
}

/// Copy-on-write against the dataset.
fn cow(pid: u32, who: &str, a: &Answers) -> Check {
    let i = &a.info;
    let id = format!("cow:{pid}");
    let Some(used) = bytes(i, "used_memory") else {
        return lacks(id, who, &["used_memory"]);
    };
    let cow = [
        "rdb_last_cow_size",
        "aof_last_cow_size",
        "current_cow_peak",
        "current_cow_size",
    ]
    .iter()
    .filter_map(|k| bytes(i, k).map(|v| (*k, v)))
    // The largest; of equals, the first.
    .fold(None, |best: Option<(&str, u64)>, (k, v)| match best {
        Some((_, b)) if b >= v => best,
        _ => Some((k, v)),
    });
    let thp = match a.config.get("disable-thp") {
        Some(Ok(v)) => format!("disable-thp {v}"),
        Some(Err(e)) => format!("disable-thp unknown ({e})"),
        None => String::new(),
    };
    match cow {
        None => lacks(id, who, &["rdb_last_cow_size", "aof_last_cow_size"]),
        Some((k, v)) if used > 0 && v > used / 2 => check(
            id,
            Verdict::Warn,
            format!(
                "{who}: {k} {} is more than half of used_memory {}: copy-on-write during saves is threatening this box; {thp}",
                mib_of(v),
                mib_of(used)
            ),
            Some(
                "transparent huge pages never (forksafe apply) and disable-thp yes; fewer writes during saves; or save from a replica",
            ),
        ),
        Some((k, v)) => check(
            id,
            Verdict::Ok,
            format!(
                "{who}: {k} {} against used_memory {}; {thp}",
                mib_of(v),
                mib_of(used)
            ),
            None,
        ),
    }
}

/// Fragmentation: the headroom a fork's copy-on-write needs, already lost.
fn fragmentation(pid: u32, who: &str, i: &BTreeMap<String, String>) -> Check {
    let id = format!("fragmentation:{pid}");
    let (Some(r), Some(used), Some(rss)) = (
        ratio(i, "mem_fragmentation_ratio"),
        bytes(i, "used_memory"),
        bytes(i, "used_memory_rss"),
    ) else {
        return lacks(
            id,
            who,
            &["mem_fragmentation_ratio", "used_memory", "used_memory_rss"],
        );
    };
    let lost = rss.saturating_sub(used);
    match r {
        // Tiny instances have large ratios of nothing: judge only real headroom lost.
        r if r > 1.5 && lost > 64 * 1024 * 1024 => check(
            id,
            Verdict::Warn,
            format!(
                "{who}: mem_fragmentation_ratio {r:.2} (RSS {} for {} of data): the headroom a fork's copy-on-write needs is already gone",
                mib_of(rss),
                mib_of(used)
            ),
            Some("activedefrag yes (jemalloc builds), or restart it from a replica"),
        ),
        r if r > 1.5 => check(
            id,
            Verdict::Ok,
            format!(
                "{who}: mem_fragmentation_ratio {r:.2}, but of only {} (small instances show large ratios of little)",
                mib_of(lost)
            ),
            None,
        ),
        r => check(
            id,
            Verdict::Ok,
            format!("{who}: mem_fragmentation_ratio {r:.2}"),
            None,
        ),
    }
}

/// maxmemory against RAM.
fn maxmemory(pid: u32, who: &str, i: &BTreeMap<String, String>) -> Check {
    let id = format!("maxmemory:{pid}");
    let total = bytes(i, "total_system_memory").filter(|t| *t > 0);
    match (bytes(i, "maxmemory"), total) {
        (None, _) => lacks(id, who, &["maxmemory"]),
        (Some(0), _) => check(
            id,
            Verdict::Warn,
            format!(
                "{who}: no maxmemory: the dataset can grow until a save's copy-on-write exhausts memory ({})",
                total.map_or("RAM unknown".to_string(), |t| format!(
                    "{} of RAM",
                    mib_of(t)
                ))
            ),
            Some("set maxmemory to at most half of RAM (or of the container's limit)"),
        ),
        (Some(_), None) => lacks(id, who, &["total_system_memory"]),
        (Some(m), Some(total)) if m > total / 2 => check(
            id,
            Verdict::Warn,
            format!(
                "{who}: maxmemory {} is more than half of RAM {}: a save that rewrites most pages can need twice it",
                mib_of(m),
                mib_of(total)
            ),
            Some("lower maxmemory to at most half of RAM, or add swap"),
        ),
        (Some(m), Some(total)) => check(
            id,
            Verdict::Ok,
            format!("{who}: maxmemory {} of RAM {}", mib_of(m), mib_of(total)),
            None,
        ),
    }
}
