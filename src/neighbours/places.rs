//! The places on a machine where hand-made fixes live, read (never run): rc.local, systemd
//! units and their drop-ins, cron tables, the kernel command line and GRUB's defaults,
//! sysctl.d (judged from the survey's boot values, never again), and tuned profiles with
//! their `include=` chains. Each line that writes a managed knob becomes a [`Finding`].

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::finding::{Finding, Place};
use super::shell::{
    SOME_THP_FILE, Target, Write, drop_words, scan_line, target_of_key, target_of_path, thp_param,
    unknowable,
};
use crate::enforce::Survey;
use crate::knob::{Kind, normalize, sysctl_normalize};
use crate::os::fsread;
use crate::os::root::Root;

/// Where THP's sysfs files are, as a path on the system.
const THP_DIR: &str = "/sys/kernel/mm/transparent_hugepage/";

/// The most one scan reads: files (each at most 1 MiB), bytes in all, and entries listed
/// per directory. A machine with more is scanned as far as this, and the scan says so.
const MAX_FILES: usize = 20_000;
const MAX_BYTES: u64 = 64 * 1024 * 1024;
const MAX_ENTRIES: usize = 20_000;

/// What one scan may still read, and the bound it hit, if any.
pub(super) struct Budget {
    files: usize,
    bytes: u64,
    /// The first bound the scan hit: what was not read.
    pub(super) hit: Option<String>,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            files: MAX_FILES,
            bytes: MAX_BYTES,
            hit: None,
        }
    }
}

/// One scan: the knobs looked for, and what was found so far.
pub(super) struct Scan<'a> {
    pub(super) root: &'a Root,
    pub(super) targets: Vec<Target<'a>>,
    pub(super) out: Vec<Finding>,
    pub(super) budget: Budget,
    /// The units `systemctl enable` pulled in, listed once per scan.
    enabled: Option<HashSet<OsString>>,
}

