//! One database process as the kernel sees it: transparent huge pages in its memory,
//! whether a fork of it would be refused now (what `fork()` charges it, from `/proc/PID/smaps`,
//! read once), a full copy-on-write against available memory, and its cgroup's limit.
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

use crate::os::fsread::ReadError;
use crate::os::proc::Process;
use crate::os::root::Root;

use super::cgroup;
use super::check::{Check, ForkNow, Verdict, check, mib, unknown};
use super::facts::{Kernel, field, text};

/// The process names doctor looks for.
pub(crate) const DATABASES: [&str; 3] = ["redis-server", "valkey-server", "keydb-server"];

/// One database process, with what could be read about it.
pub(crate) struct Db {
    pub(crate) pid: u32,
    pub(crate) name: String,
    status: Result<String, ReadError>,
    rollup: Result<String, ReadError>,
    cgroup: Result<String, ReadError>,
}

impl Db {
    /// `redis-server (pid 4242, RSS 1953 MiB, podman container 1ee41836af92)`: without the
    /// RSS when it is unknown, with where it runs when that is known.
    pub(crate) fn who(&self, place: Option<&str>) -> String {
        let mut inside = format!("pid {}", self.pid);
        if let Some(rss) = self.rss_kib() {
            inside.push_str(&format!(", RSS {}", mib(rss)));
        }
        if let Some(place) = place {
            inside.push_str(&format!(", {place}"));
        }
        format!("{} ({inside})", self.name)
    }

    /// `/proc/PID/cgroup`, as read.
    pub(crate) fn cgroup(&self) -> Option<&str> {
        self.cgroup.as_deref().ok()
    }

    fn rss_kib(&self) -> Option<u64> {
        self.rollup.as_ref().ok().and_then(|r| field(r, "Rss"))
    }

    /// Its RSS, kB; or the unknown check `id` is when `smaps_rollup` could not be read or
    /// has no `Rss`.
    fn rss(&self, id: &str) -> Result<u64, Check> {
        let file = format!("/proc/{}/smaps_rollup", self.pid);
        match (&self.rollup, self.rss_kib()) {
            (Err(e), _) => Err(unknown(id, &file, e)),
            (Ok(_), None) => Err(check(
                id,
                Verdict::Unknown,
                format!("unknown: {file} has no Rss"),
                None,
            )),
            (Ok(_), Some(rss)) => Ok(rss),
        }
    }
}

/// The database processes among `processes`.
pub(crate) fn databases(root: &Root, processes: &[Process]) -> Vec<Db> {
    processes
        .iter()
        .filter(|p| DATABASES.contains(&p.comm.as_str()))
        .map(|p| {
            let pid = p.pid;
            Db {
                pid,
                name: p.comm.clone(),
                status: text(root, &format!("proc/{pid}/status")),
                rollup: text(root, &format!("proc/{pid}/smaps_rollup")),
                cgroup: text(root, &format!("proc/{pid}/cgroup")),
            }
        })
        .collect()
}

/// What a fork of a process is charged: from `/proc/PID/smaps`, the mappings with `ac` in
/// `VmFlags` and without `dc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Charge {
    /// The sum of their sizes, kB (what mode 2 adds up).
    pub(crate) total_kib: u64,
    /// The largest one, kB (what mode 0 judges).
    pub(crate) largest_kib: u64,
    /// How many there are.
    pub(crate) mappings: usize,
}

/// Parse `/proc/PID/smaps`; `None` when the sizes add up past what a kernel can report
/// (not a real process's file: a sum that wrapped would say a fork fits).
pub(crate) fn fork_charge(smaps: &str) -> Option<Charge> {
    let mut c = Charge::default();
    let mut size = 0u64;
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
                c.total_kib = c.total_kib.checked_add(size)?;
                c.largest_kib = c.largest_kib.max(size);
                c.mappings += 1;
            }
            size = 0;
        }
    }
    Some(c)
}

/// CAP_SYS_ADMIN in a `/proc/PID/status`'s CapEff (the admin reserve does not apply then).
fn has_sys_admin(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 21) != 0)
}

