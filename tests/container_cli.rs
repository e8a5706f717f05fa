//! End-to-end tests of kept containers (`run -d`, `create`, `start`,
//! `ps`, `logs`, `exec`, `stop`, `kill`, `wait`, `rm`, `inspect`) as root
//! with a busybox image made by the test. Every wait is on an event (a
//! process ending, a line arriving) or a bounded poll for a state.
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::fs;
use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::symlink;
use std::time::{Duration, Instant};

use common::Kiln;

const TICKER: &str = "while true; do echo tick; sleep 0.2; done";

/// A store with `bb:1`, a busybox image with `sleep`.
fn busybox() -> Kiln {
    assert!(
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() } == 0,
        "container tests need root (namespaces, mounts); CI runs them as root"
    );
    let kiln = Kiln::new();
    let rootfs = kiln.path("rootfs");
    common::busybox_rootfs(&rootfs);
    for applet in ["sleep", "hostname", "ps"] {
        symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    kiln.ok(&["import", rootfs.to_str().unwrap(), "bb:1"]);
    kiln
}

/// (exit code, stdout, stderr) of `kiln ARGS`.
fn run(kiln: &Kiln, args: &[&str]) -> (i32, String, String) {
    kiln.outcome(args)
}

/// `kiln run -d --network none ARGS`; returns the container ID.
fn detach(kiln: &Kiln, args: &[&str]) -> String {
    let mut all = vec!["run", "-d", "--network", "none"];
    all.extend_from_slice(args);
    let id = kiln.ok(&all).trim().to_owned();
    assert_eq!(id.len(), 64, "run -d prints the full ID: {id:?}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    id
}

/// Polls `what` (every 10 ms, at most 10 s) until it holds.
fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn inspect(kiln: &Kiln, container: &str, template: &str) -> String {
    kiln.ok(&["inspect", "--type", "container", "-f", template, container])
        .trim()
        .to_owned()
}

fn pid_alive(pid: &str) -> bool {
    fs::metadata(format!("/proc/{pid}")).is_ok()
        && !fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn service_is_reached_with_exec_logged_and_stopped() {
    let kiln = busybox();
    // --init: a shell that is PID 1 ignores SIGTERM (it has no handler),
    // as under Docker, where `docker stop` would wait out the timeout.
    let id = detach(
        &kiln,
        &["--name", "svc", "--init", "bb:1", "sh", "-c", TICKER],
    );
    let ps = kiln.ok(&["ps"]);
    let lines: Vec<&str> = ps.lines().collect();
    assert!(
        lines[0].starts_with("CONTAINER ID   IMAGE     COMMAND                  CREATED"),
        "{ps}"
    );
    assert!(
        lines[0].contains("STATUS") && lines[0].ends_with("NAMES"),
        "{ps}"
    );
    assert!(lines[1].starts_with(&id[..12]), "{ps}");
    assert!(lines[1].contains("\"sh -c 'while true; …\""), "{ps}");
    assert!(
        lines[1].contains("   Up ") && lines[1].ends_with("svc"),
        "{ps}"
    );
    assert_eq!(kiln.ok(&["ps", "-q", "--no-trunc"]).trim(), id);

    // exec: the container's namespaces, env and exit codes.
    assert_eq!(kiln.ok(&["exec", "svc", "echo", "hi"]), "hi\n");
    assert_eq!(kiln.ok(&["exec", &id[..5], "hostname"]).trim(), &id[..12]);
    let ps_inside = kiln.ok(&["exec", "svc", "ps"]);
    assert!(ps_inside.contains(TICKER), "{ps_inside}");
    assert_eq!(
        kiln.ok(&[
            "exec",
            "-e",
            "X=1",
            "-w",
            "/tmp",
            "svc",
            "sh",
            "-c",
            "echo $X $(pwd)"
        ]),
        "1 /tmp\n"
    );
    assert_eq!(run(&kiln, &["exec", "svc", "sh", "-c", "exit 3"]).0, 3);
    assert_eq!(
        kiln.ok(&["exec", "-u", "1000:1000", "svc", "id", "-u"]),
        "1000\n"
    );
    let (code, _, err) = run(&kiln, &["exec", "svc", "nosuch"]);
    assert_eq!(code, 127, "{err}");
    assert!(err.contains("executable file not found in $PATH"), "{err}");

    // logs -f shows lines as they are written, and ends with the container.
    let mut follower = kiln.spawn(&["logs", "-f", "svc"]);
    let mut out = BufReader::new(follower.stdout.take().unwrap());
    for _ in 0..3 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, "tick\n");
    }
    let started = Instant::now();
    assert_eq!(kiln.ok(&["stop", "svc"]), "svc\n");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "SIGTERM ends sh at once"
    );
    assert!(follower.wait().unwrap().success());

    let ps = kiln.ok(&["ps", "-a", "--format", "{{.Names}}: {{.Status}}"]);
    assert!(ps.starts_with("svc: Exited (143) "), "{ps}");
    assert_eq!(kiln.ok(&["ps", "-q"]), "");
    assert_eq!(kiln.ok(&["wait", "svc"]), "143\n");
    assert_eq!(
        inspect(
            &kiln,
            "svc",
            "{{.Name}} {{.State.Status}} {{.State.Running}} {{.State.ExitCode}} {{.Path}}"
        ),
        "/svc exited false 143 sh"
    );
    assert_eq!(
        kiln.ok(&["logs", "--since", "2099-01-01T00:00:00Z", "svc"]),
        ""
    );
    assert!(
        kiln.ok(&["logs", "--since", "10m", "svc"])
            .starts_with("tick\n")
    );
    let err = kiln.fails(&["logs", "--since", "soon", "svc"]);
    assert!(
        err.contains("invalid value for \"since\": \"soon\""),
        "{err}"
    );
    // inspect: an image first, else a container; --type picks one.
    assert_eq!(kiln.ok(&["inspect", "-f", "{{.Name}}", "svc"]), "/svc\n");
    assert_eq!(
        kiln.ok(&["container", "inspect", "-f", "{{.Id}}", &id[..6]])
            .trim(),
        id
    );
    assert!(
        kiln.fails(&["inspect", "--type", "image", "svc"])
            .contains("no such image: svc")
    );
    let tail = kiln.ok(&["logs", "--tail", "2", "-t", "svc"]);
    assert_eq!(tail.lines().count(), 2, "{tail}");
    assert!(tail.lines().all(|l| l.ends_with("Z tick")), "{tail}");
    // An exec into a stopped container: Docker's words.
    let (code, _, err) = run(&kiln, &["exec", "svc", "true"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("Container {id} is not running")),
        "{err}"
    );
    // Started again (its writable layer kept), then signalled.
    assert_eq!(kiln.ok(&["start", "svc"]), "svc\n");
    kiln.ok(&["exec", "svc", "sh", "-c", "echo kept > /kept"]);
    assert_eq!(kiln.ok(&["restart", "-t", "1", "svc"]), "svc\n");
    assert_eq!(kiln.ok(&["exec", "svc", "cat", "/kept"]), "kept\n");
    assert_eq!(kiln.ok(&["kill", "-s", "USR1", "svc"]), "svc\n");
    assert_eq!(kiln.ok(&["wait", "svc"]), "138\n");
    let err = kiln.fails(&["kill", "svc"]);
    assert!(
        err.contains(&format!(
            "Cannot kill container: svc: Container {id} is not running"
        )),
        "{err}"
    );
    assert_eq!(kiln.ok(&["rm", "svc"]), "svc\n");
    assert_eq!(kiln.ok(&["ps", "-a", "-q"]), "");
    assert!(!kiln.root().join("containers").join(&id).exists());
}

