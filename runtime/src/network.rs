//! The isolated network: a network namespace joined to the host by
//! slirp4netns, a user-mode NAT (the container's packets become ordinary
//! sockets of a host process), as rootless Podman does.
//!
//! Why slirp4netns (docs/architecture.md has the figures): it works the
//! same with and without root, needs no host state (no veth, no nftables
//! rule, no `ip_forward`), refuses the host's loopback
//! (`--disable-host-loopback`: 10.0.2.2 is not mapped to 127.0.0.1), forwards
//! DNS sent to 10.0.2.3 to the host's resolver even when that is a
//! loopback stub such as systemd-resolved's (only port 53 of that address
//! is forwarded), and its lifetime can be tied to its owner's with
//! `--exit-fd`: it ends when the owner's end of a pipe closes, even on
//! `kill -9`.
//!
//! A network comes two ways:
//! - Made for one run ([`Helper`], `kiln run` and rootless runs): the
//!   helper is forked by the init before any namespace exists (so it stays
//!   in the host's namespaces), waits until the init has unshared the
//!   network namespace, then becomes slirp4netns attached to the init's
//!   namespaces. PID 1 builds the root file system meanwhile and waits for
//!   slirp4netns's ready byte only before it pivots, so the two overlap.
//! - Leased from a [`pool::NetworkPool`] (RUN steps as root): made ahead
//!   of the run without a container and kept for the build's next runs;
//!   the init only joins it.
//!
//! Either way the tap device is made by kiln, persistent, before
//! slirp4netns attaches to it ([`create_tap`]), so the helper's exit does
//! not have to unregister it.

mod pool;

pub(crate) use pool::Lease;
pub use pool::NetworkPool;

use std::ffi::CString;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;

use crate::spec::Network;
use crate::sys;

/// The user-mode NAT kiln uses.
pub(crate) const HELPER: &str = "slirp4netns";
/// slirp4netns's DNS forwarder inside the namespace.
pub(crate) const NAMESERVER: &str = "10.0.2.3";
/// The interface slirp4netns drives in the namespace.
pub(crate) const INTERFACE: &str = "eth0";
/// How long slirp4netns may take to configure the interface.
const READY_TIMEOUT_MS: i32 = 10_000;
/// How much of slirp4netns's output an error quotes.
const LOG_LIMIT: usize = 4096;

/// The helper program in `PATH`, looked up once per process.
pub(crate) fn helper_path() -> Option<PathBuf> {
    static PATH: OnceLock<Option<PathBuf>> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
        std::env::split_paths(&path)
            .map(|dir| dir.join(HELPER))
            .find(|candidate| {
                fs::metadata(candidate).is_ok_and(|m| {
                    m.is_file()
                        && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
                })
            })
    })
    .clone()
}

/// Without root, slirp4netns opens `/dev/net/tun` as the caller (inside
/// the container's user namespace): most distributions make it mode 0666,
/// some lock it to root. Said up front rather than as slirp4netns's
/// `open("/dev/net/tun"): Permission denied`.
pub(crate) fn check_tun(rootless: bool) -> Result<(), String> {
    if !rootless {
        return Ok(());
    }
    // SAFETY: a NUL-terminated path and plain flags.
    if unsafe { libc::access(c"/dev/net/tun".as_ptr(), libc::R_OK | libc::W_OK) } == 0 {
        return Ok(());
    }
    Err(format!(
        "the isolated network needs read-write access to /dev/net/tun without root ({}): ask the administrator to make it mode 0666, or use --network none or --network host",
        io::Error::last_os_error()
    ))
}

/// The container's `/etc/resolv.conf` from the host's, as Podman writes it
/// for slirp4netns: the forwarder first (it reaches the host's resolver
/// wherever that listens), then the host's non-loopback name servers (a
/// loopback one means nothing in another namespace); search domains and
/// options kept. With the host's network the file is the host's.
pub(crate) fn resolv_conf(host: &str, network: Network) -> String {
    if network != Network::Isolated {
        return host.to_owned();
    }
    let mut out = format!("nameserver {NAMESERVER}\n");
    for line in host.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                let Some(addr) = words.next() else { continue };
                let loopback = addr
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|a| a.is_loopback());
                if !loopback && addr != NAMESERVER {
                    let _ = writeln!(out, "nameserver {addr}");
                }
            }
            Some("search" | "domain" | "options") => {
                out.push_str(line.trim());
                out.push('\n');
            }
            _ => {}
        }
    }
    out
}

