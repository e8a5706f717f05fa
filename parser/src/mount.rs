//! Typed parsing of `RUN`'s extra flags: `--mount`, `--network` and
//! `--security`, matching `BuildKit`'s Dockerfile frontend
//! (`frontend/dockerfile/instructions/commands_run{mount,network,security}.go`).
//!
//! A `--mount` value is one CSV record (parsed like `tonistiigi/go-csvvalue`,
//! which `BuildKit` uses) of `key=value` fields. `BuildKit` reads it twice: once
//! while parsing the Dockerfile, without variable expansion, where only the
//! CSV syntax and `from` are checked ([`parse_mount_deferred`]); and once when
//! the stage is converted, where every value is expanded and the whole mount
//! is validated ([`parse_mount`]). A few defaults are only applied later still,
//! when the mount is turned into LLB; [`Mount`]'s methods expose those.

use std::convert::Infallible;
use std::fmt;

use serde::Serialize;
use thiserror::Error;

pub use crate::csv::{CsvError, CsvField, Span, split_csv_record};

/// The kind of a `RUN --mount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MountType {
    /// `type=bind`, the default: a read-only view of the context or a stage.
    Bind,
    /// `type=cache`: a persistent cache directory.
    Cache,
    /// `type=tmpfs`: an empty in-memory filesystem.
    Tmpfs,
    /// `type=secret`: a build secret as a file or environment variable.
    Secret,
    /// `type=ssh`: an SSH agent socket.
    Ssh,
}

impl MountType {
    /// Every type, in the order used when looking for a suggestion.
    const ALL: [Self; 5] = [
        Self::Bind,
        Self::Cache,
        Self::Tmpfs,
        Self::Secret,
        Self::Ssh,
    ];

    /// The name used in Dockerfiles and error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bind => "bind",
            Self::Cache => "cache",
            Self::Tmpfs => "tmpfs",
            Self::Secret => "secret",
            Self::Ssh => "ssh",
        }
    }
}

impl fmt::Display for MountType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How concurrent builds share a cache mount (`sharing=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheSharing {
    /// Writers use the cache concurrently (`BuildKit`'s default).
    #[default]
    Shared,
    /// A writer that finds the cache in use gets a fresh one.
    Private,
    /// A writer waits until the cache is released.
    Locked,
}

impl CacheSharing {
    /// Every mode, in the order used when looking for a suggestion.
    const ALL: [Self; 3] = [Self::Shared, Self::Private, Self::Locked];

    /// The name used in Dockerfiles.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::Private => "private",
            Self::Locked => "locked",
        }
    }
}

impl fmt::Display for CacheSharing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One fully parsed and validated `RUN --mount`.
///
/// String fields are `None` when the key was absent or its value empty:
/// `BuildKit` makes no difference between the two. `env` is the exception,
/// where an empty name is kept (`Some("")`) because `BuildKit` keys off its
/// presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// `type=`; bind when absent.
    pub kind: MountType,
    /// `from=`: stage or image name that provides the source.
    pub from: Option<String>,
    /// `source=`/`src=`.
    pub source: Option<String>,
    /// `target=`/`dst=`/`destination=`. `BuildKit` does not require it at parse
    /// time; see [`Mount::resolve_target`] for what an absent one means.
    pub target: Option<String>,
    /// `readonly`/`ro`/`readwrite`/`rw`; when none is given, true except for
    /// cache and tmpfs mounts.
    pub read_only: bool,
    /// `id=`: the cache, secret or SSH agent id.
    pub cache_id: Option<String>,
    /// `sharing=`; only ever set explicitly on cache mounts.
    pub sharing: CacheSharing,
    /// `required`: fail when the secret or SSH agent is missing.
    pub required: bool,
    /// `mode=`, parsed as octal.
    pub mode: Option<u32>,
    /// `uid=`.
    pub uid: Option<u64>,
    /// `gid=`.
    pub gid: Option<u64>,
    /// `size=` of a tmpfs mount, in bytes.
    pub size_limit: Option<u64>,
    /// `env=`: expose a secret as this environment variable.
    pub env: Option<String>,
}

/// What the parse-time pass over a `--mount` value yields: the value is not
/// expanded yet, so only `from` (needed for stage dependencies) is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeferredMount {
    /// The last non-empty `from=` value, unexpanded.
    pub from: Option<String>,
    /// Where that `from=` field is in the flag value.
    pub from_span: Option<Span>,
}

/// The value of `RUN --network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// `default`, also used when the flag is absent.
    #[default]
    Default,
    /// `none`: no network access.
    None,
    /// `host`: the host's network namespace.
    Host,
}

impl NetworkMode {
    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Default => "default",
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
        }
    }
}

/// The value of `RUN --security`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityMode {
    /// `sandbox`, also used when the flag is absent.
    #[default]
    Sandbox,
    /// `insecure`: run with elevated privileges.
    Insecure,
}

impl SecurityMode {
    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityMode::Sandbox => "sandbox",
            SecurityMode::Insecure => "insecure",
        }
    }
}

/// Why a `--mount` value was rejected. Messages are `BuildKit`'s; each variant
/// that concerns one field carries that field's [`Span`].
///
/// `E` is the error type of the variable expander passed to [`parse_mount`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MountError<E> {
    /// The value is not a valid CSV record.
    #[error("failed to parse csv mounts: {error}")]
    Csv {
        /// The CSV problem.
        error: CsvError,
    },
    /// A field without `=` that is not one of the boolean keys.
    #[error("invalid field '{field}' must be a key=value pair")]
    NotKeyValue {
        /// The field as written.
        field: String,
        /// Where it is.
        span: Span,
    },
    /// `required` or `size` given for a type that does not take it (at the
    /// point it appears: `type=` must come first).
    #[error("unexpected key '{key}' for mount type '{mount_type}'")]
    KeyNotAllowedForType {
        /// The key, lowercased.
        key: String,
        /// The mount type in effect when the key was read.
        mount_type: MountType,
        /// Where the field is.
        span: Span,
    },
    /// `from=` refers to a variable in the parse-time pass.
    #[error("'from' doesn't support variable expansion, define alias stage instead")]
    FromVariable {
        /// Where the `from=` field is.
        span: Span,
    },
    /// The expander failed on a field's value; shown as the expander's error.
    #[error("{error}")]
    Expand {
        /// The field's key, lowercased.
        key: String,
        /// Where the field is.
        span: Span,
        /// The expander's error.
        error: E,
    },
    /// `type=` names no mount type.
    #[error("unsupported mount type {}{}", crate::golang::quote(value), crate::suggest::did_you_mean(*suggestion))]
    UnsupportedType {
        /// The value, expanded.
        value: String,
        /// The closest known type, if one is close enough.
        suggestion: Option<&'static str>,
        /// Where the field is.
        span: Span,
    },
    /// A boolean (`ro`, `rw`, `required`, ...) or `size` value that does not parse.
    #[error("invalid value for {key}: {value}")]
    InvalidValue {
        /// The key, lowercased.
        key: String,
        /// The value, expanded.
        value: String,
        /// Where the field is.
        span: Span,
    },
    /// `sharing=` names no sharing mode.
    #[error("unsupported sharing value {}{}", crate::golang::quote(value), crate::suggest::did_you_mean(*suggestion))]
    UnsupportedSharing {
        /// The value, expanded.
        value: String,
        /// The closest known mode, if one is close enough.
        suggestion: Option<&'static str>,
        /// Where the field is.
        span: Span,
    },
    /// `mode=`, `uid=` or `gid=` is not a 32-bit number (octal for mode).
    #[error("invalid value {value} for {key}")]
    InvalidNumber {
        /// `mode`, `uid` or `gid`.
        key: &'static str,
        /// The value, expanded.
        value: String,
        /// Where the field is.
        span: Span,
    },
    /// A key `BuildKit` does not know.
    #[error("unexpected key '{key}' in '{field}'{}", crate::suggest::did_you_mean(*suggestion))]
    UnknownKey {
        /// The key, lowercased.
        key: String,
        /// The field as written.
        field: String,
        /// The closest known key, if one is close enough.
        suggestion: Option<&'static str>,
        /// Where the field is.
        span: Span,
    },
    /// `mode`, `uid` or `gid` on a bind or tmpfs mount.
    #[error("{key} not allowed for \"{mount_type}\" type mounts")]
    FileInfoNotAllowed {
        /// `mode`, `uid` or `gid`.
        key: &'static str,
        /// The mount's type.
        mount_type: MountType,
        /// Where the last field setting the key is.
        span: Span,
    },
    /// A secret mount with `from=`.
    #[error("secret mount should not have a from")]
    SecretWithFrom {
        /// Where the `from=` field is.
        span: Span,
    },
    /// A secret mount with `sharing=`.
    #[error("secret mount should not define sharing")]
    SecretWithSharing {
        /// Where the `sharing=` field is.
        span: Span,
    },
    /// A secret mount with none of `source`, `target`, `id`.
    #[error("invalid secret mount. one of source, target required")]
    SecretWithoutSource,
    /// A secret mount with both `source` and `id`.
    #[error("both source and id can't be set")]
    SecretSourceAndId {
        /// Where the `id=` field is.
        span: Span,
    },
    /// `sharing=` on a mount that is not a cache.
    #[error("invalid cache sharing set for {mount_type} mount")]
    SharingNotCache {
        /// The mount's type.
        mount_type: MountType,
        /// Where the `sharing=` field is.
        span: Span,
    },
}

