//! The shell-text matcher: which managed knob a line of shell writes, and what value.
//! `echo V > FILE`, `printf V > FILE`, `echo V | tee FILE`, `sysctl [-w] KEY=V`,
//! `sysctl -p [FILE]`, `sysctl --system`, and `sh -c '...'` around any of them. A line that
//! names a managed knob and writes something the matcher cannot read (a variable, a loop) is
//! one write with its value unknown, never guessed. Pure: files named by `sysctl -p` come in
//! through a reader the caller gives.

use std::path::Path;

use crate::config::Settings;
use crate::knob::{Kind, Knob, normalize, sysctl_normalize};
use crate::sysctl_d;

/// What a managed knob is called in the text forksafe scans.
pub(super) struct Target<'a> {
    pub(super) knob: &'a Knob,
    /// The knob file's path on the system (`/proc/sys/vm/overcommit_memory`).
    pub(super) path: String,
    /// The sysctl key, slashed (`vm/overcommit_memory`), for sysctl knobs.
    pub(super) key: Option<String>,
}

pub(super) fn targets(settings: &Settings) -> Vec<Target<'_>> {
    settings
        .knobs
        .iter()
        .map(|k| Target {
            knob: k,
            path: format!("/{}/{}", k.kind().base(), k.rel().display()),
            key: (k.kind() == Kind::Sysctl).then(|| k.rel().to_string_lossy().into_owned()),
        })
        .collect()
}

/// A write the matcher read off a line: which target, and the value (or unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Write {
    pub(super) target: usize,
    pub(super) value: Option<String>,
}

/// What a line that writes some THP file, but not one the matcher can tell, is said to
/// write.
pub(super) const SOME_THP_FILE: &str =
    "a file in /sys/kernel/mm/transparent_hugepage (which one the line does not say)";

/// Split shell text into words, honouring quotes and backslashes; operators (`;`, `&&`,
/// `||`, `|`, `>`, `>>`, `&`, `(`, `)`) become their own words. `$` and backquotes stay in
/// the words (the caller treats such a word as unknown).
pub(super) fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut have = false;
    let mut chars = text.chars().peekable();
    let flush = |cur: &mut String, have: &mut bool, out: &mut Vec<String>| {
        if *have {
            out.push(std::mem::take(cur));
            *have = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                have = true;
                for d in chars.by_ref() {
                    if d == '\'' {
                        break;
                    }
                    cur.push(d);
                }
            }
            '"' => {
                have = true;
                while let Some(d) = chars.next() {
                    match d {
                        '"' => break,
                        '\\' => {
                            if let Some(e) = chars.next() {
                                cur.push(e);
                            }
                        }
                        d => cur.push(d),
                    }
                }
            }
            '\\' => {
                have = true;
                if let Some(e) = chars.next() {
                    cur.push(e);
                }
            }
            '#' if !have => break, // a comment
            c if c.is_whitespace() => flush(&mut cur, &mut have, &mut out),
            ';' | '&' | '|' | '>' | '<' | '(' | ')' => {
                flush(&mut cur, &mut have, &mut out);
                let mut op = c.to_string();
                if let Some(&n) = chars.peek() {
                    if (c == '>' || c == '&' || c == '|') && n == c {
                        op.push(n);
                        chars.next();
                    }
                }
                out.push(op);
            }
            c => {
                have = true;
                cur.push(c);
            }
        }
    }
    flush(&mut cur, &mut have, &mut out);
    out
}

fn is_op(w: &str) -> bool {
    matches!(w, ";" | "&" | "&&" | "|" | "||" | "(" | ")")
}

pub(super) fn unknowable(w: &str) -> bool {
    w.contains('$') || w.contains('`') || w.contains('*') || w.contains('{')
}

/// The commands of a line: runs of words between operators; a `|` is kept as the start of
/// the next command so `tee` knows it was piped into.
fn commands(words: &[String]) -> Vec<(bool, Vec<String>)> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut piped = false;
    for w in words {
        if is_op(w) {
            if !cur.is_empty() {
                out.push((piped, std::mem::take(&mut cur)));
            }
            piped = w == "|";
        } else {
            cur.push(w.clone());
        }
    }
    if !cur.is_empty() {
        out.push((piped, cur));
    }
    out
}

