//! Shared helpers for the integration tests: fixture trees, running the real binary, and a
//! daemon harness that listens on its NOTIFY_SOCKET.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_forksafe");
pub const THP: &str = "sys/kernel/mm/transparent_hugepage";
pub const OVERCOMMIT: &str = "proc/sys/vm/overcommit_memory";

/// How long a liveness wait may take before the test fails. Generous: these machines are
/// shared and slow; the tests assert that something happens, not how fast.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let ft = entry.file_type().unwrap();
        if ft.is_dir() {
            copy_tree(&entry.path(), &target);
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A private copy of `tests/fixtures/<name>/root`.
pub struct Tree {
    pub dir: tempfile::TempDir,
    pub name: String,
}

impl Tree {
    pub fn new(name: &str) -> Tree {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&fixtures().join(name).join("root"), dir.path());
        Tree {
            dir,
            name: name.to_string(),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// Set a knob's fixture file as another writer of a kernel knob would: see [`set_file`].
    pub fn set(&self, rel: &str, text: &str) {
        set_file(&self.path(rel), text);
    }

    /// Set overcommit to 0 as a neighbour would, and wait (`what`) until the daemon has
    /// set it back to 1.
    pub fn drift_overcommit_until_repaired(&self, what: &str) {
        self.set(OVERCOMMIT, "0\n");
        wait_for(what, || self.read(OVERCOMMIT) == "1\n");
    }

    /// Every file of `tests/fixtures/<name>/expected` has the same content here.
    pub fn assert_matches_expected(&self) {
        let expected = fixtures().join(&self.name).join("expected");
        let mut stack = vec![expected.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let p = entry.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let rel = p.strip_prefix(&expected).unwrap();
                let got = std::fs::read_to_string(self.root().join(rel))
                    .unwrap_or_else(|e| format!("<{e}>"));
                assert_eq!(
                    got,
                    std::fs::read_to_string(&p).unwrap(),
                    "{}",
                    rel.display()
                );
            }
        }
    }

    /// Every file's content in the tree, to show that a command wrote nothing.
    pub fn snapshot(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut stack = vec![self.root().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let e = e.unwrap();
                let p = e.path();
                let ft = e.file_type().unwrap();
                let rel = p.strip_prefix(self.root()).unwrap().display().to_string();
                if ft.is_dir() {
                    stack.push(p);
                } else if ft.is_file() {
                    out.push((rel, std::fs::read_to_string(&p).unwrap_or_default()));
                } else if ft.is_symlink() {
                    // Never followed: a link may point at a FIFO or a device.
                    let to = std::fs::read_link(&p).unwrap();
                    out.push((rel, format!("<symlink to {}>", to.display())));
                } else {
                    out.push((rel, "<not a regular file>".to_string()));
                }
            }
        }
        out.sort();
        out
    }

    /// Run the real binary with `--root` this tree.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--root")
            .arg(self.root())
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .output()
            .unwrap()
    }
}

/// How often `needle` occurs in `log`.
pub fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Poll `cond` until it holds or PATIENCE runs out.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A running `forksafe run` with a NOTIFY_SOCKET we listen on and stderr in a file.
pub struct Daemon {
    pub child: Child,
    pub notify: UnixDatagram,
    pub stderr: PathBuf,
    _sock_dir: tempfile::TempDir,
}

impl Daemon {
    /// Start `forksafe --root <root> run` (through `wrap`, e.g. `unshare`, when given).
    pub fn start(root: &Path, env: &[(&str, &str)]) -> Daemon {
        Self::start_with(root, env, None)
    }

    pub fn start_with(root: &Path, env: &[(&str, &str)], wrap: Option<&[&str]>) -> Daemon {
        Self::start_args(root, &[], env, wrap)
    }

    /// Start `forksafe --root <root> <args> run`.
    pub fn start_args(
        root: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        wrap: Option<&[&str]>,
    ) -> Daemon {
        Self::start_full(root, args, env, wrap, false)
    }

