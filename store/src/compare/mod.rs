//! Comparing images file by file (`kiln diff`) and measuring what each
//! layer adds and what later layers waste of it (`kiln layers`).
//!
//! Both read the layer blobs as tar streams ([`read_layer_changes`]) and
//! build each image's file system in memory ([`FileTree`]); they do not
//! read the unpacked snapshots. The tar headers are the layer as it was
//! made: owners are the image's even in a store filled without root
//! (where a snapshot's files all belong to the caller), whiteouts and
//! opaque markers are explicit entries (in a snapshot they are devices
//! and `trusted.*` xattrs that only root can read), no snapshot has to
//! exist or be trusted, and one pass over each layer gives both the
//! flattened view and what each layer itself does. Content is compared
//! by the SHA-256 of the bytes, never by mtime.

mod tree;

#[cfg(test)]
mod tests;

use std::cmp::Ordering;
use std::io;

use kiln_reference::Digest;

pub use tree::{Content, FileTree};

use crate::digest::parse_sha256;
use crate::error::StoreError;
use crate::layer::changes::{FileNode, LayerChange, read_layer_changes};
use crate::layer::open_layer;
use crate::store::{Image, Store};

/// How a path differs between two file systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Only the second has it.
    Added,
    /// Only the first has it.
    Removed,
    /// Both have it, different.
    Changed,
}

/// What differs about a path both file systems have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Field {
    /// The file type (file, directory, symlink...).
    Type,
    /// A regular file's bytes (compared by digest).
    Content,
    /// Permission bits (with setuid, setgid, sticky).
    Mode,
    /// Numeric uid or gid.
    Owner,
    /// A symlink's target.
    Link,
    /// A device's major or minor number.
    Device,
    /// Extended attributes.
    Xattrs,
}

impl Field {
    /// The name `kiln diff --format json` uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Type => "type",
            Self::Content => "content",
            Self::Mode => "mode",
            Self::Owner => "owner",
            Self::Link => "link",
            Self::Device => "device",
            Self::Xattrs => "xattrs",
        }
    }
}

/// One path that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathChange {
    /// The path, relative to the root (`etc/passwd`).
    pub path: Vec<u8>,
    /// Added, removed or changed.
    pub status: Status,
    /// The first file system's file, if it has one.
    pub before: Option<FileNode>,
    /// The second file system's file, if it has one.
    pub after: Option<FileNode>,
    /// For a changed path, what changed (in [`Field`] order).
    pub fields: Vec<Field>,
}

/// What differs between two file systems, path by path in byte order of
/// the paths. A directory whose only difference is its mtime is not
/// there: times are not compared at all.
pub fn diff_trees(before: &FileTree, after: &FileTree) -> Vec<PathChange> {
    let mut changes = Vec::new();
    let mut left = before.files().peekable();
    let mut right = after.files().peekable();
    loop {
        let order = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((a, _)), Some((b, _))) => a.cmp(b),
        };
        match order {
            Ordering::Less => {
                if let Some((path, node)) = left.next() {
                    changes.push(PathChange {
                        path: path.to_vec(),
                        status: Status::Removed,
                        before: Some(node.clone()),
                        after: None,
                        fields: Vec::new(),
                    });
                }
            }
            Ordering::Greater => {
                if let Some((path, node)) = right.next() {
                    changes.push(PathChange {
                        path: path.to_vec(),
                        status: Status::Added,
                        before: None,
                        after: Some(node.clone()),
                        fields: Vec::new(),
                    });
                }
            }
            Ordering::Equal => {
                if let (Some((path, a)), Some((_, b))) = (left.next(), right.next()) {
                    let fields = changed_fields(a, b);
                    if !fields.is_empty() {
                        changes.push(PathChange {
                            path: path.to_vec(),
                            status: Status::Changed,
                            before: Some(a.clone()),
                            after: Some(b.clone()),
                            fields,
                        });
                    }
                }
            }
        }
    }
    changes
}