/// The checks of one database process; and whether the kernel would refuse a fork of it
/// now (the database's own checks explain a failed save with it).
pub(crate) fn checks(root: &Root, db: &Db, k: &Kernel, who: &str) -> (Vec<Check>, ForkNow) {
    let (fork, now) = fork_headroom(root, db, k, who);
    let out = vec![
        thp(db, k, who),
        fork,
        cow_worst_case(db, k, who),
        cgroup_limit(root, db, who),
    ];
    (out, now)
}

/// Transparent huge pages in this process.
fn thp(db: &Db, k: &Kernel, who: &str) -> Check {
    let pid = db.pid;
    let id = format!("thp-process:{pid}");
    match (&db.rollup, &db.status) {
        (Err(e), _) => unknown(id, &format!("/proc/{pid}/smaps_rollup"), e),
        (_, Err(e)) => unknown(id, &format!("/proc/{pid}/status"), e),
        (Ok(rollup), Ok(status)) => {
            let huge = field(rollup, "AnonHugePages").unwrap_or(0);
            let thp_off = field(status, "THP_enabled") == Some(0);
            if huge > 0 {
                check(
                    id,
                    Verdict::Warn,
                    format!(
                        "{who} has {} in transparent huge pages; pages already huge stay huge until it restarts",
                        mib(huge)
                    ),
                    Some(
                        "restart it after THP is set to never (a replica failover keeps it available)",
                    ),
                )
            } else if thp_off {
                check(
                    id,
                    Verdict::Ok,
                    format!("{who}: THP is disabled for this process (disable-thp)"),
                    None,
                )
            } else {
                let status = if k.thp.as_deref() == Some("always") {
                    Verdict::Warn
                } else {
                    Verdict::Ok
                };
                check(
                    id,
                    status,
                    format!("{who}: no huge pages mapped; THP is not disabled for this process"),
                    (status != Verdict::Ok).then_some("set THP to never (forksafe apply), or disable-thp yes in redis.conf (Redis >= 6.2)"),
                )
            }
        }
    }
}

/// The worst case: every page rewritten during the save, all of RSS copied.
fn cow_worst_case(db: &Db, k: &Kernel, who: &str) -> Check {
    let id = format!("cow-worst-case:{}", db.pid);
    let Some(available) = k.get("MemAvailable") else {
        return check(
            id,
            Verdict::Unknown,
            "unknown: /proc/meminfo has no MemAvailable",
            None,
        );
    };
    match db.rss(&id) {
        Err(unknown) => unknown,
        Ok(rss) if rss > available => check(
            id,
            Verdict::Warn,
            format!(
                "{who}: if every page is rewritten during a save, the copies need {} but MemAvailable is {}: the OOM killer could fire",
                mib(rss),
                mib(available)
            ),
            Some("keep maxmemory at most about half of RAM, add swap, or save from a replica"),
        ),
        Ok(rss) => check(
            id,
            Verdict::Ok,
            format!(
                "{who}: even a full copy ({}) fits in MemAvailable ({})",
                mib(rss),
                mib(available)
            ),
            None,
        ),
    }
}

/// The cgroup's limit: the usual rule is twice the dataset.
fn cgroup_limit(root: &Root, db: &Db, who: &str) -> Check {
    let pid = db.pid;
    let id = format!("cgroup-limit:{pid}");
    let cg = match &db.cgroup {
        Err(e) => return unknown(id, &format!("/proc/{pid}/cgroup"), e),
        Ok(cg) => cg,
    };
    let (limit, file) = match cgroup::limit(root, pid, cg) {
        Err(why) => {
            return check(id, Verdict::Unknown, format!("unknown: {why}"), None);
        }
        Ok(None) => {
            return check(
                id,
                Verdict::Ok,
                format!("{who}: no memory limit on its cgroup or any parent"),
                None,
            );
        }
        Ok(Some(limit)) => limit,
    };
    match db.rss(&id).map(|rss| rss.checked_mul(2)) {
        Err(unknown) => unknown,
        Ok(None) => check(
            id,
            Verdict::Unknown,
            format!("unknown: /proc/{pid}/smaps_rollup reports an RSS no process has"),
            None,
        ),
        Ok(Some(twice)) if limit < twice => check(
            id,
            Verdict::Fail,
            format!(
                "{who}: its cgroup limit {} ({file}) is below 2 x RSS ({}): a save that rewrites much of the data gets it OOM-killed in its cgroup",
                mib(limit),
                mib(twice)
            ),
            Some(
                "raise the memory limit to at least 2 x the dataset, or lower maxmemory to half the limit",
            ),
        ),
        Ok(_) => check(
            id,
            Verdict::Ok,
            format!(
                "{who}: its cgroup limit {} ({file}) is at least 2 x RSS",
                mib(limit)
            ),
            None,
        ),
    }
}

