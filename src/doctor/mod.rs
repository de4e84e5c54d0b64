//! `forksafe doctor`: can this machine fork its database safely right now, and if not,
//! what exactly to do. Everything is read under the root, so tests use fixture trees. A
//! check whose evidence could not be read is `unknown` (shown as WARN), never `ok`.
//!
//! [`diagnose`] reads the kernel once ([`facts`]), judges the machine ([`machine`]), each
//! database process ([`instance`]: the kernel's view in [`process`] and [`cgroup`], its own
//! answers in [`db`], asked through [`ask`] at the sockets [`listen`] finds, in [`resp`],
//! with the password [`auth`] picks), several at once but a bounded number, the hand-made
//! fixes on the machine ([`findings`]), and whether forksafe's own daemon holds it
//! ([`service`]).

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::Settings;
use crate::enforce;
use crate::neighbours;
use crate::os::proc;
use crate::os::root::Root;

pub(crate) mod ask;
pub(crate) mod auth;
mod cgroup;
mod check;
pub(crate) mod db;
pub(crate) mod export;
mod facts;
mod findings;
pub(crate) mod identity;
mod instance;
pub(crate) mod listen;
mod machine;
mod process;
pub(crate) mod resp;
mod service;

pub use check::{Check, ForkNow, Verdict};
pub(crate) use process::Walk;

/// How many databases are looked at and asked at once: 100 silent ones cost a few
/// deadlines, not a hundred.
const AT_ONCE: usize = 16;

/// At most this many database processes are looked at (any local user can name a process
/// `redis-server`).
const MAX_DATABASES: usize = 1024;

/// Diagnose the machine under `root` with the running configuration; `auth` is for the
/// databases.
pub(crate) fn diagnose(
    root: &Root,
    settings: &Settings,
    auth: &auth::Auth,
    walk: Walk,
) -> Vec<Check> {
    let k = facts::Kernel::read(root);
    let mut out = machine::kernel(root, &k, settings);
    // One look at /proc serves the database checks and the daemon check.
    let processes = proc::processes(root);
    let daemon = service::find(root, &processes, settings);
    let survey = enforce::survey(root, settings, false);
    out.push(machine::sysctl_d(settings, &survey, daemon.holds()));
    out.push(machine::swap(&k));
    let dbs = process::databases(root, &processes, walk);
    let (asked, skipped) = dbs.split_at(dbs.len().min(MAX_DATABASES));
    out.extend(each_database(asked, |db| {
        instance::checks(root, db, &k, auth)
    }));
    if !skipped.is_empty() {
        out.push(check::check(
            "databases",
            Verdict::Unknown,
            format!(
                "unknown: {} more database processes were not looked at (doctor looks at {MAX_DATABASES}), from pid {}",
                skipped.len(),
                skipped.first().map_or(0, |d| d.pid)
            ),
            None,
        ));
    }
    out.extend(findings::checks(&neighbours::scan(root, settings, &survey)));
    out.push(service::service(
        root,
        service::installed(root),
        &daemon,
        settings,
    ));
    out
}

/// `one(db)` for every database, [`AT_ONCE`] at a time, in the order given.
fn each_database<D: Sync>(dbs: &[D], one: impl Fn(&D) -> Vec<Check> + Sync) -> Vec<Check> {
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(db) = dbs.get(i) else { break };
            done.push((i, one(db)));
        }
        done
    };
    let mut results: Vec<(usize, Vec<Check>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..AT_ONCE.min(dbs.len()))
            .filter_map(|_| std::thread::Builder::new().spawn_scoped(s, work).ok())
            .collect();
        // No thread could be started: do it all here.
        let mut all = if workers.is_empty() {
            work()
        } else {
            Vec::new()
        };
        for w in workers {
            all.extend(w.join().unwrap_or_default());
        }
        all
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().flat_map(|(_, c)| c).collect()
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
    // Names and answers come from processes anyone can start: never a control character
    // on root's terminal.
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect()
    };
    for c in checks {
        out.push_str(&format!(
            "{:<4}  {:<width$}  {}\n",
            c.status.label(),
            safe(&c.id),
            safe(&c.message)
        ));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("{:<4}  {:<width$}  fix: {}\n", "", "", safe(fix)));
        }
    }
    out
}
