//! [`Root`]: a directory treated as `/`, and paths resolved inside it.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat};
use nix::sys::stat::{Mode, SFlag, fchmod, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, fchown};

use crate::path::{Escape, components};

/// Linux's limit on symlinks followed in one resolution (`MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// How many times a resolution is retried when the kernel reports that a
/// concurrent rename made it unsure (`EAGAIN`) or a signal interrupted it.
const RETRIES: usize = 16;

/// A path inside a root that could not be made or resolved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// Something that is not a directory stands where one is needed.
    #[error("{path}: not a directory")]
    NotADirectory {
        /// The container path.
        path: String,
    },
    /// A system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`creating directory`).
        op: &'static str,
        /// The container path.
        path: String,
        /// The underlying error (kept for its errno).
        source: io::Error,
    },
}

impl PathError {
    fn io(op: &'static str, path: &str, source: impl Into<io::Error>) -> Self {
        Self::Io {
            op,
            path: path.to_owned(),
            source: source.into(),
        }
    }
}

/// An owner for directories [`Root::mkdir_all`] creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// A directory treated as the root of every path resolved through it.
///
/// Resolution uses `openat2` with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`
/// from a descriptor of the root: `..` stops at the root, absolute symlinks
/// start again at the root, `/proc/self/fd/N`-style magic links are
/// refused. The root's own path is kept only for messages and for
/// [`Root::real_path`]; nothing is ever resolved through it again.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl Root {
    /// Opens directory `path` as a root (following symlinks in `path`
    /// itself: it is kiln's own or the user's, not an image's).
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            fd,
            path: path.to_owned(),
        })
    }

    /// A root from a descriptor of a directory; `path` is for messages.
    pub fn from_fd(fd: OwnedFd, path: PathBuf) -> Self {
        Self { fd, path }
    }

    /// The root's host path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `path` (a container path; cleaned, `..` clamped) with `flags`,
    /// every symlink on the way and in the last component resolved inside
    /// the root. Add `O_NOFOLLOW` to get a symlink itself (with `O_PATH`).
    pub fn open_at(&self, path: impl AsRef<OsStr>, flags: OFlag) -> io::Result<OwnedFd> {
        let rel = crate::path::relative(path);
        self.open_clean(&rel, flags, ResolveFlag::empty())
    }

    /// Opens `path` like [`Root::open_at`], but fails with `ELOOP` if any
    /// component is a symlink: for paths already resolved (by
    /// [`Root::real_path`] or a walk), so that a tree changed since cannot
    /// redirect the open.
    pub fn open_resolved(&self, path: impl AsRef<OsStr>, flags: OFlag) -> io::Result<OwnedFd> {
        let rel = crate::path::relative(path);
        self.open_clean(&rel, flags, ResolveFlag::RESOLVE_NO_SYMLINKS)
    }

    fn open_clean(&self, rel: &[u8], flags: OFlag, extra: ResolveFlag) -> io::Result<OwnedFd> {
        let p: &[u8] = if rel.is_empty() { b"." } else { rel };
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS | extra);
        let mut tries = 0;
        loop {
            match openat2(self.fd.as_fd(), OsStr::from_bytes(p), how) {
                Err(Errno::EAGAIN | Errno::EINTR) if tries < RETRIES => tries += 1,
                other => return other.map_err(io::Error::from),
            }
        }
    }

    /// The directory holding `path` (resolved inside the root) and the
    /// last component, which is not resolved: `*at` calls on it act on
    /// whatever is there, a symlink included. `None` for the root itself.
    pub fn open_parent(&self, path: impl AsRef<OsStr>) -> io::Result<Option<(OwnedFd, OsString)>> {
        let comps = components(path.as_ref().as_bytes(), Escape::Clamp).unwrap_or_default();
        let Some((last, parent)) = comps.split_last() else {
            return Ok(None);
        };
        let parent = parent.join(&b'/');
        let fd = self.open_clean(
            &parent,
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            ResolveFlag::empty(),
        )?;
        Ok(Some((fd, OsStr::from_bytes(last).to_owned())))
    }

    /// Reads the file at `path` (resolved inside the root), at most `limit`
    /// bytes; `None` when it does not exist (or a component is not a
    /// directory), as a missing `/etc/passwd` reads as empty.
    pub fn read(&self, path: impl AsRef<OsStr>, limit: u64) -> io::Result<Option<Vec<u8>>> {
        let fd = match self.open_at(path, OFlag::O_RDONLY) {
            Ok(fd) => fd,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let mut bytes = Vec::new();
        std::fs::File::from(fd)
            .take(limit)
            .read_to_end(&mut bytes)?;
        Ok(Some(bytes))
    }

    /// Where descriptor `fd` (opened through this root) is, as a container
    /// path (`/a/b`), from the kernel's own record of it; `None` if it is
    /// not under the root.
    pub fn real_path(&self, fd: BorrowedFd<'_>) -> io::Result<Option<String>> {
        let root = std::fs::read_link(fd_path(self.fd.as_fd()))?;
        let target = std::fs::read_link(fd_path(fd))?;
        Ok(target.strip_prefix(&root).ok().map(|inside| {
            let inside = inside.to_string_lossy();
            format!("/{inside}")
        }))
    }

    /// `mkdir -p` of container path `path` inside the root, as fsutil's
    /// `MkdirAll` does on a root-resolved path (what BuildKit's COPY and
    /// WORKDIR use): symlinks on the way are followed inside the root,
    /// dangling ones too (their targets are created); created directories
    /// get mode `mode` (umask ignored) and `owner` (none: the caller's).
    /// Returns a descriptor of the directory (`O_RDONLY`).
    pub fn mkdir_all(
        &self,
        path: impl AsRef<OsStr>,
        mode: u32,
        owner: Option<Owner>,
    ) -> Result<OwnedFd, PathError> {
        let start = components(path.as_ref().as_bytes(), Escape::Clamp).unwrap_or_default();
        let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
        if let Ok(fd) = self.open_clean(&start.join(&b'/'), dir_flags, ResolveFlag::empty()) {
            return Ok(fd);
        }
        let walk = Walk {
            create: Some((mode, owner)),
            follow_last: true,
            visible: None,
        };
        let Some((resolved, fd)) = self.walk(&start, walk)? else {
            return Err(PathError::io("resolving", &display(&[]), Errno::ENOENT));
        };
        let shown = display(&resolved);
        let st = nix::sys::stat::fstat(fd.as_fd())
            .map_err(|e| PathError::io("inspecting", &shown, e))?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
            return Err(PathError::NotADirectory { path: shown });
        }
        openat(fd.as_fd(), ".", dir_flags | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| PathError::io("opening directory", &shown, e))
    }

    /// Resolves `path` inside the root as `RESOLVE_IN_ROOT` would, one
    /// component at a time, in a filtered view of the root: `visible(path,
    /// is_dir)` is asked about every entry stepped on (the path so far,
    /// relative, `/`-separated), and an entry it rejects does not exist,
    /// so a symlink through it dangles. This is how BuildKit sees a build
    /// context without its `.dockerignore`d files. A symlink in the last
    /// component is followed only with `follow_last`.
    ///
    /// Returns the resolved path (components) and an `O_PATH` descriptor
    /// of what is there, or `None` when something on the way is missing or
    /// hidden.
    pub fn resolve_filtered(
        &self,
        path: impl AsRef<OsStr>,
        follow_last: bool,
        visible: &mut Filter<'_>,
    ) -> Result<Option<(Vec<OsString>, OwnedFd)>, PathError> {
        let start = components(path.as_ref().as_bytes(), Escape::Clamp).unwrap_or_default();
        let walk = Walk {
            create: None,
            follow_last,
            visible: Some(visible),
        };
        self.walk(&start, walk)
    }

    /// The one component-by-component resolution behind [`Root::mkdir_all`]
    /// and [`Root::resolve_filtered`]: every step is an `*at` call on the
    /// descriptor of the directory reached so far, never following the
    /// component itself; a symlink's target is pushed back as components
    /// (an absolute one restarting at the root), `..` pops (clamped).
    fn walk(
        &self,
        start: &[&[u8]],
        mut walk: Walk<'_>,
    ) -> Result<Option<(Vec<OsString>, OwnedFd)>, PathError> {
        let mut pending: VecDeque<OsString> = start
            .iter()
            .map(|c| OsStr::from_bytes(c).to_owned())
            .collect();
        let mut resolved: Vec<OsString> = Vec::new();
        let reopen = |resolved: &[OsString]| {
            let rel: Vec<&[u8]> = resolved.iter().map(|c| c.as_bytes()).collect();
            self.open_clean(
                &rel.join(&b'/'),
                OFlag::O_PATH | OFlag::O_DIRECTORY,
                ResolveFlag::RESOLVE_NO_SYMLINKS,
            )
            .map_err(|e| PathError::io("resolving", &display(resolved), e))
        };
        let mut cur = reopen(&resolved)?;
        let mut links = 0;
        while let Some(name) = pending.pop_front() {
            if name.is_empty() || name == "." {
                continue;
            }
            if name == ".." {
                resolved.pop();
                cur = reopen(&resolved)?;
                continue;
            }
            resolved.push(name.clone());
            let shown = display(&resolved);
            let last = pending.iter().all(|c| c.is_empty() || c == ".");
            let st = match fstatat(cur.as_fd(), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => Some(st),
                Err(Errno::ENOENT) => None,
                Err(e) => return Err(PathError::io("inspecting", &shown, e)),
            };
            let kind = st.map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT);
            if let (Some(kind), Some(visible)) = (kind, walk.visible.as_mut()) {
                let rel = shown.trim_start_matches('/');
                let shown_visible = visible(rel, kind == SFlag::S_IFDIR)
                    .map_err(|e| PathError::io("filtering", &shown, e))?;
                if !shown_visible {
                    return Ok(None);
                }
            }
            match kind {
                Some(SFlag::S_IFLNK) if !last || walk.follow_last => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(PathError::io("resolving", &shown, Errno::ELOOP));
                    }
                    let target = readlinkat(cur.as_fd(), name.as_os_str())
                        .map_err(|e| PathError::io("reading symlink", &shown, e))?;
                    resolved.pop();
                    let target = target.as_bytes();
                    if target.starts_with(b"/") {
                        resolved.clear();
                    }
                    for c in target.split(|&b| b == b'/').rev() {
                        pending.push_front(OsStr::from_bytes(c).to_owned());
                    }
                    cur = reopen(&resolved)?;
                }
                Some(SFlag::S_IFDIR) => {
                    cur = openat(
                        cur.as_fd(),
                        name.as_os_str(),
                        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| PathError::io("opening directory", &shown, e))?;
                }
                Some(_) if last => {
                    let fd = openat(
                        cur.as_fd(),
                        name.as_os_str(),
                        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| PathError::io("opening", &shown, e))?;
                    return Ok(Some((resolved, fd)));
                }
                // A file on the way: nothing to find, or nowhere to create.
                Some(_) if walk.create.is_none() => return Ok(None),
                Some(_) => return Err(PathError::NotADirectory { path: shown }),
                None => {
                    let Some((mode, owner)) = walk.create else {
                        return Ok(None);
                    };
                    cur = create_dir(&cur, &name, mode, owner, &shown)?;
                }
            }
        }
        Ok(Some((resolved, cur)))
    }
}

