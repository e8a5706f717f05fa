//! Reading a regular expression the way Go's `regexp/syntax` does (with the
//! `Perl` flags `regexp.Compile` uses) and re-emitting it for the `regex` crate.
//!
//! patternmatcher builds a Go regexp from a pattern by splicing most pattern
//! characters in verbatim, so Go's syntax decides what a pattern means: `[`
//! opens a Go bracket expression (where `[` is literal, `[:alpha:]` is a POSIX
//! class and `&&` is nothing special), `\d` is an ASCII digit, `\Q...\E` quotes,
//! and so on. Passing that text straight to the `regex` crate would change the
//! meaning of several of these, so this module parses it with Go's rules and
//! emits an unambiguous equivalent: every literal and class member is written
//! as an explicit `\x{..}` escape.

use std::fmt::Write as _;

use super::golang::decode_rune;

/// Largest Unicode scalar value, Go's `unicode.MaxRune`.
const MAX_RUNE: u32 = 0x10_FFFF;

/// A class that never matches (used for values no UTF-8 text can contain).
const NEVER: &str = r"[^\x{0}-\x{10FFFF}]";

/// Go's cap on `{n,m}` counts.
const MAX_REPEAT: u32 = 1000;

/// What the previous item was, for Go's repetition-operator checks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Last {
    /// Start of the expression, of a group, or just after `|`.
    Nothing,
    /// Something a repetition operator may apply to.
    Atom,
    /// A repetition operator (Go rejects stacking another one).
    Repeat,
}

/// Translate a Go regular expression into an equivalent `regex`-crate
/// expression, or `None` where Go's parser would reject it.
pub(super) fn translate(go: &str) -> Option<String> {
    let mut out = String::with_capacity(go.len().saturating_mul(2));
    let mut t = go;
    let mut depth = 0usize;
    let mut last = Last::Nothing;
    while let Some(c) = t.chars().next() {
        let after = &t[c.len_utf8()..];
        match c {
            '(' => {
                // `(?` (flags, named groups) cannot come out of the pattern
                // compiler: a pattern's own `(` is always escaped.
                if after.starts_with('?') {
                    return None;
                }
                out.push_str("(?:");
                depth += 1;
                last = Last::Nothing;
                t = after;
            }
            '|' => {
                out.push('|');
                last = Last::Nothing;
                t = after;
            }
            ')' => {
                depth = depth.checked_sub(1)?;
                out.push(')');
                last = Last::Atom;
                t = after;
            }
            '^' => {
                out.push_str(r"\A");
                last = Last::Atom;
                t = after;
            }
            '$' => {
                out.push_str(r"\z");
                last = Last::Atom;
                t = after;
            }
            '.' => {
                out.push_str(r"[^\n]");
                last = Last::Atom;
                t = after;
            }
            '[' => {
                let (class, rest) = parse_class(t)?;
                out.push_str(&class);
                last = Last::Atom;
                t = rest;
            }
            '*' | '+' | '?' => {
                t = push_repeat(&mut out, &mut last, &c.to_string(), after)?;
            }
            '{' => {
                if let Some((min, max, rest)) = parse_repeat(t) {
                    if min > MAX_REPEAT || max.is_some_and(|m| m > MAX_REPEAT || min > m) {
                        return None;
                    }
                    let op = match max {
                        Some(m) if m == min => format!("{{{min}}}"),
                        Some(m) => format!("{{{min},{m}}}"),
                        None => format!("{{{min},}}"),
                    };
                    t = push_repeat(&mut out, &mut last, &op, rest)?;
                } else {
                    push_literal(&mut out, u32::from('{'));
                    last = Last::Atom;
                    t = after;
                }
            }
            '\\' => {
                t = translate_escape(t, &mut out, &mut last)?;
            }
            _ => {
                push_literal(&mut out, u32::from(c));
                last = Last::Atom;
                t = after;
            }
        }
    }
    (depth == 0).then_some(out)
}

/// Emit repetition operator `op` (with Go's optional lazy `?` at the start
/// of `after`), checking it has something to repeat; returns the rest.
fn push_repeat<'a>(out: &mut String, last: &mut Last, op: &str, after: &'a str) -> Option<&'a str> {
    let (lazy, rest) = match after.strip_prefix('?') {
        Some(rest) => (true, rest),
        None => (false, after),
    };
    // Go rejects both a missing operand and a stacked operator (`a**`).
    if *last != Last::Atom {
        return None;
    }
    out.push_str(op);
    if lazy {
        out.push('?');
    }
    *last = Last::Repeat;
    Some(rest)
}

