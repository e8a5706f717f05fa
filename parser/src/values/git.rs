//! Git repository addresses of `ADD`, as `BuildKit`'s
//! `dfgitutil.ParseGitRef` (over `gitutil.ParseURL`) reads them.
//!
//! A source is a git repository when it is a `git://` or `ssh://` URL, an
//! `http(s)://` URL whose path ends in `.git`, or an scp-like
//! `user@host:path` address. The fragment is `#ref:subdir`; `BuildKit`
//! 0.13+ also reads a query: `?ref=`, `tag=`, `branch=`, `subdir=`,
//! `checksum=` (or `commit=`), `keep-git-dir=` and `submodules=`. The
//! older `##key=value,...` fragment form is not read.

use thiserror::Error;

/// A git repository to add, with what to take from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRef {
    /// The address git is given (no fragment, no query).
    pub remote: String,
    /// The branch, tag, commit or other ref; empty for the default branch.
    pub reference: String,
    /// The directory of the repository to take; empty for all of it.
    pub subdir: String,
    /// The commit (or a prefix of it) the ref must resolve to.
    pub checksum: Option<String>,
    /// `keep-git-dir=` of the query.
    pub keep_git_dir: Option<bool>,
    /// `submodules=` of the query.
    pub submodules: Option<bool>,
    /// How far [`GitRef::remote`] goes before the password of its user
    /// part, and where that password ends, for [`GitRef::redacted`].
    password: Option<(usize, usize)>,
}

/// A git address whose query or fragment `BuildKit` refuses.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct GitRefError(pub String);

impl GitRef {
    /// [`GitRef::remote`] with any password replaced by `xxxxx` (Go's
    /// `url.URL.Redacted`), for messages and cache keys.
    pub fn redacted(&self) -> String {
        match self.password {
            Some((start, end)) => format!(
                "{}xxxxx{}",
                self.remote.get(..start).unwrap_or_default(),
                self.remote.get(end..).unwrap_or_default()
            ),
            None => self.remote.clone(),
        }
    }
}

/// Reads `source` as a git address: `None` when it is not one (a path or
/// a plain http(s) URL), an error when it is one with a bad query.
pub fn parse_git_ref(source: &str) -> Option<Result<GitRef, GitRefError>> {
    if source.starts_with("./") || source.starts_with("../") {
        return None;
    }
    let (address, fragment) = match source.split_once('#') {
        Some((address, fragment)) => (address, Some(fragment)),
        None => (source, None),
    };
    let (remote, query) = match address.split_once('?') {
        Some((remote, query)) => (remote, Some(query)),
        None => (address, None),
    };
    let password = if let Some((scheme, rest)) = split_scheme(remote) {
        match scheme.to_ascii_lowercase().as_str() {
            "git" | "ssh" => {}
            "http" | "https" => {
                let path = rest.find('/').map_or("", |i| &rest[i..]);
                #[expect(
                    clippy::case_sensitive_file_extension_comparisons,
                    reason = "BuildKit's strings.HasSuffix is case-sensitive"
                )]
                if !path.ends_with(".git") {
                    return None;
                }
            }
            _ => return None,
        }
        password_span(remote, scheme.len() + 3)
    } else if is_scp_like(remote) {
        None
    } else {
        return None;
    };
    let mut git = GitRef {
        remote: remote.to_owned(),
        reference: String::new(),
        subdir: String::new(),
        checksum: None,
        keep_git_dir: None,
        submodules: None,
        password,
    };
    if let Some(fragment) = fragment.filter(|f| !f.is_empty()) {
        let (reference, subdir) = fragment.split_once(':').unwrap_or((fragment, ""));
        reference.clone_into(&mut git.reference);
        subdir.clone_into(&mut git.subdir);
    }
    if let Some(query) = query
        && let Err(e) = load_query(&mut git, query)
    {
        return Some(Err(e));
    }
    Some(Ok(git))
}

