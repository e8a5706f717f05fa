//! Dockerfile variable expansion and word splitting.
//!
//! A port of `BuildKit`'s shell lexer (`frontend/dockerfile/shell/lex.go`,
//! Unix semantics). It expands `$x` and `${x...}` references and processes
//! quotes and escapes in the arguments of ENV, ARG, COPY, WORKDIR, LABEL,
//! FROM, flags and so on; with its raw options it also finds heredoc words.
//!
//! Supported forms: `$x`, `${x}`, `${x:-w}`, `${x-w}`, `${x:+w}`, `${x+w}`,
//! `${x:?m}`, `${x?m}`, `${x#p}`, `${x##p}`, `${x%p}`, `${x%%p}`,
//! `${x/p/r}` and `${x//p/r}`. Positional and special parameters (`$1`,
//! `$@`, ...) are looked up like any name, so they normally expand empty.
//!
//! `BuildKit` prefixes every error with `failed to process "<word>": `; this
//! module reports the inner message plus an offset, leaving that framing to
//! the caller.

mod chars;
mod env;
mod pattern;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::mem;

use chars::{is_digit, is_letter, is_space, is_special_param};
pub use env::{EnvLookup, NoEnv};
pub use pattern::PatternError;
use pattern::{Matcher, PatternFailure};

/// How many `$` expansions may be nested inside one another.
///
/// Upstream recurses without bound on Go's growable stack; a fixed limit
/// keeps hostile input (thousands of nested `${a:-`) from overflowing ours.
pub const MAX_NESTING: usize = 64;

/// Go prints a missing character (end of input) as U+FFFD.
const GO_EOF_RUNE: char = '\u{FFFD}';

/// The shell word lexer, configured like `BuildKit`'s `shell.Lex`.
#[derive(Clone, Debug)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "mirrors the independent option flags of BuildKit's Lex"
)]
pub struct Lexer {
    /// The escape character: `\` by default, or `` ` `` via `# escape=`.
    pub escape: char,
    /// Keep quote characters in the output (upstream `RawQuotes`).
    pub raw_quotes: bool,
    /// Keep escape characters in the output (upstream `RawEscapes`). The
    /// operands of `${x-w}`, `${x+w}` and `${x?w}` always process escapes,
    /// and pattern operands always keep them, whatever this says.
    pub raw_escapes: bool,
    /// Treat quotes as ordinary characters (upstream `SkipProcessQuotes`).
    pub skip_process_quotes: bool,
    /// Leave references to unset variables as written (upstream
    /// `SkipUnsetEnv`).
    pub skip_unset_env: bool,
}

impl Default for Lexer {
    fn default() -> Self {
        Self::new('\\')
    }
}

/// The result of expanding a word.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The expanded text.
    pub value: String,
    /// Names of referenced variables that were set.
    pub matched: BTreeSet<String>,
    /// Names of referenced variables that were unset.
    pub unmatched: BTreeSet<String>,
}

/// An expansion failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ShellError {
    /// What went wrong.
    pub kind: ShellErrorKind,
    /// Byte offset in the input word where the offending construct starts
    /// (the `$` of a substitution, or an unterminated string's quote).
    pub offset: usize,
}

/// The kinds of expansion failure, worded as `BuildKit` words them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShellErrorKind {
    /// A `'` string without its closing quote.
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    /// A `"` string without its closing quote.
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    /// An operand of `${...}` ran to the end of the input. `BuildKit` turns
    /// this into [`ShellErrorKind::MissingBrace`] or
    /// [`ShellErrorKind::MissingSlash`] before it is reported.
    #[error("unexpected end of statement while looking for matching {0}")]
    UnexpectedEnd(char),
    /// `${` without its closing `}`.
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    /// `${x/pattern` without the `/` that starts the replacement.
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    /// `${}`, `${{...`, `${:...`.
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// An operator `BuildKit` does not support, such as `${x=w}` or `${x:#p}`.
    /// The text is the operator as read, U+FFFD standing for end of input.
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// `${x?m}` with `x` unset, or `${x:?m}` with `x` unset or empty. The
    /// message is `m`, or `BuildKit`'s default when `m` is empty.
    #[error("{name}: {message}")]
    Required {
        /// The variable name.
        name: String,
        /// The message shown after the name.
        message: String,
    },
    /// A pattern operand that can't be used. For `%` patterns `BuildKit`
    /// quotes the pattern reversed, and so does this.
    #[error("invalid pattern ({pattern}) in substitution: {reason}")]
    InvalidPattern {
        /// The pattern as `BuildKit` quotes it.
        pattern: String,
        /// Why it was rejected.
        reason: PatternError,
    },
    /// More than [`MAX_NESTING`] nested expansions (kiln's own limit).
    #[error("syntax error: substitutions nested too deeply")]
    NestingTooDeep,
}

