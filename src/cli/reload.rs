//! `forksafe reload`, what `systemctl reload forksafe` runs (`ExecReload=`). It loads the
//! config exactly as the daemon will (the same file and root, read from the daemon's own
//! command line, judged by the same `Settings::load_for_reload`) and, when it does not
//! load, says why with the file and line and ends [`Outcome::Refused`] without disturbing
//! the daemon: the reload fails, and the running config stays. Otherwise it sends SIGHUP
//! and waits until the daemon has reloaded, then reports the daemon's own verdict: it ends
//! [`Outcome::Ok`] only on the daemon's word that the new config is in force.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::{Settings, Source};
use crate::os::proc::{self, Pid};
use crate::os::root::Root;
use crate::published;

use super::args::{Command, Outcome, Parsed, parse_args};

/// How long to wait for the daemon to confirm (under systemd the reload job's own timeout
/// is longer).
const CONFIRM: Duration = Duration::from_secs(30);

fn failed(msg: &str) -> Outcome {
    log::error!("reload: {msg}");
    Outcome::NotOk
}

/// The daemon's `--root` and `--config`, from its own command line.
fn daemon_args(pid: Pid) -> Result<(PathBuf, Option<PathBuf>), String> {
    let here = Root::new("/");
    let comm = proc::comm(&here, pid.get()).map_err(|e| format!("no process {pid}: {e}"))?;
    if comm != "forksafe" {
        return Err(format!("process {pid} is {comm}, not forksafe"));
    }
    let args = proc::cmdline(&here, pid.get())
        .map_err(|e| format!("cannot read the command line of {pid}: {e}"))?;
    match parse_args(args.into_iter().skip(1)) {
        Ok(Parsed::Cli(c)) if c.command == Command::Run => Ok((c.root, c.config)),
        _ => Err(format!("process {pid} is not `forksafe run`")),
    }
}

/// Reload the daemon at `pid` (or the one whose state is under `root`). `config` is this
/// command's own `--config`: it is not the daemon's, and is not used.
pub(super) fn run(root: &Root, config: Option<&Path>, pid: Option<Pid>) -> Outcome {
    let pid = match pid.or_else(|| published::read(root).and_then(|s| Pid::new(s.pid))) {
        Some(p) => p,
        None => return failed("no running forksafe daemon found (give its pid with --pid)"),
    };
    let (droot, dconfig) = match daemon_args(pid) {
        Ok(a) => a,
        Err(e) => return failed(&e),
    };
    if let Some(ours) = config.filter(|c| Some(*c) != dconfig.as_deref()) {
        log::warn!(
            "reload: --config {} is not the daemon's; it reloads what it was started with",
            ours.display()
        );
    }
    let droot = Root::new(droot);
    let before = published::read(&droot).filter(|s| s.pid == pid.get());
    let running = match before.as_ref().map(|s| s.config_file.clone()) {
        Some(Some(f)) => Source::File(f),
        Some(None) => Source::Builtin,
        // No state to compare with: judge the file as a fresh load.
        None => Source::Builtin,
    };
    if let Err(e) = Settings::load_for_reload(&droot, dconfig.as_deref(), &running) {
        e.rejected().emit();
        return Outcome::Refused;
    }
    let generation = before.as_ref().map_or(0, |s| s.reloads);
    if let Err(e) = pid.hangup() {
        return failed(&format!("cannot signal {pid}: {e}"));
    }
    if before.is_none() {
        // Only the daemon's own word is a yes.
        return failed(&format!(
            "signalled {pid}, but it publishes no state under {} (is {} writable?): whether \
             it reloaded cannot be confirmed; its journal says",
            droot.dir().display(),
            published::PATH
        ));
    }
    confirm(&droot, pid, generation)
}

/// Wait for the daemon's verdict on the reload after `generation`.
fn confirm(root: &Root, pid: Pid, generation: u64) -> Outcome {
    let start = Instant::now();
    while start.elapsed() < CONFIRM {
        match published::read(root).filter(|s| s.pid == pid.get()) {
            Some(s) if s.reloads > generation => {
                return match s.reload_error {
                    // The file changed between our look and the daemon's: its verdict counts.
                    Some(e) => {
                        log::error!("configuration rejected, the running one stays in force: {e}");
                        Outcome::Refused
                    }
                    None => {
                        log::info!("configuration reloaded by the daemon (pid {pid})");
                        Outcome::Ok
                    }
                };
            }
            Some(_) => {}
            None => {
                return failed(&format!(
                    "the daemon (pid {pid}) went away during the reload"
                ));
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    failed(&format!(
        "the daemon (pid {pid}) did not confirm the reload within {CONFIRM:?}"
    ))
}
