//! The root prefix: every kernel and /etc path forksafe touches resolves under it.
//!
//! Only `main` decides what the root is (`--root`, default `/`); everything else receives a
//! [`Root`] and asks it for paths, so integration tests can point the real binary at a
//! fixture tree, and the DaemonSet at the host mounted on `/host`.
//!
//! The root is a jail for symlinks, as systemd's own `--root` is: a link inside it is
//! followed inside it (an absolute target starts again at the root, `..` stops there), so a
//! host whose `/etc` uses absolute links is judged by its own files, and no read or write
//! lands outside the root. `/proc` is the exception: its magic links (`/proc/PID/root`,
//! `/proc/self`) are the kernel's to resolve.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::os::fsread::{self, ReadError};

/// A directory that stands for `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root(PathBuf);

impl Root {
    /// A root at `dir` (`/` for the real system).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Root(dir.into())
    }

    /// The root directory itself.
    pub(crate) fn dir(&self) -> &Path {
        &self.0
    }

    /// `rel` (a path relative to `/`, a leading `/` is allowed) under this root. `None` when
    /// `rel` has a `..` component or anything else that could climb out of the root.
    pub(crate) fn join(&self, rel: impl AsRef<Path>) -> Option<PathBuf> {
        let mut out = self.0.clone();
        for comp in rel.as_ref().components() {
            match comp {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(part) => out.push(part),
                Component::ParentDir | Component::Prefix(_) => return None,
            }
        }
        Some(out)
    }

    /// `rel` under this root with every symlink resolved inside the root (see the module
    /// doc): a path on this machine that lies inside the root. Components that do not
    /// exist are kept as named (reading the result then finds nothing). Under `proc/` the
    /// kernel resolves: the path is only joined.
    pub(crate) fn resolve(&self, rel: impl AsRef<Path>) -> io::Result<PathBuf> {
        let rel = rel.as_ref();
        let mut todo: VecDeque<OsString> = VecDeque::new();
        for comp in rel.components() {
            match comp {
                Component::Normal(part) => todo.push_back(part.to_os_string()),
                Component::ParentDir => todo.push_back("..".into()),
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
        if todo.front().is_some_and(|c| c == "proc") {
            return self
                .join(rel)
                .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput));
        }
        // The root itself may sit behind a symlink (/tmp on some systems): that is the
        // host's to resolve, and no escape.
        let top = self.0.canonicalize()?;
        let mut at = top.clone();
        let mut links = 0;
        while let Some(part) = todo.pop_front() {
            if part == ".." {
                if at != top {
                    at.pop();
                }
                continue;
            }
            let next = at.join(&part);
            match std::fs::symlink_metadata(&next) {
                Ok(md) if md.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(io::Error::from_raw_os_error(nix::libc::ELOOP));
                    }
                    let target = std::fs::read_link(&next)?;
                    if target.is_absolute() {
                        at = top.clone();
                    }
                    let mut ahead: VecDeque<OsString> = target
                        .components()
                        .filter_map(|c| match c {
                            Component::Normal(p) => Some(p.to_os_string()),
                            Component::ParentDir => Some("..".into()),
                            _ => None,
                        })
                        .collect();
                    ahead.extend(todo);
                    todo = ahead;
                }
                Ok(_) => at = next,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // Nothing more to resolve: the rest is named as it is.
                    at = next;
                    at.extend(todo.drain(..).filter(|p| p != ".."));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(at)
    }

    /// Read the file `rel` under this root through [`fsread::read`]: symlinks followed
    /// inside the root, capped at `limit`, never blocking on what is not a regular file.
    pub(crate) fn read(&self, rel: &str, limit: u64) -> Result<Vec<u8>, ReadError> {
        fsread::read(&self.resolve(rel)?, limit)
    }

    /// [`Root::read`] as text (invalid UTF-8 replaced), for `/proc` files and the like.
    pub(crate) fn read_text(&self, rel: &str, limit: u64) -> Result<String, ReadError> {
        self.read(rel, limit)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// Resolve `rel` under `<root>/<within>`, following symlinks (inside the root, or the
    /// kernel's way under `/proc`), and insist that the result lies inside
    /// `<root>/<within>`. This is what keeps a config (or a symlink planted in the tree)
    /// from making forksafe read or write anywhere else.
    pub(crate) fn resolve_within(&self, within: &str, rel: &Path) -> Result<PathBuf, Escape> {
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(Escape::BadPath);
        }
        let named = Path::new(within).join(rel);
        let (base, real) = if within == "proc" || within.starts_with("proc/") {
            // Canonicalise the base too: the root itself may sit behind a symlink.
            let base = self.join(within).ok_or(Escape::BadPath)?;
            let real = base.join(rel).canonicalize().map_err(Escape::Io)?;
            (base.canonicalize().map_err(Escape::Io)?, real)
        } else {
            let base = self.resolve(within).map_err(Escape::Io)?;
            (base, self.resolve(&named).map_err(Escape::Io)?)
        };
        // Missing components are named, not resolved: say so as the OS would.
        std::fs::symlink_metadata(&real).map_err(Escape::Io)?;
        if real.starts_with(&base) {
            Ok(real)
        } else {
            Err(Escape::Outside(real))
        }
    }
}

