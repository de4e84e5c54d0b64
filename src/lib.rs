//! forksafe keeps a Linux machine safe for fork()-based persistence (Redis, Valkey, KeyDB):
//! it enforces `vm.overcommit_memory` and transparent huge pages, repairs drift, and keeps
//! the values across reboots.
//!
//! The house, from the ground up; a module imports only from the ones above it in this
//! list, and data flows one way: settings → survey → step → report.
//! - [`words`]: how counts, durations and values are said in sentences (imports nothing);
//! - [`os`]: touches the machine and knows no knob (the root, capped reads, atomic writes,
//!   errno classes, processes, namespaces, the journal and sd_notify);
//! - [`config`] and [`knob`]: the validated settings, and one kernel setting;
//! - [`sysctl_d`]: systemd-sysctl's rules, the next boot's values, our drop-in;
//! - [`neighbours`]: who else sets the knobs (rc.local, units, cron, GRUB, tuned);
//! - [`enforce`]: the one step and the survey every command shares;
//! - [`published`]: what the running daemon publishes for the other commands;
//! - [`daemon`] and [`doctor`]: the two products;
//! - [`cli`]: the command line. `main.rs` maps its outcome to the exit code.
//!
//! Only what `main` and the tests need is public.

#![forbid(unsafe_code)]

mod cli;
mod config;
mod daemon;
mod doctor;
mod enforce;
mod knob;
mod neighbours;
mod os;
mod prometheus;
mod published;
mod sysctl_d;
mod words;

pub use cli::{Outcome, run};
pub use config::{DEFAULT_CONFIG, Settings, Source};
pub use doctor::ask::Answers;
pub use doctor::db::judge;
pub use doctor::identity::{Container, Pod, Target};
pub use doctor::listen::{parse_tcp, parse_unix};
pub use doctor::resp::{Reply, parse_info, read_reply};
pub use doctor::{ForkNow, Verdict};
pub use knob::{Kind, Knob, WRITE_TRIES, normalize, sysctl_key_to_path};
pub use os::root::Root;
pub use sysctl_d::{Table, glob_match, normalize_key, parse};
