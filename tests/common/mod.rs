//! Shared helpers of the CLI tests: a temporary store, a kiln runner and
//! small root file systems.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::fs;
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use tempfile::TempDir;

/// A kiln with its own store in a temporary directory.
pub struct Kiln {
    /// Holds the store and any scratch files of the test.
    pub dir: TempDir,
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl Drop for Kiln {
    /// Kills the monitors of the store's containers (their containers die
    /// with them), so a test that fails half-way leaves no process behind,
    /// then deletes the store's bridges and their elements in the kiln
    /// table: a killed monitor does not take its run's bridge down, and a
    /// deleted store's bridge would hold one of the host's 31 pool
    /// subnets for good. Rootless kiln's user namespace holders of the
    /// test (their runtime directories are in its directory) go too.
    fn drop(&mut self) {
        let killed = self.kill_monitors();
        rootless::stop_holders(self.dir.path());
        let Ok(networks) = fs::read_dir(self.root().join("networks")) else {
            return;
        };
        // Their published ports' DNAT rules go with their leases, which
        // the next kiln command frees once the monitors are gone (those
        // the test killed itself too).
        if fs::read_dir(self.root().join("containers")).is_ok_and(|mut e| e.next().is_some()) {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while killed.iter().any(|pid| {
                fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                    !stat
                        .rsplit_once(") ")
                        .is_some_and(|(_, r)| r.starts_with('Z'))
                })
            }) && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let _ = self.command().args(["ps", "-a"]).output();
        }
        for entry in networks.flatten() {
            let Ok(text) = fs::read_to_string(entry.path().join("network.json")) else {
                continue;
            };
            let record: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            if let Some(bridge) = record["Bridge"].as_str().filter(|b| *b != "kiln0") {
                let _ = std::process::Command::new("ip")
                    .args(["link", "delete", bridge])
                    .stderr(std::process::Stdio::null())
                    .status();
                // And its elements in the host's kiln table, as `network
                // rm` removes them (each alone: one missing keeps none
                // of the others).
                let mut elements = vec![
                    ("bridges", format!("\"{bridge}\"")),
                    ("internal", format!("\"{bridge}\"")),
                    ("same", format!("\"{bridge}\" . \"{bridge}\"")),
                ];
                if let Some(subnet) = record["Subnet"].as_str() {
                    elements.push(("nat_subnets", subnet.to_owned()));
                }
                for (set, element) in elements {
                    let _ = std::process::Command::new("nft")
                        .args(["delete", "element", "inet", "kiln", set])
                        .arg(format!("{{ {element} }}"))
                        .stderr(std::process::Stdio::null())
                        .status();
                }
            }
        }
    }
}

impl Kiln {
    /// Kills the monitors of the store's containers; their pids.
    fn kill_monitors(&self) -> Vec<i32> {
        let mut killed = Vec::new();
        let containers = self.root().join("containers");
        let Ok(entries) = fs::read_dir(&containers) else {
            return killed;
        };
        for entry in entries.flatten() {
            let Ok(state) = fs::read_to_string(entry.path().join("state.json")) else {
                continue;
            };
            let Some(pid) = serde_json::from_str::<serde_json::Value>(&state)
                .ok()
                .and_then(|v| v["MonitorPid"].as_i64())
                .and_then(|p| i32::try_from(p).ok())
                .filter(|p| *p > 0)
            else {
                continue;
            };
            // Only that container's monitor, not a process that reused the pid.
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&*entry.path().to_string_lossy()) {
                // SAFETY: kill with a pid whose command line names this store.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                killed.push(pid);
            }
        }
        killed
    }
}

/// The user named by `KILN_TEST_AS_USER`, as whom [`Kiln`] runs the kiln
/// binary (the CI's second, rootless pass of the build tests): made with
/// subordinate ids by [`rootless::user`] when missing.
pub fn test_user() -> Option<&'static rootless::TestUser> {
    static USER: std::sync::OnceLock<Option<rootless::TestUser>> = std::sync::OnceLock::new();
    USER.get_or_init(|| {
        let name = std::env::var("KILN_TEST_AS_USER")
            .ok()
            .filter(|n| !n.is_empty())?;
        Some(rootless::user(&name, Some(TEST_USER_RANGE)))
    })
    .as_ref()
}

