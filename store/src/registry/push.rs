//! Pushing an image: its blobs that the registry lacks (HEAD first, a
//! cross-repository mount when another repository of the same registry
//! has the blob, else a monolithic or chunked upload by size), then the
//! manifest, last, exactly as stored (so the registry's digest is the
//! store's). A push that is cut off and run again uploads only what is
//! missing.
//!
//! Stored compressed blobs go as they are. Uncompressed layers (a build
//! with `--compression none`) are compressed once, in parallel, into new
//! blobs; the image is then re-tagged to the manifest that names them, so
//! the tag, the registry and `RepoDigests` agree.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use kiln_reference::{Digest, ImageReference};
use rayon::prelude::*;

use super::RegistryError;
use super::client::{Body, Client, Session, header};
use crate::digest::parse_sha256;
use crate::layer::{Compression, from_media_type, media_type};
use crate::spec::{
    DOCKER_MANIFEST, Descriptor, Index, Manifest, OCI_INDEX, OCI_MANIFEST, is_manifest,
};
use crate::store::{Image, Store, to_json};

/// Blobs up to this size go in one PUT; bigger ones in chunks.
pub const MONOLITHIC_MAX: u64 = 64 << 20;
/// Chunk size of a chunked upload.
pub const CHUNK_SIZE: u64 = 32 << 20;
/// Blobs uploaded at once.
pub const PARALLEL_UPLOADS: usize = 3;

/// What a push reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushEvent {
    /// A blob is about to be checked.
    Preparing(Digest),
    /// The registry has the blob already.
    Exists(Digest),
    /// The blob was mounted from another repository of the registry.
    Mounted {
        /// The blob.
        digest: Digest,
        /// The repository it came from.
        from: String,
    },
    /// Bytes of a blob sent so far.
    Progress {
        /// The blob.
        digest: Digest,
        /// Bytes sent.
        done: u64,
        /// Its size.
        total: u64,
    },
    /// The blob was uploaded.
    Pushed(Digest),
}

/// Options of a push.
pub struct PushOptions<'a> {
    /// How uncompressed layers are compressed before they are sent.
    pub compression: Compression,
    /// Blobs up to this size go in one PUT ([`MONOLITHIC_MAX`]).
    pub monolithic_max: u64,
    /// Chunk size of bigger blobs ([`CHUNK_SIZE`]).
    pub chunk_size: u64,
    /// Called from the pushing threads.
    pub progress: &'a (dyn Fn(PushEvent) + Sync),
    /// Blobs sent at once ([`PARALLEL_UPLOADS`] for an image, as Docker's
    /// default; more for a build cache's many small layers).
    pub uploads: usize,
    /// Blobs smaller than this are uploaded without asking first whether
    /// the registry has them (0: always ask, as Docker does): for a
    /// document that is new nearly every time (a build cache's records),
    /// the HEAD is a round trip that saves nothing.
    pub unchecked_below: u64,
    /// Uploads opened ahead of the push ([`start_upload`]'s locations, in
    /// the repository pushed to), taken before opening new ones: their
    /// POST went while other work did. One the registry no longer knows is
    /// replaced by a new upload.
    pub prestarted: Option<&'a Mutex<Vec<String>>>,
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct PushedImage {
    /// The reference pushed.
    pub reference: ImageReference,
    /// The manifest digest (what the registry stores it under).
    pub digest: Digest,
    /// The manifest's size.
    pub size: u64,
    /// Blobs uploaded (0 when the registry had them all).
    pub uploaded: usize,
}

/// Blobs of an image that the store does not hold, and where they are:
/// layers a build found in an imported cache and left in its registry.
pub struct RemoteBlobs<'a> {
    /// Repositories holding some of them: (registry domain, repository
    /// path, blob digests). One on the pushed-to registry lets a blob be
    /// mounted there without passing through kiln.
    pub sources: Vec<(String, String, BTreeSet<String>)>,
    /// Puts one of them into the store, when no mount serves it (another
    /// registry, a refused mount, or a layer to compress first).
    pub fetch: &'a FetchBlob<'a>,
}

/// Puts a blob the store lacks into it ([`RemoteBlobs::fetch`]).
pub type FetchBlob<'a> = dyn Fn(&Digest) -> Result<(), RegistryError> + Sync + 'a;

