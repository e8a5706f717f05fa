//! kiln-runtime: runs one process in Linux namespaces over an overlayfs
//! snapshot of an image, for RUN steps and `kiln run`.
//!
//! [`run`] is called from kiln's multi-threaded process, so it never
//! unshares or forks itself: it starts `/proc/self/exe __kiln-init` (a fresh,
//! single-threaded process, see [`init_main`]) and hands it the spec over a
//! pipe. The init unshares the namespaces and forks PID 1 of the new PID
//! namespace, which builds the root filesystem in a private mount namespace
//! and forks the user process. Everything mounted lives in that namespace and
//! dies with it, so nothing reaches the host's mount table.

pub mod binfmt;
pub mod bridge;
mod caps;
mod cgroup;
mod exec;
mod fill;
mod init;
mod network;
pub mod ports;
pub mod seccomp;
mod signals;
pub mod spec;
mod sys;

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use exec::{EXEC_ARG, ExecSpec, exec, exec_main, is_exec_arg};
pub use network::NetworkPool;
pub use seccomp::{Profile as SeccompProfile, SeccompError};
pub use spec::{Limits, Mount, Network, RunOutcome, RunSpec, Seccomp};
pub use sys::{RawMode, write_all};

/// `argv[1]` that makes a kiln binary act as the container init.
pub const INIT_ARG: &str = "__kiln-init";

/// The fd on which the init reads its configuration.
const CONFIG_FD: i32 = 3;
/// File in `files` where the init lists the mount points it created.
const STUBS: &str = "stubs";
/// Docker's default seccomp profile as BPF, compiled by the build script
/// with and without the x32 ABI (empty when it could not, e.g. when
/// cross-compiling: then it is compiled at run time).
const DEFAULT_SECCOMP: seccomp::Embedded<'static> = seccomp::Embedded {
    with_x32: include_bytes!(concat!(env!("OUT_DIR"), "/default-seccomp.bpf")),
    without_x32: include_bytes!(concat!(env!("OUT_DIR"), "/default-seccomp-no-x32.bpf")),
};
/// File in `files` where the init records the NAT helper's pid.
const NETWORK_PID: &str = "network.pid";
/// The fd on which the init and its children report setup failures.
const ERROR_FD: i32 = 4;
/// The fd on which the init finds a leased network namespace to join.
const NETWORK_FD: i32 = 5;
/// The socket on which the container's PID 1 sends kiln the master of the
/// terminal it opened in the container's devpts (`tty`).
const TERMINAL_FD: i32 = 6;

/// A container that could not be set up or run.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The spec is unusable as given.
    #[error("invalid run spec: {0}")]
    InvalidSpec(String),
    /// A bind mount's host source does not exist.
    #[error("bind mount source {path} does not exist")]
    MountSource {
        /// The missing host path.
        path: PathBuf,
    },
    /// Preparing the run's temporary files on the host failed.
    #[error("preparing {path}: {source}")]
    Prepare {
        /// The path being prepared.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Resource limits were requested but cgroups could not apply them.
    #[error("cgroup: {0}")]
    Cgroup(String),
    /// Starting the init process failed.
    #[error("starting container init {program}: {source}")]
    Spawn {
        /// The init program.
        program: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Talking to the init process failed.
    #[error("container init i/o: {0}")]
    Io(io::Error),
    /// The container's setup failed inside the init (mounts, user, workdir).
    #[error("container setup: {0}")]
    Setup(String),
    /// The spec asks for something only root can do, and kiln is not root.
    #[error("{0}")]
    NeedsRoot(String),
    /// The seccomp profile could not be compiled.
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    /// The isolated network's user-mode NAT is not installed.
    #[error(
        "the isolated network needs {tool}, which is not in PATH: install it (Debian: apt-get install {tool}) or use --network host or --network none"
    )]
    MissingNetworkHelper {
        /// The program.
        tool: &'static str,
    },
    /// The isolated network cannot be set up for this caller.
    #[error("{0}")]
    Network(String),
}

