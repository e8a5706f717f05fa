//! The filesystem side of COPY and ADD, as `BuildKit` does it (fsutil's
//! `copy.Copy` and the file op's archive unpacking and HTTP source).
//!
//! Everything is written under `root`, the container's `/` (in the build,
//! an overlay mount of the step). Destination paths are resolved with
//! `openat2(RESOLVE_IN_ROOT)` from a descriptor of `root`, so symlinks in
//! them behave as inside the container and can never reach the host; below
//! the resolved destination every call is an `*at` call on a directory
//! descriptor that never follows the final component.
//!
//! `BuildKit` behaviour kept here:
//! - missing destination parents are created with mode 0755, or the
//!   `--chmod` mode when it is octal (fsutil's `MkdirAll` with the copy's
//!   `Mode`; a symbolic mode leaves them 0755, an archive's destination is
//!   0755 whatever the mode), owned by the `--chown` owner when given;
//! - a directory source's contents go into the destination, which keeps
//!   its own metadata if it existed; directories below it get the source
//!   directory's owner, mode and times, also when they already existed;
//! - files, symlinks and devices keep mode, atime and mtime; owners are
//!   kept for `--from` sources and are 0:0 for the build context (the
//!   client sends context files as root's);
//! - a file replaces a non-directory at its target; replacing a directory
//!   with a file, or writing a directory over a non-directory, is an error
//!   with fsutil's wording;
//! - `--chmod` applies to every copied file and directory (created parents
//!   get an octal mode, above); `--chown` to every copied entry and created
//!   parent;
//! - a socket of the build context is written as an empty regular file with
//!   the socket's mode and times, as `BuildKit` receives it from fsutil's
//!   sender; one in a stage's filesystem is not copied (fsutil's copier
//!   makes a socket, which no layer holds).
//!
//! Hardlinks inside one source are copied as separate files (fsutil links
//! them again); extended attributes are copied except `security.selinux`,
//! and failures to set them are logged, as `BuildKit` does.

mod archive;
mod copier;
mod dest;
mod download;
pub mod git;
pub mod reach;
#[cfg(test)]
mod tests;

use std::fs::{self, File, Metadata};
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use kiln_parser::values::Chmod;
use kiln_rootfs::Root;
use kiln_rootfs::root::display;

use self::archive::sniff_archive;
use self::copier::{Copier, Reuse};
use self::dest::{DestRoot, clean, create_file, dest_err};
pub use self::download::{download, url_file_name};
use crate::context::{BuildContext, Source};
use crate::error::BuildError;

/// Mode of destination parents created on the way, without an octal
/// `--chmod`.
const PARENT_MODE: u32 = 0o755;
/// Mode of COPY heredoc files.
const INLINE_MODE: u32 = 0o644;
/// The file name `BuildKit` uses for a URL without a last path segment.
pub const UNNAMED_DOWNLOAD: &str = "__unnamed__";

pub use kiln_rootfs::root::Owner;

/// How [`copy_sources`], [`write_inline`] and [`copy_file_to`] write.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// `--chown`: the owner of every copied entry and created parent.
    pub owner: Option<Owner>,
    /// `--chmod`: applied to every copied file and directory.
    pub chmod: Option<Chmod>,
    /// ADD of local sources: tar archives (plain, gzip, bzip2, xz, zstd,
    /// detected by content) are extracted into the destination directory.
    pub unpack_archives: bool,
    /// Keep the sources' uid/gid when there is no `--chown` (`--from`
    /// sources); `false` makes them 0:0 (build context files).
    pub preserve_owner: bool,
    /// Modification times later than this (seconds since the epoch) are
    /// set to it (`SOURCE_DATE_EPOCH`).
    pub clamp_mtime: Option<i64>,
    /// Where ADD `--chown` stages an archive's files before they are
    /// copied over with their new owner (the build's own temporary
    /// directory in the store; `None`: the system's).
    pub staging: Option<PathBuf>,
}

/// What [`copy_sources`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CopyStats {
    /// Regular files written.
    pub files: u64,
    /// Directories copied (not counting created parents).
    pub dirs: u64,
    /// Symlinks written.
    pub symlinks: u64,
    /// Devices and fifos written.
    pub others: u64,
    /// Bytes of file content copied.
    pub bytes: u64,
    /// Archives extracted.
    pub archives: u64,
}

