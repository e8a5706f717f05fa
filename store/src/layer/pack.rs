//! Deterministic packing of a directory tree into a layer tar.
//!
//! The same tree (names, contents, modes, owners, mtimes, xattrs, link
//! structure) always gives the same bytes: entries are visited sorted by file
//! name, headers are ustar with PAX extensions written by hand (never GNU
//! long names), owner names are empty and nothing depends on the host.

use std::collections::HashMap;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use tar::{EntryType, Header};
use walkdir::WalkDir;

use super::error::LayerError;

/// Options of [`pack_directory`].
#[derive(Debug, Clone, Default)]
pub struct PackOptions {
    /// `SOURCE_DATE_EPOCH`: mtimes later than this are written as this.
    pub clamp_mtime: Option<i64>,
    /// The tree is an overlayfs upper directory: 0/0 character devices are
    /// written as `.wh.NAME` whiteouts, directories with
    /// `trusted.overlay.opaque=y` (or `user.overlay.opaque=y`) get a
    /// `D/.wh..wh..opq` entry after them, and `trusted.overlay.*` /
    /// `user.overlay.*` xattrs are not copied.
    pub overlay_whiteouts: bool,
    /// Names for owner ids (`uname`/`gname` of the headers); layers carry
    /// ids only.
    pub owner_names: Option<std::sync::Arc<OwnerNames>>,
}

/// User and group names by id, for [`PackOptions::owner_names`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnerNames {
    /// Names of user ids.
    pub users: std::collections::BTreeMap<u32, String>,
    /// Names of group ids.
    pub groups: std::collections::BTreeMap<u32, String>,
}

/// What [`pack_directory`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PackStats {
    /// Archive members written (not counting PAX headers).
    pub entries: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
}

/// Longest name or link name that fits the ustar header field.
const USTAR_NAME_LEN: usize = 100;
/// Largest id the 8-byte octal ustar field holds; larger ids go in PAX.
const USTAR_MAX_ID: u64 = 0o7_777_777;
/// Xattrs never copied: `SELinux` labels describe the host's policy.
const SKIPPED_XATTRS: &[&str] = &["security.selinux"];

/// Writes a deterministic tar of the tree under `dir` (not including `dir`
/// itself) to `out`, ending with the two zero blocks.
///
/// Entry names are relative, without a leading `./`; directories end with
/// `/`. Regular files, directories, symlinks, character and block devices and
/// fifos are written with their mode (including setuid, setgid and sticky),
/// numeric uid/gid, whole-second mtime (clamped by
/// [`PackOptions::clamp_mtime`]; mtimes before 1970 are written as 0) and xattrs (as PAX `SCHILY.xattr.*`, sorted,
/// except `security.selinux`). A file seen again with the same (device,
/// inode) is written as a hardlink to its first name. Sockets are skipped.
/// Names or link names longer than 100 bytes and ids above `0o7777777` use
/// PAX records.
pub fn pack_directory<W: Write>(
    dir: &Path,
    out: W,
    opts: &PackOptions,
) -> Result<PackStats, LayerError> {
    let mut p = Packer {
        b: tar::Builder::new(out),
        opts,
        stats: PackStats::default(),
        links: HashMap::new(),
    };
    let walk = WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1);
    for ent in walk {
        let ent = ent.map_err(|e| {
            let path = e.path().unwrap_or(dir).display().to_string();
            LayerError::io(format!("walking {path}"), io::Error::from(e))
        })?;
        let rel = ent.path().strip_prefix(dir).map_err(|_| {
            LayerError::io(
                format!("walking {}", ent.path().display()),
                io::Error::other("path outside the packed directory"),
            )
        })?;
        let md = ent.metadata().map_err(|e| {
            LayerError::io(
                format!("inspecting {}", ent.path().display()),
                io::Error::from(e),
            )
        })?;
        p.entry(ent.path(), rel.as_os_str().as_bytes(), &md)?;
    }
    p.b.into_inner()
        .map_err(|e| LayerError::io("writing end of archive", e))?;
    Ok(p.stats)
}

