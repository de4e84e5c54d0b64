//! `forksafe doctor`: can this machine fork its database safely right now, and if not,
//! what exactly to do. Everything is read under the root, so tests use fixture trees. A
//! check whose evidence could not be read is `unknown` (shown as WARN), never `ok`.
//!
//! The fork rules follow the kernel. `dup_mmap` (kernel/fork.c, mm/mmap.c) charges the
//! child once per mapping the parent has with `VM_ACCOUNT` (`ac` in `/proc/PID/smaps`'s
//! `VmFlags`; `MAP_NORESERVE` mappings, as jemalloc makes when it starts under mode 0 or 1,
//! and `MADV_DONTFORK` ones, `dc`, are not charged), each through `__vm_enough_memory`
//! (mm/util.c): under mode 1 nothing is refused; under mode 2 each charge is added to the
//! committed address space and refused once it reaches `CommitLimit` less the admin reserve
//! (for a process without CAP_SYS_ADMIN) and min(VmSize/32, the user reserve), so the sum
//! decides; under mode 0 each mapping is judged on its own, so the largest decides: since
//! Linux 5.2 ("mm: fix false-positive OVERCOMMIT_GUESS failures") only one larger than
//! RAM + swap is refused, while older kernels compared it with free memory + page cache +
//! swap + reclaimable slab, less the admin reserve.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::config::Settings;
use crate::enforce;
use crate::fsread::{self, ReadError};
use crate::knob::normalize;
use crate::legacy::{self, Finding, Place};
use crate::root::Root;

/// The process names doctor looks for.
pub const DATABASES: [&str; 3] = ["redis-server", "valkey-server", "keydb-server"];

const THP: &str = "sys/kernel/mm/transparent_hugepage";

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Nothing to do.
    Ok,
    /// The evidence could not be read: no verdict (shown as WARN).
    Unknown,
    /// A risk worth knowing; not a failure.
    Warn,
    /// The machine is not fork-safe until this is fixed.
    Fail,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Unknown | Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        }
    }
}

/// One line of the diagnosis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// A stable id: `overcommit`, `thp-enabled`, `fork-headroom:PID`, ...
    pub id: String,
    /// ok, unknown, warn or fail.
    pub status: Verdict,
    /// What was found, with the evidence.
    pub message: String,
    /// The command or change that fixes it (or, for something redundant, removes it).
    pub fix: Option<String>,
}

pub(crate) fn check(
    id: impl Into<String>,
    status: Verdict,
    message: impl Into<String>,
    fix: Option<&str>,
) -> Check {
    Check {
        id: id.into(),
        status,
        message: message.into(),
        fix: fix.map(str::to_string),
    }
}

/// A check that could not be judged: what could not be read, and why.
pub(crate) fn unknown(id: impl Into<String>, what: &str, e: &ReadError) -> Check {
    let hint = if e.is_denied() { " (run as root)" } else { "" };
    check(
        id,
        Verdict::Unknown,
        format!("unknown: could not read {what}: {e}{hint}"),
        None,
    )
}

/// `/proc/meminfo` as kB values.
pub fn parse_meminfo(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let n = v.split_whitespace().next()?.parse().ok()?;
            Some((k.trim().to_string(), n))
        })
        .collect()
}

/// `Key:\tvalue` files (`/proc/PID/status`, `smaps_rollup`): the first number of a key.
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// (major, minor) of a kernel release such as `6.1.0-50-cloud-amd64`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

pub(crate) fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

/// What a fork of a process is charged: from `/proc/PID/smaps`, the mappings with `ac` in
/// `VmFlags` and without `dc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Charge {
    /// The sum of their sizes, kB (what mode 2 adds up).
    pub total_kib: u64,
    /// The largest one, kB (what mode 0 judges).
    pub largest_kib: u64,
    /// How many there are.
    pub mappings: usize,
}

/// Parse `/proc/PID/smaps`.
pub fn fork_charge(smaps: &str) -> Charge {
    let mut c = Charge::default();
    let mut size = 0;
    for line in smaps.lines() {
        if let Some(v) = line.strip_prefix("Size:") {
            size = v
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        } else if let Some(flags) = line.strip_prefix("VmFlags:") {
            let flags: Vec<&str> = flags.split_whitespace().collect();
            if flags.contains(&"ac") && !flags.contains(&"dc") {
                c.total_kib += size;
                c.largest_kib = c.largest_kib.max(size);
                c.mappings += 1;
            }
            size = 0;
        }
    }
    c
}

/// Reads under the root through [`fsread`]: never blocks, says why a read failed.
pub(crate) struct Reader<'a>(pub(crate) &'a Root);

