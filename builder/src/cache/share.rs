//! A build cache shared between machines (`kiln build --cache-to` and
//! `--cache-from`): the records of a build's steps and the layers they
//! name, written as an OCI artifact to a local OCI image layout directory
//! or to a registry repository, and read back by another machine.
//!
//! The artifact is an OCI image index (the layout's `index.json`, or the
//! index tagged in the registry) naming one image manifest with
//! `artifactType` [`ARTIFACT_TYPE`]; its config blob ([`CONFIG_TYPE`]) is
//! a JSON document `{"version": 1, "records": [...]}` of cache records
//! exactly as `cache/*.json` holds them (operation inputs included), and
//! its layers are the layer blobs the records name, as the store keeps
//! them. A small layer (at most [`INLINE_MAX`] bytes, up to
//! [`INLINE_TOTAL`] in all) is not a blob of its own: its record's
//! descriptor carries it in `data` (base64, as OCI 1.1 descriptors embed
//! content), so that an export of many small steps is one upload, not a
//! round trip per layer; an import reads those with the records.
//!
//! Nothing read is trusted but through digests: a record is taken only if
//! its key is the digest of the operation it carries (so it answers only
//! the step whose inputs are those) and its layer is one the manifest
//! lists or one it carries whose bytes match the digest; a layer is fetched (checked against its digest and size) only
//! when the build needs its files or the image needs the blob, and
//! unpacked with its `diff_id` checked. A record that fails a check is
//! refused and the step runs.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_store::digest::parse_sha256;
use kiln_store::registry::Client;
use kiln_store::spec::{Descriptor, Manifest, OCI_MANIFEST};
use kiln_store::{Digest, ImageReference, Store};
use nix::fcntl::OFlag;
use serde::{Deserialize, Serialize};

use super::{CacheRecord, RECORD_VERSION};
use crate::error::BuildError;
use crate::ops::Op;

/// The `artifactType` of an exported build cache's manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.kiln.build-cache.v1";
/// The media type of its config blob: the records.
pub const CONFIG_TYPE: &str = "application/vnd.kiln.build-cache.records.v1+json";
/// The key of an image config's inline cache (`--cache-to type=inline`):
/// a records document as the artifact's config holds it, whose layers are
/// the image's own, named by `diff_id`.
pub const INLINE_KEY: &str = "kiln.build-cache.v1";
/// The version of the records document.
const DOCUMENT_VERSION: u32 = 1;
/// Blobs a cache export sends at once: its layers are many and often
/// small, so the requests' round trips, not bandwidth, bound it.
const CACHE_UPLOADS: usize = 8;
/// Blobs of an export below this go up without a HEAD first: the records
/// document is new on nearly every export, and for a small blob the
/// upload costs what the question would.
const UNCHECKED_BELOW: u64 = 64 << 10;
/// The largest `index.json`, manifest or records document read.
const MAX_DOCUMENT: u64 = 64 << 20;
/// The largest layer (as exported, compressed) a record carries in its
/// descriptor's `data` instead of naming a blob: below this a blob's
/// upload is all round trips (a HEAD, POST and PUT, each a registry
/// write), which cost more than the bytes.
pub const INLINE_MAX: u64 = 16 << 10;
/// The most layer bytes one records document carries: beyond it, layers
/// are blobs again, so that an import does not fetch much it may not
/// need.
const INLINE_TOTAL: u64 = 1 << 20;
/// The descriptor field (OCI 1.1) that carries a layer's bytes.
const DATA: &str = "data";

/// The config blob of an exported cache.
#[derive(Serialize, Deserialize, Debug)]
struct RecordsDocument {
    version: u32,
    records: Vec<CacheRecord>,
}

/// Where a shared cache is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLocation {
    /// An OCI image layout directory.
    Local(PathBuf),
    /// A registry repository and tag.
    Registry(ImageReference),
}

impl std::fmt::Display for CacheLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(dir) => write!(f, "{}", dir.display()),
            Self::Registry(reference) => write!(f, "{reference}"),
        }
    }
}

/// Told of each layer a build records ([`crate::BuildOptions::layer_recorded`]).
pub trait LayerRecorded: std::fmt::Debug + Send + Sync {
    /// `record` (which has a layer) is in the store's cache.
    fn layer_recorded(&self, record: &CacheRecord);

    /// Every step has its record: the keys `mode=min` and `mode=max`
    /// export are known, and only the image's commit is left.
    fn steps_done(&self, _keys_min: &[String], _keys_max: &[String]) {}
}

/// Which steps `--cache-to` exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// The steps of the final image (BuildKit's default).
    #[default]
    Min,
    /// Every step of every stage the build ran or found.
    Max,
}

fn failed(location: &CacheLocation, reason: impl std::fmt::Display) -> BuildError {
    BuildError::SharedCache {
        location: location.to_string(),
        reason: reason.to_string(),
    }
}

