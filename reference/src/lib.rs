//! Docker image references (`busybox`, `localhost:5000/x:1`,
//! `ghcr.io/o/r@sha256:…`), as `github.com/distribution/reference` parses
//! and normalizes them (`reference.go`, `regexp.go`, `normalize.go`,
//! `helpers.go`), with digests validated like `opencontainers/go-digest`
//! v1.0.0 (`sha256`, `sha384`, `sha512` with lowercase hex of the right
//! length). `BuildKit` resolves `FROM` images with [`parse_normalized_named`]
//! followed by [`ImageReference::tag_name_only`].
//!
//! Grammar (`reference.go`):
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [domain '/'] remote-name
//! domain           := host [':' port-number]
//! host             := domain-name | IPv4address | \[ IPv6address \]
//! domain-name      := domain-component ['.' domain-component]*
//! domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
//! port-number      := /[0-9]+/
//! path-component   := alpha-numeric [separator alpha-numeric]*
//! remote-name      := path-component ['/' path-component]*
//! alpha-numeric    := /[a-z0-9]+/
//! separator        := /[_.]|__|[-]+/
//! tag              := /[\w][\w.-]{0,127}/
//! digest           := algorithm ":" /[0-9a-fA-F]{32,}/
//! ```

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use thiserror::Error;

/// Longest accepted repository path (the name without its domain).
pub const REPOSITORY_NAME_MAX_LEN: usize = 255;

/// Docker Hub's canonical domain.
const DEFAULT_DOMAIN: &str = "docker.io";
/// Docker Hub's legacy domain, rewritten to [`DEFAULT_DOMAIN`].
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// Namespace of official images on Docker Hub.
const OFFICIAL_REPO_PREFIX: &str = "library/";
/// Tag added to name-only references.
const DEFAULT_TAG: &str = "latest";

/// A reference that `distribution/reference` (or `go-digest`) rejects.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ReferenceError {
    /// Does not match the reference grammar.
    #[error("invalid reference format")]
    InvalidFormat,
    /// Would match the grammar if lowercased.
    #[error("repository name must be lowercase")]
    NameContainsUppercase,
    /// Empty input to [`parse`].
    #[error("repository name must have at least one component")]
    NameEmpty,
    /// The repository path is longer than [`REPOSITORY_NAME_MAX_LEN`].
    #[error("repository name must not be more than 255 characters")]
    NameTooLong,
    /// The repository part of a familiar name has upper-case letters.
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    RemoteNameNotLowercase(String),
    /// A bare 64-hex-digit string, which would be ambiguous with image IDs.
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    IdentifierNotAllowed(String),
    /// [`parse_named`] input that is not in canonical form.
    #[error("repository name must be canonical")]
    NameNotCanonical,
    /// A digest with a malformed or wrong-length encoded part.
    #[error("invalid checksum digest format")]
    DigestInvalidFormat,
    /// A well-formed digest with an algorithm other than sha256/384/512.
    #[error("unsupported digest algorithm")]
    DigestUnsupported,
    /// A grammar pattern failed to compile (cannot happen with the fixed
    /// patterns; kept so no code path can panic).
    #[error("internal error: reference pattern did not compile")]
    Internal,
}

/// A content digest such as `sha256:<64 hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: String,
    encoded: String,
}

impl Digest {
    /// Validates a digest like `go-digest`'s `Parse`: `algorithm:encoded`
    /// where the algorithm is `sha256`, `sha384` or `sha512` and the encoded
    /// part is lowercase hex of 64, 96 or 128 digits. Other well-formed
    /// algorithms are rejected as unsupported.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let Some((algorithm, encoded)) = s.split_once(':') else {
            return Err(ReferenceError::DigestInvalidFormat);
        };
        if algorithm.is_empty() || encoded.is_empty() {
            return Err(ReferenceError::DigestInvalidFormat);
        }
        let hex_len = match algorithm {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            _ => {
                return Err(if is_well_formed_digest(s) {
                    ReferenceError::DigestUnsupported
                } else {
                    ReferenceError::DigestInvalidFormat
                });
            }
        };
        let lower_hex = encoded
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if encoded.len() != hex_len || !lower_hex {
            return Err(ReferenceError::DigestInvalidFormat);
        }
        Ok(Self {
            algorithm: algorithm.to_owned(),
            encoded: encoded.to_owned(),
        })
    }

    /// The `sha256:` digest of a finished SHA-256 hash.
    pub fn from_sha256(hash: &[u8; 32]) -> Self {
        use std::fmt::Write as _;
        let mut encoded = String::with_capacity(64);
        for byte in hash {
            let _ = write!(encoded, "{byte:02x}");
        }
        Self {
            algorithm: "sha256".to_owned(),
            encoded,
        }
    }

    /// The algorithm, e.g. `sha256`.
    pub fn algorithm(&self) -> &str {
        &self.algorithm
    }

    /// The hex-encoded hash.
    pub fn encoded(&self) -> &str {
        &self.encoded
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.encoded)
    }
}

