//! A fake [`Executor`] for the engine's tests: it runs nothing, writes the
//! files it was told to into the step's upper directory (or copies them
//! from what the step sees), exits with the code it was told to, and
//! counts runs per command. It needs no root.
//!
//! Its mounts are emulated by copying: an overlay is the merge of its
//! lowers copied into the target, and unmounting a writable one copies
//! what changed into the upper directory, as overlayfs's copy-up leaves
//! it (the engine's COPY, ADD and WORKDIR only add and change files; a
//! removal is refused). A bind is a copy of its source.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kiln_runtime::{Mount, NetworkPool, OutputSink, RunOutcome, RunSpec, RuntimeError, Stream};

use super::Executor;
use crate::error::BuildError;
use crate::mounts::Mounted;

/// What the fake does for one command.
#[derive(Debug, Clone, Default)]
struct Behaviour {
    /// Files (paths in the container, contents) written into the upper
    /// directory.
    files: Vec<(String, Vec<u8>)>,
    /// Files (from, to: paths in the container) copied from what the step
    /// sees (its mounts, then its layers) into the upper directory.
    copies: Vec<(String, String)>,
    exit_code: i32,
}

/// Counts runs by command: the last element of the argv (the script of a
/// shell-form RUN, `/bin/sh -c SCRIPT`).
#[derive(Debug, Default)]
pub(crate) struct FakeExecutor {
    behaviours: Mutex<HashMap<String, Behaviour>>,
    runs: Mutex<HashMap<String, usize>>,
    /// The environment of each command's last run.
    env: Mutex<HashMap<String, Vec<String>>>,
    /// What each command's last run read, by path in the container.
    read: Mutex<HashMap<(String, String), Vec<u8>>>,
}

fn command(spec: &RunSpec) -> String {
    spec.argv.last().cloned().unwrap_or_default()
}

impl FakeExecutor {
    /// `command` writes `content` at `path` (absolute, in the container).
    pub(crate) fn writes(&self, command: &str, path: &str, content: &str) {
        let mut behaviours = self.behaviours.lock().unwrap();
        let behaviour = behaviours.entry(command.to_owned()).or_default();
        behaviour.files.retain(|(p, _)| p != path);
        behaviour
            .files
            .push((path.to_owned(), content.as_bytes().to_vec()));
    }

    /// `command` copies the file it sees at `from` (in a mount or its
    /// layers) to `to` (both absolute, in the container).
    pub(crate) fn copies(&self, command: &str, from: &str, to: &str) {
        self.behaviours
            .lock()
            .unwrap()
            .entry(command.to_owned())
            .or_default()
            .copies
            .push((from.to_owned(), to.to_owned()));
    }

    /// `command` exits with `exit_code` (after writing its files).
    pub(crate) fn exits(&self, command: &str, exit_code: i32) {
        self.behaviours
            .lock()
            .unwrap()
            .entry(command.to_owned())
            .or_default()
            .exit_code = exit_code;
    }

    /// How many times `command` ran.
    pub(crate) fn runs(&self, command: &str) -> usize {
        self.runs.lock().unwrap().get(command).copied().unwrap_or(0)
    }

    /// What `command`'s last run read at `path` (see [`Self::copies`]).
    pub(crate) fn read(&self, command: &str, path: &str) -> String {
        let read = self.read.lock().unwrap();
        let content = read
            .get(&(command.to_owned(), path.to_owned()))
            .cloned()
            .unwrap_or_default();
        String::from_utf8_lossy(&content).into_owned()
    }

    /// How many runs there were in all.
    pub(crate) fn total_runs(&self) -> usize {
        self.runs.lock().unwrap().values().sum()
    }

    /// The environment `command` last ran with.
    pub(crate) fn env(&self, command: &str) -> Vec<String> {
        self.env
            .lock()
            .unwrap()
            .get(command)
            .cloned()
            .unwrap_or_default()
    }
}

