//! The daemon's second thread: the looks whose cost grows with the machine (the survey of
//! sysctl.d, the scan for what else sets the knobs) run here, never on the loop that repairs
//! knobs, so a repair never waits behind a large sysctl.d or a tree of thousands of unit
//! files. The loop asks; the worker answers on a channel and wakes the loop's poll through
//! a socket pair. Asks that pile up while it works are folded: only the latest of each kind
//! is done.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread;

use crate::config::Settings;
use crate::enforce::{self, Boots};
use crate::neighbours::Sources;
use crate::os::root::Root;
use crate::sysctl_d::Skipped;
use crate::sysctl_d::dropin::DropinReport;

/// What the loop keeps of a survey: the drop-in, the next boot of each knob, the entries it
/// could not read. The table itself (as large as sysctl.d) is dropped where it was built,
/// never on the loop.
pub(crate) struct Looked {
    pub(crate) dropin: Option<DropinReport>,
    pub(crate) boots: Boots,
    pub(crate) skipped: Vec<Skipped>,
}

impl Looked {
    /// Survey sysctl.d under `root` (writing the drop-in first when `write`).
    pub(crate) fn survey(root: &Root, settings: &Settings, write: bool) -> Looked {
        let survey = enforce::survey(root, settings, write);
        Looked {
            dropin: survey.dropin,
            boots: survey.boots,
            skipped: survey.table.skipped,
        }
    }
}

/// A look to take, for settings of one generation (a reload starts a new one).
pub(crate) enum Ask {
    /// Survey sysctl.d; `write`: bring the drop-in in line first.
    Survey {
        settings: Settings,
        write: bool,
        generation: u64,
    },
    /// Scan for what else sets the knobs.
    Sources { settings: Settings, generation: u64 },
}

/// What a look found.
pub(crate) enum Answer {
    /// A survey, and whether the drop-in was to be written.
    Survey {
        looked: Looked,
        write: bool,
        generation: u64,
    },
    /// A scan.
    Sources { sources: Sources, generation: u64 },
}

/// The loop's end of the worker.
pub(crate) struct Worker {
    asks: Sender<Ask>,
    answers: Receiver<Answer>,
    /// Readable when an answer is waiting.
    wake: UnixStream,
}

impl Worker {
    /// Start the thread.
    pub(crate) fn start(root: Root) -> io::Result<Worker> {
        let (asks, inbox) = mpsc::channel::<Ask>();
        let (outbox, answers) = mpsc::channel::<Answer>();
        let (wake, mut ring) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        ring.set_nonblocking(true)?;
        thread::Builder::new()
            .name("forksafe-looks".into())
            .spawn(move || {
                while let Some(batch) = next_batch(&inbox) {
                    for ask in batch {
                        if outbox.send(look(&root, ask)).is_err() {
                            return;
                        }
                        // A full socket already wakes the loop: nothing to wait for.
                        let _ = ring.write(&[1]);
                    }
                }
            })?;
        Ok(Worker {
            asks,
            answers,
            wake,
        })
    }

    /// Ask for a look; false when the worker is gone.
    pub(crate) fn ask(&self, ask: Ask) -> bool {
        self.asks.send(ask).is_ok()
    }

    /// What poll waits on.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Every answer waiting now; `Err` when the worker is gone.
    pub(crate) fn answers(&mut self) -> Result<Vec<Answer>, ()> {
        let mut buf = [0u8; 64];
        while matches!(self.wake.read(&mut buf), Ok(n) if n > 0) {}
        let mut out = Vec::new();
        loop {
            match self.answers.try_recv() {
                Ok(a) => out.push(a),
                Err(TryRecvError::Empty) => return Ok(out),
                Err(TryRecvError::Disconnected) if out.is_empty() => return Err(()),
                Err(TryRecvError::Disconnected) => return Ok(out),
            }
        }
    }
}

/// Wait for asks, then take every one that is waiting and keep the latest of each kind (in
/// the order survey, sources). `None` when the loop is gone.
fn next_batch(inbox: &Receiver<Ask>) -> Option<Vec<Ask>> {
    let first = inbox.recv().ok()?;
    let (mut survey, mut sources) = (None, None);
    let mut keep = |a: Ask| match a {
        a @ Ask::Survey { .. } => survey = Some(a),
        a @ Ask::Sources { .. } => sources = Some(a),
    };
    keep(first);
    while let Ok(a) = inbox.try_recv() {
        keep(a);
    }
    Some(survey.into_iter().chain(sources).collect())
}

fn look(root: &Root, ask: Ask) -> Answer {
    match ask {
        Ask::Survey {
            settings,
            write,
            generation,
        } => Answer::Survey {
            looked: Looked::survey(root, &settings, write),
            write,
            generation,
        },
        Ask::Sources {
            settings,
            generation,
        } => Answer::Sources {
            sources: Sources::scan(root, &settings),
            generation,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::parse(
            "[sysctl]\n\"vm.overcommit_memory\" = 1\n[sysctl_d]\nmanage = false\n",
            crate::config::Source::Builtin,
        )
        .unwrap()
    }

    #[test]
    fn asks_that_pile_up_are_folded_into_the_latest() {
        let (tx, rx) = mpsc::channel();
        for generation in 1..=5 {
            tx.send(Ask::Survey {
                settings: settings(),
                write: false,
                generation,
            })
            .unwrap();
        }
        tx.send(Ask::Sources {
            settings: settings(),
            generation: 5,
        })
        .unwrap();
        let batch = next_batch(&rx).unwrap();
        let kinds: Vec<(char, u64)> = batch
            .iter()
            .map(|a| match a {
                Ask::Survey { generation, .. } => ('s', *generation),
                Ask::Sources { generation, .. } => ('o', *generation),
            })
            .collect();
        assert_eq!(kinds, [('s', 5), ('o', 5)]);
        drop(tx);
        assert!(next_batch(&rx).is_none());
    }

    #[test]
    fn answers_arrive_and_wake_the_poll() {
        let t = tempfile::tempdir().unwrap();
        let mut w = Worker::start(Root::new(t.path())).unwrap();
        assert!(w.ask(Ask::Survey {
            settings: settings(),
            write: false,
            generation: 7,
        }));
        let mut fds = [nix::poll::PollFd::new(w.fd(), nix::poll::PollFlags::POLLIN)];
        assert_eq!(nix::poll::poll(&mut fds, 10_000u16).unwrap(), 1);
        let answers = w.answers().unwrap();
        assert!(matches!(
            answers.as_slice(),
            [Answer::Survey { generation: 7, .. }]
        ));
    }
}
