//! The one step: read a knob, judge it against the settings, and (when asked) write it when
//! it is wrong, verified by reading back ([`step`]); and the one survey of sysctl.d (the
//! drop-in, then the next boot's value of each knob) that every caller judges the next boot
//! with ([`survey`]). `check` and `apply` run both once ([`once`]); the daemon runs the
//! survey when sysctl.d changes and the step when a knob does; `doctor` reads the survey.
//! What the CLI reports and what the daemon does can then never disagree.

use std::sync::Arc;

use crate::config::Settings;
use crate::knob::{Cause, Kind, Knob, KnobError, Resolved};
use crate::os::root::Root;
use crate::sysctl_d::dropin::{self, DropinReport};
use crate::sysctl_d::{Boot, Table};

/// The state of one knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Status {
    /// Has the desired value.
    Ok,
    /// Has another value.
    Drift,
    /// Right now, but the next boot would set it to something else (sysctl.d).
    BootDrift,
    /// Right now, but what the next boot sets cannot be judged (a sysctl.d file forksafe
    /// could not read could set it).
    BootUnknown,
    /// Does not exist on this kernel.
    Absent,
    /// Could not be read or written.
    Error,
}

impl Status {
    /// The name used in reports and JSON.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Drift => "drift",
            Status::BootDrift => "boot-drift",
            Status::BootUnknown => "boot-unknown",
            Status::Absent => "absent",
            Status::Error => "error",
        }
    }

    /// Whether the knob has its value now (the next boot aside).
    pub(crate) fn in_spec_now(self) -> bool {
        matches!(self, Status::Ok | Status::BootDrift | Status::BootUnknown)
    }
}

/// The pure judgement of one reading.
pub(crate) fn judge(knob: &Knob, observed: &Result<String, KnobError>) -> Status {
    match observed {
        Ok(v) if v == knob.desired() => Status::Ok,
        Ok(_) => Status::Drift,
        Err(e) if e.is_absent() => Status::Absent,
        Err(_) => Status::Error,
    }
}

/// One knob after a pass: what was read, and what a repair did.
#[derive(Debug, Clone)]
pub(crate) struct KnobReport<'a> {
    /// The knob.
    pub(crate) knob: &'a Knob,
    /// What was read before anything was written.
    pub(crate) observed: Result<String, KnobError>,
    /// `Some` when a repair was due: the verified outcome of the write made now, or the
    /// read-back error of an earlier write that left the knob at the value it still reads
    /// (see [`Stuck`]; not written again).
    pub(crate) repair: Option<Result<(), KnobError>>,
    /// For sysctl knobs: what the next boot applies.
    pub(crate) boot: Option<Arc<Boot>>,
}

impl KnobReport<'_> {
    /// The state after the pass.
    pub(crate) fn status(&self) -> Status {
        let now = match &self.repair {
            None => judge(self.knob, &self.observed),
            Some(Ok(())) => Status::Ok,
            Some(Err(e)) if e.is_absent() => Status::Absent,
            // Our writes went through; something else keeps writing: the knob is wrong.
            Some(Err(e)) if e.is_raced() => Status::Drift,
            Some(Err(_)) => Status::Error,
        };
        match &self.boot {
            Some(b) if now == Status::Ok && !b.right => Status::BootDrift,
            Some(b) if now == Status::Ok && !b.unjudged.is_empty() => Status::BootUnknown,
            _ => now,
        }
    }

    /// The value the knob has now, as far as we know.
    pub(crate) fn current(&self) -> Option<&str> {
        match (&self.repair, &self.observed) {
            (Some(Ok(())), _) => Some(self.knob.desired()),
            (_, Ok(v)) => Some(v),
            (_, Err(_)) => None,
        }
    }

    /// The error that decides the status, if any.
    pub(crate) fn error(&self) -> Option<&KnobError> {
        match (&self.repair, &self.observed) {
            (Some(Err(e)), _) | (_, Err(e)) => Some(e),
            _ => None,
        }
    }
}

/// Where each knob's file is (or why it cannot be used), in the settings' order.
pub(crate) type Paths = Vec<Result<Resolved, KnobError>>;

/// Resolve every knob's file under `root`.
pub(crate) fn resolve(root: &Root, settings: &Settings) -> Paths {
    settings.knobs.iter().map(|k| k.resolve(root)).collect()
}

/// Each knob's boot value (`None` for sysfs knobs), in the settings' order. Shared, not
/// copied, into each pass's reports.
pub(crate) type Boots = Vec<Option<Arc<Boot>>>;

/// What the next boot does to each sysctl knob, from a sysctl.d table, whether or not the
/// drop-in is managed (unmanaged, it is simply not in the table). Computed when the table
/// is read, not on every tick: it changes only with the files.
pub(crate) fn boots(settings: &Settings, table: &Table) -> Boots {
    settings
        .knobs
        .iter()
        .map(|k| {
            (k.kind() == Kind::Sysctl).then(|| {
                Arc::new(table.judge(
                    &k.rel().to_string_lossy(),
                    k.desired(),
                    settings.dropin.as_deref(),
                ))
            })
        })
        .collect()
}

