//! End-to-end tests of `kiln cp` (issue 16) as root, with a busybox image
//! made by the test: Docker's path rules, ownership, tar streams, running
//! and stopped containers, and containers (or archives) that try to make
//! the copy touch the host.
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _, symlink};
use std::path::Path;

use common::Kiln;

/// A store with `bb:1`: busybox, and the traps of the hostile tests:
/// `/evil -> /`, `/link -> /tmp`, `/etc/hostname` of its own.
/// `None` (the test skips; CI, where `KILN_REQUIRE_ROOT=1`, fails)
/// without root.
fn busybox() -> Option<Kiln> {
    if !kiln_testkit::root("containers need namespaces and mounts") {
        return None;
    }
    let kiln = Kiln::new();
    let rootfs = kiln.path("rootfs");
    common::busybox_rootfs(&rootfs);
    for applet in [
        "sleep", "stat", "readlink", "mv", "ln", "rm", "mkdir", "mknod",
    ] {
        symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    fs::write(rootfs.join("etc/hostname"), "image-hostname\n").unwrap();
    fs::create_dir(rootfs.join("tmp")).unwrap();
    fs::create_dir_all(rootfs.join("data/sub")).unwrap();
    fs::write(rootfs.join("data/a.txt"), "a\n").unwrap();
    fs::write(rootfs.join("data/sub/b.txt"), "b\n").unwrap();
    symlink("a.txt", rootfs.join("data/alias")).unwrap();
    symlink("/", rootfs.join("evil")).unwrap();
    symlink("/tmp", rootfs.join("link")).unwrap();
    kiln.ok(&["import", rootfs.to_str().unwrap(), "bb:1"]);
    Some(kiln)
}

/// `kiln create --name NAME bb:1 sleep 3600`.
fn create(kiln: &Kiln, name: &str) {
    kiln.ok(&["create", "--name", name, "bb:1", "sleep", "3600"]);
}

/// `kiln run -d --name NAME bb:1 sleep 3600`.
fn detach(kiln: &Kiln, name: &str) {
    kiln.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        name,
        "bb:1",
        "sleep",
        "3600",
    ]);
}

/// A name no other test (or run) uses, for files that must not appear on
/// the host.
fn unique(what: &str) -> String {
    format!("kiln-cp-{what}-{}", std::process::id())
}

