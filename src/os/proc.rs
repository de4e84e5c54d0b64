//! Processes under the root's `/proc`: which run, what they are called, their command
//! lines, when they started, their namespaces, and the pid type forksafe signals (a positive pid by construction, so a signal
//! can never reach a process group or every process).

use crate::os::fsread::ReadError;
use crate::os::root::Root;

/// `/proc/PID/comm` is at most 16 bytes; anything longer is not a comm file.
const COMM_LIMIT: u64 = 4096;
/// A command line forksafe reads (its own daemon's, a database's).
const CMDLINE_LIMIT: u64 = 64 * 1024;

/// One process: its pid and its name as `/proc/PID/comm` gives it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Process {
    /// The pid, in the pid namespace of the root's `/proc`.
    pub(crate) pid: u32,
    /// The name (15 characters at most).
    pub(crate) comm: String,
}

/// The processes in `<root>/proc`, by pid.
pub(crate) fn processes(root: &Root) -> Vec<Process> {
    let Some(Ok(entries)) = root.join("proc").map(std::fs::read_dir) else {
        return Vec::new();
    };
    let mut found: Vec<Process> = entries
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse().ok()?;
            Some(Process {
                pid,
                comm: comm(root, pid).ok()?,
            })
        })
        .collect();
    found.sort();
    found
}

/// The name of process `pid`.
pub(crate) fn comm(root: &Root, pid: u32) -> Result<String, ReadError> {
    root.read_text(&format!("proc/{pid}/comm"), COMM_LIMIT)
        .map(|c| c.trim_end_matches('\n').to_string())
}

/// The arguments of process `pid`, the program name first.
pub(crate) fn cmdline(root: &Root, pid: u32) -> Result<Vec<String>, ReadError> {
    let raw = root.read(&format!("proc/{pid}/cmdline"), CMDLINE_LIMIT)?;
    Ok(raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect())
}

/// Whether `pid` is a forksafe process (in the pid namespace of the root's `/proc`).
pub(crate) fn is_forksafe(root: &Root, pid: u32) -> bool {
    comm(root, pid).is_ok_and(|c| c == "forksafe")
}

/// Whether the pids under the root's `/proc` are this process's own (the same pid
/// namespace): `<root>/proc/self` names us by our own pid only then.
pub(crate) fn same_pid_namespace(root: &Root) -> bool {
    root.join("proc/self")
        .and_then(|p| std::fs::read_link(p).ok())
        .and_then(|l| l.to_str()?.parse::<u32>().ok())
        == Some(std::process::id())
}

