//! Helpers of the build tests: a store with a busybox base image, context
//! directories and `kiln build` runs.

use std::fs;
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::process::Output;

use super::Kiln;

/// A store with `bb:1`: busybox with an `app` user (1000) and a `staff`
/// group (50), a world-writable /tmp and a file /etc/base-file.
pub fn busybox() -> Kiln {
    assert!(
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() } == 0,
        "kiln build tests need root (RUN uses namespaces and mounts); CI runs them as root"
    );
    let kiln = Kiln::new();
    let rootfs = kiln.path("rootfs");
    super::busybox_rootfs(&rootfs);
    for applet in [
        "rm", "mkdir", "stat", "readlink", "head", "tail", "test", "wc", "ls", "sort", "tr",
        "touch", "ln", "find", "md5sum", "grep", "chmod", "sleep", "unshare", "yes", "nc",
    ] {
        let _ = symlink("busybox", rootfs.join("bin").join(applet));
    }
    super::add_app_user(&rootfs);
    fs::write(rootfs.join("etc/base-file"), "base\n").unwrap();
    fs::write(rootfs.join("etc/name2"), "base2\n").unwrap();
    fs::create_dir_all(rootfs.join("opt")).unwrap();
    fs::write(rootfs.join("opt/old"), "old\n").unwrap();
    fs::create_dir_all(rootfs.join("tmp")).unwrap();
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    kiln.ok(&["import", rootfs.to_str().unwrap(), "bb:1"]);
    kiln
}

/// Writes a context directory `name` with a Dockerfile and `files`
/// (relative path, content).
pub fn context(kiln: &Kiln, name: &str, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = kiln.path(name);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    for (path, content) in files {
        let path = dir.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
    // Now, not at the next kiln command: chown changes ctimes, which
    // tests of unchanged-file reuse set up before they wait.
    kiln.hand_to_test_user();
    dir
}

/// `kiln build --progress=plain ARGS`.
pub fn build(kiln: &Kiln, args: &[&str]) -> Output {
    kiln.command()
        .args(["build", "--progress=plain"])
        .args(args)
        .output()
        .unwrap()
}

/// Builds `dir` as `tag`, asserts success and returns stderr.
pub fn build_ok(kiln: &Kiln, dir: &Path, tag: &str, extra: &[&str]) -> String {
    let mut args = vec!["-t", tag];
    args.extend_from_slice(extra);
    args.push(dir.to_str().unwrap());
    let output = build(kiln, &args);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "build {args:?} failed:\n{stderr}");
    stderr
}

/// Builds `dir`, asserts failure and returns stderr.
pub fn build_fails(kiln: &Kiln, dir: &Path, extra: &[&str]) -> String {
    let mut args = extra.to_vec();
    args.push(dir.to_str().unwrap());
    let output = build(kiln, &args);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        !output.status.success(),
        "build {args:?} should have failed:\n{stderr}"
    );
    stderr
}

/// Runs `sh -c SCRIPT` in `image` and returns stdout.
pub fn sh(kiln: &Kiln, image: &str, script: &str) -> String {
    kiln.ok(&["run", "--rm", image, "sh", "-c", script])
}

/// Whether the step whose plain-progress name contains `name` was
/// answered from the cache (`#N CACHED`); the step must be in `stderr`.
pub fn cached(stderr: &str, name: &str) -> bool {
    let step = stderr
        .lines()
        .find(|l| l.starts_with('#') && l.contains(name))
        .and_then(|l| l.split_whitespace().next())
        .unwrap();
    stderr.lines().any(|l| l == format!("{step} CACHED"))
}

/// Whether this machine runs arm64 executables (natively, or through
/// qemu-user-static's `binfmt_misc` handler with the F flag); prints
/// SKIPPED (or fails where `KILN_REQUIRE_QEMU=1`, as in CI) with what is
/// missing otherwise.
pub fn arm64_runs() -> bool {
    let unmet = kiln_runtime::binfmt::emulation("linux", "arm64")
        .err()
        .map(|e| format!("this test runs arm64 executables: {e}"));
    kiln_testkit::require("QEMU", unmet.as_deref())
}

/// Debian's busybox-static for arm64, unpacked once per target directory
/// (`apt-get download busybox-static:arm64`, which needs `dpkg
/// --add-architecture arm64` and `apt-get update`, as .ci/run does):
/// the path of its `busybox`. `None` (SKIPPED, or a failure where
/// `KILN_REQUIRE_QEMU=1`) when it cannot be had.
pub fn arm64_busybox_binary() -> Option<PathBuf> {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("busybox-arm64");
    let binary = cache.join("bin/busybox");
    if binary.exists() {
        return Some(binary);
    }
    let fetch = || -> Result<(), String> {
        let staging =
            tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).map_err(|e| e.to_string())?;
        let download = std::process::Command::new("apt-get")
            .args(["download", "busybox-static:arm64"])
            .current_dir(staging.path())
            .output()
            .map_err(|e| format!("apt-get: {e}"))?;
        if !download.status.success() {
            return Err(format!(
                "apt-get download busybox-static:arm64 failed (dpkg --add-architecture arm64 && apt-get update first): {}",
                String::from_utf8_lossy(&download.stderr).trim()
            ));
        }
        let deb = fs::read_dir(staging.path())
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .ok_or("apt-get download left no .deb")?;
        let unpacked = staging.path().join("unpacked");
        let extract = std::process::Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(&unpacked)
            .status()
            .map_err(|e| format!("dpkg-deb: {e}"))?;
        if !extract.success() {
            return Err(format!("dpkg-deb -x {} failed", deb.display()));
        }
        // Another test may have put it in place meanwhile: either is fine.
        let _ = fs::rename(&unpacked, &cache);
        Ok(())
    };
    let unmet = fetch().err().or_else(|| {
        (!binary.exists()).then(|| "the busybox-static:arm64 package has no bin/busybox".to_owned())
    });
    kiln_testkit::require("QEMU", unmet.as_deref()).then_some(binary)
}

/// A store with `bb:amd64` (the host's busybox, see [`busybox`]) and
/// `bb:arm64` (Debian's arm64 busybox-static, imported with `--platform
/// linux/arm64`), each with `/bin/sh` and `uname`: a base per platform
/// for `FROM bb:$TARGETARCH`. `None` when the arm64 package cannot be
/// had (see [`arm64_busybox_binary`]).
pub fn busybox_two_platforms() -> Option<Kiln> {
    // The host's busybox is the amd64 base.
    if !kiln_testkit::require(
        "QEMU",
        (std::env::consts::ARCH != "x86_64")
            .then_some("the two-platform tests build on an amd64 machine"),
    ) {
        return None;
    }
    let arm64 = arm64_busybox_binary()?;
    let kiln = busybox();
    kiln.ok(&["tag", "bb:1", "bb:amd64"]);
    let rootfs = kiln.path("rootfs-arm64");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::create_dir_all(rootfs.join("etc")).unwrap();
    fs::create_dir_all(rootfs.join("tmp")).unwrap();
    fs::copy(&arm64, rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "echo", "cat", "uname", "ls", "true", "seq", "expr"] {
        symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    super::add_app_user(&rootfs);
    kiln.ok(&[
        "import",
        "--platform",
        "linux/arm64",
        rootfs.to_str().unwrap(),
        "bb:arm64",
    ]);
    Some(kiln)
}
