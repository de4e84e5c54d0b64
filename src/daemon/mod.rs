//! The daemon (`forksafe run`): timers, signals and inotify around [`enforce::step`] and
//! [`enforce::survey`]. Enforce, then `READY=1`; repair a knob the moment a write to its
//! file raises an inotify event, and re-read every knob every interval anyway (a write
//! through another mount of procfs or sysfs raises no event here, and a procfs inode can be
//! dropped and looked up again, ending a watch); survey sysctl.d again when it changes;
//! SIGHUP reloads (a bad config keeps the running one); SIGTERM/SIGINT stop.
//!
//! This file is the loop; what it keeps per knob is in [`memory`], what it says and when in
//! [`say`], its inotify watches in [`watch`], fights in [`fight`], and what it publishes
//! for the other commands in [`publish`].

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::WatchDescriptor;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::config::Settings;
use crate::enforce;
use crate::neighbours::Sources;
use crate::os::report::{Event, EventKind, Memo, Notifier};
use crate::os::root::Root;

mod backoff;
mod fight;
mod looks;
mod memory;
mod publish;
mod say;
mod watch;
mod worker;

use looks::{Looks, Surveyed};
use memory::{Context, Memory};
use publish::{Publisher, Snapshot};
use say::Said;
use watch::{Changes, RESCAN, Watch};

/// The daemon's state between passes.
struct Daemon {
    root: Root,
    /// What `--config` named, to reload from.
    config: Option<PathBuf>,
    settings: Settings,
    /// Per knob, in the settings' order.
    memory: Vec<Memory>,
    repairs: u64,
    notifier: Notifier,
    /// Each sysctl knob's boot judgement as of the last survey.
    boots: enforce::Boots,
    /// Each knob's file, resolved once (again after a failure, a reload, a rescan).
    paths: enforce::Paths,
    /// What was last said about sysctl.d.
    said: Said,
    watch: Watch,
    publisher: Publisher,
    reloads: u64,
    reload_error: Option<String>,
    /// What else on this machine sets the knobs (rc.local, units, cron, tuned, ...), for
    /// the SOURCE of repair and fight entries; refreshed at most once per RESCAN.
    sources: Sources,
    /// What the scan did not read, as last said.
    sources_said: Memo<Option<String>>,
    /// The surveys and scans asked of the worker.
    looks: Looks,
}

impl Daemon {
    fn new(root: Root, config: Option<PathBuf>, settings: Settings) -> Daemon {
        let memory = memory::fresh(&settings, &[], None);
        Daemon {
            // Resolved (and watched) by `resolve_all`, first thing in `run`.
            paths: Vec::new(),
            config,
            settings,
            memory,
            repairs: 0,
            notifier: Notifier::default(),
            boots: Vec::new(),
            said: Said::default(),
            watch: Watch::new(),
            publisher: Publisher::new(),
            reloads: 0,
            reload_error: None,
            // Scanned right after READY=1: what else sets the knobs is for the log, not
            // for the units waiting on us.
            sources: Sources::default(),
            sources_said: Memo::default(),
            looks: Looks::new(),
            root,
        }
    }

    /// Keep the drop-in and judge the next boot, now, on this thread: at start and on
    /// reload, before READY=1.
    fn survey_now(&mut self) {
        let surveyed = self.looks.survey_now(&self.root, &self.settings);
        self.take_survey(surveyed);
    }

    /// The same, asked of the worker: on inotify events in the sysctl.d directories, every
    /// RESCAN, and when a failed drop-in write is due again.
    fn ask_survey(&mut self) {
        if let Some(surveyed) = self.looks.survey(&self.root, &self.settings) {
            self.take_survey(surveyed);
        }
    }

    /// Say what the next boot will do, and keep its judgement for the passes to come.
    fn take_survey(&mut self, s: Surveyed) {
        let settings = &self.settings;
        let dropin = s.looked.dropin.as_ref().filter(|_| s.dropin_news);
        let said = self.said.sysctl_d(
            &settings.knobs,
            !settings.repair,
            dropin,
            &s.looked.boots,
            &s.looked.skipped,
        );
        said.into_iter().for_each(Event::emit);
        self.boots = s.looked.boots;
        // Directories may have appeared (we may have created /etc/sysctl.d).
        self.watch.add_dirs(&self.root);
    }

