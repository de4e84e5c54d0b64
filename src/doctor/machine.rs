//! The machine's side of the diagnosis: overcommit, transparent huge pages (global, per
//! size, on the kernel command line), swap, and the next boot's values (from the survey
//! every command shares).

use std::path::Path;

use crate::config::{Settings, Source};
use crate::enforce::Survey;
use crate::knob::{Kind, Knob};
use crate::os::root::Root;

use super::check::{Check, Verdict, check, mib, unknown};
use super::facts::{Kernel, THP, text, value};

/// The kernel's checks: overcommit, THP enabled, defrag, per size, the command line. The
/// first three are judged for the value now and for the value forksafe's config holds.
pub(super) fn kernel(root: &Root, k: &Kernel, settings: &Settings) -> Vec<Check> {
    let held = |kind, rel| Held::of(settings, kind, rel);
    let mut out = vec![held(Kind::Sysctl, "vm/overcommit_memory").judge(
        overcommit(k, settings),
        "1",
        mode_risk,
    )];
    // A kernel without THP has nothing to hold.
    out.push(match k.thp {
        Some(_) => held(Kind::Sysfs, THP_ENABLED).judge(thp_enabled(k), "never", thp_risk),
        None => thp_enabled(k),
    });
    let defrag = held(Kind::Sysfs, THP_DEFRAG);
    out.extend(thp_defrag(k).map(|c| defrag.judge(c, "never", defrag_risk)));
    out.push(per_size(root, k.thp.as_deref()));
    out.push(cmdline(root));
    out
}

const THP_ENABLED: &str = "kernel/mm/transparent_hugepage/enabled";
const THP_DEFRAG: &str = "kernel/mm/transparent_hugepage/defrag";

/// How forksafe's config holds one knob, to judge a check of it against.
struct Held<'a> {
    /// The knob as the config names it, and the section.
    name: String,
    section: &'static str,
    /// The value the config sets; `None` when it does not manage the knob.
    value: Option<&'a str>,
    /// The config, for the fix.
    source: &'a Source,
}