impl<E> MountError<E> {
    /// The field the error is about, if it is about one field.
    pub fn span(&self) -> Option<Span> {
        match self {
            Self::Csv { error } => error.offset().map(|start| Span {
                start,
                end: start.saturating_add(1),
            }),
            Self::SecretWithoutSource => None,
            Self::NotKeyValue { span, .. }
            | Self::KeyNotAllowedForType { span, .. }
            | Self::FromVariable { span }
            | Self::Expand { span, .. }
            | Self::UnsupportedType { span, .. }
            | Self::InvalidValue { span, .. }
            | Self::UnsupportedSharing { span, .. }
            | Self::InvalidNumber { span, .. }
            | Self::UnknownKey { span, .. }
            | Self::FileInfoNotAllowed { span, .. }
            | Self::SecretWithFrom { span }
            | Self::SecretWithSharing { span }
            | Self::SecretSourceAndId { span }
            | Self::SharingNotCache { span, .. } => Some(*span),
        }
    }
}

/// Errors `BuildKit` raises only when it converts a mount into LLB.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MountDispatchError {
    /// An SSH mount with `source=`.
    #[error("ssh does not support source")]
    SshSource,
    /// The mount point resolves to the root directory.
    #[error("invalid mount target {}", crate::golang::quote(target))]
    InvalidTarget {
        /// The resolved target.
        target: String,
    },
}

/// An invalid `--network` or `--security` value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RunFlagError {
    /// `--network` is not `default`, `none` or `host`.
    #[error("invalid network mode {}", crate::golang::quote(value))]
    InvalidNetwork {
        /// The value as given.
        value: String,
    },
    /// `--security` is not `sandbox` or `insecure`.
    #[error("security {} is not valid", crate::golang::quote(value))]
    InvalidSecurity {
        /// The value as given.
        value: String,
    },
}

/// Parses a `RUN --network` value. Case matters: `HOST` is rejected.
pub fn parse_network(value: &str) -> Result<NetworkMode, RunFlagError> {
    match value {
        "default" => Ok(NetworkMode::Default),
        "none" => Ok(NetworkMode::None),
        "host" => Ok(NetworkMode::Host),
        _ => Err(RunFlagError::InvalidNetwork {
            value: value.to_owned(),
        }),
    }
}

/// Parses a `RUN --security` value. Case matters.
pub fn parse_security(value: &str) -> Result<SecurityMode, RunFlagError> {
    match value {
        "sandbox" => Ok(SecurityMode::Sandbox),
        "insecure" => Ok(SecurityMode::Insecure),
        _ => Err(RunFlagError::InvalidSecurity {
            value: value.to_owned(),
        }),
    }
}

