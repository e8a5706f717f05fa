//! Bind mounts made from descriptors.
//!
//! A source resolved inside its root ([`crate::Root`]) is mounted from its
//! descriptor: `open_tree(OPEN_TREE_CLONE)` clones the very mount tree the
//! descriptor is on, `mount_setattr` makes the clone read-only before
//! anyone can see it, and `move_mount` attaches it to the target's
//! descriptor. No path string is resolved again, so a symlink swapped in
//! after the resolution (or a dangling one, which `mount(2)` of a path
//! would follow on the host) changes nothing.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

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
