//! The hand-made fixes forksafe replaces, and the neighbours that work against it: every
//! place on the machine that sets a managed knob, found by reading (never running) rc.local,
//! systemd units and their drop-ins, cron tables, the kernel command line and GRUB's
//! defaults, and tuned profiles (with their `include=` chains). sysctl.d and
//! `/etc/sysctl.conf` are judged by the same table `check` uses (`sysctl_d::Table`).
//!
//! Shell text is read by the matcher in [`shell`]; the places are in [`places`].
//!
//! `doctor` shows every finding; the daemon names the likely source of a repair or a fight
//! (`SOURCE=`) from the findings that act while the system runs ([`Sources`]).

use crate::config::Settings;
use crate::enforce::Survey;
use crate::knob::Knob;
use crate::os::root::Root;

mod finding;
mod places;
mod shell;

pub(crate) use finding::{Finding, Place};
use places::Scan;

/// What a scan found, and the bound it stopped at when the machine had more to read than a
/// scan reads (then what was not read is unknown, not clean).
pub(crate) struct Found {
    /// Every line that sets a managed knob.
    pub(crate) findings: Vec<Finding>,
    /// What was not read, when a bound was hit.
    pub(crate) incomplete: Option<String>,
}

/// Every finding on the machine under `root`, for the knobs in `settings`; sysctl.d as the
/// `survey` judged it.
pub(crate) fn scan(root: &Root, settings: &Settings, survey: &Survey) -> Found {
    let mut s = Scan::new(root, shell::targets(settings));
    s.rc_local();
    s.units();
    s.cron();
    s.sysctl_d(settings.dropin.as_deref(), survey);
    s.kernel_cmdline();
    s.tuned();
    Found {
        findings: s.out,
        incomplete: s.budget.hit,
    }
}

/// The runtime findings that set each knob to something else, for the daemon's journal
/// entries (SOURCE=). Scanned at start, on reload and at most once a minute.
#[derive(Default)]
pub(crate) struct Sources {
    found: Vec<Finding>,
    /// What the scan did not read, when it hit a bound.
    pub(crate) incomplete: Option<String>,
}

impl Sources {
    /// Scan now.
    pub(crate) fn scan(root: &Root, settings: &Settings) -> Sources {
        let mut s = Scan::new(root, shell::targets(settings));
        s.rc_local();
        s.units();
        s.cron();
        s.tuned();
        Sources {
            found: s
                .out
                .into_iter()
                .filter(|f| f.acts_at_runtime() && !f.redundant())
                .collect(),
            incomplete: s.budget.hit,
        }
    }

    /// How many places were found.
    pub(crate) fn len(&self) -> usize {
        self.found.len()
    }

    /// Where the wrong value of `knob` likely comes from: `file:line (what)`, `; `-joined.
    pub(crate) fn describe(&self, knob: &Knob) -> Option<String> {
        let list: Vec<String> = self
            .found
            .iter()
            .filter(|f| f.sets.iter().any(|k| k == knob.name()))
            .map(Finding::describe)
            .collect();
        (!list.is_empty()).then(|| list.join("; "))
    }
}
