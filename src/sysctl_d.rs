//! sysctl.d: what the next boot will apply, computed by systemd-sysctl's rules (systemd 252,
//! `src/sysctl/sysctl.c` and `src/basic/conf-files.c`), and the drop-in forksafe owns.
//!
//! The rules, as systemd applies them:
//! - directories in precedence order `/etc/sysctl.d`, `/run/sysctl.d`,
//!   `/usr/local/lib/sysctl.d`, `/usr/lib/sysctl.d`, `/lib/sysctl.d` (Debian builds with
//!   split-usr; on merged /usr it is the same directory and counts once); only `*.conf`, no
//!   hidden or backup files (`.x.conf`, `x.conf~`, `x.conf.dpkg-old` do not end in `.conf`
//!   or are skipped);
//! - a file masks a same-named one in a lower directory, whatever it holds: a link to
//!   `/dev/null` or an empty file masks and sets nothing;
//! - the surviving files are read in byte order of their names, whatever their directory;
//! - lines end at `\n`, `\r` or NUL; blank lines and lines starting with `#` or `;` are
//!   skipped; `key = value`, both sides stripped of whitespace; a leading `-` on the key
//!   means "ignore failure"; `-key` alone excludes the key from globs;
//! - keys are normalised (if the first separator is `.`, dots and slashes swap; redundant
//!   slashes and `.` components go; the leading slash goes);
//! - for one key, a later assignment replaces an earlier one (the same value again keeps the
//!   earlier one's place); an explicit key beats every glob; globs (`*`, `?`, `[`, with
//!   `{a,b}` braces) apply in table order, so the last matching glob wins.
//!
//! `/etc/sysctl.conf` is not read by systemd-sysctl (Debian links it in as
//! `/etc/sysctl.d/99-sysctl.conf`), but procps' `sysctl --system` applies it last; it is
//! parsed separately so that an assignment there can be reported.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use crate::fsread;
use crate::root::Root;

/// systemd-sysctl's directories, highest precedence first (relative to the root).
pub const DIRS: [&str; 5] = [
    "/etc/sysctl.d",
    "/run/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
    "/lib/sysctl.d",
];

/// procps applies this after all the directories.
pub const SYSCTL_CONF: &str = "/etc/sysctl.conf";

/// systemd refuses lines longer than this (LONG_LINE_MAX) and stops reading the file.
const LONG_LINE_MAX: usize = 1024 * 1024;

/// The first line of every drop-in forksafe writes starts with this.
pub const HEADER_PREFIX: &str = "# Managed by forksafe";

/// One `key = value` line (or `-key` exclusion) in a sysctl.d file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The normalised key (`vm/overcommit_memory`), or a glob.
    pub key: String,
    /// The value; `None` for a `-key` line, which only excludes the key from globs.
    pub value: Option<String>,
    /// The file, as an absolute path on the system (without the root prefix).
    pub file: PathBuf,
    /// 1-based line number, counted as systemd counts them.
    pub line: usize,
}

impl fmt::Display for Assignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}:{} sets {}", self.file.display(), self.line, v),
            None => write!(f, "{}:{} excludes the key", self.file.display(), self.line),
        }
    }
}

/// systemd's sysctl key normalisation.
pub fn normalize_key(key: &str) -> String {
    let swapped = crate::knob::sysctl_normalize(key);
    let parts: Vec<&str> = swapped
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.is_empty() {
        // path_simplify: an empty key stays empty; otherwise "." (or "/" for "/").
        return match swapped.as_str() {
            "" => String::new(),
            s if s.starts_with('/') => "/".into(),
            _ => ".".into(),
        };
    }
    parts.join("/")
}

fn is_glob(key: &str) -> bool {
    key.contains(['*', '?', '['])
}

