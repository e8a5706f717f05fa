//! The registry client's readers of untrusted responses: the
//! `WWW-Authenticate` parser, a manifest or index's media type, the
//! manifest and index decoders and platform selection. None may panic,
//! whatever a registry sends.
#![no_main]

use kiln_store::registry::auth::parse_challenges;
use kiln_store::registry::pull::{PlatformSpec, document_media_type, select_platform};
use kiln_store::spec::{Index, Manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for challenge in parse_challenges(text) {
            let _ = challenge.param("realm");
        }
        let _ = PlatformSpec::parse(text);
    }
    let _ = document_media_type(data, "application/vnd.oci.image.index.v1+json");
    let _ = serde_json::from_slice::<Manifest>(data);
    if let Ok(index) = serde_json::from_slice::<Index>(data) {
        for platform in ["linux/amd64", "linux/arm64/v8"] {
            if let Ok(wanted) = PlatformSpec::parse(platform) {
                let _ = select_platform(&index, &wanted, "fuzz");
            }
        }
    }
});
