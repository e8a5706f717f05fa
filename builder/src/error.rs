//! Errors of the build engine.

use std::io;
use std::path::PathBuf;

use kiln_parser::dockerignore::DockerignoreError;
use kiln_store::StoreError;

/// Everything that can go wrong while preparing or reading a build context.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The context directory does not exist (Docker's wording).
    #[error("unable to prepare context: path {:?} not found", path.display().to_string())]
    ContextNotFound {
        /// The context path as given.
        path: PathBuf,
    },
    /// The context path exists but is not a directory.
    #[error("unable to prepare context: {:?} is not a directory", path.display().to_string())]
    ContextNotDirectory {
        /// The context path as given.
        path: PathBuf,
    },
    /// A `.dockerignore` or `--exclude` pattern does not compile.
    #[error("invalid pattern {pattern:?}: {source}")]
    Pattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        source: DockerignoreError,
    },
    /// A COPY/ADD source pattern matched nothing in the context.
    #[error("COPY source not found: {pattern:?} ({})", describe_nearby(nearby))]
    SourceNotFound {
        /// The source pattern as given.
        pattern: String,
        /// Up to ten entries of the closest existing parent directory
        /// (directories end in `/`), for the message.
        nearby: Vec<String>,
    },
    /// Symlinks inside the context refer to each other in a loop (or nest
    /// deeper than Linux allows).
    #[error("too many levels of symbolic links resolving {path:?} in the build context")]
    SymlinkLoop {
        /// The context-relative path being resolved.
        path: String,
    },
    /// An I/O operation on a context or cache file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A stat cache file is not valid JSON of the expected shape.
    #[error("stat cache {}: {source}", path.display())]
    StatCacheFormat {
        /// The cache file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// Writing through the store's helpers failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BuildError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

fn describe_nearby(nearby: &[String]) -> String {
    if nearby.is_empty() {
        "the context is empty there".to_owned()
    } else {
        format!("the context has: {}", nearby.join(", "))
    }
}
