//! A knob: one kernel setting (a sysctl under `/proc/sys` or a file under `/sys`), the value
//! we want it to have, and how to read, compare and write it.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::os::errno::{self, Class};
use crate::os::root::{Escape, Root};

/// Which tree a knob lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `/proc/sys/...`, named like `vm.overcommit_memory`.
    Sysctl,
    /// `/sys/...`, named by its path relative to `/sys`.
    Sysfs,
}

impl Kind {
    /// The name used in reports and JSON.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Sysctl => "sysctl",
            Kind::Sysfs => "sysfs",
        }
    }

    /// The directory (relative to the root) this kind of knob must stay inside.
    pub(crate) fn base(self) -> &'static str {
        match self {
            Kind::Sysctl => "proc/sys",
            Kind::Sysfs => "sys",
        }
    }
}

/// A validated knob with its desired value. Only [`Knob::new`] makes one, so a `Knob` always
/// has a safe relative path and a value its kernel file can take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Knob {
    kind: Kind,
    name: String,
    rel: PathBuf,
    desired: String,
}

impl Knob {
    /// Validate `key` (a sysctl key or a sysfs path) and `value` for a knob of `kind`.
    pub fn new(kind: Kind, key: &str, value: &str) -> Result<Knob, String> {
        let rel = match kind {
            Kind::Sysctl => sysctl_key_to_path(key)?,
            Kind::Sysfs => sysfs_path(key)?,
        };
        let name = match kind {
            Kind::Sysctl => path_to_sysctl_name(&rel),
            Kind::Sysfs => rel.clone(),
        };
        let desired = normalize(value);
        if desired.is_empty() {
            return Err(format!("{name}: the value is empty"));
        }
        if value
            .chars()
            .any(|c| c.is_control() && c != '\t' && c != ' ')
        {
            return Err(format!("{name}: the value has a control character"));
        }
        check_known_value(kind, &rel, &desired).map_err(|e| format!("{name}: {e}"))?;
        Ok(Knob {
            kind,
            name,
            rel: PathBuf::from(rel),
            desired,
        })
    }

    /// Sysctl or sysfs.
    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    /// The name people use: `vm.overcommit_memory`, or the path relative to `/sys`.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The path relative to [`Kind::base`].
    pub(crate) fn rel(&self) -> &Path {
        &self.rel
    }

    /// The desired value, whitespace-normalised.
    pub(crate) fn desired(&self) -> &str {
        &self.desired
    }

    /// The file's path under `root`, for reports (not resolved through symlinks).
    pub(crate) fn display_path(&self, root: &Root) -> PathBuf {
        let base = root.dir().join(self.kind.base());
        base.join(&self.rel)
    }

    /// The shell command that sets this knob back to `previous` by hand (what `apply` and the
    /// daemon print when they change a value, so the undo is exact): `sysctl -w KEY=VALUE`,
    /// or `echo VALUE > /sys/PATH` (the path as the machine names it, whatever `--root`).
    /// `None` for an empty value, which no command can write back.
    pub(crate) fn undo(&self, previous: &str) -> Option<String> {
        if previous.is_empty() {
            return None;
        }
        Some(match self.kind {
            Kind::Sysctl => format!(
                "sysctl -w {}",
                shell_quote(&format!("{}={previous}", self.name))
            ),
            Kind::Sysfs => format!(
                "echo {} > {}",
                shell_quote(previous),
                shell_quote(&format!("/sys/{}", self.rel.display()))
            ),
        })
    }

    /// Whether THP's `enabled` must be written after its siblings: `defrag` first, so the
    /// moment huge pages are (re)allowed the defrag policy is already the one we want.
    pub(crate) fn write_last(&self) -> bool {
        self.kind == Kind::Sysfs && self.rel.ends_with("transparent_hugepage/enabled")
    }

