//! Load and save: archives built here in the shapes `docker save` (legacy
//! and 25+) and OCI tools write, round trips, and every bad input the
//! loader must refuse with a clear message.

#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

use std::io::{Cursor, Read as _};

use kiln_store::archive::save::SaveRequest;
use kiln_store::archive::{LayoutSelector, SaveFormat, load_archive, load_layout, save_archive};
use kiln_store::digest::digest_bytes;
use kiln_store::{Store, StoreError};
use serde_json::json;
use tempfile::TempDir;

/// A tar archive built entry by entry.
struct ArchiveBuilder(tar::Builder<Vec<u8>>);

impl ArchiveBuilder {
    fn new() -> Self {
        Self(tar::Builder::new(Vec::new()))
    }

    fn file(mut self, path: &str, bytes: &[u8]) -> Self {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        // Write the name raw so that hostile names (`../x`) survive.
        let name = &mut header.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        self.0.append(&header, bytes).unwrap();
        self
    }

    fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut header = tar::Header::new_gnu();
        header.set_size(0);
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_path(path).unwrap();
        header.set_link_name(target).unwrap();
        header.set_cksum();
        self.0.append(&header, &[][..]).unwrap();
        self
    }

    fn finish(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// An uncompressed layer holding one file.
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

fn config_for(layers: &[&[u8]]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| digest_bytes(l).to_string()).collect();
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "test"}]
    }))
    .unwrap()
}

/// An OCI manifest for one config and one layer of `layer_type`.
fn oci_manifest(config: &[u8], layer: &[u8], layer_type: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest_bytes(config).to_string(), "size": config.len()},
        "layers": [{"mediaType": layer_type,
                    "digest": digest_bytes(layer).to_string(), "size": layer.len()}]
    }))
    .unwrap()
}

fn hex(bytes: &[u8]) -> String {
    digest_bytes(bytes).encoded().to_owned()
}

/// A legacy `docker save` archive: `<id>/layer.tar`, `<config>.json`,
/// manifest.json.
fn legacy_archive(tag: &str) -> (Vec<u8>, String) {
    let layer = layer_tar("hello.txt", b"hello\n");
    let config = config_for(&[&layer]);
    let config_name = format!("{}.json", hex(&config));
    let manifest = serde_json::to_vec(&json!([{
        "Config": config_name,
        "RepoTags": [tag],
        "Layers": ["abc/layer.tar"]
    }]))
    .unwrap();
    let archive = ArchiveBuilder::new()
        .file("abc/layer.tar", &layer)
        .file(&config_name, &config)
        .file("manifest.json", &manifest)
        .finish();
    (archive, digest_bytes(&config).to_string())
}

fn store() -> (TempDir, Store) {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

fn load_error(archive: &[u8]) -> String {
    let (_dir, store) = store();
    let error = load_archive(&store, Cursor::new(archive)).unwrap_err();
    // A failed load leaves no tag behind.
    assert!(store.index().unwrap().manifests.is_empty());
    error.to_string()
}

#[test]
fn loads_a_legacy_docker_archive() {
    let (_dir, store) = store();
    let (archive, id) = legacy_archive("app:1");
    let loaded = load_archive(&store, Cursor::new(archive)).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id.to_string(), id);
    assert_eq!(loaded[0].tags[0].to_string(), "docker.io/library/app:1");
    let image = store.resolve("app:1").unwrap();
    assert_eq!(image.id.to_string(), id);
    assert_eq!(image.tags, vec!["docker.io/library/app:1"]);
    assert_eq!(
        image.config.config.unwrap().cmd,
        Some(vec!["sh".to_owned()])
    );
    // Short ID prefixes resolve too.
    assert_eq!(store.resolve(&id[7..19]).unwrap().id.to_string(), id);
    assert_eq!(store.resolve(&id).unwrap().id.to_string(), id);
}

