//! Snapshots: each layer of a chain applied once on its parents, in
//! overlayfs form, under `snapshots/<chain id hex>/`.
//!
//! A snapshot's files depend on the layers below it (a layer's entries are
//! placed through the symlinks and directories its parents have), so a
//! snapshot is named by the OCI `ChainID` of the layers up to it, never by
//! the layer's `diff_id` alone. The same layer at two places in one image
//! (three identical `COPY` steps, say) thus gives distinct snapshots, and
//! an overlay mount never lists one directory twice.
//!
//! Layout: `snapshots/<hex>/fs/` holds the files (an overlay lower
//! directory) and `snapshots/<hex>/snapshot.json` the completion record
//! (chain id, parent chain id, `diff_id`, layer blob). A snapshot is built
//! in `tmp/`, the record written last, and the directory renamed into
//! place, so it appears complete or not at all. A snapshot directory with
//! anything else in it, or without a record that names it, is never used:
//! it is moved aside (into `tmp/`, which garbage collection empties) and
//! made again from its layer. Nothing is fsynced: after a power cut a
//! snapshot may lack data that `kiln system check` then reports (and moves
//! aside), as it reports any snapshot whose files differ from what its
//! layer gives.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use kiln_reference::Digest;
use serde::{Deserialize, Serialize};

use crate::digest::{HashingReader, chain_id, parse_sha256};
use crate::error::{IoContext, StoreError};
use crate::layer::unpack::{OVERLAY_OPAQUE_XATTR, OVERLAY_USER_OPAQUE_XATTR};
use crate::layer::{apply_layer, open_layer};
use crate::maintenance::Problem;
use crate::spec::Descriptor;
use crate::store::Store;
use crate::store::remove_tree;

/// The files of a snapshot, inside its directory.
const FS_DIR: &str = "fs";
/// The completion record, inside a snapshot's directory.
const RECORD_FILE: &str = "snapshot.json";
/// A completion record is a few hundred bytes; anything bigger is not one.
const MAX_RECORD_SIZE: u64 = 64 * 1024;
/// Differences `system check` lists per snapshot.
const MAX_DIFFERENCES: usize = 20;

/// A complete snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The chain id of the layers up to this one: what the snapshot holds.
    pub chain_id: Digest,
    /// Its files: an overlayfs lower directory.
    pub path: PathBuf,
}

/// A snapshot's completion record (`snapshot.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotRecord {
    /// The chain id the snapshot is named by.
    pub chain_id: String,
    /// The chain id of the snapshot below it, if any.
    pub parent: Option<String>,
    /// The layer's `diff_id`.
    pub diff_id: String,
    /// The layer blob it was made from (or packed into, for a build step).
    pub layer: String,
}

/// A snapshot made by [`Store::prepare_snapshot`].
#[derive(Debug)]
pub enum Prepared {
    /// The snapshot was there already.
    Existing(Snapshot),
    /// A new snapshot, complete in `tmp/` but not yet in place (dropped
    /// unplaced, it is removed).
    New(PreparedSnapshot),
}

/// A new snapshot waiting in `tmp/`.
#[derive(Debug)]
pub struct PreparedSnapshot {
    staging: tempfile::TempDir,
    chain: Digest,
    record: SnapshotRecord,
}

