//! Bind mounts made from descriptors, and the one overlay mount of the
//! builder and the runtime ([`overlay`], with its fallback where the
//! kernel refuses overlayfs: [`Snapshotter::Copy`]).
//!
//! A source resolved inside its root ([`crate::Root`]) is mounted from its
//! descriptor: `open_tree(OPEN_TREE_CLONE)` clones the very mount tree the
//! descriptor is on, `mount_setattr` makes the clone read-only before
//! anyone can see it, and `move_mount` attaches it to the target's
//! descriptor. No path string is resolved again, so a symlink swapped in
//! after the resolution (or a dangling one, which `mount(2)` of a path
//! would follow on the host) changes nothing.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

// The new mount API (Linux 5.2+; `lowerdir+` needs 6.8+). libc has the
// syscall numbers but not these flag values.
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn empty() -> *const libc::c_char {
    c"".as_ptr()
}

/// How [`bind`] mounts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BindOptions {
    /// Read-only (and the clone is read-only before it is attached).
    pub read_only: bool,
    /// Also clone the mounts below the source (`MS_REC`).
    pub recursive: bool,
}

/// Mounts the file or directory `source` (a descriptor, usually `O_PATH`,
/// from [`crate::Root::open_at`]) on `target` (a descriptor of an existing
/// file or directory of the same kind). Needs Linux 5.12 (`mount_setattr`);
/// there is deliberately no fallback to `mount(2)` of paths.
pub fn bind(
    source: BorrowedFd<'_>,
    target: BorrowedFd<'_>,
    options: BindOptions,
) -> io::Result<()> {
    let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    flags |= libc::c_uint::try_from(libc::AT_EMPTY_PATH).unwrap_or(0);
    if options.recursive {
        flags |= libc::c_uint::try_from(libc::AT_RECURSIVE).unwrap_or(0);
    }
    // SAFETY: open_tree on a valid descriptor with an empty, NUL-terminated
    // path; it returns a new descriptor or -1.
    let tree =
        check(unsafe { libc::syscall(libc::SYS_open_tree, source.as_raw_fd(), empty(), flags) })?;
    let tree = i32::try_from(tree).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: open_tree returned a new descriptor we own.
    let tree = unsafe { OwnedFd::from_raw_fd(tree) };
    if options.read_only {
        let attr = libc::mount_attr {
            attr_set: libc::MOUNT_ATTR_RDONLY,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        let mut at = libc::AT_EMPTY_PATH;
        if options.recursive {
            at |= libc::AT_RECURSIVE;
        }
        // SAFETY: mount_setattr on the detached tree we own, with a valid
        // mount_attr of the size passed.
        check(unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                tree.as_raw_fd(),
                empty(),
                at,
                &raw const attr,
                size_of::<libc::mount_attr>(),
            )
        })?;
    }
    // SAFETY: move_mount from the detached tree to the target descriptor,
    // both named by empty paths.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty(),
            target.as_raw_fd(),
            empty(),
            libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
        )
    })?;
    Ok(())
}

/// Moves the calling thread (or, before any other thread exists, the
/// process) into a new mount namespace whose mounts do not propagate back
/// to the host: whatever is mounted there goes with it, even on
/// `kill -9`. A process with several threads can do this only on a
/// thread of its own (its files are then shared no more).
pub fn private_namespace() -> io::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("unshare(CLONE_NEWNS): {e}"),
        )
    })?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("making / private: {e}")))
}

/// How [`overlay`] mounts, beside its directories.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OverlayOptions {
    /// In a user namespace overlayfs may not use `trusted.*` xattrs; with
    /// `userxattr` it keeps its opaque and redirect marks in
    /// `user.overlay.*` instead (rootless).
    pub userxattr: bool,
    /// The snapshotter to use; `None`: the one [`snapshotter`] chooses for
    /// the file system of the upper directory (or of the target).
    pub snapshotter: Option<Snapshotter>,
}