/// `go-digest`'s `DigestRegexpAnchored`:
/// `^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$`.
fn is_well_formed_digest(s: &str) -> bool {
    let Some((algorithm, encoded)) = s.split_once(':') else {
        return false;
    };
    let algorithm_ok = algorithm.split(['.', '+', '_', '-']).all(|part| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    let encoded_ok = !encoded.is_empty()
        && encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'));
    algorithm_ok && encoded_ok
}

/// A parsed image reference: a repository name with an optional tag and
/// digest. [`Display`](fmt::Display) gives the full form
/// (`docker.io/library/busybox:latest`), [`familiar_string`] the short one
/// Docker shows (`busybox:latest`).
///
/// [`familiar_string`]: ImageReference::familiar_string
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl ImageReference {
    /// The registry domain (`docker.io`, `localhost:5000`, `[::1]:5000`);
    /// empty only for un-normalized names from [`parse`] without one.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path within the registry (`library/busybox`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The full repository name, `domain/path` (Go's `Name()`).
    pub fn name(&self) -> String {
        if self.domain.is_empty() {
            self.path.clone()
        } else {
            format!("{}/{}", self.domain, self.path)
        }
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// True when there is neither a tag nor a digest (Go's `IsNameOnly`).
    pub fn is_name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }

    /// Adds the `latest` tag to a name-only reference (Go's `TagNameOnly`);
    /// references with a tag or a digest are returned unchanged.
    #[must_use]
    pub fn tag_name_only(mut self) -> Self {
        if self.is_name_only() {
            self.tag = Some(DEFAULT_TAG.to_owned());
        }
        self
    }

    /// The name as Docker shows it: `docker.io/` and, for single-component
    /// official images, `library/` removed (Go's `FamiliarName`).
    pub fn familiar_name(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.name();
        }
        match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
            Some(rest) if !rest.contains('/') => rest.to_owned(),
            _ => self.path.clone(),
        }
    }

    /// The whole reference as Docker shows it, e.g. `busybox:latest`
    /// (Go's `FamiliarString`).
    pub fn familiar_string(&self) -> String {
        let mut out = self.familiar_name();
        self.push_suffix(&mut out);
        out
    }

    /// Appends `:tag` and `@digest` as present.
    fn push_suffix(&self, out: &mut String) {
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(&digest.to_string());
        }
    }
}

impl fmt::Display for ImageReference {
    /// The full form, Go's `String()`: `name[:tag][@digest]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = self.name();
        self.push_suffix(&mut out);
        f.write_str(&out)
    }
}

/// The grammar pieces from `regexp.go`, spelled with ASCII-only classes
/// (Go's `\w` is ASCII, Rust's is Unicode).
mod pattern {
    pub(super) const ALPHANUMERIC: &str = "[a-z0-9]+";
    pub(super) const SEPARATOR: &str = "(?:[._]|__|[-]+)";
    pub(super) const DOMAIN_NAME_COMPONENT: &str =
        "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
    pub(super) const OPTIONAL_PORT: &str = "(?::[0-9]+)?";
    pub(super) const TAG: &str = "[0-9A-Za-z_][0-9A-Za-z_.-]{0,127}";
    pub(super) const DIGEST: &str =
        "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}";
    pub(super) const IPV6_ADDRESS: &str = r"\[(?:[a-fA-F0-9:]+)\]";

    pub(super) fn domain_and_port() -> String {
        let domain_name = format!(r"{DOMAIN_NAME_COMPONENT}(?:\.{DOMAIN_NAME_COMPONENT})*");
        format!("(?:{domain_name}|{IPV6_ADDRESS}){OPTIONAL_PORT}")
    }

    pub(super) fn remote_name() -> String {
        let path_component = format!("{ALPHANUMERIC}(?:{SEPARATOR}{ALPHANUMERIC})*");
        format!("{path_component}(?:/{path_component})*")
    }
}

/// `referenceRegexp`: captures name, tag and digest.
static REFERENCE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    let name = format!(
        "(?:{}/)?{}",
        pattern::domain_and_port(),
        pattern::remote_name()
    );
    Regex::new(&format!(
        "^({name})(?::({}))?(?:@({}))?$",
        pattern::TAG,
        pattern::DIGEST
    ))
    .ok()
});

