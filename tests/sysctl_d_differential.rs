//! Differential test: forksafe's model of the next boot against the real systemd-sysctl,
//! of each systemd version forksafe is verified on: 252 (Debian 12, this machine's) and 257
//! (Debian 13, run chrooted in the tree tests/vm/image keeps).
//!
//! Generates hundreds of sysctl.d trees from a seed (printed; set FORKSAFE_DIFF_SEED to
//! replay one run, FORKSAFE_DIFF_TREES for how many), with FIFOs and directories among the
//! files now and then. In one private mount namespace, tmpfs covers the sysctl.d
//! directories and /proc/sys (holding only the test's keys); for each tree the files are
//! copied in, systemd-sysctl runs (killed after 2 s: 252 blocks forever on a FIFO), and the
//! value it wrote to each key is compared with `Table::judge`. The host is never touched.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::{in_mount_namespace, is_root};
use forksafe::Root;
use forksafe::Table;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

const SYSTEMD_SYSCTL: &str = "/lib/systemd/systemd-sysctl";

/// The Debian 13 tree tests/vm/image keeps (systemd 257).
fn trixie_tree() -> std::path::PathBuf {
    let cache = std::env::var("FORKSAFE_VM_CACHE").unwrap_or("/var/cache/forksafe-vm".into());
    Path::new(&cache).join("trixie/root")
}
const DIRS: [&str; 4] = [
    "etc/sysctl.d",
    "run/sysctl.d",
    "usr/local/lib/sysctl.d",
    "usr/lib/sysctl.d",
];

/// The keys that exist in the fake /proc/sys.
const KEYS: &[&str] = &[
    "vm/overcommit_memory",
    "vm/overcommit_ratio",
    "vm/swappiness",
    "kernel/pid_max",
    "net/ipv4/conf/all/rp_filter",
    "net/ipv4/conf/default/rp_filter",
    "net/ipv4/conf/eth0.100/rp_filter",
    "fs/file-max",
];

const GLOBS: &[&str] = &[
    "net.ipv4.conf.*.rp_filter",
    "net/ipv4/conf/*/rp_filter",
    "vm.overcommit_*",
    "vm/*",
    "kernel.pid_m?x",
    "net/ipv4/conf/[ae]*/rp_filter",
    "net/ipv4/conf/[!a]*/rp_filter",
    "vm/{swappiness,overcommit_ratio}*",
    "*/pid_max",
    "vm/{swappiness,overcommit_ratio}",
];

const NAMES: &[&str] = &[
    "10-a.conf",
    "50-b.conf",
    "50-default.conf",
    "99-sysctl.conf",
    "99-zz-forksafe.conf",
    "A.conf",
    "b.conf",
    "zz.conf",
    ".hidden.conf",
    "x.conf~",
    "y.conf.dpkg-old",
    "notconf.txt",
];

/// Names that are not valid UTF-8 (or sort differently as bytes than as text): systemd
/// orders and reads them by their bytes.
const BYTE_NAMES: &[&[u8]] = &[
    b"zz-\xff.conf",
    b"zz-\xfe.conf",
    b"\xe9.conf",
    b"\xec\x80\x80.conf",
    b"zz-z.conf",
];

/// xorshift64*: small, seeded, good enough to shuffle test cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A way of writing `key` (slashed) that systemd normalises back to it.
fn spell(rng: &mut Rng, key: &str) -> String {
    let dotted: String = key
        .chars()
        .map(|c| match c {
            '/' => '.',
            '.' => '/',
            c => c,
        })
        .collect();
    match rng.below(5) {
        0 | 1 => dotted,
        2 => key.to_string(),
        3 => format!("/{key}"),
        _ => dotted.replacen('.', "..", 1),
    }
}