/// (name, uid, gid, mode, type, link target) of every member of a tar.
fn tar_members(bytes: &[u8]) -> Vec<(String, u64, u64, u32, char, String)> {
    let mut archive = tar::Archive::new(bytes);
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let header = entry.header();
            (
                String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
                header.uid().unwrap(),
                header.gid().unwrap(),
                header.mode().unwrap(),
                char::from(header.entry_type().as_byte()),
                entry
                    .link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

/// `kiln cp CONTAINER:PATH -`: the tar's bytes.
fn tar_out(kiln: &Kiln, source: &str) -> Vec<u8> {
    let output = kiln.run(&["cp", source, "-"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// The content of one file in a container, through `kiln cp ... -`.
fn container_file(kiln: &Kiln, source: &str) -> String {
    let bytes = tar_out(kiln, source);
    let mut archive = tar::Archive::new(bytes.as_slice());
    let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
    let mut text = String::new();
    entry.read_to_string(&mut text).unwrap();
    text
}

fn stderr_of(kiln: &Kiln, args: &[&str]) -> String {
    kiln.fails(args)
}

/// Docker's rules for files, directories, `/.`, symlinks and hard links,
/// in and out of a created (never started) container.
#[test]
fn files_directories_contents_and_links_follow_dockers_rules() {
    let Some(kiln) = busybox() else {
        return;
    };
    create(&kiln, "cc");
    let out = kiln.path("out");
    fs::create_dir(&out).unwrap();
    let o = |name: &str| out.join(name).to_str().unwrap().to_owned();

    // A file to a new name, and into an existing directory.
    kiln.ok(&["cp", "cc:/data/a.txt", &o("copy.txt")]);
    assert_eq!(fs::read_to_string(out.join("copy.txt")).unwrap(), "a\n");
    kiln.ok(&["cp", "cc:data/a.txt", &o("")]);
    assert_eq!(fs::read_to_string(out.join("a.txt")).unwrap(), "a\n");
    // Onto an existing file: replaced.
    kiln.ok(&["cp", "cc:/data/sub/b.txt", &o("copy.txt")]);
    assert_eq!(fs::read_to_string(out.join("copy.txt")).unwrap(), "b\n");

    // A directory to a new name (created with its contents), into an
    // existing directory (as DEST/basename), and its contents with `/.`.
    kiln.ok(&["cp", "cc:/data", &o("new")]);
    assert_eq!(
        fs::read_to_string(out.join("new/sub/b.txt")).unwrap(),
        "b\n"
    );
    fs::create_dir(out.join("existing")).unwrap();
    kiln.ok(&["cp", "cc:/data", &o("existing")]);
    assert_eq!(
        fs::read_to_string(out.join("existing/data/a.txt")).unwrap(),
        "a\n"
    );
    fs::create_dir(out.join("contents")).unwrap();
    kiln.ok(&["cp", "cc:/data/.", &o("contents")]);
    assert_eq!(
        fs::read_to_string(out.join("contents/a.txt")).unwrap(),
        "a\n"
    );
    assert!(!out.join("contents/data").exists());

    // Symlinks stay links; -L copies what the source link points to.
    kiln.ok(&["cp", "cc:/data/alias", &o("alias")]);
    assert_eq!(
        fs::read_link(out.join("alias")).unwrap(),
        Path::new("a.txt")
    );
    kiln.ok(&["cp", "cc:/data/sub/../alias", &o("alias-again")]);
    assert!(
        fs::symlink_metadata(out.join("alias-again"))
            .unwrap()
            .is_symlink()
    );
    kiln.ok(&["cp", "-L", "cc:/data/alias", &o("followed")]);
    let followed = fs::symlink_metadata(out.join("followed")).unwrap();
    assert!(followed.is_file());
    assert_eq!(fs::read_to_string(out.join("followed")).unwrap(), "a\n");
    assert_eq!(
        fs::read_link(out.join("new/alias")).unwrap(),
        Path::new("a.txt")
    );

    // In: a tree with modes, an mtime, a symlink and a hard link.
    let src = kiln.path("src");
    fs::create_dir_all(src.join("dir")).unwrap();
    fs::write(src.join("dir/run.sh"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(src.join("dir/run.sh"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::hard_link(src.join("dir/run.sh"), src.join("dir/hard")).unwrap();
    symlink("run.sh", src.join("dir/soft")).unwrap();
    filetime_set(&src.join("dir/run.sh"), 1_000_000_000);
    kiln.ok(&["cp", src.join("dir").to_str().unwrap(), "cc:/srv"]);
    kiln.ok(&["cp", src.join("dir").to_str().unwrap(), "cc:/tmp"]);
    let tar = tar_out(&kiln, "cc:/srv");
    let members = tar_members(&tar);
    let find = |name: &str| members.iter().find(|m| m.0 == name).unwrap().clone();
    assert_eq!(find("srv/run.sh").3 & 0o7777, 0o750);
    assert_eq!(find("srv/soft").4, '2');
    assert_eq!(find("srv/soft").5, "run.sh");
    // The hard link pair is one file with two names.
    let hard = members
        .iter()
        .filter(|m| m.0 == "srv/hard" || m.0 == "srv/run.sh")
        .filter(|m| m.4 == '1')
        .count();
    assert_eq!(hard, 1, "{members:?}");
    kiln.ok(&["cp", "cc:/srv", &o("back")]);
    let back = fs::metadata(out.join("back/run.sh")).unwrap();
    assert_eq!(back.mtime(), 1_000_000_000);
    assert_eq!(back.mode() & 0o7777, 0o750);
    assert_eq!(back.nlink(), 2);
    assert_eq!(container_file(&kiln, "cc:/tmp/dir/run.sh"), "#!/bin/sh\n");
    // `kiln container cp` is the same command.
    kiln.ok(&["container", "cp", "cc:/data/a.txt", &o("group.txt")]);
    assert_eq!(fs::read_to_string(out.join("group.txt")).unwrap(), "a\n");
}

fn filetime_set(path: &Path, seconds: i64) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let times = [
        libc::timespec {
            tv_sec: seconds,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: seconds,
            tv_nsec: 0,
        },
    ];
    // SAFETY: a valid path and two timespecs.
    assert_eq!(
        unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) },
        0
    );
}

/// Copied in: owned by the container's root, unless -a keeps the
/// source's ids; copied out: owned by whoever runs kiln.
#[test]
fn ownership_is_root_in_the_container_unless_archive_mode() {
    let Some(kiln) = busybox() else {
        return;
    };
    create(&kiln, "cc");
    let file = kiln.path("owned");
    fs::write(&file, "x").unwrap();
    std::os::unix::fs::chown(&file, Some(1234), Some(5678)).unwrap();
    kiln.ok(&["cp", file.to_str().unwrap(), "cc:/tmp/plain"]);
    kiln.ok(&["cp", "-a", file.to_str().unwrap(), "cc:/tmp/kept"]);
    let ids = |path: &str| {
        let m = tar_members(&tar_out(&kiln, path));
        (m[0].1, m[0].2)
    };
    assert_eq!(ids("cc:/tmp/plain"), (0, 0));
    assert_eq!(ids("cc:/tmp/kept"), (1234, 5678));
    let out = kiln.path("out-kept");
    kiln.ok(&["cp", "cc:/tmp/kept", out.to_str().unwrap()]);
    let meta = fs::metadata(&out).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0), "owned by the caller");
}

/// `-` streams a tar: out of a container to stdout, and from stdin into
/// a directory of it (root-owned unless -a).
#[test]
fn tar_streams_both_ways() {
    let Some(kiln) = busybox() else {
        return;
    };
    create(&kiln, "cc");
    let members = tar_members(&tar_out(&kiln, "cc:/data"));
    let names: Vec<&str> = members.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "data/",
            "data/a.txt",
            "data/alias",
            "data/sub/",
            "data/sub/b.txt"
        ]
    );
    // Owners are named as the container's /etc/passwd and /etc/group name
    // them, as Docker's archive names them (`tar -tv` shows root/root).
    let archive = kiln.path("named.tar");
    fs::write(&archive, tar_out(&kiln, "cc:/data/a.txt")).unwrap();
    let listing = std::process::Command::new("tar")
        .args(["-tvf", archive.to_str().unwrap()])
        .output()
        .unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    assert!(listing.contains(" root/root "), "{listing}");
    let dot: Vec<String> = tar_members(&tar_out(&kiln, "cc:/data/."))
        .into_iter()
        .map(|m| m.0)
        .collect();
    assert!(dot.contains(&"./a.txt".to_owned()), "{dot:?}");

    let mut tar = Vec::new();
    common::tar_entry(&mut tar, "in/", b'5', "", b"");
    common::tar_entry(&mut tar, "in/f.txt", b'0', "", b"from stdin\n");
    // Header ids 7/7 (octal in the raw header): chowned to root without -a.
    let mut owned = Vec::new();
    common::tar_entry(&mut owned, "g.txt", b'0', "", b"g\n");
    owned[108..115].copy_from_slice(b"0000007");
    owned[116..123].copy_from_slice(b"0000007");
    owned[148..156].copy_from_slice(b"        ");
    let sum: u32 = owned[..512].iter().map(|&b| u32::from(b)).sum();
    owned[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    tar.extend_from_slice(&owned);
    common::tar_end(&mut tar);
    let output = kiln
        .command()
        .args(["cp", "-", "cc:/tmp"])
        .write_stdin(tar.clone())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(container_file(&kiln, "cc:/tmp/in/f.txt"), "from stdin\n");
    assert_eq!(tar_members(&tar_out(&kiln, "cc:/tmp/g.txt"))[0].1, 0);
    let output = kiln
        .command()
        .args(["cp", "-a", "-", "cc:/tmp/in"])
        .write_stdin(tar)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(tar_members(&tar_out(&kiln, "cc:/tmp/in/g.txt"))[0].1, 7);

    // stdin needs a directory destination.
    let output = kiln
        .command()
        .args(["cp", "-", "cc:/data/a.txt"])
        .write_stdin(Vec::new())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: destination \"cc:/data/a.txt\" must be a directory\n"
    );
}

/// A running container: what is copied in is seen by its processes, and
/// its own files (its hostname mount) come out.
#[test]
fn running_container_sees_copies_and_gives_its_files() {
    let Some(kiln) = busybox() else {
        return;
    };
    detach(&kiln, "rr");
    let file = kiln.path("note");
    fs::write(&file, "hello\n").unwrap();
    kiln.ok(&["cp", file.to_str().unwrap(), "rr:/tmp/note"]);
    assert_eq!(kiln.ok(&["exec", "rr", "cat", "/tmp/note"]), "hello\n");
    assert_eq!(
        kiln.ok(&["exec", "rr", "stat", "-c", "%u:%g", "/tmp/note"]),
        "0:0\n"
    );
    let inside = kiln.ok(&["exec", "rr", "cat", "/etc/hostname"]);
    let out = kiln.path("hostname");
    kiln.ok(&["cp", "rr:/etc/hostname", out.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(&out).unwrap(), inside);
    // Its kernel file systems are not part of its files (as for Docker's
    // daemon): a copy of `/` ends, without /proc's or /sys's contents.
    assert_eq!(
        kiln.fails(&["cp", "rr:/proc/1/status", out.to_str().unwrap()]),
        "error: Could not find the file /proc/1/status in container rr\n"
    );
    let all = tar_members(&tar_out(&kiln, "rr:/"));
    assert!(all.iter().any(|m| m.0 == "./tmp/note"), "{all:?}");
    assert!(
        !all.iter()
            .any(|m| m.0.starts_with("./proc/") && m.0 != "./proc/"
                || m.0.starts_with("./sys/") && m.0 != "./sys/"),
        "{all:?}"
    );
    // A device of its image is no destination.
    kiln.ok(&["exec", "rr", "mknod", "/tmp/null", "c", "1", "3"]);
    assert_eq!(
        kiln.fails(&["cp", file.to_str().unwrap(), "rr:/tmp/null"]),
        "error: destination \"rr:/tmp/null\" must be a directory or a regular file: got a device\n"
    );
    kiln.ok(&["rm", "-f", "rr"]);
}

/// A file copied into a stopped container is there when it starts, and
/// what it wrote while running comes out after it stopped.
#[test]
fn stopped_container_gets_copies_in_its_upper_layer() {
    let Some(kiln) = busybox() else {
        return;
    };
    create(&kiln, "ss");
    let file = kiln.path("script");
    fs::write(&file, "echo copied-in\n").unwrap();
    kiln.ok(&["cp", file.to_str().unwrap(), "ss:/tmp/script"]);
    let id = kiln
        .ok(&["inspect", "--type", "container", "-f", "{{.Id}}", "ss"])
        .trim()
        .to_owned();
    let upper = kiln.root().join("containers").join(&id).join("upper");
    assert!(upper.join("tmp/script").is_file(), "in the upper directory");
    kiln.ok(&["start", "ss"]);
    assert_eq!(kiln.ok(&["exec", "ss", "sh", "/tmp/script"]), "copied-in\n");
    kiln.ok(&["exec", "ss", "sh", "-c", "echo written > /tmp/by-container"]);
    kiln.ok(&["stop", "-t", "1", "ss"]);
    assert_eq!(container_file(&kiln, "ss:/tmp/by-container"), "written\n");
    // Nothing left mounted or staged.
    let staging: Vec<_> = fs::read_dir(kiln.root().join("tmp"))
        .unwrap()
        .flat_map(|owner| fs::read_dir(owner.unwrap().path()).into_iter().flatten())
        .collect();
    assert!(staging.is_empty(), "{staging:?}");
}

/// A stopped container's volumes are mounted for the copy, as a start
/// mounts them: what is copied there reaches the host directory, not the
/// container's upper layer, and a read-only one refuses it.
#[test]
fn stopped_container_volumes_receive_copies() {
    let Some(kiln) = busybox() else {
        return;
    };
    let volume = kiln.path("volume");
    fs::create_dir(&volume).unwrap();
    fs::write(volume.join("there"), "from the host\n").unwrap();
    let read_only = kiln.path("read-only");
    fs::create_dir(&read_only).unwrap();
    kiln.ok(&[
        "create",
        "--name",
        "vv",
        "-v",
        &format!("{}:/vol", volume.display()),
        "-v",
        &format!("{}:/data/ro:ro", read_only.display()),
        "bb:1",
        "sleep",
        "3600",
    ]);
    let file = kiln.path("note");
    fs::write(&file, "note\n").unwrap();
    kiln.ok(&["cp", file.to_str().unwrap(), "vv:/vol/note"]);
    assert_eq!(fs::read_to_string(volume.join("note")).unwrap(), "note\n");
    assert_eq!(container_file(&kiln, "vv:/vol/there"), "from the host\n");
    assert_eq!(
        kiln.fails(&["cp", file.to_str().unwrap(), "vv:/data/ro/note"]),
        "error: mounted volume is marked read-only\n"
    );
    assert!(!read_only.join("note").exists());
    // The mount points made for the copy are gone again.
    let id = kiln
        .ok(&["inspect", "--type", "container", "-f", "{{.Id}}", "vv"])
        .trim()
        .to_owned();
    let upper = kiln.root().join("containers").join(&id).join("upper");
    assert!(
        !upper.join("vol").exists(),
        "a stub left in the upper layer"
    );
    assert!(
        !upper.join("data/ro").exists(),
        "a stub left in the upper layer"
    );
}

/// Container symlinks resolve inside the container, running or not:
/// `/evil -> /` gives the container's file, `/link -> /tmp` receives
/// the copy inside the container.
#[test]
fn container_symlinks_never_reach_the_host() {
    let Some(kiln) = busybox() else {
        return;
    };
    create(&kiln, "ss");
    detach(&kiln, "rr");
    let host_hostname = fs::read_to_string("/etc/hostname").unwrap_or_default();
    for (container, expected) in [
        ("ss", "image-hostname\n".to_owned()),
        ("rr", kiln.ok(&["exec", "rr", "cat", "/etc/hostname"])),
    ] {
        let out = kiln.path(&format!("evil-{container}"));
        kiln.ok(&[
            "cp",
            &format!("{container}:/evil/etc/hostname"),
            out.to_str().unwrap(),
        ]);
        let got = fs::read_to_string(&out).unwrap();
        assert_eq!(got, expected, "{container}");
        assert!(got != host_hostname || expected == host_hostname);
        // A directory through the link: the container's /etc.
        let listing = tar_members(&tar_out(&kiln, &format!("{container}:/evil/etc/")));
        assert!(listing.iter().any(|m| m.0 == "etc/hostname"), "{listing:?}");
        assert!(
            !listing.iter().any(|m| m.0 == "etc/os-release"),
            "{listing:?}"
        );

        let name = unique(&format!("link-{container}"));
        let file = kiln.path("payload");
        fs::write(&file, "payload\n").unwrap();
        kiln.ok(&[
            "cp",
            file.to_str().unwrap(),
            &format!("{container}:/link/{name}"),
        ]);
        assert!(
            !Path::new("/tmp").join(&name).exists(),
            "written on the host's /tmp"
        );
        assert_eq!(
            container_file(&kiln, &format!("{container}:/tmp/{name}")),
            "payload\n"
        );
    }
    kiln.ok(&["rm", "-f", "rr"]);
}

/// A hostile tar on stdin: `..` names fail (Docker's breakout check),
/// absolute names and writes through a symlink the archive made stay
/// inside the destination directory of the container.
#[test]
fn hostile_archive_on_stdin_stays_inside() {
    let Some(kiln) = busybox() else {
        return;
    };
    create(&kiln, "ss");
    detach(&kiln, "rr");
    for container in ["ss", "rr"] {
        let name = unique(&format!("tar-{container}"));
        let mut escape = Vec::new();
        common::tar_entry(&mut escape, &format!("../../{name}"), b'0', "", b"x");
        common::tar_end(&mut escape);
        let output = kiln
            .command()
            .args(["cp", "-", &format!("{container}:/tmp")])
            .write_stdin(escape)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{output:?}");
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(err.contains("escapes the root directory"), "{err}");
        assert!(!Path::new("/").join(&name).exists());
        assert!(!Path::new("/tmp").join(&name).exists());

        let mut tricks = Vec::new();
        common::tar_entry(&mut tricks, &format!("/{name}-abs"), b'0', "", b"abs\n");
        common::tar_entry(&mut tricks, "root", b'2', "/", b"");
        common::tar_entry(&mut tricks, &format!("root/etc/{name}"), b'0', "", b"via\n");
        common::tar_end(&mut tricks);
        let output = kiln
            .command()
            .args(["cp", "-", &format!("{container}:/tmp")])
            .write_stdin(tricks)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        assert!(!Path::new("/").join(format!("{name}-abs")).exists());
        assert!(!Path::new("/etc").join(&name).exists());
        assert_eq!(
            container_file(&kiln, &format!("{container}:/tmp/{name}-abs")),
            "abs\n"
        );
        // The archive's symlink resolves inside the destination.
        assert_eq!(
            container_file(&kiln, &format!("{container}:/tmp/etc/{name}")),
            "via\n"
        );
    }
    kiln.ok(&["rm", "-f", "rr"]);
}

/// CVE-2018-15664: the container swaps a directory of the destination
/// path for a symlink to `/` while copies run; whatever wins each race,
/// the copies land inside the container, never on the host.
#[test]
fn symlink_swapped_during_the_copy_stays_inside() {
    let Some(kiln) = busybox() else {
        return;
    };
    kiln.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "swap",
        "bb:1",
        "sh",
        "-c",
        "mkdir -p /tmp/d/etc; while true; do mv /tmp/d /tmp/x; ln -s / /tmp/d; \
         rm /tmp/d; mv /tmp/x /tmp/d; done",
    ]);
    let name = unique("swap");
    let file = kiln.path("payload");
    fs::write(&file, "payload\n").unwrap();
    let mut landed = 0;
    for _ in 0..25 {
        // Either outcome of a race is fine, as long as it is inside.
        let output = kiln.run(&[
            "cp",
            file.to_str().unwrap(),
            &format!("swap:/tmp/d/etc/{name}"),
        ]);
        landed += usize::from(output.status.success());
        assert!(
            !Path::new("/etc").join(&name).exists(),
            "escaped to the host"
        );
    }
    assert!(landed > 0, "no copy succeeded at all");
    kiln.ok(&["rm", "-f", "swap"]);
    assert!(!Path::new("/etc").join(&name).exists());
}

/// Docker's messages for what cannot be copied.
#[test]
fn errors_have_dockers_messages() {
    let Some(kiln) = busybox() else {
        return;
    };
    create(&kiln, "cc");
    let host_file = kiln.path("file");
    fs::write(&host_file, "f").unwrap();
    let f = host_file.to_str().unwrap();
    let out = kiln.path("out");
    fs::create_dir(&out).unwrap();
    let o = |name: &str| out.join(name).to_str().unwrap().to_owned();
    // A directory where a file would land, and the reverse.
    fs::create_dir(out.join("a.txt")).unwrap();
    let dir_named_a = kiln.path("in/a.txt");
    fs::create_dir_all(&dir_named_a).unwrap();
    // Larger than a pipe: the helper is still writing when the copy
    // fails, and the failure, not the broken pipe, is reported.
    let big = kiln.path("in/big");
    fs::write(&big, vec![b'x'; 4 << 20]).unwrap();
    kiln.ok(&["cp", big.to_str().unwrap(), "cc:/tmp/big"]);
    fs::create_dir(out.join("big")).unwrap();
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec!["cc:/data/a.txt".into(), o("")],
            format!(
                "error: cannot overwrite directory {:?} with non-directory {:?}\n",
                o("a.txt"),
                o("")
            ),
        ),
        (
            vec!["cc:/tmp/big".into(), o("")],
            format!(
                "error: cannot overwrite directory {:?} with non-directory {:?}\n",
                o("big"),
                o("")
            ),
        ),
        (
            vec![dir_named_a.to_str().unwrap().into(), "cc:/data".into()],
            "error: cannot overwrite non-directory \"/data/a.txt\" with directory \"/data\"\n"
                .into(),
        ),
        (
            vec!["nosuch:/etc".into(), o("x")],
            "error: No such container: nosuch\n".into(),
        ),
        (
            vec!["cc:/nope".into(), o("x")],
            "error: Could not find the file /nope in container cc\n".into(),
        ),
        (
            vec![f.into(), "cc:/nodir/x".into()],
            "error: Could not find the file /nodir in container cc\n".into(),
        ),
        (
            vec!["cc:/data/a.txt".into(), format!("{}/", o("missing"))],
            "error: no such directory\n".into(),
        ),
        (
            vec![f.into(), "cc:/tmp/missing/".into()],
            "error: no such directory\n".into(),
        ),
        (
            vec!["cc:/data".into(), f.into()],
            "error: cannot copy directory\n".into(),
        ),
        (
            vec![out.to_str().unwrap().into(), "cc:/data/a.txt".into()],
            "error: cannot copy directory\n".into(),
        ),
        (
            vec!["cc:/data".into(), "cc:/tmp".into()],
            "error: copying between containers is not supported\n".into(),
        ),
        (
            vec![f.into(), o("y")],
            "error: must specify at least one container source\n".into(),
        ),
        (
            vec![String::new(), o("y")],
            "error: source can not be empty\n".into(),
        ),
        (
            vec!["cc:/data/a.txt".into(), o("nodir/x")],
            format!(
                "error: invalid output path: directory {:?} does not exist\n",
                o("nodir")
            ),
        ),
        (
            vec!["cc:/data/a.txt".into(), "/dev/null".into()],
            "error: invalid output path: \"/dev/null\" must be a directory or a regular file: got a device\n"
                .into(),
        ),
        (
            vec![o("nothing"), "cc:/tmp".into()],
            format!("error: lstat {}: no such file or directory\n", o("nothing")),
        ),
        (
            vec![big.to_str().unwrap().into(), "cc:/data/a.txt/x".into()],
            "error: extraction point is not a directory\n".into(),
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["cp"];
        all.extend(args.iter().map(String::as_str));
        assert_eq!(stderr_of(&kiln, &all), expected, "{args:?}");
    }
}