/// A regular file [`copy_sources_reusing`] is about to copy, for its
/// `reuse` callback to judge.
#[derive(Debug, Clone, Copy)]
pub struct PlannedFile<'a> {
    /// The source file on the host.
    pub source: &'a Path,
    /// The source's metadata (not following symlinks).
    pub meta: &'a Metadata,
    /// Where the copy would land: an absolute container path with every
    /// symlink on the way resolved (the path of the file in the layer).
    pub dest: &'a str,
    /// The owner the copy would get.
    pub owner: Owner,
    /// The permission bits (`0o7777`) the copy would get.
    pub mode: u32,
}

/// A file [`copy_sources_reusing`] left out because its `reuse` callback
/// said an earlier copy of it can be reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFile {
    /// The source file on the host.
    pub source: PathBuf,
    /// Its resolved container path (see [`PlannedFile::dest`]).
    pub dest: String,
    /// The owner the copy would have had.
    pub owner: Owner,
    /// The permission bits the copy would have had.
    pub mode: u32,
}

/// Resolves a `--chown` value against the image at `root`: `user`,
/// `user:group`, names or numeric ids, as `BuildKit`'s file operations do
/// (`kiln_rootfs::user::file_owner`): names are looked up in the root's
/// `/etc/passwd` and `/etc/group` (opened inside the root); a named user
/// without a group gets its primary group and a numeric user the group of
/// the same number; a name the files do not list is 0.
pub fn resolve_chown(root: &Root, spec: &str) -> Result<Owner, BuildError> {
    let (passwd, group) =
        kiln_rootfs::user::account_files(root).map_err(|e| BuildError::io(root.path(), e))?;
    let (uid, gid) = kiln_rootfs::user::file_owner(spec, &passwd, &group).map_err(|_| {
        BuildError::InvalidChown {
            spec: spec.to_owned(),
        }
    })?;
    Ok(Owner { uid, gid })
}

/// Copies resolved sources to `dest`, an absolute container path (already
/// joined with WORKDIR; a trailing `/` marks a directory) inside `root`.
///
/// `dest_is_dir` says the destination is a directory even without a
/// trailing `/` (several sources, a wildcard). A file source then lands at
/// `dest/` + its [`Source::dest`]; without it, at `dest` itself unless
/// `dest` is an existing directory. A directory source's contents land in
/// `dest/` + its [`Source::dest`] (empty unless `--parents`).
pub fn copy_sources(
    ctx: &BuildContext,
    sources: &[Source],
    root: &Root,
    dest: &str,
    dest_is_dir: bool,
    opts: &CopyOptions,
) -> Result<CopyStats, BuildError> {
    copy_sources_reusing(ctx, sources, root, dest, dest_is_dir, opts, &|_| false)
        .map(|(stats, _)| stats)
}

