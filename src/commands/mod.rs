//! One module per command.

pub mod build;
pub mod build_cache;
pub mod cache;
pub mod container;
pub mod diff;
pub mod disk_usage;
pub mod history;
pub mod images;
pub mod import;
pub mod info;
pub mod inspect;
pub mod layers;
pub mod load;
pub mod login;
pub mod network;
pub mod parse;
pub mod prune;
pub mod pull;
pub mod push;
pub mod rmi;
pub mod run;
pub mod save;
pub mod system;
pub mod tag;
pub mod version;
pub mod volume;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use kiln_store::Store;

/// The store directory: `--root`/`KILN_ROOT`, else `/var/lib/kiln` as
/// root, else `$XDG_DATA_HOME/kiln` (`~/.local/share/kiln`).
pub fn store_root(root: Option<&Path>) -> PathBuf {
    if let Some(root) = root {
        return root.to_owned();
    }
    if nix_is_root() {
        return PathBuf::from("/var/lib/kiln");
    }
    if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(data).join("kiln");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".local/share/kiln")
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Opens the store, naming its directory if that fails. Temporary files
/// of kiln processes that are gone are removed on the way.
pub fn open_store(root: Option<&Path>) -> anyhow::Result<Store> {
    // Rootless commands run outside kiln's namespace (`ps`, `exec`,
    // `cp`...) cannot remove what belongs to its other ids: the next
    // command inside does.
    if !kiln_rootfs::userns::can_mount() {
        return open_store_keeping_temporaries(root);
    }
    let root = store_root(root);
    Store::open(&root).with_context(|| format!("cannot open the image store at {}", root.display()))
}

/// [`open_store`] leaving dead processes' temporary files in place, for
/// the commands that report them.
pub fn open_store_keeping_temporaries(root: Option<&Path>) -> anyhow::Result<Store> {
    let root = store_root(root);
    Store::open_keeping_temporaries(&root)
        .with_context(|| format!("cannot open the image store at {}", root.display()))
}

/// Parses a reference given on the command line, as Docker normalises it
/// (`app` -> `docker.io/library/app:latest`).
pub fn parse_reference(text: &str) -> anyhow::Result<kiln_store::ImageReference> {
    kiln_reference::parse_normalized_named(text)
        .map(kiln_store::ImageReference::tag_name_only)
        .map_err(|e| anyhow::anyhow!("invalid reference format {text:?}: {e}"))
}
