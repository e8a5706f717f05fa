//! End-to-end tests of `kiln run` as root with a busybox image made by
//! the test (busybox-static). They need root and kernel namespaces: CI
//! runs as root; elsewhere they fail with the reason. The rootless test
//! runs kiln from there as nobody (uid 65534).
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Entry, Kiln};

/// A store with `bb:1`, a busybox image, and some config to override.
fn busybox() -> Kiln {
    assert!(
        common::is_root(),
        "kiln run tests need root (namespaces, mounts, cgroups); CI runs them as root"
    );
    let kiln = Kiln::new();
    let rootfs = kiln.path("rootfs");
    common::busybox_rootfs(&rootfs);
    common::add_app_user(&rootfs);
    fs::write(rootfs.join("etc/not-executable"), "data\n").unwrap();
    kiln.ok(&[
        "import",
        rootfs.to_str().unwrap(),
        "bb:1",
        "--change",
        "ENV GREETING=hello",
        "--change",
        "WORKDIR /srv",
        "--change",
        "CMD [\"echo\", \"from cmd\"]",
    ]);
    kiln
}

/// Runs `kiln run ARGS`, returning (exit code, stdout, stderr).
fn run(kiln: &Kiln, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    kiln.outcome(&all)
}

#[test]
fn echo_exit_codes_and_cmd_entrypoint() {
    let kiln = busybox();
    assert_eq!(
        run(&kiln, &["--rm", "bb:1"]),
        (0, "from cmd\n".to_owned(), String::new())
    );
    assert_eq!(run(&kiln, &["bb:1", "echo", "hi"]).1, "hi\n");
    assert_eq!(run(&kiln, &["bb:1", "sh", "-c", "exit 3"]).0, 3);
    // The process is PID 1: its own TERM and KILL need --init to kill
    // it, as under Docker (tests/run_habits.rs).
    assert_eq!(
        run(&kiln, &["--init", "bb:1", "sh", "-c", "kill -TERM $$"]).0,
        143
    );
    assert_eq!(
        run(&kiln, &["--init", "bb:1", "sh", "-c", "kill -KILL $$"]).0,
        137
    );
    // --entrypoint replaces ENTRYPOINT and drops the image's CMD.
    assert_eq!(run(&kiln, &["--entrypoint", "echo", "bb:1"]).1, "\n");
    assert_eq!(
        run(&kiln, &["--entrypoint", "echo", "bb:1", "a", "b"]).1,
        "a b\n"
    );
}

#[test]
fn everything_after_the_image_is_the_containers_and_kiln_failures_exit_125() {
    let kiln = busybox();
    // `-e X` and `--` after the image are the command's, as with
    // `docker run`; before it they are kiln's.
    assert_eq!(
        run(
            &kiln,
            &[
                "--rm",
                "-e",
                "A=1",
                "bb:1",
                "sh",
                "-c",
                "echo \"$A\" \"$@\"",
                "x",
                "-e",
                "X",
                "--",
                "y"
            ]
        ),
        (0, "1 -e X -- y\n".to_owned(), String::new())
    );
    assert_eq!(
        run(&kiln, &["--rm", "bb:1", "-e", "X"]).2,
        "kiln: unable to start container process: exec: \"-e\": executable file not found in $PATH\n"
    );
    // kiln's own failures: 125; the process's: its own, 126 and 127.
    let (code, _, stderr) = run(&kiln, &["--rm", "--pull", "never", "nosuch:1", "true"]);
    assert_eq!(code, 125, "{stderr}");
    let (code, _, stderr) = run(&kiln, &["--rm", "-u", "nosuchuser", "bb:1", "true"]);
    assert_eq!(code, 125, "{stderr}");
    assert!(
        stderr.contains("unable to find user nosuchuser: no matching entries in passwd file"),
        "{stderr}"
    );
    assert_eq!(run(&kiln, &["--rm", "bb:1", "/nonexistent"]).0, 127);
    assert_eq!(run(&kiln, &["--rm", "bb:1", "/etc/not-executable"]).0, 126);
    // A bad flag is kiln's failure too (clap's usage error otherwise
    // exits 2).
    let (code, _, stderr) = run(&kiln, &["--no-such-flag", "bb:1"]);
    assert_eq!(code, 125, "{stderr}");
    assert_eq!(
        stderr,
        "error: unknown flag: --no-such-flag\nSee 'kiln run --help'.\n"
    );
    // `-it` with a pipe on stdin: the Docker CLI's refusal, not a hang.
    let output = kiln
        .command()
        .args(["run", "--rm", "-it", "bb:1", "sh"])
        .write_stdin("echo hi\n")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "the input device is not a TTY\n"
    );
}

