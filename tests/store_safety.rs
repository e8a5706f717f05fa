//! Safety of the store against hostile archives, concurrent kiln
//! processes and kill -9.
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Kiln, tar_end as end, tar_entry as raw_entry};
use kiln_store::digest::digest_bytes;
use serde_json::json;

/// A victim directory beside the store, and a snapshot of its state.
fn victim(dir: &Path) -> Vec<(String, u32, String)> {
    let victim = dir.join("victim");
    fs::create_dir_all(&victim).unwrap();
    fs::write(victim.join("secret"), "do not touch\n").unwrap();
    common::tree(&victim)
}

/// An OCI archive whose one layer is `layer` (uncompressed).
fn oci_archive_with_layer(layer: &[u8], extra: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    oci_archive(&[(layer, "docker.io/library/hostile:1")], extra)
}

/// An OCI archive of one-layer images (uncompressed layer, name), after
/// the entries `extra` writes.
fn oci_archive(images: &[(&[u8], &str)], extra: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    extra(&mut out);
    let mut manifests = Vec::new();
    for (layer, name) in images {
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
        for blob in [layer, &config[..], &manifest[..]] {
            let name = format!("blobs/sha256/{}", digest_bytes(blob).encoded());
            raw_entry(&mut out, &name, b'0', "", blob);
        }
        manifests.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest_bytes(&manifest).to_string(), "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": name}
        }));
    }
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": manifests})).unwrap();
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
    let hostile_entries: [(&str, u8, &str); 6] = [
        ("../../victim/secret", b'0', ""),
        ("link", b'2', "../../../victim"),
        ("link/secret", b'0', ""),
        ("abs", b'2', "/"),
        ("abs/tmp/x", b'0', ""),
        ("hard", b'1', "../../victim/secret"),
    ];
    for (name, kind, link) in hostile_entries {
        let mut layer = Vec::new();
        raw_entry(&mut layer, "ok.txt", b'0', "", b"fine\n");
        raw_entry(&mut layer, name, kind, link, b"pwned\n");
        end(&mut layer);
        let file = kiln.path("hostile-layer.tar");
        fs::write(&file, oci_archive_with_layer(&layer, |_| {})).unwrap();
        let output = kiln.run(&["load", "-i", file.to_str().unwrap()]);
        // Nothing outside the store changes, whatever the entry.
        assert_eq!(common::tree(&kiln.dir.path().join("victim")), before);
        // (/tmp/x may be anything of the host's own: only its content
        // matters.)
        assert!(fs::read("/tmp/x").map_or(true, |c| c != b"pwned\n"));
        // An entry that would leave the root is refused and the load with
        // it; symlinks are followed inside the snapshot and load.
        let refused = name.starts_with("..") || kind == b'1';
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(!output.status.success(), refused, "{name}: {stderr}");
        if refused {
            assert!(stderr.contains("cannot be unpacked"), "{name}: {stderr}");
            assert_eq!(kiln.ok(&["images", "-q"]), "", "{name}");
        } else {
            let store = kiln_store::Store::open(&kiln.root()).unwrap();
            let image = store.resolve("hostile:1").unwrap();
            let snapshots = store
                .snapshots(&image.manifest.layers, &image.config.rootfs.diff_ids)
                .unwrap();
            assert!(snapshots[0].path.starts_with(kiln.root().join("snapshots")));
            drop(store);
            kiln.ok(&["rmi", "hostile:1"]);
        }
        assert_eq!(fs::read_dir(kiln.root().join("tmp")).unwrap().count(), 0);
    }
}

