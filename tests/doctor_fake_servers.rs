//! Nothing a database (or any local user who names a process `redis-server`) does can stall
//! or fool doctor. Fake servers, real processes named `redis-server` (Debian's python3
//! under that name) on real sockets, misbehave on purpose: one drips a byte every 300 ms,
//! one floods, one nests arrays of 1 MiB strings, one leaves out the fields a verdict needs,
//! and a hundred never answer. doctor must say "unknown" with the reason, within its
//! deadline, and ask a bounded number of them at a time (counted at the servers, not
//! timed).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The fake server: MODE LOG [COUNT]. COUNT processes (forked), each listening on its own
/// loopback port; every event is a line appended to LOG.
const SERVER: &str = r##"
import os, socket, sys, time
mode, log = sys.argv[1], sys.argv[2]
count = int(sys.argv[3]) if len(sys.argv) > 3 else 1

def note(s):
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, s.encode())
    os.close(fd)

def bulk(b):
    return b"$%d\r\n%s\r\n" % (len(b), b)

# An INFO without rdb_last_bgsave_status and used_memory.
INFO = (b"# Server\r\nredis_version:7.0.15\r\n# Persistence\r\naof_last_bgrewrite_status:ok\r\n"
        b"aof_last_write_status:ok\r\nlatest_fork_usec:0\r\n# Memory\r\nused_memory_rss:1000000\r\n"
        b"mem_fragmentation_ratio:1.20\r\nmaxmemory:0\r\ntotal_system_memory:1000000000\r\n")

