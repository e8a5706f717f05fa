//! Interoperability with real tools: skopeo, umoci and podman read what
//! kiln writes (archives and the store root itself), and kiln loads what
//! they write. CI installs the tools (`.ci/run`); elsewhere a missing tool
//! makes its test print SKIPPED with the reason, unless
//! `KILN_REQUIRE_INTEROP=1`, which makes it fail instead.
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::fs;
use std::process::Command;

use common::Kiln;

/// Whether the tools are there; prints SKIPPED (or fails in CI) if not.
fn tools(names: &[&str]) -> bool {
    let missing: Vec<&str> = names.iter().copied().filter(|t| !common::have(t)).collect();
    if missing.is_empty() {
        return true;
    }
    kiln_testkit::require(
        "INTEROP",
        Some(&format!(
            "interop tools missing: {missing:?} (apt-get install skopeo umoci podman)"
        )),
    )
}

fn sh(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn skopeo_inspect(transport: &str) -> serde_json::Value {
    let out = sh(Command::new("skopeo").args(["inspect", "--config", transport]));
    serde_json::from_str(&out).unwrap()
}

/// A busybox image in a fresh store, with some config to compare.
fn busybox_store(name: &str) -> (Kiln, String) {
    let kiln = Kiln::new();
    let rootfs = kiln.path("rootfs");
    common::busybox_rootfs(&rootfs);
    fs::write(rootfs.join("etc/marker"), "from kiln\n").unwrap();
    let id = kiln
        .ok(&[
            "import",
            rootfs.to_str().unwrap(),
            name,
            "--change",
            "ENV GREETING=hello",
            "--change",
            "CMD [\"sh\"]",
        ])
        .trim()
        .to_owned();
    (kiln, id)
}

#[test]
fn skopeo_and_umoci_read_kiln_archives_and_store() {
    if !tools(&["skopeo", "umoci"]) {
        return;
    }
    let (kiln, id) = busybox_store("localhost/interop:1");
    let docker = kiln.path("docker.tar");
    let oci = kiln.path("oci.tar");
    kiln.ok(&[
        "save",
        "-o",
        docker.to_str().unwrap(),
        "localhost/interop:1",
    ]);
    kiln.ok(&[
        "save",
        "--format",
        "oci",
        "-o",
        oci.to_str().unwrap(),
        "localhost/interop:1",
    ]);
    for transport in [
        format!("docker-archive:{}", docker.display()),
        format!("oci-archive:{}:localhost/interop:1", oci.display()),
        format!("oci:{}:localhost/interop:1", kiln.root().display()),
    ] {
        let config = skopeo_inspect(&transport);
        assert_eq!(config["config"]["Env"][0], "GREETING=hello", "{transport}");
        assert_eq!(config["config"]["Cmd"][0], "sh", "{transport}");
        let raw = sh(Command::new("skopeo").args(["inspect", "--raw", "--config", &transport]));
        assert_eq!(
            kiln_store::digest::digest_bytes(raw.as_bytes()).to_string(),
            id,
            "{transport}: the config bytes are the image ID"
        );
    }
    // skopeo copy out of our archives, then back into kiln.
    let copied = kiln.path("copied-oci.tar");
    sh(Command::new("skopeo").args([
        "copy",
        "-q",
        &format!("docker-archive:{}", docker.display()),
        &format!("oci-archive:{}:localhost/interop:2", copied.display()),
    ]));
    let fresh = Kiln::new();
    assert_eq!(
        fresh.ok(&["load", "-i", copied.to_str().unwrap()]),
        "Loaded image: localhost/interop:2\n"
    );
    assert_eq!(fresh.ok(&["images", "-q", "--no-trunc"]).trim(), id);
    // umoci unpacks straight from the store root.
    let bundle = kiln.path("bundle");
    sh(Command::new("umoci").args([
        "unpack",
        "--image",
        &format!("{}:localhost/interop:1", kiln.root().display()),
        bundle.to_str().unwrap(),
    ]));
    assert_eq!(
        fs::read_to_string(bundle.join("rootfs/etc/marker")).unwrap(),
        "from kiln\n"
    );
    assert_eq!(
        fs::read_link(bundle.join("rootfs/bin/sh"))
            .unwrap()
            .to_str(),
        Some("busybox")
    );
}

#[test]
fn kiln_loads_what_skopeo_writes() {
    if !tools(&["skopeo"]) {
        return;
    }
    let (kiln, id) = busybox_store("localhost/src:1");
    for (transport, file) in [
        ("docker-archive", "sk-docker.tar"),
        ("oci-archive", "sk-oci.tar"),
    ] {
        let target = kiln.path(file);
        sh(Command::new("skopeo").args([
            "copy",
            "-q",
            &format!("oci:{}:localhost/src:1", kiln.root().display()),
            &format!("{transport}:{}:localhost/copy:1", target.display()),
        ]));
        let fresh = Kiln::new();
        let out = fresh.ok(&["load", "-i", target.to_str().unwrap()]);
        assert_eq!(out, "Loaded image: localhost/copy:1\n", "{transport}");
        assert_eq!(
            fresh.ok(&["images", "-q", "--no-trunc"]).trim(),
            id,
            "{transport}"
        );
        assert_eq!(
            fresh.ok(&["inspect", "-f", "{{.Config.Env}}", "localhost/copy:1"]),
            "[GREETING=hello]\n"
        );
        assert!(fresh.ok(&["system", "check"]).contains("consistent"));
        assert_eq!(
            common::image_file(&fresh.root(), "localhost/copy:1", "etc/marker").as_deref(),
            Some("from kiln\n")
        );
    }
}

#[test]
fn podman_loads_kiln_archives_and_kiln_loads_podman_archives() {
    if !tools(&["podman"]) {
        return;
    }
    let (kiln, id) = busybox_store("localhost/kiln-podman:1");
    let docker = kiln.path("docker.tar");
    kiln.ok(&[
        "save",
        "-o",
        docker.to_str().unwrap(),
        "localhost/kiln-podman:1",
    ]);
    // A private podman storage, so the test neither needs nor touches the
    // machine's.
    let storage = kiln.path("podman");
    let podman = |args: &[&str]| {
        let mut command = Command::new("podman");
        command
            .arg("--root")
            .arg(storage.join("root"))
            .arg("--runroot")
            .arg(storage.join("run"))
            .arg("--storage-driver")
            .arg("vfs")
            .args(args);
        sh(&mut command)
    };
    let out = podman(&["load", "-i", docker.to_str().unwrap()]);
    assert!(out.contains("localhost/kiln-podman:1"), "{out}");
    let podman_id = podman(&[
        "image",
        "inspect",
        "-f",
        "{{.Id}}",
        "localhost/kiln-podman:1",
    ]);
    assert_eq!(format!("sha256:{}", podman_id.trim()), id);
    let env = podman(&[
        "image",
        "inspect",
        "-f",
        "{{.Config.Env}}",
        "localhost/kiln-podman:1",
    ]);
    assert_eq!(env.trim(), "[GREETING=hello]");

    for (format, file) in [("docker-archive", "pd.tar"), ("oci-archive", "po.tar")] {
        let target = kiln.path(file);
        podman(&[
            "save",
            "--format",
            format,
            "-o",
            target.to_str().unwrap(),
            "localhost/kiln-podman:1",
        ]);
        let fresh = Kiln::new();
        let out = fresh.ok(&["load", "-i", target.to_str().unwrap()]);
        assert!(out.starts_with("Loaded image"), "{format}: {out}");
        let loaded_id = fresh.ok(&["images", "-q", "--no-trunc"]);
        assert_eq!(loaded_id.trim(), id, "{format}");
        // The files are what the source had.
        assert_eq!(
            common::image_file(&fresh.root(), &id[7..19], "etc/marker").as_deref(),
            Some("from kiln\n"),
            "{format}"
        );
        let check = fresh.ok(&["system", "check"]);
        assert!(check.contains("consistent"), "{check}");
        let archive = fresh.path("again.tar");
        fresh.ok(&["save", "-o", archive.to_str().unwrap(), &id[7..19]]);
        let listing = sh(Command::new("tar").args(["-tf", archive.to_str().unwrap()]));
        assert!(listing.contains("manifest.json"));
    }
}

/// Real Docker (`.ci/run` starts Debian's dockerd 20.10; elsewhere the
/// test is skipped without a daemon). Docker 20.10 reads only the
/// docker-archive layout, which is kiln's default.
#[test]
fn docker_loads_kiln_archives_and_kiln_loads_docker_save() {
    let docker = Command::new("docker").arg("info").output();
    let unreachable = "no Docker daemon reachable (`docker info` failed)";
    if !kiln_testkit::require(
        "DOCKER",
        (!docker.is_ok_and(|o| o.status.success())).then_some(unreachable),
    ) {
        return;
    }
    let (kiln, id) = busybox_store("localhost/kiln-docker:1");
    let archive = kiln.path("docker.tar");
    kiln.ok(&[
        "save",
        "-o",
        archive.to_str().unwrap(),
        "localhost/kiln-docker:1",
    ]);
    let out = sh(Command::new("docker").args(["load", "-i", archive.to_str().unwrap()]));
    assert!(out.contains("localhost/kiln-docker:1"), "{out}");
    let docker_id = sh(Command::new("docker").args([
        "image",
        "inspect",
        "-f",
        "{{.Id}}",
        "localhost/kiln-docker:1",
    ]));
    assert_eq!(docker_id.trim(), id);
    let saved = kiln.path("from-docker.tar");
    sh(Command::new("docker").args([
        "save",
        "-o",
        saved.to_str().unwrap(),
        "localhost/kiln-docker:1",
    ]));
    sh(Command::new("docker").args(["rmi", "localhost/kiln-docker:1"]));
    let fresh = Kiln::new();
    assert_eq!(
        fresh.ok(&["load", "-i", saved.to_str().unwrap()]),
        "Loaded image: localhost/kiln-docker:1\n"
    );
    assert_eq!(fresh.ok(&["images", "-q", "--no-trunc"]).trim(), id);
    assert_eq!(
        common::image_file(&fresh.root(), "localhost/kiln-docker:1", "etc/marker").as_deref(),
        Some("from kiln\n")
    );
}