/// The command's own words: without leading `VAR=x`, `sudo`, `exec`, `env`, `nohup`.
fn strip_prefixes(cmd: &[String]) -> &[String] {
    let mut i = 0;
    while let Some(w) = cmd.get(i) {
        let base = w.rsplit('/').next().unwrap_or(w);
        let assignment = w.contains('=') && !w.starts_with('-') && !w.starts_with('/');
        if matches!(base, "sudo" | "exec" | "env" | "nohup" | "command") || assignment {
            i += 1;
        } else {
            break;
        }
    }
    cmd.get(i..).unwrap_or_default()
}

pub(super) fn target_of_path(targets: &[Target], path: &str) -> Option<usize> {
    let clean = path.trim_end_matches('/');
    targets.iter().position(|t| t.path == clean)
}

pub(super) fn target_of_key(targets: &[Target], key: &str) -> Option<usize> {
    let key = sysctl_d::normalize_key(key);
    targets
        .iter()
        .position(|t| t.key.as_deref() == Some(key.as_str()))
}

/// The value `echo`/`printf` would print (escapes such as `\n` dropped), or `None` when it
/// depends on the shell (a variable).
fn printed(cmd: &[String]) -> Option<String> {
    let base = cmd.first()?.rsplit('/').next()?;
    let args: Vec<&String> = cmd
        .get(1..)?
        .iter()
        .take_while(|a| !matches!(a.as_str(), ">" | ">>" | "<"))
        .skip_while(|a| base == "echo" && matches!(a.as_str(), "-n" | "-e" | "-E" | "-ne" | "-en"))
        .collect();
    let text = match base {
        "echo" => args
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        "printf" => (*args.first()?).clone(),
        _ => return None,
    };
    if unknowable(&text) {
        return None;
    }
    Some(normalize(&text.replace("\\n", " ")))
}

/// Every write of a managed knob on one line of shell text. `read_file` reads a file named
/// by `sysctl -p` (under the root).
fn shell_writes(
    text: &str,
    targets: &[Target],
    read_file: &mut dyn FnMut(&str) -> Option<Vec<u8>>,
    depth: u8,
) -> Vec<Write> {
    let mut out = Vec::new();
    let cmds = commands(&words(text));
    let mut last_print: Option<Option<String>> = None;
    for (piped, cmd) in &cmds {
        let cmd = strip_prefixes(cmd);
        let Some(first) = cmd.first() else { continue };
        let base = first.rsplit('/').next().unwrap_or(first);
        // sh -c '...': the script is one word; scan it as a line of its own.
        if matches!(base, "sh" | "bash" | "dash") && depth < 3 {
            if let Some(pos) = cmd.iter().position(|w| w == "-c") {
                if let Some(script) = cmd.get(pos + 1) {
                    out.extend(shell_writes(script, targets, read_file, depth + 1));
                }
            }
            continue;
        }
        // Redirects: `> FILE` or `>> FILE` after echo/printf.
        let value = printed(cmd);
        let is_print = matches!(base, "echo" | "printf");
        let mut i = 0;
        while let Some(w) = cmd.get(i) {
            if (w == ">" || w == ">>") && is_print {
                if let Some(t) = cmd.get(i + 1).and_then(|p| target_of_path(targets, p)) {
                    out.push(Write {
                        target: t,
                        value: value.clone(),
                    });
                }
                i += 2;
                continue;
            }
            i += 1;
        }
        if base == "tee" && *piped {
            for p in cmd.iter().skip(1).filter(|a| !a.starts_with('-')) {
                if let Some(t) = target_of_path(targets, p) {
                    out.push(Write {
                        target: t,
                        value: last_print.clone().flatten(),
                    });
                }
            }
        }
        if base == "sysctl" {
            out.extend(sysctl_writes(cmd, targets, read_file));
        }
        last_print = is_print.then_some(value);
    }
    out
}

