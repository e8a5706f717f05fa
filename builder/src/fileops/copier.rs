//! The [`Copier`]: writes files, symlinks, devices and directory trees
//! below resolved destination directories, with their owner, mode, xattrs
//! and times, and leaves out files offered for reuse.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use kiln_rootfs::Root;
use kiln_store::layer::{UnpackOptions, WhiteoutMode, unpack_layer};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{
    FchmodatFlags, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, fstatat, futimens, mkdirat,
    mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, fchown, fchownat, symlinkat};

use super::archive::{ArchiveKind, open_archive};
use super::dest::{DestRoot, clear_target, create_file, dest_err};
use super::{CopyOptions, CopyStats, Owner, PlannedFile, SkippedFile};
use crate::context::{BuildContext, Source};
use crate::error::BuildError;

fn timespec(sec: i64, nsec: i64) -> TimeSpec {
    TimeSpec::new(sec, nsec)
}

/// An open destination directory waiting for its metadata until its
/// children are written (their creation would bump its mtime).
struct OpenDir {
    rel: Vec<u8>,
    fd: OwnedFd,
    shown: String,
    /// The source directory's metadata; `None` for the destination itself.
    meta: Option<(Metadata, PathBuf)>,
    /// Its resolved container path (`None`: not under the root), once
    /// `real_known` says a file in it was offered for reuse.
    real: Option<String>,
    real_known: bool,
    /// Whether its mtime was bumped for a skipped file.
    touched: bool,
}

/// What [`copy_sources_reusing`] asks and collects.
pub(super) struct Reuse<'r> {
    /// The container root.
    pub(super) root: &'r Root,
    pub(super) judge: &'r dyn Fn(&PlannedFile<'_>) -> bool,
    pub(super) skipped: Vec<SkippedFile>,
}

pub(super) struct Copier<'a> {
    opts: &'a CopyOptions,
    /// A single id mapped (not root, or rootless without subordinate
    /// ids): no chown.
    rootless: bool,
    pub(super) stats: CopyStats,
    pub(super) reuse: Option<Reuse<'a>>,
    /// Sockets are written as empty regular files (sources from the
    /// client's build context) rather than left out.
    pub(super) sockets_as_files: bool,
}

impl<'a> Copier<'a> {
    pub(super) fn new(opts: &'a CopyOptions) -> Self {
        Self {
            opts,
            rootless: kiln_rootfs::userns::single_id(),
            stats: CopyStats::default(),
            reuse: None,
            sockets_as_files: false,
        }
    }

    /// The resolved container path of the open directory `fd`, if it is
    /// under the root (it always is; `None` makes the file be copied).
    fn real_dir(&self, fd: &OwnedFd) -> Option<String> {
        let reuse = self.reuse.as_ref()?;
        let inside = reuse.root.real_path(fd.as_fd()).ok()??;
        Some(inside.trim_end_matches('/').to_owned())
    }

    /// Whether regular file `src` (to be `base` in `pfd`, whose resolved
    /// container path is `dir`) is left out for reuse. Only a target that
    /// does not exist is left out, so nothing (not even a whiteout) is in
    /// the upper directory where the caller puts the file.
    fn skip_file(
        &mut self,
        pfd: &OwnedFd,
        base: &OsStr,
        src: &Path,
        meta: &Metadata,
        dir: &str,
    ) -> bool {
        if self.reuse.is_none() || !meta.is_file() {
            return false;
        }
        match fstatat(pfd.as_fd(), base, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => {}
            _ => return false,
        }
        let Some(name) = base.to_str() else {
            return false;
        };
        let dest = format!("{dir}/{name}");
        let (owner, mode) = (self.owner_of(meta), self.mode_of(meta));
        let planned = PlannedFile {
            source: src,
            meta,
            dest: &dest,
            owner,
            mode,
        };
        let Some(reuse) = self.reuse.as_mut() else {
            return false;
        };
        if !(reuse.judge)(&planned) {
            return false;
        }
        reuse.skipped.push(SkippedFile {
            source: src.to_owned(),
            dest,
            owner,
            mode,
        });
        true
    }
    fn owner_of(&self, meta: &Metadata) -> Owner {
        self.opts.owner.unwrap_or(if self.opts.preserve_owner {
            Owner {
                uid: meta.uid(),
                gid: meta.gid(),
            }
        } else {
            Owner { uid: 0, gid: 0 }
        })
    }

