//! Rootless kiln (issue 18): a user the test makes, with subordinate ids
//! or without, builds and runs through kiln's own user namespace.
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::fs;

use common::build::{build_ok, busybox, context};
use common::rootless::{TestUser, can_test, user};

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
    let archive = kiln.path("bb.tar");
    kiln.ok(&["save", "-o", archive.to_str().unwrap(), "bb:1"]);
    fs::set_permissions(
        &archive,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
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
    let archive = kiln.path("bb.tar");
    kiln.ok(&["save", "-o", archive.to_str().unwrap(), "bb:1"]);
    fs::set_permissions(
        &archive,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
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
    let without = |args: &[&str]| {
        let output = std::process::Command::new("setpriv")
            .args(["--bounding-set=-sys_admin", "--inh-caps=-sys_admin", "--"])
            .arg(assert_cmd::cargo::cargo_bin("kiln"))
            .arg("--root")
            .arg(kiln.root())
            .args(args)
            .env_remove("KILN_ROOT")
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
    let archive = kiln.path("bb.tar");
    kiln.ok(&["save", "-o", archive.to_str().unwrap(), "bb:1"]);
    fs::set_permissions(
        &archive,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
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
    let archive = kiln.path("bb.tar");
    kiln.ok(&["save", "-o", archive.to_str().unwrap(), "bb:1"]);
    fs::set_permissions(
        &archive,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
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
