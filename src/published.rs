//! What the running daemon publishes about itself, for the commands that are separate
//! processes: `forksafe check` (which knobs are contested) and `forksafe reload` (did the
//! reload it asked for load?). One small JSON file, `/run/forksafe/state.json` under the
//! root (the unit's `RuntimeDirectory=`): its format and its readers are here, its writer
//! is the daemon's publisher. Removed when the daemon stops; a file whose daemon is gone
//! is ignored. It also says which daemon wrote it ([`Identity`]: its root, its mode, its pid
//! namespace and start time), so `forksafe doctor` counts only the daemon that holds its
//! root.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::os::fsread;
use crate::os::proc;
use crate::os::root::Root;

/// Where the state lives, relative to the root.
pub(crate) const PATH: &str = "/run/forksafe/state.json";

/// A knob someone keeps setting back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Contested {
    /// The knob's name.
    pub(crate) knob: String,
    /// Repairs since the fight started.
    pub(crate) repairs: u64,
    /// The wrong values seen (bounded).
    pub(crate) values: Vec<String>,
    /// Where the wrong value likely comes from (file and line, unit, cron entry), if known.
    pub(crate) source: Option<String>,
}

/// Which daemon this is, and what it holds: for `forksafe doctor`, which counts a daemon
/// only when it holds doctor's root with doctor's config, and reads that daemon's mode.
/// Each field is absent in a state written by an older daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Identity {
    /// Its root, as it sees it (canonical).
    #[serde(default)]
    pub(crate) root: Option<PathBuf>,
    /// Repair mode (true) or audit mode (false).
    #[serde(default)]
    pub(crate) repair: Option<bool>,
    /// The inode of its pid namespace (`/proc/self/ns/pid`): with `pid`, which process it is
    /// in a `/proc` that shows other namespaces (a daemon in a container is pid 1 there).
    #[serde(default)]
    pub(crate) pid_namespace: Option<u64>,
    /// When it started, clock ticks after boot (`/proc/self/stat`): a pid reused by
    /// another process is not it.
    #[serde(default)]
    pub(crate) start_time: Option<u64>,
}

impl Identity {
    /// This process's, running `settings` against `root`.
    pub(crate) fn of(root: &Root, settings: &Settings) -> Identity {
        Identity {
            root: Some(
                root.dir()
                    .canonicalize()
                    .unwrap_or_else(|_| root.dir().to_path_buf()),
            ),
            repair: Some(settings.repair),
            pid_namespace: proc::own_namespace("pid"),
            start_time: proc::start_time(&Root::new("/"), std::process::id()),
        }
    }
}

/// The daemon's published state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct State {
    /// The daemon's pid (in its own pid namespace).
    pub(crate) pid: u32,
    /// The config file its settings came from; `None`: the compiled-in default.
    pub(crate) config_file: Option<PathBuf>,
    /// How many reloads (SIGHUP) it has handled.
    pub(crate) reloads: u64,
    /// Why the last reload was refused; `None` when it loaded (or none happened).
    pub(crate) reload_error: Option<String>,
    /// The `STATUS=` line.
    pub(crate) status: String,
    /// Knobs in a fight.
    pub(crate) contested: Vec<Contested>,
    /// Which daemon this is, and what it holds.
    #[serde(flatten)]
    pub(crate) identity: Identity,
}

fn path(root: &Root) -> Option<PathBuf> {
    root.join(PATH)
}

/// The file's content for `state`.
pub(crate) fn render(state: &State) -> String {
    let text = serde_json::to_string(state).unwrap_or_default();
    format!("{text}\n")
}

/// Remove the state (the daemon stops).
pub(crate) fn remove(root: &Root) {
    if let Some(p) = path(root) {
        let _ = std::fs::remove_file(p);
    }
}

/// The state file under `root`, whether its daemon still runs or not (doctor judges that
/// itself, through the root's `/proc`).
pub(crate) fn read_file(root: &Root) -> Option<State> {
    let bytes = root.read(PATH, fsread::CONFIG_LIMIT).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The state of the daemon running against `root`, if one is.
pub(crate) fn read(root: &Root) -> Option<State> {
    let state = read_file(root)?;
    // A file whose daemon is gone is not a state: the pid is in the daemon's pid namespace,
    // which is ours.
    proc::is_forksafe(&Root::new("/"), state.pid).then_some(state)
}