/// The kiln binary, or with [`test_user`] a copy of it that user can
/// reach and run.
fn kiln_binary() -> PathBuf {
    static COPY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let built = assert_cmd::cargo::cargo_bin("kiln");
    if test_user().is_none() {
        return built;
    }
    COPY.get_or_init(|| {
        // One copy per build of kiln, shared by every test binary (a
        // debug kiln is about 150 MB): named by the build's size and
        // time, made under a temporary name and renamed into place.
        let dir = std::env::temp_dir().join("kiln-as-user");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let meta = fs::metadata(&built).unwrap();
        let stamp = meta
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let copy = dir.join(format!("kiln-{stamp}-{}", meta.len()));
        if !copy.exists() {
            let partial = dir.join(format!(".kiln-{}", std::process::id()));
            copy_executable(&built, &partial);
            fs::rename(&partial, &copy).unwrap();
        }
        copy
    })
    .clone()
}

/// `program` as a command: directly, or with [`test_user`] through
/// `setpriv` as that user (in a mount namespace where `/dev/net/tun` is
/// open to it, as on most hosts, when the host keeps it to root).
fn as_test_user(program: &Path, scratch: &Path) -> std::process::Command {
    let Some(user) = test_user() else {
        return std::process::Command::new(program);
    };
    let tun_open =
        fs::metadata("/dev/net/tun").is_ok_and(|m| m.permissions().mode() & 0o006 == 0o006);
    let ids = [
        format!("--reuid={}", user.uid),
        format!("--regid={}", user.gid),
        "--init-groups".to_owned(),
    ];
    let mut command = if tun_open {
        let mut command = std::process::Command::new("setpriv");
        command.args(ids).arg("--");
        command
    } else {
        let mut command = std::process::Command::new("unshare");
        command
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(
                "t=\"$1\"/tun; shift; { test -c \"$t\" || { mknod \"$t\" c 10 200 && chmod 666 \"$t\"; }; } \
                 && mount --bind \"$t\" /dev/net/tun && exec setpriv \"$@\"",
            )
            .arg("sh")
            .arg(scratch)
            .args(ids)
            .arg("--");
        command
    };
    command
        .arg(program)
        .env("HOME", scratch)
        .env("XDG_RUNTIME_DIR", rootless::runtime_dir(scratch, user))
        .env("USER", &user.name);
    command
}

/// `program` as a command run as kiln's user: directly as root, through
/// `setpriv` as [`test_user`] in the rootless pass (an ssh-agent serves
/// only its own user).
pub fn command_as_kiln_user(program: &str) -> std::process::Command {
    let Some(user) = test_user() else {
        return std::process::Command::new(program);
    };
    let mut command = std::process::Command::new("setpriv");
    command
        .arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={}", user.gid))
        .args(["--init-groups", "--", program]);
    command
}

/// Creates an empty file as kiln's user would (root, or [`test_user`]):
/// for files a test drops into a running container through
/// `/proc/PID/root`, which root outside a rootless container's user
/// namespace may not own (EOVERFLOW).
pub fn touch_as_kiln(path: &Path) {
    let Some(user) = test_user() else {
        fs::write(path, "").unwrap();
        return;
    };
    let status = std::process::Command::new("setpriv")
        .arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={}", user.gid))
        .args(["--init-groups", "--", "touch"])
        .arg(path)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "touch {} as {}",
        path.display(),
        user.name
    );
}

