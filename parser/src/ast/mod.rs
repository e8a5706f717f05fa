//! Dockerfile text to AST, as BuildKit's `parser.Parse` does it: parser
//! directives, comments, line continuations (with comment and empty lines
//! inside them), heredoc bodies, and per-instruction argument forms.
//!
//! The AST keeps the raw words (no variable expansion) with their spans;
//! [`Node::dump`] prints BuildKit's s-expression notation.

mod directives;
mod dump;
mod heredoc;
mod json;
mod words;

use serde::Serialize;

pub use directives::{CheckOptions, Directive};
pub use heredoc::{Heredoc, chomp, parse_heredoc_marker};

use crate::error::{Error, ErrorKind};
use crate::source::{LogicalLine, SourceLines, Span};
use directives::DirectiveParser;
use json::{JsonArgs, parse_json_args};
use words::{RawWord, parse_words, split_command, split_first_whitespace, split_whitespace};

/// How deep `ONBUILD ONBUILD ...` may nest before the parser gives up
/// (BuildKit rejects any nesting later; this only bounds recursion).
const MAX_ONBUILD_DEPTH: usize = 16;

/// A word of the Dockerfile with where it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Word {
    /// The text, before variable expansion.
    pub value: String,
    /// Where it is.
    pub span: Span,
}

/// A `key value` or `key=value` pair of ENV or LABEL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    /// The key, raw.
    pub key: Word,
    /// The value, raw (quotes not yet removed).
    pub value: Word,
    /// Whether it was written `key=value` (false: legacy `key value`).
    pub has_equals: bool,
}

/// The arguments of one instruction, in the shape its line parser gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Args {
    /// No arguments.
    None,
    /// A list of words (shell form as one word, or exec-form elements).
    Words(Vec<Word>),
    /// ENV and LABEL pairs.
    KeyValues(Vec<KeyValue>),
    /// The instruction an ONBUILD wraps.
    Instruction(Box<Node>),
    /// An unknown instruction: its arguments are ignored.
    Ignored,
}

/// One instruction of the AST.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// The instruction name as written (any case).
    pub keyword: Word,
    /// `--name[=value]` flags, quotes processed, in order.
    pub flags: Vec<Word>,
    /// The arguments.
    pub args: Args,
    /// Whether the arguments were a JSON array (exec form).
    pub json: bool,
    /// Heredoc bodies that followed the instruction line.
    pub heredocs: Vec<Heredoc>,
    /// The instruction's logical line (continuations joined).
    pub original: String,
    /// First line of the instruction (1-based).
    pub start_line: usize,
    /// Last line, heredoc bodies included.
    pub end_line: usize,
    /// The comment lines right above the instruction.
    pub comments: Vec<String>,
}

impl Node {
    /// The instruction name, lowercase.
    pub fn name(&self) -> String {
        self.keyword.value.to_lowercase()
    }

    /// The argument words as BuildKit's `nodeArgs` lists them: ENV/LABEL
    /// pairs flattened, ONBUILD's instruction as its name followed by its
    /// arguments.
    pub fn arg_words(&self) -> Vec<Word> {
        match &self.args {
            Args::None | Args::Ignored => Vec::new(),
            Args::Words(words) => words.clone(),
            Args::KeyValues(pairs) => pairs
                .iter()
                .flat_map(|kv| [kv.key.clone(), kv.value.clone()])
                .collect(),
            Args::Instruction(node) => {
                let mut out = vec![node.keyword.clone()];
                out.extend(node.arg_words());
                out
            }
        }
    }

    /// The span of the whole first line of the instruction, from its name.
    pub fn span(&self) -> Span {
        self.keyword.span
    }
}

/// A warning found while parsing (the build goes on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// BuildKit's check name, e.g. `NoEmptyContinuation`.
    pub rule: &'static str,
    /// What is wrong.
    pub message: String,
    /// Where.
    pub span: Span,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dockerfile {
    /// The display name used in errors.
    pub file: String,
    /// The escape character in force (`\` or `` ` ``).
    pub escape: char,
    /// The parser directives found at the top.
    pub directives: Vec<Directive>,
    /// The instructions, in order.
    pub nodes: Vec<Node>,
    /// Warnings such as empty continuation lines.
    pub warnings: Vec<Warning>,
    /// The full text, for error messages of later stages.
    #[serde(skip)]
    pub source: String,
}

impl Dockerfile {
    /// The value of directive `name` (`syntax`, `escape`, `check`).
    pub fn directive(&self, name: &str) -> Option<&Directive> {
        self.directives.iter().find(|d| d.name == name)
    }

