//! The password doctor gives each database, and where it came from; the secret itself is
//! never printed or logged (messages name its source). The most specific source first:
//! `--password-dir DIR` keyed by the pod (`DIR/NAMESPACE/NAME`) or by a port the database
//! listens on (`DIR/PORT`), then, when the operator opts in with `--password-from-config`,
//! the database's own config file read inside its root (`requirepass`, else `masteruser`
//! and `masterauth`), then `--password-file` or `REDISCLI_AUTH` for every database.

use std::path::{Path, PathBuf};

use crate::os::fsread;
use crate::os::inroot;
use crate::os::proc;
use crate::os::root::Root;

use super::ask::Login;
use super::identity::Pod;

/// The largest password file or config file doctor reads.
const LIMIT: u64 = 1024 * 1024;

/// Where Redis, Valkey and KeyDB keep their config, looked at when the command line does
/// not name it (they rewrite their command line: `set-proc-title`).
const USUAL: [&str; 6] = [
    "/etc/redis/redis.conf",
    "/usr/local/etc/redis/redis.conf",
    "/etc/redis.conf",
    "/etc/valkey/valkey.conf",
    "/usr/local/etc/valkey/valkey.conf",
    "/etc/keydb/keydb.conf",
];

/// At most this many config files are read for one database (`include`s).
const MAX_FILES: usize = 8;

/// Where doctor's passwords come from.
#[derive(Debug, Clone, Default)]
pub(crate) struct Auth {
    /// `--password-file` (first line), else `REDISCLI_AUTH`: for every database.
    pub(crate) common: Option<Login>,
    /// `--password-dir DIR`.
    pub(crate) dir: Option<PathBuf>,
    /// `--password-from-config`.
    pub(crate) from_config: bool,
}

/// The first line of a password file.
fn first_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .next()
        .unwrap_or("")
        .trim_end_matches('\r')
        .to_string()
}

impl Auth {
    /// `--password-file`'s first line when given, else `REDISCLI_AUTH`; the per-database
    /// sources as the options say.
    pub(crate) fn new(
        file_password: Option<String>,
        dir: Option<PathBuf>,
        from_config: bool,
    ) -> Auth {
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
        Auth {
            common,
            dir,
            from_config,
        }
    }

    /// The options that give a password, for a database that needs one.
    pub(crate) fn options(&self) -> &'static str {
        "REDISCLI_AUTH=... or --password-file FILE (every database), --password-dir DIR (DIR/NAMESPACE/POD or DIR/PORT), or --password-from-config (its own requirepass or masterauth, read in its root)"
    }

    /// The password for the database `pid` (in `pod`, listening on `ports`), if doctor has
    /// one; `Err` when a source meant for it could not be read.
    pub(crate) fn login(
        &self,
        root: &Root,
        pid: u32,
        pod: Option<&Pod>,
        ports: &[u16],
    ) -> Result<Option<Login>, String> {
        if let Some(dir) = &self.dir {
            if let Some(l) = from_dir(dir, pod, ports)? {
                return Ok(Some(l));
            }
        }
        if self.from_config {
            if let Some(l) = from_config(root, pid) {
                return Ok(Some(l));
            }
        }
        Ok(self.common.clone())
    }
}

/// A name that is safe as one path component (a Kubernetes name is).
fn component(name: &str) -> Option<&str> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0');
    ok.then_some(name)
}

