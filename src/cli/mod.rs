//! The command line: each command run to its [`Outcome`]; `main` turns an outcome into the
//! exit code. The grammar is in [`args`], what `check`, `apply` and `doctor` print in
//! [`check`], `forksafe validate` in [`validate`], `forksafe reload` in [`reload`], and
//! "did you mean" in [`spelling`].

use crate::config::{CONFIG_PATH, ConfigError, Settings, Source};
use crate::os::report;
use crate::os::root::Root;

mod args;
mod check;
mod reload;
mod spelling;
mod validate;

pub use args::Outcome;
use args::{Command, Parsed, parse_args};

/// Run the command line `args` (without the program name).
pub fn run(args: impl IntoIterator<Item = String>) -> Outcome {
    let cli = match parse_args(args) {
        Ok(Parsed::Cli(cli)) => cli,
        Ok(Parsed::Print(text)) => {
            print!("{text}");
            return Outcome::Ok;
        }
        Err(e) => {
            eprintln!("forksafe: {e} (see forksafe --help)");
            return Outcome::Refused;
        }
    };
    report::init(cli.log_format);
    let root = Root::new(&cli.root);
    if cli.command == Command::Reload {
        return reload::run(&root, cli.config.as_deref(), cli.pid);
    }
    let settings = match Settings::load(&root, cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => return config_refused(&e),
    };
    log::debug!("configuration from {}", settings.source);
    if settings.source == Source::Builtin {
        log::info!(
            "no {CONFIG_PATH} under {}: using the compiled-in default configuration",
            root.dir().display()
        );
    }
    match cli.command {
        Command::Check => check::check(&root, &settings, cli.json, cli.now),
        Command::Apply => check::apply(&root, &settings, cli.no_persist),
        Command::Doctor => check::doctor(&root, &settings, &cli),
        Command::Validate => validate::validate(&root, &settings),
        Command::Run => {
            match crate::daemon::run(root, cli.config.as_deref(), settings, cli.watch_via) {
                Ok(()) => Outcome::Ok,
                Err(e) => {
                    log::error!("the daemon failed: {e}");
                    Outcome::NotOk
                }
            }
        }
        Command::Reload => Outcome::Refused, // handled above
    }
}

fn config_refused(e: &ConfigError) -> Outcome {
    e.refused_at_start().emit();
    Outcome::Refused
}
