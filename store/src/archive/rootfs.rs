//! An image's file system as one directory: its layers unpacked in order
//! into the same tree with their whiteouts applied, for `kiln build
//! --output type=local|tar`. It goes through the store's one layer
//! unpacker ([`crate::layer::unpack_layer`]), so a hostile layer is as
//! confined here as when it becomes a snapshot.

use std::io;
use std::path::Path;

use crate::digest::{HashingReader, parse_sha256};
use crate::error::StoreError;
use crate::layer::{UnpackOptions, WhiteoutMode, open_layer, unpack_layer};
use crate::store::{Image, Store};

/// Unpacks `image`'s layers, base first, into `dest` (an existing, empty
/// directory): `.wh.NAME` removes what a lower layer put at `NAME`, an
/// opaque directory drops its lower contents, and modes, owners, mtimes,
/// xattrs and hard links are kept as [`unpack_layer`] writes them. Each
/// layer's uncompressed stream is checked against its `diff_id`.
pub fn unpack_rootfs(store: &Store, image: &Image, dest: &Path) -> Result<(), StoreError> {
    let diff_ids = &image.config.rootfs.diff_ids;
    if diff_ids.len() != image.manifest.layers.len() {
        return Err(StoreError::InvalidDocument {
            what: format!("image {}", image.id),
            reason: format!(
                "the manifest has {} layers but the config {} diff_ids",
                image.manifest.layers.len(),
                diff_ids.len()
            ),
        });
    }
    let opts = UnpackOptions {
        whiteouts: WhiteoutMode::Apply,
    };
    for (layer, diff_id) in image.manifest.layers.iter().zip(diff_ids) {
        let digest = parse_sha256(&layer.digest)?;
        let diff_id = parse_sha256(diff_id)?;
        let wrap = |source: StoreError| StoreError::Snapshot {
            layer: digest.to_string(),
            source: Box::new(source),
        };
        let blob = store.blobs().open(&digest)?;
        let (_, decoded) = open_layer(blob).map_err(|e| wrap(e.into()))?;
        let mut hashing = HashingReader::new(decoded);
        unpack_layer(&mut hashing, dest, &opts).map_err(|e| wrap(e.into()))?;
        // The tar's end may come before the stream's: the rest counts too.
        io::copy(&mut hashing, &mut io::sink()).map_err(|e| {
            wrap(StoreError::Archive(format!(
                "cannot decompress the layer: {e}"
            )))
        })?;
        let actual = hashing.digest();
        if actual != diff_id {
            return Err(StoreError::DiffIdMismatch {
                layer: digest.to_string(),
                expected: diff_id.to_string(),
                actual: actual.to_string(),
            });
        }
    }
    Ok(())
}
