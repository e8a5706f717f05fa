//! Overlay mounts made by the build process itself, for COPY, ADD and
//! WORKDIR steps and for reading `COPY --from` sources.
//!
//! The build enters a private mount namespace before it starts any thread
//! ([`enter_private_mount_namespace`]), so whatever it mounts disappears
//! with the process, even after `kill -9`, and never shows on the host.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::BuildError;

// The new mount API (Linux 5.2+; `lowerdir+` needs 6.8+). libc has the
// syscall numbers but not these flag values.
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

/// Moves this process into a new mount namespace whose mounts do not
/// propagate back to the host. Must run before any thread is started
/// (a multi-threaded process cannot unshare its filesystem attributes).
pub fn enter_private_mount_namespace() -> Result<(), BuildError> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| BuildError::Mount(format!("unshare(CLONE_NEWNS): {e}")))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| BuildError::Mount(format!("making / private: {e}")))?;
    Ok(())
}

/// A mount this build made at a directory (or file) of its own: an
/// overlayfs, or a bind of a source resolved inside its root; unmounted on
/// drop.
#[derive(Debug)]
pub struct Mounted {
    target: PathBuf,
    mounted: bool,
}

impl Mounted {
    /// Mounts `lowers` (base first) with `upper` (and its sibling `work`
    /// directory, which must exist and be empty) at `target`. Without an
    /// upper directory the mount is read-only; `empty` is then an empty
    /// directory used as a second lower when there is only one, because
    /// overlayfs needs two lowers without an upper. With no lowers at all,
    /// `empty` is the only lower.
    pub fn overlay(
        lowers: &[PathBuf],
        upper: Option<(&Path, &Path)>,
        empty: &Path,
        target: &Path,
    ) -> Result<Self, BuildError> {
        // overlayfs lists lowers top first.
        let mut stack: Vec<&Path> = lowers.iter().rev().map(PathBuf::as_path).collect();
        if stack.is_empty() || (upper.is_none() && stack.len() == 1) {
            stack.push(empty);
        }
        match mount_new_api(&stack, upper, target) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                mount_classic(&stack, upper, target)
                    .map_err(|e| BuildError::Mount(format!("{}: {e}", target.display())))?;
            }
            Err(e) => {
                return Err(BuildError::Mount(format!(
                    "overlay at {}: {e}",
                    target.display()
                )));
            }
        }
        Ok(Self {
            target: target.to_owned(),
            mounted: true,
        })
    }

    /// Bind-mounts `source` (a descriptor of a file or directory resolved
    /// inside its root, see [`kiln_rootfs::Root`]) on `target`, an existing
    /// file or directory of the build's own of the same kind, from
    /// descriptors (no path of the source is resolved again).
    pub fn bind(source: &OwnedFd, target: &Path, read_only: bool) -> Result<Self, BuildError> {
        let fail =
            |e: io::Error| BuildError::Mount(format!("binding on {}: {e}", target.display()));
        let to = nix::fcntl::open(
            target,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| fail(e.into()))?;
        kiln_rootfs::mount::bind(
            source.as_fd(),
            to.as_fd(),
            kiln_rootfs::mount::BindOptions {
                read_only,
                recursive: false,
            },
        )
        .map_err(fail)?;
        Ok(Self {
            target: target.to_owned(),
            mounted: true,
        })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.target
    }

    /// Unmounts now, reporting failure (drop unmounts quietly).
    ///
    /// EBUSY is not a failure: another thread forking (a RUN's container
    /// init, a network helper) gives its child a copy of every descriptor
    /// until exec closes them, so a file this build opened in the mount
    /// may be held for an instant by a process that never uses it. Only
    /// this build writes through its mounts and it has finished, so the
    /// mount is detached, and the kernel drops it when that copy closes
    /// (containerd retries EBUSY for the same reason).
    pub fn unmount(mut self) -> Result<(), BuildError> {
        use nix::mount::{MntFlags, umount2};
        self.mounted = false;
        match umount2(&self.target, MntFlags::empty()) {
            Err(nix::errno::Errno::EBUSY) => umount2(&self.target, MntFlags::MNT_DETACH),
            other => other,
        }
        .map_err(|e| BuildError::Mount(format!("unmounting {}: {e}", self.target.display())))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.mounted {
            let _ = nix::mount::umount2(&self.target, nix::mount::MntFlags::MNT_DETACH);
        }
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
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_STRING,
            key.as_ptr(),
            value.as_ptr(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn fsconfig_flag(fs: &OwnedFd, key: &str) -> io::Result<()> {
    let key = cstring(key.as_bytes())?;
    // SAFETY: fs is an open fs context; key is NUL-terminated and outlives
    // the call; a flag takes no value.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_FLAG,
            key.as_ptr(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Mounts with fsopen/fsconfig/fsmount, adding lowers one by one
/// (`lowerdir+`), so any number of layers fits.
fn mount_new_api(stack: &[&Path], upper: Option<(&Path, &Path)>, target: &Path) -> io::Result<()> {
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
    if let Some((upper, work)) = upper {
        fsconfig_string(&fs, "upperdir", upper.as_os_str().as_bytes())?;
        fsconfig_string(&fs, "workdir", work.as_os_str().as_bytes())?;
        // See VOLATILE; a kernel without the option mounts without it.
        let _ = fsconfig_flag(&fs, "volatile");
    }
    // SAFETY: fs is an open fs context; the null key/value are what
    // FSCONFIG_CMD_CREATE takes.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let attrs: libc::c_uint = if upper.is_none() {
        libc::c_uint::try_from(libc::MOUNT_ATTR_RDONLY).unwrap_or(1)
    } else {
        0
    };
    // SAFETY: fs is a configured fs context.
    let mnt = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) };
    if mnt < 0 {
        return Err(io::Error::last_os_error());
    }
    let raw = i32::try_from(mnt).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: fsmount returned a new file descriptor we own.
    let mnt = unsafe { OwnedFd::from_raw_fd(raw) };
    let empty = cstring(b"")?;
    let to = cstring(target.as_os_str().as_bytes())?;
    // SAFETY: mnt is a detached mount; both paths are NUL-terminated.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The classic mount(2) call, limited by the page-sized option string.
fn mount_classic(stack: &[&Path], upper: Option<(&Path, &Path)>, target: &Path) -> io::Result<()> {
    let mut options = b"lowerdir=".to_vec();
    for (i, lower) in stack.iter().enumerate() {
        if i > 0 {
            options.push(b':');
        }
        options.extend_from_slice(lower.as_os_str().as_bytes());
    }
    if let Some((upper, work)) = upper {
        options.extend_from_slice(b",upperdir=");
        options.extend_from_slice(upper.as_os_str().as_bytes());
        options.extend_from_slice(b",workdir=");
        options.extend_from_slice(work.as_os_str().as_bytes());
    }
    let flags = if upper.is_none() {
        nix::mount::MsFlags::MS_RDONLY
    } else {
        nix::mount::MsFlags::empty()
    };
    let options = std::ffi::OsStr::from_bytes(&options);
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        flags,
        Some(options),
    )
    .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::Mounted;

    /// A file of the mount still open elsewhere (as in a child between
    /// fork and exec) does not fail the unmount, and the mount is gone.
    #[test]
    fn unmount_detaches_a_mount_held_open() {
        if !kiln_testkit::root("mounts a tmpfs") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("m");
        fs::create_dir(&target).unwrap();
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // This thread's own mount namespace: nothing shows outside.
                    super::enter_private_mount_namespace().unwrap();
                    nix::mount::mount(
                        Some("tmpfs"),
                        &target,
                        Some("tmpfs"),
                        nix::mount::MsFlags::empty(),
                        None::<&str>,
                    )
                    .unwrap();
                    fs::write(target.join("f"), b"kept").unwrap();
                    let held = fs::File::open(target.join("f")).unwrap();
                    let mounted = Mounted {
                        target: target.clone(),
                        mounted: true,
                    };
                    mounted.unmount().unwrap();
                    let table = fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
                    assert!(
                        !table.contains(target.to_str().unwrap()),
                        "still mounted:\n{table}"
                    );
                    assert!(!target.join("f").exists());
                    drop(held);
                })
                .join()
                .unwrap();
        });
    }
}