impl Reader<'_> {
    pub(crate) fn read(&self, rel: &str) -> Result<String, ReadError> {
        let path = self.0.join(rel).ok_or(ReadError::NotFound)?;
        fsread::read_text(&path, fsread::PROC_LIMIT)
    }

    fn value(&self, rel: &str) -> Option<String> {
        self.read(rel).ok().map(|s| normalize(&s))
    }
}

/// One database process, with what could be read about it.
pub(crate) struct Db {
    pub(crate) pid: u32,
    pub(crate) name: String,
    status: Result<String, ReadError>,
    rollup: Result<String, ReadError>,
    smaps: Result<String, ReadError>,
    cgroup: Result<String, ReadError>,
}

impl Db {
    /// `redis-server (pid 4242, RSS 1953 MiB)`, without the RSS when it is unknown.
    pub(crate) fn who(&self) -> String {
        match self.rss_kib() {
            Some(rss) => format!("{} (pid {}, RSS {})", self.name, self.pid, mib(rss)),
            None => format!("{} (pid {})", self.name, self.pid),
        }
    }

    fn rss_kib(&self) -> Option<u64> {
        self.rollup.as_ref().ok().and_then(|r| field(r, "Rss"))
    }
}

fn databases(r: &Reader, processes: &[(u32, String)]) -> Vec<Db> {
    processes
        .iter()
        .filter(|(_, name)| DATABASES.contains(&name.as_str()))
        .map(|(pid, name)| Db {
            pid: *pid,
            name: name.clone(),
            status: r.read(&format!("proc/{pid}/status")),
            rollup: r.read(&format!("proc/{pid}/smaps_rollup")),
            smaps: r.read(&format!("proc/{pid}/smaps")),
            cgroup: r.read(&format!("proc/{pid}/cgroup")),
        })
        .collect()
}

/// The tightest memory limit over a process's cgroup and its ancestors: (kB, the file that
/// sets it). `Ok(None)` when nothing limits it.
fn cgroup_limit(r: &Reader, cgroup: &str) -> Result<Option<(u64, String)>, String> {
    // v1 writes "unlimited" as a huge number rounded to the page size.
    let limited = |bytes: u64| bytes < (1 << 62);
    // On a hybrid layout the v1 memory controller, when mounted, is the one that limits.
    let lines: Vec<(&str, &str)> = cgroup
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some((ctrls, path.trim().trim_start_matches('/')))
        })
        .collect();
    let v1 = lines
        .iter()
        .find(|(c, _)| c.split(',').any(|c| c == "memory"));
    let v2 = lines.iter().find(|(c, _)| c.is_empty());
    if let Some(&(ctrls, path)) = v1.or(v2) {
        if ctrls.is_empty() {
            // v2: walk from the process's cgroup up to the root; the smallest memory.max.
            let mut best: Option<(u64, String)> = None;
            let mut dir = Path::new(path);
            loop {
                let file = format!("sys/fs/cgroup/{}/memory.max", dir.display()).replace("//", "/");
                match r.read(&file) {
                    Ok(v) => {
                        if let Ok(bytes) = v.trim().parse::<u64>() {
                            if best.as_ref().is_none_or(|(b, _)| bytes / 1024 < *b) {
                                best = Some((bytes / 1024, format!("/{file}")));
                            }
                        }
                    }
                    Err(e) if e.is_not_found() => {} // no memory controller at this level
                    Err(e) => return Err(format!("/{file}: {e}")),
                }
                match dir.parent() {
                    Some(p) if !dir.as_os_str().is_empty() => dir = p,
                    _ => break,
                }
            }
            return Ok(best);
        }
        if ctrls.split(',').any(|c| c == "memory") {
            // v1: memory.stat's hierarchical_memory_limit is the tightest over the chain;
            // name the cgroup whose own limit it is.
            let dir = format!("sys/fs/cgroup/memory/{path}").replace("//", "/");
            let stat = r
                .read(&format!("{dir}/memory.stat"))
                .map_err(|e| format!("/{dir}/memory.stat: {e}"))?;
            let Some(limit) =
                field(&stat.replace(' ', ":"), "hierarchical_memory_limit").filter(|b| limited(*b))
            else {
                return Ok(None);
            };
            let mut at = Path::new(&dir);
            let mut named = format!("/{dir}/memory.stat (hierarchical_memory_limit)");
            while at.starts_with("sys/fs/cgroup/memory") {
                let own = r
                    .value(&format!("{}/memory.limit_in_bytes", at.display()))
                    .and_then(|v| v.parse::<u64>().ok());
                if own == Some(limit) {
                    named = format!("/{}/memory.limit_in_bytes", at.display());
                    break;
                }
                match at.parent() {
                    Some(p) => at = p,
                    None => break,
                }
            }
            return Ok(Some((limit / 1024, named)));
        }
    }
    Ok(None)
}

