//! Another process's network namespace: whether it is ours, and a TCP connection opened
//! inside it. A thread of its own enters the namespace (`setns` on `/proc/PID/ns/net`),
//! creates and connects the socket, and ends; the socket belongs to the namespace it was
//! made in for its whole life, and the rest of the program, still in ours, uses it. So an
//! address seen in another namespace (its loopback above all) is never dialled from ours,
//! where another process may hold the same one.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use nix::sched::CloneFlags;

/// Why a connection inside another network namespace was not made.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Entering the namespace is not permitted (no CAP_SYS_ADMIN; not root).
    NotPermitted(io::Error),
    /// Anything else: the namespace is gone, the connection was refused or timed out.
    Io(io::Error),
}

/// Whether the network namespace at `ns_link` (`/proc/PID/ns/net`) is this process's. When
/// the link cannot be looked at (it needs the right to trace the process), the inode of
/// `/proc/PID/net/dev` says it: each namespace has its own `/proc/net` entries, and looking
/// at them needs no privilege.
pub(crate) fn is_ours(ns_link: &Path, net_dev: &Path) -> Result<bool, String> {
    let id = |p: &Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
    match (id(Path::new("/proc/self/ns/net")), id(ns_link)) {
        (Ok(a), Ok(b)) => return Ok(a == b),
        (Err(e), _) if e.kind() == io::ErrorKind::NotFound => return Ok(true), // no namespaces
        _ => {}
    }
    match (id(Path::new("/proc/self/net/dev")), id(net_dev)) {
        (Ok(a), Ok(b)) => Ok(a.1 == b.1),
        (_, Err(e)) | (Err(e), _) => Err(format!(
            "neither {} nor {} can be read: {e}",
            ns_link.display(),
            net_dev.display()
        )),
    }
}

/// Connect to `addr` from inside the network namespace at `ns_link`, within `timeout`.
pub(crate) fn connect_in(
    ns_link: &Path,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, Refused> {
    let ns = File::open(ns_link).map_err(|e| match e.kind() {
        io::ErrorKind::PermissionDenied => Refused::NotPermitted(e),
        _ => Refused::Io(e),
    })?;
    let thread = std::thread::Builder::new()
        .name("forksafe-netns".into())
        .spawn(move || {
            nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| {
                let e = io::Error::from(e);
                match e.kind() {
                    io::ErrorKind::PermissionDenied => Refused::NotPermitted(e),
                    _ => Refused::Io(e),
                }
            })?;
            // This thread ends here, and its namespace with it; the socket keeps its own.
            TcpStream::connect_timeout(&addr, timeout).map_err(Refused::Io)
        })
        .map_err(Refused::Io)?;
    thread
        .join()
        .map_err(|_| Refused::Io(io::Error::other("the connecting thread failed")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_namespace_is_ours() {
        let ours = is_ours(
            Path::new("/proc/self/ns/net"),
            Path::new("/proc/self/net/dev"),
        );
        assert_eq!(ours, Ok(true));
        // Refused: a namespace that cannot be looked at is not guessed to be ours.
        let t = tempfile::tempdir().unwrap();
        let gone = is_ours(&t.path().join("ns/net"), &t.path().join("net/dev"));
        if std::fs::metadata("/proc/self/ns/net").is_ok() {
            assert!(gone.is_err(), "{gone:?}");
        }
    }

    #[test]
    fn a_connection_in_our_own_namespace_works_through_the_thread() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let s = connect_in(Path::new("/proc/self/ns/net"), addr, Duration::from_secs(5));
        // setns needs CAP_SYS_ADMIN even into our own namespace.
        match s {
            Ok(s) => assert_eq!(s.peer_addr().unwrap(), addr),
            Err(Refused::NotPermitted(_)) => assert!(!nix::unistd::geteuid().is_root()),
            Err(Refused::Io(e)) => panic!("{e}"),
        }
    }
}
