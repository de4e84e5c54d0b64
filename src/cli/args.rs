//! The command line's grammar: argv → [`Cli`], each command named once ([`COMMANDS`]),
//! the help built from that table, and the [`Outcome`]s a command can end with. Also used
//! by `forksafe reload`, which reads the running daemon's own command line to load its
//! config exactly as it will.

use std::path::PathBuf;

use crate::os::proc::Pid;
use crate::os::report::Format;

/// How a command ended. `main` maps each to its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything in spec; the daemon stopped cleanly; help was printed.
    Ok,
    /// Something is not in spec, or could not be set (doctor: a check failed; validate: a
    /// knob this machine does not have).
    NotOk,
    /// The config or the command line was refused; nothing was written.
    Refused,
}

/// The commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    /// `run`: the daemon.
    Run,
    /// `check`.
    Check,
    /// `apply`.
    Apply,
    /// `doctor`.
    Doctor,
    /// `validate`.
    Validate,
    /// `reload`.
    Reload,
}

/// Each command once: its name, its options and what it does, for the parser and the help.
pub(crate) const COMMANDS: [(&str, Command, &str, &str); 6] = [
    (
        "run",
        Command::Run,
        "[--watch-via DIR]",
        "the daemon: enforce, then repair drift as it happens; with
--watch-via, inotify watches knob files through DIR/proc/... and
DIR/sys/... where they exist (the unit binds the host's procfs and
sysfs there: its sandbox has instances of its own, which see no
event when someone else writes)",
    ),
    (
        "check",
        Command::Check,
        "[--json] [--now]",
        "report every knob, its boot value and the drop-in; change nothing;
--now: the exit code judges the values now only (a readiness probe)",
    ),
    (
        "apply",
        Command::Apply,
        "[--no-persist]",
        "enforce once and exit; --no-persist: runtime values only, no
sysctl.d drop-in",
    ),
    (
        "doctor",
        Command::Doctor,
        "[--json] [--password-file FILE]",
        "can this machine fork its database safely, and if not, why not
(asks each Redis/Valkey/KeyDB; password from REDISCLI_AUTH or FILE)",
    ),
    (
        "validate",
        Command::Validate,
        "",
        "load the config as the daemon would, and say whether it is
accepted (exit 0) or refused (exit 2, file and line); then look
for each knob on this machine: one that is not there (a typo) is
named, exit 1; nothing is written (Ansible's validate:, a hook)",
    ),
    (
        "reload",
        Command::Reload,
        "[--pid PID]",
        "make the running daemon reload its config, and wait for the
result: exit 2 (the old config stays) if the new one is refused",
    ),
];

/// `forksafe --help`.
pub(crate) fn usage() -> String {
    let mut out = String::from(
        "Usage: forksafe [--config PATH] [--root DIR] COMMAND [OPTIONS]

Keeps vm.overcommit_memory and transparent huge pages where fork()-based
persistence (Redis, Valkey, KeyDB) needs them.

Commands:
",
    );
    for (name, _, options, help) in COMMANDS {
        let head = format!("  {name} {options}");
        let mut lines = help.lines();
        match lines.next() {
            Some(first) if head.len() < 20 => out.push_str(&format!("{head:<20}{first}\n")),
            Some(first) => out.push_str(&format!("{head}\n{:20}{first}\n", "")),
            None => out.push_str(&format!("{head}\n")),
        }
        for line in lines {
            out.push_str(&format!("{:20}{line}\n", ""));
        }
    }
    out.push_str(
        "
Options:
  --config PATH     config file (default: DIR/etc/forksafe/forksafe.toml, or the
                    compiled-in default when that does not exist)
  --root DIR        resolve /proc, /sys, /etc and /run under DIR (default: /)
  --log-format F    text (default; the journal under systemd) or json (one object
                    per line on stderr: time, level, msg, then the journal's fields)
  --json            machine-readable output (check, doctor)
  -h, --help        this text
  -V, --version     the version

Exit codes: 0 all in spec (doctor: no check fails), 1 something is not in spec or
could not be set (doctor: a check failed), 2 the config or the command line was
refused (nothing was written).
",
    );
    out
}

/// A parsed command line.
#[derive(Debug)]
pub(crate) struct Cli {
    /// `--root`.
    pub(crate) root: PathBuf,
    /// `--config`.
    pub(crate) config: Option<PathBuf>,
    /// The command.
    pub(crate) command: Command,
    /// `--json`.
    pub(crate) json: bool,
    /// `--no-persist`.
    pub(crate) no_persist: bool,
    /// `check --now`.
    pub(crate) now: bool,
    /// `--log-format`.
    pub(crate) log_format: Format,
    /// `--password-file`.
    pub(crate) password_file: Option<PathBuf>,
    /// `--pid`.
    pub(crate) pid: Option<Pid>,
    /// `run --watch-via DIR`.
    pub(crate) watch_via: Option<PathBuf>,
}

/// What the arguments asked for: a command, or text to print and leave.
pub(crate) enum Parsed {
    /// A command.
    Cli(Cli),
    /// Text to print (help, version).
    Print(String),
}

/// Parse the arguments (without the program name).
pub(crate) fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut cli = Cli {
        root: PathBuf::from("/"),
        config: None,
        command: Command::Run,
        json: false,
        no_persist: false,
        now: false,
        log_format: Format::Text,
        password_file: None,
        pid: None,
        watch_via: None,
    };
    let mut command = None;
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
            "-h" | "--help" => return Ok(Parsed::Print(usage())),
            "-V" | "--version" => {
                return Ok(Parsed::Print(format!(
                    "forksafe {}\n",
                    env!("CARGO_PKG_VERSION")
                )));
            }
            "--root" => cli.root = PathBuf::from(value("--root")?),
            "--config" | "-c" => cli.config = Some(PathBuf::from(value("--config")?)),
            "--json" if inline.is_none() => cli.json = true,
            "--no-persist" if inline.is_none() => cli.no_persist = true,
            "--now" if inline.is_none() => cli.now = true,
            "--log-format" => {
                cli.log_format = match value("--log-format")?.as_str() {
                    "text" => Format::Text,
                    "json" => Format::Json,
                    other => return Err(format!("--log-format takes text or json, not {other:?}")),
                }
            }
            "--password-file" => {
                cli.password_file = Some(PathBuf::from(value("--password-file")?));
            }
            "--watch-via" => cli.watch_via = Some(PathBuf::from(value("--watch-via")?)),
            "--pid" => {
                let v = value("--pid")?;
                let pid = v.parse().ok().and_then(Pid::new);
                cli.pid = Some(pid.ok_or(format!("--pid takes a process id, not {v:?}"))?);
            }
            _ if flag.starts_with('-') => return Err(format!("unknown option {arg:?}")),
            _ if command.is_some() => return Err(format!("unexpected argument {arg:?}")),
            name => match COMMANDS.iter().find(|(n, ..)| *n == name) {
                Some((_, c, ..)) => command = Some(*c),
                None => return Err(format!("unknown command {arg:?}")),
            },
        }
    }
    cli.command = command.ok_or("no command given")?;
    check_options(&cli)?;
    Ok(Parsed::Cli(cli))
}

