//! sysctl.d: what the next boot will apply, computed by systemd-sysctl's rules (systemd 252,
//! `src/sysctl/sysctl.c` and `src/basic/conf-files.c`), and the drop-in forksafe owns.
//!
//! The rules, as systemd applies them:
//! - directories in precedence order `/etc/sysctl.d`, `/run/sysctl.d`,
//!   `/usr/local/lib/sysctl.d`, `/usr/lib/sysctl.d`, `/lib/sysctl.d` (Debian builds with
//!   split-usr; on merged /usr it is the same directory and counts once); only `*.conf`, no
//!   hidden or backup files (`.x.conf`, `x.conf~`, `x.conf.dpkg-old` do not end in `.conf`
//!   or are skipped);
//! - a file masks a same-named one in a lower directory, whatever it holds: a link to
//!   `/dev/null` or an empty file masks and sets nothing;
//! - the surviving files are read in byte order of their names, whatever their directory;
//! - lines end at `\n`, `\r` or NUL; blank lines and lines starting with `#` or `;` are
//!   skipped; `key = value`, both sides stripped of whitespace; a leading `-` on the key
//!   means "ignore failure"; `-key` alone excludes the key from globs;
//! - keys are normalised (if the first separator is `.`, dots and slashes swap; redundant
//!   slashes and `.` components go; the leading slash goes);
//! - for one key, a later assignment replaces an earlier one (the same value again keeps the
//!   earlier one's place); an explicit key beats every glob; globs (`*`, `?`, `[`, with
//!   `{a,b}` braces) apply in table order, so the last matching glob wins.
//!
//! `/etc/sysctl.conf` is not read by systemd-sysctl (Debian links it in as
//! `/etc/sysctl.d/99-sysctl.conf`), but procps' `sysctl --system` applies it last; it is
//! parsed separately so that an assignment there can be reported.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::os::fsread;
use crate::os::root::Root;

mod assignment;
mod boot;
pub(crate) mod dropin;
mod files;
mod glob;

pub(crate) use assignment::SYSCTL_CONF;
pub use assignment::{Assignment, normalize_key, parse};
use assignment::{applies, is_glob};
pub use boot::Boot;
pub use files::Skipped;
pub(crate) use files::{DIRS, hidden_or_backup};
use files::{Listed, list_files};
pub use glob::glob_match;

/// systemd-sysctl's table after reading every file: one entry per key, in the order
/// systemd applies them. Built in one pass (a key's entry is found by a hash lookup), so a
/// file of a hundred thousand keys costs what reading it costs.
#[derive(Debug, Default, Clone)]
pub struct Table {
    entries: Vec<Assignment>,
    /// Explicit keys (and `-key` exclusions): the index of their entry.
    explicit: HashMap<String, usize>,
    /// The entries that are globs with a value, in table order.
    globs: Vec<usize>,
    /// Every assignment in reading order (before later ones replaced earlier ones).
    history: Vec<Assignment>,
    /// What `/etc/sysctl.conf` assigns (procps applies it after everything else).
    sysctl_conf: Vec<Assignment>,
    /// Files that could not be read: (path, error).
    pub(crate) unreadable: Vec<(PathBuf, String)>,
    /// Entries that are not regular files (FIFOs, directories, devices, oversized files).
    pub skipped: Vec<Skipped>,
}

