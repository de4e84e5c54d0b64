//! sysctl.d rules on fixture trees (one per rule), through the real binary: `apply` writes
//! the drop-in, then `check --json` must name the boot value and what overrides it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;
use serde_json::Value;

const OURS: &str = "/etc/sysctl.d/99-zz-forksafe.conf";

struct Case {
    fixture: &'static str,
    /// Exit codes of apply, then check.
    exits: (i32, i32),
    status: &'static str,
    /// (file, line, value) the next boot applies; None: nothing sets it.
    boot: Option<(&'static str, u64, &'static str)>,
    /// (file, line) of each override.
    overrides: &'static [(&'static str, u64)],
    /// (file, line) of each differing assignment that loses to ours.
    shadowed: &'static [(&'static str, u64)],
    dropin: &'static str,
}

const CASES: &[Case] = &[
    Case {
        fixture: "10-masked-by-dev-null",
        exits: (0, 0),
        status: "ok",
        boot: Some((OURS, 3, "1")),
        overrides: &[],
        dropin: "ok",
        shadowed: &[],
    },
    Case {
        fixture: "11-masked-by-name",
        exits: (0, 0),
        status: "ok",
        boot: Some((OURS, 3, "1")),
        overrides: &[],
        dropin: "ok",
        shadowed: &[],
    },
    Case {
        fixture: "12-order-across-dirs",
        exits: (1, 1),
        status: "boot-drift",
        boot: Some(("/usr/lib/sysctl.d/zzz.conf", 3, "0")),
        overrides: &[("/usr/lib/sysctl.d/zzz.conf", 3)],
        dropin: "ok",
        // /etc/sysctl.d/10-early.conf is read before ours: it loses.
        shadowed: &[("/etc/sysctl.d/10-early.conf", 1)],
    },
    Case {
        fixture: "13-glob-loses-to-explicit",
        exits: (0, 0),
        status: "ok",
        boot: Some((OURS, 3, "1")),
        overrides: &[],
        dropin: "ok",
        // Globs never beat an explicit key, even read after it.
        shadowed: &[
            ("/etc/sysctl.d/zz-glob.conf", 1),
            ("/etc/sysctl.d/zz-glob.conf", 2),
        ],
    },
    Case {
        fixture: "14-exclusion",
        exits: (1, 1),
        status: "boot-drift",
        boot: None,
        overrides: &[("/usr/lib/sysctl.d/zzz-exclude.conf", 2)],
        dropin: "ok",
        shadowed: &[],
    },
    Case {
        fixture: "15-syntax",
        exits: (1, 1),
        status: "boot-drift",
        boot: Some(("/etc/sysctl.d/zz-syntax.conf", 3, "2")),
        overrides: &[("/etc/sysctl.d/zz-syntax.conf", 3)],
        dropin: "ok",
        shadowed: &[],
    },
    Case {
        fixture: "16-dash-prefix",
        exits: (1, 1),
        status: "boot-drift",
        boot: Some(("/etc/sysctl.d/zz-dash.conf", 1, "0")),
        overrides: &[("/etc/sysctl.d/zz-dash.conf", 1)],
        dropin: "ok",
        shadowed: &[],
    },
    Case {
        fixture: "17-foreign-dropin",
        exits: (1, 1),
        status: "ok",
        boot: Some((OURS, 1, "1")),
        overrides: &[],
        dropin: "foreign",
        shadowed: &[],
    },
    Case {
        fixture: "18-sysctl-conf",
        exits: (0, 0),
        status: "ok",
        boot: Some((OURS, 3, "1")),
        overrides: &[("/etc/sysctl.conf", 2)],
        dropin: "ok",
        shadowed: &[],
    },
    Case {
        fixture: "19-debian-sysctl-conf-link",
        exits: (0, 0),
        status: "ok",
        boot: Some((OURS, 3, "1")),
        overrides: &[("/etc/sysctl.conf", 1)],
        dropin: "ok",
        // systemd reads it as 99-sysctl.conf, just before 99-zz-forksafe.conf.
        shadowed: &[("/etc/sysctl.d/99-sysctl.conf", 1)],
    },
];

