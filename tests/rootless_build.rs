//! Rootless kiln (issue 18): a user the test makes, with subordinate ids
//! or without, builds and runs through kiln's own user namespace.
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::fs;

use common::build::{build_ok, busybox, context};
use common::rootless::{TestUser, can_test, holder_pid, user};

/// A copy of kiln any user can run, in the test's directory.
fn binary(kiln: &common::Kiln) -> std::path::PathBuf {
    let binary = kiln.path("kiln-rootless");
    if !binary.exists() {
        common::copy_executable(&assert_cmd::cargo::cargo_bin("kiln"), &binary);
    }
    binary
}

const OWNERS: &str = "FROM bb:1
COPY --chown=1000:1000 f /f
RUN mkdir /o && touch /o/x && chown 1000:1000 /o/x && chown 50 /o \
 && echo nobody:x:65534:65534::/:/bin/sh >>/etc/passwd
USER nobody
RUN touch /tmp/n
";

const SHOW_OWNERS: &str = "stat -c '%u:%g %n' /f /o /o/x /tmp/n; id -u";

#[test]
fn rootless_build_keeps_owners_and_gives_the_root_build_image_id() {
    if !can_test() {
        return;
    }
    let me = user("kiln-rl-ranges", Some(1_100_000));
    let kiln = busybox();
    let dir = context(&kiln, "ctx", OWNERS, &[("f", "file\n")]);
    let epoch = ["--build-arg", "SOURCE_DATE_EPOCH=0", "--network", "none"];
    build_ok(&kiln, &dir, "owners:1", &epoch);
    let root_id = kiln.ok(&["images", "-q", "--no-trunc", "owners:1"]);
    let root_owners = kiln.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "owners:1",
        "sh",
        "-c",
        SHOW_OWNERS,
    ]);
    assert_eq!(
        root_owners,
        "1000:1000 /f\n50:0 /o\n1000:1000 /o/x\n65534:65534 /tmp/n\n65534\n"
    );

    // The same base, by archive, in the user's default store.
    let archive = base_archive(&kiln);
    let home = me.home_in(kiln.dir.path());
    let kiln_bin = binary(&kiln);
    me.ok(
        &kiln_bin,
        &home,
        &["load", "-q", "-i", archive.to_str().unwrap()],
    );
    let mut args = vec!["build", "-q", "-t", "owners:1"];
    args.extend_from_slice(&epoch);
    args.push(dir.to_str().unwrap());
    me.ok(&kiln_bin, &home, &args);
    assert_eq!(
        me.ok(
            &kiln_bin,
            &home,
            &["images", "-q", "--no-trunc", "owners:1"]
        ),
        root_id
    );
    let owners = me.ok(
        &kiln_bin,
        &home,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "owners:1",
            "sh",
            "-c",
            SHOW_OWNERS,
        ],
    );
    assert_eq!(owners, root_owners);
    // On the host, the store's files belong to the user's ids.
    let store = home.join(".local/share/kiln");
    let meta = fs::metadata(store.join("index.json")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), me.uid);

    // What needs the host's root says why.
    let (code, _, err) = me.outcome(
        &kiln_bin,
        &home,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--memory",
            "64m",
            "owners:1",
            "true",
        ],
    );
    assert_eq!(
        (code, err.as_str()),
        (
            125,
            "error: cannot run owners:1\ncaused by: resource limits need root (cgroups)\n"
        )
    );
}

#[test]
fn rootless_store_defaults_to_xdg_data_home_then_local_share() {
    if !can_test() {
        return;
    }
    let me = user("kiln-rl-ranges", Some(1_100_000));
    let kiln = common::Kiln::new();
    let home = me.home_in(kiln.dir.path());
    let kiln_bin = binary(&kiln);
    me.ok(&kiln_bin, &home, &["images"]);
    assert!(home.join(".local/share/kiln/index.json").is_file());
    let data = home.join("data");
    let output = me
        .kiln(&kiln_bin, &home, &["images"])
        .env("XDG_DATA_HOME", &data)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(data.join("kiln/index.json").is_file());
    // --root still wins.
    let explicit = home.join("explicit");
    me.ok(
        &kiln_bin,
        &home,
        &["--root", explicit.to_str().unwrap(), "images"],
    );
    assert!(explicit.join("index.json").is_file());
}

