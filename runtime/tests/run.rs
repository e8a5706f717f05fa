//! End-to-end tests of the runtime against a busybox rootfs. They need root
//! (namespaces, mounts) and /bin/busybox (busybox-static).

#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, symlink};
use std::path::{Path, PathBuf};

use kiln_runtime::{Limits, Mount, Network, RunOutcome, RunSpec, RuntimeError, Seccomp};

const INIT: &str = match option_env!("KILN_TEST_INIT") {
    Some(p) => p,
    None => env!("CARGO_BIN_EXE_kiln-test-init"),
};

fn skip() -> bool {
    if !kiln_testkit::root("namespaces, mounts") {
        return true;
    }
    assert!(
        Path::new("/bin/busybox").exists(),
        "busybox-static is required"
    );
    false
}

const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "id", "sleep", "ps", "true", "false", "kill", "head", "tr", "dd",
    "hostname", "touch", "rm", "grep", "stat", "readlink", "mount", "wc", "tail", "cut", "test",
    "seq", "pwd", "stty", "sort", "unshare", "nc", "yes",
];

/// A test directory with a busybox rootfs layer and an empty upper dir.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("kiln-rt-")
            .tempdir()
            .unwrap();
        let base = dir.path().join("base");
        fs::create_dir_all(base.join("bin")).unwrap();
        fs::create_dir_all(base.join("etc")).unwrap();
        fs::create_dir_all(base.join("tmp")).unwrap();
        fs::copy("/bin/busybox", base.join("bin/busybox")).unwrap();
        for applet in APPLETS {
            symlink("busybox", base.join("bin").join(applet)).unwrap();
        }
        fs::write(
            base.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:alice:/home/alice:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            base.join("etc/group"),
            "root:x:0:\nalice:x:1000:\nstaff:x:50:alice\naudio:x:29:alice\n",
        )
        .unwrap();
        fs::write(base.join("etc/old"), "old\n").unwrap();
        fs::create_dir(dir.path().join("upper")).unwrap();
        Fixture { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn spec(&self, argv: &[&str]) -> RunSpec {
        RunSpec {
            layers: vec![self.path("base")],
            upper: self.path("upper"),
            argv: argv.iter().map(ToString::to_string).collect(),
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            user: "root".into(),
            hostname: "kilnbox".into(),
            network: Network::None,
            seccomp: Seccomp::Default,
            privileged: false,
            stop_timeout: std::time::Duration::from_secs(10),
            mounts: Vec::new(),
            limits: Limits::default(),
            capture: true,
            tty: false,
            interactive: false,
            init: true,
            group_add: Vec::new(),
            read_only_root: false,
        }
    }

    fn run(&self, spec: &RunSpec) -> Result<RunOutcome, RuntimeError> {
        let result = kiln_runtime::run_with_init(spec, Path::new(INIT), None);
        self.assert_clean();
        result
    }

    fn sh(&self, script: &str) -> RunOutcome {
        self.run(&self.spec(&["sh", "-c", script])).unwrap()
    }

    /// Nothing of this test is mounted on the host, and no temp dir is left.
    fn assert_clean(&self) {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let needle = self.dir.path().to_str().unwrap();
        assert!(!mountinfo.contains(needle), "leaked mount: {mountinfo}");
        for entry in fs::read_dir(self.dir.path()).unwrap() {
            let name = entry.unwrap().file_name();
            assert!(
                !name.to_string_lossy().starts_with(".kiln-run-"),
                "leaked {}",
                name.display()
            );
        }
    }
}

fn stdout(outcome: &RunOutcome) -> String {
    String::from_utf8_lossy(&outcome.stdout).into_owned()
}

#[test]
fn echo_output_is_captured() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    let out = fx.run(&fx.spec(&["echo", "hello", "world"])).unwrap();
    assert_eq!(stdout(&out), "hello world\n");
    assert_eq!(out.exit_code, 0);
    let out = fx.sh("echo out; echo err >&2");
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(out.stderr, b"err\n");
}

#[test]
fn exit_codes_follow_docker() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    assert_eq!(fx.sh("exit 3").exit_code, 3);
    assert_eq!(fx.sh("kill -9 $$").exit_code, 137);
    assert_eq!(fx.sh("kill -TERM $$").exit_code, 143);
}

#[test]
fn env_cwd_and_user() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    let mut spec = fx.spec(&[
        "sh",
        "-c",
        "id -u; id -g; id -G; pwd; echo $HOME $FOO; stat -c %u:%g /work/dir",
    ]);
    spec.user = "alice".into();
    spec.cwd = "/work/dir".into();
    spec.env.push("FOO=bar".into());
    let out = fx.run(&spec).unwrap();
    assert_eq!(
        stdout(&out),
        "1000\n1000\n1000 29 50\n/work/dir\n/home/alice bar\n1000:1000\n"
    );
    // The created workdir is part of what the container wrote.
    assert!(fx.path("upper/work/dir").is_dir());

    let mut spec = fx.spec(&["sh", "-c", "id -u; id -g; id -G; echo $HOME"]);
    spec.user = "1234:99".into();
    let out = fx.run(&spec).unwrap();
    assert_eq!(stdout(&out), "1234\n99\n99\n/\n");
}

