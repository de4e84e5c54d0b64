//! What doctor reads about the kernel, once per diagnosis ([`Kernel`]), and the readers and
//! parsers for the `/proc` and `/sys` formats its checks share.

use std::collections::BTreeMap;

use crate::knob::normalize;
use crate::os::fsread::{self, ReadError};
use crate::os::root::Root;

/// Where THP's sysfs files are, relative to the root.
pub(crate) const THP: &str = "sys/kernel/mm/transparent_hugepage";

/// A kernel file under the root, as text (capped for `/proc`, never blocking).
pub(crate) fn text(root: &Root, rel: &str) -> Result<String, ReadError> {
    root.read_text(rel, fsread::PROC_LIMIT)
}

/// A kernel value under the root, normalised (`always madvise [never]` is `never`).
pub(crate) fn value(root: &Root, rel: &str) -> Option<String> {
    text(root, rel).ok().map(|s| normalize(&s))
}

/// `/proc/meminfo` as kB values.
pub(crate) fn parse_meminfo(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let n = v.split_whitespace().next()?.parse().ok()?;
            Some((k.trim().to_string(), n))
        })
        .collect()
}

/// `Key:\tvalue` files (`/proc/PID/status`, `smaps_rollup`): the first number of a key.
pub(crate) fn field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// (major, minor) of a kernel release such as `6.1.0-50-cloud-amd64`.
pub(crate) fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// What the checks need to know about the kernel, read once.
pub(crate) struct Kernel {
    /// `/proc/meminfo`, or why it could not be read.
    pub(crate) meminfo: Result<String, ReadError>,
    mem: BTreeMap<String, u64>,
    /// `kernel.osrelease`.
    pub(crate) release: String,
    /// Its (major, minor).
    pub(crate) version: Option<(u32, u32)>,
    /// `vm.overcommit_memory`.
    pub(crate) mode: Option<String>,
    /// THP `enabled` and `defrag`.
    pub(crate) thp: Option<String>,
    pub(crate) defrag: Option<String>,
    /// admin_reserve_kbytes, user_reserve_kbytes.
    pub(crate) reserves: (u64, u64),
}

impl Kernel {
    /// Read it under `root`.
    pub(crate) fn read(root: &Root) -> Kernel {
        let meminfo = text(root, "proc/meminfo");
        let mem = parse_meminfo(meminfo.as_deref().unwrap_or_default());
        let release = value(root, "proc/sys/kernel/osrelease").unwrap_or_default();
        let reserve = |rel: &str, default: u64| {
            value(root, rel)
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        Kernel {
            meminfo,
            mem,
            version: kernel_version(&release),
            release,
            mode: value(root, "proc/sys/vm/overcommit_memory"),
            thp: value(root, &format!("{THP}/enabled")),
            defrag: value(root, &format!("{THP}/defrag")),
            reserves: (
                reserve("proc/sys/vm/admin_reserve_kbytes", 8192),
                reserve("proc/sys/vm/user_reserve_kbytes", 131_072),
            ),
        }
    }

    /// A `/proc/meminfo` value, kB (0 when absent: for messages only).
    pub(crate) fn m(&self, k: &str) -> u64 {
        self.mem.get(k).copied().unwrap_or(0)
    }

    /// A `/proc/meminfo` value, kB, if it was read.
    pub(crate) fn get(&self, k: &str) -> Option<u64> {
        self.mem.get(k).copied()
    }

    /// The `/proc/meminfo` values a verdict needs, kB; the first missing one otherwise.
    pub(crate) fn need<const N: usize>(&self, keys: [&str; N]) -> Result<[u64; N], String> {
        let mut out = [0; N];
        for (slot, k) in out.iter_mut().zip(keys) {
            *slot = self.get(k).ok_or_else(|| k.to_string())?;
        }
        Ok(out)
    }

    /// `vm.overcommit_memory`, as read.
    pub(crate) fn mode(&self) -> Option<&str> {
        self.mode.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        let m = parse_meminfo("MemTotal:       16310136 kB\nHugePages_Total:       0\n");
        assert_eq!(m.get("MemTotal"), Some(&16310136));
        assert_eq!(m.get("HugePages_Total"), Some(&0));
        assert_eq!(kernel_version("6.1.0-50-cloud-amd64"), Some((6, 1)));
        assert_eq!(kernel_version("4.18.0-553.el8_10.x86_64"), Some((4, 18)));
        assert_eq!(kernel_version("garbage"), None);
        assert_eq!(
            field("VmData:\t  2048 kB\nVmStk:\t 132 kB\n", "VmData"),
            Some(2048)
        );
        assert_eq!(field("THP_enabled:\t0\n", "THP_enabled"), Some(0));
        // Refused: a prefix of another key is not the key.
        assert_eq!(field("VmDataX:\t5 kB\n", "VmData"), None);
    }
}
