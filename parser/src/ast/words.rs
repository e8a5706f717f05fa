//! Splitting a logical line into instruction name, `--flags` and argument
//! words, exactly as BuildKit's line parsers do. Every word carries its
//! byte range in the line so errors can point at it.

use nom::{
    IResult, Parser, bytes::complete::take_while1, character::complete::satisfy,
    combinator::recognize, multi::many0_count,
};

/// A word of a line with its byte range `start..end` in that line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawWord {
    pub text: String,
    pub start: usize,
    pub end: usize,
}

/// BuildKit's `[\t\v\f\r ]+` separator (note: not `\n`, not Unicode).
fn is_separator(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// Go's `unicode.IsSpace`, which is Rust's `char::is_whitespace` set.
fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// The instruction name, its flags and the argument text of `line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SplitLine<'a> {
    /// The instruction name as written.
    pub keyword: RawWord,
    /// `--name[=value]` words, quotes processed.
    pub flags: Vec<RawWord>,
    /// The rest of the line, trimmed.
    pub args: &'a str,
    /// Byte offset of `args` in the line.
    pub args_start: usize,
}

/// A run of characters up to the first BuildKit separator.
fn keyword(input: &str) -> IResult<&str, &str> {
    take_while1(|c: char| !is_separator(c)).parse(input)
}

/// A run of BuildKit separators.
fn separators(input: &str) -> IResult<&str, &str> {
    recognize(many0_count(satisfy(is_separator))).parse(input)
}

/// BuildKit's `splitCommand`: trim, take the first word as the instruction
/// and extract leading `--flags` from the rest.
pub(crate) fn split_command(line: &str) -> SplitLine<'_> {
    let trimmed_start = line.len() - line.trim_start_matches(is_space).len();
    let trimmed = line.trim_matches(is_space);
    let (rest, name) = keyword(trimmed).unwrap_or((trimmed, ""));
    let keyword = RawWord {
        text: name.to_owned(),
        start: trimmed_start,
        end: trimmed_start + name.len(),
    };
    let (after_sep, _) = separators(rest).unwrap_or((rest, ""));
    if after_sep.len() == rest.len() {
        // no separator: the line is the instruction alone
        return SplitLine {
            keyword,
            flags: Vec::new(),
            args: "",
            args_start: trimmed_start + trimmed.len(),
        };
    }
    let rest_start = trimmed_start + (trimmed.len() - after_sep.len());
    let (args_offset, flags) = extract_builder_flags(after_sep);
    let raw_args = after_sep.get(args_offset..).unwrap_or("");
    let args = raw_args.trim_matches(is_space);
    let lead = raw_args.len() - raw_args.trim_start_matches(is_space).len();
    SplitLine {
        keyword,
        flags: flags
            .into_iter()
            .map(|w| RawWord {
                start: w.start + rest_start,
                end: w.end + rest_start,
                ..w
            })
            .collect(),
        args,
        args_start: rest_start + args_offset + lead,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Spaces,
    Word,
    Quote(char),
}

