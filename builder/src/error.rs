//! Errors of the build engine.

use std::fmt;
use std::io;
use std::path::PathBuf;

use kiln_parser::{SourceLines, Span};

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
    /// A `--build-context` could not be used.
    #[error("invalid --build-context \"{name}={value}\": {message}")]
    NamedContext {
        /// Its name.
        name: String,
        /// Its value as given.
        value: String,
        /// What went wrong, with the cause.
        message: String,
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
    /// The Dockerfile does not parse or plan.
    #[error(transparent)]
    Dockerfile(#[from] kiln_parser::Error),
    /// A step of the build failed: `error` is what went wrong, `location`
    /// the instruction (and stage) that raised it. `Display` gives
    /// `file:line:column: error`; [`BuildError::render`] adds the line
    /// and a caret, as parse errors have.
    #[error("{location}: {error}")]
    Step {
        /// The instruction that failed.
        location: Box<StepLocation>,
        /// What went wrong (never itself a `Step`).
        error: Box<BuildError>,
    },
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
    /// A RUN command exited non-zero (BuildKit's words; the output's last
    /// lines are shown by [`BuildError::render`]).
    #[error("process {command:?} did not complete successfully: exit code: {exit_code}")]
    RunFailed {
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
    /// A `RUN --mount=type=ssh,required` whose agent was not given:
    /// BuildKit's message (`no SSH key "ID" forwarded from the client`
    /// when no `--ssh` was given, `unset ssh forward key ID` when others
    /// were), then how to give it.
    #[error(
        "{} (RUN --mount=type=ssh,required needs it: pass --ssh {id}[=SOCKET|KEYFILE])",
        if *.others { format!("unset ssh forward key {id}") } else { format!("no SSH key {id:?} forwarded from the client") }
    )]
    SshNotFound {
        /// The agent's id.
        id: String,
        /// Whether `--ssh` gave other agents.
        others: bool,
    },
    /// A USER that is not `user`, `user:group` or numeric ids, met where
    /// a step makes files for it (WORKDIR).
    #[error("invalid USER {user:?}")]
    InvalidUser {
        /// The USER value.
        user: String,
    },
    /// A `RUN --mount` source that cannot be opened in its root (BuildKit's
    /// `"/path": not found` when it does not exist there).
    #[error(
        "{}: {} in {from} (RUN --mount=type={kind},source={path})",
        source_path(path),
        cause.as_ref().map_or_else(|| "not found".to_owned(), io_reason)
    )]
    MountSource {
        /// The mount type (`bind`).
        kind: &'static str,
        /// The `source=` value.
        path: String,
        /// Where it was looked up (`the build context`, `stage 0`).
        from: String,
        /// Why it could not be opened; `None`: it is not there.
        cause: Option<io::Error>,
    },
    /// Starting or running a container failed.
    #[error(transparent)]
    Runtime(#[from] kiln_runtime::RuntimeError),
    /// A RUN asks for a privilege that `--allow` did not grant.
    #[error("{flag} needs the {entitlement} entitlement: pass --allow {entitlement} to kiln build")]
    NotEntitled {
        /// The RUN flag.
        flag: String,
        /// The entitlement it needs.
        entitlement: &'static str,
    },
    /// A RUN for a platform this machine cannot run (no emulator).
    #[error("cannot run a RUN for {platform} on this {host} machine: {reason}")]
    PlatformNotRunnable {
        /// The platform of the stage's image (`linux/arm64`).
        platform: String,
        /// This machine's platform.
        host: String,
        /// What is missing.
        reason: String,
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
    /// ADD of a git repository failed; `reason` keeps git's message.
    #[error("{action} {url}: {reason}")]
    Git {
        /// What failed (BuildKit's words: `failed to fetch remote`).
        action: &'static str,
        /// The repository's address, without password.
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
    /// A layer named by records of an imported build cache could not be
    /// fetched whole (missing, or not matching its digest).
    #[error("{reason}")]
    PoisonedCacheLayer {
        /// The layer's digest.
        digest: String,
        /// What failed.
        reason: String,
    },
    /// Reading or writing a shared build cache (`--cache-from`,
    /// `--cache-to`) failed.
    #[error("build cache {location}: {reason}")]
    SharedCache {
        /// The directory or registry reference.
        location: String,
        /// What failed, with its cause.
        reason: String,
    },
}

/// The instruction a build error comes from: enough to render it as a
/// parse error is rendered, and to name its stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepLocation {
    /// The Dockerfile's display name.
    pub file: String,
    /// The instruction on its first line: from its keyword to the end of
    /// the line (for an ONBUILD trigger of the base, the FROM that runs
    /// it).
    pub span: Span,
    /// The text of that line.
    pub source_line: String,
    /// The instruction as written.
    pub instruction: String,
    /// The stage's index in the Dockerfile.
    pub stage_index: usize,
    /// The stage's `AS` name.
    pub stage_name: Option<String>,
    /// Whether the Dockerfile has several stages (a lone stage is not
    /// named in messages).
    pub multi_stage: bool,
    /// Whether the step is an ONBUILD trigger of the base image.
    pub onbuild: bool,
}

impl StepLocation {
    /// The location of the instruction at `span` (its keyword) of
    /// `dockerfile`, whose escape character is `escape`.
    pub fn new(file: &str, dockerfile: &str, escape: char, span: Span, instruction: &str) -> Self {
        let source_line = SourceLines::new(dockerfile).line(span.line).to_owned();
        Self {
            file: file.to_owned(),
            span: instruction_span(&source_line, escape, span),
            source_line,
            instruction: instruction.to_owned(),
            stage_index: 0,
            stage_name: None,
            multi_stage: false,
            onbuild: false,
        }
    }

    /// What the caret line says after the carets: the stage, when there
    /// are several, and the trigger for an ONBUILD step.
    fn note(&self) -> Option<String> {
        let stage = self.multi_stage.then(|| match &self.stage_name {
            Some(name) => format!("in stage {name}"),
            None => format!("in stage {}", self.stage_index),
        });
        let trigger = self
            .onbuild
            .then(|| format!("running the base image's ONBUILD {}", self.instruction));
        match (stage, trigger) {
            (Some(stage), Some(trigger)) => Some(format!("{stage}, {trigger}")),
            (one, other) => one.or(other),
        }
    }
}

impl fmt::Display for StepLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.span.line, self.span.column)
    }
}

