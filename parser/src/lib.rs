//! kiln-parser: reads Dockerfiles exactly as `docker build` (`BuildKit`)
//! does.
//!
//! The pipeline is text -> AST with spans ([`ast`]) -> typed instructions
//! grouped in stages ([`instructions`]) -> build plan with variables
//! expanded and the stage graph resolved.

pub mod ast;
pub mod dockerignore;
mod error;
pub mod instructions;
pub mod mount;
pub mod shell;
mod source;
pub mod values;

pub use error::{Error, ErrorDetails, ErrorKind};
pub use source::{SourceLines, Span};
