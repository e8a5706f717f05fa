//! kiln's build engine: the build context (its ignore rules, COPY/ADD source
//! resolution as `BuildKit` does it for a local context, content digests of
//! sources with a stat cache), typed build operations and their cache keys,
//! cache records, the file
//! operations of COPY/ADD, and the engine that runs a plan's stages.

pub mod cache;
pub mod context;
pub mod engine;
pub mod error;
pub mod executor;
pub mod explain;
pub mod fileops;
pub mod mounts;
pub mod ops;
pub mod progress;
pub mod ssh;

pub use context::{BuildContext, FileType, Source, SourceFile, StatCache};
pub use engine::{
    BaseImageFetcher, BuildOptions, BuildOutcome, Entitlements, NamedContextInput, build, cancel,
    is_cancelled,
};
pub use error::{BuildError, StepLocation};
pub use executor::{Executor, RuntimeExecutor};
pub use kiln_store::Digest;
pub use progress::{Event, Reporter};
