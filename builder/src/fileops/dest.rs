//! Resolving destinations inside the container root: cleaned path
//! components, the directories created on the way, and clearing a target
//! for a new file.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use kiln_parser::values::Chmod;
use kiln_rootfs::Root;
use kiln_rootfs::root::display;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use super::{CopyOptions, Owner, PARENT_MODE};
use crate::error::BuildError;

/// A path's components with `.` removed and `..` clamped at the root.
pub(super) fn clean(path: &str) -> Vec<OsString> {
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

pub(super) fn dest_err(op: &'static str, path: &str, e: impl Into<io::Error>) -> BuildError {
    BuildError::Dest {
        op,
        path: path.to_owned(),
        source: e.into(),
    }
}

/// The container root every destination path is resolved in, with the
/// mode of the directories a copy creates on the way.
pub(super) struct DestRoot<'r> {
    pub(super) root: &'r Root,
    pub(super) dir_mode: u32,
}

impl<'r> DestRoot<'r> {
    /// The destination of a copy with `opts`: fsutil's `Copy` creates
    /// missing directories with the copy's octal mode (its `Mode`, which a
    /// symbolic `--chmod` does not set) and 0755 without one; Go's
    /// `os.FileMode` keeps only the permission bits of it.
    pub(super) fn new(root: &'r Root, opts: &CopyOptions) -> Self {
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
    pub(super) fn mkdir_all(
        &self,
        comps: &[OsString],
        owner: Option<Owner>,
    ) -> Result<OwnedFd, BuildError> {
        self.mkdir_all_mode(comps, self.dir_mode, owner)
    }

    /// [`mkdir_all`](Self::mkdir_all) with the mode of created directories.
    pub(super) fn mkdir_all_mode(
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
    pub(super) fn file_target(
        &self,
        dest: &[OsString],
        dest_is_dir: bool,
        name: &str,
    ) -> Vec<OsString> {
        let mut target = dest.to_vec();
        if dest_is_dir || dest.is_empty() || self.is_dir(dest) {
            target.extend(clean(name));
        }
        target
    }

    /// The (created) parent directory of `target`, its last component and
    /// the container path for messages.
    pub(super) fn parent_of(
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
pub(super) fn clear_target(pfd: &OwnedFd, base: &OsStr, shown: &str) -> Result<(), BuildError> {
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
pub(super) fn create_file(pfd: &OwnedFd, base: &OsStr, shown: &str) -> Result<OwnedFd, BuildError> {
    clear_target(pfd, base, shown)?;
    openat(
        pfd.as_fd(),
        base,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| dest_err("creating file", shown, e))
}
