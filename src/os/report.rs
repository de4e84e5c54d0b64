//! Reporting: every event goes to the journal as a structured entry (with a fixed
//! `MESSAGE_ID` per kind of event) when forksafe runs under systemd, or as one line on stderr
//! otherwise (plain text, or with `--log-format json` one JSON object per line carrying the
//! same fields); and the sd_notify messages the daemon sends.
//!
//! Nothing here may block the daemon's loop. Journal entries are sent on our own
//! non-blocking datagram socket with journald's native protocol: an entry journald has no
//! room for is dropped and counted, and the count is said once the journal takes entries
//! again. (The systemd-journal-logger crate sends on a blocking socket that cannot be made
//! non-blocking from outside, so a stalled journald would stall the daemon.)

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use log::{Level, Log, Metadata, Record};
use sd_notify::NotifyState;

/// journald's native socket.
pub(crate) const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// The kinds of event forksafe reports. Each has its own `MESSAGE_ID` and an entry in
/// `packaging/forksafe.catalog`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
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
    /// A sysctl.d assignment (or the lack of one) would undo a knob at the next boot.
    BootOverride,
    /// The managed sysctl.d drop-in was (re)written.
    DropinWritten,
    /// A file sits at the drop-in's path without forksafe's header; left alone.
    DropinForeign,
    /// Something keeps setting a knob back: the fight starts (it is still repaired).
    FightDetected,
    /// A fight goes on: the summary, at most every 10 minutes.
    FightOngoing,
    /// A knob that was failing, drifting or fought over is in spec again, or an override
    /// is gone.
    BackInSpec,
    /// doctor (on its timer): a check fails that did not at its last run.
    DoctorFailed,
    /// doctor (on its timer): a check that failed at its last run no longer does.
    DoctorRecovered,
}

impl EventKind {
    /// The journal `MESSAGE_ID` (made with `systemd-id128 new`; never change one).
    pub(crate) fn message_id(self) -> &'static str {
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
            EventKind::FightOngoing => "000e289e8ee849e59680a2ff361b68b3",
            EventKind::BackInSpec => "b60bd663bb304d83919a830e837a028f",
            EventKind::DoctorFailed => "e329ac33d786414eb11c1ceee1d20f71",
            EventKind::DoctorRecovered => "59be5d33e637439183f139b131fde5e5",
        }
    }

    fn level(self) -> Level {
        match self {
            EventKind::Enforced
            | EventKind::Repaired
            | EventKind::ConfigReloaded
            | EventKind::DropinWritten
            | EventKind::BackInSpec
            | EventKind::DoctorRecovered => Level::Info,
            EventKind::DriftDetected
            | EventKind::KnobAbsent
            | EventKind::BootOverride
            | EventKind::DropinForeign
            | EventKind::FightDetected
            | EventKind::FightOngoing => Level::Warn,
            EventKind::RepairFailed | EventKind::ConfigRejected | EventKind::DoctorFailed => {
                Level::Error
            }
        }
    }
}

/// A field's value. The journal takes every value as text; a JSON line keeps the type, so
/// a field is always one or the other: `LINE`, `CONFIG_LINE`, `COUNT` and `ERRNO` are
/// numbers, the rest text.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Text(String),
    Number(serde_json::Number),
}

impl Value {
    fn text(&self) -> String {
        match self {
            Value::Text(s) => s.clone(),
            Value::Number(n) => n.to_string(),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Value::Text(s) => serde_json::Value::String(s.clone()),
            Value::Number(n) => serde_json::Value::Number(n.clone()),
        }
    }
}

