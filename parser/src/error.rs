//! The parser's error type: what went wrong, where, and what was expected.

use std::fmt::{self, Write as _};

use crate::source::{SourceLines, Span};

/// An error in a Dockerfile, located at a span of its text.
///
/// `Display` gives the one-line form `file:line:column: message`;
/// [`Error::render`] adds the offending line with a caret under the token
/// and what was expected there. The details are boxed so that `Result`s
/// stay small; they are reachable through `Deref`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(Box<ErrorDetails>);

/// Where an [`Error`] is and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorDetails {
    /// The Dockerfile's display name (as the user gave it).
    pub file: String,
    /// Where the problem is.
    pub span: Span,
    /// The text of the physical line at `span.line`.
    pub source_line: String,
    /// What went wrong.
    pub kind: ErrorKind,
    /// What the parser expected at that place, when it can say.
    pub expected: Option<String>,
}

impl std::ops::Deref for Error {
    type Target = ErrorDetails;

    fn deref(&self) -> &ErrorDetails {
        &self.0
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.span.line, self.span.column, self.kind
        )
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0.kind)
    }
}

impl Error {
    /// Builds an error for `span` in a file whose lines are `lines`.
    pub(crate) fn new(file: &str, lines: &SourceLines<'_>, span: Span, kind: ErrorKind) -> Self {
        Error(Box::new(ErrorDetails {
            file: file.to_owned(),
            span,
            source_line: lines.line(span.line).to_owned(),
            kind,
            expected: None,
        }))
    }

    /// An error at `span` of `text` (a file that is not a Dockerfile, such
    /// as a `.dockerignore`, reported the same way).
    pub fn located(file: &str, text: &str, span: Span, kind: ErrorKind) -> Self {
        Error::new(file, &SourceLines::new(text), span, kind)
    }

    /// Adds what was expected.
    #[must_use]
    pub fn expecting(mut self, expected: impl Into<String>) -> Self {
        self.0.expected = Some(expected.into());
        self
    }

    /// The error with the source line and a caret under the offending
    /// token, e.g.
    ///
    /// ```text
    /// Dockerfile:3:1: unknown instruction: FORM (did you mean FROM?)
    ///   |
    /// 3 | FORM alpine
    ///   | ^^^^ expected an instruction such as FROM, RUN or COPY
    /// ```
    pub fn render(&self) -> String {
        let expected = self.expected.as_ref().map(|e| format!("expected {e}"));
        render_located(
            &self.file,
            self.span,
            &self.source_line,
            &self.kind.to_string(),
            expected.as_deref(),
        )
    }
}

/// Renders a message located at `span` of a file as parse errors are:
/// `file:line:column: message`, the source line, a caret under the span
/// and `note` after it. The one renderer for located errors, so parse and
/// build errors read alike.
pub fn render_located(
    file: &str,
    span: Span,
    source_line: &str,
    message: &str,
    note: Option<&str>,
) -> String {
    let number = span.line.to_string();
    let gutter = " ".repeat(number.len());
    let mut out = String::new();
    let _ = writeln!(out, "{file}:{}:{}: {message}", span.line, span.column);
    let _ = writeln!(out, "{gutter} |");
    let shown: String = source_line
        .chars()
        .map(|c| if c == '\t' { ' ' } else { c })
        .collect();
    let _ = writeln!(out, "{number} | {shown}");
    let pad = " ".repeat(span.column.saturating_sub(1));
    let carets = "^".repeat(span.width.max(1));
    let _ = write!(out, "{gutter} | {pad}{carets}");
    if let Some(note) = note {
        let _ = write!(out, " {note}");
    }
    out
}

