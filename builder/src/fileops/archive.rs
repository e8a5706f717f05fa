//! Recognising and decompressing the tar archives ADD extracts from local
//! sources.

use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use super::copier::open_source;
use crate::error::BuildError;

/// Compression of an archive ADD extracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ArchiveKind {
    Plain,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl ArchiveKind {
    /// The compression from the first bytes, as Docker's
    /// `DetectCompression` does.
    fn detect(head: &[u8]) -> Self {
        match head {
            [0x1f, 0x8b, 0x08, ..] => Self::Gzip,
            [b'B', b'Z', b'h', ..] => Self::Bzip2,
            [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Self::Xz,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Self::Zstd,
            [b, 0x2a, 0x4d, 0x18, ..] if b & 0xf0 == 0x50 => Self::Zstd,
            _ => Self::Plain,
        }
    }
}

/// A decompressed stream of archive `src`. xz has no streaming decoder
/// here, so it is decompressed into an anonymous temporary file first.
pub(super) fn open_archive(src: &Path, kind: ArchiveKind) -> Result<Box<dyn Read>, BuildError> {
    let file = open_source(src).map_err(|e| BuildError::io(src, e))?;
    let io_err = |e| BuildError::io(src, e);
    Ok(match kind {
        ArchiveKind::Plain => Box::new(BufReader::new(file)),
        ArchiveKind::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file))),
        ArchiveKind::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(BufReader::new(file))),
        ArchiveKind::Zstd => Box::new(zstd::Decoder::new(file).map_err(io_err)?),
        ArchiveKind::Xz => {
            let mut tmp = tempfile::tempfile().map_err(io_err)?;
            {
                let mut w = io::BufWriter::new(&mut tmp);
                lzma_rs::xz_decompress(&mut BufReader::new(file), &mut w).map_err(|e| {
                    io_err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
                })?;
                w.flush().map_err(io_err)?;
            }
            io::Seek::rewind(&mut tmp).map_err(io_err)?;
            Box::new(BufReader::new(tmp))
        }
    })
}

/// A writer that keeps the first block and then stops the writer feeding
/// it, to sniff an xz stream without decompressing all of it.
struct Head(Vec<u8>);

impl Write for Head {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = 512usize.saturating_sub(self.0.len());
        if room == 0 {
            return Err(io::Error::other("enough"));
        }
        let take = room.min(buf.len());
        self.0
            .extend_from_slice(buf.get(..take).unwrap_or_default());
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The archive kind of `src` if it is a tar archive (its first header has
/// a valid checksum after decompression), as `BuildKit`'s `isArchivePath`
/// decides.
pub(super) fn sniff_archive(src: &Path) -> Result<Option<ArchiveKind>, BuildError> {
    let mut file = open_source(src).map_err(|e| BuildError::io(src, e))?;
    let mut head = [0u8; 6];
    let n = read_full(&mut file, &mut head).map_err(|e| BuildError::io(src, e))?;
    let kind = ArchiveKind::detect(head.get(..n).unwrap_or_default());
    let block = if kind == ArchiveKind::Xz {
        let mut out = Head(Vec::new());
        let file = open_source(src).map_err(|e| BuildError::io(src, e))?;
        // Stopped by `Head` after one block, or a decoding error: either
        // way what was decoded is judged below.
        let _ = lzma_rs::xz_decompress(&mut BufReader::new(file), &mut out);
        out.0
    } else {
        let Ok(mut stream) = open_archive(src, kind) else {
            return Ok(None);
        };
        let mut block = vec![0u8; 512];
        let n = read_full(&mut stream, &mut block).unwrap_or(0);
        block.truncate(n);
        block
    };
    Ok(is_tar_header(&block).then_some(kind))
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while let Some(slot) = buf.get_mut(filled..) {
        if slot.is_empty() {
            break;
        }
        match r.read(slot) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Whether `block` is a tar header: 512 bytes, not all zero (the end of an
/// archive), with a checksum that matches (unsigned or signed sum, as Go's
/// `archive/tar` accepts).
fn is_tar_header(block: &[u8]) -> bool {
    if block.len() < 512 || block.iter().all(|&b| b == 0) {
        return false;
    }
    let Some(field) = block.get(148..156) else {
        return false;
    };
    let text: String = field
        .iter()
        .map(|&b| char::from(b))
        .filter(|c| ('0'..='7').contains(c))
        .collect();
    let Ok(want) = i64::from_str_radix(&text, 8) else {
        return false;
    };
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &b) in block.iter().take(512).enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += i64::from(b);
        #[allow(clippy::cast_possible_wrap, reason = "tar's signed checksum variant")]
        let s = b as i8;
        signed += i64::from(s);
    }
    want == unsigned || want == signed
}
