//! The real binary against fixture trees: check's table and JSON, apply, exit codes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;

/// (fixture, arguments, exit code, stdout fragments, stderr fragments)
type Case = (
    &'static str,
    &'static [&'static str],
    i32,
    &'static [&'static str],
    &'static [&'static str],
);

const CASES: &[Case] = &[
    (
        "01-drift",
        &["check"],
        1,
        &[
            "KNOB                                    DESIRED  CURRENT  BOOT   STATUS\n",
            "vm.overcommit_memory                    1        0        unset  drift\n",
            "kernel/mm/transparent_hugepage/defrag   never    madvise  -      drift\n",
            "kernel/mm/transparent_hugepage/enabled  never    always   -      drift\n",
            "vm.overcommit_memory: nothing sets it at boot (no sysctl.d file does; the kernel default stays)\n",
            "drop-in: /etc/sysctl.d/99-zz-forksafe.conf is missing; `forksafe apply` writes it\n",
        ],
        &["using the compiled-in default configuration"],
    ),
    (
        // In spec at runtime, but nothing persists overcommit: boot-drift.
        "02-in-spec",
        &["check"],
        1,
        &[
            "1        1        unset  boot-drift\n",
            "enabled  never    never    -      ok\n",
        ],
        &[],
    ),
    (
        "02-in-spec",
        &["apply"],
        0,
        &["vm.overcommit_memory: already 1"],
        &[],
    ),
    (
        "03-no-thp",
        &["check"],
        1,
        &["kernel/mm/transparent_hugepage/enabled  never    -        -      absent"],
        &[],
    ),
    (
        // manage = false: boot values still judged, from the operator's own sysctl.d file;
        // its tab-separated tcp_rmem equals the desired value (compared like runtime values).
        "04-config",
        &["check"],
        1,
        &[
            "net.ipv4.tcp_rmem                       4096 131072 6291456  4096 131072 6291456  4096 131072 6291456  ok\n",
            "vm.overcommit_memory                    1                    2                    1                    drift\n",
        ],
        &[],
    ),
    (
        // The case: forksafe writes no drop-in, runtime 1, 50-strict.conf sets 2.
        "38-unmanaged-override",
        &["check"],
        1,
        &[
            "vm.overcommit_memory                    1        1        2     boot-drift\n",
            // Said once (check_says_each_fact_once).
            "vm.overcommit_memory: overridden by /etc/sysctl.d/50-strict.conf:1 sets 2\n",
        ],
        &[],
    ),
    (
        // check --now (a readiness probe): the values now are right; the boot is not its
        // business (the table still says it).
        "38-unmanaged-override",
        &["check", "--now"],
        0,
        &["boot-drift"],
        &[],
    ),
    ("01-drift", &["check", "--now"], 1, &["drift"], &[]),
    (
        "04-config",
        &["validate"],
        0,
        &["etc/forksafe/forksafe.toml: accepted: 3 knobs, interval 2s, audit mode"],
        &[],
    ),
    (
        "05-bad-config",
        &["validate"],
        2,
        &[],
        &["forksafe.toml:6:"],
    ),
    (
        // apply --no-persist writes no drop-in, and says the truth about the next boot.
        "38-unmanaged-override",
        &["apply", "--no-persist"],
        1,
        &[
            "vm.overcommit_memory: already 1",
            // stdout says why the exit code is 1.
            "not in spec, so exit 1: vm.overcommit_memory: 1 now, but the next boot does not keep it: /etc/sysctl.d/50-strict.conf:1 sets 2\n",
        ],
        &["vm.overcommit_memory: overridden by /etc/sysctl.d/50-strict.conf:1 sets 2"],
    ),
    (
        "05-bad-config",
        &["check"],
        2,
        &[],
        &[
            "etc/forksafe/forksafe.toml:6: vm.overcommit_memory_typo: the value is empty",
            "nothing was changed",
            "check it with `forksafe validate`",
        ],
    ),
    ("05-bad-config", &["apply"], 2, &[], &["forksafe.toml:6:"]),
    ("05-bad-config", &["run"], 2, &[], &["forksafe.toml:6:"]),
    (
        "01-drift",
        &["--config", "/nonexistent.toml", "check"],
        2,
        &[],
        &["cannot read the config file"],
    ),
    (
        "01-drift",
        &["check", "--bogus"],
        2,
        &[],
        &["unknown option \"--bogus\""],
    ),
    ("01-drift", &[], 2, &[], &["no command given"]),
    (
        "01-drift",
        &["--help"],
        0,
        &["Usage: forksafe", "Exit codes"],
        &[],
    ),
    ("01-drift", &["--version"], 0, &["forksafe 0.1.0"], &[]),
    (
        "01-drift",
        &["help", "check"],
        0,
        &[
            "Usage: forksafe [GLOBAL OPTIONS] check [--json] [--now]",
            "  --now  ",
        ],
        &[],
    ),
    (
        "01-drift",
        &["apply", "--help"],
        0,
        &["Usage: forksafe [GLOBAL OPTIONS] apply [--no-persist]"],
        &[],
    ),
    (
        // Plurals said right: "1 failure", "1 warning".
        "34-doctor-per-size-escape",
        &["doctor"],
        1,
        &["this machine is NOT fork-safe (1 failure, "],
        &[],
    ),
    ("36-doctor-no-swap", &["doctor"], 0, &["(1 warning)\n"], &[]),
    (
        "01-drift",
        &["chek"],
        2,
        &[],
        &["unknown command \"chek\"; did you mean check?"],
    ),
    (
        "01-drift",
        &["check", "--jsn"],
        2,
        &[],
        &["did you mean --json?"],
    ),
];