    /// Scan for what else sets the knobs, in the worker.
    fn ask_sources(&mut self) {
        if let Some(sources) = self.looks.sources(&self.root, &self.settings) {
            self.take_sources(sources);
        }
    }

    fn take_sources(&mut self, sources: Sources) {
        log::debug!(
            "scanned for what else sets the knobs: {} places act while the system runs",
            sources.len()
        );
        if self.sources_said.changed(sources.incomplete.clone()) {
            if let Some(why) = &sources.incomplete {
                log::warn!("the scan for what else sets the knobs is incomplete: {why}");
            }
        }
        self.sources = sources;
    }

    /// What the worker answered.
    fn answers(&mut self) {
        let (surveys, scans) = self.looks.answers(&self.root, &self.settings);
        for s in surveys {
            self.take_survey(s);
        }
        for s in scans {
            self.take_sources(s);
        }
    }

    /// One pass over every knob, with its entries; then the status, metrics and state.
    fn tick(&mut self) -> String {
        self.pass();
        self.publish()
    }

    /// Read (and repair) every knob, with its entries.
    fn pass(&mut self) {
        let now = Instant::now();
        for i in 0..self.settings.knobs.len() {
            self.check_knob(i, now);
        }
    }

    /// Read (and repair) knob `i` now, and take in what that found.
    fn check_knob(&mut self, i: usize, now: Instant) {
        // Borrow the fields apart: the report refers to the knob while the rest of the
        // daemon's state is updated.
        let Daemon {
            root,
            settings,
            memory,
            repairs,
            boots,
            paths,
            watch,
            sources,
            ..
        } = self;
        let (Some(knob), Some(path), Some(mem)) =
            (settings.knobs.get(i), paths.get_mut(i), memory.get_mut(i))
        else {
            return;
        };
        let boot = boots.get(i).cloned().flatten();
        let stuck = mem.stuck(now);
        let r = enforce::step(knob, path, settings.repair, boot, stuck);
        let respected = settings.repair && stuck.is_some_and(|s| s.holds(&r.observed));
        // An open file that failed: find it again once (it may have been replaced). A knob
        // that cannot be found is looked for again at the next rescan.
        if r.observed.is_err() && path.is_ok() {
            *path = knob.resolve(root);
            mem.wd = watch.watch_knob(path.as_ref().ok(), mem.wd.take());
        }
        let ctx = Context {
            root,
            sources,
            interval: settings.interval,
            audit: !settings.repair,
        };
        if memory::absorb(&ctx, mem, &r, respected, now) {
            *repairs += 1;
        }
    }

    /// An inotify event on knob `i`'s file: check it at once, or when its gate opens.
    fn knob_event(&mut self, i: usize, now: Instant) {
        if !self.memory.get_mut(i).is_some_and(|m| m.event(now)) {
            return;
        }
        let before = self.memory.get(i).map(|m| m.counters.repairs);
        self.check_knob(i, now);
        if let Some(mem) = self.memory.get_mut(i) {
            let repaired = Some(mem.counters.repairs) != before;
            mem.checked(now, repaired);
        }
    }

    /// The earliest time a pending knob check is due.
    fn next_pending(&self) -> Option<Instant> {
        self.memory.iter().filter_map(Memory::pending_at).min()
    }

    /// Status line, metrics and published state from what the daemon knows now.
    fn publish(&mut self) -> String {
        let contested = self.memory.iter().filter(|m| m.contest.fighting()).count();
        let statuses: Vec<enforce::Status> = self.memory.iter().map(|m| m.status).collect();
        let status = say::status_line(&statuses, self.repairs, self.settings.repair, contested);
        let snapshot = Snapshot {
            settings: &self.settings,
            memory: &self.memory,
            status: &status,
            reloads: self.reloads,
            reload_error: self.reload_error.as_deref(),
            sources: &self.sources,
        };
        self.publisher.publish(&self.root, &snapshot);
        status
    }

    /// Open every knob's file again and re-arm its watch.
    fn resolve_all(&mut self) {
        self.paths = enforce::resolve(&self.root, &self.settings);
        for (mem, path) in self.memory.iter_mut().zip(&self.paths) {
            mem.wd = self.watch.watch_knob(path.as_ref().ok(), mem.wd.take());
        }
    }

