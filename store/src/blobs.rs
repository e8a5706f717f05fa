//! Content-addressed blobs under `blobs/sha256/`: writes that hash while
//! writing, verify, fsync and rename; reads that verify.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use kiln_reference::Digest;

use crate::digest::{HashingReader, HashingWriter};
use crate::error::{IoContext, StoreError};

/// What a blob must hash to, when the caller knows.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The digest the content must have.
    pub digest: &'a Digest,
    /// The size the content must have, when known.
    pub size: Option<u64>,
}

/// The blob directory of a store.
#[derive(Debug, Clone)]
pub struct Blobs {
    dir: PathBuf,
    tmp: PathBuf,
}

impl Blobs {
    /// Blobs under `root/blobs/sha256`, staged in `tmp` (the store's
    /// staging directory of this process).
    pub(crate) fn new(root: &Path, tmp: &Path) -> Self {
        Self {
            dir: root.join("blobs").join("sha256"),
            tmp: tmp.to_owned(),
        }
    }

    /// The file of a blob (which may not exist).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.encoded())
    }

    /// Whether the blob is present (not verified).
    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// The size of a present blob.
    pub fn size(&self, digest: &Digest) -> Result<u64, StoreError> {
        let path = self.path(digest);
        match fs::metadata(&path) {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::MissingBlob {
                digest: digest.to_string(),
            }),
            Err(e) => Err(StoreError::io(path, e)),
        }
    }

    /// Writes a blob from a reader. The bytes are hashed on their way to a
    /// temporary file, checked against `expected` (if given), synced and
    /// renamed into place, so a blob file is never partial or wrong. When
    /// the expected blob is already present the reader is still drained
    /// and checked, but nothing is written.
    pub fn write(
        &self,
        mut reader: impl Read,
        expected: Option<Expected<'_>>,
        what: &str,
    ) -> Result<(Digest, u64), StoreError> {
        if let Some(expected) = expected.filter(|e| self.contains(e.digest)) {
            let mut hashing = HashingReader::new(&mut reader);
            io::copy(&mut hashing, &mut io::sink()).at(what)?;
            let (digest, size) = hashing.finish();
            check(what, expected, &digest, size)?;
            return Ok((digest, size));
        }
        let file = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&self.tmp)
            .at(&self.tmp)?;
        let path = file.path().to_owned();
        let write_error = |source| StoreError::Write {
            what: what.to_owned(),
            path: path.clone(),
            source,
        };
        let mut writer = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, file));
        copy(&mut reader, &mut writer).map_err(|e| e.into_store_error(what, write_error))?;
        let (digest, size, buffered) = writer.finish();
        if let Some(expected) = expected {
            check(what, expected, &digest, size)?;
        }
        let file = buffered
            .into_inner()
            .map_err(|e| write_error(e.into_error()))?;
        self.commit(file, &digest)?;
        Ok((digest, size))
    }

    /// Writes a blob from bytes already in memory.
    pub fn write_bytes(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let digest = crate::digest::digest_bytes(bytes);
        if !self.contains(&digest) {
            let mut file = tempfile::Builder::new()
                .prefix("blob-")
                .tempfile_in(&self.tmp)
                .at(&self.tmp)?;
            file.write_all(bytes).map_err(|source| StoreError::Write {
                what: format!("blob {digest}"),
                path: file.path().to_owned(),
                source,
            })?;
            self.commit(file, &digest)?;
        }
        Ok(digest)
    }

    /// Moves a verified temporary file into place. Another process may
    /// have stored the same blob meanwhile; the rename then replaces
    /// identical content, which is harmless.
    pub(crate) fn commit(
        &self,
        file: tempfile::NamedTempFile,
        digest: &Digest,
    ) -> Result<(), StoreError> {
        self.commit_with(file, digest, true)
    }

    /// [`Self::commit`], optionally without waiting for the data to reach
    /// the disk (the rename is still atomic, so a killed process leaves
    /// either no blob or a whole one; only a power failure can lose it,
    /// which digest verification then reports).
    pub(crate) fn commit_with(
        &self,
        file: tempfile::NamedTempFile,
        digest: &Digest,
        durable: bool,
    ) -> Result<(), StoreError> {
        if durable {
            file.as_file()
                .sync_all()
                .map_err(|source| StoreError::Write {
                    what: format!("blob {digest}"),
                    path: file.path().to_owned(),
                    source,
                })?;
        }
        crate::fault::point("blob.staged");
        let target = self.path(digest);
        file.persist(&target)
            .map_err(|e| StoreError::io(&target, e.error))?;
        if durable {
            sync_dir(&self.dir)?;
        }
        crate::fault::point("blob.committed");
        Ok(())
    }

    /// Opens a blob for reading; the reader fails at end of file if the
    /// content does not match its digest.
    pub fn open(&self, digest: &Digest) -> Result<VerifiedReader, StoreError> {
        let path = self.path(digest);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::MissingBlob {
                    digest: digest.to_string(),
                });
            }
            Err(e) => return Err(StoreError::io(path, e)),
        };
        Ok(VerifiedReader {
            inner: HashingReader::new(io::BufReader::with_capacity(1 << 20, file)),
            expected: digest.clone(),
            path,
            checked: false,
        })
    }

    /// Reads a whole blob of at most `limit` bytes, verified.
    pub fn read(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, StoreError> {
        let size = self.size(digest)?;
        if size > limit {
            return Err(StoreError::DocumentTooLarge {
                what: format!("blob {digest}"),
                size,
                limit,
            });
        }
        let mut reader = self.open(digest)?;
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        reader
            .read_to_end(&mut bytes)
            .map_err(|e| reader.error(e))?;
        Ok(bytes)
    }

    /// Every blob file's digest (names that are not digests are skipped).
    pub fn list(&self) -> Result<Vec<Digest>, StoreError> {
        let mut digests = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(digests),
            Err(e) => return Err(StoreError::io(&self.dir, e)),
        };
        for entry in entries {
            let entry = entry.at(&self.dir)?;
            if let Some(name) = entry.file_name().to_str()
                && let Ok(digest) = crate::digest::parse_sha256(&format!("sha256:{name}"))
            {
                digests.push(digest);
            }
        }
        digests.sort();
        Ok(digests)
    }

    /// Deletes a blob; a missing one is not an error. (Unlinking one file
    /// is atomic: a blob is whole or gone.)
    pub fn remove(&self, digest: &Digest) -> Result<(), StoreError> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::io(path, e)),
            _ => Ok(()),
        }
    }
}

