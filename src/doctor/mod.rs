//! `forksafe doctor`: can this machine fork its database safely right now, and if not,
//! what exactly to do. Everything is read under the root, so tests use fixture trees. A
//! check whose evidence could not be read is `unknown` (shown as WARN), never `ok`.
//!
//! [`diagnose`] reads the kernel once ([`facts`]), judges the machine ([`machine`]), each
//! database process ([`process`], [`cgroup`]) and its own answers ([`db`], asked through
//! [`resp`]), and the hand-made fixes on the machine ([`findings`]).

use crate::config::Settings;
use crate::enforce;
use crate::neighbours;
use crate::os::proc;
use crate::os::root::Root;

mod cgroup;
mod check;
pub(crate) mod db;
mod facts;
mod findings;
mod machine;
mod process;
pub(crate) mod resp;

pub use check::{Check, Verdict};

/// Diagnose the machine under `root` with the running configuration; `auth` is for the
/// databases.
pub(crate) fn diagnose(root: &Root, settings: &Settings, auth: &resp::Auth) -> Vec<Check> {
    let k = facts::Kernel::read(root);
    let mut out = machine::kernel(root, &k, settings);
    // One look at /proc serves the database checks and the daemon check.
    let processes = proc::processes(root);
    let daemon = machine::daemon_state(root, &processes);
    let survey = enforce::survey(root, settings, false);
    out.push(machine::sysctl_d(settings, &survey, daemon.1));
    out.push(machine::swap(&k));
    for db in process::databases(root, &processes) {
        let (checks, refusal) = process::checks(root, &db, &k);
        out.extend(checks);
        out.extend(db::checks(root, db.pid, &db.who(), auth, k.mode(), refusal));
    }
    out.extend(findings::checks(&neighbours::scan(root, settings, &survey)));
    out.push(machine::service(daemon, settings));
    out
}

/// The human report.
pub(crate) fn render(checks: &[Check]) -> String {
    let fails = checks.iter().filter(|c| c.status == Verdict::Fail).count();
    let warns = checks.iter().filter(|c| c.status == Verdict::Warn).count();
    let unknown = checks
        .iter()
        .filter(|c| c.status == Verdict::Unknown)
        .count();
    let warnings = crate::words::count(warns, "warning", "warnings");
    let mut out = match (fails, unknown) {
        (0, 0) => {
            format!("forksafe doctor: this machine can fork its database safely ({warnings})\n\n")
        }
        (0, u) => format!(
            "forksafe doctor: no check fails, but {u} could not be judged (unknown), so this is not proof that the machine is fork-safe ({warnings})\n\n"
        ),
        (f, u) => format!(
            "forksafe doctor: this machine is NOT fork-safe ({}, {warnings}, {u} unknown)\n\n",
            crate::words::count(f, "failure", "failures")
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
