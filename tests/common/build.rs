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