/// What the parent hands the init: the spec plus host paths it prepared.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct InitConfig {
    spec: RunSpec,
    /// Mount point of the overlay.
    merged: PathBuf,
    /// Overlay work directory (next to the upper directory).
    work: PathBuf,
    /// Directory of short symlinks `0`, `1`, ... to the layers, base first,
    /// plus `s` to the skeleton layer.
    links: PathBuf,
    /// Generated `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`.
    files: PathBuf,
    /// The caller's `/etc` files, bound instead of those in `files`.
    etc: Option<PathBuf>,
    /// The root is a copy of the layers, not an overlay
    /// ([`kiln_rootfs::mount::Snapshotter::Copy`]; chosen by the parent,
    /// as probing needs a thread).
    #[serde(default)]
    copy: bool,
    /// kiln lacks the host's root ([`kiln_rootfs::userns::rootless`]):
    /// no cgroups, device nodes or `trusted.*` xattrs; overlays with
    /// `userxattr`.
    rootless: bool,
    /// kiln is not uid 0 (a library caller not in kiln's own user
    /// namespace): the init enters a user namespace that maps only the
    /// container's root to the caller.
    #[serde(default)]
    own_userns: bool,
    /// The seccomp filter as BPF (`struct sock_filter`s), compiled here
    /// once so that the init only loads it.
    seccomp: Option<Vec<u8>>,
    /// How the container gets its network namespace.
    network: NetworkSetup,
    /// The caller's window size (rows, columns, pixels) for the
    /// container's terminal, set before the process starts.
    window: Option<[u16; 4]>,
}

/// How the init gives the container its network namespace.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum NetworkSetup {
    /// The host's ([`Network::Host`]).
    Host,
    /// A new one with only `lo` ([`Network::None`]).
    Loopback,
    /// A new one joined to the host by this slirp4netns, started by the
    /// init for this run ([`Network::Isolated`] without a pool).
    Helper(PathBuf),
    /// The leased one on [`NETWORK_FD`], already joined to the host.
    Leased,
}

/// The `/etc/resolv.conf` an isolated (slirp4netns) run gets from the
/// host's, for a caller that writes the `/etc` files itself
/// ([`Hooks::etc`]).
pub fn isolated_resolv_conf() -> String {
    network::resolv_conf(
        &fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        Network::Isolated,
    )
}

/// Whether runs from this process are rootless: effective uid not 0, or
/// root of a user namespace (kiln's own without root).
pub(crate) fn is_rootless() -> bool {
    kiln_rootfs::userns::rootless()
}

/// Whether the init must make its own user namespace (effective uid not
/// 0: not inside kiln's).
pub(crate) fn needs_own_userns() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() != 0 }
}

/// Whether SIGINT or SIGTERM reached kiln during a run (the runtime
/// forwards them to the container) or [`stop_all`] was called, so a caller
/// can tell an interrupted run from a failing one. It stays set: from then
/// on every run this process starts is stopped as soon as it exists.
pub fn interrupted() -> bool {
    signals::stopping()
}

/// Stops every container this process runs, and any it starts later
/// (SIGTERM, then SIGKILL after each run's stop timeout): for a SIGINT or
/// SIGTERM handler of the caller, such as a build being cancelled while
/// no run holds the signal handlers. Async-signal-safe.
pub fn stop_all() {
    signals::stop_all();
}

/// Waits until the NAT helpers of finished runs and closed
/// [`NetworkPool`]s are gone: they are killed without waiting and reaped
/// in the background, so a program calls this before it exits, lest an
/// orphan outlive it.
pub fn wait_for_helpers() {
    network::wait_for_helpers();
}

/// Runs `spec` with this executable (`/proc/self/exe`, which still works
/// when the file on disk was replaced) as the container init; the binary
/// must call [`init_main`] when its first argument is [`INIT_ARG`].
pub fn run(spec: &RunSpec) -> Result<RunOutcome, RuntimeError> {
    run_with_init(spec, Path::new("/proc/self/exe"), None)
}

/// Which of the container's output streams a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Receives the container's output as it is read, chunk by chunk (a chunk
/// may hold part of a line, or several). Called from reader threads.
pub type OutputSink<'a> = &'a (dyn Fn(Stream, &[u8]) + Sync);