    /// The `# check=` options, parsed.
    pub fn check_options(&self) -> Result<CheckOptions, Error> {
        match self.directive("check") {
            None => Ok(CheckOptions::default()),
            Some(d) => CheckOptions::parse(&d.value).map_err(|message| {
                self.error(
                    Span {
                        line: d.line,
                        column: 1,
                        width: self.lines().line(d.line).chars().count().max(1),
                    },
                    ErrorKind::InvalidCheckDirective { message },
                )
                .expecting("# check=skip=<checks|all>;error=<true|false>")
            }),
        }
    }

    /// The physical lines of the file.
    pub fn lines(&self) -> SourceLines<'_> {
        SourceLines::new(&self.source)
    }

    /// An error located in this file.
    pub fn error(&self, span: Span, kind: ErrorKind) -> Error {
        Error::new(&self.file, &self.lines(), span, kind)
    }

    /// The whole AST in BuildKit's dump notation, one line per instruction.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            out.push('(');
            out.push_str(&node.dump());
            out.push_str(")\n");
        }
        out
    }
}

/// One physical line of input: its 1-based number and its text with the
/// line terminator kept (heredoc bodies keep them).
#[derive(Clone, Copy)]
struct RawLine<'a> {
    number: usize,
    text: &'a str,
}

/// Iterates the physical lines of the input like Go's line scanner with
/// BuildKit's `scanLines` split function (terminators kept).
struct Lines<'a> {
    rest: &'a str,
    number: usize,
}

impl<'a> Iterator for Lines<'a> {
    type Item = RawLine<'a>;

    fn next(&mut self) -> Option<RawLine<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        let end = self.rest.find('\n').map_or(self.rest.len(), |i| i + 1);
        let (text, rest) = self.rest.split_at(end);
        self.rest = rest;
        self.number += 1;
        Some(RawLine {
            number: self.number,
            text,
        })
    }
}

/// Drops the trailing run of `\r` and `\n` (Go's `bytes.TrimRight(s, "\r\n")`).
fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

/// Go's `bytes.TrimLeftFunc(s, unicode.IsSpace)`.
fn trim_leading_space(s: &str) -> &str {
    s.trim_start_matches(char::is_whitespace)
}

fn is_comment(line: &str) -> bool {
    trim_leading_space(line).starts_with('#')
}

/// BuildKit's continuation regex `([^E])E[ \t]*$|^E[ \t]*$` for escape E:
/// returns the line without the escape and trailing blanks, and whether
/// the line was a continuation.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    let Some(before) = body.strip_suffix(escape) else {
        return (line, true);
    };
    match before.chars().next_back() {
        None => ("", false),
        Some(c) if c == escape => (line, true),
        Some(_) => (before, false),
    }
}

/// The parser state shared by the line parsers.
struct Context<'a> {
    file: &'a str,
    lines: SourceLines<'a>,
    escape: char,
    depth: usize,
}

impl Context<'_> {
    fn error(&self, span: Span, kind: ErrorKind) -> Error {
        Error::new(self.file, &self.lines, span, kind)
    }

    fn word(&self, logical: &LogicalLine, base: usize, raw: RawWord) -> Word {
        Word {
            span: logical.span(
                &self.lines,
                base + raw.start,
                base + raw.end.max(raw.start + 1),
            ),
            value: raw.text,
        }
    }
}

/// Parses Dockerfile bytes: like [`parse`], after checking they are UTF-8
/// (an error points at the first invalid byte).
pub fn parse_bytes(file: &str, bytes: &[u8]) -> Result<Dockerfile, Error> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(file, text),
        Err(e) => {
            let valid = bytes.get(..e.valid_up_to()).unwrap_or_default();
            let text = String::from_utf8_lossy(bytes);
            let line = valid.split(|&b| b == b'\n').count();
            let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let column = String::from_utf8_lossy(valid.get(line_start..).unwrap_or_default())
                .chars()
                .count()
                + 1;
            Err(Error::new(
                file,
                &SourceLines::new(&text),
                Span::point(line, column),
                ErrorKind::InvalidUtf8,
            )
            .expecting("UTF-8 text"))
        }
    }
}

