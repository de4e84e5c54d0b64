//! The hand-made fixes forksafe replaces, and the neighbours that work against it: every
//! place on the machine that sets a managed knob, found by reading (never running) rc.local,
//! systemd units and their drop-ins, cron tables, the kernel command line and GRUB's
//! defaults, and tuned profiles (with their `include=` chains). sysctl.d and
//! `/etc/sysctl.conf` are judged by the same table `check` uses (`sysctl_d::Table`).
//!
//! Shell text is scanned with a small matcher: `echo V > FILE`, `printf V > FILE`,
//! `echo V | tee FILE`, `sysctl [-w] KEY=V`, `sysctl -p [FILE]`, `sysctl --system`, and
//! `sh -c '...'` around any of them. A line that names a managed knob and writes something
//! the matcher cannot read (a variable, a loop) is reported with its value unknown, never
//! guessed.
//!
//! `doctor` shows every finding; the daemon names the likely source of a repair or a fight
//! from the findings that act while the system runs, scanned at most once a minute.

use std::path::{Path, PathBuf};

use crate::config::Settings;
use crate::fsread;
use crate::knob::{Kind, Knob, normalize, sysctl_normalize};
use crate::report::Event;
use crate::root::Root;
use crate::sysctl_d::{self, Table};

/// Where a finding was made, and what acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// `/etc/rc.local` or `/etc/rc.d/rc.local` (runs once, late in boot, after forksafe).
    RcLocal,
    /// A systemd unit (or a drop-in of one): its name and whether it is enabled.
    Unit {
        /// The unit's name.
        name: String,
        /// Whether a `.wants/` or `.requires/` link pulls it in at boot.
        enabled: bool,
    },
    /// A cron table line.
    Cron,
    /// A sysctl.d file or `/etc/sysctl.conf`: what the next boot (or `sysctl --system`)
    /// does with it.
    SysctlD {
        /// It decides the next boot's value (or procps applies it last).
        wins: bool,
        /// forksafe manages a drop-in (so a line with the same value is redundant).
        dropin: bool,
    },
    /// The running kernel's command line.
    Cmdline,
    /// GRUB's defaults (the next kernel command line).
    Grub,
    /// A tuned profile: the profile, whether it is active, whether tuned is enabled.
    Tuned {
        /// The profile the line is in.
        profile: String,
        /// The active profile (the one tuned applies), which includes it.
        active: String,
        /// Whether tuned.service is enabled.
        enabled: bool,
    },
}

/// One line somewhere on the machine that sets a managed knob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The file, as a path on the system.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// The knob's name (as in the config), or what the line names when its value is
    /// unknown.
    pub knob: String,
    /// The value it sets; `None` when it cannot be read from the text.
    pub value: Option<String>,
    /// The knob's desired value.
    pub desired: String,
    /// Where, and what acts on it.
    pub place: Place,
    /// The line itself (trimmed).
    pub text: String,
}

impl Finding {
    /// Whether it sets the value forksafe holds.
    pub fn redundant(&self) -> bool {
        self.value.as_deref() == Some(self.desired.as_str())
    }

    /// Whether it acts while the system runs (after forksafe started): what can make a
    /// repair or a fight.
    pub fn acts_at_runtime(&self) -> bool {
        match &self.place {
            Place::RcLocal | Place::Cron => true,
            Place::Unit { enabled, .. } => *enabled,
            Place::Tuned { enabled, .. } => *enabled,
            Place::SysctlD { .. } | Place::Cmdline | Place::Grub => false,
        }
    }