/// One event: its kind, a sentence for people, and fields for the journal (`KNOB`,
/// `EXPECTED`, `OBSERVED`, `ERRNO`, `FILE`, `LINE`, ...).
pub(crate) struct Event {
    kind: EventKind,
    message: String,
    fields: Vec<(&'static str, Value)>,
}

impl Event {
    /// An event of `kind` saying `message`.
    pub(crate) fn new(kind: EventKind, message: impl Into<String>) -> Event {
        Event {
            kind,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    /// Add a text field (upper-case name).
    pub(crate) fn field(mut self, name: &'static str, value: impl ToString) -> Event {
        self.fields.push((name, Value::Text(value.to_string())));
        self
    }

    /// Add a number field (`LINE`, `CONFIG_LINE`, `COUNT`): a JSON number in JSON lines.
    pub(crate) fn number(mut self, name: &'static str, n: impl Into<serde_json::Number>) -> Event {
        self.fields.push((name, Value::Number(n.into())));
        self
    }

    /// Add `ERRNO` when there is one.
    pub(crate) fn errno(self, errno: Option<i32>) -> Event {
        match errno {
            Some(e) => self.number("ERRNO", e),
            None => self,
        }
    }

    /// Its kind (for tests of what is said).
    #[cfg(test)]
    pub(crate) fn kind(&self) -> EventKind {
        self.kind
    }

    /// Its sentence (for tests of what is said).
    #[cfg(test)]
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// A field's value as the journal gets it (for tests of what is said).
    #[cfg(test)]
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        self.fields
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.text())
    }

    /// Log it.
    pub(crate) fn emit(self) {
        let mut fields = Vec::with_capacity(self.fields.len() + 1);
        fields.push(("MESSAGE_ID", Value::Text(self.kind.message_id().into())));
        fields.extend(self.fields);
        write(self.kind.level(), &self.message, &fields);
    }
}

/// What was last said (or written), so that it goes out again only when it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Memo<T>(Option<T>);

impl<T> Default for Memo<T> {
    fn default() -> Self {
        Memo(None)
    }
}

impl<T: PartialEq> Memo<T> {
    /// Remember `value`; whether it differs from what was remembered.
    pub(crate) fn changed(&mut self, value: T) -> bool {
        if self.0.as_ref() == Some(&value) {
            false
        } else {
            self.0 = Some(value);
            true
        }
    }

    /// [`Memo::changed`] for a borrowed value: copied only when it is news.
    pub(crate) fn changed_to<Q>(&mut self, value: &Q) -> bool
    where
        T: std::borrow::Borrow<Q>,
        Q: ?Sized + PartialEq + ToOwned<Owned = T>,
    {
        if self.is(value) {
            false
        } else {
            self.0 = Some(value.to_owned());
            true
        }
    }

    /// Whether `value` is what was remembered.
    pub(crate) fn is<Q>(&self, value: &Q) -> bool
    where
        T: std::borrow::Borrow<Q>,
        Q: ?Sized + PartialEq,
    {
        self.0.as_ref().is_some_and(|v| v.borrow() == value)
    }

    /// Forget: the next value is news whatever it is.
    pub(crate) fn forget(&mut self) {
        self.0 = None;
    }
}

/// How lines go to stderr when the journal is not in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `forksafe: info: message`.
    Text,
    /// One JSON object per line, in the names log shippers look for (`time`, `level`,
    /// `msg`), then the event's own fields under their journal names (`MESSAGE_ID`, `KNOB`,
    /// ...). See [`json_line`].
    Json,
}

/// Where entries go.
enum Target {
    /// journald's native socket (stderr is connected to the journal).
    Journal(UnixDatagram),
    /// stderr, as text or JSON.
    Stderr(Format),
}

struct Sink {
    target: Target,
    /// Entries journald had no room for since the last one it took.
    dropped: u64,
}

static SINK: OnceLock<Mutex<Sink>> = OnceLock::new();

fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// The level's name, as text lines and JSON lines say it (and as Loki, Fluent Bit and
/// Vector recognise it).
fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warning",
        Level::Info => "info",
        Level::Debug | Level::Trace => "debug",
    }
}