/// Handle a backslash sequence outside a class; returns the rest of the input.
fn translate_escape<'a>(t: &'a str, out: &mut String, last: &mut Last) -> Option<&'a str> {
    let mut rest2 = t.get(2..);
    match t.as_bytes().get(1) {
        Some(b'A') => out.push_str(r"\A"),
        Some(b'z') => out.push_str(r"\z"),
        // Go's word boundaries are ASCII-only.
        Some(b'b') => out.push_str(r"(?-u:\b)"),
        Some(b'B') => out.push_str(r"(?-u:\B)"),
        Some(b'C') => return None,
        Some(b'Q') => {
            let body = t.get(2..).unwrap_or("");
            let (lit, rest) = body.split_once(r"\E").unwrap_or((body, ""));
            for ch in lit.chars() {
                push_literal(out, u32::from(ch));
            }
            // Go resets its stacked-repeat check here even for an empty quote.
            if !lit.is_empty() || *last == Last::Repeat {
                *last = Last::Atom;
            }
            return Some(rest);
        }
        Some(b'p' | b'P') => {
            let (class, rest) = parse_unicode_class(t)?;
            out.push_str(&class);
            rest2 = Some(rest);
        }
        _ => {
            if let Some((group, rest)) = perl_class(t) {
                out.push_str(&group);
                rest2 = Some(rest);
            } else {
                let (r, rest) = parse_escape(t)?;
                push_literal(out, r);
                rest2 = Some(rest);
            }
        }
    }
    *last = Last::Atom;
    rest2
}

/// Go's `parseRepeat`: `{n}`, `{n,}` or `{n,m}`; `None` if `t` is not of that
/// form (then `{` is a literal). Overlarge numbers come back as `u32::MAX`.
fn parse_repeat(t: &str) -> Option<(u32, Option<u32>, &str)> {
    let s = t.strip_prefix('{')?;
    let (min, s) = parse_int(s)?;
    let (max, s) = if let Some(s) = s.strip_prefix(',') {
        if s.starts_with('}') {
            (None, s)
        } else {
            let (max, s) = parse_int(s)?;
            (Some(max), s)
        }
    } else {
        (Some(min), s)
    };
    let rest = s.strip_prefix('}')?;
    Some((min, max, rest))
}

/// Go's `parseInt` for repeat counts: no leading zeros.
fn parse_int(s: &str) -> Option<(u32, &str)> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || (digits >= 2 && s.starts_with('0')) {
        return None;
    }
    let (num, rest) = s.split_at(digits);
    Some((num.parse().unwrap_or(u32::MAX), rest))
}

/// Go's `parseEscape`: a single-character escape; `t` starts with `\`.
fn parse_escape(input: &str) -> Option<(u32, &str)> {
    let body = input.get(1..)?;
    let c = body.chars().next()?;
    let mut rest = &body[c.len_utf8()..];
    let octal_digit = |s: &str| s.bytes().next().filter(|b| (b'0'..=b'7').contains(b));
    match c {
        '1'..='7' | '0' => {
            // A lone non-zero digit would be a backreference, which Go lacks.
            if c != '0' && octal_digit(rest).is_none() {
                return None;
            }
            let mut r = u32::from(c) - u32::from('0');
            for _ in 1..3 {
                let Some(d) = octal_digit(rest) else { break };
                r = r * 8 + u32::from(d - b'0');
                rest = &rest[1..];
            }
            Some((r, rest))
        }
        'x' => {
            let c2 = rest.chars().next()?;
            rest = &rest[c2.len_utf8()..];
            if c2 == '{' {
                let mut r: u32 = 0;
                let mut nhex = 0;
                loop {
                    let c3 = rest.chars().next()?;
                    rest = &rest[c3.len_utf8()..];
                    if c3 == '}' {
                        break;
                    }
                    r = r * 16 + c3.to_digit(16)?;
                    if r > MAX_RUNE {
                        return None;
                    }
                    nhex += 1;
                }
                return (nhex > 0).then_some((r, rest));
            }
            let high = c2.to_digit(16)?;
            // Go decodes the next rune even at the end of input (as RuneError).
            let (c3, width) = decode_rune(rest.as_bytes());
            let low = char::from_u32(c3).and_then(|d| d.to_digit(16))?;
            Some((high * 16 + low, rest.get(width..)?))
        }
        'a' => Some((0x07, rest)),
        'f' => Some((0x0C, rest)),
        'n' => Some((0x0A, rest)),
        'r' => Some((0x0D, rest)),
        't' => Some((0x09, rest)),
        'v' => Some((0x0B, rest)),
        // Escaped ASCII punctuation (anything not alphanumeric) is itself.
        _ if c.is_ascii() && !c.is_ascii_alphanumeric() => Some((u32::from(c), rest)),
        _ => None,
    }
}

