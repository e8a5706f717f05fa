//! SHA-256 content digests: validation of digest strings and hashing
//! readers and writers.

use std::io::{self, Read, Write};

use kiln_reference::Digest;
use sha2::{Digest as _, Sha256};

use crate::error::StoreError;

/// Parses a digest string and insists on sha256, the only algorithm the
/// store keeps blobs under. Rejects `sha256:../x`, uppercase hex and
/// wrong lengths, so a digest can always be used as a file name.
pub fn parse_sha256(value: &str) -> Result<Digest, StoreError> {
    let digest = Digest::parse(value).map_err(|source| StoreError::InvalidDigest {
        value: value.to_owned(),
        source,
    })?;
    if digest.algorithm() != "sha256" {
        return Err(StoreError::UnsupportedDigest {
            value: value.to_owned(),
        });
    }
    Ok(digest)
}

/// A running SHA-256.
#[derive(Clone, Default)]
pub struct Hasher(Sha256);

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self(Sha256::new())
    }

    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of everything added.
    pub fn finish(self) -> Digest {
        Digest::from_sha256(&self.0.finalize().into())
    }
}

/// The digest of some bytes.
pub fn digest_bytes(bytes: &[u8]) -> Digest {
    let mut hasher = Hasher::new();
    hasher.update(bytes);
    hasher.finish()
}

/// The OCI image spec's `ChainID` of a layer applied on the chain `parent`
/// (`None`: the first layer): `ChainID(L0) = DiffID(L0)`,
/// `ChainID(L0|…|Ln) = SHA256(ChainID(L0|…|Ln-1) + " " + DiffID(Ln))`,
/// both digests written out as `sha256:<hex>`. It names what a snapshot
/// holds, which depends on the layers below as well as on the layer.
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(parent) => digest_bytes(format!("{parent} {diff_id}").as_bytes()),
    }
}

/// A reader that hashes and counts what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps a reader.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Hasher::new(),
            count: 0,
        }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The digest of everything read so far.
    pub fn digest(&self) -> Digest {
        self.hasher.clone().finish()
    }

    /// The digest and size of everything read.
    pub fn finish(self) -> (Digest, u64) {
        (self.hasher.finish(), self.count)
    }

    /// The wrapped reader.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(read) = buf.get(..n) {
            self.hasher.update(read);
        }
        self.count += n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps a writer.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Hasher::new(),
            count: 0,
        }
    }

    /// The digest and size of everything written, and the writer.
    pub fn finish(self) -> (Digest, u64, W) {
        (self.hasher.finish(), self.count, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(written) = buf.get(..n) {
            self.hasher.update(written);
        }
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_digests_are_rejected_with_their_text() {
        for (value, message) in [
            (
                "sha256:../x",
                "invalid digest \"sha256:../x\": invalid checksum digest format",
            ),
            (
                &format!("sha256:{}", "A".repeat(64)),
                "invalid digest \"sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\": invalid checksum digest format",
            ),
            (
                "sha256:abc",
                "invalid digest \"sha256:abc\": invalid checksum digest format",
            ),
            (
                &format!("sha512:{}", "a".repeat(128)),
                &format!(
                    "unsupported digest \"sha512:{}\": the store keeps sha256 blobs only",
                    "a".repeat(128)
                ),
            ),
        ] {
            assert_eq!(parse_sha256(value).unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn chain_ids_follow_the_oci_image_spec() {
        // Expected values from `printf '%s %s' "$parent" "$diff" | sha256sum`.
        let [a, b, c] = [b"a", b"b", b"c"].map(|d| digest_bytes(d));
        assert_eq!(chain_id(None, &a), a);
        let ab = chain_id(Some(&a), &b);
        assert_eq!(
            ab.to_string(),
            "sha256:51c0c8ace48498d6f5fee6b0592cc06f2da0f3cbe09c5a34a97dce85c3889676"
        );
        assert_eq!(
            chain_id(Some(&ab), &c).to_string(),
            "sha256:2fce7f8ce91bcf0a1428b36e1024639fdbd9469eea762dba98aa749631885106"
        );
        // The same layer twice gives two different chains.
        assert_ne!(chain_id(Some(&a), &a), a);
    }

    #[test]
    fn hashes_like_sha256sum() {
        assert_eq!(
            digest_bytes(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut reader = HashingReader::new(&b"abc"[..]);
        io::copy(&mut reader, &mut io::sink()).unwrap();
        let (digest, size) = reader.finish();
        assert_eq!(size, 3);
        assert_eq!(
            digest.to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