/// Diagnose the machine under `root` with the running configuration.
pub fn diagnose(root: &Root, settings: &Settings, auth: &crate::dbask::Auth) -> Vec<Check> {
    let r = Reader(root);
    let mut out = Vec::new();
    let meminfo = r.read("proc/meminfo");
    let mem = parse_meminfo(meminfo.as_deref().unwrap_or_default());
    let m = |k: &str| mem.get(k).copied().unwrap_or(0);
    let release = r.value("proc/sys/kernel/osrelease").unwrap_or_default();
    let version = kernel_version(&release);
    let mode = r.value("proc/sys/vm/overcommit_memory");
    let apply_fix = "forksafe apply   (sets it now and keeps it across reboots)";

    // overcommit
    out.push(match mode.as_deref() {
        Some("1") => check("overcommit", Verdict::Ok, "vm.overcommit_memory is 1: the kernel never refuses fork() for lack of memory", None),
        Some("0") => check(
            "overcommit",
            Verdict::Fail,
            format!(
                "vm.overcommit_memory is 0 (heuristic): {}; Redis itself asks for 1 (redis-server --check-system: with jemalloc, allocations can fail even without low memory)",
                if version.is_some_and(|v| v >= (5, 2)) {
                    "on this kernel (>= 5.2) only a fork with a mapping larger than RAM + swap is refused, but the mode can change under you"
                } else {
                    "on this kernel (< 5.2) a fork is refused when one of the process's mappings is larger than free memory + page cache + swap: \"Can't save in background: fork: Cannot allocate memory\""
                }
            ),
            Some(apply_fix),
        ),
        Some("2") => check(
            "overcommit",
            Verdict::Fail,
            format!(
                "vm.overcommit_memory is 2 (never overcommit): a fork is refused once Committed_AS ({}) plus what the child is charged reaches CommitLimit ({})",
                mib(m("Committed_AS")),
                mib(m("CommitLimit"))
            ),
            Some(apply_fix),
        ),
        other => check(
            "overcommit",
            Verdict::Unknown,
            format!("unknown: cannot read vm.overcommit_memory ({})", other.unwrap_or("no /proc/sys/vm/overcommit_memory")),
            None,
        ),
    });

    // THP, global
    let enabled = r.value(&format!("{THP}/enabled"));
    let thp_fix =
        "forksafe apply   (then restart the database: pages that are already huge stay huge)";
    out.push(match enabled.as_deref() {
        None => check("thp-enabled", Verdict::Ok, "this kernel has no transparent huge pages", None),
        Some("never") => check("thp-enabled", Verdict::Ok, "transparent huge pages are never used", None),
        Some("always") => check(
            "thp-enabled",
            Verdict::Fail,
            "transparent huge pages are always on: after fork() every copy-on-write copies 2 MiB instead of 4 KiB, so RSS balloons during BGSAVE/AOF rewrite and latency spikes",
            Some(thp_fix),
        ),
        Some(v) => check(
            "thp-enabled",
            Verdict::Warn,
            format!("transparent huge pages are {v}: only memory that asks for them (madvise) gets huge pages; Redis >= 6.2 turns THP off for itself (disable-thp), older versions and other allocators may not"),
            Some(thp_fix),
        ),
    });
    if let Some(defrag) = r.value(&format!("{THP}/defrag")) {
        out.push(if defrag == "always" {
            check(
                "thp-defrag",
                Verdict::Warn,
                "THP defrag is always: page faults, copy-on-write faults after fork included, may stall in direct compaction",
                Some(apply_fix),
            )
        } else {
            check("thp-defrag", Verdict::Ok, format!("THP defrag is {defrag}"), None)
        });
    }
    out.push(per_size(&r, enabled.as_deref()));
    out.push(cmdline(&r));

    // One look at /proc serves the database checks and the daemon check.
    let processes = root.processes();
    let daemon = daemon_state(&r, &processes);
    let survey = enforce::survey(root, settings, false);
    out.push(sysctl_d(settings, &survey, daemon.1));

    // swap
    out.push(match &meminfo {
        Err(e) => unknown("swap", "/proc/meminfo", e),
        Ok(_) if m("SwapTotal") == 0 => check(
            "swap",
            Verdict::Warn,
            "no swap: a copy-on-write peak during a save has no cushion before the OOM killer",
            Some("add swap (a swap file of a few GiB), or keep maxmemory well under RAM"),
        ),
        Ok(_) => check(
            "swap",
            Verdict::Ok,
            format!("swap {} ({} free)", mib(m("SwapTotal")), mib(m("SwapFree"))),
            None,
        ),
    });

    let kernel = Kernel {
        mode: mode.as_deref(),
        version,
        release: &release,
        mem: &mem,
        thp: enabled.as_deref(),
        reserves: (
            r.value("proc/sys/vm/admin_reserve_kbytes")
                .and_then(|v| v.parse().ok())
                .unwrap_or(8192),
            r.value("proc/sys/vm/user_reserve_kbytes")
                .and_then(|v| v.parse().ok())
                .unwrap_or(131_072),
        ),
    };
    for db in databases(&r, &processes) {
        out.extend(process_checks(&r, &db, &kernel, auth));
    }

    out.extend(legacy_checks(&legacy::scan(root, settings, &survey.table)));
    out.push(service(daemon, settings));
    out
}

