//! Safe extraction of an uncompressed layer tar into a snapshot directory.
//!
//! Every path is resolved with `openat2(RESOLVE_IN_ROOT)` from a descriptor
//! of `dest`, so symlinks met on the way (absolute or with `..`) are resolved
//! as they would be inside the container's root and can never reach the host.
//! The final component is then handled with `*at` calls on the resolved
//! parent that never follow it.
//!
//! Policy choices, as documented on [`unpack_layer`]:
//! - names are cleaned lexically (`./`, leading `/`, `.` and `a/..` removed);
//!   a `..` that would climb above the root is an error in a relative name
//!   (Docker's "breakout" check) and clamped at the root in an absolute one
//!   (`/../x` is `x`, as Go's `filepath.Clean` makes it);
//! - unknown entry types are skipped with a `log::warn`; GNU sparse files are
//!   errors (their data would be written wrongly);
//! - GNU long names and long link names may be at most 64 KiB, PAX headers at
//!   most 1 MiB; both are checked before anything is read into memory.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use kiln_rootfs::Root;
use kiln_rootfs::path::{Escape, components};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{
    FchmodatFlags, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, fstatat, futimens, makedev,
    mkdirat, mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};
use tar::{Archive, EntryType, PaxExtensions};
use xattr::FileExt;

use super::error::LayerError;

mod chain;

/// Largest GNU long name or long link name accepted.
pub const MAX_LONG_NAME: u64 = 64 * 1024;
/// Largest PAX extended header (local or global) accepted.
pub const MAX_PAX_HEADER: u64 = 1024 * 1024;
/// Largest device major number the kernel can represent (12 bits).
const MAX_DEV_MAJOR: u32 = 0xfff;
/// Largest device minor number the kernel can represent (20 bits).
const MAX_DEV_MINOR: u32 = 0xf_ffff;

pub(crate) const WHITEOUT_PREFIX: &[u8] = b".wh.";
pub(crate) const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
pub(crate) const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";
/// The overlayfs xattr marking a directory opaque.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// The same mark for overlays mounted with `userxattr`, as rootless runs
/// mount them (`trusted.*` needs `CAP_SYS_ADMIN` on the host).
pub const OVERLAY_USER_OPAQUE_XATTR: &str = "user.overlay.opaque";

/// What to do with OCI whiteout entries (`.wh.NAME`, `.wh..wh..opq`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// Write overlayfs whiteouts: `.wh.NAME` becomes a 0/0 character device
    /// `NAME` (replacing anything there) and `.wh..wh..opq` in `D` sets
    /// `trusted.overlay.opaque=y` on `D`. For one snapshot directory per layer.
    #[default]
    Overlay,
    /// Apply whiteouts to earlier layers unpacked into the same `dest`
    /// (flattening): `.wh.NAME` deletes `NAME`, `.wh..wh..opq` in `D` deletes
    /// everything in `D` that this layer did not write.
    Apply,
    /// No whiteouts: `.wh.` entries are ordinary files, as `ADD` of a local
    /// archive extracts them (BuildKit untars with moby's `Unpack`, which
    /// converts whiteouts only for layers).
    Literal,
}

/// Options of [`unpack_layer`].
#[derive(Debug, Clone, Default)]
pub struct UnpackOptions {
    /// How whiteout entries are written.
    pub whiteouts: WhiteoutMode,
}

/// What [`unpack_layer`] extracted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnpackStats {
    /// Archive members processed (files, dirs, links, devices, whiteouts;
    /// not counting PAX and GNU extension headers or skipped entries).
    pub entries: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
}