/// `kiln load` is all or nothing, as `docker load`: an archive whose layer
/// cannot be unpacked safely is refused with the reason, nothing is
/// tagged, and nothing the failed load wrote stays in the store.
#[test]
fn load_of_an_unsafe_layer_fails_and_tags_nothing() {
    let kiln = Kiln::new();
    kiln.import_sample("base:1");
    let blobs_before = fs::read_dir(kiln.root().join("blobs/sha256"))
        .unwrap()
        .count();
    let snapshots_before = fs::read_dir(kiln.root().join("snapshots")).unwrap().count();
    let mut layer = Vec::new();
    raw_entry(&mut layer, "ok.txt", b'0', "", b"fine\n");
    raw_entry(&mut layer, "../../victim/secret", b'0', "", b"pwned\n");
    end(&mut layer);
    let file = kiln.path("breakout.tar");
    fs::write(&file, oci_archive_with_layer(&layer, |_| {})).unwrap();
    let error = kiln.fails(&["load", "-i", file.to_str().unwrap()]);
    let layer_digest = digest_bytes(&layer);
    assert!(
        error.contains(&format!("cannot load images from {}", file.display()))
            && error.contains(&format!("layer {layer_digest} of image sha256:"))
            && error.contains("cannot be unpacked")
            && error.contains("../../victim/secret"),
        "{error}"
    );
    // No tag, no partial image, and the failed load's blobs and snapshots
    // were collected (nothing else had the store open).
    let images = kiln.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(images, "base:1\n");
    assert_eq!(
        fs::read_dir(kiln.root().join("blobs/sha256"))
            .unwrap()
            .count(),
        blobs_before
    );
    assert_eq!(
        fs::read_dir(kiln.root().join("snapshots")).unwrap().count(),
        snapshots_before
    );
    assert_eq!(fs::read_dir(kiln.root().join("tmp")).unwrap().count(), 0);
    assert!(kiln.ok(&["system", "check"]).contains("is consistent"));
    // An archive of two images, the first fine and the second not, tags
    // neither.
    let mut good_layer = Vec::new();
    raw_entry(&mut good_layer, "fine.txt", b'0', "", b"fine\n");
    end(&mut good_layer);
    let merged = oci_archive(
        &[
            (&good_layer, "docker.io/library/fine:1"),
            (&layer, "docker.io/library/bad:1"),
        ],
        |_| {},
    );
    let merged_path = kiln.path("merged.tar");
    fs::write(&merged_path, merged).unwrap();
    let error = kiln.fails(&["load", "-i", merged_path.to_str().unwrap()]);
    assert!(error.contains("cannot be unpacked"), "{error}");
    let images = kiln.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(images, "base:1\n");
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

fn assert_root(what: &str) {
    assert!(
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() } == 0,
        "{what} needs root; CI runs it as root"
    );
}

/// `cmd` as user nobody (65534), without supplementary groups.
fn as_nobody(args: &[&str]) -> std::process::Output {
    assert!(common::have("setpriv"), "setpriv (util-linux) is missing");
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn no_other_user_reaches_anything_in_the_store() {
    use std::os::unix::fs::PermissionsExt as _;
    assert_root("the store permission test");
    let kiln = Kiln::new();
    // The test's own directory is open, so only the store's modes count.
    fs::set_permissions(kiln.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let rootfs = kiln.path("rootfs");
    common::busybox_rootfs(&rootfs);
    // bin/tool is setuid root.
    common::sample_rootfs(&rootfs, "bb");
    kiln.ok(&["import", rootfs.to_str().unwrap(), "bb:1"]);
    let context = kiln.path("ctx");
    fs::create_dir_all(&context).unwrap();
    fs::write(
        context.join("Dockerfile"),
        "FROM bb:1\nRUN --mount=type=cache,target=/var/cache/app echo x > /var/cache/app/x && echo built > /built\n",
    )
    .unwrap();
    kiln.ok(&["build", "-q", "-t", "app:1", context.to_str().unwrap()]);
    assert_eq!(
        kiln.ok(&["run", "--rm", "app:1", "cat", "/built"]),
        "built\n"
    );
    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o7777;
    let check_modes = || {
        assert_eq!(mode(&kiln.root()), 0o700);
        for entry in fs::read_dir(kiln.root()).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                assert_eq!(mode(&path), 0o700, "{}", path.display());
            } else {
                assert_eq!(mode(&path) & 0o077, 0, "{}", path.display());
            }
        }
    };
    check_modes();
    // Everything the build and the run made is there: snapshots, cache
    // records and the cache mount, all owned by the store.
    for dir in [
        "snapshots",
        "cache",
        "cache-mounts",
        "statcache",
        "blobs/sha256",
    ] {
        assert!(
            fs::read_dir(kiln.root().join(dir))
                .unwrap()
                .next()
                .is_some(),
            "{dir} is empty"
        );
    }
    let setuid = fs::read_dir(kiln.root().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path().join("fs/bin/tool"))
        .find(|p| p.exists())
        .unwrap();
    assert_eq!(mode(&setuid), 0o4755);
    let denied = as_nobody(&["stat", setuid.to_str().unwrap()]);
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("Permission denied"),
        "{denied:?}"
    );
    // The same user reaches an open file beside the store: only the
    // store's modes stopped it.
    let beside = as_nobody(&["stat", context.join("Dockerfile").to_str().unwrap()]);
    assert!(beside.status.success(), "{beside:?}");
    // A store made by an older kiln (0755 everywhere) is closed on open.
    fs::set_permissions(kiln.root(), fs::Permissions::from_mode(0o755)).unwrap();
    for entry in fs::read_dir(kiln.root()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    assert!(
        as_nobody(&["stat", setuid.to_str().unwrap()])
            .status
            .success()
    );
    kiln.ok(&["images", "-q"]);
    check_modes();
    assert!(
        !as_nobody(&["stat", setuid.to_str().unwrap()])
            .status
            .success()
    );
}

