//! Whether forksafe's own daemon holds this machine: its unit installed, and a daemon that
//! counts. A process named `forksafe` running `run` counts only when it holds doctor's
//! root (its `--root`, looked up inside its own mount namespace, is the very directory
//! doctor reads) with doctor's config (the same file, or the same content), and when the
//! state file under that root names it (its pid in its own pid namespace, that
//! namespace, its start time). Then its mode is the one it publishes. Any local user can
//! start a `forksafe run` against a root of their own; it never makes this machine look held.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::{DEFAULT_CONFIG, Settings, Source};
use crate::os::fsread;
use crate::os::inroot;
use crate::os::proc::{self, Process};
use crate::os::root::Root;
use crate::published::{self, State};

use super::check::{Check, Verdict, check};

/// The daemon's options that take a value (as `forksafe --help` lists them).
const VALUED: [&str; 7] = [
    "--root",
    "--config",
    "-c",
    "--log-format",
    "--password-file",
    "--pid",
    "--watch-via",
];

/// `--root` and `--config` of a `forksafe ... run` command line; `None` for another command.
fn run_args(args: &[String]) -> Option<(PathBuf, Option<PathBuf>)> {
    let mut root = PathBuf::from("/");
    let mut config = None;
    let mut command = None;
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        if VALUED.contains(&flag) {
            let v = inline.or_else(|| it.next().cloned())?;
            match flag {
                "--root" => root = PathBuf::from(v),
                "--config" | "-c" => config = Some(PathBuf::from(v)),
                _ => {}
            }
        } else if !flag.starts_with('-') && command.is_none() {
            command = Some(a.as_str());
        }
    }
    (command == Some("run")).then_some((root, config))
}

/// What doctor found of forksafe's daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// It holds this root with this config: its pid (in the root's `/proc`) and mode.
    Holds { pid: u32, repair: bool },
    /// It holds this root, with another config: its pid, its config as it names it, and its
    /// mode when it publishes it.
    OtherConfig {
        pid: u32,
        config: String,
        repair: Option<bool>,
    },
    /// It holds this root, but the state file under it does not name it.
    NoState { pid: u32 },
    /// forksafe daemons run, none of them with this root: what each holds.
    Elsewhere(Vec<String>),
    /// Whether one holds this root cannot be told: why.
    Unknown(String),
    /// No forksafe daemon runs.
    None,
}

impl Found {
    /// Whether a daemon holds the knobs doctor judges (the next boot's values are set again
    /// early in boot then).
    pub(crate) fn holds(&self) -> bool {
        matches!(self, Found::Holds { .. })
    }
}

/// `path` of the process `pid`, as it names it (relative to its working directory when
/// not absolute), inside its root: which file it is.
fn theirs(root: &Root, pid: u32, path: &Path) -> Result<(u64, u64), String> {
    let proc_root = root
        .join(format!("proc/{pid}/root"))
        .ok_or("no /proc under the root")?;
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        let cwd = root
            .join(format!("proc/{pid}/cwd"))
            .and_then(|c| std::fs::read_link(c).ok())
            .ok_or_else(|| format!("cannot read /proc/{pid}/cwd (run doctor as root)"))?;
        cwd.join(path)
    };
    inroot::identity(&proc_root, &path).map_err(|e| {
        let hint = if e.is_denied() {
            " (run doctor as root)"
        } else {
            ""
        };
        format!(
            "cannot look inside /proc/{pid}/root at {}: {e}{hint}",
            path.display()
        )
    })
}

/// The same config: the same file or the same bytes.
fn same_config(root: &Root, pid: u32, state: &State, settings: &Settings) -> bool {
    let ours: Option<Vec<u8>> = match &settings.source {
        Source::Builtin => Some(DEFAULT_CONFIG.as_bytes().to_vec()),
        Source::File(p) => fsread::read(p, fsread::CONFIG_LIMIT).ok(),
    };
    let Some(theirs_path) = &state.config_file else {
        return ours.as_deref() == Some(DEFAULT_CONFIG.as_bytes());
    };
    if let (Source::File(p), Ok(id)) = (&settings.source, theirs(root, pid, theirs_path)) {
        if std::fs::metadata(p).is_ok_and(|m| (m.dev(), m.ino()) == id) {
            return true;
        }
    }
    let proc_root = root.join(format!("proc/{pid}/root"));
    let bytes = proc_root.and_then(|r| inroot::read(&r, theirs_path, fsread::CONFIG_LIMIT).ok());
    bytes.is_some() && bytes == ours
}

/// Whether the state names process `pid` (in the root's `/proc`): its pid in its own pid
/// namespace, and, when published, that namespace and its start time.
fn names(root: &Root, pid: u32, state: &State) -> bool {
    let id = &state.identity;
    proc::innermost_pid(root, pid).unwrap_or(pid) == state.pid
        && id
            .pid_namespace
            .is_none_or(|ns| proc::namespace(root, pid, "pid").is_ok_and(|n| n == ns))
        && id
            .start_time
            .is_none_or(|t| proc::start_time(root, pid) == Some(t))
}

