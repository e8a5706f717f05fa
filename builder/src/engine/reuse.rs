//! Incremental COPY: when a COPY of the build context misses the cache,
//! files that did not change since the previous run of the same step (its
//! "lineage") are hard-linked from that run's snapshot instead of being
//! copied through the overlay again.
//!
//! A lineage record (`cache/lineage/<hex>`, outside `cache/*.json` so that
//! it does not keep snapshots alive for the store's garbage collector)
//! names the snapshot the step last produced (by chain id) and a time `T`
//! before which
//! every source the step read was already in its final state as far as
//! that snapshot knows: a source file whose ctime is older than `T` has the
//! content the snapshot holds at its path. A missing snapshot (collected,
//! or never made) just means no reuse.
//!
//! Snapshots then share inodes by hard links. That is safe only because a
//! snapshot file is never modified: snapshots are only overlay lowers (a
//! RUN that changes such a file copies it up), and the layer packer emits
//! tar hard links only for inodes it sees twice within one layer.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use filetime::FileTime;
use kiln_store::{Digest, Store};

use crate::error::BuildError;
use crate::fileops::{PlannedFile, SkippedFile};

/// A previous run of a COPY step: its snapshot and the time before which
/// its sources' ctimes must lie for their copies to be reused.
#[derive(Debug, Clone)]
pub(super) struct Lineage {
    /// The snapshot directory.
    pub(super) snapshot: PathBuf,
    /// Seconds and nanoseconds since the epoch.
    pub(super) since: (i64, i64),
}

/// The lineage key of a COPY of the build context at `context`: its
/// operation without the sources' digest (a changed file must still find
/// the previous run), and the context's directory. Unlike a cache key it
/// names a host path on purpose: the files reused are this machine's.
pub(super) fn lineage_key(op: &crate::ops::CopyOp, context: &Path) -> Result<String, BuildError> {
    let canonical = crate::ops::Op::Copy(op.clone()).canonical()?;
    let mut bytes = b"kiln-lineage-v2\n".to_vec();
    bytes.extend_from_slice(canonical.as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(std::os::unix::ffi::OsStrExt::as_bytes(context.as_os_str()));
    Ok(kiln_store::digest::digest_bytes(&bytes).to_string())
}

/// The directory under `cache/` of the lineage records.
pub(crate) const LINEAGE_DIR: &str = "lineage";

/// Where the record of lineage key `key` (`sha256:<hex>`) lives.
fn record_path(store: &Store, key: &str) -> Option<PathBuf> {
    let hex = key.strip_prefix("sha256:")?;
    Some(store.cache_dir().join(LINEAGE_DIR).join(hex))
}

/// A lineage record's snapshot chain id and time (`<chain id> <sec>
/// <nsec>`); `None` if it is garbled. Cache pruning reads records with it
/// too.
pub(crate) fn parse_record(text: &str) -> Option<(Digest, (i64, i64))> {
    let mut fields = text.split_whitespace();
    let chain_id = kiln_store::digest::parse_sha256(fields.next()?).ok()?;
    let sec = fields.next()?.parse().ok()?;
    let nsec = fields.next()?.parse().ok()?;
    Some((chain_id, (sec, nsec)))
}

/// The previous run of the step with lineage key `key`, if its record is
/// readable and its snapshot still exists (complete).
pub(super) fn lookup(store: &Store, key: &str) -> Option<Lineage> {
    let text = fs::read_to_string(record_path(store, key)?).ok()?;
    let (chain_id, since) = parse_record(&text)?;
    let snapshot = store.find_snapshot(&chain_id).ok()??;
    Some(Lineage {
        snapshot: snapshot.path,
        since,
    })
}

/// Records that the step with lineage key `key`, started at `since` (see
/// [`start_time`]), produced the snapshot `chain_id` (`None`: no layer,
/// which forgets the lineage). Failures only cost reuse next time.
pub(super) fn record(store: &Store, key: &str, chain_id: Option<&Digest>, since: (i64, i64)) {
    let Some(path) = record_path(store, key) else {
        return;
    };
    let Some(chain_id) = chain_id else {
        let _ = fs::remove_file(&path);
        return;
    };
    let dir = store.cache_dir().join(LINEAGE_DIR);
    let text = format!("{chain_id} {} {}\n", since.0, since.1);
    let written = fs::create_dir_all(&dir)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            kiln_store::store::write_replace(&store.tmp_dir(), &path, text.as_bytes())
                .map_err(|e| e.to_string())
        });
    if let Err(e) = written {
        log::debug!("writing lineage record {}: {e}", path.display());
    }
}

