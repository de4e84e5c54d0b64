//! The drop-in forksafe owns in `/etc/sysctl.d`: what it holds, what is at its path now,
//! and bringing it in line. Managed files look managed: the header names forksafe, and a
//! file at the path without it (or a symlink) is never overwritten.

use std::fs;
use std::path::{Path, PathBuf};

use crate::knob::{Kind, Knob};
use crate::os::atomic::{self, WriteError};
use crate::os::fsread;
use crate::os::root::Root;

/// The first line of every drop-in forksafe writes starts with this.
pub(crate) const HEADER_PREFIX: &str = "# Managed by forksafe";

/// The managed drop-in: its content for these knobs. It depends on the knobs alone, not on
/// which config file named them: `check --config` on a copy of the config, `apply` and the
/// daemon all agree on what the drop-in should hold.
pub(crate) fn render(knobs: &[Knob]) -> String {
    let mut out = format!(
        "{HEADER_PREFIX}: edits are overwritten.\n\
         # Change the [sysctl] section of forksafe's config instead (or set [sysctl_d] manage = false).\n"
    );
    for k in knobs.iter().filter(|k| k.kind() == Kind::Sysctl) {
        out.push_str(&format!("{} = {}\n", k.name(), k.desired()));
    }
    out
}

/// What is at the drop-in's path now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DropinState {
    /// Our header and exactly the content we would write.
    Current,
    /// Nothing there.
    Missing,
    /// Our header, other content (edited, or the config changed).
    Outdated,
    /// A file without our header: not ours, never overwritten.
    Foreign,
    /// A symlink: never followed, never written through.
    Symlink,
    /// Could not be read.
    Unreadable(String),
}

impl DropinState {
    /// The name used in reports and JSON.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            DropinState::Current => "ok",
            DropinState::Missing => "missing",
            DropinState::Outdated => "outdated",
            DropinState::Foreign => "foreign",
            DropinState::Symlink => "symlink",
            DropinState::Unreadable(_) => "unreadable",
        }
    }
}

/// Look at the drop-in at `path` (under `root`) and compare it with `expected`.
pub(crate) fn inspect(root: &Root, path: &Path, expected: &str) -> DropinState {
    // The directory's links are followed inside the root; a link at the path itself is
    // looked at, never followed.
    let real = match (path.parent().map(|d| root.resolve(d)), path.file_name()) {
        (Some(Ok(dir)), Some(name)) => dir.join(name),
        (Some(Err(e)), _) => return DropinState::Unreadable(e.to_string()),
        _ => return DropinState::Unreadable("not a file path".into()),
    };
    match fs::symlink_metadata(&real) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return DropinState::Missing,
        Err(e) => return DropinState::Unreadable(e.to_string()),
        Ok(md) if md.file_type().is_symlink() => return DropinState::Symlink,
        Ok(_) => {}
    }
    match fsread::read(&real, fsread::CONFIG_LIMIT) {
        Ok(bytes) if bytes == expected.as_bytes() => DropinState::Current,
        Ok(bytes) if bytes.starts_with(HEADER_PREFIX.as_bytes()) => DropinState::Outdated,
        Ok(_) => DropinState::Foreign,
        // Not a regular file (a FIFO, a directory): not ours, never replaced.
        Err(fsread::ReadError::NotRegular(_)) => DropinState::Foreign,
        Err(e) => DropinState::Unreadable(e.to_string()),
    }
}

/// The managed drop-in after [`persist`].
#[derive(Debug)]
pub(crate) struct DropinReport {
    /// The drop-in's path (on the system).
    pub(crate) file: PathBuf,
    /// What was there before.
    pub(crate) before: DropinState,
    /// `Some` when it was written: the outcome (Ok(true): its directory was created).
    pub(crate) wrote: Option<Result<bool, WriteError>>,
}

impl DropinReport {
    /// Whether the drop-in now has exactly our content.
    pub(crate) fn is_current(&self) -> bool {
        match &self.wrote {
            Some(r) => r.is_ok(),
            None => self.before == DropinState::Current,
        }
    }

    /// What is wrong with the drop-in now, in words, or `None` when it is current. `audit`:
    /// the caller leaves a missing or outdated drop-in alone on purpose.
    pub(crate) fn problem(&self, audit: bool) -> Option<String> {
        let file = self.file.display();
        let fix = if audit {
            " (audit mode: not written)"
        } else {
            "; `forksafe apply` writes it"
        };
        match (&self.wrote, &self.before) {
            (Some(Err(e)), _) => Some(e.to_string()),
            (Some(Ok(_)), _) | (None, DropinState::Current) => None,
            (None, DropinState::Missing) => Some(format!("{file} is missing{fix}")),
            (None, DropinState::Outdated) => Some(format!("{file} is out of date{fix}")),
            (None, DropinState::Foreign) => Some(format!(
                "{file} exists without forksafe's header: it is not ours and is left alone. \
                 Move it away (forksafe then writes its own), or point [sysctl_d] file elsewhere"
            )),
            (None, DropinState::Symlink) => Some(format!(
                "{file} is a symlink; forksafe never writes through one. Remove it"
            )),
            (None, DropinState::Unreadable(e)) => Some(format!("cannot read {file}: {e}")),
        }
    }
}

/// Bring the drop-in at `file` in line with `knobs` (when `write`), or only look at it. A
/// file without our header, or a symlink, is never written.
pub(crate) fn persist(root: &Root, file: &Path, knobs: &[Knob], write: bool) -> DropinReport {
    let content = render(knobs);
    let before = inspect(root, file, &content);
    let ours = matches!(before, DropinState::Missing | DropinState::Outdated);
    let wrote =
        (write && ours).then(|| atomic::write(root, file, &content, atomic::Durability::Boot));
    DropinReport {
        file: file.to_path_buf(),
        before,
        wrote,
    }
}
