//! The daemon (`forksafe run`): a thin shell of timers and signals around
//! [`enforce::pass`]. Enforce, then `READY=1`; re-read every interval and repair; SIGHUP
//! reloads (a bad config keeps the running one); SIGTERM/SIGINT stop. Steady state is
//! silent: a knob is logged when its state changes, never once per tick.

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::atomic;
use crate::config::Settings;
use crate::enforce::{self, DropinReport, KnobReport, Status};
use crate::fight::{self, Contest};
use crate::knob::{Kind, Knob};
use crate::metrics::{self, Counters};
use crate::report::{Event, EventKind, Notifier};
use crate::root::Root;
use crate::sysctl_d::{self, DropinState, Table};

/// How often sysctl.d is re-read even without an inotify event (a directory that did not
/// exist when the watches were set, an edit of /etc/sysctl.conf, a missed event), and knobs
/// that could not be opened are looked for again. inotify reports changes at once; this is
/// only the safety net, and it costs more than many ticks, so it runs once a minute.
const SYSCTL_D_RECHECK: Duration = Duration::from_secs(60);

/// What the daemon last reported about a knob, so it speaks only on change.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// Not reported yet (start, or new after a reload).
    Fresh,
    Ok,
    Absent,
    Failed(String),
    Drifting(String),
}

struct Memory {
    id: (Kind, PathBuf, String),
    seen: Seen,
    counters: Counters,
    contest: Contest,
}

fn knob_id(k: &Knob) -> (Kind, PathBuf, String) {
    (k.kind(), k.rel().to_path_buf(), k.desired().to_string())
}

/// The daemon's state between ticks.
struct Daemon {
    root: Root,
    config: Option<PathBuf>,
    settings: Settings,
    memory: Vec<Memory>,
    repairs: u64,
    notifier: Notifier,
    /// Each sysctl knob's boot value as of the last sysctl.d read (empty when the drop-in
    /// is not managed).
    boots: enforce::Boots,
    /// Each knob's file, resolved once (again after a failure, a reload, a recheck).
    paths: enforce::Paths,
    /// What was last said about the drop-in, so it is said once per change.
    dropin_said: String,
    /// The overrides last reported, per sysctl knob name.
    overrides_said: Vec<(String, String)>,
    watch: Watch,
    /// The metrics file as last written, and the last error writing it (said once).
    metrics_written: String,
    metrics_error: String,
}

impl Daemon {
    fn new(root: Root, config: Option<PathBuf>, settings: Settings) -> Daemon {
        let memory = fresh_memory(&settings, &[], None);
        let paths = enforce::resolve(&root, &settings);
        Daemon {
            paths,
            root,
            config,
            settings,
            memory,
            repairs: 0,
            notifier: Notifier::default(),
            boots: Vec::new(),
            dropin_said: String::new(),
            overrides_said: Vec::new(),
            watch: Watch::new(),
            metrics_written: String::new(),
            metrics_error: String::new(),
        }
    }

    /// Keep the drop-in and say what the next boot will do. Runs at start, on reload, on
    /// inotify events in the sysctl.d directories and every SYSCTL_D_RECHECK.
    fn sysctl_d(&mut self) {
        let report = enforce::persist(&self.root, &self.settings, self.settings.repair);
        if let Some(r) = &report {
            self.say_dropin(r);
        }
        self.boots = match report {
            Some(_) => enforce::boots(&self.settings, &Table::read(&self.root)),
            None => Vec::new(),
        };
        self.say_overrides();
        // Directories may have appeared (we may have created /etc/sysctl.d).
        self.watch.add_dirs(&self.root);
    }

