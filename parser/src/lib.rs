//! kiln-parser: reads Dockerfiles exactly as `docker build` (BuildKit) does.
//!
//! The pipeline is text -> AST with spans -> typed instructions -> stages ->
//! stage graph, one module per step.

pub mod shell;