/// What a caller that keeps the run as a container gets while it runs.
#[derive(Clone, Copy, Default)]
pub struct Hooks<'a> {
    /// Called with the init's pid as soon as it is spawned (the container
    /// process itself is a grandchild of it, in the new PID namespace).
    pub started: Option<&'a (dyn Fn(i32) + Sync)>,
    /// Receives the output as it is read (with `spec.capture`).
    pub sink: Option<OutputSink<'a>>,
    /// Keep the output in the outcome too (false for a long-lived
    /// container, whose output only goes to `sink`).
    pub keep_output: bool,
    /// With `spec.tty`: receives the terminal's master once the container
    /// has opened it, and copies it itself until it ends (a monitor that
    /// serves attached clients); without it the master is copied to this
    /// process's stdio.
    pub terminal: Option<&'a (dyn Fn(OwnedFd) + Sync)>,
    /// With `spec.tty`: the terminal's size (rows, columns, pixels) from
    /// the start, when this process's stdin is not the user's terminal.
    pub window: Option<[u16; 4]>,
    /// A network namespace the caller prepared (a bridge network's, see
    /// [`bridge`]) for the container to join instead of `spec.network`'s.
    pub netns: Option<BorrowedFd<'a>>,
    /// A directory with the container's `hosts`, `hostname` and
    /// `resolv.conf`, bind-mounted instead of generated ones: the caller
    /// keeps them (and rewrites `hosts` in place as peers come and go).
    pub etc: Option<&'a Path>,
}

/// Like [`run`], with `hooks` told of the start and of every chunk of
/// output (which is not kept in the outcome unless `hooks.keep_output`):
/// for a container monitor.
pub fn run_hooked(spec: &RunSpec, hooks: Hooks<'_>) -> Result<RunOutcome, RuntimeError> {
    run_inner(spec, Path::new("/proc/self/exe"), hooks, None)
}

/// [`run_hooked`] with an isolated network leased from `networks` (when
/// `hooks.netns` does not give one).
pub fn run_hooked_pooled(
    spec: &RunSpec,
    hooks: Hooks<'_>,
    networks: Option<&NetworkPool>,
) -> Result<RunOutcome, RuntimeError> {
    run_inner(spec, Path::new("/proc/self/exe"), hooks, networks)
}

/// Like [`run`] with `spec.capture` set, and every chunk of output also
/// handed to `sink` as it arrives, so a caller can show it live; the
/// outcome still holds all of it. With `networks`, an isolated network
/// is leased from that pool (see [`NetworkPool`]) instead of made for the
/// run.
pub fn run_streaming(
    spec: &RunSpec,
    sink: OutputSink<'_>,
    networks: Option<&NetworkPool>,
) -> Result<RunOutcome, RuntimeError> {
    let hooks = Hooks {
        started: None,
        sink: Some(sink),
        keep_output: true,
        ..Hooks::default()
    };
    run_inner(spec, Path::new("/proc/self/exe"), hooks, networks)
}

/// Runs `spec` with `init_program` as the container init; the program must
/// call [`init_main`] when its first argument is [`INIT_ARG`]. With
/// `networks`, an isolated network is leased from that pool.
///
/// Without root (effective uid not 0) the container runs in a user
/// namespace where only its root is mapped, to the caller; resource limits
/// are then refused with [`RuntimeError::NeedsRoot`], and a USER other than
/// root fails the setup.
pub fn run_with_init(
    spec: &RunSpec,
    init_program: &Path,
    networks: Option<&NetworkPool>,
) -> Result<RunOutcome, RuntimeError> {
    run_inner(spec, init_program, Hooks::default(), networks)
}

