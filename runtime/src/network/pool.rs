//! Isolated networks made ahead of their runs and kept for the next ones,
//! as BuildKit keeps a pool of network namespaces (`--oci-cni-pool-size`).
//!
//! A network here is a network namespace made on a thread of its own
//! (`unshare(CLONE_NEWNET)` changes only the calling thread; the thread
//! returns to the host's namespace with `setns` before it starts anything)
//! with its tap device and `lo`, and a slirp4netns attached to it and
//! ready. A run leases one: the init joins it with `setns` on a descriptor
//! kiln passes, so a run pays neither slirp4netns's start (about 5 ms) nor
//! its end. A lease is exclusive, one run at a time; when the run ends
//! (every process of its PID namespace is dead by then) the network goes
//! back to the pool. What a run could leave in it is bounded by its
//! capabilities: without `CAP_NET_ADMIN` (Docker's set has none) it cannot
//! change addresses, routes, filters or sysctls (`/proc/sys` is read-only
//! too), and its sockets die with its processes. A privileged run (every
//! capability) gets a network nobody used and that nobody uses after it.
//!
//! slirp4netns is kiln's own child, started from the making thread without
//! a parent-death signal (that signal follows the thread, which ends):
//! `--exit-fd` ties it to kiln instead, whose end of the pipe the kernel
//! closes when kiln dies, `kill -9` included. It is given the namespace as
//! `/proc/<kiln's pid>/fd/<n>` (a path relative to its working directory,
//! `/proc`), so its command line names the process holding the namespace
//! as the per-run helper's names the container's init.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use nix::fcntl::{OFlag, open};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::stat::Mode;

use super::{HELPER, Ready, Target, create_tap, helper_args, helper_path, loopback_up, register};
use crate::{RuntimeError, sys};

/// The descriptors slirp4netns gets its ready and exit pipes on.
const READY_FD: RawFd = 3;
const EXIT_FD: RawFd = 4;

/// Isolated networks for the runs of one build (see the module docs).
///
/// Used only by root: without root a network namespace has to belong to
/// the run's own user namespace, so every rootless run makes its own.
/// Dropping the pool (or [`NetworkPool::close`]) kills the idle networks'
/// helpers; [`crate::wait_for_helpers`] waits until they are reaped.
pub struct NetworkPool {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// A network was made or returned, a making failed, or the pool closed.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Ready networks nobody holds.
    idle: Vec<Namespace>,
    /// Networks being made.
    making: usize,
    /// Leases waiting for one.
    waiting: usize,
    /// Why makings failed, for the next leases.
    failures: Vec<String>,
    /// Helpers started but not ready yet (not reaped while listed).
    starting: Vec<i32>,
    /// Networks are no longer kept: idle ones were destroyed, returned
    /// and newly made ones are destroyed after their run.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts making one network on a thread of its own (the caller has
    /// counted it in `making`).
    fn make(self: &Arc<Self>, program: PathBuf) -> Result<(), String> {
        let shared = Arc::clone(self);
        let thread = std::thread::Builder::new()
            .name("kiln-network".to_owned())
            .spawn(move || {
                let made = Namespace::create(&program, &shared);
                shared.made(made);
            })
            .map_err(|e| format!("isolated network: starting a thread: {e}"))?;
        register(thread);
        Ok(())
    }

    /// Takes in a network just made (or why it could not be).
    fn made(&self, made: Result<Namespace, String>) {
        let mut state = self.lock();
        state.making = state.making.saturating_sub(1);
        let unwanted = state.closed && state.waiting == 0;
        match made {
            Ok(namespace) if unwanted => destroy(vec![namespace]),
            Ok(namespace) => state.idle.push(namespace),
            Err(_) if unwanted => {}
            Err(message) => state.failures.push(message),
        }
        drop(state);
        self.changed.notify_all();
    }
}

impl NetworkPool {
    /// An empty pool: networks are made when runs lease them, or before
    /// with [`NetworkPool::prewarm`].
    pub fn new() -> NetworkPool {
        NetworkPool {
            shared: Arc::new(Shared::default()),
        }
    }

