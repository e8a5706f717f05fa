//! Writing new content: layers from tar streams or directories, image
//! configs and manifests.

use std::io::{self, Read, Write};
use std::path::Path;

use kiln_reference::{Digest, ImageReference};

use crate::digest::HashingWriter;
use crate::error::{IoContext, StoreError};
use crate::layer::{Compression, LayerError, PackOptions, encoder, media_type, pack_directory};
use crate::spec::{
    Descriptor, ImageConfig, Index, Manifest, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, Platform,
};
use crate::store::{Store, to_json};

/// A layer written to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLayer {
    /// The manifest descriptor of the (compressed) blob.
    pub descriptor: Descriptor,
    /// The digest of the uncompressed tar.
    pub diff_id: Digest,
    /// The size of the uncompressed tar.
    pub diff_size: u64,
}

impl Store {
    /// Stores an uncompressed tar stream as a layer, compressed with
    /// `compression`. The tar structure is checked on the way (every
    /// header is parsed), so a file that is not a tar archive is refused.
    pub fn write_layer(
        &self,
        tar_stream: impl Read,
        compression: Compression,
    ) -> Result<NewLayer, StoreError> {
        self.write_layer_with(compression, true, |sink| {
            let mut tee = TeeReader {
                inner: tar_stream,
                sink,
                failed: None,
            };
            let read = (|| {
                let mut archive = tar::Archive::new(&mut tee);
                let entries = archive
                    .entries()
                    .map_err(|e| StoreError::Archive(format!("not a tar archive: {e}")))?;
                for (number, entry) in entries.enumerate() {
                    let mut entry = entry.map_err(|e| {
                        StoreError::Archive(format!(
                            "not a tar archive or truncated at entry {}: {e}",
                            number + 1
                        ))
                    })?;
                    io::copy(&mut entry, &mut io::sink())
                        .map_err(|e| StoreError::Archive(format!("truncated tar archive: {e}")))?;
                }
                Ok(())
            })();
            // The end-of-archive blocks and any padding after them.
            let read = read.and_then(|()| {
                io::copy(&mut tee, &mut io::sink())
                    .map(drop)
                    .at("layer input")
            });
            // The tar reader reports a failed write to the layer as a bad
            // input; the write's own error is the cause.
            match tee.failed.take() {
                Some(e) => Err(StoreError::from(LayerError::io("writing the layer", e))),
                None => read,
            }
        })
    }

    /// Packs a directory into a layer (see [`pack_directory`]).
    pub fn write_layer_from_directory(
        &self,
        dir: &Path,
        compression: Compression,
        options: &PackOptions,
    ) -> Result<NewLayer, StoreError> {
        self.write_layer_with(compression, true, |sink| {
            pack_directory(dir, sink, options)?;
            Ok(())
        })
    }

    /// [`Self::write_layer_from_directory`] for build steps: the blob is not
    /// fsynced, as a builder's layer cache is not (BuildKit's overlay
    /// snapshots are not either). Waiting for a 400 MB layer to reach the
    /// disk would double a COPY step's time; a layer lost to a power
    /// failure fails digest verification and is rebuilt.
    pub fn write_build_layer(
        &self,
        dir: &Path,
        compression: Compression,
        options: &PackOptions,
    ) -> Result<NewLayer, StoreError> {
        let layer = self.write_layer_with(compression, false, |sink| {
            pack_directory(dir, sink, options)?;
            Ok(())
        })?;
        crate::fault::point("build.layer.written");
        Ok(layer)
    }