    /// Find and open the knob's file: `<root>/<base>/<rel>` with every symlink resolved, and
    /// refused unless it stays inside its tree. Done once per configuration (and again after
    /// a failure), not on every read: each tick then costs one pread(2) per knob instead of
    /// a path walk. /proc/sys and /sys are kernel file systems where nobody can plant a
    /// symlink later, and every open uses O_NOFOLLOW anyway.
    pub(crate) fn resolve(&self, root: &Root) -> Result<Resolved, KnobError> {
        let shown = self.display_path(root);
        let real = root
            .resolve_within(self.kind.base(), &self.rel)
            .map_err(|e| match e {
                Escape::Io(err) => KnobError::from_io(shown.clone(), Op::Read, err),
                Escape::Outside(real) => KnobError {
                    path: shown.clone(),
                    op: Op::Resolve,
                    cause: Cause::Escape(real),
                },
                Escape::BadPath => KnobError {
                    path: shown.clone(),
                    op: Op::Resolve,
                    cause: Cause::Escape(self.rel.clone()),
                },
            })?;
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&real)
            .map_err(|e| KnobError::from_io(shown.clone(), Op::Read, e))?;
        Ok(Resolved { real, shown, file })
    }

    /// Read the current value, normalised (see [`normalize`]).
    pub(crate) fn read(&self, at: &Resolved) -> Result<String, KnobError> {
        // pread(2) from offset 0: procfs and sysfs produce the whole value on each read from
        // the start, so one call usually does; no size probing (statx, lseek) either.
        let mut buf = [0u8; 512];
        let mut len = 0;
        // A value longer than the buffer is longer than any we compare: its prefix decides.
        while let Some(rest) = buf.get_mut(len..).filter(|r| !r.is_empty()) {
            match at.file.read_at(rest, len as u64) {
                Ok(0) => break,
                Ok(n) => {
                    len += n;
                    if n < rest.len() {
                        break; // a short read from offset 0 is the whole value
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(KnobError::from_io(at.shown.clone(), Op::Read, e)),
            }
        }
        let text = String::from_utf8_lossy(buf.get(..len).unwrap_or_default());
        Ok(normalize(&text))
    }

    /// Write the desired value, then read it back. Ok only when the kernel now reports it.
    ///
    /// A read-back that differs is either the kernel adjusting the value (it will every
    /// time) or another writer landing between our write and our read (it will not, three
    /// times running). So a differing read-back is written again, up to [`WRITE_TRIES`]
    /// writes: the same other value each time is [`Cause::ReadBack`], the kernel's answer;
    /// differing ones are [`Cause::Raced`], a writer to keep repairing, never to give in to.
    pub(crate) fn write(&self, at: &Resolved) -> Result<(), KnobError> {
        let mut reads: Vec<String> = Vec::new();
        for _ in 0..WRITE_TRIES {
            let now = self.write_once(at)?;
            if now == self.desired {
                return Ok(());
            }
            reads.push(now);
        }
        Err(KnobError {
            path: at.shown.clone(),
            op: Op::Verify,
            cause: Cause::of_read_backs(&self.desired, reads),
        })
    }

    /// One write(2) of the whole value, then what the kernel reports.
    fn write_once(&self, at: &Resolved) -> Result<String, KnobError> {
        // procfs and sysfs parse each write on its own. O_TRUNC is ignored by the kernel's
        // files and keeps fixture files exact.
        let line = format!("{}\n", self.desired);
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
            .open(&at.real)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|e| KnobError::from_io(at.shown.clone(), Op::Write, e))?;
        self.read(at)
    }
}

