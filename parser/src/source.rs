//! Positions in Dockerfile text, and the map from a logical (joined) line
//! back to the physical lines it came from.

use serde::Serialize;

/// A place in the Dockerfile: 1-based line, 1-based column counted in
/// characters, and the width in characters of the token found there (at
/// least 1, never past the end of that physical line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Span {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Width of the token in characters.
    pub width: usize,
}

impl Span {
    /// The part of this span after its first `columns` characters, or the
    /// whole span when that would leave nothing (used to point inside a
    /// word: at a flag's value, at a lexer error's offset).
    #[must_use]
    pub fn skip(self, columns: usize) -> Span {
        if self.width > columns {
            Span {
                line: self.line,
                column: self.column + columns,
                width: self.width - columns,
            }
        } else {
            self
        }
    }

    /// A span covering one character at `line:column`.
    pub fn point(line: usize, column: usize) -> Self {
        Span {
            line,
            column,
            width: 1,
        }
    }
}

/// The physical lines of a Dockerfile, without line terminators (and
/// without a leading byte-order mark), for column arithmetic and for
/// showing the offending line in errors.
#[derive(Debug, Clone)]
pub struct SourceLines<'a> {
    lines: Vec<&'a str>,
}

impl<'a> SourceLines<'a> {
    /// Splits `text` the way the parser does: on `\n` only, dropping a
    /// trailing `\r` run from each line and a UTF-8 BOM from the first.
    pub fn new(text: &'a str) -> Self {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let lines = text
            .split('\n')
            .map(|l| l.trim_end_matches(['\r', '\n']))
            .collect();
        SourceLines { lines }
    }

    /// The text of 1-based line `line`, or "" past the end.
    pub fn line(&self, line: usize) -> &'a str {
        line.checked_sub(1)
            .and_then(|i| self.lines.get(i))
            .copied()
            .unwrap_or("")
    }

    /// Converts a byte offset within a physical line to a 1-based
    /// character column.
    pub fn column(&self, line: usize, byte_offset: usize) -> usize {
        let text = self.line(line);
        let prefix = text.get(..byte_offset.min(text.len())).unwrap_or(text);
        prefix.chars().count() + 1
    }

    /// A span for the bytes `start..end` of physical line `line`, clamped to
    /// the line.
    pub fn span(&self, line: usize, start: usize, end: usize) -> Span {
        let text = self.line(line);
        let end = end.min(text.len()).max(start);
        let column = self.column(line, start);
        let width = text
            .get(start.min(text.len())..end)
            .map_or(0, |s| s.chars().count());
        Span {
            line,
            column,
            width: width.max(1),
        }
    }
}

/// One piece of a logical line: the bytes from `logical_start` onwards came
/// from physical line `line`, starting at byte `byte_column` of that line.
#[derive(Debug, Clone, Copy)]
struct Segment {
    logical_start: usize,
    line: usize,
    byte_column: usize,
}

/// A logical line (an instruction after joining continuation lines) with
/// the map back to physical positions.
#[derive(Debug, Clone, Default)]
pub struct LogicalLine {
    /// The joined text.
    pub text: String,
    segments: Vec<Segment>,
}

impl LogicalLine {
    /// Appends `fragment`, which starts at byte `byte_column` of physical
    /// line `line`.
    pub fn push(&mut self, fragment: &str, line: usize, byte_column: usize) {
        self.segments.push(Segment {
            logical_start: self.text.len(),
            line,
            byte_column,
        });
        self.text.push_str(fragment);
    }

    /// The physical line and byte column of logical byte offset `offset`.
    fn locate(&self, offset: usize) -> (usize, usize) {
        let index = self
            .segments
            .partition_point(|s| s.logical_start <= offset)
            .saturating_sub(1);
        match self.segments.get(index) {
            Some(s) => (
                s.line,
                s.byte_column + (offset - s.logical_start.min(offset)),
            ),
            None => (1, 0),
        }
    }

    /// The end (exclusive, logical offset) of the segment holding `offset`.
    fn segment_end(&self, offset: usize) -> usize {
        let index = self.segments.partition_point(|s| s.logical_start <= offset);
        self.segments
            .get(index)
            .map_or(self.text.len(), |s| s.logical_start)
    }

    /// The span of logical bytes `start..end`, cut at the end of the
    /// physical line where `start` lies.
    pub fn span(&self, lines: &SourceLines<'_>, start: usize, end: usize) -> Span {
        let (line, column) = self.locate(start);
        let end = end.min(self.segment_end(start)).max(start);
        lines.span(line, column, column + (end - start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_count_characters() {
        let lines = SourceLines::new("\u{feff}FROM é x\r\nRUN a\n");
        assert_eq!(lines.line(1), "FROM é x");
        assert_eq!(lines.line(2), "RUN a");
        assert_eq!(lines.line(9), "");
        // byte 8 is the 'x' after the two-byte 'é'
        assert_eq!(lines.column(1, 8), 8);
        assert_eq!(lines.span(1, 5, 7), Span::point(1, 6));
    }

    #[test]
    fn logical_offsets_map_back_to_physical_lines() {
        let src = "RUN a \\\n  b c";
        let lines = SourceLines::new(src);
        let mut logical = LogicalLine::default();
        logical.push("RUN a ", 1, 0);
        logical.push("  b c", 2, 0);
        assert_eq!(logical.text, "RUN a   b c");
        assert_eq!(logical.span(&lines, 4, 5), Span::point(1, 5));
        assert_eq!(
            logical.span(&lines, 8, 11),
            Span {
                line: 2,
                column: 3,
                width: 3
            }
        );
        // a span that runs over a line break is cut at the break
        assert_eq!(
            logical.span(&lines, 4, 10),
            Span {
                line: 1,
                column: 5,
                width: 2
            }
        );
    }
}
