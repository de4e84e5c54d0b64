//! The command line's grammar: argv → [`Cli`], each command named once ([`COMMANDS`]),
//! the help built from that table, and the [`Outcome`]s a command can end with. Also used
//! by `forksafe reload`, which reads the running daemon's own command line to load its
//! config exactly as it will.

use std::path::PathBuf;

use crate::os::proc::Pid;
use crate::os::report::Format;

use super::spelling::nearest;

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

/// One command: its name, its options and what it does, for the parser, `forksafe --help`,
/// `forksafe help NAME` and `NAME --help`.
pub(crate) struct Spec {
    /// The word on the command line.
    pub(crate) name: &'static str,
    /// The command.
    pub(crate) command: Command,
    /// Its own options, as the usage line shows them.
    pub(crate) synopsis: &'static str,
    /// What it does (lines of at most 66 characters).
    pub(crate) about: &'static str,
    /// Each option of its own, and what it does.
    pub(crate) options: &'static [(&'static str, &'static str)],
    /// What exit codes 0, 1 and 2 mean for it.
    pub(crate) exits: [&'static str; 3],
}

/// Each command once.
pub(crate) const COMMANDS: [Spec; 6] = [
    Spec {
        name: "run",
        command: Command::Run,
        synopsis: "[--watch-via DIR]",
        about: "the daemon: enforce, then repair drift as it happens",
        options: &[(
            "--watch-via DIR",
            "inotify watches knob files through DIR/proc/... and DIR/sys/...
where they exist (the unit binds the host's procfs and sysfs
there: its sandbox has instances of its own, which see no event
when someone else writes)",
        )],
        exits: [
            "stopped by SIGTERM or SIGINT (every value stays as it is)",
            "a fatal runtime error (e.g. signal setup failed)",
            "config or usage error at start; nothing was written",
        ],
    },
    Spec {
        name: "check",
        command: Command::Check,
        synopsis: "[--json] [--now]",
        about: "report every knob, its boot value and the drop-in; change nothing",
        options: &[
            ("--json", "one JSON object instead of the table"),
            (
                "--now",
                "the exit code judges the values now only (a readiness probe)",
            ),
        ],
        exits: [
            "every knob in spec, now and at the next boot; the drop-in current",
            "a knob is drifted, boot-drifted, absent or unreadable, or the
drop-in is missing, outdated or not ours",
            "config or usage error; nothing was written",
        ],
    },
    Spec {
        name: "apply",
        command: Command::Apply,
        synopsis: "[--no-persist]",
        about: "enforce once (knobs and the sysctl.d drop-in) and exit; print
each value changed and the command that puts it back",
        options: &[(
            "--no-persist",
            "runtime values only, no sysctl.d drop-in (the next boot is
still judged)",
        )],
        exits: [
            "every knob in spec, now and at the next boot; the drop-in current",
            "a knob (or the drop-in) could not be set, or the next boot
does not keep it (the last line of the output says which)",
            "config or usage error; nothing was written",
        ],
    },
    Spec {
        name: "doctor",
        command: Command::Doctor,
        synopsis: "[--json] [--strict] [--textfile PATH] [--walk-up-to SIZE] [--password-file FILE] [--password-dir DIR] [--password-from-config]",
        about: "can this machine fork its database safely, and if not, why not
(asks each Redis/Valkey/KeyDB); read-only",
        options: &[
            (
                "--json",
                "{\"safe\", \"complete\", \"checks\"} instead of the report",
            ),
            (
                "--strict",
                "exit 1 also when a check could not be judged (unknown)",
            ),
            (
                "--textfile PATH",
                "write the findings as Prometheus metrics to PATH (under the
root; *.prom, for node_exporter's textfile collector), journal a
check that turns FAIL or back, and print only the headline: what
forksafe-doctor.timer runs; walks page tables up to 8G by default",
            ),
            (
                "--walk-up-to SIZE",
                "walk the page tables (smaps) only of databases up to SIZE
resident (e.g. 8G, 512M); the checks that need it are unknown for
larger ones, said so",
            ),
            (
                "--password-file FILE",
                "the databases' password, first line of FILE (else
REDISCLI_AUTH)",
            ),
            (
                "--password-dir DIR",
                "per database: DIR/NAMESPACE/POD or DIR/PORT",
            ),
            (
                "--password-from-config",
                "per database: its own requirepass, read in its root",
            ),
        ],
        exits: [
            "no check fails (--strict: and none is unknown)",
            "a check fails (--strict: or one could not be judged)",
            "config or usage error",
        ],
    },
    Spec {
        name: "validate",
        command: Command::Validate,
        synopsis: "",
        about: "load the config as the daemon would, then look for each knob on
this machine; nothing is written (Ansible's validate:, a hook)",
        options: &[],
        exits: [
            "the config is accepted, and every knob is here (or expected to
be absent: per-size THP before Linux 6.8, THP on a kernel
without it)",
            "the config loads, but names a knob this machine does not have
(most often a typo: the nearest knob is named)",
            "the config is refused (file and line said)",
        ],
    },
    Spec {
        name: "reload",
        command: Command::Reload,
        synopsis: "[--pid PID]",
        about: "make the running daemon reload its config, and wait for the
result (what systemctl reload forksafe runs)",
        options: &[(
            "--pid PID",
            "the daemon to reload (default: the one /run/forksafe/state.json
names)",
        )],
        exits: [
            "the daemon applied the new config",
            "no daemon found, or it did not confirm",
            "the new config is refused; the running one stays",
        ],
    },
];