    fn say_dropin(&mut self, r: &DropinReport) {
        let file = r.file.display().to_string();
        let knobs: Vec<&str> = self
            .settings
            .knobs
            .iter()
            .filter(|k| k.kind() == Kind::Sysctl)
            .map(Knob::name)
            .collect();
        let knobs = knobs.join(",");
        let (kind, said, message) = match (&r.before, &r.wrote) {
            (_, Some(Ok(created))) => {
                let what = match (&r.before, self.dropin_said.is_empty()) {
                    (DropinState::Missing, true) => "written".to_string(),
                    (DropinState::Missing, false) => "was deleted; rewritten".to_string(),
                    (_, true) => "was out of date; rewritten".to_string(),
                    (_, false) => "was changed; rewritten".to_string(),
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
            (_, Some(Err(e))) => (
                EventKind::RepairFailed,
                format!("failed {e}"),
                e.to_string(),
            ),
            (DropinState::Current, None) => {
                self.dropin_said = "ok".into();
                return;
            }
            (DropinState::Foreign, None) => (
                EventKind::DropinForeign,
                "foreign".into(),
                format!(
                    "{file} exists without forksafe's header; it is not ours and is left alone. \
                     Move it away (forksafe then writes its own), or point [sysctl_d] file elsewhere"
                ),
            ),
            (DropinState::Symlink, None) => (
                EventKind::DropinForeign,
                "symlink".into(),
                format!("{file} is a symlink; forksafe never writes through one. Remove it"),
            ),
            (DropinState::Unreadable(e), None) => (
                EventKind::RepairFailed,
                format!("unreadable {e}"),
                format!("cannot read {file}: {e}"),
            ),
            (DropinState::Missing | DropinState::Outdated, None) => (
                EventKind::DriftDetected,
                format!("audit {}", r.before.as_str()),
                format!("{file} is {} (audit mode: not written)", r.before.as_str()),
            ),
        };
        if said == self.dropin_said && kind != EventKind::DropinWritten {
            return;
        }
        self.dropin_said = said;
        Event::new(kind, message)
            .field("FILE", &file)
            .field("KNOB", knobs)
            .errno(match &r.wrote {
                Some(Err(e)) => e.err.raw_os_error(),
                _ => None,
            })
            .emit();
    }

    fn say_overrides(&mut self) {
        let mut now = Vec::new();
        for (k, boot) in self.settings.knobs.iter().zip(&self.boots) {
            let Some(boot) = boot else { continue };
            let overrides = &boot.overrides;
            let text: Vec<String> = overrides.iter().map(|a| a.to_string()).collect();
            let text = text.join("; ");
            let before = self
                .overrides_said
                .iter()
                .find(|(n, _)| n == k.name())
                .map_or("", |(_, t)| t.as_str());
            if text != before {
                match overrides.last() {
                    Some(last) => Event::new(
                        EventKind::BootOverride,
                        format!(
                            "{}: the next boot will not keep {}: {text}{}. Remove or change that \
                             line (forksafe still sets the value once it runs)",
                            k.name(),
                            k.desired(),
                            if last.file == std::path::Path::new(sysctl_d::SYSCTL_CONF) {
                                " (procps `sysctl --system` applies /etc/sysctl.conf last)"
                            } else {
                                ""
                            }
                        ),
                    )
                    .field("KNOB", k.name())
                    .field("EXPECTED", k.desired())
                    .field("OBSERVED", last.value.as_deref().unwrap_or(""))
                    .field("FILE", last.file.display())
                    .field("LINE", last.line)
                    .emit(),
                    None => Event::new(
                        EventKind::BackInSpec,
                        format!(
                            "{}: no sysctl.d file overrides {} any more",
                            k.name(),
                            k.desired()
                        ),
                    )
                    .field("KNOB", k.name())
                    .field("EXPECTED", k.desired())
                    .emit(),
                }
            }
            now.push((k.name().to_string(), text));
        }
        self.overrides_said = now;
    }

    /// One pass over every knob, with its events. Returns the status line.
    fn tick(&mut self) -> String {
        let now = Instant::now();
        let held: Vec<bool> = self
            .memory
            .iter()
            .map(|m| !m.contest.may_repair(now))
            .collect();
        let reports = enforce::pass(
            &self.settings,
            &self.paths,
            self.settings.repair,
            &self.boots,
            &held,
        );
        for ((r, mem), path) in reports
            .iter()
            .zip(self.memory.iter_mut())
            .zip(self.paths.iter_mut())
        {
            // An open file that failed: find it again once (it may have been replaced).
            // A knob that cannot be found is looked for again at the periodic recheck.
            if r.observed.is_err() && path.is_ok() {
                *path = r.knob.resolve(&self.root);
            }
            let observed = r.observed.as_deref().unwrap_or("");
            let repaired = matches!(r.repair, Some(Ok(()))) && mem.seen != Seen::Fresh;
            let now_seen = seen_after(r);
            // While a fight is on, the knob's own events are silent: one line said it all.
            if !mem.contest.fighting() {
                if let Some(event) = event_for(r, &mem.seen, &now_seen) {
                    event.emit();
                }
            }
            if repaired {
                self.repairs += 1;
                mem.counters.repairs += 1;
                mem.counters.last_repair = Some(std::time::SystemTime::now());
                if let Some(started) = mem.contest.repaired(now, observed) {
                    fight_started(&self.root, r.knob, &started, self.settings.interval);
                }
            } else if r.status() == Status::Drift && r.repair.is_none() {
                mem.contest.held(observed);
            } else if matches!(r.status(), Status::Ok | Status::BootDrift) {
                if let Some(ended) = mem.contest.in_spec(now) {
                    Event::new(
                        EventKind::BackInSpec,
                        format!(
                            "{}: no longer contested after {} repairs in {:?}; back to the normal interval",
                            r.knob.name(),
                            ended.repairs,
                            Duration::from_secs(ended.lasted.as_secs())
                        ),
                    )
                    .field("KNOB", r.knob.name())
                    .field("EXPECTED", r.knob.desired())
                    .emit();
                }
            }
            mem.seen = now_seen;
        }
        let metrics = self.settings.textfile.as_ref().map(|_| {
            let counters: Vec<Counters> = self.memory.iter().map(|m| m.counters).collect();
            metrics::render(&reports, &counters)
        });
        let contested = self.memory.iter().filter(|m| m.contest.fighting()).count();
        let status = status_line(&reports, self.repairs, self.settings.repair, contested);
        drop(reports);
        if let Some(content) = metrics {
            self.write_metrics(content);
        }
        status
    }

    /// Write the metrics file when its content changed; say a failure once.
    fn write_metrics(&mut self, content: String) {
        let Some(path) = self.settings.textfile.clone() else {
            return;
        };
        if content == self.metrics_written {
            return;
        }
        match atomic::write(&self.root, &path, &content) {
            Ok(_) => {
                self.metrics_written = content;
                self.metrics_error.clear();
            }
            Err(e) => {
                let said = e.to_string();
                if said != self.metrics_error {
                    log::warn!("metrics: {said}");
                    self.metrics_error = said;
                }
            }
        }
    }

    fn reload(&mut self) {
        self.notifier.reloading();
        match self.settings.reload(&self.root, self.config.as_deref()) {
            Ok(new) => {
                Event::new(
                    EventKind::ConfigReloaded,
                    format!(
                        "configuration reloaded from {}: {} knobs, interval {:?}, {}",
                        new.source,
                        new.knobs.len(),
                        new.interval,
                        new.mode_name()
                    ),
                )
                .field("CONFIG", &new.source)
                .emit();
                self.memory = fresh_memory(&new, &self.memory, Some(self.settings.interval));
                self.settings = new;
                self.paths = enforce::resolve(&self.root, &self.settings);
                self.sysctl_d();
            }
            Err(e) => {
                Event::new(
                    EventKind::ConfigRejected,
                    format!("configuration rejected, the running one stays in force: {e}"),
                )
                .field("CONFIG", &e.source)
                .field(
                    "CONFIG_LINE",
                    e.line.map_or(String::new(), |l| l.to_string()),
                )
                .emit();
            }
        }
        let status = self.tick();
        self.notifier.ready(&status);
    }
}

/// Memory for `settings`' knobs, keeping what was known about knobs that did not change.
fn fresh_memory(
    settings: &Settings,
    old: &[Memory],
    old_interval: Option<Duration>,
) -> Vec<Memory> {
    settings
        .knobs
        .iter()
        .map(|k| {
            let id = knob_id(k);
            let kept = old.iter().find(|m| m.id == id);
            let (seen, counters) = kept.map_or((Seen::Fresh, Counters::default()), |m| {
                (m.seen.clone(), m.counters)
            });
            // A reload keeps a fight going (same knob and value, same interval).
            let contest = kept
                .filter(|_| old_interval == Some(settings.interval))
                .map_or_else(|| Contest::new(settings.interval), |m| m.contest.clone());
            Memory {
                id,
                seen,
                counters,
                contest,
            }
        })
        .collect()
}

fn seen_after(r: &KnobReport) -> Seen {
    match r.status() {
        Status::Ok | Status::BootDrift => Seen::Ok,
        Status::Absent => Seen::Absent,
        Status::Drift => Seen::Drifting(r.current().unwrap_or("").to_string()),
        Status::Error => Seen::Failed(r.error().map(|e| e.to_string()).unwrap_or_default()),
    }
}

/// The event (if any) that a pass's result for one knob deserves, given what was last said
/// (`seen`) and what holds now (`now`, from [`seen_after`]).
fn event_for(r: &KnobReport, seen: &Seen, now: &Seen) -> Option<Event> {
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
    let event = match (&r.repair, &r.observed) {
        (Some(Ok(())), _) if *seen == Seen::Fresh => base(
            EventKind::Enforced,
            format!("{}: set to {} (was {observed})", k.name(), k.desired()),
        ),
        (Some(Ok(())), _) => base(
            EventKind::Repaired,
            format!(
                "{}: drifted to {observed}, set back to {}",
                k.name(),
                k.desired()
            ),
        ),
        (Some(Err(e)), _) | (None, Err(e)) if e.is_absent() => {
            base(EventKind::KnobAbsent, format!("{}: {e}", k.name())).errno(e.errno())
        }
        (Some(Err(e)), _) | (None, Err(e)) => {
            base(EventKind::RepairFailed, format!("{}: {e}", k.name())).errno(e.errno())
        }
        (None, Ok(v)) if v != k.desired() => base(
            EventKind::DriftDetected,
            format!(
                "{}: is {v}, expected {} (audit mode: not repaired)",
                k.name(),
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

/// Say once that something keeps setting `knob` back, and who might be doing it.
fn fight_started(root: &Root, knob: &Knob, started: &fight::Started, interval: Duration) {
    let culprits = fight::culprits(root);
    let who = if culprits.is_empty() {
        "no known tuner is running (look for a script or a cron job)".to_string()
    } else {
        format!("likely culprits: {}", culprits.join(", "))
    };
    Event::new(
        EventKind::FightDetected,
        format!(
            "{}: something keeps setting it back (to {}; {} repairs in {:?}); {who}. Backing off: this knob is repaired at most every {:?} from now on, until it stays at {} for {:?}",
            knob.name(),
            started.values.join(", "),
            started.repairs,
            Duration::from_secs(started.over.as_secs()),
            interval * fight::CAP,
            knob.desired(),
            interval * fight::CALM,
        ),
    )
    .field("KNOB", knob.name())
    .field("EXPECTED", knob.desired())
    .field("OBSERVED", started.values.join(","))
    .field("COUNT", started.repairs)
    .emit();
}

/// The `STATUS=` line: short, and the same from tick to tick while nothing changes.
fn status_line(
    reports: &[KnobReport],
    repairs: u64,
    repair_mode: bool,
    contested: usize,
) -> String {
    let total = reports.len();
    let count = |s: Status| reports.iter().filter(|r| r.status() == s).count();
    let ok = count(Status::Ok) + count(Status::BootDrift);
    // (a knob overridden at boot is in spec now; the suffix says the rest)
    let mut line = if ok == total {
        format!("{total} knobs in spec")
    } else {
        format!("{ok} of {total} knobs in spec")
    };
    for (s, what) in [
        (Status::BootDrift, "overridden at boot"),
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
        line.push_str(&format!(", {contested} contested (backing off)"));
    }
    if repair_mode {
        line.push_str(&format!(", {repairs} repairs since start"));
    } else {
        line.push_str(" (audit mode)");
    }
    line
}

/// inotify watches on the sysctl.d directories that exist.
struct Watch {
    inotify: Option<Inotify>,
    /// The directories watched, as named under the root and as resolved.
    dirs: Vec<(PathBuf, PathBuf)>,
}

impl Watch {
    fn new() -> Watch {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| {
                log::warn!(
                    "inotify unavailable ({e}); sysctl.d is re-read every {SYSCTL_D_RECHECK:?} only"
                )
            })
            .ok();
        Watch {
            inotify,
            dirs: Vec::new(),
        }
    }

    fn add_dirs(&mut self, root: &Root) {
        let Some(ino) = &self.inotify else { return };
        let flags = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MODIFY
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_ATTRIB
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF
            | AddWatchFlags::IN_ONLYDIR;
        for dir in sysctl_d::DIRS {
            let Some(named) = root.join(dir) else {
                continue;
            };
            if self.dirs.iter().any(|(n, _)| *n == named) {
                continue;
            }
            // Two names for one directory (merged /usr) get one watch.
            let Ok(real) = named.canonicalize() else {
                continue;
            };
            if self.dirs.iter().any(|(_, r)| *r == real) || ino.add_watch(&real, flags).is_ok() {
                self.dirs.push((named, real));
            }
        }
    }

    /// Drain pending events; true when there were any.
    fn drain(&mut self) -> bool {
        let Some(ino) = &self.inotify else {
            return false;
        };
        let mut any = false;
        while let Ok(events) = ino.read_events() {
            if events.is_empty() {
                break;
            }
            any = true;
            if events.iter().any(|e| {
                e.mask
                    .intersects(AddWatchFlags::IN_IGNORED | AddWatchFlags::IN_Q_OVERFLOW)
            }) {
                // A watched directory went away (or events were lost): re-add what exists.
                self.dirs.clear();
            }
        }
        any
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

/// Run the daemon until SIGTERM/SIGINT. `settings` were loaded (and validated) by the
/// caller; `config` is what to reload from.
pub fn run(root: Root, config: Option<&Path>, settings: Settings) -> io::Result<()> {
    // Signals first: a SIGTERM during the first pass must not kill us mid-write.
    let mut signals = Signals::install()?;
    log::info!(
        "starting: {} knobs from {}, interval {:?}, {}",
        settings.knobs.len(),
        settings.source,
        settings.interval,
        settings.mode_name()
    );
    let mut d = Daemon::new(root, config.map(Path::to_path_buf), settings);
    d.sysctl_d();
    let status = d.tick();
    d.notifier.ready(&status);
    let mut next_sysctl_d = Instant::now() + SYSCTL_D_RECHECK;

    let watchdog = sd_notify::watchdog_enabled().map(|t| t / 2);
    let now = Instant::now();
    let mut next_tick = now + d.settings.interval;
    let mut next_ping = watchdog.map(|p| now + p);
    if watchdog.is_some() {
        d.notifier.watchdog();
    }

    loop {
        let now = Instant::now();
        let deadline = next_ping
            .map_or(next_tick, |p| p.min(next_tick))
            .min(next_sysctl_d);
        let wait = deadline.saturating_duration_since(now);
        // Round up so we never spin on a sub-millisecond remainder.
        let ms = wait.as_micros().div_ceil(1000);
        let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
        let mut fds = vec![PollFd::new(signals.wake.as_fd(), PollFlags::POLLIN)];
        if let Some(ino) = &d.watch.inotify {
            fds.push(PollFd::new(ino.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(io::Error::from(e)),
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(PollFd::revents)
                .is_some_and(|r| !r.is_empty())
        };
        let (signalled, watched) = (ready(0), ready(1));
        drop(fds);
        // Only what poll flagged: an idle tick makes no other system call.
        if signalled {
            signals.drain();
        }
        let changed = watched && d.watch.drain();

        if signals.term.swap(false, Ordering::SeqCst) {
            d.notifier.stopping();
            log::info!("stopping on signal");
            return Ok(());
        }
        if signals.hup.swap(false, Ordering::SeqCst) {
            d.reload();
            next_tick = Instant::now() + d.settings.interval;
        }
        let now = Instant::now();
        if changed || now >= next_sysctl_d {
            d.sysctl_d();
            if now >= next_sysctl_d {
                // The safety net also looks again for knobs that could not be found.
                for (k, path) in d.settings.knobs.iter().zip(d.paths.iter_mut()) {
                    if path.is_err() {
                        *path = k.resolve(&d.root);
                    }
                }
                next_sysctl_d = now + SYSCTL_D_RECHECK;
            }
        }
        if now >= next_tick {
            let status = d.tick();
            d.notifier.status(&status);
            next_tick = now + d.settings.interval;
        }
        if let (Some(period), Some(at)) = (watchdog, next_ping) {
            if now >= at {
                d.notifier.watchdog();
                next_ping = Some(now + period);
            }
        }
    }
}
