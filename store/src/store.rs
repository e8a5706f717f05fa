//! The store: an OCI image layout with tags in index.json, plus kiln's own
//! directories (snapshots, build cache, staging, locks).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use kiln_reference::{Digest, ImageReference};

use crate::blobs::{Blobs, sync_dir};
use crate::digest::parse_sha256;
use crate::error::{IoContext, StoreError};
use crate::spec::{
    ANNOTATION_REF_NAME, ANNOTATION_REPO_DIGEST, Descriptor, ImageConfig, Index, MAX_DOCUMENT_SIZE,
    Manifest, OCI_INDEX, is_index, is_manifest,
};

/// The `oci-layout` file's content.
const OCI_LAYOUT: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";

/// An open store.
///
/// Concurrency: every open store holds a shared lock on `locks/gc.lock`
/// for its lifetime, and garbage collection takes it exclusively, so a
/// sweep never deletes a blob another process has just written but not
/// yet tagged. index.json is rewritten under an exclusive `locks/index.lock`
/// by write-temp, fsync, rename; readers need no lock.
///
/// Permissions: the root and every directory kiln keeps in it are mode
/// 0700, set again on every open, so no other user reaches a snapshot's
/// setuid binaries or a build's secrets (the CVE-2021-41091 class).
///
/// Temporaries: each open store has its own staging directory
/// `tmp/owner-<pid>-<start>-<n>/` ([`Store::tmp_dir`]), locked while the
/// store is open and removed when it is dropped; opening a store removes
/// the staging directories of processes that are gone (see
/// [`crate::temp`]).
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    blobs: Blobs,
    gc_lock: File,
    /// This process's staging directory under `tmp/`.
    owner_dir: PathBuf,
    /// Held (flock) while the store is open: tells sweepers it is in use.
    _owner_lock: File,
}

/// The directories kiln keeps under the store root, created on open and
/// closed to other users. The store owns each of them: garbage
/// collection, `system check` and `system df` cover them all.
const STORE_DIRS: [&str; 13] = [
    "blobs",
    "containers",
    "blobs/sha256",
    "snapshots",
    "cache",
    "cache-mounts",
    "statcache",
    "tmp",
    "locks",
    "meta",
    "meta/diff",
    "volumes",
    "networks",
];

/// Mode of the store root and of its directories: the owner only.
const PRIVATE_DIR_MODE: u32 = 0o700;

/// Prefix of the per-process staging directories under `tmp/`.
pub(crate) const OWNER_DIR_PREFIX: &str = "owner-";

/// One image in the store: a manifest, its config and its tags.
#[derive(Debug, Clone)]
pub struct Image {
    /// Digest of the manifest.
    pub manifest_digest: Digest,
    /// The manifest.
    pub manifest: Manifest,
    /// Digest of the config: the image ID.
    pub id: Digest,
    /// The config.
    pub config: ImageConfig,
    /// The config's raw bytes, as stored.
    pub config_bytes: Vec<u8>,
    /// Full references that name this image, sorted.
    pub tags: Vec<String>,
    /// For tags pulled through an index: the index's digest (what
    /// `RepoDigests` shows for that name), by tag.
    pub repo_digests: BTreeMap<String, Digest>,
    /// The multi-platform image (a tagged OCI index in index.json) this
    /// image is one platform of, when it was found through one: `tags`
    /// are then the index's, and tagging, saving or pushing the image
    /// means the whole index.
    pub index: Option<Digest>,
}

impl Image {
    /// The 12-digit short ID Docker prints.
    pub fn short_id(&self) -> String {
        self.id.encoded().chars().take(12).collect()
    }

    /// Sum of the layer blob sizes and the config size: the space the
    /// image's content takes in the store.
    pub fn size(&self) -> u64 {
        let layers: i64 = self.manifest.layers.iter().map(|l| l.size.max(0)).sum();
        u64::try_from(layers + self.manifest.config.size.max(0)).unwrap_or(0)
    }
}

