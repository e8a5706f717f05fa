//! Bind mounts made from descriptors, and the one overlay mount of the
//! builder and the runtime ([`overlay`]).
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
}

/// Mounts an overlay of `stack` (lower directories, top first) with
/// `upper` and its `work` directory (which must exist and be empty) at
/// `target`; without an upper directory the mount is read-only (and
/// overlayfs then needs two lowers). Relative paths are resolved from the
/// current directory at the call.
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
pub fn overlay(
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
