//! The one step that `check`, `apply`, `doctor` and the daemon share: read every knob, judge
//! it against the settings, and (when asked) write what is wrong, verified by reading back.
//! What the CLI reports and what the daemon does can then never disagree.

use std::path::PathBuf;

use crate::atomic::{self, WriteError};
use crate::config::Settings;
use crate::knob::{Kind, Knob, KnobError, Resolved};
use crate::root::Root;
use crate::sysctl_d::{self, Assignment, DropinState, Table};

/// The state of one knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Has the desired value.
    Ok,
    /// Has another value.
    Drift,
    /// Right now, but the next boot would set it to something else (sysctl.d).
    BootDrift,
    /// Does not exist on this kernel.
    Absent,
    /// Could not be read or written.
    Error,
}

impl Status {
    /// The name used in reports and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Drift => "drift",
            Status::BootDrift => "boot-drift",
            Status::Absent => "absent",
            Status::Error => "error",
        }
    }
}

/// The pure judgement of one reading.
pub fn judge(knob: &Knob, observed: &Result<String, KnobError>) -> Status {
    match observed {
        Ok(v) if v == knob.desired() => Status::Ok,
        Ok(_) => Status::Drift,
        Err(e) if e.is_absent() => Status::Absent,
        Err(_) => Status::Error,
    }
}

/// What the next boot does to a sysctl knob (from sysctl.d).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boot {
    /// The assignment the next boot applies, if any.
    pub value: Option<Assignment>,
    /// Assignments that differ from the desired value and would win over ours.
    pub overrides: Vec<Assignment>,
    /// Assignments that differ but lose to ours (they apply again without the drop-in).
    pub shadowed: Vec<Assignment>,
}

impl Boot {
    /// Whether the next boot leaves the knob at `desired`.
    pub fn is_right(&self, desired: &str) -> bool {
        self.value.as_ref().and_then(|a| a.value.as_deref()) == Some(desired)
    }
}

/// One knob after a pass: what was read, and what a repair did.
#[derive(Debug, Clone)]
pub struct KnobReport<'a> {
    /// The knob.
    pub knob: &'a Knob,
    /// What was read before anything was written.
    pub observed: Result<String, KnobError>,
    /// `Some` when a write was made: its verified outcome.
    pub repair: Option<Result<(), KnobError>>,
    /// For sysctl knobs when the drop-in is managed: what the next boot applies.
    pub boot: Option<&'a Boot>,
}

impl KnobReport<'_> {
    /// The state after the pass.
    pub fn status(&self) -> Status {
        let now = match &self.repair {
            None => judge(self.knob, &self.observed),
            Some(Ok(())) => Status::Ok,
            Some(Err(e)) if e.is_absent() => Status::Absent,
            Some(Err(_)) => Status::Error,
        };
        match &self.boot {
            Some(b) if now == Status::Ok && !b.is_right(self.knob.desired()) => Status::BootDrift,
            _ => now,
        }
    }

    /// The value the knob has now, as far as we know.
    pub fn current(&self) -> Option<&str> {
        match (&self.repair, &self.observed) {
            (Some(Ok(())), _) => Some(self.knob.desired()),
            (_, Ok(v)) => Some(v),
            (_, Err(_)) => None,
        }
    }

    /// The error that decides the status, if any.
    pub fn error(&self) -> Option<&KnobError> {
        match (&self.repair, &self.observed) {
            (Some(Err(e)), _) | (_, Err(e)) => Some(e),
            _ => None,
        }
    }
}

/// Where each knob's file is (or why it cannot be used), in the settings' order.
pub type Paths = Vec<Result<Resolved, KnobError>>;

/// Resolve every knob's file under `root`.
pub fn resolve(root: &Root, settings: &Settings) -> Paths {
    settings.knobs.iter().map(|k| k.resolve(root)).collect()
}

/// Each knob's boot value (`None` for sysfs knobs), in the settings' order.
pub type Boots = Vec<Option<Boot>>;

/// What the next boot does to each sysctl knob, from a sysctl.d table. Computed when the
/// table is read, not on every tick: it changes only with the files.
pub fn boots(settings: &Settings, table: &Table) -> Boots {
    settings
        .knobs
        .iter()
        .map(|k| (k.kind() == Kind::Sysctl).then(|| boot_of(table, k, settings.dropin.as_deref())))
        .collect()
}

