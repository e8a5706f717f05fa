//! Safety of the store against hostile archives, concurrent kiln
//! processes and kill -9.
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Kiln;
use kiln_store::digest::digest_bytes;
use serde_json::json;

/// A raw tar entry: name, type flag, link target, content.
fn raw_entry(out: &mut Vec<u8>, name: &str, kind: u8, link: &str, content: &[u8]) {
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    header[100..107].copy_from_slice(b"0000644");
    header[108..115].copy_from_slice(b"0000000");
    header[116..123].copy_from_slice(b"0000000");
    header[124..135].copy_from_slice(format!("{:011o}", content.len()).as_bytes());
    header[136..147].copy_from_slice(b"00000000000");
    header[156] = kind;
    header[157..157 + link.len()].copy_from_slice(link.as_bytes());
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(content);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn end(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0u8; 1024]);
}

/// A victim directory beside the store, and a snapshot of its state.
fn victim(dir: &Path) -> Vec<(String, u32, String)> {
    let victim = dir.join("victim");
    fs::create_dir_all(&victim).unwrap();
    fs::write(victim.join("secret"), "do not touch\n").unwrap();
    common::tree(&victim)
}

/// An OCI archive whose one layer is `layer` (uncompressed).
fn oci_archive_with_layer(layer: &[u8], extra: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [digest_bytes(layer).to_string()]}
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest_bytes(&config).to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest_bytes(layer).to_string(), "size": layer.len()}]
    }))
    .unwrap();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": digest_bytes(&manifest).to_string(), "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": "docker.io/library/hostile:1"}}]
    }))
    .unwrap();
    let mut out = Vec::new();
    extra(&mut out);
    for blob in [layer, &config[..], &manifest[..]] {
        let name = format!("blobs/sha256/{}", digest_bytes(blob).encoded());
        raw_entry(&mut out, &name, b'0', "", blob);
    }
    raw_entry(&mut out, "index.json", b'0', "", &index);
    end(&mut out);
    out
}

#[test]
fn hostile_entries_in_an_archive_never_leave_the_store() {
    let kiln = Kiln::new();
    let before = victim(kiln.dir.path());
    let layer = {
        let mut l = Vec::new();
        raw_entry(&mut l, "ok.txt", b'0', "", b"fine\n");
        end(&mut l);
        l
    };
    let archive = oci_archive_with_layer(&layer, |out| {
        raw_entry(out, "../victim/secret", b'0', "", b"pwned\n");
        raw_entry(out, "/victim/abs", b'0', "", b"pwned\n");
        raw_entry(out, "escape", b'2', "../victim", b"");
        raw_entry(out, "escape/secret", b'0', "", b"pwned\n");
        raw_entry(out, "hard", b'1', "../victim/secret", b"");
    });
    let file = kiln.path("hostile.tar");
    fs::write(&file, archive).unwrap();
    assert_eq!(
        kiln.ok(&["load", "-i", file.to_str().unwrap()]),
        "Loaded image: hostile:1\n"
    );
    assert_eq!(common::tree(&kiln.dir.path().join("victim")), before);
    assert_eq!(
        common::image_file(&kiln.root(), "hostile:1", "ok.txt").as_deref(),
        Some("fine\n")
    );
}

