//! The registry client (OCI distribution spec): one client for `kiln
//! pull`, `kiln push`, `FROM` images a build lacks, and later cache export.
//!
//! Every registry answer is treated as hostile: documents are read under
//! size caps, manifests and blobs are verified against their digests
//! before anything is stored, an image is tagged only once complete, and
//! credentials go only to the registry they belong to.

pub mod artifact;
pub mod auth;
pub mod client;
pub mod credentials;
pub mod error;
pub mod pull;
pub mod push;

pub use client::{Client, Endpoint, RegistryConfig};
pub use error::RegistryError;
pub use pull::{PlatformSpec, PullEvent, PullOptions, PulledImage, list_tags, pull};
pub use push::{PushEvent, PushOptions, PushedImage, push};