/// Go's Perl classes `\d \s \w` (ASCII) and their negations; `t` starts with `\`.
fn perl_class(t: &str) -> Option<(String, &str)> {
    if !t.starts_with('\\') {
        return None;
    }
    let (ranges, negated): (&[(u32, u32)], bool) = match t.as_bytes().get(1)? {
        b'd' => (DIGIT, false),
        b'D' => (DIGIT, true),
        b's' => (PERL_SPACE, false),
        b'S' => (PERL_SPACE, true),
        b'w' => (WORD, false),
        b'W' => (WORD, true),
        _ => return None,
    };
    Some((ranges_class(ranges, negated), t.get(2..)?))
}

const DIGIT: &[(u32, u32)] = &[(0x30, 0x39)];
const PERL_SPACE: &[(u32, u32)] = &[(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)];
const WORD: &[(u32, u32)] = &[(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)];

/// Go's POSIX classes (`[:alpha:]` etc.), all ASCII.
fn posix_class(name: &str) -> Option<(&'static [(u32, u32)], bool)> {
    let (negated, bare) = match name.strip_prefix("[:^") {
        Some(rest) => (true, rest),
        None => (false, name.strip_prefix("[:")?),
    };
    let ranges: &'static [(u32, u32)] = match bare.strip_suffix(":]")? {
        "alnum" => &[(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)],
        "alpha" => &[(0x41, 0x5A), (0x61, 0x7A)],
        "ascii" => &[(0x00, 0x7F)],
        "blank" => &[(0x09, 0x09), (0x20, 0x20)],
        "cntrl" => &[(0x00, 0x1F), (0x7F, 0x7F)],
        "digit" => DIGIT,
        "graph" => &[(0x21, 0x7E)],
        "lower" => &[(0x61, 0x7A)],
        "print" => &[(0x20, 0x7E)],
        "punct" => &[(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)],
        "space" => &[(0x09, 0x0D), (0x20, 0x20)],
        "upper" => &[(0x41, 0x5A)],
        "word" => WORD,
        "xdigit" => &[(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
        _ => return None,
    };
    Some((ranges, negated))
}

/// Go's `parseUnicodeClass`: `\pX`, `\p{Name}`, `\PX`, `\P{^Name}`;
/// `t` starts with `\p` or `\P`.
fn parse_unicode_class(t: &str) -> Option<(String, &str)> {
    let mut negated = t.as_bytes().get(1) == Some(&b'P');
    let after = t.get(2..)?;
    let (name, rest) = match after.chars().next() {
        Some('{') => {
            let end = after.find('}')?;
            (after.get(1..end)?, after.get(end + 1..)?)
        }
        Some(c) => after.split_at(c.len_utf8()),
        None => ("", after),
    };
    let name = match name.strip_prefix('^') {
        Some(n) => {
            negated = !negated;
            n
        }
        None => name,
    };
    let canonical = canonical_name(name);
    let class = match canonical.as_str() {
        "Any" => ranges_class(&[(0, MAX_RUNE)], negated),
        "Ascii" => ranges_class(&[(0, 0x7F)], negated),
        // Go's "Assigned" is the complement of its Cn table.
        "Assigned" => unicode_property("Cn", !negated),
        "Lc" => unicode_property("LC", negated),
        // Go's C table lists Cc, Cf, Co and Cs, not unassigned code points;
        // Cs (surrogates) cannot occur in a Rust string.
        "C" => format!(
            "[{}\\p{{Cc}}\\p{{Cf}}\\p{{Co}}]",
            if negated { "^" } else { "" }
        ),
        n if GO_CATEGORIES.contains(&n) => unicode_property(n, negated),
        // Multi-letter names can only be reached through `\p{...}`, which the
        // pattern compiler never produces (it escapes `{`); scripts are left
        // to the `regex` crate, which rejects names it does not know.
        n if n.len() > 2 && n.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            unicode_property(n, negated)
        }
        _ => return None,
    };
    Some((class, rest))
}

/// Go's general-category table names (besides `C`, handled separately).
const GO_CATEGORIES: &[&str] = &[
    "Cc", "Cf", "Co", "L", "Ll", "Lm", "Lo", "Lt", "Lu", "M", "Mc", "Me", "Mn", "N", "Nd", "Nl",
    "No", "P", "Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "S", "Sc", "Sk", "Sm", "So", "Z", "Zl",
    "Zp", "Zs",
];

