//! Feeds arbitrary bytes to the reader of a layer recipe (a `COPY`'s
//! layer in an imported build cache, remade from the build context):
//! as the compressed recipe, and compressed so that the segment reader
//! sees them. It must remake the layer or refuse, never panic, and
//! never read outside the (empty) context.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

struct Fixture {
    _dir: tempfile::TempDir,
    store: kiln_store::Store,
    context: kiln_rootfs::Root,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = kiln_store::Store::open(&dir.path().join("store")).unwrap();
        std::fs::create_dir_all(dir.path().join("context")).unwrap();
        std::fs::write(dir.path().join("context/file"), b"context bytes").unwrap();
        let context = kiln_rootfs::Root::open(&dir.path().join("context")).unwrap();
        Fixture {
            _dir: dir,
            store,
            context,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let digest = kiln_store::digest::digest_bytes(b"never this");
    let _ = kiln_builder::cache::recipe::remake(&f.store, data, &f.context, (&digest, 10));
    let mut plain = b"kiln-layer-recipe-v1\n".to_vec();
    plain.extend_from_slice(data);
    if let Ok(compressed) = zstd::bulk::compress(&plain, 1) {
        let _ = kiln_builder::cache::recipe::remake(&f.store, &compressed, &f.context, (&digest, 10));
    }
});