/// The records read from `--cache-from` locations, each checked, and where
/// their layers can be fetched from.
#[derive(Default)]
pub struct CacheImport {
    records: HashMap<String, CacheRecord>,
    /// Layer digest -> the location that lists it.
    layers: HashMap<String, usize>,
    /// Layer digest -> its bytes, carried by a record (checked).
    inline: HashMap<String, Vec<u8>>,
    /// Layer digest -> its recipe ([`super::recipe`]) and the location
    /// that lists it.
    recipes: HashMap<String, (Descriptor, usize)>,
    /// The build context recipes are remade from.
    context: Option<PathBuf>,
    locations: Vec<CacheLocation>,
    client: Option<Arc<Client>>,
    refused: std::sync::atomic::AtomicUsize,
    warnings: Vec<String>,
    /// Layers found poisoned during the build: their records are refused.
    poisoned: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for CacheImport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheImport")
            .field("records", &self.records.len())
            .field("locations", &self.locations)
            .field("refused", &self.refused())
            .finish_non_exhaustive()
    }
}

impl CacheImport {
    /// Reads the records of every location. A location that has no cache
    /// yet (a first run) or cannot be read is skipped with a warning
    /// ([`Self::warnings`]), as BuildKit skips it: the steps then run.
    /// `client` reaches registries.
    pub fn load(locations: &[CacheLocation], client: Option<Arc<Client>>) -> Self {
        let mut import = Self {
            client,
            ..Self::default()
        };
        for location in locations {
            let read = match location {
                CacheLocation::Local(dir) => read_layout(dir)
                    .map(|found| found.map(|pair| vec![pair]))
                    .map_err(|e| failed(location, e)),
                CacheLocation::Registry(reference) => import
                    .read_registry(reference)
                    .map_err(|e| failed(location, e)),
            };
            let found = match read {
                Ok(Some(found)) => found,
                Ok(None) => {
                    import.warnings.push(format!(
                        "build cache {location}: not found, nothing imported"
                    ));
                    continue;
                }
                Err(e) => {
                    import
                        .warnings
                        .push(format!("{e}; nothing imported from it"));
                    continue;
                }
            };
            let index = import.locations.len();
            import.locations.push(location.clone());
            for (manifest, document) in found {
                import.take(location, index, &manifest, document);
            }
        }
        import
    }

    /// Takes the records of `document` that pass their checks against
    /// `manifest` (from `location`, the `index`th).
    fn take(
        &mut self,
        location: &CacheLocation,
        index: usize,
        manifest: &Manifest,
        document: RecordsDocument,
    ) {
        let listed: HashMap<&str, &Descriptor> = manifest
            .layers
            .iter()
            .map(|d| (d.digest.as_str(), d))
            .collect();
        for mut record in document.records {
            match check_record(&mut record, &listed) {
                Ok(carried) => {
                    if let Some(layer) = &record.layer {
                        let digest = layer.descriptor.digest.clone();
                        match carried {
                            Some(Carried::Bytes(bytes)) => {
                                self.inline.entry(digest).or_insert(bytes);
                            }
                            Some(Carried::Recipe(recipe)) => {
                                self.recipes.entry(digest).or_insert((*recipe, index));
                            }
                            None => {
                                self.layers.entry(digest).or_insert(index);
                            }
                        }
                    }
                    self.records.entry(record.key.clone()).or_insert(record);
                }
                Err(why) => {
                    self.warnings.push(format!(
                        "build cache {location}: record {} ({}) refused: {why}",
                        record.key, record.description
                    ));
                    self.refused
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    }

    /// Sets the build context that layers with a recipe are remade from
    /// (without one, such a layer cannot be had and its records are
    /// refused when it is needed).
    #[must_use]
    pub fn with_context(mut self, dir: PathBuf) -> Self {
        self.context = Some(dir);
        self
    }

    /// What could not be read, one line each.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn read_registry(
        &self,
        reference: &ImageReference,
    ) -> Result<Option<Vec<(Manifest, RecordsDocument)>>, String> {
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| "no registry client".to_owned())?;
        let fetched = match kiln_store::registry::artifact::fetch_artifact(
            client,
            reference,
            ARTIFACT_TYPE,
        ) {
            Ok(fetched) => fetched,
            Err(kiln_store::registry::RegistryError::ManifestUnknown { .. }) => {
                return Ok(None);
            }
            Err(e) => return Err(e.to_string()),
        };
        let mut found = Vec::new();
        let mut missing = None;
        for artifact in fetched {
            if artifact.manifest.config.media_type == CONFIG_TYPE {
                let document = parse_document(&artifact.config)?;
                return Ok(Some(vec![(artifact.manifest, document)]));
            }
            // An image (one platform's, in an index): its inline cache,
            // if it has one.
            match inline_records(artifact.manifest, &artifact.config) {
                Ok(records) => found.push(records),
                Err(e) => missing = Some(e),
            }
        }
        match (found.is_empty(), missing) {
            (true, Some(e)) => Err(e),
            _ => Ok(Some(found)),
        }
    }

    /// The registry repositories that hold the imported layers among
    /// `digests`: (registry domain, repository path, the digests it
    /// holds), for a push to mount them from.
    pub fn registry_sources<'a>(
        &self,
        digests: impl IntoIterator<Item = &'a str>,
    ) -> Vec<(String, String, std::collections::BTreeSet<String>)> {
        let mut sources: Vec<(String, String, std::collections::BTreeSet<String>)> = Vec::new();
        for digest in digests {
            let Some(CacheLocation::Registry(reference)) =
                self.layers.get(digest).and_then(|i| self.locations.get(*i))
            else {
                continue;
            };
            let (domain, path) = (reference.domain(), reference.path());
            match sources
                .iter_mut()
                .find(|(d, p, _)| d == domain && p == path)
            {
                Some((_, _, set)) => {
                    set.insert(digest.to_owned());
                }
                None => sources.push((
                    domain.to_owned(),
                    path.to_owned(),
                    std::iter::once(digest.to_owned()).collect(),
                )),
            }
        }
        sources
    }

