//! Pulling an image: manifest (through an index by platform), config and
//! layers into the store, then its snapshots, then the tag.
//!
//! What is verified: the manifest against the digest asked for and the
//! `Docker-Content-Digest` header; the config and every layer against
//! their descriptors (digest and size, as they are written to the store:
//! a blob that does not match is never stored); every layer's `diff_id` as
//! it is unpacked. The image is tagged only when all of that succeeded.

use std::io::{self, Read};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use kiln_reference::{Digest, ImageReference};

use super::RegistryError;
use super::client::{Body, Client, MAX_ATTEMPTS, Session, backoff, header, read_capped};
use crate::digest::{digest_bytes, parse_sha256};
use crate::spec::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, Descriptor, ImageConfig, Index, MAX_DOCUMENT_SIZE,
    Manifest, OCI_INDEX, OCI_MANIFEST, is_index,
};
use crate::store::Store;

/// Cap on a manifest or index fetched from a registry.
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// Layers fetched at once.
pub const PARALLEL_DOWNLOADS: usize = 3;
/// Times one blob download is resumed after its connection broke.
const MAX_RESUMES: u32 = 5;
/// The `Accept` header of manifest requests.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// An OS/architecture/variant to pull from an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSpec {
    /// `linux`.
    pub os: String,
    /// `amd64`.
    pub architecture: String,
    /// `v8`, if given.
    pub variant: Option<String>,
}

impl PlatformSpec {
    /// Parses `OS/ARCH[/VARIANT]`.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        let parts: Vec<&str> = text.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Self {
                os: os.to_ascii_lowercase(),
                architecture: arch.to_ascii_lowercase(),
                variant: None,
            }),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
                Ok(Self {
                    os: os.to_ascii_lowercase(),
                    architecture: arch.to_ascii_lowercase(),
                    variant: Some(variant.to_ascii_lowercase()),
                })
            }
            _ => Err(RegistryError::Reference(format!(
                "invalid platform {text:?}: expected OS/ARCH[/VARIANT]"
            ))),
        }
    }

    /// This machine's platform.
    pub fn host() -> Self {
        Self {
            os: "linux".to_owned(),
            architecture: crate::archive::load::host_architecture().to_owned(),
            variant: None,
        }
    }
}

impl std::fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// What a pull reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEvent {
    /// The manifest was resolved; its layers follow.
    Resolved {
        /// The digest the reference names (index or manifest).
        digest: Digest,
        /// The compressed layers, base first.
        layers: Vec<(Digest, u64)>,
    },
    /// A layer the store already has: not fetched.
    LayerPresent(Digest),
    /// A layer that will be fetched (Docker's `Pulling fs layer`); every
    /// layer gets this or `LayerPresent`, base first, before any bytes.
    LayerQueued(Digest),
    /// Bytes of a layer received so far.
    LayerProgress {
        /// The layer.
        digest: Digest,
        /// Bytes received.
        done: u64,
        /// Its size.
        total: u64,
    },
    /// A layer was fetched and verified.
    LayerDownloaded(Digest),
    /// A layer was unpacked into its snapshot.
    LayerUnpacked(Digest),
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The reference it was stored under.
    pub reference: ImageReference,
    /// The digest the reference named at the registry (the index's, when
    /// it named an index): what `RepoDigests` shows.
    pub digest: Digest,
    /// The image's manifest digest.
    pub manifest_digest: Digest,
    /// The image ID.
    pub id: Digest,
    /// Layers fetched (0 when everything was in the store).
    pub fetched: usize,
    /// Whether the reference now names another image than before.
    pub updated: bool,
}

/// Options of a pull.
pub struct PullOptions<'a> {
    /// The platform to pick from an index (default: this machine's).
    pub platform: Option<PlatformSpec>,
    /// Called from the pulling threads as the pull goes.
    pub progress: &'a (dyn Fn(PullEvent) + Sync),
}

/// Pulls `reference` into the store and tags it (by its tag, or for a
/// pull by digest as `name@digest`). For docker.io the mirrors are tried
/// first; a mirror's failure falls through to the next endpoint.
pub fn pull(
    store: &Store,
    client: &Client,
    reference: &ImageReference,
    options: &PullOptions<'_>,
) -> Result<PulledImage, RegistryError> {
    let endpoints = client.endpoints(reference.domain(), true);
    let mut last = None;
    for endpoint in &endpoints {
        let session = client.session(endpoint, reference.path(), false)?;
        match pull_from(store, &session, reference, options) {
            Ok(pulled) => return Ok(pulled),
            Err(e) if endpoint.mirror => {
                log::info!("mirror {} failed, trying the next: {e}", endpoint.base);
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        RegistryError::Reference(format!("no endpoint for {}", reference.domain()))
    }))
}