/// Every option, for "did you mean".
const FLAGS: [&str; 16] = [
    "--textfile",
    "--walk-up-to",
    "--config",
    "--root",
    "--log-format",
    "--json",
    "--now",
    "--no-persist",
    "--strict",
    "--password-file",
    "--password-dir",
    "--password-from-config",
    "--watch-via",
    "--pid",
    "--help",
    "--version",
];

/// The global options, as the usage line shows them.
const GLOBAL: &str = "[--config PATH] [--root DIR] [--log-format text|json]";

/// `text` with every line after the first indented to `column`.
fn hanging(text: &str, column: usize) -> String {
    text.lines()
        .collect::<Vec<_>>()
        .join(&format!("\n{:column$}", ""))
}

/// `head` in a column of 20, then `text` (wrapped as written).
fn item(head: &str, text: &str) -> String {
    if head.len() < 18 {
        format!("  {head:<18}{}\n", hanging(text, 20))
    } else {
        format!("  {head}\n{:20}{}\n", "", hanging(text, 20))
    }
}

/// `forksafe --help` and `forksafe help`.
pub(crate) fn usage() -> String {
    let mut out = format!(
        "Usage: forksafe {GLOBAL} COMMAND [OPTIONS]

Keeps vm.overcommit_memory and transparent huge pages where fork()-based
persistence (Redis, Valkey, KeyDB) needs them. Start with `forksafe doctor`
(read-only), then `forksafe run` (the daemon) or `forksafe apply` (once).

Commands:
"
    );
    for c in &COMMANDS {
        out.push_str(&item(&format!("{} {}", c.name, c.synopsis), c.about));
    }
    out.push_str(
        "
Options:
  --config PATH     config file (default: DIR/etc/forksafe/forksafe.toml, or the
                    compiled-in default when that does not exist)
  --root DIR        resolve /proc, /sys, /etc and /run under DIR (default: /)
  --log-format F    text (default; the journal under systemd) or json (one object
                    per line on stderr: time, level, msg, then the journal's fields)
  -h, --help        this text; `forksafe help COMMAND` or `COMMAND --help`: one
                    command's options and exit codes
  -V, --version     the version

Exit codes: 0 all in spec (doctor: no check fails), 1 something is not in spec or
could not be set (doctor: a check failed), 2 the config or the command line was
refused (nothing was written). Each command's: forksafe help COMMAND.
",
    );
    out
}

/// `forksafe help NAME` and `forksafe NAME --help`.
pub(crate) fn command_help(c: &Spec) -> String {
    let mut out = format!("Usage: forksafe [GLOBAL OPTIONS] {} {}", c.name, c.synopsis)
        .trim_end()
        .to_string();
    out.push_str(&format!("\n\n{}\n", c.about));
    if !c.options.is_empty() {
        out.push_str("\nOptions:\n");
        for (flag, text) in c.options {
            out.push_str(&item(flag, text));
        }
    }
    out.push_str(&format!(
        "\nGlobal options: {GLOBAL} (forksafe --help)\n\nExit codes:\n"
    ));
    for (code, text) in c.exits.iter().enumerate() {
        out.push_str(&format!("  {code}  {}\n", hanging(text, 5)));
    }
    out
}

/// "unknown command", with the nearest command when there is one.
fn unknown_command(word: &str) -> String {
    let near = nearest(word, COMMANDS.iter().map(|c| c.name));
    match near {
        Some(n) => format!("unknown command {word:?}; did you mean {n}?"),
        None => format!("unknown command {word:?}"),
    }
}

/// "unknown option", with the nearest option when there is one.
fn unknown_option(arg: &str) -> String {
    let flag = arg.split_once('=').map_or(arg, |(f, _)| f);
    match nearest(flag, FLAGS) {
        Some(n) => format!("unknown option {arg:?}; did you mean {n}?"),
        None => format!("unknown option {arg:?}"),
    }
}

fn find_spec(name: &str) -> Option<&'static Spec> {
    COMMANDS.iter().find(|c| c.name == name)
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
    /// `doctor --password-dir`.
    pub(crate) password_dir: Option<PathBuf>,
    /// `doctor --password-from-config`.
    pub(crate) password_from_config: bool,
    /// `doctor --strict`.
    pub(crate) strict: bool,
    /// `doctor --textfile`.
    pub(crate) textfile: Option<PathBuf>,
    /// `doctor --walk-up-to`, kB.
    pub(crate) walk_up_to: Option<u64>,
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
        password_dir: None,
        password_from_config: false,
        strict: false,
        textfile: None,
        walk_up_to: None,
        pid: None,
        watch_via: None,
    };
    let mut words: Vec<String> = Vec::new();
    let mut help = false;
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
            "-h" | "--help" => help = true,
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
            "--password-dir" => cli.password_dir = Some(PathBuf::from(value("--password-dir")?)),
            "--password-from-config" if inline.is_none() => cli.password_from_config = true,
            "--strict" if inline.is_none() => cli.strict = true,
            "--textfile" => cli.textfile = Some(PathBuf::from(value("--textfile")?)),
            "--walk-up-to" => {
                let v = value("--walk-up-to")?;
                let kib = kib_of(&v).ok_or(format!(
                    "--walk-up-to takes a size such as 8G or 512M, not {v:?}"
                ))?;
                cli.walk_up_to = Some(kib);
            }
            "--watch-via" => cli.watch_via = Some(PathBuf::from(value("--watch-via")?)),
            "--pid" => {
                let v = value("--pid")?;
                let pid = v.parse().ok().and_then(Pid::new);
                cli.pid = Some(pid.ok_or(format!("--pid takes a process id, not {v:?}"))?);
            }
            _ if flag.starts_with('-') => return Err(unknown_option(&arg)),
            _ => words.push(arg),
        }
    }
    resolve(cli, &words, help)
}