/// Find forksafe's daemon among `processes`, as it relates to `root` and `settings`.
pub(crate) fn find(root: &Root, processes: &[Process], settings: &Settings) -> Found {
    let ours = match std::fs::metadata(root.dir()) {
        Ok(m) => (m.dev(), m.ino()),
        Err(e) => return Found::Unknown(format!("cannot look at {}: {e}", root.dir().display())),
    };
    let state = published::read_file(root);
    let mut elsewhere = Vec::new();
    let mut unknown = None;
    let mut unnamed = None;
    for p in processes.iter().filter(|p| p.comm == "forksafe") {
        let Some((droot, _)) = proc::cmdline(root, p.pid).ok().and_then(|a| run_args(&a)) else {
            continue;
        };
        match theirs(root, p.pid, &droot) {
            Ok(id) if id == ours => {}
            Ok(_) => {
                elsewhere.push(format!("pid {} holds {}", p.pid, droot.display()));
                continue;
            }
            Err(why) => {
                unknown.get_or_insert(format!("a forksafe daemon (pid {}) runs, but {why}", p.pid));
                continue;
            }
        }
        let Some(state) = state.as_ref().filter(|s| names(root, p.pid, s)) else {
            // Another one holding this root may be the one the state names.
            unnamed.get_or_insert(p.pid);
            continue;
        };
        if same_config(root, p.pid, state, settings) {
            return Found::Holds {
                pid: p.pid,
                repair: state.identity.repair.unwrap_or(settings.repair),
            };
        }
        return Found::OtherConfig {
            pid: p.pid,
            config: state
                .config_file
                .as_ref()
                .map_or("the compiled-in default".into(), |c| {
                    c.display().to_string()
                }),
            repair: state.identity.repair,
        };
    }
    if let Some(pid) = unnamed {
        return Found::NoState { pid };
    }
    match (unknown, elsewhere.is_empty()) {
        (Some(why), _) => Found::Unknown(why),
        (None, false) => Found::Elsewhere(elsewhere),
        (None, true) => Found::None,
    }
}

/// Whether the forksafe unit is installed under `root`.
pub(crate) fn installed(root: &Root) -> bool {
    [
        "usr/lib/systemd/system/forksafe.service",
        "lib/systemd/system/forksafe.service",
        "etc/systemd/system/forksafe.service",
    ]
    .iter()
    .any(|p| root.join(p).is_some_and(|p| p.exists()))
}

fn mode(repair: bool) -> &'static str {
    if repair { "repair" } else { "audit" }
}

/// The `service` check.
pub(crate) fn service(root: &Root, installed: bool, found: &Found, settings: &Settings) -> Check {
    let start = if installed {
        "systemctl enable --now forksafe"
    } else {
        "install the forksafe package (it enables and starts the daemon)"
    };
    match found {
        Found::Holds { pid, repair: true } => check(
            "service",
            Verdict::Ok,
            format!(
                "the forksafe daemon (pid {pid}) is running in repair mode, with this root and config"
            ),
            None,
        ),
        Found::Holds { pid, repair: false } => check(
            "service",
            Verdict::Warn,
            format!(
                "the forksafe daemon (pid {pid}) is running in audit mode: drift is reported, not repaired"
            ),
            Some(&format!(
                "set repair = true in {}, then systemctl reload forksafe",
                settings.source
            )),
        ),
        Found::OtherConfig {
            pid,
            config,
            repair,
        } => check(
            "service",
            Verdict::Warn,
            format!(
                "the forksafe daemon (pid {pid}) holds this root with another config ({config} as it names it; doctor judged {}){}",
                settings.source,
                repair.map_or(String::new(), |r| format!(", in {} mode", mode(r)))
            ),
            Some(&format!(
                "to judge the knobs against the daemon's own config, give doctor the same file: --config {config} (a path in the daemon's mount namespace; from a container, copy it out first)"
            )),
        ),
        Found::NoState { pid } => check(
            "service",
            Verdict::Unknown,
            format!(
                "unknown: a forksafe daemon (pid {pid}) holds this root, but {} does not name it (starting, or stopping?)",
                published::PATH
            ),
            None,
        ),
        Found::Elsewhere(which) => check(
            "service",
            Verdict::Warn,
            format!(
                "no forksafe daemon holds this root ({}): {}",
                root.dir().display(),
                which.join("; ")
            ),
            Some(start),
        ),
        Found::Unknown(why) => check("service", Verdict::Unknown, format!("unknown: {why}"), None),
        Found::None if installed => check(
            "service",
            Verdict::Warn,
            "forksafe is installed but its daemon is not running",
            Some(start),
        ),
        Found::None => check(
            "service",
            Verdict::Warn,
            "the forksafe daemon is not installed: nothing keeps these settings from drifting",
            Some(start),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn the_daemons_root_and_config_from_its_command_line() {
        assert_eq!(
            run_args(&args("/usr/sbin/forksafe run")),
            Some(("/".into(), None))
        );
        assert_eq!(
            run_args(&args(
                "forksafe --root=/host --config /etc/forksafe/forksafe.toml --log-format=json run"
            )),
            Some(("/host".into(), Some("/etc/forksafe/forksafe.toml".into())))
        );
        assert_eq!(
            run_args(&args(
                "forksafe -c /x.toml --watch-via /run/forksafe/host run"
            )),
            Some(("/".into(), Some("/x.toml".into())))
        );
        // Refused: another command; a value that looks like the command.
        assert_eq!(run_args(&args("forksafe doctor")), None);
        assert_eq!(run_args(&args("forksafe --root run check")), None);
        assert_eq!(run_args(&args("forksafe --root")), None);
    }
}
