//! What `check`, `apply` and `doctor` print: the table and notes people read, the JSON
//! tools read, and each command's [`Outcome`].

use std::path::Path;

use crate::config::Settings;
use crate::doctor::{self, Verdict, auth::Auth};
use crate::enforce::{self, KnobReport, Pass, Status};
use crate::knob::normalize;
use crate::os::fsread;
use crate::os::root::Root;
use crate::published::{self, Contested};
use crate::sysctl_d::Assignment;
use crate::words;

use super::args::{Cli, Outcome};

/// `forksafe check`: one look, changing nothing.
pub(super) fn check(root: &Root, settings: &Settings, json: bool, now: bool) -> Outcome {
    let pass = enforce::once(root, settings, false);
    // What the running daemon knows that one look cannot: which knobs are contested.
    let daemon = published::read(root);
    let contested = daemon.as_ref().map_or(&[][..], |d| &d.contested[..]);
    if json {
        println!("{}", to_json(root, settings, &pass, contested));
    } else {
        print!("{}", render(&pass, contested));
    }
    let ok = if now {
        pass.in_spec_now()
    } else {
        pass.all_ok()
    };
    if ok { Outcome::Ok } else { Outcome::NotOk }
}

/// `forksafe apply`: one look and repair, the drop-in written unless `no_persist`. stdout
/// says what changed, the command that undoes it, and, when the exit code is 1, why.
pub(super) fn apply(root: &Root, settings: &Settings, no_persist: bool) -> Outcome {
    let mut settings = settings.clone();
    if no_persist {
        settings.dropin = None;
    }
    let pass = enforce::once(root, &settings, true);
    let mut undo = Vec::new();
    for r in &pass.reports {
        let k = r.knob;
        match (&r.repair, r.error()) {
            (Some(Ok(())), _) => {
                let was = r.observed.as_deref().unwrap_or("");
                println!(
                    "{}: set to {} (was {})",
                    k.name(),
                    k.desired(),
                    words::value(was)
                );
                undo.extend(k.undo(was));
            }
            (_, Some(e)) => eprintln!("forksafe: {}: {e}", k.name()),
            (_, None) => println!("{}: already {}", k.name(), k.desired()),
        }
    }
    if let Some(d) = &pass.survey.dropin {
        match &d.wrote {
            Some(Ok(_)) => {
                println!("{}: written", d.file.display());
                undo.push(format!("rm {}", d.file.display()));
            }
            _ if d.is_current() => println!("{}: up to date", d.file.display()),
            _ => {}
        }
    }
    eprint!("{}", notes(&pass));
    if !undo.is_empty() {
        // The last change first: THP `enabled` goes back before `defrag`.
        undo.reverse();
        println!("to undo: {}", undo.join("; "));
    }
    if pass.all_ok() {
        Outcome::Ok
    } else {
        for why in not_in_spec(&pass) {
            println!("not in spec, so exit 1: {why}");
        }
        Outcome::NotOk
    }
}

/// Why a pass is not all in spec, one line per knob (and the drop-in): what `apply` ends its
/// stdout with when it exits 1.
fn not_in_spec(pass: &Pass) -> Vec<String> {
    let mut out: Vec<String> = pass
        .reports
        .iter()
        .filter_map(|r| {
            let name = r.knob.name();
            let why = match r.status() {
                Status::Ok => return None,
                Status::BootDrift => format!(
                    "{} now, but the next boot does not keep it: {}",
                    r.knob.desired(),
                    r.boot
                        .as_ref()
                        .and_then(|b| b.trouble())
                        .unwrap_or_default()
                ),
                Status::BootUnknown => format!(
                    "{} now, but {}",
                    r.knob.desired(),
                    r.boot
                        .as_ref()
                        .and_then(|b| b.unknown())
                        .unwrap_or_default()
                ),
                Status::Drift => format!(
                    "is {}, not {}: something else set it at once",
                    words::value(r.current().unwrap_or("")),
                    r.knob.desired()
                ),
                Status::Absent => "not on this kernel".to_string(),
                Status::Error => match r.error() {
                    Some(e) => format!("not set: {e}"),
                    None => "not set".to_string(),
                },
            };
            Some(format!("{name}: {why}"))
        })
        .collect();
    if let Some(problem) = pass.survey.dropin.as_ref().and_then(|d| d.problem(false)) {
        out.push(format!("drop-in: {problem}"));
    }
    out
}

/// Where the databases' passwords come from: `--password-file` (first line), else
/// `REDISCLI_AUTH`, for every database; `--password-dir` and `--password-from-config` per
/// database.
fn doctor_auth(cli: &Cli) -> Result<Auth, String> {
    let from_file = match &cli.password_file {
        None => None,
        Some(f) => {
            let text = fsread::read_text(f, 64 * 1024)
                .map_err(|e| format!("--password-file {}: {e}", f.display()))?;
            Some(text.lines().next().unwrap_or("").to_string())
        }
    };
    if let Some(d) = cli.password_dir.as_ref().filter(|d| !d.is_dir()) {
        return Err(format!("--password-dir {}: not a directory", d.display()));
    }
    Ok(Auth::new(
        from_file,
        cli.password_dir.clone(),
        cli.password_from_config,
    ))
}