/// A manifest or index as fetched.
pub(super) struct Fetched {
    pub(super) bytes: Vec<u8>,
    pub(super) digest: Digest,
    pub(super) media_type: String,
}

fn pull_from(
    store: &Store,
    session: &Session<'_>,
    reference: &ImageReference,
    options: &PullOptions<'_>,
) -> Result<PulledImage, RegistryError> {
    let full = reference.to_string();
    let wanted = match (reference.digest(), reference.tag()) {
        (Some(digest), _) => digest.to_string(),
        (None, Some(tag)) => tag.to_owned(),
        (None, None) => "latest".to_owned(),
    };
    let top = fetch_manifest(session, &full, &wanted, reference.digest())?;
    let named_digest = top.digest.clone();
    let manifest_doc = if is_index(&top.media_type) {
        let index: Index = parse_json(session, &top.bytes, &format!("index {full}"))?;
        let platform = options.platform.clone().unwrap_or_else(PlatformSpec::host);
        let child = select_platform(&index, &platform, &full)?;
        let child_digest = parse_sha256(&child.digest)?;
        let fetched = fetch_manifest(session, &full, &child.digest, Some(&child_digest))?;
        if is_index(&fetched.media_type) {
            return Err(RegistryError::Invalid {
                registry: session.registry().to_owned(),
                what: format!("index {full}"),
                reason: format!("entry {} is itself an index", child.digest),
            });
        }
        fetched
    } else {
        top
    };
    let manifest: Manifest = parse_json(
        session,
        &manifest_doc.bytes,
        &format!("manifest {}", manifest_doc.digest),
    )?;
    for layer in &manifest.layers {
        if layer.media_type.contains("foreign") || layer.media_type.contains("nondistributable") {
            return Err(RegistryError::ForeignLayer {
                reference: full,
                digest: layer.digest.clone(),
                media_type: layer.media_type.clone(),
            });
        }
    }
    // The config first: it must be small, match, and list one diff_id per
    // layer before any layer is fetched.
    let config_digest = parse_sha256(&manifest.config.digest)?;
    let config_bytes = fetch_config(session, store, &manifest.config, &config_digest)?;
    let config: ImageConfig =
        parse_json(session, &config_bytes, &format!("config {config_digest}"))?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(RegistryError::Invalid {
            registry: session.registry().to_owned(),
            what: format!("image {full}"),
            reason: format!(
                "the manifest has {} layers but the config {} diff_ids",
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            ),
        });
    }
    let mut layers = Vec::with_capacity(manifest.layers.len());
    for layer in &manifest.layers {
        let digest = parse_sha256(&layer.digest)?;
        let size = u64::try_from(layer.size).map_err(|_| RegistryError::Invalid {
            registry: session.registry().to_owned(),
            what: format!("manifest {}", manifest_doc.digest),
            reason: format!("layer {} has a negative size", layer.digest),
        })?;
        layers.push((digest, size));
    }
    (options.progress)(PullEvent::Resolved {
        digest: named_digest.clone(),
        layers: layers.clone(),
    });
    store.blobs().write_bytes(&config_bytes)?;
    let fetched = fetch_and_unpack(
        store,
        session,
        &Unpack {
            descriptors: &manifest.layers,
            layers: &layers,
            diff_ids: &config.rootfs.diff_ids,
            image: &config_digest,
        },
        options,
    )?;
    let manifest_digest = store.blobs().write_bytes(&manifest_doc.bytes)?;
    let media_type = if manifest.media_type.is_empty() {
        if manifest_doc.media_type.is_empty() {
            OCI_MANIFEST.to_owned()
        } else {
            manifest_doc.media_type.clone()
        }
    } else {
        manifest.media_type.clone()
    };
    let descriptor = Descriptor::new(
        &media_type,
        &manifest_digest.to_string(),
        manifest_doc.bytes.len() as u64,
    );
    let tag = reference.clone().tag_name_only();
    let before = store
        .resolve(&tag.to_string())
        .ok()
        .map(|i| i.manifest_digest);
    store.add_image(&descriptor, std::slice::from_ref(&tag))?;
    if named_digest != manifest_digest && tag.digest().is_none() {
        // Pulled through an index: Docker's RepoDigests name the index.
        store.set_repo_digest(&tag, &named_digest)?;
    }
    Ok(PulledImage {
        reference: tag,
        digest: named_digest,
        updated: before.as_ref() != Some(&manifest_digest),
        manifest_digest,
        id: config_digest,
        fetched,
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(
    session: &Session<'_>,
    bytes: &[u8],
    what: &str,
) -> Result<T, RegistryError> {
    serde_json::from_slice(bytes).map_err(|e| RegistryError::Invalid {
        registry: session.registry().to_owned(),
        what: what.to_owned(),
        reason: format!("invalid JSON: {e}"),
    })
}

/// The fields that tell an index from a manifest.
#[derive(serde::Deserialize)]
struct MediaType {
    #[serde(default, rename = "mediaType")]
    media_type: String,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
}

/// The media type of a manifest or index document: its `mediaType`
/// field, else an index if it lists `manifests`, else the `Content-Type`
/// the registry sent when that names a manifest or index, else an OCI
/// manifest. Fails when the bytes are not a JSON object.
pub fn document_media_type(bytes: &[u8], content_type: &str) -> Result<String, String> {
    let declared: MediaType =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    Ok(if !declared.media_type.is_empty() {
        declared.media_type
    } else if declared.manifests.is_some() {
        OCI_INDEX.to_owned()
    } else {
        let bare = content_type.split(';').next().unwrap_or("").trim();
        if [
            OCI_MANIFEST,
            DOCKER_MANIFEST,
            OCI_INDEX,
            DOCKER_MANIFEST_LIST,
        ]
        .contains(&bare)
        {
            bare.to_owned()
        } else {
            OCI_MANIFEST.to_owned()
        }
    })
}

/// The body of a document (manifest, index, config) `open` answers,
/// at most `limit` bytes, with what `open` took from the response; a
/// connection that breaks mid-body is opened and read again.
pub(super) fn read_document<T>(
    session: &Session<'_>,
    what: &str,
    limit: u64,
    mut open: impl FnMut() -> Result<(ureq::http::Response<ureq::Body>, T), RegistryError>,
) -> Result<(Vec<u8>, T), RegistryError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (mut response, taken) = open()?;
        match read_capped(response.body_mut(), limit) {
            Ok(Some(bytes)) => return Ok((bytes, taken)),
            Ok(None) => {
                return Err(RegistryError::TooLarge {
                    registry: session.registry().to_owned(),
                    what: what.to_owned(),
                    limit,
                });
            }
            Err(e) if attempt < MAX_ATTEMPTS => {
                log::info!("{what}: {e}; retrying");
                backoff(attempt);
            }
            Err(e) => {
                return Err(RegistryError::Transport {
                    registry: session.registry().to_owned(),
                    what: what.to_owned(),
                    attempts: attempt,
                    cause: e.to_string(),
                });
            }
        }
    }
}