/// What differs between two files at one path. Content, link target and
/// device number only count between files of one type.
fn changed_fields(a: &FileNode, b: &FileNode) -> Vec<Field> {
    let mut fields = Vec::new();
    if a.file_type == b.file_type {
        if a.digest != b.digest || a.size != b.size {
            fields.push(Field::Content);
        }
    } else {
        fields.push(Field::Type);
    }
    if a.mode != b.mode {
        fields.push(Field::Mode);
    }
    if (a.uid, a.gid) != (b.uid, b.gid) {
        fields.push(Field::Owner);
    }
    if a.file_type == b.file_type {
        if a.link != b.link {
            fields.push(Field::Link);
        }
        if a.device != b.device {
            fields.push(Field::Device);
        }
    }
    if a.xattrs != b.xattrs {
        fields.push(Field::Xattrs);
    }
    fields
}

/// Counts of a list of changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Paths added.
    pub added: usize,
    /// Paths removed.
    pub removed: usize,
    /// Paths changed.
    pub changed: usize,
}

impl Counts {
    /// Counts `changes` by status.
    pub fn of(changes: &[PathChange]) -> Self {
        let mut counts = Self::default();
        for change in changes {
            match change.status {
                Status::Added => counts.added += 1,
                Status::Removed => counts.removed += 1,
                Status::Changed => counts.changed += 1,
            }
        }
        counts
    }
}

/// One layer of the second image in `kiln diff --layers`.
#[derive(Debug, Clone)]
pub struct LayerDiff {
    /// Its position, 0 for the base layer.
    pub index: usize,
    /// Its uncompressed digest.
    pub diff_id: Digest,
    /// Whether the first image has the same layers up to this one
    /// (equal `diff_id`s at every position below and here), so the same
    /// snapshot.
    pub shared: bool,
    /// What the layer does to the file system below it (empty when shared).
    pub changes: Vec<PathChange>,
    /// Regular-file bytes of the file system below it and with it.
    pub size_before: u64,
    /// See `size_before`.
    pub size_after: u64,
}

/// Everything `kiln diff` reports.
#[derive(Debug, Clone)]
pub struct ImageDiff {
    /// The final file systems compared.
    pub changes: Vec<PathChange>,
    /// Regular-file bytes in the first image's file system.
    pub size_before: u64,
    /// Regular-file bytes in the second image's file system.
    pub size_after: u64,
    /// Layers the two images share from the base up.
    pub shared_layers: usize,
    /// With layers asked for: each layer of the second image.
    pub layers: Option<Vec<LayerDiff>>,
    /// The first image's layers past the shared ones (index, `diff_id`).
    pub first_only: Vec<(usize, Digest)>,
}

/// One layer in `kiln layers`.
#[derive(Debug, Clone)]
pub struct LayerUsage {
    /// Its position, 0 for the base layer.
    pub index: usize,
    /// Its uncompressed digest.
    pub diff_id: Digest,
    /// Bytes of regular-file content it writes (hard links add none).
    pub added: u64,
    /// Of those, bytes the image's file system does not show: a later
    /// layer deletes or overwrites them (or the layer itself does, when it
    /// lists a path twice).
    pub wasted: u64,
    /// Paths it writes or removes (tar entries, whiteouts included).
    pub entries: usize,
    /// Its largest regular files, largest first (ties by path).
    pub largest: Vec<LargeFile>,
}

/// A regular file of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LargeFile {
    /// Where the layer writes it.
    pub path: Vec<u8>,
    /// Its size.
    pub size: u64,
    /// Whether a later layer deletes or overwrites it.
    pub wasted: bool,
}

/// Everything `kiln layers` reports.
#[derive(Debug, Clone)]
pub struct LayerReport {
    /// Each layer, base first.
    pub layers: Vec<LayerUsage>,
    /// Sum of the layers' `added`.
    pub total: u64,
    /// Sum of the layers' `wasted`.
    pub wasted: u64,
}

