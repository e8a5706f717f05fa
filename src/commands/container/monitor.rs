//! The per-container monitor (as Podman's conmon): kiln re-executed as
//! `__kiln-monitor DIR`, in a session of its own, with no terminal. It runs
//! the container through the runtime, writes its output to the log in
//! Docker's json-file format, records the state atomically (running with
//! the process's pid and start time, then the exit), applies the restart
//! policy while it lives, and removes the container after its exit with
//! `--rm`. It never holds the store open (a garbage collection would wait
//! for it), only the container's own directory.
//!
//! It tells whoever started it on its stdout, one line, then closes it:
//! `running PID` once the container's process exists, `exited CODE` if the
//! container ended before that was seen, or `error MESSAGE`.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use kiln_runtime::ports::PortProxy;
use kiln_runtime::{Hooks, RunSpec, Stream};
use kiln_store::containers;
use kiln_store::temp::Owner;

use super::{STOPPED_MARKER, publish};
use crate::commands::network;

/// Entry point: `kiln __kiln-monitor DIR [--stdin] [--attach]`.
pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(2).collect();
    let Some(dir) = args.first().map(PathBuf::from) else {
        eprintln!("kiln monitor: no container directory given");
        return ExitCode::FAILURE;
    };
    // Its stderr is the container's monitor.log: warnings, and what
    // `--log-level` of the starter asked for (handed over in KILN_LOG).
    let level = std::env::var("KILN_LOG")
        .ok()
        .and_then(|l| l.parse::<log::LevelFilter>().ok())
        .unwrap_or(log::LevelFilter::Warn);
    let _ = env_logger::Builder::new()
        .filter_level(level)
        .format_timestamp(None)
        .format_target(false)
        .try_init();
    let stdin = args.iter().any(|a| a == "--stdin");
    let attach = args.iter().any(|a| a == "--attach");
    match monitor(&dir, stdin, attach) {
        // The container's exit code, for a starter that waits for it.
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(255)),
        Err(e) => {
            eprintln!("kiln monitor {}: {e:#}", dir.display());
            ExitCode::FAILURE
        }
    }
}

/// The one-line report to the starter, sent once.
struct Ready(Mutex<Option<File>>);

impl Ready {
    fn send(&self, line: &str) {
        let mut slot = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(mut file) = slot.take() {
            // One write: the starter reads up to the newline.
            let _ = file.write_all(format!("{line}\n").as_bytes());
        }
    }