/// Read every knob, in order; when `repair`, write each drifted one and verify it. Knobs are
/// handled one after another so a failing knob never stops the others. `paths` comes from
/// [`resolve`]; `boots` from [`boots`] when the drop-in is managed (empty otherwise); a knob
/// whose `held` entry is true is read but not written this time (a fight, see `fight`).
pub fn pass<'a>(
    settings: &'a Settings,
    paths: &[Result<Resolved, KnobError>],
    repair: bool,
    boots: &'a [Option<Boot>],
    held: &[bool],
) -> Vec<KnobReport<'a>> {
    settings
        .knobs
        .iter()
        .zip(paths)
        .enumerate()
        .map(|(i, (knob, path))| {
            let observed = match path {
                Ok(at) => knob.read(at),
                Err(e) => Err(e.clone()),
            };
            let write = repair && !held.get(i).copied().unwrap_or(false);
            let repair = match path {
                Ok(at) if write && judge(knob, &observed) == Status::Drift => Some(knob.write(at)),
                _ => None,
            };
            let boot = boots.get(i).and_then(Option::as_ref);
            KnobReport {
                knob,
                observed,
                repair,
                boot,
            }
        })
        .collect()
}

fn boot_of(table: &Table, knob: &Knob, ours: Option<&std::path::Path>) -> Boot {
    let key = knob.rel().to_string_lossy();
    Boot {
        value: table.effective(&key).cloned(),
        overrides: table
            .overrides(&key, knob.desired(), ours)
            .into_iter()
            .cloned()
            .collect(),
        shadowed: table
            .shadowed(&key, knob.desired(), ours)
            .into_iter()
            .cloned()
            .collect(),
    }
}

/// The managed drop-in after [`persist`].
#[derive(Debug)]
pub struct DropinReport {
    /// The drop-in's path (on the system).
    pub file: PathBuf,
    /// What was there before.
    pub before: DropinState,
    /// `Some` when it was written: the outcome (Ok(true): its directory was created).
    pub wrote: Option<Result<bool, WriteError>>,
}

impl DropinReport {
    /// Whether the drop-in now has exactly our content.
    pub fn is_current(&self) -> bool {
        match &self.wrote {
            Some(r) => r.is_ok(),
            None => self.before == DropinState::Current,
        }
    }
}

/// Bring the managed drop-in in line with the settings (when `write`), or only look at it.
/// `None` when the drop-in is not managed. A file without our header, or a symlink, is
/// never written.
pub fn persist(root: &Root, settings: &Settings, write: bool) -> Option<DropinReport> {
    let file = settings.dropin.clone()?;
    let content = sysctl_d::render(settings);
    let before = sysctl_d::inspect(root, &file, &content);
    let ours = matches!(before, DropinState::Missing | DropinState::Outdated);
    let wrote = (write && ours).then(|| atomic::write(root, &file, &content));
    Some(DropinReport {
        file,
        before,
        wrote,
    })
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
        let d = persist(&root, &s, false).unwrap();
        assert_eq!(
            (d.before.clone(), d.wrote.is_none()),
            (DropinState::Missing, true)
        );
        let d = persist(&root, &s, true).unwrap();
        assert!(matches!(d.wrote, Some(Ok(true))), "{d:?}");
        let table = Table::read(&root);
        assert_eq!(
            pass(&s, &resolve(&root, &s), false, &boots(&s, &table), &[])[0].status(),
            Status::Ok
        );
        assert!(persist(&root, &s, true).unwrap().wrote.is_none());

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
            PathBuf::from("/etc/sysctl.d/zz-late.conf")
        );

        // Refused: a file at our path without our header is never overwritten.
        std::fs::write(
            t.path().join("etc/sysctl.d/99-zz-forksafe.conf"),
            "vm.swappiness=1\n",
        )
        .unwrap();
        let d = persist(&root, &s, true).unwrap();
        assert_eq!((d.before, d.wrote.is_none()), (DropinState::Foreign, true));
        assert_eq!(
            std::fs::read_to_string(t.path().join("etc/sysctl.d/99-zz-forksafe.conf")).unwrap(),
            "vm.swappiness=1\n"
        );
    }
}