#[test]
fn env_user_workdir_and_hostname() {
    let kiln = busybox();
    let (code, out, _) = run(
        &kiln,
        &[
            "-e",
            "A=1",
            "bb:1",
            "sh",
            "-c",
            "echo $GREETING $A $(pwd) $(id -u) $HOME $PATH",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "hello 1 /srv 0 /root /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
    let env_file = kiln.path("env");
    fs::write(&env_file, "# comment\nB=2\nGREETING=hi\n").unwrap();
    let (_, out, _) = run(
        &kiln,
        &[
            "--env-file",
            env_file.to_str().unwrap(),
            "bb:1",
            "sh",
            "-c",
            "echo $B $GREETING",
        ],
    );
    assert_eq!(out, "2 hi\n");
    let (_, out, _) = run(
        &kiln,
        &[
            "-u",
            "app",
            "-w",
            "/work/dir",
            "bb:1",
            "sh",
            "-c",
            "echo $(id -u):$(id -g):$(id -G) $(pwd) $HOME",
        ],
    );
    assert_eq!(out, "1000:1000:1000 50 /work/dir /home/app\n");
    // Numeric ids that passwd and group do not list work as they are.
    let (_, out, _) = run(&kiln, &["-u", "4242:4343", "bb:1", "id"]);
    assert!(out.starts_with("uid=4242 gid=4343"), "{out}");
    let (_, out, _) = run(
        &kiln,
        &[
            "-h",
            "box",
            "bb:1",
            "sh",
            "-c",
            "busybox hostname; cat /etc/hostname; echo $HOSTNAME",
        ],
    );
    assert_eq!(out, "box\nbox\nbox\n");
}

#[test]
fn isolation_pids_network_and_fds() {
    let kiln = busybox();
    let (_, out, _) = run(
        &kiln,
        &[
            "bb:1",
            "sh",
            "-c",
            "ls /proc | grep -E '^[0-9]+$' | sort -n | head -1; echo $$",
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0], "1",
        "the container has its own PID namespace: {out}"
    );
    assert!(lines[1].parse::<u32>().unwrap() < 10, "{out}");
    let (_, out, _) = run(
        &kiln,
        &["bb:1", "sh", "-c", "ls /proc | grep -cE '^[0-9]+$'"],
    );
    assert!(
        out.trim().parse::<u32>().unwrap() <= 4,
        "only its own processes: {out}"
    );
    let (_, out, _) = run(
        &kiln,
        &["--network", "none", "bb:1", "cat", "/proc/net/dev"],
    );
    let interfaces: Vec<&str> = out
        .lines()
        .skip(2)
        .map(|l| l.trim().split(':').next().unwrap())
        .collect();
    assert_eq!(interfaces, ["lo"]);
    let (_, out, _) = run(&kiln, &["bb:1", "ls", "/proc/self/fd"]);
    // ls's own directory fd is the only one above 2, as under Docker.
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "2", "3"]
    );
}