/// (file, line) of each assignment in a JSON list.
fn places(list: &Value) -> Vec<(String, u64)> {
    let file_line = |o: &Value| {
        (
            o["file"].as_str().unwrap().to_string(),
            o["line"].as_u64().unwrap(),
        )
    };
    list.as_array().unwrap().iter().map(file_line).collect()
}

fn owned(expected: &[(&str, u64)]) -> Vec<(String, u64)> {
    expected.iter().map(|(f, l)| (f.to_string(), *l)).collect()
}

#[test]
fn sysctl_d_rules() {
    for c in CASES {
        let tree = Tree::new(c.fixture);
        let a = tree.run(&["apply"]);
        let ctx = format!(
            "{}: apply said {}{}",
            c.fixture,
            text(&a.stdout),
            text(&a.stderr)
        );
        assert_eq!(a.status.code(), Some(c.exits.0), "{ctx}");
        let o = tree.run(&["check", "--json"]);
        assert_eq!(o.status.code(), Some(c.exits.1), "{ctx}");
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        let k = &v["knobs"][0];
        let ctx = format!("{ctx}\ncheck: {v:#}");
        assert_eq!(k["name"], "vm.overcommit_memory", "{ctx}");
        assert_eq!(k["status"], c.status, "{ctx}");
        match c.boot {
            Some((file, line, value)) => {
                assert_eq!(k["boot"]["file"], file, "{ctx}");
                assert_eq!(k["boot"]["line"], line, "{ctx}");
                assert_eq!(k["boot"]["value"], value, "{ctx}");
            }
            None => assert_eq!(k["boot"], Value::Null, "{ctx}"),
        }
        assert_eq!(
            places(&k["overrides"]),
            owned(c.overrides),
            "overrides: {ctx}"
        );
        assert_eq!(places(&k["shadowed"]), owned(c.shadowed), "shadowed: {ctx}");
        assert_eq!(v["dropin"]["status"], c.dropin, "{ctx}");
        // The table says the same in words.
        let human = text(&tree.run(&["check"]).stdout);
        for (file, line) in c.overrides {
            assert!(
                human.contains(&format!("overridden by {file}:{line}")),
                "{ctx}\n{human}"
            );
        }
    }
}