/// How layers become a root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshotter {
    /// The kernel's overlayfs.
    Overlay,
    /// A copy of the merged layers, whose changes are turned back into an
    /// upper directory of overlayfs form afterwards (`copy.rs`).
    Copy,
}

impl Snapshotter {
    /// Its name in `KILN_SNAPSHOTTER` and `kiln info`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Overlay => "overlay",
            Self::Copy => "copy",
        }
    }
}

/// The snapshotter used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The one used.
    pub snapshotter: Snapshotter,
    /// Why: forced by [`SNAPSHOTTER_ENV`], or what the probe found.
    pub reason: String,
}

/// The environment variable that forces a snapshotter: `overlay`, `copy`
/// or `auto` (the default: overlay where the probe mounts one).
pub const SNAPSHOTTER_ENV: &str = "KILN_SNAPSHOTTER";

/// Set to `1`, the probe of [`snapshotter`] fails as if the kernel
/// refused overlayfs (a test hook).
pub const PROBE_REFUSED_ENV: &str = "KILN_TEST_OVERLAY_REFUSED";

/// Answers of [`snapshotter`] by file system (device) and `userxattr`.
static CHOSEN: std::sync::Mutex<Vec<(u64, bool, Choice)>> = std::sync::Mutex::new(Vec::new());

/// The snapshotter for layers on the file system of `dir` (a directory
/// kiln may write in): [`SNAPSHOTTER_ENV`] if set, else overlay when a
/// probe mounts one there (a small overlay with a whiteout, in a private
/// mount namespace of a thread of its own), else copy. The probe runs
/// once per process and file system.
///
/// # Errors
///
/// [`SNAPSHOTTER_ENV`] names no snapshotter, or `dir` cannot be read.
pub fn snapshotter(dir: &Path, userxattr: bool) -> io::Result<Choice> {
    let forced = std::env::var_os(SNAPSHOTTER_ENV).unwrap_or_default();
    let forced = match forced.as_bytes() {
        b"" | b"auto" => None,
        b"overlay" => Some(Snapshotter::Overlay),
        b"copy" => Some(Snapshotter::Copy),
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{SNAPSHOTTER_ENV}={}: unknown snapshotter (overlay, copy or auto)",
                    String::from_utf8_lossy(other)
                ),
            ));
        }
    };
    if let Some(snapshotter) = forced {
        return Ok(Choice {
            snapshotter,
            reason: format!("{SNAPSHOTTER_ENV}={}", snapshotter.name()),
        });
    }
    let dev = std::os::unix::fs::MetadataExt::dev(
        &std::fs::metadata(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", dir.display())))?,
    );
    let mut chosen = CHOSEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, _, choice)) = chosen.iter().find(|(d, u, _)| *d == dev && *u == userxattr) {
        return Ok(choice.clone());
    }
    let choice = match probe(dir, userxattr) {
        Ok(()) => Choice {
            snapshotter: Snapshotter::Overlay,
            reason: "overlayfs mounts here".to_owned(),
        },
        Err(e) => Choice {
            snapshotter: Snapshotter::Copy,
            reason: format!("overlayfs cannot be mounted here: {e}"),
        },
    };
    chosen.push((dev, userxattr, choice.clone()));
    Ok(choice)
}