/// A small tmpfs mounted on a test's directory, unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> Self {
        fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "cannot mount a tmpfs on {}",
            dir.display()
        );
        Self(dir.to_owned())
    }

    fn grow(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// `size` bytes that do not compress.
fn noise(size: usize) -> Vec<u8> {
    use std::io::Read as _;
    let mut bytes = vec![0; size];
    fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    bytes
}

#[test]
fn a_full_disk_names_the_cause_and_leaves_the_store_usable() {
    assert_root("the full-disk test (it mounts a tmpfs)");
    let kiln = Kiln::new();
    // Inputs, on the normal file system: a build context with a 16 MiB
    // file, an archive and a root file system tarball of 32 MiB each.
    let context = kiln.path("ctx");
    fs::create_dir_all(&context).unwrap();
    fs::write(context.join("big"), noise(16 << 20)).unwrap();
    fs::write(context.join("Dockerfile"), "FROM scratch\nCOPY big /big\n").unwrap();
    let rootfs = kiln.path("rootfs");
    fs::create_dir_all(&rootfs).unwrap();
    fs::write(rootfs.join("big"), noise(32 << 20)).unwrap();
    let other = Kiln::new();
    other.ok(&[
        "import",
        rootfs.to_str().unwrap(),
        "big:1",
        "--compression",
        "none",
    ]);
    let archive = kiln.path("big.tar");
    other.ok(&["save", "-o", archive.to_str().unwrap(), "big:1"]);
    let layer = other.ok(&["inspect", "-f", "{{index .RootFS.Layers 0}}", "big:1"]);
    let layer_hex = layer.trim().strip_prefix("sha256:").unwrap().to_owned();
    let rootfs_tar = kiln.path("rootfs.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&rootfs_tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    // The store on a 24 MiB file system: the COPY fits, its layer does not.
    let disk = SmallDisk::mount(&kiln.root(), "24m");
    let build = ["build", "-t", "copy:1", context.to_str().unwrap()];
    let load = ["load", "-i", archive.to_str().unwrap()];
    let import = [
        "import",
        rootfs_tar.to_str().unwrap(),
        "imp:1",
        "--compression",
        "none",
    ];
    let cases: [(&[&str], Vec<String>); 3] = [
        // Packing the COPY's layer: the file being packed and the blob.
        (
            &build,
            vec![
                format!("writing entry {}", kiln.root().join("tmp").display()),
                "/big: writing layer blob ".to_owned(),
            ],
        ),
        // Staging the archive's layer: the entry and the file.
        (
            &load,
            vec![
                format!("cannot load images from {}", archive.display()),
                format!("cannot write archive entry blobs/sha256/{layer_hex} to "),
            ],
        ),
        // Writing the imported layer's blob.
        (
            &import,
            vec![
                format!("cannot import {}", rootfs_tar.display()),
                "writing layer blob ".to_owned(),
            ],
        ),
    ];
    for (args, names) in &cases {
        let error = kiln.fails(args);
        assert!(
            error.contains("No space left on device (os error 28)"),
            "{args:?}: {error}"
        );
        for name in names {
            assert!(
                error.contains(name.as_str()),
                "{args:?}: {name:?} not in\n{error}"
            );
        }
        // Nothing partial is left: no tag, no blob, no temporary file.
        assert_eq!(kiln.ok(&["images", "-q"]), "", "{args:?}");
        assert_eq!(
            fs::read_dir(kiln.root().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(fs::read_dir(kiln.root().join("tmp")).unwrap().count(), 0);
        assert_eq!(
            kiln.ok(&["system", "check"]),
            format!("store {} is consistent\n", kiln.root().display())
        );
    }
    // With room again, each command works.
    disk.grow("256m");
    for (args, _) in &cases {
        kiln.ok(args);
    }
    let images = kiln.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut images: Vec<&str> = images.lines().collect();
    images.sort_unstable();
    assert_eq!(images, ["big:1", "copy:1", "imp:1"]);
    assert_eq!(
        kiln.ok(&["system", "check"]),
        format!("store {} is consistent\n", kiln.root().display())
    );
    drop(disk);
}