/// How [`Root::walk`] goes.
struct Walk<'v> {
    /// Create missing directories with this mode and owner.
    create: Option<(u32, Option<Owner>)>,
    /// Follow a symlink in the last component.
    follow_last: bool,
    /// The filter of [`Root::resolve_filtered`].
    visible: Option<&'v mut Filter<'v>>,
}

/// Whether an entry (path relative to the root, is a directory) exists in
/// a filtered view.
pub type Filter<'f> = dyn FnMut(&str, bool) -> io::Result<bool> + 'f;

/// Creates directory `name` in `parent` with `mode` (umask ignored) and
/// `owner`; returns an `O_PATH` descriptor of it.
fn create_dir(
    parent: &OwnedFd,
    name: &OsStr,
    mode: u32,
    owner: Option<Owner>,
    shown: &str,
) -> Result<OwnedFd, PathError> {
    mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(mode))
        .map_err(|e| PathError::io("creating directory", shown, e))?;
    let fd = openat(
        parent.as_fd(),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| PathError::io("opening directory", shown, e))?;
    // The umask may have cleared bits of the mode.
    fchmod(fd.as_fd(), Mode::from_bits_truncate(mode))
        .map_err(|e| PathError::io("changing mode of", shown, e))?;
    if let Some(o) = owner {
        fchown(
            fd.as_fd(),
            Some(Uid::from_raw(o.uid)),
            Some(Gid::from_raw(o.gid)),
        )
        .map_err(|e| PathError::io("changing owner of", shown, e))?;
    }
    Ok(fd)
}