/// `sysctl KEY=V`, `sysctl -w KEY=V`, `sysctl -p [FILE]`, `sysctl --system`.
fn sysctl_writes(
    cmd: &[String],
    targets: &[Target],
    read_file: &mut dyn FnMut(&str) -> Option<Vec<u8>>,
) -> Vec<Write> {
    let mut out = Vec::new();
    let mut args = cmd.iter().skip(1).peekable();
    while let Some(a) = args.next() {
        match a.as_str() {
            "-p" | "--load" => {
                let file = match args.peek() {
                    Some(f) if !f.starts_with('-') && !f.contains('=') => {
                        let f = f.to_string();
                        args.next();
                        f
                    }
                    _ => sysctl_d::SYSCTL_CONF.to_string(),
                };
                let Some(bytes) = read_file(&file) else {
                    continue;
                };
                for asg in sysctl_d::parse(&bytes, Path::new(&file)) {
                    if let (Some(t), Some(v)) = (target_of_key(targets, &asg.key), asg.value) {
                        out.push(Write {
                            target: t,
                            value: Some(normalize(&v)),
                        });
                    }
                }
            }
            "--system" => {
                // Applies sysctl.d and /etc/sysctl.conf again: judged with them.
            }
            s if s.starts_with('-') => {}
            s => {
                if let Some((k, v)) = s.split_once('=') {
                    if let Some(t) = target_of_key(targets, k) {
                        out.push(Write {
                            target: t,
                            value: (!unknowable(v)).then(|| normalize(v)),
                        });
                    }
                }
            }
        }
    }
    out
}

/// Whether a line names a managed knob and writes something, so that a line the matcher
/// could not read is still reported (value unknown).
fn mentions(text: &str, targets: &[Target]) -> Option<usize> {
    let writes = text.contains('>') || text.contains("tee") || text.contains("sysctl");
    if !writes {
        return None;
    }
    targets.iter().position(|t| {
        let leaf = t.knob.rel().to_string_lossy();
        let dotted = t.key.as_deref().map(sysctl_normalize);
        text.contains(&t.path)
            || dotted.is_some_and(|d| text.contains(&d))
            || (t.knob.kind() == Kind::Sysfs
                && leaf.contains("transparent_hugepage")
                && text.contains("transparent_hugepage")
                && t.knob.write_last())
    })
}

/// Scan one line of shell text: its writes, or one unknown write when it names a managed
/// knob in a way the matcher cannot read.
pub(super) fn scan_line(
    text: &str,
    targets: &[Target],
    read_file: &mut dyn FnMut(&str) -> Option<Vec<u8>>,
) -> Vec<Write> {
    let found = shell_writes(text, targets, read_file, 0);
    if found.is_empty() {
        // What the shell would see: quotes resolved, the comment gone.
        if let Some(t) = mentions(&words(text).join(" "), targets) {
            return vec![Write {
                target: t,
                value: None,
            }];
        }
    }
    found
}

/// Drop the first `n` whitespace-separated words of a line (`usize::MAX`: all of it).
pub(super) fn drop_words(line: &str, n: usize) -> &str {
    if n == usize::MAX {
        return "";
    }
    let mut rest = line.trim_start();
    for _ in 0..n {
        match rest.find(char::is_whitespace) {
            Some(i) => rest = rest.get(i..).unwrap_or("").trim_start(),
            None => return "",
        }
    }
    rest
}

