//! Reporting: every event goes to the journal as a structured entry (with a fixed
//! `MESSAGE_ID` per kind of event) when forksafe runs under systemd, or as one plain line on
//! stderr otherwise; and the three sd_notify messages the daemon sends.

use std::io::{self, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use log::{Level, Log, Metadata, Record};
use sd_notify::NotifyState;
use systemd_journal_logger::JournalLog;

/// The kinds of event forksafe reports. Each has its own `MESSAGE_ID` and an entry in
/// `packaging/forksafe.catalog`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A knob was checked (and set if needed) at daemon start or after a reload.
    Enforced,
    /// A knob had drifted and was set back.
    Repaired,
    /// A knob could not be set (or read).
    RepairFailed,
    /// SIGHUP: the new config is in force.
    ConfigReloaded,
    /// SIGHUP: the new config was refused; the running one stays.
    ConfigRejected,
    /// Audit mode: a knob drifted and was left alone.
    DriftDetected,
    /// The knob does not exist on this kernel.
    KnobAbsent,
    /// A sysctl.d assignment would undo a knob at the next boot.
    BootOverride,
    /// The managed sysctl.d drop-in was (re)written.
    DropinWritten,
    /// A file sits at the drop-in's path without forksafe's header; left alone.
    DropinForeign,
    /// Something keeps setting a knob back; forksafe backs off that knob.
    FightDetected,
    /// A knob that was failing, drifting or fought over is in spec again, or an override
    /// is gone.
    BackInSpec,
}

impl EventKind {
    /// The journal `MESSAGE_ID` (made with `systemd-id128 new`; never change one).
    pub fn message_id(self) -> &'static str {
        match self {
            EventKind::Enforced => "dd25fd83375d42a4b0f8587e746d5112",
            EventKind::Repaired => "fd55663f9c5d410482beace9df653b3a",
            EventKind::RepairFailed => "0ed79e5f3bf24e27bfe907604790112e",
            EventKind::ConfigReloaded => "6ac561a86c0f4b88b0f6f82163653389",
            EventKind::ConfigRejected => "df099d7d7148455cae35ece8501026a6",
            EventKind::DriftDetected => "4bf4b112dddc49869689e3085e267f86",
            EventKind::KnobAbsent => "dacbd119305b4785a81174fb80f5e5a6",
            EventKind::BootOverride => "a9581c4f941e40d19fcb2e72f96de47e",
            EventKind::DropinWritten => "c369b56c4f4c4615ae61888dc110721c",
            EventKind::DropinForeign => "9e676a0337a440559ee0182e5519111b",
            EventKind::FightDetected => "3a69a71df52941a586f35b12362f6799",
            EventKind::BackInSpec => "b60bd663bb304d83919a830e837a028f",
        }
    }

    fn level(self) -> Level {
        match self {
            EventKind::Enforced
            | EventKind::Repaired
            | EventKind::ConfigReloaded
            | EventKind::DropinWritten
            | EventKind::BackInSpec => Level::Info,
            EventKind::DriftDetected
            | EventKind::KnobAbsent
            | EventKind::BootOverride
            | EventKind::DropinForeign
            | EventKind::FightDetected => Level::Warn,
            EventKind::RepairFailed | EventKind::ConfigRejected => Level::Error,
        }
    }
}

