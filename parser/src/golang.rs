//! The few Go standard-library functions whose exact behaviour BuildKit's
//! accept/reject decisions and messages depend on: `strconv.Quote`,
//! `strconv.ParseBool`/`ParseInt`/`ParseUint`/`ParseFloat`, `strings.ToLower`/`ToUpper`
//! and `path.Clean`/`Base`. One copy here serves every module.

use std::fmt::Write as _;

use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

/// Go's `unicode.IsPrint`: letters, marks, numbers, punctuation, symbols
/// and the ASCII space.
pub(crate) fn is_print(c: char) -> bool {
    c == ' '
        || matches!(
            c.general_category_group(),
            GeneralCategoryGroup::Letter
                | GeneralCategoryGroup::Mark
                | GeneralCategoryGroup::Number
                | GeneralCategoryGroup::Punctuation
                | GeneralCategoryGroup::Symbol
        )
}

/// Go's `strconv.Quote` (what `%q` prints).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if is_print(c) => out.push(c),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if u32::from(c) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\U{:08x}", u32::from(c));
            }
        }
    }
    out.push('"');
    out
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Why Go's integer parsing failed (`strconv.NumError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumError {
    /// `invalid syntax`.
    Syntax,
    /// `value out of range`.
    Range,
}

impl NumError {
    /// Go's wording.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            NumError::Syntax => "invalid syntax",
            NumError::Range => "value out of range",
        }
    }
}

/// Go's `strconv.ParseUint(s, base, bits)` for an explicit base (2..=36):
/// digits only, no sign, prefix or underscores.
pub(crate) fn parse_uint(s: &str, base: u32, bits: u32) -> Result<u64, NumError> {
    if s.is_empty() {
        return Err(NumError::Syntax);
    }
    let max = if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let mut value: u64 = 0;
    for c in s.chars() {
        let digit = c.to_digit(base).ok_or(NumError::Syntax)?;
        // Go stops at the first overflow, before looking at later digits.
        value = value
            .checked_mul(u64::from(base))
            .and_then(|v| v.checked_add(u64::from(digit)))
            .filter(|v| *v <= max)
            .ok_or(NumError::Range)?;
    }
    Ok(value)
}

/// Go's `strconv.ParseInt(s, 10, bits)`: an optional sign, then decimal
/// digits.
pub(crate) fn parse_int(s: &str, bits: u32) -> Result<i64, NumError> {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let bits = bits.clamp(1, 64);
    let magnitude = parse_uint(digits, 10, 64)?;
    let limit = 1u64 << (bits - 1);
    if negative {
        if magnitude > limit {
            return Err(NumError::Range);
        }
        Ok(0i64.checked_sub_unsigned(magnitude).unwrap_or(i64::MIN))
    } else if magnitude >= limit {
        Err(NumError::Range)
    } else {
        i64::try_from(magnitude).map_err(|_| NumError::Range)
    }
}

/// Go's `strconv.Atoi` on a 64-bit platform.
pub(crate) fn atoi(s: &str) -> Option<i64> {
    parse_int(s, 64).ok()
}

/// Go's `strings.ToLower` (simple per-character mapping).
pub(crate) use kiln_reference::go_to_lower as to_lower;

/// Go's `strings.ToUpper`: the simple per-character mapping (characters
/// whose full mapping is several characters, such as `ß`, stay as they
/// are).
pub(crate) fn to_upper(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_uppercase();
    }
    s.chars()
        .map(|c| {
            let mut upper = c.to_uppercase();
            match (upper.next(), upper.next()) {
                (Some(single), None) => single,
                _ => c,
            }
        })
        .collect()
}

/// Go's `strings.EqualFold`: equal under simple Unicode case folding
/// (`ſ` matches `s`, the Kelvin sign `k`), per character.
pub(crate) fn equal_fold(a: &str, b: &str) -> bool {
    let single = |mut it: std::char::ToLowercase| match (it.next(), it.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    };
    let single_upper = |mut it: std::char::ToUppercase| match (it.next(), it.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    };
    let fold = |x: char, y: char| {
        x == y
            || single(x.to_lowercase()).is_some_and(|l| Some(l) == single(y.to_lowercase()))
            || single_upper(x.to_uppercase())
                .is_some_and(|u| Some(u) == single_upper(y.to_uppercase()))
    };
    a.chars().count() == b.chars().count() && a.chars().zip(b.chars()).all(|(x, y)| fold(x, y))
}

