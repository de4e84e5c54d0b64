//! What the running daemon publishes about itself, for the commands that are separate
//! processes: `forksafe check` (which knobs are contested) and `forksafe reload` (did the
//! reload it asked for load?). One small JSON file, `/run/forksafe/state.json` under the
//! root (the unit's `RuntimeDirectory=`), written atomically when it changes and removed
//! when the daemon stops. A file whose daemon is gone is ignored.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::fsread;
use crate::root::Root;

/// Where the state lives, relative to the root.
pub const PATH: &str = "/run/forksafe/state.json";

/// A knob someone keeps setting back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contested {
    /// The knob's name.
    pub knob: String,
    /// Repairs since the fight started.
    pub repairs: u64,
    /// The wrong values seen (bounded).
    pub values: Vec<String>,
    /// Where the wrong value likely comes from (file and line, unit, cron entry), if known.
    pub source: Option<String>,
}

/// The daemon's published state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The daemon's pid (in its own pid namespace).
    pub pid: u32,
    /// The config file its settings came from; `None`: the compiled-in default.
    pub config_file: Option<PathBuf>,
    /// How many reloads (SIGHUP) it has handled.
    pub reloads: u64,
    /// Why the last reload was refused; `None` when it loaded (or none happened).
    pub reload_error: Option<String>,
    /// The `STATUS=` line.
    pub status: String,
    /// Knobs in a fight.
    pub contested: Vec<Contested>,
}

fn path(root: &Root) -> Option<PathBuf> {
    root.join(PATH)
}

/// Publish `state` (atomically). Errors are the caller's to say once.
pub fn write(root: &Root, state: &State) -> Result<(), atomic::WriteError> {
    let text = serde_json::to_string(state).unwrap_or_default();
    atomic::write(
        root,
        Path::new(PATH),
        &format!("{text}\n"),
        atomic::Durability::Runtime,
    )
    .map(|_| ())
}

/// Remove the state (the daemon stops).
pub fn remove(root: &Root) {
    if let Some(p) = path(root) {
        let _ = std::fs::remove_file(p);
    }
}

/// Whether `pid` is a forksafe process in our pid namespace.
fn alive(pid: u32) -> bool {
    fsread::read_text(Path::new(&format!("/proc/{pid}/comm")), 4096)
        .is_ok_and(|c| c.trim() == "forksafe")
}

/// The state of the daemon running against `root`, if one is.
pub fn read(root: &Root) -> Option<State> {
    let bytes = fsread::read(&path(root)?, fsread::CONFIG_LIMIT).ok()?;
    let state: State = serde_json::from_slice(&bytes).ok()?;
    alive(state.pid).then_some(state)
}