/// `scheme` and the rest of `scheme://rest`, for an alphanumeric scheme.
fn split_scheme(source: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = source.split_once("://")?;
    (!scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some((scheme, rest))
}

/// `user@host:path` (`sshutil.IsImplicitSSHTransport`): a user of
/// letters, digits, `-` and `_`, a host of letters, digits, `-` and `.`.
fn is_scp_like(source: &str) -> bool {
    let Some((user, rest)) = source.split_once('@') else {
        return false;
    };
    let Some((host, _)) = rest.split_once(':') else {
        return false;
    };
    !user.is_empty()
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Where the password of `user:password@` after `authority` (the offset
/// past `scheme://`) is in `remote`.
fn password_span(remote: &str, authority: usize) -> Option<(usize, usize)> {
    let rest = remote.get(authority..)?;
    let end = rest.find('/').unwrap_or(rest.len());
    let at = rest[..end].rfind('@')?;
    let colon = rest[..at].find(':')?;
    Some((authority + colon + 1, authority + at))
}

/// `dfgitutil`'s `loadQuery`, with its words.
fn load_query(git: &mut GitRef, query: &str) -> Result<(), GitRefError> {
    let fail = |message: String| Err(GitRefError(message));
    let mut seen: Vec<String> = Vec::new();
    let (mut tag, mut branch) = (String::new(), String::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (key, value) = (unescape(key), unescape(value));
        if seen.contains(&key) {
            return fail(format!("query {key:?} has multiple values"));
        }
        seen.push(key.clone());
        let flag = |name: &str| -> Result<Option<bool>, GitRefError> {
            if value.is_empty() {
                return Ok(Some(true));
            }
            parse_bool(&value)
                .map(Some)
                .ok_or_else(|| GitRefError(format!("invalid {name} value: {value:?}")))
        };
        match key.as_str() {
            "submodules" => git.submodules = flag("submodules")?,
            "keep-git-dir" => git.keep_git_dir = flag("keep-git-dir")?,
            _ if value.is_empty() => return fail(format!("query {key:?} has no value")),
            "ref" => {
                if !git.reference.is_empty() && git.reference != value {
                    return fail(format!("ref conflicts: {:?} vs {value:?}", git.reference));
                }
                git.reference = value;
            }
            "tag" => tag = value,
            "branch" => branch = value,
            "subdir" => {
                if !git.subdir.is_empty() && git.subdir != value {
                    return fail(format!("subdir conflicts: {:?} vs {value:?}", git.subdir));
                }
                git.subdir = value;
            }
            "checksum" | "commit" => git.checksum = Some(value),
            _ => return fail(format!("unexpected query {key:?}")),
        }
    }
    for (name, prefix) in [(tag, "refs/tags/"), (branch.clone(), "refs/heads/")] {
        if name.is_empty() {
            continue;
        }
        if prefix == "refs/heads/" && seen.iter().any(|k| k == "tag") {
            return fail("branch conflicts with tag".to_owned());
        }
        let full = if name.starts_with(prefix) {
            name
        } else {
            format!("{prefix}{name}")
        };
        if !git.reference.is_empty() && git.reference != full {
            return fail(format!("ref conflicts: {:?} vs {full:?}", git.reference));
        }
        git.reference = full;
    }
    if git.reference.is_empty()
        && let Some(sum) = &git.checksum
    {
        git.reference.clone_from(sum);
    }
    Ok(())
}

/// Go's `strconv.ParseBool`.
fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A query component's `%XX` escapes and `+` decoded (Go's
/// `url.QueryUnescape`; a bad escape is kept as written).
fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |at: usize| bytes.get(at).and_then(|c| (*c as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(source: &str) -> GitRef {
        match parse_git_ref(source) {
            Some(Ok(git)) => git,
            other => panic!("{source}: {other:?}"),
        }
    }

    #[test]
    fn which_sources_are_git() {
        for source in [
            "https://example.com/org/repo.git",
            "http://example.com/repo.git#main",
            "git@example.com:org/repo.git",
            "git://example.com/org/repo",
            "ssh://git@example.com/org/repo.git",
            "HTTPS://example.com/x.git?ref=v1",
        ] {
            assert!(parse_git_ref(source).is_some(), "{source}");
        }
        for source in [
            "https://example.com/file.tar.gz",
            "https://example.com/repo.git/file",
            "https://example.com/",
            "./git@host:x",
            "dir/file",
            "ftp://example.com/x.git",
            "user@host/x:y",
            "C:/x",
        ] {
            assert!(parse_git_ref(source).is_none(), "{source}");
        }
    }

    #[test]
    fn fragment_names_ref_and_subdir() {
        let git = parsed("https://example.com/org/repo.git#v1.2:docs/api");
        assert_eq!(git.remote, "https://example.com/org/repo.git");
        assert_eq!(git.reference, "v1.2");
        assert_eq!(git.subdir, "docs/api");
        let git = parsed("git@example.com:org/repo.git#refs/pull/1/head");
        assert_eq!(git.remote, "git@example.com:org/repo.git");
        assert_eq!(git.reference, "refs/pull/1/head");
        assert_eq!(git.subdir, "");
        assert_eq!(parsed("git://h/r#:sub").reference, "");
    }

    #[test]
    fn query_form() {
        let git = parsed(
            "https://example.com/r.git?tag=v1&subdir=a%2Fb&checksum=abc&keep-git-dir=true&submodules=false",
        );
        assert_eq!(git.remote, "https://example.com/r.git");
        assert_eq!(git.reference, "refs/tags/v1");
        assert_eq!(git.subdir, "a/b");
        assert_eq!(git.checksum.as_deref(), Some("abc"));
        assert_eq!(git.keep_git_dir, Some(true));
        assert_eq!(git.submodules, Some(false));
        assert_eq!(parsed("git://h/r?branch=dev").reference, "refs/heads/dev");
        assert_eq!(parsed("git://h/r?commit=abcd").reference, "abcd");
        assert_eq!(parsed("git://h/r?keep-git-dir").keep_git_dir, Some(true));
        for (source, message) in [
            ("git://h/r?ref=a&ref=b", "query \"ref\" has multiple values"),
            ("git://h/r?ref=", "query \"ref\" has no value"),
            ("git://h/r?foo=1", "unexpected query \"foo\""),
            ("git://h/r#a?ref=b", ""),
            ("git://h/r?ref=b#a", "ref conflicts: \"a\" vs \"b\""),
            ("git://h/r?tag=a&branch=b", "branch conflicts with tag"),
            (
                "git://h/r?keep-git-dir=yes",
                "invalid keep-git-dir value: \"yes\"",
            ),
        ] {
            match parse_git_ref(source) {
                Some(Err(e)) => assert_eq!(e.to_string(), message, "{source}"),
                Some(Ok(_)) if message.is_empty() => {}
                other => panic!("{source}: {other:?}"),
            }
        }
    }

    #[test]
    fn passwords_are_redacted() {
        let git = parsed("https://user:s3cret@example.com/r.git#main");
        assert_eq!(git.remote, "https://user:s3cret@example.com/r.git");
        assert_eq!(git.redacted(), "https://user:xxxxx@example.com/r.git");
        assert_eq!(
            parsed("ssh://git@example.com/r.git").redacted(),
            "ssh://git@example.com/r.git"
        );
    }
}