fn run_inner(
    spec: &RunSpec,
    init_program: &Path,
    hooks: Hooks<'_>,
    networks: Option<&NetworkPool>,
) -> Result<RunOutcome, RuntimeError> {
    validate(spec)?;
    let parent = spec
        .upper
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".kiln-run-")
        .tempdir_in(parent)
        .map_err(|source| RuntimeError::Prepare {
            path: parent.to_path_buf(),
            source,
        })?;
    // A pool's networks live in the host's user namespace: without root
    // the run's own user namespace needs a network of its own.
    let pool = networks
        .filter(|_| spec.network == Network::Isolated && !is_rootless() && hooks.netns.is_none());
    let mut config = prepare(spec, tmp.path(), pool.is_some() || hooks.netns.is_some())?;
    if hooks.netns.is_some() {
        config.network = NetworkSetup::Leased;
    }
    config.etc = hooks.etc.map(Path::to_path_buf);
    if hooks.window.is_some() {
        config.window = hooks.window;
    }
    // Privileged, the run could change its network: it gets a fresh one.
    let lease = pool.map(|p| p.lease(spec.privileged)).transpose()?;
    if matches!(config.network, NetworkSetup::Helper(_)) {
        network::become_subreaper();
    }
    let mut result = run_prepared(
        &config,
        init_program,
        hooks,
        lease
            .as_ref()
            .and_then(network::Lease::fd)
            .or(hooks.netns.map(|fd| fd.as_raw_fd())),
    );
    // The run is over (every process of its PID namespace is gone): the
    // network goes back to the pool.
    drop(lease);
    network::reap_later(&config.files.join(NETWORK_PID));
    let finished = finish_copy(&config);
    if result.is_ok()
        && let Err(e) = finished
    {
        result = Err(e);
    }
    let cleaned = remove_stubs(&config);
    if result.is_ok()
        && let Err(e) = cleaned
    {
        result = Err(e);
    }
    // Overlayfs leaves its work/work directory, and for a volatile mount
    // work/work/incompat/volatile, with mode 0: only root could list them
    // to remove them.
    let mut dir = config.work.clone();
    for name in ["work", "incompat", "volatile"] {
        dir.push(name);
        let _ = fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700));
    }
    let tmp_path = tmp.path().to_path_buf();
    let removed = tmp.close();
    let outcome = result?;
    removed.map_err(|source| RuntimeError::Prepare {
        path: tmp_path,
        source,
    })?;
    Ok(outcome)
}

fn validate(spec: &RunSpec) -> Result<(), RuntimeError> {
    if spec.argv.is_empty() {
        return Err(RuntimeError::InvalidSpec("no command given".into()));
    }
    if is_rootless() && spec.limits.any() {
        return Err(RuntimeError::NeedsRoot(
            "resource limits need root (cgroups)".into(),
        ));
    }
    if !spec.cwd.starts_with('/') {
        return Err(RuntimeError::InvalidSpec(format!(
            "working directory {:?} is not absolute",
            spec.cwd
        )));
    }
    for mount in &spec.mounts {
        let target = match mount {
            Mount::Bind { source, target, .. } | Mount::Volume { source, target, .. } => {
                if fs::symlink_metadata(source).is_err() {
                    return Err(RuntimeError::MountSource {
                        path: source.clone(),
                    });
                }
                target
            }
            Mount::Tmpfs { target, .. } => target,
        };
        if !target.starts_with('/') {
            return Err(RuntimeError::InvalidSpec(format!(
                "mount target {target:?} is not absolute"
            )));
        }
    }
    Ok(())
}

