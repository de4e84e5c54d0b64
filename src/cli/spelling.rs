//! "Did you mean": the nearest of a few known words to one that was mistyped, for commands,
//! options and knob names. Optimal string alignment distance (a swapped pair of letters
//! counts as one edit), on words of bounded length.

/// Words longer than this are never compared: the table is quadratic in the length.
const LONGEST: usize = 128;

/// Edits (insert, delete, replace, swap two neighbours) from `a` to `b`.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j]: the distance between the first i of a and the first j of b.
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        if let Some(first) = row.first_mut() {
            *first = i;
        }
    }
    if let Some(top) = rows.first_mut() {
        for (j, cell) in top.iter_mut().enumerate() {
            *cell = j;
        }
    }
    let at = |rows: &Vec<Vec<usize>>, i: usize, j: usize| {
        rows.get(i)
            .and_then(|r| r.get(j))
            .copied()
            .unwrap_or(usize::MAX / 2)
    };
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let (ca, cb) = (a.get(i - 1), b.get(j - 1));
            let cost = usize::from(ca != cb);
            let mut d = (at(&rows, i - 1, j) + 1)
                .min(at(&rows, i, j - 1) + 1)
                .min(at(&rows, i - 1, j - 1) + cost);
            if i > 1 && j > 1 && ca == b.get(j - 2) && a.get(i - 2) == cb {
                d = d.min(at(&rows, i - 2, j - 2) + 1);
            }
            if let Some(cell) = rows.get_mut(i).and_then(|r| r.get_mut(j)) {
                *cell = d;
            }
        }
    }
    at(&rows, a.len(), b.len())
}

/// The candidate nearest to `word`, when it is near enough to be a typo of it: at most one
/// edit per three characters (at least one), and never `word` itself.
pub(super) fn nearest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    if word.is_empty() || word.len() > LONGEST {
        return None;
    }
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != word && c.len() <= LONGEST)
        .map(|c| (distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("check", "check"), 0);
        assert_eq!(distance("chek", "check"), 1);
        assert_eq!(distance("enabeld", "enabled"), 1);
        assert_eq!(distance("", "run"), 3);
        assert_eq!(distance("apply", "doctor"), 6);
    }

    #[test]
    fn near_misses_and_strangers() {
        let commands = ["run", "check", "apply", "doctor", "validate", "reload"];
        assert_eq!(nearest("chek", commands), Some("check"));
        assert_eq!(nearest("docter", commands), Some("doctor"));
        assert_eq!(nearest("valdiate", commands), Some("validate"));
        assert_eq!(nearest("rn", commands), Some("run"));
        // Refused: too far from every command to be a typo of one.
        assert_eq!(nearest("frobnicate", commands), None);
        assert_eq!(nearest("x", commands), None);
        assert_eq!(
            nearest(
                "overcommit_memry",
                ["overcommit_ratio", "overcommit_memory"]
            ),
            Some("overcommit_memory")
        );
    }
}