/// BuildKit's `extractBuilderFlags`: leading words that start with `--`
/// (quotes and backslashes processed), up to the first other word or a
/// bare `--`. Returns the byte offset where the arguments start.
///
/// BuildKit walks the line byte by byte, which garbles non-ASCII flag
/// values; kiln walks characters and keeps them intact.
pub(crate) fn extract_builder_flags(line: &str) -> (usize, Vec<RawWord>) {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut word_start = 0;
    let mut blank_ok = false;
    let mut i = 0;
    loop {
        let current = chars.get(i).copied();
        let pos = current.map_or(line.len(), |(p, _)| p);
        if phase == Phase::Spaces {
            let Some((_, c)) = current else { break };
            if is_space(c) {
                i += 1;
                continue;
            }
            let next_is_dash = chars.get(i + 1).is_some_and(|&(_, n)| n == '-');
            if c != '-' || !next_is_dash {
                return (pos, words);
            }
            phase = Phase::Word;
            word_start = pos;
        }
        let Some((_, c)) = current else {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(RawWord {
                    text: word,
                    start: word_start,
                    end: line.len(),
                });
            }
            return (line.len(), words);
        };
        match phase {
            Phase::Word => {
                if is_space(c) {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (pos, words);
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(RawWord {
                            text: std::mem::take(&mut word),
                            start: word_start,
                            end: pos,
                        });
                    }
                    word.clear();
                    blank_ok = false;
                } else if c == '\'' || c == '"' {
                    phase = Phase::Quote(c);
                    blank_ok = true;
                } else if c == '\\' {
                    if let Some(&(_, next)) = chars.get(i + 1) {
                        word.push(next);
                        i += 1;
                    }
                } else {
                    word.push(c);
                }
            }
            Phase::Quote(quote) => {
                if c == quote {
                    phase = Phase::Word;
                } else if c == '\\' {
                    if let Some(&(_, next)) = chars.get(i + 1) {
                        word.push(next);
                        i += 1;
                    } else {
                        phase = Phase::Word;
                    }
                } else {
                    word.push(c);
                }
            }
            Phase::Spaces => {}
        }
        i += 1;
    }
    (line.len(), words)
}

/// BuildKit's `parseWords`: words separated by Unicode whitespace, with
/// quotes and escapes kept in the word (they are processed at expansion).
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<RawWord> {
    let chars: Vec<(usize, char)> = rest.char_indices().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut word_start = 0;
    let mut blank_ok = false;
    let mut i = 0;
    loop {
        let current = chars.get(i).copied();
        let pos = current.map_or(rest.len(), |(p, _)| p);
        if phase == Phase::Spaces {
            let Some((_, c)) = current else { break };
            if is_space(c) {
                i += 1;
                continue;
            }
            phase = Phase::Word;
            word_start = pos;
        }
        let Some((_, c)) = current else {
            if blank_ok || !word.is_empty() {
                words.push(RawWord {
                    text: word,
                    start: word_start,
                    end: rest.len(),
                });
            }
            break;
        };
        let at_end = i + 1 == chars.len();
        match phase {
            Phase::Word => {
                if is_space(c) {
                    phase = Phase::Spaces;
                    if blank_ok || !word.is_empty() {
                        words.push(RawWord {
                            text: std::mem::take(&mut word),
                            start: word_start,
                            end: pos,
                        });
                    }
                    word.clear();
                    blank_ok = false;
                    i += 1;
                    continue;
                }
                if c == '\'' || c == '"' {
                    phase = Phase::Quote(c);
                    blank_ok = true;
                }
                if c == escape {
                    if at_end {
                        // an escape at the very end is dropped
                        i += 1;
                        continue;
                    }
                    word.push(c);
                    i += 1;
                    if let Some(&(_, next)) = chars.get(i) {
                        word.push(next);
                    }
                } else {
                    word.push(c);
                }
            }
            Phase::Quote(quote) => {
                if c == quote {
                    phase = Phase::Word;
                }
                if c == escape && quote != '\'' {
                    if at_end {
                        phase = Phase::Word;
                        i += 1;
                        continue;
                    }
                    word.push(c);
                    i += 1;
                    if let Some(&(_, next)) = chars.get(i) {
                        word.push(next);
                    }
                } else {
                    word.push(c);
                }
            }
            Phase::Spaces => {}
        }
        i += 1;
    }
    words
}

/// BuildKit's `reWhitespace.Split(rest, -1)` with the pieces' ranges.
pub(crate) fn split_whitespace(rest: &str) -> Vec<RawWord> {
    let mut words = Vec::new();
    let mut start = 0;
    let mut in_sep = false;
    for (pos, c) in rest.char_indices() {
        if is_separator(c) {
            if !in_sep {
                words.push(RawWord {
                    text: rest.get(start..pos).unwrap_or("").to_owned(),
                    start,
                    end: pos,
                });
                in_sep = true;
            }
        } else if in_sep {
            in_sep = false;
            start = pos;
        }
    }
    if !in_sep || rest.is_empty() {
        words.push(RawWord {
            text: rest.get(start..).unwrap_or("").to_owned(),
            start,
            end: rest.len(),
        });
    } else {
        words.push(RawWord {
            text: String::new(),
            start: rest.len(),
            end: rest.len(),
        });
    }
    words
}

