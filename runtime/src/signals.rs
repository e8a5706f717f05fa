//! Forwarding SIGINT and SIGTERM from kiln to the container inits while
//! runs are in progress. kiln may be multi-threaded, so the handler does
//! only async-signal-safe work: `kill` on pids kept in atomics.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

const SLOTS: usize = 64;
static PIDS: [AtomicI32; SLOTS] = [const { AtomicI32::new(0) }; SLOTS];
/// Signals received since handlers were installed: the first is forwarded,
/// later ones kill the inits outright, as a second Ctrl-C does in Docker.
static RECEIVED: AtomicU32 = AtomicU32::new(0);
static INSTALLED: Mutex<(usize, Option<[libc::sigaction; 2]>)> = Mutex::new((0, None));
/// Set for good by a forwarded signal or [`stop_all`]: the caller is being
/// interrupted, and every container started later is stopped as soon as it
/// exists. Never reset: a run that ends after the signal reports it even
/// if another run has since reinstalled the handlers.
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
const FORWARDED: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

extern "C" fn forward(sig: libc::c_int) {
    STOPPING.store(true, Ordering::SeqCst);
    let first = RECEIVED.fetch_add(1, Ordering::SeqCst) == 0;
    let sig = if first { sig } else { libc::SIGKILL };
    for slot in &PIDS {
        let pid = slot.load(Ordering::SeqCst);
        if pid > 0 {
            // SAFETY: kill is async-signal-safe and takes plain integers.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }
}

/// Stops every container of this process, now and from now on: SIGTERM to
/// each init (which kills its container after the stop timeout), and the
/// same for any started later. For a caller's own SIGINT/SIGTERM handler
/// (a build being cancelled between two runs). Async-signal-safe.
pub(crate) fn stop_all() {
    STOPPING.store(true, Ordering::SeqCst);
    for slot in &PIDS {
        let pid = slot.load(Ordering::SeqCst);
        if pid > 0 {
            // SAFETY: kill is async-signal-safe and takes plain integers.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
}

/// Whether a SIGINT or SIGTERM was forwarded, or [`stop_all`] called.
pub(crate) fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

/// Handlers installed for as long as this guard lives (reference counted
/// across concurrent runs; the previous handlers come back afterwards).
pub(crate) struct Forwarding;

impl Forwarding {
    pub(crate) fn install() -> Forwarding {
        let mut state = INSTALLED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.0 == 0 {
            RECEIVED.store(0, Ordering::SeqCst);
            // SAFETY: zeroed sigaction is a valid "default" value that
            // sigaction overwrites; the handler is async-signal-safe.
            let mut old: [libc::sigaction; 2] = unsafe { std::mem::zeroed() };
            let mut ok = true;
            for (i, sig) in FORWARDED.iter().enumerate() {
                // SAFETY: as above; sa_sigaction holds a plain handler.
                unsafe {
                    let mut action: libc::sigaction = std::mem::zeroed();
                    action.sa_sigaction = forward as *const () as usize;
                    action.sa_flags = libc::SA_RESTART;
                    libc::sigemptyset(&raw mut action.sa_mask);
                    ok &= libc::sigaction(*sig, &raw const action, &raw mut old[i]) == 0;
                }
            }
            if ok {
                state.1 = Some(old);
            }
        }
        state.0 += 1;
        Forwarding
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        let mut state = INSTALLED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.0 = state.0.saturating_sub(1);
        if state.0 == 0
            && let Some(old) = state.1.take()
        {
            for (i, sig) in FORWARDED.iter().enumerate() {
                // SAFETY: restores the action saved by install.
                unsafe {
                    libc::sigaction(*sig, &raw const old[i], std::ptr::null_mut());
                }
            }
        }
    }
}

/// Records `pid` as a forwarding target; returns its slot.
pub(crate) fn register(pid: i32) -> Option<usize> {
    PIDS.iter().position(|slot| {
        slot.compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    })
}

/// Forgets a slot from [`register`].
pub(crate) fn unregister(slot: Option<usize>) {
    if let Some(slot) = slot.and_then(|i| PIDS.get(i)) {
        slot.store(0, Ordering::SeqCst);
    }
}

/// Pty masters of tty runs in progress, resized from the caller's terminal
/// on SIGWINCH (0 = free slot; fds are never 0 here since stdin is open).
static MASTERS: [AtomicI32; SLOTS] = [const { AtomicI32::new(0) }; SLOTS];
static WINCH: Mutex<(usize, Option<libc::sigaction>)> = Mutex::new((0, None));

/// Copies the window size of the terminal `from` to the terminal `to`;
/// false when `from` has none (not a terminal). Async-signal-safe.
pub(crate) fn copy_window_size(from: libc::c_int, to: libc::c_int) -> bool {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ read and write one winsize; ioctl is a
    // plain system call, safe in a signal handler.
    unsafe {
        libc::ioctl(from, libc::TIOCGWINSZ, &raw mut size) == 0
            && libc::ioctl(to, libc::TIOCSWINSZ, &raw const size) == 0
    }
}

extern "C" fn resize(_sig: libc::c_int) {
    for slot in &MASTERS {
        let fd = slot.load(Ordering::SeqCst);
        if fd > 0 {
            // Setting the size makes the kernel send SIGWINCH to the
            // container's foreground process group.
            copy_window_size(0, fd);
        }
    }
}

/// A pty master kept the caller's window size for as long as this lives:
/// registered for the SIGWINCH handler, which is installed while any is
/// registered (and only when the caller's stdin is a terminal). The master
/// must outlive the guard.
pub(crate) struct Resizing(Option<usize>);

impl Resizing {
    pub(crate) fn install(master: libc::c_int) -> Resizing {
        // SAFETY: isatty on an integer.
        if unsafe { libc::isatty(0) } != 1 {
            return Resizing(None);
        }
        let mut state = WINCH
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(slot) = MASTERS.iter().position(|slot| {
            slot.compare_exchange(0, master, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        }) else {
            return Resizing(None);
        };
        if state.0 == 0 {
            // SAFETY: zeroed sigaction is a valid value that sigaction
            // fills in; the handler is async-signal-safe.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = resize as *const () as usize;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&raw mut action.sa_mask);
                if libc::sigaction(libc::SIGWINCH, &raw const action, &raw mut old) == 0 {
                    state.1 = Some(old);
                }
            }
        }
        state.0 += 1;
        // A resize between openpty's copy and now would otherwise be lost.
        copy_window_size(0, master);
        Resizing(Some(slot))
    }
}

impl Drop for Resizing {
    fn drop(&mut self) {
        let Some(slot) = self.0 else { return };
        let mut state = WINCH
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(fd) = MASTERS.get(slot) {
            fd.store(0, Ordering::SeqCst);
        }
        state.0 = state.0.saturating_sub(1);
        if state.0 == 0
            && let Some(old) = state.1.take()
        {
            // SAFETY: restores the action saved by install.
            unsafe {
                libc::sigaction(libc::SIGWINCH, &raw const old, std::ptr::null_mut());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::copy_window_size;

    #[test]
    fn window_size_is_copied_between_terminals() {
        let (from_master, _from_slave) = crate::sys::openpty().unwrap();
        let (to_master, to_slave) = crate::sys::openpty().unwrap();
        let size = libc::winsize {
            ws_row: 37,
            ws_col: 121,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: sets one winsize on a pty we own.
        assert_eq!(
            unsafe { libc::ioctl(from_master.as_raw_fd(), libc::TIOCSWINSZ, &raw const size) },
            0
        );
        assert!(copy_window_size(
            from_master.as_raw_fd(),
            to_master.as_raw_fd()
        ));
        let mut got = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: reads one winsize from a pty we own.
        assert_eq!(
            unsafe { libc::ioctl(to_slave.as_raw_fd(), libc::TIOCGWINSZ, &raw mut got) },
            0
        );
        assert_eq!((got.ws_row, got.ws_col), (37, 121));
        // A pipe is no terminal: nothing is copied.
        let (read, _write) = crate::sys::pipe().unwrap();
        assert!(!copy_window_size(read.as_raw_fd(), to_master.as_raw_fd()));
    }
}
