//! The merged view of a snapshot chain, for [`super::apply_layer`]: a layer
//! is applied into an empty upper directory while its parent paths are
//! resolved through the upper and the lower layers, as overlayfs would
//! resolve them once the upper is stacked on the lowers.
//!
//! overlayfs's lookup rules, which this follows: at each directory level
//! the upper entry wins; a 0/0 character device is a whiteout that hides
//! the name in the layers below; a non-directory hides everything below;
//! directories merge with the directories of the same name below until a
//! layer has something else there, or the directory is opaque
//! (`trusted.overlay.opaque` or `user.overlay.opaque` = `y`). The lowers
//! are immutable while a layer is applied, so which of them contribute a
//! directory at a path is computed once per path.
//!
//! Confinement: every lower is only read, through descriptors of its root,
//! with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS)` of resolved
//! (symlink-free) paths and `*at` calls on one name that never follow it.
//! Symlinks are read with `readlinkat` and interpreted here against the
//! merged root: an absolute target restarts at the root, `..` never climbs
//! above it, and 40 links at most are followed (the kernel's limit).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;

use kiln_rootfs::Root;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat, futimens, makedev, mkdirat, mknodat};
use nix::sys::time::TimeSpec;
use xattr::FileExt;

use super::{
    EntryMeta, Kind, LayerError, Parent, Unpacker, errno, join, list_dir, lossy, os, parent_error,
    split_last,
};

/// Most symlinks followed while resolving one path, as Linux's `MAXSYMLINKS`.
const MAX_SYMLINKS: u32 = 40;

/// The lower layers of a chain and what is known about them.
pub(super) struct Chain {
    /// The lowers' roots, top first.
    lowers: Vec<Root>,
    /// The lowers (indexes into `lowers`, top first) that contribute a
    /// directory at a resolved path.
    stacks: HashMap<Vec<u8>, Rc<[usize]>>,
    /// What the lowers show at a resolved path, and in which lower
    /// (immutable as well).
    entries: HashMap<Vec<u8>, (Found, Option<usize>)>,
    /// Upper directories this layer made opaque while being applied.
    pub(super) opaque: HashSet<Vec<u8>>,
    /// Parents resolved so far, by the name entries give them: their
    /// resolved path and whether lowers show through it.
    parents: HashMap<Vec<u8>, (Vec<u8>, bool)>,
    /// The resolved paths (directories and symlinks) those resolutions
    /// went through: an entry at one of them may change them.
    traversed: HashSet<Vec<u8>>,
}

impl Chain {
    pub(super) fn new(lowers: Vec<Root>) -> Self {
        Self {
            lowers,
            stacks: HashMap::new(),
            entries: HashMap::new(),
            opaque: HashSet::new(),
            parents: HashMap::new(),
            traversed: HashSet::new(),
        }
    }

    /// Forgets the resolved parents if changing `path` may change one.
    pub(super) fn changing(&mut self, path: &[u8]) {
        if self.traversed.contains(path) {
            self.parents.clear();
            self.traversed.clear();
        }
    }
}

/// Why a merged lookup failed: a system call, or a copy-up's own error.
pub(super) enum Failure {
    Errno(Errno),
    Layer(LayerError),
}

impl From<Errno> for Failure {
    fn from(e: Errno) -> Self {
        Self::Errno(e)
    }
}

impl From<LayerError> for Failure {
    fn from(e: LayerError) -> Self {
        Self::Layer(e)
    }
}

/// A name in a merged directory.
#[derive(Clone)]
enum Found {
    /// Not there, or hidden by a whiteout (`upper_whiteout`: the upper's).
    Absent { upper_whiteout: bool },
    /// A directory; whether lower directories merge into it.
    Dir { lowers_visible: bool },
    /// A symlink and its target.
    Symlink(Vec<u8>),
    /// Anything else (file, device, fifo).
    Other,
}

fn is_whiteout(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR && st.st_rdev == 0
}