/// Mounts a small overlay in a fresh directory under `dir`, writes to it
/// and removes a lower file (a whiteout), in a mount namespace of a thread
/// of its own (so nothing shows outside, whoever calls).
///
/// [`PROBE_REFUSED_ENV`] makes it fail as a refused mount would (for
/// tests: a kernel that refuses overlayfs where the store's whiteouts can
/// still be made is hard to come by).
pub fn probe(dir: &Path, userxattr: bool) -> io::Result<()> {
    if std::env::var_os(PROBE_REFUSED_ENV).is_some_and(|v| v == "1") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{PROBE_REFUSED_ENV}=1: the mount is refused"),
        ));
    }
    let base = tempdir_in(dir)?;
    let result = (|| {
        let d = |name: &str| -> io::Result<std::path::PathBuf> {
            let path = base.join(name);
            std::fs::create_dir(&path)?;
            Ok(path)
        };
        let (lower, upper, work, merged) = (d("l")?, d("u")?, d("w")?, d("m")?);
        std::fs::write(lower.join("f"), b"")?;
        std::thread::spawn(move || -> io::Result<()> {
            private_namespace()?;
            overlay_kernel(
                &[&lower],
                Some((&upper, &work)),
                &merged,
                OverlayOptions {
                    userxattr,
                    snapshotter: Some(Snapshotter::Overlay),
                },
            )?;
            std::fs::write(merged.join("new"), b"")?;
            std::fs::remove_file(merged.join("f"))?;
            Ok(())
        })
        .join()
        .map_err(|_| io::Error::other("the probe's thread panicked"))?
    })();
    // Overlayfs leaves its work/work with mode 0.
    let _ = std::fs::set_permissions(
        base.join("w/work"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    );
    let _ = std::fs::remove_dir_all(&base);
    result
}

/// A new directory under `dir` named for this process.
fn tempdir_in(dir: &Path) -> io::Result<std::path::PathBuf> {
    static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!(".kiln-probe-{}-{n}", std::process::id()));
    std::fs::create_dir(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", path.display())))?;
    Ok(path)
}

/// A root [`overlay`] made: a kernel mount, or a copy (see
/// [`Snapshotter::Copy`]) to [`finish`](Overlay::finish) once its user is
/// done and the target is unmounted.
#[derive(Debug)]
#[must_use]
pub struct Overlay {
    copy: Option<Copied>,
}

#[derive(Debug)]
struct Copied {
    lowers: Vec<std::path::PathBuf>,
    /// Upper and work directory; without them the copy is the target.
    upper: Option<(std::path::PathBuf, std::path::PathBuf)>,
    target: std::path::PathBuf,
    userxattr: bool,
}

impl Overlay {
    /// The snapshotter that made it.
    pub fn snapshotter(&self) -> Snapshotter {
        if self.copy.is_some() {
            Snapshotter::Copy
        } else {
            Snapshotter::Overlay
        }
    }

    /// Whether the target is a kernel mount to unmount (a copy without an
    /// upper directory is not mounted at all).
    pub fn is_mounted(&self) -> bool {
        self.copy.as_ref().is_none_or(|c| c.upper.is_some())
    }

    /// After the target is unmounted: a copy's changes go into the upper
    /// directory in overlayfs form ([`finish_copy`]), a read-only copy is
    /// removed. Nothing for a kernel overlay.
    ///
    /// # Errors
    ///
    /// Reading the copy or writing the upper directory failed.
    pub fn finish(self) -> io::Result<()> {
        let Some(copy) = self.copy else {
            return Ok(());
        };
        match &copy.upper {
            Some((upper, work)) => {
                let lowers: Vec<&Path> = copy
                    .lowers
                    .iter()
                    .map(std::path::PathBuf::as_path)
                    .collect();
                finish_copy(
                    &lowers,
                    upper,
                    work,
                    OverlayOptions {
                        userxattr: copy.userxattr,
                        snapshotter: None,
                    },
                )
            }
            None => crate::copy::clear(&copy.target),
        }
    }
}

/// Records in `upper` what was done to the copy a [`Snapshotter::Copy`]
/// overlay of `stack` (top first) made under `work`, as overlayfs would
/// have written it, and removes the copy; nothing when `work` holds no
/// copy. For a caller that is not the process that mounted (the runtime's
/// init mounts, its parent finishes once the container is gone).
///
/// # Errors
///
/// Reading the copy or writing the upper directory failed.
pub fn finish_copy(
    stack: &[&Path],
    upper: &Path,
    work: &Path,
    options: OverlayOptions,
) -> io::Result<()> {
    let opaque = if options.userxattr {
        "user.overlay.opaque"
    } else {
        "trusted.overlay.opaque"
    };
    crate::copy::finish(stack, upper, work, opaque)
        .map_err(|e| io::Error::new(e.kind(), format!("recording the copy's changes: {e}")))
}

