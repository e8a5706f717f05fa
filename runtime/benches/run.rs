//! Wall time of running `true` in a busybox rootfs through the API, 100
//! times; prints the median per run. Needs root and /bin/busybox.
//! Run with `cargo bench -p kiln-runtime --bench run`.

#![expect(clippy::unwrap_used, reason = "benchmark harness fails loudly")]

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use kiln_runtime::{Limits, Network, RunSpec};

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
    let init = Path::new(env!("CARGO_BIN_EXE_kiln-test-init"));
    let mut times: Vec<Duration> = Vec::new();
    for i in 0..100 {
        let upper = dir.path().join(format!("upper{i}"));
        fs::create_dir(&upper).unwrap();
        let spec = RunSpec {
            layers: vec![base.clone()],
            upper,
            argv: vec!["true".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            user: "root".into(),
            hostname: "bench".into(),
            network: Network::None,
            mounts: Vec::new(),
            limits: Limits::default(),
            capture: true,
            tty: false,
            interactive: false,
        };
        let start = Instant::now();
        let outcome = kiln_runtime::run_with_init(&spec, init).unwrap();
        times.push(start.elapsed());
        assert_eq!(outcome.exit_code, 0);
    }
    times.sort();
    let median = times[times.len() / 2];
    let total: Duration = times.iter().sum();
    println!(
        "kiln-runtime: 100 runs of `true`: median {:.1} ms, min {:.1} ms, max {:.1} ms, total {:.2} s",
        median.as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        total.as_secs_f64()
    );
}