/// Writes a tar of `path` itself, as `docker cp` archives a resource: a
/// file, symlink (not followed) or other node as one entry named `name`,
/// a directory as `name/` and the tree under it as `name/...` (entries as
/// [`pack_directory`] writes them).
pub fn pack_path<W: Write>(
    path: &Path,
    name: &[u8],
    out: W,
    owner_names: Option<std::sync::Arc<OwnerNames>>,
) -> Result<PackStats, LayerError> {
    let opts = PackOptions {
        owner_names,
        ..PackOptions::default()
    };
    let mut p = Packer {
        b: tar::Builder::new(out),
        opts: &opts,
        stats: PackStats::default(),
        links: HashMap::new(),
    };
    let walk = WalkDir::new(path)
        .follow_links(false)
        .follow_root_links(false)
        .sort_by_file_name();
    for ent in walk {
        let ent = ent.map_err(|e| {
            let shown = e.path().unwrap_or(path).display().to_string();
            LayerError::io(format!("walking {shown}"), io::Error::from(e))
        })?;
        let rel = ent.path().strip_prefix(path).map_err(|_| {
            LayerError::io(
                format!("walking {}", ent.path().display()),
                io::Error::other("path outside the packed directory"),
            )
        })?;
        let mut entry_name = name.to_vec();
        if !rel.as_os_str().is_empty() {
            entry_name.push(b'/');
            entry_name.extend_from_slice(rel.as_os_str().as_bytes());
        }
        let md = ent.metadata().map_err(|e| {
            LayerError::io(
                format!("inspecting {}", ent.path().display()),
                io::Error::from(e),
            )
        })?;
        p.entry(ent.path(), &entry_name, &md)?;
    }
    p.b.into_inner()
        .map_err(|e| LayerError::io("writing end of archive", e))?;
    Ok(p.stats)
}

struct Packer<'o, W: Write> {
    b: tar::Builder<W>,
    opts: &'o PackOptions,
    stats: PackStats,
    /// First name of each multiply-linked inode, by (device, inode).
    links: HashMap<(u64, u64), Vec<u8>>,
}

/// The header fields of one member.
struct Fields<'a> {
    name: &'a [u8],
    etype: EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    size: u64,
    link: Option<&'a [u8]>,
    dev: Option<(u64, u64)>,
    xattrs: &'a [(String, Vec<u8>)],
}

