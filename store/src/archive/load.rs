//! `kiln load`: reads an image archive in one streaming pass.
//!
//! Every file of the archive is hashed on its way to a staging directory
//! in the store's `tmp/` (files named `blobs/sha256/<hex>` whose blob the
//! store already has are hashed but not written). Only when the whole
//! archive has been read and every manifest, config, digest, size and
//! `diff_id` has been checked are the blobs moved into place; then each
//! image is prepared (its layers unpacked, by the caller) and only then
//! are the tags written, so a bad archive or a layer that cannot be
//! unpacked leaves no tag and no partial image.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;

use kiln_reference::{Digest, ImageReference};
use serde::Deserialize;

use super::clean_archive_path;
use crate::blobs::CopyError;
use crate::digest::{HashingReader, parse_sha256};
use crate::error::{IoContext, StoreError};
use crate::layer::compression::{Compression, decoder, media_type};
use crate::spec::{
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Descriptor, ImageConfig, Index, MAX_DOCUMENT_SIZE,
    Manifest, OCI_CONFIG, OCI_MANIFEST, is_index, is_manifest,
};
use crate::store::{Store, to_json};

/// Deepest chain of nested indexes followed.
const MAX_INDEX_DEPTH: usize = 8;
/// Longest chain of symlinks followed inside an archive.
const MAX_LINK_HOPS: usize = 16;

/// One image a load added to the store.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// The image ID (config digest).
    pub id: Digest,
    /// The manifest digest.
    pub manifest_digest: Digest,
    /// The tags it was loaded under (may be empty).
    pub tags: Vec<ImageReference>,
    /// The manifest's descriptor.
    pub descriptor: Descriptor,
}

/// A file read from the archive.
#[derive(Debug)]
enum Staged {
    /// Content in a staging file.
    File {
        path: PathBuf,
        digest: Digest,
        size: u64,
    },
    /// A blob the store already had; nothing was written.
    Present { digest: Digest, size: u64 },
    /// A symlink or hard link to another archive path (`None`: escapes).
    Link(Option<String>),
}

/// An entry of `manifest.json` in a `docker save` archive.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

/// Reads an archive (optionally gzip- or zstd-compressed as a whole) into
/// the store.
pub fn load_archive(store: &Store, input: impl Read) -> Result<Vec<LoadedImage>, StoreError> {
    load_archive_with(store, input, &mut |_| Ok(()))
}

/// [`load_archive`], calling `prepare` for each image once its blobs are
/// in the store but before any image is tagged (`kiln load` unpacks the
/// layers there). Loading is all or nothing: if reading, checking or
/// preparing any image fails, no image is tagged, and the blobs and
/// snapshots this load added are collected at once when no other kiln
/// process has the store open (else by the next `prune`).
pub fn load_archive_with(
    store: &Store,
    input: impl Read,
    prepare: &mut dyn FnMut(&LoadedImage) -> Result<(), StoreError>,
) -> Result<Vec<LoadedImage>, StoreError> {
    let mut linked = false;
    let result = load(store, input, prepare, &mut linked);
    if result.is_err() && linked {
        match store.collect_garbage_if_idle() {
            Ok(Some(report)) => log::debug!(
                "failed load: removed {} blobs and {} snapshots",
                report.blobs.len(),
                report.snapshots.len()
            ),
            Ok(None) => log::info!("store busy: the failed load's blobs are left for a prune"),
            Err(e) => log::warn!("cannot collect the failed load's blobs: {e}"),
        }
    }
    result
}