def serve(c):
    if mode == "silent":
        # How many connections from the doctor under test (its pid in doctor.pid: any doctor
        # on the machine asks these servers too) to the fake servers are open now, as the
        # kernel sees them (server ends ESTABLISHED; one doctor closed is CLOSE_WAIT at once).
        pidfile = os.path.join(os.path.dirname(log), "doctor.pid")
        for _ in range(100):
            if os.path.exists(pidfile):
                break
            time.sleep(0.01)
        doctor = open(pidfile).read().strip()
        def held():
            out = set()
            for fd in os.listdir("/proc/%s/fd" % doctor):
                try:
                    out.add(os.readlink("/proc/%s/fd/%s" % (doctor, fd)))
                except OSError:
                    pass
            return out
        # Held before and after the table is read: a socket doctor closed meanwhile (its
        # server end not yet CLOSE_WAIT on a loaded machine) is not counted as open.
        before = held()
        ports = {int(l.split()[2]) for l in open(log) if l.startswith("ready ")}
        rows = [l.split() for l in open("/proc/net/tcp").readlines()[1:]]
        fds = before & held()
        # Doctor's end of a connection by its four addresses: the kernel reuses a local
        # port for connections to other servers, so the local address alone is ambiguous.
        inode = {(r[1], r[2]): r[9] for r in rows}
        ours = lambda r: "socket:[%s]" % inode.get((r[2], r[1]), "0") in fds
        # Counted once per connection: /proc/net/tcp is read in pieces, and a table that
        # changes between two pieces can show the same row twice.
        n = len({(r[1], r[2]) for r in rows
                 if r[3] == "01" and int(r[1].split(":")[1], 16) in ports and ours(r)})
        peer = "%08X:%04X" % (0x0100007F, c.getpeername()[1])
        me = any(r[2] == peer and ours(r) for r in rows)
        note("+ %d %d\n" % (me, n))
        while c.recv(4096):
            pass
        note("-\n")
        return
    while True:
        data = c.recv(65536)
        if not data:
            return
        if mode == "drip":
            for b in bulk(INFO):
                c.send(bytes([b]))
                note("byte\n")
                time.sleep(0.3)
        elif mode == "flood":
            c.sendall(b"+")
            chunk = b"x" * 65536
            while True:
                c.sendall(chunk)
                note("64k\n")
        elif mode == "nest":
            c.sendall(b"*4096\r\n*4096\r\n")
            s = bulk(b"x" * (1024 * 1024))
            while True:
                c.sendall(s)
                note("1m\n")
        elif mode == "omit":
            if b"INFO" in data:
                c.sendall(bulk(INFO))
            elif b"CONFIG" in data:
                c.sendall(b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n")
            else:
                c.sendall(b"+OK\r\n")

me = 0
for i in range(1, count):
    if os.fork() == 0:
        me = i
        break
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
note("ready %d %d\n" % (os.getpid(), s.getsockname()[1]))
while True:
    c, _ = s.accept()
    try:
        serve(c)
    except OSError:
        pass
    finally:
        c.close()
"##;

/// A group of fake servers, killed together when dropped.
struct Fake {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Fake {
    fn start(mode: &str, count: usize) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let python = std::fs::canonicalize("/usr/bin/python3").unwrap();
        let exe = dir.path().join("redis-server");
        std::os::unix::fs::symlink(&python, &exe).unwrap();
        let script = dir.path().join("fake.py");
        std::fs::write(&script, SERVER).unwrap();
        let log = dir.path().join("log");
        use std::os::unix::process::CommandExt;
        let child = Command::new(&exe)
            .arg(&script)
            .args([mode, log.to_str().unwrap(), &count.to_string()])
            .process_group(0)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let f = Fake {
            child,
            log,
            _dir: dir,
        };
        wait_for("the fake servers to listen", || {
            f.lines().iter().filter(|l| l.starts_with("ready ")).count() == count
        });
        f
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The pids of the servers.
    fn pids(&self) -> Vec<u32> {
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix("ready ")?.split(' ').next()?.parse().ok())
            .collect()
    }

    fn count(&self, event: &str) -> usize {
        self.lines().iter().filter(|l| *l == event).count()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
    }
}

/// `doctor --json` on this machine, never waiting on it for more than a minute (before
/// this was fixed, a dripping server kept it for days).
fn doctor() -> Value {
    doctor_telling(None)
}

/// [`doctor`], its pid written to `pid_file` for the fake servers.
fn doctor_telling(pid_file: Option<&Path>) -> Value {
    let child = Command::new(BIN)
        .args(["--root", "/", "doctor", "--json"])
        .env_remove("REDISCLI_AUTH")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    if let Some(f) = pid_file {
        std::fs::write(f, pid.to_string()).unwrap();
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let Ok(o) = rx.recv_timeout(Duration::from_secs(60)) else {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        panic!("doctor still runs after a minute: stalled");
    };
    let o = o.unwrap();
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&o.stdout), text(&o.stderr)))
}

/// The check `id:pid` in doctor's output.
fn check<'a>(v: &'a Value, id: &str, pid: u32) -> &'a Value {
    let id = format!("{id}:{pid}");
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {v:#}"))
}

/// Every doctor run asks every fake server on the machine: one test at a time, so the
/// servers count one doctor's connections.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn why_not() -> Option<&'static str> {
    if !is_root() {
        return Some("needs root (reads the fake servers' /proc/PID/fd like a database's)");
    }
    if !Path::new("/usr/bin/python3").exists() {
        return Some("needs /usr/bin/python3 (Debian's python3-minimal) for the fake servers");
    }
    None
}

const DB_CHECKS: [&str; 5] = [
    "persistence",
    "fork-latency",
    "cow",
    "fragmentation",
    "maxmemory",
];

#[test]
fn a_dripping_server_is_unknown_within_the_deadline() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = why_not() {
        eprintln!("SKIPPED a_dripping_server_is_unknown_within_the_deadline: {why}");
        return;
    }
    let fake = Fake::start("drip", 1);
    let pid = fake.pids()[0];
    let v = doctor();
    for id in DB_CHECKS {
        let c = check(&v, id, pid);
        assert_eq!(c["status"], "unknown", "{c:#}");
        assert!(
            c["message"]
                .as_str()
                .unwrap()
                .contains("no complete answer from 127.0.0.1:"),
            "{c:#}"
        );
        assert!(c["message"].as_str().unwrap().contains("within 500 ms"));
    }
    // A byte every 300 ms: within one 500 ms deadline it got two bytes out, three at most
    // (the write of the next byte may land before it sees the connection closed).
    let sent = fake.count("byte");
    assert!((1..=3).contains(&sent), "{sent} bytes dripped");
}

