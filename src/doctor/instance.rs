//! One database process, everything doctor says about it: where it runs
//! ([`super::identity`]), the kernel's view of it ([`super::process`]) and, asked over its
//! own socket with the password picked for it, its own answers ([`super::db`]). Each of its
//! checks carries the [`Target`] it is about.

use crate::os::root::Root;

use super::ask::ask;
use super::auth::Auth;
use super::cgroup;
use super::check::Check;
use super::db;
use super::facts::Kernel;
use super::identity::{self, Target};
use super::listen::{Endpoint, endpoints};
use super::process::{self, Db};

/// Every check of the database `db`.
pub(crate) fn checks(root: &Root, db: &Db, k: &Kernel, auth: &Auth) -> Vec<Check> {
    let target = where_it_runs(root, db);
    let who = db.who(target.place().as_deref());
    let (mut out, fork) = process::checks(root, db, k, &who);
    out.extend(answers(root, db, &target, k, auth, &who, &fork));
    for c in &mut out {
        c.target = Some(Box::new(target.clone()));
    }
    out
}

/// Where `db` runs.
fn where_it_runs(root: &Root, db: &Db) -> Target {
    let path = db
        .cgroup()
        .map(|cg| cgroup::placement(root, db.pid, cg))
        .unwrap_or_default();
    identity::target(root, db.pid, &db.name, &path)
}

/// The checks from the database's own answers.
fn answers(
    root: &Root,
    db: &Db,
    target: &Target,
    k: &Kernel,
    auth: &Auth,
    who: &str,
    fork: &super::check::ForkNow,
) -> Vec<Check> {
    let eps = match endpoints(root, db.pid) {
        Ok(e) if e.is_empty() => {
            return db::all_unknown(db.pid, who, "it listens on no socket doctor can find", None);
        }
        Ok(e) => e,
        Err(why) => {
            return db::all_unknown(db.pid, who, &format!("cannot see its sockets: {why}"), None);
        }
    };
    let ports: Vec<u16> = eps
        .iter()
        .filter_map(|e| match e {
            Endpoint::Tcp(a) => Some(a.port()),
            Endpoint::Unix(_) => None,
        })
        .collect();
    let login = match auth.login(root, db.pid, target.pod.as_ref(), &ports) {
        Ok(l) => l,
        Err(why) => return db::all_unknown(db.pid, who, &why, None),
    };
    match ask(root, db.pid, &eps, login.as_ref()) {
        Ok(a) => db::judge(db.pid, who, &a, k.mode(), fork),
        Err(why) => db::unanswered(db.pid, who, &why, auth.options()),
    }
}
