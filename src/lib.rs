//! forksafe keeps a Linux machine safe for fork()-based persistence (Redis, Valkey, KeyDB):
//! it enforces `vm.overcommit_memory` and transparent huge pages, repairs drift, and keeps
//! the values across reboots. This crate root only lists the modules, so `tests/` can reach
//! them; `main.rs` is the command line.

#![forbid(unsafe_code)]

pub mod atomic;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dbask;
pub mod doctor;
pub mod enforce;
pub mod fight;
pub mod fsread;
pub mod knob;
pub mod legacy;
pub mod metrics;
pub mod namespaces;
pub mod reload;
pub mod report;
pub mod root;
pub mod state;
pub mod sysctl_d;