/// Parses Dockerfile `text`; `file` is the name errors show.
pub fn parse(file: &str, text: &str) -> Result<Dockerfile, Error> {
    let source_lines = SourceLines::new(text);
    if text.is_empty() {
        return Err(Error::new(
            file,
            &source_lines,
            Span::point(1, 1),
            ErrorKind::EmptyDockerfile,
        ));
    }
    let mut cx = Context {
        file,
        lines: source_lines,
        escape: '\\',
        depth: 0,
    };
    let mut directive_parser = DirectiveParser::default();
    let mut directives = Vec::new();
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    let mut comments: Vec<String> = Vec::new();
    let mut lines = Lines {
        rest: text,
        number: 0,
    };
    let mut last_line = 0;

    while let Some(raw) = lines.next() {
        last_line = raw.number;
        let raw_text = if raw.number == 1 {
            raw.text.strip_prefix('\u{feff}').unwrap_or(raw.text)
        } else {
            raw.text
        };
        let bom = raw.text.len() - raw_text.len();
        if is_comment(raw_text) {
            let body = trim_leading_space(trim_newline(raw_text));
            let comment = body.get(1..).unwrap_or("").trim();
            if comment.is_empty() {
                comments.clear();
            } else {
                comments.push(comment.to_owned());
            }
        }
        let token = trim_leading_space(trim_newline(raw_text));
        let lead = trim_newline(raw_text).len() - token.len();
        if let Some(directive) = directive_parser
            .parse_line(token, raw.number)
            .map_err(|name| {
                cx.error(
                    Span::point(raw.number, 1),
                    ErrorKind::DuplicateDirective { name },
                )
            })?
        {
            comments.pop();
            if directive.name == "escape" {
                cx.escape = directive::escape_token(&directive).ok_or_else(|| {
                    cx.error(
                        Span::point(raw.number, 1),
                        ErrorKind::InvalidEscapeToken {
                            value: directive.value.clone(),
                        },
                    )
                    .expecting("`\\` or `` ` ``")
                })?;
            }
            directives.push(directive);
        }
        let fragment = if is_comment(token) { "" } else { token };
        let (fragment, end_of_line) = trim_continuation(fragment, cx.escape);
        if end_of_line && fragment.is_empty() {
            continue;
        }
        let start_line = raw.number;
        let mut end_line = raw.number;
        let mut logical = LogicalLine::default();
        logical.push(fragment, raw.number, lead + bom);
        let empty_continuation = if end_of_line {
            None
        } else {
            read_continuation(&cx, &mut lines, &mut logical, &mut end_line)
        };
        last_line = last_line.max(end_line);
        let mut node = new_node(&mut cx, &logical, 0, logical.text.len(), &comments)?;
        if let Some(line) = empty_continuation {
            warnings.push(Warning {
                rule: "NoEmptyContinuation",
                message: "Empty continuation line found in: ".to_owned() + logical.text.trim(),
                span: Span::point(line, 1),
            });
        }
        if heredoc::can_contain_heredoc(&node) && logical.text.contains("<<") {
            read_heredoc_bodies(&cx, &mut lines, &logical, &mut node, &mut end_line)?;
            last_line = end_line;
        }
        node.start_line = start_line;
        node.end_line = end_line;
        nodes.push(node);
        comments.clear();
    }

    if nodes.is_empty() {
        return Err(cx
            .error(Span::point(last_line.max(1), 1), ErrorKind::NoInstructions)
            .expecting("at least one instruction, such as FROM"));
    }
    Ok(Dockerfile {
        file: file.to_owned(),
        escape: cx.escape,
        directives,
        nodes,
        warnings,
        source: text.to_owned(),
    })
}

/// Appends the continuation lines of an instruction to `logical`:
/// comment lines inside are skipped, so are blank ones (whose first line
/// number is returned for BuildKit's `NoEmptyContinuation` warning).
fn read_continuation(
    cx: &Context<'_>,
    lines: &mut Lines<'_>,
    logical: &mut LogicalLine,
    end_line: &mut usize,
) -> Option<usize> {
    let mut empty = None;
    for next in lines.by_ref() {
        *end_line = next.number;
        if is_comment(next.text) {
            continue;
        }
        let body = trim_newline(next.text);
        if trim_leading_space(body).is_empty() {
            empty.get_or_insert(next.number);
            continue;
        }
        let (fragment, end_of_line) = trim_continuation(body, cx.escape);
        logical.push(fragment, next.number, 0);
        if end_of_line {
            break;
        }
    }
    empty
}