/// Options that go with one command only, given to another.
fn check_options(cli: &Cli) -> Result<(), String> {
    let c = cli.command;
    let misplaced = [
        (
            cli.json && !matches!(c, Command::Check | Command::Doctor),
            "--json goes with check or doctor",
        ),
        (
            cli.no_persist && c != Command::Apply,
            "--no-persist goes with apply",
        ),
        (cli.now && c != Command::Check, "--now goes with check"),
        (
            cli.password_file.is_some() && c != Command::Doctor,
            "--password-file goes with doctor",
        ),
        (
            cli.pid.is_some() && c != Command::Reload,
            "--pid goes with reload",
        ),
        (
            cli.watch_via.is_some() && c != Command::Run,
            "--watch-via goes with run",
        ),
    ];
    match misplaced.iter().find(|(wrong, _)| *wrong) {
        Some((_, why)) => Err((*why).to_string()),
        None => Ok(()),
    }
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
            // Refused: pid 0 and negative pids signal groups, not a process.
            &["reload", "--pid", "0"],
            &["reload", "--pid", "-1"],
        ] {
            assert!(parse(args).is_err(), "{args:?} accepted");
        }
    }

    #[test]
    fn the_help_lists_every_command_once() {
        let text = usage();
        for (name, ..) in COMMANDS {
            assert_eq!(
                text.lines()
                    .filter(|l| l.starts_with(&format!("  {name} ")) || l == &format!("  {name}"))
                    .count(),
                1,
                "{name}"
            );
        }
        assert!(text.contains("Exit codes"));
    }
}