impl Store {
    /// Opens (creating if needed) the store at `root`, closes it to other
    /// users, and removes the temporary files of kiln processes that are
    /// gone.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let store = Self::open_keeping_temporaries(root)?;
        match store.sweep_tmp(false) {
            Ok(swept) if swept.entries > 0 => log::info!(
                "removed {} temporary entries ({} bytes) of kiln processes that are gone",
                swept.entries,
                swept.bytes
            ),
            Ok(_) => {}
            // Garbage that cannot be removed now is removed later; the
            // command itself does not depend on it.
            Err(e) => log::warn!("cannot remove temporary files of dead processes: {e}"),
        }
        Ok(store)
    }

    /// [`Store::open`] without removing other processes' leftovers, for
    /// `system check` and `system df`, which report them.
    pub fn open_keeping_temporaries(root: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).at(parent)?;
        }
        close_dir(root)?;
        for dir in STORE_DIRS {
            let path = root.join(dir);
            close_dir(&path)?;
            if dir == "tmp" || dir == "snapshots" {
                mark_top_dir(&path);
            }
        }
        let (owner_dir, owner_lock) = create_owner_dir(&root.join("tmp"))?;
        let layout = root.join("oci-layout");
        if !layout.exists() {
            write_atomic(&owner_dir, &layout, OCI_LAYOUT.as_bytes())?;
        }
        let index = root.join("index.json");
        if !index.exists() {
            // Under the index lock, and checked again there: another
            // process creating the store at the same moment may already
            // have written (and tagged into) index.json.
            let lock_path = root.join("locks/index.lock");
            let lock = open_lock_file(&lock_path)?;
            lock.lock().at(&lock_path)?;
            if !index.exists() {
                let bytes = to_json(&Index::empty())?;
                write_atomic(&owner_dir, &index, &bytes)?;
            }
        }
        let lock_path = root.join("locks/gc.lock");
        let gc_lock = open_lock_file(&lock_path)?;
        gc_lock.lock_shared().at(&lock_path)?;
        Ok(Self {
            root: root.to_owned(),
            blobs: Blobs::new(root, &owner_dir),
            gc_lock,
            owner_dir,
            _owner_lock: owner_lock,
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The blob directory.
    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    /// This process's staging directory, on the store's file system
    /// (`tmp/owner-<pid>-<start>-<n>/`): everything made here is garbage
    /// once the process is gone, and the next kiln command removes it.
    pub fn tmp_dir(&self) -> PathBuf {
        self.owner_dir.clone()
    }

    /// The directory holding every process's staging directory.
    pub fn tmp_root(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The directory of persistent `RUN --mount=type=cache` contents.
    pub fn cache_mounts_dir(&self) -> PathBuf {
        self.root.join("cache-mounts")
    }

    /// The directory of the builder's stat caches (one per context).
    pub fn stat_cache_dir(&self) -> PathBuf {
        self.root.join("statcache")
    }

    /// The directory of unpacked layer snapshots.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// The build-cache directory.
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// Remembers the uncompressed digest and size of a compressed layer, so
    /// that `save --format docker` can write its tar header without a
    /// first decompression pass. The record is a hint: the save still
    /// checks the bytes it writes against both.
    pub fn record_diff(
        &self,
        layer: &Digest,
        diff_id: &Digest,
        size: u64,
    ) -> Result<(), StoreError> {
        let path = self.root.join("meta/diff").join(layer.encoded());
        write_atomic(
            &self.owner_dir,
            &path,
            format!("{diff_id} {size}\n").as_bytes(),
        )
    }

    /// The uncompressed digest and size recorded for a layer, if any.
    pub fn recorded_diff(&self, layer: &Digest) -> Option<(Digest, u64)> {
        let path = self.root.join("meta/diff").join(layer.encoded());
        let text = fs::read_to_string(path).ok()?;
        let (diff_id, size) = text.trim().split_once(' ')?;
        Some((parse_sha256(diff_id).ok()?, size.parse().ok()?))
    }

    /// Reads index.json.
    pub fn index(&self) -> Result<Index, StoreError> {
        let path = self.root.join("index.json");
        let bytes = read_document(&path)?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            what: path.display().to_string(),
            source,
        })
    }

    /// Changes index.json under the index lock and replaces it atomically.
    pub fn update_index<T>(
        &self,
        change: impl FnOnce(&mut Index) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let lock_path = self.root.join("locks/index.lock");
        let lock = open_lock_file(&lock_path)?;
        lock.lock().at(&lock_path)?;
        let mut index = self.index()?;
        let result = change(&mut index)?;
        let bytes = to_json(&index)?;
        write_atomic(&self.owner_dir, &self.root.join("index.json"), &bytes)?;
        crate::fault::point("index.replaced");
        Ok(result)
    }

    /// Reads and parses a JSON blob (manifest, index or config), verified.
    pub fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        digest: &Digest,
    ) -> Result<(T, Vec<u8>), StoreError> {
        let bytes = self.blobs.read(digest, MAX_DOCUMENT_SIZE)?;
        let value = serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            what: format!("blob {digest}"),
            source,
        })?;
        Ok((value, bytes))
    }

    /// Loads the image a manifest digest names.
    pub fn image(&self, manifest_digest: &Digest) -> Result<Image, StoreError> {
        let (manifest, _): (Manifest, _) = self.read_json(manifest_digest)?;
        let id = parse_sha256(&manifest.config.digest)?;
        let (config, config_bytes) = self.read_json(&id)?;
        let index = self.index()?;
        let entries = || {
            index
                .manifests
                .iter()
                .filter(|d| d.digest == manifest_digest.to_string())
        };
        let tags = entries()
            .filter_map(|d| d.annotation(ANNOTATION_REF_NAME).map(str::to_owned))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let repo_digests = entries().filter_map(repo_digest).collect();
        Ok(Image {
            manifest_digest: manifest_digest.clone(),
            manifest,
            id,
            config,
            config_bytes,
            tags,
            repo_digests,
            index: None,
        })
    }

    /// One platform's image of the tagged index `index_digest`: the
    /// platform asked for (an error listing the index's platforms when it
    /// has none such), else this machine's, else the first. Its tags are
    /// the index's.
    pub fn index_image(
        &self,
        index_digest: &Digest,
        platform: Option<&crate::registry::PlatformSpec>,
        name: &str,
    ) -> Result<Image, StoreError> {
        let (index, _): (Index, _) = self.read_json(index_digest)?;
        let selected = match platform {
            Some(wanted) => crate::registry::pull::select_platform(&index, wanted, name).map_err(
                |e| match e {
                    crate::registry::RegistryError::NoMatchingPlatform {
                        reference,
                        wanted,
                        available,
                    } => StoreError::NoMatchingPlatform {
                        reference,
                        wanted,
                        available,
                    },
                    other => StoreError::InvalidDocument {
                        what: format!("index {index_digest}"),
                        reason: other.to_string(),
                    },
                },
            )?,
            None => match crate::registry::pull::select_platform(
                &index,
                &crate::registry::PlatformSpec::host(),
                name,
            ) {
                Ok(entry) => entry,
                Err(_) => index
                    .manifests
                    .iter()
                    .find(|d| is_manifest(&d.media_type))
                    .ok_or_else(|| StoreError::InvalidDocument {
                        what: format!("index {index_digest}"),
                        reason: "it lists no image manifest".to_owned(),
                    })?,
            },
        };
        let mut image = self.image(&parse_sha256(&selected.digest)?)?;
        let entries = self.index()?;
        image.tags = entries
            .manifests
            .iter()
            .filter(|d| d.digest == index_digest.to_string())
            .filter_map(|d| d.annotation(ANNOTATION_REF_NAME).map(str::to_owned))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        image.index = Some(index_digest.clone());
        Ok(image)
    }

    /// The image an index.json entry names: the manifest's, or for a
    /// tagged index the platform's (see [`Store::index_image`]).
    fn entry_image(
        &self,
        entry: &Descriptor,
        platform: Option<&crate::registry::PlatformSpec>,
        name: &str,
    ) -> Result<Image, StoreError> {
        let digest = parse_sha256(&entry.digest)?;
        if is_index(&entry.media_type) {
            self.index_image(&digest, platform, name)
        } else {
            self.image(&digest)
        }
    }

    /// The digests and names of the multi-platform images (tagged
    /// indexes) in index.json.
    fn tagged_indexes(index: &Index) -> BTreeMap<String, BTreeSet<String>> {
        let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for entry in index.manifests.iter().filter(|d| is_index(&d.media_type)) {
            let names = found.entry(entry.digest.clone()).or_default();
            if let Some(name) = entry.annotation(ANNOTATION_REF_NAME) {
                names.insert(name.to_owned());
            }
        }
        found
    }

    /// Every image, one per manifest, with its tags.
    pub fn images(&self) -> Result<Vec<Image>, StoreError> {
        let index = self.index()?;
        let mut tags: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut repo_digests: BTreeMap<String, BTreeMap<String, Digest>> = BTreeMap::new();
        for entry in index
            .manifests
            .iter()
            .filter(|d| is_manifest(&d.media_type))
        {
            let names = tags.entry(entry.digest.clone()).or_default();
            if let Some(name) = entry.annotation(ANNOTATION_REF_NAME) {
                names.insert(name.to_owned());
            }
            if let Some((name, digest)) = repo_digest(entry) {
                repo_digests
                    .entry(entry.digest.clone())
                    .or_default()
                    .insert(name, digest);
            }
        }
        let mut images = Vec::with_capacity(tags.len());
        for (digest, names) in tags {
            let repo_digests = repo_digests.remove(&digest).unwrap_or_default();
            let manifest_digest = parse_sha256(&digest)?;
            let (manifest, _): (Manifest, _) = self.read_json(&manifest_digest)?;
            let id = parse_sha256(&manifest.config.digest)?;
            let (config, config_bytes) = self.read_json(&id)?;
            images.push(Image {
                manifest_digest,
                manifest,
                id,
                config,
                config_bytes,
                tags: names.into_iter().collect(),
                repo_digests,
                index: None,
            });
        }
        // A multi-platform image is one entry, shown by this machine's
        // platform (as Docker lists an index as one image).
        for (digest, names) in Self::tagged_indexes(&index) {
            let name = names.iter().next().cloned().unwrap_or_default();
            images.push(self.index_image(&parse_sha256(&digest)?, None, &name)?);
        }
        Ok(images)
    }

    /// Finds an image as Docker does: by reference (`app`, `app:1`,
    /// `app@sha256:…`), then by full or prefix image ID (with or without
    /// `sha256:`).
    pub fn resolve(&self, name: &str) -> Result<Image, StoreError> {
        self.resolve_platform(name, None)
    }

    /// [`Store::resolve`], picking `platform` (when given) from a
    /// multi-platform image; an image of one platform is returned as it
    /// is, whatever its platform (the caller checks it).
    pub fn resolve_platform(
        &self,
        name: &str,
        platform: Option<&crate::registry::PlatformSpec>,
    ) -> Result<Image, StoreError> {
        let index = self.index()?;
        if let Ok(reference) = kiln_reference::parse_normalized_named(name) {
            let reference = reference.tag_name_only();
            let wanted = reference.to_string();
            if let Some(digest) = reference.digest() {
                let repository = reference.name();
                let tagged = index.manifests.iter().find(|d| {
                    d.digest == digest.to_string()
                        && d.annotation(ANNOTATION_REF_NAME)
                            .is_some_and(|n| ref_repository(n) == repository)
                });
                if let Some(entry) = tagged {
                    return self.entry_image(entry, platform, name);
                }
                // A pull by an index's digest names the platform image
                // it gave `name@<index digest>`; the index digest a tag
                // was pulled through names that image too, as in Docker.
                if let Some(entry) = index
                    .manifests
                    .iter()
                    .find(|d| d.annotation(ANNOTATION_REF_NAME) == Some(wanted.as_str()))
                {
                    return self.entry_image(entry, platform, name);
                }
                if let Some(entry) = index.manifests.iter().find(|d| {
                    repo_digest(d).is_some_and(|(name, pulled)| {
                        pulled == *digest && ref_repository(&name) == repository
                    })
                }) {
                    return self.image(&parse_sha256(&entry.digest)?);
                }
            } else if let Some(entry) = index
                .manifests
                .iter()
                .find(|d| d.annotation(ANNOTATION_REF_NAME) == Some(wanted.as_str()))
            {
                return self.entry_image(entry, platform, name);
            }
        }
        let prefix = name.strip_prefix("sha256:").unwrap_or(name);
        let is_hex = !prefix.is_empty()
            && prefix
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if is_hex && prefix.len() <= 64 {
            let mut found: Option<Image> = None;
            for image in self.images()? {
                if image.id.encoded().starts_with(prefix) {
                    if found.as_ref().is_some_and(|f| f.id != image.id) {
                        return Err(StoreError::AmbiguousId(name.to_owned()));
                    }
                    found = Some(image);
                }
            }
            if let Some(image) = found {
                return Ok(image);
            }
        }
        Err(StoreError::ImageNotFound(name.to_owned()))
    }

    /// Adds an image manifest to index.json under `references` (or as an
    /// untagged image when there are none). Each reference moves from
    /// whatever image it named before; an image left without tags stays
    /// as a dangling `<none>` entry, as in Docker. Images are identified
    /// by ID as in Docker: a manifest with the same config as one already
    /// present (the same image loaded from another archive format, say)
    /// replaces it rather than leaving a dangling twin.
    pub fn add_image(
        &self,
        manifest: &Descriptor,
        references: &[ImageReference],
    ) -> Result<(), StoreError> {
        let names: Vec<String> = references.iter().map(ToString::to_string).collect();
        // A rebuild that changed nothing tags the same manifest again:
        // leave index.json alone (no rewrite, no fsync).
        if !names.is_empty() {
            let index = self.index()?;
            let tagged = |name: &String| {
                index.manifests.iter().any(|d| {
                    d.digest == manifest.digest
                        && d.annotation(ANNOTATION_REF_NAME) == Some(name.as_str())
                })
            };
            if names.iter().all(tagged) {
                return Ok(());
            }
        }
        let id = self.config_of(&manifest.digest);
        self.update_index(|index| {
            // Each listed manifest's config, read once.
            let configs: BTreeMap<String, Option<String>> = index
                .manifests
                .iter()
                .map(|d| (d.digest.clone(), self.config_of(&d.digest)))
                .collect();
            let same_image = |d: &Descriptor| {
                d.digest != manifest.digest
                    && id.is_some()
                    && configs.get(&d.digest).is_some_and(|c| *c == id)
            };
            if names.is_empty() {
                let present = index
                    .manifests
                    .iter()
                    .any(|d| d.digest == manifest.digest || same_image(d));
                if !present {
                    index.manifests.push(plain(manifest));
                }
                return Ok(());
            }
            for name in &names {
                let Some(position) = index
                    .manifests
                    .iter()
                    .position(|d| d.annotation(ANNOTATION_REF_NAME) == Some(name.as_str()))
                else {
                    continue;
                };
                let old = index.manifests.remove(position);
                let still_listed = index.manifests.iter().any(|d| d.digest == old.digest);
                if !still_listed && old.digest != manifest.digest && !same_image(&old) {
                    index.manifests.push(plain(&old));
                }
            }
            // Untagged entries of this image (or of its twins) give way.
            index.manifests.retain(|d| {
                d.annotation(ANNOTATION_REF_NAME).is_some()
                    || (d.digest != manifest.digest && !same_image(d))
            });
            for name in &names {
                index.manifests.push(named(manifest, name));
            }
            Ok(())
        })
    }

    /// Records that `reference` (a tag of an image in the store) was
    /// pulled through the index `digest`, for `RepoDigests`. A later
    /// `add_image` under the same name drops it with the old entry.
    pub fn set_repo_digest(
        &self,
        reference: &ImageReference,
        digest: &Digest,
    ) -> Result<(), StoreError> {
        let name = reference.to_string();
        self.update_index(|index| {
            for entry in &mut index.manifests {
                if entry.annotation(ANNOTATION_REF_NAME) == Some(name.as_str()) {
                    entry
                        .annotations
                        .get_or_insert_with(BTreeMap::new)
                        .insert(ANNOTATION_REPO_DIGEST.to_owned(), digest.to_string());
                }
            }
            Ok(())
        })
    }

    /// The config digest a stored manifest names (`None` if unreadable).
    fn config_of(&self, manifest_digest: &str) -> Option<String> {
        let digest = parse_sha256(manifest_digest).ok()?;
        let (manifest, _): (Manifest, _) = self.read_json(&digest).ok()?;
        Some(manifest.config.digest)
    }

    /// Points `reference` at an image already in the store.
    pub fn tag(&self, image: &Image, reference: &ImageReference) -> Result<(), StoreError> {
        // The descriptor is rebuilt from the blob rather than looked up in
        // index.json: another process may have replaced the entry since
        // `image` was resolved, and the blob stays while this store is open.
        // A multi-platform image is tagged as a whole.
        if let Some(index) = &image.index {
            let size = self.blobs.size(index)?;
            let descriptor = Descriptor::new(OCI_INDEX, &index.to_string(), size);
            return self.add_image(&descriptor, std::slice::from_ref(reference));
        }
        let media_type = if image.manifest.media_type.is_empty() {
            crate::spec::OCI_MANIFEST
        } else {
            &image.manifest.media_type
        };
        let size = self.blobs.size(&image.manifest_digest)?;
        let descriptor = Descriptor::new(media_type, &image.manifest_digest.to_string(), size);
        self.add_image(&descriptor, std::slice::from_ref(reference))
    }

    /// Removes one tag. Returns true when it was the image's last name, in
    /// which case the image itself is removed too (Docker's `rmi` of the
    /// last tag deletes the image).
    pub fn untag(&self, reference: &str) -> Result<bool, StoreError> {
        self.update_index(|index| {
            let Some(position) = index
                .manifests
                .iter()
                .position(|d| d.annotation(ANNOTATION_REF_NAME) == Some(reference))
            else {
                return Err(StoreError::ImageNotFound(reference.to_owned()));
            };
            let removed = index.manifests.remove(position);
            let still_named = index.manifests.iter().any(|d| d.digest == removed.digest);
            Ok(!still_named)
        })
    }

    /// Removes every index entry of an image (its blobs go at the next
    /// garbage collection).
    pub fn delete_image(&self, manifest_digest: &Digest) -> Result<(), StoreError> {
        let digest = manifest_digest.to_string();
        self.update_index(|index| {
            index.manifests.retain(|d| d.digest != digest);
            Ok(())
        })
    }

    /// Like [`Store::with_exclusive`], but returns `None` at once instead of
    /// waiting when another kiln process has the store open.
    pub fn try_with_exclusive<T>(
        &self,
        sweep: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let lock_path = self.root.join("locks/gc.lock");
        match self.gc_lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                // try_lock may have dropped the shared lock while trying.
                self.gc_lock.lock_shared().at(&lock_path)?;
                return Ok(None);
            }
            Err(fs::TryLockError::Error(e)) => return Err(StoreError::io(&lock_path, e)),
        }
        let result = sweep();
        self.gc_lock.lock_shared().at(&lock_path)?;
        result.map(Some)
    }

    /// Runs `sweep` while holding the garbage-collection lock exclusively:
    /// no other kiln process has the store open meanwhile.
    pub fn with_exclusive<T>(
        &self,
        sweep: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let lock_path = self.root.join("locks/gc.lock");
        // flock converts shared to exclusive by dropping and re-taking, so
        // two collectors cannot deadlock on the upgrade.
        self.gc_lock.lock().at(&lock_path)?;
        let result = sweep();
        self.gc_lock.lock_shared().at(&lock_path)?;
        result
    }
}