/// Unpacks an uncompressed tar stream into `dest`, which must exist.
///
/// Creates regular files, directories, symlinks, hardlinks (to entries of this
/// layer or already in `dest`), character and block devices and fifos, with
/// the header's mode (including setuid, setgid and sticky bits), numeric
/// uid/gid (names are ignored), mtime (with PAX nanoseconds; directory times
/// are set last) and PAX `SCHILY.xattr.*` extended attributes (except
/// `trusted.overlay.*` and `user.overlay.*`, which overlayfs would act on and
/// which are dropped with a warning). Needs root (or
/// `CAP_CHOWN`, `CAP_MKNOD`, `CAP_SYS_ADMIN` for `trusted.*` xattrs).
///
/// Without root (effective uid not 0) it degrades as rootless podman does
/// with a single-id mapping: everything belongs to the caller (no chown),
/// device nodes other than 0/0 whiteouts and xattrs the kernel refuses are
/// skipped with a warning, opaque directories get
/// [`OVERLAY_USER_OPAQUE_XATTR`], and directories stay writable by the
/// caller until the end, when their modes are applied.
///
/// Nothing outside `dest` is ever read, written, chmod-ed, chown-ed or
/// deleted, whatever the archive contains, and `dest` itself is never
/// changed: an entry whose name means the root (empty, `.`, `./`, `a/..`)
/// is skipped, whatever its type, as containerd and Docker skip it:
/// - entry names are cleaned lexically; absolute names are taken relative to
///   `dest`; a `..` climbing above the root is clamped at the root in an
///   absolute name (`/../x` is `x`) and is an error
///   `name escapes the root directory` in a relative one (`../x`), as in
///   Docker;
/// - parents are resolved with `RESOLVE_IN_ROOT`: a symlink `a -> /` or
///   `a -> ../..` makes `a/x` land in `dest/x`, as in the container;
/// - the final component is never followed: an entry for a path holding a
///   symlink replaces the symlink;
/// - hardlink targets are resolved like entry names, inside `dest`;
/// - symlink targets are stored verbatim.
///
/// Unknown entry types are skipped with a warning; errors name the entry.
/// An archive that ends at a header boundary without the two zero blocks is
/// accepted (as GNU tar and Go do); one that ends inside an entry is an error.
pub fn unpack_layer<R: Read>(
    tar_stream: R,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats, LayerError> {
    unpack(tar_stream, dest, opts.whiteouts, None, None)
}

/// Extracts a tar as `docker cp` does (moby's `Untar` with
/// `NoOverwriteDirNonDir`): as [`unpack_layer`] with
/// [`WhiteoutMode::Literal`], except that an entry never replaces a
/// directory with a non-directory or a non-directory (a symlink included)
/// with a directory, which is an error
/// ([`LayerError::OverwriteDirectory`],
/// [`LayerError::OverwriteNonDirectory`]) instead; with `owner` (uid,
/// gid) every entry is owned by it instead of its header's ids (files
/// copied into a container belong to its root, files copied out to the
/// caller; without root nothing is chown-ed anyway).
pub fn unpack_copy<R: Read>(
    tar_stream: R,
    dest: &Path,
    owner: Option<(u32, u32)>,
) -> Result<UnpackStats, LayerError> {
    let copy = Copy {
        owner,
        keep_kinds: true,
    };
    unpack(tar_stream, dest, WhiteoutMode::Literal, None, Some(copy))
}

/// `docker cp`'s extraction choices ([`unpack_copy`]).
#[derive(Debug, Clone, Copy)]
struct Copy {
    /// Owner of every entry, instead of its header's ids.
    owner: Option<(u32, u32)>,
    /// A directory and a non-directory never replace each other.
    keep_kinds: bool,
}

/// Applies a layer on top of its parent chain, as containerd's overlay
/// applier does: the changes go into `upper` (an empty directory that
/// becomes the layer's snapshot) in overlayfs form, while parent paths are
/// resolved in the merged view of `upper` over `lowers` (the parents'
/// snapshots, base first). So a parent that a lower layer has as a symlink
/// (`var/run -> /run`) is followed, inside the merged root, and the entry
/// lands where the symlink points; a parent directory only a lower layer
/// has is copied up (mode, owner, xattrs, mtime); a hardlink to a file of
/// a lower layer copies that file up first, as overlayfs does.
///
/// Whiteouts become 0/0 character devices (unless this layer itself
/// writes the path); `.wh..wh..opq` in `D` marks `D` opaque once the layer
/// is applied (whiteouts for the lowers' entries when `D` is the root,
/// whose opaque mark overlayfs ignores), after removing from `D` what was
/// copied up only as a hardlink target; a directory created where this
/// layer removed something that hid a lower directory is opaque too. The
/// lowers are only read: every lookup is one `*at` call that follows no
/// symlink, from descriptors of the lowers' roots, and symlinks met on the
/// way are interpreted here, inside the merged root, with `..` clamped at
/// it. Otherwise as [`unpack_layer`] with [`WhiteoutMode::Overlay`].
pub fn apply_layer<R: Read>(
    tar_stream: R,
    upper: &Path,
    lowers: &[PathBuf],
) -> Result<UnpackStats, LayerError> {
    let mut roots = Vec::with_capacity(lowers.len());
    // Top first, as overlayfs stacks them.
    for lower in lowers.iter().rev() {
        let root = Root::open(lower)
            .map_err(|e| LayerError::io(format!("opening lower layer {}", lower.display()), e))?;
        roots.push(root);
    }
    unpack(
        tar_stream,
        upper,
        WhiteoutMode::Overlay,
        Some(chain::Chain::new(roots)),
        None,
    )
}

fn unpack<R: Read>(
    tar_stream: R,
    dest: &Path,
    mode: WhiteoutMode,
    chain: Option<chain::Chain>,
    copy: Option<Copy>,
) -> Result<UnpackStats, LayerError> {
    let root = Root::open(dest)
        .map_err(|e| LayerError::io(format!("opening destination {}", dest.display()), e))?;
    let mut u = Unpacker {
        root,
        mode,
        rootless: kiln_rootfs::userns::rootless(),
        chown: !kiln_rootfs::userns::single_id(),
        dir_modes: Vec::new(),
        dir_times: Vec::new(),
        this_layer: HashSet::new(),
        opaque_dirs: Vec::new(),
        chain,
        copy,
        stats: UnpackStats::default(),
    };
    read_entries(tar_stream, |data, meta| u.entry(data, meta))?;
    u.finish()?;
    Ok(u.stats)
}

/// Reads every member of an uncompressed tar stream, GNU long names and
/// PAX headers applied, and hands each one with its data to `each`: the
/// one tar reader of the store, shared by unpacking and by what reads
/// layers without writing them ([`super::changes`]). Extension headers
/// are capped before they are read (see the module documentation); an
/// extension header without a member after it is an error.
pub(crate) fn read_entries<R: Read>(
    tar_stream: R,
    mut each: impl FnMut(&mut dyn Read, &EntryMeta) -> Result<(), LayerError>,
) -> Result<(), LayerError> {
    let mut archive = Archive::new(tar_stream);
    let entries = archive
        .entries()
        .map_err(|e| LayerError::io("reading tar stream", e))?
        .raw(true);

    let mut pending = Pending::default();
    let mut last = String::from("the start of the archive");
    for entry in entries {
        let mut entry = entry.map_err(|source| LayerError::Header {
            after: last.clone(),
            source,
        })?;
        let etype = entry.header().entry_type();
        let raw_name = entry.header().path_bytes().into_owned();
        match etype {
            EntryType::GNULongName => {
                pending.long_name = Some(read_extension(
                    &mut entry,
                    &raw_name,
                    MAX_LONG_NAME,
                    "gnu long name",
                )?);
                continue;
            }
            EntryType::GNULongLink => {
                pending.long_link = Some(read_extension(
                    &mut entry,
                    &raw_name,
                    MAX_LONG_NAME,
                    "gnu long link name",
                )?);
                continue;
            }
            EntryType::XHeader => {
                if pending.pax.is_some() {
                    return Err(LayerError::entry(
                        &raw_name,
                        "two pax headers describe the same member",
                    ));
                }
                pending.pax = Some(read_extension(
                    &mut entry,
                    &raw_name,
                    MAX_PAX_HEADER,
                    "pax header",
                )?);
                continue;
            }
            EntryType::XGlobalHeader => {
                // Global PAX records (comments, charset) carry nothing a layer needs.
                read_extension(&mut entry, &raw_name, MAX_PAX_HEADER, "pax global header")?;
                continue;
            }
            _ => {}
        }
        let meta = EntryMeta::new(&entry, std::mem::take(&mut pending))?;
        last = String::from_utf8_lossy(&meta.raw_name).into_owned();
        each(&mut entry, &meta)?;
    }
    if pending.long_name.is_some() || pending.long_link.is_some() || pending.pax.is_some() {
        return Err(LayerError::Header {
            after: last,
            source: io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "extension header without the member it describes",
            ),
        });
    }
    Ok(())
}