/// What slirp4netns attaches to.
enum Target {
    /// The network (and, rootless, user) namespace of a process.
    Process(i32),
    /// A network namespace file.
    Path(String),
}

/// slirp4netns's command line, `argv[0]` first: one configuration for
/// every network kiln makes (the addresses slirp4netns's defaults, host
/// loopback refused, its sandbox and seccomp filter on).
fn helper_args(ready: RawFd, exit: RawFd, rootless: bool, target: &Target) -> Vec<String> {
    let mut args = vec![
        HELPER.to_owned(),
        "--configure".to_owned(),
        "--mtu=65520".to_owned(),
        "--disable-host-loopback".to_owned(),
        "--enable-sandbox".to_owned(),
        "--enable-seccomp".to_owned(),
        format!("--ready-fd={ready}"),
        format!("--exit-fd={exit}"),
    ];
    match target {
        Target::Process(pid) => {
            if rootless {
                args.push(format!("--userns-path=/proc/{pid}/ns/user"));
            }
            args.push(pid.to_string());
        }
        Target::Path(path) => {
            args.push("--netns-type=path".to_owned());
            args.push(path.clone());
        }
    }
    args.push(INTERFACE.to_owned());
    args
}

/// Creates [`INTERFACE`], the tap device slirp4netns drives, in the calling
/// thread's network namespace, and makes it persistent: slirp4netns then
/// attaches to it instead of creating it, and its exit leaves the device
/// alone. Unregistering a network device waits for an RCU grace period
/// (`rcu_barrier`, 12 to 33 ms measured here) in the process that does it:
/// done by the exiting slirp4netns, that was the wait of every run's
/// teardown; the persistent device instead goes with its namespace, which
/// the kernel tears down in the background once nothing holds it. The
/// device has no owner, so only a process with `CAP_NET_ADMIN` over the
/// namespace could attach to it, which a container never has (Docker's
/// capability set has no `CAP_NET_ADMIN`; a privileged run gets a
/// namespace of its own).
pub(crate) fn create_tap() -> Result<(), String> {
    let fail = |what: &str| {
        format!(
            "isolated network: {what} {INTERFACE}: {}",
            io::Error::last_os_error()
        )
    };
    // SAFETY: a NUL-terminated path and plain flags.
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(format!(
            "isolated network: opening /dev/net/tun: {}",
            io::Error::last_os_error()
        ));
    }
    // SAFETY: open returned a descriptor we own.
    let tun = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; zero is a valid initial value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(INTERFACE.as_bytes()) {
        *dst = libc::c_char::from_ne_bytes([*src]);
    }
    req.ifr_ifru.ifru_flags = libc::c_short::try_from(libc::IFF_TAP | libc::IFF_NO_PI).unwrap_or(0);
    // SAFETY: TUNSETIFF reads one ifreq; TUNSETPERSIST takes an integer.
    unsafe {
        if libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &raw const req) < 0 {
            return Err(fail("creating"));
        }
        if libc::ioctl(tun.as_raw_fd(), libc::TUNSETPERSIST, 1 as libc::c_ulong) < 0 {
            return Err(fail("making persistent"));
        }
    }
    Ok(())
}

/// Brings `lo` up in the calling thread's network namespace.
pub(crate) fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain datagram socket for interface ioctls.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket returned a descriptor we own.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    // SAFETY: ifreq is plain data; zero is a valid initial value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = libc::c_char::from_ne_bytes([*src]);
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq's flags.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &raw mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        let up = libc::c_short::try_from(libc::IFF_UP | libc::IFF_RUNNING).unwrap_or(1);
        req.ifr_ifru.ifru_flags |= up;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &raw const req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The slirp4netns process of one container, from fork to teardown.
pub(crate) struct Helper {
    pid: i32,
    /// Writing one byte lets the helper exec slirp4netns.
    go: Option<OwnedFd>,
    /// slirp4netns writes one byte here once the interface is configured.
    ready: Option<OwnedFd>,
    /// slirp4netns exits when every copy of this write end is closed.
    _exit: OwnedFd,
    /// slirp4netns's output.
    log: fs::File,
}