#[test]
fn unknown_user_is_an_error() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    let mut spec = fx.spec(&["true"]);
    spec.user = "nobody".into();
    let err = fx.run(&spec).unwrap_err();
    assert_eq!(
        err.to_string(),
        "container setup: unable to find user nobody: no matching entries in passwd file"
    );
}

#[test]
fn pid_namespace_has_only_the_container() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    let out =
        fx.sh("echo $$; for p in /proc/[0-9]*; do echo ${p#/proc/}; done; cat /proc/1/cmdline");
    let text = stdout(&out);
    assert!(text.starts_with("2\n1\n2\n"), "{text}");
    assert!(text.contains("__kiln-init"), "{text}");
}

#[test]
fn hostname_and_etc_files() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    let out = fx.sh("hostname; cat /etc/hostname; grep kilnbox /etc/hosts");
    assert_eq!(stdout(&out), "kilnbox\nkilnbox\n127.0.1.1\tkilnbox\n");
}

#[test]
fn network_none_has_only_loopback_up() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    let out = fx.sh("tail -n +3 /proc/net/dev | cut -d: -f1; cat /sys/class/net/lo/flags");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0].trim(), "lo");
    let flags = u32::from_str_radix(lines[1].trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is not up: {text}");
}

#[test]
fn bind_tmpfs_and_cache_mounts() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    fs::create_dir(fx.path("data")).unwrap();
    fs::write(fx.path("data/f"), "host file\n").unwrap();
    let mut spec = fx.spec(&[
        "sh",
        "-c",
        "cat /data/f; echo x > /data/g || echo ro; echo y > /scratch/a && grep ' /scratch ' /proc/mounts | cut -d' ' -f1,3; echo z > /cache/c",
    ]);
    spec.mounts = vec![
        Mount::Bind {
            source: fx.path("data"),
            target: "/data".into(),
            read_only: true,
        },
        Mount::Tmpfs {
            target: "/scratch".into(),
            size: Some(1 << 20),
            mode: None,
        },
        Mount::Bind {
            source: fx.path("cache"),
            target: "/cache".into(),
            read_only: false,
        },
    ];
    fs::create_dir(fx.path("cache")).unwrap();
    let out = fx.run(&spec).unwrap();
    assert_eq!(stdout(&out), "host file\nro\ntmpfs tmpfs\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"));
    assert!(!fx.path("data/g").exists());
    assert_eq!(fs::read_to_string(fx.path("cache/c")).unwrap(), "z\n");
    // Mount points and tmpfs contents are not part of the container's changes.
    assert_eq!(fs::read_dir(fx.path("upper")).unwrap().count(), 0);

    let mut spec = fx.spec(&["true"]);
    spec.mounts = vec![Mount::Bind {
        source: fx.path("missing"),
        target: "/m".into(),
        read_only: false,
    }];
    let err = fx.run(&spec).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "bind mount source {} does not exist",
            fx.path("missing").display()
        )
    );
}

#[test]
fn only_stdio_descriptors_are_open() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    // As in Docker: 0, 1, 2 and the directory ls itself is reading.
    let out = fx.run(&fx.spec(&["ls", "/proc/self/fd"])).unwrap();
    assert_eq!(stdout(&out), "0\n1\n2\n3\n");
}

#[test]
fn workdir_through_proc_fd_cannot_reach_the_host() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    for fd in 3..8 {
        let mut spec = fx.spec(&["pwd"]);
        spec.cwd = format!("/proc/self/fd/{fd}");
        let result = fx.run(&spec);
        assert!(result.is_err(), "fd {fd}: {result:?}");
    }
}

#[test]
fn many_layers() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    let mut spec = fx.spec(&["sh", "-c", "cat /layers/* | wc -l; cat /layers/l199"]);
    for i in 0..200 {
        let layer = fx.path(&format!(
            "layer-with-a-long-name-to-overflow-options-{i:03}"
        ));
        fs::create_dir_all(layer.join("layers")).unwrap();
        fs::write(layer.join(format!("layers/l{i}")), format!("{i}\n")).unwrap();
        spec.layers.push(layer);
    }
    let out = fx.run(&spec).unwrap();
    assert_eq!(
        stdout(&out),
        "200\n199\n",
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn upper_entries(root: &Path) -> Vec<String> {
    let mut entries = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).unwrap();
            entries.push(path.strip_prefix(root).unwrap().display().to_string());
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    entries.sort();
    entries
}

