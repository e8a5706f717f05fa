//! Feeds arbitrary bytes to the reader of an imported build cache
//! (`kiln build --cache-from`): the first half as the manifest, the rest
//! as the records document. It must take or refuse records, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (manifest, records) = data.split_at(data.len() / 2);
    let _ = kiln_builder::cache::share::check_documents(manifest, records);
    // A well-formed manifest with the arbitrary records.
    let manifest = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.kiln.build-cache.records.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#;
    let _ = kiln_builder::cache::share::check_documents(manifest, data);
});