fn os_err(what: &str) -> String {
    format!("{what}: {}", io::Error::last_os_error())
}

impl Helper {
    /// Forks the helper; it waits for [`Helper::start`]. Call before the
    /// init unshares anything. `log` collects slirp4netns's output.
    pub(crate) fn spawn(program: &Path, rootless: bool, log: &Path) -> Result<Helper, String> {
        let pipe = |what: &str| sys::pipe().map_err(|e| format!("isolated network: {what}: {e}"));
        let (go_read, go_write) = pipe("go pipe")?;
        let (ready_read, ready_write) = pipe("ready pipe")?;
        let (exit_read, exit_write) = pipe("exit pipe")?;
        let io_err = |e: io::Error| format!("isolated network: creating {}: {e}", log.display());
        let log_file = fs::File::create(log).map_err(io_err)?;
        let log_reader = log_file.try_clone().map_err(io_err)?;
        let program_c = CString::new(program.as_os_str().as_bytes())
            .map_err(|_| format!("isolated network: NUL byte in {}", program.display()))?;
        // SAFETY: getpid has no preconditions.
        let init = unsafe { libc::getpid() };
        // Everything the child needs is prepared before the fork.
        let args = helper_args(
            ready_write.as_raw_fd(),
            exit_read.as_raw_fd(),
            rootless,
            &Target::Process(init),
        );
        let c_args: Vec<CString> = args
            .into_iter()
            .map(|a| CString::new(a).unwrap_or_default())
            .collect();
        let mut argv_ptrs: Vec<*const libc::c_char> = c_args.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let envp: [*const libc::c_char; 1] = [std::ptr::null()];

        // SAFETY: the init is single-threaded (a fresh exec), so the child
        // may run arbitrary code.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(os_err("isolated network: fork"));
        }
        if pid == 0 {
            // The helper: still in the host's namespaces.
            // SAFETY: plain system calls on integers and on buffers that
            // live until exec; the child ends in execve or _exit.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                if libc::getppid() != init {
                    libc::_exit(0);
                }
                // Our copy of the write end would hide the init's death.
                libc::close(go_write.as_raw_fd());
                let mut byte = 0u8;
                if libc::read(go_read.as_raw_fd(), (&raw mut byte).cast(), 1) != 1 {
                    libc::_exit(0);
                }
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                libc::dup2(null, 0);
                libc::dup2(log_file.as_raw_fd(), 1);
                libc::dup2(log_file.as_raw_fd(), 2);
                for fd in [ready_write.as_raw_fd(), exit_read.as_raw_fd()] {
                    libc::fcntl(fd, libc::F_SETFD, 0);
                }
                let _ = sys::reset_signals();
                libc::execve(program_c.as_ptr(), argv_ptrs.as_ptr(), envp.as_ptr());
                let line = format!(
                    "exec {}: {}\n",
                    program.display(),
                    io::Error::last_os_error()
                );
                libc::write(2, line.as_ptr().cast(), line.len());
                libc::_exit(127);
            }
        }
        drop((go_read, ready_write, exit_read, log_file));
        Ok(Helper {
            pid,
            go: Some(go_write),
            ready: Some(ready_read),
            _exit: exit_write,
            log: log_reader,
        })
    }

    /// Makes the tap device in the init's new network namespace and lets
    /// the helper attach to it (call once the namespaces exist).
    pub(crate) fn start(&mut self) -> Result<(), String> {
        let Some(go) = self.go.take() else {
            return Ok(());
        };
        create_tap()?;
        // SAFETY: writes one byte from a valid buffer.
        if unsafe { libc::write(go.as_raw_fd(), [1u8].as_ptr().cast(), 1) } != 1 {
            return Err(os_err("isolated network: starting slirp4netns"));
        }
        Ok(())
    }

    /// The read end PID 1 waits on; the init gives up its own copy.
    pub(crate) fn take_ready(&mut self) -> Option<Ready> {
        let fd = self.ready.take()?;
        let log = self.log.try_clone().ok()?;
        Some(Ready { fd, log })
    }

    /// Kills slirp4netns (the container is gone) without waiting for it:
    /// kiln, the subreaper that inherits it when the init exits, reaps it
    /// ([`reap_later`]) while the caller goes on with the run's result.
    pub(crate) fn stop(self) {
        // SAFETY: kill on our own, not yet reaped, child.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
        }
    }

    /// The helper's pid, written where the parent finds it after the run.
    pub(crate) fn record_pid(&self, path: &Path) -> Result<(), String> {
        fs::write(path, self.pid.to_string())
            .map_err(|e| format!("isolated network: writing {}: {e}", path.display()))
    }
}

