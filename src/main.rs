//! The `forksafe` command line: parses arguments, sets up logging, chooses the root, runs a
//! command and maps its result to an exit code (0 ok, 1 not in spec, 2 config or usage).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use forksafe::config::{ConfigError, Settings};
use forksafe::enforce::{self, DropinReport, KnobReport, Status};
use forksafe::root::Root;
use forksafe::sysctl_d::{Assignment, DropinState, Table};
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
  check [--json]    report every knob, its boot value and the drop-in; change nothing
  apply [--no-persist]
                    enforce once and exit; --no-persist: runtime values only, no
                    sysctl.d drop-in
  doctor [--json]   can this machine fork its database safely, and if not, why not

Options:
  --config PATH     config file (default: DIR/etc/forksafe/forksafe.toml, or the
                    compiled-in default when that does not exist)
  --root DIR        resolve /proc, /sys and /etc under DIR (default: /)
  --json            machine-readable output (check, doctor)
  -h, --help        this text
  -V, --version     the version

Exit codes: 0 all in spec (doctor: fork-safe), 1 something is not in spec or
could not be set (doctor: a check failed), 2 the config or the command line was
refused (nothing was written).
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Run,
    Check,
    Apply,
    Doctor,
}

#[derive(Debug)]
struct Cli {
    root: PathBuf,
    config: Option<PathBuf>,
    command: Command,
    json: bool,
    no_persist: bool,
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
    let mut no_persist = false;
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
            _ if flag.starts_with('-') => return Err(format!("unknown option {arg:?}")),
            "run" | "check" | "apply" | "doctor" if command.is_none() => {
                command = Some(match flag.as_str() {
                    "run" => Command::Run,
                    "check" => Command::Check,
                    "doctor" => Command::Doctor,
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
    Ok(Parsed::Cli(Cli {
        root: root.unwrap_or_else(|| PathBuf::from("/")),
        config,
        command,
        json,
        no_persist,
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
        Command::Apply => apply(&root, &settings, cli.no_persist),
        Command::Doctor => doctor(&root, &settings, cli.json),
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

fn all_ok(reports: &[KnobReport], dropin: Option<&DropinReport>) -> bool {
    reports.iter().all(|r| r.status() == Status::Ok) && dropin.is_none_or(DropinReport::is_current)
}

/// What `check` and `apply` prepare before their pass: the drop-in (looked at, or written
/// when `write`), then the boot values as sysctl.d now says, and every knob's file.
fn prepare(
    root: &Root,
    settings: &Settings,
    write: bool,
) -> (Option<DropinReport>, enforce::Boots, enforce::Paths) {
    let dropin = enforce::persist(root, settings, write);
    let boots = match dropin {
        Some(_) => enforce::boots(settings, &Table::read(root)),
        None => Vec::new(),
    };
    (dropin, boots, enforce::resolve(root, settings))
}

fn check(root: &Root, settings: &Settings, json: bool) -> u8 {
    let (dropin, boots, paths) = prepare(root, settings, false);
    let reports = enforce::pass(settings, &paths, false, &boots, &[]);
    if json {
        println!("{}", to_json(root, settings, &reports, dropin.as_ref()));
    } else {
        print!("{}", render(&reports, dropin.as_ref()));
    }
    if all_ok(&reports, dropin.as_ref()) {
        EXIT_OK
    } else {
        EXIT_NOT_OK
    }
}

fn apply(root: &Root, settings: &Settings, no_persist: bool) -> u8 {
    let mut settings = settings.clone();
    if no_persist {
        settings.dropin = None;
    }
    let (dropin, boots, paths) = prepare(root, &settings, true);
    let reports = enforce::pass(&settings, &paths, true, &boots, &[]);
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
    if let Some(d) = &dropin {
        match &d.wrote {
            Some(Ok(_)) => println!("{}: written", d.file.display()),
            _ if d.is_current() => println!("{}: up to date", d.file.display()),
            _ => {}
        }
    }
    eprint!("{}", notes(&reports, dropin.as_ref()));
    if all_ok(&reports, dropin.as_ref()) {
        EXIT_OK
    } else {
        EXIT_NOT_OK
    }
}

fn doctor(root: &Root, settings: &Settings, json: bool) -> u8 {
    let checks = forksafe::doctor::diagnose(root, settings);
    let safe = checks
        .iter()
        .all(|c| c.status != forksafe::doctor::Verdict::Fail);
    if json {
        println!("{}", serde_json::json!({ "safe": safe, "checks": checks }));
    } else {
        print!("{}", forksafe::doctor::render(&checks));
    }
    if safe { EXIT_OK } else { EXIT_NOT_OK }
}

fn boot_cell(r: &KnobReport) -> String {
    match &r.boot {
        None => "-".into(),
        Some(b) => match b.value.as_ref().and_then(|a| a.value.as_deref()) {
            Some(v) => v.to_string(),
            None => "unset".into(),
        },
    }
}

/// The human table: knob, desired, current, boot, status; then the notes.
fn render(reports: &[KnobReport], dropin: Option<&DropinReport>) -> String {
    let rows: Vec<[String; 5]> = reports
        .iter()
        .map(|r| {
            [
                r.knob.name().to_string(),
                r.knob.desired().to_string(),
                r.current().unwrap_or("-").to_string(),
                boot_cell(r),
                r.status().as_str().to_string(),
            ]
        })
        .collect();
    let header = ["KNOB", "DESIRED", "CURRENT", "BOOT", "STATUS"].map(String::from);
    let mut width = header.clone().map(|h| h.len());
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
    out.push_str(&notes(reports, dropin));
    out
}

/// What needs saying beyond the table: errors, boot values that are wrong, overrides, and
/// the drop-in's state.
fn notes(reports: &[KnobReport], dropin: Option<&DropinReport>) -> String {
    let mut out = String::new();
    for r in reports {
        let name = r.knob.name();
        if let Some(e) = r.error() {
            out.push_str(&format!("{name}: {e}\n"));
        }
        let Some(boot) = &r.boot else { continue };
        if !boot.is_right(r.knob.desired()) {
            match &boot.value {
                Some(a) => out.push_str(&format!(
                    "{name}: the next boot sets {} ({}:{})\n",
                    a.value.as_deref().unwrap_or(""),
                    a.file.display(),
                    a.line
                )),
                None => out.push_str(&format!("{name}: nothing sets it at boot\n")),
            }
        }
        for o in &boot.overrides {
            out.push_str(&format!("{name}: overridden by {o}\n"));
        }
        for o in &boot.shadowed {
            out.push_str(&format!(
                "{name}: {o}, but forksafe's drop-in outranks it at boot (it applies again without the drop-in)\n"
            ));
        }
    }
    if let Some(d) = dropin {
        let file = d.file.display();
        let state = match (&d.wrote, &d.before) {
            (Some(Err(e)), _) => Some(e.to_string()),
            (Some(Ok(_)), _) | (None, DropinState::Current) => None,
            (None, DropinState::Missing) => Some("missing; `forksafe apply` writes it".into()),
            (None, DropinState::Outdated) => Some("out of date; `forksafe apply` rewrites it".into()),
            (None, DropinState::Foreign) => Some(
                "exists without forksafe's header: not ours, left alone; move it away or set [sysctl_d] file".into(),
            ),
            (None, DropinState::Symlink) => Some("is a symlink; forksafe never writes through one".into()),
            (None, DropinState::Unreadable(e)) => Some(format!("cannot be read: {e}")),
        };
        if let Some(state) = state {
            out.push_str(&format!("drop-in {file}: {state}\n"));
        }
    }
    out
}

fn assignment_json(a: &Assignment) -> serde_json::Value {
    serde_json::json!({"file": a.file, "line": a.line, "value": a.value})
}

fn to_json(
    root: &Root,
    settings: &Settings,
    reports: &[KnobReport],
    dropin: Option<&DropinReport>,
) -> serde_json::Value {
    let knobs: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| {
            let mut v = serde_json::json!({
                "name": r.knob.name(),
                "kind": r.knob.kind().as_str(),
                "path": r.knob.display_path(root),
                "desired": r.knob.desired(),
                "current": r.current(),
                "status": r.status().as_str(),
                "error": r.error().map(|e| e.to_string()),
            });
            if let (Some(boot), Some(obj)) = (&r.boot, v.as_object_mut()) {
                obj.insert(
                    "boot".into(),
                    boot.value
                        .as_ref()
                        .map_or(serde_json::Value::Null, assignment_json),
                );
                obj.insert(
                    "overrides".into(),
                    boot.overrides.iter().map(assignment_json).collect(),
                );
                obj.insert(
                    "shadowed".into(),
                    boot.shadowed.iter().map(assignment_json).collect(),
                );
            }
            v
        })
        .collect();
    serde_json::json!({
        "config": settings.source.to_string(),
        "knobs": knobs,
        "dropin": dropin.map(|d| serde_json::json!({
            "file": d.file,
            "status": if d.is_current() { "ok" } else { d.before.as_str() },
        })),
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
            &["run", "--json"],
            &["check", "--no-persist"],
            &["check", "--root"],
            &["check", "--root="],
        ] {
            assert!(parse(args).is_err(), "{args:?} accepted");
        }
    }
}
