//! kiln's build engine. So far: the build context (its ignore rules, COPY/ADD
//! source resolution as `BuildKit` does it for a local context, content
//! digests of sources with a stat cache) and step cache keys.

pub mod context;
pub mod error;

pub use context::{BuildContext, FileType, Source, StatCache, cache_key};
pub use error::BuildError;
pub use kiln_store::Digest;
