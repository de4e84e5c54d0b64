//! The `forksafe` command line: runs the command the arguments name, and maps how it ended
//! to the exit code. Every exit code lives here.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use forksafe::Outcome;

fn main() -> ExitCode {
    let code = match forksafe::run(std::env::args().skip(1)) {
        // Everything in spec (doctor: no check fails); the daemon stopped cleanly; help.
        Outcome::Ok => 0,
        // Something is not in spec or could not be set (doctor: a check failed; reload:
        // the daemon did not confirm; validate: a knob this machine does not have).
        Outcome::NotOk => 1,
        // The config or the command line was refused; nothing was written (reload: the
        // new config was refused and the running one stays).
        Outcome::Refused => 2,
    };
    ExitCode::from(code)
}