#[test]
fn loading_twice_writes_nothing_new_and_keeps_one_image() {
    let (_dir, store) = store();
    let (archive, _) = legacy_archive("app:1");
    load_archive(&store, Cursor::new(&archive)).unwrap();
    let blobs = store.blobs().list().unwrap();
    let modified: Vec<_> = blobs
        .iter()
        .map(|d| {
            std::fs::metadata(store.blobs().path(d))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect();
    load_archive(&store, Cursor::new(&archive)).unwrap();
    assert_eq!(store.blobs().list().unwrap(), blobs);
    for (digest, before) in blobs.iter().zip(modified) {
        let after = std::fs::metadata(store.blobs().path(digest))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(before, after, "{digest} was rewritten");
    }
    assert_eq!(store.images().unwrap().len(), 1);
}

#[test]
fn round_trips_through_both_formats() {
    for format in [SaveFormat::Docker, SaveFormat::Oci] {
        let (_dir, store) = store();
        let (archive, id) = legacy_archive("app:1");
        load_archive(&store, Cursor::new(archive)).unwrap();
        let image = store.resolve("app:1").unwrap();
        let tags = vec![kiln_reference::parse_normalized_named("app:1").unwrap()];
        let mut saved = Vec::new();
        save_archive(
            &store,
            &[SaveRequest {
                image: image.clone(),
                tags: tags.clone(),
            }],
            format,
            &mut saved,
        )
        .unwrap();
        // Saving again gives the same bytes.
        let mut again = Vec::new();
        save_archive(
            &store,
            &[SaveRequest {
                image: image.clone(),
                tags,
            }],
            format,
            &mut again,
        )
        .unwrap();
        assert_eq!(saved, again, "{format:?} save is not deterministic");

        let (_dir2, fresh) = self::store();
        let loaded = load_archive(&fresh, Cursor::new(saved)).unwrap();
        assert_eq!(loaded[0].id.to_string(), id, "{format:?}");
        let reloaded = fresh.resolve("app:1").unwrap();
        assert_eq!(
            reloaded.config.rootfs.diff_ids,
            image.config.rootfs.diff_ids
        );
        let layer_digests = |i: &kiln_store::Image| -> Vec<String> {
            i.manifest.layers.iter().map(|l| l.digest.clone()).collect()
        };
        assert_eq!(
            layer_digests(&reloaded),
            layer_digests(&image),
            "{format:?}"
        );
        // The layer content survived.
        let layer = kiln_reference::Digest::parse(&reloaded.manifest.layers[0].digest).unwrap();
        let mut bytes = Vec::new();
        fresh
            .blobs()
            .open(&layer)
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        let mut tar = tar::Archive::new(&bytes[..]);
        let mut entry = tar.entries().unwrap().next().unwrap().unwrap();
        let mut content = String::new();
        entry.read_to_string(&mut content).unwrap();
        assert_eq!(content, "hello\n");
    }
}

#[test]
fn loads_oci_archives_with_nested_indexes_and_compressed_layers() {
    let (_dir, store) = store();
    let layer = layer_tar("a", b"a");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &layer).unwrap();
    let compressed = gz.finish().unwrap();
    let config = config_for(&[&layer]);
    let manifest = oci_manifest(
        &config,
        &compressed,
        "application/vnd.oci.image.layer.v1.tar+gzip",
    );
    let nested = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": digest_bytes(&manifest).to_string(), "size": manifest.len(),
                       "platform": {"architecture": "amd64", "os": "linux"}}]
    }))
    .unwrap();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
                       "digest": digest_bytes(&nested).to_string(), "size": nested.len(),
                       "annotations": {"org.opencontainers.image.ref.name": "localhost:5000/x:2"}}]
    }))
    .unwrap();
    let archive = ArchiveBuilder::new()
        .file("oci-layout", b"{\"imageLayoutVersion\":\"1.0.0\"}")
        .file(&format!("blobs/sha256/{}", hex(&compressed)), &compressed)
        .file(&format!("blobs/sha256/{}", hex(&config)), &config)
        .file(&format!("blobs/sha256/{}", hex(&manifest)), &manifest)
        .file(&format!("blobs/sha256/{}", hex(&nested)), &nested)
        .file("index.json", &index)
        .finish();
    // Whole-archive compression is undone first.
    let mut zst = Vec::new();
    zstd::stream::copy_encode(&archive[..], &mut zst, 3).unwrap();
    let loaded = load_archive(&store, Cursor::new(zst)).unwrap();
    assert_eq!(loaded[0].tags[0].to_string(), "localhost:5000/x:2");
    let image = store.resolve("localhost:5000/x:2").unwrap();
    assert_eq!(image.manifest_digest, digest_bytes(&manifest));
    assert_eq!(
        image.manifest.layers[0].digest,
        digest_bytes(&compressed).to_string()
    );
}

