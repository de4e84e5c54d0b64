//! The password doctor gives a database, and where it came from: `--password-file` or
//! `REDISCLI_AUTH` (as for `redis-cli`). The secret is never printed or logged: messages
//! name where it came from.

use super::ask::Login;

/// Where doctor's passwords come from.
#[derive(Debug, Clone, Default)]
pub(crate) struct Auth {
    /// `--password-file` (first line), else `REDISCLI_AUTH`: for every database.
    pub(crate) common: Option<Login>,
}

impl Auth {
    /// From `--password-file`'s first line when given, else `REDISCLI_AUTH`.
    pub(crate) fn new(file_password: Option<String>) -> Auth {
        let common = match file_password {
            Some(password) => Some(Login {
                user: None,
                password,
                from: "--password-file".into(),
            }),
            None => std::env::var("REDISCLI_AUTH").ok().map(|password| Login {
                user: None,
                password,
                from: "REDISCLI_AUTH".into(),
            }),
        };
        Auth { common }
    }

    /// The options that give a password, for a database that needs one.
    pub(crate) fn options(&self) -> &'static str {
        "REDISCLI_AUTH=... forksafe doctor, or forksafe doctor --password-file FILE"
    }

    /// The password for one database.
    pub(crate) fn login(&self) -> Option<&Login> {
        self.common.as_ref()
    }
}