/// Mounts an overlay of `stack` (lower directories, top first) with
/// `upper` and its `work` directory (which must exist and be empty) at
/// `target`; without an upper directory the mount is read-only (and
/// overlayfs then needs two lowers). Relative paths are resolved from the
/// current directory at the call.
///
/// Where overlayfs cannot be mounted ([`snapshotter`] chooses, or
/// `options` says), the root is a copy of the merged layers: under
/// `work`, bound at `target`, and recorded into `upper` by
/// [`Overlay::finish`]; without an upper directory, copied into `target`
/// itself (which is then not a mount).
///
/// An upper directory is mounted `volatile` where the kernel knows it
/// (5.10+): the upper directory is packed into a layer or thrown away once
/// its user is done, never needed after a crash, so the overlay skips
/// every sync (the container's own fsyncs, and the sync of the whole upper
/// file system that unmounting would do).
///
/// The new mount API adds lowers one by one (`lowerdir+`, Linux 6.8+), so
/// any number fits; older kernels get `mount(2)`, whose option string is
/// limited to a page (callers with many layers pass short relative paths).
///
/// # Errors
///
/// The mount (or the copy) failed.
pub fn overlay(
    stack: &[&Path],
    upper: Option<(&Path, &Path)>,
    target: &Path,
    options: OverlayOptions,
) -> io::Result<Overlay> {
    let snapshotter = if let Some(s) = options.snapshotter {
        s
    } else {
        let probe_dir = upper
            .and_then(|(u, _)| u.parent())
            .or_else(|| target.parent())
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        snapshotter(probe_dir, options.userxattr)?.snapshotter
    };
    if snapshotter == Snapshotter::Overlay {
        overlay_kernel(stack, upper, target, options)?;
        return Ok(Overlay { copy: None });
    }
    let copied = |e: io::Error| io::Error::new(e.kind(), format!("copying the layers: {e}"));
    match upper {
        Some((upper_dir, work)) => {
            let root = crate::copy::working_root(work);
            std::fs::create_dir(&root).map_err(|e| {
                io::Error::new(e.kind(), format!("creating {}: {e}", root.display()))
            })?;
            let mut all = vec![upper_dir];
            all.extend_from_slice(stack);
            crate::copy::materialize(&all, &root, Some(work)).map_err(copied)?;
            let open = |path: &Path| {
                nix::fcntl::open(
                    path,
                    nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .map_err(|e| {
                    io::Error::new(
                        io::Error::from(e).kind(),
                        format!("opening {}: {e}", path.display()),
                    )
                })
            };
            let (from, to) = (open(&root)?, open(target)?);
            bind(
                std::os::fd::AsFd::as_fd(&from),
                std::os::fd::AsFd::as_fd(&to),
                BindOptions::default(),
            )
            .map_err(|e| io::Error::new(e.kind(), format!("binding the copy: {e}")))?;
        }
        None => crate::copy::materialize(stack, target, None).map_err(copied)?,
    }
    Ok(Overlay {
        copy: Some(Copied {
            lowers: stack.iter().map(|p| p.to_path_buf()).collect(),
            upper: upper.map(|(u, w)| (u.to_path_buf(), w.to_path_buf())),
            target: target.to_path_buf(),
            userxattr: options.userxattr,
        }),
    })
}

/// The kernel's overlayfs, by whichever API the kernel has.
fn overlay_kernel(
    stack: &[&Path],
    upper: Option<(&Path, &Path)>,
    target: &Path,
    options: OverlayOptions,
) -> io::Result<()> {
    match overlay_new_api(stack, upper, target, options) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            overlay_classic(stack, upper, target, options)
        }
        other => other,
    }
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn fsconfig_string(fs: &OwnedFd, key: &str, value: &[u8]) -> io::Result<()> {
    let key = cstring(key.as_bytes())?;
    let value = cstring(value)?;
    // SAFETY: fs is an open fs context; key and value are NUL-terminated
    // and outlive the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_STRING,
            key.as_ptr(),
            value.as_ptr(),
            0,
        )
    })?;
    Ok(())
}