#[test]
fn a_container_ignoring_sigterm_is_killed_after_the_timeout() {
    let kiln = busybox();
    let id = detach(
        &kiln,
        &[
            "bb:1",
            "sh",
            "-c",
            "trap '' TERM; echo trapped; while true; do sleep 0.1; done",
        ],
    );
    // The signal must come after the trap.
    until("the trap", || kiln.ok(&["logs", &id]) == "trapped\n");
    let started = Instant::now();
    kiln.ok(&["stop", "-t", "1", &id]);
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(kiln.ok(&["wait", &id]), "137\n");
    kiln.ok(&["rm", &id]);
}

#[test]
fn names_unknown_containers_and_running_removal_fail_as_docker() {
    let kiln = busybox();
    let id = detach(&kiln, &["--name", "web", "bb:1", "sleep", "60"]);
    let (code, _, err) = run(
        &kiln,
        &[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            "web",
            "bb:1",
            "true",
        ],
    );
    assert_eq!(code, 125);
    assert!(
        err.contains(&format!(
            "Conflict. The container name \"/web\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
        )),
        "{err}"
    );
    let err = kiln.fails(&["run", "-d", "--name", "a b", "bb:1", "true"]);
    assert!(
        err.contains("Invalid container name (a b), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"),
        "{err}"
    );
    for command in [
        &["logs", "x"][..],
        &["stop", "x"],
        &["rm", "x"],
        &["exec", "x", "true"],
    ] {
        let err = kiln.fails(command);
        assert!(err.contains("No such container: x"), "{command:?}: {err}");
    }
    assert!(kiln.fails(&["inspect", "x"]).contains("No such object: x"));
    let err = kiln.fails(&["rm", "web"]);
    assert!(
        err.contains(&format!("You cannot remove a running container {id}. Stop the container before attempting removal or force remove")),
        "{err}"
    );
    let err = kiln.fails(&["rmi", "bb:1"]);
    assert!(
        err.contains(&format!(
            "conflict: unable to remove repository reference \"bb:1\" (must force) - container {} is using its referenced image",
            &id[..12]
        )),
        "{err}"
    );
    // The image's layers stay for the container through a prune.
    kiln.ok(&["prune", "-a", "-f"]);
    assert_eq!(kiln.ok(&["exec", "web", "echo", "ok"]), "ok\n");
    let pid = inspect(&kiln, "web", "{{.State.Pid}}");
    assert_eq!(kiln.ok(&["rm", "-f", "web"]), "web\n");
    assert!(!pid_alive(&pid));
    let err = kiln.fails(&["kill", &id]);
    assert!(
        err.contains(&format!(
            "Cannot kill container: {id}: No such container: {id}"
        )),
        "{err}"
    );
    assert!(kiln.ok(&["system", "check"]).contains("is consistent"));
    // system check knows what belongs in containers/.
    let broken = kiln
        .ok(&["create", "--name", "broken", "bb:1", "true"])
        .trim()
        .to_owned();
    let containers = kiln.root().join("containers");
    fs::write(containers.join(&broken).join("state.json"), "{").unwrap();
    fs::create_dir(containers.join("junk")).unwrap();
    let output = kiln.run(&["system", "check"]);
    assert!(!output.status.success());
    let report = String::from_utf8(output.stdout).unwrap();
    assert!(
        report.contains("container junk: not a container directory (expected a 64-hex-digit ID)"),
        "{report}"
    );
    assert!(
        report.contains(&format!("container {broken}: invalid JSON in ")),
        "{report}"
    );
    assert!(kiln.ok(&["ps", "-a"]).contains("   Dead   "));
    assert_eq!(kiln.ok(&["rm", "broken"]), "broken\n");
}