/// What went wrong, worded as BuildKit words it where BuildKit has the
/// error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file has no bytes at all.
    #[error("the Dockerfile cannot be empty")]
    EmptyDockerfile,
    /// The file has only comments, directives and blank lines.
    #[error("file with no instructions")]
    NoInstructions,
    /// The text is not UTF-8.
    #[error("the Dockerfile is not valid UTF-8")]
    InvalidUtf8,
    /// A parser directive given twice.
    #[error("only one {name} parser directive can be used")]
    DuplicateDirective {
        /// The directive (lowercase).
        name: String,
    },
    /// `# escape=` with something other than a backslash or backtick.
    #[error("invalid escape token '{value}' does not match ` or \\")]
    InvalidEscapeToken {
        /// The value given.
        value: String,
    },
    /// `# check=` with a malformed option.
    #[error("failed to parse check options: {message}")]
    InvalidCheckDirective {
        /// Why.
        message: String,
    },
    /// A heredoc whose terminator line never came.
    #[error("unterminated heredoc {name}")]
    UnterminatedHeredoc {
        /// The delimiter word.
        name: String,
    },
    /// A heredoc delimiter word that failed to lex.
    #[error("invalid heredoc delimiter: {message}")]
    InvalidHeredoc {
        /// Why.
        message: String,
    },
    /// A JSON array with something other than strings in it.
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    NotStringArray,
    /// `ENV a=1 b` and the like.
    #[error("Syntax error - can't find = in {word:?}. Must be of the form: name=value")]
    MissingEquals {
        /// The word without `=`.
        word: String,
    },
    /// `ENV name` with no value in the legacy form.
    #[error("{instruction} must have two arguments")]
    MustHaveTwoArguments {
        /// ENV or LABEL.
        instruction: String,
    },
    /// ONBUILD nested past any sensible depth.
    #[error("ONBUILD is nested too deeply")]
    NestingTooDeep,
    /// An instruction name that is not one of the 18.
    #[error("unknown instruction: {name}{}", suggestion.as_ref().map(|s| format!(" (did you mean {s}?)")).unwrap_or_default())]
    UnknownInstruction {
        /// The name as written.
        name: String,
        /// The nearest instruction name, in the user's case.
        suggestion: Option<String>,
    },
    /// Only ARGs, no FROM.
    #[error("dockerfile contains no stages to build")]
    NoStages,
    /// An instruction other than ARG before the first FROM.
    #[error("no build stage in current context")]
    NoBuildStage,
    /// An instruction that needs arguments got none.
    #[error("{instruction} requires at least one argument")]
    AtLeastOneArgument {
        /// Instruction name, uppercase.
        instruction: &'static str,
    },
    /// An instruction that takes exactly one argument got several.
    #[error("{instruction} requires exactly one argument")]
    ExactlyOneArgument {
        /// Instruction name, uppercase.
        instruction: &'static str,
    },
    /// COPY/ADD with fewer than two arguments.
    #[error(
        "{instruction} requires at least two arguments, but only one was provided. Destination could not be determined"
    )]
    NoDestination {
        /// COPY or ADD.
        instruction: &'static str,
    },
    /// `ENV =x`, `ARG =x`.
    #[error("{instruction} names can not be blank")]
    BlankName {
        /// Instruction name, uppercase.
        instruction: &'static str,
    },
    /// An ARG name that can never be referenced.
    #[error(
        "invalid ARG name {name:?}: a name is a letter or underscore followed by letters, digits and underscores"
    )]
    InvalidArgName {
        /// The name given.
        name: String,
    },
    /// FROM with two or four-plus words.
    #[error("FROM requires either one or three arguments")]
    FromArguments,
    /// `FROM x AS 1bad`.
    #[error(
        "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
    )]
    InvalidStageName {
        /// The name as written.
        name: String,
    },
    /// `ONBUILD ONBUILD`.
    #[error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")]
    OnbuildChain,
    /// `ONBUILD FROM` / `ONBUILD MAINTAINER`.
    #[error("{instruction} isn't allowed as an ONBUILD trigger")]
    OnbuildTrigger {
        /// The trigger, uppercase.
        instruction: String,
    },
    /// `HEALTHCHECK NONE x`.
    #[error("HEALTHCHECK NONE takes no arguments")]
    HealthcheckNoneArguments,
    /// `HEALTHCHECK CMD` with nothing after it.
    #[error("Missing command after HEALTHCHECK CMD")]
    HealthcheckMissingCommand,
    /// `HEALTHCHECK FOO x`.
    #[error("Unknown type {kind:?} in HEALTHCHECK (try CMD)")]
    HealthcheckType {
        /// The type given, uppercase.
        kind: String,
    },
    /// A HEALTHCHECK duration that does not parse.
    #[error("{message}")]
    InvalidDuration {
        /// Go's wording, e.g. `time: invalid duration "5x"`.
        message: String,
    },
    /// A HEALTHCHECK duration under 1ms.
    #[error("Interval {flag:?} cannot be less than 1ms")]
    IntervalTooShort {
        /// The flag name.
        flag: String,
    },
    /// `--retries` that is not an integer.
    #[error("strconv.ParseInt: parsing {value:?}: {reason}")]
    InvalidRetries {
        /// The value given.
        value: String,
        /// `invalid syntax` or `value out of range`.
        reason: &'static str,
    },
    /// `--retries=-1`.
    #[error("--retries cannot be negative ({value})")]
    NegativeRetries {
        /// The value given.
        value: i64,
    },
    /// SHELL in shell form.
    #[error("{instruction} requires the arguments to be in JSON form")]
    NotJson {
        /// Instruction name, uppercase.
        instruction: &'static str,
    },
    /// `VOLUME [""]`.
    #[error("VOLUME specified can not be an empty string")]
    EmptyVolume,
    /// `COPY <<EOF <<EOF2`: a heredoc in the destination position.
    #[error("{instruction} cannot accept a heredoc as a destination")]
    HeredocDestination {
        /// COPY or ADD.
        instruction: &'static str,
    },
    /// A flag the instruction does not have (BuildKit names it with its
    /// dashes and suggests the nearest flag of the instruction).
    #[error("unknown flag: {flag}{}", crate::suggest::did_you_mean(suggestion.as_deref()))]
    UnknownFlag {
        /// The flag as written, `--` included, without `=value`.
        flag: String,
        /// The nearest flag the instruction has, without `--`.
        suggestion: Option<String>,
    },
    /// A flag given twice.
    #[error("duplicate flag specified: {flag}")]
    DuplicateFlag {
        /// The flag, `--` included.
        flag: String,
    },
    /// `--from` with no `=value`.
    #[error("missing a value on flag: {flag}")]
    MissingFlagValue {
        /// The flag, `--` included.
        flag: String,
    },
    /// `--link=maybe`.
    #[error("expecting boolean value for flag {flag}, not: {value}")]
    InvalidBool {
        /// The flag, `--` included.
        flag: String,
        /// The value given.
        value: String,
    },
    /// A value that failed its own grammar (mount, port, signal, ...).
    #[error("{message}")]
    InvalidValue {
        /// The message, worded as Docker words it.
        message: String,
    },
    /// Variable expansion failed.
    #[error("{message}")]
    Expansion {
        /// The lexer's message.
        message: String,
    },
    /// FROM expanded to nothing.
    #[error("base name ({raw}) should not be blank")]
    BlankBaseName {
        /// The name before expansion.
        raw: String,
    },
    /// FROM names something that is not an image reference.
    #[error("failed to parse stage name {name:?}: {message}")]
    InvalidBaseName {
        /// The expanded name.
        name: String,
        /// Why it is not a reference.
        message: String,
    },
    /// `FROM --platform=` that expands to nothing.
    #[error("empty platform value from expression {raw}")]
    EmptyPlatform {
        /// The expression.
        raw: String,
    },
    /// `FROM --platform=` that does not parse.
    #[error("failed to parse platform {raw}: {message}")]
    InvalidPlatform {
        /// The expression.
        raw: String,
        /// Why.
        message: String,
    },
    /// `--target` names no stage.
    #[error("target stage {} could not be found{}", crate::golang::quote(name), crate::suggest::did_you_mean(suggestion.as_deref()))]
    TargetNotFound {
        /// The name given.
        name: String,
        /// The nearest stage name.
        suggestion: Option<String>,
    },
    /// Two stages with one name (BuildKit's `DuplicateStageName` check).
    #[error("Duplicate stage name {name:?}, stage names should be unique")]
    DuplicateStageName {
        /// The (lowercased) name.
        name: String,
    },
    /// A stage that depends on itself.
    #[error("circular dependency detected on stage: {stage}")]
    CircularDependency {
        /// The stage where the cycle was found.
        stage: String,
    },
    /// `--from=7` in a file with fewer stages.
    #[error("invalid stage index {index}")]
    InvalidStageIndex {
        /// The index given.
        index: String,
    },
    /// `COPY --from=later` where `later` comes after this stage.
    #[error(
        "cannot copy from stage {from:?}, it needs to be defined before current stage {current:?}"
    )]
    CopyFromLaterStage {
        /// The `--from` value.
        from: String,
        /// The stage holding the COPY.
        current: String,
    },
    /// `RUN --mount=from=later`.
    #[error(
        "cannot mount from stage {from:?} to {target:?}, stage needs to be defined before current command"
    )]
    MountFromLaterStage {
        /// The `from` value.
        from: String,
        /// The mount target.
        target: String,
    },
    /// `COPY --from=$x` (BuildKit's COPY wording; `RUN --mount=from=$x`
    /// has its own, in `mount`).
    #[error(
        "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround"
    )]
    FromVariable,
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_line_and_caret() {
        let lines = SourceLines::new("FROM a\n\tFORM alpine\n");
        let err = Error::new(
            "Dockerfile",
            &lines,
            Span {
                line: 2,
                column: 2,
                width: 4,
            },
            ErrorKind::UnknownInstruction {
                name: "FORM".into(),
                suggestion: Some("FROM".into()),
            },
        )
        .expecting("an instruction");
        assert_eq!(
            err.to_string(),
            "Dockerfile:2:2: unknown instruction: FORM (did you mean FROM?)"
        );
        assert_eq!(
            err.render(),
            "Dockerfile:2:2: unknown instruction: FORM (did you mean FROM?)\n  |\n2 |  FORM alpine\n  |  ^^^^ expected an instruction"
        );
    }
}
