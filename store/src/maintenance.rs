//! Garbage collection, integrity checks and disk usage.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use kiln_reference::Digest;

use crate::blobs::sync_dir;
use crate::digest::{chain_id, parse_sha256};
use crate::error::{IoContext, StoreError};
use crate::fault;
use crate::spec::{Index, Manifest, is_index};
use crate::store::{OWNER_DIR_PREFIX, Store, disk_usage, remove_tree};
use crate::temp::{Owner, TempUsage, is_abandoned};

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
    /// `RUN --mount=type=cache` directories and their bytes.
    pub cache_mounts: (usize, u64),
    /// Contexts' stat caches and their bytes.
    pub stat_caches: (usize, u64),
    /// Volumes, how many running containers hold, their bytes, and the
    /// bytes of those none holds.
    pub volumes: (usize, usize, u64, u64),
    /// Temporary files of running and of dead processes.
    pub temporaries: Temporaries,
    /// Containers, how many run, the bytes of their directories (writable
    /// layers and logs), and the bytes of those that do not run.
    pub containers: (usize, usize, u64, u64),
}

/// The entries of `tmp/` (other than the caller's own), by owner.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Temporaries {
    /// Staging directories of running kiln processes.
    pub live: TempUsage,
    /// Staging directories of processes that are gone: garbage, which the
    /// next command (any `Store::open`) removes.
    pub abandoned: TempUsage,
    /// Entries without an owner in their name (older kiln versions):
    /// removed by the next garbage collection (`prune`, `rmi`).
    pub unowned: TempUsage,
}

/// One entry of a store directory that builds reuse and prune removes
/// when idle: a persistent cache mount (`cache-mounts/<id hex>`) or a
/// context's stat cache (`statcache/<context digest>.bin`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedEntry {
    /// Its name in its directory.
    pub name: String,
    /// When a build last used it (its mtime, which builds keep current).
    pub last_used: SystemTime,
    /// Bytes of its files.
    pub bytes: u64,
}

/// The blobs and snapshots reachable from some roots.
#[derive(Debug, Default)]
pub(crate) struct Marks {
    blobs: BTreeSet<Digest>,
    /// Snapshot names: chain id hex.
    pub(crate) snapshots: BTreeSet<String>,
    layers: BTreeSet<Digest>,
}

