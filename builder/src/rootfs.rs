//! Paths inside a container root, resolved as if the root were `/`: a
//! symlink in the image that points to `/etc` or `../../..` never leads out.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};

use crate::error::BuildError;

fn open_root(root: &Path) -> Result<OwnedFd, BuildError> {
    let file = File::open(root).map_err(|e| BuildError::io(root, e))?;
    Ok(OwnedFd::from(file))
}

/// Calls `f` again (a bounded number of times) while it fails with
/// `EAGAIN`/`EINTR`, which openat2 returns when a concurrent rename makes
/// `RESOLVE_IN_ROOT` unsure.
pub(crate) fn retry<T>(mut f: impl FnMut() -> nix::Result<T>) -> nix::Result<T> {
    let mut tries = 0;
    loop {
        match f() {
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) if tries < 16 => tries += 1,
            other => return other,
        }
    }
}

fn open_in(root: &OwnedFd, rel: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    retry(|| {
        openat2(
            root.as_fd(),
            rel,
            OpenHow::new()
                .flags(flags | OFlag::O_CLOEXEC)
                .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS),
        )
    })
}

/// `path` (absolute in the container, or relative to its root) without
/// its leading `/` and with `.` components dropped.
fn relative(path: &str) -> PathBuf {
    Path::new(path)
        .components()
        .filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir))
        .collect()
}

/// The host path of `path` in the container whose root is `root`, every
/// symlink on the way resolved inside the root. The last component need
/// not exist.
pub fn resolve_in_root(root: &Path, path: &str) -> Result<PathBuf, BuildError> {
    let rel = relative(path);
    let root_fd = open_root(root)?;
    let (parent, name) = match (rel.parent(), rel.file_name()) {
        (Some(parent), Some(name)) => (parent.to_owned(), Some(name.to_owned())),
        _ => (PathBuf::new(), None),
    };
    // Resolve the whole path when it exists, else its parent.
    let (fd, rest) = match open_in(&root_fd, &rel, OFlag::O_PATH) {
        Ok(fd) => (fd, None),
        Err(nix::errno::Errno::ENOENT) => {
            let fd = open_in(&root_fd, &parent, OFlag::O_PATH | OFlag::O_DIRECTORY)
                .map_err(|e| BuildError::io(root.join(&parent), io::Error::from(e)))?;
            (fd, name)
        }
        Err(e) => return Err(BuildError::io(root.join(&rel), io::Error::from(e))),
    };
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let mut host_path = std::fs::read_link(&link).map_err(|e| BuildError::io(&link, e))?;
    if let Some(rest) = rest {
        host_path.push(rest);
    }
    Ok(host_path)
}

/// Reads a file of the container (such as `/etc/passwd`), resolved inside
/// the root; a missing file reads as empty.
pub fn read_in_root(root: &Path, path: &str) -> Result<String, BuildError> {
    let root_fd = open_root(root)?;
    match open_in(&root_fd, &relative(path), OFlag::O_RDONLY) {
        Ok(fd) => {
            let mut file = File::from(fd);
            let mut text = String::new();
            io::Read::read_to_string(&mut file, &mut text)
                .map_err(|e| BuildError::io(root.join(relative(path)), e))?;
            Ok(text)
        }
        Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => Ok(String::new()),
        Err(e) => Err(BuildError::io(
            root.join(relative(path)),
            io::Error::from(e),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    use super::*;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let victim = tempfile::tempdir().unwrap();
        symlink(victim.path(), root.path().join("abs")).unwrap();
        symlink("../../../../..", root.path().join("up")).unwrap();
        let made = crate::fileops::mkdir_all_in_root(root.path(), "/abs/x/y", None).unwrap();
        assert!(made.starts_with(root.path()), "{}", made.display());
        assert!(std::fs::read_dir(victim.path()).unwrap().next().is_none());
        std::fs::create_dir(root.path().join("etc")).unwrap();
        let resolved = resolve_in_root(root.path(), "/up/etc/passwd").unwrap();
        assert_eq!(resolved, root.path().join("etc/passwd"));
        assert_eq!(read_in_root(root.path(), "/up/etc/passwd").unwrap(), "");
    }

    #[test]
    fn mkdir_sets_mode_and_owner() {
        let root = tempfile::tempdir().unwrap();
        let owner = crate::fileops::Owner {
            uid: 1000,
            gid: 1001,
        };
        let made = crate::fileops::mkdir_all_in_root(root.path(), "/a/b", Some(owner)).unwrap();
        for dir in [root.path().join("a"), made] {
            let meta = std::fs::metadata(&dir).unwrap();
            assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
            assert_eq!((meta.uid(), meta.gid()), (1000, 1001));
        }
    }
}