/// Split a file into lines as systemd's `read_line()` does: `\n`, `\r` and NUL end a line;
/// `\r\n`, `\n\r` and a NUL right after either are one ending. Yields (line number, text).
fn lines(bytes: &[u8]) -> Vec<(usize, &[u8])> {
    #[derive(Clone, Copy, PartialEq)]
    enum Eol {
        Ten = 1,
        Thirteen = 2,
        Zero = 4,
    }
    let class = |b: u8| match b {
        b'\n' => Some(Eol::Ten),
        b'\r' => Some(Eol::Thirteen),
        0 => Some(Eol::Zero),
        _ => None,
    };
    let mut out = Vec::new();
    let mut i = 0;
    let mut number = 0;
    while i < bytes.len() {
        let start = i;
        let mut end = i;
        let mut seen = 0u8; // EOL markers seen so far in this line's ending
        while let Some(&b) = bytes.get(i) {
            let eol = class(b);
            let ends = seen & Eol::Zero as u8 != 0
                || (eol.is_none() && seen != 0)
                || eol.is_some_and(|e| seen & e as u8 != 0);
            if ends {
                break;
            }
            match eol {
                Some(e) => seen |= e as u8,
                None => end = i + 1,
            }
            i += 1;
        }
        number += 1;
        out.push((number, bytes.get(start..end).unwrap_or_default()));
    }
    out
}

fn strip(b: &[u8]) -> &[u8] {
    let ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r');
    let start = b.iter().position(|c| !ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !ws(c)).map_or(start, |e| e + 1);
    b.get(start..end).unwrap_or_default()
}

/// Parse one sysctl.d file's bytes. `file` is its path on the system, for reports.
pub fn parse(bytes: &[u8], file: &Path) -> Vec<Assignment> {
    let mut out = Vec::new();
    for (line, raw) in lines(bytes) {
        if raw.len() >= LONG_LINE_MAX {
            break; // systemd fails the rest of the file
        }
        let p = strip(raw);
        if p.is_empty() || matches!(p.first(), Some(b'#' | b';')) {
            continue;
        }
        let (key, value) = match p.iter().position(|&c| c == b'=') {
            Some(eq) => {
                let k = p.get(..eq).unwrap_or_default();
                let k = k.strip_prefix(b"-").unwrap_or(k);
                let v = strip(p.get(eq + 1..).unwrap_or_default());
                (k, Some(String::from_utf8_lossy(v).into_owned()))
            }
            None => match p.strip_prefix(b"-") {
                Some(k) => (k, None),
                None => continue, // "Line is not an assignment, ignoring"
            },
        };
        let key = normalize_key(&String::from_utf8_lossy(strip(key)));
        out.push(Assignment {
            key,
            value,
            file: file.to_path_buf(),
            line,
        });
    }
    out
}

/// Whether assignment key `pattern` (normalised; explicit or a glob) applies to `key`.
fn applies(pattern: &str, key: &str) -> bool {
    pattern == key || (is_glob(pattern) && glob_match(pattern, key))
}

/// A directory entry systemd-sysctl lists but that forksafe does not read as a file: it still
/// takes its name (masks same-named files in lower directories) and sets nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The path on the system.
    pub file: PathBuf,
    /// What it is and what systemd-sysctl does with it.
    pub why: String,
    /// systemd-sysctl blocks on it at boot (a FIFO): it then applies nothing at all.
    pub blocks_boot: bool,
}

/// systemd-sysctl's table after reading every file: one entry per key, in the order
/// systemd applies them.
#[derive(Debug, Default, Clone)]
pub struct Table {
    entries: Vec<Assignment>,
    /// Every assignment in reading order (before later ones replaced earlier ones).
    history: Vec<Assignment>,
    /// What `/etc/sysctl.conf` assigns (procps applies it after everything else).
    sysctl_conf: Vec<Assignment>,
    /// Files that could not be read: (path, error).
    pub unreadable: Vec<(PathBuf, String)>,
    /// Entries that are not regular files (FIFOs, directories, devices, oversized files).
    pub skipped: Vec<Skipped>,
}

/// What the next boot does to one sysctl key: the judgement `check`, `apply`, the daemon,
/// `doctor` and the metrics all use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boot {
    /// The assignment systemd-sysctl applies at the next boot, if any.
    pub value: Option<Assignment>,
    /// Whether the next boot ends with the desired value (compared like runtime values).
    pub right: bool,
    /// What keeps the next boot from the desired value: the assignment that wins in
    /// sysctl.d (a value or a `-key` exclusion) when it differs and is not the drop-in; and
    /// the `/etc/sysctl.conf` line procps' `sysctl --system` applies last, when it differs.
    pub overrides: Vec<Assignment>,
    /// Assignments that differ but do not win: harmless now, they apply again if what wins
    /// goes (the drop-in, most often).
    pub shadowed: Vec<Assignment>,
    /// A file that makes systemd-sysctl apply nothing at the next boot (it blocks on it).
    pub blocked_by: Option<PathBuf>,
}

