//! Where a database process runs, so a fleet tool can join doctor's output with its
//! inventory: the container runtime and container ID (docker, containerd under
//! Kubernetes, CRI-O, podman), and the Kubernetes pod UID, from its cgroup path; the pod's
//! namespace and name when they can be read inside the container (the mounted
//! service-account namespace file; its hostname, which is the pod's name unless the pod
//! shares the node's UTS namespace). Read through the container's own root with
//! `RESOLVE_IN_ROOT`, capped, and kept only when it looks like a Kubernetes name.

use std::path::Path;

use serde::Serialize;

use crate::os::inroot;
use crate::os::proc;
use crate::os::root::Root;

/// A container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Container {
    /// `docker`, `containerd`, `cri-o`, `podman`, or `cri` (a Kubernetes runtime whose
    /// cgroup names do not say which).
    pub runtime: &'static str,
    /// The full container ID (64 hex digits).
    pub id: String,
}

/// A Kubernetes pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pod {
    /// Its UID, from the cgroup path.
    pub uid: String,
    /// Its namespace, when readable inside the container.
    pub namespace: Option<String>,
    /// Its name, when readable inside the container.
    pub name: Option<String>,
}

/// The database process a check is about, and where it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// Its pid, in the pid namespace of the root's `/proc`.
    pub pid: u32,
    /// Its name (`redis-server`, `valkey-server`, `keydb-server`).
    pub name: String,
    /// The container it runs in, if any.
    pub container: Option<Container>,
    /// The Kubernetes pod it runs in, if any.
    pub pod: Option<Pod>,
}

