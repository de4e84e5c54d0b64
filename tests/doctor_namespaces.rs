//! doctor asks each database in its own network namespace, and never attributes another's
//! answer to it. A real redis-server runs in a network namespace of its own (`unshare
//! --net`, loopback up) on the same port as a decoy redis-server on this machine's
//! loopback; the one inside has a failed save and maxmemory 10mb, the decoy a clean one and
//! maxmemory 99mb. doctor as root reports each one's own answers; as the database's user
//! (who may look at its sockets but not enter its namespace) the one inside is unknown with
//! the reason, never the decoy's answers.
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
    _dir: tempfile::TempDir,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A redis-server as the redis user on 127.0.0.1:`port`, in a network namespace of its own
/// when `own_netns`; its dump directory not writable for it when `failing`.
fn redis(port: u16, own_netns: bool, maxmemory: &str, failing: bool) -> Redis {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    if !failing {
        let redis = nix::unistd::User::from_name("redis").unwrap().unwrap();
        nix::unistd::chown(dir.path(), Some(redis.uid), Some(redis.gid)).unwrap();
    }
    let server = format!(
        "exec setpriv --reuid=redis --regid=redis --init-groups -- redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no --maxmemory {maxmemory} --dir {}",
        dir.path().display()
    );
    let mut cmd = if own_netns {
        let mut c = Command::new("unshare");
        c.args(["--net", "--", "sh", "-c"])
            .arg(format!("ip link set lo up && {server}"));
        c
    } else {
        let mut c = Command::new("sh");
        c.arg("-c").arg(server);
        c
    };
    let child = cmd.stdout(Stdio::null()).spawn().unwrap();
    let pid = child.id();
    // Listening, as its own namespace's table shows it (unshare and sh exec: the pid is
    // redis-server's).
    wait_for("redis-server to listen", || {
        let tcp = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "redis-server\n")
            && tcp
                .lines()
                .any(|l| l.contains(&format!(":{port:04X} ")) && l.contains(" 0A "))
    });
    Redis { child, _dir: dir }
}

/// redis-cli in the network namespace of `pid`.
fn cli_in(pid: u32, port: u16, args: &[&str]) -> String {
    let o = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["redis-cli", "-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    text(&o.stdout)
}

/// doctor --json on this machine, as root or through `as_user` (setpriv arguments).
fn doctor(as_user: Option<&[&str]>) -> Value {
    let mut cmd = match as_user {
        Some(u) => {
            let mut c = Command::new("setpriv");
            c.args(u).arg("--").arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    let o = cmd
        .args(["--root", "/", "doctor", "--json"])
        .env_remove("REDISCLI_AUTH")
        .output()
        .unwrap();
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&o.stdout), text(&o.stderr)))
}

fn check<'a>(v: &'a Value, id: &str, pid: u32) -> (&'a str, &'a str) {
    let id = format!("{id}:{pid}");
    let c = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {v:#}"));
    (
        c["status"].as_str().unwrap(),
        c["message"].as_str().unwrap(),
    )
}

fn why_not() -> Option<&'static str> {
    if !is_root() {
        return Some("needs root (unshare --net, setns)");
    }
    for tool in [
        &["redis-server", "--version"][..],
        &["redis-cli", "--version"],
        &["setpriv", "--version"],
        &["unshare", "--version"],
        &["nsenter", "--version"],
        &["ip", "-V"],
    ] {
        if Command::new(tool[0]).args(&tool[1..]).output().is_err() {
            return Some("needs redis-server, redis-cli, setpriv, unshare, nsenter and ip");
        }
    }
    if nix::unistd::User::from_name("redis")
        .ok()
        .flatten()
        .is_none()
    {
        return Some("needs the redis user (Debian's redis-server package makes it)");
    }
    if !can_unshare() {
        return Some("cannot make namespaces here");
    }
    None
}

#[test]
fn each_database_is_asked_in_its_own_network_namespace_never_the_decoy() {
    if let Some(why) = why_not() {
        eprintln!("SKIPPED each_database_is_asked_in_its_own_network_namespace: {why}");
        return;
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let inside = redis(port, true, "10mb", true);
    let decoy = redis(port, false, "99mb", false);
    let (inner, outer) = (inside.child.id(), decoy.child.id());
    // The one inside fails to save; the decoy saves fine.
    cli_in(inner, port, &["BGSAVE"]);
    wait_for("the failed save inside", || {
        cli_in(inner, port, &["INFO", "persistence"]).contains("rdb_last_bgsave_status:err")
    });
    cli_in(outer, port, &["BGSAVE"]);

    let v = doctor(None);
    let at = format!("at 127.0.0.1:{port}");
    let (status, msg) = check(&v, "persistence", inner);
    assert_eq!(status, "fail", "{msg}");
    assert!(
        msg.contains("rdb_last_bgsave_status is err") && msg.contains(&at),
        "{msg}"
    );
    let (status, msg) = check(&v, "maxmemory", inner);
    assert_eq!(status, "ok", "{msg}");
    assert!(msg.contains("maxmemory 10 MiB"), "{msg}");
    // The decoy's own answers, under its own pid.
    let (status, msg) = check(&v, "persistence", outer);
    assert_eq!(status, "ok", "{msg}");
    assert!(check(&v, "maxmemory", outer).1.contains("maxmemory 99 MiB"));

    // As the databases' user: it may look at their sockets, not enter another namespace.
    let v = doctor(Some(&["--reuid=redis", "--regid=redis", "--init-groups"]));
    for id in ["persistence", "maxmemory", "cow"] {
        let (status, msg) = check(&v, id, inner);
        assert_eq!(status, "unknown", "{msg}");
        assert!(
            msg.contains("it runs in another network namespace; run doctor as root"),
            "{msg}"
        );
        assert!(!msg.contains("99 MiB"), "{msg}");
    }
    let (status, msg) = check(&v, "maxmemory", outer);
    assert_eq!(status, "ok", "{msg}");
    assert!(msg.contains("maxmemory 99 MiB"), "{msg}");
}
