//! What the daemon says, and when: the journal entries for a knob's change of state, for
//! the drop-in, the next boot and sysctl.d entries it cannot read, for fights, and the
//! `STATUS=` line. Every function here decides and words; none emits, so each decision is
//! unit-tested. Steady state is silent: a thing is said when it changes, never per tick.

use std::time::Duration;

use crate::enforce::{Boots, KnobReport, Status, Stuck};
use crate::knob::{Kind, Knob};
use crate::neighbours::Sources;
use crate::os::proc;
use crate::os::report::{Event, EventKind};
use crate::os::root::Root;
use crate::sysctl_d::Skipped;
use crate::sysctl_d::dropin::{DropinReport, DropinState};
use crate::words;

use super::fight::{self, Ended, Talk};

/// Processes that set kernel tunables for a living (as `/proc/PID/comm` shows them,
/// 15 characters at most): named when a fight starts.
pub(crate) const TUNERS: &[&str] = &[
    "tuned",
    "tuned-ppd",
    "tuned-adm",
    "puppet",
    "chef-client",
    "salt-minion",
    "salt-call",
    "ansible",
    "ansible-playboo",
    "cf-agent",
    "cf-execd",
    "sysctl",
];

/// What the daemon last said about a knob, so it speaks only on change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Not said yet (start, or new after a reload).
    Fresh,
    /// In spec.
    Ok,
    /// Absent on this kernel.
    Absent,
    /// Failing, with the error said.
    Failed(String),
    /// Drifted to this value (audit mode, or a raced repair).
    Drifting(String),
}

impl Seen {
    /// What a step's result amounts to, to compare with what was said.
    pub(crate) fn after(r: &KnobReport) -> Seen {
        match r.status() {
            Status::Ok | Status::BootDrift | Status::BootUnknown => Seen::Ok,
            Status::Absent => Seen::Absent,
            Status::Drift => Seen::Drifting(r.current().unwrap_or("").to_string()),
            Status::Error => Seen::Failed(r.error().map(|e| e.to_string()).unwrap_or_default()),
        }
    }
}

/// The entry (if any) a step's result for one knob deserves, given what was last said
/// (`seen`) and what holds now (`now`, from [`Seen::after`]).
pub(crate) fn knob_event(r: &KnobReport, seen: &Seen, now: &Seen) -> Option<Event> {
    let k = r.knob;
    if now == seen && !matches!(r.repair, Some(Ok(()))) {
        return None; // steady state: nothing new to say
    }
    let observed = match &r.observed {
        Ok(v) => v.as_str(),
        Err(_) => "",
    };
    let base = |kind, msg: String| {
        Event::new(kind, msg)
            .field("KNOB", k.name())
            .field("EXPECTED", k.desired())
            .field("OBSERVED", observed)
    };
    let was = words::value(observed);
    let event = match (&r.repair, &r.observed) {
        (Some(Ok(())), _) if *seen == Seen::Fresh => base(
            EventKind::Enforced,
            format!(
                "{}: set to {} (was {was}){}",
                k.name(),
                k.desired(),
                k.undo(observed).map_or(String::new(), |cmd| format!(
                    "; once forksafe is stopped, `{cmd}` puts it back"
                ))
            ),
        ),
        (Some(Ok(())), _) => base(
            EventKind::Repaired,
            format!(
                "{}: drifted to {was}, set back to {}",
                k.name(),
                k.desired()
            ),
        ),
        (Some(Err(e)), _) | (None, Err(e)) if e.is_absent() => {
            base(EventKind::KnobAbsent, format!("{}: {e}", k.name())).errno(e.errno())
        }
        (Some(Err(e)), _) if Stuck::after(r).is_some() => base(
            EventKind::RepairFailed,
            format!(
                "{}: {e}; not written again while it reads {:?}",
                k.name(),
                Stuck::after(r).map(|s| s.value).unwrap_or_default()
            ),
        ),
        (Some(Err(e)), _) | (None, Err(e)) => {
            base(EventKind::RepairFailed, format!("{}: {e}", k.name())).errno(e.errno())
        }
        (None, Ok(v)) if v != k.desired() => base(
            EventKind::DriftDetected,
            format!(
                "{}: is {}, expected {} (audit mode: not repaired)",
                k.name(),
                words::value(v),
                k.desired()
            ),
        ),
        (None, Ok(_)) if *seen == Seen::Fresh => base(
            EventKind::Enforced,
            format!("{}: already {}", k.name(), k.desired()),
        ),
        (None, Ok(_)) => base(
            EventKind::BackInSpec,
            format!("{}: is {} again", k.name(), k.desired()),
        ),
    };
    Some(event)
}

