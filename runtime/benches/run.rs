//! Wall time of running `true` in a busybox rootfs through the API, 50
//! times each with and without the isolated network and the seccomp
//! filter; prints the median per run of each. Needs root, /bin/busybox
//! and slirp4netns.
//! Run with `cargo bench -p kiln-runtime --bench run`.

#![expect(clippy::unwrap_used, reason = "benchmark harness fails loudly")]

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use kiln_runtime::{Limits, Network, RunSpec, Seccomp};

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
    // What the isolated network and the seccomp filter each add to a run:
    // the same `true` under each combination, interleaved so that load
    // changes hit all of them alike.
    let configs = [
        ("none, unconfined", Network::None, Seccomp::Unconfined),
        ("none, seccomp", Network::None, Seccomp::Default),
        (
            "isolated, unconfined",
            Network::Isolated,
            Seccomp::Unconfined,
        ),
        ("isolated, seccomp", Network::Isolated, Seccomp::Default),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); configs.len()];
    for i in 0..50 {
        for (c, (_, network, seccomp)) in configs.iter().enumerate() {
            let upper = dir.path().join(format!("upper{i}-{c}"));
            fs::create_dir(&upper).unwrap();
            let spec = RunSpec {
                layers: vec![base.clone()],
                upper,
                argv: vec!["true".into()],
                env: vec!["PATH=/bin".into()],
                cwd: "/".into(),
                user: "root".into(),
                hostname: "bench".into(),
                network: *network,
                seccomp: seccomp.clone(),
                privileged: false,
                stop_timeout: Duration::from_secs(10),
                mounts: Vec::new(),
                limits: Limits::default(),
                capture: true,
                tty: false,
                interactive: false,
            };
            let start = Instant::now();
            let outcome = kiln_runtime::run_with_init(&spec, init).unwrap();
            times[c].push(start.elapsed());
            assert_eq!(outcome.exit_code, 0, "{outcome:?}");
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for ((name, _, _), mut runs) in configs.iter().zip(times) {
        runs.sort();
        println!(
            "kiln-runtime: 50 runs of `true`, {name}: median {:.2} ms, min {:.2} ms, max {:.2} ms",
            ms(runs[runs.len() / 2]),
            ms(runs[0]),
            ms(runs[runs.len() - 1]),
        );
    }
}
