//! `.dockerignore` handling with Docker's exact semantics.
//!
//! This is a port of `github.com/moby/patternmatcher` (`patternmatcher.go`
//! for matching, `ignorefile/ignorefile.go` for reading the file) and of the
//! ignore-file lookup in `BuildKit`'s `frontend/dockerui` (with buildx choosing
//! the Dockerfile's directory and base name). Only Unix semantics are
//! covered.
//!
//! Upstream turns each pattern into a Go regular expression and lets Go's
//! `regexp` package decide what it means; the private `goregex` module reads that
//! expression with Go's rules and re-emits it for the `regex` crate, so
//! character classes, escapes and `?` over multi-byte characters behave as
//! in Docker.

mod golang;
mod goregex;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

use regex::Regex;

/// Errors from compiling or reading `.dockerignore` patterns.
///
/// The messages are Docker's; the line number (1-based, set when the pattern
/// came from [`parse_ignore_file`]) and the pattern text are carried as fields.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerignoreError {
    /// A pattern consisting of `!` alone.
    #[error("illegal exclusion pattern: \"!\"")]
    IllegalExclusion {
        /// The pattern as given.
        pattern: String,
        /// 1-based line in the ignore file, if the pattern came from one.
        line: Option<usize>,
    },
    /// A malformed pattern, such as an unterminated `[` class (Go's
    /// `filepath.ErrBadPattern`).
    #[error("syntax error in pattern")]
    BadPattern {
        /// The pattern as given.
        pattern: String,
        /// 1-based line in the ignore file, if the pattern came from one.
        line: Option<usize>,
    },
    /// A line of 64 KiB or more, which Go's `bufio.Scanner` refuses.
    #[error("bufio.Scanner: token too long")]
    LineTooLong {
        /// 1-based line in the ignore file.
        line: usize,
    },
    /// A [`MatchInfo`] that was produced by a matcher with a different number
    /// of patterns.
    #[error("wrong number of values in parentMatched")]
    WrongParentMatchCount {
        /// Number of patterns in this matcher.
        expected: usize,
        /// Number of entries in the given [`MatchInfo`].
        got: usize,
    },
}

impl DockerignoreError {
    /// The 1-based line of the ignore file the error refers to, if known.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::IllegalExclusion { line, .. } | Self::BadPattern { line, .. } => *line,
            Self::LineTooLong { line } => Some(*line),
            Self::WrongParentMatchCount { .. } => None,
        }
    }

    /// The offending pattern, if the error is about one.
    pub fn pattern(&self) -> Option<&str> {
        match self {
            Self::IllegalExclusion { pattern, .. } | Self::BadPattern { pattern, .. } => {
                Some(pattern)
            }
            Self::LineTooLong { .. } | Self::WrongParentMatchCount { .. } => None,
        }
    }

    fn at_line(mut self, at: usize) -> Self {
        if let Self::IllegalExclusion { line, .. } | Self::BadPattern { line, .. } = &mut self {
            *line = Some(at);
        }
        self
    }
}

/// How a pattern is matched, chosen by upstream's compiler.
#[derive(Debug, Clone)]
enum Kind {
    /// The path equals the cleaned pattern.
    Exact,
    /// `prefix**`: the path starts with the pattern minus the trailing `**`.
    Prefix,
    /// `**suffix`: the path ends with the pattern minus the leading `**`.
    Suffix,
    /// Anything else: a regular expression.
    Regexp(Regex),
}

/// Upstream's pattern-to-regex compiler's classification, kept for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MatchType {
    Exact,
    Prefix,
    Suffix,
    Regexp,
}

/// One compiled pattern of a [`PatternMatcher`].
#[derive(Debug, Clone)]
pub struct Pattern {
    cleaned: String,
    exclusion: bool,
    kind: Kind,
}

impl Pattern {
    /// The cleaned pattern, without the leading `!` of an exclusion.
    pub fn as_str(&self) -> &str {
        &self.cleaned
    }

    /// Whether this is an exclusion (`!pattern`): a path it matches is kept.
    pub fn is_exclusion(&self) -> bool {
        self.exclusion
    }

    /// Upstream's `Pattern.match`.
    fn matches(&self, path: &str) -> bool {
        let pat = self.cleaned.as_bytes();
        let path_b = path.as_bytes();
        match &self.kind {
            Kind::Exact => path == self.cleaned,
            Kind::Prefix => {
                path_b.starts_with(pat.get(..pat.len().saturating_sub(2)).unwrap_or(pat))
            }
            Kind::Suffix => {
                // Byte-wise, like Go: after a skipped BOM the cut may fall
                // inside a UTF-8 sequence.
                let suffix = pat.get(2..).unwrap_or_default();
                if path_b.ends_with(suffix) {
                    return true;
                }
                // `**/foo` also matches `foo` itself.
                suffix.first() == Some(&b'/') && suffix.get(1..) == Some(path_b)
            }
            Kind::Regexp(re) => re.is_match(path),
        }
    }
}