/// Decompresses the compressed layer read from `blob` (the blob
/// `digest`) and applies it on `parents` into `dest`, checking the
/// `diff_id`. The blob's own digest is the caller's to check.
fn apply_compressed(
    blob: &mut dyn Read,
    digest: &Digest,
    diff_id: &Digest,
    parents: &[Snapshot],
    dest: &Path,
) -> Result<(), StoreError> {
    let lowers: Vec<PathBuf> = parents.iter().map(|p| p.path.clone()).collect();
    let (_, decoded) = open_layer(blob)?;
    let mut hashing = HashingReader::new(decoded);
    apply_layer(&mut hashing, dest, &lowers)?;
    io::copy(&mut hashing, &mut io::sink())
        .map_err(|e| StoreError::Archive(format!("cannot decompress layer {digest}: {e}")))?;
    let actual = hashing.digest();
    if actual != *diff_id {
        return Err(StoreError::DiffIdMismatch {
            layer: digest.to_string(),
            expected: diff_id.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

/// Why a snapshot directory is not a usable snapshot.
enum Unusable {
    /// There is none.
    Missing,
    /// There is one, but it is not a complete snapshot.
    Incomplete(String),
    /// It cannot be listed (permissions, I/O): not known to be incomplete.
    Unreadable(io::Error),
}

impl Store {
    /// The directory of the snapshot of `chain_id`.
    fn snapshot_dir(&self, chain_id: &Digest) -> PathBuf {
        self.snapshots_dir().join(chain_id.encoded())
    }

    /// The record of snapshot directory `dir` (named `hex`) if it is a
    /// complete snapshot: `fs/` and a record naming it, nothing else.
    fn complete_record(dir: &Path, hex: &str) -> Result<SnapshotRecord, Unusable> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Unusable::Missing),
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                return Err(Unusable::Incomplete("is not a directory".to_owned()));
            }
            Err(e) => return Err(Unusable::Unreadable(e)),
        };
        let mut names = BTreeSet::new();
        for entry in entries {
            let entry = entry.map_err(Unusable::Unreadable)?;
            names.insert(entry.file_name().to_string_lossy().into_owned());
        }
        let expected: BTreeSet<String> = [FS_DIR, RECORD_FILE].map(str::to_owned).into();
        if names != expected {
            return Err(Unusable::Incomplete(if names.contains(RECORD_FILE) {
                format!("holds {names:?} instead of fs and {RECORD_FILE}")
            } else {
                "has no completion record".to_owned()
            }));
        }
        if !fs::symlink_metadata(dir.join(FS_DIR)).is_ok_and(|m| m.is_dir()) {
            return Err(Unusable::Incomplete("has no fs directory".to_owned()));
        }
        let record = read_record(&dir.join(RECORD_FILE)).map_err(Unusable::Incomplete)?;
        if record.chain_id.strip_prefix("sha256:") != Some(hex) {
            return Err(Unusable::Incomplete(format!(
                "has the record of {}",
                record.chain_id
            )));
        }
        Ok(record)
    }

    /// The complete snapshot of `chain_id`, if there is one. One that is
    /// there but incomplete is moved aside (and `None` returned), so that
    /// it is made again.
    pub fn find_snapshot(&self, chain_id: &Digest) -> Result<Option<Snapshot>, StoreError> {
        let dir = self.snapshot_dir(chain_id);
        match Self::complete_record(&dir, chain_id.encoded()) {
            Ok(_) => Ok(Some(Snapshot {
                chain_id: chain_id.clone(),
                path: dir.join(FS_DIR),
            })),
            Err(Unusable::Missing) => Ok(None),
            Err(Unusable::Incomplete(why)) => {
                log::warn!("snapshot {chain_id} {why}: moving it aside to make it again");
                self.move_aside(&dir)?;
                Ok(None)
            }
            Err(Unusable::Unreadable(e)) => Err(StoreError::io(dir, e)),
        }
    }

    /// The snapshot of `layer` (with `diff_id`) applied on `parents` (the
    /// snapshots of the layers below it, base first), made if missing: the
    /// blob is decompressed and applied into a new directory in `tmp/`
    /// (see [`apply_layer`]) with its digest and `diff_id` both checked,
    /// then renamed into place.
    pub fn snapshot(
        &self,
        parents: &[Snapshot],
        layer: &Descriptor,
        diff_id: &str,
    ) -> Result<Snapshot, StoreError> {
        let diff_id = parse_sha256(diff_id)?;
        let parent = parents.last().map(|p| &p.chain_id);
        let chain = chain_id(parent, &diff_id);
        if let Some(snapshot) = self.find_snapshot(&chain)? {
            return Ok(snapshot);
        }
        let digest = parse_sha256(&layer.digest)?;
        let staging = self.staging("snapshot-")?;
        let files = staging.path().join(FS_DIR);
        fs::create_dir(&files).at(&files)?;
        self.apply_blob(&digest, &diff_id, parents, &files)?;
        crate::fault::point("snapshot.unpacked");
        let record = SnapshotRecord {
            chain_id: chain.to_string(),
            parent: parent.map(ToString::to_string),
            diff_id: diff_id.to_string(),
            layer: digest.to_string(),
        };
        self.place_snapshot(staging, &chain, &record)
    }

    /// The snapshots of an image's layers, base first, made as needed.
    /// Fails when the config does not list one `diff_id` per layer (an
    /// image would otherwise silently lack the layers past the shorter
    /// list); an error names the layer it concerns.
    pub fn snapshots(
        &self,
        layers: &[Descriptor],
        diff_ids: &[String],
    ) -> Result<Vec<Snapshot>, StoreError> {
        if layers.len() != diff_ids.len() {
            return Err(StoreError::InvalidDocument {
                what: "image".to_owned(),
                reason: format!(
                    "the manifest has {} layers but the config {} diff_ids",
                    layers.len(),
                    diff_ids.len()
                ),
            });
        }
        let mut chain: Vec<Snapshot> = Vec::with_capacity(layers.len());
        for (layer, diff_id) in layers.iter().zip(diff_ids) {
            let snapshot =
                self.snapshot(&chain, layer, diff_id)
                    .map_err(|source| StoreError::Snapshot {
                        layer: layer.digest.clone(),
                        source: Box::new(source),
                    })?;
            chain.push(snapshot);
        }
        Ok(chain)
    }

    /// Makes `upper` (a directory on the store's file system holding layer
    /// `layer` applied on `parents`, such as a build step's overlay upper
    /// directory, which was packed into that layer) the snapshot of the
    /// chain, unless it exists already (then `upper` is left alone).
    pub fn commit_snapshot(
        &self,
        parents: &[Snapshot],
        upper: &Path,
        layer: &Descriptor,
        diff_id: &Digest,
    ) -> Result<Snapshot, StoreError> {
        let parent = parents.last().map(|p| &p.chain_id);
        let chain = chain_id(parent, diff_id);
        if let Some(snapshot) = self.find_snapshot(&chain)? {
            return Ok(snapshot);
        }
        let staging = self.staging("snapshot-")?;
        let files = staging.path().join(FS_DIR);
        fs::rename(upper, &files).at(upper)?;
        let record = SnapshotRecord {
            chain_id: chain.to_string(),
            parent: parent.map(ToString::to_string),
            diff_id: diff_id.to_string(),
            layer: parse_sha256(&layer.digest)?.to_string(),
        };
        self.place_snapshot(staging, &chain, &record)
    }

    /// A new directory in `tmp/`, removed on drop.
    fn staging(&self, prefix: &str) -> Result<tempfile::TempDir, StoreError> {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(self.tmp_dir())
            .at(self.tmp_dir())
    }

    /// Decompresses layer blob `digest` and applies it on `parents` into
    /// `dest`, checking the blob's digest and the `diff_id`.
    fn apply_blob(
        &self,
        digest: &Digest,
        diff_id: &Digest,
        parents: &[Snapshot],
        dest: &Path,
    ) -> Result<(), StoreError> {
        let mut blob = self.blobs().open(digest)?;
        apply_compressed(&mut blob, digest, diff_id, parents, dest)?;
        io::copy(&mut blob, &mut io::sink()).map_err(|e| blob.error(e))?;
        Ok(())
    }

    /// The snapshot of `layer` on `parents` made from its compressed bytes
    /// as they arrive (a pull streams the download through here while it
    /// is written to the blob store): decompressed, applied in `tmp/` and
    /// its `diff_id` checked, but not placed: the caller places it with
    /// [`Self::place_prepared`] only once the blob's own digest is
    /// verified. Reads `blob` to its end. An existing snapshot is returned
    /// as it is (and `blob` not read).
    pub fn prepare_snapshot(
        &self,
        parents: &[Snapshot],
        layer: &Descriptor,
        diff_id: &str,
        blob: &mut dyn Read,
    ) -> Result<Prepared, StoreError> {
        let diff_id = parse_sha256(diff_id)?;
        let parent = parents.last().map(|p| &p.chain_id);
        let chain = chain_id(parent, &diff_id);
        if let Some(snapshot) = self.find_snapshot(&chain)? {
            return Ok(Prepared::Existing(snapshot));
        }
        let digest = parse_sha256(&layer.digest)?;
        let staging = self.staging("snapshot-")?;
        let files = staging.path().join(FS_DIR);
        fs::create_dir(&files).at(&files)?;
        apply_compressed(blob, &digest, &diff_id, parents, &files)?;
        io::copy(blob, &mut io::sink()).map_err(|e| {
            StoreError::Archive(format!("cannot read the rest of layer {digest}: {e}"))
        })?;
        Ok(Prepared::New(PreparedSnapshot {
            staging,
            record: SnapshotRecord {
                chain_id: chain.to_string(),
                parent: parent.map(ToString::to_string),
                diff_id: diff_id.to_string(),
                layer: digest.to_string(),
            },
            chain,
        }))
    }

    /// Puts a prepared snapshot in place.
    pub fn place_prepared(&self, prepared: Prepared) -> Result<Snapshot, StoreError> {
        match prepared {
            Prepared::Existing(snapshot) => Ok(snapshot),
            Prepared::New(new) => self.place_snapshot(new.staging, &new.chain, &new.record),
        }
    }

    /// Writes the completion record into `staging` (which holds `fs/`) and
    /// renames it into place as the snapshot of `chain`.
    fn place_snapshot(
        &self,
        staging: tempfile::TempDir,
        chain: &Digest,
        record: &SnapshotRecord,
    ) -> Result<Snapshot, StoreError> {
        let record_path = staging.path().join(RECORD_FILE);
        let bytes = serde_json::to_vec(record).map_err(|source| StoreError::Json {
            what: record_path.display().to_string(),
            source,
        })?;
        fs::write(&record_path, bytes).at(&record_path)?;
        let target = self.snapshot_dir(chain);
        // From here on a leftover is garbage collection's (tmp/ is emptied).
        let staged = staging.keep();
        match fs::rename(&staged, &target) {
            Ok(()) => {
                crate::fault::point("snapshot.committed");
                Ok(Snapshot {
                    chain_id: chain.clone(),
                    path: target.join(FS_DIR),
                })
            }
            // Another process made the same snapshot first.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {
                let _ = remove_tree(&staged);
                self.find_snapshot(chain)?
                    .ok_or_else(|| StoreError::io(&target, e))
            }
            Err(e) => Err(StoreError::io(&target, e)),
        }
    }

    /// Moves a snapshot directory out of `snapshots/` into `tmp/`, where
    /// garbage collection deletes it (it may be in use as an overlay lower
    /// right now; a mounted overlay keeps it whatever its name).
    fn move_aside(&self, dir: &Path) -> Result<(), StoreError> {
        let aside = self.staging("moved-snapshot-")?.keep();
        let name = dir.file_name().unwrap_or_default();
        match fs::rename(dir, aside.join(name)) {
            Ok(()) => Ok(()),
            // Moved by another process meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(dir, e)),
        }
    }

    /// `system check` of the snapshots: each must be complete and hold
    /// exactly what its layer applied on its parents gives (checked by
    /// applying the layer again in `tmp/` and comparing type, mode, owner,
    /// size, content, link target, device number and opaque mark of every
    /// path). A snapshot that is not is moved aside, so that its next use
    /// makes it again from its layer. Parents are checked before their
    /// children; a child of a missing or damaged parent is not checked.
    pub(crate) fn check_snapshots(&self) -> Result<Vec<Problem>, StoreError> {
        let mut problems = Vec::new();
        let dir = self.snapshots_dir();
        let mut records: BTreeMap<String, SnapshotRecord> = BTreeMap::new();
        let mut names: Vec<String> = Vec::new();
        // Only the snapshots an image or a build record uses are checked:
        // the others are garbage for the next collection (one interrupted
        // may have lost its blob or its parent already).
        // When the images themselves are broken (reported elsewhere by the
        // check), every snapshot is checked.
        let used = self.mark(|_| true).ok().map(|marks| marks.snapshots);
        for entry in fs::read_dir(&dir).at(&dir)? {
            let name = entry.at(&dir)?.file_name().to_string_lossy().into_owned();
            if used.as_ref().is_none_or(|used| used.contains(&name)) {
                names.push(name);
            }
        }
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let subject = format!("snapshot {name}");
            match Self::complete_record(&path, &name) {
                Ok(record) => {
                    records.insert(name, record);
                }
                Err(Unusable::Missing) => {}
                Err(Unusable::Unreadable(e)) => problems.push(Problem {
                    subject,
                    problem: format!("cannot be read: {e}"),
                }),
                Err(Unusable::Incomplete(why)) => {
                    self.move_aside(&path)?;
                    problems.push(Problem {
                        subject,
                        problem: format!("{why} (moved aside; made again when next used)"),
                    });
                }
            }
        }
        let depth = |hex: &str| {
            let mut depth = 0;
            let mut at = records.get(hex).and_then(|r| r.parent.clone());
            while let Some(parent) = at {
                depth += 1;
                if depth > records.len() {
                    break;
                }
                at = records
                    .get(parent.trim_start_matches("sha256:"))
                    .and_then(|r| r.parent.clone());
            }
            depth
        };
        let mut order: Vec<(usize, &String)> = records.keys().map(|k| (depth(k), k)).collect();
        order.sort();
        let mut sound: BTreeMap<&str, Snapshot> = BTreeMap::new();
        for (_, hex) in order {
            let Some(record) = records.get(hex) else {
                continue;
            };
            let subject = format!("snapshot {hex}");
            let mut parents = Vec::new();
            let mut at = record.parent.clone();
            let mut missing = None;
            while let Some(parent) = at.take() {
                let key = parent.trim_start_matches("sha256:");
                if let (Some(snapshot), Some(parent_record)) = (sound.get(key), records.get(key)) {
                    parents.push(snapshot.clone());
                    at.clone_from(&parent_record.parent);
                } else {
                    missing = Some(parent);
                    break;
                }
            }
            if let Some(parent) = missing {
                // A build record keeps its snapshot but not the parents
                // (made again from the base image when a build needs them),
                // and a damaged parent is reported itself: the child can
                // only be checked on top of its parents.
                log::debug!("snapshot {hex}: not checked, its parent {parent} is not there");
                continue;
            }
            parents.reverse();
            let path = dir.join(hex);
            match self.compare_snapshot(record, &parents, &path.join(FS_DIR)) {
                Ok(differences) if differences.is_empty() => {
                    if let Ok(chain) = parse_sha256(&record.chain_id) {
                        sound.insert(
                            hex.as_str(),
                            Snapshot {
                                chain_id: chain,
                                path: path.join(FS_DIR),
                            },
                        );
                    }
                }
                Ok(differences) => {
                    self.move_aside(&path)?;
                    for difference in differences {
                        problems.push(Problem {
                            subject: subject.clone(),
                            problem: difference,
                        });
                    }
                    problems.push(Problem {
                        subject,
                        problem: format!(
                            "differs from layer {} (moved aside; made again when next used)",
                            record.layer
                        ),
                    });
                }
                Err(e) => problems.push(Problem {
                    subject,
                    problem: format!("cannot be checked: {e}"),
                }),
            }
        }
        Ok(problems)
    }

    /// Applies `record`'s layer on `parents` in `tmp/` and compares the
    /// result with `files`; returns the differences.
    fn compare_snapshot(
        &self,
        record: &SnapshotRecord,
        parents: &[Snapshot],
        files: &Path,
    ) -> Result<Vec<String>, StoreError> {
        let digest = parse_sha256(&record.layer)?;
        let diff_id = parse_sha256(&record.diff_id)?;
        let staging = self.staging("check-")?;
        let expected = staging.path().join(FS_DIR);
        fs::create_dir(&expected).at(&expected)?;
        let result = self
            .apply_blob(&digest, &diff_id, parents, &expected)
            .and_then(|()| compare_trees(&expected, files));
        // Read-only directories would keep the TempDir's own removal from
        // finishing.
        let staged = staging.keep();
        remove_tree(&staged)?;
        result
    }
}