#[test]
fn upper_holds_exactly_what_the_process_wrote() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    // A scratch image: no /proc, /dev, /sys or /etc/hosts to mount on.
    let out = fx.sh("echo x > /newfile; rm /etc/old");
    assert_eq!(
        out.exit_code,
        0,
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        upper_entries(&fx.path("upper")),
        ["etc", "etc/old", "newfile"]
    );
    let meta = fs::symlink_metadata(fx.path("upper/etc/old")).unwrap();
    assert!(
        meta.file_type().is_char_device() && meta.rdev() == 0,
        "not a whiteout"
    );
    assert_eq!(fs::read_to_string(fx.path("upper/newfile")).unwrap(), "x\n");
}

#[test]
fn exec_failures_use_docker_codes_and_messages() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    let out = fx.run(&fx.spec(&["foo"])).unwrap();
    assert_eq!(out.exit_code, 127);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("exec: \"foo\": executable file not found in $PATH"),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = fx.run(&fx.spec(&["/etc/passwd"])).unwrap();
    assert_eq!(out.exit_code, 126);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exec: \"/etc/passwd\": permission denied")
    );
}

#[test]
fn symlinks_out_of_the_rootfs_stay_confined() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    let evil = fx.path("evil");
    fs::create_dir_all(evil.join("etc")).unwrap();
    symlink("/", evil.join("dev")).unwrap();
    symlink("/proc/1/root/etc/passwd", evil.join("etc/hosts")).unwrap();
    symlink("../../../../../../etc/shadow", evil.join("etc/resolv.conf")).unwrap();
    symlink("/", evil.join("sys")).unwrap();
    let host_passwd = fs::read("/etc/passwd").unwrap();
    let mut spec = fx.spec(&[
        "sh",
        "-c",
        "ls /dev/null && cat /etc/hosts | head -1; test -L /dev || echo dev-is-dir",
    ]);
    spec.layers.push(evil);
    let out = fx.run(&spec).unwrap();
    assert_eq!(
        stdout(&out),
        "/dev/null\n127.0.0.1\tlocalhost\ndev-is-dir\n",
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read("/etc/passwd").unwrap(), host_passwd);
    assert_eq!(fs::read_dir(fx.path("upper")).unwrap().count(), 0);
}

#[test]
fn memory_limit_kills_with_137() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    let mut spec = fx.spec(&[
        "sh",
        "-c",
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
    ]);
    spec.limits.memory = Some(32 << 20);
    let out = fx.run(&spec).unwrap();
    assert_eq!((out.exit_code, out.oom_killed), (137, true), "{out:?}");
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    let mut spec = fx.spec(&[
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do echo $i; sleep 2 & done",
    ]);
    spec.limits.pids = Some(10);
    let out = fx.run(&spec).unwrap();
    // 10 = outer init + PID 1 + sh + 7 sleeps; the 8th fork fails and ash
    // gives up.
    assert_eq!(stdout(&out).lines().count(), 8, "{out:?}");
    assert_eq!(out.exit_code, 2);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "sh: can't fork: Resource temporarily unavailable\n"
    );
}

/// Pids of processes whose command line is exactly `argv`.
fn processes_with_cmdline(argv: &[&str]) -> Vec<u32> {
    let wanted: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted))
        .collect()
}

#[test]
fn sigterm_to_the_caller_tears_everything_down() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    // Unique per test process, so parallel runs of the suite do not mix.
    let seconds = format!("1234.{}", std::process::id());
    let marker = ["sleep", seconds.as_str()];
    let spec = fx.spec(&marker);
    let spec_file = fx.path("spec.json");
    fs::write(&spec_file, serde_json::to_vec(&spec).unwrap()).unwrap();
    let child = std::process::Command::new(INIT)
        .arg("run")
        .arg(&spec_file)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while processes_with_cmdline(&marker).is_empty() {
        assert!(start.elapsed().as_secs() < 10, "container did not start");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // SAFETY: kill on the child's pid.
    unsafe {
        libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGTERM);
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "143\n");
    assert!(processes_with_cmdline(&marker).is_empty());
    fx.assert_clean();
    assert_eq!(fs::read_dir(fx.path("upper")).unwrap().count(), 0);
}

#[test]
fn tty_runs_the_process_on_a_terminal() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    let mut spec = fx.spec(&["sh", "-c", "test -t 0 && test -t 1 && echo on-a-tty"]);
    spec.tty = true;
    let out = fx.run(&spec).unwrap();
    assert_eq!(out.exit_code, 0, "{out:?}");
    // The terminal turns \n into \r\n, as with `docker run -t`.
    assert_eq!(stdout(&out), "on-a-tty\r\n");
}

fn set_window_size(fd: i32, rows: u16, cols: u16) {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: sets one winsize on a terminal the test owns.
    assert_eq!(
        unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &raw const size) },
        0
    );
}