/// `DIR/NAMESPACE/NAME` for the pod, else `DIR/PORT` for each port.
fn from_dir(dir: &Path, pod: Option<&Pod>, ports: &[u16]) -> Result<Option<Login>, String> {
    let by_pod = pod.and_then(|p| {
        let (ns, name) = (
            component(p.namespace.as_deref()?)?,
            component(p.name.as_deref()?)?,
        );
        Some((
            dir.join(ns).join(name),
            format!("--password-dir ({ns}/{name})"),
        ))
    });
    let by_port = ports.iter().map(|p| {
        (
            dir.join(p.to_string()),
            format!("--password-dir (port {p})"),
        )
    });
    for (file, from) in by_pod.into_iter().chain(by_port) {
        match fsread::read(&file, LIMIT) {
            Ok(bytes) => {
                return Ok(Some(Login {
                    user: None,
                    password: first_line(&bytes),
                    from,
                }));
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(format!("{}: {e}", file.display())),
        }
    }
    Ok(None)
}

/// The words of one config line as Redis splits them (`sdssplitargs`): bare words, and
/// double-quoted strings with `\n \r \t \" \\ \xHH` escapes, single-quoted with `\'`.
fn words(line: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else {
            return Some(out);
        };
        let mut word = String::new();
        if first == '"' || first == '\'' {
            chars.next();
            loop {
                match (chars.next()?, first) {
                    (c, q) if c == q => break,
                    ('\\', '"') => match chars.next()? {
                        'n' => word.push('\n'),
                        'r' => word.push('\r'),
                        't' => word.push('\t'),
                        'x' => {
                            let hex: String = [chars.next()?, chars.next()?].iter().collect();
                            word.push(char::from(u8::from_str_radix(&hex, 16).ok()?));
                        }
                        c => word.push(c),
                    },
                    ('\\', '\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                        word.push('\'');
                    }
                    (c, _) => word.push(c),
                }
            }
            // A closing quote must end the word.
            if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                return None;
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                word.push(c);
            }
        }
        out.push(word);
    }
}

/// What a config file (and the files it includes) sets, last one winning.
#[derive(Debug, Default, PartialEq, Eq)]
struct Secrets {
    requirepass: Option<(String, String)>,
    masteruser: Option<String>,
    masterauth: Option<(String, String)>,
}

/// Read `file` inside `proc_root` into `s`, following `include` up to [`MAX_FILES`].
fn read_config(proc_root: &Path, file: &Path, s: &mut Secrets, budget: &mut usize) {
    if *budget == 0 {
        return;
    }
    *budget -= 1;
    let Ok(bytes) = inroot::read(proc_root, file, LIMIT) else {
        return;
    };
    let name = file.display().to_string();
    for line in String::from_utf8_lossy(&bytes).lines() {
        let Some(w) = words(line) else { continue };
        let (Some(key), Some(value)) = (w.first(), w.get(1)) else {
            continue;
        };
        match key.to_ascii_lowercase().as_str() {
            "requirepass" => s.requirepass = Some((value.clone(), name.clone())),
            "masterauth" => s.masterauth = Some((value.clone(), name.clone())),
            "masteruser" => s.masteruser = Some(value.clone()),
            // Relative includes are relative to the server's working directory.
            "include" if Path::new(value).is_absolute() => {
                read_config(proc_root, Path::new(value), s, budget);
            }
            _ => {}
        }
    }
}

/// The config file the database's command line names (`redis-server /etc/redis.conf`),
/// made absolute with its working directory.
fn named_config(root: &Root, pid: u32) -> Option<PathBuf> {
    let args = proc::cmdline(root, pid).ok()?;
    let conf = args
        .iter()
        .skip(1)
        .find(|a| !a.starts_with('-') && a.ends_with(".conf"))?;
    let conf = PathBuf::from(conf);
    if conf.is_absolute() {
        return Some(conf);
    }
    let cwd = std::fs::read_link(root.join(format!("proc/{pid}/cwd"))?).ok()?;
    Some(cwd.join(conf))
}