/// `s` as one shell word: as it is when it has only characters no shell treats specially,
/// else in single quotes.
fn shell_quote(s: &str) -> String {
    let plain = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-./:=+,@%".contains(c));
    if plain && !s.is_empty() {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Writes [`Knob::write`] makes before it takes a differing read-back as the kernel's answer.
pub const WRITE_TRIES: usize = 3;

/// A knob's file, found and opened by [`Knob::resolve`].
#[derive(Debug)]
pub(crate) struct Resolved {
    /// The canonical path, inside the knob's tree.
    real: PathBuf,
    /// The path as shown to people.
    shown: PathBuf,
    /// Open for reading.
    file: File,
}

impl Resolved {
    /// The canonical path (what inotify watches).
    pub(crate) fn real(&self) -> &Path {
        &self.real
    }
}

/// The kernel's ways of showing a value, folded to one form: a choice list such as
/// `always madvise [never]` becomes `never`; runs of whitespace (multi-value sysctls are
/// tab-separated) become one space; leading and trailing whitespace goes.
pub fn normalize(raw: &str) -> String {
    let selected = raw.split_whitespace().find_map(|tok| {
        tok.strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .filter(|t| !t.is_empty())
    });
    match selected {
        Some(sel) => sel.to_string(),
        None => raw.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// systemd's rule for sysctl keys: if the first separator is `.`, dots and slashes swap
/// (`net.ipv4.conf.eth0/100.rp_filter` -> `net/ipv4/conf/eth0.100/rp_filter`); if it is `/`,
/// the key is a path as written.
pub fn sysctl_key_to_path(key: &str) -> Result<String, String> {
    if key.is_empty() {
        return Err("empty sysctl key".into());
    }
    if let Some(bad) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '-')))
    {
        return Err(format!(
            "sysctl key {key:?} has the character {bad:?}; allowed are A-Z a-z 0-9 _ . : / -"
        ));
    }
    if key.contains("..") {
        return Err(format!("sysctl key {key:?} contains \"..\""));
    }
    let path = sysctl_normalize(key);
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(format!(
            "sysctl key {key:?} has an empty or relative component"
        ));
    }
    Ok(path)
}

/// The separator swap alone, without validation (also used for sysctl.d keys and globs).
pub(crate) fn sysctl_normalize(key: &str) -> String {
    match key.find(['.', '/']) {
        Some(i) if key.as_bytes().get(i) == Some(&b'.') => key
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect(),
        _ => key.to_string(),
    }
}

/// The dotted name of a `/proc/sys` relative path, as `sysctl(8)` prints it.
pub(crate) fn path_to_sysctl_name(path: &str) -> String {
    path.chars()
        .map(|c| match c {
            '/' => '.',
            '.' => '/',
            c => c,
        })
        .collect()
}

fn sysfs_path(key: &str) -> Result<String, String> {
    if key.is_empty() {
        return Err("empty sysfs path".into());
    }
    if key.starts_with('/') {
        return Err(format!(
            "sysfs path {key:?} is absolute; write it relative to /sys, e.g. \"kernel/mm/transparent_hugepage/enabled\""
        ));
    }
    if let Some(bad) = key.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '-' | '+' | ',' | '@'))
    }) {
        return Err(format!("sysfs path {key:?} has the character {bad:?}"));
    }
    if key.split('/').any(|c| c == "..") {
        return Err(format!("sysfs path {key:?} contains \"..\""));
    }
    if key.split('/').any(|c| c.is_empty() || c == ".") {
        return Err(format!("sysfs path {key:?} has an empty component"));
    }
    Ok(key.to_string())
}

const THP_ENABLED: &[&str] = &["always", "madvise", "never"];
const THP_DEFRAG: &[&str] = &["always", "defer", "defer+madvise", "madvise", "never"];
const THP_SIZE_ENABLED: &[&str] = &["always", "inherit", "madvise", "never"];

/// Integer sysctls forksafe knows, with the range the kernel takes. The kernel prints them
/// back in canonical decimal, so a value written any other way (`+1`, `01`) would read back
/// different and be rewritten at every tick: such values are refused at load.
const INTEGERS: &[(&str, u64, u64)] = &[
    ("vm/overcommit_memory", 0, 2),
    ("vm/overcommit_ratio", 0, i32::MAX as u64),
    ("vm/overcommit_kbytes", 0, u64::MAX),
    ("vm/admin_reserve_kbytes", 0, u64::MAX),
    ("vm/user_reserve_kbytes", 0, u64::MAX),
    ("vm/swappiness", 0, 200),
    ("vm/max_map_count", 0, i32::MAX as u64),
    ("net/core/somaxconn", 0, i32::MAX as u64),
];

