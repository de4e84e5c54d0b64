//! Atomic writes of the files forksafe owns (the sysctl.d drop-in, the metrics file, the
//! state file): a reader sees the old file or the new one, never half of one, and a full
//! disk leaves the old file intact; the drop-in, read at the next boot, survives a crash
//! as written.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::os::errno::{self, Class};
use crate::os::root::Root;

/// Why a file could not be written.
#[derive(Debug)]
pub(crate) struct WriteError {
    /// The file (on the system).
    pub(crate) path: PathBuf,
    /// What failed.
    pub(crate) what: &'static str,
    /// The OS error.
    pub(crate) err: io::Error,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot write {}: {}: {}",
            self.path.display(),
            self.what,
            self.err
        )?;
        if errno::class_of(&self.err) == Class::NotPermitted {
            write!(f, " (read-only or not permitted: a container or sandbox?)")?;
        }
        Ok(())
    }
}

impl std::error::Error for WriteError {}

/// Whether a file must survive a crash or power loss as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Read at the next boot (the sysctl.d drop-in): fsynced, file and directory.
    Boot,
    /// Only for the running system (the state file in /run, the metrics file): the daemon
    /// writes it again at every start, so it is not fsynced. rename(2) alone keeps it whole
    /// for its readers, and a repair never waits for the disk behind it.
    Runtime,
}

/// Write `content` to `path` (under `root`) atomically: a temp file in the same directory,
/// mode 0644 whatever the umask, fsync (for [`Durability::Boot`]), rename over the old one,
/// fsync the directory (again for `Boot`); then read it back. The caller has decided that
/// the file is ours (or absent). Returns whether the directory had to be created. rename(2)
/// replaces a symlink at `path` rather than writing through it; the temp file is opened
/// with O_NOFOLLOW and O_EXCL; links in the directory's path are followed inside the root.
pub(crate) fn write(
    root: &Root,
    path: &Path,
    content: &str,
    durability: Durability,
) -> Result<bool, WriteError> {
    let durable = durability == Durability::Boot;
    let err = |what, err| WriteError {
        path: path.to_path_buf(),
        what,
        err,
    };
    // The directory with its links followed inside the root: a link never leads a write
    // out of it.
    let named_dir = path
        .parent()
        .ok_or_else(|| err("path", io::Error::from(io::ErrorKind::InvalidInput)))?;
    let dir = root
        .resolve(named_dir)
        .map_err(|e| err("resolving its directory", e))?;
    let name = path
        .file_name()
        .ok_or_else(|| err("path", io::Error::from(io::ErrorKind::InvalidInput)))?;
    let target = dir.join(name);
    let dir = dir.as_path();
    let name = name.to_string_lossy();
    let created = !dir.exists();
    if created {
        fs::create_dir_all(dir).map_err(|e| err("creating its directory", e))?;
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
    }
    // A hidden name: systemd-sysctl skips dot files, so a crash here leaves nothing it reads.
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&tmp)
            .map_err(|e| err("creating a temp file", e))?;
        f.set_permissions(fs::Permissions::from_mode(0o644))
            .map_err(|e| err("setting its mode", e))?;
        f.write_all(content.as_bytes())
            .map_err(|e| err("writing", e))?;
        if durable {
            f.sync_all().map_err(|e| err("syncing", e))?;
        }
        // rename(2) replaces a symlink at the target rather than writing through it.
        fs::rename(&tmp, &target).map_err(|e| err("renaming into place", e))?;
        if durable {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| err("syncing its directory", e))?;
        }
        match fs::read(&target) {
            Ok(b) if b == content.as_bytes() => Ok(created),
            Ok(_) => Err(err(
                "reading back",
                io::Error::other("the file differs from what was written"),
            )),
            Err(e) => Err(err("reading back", e)),
        }
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_durabilities_replace_the_file_whole_and_leave_no_temp_file() {
        for durability in [Durability::Boot, Durability::Runtime] {
            let t = tempfile::tempdir().unwrap();
            let root = Root::new(t.path());
            let file = Path::new("/run/forksafe/state.json");
            assert_eq!(write(&root, file, "old\n", durability).ok(), Some(true));
            // A symlink at the target is replaced, never written through.
            let real = t.path().join("run/forksafe/state.json");
            let elsewhere = t.path().join("elsewhere");
            fs::write(&elsewhere, "untouched\n").unwrap();
            fs::remove_file(&real).unwrap();
            std::os::unix::fs::symlink(&elsewhere, &real).unwrap();
            assert_eq!(write(&root, file, "new\n", durability).ok(), Some(false));
            assert_eq!(fs::read_to_string(&real).ok().as_deref(), Some("new\n"));
            assert_eq!(
                fs::read_to_string(&elsewhere).ok().as_deref(),
                Some("untouched\n")
            );
            let meta = fs::symlink_metadata(&real).unwrap();
            assert!(meta.is_file());
            assert_eq!(meta.permissions().mode() & 0o777, 0o644);
            let left: Vec<_> = fs::read_dir(real.parent().unwrap_or(t.path()))
                .unwrap()
                .filter_map(Result::ok)
                .map(|e| e.file_name())
                .collect();
            assert_eq!(
                left,
                vec![std::ffi::OsString::from("state.json")],
                "{durability:?}"
            );
        }
    }
}
