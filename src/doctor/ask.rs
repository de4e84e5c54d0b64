//! Asking one database process what it says about itself: `AUTH` (when doctor has a
//! password for it), `INFO`, and `CONFIG GET` of `save` and `disable-thp`. It only reads: no
//! `BGSAVE`, no `CONFIG SET`. It knows nothing of doctor's verdicts.
//!
//! Bounded by construction: one deadline ([`DEADLINE`]) for the whole exchange, every
//! endpoint tried and every command included, however the server drips its bytes; one
//! budget ([`MAX_REPLY`]) for everything it sends. And an answer is attributed only to the
//! process that gave it: a Unix socket is reached through the process's own root and its
//! peer must be that process (before any password is sent); TCP is dialled from inside the
//! process's own network namespace, and the server end of the connection must be one of
//! its sockets.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::os::root::Root;
use crate::os::{inroot, netns, proc};

use super::listen::{Endpoint, served_by};
use super::resp::{MAX_REPLY, Reply, encode, parse_info, read_within, text};

/// How long the whole exchange with one database may take.
pub(crate) const DEADLINE: Duration = Duration::from_millis(500);

/// A password for one database, and where it came from (said, never the secret).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Login {
    /// The ACL user, when not `default`.
    pub(crate) user: Option<String>,
    /// The password.
    pub(crate) password: String,
    /// Where it came from, for messages: `REDISCLI_AUTH`, `--password-file`, ...
    pub(crate) from: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Login(from {})", self.from)
    }
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
    /// Anything else: no socket, refused, timed out, not RESP, not attributable.
    Other(String),
}

/// The moment the exchange must be over.
#[derive(Debug, Clone, Copy)]
struct Deadline(Instant);

impl Deadline {
    /// The time left, or a timeout error when none is.
    fn left(self) -> io::Result<Duration> {
        self.0
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "the deadline passed"))
    }
}

/// A connected socket.
enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// A socket whose every read and write waits at most until the deadline.
struct Timed {
    sock: Sock,
    deadline: Deadline,
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = Some(self.deadline.left()?);
        match &mut self.sock {
            Sock::Tcp(s) => {
                s.set_read_timeout(left)?;
                s.read(buf)
            }
            Sock::Unix(s) => {
                s.set_read_timeout(left)?;
                s.read(buf)
            }
        }
    }
}

