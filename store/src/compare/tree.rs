//! An image's file system as its layers build it, in memory: every path
//! with its type, mode, owner, content digest and link target, and for
//! every regular file's content the layer that wrote it.

use std::collections::{BTreeMap, HashSet};

use crate::layer::LayerError;
use crate::layer::changes::{FileNode, FileType, LayerChange};
use crate::layer::unpack::{join, split_last};

/// Symlinks followed in one resolution before giving up, as Linux's
/// `MAXSYMLINKS`.
const MAX_LINKS: usize = 40;

/// The flattened file system of layers applied in order. Paths are
/// relative to the root without a leading slash; the root itself is not
/// a node.
#[derive(Debug, Clone, Default)]
pub struct FileTree {
    nodes: BTreeMap<Vec<u8>, TreeNode>,
    contents: Vec<Content>,
}

#[derive(Debug, Clone)]
struct TreeNode {
    node: FileNode,
    /// Index into `contents` for a regular file.
    content: Option<usize>,
}

/// One regular file's content as a layer wrote it. Hard links share it;
/// it takes space in the image as long as one name is left.
#[derive(Debug, Clone)]
pub struct Content {
    /// The layer that wrote it (0 for the base layer).
    pub layer: usize,
    /// Where that layer wrote it.
    pub path: Vec<u8>,
    /// Its size in bytes.
    pub size: u64,
    /// Names it still has in the tree.
    names: usize,
}

impl Content {
    /// Whether a later change (a whiteout, an opaque directory, a new
    /// file or directory at its path or above it) left no name for it.
    pub fn is_gone(&self) -> bool {
        self.names == 0
    }
}

impl FileTree {
    /// An empty file system.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every path and its file, sorted by path bytes.
    pub fn files(&self) -> impl Iterator<Item = (&[u8], &FileNode)> {
        self.nodes.iter().map(|(p, n)| (p.as_slice(), &n.node))
    }

    /// The node at `path` (cleaned, relative), not following a final symlink.
    pub fn get(&self, path: &[u8]) -> Option<&FileNode> {
        self.nodes.get(path).map(|n| &n.node)
    }

    /// Every regular file's content written so far, in the order written.
    pub fn contents(&self) -> &[Content] {
        &self.contents
    }

    /// Bytes of regular-file content the file system holds (each content
    /// once, however many hard links name it).
    pub fn content_size(&self) -> u64 {
        self.contents
            .iter()
            .filter(|c| !c.is_gone())
            .map(|c| c.size)
            .sum()
    }

    /// Applies one layer's changes (the layer being number `layer`), as
    /// kiln's unpacker applies a layer on its parents: parent paths are
    /// resolved through the symlinks already in the tree (inside the
    /// root, `..` stopping at it), missing parents are created as
    /// directories, an entry replaces what is at its path (a directory
    /// over a directory keeps its content), a whiteout or opaque marker
    /// never hides what its own layer writes, and opaque markers act
    /// once the whole layer is read. Errors name the entry's path.
    pub fn apply(&mut self, layer: usize, changes: &[LayerChange]) -> Result<(), LayerError> {
        let mut written: HashSet<Vec<u8>> = HashSet::new();
        let mut opaque = Vec::new();
        for change in changes {
            match change {
                LayerChange::Write { path, node } => {
                    let path = self.place(path, layer, &mut written)?;
                    self.write(path, node.clone(), layer, &mut written);
                }
                LayerChange::Hardlink { path, target } => {
                    self.hardlink(path, target, layer, &mut written)?;
                }
                LayerChange::Remove { path } => {
                    let path = self.place(path, layer, &mut written)?;
                    if !written.contains(&path) {
                        self.remove(&path);
                    }
                }
                LayerChange::Opaque { dir } => {
                    let dir = self
                        .resolve(dir)
                        .map_err(|reason| entry_error(dir, &reason))?;
                    self.make_dirs(&dir, layer, &mut written);
                    mark(&mut written, &dir);
                    opaque.push(dir);
                }
            }
        }
        for dir in opaque {
            let hidden: Vec<Vec<u8>> = self
                .descendants(&dir)
                .filter(|p| !written.contains(*p))
                .map(<[u8]>::to_vec)
                .collect();
            for path in hidden {
                self.remove_one(&path);
            }
        }
        Ok(())
    }

    /// Resolves the parent of `path`, creates it if missing, and gives
    /// the path the entry really has.
    fn place(
        &mut self,
        path: &[u8],
        layer: usize,
        written: &mut HashSet<Vec<u8>>,
    ) -> Result<Vec<u8>, LayerError> {
        let (parent, base) = split_last(path);
        let parent = self
            .resolve(parent)
            .map_err(|reason| entry_error(path, &reason))?;
        self.make_dirs(&parent, layer, written);
        Ok(join(&parent, base))
    }

    fn write(
        &mut self,
        path: Vec<u8>,
        node: FileNode,
        layer: usize,
        written: &mut HashSet<Vec<u8>>,
    ) {
        mark(written, &path);
        if let Some(existing) = self.nodes.get_mut(&path)
            && existing.node.file_type == FileType::Dir
            && node.file_type == FileType::Dir
        {
            existing.node = node;
            return;
        }
        self.remove(&path);
        let content = (node.file_type == FileType::File).then(|| {
            self.contents.push(Content {
                layer,
                path: path.clone(),
                size: node.size,
                names: 1,
            });
            self.contents.len() - 1
        });
        self.nodes.insert(path, TreeNode { node, content });
    }

