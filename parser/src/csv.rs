//! One CSV record as `tonistiigi/go-csvvalue` reads it (BuildKit's
//! `--mount` values): fields with their spans in the input, and Go's
//! `csv.ParseError` words.

use serde::Serialize;
use thiserror::Error;

/// A byte range within the flag value that was parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Span {
    /// Offset of the first byte.
    pub start: usize,
    /// Offset one past the last byte.
    pub end: usize,
}

/// Why a `--mount` value's CSV record could not be read. Columns are 1-based
/// byte offsets, as Go's `csv.ParseError` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CsvError {
    /// The value is empty (after dropping one trailing newline).
    #[error("EOF")]
    Eof,
    /// A `"` inside a field that does not start with one.
    #[error("parse error on line 1, column {column}: bare \" in non-quoted-field")]
    BareQuote {
        /// 1-based byte column of the stray quote.
        column: usize,
    },
    /// A quoted field that is not closed, or is followed by something other
    /// than a comma.
    #[error("parse error on line 1, column {column}: extraneous or missing \" in quoted-field")]
    Quote {
        /// 1-based byte column where the problem was found.
        column: usize,
    },
}

impl CsvError {
    /// Byte offset of the problem within the value, if there is one.
    pub fn offset(self) -> Option<usize> {
        match self {
            Self::Eof => None,
            Self::BareQuote { column } | Self::Quote { column } => Some(column.saturating_sub(1)),
        }
    }
}

/// One field of a CSV record, unquoted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CsvField {
    /// The field's text with quoting removed.
    pub text: String,
    /// The raw field in the input, quotes included.
    pub span: Span,
}

/// Splits one CSV record as `go-csvvalue`'s `Fields` does with its default
/// settings (comma separator, strict quotes, no space trimming). One trailing
/// `\n` or `\r\n` is ignored; any other newline is ordinary text.
pub fn split_csv_record(input: &str) -> Result<Vec<CsvField>, CsvError> {
    let line = input
        .strip_suffix("\r\n")
        .or_else(|| input.strip_suffix('\n'))
        .unwrap_or(input);
    if line.is_empty() {
        return Err(CsvError::Eof);
    }
    let bytes = line.as_bytes();
    let mut fields = Vec::new();
    let mut pos = 0;
    'field: loop {
        let rest = line.get(pos..).unwrap_or("");
        if bytes.get(pos) != Some(&b'"') {
            let comma = rest.find(',');
            let text = comma.map_or(rest, |i| rest.get(..i).unwrap_or(""));
            if let Some(j) = text.find('"') {
                return Err(CsvError::BareQuote {
                    column: pos + j + 1,
                });
            }
            fields.push(CsvField {
                text: text.to_owned(),
                span: Span {
                    start: pos,
                    end: pos + text.len(),
                },
            });
            match comma {
                Some(i) => {
                    pos += i + 1;
                    continue 'field;
                }
                None => break 'field,
            }
        }
        let start = pos;
        pos += 1;
        let mut text = String::new();
        loop {
            let rest = line.get(pos..).unwrap_or("");
            let Some(i) = rest.find('"') else {
                return Err(CsvError::Quote { column: pos + 1 });
            };
            text.push_str(rest.get(..i).unwrap_or(""));
            pos += i + 1;
            match bytes.get(pos) {
                Some(b'"') => {
                    text.push('"');
                    pos += 1;
                }
                Some(b',') => {
                    fields.push(CsvField {
                        text,
                        span: Span { start, end: pos },
                    });
                    pos += 1;
                    continue 'field;
                }
                None => {
                    fields.push(CsvField {
                        text,
                        span: Span { start, end: pos },
                    });
                    break 'field;
                }
                Some(_) => return Err(CsvError::Quote { column: pos }),
            }
        }
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Cases from go-csvvalue's csvvalue_test.go that use the default parser.
    #[test]
    fn csv_upstream_table() {
        let ok: &[(&str, &[&str])] = &[
            ("foo,bar,baz", &["foo", "bar", "baz"]),
            ("foo,bar,baz\n", &["foo", "bar", "baz"]),
            ("foo,bar,baz\r\n", &["foo", "bar", "baz"]),
            (" ", &[" "]),
            ("   foo,bar,baz", &["   foo", "bar", "baz"]),
            ("a,\"b,cc ,ddd\",e", &["a", "b,cc ,ddd", "e"]),
            ("\"\"", &[""]),
            (
                r#"type=docker,name=test.docker,"containerimage.config={""Config"":{""Entrypoint"":[""/sbin/init"", ""--log-level=err""], ""StopSignal"":""37""},""os"":""linux"", ""architecture"":""amd64""}""#,
                &[
                    "type=docker",
                    "name=test.docker",
                    r#"containerimage.config={"Config":{"Entrypoint":["/sbin/init", "--log-level=err"], "StopSignal":"37"},"os":"linux", "architecture":"amd64"}"#,
                ],
            ),
            ("a,\"foo\"\"\",c", &["a", "foo\"", "c"]),
            ("a,,b", &["a", "", "b"]),
            ("a,b,", &["a", "b", ""]),
            (",a,b", &["", "a", "b"]),
            ("foo", &["foo"]),
            (",,", &["", "", ""]),
            ("\"a\",b,\"c\"", &["a", "b", "c"]),
            // Own cases: newlines other than one trailing one are text.
            ("a\nb,c", &["a\nb", "c"]),
            ("a\n\n", &["a\n"]),
            ("\"x\ny\",z", &["x\ny", "z"]),
            ("é,\"ü,ß\"", &["é", "ü,ß"]),
            ("a\r", &["a\r"]),
            ("\"a\",", &["a", ""]),
        ];
        for (input, want) in ok {
            let got: Vec<String> = split_csv_record(input)
                .unwrap_or_else(|e| panic!("{input:?}: {e}"))
                .into_iter()
                .map(|f| f.text)
                .collect();
            assert_eq!(got, *want, "{input:?}");
        }
        let bad: &[(&str, CsvError)] = &[
            ("", CsvError::Eof),
            ("\n", CsvError::Eof),
            ("\r\n", CsvError::Eof),
            ("\"", CsvError::Quote { column: 2 }),
            ("\"\"\"", CsvError::Quote { column: 4 }),
            ("foo,aa\"bb,cc", CsvError::BareQuote { column: 7 }),
            ("a\"\"b,c", CsvError::BareQuote { column: 2 }),
            ("a \"word\",\"b\"", CsvError::BareQuote { column: 3 }),
            ("\"a word\",b\"", CsvError::BareQuote { column: 11 }),
            ("\"a \"word\",\"b\"", CsvError::Quote { column: 4 }),
            ("\"abc", CsvError::Quote { column: 2 }),
            ("x,\"ab\"\"c", CsvError::Quote { column: 8 }),
            ("\"é\"x", CsvError::Quote { column: 4 }),
        ];
        for (input, want) in bad {
            assert_eq!(split_csv_record(input), Err(*want), "{input:?}");
        }
    }

    #[test]
    fn csv_spans_cover_raw_fields() {
        let fields = split_csv_record("a=1,\"b=2,3\",,c").unwrap();
        let spans: Vec<(usize, usize)> =
            fields.iter().map(|f| (f.span.start, f.span.end)).collect();
        assert_eq!(spans, [(0, 3), (4, 11), (12, 12), (13, 14)]);
    }
}