#[test]
fn window_size_changes_reach_a_tty_container() {
    use std::os::fd::{FromRawFd, OwnedFd};
    if skip() {
        return;
    }
    let fx = Fixture::new();
    // The caller's terminal: a pty of the test's own, as the caller's stdin.
    let (mut master, mut slave) = (0, 0);
    // SAFETY: valid out-pointers; the rest may be null.
    let ret = unsafe {
        libc::openpty(
            &raw mut master,
            &raw mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(ret, 0);
    // SAFETY: openpty returned two descriptors the test now owns.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    set_window_size(master.as_raw_fd(), 24, 80);
    // Polls (up to 10 s) until the size differs from the one it started with.
    let script = "s=$(stty size); echo $s; touch /started; i=0; \
        while test \"$(stty size)\" = \"$s\" && test $i -lt 100; do sleep 0.1; i=$((i+1)); done; \
        stty size";
    let mut spec = fx.spec(&["sh", "-c", script]);
    spec.tty = true;
    let spec_file = fx.path("spec.json");
    fs::write(&spec_file, serde_json::to_vec(&spec).unwrap()).unwrap();
    let child = std::process::Command::new(INIT)
        .arg("run")
        .arg(&spec_file)
        .stdin(std::process::Stdio::from(slave))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !fx.path("upper/started").exists() {
        assert!(start.elapsed().as_secs() < 10, "container did not start");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    set_window_size(master.as_raw_fd(), 50, 132);
    // The caller's terminal is not its controlling terminal, so send the
    // signal the kernel would send to the caller's process group.
    // SAFETY: kill on the child's pid.
    unsafe {
        libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGWINCH);
    }
    let output = child.wait_with_output().unwrap();
    fx.assert_clean();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "24 80\r\n50 132\r\n0\n"
    );
}

#[test]
fn cpu_limit_sets_the_cfs_quota() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    let mut spec = fx.spec(&["sleep", "1"]);
    spec.limits.cpus = Some(0.5);
    let pid = std::process::id();
    let found = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let start = std::time::Instant::now();
            while start.elapsed().as_secs() < 5 {
                for file in ["/sys/fs/cgroup/kiln", "/sys/fs/cgroup/cpu"] {
                    let pattern = format!("kiln-{pid}-");
                    for entry in walk(Path::new(file), 4) {
                        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
                        if name.starts_with(&pattern) {
                            for quota in ["cpu.max", "cpu.cfs_quota_us"] {
                                // Skip the default the kernel shows before kiln
                                // has written the limit.
                                if let Ok(text) = fs::read_to_string(entry.join(quota))
                                    && text != "-1\n"
                                    && !text.starts_with("max")
                                {
                                    return Some(text);
                                }
                            }
                        }
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            None
        });
        let out = fx.run(&spec).unwrap();
        assert_eq!(out.exit_code, 0);
        watcher.join().unwrap()
    });
    let quota = found.expect("no kiln cgroup seen while the container ran");
    assert!(quota == "50000\n" || quota == "50000 100000\n", "{quota:?}");
}

/// Directories under `root`, `depth` levels deep at most.
fn walk(root: &Path, depth: u32) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if depth == 0 {
        return found;
    }
    if let Ok(entries) = fs::read_dir(root) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                found.push(entry.path());
                found.extend(walk(&entry.path(), depth - 1));
            }
        }
    }
    found
}

#[test]
fn scratch_image_with_a_bind_mounted_file_and_host_network() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    let mut spec = fx.spec(&[
        "/bin/busybox",
        "sh",
        "-c",
        "echo scratch; /bin/busybox cat /proc/net/dev | /bin/busybox wc -l; /bin/busybox hostname",
    ]);
    spec.layers.clear();
    // No /etc/passwd: an empty USER means root, as in Docker.
    spec.user = String::new();
    spec.network = Network::Host;
    spec.mounts = vec![Mount::Bind {
        source: "/bin/busybox".into(),
        target: "/bin/busybox".into(),
        read_only: true,
    }];
    let out = fx.run(&spec).unwrap();
    let host_devices = fs::read_to_string("/proc/net/dev").unwrap().lines().count();
    assert_eq!(
        stdout(&out),
        format!("scratch\n{host_devices}\nkilnbox\n"),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read_dir(fx.path("upper")).unwrap().count(), 0);
}