/// `event` with `SOURCE=`: where the wrong value of `knob` likely comes from, when the
/// scan of the machine found it.
pub(crate) fn with_source(event: Event, sources: &Sources, knob: &Knob) -> Event {
    match sources.describe(knob) {
        Some(s) => event.field("SOURCE", s),
        None => event,
    }
}

/// Who might be fighting over `knob`: the likely source, and the known tuners running.
pub(crate) fn who(root: &Root, sources: &Sources, knob: &Knob) -> String {
    let culprits: Vec<String> = proc::processes(root)
        .into_iter()
        .filter(|p| TUNERS.contains(&p.comm.as_str()))
        .map(|p| format!("{} (pid {})", p.comm, p.pid))
        .collect();
    let running = if culprits.is_empty() {
        "no known tuner is running".to_string()
    } else {
        format!("running: {}", culprits.join(", "))
    };
    match sources.describe(knob) {
        Some(s) => format!("likely source: {s}; {running}"),
        None => format!(
            "{running} (no file on this machine sets it: look for a script or a job elsewhere)"
        ),
    }
}

/// The entry for a fight's start or its summary; `who` from [`who`]. In audit mode a fight
/// is counted in changes to a wrong value, none repaired.
pub(crate) fn fight(knob: &Knob, talk: &Talk, interval: Duration, who: &str, audit: bool) -> Event {
    let (one, many) = if audit {
        ("change", "changes")
    } else {
        ("repair", "repairs")
    };
    let event = match talk {
        Talk::Started {
            repairs,
            over,
            values,
        } => {
            let how = if audit {
                "Audit mode: it is not repaired; its changes".to_string()
            } else {
                format!(
                    "forksafe keeps repairing it at once and at least every {}; its repairs",
                    words::timespan(interval)
                )
            };
            Event::new(
                EventKind::FightDetected,
                format!(
                    "{}: something keeps setting it back (to {}; {} in {}); {who}. {how} are \
                     summarised every {} from now on, until it stays at {} for {}",
                    knob.name(),
                    values.describe(),
                    words::count(*repairs, one, many),
                    words::timespan(*over),
                    words::timespan(fight::SUMMARY_EVERY),
                    knob.desired(),
                    words::timespan(interval * fight::CALM),
                ),
            )
            .number("COUNT", *repairs)
            .field("OBSERVED", values.list().join(","))
        }
        Talk::Ongoing {
            repairs,
            since_last,
            lasted,
            values,
        } => Event::new(
            EventKind::FightOngoing,
            format!(
                "{}: still contested: {} {} in the last {} ({} in {}; set to {}); {who}",
                knob.name(),
                if audit { "changed" } else { "repaired" },
                words::count64(*since_last, "time", "times"),
                words::timespan(fight::SUMMARY_EVERY),
                words::count64(*repairs, one, many),
                words::timespan(*lasted),
                values.describe(),
            ),
        )
        .number("COUNT", *repairs)
        .field("OBSERVED", values.list().join(",")),
    };
    event
        .field("KNOB", knob.name())
        .field("EXPECTED", knob.desired())
}

/// The entry for a fight that is over.
pub(crate) fn fight_over(knob: &Knob, ended: &Ended, audit: bool) -> Event {
    let (one, many) = if audit {
        ("change", "changes")
    } else {
        ("repair", "repairs")
    };
    Event::new(
        EventKind::BackInSpec,
        format!(
            "{}: no longer contested after {} in {}",
            knob.name(),
            words::count64(ended.repairs, one, many),
            words::timespan(ended.lasted)
        ),
    )
    .field("KNOB", knob.name())
    .field("EXPECTED", knob.desired())
    .number("COUNT", ended.repairs)
}