/// The host's uid (`gid`: gid) of a file kiln wrote with id `id` in its
/// namespace where the host sees it (`--output type=local`): `id` as
/// root; in the rootless pass ([`test_user`]) the user's own id for 0,
/// its subordinate ids from 1.
pub fn host_id(id: u32, gid: bool) -> u32 {
    match test_user() {
        None => id,
        Some(user) if id == 0 => {
            if gid {
                user.gid
            } else {
                user.uid
            }
        }
        Some(_) => TEST_USER_RANGE + id - 1,
    }
}

/// The first subordinate id of [`test_user`].
const TEST_USER_RANGE: u32 = 1_200_000;

impl Kiln {
    /// A fresh, empty store (with [`test_user`], one that user owns, in a
    /// directory it can reach).
    pub fn new() -> Self {
        let dir = TempDir::new().unwrap();
        if let Some(user) = test_user() {
            // The user's, so kiln as the user writes outputs (`save -o`,
            // `--iidfile`) beside the store as it would as root.
            std::os::unix::fs::chown(dir.path(), Some(user.uid), Some(user.gid)).unwrap();
        }
        Self { dir }
    }

    /// With [`test_user`], gives that user what the test wrote in its
    /// directory (contexts, archives, and what the test process made in
    /// the store by opening it as root), as a rootless user's own files
    /// are: kiln's namespace can only read what the user can. Files of
    /// the namespace's other ids are left alone.
    pub fn hand_to_test_user(&self) {
        fn walk(path: &Path, uid: u32, gid: u32) {
            let Ok(meta) = fs::symlink_metadata(path) else {
                return;
            };
            if std::os::unix::fs::MetadataExt::uid(&meta) == 0 {
                let _ = std::os::unix::fs::lchown(path, Some(uid), Some(gid));
            }
            if meta.is_dir() {
                for entry in fs::read_dir(path).into_iter().flatten().flatten() {
                    walk(&entry.path(), uid, gid);
                }
            }
        }
        let Some(user) = test_user() else { return };
        walk(self.dir.path(), user.uid, user.gid);
    }

    /// The store root.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// A scratch path inside the test's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A `kiln` command on this store.
    pub fn command(&self) -> Command {
        self.hand_to_test_user();
        let mut command = Command::from_std(as_test_user(&kiln_binary(), self.dir.path()));
        command
            .arg("--root")
            .arg(self.root())
            .env_remove("KILN_ROOT")
            .env_remove("KILN_LOG")
            .env_remove("SOURCE_DATE_EPOCH");
        command
    }

    /// Starts `kiln ARGS` with stdin closed and stdout and stderr piped,
    /// for tests that act while it runs.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.hand_to_test_user();
        as_test_user(&kiln_binary(), self.dir.path())
            .arg("--root")
            .arg(self.root())
            .args(args)
            .env_remove("KILN_ROOT")
            .env_remove("KILN_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Runs kiln with `args`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Runs kiln; returns (exit code, stdout, stderr), -1 for a signal.
    pub fn outcome(&self, args: &[&str]) -> (i32, String, String) {
        let output = self.run(args);
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    }

    /// Runs kiln and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "kiln {args:?} failed ({:?}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs kiln, asserts failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            !output.status.success(),
            "kiln {args:?} should have failed; stdout:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8(output.stderr).unwrap()
    }

    /// Imports a small root file system as `reference` and returns the ID.
    pub fn import_sample(&self, reference: &str) -> String {
        let rootfs = self.path(&format!("rootfs-{}", reference.replace(['/', ':'], "_")));
        sample_rootfs(&rootfs, reference);
        self.ok(&[
            "import",
            rootfs.to_str().unwrap(),
            reference,
            "--change",
            "CMD [\"sh\"]",
        ])
        .trim()
        .to_owned()
    }
}

pub mod build;
pub mod registry;
pub mod rootless;

/// Appends a raw tar entry (name, type flag, link target, content) to
/// `out`, header written by hand so that names the `tar` crate refuses
/// (`../x`, `/abs`) can be made.
pub fn tar_entry(out: &mut Vec<u8>, name: &str, kind: u8, link: &str, content: &[u8]) {
    tar_entry_mode(out, name, kind, link, content, 0o644);
}

