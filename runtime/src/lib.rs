//! kiln-runtime: runs one process in Linux namespaces over an overlayfs
//! snapshot of an image, for RUN steps and `kiln run`.

pub mod user;