impl LayerReport {
    /// `1 - wasted / total`, 1 for an image without content: the share
    /// of the bytes its layers hold that its file system shows.
    pub fn efficiency(&self) -> f64 {
        if self.total == 0 {
            return 1.0;
        }
        #[expect(
            clippy::cast_precision_loss,
            reason = "a ratio: 53 bits are plenty for a percentage"
        )]
        let ratio = self.wasted as f64 / self.total as f64;
        1.0 - ratio
    }
}

/// Builds [`LayerReport`] from `tree`, the image's layers applied in
/// order, and each layer's `diff_id` and number of changes, base first.
pub fn layer_report(tree: &FileTree, layers: &[(Digest, usize)], top: usize) -> LayerReport {
    let mut usage: Vec<LayerUsage> = layers
        .iter()
        .enumerate()
        .map(|(index, (diff_id, entries))| LayerUsage {
            index,
            diff_id: diff_id.clone(),
            added: 0,
            wasted: 0,
            entries: *entries,
            largest: Vec::new(),
        })
        .collect();
    for content in tree.contents() {
        let Some(layer) = usage.get_mut(content.layer) else {
            continue;
        };
        layer.added += content.size;
        if content.is_gone() {
            layer.wasted += content.size;
        }
        layer.largest.push(LargeFile {
            path: content.path.clone(),
            size: content.size,
            wasted: content.is_gone(),
        });
    }
    for layer in &mut usage {
        layer
            .largest
            .sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.path.cmp(&b.path)));
        layer.largest.truncate(top);
    }
    LayerReport {
        total: usage.iter().map(|l| l.added).sum(),
        wasted: usage.iter().map(|l| l.wasted).sum(),
        layers: usage,
    }
}

/// A path as `kiln diff` prints it: with a leading `/`, escaped as
/// [`display_bytes`] escapes.
pub fn display_path(path: &[u8]) -> String {
    let mut out = String::from("/");
    out.push_str(&display_bytes(path));
    out
}

/// A name or link target from a layer as text: control characters,
/// backslashes and bytes that are not UTF-8 escaped (`\n`, `\\`,
/// `\xff`), so that a hostile name cannot forge output lines.
pub fn display_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() || c == '\\' {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for byte in chunk.invalid() {
            out.extend(std::ascii::escape_default(*byte).map(char::from));
        }
    }
    out
}

impl Store {
    /// The changes layer `index` of `image` makes, read from its blob
    /// (decompressed, digest verified to the end). Errors name the layer
    /// and the image.
    pub fn layer_changes(
        &self,
        image: &Image,
        index: usize,
    ) -> Result<Vec<LayerChange>, StoreError> {
        let wrap = |source: StoreError, layer: &str| StoreError::ReadLayer {
            layer: layer.to_owned(),
            image: image.id.to_string(),
            source: Box::new(source),
        };
        let Some(layer) = image.manifest.layers.get(index) else {
            return Err(StoreError::InvalidDocument {
                what: format!("image {}", image.id),
                reason: format!("it has no layer {index}"),
            });
        };
        let digest = parse_sha256(&layer.digest).map_err(|e| wrap(e, &layer.digest))?;
        let mut blob = self
            .blobs()
            .open(&digest)
            .map_err(|e| wrap(e, &layer.digest))?;
        let changes = {
            let (_, mut decoded) =
                open_layer(&mut blob).map_err(|e| wrap(e.into(), &layer.digest))?;
            let changes =
                read_layer_changes(&mut decoded).map_err(|e| wrap(e.into(), &layer.digest))?;
            // The rest of the stream (tar padding, the compressor's
            // trailer) is read so that the blob's digest is checked.
            io::copy(&mut decoded, &mut io::sink()).map_err(|e| {
                wrap(
                    StoreError::Archive(format!("cannot decompress layer: {e}")),
                    &layer.digest,
                )
            })?;
            changes
        };
        io::copy(&mut blob, &mut io::sink()).map_err(|e| wrap(blob.error(e), &layer.digest))?;
        Ok(changes)
    }

