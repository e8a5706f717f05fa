//! One module per command.

pub mod parse;