#[test]
fn hostile_layers_never_unpack_outside_the_snapshot() {
    let kiln = Kiln::new();
    let before = victim(kiln.dir.path());
    let snapshots_victim = kiln.root().join("snapshots");
    let mut layer = Vec::new();
    raw_entry(&mut layer, "../../victim/secret", b'0', "", b"pwned\n");
    raw_entry(&mut layer, "link", b'2', "../../../victim", b"");
    raw_entry(&mut layer, "link/secret", b'0', "", b"pwned\n");
    raw_entry(&mut layer, "abs", b'2', "/", b"");
    raw_entry(&mut layer, "abs/tmp/x", b'0', "", b"pwned\n");
    raw_entry(&mut layer, "hard", b'1', "../../victim/secret", b"");
    raw_entry(&mut layer, ".wh...", b'0', "", b"");
    end(&mut layer);
    let file = kiln.path("hostile-layer.tar");
    fs::write(&file, oci_archive_with_layer(&layer, |_| {})).unwrap();
    kiln.ok(&["load", "-i", file.to_str().unwrap()]);
    let store = kiln_store::Store::open(&kiln.root()).unwrap();
    let image = store.resolve("hostile:1").unwrap();
    // Whether the unpack confines or refuses, nothing outside changes.
    let result = store.snapshots(&image.manifest.layers, &image.config.rootfs.diff_ids);
    assert_eq!(common::tree(&kiln.dir.path().join("victim")), before);
    assert!(!Path::new("/tmp/x").exists() || fs::read("/tmp/x").unwrap() != b"pwned\n");
    if let Ok(snapshots) = result {
        assert!(snapshots[0].path.starts_with(&snapshots_victim));
    }
    // No partial snapshot is left behind on failure.
    let leftovers: Vec<_> = fs::read_dir(kiln.root().join("tmp")).unwrap().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn concurrent_kiln_processes_keep_the_store_consistent() {
    let kiln = Kiln::new();
    kiln.import_sample("base:1");
    let archive = kiln.path("base.tar");
    kiln.ok(&["save", "-o", archive.to_str().unwrap(), "base:1"]);
    let binary = assert_cmd::cargo::cargo_bin("kiln");
    let mut children = Vec::new();
    for i in 0..6 {
        let rootfs = kiln.path(&format!("rootfs{i}"));
        common::sample_rootfs(&rootfs, &format!("n{i}"));
        let mut command = Command::new(&binary);
        command.arg("--root").arg(kiln.root());
        match i % 3 {
            0 => command.args(["import", rootfs.to_str().unwrap(), &format!("imp:{i}")]),
            1 => command.args(["load", "-i", archive.to_str().unwrap()]),
            _ => command.args(["tag", "base:1", &format!("tagged:{i}")]),
        };
        children.push(
            command
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    let mut pruner = Command::new(&binary)
        .arg("--root")
        .arg(kiln.root())
        .args(["prune", "-f"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert!(pruner.wait().unwrap().success());
    let names = kiln.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    for expected in ["imp:0", "imp:3", "tagged:2", "tagged:5", "base:1"] {
        assert!(
            names.lines().any(|l| l == expected),
            "{expected} missing:\n{names}"
        );
    }
    assert!(kiln.ok(&["system", "check"]).contains("is consistent"));
}

#[test]
fn kill_9_at_any_moment_leaves_a_usable_store() {
    let kiln = Kiln::new();
    // A layer big enough that loading takes a while.
    let rootfs = kiln.path("big");
    fs::create_dir_all(&rootfs).unwrap();
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    for i in 0..64 {
        let bytes: Vec<u8> = (0..(256 * 1024))
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed.to_le_bytes()[0]
            })
            .collect();
        fs::write(rootfs.join(format!("f{i}")), bytes).unwrap();
    }
    kiln.ok(&[
        "import",
        rootfs.to_str().unwrap(),
        "big:1",
        "--compression",
        "none",
    ]);
    let archive = kiln.path("big.tar");
    kiln.ok(&["save", "-o", archive.to_str().unwrap(), "big:1"]);
    let binary = assert_cmd::cargo::cargo_bin("kiln");
    for delay_ms in [5, 20, 40, 80, 160] {
        let target = Kiln::new();
        let mut child = Command::new(&binary)
            .arg("--root")
            .arg(target.root())
            .args(["load", "-i", archive.to_str().unwrap()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        if !target.root().join("index.json").exists() {
            continue; // killed before the store was even created
        }
        let check = target.run(&["system", "check"]);
        assert!(
            check.status.success(),
            "after kill at {delay_ms} ms: {check:?}"
        );
        // Either the whole image is there or none of it.
        let images = target.ok(&["images", "-q"]);
        assert!(images.lines().count() <= 1);
        assert_eq!(
            target.ok(&["load", "-i", archive.to_str().unwrap()]),
            "Loaded image: big:1\n"
        );
        assert!(target.ok(&["system", "check"]).contains("is consistent"));
    }
}

#[test]
fn rmi_never_waits_behind_another_process_and_prune_collects_later() {
    let kiln = Kiln::new();
    kiln.import_sample("app:1");
    // Another "process" holding the store open, as a long load would.
    let other = kiln_store::Store::open(&kiln.root()).unwrap();
    let mut rmi = Command::new(assert_cmd::cargo::cargo_bin("kiln"))
        .arg("--root")
        .arg(kiln.root())
        .args(["rmi", "app:1"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut finished = false;
    for _ in 0..200 {
        if rmi.try_wait().unwrap().is_some() {
            finished = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if !finished {
        let _ = rmi.kill();
    }
    assert!(finished, "rmi waited for the other process");
    assert_eq!(kiln.ok(&["images", "-q"]), "");
    let blobs = || {
        fs::read_dir(kiln.root().join("blobs/sha256"))
            .unwrap()
            .count()
    };
    assert_eq!(blobs(), 3, "blobs stay while the store is busy");
    drop(other);
    kiln.ok(&["prune", "-f"]);
    assert_eq!(blobs(), 0);
}

#[test]
fn processes_creating_a_store_at_once_lose_no_tags() {
    let kiln = Kiln::new();
    let binary = assert_cmd::cargo::cargo_bin("kiln");
    let children: Vec<_> = (0..6)
        .map(|i| {
            let rootfs = kiln.path(&format!("rootfs{i}"));
            common::sample_rootfs(&rootfs, &format!("n{i}"));
            Command::new(&binary)
                .arg("--root")
                .arg(kiln.root())
                .args(["import", rootfs.to_str().unwrap(), &format!("fresh:{i}")])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let tags = kiln.ok(&["images", "--format", "{{.Tag}}"]);
    let mut tags: Vec<&str> = tags.lines().collect();
    tags.sort_unstable();
    assert_eq!(tags, ["0", "1", "2", "3", "4", "5"]);
}