fn per_size(r: &Reader, global: Option<&str>) -> Check {
    let mut escaped = Vec::new();
    let mut worst = Verdict::Ok;
    if let Some(dir) = r.0.join(THP) {
        let mut sizes: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| n.starts_with("hugepages-"))
            .collect();
        sizes.sort_by_key(|s| {
            s.trim_start_matches("hugepages-")
                .trim_end_matches("kB")
                .parse::<u64>()
                .unwrap_or(0)
        });
        for size in sizes {
            let Some(v) = r.value(&format!("{THP}/{size}/enabled")) else {
                continue;
            };
            let verdict = match v.as_str() {
                "always" => Verdict::Fail,
                "madvise" if global != Some("madvise") && global != Some("always") => Verdict::Warn,
                _ => continue,
            };
            worst = worst.max(verdict);
            escaped.push(format!("{size} is {v}"));
        }
    }
    if escaped.is_empty() {
        check(
            "thp-per-size",
            Verdict::Ok,
            "no per-size THP setting escapes the global one",
            None,
        )
    } else {
        check(
            "thp-per-size",
            worst,
            format!(
                "per-size THP escapes the global setting: {}",
                escaped.join(", ")
            ),
            Some(
                "add a [sysfs] entry per size to forksafe.toml, e.g. \"kernel/mm/transparent_hugepage/hugepages-2048kB/enabled\" = \"never\", then forksafe apply",
            ),
        )
    }
}

fn cmdline(r: &Reader) -> Check {
    let line = match r.read("proc/cmdline") {
        Ok(l) => l,
        Err(e) => return unknown("thp-cmdline", "/proc/cmdline", &e),
    };
    let thp = line
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("transparent_hugepage="))
        .next_back();
    match thp {
        Some("always") => check(
            "thp-cmdline",
            Verdict::Warn,
            "the kernel boots with transparent_hugepage=always: until forksafe runs early in boot, memory can get huge pages",
            Some(
                "remove transparent_hugepage=always from the kernel command line (GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub), or set it to never",
            ),
        ),
        Some(v) => check(
            "thp-cmdline",
            Verdict::Ok,
            format!("the kernel boots with transparent_hugepage={v}"),
            None,
        ),
        None => check(
            "thp-cmdline",
            Verdict::Ok,
            "transparent_hugepage= is not on the kernel command line",
            None,
        ),
    }
}

/// Whether the forksafe unit is installed and whether its daemon runs.
fn daemon_state(r: &Reader, processes: &[(u32, String)]) -> (bool, bool) {
    let installed = [
        "usr/lib/systemd/system/forksafe.service",
        "lib/systemd/system/forksafe.service",
        "etc/systemd/system/forksafe.service",
    ]
    .iter()
    .any(|p| r.0.join(p).is_some_and(|p| p.exists()));
    let running = processes.iter().any(|(pid, name)| {
        name == "forksafe"
            && r.read(&format!("proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split('\0').any(|a| a == "run"))
    });
    (installed, running)
}

/// The next boot's values, from the same judgement `check` makes. With the daemon running
/// they are set again early in boot, before any database starts, so a wrong boot value is
/// a warning; without it, a failure. The fix names the line that wins.
fn sysctl_d(settings: &Settings, survey: &enforce::Survey, daemon_running: bool) -> Check {
    let mut msgs = Vec::new();
    let mut fixes = Vec::new();
    let mut worst = Verdict::Ok;
    for (k, boot) in settings.knobs.iter().zip(&survey.boots) {
        let Some(boot) = boot else { continue };
        let name = k.name();
        let mut msg = format!("{name}: {}", boot.explain());
        // The winning line is already named; add only procps' /etc/sysctl.conf, if it differs.
        for o in boot
            .overrides
            .iter()
            .filter(|o| Some(*o) != boot.value.as_ref())
        {
            msg.push_str(&format!("; overridden by {o}"));
        }
        msgs.push(msg);
        if boot.right && boot.overrides.is_empty() {
            continue;
        }
        // Only procps' /etc/sysctl.conf differs: systemd boots right.
        let status = if boot.right || daemon_running {
            Verdict::Warn
        } else {
            Verdict::Fail
        };
        worst = worst.max(status);
        if let Some(f) = &boot.blocked_by {
            fixes.push(format!(
                "remove {} (a FIFO systemd-sysctl blocks on)",
                f.display()
            ));
        }
        for o in &boot.overrides {
            fixes.push(format!(
                "remove or change line {} of {} (it sets {name} = {})",
                o.line,
                o.file.display(),
                o.value.as_deref().unwrap_or("nothing: it excludes the key")
            ));
        }
        if boot.overrides.is_empty() && boot.blocked_by.is_none() {
            fixes.push(match &settings.dropin {
                Some(d) => format!(
                    "forksafe apply   (writes {} with {name} = {})",
                    d.display(),
                    k.desired()
                ),
                None => format!(
                    "add `{name} = {}` to a file in /etc/sysctl.d ([sysctl_d] manage = false: forksafe writes no drop-in), or set manage = true and run forksafe apply",
                    k.desired()
                ),
            });
        }
    }
    if msgs.is_empty() {
        return check(
            "sysctl-d",
            Verdict::Ok,
            "forksafe's config manages no sysctl",
            None,
        );
    }
    let fix = (!fixes.is_empty()).then(|| fixes.join("; "));
    check("sysctl-d", worst, msgs.join("; "), fix.as_deref())
}

/// What the per-process checks need to know about the kernel.
struct Kernel<'a> {
    mode: Option<&'a str>,
    version: Option<(u32, u32)>,
    release: &'a str,
    mem: &'a BTreeMap<String, u64>,
    thp: Option<&'a str>,
    /// admin_reserve_kbytes, user_reserve_kbytes.
    reserves: (u64, u64),
}

impl Kernel<'_> {
    fn m(&self, k: &str) -> u64 {
        self.mem.get(k).copied().unwrap_or(0)
    }
}