#[test]
fn refuses_bad_archives_with_clear_messages() {
    let (legacy, _) = legacy_archive("app:1");
    assert_eq!(
        load_error(b"hello, this is not a tar archive at all"),
        "invalid archive: not a tar archive (shorter than one tar header)"
    );
    assert_eq!(
        load_error(&[b'x'; 2048]),
        "invalid archive: not a tar archive (bad header checksum in the first block)"
    );
    assert_eq!(
        load_error(b""),
        "invalid archive: empty input: expected a tar archive"
    );
    let truncated = &legacy[..1500];
    assert!(
        load_error(truncated).starts_with("invalid archive: truncated archive in abc/layer.tar"),
        "{}",
        load_error(truncated)
    );

    let manifest = |layers: &str, config: &str| {
        format!(r#"[{{"Config":"{config}","RepoTags":["app:1"],"Layers":[{layers}]}}]"#)
    };
    let layer = layer_tar("f", b"f");
    let config = config_for(&[&layer]);
    let missing = ArchiveBuilder::new()
        .file("c.json", &config)
        .file(
            "manifest.json",
            manifest(r#""nope/layer.tar""#, "c.json").as_bytes(),
        )
        .finish();
    assert_eq!(
        load_error(&missing),
        "invalid archive: manifest.json refers to nope/layer.tar, which is not in the archive"
    );
    let outside = ArchiveBuilder::new()
        .file("c.json", &config)
        .file(
            "manifest.json",
            manifest(r#""../../etc/passwd""#, "c.json").as_bytes(),
        )
        .finish();
    assert_eq!(
        load_error(&outside),
        "invalid archive: manifest.json points outside the archive: ../../etc/passwd"
    );
    let via_symlink = ArchiveBuilder::new()
        .file("c.json", &config)
        .symlink("l/layer.tar", "../../../etc/passwd")
        .file(
            "manifest.json",
            manifest(r#""l/layer.tar""#, "c.json").as_bytes(),
        )
        .finish();
    assert_eq!(
        load_error(&via_symlink),
        "invalid archive: manifest.json refers to l/layer.tar, which points outside the archive"
    );
    let wrong_layer = ArchiveBuilder::new()
        .file("l.tar", &layer_tar("other", b"other"))
        .file("c.json", &config)
        .file("manifest.json", manifest(r#""l.tar""#, "c.json").as_bytes())
        .finish();
    assert_eq!(
        load_error(&wrong_layer),
        format!(
            "diff_id mismatch for layer l.tar: config says {}, content is {}",
            digest_bytes(&layer),
            digest_bytes(&layer_tar("other", b"other"))
        )
    );
    let big = vec![b' '; 9 << 20];
    let oversized = ArchiveBuilder::new()
        .file("c.json", &big)
        .file("manifest.json", manifest("", "c.json").as_bytes())
        .finish();
    assert_eq!(
        load_error(&oversized),
        "archive entry c.json is 9437184 bytes, over the 8388608-byte limit for JSON documents"
    );
}

#[test]
fn refuses_oci_archives_with_bad_digests() {
    let index = |digest: &str| {
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{digest}","size":2}}]}}"#
        )
    };
    for (digest, message) in [
        (
            "sha256:../x",
            "invalid digest \"sha256:../x\": invalid checksum digest format",
        ),
        (
            "sha256:ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789",
            "invalid digest \"sha256:ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789\": invalid checksum digest format",
        ),
        (
            "sha256:1234",
            "invalid digest \"sha256:1234\": invalid checksum digest format",
        ),
    ] {
        let archive = ArchiveBuilder::new()
            .file("index.json", index(digest).as_bytes())
            .finish();
        assert_eq!(load_error(&archive), message);
    }
    // A blob whose content does not match its name.
    let name = "0".repeat(64);
    let archive = ArchiveBuilder::new()
        .file(&format!("blobs/sha256/{name}"), b"{}")
        .file("index.json", index(&format!("sha256:{name}")).as_bytes())
        .finish();
    assert_eq!(
        load_error(&archive),
        format!(
            "digest mismatch for archive entry blobs/sha256/{name}: expected sha256:{name}, got {}",
            digest_bytes(b"{}")
        )
    );
}

#[test]
fn a_flipped_byte_is_detected_on_read() {
    let (_dir, store) = store();
    let (archive, id) = legacy_archive("app:1");
    load_archive(&store, Cursor::new(archive)).unwrap();
    let config = kiln_reference::Digest::parse(&id).unwrap();
    let path = store.blobs().path(&config);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let error = store.resolve("app:1").unwrap_err();
    assert!(
        matches!(error, StoreError::DigestMismatch { .. }),
        "{error}"
    );
    let problems = store.check().unwrap();
    assert!(
        problems.iter().any(|p| p.subject == format!("blob {id}")),
        "{problems:?}"
    );
}

#[test]
fn tags_move_and_leave_dangling_images() {
    let (_dir, store) = store();
    let (first, first_id) = legacy_archive("app:1");
    load_archive(&store, Cursor::new(first)).unwrap();
    // A different image under the same tag.
    let layer = layer_tar("other", b"x");
    let config = config_for(&[&layer]);
    let archive = ArchiveBuilder::new()
        .file("l.tar", &layer)
        .file("c.json", &config)
        .file(
            "manifest.json",
            br#"[{"Config":"c.json","RepoTags":["app:1"],"Layers":["l.tar"]}]"#,
        )
        .finish();
    load_archive(&store, Cursor::new(archive)).unwrap();
    let images = store.images().unwrap();
    assert_eq!(images.len(), 2);
    let old = images
        .iter()
        .find(|i| i.id.to_string() == first_id)
        .unwrap();
    assert!(old.tags.is_empty(), "the old image is dangling");
    let report = store.collect_garbage().unwrap();
    assert!(
        report.blobs.is_empty(),
        "dangling images are kept until pruned"
    );
    store.delete_image(&old.manifest_digest).unwrap();
    let report = store.collect_garbage().unwrap();
    assert_eq!(
        report.blobs.len(),
        3,
        "manifest, config and layer of the old image"
    );
}

/// `docker save` since Docker 25 writes an OCI layout (index.json with
/// containerd's name annotation and a bare tag in ref.name) plus
/// manifest.json; the whole thing may also arrive gzip-compressed.
#[test]
fn loads_docker_25_archives_and_gzip_wrapped_ones() {
    let layer = layer_tar("etc/os-release", b"ID=test\n");
    let config = config_for(&[&layer]);
    let manifest = oci_manifest(&config, &layer, "application/vnd.oci.image.layer.v1.tar");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": digest_bytes(&manifest).to_string(), "size": manifest.len(),
                       "annotations": {"io.containerd.image.name": "docker.io/library/d25:1",
                                       "org.opencontainers.image.ref.name": "1"}}]
    }))
    .unwrap();
    let docker_manifest = serde_json::to_vec(&json!([{
        "Config": format!("blobs/sha256/{}", hex(&config)),
        "RepoTags": ["d25:1"],
        "Layers": [format!("blobs/sha256/{}", hex(&layer))]
    }]))
    .unwrap();
    let archive = ArchiveBuilder::new()
        .file(&format!("blobs/sha256/{}", hex(&config)), &config)
        .file(&format!("blobs/sha256/{}", hex(&layer)), &layer)
        .file(&format!("blobs/sha256/{}", hex(&manifest)), &manifest)
        .file("index.json", &index)
        .file("manifest.json", &docker_manifest)
        .file("oci-layout", b"{\"imageLayoutVersion\":\"1.0.0\"}")
        .finish();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &archive).unwrap();
    for input in [archive.clone(), gz.finish().unwrap()] {
        let (_dir, store) = store();
        let loaded = load_archive(&store, Cursor::new(input)).unwrap();
        assert_eq!(loaded[0].tags[0].to_string(), "docker.io/library/d25:1");
        let image = store.resolve("d25:1").unwrap();
        assert_eq!(image.id, digest_bytes(&config));
        // The manifest is kept byte for byte.
        assert_eq!(image.manifest_digest, digest_bytes(&manifest));
    }
    // Without containerd's annotation a bare tag names no repository: the
    // image loads untagged, as Docker does.
    let bare = String::from_utf8(index).unwrap().replace(
        "\"io.containerd.image.name\":\"docker.io/library/d25:1\",",
        "",
    );
    let archive = ArchiveBuilder::new()
        .file(&format!("blobs/sha256/{}", hex(&config)), &config)
        .file(&format!("blobs/sha256/{}", hex(&layer)), &layer)
        .file(&format!("blobs/sha256/{}", hex(&manifest)), &manifest)
        .file("index.json", bare.as_bytes())
        .finish();
    let (_dir, store) = store();
    let loaded = load_archive(&store, Cursor::new(archive)).unwrap();
    assert!(loaded[0].tags.is_empty());
    assert_eq!(loaded[0].id, digest_bytes(&config));
}

