//! The registry client's error type. Messages name the registry,
//! repository, reference or digest involved and keep the cause; none ever
//! holds a credential or a token (no header or URL with user info is ever
//! formatted into one).

use thiserror::Error;

use crate::error::StoreError;

/// Everything that can go wrong talking to a registry.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The registry's host name does not resolve.
    #[error("cannot reach registry {registry}: unknown host {host}")]
    UnknownHost {
        /// The registry (`docker.io`, `localhost:5000`).
        registry: String,
        /// The host that did not resolve.
        host: String,
    },
    /// No connection could be made (refused, unreachable, TLS handshake).
    #[error("cannot reach registry {registry} at {url}: {cause}")]
    Connect {
        /// The registry.
        registry: String,
        /// The URL tried (never with credentials).
        url: String,
        /// The transport's error.
        cause: String,
    },
    /// A connection broke or timed out after every retry.
    #[error("{what} from registry {registry} failed after {attempts} attempts: {cause}")]
    Transport {
        /// The registry.
        registry: String,
        /// What was being fetched or sent.
        what: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last cause.
        cause: String,
    },
    /// 401 after authenticating (or with no credentials to offer).
    #[error("unauthorized: authentication required for {registry}/{repository}{hint}")]
    Unauthorized {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// Whether credentials were sent (then they are wrong), as text.
        hint: String,
    },
    /// 403: the credentials are valid but may not do this.
    #[error("denied: {action} access to {registry}/{repository} is not allowed{detail}")]
    Denied {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// `pull` or `push`.
        action: String,
        /// The registry's own message, if it gave one.
        detail: String,
    },
    /// 404 for a manifest (an unknown tag or digest, or repository).
    #[error("manifest for {reference} not found: manifest unknown{detail}")]
    ManifestUnknown {
        /// The full reference.
        reference: String,
        /// The registry's own message, if it gave one.
        detail: String,
    },
    /// 404 for a blob the manifest names.
    #[error("blob {digest} not found in {registry}/{repository}{detail}")]
    BlobUnknown {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The blob.
        digest: String,
        /// The registry's own message.
        detail: String,
    },
    /// Any other unexpected status.
    #[error("{what} at registry {registry}: unexpected status {status}{detail}")]
    Status {
        /// The registry.
        registry: String,
        /// What was being done.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The registry's own message.
        detail: String,
    },
    /// The token endpoint refused or failed.
    #[error("cannot get a token for {registry}/{repository} from {realm}: {cause}")]
    Token {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The token endpoint (realm), without query.
        realm: String,
        /// Why.
        cause: String,
    },
    /// A response document is over its size cap.
    #[error("{what} from {registry} is over the {limit}-byte limit")]
    TooLarge {
        /// The registry.
        registry: String,
        /// The document.
        what: String,
        /// The cap.
        limit: u64,
    },
    /// A manifest does not hash to the digest that names it.
    #[error("manifest digest mismatch for {reference}: expected {expected}, got {actual}")]
    ManifestDigestMismatch {
        /// The reference pulled.
        reference: String,
        /// The digest asked for or announced in `Docker-Content-Digest`.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// A response breaks the distribution or image spec.
    #[error("invalid {what} from {registry}: {reason}")]
    Invalid {
        /// The registry.
        registry: String,
        /// The document or header.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// An index has no image for the platform asked for.
    #[error(
        "no matching manifest for {wanted} in the manifest list entries of {reference} (it has: {available})"
    )]
    NoMatchingPlatform {
        /// The reference.
        reference: String,
        /// The platform wanted (`linux/amd64`).
        wanted: String,
        /// The platforms the index lists.
        available: String,
    },
    /// A layer that may not be pulled from the registry.
    #[error(
        "layer {digest} of {reference} is a foreign or non-distributable layer ({media_type}): kiln does not fetch layers from outside the registry"
    )]
    ForeignLayer {
        /// The reference.
        reference: String,
        /// The layer.
        digest: String,
        /// Its media type.
        media_type: String,
    },
    /// The TLS settings of a registry (certs.d) cannot be used.
    #[error("TLS configuration for {registry} in {path}: {reason}")]
    Tls {
        /// The registry.
        registry: String,
        /// The file or directory.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The Docker credential store cannot be read.
    #[error("credentials for {registry}: {reason}")]
    Credentials {
        /// The registry.
        registry: String,
        /// What is wrong (never the secret itself).
        reason: String,
    },
    /// A reference cannot be pulled or pushed as given.
    #[error("{0}")]
    Reference(String),
    /// The store failed (blob, snapshot, index).
    #[error(transparent)]
    Store(#[from] StoreError),
}
