//! Atomic writes of the files forksafe owns (the sysctl.d drop-in, the metrics file): a
//! reader sees the old file or the new one, never half of one, and a crash or a full disk
//! leaves the old file intact.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::knob::{Cause, Op};
use crate::root::Root;

/// Why a file could not be written.
#[derive(Debug)]
pub struct WriteError {
    /// The file (on the system).
    pub path: PathBuf,
    /// What failed.
    pub what: &'static str,
    /// The OS error.
    pub err: io::Error,
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
        let errno = self.err.raw_os_error().unwrap_or(0);
        if Cause::from_errno(errno, Op::Write, String::new()).is_not_permitted() {
            write!(f, " (read-only or not permitted: a container or sandbox?)")?;
        }
        Ok(())
    }
}

impl std::error::Error for WriteError {}

/// Write `content` to `path` (under `root`) atomically: a temp file in the same directory,
/// mode 0644 whatever the umask, fsync, rename over the old one, fsync the directory; then
/// read it back. The caller has decided that the file is ours (or absent). Returns whether
/// the directory had to be created. rename(2) replaces a symlink at `path` rather than
/// writing through it; the temp file is opened with O_NOFOLLOW and O_EXCL.
pub fn write(root: &Root, path: &Path, content: &str) -> Result<bool, WriteError> {
    let err = |what, err| WriteError {
        path: path.to_path_buf(),
        what,
        err,
    };
    let target = root
        .join(path)
        .ok_or_else(|| err("path", io::Error::from(io::ErrorKind::InvalidInput)))?;
    let dir = target
        .parent()
        .ok_or_else(|| err("path", io::Error::from(io::ErrorKind::InvalidInput)))?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
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
        f.sync_all().map_err(|e| err("syncing", e))?;
        // rename(2) replaces a symlink at the target rather than writing through it.
        fs::rename(&tmp, &target).map_err(|e| err("renaming into place", e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| err("syncing its directory", e))?;
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
