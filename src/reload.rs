//! `forksafe reload`, what `systemctl reload forksafe` runs (`ExecReload=`). It loads the
//! config exactly as the daemon will (the same file and root, read from the daemon's own
//! command line, judged by the same `Settings::load_for_reload`) and, when it does not
//! load, says why with the file and line and exits 2 without disturbing the daemon: the
//! reload fails, and the running config stays. Otherwise it sends SIGHUP and waits until
//! the daemon has reloaded, then reports the daemon's own verdict.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cli::{Parsed, parse_args};
use crate::config::{Settings, Source};
use crate::fsread;
use crate::report::Event;
use crate::root::Root;
use crate::state;

/// How long to wait for the daemon to confirm (under systemd the reload job's own timeout
/// is longer).
const CONFIRM: Duration = Duration::from_secs(30);

fn say(msg: &str) -> u8 {
    log::error!("reload: {msg}");
    1
}

/// The daemon's `--root` and `--config`, from `/proc/PID/cmdline`.
fn daemon_args(pid: u32) -> Result<(PathBuf, Option<PathBuf>), String> {
    let comm = fsread::read_text(Path::new(&format!("/proc/{pid}/comm")), 4096)
        .map_err(|e| format!("no process {pid}: {e}"))?;
    if comm.trim() != "forksafe" {
        return Err(format!("process {pid} is {}, not forksafe", comm.trim()));
    }
    let raw = fsread::read(Path::new(&format!("/proc/{pid}/cmdline")), 64 * 1024)
        .map_err(|e| format!("cannot read the command line of {pid}: {e}"))?;
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .skip(1)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    match parse_args(args) {
        Ok(Parsed::Cli(c)) if c.command == crate::cli::Command::Run => Ok((c.root, c.config)),
        _ => Err(format!("process {pid} is not `forksafe run`")),
    }
}

/// Reload the daemon at `pid` (or the one whose state is under `root`). Exit code: 0
/// reloaded; 2 the config was refused and the running one stays; 1 anything else.
pub fn run(root: &Root, config: Option<&Path>, pid: Option<u32>) -> u8 {
    let pid = match pid.or_else(|| state::read(root).map(|s| s.pid)) {
        Some(p) => p,
        None => return say("no running forksafe daemon found (give its pid with --pid)"),
    };
    let (droot, dconfig) = match daemon_args(pid) {
        Ok(a) => a,
        Err(e) => return say(&e),
    };
    let droot = Root::new(droot);
    // The daemon's own options win: they are what it will reload from.
    let dconfig = dconfig.or_else(|| config.map(Path::to_path_buf));
    let before = state::read(&droot).filter(|s| s.pid == pid);
    let running = match before.as_ref().map(|s| s.config_file.clone()) {
        Some(Some(f)) => Source::File(f),
        Some(None) => Source::Builtin,
        // No state to compare with: judge the file as a fresh load.
        None => Source::Builtin,
    };
    if let Err(e) = Settings::load_for_reload(&droot, dconfig.as_deref(), &running) {
        Event::config_rejected(&e).emit();
        return 2;
    }
    let generation = before.as_ref().map_or(0, |s| s.reloads);
    if let Err(e) = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(0)),
        nix::sys::signal::Signal::SIGHUP,
    ) {
        return say(&format!("cannot signal {pid}: {e}"));
    }
    if before.is_none() {
        log::warn!(
            "reload: signalled {pid}, but it publishes no state under {} to confirm with",
            droot.dir().display()
        );
        return 0;
    }
    let start = Instant::now();
    while start.elapsed() < CONFIRM {
        match state::read(&droot).filter(|s| s.pid == pid) {
            Some(s) if s.reloads > generation => {
                return match s.reload_error {
                    // The file changed between our look and the daemon's: its verdict counts.
                    Some(e) => {
                        log::error!("configuration rejected, the running one stays in force: {e}");
                        2
                    }
                    None => {
                        log::info!("configuration reloaded by the daemon (pid {pid})");
                        0
                    }
                };
            }
            Some(_) => {}
            None => {
                return say(&format!(
                    "the daemon (pid {pid}) went away during the reload"
                ));
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    say(&format!(
        "the daemon (pid {pid}) did not confirm the reload within {CONFIRM:?}"
    ))
}
