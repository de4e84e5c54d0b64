//! inotify: the watches on the sysctl.d directories and on every knob's file, and what a
//! wake-up was about. A sandbox with procfs and sysfs instances of its own sees no event
//! when someone else writes, so knob files can be watched through the host's instances
//! bound elsewhere (`--watch-via`).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use crate::knob::Resolved;
use crate::os::report::Memo;
use crate::os::root::Root;
use crate::sysctl_d;

/// How often the safety net runs even without an inotify event: sysctl.d is re-read (a
/// directory that did not exist when the watches were set, an edit of /etc/sysctl.conf, a
/// missed event), every knob's file is opened again and its watch re-armed (a procfs inode
/// that was dropped and looked up again no longer raises events on ours), and the scan for
/// what else sets the knobs is refreshed. It costs more than many ticks, so once a minute.
pub(crate) const RESCAN: Duration = Duration::from_secs(60);

/// What an inotify wake-up was about.
#[derive(Default)]
pub(crate) struct Changes {
    /// A sysctl.d directory changed (or events were lost).
    pub(crate) sysctl_d: bool,
    /// Knobs whose file was written to (indexes into the settings' knobs).
    pub(crate) knobs: Vec<usize>,
    /// Events were lost: check every knob.
    pub(crate) overflow: bool,
}

/// Whether a name in a sysctl.d directory is one systemd-sysctl reads: `*.conf`, not hidden
/// and not a backup. Our own temp files (hidden) and editors' leftovers raise events that
/// change nothing at boot, and never make the daemon look again: a write that keeps failing
/// must not feed itself.
fn read_at_boot(name: &OsStr) -> bool {
    name.as_bytes().ends_with(b".conf") && !sysctl_d::hidden_or_backup(name)
}

/// inotify watches on the sysctl.d directories that exist and on every knob's file.
pub(crate) struct Watch {
    pub(crate) inotify: Option<Inotify>,
    /// A watch could not be added (the watch limit, no memory): said once; the poll and
    /// the rescan cover what is not watched.
    short: Memo<String>,
    /// The directories watched, as named under the root and as resolved.
    dirs: Vec<(PathBuf, PathBuf, WatchDescriptor)>,
    /// Where the host's procfs and sysfs are bound (`--watch-via`), and the root they
    /// mirror: an inotify mark is per file-system instance, and a sandbox with instances of
    /// its own sees no event when someone else writes.
    pub(crate) via: Option<(PathBuf, PathBuf)>,
}

impl Watch {
    pub(crate) fn new() -> Watch {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| {
                log::warn!(
                    "inotify unavailable ({e}): drift is found by the poll every interval, and \
                     sysctl.d is re-read every {}",
                    crate::words::timespan(RESCAN)
                )
            })
            .ok();
        Watch {
            inotify,
            short: Memo::default(),
            dirs: Vec::new(),
            via: None,
        }
    }
}

/// Say once that `what` could not be watched, and what covers it instead.
fn cannot_watch(short: &mut Memo<String>, what: &str, e: nix::errno::Errno) {
    let hint = if e == nix::errno::Errno::ENOSPC {
        " (the inotify watch limit, fs.inotify.max_user_watches, is reached)"
    } else {
        ""
    };
    if short.changed(e.to_string()) {
        log::warn!(
            "cannot watch {what}: {e}{hint}; what is not watched is checked by the poll \
                 every interval and sysctl.d every {RESCAN:?} (said once)"
        );
    }
}

impl Watch {
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

    pub(crate) fn add_dirs(&mut self, root: &Root) {
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
            // Links followed inside the root; two names for one directory (merged /usr)
            // get one watch.
            let Ok(real) = root.resolve(dir) else {
                continue;
            };
            if !real.is_dir() {
                continue;
            }
            if let Some((_, _, wd)) = self.dirs.iter().find(|(_, r, _)| *r == real) {
                let wd = *wd;
                self.dirs.push((named, real, wd));
                continue;
            }
            match ino.add_watch(&real, flags) {
                Ok(wd) => self.dirs.push((named, real, wd)),
                Err(e) => cannot_watch(&mut self.short, dir, e),
            }
        }
    }

    /// Watch a knob's (resolved) file for writes; drop the previous watch if it was on
    /// another inode. Returns the watch, `None` when there is none.
    pub(crate) fn watch_knob(
        &mut self,
        at: Option<&Resolved>,
        old: Option<WatchDescriptor>,
    ) -> Option<WatchDescriptor> {
        let ino = self.inotify.as_ref()?;
        let path = at.map(|at| self.watch_path(at.real()));
        let new = match path.map(|p| (ino.add_watch(&p, AddWatchFlags::IN_MODIFY), p)) {
            Some((Ok(wd), _)) => Some(wd),
            Some((Err(e), p)) => {
                cannot_watch(&mut self.short, &p.display().to_string(), e);
                None
            }
            None => None,
        };
        if old.is_some() && old != new {
            self.unwatch(old);
        }
        new
    }

    pub(crate) fn unwatch(&mut self, wd: Option<WatchDescriptor>) {
        if let (Some(ino), Some(wd)) = (&self.inotify, wd) {
            let _ = ino.rm_watch(wd);
        }
    }

    /// Drain pending events and sort them out.
    pub(crate) fn drain(&mut self, knob_wds: &[Option<WatchDescriptor>]) -> Changes {
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
                    if e.mask.contains(AddWatchFlags::IN_IGNORED) {
                        // A watched directory went away: re-add what exists.
                        self.dirs.clear();
                    }
                    changes.sysctl_d |= e.name.as_deref().is_none_or(read_at_boot);
                }
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_systemd_reads_makes_a_look() {
        for name in ["99-zz-forksafe.conf", "50-x.conf"] {
            assert!(read_at_boot(OsStr::new(name)), "{name}");
        }
        // Refused: our own temp file, an editor's backup, another extension.
        for name in [
            ".99-zz-forksafe.conf.4242.tmp",
            ".x.conf",
            "x.conf~",
            "x.conf.dpkg-old",
            "README",
        ] {
            assert!(!read_at_boot(OsStr::new(name)), "{name}");
        }
    }
}