fn read_record(path: &Path) -> Result<SnapshotRecord, String> {
    let mut file = fs::File::open(path).map_err(|e| format!("has no readable record: {e}"))?;
    let mut bytes = Vec::new();
    file.by_ref()
        .take(MAX_RECORD_SIZE)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("has no readable record: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("has an invalid record: {e}"))
}

/// What `system check` compares of one path.
#[derive(Debug, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    mode: u32,
    owner: (u32, u32),
    size: u64,
    device: u64,
    link: Option<PathBuf>,
    opaque: bool,
}

/// A tree's nodes and their paths, by path components (which orders them
/// as a sorted depth-first walk does).
type Nodes = BTreeMap<Vec<Vec<u8>>, (Node, PathBuf)>;

/// The nodes of a tree, without the root and without sockets (which no
/// layer holds).
fn tree_nodes(root: &Path) -> Result<Nodes, StoreError> {
    use std::os::unix::ffi::OsStrExt as _;
    let mut nodes = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1).follow_links(false) {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_owned();
            StoreError::io(path, io::Error::from(e))
        })?;
        let meta = entry
            .metadata()
            .map_err(|e| StoreError::io(entry.path(), io::Error::from(e)))?;
        let ft = meta.file_type();
        if ft.is_socket() {
            continue;
        }
        let kind = if ft.is_dir() {
            "directory"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_char_device() && meta.rdev() == 0 {
            "whiteout"
        } else if ft.is_char_device() {
            "character device"
        } else if ft.is_block_device() {
            "block device"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "file"
        };
        let link = if ft.is_symlink() {
            Some(fs::read_link(entry.path()).at(entry.path())?)
        } else {
            None
        };
        let opaque = ft.is_dir()
            && [OVERLAY_OPAQUE_XATTR, OVERLAY_USER_OPAQUE_XATTR]
                .iter()
                .any(|name| matches!(xattr::get(entry.path(), name), Ok(Some(v)) if v == b"y"));
        let node = Node {
            kind,
            mode: if ft.is_symlink() {
                0
            } else {
                meta.mode() & 0o7777
            },
            owner: (meta.uid(), meta.gid()),
            size: if ft.is_file() { meta.len() } else { 0 },
            device: if ft.is_char_device() || ft.is_block_device() {
                meta.rdev()
            } else {
                0
            },
            link,
            opaque,
        };
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let key = rel
            .components()
            .map(|c| c.as_os_str().as_bytes().to_vec())
            .collect();
        nodes.insert(key, (node, entry.path().to_owned()));
    }
    Ok(nodes)
}

