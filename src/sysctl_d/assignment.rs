//! One line of a sysctl.d file ([`Assignment`]), and reading a file into them exactly as
//! systemd-sysctl does: its line endings, comments, `-` prefixes and key normalisation.

use std::fmt;
use std::path::{Path, PathBuf};

use super::glob::glob_match;

/// procps applies this after all the directories.
pub(crate) const SYSCTL_CONF: &str = "/etc/sysctl.conf";

/// systemd refuses lines longer than this (LONG_LINE_MAX) and stops reading the file.
const LONG_LINE_MAX: usize = 1024 * 1024;

/// One `key = value` line (or `-key` exclusion) in a sysctl.d file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The normalised key (`vm/overcommit_memory`), or a glob.
    pub(crate) key: String,
    /// The value; `None` for a `-key` line, which only excludes the key from globs.
    pub value: Option<String>,
    /// The file, as an absolute path on the system (without the root prefix).
    pub(crate) file: PathBuf,
    /// 1-based line number, counted as systemd counts them.
    pub(crate) line: usize,
}

impl Assignment {
    /// Whether it is in `/etc/sysctl.conf`, which procps' `sysctl --system` applies last.
    pub(crate) fn in_sysctl_conf(&self) -> bool {
        self.file == Path::new(SYSCTL_CONF)
    }
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

pub(super) fn is_glob(key: &str) -> bool {
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
pub(super) fn applies(pattern: &str, key: &str) -> bool {
    pattern == key || (is_glob(pattern) && glob_match(pattern, key))
}