/// The repository part of a full reference (`docker.io/library/a:1` ->
/// `docker.io/library/a`).
fn ref_repository(name: &str) -> &str {
    let name = name.split('@').next().unwrap_or(name);
    match name.rfind(':') {
        Some(colon) if !name[colon..].contains('/') => &name[..colon],
        _ => name,
    }
}

fn plain(descriptor: &Descriptor) -> Descriptor {
    let mut entry = descriptor.clone();
    if let Some(annotations) = entry.annotations.as_mut() {
        annotations.remove(ANNOTATION_REF_NAME);
        if annotations.is_empty() {
            entry.annotations = None;
        }
    }
    entry.platform = None;
    entry
}

fn named(descriptor: &Descriptor, name: &str) -> Descriptor {
    let mut entry = plain(descriptor);
    entry
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(ANNOTATION_REF_NAME.to_owned(), name.to_owned());
    entry
}

/// A tag entry's name and the registry digest it was pulled through.
fn repo_digest(entry: &Descriptor) -> Option<(String, Digest)> {
    let name = entry.annotation(ANNOTATION_REF_NAME)?;
    let digest = entry.annotation(ANNOTATION_REPO_DIGEST)?;
    Some((name.to_owned(), parse_sha256(digest).ok()?))
}

/// Opens (creating) a lock file; the lock itself is taken by the caller.
/// ext4's `FS_TOPDIR_FL` (`chattr +T`), which libc does not export.
const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;