/// Symlinks followed in one resolution before it is refused (ELOOP), as the kernel's 40.
const MAX_LINKS: u32 = 40;

/// Why a path could not be resolved inside its allowed directory.
#[derive(Debug)]
pub(crate) enum Escape {
    /// The relative path itself is absolute or has `..`.
    BadPath,
    /// Symlinks lead outside the allowed directory, to this path.
    Outside(PathBuf),
    /// A component could not be resolved (most often: it does not exist).
    Io(io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_keeps_paths_inside() {
        let r = Root::new("/tmp/x");
        assert_eq!(r.join("/etc/a").unwrap(), PathBuf::from("/tmp/x/etc/a"));
        assert_eq!(
            r.join("proc/sys/vm").unwrap(),
            PathBuf::from("/tmp/x/proc/sys/vm")
        );
        // Refused: `..` could climb out of the root.
        assert!(r.join("etc/../../x").is_none());
    }

    #[test]
    fn resolve_within_refuses_symlink_escape() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        std::fs::create_dir_all(t.path().join("sys/kernel")).unwrap();
        std::fs::write(t.path().join("sys/kernel/ok"), "1").unwrap();
        std::fs::write(t.path().join("outside"), "1").unwrap();
        std::os::unix::fs::symlink("../../outside", t.path().join("sys/kernel/evil")).unwrap();
        std::os::unix::fs::symlink("ok", t.path().join("sys/kernel/alias")).unwrap();

        assert!(root.resolve_within("sys", Path::new("kernel/ok")).is_ok());
        // Allowed: a symlink that stays inside /sys.
        assert!(
            root.resolve_within("sys", Path::new("kernel/alias"))
                .is_ok()
        );
        // Refused: the symlink leads out of /sys.
        assert!(matches!(
            root.resolve_within("sys", Path::new("kernel/evil")),
            Err(Escape::Outside(_))
        ));
        // Refused: `..` in the relative path.
        assert!(matches!(
            root.resolve_within("sys", Path::new("kernel/../kernel/ok")),
            Err(Escape::BadPath)
        ));
    }

    #[test]
    fn links_resolve_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        let top = t.path().canonicalize().unwrap();
        std::fs::create_dir_all(t.path().join("etc/real.d")).unwrap();
        std::fs::write(t.path().join("etc/sysctl.conf"), "x").unwrap();
        // An absolute link is taken relative to the root, never to this machine's /.
        std::os::unix::fs::symlink("/etc/sysctl.conf", t.path().join("etc/real.d/99.conf"))
            .unwrap();
        assert_eq!(
            root.resolve("etc/real.d/99.conf").unwrap(),
            top.join("etc/sysctl.conf")
        );
        // A directory that is an absolute link: followed inside the root.
        std::os::unix::fs::symlink("/etc/real.d", t.path().join("etc/sysctl.d")).unwrap();
        assert_eq!(
            root.resolve("/etc/sysctl.d/new.conf").unwrap(),
            top.join("etc/real.d/new.conf")
        );
        // `..` stops at the root.
        std::os::unix::fs::symlink("../../../../../etc", t.path().join("etc/up")).unwrap();
        assert_eq!(
            root.resolve("etc/up/sysctl.conf").unwrap(),
            top.join("etc/sysctl.conf")
        );
        assert_eq!(root.read("/etc/real.d/99.conf", 10).unwrap(), b"x");
        // Refused: a loop.
        std::os::unix::fs::symlink("loop", t.path().join("etc/loop")).unwrap();
        assert!(root.resolve("etc/loop/x").is_err());
        // Under /proc the kernel resolves: only joined.
        assert_eq!(
            root.resolve("proc/self/root").unwrap(),
            t.path().join("proc/self/root")
        );
    }
}
