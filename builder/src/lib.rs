//! kiln's build engine: the build context (its ignore rules, COPY/ADD source
//! resolution as `BuildKit` does it for a local context, content digests of
//! sources with a stat cache), step cache keys and progress events.

pub mod cache;
pub mod context;
pub mod error;
pub mod progress;

pub use context::{BuildContext, FileType, Source, StatCache, cache_key};
pub use error::BuildError;
pub use kiln_store::Digest;
pub use progress::{Event, Reporter};
