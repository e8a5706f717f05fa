//! kiln-rootfs: a container root file system as kiln sees it.
//!
//! Every path that comes from an image, a Dockerfile, a build context or
//! an archive names something *inside* a root (a snapshot, an overlay of a
//! stage, a container's `/`). This crate is the one place where such a
//! path is turned into a file: [`Root`] resolves it with
//! `openat2(RESOLVE_IN_ROOT)` from a descriptor of the root, so a symlink
//! (absolute, relative, dangling, swapped mid-way) is followed as the
//! container would follow it and never leads to the host; the result is a
//! descriptor, and what kiln does next (read, write, mount) acts on that
//! descriptor instead of handing the kernel a path string to resolve again.
//!
//! - [`path`]: the one lexical cleaner for such paths.
//! - [`root`]: [`Root`], the resolver, and `mkdir -p` inside a root.
//! - [`mount`]: bind mounts made from a descriptor, the overlay mount and
//!   its copy fallback.
//! - [`userns`]: the user namespace kiln runs in without root.
//! - [`user`]: USER and `--chown` names looked up in the root's
//!   `/etc/passwd` and `/etc/group`.
//!
//! The store, the runtime and the builder all use it; it imports none of
//! them.

mod copy;
pub mod mount;
pub mod path;
pub mod root;
pub mod user;
pub mod userns;

pub use root::{PathError, Root, fd_path};