/// Where a copy failed: reading its input or writing its output.
#[derive(Debug)]
pub(crate) enum CopyError {
    /// The reader failed (a truncated or corrupt input).
    Read(io::Error),
    /// The writer failed (a full disk, say).
    Write(io::Error),
}

impl CopyError {
    /// A store error: a read failure names `what` was read, a write
    /// failure goes through `write_error` (which names the file written).
    pub(crate) fn into_store_error(
        self,
        what: &str,
        write_error: impl FnOnce(io::Error) -> StoreError,
    ) -> StoreError {
        match self {
            Self::Read(e) => StoreError::io(what, e),
            Self::Write(e) => write_error(e),
        }
    }
}

/// `io::copy` that tells a failed read from a failed write, so that a full
/// disk is not reported as a truncated input.
pub(crate) fn copy(reader: &mut impl Read, writer: &mut impl Write) -> Result<u64, CopyError> {
    let mut buffer = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        writer
            .write_all(buffer.get(..n).unwrap_or_default())
            .map_err(CopyError::Write)?;
        total += n as u64;
    }
}

fn check(what: &str, expected: Expected<'_>, digest: &Digest, size: u64) -> Result<(), StoreError> {
    if let Some(expected_size) = expected.size
        && expected_size != size
    {
        return Err(StoreError::SizeMismatch {
            what: what.to_owned(),
            expected: expected_size,
            actual: size,
        });
    }
    if digest != expected.digest {
        return Err(StoreError::DigestMismatch {
            what: what.to_owned(),
            expected: expected.digest.to_string(),
            actual: digest.to_string(),
        });
    }
    Ok(())
}

/// Makes a rename in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// A blob reader that verifies the digest when it reaches the end.
pub struct VerifiedReader {
    inner: HashingReader<io::BufReader<File>>,
    expected: Digest,
    path: PathBuf,
    checked: bool,
}

impl VerifiedReader {
    /// Turns an I/O error from this reader into a store error naming the
    /// blob (a digest mismatch is reported as such).
    pub fn error(&self, e: io::Error) -> StoreError {
        if e.kind() == io::ErrorKind::InvalidData
            && let Some(mismatch) = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<MismatchNote>())
        {
            return StoreError::DigestMismatch {
                what: self.path.display().to_string(),
                expected: self.expected.to_string(),
                actual: mismatch.0.clone(),
            };
        }
        StoreError::io(&self.path, e)
    }
}

#[derive(Debug)]
struct MismatchNote(String);

impl std::fmt::Display for MismatchNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "content hashes to {}", self.0)
    }
}

impl std::error::Error for MismatchNote {}

impl Read for VerifiedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && !self.checked {
            self.checked = true;
            let digest = self.inner.digest();
            if digest != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    MismatchNote(digest.to_string()),
                ));
            }
        }
        Ok(n)
    }
}
