//! A multi-platform image in the store (issue 18): a tagged OCI index of
//! image manifests, resolved per platform, listed once, tagged, saved and
//! collected as a whole, without root.

#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

use kiln_store::registry::PlatformSpec;
use kiln_store::spec::{Descriptor, ImageConfig, Platform};
use kiln_store::{Store, StoreError};
use serde_json::json;
use tempfile::TempDir;

/// A one-file layer.
fn layer_tar(name: &str, content: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_path(name).unwrap();
    header.set_cksum();
    builder.append(&header, content).unwrap();
    builder.into_inner().unwrap()
}

/// Writes an image of `architecture` (untagged, not in index.json) and
/// returns its manifest descriptor and platform.
fn platform_image(store: &Store, architecture: &str) -> (Descriptor, Platform) {
    let bytes = layer_tar("arch", architecture.as_bytes());
    let layer = store
        .write_layer(&bytes[..], kiln_store::layer::Compression::None)
        .unwrap();
    let config: ImageConfig = serde_json::from_value(json!({
        "architecture": architecture, "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id.to_string()]},
    }))
    .unwrap();
    let (manifest, _) = store.write_image(&config, &[layer.descriptor]).unwrap();
    let platform = Platform {
        architecture: architecture.to_owned(),
        os: "linux".to_owned(),
        variant: None,
        extra: std::collections::BTreeMap::new(),
    };
    (manifest, platform)
}

fn platform(text: &str) -> PlatformSpec {
    PlatformSpec::parse(text).unwrap()
}

#[test]
fn a_tagged_index_resolves_per_platform_lists_once_and_keeps_its_images() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let host = PlatformSpec::host().architecture;
    let other = if host == "arm64" { "amd64" } else { "arm64" };
    let entries = [platform_image(&store, other), platform_image(&store, &host)];
    let tag = kiln_reference::parse_normalized_named("multi:1").unwrap();
    let index = store
        .commit_index(&entries, std::slice::from_ref(&tag))
        .unwrap();
    assert_eq!(index.media_type, kiln_store::spec::OCI_INDEX);
    // By default this machine's platform, as Docker shows an index.
    let image = store.resolve("multi:1").unwrap();
    assert_eq!(image.config.architecture, host);
    assert_eq!(image.index.as_ref().unwrap().to_string(), index.digest);
    assert_eq!(image.tags, ["docker.io/library/multi:1"]);
    let picked = store
        .resolve_platform("multi:1", Some(&platform(&format!("linux/{other}"))))
        .unwrap();
    assert_eq!(picked.config.architecture, other);
    let missing = store
        .resolve_platform("multi:1", Some(&platform("linux/s390x")))
        .unwrap_err();
    assert!(matches!(missing, StoreError::NoMatchingPlatform { .. }));
    assert_eq!(
        missing.to_string(),
        format!(
            "no matching manifest for linux/s390x in the manifest list entries of multi:1 (it has: linux/{other}, linux/{host})"
        )
    );
    // One image in the listing, though two manifests are stored.
    let images = store.images().unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].index, image.index);
    // The index keeps its images through a collection, and checks clean.
    store.collect_garbage().unwrap();
    for (descriptor, _) in &entries {
        let digest = kiln_store::digest::parse_sha256(&descriptor.digest).unwrap();
        store.image(&digest).unwrap();
    }
    assert!(store.check().unwrap().is_empty());
    // Tagging tags the index; once untagged, everything goes.
    let second = kiln_reference::parse_normalized_named("multi:2").unwrap();
    store.tag(&image, &second).unwrap();
    assert_eq!(
        store.resolve("multi:2").unwrap().index,
        image.index,
        "the new tag names the index"
    );
    store.untag("docker.io/library/multi:1").unwrap();
    store.untag("docker.io/library/multi:2").unwrap();
    store.collect_garbage().unwrap();
    let digest = kiln_store::digest::parse_sha256(&entries[0].0.digest).unwrap();
    assert!(store.image(&digest).is_err());
    assert!(store.images().unwrap().is_empty());
}

#[test]
fn a_saved_index_carries_every_platform() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let entries = [
        platform_image(&store, "arm64"),
        platform_image(&store, "amd64"),
    ];
    let tag = kiln_reference::parse_normalized_named("multi:1").unwrap();
    let index = store
        .commit_index(&entries, std::slice::from_ref(&tag))
        .unwrap();
    let request = kiln_store::archive::save::SaveRequest {
        image: store.resolve("multi:1").unwrap(),
        tags: vec![tag],
    };
    let mut archive = Vec::new();
    let written = kiln_store::archive::save_archive(
        &store,
        std::slice::from_ref(&request),
        kiln_store::archive::SaveFormat::Oci,
        &mut archive,
    )
    .unwrap();
    assert_eq!(written[0].digest, index.digest);
    let mut names = Vec::new();
    let mut index_json = Vec::new();
    let mut tar = tar::Archive::new(&archive[..]);
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        if name == "index.json" {
            std::io::Read::read_to_end(&mut entry, &mut index_json).unwrap();
        }
        names.push(name);
    }
    let listed: serde_json::Value = serde_json::from_slice(&index_json).unwrap();
    assert_eq!(listed["manifests"][0]["digest"], index.digest.as_str());
    assert_eq!(
        listed["manifests"][0]["mediaType"],
        kiln_store::spec::OCI_INDEX
    );
    // The index, and each platform's manifest, config and layer.
    for (descriptor, _) in &entries {
        let hex = descriptor.digest.trim_start_matches("sha256:");
        assert!(names.contains(&format!("blobs/sha256/{hex}")), "{names:?}");
    }
    let hex = index.digest.trim_start_matches("sha256:");
    assert!(names.contains(&format!("blobs/sha256/{hex}")));
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("blobs/sha256/") && !n.ends_with('/'))
            .count(),
        7
    );
}
