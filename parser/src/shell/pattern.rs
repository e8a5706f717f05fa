//! Glob patterns of `${x#p}`, `${x%p}` and `${x/p/r}`, matched the way
//! `BuildKit` does it: `*` and `?` become regex wildcards, `\` escapes `*`, `?`
//! and `\` (and is dropped before `}` and `/`), and bracket expressions are
//! not supported. Suffix trimming runs a prefix match on reversed strings.

use regex::Regex;

use super::chars::{is_digit, is_letter};

/// Why a substitution pattern was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// A `\` followed by a character it may not escape. When the pattern
    /// ends with the `\`, the character is U+FFFD, as Go prints it.
    #[error("invalid escape '\\{0}'")]
    InvalidEscape(char),
    /// The equivalent regular expression is over the regex engine's size
    /// limit (thousands of wildcards); worded as Go's `ErrLarge`.
    #[error("expression too large")]
    TooLarge,
    /// The equivalent regular expression could not be compiled otherwise.
    #[error("{0}")]
    Regex(String),
}

/// A pattern failure together with the pattern text `BuildKit` reports.
#[derive(Debug)]
pub(crate) struct PatternFailure {
    pub(crate) pattern: String,
    pub(crate) reason: PatternError,
}

/// Go's `text/scanner` silently drops a byte order mark at the very start.
const BOM: char = '\u{FEFF}';

/// The translation of a glob: the regex `BuildKit` would compile, plus the
/// plain text it matches when it has no wildcard at all.
#[derive(Debug)]
pub(crate) struct Translated {
    pub(crate) regex: String,
    pub(crate) literal: Option<String>,
}

/// Translates a glob to the regex source `BuildKit` builds for it.
pub(crate) fn translate(
    pattern: &str,
    greedy: bool,
    anchored: bool,
) -> Result<Translated, PatternError> {
    let pattern = pattern.strip_prefix(BOM).unwrap_or(pattern);
    let mut regex = String::with_capacity(pattern.len() + 4);
    let mut literal = Some(String::with_capacity(pattern.len()));
    if anchored {
        regex.push('^');
    }
    let star = if greedy { ".*" } else { ".*?" };
    let mut chars = pattern.chars().peekable();
    while let Some(tok) = chars.next() {
        let lit = match tok {
            '*' => {
                regex.push_str(star);
                literal = None;
                continue;
            }
            '?' => {
                regex.push('.');
                literal = None;
                continue;
            }
            '\\' => {
                // The escape only served to hide `}` or `/` from the lexer.
                if matches!(chars.peek(), Some('}' | '/')) {
                    continue;
                }
                regex.push('\\');
                match chars.next() {
                    Some(c @ ('*' | '?' | '\\')) => {
                        regex.push(c);
                        c
                    }
                    other => {
                        return Err(PatternError::InvalidEscape(other.unwrap_or('\u{FFFD}')));
                    }
                }
            }
            '[' | ']' | '{' | '}' | '.' | '+' | '(' | ')' | '|' | '^' | '$' => {
                regex.push('\\');
                regex.push(tok);
                tok
            }
            _ => {
                regex.push(tok);
                tok
            }
        };
        if let Some(l) = literal.as_mut() {
            l.push(lit);
        }
    }
    Ok(Translated { regex, literal })
}

/// A compiled pattern. Patterns without wildcards skip the regex engine;
/// they match exactly the same spans.
#[derive(Debug)]
pub(crate) enum Matcher {
    Literal { text: String, anchored: bool },
    Regex(Regex),
}

impl Matcher {
    pub(crate) fn compile(
        pattern: &str,
        greedy: bool,
        anchored: bool,
    ) -> Result<Self, PatternError> {
        let t = translate(pattern, greedy, anchored)?;
        match t.literal {
            Some(text) => Ok(Self::Literal { text, anchored }),
            None => Regex::new(&t.regex).map(Self::Regex).map_err(|e| match e {
                regex::Error::CompiledTooBig(_) => PatternError::TooLarge,
                other => PatternError::Regex(other.to_string()),
            }),
        }
    }

    /// The leftmost match starting at or after byte `start` (a char
    /// boundary), as Go's regexp finds it.
    fn find_at(&self, hay: &str, start: usize) -> Option<(usize, usize)> {
        match self {
            Self::Literal {
                text,
                anchored: true,
            } => (start == 0 && hay.starts_with(text.as_str())).then_some((0, text.len())),
            Self::Literal {
                text,
                anchored: false,
            } => {
                let i = hay.get(start..)?.find(text.as_str())?;
                Some((start + i, start + i + text.len()))
            }
            Self::Regex(re) => {
                if start > hay.len() {
                    return None;
                }
                re.find_at(hay, start).map(|m| (m.start(), m.end()))
            }
        }
    }
}