/// Pushes the image `reference` names in the store to that reference.
pub fn push(
    store: &Store,
    client: &Client,
    reference: &ImageReference,
    options: &PushOptions<'_>,
) -> Result<PushedImage, RegistryError> {
    let reference = tag_only(reference)?;
    let image = store.resolve(&reference.to_string())?;
    push_image(store, client, &reference, image, None, options)
}

/// `reference` with its tag only: a push needs a tag, not a digest.
fn tag_only(reference: &ImageReference) -> Result<ImageReference, RegistryError> {
    if reference.digest().is_some() {
        return Err(RegistryError::Reference(format!(
            "cannot push {reference}: a push needs a tag, not a digest"
        )));
    }
    Ok(reference.clone().tag_name_only())
}

/// Pushes `image` to `reference` without naming it in the store: an
/// image that goes only to a registry (`kiln build -o
/// type=registry,store=false`). Its blobs that the store lacks are
/// mounted from `remote`'s repositories on the same registry, or fetched
/// through `remote` first.
pub fn push_unstored(
    store: &Store,
    client: &Client,
    reference: &ImageReference,
    image: Image,
    remote: &RemoteBlobs<'_>,
    options: &PushOptions<'_>,
) -> Result<PushedImage, RegistryError> {
    push_image(
        store,
        client,
        &tag_only(reference)?,
        image,
        Some(remote),
        options,
    )
}

fn push_image(
    store: &Store,
    client: &Client,
    reference: &ImageReference,
    image: Image,
    remote: Option<&RemoteBlobs<'_>>,
    options: &PushOptions<'_>,
) -> Result<PushedImage, RegistryError> {
    match (&image.index, remote) {
        (Some(index), None) => push_index(store, client, reference, index, options),
        _ => push_manifest(store, client, reference, image, remote, options, false),
    }
}

/// Pushes a multi-platform image: each platform's image by digest, then
/// the index under the tag, as buildx does. Platforms whose layers are
/// stored uncompressed get new manifests (see [`compress_layers`]), and
/// so a new index, which `reference` is tagged to in the store so that
/// the tag and the registry agree.
fn push_index(
    store: &Store,
    client: &Client,
    reference: &ImageReference,
    index_digest: &Digest,
    options: &PushOptions<'_>,
) -> Result<PushedImage, RegistryError> {
    let (mut index, stored): (Index, _) = store.read_json(index_digest)?;
    let mut changed = false;
    let mut uploaded = 0;
    for entry in &mut index.manifests {
        if !is_manifest(&entry.media_type) {
            return Err(RegistryError::Reference(format!(
                "cannot push {reference}: entry {} of its index is not an image manifest",
                entry.digest
            )));
        }
        let image = store.image(&parse_sha256(&entry.digest)?)?;
        let pushed = push_manifest(store, client, reference, image, None, options, true)?;
        uploaded += pushed.uploaded;
        if pushed.digest.to_string() != entry.digest {
            entry.digest = pushed.digest.to_string();
            entry.size = i64::try_from(pushed.size).unwrap_or(i64::MAX);
            changed = true;
        }
    }
    let (digest, bytes) = if changed {
        let bytes = to_json(&index)?;
        let digest = store.blobs().write_bytes(&bytes)?;
        let descriptor = Descriptor::new(OCI_INDEX, &digest.to_string(), bytes.len() as u64);
        store.add_image(&descriptor, std::slice::from_ref(reference))?;
        (digest, bytes)
    } else {
        (index_digest.clone(), stored)
    };
    let session = push_session(client, reference)?;
    let tag = reference.tag().unwrap_or("latest");
    put_manifest(&session, reference, tag, OCI_INDEX, &bytes, &digest)?;
    Ok(PushedImage {
        reference: reference.clone(),
        digest,
        size: bytes.len() as u64,
        uploaded,
    })
}

/// A session that may push to `reference`'s repository.
fn push_session<'a>(
    client: &'a Client,
    reference: &ImageReference,
) -> Result<Session<'a>, RegistryError> {
    let endpoint = client
        .endpoints(reference.domain(), false)
        .pop()
        .ok_or_else(|| {
            RegistryError::Reference(format!("no endpoint for {}", reference.domain()))
        })?;
    client.session(&endpoint, reference.path(), true)
}