fn prep_err(path: &Path) -> impl FnOnce(io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Prepare {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates the temporary layout: overlay work dir, skeleton layer, layer
/// links and generated files. `leased`: the isolated network comes from a
/// pool.
fn prepare(spec: &RunSpec, tmp: &Path, leased: bool) -> Result<InitConfig, RuntimeError> {
    // The init changes directory before mounting, so every path it gets is
    // absolute.
    let tmp = &fs::canonicalize(tmp).map_err(prep_err(tmp))?;
    let mut spec = spec.clone();
    spec.upper = fs::canonicalize(&spec.upper).map_err(prep_err(&spec.upper))?;
    for bad in [',', ':', '\\'] {
        for path in [&spec.upper, tmp] {
            if path.to_string_lossy().contains(bad) {
                return Err(RuntimeError::InvalidSpec(format!(
                    "{} contains {bad:?}, which overlayfs options cannot carry",
                    path.display()
                )));
            }
        }
    }
    for mount in &mut spec.mounts {
        if let Mount::Bind { source, .. } | Mount::Volume { source, .. } = mount {
            *source = std::path::absolute(&*source).map_err(prep_err(source))?;
        }
    }
    let merged = tmp.join("m");
    let work = tmp.join("w");
    let links = tmp.join("l");
    let files = tmp.join("f");
    let skel = tmp.join("s");
    for dir in [&merged, &work, &links, &files, &skel] {
        fs::create_dir(dir).map_err(prep_err(dir))?;
    }
    // The skeleton is the topmost lower layer: it provides the mount points
    // the image may lack, so nothing is created in the upper directory, and
    // its real directories and files hide any symlink the image has there.
    for dir in ["proc", "dev", "sys", "etc"] {
        let path = skel.join(dir);
        fs::create_dir(&path).map_err(prep_err(&path))?;
    }
    for file in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
        let path = skel.join(file);
        fs::write(&path, b"").map_err(prep_err(&path))?;
    }
    let skel_link = links.join("s");
    std::os::unix::fs::symlink(&skel, &skel_link).map_err(prep_err(&skel_link))?;
    for (i, layer) in spec.layers.iter().enumerate() {
        let link = links.join(i.to_string());
        let target = fs::canonicalize(layer).map_err(prep_err(layer))?;
        std::os::unix::fs::symlink(target, &link).map_err(prep_err(&link))?;
    }
    let hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{}\n",
        spec.hostname
    );
    let resolv = network::resolv_conf(
        &fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        spec.network,
    );
    for (name, content) in [
        ("hosts", hosts.into_bytes()),
        ("hostname", format!("{}\n", spec.hostname).into_bytes()),
        ("resolv.conf", resolv.into_bytes()),
    ] {
        let path = files.join(name);
        fs::write(&path, content).map_err(prep_err(&path))?;
    }
    let seccomp = seccomp_program(&spec.seccomp, spec.privileged)?;
    let network = match spec.network {
        Network::Host => NetworkSetup::Host,
        Network::None => NetworkSetup::Loopback,
        Network::Isolated if leased => NetworkSetup::Leased,
        Network::Isolated => {
            network::check_tun(is_rootless()).map_err(RuntimeError::Network)?;
            NetworkSetup::Helper(network::helper_path().ok_or(
                RuntimeError::MissingNetworkHelper {
                    tool: network::HELPER,
                },
            )?)
        }
    };
    let window = if spec.tty { sys::window_size(0) } else { None };
    let copy = kiln_rootfs::mount::snapshotter(tmp, is_rootless())
        .map_err(prep_err(tmp))?
        .snapshotter
        == kiln_rootfs::mount::Snapshotter::Copy;
    Ok(InitConfig {
        copy,
        spec,
        merged,
        work,
        links,
        files,
        etc: None,
        rootless: is_rootless(),
        own_userns: needs_own_userns(),
        seccomp,
        network,
        window,
    })
}

/// The BPF program of `seccomp` for a process with the default (or, when
/// privileged, every) capability; `None` when unconfined.
fn seccomp_program(seccomp: &Seccomp, privileged: bool) -> Result<Option<Vec<u8>>, RuntimeError> {
    let caps = caps::capability_names(privileged);
    Ok(match seccomp {
        Seccomp::Unconfined => None,
        Seccomp::Default => Some(seccomp::default_program(&caps, &DEFAULT_SECCOMP)?),
        Seccomp::Profile(profile) => Some(seccomp::compile(profile, &caps)?),
    })
}

/// With the copy snapshotter, records what the run changed in its root
/// in the upper directory (nothing for a kernel overlay).
fn finish_copy(config: &InitConfig) -> Result<(), RuntimeError> {
    if !config.copy {
        return Ok(());
    }
    let names: Vec<PathBuf> = std::iter::once("s".to_owned())
        .chain((0..config.spec.layers.len()).rev().map(|i| i.to_string()))
        .map(|name| config.links.join(name))
        .collect();
    let stack: Vec<&Path> = names.iter().map(PathBuf::as_path).collect();
    kiln_rootfs::mount::finish_copy(
        &stack,
        &config.spec.upper,
        &config.work,
        kiln_rootfs::mount::OverlayOptions {
            userxattr: config.rootless,
            snapshotter: None,
        },
    )
    .map_err(prep_err(&config.spec.upper))
}