impl Executor for FakeExecutor {
    fn run(
        &self,
        spec: &RunSpec,
        output: OutputSink<'_>,
        _networks: Option<&NetworkPool>,
    ) -> Result<RunOutcome, RuntimeError> {
        let command = command(spec);
        *self
            .runs
            .lock()
            .unwrap()
            .entry(command.clone())
            .or_default() += 1;
        self.env
            .lock()
            .unwrap()
            .insert(command.clone(), spec.env.clone());
        let behaviour = self
            .behaviours
            .lock()
            .unwrap()
            .get(&command)
            .cloned()
            .unwrap_or_default();
        for (path, content) in &behaviour.files {
            let file = spec.upper.join(path.trim_start_matches('/'));
            if let Some(parent) = file.parent() {
                fs::create_dir_all(parent).unwrap();
            }
            fs::write(&file, content).unwrap();
        }
        for (from, to) in &behaviour.copies {
            let Some(found) = seen_by(spec, from) else {
                output(Stream::Stderr, format!("{from}: not found\n").as_bytes());
                return Ok(RunOutcome {
                    exit_code: 1,
                    oom_killed: false,
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                });
            };
            let file = spec.upper.join(to.trim_start_matches('/'));
            if let Some(parent) = file.parent() {
                fs::create_dir_all(parent).unwrap();
            }
            let content = fs::read(&found).unwrap();
            fs::write(&file, &content).unwrap();
            self.read
                .lock()
                .unwrap()
                .insert((command.clone(), from.clone()), content);
        }
        output(Stream::Stdout, format!("ran {command}\n").as_bytes());
        Ok(RunOutcome {
            exit_code: behaviour.exit_code,
            oom_killed: false,
            stdout: Vec::new(),
            stderr: Vec::new(),
        })
    }

    fn overlay(
        &self,
        lowers: &[PathBuf],
        upper: Option<(&Path, &Path)>,
        _empty: &Path,
        target: &Path,
    ) -> Result<Mounted, BuildError> {
        let fail =
            |e: io::Error| BuildError::Mount(format!("fake overlay at {}: {e}", target.display()));
        for lower in lowers {
            merge(lower, target).map_err(fail)?;
        }
        let Some((upper, _)) = upper else {
            return Ok(Mounted::emulated(target, || Ok(())));
        };
        let before = identities(target).map_err(fail)?;
        let (merged, upper) = (target.to_owned(), upper.to_owned());
        Ok(Mounted::emulated(target, move || {
            copy_up(&merged, &upper, &before).map_err(|e| {
                BuildError::Mount(format!("fake overlay at {}: {e}", merged.display()))
            })
        }))
    }

    fn bind(
        &self,
        source: &OwnedFd,
        target: &Path,
        _read_only: bool,
    ) -> Result<Mounted, BuildError> {
        let source = kiln_rootfs::fd_path(source.as_fd());
        let copied = if fs::metadata(&source).is_ok_and(|m| m.is_dir()) {
            merge(&source, target)
        } else {
            fs::copy(&source, target).map(drop)
        };
        copied.map_err(|e| BuildError::Mount(format!("fake bind on {}: {e}", target.display())))?;
        Ok(Mounted::emulated(target, || Ok(())))
    }
}

/// The host file a step sees at `path`: under the last bind mount that
/// holds it, else in its layers, top first.
fn seen_by(spec: &RunSpec, path: &str) -> Option<PathBuf> {
    for mount in spec.mounts.iter().rev() {
        if let Mount::Bind { source, target, .. } = mount
            && let Some(rest) = path.strip_prefix(target.as_str())
            && (rest.is_empty() || rest.starts_with('/'))
        {
            let found = source.join(rest.trim_start_matches('/'));
            return found.exists().then_some(found);
        }
    }
    spec.layers
        .iter()
        .rev()
        .map(|layer| layer.join(path.trim_start_matches('/')))
        .find(|found| found.exists())
}

