//! The user namespace holder: one process per user that keeps kiln's
//! user namespace alive between commands, as rootless Podman's pause
//! process does, so a command joins it with `setns` (well under a
//! millisecond) instead of making one and having `newuidmap` and
//! `newgidmap` (setuid programs, 5 to 7 ms) write its maps.
//!
//! The holder's record, `userns-holder` (`PID START-TIME NS-INODE`), is
//! in the user's runtime directory: `$XDG_RUNTIME_DIR/kiln` when that is
//! the user's, else `/tmp/kiln-run-UID` (made mode 0700, and refused
//! unless it is a directory of the user's that only the user may
//! enter). The namespace does not depend on the store, so every store
//! and `--root` of a user shares it. A command trusts the record only if
//! the process is alive with that start time (through a pidfd, so a
//! reused pid is caught), its namespace is that inode, and the
//! namespace's maps are the ones `/etc/subuid` and `/etc/subgid` give
//! now; a holder with other maps is told to exit and a new one started.
//! Starting holds `userns-holder.lock` (flock), so two first commands
//! make one holder. The holder exits after `KILN_USERNS_IDLE` seconds
//! (default 900) in which no command joined it (each join touches the
//! record), when its record names another process or is gone (it looks
//! at least once a minute), or on SIGTERM (`kiln system reset-userns`).

use std::fs;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use kiln_rootfs::userns::Mapping;

/// The first argument of the holder's own process (kiln re-executed).
pub const HOLDER_ARG: &str = "__kiln-userns-holder";

/// Seconds a holder waits for the next command; 0: no holder.
pub const IDLE_ENV: &str = "KILN_USERNS_IDLE";

/// [`IDLE_ENV`]'s default: a quarter of an hour.
const DEFAULT_IDLE: u64 = 900;

/// The record's file name in the runtime directory.
const RECORD: &str = "userns-holder";

/// The lock a command holds to start a holder.
const LOCK: &str = "userns-holder.lock";

/// A holder this command is now in the namespace of.
pub struct Held {
    /// The holder's pid.
    pub pid: i32,
    /// Its record.
    pub record: PathBuf,
    /// Whether this command started it.
    pub started: bool,
}

/// The idle time [`IDLE_ENV`] asks for; `None`: no holder.
pub fn idle() -> Result<Option<u64>, String> {
    match std::env::var(IDLE_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(Some(DEFAULT_IDLE)),
        Ok(text) if text.is_empty() => Ok(Some(DEFAULT_IDLE)),
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(0) => Ok(None),
            Ok(seconds) => Ok(Some(seconds)),
            Err(_) => Err(invalid(&text)),
        },
        Err(std::env::VarError::NotUnicode(text)) => Err(invalid(&text.to_string_lossy())),
    }
}

fn invalid(text: &str) -> String {
    format!(
        "invalid {IDLE_ENV} {text:?}: the seconds kiln's user namespace holder waits for the \
         next command (0: no holder)"
    )
}

/// The user's runtime directory for the holder's record, made if
/// missing; an error where it is not the user's alone.
pub fn runtime_dir() -> Result<PathBuf, String> {
    let uid = nix::unistd::geteuid().as_raw();
    let owned =
        |path: &Path| fs::symlink_metadata(path).is_ok_and(|m| m.is_dir() && m.uid() == uid);
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|base| base.is_absolute() && owned(base))
        .map_or_else(
            || PathBuf::from(format!("/tmp/kiln-run-{uid}")),
            |base| base.join("kiln"),
        );
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("creating {}: {e}", dir.display())),
    }
    let private = fs::symlink_metadata(&dir).is_ok_and(|m| {
        let group_and_others = m.mode() & 0o077;
        m.is_dir() && m.uid() == uid && group_and_others == 0
    });
    if !private {
        return Err(format!(
            "{} is not a directory of uid {uid} that only it may enter",
            dir.display()
        ));
    }
    Ok(dir)
}