#[test]
fn foreign_dropin_is_never_overwritten() {
    let tree = Tree::new("17-foreign-dropin");
    let o = tree.run(&["apply"]);
    assert!(
        text(&o.stderr).contains("without forksafe's header"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(
        tree.read("etc/sysctl.d/99-zz-forksafe.conf"),
        "vm.overcommit_memory = 1\n"
    );
}

#[test]
fn dropin_symlink_is_never_written_through() {
    let tree = Tree::new("02-in-spec");
    tree.write("etc/victim.conf", "precious\n");
    std::fs::create_dir_all(tree.path("etc/sysctl.d")).unwrap();
    std::os::unix::fs::symlink(
        "../victim.conf",
        tree.path("etc/sysctl.d/99-zz-forksafe.conf"),
    )
    .unwrap();
    let o = tree.run(&["apply"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("is a symlink"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(tree.read("etc/victim.conf"), "precious\n");
}

#[test]
fn dropin_is_0644_whatever_the_umask_and_apply_no_persist_writes_none() {
    let tree = Tree::new("01-drift");
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 077 && exec {BIN} --root {} apply",
            tree.root().display()
        ))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(tree.path("etc/sysctl.d/99-zz-forksafe.conf"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
    // No temp file left behind.
    let names: Vec<_> = std::fs::read_dir(tree.path("etc/sysctl.d"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");

    // --no-persist: the knobs are set now, no drop-in is written, and since no sysctl.d
    // file sets overcommit the next boot will not keep it: said, and exit 1.
    let tree = Tree::new("01-drift");
    let o = tree.run(&["apply", "--no-persist"]);
    assert!(!tree.path("etc/sysctl.d").exists());
    assert_eq!(tree.read(OVERCOMMIT), "1\n");
    assert!(
        text(&o.stderr).contains("vm.overcommit_memory: nothing sets it at boot"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
}

/// What forksafe cannot read it does not call fine: a sysctl.d file over the read cap, or
/// one it cannot read, that sorts after the line that wins (or could set the key where no
/// explicit line wins) makes the next boot unknown: `check` exits 1 naming the file. One
/// that sorts before an explicit winner cannot change it, and is judged.
#[test]
fn what_forksafe_cannot_read_makes_the_next_boot_unknown() {
    let big = format!("vm.overcommit_memory = 0\n{}", "# pad\n".repeat(200_000));
    let tree = Tree::new("02-in-spec");
    tree.run(&["apply"]);
    tree.write("etc/sysctl.d/zz-big.conf", &big);
    let o = tree.run(&["check", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let oc = &v["knobs"][0];
    assert_eq!(oc["status"], "boot-unknown", "{v:#}");
    assert!(
        oc["boot_unknown"]
            .as_str()
            .unwrap()
            .contains("/etc/sysctl.d/zz-big.conf: too large"),
        "{v:#}"
    );
    let human = text(&tree.run(&["check"]).stdout);
    assert!(human.contains("boot-unknown"), "{human}");
    assert!(human.contains("the next boot cannot be judged"), "{human}");
    // `check --now` judges the values now only.
    assert_eq!(tree.run(&["check", "--now"]).status.code(), Some(0));
    // Before the drop-in: the drop-in's explicit line wins whatever it says.
    std::fs::rename(
        tree.path("etc/sysctl.d/zz-big.conf"),
        tree.path("etc/sysctl.d/10-big.conf"),
    )
    .unwrap();
    let o = tree.run(&["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));
}

/// File names are bytes, as systemd-sysctl sorts and reads them: a name that is not UTF-8
/// is read (and judged), two names that differ only in invalid bytes are two files, and
/// they sort by byte.
#[test]
fn file_names_are_bytes() {
    use std::os::unix::ffi::OsStrExt;
    let tree = Tree::new("02-in-spec");
    tree.run(&["apply"]);
    let name = |b: &[u8]| {
        tree.path("etc/sysctl.d")
            .join(std::ffi::OsStr::from_bytes(b))
    };
    std::fs::write(name(b"zz-\xfe.conf"), "vm.overcommit_memory = 2\n").unwrap();
    std::fs::write(name(b"zz-\xff.conf"), "vm.overcommit_memory = 0\n").unwrap();
    let o = tree.run(&["check", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let oc = &v["knobs"][0];
    assert_eq!(oc["status"], "boot-drift", "{v:#}");
    // \xff sorts after \xfe: its 0 is what the next boot sets.
    assert_eq!(oc["boot"]["value"], "0", "{v:#}");
    assert!(
        oc["boot"]["file"]
            .as_str()
            .unwrap()
            .starts_with("/etc/sysctl.d/zz-"),
        "{v:#}"
    );
    assert_eq!(oc["shadowed"].as_array().unwrap().len(), 1, "{v:#}");
}

/// The root is a jail for links: an absolute link under `--root` is followed inside the
/// root (as on the host it belongs to), and a `/etc/sysctl.d` that is an absolute link
/// never makes `apply` write outside the root.
#[test]
fn absolute_links_resolve_inside_the_root() {
    let tree = Tree::new("01-drift");
    let outside = tempfile::tempdir().unwrap();
    // /etc/sysctl.d -> /etc/sysctl.real (absolute): inside the root, never the host's.
    std::fs::create_dir_all(tree.path("etc/sysctl.real")).unwrap();
    std::os::unix::fs::symlink("/etc/sysctl.real", tree.path("etc/sysctl.d")).unwrap();
    let o = tree.run(&["apply"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(tree.path("etc/sysctl.real/99-zz-forksafe.conf").is_file());
    // A link to somewhere outside, by an absolute path that exists on this machine: taken
    // inside the root, where it does not exist; nothing is written outside.
    let tree = Tree::new("01-drift");
    std::fs::create_dir_all(tree.path("etc")).unwrap();
    std::os::unix::fs::symlink(outside.path(), tree.path("etc/sysctl.d")).unwrap();
    tree.run(&["apply"]);
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    // A sysctl.d file that is an absolute link to /etc/sysctl.conf reads the root's.
    let tree = Tree::new("02-in-spec");
    tree.run(&["apply"]);
    tree.write("etc/sysctl.conf", "vm.overcommit_memory = 2\n");
    std::os::unix::fs::symlink("/etc/sysctl.conf", tree.path("etc/sysctl.d/zz-sysctl.conf"))
        .unwrap();
    let o = tree.run(&["check", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["knobs"][0]["boot"]["value"], "2", "{v:#}");
}
