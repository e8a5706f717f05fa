//! Parser directives: `# syntax=`, `# escape=`, `# check=` at the top of
//! the file, until the first line that is not one.

use nom::{
    IResult, Parser,
    bytes::complete::{take_while, take_while1},
    character::complete::{char, satisfy},
    combinator::recognize,
};
use serde::Serialize;

/// A parser directive found at the top of a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directive {
    /// The directive name, lowercase.
    pub name: String,
    /// Its value, as written.
    pub value: String,
    /// The 1-based line it is on.
    pub line: usize,
}

/// Go regexp `\s`: `[\t\n\f\r ]`.
fn is_regexp_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{c}' | '\r' | ' ')
}

/// `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` on the text after `#`.
fn directive(input: &str) -> IResult<&str, (&str, &str)> {
    let (rest, name) = recognize((
        satisfy(|c: char| c.is_ascii_alphabetic()),
        take_while(|c: char| c.is_ascii_alphanumeric()),
    ))
    .parse(input)?;
    let (rest, _) = (take_while(is_regexp_space), char('=')).parse(rest)?;
    // `\s*(.+?)\s*$`: the value is what is left once surrounding blanks are
    // dropped, but never empty: a value of only blanks keeps its last one.
    let (_, all) = take_while1(|_| true).parse(rest)?;
    let value = all.trim_matches(is_regexp_space);
    let value = if value.is_empty() {
        all.get(all.len() - all.chars().next_back().map_or(0, char::len_utf8)..)
            .unwrap_or("")
    } else {
        value
    };
    Ok(("", (name, value)))
}

/// Tracks which directives were seen and when the directive section ends.
#[derive(Debug, Default)]
pub(super) struct DirectiveParser {
    seen: Vec<String>,
    done: bool,
}

impl DirectiveParser {
    /// Looks at one line (newline and leading blanks already removed).
    /// `Ok(Some)` for a directive, `Ok(None)` for anything else, `Err(name)`
    /// for a directive given twice.
    pub(super) fn parse_line(
        &mut self,
        line: &str,
        number: usize,
    ) -> Result<Option<Directive>, String> {
        if self.done {
            return Ok(None);
        }
        let Some(body) = line.strip_prefix('#') else {
            self.done = true;
            return Ok(None);
        };
        let body = body.trim_start_matches(char::is_whitespace);
        let Ok((_, (name, value))) = directive(body) else {
            self.done = true;
            return Ok(None);
        };
        let name = name.to_ascii_lowercase();
        if !matches!(name.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(None);
        }
        if self.seen.contains(&name) {
            return Err(name);
        }
        self.seen.push(name.clone());
        Ok(Some(Directive {
            name,
            value: value.to_owned(),
            line: number,
        }))
    }
}

/// The options of `# check=skip=A,B;error=true`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckOptions {
    /// Check names to skip.
    pub skip: Vec<String>,
    /// `skip=all`.
    pub skip_all: bool,
    /// `error=true`: warnings fail the build.
    pub error: bool,
}

impl CheckOptions {
    /// Parses the directive value as BuildKit's `ParseLintOptions` does.
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut options = CheckOptions::default();
        let value = value.trim();
        if value.is_empty() {
            return Ok(options);
        }
        for part in value.splitn(2, ';') {
            let Some((key, v)) = part.split_once('=') else {
                return Err(format!("invalid check option {part:?}"));
            };
            match key.trim() {
                "skip" => {
                    let v = v.trim();
                    if v == "all" {
                        options.skip_all = true;
                    } else {
                        options.skip = v.split(',').map(|s| s.trim().to_owned()).collect();
                    }
                }
                "error" => {
                    options.error = crate::golang::parse_bool(v.trim()).ok_or_else(|| {
                        format!(
                            "failed to parse check option {part:?}: strconv.ParseBool: parsing {:?}: invalid syntax",
                            v.trim()
                        )
                    })?;
                }
                other => return Err(format!("invalid check option {other:?}")),
            }
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Option<(String, String)> {
        DirectiveParser::default()
            .parse_line(line, 1)
            .unwrap()
            .map(|d| (d.name, d.value))
    }

    #[test]
    fn recognises_directives_as_buildkit_does() {
        let d = |n: &str, v: &str| Some((n.to_owned(), v.to_owned()));
        assert_eq!(one("#escape=`"), d("escape", "`"));
        assert_eq!(one("# escape =\\"), d("escape", "\\"));
        assert_eq!(one("#\tdIrEcTiVe=value"), None);
        assert_eq!(
            one("#\t  SyNtAx=docker/dockerfile:1  "),
            d("syntax", "docker/dockerfile:1")
        );
        assert_eq!(
            one("# check=skip=all;error=true"),
            d("check", "skip=all;error=true")
        );
        assert_eq!(one("# escape=   "), d("escape", " "));
        assert_eq!(one("# escape="), None);
        assert_eq!(one("# unknown=x"), None);
        assert_eq!(one("FROM x"), None);
        assert_eq!(one("# syntax"), None);
    }

    #[test]
    fn directives_end_at_first_other_line_and_may_not_repeat() {
        let mut p = DirectiveParser::default();
        assert!(p.parse_line("# syntax=a", 1).unwrap().is_some());
        assert_eq!(p.parse_line("# Syntax=b", 2), Err("syntax".to_owned()));
        let mut p = DirectiveParser::default();
        assert!(p.parse_line("# a comment", 1).unwrap().is_none());
        assert!(p.parse_line("# escape=`", 2).unwrap().is_none());
        let mut p = DirectiveParser::default();
        assert!(p.parse_line("", 1).unwrap().is_none());
        assert!(p.parse_line("# escape=`", 2).unwrap().is_none());
    }

    #[test]
    fn check_options() {
        assert_eq!(
            CheckOptions::parse("skip=JSONArgsRecommended, StageNameCasing;error=true"),
            Ok(CheckOptions {
                skip: vec!["JSONArgsRecommended".into(), "StageNameCasing".into()],
                skip_all: false,
                error: true
            })
        );
        assert!(CheckOptions::parse("skip=all").unwrap().skip_all);
        assert_eq!(
            CheckOptions::parse("error=maybe"),
            Err("failed to parse check option \"error=maybe\": strconv.ParseBool: parsing \"maybe\": invalid syntax".into())
        );
        assert_eq!(
            CheckOptions::parse("bogus"),
            Err("invalid check option \"bogus\"".into())
        );
        assert_eq!(
            CheckOptions::parse("foo=1"),
            Err("invalid check option \"foo\"".into())
        );
    }
}
