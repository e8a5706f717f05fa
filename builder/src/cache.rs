//! The persistent build cache: one JSON record per step cache key in the
//! store's `cache/` directory, naming the layer the step produced.
//!
//! The store's garbage collector keeps every `sha256:` digest that a
//! `cache/*.json` file mentions, so a record keeps its layer blob (and its
//! snapshot, named by the `chain_id`) alive across `rmi` of the images that
//! used it, without the store knowing this format. A record's last-used
//! time is its file's mtime: a cache hit only touches the file, so a no-op
//! rebuild does not rewrite (and fsync) every record.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use kiln_store::digest::parse_sha256;
use kiln_store::spec::Descriptor;
use kiln_store::{Digest, Store};
use serde::{Deserialize, Serialize};

use crate::engine::reuse::{self, LINEAGE_DIR};
use crate::error::BuildError;

/// The version of the record format this kiln writes and reads. Records
/// written before the field existed are version 1; version 2 keys steps by
/// their typed operation ([`crate::ops`]) and holds its inputs and the
/// step's identity. A record of another version (an older or newer kiln
/// sharing the store) is never read as this one: it is a miss, not listed,
/// and left for its own kiln (prune keeps it).
pub const RECORD_VERSION: u32 = 2;

fn version_one() -> u32 {
    1
}

/// Records bigger than this are not build-cache records (they hold a
/// descriptor and a few strings), so they are not read.
const MAX_RECORD_SIZE: u64 = 1 << 20;

/// The directory under `cache/` of the COPY sources' file listings.
const SOURCES_DIR: &str = "sources";

/// What the cache remembers about one step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CacheRecord {
    /// The format's version ([`RECORD_VERSION`]).
    #[serde(default = "version_one")]
    pub version: u32,
    /// The step's cache key, `sha256:<hex>` (see [`crate::ops::Op::key`]).
    pub key: String,
    /// What the step does (`RUN make`), for `kiln cache ls`.
    pub description: String,
    /// The layer the step produced; `None` when its diff was empty.
    pub layer: Option<CachedLayer>,
    /// When the record was made, RFC 3339.
    pub created: String,
    /// For a record that remembers the content digest of a COPY --from's
    /// sources (no layer), that digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources_digest: Option<String>,
    /// The operation whose key this is, as serialised for the key
    /// ([`crate::ops::Op::canonical`]), parsed: what `kiln cache ls
    /// --inputs` shows and `kiln build --explain` compares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<serde_json::Value>,
    /// Which step of which Dockerfile stage made the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepIdentity>,
}

/// A step as `--explain` finds its previous build: by stage and position,
/// or by its text.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct StepIdentity {
    /// The stage's name, or its index.
    pub stage: String,
    /// The step's position in the stage (FROM is 1).
    pub position: usize,
    /// The instruction as written.
    pub instruction: String,
}

/// A layer a cached step produced.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CachedLayer {
    /// The manifest descriptor of the layer blob.
    pub descriptor: Descriptor,
    /// The digest of the uncompressed tar (`sha256:...`): the image
    /// config's `diff_id`.
    pub diff_id: String,
    /// The size of the uncompressed tar.
    pub diff_size: u64,
    /// The chain id of the snapshot the step made (its layer on the
    /// stage's layers), only so that garbage collection keeps that
    /// snapshot: a cache hit computes its own chain id. Absent in records
    /// of older kiln versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<String>,
}

/// One record as `kiln cache ls` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheEntry {
    /// The record.
    pub record: CacheRecord,
    /// When a build last used (or made) it: the record file's mtime.
    pub last_used: SystemTime,
    /// Size of the layer blob; 0 for an empty diff.
    pub size: u64,
    /// Whether an image in the store also uses the layer blob, so that
    /// removing the record frees nothing.
    pub shared: bool,
}

