//! Namespaced sysctls: `net.*` belongs to a network namespace, `kernel.shm*`, `kernel.msg*`,
//! `kernel.sem*` and `fs.mqueue.*` to an IPC namespace, `kernel.hostname` and
//! `kernel.domainname` to a UTS namespace. A process in a private namespace (the shipped
//! unit's `PrivateNetwork=yes`, `PrivateIPC=yes`, `ProtectHostname=yes`; a pod without
//! `hostNetwork`) reads and writes its own copy, and would report a value the host never got.
//! forksafe finds out, once per config load, whether it shares each namespace with PID 1 of
//! the root, and refuses such knobs when it does not.

use std::path::Path;

use crate::os::root::Root;

/// The namespaces that hold sysctls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ns {
    /// Network.
    Net,
    /// System V IPC and POSIX message queues.
    Ipc,
    /// Hostname and domain name.
    Uts,
}

impl Ns {
    fn proc_name(self) -> &'static str {
        match self {
            Ns::Net => "net",
            Ns::Ipc => "ipc",
            Ns::Uts => "uts",
        }
    }

    /// The inode of the initial namespace, fixed by the kernel (`PROC_IPC_INIT_INO`,
    /// `PROC_UTS_INIT_INO` since Linux 3.8); the initial network namespace has none.
    fn init_inode(self) -> Option<u64> {
        match self {
            Ns::Net => None,
            Ns::Ipc => Some(0xEFFF_FFFF),
            Ns::Uts => Some(0xEFFF_FFFE),
        }
    }

    /// The namespace in words, and the setting that makes it private where forksafe is
    /// usually run: the shipped unit, a pod.
    pub(crate) fn described(self) -> &'static str {
        match self {
            Ns::Net => {
                "a network namespace (the shipped unit runs in a private one: PrivateNetwork=yes; so does a pod without hostNetwork)"
            }
            Ns::Ipc => {
                "an IPC namespace (the shipped unit runs in a private one: PrivateIPC=yes; so does a pod without hostIPC)"
            }
            Ns::Uts => {
                "a UTS namespace (the shipped unit runs in a private one: ProtectHostname=yes; so does every pod)"
            }
        }
    }

    /// What to tell the operator: the setting that puts forksafe in the host's namespace.
    fn remedy(self) -> &'static str {
        let under_systemd = std::env::var_os("INVOCATION_ID").is_some();
        match (self, under_systemd) {
            (Ns::Net, true) => {
                "`systemctl edit forksafe` and add [Service] PrivateNetwork=no, ReadWritePaths=/proc/sys/net and BindReadOnlyPaths=/proc/sys/net:/run/forksafe/host/proc/sys/net (see README, \"Knobs outside /proc/sys/vm\"), then `systemctl restart forksafe`"
            }
            (Ns::Ipc, true) => {
                "`systemctl edit forksafe` and add [Service] PrivateIPC=no and ReadWritePaths=/proc/sys/kernel, then `systemctl restart forksafe`"
            }
            (Ns::Uts, true) => {
                "`systemctl edit forksafe` and add [Service] ProtectHostname=no and ReadWritePaths=/proc/sys/kernel, then `systemctl restart forksafe`"
            }
            (Ns::Net, false) => {
                "run forksafe in the host's network namespace (Kubernetes: hostNetwork: true; podman/docker: --network host)"
            }
            (Ns::Ipc, false) => {
                "run forksafe in the host's IPC namespace (Kubernetes: hostIPC: true; podman/docker: --ipc host)"
            }
            (Ns::Uts, false) => {
                "run forksafe in the host's UTS namespace (podman/docker: --uts host)"
            }
        }
    }
}

/// The namespace a sysctl (its path relative to `/proc/sys`) belongs to, if any.
pub(crate) fn of_sysctl(rel: &Path) -> Option<Ns> {
    let rel = rel.to_str()?;
    let in_kernel = |names: &[&str]| {
        rel.strip_prefix("kernel/")
            .is_some_and(|n| names.iter().any(|p| n.starts_with(p)))
    };
    if rel.starts_with("net/") {
        Some(Ns::Net)
    } else if rel.starts_with("fs/mqueue/") || in_kernel(&["shm", "msg", "sem", "auto_msgmni"]) {
        Some(Ns::Ipc)
    } else if rel == "kernel/hostname" || rel == "kernel/domainname" {
        Some(Ns::Uts)
    } else {
        None
    }
}