    /// A line that is not the report (it stays open for the report).
    fn note(&self, line: &str) {
        let mut slot = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(file) = slot.as_mut() {
            let _ = file.write_all(format!("{line}\n").as_bytes());
        }
    }
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// The host pid of the container's process: the container's PID 1, which
/// is the init's child in another PID namespace (the init's other child,
/// if any, is the network helper), or with `--init` (`behind_init`) that
/// PID 1's child.
fn container_process(init: i32, behind_init: bool) -> Option<i32> {
    let ns = |pid: i32| {
        std::fs::metadata(format!("/proc/{pid}/ns/pid"))
            .ok()
            .map(|m| m.ino())
    };
    let children = |pid: i32| -> Vec<i32> {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    let init_ns = ns(init)?;
    let pid1 = children(init)
        .into_iter()
        .find(|&c| ns(c).is_some_and(|n| n != init_ns))?;
    let pid = if behind_init {
        children(pid1).first().copied()?
    } else {
        pid1
    };
    // Until it has executed the container's program it is still kiln (a
    // fork of PID 1): a program that cannot be run is reported as the
    // failure to start it, not as a start.
    let file = |path: &str| std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
    let exe = file(&format!("/proc/{pid}/exe"))?;
    (Some(exe) != file("/proc/self/exe")).then_some(pid)
}

/// Polls, until `done`, for the container process of the init whose pid
/// `init_pid` receives, and calls `found` with it once.
pub(crate) fn follow_start(
    init_pid: &AtomicI32,
    done: &AtomicBool,
    behind_init: bool,
    found: impl FnOnce(i32),
) {
    // Bounded by the run: it stops when the run is over.
    while !done.load(Ordering::SeqCst) {
        let init = init_pid.load(Ordering::SeqCst);
        if let Some(pid) = (init > 0)
            .then(|| container_process(init, behind_init))
            .flatten()
        {
            found(pid);
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// The proxy of the container's published ports, bound (none for the
/// host's network or none at all, as Docker publishes nothing there).
fn bind_ports(
    config: &containers::ContainerConfig,
    spec: &RunSpec,
) -> anyhow::Result<Option<PortProxy>> {
    if spec.network != kiln_runtime::Network::Isolated {
        return Ok(None);
    }
    let specs = publish::port_specs(&config.config, &config.host_config)?;
    if specs.is_empty() {
        return Ok(None);
    }
    let mut proxy = PortProxy::bind(&specs)?;
    proxy.serve().context("starting the port proxy")?;
    Ok(Some(proxy))
}

/// Points `proxy` at the network namespace of the container process `pid`.
pub(crate) fn publish_to(proxy: &PortProxy, pid: i32) -> anyhow::Result<()> {
    proxy
        .set_target(Some(pid))
        .context("joining the container's network namespace")
}

fn monitor(dir: &Path, stdin: bool, attach: bool) -> anyhow::Result<i32> {
    // The report pipe, moved off fd 1 (close-on-exec), and /dev/null in
    // its place.
    let ready_fd: OwnedFd = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .context("duplicating stdout")?;
    let null = File::options().read(true).write(true).open("/dev/null")?;
    // SAFETY: dup2 of descriptors this process owns.
    unsafe {
        libc::dup2(null.as_raw_fd(), 1);
    }
    let ready = Ready(Mutex::new(Some(File::from(ready_fd))));
    let result = supervise(dir, stdin, attach, &ready);
    if let Err(e) = &result {
        ready.send(&format!("error {e:#}"));
    }
    result
}

fn supervise(dir: &Path, stdin: bool, attach: bool, ready: &Ready) -> anyhow::Result<i32> {
    let config = containers::read_config(dir)?;
    let spec: RunSpec =
        serde_json::from_value(config.run_spec.clone()).context("reading the run spec")?;
    // Clients attach through this socket (`kiln attach`); with `--attach`
    // the starter is taken in first, so it misses none of the output.
    let hub = super::attach::Hub::bind(dir, spec.tty)?;
    let window = if attach {
        ready.note("listening");
        hub.accept_first(Duration::from_secs(10))
    } else {
        None
    };
    hub.serve();
    if stdin {
        // Blocks until the starter opens the FIFO for writing; the
        // container reads end of file when the starter's stdin ends.
        let fifo = dir.join("stdin");
        let input = File::open(&fifo).with_context(|| format!("opening {}", fifo.display()))?;
        let _ = std::fs::remove_file(&fifo);
        // SAFETY: dup2 of descriptors this process owns.
        unsafe {
            libc::dup2(input.as_raw_fd(), 0);
        }
    }
    // `-i` with nobody attached (`run -di`, `start` without -i): stdin
    // stays open and empty, as Docker keeps it; the write end lives as
    // long as the monitor.
    let open_stdin: Option<OwnedFd> = if !stdin && spec.interactive {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == 0 {
            // SAFETY: dup2 of the fresh read end onto stdin; both ends
            // are ours, the write end owned from here on.
            unsafe {
                libc::dup2(fds[0], 0);
                libc::close(fds[0]);
                Some(std::os::fd::FromRawFd::from_raw_fd(fds[1]))
            }
        } else {
            None
        }
    } else {
        None
    };
    if !spec.tty {
        hub.set_input(open_stdin.as_ref().and_then(|fd| fd.try_clone().ok()));
    }
    let policy = config
        .host_config
        .pointer("/RestartPolicy/Name")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("no")
        .to_owned();
    let retries = config
        .host_config
        .pointer("/RestartPolicy/MaximumRetryCount")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    let auto_remove = config
        .host_config
        .get("AutoRemove")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let log = Mutex::new(JsonLog::open(dir, &config.id, &config.host_config)?);
    let root = dir
        .parent()
        .and_then(Path::parent)
        .context("the container directory has no store root")?;
    let mut identity = network::identity_of(&config);
    let me = Owner::of(std::process::id()).context("reading this process's start time")?;
    // The host's sockets are bound once, before the first start, and
    // held across restarts: a port in use fails the start, and the kernel
    // frees them when the monitor ends, however it ends.
    let proxy = bind_ports(&config, &spec)?;
    if let Some(proxy) = &proxy {
        identity.ports = proxy.published();
    }
    let mut state = containers::read_state(dir)?;
    state.restart_count = 0;
    let mut backoff = Duration::from_millis(100);
    loop {
        "running".clone_into(&mut state.status);
        state.pid = 0;
        state.pid_start = 0;
        state.monitor_pid = i32::try_from(me.pid).unwrap_or(0);
        state.monitor_start = me.start;
        state.boot_id = containers::boot_id();
        state.error.clear();
        state.exit_code = 0;
        state.oom_killed = false;
        state.manually_stopped = false;
        state.health = None;
        state.started_at = now();
        containers::ZERO_TIME.clone_into(&mut state.finished_at);
        // Written once the container's process is known (below): until
        // then the starter holds the start lock and waits.
        let shared = Mutex::new(state.clone());
        let init_pid = AtomicI32::new(0);
        let done = AtomicBool::new(false);
        let began = Instant::now();
        let outcome = std::thread::scope(|scope| {
            scope.spawn(|| {
                follow_start(&init_pid, &done, spec.init, |pid| {
                    let Some(owner) = u32::try_from(pid).ok().and_then(Owner::of) else {
                        return;
                    };
                    let mut st = shared
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    st.pid = pid;
                    st.pid_start = owner.start;
                    // The ports answer before the container is reported
                    // running.
                    if let Some(proxy) = &proxy {
                        match publish_to(proxy, pid) {
                            Ok(()) => {
                                st.ports = Some(publish::network_ports(
                                    &config.config,
                                    &proxy.published(),
                                ));
                            }
                            Err(e) => eprintln!("kiln monitor: publishing the ports: {e}"),
                        }
                    }
                    if let Err(e) = containers::write_state(dir, &st) {
                        eprintln!("kiln monitor: recording the start: {e}");
                    }
                    ready.send(&format!("running {pid}"));
                });
            });
            if let Some(check) = Healthcheck::of(&config.config) {
                let (shared, done) = (&shared, &done);
                let id = config.id.as_str();
                scope.spawn(move || check.run(dir, id, shared, done));
            }
            let started = |pid: i32| init_pid.store(pid, Ordering::SeqCst);
            let sink = |stream: Stream, data: &[u8]| {
                log.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .write(stream, data);
                hub.broadcast(stream, data);
            };
            let terminal = |master: OwnedFd| super::attach::pump_terminal(&hub, &master, &sink);
            // Bridge networks: set up for each run (addresses are leased
            // while the container runs, as Docker's are), from the
            // endpoints as `connect` and `disconnect` left them.
            let endpoints = match network::endpoints::read_endpoints(dir) {
                Ok(endpoints) => endpoints,
                Err(e) => {
                    done.store(true, Ordering::SeqCst);
                    return Err(format!("{e:#}"));
                }
            };
            let attached = if endpoints.is_empty() {
                None
            } else {
                match network::endpoints::attach(root, &identity, &endpoints, dir) {
                    Ok(attached) => Some(attached),
                    Err(e) => {
                        done.store(true, Ordering::SeqCst);
                        return Err(format!("{e:#}"));
                    }
                }
            };
            let outcome = kiln_runtime::run_hooked(
                &spec,
                Hooks {
                    started: Some(&started),
                    sink: Some(&sink),
                    keep_output: false,
                    terminal: Some(&terminal),
                    window,
                    netns: attached.as_ref().map(|a| a.netns.as_fd()),
                    etc: attached.as_ref().map(|_| dir),
                },
            );
            done.store(true, Ordering::SeqCst);
            if let Some(attached) = attached {
                attached.detach();
            }
            outcome.map_err(|e| chain(&e))
        });
        if let Some(proxy) = &proxy {
            let _ = proxy.set_target(None);
        }
        kiln_runtime::wait_for_helpers();
        log.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .flush_partial();
        state = shared
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        "exited".clone_into(&mut state.status);
        state.pid = 0;
        state.pid_start = 0;
        state.ports = None;
        state.finished_at = now();
        state.manually_stopped = dir.join(STOPPED_MARKER).exists();
        match outcome {
            Ok(outcome) => {
                state.exit_code = outcome.exit_code;
                state.oom_killed = outcome.oom_killed;
            }
            Err(e) => {
                let message = format!("cannot run {}: {e}", config.image);
                ready.send(&format!("error {message}"));
                state.exit_code = 128;
                state.error = message;
            }
        }
        let code = state.exit_code;
        let restart = !state.manually_stopped
            && match policy.as_str() {
                "always" | "unless-stopped" => true,
                "on-failure" => {
                    code != 0 && (retries == 0 || u64::from(state.restart_count) < retries)
                }
                _ => false,
            };
        if !restart {
            containers::write_state(dir, &state)?;
            ready.send(&format!("exited {code}"));
            hub.disconnect_all();
            break;
        }
        // Docker's back-off: doubled after each quick exit, reset after a
        // run of 10 seconds or more.
        if began.elapsed() >= Duration::from_secs(10) {
            backoff = Duration::from_millis(100);
        }
        "restarting".clone_into(&mut state.status);
        state.restart_count += 1;
        containers::write_state(dir, &state)?;
        hub.disconnect_all();
        let until = Instant::now() + backoff;
        backoff = (backoff * 2).min(Duration::from_mins(1));
        while Instant::now() < until && !dir.join(STOPPED_MARKER).exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
        if dir.join(STOPPED_MARKER).exists() {
            "exited".clone_into(&mut state.status);
            state.manually_stopped = true;
            containers::write_state(dir, &state)?;
            break;
        }
    }
    if auto_remove {
        let store = kiln_store::Store::open(root)?;
        store.remove_container(&config.id)?;
        // As Docker's --rm: the anonymous volumes go with the container.
        store.release_container_volumes(&config.id, true)?;
    }
    drop(open_stdin);
    Ok(state.exit_code)
}

/// The image's HEALTHCHECK, run by the monitor while the container runs,
/// as `kiln exec` (so with the container's confinement); its results go
/// to `State.Health` as Docker keeps them (the last five).
struct Healthcheck {
    test: Vec<String>,
    interval: Duration,
    timeout: Duration,
    start_period: Duration,
    retries: u64,
}

impl Healthcheck {
    /// The check of Docker's `Config.Healthcheck`, if it has one.
    fn of(config: &serde_json::Value) -> Option<Healthcheck> {
        let check = config.get("Healthcheck")?;
        let test: Vec<String> = check
            .get("Test")?
            .as_array()?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let test = match test.split_first() {
            Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => rest.to_vec(),
            Some((kind, [script])) if kind == "CMD-SHELL" => {
                vec!["/bin/sh".to_owned(), "-c".to_owned(), script.clone()]
            }
            _ => return None,
        };
        let nanos = |key: &str, default: Duration| {
            check
                .get(key)
                .and_then(serde_json::Value::as_u64)
                .filter(|n| *n > 0)
                .map_or(default, Duration::from_nanos)
        };
        Some(Healthcheck {
            test,
            interval: nanos("Interval", Duration::from_secs(30)),
            timeout: nanos("Timeout", Duration::from_secs(30)),
            start_period: nanos("StartPeriod", Duration::ZERO),
            retries: check
                .get("Retries")
                .and_then(serde_json::Value::as_u64)
                .filter(|n| *n > 0)
                .unwrap_or(3),
        })
    }

    /// Checks every interval until `done`, recording each result.
    fn run(
        &self,
        dir: &Path,
        id: &str,
        shared: &Mutex<containers::ContainerState>,
        done: &AtomicBool,
    ) {
        let began = Instant::now();
        let mut streak = 0u64;
        let mut log: Vec<serde_json::Value> = Vec::new();
        let record = |status: &str, streak: u64, log: &[serde_json::Value]| {
            let mut st = shared
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            st.health = Some(serde_json::json!({
                "Status": status,
                "FailingStreak": streak,
                "Log": log,
            }));
            if st.pid != 0
                && let Err(e) = containers::write_state(dir, &st)
            {
                eprintln!("kiln monitor: recording the health: {e}");
            }
        };
        record("starting", 0, &log);
        let root = dir.parent().and_then(Path::parent).unwrap_or(dir);
        loop {
            let next = Instant::now() + self.interval;
            while Instant::now() < next {
                if done.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10).min(self.interval));
            }
            let start = now();
            let (code, output) = self.probe(root, id);
            if done.load(Ordering::SeqCst) {
                return;
            }
            log.push(serde_json::json!({
                "Start": start,
                "End": now(),
                "ExitCode": code,
                "Output": output,
            }));
            if log.len() > 5 {
                log.remove(0);
            }
            let status = if code == 0 {
                streak = 0;
                "healthy"
            } else {
                // Failures in the start period do not count.
                if began.elapsed() >= self.start_period {
                    streak += 1;
                }
                if streak >= self.retries {
                    "unhealthy"
                } else {
                    let st = shared
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    match st
                        .health
                        .as_ref()
                        .and_then(|h| h.get("Status"))
                        .and_then(serde_json::Value::as_str)
                    {
                        Some("healthy") => "healthy",
                        Some("unhealthy") => "unhealthy",
                        _ => "starting",
                    }
                }
            };
            record(status, streak, &log);
        }
    }

    /// One check: `kiln exec` of the test, killed after the timeout.
    fn probe(&self, root: &Path, id: &str) -> (i32, String) {
        let child = std::process::Command::new("/proc/self/exe")
            .arg("--root")
            .arg(root)
            .arg("exec")
            .arg(id)
            .args(&self.test)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) => return (-1, format!("cannot run the health check: {e}")),
        };
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => break None,
            }
        };
        let mut output = String::new();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read>),
        ]
        .into_iter()
        .flatten()
        {
            let mut text = String::new();
            let _ = std::io::Read::take(stream, 4096).read_to_string(&mut text);
            output.push_str(&text);
        }
        match status {
            Some(status) => (status.code().unwrap_or(-1), output),
            None => (
                -1,
                format!(
                    "Health check exceeded timeout ({}s)",
                    self.timeout.as_secs_f64()
                ),
            ),
        }
    }
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The log file of container `id` in `dir` (Docker's name).
pub fn log_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}-json.log"))
}

