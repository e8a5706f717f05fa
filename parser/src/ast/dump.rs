//! BuildKit's AST dump notation, `(run "echo hi")`, with Go's
//! `strconv.Quote` for every string.

use std::fmt::Write as _;

use super::{Args, Node};

impl Node {
    /// The node in BuildKit's notation without the outer parentheses:
    /// `run ["--mount=x"] "echo hi"`.
    pub fn dump(&self) -> String {
        let mut out = self.keyword.value.to_lowercase();
        if !self.flags.is_empty() {
            let quoted: Vec<String> = self
                .flags
                .iter()
                .map(|f| crate::golang::quote(&f.value))
                .collect();
            let _ = write!(out, " [{}]", quoted.join(" "));
        }
        match &self.args {
            Args::None => {}
            Args::Ignored => out.push_str(" \"\""),
            Args::Words(words) => {
                for w in words {
                    out.push(' ');
                    out.push_str(&crate::golang::quote(&w.value));
                }
            }
            Args::KeyValues(pairs) => {
                for kv in pairs {
                    let separator = if kv.has_equals { "=" } else { "" };
                    let _ = write!(
                        out,
                        " {} {} {}",
                        crate::golang::quote(&kv.key.value),
                        crate::golang::quote(&kv.value.value),
                        crate::golang::quote(separator)
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