/// GNU and PAX extension data waiting for the member they describe.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

/// Reads an extension header's data after checking its size against `cap`.
fn read_extension<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    raw_name: &[u8],
    cap: u64,
    what: &str,
) -> Result<Vec<u8>, LayerError> {
    let size = entry.size();
    if size > cap {
        return Err(LayerError::entry(
            raw_name,
            format!("{what} of {size} bytes exceeds the limit of {cap} bytes"),
        ));
    }
    let mut data = Vec::new();
    let got = entry.read_to_end(&mut data).map_err(|e| {
        LayerError::io(
            format!(
                "reading {what} of entry {}",
                String::from_utf8_lossy(raw_name)
            ),
            e,
        )
    })?;
    if (got as u64) < size {
        return Err(LayerError::Truncated {
            entry: String::from_utf8_lossy(raw_name).into_owned(),
            got: got as u64,
            size,
        });
    }
    Ok(data)
}

/// The effective header of one member, after applying GNU and PAX extensions.
pub(crate) struct EntryMeta {
    /// The name as written (after extensions), for error messages.
    pub(crate) raw_name: Vec<u8>,
    pub(crate) kind: Kind,
    pub(crate) link: Option<Vec<u8>>,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mtime: TimeSpec,
    pub(crate) size: u64,
    pub(crate) xattrs: Vec<(String, Vec<u8>)>,
    pub(crate) dev: (u32, u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
    Skip(u8),
}

impl EntryMeta {
    fn new<R: Read>(entry: &tar::Entry<'_, R>, pending: Pending) -> Result<Self, LayerError> {
        let h = entry.header();
        let mut raw_name = match pending.long_name {
            Some(mut n) => {
                if n.last() == Some(&0) {
                    n.pop();
                }
                n
            }
            None => h.path_bytes().into_owned(),
        };
        let mut link = match pending.long_link {
            Some(mut n) => {
                if n.last() == Some(&0) {
                    n.pop();
                }
                Some(n)
            }
            None => h.link_name_bytes().map(std::borrow::Cow::into_owned),
        };
        let bad = |name: &[u8], what: &str, e: io::Error| {
            LayerError::entry(name, format!("bad {what} field: {e}"))
        };
        let mut uid = h.uid().map_err(|e| bad(&raw_name, "uid", e))?;
        let mut gid = h.gid().map_err(|e| bad(&raw_name, "gid", e))?;
        let mode = h.mode().map_err(|e| bad(&raw_name, "mode", e))?;
        let size = h.entry_size().map_err(|e| bad(&raw_name, "size", e))?;
        let mut mtime = TimeSpec::new(
            i64::try_from(h.mtime().map_err(|e| bad(&raw_name, "mtime", e))?).unwrap_or(i64::MAX),
            0,
        );
        let mut xattrs = Vec::new();
        if let Some(pax) = &pending.pax {
            // The PAX path may only be known after parsing, so errors name the header's path.
            for rec in PaxExtensions::new(pax) {
                let rec =
                    rec.map_err(|e| LayerError::entry(&raw_name, format!("bad pax record: {e}")))?;
                let key = rec.key_bytes();
                let value = rec.value_bytes();
                match key {
                    b"path" => raw_name = value.to_vec(),
                    b"linkpath" => link = Some(value.to_vec()),
                    b"uid" => {
                        uid = parse_pax_id(value)
                            .ok_or_else(|| LayerError::entry(&raw_name, "bad pax uid"))?;
                    }
                    b"gid" => {
                        gid = parse_pax_id(value)
                            .ok_or_else(|| LayerError::entry(&raw_name, "bad pax gid"))?;
                    }
                    b"mtime" => {
                        mtime = parse_pax_time(value)
                            .ok_or_else(|| LayerError::entry(&raw_name, "bad pax mtime"))?;
                    }
                    // The stream position follows the header's size field; a PAX
                    // size that disagrees would make this reader and others see
                    // different archives.
                    b"size" if parse_pax_id_u64(value) != Some(size) => {
                        return Err(LayerError::entry(
                            &raw_name,
                            "pax size record disagrees with the header size",
                        ));
                    }
                    _ if key.starts_with(b"SCHILY.xattr.") => {
                        let name = key.get(b"SCHILY.xattr.".len()..).unwrap_or_default();
                        let name = std::str::from_utf8(name)
                            .ok()
                            .filter(|n| !n.is_empty() && !n.contains('\0'))
                            .ok_or_else(|| {
                                LayerError::entry(&raw_name, "bad xattr name in pax header")
                            })?;
                        if name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.")
                        {
                            // overlayfs acts on these (redirects, metacopy); a layer
                            // says "opaque" with `.wh..wh..opq` instead.
                            log::warn!("ignoring xattr {name} of tar entry {}", lossy(&raw_name));
                        } else {
                            xattrs.push((name.to_owned(), value.to_vec()));
                        }
                    }
                    _ if key.starts_with(b"GNU.sparse.") => {
                        return Err(LayerError::entry(
                            &raw_name,
                            "sparse files are not supported",
                        ));
                    }
                    _ => {}
                }
            }
        }
        let uid = u32::try_from(uid)
            .map_err(|_| LayerError::entry(&raw_name, format!("uid {uid} out of range")))?;
        let gid = u32::try_from(gid)
            .map_err(|_| LayerError::entry(&raw_name, format!("gid {gid} out of range")))?;
        if raw_name.len() as u64 > MAX_LONG_NAME {
            return Err(LayerError::entry(
                m_name_head(&raw_name),
                format!(
                    "name of {} bytes exceeds the limit of {MAX_LONG_NAME} bytes",
                    raw_name.len()
                ),
            ));
        }
        let is_old_format = h.as_ustar().is_none() && h.as_gnu().is_none();
        let kind = match h.entry_type() {
            EntryType::Regular | EntryType::Continuous
                if is_old_format && raw_name.ends_with(b"/") =>
            {
                Kind::Dir
            }
            EntryType::Regular | EntryType::Continuous => Kind::File,
            EntryType::Directory => Kind::Dir,
            EntryType::Symlink => Kind::Symlink,
            EntryType::Link => Kind::Hardlink,
            EntryType::Char => Kind::Char,
            EntryType::Block => Kind::Block,
            EntryType::Fifo => Kind::Fifo,
            EntryType::GNUSparse => {
                return Err(LayerError::entry(
                    &raw_name,
                    "sparse files are not supported",
                ));
            }
            other => Kind::Skip(other.as_byte()),
        };
        let mut dev = (0, 0);
        if matches!(kind, Kind::Char | Kind::Block) {
            let major = device_field(h, true).map_err(|e| bad(&raw_name, "device major", e))?;
            let minor = device_field(h, false).map_err(|e| bad(&raw_name, "device minor", e))?;
            if major > MAX_DEV_MAJOR || minor > MAX_DEV_MINOR {
                return Err(LayerError::entry(
                    &raw_name,
                    format!("device number {major}:{minor} out of range"),
                ));
            }
            dev = (major, minor);
        }
        if matches!(kind, Kind::Symlink | Kind::Hardlink) && link.as_ref().is_none_or(Vec::is_empty)
        {
            return Err(LayerError::entry(&raw_name, "link without a target"));
        }
        if link
            .as_ref()
            .is_some_and(|l| l.len() as u64 > MAX_LONG_NAME)
        {
            return Err(LayerError::entry(
                &raw_name,
                "link target exceeds the limit of 65536 bytes",
            ));
        }
        Ok(Self {
            raw_name,
            kind,
            link,
            mode: mode & 0o7777,
            uid,
            gid,
            mtime,
            size,
            xattrs,
            dev,
        })
    }
}

/// A device number field; all-NUL or blank fields (left empty by some
/// writers) are 0.
fn device_field(h: &tar::Header, major: bool) -> io::Result<u32> {
    let raw = match (h.as_ustar(), h.as_gnu()) {
        (Some(u), _) => Some(if major { u.dev_major } else { u.dev_minor }),
        (None, Some(g)) => Some(if major { g.dev_major } else { g.dev_minor }),
        (None, None) => None,
    };
    if raw.is_some_and(|f| f.iter().all(|&b| b == 0 || b == b' ')) {
        return Ok(0);
    }
    let v = if major {
        h.device_major()
    } else {
        h.device_minor()
    };
    Ok(v?.unwrap_or(0))
}

fn parse_pax_id_u64(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn parse_pax_id(v: &[u8]) -> Option<u64> {
    parse_pax_id_u64(v)
}

/// Parses a PAX time (`[-]SECONDS[.FRACTION]`) to a timespec; fraction
/// digits beyond nanoseconds are dropped.
fn parse_pax_time(v: &[u8]) -> Option<TimeSpec> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty()
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(b - b'0') * 10_i64.pow(8 - u32::try_from(i).ok()?);
    }
    if neg {
        // -1.25 is 1.25 s before the epoch: -2 s + 0.75 s.
        if nanos == 0 {
            Some(TimeSpec::new(secs.checked_neg()?, 0))
        } else {
            Some(TimeSpec::new(
                secs.checked_neg()?.checked_sub(1)?,
                1_000_000_000 - nanos,
            ))
        }
    } else {
        Some(TimeSpec::new(secs, nanos))
    }
}

