//! Files and sockets inside another process's root (`/proc/PID/root`), found as that
//! process would find them: `openat2` with `RESOLVE_IN_ROOT`, so an absolute symlink in a
//! container leads to the container's own file and `..` stops at its root. Without it, a
//! container could point whoever reads its files (doctor runs as root) at any file or
//! socket of the host's.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Component, Path};
use std::time::Duration;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};

use crate::os::fsread::{self, ReadError};

/// `path` inside the root, relative to it: only plain names (`..` and `.` are refused
/// here, not resolved; symlinks are resolved by the kernel, inside the root).
fn relative(path: &Path) -> Option<&Path> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    rel.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then_some(rel)
}

/// Open `path` inside the root `proc_root` with `flags`.
fn open(proc_root: &Path, path: &Path, flags: OFlag) -> Result<OwnedFd, ReadError> {
    let rel = relative(path).ok_or(ReadError::NotFound)?;
    let root = File::open(proc_root)?;
    // openat2 refuses flags that do not apply (O_NOCTTY with O_PATH).
    let extra = if flags.contains(OFlag::O_PATH) {
        OFlag::O_CLOEXEC
    } else {
        OFlag::O_CLOEXEC | OFlag::O_NOCTTY
    };
    let how = OpenHow::new()
        .flags(flags | extra)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let target = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    openat2(root.as_fd(), target, how).map_err(|e| ReadError::from(io::Error::from(e)))
}

/// Read the regular file `path` inside the root `proc_root`, at most `limit` bytes, never
/// blocking on what is not a regular file.
pub(crate) fn read(proc_root: &Path, path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let fd = open(proc_root, path, OFlag::O_RDONLY | OFlag::O_NONBLOCK)?;
    fsread::read_file(File::from(fd), limit)
}

/// The (device, inode) of `path` inside the root `proc_root`: which file it is, to compare
/// with another.
pub(crate) fn identity(proc_root: &Path, path: &Path) -> Result<(u64, u64), ReadError> {
    let fd = open(proc_root, path, OFlag::O_PATH)?;
    let st = nix::sys::stat::fstat(&fd).map_err(|e| ReadError::from(io::Error::from(e)))?;
    Ok((st.st_dev, st.st_ino))
}

/// Connect to the Unix socket `path` inside the root `proc_root`, within `timeout`. The
/// directory is resolved inside the root; the name in it must be a socket, not a symlink.
pub(crate) fn connect_unix(
    proc_root: &Path,
    path: &Path,
    timeout: Duration,
) -> io::Result<UnixStream> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a socket path with no name"))?;
    let dir_path = path.parent().unwrap_or(Path::new("/"));
    let dir =
        open(proc_root, dir_path, OFlag::O_PATH | OFlag::O_DIRECTORY).map_err(|e| match e {
            ReadError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::NotFound, other.to_string()),
        })?;
    let st = nix::sys::stat::fstatat(&dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)?;
    if st.st_mode & nix::libc::S_IFMT != nix::libc::S_IFSOCK {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is a {}, not a socket",
                path.display(),
                fsread::kind_of(st.st_mode)
            ),
        ));
    }
    // The directory as our own /proc sees the open descriptor: no symlink is followed
    // again, and the path stays short.
    let mut at = std::path::PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    at.push(name);
    let fd: OwnedFd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let addr = UnixAddr::new(&at)?;
    match connect(fd.as_raw_fd(), &addr) {
        Ok(()) => {}
        Err(nix::errno::Errno::EINPROGRESS | nix::errno::Errno::EAGAIN) => {
            // A full backlog: wait for it, but not longer than the timeout.
            let mut fds = [nix::poll::PollFd::new(
                fd.as_fd(),
                nix::poll::PollFlags::POLLOUT,
            )];
            let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
            if nix::poll::poll(&mut fds, ms)? == 0 {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
            }
        }
        Err(e) => return Err(e.into()),
    }
    let s = UnixStream::from(fd);
    s.set_nonblocking(false)?;
    Ok(s)
}

/// The pid of the process at the other end of a Unix socket (the one that called
/// `listen`), in this process's pid namespace; 0 when it is not visible from here.
pub(crate) fn peer_pid(s: &UnixStream) -> io::Result<i32> {
    let cred = nix::sys::socket::getsockopt(s, nix::sys::socket::sockopt::PeerCredentials)?;
    Ok(cred.pid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/hostname"), "inside\n").unwrap();
        std::fs::write(t.path().join("secret"), "outside\n").unwrap();
        // An absolute link and a climbing one: both stay in the root.
        std::os::unix::fs::symlink("/etc/hostname", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../secret", root.join("etc/climb")).unwrap();
        std::os::unix::fs::symlink(t.path().join("secret"), root.join("etc/host")).unwrap();
        let read = |p: &str| read(&root, Path::new(p), 1024);
        match read("/etc/hostname") {
            Err(ReadError::Io(e)) if e.raw_os_error() == Some(nix::libc::ENOSYS) => {
                eprintln!("SKIPPED: this kernel has no openat2");
                return;
            }
            r => assert_eq!(r.unwrap(), b"inside\n"),
        }
        assert_eq!(read("/abs").unwrap(), b"inside\n");
        // Refused: `..` climbs no higher than the root, so the host's file is not found.
        assert!(read("etc/climb").is_err());
        // Refused: an absolute link to the host's file is looked up inside the root.
        assert!(read("etc/host").is_err());
        // Refused: `..` in the path itself.
        assert!(read("etc/../etc/hostname").is_err());
        assert_eq!(
            identity(&root, Path::new("/abs")).unwrap(),
            identity(&root, Path::new("etc/hostname")).unwrap()
        );
    }

    #[test]
    fn a_unix_socket_is_reached_and_its_peer_known() {
        let t = tempfile::tempdir().unwrap();
        let l = std::os::unix::net::UnixListener::bind(t.path().join("s.sock")).unwrap();
        let s = match connect_unix(t.path(), Path::new("/s.sock"), Duration::from_secs(5)) {
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOSYS) => return,
            r => r.unwrap(),
        };
        let _server = l.accept().unwrap();
        assert_eq!(peer_pid(&s).unwrap() as u32, std::process::id());
        // Refused: a symlink where the socket should be.
        std::os::unix::fs::symlink("s.sock", t.path().join("link.sock")).unwrap();
        assert!(connect_unix(t.path(), Path::new("/link.sock"), Duration::from_secs(5)).is_err());
    }
}