/// `forksafe doctor`: exit 1 when a check fails, and with `--strict` also when one could
/// not be judged (a probe must not read "not everything known" as OK).
pub(super) fn doctor(root: &Root, settings: &Settings, cli: &Cli) -> Outcome {
    let auth = match doctor_auth(cli) {
        Ok(auth) => auth,
        Err(e) => {
            eprintln!("forksafe: {e}");
            return Outcome::Refused;
        }
    };
    let textfile = match cli.textfile.as_deref().map(textfile_path).transpose() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("forksafe: {e}");
            return Outcome::Refused;
        }
    };
    let walk = match (cli.walk_up_to, &textfile) {
        (Some(kib), _) => doctor::Walk::UpTo(kib),
        (None, Some(_)) => doctor::Walk::UpTo(TIMER_WALK_KIB),
        (None, None) => doctor::Walk::Always,
    };
    let checks = doctor::diagnose(root, settings, &auth, walk);
    let safe = checks.iter().all(|c| c.status != Verdict::Fail);
    let complete = checks.iter().all(|c| c.status != Verdict::Unknown);
    let report = doctor::render(&checks);
    if let Some(path) = &textfile {
        if let Err(e) = export(root, path, &checks) {
            // Not a finding (1): the timer's unit takes 1 as success, and this must fail it.
            eprintln!("forksafe: {e}");
            return Outcome::Refused;
        }
        print!(
            "{}",
            report
                .lines()
                .next()
                .map_or(String::new(), |l| format!("{l}\n"))
        );
    } else if cli.json {
        println!(
            "{}",
            serde_json::json!({ "safe": safe, "complete": complete, "checks": checks })
        );
    } else {
        print!("{report}");
    }
    if safe && (complete || !cli.strict) {
        Outcome::Ok
    } else {
        Outcome::NotOk
    }
}

/// What the timer's pass walks, by default: databases up to 8 GiB resident.
const TIMER_WALK_KIB: u64 = 8 << 20;

/// `--textfile`: an absolute `*.prom` path, as `[report] textfile`.
fn textfile_path(p: &Path) -> Result<std::path::PathBuf, String> {
    crate::config::validate_textfile(&p.to_string_lossy()).map(|p| p.to_path_buf())
}

/// Write the metrics to `path` under the root, and journal what turned FAIL or back since
/// the run that wrote it last.
fn export(root: &Root, path: &Path, checks: &[doctor::Check]) -> Result<(), String> {
    use crate::os::atomic::{self, Durability};
    let before = root
        .read_text(&path.to_string_lossy(), fsread::CONFIG_LIMIT)
        .map(|t| doctor::export::verdicts(&t))
        .unwrap_or_default();
    for event in doctor::export::changes(&before, checks) {
        event.emit();
    }
    let text = doctor::export::metrics(checks, std::time::SystemTime::now());
    atomic::write(root, path, &text, Durability::Runtime)
        .map(|_| ())
        .map_err(|e| format!("--textfile: {e}"))
}

fn boot_cell(r: &KnobReport) -> String {
    match &r.boot {
        None => "-".into(),
        Some(b) => match b.value.as_ref().and_then(|a| a.value.as_deref()) {
            Some(v) if b.blocked_by.is_none() => normalize(v),
            _ => "unset".into(),
        },
    }
}

fn contest_of<'a>(contested: &'a [Contested], r: &KnobReport) -> Option<&'a Contested> {
    contested.iter().find(|c| c.knob == r.knob.name())
}

/// The human table: knob, desired, current, boot, status; then the notes.
fn render(pass: &Pass, contested: &[Contested]) -> String {
    let rows: Vec<[String; 5]> = pass
        .reports
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
    out.push_str(&notes(pass));
    for r in &pass.reports {
        if let Some(c) = contest_of(contested, r) {
            out.push_str(&format!(
                "{}: contested: the daemon has repaired it {} since the fight began; something keeps setting it to {}{}\n",
                c.knob,
                words::count64(c.repairs, "time", "times"),
                words::values(&c.values),
                c.source.as_ref().map_or(String::new(), |s| format!(" (likely source: {s})"))
            ));
        }
    }
    out
}

/// What needs saying beyond the table: errors, boot values that are wrong, overrides,
/// sysctl.d entries that are not files, and the drop-in's state.
fn notes(pass: &Pass) -> String {
    let survey = &pass.survey;
    let mut out = String::new();
    for r in &pass.reports {
        let name = r.knob.name();
        if let Some(e) = r.error() {
            out.push_str(&format!("{name}: {e}\n"));
        }
        let Some(boot) = &r.boot else { continue };
        for fact in boot.facts() {
            out.push_str(&format!("{name}: {fact}\n"));
        }
        for o in &boot.shadowed {
            out.push_str(&format!(
                "{name}: {o}, but loses at boot to {} (it applies again if that goes)\n",
                boot.winner_at()
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
    serde_json::json!({"file": a.file.display().to_string(), "line": a.line, "value": a.value})
}

fn to_json(
    root: &Root,
    settings: &Settings,
    pass: &Pass,
    contested: &[Contested],
) -> serde_json::Value {
    let survey = &pass.survey;
    let knobs: Vec<serde_json::Value> = pass
        .reports
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
                obj.insert("boot_unknown".into(), boot.unknown().into());
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
        .map(|s| serde_json::json!({"file": s.file.display().to_string(), "why": s.why}))
        .collect();
    serde_json::json!({
        "config": settings.source.to_string(),
        "knobs": knobs,
        "sysctl_d_skipped": skipped,
        "dropin": survey.dropin.as_ref().map(|d| serde_json::json!({
            "file": d.file.display().to_string(),
            "status": if d.is_current() { "ok" } else { d.before.as_str() },
        })),
    })
}