/// Cleans an entry name lexically, as Docker's `filepath.Clean` check does:
/// drops empty and `.` components and resolves `a/..`. A `..` above the root
/// is clamped at the root in an absolute name (`/../x` is `x`, as
/// `filepath.Clean` makes it) and an error in a relative one (`../x`,
/// Docker's "breakout" error). The root itself is the empty string.
pub(crate) fn normalize(raw: &[u8]) -> Result<Vec<u8>, &'static str> {
    if raw.contains(&0) {
        return Err("name contains a NUL byte");
    }
    components(raw, Escape::Error)
        .map(|parts| parts.join(&b'/'))
        .map_err(|_| "name escapes the root directory")
}

/// Splits a normalized, non-root path into parent path and last component.
pub(crate) fn split_last(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (
            path.get(..i).unwrap_or_default(),
            path.get(i + 1..).unwrap_or_default(),
        ),
        None => (b"", path),
    }
}

/// `parent/name` (`name` at the root when `parent` is empty).
pub(crate) fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = parent.to_vec();
    if !path.is_empty() {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The errno of an error from [`Root`], for the `*at` code around it.
pub(super) fn errno(e: &io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

struct Unpacker {
    /// `dest`: the root of every resolution.
    root: Root,
    mode: WhiteoutMode,
    /// Not root: no chown, no devices, user.* overlay xattrs.
    rootless: bool,
    /// Owners can be set: root, or rootless with subordinate ids mapped.
    chown: bool,
    /// Modes of directories kept caller-writable while unpacking (rootless).
    dir_modes: Vec<(Vec<u8>, u32)>,
    /// Directory times, applied after everything else (later writes would bump them).
    dir_times: Vec<(Vec<u8>, TimeSpec)>,
    /// Paths written by this layer and their ancestors (resolved paths
    /// when applying on a chain): whiteouts never hide them, and opaque
    /// directories keep them.
    this_layer: HashSet<Vec<u8>>,
    /// Directories with an opaque whiteout, handled at the end.
    opaque_dirs: Vec<Vec<u8>>,
    /// The parent chain when applying a layer on it ([`apply_layer`]).
    chain: Option<chain::Chain>,
    /// `docker cp`'s choices ([`unpack_copy`]).
    copy: Option<Copy>,
    stats: UnpackStats,
}

/// A resolved parent directory of an entry.
struct Parent {
    /// Its descriptor (in `dest`, the upper directory).
    fd: OwnedFd,
    /// Its path: the entry's parent, or where it resolved to in the merged
    /// view of a chain.
    path: Vec<u8>,
    /// Whether lower layers show through it (chains only).
    lowers_visible: bool,
}

/// What [`Unpacker::remove_existing`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Existing {
    /// Nothing was there.
    Absent,
    /// A directory, kept.
    KeptDir,
    /// Something removed: a directory or not.
    Removed { dir: bool },
}

impl Unpacker {
    /// Opens `path` (normalized, relative to the root) with `flags`, resolving
    /// every symlink inside the root.
    fn resolve(&self, path: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
        self.root.open_at(os(path), flags).map_err(|e| errno(&e))
    }

    /// An `O_PATH` descriptor of directory `path`.
    fn resolve_dir(&self, path: &[u8]) -> nix::Result<OwnedFd> {
        self.resolve(path, OFlag::O_PATH | OFlag::O_DIRECTORY)
    }

    /// Records `path` and its ancestors as written by this layer.
    fn mark(&mut self, path: &[u8]) {
        let mut end = path.len();
        loop {
            let prefix = path.get(..end).unwrap_or_default();
            if !self.this_layer.insert(prefix.to_vec()) || prefix.is_empty() {
                break;
            }
            end = prefix.iter().rposition(|&b| b == b'/').unwrap_or(0);
        }
    }

    /// Resolves directory `parent`, creating missing components (mode 0755,
    /// owned by root) one at a time inside their resolved parents.
    fn ensure_dir(&mut self, parent: &[u8], entry: &[u8]) -> Result<OwnedFd, LayerError> {
        match self.resolve_dir(parent) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(parent_error(entry, parent, e)),
        }
        let mut cur = self
            .resolve_dir(b"")
            .map_err(|e| parent_error(entry, b"", e))?;
        let mut end = 0;
        for comp in parent.split(|&b| b == b'/') {
            end += comp.len();
            let prefix = parent.get(..end).unwrap_or_default();
            end += 1;
            cur = match self.resolve_dir(prefix) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    mkdirat(cur.as_fd(), os(comp), Mode::from_bits_truncate(0o755))
                        .map_err(|e| parent_error(entry, prefix, e))?;
                    self.mark(prefix);
                    self.resolve_dir(prefix)
                        .map_err(|e| parent_error(entry, prefix, e))?
                }
                Err(e) => return Err(parent_error(entry, prefix, e)),
            };
        }
        Ok(cur)
    }

    /// The directory `parent` (normalized) of entry `entry`, created if
    /// missing: resolved in `dest`, or in the merged view of the chain.
    fn parent_dir(&mut self, parent: &[u8], entry: &[u8]) -> Result<Parent, LayerError> {
        if self.chain.is_some() {
            return self.chain_dir(parent, entry);
        }
        Ok(Parent {
            fd: self.ensure_dir(parent, entry)?,
            path: parent.to_vec(),
            lowers_visible: false,
        })
    }

    fn entry(&mut self, entry: &mut dyn Read, m: &EntryMeta) -> Result<(), LayerError> {
        if let Kind::Skip(t) = m.kind {
            log::warn!(
                "skipping tar entry {} of unsupported type {:?}",
                lossy(&m.raw_name),
                char::from(t)
            );
            return Ok(());
        }
        let path = normalize(&m.raw_name).map_err(|r| LayerError::entry(&m.raw_name, r))?;
        if path.is_empty() {
            // The root is the snapshot's (or the ADD destination's), never
            // the archive's: containerd's applier skips an entry that
            // resolves to the root and Docker's skips `.`, whatever its
            // type (GNU tar writes `./` first; some writers an empty name).
            log::debug!("skipping tar entry {:?} for the root", lossy(&m.raw_name));
            return Ok(());
        }
        self.stats.entries += 1;
        let (parent, base) = split_last(&path);
        if base.starts_with(WHITEOUT_PREFIX) && self.mode != WhiteoutMode::Literal {
            return self.whiteout(m, &path);
        }
        let parent = self.parent_dir(parent, &m.raw_name)?;
        let pfd = &parent.fd;
        let path = join(&parent.path, base);
        if let Some(chain) = &mut self.chain {
            chain.changing(&path);
        }
        self.mark(&path);
        if self.copy.is_some_and(|c| c.keep_kinds) {
            self.check_kind(pfd, base, &path, m)?;
        }
        let what = |op: &str| format!("{op} {}", lossy(&m.raw_name));
        match m.kind {
            Kind::Dir => {
                let existing = Self::remove_existing(pfd, base, true, &m.raw_name)?;
                if existing != Existing::KeptDir {
                    mkdirat(pfd.as_fd(), os(base), Mode::from_bits_truncate(0o700))
                        .map_err(|e| LayerError::io(what("creating directory"), e))?;
                    // What this layer removed there hid a lower directory,
                    // whose content must stay hidden (overlayfs makes a
                    // directory created over a whiteout opaque alike).
                    if existing == (Existing::Removed { dir: false })
                        && self.lower_has_dir(&parent, base)?
                    {
                        self.make_opaque(pfd, base, &path, &m.raw_name)?;
                    }
                }
                let fd = openat(
                    pfd.as_fd(),
                    os(base),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| LayerError::io(what("opening directory"), e))?;
                self.set_fd_meta(&fd, m)?;
                self.defer_dir_mode(&fd, path.clone(), m)?;
                self.dir_times.push((path.clone(), m.mtime));
            }
            Kind::File => {
                Self::remove_existing(pfd, base, false, &m.raw_name)?;
                let fd = openat(
                    pfd.as_fd(),
                    os(base),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| LayerError::io(what("creating file"), e))?;
                let mut file = File::from(fd);
                let got = io::copy(entry, &mut file)
                    .map_err(|e| LayerError::io(what("extracting file"), e))?;
                if got < m.size {
                    return Err(LayerError::Truncated {
                        entry: lossy(&m.raw_name),
                        got,
                        size: m.size,
                    });
                }
                self.stats.bytes += got;
                let fd = OwnedFd::from(file);
                self.set_fd_meta(&fd, m)?;
                futimens(fd.as_fd(), &m.mtime, &m.mtime)
                    .map_err(|e| LayerError::io(what("setting mtime of"), e))?;
            }
            Kind::Symlink => {
                Self::remove_existing(pfd, base, false, &m.raw_name)?;
                let target = m.link.as_deref().unwrap_or_default();
                symlinkat(os(target), pfd.as_fd(), os(base))
                    .map_err(|e| LayerError::io(what("creating symlink"), e))?;
                self.set_at_meta(pfd, base, m, false)?;
            }
            Kind::Hardlink => {
                let raw_target = m.link.as_deref().unwrap_or_default();
                let target = normalize(raw_target).map_err(|r| {
                    LayerError::entry(
                        &m.raw_name,
                        format!("hardlink target {}: {r}", lossy(raw_target)),
                    )
                })?;
                if target.is_empty() {
                    return Err(LayerError::entry(
                        &m.raw_name,
                        "hardlink to the root directory",
                    ));
                }
                let (tparent, tbase) = split_last(&target);
                let resolving = |e: Errno| {
                    LayerError::io(
                        format!(
                            "resolving hardlink target {} of {}",
                            lossy(raw_target),
                            lossy(&m.raw_name)
                        ),
                        e,
                    )
                };
                let (tfd, target) = if self.chain.is_some() {
                    let tdir = self.chain_target(tparent, tbase).map_err(|f| match f {
                        chain::Failure::Errno(e) => resolving(e),
                        chain::Failure::Layer(e) => e,
                    })?;
                    let target = join(&tdir.path, tbase);
                    (tdir.fd, target)
                } else {
                    (
                        self.resolve_dir(tparent).map_err(resolving)?,
                        target.clone(),
                    )
                };
                if target != path {
                    Self::remove_existing(pfd, base, false, &m.raw_name)?;
                }
                linkat(
                    tfd.as_fd(),
                    os(tbase),
                    pfd.as_fd(),
                    os(base),
                    AtFlags::empty(),
                )
                .map_err(|e| {
                    LayerError::io(
                        format!(
                            "creating hardlink {} to {}",
                            lossy(&m.raw_name),
                            lossy(raw_target)
                        ),
                        e,
                    )
                })?;
            }
            Kind::Char | Kind::Block | Kind::Fifo => {
                let whiteout = m.kind == Kind::Char && m.dev == (0, 0);
                if self.rootless && m.kind != Kind::Fifo && !whiteout {
                    log::warn!(
                        "skipping device {} (creating devices needs root)",
                        lossy(&m.raw_name)
                    );
                    return Ok(());
                }
                Self::remove_existing(pfd, base, false, &m.raw_name)?;
                let kind = match m.kind {
                    Kind::Char => SFlag::S_IFCHR,
                    Kind::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                mknodat(
                    pfd.as_fd(),
                    os(base),
                    kind,
                    Mode::from_bits_truncate(0o600),
                    makedev(u64::from(m.dev.0), u64::from(m.dev.1)),
                )
                .map_err(|e| LayerError::io(what("creating device"), e))?;
                self.set_at_meta(pfd, base, m, true)?;
            }
            Kind::Skip(_) => {}
        }
        Ok(())
    }

    /// Owner, mode and xattrs through an open (non-`O_PATH`) descriptor;
    /// chown first because it clears setuid bits and file capabilities.
    fn set_fd_meta(&self, fd: &OwnedFd, m: &EntryMeta) -> Result<(), LayerError> {
        let what = |op: &str| format!("{op} {}", lossy(&m.raw_name));
        if self.chown {
            let (uid, gid) = self.copy.and_then(|c| c.owner).unwrap_or((m.uid, m.gid));
            fchown(
                fd.as_fd(),
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
            )
            .map_err(|e| LayerError::io(what("changing owner of"), e))?;
        }
        fchmod(fd.as_fd(), Mode::from_bits_truncate(m.mode))
            .map_err(|e| LayerError::io(what("changing mode of"), e))?;
        if !m.xattrs.is_empty() {
            let file = File::from(
                fd.try_clone()
                    .map_err(|e| LayerError::io(what("duplicating descriptor of"), e))?,
            );
            for (name, value) in &m.xattrs {
                let set = file.set_xattr(name, value);
                self.xattr_result(set, name, m)?;
            }
        }
        Ok(())
    }

    /// Owner, mode (unless a symlink), xattrs and times of `base` in `pfd`,
    /// never following `base`.
    fn set_at_meta(
        &self,
        pfd: &OwnedFd,
        base: &[u8],
        m: &EntryMeta,
        chmod: bool,
    ) -> Result<(), LayerError> {
        let what = |op: &str| format!("{op} {}", lossy(&m.raw_name));
        if self.chown {
            let (uid, gid) = self.copy.and_then(|c| c.owner).unwrap_or((m.uid, m.gid));
            fchownat(
                pfd.as_fd(),
                os(base),
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| LayerError::io(what("changing owner of"), e))?;
        }
        if chmod {
            fchmodat(
                pfd.as_fd(),
                os(base),
                Mode::from_bits_truncate(m.mode),
                FchmodatFlags::NoFollowSymlink,
            )
            .map_err(|e| LayerError::io(what("changing mode of"), e))?;
        }
        for (name, value) in &m.xattrs {
            // No *at xattr call: the parent is reached through its descriptor's
            // /proc magic link and lsetxattr does not follow `base`.
            let mut p = format!("/proc/self/fd/{}/", pfd.as_raw_fd()).into_bytes();
            p.extend_from_slice(base);
            let set = xattr::set(Path::new(os(&p)), name, value);
            self.xattr_result(set, name, m)?;
        }
        utimensat(
            pfd.as_fd(),
            os(base),
            &m.mtime,
            &m.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| LayerError::io(what("setting mtime of"), e))?;
        Ok(())
    }

    /// Turns a failed xattr write into an error, except without root,
    /// where what the kernel refuses (`trusted.*`, `security.capability`)
    /// is skipped with a warning.
    fn xattr_result(
        &self,
        set: io::Result<()>,
        name: &str,
        m: &EntryMeta,
    ) -> Result<(), LayerError> {
        match set {
            Ok(()) => Ok(()),
            Err(e) if self.rootless && e.raw_os_error() == Some(libc::EPERM) => {
                log::warn!(
                    "skipping xattr {name} of {} (setting it needs root)",
                    lossy(&m.raw_name)
                );
                Ok(())
            }
            Err(e) => Err(LayerError::io(
                format!("setting xattr {name} on {}", lossy(&m.raw_name)),
                e,
            )),
        }
    }

    /// Without root, a directory the caller could not write into (mode
    /// without u+rwx) gets u+rwx until [`Self::finish`] sets `m.mode`.
    fn defer_dir_mode(
        &mut self,
        fd: &OwnedFd,
        path: Vec<u8>,
        m: &EntryMeta,
    ) -> Result<(), LayerError> {
        if !self.rootless || m.mode & 0o700 == 0o700 {
            return Ok(());
        }
        fchmod(fd.as_fd(), Mode::from_bits_truncate(m.mode | 0o700))
            .map_err(|e| LayerError::io(format!("changing mode of {}", lossy(&m.raw_name)), e))?;
        self.dir_modes.push((path, m.mode));
        Ok(())
    }

    /// Removes `base` from `pfd` if present (recursively for directories).
    /// With `keep_dir`, an existing directory is kept.
    /// [`unpack_copy`]: fails if entry `m` (at `path`, `base` in `pfd`)
    /// would replace a directory with a non-directory, or the reverse.
    fn check_kind(
        &self,
        pfd: &OwnedFd,
        base: &[u8],
        path: &[u8],
        m: &EntryMeta,
    ) -> Result<(), LayerError> {
        let st = match fstatat(pfd.as_fd(), os(base), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => {
                return Err(LayerError::io(
                    format!("inspecting existing {}", lossy(&m.raw_name)),
                    e,
                ));
            }
        };
        let existing_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
        let entry_dir = m.kind == Kind::Dir;
        if existing_dir == entry_dir {
            return Ok(());
        }
        let dest = self.root.path().display().to_string();
        let shown = format!("{}/{}", dest.trim_end_matches('/'), lossy(path));
        Err(if existing_dir {
            LayerError::OverwriteDirectory { path: shown, dest }
        } else {
            LayerError::OverwriteNonDirectory { path: shown, dest }
        })
    }

    fn remove_existing(
        pfd: &OwnedFd,
        base: &[u8],
        keep_dir: bool,
        entry: &[u8],
    ) -> Result<Existing, LayerError> {
        let st = match fstatat(pfd.as_fd(), os(base), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(Existing::Absent),
            Err(e) => {
                return Err(LayerError::io(
                    format!("inspecting existing {}", lossy(entry)),
                    e,
                ));
            }
        };
        let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
        if is_dir && keep_dir {
            return Ok(Existing::KeptDir);
        }
        let r = if is_dir {
            remove_all(pfd.as_fd(), base)
        } else {
            unlinkat(pfd.as_fd(), os(base), UnlinkatFlags::NoRemoveDir)
        };
        r.map_err(|e| LayerError::io(format!("removing existing {}", lossy(entry)), e))?;
        Ok(Existing::Removed { dir: is_dir })
    }

    fn whiteout(&mut self, m: &EntryMeta, path: &[u8]) -> Result<(), LayerError> {
        let (parent, base) = split_last(path);
        if base == WHITEOUT_OPAQUE {
            let dir = match self.mode {
                // The directory exists (as in containerd, which marks it),
                // so that the mark has somewhere to go.
                WhiteoutMode::Overlay => self.parent_dir(parent, &m.raw_name)?.path,
                WhiteoutMode::Apply | WhiteoutMode::Literal => parent.to_vec(),
            };
            self.mark(&dir);
            // Handled at the end: this layer's own entries in it stay, in
            // whatever order the archive lists them.
            self.opaque_dirs.push(dir);
            return Ok(());
        }
        if base.starts_with(WHITEOUT_META_PREFIX) {
            log::warn!("skipping aufs metadata entry {}", lossy(&m.raw_name));
            return Ok(());
        }
        let name = base.get(WHITEOUT_PREFIX.len()..).unwrap_or_default();
        if name.is_empty() || name == b"." || name == b".." {
            return Err(LayerError::entry(&m.raw_name, "invalid whiteout name"));
        }
        match self.mode {
            WhiteoutMode::Overlay => {
                let parent = self.parent_dir(parent, &m.raw_name)?;
                // A whiteout hides what lower layers have, never what its
                // own layer writes (OCI image spec, "Whiteouts").
                let target = join(&parent.path, name);
                if self.this_layer.contains(&target) {
                    return Ok(());
                }
                if let Some(chain) = &mut self.chain {
                    chain.changing(&target);
                }
                Self::remove_existing(&parent.fd, name, false, &m.raw_name)?;
                mknodat(
                    parent.fd.as_fd(),
                    os(name),
                    SFlag::S_IFCHR,
                    Mode::empty(),
                    makedev(0, 0),
                )
                .map_err(|e| {
                    LayerError::io(format!("creating whiteout for {}", lossy(&m.raw_name)), e)
                })?;
            }
            // Literal never gets here (whiteouts are files then).
            WhiteoutMode::Apply | WhiteoutMode::Literal => {
                if self.this_layer.contains(&join(parent, name)) {
                    return Ok(());
                }
                match self.resolve_dir(parent) {
                    Ok(pfd) => {
                        Self::remove_existing(&pfd, name, false, &m.raw_name)?;
                    }
                    // Nothing to hide.
                    Err(Errno::ENOENT | Errno::ENOTDIR) => {}
                    Err(e) => return Err(parent_error(&m.raw_name, parent, e)),
                }
            }
        }
        Ok(())
    }

    /// Sets the opaque mark overlayfs reads on directory `base` in `pfd`
    /// (at `path`).
    fn make_opaque(
        &mut self,
        pfd: &OwnedFd,
        base: &[u8],
        path: &[u8],
        entry: &[u8],
    ) -> Result<(), LayerError> {
        let fd = openat(
            pfd.as_fd(),
            os(base),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| LayerError::io(format!("opening directory {}", lossy(entry)), e))?;
        self.set_opaque(fd, entry)?;
        if let Some(chain) = &mut self.chain {
            chain.opaque.insert(path.to_vec());
        }
        Ok(())
    }

    /// Sets the opaque xattr on an open directory.
    fn set_opaque(&self, fd: OwnedFd, entry: &[u8]) -> Result<(), LayerError> {
        let name = if self.rootless {
            OVERLAY_USER_OPAQUE_XATTR
        } else {
            OVERLAY_OPAQUE_XATTR
        };
        File::from(fd)
            .set_xattr(name, b"y")
            .map_err(|e| LayerError::io(format!("marking directory {} opaque", lossy(entry)), e))
    }

    /// Opaque directories in overlay form: the directory gets the opaque
    /// mark; on a chain, what was copied up into it only as a hardlink
    /// target goes first, and the root (whose mark overlayfs ignores) gets
    /// a whiteout for each name the lowers show instead.
    fn finish_opaque_overlay(&mut self, dir: &[u8]) -> Result<(), LayerError> {
        let what = || format!("marking directory {} opaque", lossy(dir));
        let fd = match self.resolve(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
            Ok(fd) => fd,
            // Replaced by a later entry.
            Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(()),
            Err(e) => return Err(LayerError::io(what(), e)),
        };
        if self.chain.is_none() {
            return self.set_opaque(fd, dir);
        }
        self.prune(&fd, dir)
            .map_err(|e| LayerError::io(format!("emptying opaque directory {}", lossy(dir)), e))?;
        if dir.is_empty() {
            return self.whiteout_lower_root();
        }
        self.set_opaque(fd, dir)
    }

    /// Applies deferred work: opaque directories, then directory times.
    fn finish(&mut self) -> Result<(), LayerError> {
        let mut opaque_dirs = std::mem::take(&mut self.opaque_dirs);
        opaque_dirs.sort();
        opaque_dirs.dedup();
        for dir in opaque_dirs {
            if self.mode == WhiteoutMode::Overlay {
                self.finish_opaque_overlay(&dir)?;
                continue;
            }
            let fd = match self.resolve(&dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
                Ok(fd) => fd,
                Err(Errno::ENOENT | Errno::ENOTDIR) => continue,
                Err(e) => {
                    return Err(LayerError::io(
                        format!("opening opaque directory {}", lossy(&dir)),
                        e,
                    ));
                }
            };
            self.prune(&fd, &dir).map_err(|e| {
                LayerError::io(format!("emptying opaque directory {}", lossy(&dir)), e)
            })?;
        }
        // Deepest first, so no directory is locked before its children.
        for (path, mode) in std::mem::take(&mut self.dir_modes).into_iter().rev() {
            let what = format!("changing mode of directory {}", lossy(&path));
            let fd = match self.resolve(
                &path,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
            ) {
                Ok(fd) => fd,
                // Replaced by a later entry.
                Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => continue,
                Err(e) => return Err(LayerError::io(what, e)),
            };
            let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
            fs::set_permissions(&proc_path, fs::Permissions::from_mode(mode & 0o7777))
                .map_err(|e| LayerError::io(what, e))?;
        }
        for (path, mtime) in std::mem::take(&mut self.dir_times) {
            let what = format!("setting mtime of directory {}", lossy(&path));
            if path.is_empty() {
                utimensat(
                    self.root.as_fd(),
                    ".",
                    &mtime,
                    &mtime,
                    UtimensatFlags::NoFollowSymlink,
                )
                .map_err(|e| LayerError::io(what, e))?;
                continue;
            }
            let (parent, base) = split_last(&path);
            let Ok(pfd) = self.resolve_dir(parent) else {
                continue;
            };
            // A later entry may have replaced the directory; leave that alone.
            let is_dir =
                fstatat(pfd.as_fd(), os(base), AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|st| {
                    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
                });
            if is_dir {
                utimensat(
                    pfd.as_fd(),
                    os(base),
                    &mtime,
                    &mtime,
                    UtimensatFlags::NoFollowSymlink,
                )
                .map_err(|e| LayerError::io(what, e))?;
            }
        }
        Ok(())
    }

    /// Deletes everything under directory `fd` (at normalized `path`) that
    /// this layer did not write, descending into directories it did write.
    fn prune(&self, fd: &OwnedFd, path: &[u8]) -> nix::Result<()> {
        let names = list_dir(fd.try_clone().map_err(|_| Errno::EBADF)?)?;
        for name in names {
            let mut child = path.to_vec();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(&name);
            let st = fstatat(fd.as_fd(), os(&name), AtFlags::AT_SYMLINK_NOFOLLOW)?;
            let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
            if self.this_layer.contains(&child) {
                if is_dir {
                    let sub = openat(
                        fd.as_fd(),
                        os(&name),
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )?;
                    self.prune(&sub, &child)?;
                }
            } else if is_dir {
                remove_all(fd.as_fd(), &name)?;
            } else {
                unlinkat(fd.as_fd(), os(&name), UnlinkatFlags::NoRemoveDir)?;
            }
        }
        Ok(())
    }
}