/// Shown as upstream's `Pattern.String()`: the cleaned pattern without `!`.
impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.cleaned)
    }
}

/// What a walker remembers about a directory so that its children can be
/// matched without re-checking parent paths (upstream `MatchInfo`).
///
/// The default value means "no information", as for the walk's root entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchInfo {
    parent_matched: Vec<bool>,
}

/// A compiled list of .dockerignore patterns (moby/patternmatcher `PatternMatcher`).
#[derive(Debug, Clone)]
pub struct PatternMatcher {
    patterns: Vec<Pattern>,
    exclusions: bool,
}

impl PatternMatcher {
    /// Compile patterns as upstream `New` does: each is trimmed of white
    /// space, blank ones are dropped, the rest go through Go's
    /// `filepath.Clean`, and a leading `!` marks an exclusion.
    ///
    /// Unlike upstream, a pattern that passes `filepath.Match`'s syntax check
    /// but is not a valid Go regular expression (e.g. `[z-a]`) is rejected
    /// here rather than on the first match that evaluates it.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, DockerignoreError> {
        let mut compiled = Vec::with_capacity(patterns.len());
        let mut exclusions = false;
        for p in patterns {
            if let Some(pattern) = compile_pattern(p.as_ref())? {
                exclusions |= pattern.exclusion;
                compiled.push(pattern);
            }
        }
        Ok(Self {
            patterns: compiled,
            exclusions,
        })
    }

    /// Read an ignore file's text and compile its patterns; errors carry the
    /// line number.
    pub fn from_ignore_file(text: &str) -> Result<Self, DockerignoreError> {
        let lines = read_ignore_file(text)?;
        let mut compiled = Vec::with_capacity(lines.len());
        let mut exclusions = false;
        for l in &lines {
            if let Some(pattern) = compile_pattern(&l.pattern).map_err(|e| e.at_line(l.line))? {
                exclusions |= pattern.exclusion;
                compiled.push(pattern);
            }
        }
        Ok(Self {
            patterns: compiled,
            exclusions,
        })
    }

    /// Whether `path` (slash-separated, relative to the context root) is
    /// excluded, considering parents (upstream `MatchesOrParentMatches`): a
    /// pattern that matches any parent directory matches the path too, and
    /// the last matching pattern decides.
    pub fn matches_or_parent_matches(&self, path: &str) -> bool {
        let parent = golang::dir(path);
        let mut matched = false;
        for pattern in &self.patterns {
            // Only an inclusion can change an unmatched path and only an
            // exclusion a matched one.
            if pattern.exclusion != matched {
                continue;
            }
            let mut hit = pattern.matches(path);
            if !hit && parent != "." {
                hit = parent_prefixes(&parent).any(|p| pattern.matches(p));
            }
            if hit {
                matched = !pattern.exclusion;
            }
        }
        matched
    }

    /// Whether `path` itself matches, without looking at its parents
    /// (upstream `MatchesExact`).
    pub fn matches_exact(&self, path: &str) -> bool {
        let mut matched = false;
        for pattern in &self.patterns {
            if pattern.exclusion != matched {
                continue;
            }
            if pattern.matches(path) {
                matched = !pattern.exclusion;
            }
        }
        matched
    }

    /// Upstream `MatchesUsingParentResults`, for efficient walks: `parent` is
    /// the [`MatchInfo`] returned for the path's parent directory (or the
    /// default value when there is none, in which case parents are checked
    /// as by [`matches_or_parent_matches`](Self::matches_or_parent_matches)).
    /// Returns whether `path` is excluded and the info to pass for its
    /// children.
    pub fn matches_using_parent_results(
        &self,
        path: &str,
        parent: &MatchInfo,
    ) -> Result<(bool, MatchInfo), DockerignoreError> {
        let parent_matched = &parent.parent_matched;
        if !parent_matched.is_empty() && parent_matched.len() != self.patterns.len() {
            return Err(DockerignoreError::WrongParentMatchCount {
                expected: self.patterns.len(),
                got: parent_matched.len(),
            });
        }
        let mut matched = false;
        let mut info = MatchInfo {
            parent_matched: vec![false; self.patterns.len()],
        };
        for (i, pattern) in self.patterns.iter().enumerate() {
            // A pattern that matched the parent matches its children.
            let mut hit = parent_matched.get(i).copied().unwrap_or(false);
            if !hit {
                if pattern.exclusion != matched {
                    continue;
                }
                hit = pattern.matches(path);
                if !hit && parent_matched.is_empty() {
                    let parent_dir = golang::dir(path);
                    if parent_dir != "." {
                        hit = parent_prefixes(&parent_dir).any(|p| pattern.matches(p));
                    }
                }
            }
            if let Some(slot) = info.parent_matched.get_mut(i) {
                *slot = hit;
            }
            if hit {
                matched = !pattern.exclusion;
            }
        }
        Ok((matched, info))
    }

    /// Whether any pattern is an exclusion (`!`), which forces walkers to
    /// descend into excluded directories.
    pub fn has_exclusions(&self) -> bool {
        self.exclusions
    }

    /// The compiled patterns in order; each shows as its cleaned text (see
    /// [`Pattern::is_exclusion`] for the `!`).
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }
}

