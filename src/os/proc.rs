//! Processes under the root's `/proc`: which run, what they are called, their command
//! lines, and the pid type forksafe signals (a positive pid by construction, so a signal
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
    }
}