    /// The safety net, once per RESCAN: sysctl.d, every knob's file and watch, and what
    /// else sets the knobs, again.
    fn rescan(&mut self) {
        self.ask_survey();
        self.resolve_all();
        self.ask_sources();
    }

    fn reload(&mut self) {
        self.notifier.reloading();
        self.reloads += 1;
        match self.settings.reload(&self.root, self.config.as_deref()) {
            Ok(new) => {
                Event::new(
                    EventKind::ConfigReloaded,
                    format!(
                        "configuration reloaded from {}: {}",
                        new.source,
                        new.summary()
                    ),
                )
                .field("CONFIG", &new.source)
                .emit();
                self.reload_error = None;
                for m in &mut self.memory {
                    self.watch.unwatch(m.wd.take());
                }
                self.memory = memory::fresh(&new, &self.memory, Some(self.settings.interval));
                self.settings = new;
                self.looks.reloaded();
                self.resolve_all();
                self.survey_now();
                self.ask_sources();
            }
            Err(e) => {
                self.reload_error = Some(e.to_string());
                e.rejected().emit();
            }
        }
        let status = self.tick();
        self.notifier.ready(&status);
    }

    /// What inotify says, when poll flagged it.
    fn changes(&mut self, watched: bool) -> Changes {
        if !watched {
            return Changes::default();
        }
        let wds: Vec<Option<WatchDescriptor>> = self.memory.iter().map(|m| m.wd).collect();
        self.watch.drain(&wds)
    }

    /// Take in a wake-up: knob writes, pending checks, sysctl.d and the timers.
    fn handle(&mut self, changes: Changes, clock: &mut Clock) {
        let now = Instant::now();
        // Writes to knob files: repair at once (within each knob's gate).
        for i in changes.knobs {
            self.knob_event(i, now);
        }
        let due: Vec<usize> = (0..self.memory.len())
            .filter(|&i| self.memory.get(i).is_some_and(|m| m.due(now)))
            .collect();
        for i in due {
            self.knob_event(i, now);
        }
        let retry = self.looks.due().is_some_and(|t| now >= t);
        if now >= clock.next_rescan {
            self.rescan();
            clock.next_rescan = now + RESCAN;
        } else if changes.sysctl_d || retry {
            self.ask_survey();
        }
        if now >= clock.next_tick || changes.overflow {
            let status = self.tick();
            self.notifier.status(&status);
            clock.next_tick = now + self.settings.interval;
        }
        if let (Some(period), Some(at)) = (clock.watchdog, clock.next_ping) {
            if now >= at {
                self.notifier.watchdog();
                clock.next_ping = Some(now + period);
            }
        }
    }
}

/// When the loop's timed work is due.
struct Clock {
    next_tick: Instant,
    next_rescan: Instant,
    /// Half of `WATCHDOG_USEC`, when the service manager asks for pings.
    watchdog: Option<Duration>,
    next_ping: Option<Instant>,
}

impl Clock {
    fn start(interval: Duration) -> Clock {
        let now = Instant::now();
        let watchdog = sd_notify::watchdog_enabled().map(|t| t / 2);
        Clock {
            next_tick: now + interval,
            next_rescan: now + RESCAN,
            watchdog,
            next_ping: watchdog.map(|p| now + p),
        }
    }

    /// How long poll may wait: until the first of the timers and `also` (a pending knob
    /// check, a drop-in retry), rounded up to the millisecond so a sub-millisecond remainder
    /// never spins.
    fn timeout(&self, also: [Option<Instant>; 2]) -> PollTimeout {
        let mut deadline = self.next_tick.min(self.next_rescan);
        for at in [self.next_ping].into_iter().chain(also).flatten() {
            deadline = deadline.min(at);
        }
        let ms = deadline
            .saturating_duration_since(Instant::now())
            .as_micros()
            .div_ceil(1000);
        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
    }
}

/// Signal flags and the self-pipe that wakes `poll` when one arrives.
struct Signals {
    hup: Arc<AtomicBool>,
    term: Arc<AtomicBool>,
    wake: UnixStream,
}

