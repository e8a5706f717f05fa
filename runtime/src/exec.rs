//! A further process in a running container (`kiln exec`): a re-exec of
//! the binary as `__kiln-exec` (single-threaded, as `setns` of a mount or
//! user namespace needs) joins the namespaces of the container's process
//! through a pidfd, so a pid reused meanwhile can never be joined, then
//! forks the process, which gets the container's confinement exactly as
//! the main process did (the same code: user resolution, workdir,
//! seccomp, capabilities, exec with Docker's 126/127).

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use serde::{Deserialize, Serialize};

use crate::init::{self, Failure};
use crate::spec::{Limits, Network, RunSpec, Seccomp};
use crate::{
    CONFIG_FD, ERROR_FD, InitConfig, NETWORK_FD, NetworkSetup, RuntimeError, is_rootless, signals,
    sys,
};

/// `argv[1]` that makes a kiln binary act as the exec helper.
pub const EXEC_ARG: &str = "__kiln-exec";

/// Whether `arg` is the exec marker (for binaries that dispatch on it).
pub fn is_exec_arg(arg: &std::ffi::OsStr) -> bool {
    arg == EXEC_ARG
}

/// The process to start in a running container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecSpec {
    /// The command line; `argv[0]` is looked up in the PATH of `env`.
    pub argv: Vec<String>,
    /// The final `K=V` environment.
    pub env: Vec<String>,
    /// Absolute working directory in the container.
    pub cwd: String,
    /// USER spec, resolved against the container's passwd and group files.
    pub user: String,
    /// Run on a new pseudo-terminal.
    pub tty: bool,
    /// Keep stdin attached; otherwise stdin is `/dev/null`.
    pub interactive: bool,
    /// The container's capabilities are all of them.
    pub privileged: bool,
    /// The container's seccomp filter.
    pub seccomp: Seccomp,
    /// The container's `--group-add` groups.
    pub group_add: Vec<String>,
}

/// What the helper gets on [`CONFIG_FD`].
#[derive(Serialize, Deserialize)]
struct ExecConfig {
    init: InitConfig,
    /// The `CLONE_NEW*` flags of the namespaces to join (those that differ
    /// from the caller's).
    namespaces: i32,
}

/// Namespace files under `/proc/PID/ns` and their flags, the user
/// namespace first (joining it gives the rights to join the others).
const NAMESPACES: [(&str, CloneFlags); 7] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("mnt", CloneFlags::CLONE_NEWNS),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("net", CloneFlags::CLONE_NEWNET),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
];