/// Go's `path.Clean` (and `filepath.Clean` on Unix), byte by byte as Go
/// does it.
pub fn path_clean(path: &str) -> String {
    let p = path.as_bytes();
    if p.is_empty() {
        return ".".to_owned();
    }
    let n = p.len();
    let rooted = p[0] == b'/';
    let mut out: Vec<u8> = Vec::with_capacity(n);
    let mut r = 0;
    // Index in `out` below which `..` may not backtrack.
    let mut dotdot = 0;
    if rooted {
        out.push(b'/');
        r = 1;
        dotdot = 1;
    }
    while r < n {
        let at = |i: usize| p.get(i).copied();
        // An empty element or a `.` element is dropped.
        if p[r] == b'/' || (p[r] == b'.' && matches!(at(r + 1), None | Some(b'/'))) {
            r += 1;
        } else if p[r] == b'.' && at(r + 1) == Some(b'.') && matches!(at(r + 2), None | Some(b'/'))
        {
            r += 2;
            if out.len() > dotdot {
                let mut w = out.len() - 1;
                while w > dotdot && out[w] != b'/' {
                    w -= 1;
                }
                out.truncate(w);
            } else if !rooted {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(b"..");
                dotdot = out.len();
            }
        } else {
            if (rooted && out.len() != 1) || (!rooted && !out.is_empty()) {
                out.push(b'/');
            }
            while r < n && p[r] != b'/' {
                out.push(p[r]);
                r += 1;
            }
        }
    }
    if out.is_empty() {
        return ".".to_owned();
    }
    // Only whole elements were copied, split at ASCII bytes, so this is UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Go's `path.Base`.
pub(crate) fn path_base(p: &str) -> &str {
    if p.is_empty() {
        return ".";
    }
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/";
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed)
}

/// Go's `strconv.ParseFloat(s, 64)`, returning `None` for syntax errors and
/// for overflow (Go's `ErrRange`). `inf`/`nan` spellings are reported as
/// `None` too: every caller here rejects them either way.
pub(crate) fn parse_float(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut neg = false;
    match b.first() {
        Some(b'+') => i += 1,
        Some(b'-') => {
            neg = true;
            i += 1;
        }
        _ => {}
    }
    let hex =
        i + 2 < b.len() && b.get(i) == Some(&b'0') && matches!(b.get(i + 1), Some(b'x' | b'X'));
    if hex {
        i += 2;
    }
    let mant_start = i;
    let mut saw_digits = false;
    let mut saw_dot = false;
    let mut underscores = false;
    while let Some(&c) = b.get(i) {
        match c {
            b'_' => underscores = true,
            b'.' if !saw_dot => saw_dot = true,
            b'0'..=b'9' => saw_digits = true,
            c if hex && c.is_ascii_hexdigit() => saw_digits = true,
            _ => break,
        }
        i += 1;
    }
    if !saw_digits {
        return None;
    }
    let mant_end = i;
    let exp_char = if hex { b'p' } else { b'e' };
    let mut exp: i64 = 0;
    let mut has_exp = false;
    if b.get(i).map(u8::to_ascii_lowercase) == Some(exp_char) {
        has_exp = true;
        i += 1;
        let mut esign = 1;
        match b.get(i) {
            Some(b'+') => i += 1,
            Some(b'-') => {
                esign = -1;
                i += 1;
            }
            _ => {}
        }
        if !b.get(i).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        while let Some(&c) = b.get(i) {
            match c {
                b'_' => underscores = true,
                b'0'..=b'9' => {
                    // Go stops accumulating at 10000; beyond that the result
                    // is infinite or zero anyway.
                    if exp < 10_000 {
                        exp = exp * 10 + i64::from(c - b'0');
                    }
                }
                _ => break,
            }
            i += 1;
        }
        exp *= esign;
    } else if hex {
        return None;
    }
    if i != b.len() || (underscores && !underscore_ok(s)) {
        return None;
    }
    let mantissa = s.get(mant_start..mant_end)?;
    let value = if hex {
        hex_float(mantissa, exp)
    } else {
        let mut text: String = mantissa.chars().filter(|&c| c != '_').collect();
        if has_exp {
            let _ = write!(text, "e{exp}");
        }
        text.parse::<f64>().ok()?
    };
    if value.is_infinite() {
        return None;
    }
    Some(if neg { -value } else { value })
}