/// The records in the cache directory, and the files that looked like
/// records but could not be read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CacheListing {
    /// Readable records, oldest use first.
    pub entries: Vec<CacheEntry>,
    /// Record files that are unreadable, not JSON of the record shape, or
    /// whose key does not match their name.
    pub unreadable: Vec<PathBuf>,
}

/// What `prune` removes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneOptions {
    /// Remove records (least recently used first) only while the cache
    /// holds more than this many bytes of layers.
    pub keep_storage: Option<u64>,
    /// Remove only records unused for longer than this.
    pub until: Option<Duration>,
    /// Also remove records whose layer an image in the store uses (without
    /// it they are kept: removing them frees no space).
    pub all: bool,
}

/// What `prune` removed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PruneReport {
    /// The records removed.
    pub removed: Vec<CacheRecord>,
    /// Unreadable record files removed.
    pub unreadable_removed: usize,
    /// Cache mounts removed (their names under `cache-mounts/`).
    pub cache_mounts: Vec<String>,
    /// Contexts' stat caches removed (their names under `statcache/`).
    pub stat_caches: Vec<String>,
    /// Bytes freed: record files, the sources' file listings and lineage
    /// records removed, plus what the store's garbage collection deleted
    /// (layer blobs, snapshots, abandoned staging files).
    pub reclaimed: u64,
}

/// The files of one kind the cache keeps beside its records (the sources'
/// file listings, the incremental COPY's lineage records), as `kiln system
/// df` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SideUsage {
    /// How many there are.
    pub files: usize,
    /// How many are still of use: a listing a readable record names, a
    /// lineage record whose snapshot is in the store.
    pub live: usize,
    /// Their bytes.
    pub bytes: u64,
    /// The bytes of those not of use, which `prune` removes in any case.
    pub reclaimable: u64,
}

/// A file the cache keeps beside its records, and whether it is of use.
struct SideFile {
    path: PathBuf,
    bytes: u64,
    /// When it was last written (a lineage record: the step's last run).
    modified: Option<SystemTime>,
    live: bool,
}

impl SideUsage {
    fn of(files: &[SideFile]) -> Self {
        let mut usage = Self::default();
        for file in files {
            usage.files += 1;
            usage.bytes += file.bytes;
            if file.live {
                usage.live += 1;
            } else {
                usage.reclaimable += file.bytes;
            }
        }
        usage
    }
}

/// The build cache of a store.
#[derive(Debug, Clone)]
pub struct BuildCache<'a> {
    store: &'a Store,
}