/// Runs `spec` in the namespaces and cgroup of the process `pidfd` (whose
/// pid is `pid`) refers to, with the caller's stdio; returns its exit
/// status in Docker numbering.
pub fn exec(pidfd: &OwnedFd, pid: i32, spec: &ExecSpec) -> Result<i32, RuntimeError> {
    if spec.argv.is_empty() {
        return Err(RuntimeError::InvalidSpec("no command given".into()));
    }
    let mut namespaces = CloneFlags::empty();
    for (name, flag) in NAMESPACES {
        let theirs = fs::metadata(format!("/proc/{pid}/ns/{name}"));
        let ours = fs::metadata(format!("/proc/self/ns/{name}"));
        if let (Ok(theirs), Ok(ours)) = (theirs, ours) {
            use std::os::unix::fs::MetadataExt as _;
            if theirs.ino() != ours.ino() || theirs.dev() != ours.dev() {
                namespaces |= flag;
            }
        }
    }
    let rootless = namespaces.contains(CloneFlags::CLONE_NEWUSER) || is_rootless();
    let config = ExecConfig {
        init: InitConfig {
            spec: RunSpec {
                layers: Vec::new(),
                upper: PathBuf::new(),
                argv: spec.argv.clone(),
                env: spec.env.clone(),
                cwd: spec.cwd.clone(),
                user: spec.user.clone(),
                hostname: String::new(),
                network: Network::Host,
                seccomp: Seccomp::Unconfined,
                privileged: spec.privileged,
                stop_timeout: Duration::ZERO,
                mounts: Vec::new(),
                limits: Limits::default(),
                capture: false,
                tty: spec.tty,
                interactive: spec.interactive,
                init: false,
                read_only_root: false,
                // The container's own additional groups apply to what
                // runs in it, as Docker's exec gives them.
                group_add: spec.group_add.clone(),
            },
            window: if spec.tty { sys::window_size(0) } else { None },
            merged: PathBuf::new(),
            work: PathBuf::new(),
            links: PathBuf::new(),
            files: PathBuf::new(),
            etc: None,
            // Unused: an exec joins a root that exists.
            copy: false,
            rootless,
            own_userns: false,
            seccomp: crate::seccomp_program(&spec.seccomp, spec.privileged)?,
            network: NetworkSetup::Host,
        },
        namespaces: namespaces.bits(),
    };
    let json = serde_json::to_vec(&config).map_err(|e| RuntimeError::Io(e.into()))?;
    let (config_read, config_write) = sys::pipe().map_err(RuntimeError::Io)?;
    let (error_read, error_write) = sys::pipe().map_err(RuntimeError::Io)?;
    let program = Path::new("/proc/self/exe");
    let mut command = Command::new(program);
    command.arg(EXEC_ARG).env_clear();
    // With -t the process's terminal comes from the container's own
    // devpts, as `run -t`'s does: the helper opens it once it is in the
    // container's mount namespace and sends the master back here.
    let terminal = if spec.tty {
        Some(sys::socketpair().map_err(RuntimeError::Io)?)
    } else {
        None
    };
    if !spec.interactive && !spec.tty {
        command.stdin(Stdio::null());
    }
    let fds = [
        config_read.as_raw_fd(),
        error_write.as_raw_fd(),
        pidfd.as_raw_fd(),
    ];
    let terminal_fd = terminal.as_ref().map(|(_, theirs)| theirs.as_raw_fd());
    // SAFETY: the closure only calls async-signal-safe functions (dup2,
    // fcntl, prctl) between fork and exec.
    unsafe {
        command.pre_exec(move || sys::child_fds(fds[0], fds[1], Some(fds[2]), terminal_fd));
    }
    let _guard = signals::Forwarding::install();
    let mut child = command.spawn().map_err(|source| RuntimeError::Spawn {
        program: program.to_path_buf(),
        source,
    })?;
    drop(config_read);
    drop(error_write);
    drop(command);
    let helper = i32::try_from(child.id()).unwrap_or(i32::MAX);
    let slot = signals::register(helper);
    // The helper waits for its configuration: it joins the cgroup before
    // it forks the process.
    let mut setup = join_cgroup(pid, helper);
    if setup.is_ok() {
        setup = fs::File::from(config_write)
            .write_all(&json)
            .map_err(RuntimeError::Io);
    }
    if setup.is_err() {
        let _ = child.kill();
    }
    let socket = terminal.map(|(ours, theirs)| {
        drop(theirs);
        ours
    });
    let status = std::thread::scope(|scope| {
        let copier = socket.map(|socket| {
            scope.spawn(move || {
                // None: the helper failed before it opened the terminal.
                let Ok(Some(master)) = sys::receive_fd(&socket) else {
                    return Vec::new();
                };
                drop(socket);
                let _resizing = signals::Resizing::install(master.as_raw_fd());
                sys::pty_copy(&master, false, spec.interactive)
            })
        });
        let status = child.wait();
        if let Some(copier) = copier {
            let _ = copier.join();
        }
        status
    });
    signals::unregister(slot);
    let status = status.map_err(RuntimeError::Io)?;
    setup?;
    let mut message = String::new();
    fs::File::from(error_read)
        .read_to_string(&mut message)
        .map_err(RuntimeError::Io)?;
    if !message.is_empty() {
        return Err(RuntimeError::Setup(message.trim_end().to_string()));
    }
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1))
}

