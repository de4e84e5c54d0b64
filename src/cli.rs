//! The command line, parsed: shared by `main` and by `forksafe reload`, which reads the
//! running daemon's own command line to load its config exactly as it will.

use std::path::PathBuf;

use crate::report;

/// `forksafe --help`.
pub const USAGE: &str = "\
Usage: forksafe [--config PATH] [--root DIR] COMMAND [OPTIONS]

Keeps vm.overcommit_memory and transparent huge pages where fork()-based
persistence (Redis, Valkey, KeyDB) needs them.

Commands:
  run [--watch-via DIR]
                    the daemon: enforce, then repair drift as it happens; with
                    --watch-via, inotify watches knob files through DIR/proc/... and
                    DIR/sys/... where they exist (the unit binds the host's procfs and
                    sysfs there: its sandbox has instances of its own, which see no
                    event when someone else writes)
  check [--json] [--now]
                    report every knob, its boot value and the drop-in; change nothing;
                    --now: the exit code judges the values now only (a readiness probe)
  apply [--no-persist]
                    enforce once and exit; --no-persist: runtime values only, no
                    sysctl.d drop-in
  doctor [--json] [--password-file FILE]
                    can this machine fork its database safely, and if not, why not
                    (asks each Redis/Valkey/KeyDB; password from REDISCLI_AUTH or FILE)
  validate          load the config as the daemon would, and say whether it is
                    accepted (exit 0) or refused (exit 2, file and line); nothing
                    else is read or written (Ansible's validate:, a pre-commit hook)
  reload [--pid PID]
                    make the running daemon reload its config, and wait for the
                    result: exit 2 (the old config stays) if the new one is refused

Options:
  --config PATH     config file (default: DIR/etc/forksafe/forksafe.toml, or the
                    compiled-in default when that does not exist)
  --root DIR        resolve /proc, /sys, /etc and /run under DIR (default: /)
  --log-format F    text (default; the journal under systemd) or json (one object
                    per line on stderr, with the journal's fields)
  --json            machine-readable output (check, doctor)
  -h, --help        this text
  -V, --version     the version

Exit codes: 0 all in spec (doctor: no check fails), 1 something is not in spec or
could not be set (doctor: a check failed), 2 the config or the command line was
refused (nothing was written).
";

/// The command to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `run`: the daemon.
    Run,
    /// `check`.
    Check,
    /// `apply`.
    Apply,
    /// `doctor`.
    Doctor,
    /// `reload`.
    Reload,
    /// `validate`.
    Validate,
}

/// A parsed command line.
#[derive(Debug)]
pub struct Cli {
    /// `--root`.
    pub root: PathBuf,
    /// `--config`.
    pub config: Option<PathBuf>,
    /// The command.
    pub command: Command,
    /// `--json`.
    pub json: bool,
    /// `--no-persist`.
    pub no_persist: bool,
    /// `check --now`.
    pub now: bool,
    /// `--log-format`.
    pub log_format: report::Format,
    /// `--password-file`.
    pub password_file: Option<PathBuf>,
    /// `--pid`.
    pub pid: Option<u32>,
    /// `run --watch-via DIR`.
    pub watch_via: Option<PathBuf>,
}

/// What the arguments asked for: a command, or text to print and leave.
pub enum Parsed {
    /// A command.
    Cli(Cli),
    /// Text to print (help, version).
    Print(String),
}

/// Parse the arguments (without the program name).
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut root = None;
    let mut config = None;
    let mut command = None;
    let mut json = false;
    let mut no_persist = false;
    let mut now = false;
    let mut log_format = report::Format::Text;
    let mut password_file = None;
    let mut pid = None;
    let mut watch_via = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .filter(|v| !v.is_empty())
                .ok_or(format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Print(USAGE.to_string())),
            "-V" | "--version" => {
                return Ok(Parsed::Print(format!(
                    "forksafe {}\n",
                    env!("CARGO_PKG_VERSION")
                )));
            }
            "--root" => root = Some(PathBuf::from(value("--root")?)),
            "--config" | "-c" => config = Some(PathBuf::from(value("--config")?)),
            "--json" if inline.is_none() => json = true,
            "--no-persist" if inline.is_none() => no_persist = true,
            "--now" if inline.is_none() => now = true,
            "--log-format" => {
                log_format = match value("--log-format")?.as_str() {
                    "text" => report::Format::Text,
                    "json" => report::Format::Json,
                    other => return Err(format!("--log-format takes text or json, not {other:?}")),
                }
            }
            "--password-file" => password_file = Some(PathBuf::from(value("--password-file")?)),
            "--watch-via" => watch_via = Some(PathBuf::from(value("--watch-via")?)),
            "--pid" => {
                let v = value("--pid")?;
                pid = Some(
                    v.parse()
                        .map_err(|_| format!("--pid takes a process id, not {v:?}"))?,
                );
            }
            _ if flag.starts_with('-') => return Err(format!("unknown option {arg:?}")),
            "run" | "check" | "apply" | "doctor" | "reload" | "validate" if command.is_none() => {
                command = Some(match flag.as_str() {
                    "run" => Command::Run,
                    "check" => Command::Check,
                    "doctor" => Command::Doctor,
                    "reload" => Command::Reload,
                    "validate" => Command::Validate,
                    _ => Command::Apply,
                });
            }
            _ if command.is_some() => return Err(format!("unexpected argument {arg:?}")),
            _ => return Err(format!("unknown command {arg:?}")),
        }
    }
    let command = command.ok_or("no command given")?;
    if json && !matches!(command, Command::Check | Command::Doctor) {
        return Err("--json goes with check or doctor".into());
    }
    if no_persist && command != Command::Apply {
        return Err("--no-persist goes with apply".into());
    }
    if now && command != Command::Check {
        return Err("--now goes with check".into());
    }
    if password_file.is_some() && command != Command::Doctor {
        return Err("--password-file goes with doctor".into());
    }
    if pid.is_some() && command != Command::Reload {
        return Err("--pid goes with reload".into());
    }
    if watch_via.is_some() && command != Command::Run {
        return Err("--watch-via goes with run".into());
    }
    Ok(Parsed::Cli(Cli {
        root: root.unwrap_or_else(|| PathBuf::from("/")),
        config,
        command,
        json,
        no_persist,
        now,
        log_format,
        password_file,
        pid,
        watch_via,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Parsed, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn options_anywhere() {
        let Ok(Parsed::Cli(c)) = parse(&["check", "--root", "/tmp/r", "--json"]) else {
            panic!()
        };
        assert_eq!(
            (c.command, c.json, c.root),
            (Command::Check, true, "/tmp/r".into())
        );
        let Ok(Parsed::Cli(c)) = parse(&["--config=/x.toml", "apply"]) else {
            panic!()
        };
        assert_eq!(c.config, Some("/x.toml".into()));
    }

    #[test]
    fn refused_arguments() {
        // Refused: each of these is a typo an operator must hear about.
        for args in [
            &[][..],
            &["frobnicate"],
            &["check", "apply"],
            &["check", "--verbose"],
            &["apply", "--json"],
            &["run", "--json"],
            &["check", "--no-persist"],
            &["check", "--root"],
            &["check", "--root="],
        ] {
            assert!(parse(args).is_err(), "{args:?} accepted");
        }
    }
}
