//! `forksafe doctor`: can this machine fork its database safely right now, and if not,
//! what exactly to do. Everything is read under the root, so tests use fixture trees.
//!
//! The fork rules follow the kernel (`mm/util.c`, `__vm_enough_memory`): under mode 1 a
//! fork is never refused; under mode 2 it is refused when the committed address space plus
//! the child's private writable memory passes `CommitLimit` (less the admin and user
//! reserves); under mode 0, since Linux 5.2 ("mm: fix false-positive OVERCOMMIT_GUESS
//! failures") only a single request larger than RAM + swap is refused, while older kernels
//! compared it with free memory + page cache + swap + reclaimable slab.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::Serialize;

use crate::config::Settings;
use crate::knob::normalize;
use crate::root::Root;
use crate::sysctl_d::Table;

/// The process names doctor looks for.
pub const DATABASES: [&str; 3] = ["redis-server", "valkey-server", "keydb-server"];

const THP: &str = "sys/kernel/mm/transparent_hugepage";

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Nothing to do.
    Ok,
    /// A risk worth knowing; not a failure.
    Warn,
    /// The machine is not fork-safe until this is fixed.
    Fail,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        }
    }
}

/// One line of the diagnosis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// A stable id: `overcommit`, `thp-enabled`, `fork-headroom:PID`, ...
    pub id: String,
    /// ok, warn or fail.
    pub status: Verdict,
    /// What was found, with the evidence.
    pub message: String,
    /// The command or change that fixes it, when there is something to fix.
    pub fix: Option<String>,
}

fn check(
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

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

/// Reads under the root; a missing file is `None`.
struct Reader<'a>(&'a Root);

impl Reader<'_> {
    fn read(&self, rel: &str) -> Option<String> {
        fs::read_to_string(self.0.join(rel)?).ok()
    }

    fn value(&self, rel: &str) -> Option<String> {
        self.read(rel).map(|s| normalize(&s))
    }
}

/// One database process.
struct Db {
    pid: u32,
    name: String,
    status: String,
    rss_kib: u64,
    anon_huge_kib: u64,
    cgroup: String,
}

fn databases(r: &Reader, processes: &[(u32, String)]) -> Vec<Db> {
    processes
        .iter()
        .filter(|(_, name)| DATABASES.contains(&name.as_str()))
        .map(|(pid, name)| {
            let rollup = r
                .read(&format!("proc/{pid}/smaps_rollup"))
                .unwrap_or_default();
            Db {
                pid: *pid,
                name: name.clone(),
                status: r.read(&format!("proc/{pid}/status")).unwrap_or_default(),
                rss_kib: field(&rollup, "Rss").unwrap_or(0),
                anon_huge_kib: field(&rollup, "AnonHugePages").unwrap_or(0),
                cgroup: r.read(&format!("proc/{pid}/cgroup")).unwrap_or_default(),
            }
        })
        .collect()
}

/// The memory limit of the process's cgroup in kB, `None` when unlimited or unknown.
fn cgroup_limit_kib(r: &Reader, cgroup: &str) -> Option<(u64, String)> {
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let path = path.trim_start_matches('/');
        let file = if ctrls.is_empty() {
            format!("sys/fs/cgroup/{path}/memory.max")
        } else if ctrls.split(',').any(|c| c == "memory") {
            format!("sys/fs/cgroup/memory/{path}/memory.limit_in_bytes")
        } else {
            continue;
        };
        let Some(raw) = r.value(&file) else { continue };
        // v1 writes "unlimited" as a huge number rounded to the page size.
        match raw.parse::<u64>() {
            Ok(bytes) if bytes < (1 << 62) => return Some((bytes / 1024, format!("/{file}"))),
            _ => return None,
        }
    }
    None
}

/// Diagnose the machine under `root` with the running configuration.
pub fn diagnose(root: &Root, settings: &Settings) -> Vec<Check> {
    let r = Reader(root);
    let mut out = Vec::new();
    let mem = parse_meminfo(&r.read("proc/meminfo").unwrap_or_default());
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
                    "on this kernel (>= 5.2) only a fork larger than RAM + swap is refused, but the mode can change under you"
                } else {
                    "on this kernel (< 5.2) a fork is refused when the process is larger than free memory + page cache + swap: \"Can't save in background: fork: Cannot allocate memory\""
                }
            ),
            Some(apply_fix),
        ),
        Some("2") => check(
            "overcommit",
            Verdict::Fail,
            format!(
                "vm.overcommit_memory is 2 (never overcommit): a fork is refused once Committed_AS ({}) plus the process passes CommitLimit ({})",
                mib(m("Committed_AS")),
                mib(m("CommitLimit"))
            ),
            Some(apply_fix),
        ),
        other => check("overcommit", Verdict::Warn, format!("cannot read vm.overcommit_memory ({other:?})"), None),
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
    // persistence
    out.push(persistence(root, settings, daemon.1));

    // swap
    out.push(if m("SwapTotal") == 0 {
        check(
            "swap",
            Verdict::Warn,
            "no swap: a copy-on-write peak during a save has no cushion before the OOM killer",
            Some("add swap (a swap file of a few GiB), or keep maxmemory well under RAM"),
        )
    } else {
        check(
            "swap",
            Verdict::Ok,
            format!("swap {} ({} free)", mib(m("SwapTotal")), mib(m("SwapFree"))),
            None,
        )
    });

    for db in databases(&r, &processes) {
        out.extend(process_checks(
            &r,
            &db,
            mode.as_deref(),
            version,
            &mem,
            enabled.as_deref(),
        ));
    }

    out.push(service(daemon, settings));
    out
}