/// Value of a hexadecimal mantissa (digits, at most one dot, no underscores
/// relevant) times two to the `exp`.
fn hex_float(mantissa: &str, exp: i64) -> f64 {
    let mut m: u128 = 0;
    let mut sticky = false;
    let mut shift: i64 = exp;
    let mut after_dot = false;
    for c in mantissa.chars() {
        if c == '.' {
            after_dot = true;
            continue;
        }
        let Some(d) = c.to_digit(16) else { continue };
        if m >> 120 == 0 {
            m = (m << 4) | u128::from(d);
            if after_dot {
                shift = shift.saturating_sub(4);
            }
        } else {
            // Digits past 120 bits only matter for rounding.
            sticky |= d != 0;
            if !after_dot {
                shift = shift.saturating_add(4);
            }
        }
    }
    if m == 0 {
        return 0.0;
    }
    #[expect(
        clippy::cast_precision_loss,
        reason = "rounding to f64 is the point; sticky bit keeps it correct"
    )]
    let mut f = (m | u128::from(sticky)) as f64;
    let mut e = shift.clamp(-3000, 3000);
    while e != 0 {
        let step = e.clamp(-1000, 1000);
        #[expect(clippy::cast_possible_truncation, reason = "step is within ±1000")]
        let step32 = step as i32;
        f *= 2f64.powi(step32);
        e -= step;
    }
    f
}

/// Go's `underscoreOK`: underscores only between digits, or between a base
/// prefix and a digit.
fn underscore_ok(s: &str) -> bool {
    let mut b = s.as_bytes();
    if let Some((b'+' | b'-', rest)) = b.split_first() {
        b = rest;
    }
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if let [b'0', p, ..] = b {
        let p = p.to_ascii_lowercase();
        if matches!(p, b'b' | b'o' | b'x') {
            i = 2;
            saw = b'0';
            hex = p == b'x';
        }
    }
    while let Some(&c) = b.get(i) {
        i += 1;
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = b'0';
            continue;
        }
        if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
            continue;
        }
        if saw == b'_' {
            return false;
        }
        saw = b'!';
    }
    saw != b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(
            quote("\" \\ / \u{8} \u{c} \n \r \t \0"),
            r#""\" \\ / \b \f \n \r \t \x00""#
        );
        assert_eq!(quote("♥☃한국어é"), "\"♥☃한국어é\"");
        assert_eq!(
            quote("\u{7f}\u{a0}\u{200b}\u{feff}"),
            r#""\x7f\u00a0\u200b\ufeff""#
        );
        assert_eq!(quote("\u{e0001}\u{1f600}"), "\"\\U000e0001😀\"");
        assert_eq!(quote("\u{7}\u{b}"), r#""\a\v""#);
    }

    #[test]
    fn numbers_like_strconv() {
        assert_eq!(parse_uint("755", 8, 32), Ok(0o755));
        assert_eq!(parse_uint("8", 8, 32), Err(NumError::Syntax));
        assert_eq!(parse_uint("", 10, 16), Err(NumError::Syntax));
        assert_eq!(parse_uint("65535", 10, 16), Ok(65535));
        assert_eq!(parse_uint("65536", 10, 16), Err(NumError::Range));
        assert_eq!(
            parse_uint("99999999999999999999999", 10, 64),
            Err(NumError::Range)
        );
        assert_eq!(parse_uint("+1", 10, 64), Err(NumError::Syntax));
        assert_eq!(
            parse_uint("99999999999999999999x", 10, 64),
            Err(NumError::Range)
        );
        assert_eq!(parse_int("-2147483648", 32), Ok(-2_147_483_648));
        assert_eq!(parse_int("2147483648", 32), Err(NumError::Range));
        assert_eq!(parse_int("+7", 32), Ok(7));
        assert_eq!(parse_int("-", 32), Err(NumError::Syntax));
        assert_eq!(parse_int("1x", 32), Err(NumError::Syntax));
        assert_eq!(atoi("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(atoi("9223372036854775808"), None);
        assert_eq!(atoi("007"), Some(7));
        assert_eq!(NumError::Range.as_str(), "value out of range");
    }

    #[test]
    fn case_mapping_like_go() {
        assert_eq!(to_lower("İSTANBUL"), "istanbul");
        assert_eq!(to_upper("straße"), "STRAßE");
        assert_eq!(to_lower("ABC"), "abc");
        assert_eq!(parse_bool("True"), Some(true));
        assert_eq!(parse_bool("yes"), None);
        assert!(equal_fold("http_proxy", "HTTP_PROXY"));
        assert!(equal_fold("HTTPS_PROXY", "http\u{17f}_proxy"));
        assert!(equal_fold("k", "\u{212a}"));
        assert!(!equal_fold("NO_PROXY", "NO_PROX"));
        assert!(!equal_fold("a", "b"));
    }

    #[test]
    fn paths_like_go() {
        for (input, want) in [
            ("", "."),
            ("/", "/"),
            ("a/../..", ".."),
            ("/../a", "/a"),
            ("a//b/./c/", "a/b/c"),
            ("../../x", "../../x"),
        ] {
            assert_eq!(path_clean(input), want, "{input}");
        }
        assert_eq!(path_base("/a/b/"), "b");
        assert_eq!(path_base("///"), "/");
        assert_eq!(path_base(""), ".");
    }
}