/// The `STATUS=` line: short, and the same from tick to tick while nothing changes.
pub(crate) fn status_line(
    statuses: &[Status],
    repairs: u64,
    repair_mode: bool,
    contested: usize,
) -> String {
    let total = statuses.len();
    let count = |s: Status| statuses.iter().filter(|r| **r == s).count();
    let ok = count(Status::Ok) + count(Status::BootDrift) + count(Status::BootUnknown);
    // (a knob not kept at the next boot is in spec now; the suffix says the rest)
    let knobs = words::count(total, "knob", "knobs");
    let mut line = if ok == total {
        format!("{knobs} in spec")
    } else {
        format!("{ok} of {knobs} in spec")
    };
    for (s, what) in [
        (Status::BootDrift, "not kept at the next boot"),
        (Status::BootUnknown, "with the next boot unknown"),
        (Status::Drift, "drifted"),
        (Status::Absent, "absent"),
        (Status::Error, "failing"),
    ] {
        let n = count(s);
        if n > 0 {
            line.push_str(&format!(", {n} {what}"));
        }
    }
    if contested > 0 {
        line.push_str(&format!(", {contested} contested"));
    }
    if repair_mode {
        line.push_str(&format!(
            ", {} since start",
            words::count64(repairs, "repair", "repairs")
        ));
    } else {
        line.push_str(" (audit mode)");
    }
    line
}

/// What was last said about sysctl.d: the drop-in, each sysctl knob's next boot, and the
/// entries that are not files. Each is said again only when it changes.
#[derive(Debug, Default)]
pub(crate) struct Said {
    /// The drop-in: "ok", or the problem last said ("" before the first look).
    dropin: String,
    /// Per sysctl knob (by name): why the next boot does not keep it ("" when it does).
    boots: Vec<(String, String)>,
    /// The sysctl.d entries that are not files, as said.
    skipped: Vec<String>,
}

impl Said {
    /// The entries a look at sysctl.d deserves: the drop-in (`None` when unmanaged), the
    /// next boot of each knob, and the entries forksafe cannot read.
    pub(crate) fn sysctl_d(
        &mut self,
        knobs: &[Knob],
        audit: bool,
        dropin: Option<&DropinReport>,
        boots: &Boots,
        skipped: &[Skipped],
    ) -> Vec<Event> {
        let mut out = Vec::new();
        if let Some(r) = dropin {
            out.extend(self.dropin(knobs, audit, r));
        }
        out.extend(self.boots(knobs, boots));
        out.extend(self.skipped(skipped));
        out
    }

    fn dropin(&mut self, knobs: &[Knob], audit: bool, r: &DropinReport) -> Option<Event> {
        let file = r.file.display().to_string();
        let names: Vec<&str> = knobs
            .iter()
            .filter(|k| k.kind() == Kind::Sysctl)
            .map(Knob::name)
            .collect();
        let (kind, said, message) = match (&r.wrote, r.problem(audit)) {
            (Some(Ok(created)), _) => {
                let what = match (&r.before, self.dropin.is_empty()) {
                    (DropinState::Missing, true) => "written",
                    (DropinState::Missing, false) => "was deleted; rewritten",
                    (_, true) => "was out of date; rewritten",
                    (_, false) => "was changed; rewritten",
                };
                let dir = if *created {
                    " (created its directory)"
                } else {
                    ""
                };
                (
                    EventKind::DropinWritten,
                    "ok".to_string(),
                    format!("{file} {what}{dir}"),
                )
            }
            (_, None) => {
                self.dropin = "ok".into();
                return None;
            }
            (_, Some(problem)) => {
                let kind = match (&r.wrote, &r.before) {
                    (Some(Err(_)), _) | (None, DropinState::Unreadable(_)) => {
                        EventKind::RepairFailed
                    }
                    (_, DropinState::Foreign | DropinState::Symlink) => EventKind::DropinForeign,
                    _ => EventKind::DriftDetected,
                };
                (kind, problem.clone(), problem)
            }
        };
        if said == self.dropin && kind != EventKind::DropinWritten {
            return None;
        }
        self.dropin = said;
        Some(
            Event::new(kind, message)
                .field("FILE", &file)
                .field("KNOB", names.join(","))
                .errno(match &r.wrote {
                    Some(Err(e)) => e.err.raw_os_error(),
                    _ => None,
                }),
        )
    }

