//! The container init. Runs in a freshly exec'd, single-threaded process:
//! unshares the namespaces, forks PID 1 of the new PID namespace, which
//! builds the root filesystem and forks the user process.

use std::ffi::CString;
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use kiln_rootfs::mount::BindOptions;
use kiln_rootfs::{Root, path, user};
use nix::fcntl::OFlag;

use crate::caps::DEFAULT_CAPS;
use crate::network::{Helper, Ready, loopback_up};
use crate::spec::Mount;
use crate::{
    CONFIG_FD, ERROR_FD, InitConfig, NETWORK_FD, NetworkSetup, STUBS, TERMINAL_FD, seccomp, sys,
};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Signals the init passes on to its child instead of acting on them.
pub(crate) const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Reports a setup failure to the parent, which turns it into an error.
pub(crate) fn report(message: &str) {
    let bytes = message.as_bytes();
    // SAFETY: writes a valid buffer to the inherited error pipe.
    unsafe {
        libc::write(ERROR_FD, bytes.as_ptr().cast(), bytes.len());
    }
}

pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit ends this (forked) process without running the parent
    // image's atexit handlers or flushing its duplicated buffers.
    unsafe { libc::_exit(code) }
}

pub(crate) fn fork() -> Result<i32, String> {
    // SAFETY: this process is single-threaded (a fresh exec of the init),
    // so the child may allocate and run arbitrary code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        Err(format!("fork: {}", io::Error::last_os_error()))
    } else {
        Ok(pid)
    }
}

pub(crate) fn main() -> i32 {
    match outer() {
        Ok(code) => code,
        Err(message) => {
            report(&message);
            1
        }
    }
}