/// Removes from the upper directory the mount points the init had to
/// create for spec mounts (listed in `files/stubs`, relative to the root),
/// and the directories copied up only to hold them, so the upper directory
/// keeps exactly what the process wrote.
fn remove_stubs(config: &InitConfig) -> Result<(), RuntimeError> {
    let list = config.files.join(STUBS);
    let Ok(text) = fs::read_to_string(&list) else {
        return Ok(());
    };
    let upper = &config.spec.upper;
    for rel in text.lines().rev() {
        let rel = PathBuf::from(std::ffi::OsString::from_vec(kiln_rootfs::path::relative(
            rel,
        )));
        if rel.as_os_str().is_empty() {
            continue;
        }
        let path = upper.join(&rel);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() && is_empty_dir(&path) => {
                fs::remove_dir(&path).map_err(prep_err(&path))?;
            }
            Ok(meta) if meta.is_file() && meta.len() == 0 => {
                fs::remove_file(&path).map_err(prep_err(&path))?;
            }
            _ => {}
        }
        // Ancestors that exist in the upper directory only because creating
        // the stub copied them up, and hold nothing else.
        let mut parent = rel.parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            let path = upper.join(dir);
            if !is_empty_dir(&path) || fs::remove_dir(&path).is_err() {
                break;
            }
            parent = dir.parent();
        }
    }
    Ok(())
}

fn is_empty_dir(path: &Path) -> bool {
    fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_none())
}

/// `network`: the leased network namespace the init joins.
fn run_prepared(
    config: &InitConfig,
    init_program: &Path,
    hooks: Hooks<'_>,
    network: Option<RawFd>,
) -> Result<RunOutcome, RuntimeError> {
    let spec = &config.spec;
    let cgroup = if spec.limits.any() {
        Some(cgroup::Cgroup::create(&spec.limits).map_err(RuntimeError::Cgroup)?)
    } else {
        None
    };
    let result = spawn_and_wait(config, init_program, cgroup.as_ref(), hooks, network);
    let oom = cgroup.as_ref().is_some_and(cgroup::Cgroup::oom_killed);
    let removed = cgroup.map_or(Ok(()), cgroup::Cgroup::remove);
    let mut outcome = result?;
    removed.map_err(RuntimeError::Cgroup)?;
    if oom {
        outcome.oom_killed = true;
        outcome.exit_code = 137;
    }
    Ok(outcome)
}