fn parent_error(entry: &[u8], parent: &[u8], e: Errno) -> LayerError {
    let reason = match e {
        Errno::ENOTDIR => "is not a directory".to_owned(),
        Errno::EEXIST => "exists and is not a directory".to_owned(),
        Errno::ENOENT => "does not exist".to_owned(),
        e => io::Error::from(e).to_string(),
    };
    LayerError::entry(
        entry,
        format!("parent directory {} {reason}", lossy(parent)),
    )
}

/// Names in directory `fd`, without `.` and `..`.
fn list_dir(fd: OwnedFd) -> nix::Result<Vec<Vec<u8>>> {
    let mut dir = nix::dir::Dir::from_fd(fd)?;
    let mut names = Vec::new();
    for ent in dir.iter() {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    Ok(names)
}

/// Removes `name` in `parent` and everything below it, never following symlinks.
fn remove_all(parent: BorrowedFd<'_>, name: &[u8]) -> nix::Result<()> {
    let fd = openat(
        parent,
        os(name),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    for child in list_dir(fd.try_clone().map_err(|_| Errno::EBADF)?)? {
        match unlinkat(fd.as_fd(), os(&child), UnlinkatFlags::NoRemoveDir) {
            Err(Errno::EISDIR) => remove_all(fd.as_fd(), &child)?,
            r => r?,
        }
    }
    unlinkat(parent, os(name), UnlinkatFlags::RemoveDir)
}

/// The first 64 bytes of an over-long name, for its error message.
fn m_name_head(name: &[u8]) -> &[u8] {
    name.get(..64).unwrap_or(name)
}