#[test]
fn mounts_and_limits() {
    let kiln = busybox();
    // The root overlay is volatile: the writable layer is thrown away or
    // packed after the run, so no sync of the host file system is owed.
    let (code, out, err) = run(&kiln, &["bb:1", "cat", "/proc/self/mountinfo"]);
    assert_eq!(code, 0, "{err}");
    let root = out
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .unwrap_or_default();
    assert!(
        root.contains(" overlay ") && root.contains("volatile"),
        "{out}"
    );
    let host = kiln.path("host");
    fs::create_dir(&host).unwrap();
    fs::write(host.join("in"), "from host\n").unwrap();
    let ro = format!("{}:/data:ro", host.display());
    let (code, out, err) = run(
        &kiln,
        &[
            "-v",
            &ro,
            "bb:1",
            "sh",
            "-c",
            "cat /data/in; echo x > /data/out",
        ],
    );
    assert_eq!(out, "from host\n");
    assert_ne!(code, 0);
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(!host.join("out").exists());
    let rw = format!("{}:/data", host.display());
    assert_eq!(
        run(
            &kiln,
            &["-v", &rw, "bb:1", "sh", "-c", "echo y > /data/out"]
        )
        .0,
        0
    );
    assert_eq!(fs::read_to_string(host.join("out")).unwrap(), "y\n");
    // A process that outgrows its memory limit is killed: 137.
    let (code, _, _) = run(
        &kiln,
        &[
            "--memory",
            "16m",
            "bb:1",
            "sh",
            "-c",
            "x=a; while true; do x=$x$x; done",
        ],
    );
    assert_eq!(code, 137);
    let (_, out, _) = run(
        &kiln,
        &[
            "--pids-limit",
            "10",
            "--cpus",
            "1.5",
            "bb:1",
            "cat",
            "/sys/fs/cgroup/pids.max",
            "/sys/fs/cgroup/cpu.max",
        ],
    );
    assert!(out.is_empty() || out.starts_with("10\n"), "{out}");
}

#[test]
fn bad_input_is_named() {
    let kiln = busybox();
    assert_eq!(
        kiln.fails(&["run", "--pull", "never", "nope:1"]),
        "error: no such image: nope:1\n"
    );
    let (code, _, err) = run(&kiln, &["bb:1", "nosuchcommand"]);
    assert_eq!(code, 127);
    assert!(
        err.contains("exec: \"nosuchcommand\": executable file not found in $PATH"),
        "{err}"
    );
    let (code, _, err) = run(&kiln, &["bb:1", "/etc/not-executable"]);
    assert_eq!(code, 126);
    assert!(err.contains("permission denied"), "{err}");
    let err = kiln.fails(&["run", "-u", "ghost", "bb:1", "true"]);
    assert!(
        err.contains("unable to find user ghost: no matching entries in passwd file"),
        "{err}"
    );
    assert_eq!(
        kiln.fails(&["run", "-v", "a:b:c:d", "bb:1", "true"]),
        "error: invalid volume specification: 'a:b:c:d'\n"
    );
    assert_eq!(
        kiln.fails(&["run", "-v", "/nonexistent-kiln-path:/x", "bb:1", "true"]),
        "error: invalid volume specification: '/nonexistent-kiln-path:/x': bind source path does not exist: /nonexistent-kiln-path\n"
    );
    assert_eq!(
        kiln.fails(&["run", "--memory", "lots", "bb:1", "true"]),
        "error: invalid argument \"lots\" for \"-m, --memory\" flag\ncaused by: invalid size: 'lots'\n"
    );
    assert_eq!(
        kiln.fails(&["run", "--cpus", "many", "bb:1", "true"]),
        "error: invalid argument \"many\" for \"--cpus\" flag: failed to parse many as a rational number\n"
    );
    assert_eq!(
        kiln.fails(&["run", "-w", "relative", "bb:1", "true"]),
        "error: the working directory 'relative' is invalid, it needs to be an absolute path\n"
    );
}

#[test]
fn rootfs_symlinks_out_never_reach_the_host() {
    let kiln = busybox();
    let victim = kiln.path("victim");
    fs::create_dir(&victim).unwrap();
    fs::write(victim.join("hosts"), "untouched\n").unwrap();
    for (name, link) in [("etc/hosts", victim.join("hosts")), ("dev", victim.clone())] {
        let rootfs = kiln.path(&format!("evil-{}", name.replace('/', "-")));
        common::busybox_rootfs(&rootfs);
        let path = rootfs.join(name);
        let _ = fs::remove_file(&path);
        symlink(&link, &path).unwrap();
        kiln.ok(&["import", rootfs.to_str().unwrap(), "evil:1"]);
        let _ = run(
            &kiln,
            &[
                "evil:1",
                "sh",
                "-c",
                "echo pwned > /etc/hosts; echo pwned > /dev/null",
            ],
        );
        assert_eq!(
            fs::read_to_string(victim.join("hosts")).unwrap(),
            "untouched\n",
            "{name}"
        );
        assert_eq!(fs::read_dir(&victim).unwrap().count(), 1, "{name}");
    }
}