impl<'a> Scan<'a> {
    /// A scan of `root` for `targets`.
    pub(super) fn new(root: &'a Root, targets: Vec<Target<'a>>) -> Scan<'a> {
        Scan {
            root,
            targets,
            out: Vec::new(),
            budget: Budget::default(),
            enabled: None,
        }
    }

    /// Read a file under the root, within the scan's budget.
    fn read(&mut self, path: &str) -> Option<Vec<u8>> {
        read_within(self.root, &mut self.budget, path)
    }

    /// The managed knobs one line of shell text writes; a file it loads (`sysctl -p`) is
    /// read within the budget.
    fn writes(&mut self, text: &str) -> Vec<Write> {
        let (root, budget) = (self.root, &mut self.budget);
        let mut read_file = |p: &str| read_within(root, budget, p);
        scan_line(text, &self.targets, &mut read_file)
    }

    /// Whether `unit` is pulled in at boot: a link in some `*.wants/` or `*.requires/`
    /// under /etc/systemd/system (where `systemctl enable` puts them).
    fn unit_enabled(&mut self, unit: &str) -> bool {
        let root = self.root;
        let budget = &mut self.budget;
        self.enabled
            .get_or_insert_with(|| {
                let mut set = HashSet::new();
                for d in list_dir(root, budget, "/etc/systemd/system") {
                    let name = d.to_string_lossy();
                    if name.ends_with(".wants") || name.ends_with(".requires") {
                        for link in list_dir(root, budget, &name) {
                            set.extend(link.file_name().map(OsStr::to_os_string));
                        }
                    }
                }
                set
            })
            .contains(OsStr::new(unit))
    }

    fn push(&mut self, file: &Path, line: usize, text: &str, w: Write, place: Place) {
        let Some(t) = self.targets.get(w.target) else {
            return;
        };
        // A line that writes a THP file through a variable names no file exactly: it may set
        // any managed THP knob.
        let (knob, sets) =
            if w.value.is_none() && !text.contains(&t.path) && t.knob.kind() == Kind::Sysfs {
                let thp: Vec<String> = self
                    .targets
                    .iter()
                    .filter(|t| t.path.starts_with(THP_DIR))
                    .map(|t| t.knob.name().to_string())
                    .collect();
                (SOME_THP_FILE.to_string(), thp)
            } else {
                (t.knob.name().to_string(), vec![t.knob.name().to_string()])
            };
        self.out.push(Finding {
            file: file.to_path_buf(),
            line,
            knob,
            sets,
            value: w.value,
            desired: t.knob.desired().to_string(),
            place,
            text: text.trim().to_string(),
        });
    }

    /// A file of shell lines (`skip` words dropped from each line first, for cron).
    fn shell_file(&mut self, file: &Path, place: &Place, skip: impl Fn(&str) -> usize) {
        let Some(bytes) = self.read(&file.to_string_lossy()) else {
            return;
        };
        let text = String::from_utf8_lossy(&bytes).into_owned();
        for (n, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let body = drop_words(trimmed, skip(trimmed));
            for w in self.writes(body) {
                self.push(file, n + 1, trimmed, w, place.clone());
            }
        }
    }

    pub(super) fn rc_local(&mut self) {
        for f in ["/etc/rc.local", "/etc/rc.d/rc.local"] {
            self.shell_file(Path::new(f), &Place::RcLocal, |_| 0);
        }
    }

    pub(super) fn cron(&mut self) {
        // System tables have a user field after the schedule; users' tables do not.
        let schedule = |user: bool| {
            move |line: &str| {
                if line
                    .split_whitespace()
                    .next()
                    .is_some_and(|w| w.contains('='))
                {
                    return usize::MAX; // an environment line
                }
                let fields = if line.starts_with('@') { 1 } else { 5 };
                fields + usize::from(user)
            }
        };
        self.shell_file(Path::new("/etc/crontab"), &Place::Cron, schedule(true));
        for f in list_dir(self.root, &mut self.budget, "/etc/cron.d") {
            self.shell_file(&f, &Place::Cron, schedule(true));
        }
        for f in list_dir(self.root, &mut self.budget, "/var/spool/cron/crontabs") {
            self.shell_file(&f, &Place::Cron, schedule(false));
        }
    }

    pub(super) fn units(&mut self) {
        let dir = "/etc/systemd/system";
        let mut files = Vec::new();
        for f in list_dir(self.root, &mut self.budget, dir) {
            let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
            match name {
                Some(n) if n.ends_with(".d") => {
                    let unit = n.trim_end_matches(".d").to_string();
                    for d in list_dir(self.root, &mut self.budget, &f.to_string_lossy()) {
                        if d.extension().is_some_and(|e| e == "conf") {
                            files.push((unit.clone(), d));
                        }
                    }
                }
                Some(n) if n.ends_with(".service") => files.push((n, f)),
                _ => {}
            }
        }
        for (unit, file) in files {
            let enabled = self.unit_enabled(&unit);
            let Some(bytes) = self.read(&file.to_string_lossy()) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes).into_owned();
            for (n, line) in text.lines().enumerate() {
                let Some((key, cmd)) = line.trim().split_once('=') else {
                    continue;
                };
                if !matches!(key.trim(), "ExecStart" | "ExecStartPre" | "ExecStartPost") {
                    continue;
                }
                // ExecStart= prefixes: - @ : + ! change how it runs, not what.
                let cmd = cmd.trim().trim_start_matches(['-', '@', ':', '+', '!']);
                for w in self.writes(cmd) {
                    let place = Place::Unit {
                        name: unit.clone(),
                        enabled,
                    };
                    self.push(&file, n + 1, line, w, place);
                }
            }
        }
    }

    pub(super) fn kernel_cmdline(&mut self) {
        let Some(t) = self.thp_enabled_target() else {
            return;
        };
        if let Some(bytes) = self.read("/proc/cmdline") {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if let Some(v) = thp_param(&text) {
                let w = Write {
                    target: t,
                    value: Some(v),
                };
                self.push(Path::new("/proc/cmdline"), 1, &text, w, Place::Cmdline);
            }
        }
        let mut files = vec![PathBuf::from("/etc/default/grub")];
        files.extend(
            list_dir(self.root, &mut self.budget, "/etc/default/grub.d")
                .into_iter()
                .filter(|f| f.extension().is_some_and(|e| e == "cfg")),
        );
        for file in files {
            let Some(bytes) = self.read(&file.to_string_lossy()) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes).into_owned();
            for (n, line) in text.lines().enumerate() {
                let l = line.trim();
                if !l.starts_with("GRUB_CMDLINE_LINUX") {
                    continue;
                }
                if let Some(v) = thp_param(l) {
                    let w = Write {
                        target: t,
                        value: (!unknowable(&v)).then_some(v),
                    };
                    self.push(&file, n + 1, line, w, Place::Grub);
                }
            }
        }
    }

    fn thp_enabled_target(&self) -> Option<usize> {
        self.targets
            .iter()
            .position(|t| t.path == "/sys/kernel/mm/transparent_hugepage/enabled")
    }

    /// The sysctl.d lines that set a managed sysctl, each judged from the survey's boot
    /// value for its knob: the survey judged the next boot once, for every caller.
    pub(super) fn sysctl_d(&mut self, dropin: Option<&Path>, survey: &Survey) {
        for (t, boot) in self.targets.iter().zip(&survey.boots) {
            let (Some(key), Some(boot)) = (&t.key, boot) else {
                continue;
            };
            for a in survey.table.assignments_for(key) {
                if Some(a.file.as_path()) == dropin {
                    continue;
                }
                let wins =
                    boot.overrides.contains(a) || (boot.value.as_ref() == Some(a) && boot.right);
                self.out.push(Finding {
                    file: a.file.clone(),
                    line: a.line,
                    knob: t.knob.name().to_string(),
                    sets: vec![t.knob.name().to_string()],
                    value: a.value.as_deref().map(normalize),
                    desired: t.knob.desired().to_string(),
                    place: Place::SysctlD {
                        wins,
                        dropin: dropin.is_some(),
                    },
                    text: format!(
                        "{} = {}",
                        sysctl_normalize(&a.key),
                        a.value.as_deref().unwrap_or("(excluded)")
                    ),
                });
            }
        }
    }

    pub(super) fn tuned(&mut self) {
        let Some(bytes) = self.read("/etc/tuned/active_profile") else {
            return;
        };
        let active = String::from_utf8_lossy(&bytes).trim().to_string();
        if active.is_empty() {
            return;
        }
        let enabled = self.unit_enabled("tuned.service");
        // `active_profile` may name several profiles, merged in order.
        for name in active.split_whitespace() {
            let mut seen = Vec::new();
            self.tuned_profile(name, name, enabled, &mut seen, 0);
        }
    }

    /// One profile and, first, the profiles it includes (a child's lines win).
    fn tuned_profile(
        &mut self,
        name: &str,
        active: &str,
        enabled: bool,
        seen: &mut Vec<String>,
        depth: u8,
    ) {
        if seen.iter().any(|s| s == name) || depth > 8 {
            return;
        }
        seen.push(name.to_string());
        let Some((file, text)) = tuned_conf(self.root, &mut self.budget, name) else {
            return;
        };
        let place = Place::Tuned {
            profile: name.to_string(),
            active: active.to_string(),
            enabled,
        };
        let mut section = String::new();
        let mut lines = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                section = s.trim().to_string();
                continue;
            }
            let Some((k, v)) = l.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            if section == "main" && k == "include" {
                for parent in v.split([',', ' ']).filter(|p| !p.is_empty()) {
                    self.tuned_profile(parent, active, enabled, seen, depth + 1);
                }
                continue;
            }
            lines.push((
                n + 1,
                section.clone(),
                k.to_string(),
                v.to_string(),
                l.to_string(),
            ));
        }
        for (n, section, k, v, l) in lines {
            let value = (!unknowable(&v)).then(|| normalize(v.trim_start_matches(['>', '<'])));
            let target = match section.as_str() {
                "vm" if matches!(k.as_str(), "transparent_hugepages" | "transparent_hugepage") => {
                    self.thp_enabled_target()
                }
                "vm" if k == "transparent_hugepage.defrag" => self
                    .targets
                    .iter()
                    .position(|t| t.path == "/sys/kernel/mm/transparent_hugepage/defrag"),
                "sysctl" => target_of_key(&self.targets, &k),
                "sysfs" => target_of_path(&self.targets, &k),
                "bootloader" if k == "cmdline" || k.starts_with("cmdline_") => {
                    thp_param(&v).and(self.thp_enabled_target())
                }
                _ => None,
            };
            let Some(target) = target else { continue };
            let value = if section == "bootloader" {
                thp_param(&v)
            } else {
                value
            };
            let w = Write { target, value };
            self.push(&file, n, &l, w, place.clone());
        }
    }
}

