//! `kiln start`, `stop`, `kill`, `restart`, `wait`, `rm` and
//! `container prune`.

use std::io::{BufRead as _, Write as _};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use kiln_store::Store;

use super::{Container, STOPPED_MARKER};

/// A pidfd of the process recorded as (`pid`, `start`): `None` when that
/// process is gone (its pid free, or another process's now). Checked
/// after opening, so the descriptor cannot refer to a reused pid.
pub fn pidfd(pid: i32, start: u64) -> Option<OwnedFd> {
    if pid <= 0 {
        return None;
    }
    // SAFETY: pidfd_open on an integer pid, no flags.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: pidfd_open returned a new descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let owner = kiln_store::temp::Owner::of(u32::try_from(pid).ok()?)?;
    (owner.start == start).then_some(fd)
}

/// Sends `signal` through a pidfd.
pub fn send(fd: &OwnedFd, signal: i32) -> std::io::Result<()> {
    // SAFETY: pidfd_send_signal on a pidfd we own; no siginfo.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Waits up to `timeout` for the process of `fd` to end; whether it did.
fn wait_exit(fd: &OwnedFd, timeout: Duration) -> bool {
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&raw mut poll, 1, ms) > 0 }
}

/// Waits until the monitor has recorded that `container` is no longer
/// running (at most `timeout`); whether it has.
pub fn wait_not_running(
    container: &mut Container,
    timeout: Option<Duration>,
) -> anyhow::Result<bool> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        container.refresh()?;
        if !container.is_running() {
            return Ok(true);
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left.is_some_and(|l| l.is_zero()) {
            return Ok(false);
        }
        let step = left
            .unwrap_or(Duration::from_millis(100))
            .min(Duration::from_millis(100));
        match pidfd(container.state.pid, container.state.pid_start) {
            // Wakes as soon as the process ends; the monitor records the
            // exit right after.
            Some(fd) => {
                wait_exit(&fd, step);
                std::thread::sleep(Duration::from_millis(1));
            }
            None => std::thread::sleep(Duration::from_millis(2).min(step)),
        }
    }
}

/// Waits until `container`'s monitor process is gone (it may still be
/// removing an `--rm` container after recording the exit).
fn wait_monitor_gone(container: &Container, timeout: Duration) {
    if let Some(fd) = pidfd(container.state.monitor_pid, container.state.monitor_start) {
        wait_exit(&fd, timeout);
    }
}

/// A signal by name (`SIGTERM`, `TERM`) or number.
pub fn parse_signal(text: &str) -> anyhow::Result<i32> {
    if let Ok(n) = text.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        bail!("Invalid signal: {text}");
    }
    let name = text.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    let signal = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "CHLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => bail!("Invalid signal: {text}"),
    };
    Ok(signal)
}

/// Marks the coming exit as a manual stop (no restart policy applies).
fn mark_stopped(container: &Container) {
    let _ = std::fs::write(container.dir.join(STOPPED_MARKER), b"");
}

/// Stops `container`: its stop signal (the image's STOPSIGNAL, else
/// SIGTERM), then SIGKILL after `timeout`.
pub fn stop(container: &mut Container, timeout: Option<u64>) -> anyhow::Result<()> {
    if !container.is_running() {
        return Ok(());
    }
    mark_stopped(container);
    let signal = container
        .config
        .config
        .get("StopSignal")
        .and_then(serde_json::Value::as_str)
        .map(parse_signal)
        .transpose()?
        .unwrap_or(libc::SIGTERM);
    let timeout = timeout
        .or_else(|| {
            container
                .config
                .config
                .get("StopTimeout")
                .and_then(serde_json::Value::as_u64)
        })
        .unwrap_or(10);
    if let Some(fd) = pidfd(container.state.pid, container.state.pid_start) {
        let _ = send(&fd, signal);
        if !wait_exit(&fd, Duration::from_secs(timeout)) {
            let _ = send(&fd, libc::SIGKILL);
        }
    }
    if !wait_not_running(container, Some(Duration::from_secs(30)))? {
        bail!(
            "cannot stop container: {}: its monitor did not record the exit",
            container.config.id
        );
    }
    Ok(())
}

