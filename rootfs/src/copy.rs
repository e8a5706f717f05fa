//! The copy snapshotter: what [`crate::mount::overlay`] does where the
//! kernel will not mount overlayfs (an old kernel in a user namespace, a
//! store that is itself on overlayfs).
//!
//! [`materialize`] copies the merged view of the layers (overlayfs's
//! rules: the top layer first, 0/0 character devices are whiteouts, a
//! non-directory or an opaque directory ends the merge of a name) into a
//! working directory, `work/root`, which the caller uses as the root. The
//! copy's files are new inodes (never hard links into the snapshots, which
//! a RUN writing through them would change), contents copied with
//! `copy_file_range`, which reflinks where the file system can.
//!
//! [`finish`] turns what was done to that root back into an upper
//! directory of overlayfs form, as if the kernel had mounted it, so that
//! packing a layer, `kiln diff` and everything else read the same thing:
//! a path is changed when its inode's ctime is later than the end of the
//! copy (any write, chmod, chown, rename, link or xattr change moves it;
//! these are the very operations that make overlayfs copy a file up), a
//! lower path missing from the root becomes a whiteout, a directory where
//! the lowers show none is moved over whole (opaque where they show a
//! file, as overlayfs makes a directory created over the whiteout it
//! wrote), and directories above a change are copied up with their
//! metadata.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CString, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The working copy's directory under the overlay's `work` directory.
const ROOT: &str = "root";
/// A file under `work` whose ctime is when the copy was complete.
const MARKER: &str = "copied";

/// The overlay marks, which describe a layer and are never copied.
const OVERLAY_XATTRS: [&[u8]; 2] = [b"trusted.overlay.", b"user.overlay."];

fn with_path(path: &Path, what: &str) -> impl FnOnce(io::Error) -> io::Error {
    let context = format!("{what} {}", path.display());
    move |e| io::Error::new(e.kind(), format!("{context}: {e}"))
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn is_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn is_opaque(path: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| xattr(path, name.as_bytes()).is_ok_and(|v| v.as_deref() == Some(b"y")))
}

/// One name of the merged view of a directory.
struct Shown {
    /// Where the layer that shows it has it.
    path: PathBuf,
    meta: fs::Metadata,
    /// A directory's own directories in the layers merged under it, top
    /// first.
    dirs: Vec<PathBuf>,
    /// No lower layer adds to it any more (a non-directory, an opaque
    /// directory, or a lower layer with a whiteout or a non-directory).
    sealed: bool,
}

/// What layer directories `dirs` (top first) show merged.
fn merged(dirs: &[PathBuf]) -> io::Result<BTreeMap<OsString, Shown>> {
    let mut shown: BTreeMap<OsString, Shown> = BTreeMap::new();
    let mut hidden = BTreeSet::new();
    for dir in dirs {
        for entry in fs::read_dir(dir).map_err(with_path(dir, "reading"))? {
            let entry = entry.map_err(with_path(dir, "reading"))?;
            let name = entry.file_name();
            if hidden.contains(&name) {
                continue;
            }
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).map_err(with_path(&path, "reading"))?;
            if let Some(above) = shown.get_mut(&name) {
                if !above.sealed {
                    if meta.is_dir() && !is_whiteout(&meta) {
                        above.sealed = is_opaque(&path);
                        above.dirs.push(path);
                    } else {
                        above.sealed = true;
                    }
                }
                continue;
            }
            if is_whiteout(&meta) {
                hidden.insert(name);
                continue;
            }
            let is_dir = meta.is_dir();
            let sealed = !is_dir || is_opaque(&path);
            shown.insert(
                name,
                Shown {
                    dirs: if is_dir {
                        vec![path.clone()]
                    } else {
                        Vec::new()
                    },
                    path,
                    meta,
                    sealed,
                },
            );
        }
    }
    Ok(shown)
}

/// The working copy's directory under an overlay's `work` directory.
pub(crate) fn working_root(work: &Path) -> PathBuf {
    work.join(ROOT)
}