/// The span from the keyword at `keyword` to the end of its line, without
/// trailing blanks or a continuation's escape character: the caret goes
/// under the whole instruction as far as its first line shows it.
fn instruction_span(line: &str, escape: char, keyword: Span) -> Span {
    let rest: String = line
        .chars()
        .skip(keyword.column.saturating_sub(1))
        .collect();
    let mut shown = rest.trim_end();
    if let Some(without) = shown.strip_suffix(escape) {
        shown = without.trim_end();
    }
    Span {
        width: shown.chars().count().max(keyword.width).max(1),
        ..keyword
    }
}

impl BuildError {
    /// The error at `location` (an error that already has one keeps it).
    #[must_use]
    pub fn at(self, location: StepLocation) -> Self {
        match self {
            // Cancelling is the user's doing, not the instruction's.
            unlocated @ (Self::Step { .. } | Self::Cancelled) => unlocated,
            error => Self::Step {
                location: Box::new(location),
                error: Box::new(error),
            },
        }
    }

    /// Where in the Dockerfile the error comes from, if a step raised it.
    pub fn location(&self) -> Option<&StepLocation> {
        match self {
            Self::Step { location, .. } => Some(location),
            _ => None,
        }
    }

    /// The error without its location: what callers match on.
    pub fn unlocated(&self) -> &BuildError {
        match self {
            Self::Step { error, .. } => error,
            other => other,
        }
    }

    /// The error as the CLI prints it: a located error (a step's or the
    /// Dockerfile's) with its line and a caret, then, for a failed RUN,
    /// the last lines of its output.
    pub fn render(&self) -> String {
        match self {
            Self::Dockerfile(error) => error.render(),
            Self::Step { location, error } => {
                let note = location.note();
                let mut out = kiln_parser::render_located(
                    &location.file,
                    location.span,
                    &location.source_line,
                    &error.to_string(),
                    note.as_deref(),
                );
                if let Self::RunFailed { output, .. } = error.as_ref() {
                    out.push_str(&output_tail(output));
                }
                out
            }
            other => other.to_string(),
        }
    }

    /// An I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// BuildKit's `not found` for a missing path, the error itself (its errno
/// included) otherwise.
fn io_reason(error: &io::Error) -> String {
    if error.kind() == io::ErrorKind::NotFound {
        "not found".to_owned()
    } else {
        error.to_string()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn located(dockerfile: &str, line: usize, column: usize) -> StepLocation {
        StepLocation::new(
            "Dockerfile",
            dockerfile,
            '\\',
            Span {
                line,
                column,
                width: 3,
            },
            "RUN",
        )
    }

    #[test]
    fn a_step_error_renders_as_a_parse_error_with_its_stage() {
        let error = BuildError::RunFailed {
            command: "/bin/sh -c false".to_owned(),
            exit_code: 1,
            output: "a\nb".to_owned(),
        }
        .at(StepLocation {
            stage_name: Some("build".to_owned()),
            multi_stage: true,
            ..located("FROM a AS build\n\tRUN false  \\\n  x\n", 2, 2)
        });
        assert_eq!(
            error.to_string(),
            "Dockerfile:2:2: process \"/bin/sh -c false\" did not complete successfully: exit code: 1"
        );
        assert_eq!(
            error.render(),
            "Dockerfile:2:2: process \"/bin/sh -c false\" did not complete successfully: exit code: 1\n  |\n2 |  RUN false  \\\n  |  ^^^^^^^^^ in stage build\nlast lines of output:\n  > a\n  > b"
        );
        // Callers match on the error itself; a second location is ignored.
        let again = error.at(located("RUN x\n", 1, 1));
        assert!(matches!(
            again.unlocated(),
            BuildError::RunFailed { exit_code: 1, .. }
        ));
        assert_eq!(again.location().map(|l| l.span.line), Some(2));
    }

    #[test]
    fn cancelling_is_never_located() {
        let error = BuildError::Cancelled.at(located("RUN x\n", 1, 1));
        assert!(error.location().is_none());
        assert_eq!(error.render(), "build cancelled");
    }
}
