//! Waiting longer each time the same thing fails: the first retry after `first`, then twice
//! as long each time, up to `max`; a success forgets. Used for a write the kernel keeps
//! answering with another value, and for a drop-in write that keeps failing (a full disk):
//! neither is given up on, and neither feeds itself.

use std::time::{Duration, Instant};

/// One backoff.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    first: Duration,
    max: Duration,
    /// The wait after the last failure; zero when nothing failed.
    wait: Duration,
    /// No retry before this.
    until: Option<Instant>,
}

impl Backoff {
    /// A backoff that waits `first` after a failure, doubling to `max`.
    pub(crate) fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            wait: Duration::ZERO,
            until: None,
        }
    }

    /// It failed (again) at `now`: wait longer than last time.
    pub(crate) fn failed(&mut self, now: Instant) {
        self.wait = if self.wait.is_zero() {
            self.first
        } else {
            (self.wait * 2).min(self.max)
        };
        self.until = Some(now + self.wait);
    }

    /// It worked, or what failed is gone: the next failure starts again at `first`.
    pub(crate) fn reset(&mut self) {
        self.wait = Duration::ZERO;
        self.until = None;
    }

    /// Whether a retry may happen at `now`.
    pub(crate) fn ready(&self, now: Instant) -> bool {
        self.until.is_none_or(|t| now >= t)
    }

    /// When the next retry is due, while one waits.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.until
    }

    /// The wait after the last failure.
    #[cfg(test)]
    pub(crate) fn wait(&self) -> Duration {
        self.wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_waits_twice_as_long_up_to_the_max() {
        let t0 = Instant::now();
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        assert!(b.ready(t0));
        let mut waits = Vec::new();
        for _ in 0..9 {
            b.failed(t0);
            waits.push(b.wait().as_secs());
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert!(!b.ready(t0 + Duration::from_secs(59)));
        assert!(b.ready(t0 + Duration::from_secs(60)));
        b.reset();
        assert!(b.ready(t0));
        b.failed(t0);
        assert_eq!(b.wait(), Duration::from_secs(1));
    }
}