impl<W: Write> Packer<'_, W> {
    fn entry(&mut self, path: &Path, rel: &[u8], md: &Metadata) -> Result<(), LayerError> {
        let ft = md.file_type();
        let shown = || path.display().to_string();
        if ft.is_socket() {
            log::debug!("skipping socket {}", shown());
            return Ok(());
        }
        let mut fields = Fields {
            name: rel,
            etype: EntryType::Regular,
            mode: md.mode() & 0o7777,
            uid: u64::from(md.uid()),
            gid: u64::from(md.gid()),
            mtime: md.mtime(),
            size: 0,
            link: None,
            dev: None,
            xattrs: &[],
        };
        let overlay = self.opts.overlay_whiteouts;
        if overlay && ft.is_char_device() && md.rdev() == 0 {
            let (parent, base) = split_parent(rel);
            let mut name = parent.to_vec();
            name.extend_from_slice(b".wh.");
            name.extend_from_slice(base);
            fields.name = &name;
            fields.mode &= 0o777;
            return self.write(&fields, None::<io::Empty>, path);
        }
        let xattrs = read_xattrs(path, overlay)?;
        fields.xattrs = &xattrs;
        if ft.is_dir() {
            let mut name = rel.to_vec();
            name.push(b'/');
            fields.name = &name;
            fields.etype = EntryType::Directory;
            self.write(&fields, None::<io::Empty>, path)?;
            if overlay && is_opaque(path)? {
                let mut wh_name = name.clone();
                wh_name.extend_from_slice(b".wh..wh..opq");
                let wh = Fields {
                    name: &wh_name,
                    mode: fields.mode & 0o777,
                    xattrs: &[],
                    etype: EntryType::Regular,
                    ..fields
                };
                self.write(&wh, None::<io::Empty>, path)?;
            }
            return Ok(());
        }
        if md.nlink() > 1 {
            if let Some(first) = self.links.get(&(md.dev(), md.ino())) {
                let first = first.clone();
                fields.etype = EntryType::Link;
                fields.link = Some(&first);
                return self.write(&fields, None::<io::Empty>, path);
            }
            self.links.insert((md.dev(), md.ino()), rel.to_vec());
        }
        if ft.is_symlink() {
            let target = std::fs::read_link(path)
                .map_err(|e| LayerError::io(format!("reading symlink {}", shown()), e))?;
            fields.etype = EntryType::Symlink;
            fields.link = Some(target.as_os_str().as_bytes());
            return self.write(&fields, None::<io::Empty>, path);
        }
        if ft.is_char_device() || ft.is_block_device() {
            fields.etype = if ft.is_char_device() {
                EntryType::Char
            } else {
                EntryType::Block
            };
            let rdev = md.rdev();
            fields.dev = Some((nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev)));
            return self.write(&fields, None::<io::Empty>, path);
        }
        if ft.is_fifo() {
            fields.etype = EntryType::Fifo;
            return self.write(&fields, None::<io::Empty>, path);
        }
        if !ft.is_file() {
            log::warn!("skipping {} of unsupported type", shown());
            return Ok(());
        }
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| LayerError::io(format!("opening {}", shown()), e))?;
        let size = file
            .metadata()
            .map_err(|e| LayerError::io(format!("inspecting {}", shown()), e))?
            .len();
        fields.size = size;
        self.write(
            &fields,
            Some(Exact {
                inner: file,
                remaining: size,
            }),
            path,
        )?;
        self.stats.bytes += size;
        Ok(())
    }

    /// Writes a PAX header if needed, then the ustar header and the data.
    fn write<R: Read>(
        &mut self,
        f: &Fields<'_>,
        data: Option<R>,
        path: &Path,
    ) -> Result<(), LayerError> {
        let what = || format!("writing entry {}", path.display());
        let mut pax = Vec::new();
        if f.name.len() > USTAR_NAME_LEN {
            pax_record(&mut pax, b"path", f.name);
        }
        if let Some(link) = f.link.filter(|l| l.len() > USTAR_NAME_LEN) {
            pax_record(&mut pax, b"linkpath", link);
        }
        if f.uid > USTAR_MAX_ID {
            pax_record(&mut pax, b"uid", f.uid.to_string().as_bytes());
        }
        if f.gid > USTAR_MAX_ID {
            pax_record(&mut pax, b"gid", f.gid.to_string().as_bytes());
        }
        for (name, value) in f.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(name.as_bytes());
            pax_record(&mut pax, &key, value);
        }
        if !pax.is_empty() {
            let mut h = Header::new_ustar();
            set_bytes(&mut h.as_old_mut().name, b"PaxHeader");
            h.set_entry_type(EntryType::XHeader);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_size(pax.len() as u64);
            h.set_cksum();
            self.b
                .append(&h, pax.as_slice())
                .map_err(|e| LayerError::io(what(), e))?;
        }
        let mut h = Header::new_ustar();
        set_bytes(&mut h.as_old_mut().name, f.name);
        if let Some(link) = f.link {
            set_bytes(&mut h.as_old_mut().linkname, link);
        }
        h.set_entry_type(f.etype);
        h.set_mode(f.mode);
        h.set_uid(if f.uid > USTAR_MAX_ID { 0 } else { f.uid });
        h.set_gid(if f.gid > USTAR_MAX_ID { 0 } else { f.gid });
        if let Some(names) = &self.opts.owner_names {
            // A name too long for the header is left out, as it is optional.
            if let Some(user) = u32::try_from(f.uid)
                .ok()
                .and_then(|id| names.users.get(&id))
            {
                let _ = h.set_username(user);
            }
            if let Some(group) = u32::try_from(f.gid)
                .ok()
                .and_then(|id| names.groups.get(&id))
            {
                let _ = h.set_groupname(group);
            }
        }
        let mtime = match self.opts.clamp_mtime {
            Some(c) if f.mtime > c => c,
            _ => f.mtime,
        };
        h.set_mtime(u64::try_from(mtime).unwrap_or(0));
        h.set_size(f.size);
        // Written as octal zeros for every entry, as GNU tar and Go do.
        let (major, minor) = f.dev.unwrap_or((0, 0));
        {
            let major = u32::try_from(major).map_err(|_| {
                LayerError::io(what(), io::Error::other("device major out of range"))
            })?;
            let minor = u32::try_from(minor).map_err(|_| {
                LayerError::io(what(), io::Error::other("device minor out of range"))
            })?;
            h.set_device_major(major)
                .and_then(|()| h.set_device_minor(minor))
                .map_err(|e| LayerError::io(what(), e))?;
        }
        h.set_cksum();
        match data {
            Some(r) => self.b.append(&h, r),
            None => self.b.append(&h, io::empty()),
        }
        .map_err(|e| LayerError::io(what(), e))?;
        self.stats.entries += 1;
        Ok(())
    }
}