/// Everything `check`, `apply`, the daemon and `doctor` learn from sysctl.d: the drop-in
/// (looked at, or brought in line when `write`), then the table as it now is, and each
/// knob's boot judgement from it.
pub(crate) struct Survey {
    /// The drop-in, `None` when `[sysctl_d] manage = false` (or `apply --no-persist`).
    pub(crate) dropin: Option<DropinReport>,
    /// The sysctl.d table after the drop-in was written.
    pub(crate) table: Table,
    /// Each knob's boot judgement.
    pub(crate) boots: Boots,
}

/// Survey sysctl.d: persist first (when `write`), then read what the next boot will do.
pub(crate) fn survey(root: &Root, settings: &Settings, write: bool) -> Survey {
    let dropin = settings
        .dropin
        .as_deref()
        .map(|file| dropin::persist(root, file, &settings.knobs, write));
    let table = Table::read(root);
    let boots = boots(settings, &table);
    Survey {
        dropin,
        table,
        boots,
    }
}

/// A write that went through but read back another value, remembered so the daemon does
/// not rewrite it every tick: while the knob still reads `value`, `error` stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stuck {
    /// What the knob read back after the write.
    pub(crate) value: String,
    /// The read-back error reported for it.
    pub(crate) error: KnobError,
}

impl Stuck {
    /// The stuck state a report leaves behind, if its repair read back another value.
    pub(crate) fn after(report: &KnobReport) -> Option<Stuck> {
        match &report.repair {
            Some(Err(e)) => match &e.cause {
                Cause::ReadBack { read, .. } => Some(Stuck {
                    value: read.clone(),
                    error: e.clone(),
                }),
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether the knob still reads what the stuck write left: then it is not written.
    pub(crate) fn holds(&self, observed: &Result<String, KnobError>) -> bool {
        observed.as_deref() == Ok(self.value.as_str())
    }
}

/// Read one knob; when `repair` and it has drifted, write it and verify. A knob `stuck` at
/// the value it now reads is not written again: the remembered error stands.
pub(crate) fn step<'a>(
    knob: &'a Knob,
    path: &Result<Resolved, KnobError>,
    repair: bool,
    boot: Option<Arc<Boot>>,
    stuck: Option<&Stuck>,
) -> KnobReport<'a> {
    let observed = match path {
        Ok(at) => knob.read(at),
        Err(e) => Err(e.clone()),
    };
    let repair = match (path, &observed, stuck) {
        (_, _, Some(s)) if repair && s.holds(&observed) => Some(Err(s.error.clone())),
        (Ok(at), _, _) if repair && judge(knob, &observed) == Status::Drift => Some(knob.write(at)),
        _ => None,
    };
    KnobReport {
        knob,
        observed,
        repair,
        boot,
    }
}

/// Read every knob, in order; when `repair`, write each drifted one and verify it. Knobs are
/// handled one after another so a failing knob never stops the others. `paths` comes from
/// [`resolve`], `boots` from [`boots`], `stuck` (one per knob, or empty) from the daemon's
/// memory.
pub(crate) fn pass<'a>(
    settings: &'a Settings,
    paths: &[Result<Resolved, KnobError>],
    repair: bool,
    boots: &[Option<Arc<Boot>>],
    stuck: &[Option<Stuck>],
) -> Vec<KnobReport<'a>> {
    settings
        .knobs
        .iter()
        .zip(paths)
        .enumerate()
        .map(|(i, (knob, path))| {
            let boot = boots.get(i).cloned().flatten();
            let stuck = stuck.get(i).and_then(Option::as_ref);
            step(knob, path, repair, boot, stuck)
        })
        .collect()
}

/// One look (and, when `write`, one repair) at everything: the survey of sysctl.d with the
/// drop-in brought in line, then every knob. What `check` and `apply` run.
pub(crate) struct Pass<'a> {
    /// sysctl.d: the drop-in and the next boot.
    pub(crate) survey: Survey,
    /// Every knob, in the settings' order.
    pub(crate) reports: Vec<KnobReport<'a>>,
}

impl Pass<'_> {
    /// Every knob in spec now and at the next boot, and the drop-in current.
    pub(crate) fn all_ok(&self) -> bool {
        self.reports.iter().all(|r| r.status() == Status::Ok)
            && self
                .survey
                .dropin
                .as_ref()
                .is_none_or(DropinReport::is_current)
    }

    /// Every knob has its value now (the next boot aside): `check --now`.
    pub(crate) fn in_spec_now(&self) -> bool {
        self.reports.iter().all(|r| r.status().in_spec_now())
    }
}

