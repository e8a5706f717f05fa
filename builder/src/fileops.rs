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

#[cfg(test)]
mod tests;

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use kiln_parser::values::Chmod;
use kiln_rootfs::Root;
use kiln_rootfs::root::display;
use kiln_store::layer::{UnpackOptions, WhiteoutMode, unpack_layer};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{
    FchmodatFlags, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, fstatat, futimens, mkdirat,
    mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, symlinkat, unlinkat};

use crate::context::{BuildContext, Source};
use crate::error::BuildError;

/// Mode of destination parents created on the way, without an octal
/// `--chmod`.
const PARENT_MODE: u32 = 0o755;
/// Mode of COPY heredoc files.
const INLINE_MODE: u32 = 0o644;
/// Mode `BuildKit` gives files downloaded by ADD.
const DOWNLOAD_MODE: u32 = 0o600;
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

/// Downloads an ADD URL (http or https) into a new file in `tmp_dir` and
/// returns its path and the name `BuildKit` gives it (the URL path's last
/// segment, or [`UNNAMED_DOWNLOAD`]).
///
/// `checksum` (`sha256:<hex>`) is verified when given. The file gets mode
/// 0600 and, when the server sends `Last-Modified`, that mtime, as
/// `BuildKit`'s HTTP source does; it is never unpacked.
pub fn download(
    url: &str,
    checksum: Option<&str>,
    tmp_dir: &Path,
) -> Result<(PathBuf, String), BuildError> {
    let expected = checksum
        .map(|c| {
            let hex = c.strip_prefix("sha256:").unwrap_or("");
            if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(format!("sha256:{}", hex.to_ascii_lowercase()))
            } else {
                Err(BuildError::InvalidChecksum {
                    checksum: c.to_owned(),
                })
            }
        })
        .transpose()?;
    let fail = |reason: String| BuildError::Download {
        url: url.to_owned(),
        reason,
    };
    let response = match ureq::get(url).call() {
        Ok(r) => r,
        Err(ureq::Error::StatusCode(status)) => {
            return Err(BuildError::DownloadStatus {
                url: url.to_owned(),
                status,
            });
        }
        Err(e) => return Err(fail(e.to_string())),
    };
    let last_modified = response
        .headers()
        .get("last-modified")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            jiff::fmt::rfc2822::DateTimeParser::new()
                .parse_timestamp(v)
                .ok()
        });
    let mut reader = response.into_body().into_reader();
    let mut tmp = tempfile::Builder::new()
        .prefix("kiln-download-")
        .tempfile_in(tmp_dir)
        .map_err(|e| BuildError::io(tmp_dir, e))?;
    let mut hasher = kiln_store::digest::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail(e.to_string())),
        };
        let chunk = buf.get(..n).unwrap_or_default();
        hasher.update(chunk);
        tmp.write_all(chunk)
            .map_err(|e| BuildError::io(tmp.path(), e))?;
    }
    let actual = hasher.finish().to_string();
    if let Some(expected) = expected
        && expected != actual
    {
        return Err(BuildError::ChecksumMismatch {
            url: url.to_owned(),
            expected,
            actual,
        });
    }
    let (file, path) = tmp.keep().map_err(|e| BuildError::io(tmp_dir, e.error))?;
    fchmod(file.as_fd(), Mode::from_bits_truncate(DOWNLOAD_MODE))
        .map_err(|e| BuildError::io(&path, e.into()))?;
    if let Some(ts) = last_modified {
        let t = TimeSpec::new(ts.as_second(), 0);
        futimens(file.as_fd(), &t, &t).map_err(|e| BuildError::io(&path, e.into()))?;
    }
    Ok((path, url_file_name(url)))
}

