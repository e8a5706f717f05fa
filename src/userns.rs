//! Rootless kiln: the command re-executes itself in a user namespace where
//! it is root, mapped by [`kiln_rootfs::userns::Mapping`].
//!
//! The process that writes a namespace's maps must be outside it, so the
//! command (the parent) starts itself again (the child) with two pipes:
//! the child unshares its user namespace and says so on the first, the
//! parent writes the maps (`newuidmap`/`newgidmap` for subordinate ranges)
//! and answers on the second, the child becomes uid/gid 0 and runs the
//! command; the parent waits and exits with its status. Signals sent to
//! the parent (`kill`, not the terminal's, which reach both) are passed
//! on.

use std::io::{Read as _, Write as _};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};

use kiln_rootfs::userns::Mapping;

/// Set in the child's environment: `<ready write fd>,<go read fd>`.
const CHILD_ENV: &str = "_KILN_USERNS_CHILD";

/// Left in the store once the single-id message was shown, so it is
/// shown once.
const SINGLE_ID_NOTED: &str = "rootless-single-id-noted";

/// Set in the child's environment: the parent's pid.
const PARENT_ENV: &str = "_KILN_USERNS_PARENT";

/// The child's pid, for the signal handler.
static CHILD: AtomicI32 = AtomicI32::new(0);

/// For the child: completes entering the namespace if this process was
/// started by [`reexec`]. Must run before any thread exists.
pub fn finish_entering() -> Result<(), String> {
    let Some(fds) = std::env::var_os(CHILD_ENV) else {
        return Ok(());
    };
    // SAFETY: still single-threaded (called first thing in main).
    unsafe { std::env::remove_var(CHILD_ENV) };
    let fds = fds.to_string_lossy();
    let parse = |s: Option<&str>| s.and_then(|s| s.parse::<i32>().ok());
    let mut parts = fds.split(',');
    let (Some(ready), Some(go)) = (parse(parts.next()), parse(parts.next())) else {
        return Err(format!("malformed {CHILD_ENV}"));
    };
    // SAFETY: the parent passed these descriptors to this process alone.
    let (mut ready, mut go) = unsafe {
        (
            std::fs::File::from_raw_fd(ready),
            std::fs::File::from_raw_fd(go),
        )
    };
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).map_err(|e| {
        format!(
            "cannot create a user namespace (rootless kiln needs one; \
             are user namespaces allowed? see user.max_user_namespaces): {e}"
        )
    })?;
    ready
        .write_all(b"u")
        .map_err(|e| format!("user namespace handshake: {e}"))?;
    drop(ready);
    let mut byte = [0u8; 1];
    if go
        .read(&mut byte)
        .map_err(|e| format!("user namespace handshake: {e}"))?
        != 1
    {
        // The parent failed to map us and says why.
        std::process::exit(125);
    }
    drop(go);
    let zero = nix::unistd::Gid::from_raw(0);
    nix::unistd::setresgid(zero, zero, zero)
        .map_err(|e| format!("becoming gid 0 in the user namespace: {e}"))?;
    let zero = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresuid(zero, zero, zero)
        .map_err(|e| format!("becoming uid 0 in the user namespace: {e}"))?;
    // The parent is what the caller sees (and may `kill -9`): this
    // process dies with it, as kiln dies as root. Set after the ids
    // changed, which clears it; a parent already gone is caught by
    // getppid.
    let parent = std::env::var(PARENT_ENV)
        .ok()
        .and_then(|p| p.parse::<i32>().ok());
    // SAFETY: prctl on integers.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
    }
    if parent.is_some_and(|p| p != nix::unistd::getppid().as_raw()) {
        std::process::exit(137);
    }
    // SAFETY: still single-threaded.
    unsafe { std::env::remove_var(PARENT_ENV) };
    Ok(())
}

/// For the parent: runs this command again inside a new user namespace
/// with the store at `store` (its default depends on the caller, who is
/// root inside), and returns its exit status.
pub fn reexec(store: &Path) -> Result<ExitCode, String> {
    let mapping = Mapping::for_caller();
    let (ready_read, ready_write) = pipe()?;
    let (go_read, go_write) = pipe()?;
    let exe = std::env::current_exe().map_err(|e| format!("finding the kiln executable: {e}"))?;
    let mut command = std::process::Command::new(exe);
    command
        .args(std::env::args_os().skip(1))
        .env("KILN_ROOT", store)
        .env(PARENT_ENV, std::process::id().to_string())
        .env(
            CHILD_ENV,
            format!("{},{}", ready_write.as_raw_fd(), go_read.as_raw_fd()),
        );
    if let Some(message) = mapping.single_id_message() {
        let noted = store.join(SINGLE_ID_NOTED);
        if !noted.exists() {
            eprintln!("warning: {message}");
            // Shown again next time if the store cannot keep the note.
            let _ = std::fs::create_dir_all(store)
                .and_then(|()| std::fs::write(&noted, format!("{message}\n")));
        }
    }
    let keep = [ready_write.as_raw_fd(), go_read.as_raw_fd()];
    // SAFETY: fcntl is async-signal-safe; these are the child's ends.
    unsafe {
        command.pre_exec(move || {
            for fd in keep {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("starting kiln in a user namespace: {e}"))?;
    drop(ready_write);
    drop(go_read);
    let pid = i32::try_from(child.id()).unwrap_or(0);
    CHILD.store(pid, Ordering::SeqCst);
    forward_signals();
    let mut ready = std::fs::File::from(ready_read);
    let mut byte = [0u8; 1];
    if matches!(ready.read(&mut byte), Ok(1)) {
        match mapping.write(pid) {
            Ok(()) => {
                let mut go = std::fs::File::from(go_write);
                // A child gone meanwhile reports for itself.
                let _ = go.write_all(b"g");
            }
            Err(e) => {
                drop(go_write);
                let _ = child.wait();
                return Err(format!("cannot map ids into kiln's user namespace: {e}"));
            }
        }
    } else {
        drop(go_write);
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for kiln in its user namespace: {e}"))?;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        (None, Some(sig)) => ExitCode::from(u8::try_from(128 + sig).unwrap_or(1)),
        _ => ExitCode::FAILURE,
    })
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
