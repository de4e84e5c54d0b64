//! The looks the loop asks for and does not wait on: the survey of sysctl.d and the scan for
//! what else sets the knobs, done by the [`worker`](super::worker) (or here, at once, when
//! its thread could not start). At most one survey is in flight; what changes meanwhile is
//! one more survey once it is answered. The thread starts at the first look asked of it,
//! after READY=1: the looks before READY are done at once, and a unit waiting on us never
//! waits for a thread to start. A drop-in write that failed is tried again with a
//! [`Backoff`], never at once: a full disk must not make the daemon spin (a failed write
//! creates and removes a temp file, and that is an event in the directory it watches).

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use crate::config::Settings;
use crate::neighbours::Sources;
use crate::os::root::Root;

use super::backoff::Backoff;
use super::worker::{Answer, Ask, Looked, Worker};

/// After a drop-in write fails, the first retry waits this long; each further one twice as
/// long, up to a minute.
const DROPIN_RETRY: Duration = Duration::from_secs(1);
const DROPIN_RETRY_MAX: Duration = Duration::from_secs(60);

/// A survey to take in: what it found, and whether its drop-in part is news (a look made
/// without writing while a failed write backs off says nothing new about the drop-in).
pub(crate) struct Surveyed {
    pub(crate) looked: Looked,
    pub(crate) dropin_news: bool,
}

/// What the loop knows about the looks it asked for.
pub(crate) struct Looks {
    worker: Option<Worker>,
    /// Whether the worker was started (it is not started again once gone).
    started: bool,
    /// Settings generation: a reload starts a new one, and older answers are dropped.
    generation: u64,
    in_flight: bool,
    again: bool,
    dropin: Backoff,
}

impl Looks {
    /// No worker yet: it starts at the first look asked of it.
    pub(crate) fn new() -> Looks {
        Looks {
            worker: None,
            started: false,
            generation: 0,
            in_flight: false,
            again: false,
            dropin: Backoff::new(DROPIN_RETRY, DROPIN_RETRY_MAX),
        }
    }

    /// A reload: answers for the old settings no longer count.
    pub(crate) fn reloaded(&mut self) {
        self.generation += 1;
        self.in_flight = false;
        self.again = false;
        self.dropin.reset();
    }

    /// The worker, started at the first call; without a thread, looks are done at once
    /// (and said so).
    fn worker(&mut self, root: &Root) -> Option<&Worker> {
        if !self.started {
            self.started = true;
            self.worker = Worker::start(root.clone())
                .map_err(|e| {
                    log::warn!(
                        "cannot start a thread for sysctl.d and the scan of other setters ({e}): \
                         they run on the repair loop, which waits for them"
                    )
                })
                .ok();
        }
        self.worker.as_ref()
    }

    /// Whether the drop-in may be written at `now`.
    fn write(&self, settings: &Settings, now: Instant) -> bool {
        settings.repair && self.dropin.ready(now)
    }

    /// Survey now, on this thread (at start and on reload, before READY).
    pub(crate) fn survey_now(&mut self, root: &Root, settings: &Settings) -> Surveyed {
        let now = Instant::now();
        let write = self.write(settings, now);
        let looked = Looked::survey(root, settings, write);
        self.surveyed(settings, looked, write, now)
    }

    /// Ask for a survey; done at once (and returned) only when there is no worker.
    pub(crate) fn survey(&mut self, root: &Root, settings: &Settings) -> Option<Surveyed> {
        if self.in_flight {
            self.again = true;
            return None;
        }
        let write = self.write(settings, Instant::now());
        let generation = self.generation;
        let Some(worker) = self.worker(root) else {
            return Some(self.survey_now(root, settings));
        };
        self.in_flight = worker.ask(Ask::Survey {
            settings: settings.clone(),
            write,
            generation,
        });
        if self.in_flight {
            None
        } else {
            self.worker_gone();
            Some(self.survey_now(root, settings))
        }
    }

    /// Ask for a scan; done at once (and returned) only when there is no worker.
    pub(crate) fn sources(&mut self, root: &Root, settings: &Settings) -> Option<Sources> {
        let generation = self.generation;
        let asked = self.worker(root).is_some_and(|w| {
            w.ask(Ask::Sources {
                settings: settings.clone(),
                generation,
            })
        });
        if asked {
            return None;
        }
        self.worker_gone();
        Some(Sources::scan(root, settings))
    }

    fn worker_gone(&mut self) {
        if self.worker.take().is_some() {
            log::warn!(
                "the thread for sysctl.d and the scan of other setters is gone: they run on the \
                 repair loop from now on"
            );
        }
    }

    /// What poll waits on for answers.
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.worker.as_ref().map(Worker::fd)
    }

    /// When a survey is due without an event: the retry of a failed drop-in write (none
    /// while a survey is in flight: its answer decides).
    pub(crate) fn due(&self) -> Option<Instant> {
        if self.in_flight {
            None
        } else {
            self.dropin.due()
        }
    }

    /// The answers waiting, for the current settings: surveys and scans. A survey asked
    /// for again while this one ran is asked for now.
    pub(crate) fn answers(
        &mut self,
        root: &Root,
        settings: &Settings,
    ) -> (Vec<Surveyed>, Vec<Sources>) {
        let answers = match self.worker.as_mut().map(Worker::answers) {
            Some(Ok(a)) => a,
            Some(Err(())) => {
                self.worker_gone();
                self.in_flight = false;
                Vec::new()
            }
            None => Vec::new(),
        };
        let (mut surveys, mut scans) = (Vec::new(), Vec::new());
        let now = Instant::now();
        for a in answers {
            match a {
                Answer::Survey {
                    looked,
                    write,
                    generation,
                } if generation == self.generation => {
                    self.in_flight = false;
                    surveys.push(self.surveyed(settings, looked, write, now));
                }
                Answer::Sources {
                    sources,
                    generation,
                } if generation == self.generation => scans.push(sources),
                _ => {}
            }
        }
        if self.again && !self.in_flight {
            self.again = false;
            surveys.extend(self.survey(root, settings));
        }
        (surveys, scans)
    }

    /// Take in the drop-in's part of a survey: a failed write backs off, a good one (or a
    /// drop-in that needs none) forgets.
    fn surveyed(
        &mut self,
        settings: &Settings,
        looked: Looked,
        write: bool,
        now: Instant,
    ) -> Surveyed {
        let backing_off = settings.repair && !write;
        match looked.dropin.as_ref() {
            Some(d) if matches!(d.wrote, Some(Err(_))) => {
                self.dropin.failed(now);
                let wait = self.dropin.due().map(|t| t.saturating_duration_since(now));
                log::debug!(
                    "surveyed sysctl.d: the drop-in write failed; next try in {}",
                    crate::words::timespan(wait.unwrap_or_default())
                );
            }
            Some(d) if write && d.is_current() => self.dropin.reset(),
            _ => {}
        }
        log::debug!("surveyed sysctl.d (drop-in written: {write})");
        Surveyed {
            looked,
            dropin_news: !backing_off,
        }
    }
}