/// The name `BuildKit`'s Dockerfile frontend gives a downloaded file: the
/// last segment of the URL's path (percent-decoded), or
/// [`UNNAMED_DOWNLOAD`].
pub fn url_file_name(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let no_query = after_scheme
        .split(['?', '#'])
        .next()
        .unwrap_or(after_scheme);
    let path = no_query
        .find('/')
        .map_or("", |i| no_query.get(i..).unwrap_or(""));
    let base = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    let decoded = percent_decode(base);
    if decoded.is_empty() || decoded == "." || decoded == ".." {
        UNNAMED_DOWNLOAD.to_owned()
    } else {
        decoded
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

/// A path's components with `.` removed and `..` clamped at the root.
fn clean(path: &str) -> Vec<OsString> {
    kiln_rootfs::path::components(path.as_bytes(), kiln_rootfs::path::Escape::Clamp)
        .unwrap_or_default()
        .into_iter()
        .map(|c| OsStr::from_bytes(c).to_owned())
        .collect()
}

fn join_bytes(comps: &[OsString]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in comps {
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(c.as_bytes());
    }
    out
}

fn dest_err(op: &'static str, path: &str, e: impl Into<io::Error>) -> BuildError {
    BuildError::Dest {
        op,
        path: path.to_owned(),
        source: e.into(),
    }
}

/// The container root every destination path is resolved in, with the
/// mode of the directories a copy creates on the way.
struct DestRoot<'r> {
    root: &'r Root,
    dir_mode: u32,
}

impl<'r> DestRoot<'r> {
    /// The destination of a copy with `opts`: fsutil's `Copy` creates
    /// missing directories with the copy's octal mode (its `Mode`, which a
    /// symbolic `--chmod` does not set) and 0755 without one; Go's
    /// `os.FileMode` keeps only the permission bits of it.
    fn new(root: &'r Root, opts: &CopyOptions) -> Self {
        let dir_mode = match &opts.chmod {
            Some(Chmod::Octal(bits)) => bits & 0o777,
            _ => PARENT_MODE,
        };
        Self { root, dir_mode }
    }

    /// Whether `comps` is an existing directory (following symlinks inside
    /// the root).
    fn is_dir(&self, comps: &[OsString]) -> bool {
        self.root
            .open_at(
                OsStr::from_bytes(&join_bytes(comps)),
                OFlag::O_PATH | OFlag::O_DIRECTORY,
            )
            .is_ok()
    }

    /// Resolves directory `comps`, creating missing components (with the
    /// copy's directory mode, owned by `owner` or root): see
    /// [`Root::mkdir_all`].
    fn mkdir_all(&self, comps: &[OsString], owner: Option<Owner>) -> Result<OwnedFd, BuildError> {
        self.mkdir_all_mode(comps, self.dir_mode, owner)
    }

    /// [`mkdir_all`](Self::mkdir_all) with the mode of created directories.
    fn mkdir_all_mode(
        &self,
        comps: &[OsString],
        mode: u32,
        owner: Option<Owner>,
    ) -> Result<OwnedFd, BuildError> {
        Ok(self
            .root
            .mkdir_all(OsStr::from_bytes(&join_bytes(comps)), mode, owner)?)
    }

    /// Where a file named `name` goes for destination `dest`.
    fn file_target(&self, dest: &[OsString], dest_is_dir: bool, name: &str) -> Vec<OsString> {
        let mut target = dest.to_vec();
        if dest_is_dir || dest.is_empty() || self.is_dir(dest) {
            target.extend(clean(name));
        }
        target
    }

    /// The (created) parent directory of `target`, its last component and
    /// the container path for messages.
    fn parent_of(
        &self,
        target: &[OsString],
        owner: Option<Owner>,
    ) -> Result<(OwnedFd, OsString, String), BuildError> {
        let Some((base, parent)) = target.split_last() else {
            return Err(BuildError::ReplaceDirectory {
                path: "/".to_owned(),
            });
        };
        let pfd = self.mkdir_all(parent, owner)?;
        Ok((pfd, base.clone(), display(target)))
    }
}

/// Removes a non-directory at `base` in `pfd` so a file can take its
/// place; an existing directory is an error.
fn clear_target(pfd: &OwnedFd, base: &OsStr, shown: &str) -> Result<(), BuildError> {
    match fstatat(pfd.as_fd(), base, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => {
            if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
                return Err(BuildError::ReplaceDirectory {
                    path: shown.to_owned(),
                });
            }
            unlinkat(pfd.as_fd(), base, UnlinkatFlags::NoRemoveDir)
                .map_err(|e| dest_err("removing", shown, e))
        }
        Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(dest_err("inspecting", shown, e)),
    }
}

/// Creates a new regular file `base` in `pfd` (replacing a non-directory).
fn create_file(pfd: &OwnedFd, base: &OsStr, shown: &str) -> Result<OwnedFd, BuildError> {
    clear_target(pfd, base, shown)?;
    openat(
        pfd.as_fd(),
        base,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| dest_err("creating file", shown, e))
}

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
struct Reuse<'r> {
    /// The container root.
    root: &'r Root,
    judge: &'r dyn Fn(&PlannedFile<'_>) -> bool,
    skipped: Vec<SkippedFile>,
}

struct Copier<'a> {
    opts: &'a CopyOptions,
    /// Not root: no chown.
    rootless: bool,
    stats: CopyStats,
    reuse: Option<Reuse<'a>>,
    /// Sockets are written as empty regular files (sources from the
    /// client's build context) rather than left out.
    sockets_as_files: bool,
}