impl Boot {
    /// What the next boot does, as a sentence: "the next boot sets 2 (file:line)".
    pub fn explain(&self) -> String {
        match (&self.blocked_by, &self.value) {
            (Some(f), _) => format!(
                "the next boot sets nothing from sysctl.d: systemd-sysctl blocks reading {} (a FIFO) and applies no file",
                f.display()
            ),
            (None, Some(a)) => format!(
                "the next boot sets {} ({}:{})",
                a.value.as_deref().unwrap_or(""),
                a.file.display(),
                a.line
            ),
            (None, None) => {
                "nothing sets it at boot (no sysctl.d file does; the kernel default stays)".into()
            }
        }
    }
}

impl Table {
    /// Build the table from assignments in reading order.
    pub fn from_assignments(all: Vec<Assignment>) -> Table {
        let mut entries: Vec<Assignment> = Vec::new();
        for a in &all {
            match entries.iter().position(|e| e.key == a.key) {
                Some(i) if entries.get(i).is_some_and(|e| e.value == a.value) => {}
                Some(i) => {
                    entries.remove(i);
                    entries.push(a.clone());
                }
                None => entries.push(a.clone()),
            }
        }
        Table {
            entries,
            history: all,
            ..Table::default()
        }
    }

    /// Read every sysctl.d file under `root`, as the next boot will, and `/etc/sysctl.conf`.
    /// Every file goes through [`fsread::read`]: nothing here can block.
    pub fn read(root: &Root) -> Table {
        let mut all = Vec::new();
        let mut unreadable = Vec::new();
        let mut skipped = Vec::new();
        for entry in list_files(root) {
            match entry {
                Listed::File { shown, real } => match fsread::read(&real, fsread::CONFIG_LIMIT) {
                    Ok(bytes) => all.extend(parse(&bytes, &shown)),
                    // A dangling link masks and sets nothing, as in systemd.
                    Err(e) if e.is_not_found() => {}
                    Err(e @ fsread::ReadError::TooLarge { .. }) => skipped.push(Skipped {
                        file: shown,
                        why: format!("{e} (systemd-sysctl reads it; forksafe cannot judge it)"),
                        blocks_boot: false,
                    }),
                    Err(fsread::ReadError::NotRegular(kind)) => {
                        // Replaced between listing and reading: judge it next time.
                        unreadable.push((shown, format!("became a {kind} while being read")));
                    }
                    Err(e) => unreadable.push((shown, e.to_string())),
                },
                Listed::Masked => {}
                Listed::Skipped(s) => skipped.push(s),
            }
        }
        let mut table = Table::from_assignments(all);
        table.unreadable = unreadable;
        table.skipped = skipped;
        if let Some(conf) = root.join(SYSCTL_CONF) {
            if let Ok(bytes) = fsread::read(&conf, fsread::CONFIG_LIMIT) {
                table.sysctl_conf = parse(&bytes, Path::new(SYSCTL_CONF));
            }
        }
        table
    }

    /// The entry that decides `key` at boot: its explicit entry (which may be a `-key`
    /// exclusion), else the last glob that matches it.
    fn winner(&self, key: &str) -> Option<&Assignment> {
        if let Some(e) = self.entries.iter().find(|e| e.key == key) {
            return Some(e);
        }
        self.entries
            .iter()
            .rfind(|e| e.value.is_some() && is_glob(&e.key) && glob_match(&e.key, key))
    }

    /// Every assignment of `key` (explicit or by a glob), in sysctl.d in reading order, then
    /// in `/etc/sysctl.conf`.
    pub fn assignments_for(&self, key: &str) -> Vec<&Assignment> {
        self.history
            .iter()
            .chain(&self.sysctl_conf)
            .filter(|a| applies(&a.key, key))
            .collect()
    }

    /// The assignment the next boot applies to `key` (normalised), if any.
    pub fn effective(&self, key: &str) -> Option<&Assignment> {
        self.winner(key).filter(|a| a.value.is_some())
    }