/// The differences of tree `actual` from tree `expected`, at most
/// [`MAX_DIFFERENCES`] (and a count of the rest).
fn compare_trees(expected: &Path, actual: &Path) -> Result<Vec<String>, StoreError> {
    let want = tree_nodes(expected)?;
    let have = tree_nodes(actual)?;
    let shown = |key: &Vec<Vec<u8>>| {
        key.iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("/")
    };
    let mut differences = Vec::new();
    // Under a path whose type differs, the rest is noise.
    let mut skip: Option<Vec<Vec<u8>>> = None;
    let keys: BTreeSet<&Vec<Vec<u8>>> = want.keys().chain(have.keys()).collect();
    for key in keys {
        if skip.as_ref().is_some_and(|s| key.starts_with(s)) {
            continue;
        }
        let path = shown(key);
        let difference = match (want.get(key), have.get(key)) {
            (Some(_), None) => Some(format!("lacks {path}")),
            (None, Some(_)) => Some(format!("has {path}, which its layer does not give")),
            (Some((w, wpath)), Some((h, hpath))) => {
                if w.kind == h.kind {
                    node_difference(&path, w, h, wpath, hpath)?
                } else {
                    skip = Some(key.clone());
                    Some(format!(
                        "{path} is a {}, its layer gives a {}",
                        h.kind, w.kind
                    ))
                }
            }
            (None, None) => None,
        };
        differences.extend(difference);
    }
    if differences.len() > MAX_DIFFERENCES {
        let more = differences.len() - MAX_DIFFERENCES;
        differences.truncate(MAX_DIFFERENCES);
        differences.push(format!("and {more} more differences"));
    }
    Ok(differences)
}

