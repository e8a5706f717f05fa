//! Image layers: compression, safe unpacking of layer tars into snapshot
//! directories (overlayfs or flattened form) and deterministic packing of
//! directories into layer tars.

pub mod changes;
pub mod compression;
pub mod error;
pub mod pack;
pub mod pgzip;
pub mod unpack;

#[cfg(test)]
mod tests;

pub use compression::{
    Compression, LayerEncoder, compress_small, decoder, encoder, from_media_type, media_type,
    open_layer,
};
pub use error::LayerError;
pub use pack::{OwnerNames, PackOptions, PackStats, pack_directory, pack_path};
pub use pgzip::ParallelGzEncoder;
pub use unpack::{
    UnpackOptions, UnpackStats, WhiteoutMode, apply_layer, unpack_copy, unpack_layer,
};