fn is_dir(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

fn is_symlink(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK
}

/// Opens `path` (resolved: directories only, no symlinks) under `root`.
fn open_resolved(root: &Root, path: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
    root.open_resolved(os(path), flags).map_err(|e| errno(&e))
}

/// Whether an open directory carries an overlayfs opaque mark.
fn has_opaque_mark(fd: OwnedFd) -> bool {
    let file = File::from(fd);
    [
        super::OVERLAY_OPAQUE_XATTR,
        super::OVERLAY_USER_OPAQUE_XATTR,
    ]
    .iter()
    .any(|name| matches!(file.get_xattr(name), Ok(Some(v)) if v == b"y"))
}

/// The xattrs of an open file that a copy keeps (not overlayfs's own).
fn copied_xattrs(fd: &OwnedFd) -> io::Result<Vec<(String, Vec<u8>)>> {
    let file = File::from(fd.try_clone()?);
    let mut xattrs = Vec::new();
    for name in file.list_xattr()? {
        let Some(name) = name.to_str().map(str::to_owned) else {
            continue;
        };
        if name.starts_with("trusted.overlay.")
            || name.starts_with("user.overlay.")
            || name == "security.selinux"
        {
            continue;
        }
        if let Some(value) = file.get_xattr(&name)? {
            xattrs.push((name, value));
        }
    }
    Ok(xattrs)
}

/// The metadata a copy-up gives the copy of `st` at `path`.
fn copy_meta(path: &[u8], kind: Kind, st: &FileStat, xattrs: Vec<(String, Vec<u8>)>) -> EntryMeta {
    EntryMeta {
        raw_name: path.to_vec(),
        kind,
        link: None,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
        size: 0,
        xattrs,
        dev: (0, 0),
    }
}

impl Unpacker {
    fn chain_ref(&self) -> nix::Result<&Chain> {
        self.chain.as_ref().ok_or(Errno::EINVAL)
    }

    fn chain_mut(&mut self) -> nix::Result<&mut Chain> {
        self.chain.as_mut().ok_or(Errno::EINVAL)
    }

    /// Lower `index`'s directory at resolved `path` (which it has).
    fn lower_dir(&self, index: usize, path: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
        let root = self.chain_ref()?.lowers.get(index).ok_or(Errno::EINVAL)?;
        open_resolved(root, path, flags | OFlag::O_DIRECTORY)
    }

    /// The lowers contributing a directory at resolved `path`, top first.
    fn lower_stack(&mut self, path: &[u8]) -> nix::Result<Rc<[usize]>> {
        // Down from the nearest known ancestor, iteratively, so that a
        // deep path cannot exhaust the stack.
        let mut todo = Vec::new();
        let mut dir = path.to_vec();
        while !self.chain_ref()?.stacks.contains_key(&dir) {
            if dir.is_empty() {
                // Every layer's root merges (overlayfs ignores opaque roots).
                let all: Rc<[usize]> = (0..self.chain_ref()?.lowers.len()).collect();
                self.chain_mut()?.stacks.insert(Vec::new(), all);
                break;
            }
            let parent = split_last(&dir).0.to_vec();
            todo.push(std::mem::replace(&mut dir, parent));
        }
        while let Some(dir) = todo.pop() {
            let (parent, base) = split_last(&dir);
            let below = self
                .chain_ref()?
                .stacks
                .get(parent)
                .cloned()
                .ok_or(Errno::EINVAL)?;
            let stack = self.stack_below(parent, &below, base)?;
            self.chain_mut()?.stacks.insert(dir, stack);
        }
        self.chain_ref()?
            .stacks
            .get(path)
            .cloned()
            .ok_or(Errno::EINVAL)
    }

    /// The lowers of `stack` (at `parent`) with a directory `base` that
    /// shows through: down to a whiteout, a non-directory or an opaque one.
    fn stack_below(&self, parent: &[u8], stack: &[usize], base: &[u8]) -> nix::Result<Rc<[usize]>> {
        let mut found = Vec::new();
        for &index in stack {
            let dir = self.lower_dir(index, parent, OFlag::O_PATH)?;
            let st = match fstatat(dir.as_fd(), os(base), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(e),
            };
            if !is_dir(&st) {
                break;
            }
            found.push(index);
            let opened = openat(
                dir.as_fd(),
                os(base),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            if has_opaque_mark(opened) {
                break;
            }
        }
        Ok(found.into())
    }

    /// What the lowers show at `dir/base` (`dir` resolved, lowers visible
    /// there), and in which lower.
    fn lower_entry(&mut self, dir: &[u8], base: &[u8]) -> nix::Result<(Found, Option<usize>)> {
        let path = join(dir, base);
        if let Some(known) = self.chain_ref()?.entries.get(&path) {
            return Ok(known.clone());
        }
        let found = self.lookup_lowers(dir, base)?;
        self.chain_mut()?.entries.insert(path, found.clone());
        Ok(found)
    }

    /// [`Self::lower_entry`] without its cache.
    fn lookup_lowers(&mut self, dir: &[u8], base: &[u8]) -> nix::Result<(Found, Option<usize>)> {
        let stack = self.lower_stack(dir)?;
        for &index in stack.iter() {
            let fd = self.lower_dir(index, dir, OFlag::O_PATH)?;
            let st = match fstatat(fd.as_fd(), os(base), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(e),
            };
            let found = if is_whiteout(&st) {
                Found::Absent {
                    upper_whiteout: false,
                }
            } else if is_dir(&st) {
                Found::Dir {
                    lowers_visible: true,
                }
            } else if is_symlink(&st) {
                Found::Symlink(readlinkat(fd.as_fd(), os(base))?.into_encoded_bytes())
            } else {
                Found::Other
            };
            return Ok((found, Some(index)));
        }
        Ok((
            Found::Absent {
                upper_whiteout: false,
            },
            None,
        ))
    }

    /// What the merged view shows at `dir/base`: the upper's entry (`upper`
    /// is its directory at `dir`, if it has one), else the lowers' when
    /// they show through `dir`.
    fn merged_entry(
        &mut self,
        upper: Option<&OwnedFd>,
        dir: &[u8],
        lowers_visible: bool,
        base: &[u8],
    ) -> nix::Result<Found> {
        if let Some(ufd) = upper {
            match fstatat(ufd.as_fd(), os(base), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) if is_whiteout(&st) => {
                    return Ok(Found::Absent {
                        upper_whiteout: true,
                    });
                }
                Ok(st) if is_dir(&st) => {
                    let path = join(dir, base);
                    let opaque = self.chain_ref()?.opaque.contains(&path);
                    let below = lowers_visible
                        && !opaque
                        && matches!(self.lower_entry(dir, base)?.0, Found::Dir { .. });
                    return Ok(Found::Dir {
                        lowers_visible: below,
                    });
                }
                Ok(st) if is_symlink(&st) => {
                    return Ok(Found::Symlink(
                        readlinkat(ufd.as_fd(), os(base))?.into_encoded_bytes(),
                    ));
                }
                Ok(_) => return Ok(Found::Other),
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
        if !lowers_visible {
            return Ok(Found::Absent {
                upper_whiteout: false,
            });
        }
        Ok(self.lower_entry(dir, base)?.0)
    }

    /// The upper's directory at resolved `path`, if it has one.
    fn upper_dir(&self, path: &[u8]) -> nix::Result<Option<OwnedFd>> {
        match open_resolved(&self.root, path, OFlag::O_PATH | OFlag::O_DIRECTORY) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Resolves directory `path` in the merged view; with `create`,
    /// missing components of `path` itself (not of a symlink's target,
    /// which is then dangling) are made in the upper. Returns `None` when
    /// `path` does not exist and `create` is false.
    fn chain_resolve(
        &mut self,
        path: &[u8],
        create: bool,
        traversed: &mut HashSet<Vec<u8>>,
    ) -> Result<Option<Parent>, Failure> {
        // (component, whether it comes from a symlink's target)
        let mut pending: VecDeque<(Vec<u8>, bool)> = path
            .split(|&b| b == b'/')
            .map(|c| (c.to_vec(), false))
            .collect();
        let mut resolved: Vec<u8> = Vec::new();
        // Whether lowers show through each directory of `resolved`, root first.
        let mut visible: Vec<bool> = vec![true];
        let mut upper = self.upper_dir(b"")?;
        let mut links = 0;
        while let Some((name, from_link)) = pending.pop_front() {
            match name.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    if visible.len() > 1 {
                        visible.pop();
                        resolved.truncate(split_last(&resolved).0.len());
                    }
                    upper = self.upper_dir(&resolved)?;
                    continue;
                }
                _ => {}
            }
            let lowers_visible = visible.last().copied().unwrap_or(false);
            let found = self.merged_entry(upper.as_ref(), &resolved, lowers_visible, &name)?;
            if !matches!(found, Found::Absent { .. }) {
                traversed.insert(join(&resolved, &name));
            }
            match found {
                Found::Dir { lowers_visible } => {
                    upper = match &upper {
                        Some(u) => match openat(
                            u.as_fd(),
                            os(&name),
                            OFlag::O_PATH
                                | OFlag::O_DIRECTORY
                                | OFlag::O_NOFOLLOW
                                | OFlag::O_CLOEXEC,
                            Mode::empty(),
                        ) {
                            Ok(fd) => Some(fd),
                            Err(Errno::ENOENT) => None,
                            Err(e) => return Err(e.into()),
                        },
                        None => None,
                    };
                    resolved = join(&resolved, &name);
                    visible.push(lowers_visible);
                }
                Found::Symlink(target) => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(Errno::ELOOP.into());
                    }
                    if target.is_empty() {
                        return Err(Errno::ENOENT.into());
                    }
                    if target.starts_with(b"/") {
                        resolved.clear();
                        visible.truncate(1);
                        upper = self.upper_dir(b"")?;
                    }
                    for comp in target.split(|&b| b == b'/').rev() {
                        pending.push_front((comp.to_vec(), true));
                    }
                }
                Found::Other => return Err(Errno::ENOTDIR.into()),
                Found::Absent { upper_whiteout } => {
                    if !create {
                        return Ok(None);
                    }
                    if from_link {
                        return Err(Errno::ENOENT.into());
                    }
                    let ufd = self.copy_up_dir(&resolved)?;
                    if upper_whiteout {
                        nix::unistd::unlinkat(
                            ufd.as_fd(),
                            os(&name),
                            nix::unistd::UnlinkatFlags::NoRemoveDir,
                        )?;
                    }
                    mkdirat(ufd.as_fd(), os(&name), Mode::from_bits_truncate(0o755))?;
                    let path = join(&resolved, &name);
                    // It replaces a whiteout of this layer: what that hid
                    // stays hidden.
                    let hides = upper_whiteout
                        && lowers_visible
                        && matches!(self.lower_entry(&resolved, &name)?.0, Found::Dir { .. });
                    if hides {
                        let fd = openat(
                            ufd.as_fd(),
                            os(&name),
                            OFlag::O_RDONLY
                                | OFlag::O_DIRECTORY
                                | OFlag::O_NOFOLLOW
                                | OFlag::O_CLOEXEC,
                            Mode::empty(),
                        )?;
                        self.set_opaque(fd, &path)?;
                        self.chain_mut()?.opaque.insert(path.clone());
                    }
                    upper = Some(openat(
                        ufd.as_fd(),
                        os(&name),
                        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )?);
                    resolved = path;
                    // A new directory: nothing below shows through it
                    // (had a lower one been there, the name was not absent).
                    visible.push(false);
                }
            }
        }
        let fd = match upper {
            Some(fd) => fd,
            None => self.copy_up_dir(&resolved)?,
        };
        Ok(Some(Parent {
            fd,
            path: resolved,
            lowers_visible: visible.last().copied().unwrap_or(false),
        }))
    }

    /// [`super::Unpacker::parent_dir`] on a chain.
    pub(super) fn chain_dir(&mut self, parent: &[u8], entry: &[u8]) -> Result<Parent, LayerError> {
        let failed = |f: Failure| match f {
            Failure::Errno(e) => parent_error(entry, parent, e),
            Failure::Layer(e) => e,
        };
        // Known: it resolves to a directory of the merged view, which the
        // upper has or gets by copy-up.
        if let Some((path, lowers_visible)) = self
            .chain_ref()
            .ok()
            .and_then(|c| c.parents.get(parent))
            .cloned()
        {
            let fd = match self.upper_dir(&path).map_err(|e| failed(e.into()))? {
                Some(fd) => fd,
                None => self.copy_up_dir(&path).map_err(failed)?,
            };
            return Ok(Parent {
                fd,
                path,
                lowers_visible,
            });
        }
        let mut traversed = HashSet::new();
        match self.chain_resolve(parent, true, &mut traversed) {
            Ok(Some(dir)) => {
                let chain = self.chain_mut().map_err(|e| failed(e.into()))?;
                chain.traversed.extend(traversed);
                chain
                    .parents
                    .insert(parent.to_vec(), (dir.path.clone(), dir.lowers_visible));
                Ok(dir)
            }
            Ok(None) => Err(parent_error(entry, parent, Errno::ENOENT)),
            Err(f) => Err(failed(f)),
        }
    }

    /// The upper directory holding hardlink target `base` in `parent`
    /// (normalized), which is copied up first when only a lower has it.
    pub(super) fn chain_target(&mut self, parent: &[u8], base: &[u8]) -> Result<Parent, Failure> {
        let dir = self
            .chain_resolve(parent, false, &mut HashSet::new())?
            .ok_or(Errno::ENOENT)?;
        match fstatat(dir.fd.as_fd(), os(base), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if is_whiteout(&st) => return Err(Errno::ENOENT.into()),
            Ok(_) => return Ok(dir),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
        if !dir.lowers_visible {
            return Err(Errno::ENOENT.into());
        }
        let (found, index) = self.lower_entry(&dir.path, base)?;
        match (found, index) {
            (Found::Absent { .. }, _) | (_, None) => Err(Errno::ENOENT.into()),
            // link(2) refuses directories.
            (Found::Dir { .. }, _) => Err(Errno::EPERM.into()),
            (_, Some(index)) => {
                self.copy_up_entry(&dir, base, index)?;
                Ok(dir)
            }
        }
    }

    /// Whether a lower shows a directory `base` in `parent`.
    pub(super) fn lower_has_dir(
        &mut self,
        parent: &Parent,
        base: &[u8],
    ) -> Result<bool, LayerError> {
        if self.chain.is_none() || !parent.lowers_visible {
            return Ok(false);
        }
        let found = self.lower_entry(&parent.path, base).map_err(|e| {
            LayerError::io(
                format!("looking up {}", lossy(&join(&parent.path, base))),
                e,
            )
        })?;
        Ok(matches!(found.0, Found::Dir { .. }))
    }

    /// Makes the upper have directory `path` (resolved, a directory in the
    /// merged view): missing components are copied up from the top lower
    /// that has them (mode, owner, xattrs; their mtime is restored at the
    /// end, as nothing of this layer changed them).
    fn copy_up_dir(&mut self, path: &[u8]) -> Result<OwnedFd, Failure> {
        let mut cur = self.upper_dir(b"")?.ok_or(Errno::ENOENT)?;
        if path.is_empty() {
            return Ok(cur);
        }
        let mut prefix: Vec<u8> = Vec::new();
        for name in path.split(|&b| b == b'/') {
            prefix = join(&prefix, name);
            match openat(
                cur.as_fd(),
                os(name),
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => {
                    cur = fd;
                    continue;
                }
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
            let index = *self.lower_stack(&prefix)?.first().ok_or(Errno::ENOENT)?;
            let lower = self.lower_dir(index, &prefix, OFlag::O_RDONLY)?;
            let st = fstat(lower.as_fd())?;
            let xattrs = copied_xattrs(&lower).map_err(|e| errno(&e))?;
            mkdirat(cur.as_fd(), os(name), Mode::from_bits_truncate(0o700))?;
            let fd = openat(
                cur.as_fd(),
                os(name),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            let meta = copy_meta(&prefix, Kind::Dir, &st, xattrs);
            self.set_fd_meta(&fd, &meta)?;
            self.defer_dir_mode(&fd, prefix.clone(), &meta)?;
            self.dir_times.push((prefix.clone(), meta.mtime));
            cur = fd;
        }
        Ok(cur)
    }

    /// Copies `base` of lower `index` into the upper directory `dir`, as
    /// overlayfs copies a file up before linking to it.
    fn copy_up_entry(&mut self, dir: &Parent, base: &[u8], index: usize) -> Result<(), Failure> {
        let lower = self.lower_dir(index, &dir.path, OFlag::O_PATH)?;
        let st = fstatat(lower.as_fd(), os(base), AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let path = join(&dir.path, base);
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFREG {
            let source = openat(
                lower.as_fd(),
                os(base),
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            let xattrs = copied_xattrs(&source).map_err(|e| errno(&e))?;
            let copy = openat(
                dir.fd.as_fd(),
                os(base),
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )?;
            let mut from = File::from(source);
            let mut to = File::from(copy);
            io::copy(&mut from, &mut to).map_err(|e| errno(&e))?;
            let copy = OwnedFd::from(to);
            let meta = copy_meta(&path, Kind::File, &st, xattrs);
            self.set_fd_meta(&copy, &meta)?;
            futimens(copy.as_fd(), &meta.mtime, &meta.mtime)?;
            return Ok(());
        }
        if kind == SFlag::S_IFLNK {
            let meta = copy_meta(&path, Kind::Symlink, &st, Vec::new());
            let target = readlinkat(lower.as_fd(), os(base))?;
            nix::unistd::symlinkat(target.as_os_str(), dir.fd.as_fd(), os(base))?;
            return Ok(self.set_at_meta(&dir.fd, base, &meta, false)?);
        }
        if self.rootless && kind != SFlag::S_IFIFO {
            // Devices need root; rootless unpacking skips them altogether.
            return Err(Errno::EPERM.into());
        }
        let meta = copy_meta(&path, Kind::Fifo, &st, Vec::new());
        mknodat(
            dir.fd.as_fd(),
            os(base),
            kind,
            Mode::from_bits_truncate(0o600),
            st.st_rdev,
        )?;
        Ok(self.set_at_meta(&dir.fd, base, &meta, true)?)
    }

    /// An opaque root: a whiteout for every name the lowers show at the
    /// root that the upper does not have.
    pub(super) fn whiteout_lower_root(&mut self) -> Result<(), LayerError> {
        let what = |e| LayerError::io("hiding the lower layers' root entries", e);
        let upper = self
            .upper_dir(b"")
            .map_err(what)?
            .ok_or_else(|| what(Errno::ENOENT))?;
        let count = self.chain_ref().map_err(what)?.lowers.len();
        let mut names: Vec<Vec<u8>> = Vec::new();
        for index in 0..count {
            let fd = self.lower_dir(index, b"", OFlag::O_RDONLY).map_err(what)?;
            names.extend(list_dir(fd).map_err(what)?);
        }
        names.sort();
        names.dedup();
        for name in names {
            let (found, _) = self.lower_entry(b"", &name).map_err(what)?;
            if let Found::Absent { .. } = found {
                continue;
            }
            match fstatat(upper.as_fd(), os(&name), AtFlags::AT_SYMLINK_NOFOLLOW) {
                // This layer's directory keeps only its own entries.
                Ok(st) if is_dir(&st) && matches!(found, Found::Dir { .. }) => {
                    let fd = openat(
                        upper.as_fd(),
                        os(&name),
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(what)?;
                    self.set_opaque(fd, &name)?;
                    continue;
                }
                Ok(_) => continue,
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(what(e)),
            }
            mknodat(
                upper.as_fd(),
                os(&name),
                SFlag::S_IFCHR,
                Mode::empty(),
                makedev(0, 0),
            )
            .map_err(|e| LayerError::io(format!("creating whiteout for {}", lossy(&name)), e))?;
        }
        Ok(())
    }
}