fn spawn_and_wait(
    config: &InitConfig,
    init_program: &Path,
    cgroup: Option<&cgroup::Cgroup>,
    hooks: Hooks<'_>,
    network: Option<RawFd>,
) -> Result<RunOutcome, RuntimeError> {
    let spec = &config.spec;
    let sink = hooks.sink;
    let json = serde_json::to_vec(config).map_err(|e| RuntimeError::Io(e.into()))?;
    let (config_read, config_write) = sys::pipe().map_err(RuntimeError::Io)?;
    let (error_read, error_write) = sys::pipe().map_err(RuntimeError::Io)?;
    let mut command = Command::new(init_program);
    command.arg(INIT_ARG).env_clear();
    // With a terminal, the container's PID 1 opens it in the container's
    // own devpts (so the process finds it at /dev/pts/0 there) and sends
    // the master back on this socket; the init's own stdio stays off it.
    let terminal = if spec.tty {
        Some(sys::socketpair().map_err(RuntimeError::Io)?)
    } else {
        None
    };
    command.stdin(if spec.interactive && !spec.tty {
        Stdio::inherit()
    } else {
        Stdio::null()
    });
    if spec.capture {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let fds = [config_read.as_raw_fd(), error_write.as_raw_fd()];
    let terminal_fd = terminal.as_ref().map(|(_, theirs)| theirs.as_raw_fd());
    // SAFETY: the closure only calls async-signal-safe functions (dup2,
    // fcntl, prctl) between fork and exec.
    unsafe {
        command.pre_exec(move || sys::child_fds(fds[0], fds[1], network, terminal_fd));
    }
    let _guard = signals::Forwarding::install();
    let mut child = command.spawn().map_err(|source| RuntimeError::Spawn {
        program: init_program.to_path_buf(),
        source,
    })?;
    drop(config_read);
    drop(error_write);
    drop(command);
    let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    let slot = signals::register(pid);
    if let Some(started) = hooks.started {
        started(pid);
    }
    // A signal that came before the pid was registered must still reach it.
    if signals::stopping() {
        // SAFETY: kill on the pid of our own, not yet reaped, child.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    // Only the init's copies of its end may remain: the receive below ends
    // when they are all closed.
    let terminal = terminal.map(|(ours, _theirs)| ours);

    // The init waits for its configuration before it starts anything, so
    // joining the cgroup here happens before the user process exists.
    let mut setup = Ok(());
    if let Some(cgroup) = cgroup {
        setup = cgroup.add(pid).map_err(RuntimeError::Cgroup);
    }
    if setup.is_ok() {
        let mut writer = fs::File::from(config_write);
        setup = writer.write_all(&json).map_err(RuntimeError::Io);
    } else {
        drop(config_write);
    }
    if setup.is_err() {
        let _ = child.kill();
    }

    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (out, err, status) = std::thread::scope(|scope| {
        let keep = hooks.keep_output;
        let err_thread = scope.spawn(move || read_all(stderr, Stream::Stderr, sink, keep));
        let terminal_hook = hooks.terminal;
        let pty_thread = terminal.map(|socket| {
            let capture = spec.capture;
            let interactive = spec.interactive;
            scope.spawn(move || {
                // None: the container failed before it opened its terminal.
                let Ok(Some(master)) = sys::receive_fd(&socket) else {
                    return Vec::new();
                };
                drop(socket);
                if let Some(terminal) = terminal_hook {
                    terminal(master);
                    return Vec::new();
                }
                // Declared after the master, so it is dropped
                // (unregistered) first; it also copies a size changed
                // since the run started.
                let _resizing = signals::Resizing::install(master.as_raw_fd());
                sys::pty_copy(&master, capture, interactive)
            })
        });
        let out = read_all(stdout, Stream::Stdout, sink, keep);
        let status = child.wait();
        let err = err_thread.join().unwrap_or_default();
        let pty_out = pty_thread.and_then(|t| t.join().ok()).unwrap_or_default();
        (if spec.tty { pty_out } else { out }, err, status)
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
    let exit_code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    Ok(RunOutcome {
        exit_code,
        oom_killed: false,
        stdout: out,
        stderr: err,
    })
}

/// Everything `reader` gives until end of file, each chunk also passed to
/// `sink` as soon as it is read (and kept only with `keep`).
fn read_all<R: Read>(
    reader: Option<R>,
    stream: Stream,
    sink: Option<OutputSink<'_>>,
    keep: bool,
) -> Vec<u8> {
    let mut buf = Vec::new();
    let Some(mut reader) = reader else {
        return buf;
    };
    let Some(sink) = sink else {
        let _ = reader.read_to_end(&mut buf);
        return buf;
    };
    let mut chunk = [0u8; 8192];
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                let data = chunk.get(..n).unwrap_or_default();
                sink(stream, data);
                if keep {
                    buf.extend_from_slice(data);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    buf
}

/// Entry point of the container init; a binary calls it when `argv[1]` is
/// [`INIT_ARG`], before any other setup (in particular before threads).
pub fn init_main() -> ExitCode {
    let code = init::main();
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// The cgroup version resource limits use: 2 when the unified hierarchy
/// is mounted at /sys/fs/cgroup, else 1 (`docker info`'s Cgroup Version).
pub fn cgroup_version() -> u32 {
    if cgroup::unified() { 2 } else { 1 }
}

/// Whether `arg` is the init marker (for binaries that dispatch on it).
pub fn is_init_arg(arg: &OsStr) -> bool {
    arg == INIT_ARG
}