#[test]
fn a_flood_and_nested_arrays_of_large_strings_stop_at_the_budget() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = why_not() {
        eprintln!("SKIPPED a_flood_and_nested_arrays_of_large_strings_stop_at_the_budget: {why}");
        return;
    }
    let flood = Fake::start("flood", 1);
    let nest = Fake::start("nest", 1);
    let v = doctor();
    for pid in [flood.pids()[0], nest.pids()[0]] {
        let c = check(&v, "persistence", pid);
        assert_eq!(c["status"], "unknown", "{c:#}");
        assert!(
            c["message"]
                .as_str()
                .unwrap()
                .contains("a reply larger than doctor reads"),
            "{c:#}"
        );
    }
    // The nested strings: doctor stopped after about one of them (1 MiB is its budget for
    // everything a database sends), not after 4096 x 4096; the kernel's socket buffers
    // took a few more before the server saw the connection closed.
    let sent = nest.count("1m");
    assert!(sent < 64, "{sent} strings of 1 MiB were sent");
}

#[test]
fn an_answer_without_the_fields_a_verdict_needs_is_unknown() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = why_not() {
        eprintln!("SKIPPED an_answer_without_the_fields_a_verdict_needs_is_unknown: {why}");
        return;
    }
    let fake = Fake::start("omit", 1);
    let pid = fake.pids()[0];
    let v = doctor();
    // No rdb_last_bgsave_status: not "the last save succeeded".
    let p = check(&v, "persistence", pid);
    assert_eq!(p["status"], "unknown", "{p:#}");
    assert!(
        p["message"]
            .as_str()
            .unwrap()
            .contains("reports no valid rdb_last_bgsave_status"),
        "{p:#}"
    );
    // No used_memory: not 0.
    for id in ["cow", "fragmentation"] {
        let c = check(&v, id, pid);
        assert_eq!(c["status"], "unknown", "{c:#}");
        assert!(
            c["message"].as_str().unwrap().contains("used_memory"),
            "{c:#}"
        );
    }
    // What it did say is judged.
    assert_eq!(check(&v, "fork-latency", pid)["status"], "ok");
    assert_eq!(check(&v, "maxmemory", pid)["status"], "warn");
    assert_eq!(v["complete"], false);
}

#[test]
fn a_hundred_silent_listeners_are_asked_a_bounded_number_at_a_time() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = why_not() {
        eprintln!("SKIPPED a_hundred_silent_listeners_are_asked_a_bounded_number_at_a_time: {why}");
        return;
    }
    let fake = Fake::start("silent", 100);
    let pids = fake.pids();
    assert_eq!(pids.len(), 100);
    let v = doctor_telling(Some(&fake.log.with_file_name("doctor.pid")));
    for pid in &pids {
        let c = check(&v, "persistence", *pid);
        assert_eq!(c["status"], "unknown", "{c:#}");
        assert!(
            c["message"].as_str().unwrap().contains("within 500 ms"),
            "{c:#}"
        );
    }
    // How many of its connections were open at once, counted by the kernel at each accept
    // of one of them.
    let opened: Vec<usize> = fake
        .lines()
        .iter()
        .filter_map(|l| l.strip_prefix("+ 1 ")?.parse().ok())
        .collect();
    assert_eq!(opened.len(), 100, "{:?}", fake.lines());
    let most = opened.iter().copied().max().unwrap();
    // Asked several at a time (a hundred deadlines one after another would be 50 s), and
    // no more than doctor's bound (16).
    assert!(
        (2..=16).contains(&most),
        "{most} at once; at each accept: {opened:?}"
    );
}
