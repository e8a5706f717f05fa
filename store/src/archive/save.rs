//! `kiln save`: writes images as one tar archive, streaming, or as an OCI
//! image layout directory (`kiln build -o type=oci,tar=false`); both go
//! through the same writer.
//!
//! Entries are written in a fixed order with fixed metadata (mode 0644,
//! uid/gid 0, mtime 0), so saving the same images twice gives the same
//! bytes. Memory stays bounded: blobs are copied through a buffer, and a
//! compressed layer saved in docker format is decompressed twice, once to
//! learn its size (and check its `diff_id`) and once to write it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use kiln_reference::{Digest, ImageReference};
use serde::Serialize;

use crate::digest::{HashingReader, parse_sha256};
use crate::error::{IoContext, StoreError};
use crate::layer::compression::{Compression, decoder, media_type};
use crate::spec::{
    ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Descriptor, Index, Manifest, OCI_CONFIG, OCI_INDEX,
    OCI_MANIFEST,
};
use crate::store::{Image, Store, to_json};

/// The archive layout `kiln save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    /// `docker save`'s layout: manifest.json with uncompressed layers, plus
    /// oci-layout and index.json as Docker 25+ writes them, so Docker,
    /// Podman and skopeo's docker-archive and oci-archive readers all load
    /// it.
    Docker,
    /// An OCI image layout with the store's blobs as they are (compressed
    /// layers stay compressed).
    Oci,
}

/// One image to save, with the names to record for it.
#[derive(Debug, Clone)]
pub struct SaveRequest {
    /// The image.
    pub image: Image,
    /// Tags to write (empty: the image is saved untagged).
    pub tags: Vec<ImageReference>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Where the layout's files go: a tar stream or a directory. The paths
/// are the layout's own (`blobs/sha256/<hex>`, `index.json`, ...), never
/// taken from input.
trait Sink {
    /// Adds a directory.
    fn dir(&mut self, path: &str) -> Result<(), StoreError>;
    /// Adds a file of `size` bytes read from `data`.
    fn file(&mut self, path: &str, size: u64, data: &mut dyn Read) -> Result<(), StoreError>;
}

/// A tar stream.
struct TarSink<W: Write>(tar::Builder<W>);

impl<W: Write> Sink for TarSink<W> {
    fn dir(&mut self, path: &str) -> Result<(), StoreError> {
        self.0
            .append(&header(path, 0, true), io::empty())
            .at("archive output")
    }

    fn file(&mut self, path: &str, size: u64, data: &mut dyn Read) -> Result<(), StoreError> {
        self.0
            .append(&header(path, size, false), data)
            .at("archive output")
    }
}

/// A directory (an OCI image layout on disk), which must exist and be
/// empty.
struct DirSink<'a>(&'a Path);

impl Sink for DirSink<'_> {
    fn dir(&mut self, path: &str) -> Result<(), StoreError> {
        let path = self.0.join(path);
        fs::create_dir(&path).at(&path)
    }

    fn file(&mut self, path: &str, size: u64, data: &mut dyn Read) -> Result<(), StoreError> {
        let path = self.0.join(path);
        let mut file = fs::File::create_new(&path).at(&path)?;
        let copied = io::copy(&mut data.take(size), &mut file).at(&path)?;
        if copied != size {
            return Err(StoreError::SizeMismatch {
                what: path.display().to_string(),
                expected: size,
                actual: copied,
            });
        }
        file.sync_all().at(&path)
    }
}

/// Writes the images to `out` as a tar archive; returns the descriptor of
/// each request's manifest as written (for `docker`, the manifest the
/// archive holds, not the store's).
pub fn save_archive(
    store: &Store,
    requests: &[SaveRequest],
    format: SaveFormat,
    out: impl Write,
) -> Result<Vec<Descriptor>, StoreError> {
    let mut sink = TarSink(tar::Builder::new(out));
    let manifests = write_layout(store, requests, format, &mut sink)?;
    let mut out = sink
        .0
        .into_inner()
        .map_err(|e| StoreError::io("archive output", e))?;
    out.flush().at("archive output")?;
    Ok(manifests)
}

/// Writes the images as an OCI image layout (the files of
/// [`SaveFormat::Oci`]'s archive) into `dir`, which must exist and be
/// empty; returns each request's manifest descriptor. Files are synced;
/// the caller makes the whole directory appear at once (by renaming it).
pub fn save_layout(
    store: &Store,
    requests: &[SaveRequest],
    dir: &Path,
) -> Result<Vec<Descriptor>, StoreError> {
    let manifests = write_layout(store, requests, SaveFormat::Oci, &mut DirSink(dir))?;
    crate::blobs::sync_dir(&dir.join("blobs/sha256"))?;
    crate::blobs::sync_dir(dir)?;
    Ok(manifests)
}