/// PUTs a manifest or index under `tag_or_digest` and checks the digest
/// the registry announces.
pub(super) fn put_manifest(
    session: &Session<'_>,
    reference: &ImageReference,
    tag_or_digest: &str,
    media_type: &str,
    bytes: &[u8],
    digest: &Digest,
) -> Result<(), RegistryError> {
    let url = session.url(&format!("manifests/{tag_or_digest}"));
    let what = format!("manifest {reference}");
    let mut response = session.request(
        "PUT",
        &url,
        &[("content-type", media_type.to_owned())],
        &Body::Bytes(bytes.to_vec().into()),
        &what,
    )?;
    if response.status().as_u16() != 201 {
        return Err(push_error(session, &what, &mut response));
    }
    if let Some(announced) = header(&response, "docker-content-digest")
        && announced != digest.to_string()
    {
        return Err(RegistryError::ManifestDigestMismatch {
            reference: reference.to_string(),
            expected: digest.to_string(),
            actual: announced,
        });
    }
    Ok(())
}

/// Pushes one image's blobs and its manifest, under the reference's tag
/// or (`by_digest`, a platform of an index) under its digest.
fn push_manifest(
    store: &Store,
    client: &Client,
    reference: &ImageReference,
    image: Image,
    remote: Option<&RemoteBlobs<'_>>,
    options: &PushOptions<'_>,
    by_digest: bool,
) -> Result<PushedImage, RegistryError> {
    let reference = reference.clone();
    // Uncompressed layers are compressed from the store's copy.
    if let Some(remote) = remote
        && options.compression != Compression::None
    {
        for layer in &image.manifest.layers {
            let digest = parse_sha256(&layer.digest)?;
            if from_media_type(&layer.media_type) == Some(Compression::None)
                && !store.blobs().contains(&digest)
            {
                (remote.fetch)(&digest)?;
            }
        }
    }
    let image = compress_layers(
        store,
        image,
        (remote.is_none() && !by_digest).then_some(&reference),
        options.compression,
    )?;
    let session = push_session(client, &reference)?;
    let mut blobs: Vec<(Digest, u64)> = Vec::new();
    for descriptor in std::iter::once(&image.manifest.config).chain(&image.manifest.layers) {
        let digest = parse_sha256(&descriptor.digest)?;
        let size = if store.blobs().contains(&digest) || remote.is_none() {
            store.blobs().size(&digest)?
        } else {
            u64::try_from(descriptor.size).map_err(|_| {
                RegistryError::Reference(format!("blob {digest} has a negative size"))
            })?
        };
        if !blobs.iter().any(|(d, _)| *d == digest) {
            blobs.push((digest, size));
        }
    }
    let mut sources = mount_sources(store, &reference);
    if let Some(remote) = remote {
        for (domain, path, digests) in &remote.sources {
            if domain == reference.domain() && path != reference.path() {
                sources.insert(0, (path.clone(), digests.clone()));
            }
        }
    }
    let fetch = remote.map(|r| r.fetch);
    let uploaded = push_blobs(store, &session, &blobs, &sources, fetch, options)?;
    let manifest_bytes = store
        .blobs()
        .read(&image.manifest_digest, super::pull::MAX_MANIFEST_SIZE)?;
    let media_type = if image.manifest.media_type.is_empty() {
        OCI_MANIFEST.to_owned()
    } else {
        image.manifest.media_type.clone()
    };
    let digest_name = image.manifest_digest.to_string();
    let tag = if by_digest {
        digest_name.as_str()
    } else {
        reference.tag().unwrap_or("latest")
    };
    put_manifest(
        &session,
        &reference,
        tag,
        &media_type,
        &manifest_bytes,
        &image.manifest_digest,
    )?;
    Ok(PushedImage {
        reference,
        digest: image.manifest_digest,
        size: manifest_bytes.len() as u64,
        uploaded,
    })
}

