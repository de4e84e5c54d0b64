//! What the daemon keeps about each knob between passes ([`Memory`]): what it last said,
//! its status, its counters and fight, a write the kernel answered with another value, its
//! inotify watch, and the gate that bounds event-driven checks; and [`absorb`], which takes
//! in one step's result.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::inotify::WatchDescriptor;

use crate::config::Settings;
use crate::enforce::{KnobReport, Status, Stuck};
use crate::knob::{Kind, Knob};
use crate::neighbours::Sources;
use crate::os::root::Root;

use super::backoff::Backoff;
use super::fight::Contest;
use super::say::{self, Seen};

/// At most one event-driven repair of a knob this often: a neighbour writing in a tight
/// loop cannot drive forksafe's CPU. A write seen sooner is repaired when the gap is over.
pub(crate) const EVENT_REPAIR_GAP: Duration = Duration::from_millis(100);

/// After an event-driven read that found the knob right (our own write raises an event
/// too), the next event-driven read waits at least this long.
pub(crate) const EVENT_READ_GAP: Duration = Duration::from_millis(10);

/// A write the kernel answered with another value is not repeated at every tick; it is
/// written again after this long, and each time the same answer comes back, after twice
/// as long, up to [`STUCK_RETRY_MAX`]. A knob the kernel really adjusts then costs a few
/// writes a minute; a writer that won three races in a row and stopped (which looks the
/// same) keeps the knob wrong for seconds, not for a minute.
pub(crate) const STUCK_RETRY: Duration = Duration::from_secs(2);

/// The longest wait before a stuck write is tried again.
pub(crate) const STUCK_RETRY_MAX: Duration = Duration::from_secs(60);

/// What the daemon counts per knob.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    /// Drift repairs since the daemon started.
    pub(crate) repairs: u64,
    /// When the last repair happened.
    pub(crate) last_repair: Option<SystemTime>,
}

/// A knob's identity across reloads: the same file with the same desired value.
type Id = (Kind, PathBuf, String);

fn id_of(k: &Knob) -> Id {
    (k.kind(), k.rel().to_path_buf(), k.desired().to_string())
}

/// Everything the daemon keeps about one knob between passes.
pub(crate) struct Memory {
    id: Id,
    /// What was last said about it.
    seen: Seen,
    /// Its status after the last pass.
    pub(crate) status: Status,
    /// Its repairs.
    pub(crate) counters: Counters,
    /// Whether something fights over it.
    pub(crate) contest: Contest,
    /// A write that read back another value: not repeated while the knob reads that,
    /// until its retry is due.
    stuck: Option<Stuck>,
    retry: Backoff,
    /// The inotify watch on the knob's file.
    pub(crate) wd: Option<WatchDescriptor>,
    /// No event-driven check before this time.
    gate: Instant,
    /// An event arrived before `gate`: check the knob when the gate opens.
    pending: bool,
}

impl Memory {
    /// An inotify event on the knob's file at `now`: whether to check it now. When not,
    /// it is pending, and checked once the gate opens ([`Memory::due`]).
    pub(crate) fn event(&mut self, now: Instant) -> bool {
        self.pending = now < self.gate;
        !self.pending
    }

    /// An event-driven check ran at `now`: the next one waits a gap, longer after a repair.
    pub(crate) fn checked(&mut self, now: Instant, repaired: bool) {
        let gap = if repaired {
            EVENT_REPAIR_GAP
        } else {
            EVENT_READ_GAP
        };
        self.gate = now + gap;
    }

    /// The stuck write to respect at `now`: none once its retry is due.
    pub(crate) fn stuck(&self, now: Instant) -> Option<&Stuck> {
        self.stuck.as_ref().filter(|_| !self.retry.ready(now))
    }

    /// Take in what became of a stuck write after a step at `now`. `respected`: the step
    /// was given the stuck write and did not write.
    fn settle_stuck(&mut self, r: &KnobReport, respected: bool, now: Instant) {
        self.stuck = match (self.stuck.take(), Stuck::after(r)) {
            (old, Some(_)) if respected => old,
            (old, Some(new)) => {
                // Written, and answered with the same other value again: wait longer.
                if old.is_none_or(|o| o.value != new.value) {
                    self.retry.reset();
                }
                self.retry.failed(now);
                Some(new)
            }
            (Some(old), None) if old.holds(&r.observed) => Some(old),
            _ => {
                self.retry.reset();
                None
            }
        };
    }