impl Table {
    /// Build the table from assignments in reading order: for one key, a later assignment
    /// replaces an earlier one and takes its place at the end, unless it sets the same
    /// value, which keeps the earlier one's place.
    pub fn from_assignments(all: Vec<Assignment>) -> Table {
        // Slots in order; a replaced entry leaves a hole, closed at the end.
        let mut slots: Vec<Option<&Assignment>> = Vec::with_capacity(all.len());
        let mut at: HashMap<&str, usize> = HashMap::with_capacity(all.len());
        for a in &all {
            match at.get(a.key.as_str()).copied() {
                Some(i)
                    if slots
                        .get(i)
                        .copied()
                        .flatten()
                        .is_some_and(|e| e.value == a.value) => {}
                Some(i) => {
                    if let Some(slot) = slots.get_mut(i) {
                        *slot = None;
                    }
                    at.insert(&a.key, slots.len());
                    slots.push(Some(a));
                }
                None => {
                    at.insert(&a.key, slots.len());
                    slots.push(Some(a));
                }
            }
        }
        let entries: Vec<Assignment> = slots.into_iter().flatten().cloned().collect();
        let mut explicit = HashMap::new();
        let mut globs = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if is_glob(&e.key) {
                if e.value.is_some() {
                    globs.push(i);
                }
            } else {
                explicit.insert(e.key.clone(), i);
            }
        }
        Table {
            entries,
            explicit,
            globs,
            history: all,
            ..Table::default()
        }
    }

    /// Read every sysctl.d file under `root`, as the next boot will, and `/etc/sysctl.conf`.
    /// Every file goes through [`fsread::read`]: nothing here can block.
    pub fn read(root: &Root) -> Table {
        let mut all = Vec::new();
        let mut unreadable = Vec::new();
        let mut skipped = Vec::new();
        for entry in list_files(root) {
            match entry {
                Listed::File { shown, real } => match fsread::read(&real, fsread::CONFIG_LIMIT) {
                    Ok(bytes) => all.extend(parse(&bytes, &shown)),
                    // A dangling link masks and sets nothing, as in systemd.
                    Err(e) if e.is_not_found() => {}
                    Err(e @ fsread::ReadError::TooLarge { .. }) => skipped.push(Skipped {
                        file: shown,
                        why: format!("{e} (systemd-sysctl reads it; forksafe cannot judge it)"),
                        blocks_boot: false,
                        may_set: true,
                    }),
                    Err(fsread::ReadError::NotRegular(kind)) => {
                        // Replaced between listing and reading: judge it next time.
                        unreadable.push((shown, format!("became a {kind} while being read")));
                    }
                    Err(e) => unreadable.push((shown, e.to_string())),
                },
                Listed::Masked => {}
                Listed::Skipped(s) => skipped.push(s),
            }
        }
        let mut table = Table::from_assignments(all);
        table.unreadable = unreadable;
        table.skipped = skipped;
        match root.read(SYSCTL_CONF, fsread::CONFIG_LIMIT) {
            Ok(bytes) => table.sysctl_conf = parse(&bytes, Path::new(SYSCTL_CONF)),
            Err(e) if e.is_not_found() => {}
            // procps applies it last: what it says cannot be known.
            Err(e) => table
                .unreadable
                .push((PathBuf::from(SYSCTL_CONF), e.to_string())),
        }
        table
    }

    /// The entry that decides `key` at boot: its explicit entry (which may be a `-key`
    /// exclusion), else the last glob that matches it.
    fn winner(&self, key: &str) -> Option<&Assignment> {
        if let Some(&i) = self.explicit.get(key) {
            return self.entries.get(i);
        }
        self.globs
            .iter()
            .rev()
            .filter_map(|&i| self.entries.get(i))
            .find(|e| glob_match(&e.key, key))
    }

    /// The files forksafe could not read that could change what the next boot sets `key`
    /// to (given what wins among the files it read), each with why: a file sorting before
    /// an explicit winner cannot (the later explicit line wins), anything else can.
    fn unjudged(&self, winner: Option<&Assignment>) -> Vec<String> {
        let name = |p: &Path| p.file_name().map(|n| n.as_bytes().to_vec());
        let before_winner = |file: &Path| match winner {
            Some(w) if !is_glob(&w.key) && file != Path::new(SYSCTL_CONF) => {
                name(file) < name(&w.file)
            }
            _ => false,
        };
        let skipped = self
            .skipped
            .iter()
            .filter(|s| s.may_set)
            .map(|s| (s.file.as_path(), s.why.as_str()));
        let unreadable = self
            .unreadable
            .iter()
            .map(|(f, e)| (f.as_path(), e.as_str()));
        skipped
            .chain(unreadable)
            .filter(|(file, _)| !before_winner(file))
            .map(|(file, why)| format!("{}: {why}", file.display()))
            .collect()
    }

    /// Every assignment of `key` (explicit or by a glob), in sysctl.d in reading order, then
    /// in `/etc/sysctl.conf`.
    pub(crate) fn assignments_for(&self, key: &str) -> Vec<&Assignment> {
        self.history
            .iter()
            .chain(&self.sysctl_conf)
            .filter(|a| applies(&a.key, key))
            .collect()
    }

    /// The assignment the next boot applies to `key` (normalised), if any (for tests).
    #[cfg(test)]
    pub(crate) fn effective(&self, key: &str) -> Option<&Assignment> {
        self.winner(key).filter(|a| a.value.is_some())
    }

    /// What the next boot does to `key`, against `desired` (a normalised value). `ours` is
    /// the managed drop-in, when there is one: the boot value may come from it, but it is
    /// never its own override.
    pub fn judge(&self, key: &str, desired: &str, ours: Option<&Path>) -> Boot {
        let same = |a: &Assignment| {
            a.value.as_deref().map(crate::knob::normalize).as_deref() == Some(desired)
        };
        let blocked_by = self
            .skipped
            .iter()
            .find(|s| s.blocks_boot)
            .map(|s| s.file.clone());
        let winner = if blocked_by.is_some() {
            None
        } else {
            self.winner(key)
        };
        let value = winner.filter(|a| a.value.is_some()).cloned();
        let right = value.as_ref().is_some_and(same);
        let mut overrides: Vec<Assignment> = winner
            .filter(|w| !same(w) && Some(w.file.as_path()) != ours)
            .cloned()
            .into_iter()
            .collect();
        // procps applies /etc/sysctl.conf last; its last line for the key is what counts.
        if let Some(last) = self.sysctl_conf.iter().rfind(|a| applies(&a.key, key)) {
            if !same(last) {
                overrides.push(last.clone());
            }
        }
        let shadowed = self
            .history
            .iter()
            .filter(|a| applies(&a.key, key) && !same(a))
            .filter(|a| winner != Some(*a))
            .cloned()
            .collect();
        Boot {
            unjudged: if blocked_by.is_some() {
                Vec::new()
            } else {
                self.unjudged(winner)
            },
            value,
            right,
            overrides,
            shadowed,
            blocked_by,
        }
    }
}

#[cfg(test)]
mod tests;
