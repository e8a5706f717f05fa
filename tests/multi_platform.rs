//! Multi-platform builds (issue 18): `kiln build --platform
//! linux/arm64,linux/amd64` runs each platform's RUN steps (arm64 through
//! qemu-user-static's `binfmt_misc` handler) and stores one OCI index;
//! `images`, `inspect`, `save`, `push` and `run --platform` handle it.
//! The arm64 base is Debian's busybox-static for arm64, imported with
//! `kiln import --platform linux/arm64`.
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::path::Path;

use common::build::{self, build_fails, build_ok, busybox, busybox_two_platforms, context};
use common::registry::{self, Registry};
use serde_json::Value;

/// A RUN that records the machine it ran on, from a base per platform.
const UNAME: &str = "FROM bb:$TARGETARCH\nARG TARGETPLATFORM\nRUN busybox uname -m > /machine && echo $TARGETPLATFORM > /target\n";

/// The index.json entry of `name` (`docker.io/library/` implied) in the
/// store: (media type, digest).
fn entry(root: &Path, name: &str) -> (String, String) {
    entry_full(root, &format!("docker.io/library/{name}"))
}

/// A stored blob as JSON.
fn blob(root: &Path, digest: &str) -> Value {
    let path = root
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The platforms of an index, in order.
fn platforms(index: &Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn a_build_for_two_platforms_runs_each_natively_or_under_qemu_and_stores_one_index() {
    if !kiln_testkit::root("RUN needs namespaces and mounts") || !build::arm64_runs() {
        return;
    }
    let Some(kiln) = busybox_two_platforms() else {
        return;
    };
    let dir = context(&kiln, "ctx", UNAME, &[]);
    let stderr = build_ok(
        &kiln,
        &dir,
        "app:1",
        &["--platform", "linux/arm64,linux/amd64"],
    );
    // BuildKit's progress names each platform's steps.
    assert!(stderr.contains("[linux/arm64 "), "{stderr}");
    assert!(stderr.contains("[linux/amd64 "), "{stderr}");
    let root = kiln.root();
    let (media_type, digest) = entry(&root, "app:1");
    assert_eq!(media_type, "application/vnd.oci.image.index.v1+json");
    let index = blob(&root, &digest);
    assert_eq!(platforms(&index), ["linux/arm64", "linux/amd64"]);
    // Each platform's image ran its RUN on its own machine.
    for (position, (machine, platform)) in [("aarch64", "linux/arm64"), ("x86_64", "linux/amd64")]
        .iter()
        .enumerate()
    {
        let manifest_digest = index["manifests"][position]["digest"].as_str().unwrap();
        let manifest = blob(&root, manifest_digest);
        let config = blob(&root, manifest["config"]["digest"].as_str().unwrap());
        assert_eq!(
            config["architecture"],
            platform.trim_start_matches("linux/")
        );
        let image = kiln_store::Store::open(&root)
            .unwrap()
            .image(&kiln_store::digest::parse_sha256(manifest_digest).unwrap())
            .unwrap();
        let store = kiln_store::Store::open(&root).unwrap();
        let snapshots = store
            .snapshots(&image.manifest.layers, &image.config.rootfs.diff_ids)
            .unwrap();
        let top = &snapshots.last().unwrap().path;
        assert_eq!(
            std::fs::read_to_string(top.join("machine")).unwrap(),
            format!("{machine}\n")
        );
        assert_eq!(
            std::fs::read_to_string(top.join("target")).unwrap(),
            format!("{platform}\n")
        );
    }
    // One row in `images`, as Docker lists a multi-platform image.
    let images = kiln.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(
        images.lines().filter(|l| *l == "app:1").count(),
        1,
        "{images}"
    );
    assert!(!images.contains("<none>"), "{images}");
    // inspect shows this machine's platform; run --platform picks one.
    let arch = kiln.ok(&["inspect", "-f", "{{.Architecture}}", "app:1"]);
    assert_eq!(arch.trim(), "amd64");
    let out = kiln.ok(&[
        "run",
        "--rm",
        "--platform",
        "linux/arm64",
        "app:1",
        "busybox",
        "uname",
        "-m",
    ]);
    assert_eq!(out, "aarch64\n");
    let out = kiln.ok(&["run", "--rm", "app:1", "cat", "/machine"]);
    assert_eq!(out, "x86_64\n");
    let missing = kiln.fails(&["run", "--rm", "--platform", "linux/s390x", "app:1", "true"]);
    assert!(
        missing.contains(
            "no matching manifest for linux/s390x in the manifest list entries of app:1 (it has: linux/arm64, linux/amd64)"
        ),
        "{missing}"
    );
    // A rebuild answers every step from the cache, per platform, and
    // stores the same index.
    let again = build_ok(
        &kiln,
        &dir,
        "app:1",
        &["--platform", "linux/arm64,linux/amd64"],
    );
    assert_eq!(again.matches(" CACHED").count(), 2, "{again}");
    assert_eq!(entry(&root, "app:1").1, digest);
    // The index keeps its manifests: GC and `system check` follow it.
    kiln.ok(&["image", "prune", "-f"]);
    let check = kiln.run(&["system", "check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let out = kiln.ok(&[
        "run",
        "--rm",
        "--platform",
        "linux/arm64",
        "app:1",
        "cat",
        "/machine",
    ]);
    assert_eq!(out, "aarch64\n");
    // Tagging tags the index; rmi of the last tag removes it.
    kiln.ok(&["tag", "app:1", "app:2"]);
    assert_eq!(entry(&root, "app:2"), (media_type, digest));
    kiln.ok(&["rmi", "app:1", "app:2"]);
    let images = kiln.ok(&["images", "--format", "{{.Repository}}"]);
    assert!(!images.contains("app"), "{images}");
}

#[test]
fn a_single_platform_build_is_unchanged_and_takes_the_platform_of_the_base() {
    if !kiln_testkit::root("RUN needs namespaces and mounts") {
        return;
    }
    let kiln = busybox();
    let dir = context(
        &kiln,
        "ctx",
        "FROM bb:1\nARG TARGETARCH\nRUN echo $TARGETARCH > /arch\n",
        &[],
    );
    build_ok(
        &kiln,
        &dir,
        "plain:1",
        &["--build-arg", "SOURCE_DATE_EPOCH=0"],
    );
    let host = kiln_parser::values::Platform::host().to_string();
    build_ok(
        &kiln,
        &dir,
        "explicit:1",
        &["--build-arg", "SOURCE_DATE_EPOCH=0", "--platform", &host],
    );
    let id = |name: &str| kiln.ok(&["inspect", "-f", "{{.Id}}", name]);
    assert_eq!(id("plain:1"), id("explicit:1"));
    assert_eq!(
        entry(&kiln.root(), "plain:1").0,
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        build::sh(&kiln, "plain:1", "cat /arch").trim(),
        kiln_parser::values::Platform::host().architecture
    );
}

#[test]
fn bad_platform_lists_are_refused_with_the_reason() {
    let kiln = common::Kiln::new();
    let dir = context(&kiln, "ctx", "FROM scratch\n", &[]);
    let stderr = build_fails(&kiln, &dir, &["--platform", "linux/arm64,"]);
    assert!(
        stderr.contains("invalid --platform \"linux/arm64,\": an empty platform in the list"),
        "{stderr}"
    );
    let stderr = build_fails(&kiln, &dir, &["--platform", "linux/arm64,linux/a b"]);
    assert!(
        stderr.contains(
            "invalid --platform \"linux/a b\": \"a b\" is an invalid component of \"linux/a b\""
        ),
        "{stderr}"
    );
    let stderr = build_fails(
        &kiln,
        &dir,
        &[
            "--platform",
            "linux/arm64,linux/amd64",
            "--output",
            "type=registry,name=127.0.0.1:9/x:1,store=false",
        ],
    );
    assert!(
        stderr.contains("a build for several platforms is stored as an image index"),
        "{stderr}"
    );
    let stderr = build_fails(
        &kiln,
        &dir,
        &[
            "--platform",
            "linux/arm64,linux/amd64",
            "--output",
            "type=docker,dest=out.tar",
        ],
    );
    assert!(
        stderr.contains("docker exporter does not currently support exporting manifest lists"),
        "{stderr}"
    );
}

#[test]
fn a_foreign_run_without_an_emulator_says_what_is_missing() {
    if !kiln_testkit::root("RUN needs namespaces and mounts") {
        return;
    }
    // s390x: an architecture no test machine emulates unless asked to.
    if kiln_runtime::binfmt::emulation("linux", "s390x").is_ok() {
        return;
    }
    let kiln = busybox();
    let rootfs = kiln.path("rootfs");
    kiln.ok(&[
        "import",
        "--platform",
        "linux/s390x",
        rootfs.to_str().unwrap(),
        "bb:s390x",
    ]);
    let dir = context(&kiln, "ctx", "FROM bb:$TARGETARCH\nRUN true\n", &[]);
    let stderr = build_fails(&kiln, &dir, &["--platform", "linux/s390x"]);
    let host = kiln_parser::values::Platform::host().to_string();
    let run = kiln.fails(&["run", "--rm", "bb:s390x", "true"]);
    assert!(
        run.contains(&format!(
            "cannot run bb:s390x (linux/s390x) on this {host} machine: no binfmt_misc handler for s390x executables: install qemu-user-static"
        )),
        "{run}"
    );
    assert!(
        stderr.contains(&format!(
            "cannot run a RUN for linux/s390x on this {host} machine: no binfmt_misc handler for s390x executables: install qemu-user-static (apt-get install qemu-user-static)"
        )),
        "{stderr}"
    );
}

#[test]
fn a_base_of_another_platform_is_warned_about_as_buildkit_does() {
    if !kiln_testkit::root("RUN needs namespaces and mounts") || !build::arm64_runs() {
        return;
    }
    let Some(kiln) = busybox_two_platforms() else {
        return;
    };
    let dir = context(&kiln, "ctx", "FROM bb:arm64\nRUN true\n", &[]);
    let host = kiln_parser::values::Platform::host().to_string();
    let stderr = build_ok(&kiln, &dir, "w:1", &["--platform", &host]);
    assert!(
        stderr.contains(&format!(
            "Dockerfile:1: Base image docker.io/library/bb:arm64 was pulled with platform \"linux/arm64\", expected \"{host}\" for current build (InvalidBaseImagePlatform)"
        )),
        "{stderr}"
    );
}

#[test]
fn a_multi_platform_image_is_pushed_as_an_index_that_skopeo_reads_and_copies() {
    if !kiln_testkit::root("RUN needs namespaces and mounts")
        || !build::arm64_runs()
        || !registry::available()
    {
        return;
    }
    let Some(kiln) = busybox_two_platforms() else {
        return;
    };
    let registry = Registry::plain();
    let reference = registry.reference("multi/app:1");
    let dir = context(&kiln, "ctx", UNAME, &[]);
    let certs = kiln.path("no-certs");
    let output = kiln
        .command()
        .env("KILN_CERTS_DIR", &certs)
        .env("DOCKER_CONFIG", kiln.path("docker-config"))
        .args([
            "build",
            "--progress=plain",
            "--platform",
            "linux/arm64,linux/amd64",
            "--push",
            "-t",
            &reference,
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let raw = registry::skopeo_inspect(&registry, "multi/app:1", true);
    assert!(raw.status.success(), "{raw:?}");
    let index: Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(platforms(&index), ["linux/arm64", "linux/amd64"]);
    // The registry's index is the store's (pushing compressed the layers,
    // and the tag moved to the index that names the compressed ones).
    let (_, stored) = entry_full(&kiln.root(), &reference);
    assert_eq!(
        kiln_store::digest::digest_bytes(&raw.stdout).to_string(),
        stored
    );
    assert!(stderr.contains(&format!("1: digest: {stored}")), "{stderr}");
    // skopeo copies every platform out of it.
    let layout = kiln.path("copied");
    let mut copy = std::process::Command::new("skopeo");
    copy.arg("copy").arg("--all");
    copy.args(registry.skopeo_flags("src"));
    let copied = copy
        .arg(format!("docker://{reference}"))
        .arg(format!("oci:{}:app", layout.display()))
        .output()
        .unwrap();
    assert!(copied.status.success(), "{copied:?}");
    let blobs = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .count();
    // An index, two manifests, two configs and at least a layer each.
    assert!(blobs >= 7, "{blobs} blobs");
    // `kiln save` carries the index with both platforms too.
    let archive = kiln.path("app.tar");
    kiln.ok(&[
        "save",
        "--format",
        "oci",
        "-o",
        archive.to_str().unwrap(),
        &reference,
    ]);
    let inspected = std::process::Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci-archive:{}", archive.display()))
        .output()
        .unwrap();
    assert!(inspected.status.success(), "{inspected:?}");
    let saved: Value = serde_json::from_slice(&inspected.stdout).unwrap();
    assert_eq!(platforms(&saved), ["linux/arm64", "linux/amd64"]);
}

/// [`entry`] for a full reference.
fn entry_full(root: &Path, full: &str) -> (String, String) {
    let index: Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == full);
    assert!(entry.is_some(), "no entry for {full} in {index}");
    let entry = entry.unwrap();
    (
        entry["mediaType"].as_str().unwrap().to_owned(),
        entry["digest"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn a_build_platform_stage_cross_compiles_natively_for_each_target() {
    if !kiln_testkit::root("RUN needs namespaces and mounts") || !build::arm64_runs() {
        return;
    }
    let Some(kiln) = busybox_two_platforms() else {
        return;
    };
    // The classic cross-compilation shape: the build stage runs on the
    // build machine, told the target by TARGETARCH; the result is copied
    // into each target's image.
    let dockerfile = "FROM --platform=$BUILDPLATFORM bb:$BUILDARCH AS build\nARG TARGETARCH\nARG BUILDPLATFORM\nRUN mkdir /out && busybox uname -m > /out/built-on && echo $TARGETARCH-from-$BUILDPLATFORM > /out/for\nFROM bb:$TARGETARCH\nCOPY --from=build /out /out\n";
    let dir = context(&kiln, "ctx", dockerfile, &[]);
    build_ok(
        &kiln,
        &dir,
        "cross:1",
        &["--platform", "linux/arm64,linux/amd64"],
    );
    let host = kiln_parser::values::Platform::host().to_string();
    for (platform, arch) in [("linux/arm64", "arm64"), ("linux/amd64", "amd64")] {
        let out = kiln.ok(&[
            "run",
            "--rm",
            "--platform",
            platform,
            "cross:1",
            "cat",
            "/out/built-on",
            "/out/for",
        ]);
        assert_eq!(out, format!("x86_64\n{arch}-from-{host}\n"), "{platform}");
    }
}

#[test]
fn a_base_pulled_from_a_registry_index_gives_each_platform_its_own_image() {
    if !kiln_testkit::root("RUN needs namespaces and mounts")
        || !build::arm64_runs()
        || !registry::available()
    {
        return;
    }
    if !kiln_testkit::require(
        "QEMU",
        (std::env::consts::ARCH != "x86_64").then_some("this test builds on an amd64 machine"),
    ) {
        return;
    }
    let Some(arm64_busybox) = build::arm64_busybox_binary() else {
        return;
    };
    let registry = Registry::plain();
    let base_layer = |busybox: &Path| {
        let binary = std::fs::read(busybox).unwrap();
        common::layer(&[
            common::Entry::Dir("bin"),
            common::Entry::FileMode("bin/busybox", &binary, 0o755),
            common::Entry::Symlink("bin/sh", "busybox"),
        ])
    };
    let amd64 = registry.put_image(
        "base",
        "amd64",
        &[base_layer(Path::new("/bin/busybox"))],
        "linux/amd64",
    );
    let arm64 = registry.put_image(
        "base",
        "arm64",
        &[base_layer(&arm64_busybox)],
        "linux/arm64",
    );
    registry.put_index("base", "1", &[&amd64, &arm64]);
    let kiln = common::Kiln::new();
    let base = registry.reference("base:1");
    let dir = context(
        &kiln,
        "ctx",
        &format!("FROM {base}\nRUN busybox uname -m > /machine\n"),
        &[],
    );
    std::fs::create_dir_all(kiln.path("docker-config")).unwrap();
    let output = kiln
        .command()
        .env("KILN_CERTS_DIR", kiln.path("no-certs"))
        .env("DOCKER_CONFIG", kiln.path("docker-config"))
        .args([
            "build",
            "--progress=plain",
            "--platform",
            "linux/arm64,linux/amd64",
            "-t",
            "app:1",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("InvalidBaseImagePlatform"), "{stderr}");
    for (platform, machine) in [("linux/arm64", "aarch64\n"), ("linux/amd64", "x86_64\n")] {
        let out = kiln.ok(&[
            "run",
            "--rm",
            "--platform",
            platform,
            "app:1",
            "busybox",
            "cat",
            "/machine",
        ]);
        assert_eq!(out, machine, "{platform}");
    }
    // Both platforms' pulls stay under the base's tag, as a local index.
    let (media_type, digest) = entry_full(&kiln.root(), &base);
    assert_eq!(media_type, "application/vnd.oci.image.index.v1+json");
    let mut pulled = platforms(&blob(&kiln.root(), &digest));
    pulled.sort();
    assert_eq!(pulled, ["linux/amd64", "linux/arm64"]);
    let check = kiln.run(&["system", "check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

#[test]
fn an_oci_output_of_two_platforms_holds_the_index() {
    if !kiln_testkit::root("RUN needs namespaces and mounts")
        || !build::arm64_runs()
        || !common::tools("INTEROP", &[("skopeo", "skopeo")])
    {
        return;
    }
    let Some(kiln) = busybox_two_platforms() else {
        return;
    };
    let dir = context(&kiln, "ctx", UNAME, &[]);
    let archive = kiln.path("out.tar");
    let metadata = kiln.path("metadata.json");
    build_ok(
        &kiln,
        &dir,
        "oci:1",
        &[
            "--platform",
            "linux/arm64,linux/amd64",
            "--output",
            &format!("type=oci,dest={}", archive.display()),
            "--metadata-file",
            metadata.to_str().unwrap(),
        ],
    );
    let raw = std::process::Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci-archive:{}", archive.display()))
        .output()
        .unwrap();
    assert!(raw.status.success(), "{raw:?}");
    let index: Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(platforms(&index), ["linux/arm64", "linux/amd64"]);
    let digest = kiln_store::digest::digest_bytes(&raw.stdout).to_string();
    let metadata: Value = serde_json::from_slice(&std::fs::read(&metadata).unwrap()).unwrap();
    assert_eq!(metadata["containerimage.digest"], digest.as_str());
    assert_eq!(
        metadata["containerimage.descriptor"]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(entry(&kiln.root(), "oci:1").1, digest);
}

#[test]
fn local_and_tar_outputs_of_two_platforms_have_a_directory_per_platform() {
    if !kiln_testkit::root("RUN needs namespaces and mounts") || !build::arm64_runs() {
        return;
    }
    let Some(kiln) = busybox_two_platforms() else {
        return;
    };
    let dir = context(&kiln, "ctx", UNAME, &[]);
    let out = kiln.path("out");
    let tar = kiln.path("out.tar");
    for output in [
        format!("type=local,dest={}", out.display()),
        format!("type=tar,dest={}", tar.display()),
    ] {
        let built = build::build(
            &kiln,
            &[
                "--platform",
                "linux/arm64,linux/amd64",
                "--output",
                &output,
                dir.to_str().unwrap(),
            ],
        );
        assert!(
            built.status.success(),
            "{}",
            String::from_utf8_lossy(&built.stderr)
        );
    }
    // The tar read back by tar itself: the same layout.
    let unpacked = kiln.path("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let untar = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&unpacked)
        .output()
        .unwrap();
    assert!(
        untar.status.success(),
        "{}",
        String::from_utf8_lossy(&untar.stderr)
    );
    // buildx's layout: one directory per platform, named os_arch.
    for root in [&out, &unpacked] {
        for (name, machine) in [("linux_arm64", "aarch64\n"), ("linux_amd64", "x86_64\n")] {
            assert_eq!(
                std::fs::read_to_string(root.join(name).join("machine")).unwrap(),
                machine
            );
            assert!(root.join(name).join("bin/busybox").exists());
        }
    }
    // No -t: no image is left behind, as for one platform.
    let images = kiln.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(!images.contains("<none>"), "{images}");
}

/// An empty store with `a`'s two bases (by archive: the same images, as
/// another CI runner pulls them).
fn another_runner(a: &common::Kiln) -> common::Kiln {
    let b = common::Kiln::new();
    for platform in ["arm64", "amd64"] {
        let archive = a.path(&format!("bb-{platform}.tar"));
        a.ok(&[
            "save",
            "-o",
            archive.to_str().unwrap(),
            &format!("bb:{platform}"),
        ]);
        b.ok(&["load", "-i", archive.to_str().unwrap()]);
    }
    b
}

#[test]
fn a_cache_of_two_platforms_answers_both_on_another_store() {
    if !kiln_testkit::root("RUN needs namespaces and mounts") || !build::arm64_runs() {
        return;
    }
    let Some(a) = busybox_two_platforms() else {
        return;
    };
    let dir = context(&a, "ctx", UNAME, &[]);
    let cache = a.path("cache");
    let iid = a.path("iid");
    let build_with = |kiln: &common::Kiln, extra: &[&str]| {
        let output = kiln
            .command()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args([
                "build",
                "--progress=plain",
                "--platform",
                "linux/arm64,linux/amd64",
            ])
            .args(["-t", "multi:1", "--iidfile", iid.to_str().unwrap()])
            .args(extra)
            .arg(&dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(output.status.success(), "{stderr}");
        (std::fs::read_to_string(&iid).unwrap(), stderr)
    };
    let to = format!("type=local,dest={},mode=max", cache.display());
    let (first, stderr) = build_with(&a, &["--cache-to", &to]);
    assert!(stderr.contains("2 steps run"), "{stderr}");
    // One cache with both platforms' records.
    let index: Value =
        serde_json::from_slice(&std::fs::read(cache.join("index.json")).unwrap()).unwrap();
    let manifest = blob(&cache, index["manifests"][0]["digest"].as_str().unwrap());
    let records = blob(&cache, manifest["config"]["digest"].as_str().unwrap());
    let runs = records["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["description"].as_str().unwrap().starts_with("RUN "))
        .count();
    assert_eq!(runs, 2, "{records}");

    // Another store with the same two bases: nothing runs, the same index.
    let b = another_runner(&a);
    let from = format!("type=local,src={}", cache.display());
    let (second, stderr) = build_with(&b, &["--cache-from", &from]);
    assert!(stderr.contains("0 steps run, 2 cached"), "{stderr}");
    // The same images (config digests) for each platform; manifests may
    // differ, as the base layers' blobs came through an archive.
    let configs = |kiln: &common::Kiln, index: &str| -> Vec<(String, String)> {
        let index = blob(&kiln.root(), index.trim());
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let manifest = blob(&kiln.root(), m["digest"].as_str().unwrap());
                (
                    m["platform"]["architecture"].as_str().unwrap().to_owned(),
                    manifest["config"]["digest"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(configs(&b, &second), configs(&a, &first));
    // The host's (amd64: busybox_two_platforms needs it) image runs.
    assert_eq!(build::sh(&b, "multi:1", "cat /machine"), "x86_64\n");
}

#[test]
fn an_inline_cache_of_a_pushed_index_answers_every_platform() {
    if !kiln_testkit::root("RUN needs namespaces and mounts")
        || !build::arm64_runs()
        || !registry::available()
    {
        return;
    }
    let Some(a) = busybox_two_platforms() else {
        return;
    };
    let registry = Registry::plain();
    let reference = registry.reference("multi/inline:1");
    let dir = context(&a, "ctx", UNAME, &[]);
    let build_with = |kiln: &common::Kiln, extra: &[&str]| {
        let output = kiln
            .command()
            .env("KILN_CERTS_DIR", kiln.path("no-certs"))
            .env("DOCKER_CONFIG", kiln.path("docker-config"))
            .args([
                "build",
                "--progress=plain",
                "--platform",
                "linux/arm64,linux/amd64",
            ])
            .args(extra)
            .arg(&dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(output.status.success(), "{stderr}");
        stderr
    };
    let stderr = build_with(
        &a,
        &["--cache-to", "type=inline", "--push", "-t", &reference],
    );
    assert!(stderr.contains("2 steps run"), "{stderr}");
    // Another store with the same bases: each platform's image in the
    // index carries its own records, and both are read.
    let b = another_runner(&a);
    let stderr = build_with(&b, &["--cache-from", &reference, "-t", "multi:1"]);
    assert!(stderr.contains("0 steps run, 2 cached"), "{stderr}");
    assert_eq!(build::sh(&b, "multi:1", "cat /machine"), "x86_64\n");
}
