//! kiln-parser: reads Dockerfiles exactly as `docker build` (`BuildKit`)
//! does.
//!
//! The pipeline is text -> AST with spans ([`ast`]) -> typed instructions
//! grouped in stages ([`instructions`]) -> build plan with variables
//! expanded and the stage graph resolved ([`plan`]). Beside it:
//! [`shell`] (variable expansion), [`dockerignore`], [`mount`] (RUN flags)
//! and [`values`] (image references, durations, ports, signals, chmod,
//! platforms).

pub mod ast;
pub mod csv;
pub mod dockerignore;
mod error;
pub mod golang;
pub mod instructions;
pub mod mount;
pub mod plan;
pub mod shell;
mod source;
mod suggest;
#[cfg(test)]
mod testing;
pub mod values;

pub use error::{Error, ErrorDetails, ErrorKind, render_located};
pub use source::{SourceLines, Span};
