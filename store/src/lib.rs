//! kiln-store: content-addressed blobs, image index and tags, layers,
//! unpacked snapshots, build-cache records and image archives.
//!
//! The store root is a valid OCI image layout; see [`store::Store`].

pub mod archive;
pub mod blobs;
pub mod commit;
pub mod compare;
pub mod containers;
pub mod digest;
pub mod error;
pub mod fault;
pub mod layer;
pub mod maintenance;
pub mod networks;
pub mod registry;
pub mod snapshot;
pub mod spec;
pub mod store;
pub mod temp;
pub mod volume;

pub use error::StoreError;
pub use kiln_reference::{Digest, ImageReference};
pub use snapshot::Snapshot;
pub use store::{Image, Store};