/// CAP_SYS_ADMIN in a `/proc/PID/status`'s CapEff (the admin reserve does not apply then).
fn has_sys_admin(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 21) != 0)
}

fn process_checks(r: &Reader, db: &Db, k: &Kernel, auth: &crate::dbask::Auth) -> Vec<Check> {
    let who = db.who();
    let pid = db.pid;
    let mut out = Vec::new();
    let status_file = format!("/proc/{pid}/status");
    let rollup_file = format!("/proc/{pid}/smaps_rollup");
    let smaps_file = format!("/proc/{pid}/smaps");

    // THP for this process
    let id = format!("thp-process:{pid}");
    out.push(match (&db.rollup, &db.status) {
        (Err(e), _) => unknown(id, &rollup_file, e),
        (_, Err(e)) => unknown(id, &status_file, e),
        (Ok(rollup), Ok(status)) => {
            let huge = field(rollup, "AnonHugePages").unwrap_or(0);
            let thp_off = field(status, "THP_enabled") == Some(0);
            if huge > 0 {
                check(
                    id,
                    Verdict::Warn,
                    format!("{who} has {} in transparent huge pages; pages already huge stay huge until it restarts", mib(huge)),
                    Some("restart it after THP is set to never (a replica failover keeps it available)"),
                )
            } else if thp_off {
                check(id, Verdict::Ok, format!("{who}: THP is disabled for this process (disable-thp)"), None)
            } else {
                let status = if k.thp == Some("always") { Verdict::Warn } else { Verdict::Ok };
                check(
                    id,
                    status,
                    format!("{who}: no huge pages mapped; THP is not disabled for this process"),
                    (status != Verdict::Ok).then_some("set THP to never (forksafe apply), or disable-thp yes in redis.conf (Redis >= 6.2)"),
                )
            }
        }
    });

    out.push(fork_headroom(db, k, &who, &smaps_file, &status_file));

    // Worst case: every page rewritten during the save, all of RSS copied.
    let id = format!("cow-worst-case:{pid}");
    let available = k.m("MemAvailable");
    out.push(match (&db.rollup, db.rss_kib()) {
        (Err(e), _) => unknown(id, &rollup_file, e),
        (Ok(_), None) => check(id, Verdict::Unknown, format!("unknown: {rollup_file} has no Rss"), None),
        (Ok(_), Some(rss)) if rss > available => check(
            id,
            Verdict::Warn,
            format!("{who}: if every page is rewritten during a save, the copies need {} but MemAvailable is {}: the OOM killer could fire", mib(rss), mib(available)),
            Some("keep maxmemory at most about half of RAM, add swap, or save from a replica"),
        ),
        (Ok(_), Some(rss)) => check(id, Verdict::Ok, format!("{who}: even a full copy ({}) fits in MemAvailable ({})", mib(rss), mib(available)), None),
    });

    // The cgroup's limit: the usual rule is twice the dataset.
    let id = format!("cgroup-limit:{pid}");
    let cgroup_file = format!("/proc/{pid}/cgroup");
    out.push(match (&db.cgroup, db.rss_kib()) {
        (Err(e), _) => unknown(id, &cgroup_file, e),
        (Ok(cg), rss) => match (cgroup_limit(r, cg), rss) {
            (Err(what), _) => check(id, Verdict::Unknown, format!("unknown: could not read {what}"), None),
            (Ok(None), _) => check(id, Verdict::Ok, format!("{who}: no memory limit on its cgroup or any parent"), None),
            (Ok(Some(_)), None) => unknown(id, &rollup_file, db.rollup.as_ref().err().unwrap_or(&ReadError::NotFound)),
            (Ok(Some((limit, file))), Some(rss)) if limit < 2 * rss => check(
                id,
                Verdict::Fail,
                format!("{who}: its cgroup limit {} ({file}) is below 2 x RSS ({}): a save that rewrites much of the data gets it OOM-killed in its cgroup", mib(limit), mib(2 * rss)),
                Some("raise the memory limit to at least 2 x the dataset, or lower maxmemory to half the limit"),
            ),
            (Ok(Some((limit, file))), Some(_)) => check(id, Verdict::Ok, format!("{who}: its cgroup limit {} ({file}) is at least 2 x RSS", mib(limit)), None),
        },
    });
    out.extend(crate::dbask::checks(r, db, auth, k.mode, &|charge| {
        fork_verdict(db, k, charge)
    }));
    out
}