/// `stack` (layer directories, top first, the upper directory first when
/// there is one) copied into the empty directory `root`, which takes the
/// metadata of `stack[0]`'s root as overlayfs's root does. With `work`, a
/// marker there whose ctime is later than every copied inode's (for
/// [`finish`]).
pub(crate) fn materialize(stack: &[&Path], root: &Path, work: Option<&Path>) -> io::Result<()> {
    let dirs: Vec<PathBuf> = stack.iter().map(|p| p.to_path_buf()).collect();
    copy_dir(&dirs, root)?;
    if let Some(top) = stack.first() {
        let meta = fs::symlink_metadata(top).map_err(with_path(top, "reading"))?;
        set_meta(top, &meta, root)?;
    }
    let Some(work) = work else {
        return Ok(());
    };
    let marker = work.join(MARKER);
    fs::write(&marker, b"").map_err(with_path(&marker, "writing"))?;
    let t0 = ctime(&fs::symlink_metadata(&marker).map_err(with_path(&marker, "reading"))?);
    // Inode times come from the coarse clock: once it has passed the
    // marker's, every later change is strictly later than every copy.
    for _ in 0..1000 {
        if coarse_now() > t0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Ok(())
}

fn coarse_now() -> (i64, i64) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &raw mut ts) };
    (ts.tv_sec, ts.tv_nsec)
}

fn ctime(meta: &fs::Metadata) -> (i64, i64) {
    (meta.ctime(), meta.ctime_nsec())
}

fn copy_dir(dirs: &[PathBuf], to: &Path) -> io::Result<()> {
    let shown = merged(dirs)?;
    for (name, entry) in shown {
        let dest = to.join(&name);
        copy_one(&entry.path, &entry.meta, &dest)?;
        if entry.meta.is_dir() {
            copy_dir(&entry.dirs, &dest)?;
            set_meta(&entry.path, &entry.meta, &dest)?;
        }
    }
    Ok(())
}

/// Copies one entry (a directory without its content nor, yet, its
/// metadata).
fn copy_one(from: &Path, meta: &fs::Metadata, to: &Path) -> io::Result<()> {
    let kind = meta.file_type();
    if kind.is_dir() {
        return fs::DirBuilder::new()
            .mode(0o700)
            .create(to)
            .map_err(with_path(to, "creating"));
    }
    if kind.is_file() {
        let mut source = fs::File::open(from).map_err(with_path(from, "opening"))?;
        let mut dest = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(to)
            .map_err(with_path(to, "creating"))?;
        // copy_file_range: a reflink where the file system shares blocks.
        io::copy(&mut source, &mut dest).map_err(with_path(to, "copying to"))?;
    } else if kind.is_symlink() {
        let target = fs::read_link(from).map_err(with_path(from, "reading"))?;
        std::os::unix::fs::symlink(target, to).map_err(with_path(to, "creating"))?;
    } else {
        let path = c_path(to)?;
        // SAFETY: a NUL-terminated path; mknod creates a fifo, socket or
        // device node of the source's type and number.
        let made = unsafe { libc::mknod(path.as_ptr(), meta.mode(), meta.rdev()) };
        if made != 0 {
            return Err(with_path(to, "creating")(io::Error::last_os_error()));
        }
    }
    set_meta(from, meta, to)
}

/// Gives `to` the owner, mode, extended attributes and times of `from`
/// (whose metadata is `meta`), without following a symlink.
fn set_meta(from: &Path, meta: &fs::Metadata, to: &Path) -> io::Result<()> {
    copy_xattrs(from, to)?;
    let owned = std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()));
    // With a single id every file is the caller's already (and no other
    // owner can be set).
    if let Err(e) = owned
        && !crate::userns::single_id()
    {
        return Err(with_path(to, "changing the owner of")(e));
    }
    if !meta.file_type().is_symlink() {
        // After the owner: chown clears setuid and setgid bits.
        fs::set_permissions(
            to,
            std::os::unix::fs::PermissionsExt::from_mode(meta.mode()),
        )
        .map_err(with_path(to, "changing the mode of"))?;
    }
    let times = [
        libc::timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec(),
        },
        libc::timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec(),
        },
    ];
    let path = c_path(to)?;
    // SAFETY: a NUL-terminated path and two timespecs.
    let set = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            path.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if set != 0 {
        return Err(with_path(to, "setting the times of")(
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// The value of xattr `name` of `path` (not followed), `None` if absent.
fn xattr(path: &Path, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let path = c_path(path)?;
    let name = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: NUL-terminated path and name, a buffer of the size given.
        let n = unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if let Ok(n) = usize::try_from(n) {
            buf.truncate(n);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENODATA | libc::ENOTSUP) => return Ok(None),
            Some(libc::ERANGE) if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            _ => return Err(e),
        }
    }
}

fn xattr_names(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let c = c_path(path)?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: a NUL-terminated path and a buffer of the size given.
        let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if let Ok(n) = usize::try_from(n) {
            buf.truncate(n);
            return Ok(buf
                .split(|b| *b == 0)
                .filter(|n| !n.is_empty())
                .map(<[u8]>::to_vec)
                .collect());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            Some(libc::ERANGE) if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            _ => return Err(with_path(path, "listing the xattrs of")(e)),
        }
    }
}

