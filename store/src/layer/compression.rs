//! Layer compression: detection by magic number, decoders, deterministic
//! encoders and the OCI / Docker media types.

use std::io::{self, Read, Write};

use flate2::read::MultiGzDecoder;

use super::error::LayerError;
use super::pgzip::ParallelGzEncoder;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip (RFC 1952), possibly several concatenated members.
    Gzip,
    /// Zstandard frames.
    Zstd,
}

/// gzip level used for layers: the level Docker and BuildKit use.
pub(crate) const GZIP_LEVEL: u32 = 6;
/// zstd level used for layers: the library default.
const ZSTD_LEVEL: i32 = 3;

impl Compression {
    /// Detects the compression from the first bytes of a blob (4 are enough).
    ///
    /// gzip starts with `1f 8b`; a zstd frame with `28 b5 2f fd` and a zstd
    /// skippable frame with `5? 2a 4d 18`. Anything else is taken as plain tar.
    pub fn detect(first_bytes: &[u8]) -> Compression {
        match first_bytes {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            [b, 0x2a, 0x4d, 0x18, ..] if b & 0xf0 == 0x50 => Compression::Zstd,
            _ => Compression::None,
        }
    }
}

/// Wraps `r` in a decoder for `c`.
///
/// gzip uses `MultiGzDecoder` so that concatenated members (as produced by
/// parallel compressors) are read completely. Creating a zstd context can only
/// fail on allocation failure; that error is then returned by the first read.
pub fn decoder<'a, R: Read + 'a>(r: R, c: Compression) -> Box<dyn Read + 'a> {
    match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(MultiGzDecoder::new(r)),
        Compression::Zstd => match zstd::Decoder::new(r) {
            Ok(d) => Box::new(d),
            Err(e) => Box::new(FailedReader(Some(e))),
        },
    }
}

/// A reader that reports a construction error on first use.
struct FailedReader(Option<io::Error>);

impl Read for FailedReader {
    fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(self
            .0
            .take()
            .unwrap_or_else(|| io::Error::other("zstd decoder unavailable")))
    }
}

/// Sniffs the compression of a layer blob from its first bytes (without
/// seeking) and returns it with a reader of the decompressed tar stream.
pub fn open_layer<'a, R: Read + 'a>(
    mut r: R,
) -> Result<(Compression, Box<dyn Read + 'a>), LayerError> {
    let mut magic = [0u8; 4];
    let mut filled = 0;
    while filled < magic.len() {
        let slot = magic.get_mut(filled..).unwrap_or_default();
        match r.read(slot) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(LayerError::io("reading layer magic bytes", e)),
        }
    }
    let head = magic.get(..filled).unwrap_or_default();
    let c = Compression::detect(head);
    let rejoined = io::Cursor::new(head.to_vec()).chain(r);
    Ok((c, decoder(rejoined, c)))
}

/// A compressing writer made by [`encoder`]; call [`LayerEncoder::finish`]
/// to write the trailer and get the inner writer back.
pub enum LayerEncoder<W: Write> {
    /// No compression: writes pass through.
    None(W),
    /// gzip, level 6, one member, compressed in parallel blocks.
    Gzip(ParallelGzEncoder<W>),
    /// zstd, level 3.
    Zstd(zstd::Encoder<'static, W>),
}

impl<W: Write> LayerEncoder<W> {
    /// Flushes the compressor, writes the trailer and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            LayerEncoder::None(mut w) => {
                w.flush()?;
                Ok(w)
            }
            LayerEncoder::Gzip(e) => e.finish(),
            LayerEncoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for LayerEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            LayerEncoder::None(w) => w.write(buf),
            LayerEncoder::Gzip(e) => e.write(buf),
            LayerEncoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            LayerEncoder::None(w) => w.flush(),
            LayerEncoder::Gzip(e) => e.flush(),
            LayerEncoder::Zstd(e) => e.flush(),
        }
    }
}