/// Would the kernel refuse a fork of `db` now? `Some(sentence)` when it would.
fn fork_verdict(db: &Db, k: &Kernel, charge: &Charge) -> Option<String> {
    let cap_sys_admin = db.status.as_deref().is_ok_and(has_sys_admin);
    match k.mode {
        Some("2") => {
            let vm_size = db
                .status
                .as_deref()
                .ok()
                .and_then(|s| field(s, "VmSize"))
                .unwrap_or(0);
            let admin = if cap_sys_admin { 0 } else { k.reserves.0 };
            let allowed = k
                .m("CommitLimit")
                .saturating_sub(admin)
                .saturating_sub((vm_size / 32).min(k.reserves.1));
            let needed = k.m("Committed_AS") + charge.total_kib;
            (needed >= allowed).then(|| {
                format!(
                    "Committed_AS {} + the {} the child is charged ({} accountable mappings) >= CommitLimit {} less reserves ({} allowed)",
                    mib(k.m("Committed_AS")),
                    mib(charge.total_kib),
                    charge.mappings,
                    mib(k.m("CommitLimit")),
                    mib(allowed)
                )
            })
        }
        Some("0") if k.version.is_some_and(|v| v >= (5, 2)) => {
            let cap = k.m("MemTotal") + k.m("SwapTotal");
            (charge.largest_kib > cap).then(|| {
                format!(
                    "its largest accountable mapping ({}) is larger than RAM + swap ({})",
                    mib(charge.largest_kib),
                    mib(cap)
                )
            })
        }
        Some("0") => {
            let admin = if cap_sys_admin { 0 } else { k.reserves.0 };
            let free = (k.m("MemFree")
                + k.m("Cached")
                + k.m("Buffers")
                + k.m("SwapFree")
                + k.m("SReclaimable"))
            .saturating_sub(k.m("Shmem"))
            .saturating_sub(admin);
            (charge.largest_kib >= free).then(|| {
                format!(
                    "its largest accountable mapping ({}) is not below free + page cache + swap ({})",
                    mib(charge.largest_kib),
                    mib(free)
                )
            })
        }
        _ => None,
    }
}

fn fork_headroom(db: &Db, k: &Kernel, who: &str, smaps_file: &str, status_file: &str) -> Check {
    let id = format!("fork-headroom:{}", db.pid);
    let fix = Some("forksafe apply   (vm.overcommit_memory = 1)");
    let version = k
        .version
        .map_or("an unknown version".to_string(), |(a, b)| {
            format!("{a}.{b}")
        });
    let rule = match k.mode {
        Some("1") => {
            return check(
                id,
                Verdict::Ok,
                format!("{who}: overcommit is 1, the fork is never refused"),
                None,
            );
        }
        Some("2") => format!(
            "mode 2 on Linux {version}: the sum of the child's charges counts against CommitLimit"
        ),
        Some("0") if k.version.is_some_and(|v| v >= (5, 2)) => format!(
            "mode 0 on Linux {version} (>= 5.2): each mapping is refused only if larger than RAM + swap"
        ),
        Some("0") => format!(
            "mode 0 on Linux {version} (< 5.2): each mapping is compared with free memory + page cache + swap"
        ),
        _ => {
            return check(
                id,
                Verdict::Unknown,
                format!(
                    "unknown: {who}: vm.overcommit_memory could not be read ({})",
                    k.release
                ),
                None,
            );
        }
    };
    let smaps = match &db.smaps {
        Ok(s) => s,
        Err(e) => return unknown(id, smaps_file, e),
    };
    if let (Some("2"), Err(e)) = (k.mode, &db.status) {
        return unknown(id, status_file, e);
    }
    let charge = fork_charge(smaps);
    match fork_verdict(db, k, &charge) {
        Some(why) => check(
            id,
            Verdict::Fail,
            format!("{who}: a fork now would be refused: {why} (rule: {rule})"),
            fix,
        ),
        None => check(
            id,
            Verdict::Ok,
            format!(
                "{who}: a fork fits: the child is charged {} in {} mappings, the largest {} (rule: {rule})",
                mib(charge.total_kib),
                charge.mappings,
                mib(charge.largest_kib)
            ),
            None,
        ),
    }
}