impl<'a> Held<'a> {
    fn of(settings: &'a Settings, kind: Kind, rel: &str) -> Held<'a> {
        let knob = settings
            .knobs
            .iter()
            .find(|k| k.kind() == kind && k.rel() == Path::new(rel));
        Held {
            name: knob.map_or_else(
                || match kind {
                    Kind::Sysctl => crate::knob::path_to_sysctl_name(rel),
                    Kind::Sysfs => rel.to_string(),
                },
                |k| k.name().to_string(),
            ),
            section: match kind {
                Kind::Sysctl => "[sysctl]",
                Kind::Sysfs => "[sysfs]",
            },
            value: knob.map(Knob::desired),
            source: &settings.source,
        }
    }

    /// `c`, the check of the value now, judged with what the config holds: a config that
    /// sets a value `risk` does not call ok (`safe` is) is itself the risk, whatever the
    /// value now; a knob the config does not hold is fixed by adding it to the config
    /// (`forksafe apply` alone would not touch it), and is not held even where it is
    /// right now.
    fn judge(&self, mut c: Check, safe: &str, risk: fn(&str) -> Verdict) -> Check {
        let (name, section, config) = (&self.name, self.section, self.source);
        match self.value {
            Some(v) => {
                let verdict = risk(v);
                if verdict != Verdict::Ok {
                    c.status = c.status.max(verdict);
                    c.message.push_str(&format!(
                        "; forksafe's config ({config}) sets {name} = {v}: forksafe itself \
                         holds this risk"
                    ));
                    c.fix = Some(format!(
                        "set \"{name}\" = \"{safe}\" in {section} of {config}, then \
                         systemctl reload forksafe (or forksafe apply)"
                    ));
                }
            }
            None => {
                if c.status == Verdict::Ok {
                    c.status = Verdict::Warn;
                    c.message.push_str(&format!(
                        "; but forksafe's config ({config}) does not hold {name}: nothing keeps it"
                    ));
                }
                c.fix = Some(format!(
                    "add \"{name}\" = \"{safe}\" to {section} of {config}, then forksafe apply"
                ));
            }
        }
        c
    }
}

/// What an overcommit mode risks: under 0 or 2 the kernel can refuse a fork.
fn mode_risk(v: &str) -> Verdict {
    if v == "1" { Verdict::Ok } else { Verdict::Fail }
}

/// What a THP `enabled` mode risks: `always` balloons copy-on-write; `madvise` does for
/// memory that asks for huge pages.
fn thp_risk(v: &str) -> Verdict {
    match v {
        "never" => Verdict::Ok,
        "always" => Verdict::Fail,
        _ => Verdict::Warn,
    }
}

/// What a THP `defrag` mode risks: `always` stalls page faults in direct compaction.
fn defrag_risk(v: &str) -> Verdict {
    if v == "always" {
        Verdict::Warn
    } else {
        Verdict::Ok
    }
}

/// `vm.overcommit_memory`: under 0 or 2 the kernel can refuse a large process's fork.
fn overcommit(k: &Kernel, settings: &Settings) -> Check {
    let apply_fix = if settings.dropin.is_some() {
        "forksafe apply   (sets it now and keeps it across reboots)"
    } else {
        "forksafe apply   (sets it now; [sysctl_d] manage = false: keep it at boot with a line of your own in /etc/sysctl.d)"
    };
    match k.mode() {
        Some("1") => check(
            "overcommit",
            Verdict::Ok,
            "vm.overcommit_memory is 1: the kernel never refuses fork() for lack of memory",
            None,
        ),
        Some("0") => check(
            "overcommit",
            Verdict::Fail,
            format!(
                "vm.overcommit_memory is 0 (heuristic): {}; Redis itself asks for 1 (redis-server --check-system: with jemalloc, allocations can fail even without low memory)",
                if k.version.is_some_and(|v| v >= (5, 2)) {
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
                mib(k.m("Committed_AS")),
                mib(k.m("CommitLimit"))
            ),
            Some(apply_fix),
        ),
        other => check(
            "overcommit",
            Verdict::Unknown,
            format!(
                "unknown: cannot read vm.overcommit_memory ({})",
                other.unwrap_or("no /proc/sys/vm/overcommit_memory")
            ),
            None,
        ),
    }
}

/// THP's global `enabled`.
fn thp_enabled(k: &Kernel) -> Check {
    let thp_fix =
        "forksafe apply   (then restart the database: pages that are already huge stay huge)";
    match k.thp.as_deref() {
        None => check(
            "thp-enabled",
            Verdict::Ok,
            "this kernel has no transparent huge pages",
            None,
        ),
        Some("never") => check(
            "thp-enabled",
            Verdict::Ok,
            "transparent huge pages are never used",
            None,
        ),
        Some("always") => check(
            "thp-enabled",
            Verdict::Fail,
            "transparent huge pages are always on: after fork() every copy-on-write copies 2 MiB instead of 4 KiB, so RSS balloons during BGSAVE/AOF rewrite and latency spikes",
            Some(thp_fix),
        ),
        Some(v) => check(
            "thp-enabled",
            Verdict::Warn,
            format!(
                "transparent huge pages are {v}: only memory that asks for them (madvise) gets huge pages; Redis >= 6.2 turns THP off for itself (disable-thp), older versions and other allocators may not"
            ),
            Some(thp_fix),
        ),
    }
}

/// THP's `defrag`, when the kernel has it.
fn thp_defrag(k: &Kernel) -> Option<Check> {
    let apply_fix = "forksafe apply   (sets it now; the daemon holds it from boot on)";
    let defrag = k.defrag.as_deref()?;
    Some(if defrag == "always" {
        check(
            "thp-defrag",
            Verdict::Warn,
            "THP defrag is always: page faults, copy-on-write faults after fork included, may stall in direct compaction",
            Some(apply_fix),
        )
    } else {
        check(
            "thp-defrag",
            Verdict::Ok,
            format!("THP defrag is {defrag}"),
            None,
        )
    })
}

fn per_size(root: &Root, global: Option<&str>) -> Check {
    let mut escaped = Vec::new();
    let mut worst = Verdict::Ok;
    if let Some(dir) = root.join(THP) {
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
            let Some(v) = value(root, &format!("{THP}/{size}/enabled")) else {
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

fn cmdline(root: &Root) -> Check {
    let line = match text(root, "proc/cmdline") {
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

/// Swap: the cushion before the OOM killer during a copy-on-write peak.
pub(super) fn swap(k: &Kernel) -> Check {
    match &k.meminfo {
        Err(e) => unknown("swap", "/proc/meminfo", e),
        Ok(_) if k.m("SwapTotal") == 0 => check(
            "swap",
            Verdict::Warn,
            "no swap: a copy-on-write peak during a save has no cushion before the OOM killer",
            Some("add swap (a swap file of a few GiB), or keep maxmemory well under RAM"),
        ),
        Ok(_) => check(
            "swap",
            Verdict::Ok,
            format!(
                "swap {} ({} free)",
                mib(k.m("SwapTotal")),
                mib(k.m("SwapFree"))
            ),
            None,
        ),
    }
}

/// The next boot's values, from the same judgement `check` makes. With the daemon running
/// they are set again early in boot, before any database starts, so a wrong boot value is
/// a warning; without it, a failure. The fix names the line that wins.
pub(super) fn sysctl_d(settings: &Settings, survey: &Survey, daemon_running: bool) -> Check {
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
        if let Some(unknown) = boot.unknown() {
            msg.push_str(&format!("; {unknown}"));
            worst = worst.max(Verdict::Unknown);
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