/// The time a step starts, for its lineage record: the coarse clock that
/// file timestamps come from, less a second for filesystems that keep
/// whole seconds, so that any change made after this moment gets a ctime
/// that is not older than it.
pub(super) fn start_time() -> (i64, i64) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given, which
    // lives on this stack frame for the whole call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &raw mut ts) };
    if rc != 0 {
        // Without a time nothing can be judged unchanged.
        return (0, 0);
    }
    (ts.tv_sec - 1, ts.tv_nsec)
}

/// Whether the previous copy of `file` in `lineage`'s snapshot can stand
/// for a new one: a regular file there with the size, mtime, mode and
/// owner the copy would have, and the source unchanged (ctime) since the
/// lineage's time.
pub(super) fn reusable(lineage: &Lineage, file: &PlannedFile<'_>) -> bool {
    let old_path = lineage.snapshot.join(file.dest.trim_start_matches('/'));
    let Ok(old) = fs::symlink_metadata(&old_path) else {
        return false;
    };
    let src = file.meta;
    old.is_file()
        && old.len() == src.len()
        && old.mtime() == src.mtime()
        && old.mtime_nsec() == src.mtime_nsec()
        && old.mode() & 0o7777 == file.mode
        && old.uid() == file.owner.uid
        && old.gid() == file.owner.gid
        && (src.ctime(), src.ctime_nsec()) < lineage.since
}

/// Puts the skipped files into `upper` (the unmounted upper directory):
/// hard links to their copies in the lineage's snapshot, or, if linking
/// fails (the snapshot was collected meanwhile), a copy of the source made
/// as the overlay copy would have made it. The directories written into
/// get back the times the copy gave them.
pub(super) fn place(
    upper: &Path,
    lineage: &Lineage,
    skipped: &[SkippedFile],
) -> Result<(), BuildError> {
    let mut dirs: BTreeMap<PathBuf, (FileTime, FileTime)> = BTreeMap::new();
    for file in skipped {
        let rel = file.dest.trim_start_matches('/');
        let Some(parent) = upper.join(rel).parent().map(Path::to_path_buf) else {
            continue;
        };
        if dirs.contains_key(&parent) {
            continue;
        }
        let meta = fs::metadata(&parent).map_err(|e| BuildError::io(&parent, e))?;
        dirs.insert(
            parent,
            (
                FileTime::from_last_access_time(&meta),
                FileTime::from_last_modification_time(&meta),
            ),
        );
    }
    for file in skipped {
        let rel = file.dest.trim_start_matches('/');
        let new = upper.join(rel);
        let old = lineage.snapshot.join(rel);
        if let Err(e) = fs::hard_link(&old, &new) {
            log::debug!(
                "linking {} to {}: {e}; copying {} instead",
                old.display(),
                new.display(),
                file.source.display()
            );
            copy_plain(file, &new).map_err(|e| BuildError::io(&new, e))?;
        }
    }
    for (dir, (atime, mtime)) in &dirs {
        filetime::set_file_times(dir, *atime, *mtime).map_err(|e| BuildError::io(dir, e))?;
    }
    Ok(())
}

/// Copies a skipped file's source to `to` with the owner, mode, times and
/// extended attributes the overlay copy would have given it.
fn copy_plain(file: &SkippedFile, to: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(&file.source)?;
    fs::copy(&file.source, to)?;
    std::os::unix::fs::lchown(to, Some(file.owner.uid), Some(file.owner.gid))?;
    fs::set_permissions(to, std::os::unix::fs::PermissionsExt::from_mode(file.mode))?;
    if let Ok(names) = xattr::list(&file.source) {
        for name in names {
            if name == "security.selinux" {
                continue;
            }
            if let Ok(Some(value)) = xattr::get(&file.source, &name) {
                let _ = xattr::set(to, &name, &value);
            }
        }
    }
    filetime::set_file_times(
        to,
        FileTime::from_last_access_time(&meta),
        FileTime::from_last_modification_time(&meta),
    )
}
