//! A neighbour that fights back: another agent (tuned with another profile, configuration
//! management, a script in a loop) keeps setting a knob back. The daemon keeps repairing
//! it, every time: holding the value is the product, and a repair costs one write. What this
//! module bounds is the talk. It is pure (no I/O, no clock of its own): the daemon feeds it
//! each repair with the time, and says what it returns.
//!
//! - a fight starts at [`REPAIRS_FOR_FIGHT`] repairs within [`WINDOW`] intervals: one
//!   warning (knob, values seen, how often, who might be doing it);
//! - while it lasts, the knob's own repair lines are silent, and at most one summary is said
//!   every [`SUMMARY_EVERY`] (repairs since the last one, values);
//! - it is over once the knob stayed in spec for [`CALM`] intervals: one line.
//!
//! Memory is bounded however long a fight lasts: the last few repair times, and at most
//! [`MAX_VALUES`] distinct wrong values (the rest are counted).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::words;

/// Repairs within the window that make a fight.
pub(crate) const REPAIRS_FOR_FIGHT: usize = 3;
/// The window, in intervals.
pub(crate) const WINDOW: u32 = 60;
/// How long the knob must stay in spec for the fight to be over, in intervals.
pub(crate) const CALM: u32 = 10;
/// At most one summary this often while a fight lasts.
pub(crate) const SUMMARY_EVERY: Duration = Duration::from_secs(600);
/// Distinct wrong values remembered; more are only counted.
pub(crate) const MAX_VALUES: usize = 8;

/// The wrong values seen, bounded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Values {
    seen: Vec<String>,
    others: u64,
}

impl Values {
    fn add(&mut self, v: &str) {
        if self.seen.iter().any(|s| s == v) {
            return;
        }
        if self.seen.len() < MAX_VALUES {
            self.seen.push(v.to_string());
            self.seen.sort();
        } else {
            self.others += 1;
        }
    }

    /// `0, 2` or `0, 2 and 3 other values` (an empty one as `(empty)`).
    pub(crate) fn describe(&self) -> String {
        let mut s = words::values(&self.seen);
        if self.others > 0 {
            s.push_str(&format!(
                " and {}",
                words::count64(self.others, "other value", "other values")
            ));
        }
        s
    }

    /// The values themselves (at most [`MAX_VALUES`]).
    pub(crate) fn list(&self) -> &[String] {
        &self.seen
    }
}

/// What to say about a fight, when the daemon should say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Talk {
    /// The fight starts.
    Started {
        /// Repairs within the window.
        repairs: usize,
        /// Over how long.
        over: Duration,
        /// The wrong values seen.
        values: Values,
    },
    /// It goes on: repairs since the fight started, and since the last summary.
    Ongoing {
        /// Repairs in all.
        repairs: u64,
        /// Repairs since the last summary (or the start).
        since_last: u64,
        /// For how long it has lasted.
        lasted: Duration,
        /// The wrong values seen.
        values: Values,
    },
}

/// What a fight looked like when it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ended {
    /// Repairs made while it lasted.
    pub(crate) repairs: u64,
    /// How long it lasted.
    pub(crate) lasted: Duration,
}

#[derive(Debug, Clone)]
enum State {
    Calm,
    Fighting {
        since: Instant,
        repairs: u64,
        last_summary: Instant,
        repairs_at_summary: u64,
        values: Values,
        in_spec_since: Option<Instant>,
    },
}

/// One knob's contest.
#[derive(Debug, Clone)]
pub(crate) struct Contest {
    interval: Duration,
    /// The last repairs while calm: at most [`REPAIRS_FOR_FIGHT`].
    recent: VecDeque<(Instant, String)>,
    state: State,
}

impl Contest {
    /// A calm knob checked every `interval`.
    pub(crate) fn new(interval: Duration) -> Contest {
        Contest {
            interval,
            recent: VecDeque::with_capacity(REPAIRS_FOR_FIGHT),
            state: State::Calm,
        }
    }

    /// Whether a fight is on.
    pub(crate) fn fighting(&self) -> bool {
        matches!(self.state, State::Fighting { .. })
    }

    /// Repairs since the fight started (0 when calm).
    pub(crate) fn repairs(&self) -> u64 {
        match &self.state {
            State::Fighting { repairs, .. } => *repairs,
            State::Calm => 0,
        }
    }

    /// The wrong values seen in the fight (empty when calm).
    pub(crate) fn values(&self) -> Values {
        match &self.state {
            State::Fighting { values, .. } => values.clone(),
            State::Calm => Values::default(),
        }
    }