fn unicode_property(name: &str, negated: bool) -> String {
    format!("\\{}{{{name}}}", if negated { 'P' } else { 'p' })
}

/// Go's `canonicalName` (Go 1.25+): first letter upper case, the rest lower
/// case, with `_`, `-` and spaces dropped.
fn canonical_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut first = true;
    for c in name.chars() {
        if matches!(c, '_' | '-' | ' ') {
            continue;
        }
        if first {
            out.push(c.to_ascii_uppercase());
            first = false;
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    // Go keeps exact table keys like "Lu" as they are; they are canonical.
    out
}

/// Go's `parseClass`: a bracket expression; `t` starts with `[`.
fn parse_class(t: &str) -> Option<(String, &str)> {
    let mut t = t.get(1..)?;
    let mut negated = false;
    if let Some(rest) = t.strip_prefix('^') {
        negated = true;
        t = rest;
    }
    let mut items = String::new();
    let mut first = true;
    loop {
        if t.starts_with(']') && !first {
            break;
        }
        first = false;
        if t.len() > 2
            && t.starts_with("[:")
            && let Some(i) = t[2..].find(":]")
        {
            let end = i + 4;
            let (ranges, neg) = posix_class(t.get(..end)?)?;
            items.push_str(&ranges_class(ranges, neg));
            t = t.get(end..)?;
            continue;
        }
        if t.starts_with(r"\p") || t.starts_with(r"\P") {
            let (class, rest) = parse_unicode_class(t)?;
            items.push_str(&class);
            t = rest;
            continue;
        }
        if let Some((class, rest)) = perl_class(t) {
            items.push_str(&class);
            t = rest;
            continue;
        }
        let (lo, rest) = parse_class_char(t)?;
        t = rest;
        let mut hi = lo;
        let b = t.as_bytes();
        if b.len() >= 2 && b[0] == b'-' && b[1] != b']' {
            let (h, rest) = parse_class_char(&t[1..])?;
            if h < lo {
                return None;
            }
            hi = h;
            t = rest;
        }
        push_range(&mut items, lo, hi);
    }
    let rest = t.get(1..)?;
    let class = if items.is_empty() {
        // Every member was a surrogate; nothing can match (or, negated, anything).
        ranges_class(&[(0, MAX_RUNE)], !negated)
    } else {
        format!("[{}{items}]", if negated { "^" } else { "" })
    };
    Some((class, rest))
}

/// Go's `parseClassChar`: one (possibly escaped) character in a class.
fn parse_class_char(t: &str) -> Option<(u32, &str)> {
    if t.starts_with('\\') {
        return parse_escape(t);
    }
    let c = t.chars().next()?;
    Some((u32::from(c), &t[c.len_utf8()..]))
}

/// A whole class made of explicit ranges.
fn ranges_class(ranges: &[(u32, u32)], negated: bool) -> String {
    let mut items = String::new();
    for &(lo, hi) in ranges {
        push_range(&mut items, lo, hi);
    }
    format!("[{}{items}]", if negated { "^" } else { "" })
}

/// Append `lo-hi` to a class body, leaving out surrogates (no Rust string
/// contains them, and the `regex` crate rejects them as escapes).
fn push_range(items: &mut String, lo: u32, hi: u32) {
    let lo = if (0xD800..=0xDFFF).contains(&lo) {
        0xE000
    } else {
        lo
    };
    let hi = if (0xD800..=0xDFFF).contains(&hi) {
        0xD7FF
    } else {
        hi.min(MAX_RUNE)
    };
    if lo > hi {
        return;
    }
    if lo < 0xD800 && hi > 0xDFFF {
        let _ = write!(items, r"\x{{{lo:X}}}-\x{{D7FF}}\x{{E000}}-\x{{{hi:X}}}");
    } else {
        let _ = write!(items, r"\x{{{lo:X}}}-\x{{{hi:X}}}");
    }
}

/// Append a literal code point.
fn push_literal(out: &mut String, r: u32) {
    match char::from_u32(r) {
        Some(c) if c.is_ascii_alphanumeric() => out.push(c),
        Some(_) => {
            let _ = write!(out, r"\x{{{r:X}}}");
        }
        // A surrogate value: Go can never match it in UTF-8 text.
        None => out.push_str(NEVER),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_match(go: &str, text: &str) -> Option<bool> {
        let rust = translate(go)?;
        Some(regex::Regex::new(&rust).ok()?.is_match(text))
    }

    #[test]
    fn translation_follows_go_syntax() {
        // (go regexp, text, expected: None = Go rejects the expression)
        let cases: &[(&str, &str, Option<bool>)] = &[
            (r"^a[^/]*$", "abc", Some(true)),
            (r"^a[^/]*$", "a/c", Some(false)),
            (r"^(.*/)?b$", "x/y/b", Some(true)),
            (r"^(.*/)?b$", "b", Some(true)),
            (r"^a.b$", "a\nb", Some(false)),
            (r"^a[^/]b$", "a\nb", Some(true)),
            // `[` inside a Go class is literal; Rust would nest.
            (r"^[[^/]*]$", "]", Some(true)),
            (r"^[[^/]*]$", "[[^/]", Some(true)),
            (r"^[[^/]*]$", "*", Some(false)),
            // `&&`, `--` and `~~` are not set operations in Go.
            (r"^[a&&b]$", "&", Some(true)),
            (r"^[a~~b]$", "~", Some(true)),
            // POSIX classes.
            (r"^[[:alpha:]]$", "q", Some(true)),
            (r"^[[:alpha:]]$", "é", Some(false)),
            (r"^[[:^alpha:]]$", "1", Some(true)),
            (r"^[[:foo:]]$", "f", None),
            // Perl classes are ASCII in Go.
            (r"^\d$", "٣", Some(false)),
            (r"^\d$", "3", Some(true)),
            (r"^\s$", "\u{0B}", Some(false)),
            (r"^[[:space:]]$", "\u{0B}", Some(true)),
            (r"^\w$", "é", Some(false)),
            (r"^\W$", "é", Some(true)),
            // Escapes.
            (r"^a\x41$", "aA", Some(true)),
            (r"^\101$", "A", Some(true)),
            (r"^\0$", "\0", Some(true)),
            (r"^\1$", "1", None),
            (r"^\8$", "8", None),
            (r"^\é$", "é", None),
            (r"^\q$", "q", None),
            (r"^\C$", "a", None),
            (r"^\_$", "_", Some(true)),
            (r"^\ $", " ", Some(true)),
            (r"^\n$", "\n", Some(true)),
            (r"^\x{263a}$", "☺", Some(true)),
            (r"^\x4$", "J", None),
            (r"^a\Q.*\E$", "a.*", Some(true)),
            (r"^a\Q.*$", "a.*$", Some(true)),
            (r"^a\Q.*$", "ab", Some(false)),
            // Unicode classes.
            (r"^\pL$", "é", Some(true)),
            (r"^\pL$", "1", Some(false)),
            (r"^\PL$", "1", Some(true)),
            (r"^\pN$", "٣", Some(true)),
            (r"^\pX$", "x", None),
            (r"^[\pL\d]$", "7", Some(true)),
            (r"^[^\pL]$", "é", Some(false)),
            (r"^\pC$", "\u{1}", Some(true)),
            // Ranges.
            (r"^[a-c]$", "b", Some(true)),
            (r"^[c-a]$", "b", None),
            (r"^[a-[]$", "a", None),
            (r"^[a-]$", "-", Some(true)),
            (r"^[]a]$", "]", Some(true)),
            (r"^[^]a]$", "b", Some(true)),
            (r"^[\-x]$", "-", Some(true)),
            (r"^[\b]$", "\u{8}", None),
            (r"^[a", "a", None),
            // Anchors and boundaries.
            (r"^a^b$", "ab", Some(false)),
            (r"^a\b$", "a", Some(true)),
            (r"^é\b$", "é", Some(false)),
            // Groups and repetition.
            (r"^(a$", "a", None),
            (r"^a)$", "a", None),
            (r"^a**$", "a", None),
            // Go lets `*` repeat `^`, but not an empty group or nothing.
            (r"^*$", "a", Some(true)),
            (r"^(*)$", "a", None),
            (r"^(|*)$", "a", None),
            (r"^a{2}$", "aa", Some(true)),
            (r"^a{,2}$", "a{,2}", Some(true)),
            (r"^a{1001}$", "a", None),
        ];
        for (go, text, want) in cases {
            assert_eq!(
                is_match(go, text),
                *want,
                "go regexp {go:?} against {text:?}"
            );
        }
    }

    #[test]
    fn canonical_names() {
        assert_eq!(canonical_name("l"), "L");
        assert_eq!(canonical_name("lu"), "Lu");
        assert_eq!(canonical_name("Uppercase_Letter"), "Uppercaseletter");
        assert_eq!(canonical_name(""), "");
    }
}
