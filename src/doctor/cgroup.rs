//! A process's cgroup, found for sure, and its memory limit: the tightest `memory.max` over
//! its cgroup and its ancestors on cgroup v2, or the v1 memory controller's hierarchical
//! limit.
//!
//! `/proc/PID/cgroup` shows a path relative to the cgroup namespace of whoever reads it:
//! doctor in a container with a private one (a pod on cgroup v2, `podman --cgroupns=private`)
//! reads `/../libpod-ID` for a process outside it, while the host's cgroup tree under the
//! root shows real paths. The path is resolved to a directory under the root that really
//! holds the process (its `cgroup.procs` lists it), by looking for a directory that ends the
//! same way when it must; otherwise the answer is unknown with the reason, never another
//! cgroup's limit.

use std::path::Path;

use crate::os::proc;
use crate::os::root::Root;

use super::facts::{field, text, value};

/// At most this many cgroup directories are looked at to resolve one path.
const MAX_DIRS: usize = 20_000;

/// The hierarchy that limits memory: the v1 memory controller when mounted (on a hybrid
/// layout it is the one that limits), else v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hierarchy {
    V1,
    V2,
}

impl Hierarchy {
    /// Where it is mounted, relative to the root.
    fn mount(self) -> &'static str {
        match self {
            Hierarchy::V1 => "sys/fs/cgroup/memory",
            Hierarchy::V2 => "sys/fs/cgroup",
        }
    }
}

/// The line of `/proc/PID/cgroup` for the hierarchy that limits memory, and the path it
/// shows.
pub(crate) fn memory_line(cgroup: &str) -> Option<(Hierarchy, &str)> {
    let lines: Vec<(&str, &str)> = cgroup
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some((ctrls, path.trim()))
        })
        .collect();
    let v1 = lines
        .iter()
        .find(|(c, _)| c.split(',').any(|c| c == "memory"))
        .map(|(_, p)| (Hierarchy::V1, *p));
    let v2 = lines
        .iter()
        .find(|(c, _)| c.is_empty())
        .map(|(_, p)| (Hierarchy::V2, *p));
    v1.or(v2)
}

/// Whether the cgroup directory `dir` (relative to the root) holds `pid`.
#[derive(Debug, PartialEq, Eq)]
enum Holds {
    Yes,
    No,
    /// It cannot be told (no `cgroup.procs`: a fixture tree; or its pids are another pid
    /// namespace's than the root's `/proc`).
    Unverifiable,
}

fn holds(root: &Root, dir: &str, pid: u32, pids_comparable: bool) -> Holds {
    let Some(path) = root.join(dir) else {
        return Holds::No;
    };
    if !path.is_dir() {
        return Holds::No;
    }
    if !pids_comparable {
        return Holds::Unverifiable;
    }
    match text(root, &format!("{dir}/cgroup.procs")) {
        Ok(procs) if procs.lines().any(|l| l.trim() == pid.to_string()) => Holds::Yes,
        Ok(_) => Holds::No,
        Err(_) => Holds::Unverifiable,
    }
}

/// The directories under `mount` whose path ends with `tail` and that hold `pid` (or, when
/// that cannot be told, all that end so), at most [`MAX_DIRS`] looked at.
fn search(root: &Root, mount: &str, tail: &[&str], pid: u32, comparable: bool) -> Vec<String> {
    let mut found = Vec::new();
    let mut queue = vec![mount.to_string()];
    let mut seen = 0;
    while let Some(dir) = queue.pop() {
        seen += 1;
        if seen > MAX_DIRS {
            break;
        }
        let Some(path) = root.join(&dir) else {
            continue;
        };
        let Ok(entries) = std::fs::read_dir(path) else {
            continue;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let sub = format!("{dir}/{name}");
            let ends = Path::new(&sub).ends_with(tail.join("/"));
            if ends && holds(root, &sub, pid, comparable) != Holds::No {
                found.push(sub.clone());
            }
            queue.push(sub);
        }
    }
    found
}

