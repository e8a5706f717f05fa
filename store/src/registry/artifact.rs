//! Artifacts that are not images (kiln's exported build cache): pushed as
//! an OCI image index, tagged, that names one manifest whose config and
//! layers are blobs of the store; read back document by document, each
//! checked against its digest, and blobs fetched into the store only when
//! asked for (a build fetches only the layers it needs).

use kiln_reference::{Digest, ImageReference};

use super::RegistryError;
use super::client::{Client, Session};
use super::push::PushOptions;
use crate::blobs::Expected;
use crate::digest::{digest_bytes, parse_sha256};
use crate::spec::{Descriptor, Index, MAX_DOCUMENT_SIZE, Manifest, OCI_MANIFEST};
use crate::store::{Store, to_json};

/// The OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The push session for `reference`.
fn session<'c>(
    client: &'c Client,
    reference: &ImageReference,
    push: bool,
) -> Result<Session<'c>, RegistryError> {
    let endpoint = client
        .endpoints(reference.domain(), !push)
        .into_iter()
        .find(|e| !e.mirror)
        .ok_or_else(|| {
            RegistryError::Reference(format!("no endpoint for {}", reference.domain()))
        })?;
    client.session(&endpoint, reference.path(), push)
}

/// Readies a later push to `reference` while other work goes on: the
/// endpoint's scheme is probed, a connection opened, a push token fetched
/// (where the registry wants one) and an upload opened; returns the
/// upload's location, for [`PushOptions::prestarted`]. `client` keeps the
/// rest for the push.
///
/// # Errors
///
/// The registry cannot be reached or refuses the push.
pub fn prepare_push(client: &Client, reference: &ImageReference) -> Result<String, RegistryError> {
    let session = session(client, reference, true)?;
    super::push::start_upload(&session, "an upload opened ahead")
}

/// Pushes `blobs` (which the store holds; those the registry has are
/// skipped) to `reference`'s repository, ahead of [`push_artifact`]: the
/// layers of a cache sent while its build goes on. Returns how many were
/// uploaded.
///
/// # Errors
///
/// A blob is missing from the store, or the registry refused or failed a
/// request.
pub fn push_artifact_blobs(
    store: &Store,
    client: &Client,
    reference: &ImageReference,
    blobs: &[(Digest, u64)],
    options: &PushOptions<'_>,
) -> Result<usize, RegistryError> {
    let session = session(client, reference, true)?;
    super::push::push_blobs(store, &session, blobs, &[], None, options)
}

/// Pushes `blobs` (which the store holds; those the registry has are
/// skipped), then `manifest` (an OCI image manifest naming them) by its
/// digest, then an index naming it (with `artifact_type`) under
/// `reference`'s tag. Returns the index's digest.
///
/// # Errors
///
/// A blob is missing from the store, or the registry refused or failed a
/// request.
pub fn push_artifact(
    store: &Store,
    client: &Client,
    reference: &ImageReference,
    blobs: &[(Digest, u64)],
    manifest: &[u8],
    artifact_type: &str,
    options: &PushOptions<'_>,
) -> Result<Digest, RegistryError> {
    let session = session(client, reference, true)?;
    super::push::push_blobs(store, &session, blobs, &[], None, options)?;
    let manifest_digest = digest_bytes(manifest);
    put_document(
        &session,
        reference,
        &manifest_digest.to_string(),
        manifest,
        OCI_MANIFEST,
    )?;
    let mut entry = Descriptor::new(
        OCI_MANIFEST,
        &manifest_digest.to_string(),
        manifest.len() as u64,
    );
    entry.extra.insert(
        "artifactType".to_owned(),
        serde_json::Value::from(artifact_type),
    );
    let index = Index {
        schema_version: 2,
        media_type: OCI_INDEX.to_owned(),
        manifests: vec![entry],
        annotations: None,
        extra: std::collections::BTreeMap::new(),
    };
    let index = to_json(&index)?;
    let tag = reference.tag().unwrap_or("latest");
    put_document(&session, reference, tag, &index, OCI_INDEX)?;
    Ok(digest_bytes(&index))
}

/// PUTs a manifest or index at `manifests/<wanted>` and checks the digest
/// the registry announces (the push's own PUT).
fn put_document(
    session: &Session<'_>,
    reference: &ImageReference,
    wanted: &str,
    bytes: &[u8],
    media_type: &str,
) -> Result<(), RegistryError> {
    super::push::put_manifest(
        session,
        reference,
        wanted,
        media_type,
        bytes,
        &digest_bytes(bytes),
    )
}

/// An artifact as read from a registry: its manifest and config, each
/// checked against the digest that names it.
#[derive(Debug, Clone)]
pub struct FetchedArtifact {
    /// The manifest.
    pub manifest: Manifest,
    /// The manifest's digest.
    pub manifest_digest: Digest,
    /// The config blob's bytes.
    pub config: Vec<u8>,
}

/// The most images of an index [`fetch_artifact`] reads.
const MAX_INDEX_IMAGES: usize = 16;

