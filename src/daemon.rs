//! The daemon (`forksafe run`): a thin shell of timers, signals and inotify around
//! [`enforce::step`]. Enforce, then `READY=1`; repair a knob the moment a write to its file
//! raises an inotify event, and re-read every knob every interval anyway (a write through
//! another mount of procfs or sysfs raises no event here, and a procfs inode can be dropped
//! and looked up again, ending a watch); SIGHUP reloads (a bad config keeps the running
//! one); SIGTERM/SIGINT stop. Steady state is silent: a knob is logged when its state
//! changes, never once per tick.

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::atomic;
use crate::config::Settings;
use crate::enforce::{self, DropinReport, KnobReport, Status, Stuck};
use crate::fight::{self, Contest, Talk};
use crate::knob::{Kind, Knob};
use crate::legacy;
use crate::metrics::{self, Counters};
use crate::report::{Event, EventKind, Notifier};
use crate::root::Root;
use crate::state;
use crate::sysctl_d::{self, DropinState};

/// How often the safety net runs even without an inotify event: sysctl.d is re-read (a
/// directory that did not exist when the watches were set, an edit of /etc/sysctl.conf, a
/// missed event), every knob's file is opened again and its watch re-armed (a procfs inode
/// that was dropped and looked up again no longer raises events on ours), and the scan for
/// what else sets the knobs is refreshed. It costs more than many ticks, so once a minute.
const RESCAN: Duration = Duration::from_secs(60);

/// At most one event-driven repair of a knob this often: a neighbour writing in a tight
/// loop cannot drive forksafe's CPU. A write seen sooner is repaired when the gap is over.
const EVENT_REPAIR_GAP: Duration = Duration::from_millis(100);

/// After an event-driven read that found the knob right (our own write raises an event
/// too), the next event-driven read waits at least this long.
const EVENT_READ_GAP: Duration = Duration::from_millis(10);

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

/// Everything the daemon keeps about one knob between passes.
struct Memory {
    id: (Kind, PathBuf, String),
    seen: Seen,
    status: Status,
    counters: Counters,
    contest: Contest,
    /// A write that read back another value: not repeated while the knob reads that.
    stuck: Option<Stuck>,
    /// The inotify watch on the knob's file.
    wd: Option<WatchDescriptor>,
    /// No event-driven check before this time.
    gate: Instant,
    /// An event arrived before `gate`: check the knob when the gate opens.
    pending: bool,
}

fn knob_id(k: &Knob) -> (Kind, PathBuf, String) {
    (k.kind(), k.rel().to_path_buf(), k.desired().to_string())
}

/// The daemon's state between passes.
struct Daemon {
    root: Root,
    config: Option<PathBuf>,
    settings: Settings,
    memory: Vec<Memory>,
    repairs: u64,
    notifier: Notifier,
    /// Each sysctl knob's boot judgement as of the last sysctl.d read.
    boots: enforce::Boots,
    /// Each knob's file, resolved once (again after a failure, a reload, a rescan).
    paths: enforce::Paths,
    /// What was last said about the drop-in, so it is said once per change.
    dropin_said: String,
    /// What was last said about each sysctl knob's boot value, by knob name.
    boot_said: Vec<(String, String)>,
    /// What was last said about sysctl.d entries that are not files.
    skipped_said: Vec<String>,
    watch: Watch,
    /// The metrics file as last written, and the last error writing it (said once).
    metrics_written: String,
    metrics_error: String,
    /// The published state as last written, and the last error writing it (said once).
    state_written: Option<state::State>,
    state_error: String,
    reloads: u64,
    reload_error: Option<String>,
    /// What else on this machine sets the knobs (rc.local, units, cron, tuned, ...), for
    /// the SOURCE of repair and fight entries; refreshed at most once per RESCAN.
    sources: legacy::Sources,
}