/// Moves `helper` into the cgroup (v2) of `pid` when it is not ours, so
/// the process counts against the container's limits.
fn join_cgroup(pid: i32, helper: i32) -> Result<(), RuntimeError> {
    let unified = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("0::"))
            .map(str::to_owned)
    };
    let theirs = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .and_then(|t| unified(&t));
    let ours = fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| unified(&t));
    let Some(theirs) = theirs.filter(|t| Some(t) != ours.as_ref()) else {
        return Ok(());
    };
    let procs = Path::new("/sys/fs/cgroup")
        .join(theirs.trim_start_matches('/'))
        .join("cgroup.procs");
    fs::write(&procs, helper.to_string())
        .map_err(|e| RuntimeError::Cgroup(format!("joining {}: {e}", procs.display())))
}

/// Entry point of the exec helper; a binary calls it when `argv[1]` is
/// [`EXEC_ARG`], before any other setup (in particular before threads).
pub fn exec_main() -> ExitCode {
    let code = match helper() {
        Ok(code) => code,
        Err(message) => {
            init::report(&message);
            1
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn helper() -> Result<i32, String> {
    // SAFETY: fd 3 is the configuration pipe the parent set up for us.
    let mut pipe = fs::File::from(unsafe { OwnedFd::from_raw_fd(CONFIG_FD) });
    let mut json = Vec::new();
    pipe.read_to_end(&mut json)
        .map_err(|e| format!("reading the exec configuration: {e}"))?;
    drop(pipe);
    // SAFETY: marks the error pipe (and the terminal socket, if any)
    // close-on-exec so the process never holds them.
    unsafe {
        libc::fcntl(ERROR_FD, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::fcntl(crate::TERMINAL_FD, libc::F_SETFD, libc::FD_CLOEXEC);
    }
    if json.is_empty() {
        return Ok(1);
    }
    let config: ExecConfig = serde_json::from_slice(&json)
        .map_err(|e| format!("parsing the exec configuration: {e}"))?;
    // SAFETY: the parent put the container process's pidfd on this fd.
    let pidfd = unsafe { BorrowedFd::borrow_raw(NETWORK_FD) };
    let flags = CloneFlags::from_bits_truncate(config.namespaces);
    if !flags.is_empty() {
        nix::sched::setns(pidfd, flags)
            .map_err(|e| format!("joining the container's namespaces: {e}"))?;
    }
    // SAFETY: closes the pidfd, which the process must not hold.
    unsafe {
        libc::close(NETWORK_FD);
    }
    let mut blocked = SigSet::empty();
    blocked.add(Signal::SIGCHLD);
    for sig in init::FORWARDED {
        blocked.add(sig);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None)
        .map_err(|e| format!("blocking signals: {e}"))?;
    // The fork enters the PID namespace joined above.
    let child = init::fork()?;
    if child == 0 && config.init.spec.tty {
        // In the container's mount namespace now: its devpts.
        let code = match init::open_terminal(&config.init) {
            Ok(terminal) => init::start_user(&config.init, Some(terminal)),
            Err(message) => {
                init::report(&message);
                1
            }
        };
        init::exit_now(code);
    }
    if child == 0 {
        let code = match init::exec_user(&config.init) {
            Ok(never) => match never {},
            Err(Failure::Setup(message)) => {
                init::report(&message);
                1
            }
            Err(Failure::Exec(message, code)) => {
                let line = format!("kiln: unable to start container process: {message}\n");
                // SAFETY: writes a valid buffer to stderr.
                unsafe {
                    libc::write(2, line.as_bytes().as_ptr().cast(), line.len());
                }
                code
            }
        };
        init::exit_now(code);
    }
    Ok(init::supervise(child, &blocked, None))
}