impl<'a> Copier<'a> {
    fn new(opts: &'a CopyOptions) -> Self {
        Self {
            opts,
            rootless: !nix::unistd::geteuid().is_root(),
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
    fn set_owner_mode(
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
    fn copy_single(
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
    fn copy_tree(
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
    fn unpack(
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
fn open_source(src: &Path) -> io::Result<File> {
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

/// Compression of an archive ADD extracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArchiveKind {
    Plain,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl ArchiveKind {
    /// The compression from the first bytes, as Docker's
    /// `DetectCompression` does.
    fn detect(head: &[u8]) -> Self {
        match head {
            [0x1f, 0x8b, 0x08, ..] => Self::Gzip,
            [b'B', b'Z', b'h', ..] => Self::Bzip2,
            [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Self::Xz,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Self::Zstd,
            [b, 0x2a, 0x4d, 0x18, ..] if b & 0xf0 == 0x50 => Self::Zstd,
            _ => Self::Plain,
        }
    }
}

/// A decompressed stream of archive `src`. xz has no streaming decoder
/// here, so it is decompressed into an anonymous temporary file first.
fn open_archive(src: &Path, kind: ArchiveKind) -> Result<Box<dyn Read>, BuildError> {
    let file = open_source(src).map_err(|e| BuildError::io(src, e))?;
    let io_err = |e| BuildError::io(src, e);
    Ok(match kind {
        ArchiveKind::Plain => Box::new(BufReader::new(file)),
        ArchiveKind::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file))),
        ArchiveKind::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(BufReader::new(file))),
        ArchiveKind::Zstd => Box::new(zstd::Decoder::new(file).map_err(io_err)?),
        ArchiveKind::Xz => {
            let mut tmp = tempfile::tempfile().map_err(io_err)?;
            {
                let mut w = io::BufWriter::new(&mut tmp);
                lzma_rs::xz_decompress(&mut BufReader::new(file), &mut w).map_err(|e| {
                    io_err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
                })?;
                w.flush().map_err(io_err)?;
            }
            io::Seek::rewind(&mut tmp).map_err(io_err)?;
            Box::new(BufReader::new(tmp))
        }
    })
}

/// A writer that keeps the first block and then stops the writer feeding
/// it, to sniff an xz stream without decompressing all of it.
struct Head(Vec<u8>);

impl Write for Head {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = 512usize.saturating_sub(self.0.len());
        if room == 0 {
            return Err(io::Error::other("enough"));
        }
        let take = room.min(buf.len());
        self.0
            .extend_from_slice(buf.get(..take).unwrap_or_default());
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The archive kind of `src` if it is a tar archive (its first header has
/// a valid checksum after decompression), as `BuildKit`'s `isArchivePath`
/// decides.
fn sniff_archive(src: &Path) -> Result<Option<ArchiveKind>, BuildError> {
    let mut file = open_source(src).map_err(|e| BuildError::io(src, e))?;
    let mut head = [0u8; 6];
    let n = read_full(&mut file, &mut head).map_err(|e| BuildError::io(src, e))?;
    let kind = ArchiveKind::detect(head.get(..n).unwrap_or_default());
    let block = if kind == ArchiveKind::Xz {
        let mut out = Head(Vec::new());
        let file = open_source(src).map_err(|e| BuildError::io(src, e))?;
        // Stopped by `Head` after one block, or a decoding error: either
        // way what was decoded is judged below.
        let _ = lzma_rs::xz_decompress(&mut BufReader::new(file), &mut out);
        out.0
    } else {
        let Ok(mut stream) = open_archive(src, kind) else {
            return Ok(None);
        };
        let mut block = vec![0u8; 512];
        let n = read_full(&mut stream, &mut block).unwrap_or(0);
        block.truncate(n);
        block
    };
    Ok(is_tar_header(&block).then_some(kind))
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while let Some(slot) = buf.get_mut(filled..) {
        if slot.is_empty() {
            break;
        }
        match r.read(slot) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Whether `block` is a tar header: 512 bytes, not all zero (the end of an
/// archive), with a checksum that matches (unsigned or signed sum, as Go's
/// `archive/tar` accepts).
fn is_tar_header(block: &[u8]) -> bool {
    if block.len() < 512 || block.iter().all(|&b| b == 0) {
        return false;
    }
    let Some(field) = block.get(148..156) else {
        return false;
    };
    let text: String = field
        .iter()
        .map(|&b| char::from(b))
        .filter(|c| ('0'..='7').contains(c))
        .collect();
    let Ok(want) = i64::from_str_radix(&text, 8) else {
        return false;
    };
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &b) in block.iter().take(512).enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += i64::from(b);
        #[allow(clippy::cast_possible_wrap, reason = "tar's signed checksum variant")]
        let s = b as i8;
        signed += i64::from(s);
    }
    want == unsigned || want == signed
}