/// `save --format docker` takes a compressed layer's uncompressed size from
/// the store's record, but still checks what it writes: a wrong record
/// fails the save instead of producing a broken archive.
#[test]
fn docker_save_checks_recorded_layer_sizes() {
    let (_dir, store) = store();
    let layer_bytes = layer_tar("a", b"content");
    let layer = store
        .write_layer(&layer_bytes[..], kiln_store::layer::Compression::Gzip)
        .unwrap();
    let config = config_for(&[&layer_bytes]);
    let config: kiln_store::spec::ImageConfig = serde_json::from_slice(&config).unwrap();
    let tag = kiln_reference::parse_normalized_named("rec:1").unwrap();
    store
        .commit_image(
            &config,
            std::slice::from_ref(&layer.descriptor),
            std::slice::from_ref(&tag),
        )
        .unwrap();
    let digest = kiln_reference::Digest::parse(&layer.descriptor.digest).unwrap();
    assert_eq!(
        store.recorded_diff(&digest),
        Some((layer.diff_id.clone(), layer_bytes.len() as u64))
    );
    let image = store.resolve("rec:1").unwrap();
    let request = SaveRequest {
        image,
        tags: vec![tag],
    };
    let mut good = Vec::new();
    save_archive(
        &store,
        std::slice::from_ref(&request),
        SaveFormat::Docker,
        &mut good,
    )
    .unwrap();
    // The archive holds the layer uncompressed.
    let (_dir2, fresh) = self::store();
    load_archive(&fresh, Cursor::new(&good)).unwrap();
    assert_eq!(
        fresh.resolve("rec:1").unwrap().manifest.layers[0].digest,
        layer.diff_id.to_string()
    );
    // A lying record is caught.
    store
        .record_diff(&digest, &layer.diff_id, layer_bytes.len() as u64 - 512)
        .unwrap();
    let error = save_archive(&store, &[request], SaveFormat::Docker, &mut Vec::new()).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "size mismatch for layer {digest} (uncompressed): expected {} bytes, got {}",
            layer_bytes.len() - 512,
            layer_bytes.len()
        )
    );
}