    fn hardlink(
        &mut self,
        path: &[u8],
        target: &[u8],
        layer: usize,
        written: &mut HashSet<Vec<u8>>,
    ) -> Result<(), LayerError> {
        let (target_parent, target_base) = split_last(target);
        let target_parent = self
            .resolve(target_parent)
            .map_err(|reason| entry_error(path, &format!("hardlink target: {reason}")))?;
        let target = join(&target_parent, target_base);
        let linked = match self.nodes.get(&target) {
            Some(n) if n.node.file_type != FileType::Dir => n.clone(),
            Some(_) => return Err(entry_error(path, "hardlink to a directory")),
            None => {
                return Err(entry_error(
                    path,
                    &format!(
                        "hardlink target {} does not exist",
                        String::from_utf8_lossy(&target)
                    ),
                ));
            }
        };
        let path = self.place(path, layer, written)?;
        mark(written, &path);
        if path == target {
            return Ok(());
        }
        self.remove(&path);
        if let Some(content) = linked.content.and_then(|i| self.contents.get_mut(i)) {
            content.names += 1;
        }
        self.nodes.insert(path, linked);
        Ok(())
    }

    /// Creates the missing directories of `dir` (resolved), as the
    /// unpacker does: mode 0755, owned by root.
    fn make_dirs(&mut self, dir: &[u8], layer: usize, written: &mut HashSet<Vec<u8>>) {
        let ends = dir
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'/')
            .map(|(i, _)| i)
            .chain(std::iter::once(dir.len()));
        for end in ends {
            let prefix = dir.get(..end).unwrap_or_default();
            if !prefix.is_empty() && !self.nodes.contains_key(prefix) {
                self.write(prefix.to_vec(), implicit_dir(), layer, written);
            }
        }
    }

    /// Resolves directory `path` through the tree's symlinks, inside the
    /// root: what the unpacker's `openat2(RESOLVE_IN_ROOT)` gives in the
    /// merged view. Components that do not exist are kept as they are
    /// (they are created); a non-directory on the way is an error.
    fn resolve(&self, path: &[u8]) -> Result<Vec<u8>, String> {
        // Components still to walk, the next one last.
        let mut pending: Vec<Vec<u8>> = components(path).rev().collect();
        let mut resolved: Vec<Vec<u8>> = Vec::new();
        let mut links = 0;
        while let Some(component) = pending.pop() {
            if component == b".." {
                resolved.pop();
                continue;
            }
            let mut candidate = resolved.join(&b'/');
            if !candidate.is_empty() {
                candidate.push(b'/');
            }
            candidate.extend_from_slice(&component);
            match self.nodes.get(&candidate).map(|n| &n.node) {
                None => resolved.push(component),
                Some(node) if node.file_type == FileType::Dir => resolved.push(component),
                Some(node) if node.file_type == FileType::Symlink => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(format!(
                            "too many levels of symbolic links at {}",
                            String::from_utf8_lossy(&candidate)
                        ));
                    }
                    let target = node.link.as_deref().unwrap_or_default();
                    if target.starts_with(b"/") {
                        resolved.clear();
                    }
                    pending.extend(components(target).rev());
                }
                Some(_) => {
                    return Err(format!(
                        "{} is not a directory",
                        String::from_utf8_lossy(&candidate)
                    ));
                }
            }
        }
        Ok(resolved.join(&b'/'))
    }

    /// Paths strictly under `dir` (every path when `dir` is the root).
    fn descendants<'a>(&'a self, dir: &[u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mut prefix = dir.to_vec();
        if !prefix.is_empty() {
            prefix.push(b'/');
        }
        self.nodes
            .range(prefix.clone()..)
            .map(|(p, _)| p.as_slice())
            .take_while(move |p| p.starts_with(&prefix))
    }

    /// Removes `path` and everything under it.
    fn remove(&mut self, path: &[u8]) {
        if !self.nodes.contains_key(path) {
            return;
        }
        let under: Vec<Vec<u8>> = self.descendants(path).map(<[u8]>::to_vec).collect();
        for p in under {
            self.remove_one(&p);
        }
        self.remove_one(path);
    }

    fn remove_one(&mut self, path: &[u8]) {
        if let Some(removed) = self.nodes.remove(path)
            && let Some(content) = removed.content.and_then(|i| self.contents.get_mut(i))
        {
            content.names = content.names.saturating_sub(1);
        }
    }
}

/// A directory the unpacker creates for an entry whose parent no layer
/// lists.
fn implicit_dir() -> FileNode {
    FileNode {
        file_type: FileType::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        size: 0,
        digest: None,
        link: None,
        device: (0, 0),
        xattrs: Vec::new(),
    }
}

/// Records `path` and its ancestors as written by the layer being
/// applied, as the unpacker does: whiteouts and opaque markers spare them.
fn mark(written: &mut HashSet<Vec<u8>>, path: &[u8]) {
    let mut end = path.len();
    loop {
        let prefix = path.get(..end).unwrap_or_default();
        if !written.insert(prefix.to_vec()) || prefix.is_empty() {
            break;
        }
        end = prefix.iter().rposition(|&b| b == b'/').unwrap_or(0);
    }
}

/// The non-empty, non-`.` components of a path (`..` kept).
fn components(path: &[u8]) -> impl DoubleEndedIterator<Item = Vec<u8>> + '_ {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(<[u8]>::to_vec)
}

fn entry_error(path: &[u8], reason: &str) -> LayerError {
    LayerError::Entry {
        entry: String::from_utf8_lossy(path).into_owned(),
        reason: reason.to_owned(),
    }
}