    /// What the next boot does to `key`, against `desired` (a normalised value). `ours` is
    /// the managed drop-in, when there is one: the boot value may come from it, but it is
    /// never its own override.
    pub fn judge(&self, key: &str, desired: &str, ours: Option<&Path>) -> Boot {
        let same = |a: &Assignment| {
            a.value.as_deref().map(crate::knob::normalize).as_deref() == Some(desired)
        };
        let blocked_by = self
            .skipped
            .iter()
            .find(|s| s.blocks_boot)
            .map(|s| s.file.clone());
        let winner = if blocked_by.is_some() {
            None
        } else {
            self.winner(key)
        };
        let value = winner.filter(|a| a.value.is_some()).cloned();
        let right = value.as_ref().is_some_and(same);
        let mut overrides: Vec<Assignment> = winner
            .filter(|w| !same(w) && Some(w.file.as_path()) != ours)
            .cloned()
            .into_iter()
            .collect();
        // procps applies /etc/sysctl.conf last; its last line for the key is what counts.
        if let Some(last) = self.sysctl_conf.iter().rfind(|a| applies(&a.key, key)) {
            if !same(last) {
                overrides.push(last.clone());
            }
        }
        let shadowed = self
            .history
            .iter()
            .filter(|a| applies(&a.key, key) && !same(a))
            .filter(|a| winner != Some(*a))
            .cloned()
            .collect();
        Boot {
            value,
            right,
            overrides,
            shadowed,
            blocked_by,
        }
    }
}

/// One name systemd-sysctl lists, after masking by name across directories.
#[derive(Debug)]
pub enum Listed {
    /// A file to read: (path on the system, path under the root).
    File {
        /// The path on the system.
        shown: PathBuf,
        /// The path under the root.
        real: PathBuf,
    },
    /// A link to `/dev/null` or an empty file: masks, sets nothing.
    Masked,
    /// Not a regular file.
    Skipped(Skipped),
}

/// What systemd-sysctl does with an entry that is not a regular file, by its mode.
fn not_regular(shown: &Path, md: &fs::Metadata) -> Option<Skipped> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let ft = md.file_type();
    if ft.is_file() {
        return None;
    }
    let kind = fsread::kind_of(md.mode());
    let (why, blocks_boot) = if ft.is_fifo() {
        (
            "a FIFO: systemd-sysctl blocks opening it at boot and applies no sysctl.d file until it is killed; remove it".to_string(),
            true,
        )
    } else if ft.is_dir() {
        (
            "a directory: it masks same-named files in lower directories, and systemd-sysctl fails to read it".to_string(),
            false,
        )
    } else {
        (
            format!("a {kind}: forksafe does not read it; remove it"),
            false,
        )
    };
    Some(Skipped {
        file: shown.to_path_buf(),
        why,
        blocks_boot,
    })
}

/// The names systemd-sysctl reads, in order, each classified. Nothing is opened: a FIFO is
/// seen by its mode, never read.
pub fn list_files(root: &Root) -> Vec<Listed> {
    use std::os::unix::fs::FileTypeExt;
    let mut seen_dirs: Vec<PathBuf> = Vec::new();
    let mut files: Vec<(String, PathBuf, PathBuf)> = Vec::new();
    for dir in DIRS {
        let Some(under) = root.join(dir) else {
            continue;
        };
        // Two names for one directory (merged /usr: /lib -> usr/lib) count once.
        let Ok(real_dir) = under.canonicalize() else {
            continue;
        };
        if seen_dirs.contains(&real_dir) {
            continue;
        }
        seen_dirs.push(real_dir);
        let Ok(entries) = fs::read_dir(&under) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".conf") || hidden_or_backup(&name) {
                continue;
            }
            // The first directory to have a name wins; the rest are masked.
            if files.iter().any(|(n, _, _)| *n == name) {
                continue;
            }
            files.push((name.clone(), Path::new(dir).join(&name), under.join(&name)));
        }
    }
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    files
        .into_iter()
        .map(|(_, shown, real)| match fs::metadata(&real) {
            // Dangling: read (and found missing) like systemd does.
            Err(_) => Listed::File { shown, real },
            Ok(md) if md.file_type().is_char_device() && is_dev_null(&md) => Listed::Masked,
            Ok(md) if md.file_type().is_file() && md.len() == 0 => Listed::Masked,
            Ok(md) => match not_regular(&shown, &md) {
                Some(s) => Listed::Skipped(s),
                None => Listed::File { shown, real },
            },
        })
        .collect()
}