impl ShellError {
    fn new(kind: ShellErrorKind, offset: usize) -> Self {
        Self { kind, offset }
    }
}

impl Lexer {
    /// A lexer with the given escape character and all options off.
    pub fn new(escape: char) -> Self {
        Self {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
        }
    }

    /// Expand one word (no word splitting), like `BuildKit` `ProcessWord` /
    /// `ProcessWordWithMatches`.
    pub fn process_word(&self, word: &str, env: &dyn EnvLookup) -> Result<Expansion, ShellError> {
        let mut st = State::new(self, env, word, true);
        let (value, _) = st.run()?;
        Ok(Expansion {
            value,
            matched: st.matched,
            unmatched: st.unmatched,
        })
    }

    /// Expand and split into words, like `BuildKit` `ProcessWords`.
    ///
    /// Expanded variables split at whitespace, quoted text does not. Like
    /// upstream, scanning the operand of a `${x<op>...}` form discards the
    /// part of the current word read before it: `a${x:-b}c` gives `bc`.
    pub fn process_words(
        &self,
        word: &str,
        env: &dyn EnvLookup,
    ) -> Result<Vec<String>, ShellError> {
        let mut st = State::new(self, env, word, false);
        st.run().map(|(_, words)| words)
    }
}

/// Word-splitting state of one scan level.
#[derive(Default)]
struct Words {
    list: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, buf: &mut String, c: char) {
        if is_space(c) {
            if self.in_word && !buf.is_empty() {
                self.list.push(mem::take(buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(buf, c);
        }
    }

    fn add_raw_char(&mut self, buf: &mut String, c: char) {
        buf.push(c);
        self.in_word = true;
    }

    fn add_string(&mut self, buf: &mut String, s: &str) {
        for c in s.chars() {
            self.add_char(buf, c);
        }
    }

    fn add_raw_string(&mut self, buf: &mut String, s: &str) {
        buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self, buf: &mut String) -> Vec<String> {
        if !buf.is_empty() {
            self.list.push(mem::take(buf));
        }
        self.list
    }
}

/// One expansion in progress.
struct State<'a> {
    lex: &'a Lexer,
    env: &'a dyn EnvLookup,
    src: &'a str,
    pos: usize,
    raw_escapes: bool,
    capture: bool,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
    /// The word being built. Upstream shares one buffer between all scan
    /// levels and clears it whenever a level starts; sharing it here gives
    /// the same splits.
    word_buf: String,
    depth: usize,
}

impl<'a> State<'a> {
    fn new(lex: &'a Lexer, env: &'a dyn EnvLookup, src: &'a str, capture: bool) -> Self {
        // Go's text/scanner skips a byte order mark at the start.
        let pos = if src.starts_with('\u{FEFF}') {
            '\u{FEFF}'.len_utf8()
        } else {
            0
        };
        Self {
            lex,
            env,
            src,
            pos,
            raw_escapes: lex.raw_escapes,
            capture,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
            word_buf: String::new(),
            depth: 0,
        }
    }

    fn peek(&self) -> Option<char> {
        self.src.get(self.pos..)?.chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn run(&mut self) -> Result<(String, Vec<String>), ShellError> {
        let raw = self.raw_escapes;
        self.scan(None, raw)
    }

    /// Scans up to `stop` (consumed) or to the end when `stop` is None.
    fn scan(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ShellError> {
        let saved = mem::replace(&mut self.raw_escapes, raw_escapes);
        let r = self.scan_inner(stop);
        self.raw_escapes = saved;
        r
    }

    fn scan_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), ShellError> {
        let mut result = String::new();
        self.word_buf.clear();
        let mut words = Words::default();
        let quotes = !self.lex.skip_process_quotes;
        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.bump();
                let list = words.finish(&mut self.word_buf);
                return Ok((result, list));
            }
            if ch == '$' {
                let tmp = self.dollar()?;
                result.push_str(&tmp);
                words.add_string(&mut self.word_buf, &tmp);
            } else if quotes && (ch == '\'' || ch == '"') {
                let tmp = if ch == '\'' {
                    self.single_quote()?
                } else {
                    self.double_quote()?
                };
                result.push_str(&tmp);
                words.add_raw_string(&mut self.word_buf, &tmp);
            } else {
                self.bump();
                let mut c = ch;
                if ch == self.lex.escape {
                    if self.raw_escapes {
                        words.add_raw_char(&mut self.word_buf, ch);
                        result.push(ch);
                    }
                    // An escape at the very end is dropped.
                    let Some(next) = self.bump() else { break };
                    c = next;
                    words.add_raw_char(&mut self.word_buf, c);
                } else {
                    words.add_char(&mut self.word_buf, c);
                }
                result.push(c);
            }
        }
        if let Some(s) = stop {
            return Err(ShellError::new(ShellErrorKind::UnexpectedEnd(s), self.pos));
        }
        let list = words.finish(&mut self.word_buf);
        Ok((result, list))
    }

    /// Everything between single quotes is literal; `'` can't be escaped.
    fn single_quote(&mut self) -> Result<String, ShellError> {
        let start = self.pos;
        self.bump();
        let mut out = String::new();
        if self.lex.raw_quotes {
            out.push('\'');
        }
        loop {
            match self.bump() {
                None => {
                    return Err(ShellError::new(
                        ShellErrorKind::UnterminatedSingleQuote,
                        start,
                    ));
                }
                Some('\'') => {
                    if self.lex.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    /// Double quotes expand `$` and let the escape character escape only
    /// `"`, `$` and itself; before anything else it stays literal.
    fn double_quote(&mut self) -> Result<String, ShellError> {
        let start = self.pos;
        self.bump();
        let mut out = String::new();
        if self.lex.raw_quotes {
            out.push('"');
        }
        loop {
            match self.peek() {
                None => {
                    return Err(ShellError::new(
                        ShellErrorKind::UnterminatedDoubleQuote,
                        start,
                    ));
                }
                Some('"') => {
                    self.bump();
                    if self.lex.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let value = self.dollar()?;
                    out.push_str(&value);
                }
                Some(ch) => {
                    self.bump();
                    let mut c = ch;
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            // Reported as an unterminated string next round.
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.lex.escape => {
                                self.bump();
                                c = n;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(c);
                }
            }
        }
    }

    /// Expands the `$` reference at the current position.
    fn dollar(&mut self) -> Result<String, ShellError> {
        if self.depth >= MAX_NESTING {
            return Err(ShellError::new(ShellErrorKind::NestingTooDeep, self.pos));
        }
        self.depth += 1;
        let r = self.dollar_inner();
        self.depth -= 1;
        r
    }

    fn dollar_inner(&mut self) -> Result<String, ShellError> {
        let start = self.pos;
        let err = |kind| ShellError::new(kind, start);
        self.bump();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.bump();
        match self.peek() {
            None => return Err(err(ShellErrorKind::MissingBrace)),
            Some('{' | '}' | ':') => return Err(err(ShellErrorKind::BadSubstitution)),
            Some(_) => {}
        }
        let name = self.name();
        let first = self.bump();
        let mut modifier = String::from(first.unwrap_or(GO_EOF_RUNE));
        match first {
            Some('}') => Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':' | '+' | '-' | '?' | '#' | '%') => {
                let null_is_unset = first == Some(':');
                let mut op = first;
                if null_is_unset {
                    op = self.bump();
                    modifier.push(op.unwrap_or(GO_EOF_RUNE));
                }
                self.operator(start, &name, op, modifier, null_is_unset)
            }
            Some('/') => self.substitute(start, &name),
            // BuildKit reports `${name` at the end of input as an
            // "unsupported modifier (\u{fffd})"; the missing brace is what
            // the user needs to hear.
            None => Err(err(ShellErrorKind::MissingBrace)),
            _ => Err(err(ShellErrorKind::UnsupportedModifier(modifier))),
        }
    }

    /// The `${name<op>word}` forms; `modifier` is the operator text as read
    /// (including a leading `:`).
    fn operator(
        &mut self,
        start: usize,
        name: &str,
        op: Option<char>,
        modifier: String,
        null_is_unset: bool,
    ) -> Result<String, ShellError> {
        let err = |kind| ShellError::new(kind, start);
        // Pattern operands keep their escapes for the pattern compiler.
        let raw = matches!(op, Some('#' | '%'));
        if null_is_unset && raw {
            return Err(err(ShellErrorKind::UnsupportedModifier(modifier)));
        }
        let word = match self.scan(Some('}'), raw) {
            Ok((w, _)) => w,
            Err(e) => return Err(self.at_end_or(e, ShellErrorKind::MissingBrace, start)),
        };
        let value = self.get_env(name);
        if value.is_none() && self.lex.skip_unset_env {
            return Ok(format!("${{{name}{modifier}{word}}}"));
        }
        let unset = value.is_none();
        let value = value.unwrap_or_default();
        let null = unset || (null_is_unset && value.is_empty());
        match op {
            Some('-') => Ok(if null { word } else { value }),
            Some('+') => Ok(if null { String::new() } else { word }),
            Some('?') => {
                let default = if unset {
                    "is not allowed to be unset"
                } else if null {
                    "is not allowed to be empty"
                } else {
                    return Ok(value);
                };
                let message = if word.is_empty() {
                    default.to_owned()
                } else {
                    word
                };
                Err(err(ShellErrorKind::Required {
                    name: name.to_owned(),
                    message,
                }))
            }
            Some(c @ ('#' | '%')) => {
                // A doubled operator (`##`, `%%`) asks for the longest match.
                let (greedy, pat) = match word.strip_prefix(c) {
                    Some(rest) => (true, rest),
                    None => (false, word.as_str()),
                };
                let r = if c == '%' {
                    pattern::trim_suffix(pat, &value, greedy)
                } else {
                    pattern::trim_prefix(pat, &value, greedy)
                };
                r.map_err(|f| err(invalid_pattern(f)))
            }
            _ => Err(err(ShellErrorKind::UnsupportedModifier(modifier))),
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`.
    fn substitute(&mut self, start: usize, name: &str) -> Result<String, ShellError> {
        let all = self.peek() == Some('/');
        if all {
            self.bump();
        }
        let pat = match self.scan(Some('/'), true) {
            Ok((p, _)) => p,
            Err(e) => return Err(self.at_end_or(e, ShellErrorKind::MissingSlash, start)),
        };
        let replacement = match self.scan(Some('}'), true) {
            Ok((r, _)) => r,
            Err(e) => return Err(self.at_end_or(e, ShellErrorKind::MissingBrace, start)),
        };
        let value = self.get_env(name);
        if value.is_none() && self.lex.skip_unset_env {
            // Upstream rebuilds `//` as a single `/` here.
            return Ok(format!("${{{name}/{pat}/{replacement}}}"));
        }
        let value = value.unwrap_or_default();
        let m = Matcher::compile(&pat, true, false).map_err(|reason| {
            ShellError::new(
                ShellErrorKind::InvalidPattern {
                    pattern: pat.clone(),
                    reason,
                },
                start,
            )
        })?;
        Ok(if all {
            pattern::replace_all(&m, &value, &replacement)
        } else {
            pattern::replace_first(&m, &value, &replacement)
        })
    }

    /// An operand failure at the end of input is reported as the missing
    /// delimiter of the enclosing `${`, whatever the inner error was.
    fn at_end_or(&self, e: ShellError, kind: ShellErrorKind, start: usize) -> ShellError {
        if self.peek().is_none() {
            ShellError::new(kind, start)
        } else {
            e
        }
    }

    /// Reads a name: a run of digits, one special parameter character, or
    /// letters, digits and `_`. May be empty.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_digit(ch) {
                while let Some(d) = self.peek().filter(|&d| is_digit(d)) {
                    self.bump();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.bump();
                name.push(ch);
                return name;
            }
            if !is_letter(ch) && !is_digit(ch) && ch != '_' {
                break;
            }
            self.bump();
            name.push(ch);
        }
        name
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        let value = self.env.lookup(name).map(str::to_owned);
        if self.capture {
            let set = if value.is_some() {
                &mut self.matched
            } else {
                &mut self.unmatched
            };
            if !set.contains(name) {
                set.insert(name.to_owned());
            }
        }
        value
    }
}

fn invalid_pattern(f: PatternFailure) -> ShellErrorKind {
    ShellErrorKind::InvalidPattern {
        pattern: f.pattern,
        reason: f.reason,
    }
}