/// The directory, relative to the root, of the cgroup that `/proc/PID/cgroup` shows as
/// `shown` in `hierarchy`.
pub(crate) fn resolve(
    root: &Root,
    pid: u32,
    hierarchy: Hierarchy,
    shown: &str,
) -> Result<String, String> {
    let mount = hierarchy.mount();
    let comps: Vec<&str> = shown.split('/').filter(|c| !c.is_empty()).collect();
    let ups = comps.iter().take_while(|c| **c == "..").count();
    let tail = comps.get(ups..).unwrap_or_default();
    if tail.iter().any(|c| *c == ".." || *c == ".") {
        return Err(format!(
            "/proc/{pid}/cgroup shows a path doctor cannot follow ({shown})"
        ));
    }
    let comparable = proc::same_pid_namespace(root);
    let direct = [mount]
        .into_iter()
        .chain(tail.iter().copied())
        .collect::<Vec<_>>()
        .join("/");
    if ups == 0 && holds(root, &direct, pid, comparable) != Holds::No {
        return Ok(direct);
    }
    // Relative to a cgroup namespace (doctor's own, when it is private): the directory
    // that ends the same way and really holds the process.
    let mut found = if tail.is_empty() {
        Vec::new()
    } else {
        search(root, mount, tail, pid, comparable)
    };
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(format!(
            "/proc/{pid}/cgroup shows {shown}, relative to doctor's cgroup namespace, and no cgroup under /{mount} holds it (run doctor in the host's cgroup namespace: podman --cgroupns=host)"
        )),
        n => Err(format!(
            "/proc/{pid}/cgroup shows {shown}, and {n} cgroups under /{mount} end so; which one holds it cannot be told from here (run doctor in the host's pid and cgroup namespaces)"
        )),
    }
}

/// The cgroup of `pid` (whose `/proc/PID/cgroup` is `cgroup`) as a path from the top of
/// the hierarchy, to name where it runs: resolved when it can be, else as shown.
pub(crate) fn placement(root: &Root, pid: u32, cgroup: &str) -> String {
    let Some((hierarchy, shown)) = memory_line(cgroup) else {
        return cgroup
            .lines()
            .next()
            .and_then(|l| l.splitn(3, ':').nth(2))
            .unwrap_or_default()
            .to_string();
    };
    match resolve(root, pid, hierarchy, shown) {
        Ok(dir) => dir
            .strip_prefix(hierarchy.mount())
            .unwrap_or(&dir)
            .to_string(),
        Err(_) => shown.to_string(),
    }
}

/// The tightest memory limit over the cgroup of `pid` (whose `/proc/PID/cgroup` is
/// `cgroup`) and its ancestors: (kB, the file that sets it). `Ok(None)` when nothing limits
/// it; `Err` says what could not be read or resolved.
pub(crate) fn limit(root: &Root, pid: u32, cgroup: &str) -> Result<Option<(u64, String)>, String> {
    let Some((hierarchy, shown)) = memory_line(cgroup) else {
        return Ok(None);
    };
    let dir = resolve(root, pid, hierarchy, shown)?;
    match hierarchy {
        Hierarchy::V2 => v2_limit(root, &dir),
        Hierarchy::V1 => v1_limit(root, &dir),
    }
}

/// v2: from the process's cgroup up to the root, the smallest memory.max.
fn v2_limit(root: &Root, dir: &str) -> Result<Option<(u64, String)>, String> {
    let mut best: Option<(u64, String)> = None;
    let mut at = Path::new(dir);
    while at.starts_with(Hierarchy::V2.mount()) {
        let file = format!("{}/memory.max", at.display());
        match text(root, &file) {
            Ok(v) => {
                if let Ok(bytes) = v.trim().parse::<u64>() {
                    if best.as_ref().is_none_or(|(b, _)| bytes / 1024 < *b) {
                        best = Some((bytes / 1024, format!("/{file}")));
                    }
                }
            }
            Err(e) if e.is_not_found() => {} // no memory controller at this level
            Err(e) => return Err(format!("could not read /{file}: {e}")),
        }
        match at.parent() {
            Some(p) => at = p,
            None => break,
        }
    }
    Ok(best)
}