/// An OCI layout directory of two images tagged `one` and `two` (by
/// `ref.name`), and the manifests.
fn layout_dir() -> (TempDir, Vec<Vec<u8>>) {
    let dir = TempDir::new().unwrap();
    let layout = dir.path().join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        b"{\"imageLayoutVersion\":\"1.0.0\"}",
    )
    .unwrap();
    let mut manifests = Vec::new();
    let mut entries = Vec::new();
    for tag in ["one", "two"] {
        let layer = layer_tar(tag, tag.as_bytes());
        let config = config_for(&[&layer]);
        let manifest = oci_manifest(&config, &layer, "application/vnd.oci.image.layer.v1.tar");
        for blob in [&layer, &config, &manifest] {
            std::fs::write(blobs.join(hex(blob)), blob).unwrap();
        }
        entries.push(
            json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest_bytes(&manifest).to_string(), "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag}}),
        );
        manifests.push(manifest);
    }
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": entries})).unwrap();
    std::fs::write(layout.join("index.json"), index).unwrap();
    (dir, manifests)
}

#[test]
fn loads_one_image_of_a_layout_directory() {
    let (dir, manifests) = layout_dir();
    let layout = dir.path().join("layout");
    let (_store_dir, store) = store();
    let two = load_layout(&store, &layout, &LayoutSelector::Tag("two".to_owned())).unwrap();
    assert_eq!(two.manifest_digest, digest_bytes(&manifests[1]));
    assert!(two.tags.is_empty());
    // Untagged, found by its ID.
    let image = store.resolve(&two.id.to_string()).unwrap();
    assert_eq!(image.manifest_digest, digest_bytes(&manifests[1]));
    let one = load_layout(
        &store,
        &layout,
        &LayoutSelector::Digest(digest_bytes(&manifests[0])),
    )
    .unwrap();
    assert_eq!(one.manifest_digest, digest_bytes(&manifests[0]));
    // Two images and no such tag: which one is not guessed.
    let error = load_layout(&store, &layout, &LayoutSelector::Tag("latest".to_owned()))
        .unwrap_err()
        .to_string();
    assert!(error.contains("no image tagged \"latest\""), "{error}");
}

