//! The `forksafe` command line: parses arguments, sets up logging, chooses the root, runs a
//! command and maps its result to an exit code (0 ok, 1 not in spec, 2 config or usage).

#![forbid(unsafe_code)]

use std::process::ExitCode;

use forksafe::cli::{Command, Parsed, parse_args};
use forksafe::config::{ConfigError, Settings};
use forksafe::enforce::{self, DropinReport, KnobReport, Status};
use forksafe::root::Root;
use forksafe::state::Contested;
use forksafe::sysctl_d::Assignment;
use forksafe::{daemon, reload, report};

/// Everything in spec / the daemon stopped cleanly.
const EXIT_OK: u8 = 0;
/// Something is not in spec, or could not be set.
const EXIT_NOT_OK: u8 = 1;
/// The config or the command line was refused; nothing was written.
const EXIT_USAGE: u8 = 2;

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
    report::init(cli.log_format);
    let root = Root::new(&cli.root);
    if cli.command == Command::Reload {
        return ExitCode::from(reload::run(&root, cli.config.as_deref(), cli.pid));
    }
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
        Command::Check => check(&root, &settings, cli.json, cli.now),
        Command::Apply => apply(&root, &settings, cli.no_persist),
        Command::Doctor => match doctor_auth(cli.password_file.as_deref()) {
            Ok(auth) => doctor(&root, &settings, cli.json, &auth),
            Err(e) => {
                eprintln!("forksafe: {e}");
                EXIT_USAGE
            }
        },
        Command::Reload => EXIT_USAGE, // handled above
        Command::Validate => {
            println!(
                "{}: accepted: {} knobs, interval {:?}, {}",
                settings.source,
                settings.knobs.len(),
                settings.interval,
                settings.mode_name()
            );
            EXIT_OK
        }
        Command::Run => match daemon::run(root, cli.config.as_deref(), settings, cli.watch_via) {
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

fn check(root: &Root, settings: &Settings, json: bool, now: bool) -> u8 {
    let survey = enforce::survey(root, settings, false);
    let paths = enforce::resolve(root, settings);
    let reports = enforce::pass(settings, &paths, false, &survey.boots, &[]);
    // What the running daemon knows that one look cannot: which knobs are contested.
    let daemon = forksafe::state::read(root);
    let contested = daemon.as_ref().map_or(&[][..], |d| &d.contested[..]);
    if json {
        println!("{}", to_json(root, settings, &reports, &survey, contested));
    } else {
        print!("{}", render(&reports, &survey, contested));
    }
    let ok = if now {
        reports.iter().all(|r| r.status().in_spec_now())
    } else {
        all_ok(&reports, survey.dropin.as_ref())
    };
    if ok { EXIT_OK } else { EXIT_NOT_OK }
}

fn apply(root: &Root, settings: &Settings, no_persist: bool) -> u8 {
    let mut settings = settings.clone();
    if no_persist {
        settings.dropin = None;
    }
    let survey = enforce::survey(root, &settings, true);
    let paths = enforce::resolve(root, &settings);
    let reports = enforce::pass(&settings, &paths, true, &survey.boots, &[]);
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
    if let Some(d) = &survey.dropin {
        match &d.wrote {
            Some(Ok(_)) => println!("{}: written", d.file.display()),
            _ if d.is_current() => println!("{}: up to date", d.file.display()),
            _ => {}
        }
    }
    eprint!("{}", notes(&reports, &survey));
    if all_ok(&reports, survey.dropin.as_ref()) {
        EXIT_OK
    } else {
        EXIT_NOT_OK
    }
}

/// The database password: `--password-file` (first line), else `REDISCLI_AUTH`.
fn doctor_auth(file: Option<&std::path::Path>) -> Result<forksafe::dbask::Auth, String> {
    let from_file = match file {
        None => None,
        Some(f) => {
            let text = forksafe::fsread::read_text(f, 64 * 1024)
                .map_err(|e| format!("--password-file {}: {e}", f.display()))?;
            Some(text.lines().next().unwrap_or("").to_string())
        }
    };
    Ok(forksafe::dbask::Auth::new(from_file))
}

fn doctor(root: &Root, settings: &Settings, json: bool, auth: &forksafe::dbask::Auth) -> u8 {
    use forksafe::doctor::Verdict;
    let checks = forksafe::doctor::diagnose(root, settings, auth);
    let safe = checks.iter().all(|c| c.status != Verdict::Fail);
    let complete = checks.iter().all(|c| c.status != Verdict::Unknown);
    if json {
        println!(
            "{}",
            serde_json::json!({ "safe": safe, "complete": complete, "checks": checks })
        );
    } else {
        print!("{}", forksafe::doctor::render(&checks));
    }
    if safe { EXIT_OK } else { EXIT_NOT_OK }
}

fn boot_cell(r: &KnobReport) -> String {
    match &r.boot {
        None => "-".into(),
        Some(b) => match b.value.as_ref().and_then(|a| a.value.as_deref()) {
            Some(v) if b.blocked_by.is_none() => forksafe::knob::normalize(v),
            _ => "unset".into(),
        },
    }
}

fn contest_of<'a>(contested: &'a [Contested], r: &KnobReport) -> Option<&'a Contested> {
    contested.iter().find(|c| c.knob == r.knob.name())
}

