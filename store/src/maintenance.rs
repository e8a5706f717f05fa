//! Garbage collection, integrity checks and disk usage.

use std::collections::BTreeSet;
use std::fs;

use kiln_reference::Digest;

use crate::digest::{chain_id, parse_sha256};
use crate::error::{IoContext, StoreError};
use crate::spec::{Index, Manifest, is_index};
use crate::store::{Store, disk_usage};

/// What a garbage collection removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Blobs deleted.
    pub blobs: Vec<Digest>,
    /// Snapshot directories deleted (by chain id hex).
    pub snapshots: Vec<String>,
    /// Bytes freed.
    pub reclaimed: u64,
}

/// One problem `kiln system check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is broken (a blob, a reference, a file).
    pub subject: String,
    /// How.
    pub problem: String,
}

/// Space used, for `kiln system df`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DiskUsage {
    /// Images (distinct manifests), and how many have a tag.
    pub images: (usize, usize),
    /// Bytes of blobs that images reference, and of those only untagged
    /// images reference.
    pub image_bytes: (u64, u64),
    /// Distinct layer blobs and their bytes.
    pub layers: (usize, u64),
    /// Snapshots, how many a present image uses, their bytes, and the
    /// bytes of unused ones.
    pub snapshots: (usize, usize, u64, u64),
    /// Build-cache records and bytes.
    pub cache: (usize, u64),
    /// Blobs nothing references, and their bytes.
    pub orphans: (usize, u64),
}

/// The blobs and snapshots reachable from some roots.
#[derive(Debug, Default)]
struct Marks {
    blobs: BTreeSet<Digest>,
    /// Snapshot names: chain id hex.
    snapshots: BTreeSet<String>,
    layers: BTreeSet<Digest>,
}

impl Store {
    /// Marks everything reachable from index entries that `keep` accepts,
    /// plus the blobs named in build-cache records.
    fn mark(&self, keep: impl Fn(&crate::spec::Descriptor) -> bool) -> Result<Marks, StoreError> {
        let mut marks = Marks::default();
        let index = self.index()?;
        for entry in index.manifests.iter().filter(|d| keep(d)) {
            self.mark_descriptor(&entry.media_type, &entry.digest, &mut marks, 0)?;
        }
        // A digest in a record may be a layer blob or a chain id; keeping
        // both the blob and the snapshot of that name spares a cache hit
        // from unpacking the layer again.
        for digest in self.cache_blob_references()? {
            marks.snapshots.insert(digest.encoded().to_owned());
            marks.blobs.insert(digest);
        }
        // The parents of a record's snapshot are not kept for it: without
        // an image that has their blobs they could not be used (nor made
        // again, nor checked), and with one they are made again from it.
        Ok(marks)
    }

    fn mark_descriptor(
        &self,
        media_type: &str,
        digest: &str,
        marks: &mut Marks,
        depth: usize,
    ) -> Result<(), StoreError> {
        let digest = parse_sha256(digest)?;
        if depth > 8 || !marks.blobs.insert(digest.clone()) {
            return Ok(());
        }
        if is_index(media_type) {
            let (index, _): (Index, _) = self.read_json(&digest)?;
            for child in &index.manifests {
                self.mark_descriptor(&child.media_type, &child.digest, marks, depth + 1)?;
            }
            return Ok(());
        }
        let (manifest, _): (Manifest, _) = self.read_json(&digest)?;
        let config = parse_sha256(&manifest.config.digest)?;
        let (config_doc, _): (crate::spec::ImageConfig, _) = self.read_json(&config)?;
        marks.blobs.insert(config);
        for layer in &manifest.layers {
            let layer = parse_sha256(&layer.digest)?;
            marks.layers.insert(layer.clone());
            marks.blobs.insert(layer);
        }
        // The image's snapshots are named by the chain ids of its layers.
        let mut chain: Option<Digest> = None;
        for diff_id in &config_doc.rootfs.diff_ids {
            let Ok(diff_id) = parse_sha256(diff_id) else {
                break;
            };
            let id = chain_id(chain.as_ref(), &diff_id);
            marks.snapshots.insert(id.encoded().to_owned());
            chain = Some(id);
        }
        Ok(())
    }