/// One event: its kind, a sentence for people, and fields for the journal (`KNOB`,
/// `EXPECTED`, `OBSERVED`, `ERRNO`, `FILE`, `LINE`, ...).
pub struct Event {
    kind: EventKind,
    message: String,
    fields: Vec<(&'static str, String)>,
}

impl Event {
    /// An event of `kind` saying `message`.
    pub fn new(kind: EventKind, message: impl Into<String>) -> Event {
        Event {
            kind,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    /// Add a journal field (upper-case name).
    pub fn field(mut self, name: &'static str, value: impl ToString) -> Event {
        self.fields.push((name, value.to_string()));
        self
    }

    /// Add `ERRNO` when there is one.
    pub fn errno(self, errno: Option<i32>) -> Event {
        match errno {
            Some(e) => self.field("ERRNO", e),
            None => self,
        }
    }

    /// Log it.
    pub fn emit(self) {
        let mut kvs: Vec<(&str, &str)> = Vec::with_capacity(self.fields.len() + 1);
        kvs.push(("MESSAGE_ID", self.kind.message_id()));
        kvs.extend(self.fields.iter().map(|(k, v)| (*k, v.as_str())));
        log::logger().log(
            &Record::builder()
                .level(self.kind.level())
                .target("forksafe")
                .args(format_args!("{}", self.message))
                .key_values(&kvs)
                .build(),
        );
    }
}

/// The logger: the journal when stderr is connected to it, else stderr. A record the
/// journal does not take (socket gone) goes to stderr instead of being lost.
struct Reporter {
    journal: Option<JournalLog>,
}

impl Log for Reporter {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        if let Some(journal) = &self.journal {
            if journal.journal_send(record).is_ok() {
                return;
            }
        }
        let level = match record.level() {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug | Level::Trace => "debug",
        };
        // A failed write to stderr has nowhere better to go; never panic over it.
        let _ = writeln!(
            std::io::stderr().lock(),
            "forksafe: {level}: {}",
            record.args()
        );
    }

    fn flush(&self) {}
}

/// Install the logger. `FORKSAFE_LOG=debug` adds debug lines.
pub fn init() {
    let journal = if systemd_journal_logger::connected_to_journal() {
        JournalLog::new()
            .ok()
            .map(|j| j.with_syslog_identifier("forksafe".to_string()))
    } else {
        None
    };
    let level = match std::env::var("FORKSAFE_LOG").as_deref() {
        Ok("debug") => log::LevelFilter::Debug,
        Ok("warn") => log::LevelFilter::Warn,
        _ => log::LevelFilter::Info,
    };
    if log::set_boxed_logger(Box::new(Reporter { journal })).is_ok() {
        log::set_max_level(level);
    }
}

/// The daemon's side of sd_notify. Messages are formatted by the sd-notify crate but sent
/// on our own non-blocking socket: its `notify()` sends on a blocking one, and a service
/// manager that stops reading would then freeze the daemon's loop once the socket's queue is
/// full. A message that cannot be sent is dropped; failures are logged once per kind.
#[derive(Default)]
pub struct Notifier {
    warned_unreachable: bool,
    warned_full: bool,
    last_status: String,
}

/// Send `msg` to `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace) without
/// ever blocking.
fn notify_nonblocking(socket: &std::ffi::OsStr, msg: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    sock.set_nonblocking(true)?;
    match socket.as_bytes().strip_prefix(b"@") {
        Some(name) => sock.connect_addr(&SocketAddr::from_abstract_name(name)?)?,
        None => sock.connect(socket)?,
    }
    let sent = sock.send(msg.as_bytes())?;
    if sent == msg.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "incomplete notification",
        ))
    }
}

impl Notifier {
    fn send(&mut self, states: &[NotifyState]) {
        let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
            return;
        };
        let msg: String = states.iter().map(|s| format!("{s}\n")).collect();
        match notify_nonblocking(&socket, &msg) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !self.warned_full {
                    self.warned_full = true;
                    log::warn!(
                        "the service manager is not reading NOTIFY_SOCKET (its queue is full); \
                         notifications are dropped until it reads again (reported once)"
                    );
                }
            }
            Err(e) => {
                if !self.warned_unreachable {
                    self.warned_unreachable = true;
                    log::warn!(
                        "cannot notify the service manager through NOTIFY_SOCKET: {e}; \
                         readiness and watchdog pings will not arrive (reported once)"
                    );
                }
            }
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&mut self, status: &str) {
        self.last_status = status.to_string();
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// `STATUS=`, sent only when it changed.
    pub fn status(&mut self, status: &str) {
        if self.last_status != status {
            self.last_status = status.to_string();
            self.send(&[NotifyState::Status(status)]);
        }
    }

    /// `RELOADING=1` and `MONOTONIC_USEC=` in one message.
    pub fn reloading(&mut self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    /// `STOPPING=1`.
    pub fn stopping(&mut self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&mut self) {
        self.send(&[NotifyState::Watchdog]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_reaches_abstract_and_path_sockets_and_never_blocks() {
        let name = format!("forksafe-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
            .unwrap();
        let at = std::ffi::OsString::from(format!("@{name}"));
        notify_nonblocking(&at, "READY=1\n").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let _rx = UnixDatagram::bind(&path).unwrap();
        // Nobody reads: the queue fills, and then sending fails at once instead of blocking.
        let full = (0..1000)
            .map(|_| notify_nonblocking(path.as_os_str(), "STATUS=x\n"))
            .find_map(Result::err)
            .unwrap();
        assert_eq!(full.kind(), io::ErrorKind::WouldBlock);
    }
}