/// Reads the bodies of the heredocs on `node`'s line from the lines that
/// follow, each up to its terminator line.
fn read_heredoc_bodies(
    cx: &Context<'_>,
    lines: &mut Lines<'_>,
    logical: &LogicalLine,
    node: &mut Node,
    end_line: &mut usize,
) -> Result<(), Error> {
    let markers = heredoc::heredocs_from_line(&logical.text)
        .map_err(|message| cx.error(node.keyword.span, ErrorKind::InvalidHeredoc { message }))?;
    for marker in markers {
        let span = heredoc::marker_span(logical, &cx.lines, &marker);
        let mut content = String::new();
        let mut terminated = false;
        for body in lines.by_ref() {
            *end_line = body.number;
            let mut candidate = trim_newline(body.text);
            if marker.chomp {
                candidate = candidate.trim_start_matches('\t');
            }
            if candidate == marker.name {
                terminated = true;
                break;
            }
            content.push_str(body.text);
        }
        if !terminated {
            return Err(cx
                .error(
                    span,
                    ErrorKind::UnterminatedHeredoc {
                        name: marker.name.clone(),
                    },
                )
                .expecting(format!(
                    "a line containing only {} before the end of the file",
                    marker.name
                )));
        }
        node.heredocs.push(Heredoc {
            content,
            span,
            ..marker
        });
    }
    Ok(())
}

mod directive {
    use super::Directive;

    /// The escape character a valid `escape` directive sets.
    pub(super) fn escape_token(d: &Directive) -> Option<char> {
        match d.value.as_str() {
            "\\" => Some('\\'),
            "`" => Some('`'),
            _ => None,
        }
    }
}

/// BuildKit's `newNodeFromLine`, on `logical.text[start..end]`.
fn new_node(
    cx: &mut Context<'_>,
    logical: &LogicalLine,
    start: usize,
    end: usize,
    comments: &[String],
) -> Result<Node, Error> {
    let line = logical.text.get(start..end).unwrap_or("");
    let split = split_command(line);
    let keyword = cx.word(logical, start, split.keyword.clone());
    let flags = split
        .flags
        .iter()
        .map(|f| cx.word(logical, start, f.clone()))
        .collect();
    let args_base = start + split.args_start;
    let rest = split.args;
    let name = split.keyword.text.to_lowercase();
    let mut json = false;
    let args = match name.as_str() {
        "add" | "copy" | "volume" => match parse_json_args(rest) {
            JsonArgs::Strings(items) => {
                json = true;
                json_words(cx, logical, args_base, items)
            }
            JsonArgs::NotStrings => {
                return Err(not_strings(cx, logical, args_base, rest));
            }
            JsonArgs::NotJson => whitespace_words(cx, logical, args_base, rest),
        },
        "cmd" | "entrypoint" | "run" | "shell" => {
            let (args, is_json) = maybe_json(cx, logical, args_base, rest)?;
            json = is_json;
            args
        }
        "env" | "label" => name_values(cx, logical, args_base, rest, &name)?,
        "expose" | "from" => whitespace_words(cx, logical, args_base, rest),
        "arg" => {
            let words = parse_words(rest, cx.escape);
            if words.is_empty() {
                Args::None
            } else {
                Args::Words(
                    words
                        .into_iter()
                        .map(|w| cx.word(logical, args_base, w))
                        .collect(),
                )
            }
        }
        "healthcheck" => {
            let (args, is_json) = health_config(cx, logical, args_base, rest)?;
            json = is_json;
            args
        }
        "maintainer" | "stopsignal" | "user" | "workdir" => {
            single_string(cx, logical, args_base, rest)
        }
        "onbuild" => {
            if rest.is_empty() {
                Args::None
            } else {
                if cx.depth >= MAX_ONBUILD_DEPTH {
                    return Err(cx.error(keyword.span, ErrorKind::NestingTooDeep));
                }
                cx.depth += 1;
                let child = new_node(cx, logical, args_base, args_base + rest.len(), &[]);
                cx.depth -= 1;
                Args::Instruction(Box::new(child?))
            }
        }
        _ => Args::Ignored,
    };
    Ok(Node {
        keyword,
        flags,
        args,
        json,
        heredocs: Vec::new(),
        original: line.to_owned(),
        start_line: 0,
        end_line: 0,
        comments: comments.to_vec(),
    })
}

fn json_words(
    cx: &Context<'_>,
    logical: &LogicalLine,
    base: usize,
    items: Vec<(String, usize, usize)>,
) -> Args {
    if items.is_empty() {
        return Args::None;
    }
    Args::Words(
        items
            .into_iter()
            .map(|(text, start, end)| cx.word(logical, base, RawWord { text, start, end }))
            .collect(),
    )
}