    /// `file:line (what)`, for a journal SOURCE and messages.
    pub fn describe(&self) -> String {
        let what = match &self.place {
            Place::RcLocal => "rc.local".to_string(),
            Place::Unit { name, enabled } => format!(
                "unit {name}, {}",
                if *enabled { "enabled" } else { "not enabled" }
            ),
            Place::Cron => "cron".to_string(),
            Place::SysctlD { .. } if self.file == Path::new(sysctl_d::SYSCTL_CONF) => {
                "sysctl.conf, applied last by procps' sysctl --system".to_string()
            }
            Place::SysctlD { .. } => "sysctl.d".to_string(),
            Place::Cmdline => "kernel command line".to_string(),
            Place::Grub => "GRUB default".to_string(),
            Place::Tuned {
                profile, active, ..
            } if profile == active => format!("tuned profile {profile}, active"),
            Place::Tuned {
                profile, active, ..
            } => format!("tuned profile {profile}, included by the active profile {active}"),
        };
        format!("{}:{} ({what})", self.file.display(), self.line)
    }
}

// ------------------------------------------------------------------------ the matcher

/// What a managed knob is called in the text forksafe scans.
struct Target<'a> {
    knob: &'a Knob,
    /// The knob file's path on the system (`/proc/sys/vm/overcommit_memory`).
    path: String,
    /// The sysctl key, slashed (`vm/overcommit_memory`), for sysctl knobs.
    key: Option<String>,
}

fn targets(settings: &Settings) -> Vec<Target<'_>> {
    settings
        .knobs
        .iter()
        .map(|k| Target {
            knob: k,
            path: format!("/{}/{}", k.kind().base(), k.rel().display()),
            key: (k.kind() == Kind::Sysctl).then(|| k.rel().to_string_lossy().into_owned()),
        })
        .collect()
}

/// A write the matcher read off a line: which target, and the value (or unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Write {
    target: usize,
    value: Option<String>,
}

/// What a line that writes some THP file, but not one the matcher can tell, is said to
/// write.
const SOME_THP_FILE: &str =
    "a file in /sys/kernel/mm/transparent_hugepage (which one the line does not say)";

/// Split shell text into words, honouring quotes and backslashes; operators (`;`, `&&`,
/// `||`, `|`, `>`, `>>`, `&`, `(`, `)`) become their own words. `$` and backquotes stay in
/// the words (the caller treats such a word as unknown).
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut have = false;
    let mut chars = text.chars().peekable();
    let flush = |cur: &mut String, have: &mut bool, out: &mut Vec<String>| {
        if *have {
            out.push(std::mem::take(cur));
            *have = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                have = true;
                for d in chars.by_ref() {
                    if d == '\'' {
                        break;
                    }
                    cur.push(d);
                }
            }
            '"' => {
                have = true;
                while let Some(d) = chars.next() {
                    match d {
                        '"' => break,
                        '\\' => {
                            if let Some(e) = chars.next() {
                                cur.push(e);
                            }
                        }
                        d => cur.push(d),
                    }
                }
            }
            '\\' => {
                have = true;
                if let Some(e) = chars.next() {
                    cur.push(e);
                }
            }
            '#' if !have => break, // a comment
            c if c.is_whitespace() => flush(&mut cur, &mut have, &mut out),
            ';' | '&' | '|' | '>' | '<' | '(' | ')' => {
                flush(&mut cur, &mut have, &mut out);
                let mut op = c.to_string();
                if let Some(&n) = chars.peek() {
                    if (c == '>' || c == '&' || c == '|') && n == c {
                        op.push(n);
                        chars.next();
                    }
                }
                out.push(op);
            }
            c => {
                have = true;
                cur.push(c);
            }
        }
    }
    flush(&mut cur, &mut have, &mut out);
    out
}

fn is_op(w: &str) -> bool {
    matches!(w, ";" | "&" | "&&" | "|" | "||" | "(" | ")")
}

fn unknowable(w: &str) -> bool {
    w.contains('$') || w.contains('`') || w.contains('*') || w.contains('{')
}

/// The commands of a line: runs of words between operators; a `|` is kept as the start of
/// the next command so `tee` knows it was piped into.
fn commands(words: &[String]) -> Vec<(bool, Vec<String>)> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut piped = false;
    for w in words {
        if is_op(w) {
            if !cur.is_empty() {
                out.push((piped, std::mem::take(&mut cur)));
            }
            piped = w == "|";
        } else {
            cur.push(w.clone());
        }
    }
    if !cur.is_empty() {
        out.push((piped, cur));
    }
    out
}

