//! One line of the diagnosis: a [`Check`] with its [`Verdict`], and the constructors every
//! check uses. A check whose evidence could not be read is `unknown` (shown as WARN), never
//! `ok`.

use serde::Serialize;

use crate::os::fsread::ReadError;

use super::identity::Target;

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
    /// How the human report shows it.
    pub(crate) fn label(self) -> &'static str {
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
    /// The database process it is about, and where that runs (in the JSON only for those).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Box<Target>>,
}

/// A check.
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
        target: None,
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

/// Would the kernel refuse a fork of a database now? What the fork check found, for the
/// database's own checks (a failed save is blamed on the kernel only when it explains it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForkNow {
    /// A fork fits now.
    Fits,
    /// A fork now would be refused: why.
    Refused(String),
    /// Not judged: why (the evidence could not be read).
    Unknown(String),
}

/// kB as MiB, for messages.
pub(crate) fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}
