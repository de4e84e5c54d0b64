//! Where a database process listens, from `/proc` alone: its fds' socket inodes against
//! `/proc/PID/net/unix`, `tcp` and `tcp6` (which show the tables of the process's own
//! network namespace). A Unix socket is preferred, then loopback, then the rest. Also the
//! reverse question, for attributing an answer: is the server end of a TCP connection one
//! of this process's sockets?

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use crate::os::fsread;
use crate::os::root::Root;

/// Where a database listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A Unix socket, by its path in the database's mount namespace.
    Unix(PathBuf),
    /// A TCP socket, in the database's network namespace.
    Tcp(SocketAddr),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "{a}"),
        }
    }
}

/// The most fds doctor looks at in one process (a database's fd limit is often 10000).
const MAX_FDS: usize = 1 << 20;

/// The socket inodes among a process's fds.
pub(crate) fn socket_inodes(root: &Root, pid: u32) -> Result<Vec<u64>, String> {
    let Some(dir) = root.join(format!("proc/{pid}/fd")) else {
        return Err("no fd directory".into());
    };
    let entries = std::fs::read_dir(&dir).map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::PermissionDenied {
            " (run as root)"
        } else {
            ""
        };
        format!("/proc/{pid}/fd: {e}{hint}")
    })?;
    let mut out: Vec<u64> = entries
        .take(MAX_FDS)
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// `/proc/net/unix`: listening sockets' (inode, path).
pub fn parse_unix(text: &str) -> Vec<(u64, PathBuf)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Num RefCount Protocol Flags Type St Inode Path; Flags 00010000 = listening.
            let flags = u32::from_str_radix(f.get(3)?, 16).ok()?;
            let path = f.get(7)?;
            if flags & 0x0001_0000 == 0 || path.starts_with('@') {
                return None;
            }
            Some((f.get(6)?.parse().ok()?, PathBuf::from(path)))
        })
        .collect()
}

/// One row of `/proc/net/tcp` or `tcp6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpRow {
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
    /// `0A` LISTEN, `01` ESTABLISHED.
    pub(crate) state: u8,
    pub(crate) inode: u64,
}

/// An address as `/proc/net/tcp` writes it: `0100007F:18EB`.
fn proc_addr(field: &str) -> Option<SocketAddr> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(addr, 16).ok()?.swap_bytes(),
        )),
        32 => {
            let mut b = [0u8; 16];
            for (i, chunk) in b.chunks_mut(4).enumerate() {
                let word = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&word.swap_bytes().to_be_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Every row of `/proc/net/tcp` or `tcp6`.
pub(crate) fn tcp_rows(text: &str) -> Vec<TcpRow> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // sl local_address rem_address st ... inode (the 10th field).
            Some(TcpRow {
                local: proc_addr(f.get(1)?)?,
                remote: proc_addr(f.get(2)?)?,
                state: u8::from_str_radix(f.get(3)?, 16).ok()?,
                inode: f.get(9)?.parse().ok()?,
            })
        })
        .collect()
}

/// `/proc/net/tcp` or `tcp6`: listening sockets' (inode, address).
pub fn parse_tcp(text: &str) -> Vec<(u64, SocketAddr)> {
    tcp_rows(text)
        .into_iter()
        .filter(|r| r.state == 0x0A)
        .map(|r| (r.inode, r.local))
        .collect()
}

/// `/proc/PID/net/FILE` (the tables of `pid`'s network namespace); empty when unreadable.
fn net_table(root: &Root, pid: u32, file: &str) -> String {
    root.read_text(&format!("proc/{pid}/net/{file}"), fsread::PROC_LIMIT)
        .unwrap_or_default()
}

/// Where `pid` listens, best first: Unix sockets, then loopback, then the rest (a wildcard
/// address reached through loopback, in the process's own network namespace).
pub(crate) fn endpoints(root: &Root, pid: u32) -> Result<Vec<Endpoint>, String> {
    let inodes = socket_inodes(root, pid)?;
    let mine = |ino: &u64| inodes.binary_search(ino).is_ok();
    let mut out = Vec::new();
    for (ino, path) in parse_unix(&net_table(root, pid, "unix")) {
        if mine(&ino) {
            out.push(Endpoint::Unix(path));
        }
    }
    let mut tcp: Vec<SocketAddr> = parse_tcp(&net_table(root, pid, "tcp"))
        .into_iter()
        .chain(parse_tcp(&net_table(root, pid, "tcp6")))
        .filter(|(ino, _)| mine(ino))
        .map(|(_, a)| match a.ip() {
            IpAddr::V4(v) if v.is_unspecified() => {
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), a.port())
            }
            IpAddr::V6(v) if v.is_unspecified() => {
                SocketAddr::new(Ipv6Addr::LOCALHOST.into(), a.port())
            }
            _ => a,
        })
        .collect();
    tcp.sort_by_key(|a| !a.ip().is_loopback());
    tcp.dedup();
    out.extend(tcp.into_iter().map(Endpoint::Tcp));
    Ok(out)
}

/// The same address, an IPv4-mapped IPv6 one (a dual-stack listener's view) as IPv4.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// Whether the server end of our connection from `ours` to `theirs` is one of `pid`'s
/// sockets: its row in `pid`'s own TCP tables, and that row's inode among its fds.
pub(crate) fn served_by(root: &Root, pid: u32, ours: SocketAddr, theirs: SocketAddr) -> bool {
    let Ok(inodes) = socket_inodes(root, pid) else {
        return false;
    };
    let (ours, theirs) = (canonical(ours), canonical(theirs));
    ["tcp", "tcp6"].iter().any(|f| {
        tcp_rows(&net_table(root, pid, f)).iter().any(|r| {
            canonical(r.local) == theirs
                && canonical(r.remote) == ours
                && r.inode != 0
                && inodes.binary_search(&r.inode).is_ok()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tables() {
        let unix = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 31337 /run/redis/redis-server.sock\n\
            0000000000000000: 00000003 00000000 00000000 0001 03 31338 /run/redis/redis-server.sock\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 31339 @abstract\n";
        assert_eq!(
            parse_unix(unix),
            [(31337, PathBuf::from("/run/redis/redis-server.sock"))]
        );
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 0100007F:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000   108        0 4242 1 0000000000000000 100 0 0 10 0\n\
            1: 0100007F:18EB 0100007F:D2A4 01 00000000:00000000 00:00000000 00000000   108        0 4243 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(parse_tcp(tcp), [(4242, "127.0.0.1:6379".parse().unwrap())]);
        assert_eq!(
            tcp_rows(tcp)[1],
            TcpRow {
                local: "127.0.0.1:6379".parse().unwrap(),
                remote: "127.0.0.1:53924".parse().unwrap(),
                state: 1,
                inode: 4243
            }
        );
        let tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 00000000000000000000000001000000:18EB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   108        0 5151 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(parse_tcp(tcp6), [(5151, "[::1]:6379".parse().unwrap())]);
        // A dual-stack listener sees an IPv4 client as ::ffff:127.0.0.1.
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:6379".parse().unwrap();
        assert_eq!(canonical(mapped), "127.0.0.1:6379".parse().unwrap());
    }
}
