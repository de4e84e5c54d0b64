//! Which files systemd-sysctl reads at boot, in its order: its directories by precedence,
//! masking by name, `*.conf` only, and what it does with an entry that is not a regular
//! file (a FIFO blocks it, a directory masks and fails). Nothing here opens a file.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::os::fsread;
use crate::os::root::Root;

/// systemd-sysctl's directories, highest precedence first (relative to the root).
pub(crate) const DIRS: [&str; 5] = [
    "/etc/sysctl.d",
    "/run/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
    "/lib/sysctl.d",
];

/// The most names one look at sysctl.d lists (all directories together); a tree with more
/// is judged as far as this, and the next boot of every knob is unknown.
pub(crate) const MAX_FILES: usize = 4096;

/// A directory entry systemd-sysctl lists but that forksafe does not read as a file: it still
/// takes its name (masks same-named files in lower directories).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The path on the system.
    pub file: PathBuf,
    /// What it is and what systemd-sysctl does with it.
    pub why: String,
    /// systemd-sysctl blocks on it at boot (a FIFO): it then applies nothing at all.
    pub blocks_boot: bool,
    /// systemd-sysctl may set values from it that forksafe did not read (a file over the
    /// read cap, a device): the next boot of a knob it could set is unknown.
    pub may_set: bool,
}

/// One name systemd-sysctl lists, after masking by name across directories.
#[derive(Debug)]
pub(crate) enum Listed {
    /// A file to read: (path on the system, path under the root).
    File {
        /// The path on the system.
        shown: PathBuf,
        /// The path under the root.
        real: PathBuf,
    },
    /// A link to `/dev/null` or an empty file: masks, sets nothing.
    Masked,
    /// Not a regular file.
    Skipped(Skipped),
}

/// What systemd-sysctl does with an entry that is not a regular file, by its mode.
fn not_regular(shown: &Path, md: &fs::Metadata) -> Option<Skipped> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let ft = md.file_type();
    if ft.is_file() {
        return None;
    }
    let kind = fsread::kind_of(md.mode());
    let (why, blocks_boot, may_set) = if ft.is_fifo() {
        (
            "a FIFO: systemd-sysctl blocks opening it at boot and applies no sysctl.d file until it is killed; remove it".to_string(),
            true,
            false,
        )
    } else if ft.is_dir() {
        (
            "a directory: it masks same-named files in lower directories, and systemd-sysctl fails to read it".to_string(),
            false,
            false,
        )
    } else {
        (
            format!("a {kind}: systemd-sysctl reads it, forksafe does not; remove it"),
            false,
            true,
        )
    };
    Some(Skipped {
        file: shown.to_path_buf(),
        why,
        blocks_boot,
        may_set,
    })
}

/// The names systemd-sysctl reads, in order, each classified. Names are bytes, as systemd
/// sorts them, UTF-8 or not. Links are followed inside the root. Nothing is opened: a FIFO
/// is seen by its mode, never read. At most [`MAX_FILES`] names; past that, one skipped
/// entry says so.
pub(crate) fn list_files(root: &Root) -> Vec<Listed> {
    use std::os::unix::fs::FileTypeExt;
    let mut seen_dirs: Vec<PathBuf> = Vec::new();
    let mut names: HashSet<OsString> = HashSet::new();
    let mut files: Vec<(OsString, PathBuf)> = Vec::new();
    let mut over = None;
    for dir in DIRS {
        // Two names for one directory (merged /usr: /lib -> usr/lib) count once.
        let Ok(real_dir) = root.resolve(dir) else {
            continue;
        };
        if seen_dirs.contains(&real_dir) {
            continue;
        }
        let Ok(entries) = fs::read_dir(&real_dir) else {
            continue;
        };
        seen_dirs.push(real_dir);
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.as_bytes().ends_with(b".conf") || hidden_or_backup(&name) {
                continue;
            }
            if files.len() >= MAX_FILES {
                over.get_or_insert(dir);
                break;
            }
            // The first directory to have a name wins; the rest are masked.
            if names.insert(name.clone()) {
                files.push((name.clone(), Path::new(dir).join(&name)));
            }
        }
    }
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut out: Vec<Listed> = files
        .into_iter()
        .map(|(_, shown)| {
            let real = root.resolve(&shown).unwrap_or_else(|_| shown.clone());
            match fs::metadata(&real) {
                // Dangling: read (and found missing) like systemd does.
                Err(_) => Listed::File { shown, real },
                Ok(md) if md.file_type().is_char_device() && is_dev_null(&md) => Listed::Masked,
                Ok(md) if md.file_type().is_file() && md.len() == 0 => Listed::Masked,
                Ok(md) => match not_regular(&shown, &md) {
                    Some(s) => Listed::Skipped(s),
                    None => Listed::File { shown, real },
                },
            }
        })
        .collect();
    if let Some(dir) = over {
        out.push(Listed::Skipped(Skipped {
            file: PathBuf::from(dir),
            why: format!(
                "more than {MAX_FILES} sysctl.d files in all: forksafe judged the first {MAX_FILES} it listed and stopped"
            ),
            blocks_boot: false,
            may_set: true,
        }));
    }
    out
}

fn is_dev_null(md: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    md.rdev() == nix::sys::stat::makedev(1, 3)
}

/// systemd's `hidden_or_backup_file()` (for names that already end in `.conf`, only the
/// leading dot matters, but keep the whole rule so it reads like the original).
pub(crate) fn hidden_or_backup(name: &OsStr) -> bool {
    let name = name.as_bytes();
    if name.starts_with(b".") || name.ends_with(b"~") {
        return true;
    }
    let ext = name
        .iter()
        .rposition(|&b| b == b'.')
        .and_then(|i| name.get(i + 1..))
        .unwrap_or_default();
    matches!(
        std::str::from_utf8(ext).unwrap_or(""),
        "rpmnew"
            | "rpmsave"
            | "rpmorig"
            | "dpkg-old"
            | "dpkg-new"
            | "dpkg-tmp"
            | "dpkg-dist"
            | "dpkg-bak"
            | "dpkg-backup"
            | "dpkg-remove"
            | "ucf-new"
            | "ucf-old"
            | "ucf-dist"
            | "swp"
            | "bak"
            | "old"
            | "new"
    )
}