    /// As [`Daemon::start_args`]; with `journal`, JOURNAL_STREAM names the stderr file, as
    /// systemd does when stderr is connected to the journal.
    pub fn start_full(
        root: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        wrap: Option<&[&str]>,
        journal: bool,
    ) -> Daemon {
        let sock_dir = tempfile::tempdir().unwrap();
        let sock = sock_dir.path().join("notify");
        let notify = UnixDatagram::bind(&sock).unwrap();
        notify.set_read_timeout(Some(PATIENCE)).unwrap();
        let stderr = sock_dir.path().join("stderr");
        let stderr_file = std::fs::File::create(&stderr).unwrap();
        let stream = {
            use std::os::unix::fs::MetadataExt;
            let md = stderr_file.metadata().unwrap();
            format!("{}:{}", md.dev(), md.ino())
        };
        let mut cmd = match wrap {
            Some(w) => {
                let mut c = Command::new(w[0]);
                c.args(&w[1..]);
                c
            }
            None => Command::new(BIN),
        };
        cmd.arg("--root")
            .arg(root)
            .args(args)
            .arg("run")
            .env("NOTIFY_SOCKET", &sock)
            .env_remove("JOURNAL_STREAM")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .stdout(Stdio::null())
            .stderr(stderr_file);
        if journal {
            cmd.env("JOURNAL_STREAM", stream);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        Daemon {
            child: cmd.spawn().unwrap(),
            notify,
            stderr,
            _sock_dir: sock_dir,
        }
    }

    /// The next datagram on the notify socket.
    pub fn next_message(&self) -> String {
        let mut buf = [0u8; 4096];
        loop {
            match self.notify.recv(&mut buf) {
                Ok(n) => return text(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("no sd_notify message: {e}; stderr:\n{}", self.log()),
            }
        }
    }

    /// Read messages until one contains `needle`; return it.
    pub fn wait_message(&self, needle: &str) -> String {
        loop {
            let m = self.next_message();
            if m.contains(needle) {
                return m;
            }
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// SIGTERM, then the exit code (waiting at most PATIENCE).
    pub fn stop(mut self) -> (i32, String) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code().unwrap_or(-1), self.log());
            }
            assert!(start.elapsed() < PATIENCE, "daemon ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether private mount namespaces can be made here (root and unshare(1)).
pub fn can_unshare() -> bool {
    is_root() && Command::new("unshare").arg("--version").output().is_ok()
}

/// The command line that runs `script` with sh in a private mount namespace (its mounts
/// vanish with it); as [`Daemon`]'s `wrap`, "$@" in the script is the daemon's own.
pub fn mount_namespace_argv(script: &str) -> [&str; 8] {
    [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
    ]
}

/// Run `script` with sh in a private mount namespace: its mounts vanish with it.
pub fn in_mount_namespace(script: &str) -> Output {
    let argv = mount_namespace_argv(script);
    Command::new(argv[0]).args(&argv[1..]).output().unwrap()
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The real kernel's three default knobs.
pub const REAL_KNOBS: [&str; 3] = [
    "/proc/sys/vm/overcommit_memory",
    "/sys/kernel/mm/transparent_hugepage/defrag",
    "/sys/kernel/mm/transparent_hugepage/enabled",
];

/// A kernel file's value, normalised (`always [madvise] never` -> `madvise`).
pub fn read_knob(path: &str) -> String {
    forksafe::normalize(&std::fs::read_to_string(path).unwrap())
}

/// Replace a knob fixture file's content the way a kernel knob changes: one pwrite(2) at
/// offset 0, no O_TRUNC, never a second call, so a reader racing it (the daemon) sees the old
/// value or the new one, never an empty file, and the daemon's own write back is never cut
/// or re-extended by what follows. A value shorter than the file is padded with spaces
/// after it (whitespace the kernel formats ignore, as the daemon's reader does).
pub fn set_file(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap();
    let before = f.metadata().unwrap().len() as usize;
    let padded = format!("{text}{}", " ".repeat(before.saturating_sub(text.len())));
    f.write_all_at(padded.as_bytes(), 0).unwrap();
}

pub fn write_knob(path: &str, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(format!("{value}\n").as_bytes())
}

/// Saves the real kernel's knobs and puts them back when dropped, whatever happened
/// (a failed assertion unwinds through it too).
pub struct Restore(pub Vec<(&'static str, String)>);

impl Restore {
    pub fn save() -> Restore {
        Restore(REAL_KNOBS.iter().map(|k| (*k, read_knob(k))).collect())
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        for (path, value) in self.0.iter().rev() {
            if let Err(e) = write_knob(path, value) {
                eprintln!("FAILED to restore {path} to {value}: {e}");
            }
        }
    }
}

/// The CPU time of every thread of process `pid`, nanoseconds (schedstat, summed over
/// `/proc/PID/task`: the daemon has a second thread for its sysctl.d and neighbour looks).
pub fn cpu_ns(pid: u32) -> u64 {
    per_thread(pid, "schedstat", |s| {
        s.split_whitespace().next().and_then(|v| v.parse().ok())
    })
}

/// Context switches (voluntary and not) of every thread of process `pid`.
pub fn switches(pid: u32) -> u64 {
    per_thread(pid, "status", |s| {
        let field = |name: &str| -> Option<u64> {
            s.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        };
        Some(field("voluntary_ctxt_switches:")? + field("nonvoluntary_ctxt_switches:")?)
    })
}

fn per_thread(pid: u32, file: &str, value: impl Fn(&str) -> Option<u64>) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join(file)).ok())
        .filter_map(|s| value(&s))
        .sum()
}