    /// Starts making `count` networks in the background, so that the next
    /// runs find them ready (nothing without root, or once closed).
    pub fn prewarm(&self, count: usize) {
        let Some(program) = helper_path().filter(|_| !crate::is_rootless()) else {
            return;
        };
        for _ in 0..count {
            {
                let mut state = self.shared.lock();
                if state.closed {
                    return;
                }
                state.making += 1;
            }
            if let Err(message) = self.shared.make(program.clone()) {
                self.shared.made(Err(message));
            }
        }
    }

    /// Stops keeping networks: the idle ones are destroyed now (their
    /// helpers killed together, reaped on a thread), those being made
    /// too (a build that ran nothing waits for no helper's start), those
    /// in use when their run ends. Runs may still lease networks, each
    /// made for them.
    pub fn close(&self) {
        let idle = {
            let mut state = self.shared.lock();
            state.closed = true;
            state.failures.clear();
            for &pid in &state.starting {
                kill(pid);
            }
            std::mem::take(&mut state.idle)
        };
        destroy(idle);
        self.shared.changed.notify_all();
    }

    /// An exclusive network for one run, ready; `fresh`: one no run has
    /// used, destroyed after this one (for a privileged run, which could
    /// change it).
    pub(crate) fn lease(&self, fresh: bool) -> Result<Lease, RuntimeError> {
        let program = helper_path().ok_or(RuntimeError::MissingNetworkHelper { tool: HELPER })?;
        let mut state = self.shared.lock();
        loop {
            let found = if fresh {
                state.idle.iter().position(|n| n.runs == 0)
            } else {
                state.idle.len().checked_sub(1)
            };
            if let Some(index) = found {
                let mut namespace = state.idle.swap_remove(index);
                namespace.runs += 1;
                return Ok(Lease {
                    namespace: Some(namespace),
                    shared: Arc::clone(&self.shared),
                    returns: !fresh && !state.closed,
                });
            }
            if let Some(message) = state.failures.pop() {
                return Err(RuntimeError::Network(message));
            }
            // One making per waiting lease; a fresh one may still be
            // taken by another lease first, and then this one asks again.
            if state.making <= state.waiting {
                state.making += 1;
                if let Err(message) = self.shared.make(program.clone()) {
                    state.making -= 1;
                    return Err(RuntimeError::Network(message));
                }
            }
            state.waiting += 1;
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.waiting -= 1;
        }
    }
}