fn service((installed, running): (bool, bool), settings: &Settings) -> Check {
    match (installed, running, settings.repair) {
        (_, true, true) => check(
            "service",
            Verdict::Ok,
            "the forksafe daemon is running in repair mode",
            None,
        ),
        (_, true, false) => check(
            "service",
            Verdict::Warn,
            "the forksafe daemon is running in audit mode: drift is reported, not repaired",
            Some(
                "set repair = true in /etc/forksafe/forksafe.toml, then systemctl reload forksafe",
            ),
        ),
        (true, false, _) => check(
            "service",
            Verdict::Warn,
            "forksafe is installed but its daemon is not running",
            Some("systemctl enable --now forksafe"),
        ),
        (false, false, _) => check(
            "service",
            Verdict::Warn,
            "the forksafe daemon is not installed: nothing keeps these settings from drifting",
            Some("install the forksafe package (it enables and starts the daemon)"),
        ),
    }
}

/// One check per legacy finding: redundant (ok, safe to remove), conflicting (fail when it
/// acts, warn when it is dormant), or unknown (warn: it writes a managed knob, the value
/// cannot be read from the text).
fn legacy_checks(findings: &[Finding]) -> Vec<Check> {
    findings
        .iter()
        .map(|f| {
            let id = format!("legacy:{}:{}", f.file.display(), f.line);
            let at = f.describe();
            let Some(value) = &f.value else {
                return check(
                    id,
                    Verdict::Warn,
                    format!("{at}: writes {}, value unknown (the line uses a variable or a loop; doctor does not guess): {}", f.knob, f.text),
                    Some(&format!("read the line; if it sets {} to anything but {}, change or remove it ({})", f.knob, f.desired, removal(f))),
                );
            };
            if f.redundant() {
                return match &f.place {
                    Place::SysctlD { dropin: false, .. } => check(
                        id,
                        Verdict::Ok,
                        format!("{at}: sets {} = {value}, the value forksafe wants; with [sysctl_d] manage = false this line is what keeps it at boot", f.knob),
                        None,
                    ),
                    Place::Cmdline | Place::Grub => check(
                        id,
                        Verdict::Ok,
                        format!("{at}: transparent_hugepage={value}, the value forksafe holds: harmless, and it covers the moments before forksafe starts"),
                        None,
                    ),
                    _ => check(
                        id,
                        Verdict::Ok,
                        format!("{at}: sets {} = {value}, the value forksafe holds: safe to remove, forksafe holds this", f.knob),
                        Some(&removal(f)),
                    ),
                };
            }
            let acts = match &f.place {
                Place::SysctlD { wins, .. } => *wins,
                Place::Grub => true,
                Place::Cmdline => false, // the running kernel: forksafe already overrode it
                _ => f.acts_at_runtime(),
            };
            let what = match &f.place {
                Place::SysctlD { wins: true, .. } => "it wins at the next boot".to_string(),
                Place::SysctlD { wins: false, .. } => {
                    "it loses at boot now, and applies again if what outranks it goes".to_string()
                }
                Place::Unit { enabled: false, .. } => "the unit is not enabled; it acts if someone starts it".to_string(),
                Place::Tuned { enabled: false, .. } => "tuned is not enabled; it acts when tuned starts".to_string(),
                Place::Cmdline => "the running kernel booted with it; forksafe sets the value after boot".to_string(),
                Place::Grub => "the next kernel boots with it, until forksafe starts".to_string(),
                _ => "it works against forksafe: forksafe repairs it each time".to_string(),
            };
            check(
                id,
                if acts { Verdict::Fail } else { Verdict::Warn },
                format!("{at}: sets {} = {value}, not {}: {what}", f.knob, f.desired),
                Some(&conflict_fix(f)),
            )
        })
        .collect()
}

/// The command that removes or disables a redundant finding.
fn removal(f: &Finding) -> String {
    let file = f.file.display();
    match &f.place {
        Place::Unit { name, .. } => format!(
            "systemctl disable --now {name} && rm {file}   (it only sets what forksafe holds)"
        ),
        Place::Tuned { profile, .. } => format!(
            "remove line {} from {file} ({profile}), or leave it: it agrees with forksafe",
            f.line
        ),
        _ => format!("delete line {} of {file}: {}", f.line, f.text),
    }
}

