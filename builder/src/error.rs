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
    /// A COPY/ADD source pattern matched nothing in the context. The
    /// message holds BuildKit's words: the source as an absolute path in
    /// its root, quoted, then `: not found`.
    #[error(
        "COPY source {}: not found ({})",
        source_path(pattern),
        describe_nearby(nearby)
    )]
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
    /// ADD's source pattern matched nothing in the context.
    #[error(
        "ADD source {}: not found ({})",
        source_path(pattern),
        describe_nearby(nearby)
    )]
    AddSourceNotFound {
        /// The source pattern as given.
        pattern: String,
        /// Entries of the closest existing parent directory.
        nearby: Vec<String>,
    },
    /// The Dockerfile does not parse or plan; the text is the rendered
    /// error with file, line, column and the offending line.
    #[error("{0}")]
    Dockerfile(String),
    /// A base or `--from` image is not in the store.
    #[error(
        "base image {reference:?} is not in the store: load it with `kiln load -i IMAGE.tar` or create it with `kiln import ROOTFS.tar {reference}`"
    )]
    BaseImageNotFound {
        /// The normalised reference.
        reference: String,
    },
    /// A base image the store lacks could not be fetched.
    #[error(
        "cannot pull base image {reference}: {message} (or load it with `kiln load -i IMAGE.tar` or create it with `kiln import ROOTFS.tar {reference}`)"
    )]
    BasePull {
        /// The normalised reference.
        reference: String,
        /// Why (the fetcher's whole message).
        message: String,
    },
    /// `SOURCE_DATE_EPOCH` is not a usable time.
    #[error("invalid SOURCE_DATE_EPOCH {0}")]
    SourceDateEpoch(String),
    /// A RUN command exited non-zero.
    #[error(
        "{location}: {code}: process {command:?} did not complete successfully: exit code: {exit_code}{}",
        output_tail(output)
    )]
    RunFailed {
        /// `Dockerfile:LINE`.
        location: String,
        /// The instruction as written.
        code: String,
        /// The command line that ran.
        command: String,
        /// Its exit code.
        exit_code: i32,
        /// The last lines of its output.
        output: String,
    },
    /// A mount the build makes for itself failed.
    #[error("mount: {0}")]
    Mount(String),
    /// A Dockerfile feature kiln does not implement yet.
    #[error("{0}")]
    Unsupported(String),
    /// A `RUN --mount` kiln cannot provide.
    #[error("{0}")]
    UnsupportedMount(String),
    /// A `RUN --mount=type=secret,required` whose secret was not given
    /// (BuildKit's `secret ID: not found`, then how to give it).
    #[error(
        "secret {id}: not found (RUN --mount=type=secret,required needs it: pass --secret id={id},src=FILE or id={id},env=VAR)"
    )]
    SecretNotFound {
        /// The secret's id.
        id: String,
    },
    /// A user or group name does not resolve in the stage's files.
    #[error("{0}")]
    User(String),
    /// Starting or running a container failed.
    #[error(transparent)]
    Runtime(#[from] kiln_runtime::RuntimeError),
    /// A RUN asks for a privilege that `--allow` did not grant.
    #[error(
        "{location}: {code}: {flag} needs the {entitlement} entitlement: pass --allow {entitlement} to kiln build"
    )]
    NotEntitled {
        /// `Dockerfile:LINE`.
        location: String,
        /// The instruction as written.
        code: String,
        /// The RUN flag.
        flag: String,
        /// The entitlement it needs.
        entitlement: &'static str,
    },
    /// The build was interrupted (SIGINT or SIGTERM).
    #[error("build cancelled")]
    Cancelled,
    /// A broken invariant of the engine itself.
    #[error("internal error: {0}")]
    Internal(String),
    /// A `--chown` value that is not `user`, `user:group` or numeric ids.
    #[error("invalid --chown value {spec:?}")]
    InvalidChown {
        /// The value as given.
        spec: String,
    },
    /// A file or directory operation on the destination failed; `path` is
    /// the path inside the container.
    #[error("{op} {path}: {source}")]
    Dest {
        /// What was being done (`creating file`, ...).
        op: &'static str,
        /// The container path.
        path: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A directory would be written where the destination has a
    /// non-directory (`BuildKit`'s wording).
    #[error("cannot copy to non-directory: {path}")]
    NotADirectory {
        /// The container path.
        path: String,
    },
    /// A file would replace a directory (`BuildKit`'s wording).
    #[error("cannot replace to directory {path} with file")]
    ReplaceDirectory {
        /// The container path.
        path: String,
    },
    /// Extracting an ADD archive failed.
    #[error("unpacking {archive}: {source}")]
    Unpack {
        /// The archive's path in the source.
        archive: String,
        /// What went wrong.
        source: kiln_store::layer::LayerError,
    },
    /// An ADD URL could not be fetched.
    #[error("downloading {url}: {reason}")]
    Download {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// An ADD URL answered with a status other than 2xx.
    #[error("downloading {url}: invalid response status {status}")]
    DownloadStatus {
        /// The URL.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// An ADD `--checksum` value that is not `sha256:` and 64 hex digits.
    #[error("invalid checksum {checksum:?}: expected sha256:<64 hex digits>")]
    InvalidChecksum {
        /// The value as given.
        checksum: String,
    },
    /// The downloaded content does not have the `--checksum` digest.
    #[error("digest mismatch for {url}: expected {expected}, got {actual}")]
    ChecksumMismatch {
        /// The URL.
        url: String,
        /// The digest given with `--checksum`.
        expected: String,
        /// The digest of what was downloaded.
        actual: String,
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

fn output_tail(output: &str) -> String {
    if output.trim().is_empty() {
        String::new()
    } else {
        let lines: Vec<String> = output.lines().map(|l| format!("  > {l}")).collect();
        format!("\nlast lines of output:\n{}", lines.join("\n"))
    }
}

/// A source as BuildKit names it in `"/path": not found`: cleaned as an
/// absolute path of its root (Go's `%q`).
fn source_path(pattern: &str) -> String {
    kiln_parser::golang::quote(&kiln_rootfs::path::absolute(pattern))
}

fn describe_nearby(nearby: &[String]) -> String {
    if nearby.is_empty() {
        "the context is empty there".to_owned()
    } else {
        format!("the context has: {}", nearby.join(", "))
    }
}

impl From<kiln_rootfs::PathError> for BuildError {
    fn from(error: kiln_rootfs::PathError) -> Self {
        match error {
            kiln_rootfs::PathError::NotADirectory { path } => Self::NotADirectory { path },
            kiln_rootfs::PathError::Io { op, path, source } => Self::Dest { op, path, source },
            other => Self::Internal(other.to_string()),
        }
    }
}
