//! Asking a database process: where it listens, found from `/proc` (its fds' socket
//! inodes against `/proc/PID/net/unix`, `tcp`, `tcp6`; a Unix socket is preferred, else
//! loopback), and a RESP client for `INFO` and `CONFIG GET` of `save` and `disable-thp`,
//! written here (a few dozen lines: a client crate would bring a connection pool, async
//! runtimes and TLS for three requests), with a short timeout on every connect and read.
//! It only reads: no `BGSAVE`, no `CONFIG SET`. It knows nothing of doctor's verdicts.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use crate::os::fsread;
use crate::os::root::Root;

/// How long a connect, and each read, may take.
pub(crate) const TIMEOUT: Duration = Duration::from_millis(500);

/// The largest reply doctor reads (INFO is a few kB).
const MAX_REPLY: usize = 1024 * 1024;

/// Where a database listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A Unix socket, by its path in the database's mount namespace.
    Unix(PathBuf),
    /// A TCP socket.
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

/// The socket inodes among a process's fds.
fn socket_inodes(root: &Root, pid: u32) -> Result<Vec<u64>, String> {
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
    Ok(entries
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect())
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

/// `/proc/net/tcp` or `tcp6`: listening sockets' (inode, address).
pub fn parse_tcp(text: &str) -> Vec<(u64, SocketAddr)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // sl local_address rem_address st ... inode (the 10th field); st 0A = LISTEN.
            if *f.get(3)? != "0A" {
                return None;
            }
            let (addr, port) = f.get(1)?.split_once(':')?;
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
            Some((f.get(9)?.parse().ok()?, SocketAddr::new(ip, port)))
        })
        .collect()
}

