//! What the running daemon publishes about itself, for the commands that are separate
//! processes: `forksafe check` (which knobs are contested) and `forksafe reload` (did the
//! reload it asked for load?). One small JSON file, `/run/forksafe/state.json` under the
//! root (the unit's `RuntimeDirectory=`): its format and its readers are here, its writer
//! is the daemon's publisher. Removed when the daemon stops; a file whose daemon is gone
//! is ignored.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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

/// The state of the daemon running against `root`, if one is.
pub(crate) fn read(root: &Root) -> Option<State> {
    let bytes = root.read(PATH, fsread::CONFIG_LIMIT).ok()?;
    let state: State = serde_json::from_slice(&bytes).ok()?;
    // A file whose daemon is gone is not a state: the pid is in the daemon's pid namespace,
    // which is ours.
    proc::is_forksafe(&Root::new("/"), state.pid).then_some(state)
}