    /// The knob was repaired at `now`; it had been set to `observed`. Returns what to say,
    /// if anything: the start of a fight, or a summary that is due.
    pub(crate) fn repaired(&mut self, now: Instant, observed: &str) -> Option<Talk> {
        match &mut self.state {
            State::Fighting {
                since,
                repairs,
                last_summary,
                repairs_at_summary,
                values,
                in_spec_since,
            } => {
                *repairs += 1;
                values.add(observed);
                *in_spec_since = None;
                if now.saturating_duration_since(*last_summary) < SUMMARY_EVERY {
                    return None;
                }
                let talk = Talk::Ongoing {
                    repairs: *repairs,
                    since_last: *repairs - *repairs_at_summary,
                    lasted: now.saturating_duration_since(*since),
                    values: values.clone(),
                };
                *last_summary = now;
                *repairs_at_summary = *repairs;
                Some(talk)
            }
            State::Calm => {
                let window = self.interval * WINDOW;
                if self.recent.len() == REPAIRS_FOR_FIGHT {
                    self.recent.pop_front();
                }
                self.recent.push_back((now, observed.to_string()));
                let first = self.recent.front().map_or(now, |(t, _)| *t);
                if self.recent.len() < REPAIRS_FOR_FIGHT
                    || now.saturating_duration_since(first) > window
                {
                    return None;
                }
                let mut values = Values::default();
                for (_, v) in &self.recent {
                    values.add(v);
                }
                let repairs = self.recent.len();
                self.state = State::Fighting {
                    since: first,
                    repairs: repairs as u64,
                    last_summary: now,
                    repairs_at_summary: repairs as u64,
                    values: values.clone(),
                    in_spec_since: None,
                };
                self.recent.clear();
                Some(Talk::Started {
                    repairs,
                    over: now.saturating_duration_since(first),
                    values,
                })
            }
        }
    }

    /// The knob had a wrong value that was not repaired (audit mode, a failed write).
    pub(crate) fn wrong(&mut self, observed: &str) {
        if let State::Fighting {
            values,
            in_spec_since,
            ..
        } = &mut self.state
        {
            values.add(observed);
            *in_spec_since = None;
        }
    }

    /// The knob was in spec at `now`. Returns the fight's end when it is over.
    pub(crate) fn in_spec(&mut self, now: Instant) -> Option<Ended> {
        let calm = self.interval * CALM;
        let State::Fighting {
            since,
            repairs,
            in_spec_since,
            ..
        } = &mut self.state
        else {
            return None;
        };
        let quiet_since = *in_spec_since.get_or_insert(now);
        if now.saturating_duration_since(quiet_since) < calm {
            return None;
        }
        let ended = Ended {
            repairs: *repairs,
            lasted: now.saturating_duration_since(*since),
        };
        self.state = State::Calm;
        Some(ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const I: Duration = Duration::from_secs(1);

    #[test]
    fn occasional_repairs_are_not_a_fight() {
        let t0 = Instant::now();
        let mut c = Contest::new(I);
        // Refused: two repairs a minute is an operator, not a fight.
        assert_eq!(c.repaired(t0, "0"), None);
        assert_eq!(c.repaired(t0 + 40 * I, "0"), None);
        // The first one has left the 60-interval window.
        assert_eq!(c.repaired(t0 + 70 * I, "0"), None);
        assert!(!c.fighting());
    }

    #[test]
    fn a_fight_starts_summarises_at_most_every_ten_minutes_and_ends_when_calm() {
        let t0 = Instant::now();
        let mut c = Contest::new(I);
        assert_eq!(c.repaired(t0, "0"), None);
        assert_eq!(c.repaired(t0 + I, "2"), None);
        let Some(Talk::Started {
            repairs,
            over,
            values,
        }) = c.repaired(t0 + 2 * I, "0")
        else {
            panic!("no start")
        };
        assert_eq!(
            (repairs, over, values.describe()),
            (3, 2 * I, "0, 2".into())
        );
        assert!(c.fighting());

        // A repair every second for an hour: six summaries, nothing else.
        let mut talk = Vec::new();
        for s in 3..3603 {
            if let Some(t) = c.repaired(t0 + s * I, "0") {
                talk.push(t);
            }
        }
        assert_eq!(talk.len(), 6, "{talk:?}");
        assert!(matches!(
            talk[0],
            Talk::Ongoing {
                since_last: 600,
                ..
            }
        ));

        // Quiet for less than 10 intervals: still on. Then over.
        let now = t0 + 3602 * I;
        assert_eq!(c.in_spec(now + I), None);
        assert_eq!(c.in_spec(now + 5 * I), None);
        let ended = c.in_spec(now + 11 * I).unwrap();
        assert_eq!(ended.repairs, 3603);
        assert!(!c.fighting());
    }

    #[test]
    fn memory_is_bounded_whatever_the_neighbour_writes() {
        let t0 = Instant::now();
        let mut c = Contest::new(I);
        for i in 0..100_000u32 {
            c.repaired(t0 + Duration::from_millis(u64::from(i)), &i.to_string());
        }
        let State::Fighting { values, .. } = &c.state else {
            panic!()
        };
        assert_eq!(values.list().len(), MAX_VALUES);
        assert!(values.describe().ends_with("and 99992 other values"));
        assert!(c.recent.len() <= REPAIRS_FOR_FIGHT);
    }

    #[test]
    fn drift_seen_without_repair_resets_the_calm() {
        let t0 = Instant::now();
        let mut c = Contest::new(I);
        for i in 0..3 {
            c.repaired(t0 + i * I, "0");
        }
        assert_eq!(c.in_spec(t0 + 3 * I), None);
        c.wrong("0");
        assert_eq!(c.in_spec(t0 + 12 * I), None, "the calm restarted at 12");
        assert!(c.in_spec(t0 + 22 * I).is_some());
    }
}
