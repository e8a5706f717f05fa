//! What a Docker user expects of `kiln run` (issue 16): the process is
//! PID 1 unless `--init`, `-t` gives it a terminal of its own, USER's
//! supplementary groups and `--group-add`, exit codes, and volumes. Each
//! test asserts what `docker run` does. They need root (namespaces,
//! mounts), as `tests/run_cli.rs`.
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::fs;
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
        common::is_root(),
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

/// Runs `kiln run ARGS`, returning (exit code, stdout, stderr).
fn run(kiln: &Kiln, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    kiln.outcome(&all)
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

/// A kiln process that is killed if the test fails before it ends.
struct Running(std::process::Child);

impl Running {
    fn wait(&mut self) -> std::process::ExitStatus {
        self.0.wait().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `kiln run ARGS` with the terminal `slave` as its stdio and
/// controlling terminal (a session of its own), as from a shell.
fn spawn_on_terminal(kiln: &Kiln, slave: &OwnedFd, args: &[&str]) -> Running {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    spawn_kiln_on_terminal(kiln, slave, &all)
}

/// `kiln ARGS` in a session of its own whose controlling terminal is
/// `slave`.
fn spawn_kiln_on_terminal(kiln: &Kiln, slave: &OwnedFd, args: &[&str]) -> Running {
    use std::os::unix::process::CommandExt as _;
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("kiln"));
    command
        .arg("--root")
        .arg(kiln.root())
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
    Running(command.spawn().unwrap())
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
    assert_eq!(child.wait().code(), Some(0), "{out}");
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
    assert_eq!(child.wait().code(), Some(0), "{out}");
    assert_eq!(out, "vt100\r\n1000\r\nend\r\n");
    // Without -t, stdin is no terminal.
    assert_eq!(
        run(&kiln, &["bb:1", "sh", "-c", "tty; echo $?"]),
        (0, "not a tty\n1\n".to_owned(), String::new())
    );
}

#[test]
fn exec_t_gets_a_terminal_of_the_containers_own() {
    let kiln = busybox();
    let id = kiln
        .ok(&["run", "-d", "--network", "none", "bb:1", "sleep", "600"])
        .trim()
        .to_owned();
    let (master, slave) = host_terminal(33, 111);
    let mut child = spawn_kiln_on_terminal(
        &kiln,
        &slave,
        &[
            "exec",
            "-t",
            &id,
            "sh",
            "-c",
            "tty; stty size; echo $TERM; echo end",
        ],
    );
    drop(slave);
    let out = read_until(&master, "end\r\n");
    assert_eq!(child.wait().code(), Some(0), "{out}");
    // The container's devpts (its main process has no terminal, so this
    // is its first), the caller's size, TERM=xterm as Docker's exec -t.
    assert_eq!(out, "/dev/pts/0\r\n33 111\r\nxterm\r\nend\r\n");
    kiln.ok(&["rm", "-f", &id]);
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
    assert_eq!(child.wait().code(), Some(3));
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
            "error: network bogus not found",
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

/// Adds `bb:vol` to `kiln`'s store: busybox with `/srv/content` and
/// `/data` (each holding `seed`, owned by 1000:50, modes 0750 and 0640)
/// and `VOLUME /data`.
fn volume_image(kiln: &Kiln) {
    use std::os::unix::fs::PermissionsExt as _;
    let rootfs = kiln.path("rootfs-vol");
    common::busybox_rootfs(&rootfs);
    for applet in APPLETS {
        symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    for dir in ["srv/content", "data"] {
        let dir = rootfs.join(dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("seed"), "from image\n").unwrap();
        fs::set_permissions(dir.join("seed"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).unwrap();
        std::os::unix::fs::chown(&dir, Some(1000), Some(50)).unwrap();
        std::os::unix::fs::chown(dir.join("seed"), Some(1000), Some(50)).unwrap();
    }
    kiln.ok(&[
        "import",
        rootfs.to_str().unwrap(),
        "bb:vol",
        "--change",
        "VOLUME /data",
    ]);
}

#[test]
fn named_volumes_persist_and_are_filled_on_first_use_only() {
    let kiln = busybox();
    volume_image(&kiln);
    assert_eq!(kiln.ok(&["volume", "create", "data"]), "data\n");
    assert_eq!(
        kiln.ok(&["volume", "ls"]),
        "DRIVER    VOLUME NAME\nlocal     data\n"
    );
    // `system df -v` lists it, unused.
    let df = kiln.ok(&["system", "df", "-v"]);
    let volumes = df.split("Local Volumes space usage:").nth(1).unwrap();
    assert!(
        volumes
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["data", "0", "0B"]),
        "{df}"
    );
    let stat = "stat -c '%u %g %a' /srv/content /srv/content/seed";
    assert_eq!(
        run(
            &kiln,
            &[
                "-v",
                "data:/srv/content",
                "bb:vol",
                "sh",
                "-c",
                &format!("cat /srv/content/seed; {stat}; echo new > /srv/content/written"),
            ]
        ),
        (
            0,
            "from image\n1000 50 750\n1000 50 640\n".to_owned(),
            String::new()
        )
    );
    // The next run sees what the first wrote; emptied, it stays empty.
    assert_eq!(
        run(
            &kiln,
            &[
                "-v",
                "data:/srv/content",
                "bb:vol",
                "sh",
                "-c",
                "cat /srv/content/written; rm /srv/content/seed /srv/content/written",
            ]
        ),
        (0, "new\n".to_owned(), String::new())
    );
    assert_eq!(
        run(
            &kiln,
            &[
                "-v",
                "data:/srv/content",
                "bb:vol",
                "ls",
                "-A",
                "/srv/content"
            ]
        )
        .1,
        ""
    );
    let data = kiln.root().join("volumes/data/_data");
    assert_eq!(fs::read_dir(&data).unwrap().count(), 0);
    // Made on first use, by -v and by --mount; nocopy leaves it empty.
    assert_eq!(
        run(
            &kiln,
            &[
                "-v",
                "fresh:/srv/content:ro",
                "bb:vol",
                "cat",
                "/srv/content/seed"
            ]
        )
        .1,
        "from image\n"
    );
    assert_eq!(
        run(
            &kiln,
            &[
                "--mount",
                "type=volume,src=empty,dst=/srv/content,volume-nocopy",
                "bb:vol",
                "ls",
                "-A",
                "/srv/content"
            ]
        ),
        (0, String::new(), String::new())
    );
    // The image's VOLUME got anonymous volumes, removed with each run.
    assert_eq!(kiln.ok(&["volume", "ls", "-q"]), "data\nempty\nfresh\n");
    let inspect: serde_json::Value =
        serde_json::from_str(&kiln.ok(&["volume", "inspect", "data"])).unwrap();
    assert_eq!(inspect[0]["Name"], "data");
    assert_eq!(inspect[0]["Driver"], "local");
    assert_eq!(inspect[0]["Mountpoint"], data.display().to_string());
    let df = kiln.ok(&["system", "df"]);
    assert!(df.contains("\nLocal Volumes  3         0         "), "{df}");
    assert!(kiln.ok(&["system", "check"]).contains("is consistent"));
}

#[test]
fn volumes_in_use_are_not_removed() {
    let kiln = busybox();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kiln"))
        .arg("--root")
        .arg(kiln.root())
        .args([
            "run",
            "-i",
            "-v",
            "held:/held",
            "bb:1",
            "sh",
            "-c",
            "echo ready; read x; exit 0",
        ])
        .env_remove("KILN_ROOT")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    let err = kiln.fails(&["volume", "rm", "held"]);
    let id = err
        .strip_prefix("error: remove held: volume is in use - [")
        .and_then(|rest| rest.strip_suffix("]\n"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{err}"
    );
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    assert_eq!(kiln.ok(&["volume", "rm", "held"]), "held\n");
    assert_eq!(
        kiln.fails(&["volume", "rm", "held"]),
        "error: get held: no such volume\n"
    );
    assert_eq!(kiln.ok(&["volume", "rm", "-f", "held"]), "");
    // prune: anonymous volumes only, unless -a.
    kiln.ok(&["volume", "create", "keep"]);
    assert_eq!(
        kiln.ok(&["volume", "prune", "-f"]),
        "Total reclaimed space: 0B\n"
    );
    assert_eq!(
        kiln.ok(&["volume", "prune", "-a", "-f"]),
        "Deleted Volumes:\nkeep\n\nTotal reclaimed space: 0B\n"
    );
    assert_eq!(
        kiln.fails(&["volume", "create", "a/b"]),
        "error: create a/b: \"a/b\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path\n"
    );
}

#[test]
fn image_volumes_get_the_image_content_and_never_leave_the_root() {
    let kiln = busybox();
    volume_image(&kiln);
    assert_eq!(
        run(
            &kiln,
            &[
                "bb:vol",
                "sh",
                "-c",
                "cat /data/seed; grep -c ' /data ' /proc/self/mountinfo"
            ]
        ),
        (0, "from image\n1\n".to_owned(), String::new())
    );
    // `-v /path` is an anonymous volume too.
    assert_eq!(
        run(
            &kiln,
            &[
                "-v",
                "/cache",
                "bb:1",
                "grep",
                "-c",
                " /cache ",
                "/proc/self/mountinfo"
            ]
        ),
        (0, "1\n".to_owned(), String::new())
    );
    assert_eq!(kiln.ok(&["volume", "ls", "-q"]), "");
    // VOLUME through a symlink that points out of the root: resolved in
    // the root, so the host directory is neither shown nor written.
    let host = kiln.path("host-dir");
    fs::create_dir(&host).unwrap();
    fs::write(host.join("canary"), "host\n").unwrap();
    let rootfs = kiln.path("rootfs-evil");
    common::busybox_rootfs(&rootfs);
    symlink(&host, rootfs.join("data")).unwrap();
    kiln.ok(&[
        "import",
        rootfs.to_str().unwrap(),
        "evil:1",
        "--change",
        "VOLUME /data",
    ]);
    assert_eq!(
        run(
            &kiln,
            &["evil:1", "sh", "-c", "ls -A /data/; echo x > /data/written"]
        ),
        (0, String::new(), String::new())
    );
    assert_eq!(
        fs::read_dir(&host).unwrap().count(),
        1,
        "the host directory was written"
    );
}

#[test]
fn read_only_root_tmpfs_and_mount_specs() {
    let kiln = busybox();
    let (code, _, err) = run(&kiln, &["--read-only", "bb:1", "sh", "-c", "echo x > /x"]);
    assert_ne!(code, 0);
    assert!(err.contains("Read-only file system"), "{err}");
    assert_eq!(
        run(
            &kiln,
            &[
                "--read-only",
                "--tmpfs",
                "/scratch:size=64k,mode=700",
                "bb:1",
                "sh",
                "-c",
                "echo hi > /scratch/f && cat /scratch/f && grep ' /scratch ' /proc/self/mountinfo && stat -c %a /scratch"
            ]
        )
        .1
        .lines()
        .map(|l| if l.contains(" tmpfs ") && l.contains("size=64k") {
            "tmpfs"
        } else {
            l
        })
        .collect::<Vec<_>>(),
        ["hi", "tmpfs", "700"]
    );
    let host = kiln.path("bind");
    fs::create_dir(&host).unwrap();
    fs::write(host.join("f"), "bound\n").unwrap();
    let bind = format!("type=bind,source={},target=/b,readonly", host.display());
    let (code, out, err) = run(
        &kiln,
        &[
            "--mount",
            &bind,
            "--mount",
            "type=tmpfs,destination=/t,tmpfs-size=1m",
            "bb:1",
            "sh",
            "-c",
            "cat /b/f; grep -c ' /t .* tmpfs ' /proc/self/mountinfo; echo y > /b/g",
        ],
    );
    assert_eq!((code, out.as_str()), (1, "bound\n1\n"), "{err}");
    assert!(err.contains("Read-only file system"), "{err}");
    let cases: &[(&[&str], &str)] = &[
        (
            &["--mount", "type=volume,source=x"],
            "error: invalid argument \"type=volume,source=x\" for \"--mount\" flag: target is required\n",
        ),
        (
            &["--mount", "type=bind,src=/nonexistent-kiln,dst=/x"],
            "error: invalid argument \"type=bind,src=/nonexistent-kiln,dst=/x\" for \"--mount\" flag: invalid mount config for type \"bind\": bind source path does not exist: /nonexistent-kiln\n",
        ),
        (
            &["--mount", "type=tmpfs,target=/x,volume-nocopy"],
            "error: invalid argument \"type=tmpfs,target=/x,volume-nocopy\" for \"--mount\" flag: cannot mix 'volume-*' options with mount type 'tmpfs'\n",
        ),
        (
            &["-v", "vol:/d", "--tmpfs", "/d/"],
            "error: Duplicate mount point: /d\n",
        ),
        (
            &["--tmpfs", "relative"],
            "error: invalid mount config for type \"tmpfs\": invalid mount path: 'relative' mount path must be absolute\n",
        ),
    ];
    for (args, message) in cases {
        let mut all = args.to_vec();
        all.extend(["bb:1", "true"]);
        assert_eq!(
            run(&kiln, &all),
            (125, String::new(), (*message).to_owned())
        );
    }
}

#[test]
fn containers_starting_together_fill_a_new_volume_once() {
    let kiln = busybox();
    volume_image(&kiln);
    let children: Vec<_> = (0..4)
        .map(|_| {
            kiln.spawn(&[
                "run",
                "-v",
                "race:/srv/content",
                "bb:vol",
                "cat",
                "/srv/content/seed",
            ])
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert_eq!(
            (
                output.status.code(),
                String::from_utf8_lossy(&output.stdout).into_owned()
            ),
            (Some(0), "from image\n".to_owned()),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn a_kept_container_holds_its_volumes_until_removed() {
    let kiln = busybox();
    volume_image(&kiln);
    // A named volume and the image's VOLUME /data (anonymous), both filled
    // from the image; the container writes to the named one and exits.
    kiln.ok(&[
        "run",
        "--name",
        "keeper",
        "--network",
        "none",
        "-v",
        "kept:/srv/content",
        "bb:vol",
        "sh",
        "-c",
        "cat /srv/content/seed /data/seed; echo mine > /srv/content/mine",
    ]);
    let anonymous: Vec<String> = kiln
        .ok(&["volume", "ls", "-q"])
        .lines()
        .filter(|l| l.len() == 64)
        .map(str::to_owned)
        .collect();
    assert_eq!(anonymous.len(), 1, "the image's VOLUME got one");
    // Exited, it still holds both, as Docker's containers do.
    let id = kiln
        .ok(&["inspect", "--type", "container", "-f", "{{.Id}}", "keeper"])
        .trim()
        .to_owned();
    assert_eq!(
        kiln.fails(&["volume", "rm", "kept"]),
        format!("error: remove kept: volume is in use - [{id}]\n")
    );
    assert_eq!(
        kiln.ok(&[
            "inspect",
            "--type",
            "container",
            "-f",
            "{{.HostConfig.Binds}}",
            "keeper"
        ])
        .trim(),
        "[kept:/srv/content]"
    );
    // system df -v lists it, with its two volumes, and counts it as the
    // image's user.
    let df = kiln.ok(&["system", "df", "-v"]);
    let section = |title: &str| {
        df.split(title)
            .nth(1)
            .and_then(|rest| rest.split("\n\n").nth(1))
            .unwrap_or_default()
            .to_owned()
    };
    let containers = section("Containers space usage:");
    let row = containers
        .lines()
        .find(|l| l.ends_with(" keeper"))
        .unwrap_or_else(|| panic!("{df}"));
    assert!(row.starts_with(&id[..12]), "{row}");
    assert!(row.contains(" 2 "), "two local volumes: {row}");
    let images = section("Images space usage:");
    assert!(
        images
            .lines()
            .any(|l| l.starts_with("bb ") && l.contains(" vol ") && l.ends_with(" 1")),
        "{df}"
    );
    // Started again, it sees what it wrote.
    kiln.ok(&["start", "keeper"]);
    kiln.ok(&["wait", "keeper"]);
    assert!(
        kiln.ok(&["logs", "keeper"])
            .ends_with("from image\nfrom image\n"),
        "the restarted container sees its volumes again"
    );
    // rm -v: the anonymous volume goes, the named one stays, now free.
    kiln.ok(&["rm", "-v", "keeper"]);
    let left = kiln.ok(&["volume", "ls", "-q"]);
    assert!(!left.contains(&anonymous[0]), "{left}");
    assert_eq!(
        run(&kiln, &["-v", "kept:/k", "bb:1", "cat", "/k/mine"]),
        (0, "mine\n".to_owned(), String::new())
    );
    assert_eq!(kiln.ok(&["volume", "rm", "kept"]), "kept\n");
}

/// Writes `text` to the terminal `master` (what the user types).
fn type_in(master: &OwnedFd, text: &str) {
    // SAFETY: writes from a valid buffer of its length.
    let n = unsafe { libc::write(master.as_raw_fd(), text.as_ptr().cast(), text.len()) };
    assert_eq!(usize::try_from(n).ok(), Some(text.len()));
}

#[test]
fn a_kept_container_keeps_its_terminal_for_attach_and_detach() {
    let kiln = busybox();
    // -dit from a script (no terminal): nothing is attached yet.
    kiln.ok(&[
        "run",
        "-dit",
        "--name",
        "term1",
        "--network",
        "none",
        "bb:1",
        "sh",
    ]);
    assert_eq!(
        kiln.ok(&[
            "inspect",
            "-f",
            "{{.Config.Tty}} {{.State.Running}}",
            "term1"
        ]),
        "true true\n"
    );
    let (master, slave) = host_terminal(33, 111);
    let mut child = spawn_kiln_on_terminal(&kiln, &slave, &["attach", "term1"]);
    drop(slave);
    // The arithmetic shows only in the output, not in the echoed line.
    type_in(&master, "stty size; tty; echo a-$((1+2))\r");
    let out = read_until(&master, "a-3\r\n");
    assert!(out.contains("33 111\r\n/dev/pts/0\r\n"), "{out:?}");
    // Ctrl-P Ctrl-Q: detached, as `docker attach`: exit 1 and its words.
    type_in(&master, "\x10\x11");
    // Said after the terminal's settings are restored (here: raw).
    let out = read_until(&master, "read escape sequence\n");
    assert!(out.ends_with("read escape sequence\n"), "{out:?}");
    assert_eq!(child.wait().code(), Some(1));
    assert_eq!(
        kiln.ok(&["inspect", "-f", "{{.State.Running}}", "term1"]),
        "true\n"
    );
    // What the terminal showed is in the log, as stdout.
    assert!(kiln.ok(&["logs", "term1"]).contains("a-3\r\n"));
    // Attached again: the shell's exit ends the attachment with its code.
    let (master, slave) = host_terminal(24, 80);
    let mut child = spawn_kiln_on_terminal(&kiln, &slave, &["attach", "term1"]);
    drop(slave);
    type_in(&master, "stty size; exit $((1+2))\r");
    read_until(&master, "24 80\r\n");
    assert_eq!(child.wait().code(), Some(3));
    assert_eq!(
        kiln.ok(&["inspect", "-f", "{{.State.ExitCode}}", "term1"]),
        "3\n"
    );
    // `start -ai` of a terminal container attaches before it starts.
    let (master, slave) = host_terminal(24, 80);
    let mut child = spawn_kiln_on_terminal(&kiln, &slave, &["start", "-ai", "term1"]);
    drop(slave);
    type_in(&master, "exit $((2+2))\r");
    read_until(&master, "exit $((2+2))");
    assert_eq!(child.wait().code(), Some(4));
}

#[test]
fn a_named_foreground_terminal_run_detaches_and_follows_resizes() {
    let kiln = busybox();
    let (master, slave) = host_terminal(24, 80);
    let mut child = spawn_on_terminal(
        &kiln,
        &slave,
        &[
            "-it",
            "--name",
            "fg",
            "--network",
            "none",
            "bb:1",
            "sh",
            "-c",
            // A trapped signal interrupts `read`: the loop goes on.
            "trap 'stty size' WINCH; stty size; echo ready; while :; do read l && echo \"got $l\"; done",
        ],
    );
    drop(slave);
    // The monitor took kiln in before the container started: the first
    // output is there.
    let out = read_until(&master, "ready\r\n");
    assert!(out.ends_with("24 80\r\nready\r\n"), "{out:?}");
    let size = libc::winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize; the kernel signals kiln.
    assert_eq!(
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &raw const size) },
        0
    );
    read_until(&master, "40 120\r\n");
    // Ctrl-P then another key is passed on; Ctrl-P Ctrl-Q detaches, and
    // `docker run -it` then exits 0 and says nothing.
    type_in(&master, "\x10x\r");
    read_until(&master, "got \x10x\r\n");
    type_in(&master, "\x10\x11");
    assert_eq!(child.wait().code(), Some(0));
    assert_eq!(
        kiln.ok(&["inspect", "-f", "{{.State.Running}}", "fg"]),
        "true\n",
        "{}",
        kiln.ok(&["logs", "fg"])
    );
    kiln.ok(&["rm", "-f", "fg"]);
}