/// Go's `filepath.Match(pattern, name)` on Unix, as COPY/ADD source
/// wildcards use it: `*` and `?` do not match `/`, `[...]` classes and `\\`
/// escapes as in Go. A malformed pattern is a
/// [`DockerignoreError::BadPattern`] (Go reports it only once matching
/// reaches the bad part, and so does this).
pub fn filepath_match(pattern: &str, name: &str) -> Result<bool, DockerignoreError> {
    golang::filepath_match(pattern.as_bytes(), name.as_bytes()).map_err(|golang::BadPattern| {
        DockerignoreError::BadPattern {
            pattern: pattern.to_owned(),
            line: None,
        }
    })
}

/// The successive ancestors `a`, `a/b`, `a/b/c` of a cleaned parent path
/// `a/b/c` (upstream splits on `/` and re-joins each prefix).
fn parent_prefixes(parent: &str) -> impl Iterator<Item = &str> {
    parent
        .match_indices('/')
        .map(|(i, _)| &parent[..i])
        .chain(std::iter::once(parent))
}

/// Upstream `New` for one pattern; `None` for a blank one.
fn compile_pattern(raw: &str) -> Result<Option<Pattern>, DockerignoreError> {
    // Go's strings.TrimSpace trims the same Unicode White_Space set.
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let cleaned = crate::golang::path_clean(trimmed);
    let (exclusion, body) = match cleaned.strip_prefix('!') {
        Some("") => {
            return Err(DockerignoreError::IllegalExclusion {
                pattern: trimmed.to_owned(),
                line: None,
            });
        }
        Some(body) => (true, body),
        None => (false, cleaned.as_str()),
    };
    let bad = || DockerignoreError::BadPattern {
        pattern: trimmed.to_owned(),
        line: None,
    };
    // Upstream's syntax check: filepath.Match against ".".
    if golang::filepath_match(body.as_bytes(), b".").is_err() {
        return Err(bad());
    }
    let (match_type, go_regex) = pattern_to_go_regex(body);
    let kind = match match_type {
        MatchType::Exact => Kind::Exact,
        MatchType::Prefix => Kind::Prefix,
        MatchType::Suffix => Kind::Suffix,
        MatchType::Regexp => {
            let rust = goregex::translate(&go_regex).ok_or_else(bad)?;
            let re = regex::RegexBuilder::new(&rust)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|_| bad())?;
            Kind::Regexp(re)
        }
    };
    Ok(Some(Pattern {
        cleaned: body.to_owned(),
        exclusion,
        kind,
    }))
}

/// Compiled-program size cap, well above what real patterns need; a pattern
/// beyond it is reported as malformed.
const REGEX_SIZE_LIMIT: usize = 64 << 20;

/// Upstream `Pattern.compile`: classify the pattern and build the Go regular
/// expression for it (meaningful only for [`MatchType::Regexp`]).
fn pattern_to_go_regex(pattern: &str) -> (MatchType, String) {
    let mut re = String::with_capacity(pattern.len().saturating_mul(2).saturating_add(2));
    re.push('^');
    let mut ty = MatchType::Exact;
    let mut chars = pattern.chars().peekable();
    // Go's text/scanner silently drops a byte-order mark at the very start.
    chars.next_if_eq(&'\u{FEFF}');
    let mut first = true;
    while let Some(ch) = chars.next() {
        match ch {
            '*' if chars.next_if_eq(&'*').is_some() => {
                // `**/` is treated as `**`.
                chars.next_if_eq(&'/');
                if chars.peek().is_none() {
                    // Trailing `**` matches everything below, as in .gitignore.
                    if ty == MatchType::Exact {
                        ty = MatchType::Prefix;
                    } else {
                        re.push_str(".*");
                        ty = MatchType::Regexp;
                    }
                } else {
                    // Any number of directories, including none.
                    re.push_str("(.*/)?");
                    ty = MatchType::Regexp;
                }
                if first {
                    ty = MatchType::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                ty = MatchType::Regexp;
            }
            '?' => {
                re.push_str("[^/]");
                ty = MatchType::Regexp;
            }
            // Regex metacharacters that mean nothing to filepath.Match.
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                re.push('\\');
                re.push(ch);
            }
            '\\' => {
                // The escaped character goes through to the regexp as is.
                re.push('\\');
                if let Some(next) = chars.next() {
                    re.push(next);
                    ty = MatchType::Regexp;
                }
            }
            '[' | ']' => {
                re.push(ch);
                ty = MatchType::Regexp;
            }
            _ => re.push(ch),
        }
        first = false;
    }
    if ty == MatchType::Regexp {
        re.push('$');
    }
    (ty, re)
}

