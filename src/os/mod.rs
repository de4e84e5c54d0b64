//! The ground floor: everything that touches the machine, and nothing that knows what a
//! knob is. The root every path resolves under, capped non-blocking reads, atomic writes,
//! errno classes, processes, namespaces (and connecting inside another process's), files
//! inside another process's root, and the journal / stderr / sd_notify.

pub(crate) mod atomic;
pub(crate) mod errno;
pub(crate) mod fsread;
pub(crate) mod inroot;
pub(crate) mod namespaces;
pub(crate) mod netns;
pub(crate) mod proc;
pub(crate) mod report;
pub(crate) mod root;
