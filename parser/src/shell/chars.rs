//! Character classes with Go's `unicode` package semantics.
//!
//! `BuildKit` classifies name characters with `unicode.IsLetter` (category L)
//! and `unicode.IsDigit` (category Nd). Rust's `char::is_alphabetic` and
//! `char::is_numeric` use different properties, so non-ASCII characters are
//! checked against the general categories through the regex crate's tables.

use std::sync::LazyLock;

use regex::Regex;

static LETTER: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\A\p{L}\z").ok());
static DIGIT: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\A\p{Nd}\z").ok());

fn in_class(class: &LazyLock<Option<Regex>>, c: char) -> bool {
    let mut buf = [0u8; 4];
    class
        .as_ref()
        .is_some_and(|re| re.is_match(c.encode_utf8(&mut buf)))
}

/// Go's `unicode.IsLetter`: general category L.
pub(crate) fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphabetic()
    } else {
        in_class(&LETTER, c)
    }
}

/// Go's `unicode.IsDigit`: general category Nd.
pub(crate) fn is_digit(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_digit()
    } else {
        in_class(&DIGIT, c)
    }
}

/// Go's `unicode.IsSpace`, which is the Unicode `White_Space` property, the
/// same set `char::is_whitespace` uses.
pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// POSIX special parameters (`$@`, `$*`, `$#`, `$?`, `$-`, `$$`, `$!`, `$0`).
pub(crate) fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}
