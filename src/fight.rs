//! A neighbour that fights back: another agent (tuned with another profile, configuration
//! management, a script in a loop) keeps setting a knob back. Without care the daemon would
//! repair it every tick and log every repair. This module decides, per knob, when that is
//! happening, how long to hold off, and when it is over. It is pure: the daemon feeds it
//! what each pass saw, with the time.
//!
//! Every period is counted in intervals (1 s by default):
//! - a fight starts at [`REPAIRS_FOR_FIGHT`] repairs within [`WINDOW`] intervals;
//! - then the knob is repaired only after 2, 4, 8, ... intervals, at most [`CAP`] (1 min);
//! - it is over once the knob stayed in spec for [`CALM`] intervals.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::root::Root;

/// Repairs within the window that make a fight.
pub const REPAIRS_FOR_FIGHT: usize = 3;
/// The window, in intervals.
pub const WINDOW: u32 = 60;
/// The longest hold between two repairs, in intervals.
pub const CAP: u32 = 60;
/// How long the knob must stay in spec for the fight to be over, in intervals.
pub const CALM: u32 = 10;

/// Processes that set kernel tunables for a living (as `/proc/PID/comm` shows them,
/// 15 characters at most).
pub const TUNERS: &[&str] = &[
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

/// What a fight looked like when it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// Repairs within the window.
    pub repairs: usize,
    /// Over how long.
    pub over: Duration,
    /// The wrong values seen.
    pub values: Vec<String>,
}

/// What a fight looked like when it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// Repairs made while it lasted.
    pub repairs: u64,
    /// How long it lasted.
    pub lasted: Duration,
}

#[derive(Debug, Clone)]
enum State {
    Calm,
    Fighting {
        since: Instant,
        next_repair: Instant,
        step: Duration,
        repairs: u64,
        values: BTreeSet<String>,
        in_spec_since: Option<Instant>,
    },
}

/// One knob's contest.
#[derive(Debug, Clone)]
pub struct Contest {
    interval: Duration,
    recent: VecDeque<(Instant, String)>,
    state: State,
}

impl Contest {
    /// A calm knob checked every `interval`.
    pub fn new(interval: Duration) -> Contest {
        Contest {
            interval,
            recent: VecDeque::new(),
            state: State::Calm,
        }
    }

    /// Whether a fight is on.
    pub fn fighting(&self) -> bool {
        matches!(self.state, State::Fighting { .. })
    }

    /// May the daemon repair the knob at `now`?
    pub fn may_repair(&self, now: Instant) -> bool {
        match &self.state {
            State::Calm => true,
            State::Fighting { next_repair, .. } => now >= *next_repair,
        }
    }

    /// The knob was repaired at `now`; it had been set to `observed`. Returns the fight's
    /// start when this repair starts one.
    pub fn repaired(&mut self, now: Instant, observed: &str) -> Option<Started> {
        let cap = self.interval * CAP;
        match &mut self.state {
            State::Fighting {
                next_repair,
                step,
                repairs,
                values,
                in_spec_since,
                ..
            } => {
                *repairs += 1;
                *step = (*step * 2).min(cap);
                *next_repair = now + *step;
                values.insert(observed.to_string());
                *in_spec_since = None;
                None
            }
            State::Calm => {
                let window = self.interval * WINDOW;
                self.recent.push_back((now, observed.to_string()));
                while self
                    .recent
                    .front()
                    .is_some_and(|(t, _)| now.saturating_duration_since(*t) > window)
                {
                    self.recent.pop_front();
                }
                if self.recent.len() < REPAIRS_FOR_FIGHT {
                    return None;
                }
                let first = self.recent.front().map_or(now, |(t, _)| *t);
                let values: BTreeSet<String> = self.recent.iter().map(|(_, v)| v.clone()).collect();
                let started = Started {
                    repairs: self.recent.len(),
                    over: now.saturating_duration_since(first),
                    values: values.iter().cloned().collect(),
                };
                let step = self.interval * 2;
                self.state = State::Fighting {
                    since: first,
                    next_repair: now + step,
                    step,
                    repairs: self.recent.len() as u64,
                    values,
                    in_spec_since: None,
                };
                self.recent.clear();
                Some(started)
            }
        }
    }

    /// The knob had `observed` and was left alone (held back).
    pub fn held(&mut self, observed: &str) {
        if let State::Fighting {
            values,
            in_spec_since,
            ..
        } = &mut self.state
        {
            values.insert(observed.to_string());
            *in_spec_since = None;
        }
    }

    /// The knob was in spec at `now`. Returns the fight's end when it is over.
    pub fn in_spec(&mut self, now: Instant) -> Option<Ended> {
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

/// Running processes whose name is a known tuner: `name (pid N)`, read under the root.
pub fn culprits(root: &Root) -> Vec<String> {
    root.processes()
        .into_iter()
        .filter(|(_, name)| TUNERS.contains(&name.as_str()))
        .map(|(pid, name)| format!("{name} (pid {pid})"))
        .collect()
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
    fn a_fight_backs_off_up_to_the_cap_and_ends_when_calm() {
        let t0 = Instant::now();
        let mut c = Contest::new(I);
        assert_eq!(c.repaired(t0, "0"), None);
        assert_eq!(c.repaired(t0 + I, "2"), None);
        let started = c.repaired(t0 + 2 * I, "0").unwrap();
        assert_eq!(started.repairs, 3);
        assert_eq!(started.over, 2 * I);
        assert_eq!(started.values, ["0", "2"]);
        assert!(c.fighting());

        // Held for 2, then 4, 8, ... intervals, never more than 60.
        let mut now = t0 + 2 * I;
        let mut holds = Vec::new();
        for _ in 0..8 {
            let mut waited = Duration::ZERO;
            while !c.may_repair(now + waited) {
                waited += I;
            }
            holds.push(waited.as_secs());
            now += waited;
            c.repaired(now, "0");
        }
        assert_eq!(holds, [2, 4, 8, 16, 32, 60, 60, 60]);

        // Quiet for less than 10 intervals: still on. Then over.
        assert_eq!(c.in_spec(now + I), None);
        assert_eq!(c.in_spec(now + 5 * I), None);
        let ended = c.in_spec(now + 11 * I).unwrap();
        assert_eq!(ended.repairs, 11);
        assert!(!c.fighting());
        assert!(c.may_repair(now + 11 * I));
    }

    #[test]
    fn drift_seen_while_held_resets_the_calm() {
        let t0 = Instant::now();
        let mut c = Contest::new(I);
        for i in 0..3 {
            c.repaired(t0 + i * I, "0");
        }
        assert_eq!(c.in_spec(t0 + 3 * I), None);
        c.held("0");
        assert_eq!(c.in_spec(t0 + 12 * I), None, "the calm restarted at 12");
        assert!(c.in_spec(t0 + 22 * I).is_some());
    }

    #[test]
    fn culprits_are_found_by_name_under_the_root() {
        let t = tempfile::tempdir().unwrap();
        for (pid, comm) in [("777", "tuned"), ("12", "bash"), ("900", "salt-minion")] {
            std::fs::create_dir_all(t.path().join("proc").join(pid)).unwrap();
            std::fs::write(
                t.path().join("proc").join(pid).join("comm"),
                format!("{comm}\n"),
            )
            .unwrap();
        }
        assert_eq!(
            culprits(&Root::new(t.path())),
            ["tuned (pid 777)", "salt-minion (pid 900)"]
        );
    }
}