fn fsconfig_flag(fs: &OwnedFd, key: &str) -> io::Result<()> {
    let key = cstring(key.as_bytes())?;
    // SAFETY: fs is an open fs context; key is NUL-terminated and outlives
    // the call; a flag takes no value.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_FLAG,
            key.as_ptr(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    })?;
    Ok(())
}

/// `fsopen`/`fsconfig`/`fsmount`/`move_mount`; ENOSYS where the kernel lacks the
/// API or `lowerdir+`.
fn overlay_new_api(
    stack: &[&Path],
    upper: Option<(&Path, &Path)>,
    target: &Path,
    options: OverlayOptions,
) -> io::Result<()> {
    let name = cstring(b"overlay")?;
    // SAFETY: name is NUL-terminated.
    let fd = unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let raw = i32::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: fsopen returned a new file descriptor we own.
    let fs = unsafe { OwnedFd::from_raw_fd(raw) };
    for lower in stack {
        if let Err(e) = fsconfig_string(&fs, "lowerdir+", lower.as_os_str().as_bytes()) {
            // Kernels before 6.8 know fsopen but not `lowerdir+`.
            if e.raw_os_error() == Some(libc::EINVAL) {
                return Err(io::Error::from_raw_os_error(libc::ENOSYS));
            }
            return Err(e);
        }
    }
    if options.userxattr {
        fsconfig_flag(&fs, "userxattr")?;
    }
    if let Some((upper, work)) = upper {
        fsconfig_string(&fs, "upperdir", upper.as_os_str().as_bytes())?;
        fsconfig_string(&fs, "workdir", work.as_os_str().as_bytes())?;
        // A kernel without the option mounts without it.
        let _ = fsconfig_flag(&fs, "volatile");
    }
    // SAFETY: fs is an open fs context; the null key/value are what
    // FSCONFIG_CMD_CREATE takes.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    })?;
    let attrs: libc::c_uint = if upper.is_none() {
        libc::c_uint::try_from(libc::MOUNT_ATTR_RDONLY).unwrap_or(1)
    } else {
        0
    };
    // SAFETY: fs is a configured fs context.
    let mnt =
        check(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) })?;
    let raw = i32::try_from(mnt).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: fsmount returned a new file descriptor we own.
    let mnt = unsafe { OwnedFd::from_raw_fd(raw) };
    let to = cstring(target.as_os_str().as_bytes())?;
    // SAFETY: mnt is a detached mount; both paths are NUL-terminated.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            empty(),
            libc::AT_FDCWD,
            to.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })?;
    Ok(())
}