/// Marks `dir` as the top of unrelated directory trees (`chattr +T`), so
/// ext4's Orlov allocator spreads each snapshot or staging tree over the
/// block groups instead of packing it next to its siblings. Without it a
/// build right after a large `rm -rf` of an old store allocates its files
/// in the group just emptied, where ext4 (without a journal) skips every
/// recently freed inode one by one: copying 20,000 files took 5 to 12 s
/// instead of 0.6 s (docs/performance.md). Best effort: other file
/// systems reject the flag, and nothing depends on it.
fn mark_top_dir(dir: &Path) {
    let Ok(file) = File::open(dir) else {
        return;
    };
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS/SETFLAGS read and write one int through the
    // pointer, which points at a live local; the descriptor is ours.
    unsafe {
        if libc::ioctl(fd, libc::FS_IOC_GETFLAGS, &mut flags) != 0 || flags & FS_TOPDIR_FL != 0 {
            return;
        }
        flags |= FS_TOPDIR_FL;
        libc::ioctl(fd, libc::FS_IOC_SETFLAGS, &flags);
    }
}

fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .at(path)
}

/// Serialises a document as compact JSON.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Json {
        what: "document being written".to_owned(),
        source,
    })
}

/// Reads a JSON document file of at most [`MAX_DOCUMENT_SIZE`] bytes.
pub(crate) fn read_document(path: &Path) -> Result<Vec<u8>, StoreError> {
    let size = fs::metadata(path).at(path)?.len();
    if size > MAX_DOCUMENT_SIZE {
        return Err(StoreError::DocumentTooLarge {
            what: path.display().to_string(),
            size,
            limit: MAX_DOCUMENT_SIZE,
        });
    }
    fs::read(path).at(path)
}

