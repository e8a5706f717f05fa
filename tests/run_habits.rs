//! What a Docker user expects of `kiln run` (issue 16): the process is
//! PID 1 unless `--init`, `-t` gives it a terminal of its own, USER's
//! supplementary groups and `--group-add`, exit codes, and volumes. Each
//! test asserts what `docker run` does. They need root (namespaces,
//! mounts), as tests/run_cli.rs.
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::io::{BufRead as _, BufReader};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
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

/// A pseudo-terminal of the test's (master, slave), `rows` x `columns`.
fn host_terminal(rows: u16, columns: u16) -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (0, 0);
    let size = libc::winsize {
        ws_row: rows,
        ws_col: columns,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: valid out-pointers and window size; no name or termios.
    let ret = unsafe {
        libc::openpty(
            &raw mut master,
            &raw mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &raw const size,
        )
    };
    assert_eq!(ret, 0, "openpty: {}", std::io::Error::last_os_error());
    // Raw, as a terminal emulator's under `docker run -it`: what the
    // container's terminal writes arrives as it is.
    // SAFETY: termios is plain data that tcgetattr fills in.
    unsafe {
        let mut term: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(slave, &raw mut term), 0);
        libc::cfmakeraw(&raw mut term);
        assert_eq!(libc::tcsetattr(slave, libc::TCSANOW, &raw const term), 0);
    }
    // SAFETY: openpty returned two descriptors we now own.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// Starts `kiln run ARGS` with the terminal `slave` as its stdio and
/// controlling terminal (a session of its own), as from a shell.
fn spawn_on_terminal(kiln: &Kiln, slave: &OwnedFd, args: &[&str]) -> std::process::Child {
    use std::os::unix::process::CommandExt as _;
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("kiln"));
    command
        .arg("--root")
        .arg(kiln.root())
        .arg("run")
        .args(args)
        .env_remove("KILN_ROOT")
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap());
    // SAFETY: setsid and ioctl are async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn().unwrap()
}

/// Reads `master` until its text contains `needle` (or the terminal
/// closes, or 30 s pass); returns all read.
fn read_until(master: &OwnedFd, needle: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut text = Vec::new();
    while !String::from_utf8_lossy(&text).contains(needle) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut poll = libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready =
            unsafe { libc::poll(&raw mut poll, 1, i32::try_from(left.as_millis()).unwrap()) };
        if ready <= 0 {
            break;
        }
        let mut buf = [0u8; 4096];
        // SAFETY: reads into a buffer of its length.
        let got = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        let Ok(got) = usize::try_from(got) else { break };
        if got == 0 {
            break;
        }
        text.extend_from_slice(&buf[..got]);
    }
    String::from_utf8_lossy(&text).into_owned()
}

#[test]
fn tty_is_a_terminal_of_the_containers_own() {
    let kiln = busybox();
    let (master, slave) = host_terminal(33, 111);
    let mut child = spawn_on_terminal(
        &kiln,
        &slave,
        &[
            "-t",
            "bb:1",
            "sh",
            "-c",
            "tty; stty size; echo $TERM; stat -c '%u %g %a' /dev/pts/0; echo end",
        ],
    );
    drop(slave);
    let out = read_until(&master, "end\r\n");
    assert_eq!(child.wait().unwrap().code(), Some(0), "{out}");
    assert_eq!(out, "/dev/pts/0\r\n33 111\r\nxterm\r\n0 5 620\r\nend\r\n");
    // The image's TERM or -e's wins; the terminal is the user's.
    let (master, slave) = host_terminal(10, 20);
    let mut child = spawn_on_terminal(
        &kiln,
        &slave,
        &[
            "-t",
            "-e",
            "TERM=vt100",
            "-u",
            "app",
            "bb:1",
            "sh",
            "-c",
            "echo $TERM; stat -c '%u' $(tty); echo end",
        ],
    );
    drop(slave);
    let out = read_until(&master, "end\r\n");
    assert_eq!(child.wait().unwrap().code(), Some(0), "{out}");
    assert_eq!(out, "vt100\r\n1000\r\nend\r\n");
    // Without -t, stdin is no terminal.
    assert_eq!(
        run(&kiln, &["bb:1", "sh", "-c", "tty; echo $?"]),
        (0, "not a tty\n1\n".to_owned(), String::new())
    );
}