    /// Digests that build-cache records keep alive: every `sha256:` digest
    /// string in a `cache/*.json` file. The builder owns the record format;
    /// the collector only needs to know which blobs it must not delete.
    fn cache_blob_references(&self) -> Result<Vec<Digest>, StoreError> {
        let mut digests = Vec::new();
        let dir = self.cache_dir();
        for entry in walkdir::WalkDir::new(&dir)
            .into_iter()
            .filter_map(Result::ok)
        {
            if entry.file_type().is_file() && entry.path().extension().is_some_and(|e| e == "json")
            {
                let text = fs::read_to_string(entry.path()).at(entry.path())?;
                let mut rest = text.as_str();
                while let Some(at) = rest.find("sha256:") {
                    let candidate = rest.get(at..at + 71).unwrap_or("");
                    if let Ok(digest) = parse_sha256(candidate) {
                        digests.push(digest);
                    }
                    rest = rest.get(at + 7..).unwrap_or("");
                }
            }
        }
        Ok(digests)
    }

    /// Deletes every blob and snapshot that no index entry and no cache
    /// record reaches, and clears abandoned staging files. Holds the store
    /// exclusively meanwhile.
    pub fn collect_garbage(&self) -> Result<SweepReport, StoreError> {
        self.with_exclusive(|| self.sweep())
    }

    /// Collects garbage only if no other kiln process has the store open
    /// (`rmi` uses this so that it never waits behind a long `load`; what
    /// it leaves is collected by a later `prune` or `rmi`).
    pub fn collect_garbage_if_idle(&self) -> Result<Option<SweepReport>, StoreError> {
        self.try_with_exclusive(|| self.sweep())
    }

    fn sweep(&self) -> Result<SweepReport, StoreError> {
        {
            let marks = self.mark(|_| true)?;
            let mut report = SweepReport::default();
            for digest in self.blobs().list()? {
                if !marks.blobs.contains(&digest) {
                    report.reclaimed += self.blobs().size(&digest).unwrap_or(0);
                    self.blobs().remove(&digest)?;
                    report.blobs.push(digest);
                }
            }
            let snapshots = self.snapshots_dir();
            for entry in fs::read_dir(&snapshots).at(&snapshots)? {
                let entry = entry.at(&snapshots)?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if !marks.snapshots.contains(&name) {
                    report.reclaimed += disk_usage(&entry.path());
                    remove_tree(&entry.path())?;
                    report.snapshots.push(name);
                }
            }
            let meta = self.root().join("meta/diff");
            for entry in fs::read_dir(&meta).at(&meta)? {
                let entry = entry.at(&meta)?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let live = parse_sha256(&format!("sha256:{name}"))
                    .is_ok_and(|digest| marks.blobs.contains(&digest));
                if !live {
                    remove_tree(&entry.path())?;
                }
            }
            // Nobody else has the store open: whatever is in tmp/ was left
            // by a killed process.
            let tmp = self.tmp_dir();
            for entry in fs::read_dir(&tmp).at(&tmp)? {
                let entry = entry.at(&tmp)?;
                report.reclaimed += disk_usage(&entry.path());
                remove_tree(&entry.path())?;
            }
            Ok(report)
        }
    }