/// GETs a manifest or index, capped, and checks its digest against the
/// one asked for and the one the registry announces.
pub(super) fn fetch_manifest(
    session: &Session<'_>,
    full: &str,
    wanted: &str,
    expected: Option<&Digest>,
) -> Result<Fetched, RegistryError> {
    let url = session.url(&format!("manifests/{wanted}"));
    let what = format!("manifest {full}");
    let (bytes, (announced, content_type)) =
        read_document(session, &what, MAX_MANIFEST_SIZE, || {
            let mut response = session.request(
                "GET",
                &url,
                &[("accept", MANIFEST_ACCEPT.to_owned())],
                &Body::Empty,
                &what,
            )?;
            let status = response.status().as_u16();
            if status == 404 {
                let detail = super::client::error_detail(&mut response);
                return Err(RegistryError::ManifestUnknown {
                    reference: full.to_owned(),
                    detail,
                });
            }
            if status != 200 {
                return Err(session.status_error(&what, &mut response));
            }
            let announced = header(&response, "docker-content-digest");
            let content_type = header(&response, "content-type").unwrap_or_default();
            Ok((response, (announced, content_type)))
        })?;
    let digest = digest_bytes(&bytes);
    if let Some(expected) = expected
        && *expected != digest
    {
        return Err(RegistryError::ManifestDigestMismatch {
            reference: full.to_owned(),
            expected: expected.to_string(),
            actual: digest.to_string(),
        });
    }
    if let Some(announced) = announced.filter(|a| a.starts_with("sha256:"))
        && announced != digest.to_string()
    {
        return Err(RegistryError::ManifestDigestMismatch {
            reference: full.to_owned(),
            expected: announced,
            actual: digest.to_string(),
        });
    }
    let media_type =
        document_media_type(&bytes, &content_type).map_err(|reason| RegistryError::Invalid {
            registry: session.registry().to_owned(),
            what: what.clone(),
            reason,
        })?;
    Ok(Fetched {
        bytes,
        digest,
        media_type,
    })
}

