//! What a Docker user expects of `kiln run` (issue 16): the process is
//! PID 1 unless `--init`, `-t` gives it a terminal of its own, USER's
//! supplementary groups and `--group-add`, exit codes, and volumes. Each
//! test asserts what `docker run` does. They need root (namespaces,
//! mounts), as tests/run_cli.rs.
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::symlink;

use common::Kiln;

/// Applets the tests call, beside those of [`common::busybox_rootfs`].
const APPLETS: &[&str] = &[
    "tty", "stty", "sleep", "kill", "grep", "wc", "touch", "stat", "mkdir", "rm", "mv", "test", "[",
];

/// A store with `bb:1`, a busybox image with an `app` user.
fn busybox() -> Kiln {
    assert!(
        is_root(),
        "kiln run tests need root (namespaces, mounts); CI runs them as root"
    );
    let kiln = Kiln::new();
    let rootfs = kiln.path("rootfs");
    common::busybox_rootfs(&rootfs);
    common::add_app_user(&rootfs);
    for applet in APPLETS {
        symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    kiln.ok(&["import", rootfs.to_str().unwrap(), "bb:1"]);
    kiln
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `kiln run ARGS`, returning (exit code, stdout, stderr).
fn run(kiln: &Kiln, args: &[&str]) -> (i32, String, String) {
    let output = kiln.command().arg("run").args(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn the_process_is_pid_1_unless_init() {
    let kiln = busybox();
    assert_eq!(
        run(&kiln, &["bb:1", "sh", "-c", "echo $$"]),
        (0, "1\n".to_owned(), String::new())
    );
    // As PID 1 without a handler, a shell ignores the TERM it sends
    // itself (the kernel protects a namespace's init), as under Docker.
    assert_eq!(
        run(&kiln, &["bb:1", "sh", "-c", "kill -TERM $$; echo alive"]),
        (0, "alive\n".to_owned(), String::new())
    );
    // Behind --init it is not PID 1, and dies of it.
    let (code, out, err) = run(&kiln, &["--init", "bb:1", "sh", "-c", "echo $$"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.trim().parse::<u32>().unwrap() >= 2, "{out}");
    assert_eq!(
        run(&kiln, &["--init", "bb:1", "sh", "-c", "kill -TERM $$"]).0,
        143
    );
    assert_eq!(run(&kiln, &["--init", "bb:1", "sh", "-c", "exit 42"]).0, 42);
}

#[test]
fn init_reaps_orphans_and_forwards_signals() {
    let kiln = busybox();
    // An orphan (its parent, a subshell, exits at once) is reparented to
    // PID 1: the init reaps it, so its /proc entry goes and no zombie is
    // left.
    let script = r#"
        (sh -c 'echo $$ > /orphan.new && mv /orphan.new /orphan' &)
        n=0
        while [ ! -e /orphan ] && [ $n -lt 1000 ]; do sleep 0.01; n=$((n+1)); done
        pid=$(cat /orphan); n=0
        while [ -e /proc/$pid ] && [ $n -lt 1000 ]; do sleep 0.01; n=$((n+1)); done
        [ -e /proc/$pid ] && echo "not reaped: $(cat /proc/$pid/status | grep State)"
        echo zombies: $(grep -l 'State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l)
    "#;
    assert_eq!(
        run(&kiln, &["--init", "bb:1", "sh", "-c", script]),
        (0, "zombies: 0\n".to_owned(), String::new())
    );
    // A TERM sent to PID 1, the init, reaches the process.
    assert_eq!(
        run(
            &kiln,
            &[
                "--init",
                "bb:1",
                "sh",
                "-c",
                "trap 'echo got TERM; exit 7' TERM; kill -TERM 1; while :; do sleep 0.01; done",
            ]
        ),
        (7, "got TERM\n".to_owned(), String::new())
    );
    // A TERM sent to kiln reaches the process, behind --init or as PID 1
    // with a handler.
    for init in [true, false] {
        let mut args = vec!["run"];
        if init {
            args.push("--init");
        }
        args.extend([
            "bb:1",
            "sh",
            "-c",
            "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.01; done",
        ]);
        let mut child = kiln.spawn(&args);
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");
        // SAFETY: kill with a valid pid and signal.
        unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGTERM) };
        line.clear();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "got TERM\n", "init: {init}");
        assert_eq!(child.wait().unwrap().code(), Some(7), "init: {init}");
    }
}