/// Survey sysctl.d (persisting first when `write`), then read every knob (and when `write`,
/// repair what drifted).
pub(crate) fn once<'a>(root: &Root, settings: &'a Settings, write: bool) -> Pass<'a> {
    let survey = survey(root, settings, write);
    let paths = resolve(root, settings);
    let reports = pass(settings, &paths, write, &survey.boots, &[]);
    Pass { survey, reports }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Settings {
        Settings::parse(text, crate::config::Source::Builtin).unwrap()
    }

    #[test]
    fn pass_repairs_only_when_asked() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        std::fs::create_dir_all(t.path().join("proc/sys/vm")).unwrap();
        let file = t.path().join("proc/sys/vm/overcommit_memory");
        std::fs::write(&file, "0\n").unwrap();
        let knobs = settings(
            "[sysctl]
\"vm.overcommit_memory\" = 1
\
             [sysfs]
\"kernel/mm/transparent_hugepage/enabled\" = \"never\"
",
        );

        let r = pass(&knobs, &resolve(&root, &knobs), false, &[], &[]);
        assert_eq!(r[0].status(), Status::Drift);
        assert_eq!(r[0].current(), Some("0"));
        assert!(r[0].repair.is_none());
        assert_eq!(r[1].status(), Status::Absent);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "0\n");

        let r = pass(&knobs, &resolve(&root, &knobs), true, &[], &[]);
        assert_eq!(r[0].status(), Status::Ok);
        assert_eq!(r[0].observed.as_deref(), Ok("0"));
        assert_eq!(r[1].status(), Status::Absent);
        assert!(r[1].repair.is_none());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "1\n");
    }

    /// A repair another writer undid each time leaves the knob drifted, not failed: the
    /// daemon keeps repairing it and counts it in the fight.
    #[test]
    fn a_raced_repair_is_drift_a_steady_read_back_an_error() {
        let s = settings("[sysctl]\n\"vm.overcommit_memory\" = 1\n");
        let knob = &s.knobs[0];
        let report = |cause| KnobReport {
            knob,
            observed: Ok("0".into()),
            repair: Some(Err(KnobError {
                path: "/proc/sys/vm/overcommit_memory".into(),
                op: crate::knob::Op::Verify,
                cause,
            })),
            boot: None,
        };
        let two = |a: &str, b: &str| vec![a.to_string(), b.to_string(), a.to_string()];
        let raced = report(crate::knob::Cause::of_read_backs("1", two("0", "")));
        assert_eq!(raced.status(), Status::Drift);
        assert_eq!(raced.current(), Some("0"));
        assert!(Stuck::after(&raced).is_none());
        let steady = report(crate::knob::Cause::of_read_backs("1", two("0", "0")));
        assert_eq!(steady.status(), Status::Error);
        assert!(Stuck::after(&steady).is_some());
    }

    #[test]
    fn boot_drift_and_persist() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        std::fs::create_dir_all(t.path().join("proc/sys/vm")).unwrap();
        std::fs::write(t.path().join("proc/sys/vm/overcommit_memory"), "1\n").unwrap();
        let s = settings("[sysctl]\n\"vm.overcommit_memory\" = 1\n");

        // Right now, but nothing persists it: boot-drift.
        let table = Table::read(&root);
        assert_eq!(
            pass(&s, &resolve(&root, &s), false, &boots(&s, &table), &[])[0].status(),
            Status::BootDrift
        );

        // Looking writes nothing; persisting creates the directory and the file.
        let d = survey(&root, &s, false).dropin.unwrap();
        assert_eq!(
            (d.before.clone(), d.wrote.is_none()),
            (crate::sysctl_d::dropin::DropinState::Missing, true)
        );
        let d = survey(&root, &s, true).dropin.unwrap();
        assert!(matches!(d.wrote, Some(Ok(true))), "{d:?}");
        let table = Table::read(&root);
        assert_eq!(
            pass(&s, &resolve(&root, &s), false, &boots(&s, &table), &[])[0].status(),
            Status::Ok
        );
        assert!(survey(&root, &s, true).dropin.unwrap().wrote.is_none());

        // A later file overrides us: boot-drift again, with the override named.
        std::fs::write(
            t.path().join("etc/sysctl.d/zz-late.conf"),
            "vm.overcommit_memory=0\n",
        )
        .unwrap();
        let table = Table::read(&root);
        let b = boots(&s, &table);
        let r = pass(&s, &resolve(&root, &s), false, &b, &[]);
        assert_eq!(r[0].status(), Status::BootDrift);
        let boot = r[0].boot.as_ref().unwrap();
        assert_eq!(boot.overrides.len(), 1);
        assert_eq!(
            boot.overrides[0].file,
            std::path::PathBuf::from("/etc/sysctl.d/zz-late.conf")
        );

        // Refused: a file at our path without our header is never overwritten.
        std::fs::write(
            t.path().join("etc/sysctl.d/99-zz-forksafe.conf"),
            "vm.swappiness=1\n",
        )
        .unwrap();
        let d = survey(&root, &s, true).dropin.unwrap();
        assert_eq!(
            (d.before, d.wrote.is_none()),
            (crate::sysctl_d::dropin::DropinState::Foreign, true)
        );
        assert_eq!(
            std::fs::read_to_string(t.path().join("etc/sysctl.d/99-zz-forksafe.conf")).unwrap(),
            "vm.swappiness=1\n"
        );
    }
}
