//! End-to-end tests of the runtime against a busybox rootfs. They need root
//! (namespaces, mounts) and /bin/busybox (busybox-static).

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use kiln_runtime::{Limits, Mount, Network, RunOutcome, RunSpec, RuntimeError};

const INIT: &str = match option_env!("KILN_TEST_INIT") {
    Some(p) => p,
    None => env!("CARGO_BIN_EXE_kiln-test-init"),
};

fn skip() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED: needs root");
        return true;
    }
    assert!(
        Path::new("/bin/busybox").exists(),
        "busybox-static is required"
    );
    false
}

const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "id", "sleep", "ps", "true", "false", "kill", "head", "tr", "dd",
    "hostname", "touch", "rm", "grep", "stat", "readlink", "mount",
];

/// A test directory with a busybox rootfs layer and an empty upper dir.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("kiln-rt-")
            .tempdir()
            .unwrap();
        let base = dir.path().join("base");
        fs::create_dir_all(base.join("bin")).unwrap();
        fs::create_dir_all(base.join("etc")).unwrap();
        fs::create_dir_all(base.join("tmp")).unwrap();
        fs::copy("/bin/busybox", base.join("bin/busybox")).unwrap();
        for applet in APPLETS {
            symlink("busybox", base.join("bin").join(applet)).unwrap();
        }
        fs::write(
            base.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:alice:/home/alice:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            base.join("etc/group"),
            "root:x:0:\nalice:x:1000:\nstaff:x:50:alice\naudio:x:29:alice\n",
        )
        .unwrap();
        fs::write(base.join("etc/old"), "old\n").unwrap();
        fs::create_dir(dir.path().join("upper")).unwrap();
        Fixture { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn spec(&self, argv: &[&str]) -> RunSpec {
        RunSpec {
            layers: vec![self.path("base")],
            upper: self.path("upper"),
            argv: argv.iter().map(ToString::to_string).collect(),
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            user: "root".into(),
            hostname: "kilnbox".into(),
            network: Network::None,
            mounts: Vec::new(),
            limits: Limits::default(),
            capture: true,
            tty: false,
            interactive: false,
        }
    }

    fn run(&self, spec: &RunSpec) -> Result<RunOutcome, RuntimeError> {
        let result = kiln_runtime::run_with_init(spec, Path::new(INIT));
        self.assert_clean();
        result
    }

    fn sh(&self, script: &str) -> RunOutcome {
        self.run(&self.spec(&["sh", "-c", script])).unwrap()
    }

    /// Nothing of this test is mounted on the host, and no temp dir is left.
    fn assert_clean(&self) {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let needle = self.dir.path().to_str().unwrap();
        assert!(!mountinfo.contains(needle), "leaked mount: {mountinfo}");
        for entry in fs::read_dir(self.dir.path()).unwrap() {
            let name = entry.unwrap().file_name();
            assert!(
                !name.to_string_lossy().starts_with(".kiln-run-"),
                "leaked {name:?}"
            );
        }
    }
}

fn stdout(outcome: &RunOutcome) -> String {
    String::from_utf8_lossy(&outcome.stdout).into_owned()
}

#[test]
fn echo_output_is_captured() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    let out = fx.run(&fx.spec(&["echo", "hello", "world"])).unwrap();
    assert_eq!(stdout(&out), "hello world\n");
    assert_eq!(out.exit_code, 0);
    let out = fx.sh("echo out; echo err >&2");
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(out.stderr, b"err\n");
}

#[test]
fn exit_codes_follow_docker() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    assert_eq!(fx.sh("exit 3").exit_code, 3);
    assert_eq!(fx.sh("kill -9 $$").exit_code, 137);
    assert_eq!(fx.sh("kill -TERM $$").exit_code, 143);
}