fn not_strings(cx: &Context<'_>, logical: &LogicalLine, base: usize, rest: &str) -> Error {
    cx.error(
        logical.span(&cx.lines, base, base + rest.len()),
        ErrorKind::NotStringArray,
    )
    .expecting("a JSON array of strings, such as [\"sh\", \"-c\", \"echo hi\"]")
}

/// `parseStringsWhitespaceDelimited`.
fn whitespace_words(cx: &Context<'_>, logical: &LogicalLine, base: usize, rest: &str) -> Args {
    if rest.is_empty() {
        return Args::None;
    }
    Args::Words(
        split_whitespace(rest)
            .into_iter()
            .map(|w| cx.word(logical, base, w))
            .collect(),
    )
}

/// `parseString`: the whole rest as one word.
fn single_string(cx: &Context<'_>, logical: &LogicalLine, base: usize, rest: &str) -> Args {
    if rest.is_empty() {
        return Args::None;
    }
    Args::Words(vec![cx.word(
        logical,
        base,
        RawWord {
            text: rest.to_owned(),
            start: 0,
            end: rest.len(),
        },
    )])
}

/// `parseMaybeJSON`: a JSON array of strings, or the rest as one word.
fn maybe_json(
    cx: &Context<'_>,
    logical: &LogicalLine,
    base: usize,
    rest: &str,
) -> Result<(Args, bool), Error> {
    if rest.is_empty() {
        return Ok((Args::None, false));
    }
    match parse_json_args(rest) {
        JsonArgs::Strings(items) => Ok((json_words(cx, logical, base, items), true)),
        JsonArgs::NotStrings => Err(not_strings(cx, logical, base, rest)),
        JsonArgs::NotJson => Ok((single_string(cx, logical, base, rest), false)),
    }
}

/// `parseHealthConfig`: the type word, then `parseMaybeJSON` on the rest.
fn health_config(
    cx: &Context<'_>,
    logical: &LogicalLine,
    base: usize,
    rest: &str,
) -> Result<(Args, bool), Error> {
    let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if sep == 0 {
        return Ok((Args::None, false));
    }
    let after = rest.get(sep..).unwrap_or("");
    let next = sep + (after.len() - trim_leading_space(after).len());
    let mut words = vec![cx.word(
        logical,
        base,
        RawWord {
            text: rest.get(..sep).unwrap_or("").to_owned(),
            start: 0,
            end: sep,
        },
    )];
    let (command, json) = maybe_json(cx, logical, base + next, rest.get(next..).unwrap_or(""))?;
    if let Args::Words(more) = command {
        words.extend(more);
    }
    Ok((Args::Words(words), json))
}

/// `parseNameVal` for ENV and LABEL: legacy `key value` or `k=v ...`.
fn name_values(
    cx: &Context<'_>,
    logical: &LogicalLine,
    base: usize,
    rest: &str,
    name: &str,
) -> Result<Args, Error> {
    let words = parse_words(rest, cx.escape);
    let Some(first) = words.first() else {
        return Ok(Args::None);
    };
    if !first.text.contains('=') {
        let Some((key, value)) = split_first_whitespace(rest) else {
            return Err(cx
                .error(
                    logical.span(&cx.lines, base, base + rest.len()),
                    ErrorKind::MustHaveTwoArguments {
                        instruction: name.to_uppercase(),
                    },
                )
                .expecting(format!("a value: {} {} <value>", name.to_uppercase(), rest)));
        };
        return Ok(Args::KeyValues(vec![KeyValue {
            key: cx.word(logical, base, key),
            value: cx.word(logical, base, value),
            has_equals: false,
        }]));
    }
    let mut pairs = Vec::new();
    for word in words {
        let Some((key, value)) = word.text.split_once('=') else {
            return Err(cx
                .error(
                    logical.span(&cx.lines, base + word.start, base + word.end),
                    ErrorKind::MissingEquals {
                        word: word.text.clone(),
                    },
                )
                .expecting("name=value"));
        };
        let value_start = word.start + key.len() + 1;
        pairs.push(KeyValue {
            key: cx.word(
                logical,
                base,
                RawWord {
                    text: key.to_owned(),
                    start: word.start,
                    end: value_start - 1,
                },
            ),
            value: cx.word(
                logical,
                base,
                RawWord {
                    text: value.to_owned(),
                    start: value_start,
                    end: word.end,
                },
            ),
            has_equals: true,
        });
    }
    Ok(Args::KeyValues(pairs))
}

#[cfg(test)]
mod tests;