#[test]
fn sigterm_to_kiln_leaves_no_mounts_or_processes() {
    let kiln = busybox();
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("kiln"))
        .arg("--root")
        .arg(kiln.root())
        // The test image has no `sleep` link: call the applet by name.
        // As PID 1 it ignores TERM: it is killed after the stop timeout.
        .args([
            "run",
            "--stop-timeout",
            "1",
            "bb:1",
            "busybox",
            "sleep",
            "4242",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Signal only once the container's process runs (a fixed delay was
    // too short on a loaded machine).
    let started = std::time::Instant::now();
    loop {
        let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
        if String::from_utf8_lossy(&ps.stdout)
            .lines()
            .any(|l| l.starts_with("busybox sleep 4242"))
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "sleep never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill with a valid pid and signal.
    unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(!status.success());
    std::thread::sleep(Duration::from_millis(200));
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = kiln.root().display().to_string();
    assert!(!mountinfo.contains(&root), "mounts left:\n{mountinfo}");
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&ps.stdout).contains("busybox sleep 4242"));
    // The writable layer is gone too.
    assert_eq!(fs::read_dir(kiln.root().join("tmp")).unwrap().count(), 0);
}

/// Runs the kiln binary as nobody (uid and gid 65534) with `args`; returns
/// (exit code, stdout, stderr).
fn run_as_nobody(kiln: &Kiln, args: &[&str]) -> (i32, String, String) {
    use std::os::unix::process::CommandExt;
    // A copy the unprivileged user can surely reach and execute.
    let binary = kiln.path("kiln-nobody");
    if !binary.exists() {
        common::copy_executable(&assert_cmd::cargo::cargo_bin("kiln"), &binary);
    }
    let mut command = Command::new(&binary);
    command
        .arg("--root")
        .arg(kiln.root())
        .args(args)
        .env_remove("KILN_ROOT")
        .env_remove("KILN_LOG");
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn chown_tree(path: &std::path::Path) {
    std::os::unix::fs::lchown(path, Some(65534), Some(65534)).unwrap();
    if fs::symlink_metadata(path).unwrap().is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path());
        }
    }
}