/// The entry of an index for a platform (variant matched when given;
/// attestation entries, `unknown/unknown`, are never picked). The error
/// lists the platforms the index has.
pub fn select_platform<'a>(
    index: &'a Index,
    wanted: &PlatformSpec,
    reference: &str,
) -> Result<&'a Descriptor, RegistryError> {
    let candidates = index
        .manifests
        .iter()
        .filter(|d| d.platform.as_ref().is_some_and(|p| p.os != "unknown"));
    let mut best: Option<&Descriptor> = None;
    for entry in candidates {
        let Some(platform) = &entry.platform else {
            continue;
        };
        if platform.os != wanted.os || platform.architecture != wanted.architecture {
            continue;
        }
        match &wanted.variant {
            Some(variant) if platform.variant.as_ref() != Some(variant) => {}
            Some(_) => return Ok(entry),
            // Without a variant, the first entry of the architecture wins,
            // as in containerd's default matcher for amd64 and arm64.
            None => {
                if best.is_none() {
                    best = Some(entry);
                }
            }
        }
    }
    best.ok_or_else(|| {
        let available: Vec<String> = index
            .manifests
            .iter()
            .filter_map(|d| d.platform.as_ref())
            .filter(|p| p.os != "unknown")
            .map(|p| match &p.variant {
                Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                None => format!("{}/{}", p.os, p.architecture),
            })
            .collect();
        RegistryError::NoMatchingPlatform {
            reference: reference.to_owned(),
            wanted: wanted.to_string(),
            available: if available.is_empty() {
                "no platforms".to_owned()
            } else {
                available.join(", ")
            },
        }
    })
}

/// The config blob, from the store if present, else fetched (capped) and
/// checked against its descriptor.
fn fetch_config(
    session: &Session<'_>,
    store: &Store,
    descriptor: &Descriptor,
    digest: &Digest,
) -> Result<Vec<u8>, RegistryError> {
    if store.blobs().contains(digest)
        && let Ok(bytes) = store.blobs().read(digest, MAX_DOCUMENT_SIZE)
    {
        return Ok(bytes);
    }
    let what = format!("config {digest}");
    if u64::try_from(descriptor.size).is_ok_and(|s| s > MAX_DOCUMENT_SIZE) {
        return Err(RegistryError::TooLarge {
            registry: session.registry().to_owned(),
            what,
            limit: MAX_DOCUMENT_SIZE,
        });
    }
    let (bytes, ()) = read_document(session, &what, MAX_DOCUMENT_SIZE, || {
        Ok((open_blob(session, digest, 0)?, ()))
    })?;
    let actual = digest_bytes(&bytes);
    if actual != *digest {
        return Err(crate::StoreError::DigestMismatch {
            what: format!(
                "{what} from {}/{}",
                session.registry(),
                session.repository()
            ),
            expected: digest.to_string(),
            actual: actual.to_string(),
        }
        .into());
    }
    Ok(bytes)
}

/// GETs a blob from `offset` on (a Range request when past 0). Accepts
/// 206 from that offset, or 200 (the caller then skips what it has).
pub(super) fn open_blob(
    session: &Session<'_>,
    digest: &Digest,
    offset: u64,
) -> Result<ureq::http::Response<ureq::Body>, RegistryError> {
    let url = session.url(&format!("blobs/{digest}"));
    let what = format!("blob {digest}");
    let headers = if offset > 0 {
        vec![("range", format!("bytes={offset}-"))]
    } else {
        Vec::new()
    };
    let mut response = session.request("GET", &url, &headers, &Body::Empty, &what)?;
    match response.status().as_u16() {
        200 | 206 => Ok(response),
        404 => Err(RegistryError::BlobUnknown {
            registry: session.registry().to_owned(),
            repository: session.repository().to_owned(),
            digest: digest.to_string(),
            detail: super::client::error_detail(&mut response),
        }),
        _ => Err(session.status_error(&what, &mut response)),
    }
}