fn load(
    store: &Store,
    input: impl Read,
    prepare: &mut dyn FnMut(&LoadedImage) -> Result<(), StoreError>,
    linked: &mut bool,
) -> Result<Vec<LoadedImage>, StoreError> {
    let mut input = BufReader::with_capacity(1 << 20, input);
    let head = input.fill_buf().at("archive")?;
    if head.is_empty() {
        return Err(StoreError::Archive(
            "empty input: expected a tar archive".to_owned(),
        ));
    }
    let compression = Compression::detect(head);
    let mut tar_stream = BufReader::with_capacity(1 << 20, decoder(input, compression));
    check_tar_header(&mut tar_stream)?;
    let staging = tempfile::Builder::new()
        .prefix("load-")
        .tempdir_in(store.tmp_dir())
        .at(store.tmp_dir())?;
    let files = stage(store, tar_stream, staging.path())?;
    let archive = Archive { store, files };
    let plans = archive.plan()?;
    let mut loaded = Vec::new();
    for plan in &plans {
        *linked = true;
        let image = archive.link(plan)?;
        prepare(&image)?;
        crate::fault::point("load.prepared");
        loaded.push(image);
    }
    // Every image is in the store and prepared: only now are they named.
    for image in &loaded {
        store.add_image(&image.descriptor, &image.tags)?;
    }
    Ok(loaded)
}

/// Refuses input that does not start with a tar header, with a message
/// that says so rather than the tar reader's checksum complaint.
fn check_tar_header(stream: &mut impl BufRead) -> Result<(), StoreError> {
    let head = stream.fill_buf().at("archive")?;
    if head.len() < 512 {
        return Err(StoreError::Archive(
            "not a tar archive (shorter than one tar header)".to_owned(),
        ));
    }
    let Some(header) = head.get(..512) else {
        return Err(StoreError::Archive("not a tar archive".to_owned()));
    };
    if header.iter().all(|&b| b == 0) {
        return Ok(());
    }
    let stored = header.get(148..156).map(parse_octal);
    let computed: u64 = header
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    if stored != Some(Some(computed)) {
        return Err(StoreError::Archive(
            "not a tar archive (bad header checksum in the first block)".to_owned(),
        ));
    }
    Ok(())
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    u64::from_str_radix(text, 8).ok()
}

/// Reads every entry of the tar stream into the staging directory.
fn stage(
    store: &Store,
    stream: impl Read,
    staging: &std::path::Path,
) -> Result<HashMap<String, Staged>, StoreError> {
    let mut archive = tar::Archive::new(stream);
    let mut files = HashMap::new();
    let entries = archive
        .entries()
        .map_err(|e| StoreError::Archive(format!("cannot read tar: {e}")))?;
    for (number, entry) in entries.enumerate() {
        let mut entry = entry.map_err(|e| {
            StoreError::Archive(format!(
                "truncated or corrupt tar at entry {}: {e}",
                number + 1
            ))
        })?;
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(path) = clean_archive_path(&raw_path) else {
            // Remembered so that a reference to it says what is wrong.
            files.insert(raw_path, Staged::Link(None));
            continue;
        };
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .unwrap_or_default();
            let resolved = if kind.is_symlink() && !target.starts_with('/') {
                let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                clean_archive_path(&format!("{dir}/{target}"))
            } else if kind.is_symlink() {
                None
            } else {
                clean_archive_path(&target)
            };
            files.insert(path, Staged::Link(resolved));
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let expected_size = entry.header().size().ok();
        let staged = stage_file(
            store,
            &mut entry,
            &path,
            expected_size,
            staging.join(format!("{number}")),
        )?;
        files.insert(path, staged);
    }
    Ok(files)
}