    /// The imported record of step key `key` (none for a record whose
    /// layer was refused).
    pub fn get(&self, key: &str) -> Option<&CacheRecord> {
        let record = self.records.get(key)?;
        match &record.layer {
            Some(layer) if self.is_poisoned(&layer.descriptor.digest) => None,
            _ => Some(record),
        }
    }

    fn is_poisoned(&self, digest: &str) -> bool {
        self.poisoned
            .lock()
            .map_or(true, |poisoned| poisoned.contains(digest))
    }

    /// Refuses every record naming layer `digest` (it could not be had
    /// whole); false when it was refused already or no record names it.
    pub fn refuse_layer(&self, digest: &str) -> bool {
        if !self.layers.contains_key(digest)
            && !self.inline.contains_key(digest)
            && !self.recipes.contains_key(digest)
        {
            return false;
        }
        let Ok(mut poisoned) = self.poisoned.lock() else {
            return false;
        };
        let new = poisoned.insert(digest.to_owned());
        if new {
            self.refused.fetch_add(
                self.records
                    .values()
                    .filter(|r| {
                        r.layer
                            .as_ref()
                            .is_some_and(|l| l.descriptor.digest == digest)
                    })
                    .count(),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        new
    }

    /// How many records were read and taken.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record was taken.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// How many records failed their checks.
    pub fn refused(&self) -> usize {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The imported records whose layer is `digest`.
    pub fn records_with_layer<'a>(
        &'a self,
        digest: &'a str,
    ) -> impl Iterator<Item = &'a CacheRecord> + 'a {
        self.records.values().filter(move |r| {
            r.layer
                .as_ref()
                .is_some_and(|l| l.descriptor.digest == digest)
        })
    }

    /// Puts the blob `descriptor` names into the store from the location
    /// that lists it, unless the store has it.
    ///
    /// # Errors
    ///
    /// No location lists it, or it cannot be fetched, or its bytes do not
    /// match its digest.
    pub fn fetch_layer(&self, store: &Store, descriptor: &Descriptor) -> Result<(), BuildError> {
        let digest = parse_sha256(&descriptor.digest)?;
        if store.blobs().contains(&digest) {
            return Ok(());
        }
        if let Some(bytes) = self.inline.get(&descriptor.digest) {
            store.blobs().write(
                bytes.as_slice(),
                Some(kiln_store::blobs::Expected {
                    digest: &digest,
                    size: u64::try_from(descriptor.size).ok(),
                }),
                &format!("layer {digest} from an imported build cache's records"),
            )?;
            return Ok(());
        }
        if let Some((recipe, index)) = self.recipes.get(&descriptor.digest) {
            return self.remake(store, descriptor, recipe, *index);
        }
        let Some(location) = self
            .layers
            .get(&descriptor.digest)
            .and_then(|i| self.locations.get(*i))
        else {
            return Err(BuildError::Internal(format!(
                "layer {digest} is in no imported build cache"
            )));
        };
        log::info!("build cache {location}: fetching layer {digest}");
        self.fetch_blob(store, location, descriptor, "layer")
    }

    /// Puts blob `descriptor` (a `what`) into the store from `location`,
    /// checked against its digest and size.
    fn fetch_blob(
        &self,
        store: &Store,
        location: &CacheLocation,
        descriptor: &Descriptor,
        what: &str,
    ) -> Result<(), BuildError> {
        let digest = parse_sha256(&descriptor.digest)?;
        match location {
            CacheLocation::Local(dir) => {
                let root = kiln_rootfs::Root::open(dir).map_err(|e| BuildError::io(dir, e))?;
                let file = root
                    .open_at(blob_path(&digest), OFlag::O_RDONLY | OFlag::O_NOFOLLOW)
                    .map_err(|e| failed(location, format!("{what} {digest}: {e}")))?;
                store.blobs().write(
                    fs::File::from(file),
                    Some(kiln_store::blobs::Expected {
                        digest: &digest,
                        size: u64::try_from(descriptor.size).ok(),
                    }),
                    &format!("{what} {digest} from {location}"),
                )?;
            }
            CacheLocation::Registry(reference) => {
                let client = self
                    .client
                    .as_ref()
                    .ok_or_else(|| failed(location, "no registry client"))?;
                kiln_store::registry::artifact::fetch_blob(store, client, reference, descriptor)
                    .map_err(|e| failed(location, e))?;
            }
        }
        Ok(())
    }
}

impl CacheImport {
    /// Writes layer `descriptor` into the store from its `recipe` (fetched
    /// from the `index`th location) and the build context.
    fn remake(
        &self,
        store: &Store,
        descriptor: &Descriptor,
        recipe: &Descriptor,
        index: usize,
    ) -> Result<(), BuildError> {
        let digest = parse_sha256(&descriptor.digest)?;
        let location = self
            .locations
            .get(index)
            .ok_or_else(|| BuildError::Internal(format!("no location for layer {digest}")))?;
        let context = self.context.as_ref().ok_or_else(|| {
            failed(
                location,
                format!("layer {digest} is remade from a build context, and this build has none"),
            )
        })?;
        let recipe_digest = parse_sha256(&recipe.digest)?;
        log::info!("build cache {location}: remaking layer {digest} from the build context");
        self.fetch_blob(store, location, recipe, "recipe")?;
        let mut bytes = Vec::new();
        store
            .blobs()
            .open(&recipe_digest)?
            .take(u64::try_from(recipe.size).unwrap_or(0))
            .read_to_end(&mut bytes)
            .map_err(|e| failed(location, format!("reading recipe {recipe_digest}: {e}")))?;
        let root = kiln_rootfs::Root::open(context).map_err(|e| BuildError::io(context, e))?;
        let size = u64::try_from(descriptor.size)
            .map_err(|_| failed(location, format!("layer {digest} has a negative size")))?;
        super::recipe::remake(store, &bytes, &root, (&digest, size))
            .map_err(|e| failed(location, e))
    }
}

/// What a record brings besides its layer's name.
enum Carried {
    /// The layer's bytes.
    Bytes(Vec<u8>),
    /// The recipe the layer is remade from, with the build context.
    Recipe(Box<Descriptor>),
}

/// Why `record` cannot be taken, if it cannot; else what it carries for
/// its layer (taken out of its descriptor), if anything.
fn check_record(
    record: &mut CacheRecord,
    listed: &HashMap<&str, &Descriptor>,
) -> Result<Option<Carried>, String> {
    if record.version != RECORD_VERSION {
        return Err(format!("record format version {}", record.version));
    }
    let inputs = record
        .inputs
        .as_ref()
        .ok_or_else(|| "it carries no operation".to_owned())?;
    let op: Op = serde_json::from_value(inputs.clone())
        .map_err(|e| format!("its operation is not one kiln knows: {e}"))?;
    let key = op.key().map_err(|e| e.to_string())?;
    if key != record.key {
        return Err(format!("its key is not its operation's ({key})"));
    }
    let mut carried = None;
    if let Some(layer) = &mut record.layer {
        let digest = parse_sha256(&layer.descriptor.digest).map_err(|e| e.to_string())?;
        parse_sha256(&layer.diff_id).map_err(|e| e.to_string())?;
        // Never passed on: the descriptor goes into images as it is.
        let data = layer.descriptor.extra.remove(DATA);
        let recipe = layer.descriptor.extra.remove(super::recipe::RECIPE_KEY);
        match (data, recipe) {
            (Some(data), _) => {
                carried = Some(Carried::Bytes(check_carried(
                    &data,
                    &digest,
                    layer.descriptor.size,
                )?));
            }
            (None, Some(recipe)) => {
                let recipe: Descriptor = serde_json::from_value(recipe)
                    .map_err(|e| format!("its layer's recipe is not a descriptor: {e}"))?;
                match listed.get(recipe.digest.as_str()) {
                    Some(d) if d.size == recipe.size => {}
                    _ => {
                        return Err(format!(
                            "its layer's recipe {} is not in the cache",
                            recipe.digest
                        ));
                    }
                }
                // A recipe remakes the plain tar, named by its diff_id.
                if layer.descriptor.digest != layer.diff_id {
                    return Err(format!(
                        "its layer {} has a recipe but is not its diff_id {}",
                        layer.descriptor.digest, layer.diff_id
                    ));
                }
                carried = Some(Carried::Recipe(Box::new(recipe)));
            }
            (None, None) => match listed.get(layer.descriptor.digest.as_str()) {
                Some(d) if d.size == layer.descriptor.size => {}
                _ => {
                    return Err(format!(
                        "its layer {} is not in the cache",
                        layer.descriptor.digest
                    ));
                }
            },
        }
    }
    if let Some(digest) = &record.sources_digest {
        parse_sha256(digest).map_err(|e| e.to_string())?;
    }
    // A hit copies it into the image's history, which tools read as RFC
    // 3339.
    record
        .created
        .parse::<jiff::Timestamp>()
        .map_err(|e| format!("its time {:?} is not RFC 3339: {e}", record.created))?;
    Ok(carried)
}

/// The bytes of a layer a record carries (`data`, base64), if they are
/// `size` bytes whose digest is `digest`.
fn check_carried(data: &serde_json::Value, digest: &Digest, size: i64) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let text = data
        .as_str()
        .ok_or_else(|| format!("its layer {digest}'s data is not a string"))?;
    if u64::try_from(text.len()).map_or(true, |n| n > INLINE_TOTAL.saturating_mul(2)) {
        return Err(format!("its layer {digest}'s data is too large"));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("its layer {digest}'s data is not base64: {e}"))?;
    if i64::try_from(bytes.len()).ok() != Some(size) {
        return Err(format!(
            "its layer {digest} carries {} bytes, not {size}",
            bytes.len()
        ));
    }
    let actual = kiln_store::digest::digest_bytes(&bytes);
    if actual != *digest {
        return Err(format!(
            "the layer it carries does not match its digest {digest} ({actual})"
        ));
    }
    Ok(bytes)
}

/// Reads a records document as an import does and checks each record
/// against the manifest `manifest` (JSON) would be: how many are taken,
/// and why each other is refused. For the fuzz target; an import reads
/// the same way.
///
/// # Errors
///
/// Either document is not what a cache holds.
pub fn check_documents(manifest: &[u8], records: &[u8]) -> Result<(usize, Vec<String>), String> {
    let manifest: Manifest =
        serde_json::from_slice(manifest).map_err(|e| format!("manifest: {e}"))?;
    let document = parse_document(records)?;
    let listed: HashMap<&str, &Descriptor> = manifest
        .layers
        .iter()
        .map(|d| (d.digest.as_str(), d))
        .collect();
    let mut taken = 0;
    let mut refused = Vec::new();
    for mut record in document.records {
        match check_record(&mut record, &listed) {
            Ok(_) => taken += 1,
            Err(why) => refused.push(why),
        }
    }
    Ok((taken, refused))
}

/// The records of an image's inline cache, their layers named by the
/// image's manifest (the config's `diff_ids` give their positions).
fn inline_records(
    manifest: Manifest,
    config: &[u8],
) -> Result<(Manifest, RecordsDocument), String> {
    let config: kiln_store::spec::ImageConfig =
        serde_json::from_slice(config).map_err(|e| format!("the image config: {e}"))?;
    let document = config
        .extra
        .get(INLINE_KEY)
        .ok_or_else(|| "neither a kiln build cache nor an image with an inline one".to_owned())?;
    let bytes = serde_json::to_vec(document).map_err(|e| e.to_string())?;
    let mut document = parse_document(&bytes)?;
    for record in &mut document.records {
        let Some(layer) = record.layer.as_mut() else {
            continue;
        };
        let position = config
            .rootfs
            .diff_ids
            .iter()
            .position(|d| *d == layer.diff_id);
        if let Some(descriptor) = position.and_then(|i| manifest.layers.get(i)) {
            layer.descriptor = descriptor.clone();
        }
    }
    Ok((manifest, document))
}

/// The inline cache of an image made of the steps `records` (layers
/// named by `diff_id`), for its config under [`INLINE_KEY`].
///
/// # Errors
///
/// The records cannot be serialised.
pub fn inline_document(records: Vec<CacheRecord>) -> Result<serde_json::Value, BuildError> {
    serde_json::to_value(RecordsDocument {
        version: DOCUMENT_VERSION,
        records,
    })
    .map_err(|e| BuildError::Internal(format!("inline cache: {e}")))
}

fn parse_document(bytes: &[u8]) -> Result<RecordsDocument, String> {
    let document: RecordsDocument = serde_json::from_slice(bytes)
        .map_err(|e| format!("the records are not a kiln build cache: {e}"))?;
    if document.version != DOCUMENT_VERSION {
        return Err(format!(
            "records document version {} (this kiln reads {DOCUMENT_VERSION})",
            document.version
        ));
    }
    Ok(document)
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.encoded())
}