#[test]
fn rootless_without_subordinate_ids_maps_one_id_and_says_so_once() {
    if !can_test() {
        return;
    }
    let me: TestUser = user("kiln-rl-single", None);
    let kiln = busybox();
    let archive = base_archive(&kiln);
    let home = me.home_in(kiln.dir.path());
    let kiln_bin = binary(&kiln);
    let (code, _, err) = me.outcome(
        &kiln_bin,
        &home,
        &["load", "-q", "-i", archive.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        err,
        "warning: rootless with a single id: /etc/subuid gives kiln-rl-single no subordinate \
         ids, so every file belongs to the caller (image owners are not kept, chown and USER \
         other than root fail); add ranges with `usermod --add-subuids 100000-165535 \
         --add-subgids 100000-165535 USER`\n"
    );
    // Once: the next command says nothing.
    let dir = context(
        &kiln,
        "ctx",
        "FROM bb:1\nCOPY --chown=1000:1000 f /f\nRUN stat -c %u /f\n",
        &[("f", "x\n")],
    );
    let (code, _, err) = me.outcome(
        &kiln_bin,
        &home,
        &[
            "build",
            "-q",
            "--network",
            "none",
            "-t",
            "one:1",
            dir.to_str().unwrap(),
        ],
    );
    assert_eq!((code, err.as_str()), (0, ""));
    // USER other than root cannot run.
    let dir = context(&kiln, "ctx2", "FROM bb:1\nUSER 65534\nRUN true\n", &[]);
    let (code, _, err) = me.outcome(
        &kiln_bin,
        &home,
        &["build", "--network", "none", dir.to_str().unwrap()],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("running as user 65534 needs root or subordinate ids (only uid 0 is mapped without them)"),
        "{err}"
    );
}

#[test]
fn root_without_cap_sys_admin_builds_in_a_user_namespace() {
    // Root in a container without --privileged: uid 0 but no
    // CAP_SYS_ADMIN, so kiln cannot mount where it is and enters a user
    // namespace of its own, as a user's kiln does.
    if !can_test() {
        return;
    }
    let kiln = busybox();
    let dir = context(
        &kiln,
        "ctx",
        "FROM bb:1\nCOPY f /f\nRUN cat /f > /g\n",
        &[("f", "unprivileged\n")],
    );
    // Its user namespace holder's record in the test's directory (and
    // the holder stopped with it).
    let run = kiln.path(".run");
    fs::create_dir(&run).unwrap();
    fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let without = |args: &[&str]| {
        let output = std::process::Command::new("setpriv")
            .args(["--bounding-set=-sys_admin", "--inh-caps=-sys_admin", "--"])
            .arg(assert_cmd::cargo::cargo_bin("kiln"))
            .arg("--root")
            .arg(kiln.root())
            .args(args)
            .env_remove("KILN_ROOT")
            .env("XDG_RUNTIME_DIR", &run)
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    };
    let (code, _, err) = without(&[
        "build",
        "-q",
        "--network",
        "none",
        "-t",
        "unpriv:1",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = without(&["run", "--rm", "--network", "none", "unpriv:1", "cat", "/g"]);
    assert_eq!((code, out.as_str()), (0, "unprivileged\n"), "{err}");
    let (code, out, err) = without(&["info", "--format", "{{json .SecurityOptions}}"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("name=rootless"), "{out}");
}

#[test]
fn rootless_containers_exec_and_copy_with_their_owners() {
    if !can_test() {
        return;
    }
    let me = user("kiln-rl-ranges", Some(1_100_000));
    let kiln = busybox();
    let archive = base_archive(&kiln);
    let home = me.home_in(kiln.dir.path());
    let kiln_bin = binary(&kiln);
    let run = |args: &[&str]| me.ok(&kiln_bin, &home, args);
    run(&["load", "-q", "-i", archive.to_str().unwrap()]);
    // A stopped container: `cp` mounts its overlay in kiln's namespace.
    run(&[
        "create",
        "--name",
        "stopped",
        "--network",
        "none",
        "bb:1",
        "true",
    ]);
    fs::write(home.join("in.txt"), "in\n").unwrap();
    std::os::unix::fs::chown(home.join("in.txt"), Some(me.uid), Some(me.gid)).unwrap();
    run(&[
        "cp",
        home.join("in.txt").to_str().unwrap(),
        "stopped:/tmp/in.txt",
    ]);
    run(&[
        "cp",
        "stopped:/etc/base-file",
        home.join("out.txt").to_str().unwrap(),
    ]);
    assert_eq!(fs::read_to_string(home.join("out.txt")).unwrap(), "base\n");
    // A running one, as USER app: `exec` joins its namespaces from outside.
    run(&[
        "run",
        "-d",
        "--name",
        "up",
        "--network",
        "none",
        "-u",
        "app",
        "bb:1",
        "sleep",
        "100",
    ]);
    assert_eq!(
        run(&[
            "exec",
            "up",
            "sh",
            "-c",
            "id -u; touch /tmp/t; stat -c %u /tmp/t"
        ]),
        "1000\n1000\n"
    );
    run(&["stop", "-t", "1", "up"]);
    run(&["rm", "up", "stopped"]);
    assert_eq!(run(&["ps", "-a", "-q"]), "");
}

/// Unmounts the test's overlay on drop.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn rootless_overlay_the_kernel_refuses_falls_back_to_copying() {
    // A store on overlayfs (a container's own root file system): the
    // kernel takes no overlayfs upper directory there; kiln's probe finds
    // it and copies instead, and a forced overlay says what it needs.
    if !can_test() {
        return;
    }
    let me = user("kiln-rl-ranges", Some(1_100_000));
    let kiln = busybox();
    let archive = base_archive(&kiln);
    let home = me.home_in(kiln.dir.path());
    let kiln_bin = binary(&kiln);
    let base = kiln.path("ovl");
    for dir in ["lower", "upper", "work", "merged"] {
        fs::create_dir_all(base.join(dir)).unwrap();
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        base.join("lower").display(),
        base.join("upper").display(),
        base.join("work").display()
    );
    nix::mount::mount(
        Some("overlay"),
        &base.join("merged"),
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(options.as_str()),
    )
    .unwrap();
    let _unmount = Unmount(base.join("merged"));
    std::os::unix::fs::chown(base.join("merged"), Some(me.uid), Some(me.gid)).unwrap();
    let store = base.join("merged/store");
    let store = store.to_str().unwrap();
    let dir = context(&kiln, "ctx", "FROM bb:1\nRUN true\n", &[]);
    fs::set_permissions(
        kiln.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    me.ok(
        &kiln_bin,
        &home,
        &[
            "--root",
            store,
            "load",
            "-q",
            "-i",
            archive.to_str().unwrap(),
        ],
    );
    let build = |snapshotter: &str| {
        let output = me
            .kiln(
                &kiln_bin,
                &home,
                &[
                    "--root",
                    store,
                    "build",
                    "--no-cache",
                    "--network",
                    "none",
                    dir.to_str().unwrap(),
                ],
            )
            .env("KILN_SNAPSHOTTER", snapshotter)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8(output.stderr).unwrap(),
        )
    };
    let (code, err) = build("auto");
    assert_eq!(code, Some(0), "{err}");
    let info = me.ok(&kiln_bin, &home, &["--root", store, "info"]);
    assert!(info.contains(" Storage Driver: copy\n"), "{info}");
    assert!(
        info.contains(
            "  Snapshotter: overlayfs cannot be mounted here: Invalid argument (os error 22)\n"
        ),
        "{info}"
    );
    let (code, err) = build("overlay");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(
            "Invalid argument (os error 22) (rootless kiln mounts overlayfs in a user namespace, \
             which needs Linux 5.11 or later, and an upper directory not itself on overlayfs)"
        ),
        "{err}"
    );
}

/// `bb:1` of `kiln` (root's store) saved where a test user can read it.
fn base_archive(kiln: &common::Kiln) -> std::path::PathBuf {
    let archive = kiln.path("bb.tar");
    kiln.ok(&["save", "-o", archive.to_str().unwrap(), "bb:1"]);
    fs::set_permissions(
        &archive,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    archive
}

/// A user with subordinate ids (`range`), and a store as root with
/// `bb:1` whose archive the user loaded into its default store: (user,
/// root's kiln, the user's home, the user's kiln binary).
fn loaded(
    name: &str,
    range: u32,
) -> (
    TestUser,
    common::Kiln,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let me = user(name, Some(range));
    let kiln = busybox();
    let archive = base_archive(&kiln);
    let home = me.home_in(kiln.dir.path());
    let kiln_bin = binary(&kiln);
    me.ok(
        &kiln_bin,
        &home,
        &["load", "-q", "-i", archive.to_str().unwrap()],
    );
    (me, kiln, home, kiln_bin)
}

/// Waits (10 s at most) until process `pid` has exited (gone, or a
/// zombie its new parent has not reaped yet).
fn wait_exited(pid: i32) {
    let running = || {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        matches!(state, Some(s) if s != "Z" && s != "X")
    };
    for _ in 0..1000 {
        if !running() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(!running(), "process {pid} is still running");
}

/// `readlink /proc/PID/ns/user` and a newline, as `readlink` prints it.
fn user_ns(pid: i32) -> String {
    let link = fs::read_link(format!("/proc/{pid}/ns/user")).unwrap();
    format!("{}\n", link.display())
}

#[test]
fn rootless_commands_join_the_user_namespace_a_holder_keeps() {
    if !can_test() {
        return;
    }
    let (me, _kiln, home, kiln_bin) = loaded("kiln-rl-holder", 1_500_000);
    let run_dir = home.join(".run");
    let ns_of_a_run = || {
        me.ok(
            &kiln_bin,
            &home,
            &[
                "run",
                "--rm",
                "--network",
                "none",
                "bb:1",
                "readlink",
                "/proc/self/ns/user",
            ],
        )
    };
    // Two commands, one namespace: the holder's (started by `load`).
    let first = ns_of_a_run();
    assert_eq!(ns_of_a_run(), first);
    let holder = holder_pid(&run_dir).unwrap();
    assert_eq!(user_ns(holder), first);
    // The command is its own process in there: its exit status is the
    // container's, as before.
    let (code, _, err) = me.outcome(
        &kiln_bin,
        &home,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "bb:1",
            "sh",
            "-c",
            "exit 7",
        ],
    );
    assert_eq!(code, 7, "{err}");
    let cmdline = fs::read(format!("/proc/{holder}/cmdline")).unwrap();
    assert!(
        String::from_utf8_lossy(&cmdline).starts_with("kiln\0__kiln-userns-holder\0"),
        "{cmdline:?}"
    );
    let info = me.ok(
        &kiln_bin,
        &home,
        &["info", "--format", "{{json .DriverStatus}}"],
    );
    let record = run_dir.join("kiln/userns-holder");
    assert!(
        info.contains(&format!(
            "[\"User Namespace\",\"holder pid {holder} ({})\"]",
            record.display()
        )),
        "{info}"
    );

    // Killed: the next command starts another, and is in its namespace.
    // SAFETY: kill with the holder's pid, checked above.
    assert_eq!(unsafe { libc::kill(holder, libc::SIGKILL) }, 0);
    wait_exited(holder);
    let third = ns_of_a_run();
    let second_holder = holder_pid(&run_dir).unwrap();
    assert_ne!(second_holder, holder);
    assert_eq!(user_ns(second_holder), third);

    // Stopped when told: the record goes, the process exits.
    assert_eq!(me.ok(&kiln_bin, &home, &["system", "reset-userns"]), "");
    wait_exited(second_holder);
    assert_eq!(holder_pid(&run_dir), None);
    // Nothing to stop: not an error.
    assert_eq!(me.ok(&kiln_bin, &home, &["system", "reset-userns"]), "");

    // KILN_USERNS_IDLE=0: a namespace of the command's own, no holder.
    let output = me
        .kiln(
            &kiln_bin,
            &home,
            &["info", "--format", "{{json .DriverStatus}}"],
        )
        .env("KILN_USERNS_IDLE", "0")
        .output()
        .unwrap();
    let out = String::from_utf8(output.stdout).unwrap();
    assert!(
        out.contains("[\"User Namespace\",\"none (KILN_USERNS_IDLE=0)\"]"),
        "{out}"
    );
    assert_eq!(holder_pid(&run_dir), None);
    let output = me
        .kiln(&kiln_bin, &home, &["volume", "ls", "-q"])
        .env("KILN_USERNS_IDLE", "soon")
        .output()
        .unwrap();
    assert_eq!(
        (
            output.status.code(),
            String::from_utf8(output.stderr).unwrap().as_str()
        ),
        (
            Some(125),
            "Error: invalid KILN_USERNS_IDLE \"soon\": the seconds kiln's user namespace \
             holder waits for the next command (0: no holder)\n"
        )
    );

    // Idle for KILN_USERNS_IDLE seconds: the holder exits by itself and
    // takes its record along.
    let output = me
        .kiln(&kiln_bin, &home, &["volume", "ls", "-q"])
        .env("KILN_USERNS_IDLE", "1")
        .output()
        .unwrap();
    assert!(output.status.success());
    let idle_holder = holder_pid(&run_dir).unwrap();
    wait_exited(idle_holder);
    assert_eq!(holder_pid(&run_dir), None);
}

#[test]
fn rootless_first_commands_at_once_start_one_holder() {
    if !can_test() {
        return;
    }
    let (me, _kiln, home, kiln_bin) = loaded("kiln-rl-holder", 1_500_000);
    // `load` started one: stop it, so these commands are all first.
    me.ok(&kiln_bin, &home, &["system", "reset-userns"]);
    let children: Vec<_> = (0..4)
        .map(|_| {
            me.kiln(
                &kiln_bin,
                &home,
                &["info", "--format", "{{json .DriverStatus}}"],
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let mut holders: Vec<String> = children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let out = String::from_utf8(output.stdout).unwrap();
            let start = out.find("holder pid ").unwrap() + "holder pid ".len();
            out[start..].split(' ').next().unwrap().to_owned()
        })
        .collect();
    holders.dedup();
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert_eq!(
        holders[0],
        holder_pid(&home.join(".run")).unwrap().to_string()
    );
}

#[test]
fn rootless_changed_subordinate_ids_make_a_new_holder() {
    if !can_test() {
        return;
    }
    let (me, kiln, home, kiln_bin) = loaded("kiln-rl-remap", 1_600_000);
    let run_dir = home.join(".run");
    let old = holder_pid(&run_dir).unwrap();
    assert!(
        fs::read_to_string(format!("/proc/{old}/uid_map"))
            .unwrap()
            .contains(" 1600000 "),
    );
    // The administrator gives the user other ranges.
    let me = user(&me.name, Some(1_700_000));
    // A store of the new ids: the old store's files are the old ranges'.
    let store = home.join("store2");
    let archive = home.parent().unwrap().join("bb.tar");
    me.ok(
        &kiln_bin,
        &home,
        &[
            "--root",
            store.to_str().unwrap(),
            "load",
            "-q",
            "-i",
            archive.to_str().unwrap(),
        ],
    );
    let new = holder_pid(&run_dir).unwrap();
    assert_ne!(new, old);
    wait_exited(old);
    let uid_map = fs::read_to_string(format!("/proc/{new}/uid_map")).unwrap();
    let fields: Vec<Vec<&str>> = uid_map
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        fields,
        [
            vec!["0", &*me.uid.to_string(), "1"],
            vec!["1", "1700000", "65536"]
        ]
    );
    // Owners as a root build gives them, on the new ids.
    let dir = context(
        &kiln,
        "ctx",
        "FROM bb:1\nCOPY --chown=1000:1000 f /f\nRUN stat -c %u:%g /f > /owners\n",
        &[("f", "x\n")],
    );
    me.ok(
        &kiln_bin,
        &home,
        &[
            "--root",
            store.to_str().unwrap(),
            "build",
            "-q",
            "--network",
            "none",
            "-t",
            "remapped:1",
            dir.to_str().unwrap(),
        ],
    );
    let owners = me.ok(
        &kiln_bin,
        &home,
        &[
            "--root",
            store.to_str().unwrap(),
            "run",
            "--rm",
            "--network",
            "none",
            "remapped:1",
            "sh",
            "-c",
            "cat /owners; stat -c %u:%g /f",
        ],
    );
    assert_eq!(owners, "1000:1000\n1000:1000\n");
    // On the host, uid 1000 of the image is 1700000 + 999.
    assert!(owned_by(&store, 1_700_999));
    assert!(!owned_by(&store, 1_600_999));
}

/// Whether a file under `dir` belongs to `uid`.
fn owned_by(dir: &std::path::Path, uid: u32) -> bool {
    fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
        let meta = fs::symlink_metadata(e.path()).unwrap();
        std::os::unix::fs::MetadataExt::uid(&meta) == uid
            || (meta.is_dir() && owned_by(&e.path(), uid))
    })
}

#[test]
fn rootless_runtime_directory_others_may_enter_gets_no_holder() {
    if !can_test() {
        return;
    }
    let me = user("kiln-rl-holder", Some(1_500_000));
    let kiln = common::Kiln::new();
    let home = me.home_in(kiln.dir.path());
    let kiln_bin = binary(&kiln);
    // A record others could replace is not trusted: no holder, and the
    // command works in a namespace of its own.
    let open = home.join(".run/kiln");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&open, Some(me.uid), Some(me.gid)).unwrap();
    let out = me.ok(
        &kiln_bin,
        &home,
        &["info", "--format", "{{json .DriverStatus}}"],
    );
    assert!(
        out.contains(&format!(
            "[\"User Namespace\",\"none ({} is not a directory of uid {} that only it may \
             enter)\"]",
            open.display(),
            me.uid
        )),
        "{out}"
    );
    assert_eq!(holder_pid(&home.join(".run")), None);
}