fn set_xattr(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    let c = c_path(path)?;
    let name = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: NUL-terminated path and name, a value of the length given.
    let set = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if set == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Copies the xattrs of `from` but overlayfs's own marks. Those the
/// kernel refuses here (`trusted.*` in a user namespace, `security.*` a
/// module keeps) are left out, as overlayfs's copy-up leaves them.
fn copy_xattrs(from: &Path, to: &Path) -> io::Result<()> {
    for name in xattr_names(from)? {
        if OVERLAY_XATTRS.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let Some(value) = xattr(from, &name).map_err(with_path(from, "reading the xattrs of"))?
        else {
            continue;
        };
        match set_xattr(to, &name, &value) {
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EPERM | libc::ENOTSUP | libc::EACCES)
                ) => {}
            other => other.map_err(with_path(to, "setting the xattrs of"))?,
        }
    }
    Ok(())
}

/// Records in `upper` (overlayfs form) what was done to the working copy
/// that [`materialize`] made under `work` of `upper` over `lowers` (top
/// first, without the upper directory), then removes the copy. Nothing
/// happens when `work` holds no copy (the kernel's overlay was used).
/// `opaque`: the xattr that marks an opaque directory here.
pub(crate) fn finish(lowers: &[&Path], upper: &Path, work: &Path, opaque: &str) -> io::Result<()> {
    let marker = work.join(MARKER);
    let meta = match fs::symlink_metadata(&marker) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other.map_err(with_path(&marker, "reading"))?,
    };
    let root = work.join(ROOT);
    let finish = Finish {
        t0: ctime(&meta),
        opaque: opaque.as_bytes(),
    };
    let lowers: Vec<PathBuf> = lowers.iter().map(|p| p.to_path_buf()).collect();
    // Read before moving entries out of it changes its times.
    let root_meta = fs::symlink_metadata(&root).map_err(with_path(&root, "reading"))?;
    finish.dir(&lowers, &root, upper)?;
    if finish.changed(&root_meta) {
        set_meta(&root, &root_meta, upper)?;
    }
    remove_all(&root)?;
    fs::remove_file(&marker).map_err(with_path(&marker, "removing"))
}

struct Finish<'a> {
    /// The ctime of the copy's end.
    t0: (i64, i64),
    opaque: &'a [u8],
}

impl Finish<'_> {
    fn changed(&self, meta: &fs::Metadata) -> bool {
        ctime(meta) > self.t0
    }

    /// Brings upper directory `up` (which exists) in line with working
    /// directory `w`, whose lower directories are `lowers` (top first).
    fn dir(&self, lowers: &[PathBuf], w: &Path, up: &Path) -> io::Result<()> {
        let lower = merged(lowers)?;
        let upper = entries(up)?;
        let work = entries(w)?;
        for (name, meta) in &work {
            let (from, to) = (w.join(name), up.join(name));
            let below = lower.get(name);
            let above = upper.get(name);
            if meta.is_dir() {
                if let Some(below) = below.filter(|b| b.meta.is_dir()) {
                    // Merged with the lowers' directory: copied up only for
                    // a change of its own or below it.
                    let existed = above.is_some_and(fs::Metadata::is_dir);
                    if !existed {
                        if above.is_some() {
                            remove_all(&to)?;
                        }
                        fs::DirBuilder::new()
                            .mode(0o700)
                            .create(&to)
                            .map_err(with_path(&to, "creating"))?;
                    }
                    self.dir(&below.dirs, &from, &to)?;
                    if self.changed(meta) || (!existed && !is_empty(&to)?) {
                        set_meta(&from, meta, &to)?;
                    } else if !existed {
                        fs::remove_dir(&to).map_err(with_path(&to, "removing"))?;
                    }
                    continue;
                }
                // The lowers show no directory here: all of it is the
                // upper's.
                if above.is_some() {
                    remove_all(&to)?;
                }
                rename(&from, &to)?;
                // Overlayfs makes a directory opaque when it is created
                // over a whiteout of its own upper directory, i.e. where
                // the lowers show something; a lower's whiteout hides
                // what is below it by itself.
                if below.is_some() {
                    set_xattr(&to, self.opaque, b"y").map_err(with_path(&to, "marking opaque"))?;
                }
                continue;
            }
            if !self.changed(meta) && (below.is_some() || above.is_some()) {
                continue;
            }
            if above.is_some() {
                remove_all(&to)?;
            }
            rename(&from, &to)?;
        }
        for name in lower.keys() {
            if work.contains_key(name) {
                continue;
            }
            let to = up.join(name);
            match upper.get(name) {
                Some(meta) if is_whiteout(meta) => continue,
                Some(_) => remove_all(&to)?,
                None => {}
            }
            whiteout(&to)?;
        }
        for name in upper.keys() {
            if !work.contains_key(name) && !lower.contains_key(name) {
                remove_all(&up.join(name))?;
            }
        }
        Ok(())
    }
}

