//! Arbitrary bytes as a layer blob: sniffing, decompression and unpacking
//! into a fresh directory must never panic, and must never touch anything
//! outside that directory (a sibling canary is checked after every run).
#![no_main]

use std::fs;
use std::sync::OnceLock;

use kiln_store::layer::{UnpackOptions, WhiteoutMode, open_layer, unpack_layer};
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

fuzz_target!(|data: &[u8]| {
    let canary = canary();
    // The first byte picks the whiteout mode so both paths are explored.
    let mode = if data.first().is_some_and(|b| b & 1 == 1) {
        WhiteoutMode::Apply
    } else {
        WhiteoutMode::Overlay
    };
    let dest = tempfile::tempdir_in(canary.parent().expect("parent")).expect("dest dir");
    if let Ok((_, reader)) = open_layer(data) {
        let _ = unpack_layer(reader, dest.path(), &UnpackOptions { whiteouts: mode });
    }
    assert_eq!(
        fs::read(canary.join("secret")).expect("canary read"),
        b"canary"
    );
    assert_eq!(fs::read_dir(canary).expect("canary list").count(), 1);
    assert!(dest.path().is_dir(), "dest itself was removed");
});
