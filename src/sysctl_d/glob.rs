//! Glob matching for sysctl.d keys, as systemd-sysctl does it (glob(3) with GLOB_BRACE
//! under /proc/sys): the one place where a line anyone with write access to a sysctl.d
//! directory wrote is expanded and matched, so the one place bounded by construction:
//! brace expansion stops at [`MAX_BRACE_EXPANSIONS`] patterns and matching is linear.

/// Whether glob `pattern` (normalised, `/`-separated) matches the existing key `key`, as
/// glob(3) with GLOB_BRACE does under /proc/sys: per path component, wildcards never match
/// `/` nor a leading `.`.
pub fn glob_match(pattern: &str, key: &str) -> bool {
    expand_braces(pattern).iter().any(|p| {
        let pc: Vec<&str> = p.split('/').filter(|c| !c.is_empty()).collect();
        let kc: Vec<&str> = key.split('/').collect();
        pc.len() == kc.len()
            && pc
                .iter()
                .zip(&kc)
                .all(|(p, k)| fnmatch(p.as_bytes(), k.as_bytes()))
    })
}

/// At most this many patterns come out of brace expansion; `{a,b}` repeated doubles them,
/// so a hostile line could otherwise ask for billions.
const MAX_BRACE_EXPANSIONS: usize = 1024;

/// `a{b,c}d` -> `abd`, `acd` (nested braces too); an unbalanced brace stays literal.
fn expand_braces(p: &str) -> Vec<String> {
    let mut out = Vec::new();
    expand_into(p, &mut out);
    out
}

fn expand_into(p: &str, out: &mut Vec<String>) {
    if out.len() >= MAX_BRACE_EXPANSIONS {
        return;
    }
    let bytes = p.as_bytes();
    let Some(open) = bytes.iter().position(|&b| b == b'{') else {
        out.push(p.to_string());
        return;
    };
    let mut depth = 0;
    let mut commas = Vec::new();
    let mut close = None;
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            b',' if depth == 1 => commas.push(i),
            _ => {}
        }
    }
    let Some(close) = close else {
        out.push(p.to_string());
        return;
    };
    // Byte positions of ASCII braces and commas are always char boundaries.
    let (head, tail) = (
        p.get(..open).unwrap_or(""),
        p.get(close + 1..).unwrap_or(""),
    );
    let mut bounds = vec![open];
    bounds.extend(commas);
    bounds.push(close);
    for w in bounds.windows(2) {
        if let [a, b] = w {
            let alt = p.get(a + 1..*b).unwrap_or("");
            expand_into(&format!("{head}{alt}{tail}"), out);
        }
    }
}

/// fnmatch(3) without flags except glob's leading-dot rule: `*`, `?`, `[...]` with ranges and
/// `!`/`^` negation, `\` escapes. Linear-time: one backtrack point (the last `*`), so no
/// pattern can make it explode.
fn fnmatch(p: &[u8], s: &[u8]) -> bool {
    if s.first() == Some(&b'.') && p.first() != Some(&b'.') {
        return false;
    }
    let (mut pi, mut si) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, text index it covers to).
    let mut star: Option<(usize, usize)> = None;
    loop {
        match (p.get(pi), s.get(si)) {
            (Some(b'*'), _) => {
                pi += 1;
                star = Some((pi, si));
                continue;
            }
            (Some(_), Some(&c)) => {
                let (hit, next) = token(p, pi, c);
                if hit {
                    pi = next;
                    si += 1;
                    continue;
                }
            }
            (None, None) => return true,
            _ => {}
        }
        // Mismatch: let the last `*` swallow one more character, or fail.
        match star {
            Some((sp, ss)) if ss < s.len() => {
                star = Some((sp, ss + 1));
                pi = sp;
                si = ss + 1;
            }
            _ => return false,
        }
    }
}

/// Whether the pattern token at `p[i]` matches `c`, and the index after the token.
fn token(p: &[u8], i: usize, c: u8) -> (bool, usize) {
    match p.get(i) {
        Some(b'?') => (true, i + 1),
        Some(b'[') => match class_match(p.get(i + 1..).unwrap_or_default(), Some(c)) {
            Some((hit, rest)) => (hit, p.len() - rest.len()),
            // No closing bracket: `[` is literal.
            None => (c == b'[', i + 1),
        },
        Some(b'\\') if i + 1 < p.len() => (p.get(i + 1) == Some(&c), i + 2),
        Some(&x) => (x == c, i + 1),
        None => (false, i),
    }
}

/// Match one character against a bracket expression (after the `[`). `None` when the
/// expression has no closing `]`; else whether it matched and the pattern after the `]`.
fn class_match(p: &[u8], c: Option<u8>) -> Option<(bool, &[u8])> {
    let (negate, mut i) = match p.first() {
        Some(b'!' | b'^') => (true, 1),
        _ => (false, 0),
    };
    let mut matched = false;
    let mut first = true;
    loop {
        let b = *p.get(i)?;
        if b == b']' && !first {
            let hit = c.is_some() && (matched != negate);
            return Some((hit, p.get(i + 1..).unwrap_or_default()));
        }
        first = false;
        if p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|&e| e != b']') {
            let hi = *p.get(i + 2)?;
            if c.is_some_and(|c| b <= c && c <= hi) {
                matched = true;
            }
            i += 3;
        } else {
            if c == Some(b) {
                matched = true;
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(
            "net/ipv4/conf/*/rp_filter",
            "net/ipv4/conf/eth0/rp_filter"
        ));
        assert!(!glob_match(
            "net/ipv4/conf/*/rp_filter",
            "net/ipv4/conf/eth0/x/rp_filter"
        ));
        assert!(glob_match("vm/overcommit_*", "vm/overcommit_memory"));
        assert!(glob_match(
            "vm/overcommit_{memory,ratio}",
            "vm/overcommit_ratio"
        ));
        assert!(glob_match("kernel/[a-c]?", "kernel/b1"));
        assert!(!glob_match("kernel/[!a-c]?", "kernel/b1"));
        assert!(glob_match("kernel/[]x]", "kernel/]"));
        assert!(glob_match("a/\\*", "a/*"));
        assert!(!glob_match("a/\\*", "a/b"));
        // A wildcard does not match a leading dot.
        assert!(!glob_match("a/*", "a/.hidden"));
        assert!(glob_match("a/.*", "a/.hidden"));
    }

    /// Patterns that make naive glob matching or brace expansion explode finish at once.
    #[test]
    fn pathological_globs_are_cheap() {
        let start = std::time::Instant::now();
        let stars = format!("{}b", "*a".repeat(30));
        assert!(!glob_match(&stars, &"a".repeat(200)));
        let braces = "{a,b}".repeat(40);
        assert!(!glob_match(&format!("x{braces}*"), "y"));
        // Generous: the point is seconds versus years, not milliseconds.
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }
}
