//! Typed build operations: everything that can change a step's result,
//! and the cache key made from it.
//!
//! A step's key is the SHA-256 of [`OP_VERSION`], a newline and the
//! operation's canonical JSON (object keys sorted, no whitespace). The
//! serialisation holds only what the Dockerfile, the build arguments and
//! the content of the inputs say: no host path, store path or time, so two
//! machines building the same inputs get the same keys. A secret is named
//! by its id only, never by its content (as BuildKit keys it), an SSH agent
//! by its id and mount options, never by its socket or keys; proxy build
//! arguments are never part of an operation.

use std::fmt::Write as _;

use kiln_store::Digest;
use kiln_store::digest::digest_bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::BuildError;

/// The tag in front of every serialised operation: a change of the
/// serialisation that must not meet keys of the old one changes it.
pub const OP_VERSION: &str = "kiln-op-v3";

/// One operation of a build whose result the cache keeps.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Op {
    /// RUN.
    Run(RunOp),
    /// COPY or ADD: the layer.
    Copy(CopyOp),
    /// The chain key after a `COPY --link` layer (the layer's own key has
    /// no parent).
    Link(LinkOp),
    /// WORKDIR: makes the directory.
    Mkdir(MkdirOp),
    /// Where the content digest of a `COPY --from`'s sources is
    /// remembered.
    FromSources(FromSourcesOp),
    /// The build context's files for a `RUN --mount` bind, in a snapshot.
    ContextSnapshot(ContextSnapshotOp),
}

/// A file written by the instruction itself (a heredoc).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct InlineFile {
    /// Its name.
    pub name: String,
    /// Its content.
    pub content: String,
}

/// RUN.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunOp {
    /// The key of the filesystem the command runs on.
    pub parent: String,
    /// The command (the SHELL in front for the shell form).
    pub argv: Vec<String>,
    /// A heredoc script at `/dev/pipes/<name>`.
    pub script: Option<InlineFile>,
    /// The environment, in order: config env and build arguments, without
    /// the proxy arguments.
    pub env: Vec<(String, String)>,
    /// USER.
    pub user: String,
    /// The working directory.
    pub workdir: String,
    /// `isolated`, `host` or `none`.
    pub network: String,
    /// `sandbox` or `insecure`.
    pub security: String,
    /// `--mount`s, in order.
    pub mounts: Vec<MountInput>,
    /// The platform the command runs for (`os/arch[/variant]`, the
    /// stage's): the same command on the same files gives other results
    /// under another architecture (BuildKit's exec op carries it too).
    pub platform: String,
}

/// What a `RUN --mount` adds to its step's key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MountInput {
    /// A tmpfs.
    Tmpfs {
        /// Where.
        target: String,
        /// `size=` in bytes.
        size: Option<u64>,
    },
    /// A bind mount of the context or of a stage's files.
    Bind {
        /// Where.
        target: String,
        /// `source=` (the pattern in the context, the path in a stage).
        source: String,
        /// The key of the stage or image (`from=`); `None`: the context.
        from: Option<String>,
        /// For the context, the content digest of what is mounted.
        digest: Option<String>,
        /// `rw`.
        writable: bool,
    },
    /// A cache mount: its content never enters the key.
    Cache {
        /// Where.
        target: String,
        /// `ro`.
        read_only: bool,
        /// `sharing=`.
        sharing: String,
    },
    /// A secret: its id, never its content.
    Secret {
        /// The id.
        id: String,
        /// Where the file goes, if anywhere.
        target: Option<String>,
        /// The variable it is given in, if any.
        env: Option<String>,
    },
    /// An SSH agent socket: what BuildKit's `SSHOpt` and mount target
    /// hold, never the agent's socket path or keys.
    Ssh {
        /// The id (`default` when none is given).
        id: String,
        /// Where the socket appears.
        target: String,
        /// The socket's mode, uid and gid.
        mode: u32,
        /// See `mode`.
        uid: u32,
        /// See `mode`.
        gid: u32,
        /// `required`: a missing agent fails the step.
        required: bool,
    },
}

/// A remote file of ADD.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct UrlInput {
    /// The URL.
    pub url: String,
    /// Its content digest (the pinned `--checksum`, or of what was
    /// fetched).
    pub digest: String,
}

