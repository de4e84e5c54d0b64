//! The database's own answers, judged: did its last save or rewrite fail (and does the
//! kernel explain it), how long its last fork froze it, copy-on-write against its dataset,
//! fragmentation, and maxmemory against RAM.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::os::root::Root;

use super::check::{Check, Verdict, check, mib};
use super::resp::{Answers, Auth, Endpoint, NoAnswer, ask, endpoints};

fn num(info: &BTreeMap<String, String>, k: &str) -> Option<f64> {
    info.get(k).and_then(|v| v.trim().parse().ok())
}

/// The per-instance checks from the database's own answers.
pub(crate) fn checks(
    root: &Root,
    pid: u32,
    who: &str,
    auth: &Auth,
    mode: Option<&str>,
    refusal: Option<String>,
) -> Vec<Check> {
    let ids = [
        "persistence",
        "fork-latency",
        "cow",
        "fragmentation",
        "maxmemory",
    ];
    let all_unknown = |why: &str, fix: Option<&str>| -> Vec<Check> {
        ids.iter()
            .map(|id| {
                check(
                    format!("{id}:{pid}"),
                    Verdict::Unknown,
                    format!("unknown: {who}: {why}"),
                    fix,
                )
            })
            .collect()
    };
    let eps = match endpoints(root, pid) {
        Ok(e) if e.is_empty() => {
            return all_unknown("it listens on no socket doctor can find", None);
        }
        Ok(e) => e,
        Err(why) => return all_unknown(&format!("cannot see its sockets: {why}"), None),
    };
    let password = auth.password.clone();
    let mut last = NoAnswer::Other("no endpoint".into());
    let mut answers = None;
    for at in &eps {
        let paths: Vec<PathBuf> = match at {
            Endpoint::Unix(p) => {
                let rel = p.strip_prefix("/").unwrap_or(p);
                [
                    root.join(format!("proc/{pid}/root")).map(|d| d.join(rel)),
                    root.join(rel),
                ]
                .into_iter()
                .flatten()
                .collect()
            }
            Endpoint::Tcp(_) => Vec::new(),
        };
        match ask(at, &paths, password.as_deref()) {
            Ok(a) => {
                answers = Some(a);
                break;
            }
            Err(e) => last = e,
        }
    }
    let Some(a) = answers else {
        return match last {
            NoAnswer::NeedsPassword(why) => all_unknown(
                &format!("needs a password ({why})"),
                Some(
                    "give it with REDISCLI_AUTH=... forksafe doctor, or forksafe doctor --password-file FILE",
                ),
            ),
            NoAnswer::Other(why) => all_unknown(&why, None),
        };
    };
    judge(pid, who, &a, mode, refusal)
}

/// The INFO fields that say a save or a rewrite failed ("err") when they do.
const FAILED_KEYS: [&str; 3] = [
    "rdb_last_bgsave_status",
    "aof_last_bgrewrite_status",
    "aof_last_write_status",
];

/// Which of [`FAILED_KEYS`] say "err" in `info`.
fn failed(info: &BTreeMap<String, String>) -> Vec<&'static str> {
    FAILED_KEYS
        .into_iter()
        .filter(|k| info.get(*k).map(String::as_str) == Some("err"))
        .collect()
}

/// The checks, from what the database at `pid` said. `mode` is vm.overcommit_memory;
/// `refusal`, when the kernel would refuse a fork of it now, says why.
pub fn judge(
    pid: u32,
    who: &str,
    a: &Answers,
    mode: Option<&str>,
    refusal: Option<String>,
) -> Vec<Check> {
    let who = format!("{who} at {}", a.at);
    vec![
        persistence(pid, &who, a, mode, refusal),
        fork_latency(pid, &who, &a.info),
        cow(pid, &who, a),
        fragmentation(pid, &who, &a.info),
        maxmemory(pid, &who, &a.info),
    ]
}