/// The command's own words: without leading `VAR=x`, `sudo`, `exec`, `env`, `nohup`.
fn strip_prefixes(cmd: &[String]) -> &[String] {
    let mut i = 0;
    while let Some(w) = cmd.get(i) {
        let base = w.rsplit('/').next().unwrap_or(w);
        let assignment = w.contains('=') && !w.starts_with('-') && !w.starts_with('/');
        if matches!(base, "sudo" | "exec" | "env" | "nohup" | "command") || assignment {
            i += 1;
        } else {
            break;
        }
    }
    cmd.get(i..).unwrap_or_default()
}

fn target_of_path(targets: &[Target], path: &str) -> Option<usize> {
    let clean = path.trim_end_matches('/');
    targets.iter().position(|t| t.path == clean)
}

fn target_of_key(targets: &[Target], key: &str) -> Option<usize> {
    let key = sysctl_d::normalize_key(key);
    targets
        .iter()
        .position(|t| t.key.as_deref() == Some(key.as_str()))
}

/// The value `echo`/`printf` would print (escapes such as `\n` dropped), or `None` when it
/// depends on the shell (a variable).
fn printed(cmd: &[String]) -> Option<String> {
    let base = cmd.first()?.rsplit('/').next()?;
    let args: Vec<&String> = cmd
        .get(1..)?
        .iter()
        .take_while(|a| !matches!(a.as_str(), ">" | ">>" | "<"))
        .skip_while(|a| base == "echo" && matches!(a.as_str(), "-n" | "-e" | "-E" | "-ne" | "-en"))
        .collect();
    let text = match base {
        "echo" => args
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        "printf" => (*args.first()?).clone(),
        _ => return None,
    };
    if unknowable(&text) {
        return None;
    }
    Some(normalize(&text.replace("\\n", " ")))
}

/// Every write of a managed knob on one line of shell text. `read_file` reads a file named
/// by `sysctl -p` (under the root).
fn shell_writes(
    text: &str,
    targets: &[Target],
    read_file: &dyn Fn(&str) -> Option<Vec<u8>>,
    depth: u8,
) -> Vec<Write> {
    let mut out = Vec::new();
    let cmds = commands(&words(text));
    let mut last_print: Option<Option<String>> = None;
    for (piped, cmd) in &cmds {
        let cmd = strip_prefixes(cmd);
        let Some(first) = cmd.first() else { continue };
        let base = first.rsplit('/').next().unwrap_or(first);
        // sh -c '...': the script is one word; scan it as a line of its own.
        if matches!(base, "sh" | "bash" | "dash") && depth < 3 {
            if let Some(pos) = cmd.iter().position(|w| w == "-c") {
                if let Some(script) = cmd.get(pos + 1) {
                    out.extend(shell_writes(script, targets, read_file, depth + 1));
                }
            }
            continue;
        }
        // Redirects: `> FILE` or `>> FILE` after echo/printf.
        let value = printed(cmd);
        let is_print = matches!(base, "echo" | "printf");
        let mut i = 0;
        while let Some(w) = cmd.get(i) {
            if (w == ">" || w == ">>") && is_print {
                if let Some(t) = cmd.get(i + 1).and_then(|p| target_of_path(targets, p)) {
                    out.push(Write {
                        target: t,
                        value: value.clone(),
                    });
                }
                i += 2;
                continue;
            }
            i += 1;
        }
        if base == "tee" && *piped {
            for p in cmd.iter().skip(1).filter(|a| !a.starts_with('-')) {
                if let Some(t) = target_of_path(targets, p) {
                    out.push(Write {
                        target: t,
                        value: last_print.clone().flatten(),
                    });
                }
            }
        }
        if base == "sysctl" {
            out.extend(sysctl_writes(cmd, targets, read_file));
        }
        last_print = is_print.then_some(value);
    }
    out
}

