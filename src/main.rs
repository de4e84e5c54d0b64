//! The `forksafe` command line: parses arguments, sets up logging, chooses the root, runs a
//! command and maps its result to an exit code (0 ok, 1 not in spec, 2 config or usage).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use forksafe::config::{ConfigError, Settings};
use forksafe::enforce::{self, KnobReport, Status};
use forksafe::root::Root;
use forksafe::{daemon, report};

/// Everything in spec / the daemon stopped cleanly.
const EXIT_OK: u8 = 0;
/// Something is not in spec, or could not be set.
const EXIT_NOT_OK: u8 = 1;
/// The config or the command line was refused; nothing was written.
const EXIT_USAGE: u8 = 2;

const USAGE: &str = "\
Usage: forksafe [--config PATH] [--root DIR] COMMAND [OPTIONS]

Keeps vm.overcommit_memory and transparent huge pages where fork()-based
persistence (Redis, Valkey, KeyDB) needs them.

Commands:
  run               the daemon: enforce, then re-check every interval and repair
  check [--json]    report every knob; change nothing
  apply             enforce once and exit

Options:
  --config PATH     config file (default: DIR/etc/forksafe/forksafe.toml, or the
                    compiled-in default when that does not exist)
  --root DIR        resolve /proc, /sys and /etc under DIR (default: /)
  --json            machine-readable output (check)
  -h, --help        this text
  -V, --version     the version

Exit codes: 0 all in spec, 1 something is not in spec or could not be set,
2 the config or the command line was refused (nothing was written).
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Run,
    Check,
    Apply,
}

#[derive(Debug)]
struct Cli {
    root: PathBuf,
    config: Option<PathBuf>,
    command: Command,
    json: bool,
}

/// What the arguments asked for: a command, or text to print and leave.
enum Parsed {
    Cli(Cli),
    Print(String),
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut root = None;
    let mut config = None;
    let mut command = None;
    let mut json = false;
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
            _ if flag.starts_with('-') => return Err(format!("unknown option {arg:?}")),
            "run" | "check" | "apply" if command.is_none() => {
                command = Some(match flag.as_str() {
                    "run" => Command::Run,
                    "check" => Command::Check,
                    _ => Command::Apply,
                });
            }
            _ if command.is_some() => return Err(format!("unexpected argument {arg:?}")),
            _ => return Err(format!("unknown command {arg:?}")),
        }
    }
    let command = command.ok_or("no command given")?;
    if json && command != Command::Check {
        return Err("--json goes with check".into());
    }
    Ok(Parsed::Cli(Cli {
        root: root.unwrap_or_else(|| PathBuf::from("/")),
        config,
        command,
        json,
    }))
}

fn main() -> ExitCode {
    let cli = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Cli(cli)) => cli,
        Ok(Parsed::Print(text)) => {
            print!("{text}");
            return ExitCode::from(EXIT_OK);
        }
        Err(e) => {
            eprintln!("forksafe: {e} (see forksafe --help)");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    report::init();
    let root = Root::new(&cli.root);
    let settings = match Settings::load(&root, cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => return config_refused(&e),
    };
    log::debug!("configuration from {}", settings.source);
    if settings.source == forksafe::config::Source::Builtin {
        log::info!(
            "no {} under {}: using the compiled-in default configuration",
            forksafe::config::CONFIG_PATH,
            root.dir().display()
        );
    }
    let code = match cli.command {
        Command::Check => check(&root, &settings, cli.json),
        Command::Apply => apply(&root, &settings),
        Command::Run => match daemon::run(root, cli.config.as_deref(), settings) {
            Ok(()) => EXIT_OK,
            Err(e) => {
                log::error!("the daemon failed: {e}");
                EXIT_NOT_OK
            }
        },
    };
    ExitCode::from(code)
}

fn config_refused(e: &ConfigError) -> ExitCode {
    log::error!(
        "configuration refused, nothing was changed: {e}\n\
         Fix the file, then validate it with `forksafe check`."
    );
    ExitCode::from(EXIT_USAGE)
}

fn all_ok(reports: &[KnobReport]) -> bool {
    reports.iter().all(|r| r.status() == Status::Ok)
}

fn check(root: &Root, settings: &Settings, json: bool) -> u8 {
    let reports = enforce::pass(root, &settings.knobs, false);
    if json {
        println!("{}", to_json(root, settings, &reports));
    } else {
        print!("{}", table(&reports));
    }
    if all_ok(&reports) {
        EXIT_OK
    } else {
        EXIT_NOT_OK
    }
}

fn apply(root: &Root, settings: &Settings) -> u8 {
    let reports = enforce::pass(root, &settings.knobs, true);
    for r in &reports {
        let k = r.knob;
        match (&r.repair, r.error()) {
            (Some(Ok(())), _) => println!(
                "{}: set to {} (was {})",
                k.name(),
                k.desired(),
                r.observed.as_deref().unwrap_or("?")
            ),
            (_, Some(e)) => eprintln!("forksafe: {}: {e}", k.name()),
            (_, None) => println!("{}: already {}", k.name(), k.desired()),
        }
    }
    if all_ok(&reports) {
        EXIT_OK
    } else {
        EXIT_NOT_OK
    }
}

/// The human table: knob, desired, current, status; then one line per error.
fn table(reports: &[KnobReport]) -> String {
    let rows: Vec<[&str; 4]> = reports
        .iter()
        .map(|r| {
            [
                r.knob.name(),
                r.knob.desired(),
                r.current().unwrap_or("-"),
                r.status().as_str(),
            ]
        })
        .collect();
    let header = ["KNOB", "DESIRED", "CURRENT", "STATUS"];
    let mut width = header.map(str::len);
    for row in &rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(width)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    for r in reports {
        if let Some(e) = r.error() {
            out.push_str(&format!("{}: {e}\n", r.knob.name()));
        }
    }
    out
}

fn to_json(root: &Root, settings: &Settings, reports: &[KnobReport]) -> serde_json::Value {
    let knobs: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.knob.name(),
                "kind": r.knob.kind().as_str(),
                "path": r.knob.display_path(root),
                "desired": r.knob.desired(),
                "current": r.current(),
                "status": r.status().as_str(),
                "error": r.error().map(|e| e.to_string()),
            })
        })
        .collect();
    serde_json::json!({
        "config": settings.source.to_string(),
        "knobs": knobs,
    })
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
            &["check", "--root"],
            &["check", "--root="],
        ] {
            assert!(parse(args).is_err(), "{args:?} accepted");
        }
    }
}