/// Joins the user's holder (starting one where there is none, or where
/// it has other maps than `mapping`). Must run while the process has one
/// thread; on success the process is in the holder's namespace, with
/// every capability there.
pub fn join_or_start(mapping: &Mapping, idle: u64) -> Result<Held, String> {
    let dir = runtime_dir()?;
    let record = dir.join(RECORD);
    // Most commands: a live holder with the current maps, no lock.
    if let Ok(live) = Live::find(&record, Some(mapping))
        && live.current
    {
        return live.join(record);
    }
    let lock = Lock::take(&dir.join(LOCK))?;
    match Live::find(&record, Some(mapping)) {
        Ok(live) if live.current => return live.join(record),
        Ok(stale) => {
            // Made before /etc/subuid or /etc/subgid changed. Processes
            // in its namespace (running containers) keep it.
            log::debug!(
                "user namespace holder {} has old maps: stopping it",
                stale.pid
            );
            let _ = stale.signal(libc::SIGTERM);
        }
        Err(e) => log::debug!("no user namespace holder: {e}"),
    }
    let live = start(mapping, &record, idle)?;
    lock.release();
    let mut held = live.join(record)?;
    held.started = true;
    Ok(held)
}

/// Stops the user's holder, if it runs: its pid.
pub fn stop() -> Result<Option<i32>, String> {
    let dir = runtime_dir()?;
    let record = dir.join(RECORD);
    let _lock = Lock::take(&dir.join(LOCK))?;
    let Ok(live) = Live::find(&record, None) else {
        return Ok(None);
    };
    live.signal(libc::SIGTERM)
        .map_err(|e| format!("stopping the user namespace holder {}: {e}", live.pid))?;
    let _ = fs::remove_file(&record);
    Ok(Some(live.pid))
}

/// What a record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    pid: i32,
    start: u64,
    ns: u64,
}

impl Record {
    fn parse(text: &str) -> Option<Self> {
        let mut fields = text.split_whitespace();
        let record = Self {
            pid: fields.next()?.parse().ok().filter(|p| *p > 0)?,
            start: fields.next()?.parse().ok()?,
            ns: fields.next()?.parse().ok()?,
        };
        fields.next().is_none().then_some(record)
    }

    fn read(path: &Path) -> Result<Self, String> {
        let text =
            fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        Self::parse(&text).ok_or_else(|| format!("{} is not a holder record", path.display()))
    }
}