/// journald's native format: `KEY=value\n`, or for a value with a newline `KEY\n`, its
/// length as 64-bit little endian, the value, `\n`.
fn journal_entry(level: Level, message: &str, fields: &[(&str, Value)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let priority = syslog_priority(level).to_string();
    let base = [
        ("PRIORITY", priority),
        ("SYSLOG_IDENTIFIER", "forksafe".to_string()),
        ("MESSAGE", message.to_string()),
    ];
    let rest = fields.iter().map(|(k, v)| (*k, v.text()));
    for (k, v) in base.into_iter().chain(rest) {
        out.extend_from_slice(k.as_bytes());
        if v.contains('\n') {
            out.push(b'\n');
            out.extend_from_slice(&(v.len() as u64).to_le_bytes());
            out.extend_from_slice(v.as_bytes());
        } else {
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
        }
        out.push(b'\n');
    }
    out
}

/// The time as RFC 3339 in UTC, for JSON lines (`2026-11-22T10:04:05.123Z`).
fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// One JSON line: `time` (RFC 3339, UTC), `level` (`error`, `warning`, `info`, `debug`) and
/// `msg` first, in the names log shippers look for, then the event's fields in the order
/// they were added, each always of one type (see [`Value`]). journald's own envelope
/// (`MESSAGE`, `PRIORITY`, `SYSLOG_IDENTIFIER`, its timestamp) is not repeated: `msg`,
/// `level` and `time` say the same once.
fn json_line(time: &str, level: Level, message: &str, fields: &[(&str, Value)]) -> String {
    let head = [
        ("time", serde_json::Value::from(time)),
        ("level", level_name(level).into()),
        ("msg", message.into()),
    ];
    let rest = fields.iter().map(|(k, v)| (*k, v.json()));
    let members: Vec<String> = head
        .into_iter()
        .chain(rest)
        .map(|(k, v)| format!("{}:{v}", serde_json::Value::from(k)))
        .collect();
    format!("{{{}}}", members.join(","))
}

fn stderr_line(format: Format, level: Level, message: &str, fields: &[(&str, Value)]) {
    let line = match format {
        Format::Text => format!("forksafe: {}: {message}", level_name(level)),
        Format::Json => json_line(&rfc3339_now(), level, message, fields),
    };
    // A failed write to stderr has nowhere better to go; never panic over it.
    let _ = writeln!(io::stderr().lock(), "{line}");
}

/// Send one entry to wherever entries go. Never blocks on journald.
fn write(level: Level, message: &str, fields: &[(&str, Value)]) {
    if level > log::max_level() {
        return;
    }
    let Some(sink) = SINK.get() else {
        stderr_line(Format::Text, level, message, fields);
        return;
    };
    let mut sink = match sink.lock() {
        Ok(s) => s,
        Err(poisoned) => poisoned.into_inner(),
    };
    let sent = match &sink.target {
        Target::Stderr(format) => {
            stderr_line(*format, level, message, fields);
            return;
        }
        Target::Journal(sock) => {
            sock.send_to(&journal_entry(level, message, fields), JOURNAL_SOCKET)
        }
    };
    match sent {
        Ok(_) if sink.dropped > 0 => {
            let note = format!(
                "journald was not taking entries: {} were dropped rather than wait for it",
                sink.dropped
            );
            if let Target::Journal(sock) = &sink.target {
                if sock
                    .send_to(&journal_entry(Level::Warn, &note, &[]), JOURNAL_SOCKET)
                    .is_ok()
                {
                    sink.dropped = 0;
                }
            }
        }
        Ok(_) => {}
        // journald's queue is full (or it is stalled): drop, count, never wait.
        Err(e)
            if matches!(e.kind(), io::ErrorKind::WouldBlock)
                || e.raw_os_error() == Some(nix::libc::ENOBUFS) =>
        {
            sink.dropped += 1;
        }
        // No journald at all: stderr is a better place than nowhere.
        Err(_) => stderr_line(Format::Text, level, message, fields),
    }
}

/// The `log` crate's lines (those without an event kind) take the same way.
struct Reporter;

impl Log for Reporter {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            write(record.level(), &record.args().to_string(), &[]);
        }
    }

    fn flush(&self) {}
}

/// Whether stderr is connected to the journal (`JOURNAL_STREAM` names its device and inode).
fn connected_to_journal() -> bool {
    let Ok(st) = nix::sys::stat::fstat(io::stderr().as_fd()) else {
        return false;
    };
    std::env::var("JOURNAL_STREAM").is_ok_and(|v| v == format!("{}:{}", st.st_dev, st.st_ino))
}