impl Daemon {
    fn new(root: Root, config: Option<PathBuf>, settings: Settings) -> Daemon {
        let memory = fresh_memory(&settings, &[], None);
        let paths = enforce::resolve(&root, &settings);
        // Scanned right after READY=1: what else sets the knobs is for the log, not for
        // the units waiting on us.
        let sources = legacy::Sources::default();
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
            boot_said: Vec::new(),
            skipped_said: Vec::new(),
            watch: Watch::new(),
            metrics_written: String::new(),
            metrics_error: String::new(),
            state_written: None,
            state_error: String::new(),
            reloads: 0,
            reload_error: None,
            sources,
        }
    }

    /// Keep the drop-in and say what the next boot will do. Runs at start, on reload, on
    /// inotify events in the sysctl.d directories and every RESCAN.
    fn sysctl_d(&mut self) {
        let survey = enforce::survey(&self.root, &self.settings, self.settings.repair);
        if let Some(r) = &survey.dropin {
            self.say_dropin(r);
        }
        self.boots = survey.boots;
        self.say_boots();
        let skipped: Vec<String> = survey
            .table
            .skipped
            .iter()
            .map(|s| format!("{} is {}", s.file.display(), s.why))
            .collect();
        for (s, line) in survey.table.skipped.iter().zip(&skipped) {
            if !self.skipped_said.contains(line) {
                Event::new(EventKind::BootOverride, format!("sysctl.d: {line}"))
                    .field("FILE", s.file.display())
                    .emit();
            }
        }
        self.skipped_said = skipped;
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
        let (kind, said, message) = match (&r.wrote, r.problem(!self.settings.repair)) {
            (Some(Ok(created)), _) => {
                let what = match (&r.before, self.dropin_said.is_empty()) {
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
                self.dropin_said = "ok".into();
                return;
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

    /// Say, once per change, which sysctl knob the next boot will not keep, and why.
    fn say_boots(&mut self) {
        let mut now = Vec::new();
        for (k, boot) in self.settings.knobs.iter().zip(&self.boots) {
            let Some(boot) = boot else { continue };
            let text = if boot.right && boot.overrides.is_empty() {
                String::new()
            } else if boot.overrides.is_empty() {
                boot.explain()
            } else {
                let list: Vec<String> = boot.overrides.iter().map(|a| a.to_string()).collect();
                list.join("; ")
            };
            let before = self
                .boot_said
                .iter()
                .find(|(n, _)| n == k.name())
                .map_or("", |(_, t)| t.as_str());
            if text != before {
                if text.is_empty() {
                    Event::new(
                        EventKind::BackInSpec,
                        format!("{}: the next boot keeps {} again", k.name(), k.desired()),
                    )
                    .field("KNOB", k.name())
                    .field("EXPECTED", k.desired())
                    .emit();
                } else {
                    let last = boot.overrides.last().or(boot.value.as_ref());
                    let procps = boot
                        .overrides
                        .iter()
                        .any(|a| a.file == Path::new(sysctl_d::SYSCTL_CONF));
                    let mut e = Event::new(
                        EventKind::BootOverride,
                        format!(
                            "{}: the next boot will not keep {}: {text}{}. Remove or change that \
                             line, or let forksafe manage its drop-in (forksafe still sets the \
                             value once it runs)",
                            k.name(),
                            k.desired(),
                            if procps {
                                " (procps `sysctl --system` applies /etc/sysctl.conf last)"
                            } else {
                                ""
                            }
                        ),
                    )
                    .field("KNOB", k.name())
                    .field("EXPECTED", k.desired());
                    if let Some(a) = last {
                        e = e
                            .field("OBSERVED", a.value.as_deref().unwrap_or(""))
                            .field("FILE", a.file.display())
                            .field("LINE", a.line);
                    }
                    e.emit();
                }
            }
            now.push((k.name().to_string(), text));
        }
        self.boot_said = now;
    }

    /// One pass over every knob, with its events; then the status, metrics and state.
    fn tick(&mut self) -> String {
        let now = Instant::now();
        for i in 0..self.settings.knobs.len() {
            self.check_knob(i, now);
        }
        self.publish()
    }

    /// Read (and repair) knob `i` now, and take in what that found.
    fn check_knob(&mut self, i: usize, now: Instant) {
        // Borrow the fields apart: the report refers to the knob and its boot judgement
        // while the rest of the daemon's state is updated.
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
        let boot = boots.get(i).and_then(Option::as_ref);
        let r = enforce::step(knob, path, settings.repair, boot, mem.stuck.as_ref());
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
        };
        if absorb(&ctx, mem, &r, now) {
            *repairs += 1;
        }
    }

    /// An inotify event on knob `i`'s file: check it at once, or when its gate opens.
    fn knob_event(&mut self, i: usize, now: Instant) {
        let Some(mem) = self.memory.get_mut(i) else {
            return;
        };
        if now < mem.gate {
            mem.pending = true;
            return;
        }
        mem.pending = false;
        let before = mem.counters.repairs;
        self.check_knob(i, now);
        if let Some(mem) = self.memory.get_mut(i) {
            let gap = if mem.counters.repairs > before {
                EVENT_REPAIR_GAP
            } else {
                EVENT_READ_GAP
            };
            mem.gate = now + gap;
        }
    }

    /// The earliest time a pending knob check is due.
    fn next_pending(&self) -> Option<Instant> {
        self.memory
            .iter()
            .filter(|m| m.pending)
            .map(|m| m.gate)
            .min()
    }

    /// Status line, metrics and published state from what the daemon knows now.
    fn publish(&mut self) -> String {
        let contested = self.memory.iter().filter(|m| m.contest.fighting()).count();
        let statuses: Vec<Status> = self.memory.iter().map(|m| m.status).collect();
        let status = status_line(&statuses, self.repairs, self.settings.repair, contested);
        // An idle tick changes nothing: say nothing, build nothing.
        let unchanged = self
            .state_written
            .as_ref()
            .is_some_and(|w| w.status == status && w.reloads == self.reloads && contested == 0);
        if unchanged && self.settings.textfile.is_none() {
            return status;
        }
        if self.settings.textfile.is_some() {
            let rows: Vec<(&str, Status, Counters)> = self
                .settings
                .knobs
                .iter()
                .zip(&self.memory)
                .map(|(k, m)| (k.name(), m.status, m.counters))
                .collect();
            self.write_metrics(metrics::render(&rows));
        }
        let published = state::State {
            pid: std::process::id(),
            config_file: match &self.settings.source {
                crate::config::Source::File(p) => Some(p.clone()),
                crate::config::Source::Builtin => None,
            },
            reloads: self.reloads,
            reload_error: self.reload_error.clone(),
            status: status.clone(),
            contested: self
                .settings
                .knobs
                .iter()
                .zip(&self.memory)
                .filter(|(_, m)| m.contest.fighting())
                .map(|(k, m)| state::Contested {
                    knob: k.name().to_string(),
                    repairs: m.contest.repairs(),
                    values: m.contest.values().list().to_vec(),
                    source: self.sources.describe(k),
                })
                .collect(),
        };
        if self.state_written.as_ref() != Some(&published) {
            match state::write(&self.root, &published) {
                Ok(()) => {
                    self.state_written = Some(published);
                    self.state_error.clear();
                }
                Err(e) => {
                    let said = e.to_string();
                    if said != self.state_error {
                        log::warn!("state for `forksafe check` and `forksafe reload`: {said}");
                        self.state_error = said;
                    }
                }
            }
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
        match atomic::write(&self.root, &path, &content, atomic::Durability::Runtime) {
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

    /// Open every knob's file again and re-arm its watch.
    fn resolve_all(&mut self) {
        self.paths = enforce::resolve(&self.root, &self.settings);
        for (mem, path) in self.memory.iter_mut().zip(&self.paths) {
            mem.wd = self.watch.watch_knob(path.as_ref().ok(), mem.wd.take());
        }
    }

    fn reload(&mut self) {
        self.notifier.reloading();
        self.reloads += 1;
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
                self.reload_error = None;
                for m in &mut self.memory {
                    self.watch.unwatch(m.wd.take());
                }
                self.memory = fresh_memory(&new, &self.memory, Some(self.settings.interval));
                self.settings = new;
                self.resolve_all();
                self.sources = legacy::Sources::scan(&self.root, &self.settings);
                self.sysctl_d();
            }
            Err(e) => {
                self.reload_error = Some(e.to_string());
                Event::config_rejected(&e).emit();
            }
        }
        let status = self.tick();
        self.notifier.ready(&status);
    }
}

/// What taking in a step's result needs besides the knob's own memory.
struct Context<'a> {
    root: &'a Root,
    sources: &'a legacy::Sources,
    interval: Duration,
}

/// Take in what one step found for a knob: its events, counters, the fight and the stuck
/// write. Returns whether a repair was made.
fn absorb(ctx: &Context, mem: &mut Memory, r: &KnobReport, now: Instant) -> bool {
    let observed = r.observed.as_deref().unwrap_or("");
    let repaired = matches!(r.repair, Some(Ok(()))) && mem.seen != Seen::Fresh;
    let now_seen = seen_after(r);
    mem.stuck = match (&mem.stuck, Stuck::after(r)) {
        (_, Some(new)) => Some(new),
        (Some(old), None) if r.observed.as_deref() == Ok(old.value.as_str()) => Some(old.clone()),
        _ => None,
    };
    let fighting = mem.contest.fighting();
    // While a fight is on, the knob's own repair lines are silent: the fight's say it.
    if !(fighting && (repaired || now_seen == Seen::Ok)) {
        if let Some(event) = event_for(r, &mem.seen, &now_seen) {
            let event = if repaired {
                ctx.sources.annotate(event, r.knob)
            } else {
                event
            };
            event.emit();
        }
    }
    let status = r.status();
    if repaired {
        mem.counters.repairs += 1;
        mem.counters.last_repair = Some(SystemTime::now());
        if let Some(talk) = mem.contest.repaired(now, observed) {
            fight_talk(ctx.root, ctx.sources, r.knob, &talk, ctx.interval);
        }
    } else if status == Status::Drift {
        mem.contest.wrong(observed);
    } else if status.in_spec_now() {
        if let Some(ended) = mem.contest.in_spec(now) {
            Event::new(
                EventKind::BackInSpec,
                format!(
                    "{}: no longer contested after {} repairs in {:?}",
                    r.knob.name(),
                    ended.repairs,
                    Duration::from_secs(ended.lasted.as_secs())
                ),
            )
            .field("KNOB", r.knob.name())
            .field("EXPECTED", r.knob.desired())
            .field("COUNT", ended.repairs)
            .emit();
        }
    }
    mem.seen = now_seen;
    mem.status = status;
    repaired
}

/// Memory for `settings`' knobs, keeping what was known about knobs that did not change.
fn fresh_memory(
    settings: &Settings,
    old: &[Memory],
    old_interval: Option<Duration>,
) -> Vec<Memory> {
    let now = Instant::now();
    settings
        .knobs
        .iter()
        .map(|k| {
            let id = knob_id(k);
            let kept = old.iter().find(|m| m.id == id);
            let (seen, counters, status) = kept
                .map_or((Seen::Fresh, Counters::default(), Status::Error), |m| {
                    (m.seen.clone(), m.counters, m.status)
                });
            // A reload keeps a fight going (same knob and value, same interval).
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
                wd: None,
                gate: now,
                pending: false,
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

/// The event (if any) that a step's result for one knob deserves, given what was last said
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

/// Say what a fight's start or its summary deserves, naming who might be doing it.
fn fight_talk(
    root: &Root,
    sources: &legacy::Sources,
    knob: &Knob,
    talk: &Talk,
    interval: Duration,
) {
    let who = || {
        let culprits = fight::culprits(root);
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
    };
    let event = match talk {
        Talk::Started {
            repairs,
            over,
            values,
        } => Event::new(
            EventKind::FightDetected,
            format!(
                "{}: something keeps setting it back (to {}; {repairs} repairs in {:?}); {}. \
                 forksafe keeps repairing it at once and at least every {interval:?}; its \
                 repairs are summarised every {} minutes from now on, until it stays at {} \
                 for {:?}",
                knob.name(),
                values.describe(),
                Duration::from_secs(over.as_secs()),
                who(),
                fight::SUMMARY_EVERY.as_secs() / 60,
                knob.desired(),
                interval * fight::CALM,
            ),
        )
        .field("COUNT", repairs)
        .field("OBSERVED", values.list().join(",")),
        Talk::Ongoing {
            repairs,
            since_last,
            lasted,
            values,
        } => Event::new(
            EventKind::FightOngoing,
            format!(
                "{}: still contested: repaired {since_last} times in the last {} minutes \
                 ({repairs} in {:?}; set to {}); {}",
                knob.name(),
                fight::SUMMARY_EVERY.as_secs() / 60,
                Duration::from_secs(lasted.as_secs()),
                values.describe(),
                who(),
            ),
        )
        .field("COUNT", repairs)
        .field("OBSERVED", values.list().join(",")),
    };
    sources
        .annotate(event, knob)
        .field("KNOB", knob.name())
        .field("EXPECTED", knob.desired())
        .emit();
}

/// The `STATUS=` line: short, and the same from tick to tick while nothing changes.
fn status_line(statuses: &[Status], repairs: u64, repair_mode: bool, contested: usize) -> String {
    let total = statuses.len();
    let count = |s: Status| statuses.iter().filter(|r| **r == s).count();
    let ok = count(Status::Ok) + count(Status::BootDrift);
    // (a knob not kept at the next boot is in spec now; the suffix says the rest)
    let mut line = if ok == total {
        format!("{total} knobs in spec")
    } else {
        format!("{ok} of {total} knobs in spec")
    };
    for (s, what) in [
        (Status::BootDrift, "not kept at the next boot"),
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
        line.push_str(&format!(", {repairs} repairs since start"));
    } else {
        line.push_str(" (audit mode)");
    }
    line
}

/// What an inotify wake-up was about.
#[derive(Default)]
struct Changes {
    /// A sysctl.d directory changed (or events were lost).
    sysctl_d: bool,
    /// Knobs whose file was written to (indexes into the settings' knobs).
    knobs: Vec<usize>,
    /// Events were lost: check every knob.
    overflow: bool,
}

/// inotify watches on the sysctl.d directories that exist and on every knob's file.
struct Watch {
    inotify: Option<Inotify>,
    /// The directories watched, as named under the root and as resolved.
    dirs: Vec<(PathBuf, PathBuf, WatchDescriptor)>,
    /// Where the host's procfs and sysfs are bound (`--watch-via`), and the root they
    /// mirror: an inotify mark is per file-system instance, and a sandbox with instances of
    /// its own sees no event when someone else writes.
    via: Option<(PathBuf, PathBuf)>,
}

impl Watch {
    fn new() -> Watch {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| {
                log::warn!(
                    "inotify unavailable ({e}): drift is found by the poll every interval, and \
                     sysctl.d is re-read every {RESCAN:?}"
                )
            })
            .ok();
        Watch {
            inotify,
            dirs: Vec::new(),
            via: None,
        }
    }

    /// The path to watch for a knob file: its mirror under `--watch-via` when there is
    /// one, else the file itself.
    fn watch_path(&self, real: &Path) -> PathBuf {
        if let Some((via, root)) = &self.via {
            if let Ok(rel) = real.strip_prefix(root) {
                let mirror = via.join(rel);
                if mirror.exists() {
                    return mirror;
                }
            }
        }
        real.to_path_buf()
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
            if self.dirs.iter().any(|(n, _, _)| *n == named) {
                continue;
            }
            // Two names for one directory (merged /usr) get one watch.
            let Ok(real) = named.canonicalize() else {
                continue;
            };
            if let Some((_, _, wd)) = self.dirs.iter().find(|(_, r, _)| *r == real) {
                let wd = *wd;
                self.dirs.push((named, real, wd));
            } else if let Ok(wd) = ino.add_watch(&real, flags) {
                self.dirs.push((named, real, wd));
            }
        }
    }

    /// Watch a knob's (resolved) file for writes; drop the previous watch if it was on
    /// another inode. Returns the watch, `None` when there is none.
    fn watch_knob(
        &mut self,
        at: Option<&crate::knob::Resolved>,
        old: Option<WatchDescriptor>,
    ) -> Option<WatchDescriptor> {
        let ino = self.inotify.as_ref()?;
        let path = at.map(|at| self.watch_path(at.real()));
        let new = path.and_then(|p| ino.add_watch(&p, AddWatchFlags::IN_MODIFY).ok());
        if old.is_some() && old != new {
            self.unwatch(old);
        }
        new
    }

    fn unwatch(&mut self, wd: Option<WatchDescriptor>) {
        if let (Some(ino), Some(wd)) = (&self.inotify, wd) {
            let _ = ino.rm_watch(wd);
        }
    }

    /// Drain pending events and sort them out.
    fn drain(&mut self, knob_wds: &[Option<WatchDescriptor>]) -> Changes {
        let mut changes = Changes::default();
        let Some(ino) = &self.inotify else {
            return changes;
        };
        while let Ok(events) = ino.read_events() {
            if events.is_empty() {
                break;
            }
            for e in events {
                if e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    changes.overflow = true;
                    changes.sysctl_d = true;
                    continue;
                }
                if let Some(i) = knob_wds.iter().position(|w| *w == Some(e.wd)) {
                    if e.mask.contains(AddWatchFlags::IN_MODIFY) && !changes.knobs.contains(&i) {
                        changes.knobs.push(i);
                    }
                    continue;
                }
                if self.dirs.iter().any(|(_, _, wd)| *wd == e.wd) {
                    changes.sysctl_d = true;
                    if e.mask.contains(AddWatchFlags::IN_IGNORED) {
                        // A watched directory went away: re-add what exists.
                        self.dirs.clear();
                    }
                }
            }
        }
        changes
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
/// caller; `config` is what to reload from; `watch_via` where the host's procfs and sysfs
/// are bound for inotify. Stopping leaves every value as it is.
pub fn run(
    root: Root,
    config: Option<&Path>,
    settings: Settings,
    watch_via: Option<PathBuf>,
) -> io::Result<()> {
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
    if let Some(via) = watch_via {
        let real_root = d
            .root
            .dir()
            .canonicalize()
            .unwrap_or_else(|_| d.root.dir().to_path_buf());
        d.watch.via = Some((via, real_root));
    }
    d.resolve_all();
    d.sysctl_d();
    let status = d.tick();
    d.notifier.ready(&status);
    d.sources.refresh(&d.root, &d.settings);
    let mut next_rescan = Instant::now() + RESCAN;

    let watchdog = sd_notify::watchdog_enabled().map(|t| t / 2);
    let now = Instant::now();
    let mut next_tick = now + d.settings.interval;
    let mut next_ping = watchdog.map(|p| now + p);
    if watchdog.is_some() {
        d.notifier.watchdog();
    }

    loop {
        let now = Instant::now();
        let mut deadline = next_tick.min(next_rescan);
        for at in [next_ping, d.next_pending()].into_iter().flatten() {
            deadline = deadline.min(at);
        }
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
        let changes = if watched {
            let wds: Vec<Option<WatchDescriptor>> = d.memory.iter().map(|m| m.wd).collect();
            d.watch.drain(&wds)
        } else {
            Changes::default()
        };

        if signals.term.swap(false, Ordering::SeqCst) {
            d.notifier.stopping();
            state::remove(&d.root);
            log::info!("stopping on signal; every value stays as it is");
            return Ok(());
        }
        if signals.hup.swap(false, Ordering::SeqCst) {
            d.reload();
            next_tick = Instant::now() + d.settings.interval;
        }
        let now = Instant::now();
        // Writes to knob files: repair at once (within each knob's gate).
        for i in changes.knobs {
            d.knob_event(i, now);
        }
        let due: Vec<usize> = (0..d.memory.len())
            .filter(|&i| d.memory.get(i).is_some_and(|m| m.pending && m.gate <= now))
            .collect();
        for i in due {
            d.knob_event(i, now);
        }
        if changes.sysctl_d || now >= next_rescan {
            d.sysctl_d();
            if now >= next_rescan {
                // The safety net: open every knob's file again, re-arm its watch, and look
                // again for what else sets the knobs.
                d.resolve_all();
                d.sources.refresh(&d.root, &d.settings);
                // A knob left alone because every write read back the same other value
                // is written again: a writer that won three races in a row and then
                // stopped must not keep it wrong. The kernel's own answer costs a few
                // writes a minute and no log line (it is the same error).
                for mem in &mut d.memory {
                    mem.stuck = None;
                }
                next_rescan = now + RESCAN;
            }
        }
        if now >= next_tick || changes.overflow {
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