/// Replaces `path` with `bytes`: write a temporary file in `staging` (a
/// directory on the same file system, normally [`Store::tmp_dir`], so
/// that a killed writer leaves its temporary file where the next command
/// removes it), fsync, rename over `path`, fsync `path`'s directory.
pub fn write_atomic(staging: &Path, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    write_renamed(staging, path, bytes, true)
}

/// Like [`write_atomic`] without the fsyncs: readers see the old bytes or
/// the new ones, but a power cut may leave the file empty or missing. For
/// what only saves time and is checked when read (build-cache records,
/// the stat cache), as build layers themselves are not fsynced either.
pub fn write_replace(staging: &Path, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    write_renamed(staging, path, bytes, false)
}

/// Writes a temporary file in `staging` and renames it over `path`; with
/// `durable`, the file and then `path`'s directory are fsynced.
fn write_renamed(
    staging: &Path,
    path: &Path,
    bytes: &[u8],
    durable: bool,
) -> Result<(), StoreError> {
    let mut file = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(staging)
        .at(staging)?;
    file.write_all(bytes).map_err(|source| StoreError::Write {
        what: path.display().to_string(),
        path: file.path().to_owned(),
        source,
    })?;
    if durable {
        file.as_file()
            .sync_all()
            .map_err(|source| StoreError::Write {
                what: path.display().to_string(),
                path: file.path().to_owned(),
                source,
            })?;
    }
    file.persist(path)
        .map_err(|e| StoreError::io(path, e.error))?;
    if durable && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Creates `dir` (mode 0700) if it is missing, and closes it to other
/// users if it is not.
fn close_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    match fs::DirBuilder::new().mode(PRIVATE_DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(StoreError::io(dir, e)),
    }
    let mode = fs::metadata(dir).at(dir)?.permissions().mode() & 0o7777;
    if mode != PRIVATE_DIR_MODE {
        fs::set_permissions(dir, fs::Permissions::from_mode(PRIVATE_DIR_MODE)).map_err(
            |source| StoreError::Permissions {
                path: dir.to_owned(),
                mode,
                source,
            },
        )?;
    }
    Ok(())
}

