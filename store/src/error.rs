//! The store's error type.

use std::io;
use std::path::PathBuf;

use kiln_reference::ReferenceError;
use thiserror::Error;

/// Everything that can go wrong in the store. Messages name the file,
/// digest, image or archive entry involved.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No volume has this name (Docker's words).
    #[error("get {0}: no such volume")]
    NoSuchVolume(String),
    /// A volume name Docker's local driver would refuse (its words).
    #[error(
        "create {0}: \"{0}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
    )]
    InvalidVolumeName(String),
    /// A volume that running containers hold (Docker's words).
    #[error("remove {name}: volume is in use - [{}]", users.join(", "))]
    VolumeInUse {
        /// The volume.
        name: String,
        /// IDs of the containers that hold it.
        users: Vec<String>,
    },
    /// An I/O operation on a store or archive path failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Writing new content failed (a full disk, say): what was being
    /// written, the file it was going to, and the cause.
    #[error("cannot write {what} to {path}: {source}")]
    Write {
        /// What was being written (blob, layer, archive entry, file).
        what: String,
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A store directory is open to other users and cannot be closed.
    #[error("{path} has mode {mode:o}, open to other users, and cannot be set to 700: {source}")]
    Permissions {
        /// The directory.
        path: PathBuf,
        /// Its mode.
        mode: u32,
        /// Why chmod failed.
        source: io::Error,
    },
    /// A layer of a loaded image cannot be unpacked: the load is refused.
    #[error("layer {layer} of image {image} cannot be unpacked: {source}")]
    Unpack {
        /// The layer's digest.
        layer: String,
        /// The image ID.
        image: String,
        /// Why.
        source: Box<StoreError>,
    },
    /// A digest string is malformed.
    #[error("invalid digest {value:?}: {source}")]
    InvalidDigest {
        /// The text as given.
        value: String,
        /// Why it was rejected.
        source: ReferenceError,
    },
    /// A well-formed digest of an algorithm the store does not keep.
    #[error("unsupported digest {value:?}: the store keeps sha256 blobs only")]
    UnsupportedDigest {
        /// The text as given.
        value: String,
    },
    /// Content does not hash to the digest that names it.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was being read (blob path, archive entry, layer).
        what: String,
        /// The digest that names the content.
        expected: String,
        /// The digest of the bytes actually read.
        actual: String,
    },
    /// Content is not the size its descriptor says.
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// What was being read.
        what: String,
        /// The size from the descriptor.
        expected: u64,
        /// The size actually read.
        actual: u64,
    },
    /// A layer's uncompressed digest differs from the config's `diff_id`.
    #[error("diff_id mismatch for layer {layer}: config says {expected}, content is {actual}")]
    DiffIdMismatch {
        /// The layer (digest or archive path).
        layer: String,
        /// The `diff_id` from the image config.
        expected: String,
        /// The digest of the uncompressed content.
        actual: String,
    },
    /// A blob the store needs is not there.
    #[error("blob {digest} is missing from the store")]
    MissingBlob {
        /// The missing blob.
        digest: String,
    },
    /// A JSON document is bigger than [`crate::spec::MAX_DOCUMENT_SIZE`].
    #[error("{what} is {size} bytes, over the {limit}-byte limit for JSON documents")]
    DocumentTooLarge {
        /// The document (path or digest).
        what: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A JSON document does not parse.
    #[error("invalid JSON in {what}: {source}")]
    Json {
        /// The document (path or digest).
        what: String,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// A document parses but breaks the spec.
    #[error("invalid {what}: {reason}")]
    InvalidDocument {
        /// The document.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No image matches a name or ID.
    #[error("no such image: {0}")]
    ImageNotFound(String),
    /// A multi-platform image (a tagged index) without the platform asked
    /// for; Docker's words for a pull of such an image.
    #[error(
        "no matching manifest for {wanted} in the manifest list entries of {reference} (it has: {available})"
    )]
    NoMatchingPlatform {
        /// The name as given.
        reference: String,
        /// `os/arch[/variant]`.
        wanted: String,
        /// The platforms the index lists.
        available: String,
    },
    /// An ID prefix matches several images.
    #[error("ambiguous image ID prefix {0}: several images match")]
    AmbiguousId(String),
    /// A reference does not parse.
    #[error("invalid reference format {reference:?}: {source}")]
    InvalidReference {
        /// The text as given.
        reference: String,
        /// Why it was rejected.
        source: ReferenceError,
    },
    /// A container of that name exists.
    #[error(
        "Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
    )]
    ContainerNameInUse {
        /// The name asked for.
        name: String,
        /// The container that has it.
        id: String,
    },
    /// `rmi` of an ID that several tags name, without force.
    #[error(
        "conflict: unable to delete {id} (must be forced) - image is referenced in multiple repositories"
    )]
    ImageReferencedByTags {
        /// The short image ID.
        id: String,
    },
    /// A layer could not be read, written or unpacked.
    #[error(transparent)]
    Layer(#[from] crate::layer::LayerError),
    /// A layer could not be made into its snapshot.
    #[error("cannot unpack layer {layer}: {source}")]
    Snapshot {
        /// The layer blob's digest.
        layer: String,
        /// Why.
        source: Box<StoreError>,
    },
    /// A layer of an image could not be read or applied in memory
    /// (`kiln diff`, `kiln layers`).
    #[error("cannot read layer {layer} of image {image}: {source}")]
    ReadLayer {
        /// The layer blob's digest.
        layer: String,
        /// The image ID.
        image: String,
        /// Why.
        source: Box<StoreError>,
    },
    /// An image archive is malformed.
    #[error("invalid archive: {0}")]
    Archive(String),
    /// No network has this name or ID (Docker's words).
    #[error("network {0} not found")]
    NoSuchNetwork(String),
    /// A network of this name exists (Docker's words).
    #[error("network with name {0} already exists")]
    NetworkExists(String),
    /// Every address of the network's subnet is leased (Docker's words).
    #[error("no available IPv4 addresses on this network's address pools: {name} ({id})")]
    AddressesExhausted {
        /// The network's name.
        name: String,
        /// Its ID.
        id: String,
    },
    /// A requested address is leased already (Docker's words).
    #[error("Address already in use: {0}")]
    AddressInUse(String),
    /// A subnet overlaps another network's (Docker's words, and whose).
    #[error(
        "invalid pool request: Pool overlaps with other one on this address space ({subnet} overlaps {other}'s {other_subnet})"
    )]
    SubnetOverlap {
        /// The subnet asked for.
        subnet: String,
        /// The network that has the overlapping one.
        other: String,
        /// Its subnet.
        other_subnet: String,
    },
    /// A network that containers are on (Docker's words).
    #[error("error while removing network: network {name} id {id} has active endpoints")]
    NetworkInUse {
        /// The network's name.
        name: String,
        /// Its ID.
        id: String,
    },
    /// A network setting kiln cannot use.
    #[error("{0}")]
    InvalidNetwork(String),
}

impl StoreError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Adds a path to I/O results.
pub(crate) trait IoContext<T> {
    /// Names the path an I/O error concerns.
    fn at(self, path: impl Into<PathBuf>) -> Result<T, StoreError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::io(path, source))
    }
}