/// `${x#p}` / `${x##p}`: drops the shortest (or longest) matching prefix.
pub(crate) fn trim_prefix(
    pattern: &str,
    value: &str,
    greedy: bool,
) -> Result<String, PatternFailure> {
    let m = Matcher::compile(pattern, greedy, true).map_err(|reason| PatternFailure {
        pattern: pattern.to_owned(),
        reason,
    })?;
    Ok(match m.find_at(value, 0) {
        Some((_, end)) => value.get(end..).unwrap_or_default().to_owned(),
        None => value.to_owned(),
    })
}

/// `${x%p}` / `${x%%p}`: a prefix trim of the reversed value with the
/// reversed pattern, since a regex can't ask for the shortest rightmost
/// match. Errors therefore quote the reversed pattern, as `BuildKit`'s do.
pub(crate) fn trim_suffix(
    pattern: &str,
    value: &str,
    greedy: bool,
) -> Result<String, PatternFailure> {
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reverse_string(value), greedy)?;
    Ok(reverse_string(&trimmed))
}

/// Reverses a pattern by chars but keeps each `\x` pair in order.
pub(crate) fn reverse_pattern(pattern: &str) -> String {
    let mut units: Vec<(char, Option<char>)> = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            // A trailing `\` stays a unit of its own.
            units.push((c, chars.next()));
        } else {
            units.push((c, None));
        }
    }
    let mut out = String::with_capacity(pattern.len());
    for (a, b) in units.into_iter().rev() {
        out.push(a);
        if let Some(b) = b {
            out.push(b);
        }
    }
    out
}

/// Reverses a string by chars.
pub(crate) fn reverse_string(s: &str) -> String {
    s.chars().rev().collect()
}

/// `${x/p/r}`: replaces the first match, inserting `r` verbatim.
pub(crate) fn replace_first(m: &Matcher, value: &str, replacement: &str) -> String {
    match m.find_at(value, 0) {
        Some((a, b)) => {
            let mut out = String::with_capacity(value.len() + replacement.len());
            out.push_str(value.get(..a).unwrap_or_default());
            out.push_str(replacement);
            out.push_str(value.get(b..).unwrap_or_default());
            out
        }
        None => value.to_owned(),
    }
}

/// `${x//p/r}`: Go's `Regexp.ReplaceAllString`, including its handling of
/// empty matches and its `$`-template expansion of the replacement.
pub(crate) fn replace_all(m: &Matcher, value: &str, replacement: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut last_end = 0;
    let mut search = 0;
    while search <= value.len() {
        let Some((a, b)) = m.find_at(value, search) else {
            break;
        };
        out.push_str(value.get(last_end..a).unwrap_or_default());
        // An empty match right after the previous match is not replaced.
        if b > last_end || a == 0 {
            expand_template(&mut out, replacement, value.get(a..b).unwrap_or_default());
        }
        last_end = b;
        let width = value
            .get(search..)
            .and_then(|rest| rest.chars().next())
            .map_or(0, char::len_utf8);
        if search + width > b {
            search += width;
        } else if search + 1 > b {
            search += 1;
        } else {
            search = b;
        }
    }
    out.push_str(value.get(last_end..).unwrap_or_default());
    out
}

/// Go's `Regexp.Expand` for a regex whose only group is the whole match:
/// `$$` is a `$`, `$0`/`${0}` the match, any other well-formed reference
/// is empty, and a malformed one leaves the `$` as text.
fn expand_template(out: &mut String, template: &str, whole: &str) {
    let mut t = template;
    while let Some(i) = t.find('$') {
        out.push_str(t.get(..i).unwrap_or_default());
        t = t.get(i + 1..).unwrap_or_default();
        if let Some(rest) = t.strip_prefix('$') {
            out.push('$');
            t = rest;
            continue;
        }
        match template_ref(t) {
            Some((is_zero, rest)) => {
                if is_zero {
                    out.push_str(whole);
                }
                t = rest;
            }
            None => out.push('$'),
        }
    }
    out.push_str(t);
}

/// Parses a `name` or `{name}` reference after a `$`; returns whether it
/// names group 0, and the rest of the template.
fn template_ref(s: &str) -> Option<(bool, &str)> {
    let (brace, body) = match s.strip_prefix('{') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let len = body
        .char_indices()
        .find(|&(_, c)| !is_letter(c) && !is_digit(c) && c != '_')
        .map_or(body.len(), |(i, _)| i);
    if len == 0 {
        return None;
    }
    let name = body.get(..len)?;
    let mut rest = body.get(len..)?;
    if brace {
        rest = rest.strip_prefix('}')?;
    }
    // Go reads a group number only from ASCII digits without a leading zero.
    Some((name == "0", rest))
}
