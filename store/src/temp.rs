//! Temporary files and the processes that own them.
//!
//! Every temporary entry kiln makes carries its owner in its name: the
//! process ID and the process's start time (field 22 of
//! `/proc/<pid>/stat`, in clock ticks since boot), so that a reused PID is
//! not mistaken for the owner. In the store each process keeps its
//! temporaries in one directory `tmp/owner-<pid>-<start>-<n>/`, on which it
//! holds a `flock` while it lives; beside a `kiln save -o` target the
//! temporary archive is `.kiln-save-<pid>-<start>-<random>`, locked the
//! same way. An entry is garbage only when its owner is gone *and* its
//! lock is free: the PID test alone would be fooled by a kiln process in
//! another PID namespace sharing the store, the lock alone by the instant
//! between creating an entry and locking it.

use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::sync::OnceLock;

/// A process, identified across PID reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// The process ID.
    pub pid: u32,
    /// Its start time in clock ticks since boot.
    pub start: u64,
}

impl Owner {
    /// The calling process.
    pub fn current() -> Self {
        static CURRENT: OnceLock<Owner> = OnceLock::new();
        *CURRENT.get_or_init(|| {
            let pid = std::process::id();
            Owner {
                pid,
                start: start_time(pid).unwrap_or(0),
            }
        })
    }

    /// The process `pid` as it is now (`None` when there is none).
    pub fn of(pid: u32) -> Option<Self> {
        Some(Owner {
            pid,
            start: start_time(pid)?,
        })
    }

    /// `<pid>-<start>`, the form names carry.
    pub fn tag(&self) -> String {
        format!("{}-{}", self.pid, self.start)
    }

    /// Reads the owner from the start of `text` (`<pid>-<start>[-...]`).
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, '-');
        let pid = parts.next()?.parse().ok()?;
        let start = parts.next()?.parse().ok()?;
        Some(Self { pid, start })
    }

    /// Whether the process still runs (the same process: same start time).
    pub fn is_alive(&self) -> bool {
        start_time(self.pid) == Some(self.start)
    }
}

/// The start time of a process (field 22 of `/proc/<pid>/stat`).
fn start_time(pid: u32) -> Option<u64> {
    parse_start_time(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // Field 2, the command name, is in parentheses and may hold spaces
    // or parentheses itself: count from the last ')'. Field 3 comes next.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// Whether some process holds a `flock` on `path` (a file or directory).
/// A path that is gone is not held.
pub fn is_locked(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    // Held by another, or cannot tell (then assume it is in use: never
    // delete what may be).
    file.try_lock().is_err()
}

/// Whether an entry owned by `owner` at `path` is garbage: its owner is
/// gone and nobody holds its lock.
pub fn is_abandoned(owner: Owner, path: &Path) -> bool {
    !owner.is_alive() && !is_locked(path)
}

/// Space taken by some temporary entries.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TempUsage {
    /// Entries (files or directory trees).
    pub entries: usize,
    /// Bytes of the files in them.
    pub bytes: u64,
}

impl TempUsage {
    /// Counts one more entry of `bytes` bytes.
    pub fn add(&mut self, bytes: u64) {
        self.entries += 1;
        self.bytes += bytes;
    }
}

/// The prefix of the temporary archive `kiln save -o` writes beside its
/// target; the owner's tag and a random suffix follow.
pub const SAVE_PREFIX: &str = ".kiln-save-";

/// The prefix of the directory `kiln build -o type=local` (or `oci` with
/// `tar=false`) fills beside its destination; the owner's tag and a
/// random suffix follow.
pub const OUTPUT_PREFIX: &str = ".kiln-output-";

/// Removes the temporary archives of dead `kiln save` processes from
/// `dir` (the directory of a save target). Names without an owner (from
/// older kiln versions) are left alone: nothing tells whether they are in
/// use.
pub fn sweep_saves(dir: &Path) -> io::Result<TempUsage> {
    sweep_prefixed(dir, SAVE_PREFIX)
}

/// Removes the output directories of dead `kiln build -o` processes from
/// `dir` (the parent of an output directory), as [`sweep_saves`] does.
pub fn sweep_outputs(dir: &Path) -> io::Result<TempUsage> {
    sweep_prefixed(dir, OUTPUT_PREFIX)
}

fn sweep_prefixed(dir: &Path, prefix: &str) -> io::Result<TempUsage> {
    let mut removed = TempUsage::default();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(owner) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(Owner::parse)
        else {
            continue;
        };
        let path = entry.path();
        if owner == Owner::current() || !is_abandoned(owner, &path) {
            continue;
        }
        let meta = entry.metadata()?;
        let gone = if meta.is_dir() {
            removed.add(0);
            fs::remove_dir_all(&path)
        } else {
            removed.add(meta.len());
            fs::remove_file(&path)
        };
        match gone {
            Ok(()) => {}
            // Another process swept it first.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_process_is_alive_and_a_changed_start_time_is_not() {
        let me = Owner::current();
        assert_eq!(me.pid, std::process::id());
        assert!(me.start > 0);
        assert!(me.is_alive());
        let reused = Owner {
            start: me.start + 1,
            ..me
        };
        assert!(!reused.is_alive());
        assert_eq!(Owner::parse(&format!("{}-x", me.tag())), Some(me));
        assert_eq!(Owner::parse("abc-1"), None);
        assert_eq!(Owner::parse("12"), None);
    }

    #[test]
    fn start_time_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let fields: Vec<String> = (3..=30).map(|n| n.to_string()).collect();
        let stat = format!("42 (a) b (c) {}\n", fields.join(" "));
        assert_eq!(parse_start_time(&stat), Some(22));
        assert_eq!(parse_start_time("42 (x) S 1"), None);
    }

    #[test]
    fn a_lock_is_seen_through_another_open_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"x").unwrap();
        let file = File::open(&path).unwrap();
        assert!(!is_locked(&path));
        file.lock().unwrap();
        // flock is per open file: a second open sees the lock.
        assert!(is_locked(&path));
        drop(file);
        assert!(!is_locked(&path));
        assert!(!is_locked(&dir.path().join("missing")));
    }

    #[test]
    fn sweep_saves_removes_only_dead_owners_files() {
        let dir = tempfile::tempdir().unwrap();
        let me = Owner::current();
        let dead = Owner {
            pid: me.pid,
            start: me.start + 7,
        };
        let mine = dir.path().join(format!("{SAVE_PREFIX}{}-aaaa", me.tag()));
        let theirs = dir.path().join(format!("{SAVE_PREFIX}{}-bbbb", dead.tag()));
        let old = dir.path().join(format!("{SAVE_PREFIX}cccc"));
        let other = dir.path().join("app.tar");
        for path in [&mine, &theirs, &old, &other] {
            fs::write(path, b"12345").unwrap();
        }
        let removed = sweep_saves(dir.path()).unwrap();
        assert_eq!(
            removed,
            TempUsage {
                entries: 1,
                bytes: 5
            }
        );
        assert!(mine.exists() && old.exists() && other.exists());
        assert!(!theirs.exists());
    }
}