    /// Once per change: which sysctl knob the next boot will not keep, and why; and when it
    /// keeps it again.
    fn boots(&mut self, knobs: &[Knob], boots: &Boots) -> Vec<Event> {
        let mut out = Vec::new();
        let mut now = Vec::new();
        for (k, boot) in knobs.iter().zip(boots) {
            let Some(boot) = boot else { continue };
            let text = boot.trouble().unwrap_or_default();
            let before = self
                .boots
                .iter()
                .find(|(n, _)| n == k.name())
                .map_or("", |(_, t)| t.as_str());
            if text != before {
                out.push(if text.is_empty() {
                    Event::new(
                        EventKind::BackInSpec,
                        format!("{}: the next boot keeps {} again", k.name(), k.desired()),
                    )
                    .field("KNOB", k.name())
                    .field("EXPECTED", k.desired())
                } else if boot.right && boot.overrides.is_empty() {
                    // Nothing read says otherwise; something unread could.
                    Event::new(
                        EventKind::BootOverride,
                        format!(
                            "{}: whether the next boot keeps {} is unknown: {text}. Make the \
                             file readable by forksafe (or remove it)",
                            k.name(),
                            k.desired()
                        ),
                    )
                    .field("KNOB", k.name())
                    .field("EXPECTED", k.desired())
                } else {
                    let mut e = Event::new(
                        EventKind::BootOverride,
                        format!(
                            "{}: the next boot will not keep {}: {text}{}. Remove or change that \
                             line, or let forksafe manage its drop-in (forksafe still sets the \
                             value once it runs)",
                            k.name(),
                            k.desired(),
                            if boot.procps_overrides() {
                                " (procps `sysctl --system` applies /etc/sysctl.conf last)"
                            } else {
                                ""
                            }
                        ),
                    )
                    .field("KNOB", k.name())
                    .field("EXPECTED", k.desired());
                    if let Some(a) = boot.blame() {
                        e = e
                            .field("OBSERVED", a.value.as_deref().unwrap_or(""))
                            .field("FILE", a.file.display())
                            .number("LINE", a.line);
                    }
                    e
                });
            }
            now.push((k.name().to_string(), text));
        }
        self.boots = now;
        out
    }

    /// Once per change: the sysctl.d entries that are not files.
    fn skipped(&mut self, skipped: &[Skipped]) -> Vec<Event> {
        let lines: Vec<String> = skipped
            .iter()
            .map(|s| format!("{} is {}", s.file.display(), s.why))
            .collect();
        let out = skipped
            .iter()
            .zip(&lines)
            .filter(|(_, line)| !self.skipped.contains(line))
            .map(|(s, line)| {
                Event::new(EventKind::BootOverride, format!("sysctl.d: {line}"))
                    .field("FILE", s.file.display())
            })
            .collect();
        self.skipped = lines;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Settings, Source};
    use crate::enforce;
    use crate::knob::{KnobError, Op};
    use crate::sysctl_d::Table;
    use std::path::Path;

    fn file_is(event: &Event, path: &Path) -> bool {
        event.get("FILE") == Some(path.display().to_string())
    }

    fn settings(text: &str) -> Settings {
        Settings::parse(text, Source::Builtin).unwrap()
    }