impl Target {
    /// `pod shop/redis-0, containerd container 0123456789ab`: for the human report.
    pub(crate) fn place(&self) -> Option<String> {
        let pod = self.pod.as_ref().map(|p| match (&p.namespace, &p.name) {
            (Some(ns), Some(name)) => format!("pod {ns}/{name}"),
            (None, Some(name)) => format!("pod {name}"),
            _ => format!("pod uid {}", p.uid),
        });
        let container = self.container.as_ref().map(|c| {
            let short = c.id.get(..12).unwrap_or(&c.id);
            format!("{} container {short}", c.runtime)
        });
        let parts: Vec<String> = [pod, container].into_iter().flatten().collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// 64 lowercase hex digits: a container ID.
fn container_id(s: &str) -> Option<String> {
    (s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then(|| s.to_string())
}

/// The container a cgroup path names, from its deepest component that names one.
pub(crate) fn container(path: &str) -> Option<Container> {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let kube = comps.iter().any(|c| c.starts_with("kubepods"));
    let mut found = None;
    for (i, c) in comps.iter().enumerate() {
        let name = c.strip_suffix(".scope").unwrap_or(c);
        let named = [
            ("docker-", "docker"),
            ("cri-containerd-", "containerd"),
            ("crio-", "cri-o"),
            ("libpod-", "podman"),
        ]
        .iter()
        .find_map(|(prefix, runtime)| {
            Some(Container {
                runtime,
                id: container_id(name.strip_prefix(prefix)?)?,
            })
        });
        // A bare ID (the cgroupfs driver): /docker/ID, /kubepods/.../podUID/ID.
        let bare = container_id(name).map(|id| Container {
            runtime: match i.checked_sub(1).and_then(|p| comps.get(p)) {
                Some(&"docker") => "docker",
                _ if kube => "cri",
                _ => "unknown",
            },
            id,
        });
        if let Some(c) = named.or(bare) {
            found = Some(c);
        }
    }
    found
}

/// The pod UID a cgroup path names: `pod<UID>` (cgroupfs driver) or
/// `kubepods-<qos>-pod<UID with _ for ->.slice` (systemd driver), under `kubepods`.
pub(crate) fn pod_uid(path: &str) -> Option<String> {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    if !comps.iter().any(|c| c.starts_with("kubepods")) {
        return None;
    }
    comps.iter().rev().find_map(|c| {
        let c = c.strip_suffix(".slice").unwrap_or(c);
        let uid = c.strip_prefix("pod").or_else(|| {
            c.starts_with("kubepods")
                .then(|| c.rsplit_once("-pod"))?
                .map(|(_, u)| u)
        })?;
        let uid = uid.replace('_', "-");
        let ok = !uid.is_empty()
            && uid.len() <= 64
            && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        ok.then_some(uid)
    })
}

/// A Kubernetes name (DNS-1123: lowercase letters, digits, `-` and `.`, at most 253), or
/// nothing.
fn kube_name(text: &str) -> Option<String> {
    let name = text.lines().next()?.trim();
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    ok.then(|| name.to_string())
}

/// The first of `files` that reads, inside the root of `pid`, as a Kubernetes name.
fn name_inside(root: &Root, pid: u32, files: &[&str]) -> Option<String> {
    let proc_root = root.join(format!("proc/{pid}/root"))?;
    files.iter().find_map(|f| {
        let bytes = inroot::read(&proc_root, Path::new(f), 4096).ok()?;
        kube_name(&String::from_utf8_lossy(&bytes))
    })
}

/// Where `pid`, named `name`, runs; `cgroup_path` is its cgroup (resolved when it could
/// be, else as `/proc/PID/cgroup` shows it).
pub(crate) fn target(root: &Root, pid: u32, name: &str, cgroup_path: &str) -> Target {
    let pod = pod_uid(cgroup_path).map(|uid| {
        let namespace = name_inside(
            root,
            pid,
            &[
                "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
                "/run/secrets/kubernetes.io/serviceaccount/namespace",
            ],
        );
        // The hostname is the pod's name only in a UTS namespace of its own.
        let own_uts = match (
            proc::namespace(root, pid, "uts"),
            proc::namespace(root, 1, "uts"),
        ) {
            (Ok(a), Ok(b)) => a != b,
            _ => false,
        };
        let name = own_uts
            .then(|| name_inside(root, pid, &["/etc/hostname"]))
            .flatten();
        Pod {
            uid,
            namespace,
            name,
        }
    });
    Target {
        pid,
        name: name.to_string(),
        container: container(cgroup_path),
        pod,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "1ee41836af92af460575764a400e0721d994049e42caf669df06934085950cf6";

    #[test]
    fn runtimes_and_pods_from_cgroup_paths() {
        let c = |p: &str| container(p).map(|c| (c.runtime, c.id));
        let id = ID.to_string();
        // podman (cgroupfs and systemd), docker (both), containerd and CRI-O under kubelet.
        for (path, runtime) in [
            (format!("/libpod_parent/libpod-{ID}"), "podman"),
            (
                format!("/machine.slice/libpod-{ID}.scope/container"),
                "podman",
            ),
            (format!("/docker/{ID}"), "docker"),
            (format!("/system.slice/docker-{ID}.scope"), "docker"),
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6f1c_9a2e_0000_4b6e_8d3c_aa00bb11cc22.slice/cri-containerd-{ID}.scope"
                ),
                "containerd",
            ),
            (
                format!("/kubepods.slice/kubepods-pod6f1c_9a2e.slice/crio-{ID}.scope"),
                "cri-o",
            ),
            (
                format!("/kubepods/burstable/pod6f1c9a2e-0000-4b6e-8d3c-aa00bb11cc22/{ID}"),
                "cri",
            ),
            (format!("/../libpod-{ID}"), "podman"),
        ] {
            assert_eq!(c(&path), Some((runtime, id.clone())), "{path}");
        }
        // Refused: conmon's cgroup is not the container's, a short ID is not an ID.
        assert_eq!(c(&format!("/machine.slice/libpod-conmon-{ID}.scope")), None);
        assert_eq!(c("/docker/abc123"), None);
        assert_eq!(c("/system.slice/redis-server.service"), None);
        assert_eq!(
            pod_uid(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6f1c_9a2e_0000_4b6e_8d3c_aa00bb11cc22.slice/cri-containerd-x.scope"
            ),
            Some("6f1c-9a2e-0000-4b6e-8d3c-aa00bb11cc22".into())
        );
        assert_eq!(
            pod_uid("/kubepods/besteffort/pod6f1c9a2e-0000-4b6e-8d3c-aa00bb11cc22/abc"),
            Some("6f1c9a2e-0000-4b6e-8d3c-aa00bb11cc22".into())
        );
        assert_eq!(
            pod_uid("/kubepods.slice/kubepods-pod1234.slice/x"),
            Some("1234".into())
        );
        // Refused: not under kubepods; not a UID.
        assert_eq!(pod_uid("/user.slice/pod1234"), None);
        assert_eq!(pod_uid("/kubepods.slice/kubepods-besteffort.slice"), None);
    }

    #[test]
    fn names_are_kubernetes_names_or_nothing() {
        assert_eq!(kube_name("redis-0\n"), Some("redis-0".into()));
        assert_eq!(kube_name("shop\n"), Some("shop".into()));
        // Refused: what a container could write to fool a report.
        assert_eq!(kube_name("\u{1b}[31mred\n"), None);
        assert_eq!(kube_name("Redis 0"), None);
        assert_eq!(kube_name(""), None);
        assert_eq!(kube_name(&"a".repeat(254)), None);
    }

    #[test]
    fn the_place_is_said_briefly() {
        let t = Target {
            pid: 7,
            name: "redis-server".into(),
            container: Some(Container {
                runtime: "containerd",
                id: ID.into(),
            }),
            pod: Some(Pod {
                uid: "u".into(),
                namespace: Some("shop".into()),
                name: Some("redis-0".into()),
            }),
        };
        assert_eq!(
            t.place().as_deref(),
            Some("pod shop/redis-0, containerd container 1ee41836af92")
        );
        let bare = Target {
            container: None,
            pod: None,
            ..t
        };
        assert_eq!(bare.place(), None);
    }
}
