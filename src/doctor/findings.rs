//! One check per place on the machine that sets a managed knob (see [`crate::neighbours`]):
//! redundant lines are ok (and safe to remove), conflicting ones fail when they act and
//! warn when dormant, and a line whose value cannot be read warns; each with the exact
//! command or edit that removes or fixes it.

use crate::neighbours::{Finding, Found, Place};

use super::check::{Check, Verdict, check};

/// One check per legacy finding: redundant (ok, safe to remove), conflicting (fail when it
/// acts, warn when it is dormant), or unknown (warn: it writes a managed knob, the value
/// cannot be read from the text).
pub(super) fn checks(found: &Found) -> Vec<Check> {
    let mut out: Vec<Check> = found.findings.iter().map(one).collect();
    if let Some(why) = &found.incomplete {
        out.push(check(
            "legacy-scan",
            Verdict::Unknown,
            format!("unknown: not every place on this machine was read: {why}"),
            None,
        ));
    }
    out
}

/// The check of one finding.
fn one(f: &Finding) -> Check {
    let id = format!("legacy:{}:{}", f.file.display(), f.line);
    let at = f.describe();
    let Some(value) = &f.value else {
        return check(
            id,
            Verdict::Warn,
            format!(
                "{at}: writes {}, value unknown (the line uses a variable or a loop; doctor does not guess): {}",
                f.knob, f.text
            ),
            Some(&format!(
                "read the line; if it sets {} to anything but {}, change or remove it ({})",
                f.knob,
                f.desired,
                removal(f)
            )),
        );
    };
    if f.redundant() {
        return match &f.place {
            Place::SysctlD { dropin: false, .. } => check(
                id,
                Verdict::Ok,
                format!(
                    "{at}: sets {} = {value}, the value forksafe wants; with [sysctl_d] manage = false this line is what keeps it at boot",
                    f.knob
                ),
                None,
            ),
            Place::Cmdline | Place::Grub => check(
                id,
                Verdict::Ok,
                format!(
                    "{at}: transparent_hugepage={value}, the value forksafe holds: harmless, and it covers the moments before forksafe starts"
                ),
                None,
            ),
            _ => check(
                id,
                Verdict::Ok,
                format!(
                    "{at}: sets {} = {value}, the value forksafe holds: safe to remove, forksafe holds this",
                    f.knob
                ),
                Some(&removal(f)),
            ),
        };
    }
    let acts = match &f.place {
        Place::SysctlD { wins, .. } => *wins,
        Place::Grub => true,
        Place::Cmdline => false, // the running kernel: forksafe already overrode it
        _ => f.acts_at_runtime(),
    };
    let what = match &f.place {
        Place::SysctlD { wins: true, .. } => "it wins at the next boot".to_string(),
        Place::SysctlD { wins: false, .. } => {
            "it loses at boot now, and applies again if what outranks it goes".to_string()
        }
        Place::Unit { enabled: false, .. } => {
            "the unit is not enabled; it acts if someone starts it".to_string()
        }
        Place::Tuned { enabled: false, .. } => {
            "tuned is not enabled; it acts when tuned starts".to_string()
        }
        Place::Cmdline => {
            "the running kernel booted with it; forksafe sets the value after boot".to_string()
        }
        Place::Grub => "the next kernel boots with it, until forksafe starts".to_string(),
        _ => "it works against forksafe: forksafe repairs it each time".to_string(),
    };
    check(
        id,
        if acts { Verdict::Fail } else { Verdict::Warn },
        format!("{at}: sets {} = {value}, not {}: {what}", f.knob, f.desired),
        Some(&conflict_fix(f)),
    )
}

/// The command that removes or disables a redundant finding.
fn removal(f: &Finding) -> String {
    let file = f.file.display();
    match &f.place {
        Place::Unit { name, .. } => format!(
            "systemctl disable --now {name} && rm {file}   (it only sets what forksafe holds)"
        ),
        Place::Tuned { profile, .. } => format!(
            "remove line {} from {file} ({profile}), or leave it: it agrees with forksafe",
            f.line
        ),
        _ => format!("delete line {} of {file}: {}", f.line, f.text),
    }
}

/// The exact change that stops a conflicting finding.
fn conflict_fix(f: &Finding) -> String {
    let file = f.file.display();
    match &f.place {
        Place::Unit { name, .. } => format!("systemctl disable --now {name}   (then remove {file})"),
        Place::Tuned {
            profile, active, ..
        } => format!(
            "make a tuned child profile that keeps {active} but not this line: mkdir /etc/tuned/{active}-forksafe; printf '[main]\\ninclude={active}\\n\\n[vm]\\ntransparent_hugepages=never\\n' > /etc/tuned/{active}-forksafe/tuned.conf; tuned-adm profile {active}-forksafe   (the line is in {profile})"
        ),
        Place::Grub => format!(
            "change transparent_hugepage={} to transparent_hugepage=never on line {} of {file}, then update-grub",
            f.value.as_deref().unwrap_or("?"),
            f.line
        ),
        Place::Cmdline => "change it in /etc/default/grub (GRUB_CMDLINE_LINUX), then update-grub; it applies from the next boot".to_string(),
        Place::SysctlD { .. } => format!(
            "delete line {} of {file}, or set it to {}",
            f.line, f.desired
        ),
        _ => format!("delete line {} of {file}: {}", f.line, f.text),
    }
}
