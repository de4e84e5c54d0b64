//! How numbers are said in sentences: "1 knob", "2 knobs". Imports nothing; every layer
//! that words a sentence uses it.

/// `n` and the noun in the right number: `count(1, "failure", "failures")` is "1 failure".
pub(crate) fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(count(0, "failure", "failures"), "0 failures");
        assert_eq!(count(1, "failure", "failures"), "1 failure");
        assert_eq!(count(2, "repair", "repairs"), "2 repairs");
    }
}