/// `anchoredNameRegexp`: captures a name's domain and path.
static ANCHORED_NAME: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(&format!(
        "^(?:({})/)?({})$",
        pattern::domain_and_port(),
        pattern::remote_name()
    ))
    .ok()
});

/// Fetches a compiled pattern.
fn compiled(regex: &'static LazyLock<Option<Regex>>) -> Result<&'static Regex, ReferenceError> {
    regex.as_ref().ok_or(ReferenceError::Internal)
}

/// `anchoredIdentifierRegexp`: exactly 64 lowercase hex digits.
fn is_identifier(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parses a reference without normalizing it (Go's `reference.Parse`): a
/// first component that looks like a domain is taken as one, and no
/// `docker.io` or `library/` is added.
pub fn parse(s: &str) -> Result<ImageReference, ReferenceError> {
    if s.is_empty() {
        return Err(ReferenceError::NameEmpty);
    }
    let reference = compiled(&REFERENCE)?;
    let Some(caps) = reference.captures(s) else {
        let lower = go_to_lower(s);
        if lower != s && reference.is_match(&lower) {
            return Err(ReferenceError::NameContainsUppercase);
        }
        return Err(ReferenceError::InvalidFormat);
    };
    let name = caps.get(1).map_or("", |m| m.as_str());
    let (domain, path) = match compiled(&ANCHORED_NAME)?.captures(name) {
        Some(parts) => (
            parts.get(1).map_or("", |m| m.as_str()),
            parts.get(2).map_or(name, |m| m.as_str()),
        ),
        None => ("", name),
    };
    if path.len() > REPOSITORY_NAME_MAX_LEN {
        return Err(ReferenceError::NameTooLong);
    }
    let tag = caps
        .get(2)
        .map(|m| m.as_str())
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    let digest = match caps.get(3).map(|m| m.as_str()).filter(|d| !d.is_empty()) {
        Some(d) => Some(Digest::parse(d)?),
        None => None,
    };
    Ok(ImageReference {
        domain: domain.to_owned(),
        path: path.to_owned(),
        tag,
        digest,
    })
}

/// Parses a reference the way Docker reads user input (Go's
/// `ParseNormalizedNamed`): `busybox` becomes `docker.io/library/busybox`,
/// `index.docker.io` becomes `docker.io`, and the first component is a
/// registry domain only if it contains `.` or `:`, is `localhost`, or has
/// upper-case letters. Bare 64-hex-digit strings are refused.
pub fn parse_normalized_named(s: &str) -> Result<ImageReference, ReferenceError> {
    if is_identifier(s) {
        return Err(ReferenceError::IdentifierNotAllowed(s.to_owned()));
    }
    let (domain, remainder) = split_docker_domain(s);
    let remote = remainder
        .split_once(':')
        .map_or(remainder.as_str(), |(r, _)| r);
    if go_to_lower(remote) != remote {
        return Err(ReferenceError::RemoteNameNotLowercase(remote.to_owned()));
    }
    parse(&format!("{domain}/{remainder}"))
}

/// Go's `ParseNamed`: [`parse_normalized_named`], but the input must already
/// be in full canonical form (`docker.io/library/busybox`).
pub fn parse_named(s: &str) -> Result<ImageReference, ReferenceError> {
    let named = parse_normalized_named(s)?;
    if named.to_string() != s {
        return Err(ReferenceError::NameNotCanonical);
    }
    Ok(named)
}

/// Go's `ParseDockerRef`: normalizes, drops the tag when a digest is also
/// present, and adds `latest` to name-only references.
pub fn parse_docker_ref(s: &str) -> Result<ImageReference, ReferenceError> {
    let mut named = parse_normalized_named(s)?;
    if named.tag.is_some() && named.digest.is_some() {
        named.tag = None;
        return Ok(named);
    }
    Ok(named.tag_name_only())
}

/// `splitDockerDomain`: the registry domain and the rest, with Docker Hub
/// defaults applied.
fn split_docker_domain(name: &str) -> (String, String) {
    let Some((maybe_domain, maybe_remote)) = name.split_once('/') else {
        // A single component is always a Docker Hub official image, even
        // `localhost` or `example.com`.
        return (
            DEFAULT_DOMAIN.to_owned(),
            format!("{OFFICIAL_REPO_PREFIX}{name}"),
        );
    };
    let (domain, remote) = if maybe_domain == LEGACY_DEFAULT_DOMAIN {
        (DEFAULT_DOMAIN, maybe_remote)
    } else if maybe_domain == "localhost"
        || maybe_domain.contains(['.', ':'])
        || go_to_lower(maybe_domain) != maybe_domain
    {
        // A host name, IP address or port, or an upper-case first
        // component (namespaces must be lower case).
        (maybe_domain, maybe_remote)
    } else {
        (DEFAULT_DOMAIN, name)
    };
    if domain == DEFAULT_DOMAIN && !remote.contains('/') {
        return (domain.to_owned(), format!("{OFFICIAL_REPO_PREFIX}{remote}"));
    }
    (domain.to_owned(), remote.to_owned())
}

/// Go's `strings.ToLower`: the simple per-character mapping, which is what
/// `distribution/reference` uses to tell "would be valid if lowercased".
/// Public so that the Dockerfile parser uses the same mapping.
pub fn go_to_lower(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    s.chars()
        .map(|c| {
            let mut lower = c.to_lowercase();
            match (lower.next(), lower.next()) {
                (Some(single), None) => single,
                (Some(first), Some(_)) => first,
                _ => c,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA256_F: &str =
        "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

    // reference_test.go TestReferenceParse: (input, repository, domain,
    // tag, digest).
    #[test]
    #[expect(clippy::too_many_lines, reason = "one upstream table")]
    fn upstream_reference_parse_table() {
        let long_ok = format!("{}a:tag-puts-this-over-max", "a/".repeat(127));
        let long_ok_repo = format!("{}a", "a/".repeat(127));
        let long_path = format!("example.com/{}:tag", "a".repeat(255));
        let long_path_repo = format!("example.com/{}", "a".repeat(255));
        let sha512 = format!("sha512:{}", "f".repeat(128));
        let with_sha512 = format!("xn--7o8h.com/myimage:xn--7o8h.com@{sha512}");
        let cases: Vec<(&str, &str, &str, &str, &str)> = vec![
            ("test_com", "test_com", "", "", ""),
            ("test.com:tag", "test.com", "", "tag", ""),
            ("test.com:5000", "test.com", "", "5000", ""),
            ("test.com/repo:tag", "test.com/repo", "test.com", "tag", ""),
            ("test:5000/repo", "test:5000/repo", "test:5000", "", ""),
            (
                "test:5000/repo:tag",
                "test:5000/repo",
                "test:5000",
                "tag",
                "",
            ),
            (
                "test:5000/repo@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                "test:5000/repo",
                "test:5000",
                "",
                SHA256_F,
            ),
            (
                "test:5000/repo:tag@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                "test:5000/repo",
                "test:5000",
                "tag",
                SHA256_F,
            ),
            ("lowercase:Uppercase", "lowercase", "", "Uppercase", ""),
            (&long_ok, &long_ok_repo, "a", "tag-puts-this-over-max", ""),
            (
                "sub-dom1.foo.com/bar/baz/quux",
                "sub-dom1.foo.com/bar/baz/quux",
                "sub-dom1.foo.com",
                "",
                "",
            ),
            (
                "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
                "sub-dom1.foo.com/bar/baz/quux",
                "sub-dom1.foo.com",
                "some-long-tag",
                "",
            ),
            (
                "b.gcr.io/test.example.com/my-app:test.example.com",
                "b.gcr.io/test.example.com/my-app",
                "b.gcr.io",
                "test.example.com",
                "",
            ),
            (
                "xn--n3h.com/myimage:xn--n3h.com",
                "xn--n3h.com/myimage",
                "xn--n3h.com",
                "xn--n3h.com",
                "",
            ),
            (
                &with_sha512,
                "xn--7o8h.com/myimage",
                "xn--7o8h.com",
                "xn--7o8h.com",
                &sha512,
            ),
            ("foo_bar.com:8080", "foo_bar.com", "", "8080", ""),
            ("foo/foo_bar.com:8080", "foo/foo_bar.com", "foo", "8080", ""),
            ("192.168.1.1", "192.168.1.1", "", "", ""),
            ("192.168.1.1:tag", "192.168.1.1", "", "tag", ""),
            ("192.168.1.1:5000", "192.168.1.1", "", "5000", ""),
            (
                "192.168.1.1/repo",
                "192.168.1.1/repo",
                "192.168.1.1",
                "",
                "",
            ),
            (
                "192.168.1.1:5000/repo",
                "192.168.1.1:5000/repo",
                "192.168.1.1:5000",
                "",
                "",
            ),
            (
                "192.168.1.1:5000/repo:5050",
                "192.168.1.1:5000/repo",
                "192.168.1.1:5000",
                "5050",
                "",
            ),
            (
                "[2001:db8::1]/repo",
                "[2001:db8::1]/repo",
                "[2001:db8::1]",
                "",
                "",
            ),
            (
                "[2001:db8:1:2:3:4:5:6]/repo:tag",
                "[2001:db8:1:2:3:4:5:6]/repo",
                "[2001:db8:1:2:3:4:5:6]",
                "tag",
                "",
            ),
            (
                "[2001:db8::1]:5000/repo",
                "[2001:db8::1]:5000/repo",
                "[2001:db8::1]:5000",
                "",
                "",
            ),
            (
                "[2001:db8::1]:5000/repo:tag",
                "[2001:db8::1]:5000/repo",
                "[2001:db8::1]:5000",
                "tag",
                "",
            ),
            (
                "[2001:db8::1]:5000/repo@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                "[2001:db8::1]:5000/repo",
                "[2001:db8::1]:5000",
                "",
                SHA256_F,
            ),
            (
                "[2001:db8::1]:5000/repo:tag@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                "[2001:db8::1]:5000/repo",
                "[2001:db8::1]:5000",
                "tag",
                SHA256_F,
            ),
            (
                "[2001:db8::]:5000/repo",
                "[2001:db8::]:5000/repo",
                "[2001:db8::]:5000",
                "",
                "",
            ),
            ("[::1]:5000/repo", "[::1]:5000/repo", "[::1]:5000", "", ""),
            (&long_path, &long_path_repo, "example.com", "tag", ""),
        ];
        for (input, repository, domain, tag, digest) in cases {
            let got = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got.to_string(), input);
            assert_eq!(got.name(), repository, "input {input}");
            assert_eq!(got.domain(), domain, "input {input}");
            assert_eq!(got.tag().unwrap_or(""), tag, "input {input}");
            assert_eq!(
                got.digest().map(ToString::to_string).unwrap_or_default(),
                digest,
                "input {input}"
            );
        }
    }

    #[test]
    fn upstream_reference_parse_errors() {
        let too_long = format!("domain/{}:tag", "a".repeat(256));
        let cases: Vec<(&str, ReferenceError, &str)> = vec![
            (
                "",
                ReferenceError::NameEmpty,
                "repository name must have at least one component",
            ),
            (
                ":justtag",
                ReferenceError::InvalidFormat,
                "invalid reference format",
            ),
            (
                "@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                ReferenceError::InvalidFormat,
                "invalid reference format",
            ),
            (
                "repo@sha256:ffffffffffffffffffffffffffffffffff",
                ReferenceError::DigestInvalidFormat,
                "invalid checksum digest format",
            ),
            (
                "validname@invaliddigest:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                ReferenceError::DigestUnsupported,
                "unsupported digest algorithm",
            ),
            (
                "Uppercase:tag",
                ReferenceError::NameContainsUppercase,
                "repository name must be lowercase",
            ),
            (
                "test:5000/Uppercase/lowercase:tag",
                ReferenceError::NameContainsUppercase,
                "repository name must be lowercase",
            ),
            (
                &too_long,
                ReferenceError::NameTooLong,
                "repository name must not be more than 255 characters",
            ),
            (
                "aa/asdf$$^/aa",
                ReferenceError::InvalidFormat,
                "invalid reference format",
            ),
            (
                "[2001:db8::1]",
                ReferenceError::InvalidFormat,
                "invalid reference format",
            ),
            (
                "[2001:db8::1]:5000",
                ReferenceError::InvalidFormat,
                "invalid reference format",
            ),
            (
                "[2001:db8::1]:tag",
                ReferenceError::InvalidFormat,
                "invalid reference format",
            ),
            (
                "[fe80::1%eth0]:5000/repo",
                ReferenceError::InvalidFormat,
                "invalid reference format",
            ),
            (
                "[fe80::1%@invalidzone]:5000/repo",
                ReferenceError::InvalidFormat,
                "invalid reference format",
            ),
        ];
        for (input, want, message) in cases {
            let err = parse(input).unwrap_err();
            assert_eq!(err, want, "input {input}");
            assert_eq!(err.to_string(), message, "input {input}");
        }
    }

    #[test]
    fn digest_validation() {
        let sha384 = format!("sha384:{}", "a".repeat(96));
        assert_eq!(Digest::parse(&sha384).unwrap().to_string(), sha384);
        let d = Digest::parse(SHA256_F).unwrap();
        assert_eq!((d.algorithm(), d.encoded().len()), ("sha256", 64));
        let cases: &[(&str, ReferenceError)] = &[
            ("", ReferenceError::DigestInvalidFormat),
            ("sha256", ReferenceError::DigestInvalidFormat),
            ("sha256:", ReferenceError::DigestInvalidFormat),
            (":abc", ReferenceError::DigestInvalidFormat),
            (
                "sha256:FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF",
                ReferenceError::DigestInvalidFormat,
            ),
            (
                "sha256:fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                ReferenceError::DigestInvalidFormat,
            ),
            (
                "sha256:fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                ReferenceError::DigestInvalidFormat,
            ),
            ("sha512:ffff", ReferenceError::DigestInvalidFormat),
            (
                "SHA256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                ReferenceError::DigestInvalidFormat,
            ),
            (
                "md5:d41d8cd98f00b204e9800998ecf8427e",
                ReferenceError::DigestUnsupported,
            ),
            (
                "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
                ReferenceError::DigestUnsupported,
            ),
            (
                "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
                ReferenceError::DigestUnsupported,
            ),
            ("x:y:z", ReferenceError::DigestInvalidFormat),
        ];
        for (input, want) in cases {
            assert_eq!(Digest::parse(input).as_ref(), Err(want), "input {input}");
        }
    }

    #[test]
    fn upstream_validate_reference_name() {
        // normalize_test.go TestValidateReferenceName.
        let valid = [
            "docker/docker",
            "library/debian",
            "debian",
            "docker.io/docker/docker",
            "docker.io/library/debian",
            "docker.io/debian",
            "index.docker.io/docker/docker",
            "index.docker.io/library/debian",
            "index.docker.io/debian",
            "127.0.0.1:5000/docker/docker",
            "127.0.0.1:5000/library/debian",
            "127.0.0.1:5000/debian",
            "192.168.0.1",
            "192.168.0.1:80",
            "192.168.0.1:8/debian",
            "192.168.0.2:25000/debian",
            "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
            "[fc00::1]:5000/docker",
            "[fc00::1]:5000/docker/docker",
            "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
            "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
            "Docker/docker",
            "DOCKER/docker",
        ];
        let invalid = [
            "https://github.com/docker/docker",
            "docker/Docker",
            "-docker",
            "-docker/docker",
            "-docker.io/docker/docker",
            "docker///docker",
            "docker.io/docker/Docker",
            "docker.io/docker///docker",
            "[fc00::1]",
            "[fc00::1]:5000",
            "fc00::1:5000/debian",
            "[fe80::1%eth0]:5000/debian",
            "[2001:db8:3:4::192.0.2.33]:5000/debian",
            "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
        ];
        for name in valid {
            assert!(
                parse_normalized_named(name).is_ok(),
                "{name} should be valid"
            );
        }
        for name in invalid {
            assert!(
                parse_normalized_named(name).is_err(),
                "{name} should be invalid"
            );
        }
    }

    #[test]
    fn upstream_validate_remote_name() {
        // normalize_test.go TestValidateRemoteName.
        for name in [
            "docker/docker",
            "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
            "docker-rules/docker",
            "docker---rules/docker",
            "doc/docker",
            "d/docker",
            "jess/t",
            "dock__er/docker",
        ] {
            assert!(
                parse_normalized_named(name).is_ok(),
                "{name} should be valid"
            );
        }
        let too_long = format!(
            "{}/docker",
            "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_".repeat(4)
        );
        for name in [
            "docker/Docker",
            "docker///docker",
            "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
            "-docker/docker",
            "docker-/docker",
            "-docker-/docker",
            "____/____",
            "_docker/_docker",
            "dock..er/docker",
            "dock_.er/docker",
            "dock-.er/docker",
            "docker/",
            &too_long,
        ] {
            assert!(
                parse_normalized_named(name).is_err(),
                "{name} should be invalid"
            );
        }
    }

    #[test]
    #[expect(clippy::too_many_lines, reason = "one upstream table")]
    fn upstream_parse_repository_info() {
        // normalize_test.go TestParseRepositoryInfo: (remote, familiar,
        // full, ambiguous, domain); every spelling parses to the same thing.
        let cases = [
            (
                "fooo/bar",
                "fooo/bar",
                "docker.io/fooo/bar",
                "index.docker.io/fooo/bar",
                "docker.io",
            ),
            (
                "library/ubuntu",
                "ubuntu",
                "docker.io/library/ubuntu",
                "library/ubuntu",
                "docker.io",
            ),
            (
                "nonlibrary/ubuntu",
                "nonlibrary/ubuntu",
                "docker.io/nonlibrary/ubuntu",
                "",
                "docker.io",
            ),
            (
                "other/library",
                "other/library",
                "docker.io/other/library",
                "",
                "docker.io",
            ),
            (
                "private/moonbase",
                "127.0.0.1:8000/private/moonbase",
                "127.0.0.1:8000/private/moonbase",
                "",
                "127.0.0.1:8000",
            ),
            (
                "privatebase",
                "127.0.0.1:8000/privatebase",
                "127.0.0.1:8000/privatebase",
                "",
                "127.0.0.1:8000",
            ),
            (
                "private/moonbase",
                "example.com/private/moonbase",
                "example.com/private/moonbase",
                "",
                "example.com",
            ),
            (
                "privatebase",
                "example.com/privatebase",
                "example.com/privatebase",
                "",
                "example.com",
            ),
            (
                "private/moonbase",
                "example.com:8000/private/moonbase",
                "example.com:8000/private/moonbase",
                "",
                "example.com:8000",
            ),
            (
                "privatebasee",
                "example.com:8000/privatebasee",
                "example.com:8000/privatebasee",
                "",
                "example.com:8000",
            ),
            (
                "library/ubuntu-12.04-base",
                "ubuntu-12.04-base",
                "docker.io/library/ubuntu-12.04-base",
                "index.docker.io/library/ubuntu-12.04-base",
                "docker.io",
            ),
            (
                "library/foo",
                "foo",
                "docker.io/library/foo",
                "docker.io/foo",
                "docker.io",
            ),
            (
                "library/foo/bar",
                "library/foo/bar",
                "docker.io/library/foo/bar",
                "",
                "docker.io",
            ),
            (
                "store/foo/bar",
                "store/foo/bar",
                "docker.io/store/foo/bar",
                "",
                "docker.io",
            ),
            ("bar", "Foo/bar", "Foo/bar", "", "Foo"),
            ("bar", "FOO/bar", "FOO/bar", "", "FOO"),
        ];
        for (remote, familiar, full, ambiguous, domain) in cases {
            for input in [familiar, full, ambiguous]
                .into_iter()
                .filter(|s| !s.is_empty())
            {
                let named =
                    parse_normalized_named(input).unwrap_or_else(|e| panic!("{input}: {e}"));
                assert_eq!(named.familiar_name(), familiar, "input {input}");
                assert_eq!(named.to_string(), full, "input {input}");
                assert_eq!(named.domain(), domain, "input {input}");
                assert_eq!(named.path(), remote, "input {input}");
            }
        }
    }

    #[test]
    fn upstream_tag_and_digest() {
        // normalize_test.go TestParseReferenceWithTagAndDigest.
        let short = "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa";
        let named = parse_normalized_named(short).unwrap();
        assert_eq!(named.to_string(), format!("docker.io/library/{short}"));
        assert_eq!(named.tag(), Some("latest"));
        assert!(named.digest().is_some());
        assert_eq!(named.familiar_string(), short);
        // ParseDockerRef keeps only the digest.
        assert_eq!(
            parse_docker_ref(short).unwrap().to_string(),
            "docker.io/library/busybox@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
        );
        assert!(parse_normalized_named("-foo").is_err());
    }

    #[test]
    fn upstream_normalized_split_hostname() {
        // normalize_test.go TestNormalizedSplitHostname.
        let cases = [
            ("test.com/foo", "test.com", "foo"),
            ("test_com/foo", "docker.io", "test_com/foo"),
            ("docker/migrator", "docker.io", "docker/migrator"),
            ("test.com:8080/foo", "test.com:8080", "foo"),
            ("test-com:8080/foo", "test-com:8080", "foo"),
            ("foo", "docker.io", "library/foo"),
            ("xn--n3h.com/foo", "xn--n3h.com", "foo"),
            ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
            ("docker.io/foo", "docker.io", "library/foo"),
            ("docker.io/library/foo", "docker.io", "library/foo"),
            ("docker.io/library/foo/bar", "docker.io", "library/foo/bar"),
        ];
        for (input, domain, path) in cases {
            let named = parse_normalized_named(input).unwrap();
            assert_eq!(
                (named.domain(), named.path()),
                (domain, path),
                "input {input}"
            );
        }
    }

    #[test]
    fn upstream_parse_named() {
        // reference_test.go TestParseNamed.
        for (input, domain, path) in [
            ("test.com/foo", "test.com", "foo"),
            ("test:8080/foo", "test:8080", "foo"),
            ("docker.io/library/foo", "docker.io", "library/foo"),
        ] {
            let named = parse_named(input).unwrap();
            assert_eq!((named.domain(), named.path()), (domain, path));
        }
        for input in [
            "test_com/foo",
            "test.com",
            "foo",
            "library/foo",
            "docker.io/foo",
        ] {
            assert_eq!(
                parse_named(input),
                Err(ReferenceError::NameNotCanonical),
                "input {input}"
            );
            assert_eq!(
                parse_named(input).unwrap_err().to_string(),
                "repository name must be canonical"
            );
        }
    }

    #[test]
    fn dockerfile_from_normalization() {
        // (input, ParseNormalizedNamed + TagNameOnly, familiar string)
        let cases = [
            (
                "busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "busybox:1.36",
                "docker.io/library/busybox:1.36",
                "busybox:1.36",
            ),
            (
                "library/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "index.docker.io/library/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "localhost:5000/x:1",
                "localhost:5000/x:1",
                "localhost:5000/x:1",
            ),
            ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
            (
                "localhost",
                "docker.io/library/localhost:latest",
                "localhost:latest",
            ),
            (
                "localhost:5000",
                "docker.io/library/localhost:5000",
                "localhost:5000",
            ),
            (
                "example.com",
                "docker.io/library/example.com:latest",
                "example.com:latest",
            ),
            (
                "ghcr.io/owner/repo",
                "ghcr.io/owner/repo:latest",
                "ghcr.io/owner/repo:latest",
            ),
            (
                "user/repo:v1.0",
                "docker.io/user/repo:v1.0",
                "user/repo:v1.0",
            ),
            (
                "Registry.Example.COM/repo",
                "Registry.Example.COM/repo:latest",
                "Registry.Example.COM/repo:latest",
            ),
            (
                "[::1]:5000/repo",
                "[::1]:5000/repo:latest",
                "[::1]:5000/repo:latest",
            ),
            (
                "x@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                "docker.io/library/x@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
                "x@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            ),
        ];
        for (input, full, familiar) in cases {
            let named = parse_normalized_named(input).unwrap().tag_name_only();
            assert_eq!(named.to_string(), full, "input {input}");
            assert_eq!(named.familiar_string(), familiar, "input {input}");
        }
    }

    #[test]
    fn normalized_errors_with_upstream_messages() {
        let hex = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";
        let cases = [
            ("", "invalid reference format".to_owned()),
            (
                "Foo",
                "invalid reference format: repository name (library/Foo) must be lowercase"
                    .to_owned(),
            ),
            (
                "busybox:Latest/X",
                "invalid reference format: repository name (X) must be lowercase".to_owned(),
            ),
            (
                "docker/Docker:tag",
                "invalid reference format: repository name (docker/Docker) must be lowercase"
                    .to_owned(),
            ),
            (
                "Foo/Bar",
                "invalid reference format: repository name (Bar) must be lowercase".to_owned(),
            ),
            (
                "localhost/\u{130}",
                "invalid reference format: repository name (\u{130}) must be lowercase".to_owned(),
            ),
            (
                hex,
                format!(
                    "invalid repository name ({hex}), cannot specify 64-byte hexadecimal strings"
                ),
            ),
            ("busybox:", "invalid reference format".to_owned()),
            ("busybox@", "invalid reference format".to_owned()),
            (
                "busybox:latest@sha256:abc",
                "invalid reference format".to_owned(),
            ),
            (
                "busybox@sha256:ffffffffffffffffffffffffffffffffff",
                "invalid checksum digest format".to_owned(),
            ),
            (
                "busybox@md5:ffffffffffffffffffffffffffffffff",
                "unsupported digest algorithm".to_owned(),
            ),
            ("busy box", "invalid reference format".to_owned()),
            ("busybox:\u{e9}", "invalid reference format".to_owned()),
            (
                &format!("busybox:{}", "a".repeat(129)),
                "invalid reference format".to_owned(),
            ),
            (
                &"a".repeat(248),
                "repository name must not be more than 255 characters".to_owned(),
            ),
        ];
        for (input, want) in cases {
            let err = parse_normalized_named(input).unwrap_err();
            assert_eq!(err.to_string(), want, "input {input:?}");
        }
        // 247 characters plus `library/` is exactly 255.
        assert!(parse_normalized_named(&"a".repeat(247)).is_ok());
        assert!(parse_normalized_named(&format!("busybox:{}", "a".repeat(128))).is_ok());
    }

    #[test]
    fn uppercase_detection_uses_go_lowercasing() {
        // U+212A KELVIN SIGN lowercases to ASCII `k` in Go, so the name
        // would be valid if lowercased.
        assert_eq!(
            parse("\u{212a}afka"),
            Err(ReferenceError::NameContainsUppercase)
        );
        assert_eq!(parse("caf\u{e9}"), Err(ReferenceError::InvalidFormat));
    }
}
