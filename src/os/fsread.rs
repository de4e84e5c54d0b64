//! The one way forksafe reads a file: the config, sysctl.d files, `/etc/sysctl.conf`, the
//! drop-in, doctor's `/proc` files and the files the legacy scan looks at.
//!
//! Opened non-blocking and close-on-exec, then `fstat`ed: only a regular file is read (procfs
//! and sysfs files are regular), so a FIFO, socket, device or directory never blocks the
//! daemon or a command. The size is capped. For the config, the trust checks (owner root,
//! not group- or world-writable, and the same for its directory) are made on the opened
//! descriptor and on the directory that really holds it, so a symlink cannot redirect them.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The cap for files people write (config, sysctl.d).
pub(crate) const CONFIG_LIMIT: u64 = 1024 * 1024;

/// The cap for kernel files (`/proc`), which can be large (`smaps` of a big process).
pub(crate) const PROC_LIMIT: u64 = 64 * 1024 * 1024;

/// Why a file was not read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Nothing at the path (or a component is missing).
    NotFound,
    /// Something that is not a regular file: what it is.
    NotRegular(&'static str),
    /// Larger than the cap.
    TooLarge {
        /// Its size (at least).
        size: u64,
        /// The cap.
        limit: u64,
    },
    /// Running as root, a file (or directory) someone else could change: what and the fix.
    Untrusted(String),
    /// Any other error from the OS.
    Io(io::Error),
}

impl ReadError {
    /// True when the file is simply not there.
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, ReadError::NotFound)
    }

    /// True when the OS refused us (EACCES, EPERM): a permission or hidepid matter.
    pub(crate) fn is_denied(&self) -> bool {
        matches!(self, ReadError::Io(e) if e.kind() == io::ErrorKind::PermissionDenied)
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::NotFound => write!(f, "no such file"),
            ReadError::NotRegular(kind) => write!(f, "not a regular file (a {kind}); not read"),
            ReadError::TooLarge { size, limit } => write!(
                f,
                "too large ({size} bytes, more than the {limit} bytes forksafe reads); not read"
            ),
            ReadError::Untrusted(why) => write!(f, "{why}"),
            ReadError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ReadError {}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> ReadError {
        match e.kind() {
            io::ErrorKind::NotFound => ReadError::NotFound,
            _ if e.raw_os_error() == Some(nix::errno::Errno::ENOTDIR as i32) => ReadError::NotFound,
            _ => ReadError::Io(e),
        }
    }
}

/// What kind of file a mode says it is, for messages.
pub(crate) fn kind_of(mode: u32) -> &'static str {
    match mode & nix::libc::S_IFMT {
        m if m == nix::libc::S_IFIFO => "FIFO",
        m if m == nix::libc::S_IFSOCK => "socket",
        m if m == nix::libc::S_IFCHR => "character device",
        m if m == nix::libc::S_IFBLK => "block device",
        m if m == nix::libc::S_IFDIR => "directory",
        m if m == nix::libc::S_IFLNK => "symlink",
        _ => "regular file",
    }
}

fn open(path: &Path) -> Result<(File, std::fs::Metadata), ReadError> {
    // O_NONBLOCK: opening a FIFO for reading must not wait for a writer. O_NOCTTY: a tty
    // never becomes our controlling terminal. std adds O_CLOEXEC.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)?;
    let md = file.metadata()?;
    if !md.file_type().is_file() {
        return Err(ReadError::NotRegular(kind_of(md.mode())));
    }
    Ok((file, md))
}

fn read_capped(mut file: File, md: &std::fs::Metadata, limit: u64) -> Result<Vec<u8>, ReadError> {
    if md.len() > limit {
        return Err(ReadError::TooLarge {
            size: md.len(),
            limit,
        });
    }
    // procfs and sysfs report size 0 (or 4096): read to the end, but never past the cap.
    let mut out = Vec::with_capacity(usize::try_from(md.len()).unwrap_or(0).min(1 << 16));
    (&mut file).take(limit + 1).read_to_end(&mut out)?;
    let got = out.len() as u64;
    if got > limit {
        return Err(ReadError::TooLarge { size: got, limit });
    }
    Ok(out)
}

/// Read an opened file of at most `limit` bytes when it is a regular file (opened
/// non-blocking by the caller: what is not a regular file is refused, never read).
pub(crate) fn read_file(file: File, limit: u64) -> Result<Vec<u8>, ReadError> {
    let md = file.metadata()?;
    if !md.file_type().is_file() {
        return Err(ReadError::NotRegular(kind_of(md.mode())));
    }
    read_capped(file, &md, limit)
}

