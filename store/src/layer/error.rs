//! Errors of layer packing, unpacking and compression.

use std::io;

/// Why a layer could not be compressed, decompressed, unpacked or packed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// An I/O or system call failed; `what` names the operation and the path.
    #[error("{what}: {source}")]
    Io {
        /// The failed operation and the path (or entry) it was applied to.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A tar entry is malformed, hostile or unsupported.
    #[error("tar entry {entry}: {reason}")]
    Entry {
        /// The entry's name as written in the archive.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// [`super::unpack_copy`]: an entry would replace a directory with a
    /// non-directory (Docker's message).
    #[error("cannot overwrite directory {path:?} with non-directory {dest:?}")]
    OverwriteDirectory {
        /// The existing directory.
        path: String,
        /// The extraction directory.
        dest: String,
    },
    /// [`super::unpack_copy`]: an entry would replace a non-directory with
    /// a directory (Docker's message).
    #[error("cannot overwrite non-directory {path:?} with directory {dest:?}")]
    OverwriteNonDirectory {
        /// The existing non-directory.
        path: String,
        /// The extraction directory.
        dest: String,
    },
    /// The archive ends inside an entry's data.
    #[error("truncated archive: entry {entry} has {got} of {size} bytes")]
    Truncated {
        /// The entry's name as written in the archive.
        entry: String,
        /// Bytes present.
        got: u64,
        /// Bytes announced by the header.
        size: u64,
    },
    /// The next tar header could not be read (bad checksum, short block, decompression error).
    #[error("reading tar header after {after}: {source}")]
    Header {
        /// The last entry read successfully, or `the start of the archive`.
        after: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl LayerError {
    /// An [`LayerError::Io`] from anything convertible to `io::Error` (including `nix::Errno`).
    pub(crate) fn io(what: impl Into<String>, source: impl Into<io::Error>) -> Self {
        Self::Io {
            what: what.into(),
            source: source.into(),
        }
    }

    /// An [`LayerError::Entry`] naming the entry by its raw archive name.
    pub(crate) fn entry(entry: &[u8], reason: impl Into<String>) -> Self {
        Self::Entry {
            entry: String::from_utf8_lossy(entry).into_owned(),
            reason: reason.into(),
        }
    }
}