/// Makes this process the reaper of its orphaned descendants, so that a
/// NAT helper whose init has exited becomes its child (once per process).
pub(crate) fn become_subreaper() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        // SAFETY: prctl on integers.
        unsafe {
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        }
    });
}

/// Threads that reap helpers or make networks, joined by
/// [`wait_for_helpers`].
static REAPERS: Mutex<Vec<JoinHandle<()>>> = Mutex::new(Vec::new());

/// Has [`wait_for_helpers`] join `thread`.
fn register(thread: JoinHandle<()>) {
    let mut reapers = REAPERS.lock().unwrap_or_else(PoisonError::into_inner);
    reapers.retain(|r| !r.is_finished());
    reapers.push(thread);
}

/// Reaps the helper whose pid the init recorded in `pid_file` (it was
/// killed and reparented to this process when the init exited), on a
/// thread, so the run's result is not held up.
pub(crate) fn reap_later(pid_file: &Path) {
    let Some(pid) = fs::read_to_string(pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
    else {
        return;
    };
    let reaper = std::thread::Builder::new()
        .name("reap-slirp4netns".to_owned())
        .spawn(move || {
            // SAFETY: waits for one pid (killed by the init); ECHILD (not
            // ours) just returns.
            unsafe {
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        });
    if let Ok(reaper) = reaper {
        register(reaper);
    }
}

/// Waits until every NAT helper of this process's finished runs and
/// closed pools is gone, and every network still being made is made and
/// gone.
pub(crate) fn wait_for_helpers() {
    loop {
        let reapers = std::mem::take(&mut *REAPERS.lock().unwrap_or_else(PoisonError::into_inner));
        if reapers.is_empty() {
            return;
        }
        // A network being made when its pool closed registers its reaper
        // when it is done: hence the loop.
        for reaper in reapers {
            let _ = reaper.join();
        }
    }
}

/// Up to [`LOG_LIMIT`] bytes of what slirp4netns printed, read without
/// moving the file offset it shares with slirp4netns.
fn read_log(log: &fs::File) -> String {
    let mut buf = vec![0u8; LOG_LIMIT];
    let mut len = 0;
    while len < buf.len() {
        match log.read_at(buf.get_mut(len..).unwrap_or_default(), len as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
    }
    buf.truncate(len);
    String::from_utf8_lossy(&buf).trim().to_owned()
}

/// slirp4netns's readiness.
pub(crate) struct Ready {
    fd: OwnedFd,
    log: fs::File,
}

impl Ready {
    /// Waits until slirp4netns has configured the interface; an error
    /// quotes what it printed.
    pub(crate) fn wait(self) -> Result<(), String> {
        let mut poll = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let failed = |what: &str| {
            let log = read_log(&self.log);
            let detail = if log.is_empty() {
                String::new()
            } else {
                format!(": {log}")
            };
            format!("isolated network: {HELPER} {what}{detail}")
        };
        loop {
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&raw mut poll, 1, READY_TIMEOUT_MS) };
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if n == 0 {
                return Err(failed(&format!(
                    "was not ready after {} s",
                    READY_TIMEOUT_MS / 1000
                )));
            }
            break;
        }
        let mut byte = 0u8;
        // SAFETY: reads one byte into a valid buffer.
        if unsafe { libc::read(self.fd.as_raw_fd(), (&raw mut byte).cast(), 1) } != 1 {
            return Err(failed("exited before the network was up"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_points_at_the_forwarder_and_drops_loopback_servers() {
        let host = "# systemd-resolved\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 192.0.2.53\nsearch corp.example\noptions edns0 trust-ad\n";
        assert_eq!(
            resolv_conf(host, Network::Isolated),
            "nameserver 10.0.2.3\nnameserver 192.0.2.53\nsearch corp.example\noptions edns0 trust-ad\n"
        );
        assert_eq!(resolv_conf(host, Network::Host), host);
        assert_eq!(resolv_conf("", Network::Isolated), "nameserver 10.0.2.3\n");
    }
}