impl Default for NetworkPool {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NetworkPool {
    fn drop(&mut self) {
        self.close();
    }
}

/// One run's hold on a network of the pool.
pub(crate) struct Lease {
    namespace: Option<Namespace>,
    shared: Arc<Shared>,
    /// Whether the network goes back to the pool after the run.
    returns: bool,
}

impl Lease {
    /// The network namespace, for the init to join.
    pub(crate) fn fd(&self) -> Option<RawFd> {
        self.namespace.as_ref().map(|n| n.fd.as_raw_fd())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(namespace) = self.namespace.take() else {
            return;
        };
        if self.returns {
            let mut state = self.shared.lock();
            if !state.closed {
                state.idle.push(namespace);
                drop(state);
                self.shared.changed.notify_all();
                return;
            }
        }
        destroy(vec![namespace]);
    }
}

/// A network namespace with its tap device driven by a running slirp4netns.
struct Namespace {
    /// The namespace (`/proc/thread-self/ns/net` of the making thread).
    fd: OwnedFd,
    helper: Child,
    /// The write end of slirp4netns's exit pipe: its only copy.
    _exit: OwnedFd,
    /// How many runs leased it.
    runs: usize,
}

impl Namespace {
    /// Makes a namespace and starts slirp4netns in it; returns once the
    /// interface is configured (or the pool closed meanwhile). Runs on a
    /// thread of its own, which must not be used for anything else if
    /// this fails.
    fn create(program: &Path, shared: &Shared) -> Result<Namespace, String> {
        let fd = new_namespace()?;
        let pipe = |what: &str| sys::pipe().map_err(|e| format!("isolated network: {what}: {e}"));
        let (ready_read, ready_write) = pipe("ready pipe")?;
        let (exit_read, exit_write) = pipe("exit pipe")?;
        let log = memfd()?;
        let output = || {
            log.try_clone()
                .map(Stdio::from)
                .map_err(|e| format!("isolated network: output of {HELPER}: {e}"))
        };
        // SAFETY: getpid has no preconditions.
        let kiln = unsafe { libc::getpid() };
        let args = helper_args(
            READY_FD,
            EXIT_FD,
            false,
            &Target::Path(format!("{kiln}/fd/{}", fd.as_raw_fd())),
        );
        let mut command = Command::new(program);
        command
            .arg0(HELPER)
            .args(args.get(1..).unwrap_or_default())
            .env_clear()
            .current_dir("/proc")
            .stdin(Stdio::null())
            .stdout(output()?)
            .stderr(output()?);
        let pass = [
            (ready_write.as_raw_fd(), READY_FD),
            (exit_read.as_raw_fd(), EXIT_FD),
        ];
        // SAFETY: between fork and exec the closure only makes
        // async-signal-safe calls (fcntl, dup2, rt_sigaction, sigprocmask).
        unsafe {
            command.pre_exec(move || {
                sys::place_fds(&pass)?;
                sys::reset_signals()
            });
        }
        let helper = command
            .spawn()
            .map_err(|e| format!("isolated network: starting {}: {e}", program.display()))?;
        drop((ready_write, exit_read, command));
        let pid = i32::try_from(helper.id()).unwrap_or(i32::MAX);
        let namespace = Namespace {
            fd,
            helper,
            _exit: exit_write,
            runs: 0,
        };
        {
            let mut state = shared.lock();
            if state.closed && state.waiting == 0 {
                kill(pid);
            }
            state.starting.push(pid);
        }
        let ready = Ready {
            fd: ready_read,
            log,
        }
        .wait();
        shared.lock().starting.retain(|p| *p != pid);
        // On failure the namespace is dropped: slirp4netns killed, reaped.
        ready?;
        Ok(namespace)
    }
}

impl Drop for Namespace {
    /// Only for namespaces that [`destroy`] did not take (a making that
    /// failed): their helper is killed and reaped here.
    fn drop(&mut self) {
        let _ = self.helper.kill();
        let _ = self.helper.wait();
    }
}

/// SIGKILLs our child `pid`, not reaped yet.
fn kill(pid: i32) {
    // SAFETY: kill on an integer; the caller knows the child is unreaped.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// Kills the helpers of `namespaces` together and reaps them on one
/// thread: their exits overlap, and the caller does not wait for them
/// ([`crate::wait_for_helpers`] does, once). Each namespace's descriptor
/// is closed after its helper is gone, and the kernel then tears the
/// namespace down in the background.
fn destroy(mut namespaces: Vec<Namespace>) {
    if namespaces.is_empty() {
        return;
    }
    for namespace in &mut namespaces {
        let _ = namespace.helper.kill();
    }
    let reaper = std::thread::Builder::new()
        .name("reap-slirp4netns".to_owned())
        .spawn(move || {
            for mut namespace in namespaces {
                let _ = namespace.helper.wait();
            }
        });
    // Without a thread, the namespaces were dropped: reaped right here.
    if let Ok(reaper) = reaper {
        register(reaper);
    }
}

/// A new network namespace with the tap device and `lo` up, made on the
/// calling thread, which then returns to its own namespace.
fn new_namespace() -> Result<OwnedFd, String> {
    let open_own = || {
        open(
            "/proc/thread-self/ns/net",
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("isolated network: opening /proc/thread-self/ns/net: {e}"))
    };
    let host = open_own()?;
    unshare(CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("isolated network: unshare network namespace: {e}"))?;
    let made = open_own().and_then(|namespace| {
        create_tap()?;
        loopback_up().map_err(|e| format!("isolated network: bringing lo up: {e}"))?;
        Ok(namespace)
    });
    // slirp4netns, started from this thread next, must be in the host's
    // namespace.
    setns(&host, CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("isolated network: returning to the host's namespace: {e}"))?;
    made
}

/// An anonymous in-memory file for slirp4netns's output (quoted when it
/// fails), so a network needs no directory.
fn memfd() -> Result<fs::File, String> {
    // SAFETY: a NUL-terminated name and plain flags.
    let fd = unsafe { libc::memfd_create(c"slirp4netns".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(format!(
            "isolated network: memfd_create: {}",
            io::Error::last_os_error()
        ));
    }
    // SAFETY: memfd_create returned a descriptor we own.
    Ok(fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}