/// The layers of an image to fetch and unpack.
struct Unpack<'a> {
    descriptors: &'a [Descriptor],
    layers: &'a [(Digest, u64)],
    diff_ids: &'a [String],
    image: &'a Digest,
}

/// Fetches the layers the store lacks, [`PARALLEL_DOWNLOADS`] at a time,
/// and unpacks them in order in one pass: each download is written to a
/// spool file in `tmp/` (hashed on the way) while the unpacker reads that
/// file as it grows, decompressing, checking the `diff_id` and applying
/// into a snapshot staged in `tmp/`; the snapshot is placed only once the
/// download's digest and size are verified and the spool renamed into
/// `blobs/`. The bytes come from the network once and are decompressed
/// once; the unpacker reads them back from the page cache, right behind
/// the download (or later, when it was busy with a layer below). Layers
/// whose blob the store has are unpacked from it. Returns how many layers
/// were fetched.
fn fetch_and_unpack(
    store: &Store,
    session: &Session<'_>,
    unpack: &Unpack<'_>,
    options: &PullOptions<'_>,
) -> Result<usize, RegistryError> {
    let layers = unpack.layers;
    // A spool per layer to fetch, made before any thread starts.
    let mut spools: Vec<Option<Spool>> = Vec::with_capacity(layers.len());
    for (digest, _) in layers {
        if store.blobs().contains(digest) {
            spools.push(None);
        } else {
            spools.push(Some(Spool::new(store)?));
        }
    }
    for ((digest, _), spool) in layers.iter().zip(&spools) {
        (options.progress)(if spool.is_some() {
            PullEvent::LayerQueued(digest.clone())
        } else {
            PullEvent::LayerPresent(digest.clone())
        });
    }
    let next = AtomicUsize::new(0);
    let fetched = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<RegistryError>> = Mutex::new(None);
    let fail = |e: RegistryError| {
        failed.store(true, Ordering::SeqCst);
        first_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert(e);
        // Readers waiting on a spool see the failure.
        for spool in spools.iter().flatten() {
            spool.abort();
        }
    };
    let workers = PARALLEL_DOWNLOADS.min(layers.len()).max(1);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while !failed.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some((digest, size)) = layers.get(i) else {
                        break;
                    };
                    let Some(Some(spool)) = spools.get(i) else {
                        continue;
                    };
                    match spool.download(store, session, digest, *size, options) {
                        Ok(()) => {
                            fetched.fetch_add(1, Ordering::SeqCst);
                            (options.progress)(PullEvent::LayerDownloaded(digest.clone()));
                        }
                        Err(e) => {
                            fail(e);
                            break;
                        }
                    }
                }
            });
        }
        let mut chain = Vec::with_capacity(layers.len());
        for (i, (descriptor, diff_id)) in unpack.descriptors.iter().zip(unpack.diff_ids).enumerate()
        {
            if failed.load(Ordering::SeqCst) {
                break;
            }
            let unpacked = match spools.get(i) {
                Some(Some(spool)) => spool.reader().and_then(|mut reader| {
                    let prepared =
                        store.prepare_snapshot(&chain, descriptor, diff_id, &mut reader)?;
                    // The reader reached its end only because the download
                    // finished and its digest matched: the blob is in.
                    store.place_prepared(prepared)
                }),
                _ => store.snapshot(&chain, descriptor, diff_id),
            };
            match unpacked {
                Ok(snapshot) => chain.push(snapshot),
                Err(e) => {
                    // Corrupt bytes may fail the unpack before their
                    // download fails its digest check: the download's
                    // verdict comes first, and its error is the cause.
                    if let Some(Some(spool)) = spools.get(i) {
                        spool.wait_finished();
                    }
                    fail(
                        crate::StoreError::Unpack {
                            layer: descriptor.digest.clone(),
                            image: unpack.image.to_string(),
                            source: Box::new(e),
                        }
                        .into(),
                    );
                    break;
                }
            }
            if let Some((digest, _)) = layers.get(i) {
                (options.progress)(PullEvent::LayerUnpacked(digest.clone()));
            }
        }
    });
    if let Some(e) = first_error
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        return Err(e);
    }
    Ok(fetched.into_inner())
}

/// How far a spool's download is.
#[derive(Default)]
struct SpoolState {
    /// Bytes written to the file so far.
    written: u64,
    /// `Some(true)`: complete and verified; `Some(false)`: failed.
    finished: Option<bool>,
}