/// Reads a layout's cache manifest and records; `None` when `dir` has no
/// `index.json`.
fn read_layout(dir: &Path) -> Result<Option<(Manifest, RecordsDocument)>, String> {
    let root = match kiln_rootfs::Root::open(dir) {
        Ok(root) => root,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("opening {}: {e}", dir.display())),
    };
    let read = |path: &str| -> Result<Option<Vec<u8>>, String> {
        let bytes = root
            .read(path, MAX_DOCUMENT + 1)
            .map_err(|e| format!("reading {path}: {e}"))?;
        if bytes
            .as_ref()
            .is_some_and(|b| b.len() as u64 > MAX_DOCUMENT)
        {
            return Err(format!("{path} is larger than {MAX_DOCUMENT} bytes"));
        }
        Ok(bytes)
    };
    let Some(index) = read("index.json")? else {
        return Ok(None);
    };
    let index: kiln_store::spec::Index =
        serde_json::from_slice(&index).map_err(|e| format!("index.json: {e}"))?;
    let entry = index
        .manifests
        .iter()
        .find(|m| m.extra.get("artifactType").and_then(|v| v.as_str()) == Some(ARTIFACT_TYPE))
        .ok_or_else(|| format!("index.json names no {ARTIFACT_TYPE} manifest"))?;
    let blob = |descriptor: &Descriptor, what: &str| -> Result<Vec<u8>, String> {
        let digest = parse_sha256(&descriptor.digest).map_err(|e| format!("{what}: {e}"))?;
        let bytes =
            read(&blob_path(&digest))?.ok_or_else(|| format!("{what} {digest} is missing"))?;
        let actual = kiln_store::digest::digest_bytes(&bytes);
        if actual != digest {
            return Err(format!(
                "{what} {digest} does not match its digest ({actual})"
            ));
        }
        Ok(bytes)
    };
    let manifest: Manifest =
        serde_json::from_slice(&blob(entry, "manifest")?).map_err(|e| format!("manifest: {e}"))?;
    if manifest.config.media_type != CONFIG_TYPE {
        return Err(format!(
            "the manifest's config is {:?}, not {CONFIG_TYPE}",
            manifest.config.media_type
        ));
    }
    let document = parse_document(&blob(&manifest.config, "records")?)?;
    Ok(Some((manifest, document)))
}

