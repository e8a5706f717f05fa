//! Filling a new volume with what the image has where it is mounted, as
//! Docker does (`copyExistingContents`): only into an empty volume, with
//! owners, modes and modification times kept, symlinks copied as links
//! (never followed), special files made again. The source is the
//! container's root (the overlay, before the volume hides it), its top
//! directory already resolved inside that root; hard links become copies.
//! The check and the copy hold an flock on the volume's directory.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::Path;

use nix::sys::stat::{Mode, SFlag, UtimensatFlags, mknod, utimensat};
use nix::sys::time::TimeSpec;

/// Copies the contents of directory `from` into `to` when `to` is empty,
/// and gives `to` the owner and mode of `from`; does nothing otherwise.
pub(crate) fn fill_volume(from: &Path, to: &Path) -> io::Result<()> {
    // Two containers starting on one new volume: the second waits for the
    // first's copy, then finds the volume filled.
    let held = fs::File::open(to)?;
    held.lock()?;
    if fs::read_dir(to)?.next().is_some() {
        return Ok(());
    }
    let top = fs::metadata(from)?;
    copy_children(from, to)?;
    set_attributes(to, &top)
}

fn copy_children(from: &Path, to: &Path) -> io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let source = entry.path();
        let target = to.join(entry.file_name());
        let meta = fs::symlink_metadata(&source)?;
        let kind = meta.file_type();
        if kind.is_dir() {
            fs::create_dir(&target)?;
            copy_children(&source, &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&source)?, &target)?;
        } else if kind.is_file() {
            fs::copy(&source, &target)?;
        } else if kind.is_fifo() || kind.is_char_device() || kind.is_block_device() {
            let flag = if kind.is_fifo() {
                SFlag::S_IFIFO
            } else if kind.is_char_device() {
                SFlag::S_IFCHR
            } else {
                SFlag::S_IFBLK
            };
            mknod(
                &target,
                flag,
                Mode::from_bits_truncate(meta.mode() & 0o7777),
                meta.rdev(),
            )?;
        } else {
            // A socket means nothing without its listener.
            continue;
        }
        set_attributes(&target, &meta)?;
    }
    Ok(())
}

/// Owner, then mode (a chown clears setuid bits), then times; a symlink
/// gets only its owner and times.
fn set_attributes(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid()))?;
    let link = meta.file_type().is_symlink();
    if !link {
        fs::set_permissions(path, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    let accessed = TimeSpec::new(meta.atime(), meta.atime_nsec());
    let modified = TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &accessed,
        &modified,
        UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}