fn per_size(r: &Reader, global: Option<&str>) -> Check {
    let mut escaped = Vec::new();
    let mut worst = Verdict::Ok;
    if let Some(dir) = r.0.join(THP) {
        let mut sizes: Vec<String> = fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| n.starts_with("hugepages-"))
            .collect();
        sizes.sort();
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
                "echo inherit | tee /sys/kernel/mm/transparent_hugepage/hugepages-*/enabled   (or add [sysfs] entries with \"never\" to forksafe.toml)",
            ),
        )
    }
}

fn cmdline(r: &Reader) -> Check {
    let line = r.read("proc/cmdline").unwrap_or_default();
    let thp = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("transparent_hugepage="));
    match thp {
        Some("always") => check(
            "thp-cmdline",
            Verdict::Warn,
            "the kernel boots with transparent_hugepage=always: until forksafe runs early in boot, memory can get huge pages",
            Some(
                "remove transparent_hugepage=always from the kernel command line (GRUB_CMDLINE_LINUX), or set it to never",
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
                .is_some_and(|c| c.split('\0').any(|a| a == "run"))
    });
    (installed, running)
}

/// The next boot's value. With the daemon running it is set again early in boot, before
/// any database starts, so a wrong boot value is a warning; without it, a failure.
fn persistence(root: &Root, settings: &Settings, daemon_running: bool) -> Check {
    let Some(knob) = settings
        .knobs
        .iter()
        .find(|k| k.rel() == Path::new("vm/overcommit_memory"))
    else {
        return check(
            "sysctl-d",
            Verdict::Ok,
            "forksafe's config does not manage vm.overcommit_memory",
            None,
        );
    };
    let table = Table::read(root);
    let key = "vm/overcommit_memory";
    let boot = table.effective(key);
    let boot_value = boot.and_then(|a| a.value.as_deref());
    let overrides = table.overrides(key, knob.desired(), settings.dropin.as_deref());
    let mut msg = match boot {
        Some(a) => format!("the next boot sets vm.overcommit_memory = {} ({}:{})", boot_value.unwrap_or(""), a.file.display(), a.line),
        None => "no sysctl.d file sets vm.overcommit_memory: the next boot starts with the kernel default 0".to_string(),
    };
    for o in &overrides {
        msg.push_str(&format!("; overridden by {o}"));
    }
    if boot_value == Some(knob.desired()) && overrides.is_empty() {
        check("sysctl-d", Verdict::Ok, msg, None)
    } else if boot_value == Some(knob.desired()) {
        // Only procps' /etc/sysctl.conf differs: systemd boots right.
        check(
            "sysctl-d",
            Verdict::Warn,
            msg,
            Some("remove or change the line in /etc/sysctl.conf"),
        )
    } else {
        let fix = if overrides.is_empty() {
            "forksafe apply   (writes /etc/sysctl.d/99-zz-forksafe.conf)"
        } else {
            "remove or change the overriding line(s) above"
        };
        let status = if daemon_running {
            Verdict::Warn
        } else {
            Verdict::Fail
        };
        check("sysctl-d", status, msg, Some(fix))
    }
}