#[test]
fn a_layout_directory_is_read_inside_itself_and_checked() {
    let (dir, manifests) = layout_dir();
    let layout = dir.path().join("layout");
    let blobs = layout.join("blobs/sha256");
    // A blob that is a link out of the layout resolves inside it: the
    // host file it names is never read, and the missing blob fails.
    let outside = dir.path().join("outside");
    let manifest = &manifests[0];
    std::fs::write(&outside, manifest).unwrap();
    let name = blobs.join(hex(manifest));
    std::fs::remove_file(&name).unwrap();
    std::os::unix::fs::symlink(&outside, &name).unwrap();
    let (_store_dir, store) = store();
    let error = load_layout(&store, &layout, &LayoutSelector::Tag("one".to_owned()))
        .unwrap_err()
        .to_string();
    assert!(error.contains(&hex(manifest)), "{error}");
    // A blob whose content does not match its name is refused.
    std::fs::remove_file(&name).unwrap();
    std::fs::write(&name, b"{}").unwrap();
    let error = load_layout(&store, &layout, &LayoutSelector::Tag("two".to_owned())).unwrap_err();
    assert!(
        matches!(error, StoreError::DigestMismatch { .. }),
        "{error}"
    );
    assert!(store.index().unwrap().manifests.is_empty());
}