/// Whether `value` is an unsigned integer written the way the kernel prints it.
fn canonical_uint(value: &str) -> Option<u64> {
    let digits = value.bytes().all(|b| b.is_ascii_digit());
    let leading_zero = value.len() > 1 && value.starts_with('0');
    if value.is_empty() || !digits || leading_zero {
        return None;
    }
    value.parse().ok()
}

/// Values a knob we know can take. Unknown knobs take any non-empty value; the kernel is the
/// judge (EINVAL) for those.
fn check_known_value(kind: Kind, rel: &str, value: &str) -> Result<(), String> {
    if kind == Kind::Sysctl {
        if let Some((_, lo, hi)) = INTEGERS.iter().find(|(k, _, _)| *k == rel) {
            let name = path_to_sysctl_name(rel);
            return match canonical_uint(value) {
                Some(v) if (*lo..=*hi).contains(&v) => Ok(()),
                Some(_) if rel == "vm/overcommit_memory" => Err(format!(
                    "{value:?} is not a valid value; vm.overcommit_memory takes 0, 1 or 2 (forksafe wants 1)"
                )),
                Some(_) => Err(format!(
                    "{value:?} is out of range; {name} takes {lo} to {hi}"
                )),
                None => Err(format!(
                    "{value:?} is not a canonical integer: {name} takes a plain decimal number \
                     ({lo} to {hi}, no sign, no leading zero), as the kernel prints it back; \
                     anything else would read back different and be rewritten at every tick"
                )),
            };
        }
        return Ok(());
    }
    let choices = match rel {
        "kernel/mm/transparent_hugepage/enabled" => THP_ENABLED,
        "kernel/mm/transparent_hugepage/defrag" => THP_DEFRAG,
        r if r.starts_with("kernel/mm/transparent_hugepage/hugepages-")
            && r.ends_with("/enabled") =>
        {
            THP_SIZE_ENABLED
        }
        _ => return Ok(()),
    };
    if choices.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a valid value; it takes one of: {}",
            choices.join(", ")
        ))
    }
}

/// What forksafe was doing when a knob operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Resolving the path inside its tree.
    Resolve,
    /// Reading the value.
    Read,
    /// Writing the value.
    Write,
    /// Reading the value back after a write.
    Verify,
}

/// Why a knob operation failed, in the classes an operator acts on differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cause {
    /// ENOENT: the knob does not exist on this kernel.
    Absent,
    /// EROFS, EACCES, EPERM: a container, a sandbox or a read-only mount.
    NotPermitted(i32),
    /// EINVAL: the kernel refused the value.
    Refused,
    /// The write went through but the kernel reports another value.
    ReadBack {
        /// What was written.
        wrote: String,
        /// What the kernel reports after the write.
        read: String,
    },
    /// Every write went through, and each read-back found another value set at once:
    /// something else writes the knob as we do.
    Raced {
        /// What was written, [`WRITE_TRIES`] times.
        wrote: String,
        /// What each read-back found.
        reads: Vec<String>,
    },
    /// Symlinks lead outside the knob's tree, to this path.
    Escape(PathBuf),
    /// Anything else, with its errno (0 when none).
    Other(i32, String),
}

impl Cause {
    /// What differing read-backs of `wrote` mean: the same value every time is the kernel's
    /// answer ([`Cause::ReadBack`]), differing values are another writer ([`Cause::Raced`]).
    pub(crate) fn of_read_backs(wrote: &str, reads: Vec<String>) -> Cause {
        match reads.split_first() {
            Some((first, rest)) if rest.iter().all(|r| r == first) => Cause::ReadBack {
                wrote: wrote.to_string(),
                read: first.clone(),
            },
            _ => Cause::Raced {
                wrote: wrote.to_string(),
                reads,
            },
        }
    }