fn process_checks(
    r: &Reader,
    db: &Db,
    mode: Option<&str>,
    version: Option<(u32, u32)>,
    mem: &BTreeMap<String, u64>,
    thp: Option<&str>,
) -> Vec<Check> {
    let m = |k: &str| mem.get(k).copied().unwrap_or(0);
    let who = format!("{} (pid {}, RSS {})", db.name, db.pid, mib(db.rss_kib));
    let mut out = Vec::new();

    // THP for this process
    let thp_off = field(&db.status, "THP_enabled") == Some(0);
    out.push(if db.anon_huge_kib > 0 {
        check(
            format!("thp-process:{}", db.pid),
            Verdict::Warn,
            format!("{who} has {} in transparent huge pages; pages already huge stay huge until it restarts", mib(db.anon_huge_kib)),
            Some("restart it after THP is set to never (a replica failover keeps it available)"),
        )
    } else if thp_off {
        check(format!("thp-process:{}", db.pid), Verdict::Ok, format!("{who}: THP is disabled for this process (disable-thp)"), None)
    } else {
        let status = if thp == Some("always") { Verdict::Warn } else { Verdict::Ok };
        check(
            format!("thp-process:{}", db.pid),
            status,
            format!("{who}: no huge pages mapped; THP is not disabled for this process"),
            (status != Verdict::Ok).then_some("set THP to never (forksafe apply), or disable-thp yes in redis.conf (Redis >= 6.2)"),
        )
    });

    // Would the kernel refuse the fork? The child is charged the parent's private
    // writable memory (VmData + VmStk).
    let charge = field(&db.status, "VmData").unwrap_or(0) + field(&db.status, "VmStk").unwrap_or(0);
    let total_vm = field(&db.status, "VmSize").unwrap_or(0);
    let id = format!("fork-headroom:{}", db.pid);
    let fix = Some("forksafe apply   (vm.overcommit_memory = 1)");
    out.push(match mode {
        Some("1") => check(id, Verdict::Ok, format!("{who}: overcommit is 1, the fork is never refused"), None),
        Some("2") => {
            let admin = r.value("proc/sys/vm/admin_reserve_kbytes").and_then(|v| v.parse().ok()).unwrap_or(8192);
            let user = r.value("proc/sys/vm/user_reserve_kbytes").and_then(|v| v.parse().ok()).unwrap_or(131072);
            let allowed = m("CommitLimit").saturating_sub(admin).saturating_sub((total_vm / 32).min(user));
            let needed = m("Committed_AS") + charge;
            if needed >= allowed {
                check(
                    id,
                    Verdict::Fail,
                    format!(
                        "{who}: a fork now would be refused: Committed_AS {} + the child's private writable {} > CommitLimit {} less reserves",
                        mib(m("Committed_AS")),
                        mib(charge),
                        mib(m("CommitLimit"))
                    ),
                    fix,
                )
            } else {
                check(id, Verdict::Ok, format!("{who}: a fork fits: {} of {} commit left, the child needs {}", mib(allowed - m("Committed_AS").min(allowed)), mib(allowed), mib(charge)), None)
            }
        }
        Some("0") => {
            let (refused, rule) = if version.is_some_and(|v| v >= (5, 2)) {
                let cap = m("MemTotal") + m("SwapTotal");
                (charge > cap, format!("Linux >= 5.2 refuses only a request larger than RAM + swap ({})", mib(cap)))
            } else {
                let free = (m("MemFree") + m("Cached") + m("Buffers") + m("SwapFree") + m("SReclaimable"))
                    .saturating_sub(m("Shmem"))
                    .saturating_sub(8192);
                (charge > free, format!("this kernel (< 5.2) refuses a fork larger than free + page cache + swap ({})", mib(free)))
            };
            check(
                id,
                if refused { Verdict::Fail } else { Verdict::Ok },
                format!("{who}: the child needs {}; {rule}{}", mib(charge), if refused { ": the fork would be refused" } else { "" }),
                if refused { fix } else { None },
            )
        }
        _ => check(id, Verdict::Warn, format!("{who}: overcommit mode unknown"), None),
    });

    // Worst case: every page rewritten during the save, all of RSS copied.
    let available = m("MemAvailable");
    out.push(if db.rss_kib > available {
        check(
            format!("cow-worst-case:{}", db.pid),
            Verdict::Warn,
            format!("{who}: if every page is rewritten during a save, the copies need {} but MemAvailable is {}: the OOM killer could fire", mib(db.rss_kib), mib(available)),
            Some("keep maxmemory at most about half of RAM, add swap, or save from a replica"),
        )
    } else {
        check(format!("cow-worst-case:{}", db.pid), Verdict::Ok, format!("{who}: even a full copy ({}) fits in MemAvailable ({})", mib(db.rss_kib), mib(available)), None)
    });

    // The container's limit: the usual rule is twice the dataset.
    out.push(match cgroup_limit_kib(r, &db.cgroup) {
        None => check(format!("cgroup-limit:{}", db.pid), Verdict::Ok, format!("{who}: its cgroup has no memory limit"), None),
        Some((limit, file)) if limit < 2 * db.rss_kib => check(
            format!("cgroup-limit:{}", db.pid),
            Verdict::Fail,
            format!("{who}: its cgroup limit {} ({file}) is below 2 x RSS ({}): a save that rewrites much of the data gets it OOM-killed in its cgroup", mib(limit), mib(2 * db.rss_kib)),
            Some("raise the memory limit to at least 2 x the dataset, or lower maxmemory to half the limit"),
        ),
        Some((limit, file)) => check(format!("cgroup-limit:{}", db.pid), Verdict::Ok, format!("{who}: its cgroup limit {} ({file}) is at least 2 x RSS", mib(limit)), None),
    });
    out
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

/// The human report.
pub fn render(checks: &[Check]) -> String {
    let fails = checks.iter().filter(|c| c.status == Verdict::Fail).count();
    let warns = checks.iter().filter(|c| c.status == Verdict::Warn).count();
    let mut out = if fails == 0 {
        format!("forksafe doctor: this machine can fork its database safely ({warns} warnings)\n\n")
    } else {
        format!(
            "forksafe doctor: this machine is NOT fork-safe ({fails} failures, {warns} warnings)\n\n"
        )
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
    }
}