/// A git repository of ADD.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct GitInput {
    /// Its address, without password.
    pub remote: String,
    /// The commit the ref resolved to (a moved branch changes the key).
    pub commit: String,
    /// The directory taken from it, cleaned (empty: all of it).
    pub subdir: String,
    /// Whether `.git` is kept.
    pub keep_git_dir: bool,
    /// Whether submodules are checked out.
    pub submodules: bool,
}

/// COPY or ADD.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "each is a flag of the instruction, serialised by its name"
)]
pub struct CopyOp {
    /// The key of the filesystem the files land on; `None` with `--link`.
    pub parent: Option<String>,
    /// ADD rather than COPY.
    pub add: bool,
    /// The source patterns (local ones, not URLs).
    pub sources: Vec<String>,
    /// The destination, absolute.
    pub dest: String,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude`.
    pub excludes: Vec<String>,
    /// ADD `--unpack`.
    pub unpack: Option<bool>,
    /// ADD `--checksum`.
    pub checksum: Option<String>,
    /// Whether the sources are another stage's or image's files (keyed by
    /// their content, never by that stage's key).
    pub from_stage: bool,
    /// Heredoc files.
    pub inline: Vec<InlineFile>,
    /// Remote files.
    pub urls: Vec<UrlInput>,
    /// Git repositories (absent from the serialisation when there are
    /// none, so the keys of other steps stay as they were).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub git: Vec<GitInput>,
    /// The content digest of the sources (names, modes, owners, content).
    pub sources_digest: Option<String>,
}

/// The chain key after a `--link` layer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LinkOp {
    /// The key of the filesystem below.
    pub parent: String,
    /// The layer's own key.
    pub layer: String,
}

/// WORKDIR.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MkdirOp {
    /// The key of the filesystem below.
    pub parent: String,
    /// The directory.
    pub path: String,
    /// USER, who owns what is made.
    pub user: String,
}

/// Names the remembered content digest of a `COPY --from`'s sources.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FromSourcesOp {
    /// The key of the stage or image read.
    pub source: String,
    /// The source patterns.
    pub sources: Vec<String>,
    /// `--exclude`.
    pub excludes: Vec<String>,
    /// `--parents`.
    pub parents: bool,
}

/// The build context's files for a `RUN --mount` bind.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ContextSnapshotOp {
    /// `source=`.
    pub pattern: String,
    /// The content digest of those files.
    pub digest: String,
}

impl Op {
    /// The operation as a JSON value.
    pub fn to_value(&self) -> Result<Value, BuildError> {
        serde_json::to_value(self)
            .map_err(|e| BuildError::Internal(format!("serialising a build operation: {e}")))
    }

    /// The canonical serialisation: JSON with object keys sorted and no
    /// whitespace.
    pub fn canonical(&self) -> Result<String, BuildError> {
        Ok(canonical_json(&self.to_value()?))
    }

    /// The cache key: `sha256:` of [`OP_VERSION`], `\n` and
    /// [`canonical`](Self::canonical).
    pub fn key(&self) -> Result<String, BuildError> {
        Ok(key_of_canonical(&self.canonical()?).to_string())
    }

    /// The key of the filesystem this operation works on, if it has one.
    pub fn parent(&self) -> Option<&str> {
        match self {
            Op::Run(op) => Some(&op.parent),
            Op::Copy(op) => op.parent.as_deref(),
            Op::Link(op) => Some(&op.parent),
            Op::Mkdir(op) => Some(&op.parent),
            Op::FromSources(_) | Op::ContextSnapshot(_) => None,
        }
    }
}

/// The key of an operation serialised canonically.
pub fn key_of_canonical(canonical: &str) -> Digest {
    let mut bytes = Vec::with_capacity(OP_VERSION.len() + 1 + canonical.len());
    bytes.extend_from_slice(OP_VERSION.as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(canonical.as_bytes());
    digest_bytes(&bytes)
}

/// `value` as JSON with every object's keys in byte order and no
/// whitespace, so the text depends on nothing but the value (`serde_json`
/// here keeps insertion order).
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        Value::String(s) => write_string(s, out),
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
    }
}

/// A JSON string, escaped as `serde_json` escapes it (which never fails for
/// a `str`).
fn write_string(s: &str, out: &mut String) {
    match serde_json::to_string(s) {
        Ok(text) => out.push_str(&text),
        Err(_) => out.push_str("\"\""),
    }
}

#[cfg(test)]
mod tests;
