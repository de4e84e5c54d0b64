//! One line somewhere on the machine that sets a managed knob ([`Finding`]), where it is
//! and what acts on it ([`Place`]).

use std::path::{Path, PathBuf};

use crate::sysctl_d;

/// Where a finding was made, and what acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    /// `/etc/rc.local` or `/etc/rc.d/rc.local` (runs once, late in boot, after forksafe).
    RcLocal,
    /// A systemd unit (or a drop-in of one): its name and whether it is enabled.
    Unit {
        /// The unit's name.
        name: String,
        /// Whether a `.wants/` or `.requires/` link pulls it in at boot.
        enabled: bool,
    },
    /// A cron table line.
    Cron,
    /// A sysctl.d file or `/etc/sysctl.conf`: what the next boot (or `sysctl --system`)
    /// does with it.
    SysctlD {
        /// It decides the next boot's value (or procps applies it last).
        wins: bool,
        /// forksafe manages a drop-in (so a line with the same value is redundant).
        dropin: bool,
    },
    /// The running kernel's command line.
    Cmdline,
    /// GRUB's defaults (the next kernel command line).
    Grub,
    /// A tuned profile: the profile, whether it is active, whether tuned is enabled.
    Tuned {
        /// The profile the line is in.
        profile: String,
        /// The active profile (the one tuned applies), which includes it.
        active: String,
        /// Whether tuned.service is enabled.
        enabled: bool,
    },
}

/// One line somewhere on the machine that sets a managed knob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    /// The file, as a path on the system.
    pub(crate) file: PathBuf,
    /// 1-based line.
    pub(crate) line: usize,
    /// The knob's name (as in the config), or what the line names when its value is
    /// unknown.
    pub(crate) knob: String,
    /// The managed knobs it may set: the knob, or every THP knob for a line that writes a
    /// THP file it does not name.
    pub(crate) sets: Vec<String>,
    /// The value it sets; `None` when it cannot be read from the text.
    pub(crate) value: Option<String>,
    /// The knob's desired value.
    pub(crate) desired: String,
    /// Where, and what acts on it.
    pub(crate) place: Place,
    /// The line itself (trimmed).
    pub(crate) text: String,
}

impl Finding {
    /// Whether it sets the value forksafe holds.
    pub(crate) fn redundant(&self) -> bool {
        self.value.as_deref() == Some(self.desired.as_str())
    }

    /// Whether it acts while the system runs (after forksafe started): what can make a
    /// repair or a fight.
    pub(crate) fn acts_at_runtime(&self) -> bool {
        match &self.place {
            Place::RcLocal | Place::Cron => true,
            Place::Unit { enabled, .. } => *enabled,
            Place::Tuned { enabled, .. } => *enabled,
            Place::SysctlD { .. } | Place::Cmdline | Place::Grub => false,
        }
    }

    /// `file:line (what)`, for a journal SOURCE and messages.
    pub(crate) fn describe(&self) -> String {
        let what = match &self.place {
            Place::RcLocal => "rc.local".to_string(),
            Place::Unit { name, enabled } => format!(
                "unit {name}, {}",
                if *enabled { "enabled" } else { "not enabled" }
            ),
            Place::Cron => "cron".to_string(),
            Place::SysctlD { .. } if self.file == Path::new(sysctl_d::SYSCTL_CONF) => {
                "sysctl.conf, applied last by procps' sysctl --system".to_string()
            }
            Place::SysctlD { .. } => "sysctl.d".to_string(),
            Place::Cmdline => "kernel command line".to_string(),
            Place::Grub => "GRUB default".to_string(),
            Place::Tuned {
                profile, active, ..
            } if profile == active => format!("tuned profile {profile}, active"),
            Place::Tuned {
                profile, active, ..
            } => format!("tuned profile {profile}, included by the active profile {active}"),
        };
        format!("{}:{} ({what})", self.file.display(), self.line)
    }
}