    fn report<'a>(
        knob: &'a Knob,
        observed: &str,
        repair: Option<Result<(), KnobError>>,
    ) -> KnobReport<'a> {
        KnobReport {
            knob,
            observed: Ok(observed.to_string()),
            repair,
            boot: None,
        }
    }

    #[test]
    fn a_knob_is_said_on_change_only() {
        let s = settings("[sysctl]\n\"vm.overcommit_memory\" = 1\n");
        let k = &s.knobs[0];
        // At start: enforced, with the value it had.
        let r = report(k, "0", Some(Ok(())));
        let e = knob_event(&r, &Seen::Fresh, &Seen::after(&r)).unwrap();
        assert_eq!(e.kind(), EventKind::Enforced);
        assert_eq!(
            e.message(),
            "vm.overcommit_memory: set to 1 (was 0); once forksafe is stopped, \
             `sysctl -w vm.overcommit_memory=0` puts it back"
        );
        let r = report(k, "1", None);
        let e = knob_event(&r, &Seen::Fresh, &Seen::after(&r)).unwrap();
        assert_eq!(e.message(), "vm.overcommit_memory: already 1");
        // Steady state: nothing.
        assert!(knob_event(&r, &Seen::Ok, &Seen::Ok).is_none());
        // Every repair is said, even when the state before and after is the same.
        let r = report(k, "0", Some(Ok(())));
        let e = knob_event(&r, &Seen::Ok, &Seen::after(&r)).unwrap();
        assert_eq!(e.kind(), EventKind::Repaired);
        assert_eq!(
            e.message(),
            "vm.overcommit_memory: drifted to 0, set back to 1"
        );
        assert_eq!(e.get("OBSERVED").as_deref(), Some("0"));
        // An empty value (a file read while it was being rewritten) is said as such.
        let r = report(k, "", Some(Ok(())));
        let e = knob_event(&r, &Seen::Ok, &Seen::after(&r)).unwrap();
        assert_eq!(
            e.message(),
            "vm.overcommit_memory: drifted to (empty), set back to 1"
        );
        // Audit mode: the drift once, then silence while it stays.
        let r = report(k, "2", None);
        let now = Seen::after(&r);
        let e = knob_event(&r, &Seen::Ok, &now).unwrap();
        assert_eq!(e.kind(), EventKind::DriftDetected);
        assert!(knob_event(&r, &now, &now).is_none());
        // Back in spec.
        let r = report(k, "1", None);
        let e = knob_event(&r, &now, &Seen::after(&r)).unwrap();
        assert_eq!(e.kind(), EventKind::BackInSpec);
    }

    #[test]
    fn a_failing_knob_is_said_once_per_error() {
        let s = settings("[sysctl]\n\"vm.overcommit_memory\" = 1\n");
        let k = &s.knobs[0];
        let err = KnobError {
            path: "/proc/sys/vm/overcommit_memory".into(),
            op: Op::Write,
            cause: crate::knob::Cause::NotPermitted(nix::errno::Errno::EROFS as i32),
        };
        let r = report(k, "0", Some(Err(err)));
        let now = Seen::after(&r);
        let e = knob_event(&r, &Seen::Ok, &now).unwrap();
        assert_eq!(e.kind(), EventKind::RepairFailed);
        assert_eq!(e.get("ERRNO").as_deref(), Some("30"));
        assert!(knob_event(&r, &now, &now).is_none());
    }

    #[test]
    fn status_lines() {
        use Status::*;
        assert_eq!(
            status_line(&[Ok, Ok, Ok], 0, true, 0),
            "3 knobs in spec, 0 repairs since start"
        );
        assert_eq!(
            status_line(&[Ok, BootDrift, Error], 4, true, 1),
            "2 of 3 knobs in spec, 1 not kept at the next boot, 1 failing, 1 contested, 4 repairs since start"
        );
        assert_eq!(
            status_line(&[Drift, Absent], 0, false, 0),
            "0 of 2 knobs in spec, 1 drifted, 1 absent (audit mode)"
        );
        assert_eq!(
            status_line(&[Ok], 1, true, 0),
            "1 knob in spec, 1 repair since start"
        );
    }

    #[test]
    fn fights_are_worded_with_whole_seconds() {
        let s = settings("[sysctl]\n\"vm.overcommit_memory\" = 1\n");
        let t0 = std::time::Instant::now();
        let mut c = fight::Contest::new(Duration::from_secs(1));
        c.repaired(t0, "0");
        c.repaired(t0 + Duration::from_millis(500), "2");
        let talk = c.repaired(t0 + Duration::from_millis(2300), "0").unwrap();
        let e = fight(
            &s.knobs[0],
            &talk,
            Duration::from_secs(1),
            "no known tuner is running",
            false,
        );
        assert_eq!(e.kind(), EventKind::FightDetected);
        assert_eq!(
            e.message(),
            "vm.overcommit_memory: something keeps setting it back (to 0, 2; 3 repairs in 2s); \
             no known tuner is running. forksafe keeps repairing it at once and at least every \
             1s; its repairs are summarised every 10min from now on, until it stays at 1 \
             for 10s"
        );
        assert_eq!(e.get("COUNT").as_deref(), Some("3"));
        assert_eq!(e.get("OBSERVED").as_deref(), Some("0,2"));
        let e = fight(&s.knobs[0], &talk, Duration::from_secs(1), "who", true);
        assert!(
            e.message()
                .contains("(to 0, 2; 3 changes in 2s); who. Audit mode: it is not repaired; its changes are summarised"),
            "{}",
            e.message()
        );
        // Under a second: milliseconds, never "0ns"; an empty value is said as such.
        let mut c = fight::Contest::new(Duration::from_millis(100));
        c.repaired(t0, "0");
        c.repaired(t0 + Duration::from_millis(100), "");
        let talk = c.repaired(t0 + Duration::from_millis(300), "0").unwrap();
        let e = fight(&s.knobs[0], &talk, Duration::from_millis(100), "x", false);
        assert!(
            e.message().starts_with(
                "vm.overcommit_memory: something keeps setting it back (to (empty), 0; 3 repairs in 300ms); x. \
                 forksafe keeps repairing it at once and at least every 100ms; its repairs are \
                 summarised every 10min from now on, until it stays at 1 for 1s"
            ),
            "{}",
            e.message()
        );
    }

    #[test]
    fn the_next_boot_is_said_once_per_change() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        let s = settings("[sysctl]\n\"vm.overcommit_memory\" = 1\n[sysctl_d]\nmanage = false\n");
        let mut said = Said::default();
        std::fs::create_dir_all(t.path().join("etc/sysctl.d")).unwrap();
        std::fs::write(
            t.path().join("etc/sysctl.d/50-strict.conf"),
            "vm.overcommit_memory = 2\n",
        )
        .unwrap();
        let boots = |root: &Root| enforce::boots(&s, &Table::read(root));
        let e = said.sysctl_d(&s.knobs, false, None, &boots(&root), &[]);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].kind(), EventKind::BootOverride);
        assert!(
            e[0].message()
                .contains("the next boot will not keep 1: /etc/sysctl.d/50-strict.conf:1 sets 2"),
            "{}",
            e[0].message()
        );
        assert_eq!(e[0].get("LINE").as_deref(), Some("1"));
        assert!(file_is(&e[0], Path::new("/etc/sysctl.d/50-strict.conf")));
        // The same again: silence.
        assert!(
            said.sysctl_d(&s.knobs, false, None, &boots(&root), &[])
                .is_empty()
        );
        // Fixed: said once.
        std::fs::write(
            t.path().join("etc/sysctl.d/50-strict.conf"),
            "vm.overcommit_memory = 1\n",
        )
        .unwrap();
        let e = said.sysctl_d(&s.knobs, false, None, &boots(&root), &[]);
        assert_eq!(e.len(), 1);
        assert_eq!(
            e[0].message(),
            "vm.overcommit_memory: the next boot keeps 1 again"
        );
    }

    #[test]
    fn the_dropin_is_said_when_written_and_once_per_problem() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        let s = settings("[sysctl]\n\"vm.overcommit_memory\" = 1\n");
        let mut said = Said::default();
        let look = |write: bool| enforce::survey(&root, &s, write);
        let sv = look(true);
        let e = said.sysctl_d(&s.knobs, false, sv.dropin.as_ref(), &sv.boots, &[]);
        assert_eq!(e[0].kind(), EventKind::DropinWritten);
        assert_eq!(
            e[0].message(),
            "/etc/sysctl.d/99-zz-forksafe.conf written (created its directory)"
        );
        let sv = look(true);
        assert!(
            said.sysctl_d(&s.knobs, false, sv.dropin.as_ref(), &sv.boots, &[])
                .is_empty()
        );
        std::fs::remove_file(t.path().join("etc/sysctl.d/99-zz-forksafe.conf")).unwrap();
        let sv = look(true);
        let e = said.sysctl_d(&s.knobs, false, sv.dropin.as_ref(), &sv.boots, &[]);
        assert_eq!(
            e[0].message(),
            "/etc/sysctl.d/99-zz-forksafe.conf was deleted; rewritten"
        );
        // Audit mode: a missing drop-in is said once.
        std::fs::remove_file(t.path().join("etc/sysctl.d/99-zz-forksafe.conf")).unwrap();
        for expected in [1, 0] {
            let sv = look(false);
            let e: Vec<Event> = said
                .sysctl_d(&s.knobs, true, sv.dropin.as_ref(), &sv.boots, &[])
                .into_iter()
                .filter(|e| e.kind() == EventKind::DriftDetected)
                .collect();
            assert_eq!(e.len(), expected);
        }
    }
}
