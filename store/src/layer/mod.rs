//! TEMPORARY stand-in until the layer module lands (compression sniffing only).
pub mod compression;
