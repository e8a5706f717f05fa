//! Overlay mounts made by the build process itself, for COPY, ADD and
//! WORKDIR steps and for reading `COPY --from` sources.
//!
//! The build enters a private mount namespace before it starts any thread
//! ([`enter_private_mount_namespace`]), so whatever it mounts disappears
//! with the process, even after `kill -9`, and never shows on the host.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::error::BuildError;

/// Moves this process into a new mount namespace whose mounts do not
/// propagate back to the host. Must run before any thread is started
/// (a multi-threaded process cannot unshare its filesystem attributes).
pub fn enter_private_mount_namespace() -> Result<(), BuildError> {
    kiln_rootfs::mount::private_namespace().map_err(|e| BuildError::Mount(e.to_string()))
}

/// A mount this build made at a directory (or file) of its own: an
/// overlayfs, or a bind of a source resolved inside its root; unmounted on
/// drop.
#[derive(Debug)]
pub struct Mounted {
    target: PathBuf,
    state: State,
}

/// What unmounting does.
enum State {
    /// A kernel mount, still in place.
    Kernel,
    /// An overlay, mounted by the kernel or made by copying
    /// ([`kiln_rootfs::mount::Snapshotter::Copy`]), to finish once
    /// unmounted.
    Overlay(kiln_rootfs::mount::Overlay),
    /// Unmounted (or handed to [`Mounted::unmount`]).
    Done,
    /// A mount an [`crate::Executor`] emulates without the kernel (the
    /// engine's tests): unmounting runs this, e.g. to record what was
    /// written as an overlay's upper directory would.
    Emulated(Box<dyn FnOnce() -> Result<(), BuildError> + Send + Sync>),
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Kernel => "Kernel",
            Self::Overlay(_) => "Overlay",
            Self::Done => "Done",
            Self::Emulated(_) => "Emulated",
        })
    }
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
        let overlay = kiln_rootfs::mount::overlay(
            &stack,
            upper,
            target,
            // In a user namespace (rootless) overlayfs keeps its marks in
            // user.overlay.* xattrs, the only ones root there may set.
            kiln_rootfs::mount::OverlayOptions {
                userxattr: kiln_rootfs::userns::rootless(),
                snapshotter: None,
            },
        )
        .map_err(|e| {
            // Only a forced overlay gets here for a refused mount (the
            // probe chooses the copy otherwise): say what the kernel must
            // allow.
            let hint = if kiln_rootfs::userns::rootless() {
                kiln_rootfs::userns::OVERLAY_NEEDS
            } else {
                ""
            };
            BuildError::Mount(format!("overlay at {}: {e}{hint}", target.display()))
        })?;
        Ok(Self {
            target: target.to_owned(),
            state: State::Overlay(overlay),
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
            state: State::Kernel,
        })
    }

    /// A mount at `target` that an executor emulates: `unmount` runs
    /// `finish`; dropping it does nothing more.
    pub fn emulated(
        target: &Path,
        finish: impl FnOnce() -> Result<(), BuildError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            target: target.to_owned(),
            state: State::Emulated(Box::new(finish)),
        }
    }

    /// Whether it is an overlay made by copying
    /// ([`kiln_rootfs::mount::Snapshotter::Copy`]): what is written to it
    /// reaches the upper directory only through [`Self::unmount`].
    pub fn is_copy(&self) -> bool {
        matches!(&self.state, State::Overlay(o) if o.snapshotter() == kiln_rootfs::mount::Snapshotter::Copy)
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
        let overlay = match std::mem::replace(&mut self.state, State::Done) {
            State::Kernel => None,
            State::Overlay(overlay) => Some(overlay),
            State::Done => return Ok(()),
            State::Emulated(finish) => return finish(),
        };
        if overlay
            .as_ref()
            .is_none_or(kiln_rootfs::mount::Overlay::is_mounted)
        {
            match umount2(&self.target, MntFlags::empty()) {
                Err(nix::errno::Errno::EBUSY) => umount2(&self.target, MntFlags::MNT_DETACH),
                other => other,
            }
            .map_err(|e| BuildError::Mount(format!("unmounting {}: {e}", self.target.display())))?;
        }
        overlay.map_or(Ok(()), |o| {
            o.finish()
                .map_err(|e| BuildError::Mount(format!("{}: {e}", self.target.display())))
        })
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let mounted = match &self.state {
            State::Kernel => true,
            State::Overlay(overlay) => overlay.is_mounted(),
            State::Done | State::Emulated(_) => false,
        };
        if mounted {
            let _ = nix::mount::umount2(&self.target, nix::mount::MntFlags::MNT_DETACH);
        }
    }
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
                        state: super::State::Kernel,
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