/// [`copy_sources`], except that a regular file whose target does not
/// exist yet and for which `reuse` answers `true` is not written: it is
/// returned instead, for the caller to put in place by other means (a hard
/// link from an earlier layer's snapshot). Its parent directory is still
/// created, and its mtime bumped as writing the file would have, so the
/// directory is in the overlay's upper directory and looks as after a
/// full copy (directories copied from the sources get their source's times
/// anyway). The caller must place every skipped file before the tree is
/// used, and restore the mtimes of the directories it writes into.
pub fn copy_sources_reusing(
    ctx: &BuildContext,
    sources: &[Source],
    root: &Root,
    dest: &str,
    dest_is_dir: bool,
    opts: &CopyOptions,
    reuse: &dyn Fn(&PlannedFile<'_>) -> bool,
) -> Result<(CopyStats, Vec<SkippedFile>), BuildError> {
    let droot = DestRoot::new(root, opts);
    let dest_comps = clean(dest);
    let dest_is_dir = dest_is_dir || dest.ends_with('/');
    let mut copier = Copier::new(opts);
    copier.sockets_as_files = ctx.sockets_as_files();
    copier.reuse = Some(Reuse {
        root,
        judge: reuse,
        skipped: Vec::new(),
    });
    for source in sources {
        let src_abs = if source.path == "." {
            ctx.root().to_owned()
        } else {
            ctx.root().join(&source.path)
        };
        if source.copy_contents {
            let mut target = dest_comps.clone();
            target.extend(clean(&source.dest));
            let fd = droot.mkdir_all(&target, opts.owner)?;
            copier.copy_tree(ctx, source, fd, &display(&target))?;
            continue;
        }
        let meta = fs::symlink_metadata(&src_abs).map_err(|e| BuildError::io(&src_abs, e))?;
        if opts.unpack_archives && meta.is_file() {
            let archive = format!("/{}", source.path.trim_start_matches("./"));
            if let Some(kind) = sniff_archive(&src_abs)? {
                // BuildKit's unpack makes the destination 0755 whatever
                // --chmod says.
                let fd = droot.mkdir_all_mode(&dest_comps, PARENT_MODE, opts.owner)?;
                copier.unpack(&src_abs, kind, &fd, &archive, &display(&dest_comps))?;
                continue;
            }
        }
        let target = droot.file_target(&dest_comps, dest_is_dir, &source.dest);
        copier.copy_single(&droot, &src_abs, &meta, &target)?;
    }
    let skipped = copier.reuse.take().map(|r| r.skipped).unwrap_or_default();
    Ok((copier.stats, skipped))
}

/// Writes COPY heredoc files: each `(name, content)` is created with mode
/// 0644 (then `--chmod`, `--chown`), at `dest/name` when `dest` ends with
/// `/` (or there are several files), else at `dest` itself unless `dest`
/// is an existing directory.
pub fn write_inline(
    root: &Root,
    files: &[(String, String)],
    dest: &str,
    opts: &CopyOptions,
) -> Result<(), BuildError> {
    let droot = DestRoot::new(root, opts);
    let dest_comps = clean(dest);
    let dest_is_dir = dest.ends_with('/') || files.len() > 1;
    let copier = Copier::new(opts);
    for (name, content) in files {
        let target = droot.file_target(&dest_comps, dest_is_dir, name);
        let (pfd, base, shown) = droot.parent_of(&target, opts.owner)?;
        let fd = create_file(&pfd, &base, &shown)?;
        let mut file = File::from(fd);
        file.write_all(content.as_bytes())
            .map_err(|e| dest_err("writing", &shown, e))?;
        let owner = opts.owner.unwrap_or(Owner { uid: 0, gid: 0 });
        let mode = opts
            .chmod
            .as_ref()
            .map_or(INLINE_MODE, |c| c.apply(INLINE_MODE, false) & 0o7777);
        copier.set_owner_mode(file.as_fd(), owner, mode, &shown)?;
    }
    Ok(())
}

/// Copies a single local file (a download) named `name` to `dest` with the
/// rules of a file source: into `dest` when it ends with `/`, `dest_is_dir`
/// is set or it is an existing directory, else to `dest` itself. The
/// file's owner is replaced by `--chown` or 0:0; mode and mtime are kept.
pub fn copy_file_to(
    root: &Root,
    file: &Path,
    name: &str,
    dest: &str,
    dest_is_dir: bool,
    opts: &CopyOptions,
) -> Result<(), BuildError> {
    let droot = DestRoot::new(root, opts);
    let meta = fs::symlink_metadata(file).map_err(|e| BuildError::io(file, e))?;
    let dest_comps = clean(dest);
    let target = droot.file_target(&dest_comps, dest_is_dir || dest.ends_with('/'), name);
    let opts = CopyOptions {
        preserve_owner: false,
        ..opts.clone()
    };
    Copier::new(&opts).copy_single(&droot, file, &meta, &target)?;
    Ok(())
}

/// `mkdir -p path` inside the container root (mode 0755, owned by `owner`
/// or root), following symlinks on the way inside the root, as WORKDIR
/// does.
pub fn mkdir_all_in_root(root: &Root, path: &str, owner: Option<Owner>) -> Result<(), BuildError> {
    DestRoot {
        root,
        dir_mode: PARENT_MODE,
    }
    .mkdir_all(&clean(path), owner)?;
    Ok(())
}