/// v1: memory.stat's hierarchical_memory_limit is the tightest over the chain; name the
/// cgroup whose own limit it is.
fn v1_limit(root: &Root, dir: &str) -> Result<Option<(u64, String)>, String> {
    // v1 writes "unlimited" as a huge number rounded to the page size.
    let limited = |bytes: u64| bytes < (1 << 62);
    let stat = text(root, &format!("{dir}/memory.stat"))
        .map_err(|e| format!("could not read /{dir}/memory.stat: {e}"))?;
    let Some(limit) =
        field(&stat.replace(' ', ":"), "hierarchical_memory_limit").filter(|b| limited(*b))
    else {
        return Ok(None);
    };
    let mut at = Path::new(dir);
    let mut named = format!("/{dir}/memory.stat (hierarchical_memory_limit)");
    while at.starts_with(Hierarchy::V1.mount()) {
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
    Ok(Some((limit / 1024, named)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_line_is_v1_memory_when_mounted_else_v2() {
        let hybrid = "4:memory:/libpod_parent/libpod-abc\n1:cpu:/x\n0::/libpod_parent/libpod-abc\n";
        assert_eq!(
            memory_line(hybrid),
            Some((Hierarchy::V1, "/libpod_parent/libpod-abc"))
        );
        assert_eq!(
            memory_line("0::/system.slice/redis.service\n"),
            Some((Hierarchy::V2, "/system.slice/redis.service"))
        );
        assert_eq!(memory_line("garbage"), None);
    }

    /// A cgroup tree as a live one looks, with cgroup.procs (the test's own pid stands for
    /// the process, so that it is in our pid namespace).
    fn tree(t: &Path, cgroups: &[(&str, u32)]) -> Root {
        for (dir, pid) in cgroups {
            let d = t.join("sys/fs/cgroup").join(dir);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("cgroup.procs"), format!("{pid}\n")).unwrap();
        }
        // So that its pids are ours: <root>/proc/self names us.
        std::fs::create_dir_all(t.join("proc")).unwrap();
        std::os::unix::fs::symlink(std::process::id().to_string(), t.join("proc/self")).unwrap();
        Root::new(t)
    }

    #[test]
    fn a_path_relative_to_a_private_cgroup_namespace_is_resolved_or_unknown() {
        let t = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let root = tree(
            t.path(),
            &[
                ("machine.slice/libpod-aaa.scope", me),
                ("machine.slice/libpod-bbb.scope", 1),
                ("other.slice/libpod-aaa.scope", 2),
            ],
        );
        // The real path: it holds the process.
        assert_eq!(
            resolve(&root, me, Hierarchy::V2, "/machine.slice/libpod-aaa.scope"),
            Ok("sys/fs/cgroup/machine.slice/libpod-aaa.scope".into())
        );
        // Relative to doctor's own namespace: the one directory that ends so and holds it.
        assert_eq!(
            resolve(&root, me, Hierarchy::V2, "/../libpod-aaa.scope"),
            Ok("sys/fs/cgroup/machine.slice/libpod-aaa.scope".into())
        );
        // Refused: a path that exists under the root but does not hold the process.
        let r = resolve(&root, 2, Hierarchy::V2, "/machine.slice/libpod-aaa.scope");
        assert!(r.is_err(), "{r:?}");
        // Refused: nothing holds it: unknown with the reason, never another's limit.
        let e = resolve(&root, 3, Hierarchy::V2, "/../libpod-ccc.scope").unwrap_err();
        assert!(e.contains("relative to doctor's cgroup namespace"), "{e}");
        let e = resolve(&root, me, Hierarchy::V2, "/../a/../b").unwrap_err();
        assert!(e.contains("cannot follow"), "{e}");
    }

    #[test]
    fn the_limit_is_read_from_the_resolved_cgroup_and_its_parents() {
        let t = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let root = tree(
            t.path(),
            &[("kubepods.slice/pod-x.slice/cri-containerd-c.scope", me)],
        );
        let base = t.path().join("sys/fs/cgroup/kubepods.slice");
        std::fs::write(base.join("pod-x.slice/memory.max"), "1073741824\n").unwrap();
        std::fs::write(
            base.join("pod-x.slice/cri-containerd-c.scope/memory.max"),
            "max\n",
        )
        .unwrap();
        let cg = "0::/../../pod-x.slice/cri-containerd-c.scope\n";
        let (kib, file) = limit(&root, me, cg).unwrap().unwrap();
        assert_eq!(kib, 1024 * 1024);
        assert_eq!(file, "/sys/fs/cgroup/kubepods.slice/pod-x.slice/memory.max");
    }
}