/// Read a regular file of at most `limit` bytes, never blocking on what is not one.
pub(crate) fn read(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let (file, md) = open(path)?;
    read_capped(file, &md, limit)
}

/// [`read`] as text (invalid UTF-8 replaced), for `/proc` files and the like.
pub(crate) fn read_text(path: &Path, limit: u64) -> Result<String, ReadError> {
    read(path, limit).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Read a file a root daemon acts on (its config): like [`read`], and, when running as root,
/// refused unless the opened file and the directory that really holds it (after every
/// symlink, as a Kubernetes ConfigMap's `..data` links) are owned by root and not group- or
/// world-writable; the directory of the path as named is checked too (whoever can write it
/// can swap the link).
pub(crate) fn read_trusted(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let (file, md) = open(path)?;
    if nix::unistd::geteuid().is_root() {
        check_trusted(path, &file, &md)?;
    }
    read_capped(file, &md, limit)
}

fn untrusted(what: &str, p: &Path, md: &std::fs::Metadata) -> Option<ReadError> {
    if md.uid() != 0 {
        return Some(ReadError::Untrusted(format!(
            "the config {what} {} is owned by uid {}, not root; a root daemon must not trust \
             it. Fix: chown root:root {}",
            p.display(),
            md.uid(),
            p.display()
        )));
    }
    if md.mode() & 0o022 != 0 {
        return Some(ReadError::Untrusted(format!(
            "the config {what} {} is group- or world-writable (mode {:o}); a root daemon must \
             not trust it. Fix: chmod go-w {}",
            p.display(),
            md.mode() & 0o7777,
            p.display()
        )));
    }
    None
}

fn parent_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn check_trusted(named: &Path, file: &File, md: &std::fs::Metadata) -> Result<(), ReadError> {
    // The file we really opened, whatever path led to it.
    let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(|e| {
        ReadError::Untrusted(format!(
            "cannot tell where {} really is: {e}",
            named.display()
        ))
    })?;
    if let Some(e) = untrusted("file", &real, md) {
        return Err(e);
    }
    let real_dir = parent_of(&real);
    let dir = File::open(&real_dir)?;
    let dir_md = dir.metadata()?;
    if let Some(e) = untrusted("directory", &real_dir, &dir_md) {
        return Err(e);
    }
    // That directory really holds this very file (not a name swapped in since).
    let name = real.file_name().unwrap_or_default();
    let held = nix::sys::stat::fstatat(&dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| ReadError::Io(io::Error::from(e)))?;
    if held.st_dev != md.dev() || held.st_ino != md.ino() {
        return Err(ReadError::Untrusted(format!(
            "{} changed while it was being read; try again",
            named.display()
        )));
    }
    // The directory of the path as given, where a symlink to the file may sit.
    let named_dir = parent_of(named);
    if named_dir != real_dir {
        let named_md = std::fs::metadata(&named_dir)?;
        if let Some(e) = untrusted("directory", &named_dir, &named_md) {
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_at_once() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        // Refused: reading a FIFO with no writer would block forever.
        assert!(matches!(
            read(&fifo, CONFIG_LIMIT),
            Err(ReadError::NotRegular("FIFO"))
        ));
        // Refused: a directory is not a file.
        assert!(matches!(
            read(t.path(), CONFIG_LIMIT),
            Err(ReadError::NotRegular("directory"))
        ));
        assert!(read(&t.path().join("nope"), 10).unwrap_err().is_not_found());
    }

    #[test]
    fn the_size_is_capped() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("big");
        std::fs::write(&f, vec![b'x'; 100]).unwrap();
        assert_eq!(read(&f, 100).unwrap().len(), 100);
        // Refused: one byte over the cap.
        assert!(matches!(
            read(&f, 99),
            Err(ReadError::TooLarge {
                size: 100,
                limit: 99
            })
        ));
        // procfs reports size 0; the cap holds while reading.
        let status = read(Path::new("/proc/self/status"), PROC_LIMIT).unwrap();
        assert!(status.starts_with(b"Name:"));
        assert!(matches!(
            read(Path::new("/proc/self/status"), 10),
            Err(ReadError::TooLarge { .. })
        ));
    }
}