/// Copies the tree `from` over `to` (created if missing) as overlayfs
/// shows a lower over those below it: entries replace entries, a
/// character device (a whiteout) removes what is below.
fn merge(from: &Path, to: &Path) -> io::Result<()> {
    if !to.is_dir() {
        fs::create_dir(to)?;
    }
    let mut names: Vec<_> = fs::read_dir(from)?.collect::<io::Result<_>>()?;
    names.sort_by_key(fs::DirEntry::file_name);
    for entry in names {
        let source = entry.path();
        let dest = to.join(entry.file_name());
        let meta = fs::symlink_metadata(&source)?;
        let existing = fs::symlink_metadata(&dest).ok();
        if let Some(existing) = &existing
            && !(existing.is_dir() && meta.is_dir())
        {
            remove(&dest, existing)?;
        }
        if meta.file_type().is_char_device() {
            continue;
        }
        copy_entry(&source, &dest, &meta)?;
        if meta.is_dir() {
            merge(&source, &dest)?;
            set_times(&dest, &meta)?;
        }
    }
    Ok(())
}

fn remove(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

/// Makes `dest` as `source` is (a directory without its entries), with its
/// mode and times.
fn copy_entry(source: &Path, dest: &Path, meta: &fs::Metadata) -> io::Result<()> {
    if meta.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(source)?, dest)?;
        return set_times(dest, meta);
    }
    if meta.is_dir() {
        if !dest.is_dir() {
            fs::create_dir(dest)?;
        }
    } else {
        fs::copy(source, dest)?;
    }
    fs::set_permissions(dest, meta.permissions())?;
    set_times(dest, meta)
}

fn set_times(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    let atime = filetime::FileTime::from_last_access_time(meta);
    let mtime = filetime::FileTime::from_last_modification_time(meta);
    filetime::set_symlink_file_times(path, atime, mtime)
}

/// Every entry under `root` (relative path) with its inode and ctime, which
/// any write moves.
fn identities(root: &Path) -> io::Result<BTreeMap<PathBuf, (u64, i64, i64)>> {
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut |rel, meta| {
        out.insert(
            rel.to_owned(),
            (meta.ino(), meta.ctime(), meta.ctime_nsec()),
        );
    })?;
    Ok(out)
}

/// Calls `each` with every entry below `root/rel`, parents first.
fn walk(root: &Path, rel: &Path, each: &mut dyn FnMut(&Path, &fs::Metadata)) -> io::Result<()> {
    let mut names: Vec<_> = fs::read_dir(root.join(rel))?.collect::<io::Result<_>>()?;
    names.sort_by_key(fs::DirEntry::file_name);
    for entry in names {
        let rel = rel.join(entry.file_name());
        let meta = fs::symlink_metadata(root.join(&rel))?;
        each(&rel, &meta);
        if meta.is_dir() {
            walk(root, &rel, each)?;
        }
    }
    Ok(())
}

/// Copies into `upper` what changed in `merged` since `before`, with the
/// directories above it, as overlayfs's copy-up leaves an upper directory.
fn copy_up(
    merged: &Path,
    upper: &Path,
    before: &BTreeMap<PathBuf, (u64, i64, i64)>,
) -> io::Result<()> {
    let after = identities(merged)?;
    if let Some(gone) = before.keys().find(|path| !after.contains_key(*path)) {
        return Err(io::Error::other(format!(
            "cannot record the removal of {}",
            gone.display()
        )));
    }
    let mut dirs = Vec::new();
    for (rel, identity) in &after {
        if before.get(rel) == Some(identity) {
            continue;
        }
        for ancestor in rel.ancestors().collect::<Vec<_>>().into_iter().rev() {
            if ancestor.as_os_str().is_empty() || upper.join(ancestor).symlink_metadata().is_ok() {
                continue;
            }
            let meta = fs::symlink_metadata(merged.join(ancestor))?;
            copy_entry(&merged.join(ancestor), &upper.join(ancestor), &meta)?;
            if meta.is_dir() {
                dirs.push((ancestor.to_owned(), meta));
            }
        }
    }
    // A directory's times last: writing its entries moved them.
    for (rel, meta) in dirs.iter().rev() {
        set_times(&upper.join(rel), meta)?;
    }
    Ok(())
}