fn line(rng: &mut Rng) -> String {
    let key = if rng.chance(25) {
        rng.pick(GLOBS).to_string()
    } else {
        let k = rng.pick(KEYS);
        spell(rng, k)
    };
    let value = rng.below(100).to_string();
    let eol = match rng.below(10) {
        0 => "\r\n",
        1 => "\r",
        _ => "\n",
    };
    let body = match rng.below(20) {
        0 => "# a comment".to_string(),
        1 => format!("; {key} = {value}"),
        2 => String::new(),
        3 => "   \t ".to_string(),
        4 => "not an assignment".to_string(),
        5 => format!("-{key}"),
        6 | 7 => format!("-{key} = {value}"),
        8 => format!("\t{key}\t=\t{value}\t"),
        9 => format!("{key}={value}"),
        10 => format!("  {key} = {value} {value}"),
        _ => format!("{key} = {value}"),
    };
    format!("{body}{eol}")
}

/// Write one random tree under `dir`.
fn generate(rng: &mut Rng, dir: &Path) {
    for d in DIRS {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    for _ in 0..rng.below(9) {
        let name: &std::ffi::OsStr = if rng.chance(15) {
            std::os::unix::ffi::OsStrExt::from_bytes(BYTE_NAMES[rng.below(BYTE_NAMES.len())])
        } else {
            rng.pick(NAMES).as_ref()
        };
        let path = dir.join(rng.pick(&DIRS)).join(name);
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_dir_all(&path);
        match rng.below(12) {
            0 => std::os::unix::fs::symlink("/dev/null", &path).unwrap(),
            1 => std::fs::write(&path, "").unwrap(),
            2 => std::os::unix::fs::symlink("/nonexistent/dangling.conf", &path).unwrap(),
            // Rare, and slow to judge (systemd-sysctl 252 blocks on a FIFO until killed).
            3 if rng.chance(8) => {
                nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap()
            }
            4 if rng.chance(30) => std::fs::create_dir(&path).unwrap_or_default(),
            _ => {
                let text: String = (0..1 + rng.below(6)).map(|_| line(rng)).collect();
                std::fs::write(&path, text).unwrap();
            }
        }
    }
}

fn why_not(sysctl: &Path) -> Option<String> {
    if !is_root() {
        return Some("not root (needs a private mount namespace)".into());
    }
    if !sysctl.exists() {
        return Some(format!("{} is missing", sysctl.display()));
    }
    if Command::new("unshare").arg("--version").output().is_err() {
        return Some("unshare(1) is missing (apt-get install util-linux)".into());
    }
    None
}

/// Run the generated trees through the systemd-sysctl found under `target` ("/" for this
/// machine's), and compare with the model.
fn differential(label: &str, target: &Path) {
    let sysctl = target.join(SYSTEMD_SYSCTL.trim_start_matches('/'));
    if let Some(why) = why_not(&sysctl) {
        eprintln!("\n*** SKIPPED model_matches_systemd_sysctl {label}: {why} ***\n");
        return;
    }
    let seed: u64 = std::env::var("FORKSAFE_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let trees: usize = std::env::var("FORKSAFE_DIFF_TREES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    eprintln!(
        "differential test ({label}): seed {seed}, {trees} trees (FORKSAFE_DIFF_SEED={seed} replays it)"
    );

    let work = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed);
    for i in 0..trees {
        generate(&mut rng, &work.path().join(format!("trees/{i:04}")));
    }

    let keys = KEYS.join(" ");
    // T: the root systemd-sysctl sees. For another release it runs chrooted there, with
    // that tree's /proc replaced by a tmpfs holding the keys.
    let (t, run, proc_sys) = if target == Path::new("/") {
        (
            String::new(),
            SYSTEMD_SYSCTL.to_string(),
            "/proc/sys".to_string(),
        )
    } else {
        let t = target.display().to_string();
        (
            t.clone(),
            format!("chroot {t} {SYSTEMD_SYSCTL}"),
            format!("{t}/proc/sys"),
        )
    };
    let mount_proc = if t.is_empty() {
        "mount -t tmpfs tmpfs /proc/sys".to_string()
    } else {
        format!("mount -t tmpfs tmpfs {t}/proc && mkdir {t}/proc/sys")
    };
    let script = format!(
        r#"set -eu
mkdir -p {t}/etc/sysctl.d {t}/usr/lib/sysctl.d {t}/usr/local/lib {t}/run
mount -t tmpfs tmpfs {t}/etc/sysctl.d
mount -t tmpfs tmpfs {t}/run && mkdir {t}/run/sysctl.d
mount -t tmpfs tmpfs {t}/usr/local/lib && mkdir {t}/usr/local/lib/sysctl.d
mount -t tmpfs tmpfs {t}/usr/lib/sysctl.d
{mount_proc}
for tree in {work}/trees/*; do
  for d in {dirs}; do
    find {t}/$d -mindepth 1 -delete
    cp -a $tree/$d/. {t}/$d/
  done
  find {proc_sys} -mindepth 1 -delete
  for k in {keys}; do mkdir -p {proc_sys}/$(dirname $k); : > {proc_sys}/$k; done
  rc=0; timeout 2 {run} >/dev/null 2>&1 || rc=$?
  for k in {keys}; do printf '%s\t%s\n' $k "$(head -n1 {proc_sys}/$k)"; done > $tree.result
  [ $rc != 124 ] || echo blocked > $tree.blocked
done
"#,
        work = work.path().display(),
        dirs = DIRS.join(" "),
    );
    let o = in_mount_namespace(&script);
    assert!(
        o.status.success(),
        "namespace script failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    let mut failures = String::new();
    let mut compared = 0;
    let mut blocked = 0;
    for i in 0..trees {
        let tree = work.path().join(format!("trees/{i:04}"));
        let result = std::fs::read_to_string(tree.with_extension("result")).unwrap();
        let systemd_blocked = tree.with_extension("blocked").exists();
        blocked += usize::from(systemd_blocked);
        let table = Table::read(&Root::new(&tree));
        let model_blocked = table.skipped.iter().any(|s| s.blocks_boot);
        if systemd_blocked != model_blocked {
            writeln!(
                failures,
                "tree {i:04}: systemd-sysctl {} on it, forksafe predicts it {} (skipped: {:?})",
                if systemd_blocked {
                    "blocked"
                } else {
                    "did not block"
                },
                if model_blocked { "blocks" } else { "does not" },
                table.skipped
            )
            .unwrap();
        }
        for row in result.lines() {
            let (key, systemd) = row.split_once('\t').unwrap();
            let boot = table.judge(key, "", None);
            let ours = boot
                .value
                .as_ref()
                .and_then(|a| a.value.clone())
                .unwrap_or_default();
            compared += 1;
            if ours != systemd {
                writeln!(
                    failures,
                    "tree {i:04} key {key}: systemd-sysctl wrote {systemd:?}, forksafe predicts {ours:?} (from {:?})",
                    boot.value
                )
                .unwrap();
            }
        }
        if !failures.is_empty() {
            // Show the first failing tree in full.
            for d in DIRS {
                for e in std::fs::read_dir(tree.join(d)).unwrap().flatten() {
                    let content = match e.file_type() {
                        Ok(ft) if ft.is_file() => std::fs::read(e.path())
                            .map(|b| String::from_utf8_lossy(&b).into_owned())
                            .unwrap_or_default(),
                        Ok(ft) => format!("<{ft:?}>"),
                        Err(_) => String::new(),
                    };
                    writeln!(
                        failures,
                        "  {d}/{}: {content:?}",
                        e.file_name().to_string_lossy()
                    )
                    .unwrap();
                }
            }
            break;
        }
    }
    assert!(
        failures.is_empty(),
        "{label}, seed {seed}: forksafe disagrees with systemd-sysctl:\n{failures}"
    );
    eprintln!(
        "differential test ({label}): {compared} key values agree across {trees} trees ({blocked} blocked on a FIFO)"
    );
}

/// systemd 252, this machine's (Debian 12).
#[test]
fn model_matches_systemd_sysctl_252() {
    differential("systemd 252", Path::new("/"));
}

/// systemd 257, Debian 13's, in the tree tests/vm/image trixie keeps.
#[test]
fn model_matches_systemd_sysctl_257() {
    differential("systemd 257", &trixie_tree());
}
