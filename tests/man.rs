//! The man pages as `man -l` renders them: no groff warning, and in forksafe(8) each
//! command's tag on one line, exactly as `forksafe help COMMAND` gives its usage (a `.TP`
//! tag split over two input lines renders half in the tag and half in the text).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

fn page(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging/man")
        .join(name)
}

/// `man -l PAGE` at `width` columns: (stdout, stderr with groff's warnings), or `None`
/// without man(1) (tests/run-all and .ci/run install man-db).
fn render(page: &Path, width: u32) -> Option<(String, String)> {
    let o = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(page)
        .env("MANWIDTH", width.to_string())
        .env("MANPAGER", "cat")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .ok()?;
    assert!(
        o.status.success(),
        "man -l {}: {}",
        page.display(),
        text(&o.stderr)
    );
    Some((text(&o.stdout), text(&o.stderr)))
}

/// `check [--json] [--now]`, from `forksafe help check`.
fn usage_of(name: &str) -> String {
    let o = Command::new(BIN).args(["help", name]).output().unwrap();
    let out = text(&o.stdout);
    let line = out.lines().next().unwrap();
    line.strip_prefix("Usage: forksafe [GLOBAL OPTIONS] ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_string()
}

/// The commands `forksafe --help` lists.
fn commands() -> Vec<String> {
    let o = Command::new(BIN).arg("--help").output().unwrap();
    let out = text(&o.stdout);
    let listing = out.split_once("Commands:\n").unwrap().1;
    let listing = listing.split_once("\n\n").unwrap().0;
    listing
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[test]
fn the_man_pages_render_without_warnings_and_with_whole_tags() {
    let Some((_, warnings)) = render(&page("forksafe.8"), 80) else {
        eprintln!(
            "SKIPPED the_man_pages_render_without_warnings_and_with_whole_tags: no man(1) (apt-get install man-db)"
        );
        return;
    };
    assert!(warnings.is_empty(), "forksafe.8: {warnings}");
    let (five, warnings) = render(&page("forksafe.toml.5"), 80).unwrap();
    assert!(warnings.is_empty(), "forksafe.toml.5: {warnings}");
    assert!(five.contains("[sysctl_d]"), "{five}");
    // Wide enough that no tag is folded: a whole tag is then one line.
    let (eight, _) = render(&page("forksafe.8"), 200).unwrap();

    let section = eight
        .split_once("\nCOMMANDS\n")
        .unwrap()
        .1
        .split_once("\nOPTIONS\n")
        .unwrap()
        .0;
    let names = commands();
    assert_eq!(names.len(), 6, "{names:?}");
    for name in names.iter().map(String::as_str).chain(["help"]) {
        let tag = if name == "help" {
            "help [COMMAND]".to_string()
        } else {
            usage_of(name)
        };
        // A tag is a line of its own, indented 7 columns, the whole usage on it.
        let found = section.lines().any(|l| {
            l.strip_prefix("       ")
                .is_some_and(|t| t.trim_end() == tag)
        });
        assert!(found, "no whole tag {tag:?} in forksafe(8):\n{section}");
    }
}
