//! Wall time of running `true` in a busybox rootfs through the API, with
//! and without the isolated network (made for the run, as `kiln run`
//! does, or leased from a pool, as RUN steps are) and the seccomp filter;
//! prints the median per run of each: 50 runs one after another, then 20
//! rounds of three runs started at once. Needs root, /bin/busybox and
//! slirp4netns.
//! Run with `cargo bench -p kiln-runtime --bench run`.

#![expect(clippy::unwrap_used, reason = "benchmark harness fails loudly")]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kiln_runtime::{Limits, Network, NetworkPool, RunSpec, Seccomp};

/// How a run gets its network.
#[derive(Clone, Copy)]
enum Net {
    None,
    /// slirp4netns started by the run's init.
    PerRun,
    /// Leased from a pool.
    Pooled,
}

struct Bench {
    dir: tempfile::TempDir,
    base: PathBuf,
    init: &'static Path,
    uppers: AtomicUsize,
}

impl Bench {
    fn run(&self, net: Net, seccomp: &Seccomp, pool: &NetworkPool) -> Duration {
        let upper = self.dir.path().join(format!(
            "upper{}",
            self.uppers.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir(&upper).unwrap();
        let spec = RunSpec {
            layers: vec![self.base.clone()],
            upper,
            argv: vec!["true".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            user: "root".into(),
            hostname: "bench".into(),
            network: match net {
                Net::None => Network::None,
                Net::PerRun | Net::Pooled => Network::Isolated,
            },
            seccomp: seccomp.clone(),
            privileged: false,
            stop_timeout: Duration::from_secs(10),
            mounts: Vec::new(),
            limits: Limits::default(),
            capture: true,
            tty: false,
            interactive: false,
            init: true,
            group_add: Vec::new(),
            read_only_root: false,
        };
        let pool = matches!(net, Net::Pooled).then_some(pool);
        let start = Instant::now();
        let outcome = kiln_runtime::run_with_init(&spec, self.init, pool).unwrap();
        let elapsed = start.elapsed();
        assert_eq!(outcome.exit_code, 0, "{outcome:?}");
        elapsed
    }
}

/// Prints the median, min and max of `runs` (`unit`: what one is).
fn report(unit: &str, what: &str, mut runs: Vec<Duration>) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    runs.sort();
    println!(
        "kiln-runtime: {} {unit}, {what}: median {:.2} ms, min {:.2} ms, max {:.2} ms",
        runs.len(),
        ms(runs[runs.len() / 2]),
        ms(runs[0]),
        ms(runs[runs.len() - 1]),
    );
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !Path::new("/bin/busybox").exists() {
        println!("SKIPPED: needs root and /bin/busybox");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    fs::create_dir_all(base.join("bin")).unwrap();
    fs::create_dir_all(base.join("etc")).unwrap();
    fs::copy("/bin/busybox", base.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", base.join("bin/true")).unwrap();
    fs::write(base.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    let bench = Bench {
        dir,
        base,
        init: Path::new(env!("CARGO_BIN_EXE_kiln-test-init")),
        uppers: AtomicUsize::new(0),
    };
    // What the isolated network and the seccomp filter each add to a run:
    // the same `true` under each combination, interleaved so that load
    // changes hit all of them alike.
    let configs = [
        ("none, unconfined", Net::None, Seccomp::Unconfined),
        ("none, seccomp", Net::None, Seccomp::Default),
        (
            "isolated per run, unconfined",
            Net::PerRun,
            Seccomp::Unconfined,
        ),
        ("isolated per run, seccomp", Net::PerRun, Seccomp::Default),
        (
            "isolated pooled, unconfined",
            Net::Pooled,
            Seccomp::Unconfined,
        ),
        ("isolated pooled, seccomp", Net::Pooled, Seccomp::Default),
    ];
    let pool = NetworkPool::new();
    pool.prewarm(1);
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); configs.len()];
    for _ in 0..50 {
        for (c, (_, net, seccomp)) in configs.iter().enumerate() {
            times[c].push(bench.run(*net, seccomp, &pool));
        }
    }
    for ((name, _, _), runs) in configs.iter().zip(times) {
        report("runs of `true`", name, runs);
    }
    drop(pool);

    // Three runs started at once, as three stages' RUN steps: each run's
    // own time, and the time until all three are done.
    let at_once = [
        ("3 at once, none, seccomp", Net::None),
        ("3 at once, isolated per run, seccomp", Net::PerRun),
        ("3 at once, isolated pooled, seccomp", Net::Pooled),
    ];
    let pool = NetworkPool::new();
    pool.prewarm(3);
    let mut runs: Vec<Vec<Duration>> = vec![Vec::new(); at_once.len()];
    let mut rounds: Vec<Vec<Duration>> = vec![Vec::new(); at_once.len()];
    for _ in 0..20 {
        for (c, (_, net)) in at_once.iter().enumerate() {
            let start = Instant::now();
            let each: Vec<Duration> = std::thread::scope(|scope| {
                let threads: Vec<_> = (0..3)
                    .map(|_| scope.spawn(|| bench.run(*net, &Seccomp::Default, &pool)))
                    .collect();
                threads.into_iter().map(|t| t.join().unwrap()).collect()
            });
            rounds[c].push(start.elapsed());
            runs[c].extend(each);
        }
    }
    for (((name, _), each), round) in at_once.iter().zip(runs).zip(rounds) {
        report("runs of `true`", name, each);
        report("rounds, until all 3 are done", name, round);
    }
    drop(pool);
    kiln_runtime::wait_for_helpers();
}