/// A blob being downloaded into a file in `tmp/` that the unpacker reads
/// while it grows.
struct Spool {
    file: Mutex<Option<tempfile::NamedTempFile>>,
    /// The unpacker's descriptor of the same file, opened up front: the
    /// download may have renamed the file into `blobs/` before the
    /// unpacker gets to it.
    read_file: Mutex<Option<std::fs::File>>,
    path: std::path::PathBuf,
    state: Mutex<SpoolState>,
    changed: std::sync::Condvar,
}

/// Size of the chunks a download writes to its spool.
const SPOOL_CHUNK: usize = 256 * 1024;

impl Spool {
    fn new(store: &Store) -> Result<Self, RegistryError> {
        let tmp = store.tmp_dir();
        let file = tempfile::Builder::new()
            .prefix("pull-")
            .tempfile_in(&tmp)
            .map_err(|e| crate::StoreError::io(&tmp, e))?;
        let read_file = file
            .reopen()
            .map_err(|e| crate::StoreError::io(file.path(), e))?;
        Ok(Self {
            path: file.path().to_owned(),
            file: Mutex::new(Some(file)),
            read_file: Mutex::new(Some(read_file)),
            state: Mutex::new(SpoolState::default()),
            changed: std::sync::Condvar::new(),
        })
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, SpoolState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn finish(&self, verified: bool) {
        let mut state = self.lock_state();
        if state.finished.is_none() {
            state.finished = Some(verified);
        }
        drop(state);
        self.changed.notify_all();
    }

    /// Waits until the download has ended (verified or not).
    fn wait_finished(&self) {
        let mut state = self.lock_state();
        while state.finished.is_none() {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Ends the readers' wait: the pull failed.
    fn abort(&self) {
        self.finish(false);
    }

    /// Downloads the blob into the spool, hashing it, and moves it into
    /// the store when digest and size match (see [`BlobReader`] for
    /// resumes and the size bound).
    fn download(
        &self,
        store: &Store,
        session: &Session<'_>,
        digest: &Digest,
        size: u64,
        options: &PullOptions<'_>,
    ) -> Result<(), RegistryError> {
        let result = self.fill(store, session, digest, size, options);
        // A failure is the caller's to announce (its error first, then
        // every spool aborted), so that the reader's "download failed"
        // never hides the cause.
        if result.is_ok() {
            self.finish(true);
        }
        result
    }

    fn fill(
        &self,
        store: &Store,
        session: &Session<'_>,
        digest: &Digest,
        size: u64,
        options: &PullOptions<'_>,
    ) -> Result<(), RegistryError> {
        use std::io::Write as _;
        let Some(mut file) = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        else {
            return Err(RegistryError::Reference(format!(
                "blob {digest} was downloaded twice"
            )));
        };
        let what = format!(
            "blob {digest} from {}/{}",
            session.registry(),
            session.repository()
        );
        let mut reader = BlobReader {
            session,
            digest,
            size,
            offset: 0,
            body: None,
            resumes: 0,
            error: None,
            progress: options.progress,
        };
        let mut hasher = crate::digest::Hasher::new();
        let mut buffer = vec![0u8; SPOOL_CHUNK];
        let mut total = 0u64;
        loop {
            let n = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(reader
                        .error
                        .take()
                        .unwrap_or_else(|| crate::StoreError::io(what.clone(), e).into()));
                }
            };
            let chunk = buffer.get(..n).unwrap_or_default();
            hasher.update(chunk);
            file.write_all(chunk)
                .map_err(|source| crate::StoreError::Write {
                    what: what.clone(),
                    path: self.path.clone(),
                    source,
                })?;
            total += n as u64;
            self.lock_state().written = total;
            self.changed.notify_all();
        }
        let actual = hasher.finish();
        if total != size {
            return Err(crate::StoreError::SizeMismatch {
                what,
                expected: size,
                actual: total,
            }
            .into());
        }
        if actual != *digest {
            return Err(crate::StoreError::DigestMismatch {
                what,
                expected: digest.to_string(),
                actual: actual.to_string(),
            }
            .into());
        }
        // Verified: into the store (fsynced, renamed). A reader keeps
        // reading the same file through its own descriptor.
        store.blobs().commit(file, digest)?;
        Ok(())
    }

    /// A reader of the spool that waits for bytes not yet written, ends
    /// where a verified download ended, and fails if the download failed.
    fn reader(&self) -> Result<SpoolReader<'_>, crate::StoreError> {
        let file = self
            .read_file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .ok_or_else(|| {
                crate::StoreError::io(&self.path, io::Error::other("the spool was read twice"))
            })?;
        Ok(SpoolReader {
            spool: self,
            file,
            position: 0,
        })
    }
}