/// Keys listed in `BuildKit`'s "did you mean" lookup, in its order.
const ALL_KEYS: [&str; 19] = [
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

/// The parse-time pass `BuildKit` makes over a `--mount` value before variables
/// can be expanded: checks the CSV syntax and that `from=` uses no variable
/// (a `$` anywhere but at the very end), and returns `from`. Nothing else is
/// validated here; [`parse_mount`] does that later.
pub fn parse_mount_deferred(value: &str) -> Result<DeferredMount, MountError<Infallible>> {
    let fields = split_csv_record(value).map_err(|error| MountError::Csv { error })?;
    let mut out = DeferredMount {
        from: None,
        from_span: None,
    };
    for field in &fields {
        let Some((key, val)) = field.text.split_once('=') else {
            continue;
        };
        if crate::golang::to_lower(key) != "from" {
            continue;
        }
        if val.find('$').is_some_and(|i| i + 1 != val.len()) {
            return Err(MountError::FromVariable { span: field.span });
        }
        out.from = non_empty(val);
        out.from_span = Some(field.span);
    }
    Ok(out)
}

/// Parses and validates a `RUN --mount` value as `BuildKit` does when it
/// converts the instruction. `expand` is applied to the value of every
/// `key=value` field (keys and bare boolean flags are not expanded), after
/// CSV splitting and before the key is interpreted; its error is returned
/// as is. Fields are read left to right, so `type=` must precede keys that
/// depend on it (`required`, `size`).
pub fn parse_mount<E>(
    value: &str,
    expand: &mut dyn FnMut(&str) -> Result<String, E>,
) -> Result<Mount, MountError<E>> {
    let fields = split_csv_record(value).map_err(|error| MountError::Csv { error })?;
    let mut b = MountBuilder::new();
    for field in &fields {
        let span = field.span;
        let Some((raw_key, raw_value)) = field.text.split_once('=') else {
            b.apply_flag(crate::golang::to_lower(&field.text), field)?;
            continue;
        };
        let key = crate::golang::to_lower(raw_key);
        let value = match expand(raw_value) {
            Ok(v) => v,
            Err(error) => return Err(MountError::Expand { key, span, error }),
        };
        b.apply_value(key, value, field)?;
    }
    b.finish()
}

/// A mount being assembled field by field, with what validation needs to
/// know about how it was written.
struct MountBuilder {
    m: Mount,
    /// No `ro`/`rw` key was given, so the type decides.
    ro_auto: bool,
    /// `sharing=` was given (the default is not an explicit setting).
    sharing_set: bool,
    /// Fields that last set the attributes checked at the end.
    from_span: Option<Span>,
    id_span: Option<Span>,
    mode_span: Option<Span>,
    uid_span: Option<Span>,
    gid_span: Option<Span>,
    sharing_span: Option<Span>,
}

impl MountBuilder {
    fn new() -> Self {
        Self {
            m: Mount {
                kind: MountType::Bind,
                from: None,
                source: None,
                target: None,
                read_only: false,
                cache_id: None,
                sharing: CacheSharing::Shared,
                required: false,
                mode: None,
                uid: None,
                gid: None,
                size_limit: None,
                env: None,
            },
            ro_auto: true,
            sharing_set: false,
            from_span: None,
            id_span: None,
            mode_span: None,
            uid_span: None,
            gid_span: None,
            sharing_span: None,
        }
    }

    fn takes_required(&self) -> bool {
        matches!(self.m.kind, MountType::Secret | MountType::Ssh)
    }

    fn not_for_type<E>(&self, key: String, span: Span) -> MountError<E> {
        MountError::KeyNotAllowedForType {
            key,
            mount_type: self.m.kind,
            span,
        }
    }

    /// A field without `=`: only the boolean keys may be written that way.
    fn apply_flag<E>(&mut self, key: String, field: &CsvField) -> Result<(), MountError<E>> {
        match key.as_str() {
            "readonly" | "ro" => {
                self.m.read_only = true;
                self.ro_auto = false;
            }
            "readwrite" | "rw" => {
                self.m.read_only = false;
                self.ro_auto = false;
            }
            "required" if self.takes_required() => self.m.required = true,
            "required" => return Err(self.not_for_type(key, field.span)),
            _ => {
                return Err(MountError::NotKeyValue {
                    field: field.text.clone(),
                    span: field.span,
                });
            }
        }
        Ok(())
    }

    /// A `key=value` field, its value already expanded.
    fn apply_value<E>(
        &mut self,
        key: String,
        value: String,
        field: &CsvField,
    ) -> Result<(), MountError<E>> {
        let span = field.span;
        match key.as_str() {
            "type" => self.m.kind = parse_type(value, span)?,
            "from" => {
                self.m.from = non_empty(&value);
                self.from_span = Some(span);
            }
            "source" | "src" => self.m.source = non_empty(&value),
            "target" | "dst" | "destination" => self.m.target = non_empty(&value),
            "readonly" | "ro" => {
                self.m.read_only = parse_bool_field(key, value, span)?;
                self.ro_auto = false;
            }
            "readwrite" | "rw" => {
                self.m.read_only = !parse_bool_field(key, value, span)?;
                self.ro_auto = false;
            }
            "required" if self.takes_required() => {
                self.m.required = parse_bool_field(key, value, span)?;
            }
            "size" if self.m.kind == MountType::Tmpfs => {
                match crate::values::size::ram_in_bytes(&value) {
                    Ok(n) => self.m.size_limit = Some(n),
                    Err(_) => return Err(MountError::InvalidValue { key, value, span }),
                }
            }
            "required" | "size" => return Err(self.not_for_type(key, span)),
            "id" => {
                self.m.cache_id = non_empty(&value);
                self.id_span = Some(span);
            }
            "sharing" => {
                self.m.sharing = parse_sharing(value, span)?;
                self.sharing_set = true;
                self.sharing_span = Some(span);
            }
            "mode" => {
                self.m.mode = Some(parse_number_field("mode", value, 8, span)?);
                self.mode_span = Some(span);
            }
            "uid" => {
                self.m.uid = Some(u64::from(parse_number_field("uid", value, 10, span)?));
                self.uid_span = Some(span);
            }
            "gid" => {
                self.m.gid = Some(u64::from(parse_number_field("gid", value, 10, span)?));
                self.gid_span = Some(span);
            }
            "env" => self.m.env = Some(value),
            _ => {
                let suggestion = suggest(&key, ALL_KEYS);
                return Err(MountError::UnknownKey {
                    key,
                    field: field.text.clone(),
                    suggestion,
                    span,
                });
            }
        }
        Ok(())
    }

    /// The checks `BuildKit` runs once all fields are read, in its order.
    fn finish<E>(mut self) -> Result<Mount, MountError<E>> {
        let fallback = Span { start: 0, end: 0 };
        let m = &mut self.m;
        if !matches!(
            m.kind,
            MountType::Secret | MountType::Ssh | MountType::Cache
        ) {
            let checks = [
                ("mode", m.mode.is_some(), self.mode_span),
                ("uid", m.uid.is_some(), self.uid_span),
                ("gid", m.gid.is_some(), self.gid_span),
            ];
            if let Some((key, _, span)) = checks.into_iter().find(|c| c.1) {
                return Err(MountError::FileInfoNotAllowed {
                    key,
                    mount_type: m.kind,
                    span: span.unwrap_or(fallback),
                });
            }
        }

        if self.ro_auto {
            m.read_only = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
        }

        if m.kind == MountType::Secret {
            if m.from.is_some() {
                return Err(MountError::SecretWithFrom {
                    span: self.from_span.unwrap_or(fallback),
                });
            }
            if self.sharing_set {
                return Err(MountError::SecretWithSharing {
                    span: self.sharing_span.unwrap_or(fallback),
                });
            }
            if m.source.is_none() && m.target.is_none() && m.cache_id.is_none() {
                return Err(MountError::SecretWithoutSource);
            }
            if m.source.is_some() && m.cache_id.is_some() {
                return Err(MountError::SecretSourceAndId {
                    span: self.id_span.unwrap_or(fallback),
                });
            }
        }

        if self.sharing_set && m.kind != MountType::Cache {
            return Err(MountError::SharingNotCache {
                mount_type: m.kind,
                span: self.sharing_span.unwrap_or(fallback),
            });
        }
        Ok(self.m)
    }
}

/// `type=`: matched case-insensitively; the suggestion uses the value as given.
fn parse_type<E>(value: String, span: Span) -> Result<MountType, MountError<E>> {
    let lower = crate::golang::to_lower(&value);
    if let Some(t) = MountType::ALL.into_iter().find(|t| t.as_str() == lower) {
        return Ok(t);
    }
    let suggestion = suggest(&value, MountType::ALL.map(MountType::as_str));
    Err(MountError::UnsupportedType {
        value,
        suggestion,
        span,
    })
}

/// `sharing=`: matched case-insensitively; the suggestion uses the value as given.
fn parse_sharing<E>(value: String, span: Span) -> Result<CacheSharing, MountError<E>> {
    let lower = crate::golang::to_lower(&value);
    if let Some(s) = CacheSharing::ALL.into_iter().find(|s| s.as_str() == lower) {
        return Ok(s);
    }
    let suggestion = suggest(&value, CacheSharing::ALL.map(CacheSharing::as_str));
    Err(MountError::UnsupportedSharing {
        value,
        suggestion,
        span,
    })
}

fn parse_bool_field<E>(key: String, value: String, span: Span) -> Result<bool, MountError<E>> {
    crate::golang::parse_bool(&value).ok_or(MountError::InvalidValue { key, value, span })
}

fn parse_number_field<E>(
    key: &'static str,
    value: String,
    base: u32,
    span: Span,
) -> Result<u32, MountError<E>> {
    crate::golang::parse_uint(&value, base, 32)
        .ok()
        .and_then(|v| u32::try_from(v).ok())
        .ok_or(MountError::InvalidNumber { key, value, span })
}

impl Mount {
    /// The secret id `BuildKit` requests: `source`, else `id`, else the last
    /// element of `target`. `None` for a mount without any of them (which
    /// validation rejects for secret mounts).
    pub fn secret_id(&self) -> Option<String> {
        self.source
            .clone()
            .or_else(|| self.cache_id.clone())
            .or_else(|| {
                self.target
                    .as_deref()
                    .map(|t| crate::golang::path_base(t).to_owned())
            })
    }

    /// Where a secret is mounted as a file: `target`, else
    /// `/run/secrets/<last element of the id>`. With `env=` and no target
    /// the secret is only an environment variable, so `None`.
    pub fn secret_target(&self) -> Option<String> {
        if self.target.is_some() || self.env.is_some() {
            return self.target.clone();
        }
        self.secret_id()
            .map(|id| format!("/run/secrets/{}", crate::golang::path_base(&id)))
    }

    /// The SSH agent id `BuildKit` requests: `id`, else `default`.
    pub fn ssh_id(&self) -> &str {
        self.cache_id.as_deref().unwrap_or("default")
    }

    /// Where the SSH agent socket appears: `target`, else
    /// `/run/buildkit/ssh_agent.<ssh_index>`, where `ssh_index` is this
    /// mount's position among the SSH mounts of the same `RUN` (counting
    /// those with an explicit target too).
    pub fn ssh_target(&self, ssh_index: usize) -> String {
        self.target
            .clone()
            .unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{ssh_index}"))
    }

    /// The cache id of a cache mount: `id`, else the cleaned `target`
    /// (`.` when there is no target), as `BuildKit` defaults it.
    pub fn effective_cache_id(&self) -> String {
        match &self.cache_id {
            Some(id) => id.clone(),
            None => crate::golang::path_clean(self.target.as_deref().unwrap_or("")),
        }
    }

    /// File mode `BuildKit` gives a secret file or SSH socket when `uid`,
    /// `gid` or `mode` is set: `mode`, else 0400 (secret) or 0600 (ssh).
    /// `None` when none of the three is set or for other mount types.
    pub fn file_mode(&self) -> Option<u32> {
        if self.mode.is_none() && self.uid.is_none() && self.gid.is_none() {
            return None;
        }
        match self.kind {
            MountType::Secret => Some(self.mode.unwrap_or(0o400)),
            MountType::Ssh => Some(self.mode.unwrap_or(0o600)),
            _ => None,
        }
    }

    /// Checks `BuildKit` makes when it converts the mount, independent of
    /// the stage: an SSH mount cannot have a source.
    pub fn check_dispatch(&self) -> Result<(), MountDispatchError> {
        if self.kind == MountType::Ssh && self.source.is_some() {
            return Err(MountDispatchError::SshSource);
        }
        Ok(())
    }

    /// The mount point of a bind, cache or tmpfs mount given the stage's
    /// working directory. An absolute target is used as written; otherwise
    /// (including no target at all) it is joined to `workdir` and cleaned.
    /// A result of `/` is rejected, which is how `BuildKit` ends up requiring
    /// a target when the working directory is `/`.
    pub fn resolve_target(&self, workdir: &str) -> Result<String, MountDispatchError> {
        let target = self.target.as_deref().unwrap_or("");
        let resolved = if crate::golang::path_clean(target).starts_with('/') {
            target.to_owned()
        } else {
            crate::golang::path_clean(&format!("/{workdir}/{target}"))
        };
        if resolved == "/" {
            return Err(MountDispatchError::InvalidTarget { target: resolved });
        }
        Ok(resolved)
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// BuildKit's `suggest.WrapError` (case-sensitive) over `options` in the
/// order given: where Go iterates a map (mount types, sharing modes) its
/// order is random, and ties then go to the earlier option here.
fn suggest<const N: usize>(val: &str, options: [&'static str; N]) -> Option<&'static str> {
    crate::suggest::nearest(val, options, crate::suggest::Order::Listed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Mount, MountError<Infallible>> {
        parse_mount(s, &mut |v: &str| Ok::<_, Infallible>(v.to_owned()))
    }

    #[expect(
        clippy::unnecessary_wraps,
        reason = "shorthand for the expected optional fields"
    )]
    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    /// What a bare `--mount=` with only defaults looks like after parsing.
    fn base(kind: MountType) -> Mount {
        Mount {
            kind,
            from: None,
            source: None,
            target: None,
            read_only: !matches!(kind, MountType::Cache | MountType::Tmpfs),
            cache_id: None,
            sharing: CacheSharing::Shared,
            required: false,
            mode: None,
            uid: None,
            gid: None,
            size_limit: None,
            env: None,
        }
    }

    #[test]
    fn csv_error_messages() {
        let cases = [
            ("", "failed to parse csv mounts: EOF"),
            (
                "target=/a\"b",
                "failed to parse csv mounts: parse error on line 1, column 10: bare \" in non-quoted-field",
            ),
            (
                "\"target=/a",
                "failed to parse csv mounts: parse error on line 1, column 2: extraneous or missing \" in quoted-field",
            ),
            (
                "\"target=/a\"x",
                "failed to parse csv mounts: parse error on line 1, column 11: extraneous or missing \" in quoted-field",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).unwrap_err().to_string(), want, "{input:?}");
            assert_eq!(
                parse_mount_deferred(input).unwrap_err().to_string(),
                want,
                "{input:?}"
            );
        }
        assert_eq!(
            parse("target=/a\"b").unwrap_err().span(),
            Some(Span { start: 9, end: 10 })
        );
    }

    #[test]
    #[expect(clippy::too_many_lines, reason = "one table of cases")]
    fn mounts_parse() {
        let cases: Vec<(&str, Mount)> = vec![
            // Upstream integration tests (dockerfile_mount_test.go and friends).
            (
                "target=/context",
                Mount {
                    target: s("/context"),
                    ..base(MountType::Bind)
                },
            ),
            (
                "target=/mytmp,type=tmpfs",
                Mount {
                    target: s("/mytmp"),
                    ..base(MountType::Tmpfs)
                },
            ),
            (
                "type=tmpfs,target=/foo/",
                Mount {
                    target: s("/foo/"),
                    ..base(MountType::Tmpfs)
                },
            ),
            (
                "from=build,src=out,target=/out,rw",
                Mount {
                    from: s("build"),
                    source: s("out"),
                    target: s("/out"),
                    read_only: false,
                    ..base(MountType::Bind)
                },
            ),
            (
                "type=cache,target=/mycache,uid=1001,gid=1002,mode=0751",
                Mount {
                    target: s("/mycache"),
                    uid: Some(1001),
                    gid: Some(1002),
                    mode: Some(0o751),
                    ..base(MountType::Cache)
                },
            ),
            (
                "type=cache,id=mycache,target=/tmp/meta",
                Mount {
                    target: s("/tmp/meta"),
                    cache_id: s("mycache"),
                    ..base(MountType::Cache)
                },
            ),
            (
                "type=tmpfs,target=/dev/shm,size=128m",
                Mount {
                    target: s("/dev/shm"),
                    size_limit: Some(128 << 20),
                    ..base(MountType::Tmpfs)
                },
            ),
            (
                "type=secret,required=false,mode=741,uid=100,gid=102,target=/mysecret",
                Mount {
                    target: s("/mysecret"),
                    mode: Some(0o741),
                    uid: Some(100),
                    gid: Some(102),
                    ..base(MountType::Secret)
                },
            ),
            (
                "type=secret,required,id=mysecret",
                Mount {
                    required: true,
                    cache_id: s("mysecret"),
                    ..base(MountType::Secret)
                },
            ),
            (
                "type=secret,id=mysecret,env=SECRET_ENV",
                Mount {
                    cache_id: s("mysecret"),
                    env: s("SECRET_ENV"),
                    ..base(MountType::Secret)
                },
            ),
            (
                "type=secret,id=mysecret,target=/run/secrets/secret,env=SECRET_ENV",
                Mount {
                    cache_id: s("mysecret"),
                    target: s("/run/secrets/secret"),
                    env: s("SECRET_ENV"),
                    ..base(MountType::Secret)
                },
            ),
            ("type=ssh", base(MountType::Ssh)),
            (
                "type=ssh,id=key,target=/sock,required=true,mode=0600,uid=1,gid=2",
                Mount {
                    cache_id: s("key"),
                    target: s("/sock"),
                    required: true,
                    mode: Some(0o600),
                    uid: Some(1),
                    gid: Some(2),
                    ..base(MountType::Ssh)
                },
            ),
            // Every key and alias.
            (
                "dst=/d",
                Mount {
                    target: s("/d"),
                    ..base(MountType::Bind)
                },
            ),
            (
                "destination=/d",
                Mount {
                    target: s("/d"),
                    ..base(MountType::Bind)
                },
            ),
            (
                "source=a,target=/t",
                Mount {
                    source: s("a"),
                    target: s("/t"),
                    ..base(MountType::Bind)
                },
            ),
            (
                "type=bind,ro=false,target=/t",
                Mount {
                    target: s("/t"),
                    read_only: false,
                    ..base(MountType::Bind)
                },
            ),
            (
                "type=cache,readonly=TRUE",
                Mount {
                    read_only: true,
                    ..base(MountType::Cache)
                },
            ),
            (
                "type=cache,readonly",
                Mount {
                    read_only: true,
                    ..base(MountType::Cache)
                },
            ),
            (
                "type=cache,ro",
                Mount {
                    read_only: true,
                    ..base(MountType::Cache)
                },
            ),
            (
                "readwrite=1",
                Mount {
                    read_only: false,
                    ..base(MountType::Bind)
                },
            ),
            (
                "readwrite",
                Mount {
                    read_only: false,
                    ..base(MountType::Bind)
                },
            ),
            (
                "type=cache,rw=0",
                Mount {
                    read_only: true,
                    ..base(MountType::Cache)
                },
            ),
            (
                "type=cache,rw=F",
                Mount {
                    read_only: true,
                    ..base(MountType::Cache)
                },
            ),
            (
                "ro,rw",
                Mount {
                    read_only: false,
                    ..base(MountType::Bind)
                },
            ),
            ("rw,ro=t", base(MountType::Bind)),
            (
                "type=cache,sharing=locked",
                Mount {
                    sharing: CacheSharing::Locked,
                    ..base(MountType::Cache)
                },
            ),
            (
                "type=cache,sharing=PRIVATE",
                Mount {
                    sharing: CacheSharing::Private,
                    ..base(MountType::Cache)
                },
            ),
            ("type=cache,sharing=Shared", base(MountType::Cache)),
            (
                "type=secret,id=a,env=",
                Mount {
                    cache_id: s("a"),
                    env: s(""),
                    ..base(MountType::Secret)
                },
            ),
            (
                "type=secret,source=foo",
                Mount {
                    source: s("foo"),
                    ..base(MountType::Secret)
                },
            ),
            (
                "type=secret,target=/x",
                Mount {
                    target: s("/x"),
                    ..base(MountType::Secret)
                },
            ),
            (
                "type=secret,id=a,required=True",
                Mount {
                    cache_id: s("a"),
                    required: true,
                    ..base(MountType::Secret)
                },
            ),
            (
                "type=ssh,required",
                Mount {
                    required: true,
                    ..base(MountType::Ssh)
                },
            ),
            ("type=ssh,required=0", base(MountType::Ssh)),
            (
                "type=ssh,from=x,source=y",
                Mount {
                    from: s("x"),
                    source: s("y"),
                    ..base(MountType::Ssh)
                },
            ),
            (
                "type=tmpfs,size=0",
                Mount {
                    size_limit: Some(0),
                    ..base(MountType::Tmpfs)
                },
            ),
            (
                "type=tmpfs,size=1.5k",
                Mount {
                    size_limit: Some(1536),
                    ..base(MountType::Tmpfs)
                },
            ),
            (
                "type=tmpfs,size=1 GiB",
                Mount {
                    size_limit: Some(1 << 30),
                    ..base(MountType::Tmpfs)
                },
            ),
            (
                "type=cache,mode=0",
                Mount {
                    mode: Some(0),
                    ..base(MountType::Cache)
                },
            ),
            (
                "type=cache,mode=37777777777",
                Mount {
                    mode: Some(u32::MAX),
                    ..base(MountType::Cache)
                },
            ),
            (
                "type=cache,uid=4294967295",
                Mount {
                    uid: Some(4_294_967_295),
                    ..base(MountType::Cache)
                },
            ),
            (
                "type=cache,gid=007",
                Mount {
                    gid: Some(7),
                    ..base(MountType::Cache)
                },
            ),
            (
                "env=X",
                Mount {
                    env: s("X"),
                    ..base(MountType::Bind)
                },
            ),
            // Keys and the type/sharing values are case-insensitive.
            (
                "TYPE=CACHE,Target=/x",
                Mount {
                    target: s("/x"),
                    ..base(MountType::Cache)
                },
            ),
            (
                "Type=Tmpfs,SIZE=1K",
                Mount {
                    size_limit: Some(1024),
                    ..base(MountType::Tmpfs)
                },
            ),
            (
                "type=Secret,ID=s,REQUIRED",
                Mount {
                    cache_id: s("s"),
                    required: true,
                    ..base(MountType::Secret)
                },
            ),
            // Go's ToLower maps U+0130 to `i` and U+212A to `k`.
            (
                "type=cache,\u{130}D=foo",
                Mount {
                    cache_id: s("foo"),
                    ..base(MountType::Cache)
                },
            ),
            ("type=b\u{130}nd", base(MountType::Bind)),
            (
                "type=cache,sharing=loc\u{212a}ed",
                Mount {
                    sharing: CacheSharing::Locked,
                    ..base(MountType::Cache)
                },
            ),
            (
                "type=tmpfs,size=1\u{212a}",
                Mount {
                    size_limit: Some(1024),
                    ..base(MountType::Tmpfs)
                },
            ),
            // Later fields override earlier ones; empty values unset.
            ("target=/x,target=", base(MountType::Bind)),
            ("type=cache,type=bind", base(MountType::Bind)),
            ("from=a,from=", base(MountType::Bind)),
            ("type=cache,id=a,id=", base(MountType::Cache)),
            // Values keep everything after the first `=`.
            (
                "target=/a=b",
                Mount {
                    target: s("/a=b"),
                    ..base(MountType::Bind)
                },
            ),
            (
                "target= /x ",
                Mount {
                    target: s(" /x "),
                    ..base(MountType::Bind)
                },
            ),
            // CSV quoting.
            (
                "\"target=/a,b\",type=cache",
                Mount {
                    target: s("/a,b"),
                    ..base(MountType::Cache)
                },
            ),
            (
                "\"target=/a\"\"b\"",
                Mount {
                    target: s("/a\"b"),
                    ..base(MountType::Bind)
                },
            ),
            (
                "type=cache,\"target=/x\"\n",
                Mount {
                    target: s("/x"),
                    ..base(MountType::Cache)
                },
            ),
            (
                "target=/données,type=cache",
                Mount {
                    target: s("/données"),
                    ..base(MountType::Cache)
                },
            ),
        ];
        for (input, want) in cases {
            match parse(input) {
                Ok(got) => assert_eq!(got, want, "{input:?}"),
                Err(e) => panic!("{input:?}: {e}"),
            }
        }
    }

    #[test]
    #[expect(clippy::too_many_lines, reason = "one table of cases")]
    fn mount_errors() {
        let cases: &[(&str, &str)] = &[
            // Upstream integration tests.
            (
                "typ=tmpfs",
                "unexpected key 'typ' in 'typ=tmpfs' (did you mean type?)",
            ),
            (
                "type=tmp",
                "unsupported mount type \"tmp\" (did you mean tmpfs?)",
            ),
            // Unknown type and sharing values, with and without a suggestion.
            ("type=foobar", "unsupported mount type \"foobar\""),
            ("type=", "unsupported mount type \"\""),
            ("type=BINDD", "unsupported mount type \"BINDD\""),
            (
                "type=Bindd",
                "unsupported mount type \"Bindd\" (did you mean bind?)",
            ),
            (
                "type=caché",
                "unsupported mount type \"caché\" (did you mean cache?)",
            ),
            (
                "type=\tbind",
                "unsupported mount type \"\\tbind\" (did you mean bind?)",
            ),
            (
                "type=sh",
                "unsupported mount type \"sh\" (did you mean ssh?)",
            ),
            (
                "type=secrets",
                "unsupported mount type \"secrets\" (did you mean secret?)",
            ),
            (
                "type=cache,sharing=exclusive",
                "unsupported sharing value \"exclusive\"",
            ),
            (
                "type=cache,sharing=share",
                "unsupported sharing value \"share\" (did you mean shared?)",
            ),
            ("type=cache,sharing=", "unsupported sharing value \"\""),
            (
                "sharing=lock",
                "unsupported sharing value \"lock\" (did you mean locked?)",
            ),
            // Fields that must be key=value.
            ("foo", "invalid field 'foo' must be a key=value pair"),
            ("Env", "invalid field 'Env' must be a key=value pair"),
            (
                "type=cache,,target=/x",
                "invalid field '' must be a key=value pair",
            ),
            ("target=/x,", "invalid field '' must be a key=value pair"),
            ("\"\"", "invalid field '' must be a key=value pair"),
            // Keys that depend on the type seen so far.
            (
                "required",
                "unexpected key 'required' for mount type 'bind'",
            ),
            (
                "REQUIRED",
                "unexpected key 'required' for mount type 'bind'",
            ),
            (
                "required,type=secret,id=a",
                "unexpected key 'required' for mount type 'bind'",
            ),
            (
                "type=cache,required=true",
                "unexpected key 'required' for mount type 'cache'",
            ),
            (
                "type=tmpfs,required=x",
                "unexpected key 'required' for mount type 'tmpfs'",
            ),
            (
                "type=cache,size=1m",
                "unexpected key 'size' for mount type 'cache'",
            ),
            (
                "size=1m,type=tmpfs",
                "unexpected key 'size' for mount type 'bind'",
            ),
            (
                "type=secret,id=a,Size=1",
                "unexpected key 'size' for mount type 'secret'",
            ),
            // Invalid values.
            ("type=tmpfs,size=big", "invalid value for size: big"),
            ("type=tmpfs,size=-1", "invalid value for size: -1"),
            ("type=tmpfs,size=", "invalid value for size: "),
            ("type=tmpfs,size=1e30", "invalid value for size: 1e30"),
            ("ro=yes", "invalid value for ro: yes"),
            ("READONLY=maybe", "invalid value for readonly: maybe"),
            ("rw=2", "invalid value for rw: 2"),
            ("readwrite=tRUE", "invalid value for readwrite: tRUE"),
            (
                "type=secret,id=a,required=nah",
                "invalid value for required: nah",
            ),
            ("type=cache,mode=0800", "invalid value 0800 for mode"),
            ("type=cache,mode=0o755", "invalid value 0o755 for mode"),
            ("type=cache,mode=+7", "invalid value +7 for mode"),
            ("type=cache,mode=7_7", "invalid value 7_7 for mode"),
            (
                "type=cache,mode=40000000000",
                "invalid value 40000000000 for mode",
            ),
            ("type=cache,uid=-1", "invalid value -1 for uid"),
            (
                "type=cache,uid=4294967296",
                "invalid value 4294967296 for uid",
            ),
            ("type=cache,uid=", "invalid value  for uid"),
            ("type=cache,uid=٣", "invalid value ٣ for uid"),
            ("type=cache,gid=abc", "invalid value abc for gid"),
            // Unknown keys.
            (
                "foo=bar",
                "unexpected key 'foo' in 'foo=bar' (did you mean from?)",
            ),
            ("=x", "unexpected key '' in '=x' (did you mean id?)"),
            (
                "Target2=/x",
                "unexpected key 'target2' in 'Target2=/x' (did you mean target?)",
            ),
            ("xyzzy=1", "unexpected key 'xyzzy' in 'xyzzy=1'"),
            (
                "envs=A",
                "unexpected key 'envs' in 'envs=A' (did you mean env?)",
            ),
            (
                "sha=abc",
                "unexpected key 'sha' in 'sha=abc' (did you mean src?)",
            ),
            // Validation after all fields are read.
            (
                "target=/x,mode=0755",
                "mode not allowed for \"bind\" type mounts",
            ),
            (
                "type=tmpfs,target=/x,uid=0",
                "uid not allowed for \"tmpfs\" type mounts",
            ),
            ("gid=0", "gid not allowed for \"bind\" type mounts"),
            (
                "uid=1,gid=1,mode=7",
                "mode not allowed for \"bind\" type mounts",
            ),
            (
                "type=tmpfs,sharing=locked,uid=1",
                "uid not allowed for \"tmpfs\" type mounts",
            ),
            (
                "type=secret,id=a,from=x",
                "secret mount should not have a from",
            ),
            (
                "type=secret,id=a,sharing=locked",
                "secret mount should not define sharing",
            ),
            (
                "type=secret,from=x,sharing=locked",
                "secret mount should not have a from",
            ),
            (
                "type=secret",
                "invalid secret mount. one of source, target required",
            ),
            (
                "type=secret,env=A",
                "invalid secret mount. one of source, target required",
            ),
            (
                "type=secret,id=,target=",
                "invalid secret mount. one of source, target required",
            ),
            (
                "type=secret,source=a,id=b",
                "both source and id can't be set",
            ),
            (
                "target=/x,sharing=shared",
                "invalid cache sharing set for bind mount",
            ),
            (
                "type=ssh,sharing=private",
                "invalid cache sharing set for ssh mount",
            ),
            (
                "type=tmpfs,sharing=locked",
                "invalid cache sharing set for tmpfs mount",
            ),
        ];
        for (input, want) in cases {
            match parse(input) {
                Ok(m) => panic!("{input:?}: expected error, got {m:?}"),
                Err(e) => assert_eq!(e.to_string(), *want, "{input:?}"),
            }
        }
    }

    #[test]
    fn errors_point_at_fields() {
        let cases: &[(&str, Option<(usize, usize)>)] = &[
            ("type=cache,foo=bar", Some((11, 18))),
            ("type=cache,\"target=/a,b\",mode=9", Some((25, 31))),
            ("target=/x,mode=0755", Some((10, 19))),
            ("uid=1,type=tmpfs", Some((0, 5))),
            ("type=secret,id=a,from=x", Some((17, 23))),
            ("type=secret,source=a,id=b", Some((21, 25))),
            ("type=ssh,sharing=private", Some((9, 24))),
            ("type=secret", None),
            ("a,\"b", Some((3, 4))),
            ("", None),
        ];
        for (input, want) in cases {
            let err = parse(input).unwrap_err();
            let got = err.span().map(|s| (s.start, s.end));
            assert_eq!(got, *want, "{input:?}: {err}");
        }
    }

    #[test]
    fn expander_is_applied_to_values_only() {
        let mut seen = Vec::new();
        let mut expand = |v: &str| -> Result<String, Infallible> {
            seen.push(v.to_owned());
            Ok(match v {
                "$T" => "cache".to_owned(),
                "$P" => "/p".to_owned(),
                "$X" => "/a,b".to_owned(),
                "$E" => String::new(),
                other => other.to_owned(),
            })
        };
        let m = parse_mount("type=$T,ro,target=$P,id=a,rw=1", &mut expand).unwrap();
        assert_eq!(
            m,
            Mount {
                target: s("/p"),
                cache_id: s("a"),
                read_only: false,
                ..base(MountType::Cache)
            }
        );

        // Expanded text is not split again and may be empty.
        let m = parse_mount("target=$X,source=$E", &mut expand).unwrap();
        assert_eq!(
            m,
            Mount {
                target: s("/a,b"),
                ..base(MountType::Bind)
            }
        );

        // Keys are not expanded.
        let err = parse_mount("$T=cache", &mut expand).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unexpected key '$t' in '$T=cache' (did you mean id?)"
        );
        assert_eq!(seen, ["$T", "$P", "a", "1", "$X", "$E", "cache"]);

        // `from` may use variables once an expander is available.
        let mut stage =
            |v: &str| -> Result<String, Infallible> { Ok(v.replace("$stage", "build")) };
        let m = parse_mount("from=$stage,target=/x", &mut stage).unwrap();
        assert_eq!(m.from.as_deref(), Some("build"));
    }

    #[test]
    fn expander_errors_come_first_and_verbatim() {
        let mut expand = |v: &str| -> Result<String, String> {
            if v.contains("bad") {
                Err(format!("failed to process \"{v}\": boom"))
            } else {
                Ok(v.to_owned())
            }
        };
        let err = parse_mount("type=cache,target=bad", &mut expand).unwrap_err();
        assert_eq!(err.to_string(), "failed to process \"bad\": boom");
        assert!(matches!(&err, MountError::Expand { key, .. } if key == "target"));
        assert_eq!(err.span(), Some(Span { start: 11, end: 21 }));
        // Usable as a std error even when the expander's error is a plain string.
        let boxed: Box<dyn std::error::Error> = Box::new(err);
        assert_eq!(boxed.to_string(), "failed to process \"bad\": boom");

        // Expansion happens before the key is looked at.
        let err = parse_mount("Foo=bad", &mut expand).unwrap_err();
        assert_eq!(err.to_string(), "failed to process \"bad\": boom");
        // But CSV errors and bare-field errors come before any expansion.
        let err = parse_mount("target=bad,x\"", &mut expand).unwrap_err();
        assert!(err.to_string().starts_with("failed to parse csv mounts"));
        let err = parse_mount("nokey,target=bad", &mut expand).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid field 'nokey' must be a key=value pair"
        );
    }

    #[test]
    fn deferred_pass() {
        let ok: &[(&str, Option<&str>)] = &[
            ("from=build,target=/x", Some("build")),
            ("FROM=stage", Some("stage")),
            ("from=foo$", Some("foo$")),
            ("from=$", Some("$")),
            ("from=a,from=", None),
            ("foo,bar=baz,type=unknown,mode=9", None),
            ("target=$X,type=$T", None),
            ("\"from=a,b\"", Some("a,b")),
        ];
        for (input, want) in ok {
            let got = parse_mount_deferred(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(got.from.as_deref(), *want, "{input:?}");
        }
        let from_span = parse_mount_deferred("type=cache,from=x").unwrap().from_span;
        assert_eq!(from_span, Some(Span { start: 11, end: 17 }));

        let bad = [
            "from=$ttt,type=cache,target=/tmp",
            "from=a$$",
            "from=${x}",
            "From=a$b",
            "from=x,from=$y",
        ];
        for input in bad {
            let err = parse_mount_deferred(input).unwrap_err();
            assert_eq!(
                err.to_string(),
                "'from' doesn't support variable expansion, define alias stage instead",
                "{input:?}"
            );
        }
    }

    #[test]
    fn network_and_security() {
        assert_eq!(parse_network("default"), Ok(NetworkMode::Default));
        assert_eq!(parse_network("none"), Ok(NetworkMode::None));
        assert_eq!(parse_network("host"), Ok(NetworkMode::Host));
        assert_eq!(NetworkMode::default(), NetworkMode::Default);
        for (input, want) in [
            ("HOST", "invalid network mode \"HOST\""),
            ("", "invalid network mode \"\""),
            ("bridge", "invalid network mode \"bridge\""),
            (" none", "invalid network mode \" none\""),
            ("host\n", "invalid network mode \"host\\n\""),
        ] {
            assert_eq!(parse_network(input).unwrap_err().to_string(), want);
        }
        assert_eq!(parse_security("sandbox"), Ok(SecurityMode::Sandbox));
        assert_eq!(parse_security("insecure"), Ok(SecurityMode::Insecure));
        assert_eq!(SecurityMode::default(), SecurityMode::Sandbox);
        for (input, want) in [
            ("Insecure", "security \"Insecure\" is not valid"),
            ("", "security \"\" is not valid"),
            ("privileged", "security \"privileged\" is not valid"),
        ] {
            assert_eq!(parse_security(input).unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn quoting_matches_go() {
        let cases = [
            ("plain", r#""plain""#),
            ("a\"b\\c", r#""a\"b\\c""#),
            ("\u{1}\u{7f}", r#""\x01\x7f""#),
            ("\u{7}\u{8}\u{c}\n\r\t\u{b}", r#""\a\b\f\n\r\t\v""#),
            ("é ü", "\"é ü\""),
            ("\u{a0}", r#""\u00a0""#),
            ("\u{85}", r#""\u0085""#),
            ("\u{200b}", r#""\u200b""#),
            ("\u{e000}", r#""\ue000""#),
            ("\u{10fffd}", r#""\U0010fffd""#),
            ("😀", "\"😀\""),
            ("\u{fffd}", "\"\u{fffd}\""),
        ];
        for (input, want) in cases {
            assert_eq!(crate::golang::quote(input), want, "{input:?}");
        }
    }

    #[test]
    fn go_helpers() {
        assert_eq!(crate::golang::to_lower("AbC\u{130}\u{212a}Σ"), "abcikσ");
        assert_eq!(suggest("bind", MountType::ALL.map(MountType::as_str)), None);
        assert_eq!(suggest(&"x".repeat(100_000), ALL_KEYS), None);
        for (input, want) in [
            ("", "."),
            ("/", "/"),
            ("a/b", "b"),
            ("a/b//", "b"),
            ("///", "/"),
            ("x", "x"),
        ] {
            assert_eq!(crate::golang::path_base(input), want, "{input:?}");
        }
        for (input, want) in [
            ("", "."),
            ("/", "/"),
            ("a/../..", ".."),
            ("../a/./b/", "../a/b"),
            ("/../a", "/a"),
            ("//a//b/", "/a/b"),
            ("a/..", "."),
        ] {
            assert_eq!(crate::golang::path_clean(input), want, "{input:?}");
        }
    }

    #[test]
    fn defaults_applied_at_dispatch() {
        let m = parse("type=secret,id=mysecret").unwrap();
        assert_eq!(m.secret_id().as_deref(), Some("mysecret"));
        assert_eq!(m.secret_target().as_deref(), Some("/run/secrets/mysecret"));
        assert_eq!(m.file_mode(), None);

        let m = parse("type=secret,target=/etc/pw,uid=1").unwrap();
        assert_eq!(m.secret_id().as_deref(), Some("pw"));
        assert_eq!(m.secret_target().as_deref(), Some("/etc/pw"));
        assert_eq!(m.file_mode(), Some(0o400));

        let m = parse("type=secret,source=a/b").unwrap();
        assert_eq!(m.secret_id().as_deref(), Some("a/b"));
        assert_eq!(m.secret_target().as_deref(), Some("/run/secrets/b"));

        let m = parse("type=secret,id=x,env=E").unwrap();
        assert_eq!(m.secret_target(), None);
        let m = parse("type=secret,id=x,env=E,target=/t").unwrap();
        assert_eq!(m.secret_target().as_deref(), Some("/t"));

        let m = parse("type=ssh").unwrap();
        assert_eq!(m.ssh_id(), "default");
        assert_eq!(m.ssh_target(0), "/run/buildkit/ssh_agent.0");
        assert_eq!(m.ssh_target(2), "/run/buildkit/ssh_agent.2");
        assert_eq!(m.check_dispatch(), Ok(()));
        let m = parse("type=ssh,id=gh,target=/s,gid=5").unwrap();
        assert_eq!(m.ssh_id(), "gh");
        assert_eq!(m.ssh_target(1), "/s");
        assert_eq!(m.file_mode(), Some(0o600));
        let err = parse("type=ssh,source=x")
            .unwrap()
            .check_dispatch()
            .unwrap_err();
        assert_eq!(err.to_string(), "ssh does not support source");

        let m = parse("type=cache,target=/a/../b/").unwrap();
        assert_eq!(m.effective_cache_id(), "/b");
        assert_eq!(parse("type=cache").unwrap().effective_cache_id(), ".");
        assert_eq!(
            parse("type=cache,id=x,target=/y")
                .unwrap()
                .effective_cache_id(),
            "x"
        );
        assert_eq!(parse("type=cache,mode=0700").unwrap().file_mode(), None);
    }

    #[test]
    fn target_resolution() {
        let cases: &[(&str, &str, Result<&str, &str>)] = &[
            ("type=cache", "/", Err("invalid mount target \"/\"")),
            ("type=cache", "/app", Ok("/app")),
            ("type=tmpfs,target=rel", "/w", Ok("/w/rel")),
            ("target=./a/../b", "w", Ok("/w/b")),
            ("target=/abs/../x/", "/w", Ok("/abs/../x/")),
            ("target=.", "/", Err("invalid mount target \"/\"")),
            ("target=..", "/w", Err("invalid mount target \"/\"")),
            ("target=/", "/w", Err("invalid mount target \"/\"")),
            ("target=//", "/w", Ok("//")),
        ];
        for (input, workdir, want) in cases {
            let got = parse(input)
                .unwrap()
                .resolve_target(workdir)
                .map_err(|e| e.to_string());
            assert_eq!(
                got,
                want.map(str::to_owned).map_err(str::to_owned),
                "{input:?} in {workdir:?}"
            );
        }
    }

    #[test]
    fn serializes_with_snake_case() {
        let m = parse("type=cache,target=/x,sharing=locked,uid=0").unwrap();
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "kind": "cache", "from": null, "source": null, "target": "/x", "read_only": false,
                "cache_id": null, "sharing": "locked", "required": false, "mode": null, "uid": 0,
                "gid": null, "size_limit": null, "env": null
            })
        );
        assert_eq!(serde_json::to_value(NetworkMode::Host).unwrap(), "host");
        assert_eq!(
            serde_json::to_value(SecurityMode::Insecure).unwrap(),
            "insecure"
        );
        assert_eq!(serde_json::to_value(MountType::Ssh).unwrap(), "ssh");
    }

    #[test]
    fn huge_inputs() {
        let long = "a".repeat(1 << 20);
        let err = parse(&format!("type={long}")).unwrap_err();
        assert!(matches!(
            err,
            MountError::UnsupportedType {
                suggestion: None,
                ..
            }
        ));
        let err = parse(&format!("{long}=1")).unwrap_err();
        assert!(matches!(
            err,
            MountError::UnknownKey {
                suggestion: None,
                ..
            }
        ));
        let m = parse(&format!("target=/{long}")).unwrap();
        assert_eq!(m.target.map(|t| t.len()), Some((1 << 20) + 1));
        let many = "ro,".repeat(100_000) + "type=cache";
        assert!(parse(&many).unwrap().read_only);
    }

    #[test]
    fn never_panics_on_garbage() {
        const PIECES: &[&str] = &[
            "type", "=", ",", "\"", "\"\"", "bind", "cache", "tmpfs", "secret", "ssh", "target",
            "source", "from", "id", "ro", "rw", "required", "size", "mode", "uid", "gid", "env",
            "sharing", "locked", "$", "\n", "\r\n", "/", "0", "7", "9", "1k", "0x1p", "e", ".",
            "_", "-", " ", "é", "\u{130}", "\u{212a}", "😀", "\u{0}", "\\", "İ", "ǅ",
        ];
        let mut rng = crate::testing::XorShift::new(0x9e37_79b9_7f4a_7c15);
        let mut next = move || rng.next_u64();
        for _ in 0..20_000 {
            let n = usize::try_from(next() % 12).unwrap();
            let mut input = String::new();
            for _ in 0..n {
                let r = next();
                if r % 5 == 0 {
                    input.push(
                        char::from_u32(u32::try_from(r >> 40).unwrap() % 0x11_0000).unwrap_or('x'),
                    );
                } else {
                    input.push_str(PIECES[usize::try_from(r % PIECES.len() as u64).unwrap()]);
                }
            }
            if let Ok(m) = parse(&input) {
                let _ = (
                    m.secret_id(),
                    m.secret_target(),
                    m.ssh_target(3),
                    m.effective_cache_id(),
                );
                let _ = (m.file_mode(), m.check_dispatch(), m.resolve_target(&input));
                let _ = serde_json::to_string(&m).unwrap();
            } else if let Err(e) = parse(&input) {
                let _ = (e.to_string(), e.span());
            }
            let mut failing = |v: &str| -> Result<String, String> {
                if v.len().is_multiple_of(3) {
                    Err(v.to_owned())
                } else {
                    Ok(format!("{v}{v}"))
                }
            };
            let _ = parse_mount(&input, &mut failing).map_err(|e| e.to_string());
            let _ = parse_mount_deferred(&input).map_err(|e| e.to_string());
            let _ = split_csv_record(&input);
            let _ = (
                parse_network(&input),
                parse_security(&input),
                crate::golang::quote(&input),
            );
            let _ = (
                crate::values::size::ram_in_bytes(&input),
                crate::golang::parse_float(&input),
            );
            let _ = (
                crate::golang::path_clean(&input),
                crate::golang::path_base(&input),
                crate::golang::to_lower(&input),
            );
        }
    }
}
