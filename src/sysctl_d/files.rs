//! Which files systemd-sysctl reads at boot, in its order: its directories by precedence,
//! masking by name, `*.conf` only, and what it does with an entry that is not a regular
//! file (a FIFO blocks it, a directory masks and fails). Nothing here opens a file.

use std::fs;
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

/// A directory entry systemd-sysctl lists but that forksafe does not read as a file: it still
/// takes its name (masks same-named files in lower directories) and sets nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The path on the system.
    pub file: PathBuf,
    /// What it is and what systemd-sysctl does with it.
    pub why: String,
    /// systemd-sysctl blocks on it at boot (a FIFO): it then applies nothing at all.
    pub blocks_boot: bool,
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
    let (why, blocks_boot) = if ft.is_fifo() {
        (
            "a FIFO: systemd-sysctl blocks opening it at boot and applies no sysctl.d file until it is killed; remove it".to_string(),
            true,
        )
    } else if ft.is_dir() {
        (
            "a directory: it masks same-named files in lower directories, and systemd-sysctl fails to read it".to_string(),
            false,
        )
    } else {
        (
            format!("a {kind}: forksafe does not read it; remove it"),
            false,
        )
    };
    Some(Skipped {
        file: shown.to_path_buf(),
        why,
        blocks_boot,
    })
}

/// The names systemd-sysctl reads, in order, each classified. Nothing is opened: a FIFO is
/// seen by its mode, never read.
pub(crate) fn list_files(root: &Root) -> Vec<Listed> {
    use std::os::unix::fs::FileTypeExt;
    let mut seen_dirs: Vec<PathBuf> = Vec::new();
    let mut files: Vec<(String, PathBuf, PathBuf)> = Vec::new();
    for dir in DIRS {
        let Some(under) = root.join(dir) else {
            continue;
        };
        // Two names for one directory (merged /usr: /lib -> usr/lib) count once.
        let Ok(real_dir) = under.canonicalize() else {
            continue;
        };
        if seen_dirs.contains(&real_dir) {
            continue;
        }
        seen_dirs.push(real_dir);
        let Ok(entries) = fs::read_dir(&under) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".conf") || hidden_or_backup(&name) {
                continue;
            }
            // The first directory to have a name wins; the rest are masked.
            if files.iter().any(|(n, _, _)| *n == name) {
                continue;
            }
            files.push((name.clone(), Path::new(dir).join(&name), under.join(&name)));
        }
    }
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    files
        .into_iter()
        .map(|(_, shown, real)| match fs::metadata(&real) {
            // Dangling: read (and found missing) like systemd does.
            Err(_) => Listed::File { shown, real },
            Ok(md) if md.file_type().is_char_device() && is_dev_null(&md) => Listed::Masked,
            Ok(md) if md.file_type().is_file() && md.len() == 0 => Listed::Masked,
            Ok(md) => match not_regular(&shown, &md) {
                Some(s) => Listed::Skipped(s),
                None => Listed::File { shown, real },
            },
        })
        .collect()
}

fn is_dev_null(md: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    md.rdev() == nix::sys::stat::makedev(1, 3)
}

/// systemd's `hidden_or_backup_file()` (for names that already end in `.conf`, only the
/// leading dot matters, but keep the whole rule so it reads like the original).
fn hidden_or_backup(name: &str) -> bool {
    if name.starts_with('.') || name.ends_with('~') {
        return true;
    }
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
    matches!(
        ext,
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