#[test]
fn killed_monitor_or_process_leaves_an_exited_container_rm_cleans() {
    let kiln = busybox();
    // The monitor killed: its container goes with it, and the state the
    // monitor left saying running is shown as exited.
    let id = detach(&kiln, &["--name", "victim", "bb:1", "sleep", "60"]);
    let state: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(kiln.root().join("containers").join(&id).join("state.json")).unwrap(),
    )
    .unwrap();
    let monitor = state["MonitorPid"].as_i64().unwrap().to_string();
    let pid = state["Pid"].as_i64().unwrap().to_string();
    assert!(pid_alive(&pid));
    std::process::Command::new("kill")
        .args(["-9", &monitor])
        .status()
        .unwrap();
    until("the container process to die", || !pid_alive(&pid));
    let ps = kiln.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.starts_with("victim Exited (137) "), "{ps}");
    assert_eq!(kiln.ok(&["ps", "-q"]), "");
    assert!(inspect(&kiln, "victim", "{{.State.Error}}").contains("monitor is gone"),);
    kiln.ok(&["rm", "-f", "victim"]);
    let dir = kiln.root().join("containers").join(&id);
    assert!(!dir.exists());
    let mounts = fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(&id), "{mounts}");

    // The container process killed: the monitor records 137.
    let id = detach(&kiln, &["bb:1", "sleep", "60"]);
    let pid = inspect(&kiln, &id, "{{.State.Pid}}");
    std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap();
    assert_eq!(kiln.ok(&["wait", &id]), "137\n");
    assert!(kiln.ok(&["ps", "-a"]).contains("Exited (137)"));
    kiln.ok(&["rm", "-f", &id]);
    assert_eq!(kiln.ok(&["ps", "-a", "-q"]), "");
    let mounts = fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(&id), "{mounts}");
}