/// Read `path` under the root if the budget allows; a file past it is not read, and the
/// budget says what was left.
fn read_within(root: &Root, budget: &mut Budget, path: &str) -> Option<Vec<u8>> {
    if budget.files == 0 || budget.bytes == 0 {
        budget.hit.get_or_insert_with(|| {
            format!(
                "the scan stopped at {MAX_FILES} files or {} MiB read; {path} and what comes after it were not read",
                MAX_BYTES >> 20
            )
        });
        return None;
    }
    budget.files -= 1;
    let limit = budget.bytes.min(fsread::CONFIG_LIMIT);
    let bytes = root.read(path, limit).ok()?;
    budget.bytes = budget.bytes.saturating_sub(bytes.len() as u64);
    Some(bytes)
}

/// The entries of a directory under the root (not hidden), sorted, as paths on the
/// system; at most [`MAX_ENTRIES`], and the budget says when there were more.
fn list_dir(root: &Root, budget: &mut Budget, dir: &str) -> Vec<PathBuf> {
    let Ok(under) = root.resolve(dir) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(under) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = Vec::new();
    for e in entries.flatten() {
        if e.file_name().as_bytes().starts_with(b".") {
            continue;
        }
        if out.len() >= MAX_ENTRIES {
            budget.hit.get_or_insert_with(|| {
                format!("{dir} has more than {MAX_ENTRIES} entries; the rest were not read")
            });
            break;
        }
        out.push(Path::new(dir).join(e.file_name()));
    }
    out.sort();
    out
}

/// A tuned profile's file: `/etc/tuned` over `/usr/lib/tuned`, each with or without the
/// `profiles/` level newer tuned uses.
fn tuned_conf(root: &Root, budget: &mut Budget, name: &str) -> Option<(PathBuf, String)> {
    if name.contains('/') || name.starts_with('.') {
        return None;
    }
    for base in [
        "/etc/tuned/profiles",
        "/etc/tuned",
        "/usr/lib/tuned/profiles",
        "/usr/lib/tuned",
    ] {
        let file = Path::new(base).join(name).join("tuned.conf");
        if let Some(bytes) = read_within(root, budget, &file.to_string_lossy()) {
            return Some((file, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    None
}