/// Arguments of `kiln stop` and `kiln restart`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait for the container to exit before killing it
    /// (default: its --stop-timeout, else 10).
    #[arg(
        short = 't',
        long = "time",
        visible_alias = "timeout",
        value_name = "SECONDS"
    )]
    time: Option<u64>,
    /// Containers (ID, ID prefix or name).
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

/// Runs `kiln stop`.
pub fn run_stop(root: Option<&Path>, args: &StopArgs) -> anyhow::Result<ExitCode> {
    let store = crate::commands::open_store(root)?;
    Ok(each(&args.containers, |key| {
        let mut container = super::find(&store, key)?;
        stop(&mut container, args.time)
    }))
}

/// Runs `kiln restart`.
pub fn run_restart(root: Option<&Path>, args: &StopArgs) -> anyhow::Result<ExitCode> {
    let store = crate::commands::open_store(root)?;
    Ok(each(&args.containers, |key| {
        let mut container = super::find(&store, key)?;
        stop(&mut container, args.time)?;
        drop(super::create::start(&container, false)?);
        Ok(())
    }))
}

/// Runs `f` on each container argument, printing the argument on success
/// (as Docker does) and the error otherwise; exit status 1 if any failed.
fn each(keys: &[String], mut f: impl FnMut(&str) -> anyhow::Result<()>) -> ExitCode {
    each_printing(keys, |key| f(key).map(|()| key.to_owned()))
}