    /// Runs `produce`, which writes an uncompressed tar, through a `diff_id`
    /// hasher and a compressor into a new blob.
    fn write_layer_with(
        &self,
        compression: Compression,
        durable: bool,
        produce: impl FnOnce(&mut dyn Write) -> Result<(), StoreError>,
    ) -> Result<NewLayer, StoreError> {
        let tmp = self.tmp_dir();
        let file = tempfile::Builder::new()
            .prefix("layer-")
            .tempfile_in(&tmp)
            .at(&tmp)?;
        // Write errors name the blob file (see Writeback::write).
        let write_error = |e| StoreError::from(LayerError::io("finishing the layer", e));
        let sink = Writeback::new(file, durable);
        let (digest, size, diff_id, diff_size, sink) = if compression == Compression::None {
            // The blob is the tar itself: one hash serves as both digests,
            // computed (and the file written) on another thread while the
            // tar is produced.
            let mut pipe = HashPipe::new(sink).at(&tmp)?;
            let produced = produce(&mut pipe);
            let finished = pipe.finish();
            // A failed write stops the producer with the writer's own error
            // (see HashPipe::send), so `produced` carries the cause.
            produced?;
            let (diff_id, diff_size, sink) = finished.map_err(write_error)?;
            (diff_id.clone(), diff_size, diff_id, diff_size, sink)
        } else {
            let blob_writer = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, sink));
            let mut diff_writer = HashingWriter::new(encoder(blob_writer, compression)?);
            produce(&mut diff_writer)?;
            let (diff_id, diff_size, compressor) = diff_writer.finish();
            let blob_writer = compressor.finish().map_err(write_error)?;
            let (digest, size, buffered) = blob_writer.finish();
            let sink = buffered
                .into_inner()
                .map_err(|e| write_error(e.into_error()))?;
            (digest, size, diff_id, diff_size, sink)
        };
        let file = sink.into_inner();
        self.blobs().commit_with(file, &digest, durable)?;
        if compression != Compression::None {
            self.record_diff(&digest, &diff_id, diff_size)?;
        }
        Ok(NewLayer {
            descriptor: Descriptor::new(media_type(compression, false), &digest.to_string(), size),
            diff_id,
            diff_size,
        })
    }

    /// Writes a config and a manifest for `layers` and tags the image.
    /// Returns the manifest descriptor and the image ID.
    pub fn commit_image(
        &self,
        config: &ImageConfig,
        layers: &[Descriptor],
        references: &[ImageReference],
    ) -> Result<(Descriptor, Digest), StoreError> {
        let (descriptor, id) = self.write_image(config, layers)?;
        self.add_image(&descriptor, references)?;
        Ok((descriptor, id))
    }

    /// Writes an OCI image index of `manifests` (each with its platform,
    /// in the order given) and tags it: a multi-platform image. The
    /// manifests' blobs must be in the store; index.json lists only the
    /// index, which keeps them (garbage collection and `system check`
    /// follow nested indexes). Returns the index's descriptor.
    ///
    /// # Errors
    ///
    /// The index blob cannot be written or index.json cannot be updated.
    pub fn commit_index(
        &self,
        manifests: &[(Descriptor, Platform)],
        references: &[ImageReference],
    ) -> Result<Descriptor, StoreError> {
        let index = Index {
            manifests: manifests
                .iter()
                .map(|(descriptor, platform)| {
                    let mut entry = descriptor.clone();
                    entry.platform = Some(platform.clone());
                    entry
                })
                .collect(),
            ..Index::empty()
        };
        let bytes = to_json(&index)?;
        let digest = self.blobs().write_bytes(&bytes)?;
        let descriptor = Descriptor::new(OCI_INDEX, &digest.to_string(), bytes.len() as u64);
        self.add_image(&descriptor, references)?;
        Ok(descriptor)
    }

    /// Writes the config and manifest blobs of an image without adding it
    /// to the store's index: an image that goes only to a registry, whose
    /// layers need not all be in the store. Returns the manifest's
    /// descriptor and the image ID.
    ///
    /// # Errors
    ///
    /// The blobs cannot be written.
    pub fn write_image(
        &self,
        config: &ImageConfig,
        layers: &[Descriptor],
    ) -> Result<(Descriptor, Digest), StoreError> {
        let config_bytes = to_json(config)?;
        let id = self.blobs().write_bytes(&config_bytes)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: OCI_MANIFEST.to_owned(),
            config: Descriptor::new(OCI_CONFIG, &id.to_string(), config_bytes.len() as u64),
            layers: layers.to_vec(),
            annotations: None,
            extra: std::collections::BTreeMap::new(),
        };
        let manifest_bytes = to_json(&manifest)?;
        let digest = self.blobs().write_bytes(&manifest_bytes)?;
        let descriptor = Descriptor::new(
            OCI_MANIFEST,
            &digest.to_string(),
            manifest_bytes.len() as u64,
        );
        Ok((descriptor, id))
    }
}

/// A writer that hands 1 MiB chunks to a thread which hashes them and
/// writes them to the blob, so reading the layer's files, hashing and
/// writing overlap.
struct HashPipe {
    buffer: Vec<u8>,
    sender: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    worker: Option<std::thread::JoinHandle<io::Result<(Digest, u64, Writeback)>>>,
}

/// Chunk size handed to the hashing thread.
const PIPE_CHUNK: usize = 1 << 20;

