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
use std::io;
use std::path::{Path, PathBuf};

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

    /// Read every sysctl.d file under `root`, as the next boot will.
    pub fn read(root: &Root) -> Table {
        let mut all = Vec::new();
        let mut unreadable = Vec::new();
        for (shown, real) in list_files(root) {
            match fs::read(&real) {
                Ok(bytes) => all.extend(parse(&bytes, &shown)),
                // A dangling link masks and sets nothing, as in systemd.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => unreadable.push((shown, e.to_string())),
            }
        }
        let mut table = Table::from_assignments(all);
        table.unreadable = unreadable;
        if let Some(conf) = root.join(SYSCTL_CONF) {
            if let Ok(bytes) = fs::read(conf) {
                table.sysctl_conf = parse(&bytes, Path::new(SYSCTL_CONF));
            }
        }
        table
    }

    /// The assignment the next boot applies to `key` (normalised), if any.
    pub fn effective(&self, key: &str) -> Option<&Assignment> {
        if let Some(e) = self.entries.iter().find(|e| e.key == key) {
            // An explicit key beats every glob; `-key` leaves it unset.
            return e.value.as_ref().map(|_| e);
        }
        self.entries
            .iter()
            .rfind(|e| e.value.is_some() && is_glob(&e.key) && glob_match(&e.key, key))
    }

    /// Where in reading order `ours` (the managed drop-in) assigns `desired` to `key`.
    fn ours_at(&self, key: &str, desired: &str, ours: Option<&Path>) -> Option<usize> {
        ours.and_then(|o| {
            self.history
                .iter()
                .rposition(|a| a.key == key && a.file == o && a.value.as_deref() == Some(desired))
        })
    }

    /// The assignments that keep `key` from booting with `desired`: each one that differs
    /// and would win over `ours` (the managed drop-in, when it assigns the key); plus any
    /// `/etc/sysctl.conf` line that differs, which procps' `sysctl --system` applies last.
    pub fn overrides(&self, key: &str, desired: &str, ours: Option<&Path>) -> Vec<&Assignment> {
        let differs = |a: &&Assignment| a.value.as_deref() != Some(desired);
        let mut out: Vec<&Assignment> = match self.ours_at(key, desired, ours) {
            // Only an explicit assignment (or exclusion) read after ours replaces ours.
            Some(at) => self
                .history
                .iter()
                .skip(at + 1)
                .filter(|a| a.key == key)
                .filter(differs)
                .collect(),
            // Without ours, whatever the boot applies is the override, if it differs.
            None => self.effective(key).into_iter().filter(differs).collect(),
        };
        out.extend(
            self.sysctl_conf
                .iter()
                .filter(|a| a.key == key || (is_glob(&a.key) && glob_match(&a.key, key)))
                .filter(differs),
        );
        out
    }

    /// Assignments of `key` that differ from `desired` but lose to `ours` at boot (read
    /// before it, or globs, which never beat an explicit key). Harmless while the drop-in
    /// is there; they apply again if it goes.
    pub fn shadowed(&self, key: &str, desired: &str, ours: Option<&Path>) -> Vec<&Assignment> {
        let Some(at) = self.ours_at(key, desired, ours) else {
            return Vec::new();
        };
        self.history
            .iter()
            .enumerate()
            .filter(|(i, a)| {
                let explicit_later = *i > at && a.key == key; // those are overrides
                let matches = a.key == key || (is_glob(&a.key) && glob_match(&a.key, key));
                matches && !explicit_later && a.value.as_deref() != Some(desired)
            })
            .map(|(_, a)| a)
            .collect()
    }
}

/// The files systemd-sysctl reads, in order: (path on the system, path under the root).
pub fn list_files(root: &Root) -> Vec<(PathBuf, PathBuf)> {
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
        .map(|(_, shown, real)| (shown, real))
        .collect()
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

/// The managed drop-in: its content for these settings.
pub fn render(settings: &crate::config::Settings) -> String {
    let mut out = format!(
        "{HEADER_PREFIX} from {}: edits are overwritten.\n\
         # Change the [sysctl] section of the config instead (or set [sysctl_d] manage = false).\n",
        settings.source
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
        Err(e) if e.kind() == io::ErrorKind::NotFound => return DropinState::Missing,
        Err(e) => return DropinState::Unreadable(e.to_string()),
        Ok(md) if md.file_type().is_symlink() => return DropinState::Symlink,
        Ok(_) => {}
    }
    match fs::read(&real) {
        Ok(bytes) if bytes == expected.as_bytes() => DropinState::Current,
        Ok(bytes) if bytes.starts_with(HEADER_PREFIX.as_bytes()) => DropinState::Outdated,
        Ok(_) => DropinState::Foreign,
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
    fn overrides_are_what_beats_ours() {
        let ours = Path::new("/etc/sysctl.d/99-zz-forksafe.conf");
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
        // Before ours, or a glob after ours: no override.
        assert!(
            t.overrides("vm/overcommit_memory", "1", Some(ours))
                .is_empty()
        );
        assert_eq!(t.effective("vm/overcommit_memory").unwrap().file, ours);

        all.extend(parse(
            b"\nvm.overcommit_memory = 2\n",
            Path::new("/etc/sysctl.d/zz-late.conf"),
        ));
        let t = Table::from_assignments(all);
        let o = t.overrides("vm/overcommit_memory", "1", Some(ours));
        assert_eq!(o.len(), 1);
        assert_eq!(
            (o[0].file.to_str(), o[0].line),
            (Some("/etc/sysctl.d/zz-late.conf"), 2)
        );
        assert_eq!(
            t.effective("vm/overcommit_memory")
                .unwrap()
                .value
                .as_deref(),
            Some("2")
        );
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
