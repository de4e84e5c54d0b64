//! What the next boot does to one sysctl key ([`Boot`], made by `Table::judge`), and how
//! that is said: the one place where the boot judgement becomes sentences, for `check`,
//! `apply`, the daemon and `doctor`.

use std::path::PathBuf;

use super::assignment::Assignment;

/// What the next boot does to one sysctl key: the judgement `check`, `apply`, the daemon,
/// `doctor` and the metrics all use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boot {
    /// The assignment systemd-sysctl applies at the next boot, if any.
    pub value: Option<Assignment>,
    /// Whether the next boot ends with the desired value (compared like runtime values).
    pub(crate) right: bool,
    /// What keeps the next boot from the desired value: the assignment that wins in
    /// sysctl.d (a value or a `-key` exclusion) when it differs and is not the drop-in; and
    /// the `/etc/sysctl.conf` line procps' `sysctl --system` applies last, when it differs.
    pub(crate) overrides: Vec<Assignment>,
    /// Assignments that differ but do not win: harmless now, they apply again if what wins
    /// goes (the drop-in, most often).
    pub(crate) shadowed: Vec<Assignment>,
    /// A file that makes systemd-sysctl apply nothing at the next boot (it blocks on it).
    pub(crate) blocked_by: Option<PathBuf>,
    /// Files forksafe could not read that could change the value (each `file: why`): the
    /// next boot cannot be judged while there are any.
    pub(crate) unjudged: Vec<String>,
}

impl Boot {
    /// What the next boot does, as a sentence: "the next boot sets 2 (file:line)".
    pub(crate) fn explain(&self) -> String {
        match (&self.blocked_by, &self.value) {
            (Some(f), _) => format!(
                "the next boot sets nothing from sysctl.d: systemd-sysctl blocks reading {} (a FIFO) and applies no file",
                f.display()
            ),
            (None, Some(a)) => format!(
                "the next boot sets {} ({}:{})",
                a.value.as_deref().unwrap_or(""),
                a.file.display(),
                a.line
            ),
            (None, None) => {
                "nothing sets it at boot (no sysctl.d file does; the kernel default stays)".into()
            }
        }
    }

    /// What `check` and `apply` say about the next boot, each fact once: what the next boot
    /// sets when it is wrong ([`Boot::explain`]), unless a line that overrides it says the
    /// same already; why it cannot be judged, if so ([`Boot::unknown`]); then each line
    /// that overrides it.
    pub(crate) fn facts(&self) -> Vec<String> {
        let said = |v: &Assignment| self.overrides.contains(v);
        let explain =
            !self.right && (self.blocked_by.is_some() || !self.value.as_ref().is_some_and(said));
        let mut out: Vec<String> = explain.then(|| self.explain()).into_iter().collect();
        out.extend(self.unknown());
        out.extend(self.overrides.iter().map(|o| format!("overridden by {o}")));
        out
    }

    /// Whether the next boot keeps the desired value: systemd-sysctl sets it, and nothing
    /// (procps' `/etc/sysctl.conf` included) sets it to anything else.
    pub(crate) fn keeps(&self) -> bool {
        self.right && self.overrides.is_empty() && self.unjudged.is_empty()
    }

    /// Why the next boot cannot be judged (`None` when it can): the files forksafe could
    /// not read that could change the value.
    pub(crate) fn unknown(&self) -> Option<String> {
        (!self.unjudged.is_empty()).then(|| {
            format!(
                "the next boot cannot be judged: forksafe could not read what could set it ({})",
                self.unjudged.join("; ")
            )
        })
    }

    /// Why the next boot does not keep the value, in one line; `None` when it does. The
    /// lines that override it, or what the next boot sets when no line does.
    pub(crate) fn trouble(&self) -> Option<String> {
        if self.keeps() {
            None
        } else if self.right && self.overrides.is_empty() {
            self.unknown()
        } else if self.overrides.is_empty() {
            Some(self.explain())
        } else {
            let list: Vec<String> = self.overrides.iter().map(|a| a.to_string()).collect();
            Some(list.join("; "))
        }
    }

    /// The line to blame for the next boot's value: the last override, else what wins.
    pub(crate) fn blame(&self) -> Option<&Assignment> {
        self.overrides.last().or(self.value.as_ref())
    }

    /// Whether procps' `/etc/sysctl.conf`, applied last by `sysctl --system`, overrides.
    pub(crate) fn procps_overrides(&self) -> bool {
        self.overrides.iter().any(Assignment::in_sysctl_conf)
    }

    /// Where the line that wins at boot is, for a shadowed line: `file:line`, or `nothing`.
    pub(crate) fn winner_at(&self) -> String {
        self.value.as_ref().map_or("nothing".to_string(), |w| {
            format!("{}:{}", w.file.display(), w.line)
        })
    }
}