/// Docker's json-file log: one JSON object per line, rotated by size.
struct JsonLog {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_file: u32,
    /// Incomplete lines of stdout and stderr.
    partial: [Vec<u8>; 2],
}

impl JsonLog {
    fn open(dir: &Path, id: &str, host_config: &serde_json::Value) -> anyhow::Result<JsonLog> {
        let path = log_path(dir, id);
        let file = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let size = file.metadata().map_or(0, |m| m.len());
        let option = |key: &str| {
            host_config
                .pointer(&format!("/LogConfig/Config/{key}"))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let max_size = option("max-size")
            .and_then(|s| crate::units::parse_size(&s).ok())
            .unwrap_or(0);
        let max_file = option("max-file").and_then(|s| s.parse().ok()).unwrap_or(1);
        Ok(JsonLog {
            path,
            file,
            size,
            max_size,
            max_file,
            partial: [Vec::new(), Vec::new()],
        })
    }

    fn write(&mut self, stream: Stream, data: &[u8]) {
        let index = usize::from(stream == Stream::Stderr);
        let Some(buffer) = self.partial.get_mut(index) else {
            return;
        };
        buffer.extend_from_slice(data);
        let mut lines = Vec::new();
        while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
            lines.push(buffer.drain(..=end).collect::<Vec<u8>>());
        }
        for line in lines {
            self.entry(stream, &line);
        }
    }