#[test]
fn mount_targets_are_created_and_cleaned_up() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    // Debian's /var/run -> /run: the mount must land in /run, and /var/run
    // must stay a symlink.
    fs::create_dir_all(fx.path("base/var")).unwrap();
    fs::create_dir_all(fx.path("base/run")).unwrap();
    symlink("/run", fx.path("base/var/run")).unwrap();
    fs::write(fx.path("file"), "a file\n").unwrap();
    let mut spec = fx.spec(&[
        "sh",
        "-c",
        "readlink /var/run; grep -c ' /run/x ' /proc/mounts; cat /new/deep/file; ls /new/tmp; echo w > /etc/written",
    ]);
    spec.mounts = vec![
        Mount::Tmpfs {
            target: "/var/run/x".into(),
            size: None,
            mode: None,
        },
        Mount::Bind {
            source: fx.path("file"),
            target: "/new/deep/file".into(),
            read_only: false,
        },
        Mount::Tmpfs {
            target: "/new/tmp".into(),
            size: None,
            mode: None,
        },
    ];
    let out = fx.run(&spec).unwrap();
    assert_eq!(
        stdout(&out),
        "/run\n1\na file\n",
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(upper_entries(&fx.path("upper")), ["etc", "etc/written"]);
}

/// Runs `spec` in a separate caller process whose stdin is `input`;
/// returns that process's stdout (the captured output, then the exit code).
fn run_with_stdin(fx: &Fixture, spec: &RunSpec, input: &[u8]) -> String {
    use std::io::Write;
    let spec_file = fx.path("spec.json");
    fs::write(&spec_file, serde_json::to_vec(spec).unwrap()).unwrap();
    let mut child = std::process::Command::new(INIT)
        .arg("run")
        .arg(&spec_file)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    fx.assert_clean();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn interactive_keeps_stdin_attached() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    let mut spec = fx.spec(&["sh", "-c", "read line; echo got $line"]);
    spec.interactive = true;
    assert_eq!(run_with_stdin(&fx, &spec, b"hello\n"), "got hello\n0\n");
    spec.interactive = false;
    // stdin is /dev/null: read sees EOF at once.
    assert_eq!(run_with_stdin(&fx, &spec, b"hello\n"), "got\n0\n");

    spec.interactive = true;
    spec.tty = true;
    let out = run_with_stdin(&fx, &spec, b"hello\n");
    assert!(out.ends_with("got hello\r\n0\n"), "{out:?}");
}

#[test]
fn root_in_the_container_is_confined_like_docker() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    let out = fx.sh(
        "grep -E '^Cap(Eff|Bnd)' /proc/self/status; echo 1 > /proc/sys/kernel/panic_on_oops || echo sys-ro; \
         mount -t tmpfs none /tmp || echo no-mount; wc -c < /proc/timer_list",
    );
    assert_eq!(
        stdout(&out),
        "CapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nsys-ro\nno-mount\n0\n",
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut spec = fx.spec(&["grep", "-E", "^Cap(Eff|Bnd)", "/proc/self/status"]);
    spec.user = "alice".into();
    let out = fx.run(&spec).unwrap();
    assert_eq!(
        stdout(&out),
        "CapEff:\t0000000000000000\nCapBnd:\t00000000a80425fb\n"
    );
}

#[test]
fn a_failure_midway_through_setup_leaves_nothing_behind() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    let mut spec = fx.spec(&["true"]);
    spec.mounts = vec![
        Mount::Tmpfs {
            target: "/ok".into(),
            size: None,
            mode: None,
        },
        Mount::Tmpfs {
            target: "/etc/passwd/x".into(),
            size: None,
            mode: None,
        },
    ];
    // With the isolated network too: its NAT helper goes with the failure.
    for network in [Network::None, Network::Isolated] {
        spec.network = network;
        let err = fx.run(&spec).unwrap_err();
        assert_eq!(
            err.to_string(),
            "container setup: rootfs: mount target /etc/passwd/x: /etc/passwd: Not a directory (os error 20)"
        );
        assert_eq!(fs::read_dir(fx.path("upper")).unwrap().count(), 0);
        kiln_runtime::wait_for_helpers();
        assert!(processes_named("slirp4netns").is_empty());
    }
}

fn xattr_set(path: &Path, name: &str, value: &[u8]) {
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let c_name = std::ffi::CString::new(name).unwrap();
    // SAFETY: NUL-terminated strings and a valid buffer of the given length.
    let ret = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(ret, 0, "{}", std::io::Error::last_os_error());
}

/// The uid and gid rootless runs use (nobody).
const NOBODY: u32 = 65534;

fn chown_tree(path: &Path, id: u32) {
    std::os::unix::fs::lchown(path, Some(id), Some(id)).unwrap();
    if fs::symlink_metadata(path).unwrap().is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), id);
        }
    }
}

/// Why rootless runs cannot be tested here, if they cannot.
fn rootless_unsupported() -> Option<String> {
    let max = fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    if max.trim() == "0" {
        return Some("user namespaces are disabled (user.max_user_namespaces = 0)".into());
    }
    let clone = fs::read_to_string("/proc/sys/kernel/unprivileged_userns_clone");
    if clone.is_ok_and(|v| v.trim() == "0") {
        return Some("kernel.unprivileged_userns_clone = 0".into());
    }
    None
}