/// What the words that are not options ask for: a command (with `cli`'s options), its help,
/// or the usage.
fn resolve(mut cli: Cli, words: &[String], help: bool) -> Result<Parsed, String> {
    let (spec, topic) = match words {
        [] if help => return Ok(Parsed::Print(usage())),
        [] => return Err("no command given".into()),
        [w, rest @ ..] if w == "help" => (None, rest.first()),
        [w, ..] => (Some(find_spec(w).ok_or_else(|| unknown_command(w))?), None),
    };
    if let Some(extra) = words.get(if topic.is_some() { 2 } else { 1 }) {
        return Err(format!("unexpected argument {extra:?}"));
    }
    match (spec, topic) {
        (Some(c), _) if help => Ok(Parsed::Print(command_help(c))),
        (Some(c), _) => {
            cli.command = c.command;
            check_options(&cli)?;
            Ok(Parsed::Cli(cli))
        }
        (None, Some(t)) => Ok(Parsed::Print(command_help(
            find_spec(t).ok_or_else(|| unknown_command(t))?,
        ))),
        (None, None) => Ok(Parsed::Print(usage())),
    }
}

/// A size in kB: a number with K, M, G or T (powers of 1024), or bytes without one.
fn kib_of(v: &str) -> Option<u64> {
    let (num, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
    let n: u64 = num.parse().ok()?;
    let kib = match unit
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => n / 1024,
        "K" => n,
        "M" => n.checked_mul(1 << 10)?,
        "G" => n.checked_mul(1 << 20)?,
        "T" => n.checked_mul(1 << 30)?,
        _ => return None,
    };
    Some(kib)
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
            (cli.password_dir.is_some() || cli.password_from_config || cli.strict)
                && c != Command::Doctor,
            "--password-dir, --password-from-config and --strict go with doctor",
        ),
        (
            (cli.textfile.is_some() || cli.walk_up_to.is_some()) && c != Command::Doctor,
            "--textfile and --walk-up-to go with doctor",
        ),
        (
            cli.textfile.is_some() && cli.json,
            "doctor --textfile writes metrics; --json prints the report: one or the other",
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
        for Spec { name, .. } in COMMANDS {
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

    fn printed(args: &[&str]) -> String {
        match parse(args) {
            Ok(Parsed::Print(text)) => text,
            Ok(Parsed::Cli(c)) => panic!("{args:?} parsed as {c:?}"),
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    #[test]
    fn help_for_one_command() {
        for c in &COMMANDS {
            let own = printed(&["help", c.name]);
            assert!(
                own.starts_with(&format!("Usage: forksafe [GLOBAL OPTIONS] {}", c.name)),
                "{own}"
            );
            assert!(own.contains("Exit codes:\n  0  "), "{own}");
            for (flag, _) in c.options {
                assert!(own.contains(&format!("\n  {flag}")), "{own}");
            }
            // The same wherever --help stands.
            assert_eq!(printed(&[c.name, "--help"]), own);
            assert_eq!(printed(&["--help", c.name]), own);
            assert_eq!(printed(&["--root", "/x", c.name, "-h"]), own);
        }
        assert_eq!(printed(&["help"]), usage());
        assert_eq!(printed(&["--help"]), usage());
    }

    #[test]
    fn near_misses_are_named() {
        for (args, said) in [
            (
                &["chek"][..],
                "unknown command \"chek\"; did you mean check?",
            ),
            (
                &["help", "docter"],
                "unknown command \"docter\"; did you mean doctor?",
            ),
            (
                &["check", "--jsn"],
                "unknown option \"--jsn\"; did you mean --json?",
            ),
            (
                &["--confg=/x", "check"],
                "unknown option \"--confg=/x\"; did you mean --config?",
            ),
            // Nothing near: no guess.
            (&["frobnicate"], "unknown command \"frobnicate\""),
            (&["help", "check", "apply"], "unexpected argument \"apply\""),
        ] {
            match parse(args) {
                Err(e) => assert_eq!(e, said, "{args:?}"),
                Ok(_) => panic!("{args:?} accepted"),
            }
        }
    }
}
