//! Arbitrary bytes as a layer blob: sniffing, decompression and unpacking
//! into a fresh directory (alone, or applied on a lower layer full of
//! symlinks that lead out) must never panic, and must never touch anything
//! outside that directory (a sibling canary is checked after every run).
#![no_main]

use std::fs;
use std::sync::OnceLock;

use kiln_store::layer::{UnpackOptions, WhiteoutMode, apply_layer, open_layer, unpack_layer};
use libfuzzer_sys::fuzz_target;

/// A directory beside every destination whose contents must not change.
fn canary() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().expect("canary dir");
        fs::write(d.path().join("secret"), b"canary").expect("canary file");
        d
    })
    .path()
}

/// A lower layer for applying on: directories, a file, a whiteout and
/// symlinks to the canary, the root and above it.
fn lower() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir_in(canary().parent().expect("parent")).expect("lower dir");
        let p = d.path();
        fs::create_dir_all(p.join("d/e")).expect("lower dirs");
        fs::write(p.join("d/f"), b"lower").expect("lower file");
        std::os::unix::fs::symlink(canary(), p.join("canary")).expect("symlink");
        std::os::unix::fs::symlink("../../..", p.join("up")).expect("symlink");
        std::os::unix::fs::symlink("/", p.join("d/root")).expect("symlink");
        std::os::unix::fs::symlink("up/d", p.join("loop")).expect("symlink");
        d
    })
    .path()
}

fuzz_target!(|data: &[u8]| {
    let canary = canary();
    let lowers = [lower().to_owned()];
    let dest = tempfile::tempdir_in(canary.parent().expect("parent")).expect("dest dir");
    if let Ok((_, reader)) = open_layer(data) {
        // The first byte picks the mode so that every path is explored.
        let _ = match data.first().map(|b| b & 3) {
            Some(1) => unpack_layer(
                reader,
                dest.path(),
                &UnpackOptions {
                    whiteouts: WhiteoutMode::Apply,
                },
            ),
            Some(2 | 3) => apply_layer(reader, dest.path(), &lowers),
            _ => unpack_layer(reader, dest.path(), &UnpackOptions::default()),
        };
    }
    assert_eq!(
        fs::read(canary.join("secret")).expect("canary read"),
        b"canary"
    );
    assert_eq!(fs::read_dir(canary).expect("canary list").count(), 1);
    assert!(dest.path().is_dir(), "dest itself was removed");
    // Applying only reads the lower layer.
    assert_eq!(fs::read(lower().join("d/f")).expect("lower read"), b"lower");
    assert_eq!(fs::read_dir(lower()).expect("lower list").count(), 4);
    assert_eq!(fs::read_dir(lower().join("d")).expect("lower list").count(), 3);
});