fn is_dev_null(md: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    md.rdev() == nix::sys::stat::makedev(1, 3)
}

/// systemd's `hidden_or_backup_file()` (for names that already end in `.conf`, only the
/// leading dot matters, but keep the whole rule so it reads like the original).
fn hidden_or_backup(name: &str) -> bool {
    if name.starts_with('.') || name.ends_with('~') {
        return true;
    }
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
    matches!(
        ext,
        "rpmnew"
            | "rpmsave"
            | "rpmorig"
            | "dpkg-old"
            | "dpkg-new"
            | "dpkg-tmp"
            | "dpkg-dist"
            | "dpkg-bak"
            | "dpkg-backup"
            | "dpkg-remove"
            | "ucf-new"
            | "ucf-old"
            | "ucf-dist"
            | "swp"
            | "bak"
            | "old"
            | "new"
    )
}

/// Whether glob `pattern` (normalised, `/`-separated) matches the existing key `key`, as
/// glob(3) with GLOB_BRACE does under /proc/sys: per path component, wildcards never match
/// `/` nor a leading `.`.
pub fn glob_match(pattern: &str, key: &str) -> bool {
    expand_braces(pattern).iter().any(|p| {
        let pc: Vec<&str> = p.split('/').filter(|c| !c.is_empty()).collect();
        let kc: Vec<&str> = key.split('/').collect();
        pc.len() == kc.len()
            && pc
                .iter()
                .zip(&kc)
                .all(|(p, k)| fnmatch(p.as_bytes(), k.as_bytes()))
    })
}

/// At most this many patterns come out of brace expansion; `{a,b}` repeated doubles them,
/// so a hostile line could otherwise ask for billions.
const MAX_BRACE_EXPANSIONS: usize = 1024;

/// `a{b,c}d` -> `abd`, `acd` (nested braces too); an unbalanced brace stays literal.
fn expand_braces(p: &str) -> Vec<String> {
    let mut out = Vec::new();
    expand_into(p, &mut out);
    out
}

fn expand_into(p: &str, out: &mut Vec<String>) {
    if out.len() >= MAX_BRACE_EXPANSIONS {
        return;
    }
    let bytes = p.as_bytes();
    let Some(open) = bytes.iter().position(|&b| b == b'{') else {
        out.push(p.to_string());
        return;
    };
    let mut depth = 0;
    let mut commas = Vec::new();
    let mut close = None;
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            b',' if depth == 1 => commas.push(i),
            _ => {}
        }
    }
    let Some(close) = close else {
        out.push(p.to_string());
        return;
    };
    // Byte positions of ASCII braces and commas are always char boundaries.
    let (head, tail) = (
        p.get(..open).unwrap_or(""),
        p.get(close + 1..).unwrap_or(""),
    );
    let mut bounds = vec![open];
    bounds.extend(commas);
    bounds.push(close);
    for w in bounds.windows(2) {
        if let [a, b] = w {
            let alt = p.get(a + 1..*b).unwrap_or("");
            expand_into(&format!("{head}{alt}{tail}"), out);
        }
    }
}

/// fnmatch(3) without flags except glob's leading-dot rule: `*`, `?`, `[...]` with ranges and
/// `!`/`^` negation, `\` escapes. Linear-time: one backtrack point (the last `*`), so no
/// pattern can make it explode.
fn fnmatch(p: &[u8], s: &[u8]) -> bool {
    if s.first() == Some(&b'.') && p.first() != Some(&b'.') {
        return false;
    }
    let (mut pi, mut si) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, text index it covers to).
    let mut star: Option<(usize, usize)> = None;
    loop {
        match (p.get(pi), s.get(si)) {
            (Some(b'*'), _) => {
                pi += 1;
                star = Some((pi, si));
                continue;
            }
            (Some(_), Some(&c)) => {
                let (hit, next) = token(p, pi, c);
                if hit {
                    pi = next;
                    si += 1;
                    continue;
                }
            }
            (None, None) => return true,
            _ => {}
        }
        // Mismatch: let the last `*` swallow one more character, or fail.
        match star {
            Some((sp, ss)) if ss < s.len() => {
                star = Some((sp, ss + 1));
                pi = sp;
                si = ss + 1;
            }
            _ => return false,
        }
    }
}

