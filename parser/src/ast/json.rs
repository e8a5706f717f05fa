//! The JSON (exec) form of instruction arguments: `["a", "b"]`.
//!
//! BuildKit's `parseJSON` hands the arguments (leading whitespace
//! trimmed) to Go's `json.Unmarshal`, which accepts one JSON value and
//! nothing after it but JSON whitespace (moby/buildkit#5107 replaced the
//! `json.Decoder` that used to stop after the first value). So
//! `RUN ["echo", "hi"]oops` and `ENTRYPOINT []x` are the shell form, text
//! and all; a well-formed array holding anything but strings, alone on the
//! line, is an error; anything else falls back to the shell form (Go checks
//! the whole input's syntax before it decodes, so `["a", 1] x` is the shell
//! form too). This module reproduces Go's decoder on that input: its
//! string escapes (invalid surrogates become U+FFFD), its number grammar,
//! and its nesting limit of 10000, checked without recursion so hostile
//! input cannot overflow the stack.

use nom::{
    IResult, Parser,
    branch::alt,
    bytes::complete::{tag, take_while, take_while1},
    character::complete::{char, one_of},
    combinator::{opt, recognize},
    sequence::preceded,
};

/// Go's `encoding/json` maximum nesting depth.
const MAX_DEPTH: usize = 10_000;

/// The outcome of trying to read `rest` as a JSON array of strings.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum JsonArgs {
    /// A JSON array of strings: each element with its byte range in the
    /// input (the quoted token).
    Strings(Vec<(String, usize, usize)>),
    /// A well-formed JSON array that holds a non-string.
    NotStrings,
    /// Not a JSON array: use the shell form.
    NotJson,
}

/// Reads `input` (after leading whitespace) as one JSON array.
pub(crate) fn parse_json_args(input: &str) -> JsonArgs {
    let start = input.len() - input.trim_start().len();
    let Some(body) = input.get(start..) else {
        return JsonArgs::NotJson;
    };
    if !body.starts_with('[') {
        return JsonArgs::NotJson;
    }
    match scan_array(body) {
        // `json.Unmarshal`: only JSON whitespace may follow the value.
        Some((_, rest)) if !skip_ws(rest).is_empty() => JsonArgs::NotJson,
        Some((JsonArgs::Strings(items), _)) => JsonArgs::Strings(
            items
                .into_iter()
                .map(|(s, a, b)| (s, a + start, b + start))
                .collect(),
        ),
        Some((other, _)) => other,
        None => JsonArgs::NotJson,
    }
}

/// Scans the array at the start of `input` and returns it with what
/// follows it; `None` when it is not valid JSON.
fn scan_array(input: &str) -> Option<(JsonArgs, &str)> {
    let mut rest = input.get(1..)?;
    let mut items = Vec::new();
    let mut all_strings = true;
    rest = skip_ws(rest);
    if let Some(after) = rest.strip_prefix(']') {
        return Some((JsonArgs::Strings(items), after));
    }
    loop {
        rest = skip_ws(rest);
        let offset = input.len() - rest.len();
        if rest.starts_with('"') {
            let (after, value) = string_literal(rest).ok()?;
            let end = input.len() - after.len();
            items.push((value, offset, end));
            rest = after;
        } else {
            rest = skip_value(rest)?;
            all_strings = false;
        }
        rest = skip_ws(rest);
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if let Some(after) = rest.strip_prefix(']') {
            rest = after;
            break;
        } else {
            return None;
        }
    }
    let args = if all_strings {
        JsonArgs::Strings(items)
    } else {
        JsonArgs::NotStrings
    };
    Some((args, rest))
}

/// JSON insignificant whitespace (space, tab, LF, CR only).
fn skip_ws(input: &str) -> &str {
    input.trim_start_matches([' ', '\t', '\n', '\r'])
}