/// Runs `spec` from a caller process running as nobody, with a copy of the
/// init binary and the fixture owned by nobody; returns (status, stdout,
/// stderr) of that caller.
fn run_as_nobody(fx: &Fixture, spec: &RunSpec) -> (i32, String, String) {
    use std::os::unix::process::CommandExt;
    let spec_file = fx.path("spec.json");
    fs::write(&spec_file, serde_json::to_vec(spec).unwrap()).unwrap();
    let init = fx.path("init");
    if !init.exists() {
        // Copied by another process: a write descriptor of this one would
        // be inherited by any child another test thread forks at that
        // moment, and exec of the copy then fails with ETXTBSY until that
        // child has exec'd in turn.
        let status = std::process::Command::new("cp")
            .arg(INIT)
            .arg(&init)
            .status()
            .unwrap();
        assert!(status.success(), "cp {INIT} failed");
    }
    chown_tree(fx.dir.path(), NOBODY);
    let mut command = std::process::Command::new(&init);
    command.arg("run").arg(&spec_file);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(NOBODY) != 0
                || libc::setuid(NOBODY) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let output = command.output().unwrap();
    fx.assert_clean();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn rootless_runs_map_root_to_the_caller() {
    if skip() {
        return;
    }
    if !kiln_testkit::require("USERNS", rootless_unsupported().as_deref()) {
        return;
    }
    let fx = Fixture::new();
    let spec = fx.spec(&[
        "sh",
        "-c",
        "echo hi; id -u; id -g; echo data > /written; \
         tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; hostname",
    ]);
    let (status, out, err) = run_as_nobody(&fx, &spec);
    assert_eq!((status, err.as_str()), (0, ""), "{out}");
    assert_eq!(out, "hi\n0\n0\nlo\nkilnbox\n0\n");
    // Root's file in the container is the caller's on the host.
    let written = fx.path("upper/written");
    assert_eq!(fs::read_to_string(&written).unwrap(), "data\n");
    let meta = fs::metadata(&written).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (NOBODY, NOBODY));
    assert_eq!(upper_entries(&fx.path("upper")), ["written"]);

    // Deleting a lower file leaves a whiteout in the upper dir.
    let (status, _, err) = run_as_nobody(&fx, &fx.spec(&["rm", "/etc/old"]));
    assert_eq!((status, err.as_str()), (0, ""));
    let whiteout = fs::symlink_metadata(fx.path("upper/etc/old")).unwrap();
    assert!(whiteout.file_type().is_char_device());
    assert_eq!(whiteout.rdev(), 0);

    // A second layer as the unprivileged unpacker writes it: a 0/0 whiteout
    // and an opaque directory marked in user.overlay.* (userxattr).
    fs::create_dir_all(fx.path("base/op")).unwrap();
    fs::write(fx.path("base/op/a"), "a").unwrap();
    fs::create_dir_all(fx.path("top/op")).unwrap();
    fs::write(fx.path("top/op/b"), "b").unwrap();
    let whiteout = std::ffi::CString::new(fx.path("top/old").to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path and plain integers.
    assert_eq!(
        unsafe { libc::mknod(whiteout.as_ptr(), libc::S_IFCHR, 0) },
        0
    );
    xattr_set(&fx.path("top/op"), "user.overlay.opaque", b"y");
    let mut spec = fx.spec(&["sh", "-c", "ls /op; cat /old 2>/dev/null || echo no-old"]);
    spec.layers.push(fx.path("top"));
    fs::rename(fx.path("base/etc/old"), fx.path("base/old")).unwrap();
    let (status, out, err) = run_as_nobody(&fx, &spec);
    assert_eq!((status, err.as_str()), (0, ""), "{out}");
    assert_eq!(out, "b\nno-old\n0\n");

    // Host network: the host's interfaces, and a read-only bind of /sys.
    let mut spec = fx.spec(&[
        "sh",
        "-c",
        "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort; \
         touch /sys/x 2>/dev/null || echo sys-ro",
    ]);
    spec.network = Network::Host;
    let (status, out, err) = run_as_nobody(&fx, &spec);
    assert_eq!((status, err.as_str()), (0, ""), "{out}");
    let mut host: Vec<String> = fs::read_to_string("/proc/net/dev")
        .unwrap()
        .lines()
        .skip(2)
        .map(|l| l.split(':').next().unwrap().trim().to_string())
        .collect();
    host.sort();
    assert_eq!(out, format!("{}\nsys-ro\n0\n", host.join("\n")));
}

#[test]
fn rootless_refuses_what_needs_root() {
    if skip() {
        return;
    }
    if !kiln_testkit::require("USERNS", rootless_unsupported().as_deref()) {
        return;
    }
    let fx = Fixture::new();
    let mut spec = fx.spec(&["true"]);
    spec.limits.memory = Some(64 << 20);
    let (status, out, err) = run_as_nobody(&fx, &spec);
    assert_eq!(
        (status, out.as_str(), err.as_str()),
        (
            1,
            "",
            "kiln-test-init: resource limits need root (cgroups)\n"
        )
    );

    let mut spec = fx.spec(&["true"]);
    spec.user = "alice".into();
    let (status, out, err) = run_as_nobody(&fx, &spec);
    assert_eq!(
        (status, out.as_str(), err.as_str()),
        (
            1,
            "",
            "kiln-test-init: container setup: running as user alice needs root \
             or subordinate ids (only uid 0 is mapped without them)\n"
        )
    );
    assert_eq!(fs::read_dir(fx.path("upper")).unwrap().count(), 0);
}

#[test]
fn signals_start_at_their_defaults_and_unblocked() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    // The test harness (like kiln) ignores SIGPIPE; nothing of that may
    // reach the container. (Run directly: busybox sh ignores SIGQUIT
    // itself when its stdin is not a terminal.)
    let out = fx
        .run(&fx.spec(&["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]))
        .unwrap();
    assert_eq!(
        stdout(&out),
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
    );
    // A writer to a closed pipe dies of SIGPIPE (141) instead of looping
    // on EPIPE (which `|| exit 3` would report).
    let out =
        fx.sh("set -o pipefail; (while true; do echo x || exit 3; done) | head -1; echo rc=$?");
    assert_eq!(stdout(&out), "x\nrc=141\n");
    let out = fx.sh("yes | head -2");
    assert_eq!(stdout(&out), "y\ny\n");
}

#[test]
fn seccomp_filters_like_docker_unless_unconfined() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    // unshare(CLONE_NEWUSER) needs no capability: only the filter (no
    // CAP_SYS_ADMIN, so no unshare) stops it, with EPERM.
    let script = "grep ^Seccomp: /proc/self/status; unshare -U true; echo rc=$?";
    let out = fx.sh(script);
    assert_eq!(stdout(&out), "Seccomp:\t2\nrc=1\n");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "unshare: unshare(0x10000000): Operation not permitted\n"
    );
    let mut spec = fx.spec(&["sh", "-c", script]);
    spec.seccomp = Seccomp::Unconfined;
    let out = fx.run(&spec).unwrap();
    assert_eq!(stdout(&out), "Seccomp:\t0\nrc=0\n", "{out:?}");
}

#[test]
fn privileged_runs_with_every_capability() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    let script = "grep -E '^(CapEff|Seccomp):' /proc/self/status";
    let out = fx.sh(script);
    assert_eq!(stdout(&out), "CapEff:\t00000000a80425fb\nSeccomp:\t2\n");
    let mut spec = fx.spec(&["sh", "-c", script]);
    spec.seccomp = Seccomp::Unconfined;
    spec.privileged = true;
    let out = fx.run(&spec).unwrap();
    let last: u32 = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let all = (1u64 << (last + 1)) - 1;
    // Every capability the host's bounding set has.
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:\t"))
        .map(|hex| u64::from_str_radix(hex, 16).unwrap())
        .unwrap();
    assert_eq!(
        stdout(&out),
        format!("CapEff:\t{:016x}\nSeccomp:\t0\n", all & bounding)
    );
}