fn journal_socket() -> Option<UnixDatagram> {
    if !Path::new(JOURNAL_SOCKET).exists() {
        return None;
    }
    let sock = UnixDatagram::unbound().ok()?;
    sock.set_nonblocking(true).ok()?;
    Some(sock)
}

/// Install the logger. `FORKSAFE_LOG` sets the level: `debug` adds debug lines, `warn`
/// leaves out the info lines; anything else (or unset) is `info`. With `Format::Text`, entries
/// go to the journal when stderr is connected to it; with `Format::Json`, always to stderr.
pub(crate) fn init(format: Format) {
    let target = match format {
        Format::Text if connected_to_journal() => match journal_socket() {
            Some(sock) => Target::Journal(sock),
            None => Target::Stderr(Format::Text),
        },
        f => Target::Stderr(f),
    };
    let _ = SINK.set(Mutex::new(Sink { target, dropped: 0 }));
    let level = match std::env::var("FORKSAFE_LOG").as_deref() {
        Ok("debug") => log::LevelFilter::Debug,
        Ok("warn") => log::LevelFilter::Warn,
        _ => log::LevelFilter::Info,
    };
    if log::set_logger(&Reporter).is_ok() {
        log::set_max_level(level);
    }
}

/// The daemon's side of sd_notify. Messages are formatted by the sd-notify crate but sent
/// on our own non-blocking socket: its `notify()` sends on a blocking one, and a service
/// manager that stops reading would then freeze the daemon's loop once the socket's queue is
/// full. A message that cannot be sent is dropped; failures are logged once per kind.
#[derive(Default)]
pub(crate) struct Notifier {
    warned_unreachable: bool,
    warned_full: bool,
    last_status: Memo<String>,
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
    pub(crate) fn ready(&mut self, status: &str) {
        self.last_status.changed_to(status);
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// `STATUS=`, sent only when it changed.
    pub(crate) fn status(&mut self, status: &str) {
        if self.last_status.changed_to(status) {
            self.send(&[NotifyState::Status(status)]);
        }
    }

    /// `RELOADING=1` and `MONOTONIC_USEC=` in one message.
    pub(crate) fn reloading(&mut self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    /// `STOPPING=1`.
    pub(crate) fn stopping(&mut self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// `WATCHDOG=1`.
    pub(crate) fn watchdog(&mut self) {
        self.send(&[NotifyState::Watchdog]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_entries_use_the_native_format() {
        let fields = [
            ("KNOB", Value::Text("vm.x".into())),
            ("LINE", Value::Number(3.into())),
        ];
        let e = journal_entry(Level::Warn, "two\nlines", &fields);
        let mut want = b"PRIORITY=4\nSYSLOG_IDENTIFIER=forksafe\nMESSAGE\n".to_vec();
        want.extend_from_slice(&9u64.to_le_bytes());
        want.extend_from_slice(b"two\nlines\nKNOB=vm.x\nLINE=3\n");
        assert_eq!(e, want);
    }

    #[test]
    fn json_lines_lead_with_time_level_msg_and_keep_each_fields_type() {
        let e = Event::new(EventKind::BootOverride, "say \"this\"\n")
            .field("FILE", "/etc/sysctl.d/50-x.conf")
            .number("LINE", 7usize)
            .errno(Some(2));
        let line = json_line(
            "2026-11-22T10:04:05.123Z",
            Level::Warn,
            &e.message,
            &e.fields,
        );
        assert_eq!(
            line,
            r#"{"time":"2026-11-22T10:04:05.123Z","level":"warning","msg":"say \"this\"\n","FILE":"/etc/sysctl.d/50-x.conf","LINE":7,"ERRNO":2}"#
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["LINE"], 7);
        assert_eq!(level_name(Level::Error), "error");
        assert_eq!(level_name(Level::Debug), "debug");
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = rfc3339_now();
        assert_eq!(t.len(), 24, "{t}");
        assert!(
            t.starts_with("20") && t.ends_with('Z') && t.as_bytes()[10] == b'T',
            "{t}"
        );
    }

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