/// How node `have` differs from `want` (same kind), if it does.
fn node_difference(
    path: &str,
    want: &Node,
    have: &Node,
    want_path: &Path,
    have_path: &Path,
) -> Result<Option<String>, StoreError> {
    let field = if want.mode != have.mode {
        format!("mode {:o} instead of {:o}", have.mode, want.mode)
    } else if want.owner != have.owner {
        format!(
            "owner {}:{} instead of {}:{}",
            have.owner.0, have.owner.1, want.owner.0, want.owner.1
        )
    } else if want.size != have.size {
        format!("size {} instead of {}", have.size, want.size)
    } else if want.link != have.link {
        format!(
            "link target {} instead of {}",
            have.link.as_deref().unwrap_or(Path::new("")).display(),
            want.link.as_deref().unwrap_or(Path::new("")).display()
        )
    } else if want.device != have.device {
        format!("device {:#x} instead of {:#x}", have.device, want.device)
    } else if want.opaque != have.opaque {
        if have.opaque {
            "opaque, which its layer does not make it".to_owned()
        } else {
            "not opaque, which its layer makes it".to_owned()
        }
    } else if want.kind == "file" && !same_content(want_path, have_path)? {
        "content differs".to_owned()
    } else {
        return Ok(None);
    };
    Ok(Some(format!("{path}: {field}")))
}

/// Whether two files of the same size hold the same bytes.
fn same_content(a: &Path, b: &Path) -> Result<bool, StoreError> {
    let mut a_file = fs::File::open(a).at(a)?;
    let mut b_file = fs::File::open(b).at(b)?;
    let mut a_buf = vec![0u8; 1 << 16];
    let mut b_buf = vec![0u8; 1 << 16];
    loop {
        let n = read_full(&mut a_file, &mut a_buf).at(a)?;
        let m = read_full(&mut b_file, &mut b_buf).at(b)?;
        if a_buf.get(..n) != b_buf.get(..m) {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(file: &mut fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..) {
        if rest.is_empty() {
            break;
        }
        match file.read(rest)? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_without_one_diff_id_per_layer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let layer = Descriptor::new(
            "application/vnd.oci.image.layer.v1.tar",
            &crate::digest::digest_bytes(b"x").to_string(),
            1,
        );
        assert_eq!(
            store.snapshots(&[layer], &[]).unwrap_err().to_string(),
            "invalid image: the manifest has 1 layers but the config 0 diff_ids"
        );
    }
}