fn entries(dir: &Path) -> io::Result<BTreeMap<OsString, fs::Metadata>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).map_err(with_path(dir, "reading"))? {
        let entry = entry.map_err(with_path(dir, "reading"))?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(with_path(&path, "reading"))?;
        out.insert(entry.file_name(), meta);
    }
    Ok(out)
}

fn is_empty(dir: &Path) -> io::Result<bool> {
    Ok(fs::read_dir(dir)
        .map_err(with_path(dir, "reading"))?
        .next()
        .is_none())
}

fn rename(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("moving {} to {}: {e}", from.display(), to.display()),
        )
    })
}

/// Removes a file or a whole directory, even one whose modes forbid it to
/// its owner (a RUN may leave a directory 0555).
fn remove_all(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other.map_err(with_path(path, "reading"))?,
    };
    if !meta.is_dir() {
        return fs::remove_file(path).map_err(with_path(path, "removing"));
    }
    let _ = fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o700));
    for entry in fs::read_dir(path).map_err(with_path(path, "reading"))? {
        remove_all(&entry.map_err(with_path(path, "reading"))?.path())?;
    }
    fs::remove_dir(path).map_err(with_path(path, "removing"))
}

/// An overlayfs whiteout: a 0/0 character device (which a user namespace
/// may make since Linux 5.8).
fn whiteout(path: &Path) -> io::Result<()> {
    let c = c_path(path)?;
    // SAFETY: a NUL-terminated path.
    let made = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) };
    if made == 0 {
        Ok(())
    } else {
        Err(with_path(path, "making a whiteout at")(
            io::Error::last_os_error(),
        ))
    }
}