#[test]
fn exit_codes_and_output() {
    for (fixture, args, code, out, err) in CASES {
        let tree = Tree::new(fixture);
        let before = tree.snapshot();
        let o = tree.run(args);
        let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
        let ctx = format!("{fixture} {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
        assert_eq!(o.status.code(), Some(*code), "{ctx}");
        for f in *out {
            assert!(stdout.contains(f), "stdout lacks {f:?}: {ctx}");
        }
        for f in *err {
            assert!(stderr.contains(f), "stderr lacks {f:?}: {ctx}");
        }
        if args.first() != Some(&"apply") || *code == 2 {
            // check, usage errors and refused configs write nothing.
            assert_eq!(tree.snapshot(), before, "{ctx}");
        }
    }
}

/// check says each fact once: the line that wins at boot is named once, not as what the
/// next boot sets and again as what overrides it.
#[test]
fn check_says_each_fact_once() {
    let tree = Tree::new("38-unmanaged-override");
    let out = text(&tree.run(&["check"]).stdout);
    assert_eq!(count(&out, "50-strict.conf:1"), 1, "{out}");
    // Where no line overrides it, what the next boot does is said (once).
    let tree = Tree::new("01-drift");
    let out = text(&tree.run(&["check"]).stdout);
    assert_eq!(count(&out, "nothing sets it at boot"), 1, "{out}");
}

#[test]
fn check_json() {
    let tree = Tree::new("01-drift");
    let o = tree.run(&["check", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let knobs = v["knobs"].as_array().unwrap();
    assert_eq!(knobs.len(), 3);
    let k = &knobs[0];
    assert_eq!(k["name"], "vm.overcommit_memory");
    assert_eq!(k["kind"], "sysctl");
    assert_eq!(k["path"], tree.path(OVERCOMMIT).display().to_string());
    assert_eq!(k["desired"], "1");
    assert_eq!(k["current"], "0");
    assert_eq!(k["status"], "drift");
    assert_eq!(knobs[2]["name"], "kernel/mm/transparent_hugepage/enabled");
    assert_eq!(knobs[2]["kind"], "sysfs");
    assert_eq!(knobs[2]["current"], "always");

    let tree = Tree::new("03-no-thp");
    let v: serde_json::Value =
        serde_json::from_slice(&tree.run(&["check", "--json"]).stdout).unwrap();
    let absent = &v["knobs"][1];
    assert_eq!(absent["status"], "absent");
    assert_eq!(absent["current"], serde_json::Value::Null);
    assert!(
        absent["error"]
            .as_str()
            .unwrap()
            .contains("does not have this knob")
    );
}

#[test]
fn apply_fixes_drift() {
    for fixture in ["01-drift", "03-no-thp", "04-config"] {
        let tree = Tree::new(fixture);
        let o = tree.run(&["apply"]);
        let expected_code = if fixture == "03-no-thp" { 1 } else { 0 };
        assert_eq!(
            o.status.code(),
            Some(expected_code),
            "{fixture}: {}",
            text(&o.stderr)
        );
        tree.assert_matches_expected();
        // And now check agrees, except for the knobs this kernel lacks.
        assert_eq!(tree.run(&["check"]).status.code(), Some(expected_code));
    }
}

#[test]
fn apply_reports_each_change() {
    let tree = Tree::new("01-drift");
    let o = tree.run(&["apply"]);
    let out = text(&o.stdout);
    assert!(
        out.contains("vm.overcommit_memory: set to 1 (was 0)"),
        "{out}"
    );
    assert!(
        out.contains("kernel/mm/transparent_hugepage/enabled: set to never (was always)"),
        "{out}"
    );
    // And the command that puts everything back, the last change first.
    assert!(
        out.contains(
            "to undo: rm /etc/sysctl.d/99-zz-forksafe.conf; \
             echo always > /sys/kernel/mm/transparent_hugepage/enabled; \
             echo madvise > /sys/kernel/mm/transparent_hugepage/defrag; \
             sysctl -w vm.overcommit_memory=0\n"
        ),
        "{out}"
    );
    // Nothing changed the second time: nothing to undo.
    let out = text(&tree.run(&["apply"]).stdout);
    assert!(!out.contains("to undo"), "{out}");
}

/// A write the kernel (here: the file system) refuses: the other knobs are still enforced,
/// the error says what is likely going on, and the exit code says something is not set.
#[test]
fn apply_with_a_read_only_knob() {
    if !can_unshare() {
        eprintln!(
            "SKIPPED apply_with_a_read_only_knob: needs root and unshare(1) for a private read-only bind mount"
        );
        return;
    }
    let tree = Tree::new("01-drift");
    let vm = tree.path("proc/sys/vm");
    let script = format!(
        "mount --bind {vm} {vm} && mount -o remount,bind,ro {vm} && exec {BIN} --root {root} apply",
        vm = vm.display(),
        root = tree.root().display()
    );
    let o = in_mount_namespace(&script);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(err.contains("likely a container or a sandbox"), "{err}");
    assert_eq!(tree.read(OVERCOMMIT), "0\n");
    assert_eq!(tree.read(&format!("{THP}/enabled")), "never\n");
    assert_eq!(tree.read(&format!("{THP}/defrag")), "never\n");
}

/// A sysfs knob that is a symlink out of /sys is never written.
#[test]
fn symlink_escape_is_refused() {
    let tree = Tree::new("01-drift");
    tree.write("etc/victim", "precious\n");
    tree.write(
        "etc/forksafe/forksafe.toml",
        "[sysfs]\n\"kernel/mm/evil\" = \"never\"\n",
    );
    std::os::unix::fs::symlink("../../../etc/victim", tree.path("sys/kernel/mm/evil")).unwrap();
    let o = tree.run(&["apply"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("outside its tree"), "{err}");
    assert_eq!(tree.read("etc/victim"), "precious\n");
}

/// The drop-in does not depend on which path named the config: `check --config` on an
/// identical copy agrees with what `apply` wrote from the installed one.
#[test]
fn the_dropin_is_the_same_whatever_path_names_the_config() {
    let tree = Tree::new("01-drift");
    tree.write("etc/forksafe/forksafe.toml", forksafe::DEFAULT_CONFIG);
    assert_eq!(tree.run(&["apply"]).status.code(), Some(0));
    let copy = tempfile::tempdir().unwrap();
    let copied = copy.path().join("copy.toml");
    std::fs::write(&copied, forksafe::DEFAULT_CONFIG).unwrap();
    let o = tree.run(&["--config", copied.to_str().unwrap(), "check", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["dropin"]["status"], "ok", "{v:#}");
    assert_eq!(o.status.code(), Some(0), "{v:#}");
}

/// A per-namespace sysctl is refused when forksafe runs in a private namespace: it would
/// set its own copy and report a value the host never got. Run on this machine's real
/// /proc, once as is and once in a private network (and IPC) namespace.
#[test]
fn namespaced_knobs_are_refused_in_a_private_namespace() {
    if !can_unshare() {
        eprintln!(
            "SKIPPED namespaced_knobs_are_refused_in_a_private_namespace: needs root and unshare(1)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("forksafe.toml");
    std::fs::write(
        &cfg,
        "[sysctl]\n\"vm.overcommit_memory\" = 1\n\"net.core.somaxconn\" = 4096\n\
         \"kernel.shmmni\" = 4096\n[sysctl_d]\nmanage = false\n",
    )
    .unwrap();
    let check = |wrap: &[&str]| {
        std::process::Command::new(wrap[0])
            .args(&wrap[1..])
            .arg(BIN)
            .args(["--root", "/", "--config"])
            .arg(&cfg)
            .arg("check")
            .output()
            .unwrap()
    };
    // In the host's namespaces: accepted (check reports, exit 0 or 1, never 2).
    let o = check(&["env"]);
    assert_ne!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let o = check(&["unshare", "-n"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(":3: net.core.somaxconn: it is a per-namespace sysctl and this process runs in a private net namespace"),
        "{err}"
    );
    assert!(err.contains("hostNetwork: true"), "{err}");
    let o = check(&["unshare", "-i"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(":4: kernel.shmmni") && err.contains("private ipc namespace"),
        "{err}"
    );
}

/// A config refused at start is a journal entry like a refused reload: its MESSAGE_ID,
/// CONFIG and CONFIG_LINE (as a number in JSON), so a watcher (the Ansible role) can find it.
#[test]
fn a_config_refused_at_start_has_the_refusals_message_id() {
    let tree = Tree::new("02-in-spec");
    tree.write(
        "etc/forksafe/forksafe.toml",
        "[sysctl]\n\"vm.overcommit_memory\" = 7\n",
    );
    let o = tree.run(&["--log-format", "json", "check"]);
    assert_eq!(o.status.code(), Some(2));
    let line = text(&o.stderr);
    let v: serde_json::Value = serde_json::from_str(line.lines().last().unwrap()).unwrap();
    assert_eq!(v["MESSAGE_ID"], "df099d7d7148455cae35ece8501026a6", "{v}");
    assert_eq!(v["CONFIG_LINE"], 2, "{v}");
    assert!(
        v["msg"]
            .as_str()
            .unwrap()
            .contains("configuration refused, nothing was changed"),
        "{v}"
    );
}