impl BuildCache<'_> {
    /// The build cache kept in `store`.
    pub fn new(store: &Store) -> BuildCache<'_> {
        BuildCache { store }
    }

    /// The record for a cache key, marked as used now. A record whose layer
    /// blob is gone from the store is a miss and is removed; an unreadable
    /// one is a miss (the next [`put`](Self::put) replaces it).
    pub fn get(&self, key: &str) -> Result<Option<CacheRecord>, BuildError> {
        let path = self.record_path(key)?;
        let record = match read_record(&path) {
            Ok(record) => record,
            Err(ReadError::Missing) => return Ok(None),
            Err(ReadError::OtherVersion(version)) => {
                log::info!(
                    "build-cache record {}: format version {version}, this kiln reads {RECORD_VERSION}: a miss",
                    path.display()
                );
                return Ok(None);
            }
            Err(ReadError::Unreadable(why)) => {
                log::warn!("ignoring build-cache record {}: {why}", path.display());
                return Ok(None);
            }
        };
        if let Some(layer) = &record.layer {
            let present = parse_sha256(&layer.descriptor.digest)
                .is_ok_and(|digest| self.store.blobs().contains(&digest));
            if !present {
                log::info!(
                    "build-cache record {key}: layer {} is gone from the store",
                    layer.descriptor.digest
                );
                remove_file(&path)?;
                return Ok(None);
            }
        }
        // Last use is the mtime; failing to record it costs only an
        // early eviction, so it does not fail the build.
        if let Err(e) = filetime::set_file_mtime(&path, filetime::FileTime::now()) {
            log::debug!("cannot mark {} as used: {e}", path.display());
        }
        Ok(Some(record))
    }

    /// Stores a record (atomically: a concurrent `get` sees the old record
    /// or the new one; not fsynced, like the build layers it names: after a
    /// power cut a record may be unreadable, which is a miss). The key and the layer's digests must be sha256
    /// digests, so that the store's garbage collection sees the layer.
    pub fn put(&self, record: &CacheRecord) -> Result<(), BuildError> {
        let path = self.record_path(&record.key)?;
        if let Some(layer) = &record.layer {
            parse_sha256(&layer.descriptor.digest)?;
            parse_sha256(&layer.diff_id)?;
        }
        let bytes = serde_json::to_vec(record).map_err(|source| {
            BuildError::Store(kiln_store::StoreError::Json {
                what: format!("build-cache record {}", record.key),
                source,
            })
        })?;
        kiln_store::store::write_replace(&self.store.tmp_dir(), &path, &bytes)?;
        kiln_store::fault::point("cache.record.written");
        Ok(())
    }

    /// Keeps the listing of the files whose content digest is `digest` (a
    /// COPY's sources), under `cache/sources/<hex>.list`: not `.json`, so
    /// the store's garbage collection does not read it; [`prune`](Self::prune)
    /// removes a listing no record names. Failing only costs `--explain`
    /// its file names, so it is logged, not returned.
    pub fn put_source_files(
        &self,
        digest: &Digest,
        files: &[crate::context::SourceFile],
    ) -> Result<(), BuildError> {
        let path = self.source_files_path(digest);
        if path.exists() {
            return Ok(());
        }
        let rows: Vec<[&str; 3]> = files
            .iter()
            .map(|f| [f.path.as_str(), f.content.as_str(), f.meta.as_str()])
            .collect();
        let written = serde_json::to_vec(&rows)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                let dir = self.store.cache_dir().join(SOURCES_DIR);
                fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                kiln_store::store::write_replace(&self.store.tmp_dir(), &path, &bytes)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            log::warn!("cannot keep the file list {}: {e}", path.display());
        }
        Ok(())
    }

    /// The listing kept by [`put_source_files`](Self::put_source_files),
    /// if any and readable.
    pub fn source_files(&self, digest: &Digest) -> Option<Vec<crate::context::SourceFile>> {
        let bytes = fs::read(self.source_files_path(digest)).ok()?;
        let rows: Vec<[String; 3]> = serde_json::from_slice(&bytes).ok()?;
        Some(
            rows.into_iter()
                .map(|[path, content, meta]| crate::context::SourceFile {
                    path,
                    content,
                    meta,
                })
                .collect(),
        )
    }

    fn source_files_path(&self, digest: &Digest) -> PathBuf {
        self.store
            .cache_dir()
            .join(SOURCES_DIR)
            .join(format!("{}.list", digest.encoded()))
    }

    /// Removes the file listings that no readable record's inputs name.
    fn prune_source_files(&self) -> Result<u64, BuildError> {
        let mut reclaimed = 0;
        for file in self.source_lists()?.iter().filter(|f| !f.live) {
            reclaimed += file.bytes;
            remove_file(&file.path)?;
        }
        Ok(reclaimed)
    }

    /// The files under `cache/sources/`, live if a readable record's
    /// inputs name them.
    fn source_lists(&self) -> Result<Vec<SideFile>, BuildError> {
        let dir = self.store.cache_dir().join(SOURCES_DIR);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(BuildError::io(dir, e)),
        };
        let named: BTreeSet<String> = self
            .scan()?
            .entries
            .iter()
            .filter_map(|e| e.record.inputs.as_ref())
            .filter_map(|inputs| inputs.get("sources_digest")?.as_str())
            .filter_map(|d| d.strip_prefix("sha256:"))
            .map(|hex| format!("{hex}.list"))
            .collect();
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| BuildError::io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            files.push(SideFile {
                bytes: file_size(&path),
                modified: None,
                live: named.contains(&name),
                path,
            });
        }
        Ok(files)
    }

    /// The incremental COPY's lineage records (`cache/lineage/<hex>`, see
    /// `engine::reuse`), live if readable and `snapshot_exists` says their
    /// snapshot is in the store. Only regular files named by 64 hex digits
    /// are records (the names kiln looks up); anything else is left alone,
    /// as in `cache/`.
    fn lineage_records(
        &self,
        snapshot_exists: &dyn Fn(&Digest) -> Result<bool, BuildError>,
    ) -> Result<Vec<SideFile>, BuildError> {
        let dir = self.store.cache_dir().join(LINEAGE_DIR);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(BuildError::io(dir, e)),
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| BuildError::io(&dir, e))?;
            if !entry.file_name().to_str().is_some_and(is_sha256_hex) {
                continue;
            }
            let path = entry.path();
            let meta = match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_file() => meta,
                Ok(_) => continue,
                // Removed meanwhile (a build forgetting it, another prune).
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(BuildError::io(path, e)),
            };
            // A record is one short line; a bigger file is garbled.
            let text = (meta.len() <= MAX_RECORD_SIZE)
                .then(|| fs::read_to_string(&path).ok())
                .flatten();
            let live = match text.as_deref().and_then(reuse::parse_record) {
                None => false,
                Some((chain_id, _)) => snapshot_exists(&chain_id).unwrap_or_else(|e| {
                    // Not known to be gone: kept, as a lookup would try it.
                    log::warn!("lineage record {}: {e}", path.display());
                    true
                }),
            };
            files.push(SideFile {
                path,
                bytes: meta.len(),
                modified: meta.modified().ok(),
                live,
            });
        }
        Ok(files)
    }

    /// Removes the lineage records that can serve no build: unreadable or
    /// garbled ones and those whose snapshot is gone (checked after the
    /// garbage collection, which may have just deleted it). With `all`
    /// every record goes, unless `until` keeps it (by the time its step
    /// last ran) or `keep_storage` is given (they hold no layer, so
    /// removing them brings the cache no nearer its limit).
    fn prune_lineage(&self, opts: &PruneOptions, now: SystemTime) -> Result<u64, BuildError> {
        let exists = |chain_id: &Digest| Ok(self.store.find_snapshot(chain_id)?.is_some());
        let mut reclaimed = 0;
        for file in self.lineage_records(&exists)? {
            let idle = opts.until.is_none_or(|until| {
                file.modified
                    .and_then(|m| now.duration_since(m).ok())
                    .is_some_and(|idle| idle > until)
            });
            if !file.live || (opts.all && opts.keep_storage.is_none() && idle) {
                reclaimed += file.bytes;
                remove_file(&file.path)?;
            }
        }
        Ok(reclaimed)
    }

    /// The sources' file listings, as [`prune`](Self::prune) judges them.
    pub fn source_lists_usage(&self) -> Result<SideUsage, BuildError> {
        Ok(SideUsage::of(&self.source_lists()?))
    }

    /// The lineage records; live ones are those whose snapshot directory
    /// is there (not checked for completeness, which would move an
    /// incomplete one aside: this only reads).
    pub fn lineage_usage(&self) -> Result<SideUsage, BuildError> {
        let snapshots = self.store.snapshots_dir();
        let exists = |chain_id: &Digest| Ok(snapshots.join(chain_id.encoded()).is_dir());
        Ok(SideUsage::of(&self.lineage_records(&exists)?))
    }

    /// Every readable record, least recently used first.
    pub fn list(&self) -> Result<Vec<CacheEntry>, BuildError> {
        let listing = self.scan()?;
        for path in &listing.unreadable {
            log::warn!("skipping unreadable build-cache record {}", path.display());
        }
        Ok(listing.entries)
    }

    /// Every record, least recently used first, and the record files that
    /// could not be read. Only files named `<64 hex digits>.json` are
    /// records; anything else in the directory is left alone.
    pub fn scan(&self) -> Result<CacheListing, BuildError> {
        let dir = self.store.cache_dir();
        let shared = self.image_layers()?;
        let mut listing = CacheListing::default();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(listing),
            Err(e) => return Err(BuildError::io(dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| BuildError::io(&dir, e))?;
            let name = entry.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if !is_sha256_hex(hex) {
                continue;
            }
            let path = entry.path();
            let record = match read_record(&path) {
                Ok(record) if record.key.strip_prefix("sha256:") == Some(hex) => record,
                // Removed between read_dir and the read: not a record any
                // more; another version's record is its kiln's.
                Err(ReadError::Missing | ReadError::OtherVersion(_)) => continue,
                Ok(_) | Err(ReadError::Unreadable(_)) => {
                    listing.unreadable.push(path);
                    continue;
                }
            };
            let last_used = match fs::metadata(&path).and_then(|m| m.modified()) {
                Ok(time) => time,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(BuildError::io(path, e)),
            };
            let (size, shared) = record.layer.as_ref().map_or((0, false), |layer| {
                let size = u64::try_from(layer.descriptor.size).unwrap_or(0);
                (size, shared.contains(&layer.descriptor.digest))
            });
            listing.entries.push(CacheEntry {
                record,
                last_used,
                size,
                shared,
            });
        }
        listing.entries.sort_by(|a, b| {
            a.last_used
                .cmp(&b.last_used)
                .then_with(|| a.record.key.cmp(&b.record.key))
        });
        listing.unreadable.sort();
        Ok(listing)
    }

    /// Removes records as `opts` says, then collects the store's garbage so
    /// that layers no image and no remaining record uses are deleted, then
    /// the lineage records that garbage collection left without a snapshot
    /// (see `prune_lineage`). Unreadable record files are always removed.
    pub fn prune(&self, opts: &PruneOptions) -> Result<PruneReport, BuildError> {
        let listing = self.scan()?;
        let mut report = PruneReport::default();
        for path in &listing.unreadable {
            report.reclaimed += file_size(path);
            remove_file(path)?;
            report.unreadable_removed += 1;
        }
        let now = SystemTime::now();
        let candidate = |entry: &CacheEntry| {
            (opts.all || !entry.shared)
                && opts.until.is_none_or(|until| {
                    now.duration_since(entry.last_used)
                        .is_ok_and(|idle| idle > until)
                })
        };
        let mut remove = vec![false; listing.entries.len()];
        // Bytes left after the records' removal, for cache mounts' turn.
        let mut left = 0;
        match opts.keep_storage {
            None => {
                for (flag, entry) in remove.iter_mut().zip(&listing.entries) {
                    *flag = candidate(entry);
                }
            }
            Some(keep) => {
                // Bytes the cache alone holds, per blob, and how many
                // records still use each.
                let mut users: BTreeMap<&str, (u64, usize)> = BTreeMap::new();
                for entry in listing.entries.iter().filter(|e| !e.shared) {
                    if let Some(layer) = &entry.record.layer {
                        users
                            .entry(&layer.descriptor.digest)
                            .or_insert((entry.size, 0))
                            .1 += 1;
                    }
                }
                let mut total: u64 = users.values().map(|(size, _)| size).sum();
                // Entries are sorted least recently used first.
                for (flag, entry) in remove.iter_mut().zip(&listing.entries) {
                    if total <= keep {
                        break;
                    }
                    if !candidate(entry) {
                        continue;
                    }
                    *flag = true;
                    if let Some(layer) = &entry.record.layer
                        && let Some((size, count)) = users.get_mut(layer.descriptor.digest.as_str())
                    {
                        *count -= 1;
                        if *count == 0 {
                            total = total.saturating_sub(*size);
                        }
                    }
                }
                left = total;
            }
        }
        for (entry, _) in listing.entries.into_iter().zip(remove).filter(|(_, r)| *r) {
            let path = self.record_path(&entry.record.key)?;
            report.reclaimed += file_size(&path);
            remove_file(&path)?;
            kiln_store::fault::point("cache.record.removed");
            report.removed.push(entry.record);
        }
        // Cache mounts (`RUN --mount=type=cache`) go as BuildKit's
        // `exec.cachemount` records do, and the contexts' stat caches as
        // its `source.local` records: idle ones with `until`, least
        // recently used first while over `keep_storage`, else all.
        let mut used_left: u64 = self
            .store
            .cache_mounts()?
            .iter()
            .map(|m| m.bytes)
            .sum::<u64>()
            + self
                .store
                .stat_caches()?
                .iter()
                .map(|c| c.bytes)
                .sum::<u64>();
        let mut select = |entry: &kiln_store::maintenance::UsedEntry| {
            let idle = opts.until.is_none_or(|until| {
                now.duration_since(entry.last_used)
                    .is_ok_and(|idle| idle > until)
            });
            let over = opts.keep_storage.is_none_or(|keep| left + used_left > keep);
            let remove = idle && over;
            if remove {
                used_left = used_left.saturating_sub(entry.bytes);
            }
            remove
        };
        for mount in self.store.remove_cache_mounts(&mut select)? {
            report.reclaimed += mount.bytes;
            report.cache_mounts.push(mount.name);
        }
        for cache in self.store.remove_stat_caches(&mut select)? {
            report.reclaimed += cache.bytes;
            report.stat_caches.push(cache.name);
        }
        report.reclaimed += self.prune_source_files()?;
        let sweep = self.store.collect_garbage()?;
        report.reclaimed += sweep.reclaimed;
        report.reclaimed += self.prune_lineage(opts, now)?;
        Ok(report)
    }

    /// The file of a record.
    fn record_path(&self, key: &str) -> Result<PathBuf, BuildError> {
        let digest: Digest = parse_sha256(key)?;
        Ok(self
            .store
            .cache_dir()
            .join(format!("{}.json", digest.encoded())))
    }

    /// Digests of the layer blobs of the images in the store.
    fn image_layers(&self) -> Result<BTreeSet<String>, BuildError> {
        Ok(self
            .store
            .images()?
            .into_iter()
            .flat_map(|image| image.manifest.layers.into_iter().map(|l| l.digest))
            .collect())
    }
}