/// Removes what [`materialize`] copied into `root` (not `root` itself).
pub(crate) fn clear(root: &Path) -> io::Result<()> {
    for entry in fs::read_dir(root).map_err(with_path(root, "reading"))? {
        remove_all(&entry.map_err(with_path(root, "reading"))?.path())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use std::path::Path;

    use crate::mount::{OverlayOptions, Snapshotter, overlay, private_namespace};

    /// What an upper directory holds, with what packing a layer reads
    /// (not times, which differ between the two runs).
    fn listing(dir: &Path) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            let mut entries: Vec<_> = fs::read_dir(dir).unwrap().flatten().collect();
            entries.sort_by_key(fs::DirEntry::file_name);
            for entry in entries {
                let path = entry.path();
                let meta = fs::symlink_metadata(&path).unwrap();
                let rel = path.strip_prefix(base).unwrap().display().to_string();
                let kind = meta.file_type();
                let what = if kind.is_dir() {
                    let opaque = super::is_opaque(&path);
                    format!("dir opaque={opaque}")
                } else if kind.is_symlink() {
                    format!("link {}", fs::read_link(&path).unwrap().display())
                } else if kind.is_char_device() {
                    format!("char {}", meta.rdev())
                } else {
                    format!(
                        "file {:?} links={}",
                        fs::read_to_string(&path).unwrap(),
                        meta.nlink()
                    )
                };
                out.push(format!(
                    "{rel} {what} {:o} {}:{}",
                    meta.mode() & 0o7777,
                    meta.uid(),
                    meta.gid()
                ));
                if kind.is_dir() {
                    walk(base, &path, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(dir, dir, &mut out);
        out
    }

    /// The same changes through the kernel's overlay and through the copy
    /// leave the same upper directory.
    #[test]
    fn a_copy_leaves_the_upper_directory_an_overlay_leaves() {
        if !kiln_testkit::root("mounts overlays") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (bottom, top) = (dir.path().join("bottom"), dir.path().join("top"));
        for d in [&bottom, &top] {
            fs::create_dir(d).unwrap();
        }
        // The lowers: a tree, a file the top layer whites out, a directory
        // it makes opaque, and hard links.
        fs::create_dir_all(bottom.join("a/b")).unwrap();
        fs::write(bottom.join("a/b/f"), "f").unwrap();
        fs::write(bottom.join("a/g"), "g").unwrap();
        fs::write(bottom.join("hidden"), "h").unwrap();
        fs::create_dir_all(bottom.join("opq/old")).unwrap();
        fs::write(bottom.join("h1"), "linked").unwrap();
        fs::hard_link(bottom.join("h1"), bottom.join("h2")).unwrap();
        fs::write(bottom.join("mode"), "m").unwrap();
        fs::write(bottom.join("owner"), "o").unwrap();
        fs::write(bottom.join("same"), "s").unwrap();
        fs::create_dir(bottom.join("gone")).unwrap();
        fs::write(bottom.join("gone/x"), "x").unwrap();
        fs::write(bottom.join("to-dir"), "t").unwrap();
        fs::write(bottom.join("moved"), "mv").unwrap();
        nix::sys::stat::mknod(
            &top.join("hidden"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        fs::create_dir(top.join("opq")).unwrap();
        super::set_xattr(&top.join("opq"), b"trusted.overlay.opaque", b"y").unwrap();
        fs::write(top.join("opq/new"), "n").unwrap();

        let changes = |root: &Path| {
            fs::write(root.join("a/b/f"), "changed").unwrap();
            fs::write(root.join("a/new"), "new").unwrap();
            fs::set_permissions(root.join("mode"), fs::Permissions::from_mode(0o600)).unwrap();
            std::os::unix::fs::lchown(root.join("owner"), Some(7), Some(8)).unwrap();
            // Same mode again: still a copy-up.
            fs::set_permissions(root.join("same"), fs::Permissions::from_mode(0o644)).unwrap();
            fs::remove_dir_all(root.join("gone")).unwrap();
            fs::remove_file(root.join("to-dir")).unwrap();
            fs::create_dir(root.join("to-dir")).unwrap();
            fs::write(root.join("to-dir/in"), "in").unwrap();
            fs::rename(root.join("moved"), root.join("a/moved")).unwrap();
            fs::write(root.join("h1"), "written").unwrap();
            fs::create_dir_all(root.join("fresh/deep")).unwrap();
            std::os::unix::fs::symlink("/a/g", root.join("fresh/link")).unwrap();
            fs::hard_link(root.join("a/new"), root.join("fresh/new-link")).unwrap();
            fs::write(root.join("hidden"), "back").unwrap();
            fs::write(root.join("opq/new2"), "n2").unwrap();
        };

        let mut uppers = Vec::new();
        for snapshotter in [Snapshotter::Overlay, Snapshotter::Copy] {
            let base = dir.path().join(snapshotter.name());
            let (upper, work, merged) = (base.join("u"), base.join("w"), base.join("m"));
            for d in [&upper, &work, &merged] {
                fs::create_dir_all(d).unwrap();
            }
            std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        private_namespace().unwrap();
                        let mounted = overlay(
                            &[&top, &bottom],
                            Some((&upper, &work)),
                            &merged,
                            OverlayOptions {
                                userxattr: false,
                                snapshotter: Some(snapshotter),
                            },
                        )
                        .unwrap();
                        changes(&merged);
                        nix::mount::umount2(&merged, nix::mount::MntFlags::empty()).unwrap();
                        mounted.finish().unwrap();
                    })
                    .join()
                    .unwrap();
            });
            assert!(!work.join("root").exists(), "the copy is removed");
            uppers.push(listing(&upper));
        }
        assert_eq!(uppers[1], uppers[0]);
        // And it is what the changes should give.
        assert!(
            uppers[0].contains(&"gone char 0 0 0:0".to_owned()),
            "{:#?}",
            uppers[0]
        );
        assert!(
            uppers[0].contains(&"to-dir dir opaque=true 755 0:0".to_owned()),
            "{:#?}",
            uppers[0]
        );
    }
}