    /// What an OS error number means for a knob operation (see [`errno::classify`]).
    pub(crate) fn from_errno(errno: i32, op: Op, message: String) -> Cause {
        match errno::classify(errno) {
            Class::Absent => Cause::Absent,
            Class::NotPermitted => Cause::NotPermitted(errno),
            Class::Invalid if op == Op::Write => Cause::Refused,
            Class::Invalid | Class::Other => Cause::Other(errno, message),
        }
    }
}

/// A failed knob operation: what, on which file, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnobError {
    /// The knob's file, as shown to people.
    pub(crate) path: PathBuf,
    /// What was being done.
    pub(crate) op: Op,
    /// Why it failed.
    pub(crate) cause: Cause,
}

impl KnobError {
    fn from_io(path: PathBuf, op: Op, e: io::Error) -> KnobError {
        let errno = e.raw_os_error().unwrap_or(0);
        KnobError {
            path,
            op,
            cause: Cause::from_errno(errno, op, e.to_string()),
        }
    }

    /// The errno behind this error, when there is one (for the journal's `ERRNO` field).
    pub(crate) fn errno(&self) -> Option<i32> {
        match &self.cause {
            Cause::Absent => Some(nix::errno::Errno::ENOENT as i32),
            Cause::NotPermitted(e) => Some(*e),
            Cause::Refused => Some(nix::errno::Errno::EINVAL as i32),
            Cause::Other(e, _) if *e != 0 => Some(*e),
            _ => None,
        }
    }

    /// True when the knob simply does not exist here (warn and go on).
    pub(crate) fn is_absent(&self) -> bool {
        self.cause == Cause::Absent
    }

    /// Whether another writer changed the knob between each of our writes and its read-back.
    pub(crate) fn is_raced(&self) -> bool {
        matches!(self.cause, Cause::Raced { .. })
    }
}

impl fmt::Display for KnobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.op {
            Op::Resolve => "cannot resolve",
            Op::Read => "cannot read",
            Op::Write => "cannot write",
            Op::Verify => "wrote but could not verify",
        };
        let path = self.path.display();
        match &self.cause {
            Cause::Absent => write!(
                f,
                "{what} {path}: no such file; this kernel does not have this knob (skipped)"
            ),
            Cause::NotPermitted(errno) => {
                write!(
                    f,
                    "{what} {path}: {}; this is likely a container or a sandbox, and these \
                     settings are host-wide: set them on the host",
                    nix::errno::Errno::from_raw(*errno).desc()
                )?;
                if std::env::var_os("INVOCATION_ID").is_some() {
                    write!(
                        f,
                        ", or if the service's sandbox is in the way, allow the path with \
                         `systemctl edit forksafe` ([Service] ReadWritePaths={path})"
                    )?;
                }
                Ok(())
            }
            Cause::Refused => write!(
                f,
                "{what} {path}: the kernel refused the value (EINVAL); check that this kernel \
                 supports it"
            ),
            Cause::ReadBack { wrote, read } => write!(
                f,
                "{what} {path}: wrote {wrote:?}, the kernel reports {read:?} after each of \
                 {WRITE_TRIES} writes: the kernel adjusts the value (or something rewrites it \
                 at once, every time)"
            ),
            Cause::Raced { wrote, reads } => write!(
                f,
                "{what} {path}: wrote {wrote:?} {} times, and each time something else set it \
                 at once (read back {}); it is written again at its next change",
                reads.len(),
                reads
                    .iter()
                    .map(|r| format!("{r:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Cause::Escape(real) => write!(
                f,
                "{what} {path}: it leads to {} outside its tree; refusing to touch it",
                real.display()
            ),
            Cause::Other(_, msg) => write!(f, "{what} {path}: {msg}"),
        }
    }
}