impl Write for Timed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = Some(self.deadline.left()?);
        match &mut self.sock {
            Sock::Tcp(s) => {
                s.set_write_timeout(left)?;
                s.write(buf)
            }
            Sock::Unix(s) => {
                s.set_write_timeout(left)?;
                s.write(buf)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One connection: the deadline on every byte, the budget on all replies together.
struct Conn {
    r: BufReader<Timed>,
    budget: usize,
}

impl Conn {
    fn new(sock: Sock, deadline: Deadline) -> Conn {
        Conn {
            r: BufReader::new(Timed { sock, deadline }),
            budget: MAX_REPLY,
        }
    }

    /// Send one command and read its reply.
    fn ask(&mut self, args: &[&str]) -> io::Result<Reply> {
        self.r.get_mut().write_all(&encode(args))?;
        read_within(&mut self.r, &mut self.budget, 0)
    }
}

/// Text a server (or a local user) chose, made safe to print: no control characters, and
/// not longer than a line.
pub(crate) fn printable(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(200)
        .collect();
    if s.chars().count() > 200 {
        out.push_str("...");
    }
    out
}

/// What to say about an I/O error of the exchange with `at`.
fn failed(at: &Endpoint, e: &io::Error) -> NoAnswer {
    NoAnswer::Other(match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!(
            "no complete answer from {at} within {} ms",
            DEADLINE.as_millis()
        ),
        _ => format!("{at}: {e}"),
    })
}

/// Connect to `at`, as the process `pid` sees it.
fn connect(root: &Root, pid: u32, at: &Endpoint, deadline: Deadline) -> Result<Sock, NoAnswer> {
    let left = deadline.left().map_err(|e| failed(at, &e))?;
    let path = |rel: String| {
        root.join(&rel)
            .ok_or_else(|| NoAnswer::Other(format!("no path {rel} under the root")))
    };
    match at {
        Endpoint::Unix(p) => {
            let s = inroot::connect_unix(&path(format!("proc/{pid}/root"))?, p, left)
                .map_err(|e| failed(at, &e))?;
            // Its peer is the process that listens: it must be this one, before any
            // password is sent to it.
            if !proc::same_pid_namespace(root) {
                return Err(NoAnswer::Other(format!(
                    "cannot tell which process answers at {at}: doctor runs in another pid namespace than {}/proc (run it in the host's, as kubectl debug node does)",
                    root.dir().display()
                )));
            }
            match inroot::peer_pid(&s) {
                Ok(p) if u32::try_from(p) == Ok(pid) => Ok(Sock::Unix(s)),
                Ok(p) => Err(NoAnswer::Other(format!(
                    "the socket {at} is held by another process (pid {p}), not this one; not asked"
                ))),
                Err(e) => Err(NoAnswer::Other(format!(
                    "cannot tell which process answers at {at}: {e}"
                ))),
            }
        }
        Endpoint::Tcp(addr) => {
            let ns = path(format!("proc/{pid}/ns/net"))?;
            let ours =
                netns::is_ours(&ns, &path(format!("proc/{pid}/net/dev"))?).map_err(|why| {
                    NoAnswer::Other(format!(
                        "cannot tell which network namespace it runs in ({why}); run doctor as root"
                    ))
                })?;
            if ours {
                return TcpStream::connect_timeout(addr, left)
                    .map(Sock::Tcp)
                    .map_err(|e| failed(at, &e));
            }
            netns::connect_in(&ns, *addr, left)
                .map(Sock::Tcp)
                .map_err(|e| match e {
                    netns::Refused::NotPermitted(e) => NoAnswer::Other(format!(
                        "it runs in another network namespace; run doctor as root to ask it there (entering it: {e})"
                    )),
                    netns::Refused::Io(e) => failed(at, &e),
                })
        }
    }
}

/// AUTH (with `login`), INFO, CONFIG GET save and disable-thp, over `conn`.
fn exchange(conn: &mut Conn, at: &Endpoint, login: Option<&Login>) -> Result<Answers, NoAnswer> {
    let fail = |e: io::Error| failed(at, &e);
    if let Some(l) = login {
        let mut args = vec!["AUTH"];
        args.extend(l.user.as_deref());
        args.push(&l.password);
        match conn.ask(&args).map_err(fail)? {
            Reply::Error(e) if e.contains("WRONGPASS") || e.contains("invalid") => {
                return Err(NoAnswer::NeedsPassword(format!(
                    "the password from {} was refused ({})",
                    l.from,
                    printable(&e)
                )));
            }
            // "AUTH called without any password configured": fine, go on.
            _ => {}
        }
    }
    let info = match conn.ask(&["INFO"]).map_err(fail)? {
        Reply::Error(e) if e.starts_with("NOAUTH") => {
            return Err(NoAnswer::NeedsPassword(printable(&e)));
        }
        Reply::Error(e) => {
            return Err(NoAnswer::Other(format!("INFO refused: {}", printable(&e))));
        }
        r => parse_info(&text(&r).unwrap_or_default()),
    };
    let mut config = BTreeMap::new();
    for param in ["save", "disable-thp"] {
        let got = match conn.ask(&["CONFIG", "GET", param]) {
            Ok(Reply::Array(Some(items))) => match items.get(1).and_then(text) {
                Some(v) => Ok(printable(&v)),
                None => Err("not a parameter of this version".to_string()),
            },
            Ok(Reply::Error(e)) => Err(printable(&e)),
            Ok(other) => Err(format!(
                "unexpected reply {}",
                printable(&format!("{other:?}"))
            )),
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

/// Ask the database `pid` at the first of `eps` that answers, all within [`DEADLINE`],
/// with `login` when doctor has a password for it.
pub(crate) fn ask(
    root: &Root,
    pid: u32,
    eps: &[Endpoint],
    login: Option<&Login>,
) -> Result<Answers, NoAnswer> {
    let deadline = Deadline(Instant::now() + DEADLINE);
    let mut last = NoAnswer::Other("it listens on no socket doctor can find".into());
    for at in eps {
        let sock = match connect(root, pid, at, deadline) {
            Ok(s) => s,
            Err(e) => {
                last = e;
                continue;
            }
        };
        let addrs = match &sock {
            Sock::Tcp(s) => Some(s.local_addr().and_then(|ours| Ok((ours, s.peer_addr()?)))),
            Sock::Unix(_) => None,
        };
        let mut conn = Conn::new(sock, deadline);
        let got = exchange(&mut conn, at, login);
        // The server end of a TCP connection must be this process's own socket (the
        // connection is still open, so its row is there).
        let said = matches!(got, Ok(_) | Err(NoAnswer::NeedsPassword(_)));
        if let (true, Some(addrs)) = (said, addrs) {
            if !addrs.is_ok_and(|(ours, theirs)| served_by(root, pid, ours, theirs)) {
                last = NoAnswer::Other(format!(
                    "the answer at {at} came from another process than pid {pid}; not used"
                ));
                continue;
            }
        }
        match got {
            Ok(a) => return Ok(a),
            // Every endpoint of one server wants the same password.
            Err(e @ NoAnswer::NeedsPassword(_)) => return Err(e),
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_outside_is_made_printable() {
        assert_eq!(printable("ERR \u{1b}]0;pwned\u{7}x\n"), "ERR ?]0;pwned?x?");
        assert_eq!(printable(&"a".repeat(300)).len(), 203);
        // A secret is never in a login's debug form.
        let l = Login {
            user: None,
            password: "s3cret".into(),
            from: "REDISCLI_AUTH".into(),
        };
        assert!(!format!("{l:?}").contains("s3cret"));
    }

    #[test]
    fn the_deadline_is_for_the_whole_exchange() {
        let d = Deadline(Instant::now() + Duration::from_millis(50));
        assert!(d.left().is_ok());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(d.left().unwrap_err().kind(), io::ErrorKind::TimedOut);
    }
}