    fn mode_of(&self, meta: &Metadata) -> u32 {
        let mode = meta.mode() & 0o7777;
        match &self.opts.chmod {
            Some(c) => c.apply(mode, meta.is_dir()) & 0o7777,
            None => mode,
        }
    }

    fn times_of(&self, meta: &Metadata) -> (TimeSpec, TimeSpec) {
        let (mut sec, mut nsec) = (meta.mtime(), meta.mtime_nsec());
        if let Some(clamp) = self.opts.clamp_mtime
            && sec >= clamp
        {
            (sec, nsec) = (clamp, 0);
        }
        (
            timespec(meta.atime(), meta.atime_nsec()),
            timespec(sec, nsec),
        )
    }

    /// Owner then mode (chown clears setuid bits and capabilities).
    pub(super) fn set_owner_mode(
        &self,
        fd: BorrowedFd<'_>,
        owner: Owner,
        mode: u32,
        shown: &str,
    ) -> Result<(), BuildError> {
        if !self.rootless {
            fchown(
                fd,
                Some(Uid::from_raw(owner.uid)),
                Some(Gid::from_raw(owner.gid)),
            )
            .map_err(|e| dest_err("changing owner of", shown, e))?;
        }
        fchmod(fd, Mode::from_bits_truncate(mode))
            .map_err(|e| dest_err("changing mode of", shown, e))
    }

    /// Owner, mode, xattrs and times of an open file or directory.
    fn finish_fd(
        &self,
        fd: &OwnedFd,
        src: &Path,
        meta: &Metadata,
        shown: &str,
    ) -> Result<(), BuildError> {
        self.set_owner_mode(fd.as_fd(), self.owner_of(meta), self.mode_of(meta), shown)?;
        copy_xattrs(src, fd, shown);
        let (atime, mtime) = self.times_of(meta);
        futimens(fd.as_fd(), &atime, &mtime).map_err(|e| dest_err("setting times of", shown, e))
    }

