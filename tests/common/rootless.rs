//! Unprivileged users for the rootless tests: made by the test (as root)
//! with `useradd`, given subordinate ids or none, and kiln run as them
//! through `setpriv`.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A user the tests made.
pub struct TestUser {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
}

/// Whether the tools a rootless test needs are here: root (to make the
/// user), `useradd`/`usermod`, `setpriv`, and `newuidmap`/`newgidmap`
/// (Debian package uidmap); else a SKIPPED line, or a failure where
/// `KILN_REQUIRE_UIDMAP=1` (CI).
pub fn can_test() -> bool {
    let missing = ["useradd", "usermod", "setpriv", "newuidmap", "newgidmap"]
        .into_iter()
        .find(|tool| !super::have(tool))
        .map(|tool| {
            format!("{tool} is not installed (Debian packages passwd, util-linux, uidmap)")
        });
    let unmet = if super::is_root() {
        missing
    } else {
        Some("the rootless tests make a user: they need root".to_owned())
    };
    kiln_testkit::require("UIDMAP", unmet.as_deref())
}

/// The user `name`, made if missing; with `ranges`, `/etc/subuid` and
/// `/etc/subgid` give it 65536 ids from `ranges`, without, none. Test
/// binaries run at once, so the check and the change hold a lock.
pub fn user(name: &str, ranges: Option<u32>) -> TestUser {
    let lock = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open("/tmp/kiln-test-users.lock")
        .unwrap();
    // SAFETY: flock on a descriptor we own.
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) },
        0
    );
    if nix::unistd::User::from_name(name).unwrap().is_none() {
        let status = Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/sh", name])
            .status()
            .unwrap();
        assert!(status.success(), "useradd {name}");
    }
    let user = nix::unistd::User::from_name(name).unwrap().unwrap();
    // useradd may have given ranges of its own: these are the test's.
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = fs::read_to_string(file).unwrap_or_default();
        let mut kept = String::new();
        for line in text.lines().filter(|l| l.split(':').next() != Some(name)) {
            kept.push_str(line);
            kept.push('\n');
        }
        if let Some(start) = ranges {
            kept.push_str(&[name, &start.to_string(), "65536\n"].join(":"));
        }
        if kept != text {
            let tmp = format!("{file}.kiln-test");
            fs::write(&tmp, kept).unwrap();
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).unwrap();
            fs::rename(&tmp, file).unwrap();
        }
    }
    TestUser {
        name: name.to_owned(),
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    }
}

impl TestUser {
    /// A directory under `parent` that belongs to this user (its home
    /// for the test), with every directory above made traversable.
    pub fn home_in(&self, parent: &Path) -> PathBuf {
        let home = parent.join(format!("home-{}", self.name));
        fs::create_dir_all(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(self.uid), Some(self.gid)).unwrap();
        runtime_dir(&home, self);
        let mut dir = parent.to_path_buf();
        loop {
            let mode = fs::metadata(&dir).unwrap().permissions().mode();
            if mode & 0o001 == 0 {
                fs::set_permissions(&dir, fs::Permissions::from_mode(mode | 0o011)).unwrap();
            }
            if !dir.pop() {
                break;
            }
        }
        home
    }

    /// `kiln ARGS` as this user, with `home` as `HOME`, `home/.run` as
    /// `XDG_RUNTIME_DIR` (so the test has a user namespace holder of its
    /// own, stopped with its [`super::Kiln`]) and no `XDG_DATA_HOME` (so
    /// the store is the default one unless `args` say otherwise);
    /// `binary` is a copy of kiln the user can run.
    pub fn kiln(&self, binary: &Path, home: &Path, args: &[&str]) -> Command {
        let mut command = Command::new("setpriv");
        command
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--init-groups")
            .arg("--")
            .arg(binary)
            .args(args)
            .env("HOME", home)
            .env("USER", &self.name)
            .env("XDG_RUNTIME_DIR", home.join(".run"))
            .env_remove("KILN_USERNS_IDLE")
            .env_remove("XDG_DATA_HOME")
            .env_remove("KILN_ROOT")
            .env_remove("KILN_LOG")
            .env_remove("SOURCE_DATE_EPOCH")
            .current_dir(home);
        command
    }

    /// Runs [`Self::kiln`]; returns (code, stdout, stderr).
    pub fn outcome(&self, binary: &Path, home: &Path, args: &[&str]) -> (i32, String, String) {
        let output = self.kiln(binary, home, args).output().unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    }

    /// Runs [`Self::kiln`], asserts success and returns stdout.
    pub fn ok(&self, binary: &Path, home: &Path, args: &[&str]) -> String {
        let (code, out, err) = self.outcome(binary, home, args);
        assert_eq!(code, 0, "kiln {args:?} as {} failed:\n{err}", self.name);
        out
    }
}

/// `dir/.run`, made as `user`'s private runtime directory
/// (`XDG_RUNTIME_DIR`), where rootless kiln keeps its user namespace
/// holder's record.
pub fn runtime_dir(dir: &Path, user: &TestUser) -> PathBuf {
    let run = dir.join(".run");
    if !run.is_dir() {
        fs::create_dir_all(&run).unwrap();
        fs::set_permissions(&run, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&run, Some(user.uid), Some(user.gid)).unwrap();
    }
    run
}

/// The pid of the user namespace holder recorded in the runtime
/// directory `run`, if the record is there.
pub fn holder_pid(run: &Path) -> Option<i32> {
    let text = fs::read_to_string(run.join("kiln/userns-holder")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Kills the user namespace holders whose runtime directories are
/// `dir/.run` and `dir/home-*/.run` (a test's), each only if its command
/// line names its record (not a process that reused the pid).
pub fn stop_holders(dir: &Path) {
    let homes = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("home-"))
        .map(|e| e.path());
    for base in std::iter::once(dir.to_path_buf()).chain(homes) {
        let run = base.join(".run");
        let Some(pid) = holder_pid(&run) else {
            continue;
        };
        let record = run.join("kiln/userns-holder");
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&*record.to_string_lossy()) {
            // SAFETY: kill with a pid whose command line names this record.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}
