//! BuildKit's AST dump notation, `(run "echo hi")`, with Go's
//! `strconv.Quote` for every string.

use std::fmt::Write as _;

use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

use super::{Args, Node};

/// Go's `unicode.IsPrint`: letters, marks, numbers, punctuation, symbols
/// and the ASCII space.
fn is_go_printable(c: char) -> bool {
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

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if is_go_printable(c) => out.push(c),
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

impl Node {
    /// The node in BuildKit's notation without the outer parentheses:
    /// `run ["--mount=x"] "echo hi"`.
    pub fn dump(&self) -> String {
        let mut out = self.keyword.value.to_lowercase();
        if !self.flags.is_empty() {
            let quoted: Vec<String> = self.flags.iter().map(|f| go_quote(&f.value)).collect();
            let _ = write!(out, " [{}]", quoted.join(" "));
        }
        match &self.args {
            Args::None => {}
            Args::Ignored => out.push_str(" \"\""),
            Args::Words(words) => {
                for w in words {
                    out.push(' ');
                    out.push_str(&go_quote(&w.value));
                }
            }
            Args::KeyValues(pairs) => {
                for kv in pairs {
                    let separator = if kv.has_equals { "=" } else { "" };
                    let _ = write!(
                        out,
                        " {} {} {}",
                        go_quote(&kv.key.value),
                        go_quote(&kv.value.value),
                        go_quote(separator)
                    );
                }
            }
            Args::Instruction(child) => {
                let _ = write!(out, " ({})", child.dump());
            }
        }
        out.trim().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a b"), "\"a b\"");
        assert_eq!(
            go_quote("\" \\ / \u{8} \u{c} \n \r \t \0"),
            r#""\" \\ / \b \f \n \r \t \x00""#
        );
        assert_eq!(go_quote("♥☃한국어é"), "\"♥☃한국어é\"");
        assert_eq!(
            go_quote("\u{7f}\u{a0}\u{200b}\u{feff}"),
            r#""\x7f\u00a0\u200b\ufeff""#
        );
        assert_eq!(go_quote("\u{e0001}\u{1f600}"), "\"\\U000e0001😀\"");
        assert_eq!(go_quote("\u{7}\u{b}"), r#""\a\v""#);
    }
}
