//! Deterministic packing of a directory tree into a layer tar.
