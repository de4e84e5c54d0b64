//! `forksafe validate` on fixture trees (`--root`): a knob this machine does not have is
//! named, with its line and the nearest one that exists, and exits 1; the absences the
//! README documents as expected (per-size THP before Linux 6.8, THP on a kernel without it)
//! pass with a note. The config is given as Ansible's `validate:` gives it: `--config` on
//! a file in a private directory. Also once on this machine's real kernel (read only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;

const THP_KNOBS: &str = "[sysfs]\n\"kernel/mm/transparent_hugepage/enabled\" = \"never\"\n\
    \"kernel/mm/transparent_hugepage/defrag\" = \"never\"\n";

/// (fixture, config, exit code, stdout fragments, stderr fragments)
type Case = (
    &'static str,
    &'static str,
    i32,
    &'static [&'static str],
    &'static [&'static str],
);

const CASES: &[Case] = &[
    (
        "02-in-spec",
        forksafe::DEFAULT_CONFIG,
        0,
        &["source: accepted: 3 knobs, interval 1s, repair mode"],
        &[],
    ),
    (
        // The typo: named, with its line and the knob that exists.
        "01-drift",
        "[sysctl]\nvm.overcommit_memry = 1\n",
        1,
        &["source: loads, but names 1 knob this machine does not have: vm.overcommit_memry"],
        &[
            "source:2: vm.overcommit_memry: no such knob on this machine (/proc/sys/vm/overcommit_memry does not exist); did you mean vm.overcommit_memory?",
        ],
    ),
    (
        "01-drift",
        "[sysfs]\n\"kernel/mm/transparent_hugepage/enabeld\" = \"never\"\n",
        1,
        &["names 1 knob this machine does not have"],
        &[
            "source:2: kernel/mm/transparent_hugepage/enabeld: no such knob on this machine (/sys/kernel/mm/transparent_hugepage/enabeld does not exist); did you mean kernel/mm/transparent_hugepage/enabled?",
        ],
    ),
    (
        // Nothing near it: named, no guess.
        "01-drift",
        "[sysctl]\n\"vm.overcommit_memory\" = 1\n\"vm.qqqqqqqq\" = 1\n",
        1,
        &["names 1 knob this machine does not have: vm.qqqqqqqq"],
        &[
            "source:3: vm.qqqqqqqq: no such knob on this machine (/proc/sys/vm/qqqqqqqq does not exist)\n",
        ],
    ),
    (
        // Per-size THP on a kernel without per-size THP (before 6.8): documented, passes.
        "01-drift",
        "[sysfs]\n\"kernel/mm/transparent_hugepage/enabled\" = \"never\"\n\
         \"kernel/mm/transparent_hugepage/hugepages-2048kB/enabled\" = \"never\"\n",
        0,
        &[
            "source:3: kernel/mm/transparent_hugepage/hugepages-2048kB/enabled is not on this machine, as expected: this kernel has no per-size THP settings (they came with Linux 6.8)",
            "source: accepted: 2 knobs",
        ],
        &[],
    ),
    (
        // A kernel with per-size THP: a size it does not have is a typo.
        "34-doctor-per-size-escape",
        "[sysfs]\n\"kernel/mm/transparent_hugepage/hugepages-2049kB/enabled\" = \"never\"\n",
        1,
        &["names 1 knob this machine does not have"],
        &["did you mean kernel/mm/transparent_hugepage/hugepages-2048kB/enabled?"],
    ),
    (
        "34-doctor-per-size-escape",
        "[sysfs]\n\"kernel/mm/transparent_hugepage/hugepages-2048kB/enabled\" = \"never\"\n",
        0,
        &["source: accepted: 1 knob"],
        &[],
    ),
    (
        // A kernel without THP: the default config still validates.
        "03-no-thp",
        forksafe::DEFAULT_CONFIG,
        0,
        &[
            "kernel/mm/transparent_hugepage/enabled is not on this machine, as expected: this kernel has no transparent huge pages at all",
            "source: accepted: 3 knobs",
        ],
        &[],
    ),
    (
        // A per-namespace sysctl: accepted, with a note that where the daemon runs decides.
        "04-config",
        "[sysctl]\n\"net.ipv4.tcp_rmem\" = \"4096 131072 6291456\"\n",
        0,
        &[
            "source:2: net.ipv4.tcp_rmem belongs to a network namespace (the shipped unit runs in a private one: PrivateNetwork=yes; so does a pod without hostNetwork): the daemon holds it only when it runs in the host's",
            "source: accepted: 1 knob",
        ],
        &[],
    ),
    (
        // Refused is still 2, whatever the machine has.
        "01-drift",
        "[sysctl]\nvm.overcommit_memory = 7\n",
        2,
        &[],
        &["source:2: vm.overcommit_memory"],
    ),
];

/// The config where Ansible's `validate:` puts it: a file of mode 0600 in a private
/// (0700) temporary directory, named with `--config`.
fn ansible_style(config: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let file = dir.path().join("source");
    std::fs::write(&file, config).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    (dir, file)
}

#[test]
fn validate_names_knobs_this_machine_lacks() {
    for (fixture, config, code, out, err) in CASES {
        let tree = Tree::new(fixture);
        let (_dir, file) = ansible_style(config);
        let before = tree.snapshot();
        let o = tree.run(&["--config", file.to_str().unwrap(), "validate"]);
        let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
        let ctx = format!("{fixture} {config:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
        assert_eq!(o.status.code(), Some(*code), "{ctx}");
        for f in *out {
            assert!(stdout.contains(f), "stdout lacks {f:?}: {ctx}");
        }
        for f in *err {
            assert!(stderr.contains(f), "stderr lacks {f:?}: {ctx}");
        }
        if *code == 0 {
            assert!(stderr.is_empty(), "{ctx}");
        }
        assert_eq!(tree.snapshot(), before, "validate wrote: {ctx}");
    }
}

/// This machine's own kernel: the default config (and the THP knobs) pass, a typo does not.
#[test]
fn validate_on_the_real_kernel() {
    let run = |config: &str| {
        let (_dir, file) = ansible_style(config);
        std::process::Command::new(BIN)
            .args(["--root", "/", "--config"])
            .arg(&file)
            .arg("validate")
            .output()
            .unwrap()
    };
    let o = run(&format!(
        "[sysctl]\n\"vm.overcommit_memory\" = 1\n{THP_KNOBS}"
    ));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = run("[sysctl]\nvm.overcommit_memry = 1\n");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    assert!(
        text(&o.stderr).contains("did you mean vm.overcommit_memory?"),
        "{}",
        text(&o.stderr)
    );
}