/// `sysctl KEY=V`, `sysctl -w KEY=V`, `sysctl -p [FILE]`, `sysctl --system`.
fn sysctl_writes(
    cmd: &[String],
    targets: &[Target],
    read_file: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> Vec<Write> {
    let mut out = Vec::new();
    let mut args = cmd.iter().skip(1).peekable();
    while let Some(a) = args.next() {
        match a.as_str() {
            "-p" | "--load" => {
                let file = match args.peek() {
                    Some(f) if !f.starts_with('-') && !f.contains('=') => {
                        let f = f.to_string();
                        args.next();
                        f
                    }
                    _ => sysctl_d::SYSCTL_CONF.to_string(),
                };
                let Some(bytes) = read_file(&file) else {
                    continue;
                };
                for asg in sysctl_d::parse(&bytes, Path::new(&file)) {
                    if let (Some(t), Some(v)) = (target_of_key(targets, &asg.key), asg.value) {
                        out.push(Write {
                            target: t,
                            value: Some(normalize(&v)),
                        });
                    }
                }
            }
            "--system" => {
                // Applies sysctl.d and /etc/sysctl.conf again: judged with them.
            }
            s if s.starts_with('-') => {}
            s => {
                if let Some((k, v)) = s.split_once('=') {
                    if let Some(t) = target_of_key(targets, k) {
                        out.push(Write {
                            target: t,
                            value: (!unknowable(v)).then(|| normalize(v)),
                        });
                    }
                }
            }
        }
    }
    out
}

/// Whether a line names a managed knob and writes something, so that a line the matcher
/// could not read is still reported (value unknown).
fn mentions(text: &str, targets: &[Target]) -> Option<usize> {
    let writes = text.contains('>') || text.contains("tee") || text.contains("sysctl");
    if !writes {
        return None;
    }
    targets.iter().position(|t| {
        let leaf = t.knob.rel().to_string_lossy();
        let dotted = t.key.as_deref().map(sysctl_normalize);
        text.contains(&t.path)
            || dotted.is_some_and(|d| text.contains(&d))
            || (t.knob.kind() == Kind::Sysfs
                && leaf.contains("transparent_hugepage")
                && text.contains("transparent_hugepage")
                && t.knob.write_last())
    })
}

/// Scan one line of shell text: its writes, or one unknown write when it names a managed
/// knob in a way the matcher cannot read.
fn scan_line(
    text: &str,
    targets: &[Target],
    read_file: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> Vec<Write> {
    let found = shell_writes(text, targets, read_file, 0);
    if found.is_empty() {
        // What the shell would see: quotes resolved, the comment gone.
        if let Some(t) = mentions(&words(text).join(" "), targets) {
            return vec![Write {
                target: t,
                value: None,
            }];
        }
    }
    found
}

/// The managed knobs one line of shell text writes: (knob name, value or `None` when the
/// text does not tell). For tests and the fuzzer; the scan uses the same matcher.
pub fn scan_text(settings: &Settings, text: &str) -> Vec<(String, Option<String>)> {
    let t = targets(settings);
    let none = |_: &str| None;
    scan_line(text, &t, &none)
        .into_iter()
        .filter_map(|w| Some((t.get(w.target)?.knob.name().to_string(), w.value)))
        .collect()
}

// ------------------------------------------------------------------------ the places

struct Scan<'a> {
    root: &'a Root,
    targets: Vec<Target<'a>>,
    out: Vec<Finding>,
}

impl Scan<'_> {
    fn read(&self, path: &str) -> Option<Vec<u8>> {
        fsread::read(&self.root.join(path)?, fsread::CONFIG_LIMIT).ok()
    }

    fn push(&mut self, file: &Path, line: usize, text: &str, w: Write, place: Place) {
        let Some(t) = self.targets.get(w.target) else {
            return;
        };
        // A line that writes a THP file through a variable names no file exactly.
        let knob = if w.value.is_none() && !text.contains(&t.path) && t.knob.kind() == Kind::Sysfs {
            SOME_THP_FILE.to_string()
        } else {
            t.knob.name().to_string()
        };
        self.out.push(Finding {
            file: file.to_path_buf(),
            line,
            knob,
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
        let root = self.root;
        let read_file = |p: &str| {
            root.join(p)
                .and_then(|p| fsread::read(&p, fsread::CONFIG_LIMIT).ok())
        };
        for (n, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let body = drop_words(trimmed, skip(trimmed));
            for w in scan_line(body, &self.targets, &read_file) {
                self.push(file, n + 1, trimmed, w, place.clone());
            }
        }
    }

    fn rc_local(&mut self) {
        for f in ["/etc/rc.local", "/etc/rc.d/rc.local"] {
            self.shell_file(Path::new(f), &Place::RcLocal, |_| 0);
        }
    }

    fn cron(&mut self) {
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
        for f in list_dir(self.root, "/etc/cron.d") {
            self.shell_file(&f, &Place::Cron, schedule(true));
        }
        for f in list_dir(self.root, "/var/spool/cron/crontabs") {
            self.shell_file(&f, &Place::Cron, schedule(false));
        }
    }

    fn units(&mut self) {
        let dir = "/etc/systemd/system";
        let mut files = Vec::new();
        for f in list_dir(self.root, dir) {
            let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
            match name {
                Some(n) if n.ends_with(".d") => {
                    let unit = n.trim_end_matches(".d").to_string();
                    for d in list_dir(self.root, &f.to_string_lossy()) {
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
            let enabled = unit_enabled(self.root, &unit);
            let Some(bytes) = self.read(&file.to_string_lossy()) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let root = self.root;
            let read_file = |p: &str| {
                root.join(p)
                    .and_then(|p| fsread::read(&p, fsread::CONFIG_LIMIT).ok())
            };
            for (n, line) in text.lines().enumerate() {
                let Some((key, cmd)) = line.trim().split_once('=') else {
                    continue;
                };
                if !matches!(key.trim(), "ExecStart" | "ExecStartPre" | "ExecStartPost") {
                    continue;
                }
                // ExecStart= prefixes: - @ : + ! change how it runs, not what.
                let cmd = cmd.trim().trim_start_matches(['-', '@', ':', '+', '!']);
                for w in scan_line(cmd, &self.targets, &read_file) {
                    let place = Place::Unit {
                        name: unit.clone(),
                        enabled,
                    };
                    self.push(&file, n + 1, line, w, place);
                }
            }
        }
    }

    fn kernel_cmdline(&mut self) {
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
            list_dir(self.root, "/etc/default/grub.d")
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

    fn sysctl_d(&mut self, settings: &Settings, table: &Table) {
        let dropin = settings.dropin.as_deref();
        for t in &self.targets {
            let Some(key) = &t.key else { continue };
            let boot = table.judge(key, t.knob.desired(), dropin);
            for a in table.assignments_for(key) {
                if Some(a.file.as_path()) == dropin {
                    continue;
                }
                let wins =
                    boot.overrides.contains(a) || (boot.value.as_ref() == Some(a) && boot.right);
                self.out.push(Finding {
                    file: a.file.clone(),
                    line: a.line,
                    knob: t.knob.name().to_string(),
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

    fn tuned(&mut self) {
        let Some(bytes) = self.read("/etc/tuned/active_profile") else {
            return;
        };
        let active = String::from_utf8_lossy(&bytes).trim().to_string();
        if active.is_empty() {
            return;
        }
        let enabled = unit_enabled(self.root, "tuned.service");
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
        let Some((file, text)) = tuned_conf(self.root, name) else {
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

/// Drop the first `n` whitespace-separated words of a line (`usize::MAX`: all of it).
fn drop_words(line: &str, n: usize) -> &str {
    if n == usize::MAX {
        return "";
    }
    let mut rest = line.trim_start();
    for _ in 0..n {
        match rest.find(char::is_whitespace) {
            Some(i) => rest = rest.get(i..).unwrap_or("").trim_start(),
            None => return "",
        }
    }
    rest
}

/// `transparent_hugepage=V` in a kernel command line (the last one wins, as in the kernel).
fn thp_param(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .filter_map(|w| w.strip_prefix("transparent_hugepage="))
        .next_back()
        .map(str::to_string)
}

/// The regular files of a directory under the root, sorted, as paths on the system.
fn list_dir(root: &Root, dir: &str) -> Vec<PathBuf> {
    let Some(under) = root.join(dir) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(under) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| Path::new(dir).join(e.file_name()))
        .collect();
    out.sort();
    out
}

/// Whether a unit is pulled in at boot: a link in some `*.wants/` or `*.requires/` under
/// /etc/systemd/system (where `systemctl enable` puts them).
fn unit_enabled(root: &Root, unit: &str) -> bool {
    list_dir(root, "/etc/systemd/system").iter().any(|d| {
        let name = d.to_string_lossy();
        (name.ends_with(".wants") || name.ends_with(".requires"))
            && root
                .join(d.join(unit))
                .is_some_and(|p| std::fs::symlink_metadata(p).is_ok())
    })
}

/// A tuned profile's file: `/etc/tuned` over `/usr/lib/tuned`, each with or without the
/// `profiles/` level newer tuned uses.
fn tuned_conf(root: &Root, name: &str) -> Option<(PathBuf, String)> {
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
        if let Some(Ok(bytes)) = root
            .join(&file)
            .map(|p| fsread::read(&p, fsread::CONFIG_LIMIT))
        {
            return Some((file, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    None
}

/// Every finding on the machine under `root`, for the knobs in `settings`.
pub fn scan(root: &Root, settings: &Settings, table: &Table) -> Vec<Finding> {
    let mut s = Scan {
        root,
        targets: targets(settings),
        out: Vec::new(),
    };
    s.rc_local();
    s.units();
    s.cron();
    s.sysctl_d(settings, table);
    s.kernel_cmdline();
    s.tuned();
    s.out
}

/// The runtime findings that set each knob to something else, for the daemon's journal
/// entries (SOURCE=). Scanned at start, on reload and at most once a minute.
#[derive(Default)]
pub struct Sources {
    found: Vec<Finding>,
}

impl Sources {
    /// Scan now.
    pub fn scan(root: &Root, settings: &Settings) -> Sources {
        let mut s = Scan {
            root,
            targets: targets(settings),
            out: Vec::new(),
        };
        s.rc_local();
        s.units();
        s.cron();
        s.tuned();
        Sources {
            found: s
                .out
                .into_iter()
                .filter(|f| f.acts_at_runtime() && !f.redundant())
                .collect(),
        }
    }

    /// Scan again (the periodic safety net).
    pub fn refresh(&mut self, root: &Root, settings: &Settings) {
        *self = Sources::scan(root, settings);
    }

    /// Where the wrong value of `knob` likely comes from: `file:line (what)`, `; `-joined.
    pub fn describe(&self, knob: &Knob) -> Option<String> {
        let list: Vec<String> = self
            .found
            .iter()
            .filter(|f| f.knob == knob.name())
            .map(Finding::describe)
            .collect();
        (!list.is_empty()).then(|| list.join("; "))
    }

    /// Add `SOURCE=` to an event about `knob`, when the scan found one.
    pub fn annotate(&self, event: Event, knob: &Knob) -> Event {
        match self.describe(knob) {
            Some(s) => event.field("SOURCE", s),
            None => event,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::parse(
            crate::config::DEFAULT_CONFIG,
            crate::config::Source::Builtin,
        )
        .unwrap()
    }

    fn writes(line: &str) -> Vec<(String, Option<String>)> {
        let s = settings();
        let t = targets(&s);
        let none = |_: &str| None;
        scan_line(line, &t, &none)
            .into_iter()
            .map(|w| (t[w.target].knob.name().to_string(), w.value))
            .collect()
    }

    const THP_E: &str = "kernel/mm/transparent_hugepage/enabled";
    const THP_D: &str = "kernel/mm/transparent_hugepage/defrag";
    const OC: &str = "vm.overcommit_memory";

    fn w(k: &str, v: Option<&str>) -> (String, Option<String>) {
        (k.to_string(), v.map(str::to_string))
    }

    #[test]
    fn the_operator_guides_snippets() {
        assert_eq!(
            writes("echo never > /sys/kernel/mm/transparent_hugepage/enabled"),
            [w(THP_E, Some("never"))]
        );
        assert_eq!(
            writes("echo 'never' >/sys/kernel/mm/transparent_hugepage/defrag"),
            [w(THP_D, Some("never"))]
        );
        assert_eq!(
            writes(
                "/bin/sh -c \"echo 'never' > /sys/kernel/mm/transparent_hugepage/enabled && echo 'never' > /sys/kernel/mm/transparent_hugepage/defrag\""
            ),
            [w(THP_E, Some("never")), w(THP_D, Some("never"))]
        );
        assert_eq!(
            writes("echo always | sudo tee /sys/kernel/mm/transparent_hugepage/enabled"),
            [w(THP_E, Some("always"))]
        );
        assert_eq!(
            writes("sysctl -w vm.overcommit_memory=0"),
            [w(OC, Some("0"))]
        );
        assert_eq!(
            writes("/sbin/sysctl -q vm/overcommit_memory=\"1\" vm.swappiness=1"),
            [w(OC, Some("1"))]
        );
        assert_eq!(
            writes("printf 'madvise\\n' > /sys/kernel/mm/transparent_hugepage/enabled"),
            [w(THP_E, Some("madvise"))]
        );
        assert_eq!(
            writes("echo 1 > /proc/sys/vm/overcommit_memory"),
            [w(OC, Some("1"))]
        );
    }

    #[test]
    fn what_cannot_be_read_is_unknown_never_guessed() {
        // A variable: the knob is named, the value is not.
        assert_eq!(
            writes("echo $MODE > /sys/kernel/mm/transparent_hugepage/enabled"),
            [w(THP_E, None)]
        );
        // A loop over both files: which knob and which value the matcher cannot tell.
        assert_eq!(
            writes(
                "for f in enabled defrag; do echo never > /sys/kernel/mm/transparent_hugepage/$f; done"
            ),
            [w(THP_E, None)]
        );
        assert_eq!(writes("sysctl -w vm.overcommit_memory=$OC"), [w(OC, None)]);
    }

    #[test]
    fn reads_and_other_knobs_are_not_findings() {
        // Refused: reading a knob is not setting it.
        assert!(writes("cat /sys/kernel/mm/transparent_hugepage/enabled").is_empty());
        assert!(writes("sysctl vm.overcommit_memory").is_empty());
        // Refused: another knob.
        assert!(writes("echo 10 > /proc/sys/vm/swappiness").is_empty());
        assert!(writes("sysctl -w vm.swappiness=10").is_empty());
        // Refused: a comment.
        assert!(writes("# echo always > /sys/kernel/mm/transparent_hugepage/enabled").is_empty());
    }

    #[test]
    fn sysctl_p_reads_the_file_it_loads() {
        let s = settings();
        let t = targets(&s);
        let file =
            |p: &str| (p == "/etc/sysctl.conf").then(|| b"vm.overcommit_memory = 2\n".to_vec());
        let found = scan_line("sysctl -p", &t, &file);
        assert_eq!(
            found,
            [Write {
                target: 0,
                value: Some("2".into())
            }]
        );
        let other = |p: &str| (p == "/etc/my.conf").then(|| b"vm.overcommit_memory=0\n".to_vec());
        let found = scan_line("sysctl -p /etc/my.conf", &t, &other);
        assert_eq!(
            found,
            [Write {
                target: 0,
                value: Some("0".into())
            }]
        );
    }

    #[test]
    fn cron_fields_and_cmdlines() {
        assert_eq!(
            drop_words("*/5 * * * * root sysctl -w a=1", 6),
            "sysctl -w a=1"
        );
        assert_eq!(drop_words("@reboot root x", 2), "x");
        assert_eq!(
            thp_param("BOOT_IMAGE=/vmlinuz ro transparent_hugepage=always quiet"),
            Some("always".into())
        );
        assert_eq!(
            thp_param("GRUB_CMDLINE_LINUX=\"quiet transparent_hugepage=never\""),
            Some("never".into())
        );
        assert_eq!(thp_param("quiet"), None);
    }
}