fn write_layout(
    store: &Store,
    requests: &[SaveRequest],
    format: SaveFormat,
    builder: &mut dyn Sink,
) -> Result<Vec<Descriptor>, StoreError> {
    let mut written: BTreeSet<String> = BTreeSet::new();
    let mut index = Index::empty();
    let mut docker_entries = Vec::new();
    let mut manifests = Vec::with_capacity(requests.len());
    builder.dir("blobs/")?;
    builder.dir("blobs/sha256/")?;
    for request in requests {
        let image = &request.image;
        let names: Vec<String> = request.tags.iter().map(ToString::to_string).collect();
        let manifest_descriptor = match format {
            SaveFormat::Oci => {
                for descriptor in
                    std::iter::once(&image.manifest.config).chain(&image.manifest.layers)
                {
                    let digest = parse_sha256(&descriptor.digest)?;
                    append_blob(store, builder, &digest, &mut written)?;
                }
                append_blob(store, builder, &image.manifest_digest, &mut written)?;
                let size = store.blobs().size(&image.manifest_digest)?;
                let media_type = if image.manifest.media_type.is_empty() {
                    OCI_MANIFEST
                } else {
                    &image.manifest.media_type
                };
                Descriptor::new(media_type, &image.manifest_digest.to_string(), size)
            }
            SaveFormat::Docker => {
                let config_path = format!("blobs/sha256/{}", image.id.encoded());
                append_blob(store, builder, &image.id, &mut written)?;
                let mut layers = Vec::new();
                let mut layer_paths = Vec::new();
                for (layer, diff_id) in image
                    .manifest
                    .layers
                    .iter()
                    .zip(&image.config.rootfs.diff_ids)
                {
                    let digest = parse_sha256(&layer.digest)?;
                    let diff_id = parse_sha256(diff_id)?;
                    let size =
                        append_uncompressed(store, builder, &digest, &diff_id, &mut written)?;
                    layers.push(Descriptor::new(
                        media_type(Compression::None, false),
                        &diff_id.to_string(),
                        size,
                    ));
                    layer_paths.push(format!("blobs/sha256/{}", diff_id.encoded()));
                }
                let manifest = Manifest {
                    schema_version: 2,
                    media_type: OCI_MANIFEST.to_owned(),
                    config: Descriptor::new(
                        OCI_CONFIG,
                        &image.id.to_string(),
                        image.config_bytes.len() as u64,
                    ),
                    layers,
                    annotations: None,
                    extra: BTreeMap::new(),
                };
                let bytes = to_json(&manifest)?;
                let digest = crate::digest::digest_bytes(&bytes);
                let path = format!("blobs/sha256/{}", digest.encoded());
                if written.insert(path.clone()) {
                    append_bytes(builder, &path, &bytes)?;
                }
                docker_entries.push(DockerManifestEntry {
                    config: config_path,
                    repo_tags: if names.is_empty() {
                        None
                    } else {
                        Some(
                            request
                                .tags
                                .iter()
                                .map(ImageReference::familiar_string)
                                .collect(),
                        )
                    },
                    layers: layer_paths,
                });
                Descriptor::new(OCI_MANIFEST, &digest.to_string(), bytes.len() as u64)
            }
        };
        // A multi-platform image goes whole: every platform's blobs as
        // stored, and the index, which index.json names (a docker-format
        // manifest.json still lists this machine's platform, written above).
        let manifest_descriptor = match &image.index {
            Some(index_digest) => append_index(store, builder, index_digest, &mut written)?,
            None => manifest_descriptor,
        };
        manifests.push(manifest_descriptor.clone());
        if names.is_empty() {
            index.manifests.push(manifest_descriptor.clone());
        }
        for name in &names {
            let mut entry = manifest_descriptor.clone();
            let annotations = entry.annotations.get_or_insert_with(BTreeMap::new);
            annotations.insert(ANNOTATION_IMAGE_NAME.to_owned(), name.clone());
            annotations.insert(ANNOTATION_REF_NAME.to_owned(), name.clone());
            index.manifests.push(entry);
        }
    }
    append_bytes(builder, "index.json", &to_json(&index)?)?;
    if format == SaveFormat::Docker {
        append_bytes(builder, "manifest.json", &to_json(&docker_entries)?)?;
    }
    append_bytes(builder, "oci-layout", b"{\"imageLayoutVersion\":\"1.0.0\"}")?;
    Ok(manifests)
}

/// Writes a stored index and the blobs of each of its image manifests;
/// returns the index's descriptor.
fn append_index(
    store: &Store,
    builder: &mut dyn Sink,
    index_digest: &Digest,
    written: &mut BTreeSet<String>,
) -> Result<Descriptor, StoreError> {
    let (index, bytes): (Index, _) = store.read_json(index_digest)?;
    for entry in &index.manifests {
        let digest = parse_sha256(&entry.digest)?;
        let (manifest, _): (Manifest, _) = store.read_json(&digest)?;
        for descriptor in std::iter::once(&manifest.config).chain(&manifest.layers) {
            append_blob(store, builder, &parse_sha256(&descriptor.digest)?, written)?;
        }
        append_blob(store, builder, &digest, written)?;
    }
    append_blob(store, builder, index_digest, written)?;
    Ok(Descriptor::new(
        OCI_INDEX,
        &index_digest.to_string(),
        bytes.len() as u64,
    ))
}