/// Did the last save or rewrite fail, and is the kernel the cause?
fn persistence(
    pid: u32,
    who: &str,
    a: &Answers,
    mode: Option<&str>,
    refusal: Option<String>,
) -> Check {
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
        return check(
            id,
            Verdict::Ok,
            format!("{who} ({version}): the last save and rewrite succeeded; {schedule}"),
            None,
        );
    }
    let cause = match (mode, refusal) {
        (Some("0" | "2"), Some(why)) => (
            format!(
                "the kernel explains it: under vm.overcommit_memory {} a fork now would be refused ({why}). This is the failure forksafe prevents",
                mode.unwrap_or("?")
            ),
            "forksafe apply   (vm.overcommit_memory = 1; then BGSAVE again)",
        ),
        _ => (
            format!(
                "the kernel settings do not explain it (vm.overcommit_memory {}, and a fork would fit now): look for a full disk, permissions on its dir, or I/O errors in its log; forksafe is not the fix",
                mode.unwrap_or("unknown")
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
    match num(i, "latest_fork_usec") {
        None => check(
            id,
            Verdict::Unknown,
            format!("unknown: {who} reports no latest_fork_usec"),
            None,
        ),
        Some(0.0) => check(
            id,
            Verdict::Ok,
            format!("{who}: no fork since it started"),
            None,
        ),
        Some(u) if u > 500_000.0 => check(
            id,
            Verdict::Warn,
            format!(
                "{who}: its last fork froze the main thread for {:.0} ms (over 500 ms: clients notice, replicas may drop)",
                u / 1000.0
            ),
            Some(
                "transparent huge pages never (forksafe), a smaller dataset per instance, or save from a replica",
            ),
        ),
        Some(u) => check(
            id,
            Verdict::Ok,
            format!("{who}: its last fork took {:.1} ms", u / 1000.0),
            None,
        ),
    }
}

/// Copy-on-write against the dataset.
fn cow(pid: u32, who: &str, a: &Answers) -> Check {
    let i = &a.info;
    let id = format!("cow:{pid}");
    let used = num(i, "used_memory").unwrap_or(0.0);
    let cow = [
        "rdb_last_cow_size",
        "aof_last_cow_size",
        "current_cow_peak",
        "current_cow_size",
    ]
    .iter()
    .filter_map(|k| num(i, k).map(|v| (*k, v)))
    .fold(None, |best: Option<(&str, f64)>, (k, v)| match best {
        Some((_, b)) if b >= v => best,
        _ => Some((k, v)),
    });
    let thp = match a.config.get("disable-thp") {
        Some(Ok(v)) => format!("disable-thp {v}"),
        Some(Err(e)) => format!("disable-thp unknown ({e})"),
        None => String::new(),
    };
    match cow {
        None => check(
            id,
            Verdict::Unknown,
            format!("unknown: {who} reports no copy-on-write sizes"),
            None,
        ),
        Some((k, v)) if used > 0.0 && v > used / 2.0 => check(
            id,
            Verdict::Warn,
            format!(
                "{who}: {k} {} is more than half of used_memory {}: copy-on-write during saves is threatening this box; {thp}",
                mib((v / 1024.0) as u64),
                mib((used / 1024.0) as u64)
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
                mib((v / 1024.0) as u64),
                mib((used / 1024.0) as u64)
            ),
            None,
        ),
    }
}

/// Fragmentation: the headroom a fork's copy-on-write needs, already lost.
fn fragmentation(pid: u32, who: &str, i: &BTreeMap<String, String>) -> Check {
    let id = format!("fragmentation:{pid}");
    let used = num(i, "used_memory").unwrap_or(0.0);
    let rss = num(i, "used_memory_rss").unwrap_or(0.0);
    match num(i, "mem_fragmentation_ratio") {
        None => check(
            id,
            Verdict::Unknown,
            format!("unknown: {who} reports no mem_fragmentation_ratio"),
            None,
        ),
        // Tiny instances have large ratios of nothing: judge only real headroom lost.
        Some(ratio) if ratio > 1.5 && rss - used > 64.0 * 1024.0 * 1024.0 => check(
            id,
            Verdict::Warn,
            format!(
                "{who}: mem_fragmentation_ratio {ratio:.2} (RSS {} for {} of data): the headroom a fork's copy-on-write needs is already gone",
                mib((rss / 1024.0) as u64),
                mib((used / 1024.0) as u64)
            ),
            Some("activedefrag yes (jemalloc builds), or restart it from a replica"),
        ),
        Some(ratio) if ratio > 1.5 => check(
            id,
            Verdict::Ok,
            format!(
                "{who}: mem_fragmentation_ratio {ratio:.2}, but of only {} (small instances show large ratios of little)",
                mib(((rss - used).max(0.0) / 1024.0) as u64)
            ),
            None,
        ),
        Some(ratio) => check(
            id,
            Verdict::Ok,
            format!("{who}: mem_fragmentation_ratio {ratio:.2}"),
            None,
        ),
    }
}

/// maxmemory against RAM.
fn maxmemory(pid: u32, who: &str, i: &BTreeMap<String, String>) -> Check {
    let id = format!("maxmemory:{pid}");
    let total = num(i, "total_system_memory").unwrap_or(0.0);
    match num(i, "maxmemory") {
        None => check(
            id,
            Verdict::Unknown,
            format!("unknown: {who} reports no maxmemory"),
            None,
        ),
        Some(0.0) => check(
            id,
            Verdict::Warn,
            format!(
                "{who}: no maxmemory: the dataset can grow until a save's copy-on-write exhausts memory ({} of RAM)",
                mib((total / 1024.0) as u64)
            ),
            Some("set maxmemory to at most half of RAM (or of the container's limit)"),
        ),
        Some(m) if total > 0.0 && m > total / 2.0 => check(
            id,
            Verdict::Warn,
            format!(
                "{who}: maxmemory {} is more than half of RAM {}: a save that rewrites most pages can need twice it",
                mib((m / 1024.0) as u64),
                mib((total / 1024.0) as u64)
            ),
            Some("lower maxmemory to at most half of RAM, or add swap"),
        ),
        Some(m) => check(
            id,
            Verdict::Ok,
            format!(
                "{who}: maxmemory {} of RAM {}",
                mib((m / 1024.0) as u64),
                mib((total / 1024.0) as u64)
            ),
            None,
        ),
    }
}