/// Where `pid` listens, best first: Unix sockets, then loopback, then the rest (a wildcard
/// address reached through loopback).
pub(crate) fn endpoints(root: &Root, pid: u32) -> Result<Vec<Endpoint>, String> {
    let inodes = socket_inodes(root, pid)?;
    let read = |f: &str| {
        root.read_text(&format!("proc/{pid}/net/{f}"), fsread::PROC_LIMIT)
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for (ino, path) in parse_unix(&read("unix")) {
        if inodes.contains(&ino) {
            out.push(Endpoint::Unix(path));
        }
    }
    let mut tcp: Vec<SocketAddr> = parse_tcp(&read("tcp"))
        .into_iter()
        .chain(parse_tcp(&read("tcp6")))
        .filter(|(ino, _)| inodes.contains(ino))
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

/// A RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Status(String),
    /// `-ERR ...`
    Error(String),
    /// `:1`
    Int(i64),
    /// `$n` (None for `$-1`).
    Bulk(Option<Vec<u8>>),
    /// `*n` (None for `*-1`).
    Array(Option<Vec<Reply>>),
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Read one reply, never more than [`MAX_REPLY`] bytes of it.
pub fn read_reply(r: &mut impl BufRead, depth: u8) -> io::Result<Reply> {
    let mut line = Vec::new();
    r.take(MAX_REPLY as u64).read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\r\n") {
        return Err(bad("the connection closed mid-reply"));
    }
    line.truncate(line.len() - 2);
    let (kind, rest) = line.split_first().ok_or_else(|| bad("an empty reply"))?;
    let text = String::from_utf8_lossy(rest).into_owned();
    let num = || text.parse::<i64>().map_err(|_| bad("a malformed length"));
    Ok(match kind {
        b'+' => Reply::Status(text),
        b'-' => Reply::Error(text),
        b':' => Reply::Int(num()?),
        b'$' => {
            let n = num()?;
            if n < 0 {
                return Ok(Reply::Bulk(None));
            }
            let n = usize::try_from(n).map_err(|_| bad("a malformed length"))?;
            if n > MAX_REPLY {
                return Err(bad("a reply larger than doctor reads"));
            }
            let mut buf = vec![0; n + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(n);
            Reply::Bulk(Some(buf))
        }
        b'*' => {
            let n = num()?;
            if n < 0 {
                return Ok(Reply::Array(None));
            }
            if depth > 4 || n > 4096 {
                return Err(bad("a reply nested deeper than doctor reads"));
            }
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(read_reply(r, depth + 1)?);
            }
            Reply::Array(Some(items))
        }
        _ => return Err(bad("not a RESP reply (is this a Redis port?)")),
    })
}

/// A command as RESP: an array of bulk strings.
pub(crate) fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// A connection with a timeout on every read and write.
pub(crate) struct Conn {
    r: BufReader<Box<dyn Stream>>,
}

fn unix_connect(path: &std::path::Path) -> io::Result<UnixStream> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    let fd: OwnedFd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let addr = UnixAddr::new(path)?;
    match connect(fd.as_raw_fd(), &addr) {
        Ok(()) => {}
        Err(nix::errno::Errno::EINPROGRESS | nix::errno::Errno::EAGAIN) => {
            // A full backlog: wait for it, but not longer than the timeout.
            let mut fds = [nix::poll::PollFd::new(
                std::os::fd::AsFd::as_fd(&fd),
                nix::poll::PollFlags::POLLOUT,
            )];
            let ms = u16::try_from(TIMEOUT.as_millis()).unwrap_or(u16::MAX);
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

impl Conn {
    /// Connect to `at` (a Unix socket path is tried as the database sees it, through
    /// `/proc/PID/root`, then as is).
    pub(crate) fn open(at: &Endpoint, unix_paths: &[PathBuf]) -> io::Result<Conn> {
        let stream: Box<dyn Stream> = match at {
            Endpoint::Tcp(a) => {
                let s = TcpStream::connect_timeout(a, TIMEOUT)?;
                s.set_read_timeout(Some(TIMEOUT))?;
                s.set_write_timeout(Some(TIMEOUT))?;
                Box::new(s)
            }
            Endpoint::Unix(_) => {
                let mut last = io::Error::from(io::ErrorKind::NotFound);
                let mut found = None;
                for p in unix_paths {
                    match unix_connect(p) {
                        Ok(s) => {
                            found = Some(s);
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
                let s = found.ok_or(last)?;
                s.set_read_timeout(Some(TIMEOUT))?;
                s.set_write_timeout(Some(TIMEOUT))?;
                Box::new(s)
            }
        };
        Ok(Conn {
            r: BufReader::new(stream),
        })
    }

    /// Send one command and read its reply.
    pub(crate) fn ask(&mut self, args: &[&str]) -> io::Result<Reply> {
        self.r.get_mut().write_all(&encode(args))?;
        read_reply(&mut self.r, 0)
    }
}

/// `INFO`'s `key:value` lines.
pub fn parse_info(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim_end_matches('\r').split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What doctor learnt from one database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answers {
    /// INFO's fields.
    pub info: BTreeMap<String, String>,
    /// CONFIG GET results, by parameter; the error when it could not be read.
    pub config: BTreeMap<String, Result<String, String>>,
    /// Where it was asked.
    pub at: String,
}

/// Why a database gave no answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NoAnswer {
    /// It wants a password doctor does not have (or refused the one it has).
    NeedsPassword(String),
    /// Anything else: no socket, refused, timed out, not RESP.
    Other(String),
}

fn bulk_text(r: &Reply) -> Option<String> {
    match r {
        Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        Reply::Status(s) => Some(s.clone()),
        _ => None,
    }
}

/// Ask one database: AUTH (when a password is given), INFO, CONFIG GET save, disable-thp.
pub(crate) fn ask(
    at: &Endpoint,
    unix_paths: &[PathBuf],
    password: Option<&str>,
) -> Result<Answers, NoAnswer> {
    let fail = |e: io::Error| {
        let why = if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            format!("no answer from {at} within {} ms", TIMEOUT.as_millis())
        } else {
            format!("{at}: {e}")
        };
        NoAnswer::Other(why)
    };
    let mut conn = Conn::open(at, unix_paths).map_err(fail)?;
    if let Some(pw) = password {
        match conn.ask(&["AUTH", pw]).map_err(fail)? {
            Reply::Error(e) if e.contains("WRONGPASS") || e.contains("invalid password") => {
                return Err(NoAnswer::NeedsPassword(format!(
                    "the password was refused ({e})"
                )));
            }
            // "AUTH called without any password configured": fine, go on.
            _ => {}
        }
    }
    let info = match conn.ask(&["INFO"]).map_err(fail)? {
        Reply::Error(e) if e.starts_with("NOAUTH") => {
            return Err(NoAnswer::NeedsPassword(e));
        }
        Reply::Error(e) => return Err(NoAnswer::Other(format!("INFO refused: {e}"))),
        r => parse_info(&bulk_text(&r).unwrap_or_default()),
    };
    let mut config = BTreeMap::new();
    for param in ["save", "disable-thp"] {
        let got = match conn.ask(&["CONFIG", "GET", param]) {
            Ok(Reply::Array(Some(items))) => match items.get(1).and_then(bulk_text) {
                Some(v) => Ok(v),
                None => Err("not a parameter of this version".to_string()),
            },
            Ok(Reply::Error(e)) => Err(e),
            Ok(other) => Err(format!("unexpected reply {other:?}")),
            Err(e) => Err(e.to_string()),
        };
        config.insert(param.to_string(), got);
    }
    Ok(Answers {
        info,
        config,
        at: at.to_string(),
    })
}

/// The password to use: `REDISCLI_AUTH` (as redis-cli), unless `--password-file` gave one.
#[derive(Debug, Clone, Default)]
pub(crate) struct Auth {
    /// The password, if any.
    pub(crate) password: Option<String>,
}

impl Auth {
    /// From `--password-file` when given, else `REDISCLI_AUTH`.
    pub(crate) fn new(file_password: Option<String>) -> Auth {
        Auth {
            password: file_password.or_else(|| std::env::var("REDISCLI_AUTH").ok()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp_round_trip() {
        assert_eq!(
            encode(&["CONFIG", "GET", "save"]),
            b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$4\r\nsave\r\n"
        );
        let mut input: &[u8] =
            b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n-NOAUTH Authentication required.\r\n:5\r\n$-1\r\n";
        let mut r = BufReader::new(&mut input);
        assert_eq!(
            read_reply(&mut r, 0).unwrap(),
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"save".to_vec())),
                Reply::Bulk(Some(Vec::new()))
            ]))
        );
        assert_eq!(
            read_reply(&mut r, 0).unwrap(),
            Reply::Error("NOAUTH Authentication required.".into())
        );
        assert_eq!(read_reply(&mut r, 0).unwrap(), Reply::Int(5));
        assert_eq!(read_reply(&mut r, 0).unwrap(), Reply::Bulk(None));
        // Refused: a truncated reply, and something that is not RESP.
        assert!(read_reply(&mut BufReader::new(&b"$5\r\nab"[..]), 0).is_err());
        assert!(read_reply(&mut BufReader::new(&b"HTTP/1.1 400\r\n"[..]), 0).is_err());
        // Refused: a length larger than doctor reads.
        assert!(read_reply(&mut BufReader::new(&b"$99999999999\r\n"[..]), 0).is_err());
    }

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
        let tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 00000000000000000000000001000000:18EB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   108        0 5151 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(parse_tcp(tcp6), [(5151, "[::1]:6379".parse().unwrap())]);
    }
}