/// Skips one complete JSON value that is not a string at top level,
/// iteratively: containers are tracked on an explicit stack.
fn skip_value(input: &str) -> Option<&str> {
    // Depth counts the array we are inside of already.
    let mut stack: Vec<char> = Vec::new();
    let mut rest = input;
    loop {
        rest = skip_ws(rest);
        // a value
        let first = rest.chars().next()?;
        match first {
            '[' | '{' => {
                if stack.len() + 2 > MAX_DEPTH {
                    return None;
                }
                stack.push(if first == '[' { ']' } else { '}' });
                rest = skip_ws(rest.get(1..)?);
                let close = *stack.last()?;
                if let Some(after) = rest.strip_prefix(close) {
                    stack.pop();
                    rest = after;
                } else {
                    if close == '}' {
                        rest = object_key(rest)?;
                    }
                    continue;
                }
            }
            '"' => rest = string_literal(rest).ok()?.0,
            _ => rest = scalar(rest).ok()?.0,
        }
        // after a value: close containers or move to the next element
        loop {
            let Some(&close) = stack.last() else {
                return Some(rest);
            };
            rest = skip_ws(rest);
            if let Some(after) = rest.strip_prefix(',') {
                rest = after;
                if close == '}' {
                    rest = object_key(skip_ws(rest))?;
                }
                break;
            } else if let Some(after) = rest.strip_prefix(close) {
                stack.pop();
                rest = after;
            } else {
                return None;
            }
        }
    }
}

/// `"key" :` inside an object.
fn object_key(input: &str) -> Option<&str> {
    let (rest, _) = string_literal(skip_ws(input)).ok()?;
    skip_ws(rest).strip_prefix(':')
}

/// A number or `true` / `false` / `null`, as Go's scanner accepts them.
fn scalar(input: &str) -> IResult<&str, &str> {
    let digits = || take_while1(|c: char| c.is_ascii_digit());
    let int = alt((tag("0"), recognize((one_of("123456789"), opt(digits())))));
    let number = recognize((
        opt(char('-')),
        int,
        opt(preceded(char('.'), digits())),
        opt((one_of("eE"), opt(one_of("+-")), digits())),
    ));
    alt((tag("true"), tag("false"), tag("null"), number)).parse(input)
}

/// A JSON string literal, decoded as Go decodes it.
fn string_literal(input: &str) -> IResult<&str, String> {
    let (mut rest, _) = char('"').parse(input)?;
    let mut out = String::new();
    loop {
        let (after, plain) = take_while(|c: char| c != '"' && c != '\\' && c >= ' ').parse(rest)?;
        out.push_str(plain);
        rest = after;
        match rest.chars().next() {
            Some('"') => return Ok((rest.get(1..).unwrap_or(""), out)),
            Some('\\') => {
                let (after, c) = escape(rest)?;
                out.push(c);
                rest = after;
            }
            _ => {
                // a control character or the end of input
                return Err(nom::Err::Error(nom::error::Error::new(
                    rest,
                    nom::error::ErrorKind::Char,
                )));
            }
        }
    }
}

/// One backslash escape, `\uXXXX` surrogate pairs included.
fn escape(input: &str) -> IResult<&str, char> {
    let (rest, _) = char('\\').parse(input)?;
    let (rest, c) = one_of("\"\\/bfnrtu").parse(rest)?;
    let simple = match c {
        'b' => '\u{8}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'u' => return unicode_escape(rest),
        other => other,
    };
    Ok((rest, simple))
}

/// The part of `\uXXXX` after `\u`, combining a following low surrogate.
fn unicode_escape(input: &str) -> IResult<&str, char> {
    let (rest, high) = hex4(input)?;
    if !(0xD800..0xE000).contains(&high) {
        return Ok((rest, char::from_u32(high).unwrap_or('\u{fffd}')));
    }
    // Go: a high surrogate followed by `\u` + low surrogate is one char;
    // anything else leaves U+FFFD for the lone surrogate.
    if (0xD800..0xDC00).contains(&high)
        && let Ok((after, low)) = preceded(tag("\\u"), hex4).parse(rest)
        && (0xDC00..0xE000).contains(&low)
    {
        let c = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
        return Ok((after, char::from_u32(c).unwrap_or('\u{fffd}')));
    }
    Ok((rest, '\u{fffd}'))
}