/// Writes `records` and their layers (which the store must hold; see
/// [`CacheImport::fetch_layer`] for those a build did not need) to
/// `location`. A layout directory is made if missing; its `index.json` is
/// replaced, blobs already there are kept. Layers in `sent` went to the
/// registry during the build ([`push_artifact_blobs`]) and are not
/// checked again; uploads in `prestarted` were opened during it
/// ([`prepare_push`]).
///
/// [`prepare_push`]: kiln_store::registry::artifact::prepare_push
///
/// [`push_artifact_blobs`]: kiln_store::registry::artifact::push_artifact_blobs
///
/// # Errors
///
/// A blob is missing from the store, or writing or pushing failed.
pub fn export(
    store: &Store,
    client: Option<&Client>,
    records: &[CacheRecord],
    location: &CacheLocation,
    (sent, prestarted): (
        &std::collections::BTreeSet<String>,
        &std::sync::Mutex<Vec<String>>,
    ),
) -> Result<(), BuildError> {
    let mut layers: BTreeMap<String, Descriptor> = BTreeMap::new();
    // Layers compressed in memory come with their bytes (`data`).
    let mut given: HashMap<String, String> = HashMap::new();
    for record in records {
        if let Some(layer) = &record.layer {
            // A layer with a recipe is not in the cache: its recipe is.
            let mut listed = match layer.descriptor.extra.get(super::recipe::RECIPE_KEY) {
                Some(recipe) => serde_json::from_value::<Descriptor>(recipe.clone())
                    .map_err(|e| failed(location, format!("a layer's recipe: {e}")))?,
                None => layer.descriptor.clone(),
            };
            if let Some(serde_json::Value::String(data)) = listed.extra.remove(DATA) {
                given.insert(listed.digest.clone(), data);
            }
            layers.entry(listed.digest.clone()).or_insert(listed);
        }
    }
    // Recipes stay blobs (an import fetches one only to remake its layer).
    let plain: BTreeMap<String, Descriptor> = layers
        .iter()
        .filter(|(_, d)| d.media_type != super::recipe::RECIPE_TYPE)
        .map(|(k, d)| (k.clone(), d.clone()))
        .collect();
    let carried = carried_layers(store, &plain, &given).map_err(|e| failed(location, e))?;
    // Bytes given but not carried (over the budget) become blobs.
    for (digest, data) in given.iter().filter(|(d, _)| !carried.contains_key(*d)) {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| failed(location, format!("layer {digest}: {e}")))?;
        store.blobs().write_bytes(&bytes)?;
    }
    layers.retain(|digest, _| !carried.contains_key(digest));
    let mut records = records.to_vec();
    for layer in records.iter_mut().filter_map(|r| r.layer.as_mut()) {
        match carried.get(&layer.descriptor.digest) {
            Some(data) => {
                layer
                    .descriptor
                    .extra
                    .insert(DATA.to_owned(), serde_json::Value::from(data.as_str()));
            }
            None => {
                layer.descriptor.extra.remove(DATA);
            }
        }
    }
    let document = RecordsDocument {
        version: DOCUMENT_VERSION,
        records,
    };
    let config = serde_json::to_vec(&document).map_err(|e| failed(location, e))?;
    let config_digest = kiln_store::digest::digest_bytes(&config);
    let layer_list: Vec<Descriptor> = layers.into_values().collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": Descriptor::new(CONFIG_TYPE, &config_digest.to_string(), config.len() as u64),
        "layers": layer_list,
    });
    let manifest = serde_json::to_vec(&manifest).map_err(|e| failed(location, e))?;
    match location {
        CacheLocation::Local(dir) => write_layout(store, dir, &config, &manifest, &layer_list)
            .map_err(|e| failed(location, e)),
        CacheLocation::Registry(reference) => {
            let client = client.ok_or_else(|| failed(location, "no registry client"))?;
            // The config goes up as a blob of the store, like the layers.
            let written = store.blobs().write_bytes(&config)?;
            let mut blobs = vec![(written, config.len() as u64)];
            for layer in layer_list.iter().filter(|l| !sent.contains(&l.digest)) {
                let digest = parse_sha256(&layer.digest)?;
                let size = store.blobs().size(&digest)?;
                blobs.push((digest, size));
            }
            let quiet = |_: kiln_store::registry::PushEvent| {};
            let options = kiln_store::registry::PushOptions {
                compression: kiln_store::layer::Compression::None,
                monolithic_max: kiln_store::registry::push::MONOLITHIC_MAX,
                chunk_size: kiln_store::registry::push::CHUNK_SIZE,
                progress: &quiet,
                uploads: CACHE_UPLOADS,
                unchecked_below: UNCHECKED_BELOW,
                prestarted: Some(prestarted),
            };
            kiln_store::registry::artifact::push_artifact(
                store,
                client,
                reference,
                &blobs,
                &manifest,
                ARTIFACT_TYPE,
                &options,
            )
            .map_err(|e| failed(location, e))?;
            Ok(())
        }
    }
}