/// A compressing writer whose output depends only on the input bytes.
///
/// gzip: level 6, a single member, header without file name and with mtime 0
/// and OS byte 255, compressed pigz-style in 1 MiB blocks on up to 4 threads
/// (see [`ParallelGzEncoder`]); the bytes do not depend on the thread count.
/// zstd: level 3 in zstd's multi-threaded mode, with as many workers as
/// gzip gets: its output with `n >= 1` workers is the same for every `n`
/// (it differs only from the single-threaded mode), so layer digests do
/// not depend on the core count, and two workers compress a 400 MB tar in
/// 1.34 s where one takes 2.25 s (zstd 1.5 on the 2-core test machine).
pub fn encoder<W: Write>(w: W, c: Compression) -> Result<LayerEncoder<W>, LayerError> {
    match c {
        Compression::None => Ok(LayerEncoder::None(w)),
        Compression::Gzip => Ok(LayerEncoder::Gzip(
            ParallelGzEncoder::new(w)
                .map_err(|e| LayerError::io("starting gzip worker threads", e))?,
        )),
        Compression::Zstd => {
            let mut e = zstd::Encoder::new(w, ZSTD_LEVEL)
                .map_err(|e| LayerError::io("creating zstd encoder", e))?;
            let workers = u32::try_from(super::pgzip::default_threads()).unwrap_or(1);
            e.multithread(workers)
                .map_err(|e| LayerError::io("enabling zstd worker threads", e))?;
            Ok(LayerEncoder::Zstd(e))
        }
    }
}

/// Compresses a small layer held in memory on this thread (zstd level 3
/// in single-threaded mode, whose bytes differ from [`encoder`]'s
/// multi-threaded ones; gzip as [`encoder`] writes it). For a layer of a
/// few KiB, [`encoder`]'s worker threads and buffers cost far more than
/// the compression: a build cache export of 24 such layers spent 30 ms of
/// system time on them.
pub fn compress_small(data: &[u8], c: Compression) -> Result<Vec<u8>, LayerError> {
    match c {
        Compression::None => Ok(data.to_vec()),
        Compression::Zstd => zstd::bulk::compress(data, ZSTD_LEVEL)
            .map_err(|e| LayerError::io("compressing a small layer", e)),
        Compression::Gzip => {
            let mut e = encoder(Vec::new(), Compression::Gzip)?;
            e.write_all(data)
                .and_then(|()| e.finish())
                .map_err(|e| LayerError::io("compressing a small layer", e))
        }
    }
}

/// OCI layer media type, uncompressed.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI layer media type, gzip.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI layer media type, zstd.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker v2 schema 2 layer media type, gzip.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker v2 schema 2 layer media type, uncompressed.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// The layer media type for `c` in an OCI (`docker == false`) or Docker v2
/// manifest. Docker has no zstd layer type; Docker itself writes the OCI
/// zstd type into Docker manifests, and so does this function.
pub fn media_type(c: Compression, docker: bool) -> &'static str {
    match (c, docker) {
        (Compression::None, false) => OCI_LAYER,
        (Compression::Gzip, false) => OCI_LAYER_GZIP,
        (Compression::Zstd, _) => OCI_LAYER_ZSTD,
        (Compression::None, true) => DOCKER_LAYER,
        (Compression::Gzip, true) => DOCKER_LAYER_GZIP,
    }
}

/// The compression named by a layer media type: OCI (including the
/// nondistributable variants) and Docker v2 (including foreign layers).
/// `None` for anything that is not a layer media type.
pub fn from_media_type(media_type: &str) -> Option<Compression> {
    match media_type {
        OCI_LAYER | DOCKER_LAYER | "application/vnd.oci.image.layer.nondistributable.v1.tar" => {
            Some(Compression::None)
        }
        OCI_LAYER_GZIP
        | DOCKER_LAYER_GZIP
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Compression::Gzip),
        OCI_LAYER_ZSTD | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
            Some(Compression::Zstd)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    /// What layer digests rest on: zstd's multi-threaded output is the same
    /// whatever the number of workers, so a layer compressed on 2 cores
    /// has the digest it has on 64.
    #[test]
    fn zstd_output_does_not_depend_on_the_worker_count() {
        // Several MiB of mixed data, so that more than one job is made.
        let mut data = Vec::new();
        for i in 0u32..2_000_000 {
            data.extend_from_slice(&(i.wrapping_mul(2_654_435_761) >> (i % 7)).to_le_bytes());
        }
        let compress = |workers: u32| {
            let mut e = zstd::Encoder::new(Vec::new(), super::ZSTD_LEVEL).unwrap();
            e.multithread(workers).unwrap();
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        let one = compress(1);
        assert_eq!(compress(2), one);
        assert_eq!(compress(4), one);
    }
}
