//! A process's memory limit from its cgroup: the tightest `memory.max` over its cgroup and
//! its ancestors on cgroup v2, or the v1 memory controller's hierarchical limit.

use std::path::Path;

use crate::os::root::Root;

use super::facts::{field, text, value};

/// The tightest memory limit over a process's cgroup and its ancestors: (kB, the file that
/// sets it). `Ok(None)` when nothing limits it.
pub(crate) fn limit(root: &Root, cgroup: &str) -> Result<Option<(u64, String)>, String> {
    // v1 writes "unlimited" as a huge number rounded to the page size.
    let limited = |bytes: u64| bytes < (1 << 62);
    // On a hybrid layout the v1 memory controller, when mounted, is the one that limits.
    let lines: Vec<(&str, &str)> = cgroup
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some((ctrls, path.trim().trim_start_matches('/')))
        })
        .collect();
    let v1 = lines
        .iter()
        .find(|(c, _)| c.split(',').any(|c| c == "memory"));
    let v2 = lines.iter().find(|(c, _)| c.is_empty());
    if let Some(&(ctrls, path)) = v1.or(v2) {
        if ctrls.is_empty() {
            // v2: walk from the process's cgroup up to the root; the smallest memory.max.
            let mut best: Option<(u64, String)> = None;
            let mut dir = Path::new(path);
            loop {
                let file = format!("sys/fs/cgroup/{}/memory.max", dir.display()).replace("//", "/");
                match text(root, &file) {
                    Ok(v) => {
                        if let Ok(bytes) = v.trim().parse::<u64>() {
                            if best.as_ref().is_none_or(|(b, _)| bytes / 1024 < *b) {
                                best = Some((bytes / 1024, format!("/{file}")));
                            }
                        }
                    }
                    Err(e) if e.is_not_found() => {} // no memory controller at this level
                    Err(e) => return Err(format!("/{file}: {e}")),
                }
                match dir.parent() {
                    Some(p) if !dir.as_os_str().is_empty() => dir = p,
                    _ => break,
                }
            }
            return Ok(best);
        }
        if ctrls.split(',').any(|c| c == "memory") {
            // v1: memory.stat's hierarchical_memory_limit is the tightest over the chain;
            // name the cgroup whose own limit it is.
            let dir = format!("sys/fs/cgroup/memory/{path}").replace("//", "/");
            let stat = text(root, &format!("{dir}/memory.stat"))
                .map_err(|e| format!("/{dir}/memory.stat: {e}"))?;
            let Some(limit) =
                field(&stat.replace(' ', ":"), "hierarchical_memory_limit").filter(|b| limited(*b))
            else {
                return Ok(None);
            };
            let mut at = Path::new(&dir);
            let mut named = format!("/{dir}/memory.stat (hierarchical_memory_limit)");
            while at.starts_with("sys/fs/cgroup/memory") {
                let own = value(root, &format!("{}/memory.limit_in_bytes", at.display()))
                    .and_then(|v| v.parse::<u64>().ok());
                if own == Some(limit) {
                    named = format!("/{}/memory.limit_in_bytes", at.display());
                    break;
                }
                match at.parent() {
                    Some(p) => at = p,
                    None => break,
                }
            }
            return Ok(Some((limit / 1024, named)));
        }
    }
    Ok(None)
}