#[test]
fn create_start_attach_restart_policy_rm_and_log_rotation() {
    let kiln = busybox();
    let id = kiln
        .ok(&[
            "create",
            "--name",
            "once",
            "--network",
            "none",
            "bb:1",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 4",
        ])
        .trim()
        .to_owned();
    assert_eq!(id.len(), 64);
    let ps = kiln.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert_eq!(ps, "once Created\n");
    let (code, out, err) = run(&kiln, &["start", "-a", "once"]);
    assert_eq!((code, out.as_str(), err.as_str()), (4, "out\n", "err\n"));
    let log = fs::read_to_string(
        kiln.root()
            .join("containers")
            .join(&id)
            .join(format!("{id}-json.log")),
    )
    .unwrap();
    // stdout and stderr are read apart: their order in the log may vary.
    let first: serde_json::Value = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["stream"] == "stdout")
        .unwrap();
    assert_eq!(first["log"], "out\n");
    assert_eq!(first["stream"], "stdout");
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    let keys: Vec<&String> = first.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["log", "stream", "time"]);

    // A named foreground run is kept, and exits with its code.
    let (code, out, _) = run(
        &kiln,
        &[
            "run",
            "--name",
            "fg",
            "--network",
            "none",
            "bb:1",
            "sh",
            "-c",
            "echo hi; exit 2",
        ],
    );
    assert_eq!((code, out.as_str()), (2, "hi\n"));
    assert_eq!(inspect(&kiln, "fg", "{{.State.ExitCode}}"), "2");

    // on-failure:2 restarts twice, then stays exited.
    kiln.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "bb:1",
        "sh",
        "-c",
        "exit 1",
    ]);
    until("two restarts", || {
        inspect(&kiln, "flaky", "{{.RestartCount}} {{.State.Status}}") == "2 exited"
    });
    assert_eq!(kiln.ok(&["logs", "flaky"]), "");
    // always: restarted until stopped; the stop is final.
    kiln.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "again",
        "--restart",
        "always",
        "bb:1",
        "sh",
        "-c",
        "sleep 0.1; exit 5",
    ]);
    until("a restart", || {
        inspect(&kiln, "again", "{{.RestartCount}}")
            .parse::<u32>()
            .unwrap()
            >= 1
    });
    kiln.ok(&["stop", "-t", "1", "again"]);
    assert_eq!(inspect(&kiln, "again", "{{.State.Status}}"), "exited");
    assert!(
        kiln.ok(&["system", "df"])
            .lines()
            .any(|l| l.starts_with("Containers "))
    );
    let err = kiln.fails(&["run", "-d", "--restart", "sometimes", "bb:1", "true"]);
    assert!(
        err.contains("invalid restart policy format: sometimes"),
        "{err}"
    );

    // --rm: the container is gone once it has exited.
    let gone = detach(&kiln, &["--rm", "bb:1", "true"]);
    until("--rm to remove the container", || {
        !kiln.root().join("containers").join(&gone).exists()
    });

    // json-file rotation by size: at most max-file files.
    let id = detach(
        &kiln,
        &[
            "--log-opt",
            "max-size=1k",
            "--log-opt",
            "max-file=2",
            "bb:1",
            "sh",
            "-c",
            "i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); done",
        ],
    );
    assert_eq!(kiln.ok(&["wait", &id]), "0\n");
    let dir = kiln.root().join("containers").join(&id);
    let current = dir.join(format!("{id}-json.log"));
    assert!(fs::metadata(&current).unwrap().len() <= 1024);
    assert!(dir.join(format!("{id}-json.log.1")).exists());
    assert!(!dir.join(format!("{id}-json.log.2")).exists());
    let logs = kiln.ok(&["logs", &id]);
    assert!(logs.ends_with("line 199\n"), "{logs}");
    assert_eq!(kiln.ok(&["logs", "--tail", "1", &id]), "line 199\n");

    // ps filters.
    kiln.ok(&[
        "create", "-l", "tier=web", "--name", "labelled", "bb:1", "true",
    ]);
    let names = |filter: &str| kiln.ok(&["ps", "-a", "-f", filter, "--format", "{{.Names}}"]);
    assert_eq!(names("label=tier=web"), "labelled\n");
    assert_eq!(names("label=tier"), "labelled\n");
    assert_eq!(names("name=labe"), "labelled\n");
    assert_eq!(names("status=created"), "labelled\n");
    assert!(names("status=exited").contains("once\n"));
    assert!(names("ancestor=bb:1").contains("labelled\n"));
    assert!(
        kiln.fails(&["ps", "-f", "status=sleeping"])
            .contains("invalid filter 'status=sleeping'")
    );

    let pruned = kiln.ok(&["container", "prune", "-f"]);
    assert!(pruned.starts_with("Deleted Containers:\n"), "{pruned}");
    assert_eq!(kiln.ok(&["container", "ls", "-a", "-q"]), "");
}