    /// Whether a pending check is due at `now`.
    pub(crate) fn due(&self, now: Instant) -> bool {
        self.pending && self.gate <= now
    }

    /// When a pending check is due.
    pub(crate) fn pending_at(&self) -> Option<Instant> {
        self.pending.then_some(self.gate)
    }
}

/// Memory for `settings`' knobs, keeping what was known about knobs that did not change
/// (a reload keeps their counters and what was said; a fight too, at the same interval).
pub(crate) fn fresh(
    settings: &Settings,
    old: &[Memory],
    old_interval: Option<Duration>,
) -> Vec<Memory> {
    let now = Instant::now();
    settings
        .knobs
        .iter()
        .map(|k| {
            let id = id_of(k);
            let kept = old.iter().find(|m| m.id == id);
            let (seen, counters, status) = kept
                .map_or((Seen::Fresh, Counters::default(), Status::Error), |m| {
                    (m.seen.clone(), m.counters, m.status)
                });
            let contest = kept
                .filter(|_| old_interval == Some(settings.interval))
                .map_or_else(|| Contest::new(settings.interval), |m| m.contest.clone());
            Memory {
                id,
                seen,
                status,
                counters,
                contest,
                stuck: None,
                retry: Backoff::new(STUCK_RETRY, STUCK_RETRY_MAX),
                wd: None,
                gate: now,
                pending: false,
            }
        })
        .collect()
}

/// What taking in a step's result needs besides the knob's own memory.
pub(crate) struct Context<'a> {
    /// The root, to look for tuners when a fight starts.
    pub(crate) root: &'a Root,
    /// What else sets the knobs, for `SOURCE=`.
    pub(crate) sources: &'a Sources,
    /// The poll interval.
    pub(crate) interval: Duration,
    /// Audit mode: drift is said, not repaired.
    pub(crate) audit: bool,
}