/// One pattern read from an ignore file, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoreLine {
    /// 1-based line number in the file.
    pub line: usize,
    /// The normalised pattern (with a leading `!` for exclusions).
    pub pattern: String,
}

/// Go's `bufio.MaxScanTokenSize`: lines this long or longer are refused.
const MAX_LINE: usize = 64 * 1024;

/// Upstream `ignorefile.ReadAll`, keeping line numbers: a leading UTF-8 BOM
/// is dropped, lines starting with `#` are comments, other lines are trimmed
/// of white space (blank ones skipped), cleaned with `filepath.Clean`, and
/// stripped of one leading `/`; `!` exclusions are normalised the same way
/// after the `!`.
///
/// Patterns are not validated here (a lone `!` comes back as `"!"`);
/// [`parse_ignore_file`] does that.
pub fn read_ignore_file(text: &str) -> Result<Vec<IgnoreLine>, DockerignoreError> {
    let mut out = Vec::new();
    // bufio.ScanLines: split on '\n', drop one '\r' before it, and no empty
    // token after a final newline.
    let body = text.strip_suffix('\n').unwrap_or(text);
    if text.is_empty() {
        return Ok(out);
    }
    for (index, raw) in body.split('\n').enumerate() {
        let line = index + 1;
        if raw.len() >= MAX_LINE {
            return Err(DockerignoreError::LineTooLong { line });
        }
        let mut raw = raw.strip_suffix('\r').unwrap_or(raw);
        if index == 0 {
            raw = raw.strip_prefix('\u{FEFF}').unwrap_or(raw);
        }
        // Comments are recognised before trimming.
        if raw.starts_with('#') {
            continue;
        }
        let mut pattern = raw.trim();
        if pattern.is_empty() {
            continue;
        }
        let invert = if let Some(rest) = pattern.strip_prefix('!') {
            pattern = rest.trim();
            true
        } else {
            false
        };
        let mut normalised = String::with_capacity(pattern.len() + 1);
        if invert {
            normalised.push('!');
        }
        if pattern.is_empty() {
            // Left as "!" for the matcher to reject.
        } else {
            let cleaned = crate::golang::path_clean(pattern);
            match cleaned.strip_prefix('/') {
                Some(rest) if !rest.is_empty() => normalised.push_str(rest),
                _ => normalised.push_str(&cleaned),
            }
        }
        out.push(IgnoreLine {
            line,
            pattern: normalised,
        });
    }
    Ok(out)
}

/// Parse the text of a .dockerignore file into patterns (upstream
/// `ignorefile.ReadAll`), then check each as [`PatternMatcher::new`] would,
/// so that a bad pattern is reported with its line number.
pub fn parse_ignore_file(text: &str) -> Result<Vec<String>, DockerignoreError> {
    let lines = read_ignore_file(text)?;
    for l in &lines {
        compile_pattern(&l.pattern).map_err(|e| e.at_line(l.line))?;
    }
    Ok(lines.into_iter().map(|l| l.pattern).collect())
}

/// Find the ignore file that applies for a build: `<dockerfile>.dockerignore`
/// beside the Dockerfile if it exists, else `<context>/.dockerignore`, else
/// None.
///
/// As with buildx, the Dockerfile-specific file is the Dockerfile's own path
/// with `.dockerignore` appended to its base name (`-f dir/app.Dockerfile`
/// uses `dir/app.Dockerfile.dockerignore`), and it replaces the context's
/// file entirely. Pass `dockerfile` as the user named it (relative paths are
/// used as they are, i.e. against the current directory); an empty path
/// means the default `<context>/Dockerfile`. Only regular files (or links to
/// them) count, as `BuildKit` ignores a candidate it cannot read as a file.
pub fn find_ignore_file(context_dir: &Path, dockerfile: &Path) -> Option<PathBuf> {
    let default;
    let dockerfile = if dockerfile.as_os_str().is_empty() {
        default = context_dir.join("Dockerfile");
        &default
    } else {
        dockerfile
    };
    if let Some(name) = dockerfile.file_name() {
        let mut ignore_name = name.to_os_string();
        ignore_name.push(".dockerignore");
        let candidate = dockerfile.with_file_name(ignore_name);
        if candidate.is_file() {
            return Some(candidate);
        }
    }
    let candidate = context_dir.join(".dockerignore");
    candidate.is_file().then_some(candidate)
}
