//! How an operator reads an OS error number, for any file forksafe touches (a knob's file,
//! the drop-in, the state and metrics files): one classification, so every message that
//! says "a container or sandbox?" says it for the same errors.

use nix::errno::Errno;

/// The classes an operator acts on differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// ENOENT, ENOTDIR: nothing there (a knob this kernel does not have).
    Absent,
    /// EROFS, EACCES, EPERM: read-only or not permitted; likely a container or a sandbox.
    NotPermitted,
    /// EINVAL: the kernel refused what was asked (a value it does not take, on a write).
    Invalid,
    /// Anything else.
    Other,
}

/// The class of `errno` (0, no errno, is [`Class::Other`]).
pub(crate) fn classify(errno: i32) -> Class {
    match Errno::from_raw(errno) {
        Errno::ENOENT | Errno::ENOTDIR => Class::Absent,
        Errno::EROFS | Errno::EACCES | Errno::EPERM => Class::NotPermitted,
        Errno::EINVAL => Class::Invalid,
        _ => Class::Other,
    }
}

/// The class of an I/O error's errno.
pub(crate) fn class_of(e: &std::io::Error) -> Class {
    classify(e.raw_os_error().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(classify(Errno::ENOENT as i32), Class::Absent);
        assert_eq!(classify(Errno::ENOTDIR as i32), Class::Absent);
        for e in [Errno::EROFS, Errno::EACCES, Errno::EPERM] {
            assert_eq!(classify(e as i32), Class::NotPermitted, "{e}");
        }
        assert_eq!(classify(Errno::EINVAL as i32), Class::Invalid);
        assert_eq!(classify(Errno::ENOSPC as i32), Class::Other);
        assert_eq!(classify(0), Class::Other);
    }
}
