//! Footprint and reaction time of `forksafe run`, side by side with tuned.
//!
//!     cargo bench --bench footprint          (or benches/run, which installs tuned first)
//!
//! As root with a writable /proc/sys it runs against the real kernel, saving the three
//! knobs first and restoring them whatever happens; otherwise against a fixture tree (and
//! without tuned, which only works on the real kernel). Prints a Markdown table.
//! Measures, for forksafe at its default 1 s interval:
//! - start -> every knob enforced and READY=1 received on our NOTIFY_SOCKET (50 runs);
//! - peak RSS (VmHWM) after 60 s, and the stripped binary's size;
//! - CPU time over 60 s idle (schedstat, nanoseconds) and wakeups per second (context
//!   switches);
//! - drift -> repaired: a wrong value written, polled every millisecond (20 per knob).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The idle period (FORKSAFE_BENCH_IDLE=seconds shortens it for a quick look).
fn idle_period() -> Duration {
    let secs = std::env::var("FORKSAFE_BENCH_IDLE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}
const STARTS: usize = 50;
const DRIFTS_PER_KNOB: usize = 20;
/// How long to wait for a repair that may never come (tuned does not repair).
const REPAIR_PATIENCE: Duration = Duration::from_secs(10);
const TUNED_PROFILE_DIR: &str = "/etc/tuned/forksafe-bench";

/// Where the knobs are: the real kernel, or a fixture tree.
struct Target {
    root: PathBuf,
    real: bool,
    _tree: Option<Tree>,
    _restore: Option<Restore>,
    cfg: tempfile::TempDir,
}

impl Target {
    fn new() -> Target {
        let cfg = tempfile::tempdir().unwrap();
        let real = is_root()
            && REAL_KNOBS
                .iter()
                .all(|k| std::fs::OpenOptions::new().write(true).open(k).is_ok());
        // The drop-in goes to /run on the real system (gone at reboot, removed at the end).
        let dropin = if real {
            "/run/sysctl.d/99-zz-forksafe-bench.conf"
        } else {
            "/etc/sysctl.d/99-zz-forksafe.conf"
        };
        std::fs::write(
            cfg.path().join("forksafe.toml"),
            forksafe::config::DEFAULT_CONFIG.replace("/etc/sysctl.d/99-zz-forksafe.conf", dropin),
        )
        .unwrap();
        if real {
            Target {
                root: "/".into(),
                real,
                _tree: None,
                _restore: Some(Restore::save()),
                cfg,
            }
        } else {
            let tree = Tree::new("01-drift");
            Target {
                root: tree.root().to_path_buf(),
                real,
                _tree: Some(tree),
                _restore: None,
                cfg,
            }
        }
    }

    fn knob(&self, i: usize) -> PathBuf {
        self.root.join(REAL_KNOBS[i].trim_start_matches('/'))
    }

    fn set(&self, i: usize, value: &str) {
        write_knob(self.knob(i).to_str().unwrap(), value).unwrap();
    }

    fn drift_all(&self) {
        self.set(0, "0");
        self.set(1, "always");
        self.set(2, "always");
    }

    fn in_spec(&self) -> bool {
        (0..3).all(|i| read_knob(self.knob(i).to_str().unwrap()) == ["1", "never", "never"][i])
    }

    fn start(&self) -> Daemon {
        let cfg = self.cfg.path().join("forksafe.toml");
        Daemon::start_args(&self.root, &["--config", cfg.to_str().unwrap()], &[], None)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if self.real {
            let _ = std::fs::remove_file("/run/sysctl.d/99-zz-forksafe-bench.conf");
        }
    }
}

/// What /proc says about a process.
#[derive(Clone, Copy)]
struct Usage {
    cpu_ns: u64,
    switches: u64,
    hwm_kib: u64,
    /// Proportional set size: shared pages (libc) divided among their users.
    pss_kib: u64,
}

fn usage(pid: u32) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let schedstat = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap_or_default();
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    Usage {
        pss_kib: rollup
            .lines()
            .find_map(|l| l.strip_prefix("Pss:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        cpu_ns: schedstat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        switches: field("voluntary_ctxt_switches:") + field("nonvoluntary_ctxt_switches:"),
        hwm_kib: field("VmHWM:"),
    }
}

/// CPU and wakeups over the idle period, and peak RSS and PSS at its end.
struct Idle {
    cpu: Duration,
    wakeups: f64,
    hwm_kib: u64,
    pss_kib: u64,
}

fn idle(pid: u32) -> Idle {
    let before = usage(pid);
    std::thread::sleep(idle_period());
    let after = usage(pid);
    Idle {
        cpu: Duration::from_nanos(after.cpu_ns - before.cpu_ns),
        wakeups: (after.switches - before.switches) as f64 / idle_period().as_secs_f64(),
        hwm_kib: after.hwm_kib,
        pss_kib: after.pss_kib,
    }
}

/// The floor on this machine: a process that does nothing but wake once a second.
const BASELINE_ENV: &str = "FORKSAFE_BENCH_BASELINE";

fn baseline() -> Idle {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(BASELINE_ENV, "1")
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let idle = idle(child.id());
    let _ = child.kill();
    let _ = child.wait();
    idle
}

/// Time from a wrong value to the right one, or None after REPAIR_PATIENCE.
fn drift_once(t: &Target, knob: usize, wrong: &str) -> Option<Duration> {
    t.set(knob, wrong);
    let start = Instant::now();
    while start.elapsed() < REPAIR_PATIENCE {
        if t.in_spec() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

fn median_max(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], *v.last().unwrap())
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

struct Row {
    metric: String,
    forksafe: String,
    tuned: String,
    ratio: String,
    target: String,
}

fn ratio(tuned: f64, ours: f64) -> String {
    if ours > 0.0 && tuned > 0.0 {
        format!("{:.1}x", tuned / ours)
    } else {
        "-".into()
    }
}

/// Rows in order: start, VmHWM, PSS, CPU, floor, wakeups, drift, binary.
fn bench_forksafe(t: &Target) -> (Vec<Row>, [f64; 5]) {
    // start -> READY, every knob enforced
    let mut starts = Vec::new();
    for _ in 0..STARTS {
        t.drift_all();
        let begin = Instant::now();
        let d = t.start();
        d.wait_message("READY=1");
        starts.push(begin.elapsed());
        assert!(t.in_spec(), "READY before the knobs were set");
        let (code, log) = d.stop();
        assert_eq!(code, 0, "{log}");
    }
    let (start_med, start_max) = median_max(starts);

    let d = t.start();
    d.wait_message("READY=1");
    let Idle {
        cpu,
        wakeups,
        hwm_kib: hwm,
        pss_kib: pss,
    } = idle(d.pid());
    let floor = baseline();

    let mut drifts = Vec::new();
    for i in 0..DRIFTS_PER_KNOB * 3 {
        // Spread the writes over the tick's phase.
        std::thread::sleep(Duration::from_millis((i as u64 * 373) % 1000));
        let (knob, wrong) = [(0, "0"), (1, "always"), (2, "always")][i % 3];
        match drift_once(t, knob, wrong) {
            Some(took) => drifts.push(took),
            None => panic!(
                "forksafe did not repair {} within {REPAIR_PATIENCE:?}; knobs now {:?}; daemon alive: {}; its log:\n{}",
                REAL_KNOBS[knob],
                (0..3)
                    .map(|i| read_knob(t.knob(i).to_str().unwrap()))
                    .collect::<Vec<_>>(),
                Path::new(&format!("/proc/{}", d.pid())).exists(),
                d.log()
            ),
        }
    }
    let (drift_med, drift_max) = median_max(drifts);
    let (code, log) = d.stop();
    assert_eq!(code, 0, "{log}");

    let size = std::fs::metadata(BIN).unwrap().len();
    let rows = vec![
        Row {
            metric: format!("start → knobs set + READY=1 (median / max of {STARTS})"),
            forksafe: format!("{} / {}", ms(start_med), ms(start_max)),
            tuned: String::new(),
            ratio: String::new(),
            target: format!(
                "≤ 2 ms median: {}",
                ok(start_med <= Duration::from_millis(2))
            ),
        },
        Row {
            metric: format!("peak RSS (VmHWM) after {} s", idle_period().as_secs()),
            forksafe: format!("{:.2} MiB", hwm as f64 / 1024.0),
            tuned: String::new(),
            ratio: String::new(),
            target: format!("≤ 2 MiB: {}", ok(hwm <= 2048)),
        },
        Row {
            metric: format!(
                "PSS after {} s (shared libc pages divided among their users)",
                idle_period().as_secs()
            ),
            forksafe: format!("{:.2} MiB", pss as f64 / 1024.0),
            tuned: String::new(),
            ratio: String::new(),
            target: String::new(),
        },
        Row {
            metric: format!("CPU over {} s idle", idle_period().as_secs()),
            forksafe: ms(cpu),
            tuned: String::new(),
            ratio: String::new(),
            target: format!("≤ 3 ms: {}", ok(cpu <= Duration::from_millis(3))),
        },
        Row {
            metric: format!(
                "CPU over {} s of a process that only wakes once a second (this machine's floor)",
                idle_period().as_secs()
            ),
            forksafe: ms(floor.cpu),
            tuned: String::new(),
            ratio: String::new(),
            target: String::new(),
        },
        Row {
            metric: "wakeups per second, idle".into(),
            forksafe: format!("{wakeups:.2}"),
            tuned: String::new(),
            ratio: String::new(),
            target: String::new(),
        },
        Row {
            metric: format!(
                "drift → repaired (median / max of {} per knob)",
                DRIFTS_PER_KNOB
            ),
            forksafe: format!("{} / {}", ms(drift_med), ms(drift_max)),
            tuned: String::new(),
            ratio: String::new(),
            target: format!("≤ 1 s max: {}", ok(drift_max <= Duration::from_secs(1))),
        },
        Row {
            metric: "stripped binary".into(),
            forksafe: format!("{:.0} KiB", size as f64 / 1024.0),
            tuned: "(Python)".into(),
            ratio: String::new(),
            target: format!("≤ 2 MiB: {}", ok(size <= 2 * 1024 * 1024)),
        },
    ];
    let raw = [
        start_med.as_secs_f64(),
        hwm as f64,
        pss as f64,
        cpu.as_secs_f64(),
        wakeups,
    ];
    (rows, raw)
}

fn ok(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// tuned with the equivalent profile, on the real kernel. None when it cannot run.
fn bench_tuned(t: &Target, rows: &mut [Row], ours: [f64; 5]) -> Option<()> {
    if !t.real {
        eprintln!(
            "tuned: skipped (it only works on the real kernel; not root or /proc/sys read-only)"
        );
        return None;
    }
    let tuned = ["/usr/sbin/tuned", "/usr/bin/tuned"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(tuned) = tuned else {
        eprintln!("tuned: skipped (not installed; benches/run installs Debian's package)");
        return None;
    };
    std::fs::create_dir_all(TUNED_PROFILE_DIR).unwrap();
    std::fs::write(
        format!("{TUNED_PROFILE_DIR}/tuned.conf"),
        "[main]\nsummary=forksafe benchmark: the knobs of forksafe's default config\n\n\
         [sysctl]\nvm.overcommit_memory=1\n\n\
         [vm]\ntransparent_hugepages=never\ntransparent_hugepage.defrag=never\n",
    )
    .unwrap();
    struct Cleanup(Child);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            let _ = std::fs::remove_dir_all(TUNED_PROFILE_DIR);
        }
    }
    let work = tempfile::tempdir().unwrap();
    t.drift_all();
    let begin = Instant::now();
    let child = Command::new(tuned)
        .args([
            "--no-dbus",
            "--no-socket",
            "--profile",
            "forksafe-bench",
            "--log",
        ])
        .arg(work.path().join("tuned.log"))
        .arg("--pid")
        .arg(work.path().join("tuned.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = Cleanup(child);
    while !t.in_spec() {
        if begin.elapsed() > Duration::from_secs(60) {
            eprintln!("tuned: did not apply the profile within 60 s");
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let applied = begin.elapsed();
    let pid = child.0.id();
    let Idle {
        cpu,
        wakeups,
        hwm_kib: hwm,
        pss_kib: pss,
    } = idle(pid);
    let repaired = drift_once(t, 0, "0");

    rows[0].tuned = format!(
        "{} (1 run, until applied; no readiness protocol)",
        ms(applied)
    );
    rows[0].ratio = ratio(applied.as_secs_f64(), ours[0]);
    rows[1].tuned = format!("{:.2} MiB", hwm as f64 / 1024.0);
    rows[1].ratio = ratio(hwm as f64, ours[1]);
    rows[2].tuned = format!("{:.2} MiB", pss as f64 / 1024.0);
    rows[2].ratio = ratio(pss as f64, ours[2]);
    rows[3].tuned = ms(cpu);
    rows[3].ratio = ratio(cpu.as_secs_f64(), ours[3]);
    rows[5].tuned = format!("{wakeups:.2}");
    rows[5].ratio = ratio(wakeups, ours[4]);
    rows[6].tuned = match repaired {
        Some(d) => ms(d),
        None => format!("not repaired (waited {} s)", REPAIR_PATIENCE.as_secs()),
    };
    Some(())
}

fn main() {
    // `cargo bench` passes --bench; this binary takes no options.
    if std::env::var_os(BASELINE_ENV).is_some() {
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    let t = Target::new();
    eprintln!(
        "benchmarking against {} (this takes a few minutes)",
        if t.real {
            "the real kernel (values restored afterwards)"
        } else {
            "a fixture tree (not root: no real kernel, no tuned)"
        }
    );
    let (mut rows, ours) = bench_forksafe(&t);
    bench_tuned(&t, &mut rows, ours);

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| text(&o.stdout))
        .unwrap_or_default();
    println!(
        "forksafe {} footprint, {}, kernel {}, {} CPUs ({}), default 1 s interval, against {}\n",
        env!("CARGO_PKG_VERSION"),
        date.trim(),
        kernel.trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu,
        if t.real {
            "the real kernel"
        } else {
            "a fixture tree"
        }
    );
    println!("| metric | forksafe | tuned | tuned / forksafe | forksafe target |");
    println!("| --- | --- | --- | --- | --- |");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.metric, r.forksafe, r.tuned, r.ratio, r.target
        );
    }
}