/// A verdict from whether the fork is refused, and why.
fn refused_if(refused: bool, why: String) -> ForkNow {
    if refused {
        ForkNow::Refused(why)
    } else {
        ForkNow::Fits
    }
}

fn overflow() -> ForkNow {
    ForkNow::Unknown("/proc/meminfo's numbers add up past u64".into())
}

/// Would the kernel refuse a fork of `db` now, by `charge`? Every number the rule needs must
/// have been read, and the sums must not overflow: otherwise it is not judged.
fn fork_verdict(db: &Db, k: &Kernel, charge: &Charge) -> ForkNow {
    let cap_sys_admin = db.status.as_deref().is_ok_and(has_sys_admin);
    let admin = if cap_sys_admin { 0 } else { k.reserves.0 };
    match k.mode() {
        Some("2") => mode2(db, k, charge, admin),
        Some("0") if k.version.is_some_and(|v| v >= (5, 2)) => {
            let Ok([total, swap]) = k.need(["MemTotal", "SwapTotal"]) else {
                return ForkNow::Unknown("/proc/meminfo has no MemTotal or SwapTotal".into());
            };
            let Some(cap) = total.checked_add(swap) else {
                return overflow();
            };
            refused_if(
                charge.largest_kib > cap,
                format!(
                    "its largest accountable mapping ({}) is larger than RAM + swap ({})",
                    mib(charge.largest_kib),
                    mib(cap)
                ),
            )
        }
        Some("0") => mode0_before_5_2(k, charge, admin),
        Some("1") => ForkNow::Fits,
        _ => ForkNow::Unknown("vm.overcommit_memory could not be read".into()),
    }
}

/// Mode 2: the sum of the child's charges against CommitLimit less the reserves.
fn mode2(db: &Db, k: &Kernel, charge: &Charge, admin: u64) -> ForkNow {
    let vm_size = db.status.as_deref().ok().and_then(|s| field(s, "VmSize"));
    let (Some(vm_size), Ok([limit, committed])) =
        (vm_size, k.need(["CommitLimit", "Committed_AS"]))
    else {
        return ForkNow::Unknown(format!(
            "VmSize in /proc/{}/status, or CommitLimit and Committed_AS in /proc/meminfo, could not be read",
            db.pid
        ));
    };
    let allowed = limit
        .saturating_sub(admin)
        .saturating_sub((vm_size / 32).min(k.reserves.1));
    let Some(needed) = committed.checked_add(charge.total_kib) else {
        return overflow();
    };
    refused_if(
        needed >= allowed,
        format!(
            "Committed_AS {} + the {} the child is charged ({} accountable mappings) >= CommitLimit {} less reserves ({} allowed)",
            mib(committed),
            mib(charge.total_kib),
            charge.mappings,
            mib(limit),
            mib(allowed)
        ),
    )
}

/// Mode 0 before Linux 5.2: the largest mapping against free memory, page cache and swap.
fn mode0_before_5_2(k: &Kernel, charge: &Charge, admin: u64) -> ForkNow {
    let keys = [
        "MemFree",
        "Cached",
        "Buffers",
        "SwapFree",
        "SReclaimable",
        "Shmem",
    ];
    let Ok([free, cached, buffers, swap, slab, shmem]) = k.need(keys) else {
        return ForkNow::Unknown(format!("/proc/meminfo lacks one of {}", keys.join(", ")));
    };
    let Some(sum) = [cached, buffers, swap, slab]
        .iter()
        .try_fold(free, |a, b| a.checked_add(*b))
    else {
        return overflow();
    };
    let free = sum.saturating_sub(shmem).saturating_sub(admin);
    refused_if(
        charge.largest_kib >= free,
        format!(
            "its largest accountable mapping ({}) is not below free + page cache + swap ({})",
            mib(charge.largest_kib),
            mib(free)
        ),
    )
}

