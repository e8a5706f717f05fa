//! What one layer does to the file system, read from its tar stream
//! without writing anything: the paths it writes (with type, mode, owner,
//! size, content digest, link target), the paths its whiteouts remove and
//! the directories it makes opaque. `kiln diff` and `kiln layers` compare
//! images with it (see [`crate::compare`]).

use std::io::{self, Read};

use kiln_reference::Digest;

use super::error::LayerError;
use super::unpack::{
    EntryMeta, Kind, WHITEOUT_META_PREFIX, WHITEOUT_OPAQUE, WHITEOUT_PREFIX, normalize,
    read_entries, split_last,
};
use crate::digest::Hasher;

/// The type of a file, as a layer stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum FileType {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A character device.
    Char,
    /// A block device.
    Block,
    /// A named pipe.
    Fifo,
}

impl FileType {
    /// The word `kiln diff` prints and its JSON holds.
    pub fn name(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Dir => "directory",
            Self::Symlink => "symlink",
            Self::Char => "char-device",
            Self::Block => "block-device",
            Self::Fifo => "fifo",
        }
    }
}

/// A file as a layer writes it. Times are left out on purpose: two builds
/// of one Dockerfile differ in every mtime, and content is compared by
/// digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileNode {
    /// Its type.
    pub file_type: FileType,
    /// Permission bits with setuid, setgid and sticky (`0o7777` at most).
    pub mode: u32,
    /// Numeric owner.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Content size of a regular file, 0 for anything else.
    pub size: u64,
    /// SHA-256 of a regular file's content.
    pub digest: Option<Digest>,
    /// A symlink's target, verbatim.
    pub link: Option<Vec<u8>>,
    /// Major and minor number of a device.
    pub device: (u32, u32),
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// One thing a layer does, in archive order. Paths are cleaned and
/// relative to the root (`etc/passwd`), as the unpacker cleans them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerChange {
    /// The layer writes `path`.
    Write {
        /// Where.
        path: Vec<u8>,
        /// What.
        node: FileNode,
    },
    /// The layer writes `path` as a hard link to `target` (a path of this
    /// layer or of the layers below): the same file under a second name.
    Hardlink {
        /// The new name.
        path: Vec<u8>,
        /// The existing name it links to.
        target: Vec<u8>,
    },
    /// A `.wh.NAME` whiteout: `path` and everything under it are gone,
    /// unless this layer itself writes them (OCI image spec).
    Remove {
        /// The path removed.
        path: Vec<u8>,
    },
    /// A `.wh..wh..opq` marker: everything in `dir` that this layer does
    /// not write is gone.
    Opaque {
        /// The directory (empty for the root).
        dir: Vec<u8>,
    },
}

impl LayerChange {
    /// The path the change is about.
    pub fn path(&self) -> &[u8] {
        match self {
            Self::Write { path, .. } | Self::Hardlink { path, .. } | Self::Remove { path } => path,
            Self::Opaque { dir } => dir,
        }
    }
}

/// Reads an uncompressed layer tar into the changes it makes, hashing
/// each regular file's content. Entries are parsed by the unpacker's own
/// reader, with its limits and its name cleaning (a name escaping the
/// root is an error naming the entry); entries for the root itself and
/// aufs metadata (`.wh..wh.*`) are skipped, as unpacking skips them.
pub fn read_layer_changes<R: Read>(tar_stream: R) -> Result<Vec<LayerChange>, LayerError> {
    let mut changes = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    read_entries(tar_stream, |data, meta| {
        if let Some(change) = entry_change(data, meta, &mut buffer)? {
            changes.push(change);
        }
        Ok(())
    })?;
    Ok(changes)
}

fn entry_change(
    data: &mut dyn Read,
    m: &EntryMeta,
    buffer: &mut [u8],
) -> Result<Option<LayerChange>, LayerError> {
    let file_type = match m.kind {
        // A hard link is a regular file under a second name.
        Kind::File | Kind::Hardlink => FileType::File,
        Kind::Dir => FileType::Dir,
        Kind::Symlink => FileType::Symlink,
        Kind::Char => FileType::Char,
        Kind::Block => FileType::Block,
        Kind::Fifo => FileType::Fifo,
        // Unpacking skips these too (with a warning).
        Kind::Skip(_) => return Ok(None),
    };
    let path = normalize(&m.raw_name).map_err(|r| LayerError::entry(&m.raw_name, r))?;
    if path.is_empty() {
        return Ok(None);
    }
    let (parent, base) = split_last(&path);
    if base == WHITEOUT_OPAQUE {
        return Ok(Some(LayerChange::Opaque {
            dir: parent.to_vec(),
        }));
    }
    if base.starts_with(WHITEOUT_META_PREFIX) {
        return Ok(None);
    }
    if let Some(name) = base.strip_prefix(WHITEOUT_PREFIX) {
        if name.is_empty() || name == b"." || name == b".." {
            return Err(LayerError::entry(&m.raw_name, "invalid whiteout name"));
        }
        let mut removed = parent.to_vec();
        if !removed.is_empty() {
            removed.push(b'/');
        }
        removed.extend_from_slice(name);
        return Ok(Some(LayerChange::Remove { path: removed }));
    }
    if m.kind == Kind::Hardlink {
        let raw_target = m.link.as_deref().unwrap_or_default();
        let target = normalize(raw_target).map_err(|r| {
            LayerError::entry(
                &m.raw_name,
                format!(
                    "hardlink target {}: {r}",
                    String::from_utf8_lossy(raw_target)
                ),
            )
        })?;
        return Ok(Some(LayerChange::Hardlink { path, target }));
    }
    let mut digest = None;
    if file_type == FileType::File {
        let mut hasher = Hasher::new();
        let mut got = 0u64;
        loop {
            let n = match data.read(buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(LayerError::io(
                        format!("reading {}", String::from_utf8_lossy(&m.raw_name)),
                        e,
                    ));
                }
            };
            hasher.update(buffer.get(..n).unwrap_or_default());
            got += n as u64;
        }
        if got < m.size {
            return Err(LayerError::Truncated {
                entry: String::from_utf8_lossy(&m.raw_name).into_owned(),
                got,
                size: m.size,
            });
        }
        digest = Some(hasher.finish());
    }
    let mut xattrs = m.xattrs.clone();
    xattrs.sort();
    Ok(Some(LayerChange::Write {
        path,
        node: FileNode {
            file_type,
            mode: m.mode,
            uid: m.uid,
            gid: m.gid,
            size: if file_type == FileType::File {
                m.size
            } else {
                0
            },
            digest,
            link: if file_type == FileType::Symlink {
                m.link.clone()
            } else {
                None
            },
            device: m.dev,
            xattrs,
        },
    }))
}