/// `transparent_hugepage=V` in a kernel command line (the last one wins, as in the kernel).
pub(super) fn thp_param(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .filter_map(|w| w.strip_prefix("transparent_hugepage="))
        .next_back()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use proptest::prelude::*;

    fn settings() -> Settings {
        Settings::parse(
            crate::config::DEFAULT_CONFIG,
            crate::config::Source::Builtin,
        )
        .unwrap()
    }

    fn writes(line: &str) -> Vec<(String, Option<String>)> {
        let s = settings();
        let t = targets(&s);
        let mut none = |_: &str| None;
        scan_line(line, &t, &mut none)
            .into_iter()
            .map(|w| (t[w.target].knob.name().to_string(), w.value))
            .collect()
    }

    const THP_E: &str = "kernel/mm/transparent_hugepage/enabled";
    const THP_D: &str = "kernel/mm/transparent_hugepage/defrag";
    const OC: &str = "vm.overcommit_memory";

    fn w(k: &str, v: Option<&str>) -> (String, Option<String>) {
        (k.to_string(), v.map(str::to_string))
    }

    #[test]
    fn the_operator_guides_snippets() {
        assert_eq!(
            writes("echo never > /sys/kernel/mm/transparent_hugepage/enabled"),
            [w(THP_E, Some("never"))]
        );
        assert_eq!(
            writes("echo 'never' >/sys/kernel/mm/transparent_hugepage/defrag"),
            [w(THP_D, Some("never"))]
        );
        assert_eq!(
            writes(
                "/bin/sh -c \"echo 'never' > /sys/kernel/mm/transparent_hugepage/enabled && echo 'never' > /sys/kernel/mm/transparent_hugepage/defrag\""
            ),
            [w(THP_E, Some("never")), w(THP_D, Some("never"))]
        );
        assert_eq!(
            writes("echo always | sudo tee /sys/kernel/mm/transparent_hugepage/enabled"),
            [w(THP_E, Some("always"))]
        );
        assert_eq!(
            writes("sysctl -w vm.overcommit_memory=0"),
            [w(OC, Some("0"))]
        );
        assert_eq!(
            writes("/sbin/sysctl -q vm/overcommit_memory=\"1\" vm.swappiness=1"),
            [w(OC, Some("1"))]
        );
        assert_eq!(
            writes("printf 'madvise\\n' > /sys/kernel/mm/transparent_hugepage/enabled"),
            [w(THP_E, Some("madvise"))]
        );
        assert_eq!(
            writes("echo 1 > /proc/sys/vm/overcommit_memory"),
            [w(OC, Some("1"))]
        );
    }

    #[test]
    fn what_cannot_be_read_is_unknown_never_guessed() {
        // A variable: the knob is named, the value is not.
        assert_eq!(
            writes("echo $MODE > /sys/kernel/mm/transparent_hugepage/enabled"),
            [w(THP_E, None)]
        );
        // A loop over both files: which knob and which value the matcher cannot tell.
        assert_eq!(
            writes(
                "for f in enabled defrag; do echo never > /sys/kernel/mm/transparent_hugepage/$f; done"
            ),
            [w(THP_E, None)]
        );
        assert_eq!(writes("sysctl -w vm.overcommit_memory=$OC"), [w(OC, None)]);
    }

    #[test]
    fn reads_and_other_knobs_are_not_findings() {
        // Refused: reading a knob is not setting it.
        assert!(writes("cat /sys/kernel/mm/transparent_hugepage/enabled").is_empty());
        assert!(writes("sysctl vm.overcommit_memory").is_empty());
        // Refused: another knob.
        assert!(writes("echo 10 > /proc/sys/vm/swappiness").is_empty());
        assert!(writes("sysctl -w vm.swappiness=10").is_empty());
        // Refused: a comment.
        assert!(writes("# echo always > /sys/kernel/mm/transparent_hugepage/enabled").is_empty());
    }

    #[test]
    fn sysctl_p_reads_the_file_it_loads() {
        let s = settings();
        let t = targets(&s);
        let mut file =
            |p: &str| (p == "/etc/sysctl.conf").then(|| b"vm.overcommit_memory = 2\n".to_vec());
        let found = scan_line("sysctl -p", &t, &mut file);
        assert_eq!(
            found,
            [Write {
                target: 0,
                value: Some("2".into())
            }]
        );
        let mut other =
            |p: &str| (p == "/etc/my.conf").then(|| b"vm.overcommit_memory=0\n".to_vec());
        let found = scan_line("sysctl -p /etc/my.conf", &t, &mut other);
        assert_eq!(
            found,
            [Write {
                target: 0,
                value: Some("0".into())
            }]
        );
    }

    #[test]
    fn cron_fields_and_cmdlines() {
        assert_eq!(
            drop_words("*/5 * * * * root sysctl -w a=1", 6),
            "sysctl -w a=1"
        );
        assert_eq!(drop_words("@reboot root x", 2), "x");
        assert_eq!(
            thp_param("BOOT_IMAGE=/vmlinuz ro transparent_hugepage=always quiet"),
            Some("always".into())
        );
        assert_eq!(
            thp_param("GRUB_CMDLINE_LINUX=\"quiet transparent_hugepage=never\""),
            Some("never".into())
        );
        assert_eq!(thp_param("quiet"), None);
    }

    /// The managed knobs one line of shell text writes: (knob name, value or `None` when the
    /// text does not tell).
    fn scan_text(settings: &Settings, text: &str) -> Vec<(String, Option<String>)> {
        let t = targets(settings);
        let mut none = |_: &str| None;
        scan_line(text, &t, &mut none)
            .into_iter()
            .filter_map(|w| Some((t.get(w.target)?.knob.name().to_string(), w.value)))
            .collect()
    }

    proptest! {
        /// The scan reads shell text anyone could have written.
        #[test]
        fn shell_lines_never_panic(text in "([a-z/_.=>|&;$'\"\\ -]{0,12}(echo|sysctl|tee|sh -c|never|/sys/kernel/mm/transparent_hugepage/enabled|vm.overcommit_memory=)?){0,8}") {
            let s = Settings::parse(crate::config::DEFAULT_CONFIG, crate::config::Source::Builtin).unwrap();
            let _ = scan_text(&s, &text);
        }
    }
}
