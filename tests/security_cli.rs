//! Confinement and interruption end to end, as root: Docker's default
//! seccomp profile in RUN and `kiln run` (off with `--security-opt
//! seccomp=unconfined`, replaced by a profile file), `RUN
//! --security=insecure` behind `--allow security.insecure`, signal
//! dispositions reset before the process starts, and SIGTERM/SIGINT
//! ending a build or a run within seconds whatever the process traps.
//! Builds use the default network (slirp4netns).
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test harness fails loudly"
)]

mod common;

use std::fs;
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use common::Kiln;
use common::build::{busybox, context};

fn run(kiln: &Kiln, args: &[&str]) -> (i32, String, String) {
    let output = kiln.command().arg("run").args(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// `unshare(CLONE_NEWUSER)` needs no capability, so only the seccomp
/// filter (no `CAP_SYS_ADMIN`: no unshare) denies it, with EPERM.
const PROBE: &str = "grep ^Seccomp: /proc/self/status; unshare -U true 2>&1; echo rc=$?";
const DENIED: &str = "Seccomp:\t2\nunshare: unshare(0x10000000): Operation not permitted\nrc=1\n";

#[test]
fn seccomp_applies_to_run_and_kiln_run_unless_unconfined() {
    let kiln = busybox();
    assert_eq!(kiln.ok(&["run", "bb:1", "sh", "-c", PROBE]), DENIED);
    assert_eq!(
        kiln.ok(&[
            "run",
            "--security-opt",
            "seccomp=unconfined",
            "bb:1",
            "sh",
            "-c",
            PROBE
        ]),
        "Seccomp:\t0\nrc=0\n"
    );
    let dir = context(
        &kiln,
        "ctx",
        &format!("FROM bb:1\nRUN ({PROBE}) > /probe\n"),
        &[],
    );
    kiln.ok(&["build", "-t", "probe:1", dir.to_str().unwrap()]);
    assert_eq!(kiln.ok(&["run", "probe:1", "cat", "/probe"]), DENIED);
}

#[test]
fn a_seccomp_profile_file_replaces_the_default_and_bad_options_are_named() {
    let kiln = busybox();
    // Docker's format: everything allowed but mkdir, which fails EACCES.
    let profile = kiln.path("profile.json");
    fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
    )
    .unwrap();
    let option = format!("seccomp={}", profile.display());
    let (code, out, err) = run(
        &kiln,
        &[
            "--security-opt",
            &option,
            "bb:1",
            "sh",
            "-c",
            "grep ^Seccomp: /proc/self/status; mkdir /tmp/x",
        ],
    );
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (
            1,
            "Seccomp:\t2\n",
            "mkdir: can't create directory '/tmp/x': Permission denied\n"
        )
    );
    for (value, message) in [
        (
            "seccomp=/nonexistent/p.json".to_owned(),
            "error: reading seccomp profile /nonexistent/p.json: No such file or directory (os error 2)\n".to_owned(),
        ),
        (
            "apparmor=unconfined".to_owned(),
            "error: invalid --security-opt \"apparmor=unconfined\": kiln supports seccomp=unconfined and seccomp=PROFILE.json\n".to_owned(),
        ),
    ] {
        assert_eq!(
            run(&kiln, &["--security-opt", &value, "bb:1", "true"]),
            (125, String::new(), message)
        );
    }
    fs::write(
        &profile,
        "{\"defaultAction\": \"SCMP_ACT_ALLOW\", \"syscalls\": 3}",
    )
    .unwrap();
    let (code, _, err) = run(&kiln, &["--security-opt", &option, "bb:1", "true"]);
    assert_eq!(code, 125);
    assert!(
        err.starts_with(&format!(
            "error: seccomp profile {}: invalid type: integer `3`, expected a sequence",
            profile.display()
        )),
        "{err}"
    );
}

#[test]
fn insecure_run_needs_the_entitlement_and_then_has_every_capability() {
    let kiln = busybox();
    let dir = context(
        &kiln,
        "ctx",
        "FROM bb:1\nRUN --security=insecure grep -E '^(CapEff|Seccomp):' /proc/self/status > /status\n",
        &[],
    );
    let stderr = kiln.fails(&["build", "-t", "insecure:1", dir.to_str().unwrap()]);
    assert!(
        stderr.contains(
            "error: Dockerfile:2:1: --security=insecure needs the security.insecure entitlement: pass --allow security.insecure to kiln build\n  |\n2 | RUN --security=insecure grep -E '^(CapEff|Seccomp):' /proc/self/status > /status\n  | ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
        ),
        "{stderr}"
    );
    kiln.ok(&[
        "build",
        "--allow",
        "security.insecure",
        "-t",
        "insecure:1",
        dir.to_str().unwrap(),
    ]);
    // Every capability of the host's bounding set, and no filter.
    let bounding = fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:\t").map(str::to_owned))
        .unwrap();
    assert_eq!(
        kiln.ok(&["run", "insecure:1", "cat", "/status"]),
        format!("CapEff:\t{bounding}\nSeccomp:\t0\n")
    );
    // A sandboxed RUN keeps Docker's set (0xa80425fb).
    let dir = context(
        &kiln,
        "ctx2",
        "FROM bb:1\nRUN grep -E '^(CapEff|Seccomp):' /proc/self/status > /status\n",
        &[],
    );
    kiln.ok(&["build", "-t", "sandbox:1", dir.to_str().unwrap()]);
    assert_eq!(
        kiln.ok(&["run", "sandbox:1", "cat", "/status"]),
        "CapEff:\t00000000a80425fb\nSeccomp:\t2\n"
    );
}