/// The layers of `layers` (digest -> descriptor) that the records carry
/// (base64): the small ones, smallest first, up to [`INLINE_TOTAL`]; their
/// bytes from `given` (digest -> base64), else from the store.
fn carried_layers(
    store: &Store,
    layers: &BTreeMap<String, Descriptor>,
    given: &HashMap<String, String>,
) -> Result<HashMap<String, String>, String> {
    use base64::Engine as _;
    let mut small: Vec<&Descriptor> = layers
        .values()
        .filter(|d| u64::try_from(d.size).is_ok_and(|n| n <= INLINE_MAX))
        .collect();
    small.sort_by_key(|d| d.size);
    let mut carried = HashMap::new();
    let mut total = 0u64;
    for descriptor in small {
        let size = u64::try_from(descriptor.size).unwrap_or(u64::MAX);
        if total.saturating_add(size) > INLINE_TOTAL {
            break;
        }
        if let Some(data) = given.get(&descriptor.digest) {
            total += size;
            carried.insert(descriptor.digest.clone(), data.clone());
            continue;
        }
        let digest = parse_sha256(&descriptor.digest).map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        store
            .blobs()
            .open(&digest)
            .map_err(|e| format!("layer {digest}: {e}"))?
            .read_to_end(&mut bytes)
            .map_err(|e| format!("reading layer {digest}: {e}"))?;
        if bytes.len() as u64 != size {
            return Err(format!(
                "layer {digest} is {} bytes in the store, not {size}",
                bytes.len()
            ));
        }
        total += size;
        carried.insert(
            descriptor.digest.clone(),
            base64::engine::general_purpose::STANDARD.encode(&bytes),
        );
    }
    Ok(carried)
}