/// Take in what one step found for a knob: its entries, counters, the fight and the stuck
/// write (`respected`: the step was given [`Memory::stuck`] and did not write). Returns
/// whether a repair was made.
pub(crate) fn absorb(
    ctx: &Context,
    mem: &mut Memory,
    r: &KnobReport,
    respected: bool,
    now: Instant,
) -> bool {
    let observed = r.observed.as_deref().unwrap_or("");
    let repaired = matches!(r.repair, Some(Ok(()))) && mem.seen != Seen::Fresh;
    let now_seen = Seen::after(r);
    mem.settle_stuck(r, respected, now);
    let status = r.status();
    // Audit mode repairs nothing, so a fight is counted in changes to a wrong value: a
    // neighbour flipping the knob is as quiet as in repair mode.
    let changed_wrong = ctx.audit && status == Status::Drift && mem.seen != now_seen;
    let intruded = repaired || changed_wrong;
    let fighting = mem.contest.fighting();
    // While a fight is on, the knob's own lines are silent: the fight's say it.
    if !(fighting && (intruded || now_seen == Seen::Ok)) {
        if let Some(event) = say::knob_event(r, &mem.seen, &now_seen) {
            let event = if repaired {
                say::with_source(event, ctx.sources, r.knob)
            } else {
                event
            };
            event.emit();
        }
    }
    if repaired {
        mem.counters.repairs += 1;
        mem.counters.last_repair = Some(SystemTime::now());
    }
    if intruded {
        if let Some(talk) = mem.contest.repaired(now, observed) {
            let who = say::who(ctx.root, ctx.sources, r.knob);
            let event = say::fight(r.knob, &talk, ctx.interval, &who, ctx.audit);
            say::with_source(event, ctx.sources, r.knob).emit();
        }
    } else if status == Status::Drift {
        mem.contest.wrong(observed);
    } else if status.in_spec_now() {
        if let Some(ended) = mem.contest.in_spec(now) {
            say::fight_over(r.knob, &ended, ctx.audit).emit();
        }
    }
    mem.seen = now_seen;
    mem.status = status;
    repaired
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one() -> Vec<Memory> {
        let s = Settings::parse(
            "[sysctl]\n\"vm.overcommit_memory\" = 1\n",
            crate::config::Source::Builtin,
        )
        .unwrap();
        fresh(&s, &[], None)
    }

    #[test]
    fn events_are_gated_after_a_check() {
        let mut m = one();
        let m = &mut m[0];
        let t0 = Instant::now() + Duration::from_secs(1);
        assert!(m.event(t0), "the first event is checked at once");
        m.checked(t0, false);
        // Our own write's event, 5 ms later: pending until the read gap is over.
        assert!(!m.event(t0 + Duration::from_millis(5)));
        assert_eq!(m.pending_at(), Some(t0 + EVENT_READ_GAP));
        assert!(!m.due(t0 + Duration::from_millis(9)));
        assert!(m.due(t0 + EVENT_READ_GAP));
        assert!(m.event(t0 + EVENT_READ_GAP));
        assert_eq!(m.pending_at(), None);
        // After a repair, a tight-loop writer is repaired at most every 100 ms.
        let t1 = t0 + EVENT_READ_GAP;
        m.checked(t1, true);
        assert!(!m.event(t1 + Duration::from_millis(50)));
        assert!(!m.due(t1 + Duration::from_millis(99)));
        assert!(m.due(t1 + EVENT_REPAIR_GAP));
    }

    #[test]
    fn a_stuck_write_is_tried_again_later_each_time() {
        use crate::knob::{Cause, KnobError, Op};
        let s = Settings::parse(
            "[sysctl]\n\"fs.pipe-max-size\" = \"5000\"\n",
            crate::config::Source::Builtin,
        )
        .unwrap();
        let mut mem = fresh(&s, &[], None);
        let m = &mut mem[0];
        let stuck_report = || KnobReport {
            knob: &s.knobs[0],
            observed: Ok("8192".into()),
            repair: Some(Err(KnobError {
                path: "/proc/sys/fs/pipe-max-size".into(),
                op: Op::Verify,
                cause: Cause::ReadBack {
                    wrote: "5000".into(),
                    read: "8192".into(),
                },
            })),
            boot: None,
        };
        let t0 = Instant::now();
        // Written, answered 8192: held off for STUCK_RETRY.
        m.settle_stuck(&stuck_report(), false, t0);
        assert!(m.stuck(t0 + Duration::from_millis(1999)).is_some());
        // Respected ticks change nothing.
        m.settle_stuck(&stuck_report(), true, t0 + Duration::from_secs(1));
        assert!(m.stuck(t0 + Duration::from_millis(1999)).is_some());
        assert!(m.stuck(t0 + STUCK_RETRY).is_none());
        // Tried again, the same answer: twice as long, then capped.
        let mut at = t0 + STUCK_RETRY;
        let mut waits = Vec::new();
        for _ in 0..8 {
            m.settle_stuck(&stuck_report(), false, at);
            waits.push(m.retry.wait().as_secs());
            at += m.retry.wait();
        }
        assert_eq!(waits, [4, 8, 16, 32, 60, 60, 60, 60]);
        // Right again: forgotten.
        let right = KnobReport {
            knob: &s.knobs[0],
            observed: Ok("5000".into()),
            repair: None,
            boot: None,
        };
        m.settle_stuck(&right, false, at);
        assert!(m.stuck(at).is_none());
    }

    #[test]
    fn a_reload_keeps_what_is_known_of_unchanged_knobs() {
        let s = Settings::parse(
            "[sysctl]\n\"vm.overcommit_memory\" = 1\n",
            crate::config::Source::Builtin,
        )
        .unwrap();
        let mut old = fresh(&s, &[], None);
        old[0].counters.repairs = 7;
        let kept = fresh(&s, &old, Some(s.interval));
        assert_eq!(kept[0].counters.repairs, 7);
        // A new desired value is a new knob.
        let other = Settings::parse(
            "[sysctl]\n\"vm.overcommit_memory\" = 2\n",
            crate::config::Source::Builtin,
        )
        .unwrap();
        assert_eq!(fresh(&other, &old, Some(s.interval))[0].counters.repairs, 0);
    }
}