/// Waits for `child` to end, killing it (and failing) after `limit`.
fn wait_within(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn signals_start_at_their_defaults_in_run_and_kiln_run() {
    let kiln = busybox();
    // Exec form: no shell in between (busybox sh ignores SIGQUIT itself
    // when stdin is not a terminal).
    let wanted = "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n";
    assert_eq!(
        kiln.ok(&[
            "run",
            "bb:1",
            "grep",
            "-E",
            "^Sig(Blk|Ign)",
            "/proc/self/status"
        ]),
        wanted
    );
    // A pipeline whose writer must die of SIGPIPE, or the build never ends.
    let dir = context(
        &kiln,
        "ctx",
        "FROM bb:1\nRUN [\"grep\", \"-E\", \"^Sig(Blk|Ign)\", \"/proc/self/status\"]\nRUN [\"sh\", \"-c\", \"grep -E '^Sig(Blk|Ign)' /proc/self/status > /sig\"]\nRUN (while true; do echo x; done) | head -1 > /first\n",
        &[],
    );
    let mut child = kiln.spawn(&[
        "build",
        "--progress=plain",
        "-t",
        "sig:1",
        dir.to_str().unwrap(),
    ]);
    let status = wait_within(&mut child, Duration::from_mins(2), "the build");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("SigIgn:\t0000000000000000"), "{stderr}");
    assert_eq!(kiln.ok(&["run", "sig:1", "cat", "/first"]), "x\n");
}

/// Reads `child`'s stderr until a line ends with `needle` (plain progress
/// prints `#2 0.105 started` for the RUN's output); returns the reader for
/// the rest.
fn wait_for_line(child: &mut Child, needle: &str) -> BufReader<std::process::ChildStderr> {
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert_ne!(
            reader.read_line(&mut line).unwrap(),
            0,
            "ended before {needle:?}:\n{seen}"
        );
        seen.push_str(&line);
        if line.trim_end().ends_with(needle) {
            return reader;
        }
    }
}

fn assert_nothing_left(root: &Path, marker: &str) {
    assert!(
        common::processes_with(marker).is_empty(),
        "{:?}",
        common::processes_with(marker)
    );
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(root.to_str().unwrap()),
        "mounts left under the store:\n{mounts}"
    );
    let tmp: Vec<_> = fs::read_dir(root.join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "temporary files left: {tmp:?}");
}

#[test]
fn sigterm_ends_a_build_whatever_the_run_traps() {
    let kiln = busybox();
    let marker = format!("600.{}", std::process::id());
    for (name, script) in [
        (
            "trap",
            format!("trap 'echo trapped' TERM; echo started; while true; do sleep {marker}; done"),
        ),
        ("child", format!("echo started; sleep {marker}; echo done")),
        (
            "ignore",
            format!("trap '' TERM INT; echo started; sleep {marker}"),
        ),
        // Signalled as the step starts, maybe before its container exists.
        (
            "early",
            format!("trap '' TERM INT; echo started; sleep {marker}"),
        ),
    ] {
        let dir = context(&kiln, name, &format!("FROM bb:1\nRUN {script}\n"), &[]);
        let tag = format!("cancelled-{name}:1");
        let mut child = kiln.spawn(&[
            "build",
            "--progress=plain",
            "-t",
            &tag,
            dir.to_str().unwrap(),
        ]);
        // The step's title line ends with the script.
        let title = format!("sleep {marker}");
        let needle = if name == "early" { &title } else { " started" };
        let mut rest = wait_for_line(&mut child, needle);
        let start = Instant::now();
        // SAFETY: kill with a pid we spawned and a valid signal.
        assert_eq!(
            unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGTERM) },
            0
        );
        let status = wait_within(&mut child, Duration::from_mins(1), name);
        let took = start.elapsed();
        let mut stderr = String::new();
        rest.read_to_string(&mut stderr).unwrap();
        eprintln!("{name}: the build ended {took:?} after SIGTERM");
        assert!(!status.success(), "{name}: {stderr}");
        assert!(stderr.contains("build cancelled"), "{name}: {stderr}");
        // Measured ~1.1 s (the 1 s grace, then SIGKILL): within a few
        // seconds whatever the load.
        assert!(took < Duration::from_secs(10), "{name}: {took:?}");
        assert_nothing_left(&kiln.root(), &marker);
        assert!(
            kiln.fails(&["image", "inspect", &tag])
                .contains("no such image")
        );
    }
}

#[test]
fn sigterm_to_kiln_run_stops_the_container_after_the_stop_timeout() {
    let kiln = busybox();
    let marker = format!("601.{}", std::process::id());
    let mut child = kiln.spawn(&[
        "run",
        "--stop-timeout",
        "1",
        "bb:1",
        "sh",
        "-c",
        &format!("trap '' TERM INT; echo started >&2; sleep {marker}"),
    ]);
    let _rest = wait_for_line(&mut child, "started");
    let start = Instant::now();
    // SAFETY: kill with a pid we spawned and a valid signal.
    assert_eq!(
        unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGTERM) },
        0
    );
    let status = wait_within(&mut child, Duration::from_mins(1), "kiln run");
    eprintln!("kiln run ended {:?} after SIGTERM", start.elapsed());
    // Killed after the grace: Docker's 137.
    assert_eq!(status.code(), Some(137));
    assert_nothing_left(&kiln.root(), &marker);
}