#[test]
fn stdin_reaches_start_ai_and_a_named_foreground_run() {
    let kiln = busybox();
    kiln.ok(&[
        "create",
        "-i",
        "--name",
        "cat1",
        "--network",
        "none",
        "bb:1",
        "cat",
    ]);
    let output = kiln
        .command()
        .args(["start", "-a", "-i", "cat1"])
        .write_stdin("a\nb\n")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(output.stdout).unwrap(), "a\nb\n");
    assert!(output.status.success());
    let output = kiln
        .command()
        .args([
            "run",
            "-i",
            "--rm",
            "--name",
            "cat2",
            "--network",
            "none",
            "bb:1",
            "cat",
        ])
        .write_stdin("hello\n")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(output.stdout).unwrap(), "hello\n");
    assert_eq!(kiln.ok(&["ps", "-a", "--format", "{{.Names}}"]), "cat1\n");
    // A signal to an attached kiln reaches the container (sig-proxy);
    // behind --init, as a PID 1 shell would ignore it.
    let mut child = kiln.spawn(&[
        "run",
        "--name",
        "fg",
        "--network",
        "none",
        "--init",
        "bb:1",
        "sh",
        "-c",
        "echo up; sleep 60",
    ]);
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "up\n");
    // SAFETY: kill with a pid we spawned and a valid signal.
    assert_eq!(
        unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGTERM) },
        0
    );
    assert_eq!(child.wait().unwrap().code(), Some(143));
    assert_eq!(inspect(&kiln, "fg", "{{.State.ExitCode}}"), "143");
    // -di: stdin stays open, so `cat` keeps running.
    let id = detach(&kiln, &["-i", "bb:1", "cat"]);
    assert!(kiln.ok(&["ps", "-q", "--no-trunc"]).contains(&id));
    kiln.ok(&["rm", "-f", &id]);
}

#[test]
fn attach_relays_stdout_stderr_and_stdin_until_the_container_ends() {
    use std::io::Write as _;
    let kiln = busybox();
    let script = "while read l; do echo \"got $l\"; echo \"err $l\" >&2; done";
    detach(
        &kiln,
        &["-i", "--name", "echoer", "bb:1", "sh", "-c", script],
    );
    let mut attach = std::process::Command::new(assert_cmd::cargo::cargo_bin("kiln"))
        .arg("--root")
        .arg(kiln.root())
        .args(["attach", "echoer"])
        .env_remove("KILN_ROOT")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = attach.stdin.take().unwrap();
    let mut out = BufReader::new(attach.stdout.take().unwrap());
    let mut err = BufReader::new(attach.stderr.take().unwrap());
    // The monitor lists a client before it reads its input: the answer
    // to the first line reaches it.
    let mut line = String::new();
    stdin.write_all(b"one\n").unwrap();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "got one\n");
    line.clear();
    err.read_line(&mut line).unwrap();
    assert_eq!(line, "err one\n");
    // A second client sees the same output: lines are sent until one
    // comes back to it (it is taken in on the monitor's own time).
    let mut second = kiln.spawn(&["attach", "--no-stdin", "echoer"]);
    let mut second_out = BufReader::new(second.stdout.take().unwrap());
    let seen = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for n in 0..500 {
                if seen.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                stdin.write_all(format!("x{n}\n").as_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        line.clear();
        second_out.read_line(&mut line).unwrap();
        seen.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    assert!(line.starts_with("got x"), "{line:?}");
    // A shell as PID 1 ignores SIGTERM: stop kills it after 1 s; both
    // clients end with its code, as `docker attach`.
    kiln.ok(&["stop", "-t", "1", "echoer"]);
    assert_eq!(attach.wait().unwrap().code(), Some(137));
    assert_eq!(second.wait().unwrap().code(), Some(137));
    assert_eq!(inspect(&kiln, "echoer", "{{.State.ExitCode}}"), "137");
    // Docker's words for what cannot be attached.
    let (code, _, err) = run(&kiln, &["attach", "echoer"]);
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "error: You cannot attach to a stopped container, start it first\n"
        )
    );
    detach(&kiln, &["-it", "--name", "term", "bb:1", "sh"]);
    let output = kiln
        .command()
        .args(["attach", "term"])
        .write_stdin("exit\n")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "the input device is not a TTY\n"
    );
    let err = kiln.fails(&["attach", "--detach-keys", "ctrl-1", "term"]);
    assert!(err.contains("Unknown character: 'ctrl-1'"), "{err}");
    kiln.ok(&["rm", "-f", "term"]);
}