impl HashPipe {
    fn new(mut sink: Writeback) -> io::Result<Self> {
        // A few chunks in flight keep both threads busy with bounded memory.
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let worker = std::thread::Builder::new()
            .name("kiln-layer-hash".to_owned())
            .spawn(move || {
                let mut hasher = crate::digest::Hasher::new();
                let mut size = 0u64;
                for chunk in receiver {
                    hasher.update(&chunk);
                    sink.write_all(&chunk)?;
                    size += chunk.len() as u64;
                }
                Ok((hasher.finish(), size, sink))
            })?;
        Ok(Self {
            buffer: Vec::with_capacity(PIPE_CHUNK),
            sender: Some(sender),
            worker: Some(worker),
        })
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(PIPE_CHUNK));
        let sent = self.sender.as_ref().map(|s| s.send(chunk));
        match sent {
            Some(Ok(())) => Ok(()),
            // The worker stopped because a write failed: that error is the
            // cause, and the caller (the tar writer) reports it with the
            // entry being written.
            _ => Err(self.worker_error()),
        }
    }

    /// The error that stopped the worker (after which it has exited).
    fn worker_error(&mut self) -> io::Error {
        self.sender = None;
        match self.worker.take().map(std::thread::JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            Some(Ok(Ok(_))) => io::Error::other("layer writer thread ended early"),
            Some(Err(_)) => io::Error::other("layer writer thread panicked"),
            None => io::Error::other("layer writer thread stopped earlier"),
        }
    }

    /// Waits for the worker: the digest and size of everything written,
    /// and the file.
    fn finish(mut self) -> io::Result<(Digest, u64, Writeback)> {
        // A failed send already carries the worker's own error.
        self.send()?;
        self.sender = None;
        match self.worker.take() {
            Some(worker) => worker
                .join()
                .map_err(|_| io::Error::other("layer writer thread panicked"))?,
            None => Err(io::Error::other("layer writer thread stopped earlier")),
        }
    }
}

impl Write for HashPipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = PIPE_CHUNK - self.buffer.len();
        let n = buf.len().min(room);
        self.buffer
            .extend_from_slice(buf.get(..n).unwrap_or_default());
        if self.buffer.len() == PIPE_CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for HashPipe {
    fn drop(&mut self) {
        // Closing the channel ends the worker; wait so the file is closed.
        self.sender = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// A blob file that asks the kernel to start writing back every few MiB
/// as they are written, so the fsync at commit waits for the tail only
/// rather than the whole layer.
struct Writeback {
    file: tempfile::NamedTempFile,
    written: u64,
    flushed: u64,
    /// Whether the blob will be fsynced (otherwise write-back is left to
    /// the kernel).
    durable: bool,
}

/// How much unsynced data a blob file may gather before write-back starts.
const WRITEBACK_CHUNK: u64 = 8 << 20;

impl Writeback {
    fn new(file: tempfile::NamedTempFile, durable: bool) -> Self {
        Self {
            file,
            written: 0,
            flushed: 0,
            durable,
        }
    }

    fn into_inner(self) -> tempfile::NamedTempFile {
        self.file
    }
}

impl Write for Writeback {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.as_file_mut().write(buf).map_err(|e| {
            // Kept as the same kind and cause; the message names the file.
            io::Error::new(
                e.kind(),
                format!("writing layer blob {}: {e}", self.file.path().display()),
            )
        })?;
        self.written += n as u64;
        if self.durable && self.written - self.flushed >= WRITEBACK_CHUNK {
            let offset = i64::try_from(self.flushed).unwrap_or(i64::MAX);
            let len = i64::try_from(self.written - self.flushed).unwrap_or(0);
            // SAFETY: a plain syscall on our own open descriptor; a failure
            // only means the later fsync does all the work.
            unsafe {
                libc::sync_file_range(
                    std::os::fd::AsRawFd::as_raw_fd(self.file.as_file()),
                    offset,
                    len,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.flushed = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_file_mut().flush()
    }
}

/// Copies everything read into a writer, keeping the writer's error (the
/// reader's caller would otherwise take it for a bad input).
struct TeeReader<'a, R> {
    inner: R,
    sink: &'a mut dyn Write,
    failed: Option<io::Error>,
}

impl<R: Read> Read for TeeReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failed.is_some() {
            return Err(io::Error::other("the layer could not be written"));
        }
        let n = self.inner.read(buf)?;
        if let Err(e) = self.sink.write_all(buf.get(..n).unwrap_or_default()) {
            let reported = io::Error::new(e.kind(), e.to_string());
            self.failed = Some(e);
            return Err(reported);
        }
        Ok(n)
    }
}

/// The layer compression named on a command line.
pub fn parse_compression(name: &str) -> Option<Compression> {
    match name {
        "gzip" => Some(Compression::Gzip),
        "zstd" => Some(Compression::Zstd),
        "none" | "uncompressed" => Some(Compression::None),
        _ => None,
    }
}