#[test]
fn isolated_network_has_eth0_and_the_nat_forwarder_for_dns() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    let mut spec = fx.spec(&[
        "sh",
        "-c",
        "ls /sys/class/net; head -1 /etc/resolv.conf; cat /sys/class/net/eth0/mtu",
    ]);
    spec.network = Network::Isolated;
    let out = fx.run(&spec).unwrap();
    assert_eq!(
        stdout(&out),
        "eth0\nlo\nnameserver 10.0.2.3\n65520\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The NAT helper is gone with the container (reaped in the
    // background: wait for it).
    kiln_runtime::wait_for_helpers();
    assert!(processes_named("slirp4netns").is_empty());
}

#[test]
fn pooled_networks_serve_one_run_at_a_time_and_a_privileged_run_gets_its_own() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    fs::create_dir(fx.path("sync")).unwrap();
    let pool = kiln_runtime::NetworkPool::new();
    pool.prewarm(1);
    let run = |script: &str, privileged: bool, upper: &str| {
        let upper = fx.path(upper);
        fs::create_dir(&upper).unwrap();
        let mut spec = fx.spec(&["sh", "-c", script]);
        spec.upper = upper;
        spec.network = Network::Isolated;
        spec.privileged = privileged;
        spec.mounts = vec![Mount::Bind {
            source: fx.path("sync"),
            target: "/sync".into(),
            read_only: false,
        }];
        let out = kiln_runtime::run_with_init(&spec, Path::new(INIT), Some(&pool)).unwrap();
        assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stderr));
        stdout(&out)
    };
    let probe = "readlink /proc/self/ns/net; ls /sys/class/net; head -1 /etc/resolv.conf";
    let first = run(probe, false, "u1");
    let (namespace, rest) = first.split_once('\n').unwrap();
    assert!(namespace.starts_with("net:["), "{first}");
    assert_eq!(rest, "eth0\nlo\nnameserver 10.0.2.3\n");
    // The next run gets the same network back.
    assert_eq!(run(probe, false, "u2"), first);
    // A privileged run (it may change its network) gets another one, and
    // what it changes stays there.
    let privileged = run(
        "busybox ip addr add 10.9.9.9/32 dev lo && readlink /proc/self/ns/net",
        true,
        "u3",
    );
    assert_ne!(privileged.trim(), namespace);
    let after = run(
        "readlink /proc/self/ns/net; busybox ip addr show lo",
        false,
        "u4",
    );
    assert!(after.starts_with(&format!("{namespace}\n")), "{after}");
    assert!(!after.contains("10.9.9.9"), "{after}");
    // Two runs at once (each waits for the other's file) get two networks.
    let at_once = |me: &str, other: &str| {
        format!(
            "readlink /proc/self/ns/net > /sync/{me}.tmp && busybox mv /sync/{me}.tmp /sync/{me} \
             && i=0 && while [ ! -e /sync/{other} ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done \
             && cat /sync/{other} && readlink /proc/self/ns/net"
        )
    };
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| run(&at_once("a", "b"), false, "u5"));
        let b = run(&at_once("b", "a"), false, "u6");
        (a.join().unwrap(), b)
    });
    let (a_saw, a_own) = a.split_once('\n').unwrap();
    let (b_saw, b_own) = b.split_once('\n').unwrap();
    assert_eq!((a_saw, b_saw), (b_own.trim(), a_own.trim()));
    assert_ne!(a_own, b_own);
    // Closed and waited for, the pool leaves no helper.
    pool.close();
    kiln_runtime::wait_for_helpers();
    let ours = format!("{}/fd/", std::process::id());
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(&ours),
            "a helper of the pool is left"
        );
    }
}