/// Creates this process's staging directory under `tmp` and locks it.
fn create_owner_dir(tmp: &Path) -> Result<(PathBuf, File), StoreError> {
    use std::os::unix::fs::DirBuilderExt as _;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // Several stores may be open in one process (tests, tools).
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let owner = crate::temp::Owner::current().tag();
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = tmp.join(format!("{OWNER_DIR_PREFIX}{owner}-{n}"));
        match fs::DirBuilder::new().mode(PRIVATE_DIR_MODE).create(&dir) {
            Ok(()) => {}
            // Left by an earlier process with this PID and start time:
            // impossible unless the clock of boots repeats; try the next.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(StoreError::io(&dir, e)),
        }
        let lock = File::open(&dir).at(&dir)?;
        lock.lock().at(&dir)?;
        mark_top_dir(&dir);
        return Ok((dir, lock));
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Whatever is still in the staging directory is this process's
        // garbage; should this fail, the next command removes it.
        if let Err(e) = remove_tree(&self.owner_dir) {
            log::debug!("cannot remove {}: {e}", self.owner_dir.display());
        }
    }
}

/// Removes a file or directory tree (a missing one is fine). Snapshot
/// trees may hold read-only directories and overlayfs leaves mode-0 work
/// directories, so directories are opened up first. The walk never
/// crosses into another file system: a mount left under a dead process's
/// staging directory (a bind mount of a host directory, say) makes the
/// removal fail with EBUSY instead of emptying what it shows.
pub fn remove_tree(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io(path, e)),
    };
    if !meta.is_dir() {
        return match fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::io(path, e)),
            _ => Ok(()),
        };
    }
    for entry in walkdir::WalkDir::new(path)
        .same_file_system(true)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_dir())
    {
        let _ = fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o700));
    }
    let mut first = true;
    for entry in walkdir::WalkDir::new(path)
        .same_file_system(true)
        .contents_first(true)
    {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e)
                if e.io_error()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound) =>
            {
                continue;
            }
            Err(e) => {
                let at = e.path().unwrap_or(path).to_owned();
                return Err(StoreError::io(at, std::io::Error::from(e)));
            }
        };
        let removed = if entry.file_type().is_dir() {
            fs::remove_dir(entry.path())
        } else {
            fs::remove_file(entry.path())
        };
        match removed {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(StoreError::io(entry.path(), e));
            }
            _ => {}
        }
        if first {
            first = false;
            // A tree half removed: what a kill in the middle leaves.
            crate::fault::point("remove.partial");
        }
    }
    Ok(())
}