impl Store {
    /// Marks everything reachable from index entries that `keep` accepts,
    /// plus the blobs named in build-cache records.
    pub(crate) fn mark(
        &self,
        keep: impl Fn(&crate::spec::Descriptor) -> bool,
    ) -> Result<Marks, StoreError> {
        let mut marks = Marks::default();
        let index = self.index()?;
        for entry in index.manifests.iter().filter(|d| keep(d)) {
            self.mark_descriptor(&entry.media_type, &entry.digest, &mut marks, 0)?;
        }
        // A container's image stays as long as the container, even when
        // its name was removed (`rmi -f`): its snapshots are its layers.
        for digest in self.container_manifests()? {
            // A container whose image is broken must not stop the
            // collection; `system check` reports it.
            let _ = self.mark_descriptor(crate::spec::OCI_MANIFEST, &digest, &mut marks, 0);
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

    pub(crate) fn mark_descriptor(
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

    /// Removes what nothing reaches. Each removal is atomic: a blob is one
    /// unlink; a snapshot directory is first renamed out of `snapshots/`
    /// into this process's staging directory (one rename; the directory is
    /// synced after the renames) and only then deleted, so a kill at any
    /// instant leaves either the whole snapshot or none of it in
    /// `snapshots/`, and the rest in `tmp/` as a dead process's garbage.
    fn sweep(&self) -> Result<SweepReport, StoreError> {
        // Address leases whose holder is gone are garbage too.
        crate::networks::forget_dead(self.root())?;
        let marks = self.mark(|_| true)?;
        let mut report = SweepReport::default();
        let snapshots = self.snapshots_dir();
        let mut doomed = Vec::new();
        for entry in fs::read_dir(&snapshots).at(&snapshots)? {
            let entry = entry.at(&snapshots)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !marks.snapshots.contains(&name) {
                doomed.push(name);
            }
        }
        let mut renamed = Vec::new();
        for name in doomed {
            if let Some(aside) = self.rename_aside(&snapshots.join(&name), "gc-snapshot-")? {
                fault::point("gc.snapshot.renamed");
                renamed.push((name, aside));
            }
        }
        if !renamed.is_empty() {
            sync_dir(&snapshots)?;
        }
        for (name, aside) in renamed {
            report.reclaimed += disk_usage(&aside);
            remove_tree(&aside)?;
            fault::point("gc.snapshot.removed");
            report.snapshots.push(name);
        }
        // Blobs after snapshots: a kill between the two never leaves a
        // snapshot whose layer is gone.
        for digest in self.blobs().list()? {
            if !marks.blobs.contains(&digest) {
                report.reclaimed += self.blobs().size(&digest).unwrap_or(0);
                self.blobs().remove(&digest)?;
                fault::point("gc.blob.removed");
                report.blobs.push(digest);
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
                fault::point("gc.meta.removed");
            }
        }
        // Nobody else has the store open: whatever is in tmp/ (but this
        // process's own staging) was left by a killed process.
        report.reclaimed += self.sweep_tmp(true)?.bytes;
        Ok(report)
    }

    /// Renames `path` into this process's staging directory (so that it
    /// disappears from where it was in one step); `None` when it is
    /// already gone (another collector took it).
    fn rename_aside(&self, path: &Path, prefix: &str) -> Result<Option<PathBuf>, StoreError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let aside = self.tmp_dir().join(format!("{prefix}{name}"));
        match fs::rename(path, &aside) {
            Ok(()) => Ok(Some(aside)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(path, e)),
        }
    }

    /// Removes the entries of `tmp/` whose owner is gone (and, with
    /// `everything`, i.e. under the exclusive lock, every entry but this
    /// process's own staging directory). Each is first renamed into this
    /// process's staging directory, so two sweepers never remove the same
    /// tree and a sweeper killed midway leaves only its own garbage.
    pub(crate) fn sweep_tmp(&self, everything: bool) -> Result<TempUsage, StoreError> {
        let mut removed = TempUsage::default();
        let mut failed = None;
        let tmp = self.tmp_root();
        let own = self.tmp_dir();
        for entry in fs::read_dir(&tmp).at(&tmp)? {
            let entry = entry.at(&tmp)?;
            let path = entry.path();
            if path == own {
                continue;
            }
            let garbage = everything
                || entry
                    .file_name()
                    .to_str()
                    .and_then(owner_of)
                    .is_some_and(|owner| is_abandoned(owner, &path));
            if !garbage {
                continue;
            }
            let bytes = disk_usage(&path);
            let claimed = self.rename_aside(&path, "swept-");
            let removal = claimed.and_then(|aside| {
                let Some(aside) = aside else {
                    return Ok(false);
                };
                fault::point("tmp.claimed");
                remove_tree(&aside)?;
                fault::point("tmp.removed");
                Ok(true)
            });
            // One entry that cannot be removed (a mount left in it, say)
            // does not keep the others.
            match removal {
                Ok(true) => removed.add(bytes),
                Ok(false) => {}
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }

    /// The entries of `tmp/` other than this process's, by owner.
    pub fn temporaries(&self) -> Result<Temporaries, StoreError> {
        let mut found = Temporaries::default();
        let tmp = self.tmp_root();
        let own = self.tmp_dir();
        for entry in fs::read_dir(&tmp).at(&tmp)? {
            let entry = entry.at(&tmp)?;
            let path = entry.path();
            if path == own {
                continue;
            }
            let bytes = disk_usage(&path);
            match entry.file_name().to_str().and_then(owner_of) {
                Some(owner) if is_abandoned(owner, &path) => found.abandoned.add(bytes),
                Some(_) => found.live.add(bytes),
                None => found.unowned.add(bytes),
            }
        }
        Ok(found)
    }

    /// The directory of a persistent cache mount (`RUN --mount=type=cache`),
    /// `cache-mounts/<id hex>`, made on first use with `mode` and owner
    /// `uid:gid` (see [`Store::cache_mount_with`]).
    pub fn cache_mount(
        &self,
        id: &Digest,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<PathBuf, StoreError> {
        use std::os::unix::fs::PermissionsExt as _;
        self.cache_mount_with(id, |dir| {
            fs::set_permissions(dir, fs::Permissions::from_mode(mode)).at(dir)?;
            std::os::unix::fs::chown(dir, Some(uid), Some(gid)).at(dir)
        })
    }

    /// The directory of a persistent cache mount, `cache-mounts/<id hex>`,
    /// made on first use by `init` (which gets an empty directory to fill
    /// and set up). It is made in the staging directory and renamed into
    /// place, so it never appears half made. Each use sets its mtime, which
    /// `kiln cache prune` reads as the last use.
    pub fn cache_mount_with<E: From<StoreError>>(
        &self,
        id: &Digest,
        init: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<PathBuf, E> {
        let target = self.cache_mounts_dir().join(id.encoded());
        if !target.is_dir() {
            let staged = tempfile::Builder::new()
                .prefix("cache-mount-")
                .tempdir_in(self.tmp_dir())
                .at(self.tmp_dir())?;
            let dir = staged.path().join("dir");
            fs::create_dir(&dir).at(&dir)?;
            init(&dir)?;
            match fs::rename(&dir, &target) {
                Ok(()) => fault::point("cache-mount.created"),
                // Another build made it first.
                Err(_) if target.is_dir() => {}
                Err(e) => return Err(StoreError::io(&target, e).into()),
            }
        }
        if let Err(e) = filetime::set_file_mtime(&target, filetime::FileTime::now()) {
            log::debug!("cannot mark {} as used: {e}", target.display());
        }
        Ok(target)
    }

    /// The lock file of cache mount `id` (under `locks/`), which RUN steps
    /// hold while they use it (`sharing=locked|private`).
    pub fn cache_mount_lock(&self, id: &Digest) -> PathBuf {
        self.root()
            .join("locks")
            .join(format!("cache-mount-{}.lock", id.encoded()))
    }

    /// Every cache-mount directory, least recently used first.
    pub fn cache_mounts(&self) -> Result<Vec<UsedEntry>, StoreError> {
        used_entries(&self.cache_mounts_dir())
    }

    /// Every context's stat cache, least recently used first.
    pub fn stat_caches(&self) -> Result<Vec<UsedEntry>, StoreError> {
        used_entries(&self.stat_cache_dir())
    }

    /// Removes the cache mounts `select` picks (it sees them least recently
    /// used first), while no other kiln process has the store open (a build
    /// may be using them). Each is renamed out of `cache-mounts/` first.
    pub fn remove_cache_mounts(
        &self,
        select: impl FnMut(&UsedEntry) -> bool,
    ) -> Result<Vec<UsedEntry>, StoreError> {
        self.remove_used_entries(&self.cache_mounts_dir(), select, "gc.cache-mount.renamed")
    }

    /// Removes the stat caches `select` picks, as
    /// [`Store::remove_cache_mounts`] does cache mounts (a build without
    /// its stat cache reads its context's files once more).
    pub fn remove_stat_caches(
        &self,
        select: impl FnMut(&UsedEntry) -> bool,
    ) -> Result<Vec<UsedEntry>, StoreError> {
        self.remove_used_entries(&self.stat_cache_dir(), select, "gc.stat-cache.renamed")
    }

    fn remove_used_entries(
        &self,
        dir: &Path,
        mut select: impl FnMut(&UsedEntry) -> bool,
        renamed: &'static str,
    ) -> Result<Vec<UsedEntry>, StoreError> {
        self.with_exclusive(|| {
            let mut removed = Vec::new();
            for entry in used_entries(dir)? {
                if !select(&entry) {
                    continue;
                }
                let path = dir.join(&entry.name);
                if let Some(aside) = self.rename_aside(&path, "gc-used-")? {
                    fault::point(renamed);
                    remove_tree(&aside)?;
                    removed.push(entry);
                }
            }
            Ok(removed)
        })
    }

    /// Verifies every blob against its digest, every index entry's
    /// manifest, config and layers, and every snapshot against its layer
    /// (see [`Store::check_snapshots`]); returns what is broken.
    pub fn check(&self) -> Result<Vec<Problem>, StoreError> {
        let mut problems = Vec::new();
        let mut verified: BTreeSet<Digest> = BTreeSet::new();
        for digest in self.blobs().list()? {
            let mut reader = self.blobs().open(&digest)?;
            match io::copy(&mut reader, &mut io::sink()) {
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
        for mount in self.cache_mounts()? {
            let path = self.cache_mounts_dir().join(&mount.name);
            let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
            let named = mount.name.len() == 64 && mount.name.bytes().all(|b| b.is_ascii_hexdigit());
            if !is_dir || !named {
                problems.push(Problem {
                    subject: format!("cache mount {}", mount.name),
                    problem: "not a cache-mount directory (expected a directory named by a sha256 hex digest)"
                        .to_owned(),
                });
            }
        }
        let volumes = self.volumes_dir();
        for entry in fs::read_dir(&volumes).at(&volumes)? {
            let name = entry
                .at(&volumes)?
                .file_name()
                .to_string_lossy()
                .into_owned();
            let problem = match self.volume(&name) {
                Ok(volume) if volume.mountpoint.is_dir() => continue,
                Ok(_) => "its _data directory is missing".to_owned(),
                Err(StoreError::NoSuchVolume(_)) => {
                    "not a volume (expected a valid name, volume.json and _data)".to_owned()
                }
                Err(e) => e.to_string(),
            };
            problems.push(Problem {
                subject: format!("volume {name}"),
                problem,
            });
        }
        problems.extend(self.check_snapshots()?);
        problems.extend(self.check_containers()?);
        problems.extend(crate::networks::check(self.root())?);
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
        for mount in self.cache_mounts()? {
            usage.cache_mounts.0 += 1;
            usage.cache_mounts.1 += mount.bytes;
        }
        for cache in self.stat_caches()? {
            usage.stat_caches.0 += 1;
            usage.stat_caches.1 += cache.bytes;
        }
        for volume in self.volumes()? {
            let bytes = disk_usage(&volume.mountpoint);
            usage.volumes.0 += 1;
            usage.volumes.2 += bytes;
            if self.volume_users(&volume.name)?.is_empty() {
                usage.volumes.3 += bytes;
            } else {
                usage.volumes.1 += 1;
            }
        }
        usage.temporaries = self.temporaries()?;
        for id in self.container_ids()? {
            let dir = self.container_dir(&id);
            let bytes = disk_usage(&dir);
            usage.containers.0 += 1;
            usage.containers.2 += bytes;
            let running = crate::containers::current_state(&dir)
                .is_ok_and(|s| matches!(s.status.as_str(), "running" | "restarting"));
            if running {
                usage.containers.1 += 1;
            } else {
                usage.containers.3 += bytes;
            }
        }
        Ok(usage)
    }
}

/// The entries of `dir`, least recently used first.
fn used_entries(dir: &Path) -> Result<Vec<UsedEntry>, StoreError> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let path = entry.path();
        let last_used = match fs::symlink_metadata(&path).and_then(|m| m.modified()) {
            Ok(time) => time,
            // Removed meanwhile by another command's prune.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::io(path, e)),
        };
        entries.push(UsedEntry {
            name: entry.file_name().to_string_lossy().into_owned(),
            last_used,
            bytes: disk_usage(&path),
        });
    }
    entries.sort_by(|a, b| a.last_used.cmp(&b.last_used).then(a.name.cmp(&b.name)));
    Ok(entries)
}

/// The owner a `tmp/` entry's name carries (`owner-<pid>-<start>-<n>`).
fn owner_of(name: &str) -> Option<Owner> {
    Owner::parse(name.strip_prefix(OWNER_DIR_PREFIX)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A staging directory as a process that is gone leaves it.
    fn dead_owner_dir(store: &Store, n: usize) -> PathBuf {
        let me = Owner::current();
        // This PID with another start time: the same PID, reused.
        let dir = store
            .tmp_root()
            .join(format!("owner-{}-{}-{n}", me.pid, me.start + 1));
        fs::create_dir_all(dir.join("build-x/upper")).unwrap();
        fs::write(dir.join("build-x/upper/f"), b"12345").unwrap();
        dir
    }

    #[test]
    fn opening_a_store_removes_only_the_staging_of_dead_processes() {
        let root = tempfile::tempdir().unwrap();
        let first = Store::open(root.path()).unwrap();
        let dead = dead_owner_dir(&first, 7);
        let unowned = first.tmp_root().join("blob-abc123");
        fs::write(&unowned, b"old kiln").unwrap();
        // A live process's directory: locked, whatever its name says.
        let locked = dead_owner_dir(&first, 8);
        let lock = fs::File::open(&locked).unwrap();
        lock.lock().unwrap();
        fs::write(first.tmp_dir().join("mine"), b"in use").unwrap();
        let found = first.temporaries().unwrap();
        assert_eq!(
            found.abandoned,
            TempUsage {
                entries: 1,
                bytes: 5
            }
        );
        assert_eq!(
            found.live,
            TempUsage {
                entries: 1,
                bytes: 5
            }
        );
        assert_eq!(
            found.unowned,
            TempUsage {
                entries: 1,
                bytes: 8
            }
        );
        let second = Store::open(root.path()).unwrap();
        assert!(!dead.exists());
        assert!(locked.exists() && unowned.exists());
        assert!(first.tmp_dir().join("mine").exists());
        // The first store is live: the second sees it as such.
        assert_eq!(second.temporaries().unwrap().live.entries, 2);
        assert_eq!(second.temporaries().unwrap().abandoned.entries, 0);
        drop(first);
        drop(lock);
        // Garbage collection (nobody else has the store open) takes the
        // rest but its own staging directory.
        second.collect_garbage().unwrap();
        let left: Vec<PathBuf> = fs::read_dir(second.tmp_root())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(left, [second.tmp_dir()]);
        let own = second.tmp_dir();
        drop(second);
        assert!(!own.exists());
    }

    #[test]
    fn system_check_and_df_see_leftovers_and_cache_mounts() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        dead_owner_dir(&store, 3);
        let id = crate::digest::digest_bytes(b"cache id");
        let owner = {
            use std::os::unix::fs::MetadataExt as _;
            let meta = fs::metadata(root.path()).unwrap();
            (meta.uid(), meta.gid())
        };
        let mount = store.cache_mount(&id, 0o750, owner.0, owner.1).unwrap();
        assert_eq!(mount, store.cache_mounts_dir().join(id.encoded()));
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&mount).unwrap().permissions());
        assert_eq!(mode & 0o7777, 0o750);
        fs::write(mount.join("data"), b"cached").unwrap();
        // Made once: a second use finds it, contents and all.
        assert_eq!(
            store.cache_mount(&id, 0o700, owner.0, owner.1).unwrap(),
            mount
        );
        assert!(mount.join("data").exists());
        fs::write(store.cache_mounts_dir().join("stray"), b"x").unwrap();
        let usage = store.disk_usage().unwrap();
        assert_eq!(usage.cache_mounts, (2, 7));
        assert_eq!(
            usage.temporaries.abandoned,
            TempUsage {
                entries: 1,
                bytes: 5
            }
        );
        let problems = store.check().unwrap();
        assert_eq!(
            problems,
            [Problem {
                subject: "cache mount stray".to_owned(),
                problem: "not a cache-mount directory (expected a directory named by a sha256 hex digest)".to_owned(),
            }]
        );
        let removed = store
            .remove_cache_mounts(|m| m.name == id.encoded())
            .unwrap();
        assert_eq!(removed.len(), 1);
        assert!(!mount.exists());
    }
}