/// The exact change that stops a conflicting finding.
fn conflict_fix(f: &Finding) -> String {
    let file = f.file.display();
    match &f.place {
        Place::Unit { name, .. } => format!("systemctl disable --now {name}   (then remove {file})"),
        Place::Tuned {
            profile, active, ..
        } => format!(
            "make a tuned child profile that keeps {active} but not this line: mkdir /etc/tuned/{active}-forksafe; printf '[main]\\ninclude={active}\\n\\n[vm]\\ntransparent_hugepages=never\\n' > /etc/tuned/{active}-forksafe/tuned.conf; tuned-adm profile {active}-forksafe   (the line is in {profile})"
        ),
        Place::Grub => format!(
            "change transparent_hugepage={} to transparent_hugepage=never on line {} of {file}, then update-grub",
            f.value.as_deref().unwrap_or("?"),
            f.line
        ),
        Place::Cmdline => "change it in /etc/default/grub (GRUB_CMDLINE_LINUX), then update-grub; it applies from the next boot".to_string(),
        Place::SysctlD { .. } => format!(
            "delete line {} of {file}, or set it to {}",
            f.line, f.desired
        ),
        _ => format!("delete line {} of {file}: {}", f.line, f.text),
    }
}

/// The human report.
pub fn render(checks: &[Check]) -> String {
    let fails = checks.iter().filter(|c| c.status == Verdict::Fail).count();
    let warns = checks.iter().filter(|c| c.status == Verdict::Warn).count();
    let unknown = checks
        .iter()
        .filter(|c| c.status == Verdict::Unknown)
        .count();
    let mut out = match (fails, unknown) {
        (0, 0) => format!(
            "forksafe doctor: this machine can fork its database safely ({warns} warnings)\n\n"
        ),
        (0, u) => format!(
            "forksafe doctor: no check fails, but {u} could not be judged (unknown), so this is not proof that the machine is fork-safe ({warns} warnings)\n\n"
        ),
        (f, u) => format!(
            "forksafe doctor: this machine is NOT fork-safe ({f} failures, {warns} warnings, {u} unknown)\n\n"
        ),
    };
    let width = checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
    for c in checks {
        out.push_str(&format!(
            "{:<4}  {:<width$}  {}\n",
            c.status.label(),
            c.id,
            c.message
        ));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("{:<4}  {:<width$}  fix: {fix}\n", "", ""));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        let m = parse_meminfo("MemTotal:       16310136 kB\nHugePages_Total:       0\n");
        assert_eq!(m.get("MemTotal"), Some(&16310136));
        assert_eq!(m.get("HugePages_Total"), Some(&0));
        assert_eq!(kernel_version("6.1.0-50-cloud-amd64"), Some((6, 1)));
        assert_eq!(kernel_version("4.18.0-553.el8_10.x86_64"), Some((4, 18)));
        assert_eq!(kernel_version("garbage"), None);
        assert_eq!(
            field("VmData:\t  2048 kB\nVmStk:\t 132 kB\n", "VmData"),
            Some(2048)
        );
        assert_eq!(field("THP_enabled:\t0\n", "THP_enabled"), Some(0));
        // Refused: a prefix of another key is not the key.
        assert_eq!(field("VmDataX:\t5 kB\n", "VmData"), None);
        assert!(has_sys_admin("CapEff:\t000001ffffffffff\n"));
        assert!(!has_sys_admin("CapEff:\t0000000000000000\n"));
    }

    #[test]
    fn the_charge_counts_accountable_mappings_only() {
        let smaps = "\
7f00-7f10 rw-p 00000000 00:00 0 
Size:               1024 kB
VmFlags: rd wr mr mw me ac sd
7f10-7f20 rw-p 00000000 00:00 0 
Size:             380928 kB
VmFlags: rd wr mr mw me nr sd
7f20-7f30 r-xp 00000000 fe:00 12  /usr/lib/libc.so.6
Size:               1368 kB
VmFlags: rd ex mr mw me sd
7f30-7f40 rw-p 00000000 00:00 0 
Size:               4096 kB
VmFlags: rd wr mr mw me dc ac sd
7f40-7f50 rw-p 00000000 00:00 0 
Size:               2048 kB
VmFlags: rd wr mr mw me ac sd
";
        // jemalloc's MAP_NORESERVE arena (nr), code, and MADV_DONTFORK (dc) are not charged.
        assert_eq!(
            fork_charge(smaps),
            Charge {
                total_kib: 3072,
                largest_kib: 2048,
                mappings: 2
            }
        );
    }
}
