//! TEMPORARY stand-in.
use std::io::Read;
/// Compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// None.
    None,
    /// Gzip.
    Gzip,
    /// Zstd.
    Zstd,
}
impl Compression {
    /// Detect.
    pub fn detect(b: &[u8]) -> Self {
        if b.starts_with(&[0x1f, 0x8b]) {
            Self::Gzip
        } else if b.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Self::Zstd
        } else {
            Self::None
        }
    }
}
/// Decoder.
pub fn decoder<'a, R: Read + 'a>(r: R, c: Compression) -> Box<dyn Read + 'a> {
    match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => match zstd::Decoder::new(r) {
            Ok(d) => Box::new(d),
            Err(_) => Box::new(std::io::empty()),
        },
    }
}
/// Media type.
pub fn media_type(c: Compression, _docker: bool) -> &'static str {
    match c {
        Compression::None => "application/vnd.oci.image.layer.v1.tar",
        Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    }
}