/// Writes `name` in the layout `dir` under a temporary name, synced, then
/// renamed. Blobs are named by content: one already there is kept
/// (`replace` false). The index and oci-layout are replaced by a rename,
/// never half written.
fn write_layout_file(
    dir: &Path,
    name: &Path,
    bytes: &mut dyn Read,
    replace: bool,
) -> Result<(), String> {
    if !replace && name.exists() {
        return Ok(());
    }
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| format!("writing in {}: {e}", dir.display()))?;
    std::io::copy(bytes, &mut tmp).map_err(|e| format!("writing {}: {e}", name.display()))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| format!("writing {}: {e}", name.display()))?;
    tmp.persist(name)
        .map_err(|e| format!("writing {}: {}", name.display(), e.error))?;
    Ok(())
}

/// Writes one blob of the store into the layout `dir` (made if missing),
/// ahead of [`export`], which then finds it there: a layer sent while the
/// build goes on. The index is not touched.
///
/// # Errors
///
/// The blob is not in the store, or writing failed.
pub fn write_layout_blob(store: &Store, dir: &Path, digest: &Digest) -> Result<(), String> {
    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).map_err(|e| format!("creating {}: {e}", blobs.display()))?;
    let mut reader = store
        .blobs()
        .open(digest)
        .map_err(|e| format!("layer {digest}: {e}"))?;
    write_layout_file(dir, &blobs.join(digest.encoded()), &mut reader, false)
}

/// Writes the layout: blobs first (each to a temporary name, then renamed),
/// `index.json` last, so a reader never finds an index naming a blob that
/// is not whole.
fn write_layout(
    store: &Store,
    dir: &Path,
    config: &[u8],
    manifest: &[u8],
    layers: &[Descriptor],
) -> Result<(), String> {
    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).map_err(|e| format!("creating {}: {e}", blobs.display()))?;
    let write = |name: &Path, bytes: &mut dyn Read, replace: bool| {
        write_layout_file(dir, name, bytes, replace)
    };
    for layer in layers {
        let digest = parse_sha256(&layer.digest).map_err(|e| e.to_string())?;
        let mut reader = store
            .blobs()
            .open(&digest)
            .map_err(|e| format!("layer {digest}: {e}"))?;
        write(&blobs.join(digest.encoded()), &mut reader, false)?;
    }
    for bytes in [config, manifest] {
        let digest = kiln_store::digest::digest_bytes(bytes);
        write(&blobs.join(digest.encoded()), &mut &bytes[..], false)?;
    }
    let mut entry = Descriptor::new(
        OCI_MANIFEST,
        &kiln_store::digest::digest_bytes(manifest).to_string(),
        manifest.len() as u64,
    );
    entry.extra.insert(
        "artifactType".to_owned(),
        serde_json::Value::from(ARTIFACT_TYPE),
    );
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": kiln_store::registry::artifact::OCI_INDEX,
        "manifests": [entry],
    });
    let index = serde_json::to_vec(&index).map_err(|e| e.to_string())?;
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    write(&dir.join("oci-layout"), &mut &layout[..], true)?;
    write(&dir.join("index.json"), &mut &index[..], true)
}

