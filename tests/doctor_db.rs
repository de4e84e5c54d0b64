//! `forksafe doctor` asks a real database: Debian's redis-server, started here as the
//! `redis` user on a Unix socket and a loopback port in a temp directory. doctor finds it
//! from /proc, reads it, and judges persistence, fork latency, copy-on-write,
//! fragmentation and maxmemory; a failed save whose cause is not the kernel is said to be
//! so; a password is needed and given; a server that accepts and never answers (stopped)
//! is unknown within the timeout, never a hang.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};

struct Redis {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Redis {
    fn start(extra: &[&str]) -> Redis {
        Self::start_with(None, extra)
    }

    /// Started as `redis-server CONFIG ...` when `config` is given (its text, written to a
    /// file in the temp directory).
    fn start_with(config: Option<&str>, extra: &[&str]) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["run", "data"] {
            let p = dir.path().join(sub);
            std::fs::create_dir(&p).unwrap();
            nix::unistd::chown(&p, Some(uid("redis")), Some(gid("redis"))).unwrap();
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let conf = config.map(|text| {
            let f = dir.path().join("redis.conf");
            std::fs::write(&f, text).unwrap();
            f
        });
        let child = Command::new("setpriv")
            .args(["--reuid=redis", "--regid=redis", "--init-groups", "--"])
            .arg("redis-server")
            .args(conf)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--unixsocket")
            .arg(dir.path().join("run/redis.sock"))
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path().join("data"))
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let r = Redis { child, dir, port };
        wait_for("redis to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", r.port)).is_ok()
                && r.dir.path().join("run/redis.sock").exists()
        });
        r
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn port(&self) -> u16 {
        self.port
    }

    fn cli(&self, args: &[&str]) -> String {
        let o = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .env("REDISCLI_AUTH", "s3cret")
            .output()
            .unwrap();
        text(&o.stdout)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGCONT,
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn uid(name: &str) -> nix::unistd::Uid {
    nix::unistd::User::from_name(name).unwrap().unwrap().uid
}

fn gid(name: &str) -> nix::unistd::Gid {
    nix::unistd::Group::from_name(name).unwrap().unwrap().gid
}

/// doctor --json on this machine; the checks about `pid`, by id without the `:PID`.
fn doctor(
    pid: u32,
    env: &[(&str, &str)],
    args: &[&str],
) -> Vec<(String, String, String, Option<String>)> {
    let mut cmd = Command::new(BIN);
    cmd.args(["--root", "/", "doctor", "--json"])
        .args(args)
        .env_remove("REDISCLI_AUTH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&o.stdout), text(&o.stderr)));
    let suffix = format!(":{pid}");
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| {
            let id = c["id"].as_str()?.strip_suffix(&suffix)?;
            Some((
                id.to_string(),
                c["status"].as_str()?.to_string(),
                c["message"].as_str()?.to_string(),
                c["fix"].as_str().map(str::to_string),
            ))
        })
        .collect()
}

fn status_of<'a>(
    checks: &'a [(String, String, String, Option<String>)],
    id: &str,
) -> &'a (String, String, String, Option<String>) {
    checks
        .iter()
        .find(|c| c.0 == id)
        .unwrap_or_else(|| panic!("no {id} in {checks:#?}"))
}

fn why_not() -> Option<&'static str> {
    if !is_root() {
        return Some("needs root (reads another user's /proc/PID/fd)");
    }
    for tool in ["redis-server", "redis-cli", "setpriv"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Some(
                "needs redis-server, redis-cli (apt-get install redis-server) and setpriv",
            );
        }
    }
    if nix::unistd::User::from_name("redis")
        .ok()
        .flatten()
        .is_none()
    {
        return Some("needs the redis user (Debian's redis-server package makes it)");
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
fn doctor_reads_a_real_redis_and_says_when_the_kernel_is_not_the_cause() {
    if let Some(why) = why_not() {
        eprintln!(
            "SKIPPED doctor_reads_a_real_redis_and_says_when_the_kernel_is_not_the_cause: {why}"
        );
        return;
    }
    let redis = Redis::start(&["--maxmemory", "64mb"]);
    redis.cli(&["SET", "k", "v"]);
    let checks = doctor(redis.pid(), &[], &[]);
    for id in DB_CHECKS {
        let c = status_of(&checks, id);
        assert!(c.1 == "ok" || c.1 == "warn", "{c:?}");
        assert!(!c.2.starts_with("unknown"), "{c:?}");
    }
    // Preferred: the Unix socket.
    let p = status_of(&checks, "persistence");
    assert!(p.2.contains("run/redis.sock"), "{p:?}");
    assert!(p.2.contains("no save schedule"), "{p:?}");

    // The dump directory unwritable for the server's user, then a BGSAVE: it fails, and
    // not because of the kernel.
    let data = redis.dir.path().join("data");
    nix::unistd::chown(
        &data,
        Some(nix::unistd::Uid::from_raw(0)),
        Some(nix::unistd::Gid::from_raw(0)),
    )
    .unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o555)).unwrap();
    redis.cli(&["BGSAVE"]);
    wait_for("the failed save", || {
        redis
            .cli(&["INFO", "persistence"])
            .contains("rdb_last_bgsave_status:err")
    });
    let checks = doctor(redis.pid(), &[], &[]);
    let p = status_of(&checks, "persistence");
    assert_eq!(p.1, "fail", "{p:?}");
    assert!(p.2.contains("rdb_last_bgsave_status is err"), "{p:?}");
    assert!(
        p.2.contains("the kernel settings do not explain it")
            || p.2.contains("the kernel explains it"),
        "{p:?}"
    );
    // This machine's overcommit decides which; with 1, or a fork that fits, not the kernel.
    let mode = std::fs::read_to_string("/proc/sys/vm/overcommit_memory").unwrap();
    if mode.trim() == "1" {
        assert!(p.2.contains("forksafe is not the fix"), "{p:?}");
    }
    assert!(p.3.as_deref().unwrap_or("").contains("log"), "{p:?}");
}