/// When process `pid` started, in clock ticks after boot (`/proc/PID/stat`, field 22): with
/// the pid, it names one process even after the pid is reused.
pub(crate) fn start_time(root: &Root, pid: u32) -> Option<u64> {
    let stat = root
        .read_text(&format!("proc/{pid}/stat"), COMM_LIMIT)
        .ok()?;
    // The name (field 2) is in parentheses and may hold anything: count after the last.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Process `pid`'s pid in the innermost pid namespace it belongs to (`NSpid:`'s last
/// number; a daemon in a container is 1 there).
pub(crate) fn innermost_pid(root: &Root, pid: u32) -> Option<u32> {
    let status = root
        .read_text(&format!("proc/{pid}/status"), CMDLINE_LIMIT)
        .ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .next_back()?
        .parse()
        .ok()
}

/// The inode in a namespace link's target, `pid:[4026531836]`.
fn ns_inode(link: &std::path::Path) -> Result<u64, ReadError> {
    let target = std::fs::read_link(link)?;
    target
        .to_str()
        .and_then(|s| s.split_once(":[")?.1.strip_suffix(']')?.parse().ok())
        .ok_or(ReadError::NotRegular("namespace link"))
}

/// Which namespace of kind `kind` (`pid`, `net`, `uts`, ...) process `pid` is in: the inode
/// `/proc/PID/ns/KIND` names (reading it needs the right to trace the process).
pub(crate) fn namespace(root: &Root, pid: u32, kind: &str) -> Result<u64, ReadError> {
    let link = root
        .join(format!("proc/{pid}/ns/{kind}"))
        .ok_or(ReadError::NotFound)?;
    ns_inode(&link)
}

/// Which namespace of kind `kind` this process is in.
pub(crate) fn own_namespace(kind: &str) -> Option<u64> {
    ns_inode(std::path::Path::new(&format!("/proc/self/ns/{kind}"))).ok()
}

/// A pid forksafe may signal: always a single process (1 to `i32::MAX`), never 0 or a
/// negative number, which `kill(2)` takes as a process group or every process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pid(u32);

impl Pid {
    /// `pid`, when it names one process.
    pub(crate) fn new(pid: u32) -> Option<Pid> {
        (pid >= 1 && i32::try_from(pid).is_ok()).then_some(Pid(pid))
    }

    /// The number.
    pub(crate) fn get(self) -> u32 {
        self.0
    }

    /// Send SIGHUP.
    pub(crate) fn hangup(self) -> nix::Result<()> {
        let raw = i32::try_from(self.0).map_err(|_| nix::errno::Errno::ESRCH)?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(raw),
            nix::sys::signal::Signal::SIGHUP,
        )
    }
}

impl std::fmt::Display for Pid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_is_one_process_by_construction() {
        assert_eq!(Pid::new(1).map(Pid::get), Some(1));
        assert_eq!(Pid::new(4242).map(Pid::get), Some(4242));
        // Refused: kill(0) signals our process group, kill(-1) every process.
        assert_eq!(Pid::new(0), None);
        assert_eq!(Pid::new(u32::MAX), None);
        assert_eq!(Pid::new(1 << 31), None);
    }

    #[test]
    fn processes_are_found_by_name_under_the_root() {
        let t = tempfile::tempdir().unwrap();
        for (pid, comm) in [("777", "tuned"), ("12", "bash"), ("self", "x")] {
            std::fs::create_dir_all(t.path().join("proc").join(pid)).unwrap();
            std::fs::write(
                t.path().join("proc").join(pid).join("comm"),
                format!("{comm}\n"),
            )
            .unwrap();
        }
        std::fs::write(t.path().join("proc/777/cmdline"), b"/usr/sbin/tuned\0-l\0").unwrap();
        let root = Root::new(t.path());
        let names: Vec<(u32, String)> = processes(&root)
            .into_iter()
            .map(|p| (p.pid, p.comm))
            .collect();
        assert_eq!(names, [(12, "bash".into()), (777, "tuned".into())]);
        assert_eq!(
            cmdline(&root, 777).unwrap(),
            ["/usr/sbin/tuned".to_string(), "-l".into()]
        );
        assert!(!is_forksafe(&root, 777));
        // A fixture tree is not our pid namespace.
        assert!(!same_pid_namespace(&root));
    }

    #[test]
    fn our_own_process_is_read_back() {
        let here = Root::new("/");
        let me = std::process::id();
        assert!(same_pid_namespace(&here));
        assert!(start_time(&here, me).is_some());
        assert_eq!(namespace(&here, me, "net").ok(), own_namespace("net"));
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("proc/9")).unwrap();
        // A name with a parenthesis and spaces does not shift the fields.
        let stat = "9 (a) b (c) S 1 9 9 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 31337 1000 10";
        std::fs::write(t.path().join("proc/9/stat"), stat).unwrap();
        std::fs::write(
            t.path().join("proc/9/status"),
            "Name:\tx\nNSpid:\t4242\t1\n",
        )
        .unwrap();
        let tree = Root::new(t.path());
        assert_eq!(start_time(&tree, 9), Some(31337));
        assert_eq!(innermost_pid(&tree, 9), Some(1));
    }
}