/// The rule the kernel applies under the current mode, for messages; `None` when the mode
/// is 1 (nothing refused) or unknown.
fn rule(k: &Kernel) -> Option<String> {
    let version = k
        .version
        .map_or("an unknown version".to_string(), |(a, b)| {
            format!("{a}.{b}")
        });
    match k.mode() {
        Some("2") => Some(format!(
            "mode 2 on Linux {version}: the sum of the child's charges counts against CommitLimit"
        )),
        Some("0") if k.version.is_some_and(|v| v >= (5, 2)) => Some(format!(
            "mode 0 on Linux {version} (>= 5.2): each mapping is refused only if larger than RAM + swap"
        )),
        Some("0") => Some(format!(
            "mode 0 on Linux {version} (< 5.2): each mapping is compared with free memory + page cache + swap"
        )),
        _ => None,
    }
}

/// Would the kernel refuse a fork of `db` now: the `fork-headroom` check, and the
/// refusal's reason for the database's own checks. `/proc/PID/smaps` (large and slow for a
/// large process) is read only under the modes that judge it, and once.
fn fork_headroom(root: &Root, db: &Db, k: &Kernel, who: &str) -> (Check, ForkNow) {
    let pid = db.pid;
    let smaps_file = format!("/proc/{pid}/smaps");
    let status_file = format!("/proc/{pid}/status");
    let id = format!("fork-headroom:{pid}");
    let fix = Some("forksafe apply   (vm.overcommit_memory = 1)");
    let not_judged = |c: Check| {
        let why = c.message.trim_start_matches("unknown: ").to_string();
        (c, ForkNow::Unknown(why))
    };
    let rule = match (k.mode(), rule(k)) {
        (Some("1"), _) => {
            let ok = check(
                id,
                Verdict::Ok,
                format!("{who}: overcommit is 1, the fork is never refused"),
                None,
            );
            return (ok, ForkNow::Fits);
        }
        (_, Some(rule)) => rule,
        (_, None) => {
            return not_judged(check(
                id,
                Verdict::Unknown,
                format!(
                    "unknown: {who}: vm.overcommit_memory could not be read ({})",
                    k.release
                ),
                None,
            ));
        }
    };
    let charge = match text(root, &smaps_file).map(|s| fork_charge(&s)) {
        Ok(Some(c)) => c,
        Ok(None) => {
            return not_judged(check(
                id,
                Verdict::Unknown,
                format!("unknown: {smaps_file}'s mapping sizes add up past what a kernel reports"),
                None,
            ));
        }
        Err(e) => return not_judged(unknown(id, &smaps_file, &e)),
    };
    if let (Some("2"), Err(e)) = (k.mode(), &db.status) {
        return not_judged(unknown(id, &status_file, e));
    }
    let now = fork_verdict(db, k, &charge);
    let verdict = match &now {
        ForkNow::Refused(why) => check(
            id,
            Verdict::Fail,
            format!("{who}: a fork now would be refused: {why} (rule: {rule})"),
            fix,
        ),
        ForkNow::Fits => check(
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
        ForkNow::Unknown(why) => check(
            id,
            Verdict::Unknown,
            format!("unknown: {who}: {why} (rule: {rule})"),
            None,
        ),
    };
    (verdict, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities() {
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
            Some(Charge {
                total_kib: 3072,
                largest_kib: 2048,
                mappings: 2
            })
        );
        // Refused: sizes that add up past u64 (no kernel reports them) are not summed to
        // a small number that fits.
        let huge = "Size: 18446744073709551615 kB\nVmFlags: ac\nSize: 2 kB\nVmFlags: ac\n";
        assert_eq!(fork_charge(huge), None);
    }
}
