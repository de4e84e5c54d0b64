//! The one step that `check`, `apply`, `doctor` and the daemon share: read every knob, judge
//! it against the settings, and (when asked) write what is wrong, verified by reading back.
//! What the CLI reports and what the daemon does can then never disagree.

use crate::knob::{Knob, KnobError};
use crate::root::Root;

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

/// One knob after a pass: what was read, and what a repair did.
#[derive(Debug, Clone)]
pub struct KnobReport<'a> {
    /// The knob.
    pub knob: &'a Knob,
    /// What was read before anything was written.
    pub observed: Result<String, KnobError>,
    /// `Some` when a write was made: its verified outcome.
    pub repair: Option<Result<(), KnobError>>,
}

impl KnobReport<'_> {
    /// The state after the pass.
    pub fn status(&self) -> Status {
        match &self.repair {
            None => judge(self.knob, &self.observed),
            Some(Ok(())) => Status::Ok,
            Some(Err(e)) if e.is_absent() => Status::Absent,
            Some(Err(_)) => Status::Error,
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

/// Read every knob, in order; when `repair`, write each drifted one and verify it. Knobs are
/// handled one after another so a failing knob never stops the others.
pub fn pass<'a>(root: &Root, knobs: &'a [Knob], repair: bool) -> Vec<KnobReport<'a>> {
    knobs
        .iter()
        .map(|knob| {
            let observed = knob.read(root);
            let repair =
                (repair && judge(knob, &observed) == Status::Drift).then(|| knob.write(root));
            KnobReport {
                knob,
                observed,
                repair,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knob::Kind;

    #[test]
    fn pass_repairs_only_when_asked() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        std::fs::create_dir_all(t.path().join("proc/sys/vm")).unwrap();
        let file = t.path().join("proc/sys/vm/overcommit_memory");
        std::fs::write(&file, "0\n").unwrap();
        let knobs = vec![
            Knob::new(Kind::Sysctl, "vm.overcommit_memory", "1").unwrap(),
            Knob::new(
                Kind::Sysfs,
                "kernel/mm/transparent_hugepage/enabled",
                "never",
            )
            .unwrap(),
        ];

        let r = pass(&root, &knobs, false);
        assert_eq!(r[0].status(), Status::Drift);
        assert_eq!(r[0].current(), Some("0"));
        assert!(r[0].repair.is_none());
        assert_eq!(r[1].status(), Status::Absent);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "0\n");

        let r = pass(&root, &knobs, true);
        assert_eq!(r[0].status(), Status::Ok);
        assert_eq!(r[0].observed.as_deref(), Ok("0"));
        assert_eq!(r[1].status(), Status::Absent);
        assert!(r[1].repair.is_none());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "1\n");
    }
}