#[test]
fn doctor_needs_and_takes_a_password() {
    if let Some(why) = why_not() {
        eprintln!("SKIPPED doctor_needs_and_takes_a_password: {why}");
        return;
    }
    let redis = Redis::start(&["--requirepass", "s3cret"]);
    let checks = doctor(redis.pid(), &[], &[]);
    for id in DB_CHECKS {
        let c = status_of(&checks, id);
        assert_eq!(c.1, "unknown", "{c:?}");
        assert!(c.2.contains("needs a password"), "{c:?}");
        assert!(
            c.3.as_deref().unwrap_or("").contains("REDISCLI_AUTH"),
            "{c:?}"
        );
    }
    let checks = doctor(redis.pid(), &[("REDISCLI_AUTH", "s3cret")], &[]);
    assert_ne!(
        status_of(&checks, "persistence").1,
        "unknown",
        "{checks:#?}"
    );
    let pw = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(pw.path(), "s3cret\n").unwrap();
    let checks = doctor(
        redis.pid(),
        &[],
        &["--password-file", pw.path().to_str().unwrap()],
    );
    assert_ne!(
        status_of(&checks, "persistence").1,
        "unknown",
        "{checks:#?}"
    );
    // A wrong one is refused, and said.
    let checks = doctor(redis.pid(), &[("REDISCLI_AUTH", "wrong")], &[]);
    let p = status_of(&checks, "persistence");
    assert!(
        p.2.contains("the password from REDISCLI_AUTH was refused"),
        "{p:?}"
    );
    assert!(!p.2.contains("wrong"), "the secret is never said: {p:?}");
}

#[test]
fn a_server_that_never_answers_is_unknown_not_a_hang() {
    if let Some(why) = why_not() {
        eprintln!("SKIPPED a_server_that_never_answers_is_unknown_not_a_hang: {why}");
        return;
    }
    let redis = Redis::start(&[]);
    // Stopped, its sockets still accept (the kernel completes the connection) but nothing
    // ever answers.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(redis.pid() as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let checks = doctor(redis.pid(), &[], &[]);
    let p = status_of(&checks, "persistence");
    assert_eq!(p.1, "unknown", "{p:?}");
    assert!(p.2.contains("within 500 ms"), "{p:?}");
}

/// Many databases, each its own password: by port from --password-dir, from its own config
/// with --password-from-config; never printed; a wrong one is said with where it came from.
#[test]
fn doctor_takes_a_password_per_database() {
    if let Some(why) = why_not() {
        eprintln!("SKIPPED doctor_takes_a_password_per_database: {why}");
        return;
    }
    let a = Redis::start(&["--requirepass", "alpha-secret"]);
    let b = Redis::start(&["--requirepass", "bravo-secret"]);
    // set-proc-title no: its command line still names its config file.
    let c = Redis::start_with(
        Some("requirepass \"charlie secret\"\nset-proc-title no\n"),
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(a.port().to_string()), "alpha-secret\n").unwrap();
    std::fs::write(dir.path().join(b.port().to_string()), "bravo-secret\n").unwrap();
    let d = dir.path().to_str().unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(BIN)
            .args(["--root", "/", "doctor", "--json"])
            .args(args)
            .env_remove("REDISCLI_AUTH")
            .output()
            .unwrap();
        let out = text(&o.stdout);
        for secret in ["alpha-secret", "bravo-secret", "charlie"] {
            assert!(!out.contains(secret), "a secret in the output: {out}");
        }
        out
    };
    let _ = run(&[]);
    let checks = doctor(
        a.pid(),
        &[],
        &["--password-dir", d, "--password-from-config"],
    );
    assert_eq!(status_of(&checks, "persistence").1, "ok", "{checks:#?}");
    let checks = doctor(
        b.pid(),
        &[],
        &["--password-dir", d, "--password-from-config"],
    );
    assert_eq!(status_of(&checks, "persistence").1, "ok", "{checks:#?}");
    let checks = doctor(
        c.pid(),
        &[],
        &["--password-dir", d, "--password-from-config"],
    );
    assert_eq!(status_of(&checks, "persistence").1, "ok", "{checks:#?}");
    let _ = run(&["--password-dir", d, "--password-from-config"]);
    // Without opting in, its config is not read: it needs a password, and the fix names
    // every way to give one.
    let checks = doctor(c.pid(), &[], &["--password-dir", d]);
    let p = status_of(&checks, "persistence");
    assert_eq!(p.1, "unknown", "{p:?}");
    for option in ["--password-dir", "--password-from-config", "REDISCLI_AUTH"] {
        assert!(p.3.as_deref().unwrap_or("").contains(option), "{p:?}");
    }
    // A wrong one: refused, and where it came from is said, not what it is.
    std::fs::write(dir.path().join(a.port().to_string()), "wrong\n").unwrap();
    let checks = doctor(a.pid(), &[], &["--password-dir", d]);
    let p = status_of(&checks, "persistence");
    assert!(
        p.2.contains(&format!(
            "the password from --password-dir (port {}) was refused",
            a.port()
        )),
        "{p:?}"
    );
}