impl Signals {
    fn install() -> io::Result<Signals> {
        let (wake, tx) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        let hup = Arc::new(AtomicBool::new(false));
        let term = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(SIGHUP, Arc::clone(&hup))?;
        signal_hook::low_level::pipe::register(SIGHUP, tx.try_clone()?)?;
        for sig in [SIGTERM, SIGINT] {
            signal_hook::flag::register(sig, Arc::clone(&term))?;
            signal_hook::low_level::pipe::register(sig, tx.try_clone()?)?;
        }
        Ok(Signals { hup, term, wake })
    }

    /// Empty the self-pipe; a burst of signals becomes one wake-up.
    fn drain(&mut self) {
        let mut buf = [0u8; 64];
        while matches!(self.wake.read(&mut buf), Ok(n) if n > 0) {}
    }
}

/// What a wake-up was: a signal, inotify, the worker (each only when poll flagged it).
struct Woke {
    signalled: bool,
    watched: bool,
    answered: bool,
}

/// Wait for a signal, an inotify event, an answer of the worker or the timeout. Only what
/// poll flagged is read: an idle tick makes no other system call.
fn wait(d: &Daemon, signals: &Signals, timeout: PollTimeout) -> io::Result<Woke> {
    let mut fds = vec![PollFd::new(signals.wake.as_fd(), PollFlags::POLLIN)];
    let mut at = [None, None];
    if let Some(ino) = &d.watch.inotify {
        at[0] = Some(fds.len());
        fds.push(PollFd::new(ino.as_fd(), PollFlags::POLLIN));
    }
    if let Some(fd) = d.looks.fd() {
        at[1] = Some(fds.len());
        fds.push(PollFd::new(fd, PollFlags::POLLIN));
    }
    match poll(&mut fds, timeout) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => {}
        Err(e) => return Err(io::Error::from(e)),
    }
    let ready = |i: Option<usize>| {
        i.and_then(|i| fds.get(i))
            .and_then(PollFd::revents)
            .is_some_and(|r| !r.is_empty())
    };
    Ok(Woke {
        signalled: ready(Some(0)),
        watched: ready(at[0]),
        answered: ready(at[1]),
    })
}

/// Run the daemon until SIGTERM/SIGINT. `settings` were loaded (and validated) by the
/// caller; `config` is what to reload from; `watch_via` where the host's procfs and sysfs
/// are bound for inotify. Stopping leaves every value as it is.
pub(crate) fn run(
    root: Root,
    config: Option<&Path>,
    settings: Settings,
    watch_via: Option<PathBuf>,
) -> io::Result<()> {
    // Signals first: a SIGTERM during the first pass must not kill us mid-write.
    let mut signals = Signals::install()?;
    log::info!("starting with {}: {}", settings.source, settings.summary());
    let mut d = Daemon::new(root, config.map(Path::to_path_buf), settings);
    if let Some(via) = watch_via {
        let real_root = d
            .root
            .dir()
            .canonicalize()
            .unwrap_or_else(|_| d.root.dir().to_path_buf());
        d.watch.via = Some((via, real_root));
    }
    // The knobs first; then the drop-in and the next boot; READY=1 once both are known,
    // and the status, metrics and state are published once, with both.
    d.resolve_all();
    d.pass();
    d.survey_now();
    let status = d.tick();
    d.notifier.ready(&status);
    d.ask_sources();
    let mut clock = Clock::start(d.settings.interval);
    if clock.watchdog.is_some() {
        d.notifier.watchdog();
    }
    loop {
        let timeout = clock.timeout([d.next_pending(), d.looks.due()]);
        let woke = wait(&d, &signals, timeout)?;
        if woke.signalled {
            signals.drain();
        }
        if woke.answered {
            d.answers();
        }
        let changes = d.changes(woke.watched);
        if signals.term.swap(false, Ordering::SeqCst) {
            d.notifier.stopping();
            d.publisher.stopped(&d.root, &d.settings);
            log::info!("stopping on signal; every value stays as it is");
            return Ok(());
        }
        if signals.hup.swap(false, Ordering::SeqCst) {
            d.reload();
            clock.next_tick = Instant::now() + d.settings.interval;
        }
        d.handle(changes, &mut clock);
    }
}