/// [`tar_entry`] with a mode.
pub fn tar_entry_mode(
    out: &mut Vec<u8>,
    name: &str,
    kind: u8,
    link: &str,
    content: &[u8],
    mode: u32,
) {
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    header[100..107].copy_from_slice(format!("{mode:07o}").as_bytes());
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

/// Ends a tar archive made with [`tar_entry`].
pub fn tar_end(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0u8; 1024]);
}

/// A small root file system whose `/etc/name` holds `name`.
pub fn sample_rootfs(dir: &Path, name: &str) {
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::write(dir.join("etc/name"), format!("{name}\n")).unwrap();
    fs::write(dir.join("bin/tool"), "#!/bin/sh\necho tool\n").unwrap();
    fs::set_permissions(dir.join("bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    let _ = symlink("tool", dir.join("bin/alias"));
}

/// Gives a rootfs an `app` user (1000) and a `staff` group (50) beside
/// root, as the build and run tests expect.
pub fn add_app_user(rootfs: &Path) {
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .unwrap();
    fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\napp:x:1000:\nstaff:x:50:app\n",
    )
    .unwrap();
}

/// A busybox root file system from Debian's busybox-static, which the
/// tests need for anything that runs a shell. Fails (never skips) when the
/// package is missing: CI installs it.
pub fn busybox_rootfs(dir: &Path) {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "/bin/busybox is missing: install busybox-static (apt-get install busybox-static)"
    );
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::copy(busybox, dir.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "echo", "cat", "ls", "id", "true", "false", "env", "pwd",
    ] {
        symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
}

/// Command lines of the processes, other than kiln's own, that contain
/// `marker`.
pub fn processes_with(marker: &str) -> Vec<String> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(marker) && !c.contains("kiln"))
        .collect()
}

/// Ids of the processes whose command line contains `marker`.
pub fn pids_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmdline) = fs::read(entry.path().join("cmdline"))
            && String::from_utf8_lossy(&cmdline).contains(marker)
        {
            found.push(pid);
        }
    }
    found
}

/// Whether every tool of `tools` (name, Debian package) is installed;
/// prints SKIPPED (or fails where `KILN_REQUIRE_<NAME>=1`, as in CI) when
/// one is missing.
pub fn tools(name: &str, tools: &[(&str, &str)]) -> bool {
    let missing: Vec<String> = tools
        .iter()
        .filter(|(tool, _)| !have(tool))
        .map(|(tool, package)| format!("{tool} (apt-get install {package})"))
        .collect();
    kiln_testkit::require(
        name,
        (!missing.is_empty())
            .then(|| format!("this test needs {}", missing.join(", ")))
            .as_deref(),
    )
}

/// Whether this is root with every tool of `tools` on PATH; prints
/// SKIPPED with `what` and the reason (or fails where
/// `KILN_REQUIRE_NETWORK=1`, as in CI) otherwise.
pub fn root_with_network_tools(what: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|tool| !have(tool)).collect();
    if is_root() && missing.is_empty() {
        return true;
    }
    let reason = if is_root() {
        format!("missing {missing:?}")
    } else {
        "needs root".to_owned()
    };
    kiln_testkit::require("NETWORK", Some(&format!("{what}: {reason}")))
}