/// Copies `value` into a header field, truncating to the field's length
/// (the full value is then in a PAX record).
fn set_bytes(field: &mut [u8], value: &[u8]) {
    for (d, s) in field.iter_mut().zip(value) {
        *d = *s;
    }
}

/// Appends one PAX record `"<len> <key>=<value>\n"`, where `<len>` counts
/// the whole record including its own digits.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = key.len() + value.len() + 3; // space, '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Splits a relative path into the parent with its trailing `/` and the base name.
fn split_parent(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (
            rel.get(..=i).unwrap_or_default(),
            rel.get(i + 1..).unwrap_or_default(),
        ),
        None => (b"", rel),
    }
}

fn is_overlay_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.")
}

/// The xattrs of `path` (not following symlinks), sorted by name.
fn read_xattrs(path: &Path, overlay: bool) -> Result<Vec<(String, Vec<u8>)>, LayerError> {
    let what = || format!("reading xattrs of {}", path.display());
    let mut out = Vec::new();
    let names = match xattr::list(path) {
        Ok(names) => names,
        // Filesystems without xattr support have none to copy.
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(out),
        Err(e) => return Err(LayerError::io(what(), e)),
    };
    for name in names {
        let Some(name) = name.to_str() else {
            return Err(LayerError::io(
                what(),
                io::Error::other(format!("xattr name {} is not UTF-8", name.display())),
            ));
        };
        if SKIPPED_XATTRS.contains(&name) || (overlay && is_overlay_xattr(name)) {
            continue;
        }
        if let Some(value) = xattr::get(path, name).map_err(|e| LayerError::io(what(), e))? {
            out.push((name.to_owned(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// Whether directory `path` is marked opaque by overlayfs.
fn is_opaque(path: &Path) -> Result<bool, LayerError> {
    for name in ["trusted.overlay.opaque", "user.overlay.opaque"] {
        match xattr::get(path, name) {
            Ok(Some(v)) if v == b"y" => return Ok(true),
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
            Err(e) => {
                return Err(LayerError::io(
                    format!("reading {name} of {}", path.display()),
                    e,
                ));
            }
        }
    }
    Ok(false)
}

/// Reads exactly `remaining` bytes of a file: a file that shrinks while it
/// is packed is an error instead of a short, corrupt entry.
struct Exact {
    inner: File,
    remaining: u64,
}

impl Read for Exact {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = usize::try_from(self.remaining).map_or(buf.len(), |r| r.min(buf.len()));
        let slot = buf.get_mut(..want).unwrap_or_default();
        let n = self.inner.read(slot)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while it was packed",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}