/// Whether the pattern token at `p[i]` matches `c`, and the index after the token.
fn token(p: &[u8], i: usize, c: u8) -> (bool, usize) {
    match p.get(i) {
        Some(b'?') => (true, i + 1),
        Some(b'[') => match class_match(p.get(i + 1..).unwrap_or_default(), Some(c)) {
            Some((hit, rest)) => (hit, p.len() - rest.len()),
            // No closing bracket: `[` is literal.
            None => (c == b'[', i + 1),
        },
        Some(b'\\') if i + 1 < p.len() => (p.get(i + 1) == Some(&c), i + 2),
        Some(&x) => (x == c, i + 1),
        None => (false, i),
    }
}

/// Match one character against a bracket expression (after the `[`). `None` when the
/// expression has no closing `]`; else whether it matched and the pattern after the `]`.
fn class_match(p: &[u8], c: Option<u8>) -> Option<(bool, &[u8])> {
    let (negate, mut i) = match p.first() {
        Some(b'!' | b'^') => (true, 1),
        _ => (false, 0),
    };
    let mut matched = false;
    let mut first = true;
    loop {
        let b = *p.get(i)?;
        if b == b']' && !first {
            let hit = c.is_some() && (matched != negate);
            return Some((hit, p.get(i + 1..).unwrap_or_default()));
        }
        first = false;
        if p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|&e| e != b']') {
            let hi = *p.get(i + 2)?;
            if c.is_some_and(|c| b <= c && c <= hi) {
                matched = true;
            }
            i += 3;
        } else {
            if c == Some(b) {
                matched = true;
            }
            i += 1;
        }
    }
}

/// The managed drop-in: its content for these settings. It depends on the knobs alone, not
/// on which config file named them: `check --config` on a copy of the config, `apply` and
/// the daemon all agree on what the drop-in should hold.
pub fn render(settings: &crate::config::Settings) -> String {
    let mut out = format!(
        "{HEADER_PREFIX}: edits are overwritten.\n\
         # Change the [sysctl] section of forksafe's config instead (or set [sysctl_d] manage = false).\n"
    );
    for k in settings
        .knobs
        .iter()
        .filter(|k| k.kind() == crate::knob::Kind::Sysctl)
    {
        out.push_str(&format!("{} = {}\n", k.name(), k.desired()));
    }
    out
}

/// What is at the drop-in's path now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropinState {
    /// Our header and exactly the content we would write.
    Current,
    /// Nothing there.
    Missing,
    /// Our header, other content (edited, or the config changed).
    Outdated,
    /// A file without our header: not ours, never overwritten.
    Foreign,
    /// A symlink: never followed, never written through.
    Symlink,
    /// Could not be read.
    Unreadable(String),
}

impl DropinState {
    /// The name used in reports and JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            DropinState::Current => "ok",
            DropinState::Missing => "missing",
            DropinState::Outdated => "outdated",
            DropinState::Foreign => "foreign",
            DropinState::Symlink => "symlink",
            DropinState::Unreadable(_) => "unreadable",
        }
    }
}