    /// Writes what is left without a newline (the container ended).
    fn flush_partial(&mut self) {
        for (index, stream) in [(0, Stream::Stdout), (1, Stream::Stderr)] {
            let rest = self
                .partial
                .get_mut(index)
                .map(std::mem::take)
                .unwrap_or_default();
            if !rest.is_empty() {
                self.entry(stream, &rest);
            }
        }
    }

    fn entry(&mut self, stream: Stream, line: &[u8]) {
        let value = serde_json::json!({
            "log": String::from_utf8_lossy(line),
            "stream": if stream == Stream::Stdout { "stdout" } else { "stderr" },
            "time": now(),
        });
        let mut text = value.to_string();
        text.push('\n');
        let len = u64::try_from(text.len()).unwrap_or(u64::MAX);
        if self.max_size > 0 && self.size > 0 && self.size + len > self.max_size {
            self.rotate();
        }
        if self.file.write_all(text.as_bytes()).is_ok() {
            self.size += len;
        }
    }

    /// `x-json.log` becomes `x-json.log.1`, `.1` becomes `.2`, ... keeping
    /// `max_file` files in all, as Docker's json-file driver does.
    fn rotate(&mut self) {
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.max_file > 1 {
            for n in (1..self.max_file - 1).rev() {
                let _ = std::fs::rename(numbered(n), numbered(n + 1));
            }
            let _ = std::fs::rename(&self.path, numbered(1));
        } else {
            let _ = std::fs::remove_file(&self.path);
        }
        match File::options().create(true).append(true).open(&self.path) {
            Ok(file) => {
                self.file = file;
                self.size = 0;
            }
            Err(e) => eprintln!("kiln monitor: rotating {}: {e}", self.path.display()),
        }
    }
}