/// The human table: knob, desired, current, boot, status; then the notes.
fn render(reports: &[KnobReport], survey: &enforce::Survey, contested: &[Contested]) -> String {
    let rows: Vec<[String; 5]> = reports
        .iter()
        .map(|r| {
            let mut status = r.status().as_str().to_string();
            if contest_of(contested, r).is_some() {
                status.push_str(", contested");
            }
            [
                r.knob.name().to_string(),
                r.knob.desired().to_string(),
                r.current().unwrap_or("-").to_string(),
                boot_cell(r),
                status,
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
    out.push_str(&notes(reports, survey));
    for r in reports {
        if let Some(c) = contest_of(contested, r) {
            out.push_str(&format!(
                "{}: contested: the daemon has repaired it {} times since the fight began; something keeps setting it to {}{}\n",
                c.knob,
                c.repairs,
                c.values.join(", "),
                c.source.as_ref().map_or(String::new(), |s| format!(" (likely source: {s})"))
            ));
        }
    }
    out
}

/// What needs saying beyond the table: errors, boot values that are wrong, overrides,
/// sysctl.d entries that are not files, and the drop-in's state.
fn notes(reports: &[KnobReport], survey: &enforce::Survey) -> String {
    let mut out = String::new();
    for r in reports {
        let name = r.knob.name();
        if let Some(e) = r.error() {
            out.push_str(&format!("{name}: {e}\n"));
        }
        let Some(boot) = &r.boot else { continue };
        if !boot.right {
            out.push_str(&format!("{name}: {}\n", boot.explain()));
        }
        for o in &boot.overrides {
            out.push_str(&format!("{name}: overridden by {o}\n"));
        }
        for o in &boot.shadowed {
            out.push_str(&format!(
                "{name}: {o}, but loses at boot to {} (it applies again if that goes)\n",
                boot.value
                    .as_ref()
                    .map_or("nothing".to_string(), |w| format!(
                        "{}:{}",
                        w.file.display(),
                        w.line
                    ))
            ));
        }
    }
    for s in &survey.table.skipped {
        out.push_str(&format!("sysctl.d: {} is {}\n", s.file.display(), s.why));
    }
    for (file, e) in &survey.table.unreadable {
        out.push_str(&format!("sysctl.d: cannot read {}: {e}\n", file.display()));
    }
    if let Some(problem) = survey.dropin.as_ref().and_then(|d| d.problem(false)) {
        out.push_str(&format!("drop-in: {problem}\n"));
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
    survey: &enforce::Survey,
    contested: &[Contested],
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
                "contested": contest_of(contested, r).map(|c| serde_json::json!({
                    "repairs": c.repairs,
                    "values": c.values,
                    "source": c.source,
                })),
            });
            if let (Some(boot), Some(obj)) = (&r.boot, v.as_object_mut()) {
                obj.insert(
                    "boot".into(),
                    boot.value
                        .as_ref()
                        .filter(|_| boot.blocked_by.is_none())
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
    let skipped: Vec<serde_json::Value> = survey
        .table
        .skipped
        .iter()
        .map(|s| serde_json::json!({"file": s.file, "why": s.why}))
        .collect();
    serde_json::json!({
        "config": settings.source.to_string(),
        "knobs": knobs,
        "sysctl_d_skipped": skipped,
        "dropin": survey.dropin.as_ref().map(|d| serde_json::json!({
            "file": d.file,
            "status": if d.is_current() { "ok" } else { d.before.as_str() },
        })),
    })
}