#[test]
fn rootless_run_as_an_unprivileged_user() {
    let max = fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    let disabled = "user namespaces are disabled (user.max_user_namespaces = 0)";
    if !kiln_testkit::require("USERNS", (max.trim() == "0").then_some(disabled)) {
        return;
    }
    let kiln = busybox();
    // An image with what only root can unpack: another owner and a device.
    let rootfs = kiln.path("rootfs2");
    common::busybox_rootfs(&rootfs);
    symlink("busybox", rootfs.join("bin/stat")).unwrap();
    fs::write(rootfs.join("owned"), "mine\n").unwrap();
    std::os::unix::fs::chown(rootfs.join("owned"), Some(1000), Some(1000)).unwrap();
    let devnode = std::ffi::CString::new(rootfs.join("devnode").to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path and plain integers.
    let made = unsafe { libc::mknod(devnode.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    assert_eq!(made, 0);
    kiln.ok(&["import", rootfs.to_str().unwrap(), "odd:1"]);
    // The store (and the test dir above it) belong to the unprivileged user.
    chown_tree(kiln.dir.path());

    // The default (isolated) network without root needs /dev/net/tun,
    // which some hosts keep to root: then kiln says so.
    let tun_open = fs::metadata("/dev/net/tun")
        .is_ok_and(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o006 == 0o006);
    let network = if tun_open {
        "default"
    } else {
        let (code, _, err) = run_as_nobody(&kiln, &["run", "bb:1", "true"]);
        assert_eq!(code, 125, "kiln's own failure");
        assert!(
            err.contains(
                "the isolated network needs read-write access to /dev/net/tun without root (Permission denied (os error 13))"
            ),
            "{err}"
        );
        "none"
    };
    let (code, out, err) = run_as_nobody(
        &kiln,
        &[
            "run",
            "--rm",
            "--network",
            network,
            "odd:1",
            "sh",
            "-c",
            "id -u; stat -c '%u %n' /owned; cat /owned; test -e /devnode || echo no-devnode",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "0\n0 /owned\nmine\nno-devnode\n");

    // Layers applied on their parents without root: through a symlink of
    // a lower layer, into a read-only directory copied up from one.
    let base = common::layer_of_dir(&kiln.path("rootfs"));
    let links = common::layer(&[
        Entry::DirMode("ro/", 0o555),
        Entry::Dir("var/"),
        Entry::Symlink("var/run", "/run"),
        Entry::Dir("run/"),
    ]);
    let top = common::layer(&[
        Entry::File("ro/new", b"new\n"),
        Entry::File("var/run/x", b"through\n"),
    ]);
    let archive = kiln.path("chain.tar");
    fs::write(
        &archive,
        common::oci_archive("chain:1", &[base, links, top]),
    )
    .unwrap();
    let (code, _, err) = run_as_nobody(&kiln, &["load", "-q", "-i", archive.to_str().unwrap()]);
    assert_eq!((code, err.as_str()), (0, ""));
    let (code, out, err) = run_as_nobody(
        &kiln,
        &[
            "run",
            "--network",
            network,
            "chain:1",
            "sh",
            "-c",
            "cat /ro/new /run/x; stat -c %a /ro; test -L /var/run && echo link",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "new\nthrough\n555\nlink\n");

    assert_eq!(
        run_as_nobody(&kiln, &["run", "--memory", "64m", "bb:1", "true"]),
        (
            125,
            String::new(),
            "error: cannot run bb:1\ncaused by: resource limits need root (cgroups)\n".to_owned()
        )
    );
    assert_eq!(
        run_as_nobody(
            &kiln,
            &["run", "--network", network, "-u", "app", "bb:1", "true"]
        ),
        (
            125,
            String::new(),
            "error: cannot run bb:1\ncaused by: container setup: running as user app needs \
             root or subordinate ids (only uid 0 is mapped without them)\n"
                .to_owned()
        )
    );
}

#[test]
fn processes_get_their_primary_group_first_then_their_groups() {
    let kiln = busybox();
    let rootfs = kiln.path("wheel");
    common::busybox_rootfs(&rootfs);
    fs::write(rootfs.join("etc/group"), "root:x:0:\nwheel:x:10:root\n").unwrap();
    fs::create_dir(rootfs.join("tmp")).unwrap();
    fs::set_permissions(
        rootfs.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    kiln.ok(&["import", rootfs.to_str().unwrap(), "wheel:1"]);
    // As containerd and runc set them since CVE-2023-25173.
    for (i, (user, want)) in [
        ("", "uid=0(root) gid=0(root) groups=0(root),10(wheel)\n"),
        ("1234", "uid=1234 gid=0(root) groups=0(root)\n"),
        ("1234:1234", "uid=1234 gid=1234 groups=1234\n"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut args = vec!["--rm"];
        if !user.is_empty() {
            args.extend(["-u", user]);
        }
        args.extend(["wheel:1", "id"]);
        let (code, out, err) = run(&kiln, &args);
        assert_eq!(
            (code, out.as_str()),
            (0, want),
            "kiln run -u {user:?}: {err}"
        );
        // The same in a RUN step.
        let dir = kiln.path(&format!("ctx-{i}"));
        fs::create_dir_all(&dir).unwrap();
        let user_line = if user.is_empty() {
            String::new()
        } else {
            format!("USER {user}\n")
        };
        fs::write(
            dir.join("Dockerfile"),
            format!("FROM wheel:1\n{user_line}RUN id > /tmp/id\n"),
        )
        .unwrap();
        let tag = format!("ids:{i}");
        let output = kiln
            .command()
            .args(["build", "-q", "-t", &tag, dir.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let (_, out, _) = run(&kiln, &["--rm", &tag, "cat", "/tmp/id"]);
        assert_eq!(out, want, "RUN as {user:?}");
    }
}