/// The password in the database's own config, read inside its root.
fn from_config(root: &Root, pid: u32) -> Option<Login> {
    let proc_root = root.join(format!("proc/{pid}/root"))?;
    let files: Vec<PathBuf> = match named_config(root, pid) {
        Some(f) => vec![f],
        None => USUAL.iter().map(PathBuf::from).collect(),
    };
    let file = files
        .into_iter()
        .find(|f| inroot::identity(&proc_root, f).is_ok())?;
    let mut s = Secrets::default();
    let mut budget = MAX_FILES;
    read_config(&proc_root, &file, &mut s, &mut budget);
    let login = |(password, at): (String, String), user: Option<String>, key: &str| Login {
        user,
        password,
        from: format!("{key} in {at} (inside its root; --password-from-config)"),
    };
    match (s.requirepass, s.masterauth) {
        (Some(p), _) if !p.0.is_empty() => Some(login(p, None, "requirepass")),
        (_, Some(p)) if !p.0.is_empty() => Some(login(p, s.masteruser, "masteruser/masterauth")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lines_split_as_redis_splits_them() {
        let w = |l: &str| words(l);
        assert_eq!(
            w("requirepass s3cret"),
            Some(vec!["requirepass".into(), "s3cret".into()])
        );
        assert_eq!(
            w("requirepass \"a b\\\"c\\x41\""),
            Some(vec!["requirepass".into(), "a b\"cA".into()])
        );
        assert_eq!(
            w("  masterauth 'it\\'s'"),
            Some(vec!["masterauth".into(), "it's".into()])
        );
        assert_eq!(w(""), Some(vec![]));
        // Refused, as Redis refuses them: an unbalanced quote, a quote not ending the word.
        assert_eq!(w("requirepass \"open"), None);
        assert_eq!(w("requirepass \"a\"b"), None);
    }

    #[test]
    fn the_password_comes_from_the_config_inside_its_root_last_one_winning() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("ctr");
        std::fs::create_dir_all(root.join("etc/redis")).unwrap();
        std::fs::write(
            root.join("etc/redis/redis.conf"),
            "# comment\nrequirepass first\ninclude /etc/redis/more.conf\nmasteruser repl\n",
        )
        .unwrap();
        std::fs::write(
            root.join("etc/redis/more.conf"),
            "requirepass \"second one\"\n",
        )
        .unwrap();
        let mut s = Secrets::default();
        read_config(&root, Path::new("/etc/redis/redis.conf"), &mut s, &mut 8);
        match &s.requirepass {
            Some((p, at)) => assert_eq!(
                (p.as_str(), at.as_str()),
                ("second one", "/etc/redis/more.conf")
            ),
            None => panic!("no requirepass in {s:?}"),
        }
        assert_eq!(s.masteruser.as_deref(), Some("repl"));
        // Refused: an include that includes itself stops at the file budget.
        std::fs::write(
            root.join("etc/redis/loop.conf"),
            "include /etc/redis/loop.conf\n",
        )
        .unwrap();
        let mut budget = 8;
        read_config(
            &root,
            Path::new("/etc/redis/loop.conf"),
            &mut Secrets::default(),
            &mut budget,
        );
        assert_eq!(budget, 0);
    }

    #[test]
    fn a_password_dir_is_keyed_by_pod_then_port() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("shop")).unwrap();
        std::fs::write(t.path().join("shop/redis-0"), "pod-secret\n").unwrap();
        std::fs::write(t.path().join("6380"), "port-secret\r\n").unwrap();
        let pod = Pod {
            uid: "u".into(),
            namespace: Some("shop".into()),
            name: Some("redis-0".into()),
        };
        let got = |pod: Option<&Pod>, ports: &[u16]| {
            from_dir(t.path(), pod, ports)
                .unwrap()
                .map(|l| (l.password, l.from))
        };
        assert_eq!(
            got(Some(&pod), &[6380]),
            Some(("pod-secret".into(), "--password-dir (shop/redis-0)".into()))
        );
        assert_eq!(
            got(None, &[6379, 6380]),
            Some(("port-secret".into(), "--password-dir (port 6380)".into()))
        );
        assert_eq!(got(None, &[6379]), None);
        // Refused: a name that would climb out of the directory.
        let evil = Pod {
            namespace: Some("..".into()),
            ..pod
        };
        assert_eq!(got(Some(&evil), &[]), None);
    }
}