    /// Owner and times of a symlink or device `base` in `pfd`.
    fn finish_at(
        &self,
        pfd: &OwnedFd,
        base: &OsStr,
        meta: &Metadata,
        shown: &str,
        chmod: bool,
    ) -> Result<(), BuildError> {
        let owner = self.owner_of(meta);
        if !self.rootless {
            fchownat(
                pfd.as_fd(),
                base,
                Some(Uid::from_raw(owner.uid)),
                Some(Gid::from_raw(owner.gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| dest_err("changing owner of", shown, e))?;
        }
        if chmod {
            fchmodat(
                pfd.as_fd(),
                base,
                Mode::from_bits_truncate(self.mode_of(meta)),
                FchmodatFlags::NoFollowSymlink,
            )
            .map_err(|e| dest_err("changing mode of", shown, e))?;
        }
        let (atime, mtime) = self.times_of(meta);
        utimensat(
            pfd.as_fd(),
            base,
            &atime,
            &mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| dest_err("setting times of", shown, e))
    }

    /// Copies one non-directory `src` (file, symlink, device) as `base` in
    /// `pfd`.
    fn place(
        &mut self,
        pfd: &OwnedFd,
        base: &OsStr,
        src: &Path,
        meta: &Metadata,
        shown: &str,
    ) -> Result<(), BuildError> {
        let ft = meta.file_type();
        if ft.is_file() {
            let mut input = open_source(src).map_err(|e| BuildError::io(src, e))?;
            let fd = create_file(pfd, base, shown)?;
            let mut out = File::from(fd);
            // std's File-to-File copy uses copy_file_range (reflinks on
            // filesystems that have them), falling back to read/write.
            let n = io::copy(&mut input, &mut out).map_err(|e| dest_err("writing", shown, e))?;
            self.stats.bytes += n;
            self.stats.files += 1;
            self.finish_fd(&OwnedFd::from(out), src, meta, shown)
        } else if ft.is_symlink() {
            let target = fs::read_link(src).map_err(|e| BuildError::io(src, e))?;
            clear_target(pfd, base, shown)?;
            symlinkat(target.as_os_str(), pfd.as_fd(), base)
                .map_err(|e| dest_err("creating symlink", shown, e))?;
            self.stats.symlinks += 1;
            self.finish_at(pfd, base, meta, shown, false)
        } else if ft.is_socket() && self.sockets_as_files {
            // fsutil sends a socket's metadata and no content; BuildKit's
            // receiver writes it as a regular file.
            let fd = create_file(pfd, base, shown)?;
            self.stats.files += 1;
            self.finish_fd(&fd, src, meta, shown)
        } else if ft.is_socket() {
            log::debug!(
                "not copying socket {}: a layer cannot hold it",
                src.display()
            );
            Ok(())
        } else {
            let kind = if ft.is_char_device() {
                SFlag::S_IFCHR
            } else if ft.is_block_device() {
                SFlag::S_IFBLK
            } else {
                SFlag::S_IFIFO
            };
            clear_target(pfd, base, shown)?;
            mknodat(
                pfd.as_fd(),
                base,
                kind,
                Mode::from_bits_truncate(0o600),
                meta.rdev(),
            )
            .map_err(|e| dest_err("creating device", shown, e))?;
            self.stats.others += 1;
            self.finish_at(pfd, base, meta, shown, true)
        }
    }

    /// Copies a single non-directory source to `target`.
    pub(super) fn copy_single(
        &mut self,
        droot: &DestRoot,
        src: &Path,
        meta: &Metadata,
        target: &[OsString],
    ) -> Result<(), BuildError> {
        let (pfd, base, shown) = droot.parent_of(target, self.opts.owner)?;
        if let Some(dir) = self.real_dir(&pfd)
            && self.skip_file(&pfd, &base, src, meta, &dir)
        {
            return touch_dir(&pfd, &shown);
        }
        self.place(&pfd, &base, src, meta, &shown)
    }

    /// Copies the contents of a directory source into the open directory
    /// `dest`.
    pub(super) fn copy_tree(
        &mut self,
        ctx: &BuildContext,
        source: &Source,
        dest: OwnedFd,
        dest_shown: &str,
    ) -> Result<(), BuildError> {
        let entries = ctx.entries(source)?;
        let mut stack = vec![OpenDir {
            rel: Vec::new(),
            fd: dest,
            shown: dest_shown.trim_end_matches('/').to_owned(),
            meta: None,
            real: None,
            real_known: false,
            touched: false,
        }];
        for entry in entries.into_iter().skip(1) {
            let (parent, name) = match entry.rel.iter().rposition(|&b| b == b'/') {
                Some(i) => (
                    entry.rel.get(..i).unwrap_or_default(),
                    entry.rel.get(i + 1..).unwrap_or_default(),
                ),
                None => (&[][..], entry.rel.as_slice()),
            };
            while stack.len() > 1 && stack.last().is_some_and(|d| d.rel != parent) {
                if let Some(done) = stack.pop() {
                    self.close_dir(&done)?;
                }
            }
            let Some(top) = stack.last() else {
                break;
            };
            let base = OsStr::from_bytes(name);
            let shown = format!("{}/{}", top.shown, base.to_string_lossy());
            if entry.meta.is_dir() {
                let fd = Self::open_dir(&top.fd, base, &shown)?;
                self.stats.dirs += 1;
                stack.push(OpenDir {
                    rel: entry.rel.clone(),
                    fd,
                    shown,
                    meta: Some((entry.meta, entry.abs)),
                    real: None,
                    real_known: false,
                    touched: false,
                });
            } else if self.reuse.is_some() && entry.meta.is_file() {
                let real = if top.real_known {
                    top.real.clone()
                } else {
                    self.real_dir(&top.fd)
                };
                let skipped = real
                    .as_deref()
                    .is_some_and(|dir| self.skip_file(&top.fd, base, &entry.abs, &entry.meta, dir));
                let Some(top) = stack.last_mut() else {
                    break;
                };
                top.real = real;
                top.real_known = true;
                if !skipped {
                    self.place(&top.fd, base, &entry.abs, &entry.meta, &shown)?;
                } else if top.meta.is_none() && !top.touched {
                    // Directories from the sources get their times when
                    // closed; the destination itself keeps the mtime its
                    // new entries give it.
                    touch_dir(&top.fd, &shown)?;
                    top.touched = true;
                }
            } else {
                self.place(&top.fd, base, &entry.abs, &entry.meta, &shown)?;
            }
        }
        while let Some(done) = stack.pop() {
            self.close_dir(&done)?;
        }
        Ok(())
    }

    /// Creates (or reuses) directory `base` in `pfd`; a non-directory
    /// there is an error.
    fn open_dir(pfd: &OwnedFd, base: &OsStr, shown: &str) -> Result<OwnedFd, BuildError> {
        match fstatat(pfd.as_fd(), base, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => {
                if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
                    return Err(BuildError::NotADirectory {
                        path: shown.to_owned(),
                    });
                }
            }
            Err(Errno::ENOENT) => mkdirat(pfd.as_fd(), base, Mode::from_bits_truncate(0o700))
                .map_err(|e| dest_err("creating directory", shown, e))?,
            Err(e) => return Err(dest_err("inspecting", shown, e)),
        }
        openat(
            pfd.as_fd(),
            base,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| dest_err("opening directory", shown, e))
    }

    fn close_dir(&self, dir: &OpenDir) -> Result<(), BuildError> {
        if let Some((meta, src)) = &dir.meta {
            self.finish_fd(&dir.fd, src, meta, &dir.shown)?;
        }
        Ok(())
    }

    /// Extracts archive `src` into the directory `dest`.
    pub(super) fn unpack(
        &mut self,
        src: &Path,
        kind: ArchiveKind,
        dest: &OwnedFd,
        archive: &str,
        dest_shown: &str,
    ) -> Result<(), BuildError> {
        let unpack_err = |source| BuildError::Unpack {
            archive: archive.to_owned(),
            source,
        };
        let stream = open_archive(src, kind)?;
        let opts = UnpackOptions {
            whiteouts: WhiteoutMode::Literal,
        };
        let Some(owner) = self.opts.owner else {
            // The descriptor's /proc link names the resolved directory
            // itself, so unpack_layer opens nothing outside the root.
            let dir = fd_path(dest);
            unpack_layer(stream, &dir, &opts).map_err(unpack_err)?;
            self.stats.archives += 1;
            return Ok(());
        };
        // With --chown every extracted entry belongs to the owner: extract
        // next to the archive's copy, then copy the tree over.
        let staging_dir = self.opts.staging.clone().unwrap_or_else(std::env::temp_dir);
        let staging = tempfile::Builder::new()
            .prefix("kiln-add-")
            .tempdir_in(&staging_dir)
            .map_err(|e| BuildError::io(&staging_dir, e))?;
        unpack_layer(stream, staging.path(), &opts).map_err(unpack_err)?;
        let ctx = BuildContext::open_stage(staging.path())?;
        let sources = ctx.resolve_sources(&[".".to_owned()], &[], false)?;
        let dup = dest
            .try_clone()
            .map_err(|e| dest_err("duplicating", dest_shown, e))?;
        let chown = CopyOptions {
            owner: Some(owner),
            chmod: None,
            unpack_archives: false,
            preserve_owner: true,
            clamp_mtime: self.opts.clamp_mtime,
            staging: None,
        };
        let mut inner = Copier::new(&chown);
        for source in &sources {
            let fd = dup
                .try_clone()
                .map_err(|e| dest_err("duplicating", dest_shown, e))?;
            inner.copy_tree(&ctx, source, fd, dest_shown)?;
        }
        self.stats.archives += 1;
        Ok(())
    }
}

/// Opens a source file for reading. Its path is one the source resolution
/// made (every symlink on the way already resolved inside its root), so
/// the last component is not followed: a file swapped for a symlink since
/// is an error, not a read of whatever the link names.
pub(super) fn open_source(src: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(src)
}

/// Sets a directory's mtime to now, as creating an entry in it does (and
/// so copies it up into an overlay's upper directory).
fn touch_dir(fd: &OwnedFd, shown: &str) -> Result<(), BuildError> {
    utimensat(
        nix::fcntl::AT_FDCWD,
        &fd_path(fd),
        &TimeSpec::UTIME_OMIT,
        &TimeSpec::UTIME_NOW,
        UtimensatFlags::FollowSymlink,
    )
    .map_err(|e| dest_err("setting times of", shown, e))
}

/// `/proc/self/fd/N` of a descriptor.
fn fd_path(fd: &OwnedFd) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Extended attributes of `src` onto `fd`, except `security.selinux`;
/// failures are logged, as `BuildKit`'s copy does.
fn copy_xattrs(src: &Path, fd: &OwnedFd, shown: &str) {
    use xattr::FileExt;
    let names = match xattr::list(src) {
        Ok(names) => names,
        Err(e) => {
            log::debug!("listing xattrs of {}: {e}", src.display());
            return;
        }
    };
    let mut file: Option<File> = None;
    for name in names {
        if name == "security.selinux" {
            continue;
        }
        let Ok(Some(value)) = xattr::get(src, &name) else {
            continue;
        };
        if file.is_none() {
            file = fd.try_clone().ok().map(File::from);
        }
        if let Some(f) = &file
            && let Err(e) = f.set_xattr(&name, &value)
        {
            log::warn!("setting xattr {} on {shown}: {e}", name.to_string_lossy());
        }
    }
}
