//! The sysctl.d model's unit tests: parsing, the table, and the boot judgement.

use super::*;

fn p(text: &str) -> Vec<Assignment> {
    parse(text.as_bytes(), Path::new("/etc/sysctl.d/t.conf"))
}

fn kv(a: &[Assignment]) -> Vec<(String, Option<String>, usize)> {
    a.iter()
        .map(|a| (a.key.clone(), a.value.clone(), a.line))
        .collect()
}

#[test]
fn parses_like_systemd() {
    let got = p("# comment\n; also\n\n  vm.swappiness = 10  \n\
                 -net.ipv4.conf.all.rp_filter=1\n-kernel.x\nnot an assignment\n\
                 vm/overcommit_memory=\t1\r\nnet.ipv4.conf.eth0/100.rp_filter = 2\n\
                 fs.a = b = c\nkernel.y =\n");
    assert_eq!(
        kv(&got),
        [
            ("vm/swappiness".into(), Some("10".into()), 4),
            ("net/ipv4/conf/all/rp_filter".into(), Some("1".into()), 5),
            ("kernel/x".into(), None, 6),
            ("vm/overcommit_memory".into(), Some("1".into()), 8),
            (
                "net/ipv4/conf/eth0.100/rp_filter".into(),
                Some("2".into()),
                9
            ),
            ("fs/a".into(), Some("b = c".into()), 10),
            ("kernel/y".into(), Some("".into()), 11),
        ]
    );
}

#[test]
fn line_endings_count_like_read_line() {
    // \r\n is one ending; \n\n is two (an empty line); \r alone ends a line; NUL too.
    let got = p("a.b=1\r\nc.d=2\n\ne.f=3\rg.h=4\0i.j=5\n\r\0k.l=6");
    let lines: Vec<usize> = got.iter().map(|a| a.line).collect();
    assert_eq!(lines, [1, 2, 4, 5, 6, 7]);
}

#[test]
fn key_normalisation() {
    assert_eq!(
        normalize_key("vm.overcommit_memory"),
        "vm/overcommit_memory"
    );
    assert_eq!(
        normalize_key("/vm//overcommit_memory/"),
        "vm/overcommit_memory"
    );
    assert_eq!(
        normalize_key("vm..overcommit_memory"),
        "vm/overcommit_memory"
    );
    assert_eq!(
        normalize_key("net/ipv4/conf/eth0.100/x"),
        "net/ipv4/conf/eth0.100/x"
    );
}

#[test]
fn later_wins_explicit_beats_glob_exclusion() {
    let mut all = p("vm.a = 1\nvm.* = 5\n");
    all.extend(parse(
        b"vm.a = 2\nvm.a = 2\n-vm.c\n",
        Path::new("/usr/lib/sysctl.d/z.conf"),
    ));
    let t = Table::from_assignments(all);
    let a = t.effective("vm/a").unwrap();
    assert_eq!((a.value.as_deref(), a.line), (Some("2"), 1));
    assert_eq!(t.effective("vm/b").unwrap().value.as_deref(), Some("5"));
    // Refused by the glob: `-vm.c` excludes it.
    assert!(t.effective("vm/c").is_none());
    assert!(t.effective("kernel/x").is_none());
}

#[test]
fn same_value_keeps_the_earlier_place() {
    // vm.a=1 (f1), glob, vm.a=1 again: the entry keeps its first place and file.
    let t = Table::from_assignments(p("vm.a = 1\nvm.b = 2\nvm.a = 1\n"));
    assert_eq!(t.effective("vm/a").unwrap().line, 1);
}

#[test]
fn overrides_are_what_wins() {
    let ours = Path::new("/etc/sysctl.d/99-zz-forksafe.conf");
    let key = "vm/overcommit_memory";
    let mut all = parse(
        b"vm.overcommit_memory = 0\n",
        Path::new("/usr/lib/sysctl.d/50-a.conf"),
    );
    all.extend(parse(b"vm.overcommit_memory = 1\n", ours));
    all.extend(parse(
        b"vm.* = 2\n",
        Path::new("/etc/sysctl.d/zz-glob.conf"),
    ));
    let t = Table::from_assignments(all.clone());
    // Before ours, or a glob after ours: they lose, so they are shadowed, not overrides.
    let b = t.judge(key, "1", Some(ours));
    assert!(b.right && b.overrides.is_empty(), "{b:?}");
    assert_eq!(b.value.unwrap().file, ours);
    assert_eq!(b.shadowed.len(), 2);

    all.extend(parse(
        b"\nvm.overcommit_memory = 2\n",
        Path::new("/etc/sysctl.d/zz-late.conf"),
    ));
    let t = Table::from_assignments(all.clone());
    let b = t.judge(key, "1", Some(ours));
    assert!(!b.right);
    assert_eq!(b.overrides.len(), 1);
    assert_eq!(
        (b.overrides[0].file.to_str(), b.overrides[0].line),
        (Some("/etc/sysctl.d/zz-late.conf"), 2)
    );

    // zz-a sets 2, then zz-b sets 1 after ours: 1 wins, nothing overrides us, and the
    // file named is the one that wins.
    all.extend(parse(
        b"vm.overcommit_memory = 1\n",
        Path::new("/etc/sysctl.d/zz-m.conf"),
    ));
    let t = Table::from_assignments(all);
    let b = t.judge(key, "1", Some(ours));
    assert!(b.right && b.overrides.is_empty(), "{b:?}");
    assert_eq!(b.value.unwrap().file, Path::new("/etc/sysctl.d/zz-m.conf"));
    assert!(b.shadowed.iter().any(|a| a.file.ends_with("zz-late.conf")));
}

#[test]
fn boot_values_compare_like_runtime_values() {
    // The kernel prints tcp_rmem tab-separated; a tab-separated line equal to the desired
    // value is right, not drift.
    let t = Table::from_assignments(p("net.ipv4.tcp_rmem = 4096\t131072\t6291456\n"));
    let b = t.judge("net/ipv4/tcp_rmem", "4096 131072 6291456", None);
    assert!(
        b.right && b.overrides.is_empty() && b.shadowed.is_empty(),
        "{b:?}"
    );
}

#[test]
fn without_a_dropin_the_winner_is_the_override() {
    let t = Table::from_assignments(parse(
        b"vm.overcommit_memory = 2\n",
        Path::new("/etc/sysctl.d/50-strict.conf"),
    ));
    let b = t.judge("vm/overcommit_memory", "1", None);
    assert!(!b.right);
    assert_eq!(b.overrides.len(), 1);
    assert_eq!(
        b.overrides[0].file,
        Path::new("/etc/sysctl.d/50-strict.conf")
    );
    // Nothing at all: not right, and no file to blame.
    let b = Table::default().judge("vm/overcommit_memory", "1", None);
    assert!(!b.right && b.value.is_none() && b.overrides.is_empty());
}