/// Total size of the files under a directory (0 when it is missing).
pub fn disk_usage(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| !m.is_dir())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_replace_swaps_contents_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.json");
        write_replace(dir.path(), &path, b"one").unwrap();
        write_replace(dir.path(), &path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["record.json"]);
        // A missing directory is an error naming it, not a panic.
        let err = write_replace(dir.path(), &dir.path().join("no/such"), b"x").unwrap_err();
        assert!(err.to_string().contains("no"), "{err}");
    }

    #[test]
    fn remove_tree_never_empties_a_mount_below_it() {
        if !kiln_testkit::root("mounts a tmpfs") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        let mounted = tree.join("a/mnt");
        fs::create_dir_all(&mounted).unwrap();
        fs::write(tree.join("a/f"), b"x").unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            &mounted,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        fs::write(mounted.join("precious"), b"keep").unwrap();
        let error = remove_tree(&tree).unwrap_err();
        let kept = fs::read(mounted.join("precious"));
        nix::mount::umount(&mounted).unwrap();
        assert!(error.to_string().contains("mnt"), "{error}");
        assert_eq!(kept.unwrap(), b"keep");
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
    }

    #[test]
    fn open_closes_the_store_to_other_users() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o7777;
        drop(Store::open(&root).unwrap());
        for sub in std::iter::once("").chain(STORE_DIRS) {
            assert_eq!(mode(&root.join(sub)), 0o700, "{sub}");
            fs::set_permissions(root.join(sub), fs::Permissions::from_mode(0o755)).unwrap();
        }
        let store = Store::open(&root).unwrap();
        for sub in std::iter::once("").chain(STORE_DIRS) {
            assert_eq!(mode(&root.join(sub)), 0o700, "{sub}");
        }
        // The staging directory is private too, and goes with the store.
        let staging = store.tmp_dir();
        assert_eq!(mode(&staging), 0o700);
        drop(store);
        assert!(!staging.exists());
    }

    #[test]
    fn open_marks_staging_and_snapshot_dirs_as_top_directories() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for sub in [store.tmp_dir(), store.snapshots_dir()] {
            let file = File::open(&sub).unwrap();
            let mut flags: libc::c_int = 0;
            // SAFETY: FS_IOC_GETFLAGS writes one int to a live local.
            let rc = unsafe {
                libc::ioctl(
                    std::os::fd::AsRawFd::as_raw_fd(&file),
                    libc::FS_IOC_GETFLAGS,
                    &mut flags,
                )
            };
            if rc != 0 {
                // tmpfs and others have no inode flags: nothing to check.
                eprintln!(
                    "skipped: {} has no inode flags ({})",
                    sub.display(),
                    std::io::Error::last_os_error()
                );
                continue;
            }
            assert_ne!(flags & FS_TOPDIR_FL, 0, "{}", sub.display());
        }
    }
}