/// The classic mount(2) call, limited by the page-sized option string.
fn overlay_classic(
    stack: &[&Path],
    upper: Option<(&Path, &Path)>,
    target: &Path,
    options: OverlayOptions,
) -> io::Result<()> {
    let mut data = b"lowerdir=".to_vec();
    for (i, lower) in stack.iter().enumerate() {
        if i > 0 {
            data.push(b':');
        }
        data.extend_from_slice(lower.as_os_str().as_bytes());
    }
    if let Some((upper, work)) = upper {
        data.extend_from_slice(b",upperdir=");
        data.extend_from_slice(upper.as_os_str().as_bytes());
        data.extend_from_slice(b",workdir=");
        data.extend_from_slice(work.as_os_str().as_bytes());
    }
    if options.userxattr {
        data.extend_from_slice(b",userxattr");
    }
    let flags = if upper.is_none() {
        nix::mount::MsFlags::MS_RDONLY
    } else {
        nix::mount::MsFlags::empty()
    };
    let mount = |data: &[u8]| {
        nix::mount::mount(
            Some("overlay"),
            target,
            Some("overlay"),
            flags,
            Some(std::ffi::OsStr::from_bytes(data)),
        )
        .map_err(io::Error::from)
    };
    if upper.is_some() {
        // Kernels before 5.10 refuse the option: mount without it.
        let mut volatile = data.clone();
        volatile.extend_from_slice(b",volatile");
        if mount(&volatile).is_ok() {
            return Ok(());
        }
    }
    mount(&data)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::{OverlayOptions, overlay_classic, overlay_new_api};

    type Mount = fn(&[&Path], Option<(&Path, &Path)>, &Path, OverlayOptions) -> std::io::Result<()>;

    /// The probe mounts an overlay on a plain directory, and finds that
    /// the kernel refuses one whose upper directory is on overlayfs (a
    /// store inside a container's root); the choice is then the copy.
    #[test]
    fn the_probe_finds_where_overlayfs_cannot_be_mounted() {
        if !kiln_testkit::root("mounts overlays") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        super::probe(dir.path(), false).unwrap();
        let d = |name: &str| {
            let path = dir.path().join(name);
            fs::create_dir(&path).unwrap();
            path
        };
        let (lower, upper, work, merged) = (d("l"), d("u"), d("w"), d("m"));
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    super::private_namespace().unwrap();
                    super::overlay_kernel(
                        &[&lower],
                        Some((&upper, &work)),
                        &merged,
                        OverlayOptions::default(),
                    )
                    .unwrap();
                    let err = super::probe(&merged, false).unwrap_err();
                    assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{err}");
                    let choice = super::snapshotter(&merged, false).unwrap();
                    assert_eq!(choice.snapshotter, super::Snapshotter::Copy);
                    assert!(
                        choice
                            .reason
                            .starts_with("overlayfs cannot be mounted here: "),
                        "{}",
                        choice.reason
                    );
                    // Asked again, the answer is remembered.
                    assert_eq!(super::snapshotter(&merged, false).unwrap(), choice);
                })
                .join()
                .unwrap();
        });
    }

    /// Both ways of mounting (the new API where the kernel has
    /// `lowerdir+`, mount(2) before 6.8) give the same overlay: the top
    /// lower shadows the bottom one, writes land in the upper directory,
    /// and a mount without an upper directory is read-only.
    #[test]
    fn overlays_from_either_api_stack_lowers_and_write_to_the_upper() {
        if !kiln_testkit::root("mounts overlays") {
            return;
        }
        let ways: [(&str, Mount); 2] =
            [("new API", overlay_new_api), ("mount(2)", overlay_classic)];
        for (way, mount) in ways {
            let dir = tempfile::tempdir().unwrap();
            let d = |name: &str| {
                let path = dir.path().join(name);
                fs::create_dir(&path).unwrap();
                path
            };
            let (bottom, top, upper, work) = (d("bottom"), d("top"), d("upper"), d("work"));
            let (rw, ro) = (d("rw"), d("ro"));
            fs::write(bottom.join("f"), "bottom").unwrap();
            fs::write(bottom.join("b"), "only bottom").unwrap();
            fs::write(top.join("f"), "top").unwrap();
            std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        // This thread's own mount namespace: nothing shows
                        // outside, and the mounts go with the thread.
                        super::private_namespace().unwrap();
                        let stack = [top.as_path(), bottom.as_path()];
                        match mount(
                            &stack,
                            Some((&upper, &work)),
                            &rw,
                            OverlayOptions::default(),
                        ) {
                            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                                // A kernel before 6.8: the classic way serves.
                                return;
                            }
                            other => other.unwrap(),
                        }
                        assert_eq!(fs::read_to_string(rw.join("f")).unwrap(), "top", "{way}");
                        assert_eq!(fs::read_to_string(rw.join("b")).unwrap(), "only bottom");
                        fs::write(rw.join("new"), "written").unwrap();
                        assert_eq!(fs::read_to_string(upper.join("new")).unwrap(), "written");
                        mount(&stack, None, &ro, OverlayOptions::default()).unwrap();
                        assert_eq!(fs::read_to_string(ro.join("f")).unwrap(), "top", "{way}");
                        let err = fs::write(ro.join("x"), "no").unwrap_err();
                        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{way}");
                    })
                    .join()
                    .unwrap();
            });
            assert!(!rw.join("f").exists(), "{way}: the mount leaked out");
        }
    }
}