/// Writes a record whole (a reader sees the old or the new one).
fn write_record(path: &Path, record: &Record) -> Result<(), String> {
    let partial = path.with_extension(format!("{}", std::process::id()));
    fs::write(
        &partial,
        format!("{} {} {}\n", record.pid, record.start, record.ns),
    )
    .and_then(|()| fs::rename(&partial, path))
    .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// A holder process found alive as its record says.
struct Live {
    pid: i32,
    pidfd: OwnedFd,
    /// Its user namespace, open: joined even if the holder exits now.
    ns: OwnedFd,
    /// Whether its maps are the ones asked for.
    current: bool,
}

impl Live {
    /// The holder `record` names, checked (and its maps compared with
    /// `mapping`, if given).
    fn find(record: &Path, mapping: Option<&Mapping>) -> Result<Self, String> {
        let r = Record::read(record)?;
        let pidfd = pidfd_open(r.pid).map_err(|e| format!("holder {} is gone: {e}", r.pid))?;
        if start_time(r.pid) != Some(r.start) {
            return Err(format!("pid {} is another process now", r.pid));
        }
        let path = format!("/proc/{}/ns/user", r.pid);
        let (ns, ino) = user_namespace(r.pid)?;
        if ino != r.ns {
            return Err(format!("{path} is not the recorded namespace"));
        }
        let current = match mapping {
            Some(mapping) => mapping.is_written_for(r.pid)?,
            None => true,
        };
        // Still the process we opened: what /proc said was its.
        let live = Self {
            pid: r.pid,
            pidfd,
            ns,
            current,
        };
        live.signal(0)
            .map_err(|e| format!("holder {} is gone: {e}", r.pid))?;
        Ok(live)
    }

    /// Moves this process into the holder's namespace.
    fn join(self, record: PathBuf) -> Result<Held, String> {
        // The holder's clock: it exits when no command came for a while.
        let _ = nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &record,
            &nix::sys::time::TimeSpec::UTIME_NOW,
            &nix::sys::time::TimeSpec::UTIME_NOW,
            nix::sys::stat::UtimensatFlags::FollowSymlink,
        );
        nix::sched::setns(&self.ns, nix::sched::CloneFlags::CLONE_NEWUSER)
            .map_err(|e| format!("joining the user namespace of holder {}: {e}", self.pid))?;
        Ok(Held {
            pid: self.pid,
            record,
            started: false,
        })
    }

    fn signal(&self, sig: libc::c_int) -> std::io::Result<()> {
        // SAFETY: pidfd_send_signal on a pidfd we own, no siginfo.
        let done = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if done == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open with no flags returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    match i32::try_from(fd) {
        // SAFETY: a descriptor the kernel just gave us.
        Ok(fd) if fd >= 0 => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// A live process's start time (clock ticks after boot, field 22 of
/// `/proc/PID/stat`); `None` for a zombie (killed, not yet reaped: it
/// still answers signals and shows its namespace).
fn start_time(pid: i32) -> Option<u64> {
    stat_start(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The start time in a `/proc/PID/stat` text, unless it is a zombie's.
fn stat_start(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    if matches!(fields.next()?, "Z" | "X" | "x") {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// An exclusive flock, released when dropped.
struct Lock(fs::File);

impl Lock {
    fn take(path: &Path) -> Result<Self, String> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| format!("opening {}: {e}", path.display()))?;
        loop {
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Self(file));
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(format!("locking {}: {e}", path.display()));
            }
        }
    }

    /// Unlocks now: a holder not yet started again shares the
    /// descriptor until it does.
    fn release(self) {
        // SAFETY: flock on a descriptor we own.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// Starts a holder: a grandchild (so no command waits for it or reaps
/// it), in a session of its own, unshares a user namespace, sends its
/// pid, waits while this process writes the maps and its record, then
/// becomes `kiln __kiln-userns-holder` with no descriptors of the
/// command's, in `/`, with an empty environment.
fn start(mapping: &Mapping, record: &Path, idle: u64) -> Result<Live, String> {
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| format!("creating a pipe for the user namespace holder: {e}"))
    };
    let (ready_read, ready_write) = pipe()?;
    let (go_read, go_write) = pipe()?;
    // SAFETY: the process has one thread (the caller's contract).
    match unsafe { nix::unistd::fork() }
        .map_err(|e| format!("forking the user namespace holder: {e}"))?
    {
        nix::unistd::ForkResult::Child => {
            drop(ready_read);
            drop(go_write);
            let _ = nix::unistd::setsid();
            // SAFETY: still one thread.
            match unsafe { nix::unistd::fork() } {
                Ok(nix::unistd::ForkResult::Child) => {
                    holder_child(ready_write, go_read, record, idle)
                }
                // SAFETY: _exit ends the intermediate process at once.
                _ => unsafe { libc::_exit(0) },
            }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(ready_write);
            drop(go_read);
            let _ = nix::sys::wait::waitpid(child, None);
            let mut word = [0u8; 4];
            fs::File::from(ready_read)
                .read_exact(&mut word)
                .map_err(|e| format!("starting the user namespace holder: {e}"))?;
            let pid = i32::from_le_bytes(word);
            if pid <= 0 {
                return Err(format!(
                    "cannot create a user namespace (rootless kiln needs one; are user \
                     namespaces allowed? see user.max_user_namespaces): {}",
                    nix::errno::Errno::from_raw(-pid)
                ));
            }
            // While it waits for the maps it is alive: what /proc says
            // is its.
            let pidfd = pidfd_open(pid)
                .map_err(|e| format!("opening the user namespace holder {pid}: {e}"))?;
            mapping
                .write(pid)
                .map_err(|e| format!("cannot map ids into kiln's user namespace: {e}"))?;
            let (ns, ino) = user_namespace(pid)?;
            let start = start_time(pid)
                .ok_or_else(|| format!("reading /proc/{pid}/stat: the holder is gone"))?;
            // Before it runs: its first look finds itself.
            write_record(
                record,
                &Record {
                    pid,
                    start,
                    ns: ino,
                },
            )?;
            fs::File::from(go_write)
                .write_all(b"g")
                .map_err(|e| format!("starting the user namespace holder: {e}"))?;
            Ok(Live {
                pid,
                pidfd,
                ns,
                current: true,
            })
        }
    }
}

/// The holder's side of [`start`], before it becomes the holder.
fn holder_child(ready: OwnedFd, go: OwnedFd, record: &Path, idle: u64) -> ! {
    use std::os::unix::process::CommandExt as _;
    let word = match nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER) {
        Ok(()) => nix::unistd::getpid().as_raw(),
        Err(e) => -(e as i32),
    };
    let mut ready = fs::File::from(ready);
    if ready.write_all(&word.to_le_bytes()).is_err() || word <= 0 {
        // SAFETY: _exit ends the process at once.
        unsafe { libc::_exit(1) }
    }
    let mut byte = [0u8; 1];
    if !matches!(fs::File::from(go).read(&mut byte), Ok(1)) {
        // The command could not map the ids and says why.
        // SAFETY: as above.
        unsafe { libc::_exit(1) }
    }
    // Its allocator would take 2 MB huge pages for its first few bytes:
    // a sleeping process keeps its resident memory small.
    // SAFETY: prctl on integers; kept across exec.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    let _ = std::process::Command::new("/proc/self/exe")
        .arg0("kiln")
        .arg(HOLDER_ARG)
        .arg(record)
        .arg(idle.to_string())
        .env_clear()
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .exec();
    // SAFETY: as above.
    unsafe { libc::_exit(127) }
}

/// The holder: waits while commands join its namespace, and exits once
/// none came for its idle time, or its record is gone or names another.
pub fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(2);
    let (Some(record), Some(idle)) = (args.next(), args.next()) else {
        return ExitCode::from(2);
    };
    let record = PathBuf::from(record);
    let Some(idle) = idle.to_str().and_then(|i| i.parse::<u64>().ok()) else {
        return ExitCode::from(2);
    };
    let idle = Duration::from_secs(idle);
    let me = nix::unistd::getpid().as_raw();
    let mine = |record: &Path| Record::read(record).is_ok_and(|r| r.pid == me);
    loop {
        let Ok(meta) = fs::metadata(&record) else {
            return ExitCode::SUCCESS;
        };
        if !mine(&record) {
            return ExitCode::SUCCESS;
        }
        let since = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .unwrap_or_default();
        if since >= idle {
            // Under the lock, so no command starts one meanwhile; one
            // that opened this namespace already joins it all the same.
            let lock = record.with_file_name(LOCK);
            let Ok(_lock) = Lock::take(&lock) else {
                return ExitCode::SUCCESS;
            };
            let still_idle = fs::metadata(&record)
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .is_some_and(|since| since >= idle);
            if still_idle && mine(&record) {
                let _ = fs::remove_file(&record);
                return ExitCode::SUCCESS;
            }
            continue;
        }
        // A minute at most: a record deleted with its directory (a
        // test's) ends the holder soon.
        std::thread::sleep(idle.saturating_sub(since).min(Duration::from_mins(1)));
    }
}

/// Process `pid`'s user namespace, opened, and its inode number (what a
/// holder's record names it by).
fn user_namespace(pid: i32) -> Result<(OwnedFd, u64), String> {
    let path = format!("/proc/{pid}/ns/user");
    let ns: OwnedFd = fs::File::open(&path)
        .map_err(|e| format!("opening {path}: {e}"))?
        .into();
    let ino = nix::sys::stat::fstat(&ns)
        .map_err(|e| format!("stat {path}: {e}"))?
        .st_ino;
    Ok((ns, ino))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_whole_or_not_at_all() {
        assert_eq!(
            Record::parse("42 1234 4026531837\n"),
            Some(Record {
                pid: 42,
                start: 1234,
                ns: 4_026_531_837
            })
        );
        for bad in ["", "42 1234", "0 1 2", "-3 1 2", "42 1234 5 6", "x 1 2"] {
            assert_eq!(Record::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn start_time_is_field_22_after_any_command_name() {
        let stat = "77 (a) b (c) S 1 77 77 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 5 6\n";
        assert_eq!(stat_start(stat), Some(987_654));
        assert_eq!(stat_start("77 (trunc"), None);
        assert_eq!(stat_start(&stat.replace(") S ", ") Z ")), None);
        let own = std::process::id().cast_signed();
        assert!(start_time(own).is_some());
    }
}