impl AsFd for Root {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The container path of cleaned components (`/` for none).
pub fn display(comps: &[OsString]) -> String {
    let mut s = String::new();
    for c in comps {
        s.push('/');
        s.push_str(&c.to_string_lossy());
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

/// `/proc/self/fd/N` of a descriptor: a name the kernel resolves to that
/// very file (a magic link), for the few calls that take only a path.
pub fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    use super::*;

    /// A root with hostile links and a victim directory beside it.
    fn hostile() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let victim = dir.path().join("victim");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir(&victim).unwrap();
        fs::write(victim.join("secret"), "host\n").unwrap();
        fs::write(root.join("etc/passwd"), "inside\n").unwrap();
        symlink(&victim, root.join("abs")).unwrap();
        symlink("../../../../../..", root.join("up")).unwrap();
        symlink(victim.join("secret"), root.join("file")).unwrap();
        symlink("/etc/shadow-absent", root.join("dangling")).unwrap();
        (dir, root, victim)
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let (_dir, root_path, _victim) = hostile();
        let root = Root::open(&root_path).unwrap();
        // ../.. stops at the root; the host's /etc/passwd is not reached.
        let text = root.read("/up/up/etc/passwd", 1 << 20).unwrap().unwrap();
        assert_eq!(text, b"inside\n");
        // An absolute link to a host file names a path inside the root.
        assert_eq!(root.read("/file", 1 << 20).unwrap(), None);
        assert_eq!(root.read("/abs/secret", 1 << 20).unwrap(), None);
        // A dangling link resolves inside the root, where nothing is.
        let err = root.open_at("/dangling", OFlag::O_PATH).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        // With O_NOFOLLOW the link itself, which real_path names inside.
        let fd = root
            .open_at("/dangling", OFlag::O_PATH | OFlag::O_NOFOLLOW)
            .unwrap();
        assert_eq!(
            root.real_path(fd.as_fd()).unwrap().as_deref(),
            Some("/dangling")
        );
        // Already-resolved paths refuse any symlink on the way.
        let err = root.open_resolved("/up/etc", OFlag::O_PATH).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
        assert!(root.open_resolved("/etc/passwd", OFlag::O_PATH).is_ok());
        // Magic links are refused.
        fs::create_dir(root_path.join("proc")).unwrap();
        symlink("/proc/self/root", root_path.join("proc/root")).unwrap();
        assert!(root.read("/proc/root/etc/passwd", 10).unwrap().is_none());
    }

    #[test]
    fn parent_of_a_path_leaves_the_last_component_alone() {
        let (_dir, root_path, _victim) = hostile();
        let root = Root::open(&root_path).unwrap();
        let (fd, name) = root.open_parent("/up/../abs").unwrap().unwrap();
        assert_eq!(name, "abs");
        assert_eq!(root.real_path(fd.as_fd()).unwrap().as_deref(), Some("/"));
        assert!(root.open_parent("/").unwrap().is_none());
        assert!(root.open_parent("..").unwrap().is_none());
    }

    #[test]
    fn filtered_resolution_hides_rejected_entries() {
        let (_dir, root_path, _victim) = hostile();
        let root = Root::open(&root_path).unwrap();
        fs::create_dir(root_path.join("hidden")).unwrap();
        fs::write(root_path.join("hidden/f"), "f").unwrap();
        symlink("hidden/f", root_path.join("via")).unwrap();
        symlink("etc", root_path.join("etc-link")).unwrap();
        let mut asked = Vec::new();
        let mut visible = |rel: &str, _dir: bool| {
            asked.push(rel.to_owned());
            Ok(!rel.starts_with("hidden"))
        };
        let resolve =
            |path: &str, follow: bool, v: &mut dyn FnMut(&str, bool) -> io::Result<bool>| {
                root.resolve_filtered(path, follow, v)
                    .unwrap()
                    .map(|(comps, _)| comps.join(OsStr::new("/")).into_string().unwrap())
            };
        assert_eq!(
            resolve("/etc-link/passwd", true, &mut visible).as_deref(),
            Some("etc/passwd")
        );
        // Through a hidden directory the link dangles; unfollowed it is there.
        assert_eq!(resolve("via", true, &mut visible), None);
        assert_eq!(resolve("via", false, &mut visible).as_deref(), Some("via"));
        // Links out of the root stay in it; a file on the way is no path.
        assert_eq!(
            resolve("up/etc/passwd", true, &mut visible).as_deref(),
            Some("etc/passwd")
        );
        assert_eq!(resolve("etc/passwd/x", true, &mut visible), None);
        assert_eq!(resolve("abs/secret", true, &mut visible), None);
        assert!(asked.contains(&"hidden".to_owned()), "{asked:?}");
    }

    #[test]
    fn mkdir_all_creates_inside_the_root_through_links() {
        let (_dir, root_path, victim) = hostile();
        let root = Root::open(&root_path).unwrap();
        let owner = Owner {
            uid: 1000,
            gid: 1001,
        };
        let rootless = !nix::unistd::geteuid().is_root();
        let fd = root
            .mkdir_all("/abs/x/y", 0o755, (!rootless).then_some(owner))
            .unwrap();
        let inside = format!("{}/x/y", victim.display());
        assert_eq!(
            root.real_path(fd.as_fd()).unwrap().as_deref(),
            Some(inside.as_str())
        );
        assert!(root_path.join(victim.strip_prefix("/").unwrap()).is_dir());
        assert_eq!(fs::read_dir(&victim).unwrap().count(), 1, "only the secret");
        let made = root_path.join(victim.strip_prefix("/").unwrap()).join("x");
        let meta = fs::metadata(&made).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
        if !rootless {
            assert_eq!((meta.uid(), meta.gid()), (1000, 1001));
        }
        // A dangling link's target is created, inside the root.
        root.mkdir_all("/dangling/d", 0o755, None).unwrap();
        assert!(root_path.join("etc/shadow-absent/d").is_dir());
        // A file on the way is an error naming it.
        let err = root.mkdir_all("/etc/passwd/x", 0o755, None).unwrap_err();
        assert_eq!(err.to_string(), "/etc/passwd: not a directory");
    }
}
