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
//!   switches), beside a bare C program that only wakes once a second (this machine's
//!   floor, compiled here with cc);
//! - drift -> repaired for a writer on the same mount (the inotify event path): from the
//!   moment the wrong value is in place (its write returned), read every 100 us (20 per
//!   knob);
//! - drift -> repaired when no event arrives: written through a second procfs and sysfs
//!   mount in a private mount namespace (real kernel only), so only the poll finds it;
//! - a neighbour writing the wrong value 100 times a second for 60 s: CPU and log lines.
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
        // On the real system no drop-in: the bench must leave /etc alone.
        let config = if real {
            forksafe::DEFAULT_CONFIG.replace("manage = true", "manage = false")
        } else {
            forksafe::DEFAULT_CONFIG.to_string()
        };
        std::fs::write(cfg.path().join("forksafe.toml"), config).unwrap();
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
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    Usage {
        pss_kib: rollup
            .lines()
            .find_map(|l| l.strip_prefix("Pss:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        // Every thread: the daemon's second one does its sysctl.d and neighbour looks.
        cpu_ns: cpu_ns(pid),
        switches: switches(pid),
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

/// The floor on this machine: a bare C program that does nothing but wake once a second.
fn baseline() -> Option<Idle> {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("wake.c");
    std::fs::write(
        &src,
        "#include <unistd.h>\nint main(void) { for (;;) sleep(1); }\n",
    )
    .unwrap();
    let bin = dir.path().join("wake");
    let built = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .is_ok_and(|s| s.success());
    if !built {
        eprintln!("floor: skipped (no C compiler)");
        return None;
    }
    let mut child = Command::new(&bin).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let idle = idle(child.id());
    let _ = child.kill();
    let _ = child.wait();
    Some(idle)
}

/// Time from a wrong value to the right one, or None after REPAIR_PATIENCE.
fn drift_once(t: &Target, knob: usize, wrong: &str) -> Option<Duration> {
    t.set(knob, wrong);
    let start = Instant::now();
    wait_in_spec(t, start)
}

fn wait_in_spec(t: &Target, start: Instant) -> Option<Duration> {
    while start.elapsed() < REPAIR_PATIENCE {
        if t.in_spec() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    None
}

/// A shell in a private mount namespace with a second procfs and sysfs mounted: a write
/// through them changes the same kernel values but raises no inotify event on the
/// daemon's watches (those are per mount instance).
struct OtherMount {
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    _dir: tempfile::TempDir,
}

impl OtherMount {
    fn start() -> Option<OtherMount> {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let script = format!(
            "mkdir -p {d}/proc {d}/sys && mount -t proc proc {d}/proc && \
             mount -t sysfs sysfs {d}/sys && echo ready && \
             while read f v; do echo \"$v\" > {d}/$f; echo done; done"
        );
        // -n too: sysfs is one instance per network namespace, so a second mount in the
        // same one would be the daemon's own (and raise its events).
        let mut child = Command::new("unshare")
            .args(["-m", "-n", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .ok()?;
        let stdin = child.stdin.take()?;
        let mut stdout = std::io::BufReader::new(child.stdout.take()?);
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).ok()?;
        (line.trim() == "ready").then_some(OtherMount {
            child,
            stdin,
            stdout,
            _dir: dir,
        })
    }

    fn write(&mut self, rel: &str, value: &str) {
        use std::io::Write;
        writeln!(self.stdin, "{rel} {value}").unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut self.stdout, &mut line).unwrap();
    }
}

impl Drop for OtherMount {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    /// The previous release's number (poll only, fights backed off), from its README.
    before: String,
    tuned: String,
    ratio: String,
    target: String,
}

fn row(metric: impl Into<String>, forksafe: String, before: &str, target: String) -> Row {
    Row {
        metric: metric.into(),
        forksafe,
        before: before.into(),
        tuned: String::new(),
        ratio: String::new(),
        target,
    }
}

fn ratio(tuned: f64, ours: f64) -> String {
    if ours > 0.0 && tuned > 0.0 {
        format!("{:.1}x", tuned / ours)
    } else {
        "-".into()
    }
}

/// Drift -> repaired `DRIFTS_PER_KNOB` times per knob, the wrong value written by `write`.
fn drifts(t: &Target, d: &Daemon, write: &mut dyn FnMut(usize, &str)) -> (Duration, Duration) {
    let mut took = Vec::new();
    let mut per_knob: [Vec<u128>; 3] = Default::default();
    for i in 0..DRIFTS_PER_KNOB * 3 {
        // Spread the writes over the tick's phase.
        std::thread::sleep(Duration::from_millis((i as u64 * 373) % 1000));
        let (knob, wrong) = [(0, "0"), (1, "always"), (2, "always")][i % 3];
        // The drift begins when the wrong value is in place: when the write returns (a THP
        // write can spend milliseconds in the kernel starting or stopping khugepaged).
        write(knob, wrong);
        let start = Instant::now();
        match wait_in_spec(t, start) {
            Some(d) => {
                took.push(d);
                per_knob[knob].push(d.as_micros());
            }
            None => panic!(
                "forksafe did not repair {} within {REPAIR_PATIENCE:?}; knobs now {:?}; its log:\n{}",
                REAL_KNOBS[knob],
                (0..3)
                    .map(|i| read_knob(t.knob(i).to_str().unwrap()))
                    .collect::<Vec<_>>(),
                d.log()
            ),
        }
    }
    for (k, v) in per_knob.iter_mut().enumerate() {
        v.sort();
        eprintln!("  {}: {v:?} us", REAL_KNOBS[k]);
    }
    median_max(took)
}

/// Rows in order: start, VmHWM, PSS, CPU, floor, wakeups, drift (event), drift (no
/// event), flipper, binary.
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

    // A writer on the same mount: the inotify event repairs it.
    let (event_med, event_max) = drifts(t, &d, &mut |k, v| t.set(k, v));
    // A writer through another mount: no event; the poll repairs it.
    let no_event = if t.real {
        OtherMount::start().map(|mut other| {
            let rel = [
                "sys/vm/overcommit_memory",
                "kernel/mm/transparent_hugepage/enabled",
                "kernel/mm/transparent_hugepage/defrag",
            ];
            drifts(t, &d, &mut |k, v| {
                let file = if k == 0 {
                    format!("proc/{}", rel[0])
                } else {
                    format!("sys/{}", rel[k])
                };
                other.write(&file, v);
            })
        })
    } else {
        None
    };

    // A neighbour flipping overcommit 100 times a second for 60 s.
    let lines_before = d.log().lines().count();
    let cpu_before = usage(d.pid()).cpu_ns;
    let flip_for = idle_period();
    let begin = Instant::now();
    let mut flips = 0;
    while begin.elapsed() < flip_for {
        t.set(0, "0");
        flips += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    let flip_cpu = Duration::from_nanos(usage(d.pid()).cpu_ns - cpu_before);
    let _ = wait_in_spec(t, Instant::now());
    let flip_lines = d.log().lines().count() - lines_before;
    let share = flip_cpu.as_secs_f64() / flip_for.as_secs_f64();
    let (code, log) = d.stop();
    assert_eq!(code, 0, "{log}");

    let size = std::fs::metadata(BIN).unwrap().len();
    let floor_cpu = floor.as_ref().map(|f| f.cpu);
    let rows = vec![
        row(
            format!("start → knobs set + READY=1 (median / max of {STARTS})"),
            format!("{} / {}", ms(start_med), ms(start_max)),
            "2.09 ms / 3.50 ms",
            format!(
                "≤ 2 ms median: {}",
                ok(start_med <= Duration::from_millis(2))
            ),
        ),
        row(
            format!("peak RSS (VmHWM) after {} s", idle_period().as_secs()),
            format!("{:.2} MiB", hwm as f64 / 1024.0),
            "2.34 MiB",
            format!("≤ 2 MiB: {}", ok(hwm <= 2048)),
        ),
        row(
            format!(
                "PSS after {} s (shared libc pages divided among their users)",
                idle_period().as_secs()
            ),
            format!("{:.2} MiB", pss as f64 / 1024.0),
            "1.19 MiB",
            String::new(),
        ),
        row(
            format!("CPU over {} s idle", idle_period().as_secs()),
            match floor_cpu {
                Some(f) => format!(
                    "{} ({:.1}x the floor below)",
                    ms(cpu),
                    cpu.as_secs_f64() / f.as_secs_f64().max(1e-9)
                ),
                None => ms(cpu),
            },
            "6.28 ms (2.2x a Rust sleep loop)",
            match floor_cpu {
                Some(f) => format!("≤ 3x the floor: {}", ok(cpu <= f * 3)),
                None => "≤ 3x the floor: not measured (no cc)".into(),
            },
        ),
        row(
            format!(
                "CPU over {} s of a bare C program that only wakes once a second (this machine's floor)",
                idle_period().as_secs()
            ),
            floor_cpu.map_or("-".into(), ms),
            "",
            String::new(),
        ),
        row(
            "wakeups per second, idle",
            format!("{wakeups:.2}"),
            "1.00",
            String::new(),
        ),
        row(
            format!(
                "drift → repaired, writer on the same mount (inotify event; median / max of {DRIFTS_PER_KNOB} per knob)"
            ),
            format!("{} / {}", ms(event_med), ms(event_max)),
            "525.40 ms / 993.71 ms",
            format!(
                "≤ 5 ms median, ≤ 50 ms max: {}",
                ok(event_med <= Duration::from_millis(5) && event_max <= Duration::from_millis(50))
            ),
        ),
        row(
            format!(
                "drift → repaired, written through another procfs/sysfs mount (no event: the poll; median / max of {DRIFTS_PER_KNOB} per knob)"
            ),
            match no_event {
                Some((m, x)) => format!("{} / {}", ms(m), ms(x)),
                None => "not measured (needs root on the real kernel)".into(),
            },
            "525.40 ms / 993.71 ms",
            match no_event {
                Some((_, x)) => format!(
                    "≤ 1 interval (1 s) max: {}",
                    ok(x <= Duration::from_millis(1000))
                ),
                None => String::new(),
            },
        ),
        row(
            format!(
                "a neighbour writing the wrong value 100 times a second for {} s: CPU, log lines",
                flip_for.as_secs()
            ),
            format!(
                "{:.2}% of a core ({} over {flips} wrong writes), {flip_lines} lines",
                share * 100.0,
                ms(flip_cpu)
            ),
            "24 ms, 4 lines (it backed off: the knob was wrong most of the time)",
            format!(
                "≤ 5% of a core, ≤ 10 lines: {}",
                ok(share <= 0.05 && flip_lines <= 10)
            ),
        ),
        row(
            "stripped binary",
            format!("{:.0} KiB", size as f64 / 1024.0),
            "726 KiB",
            format!("≤ 2 MiB: {}", ok(size <= 2 * 1024 * 1024)),
        ),
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
    println!(
        "| metric | forksafe | before (0.1.0 as first released: poll only) | tuned | tuned / forksafe | forksafe target |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.metric, r.forksafe, r.before, r.tuned, r.ratio, r.target
        );
    }
}