/// Runs `f` on each of `keys`, printing what it returns or its error;
/// exit status 1 if any failed.
fn each_printing(keys: &[String], mut f: impl FnMut(&str) -> anyhow::Result<String>) -> ExitCode {
    let mut failed = false;
    for key in keys {
        match f(key) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                crate::output::print_error(&e);
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Arguments of `kiln start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach stdout and stderr, and exit with the container's code.
    #[arg(short, long)]
    attach: bool,
    /// Attach stdin.
    #[arg(short, long)]
    interactive: bool,
    /// Containers (ID, ID prefix or name).
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

/// Runs `kiln start`.
pub fn run_start(root: Option<&Path>, args: &StartArgs) -> anyhow::Result<ExitCode> {
    let store = crate::commands::open_store(root)?;
    if args.attach || args.interactive {
        let [key] = args.containers.as_slice() else {
            bail!("you cannot start and attach multiple containers at once");
        };
        let container = super::find(&store, key)?;
        if container.is_running() {
            // As Docker: `start -a` of a running container attaches to it.
            return super::attach::attach_running(
                container,
                &super::attach::Relay {
                    stdin: args.interactive,
                    detach_keys: super::attach::parse_detach_keys("ctrl-p,ctrl-q")?,
                    sig_proxy: true,
                },
            );
        }
        if super::attach::refuse_piped_terminal(&container, args.interactive) {
            return Ok(ExitCode::FAILURE);
        }
        if super::attach::has_terminal(&container) {
            let (monitor, stream) = super::create::start_with(&container, false, true)?;
            return match stream {
                Some(stream) => {
                    super::attach::relay_started(&container, stream, monitor, args.interactive)
                }
                None => bail!("the container's monitor did not take the attachment"),
            };
        }
        let log = super::logs::Log::open(&container)?;
        let monitor = super::create::start(&container, args.interactive)?;
        return super::logs::attach(&container, log, monitor);
    }
    Ok(each(&args.containers, |key| {
        let container = super::find(&store, key)?;
        if !container.is_running() {
            match super::create::start(&container, false) {
                Ok(_) => {}
                Err(e) if e.is::<super::create::AlreadyRunning>() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }))
}

/// Arguments of `kiln kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// The signal (name or number).
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    /// Containers (ID, ID prefix or name).
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

/// Runs `kiln kill`.
pub fn run_kill(root: Option<&Path>, args: &KillArgs) -> anyhow::Result<ExitCode> {
    let signal = parse_signal(&args.signal)?;
    let store = super::containers_at(root);
    Ok(each(&args.containers, |key| {
        let container = super::find_in(&store, key)
            .map_err(|e| anyhow::anyhow!("Cannot kill container: {key}: {e}"))?;
        let fd = pidfd(container.state.pid, container.state.pid_start)
            .filter(|_| container.is_running());
        let Some(fd) = fd else {
            bail!(
                "Cannot kill container: {key}: Container {} is not running",
                container.config.id
            );
        };
        mark_stopped(&container);
        send(&fd, signal).with_context(|| format!("cannot kill container: {key}"))
    }))
}

/// Arguments of `kiln wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Containers (ID, ID prefix or name).
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

/// Runs `kiln wait`: prints each container's exit code once it stops.
pub fn run_wait(root: Option<&Path>, args: &WaitArgs) -> ExitCode {
    let store = super::containers_at(root);
    each_printing(&args.containers, |key| {
        let mut container = super::find_in(&store, key)?;
        // A created container is waited for until it has run.
        while container.state.status == "created" {
            std::thread::sleep(Duration::from_millis(20));
            container.refresh()?;
        }
        wait_not_running(&mut container, None)?;
        Ok(container.state.exit_code.to_string())
    })
}

/// Arguments of `kiln rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill a running container first.
    #[arg(short, long)]
    force: bool,
    /// Remove the container's anonymous volumes too.
    #[arg(short, long)]
    volumes: bool,
    /// Containers (ID, ID prefix or name).
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

/// Removes `container`, killing it first with `force`; its volumes are
/// released, and with `volumes` (`rm -v`) its anonymous ones removed.
pub fn remove(
    store: &Store,
    container: &mut Container,
    force: bool,
    volumes: bool,
) -> anyhow::Result<()> {
    if container.is_running() {
        if !force {
            bail!(
                "You cannot remove a running container {}. Stop the container before attempting removal or force remove",
                container.config.id
            );
        }
        mark_stopped(container);
        if let Some(fd) = pidfd(container.state.pid, container.state.pid_start) {
            let _ = send(&fd, libc::SIGKILL);
        }
        match wait_not_running(container, Some(Duration::from_secs(30))) {
            Ok(true) => {}
            // An --rm container that its monitor removed meanwhile.
            Err(_) if !container.dir.exists() => return Ok(()),
            Ok(false) => bail!(
                "cannot remove container \"/{}\": it did not stop",
                container.config.name
            ),
            Err(e) => return Err(e),
        }
    }
    wait_monitor_gone(container, Duration::from_secs(30));
    store
        .remove_container(&container.config.id)
        .with_context(|| format!("cannot remove container \"/{}\"", container.config.name))?;
    crate::commands::network::endpoints::remove_idle_bridges(store.root());
    store
        .release_container_volumes(&container.config.id, volumes)
        .with_context(|| {
            format!(
                "cannot release the volumes of container \"/{}\"",
                container.config.name
            )
        })
}

/// Runs `kiln rm`.
pub fn run_rm(root: Option<&Path>, args: &RmArgs) -> anyhow::Result<ExitCode> {
    let store = crate::commands::open_store(root)?;
    let _ = args.volumes;
    Ok(each(&args.containers, |key| {
        let mut container = super::find(&store, key)?;
        remove(&store, &mut container, args.force, args.volumes)
    }))
}

/// Arguments of `kiln container prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not ask for confirmation.
    #[arg(short, long)]
    force: bool,
}

/// Runs `kiln container prune`: removes every container that does not run.
pub fn run_prune(root: Option<&Path>, args: &PruneArgs) -> anyhow::Result<ExitCode> {
    if !args.force {
        eprint!(
            "WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] "
        );
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let store = crate::commands::open_store(root)?;
    let mut stdout = std::io::stdout().lock();
    let mut reclaimed = 0;
    let mut header = false;
    for id in store.container_ids()? {
        let Ok(mut container) = Container::load(&store.containers(), &id) else {
            continue;
        };
        if container.is_running() {
            continue;
        }
        if !header {
            writeln!(stdout, "Deleted Containers:")?;
            header = true;
        }
        reclaimed += kiln_store::store::disk_usage(&container.dir);
        remove(&store, &mut container, false, false)?;
        writeln!(stdout, "{id}")?;
    }
    if header {
        writeln!(stdout)?;
    }
    writeln!(
        stdout,
        "Total reclaimed space: {}",
        crate::units::human_size(reclaimed)
    )?;
    Ok(ExitCode::SUCCESS)
}