/// Compresses the image's uncompressed layers (in parallel) and re-tags
/// `reference` (when given) to a manifest naming the compressed blobs; an
/// image whose layers are all compressed is returned as it is.
fn compress_layers(
    store: &Store,
    image: Image,
    reference: Option<&ImageReference>,
    compression: Compression,
) -> Result<Image, RegistryError> {
    let uncompressed = |d: &Descriptor| from_media_type(&d.media_type) == Some(Compression::None);
    if compression == Compression::None || !image.manifest.layers.iter().any(uncompressed) {
        return Ok(image);
    }
    let docker = image.manifest.media_type == DOCKER_MANIFEST;
    let layers: Vec<Descriptor> = image
        .manifest
        .layers
        .par_iter()
        .map(|layer| {
            if !uncompressed(layer) {
                return Ok(layer.clone());
            }
            let digest = parse_sha256(&layer.digest)?;
            let blob = store.blobs().open(&digest)?;
            let written = store.write_layer(blob, compression)?;
            let mut descriptor = layer.clone();
            media_type(compression, docker).clone_into(&mut descriptor.media_type);
            descriptor.digest = written.descriptor.digest;
            descriptor.size = written.descriptor.size;
            Ok(descriptor)
        })
        .collect::<Result<_, crate::StoreError>>()?;
    let manifest = Manifest {
        layers,
        ..image.manifest.clone()
    };
    let bytes = to_json(&manifest)?;
    let digest = store.blobs().write_bytes(&bytes)?;
    let media_type = if manifest.media_type.is_empty() {
        OCI_MANIFEST
    } else {
        &manifest.media_type
    };
    let descriptor = Descriptor::new(media_type, &digest.to_string(), bytes.len() as u64);
    if let Some(reference) = reference {
        store.add_image(&descriptor, std::slice::from_ref(reference))?;
    }
    Ok(store.image(&digest)?)
}

/// Other repositories of the same registry that images in the store are
/// tagged in, with the blobs each image has: where a mount may find a
/// blob.
fn mount_sources(store: &Store, reference: &ImageReference) -> Vec<(String, BTreeSet<String>)> {
    let Ok(images) = store.images() else {
        return Vec::new();
    };
    let mut sources = Vec::new();
    for image in images {
        let blobs: BTreeSet<String> = std::iter::once(&image.manifest.config)
            .chain(&image.manifest.layers)
            .map(|d| d.digest.clone())
            .collect();
        for tag in &image.tags {
            let Ok(other) = kiln_reference::parse_normalized_named(tag) else {
                continue;
            };
            if other.domain() == reference.domain() && other.path() != reference.path() {
                sources.push((other.path().to_owned(), blobs.clone()));
            }
        }
    }
    sources
}