/// Reads what `reference` names for a cache import: an index's manifest
/// of `artifact_type` (kiln's exported cache), or else images (each of
/// an index's entries, up to [`MAX_INDEX_IMAGES`], or the manifest
/// itself), each with its manifest's config blob, capped at
/// [`MAX_DOCUMENT_SIZE`]. The caller tells the two apart by the config's
/// media type.
///
/// # Errors
///
/// Nothing is there, a document is too large, malformed or does not match
/// its digest, or the registry failed.
pub fn fetch_artifact(
    client: &Client,
    reference: &ImageReference,
    artifact_type: &str,
) -> Result<Vec<FetchedArtifact>, RegistryError> {
    let session = session(client, reference, false)?;
    let full = reference.to_string();
    let wanted = reference
        .digest()
        .map(ToString::to_string)
        .or_else(|| reference.tag().map(str::to_owned))
        .unwrap_or_else(|| "latest".to_owned());
    let expected = reference.digest().cloned();
    let top = super::pull::fetch_manifest(&session, &full, &wanted, expected.as_ref())?;
    let invalid = |reason: String| RegistryError::Invalid {
        registry: session.registry().to_owned(),
        what: format!("build cache {full}"),
        reason,
    };
    if !crate::spec::is_index(&top.media_type) {
        return Ok(vec![fetch_config(&session, &top.bytes, top.digest, &full)?]);
    }
    let index: Index = serde_json::from_slice(&top.bytes)
        .map_err(|e| invalid(format!("the index is not valid JSON: {e}")))?;
    let artifact = index
        .manifests
        .iter()
        .find(|m| m.extra.get("artifactType").and_then(|v| v.as_str()) == Some(artifact_type));
    let entries: Vec<&Descriptor> = match artifact {
        Some(entry) => vec![entry],
        None => index
            .manifests
            .iter()
            .filter(|m| !crate::spec::is_index(&m.media_type))
            .take(MAX_INDEX_IMAGES)
            .collect(),
    };
    let mut fetched = Vec::with_capacity(entries.len());
    for entry in entries {
        let digest = parse_sha256(&entry.digest)?;
        let manifest =
            super::pull::fetch_manifest(&session, &full, &digest.to_string(), Some(&digest))?;
        fetched.push(fetch_config(
            &session,
            &manifest.bytes,
            manifest.digest,
            &full,
        )?);
    }
    Ok(fetched)
}

/// The manifest `manifest_bytes` with its config blob (capped at
/// [`MAX_DOCUMENT_SIZE`] and checked against its digest).
fn fetch_config(
    session: &Session<'_>,
    manifest_bytes: &[u8],
    manifest_digest: Digest,
    full: &str,
) -> Result<FetchedArtifact, RegistryError> {
    let manifest: Manifest =
        serde_json::from_slice(manifest_bytes).map_err(|e| RegistryError::Invalid {
            registry: session.registry().to_owned(),
            what: format!("build cache {full}"),
            reason: format!("the manifest is not valid JSON: {e}"),
        })?;
    let config_digest = parse_sha256(&manifest.config.digest)?;
    if u64::try_from(manifest.config.size).map_or(true, |s| s > MAX_DOCUMENT_SIZE) {
        return Err(RegistryError::TooLarge {
            registry: session.registry().to_owned(),
            what: format!("build cache config {config_digest}"),
            limit: MAX_DOCUMENT_SIZE,
        });
    }
    let what = format!("build cache config {config_digest}");
    let (config, ()) = super::pull::read_document(session, &what, MAX_DOCUMENT_SIZE, || {
        Ok((super::pull::open_blob(session, &config_digest, 0)?, ()))
    })?;
    let actual = digest_bytes(&config);
    if actual != config_digest {
        return Err(crate::StoreError::DigestMismatch {
            what: format!(
                "{what} from {}/{}",
                session.registry(),
                session.repository()
            ),
            expected: config_digest.to_string(),
            actual: actual.to_string(),
        }
        .into());
    }
    Ok(FetchedArtifact {
        manifest,
        manifest_digest,
        config,
    })
}

/// Fetches the blob `descriptor` names from `reference`'s repository into
/// the store (checked against its digest and size on the way) unless the
/// store has it.
///
/// # Errors
///
/// The registry lacks it or failed, or the bytes do not match.
pub fn fetch_blob(
    store: &Store,
    client: &Client,
    reference: &ImageReference,
    descriptor: &Descriptor,
) -> Result<(), RegistryError> {
    let digest = parse_sha256(&descriptor.digest)?;
    if store.blobs().contains(&digest) {
        return Ok(());
    }
    let session = session(client, reference, false)?;
    let mut response = super::pull::open_blob(&session, &digest, 0)?;
    let what = format!(
        "blob {digest} from {}/{}",
        session.registry(),
        session.repository()
    );
    let size = u64::try_from(descriptor.size).ok();
    store.blobs().write(
        response.body_mut().as_reader(),
        Some(Expected {
            digest: &digest,
            size,
        }),
        &what,
    )?;
    Ok(())
}