/// Reads a [`Spool`] as its download writes it.
struct SpoolReader<'a> {
    spool: &'a Spool,
    file: std::fs::File,
    position: u64,
}

impl Read for SpoolReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut state = self.spool.lock_state();
        while state.written <= self.position {
            match state.finished {
                Some(true) => return Ok(0),
                Some(false) => return Err(io::Error::other("the layer's download failed")),
                None => {
                    state = self
                        .spool
                        .changed
                        .wait(state)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
            }
        }
        let available = state.written - self.position;
        drop(state);
        let limit = usize::try_from(available)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.file.read(buf.get_mut(..limit).unwrap_or_default())?;
        self.position += n as u64;
        Ok(n)
    }
}

/// Reads a blob's body, resuming with a Range request when the connection
/// breaks, and never past the size its descriptor gives (the digest check
/// then decides whether the bytes are right).
struct BlobReader<'a, 's> {
    session: &'a Session<'s>,
    digest: &'a Digest,
    size: u64,
    offset: u64,
    body: Option<ureq::BodyReader<'static>>,
    resumes: u32,
    /// The registry error behind a failed read, kept typed.
    error: Option<RegistryError>,
    progress: &'a (dyn Fn(PullEvent) + Sync),
}

impl BlobReader<'_, '_> {
    fn open(&mut self) -> io::Result<()> {
        let response = match open_blob(self.session, self.digest, self.offset) {
            Ok(response) => response,
            Err(e) => {
                let message = e.to_string();
                self.error = Some(e);
                return Err(io::Error::other(message));
            }
        };
        let partial = response.status().as_u16() == 206;
        if partial {
            let range = header(&response, "content-range").unwrap_or_default();
            let start = range
                .strip_prefix("bytes ")
                .and_then(|r| r.split('-').next())
                .and_then(|s| s.parse::<u64>().ok());
            if start != Some(self.offset) {
                let e = RegistryError::Invalid {
                    registry: self.session.registry().to_owned(),
                    what: format!("blob {}", self.digest),
                    reason: format!("asked for bytes from {}, got range {range:?}", self.offset),
                };
                let message = e.to_string();
                self.error = Some(e);
                return Err(io::Error::other(message));
            }
        }
        let mut body = response
            .into_body()
            .into_with_config()
            .limit(u64::MAX)
            .reader();
        if !partial && self.offset > 0 {
            // The registry ignored the Range header: skip what we have.
            io::copy(&mut (&mut body).take(self.offset), &mut io::sink())?;
        }
        self.body = Some(body);
        Ok(())
    }
}

impl Read for BlobReader<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.offset >= self.size || buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.body.is_none() {
                self.open()?;
            }
            let room = usize::try_from(self.size - self.offset).unwrap_or(usize::MAX);
            let limit = buf.len().min(room);
            let Some(body) = self.body.as_mut() else {
                continue;
            };
            let result = body.read(buf.get_mut(..limit).unwrap_or_default());
            match result {
                Ok(n) if n > 0 => {
                    self.offset += n as u64;
                    (self.progress)(PullEvent::LayerProgress {
                        digest: self.digest.clone(),
                        done: self.offset,
                        total: self.size,
                    });
                    return Ok(n);
                }
                // A body that ends early, or a broken connection: resume.
                Ok(_) | Err(_) if self.resumes < MAX_RESUMES => {
                    if let Err(e) = &result {
                        log::info!(
                            "blob {} broke at byte {}: {e}; resuming",
                            self.digest,
                            self.offset
                        );
                    }
                    self.resumes += 1;
                    self.body = None;
                }
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "blob {} ended at byte {} of {} after {MAX_RESUMES} resumes",
                            self.digest, self.offset, self.size
                        ),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Cap on a tag list page.
const MAX_TAG_LIST_SIZE: u64 = 4 << 20;
/// Pages of a tag list followed.
const MAX_TAG_PAGES: usize = 100;