/// Whether this process shares a namespace with PID 1 of the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shared {
    /// The same namespace (or the root is not a live system: a fixture tree).
    Yes,
    /// A private one: the reason, for the error message.
    No(String),
}

/// The inode number of a namespace link (`net:[4026531833]`).
fn ns_inode(link: &Path) -> Option<u64> {
    let target = std::fs::read_link(link).ok()?;
    let s = target.to_str()?;
    s.split_once(":[")?.1.strip_suffix(']')?.parse().ok()
}

fn proc_inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Find out whether this process is in the same `ns` as PID 1 under `root`.
pub(crate) fn shared(root: &Root, ns: Ns) -> Shared {
    let name = ns.proc_name();
    let (Some(pid1), Some(pid1_ns)) = (root.join("proc/1"), root.join(format!("proc/1/ns/{name}")))
    else {
        return Shared::Yes;
    };
    if !pid1.join("ns").exists() && !pid1.join("net").exists() {
        return Shared::Yes; // not a live /proc: a fixture tree
    }
    let ours = ns_inode(Path::new(&format!("/proc/self/ns/{name}")));
    let theirs = ns_inode(&pid1_ns);
    let differs = |what: &str| {
        Shared::No(format!(
            "this process runs in a private {what} namespace, not the host's"
        ))
    };
    match (ours, theirs) {
        (Some(a), Some(b)) => return if a == b { Shared::Yes } else { differs(name) },
        (None, _) => return Shared::Yes, // no namespace support: one namespace for all
        (Some(_), None) => {}
    }
    // PID 1's link is not readable without CAP_SYS_PTRACE (the shipped unit has no
    // capabilities). Network: each namespace has its own /proc/PID/net entries, with their
    // own inode numbers, and those need no privilege to look at.
    if ns == Ns::Net {
        let mine = proc_inode(Path::new("/proc/self/net/dev"));
        let init = proc_inode(&pid1.join("net/dev"));
        return match (mine, init) {
            (Some(a), Some(b)) if a == b => Shared::Yes,
            (Some(_), Some(_)) => differs(name),
            _ => Shared::Yes,
        };
    }
    // IPC and UTS: the initial namespace has a fixed inode; a host's PID 1 is in it.
    match (ours, ns.init_inode()) {
        (Some(a), Some(init)) if a == init => Shared::Yes,
        _ => differs(name),
    }
}

/// Facts about the host a config is judged against: which namespaces forksafe shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Host {
    net: Shared,
    ipc: Shared,
    uts: Shared,
}

impl Host {
    /// A host where every namespace is shared (for tests).
    #[cfg(test)]
    pub(crate) fn shared() -> Host {
        Host {
            net: Shared::Yes,
            ipc: Shared::Yes,
            uts: Shared::Yes,
        }
    }

    /// Look at the live system under `root`.
    pub(crate) fn detect(root: &Root) -> Host {
        Host {
            net: shared(root, Ns::Net),
            ipc: shared(root, Ns::Ipc),
            uts: shared(root, Ns::Uts),
        }
    }

    /// Why a sysctl (relative path) cannot be enforced from here, with the fix; `None` when
    /// it can.
    pub(crate) fn refuse(&self, rel: &Path) -> Option<String> {
        let ns = of_sysctl(rel)?;
        let shared = match ns {
            Ns::Net => &self.net,
            Ns::Ipc => &self.ipc,
            Ns::Uts => &self.uts,
        };
        match shared {
            Shared::Yes => None,
            Shared::No(why) => Some(format!(
                "it is a per-namespace sysctl and {why}: forksafe would set its own copy and \
                 report a value the host does not have. To manage it, {}",
                ns.remedy()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_sysctls_are_namespaced() {
        let of = |k: &str| of_sysctl(Path::new(k));
        assert_eq!(of("net/core/somaxconn"), Some(Ns::Net));
        assert_eq!(of("kernel/shmmax"), Some(Ns::Ipc));
        assert_eq!(of("kernel/sem"), Some(Ns::Ipc));
        assert_eq!(of("kernel/msgmnb"), Some(Ns::Ipc));
        assert_eq!(of("fs/mqueue/msg_max"), Some(Ns::Ipc));
        assert_eq!(of("kernel/hostname"), Some(Ns::Uts));
        // Global: the whole machine has one.
        assert_eq!(of("vm/overcommit_memory"), None);
        assert_eq!(of("kernel/pid_max"), None);
        assert_eq!(of("fs/file-max"), None);
    }

    #[test]
    fn a_fixture_tree_shares_everything() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(Host::detect(&Root::new(t.path())), Host::shared());
    }
}