fn hex4(input: &str) -> IResult<&str, u32> {
    let (rest, digits) = take_while_m_n_hex(input)?;
    let value = u32::from_str_radix(digits, 16).unwrap_or(0xfffd);
    Ok((rest, value))
}

fn take_while_m_n_hex(input: &str) -> IResult<&str, &str> {
    nom::bytes::complete::take_while_m_n(4, 4, |c: char| c.is_ascii_hexdigit()).parse(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(input: &str) -> Vec<String> {
        match parse_json_args(input) {
            JsonArgs::Strings(items) => items.into_iter().map(|(s, _, _)| s).collect(),
            other => panic!("{input:?} gave {other:?}"),
        }
    }

    #[test]
    fn decodes_arrays_of_strings() {
        assert_eq!(strings("[]"), Vec::<String>::new());
        assert_eq!(strings("[\"\"]"), vec![""]);
        assert_eq!(strings(" [ \"a\" ,\t\"b\" ] "), vec!["a", "b"]);
        assert_eq!(
            strings(r#"["\" \\ \/ \b \f \n \r \t \u0000 \u00e9 \ud83d\ude00"]"#),
            vec!["\" \\ / \u{8} \u{c} \n \r \t \0 é 😀"]
        );
        // lone surrogates become U+FFFD, as in Go
        assert_eq!(strings(r#"["\ud800x"]"#), vec!["\u{fffd}x"]);
        assert_eq!(strings(r#"["\udc00"]"#), vec!["\u{fffd}"]);
        // JSON whitespace may follow the array
        assert_eq!(strings("[\"a\"] \t\r\n"), vec!["a"]);
    }

    #[test]
    fn records_token_ranges() {
        let JsonArgs::Strings(items) = parse_json_args(r#"  ["ab", "c"]"#) else {
            panic!()
        };
        assert_eq!(items[0], ("ab".into(), 3, 7));
        assert_eq!(items[1], ("c".into(), 9, 12));
    }

    #[test]
    fn non_strings_in_valid_arrays() {
        for input in [
            r#"["a", 1]"#,
            r#"[ "echo", [ "nested json" ] ]"#,
            r"[null]",
            r"[true, false]",
            r#"[{"a": [1, {"b": -1.5e+3}]}]"#,
            r"[{}]",
            r"[[]]",
        ] {
            assert_eq!(parse_json_args(input), JsonArgs::NotStrings, "{input}");
        }
    }

    #[test]
    fn invalid_json_falls_back() {
        for input in [
            "",
            "echo",
            "['a']",
            r#"["a""#,
            r#"["a",]"#,
            r#"[,"a"]"#,
            r#"["a" "b"]"#,
            "[\"a\nb\"]",
            r#"["\x"]"#,
            r#"["\u12"]"#,
            r"[01]",
            r"[1.]",
            r"[-]",
            r#"[{"a"}]"#,
            r#"[{"a":}]"#,
            r"[{1:2}]",
            r"[tru]",
            "[",
            r#"["a", 1"#,
            // json.Unmarshal: nothing but whitespace after the value
            r#"["echo", "hello"]this is invalid"#,
            "[]random string",
            r#"["a"] trailing"#,
            r#"["a"] ["b"]"#,
            "[]]",
            // the syntax of the whole input is checked before decoding
            r#"["a", 1] x"#,
            "[[]]x",
            // Go's isSpace is only space, tab, CR and LF
            "[\"a\"]\u{a0}",
            "[\"a\"]\u{b}",
        ] {
            assert_eq!(parse_json_args(input), JsonArgs::NotJson, "{input:?}");
        }
    }

    #[test]
    fn deep_nesting_is_bounded_without_recursion() {
        let deep = format!("[{}{}]", "[".repeat(200_000), "]".repeat(200_000));
        assert_eq!(parse_json_args(&deep), JsonArgs::NotJson);
        let ok = format!("[{}{}]", "[".repeat(9_000), "]".repeat(9_000));
        assert_eq!(parse_json_args(&ok), JsonArgs::NotStrings);
    }
}