/// Why a record could not be read.
enum ReadError {
    /// There is no such file.
    Missing,
    /// A record of another format version.
    OtherVersion(u32),
    /// Anything else, with the reason.
    Unreadable(String),
}

/// The one field read from a record before the rest.
#[derive(Deserialize)]
struct Version {
    #[serde(default = "version_one")]
    version: u32,
}

fn read_record(path: &Path) -> Result<CacheRecord, ReadError> {
    let read = || -> io::Result<Vec<u8>> {
        let size = fs::metadata(path)?.len();
        if size > MAX_RECORD_SIZE {
            return Err(io::Error::other(format!(
                "{size} bytes, over the {MAX_RECORD_SIZE}-byte limit"
            )));
        }
        fs::read(path)
    };
    let bytes = read().map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            ReadError::Missing
        } else {
            ReadError::Unreadable(e.to_string())
        }
    })?;
    // The version first, from a document that may hold anything else.
    let version: Version =
        serde_json::from_slice(&bytes).map_err(|e| ReadError::Unreadable(e.to_string()))?;
    if version.version != RECORD_VERSION {
        return Err(ReadError::OtherVersion(version.version));
    }
    serde_json::from_slice(&bytes).map_err(|e| ReadError::Unreadable(e.to_string()))
}

/// Whether `hex` is 64 lowercase hex digits.
fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn file_size(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

/// Removes a file; one already gone (a concurrent prune) is fine.
fn remove_file(path: &Path) -> Result<(), BuildError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BuildError::io(path, e)),
    }
}

pub mod recipe;
pub mod share;

#[cfg(test)]
mod tests;
