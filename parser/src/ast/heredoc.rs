//! Heredocs: `RUN <<EOF`, `<<-EOF` (leading tabs stripped), quoted
//! delimiters (no expansion), several per line, and `COPY <<EOF /dest`.

use serde::Serialize;

use super::{Args, Node};
use crate::shell::{Lexer, NoEnv};
use crate::source::{LogicalLine, SourceLines, Span};

/// A heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter word, quotes removed (`EOF`).
    pub name: String,
    /// The file descriptor prefix, as in `3<<EOF` (0 when absent).
    pub fd: u32,
    /// Whether variables in the body are expanded (the delimiter was not
    /// quoted).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body and terminator.
    pub chomp: bool,
    /// The body, every line with its terminator, tabs not yet stripped.
    pub content: String,
    /// Where the `<<WORD` marker is.
    pub span: Span,
}

impl Heredoc {
    /// The body as the instruction sees it: with `<<-`, leading tabs are
    /// removed from every line.
    pub fn body(&self) -> String {
        if self.chomp {
            chomp(&self.content)
        } else {
            self.content.clone()
        }
    }
}

/// BuildKit's `ChompHeredocContent`: `(?m)^\t+` removed.
pub fn chomp(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|line| line.trim_start_matches('\t'))
        .collect()
}

/// The instructions whose lines may carry heredocs: ADD, COPY, RUN, also
/// behind ONBUILD, and never in exec (JSON) form.
pub(super) fn can_contain_heredoc(node: &Node) -> bool {
    let target = match &node.args {
        Args::Instruction(child) if node.name() == "onbuild" => child,
        _ => node,
    };
    matches!(target.name().as_str(), "add" | "copy" | "run") && !target.json
}

/// Parses a word such as `<<EOF`, `<<-"EOF"` or `3<<'EOF'` (BuildKit's
/// `ParseHeredoc`): `Ok(None)` when the word is no heredoc marker.
pub fn parse_heredoc_marker(word: &str) -> Result<Option<Heredoc>, String> {
    let digits_end = word
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(word.len());
    let (digits, rest) = word.split_at(digits_end);
    let Some(rest) = rest.strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    // Go ignores the ParseUint error: an overlong number means fd 0.
    let fd = digits.parse::<u32>().unwrap_or(0);
    let mut lexer = Lexer::new('\\');
    lexer.skip_unset_env = true;
    let words = lexer
        .process_words(rest, &NoEnv)
        .map_err(|e| e.to_string())?;
    let [word] = words.as_slice() else {
        return Ok(None);
    };
    lexer.raw_quotes = true;
    let raw_words = lexer
        .process_words(rest, &NoEnv)
        .map_err(|e| e.to_string())?;
    let [raw_word] = raw_words.as_slice() else {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    };
    let quotes = |s: &str| s.matches(['\'', '"']).count();
    Ok(Some(Heredoc {
        name: word.clone(),
        fd,
        expand: quotes(word) == quotes(raw_word),
        chomp,
        content: String::new(),
        span: Span::point(1, 1),
    }))
}

/// The heredoc markers on an instruction line, in order (BuildKit's
/// `heredocsFromLine`: the line is split into words the way a shell
/// would, keeping quotes, and each word is tried as a marker).
pub(super) fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let mut lexer = Lexer::new('\\');
    lexer.raw_quotes = true;
    lexer.raw_escapes = true;
    lexer.skip_unset_env = true;
    // BuildKit ignores a lexing error here: the line then has no heredocs.
    let words = lexer.process_words(line, &NoEnv).unwrap_or_default();
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc_marker(&word)? {
            docs.push(Heredoc {
                span: Span {
                    line: 0,
                    column: 0,
                    width: word.chars().count(),
                },
                ..doc
            });
        }
    }
    Ok(docs)
}

/// Where the marker of `doc` is in `logical` (the first occurrence of its
/// `<<` word after the markers before it; good enough for a caret).
pub(super) fn marker_span(logical: &LogicalLine, lines: &SourceLines<'_>, doc: &Heredoc) -> Span {
    let needle = format!("<<{}", if doc.chomp { "-" } else { "" });
    let text = &logical.text;
    let start = text
        .match_indices(&needle)
        .map(|(i, _)| i)
        .find(|&i| {
            text.get(i + needle.len()..)
                .is_some_and(|r| r.contains(&doc.name))
        })
        .or_else(|| text.find("<<"))
        .unwrap_or(0);
    let width = doc.span.width.max(2);
    let end = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .filter(|&i| i >= start)
        .nth(width)
        .unwrap_or(text.len());
    logical.span(lines, start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(word: &str) -> Option<(String, u32, bool, bool)> {
        parse_heredoc_marker(word)
            .unwrap()
            .map(|h| (h.name, h.fd, h.expand, h.chomp))
    }

    #[test]
    fn markers() {
        let m = |n: &str, fd, e, c| Some((n.to_owned(), fd, e, c));
        assert_eq!(marker("<<EOF"), m("EOF", 0, true, false));
        assert_eq!(marker("<<-EOF"), m("EOF", 0, true, true));
        assert_eq!(marker("<<\"EOF\""), m("EOF", 0, false, false));
        assert_eq!(marker("<<'EOF'"), m("EOF", 0, false, false));
        assert_eq!(marker("<<E\"O\"F"), m("EOF", 0, false, false));
        assert_eq!(marker("3<<EOF"), m("EOF", 3, true, false));
        assert_eq!(marker("<<"), None);
        assert_eq!(marker("<<-"), None);
        assert_eq!(marker("<<EOF<"), None);
        assert_eq!(marker("cat<<EOF"), None);
        assert_eq!(marker("<<\"E F\""), m("E F", 0, false, false));
        assert_eq!(marker("<<E F"), None);
    }

    #[test]
    fn markers_on_a_line() {
        let docs = heredocs_from_line("RUN <<EOF cat - <<-'EOT' \"<<NOT\"").unwrap();
        let names: Vec<_> = docs
            .iter()
            .map(|d| (d.name.as_str(), d.expand, d.chomp))
            .collect();
        assert_eq!(names, vec![("EOF", true, false), ("EOT", false, true)]);
        // an unterminated quote makes BuildKit see no heredocs at all
        assert!(heredocs_from_line("RUN <<EOF \"").unwrap().is_empty());
    }

    #[test]
    fn chomping() {
        assert_eq!(chomp("\t\ta\n\tb\n c\n"), "a\nb\n c\n");
    }
}