/// Look at the drop-in at `path` (under `root`) and compare it with `expected`.
pub fn inspect(root: &Root, path: &Path, expected: &str) -> DropinState {
    let Some(real) = root.join(path) else {
        return DropinState::Unreadable("path escapes the root".into());
    };
    match fs::symlink_metadata(&real) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return DropinState::Missing,
        Err(e) => return DropinState::Unreadable(e.to_string()),
        Ok(md) if md.file_type().is_symlink() => return DropinState::Symlink,
        Ok(_) => {}
    }
    match fsread::read(&real, fsread::CONFIG_LIMIT) {
        Ok(bytes) if bytes == expected.as_bytes() => DropinState::Current,
        Ok(bytes) if bytes.starts_with(HEADER_PREFIX.as_bytes()) => DropinState::Outdated,
        Ok(_) => DropinState::Foreign,
        // Not a regular file (a FIFO, a directory): not ours, never replaced.
        Err(fsread::ReadError::NotRegular(_)) => DropinState::Foreign,
        Err(e) => DropinState::Unreadable(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Vec<Assignment> {
        parse(text.as_bytes(), Path::new("/etc/sysctl.d/t.conf"))
    }

    fn kv(a: &[Assignment]) -> Vec<(String, Option<String>, usize)> {
        a.iter()
            .map(|a| (a.key.clone(), a.value.clone(), a.line))
            .collect()
    }

    #[test]
    fn parses_like_systemd() {
        let got = p("# comment\n; also\n\n  vm.swappiness = 10  \n\
                     -net.ipv4.conf.all.rp_filter=1\n-kernel.x\nnot an assignment\n\
                     vm/overcommit_memory=\t1\r\nnet.ipv4.conf.eth0/100.rp_filter = 2\n\
                     fs.a = b = c\nkernel.y =\n");
        assert_eq!(
            kv(&got),
            [
                ("vm/swappiness".into(), Some("10".into()), 4),
                ("net/ipv4/conf/all/rp_filter".into(), Some("1".into()), 5),
                ("kernel/x".into(), None, 6),
                ("vm/overcommit_memory".into(), Some("1".into()), 8),
                (
                    "net/ipv4/conf/eth0.100/rp_filter".into(),
                    Some("2".into()),
                    9
                ),
                ("fs/a".into(), Some("b = c".into()), 10),
                ("kernel/y".into(), Some("".into()), 11),
            ]
        );
    }

    #[test]
    fn line_endings_count_like_read_line() {
        // \r\n is one ending; \n\n is two (an empty line); \r alone ends a line; NUL too.
        let got = p("a.b=1\r\nc.d=2\n\ne.f=3\rg.h=4\0i.j=5\n\r\0k.l=6");
        let lines: Vec<usize> = got.iter().map(|a| a.line).collect();
        assert_eq!(lines, [1, 2, 4, 5, 6, 7]);
    }

    #[test]
    fn key_normalisation() {
        assert_eq!(
            normalize_key("vm.overcommit_memory"),
            "vm/overcommit_memory"
        );
        assert_eq!(
            normalize_key("/vm//overcommit_memory/"),
            "vm/overcommit_memory"
        );
        assert_eq!(
            normalize_key("vm..overcommit_memory"),
            "vm/overcommit_memory"
        );
        assert_eq!(
            normalize_key("net/ipv4/conf/eth0.100/x"),
            "net/ipv4/conf/eth0.100/x"
        );
    }

    #[test]
    fn later_wins_explicit_beats_glob_exclusion() {
        let mut all = p("vm.a = 1\nvm.* = 5\n");
        all.extend(parse(
            b"vm.a = 2\nvm.a = 2\n-vm.c\n",
            Path::new("/usr/lib/sysctl.d/z.conf"),
        ));
        let t = Table::from_assignments(all);
        let a = t.effective("vm/a").unwrap();
        assert_eq!((a.value.as_deref(), a.line), (Some("2"), 1));
        assert_eq!(t.effective("vm/b").unwrap().value.as_deref(), Some("5"));
        // Refused by the glob: `-vm.c` excludes it.
        assert!(t.effective("vm/c").is_none());
        assert!(t.effective("kernel/x").is_none());
    }

    #[test]
    fn same_value_keeps_the_earlier_place() {
        // vm.a=1 (f1), glob, vm.a=1 again: the entry keeps its first place and file.
        let t = Table::from_assignments(p("vm.a = 1\nvm.b = 2\nvm.a = 1\n"));
        assert_eq!(t.effective("vm/a").unwrap().line, 1);
    }

    #[test]
    fn globs() {
        assert!(glob_match(
            "net/ipv4/conf/*/rp_filter",
            "net/ipv4/conf/eth0/rp_filter"
        ));
        assert!(!glob_match(
            "net/ipv4/conf/*/rp_filter",
            "net/ipv4/conf/eth0/x/rp_filter"
        ));
        assert!(glob_match("vm/overcommit_*", "vm/overcommit_memory"));
        assert!(glob_match(
            "vm/overcommit_{memory,ratio}",
            "vm/overcommit_ratio"
        ));
        assert!(glob_match("kernel/[a-c]?", "kernel/b1"));
        assert!(!glob_match("kernel/[!a-c]?", "kernel/b1"));
        assert!(glob_match("kernel/[]x]", "kernel/]"));
        assert!(glob_match("a/\\*", "a/*"));
        assert!(!glob_match("a/\\*", "a/b"));
        // A wildcard does not match a leading dot.
        assert!(!glob_match("a/*", "a/.hidden"));
        assert!(glob_match("a/.*", "a/.hidden"));
    }

    #[test]
    fn overrides_are_what_wins() {
        let ours = Path::new("/etc/sysctl.d/99-zz-forksafe.conf");
        let key = "vm/overcommit_memory";
        let mut all = parse(
            b"vm.overcommit_memory = 0\n",
            Path::new("/usr/lib/sysctl.d/50-a.conf"),
        );
        all.extend(parse(b"vm.overcommit_memory = 1\n", ours));
        all.extend(parse(
            b"vm.* = 2\n",
            Path::new("/etc/sysctl.d/zz-glob.conf"),
        ));
        let t = Table::from_assignments(all.clone());
        // Before ours, or a glob after ours: they lose, so they are shadowed, not overrides.
        let b = t.judge(key, "1", Some(ours));
        assert!(b.right && b.overrides.is_empty(), "{b:?}");
        assert_eq!(b.value.unwrap().file, ours);
        assert_eq!(b.shadowed.len(), 2);

        all.extend(parse(
            b"\nvm.overcommit_memory = 2\n",
            Path::new("/etc/sysctl.d/zz-late.conf"),
        ));
        let t = Table::from_assignments(all.clone());
        let b = t.judge(key, "1", Some(ours));
        assert!(!b.right);
        assert_eq!(b.overrides.len(), 1);
        assert_eq!(
            (b.overrides[0].file.to_str(), b.overrides[0].line),
            (Some("/etc/sysctl.d/zz-late.conf"), 2)
        );

        // zz-a sets 2, then zz-b sets 1 after ours: 1 wins, nothing overrides us, and the
        // file named is the one that wins.
        all.extend(parse(
            b"vm.overcommit_memory = 1\n",
            Path::new("/etc/sysctl.d/zz-m.conf"),
        ));
        let t = Table::from_assignments(all);
        let b = t.judge(key, "1", Some(ours));
        assert!(b.right && b.overrides.is_empty(), "{b:?}");
        assert_eq!(b.value.unwrap().file, Path::new("/etc/sysctl.d/zz-m.conf"));
        assert!(b.shadowed.iter().any(|a| a.file.ends_with("zz-late.conf")));
    }

    #[test]
    fn boot_values_compare_like_runtime_values() {
        // The kernel prints tcp_rmem tab-separated; a tab-separated line equal to the desired
        // value is right, not drift.
        let t = Table::from_assignments(p("net.ipv4.tcp_rmem = 4096\t131072\t6291456\n"));
        let b = t.judge("net/ipv4/tcp_rmem", "4096 131072 6291456", None);
        assert!(
            b.right && b.overrides.is_empty() && b.shadowed.is_empty(),
            "{b:?}"
        );
    }

    #[test]
    fn without_a_dropin_the_winner_is_the_override() {
        let t = Table::from_assignments(parse(
            b"vm.overcommit_memory = 2\n",
            Path::new("/etc/sysctl.d/50-strict.conf"),
        ));
        let b = t.judge("vm/overcommit_memory", "1", None);
        assert!(!b.right);
        assert_eq!(b.overrides.len(), 1);
        assert_eq!(
            b.overrides[0].file,
            Path::new("/etc/sysctl.d/50-strict.conf")
        );
        // Nothing at all: not right, and no file to blame.
        let b = Table::default().judge("vm/overcommit_memory", "1", None);
        assert!(!b.right && b.value.is_none() && b.overrides.is_empty());
    }
}

#[cfg(test)]
mod hostile {
    use super::*;

    /// Patterns that make naive glob matching or brace expansion explode finish at once.
    #[test]
    fn pathological_globs_are_cheap() {
        let start = std::time::Instant::now();
        let stars = format!("{}b", "*a".repeat(30));
        assert!(!glob_match(&stars, &"a".repeat(200)));
        let braces = "{a,b}".repeat(40);
        assert!(!glob_match(&format!("x{braces}*"), "y"));
        // Generous: the point is seconds versus years, not milliseconds.
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }
}
