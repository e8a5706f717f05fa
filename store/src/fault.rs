//! Fault injection at commit points, for crash tests.
//!
//! Every place where kiln makes a change visible (a blob renamed into
//! place, index.json replaced, a snapshot renamed in or out, a record
//! written, a GC deletion, ...) calls [`point`] with a fixed name. Two
//! environment variables, read once per process, turn the points on:
//!
//! - `KILN_FAULT=<name>[:<nth>]`: the process kills itself with SIGKILL
//!   the `nth` time (default: the first) it reaches the point `name`,
//!   exactly as an outside `kill -9` at that instant would.
//! - `KILN_FAULT_TRACE=<file>`: the name of every point reached is
//!   appended to `file`, one per line, so a test can list the points a
//!   command passes and then kill it at each one.
//!
//! Without either variable a point costs one atomic load.

use std::fs::File;
use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// The fault configuration, read from the environment once.
struct Faults {
    /// The point to die at and at which hit (1-based).
    kill: Option<(String, usize)>,
    /// Hits of the `kill` point so far.
    hits: AtomicUsize,
    /// Where reached points are listed.
    trace: Option<Mutex<File>>,
}

static FAULTS: OnceLock<Option<Faults>> = OnceLock::new();

impl Faults {
    fn from_env() -> Option<Self> {
        let kill = std::env::var("KILN_FAULT")
            .ok()
            .filter(|v| !v.is_empty())
            .map(|value| match value.rsplit_once(':') {
                Some((name, nth)) if nth.parse::<usize>().is_ok() => {
                    (name.to_owned(), nth.parse().unwrap_or(1).max(1))
                }
                _ => (value, 1),
            });
        let trace = std::env::var_os("KILN_FAULT_TRACE")
            .filter(|v| !v.is_empty())
            .and_then(|path| {
                File::options()
                    .create(true)
                    .append(true)
                    .open(path)
                    .ok()
                    .map(Mutex::new)
            });
        (kill.is_some() || trace.is_some()).then(|| Self {
            kill,
            hits: AtomicUsize::new(0),
            trace,
        })
    }
}

/// A commit point named `name` (dotted, e.g. `gc.snapshot.renamed`):
/// dies here when `KILN_FAULT` names it, lists it when `KILN_FAULT_TRACE`
/// is set, and does nothing otherwise.
pub fn point(name: &'static str) {
    let Some(faults) = FAULTS.get_or_init(Faults::from_env) else {
        return;
    };
    if let Some(trace) = &faults.trace
        && let Ok(mut file) = trace.lock()
    {
        // One write per line: lines of concurrent threads do not mix.
        let _ = file.write_all(format!("{name}\n").as_bytes());
    }
    if let Some((wanted, nth)) = &faults.kill
        && wanted == name
        && faults.hits.fetch_add(1, Ordering::SeqCst) + 1 == *nth
    {
        // As abrupt as an outside kill -9: no destructor, no buffered
        // write, no lock release other than the kernel's.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::SIGKILL);
        // SIGKILL to oneself is delivered before kill(2) returns; should it
        // not be, nothing after this point may run.
        std::process::abort();
    }
}
