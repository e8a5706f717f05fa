//! Rootless kiln: the command continues in a user namespace where it is
//! root, mapped by [`kiln_rootfs::userns::Mapping`].
//!
//! Most commands join the namespace the user's holder keeps
//! ([`holder`]): `setns`, no second process. Where that fails (no
//! private runtime directory, `KILN_USERNS_IDLE=0`), the command makes a
//! namespace of its own, as follows. The process that writes a
//! namespace's maps must be outside it, so the command forks (no exec:
//! the command line is already parsed, and the process is still
//! single-threaded) with two pipes: the child unshares
//! its user namespace and says so on the first, the parent writes the
//! maps (`newuidmap` and `newgidmap` at once, for subordinate ranges)
//! and answers on the second, the child becomes uid/gid 0 and runs the
//! command; the parent waits and exits with its status. Signals sent to
//! the parent (`kill`, not the terminal's, which reach both) are passed
//! on, and the child dies with the parent.

use std::io::{Read as _, Write as _};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use kiln_rootfs::userns::Mapping;

pub mod holder;

/// How this command came into its user namespace, for `kiln info`.
static HOW: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// How this command came into its user namespace (`None`: it did not
/// enter one).
pub fn how_entered() -> Option<&'static str> {
    HOW.get().map(String::as_str)
}

/// Left in the store once the single-id message was shown, so it is
/// shown once.
const SINGLE_ID_NOTED: &str = "rootless-single-id-noted";

/// The child's pid, for the signal handler.
static CHILD: AtomicI32 = AtomicI32::new(0);

/// Which side of [`enter`] this process is.
pub enum Entered {
    /// The child, root in the new namespace: run the command.
    Inside,
    /// The parent, with the child's exit status (0 to 255).
    Done(u8),
}

/// [`enter`] for a helper process (`kiln cp` of a stopped container):
/// the parent exits with the child's status, the child returns.
pub fn enter_or_exit(store: &Path) -> Result<(), String> {
    match enter(store)? {
        Entered::Inside => Ok(()),
        Entered::Done(code) => std::process::exit(i32::from(code)),
    }
}

/// Enters kiln's user namespace for the command, whose store is `store`
/// (warned about once there when only one id can be mapped): the
/// holder's, else a new one. Must run while the process has one thread
/// (`setns` into a user namespace and `fork` both need that).
pub fn enter(store: &Path) -> Result<Entered, String> {
    let mapping = Mapping::for_caller();
    if let Some(message) = mapping.single_id_message() {
        let noted = store.join(SINGLE_ID_NOTED);
        if !noted.exists() {
            eprintln!("warning: {message}");
            // Shown again next time if the store cannot keep the note.
            let _ = std::fs::create_dir_all(store)
                .and_then(|()| std::fs::write(&noted, format!("{message}\n")));
        }
    }
    let idle = holder::idle()?;
    let why_own = match idle {
        Some(idle) => match holder::join_or_start(&mapping, idle) {
            Ok(held) => {
                become_root()?;
                let _ = HOW.set(format!(
                    "holder pid {} ({}{})",
                    held.pid,
                    held.record.display(),
                    if held.started { ", started now" } else { "" }
                ));
                return Ok(Entered::Inside);
            }
            Err(e) => e,
        },
        None => format!("{}=0", holder::IDLE_ENV),
    };
    log::debug!("no user namespace holder ({why_own}): this command makes its own");
    let _ = HOW.set(format!("none ({why_own})"));
    let (ready_read, ready_write) = pipe()?;
    let (go_read, go_write) = pipe()?;
    let parent = nix::unistd::getpid();
    // SAFETY: the process has a single thread (checked by the caller's
    // contract: before any thread starts), so the child may go on running
    // ordinary code.
    match unsafe { nix::unistd::fork() }
        .map_err(|e| format!("forking into a user namespace: {e}"))?
    {
        nix::unistd::ForkResult::Child => {
            drop(ready_read);
            drop(go_write);
            child(parent, ready_write, go_read)?;
            Ok(Entered::Inside)
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(ready_write);
            drop(go_read);
            CHILD.store(child.as_raw(), Ordering::SeqCst);
            forward_signals();
            let mut ready = std::fs::File::from(ready_read);
            let mut byte = [0u8; 1];
            if matches!(ready.read(&mut byte), Ok(1)) {
                if let Err(e) = mapping.write(child.as_raw()) {
                    drop(go_write);
                    let _ = nix::sys::wait::waitpid(child, None);
                    return Err(format!("cannot map ids into kiln's user namespace: {e}"));
                }
                // A child gone meanwhile reports for itself.
                let _ = std::fs::File::from(go_write).write_all(b"g");
            } else {
                drop(go_write);
            }
            Ok(Entered::Done(wait(child)))
        }
    }
}

/// The child's half: unshare, wait for the maps, become root there.
fn child(parent: nix::unistd::Pid, ready: OwnedFd, go: OwnedFd) -> Result<(), String> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).map_err(|e| {
        format!(
            "cannot create a user namespace (rootless kiln needs one; \
             are user namespaces allowed? see user.max_user_namespaces): {e}"
        )
    })?;
    std::fs::File::from(ready)
        .write_all(b"u")
        .map_err(|e| format!("user namespace handshake: {e}"))?;
    let mut byte = [0u8; 1];
    if std::fs::File::from(go)
        .read(&mut byte)
        .map_err(|e| format!("user namespace handshake: {e}"))?
        != 1
    {
        // The parent failed to map us and says why.
        std::process::exit(125);
    }
    become_root()?;
    // The parent is what the caller sees (and may `kill -9`): this
    // process dies with it, as kiln dies as root. Set after the ids
    // changed, which clears it; a parent already gone is caught by
    // getppid.
    // SAFETY: prctl on integers.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
    }
    if nix::unistd::getppid() != parent {
        std::process::exit(137);
    }
    Ok(())
}

/// Becomes uid and gid 0 of the namespace just entered (the caller's
/// own ids outside).
fn become_root() -> Result<(), String> {
    let zero = nix::unistd::Gid::from_raw(0);
    nix::unistd::setresgid(zero, zero, zero)
        .map_err(|e| format!("becoming gid 0 in the user namespace: {e}"))?;
    let zero = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresuid(zero, zero, zero)
        .map_err(|e| format!("becoming uid 0 in the user namespace: {e}"))?;
    Ok(())
}

/// Waits for the child; its exit status as this process's (128+N for a
/// signal).
fn wait(child: nix::unistd::Pid) -> u8 {
    use nix::sys::wait::WaitStatus;
    loop {
        match nix::sys::wait::waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => {
                return u8::try_from(code).unwrap_or(1);
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                return u8::try_from(128 + sig as i32).unwrap_or(1);
            }
            Err(nix::errno::Errno::EINTR) | Ok(_) => {}
            Err(_) => return 1,
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| format!("creating a pipe for the user namespace: {e}"))
}

/// Passes SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to this process on to
/// the child, except those the terminal sends (the child is in the same
/// process group and gets them itself).
fn forward_signals() {
    extern "C" fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo with SA_SIGINFO.
        let code = unsafe { (*info).si_code };
        if code == libc::SI_KERNEL {
            return;
        }
        let pid = CHILD.load(Ordering::SeqCst);
        if pid > 0 {
            // SAFETY: kill is async-signal-safe.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: a handler that only reads an atomic and calls kill.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = forward
                as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
                as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&raw mut action.sa_mask);
            libc::sigaction(sig, &raw const action, std::ptr::null_mut());
        }
    }
}