/// The tags of a repository (`GET /v2/NAME/tags/list`, following `Link`
/// pages), sorted.
pub fn list_tags(
    client: &Client,
    reference: &ImageReference,
) -> Result<Vec<String>, RegistryError> {
    #[derive(serde::Deserialize)]
    struct TagList {
        #[serde(default)]
        tags: Option<Vec<String>>,
    }
    let endpoint = client
        .endpoints(reference.domain(), false)
        .pop()
        .ok_or_else(|| {
            RegistryError::Reference(format!("no endpoint for {}", reference.domain()))
        })?;
    let session = client.session(&endpoint, reference.path(), false)?;
    let mut url = session.url("tags/list");
    let mut tags = Vec::new();
    let what = format!("tag list of {}", reference.name());
    for _ in 0..MAX_TAG_PAGES {
        let mut response = session.request("GET", &url, &[], &Body::Empty, &what)?;
        if response.status().as_u16() == 404 {
            return Err(RegistryError::ManifestUnknown {
                reference: reference.name(),
                detail: super::client::error_detail(&mut response),
            });
        }
        if response.status().as_u16() != 200 {
            return Err(session.status_error(&what, &mut response));
        }
        let link = header(&response, "link");
        let bytes = read_capped(response.body_mut(), MAX_TAG_LIST_SIZE)
            .map_err(|e| RegistryError::Transport {
                registry: session.registry().to_owned(),
                what: what.clone(),
                attempts: 1,
                cause: e.to_string(),
            })?
            .ok_or_else(|| RegistryError::TooLarge {
                registry: session.registry().to_owned(),
                what: what.clone(),
                limit: MAX_TAG_LIST_SIZE,
            })?;
        let page: TagList = parse_json(&session, &bytes, &what)?;
        tags.extend(page.tags.unwrap_or_default());
        // `Link: </v2/x/tags/list?last=a&n=100>; rel="next"`
        match link.and_then(|l| {
            let start = l.find('<')? + 1;
            let end = l.find('>')?;
            l.get(start..end).map(str::to_owned)
        }) {
            Some(next) => url = session.resolve_location(&next),
            None => break,
        }
    }
    tags.sort();
    tags.dedup();
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(platforms: &[(&str, &str, Option<&str>)]) -> Index {
        let mut index = Index::empty();
        for (i, (os, architecture, variant)) in platforms.iter().enumerate() {
            let mut entry = Descriptor::new(OCI_MANIFEST, &format!("sha256:{i:064}"), 1);
            entry.platform = Some(crate::spec::Platform {
                architecture: (*architecture).to_owned(),
                os: (*os).to_owned(),
                variant: variant.map(str::to_owned),
                extra: std::collections::BTreeMap::new(),
            });
            index.manifests.push(entry);
        }
        index
    }

    #[test]
    fn platform_selection_matches_variant_when_asked_and_skips_attestations() {
        let index = index(&[
            ("unknown", "unknown", None),
            ("linux", "arm", Some("v6")),
            ("linux", "arm", Some("v7")),
            ("linux", "amd64", None),
        ]);
        let pick = |text: &str| {
            select_platform(&index, &PlatformSpec::parse(text).unwrap(), "x")
                .map(|d| d.digest.clone())
        };
        assert_eq!(pick("linux/arm/v7").unwrap(), format!("sha256:{:064}", 2));
        assert_eq!(pick("linux/arm").unwrap(), format!("sha256:{:064}", 1));
        assert_eq!(pick("LINUX/AMD64").unwrap(), format!("sha256:{:064}", 3));
        let error = pick("windows/amd64").unwrap_err().to_string();
        assert_eq!(
            error,
            "no matching manifest for windows/amd64 in the manifest list entries of x (it has: linux/arm/v6, linux/arm/v7, linux/amd64)"
        );
    }

    #[test]
    fn bad_platforms_are_refused_with_the_expected_form() {
        for text in ["linux", "linux/", "/amd64", "a/b/c/d", ""] {
            assert_eq!(
                PlatformSpec::parse(text).unwrap_err().to_string(),
                format!("invalid platform {text:?}: expected OS/ARCH[/VARIANT]")
            );
        }
    }

    #[test]
    fn media_type_comes_from_the_document_then_the_header() {
        assert_eq!(
            document_media_type(br#"{"manifests":[]}"#, "").unwrap(),
            OCI_INDEX
        );
        assert_eq!(
            document_media_type(
                br"{}",
                "application/vnd.docker.distribution.manifest.v2+json; x=y"
            )
            .unwrap(),
            DOCKER_MANIFEST
        );
        assert_eq!(
            document_media_type(br"{}", "text/html").unwrap(),
            OCI_MANIFEST
        );
        assert!(
            document_media_type(b"not json", "")
                .unwrap_err()
                .starts_with("invalid JSON")
        );
    }
}