#[test]
fn the_monitor_runs_the_image_healthcheck() {
    let kiln = busybox();
    let context = kiln.path("hc");
    fs::create_dir(&context).unwrap();
    fs::write(
        context.join("Dockerfile"),
        "FROM bb:1\nHEALTHCHECK --interval=100ms --retries=1 CMD cat /healthy\n",
    )
    .unwrap();
    kiln.ok(&["build", "-q", "-t", "hc:1", context.to_str().unwrap()]);
    detach(&kiln, &["--name", "hc", "hc:1", "sleep", "60"]);
    let status = || kiln.ok(&["ps", "--format", "{{.Status}}"]);
    until("unhealthy", || status().ends_with("(unhealthy)\n"));
    let health = inspect(&kiln, "hc", "{{json .State.Health}}");
    assert!(health.contains("can't open '/healthy'"), "{health}");
    kiln.ok(&["exec", "hc", "sh", "-c", "echo ok > /healthy"]);
    until("healthy", || status().ends_with("(healthy)\n"));
    assert_eq!(inspect(&kiln, "hc", "{{.State.Health.Status}}"), "healthy");
    kiln.ok(&["rm", "-f", "hc"]);
    // --health-* over the image's check; a foreground run with them is
    // kept (only a monitor runs checks).
    let (code, _, _) = run(
        &kiln,
        &[
            "run",
            "--name",
            "flags",
            "--network",
            "none",
            "--health-cmd",
            "cat /up",
            "--health-interval",
            "100ms",
            "--health-retries",
            "1",
            "hc:1",
            "true",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(
        inspect(&kiln, "flags", "{{json .Config.Healthcheck}}"),
        r#"{"Test":["CMD-SHELL","cat /up"],"Interval":100000000,"Retries":1}"#
    );
    detach(
        &kiln,
        &[
            "--name",
            "flagged",
            "--health-cmd",
            "cat /up",
            "--health-interval",
            "100ms",
            "--health-retries",
            "1",
            "bb:1",
            "sleep",
            "60",
        ],
    );
    until("unhealthy by the flag's command", || {
        inspect(&kiln, "flagged", "{{.State.Health.Status}}") == "unhealthy"
    });
    kiln.ok(&["exec", "flagged", "sh", "-c", "echo ok > /up"]);
    until("healthy by the flag's command", || {
        inspect(&kiln, "flagged", "{{.State.Health.Status}}") == "healthy"
    });
    // --no-healthcheck: Docker's NONE, and no check runs.
    detach(
        &kiln,
        &["--name", "nohc", "--no-healthcheck", "hc:1", "sleep", "60"],
    );
    assert_eq!(
        inspect(&kiln, "nohc", "{{json .Config.Healthcheck.Test}}"),
        r#"["NONE"]"#
    );
    let state = inspect(&kiln, "nohc", "{{json .State}}");
    assert!(!state.contains("Health"), "{state}");
    let err = kiln.fails(&[
        "run",
        "-d",
        "--no-healthcheck",
        "--health-retries",
        "2",
        "bb:1",
        "true",
    ]);
    assert!(
        err.contains("--no-healthcheck conflicts with --health-* options"),
        "{err}"
    );
    let err = kiln.fails(&["run", "-d", "--health-interval", "-1s", "bb:1", "true"]);
    assert!(
        err.contains("--health-interval cannot be negative"),
        "{err}"
    );
    kiln.ok(&["rm", "-f", "flagged", "nohc", "flags"]);
}

#[test]
fn bad_container_options_are_refused_with_docker_words() {
    let kiln = busybox();
    for (args, message) in [
        (
            &["run", "-d", "--restart", "always:3", "bb:1", "true"][..],
            "invalid restart policy format: maximum retry count can only be used with 'on-failure'",
        ),
        (
            &["run", "-d", "--restart", "on-failure:x", "bb:1", "true"],
            "invalid restart policy format: maximum retry count must be an integer: on-failure:x",
        ),
        (
            &["run", "-d", "--rm", "--restart", "always", "bb:1", "true"],
            "Conflicting options: --restart and --rm",
        ),
        (
            &["run", "-d", "--log-opt", "max-age=1", "bb:1", "true"],
            "unknown log opt 'max-age' for json-file log driver",
        ),
        (
            &["run", "-d", "--log-opt", "max-size", "bb:1", "true"],
            "invalid log opt format: max-size",
        ),
        (
            &["run", "-d", "--log-opt", "max-file=2", "bb:1", "true"],
            "max-file cannot be set without max-size",
        ),
        (
            &[
                "run",
                "-d",
                "--log-opt",
                "max-file=0",
                "--log-opt",
                "max-size=1m",
                "bb:1",
                "true",
            ],
            "invalid log opt max-file \"0\": expected a positive integer",
        ),
        (&["ps", "-f", "colour=red"], "invalid filter 'colour'"),
        (
            &["ps", "-f", "status"],
            "bad format of filter (expected name=value)",
        ),
        (&["kill", "-s", "SIGNOPE", "x"], "Invalid signal: SIGNOPE"),
        (
            &["start", "-a", "x", "y"],
            "you cannot start and attach multiple containers at once",
        ),
        (&["logs", "--tail", "many", "x"], "No such container: x"),
    ] {
        let err = kiln.fails(args);
        assert!(err.contains(message), "{args:?}: {err}");
    }
    // Nothing was created by a refused run.
    assert_eq!(kiln.ok(&["ps", "-a", "-q"]), "");
    // A program that cannot be run: the runtime's words and Docker's
    // 127 / 126, the container kept as exited.
    let (code, out, err) = run(
        &kiln,
        &[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            "nf",
            "bb:1",
            "nosuch",
        ],
    );
    assert_eq!((code, out.as_str()), (127, ""), "{err}");
    assert!(
        err.contains("unable to start container process: exec: \"nosuch\": executable file not found in $PATH"),
        "{err}"
    );
    assert_eq!(
        inspect(&kiln, "nf", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 127"
    );
    let (code, _, err) = run(
        &kiln,
        &["run", "-d", "--network", "none", "bb:1", "/etc/passwd"],
    );
    assert_eq!(code, 126, "{err}");
    assert!(err.contains("permission denied"), "{err}");
}

#[test]
fn top_lists_the_containers_processes_only() {
    let kiln = busybox();
    let id = detach(
        &kiln,
        &[
            "--name",
            "tops",
            "bb:1",
            "sh",
            "-c",
            "sleep 300 & exec sleep 301",
        ],
    );
    let mut rows = Vec::new();
    until("both sleeps", || {
        rows = kiln
            .ok(&["top", "tops"])
            .lines()
            .map(str::to_owned)
            .collect();
        rows.len() == 3
    });
    let header: Vec<&str> = rows[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    );
    assert!(
        rows[1..].iter().any(|r| r.ends_with("sleep 300")),
        "{rows:?}"
    );
    assert!(
        rows[1..].iter().any(|r| r.ends_with("sleep 301")),
        "{rows:?}"
    );
    // ps options go to ps, as with docker top.
    let out = kiln.ok(&["top", "tops", "-o", "pid,comm"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].split_whitespace().eq(["PID", "COMMAND"]), "{out}");
    assert!(lines[1..].iter().all(|l| l.ends_with("sleep")), "{out}");
    kiln.ok(&["kill", "tops"]);
    kiln.ok(&["wait", "tops"]);
    assert_eq!(
        kiln.fails(&["top", "tops"]),
        format!("error: Container {id} is not running\n")
    );
}

/// `kiln ARGS` with the fault environment `env`, output to files (a
/// monitor it leaves must not hold the test's pipes); returns whether it
/// was killed by SIGKILL.
fn run_with_faults(kiln: &Kiln, args: &[&str], env: (&str, &str)) -> bool {
    use std::os::unix::process::ExitStatusExt as _;
    let log = fs::File::create(kiln.path("fault.log")).unwrap();
    let status = std::process::Command::new(assert_cmd::cargo::cargo_bin("kiln"))
        .arg("--root")
        .arg(kiln.root())
        .args(args)
        .env_remove("KILN_ROOT")
        .env(env.0, env.1)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .unwrap();
    status.signal() == Some(libc::SIGKILL)
}

#[test]
fn kiln_killed_at_any_point_of_run_d_and_rm_leaves_a_state_ps_shows_and_rm_f_cleans() {
    let kiln = busybox();
    let marker = "sleep 1207";
    let run_d = |name: &str| {
        vec![
            "run".to_owned(),
            "-d".to_owned(),
            "--name".to_owned(),
            name.to_owned(),
            "--network".to_owned(),
            "none".to_owned(),
            "bb:1".to_owned(),
            "sh".to_owned(),
            "-c".to_owned(),
            marker.to_owned(),
        ]
    };
    // Every commit point `run -d` and `rm -f` pass (kiln's and the
    // monitor's, which inherits the variables).
    let trace = kiln.path("trace");
    let args = run_d("traced");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert!(!run_with_faults(
        &kiln,
        &args,
        ("KILN_FAULT_TRACE", trace.to_str().unwrap())
    ));
    assert!(!run_with_faults(
        &kiln,
        &["rm", "-f", "traced"],
        ("KILN_FAULT_TRACE", trace.to_str().unwrap())
    ));
    // Each point at every hit (a hit count is per process, so some are
    // reached by none: those runs just succeed).
    let mut hits: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for line in fs::read_to_string(&trace).unwrap().lines() {
        *hits.entry(line.to_owned()).or_default() += 1;
    }
    let points: Vec<String> = hits
        .iter()
        .flat_map(|(point, count)| (1..=*count).map(move |nth| format!("{point}:{nth}")))
        .collect();
    assert!(!points.is_empty(), "run -d and rm pass no commit point");
    eprintln!("killing kiln at {points:?}");
    for (i, point) in points.iter().enumerate() {
        let name = format!("f{i}");
        let args = run_d(&name);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let killed = run_with_faults(&kiln, &args, ("KILN_FAULT", point));
        if !killed {
            // The point was the monitor's or rm's: kill rm there.
            run_with_faults(&kiln, &["rm", "-f", &name], ("KILN_FAULT", point));
        }
        // Whatever was left, ps -a shows it, every container in a state
        // Docker has, and rm -f removes it all.
        let listed = kiln.ok(&["ps", "-a", "--format", "{{.Names}} {{.State}}"]);
        for line in listed.lines() {
            let state = line.split_whitespace().nth(1).unwrap_or_default();
            assert!(
                ["created", "running", "exited", "dead", "restarting"].contains(&state),
                "killed at {point}: {listed}"
            );
        }
        for id in kiln.ok(&["ps", "-aq", "--no-trunc"]).lines() {
            kiln.ok(&["rm", "-f", id]);
        }
        assert_eq!(kiln.ok(&["ps", "-aq"]), "", "killed at {point}");
        until(
            &format!("no container process after a kill at {point}"),
            || common::processes_with(marker).is_empty(),
        );
        let check = kiln.run(&["system", "check"]);
        assert!(
            check.status.success(),
            "killed at {point}: {}",
            String::from_utf8_lossy(&check.stdout)
        );
    }
}

#[test]
fn a_foreground_run_with_a_label_or_restart_policy_is_kept() {
    let kiln = busybox();
    kiln.ok(&["run", "--network", "none", "-l", "team=x", "bb:1", "true"]);
    let labelled = kiln.ok(&["ps", "-aq", "-f", "label=team=x"]);
    assert_eq!(labelled.lines().count(), 1, "{labelled:?}");
    kiln.ok(&[
        "run",
        "--network",
        "none",
        "--restart",
        "on-failure:1",
        "bb:1",
        "true",
    ]);
    assert_eq!(kiln.ok(&["ps", "-aq"]).lines().count(), 2);
    assert_eq!(
        kiln.fails(&["run", "--rm", "--restart", "always", "bb:1", "true"]),
        "error: Conflicting options: --restart and --rm\n"
    );
}