    /// The layers' `diff_id`s of `image`, one per manifest layer.
    fn diff_ids(image: &Image) -> Result<Vec<Digest>, StoreError> {
        let ids = &image.config.rootfs.diff_ids;
        if ids.len() != image.manifest.layers.len() {
            return Err(StoreError::InvalidDocument {
                what: format!("image {}", image.id),
                reason: format!(
                    "the manifest has {} layers but the config {} diff_ids",
                    image.manifest.layers.len(),
                    ids.len()
                ),
            });
        }
        ids.iter().map(|id| parse_sha256(id)).collect()
    }

    /// Compares two images' final file systems and, with `layers`, each
    /// layer of `second` with the file system below it. Layers both
    /// images share from the base up are read once.
    pub fn diff_images(
        &self,
        first: &Image,
        second: &Image,
        layers: bool,
    ) -> Result<ImageDiff, StoreError> {
        let first_ids = Self::diff_ids(first)?;
        let second_ids = Self::diff_ids(second)?;
        let shared = first_ids
            .iter()
            .zip(&second_ids)
            .take_while(|(a, b)| a == b)
            .count();
        let mut base = FileTree::new();
        let mut layer_diffs = Vec::new();
        for (index, diff_id) in second_ids.iter().enumerate().take(shared) {
            let before = base.content_size();
            let changes = self.layer_changes(second, index)?;
            base.apply(index, &changes)
                .map_err(|e| tree_error(second, index, e))?;
            layer_diffs.push(LayerDiff {
                index,
                diff_id: diff_id.clone(),
                shared: true,
                changes: Vec::new(),
                size_before: before,
                size_after: base.content_size(),
            });
        }
        let mut first_tree = base.clone();
        for index in shared..first_ids.len() {
            let changes = self.layer_changes(first, index)?;
            first_tree
                .apply(index, &changes)
                .map_err(|e| tree_error(first, index, e))?;
        }
        let mut second_tree = base;
        for (index, diff_id) in second_ids.iter().enumerate().skip(shared) {
            let changes = self.layer_changes(second, index)?;
            let below = layers.then(|| second_tree.clone());
            second_tree
                .apply(index, &changes)
                .map_err(|e| tree_error(second, index, e))?;
            if let Some(below) = below {
                layer_diffs.push(LayerDiff {
                    index,
                    diff_id: diff_id.clone(),
                    shared: false,
                    changes: diff_trees(&below, &second_tree),
                    size_before: below.content_size(),
                    size_after: second_tree.content_size(),
                });
            }
        }
        Ok(ImageDiff {
            changes: diff_trees(&first_tree, &second_tree),
            size_before: first_tree.content_size(),
            size_after: second_tree.content_size(),
            shared_layers: shared,
            layers: layers.then_some(layer_diffs),
            first_only: first_ids.into_iter().enumerate().skip(shared).collect(),
        })
    }

    /// Per layer of `image`: bytes added, bytes wasted, the `top` largest
    /// files; see [`layer_report`].
    pub fn layer_report(&self, image: &Image, top: usize) -> Result<LayerReport, StoreError> {
        let ids = Self::diff_ids(image)?;
        let mut tree = FileTree::new();
        let mut layers = Vec::with_capacity(ids.len());
        for (index, diff_id) in ids.into_iter().enumerate() {
            let changes = self.layer_changes(image, index)?;
            tree.apply(index, &changes)
                .map_err(|e| tree_error(image, index, e))?;
            layers.push((diff_id, changes.len()));
        }
        Ok(layer_report(&tree, &layers, top))
    }
}

/// An error applying layer `index` of `image` in memory, naming both.
fn tree_error(image: &Image, index: usize, e: crate::layer::LayerError) -> StoreError {
    StoreError::ReadLayer {
        layer: image
            .manifest
            .layers
            .get(index)
            .map_or_else(String::new, |l| l.digest.clone()),
        image: image.id.to_string(),
        source: Box::new(e.into()),
    }
}
