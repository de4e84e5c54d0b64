//! `forksafe validate`: the config loads as the daemon would load it, and every knob it
//! names exists on this machine. A knob that does not is most often a typo
//! (`vm.overcommit_memry`): named with its line and the nearest knob that does exist, and
//! exit 1. The daemon would accept such a config (a knob absent on this kernel is warned
//! once and the others are held), which is why this is 1 and not 2 (refused). Absences the
//! README documents as expected are said and pass: per-size THP on kernels without it
//! (before 6.8), and THP itself on a kernel built without it. A per-namespace sysctl
//! (`net.*`) gets a note: where the daemon will run decides whether it can hold it.

use std::path::{Component, Path};

use crate::config::Settings;
use crate::knob::{Kind, Knob, path_to_sysctl_name};
use crate::os::namespaces::{self, Ns};
use crate::os::root::Root;

use super::args::Outcome;
use super::spelling::nearest;

/// THP's directory under the root.
const THP: &str = "sys/kernel/mm/transparent_hugepage";

/// Directory entries looked at for a suggestion, at most (a directory under /proc/sys or
/// /sys has tens; this bounds a strange tree).
const MAX_ENTRIES: usize = 4096;

/// `forksafe validate`, once the settings have loaded.
pub(super) fn validate(root: &Root, settings: &Settings) -> Outcome {
    let mut missing = Vec::new();
    let mut notes = Vec::new();
    for knob in &settings.knobs {
        let at = match settings.line_of(knob) {
            Some(line) => format!("{}:{line}", settings.source),
            None => settings.source.to_string(),
        };
        if let Some(ns) = per_namespace(knob) {
            notes.push(format!(
                "{at}: {} belongs to {}: the daemon holds it only when it runs in the host's, \
                 and refuses the config at start elsewhere (see README, \"Knobs outside \
                 /proc/sys/vm\"; Ansible: forksafe_unit_overrides)",
                knob.name(),
                ns.described()
            ));
        }
        let Err(e) = knob.resolve(root) else { continue };
        if !e.is_absent() {
            // Not a question of spelling (permissions, a path leading out of its tree):
            // the daemon reports it; validate says it and judges the names only.
            notes.push(format!("{at}: {}: cannot check it here: {e}", knob.name()));
            continue;
        }
        match expected_absence(root, knob) {
            Some(why) => notes.push(format!(
                "{at}: {} is not on this machine, as expected: {why}; the daemon reports it \
                 absent once and holds the others",
                knob.name()
            )),
            None => {
                let hint = suggestion(root, knob)
                    .map_or(String::new(), |s| format!("; did you mean {s}?"));
                eprintln!(
                    "forksafe: {at}: {}: no such knob on this machine ({} does not \
                     exist){hint}",
                    knob.name(),
                    shown(knob)
                );
                missing.push(knob.name());
            }
        }
    }
    for note in &notes {
        println!("{note}");
    }
    if missing.is_empty() {
        println!("{}: accepted: {}", settings.source, settings.summary());
        Outcome::Ok
    } else {
        println!(
            "{}: loads, but names {} this machine does not have: {} (a typo, or a kernel \
             without it): the daemon would start and never set {}. Fix or remove the line.",
            settings.source,
            crate::words::count(missing.len(), "knob", "knobs"),
            missing.join(", "),
            if missing.len() == 1 { "it" } else { "them" },
        );
        Outcome::NotOk
    }
}

/// The namespace `knob` belongs to, if it is a per-namespace sysctl. Judged here only as a
/// note: validate runs in the caller's namespaces, and the unit the daemon will run under
/// (with or without its overrides) may not be in place yet.
fn per_namespace(knob: &Knob) -> Option<Ns> {
    (knob.kind() == Kind::Sysctl)
        .then(|| namespaces::of_sysctl(knob.rel()))
        .flatten()
}

/// The knob's file as the machine names it: `/proc/sys/vm/overcommit_memory`.
fn shown(knob: &Knob) -> String {
    format!("/{}/{}", knob.kind().base(), knob.rel().display())
}

/// Why `knob`'s absence is expected on this machine (the README's documented cases), or
/// `None` when it is not.
fn expected_absence(root: &Root, knob: &Knob) -> Option<&'static str> {
    let in_thp =
        knob.kind() == Kind::Sysfs && knob.rel().starts_with("kernel/mm/transparent_hugepage");
    if !in_thp {
        return None;
    }
    let thp = root.join(THP)?;
    if !thp.is_dir() {
        return Some(
            "this kernel has no transparent huge pages at all (built without them): there is \
             nothing to hold",
        );
    }
    let per_size = knob
        .rel()
        .components()
        .nth(3)
        .and_then(|c| c.as_os_str().to_str())
        .is_some_and(|c| c.starts_with("hugepages-"));
    let has_sizes = entries(&thp)
        .iter()
        .any(|name| name.starts_with("hugepages-"));
    (per_size && !has_sizes)
        .then_some("this kernel has no per-size THP settings (they came with Linux 6.8)")
}

/// The names in `dir` (at most [`MAX_ENTRIES`]).
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .take(MAX_ENTRIES)
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect()
}

/// The existing knob nearest to `knob`'s name: each missing part of its path replaced by
/// the nearest name in that directory, when the result exists.
fn suggestion(root: &Root, knob: &Knob) -> Option<String> {
    let mut dir = root.join(knob.kind().base())?;
    let mut parts = Vec::new();
    let mut changed = false;
    for comp in knob.rel().components() {
        let Component::Normal(name) = comp else {
            return None;
        };
        let name = name.to_str()?;
        if dir.join(name).symlink_metadata().is_ok() {
            parts.push(name.to_string());
        } else {
            let names = entries(&dir);
            let near = nearest(name, names.iter().map(String::as_str))?;
            parts.push(near.to_string());
            changed = true;
        }
        if let Some(last) = parts.last() {
            dir.push(last);
        }
    }
    if !changed || !dir.exists() {
        return None;
    }
    let rel = parts.join("/");
    Some(match knob.kind() {
        Kind::Sysctl => path_to_sysctl_name(&rel),
        Kind::Sysfs => rel,
    })
}