/// Hashes one file of the archive (or layout) on its way to `staged_path`;
/// a blob the store already has is hashed only. A file named
/// `blobs/sha256/<hex>` must hash to that digest.
fn stage_file(
    store: &Store,
    input: &mut dyn Read,
    path: &str,
    expected_size: Option<u64>,
    staged_path: PathBuf,
) -> Result<Staged, StoreError> {
    let what = format!("archive entry {path}");
    let named = path
        .strip_prefix("blobs/sha256/")
        .and_then(|hex| parse_sha256(&format!("sha256:{hex}")).ok());
    if let Some(digest) = named.clone().filter(|d| store.blobs().contains(d)) {
        let mut hashing = HashingReader::new(input);
        io::copy(&mut hashing, &mut io::sink())
            .map_err(|e| StoreError::Archive(format!("truncated archive in {path}: {e}")))?;
        let (actual, size) = hashing.finish();
        if actual != digest {
            return Err(StoreError::DigestMismatch {
                what,
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        return Ok(Staged::Present { digest, size });
    }
    let write_error = |source| StoreError::Write {
        what: format!("archive entry {path}"),
        path: staged_path.clone(),
        source,
    };
    let file = File::create(&staged_path).map_err(write_error)?;
    let mut writer = io::BufWriter::with_capacity(1 << 20, file);
    let mut hashing = HashingReader::new(input);
    crate::blobs::copy(&mut hashing, &mut writer).map_err(|e| match e {
        CopyError::Read(e) => StoreError::Archive(format!("truncated archive in {path}: {e}")),
        CopyError::Write(e) => write_error(e),
    })?;
    let (digest, size) = hashing.finish();
    let expected_size = expected_size.unwrap_or(size);
    if size != expected_size {
        return Err(StoreError::Archive(format!(
            "truncated archive in {path}: {size} of {expected_size} bytes"
        )));
    }
    writer
        .into_inner()
        .map_err(|e| write_error(e.into_error()))?;
    crate::fault::point("load.staged");
    if let Some(named) = named
        && named != digest
    {
        return Err(StoreError::DigestMismatch {
            what,
            expected: named.to_string(),
            actual: digest.to_string(),
        });
    }
    Ok(Staged::File {
        path: staged_path,
        digest,
        size,
    })
}

/// Which image of an OCI layout directory to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutSelector {
    /// The index.json entry whose `org.opencontainers.image.ref.name` is
    /// this tag, else the only entry (as buildx's `resolveDigest`).
    Tag(String),
    /// The manifest or index with this digest.
    Digest(Digest),
}

/// Loads one image of an OCI image layout directory (`oci-layout://` build
/// contexts) into the store, untagged, with the checks of
/// [`load_archive`]: the layout is read as an archive would be, its
/// `index.json` and `blobs/sha256/*` files resolved inside the directory
/// (a symlink cannot reach outside it) and each hashed against its name.
pub fn load_layout(
    store: &Store,
    dir: &std::path::Path,
    selector: &LayoutSelector,
) -> Result<LoadedImage, StoreError> {
    let mut linked = false;
    let result = load_layout_inner(store, dir, selector, &mut linked);
    if result.is_err() && linked {
        // As a failed load: what it added goes when the store is idle.
        if let Ok(None) | Err(_) = store.collect_garbage_if_idle() {
            log::info!("the failed layout load's blobs are left for a prune");
        }
    }
    result
}

fn load_layout_inner(
    store: &Store,
    dir: &std::path::Path,
    selector: &LayoutSelector,
    linked: &mut bool,
) -> Result<LoadedImage, StoreError> {
    use nix::fcntl::OFlag;
    let root = kiln_rootfs::Root::open(dir).at(dir)?;
    let staging = tempfile::Builder::new()
        .prefix("load-")
        .tempdir_in(store.tmp_dir())
        .at(store.tmp_dir())?;
    let mut files = HashMap::new();
    let mut stage_path = |path: String, number: usize| -> Result<(), StoreError> {
        // O_NONBLOCK: a FIFO or device of that name must not block the
        // open; only regular files are read.
        let fd = root
            .open_at(&path, OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY)
            .at(dir.join(&path))?;
        let mut file = File::from(fd);
        let meta = file.metadata().at(dir.join(&path))?;
        if !meta.is_file() {
            return Ok(());
        }
        let staged = stage_file(
            store,
            &mut file,
            &path,
            Some(meta.len()),
            staging.path().join(format!("{number}")),
        )?;
        files.insert(path, staged);
        Ok(())
    };
    if root
        .open_at("index.json", OFlag::O_PATH)
        .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
    {
        return Err(StoreError::Archive(format!(
            "{} has no index.json: not an OCI image layout",
            dir.display()
        )));
    }
    stage_path("index.json".to_owned(), 0)?;
    let blobs = root
        .open_at("blobs/sha256", OFlag::O_RDONLY | OFlag::O_DIRECTORY)
        .at(dir.join("blobs/sha256"))?;
    let mut names = Vec::new();
    for entry in nix::dir::Dir::from_fd(blobs)
        .map_err(io::Error::from)
        .at(dir.join("blobs/sha256"))?
        .iter()
    {
        let entry = entry
            .map_err(io::Error::from)
            .at(dir.join("blobs/sha256"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if parse_sha256(&format!("sha256:{name}")).is_ok() {
            names.push(name);
        }
    }
    for (number, name) in names.into_iter().enumerate() {
        stage_path(format!("blobs/sha256/{name}"), number + 1)?;
    }
    let archive = Archive { store, files };
    let (index, _): (Index, _) = archive.parse("index.json", "the layout")?;
    let descriptor = match selector {
        LayoutSelector::Tag(tag) => index
            .manifests
            .iter()
            .find(|d| d.annotation(ANNOTATION_REF_NAME) == Some(tag.as_str()))
            .or(match index.manifests.as_slice() {
                [only] => Some(only),
                _ => None,
            })
            .cloned()
            .ok_or_else(|| {
                StoreError::Archive(format!(
                    "no image tagged {tag:?} in {}/index.json (and it lists {} images, not one)",
                    dir.display(),
                    index.manifests.len()
                ))
            })?,
        LayoutSelector::Digest(digest) => {
            let listed = index
                .manifests
                .iter()
                .find(|d| d.digest == digest.to_string());
            if let Some(d) = listed {
                d.clone()
            } else {
                // Any manifest or index blob of the layout, as BuildKit's
                // content store finds it; its own size stands.
                let path = format!("blobs/sha256/{}", digest.encoded());
                let (_, size) = archive.digest_of(&path, "the layout")?;
                Descriptor::new("", &digest.to_string(), size)
            }
        }
    };
    let mut plans = Vec::new();
    archive.plan_descriptor(&descriptor, Vec::new(), 0, &mut plans)?;
    let Some(plan) = plans.pop() else {
        return Err(StoreError::Archive(format!(
            "{} holds no image at {}",
            dir.display(),
            descriptor.digest
        )));
    };
    *linked = true;
    let image = archive.link(&plan)?;
    store.add_image(&image.descriptor, &[])?;
    Ok(image)
}

/// An image found in the archive, checked and ready to commit.
#[derive(Debug)]
struct Plan {
    /// Raw manifest bytes (from the archive, or made for a legacy entry).
    manifest_bytes: Vec<u8>,
    manifest: Manifest,
    /// Archive paths of config and layers, in manifest order.
    blob_paths: Vec<String>,
    tags: Vec<ImageReference>,
}

struct Archive<'a> {
    store: &'a Store,
    files: HashMap<String, Staged>,
}

impl Archive<'_> {
    /// Follows links to the staged content of an archive path.
    fn lookup(&self, path: &str, referrer: &str) -> Result<(&Staged, String), StoreError> {
        let mut current = clean_archive_path(path).ok_or_else(|| {
            StoreError::Archive(format!("{referrer} points outside the archive: {path}"))
        })?;
        for _ in 0..MAX_LINK_HOPS {
            match self.files.get(&current) {
                None => {
                    return Err(StoreError::Archive(format!(
                        "{referrer} refers to {path}, which is not in the archive"
                    )));
                }
                Some(Staged::Link(None)) => {
                    return Err(StoreError::Archive(format!(
                        "{referrer} refers to {path}, which points outside the archive"
                    )));
                }
                Some(Staged::Link(Some(target))) => current.clone_from(target),
                Some(staged) => return Ok((staged, current)),
            }
        }
        Err(StoreError::Archive(format!(
            "{referrer} refers to {path}: too many levels of links"
        )))
    }

    fn digest_of(&self, path: &str, referrer: &str) -> Result<(Digest, u64), StoreError> {
        match self.lookup(path, referrer)?.0 {
            Staged::File { digest, size, .. } | Staged::Present { digest, size } => {
                Ok((digest.clone(), *size))
            }
            Staged::Link(_) => Err(StoreError::Archive(format!("{referrer}: bad link {path}"))),
        }
    }

    /// Opens the content of an archive path.
    fn open(&self, path: &str, referrer: &str) -> Result<Box<dyn Read>, StoreError> {
        match self.lookup(path, referrer)?.0 {
            Staged::File { path: staged, .. } => {
                Ok(Box::new(File::open(staged).at(staged.clone())?))
            }
            Staged::Present { digest, .. } => Ok(Box::new(self.store.blobs().open(digest)?)),
            Staged::Link(_) => Err(StoreError::Archive(format!("{referrer}: bad link {path}"))),
        }
    }

    /// Reads a JSON document of the archive, refusing oversized ones.
    fn read_document(&self, path: &str, referrer: &str) -> Result<Vec<u8>, StoreError> {
        let (_, size) = self.digest_of(path, referrer)?;
        if size > MAX_DOCUMENT_SIZE {
            return Err(StoreError::DocumentTooLarge {
                what: format!("archive entry {path}"),
                size,
                limit: MAX_DOCUMENT_SIZE,
            });
        }
        let mut bytes = Vec::new();
        self.open(path, referrer)?
            .read_to_end(&mut bytes)
            .at(format!("archive entry {path}"))?;
        Ok(bytes)
    }

    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        referrer: &str,
    ) -> Result<(T, Vec<u8>), StoreError> {
        let bytes = self.read_document(path, referrer)?;
        let value = serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            what: format!("archive entry {path}"),
            source,
        })?;
        Ok((value, bytes))
    }

    /// Finds every image in the archive and checks it.
    fn plan(&self) -> Result<Vec<Plan>, StoreError> {
        let has_index = self.files.contains_key("index.json");
        let has_manifest = self.files.contains_key("manifest.json");
        let mut plans = Vec::new();
        if has_index {
            let (index, _): (Index, _) = self.parse("index.json", "the archive")?;
            if !index.manifests.is_empty() || !has_manifest {
                for entry in &index.manifests {
                    let tags = names_of(entry);
                    self.plan_descriptor(entry, tags, 0, &mut plans)?;
                }
                if plans.is_empty() {
                    return Err(StoreError::Archive("index.json lists no images".to_owned()));
                }
                return Ok(plans);
            }
        }
        if !has_manifest {
            return Err(StoreError::Archive(
                "no manifest.json or index.json: not a docker or OCI image archive".to_owned(),
            ));
        }
        let (entries, _): (Vec<DockerManifestEntry>, _) =
            self.parse("manifest.json", "the archive")?;
        if entries.is_empty() {
            return Err(StoreError::Archive(
                "manifest.json lists no images".to_owned(),
            ));
        }
        for entry in entries {
            plans.push(self.plan_legacy(&entry)?);
        }
        Ok(plans)
    }

    fn plan_descriptor(
        &self,
        descriptor: &Descriptor,
        tags: Vec<ImageReference>,
        depth: usize,
        plans: &mut Vec<Plan>,
    ) -> Result<(), StoreError> {
        let digest = parse_sha256(&descriptor.digest)?;
        let path = format!("blobs/sha256/{}", digest.encoded());
        let referrer = if depth == 0 {
            "index.json"
        } else {
            "a nested index"
        };
        let (actual, size) = self.digest_of(&path, referrer)?;
        check_descriptor(descriptor, &actual, size, &path)?;
        let (value, bytes): (serde_json::Value, _) = self.parse(&path, referrer)?;
        let media_type = value
            .get("mediaType")
            .and_then(serde_json::Value::as_str)
            .unwrap_or(&descriptor.media_type)
            .to_owned();
        if is_index(&media_type) || value.get("manifests").is_some() {
            if depth >= MAX_INDEX_DEPTH {
                return Err(StoreError::Archive(format!(
                    "indexes nested too deeply at {path}"
                )));
            }
            let index: Index =
                serde_json::from_value(value).map_err(|source| StoreError::Json {
                    what: format!("archive entry {path}"),
                    source,
                })?;
            let Some(child) = pick_platform(&index.manifests) else {
                return Err(StoreError::Archive(format!("index {path} lists no images")));
            };
            return self.plan_descriptor(child, tags, depth + 1, plans);
        }
        if !is_manifest(&media_type) && value.get("config").is_none() {
            return Err(StoreError::Archive(format!(
                "{path} is not an image manifest (media type {media_type:?})"
            )));
        }
        let manifest: Manifest =
            serde_json::from_value(value).map_err(|source| StoreError::Json {
                what: format!("archive entry {path}"),
                source,
            })?;
        let mut blob_paths = Vec::new();
        let config_digest = parse_sha256(&manifest.config.digest)?;
        let config_path = format!("blobs/sha256/{}", config_digest.encoded());
        let (actual, size) = self.digest_of(&config_path, &path)?;
        check_descriptor(&manifest.config, &actual, size, &config_path)?;
        let (config, _): (ImageConfig, _) = self.parse(&config_path, &path)?;
        blob_paths.push(config_path);
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(StoreError::InvalidDocument {
                what: format!("image {config_digest}"),
                reason: format!(
                    "manifest has {} layers but config has {} diff_ids",
                    manifest.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            });
        }
        for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            let digest = parse_sha256(&layer.digest)?;
            let layer_path = format!("blobs/sha256/{}", digest.encoded());
            let (actual, size) = self.digest_of(&layer_path, &path)?;
            check_descriptor(layer, &actual, size, &layer_path)?;
            self.check_diff_id(&layer_path, &actual, diff_id)?;
            blob_paths.push(layer_path);
        }
        plans.push(Plan {
            manifest_bytes: bytes,
            manifest,
            blob_paths,
            tags,
        });
        // The manifest blob itself goes in too.
        if let Some(plan) = plans.last_mut() {
            plan.blob_paths.push(path);
        }
        Ok(())
    }

    /// Checks that a layer's uncompressed content hashes to its `diff_id`.
    fn check_diff_id(&self, path: &str, digest: &Digest, diff_id: &str) -> Result<(), StoreError> {
        let expected = parse_sha256(diff_id)?;
        let mut reader = BufReader::with_capacity(1 << 20, self.open(path, "the image")?);
        let compression = Compression::detect(reader.fill_buf().at(path)?);
        let actual = if compression == Compression::None {
            digest.clone()
        } else {
            let mut hashing = HashingReader::new(decoder(reader, compression));
            io::copy(&mut hashing, &mut io::sink())
                .map_err(|e| StoreError::Archive(format!("cannot decompress layer {path}: {e}")))?;
            let (actual, size) = hashing.finish();
            if actual == expected {
                self.store.record_diff(digest, &actual, size)?;
            }
            actual
        };
        if actual != expected {
            return Err(StoreError::DiffIdMismatch {
                layer: path.to_owned(),
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(())
    }

    /// A `docker save` manifest.json entry becomes an OCI manifest.
    fn plan_legacy(&self, entry: &DockerManifestEntry) -> Result<Plan, StoreError> {
        let (config_digest, config_size) = self.digest_of(&entry.config, "manifest.json")?;
        let (config, _): (ImageConfig, _) = self.parse(&entry.config, "manifest.json")?;
        if config.rootfs.diff_ids.len() != entry.layers.len() {
            return Err(StoreError::InvalidDocument {
                what: format!("image {config_digest}"),
                reason: format!(
                    "manifest.json lists {} layers but config has {} diff_ids",
                    entry.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            });
        }
        let mut blob_paths = vec![entry.config.clone()];
        let mut layers = Vec::new();
        for (layer_path, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
            let (digest, size) = self.digest_of(layer_path, "manifest.json")?;
            self.check_diff_id(layer_path, &digest, diff_id)?;
            let mut head = [0u8; 8];
            let read = self
                .open(layer_path, "manifest.json")?
                .read(&mut head)
                .at(layer_path)?;
            let compression = Compression::detect(head.get(..read).unwrap_or_default());
            layers.push(Descriptor::new(
                media_type(compression, false),
                &digest.to_string(),
                size,
            ));
            blob_paths.push(layer_path.clone());
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: OCI_MANIFEST.to_owned(),
            config: Descriptor::new(OCI_CONFIG, &config_digest.to_string(), config_size),
            layers,
            annotations: None,
            extra: BTreeMap::new(),
        };
        let mut tags = Vec::new();
        for tag in entry.repo_tags.iter().flatten() {
            tags.push(parse_tag(tag)?);
        }
        Ok(Plan {
            manifest_bytes: to_json(&manifest)?,
            manifest,
            blob_paths,
            tags,
        })
    }

    /// Moves an image's blobs into the store (not tagged yet).
    fn link(&self, plan: &Plan) -> Result<LoadedImage, StoreError> {
        for path in &plan.blob_paths {
            if let (
                Staged::File {
                    path: staged,
                    digest,
                    ..
                },
                _,
            ) = self.lookup(path, "the image")?
            {
                let target = self.store.blobs().path(digest);
                if !target.exists() {
                    File::open(staged)
                        .and_then(|f| f.sync_all())
                        .at(staged.clone())?;
                    // Staging is on the store's file system, so a link is
                    // enough. Another load may have linked the same blob
                    // first: content-addressed and verified, so that is
                    // success, and the file is never rewritten in place.
                    match std::fs::hard_link(staged, &target) {
                        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                            return Err(StoreError::io(&target, e));
                        }
                        _ => crate::fault::point("load.linked"),
                    }
                }
            }
        }
        crate::blobs::sync_dir(&self.store.root().join("blobs/sha256"))?;
        let manifest_digest = self.store.blobs().write_bytes(&plan.manifest_bytes)?;
        let media_type = if plan.manifest.media_type.is_empty() {
            OCI_MANIFEST.to_owned()
        } else {
            plan.manifest.media_type.clone()
        };
        let descriptor = Descriptor::new(
            &media_type,
            &manifest_digest.to_string(),
            plan.manifest_bytes.len() as u64,
        );
        Ok(LoadedImage {
            id: parse_sha256(&plan.manifest.config.digest)?,
            manifest_digest,
            tags: plan.tags.clone(),
            descriptor,
        })
    }
}

/// Checks a descriptor's digest and size against the content found.
fn check_descriptor(
    descriptor: &Descriptor,
    actual: &Digest,
    size: u64,
    path: &str,
) -> Result<(), StoreError> {
    if descriptor.digest != actual.to_string() {
        return Err(StoreError::DigestMismatch {
            what: format!("archive entry {path}"),
            expected: descriptor.digest.clone(),
            actual: actual.to_string(),
        });
    }
    if u64::try_from(descriptor.size).ok() != Some(size) {
        return Err(StoreError::SizeMismatch {
            what: format!("archive entry {path}"),
            expected: u64::try_from(descriptor.size).unwrap_or(0),
            actual: size,
        });
    }
    Ok(())
}

/// The names an index.json entry gives its image: containerd's full-name
/// annotation (Docker 25+), else the OCI ref.name when it is a full
/// reference. A bare tag such as `latest` names no repository, so the
/// image loads untagged, as with Docker.
fn names_of(entry: &Descriptor) -> Vec<ImageReference> {
    let candidates = [
        entry.annotation(ANNOTATION_IMAGE_NAME),
        entry.annotation(ANNOTATION_REF_NAME),
    ];
    for name in candidates.into_iter().flatten() {
        if !name.contains(['/', ':', '@']) {
            continue;
        }
        if let Ok(reference) = kiln_reference::parse_normalized_named(name) {
            return vec![reference.tag_name_only()];
        }
    }
    Vec::new()
}

/// Parses a `RepoTags` entry.
fn parse_tag(tag: &str) -> Result<ImageReference, StoreError> {
    kiln_reference::parse_normalized_named(tag)
        .map(ImageReference::tag_name_only)
        .map_err(|source| StoreError::InvalidReference {
            reference: tag.to_owned(),
            source,
        })
}

/// Picks the entry of an index for this machine's platform (linux and the
/// host architecture), else the first image entry.
fn pick_platform(entries: &[Descriptor]) -> Option<&Descriptor> {
    let arch = host_architecture();
    entries
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
        .or_else(|| {
            entries
                .iter()
                .find(|d| d.platform.as_ref().is_none_or(|p| p.os != "unknown"))
        })
}

/// The OCI name of the host architecture.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}
