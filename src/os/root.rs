//! The root prefix: every kernel and /etc path forksafe touches resolves under it.
//!
//! Only `main` decides what the root is (`--root`, default `/`); everything else receives a
//! [`Root`] and asks it for paths, so integration tests can point the real binary at a
//! fixture tree.

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

    /// Read the file `rel` under this root through [`fsread::read`]: capped at `limit`,
    /// never blocking on what is not a regular file. A path that would climb out of the
    /// root reads as not found.
    pub(crate) fn read(&self, rel: &str, limit: u64) -> Result<Vec<u8>, ReadError> {
        let path = self.join(rel).ok_or(ReadError::NotFound)?;
        fsread::read(&path, limit)
    }

    /// [`Root::read`] as text (invalid UTF-8 replaced), for `/proc` files and the like.
    pub(crate) fn read_text(&self, rel: &str, limit: u64) -> Result<String, ReadError> {
        self.read(rel, limit)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// Resolve `rel` under this root, following symlinks, and insist that the result lies
    /// inside `<root>/<within>`. This is what keeps a config (or a symlink planted in the
    /// tree) from making forksafe read or write anywhere else.
    pub(crate) fn resolve_within(&self, within: &str, rel: &Path) -> Result<PathBuf, Escape> {
        let base = self.join(within).ok_or(Escape::BadPath)?;
        let path = base.join(rel);
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(Escape::BadPath);
        }
        // Canonicalise the base too: the root itself may sit behind a symlink (/tmp on some
        // systems), which is not an escape.
        let base = base.canonicalize().map_err(Escape::Io)?;
        let real = path.canonicalize().map_err(Escape::Io)?;
        if real.starts_with(&base) {
            Ok(real)
        } else {
            Err(Escape::Outside(real))
        }
    }
}

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
}
