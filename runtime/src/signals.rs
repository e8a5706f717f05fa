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
const FORWARDED: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

extern "C" fn forward(sig: libc::c_int) {
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

/// Whether a forwarded signal arrived since the handlers were installed
/// (one that came before a pid was registered must still reach it).
pub(crate) fn received() -> bool {
    RECEIVED.load(Ordering::SeqCst) > 0
}

/// Forgets a slot from [`register`].
pub(crate) fn unregister(slot: Option<usize>) {
    if let Some(slot) = slot.and_then(|i| PIDS.get(i)) {
        slot.store(0, Ordering::SeqCst);
    }
}