/// BuildKit's `reWhitespace.Split(rest, 2)`: the first word and the rest.
pub(crate) fn split_first_whitespace(rest: &str) -> Option<(RawWord, RawWord)> {
    let first_end = rest.find(is_separator)?;
    let after = rest.get(first_end..)?;
    let value_start = first_end + (after.len() - after.trim_start_matches(is_separator).len());
    Some((
        RawWord {
            text: rest.get(..first_end)?.to_owned(),
            start: 0,
            end: first_end,
        },
        RawWord {
            text: rest.get(value_start..)?.to_owned(),
            start: value_start,
            end: rest.len(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(words: &[RawWord]) -> Vec<&str> {
        words.iter().map(|w| w.text.as_str()).collect()
    }

    #[test]
    fn splits_instruction_flags_and_args() {
        let s = split_command("  COPY --from=a  --chown=\"x y\" src dst  ");
        assert_eq!(s.keyword.text, "COPY");
        assert_eq!((s.keyword.start, s.keyword.end), (2, 6));
        assert_eq!(texts(&s.flags), vec!["--from=a", "--chown=x y"]);
        assert_eq!((s.flags[1].start, s.flags[1].end), (17, 30));
        assert_eq!(s.args, "src dst");
        assert_eq!(s.args_start, 31);

        let s = split_command("RUN");
        assert_eq!((s.keyword.text.as_str(), s.args), ("RUN", ""));
        let s = split_command("COPY --doit=true -- foo /tmp/");
        assert_eq!(texts(&s.flags), vec!["--doit=true"]);
        assert_eq!(s.args, "foo /tmp/");
        let s = split_command("CMD --doit -- [ ]");
        assert_eq!((texts(&s.flags), s.args), (vec!["--doit"], "[ ]"));
        let s = split_command("COPY -- foo /tmp/");
        assert!(s.flags.is_empty());
        assert_eq!(s.args, "foo /tmp/");
        // a single dash is not a flag
        let s = split_command("RUN -x --y");
        assert!(s.flags.is_empty());
        assert_eq!(s.args, "-x --y");
        // flags only
        let s = split_command("HEALTHCHECK --interval=5s");
        assert_eq!((texts(&s.flags), s.args), (vec!["--interval=5s"], ""));
        // non-ASCII flag values survive
        let s = split_command("COPY --chown=é:ü a b");
        assert_eq!(texts(&s.flags), vec!["--chown=é:ü"]);
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        assert_eq!(
            texts(&parse_words(r#"a="b c" d\ e 'f g'"#, '\\')),
            vec![r#"a="b c""#, r"d\ e", "'f g'"]
        );
        assert_eq!(texts(&parse_words("x\\", '\\')), vec!["x"]);
        assert_eq!(texts(&parse_words("\"\"", '\\')), vec!["\"\""]);
        assert_eq!(texts(&parse_words("a`\"b", '`')), vec!["a`\"b"]);
        assert_eq!(texts(&parse_words("  ", '\\')), Vec::<&str>::new());
        let words = parse_words("ab  cd", '\\');
        assert_eq!((words[1].start, words[1].end), (4, 6));
    }

    #[test]
    fn whitespace_split_matches_go_regexp_split() {
        assert_eq!(texts(&split_whitespace("a b\t\tc")), vec!["a", "b", "c"]);
        assert_eq!(texts(&split_whitespace("a")), vec!["a"]);
        let (k, v) = split_first_whitespace("name  some value").unwrap();
        assert_eq!((k.text.as_str(), v.text.as_str()), ("name", "some value"));
        assert_eq!(v.start, 6);
        assert!(split_first_whitespace("name").is_none());
    }
}
