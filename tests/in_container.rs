//! kiln inside an unprivileged container (issue 18): podman without
//! `--privileged` runs a root file system holding only kiln, its
//! libraries and busybox; kiln there lacks `CAP_SYS_ADMIN`, builds in a
//! user namespace of its own and makes the image a root build makes on
//! the host. What it needs (README, "In an unprivileged container") is
//! shown by the refusals without it.
//!
//! Root, podman and its `runc` runtime (`crun` refuses this machine's
//! hybrid cgroups); the ulimits are given because podman's defaults are
//! above this sandbox's hard limits. A missing podman prints SKIPPED
//! (or fails where `KILN_REQUIRE_INTEROP=1`).
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use common::build::{busybox, context};

/// A root file system with kiln (this build's), the shared libraries it
/// links and busybox.
fn rootfs(dir: &Path) {
    common::busybox_rootfs(dir);
    for sub in ["tmp", "proc", "dev", "sys", "store", "src"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let kiln = env!("CARGO_BIN_EXE_kiln");
    fs::copy(kiln, dir.join("bin/kiln")).unwrap();
    let ldd = Command::new("ldd").arg(kiln).output().unwrap();
    assert!(ldd.status.success(), "{ldd:?}");
    for line in String::from_utf8(ldd.stdout).unwrap().lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x...)".
        let Some(path) = line.split_whitespace().find(|word| word.starts_with('/')) else {
            continue;
        };
        let target = dir.join(path.trim_start_matches('/'));
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::copy(path, target).unwrap();
    }
    if !dir.join("etc/passwd").exists() {
        fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
    }
}

/// `podman run` of `script` in `rootfs` without --privileged, with
/// `security` options, the store and the build context as volumes.
fn podman(work: &Path, rootfs: &Path, security: &[&str], script: &str) -> Output {
    let mut command = Command::new("podman");
    command
        .arg("--root")
        .arg(work.join("podman/root"))
        .arg("--runroot")
        .arg(work.join("podman/run"))
        .args(["--runtime", "runc", "run", "--rm"])
        .args([
            "--ulimit",
            "nofile=4096:4096",
            "--ulimit",
            "nproc=4096:4096",
        ])
        .arg("--network=none");
    for option in security {
        command.args(["--security-opt", option]);
    }
    command
        .arg("-v")
        .arg(format!("{}:/store", work.join("store").display()))
        .arg("-v")
        .arg(format!("{}:/src:ro", work.join("ctx").display()))
        .arg("--env")
        .arg("SOURCE_DATE_EPOCH=1700000000")
        .arg("--rootfs")
        .arg(rootfs)
        .args(["/bin/sh", "-c", script]);
    command.output().unwrap()
}

#[test]
fn kiln_builds_in_podman_without_privileges_the_image_a_root_build_makes() {
    if !kiln_testkit::root("podman runs containers as root here") {
        return;
    }
    if !common::have("podman") || !common::have("runc") {
        kiln_testkit::require(
            "INTEROP",
            Some("podman and runc are missing (apt-get install podman runc)"),
        );
        return;
    }
    let host = busybox();
    let dockerfile = "FROM bb:1\nRUN echo hi > /hi && mkdir -p /data && chmod 750 /data\n";
    let dir = context(&host, "ctx", dockerfile, &[]);
    let work = host.path("");
    fs::create_dir_all(work.join("store")).unwrap();
    host.ok(&[
        "save",
        "-o",
        work.join("store/bb.tar").to_str().unwrap(),
        "bb:1",
    ]);
    let root = host.path("podman-rootfs");
    rootfs(&root);

    // The same build on the host, as root.
    let iid = host.path("host-iid");
    let output = host
        .command()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "-q", "--network", "none", "--iidfile"])
        .arg(&iid)
        .arg(&dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let expected = fs::read_to_string(&iid).unwrap();

    let script = "set -e; kiln --root /store/kiln load -q -i /store/bb.tar; \
        kiln --root /store/kiln build -q --network none --iidfile /store/iid -t app:1 /src >/dev/null; \
        kiln --root /store/kiln run --rm --network none app:1 cat /hi; \
        kiln --root /store/kiln info";
    let security = ["unmask=ALL", "seccomp=unconfined"];
    let output = podman(&work, &root, &security, script);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("hi\n"), "{stdout}");
    // Root without CAP_SYS_ADMIN: kiln's own user namespace, overlay
    // with user xattrs, one id (no /etc/subuid in the container).
    assert!(stdout.contains("userxattr: true"), "{stdout}");
    assert!(stdout.contains("ID Map: 0:0:1"), "{stdout}");
    assert_eq!(
        fs::read_to_string(work.join("store/iid")).unwrap(),
        expected,
        "the image a root build on the host makes"
    );

    // Without each option, the RUN says what the container lacks.
    let script = "kiln --root /store/kiln build --no-cache --network none /src";
    let output = podman(&work, &root, &["seccomp=unconfined"], script);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("mounting /proc: EPERM: Operation not permitted (kiln runs in a container whose /proc has masked paths: start that container with --security-opt unmask=ALL"),
        "{stderr}"
    );
    let output = podman(&work, &root, &["unmask=ALL"], script);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("setting hostname \"buildkitsandbox\": EPERM: Operation not permitted (a seccomp profile refuses it: start the container kiln runs in with --security-opt seccomp=unconfined"),
        "{stderr}"
    );
}
