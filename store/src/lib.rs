//! kiln-store: content-addressed blobs, image index and tags, layers, snapshots, archives.

pub mod layer;