/// Whether a tool is on PATH.
pub fn have(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Files of a directory tree: relative path -> (mode, content or link).
pub fn tree(dir: &Path) -> Vec<(String, u32, String)> {
    let mut entries = Vec::new();
    for entry in walkdir(dir) {
        let meta = fs::symlink_metadata(&entry).unwrap();
        let rel = entry.strip_prefix(dir).unwrap().display().to_string();
        let content = if meta.file_type().is_symlink() {
            format!("-> {}", fs::read_link(&entry).unwrap().display())
        } else if meta.is_file() {
            String::from_utf8_lossy(&fs::read(&entry).unwrap()).into_owned()
        } else {
            String::new()
        };
        entries.push((rel, meta.permissions().mode(), content));
    }
    entries.sort();
    entries
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out
}

/// The snapshot directories (overlay lowers) of an image's layers, base
/// first, made as needed.
pub fn image_snapshots(root: &Path, image: &str) -> Vec<PathBuf> {
    let store = kiln_store::Store::open(root).unwrap();
    let image = store.resolve(image).unwrap();
    store
        .snapshots(&image.manifest.layers, &image.config.rootfs.diff_ids)
        .unwrap()
        .into_iter()
        .map(|s| s.path)
        .collect()
}

/// Reads a file of an image in a store, through the store's snapshots
/// (the top-most layer that has the file at that path wins).
pub fn image_file(root: &Path, image: &str, path: &str) -> Option<String> {
    let mut found = None;
    for snapshot in image_snapshots(root, image) {
        if let Ok(content) = fs::read_to_string(snapshot.join(path)) {
            found = Some(content);
        }
    }
    found
}

/// One entry of a layer made by [`layer`].
pub enum Entry<'a> {
    /// A directory (mode 0755).
    Dir(&'a str),
    /// A directory with another mode.
    DirMode(&'a str, u32),
    /// A regular file (mode 0644) and its content.
    File(&'a str, &'a [u8]),
    /// A regular file with another mode.
    FileMode(&'a str, &'a [u8], u32),
    /// A symlink and its target.
    Symlink(&'a str, &'a str),
}

/// An uncompressed layer tar holding `entries` in order, owned by 0:0.
pub fn layer(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_ustar();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_600_000_000);
        let (path, data): (&str, &[u8]) = match entry {
            Entry::Dir(path) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                (path, b"")
            }
            Entry::DirMode(path, mode) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(*mode);
                (path, b"")
            }
            Entry::File(path, content) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                (path, content)
            }
            Entry::FileMode(path, content, mode) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                (path, content)
            }
            Entry::Symlink(path, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_link_name(target).unwrap();
                (path, b"")
            }
        };
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, path, data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// An uncompressed layer tar of a directory tree (with owners and modes).
pub fn layer_of_dir(dir: &Path) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.append_dir_all(".", dir).unwrap();
    builder.into_inner().unwrap()
}

/// An OCI image archive (`kiln load` input) of one image, `reference`,
/// with uncompressed `layers` (base first) and `CMD ["sh"]`.
pub fn oci_archive(reference: &str, layers: &[Vec<u8>]) -> Vec<u8> {
    use kiln_store::digest::digest_bytes;
    use serde_json::json;
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let diff_ids: Vec<String> = layers.iter().map(|l| digest_bytes(l).to_string()).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    }))
    .unwrap();
    let descriptors: Vec<_> = layers
        .iter()
        .map(|l| {
            json!({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                   "digest": digest_bytes(l).to_string(), "size": l.len()})
        })
        .collect();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest_bytes(&config).to_string(), "size": config.len()},
        "layers": descriptors
    }))
    .unwrap();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": digest_bytes(&manifest).to_string(), "size": manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": reference}}]
    }))
    .unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut header = tar::Header::new_ustar();
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, name, data).unwrap();
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json", &index);
    let mut blobs: Vec<&[u8]> = layers.iter().map(Vec::as_slice).collect();
    blobs.push(&config);
    blobs.push(&manifest);
    let mut added = std::collections::BTreeSet::new();
    for blob in blobs {
        let name = format!("blobs/sha256/{}", digest_bytes(blob).encoded());
        if added.insert(name.clone()) {
            add(&name, blob);
        }
    }
    builder.into_inner().unwrap()
}

/// Copies an executable with `cp`, another process: a write descriptor
/// of the test process would be inherited by any child another test
/// thread forks at that moment, and exec of the copy would then fail with
/// ETXTBSY until that child has exec'd in turn.
pub fn copy_executable(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cp {} {} failed",
        from.display(),
        to.display()
    );
}