    /// Verifies every blob against its digest, every index entry's
    /// manifest, config and layers, and every snapshot against its layer
    /// (see [`Store::check_snapshots`]); returns what is broken.
    pub fn check(&self) -> Result<Vec<Problem>, StoreError> {
        let mut problems = Vec::new();
        let mut verified: BTreeSet<Digest> = BTreeSet::new();
        for digest in self.blobs().list()? {
            let mut reader = self.blobs().open(&digest)?;
            match std::io::copy(&mut reader, &mut std::io::sink()) {
                Ok(_) => {
                    verified.insert(digest);
                }
                Err(e) => problems.push(Problem {
                    subject: format!("blob {digest}"),
                    problem: reader.error(e).to_string(),
                }),
            }
        }
        let index = match self.index() {
            Ok(index) => index,
            Err(e) => {
                problems.push(Problem {
                    subject: "index.json".to_owned(),
                    problem: e.to_string(),
                });
                return Ok(problems);
            }
        };
        for entry in &index.manifests {
            let subject = entry
                .annotation(crate::spec::ANNOTATION_REF_NAME)
                .map_or_else(
                    || format!("untagged image {}", entry.digest),
                    |name| format!("image {name}"),
                );
            let mut marks = Marks::default();
            if let Err(e) = self.mark_descriptor(&entry.media_type, &entry.digest, &mut marks, 0) {
                problems.push(Problem {
                    subject,
                    problem: e.to_string(),
                });
                continue;
            }
            for digest in &marks.blobs {
                if !self.blobs().contains(digest) {
                    problems.push(Problem {
                        subject: subject.clone(),
                        problem: format!("blob {digest} is missing"),
                    });
                } else if !verified.contains(digest) {
                    problems.push(Problem {
                        subject: subject.clone(),
                        problem: format!("blob {digest} is corrupt"),
                    });
                }
            }
        }
        problems.extend(self.check_snapshots()?);
        Ok(problems)
    }

    /// Space used by images, layers, snapshots and the build cache.
    pub fn disk_usage(&self) -> Result<DiskUsage, StoreError> {
        let index = self.index()?;
        let tagged = self.mark(|d| d.annotation(crate::spec::ANNOTATION_REF_NAME).is_some())?;
        let all = self.mark(|_| true)?;
        let mut usage = DiskUsage::default();
        let images: BTreeSet<&str> = index.manifests.iter().map(|d| d.digest.as_str()).collect();
        let tagged_images: BTreeSet<&str> = index
            .manifests
            .iter()
            .filter(|d| d.annotation(crate::spec::ANNOTATION_REF_NAME).is_some())
            .map(|d| d.digest.as_str())
            .collect();
        usage.images = (images.len(), tagged_images.len());
        for digest in self.blobs().list()? {
            let size = self.blobs().size(&digest)?;
            if all.blobs.contains(&digest) {
                usage.image_bytes.0 += size;
                if !tagged.blobs.contains(&digest) {
                    usage.image_bytes.1 += size;
                }
            } else {
                usage.orphans.0 += 1;
                usage.orphans.1 += size;
            }
            if all.layers.contains(&digest) {
                usage.layers.0 += 1;
                usage.layers.1 += size;
            }
        }
        let snapshots = self.snapshots_dir();
        for entry in fs::read_dir(&snapshots).at(&snapshots)? {
            let entry = entry.at(&snapshots)?;
            let size = disk_usage(&entry.path());
            usage.snapshots.0 += 1;
            usage.snapshots.2 += size;
            if all
                .snapshots
                .contains(&*entry.file_name().to_string_lossy())
            {
                usage.snapshots.1 += 1;
            } else {
                usage.snapshots.3 += size;
            }
        }
        let cache = self.cache_dir();
        usage.cache.0 = walkdir::WalkDir::new(&cache)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .count();
        usage.cache.1 = disk_usage(&cache);
        Ok(usage)
    }
}

/// Removes a file or directory tree. Snapshot trees may hold read-only
/// directories, so permissions are opened up first.
pub(crate) fn remove_tree(path: &std::path::Path) -> Result<(), StoreError> {
    let meta = fs::symlink_metadata(path).at(path)?;
    if meta.is_dir() {
        for entry in walkdir::WalkDir::new(path)
            .into_iter()
            .filter_map(Result::ok)
        {
            if entry.file_type().is_dir() {
                use std::os::unix::fs::PermissionsExt as _;
                let _ = fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o700));
            }
        }
        fs::remove_dir_all(path).at(path)
    } else {
        fs::remove_file(path).at(path)
    }
}