/// Pushes the blobs the registry lacks, `options.uploads` at a time.
pub(super) fn push_blobs(
    store: &Store,
    session: &Session<'_>,
    blobs: &[(Digest, u64)],
    sources: &[(String, BTreeSet<String>)],
    fetch: Option<&FetchBlob<'_>>,
    options: &PushOptions<'_>,
) -> Result<usize, RegistryError> {
    for (digest, _) in blobs {
        (options.progress)(PushEvent::Preparing(digest.clone()));
    }
    let next = AtomicUsize::new(0);
    let uploaded = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<RegistryError>> = Mutex::new(None);
    let workers = options.uploads.min(blobs.len()).max(1);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((digest, size)) = blobs.get(i) else {
                        break;
                    };
                    match push_blob(store, session, digest, *size, sources, fetch, options) {
                        Ok(true) => {
                            uploaded.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(false) => {}
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            first_error
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        return Err(e);
    }
    Ok(uploaded.into_inner())
}

/// Pushes one blob unless the registry has it; returns whether it was
/// uploaded.
fn push_blob(
    store: &Store,
    session: &Session<'_>,
    digest: &Digest,
    size: u64,
    sources: &[(String, BTreeSet<String>)],
    fetch: Option<&FetchBlob<'_>>,
    options: &PushOptions<'_>,
) -> Result<bool, RegistryError> {
    let what = format!("blob {digest}");
    if size >= options.unchecked_below {
        let mut head = session.request(
            "HEAD",
            &session.url(&format!("blobs/{digest}")),
            &[],
            &Body::Empty,
            &what,
        )?;
        match head.status().as_u16() {
            200 => {
                (options.progress)(PushEvent::Exists(digest.clone()));
                return Ok(false);
            }
            404 => {}
            _ => return Err(push_error(session, &what, &mut head)),
        }
    }
    let wanted = digest.to_string();
    let mut location = None;
    for (from, blobs) in sources {
        if !blobs.contains(&wanted) {
            continue;
        }
        let url = format!(
            "{}?mount={wanted}&from={}",
            session.url("blobs/uploads/"),
            super::client::query_escape(from)
        );
        let mut response = session.request("POST", &url, &[], &Body::Empty, &what)?;
        match response.status().as_u16() {
            201 => {
                (options.progress)(PushEvent::Mounted {
                    digest: digest.clone(),
                    from: from.clone(),
                });
                return Ok(false);
            }
            // Not mounted: the registry opened an upload instead.
            202 => {
                location = header(&response, "location");
                break;
            }
            _ => return Err(push_error(session, &what, &mut response)),
        }
    }
    let prestarted = options
        .prestarted
        .and_then(|p| p.lock().ok().and_then(|mut p| p.pop()));
    let mut location = match (location, &prestarted) {
        (Some(location), _) => location,
        (None, Some(location)) => location.clone(),
        (None, None) => start_upload(session, &what)?,
    };
    // A blob left where a build found it, which no mount served: it
    // passes through the store.
    if let Some(fetch) = fetch
        && !store.blobs().contains(digest)
    {
        fetch(digest)?;
    }
    let path = store.blobs().path(digest);
    if size > options.monolithic_max {
        let mut offset = 0;
        while offset < size {
            let len = options.chunk_size.max(1).min(size - offset);
            let url = session.resolve_location(&location);
            let mut response = session.request(
                "PATCH",
                &url,
                &[
                    ("content-type", "application/octet-stream".to_owned()),
                    ("content-range", format!("{offset}-{}", offset + len - 1)),
                ],
                &Body::File {
                    path: path.clone(),
                    offset,
                    len,
                },
                &what,
            )?;
            if response.status().as_u16() != 202 {
                return Err(push_error(session, &what, &mut response));
            }
            location = header(&response, "location").ok_or_else(|| missing_location(session))?;
            offset += len;
            (options.progress)(PushEvent::Progress {
                digest: digest.clone(),
                done: offset,
                total: size,
            });
        }
        finish_upload(session, &location, &wanted, &Body::Empty, &what)?;
    } else {
        let body = Body::File {
            path,
            offset: 0,
            len: size,
        };
        let finished = finish_upload(session, &location, &wanted, &body, &what);
        match finished {
            // An upload opened ahead that the registry dropped (expired,
            // or purged): a new one.
            Err(_) if prestarted.as_ref() == Some(&location) => {
                let location = start_upload(session, &what)?;
                finish_upload(session, &location, &wanted, &body, &what)?;
            }
            other => other?,
        }
        (options.progress)(PushEvent::Progress {
            digest: digest.clone(),
            done: size,
            total: size,
        });
    }
    (options.progress)(PushEvent::Pushed(digest.clone()));
    Ok(true)
}

/// Opens an upload in `session`'s repository; its location.
pub(super) fn start_upload(session: &Session<'_>, what: &str) -> Result<String, RegistryError> {
    let mut response = session.request(
        "POST",
        &session.url("blobs/uploads/"),
        &[],
        &Body::Empty,
        what,
    )?;
    if response.status().as_u16() != 202 {
        return Err(push_error(session, what, &mut response));
    }
    header(&response, "location").ok_or_else(|| missing_location(session))
}

fn finish_upload(
    session: &Session<'_>,
    location: &str,
    digest: &str,
    body: &Body,
    what: &str,
) -> Result<(), RegistryError> {
    let url = session.resolve_location(location);
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}digest={digest}");
    let mut response = session.request(
        "PUT",
        &url,
        &[("content-type", "application/octet-stream".to_owned())],
        body,
        what,
    )?;
    if response.status().as_u16() != 201 {
        return Err(push_error(session, what, &mut response));
    }
    Ok(())
}

fn missing_location(session: &Session<'_>) -> RegistryError {
    RegistryError::Invalid {
        registry: session.registry().to_owned(),
        what: "upload answer".to_owned(),
        reason: "no Location header".to_owned(),
    }
}

/// The error for a refused push step: 403, and 405 (a read-only
/// registry), say that pushing is not allowed.
pub(super) fn push_error(
    session: &Session<'_>,
    what: &str,
    response: &mut ureq::http::Response<ureq::Body>,
) -> RegistryError {
    if response.status().as_u16() == 405 {
        return RegistryError::Denied {
            registry: session.registry().to_owned(),
            repository: session.repository().to_owned(),
            action: "push".to_owned(),
            detail: super::client::error_detail(response),
        };
    }
    session.status_error(what, response)
}