fn header(path: &str, size: u64, dir: bool) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(if dir { 0o755 } else { 0o644 });
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(if dir {
        tar::EntryType::Directory
    } else {
        tar::EntryType::Regular
    });
    // Paths here are short ASCII (`blobs/sha256/<64 hex>`), within ustar's
    // 100-byte name field.
    let _ = header.set_path(path);
    header.set_cksum();
    header
}

fn append_bytes(builder: &mut dyn Sink, path: &str, mut bytes: &[u8]) -> Result<(), StoreError> {
    builder.file(path, bytes.len() as u64, &mut bytes)
}

/// Copies a stored blob into the archive, verifying it on the way.
fn append_blob(
    store: &Store,
    builder: &mut dyn Sink,
    digest: &Digest,
    written: &mut BTreeSet<String>,
) -> Result<(), StoreError> {
    let path = format!("blobs/sha256/{}", digest.encoded());
    if !written.insert(path.clone()) {
        return Ok(());
    }
    let size = store.blobs().size(digest)?;
    let mut reader = store.blobs().open(digest)?;
    let mut failure = None;
    let result = builder.file(
        &path,
        size,
        &mut ErrorTrap {
            inner: &mut reader,
            failure: &mut failure,
        },
    );
    if let Some(e) = failure {
        return Err(reader.error(e));
    }
    result
}

/// Writes a layer uncompressed, as docker-archive readers expect, and
/// returns its uncompressed size. The tar header needs the size first: it
/// comes from the store's record of the layer when there is one, else from
/// a first decompression pass. Either way the bytes written are checked
/// against the size and the `diff_id` as they go, and a mismatch fails the
/// save.
fn append_uncompressed(
    store: &Store,
    builder: &mut dyn Sink,
    digest: &Digest,
    diff_id: &Digest,
    written: &mut BTreeSet<String>,
) -> Result<u64, StoreError> {
    let path = format!("blobs/sha256/{}", diff_id.encoded());
    let open = || -> Result<Box<dyn Read + '_>, StoreError> {
        let mut reader = io::BufReader::with_capacity(1 << 20, store.blobs().open(digest)?);
        let compression = {
            use io::BufRead as _;
            Compression::detect(reader.fill_buf().at(store.blobs().path(digest))?)
        };
        Ok(decoder(reader, compression))
    };
    let size = match store.recorded_diff(digest) {
        Some((recorded, size)) if &recorded == diff_id => size,
        _ => {
            let mut hashing = HashingReader::new(open()?);
            io::copy(&mut hashing, &mut io::sink())
                .map_err(|e| layer_read_error(store, digest, e))?;
            let (actual, size) = hashing.finish();
            if &actual != diff_id {
                return Err(StoreError::DiffIdMismatch {
                    layer: digest.to_string(),
                    expected: diff_id.to_string(),
                    actual: actual.to_string(),
                });
            }
            size
        }
    };
    if !written.insert(path.clone()) {
        return Ok(size);
    }
    let mut failure = None;
    let mut hashing = HashingReader::new(open()?);
    let result = builder.file(
        &path,
        size,
        &mut ErrorTrap {
            inner: (&mut hashing).take(size),
            failure: &mut failure,
        },
    );
    if let Some(e) = failure {
        return Err(layer_read_error(store, digest, e));
    }
    result?;
    // Anything beyond the recorded size also counts against the diff_id.
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| layer_read_error(store, digest, e))?;
    let (actual, actual_size) = hashing.finish();
    if actual_size != size {
        return Err(StoreError::SizeMismatch {
            what: format!("layer {digest} (uncompressed)"),
            expected: size,
            actual: actual_size,
        });
    }
    if &actual != diff_id {
        return Err(StoreError::DiffIdMismatch {
            layer: digest.to_string(),
            expected: diff_id.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(size)
}

fn layer_read_error(store: &Store, digest: &Digest, e: io::Error) -> StoreError {
    match store.blobs().open(digest) {
        Ok(reader) => reader.error(e),
        Err(open) => open,
    }
}

/// Remembers a read error, so that it is reported as a blob error rather
/// than as a failure to write the archive.
struct ErrorTrap<'a, R> {
    inner: R,
    failure: &'a mut Option<io::Error>,
}

impl<R: Read> Read for ErrorTrap<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let copy = io::Error::new(e.kind(), e.to_string());
            *self.failure = Some(e);
            copy
        })
    }
}