/// Pids of live processes named `name` whose target (the last-but-one
/// argument: a NAT helper's init pid) is gone: a helper of another test's
/// running container is not counted.
fn processes_named(name: &str) -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(comm) = fs::read_to_string(format!("/proc/{pid}/comm")) else {
                return false;
            };
            if comm.trim() != name {
                return false;
            }
            // Its target is the last-but-one argument: a live init means
            // another test's container is running.
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .collect();
            let target = args
                .len()
                .checked_sub(2)
                .and_then(|i| std::str::from_utf8(args[i]).ok())
                .unwrap_or("");
            !Path::new(&format!("/proc/{target}")).exists()
        })
        .collect()
}

/// Runs `script` through `kiln-test-init run`, sends SIGTERM once it has
/// started (it prints `started`), and returns the exit code the container
/// got and how long the stop took.
fn stop(fx: &Fixture, script: &str, timeout: std::time::Duration) -> (String, std::time::Duration) {
    use std::io::BufRead as _;
    let mut spec = fx.spec(&["sh", "-c", script]);
    spec.stop_timeout = timeout;
    spec.capture = false;
    let spec_file = fx.path("spec.json");
    fs::write(&spec_file, serde_json::to_vec(&spec).unwrap()).unwrap();
    let mut child = std::process::Command::new(INIT)
        .arg("run")
        .arg(&spec_file)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "started\n");
    let start = std::time::Instant::now();
    // SAFETY: kill on the child's pid.
    unsafe {
        libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGTERM);
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = child.wait().unwrap();
    let took = start.elapsed();
    assert!(status.success(), "{status:?}");
    fx.assert_clean();
    (rest, took)
}

#[test]
fn sigterm_kills_what_ignores_it_after_the_stop_timeout() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    let marker = format!("600.{}", std::process::id());
    for script in [
        // A shell that traps TERM and waits for a child.
        format!("trap 'echo trapped' TERM; echo started; while true; do sleep {marker}; done"),
        // A shell waiting for a long child.
        format!("echo started; sleep {marker}; echo done"),
        // Everything ignores TERM and INT.
        format!("trap '' TERM INT; echo started; sleep {marker}"),
    ] {
        let (rest, took) = stop(&fx, &script, std::time::Duration::from_millis(500));
        eprintln!("{script}: stopped in {took:?}");
        // Killed (137) or ended by TERM (143); nothing runs on. (A trap may
        // get to print while the kill takes the shell's child first.)
        assert!(
            rest.ends_with("137\n") || rest.ends_with("143\n"),
            "{script}: {rest:?}"
        );
        assert!(
            took < std::time::Duration::from_secs(5),
            "{script}: {took:?}"
        );
        assert!(processes_with_cmdline(&["sleep", &marker]).is_empty());
    }
}