fn outer() -> Result<i32, String> {
    // SAFETY: fd 3 is the configuration pipe the parent set up for us.
    let mut config_pipe = fs::File::from(unsafe { OwnedFd::from_raw_fd(CONFIG_FD) });
    let mut json = Vec::new();
    config_pipe
        .read_to_end(&mut json)
        .map_err(|e| format!("reading the init configuration: {e}"))?;
    drop(config_pipe);
    // SAFETY: marks the error pipe and the terminal socket (if any)
    // close-on-exec so that neither the NAT helper nor the user process
    // ever holds them.
    unsafe {
        libc::fcntl(ERROR_FD, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::fcntl(TERMINAL_FD, libc::F_SETFD, libc::FD_CLOEXEC);
    }
    if json.is_empty() {
        // The parent gave up before sending anything (e.g. cgroup failure).
        return Ok(1);
    }
    let config: InitConfig = serde_json::from_slice(&json)
        .map_err(|e| format!("parsing the init configuration: {e}"))?;

    // The NAT helper is forked before any namespace exists, so that it
    // stays in the host's; it attaches once the namespaces are made.
    let mut helper = match &config.network {
        NetworkSetup::Helper(program) => Some(Helper::spawn(
            program,
            config.own_userns,
            &config.files.join("network.log"),
        )?),
        _ => None,
    };
    // Recorded first: whatever fails from here, kiln reaps the helper.
    if let Some(helper) = &helper {
        helper.record_pid(&config.files.join(crate::NETWORK_PID))?;
    }
    if matches!(config.network, NetworkSetup::Leased) {
        join_leased_network()?;
    }
    if config.own_userns {
        enter_user_namespace()?;
    }
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC;
    if matches!(
        config.network,
        NetworkSetup::Loopback | NetworkSetup::Helper(_)
    ) {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    unshare(flags).map_err(|e| format!("unshare namespaces: {e}"))?;
    if let Some(helper) = &mut helper {
        helper.start()?;
    }
    let ready = helper.as_mut().and_then(Helper::take_ready);
    // First thing in the new mount namespace: no propagation either way, so
    // nothing mounted here ever shows up on the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making / private: {e}"))?;

    let mut blocked = SigSet::empty();
    blocked.add(Signal::SIGCHLD);
    for sig in FORWARDED {
        blocked.add(sig);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None)
        .map_err(|e| format!("blocking signals: {e}"))?;

    let pid1 = fork()?;
    if pid1 == 0 {
        // PID 1 of the new namespace; it must not outlive this process.
        // (getppid is 0 here: the parent is outside the namespace.)
        // SAFETY: prctl on integers.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        }
        let code = match pid1_main(&config, &blocked, ready) {
            Ok(code) => code,
            Err(message) => {
                report(&message);
                1
            }
        };
        exit_now(code);
    }
    drop(ready);
    // Only PID 1 sends on the terminal socket; kiln must see it close
    // when PID 1 is done with it.
    // SAFETY: closes a descriptor this process does not use (EBADF when
    // there is none).
    unsafe {
        libc::close(TERMINAL_FD);
    }
    let code = supervise(pid1, &blocked, Some(config.spec.stop_timeout));
    if let Some(helper) = helper {
        helper.stop();
    }
    Ok(code)
}

/// Joins the leased network namespace kiln passed on [`NETWORK_FD`] (ready,
/// with slirp4netns attached) and closes the descriptor, so that no
/// process of the container holds it.
fn join_leased_network() -> Result<(), String> {
    // SAFETY: kiln put the namespace on this fd for us; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(NETWORK_FD) };
    nix::sched::setns(&fd, CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("joining the leased network namespace: {e}"))
}

/// Unshares a user namespace in which root is the caller (the only id
/// mapped), so the other namespaces belong to it and root there may mount.
/// An unprivileged process may write its own single-id maps, after
/// denying setgroups.
fn enter_user_namespace() -> Result<(), String> {
    let uid = nix::unistd::geteuid();
    let gid = nix::unistd::getegid();
    unshare(CloneFlags::CLONE_NEWUSER)
        .map_err(|e| format!("unshare user namespace (needed without root): {e}"))?;
    for (file, text) in [
        ("/proc/self/setgroups", "deny".to_string()),
        ("/proc/self/uid_map", format!("0 {uid} 1")),
        ("/proc/self/gid_map", format!("0 {gid} 1")),
    ] {
        fs::write(file, text).map_err(|e| format!("writing {file}: {e}"))?;
    }
    Ok(())
}

/// Waits up to `timeout` (forever with `None`) for one of the `blocked`
/// signals; `None` when the time is up.
fn wait_signal(blocked: &SigSet, timeout: Option<Duration>) -> Option<Signal> {
    let Some(timeout) = timeout else {
        return blocked.wait().ok();
    };
    let spec = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(timeout.subsec_nanos().min(999_999_999)),
    };
    // SAFETY: a valid signal set and timeout; no siginfo wanted.
    let sig = unsafe {
        libc::sigtimedwait(
            std::ptr::from_ref(blocked.as_ref()),
            std::ptr::null_mut(),
            &raw const spec,
        )
    };
    Signal::try_from(sig).ok()
}

/// Forwards signals to `child` and reaps children until `child` exits;
/// returns its status in Docker numbering.
///
/// The init (`stop_timeout` set) reaps only `child`, PID 1 of the
/// container (its other child, the network helper, is reaped at the
/// end), and kills it `stop_timeout` after passing on a SIGTERM or
/// SIGINT: PID 1's death takes every process of the PID namespace with
/// it, whatever they trap or ignore. PID 1 (`None`) reaps every process
/// reparented to it.
pub(crate) fn supervise(child: i32, blocked: &SigSet, stop_timeout: Option<Duration>) -> i32 {
    let child = Pid::from_raw(child);
    let mut deadline: Option<Instant> = None;
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let sig = match left {
            Some(left) if left.is_zero() => {
                let _ = kill(child, Signal::SIGKILL);
                deadline = None;
                continue;
            }
            _ => wait_signal(blocked, left),
        };
        let Some(sig) = sig else { continue };
        if sig != Signal::SIGCHLD {
            let _ = kill(child, sig);
            if let (Some(timeout), None, Signal::SIGTERM | Signal::SIGINT) =
                (stop_timeout, deadline, sig)
            {
                deadline = Some(Instant::now() + timeout);
            }
            continue;
        }
        let reaped = if stop_timeout.is_some() {
            Some(child)
        } else {
            None
        };
        loop {
            match waitpid(reaped, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => return code,
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => return 128 + sig as i32,
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

fn pid1_main(config: &InitConfig, blocked: &SigSet, ready: Option<Ready>) -> Result<i32, String> {
    setup_rootfs(config, ready)?;
    let terminal = if config.spec.tty {
        Some(open_terminal(config)?)
    } else {
        None
    };
    if !config.spec.init {
        // The process itself is PID 1, as under Docker without --init:
        // `echo $$` prints 1, and signals without a handler are ignored.
        return Ok(start_user(config, terminal));
    }
    let child = fork()?;
    if child == 0 {
        exit_now(start_user(config, terminal));
    }
    // The init keeps no descriptor of the terminal: kiln's copy loop ends
    // when the last one the container holds is closed.
    drop(terminal);
    Ok(supervise(child, blocked, None))
}

/// Opens the process's terminal in the container's own devpts (after
/// `pivot_root`, so it is `/dev/pts/0` as the process sees it) and sends
/// the master to kiln on [`TERMINAL_FD`]; returns the slave.
pub(crate) fn open_terminal(config: &InitConfig) -> Result<OwnedFd, String> {
    let (master, slave) =
        sys::open_terminal(config.window).map_err(|e| format!("opening a terminal: {e}"))?;
    let sent = sys::send_fd(TERMINAL_FD, master.as_raw_fd());
    // SAFETY: the socket's only use is over.
    unsafe {
        libc::close(TERMINAL_FD);
    }
    sent.map_err(|e| format!("passing the terminal to kiln: {e}"))?;
    Ok(slave)
}

/// Execs the user process, on `terminal` if given; returns only when that
/// failed, with the exit code to leave with (setup failures are reported
/// on the error pipe).
pub(crate) fn start_user(config: &InitConfig, terminal: Option<OwnedFd>) -> i32 {
    if let Some(terminal) = terminal {
        for fd in 0..=2 {
            // SAFETY: dup2 of a descriptor we own onto stdio.
            if unsafe { libc::dup2(terminal.as_raw_fd(), fd) } < 0 {
                report(&format!(
                    "putting the terminal on stdio: {}",
                    io::Error::last_os_error()
                ));
                return 1;
            }
        }
    }
    match exec_user(config) {
        Ok(never) => match never {},
        Err(Failure::Setup(message)) => {
            report(&message);
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
    }
}

fn fd_path(fd: &OwnedFd) -> String {
    kiln_rootfs::fd_path(fd.as_fd())
        .to_string_lossy()
        .into_owned()
}

fn mount_err(what: &str) -> impl FnOnce(nix::Error) -> String + '_ {
    move |e| format!("mounting {what}: {e}")
}

/// Opens a mount target inside the new root (symlinks resolved there).
fn target(root: &Root, path: &str) -> Result<OwnedFd, String> {
    root.open_at(path, OFlag::O_PATH)
        .map_err(|e| format!("rootfs: opening mount target {path}: {e}"))
}

fn setup_rootfs(config: &InitConfig, ready: Option<Ready>) -> Result<(), String> {
    let spec = &config.spec;
    // Layer paths go through short relative symlinks so that 200 layers
    // still fit in the one-page mount option string.
    std::env::set_current_dir(&config.links)
        .map_err(|e| format!("entering {}: {e}", config.links.display()))?;
    let names: Vec<String> = std::iter::once("s".to_owned())
        .chain((0..spec.layers.len()).rev().map(|i| i.to_string()))
        .collect();
    let stack: Vec<&Path> = names.iter().map(Path::new).collect();
    // A copy is finished by the parent once the container is gone.
    let _copied_or_mounted = kiln_rootfs::mount::overlay(
        &stack,
        Some((&spec.upper, &config.work)),
        &config.merged,
        kiln_rootfs::mount::OverlayOptions {
            userxattr: config.rootless,
            snapshotter: Some(if config.copy {
                kiln_rootfs::mount::Snapshotter::Copy
            } else {
                kiln_rootfs::mount::Snapshotter::Overlay
            }),
        },
    )
    .map_err(|e| {
        let hint = if config.rootless {
            kiln_rootfs::userns::OVERLAY_NEEDS
        } else {
            ""
        };
        format!(
            "mounting the overlay on {}: {e}{hint}",
            config.merged.display()
        )
    })?;
    std::env::set_current_dir("/").map_err(|e| format!("entering /: {e}"))?;

    let root = Root::open(&config.merged)
        .map_err(|e| format!("opening {}: {e}", config.merged.display()))?;

    let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let proc_dir = target(&root, "/proc")?;
    mount(
        Some("proc"),
        fd_path(&proc_dir).as_str(),
        Some("proc"),
        nodev,
        None::<&str>,
    )
    .map_err(|e| {
        // The usual cause inside a container started without
        // --privileged: its runtime masks paths of /proc with mounts, and
        // the kernel refuses a new proc instance where one is covered.
        let hint = if config.rootless && e == nix::errno::Errno::EPERM {
            " (kiln runs in a container whose /proc has masked paths: start that container with --security-opt unmask=ALL, Docker's --security-opt systempaths=unconfined)"
        } else {
            ""
        };
        format!("mounting /proc: {e}{hint}")
    })?;

    let dev_dir = target(&root, "/dev")?;
    mount(
        Some("tmpfs"),
        fd_path(&dev_dir).as_str(),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )
    .map_err(mount_err("/dev"))?;
    // Reopen: the old descriptor still points below the new tmpfs.
    let dev = target(&root, "/dev")?;
    setup_dev(&fd_path(&dev), config.rootless)?;
    drop(dev);

    let sys_dir = target(&root, "/sys")?;
    let sys_path = fd_path(&sys_dir);
    // Privileged (RUN --security=insecure) as in Docker: /sys writable,
    // /proc neither masked nor read-only.
    let sys_flags = if spec.privileged {
        nodev
    } else {
        nodev | MsFlags::MS_RDONLY
    };
    if mount(
        Some("sysfs"),
        sys_path.as_str(),
        Some("sysfs"),
        sys_flags,
        None::<&str>,
    )
    .is_err()
    {
        // sysfs may refuse a new instance outside a new network namespace
        // in some setups: fall back to a read-only bind of the host's.
        mount(
            Some("/sys"),
            sys_path.as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(mount_err("/sys"))?;
        let bound = target(&root, "/sys")?;
        remount_read_only(&bound, nodev).map_err(mount_err("/sys read-only"))?;
    }

    if !spec.privileged {
        protect_proc(&root)?;
    }

    for name in ["hosts", "hostname", "resolv.conf"] {
        let path = format!("/etc/{name}");
        let fd = root
            .open_at(&path, OFlag::O_PATH | OFlag::O_NOFOLLOW)
            .map_err(|e| format!("rootfs: opening {path}: {e}"))?;
        let meta = fs::metadata(fd_path(&fd)).map_err(|e| format!("rootfs: {path}: {e}"))?;
        if !meta.is_file() {
            return Err(format!("rootfs: {path} is not a regular file"));
        }
        let source = config.etc.as_ref().unwrap_or(&config.files).join(name);
        mount(
            Some(&source),
            fd_path(&fd).as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| format!("mounting {path}: {e}"))?;
    }

    // The list is written even when a mount fails, so the parent still
    // removes the stubs created before the failure.
    let mut stubs = Vec::new();
    let mounted = spec_mounts(&root, config, &mut stubs);
    if !stubs.is_empty() {
        let list = config.files.join(STUBS);
        fs::write(&list, stubs.join("\n"))
            .map_err(|e| format!("writing {}: {e}", list.display()))?;
    }
    mounted?;

    if spec.read_only_root {
        // Per-mount flag of the overlay only: /proc, /dev, the /etc files
        // and the spec's mounts keep theirs, as with Docker's --read-only.
        let top = target(&root, "/")?;
        remount_read_only(&top, MsFlags::empty())
            .map_err(|e| format!("making the root file system read-only: {e}"))?;
    }

    // The network comes up while the root file system is built; the
    // process starts only once it is up.
    if let Some(ready) = ready {
        ready.wait()?;
    }

    // pivot_root(".", ".") stacks the old root under the new one; detaching
    // it leaves only the container's tree reachable.
    nix::unistd::fchdir(root.as_fd()).map_err(|e| format!("entering the new root: {e}"))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detaching the old root: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("entering /: {e}"))?;
    drop(root);

    nix::unistd::sethostname(&spec.hostname).map_err(|e| {
        // Docker's and Podman's default seccomp profiles allow
        // sethostname only with CAP_SYS_ADMIN in the container's own
        // user namespace, which kiln's nested one does not count as.
        let hint = if config.rootless && e == nix::errno::Errno::EPERM {
            " (a seccomp profile refuses it: start the container kiln runs in with --security-opt seccomp=unconfined, or a profile that allows sethostname)"
        } else {
            ""
        };
        format!("setting hostname {:?}: {e}{hint}", spec.hostname)
    })?;
    if !matches!(config.network, NetworkSetup::Host) {
        loopback_up().map_err(|e| format!("bringing lo up: {e}"))?;
    }
    Ok(())
}

/// Makes sure the mount target `to` exists inside the root, creating the
/// missing components (as the user would see them, symlinks resolved inside
/// the root); each created path, relative to the root, goes to `stubs` so
/// the parent can remove it from the upper directory afterwards.
fn ensure_target(
    root: &Root,
    to: &str,
    is_dir: bool,
    stubs: &mut Vec<String>,
) -> Result<(), String> {
    if root.open_at(to, OFlag::O_PATH).is_ok() {
        return Ok(());
    }
    let rel = path::relative(to);
    let parts: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
    let mut so_far: Vec<&[u8]> = Vec::new();
    let shown = |so_far: &[&[u8]]| format!("/{}", String::from_utf8_lossy(&so_far.join(&b'/')));
    for (i, part) in parts.iter().enumerate() {
        let parent = root
            .open_at(
                std::ffi::OsStr::from_bytes(&so_far.join(&b'/')),
                OFlag::O_PATH | OFlag::O_DIRECTORY,
            )
            .map_err(|e| format!("rootfs: mount target {to}: {}: {e}", shown(&so_far)))?;
        so_far.push(part);
        if root
            .open_at(
                std::ffi::OsStr::from_bytes(&so_far.join(&b'/')),
                OFlag::O_PATH,
            )
            .is_ok()
        {
            continue;
        }
        let name =
            CString::new(*part).map_err(|_| format!("rootfs: mount target {to}: NUL byte"))?;
        let last = i + 1 == parts.len();
        // SAFETY: *at calls on a descriptor we own and a single-component
        // name, so nothing is resolved outside the root.
        let ret = unsafe {
            if last && !is_dir {
                let fd = libc::openat(
                    parent.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_WRONLY
                        | libc::O_CLOEXEC
                        | libc::O_NOFOLLOW,
                    0o644,
                );
                if fd >= 0 {
                    libc::close(fd);
                }
                fd
            } else {
                libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o755)
            }
        };
        if ret < 0 {
            let error = io::Error::last_os_error();
            if is_dir && error.raw_os_error() == Some(libc::EEXIST) {
                // A dangling symlink: its target is created inside the
                // root, as Docker creates a volume's mount point.
                let made = root
                    .mkdir_all(to, 0o755, None)
                    .map_err(|e| format!("rootfs: creating mount target {to}: {e}"))?;
                let inside = root
                    .real_path(made.as_fd())
                    .map_err(|e| format!("rootfs: mount target {to}: {e}"))?
                    .ok_or_else(|| {
                        format!("rootfs: mount target {to} resolved outside the container")
                    })?;
                stubs.push(inside.trim_start_matches('/').to_owned());
                return Ok(());
            }
            return Err(format!(
                "rootfs: creating mount target {to}: {}: {error}",
                shown(&so_far)
            ));
        }
        // Where it really is: symlinks on the way were resolved in the root.
        let dir = root
            .real_path(parent.as_fd())
            .map_err(|e| format!("rootfs: mount target {to}: {e}"))?
            .ok_or_else(|| format!("rootfs: mount target {to} resolved outside the container"))?;
        let inside = format!(
            "{}/{}",
            dir.trim_end_matches('/'),
            String::from_utf8_lossy(part)
        );
        stubs.push(inside.trim_start_matches('/').to_owned());
    }
    Ok(())
}

/// Applies the spec's bind, tmpfs and cache mounts, creating missing
/// targets (recorded in `stubs`).
fn spec_mounts(root: &Root, config: &InitConfig, stubs: &mut Vec<String>) -> Result<(), String> {
    for spec_mount in &config.spec.mounts {
        let (to, is_dir) = match spec_mount {
            Mount::Bind { source, target, .. } => (target, source.is_dir()),
            Mount::Volume { target, .. } | Mount::Tmpfs { target, .. } => (target, true),
        };
        ensure_target(root, to, is_dir, stubs)?;
        match spec_mount {
            Mount::Volume {
                source,
                target: to,
                read_only,
                fill,
            } => {
                if *fill {
                    // What the image has there, resolved in the root; the
                    // copy below it follows no symlink.
                    let from = root
                        .open_at(to, OFlag::O_PATH | OFlag::O_DIRECTORY)
                        .map_err(|e| format!("rootfs: opening volume target {to}: {e}"))?;
                    crate::fill::fill_volume(Path::new(&fd_path(&from)), source)
                        .map_err(|e| format!("filling the volume at {to}: {e}"))?;
                }
                bind(root, source, to, *read_only)?;
            }
            Mount::Bind {
                source,
                target: to,
                read_only,
            } => bind(root, source, to, *read_only)?,
            Mount::Tmpfs {
                target: to,
                size,
                mode,
            } => {
                let fd = target(root, to)?;
                let mode = mode.unwrap_or(0o1777);
                let options = match size {
                    Some(size) => format!("mode={mode:o},size={size}"),
                    None => format!("mode={mode:o}"),
                };
                mount(
                    Some("tmpfs"),
                    fd_path(&fd).as_str(),
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    Some(options.as_str()),
                )
                .map_err(|e| format!("mounting tmpfs on {to}: {e}"))?;
            }
        }
    }
    Ok(())
}

/// As Docker does: kernel interfaces under /proc that are not namespaced
/// are read-only, and the ones that leak host information are masked.
fn protect_proc(root: &Root) -> Result<(), String> {
    for path in ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"] {
        let Ok(fd) = root.open_at(path, OFlag::O_PATH | OFlag::O_NOFOLLOW) else {
            continue;
        };
        mount(
            Some(fd_path(&fd).as_str()),
            fd_path(&fd).as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| format!("protecting {path}: {e}"))?;
        let bound = target(root, path)?;
        remount_read_only(
            &bound,
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        )
        .map_err(|e| format!("making {path} read-only: {e}"))?;
    }
    for path in [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sched_debug",
        "/proc/latency_stats",
    ] {
        let Ok(fd) = root.open_at(path, OFlag::O_PATH | OFlag::O_NOFOLLOW) else {
            continue;
        };
        mount(
            Some("/dev/null"),
            fd_path(&fd).as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| format!("masking {path}: {e}"))?;
    }
    Ok(())
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Drops every capability outside [`DEFAULT_CAPS`] from the bounding set and
/// from this (root) process, so the container's root cannot mount, load
/// modules or change host-wide settings.
fn drop_capabilities() -> io::Result<()> {
    let last: u32 = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    for cap in 0..=last {
        if !DEFAULT_CAPS.contains(&cap) {
            // SAFETY: prctl on integers.
            let ret =
                unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
            if ret < 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    let mask: u64 = DEFAULT_CAPS.iter().map(|c| 1u64 << c).sum();
    let low = u32::try_from(mask & 0xffff_ffff).unwrap_or(0);
    let high = u32::try_from(mask >> 32).unwrap_or(0);
    let header = CapHeader {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let data = [
        CapData {
            effective: low,
            permitted: low,
            inheritable: 0,
        },
        CapData {
            effective: high,
            permitted: high,
            inheritable: 0,
        },
    ];
    // SAFETY: capset with a version 3 header and its two data structs.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &raw const header, data.as_ptr()) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The flags of the mount at `path` that a bind remount must keep: in a
/// user namespace, flags of mounts inherited from the host are locked and
/// a remount that drops them fails with EPERM.
/// Remounts a bind mount read-only, adding `extra` flags and keeping the
/// flags a user namespace locks (a remount that drops them is refused).
fn remount_read_only(fd: &OwnedFd, extra: MsFlags) -> nix::Result<()> {
    let path = fd_path(fd);
    mount(
        None::<&str>,
        path.as_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | extra | locked_flags(&path),
        None::<&str>,
    )
}

fn locked_flags(path: &str) -> MsFlags {
    let Ok(c_path) = CString::new(path) else {
        return MsFlags::empty();
    };
    // SAFETY: statvfs is plain data; zero is valid for every field.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid out-pointer.
    if unsafe { libc::statvfs(c_path.as_ptr(), &raw mut st) } != 0 {
        return MsFlags::empty();
    }
    let mut flags = MsFlags::empty();
    for (st_flag, ms_flag) in [
        (libc::ST_NOSUID, MsFlags::MS_NOSUID),
        (libc::ST_NODEV, MsFlags::MS_NODEV),
        (libc::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (libc::ST_NOATIME, MsFlags::MS_NOATIME),
        (libc::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (libc::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if st.f_flag & st_flag != 0 {
            flags |= ms_flag;
        }
    }
    flags
}

/// Bind-mounts host path `source` (kiln's own, such as a snapshot of a
/// stage's mount source the builder resolved inside its root, or a path the
/// user named with `-v`) on `to` in the container, from descriptors: the
/// clone is made read-only before it is attached.
fn bind(root: &Root, source: &Path, to: &str, read_only: bool) -> Result<(), String> {
    let fail = |e: io::Error| format!("bind-mounting {} on {to}: {e}", source.display());
    let from: OwnedFd = nix::fcntl::open(
        source,
        OFlag::O_PATH | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| fail(e.into()))?;
    let fd = target(root, to)?;
    kiln_rootfs::mount::bind(
        from.as_fd(),
        fd.as_fd(),
        BindOptions {
            read_only,
            recursive: true,
        },
    )
    .map_err(fail)
}

/// A minimal /dev on the fresh tmpfs at `dev`: the host's harmless device
/// nodes bind-mounted, a private devpts, shm and the usual links.
fn setup_dev(dev: &str, rootless: bool) -> Result<(), String> {
    let io_err = |what: String| move |e: io::Error| format!("/dev: {what}: {e}");
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let path = format!("{dev}/{name}");
        fs::write(&path, b"").map_err(io_err(format!("creating {name}")))?;
        mount(
            Some(format!("/dev/{name}").as_str()),
            path.as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| format!("/dev: binding {name}: {e}"))?;
    }
    for name in ["pts", "shm"] {
        fs::create_dir(format!("{dev}/{name}")).map_err(io_err(format!("creating {name}")))?;
    }
    // Docker's options; terminals belong to the tty group (5), which a
    // rootless user namespace does not map.
    let options = if rootless {
        "newinstance,ptmxmode=0666,mode=0620"
    } else {
        "newinstance,ptmxmode=0666,mode=0620,gid=5"
    };
    mount(
        Some("devpts"),
        format!("{dev}/pts").as_str(),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some(options),
    )
    .map_err(|e| format!("/dev: mounting devpts: {e}"))?;
    mount(
        Some("shm"),
        format!("{dev}/shm").as_str(),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )
    .map_err(|e| format!("/dev: mounting shm: {e}"))?;
    for (name, to) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(to, format!("{dev}/{name}"))
            .map_err(io_err(format!("linking {name}")))?;
    }
    Ok(())
}

pub(crate) enum Never {}

pub(crate) enum Failure {
    /// A setup failure, reported to the parent as an error.
    Setup(String),
    /// Docker's exec failure message and exit code (126/127).
    Exec(String, i32),
}

pub(crate) fn exec_user(config: &InitConfig) -> Result<Never, Failure> {
    let spec = &config.spec;
    let setup = Failure::Setup;
    sys::reset_signals().map_err(|e| setup(format!("resetting signal dispositions: {e}")))?;
    nix::unistd::setsid().map_err(|e| setup(format!("setsid: {e}")))?;
    if spec.tty {
        // SAFETY: makes the pty on fd 0 this session's controlling terminal.
        if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
            return Err(setup(format!(
                "setting the controlling terminal: {}",
                io::Error::last_os_error()
            )));
        }
    }
    // Only stdio and the close-on-exec error pipe may remain: a leaked
    // directory descriptor would let WORKDIR=/proc/self/fd/N reach the
    // host (CVE-2024-21626).
    let first = u32::try_from(ERROR_FD + 1).unwrap_or(5);
    // SAFETY: closes descriptors this process does not use any more.
    unsafe {
        libc::close_range(3, 3, 0);
        libc::close_range(first, u32::MAX, 0);
    }

    let read = |path: &str| fs::read_to_string(path).unwrap_or_default();
    let resolved = user::resolve_user(&spec.user, &read("/etc/passwd"), &read("/etc/group"))
        .map_err(|e| setup(e.to_string()))?;

    let mut groups = resolved.groups.clone();
    for id in user::additional_groups(&spec.group_add, &read("/etc/group"))
        .map_err(|e| setup(e.to_string()))?
    {
        if !groups.contains(&id) {
            groups.push(id);
        }
    }
    // With a single id mapped (no subordinate ids), setgroups is denied
    // and no other user exists.
    let single_id = config.rootless && kiln_rootfs::userns::single_id();
    if single_id && !spec.group_add.is_empty() {
        return Err(setup(
            "--group-add needs root or subordinate ids (setgroups is denied with a single id mapped)".to_owned(),
        ));
    }
    if single_id && (resolved.uid != 0 || resolved.gid != 0) {
        return Err(setup(format!(
            "running as user {} needs root or subordinate ids (only uid 0 is mapped without them)",
            spec.user
        )));
    }

    if spec.tty {
        // The terminal is the user's, as runc hands it over (its group
        // stays tty).
        nix::unistd::fchown(
            io::stdin(),
            Some(nix::unistd::Uid::from_raw(resolved.uid)),
            None,
        )
        .map_err(|e| setup(format!("giving the terminal to the user: {e}")))?;
    }
    make_workdir(&spec.cwd, resolved.uid, resolved.gid)
        .map_err(|e| setup(format!("creating workdir {}: {e}", spec.cwd)))?;

    // Without NO_NEW_PRIVS (which would stop setuid programs in the image,
    // unlike Docker) loading a filter needs CAP_SYS_ADMIN, so it goes in
    // just before the capabilities are dropped, as runc does; every call
    // from here to execve is one Docker's profile allows.
    if let Some(program) = &config.seccomp {
        seccomp::install(program).map_err(|e| setup(format!("loading the seccomp filter: {e}")))?;
    }
    // Before the uid changes: capset can only narrow what is permitted.
    if !spec.privileged {
        drop_capabilities().map_err(|e| setup(format!("dropping capabilities: {e}")))?;
    }
    let groups: Vec<nix::unistd::Gid> = groups
        .iter()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    // Without root, setgroups is denied in the user namespace: the process
    // keeps the caller's groups (unmapped, so they show as nogroup).
    if !single_id {
        nix::unistd::setgroups(&groups).map_err(|e| setup(format!("setgroups: {e}")))?;
    }
    let gid = nix::unistd::Gid::from_raw(resolved.gid);
    nix::unistd::setresgid(gid, gid, gid)
        .map_err(|e| setup(format!("setgid {}: {e}", resolved.gid)))?;
    let uid = nix::unistd::Uid::from_raw(resolved.uid);
    nix::unistd::setresuid(uid, uid, uid)
        .map_err(|e| setup(format!("setuid {}: {e}", resolved.uid)))?;
    // Changing the ids cleared the parent-death signal: set it again, so
    // that a process that is PID 1 itself still dies with the init
    // (`kill -9` of kiln).
    // SAFETY: prctl on integers.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
    }

    std::env::set_current_dir(&spec.cwd)
        .map_err(|e| setup(format!("changing to workdir {}: {e}", spec.cwd)))?;
    match nix::unistd::getcwd() {
        Ok(cwd) if cwd.starts_with("/") => {}
        _ => {
            return Err(setup(format!(
                "workdir {} is outside the container root",
                spec.cwd
            )));
        }
    }

    let mut env = spec.env.clone();
    if !env.iter().any(|kv| kv.starts_with("HOME=")) {
        env.push(format!("HOME={}", resolved.home));
    }
    let path_var = env
        .iter()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
        .to_string();
    let argv0 = spec.argv.first().cloned().unwrap_or_default();
    let program = lookup(&argv0, &path_var)?;

    let cstr = |s: &str| CString::new(s).map_err(|_| setup(format!("NUL byte in {s:?}")));
    let argv = spec
        .argv
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<Vec<_>, _>>()?;
    let envp = env.iter().map(|a| cstr(a)).collect::<Result<Vec<_>, _>>()?;
    let path = CString::new(program.as_os_str().as_bytes())
        .map_err(|_| setup(format!("NUL byte in {argv0:?}")))?;
    let err = nix::unistd::execve(&path, &argv, &envp).err();
    Err(match err {
        Some(nix::Error::EACCES) => {
            Failure::Exec(format!("exec: {argv0:?}: permission denied"), 126)
        }
        Some(nix::Error::ENOENT) => Failure::Exec(
            format!("exec: {argv0:?}: stat {argv0}: no such file or directory"),
            127,
        ),
        other => Failure::Exec(
            format!(
                "exec: {argv0:?}: {}",
                other.map_or_else(String::new, |e| e.desc().to_lowercase())
            ),
            126,
        ),
    })
}

/// Go's `exec.LookPath` as Docker uses it: names with a slash are used as
/// given, others are searched in PATH for an executable regular file.
fn lookup(argv0: &str, path_var: &str) -> Result<PathBuf, Failure> {
    if argv0.contains('/') {
        return Ok(PathBuf::from(argv0));
    }
    if !argv0.is_empty() {
        for dir in path_var.split(':') {
            let dir = if dir.is_empty() { "." } else { dir };
            let candidate = Path::new(dir).join(argv0);
            let executable = fs::metadata(&candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
            if executable {
                return Ok(candidate);
            }
        }
    }
    Err(Failure::Exec(
        format!("exec: {argv0:?}: executable file not found in $PATH"),
        127,
    ))
}

/// Creates the missing components of `cwd`, owned by the user, as Docker
/// does for WORKDIR.
fn make_workdir(cwd: &str, uid: u32, gid: u32) -> io::Result<()> {
    let mut path = PathBuf::from("/");
    for part in Path::new(&path::absolute(cwd)).components().skip(1) {
        path.push(part);
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(io::Error::from(io::ErrorKind::NotADirectory)),
            Err(_) => {
                fs::create_dir(&path)?;
                std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::{Failure, lookup};

    #[test]
    fn lookup_skips_non_executables_like_go() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(a.join("tool")).unwrap();
        std::fs::create_dir(&b).unwrap();
        std::fs::write(b.join("tool"), "").unwrap();
        std::fs::write(b.join("script"), "").unwrap();
        std::fs::set_permissions(b.join("script"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("{}:{}", a.display(), b.display());
        assert_eq!(lookup("script", &path).ok(), Some(b.join("script")));
        // A directory and a non-executable file named `tool`: not found.
        match lookup("tool", &path) {
            Err(Failure::Exec(message, 127)) => {
                assert_eq!(
                    message,
                    "exec: \"tool\": executable file not found in $PATH"
                );
            }
            _ => panic!("tool was found"),
        }
        assert_eq!(lookup("/x/y", &path).ok(), Some("/x/y".into()));
    }
}