#[cfg(test)]
mod tests {
    use super::{INLINE_MAX, INLINE_TOTAL, carried_layers, check_carried, check_documents};
    use crate::ops::{MkdirOp, Op};

    fn record(created: &str, key: Option<&str>) -> serde_json::Value {
        let op = Op::Mkdir(MkdirOp {
            parent: "scratch".to_owned(),
            path: "/app".to_owned(),
            user: String::new(),
        });
        serde_json::json!({
            "version": crate::cache::RECORD_VERSION,
            "key": key.map_or_else(|| op.key().unwrap(), str::to_owned),
            "description": "WORKDIR /app",
            "layer": null,
            "created": created,
            "inputs": op.to_value().unwrap(),
        })
    }

    #[test]
    fn records_are_taken_only_when_every_check_passes() {
        let manifest = br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:00","size":1},"layers":[]}"#;
        let key = format!("sha256:{}", "0".repeat(64));
        let document = serde_json::json!({
            "version": 1,
            "records": [
                record("2026-12-05T00:00:00Z", None),
                record("yesterday", None),
                record("2026-12-05T00:00:00Z", Some(&key)),
            ],
        });
        let (taken, refused) =
            check_documents(manifest, &serde_json::to_vec(&document).unwrap()).unwrap();
        assert_eq!(taken, 1);
        assert_eq!(refused.len(), 2);
        assert!(
            refused[0].starts_with("its time \"yesterday\" is not RFC 3339"),
            "{refused:?}"
        );
        assert!(
            refused[1].starts_with("its key is not its operation's"),
            "{refused:?}"
        );
        let newer = serde_json::json!({"version": 2, "records": []});
        assert_eq!(
            check_documents(manifest, &serde_json::to_vec(&newer).unwrap()).unwrap_err(),
            "records document version 2 (this kiln reads 1)"
        );
    }

    /// The records carry small layers, smallest first, up to the budget;
    /// larger ones stay blobs.
    #[test]
    fn only_small_layers_are_carried_and_only_up_to_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let store = kiln_store::Store::open(&dir.path().join("store")).unwrap();
        let mut layers = std::collections::BTreeMap::new();
        let mut add = |len: usize, fill: u8| {
            let bytes = vec![fill; len];
            let digest = store.blobs().write_bytes(&bytes).unwrap().to_string();
            layers.insert(
                digest.clone(),
                kiln_store::spec::Descriptor::new("x", &digest, len as u64),
            );
            digest
        };
        let large = add(usize::try_from(INLINE_MAX).unwrap() + 1, 0);
        let tiny = add(10, 1);
        // 70 of the largest carried size: 1.09 MiB, over the budget.
        let full: Vec<String> = (0..70)
            .map(|i| add(usize::try_from(INLINE_MAX).unwrap(), 2 + i))
            .collect();
        let carried = carried_layers(&store, &layers, &std::collections::HashMap::new()).unwrap();
        assert!(!carried.contains_key(&large));
        assert!(carried.contains_key(&tiny));
        let count = full.iter().filter(|d| carried.contains_key(*d)).count();
        assert_eq!(
            count,
            usize::try_from((INLINE_TOTAL - 10) / INLINE_MAX).unwrap()
        );
    }

    #[test]
    fn carried_bytes_must_be_base64_of_the_size_and_digest() {
        use base64::Engine as _;
        let bytes = b"layer bytes";
        let digest = kiln_store::digest::digest_bytes(bytes);
        let data = serde_json::Value::from(base64::engine::general_purpose::STANDARD.encode(bytes));
        assert_eq!(check_carried(&data, &digest, 11).unwrap(), bytes);
        let error = check_carried(&data, &digest, 12).unwrap_err();
        assert!(error.ends_with("carries 11 bytes, not 12"), "{error}");
        let other = kiln_store::digest::digest_bytes(b"other");
        let error = check_carried(&data, &other, 11).unwrap_err();
        assert!(
            error.starts_with("the layer it carries does not match its digest sha256:"),
            "{error}"
        );
        let error = check_carried(&serde_json::Value::from("%%"), &digest, 11).unwrap_err();
        assert!(error.contains("data is not base64"), "{error}");
        let error = check_carried(&serde_json::Value::from(3), &digest, 11).unwrap_err();
        assert!(error.ends_with("data is not a string"), "{error}");
    }
}
