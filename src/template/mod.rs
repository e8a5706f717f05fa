//! A subset of Go's `text/template`, as Docker users write it in
//! `--format` and `inspect -f`, evaluated over JSON values.
//!
//! Supported: text and `{{ }}` actions with `{{-`/`-}}` trimming and
//! `{{/* comments */}}`; `.Field` chains, `.`, `$`, variables (`:=`, `=`);
//! pipelines and parenthesised sub-expressions; string, raw string, char,
//! integer, float, bool and nil literals; `if`/`else if`/`else`, `range`
//! (arrays, objects in sorted-key order, integers, with `else`, `break`,
//! `continue`), `with`/`else with`/`else`. Functions: Go's `and or not len
//! index slice eq ne lt le gt ge print printf println html js urlquery` and
//! Docker's `json split join title lower upper pad truncate`. Not
//! supported: `define`, `template`, `block`, `call`.
//!
//! Values print as Go's `%v` prints the equivalent Go values (`[a b]`,
//! `map[k:v]` with sorted keys, `<nil>`). A document may come with its Go
//! types (`types::IMAGE_INSPECT`), so that structs, sets and durations
//! print as Docker prints its typed values (`{[CMD true] 30s 3s 0s 0}`,
//! `map[80/tcp:{}]`); see `Template::execute_typed`. A field missing from an object is
//! an error (`map has no entry for key "X"`, Go's `missingkey=error`); a
//! field of null prints `<no value>`, as for Go's nil maps.

mod exec;
mod format;
mod lex;
mod parse;
#[cfg(test)]
mod tests;
mod types;

pub use types::{ANY, CONTAINER_INSPECT, GoType, IMAGE_INSPECT};

/// Output larger than this is refused (also any single computed string),
/// so a template cannot exhaust memory.
const MAX_OUTPUT: usize = 16 << 20;

/// A template that failed to parse or to execute; messages are worded as
/// Go's (`template: :1: function "foo" not defined`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// The template text is malformed.
    #[error("template: :{line}: {message}")]
    Parse {
        /// 1-based line of the offending token.
        line: usize,
        /// What is wrong, as Go words it.
        message: String,
    },
    /// The template is well-formed but failed on the data.
    #[error("template: :{line}:{column}: executing \"\" at <{context}>: {message}")]
    Exec {
        /// 1-based line of the failing node.
        line: usize,
        /// 0-based byte column of the failing node, as Go counts it.
        column: usize,
        /// The failing node's text, as Go prints it.
        context: String,
        /// What failed, as Go words it.
        message: String,
    },
}

/// A parsed template, ready to execute against any number of values.
#[derive(Debug)]
pub struct Template {
    text: String,
    nodes: Vec<parse::Node>,
}

impl Template {
    /// Parses template text (Go's `template.New("").Funcs(docker).Parse(text)`).
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let nodes = parse::parse(text, exec::FUNCTIONS)?;
        Ok(Template {
            text: text.to_owned(),
            nodes,
        })
    }

    /// Parses a `--format` value: the Docker CLI first turns a literal
    /// `\t` and `\n` in it into tab and newline.
    pub fn parse_flag(format: &str) -> Result<Template, TemplateError> {
        Self::parse(&format.replace("\\t", "\t").replace("\\n", "\n"))
    }

    /// Executes the template with `data` as `.` and `$`.
    pub fn execute(&self, data: &serde_json::Value) -> Result<String, TemplateError> {
        exec::execute(&self.text, &self.nodes, data, &ANY)
    }

    /// Executes the template over `data` seen as the Go type `ty`, as
    /// Docker's `inspect` does: first over the typed value (so that
    /// `{{.Config.Healthcheck}}` prints `{[CMD true] 30s 3s 0s 0}`), and
    /// when that fails, over the plain JSON, whose result or error is
    /// the answer (Docker's `tryRawInspectFallback`: `{{.Id}}` works
    /// although the Go field is `ID`).
    pub fn execute_typed(
        &self,
        data: &serde_json::Value,
        ty: &'static GoType,
    ) -> Result<String, TemplateError> {
        exec::execute(&self.text, &self.nodes, data, ty).or_else(|_| self.execute(data))
    }
}
