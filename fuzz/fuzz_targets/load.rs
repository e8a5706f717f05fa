//! Feeds arbitrary bytes to `kiln load`'s archive reader: it must return
//! an image or an error, never panic, and a failed load must leave no tag.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let Ok(store) = kiln_store::Store::open(dir.path()) else {
        return;
    };
    if kiln_store::archive::load_archive(&store, data).is_err() {
        let tags = store.index().map(|i| i.manifests.len()).unwrap_or(0);
        assert_eq!(tags, 0, "a failed load left an index entry");
    }
});