impl std::error::Error for KnobError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_backs_the_same_each_time_are_the_kernels_answer_differing_ones_a_race() {
        let v = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            Cause::of_read_backs("5000", v(&["8192", "8192", "8192"])),
            Cause::ReadBack {
                wrote: "5000".into(),
                read: "8192".into()
            }
        );
        for reads in [&["0", "", "0"][..], &["0", "0", "2"], &["", "0", "0"]] {
            assert_eq!(
                Cause::of_read_backs("1", v(reads)),
                Cause::Raced {
                    wrote: "1".into(),
                    reads: v(reads)
                },
                "{reads:?}"
            );
        }
        let raced = KnobError {
            path: "/proc/sys/vm/overcommit_memory".into(),
            op: Op::Verify,
            cause: Cause::of_read_backs("1", v(&["0", "", "0"])),
        };
        assert!(raced.is_raced());
        assert_eq!(
            raced.to_string(),
            "wrote but could not verify /proc/sys/vm/overcommit_memory: wrote \"1\" 3 times, and \
             each time something else set it at once (read back \"0\", \"\", \"0\"); it is \
             written again at its next change"
        );
    }

    #[test]
    fn undo_commands_set_the_previous_value_back() {
        let k = Knob::new(Kind::Sysctl, "vm.overcommit_memory", "1").unwrap();
        assert_eq!(
            k.undo("0").as_deref(),
            Some("sysctl -w vm.overcommit_memory=0")
        );
        assert_eq!(k.undo(""), None);
        let k = Knob::new(Kind::Sysctl, "net.ipv4.tcp_rmem", "4096 131072 6291456").unwrap();
        assert_eq!(
            k.undo("4096 87380 6291456").as_deref(),
            Some("sysctl -w 'net.ipv4.tcp_rmem=4096 87380 6291456'")
        );
        let k = Knob::new(
            Kind::Sysfs,
            "kernel/mm/transparent_hugepage/enabled",
            "never",
        )
        .unwrap();
        assert_eq!(
            k.undo("always").as_deref(),
            Some("echo always > /sys/kernel/mm/transparent_hugepage/enabled")
        );
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn normalize_kernel_formats() {
        assert_eq!(normalize("always madvise [never]\n"), "never");
        assert_eq!(
            normalize("[always] defer defer+madvise madvise never"),
            "always"
        );
        assert_eq!(normalize("never\n"), "never");
        assert_eq!(normalize("4096\t131072\t6291456\n"), "4096 131072 6291456");
        assert_eq!(normalize("  1 \n"), "1");
    }

    #[test]
    fn sysctl_keys_follow_systemd_rule() {
        assert_eq!(
            sysctl_key_to_path("vm.overcommit_memory").unwrap(),
            "vm/overcommit_memory"
        );
        assert_eq!(
            sysctl_key_to_path("vm/overcommit_memory").unwrap(),
            "vm/overcommit_memory"
        );
        assert_eq!(
            sysctl_key_to_path("net.ipv4.conf.eth0/100.rp_filter").unwrap(),
            "net/ipv4/conf/eth0.100/rp_filter"
        );
        assert_eq!(
            sysctl_key_to_path("net/ipv4/conf/eth0.100/rp_filter").unwrap(),
            "net/ipv4/conf/eth0.100/rp_filter"
        );
        assert_eq!(
            path_to_sysctl_name("net/ipv4/conf/eth0.100/rp_filter"),
            "net.ipv4.conf.eth0/100.rp_filter"
        );
    }

    #[test]
    fn sysctl_keys_refused() {
        // Refused: a space is not part of any sysctl name.
        assert!(sysctl_key_to_path("vm.over commit").is_err());
        // Refused: `..` could climb out of /proc/sys.
        assert!(sysctl_key_to_path("vm..overcommit").is_err());
        assert!(sysctl_key_to_path("../etc/passwd").is_err());
        // Refused: empty key or empty component.
        assert!(sysctl_key_to_path("").is_err());
        assert!(sysctl_key_to_path("vm.").is_err());
        assert!(sysctl_key_to_path("/vm/overcommit_memory").is_err());
        // Refused: glob characters belong in sysctl.d, not in a knob.
        assert!(sysctl_key_to_path("net.ipv4.conf.*.rp_filter").is_err());
    }

    #[test]
    fn sysfs_paths_refused() {
        // Refused: absolute paths would bypass the root.
        assert!(Knob::new(Kind::Sysfs, "/sys/kernel/mm/x", "1").is_err());
        // Refused: `..` could climb out of /sys.
        assert!(Knob::new(Kind::Sysfs, "kernel/../../etc/shadow", "1").is_err());
        // Refused: empty path or component.
        assert!(Knob::new(Kind::Sysfs, "", "1").is_err());
        assert!(Knob::new(Kind::Sysfs, "kernel//mm", "1").is_err());
        assert!(Knob::new(Kind::Sysfs, "kernel/mm/x", "1").is_ok());
    }

    #[test]
    fn known_values() {
        assert!(Knob::new(Kind::Sysctl, "vm.overcommit_memory", "1").is_ok());
        assert!(Knob::new(Kind::Sysctl, "vm.overcommit_memory", "2").is_ok());
        // Refused: overcommit_memory only has modes 0, 1 and 2.
        assert!(Knob::new(Kind::Sysctl, "vm.overcommit_memory", "3").is_err());
        // Refused: the kernel refuses "+1" and prints "01" back as "1".
        assert!(Knob::new(Kind::Sysctl, "vm.overcommit_memory", "+1").is_err());
        assert!(Knob::new(Kind::Sysctl, "vm.overcommit_memory", "01").is_err());
        assert!(Knob::new(Kind::Sysctl, "vm.overcommit_memory", "1 ").is_ok());
        assert!(Knob::new(Kind::Sysctl, "net.core.somaxconn", "65535").is_ok());
        // Refused: swappiness tops out at 200.
        assert!(Knob::new(Kind::Sysctl, "vm.swappiness", "201").is_err());
        // Unknown integer knobs are the kernel's to judge.
        assert!(Knob::new(Kind::Sysctl, "vm.dirty_ratio", "+1").is_ok());
        assert!(Knob::new(Kind::Sysctl, "vm.overcommit_memory", "-1").is_err());
        assert!(Knob::new(Kind::Sysctl, "vm.overcommit_memory", "yes").is_err());
        let thp = "kernel/mm/transparent_hugepage/";
        assert!(Knob::new(Kind::Sysfs, &format!("{thp}enabled"), "never").is_ok());
        // Refused: `defer` is a defrag mode, not an enabled mode.
        assert!(Knob::new(Kind::Sysfs, &format!("{thp}enabled"), "defer").is_err());
        assert!(Knob::new(Kind::Sysfs, &format!("{thp}defrag"), "defer+madvise").is_ok());
        assert!(Knob::new(Kind::Sysfs, &format!("{thp}defrag"), "sometimes").is_err());
        assert!(
            Knob::new(
                Kind::Sysfs,
                &format!("{thp}hugepages-2048kB/enabled"),
                "inherit"
            )
            .is_ok()
        );
        // Refused: empty values, after trimming.
        assert!(Knob::new(Kind::Sysctl, "vm.swappiness", "  ").is_err());
        // Refused: a newline would let one value smuggle a second write.
        assert!(Knob::new(Kind::Sysctl, "vm.swappiness", "1\n2").is_err());
        // Multi-value sysctls compare whitespace-normalised.
        let k = Knob::new(Kind::Sysctl, "net.ipv4.tcp_rmem", "4096  131072\t6291456").unwrap();
        assert_eq!(k.desired(), "4096 131072 6291456");
    }

    #[test]
    fn write_verifies_by_reading_back() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        std::fs::create_dir_all(t.path().join("proc/sys/vm")).unwrap();
        std::fs::write(t.path().join("proc/sys/vm/overcommit_memory"), "0\n").unwrap();
        let k = Knob::new(Kind::Sysctl, "vm.overcommit_memory", "1").unwrap();
        let at = k.resolve(&root).unwrap();
        assert_eq!(k.read(&at).unwrap(), "0");
        k.write(&at).unwrap();
        assert_eq!(k.read(&at).unwrap(), "1");
        let missing = Knob::new(Kind::Sysctl, "vm.nonexistent", "1").unwrap();
        assert!(missing.resolve(&root).unwrap_err().is_absent());
    }
}