#[test]
fn tty_window_size_changes_reach_the_container() {
    let kiln = busybox();
    let (master, slave) = host_terminal(24, 80);
    let mut child = spawn_on_terminal(
        &kiln,
        &slave,
        &[
            "-t",
            "bb:1",
            "sh",
            "-c",
            "trap 'stty size; exit 3' WINCH; stty size; echo ready; while :; do sleep 0.01; done",
        ],
    );
    drop(slave);
    let out = read_until(&master, "ready\r\n");
    assert_eq!(out, "24 80\r\nready\r\n");
    let size = libc::winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize; the kernel signals kiln, the
    // terminal's foreground process.
    assert_eq!(
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &raw const size) },
        0
    );
    let out = read_until(&master, "40 120\r\n");
    assert_eq!(out, "40 120\r\n");
    assert_eq!(child.wait().unwrap().code(), Some(3));
}

#[test]
fn users_get_their_groups_and_group_add_more() {
    let kiln = busybox();
    // app is a member of staff (50) in the image's /etc/group (the
    // kernel keeps groups sorted).
    assert_eq!(
        run(&kiln, &["-u", "app", "bb:1", "id"]),
        (
            0,
            "uid=1000(app) gid=1000(app) groups=50(staff),1000(app)\n".to_owned(),
            String::new()
        )
    );
    assert_eq!(
        run(
            &kiln,
            &[
                "--group-add",
                "staff",
                "--group-add",
                "777",
                "bb:1",
                "id",
                "-G"
            ]
        ),
        (0, "0 50 777\n".to_owned(), String::new())
    );
    assert_eq!(
        run(
            &kiln,
            &[
                "-u",
                "app",
                "--group-add",
                "50",
                "--group-add",
                "root",
                "bb:1",
                "id",
                "-G"
            ]
        )
        .1,
        "1000 0 50\n"
    );
    let (code, out, err) = run(&kiln, &["--group-add", "nosuch", "bb:1", "id"]);
    assert_eq!((code, out.as_str()), (125, ""), "{err}");
    assert!(
        err.contains("Unable to find group nosuch: no matching entries in group file"),
        "{err}"
    );
}

#[test]
fn kiln_failures_exit_125_in_dockers_words() {
    let kiln = busybox();
    let cpus = std::thread::available_parallelism().unwrap().get();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--pull", "never", "nosuch:1"],
            "error: no such image: nosuch:1\n",
        ),
        (
            &["-u", "nobodyx", "bb:1", "true"],
            "unable to find user nobodyx: no matching entries in passwd file",
        ),
        (
            &["-u", "app:nogroupx", "bb:1", "true"],
            "unable to find group nogroupx: no matching entries in group file",
        ),
        (
            &["--memory", "1k", "bb:1", "true"],
            "error: Minimum memory limit allowed is 6MB\n",
        ),
        (
            &["--cpus", "100000", "bb:1", "true"],
            &format!(
                "error: range of CPUs is from 0.01 to {cpus}.00, as there are only {cpus} CPUs available\n"
            ),
        ),
        (
            &["--pids-limit", "x", "bb:1", "true"],
            "error: invalid argument \"x\" for \"--pids-limit\" flag: expected a positive integer\n",
        ),
        (
            &["-w", "relative", "bb:1", "true"],
            "error: the working directory 'relative' is invalid, it needs to be an absolute path\n",
        ),
        (
            &["--network", "bogus", "bb:1", "true"],
            "error: network bogus not found: kiln has default (bridge), host and none\n",
        ),
        (
            &["--stop-timeout", "soon", "bb:1", "true"],
            "invalid value 'soon'",
        ),
        (
            &["--pull", "sometimes", "bb:1", "true"],
            "invalid value 'sometimes'",
        ),
    ];
    for (args, message) in cases {
        let (code, out, err) = run(&kiln, args);
        assert_eq!((code, out.as_str()), (125, ""), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
    // The process's own codes: not found, not executable, its exit code.
    assert_eq!(run(&kiln, &["bb:1", "/nonexistent"]).0, 127);
    assert_eq!(run(&kiln, &["bb:1", "/etc/passwd"]).0, 126);
    assert_eq!(run(&kiln, &["bb:1", "sh", "-c", "exit 125"]).0, 125);
}
