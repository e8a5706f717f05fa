//! Error and warning output on stderr.

use std::io::Write as _;

/// Prints an error and its causes: a parser error or a build step's error
/// with its source line and caret, anything else as `error: ...` with
/// `caused by:` lines.
pub fn print_error(error: &anyhow::Error) {
    let mut stderr = std::io::stderr().lock();
    if let Some(parse) = error.downcast_ref::<kiln_parser::Error>() {
        let _ = writeln!(stderr, "error: {}", parse.render());
        return;
    }
    if let Some(build) = error.downcast_ref::<kiln_builder::BuildError>()
        && (build.location().is_some() || matches!(build, kiln_builder::BuildError::Dockerfile(_)))
    {
        // The message already holds the root cause (errno and all).
        let _ = writeln!(stderr, "error: {}", build.render());
        return;
    }
    let _ = writeln!(stderr, "error: {error}");
    for cause in error.chain().skip(1) {
        if let Some(parse) = cause.downcast_ref::<kiln_parser::Error>() {
            let _ = writeln!(stderr, "caused by: {}", parse.render());
        } else {
            let _ = writeln!(stderr, "caused by: {cause}");
        }
    }
}

/// Prints a warning located in a file.
pub fn print_warning(file: &str, warning: &kiln_parser::ast::Warning) {
    let _ = writeln!(
        std::io::stderr().lock(),
        "warning: {file}:{}:{}: {} [{}]",
        warning.span.line,
        warning.span.column,
        warning.message,
        warning.rule
    );
}
