use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use kiln_parser::values::parse_chmod;
use nix::sys::stat::Mode;

use super::*;
use kiln_rootfs::Root;

struct Env {
    _tmp: tempfile::TempDir,
    ctx_dir: PathBuf,
    root: PathBuf,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let ctx_dir = tmp.path().join("ctx");
    let root = tmp.path().join("root");
    fs::create_dir(&ctx_dir).unwrap();
    fs::create_dir(&root).unwrap();
    Env {
        ctx_dir,
        root,
        _tmp: tmp,
    }
}

fn write(path: &Path, content: &str, mode: u32) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap();
    }
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn owner(path: &Path) -> (u32, u32) {
    let m = fs::symlink_metadata(path).unwrap();
    (m.uid(), m.gid())
}

fn is_root() -> bool {
    kiln_testkit::root("chown")
}

fn copy(
    e: &Env,
    patterns: &[&str],
    dest: &str,
    dest_is_dir: bool,
    opts: &CopyOptions,
) -> Result<CopyStats, BuildError> {
    copy_ex(e, patterns, &[], false, dest, dest_is_dir, opts)
}

fn copy_ex(
    e: &Env,
    patterns: &[&str],
    excludes: &[&str],
    parents: bool,
    dest: &str,
    dest_is_dir: bool,
    opts: &CopyOptions,
) -> Result<CopyStats, BuildError> {
    let ctx = BuildContext::open(&e.ctx_dir, &["**/ignored.txt".to_owned()]).unwrap();
    let patterns: Vec<String> = patterns.iter().map(|s| (*s).to_owned()).collect();
    let excludes: Vec<String> = excludes.iter().map(|s| (*s).to_owned()).collect();
    let sources = ctx.resolve_sources(&patterns, &excludes, parents).unwrap();
    copy_sources(
        &ctx,
        &sources,
        &Root::open(&e.root).unwrap(),
        dest,
        dest_is_dir,
        opts,
    )
}

#[test]
fn file_goes_to_exact_path_or_into_directory() {
    let e = env();
    write(&e.ctx_dir.join("a.txt"), "hello", 0o640);
    let t = filetime::FileTime::from_unix_time(1_600_000_000, 123);
    filetime::set_file_mtime(e.ctx_dir.join("a.txt"), t).unwrap();

    copy(&e, &["a.txt"], "/x/y/b.txt", false, &CopyOptions::default()).unwrap();
    let out = e.root.join("x/y/b.txt");
    assert_eq!(fs::read_to_string(&out).unwrap(), "hello");
    assert_eq!(mode(&out), 0o640);
    let m = fs::metadata(&out).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_600_000_000, 123));
    assert_eq!(mode(&e.root.join("x")), 0o755);
    assert_eq!(mode(&e.root.join("x/y")), 0o755);

    // An existing directory takes the file inside.
    fs::create_dir(e.root.join("d")).unwrap();
    copy(&e, &["a.txt"], "/d", false, &CopyOptions::default()).unwrap();
    assert_eq!(fs::read_to_string(e.root.join("d/a.txt")).unwrap(), "hello");

    // A trailing slash creates the directory.
    copy(&e, &["a.txt"], "/new/", false, &CopyOptions::default()).unwrap();
    assert_eq!(
        fs::read_to_string(e.root.join("new/a.txt")).unwrap(),
        "hello"
    );

    // dest_is_dir without a slash too.
    let stats = copy(&e, &["a.txt"], "/new2", true, &CopyOptions::default()).unwrap();
    assert_eq!(
        fs::read_to_string(e.root.join("new2/a.txt")).unwrap(),
        "hello"
    );
    assert_eq!(stats.files, 1);
    assert_eq!(stats.bytes, 5);
}

#[test]
fn directory_contents_with_modes_times_symlinks_and_ignores() {
    let e = env();
    write(&e.ctx_dir.join("src/bin/tool"), "#!/bin/sh", 0o755);
    write(&e.ctx_dir.join("src/ignored.txt"), "no", 0o644);
    write(&e.ctx_dir.join("src/skip.log"), "no", 0o644);
    write(&e.ctx_dir.join("src/keep.txt"), "yes", 0o600);
    fs::set_permissions(e.ctx_dir.join("src/bin"), fs::Permissions::from_mode(0o750)).unwrap();
    symlink("/etc/passwd", e.ctx_dir.join("src/abs")).unwrap();
    symlink("bin/tool", e.ctx_dir.join("src/rel")).unwrap();
    let t = filetime::FileTime::from_unix_time(1_500_000_000, 0);
    filetime::set_file_mtime(e.ctx_dir.join("src/bin"), t).unwrap();

    let stats = copy_ex(
        &e,
        &["src"],
        &["*.log"],
        false,
        "/app",
        false,
        &CopyOptions::default(),
    )
    .unwrap();
    let app = e.root.join("app");
    assert_eq!(mode(&app), 0o755);
    assert_eq!(
        fs::read_to_string(app.join("bin/tool")).unwrap(),
        "#!/bin/sh"
    );
    assert_eq!(mode(&app.join("bin/tool")), 0o755);
    assert_eq!(mode(&app.join("bin")), 0o750);
    assert_eq!(mode(&app.join("keep.txt")), 0o600);
    assert_eq!(
        fs::metadata(app.join("bin")).unwrap().mtime(),
        1_500_000_000,
        "directory mtime is set after its children"
    );
    assert_eq!(
        fs::read_link(app.join("abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        fs::read_link(app.join("rel")).unwrap(),
        Path::new("bin/tool")
    );
    assert!(!app.join("ignored.txt").exists(), ".dockerignore applies");
    assert!(!app.join("skip.log").exists(), "--exclude applies");
    assert_eq!(stats.files, 2);
    assert_eq!(stats.dirs, 1);
    assert_eq!(stats.symlinks, 2);
}

#[test]
fn owners_context_is_root_from_is_kept_chown_wins() {
    if !is_root() {
        return;
    }
    let e = env();
    write(&e.ctx_dir.join("d/f"), "x", 0o644);
    std::os::unix::fs::chown(e.ctx_dir.join("d/f"), Some(1000), Some(1001)).unwrap();
    std::os::unix::fs::chown(e.ctx_dir.join("d"), Some(1000), Some(1001)).unwrap();
    fs::create_dir(e.ctx_dir.join("d/sub")).unwrap();
    std::os::unix::fs::chown(e.ctx_dir.join("d/sub"), Some(1002), Some(1002)).unwrap();

    copy(&e, &["d/"], "/ctx", false, &CopyOptions::default()).unwrap();
    assert_eq!(owner(&e.root.join("ctx/f")), (0, 0));
    assert_eq!(owner(&e.root.join("ctx/sub")), (0, 0));

    let keep = CopyOptions {
        preserve_owner: true,
        ..CopyOptions::default()
    };
    copy(&e, &["d/"], "/from", false, &keep).unwrap();
    assert_eq!(owner(&e.root.join("from/f")), (1000, 1001));
    assert_eq!(owner(&e.root.join("from/sub")), (1002, 1002));

    let chown = CopyOptions {
        owner: Some(Owner { uid: 7, gid: 8 }),
        preserve_owner: true,
        ..CopyOptions::default()
    };
    copy(&e, &["d/f"], "/a/b/f", false, &chown).unwrap();
    assert_eq!(
        owner(&e.root.join("a")),
        (7, 8),
        "created parents get --chown"
    );
    assert_eq!(owner(&e.root.join("a/b")), (7, 8));
    assert_eq!(owner(&e.root.join("a/b/f")), (7, 8));
    copy(&e, &["d"], "/c", false, &chown).unwrap();
    assert_eq!(owner(&e.root.join("c")), (7, 8));
    assert_eq!(owner(&e.root.join("c/sub")), (7, 8));
}

#[test]
fn chmod_octal_and_symbolic_apply_to_files_and_dirs() {
    let e = env();
    write(&e.ctx_dir.join("d/f"), "x", 0o600);
    fs::create_dir(e.ctx_dir.join("d/sub")).unwrap();
    fs::set_permissions(e.ctx_dir.join("d/sub"), fs::Permissions::from_mode(0o700)).unwrap();
    let octal = CopyOptions {
        chmod: parse_chmod("640").unwrap(),
        ..CopyOptions::default()
    };
    fs::create_dir(e.root.join("o")).unwrap();
    fs::set_permissions(e.root.join("o"), fs::Permissions::from_mode(0o711)).unwrap();
    copy(&e, &["d"], "/o/", false, &octal).unwrap();
    assert_eq!(mode(&e.root.join("o/f")), 0o640);
    assert_eq!(mode(&e.root.join("o/sub")), 0o640);
    assert_eq!(
        mode(&e.root.join("o")),
        0o711,
        "an existing destination keeps its mode"
    );

    let symbolic = CopyOptions {
        chmod: parse_chmod("go+rX").unwrap(),
        ..CopyOptions::default()
    };
    copy(&e, &["d"], "/s/", false, &symbolic).unwrap();
    assert_eq!(mode(&e.root.join("s/f")), 0o644);
    assert_eq!(mode(&e.root.join("s/sub")), 0o755);
}

#[test]
fn octal_chmod_is_the_mode_of_directories_the_copy_creates() {
    // BuildKit's testCopyChmod: `COPY --chmod=777 foo /parent/foo` then
    // `COPY --chmod=770 foo /parent/sub/foo` give /parent 0777 and
    // /parent/sub 0770.
    let e = env();
    write(&e.ctx_dir.join("foo"), "x", 0o600);
    write(&e.ctx_dir.join("d/f"), "y", 0o600);
    let chmod = |m: &str| CopyOptions {
        chmod: parse_chmod(m).unwrap(),
        ..CopyOptions::default()
    };
    copy(&e, &["foo"], "/parent/foo", false, &chmod("777")).unwrap();
    copy(&e, &["foo"], "/parent/sub/foo", false, &chmod("770")).unwrap();
    assert_eq!(mode(&e.root.join("parent")), 0o777);
    assert_eq!(mode(&e.root.join("parent/sub")), 0o770);
    assert_eq!(mode(&e.root.join("parent/sub/foo")), 0o770);
    // Special bits do not reach the directories (Go's os.FileMode of the
    // octal value keeps the permission bits only).
    copy(&e, &["foo"], "/sticky/dir/foo", false, &chmod("1777")).unwrap();
    assert_eq!(mode(&e.root.join("sticky/dir")), 0o777);
    assert_eq!(mode(&e.root.join("sticky/dir/foo")), 0o1777);
    // A directory source's destination is created with the mode too.
    copy(&e, &["d"], "/new/tree", false, &chmod("750")).unwrap();
    assert_eq!(mode(&e.root.join("new")), 0o750);
    assert_eq!(mode(&e.root.join("new/tree")), 0o750);
    // A symbolic mode is not a Mode to fsutil: created directories are 0755.
    copy(&e, &["foo"], "/sym/dir/foo", false, &chmod("u+x")).unwrap();
    assert_eq!(mode(&e.root.join("sym/dir")), 0o755);
    assert_eq!(mode(&e.root.join("sym/dir/foo")), 0o700);
    // Heredoc files too (the frontend copies them with the same Mode).
    write_inline(
        &Root::open(&e.root).unwrap(),
        &[("h".to_owned(), "h".to_owned())],
        "/inline/dir/h",
        &chmod("700"),
    )
    .unwrap();
    assert_eq!(mode(&e.root.join("inline/dir")), 0o700);
    // An archive's destination is 0755 whatever the mode (BuildKit's
    // unpack), and so are the directories created above it.
    let adding = CopyOptions {
        unpack_archives: true,
        ..chmod("700")
    };
    fs::write(e.ctx_dir.join("a.tar"), tar_bytes()).unwrap();
    copy(&e, &["a.tar"], "/arch/x/", false, &adding).unwrap();
    assert_eq!(mode(&e.root.join("arch/x")), 0o755);
    assert_eq!(mode(&e.root.join("arch")), 0o755);
}

#[test]
fn parents_create_the_directories_on_the_way_with_their_source_metadata() {
    let e = env();
    write(&e.ctx_dir.join("foo1/foo2/bar"), "testing", 0o600);
    write(&e.ctx_dir.join("foo1/foo2/baz"), "testing2", 0o600);
    write(&e.ctx_dir.join("foo1/other"), "other", 0o600);
    fs::set_permissions(e.ctx_dir.join("foo1"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(
        e.ctx_dir.join("foo1/foo2"),
        fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    let t = filetime::FileTime::from_unix_time(1_500_000_000, 0);
    filetime::set_file_mtime(e.ctx_dir.join("foo1/foo2"), t).unwrap();
    // BuildKit's testCopyParents.
    copy_ex(
        &e,
        &["foo1/foo2/bar"],
        &[],
        true,
        "/",
        false,
        &CopyOptions::default(),
    )
    .unwrap();
    copy_ex(
        &e,
        &["foo1/foo2/ba*"],
        &[],
        true,
        "/test/",
        false,
        &CopyOptions::default(),
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(e.root.join("foo1/foo2/bar")).unwrap(),
        "testing"
    );
    assert!(!e.root.join("foo1/foo2/baz").exists());
    assert!(!e.root.join("foo1/other").exists());
    assert_eq!(
        fs::read_to_string(e.root.join("test/foo1/foo2/baz")).unwrap(),
        "testing2"
    );
    assert_eq!(mode(&e.root.join("foo1")), 0o700);
    assert_eq!(mode(&e.root.join("test/foo1/foo2")), 0o750);
    assert_eq!(
        fs::metadata(e.root.join("test/foo1/foo2")).unwrap().mtime(),
        1_500_000_000
    );
    // A wildcard matching nothing still makes the destination.
    let stats = copy_ex(
        &e,
        &["nothing*/x"],
        &[],
        true,
        "/empty/",
        false,
        &CopyOptions::default(),
    )
    .unwrap();
    assert_eq!(stats, CopyStats::default());
    assert_eq!(fs::read_dir(e.root.join("empty")).unwrap().count(), 0);
}

#[test]
fn excluded_contents_leave_an_empty_destination() {
    // BuildKit's testExcludedFilesOnCopy: `ADD --exclude=* dir* /6`.
    let e = env();
    write(&e.ctx_dir.join("dir1/a.png"), "a", 0o600);
    write(&e.ctx_dir.join("dir2/b.pdf"), "b", 0o600);
    copy_ex(
        &e,
        &["dir*"],
        &["*"],
        false,
        "/6",
        true,
        &CopyOptions::default(),
    )
    .unwrap();
    assert_eq!(fs::read_dir(e.root.join("6")).unwrap().count(), 0);
}

#[test]
fn sockets_of_the_context_are_copied_as_empty_files() {
    let e = env();
    write(&e.ctx_dir.join("d/f"), "x", 0o644);
    drop(std::os::unix::net::UnixListener::bind(e.ctx_dir.join("d/sock")).unwrap());
    fs::set_permissions(e.ctx_dir.join("d/sock"), fs::Permissions::from_mode(0o751)).unwrap();
    let t = filetime::FileTime::from_unix_time(1_400_000_000, 0);
    filetime::set_symlink_file_times(e.ctx_dir.join("d/sock"), t, t).unwrap();
    let stats = copy(&e, &["d"], "/o", false, &CopyOptions::default()).unwrap();
    assert_eq!(stats.files, 2);
    let copied = fs::symlink_metadata(e.root.join("o/sock")).unwrap();
    assert!(copied.is_file());
    assert_eq!(copied.len(), 0);
    assert_eq!(copied.mode() & 0o7777, 0o751);
    assert_eq!(copied.mtime(), 1_400_000_000);
    // A socket named as the source itself.
    copy(&e, &["d/sock"], "/single", false, &CopyOptions::default()).unwrap();
    assert!(
        fs::symlink_metadata(e.root.join("single"))
            .unwrap()
            .is_file()
    );
    // From a stage's filesystem a socket is not copied.
    let stage = BuildContext::open_stage(&e.ctx_dir).unwrap();
    let sources = stage
        .resolve_sources(&["d".to_owned()], &[], false)
        .unwrap();
    let root = Root::open(&e.root).unwrap();
    copy_sources(
        &stage,
        &sources,
        &root,
        "/st",
        false,
        &CopyOptions::default(),
    )
    .unwrap();
    assert!(e.root.join("st/f").exists());
    assert!(fs::symlink_metadata(e.root.join("st/sock")).is_err());
}

#[test]
fn parents_keep_the_source_path() {
    let e = env();
    write(&e.ctx_dir.join("a/b/c.txt"), "c", 0o644);
    write(&e.ctx_dir.join("a/d/e.txt"), "e", 0o644);
    copy_ex(
        &e,
        &["a/b/c.txt", "a/d"],
        &[],
        true,
        "/p/",
        true,
        &CopyOptions::default(),
    )
    .unwrap();
    assert_eq!(fs::read_to_string(e.root.join("p/a/b/c.txt")).unwrap(), "c");
    assert_eq!(fs::read_to_string(e.root.join("p/a/d/e.txt")).unwrap(), "e");
}

#[test]
fn overwrite_rules() {
    let e = env();
    write(&e.ctx_dir.join("f"), "new", 0o644);
    write(&e.ctx_dir.join("d/x"), "x", 0o644);
    write(&e.root.join("old"), "old", 0o600);
    symlink("/etc/shadow", e.root.join("link")).unwrap();
    fs::create_dir_all(e.root.join("dir/f")).unwrap();
    write(&e.root.join("file"), "file", 0o644);

    copy(&e, &["f"], "/old", false, &CopyOptions::default()).unwrap();
    assert_eq!(fs::read_to_string(e.root.join("old")).unwrap(), "new");
    assert_eq!(mode(&e.root.join("old")), 0o644);

    // A symlink at the target is replaced, not followed.
    copy(&e, &["f"], "/link", false, &CopyOptions::default()).unwrap();
    assert!(fs::symlink_metadata(e.root.join("link")).unwrap().is_file());

    let err = copy(&e, &["f"], "/dir/", false, &CopyOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot replace to directory /dir/f with file"
    );

    let err = copy(&e, &["d"], "/file", false, &CopyOptions::default()).unwrap_err();
    assert_eq!(err.to_string(), "cannot copy to non-directory: /file");

    let err = copy(&e, &["f"], "/file/sub/x", false, &CopyOptions::default()).unwrap_err();
    assert_eq!(err.to_string(), "cannot copy to non-directory: /file");
}

#[test]
fn destination_symlinks_resolve_inside_root() {
    let e = env();
    let victim = tempfile::tempdir().unwrap();
    write(&e.ctx_dir.join("f"), "payload", 0o644);
    write(&e.ctx_dir.join("d/g"), "payload", 0o644);
    symlink(victim.path(), e.root.join("abs")).unwrap();
    symlink("../../../../../../..", e.root.join("up")).unwrap();
    fs::create_dir(e.root.join("tmp")).unwrap();
    symlink("/tmp", e.root.join("t")).unwrap();

    copy(&e, &["f"], "/abs/f", false, &CopyOptions::default()).unwrap();
    copy(&e, &["d"], "/up/x/", false, &CopyOptions::default()).unwrap();
    copy(&e, &["f"], "/t/", false, &CopyOptions::default()).unwrap();
    assert_eq!(
        fs::read_dir(victim.path()).unwrap().count(),
        0,
        "host dir untouched"
    );
    // `abs` points at a host path that does not exist inside the root: it is
    // created there.
    let inside = e
        .root
        .join(victim.path().strip_prefix("/").unwrap())
        .join("f");
    assert_eq!(fs::read_to_string(inside).unwrap(), "payload");
    assert_eq!(fs::read_to_string(e.root.join("x/g")).unwrap(), "payload");
    assert_eq!(fs::read_to_string(e.root.join("tmp/f")).unwrap(), "payload");
}

#[test]
fn resolve_chown_names_ids_and_errors() {
    let e = env();
    write(
        &e.root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        0o644,
    );
    write(
        &e.root.join("etc/group"),
        "root:x:0:\nstaff:x:50:app\n",
        0o644,
    );
    assert_eq!(
        resolve_chown(&Root::open(&e.root).unwrap(), "app").unwrap(),
        Owner {
            uid: 1000,
            gid: 1001
        }
    );
    assert_eq!(
        resolve_chown(&Root::open(&e.root).unwrap(), "app:staff").unwrap(),
        Owner { uid: 1000, gid: 50 }
    );
    assert_eq!(
        resolve_chown(&Root::open(&e.root).unwrap(), "42").unwrap(),
        Owner { uid: 42, gid: 42 }
    );
    assert_eq!(
        resolve_chown(&Root::open(&e.root).unwrap(), "42:7").unwrap(),
        Owner { uid: 42, gid: 7 }
    );
    // Names the files do not list are 0, as in BuildKit's file operations.
    assert_eq!(
        resolve_chown(&Root::open(&e.root).unwrap(), "nobody").unwrap(),
        Owner { uid: 0, gid: 0 }
    );
    assert_eq!(
        resolve_chown(&Root::open(&e.root).unwrap(), "app:wheel").unwrap(),
        Owner {
            uid: 1000,
            gid: 1001
        }
    );
    assert_eq!(
        resolve_chown(&Root::open(&e.root).unwrap(), "a:")
            .unwrap_err()
            .to_string(),
        "invalid --chown value \"a:\""
    );
}

#[test]
fn resolve_chown_reads_passwd_inside_root() {
    let e = env();
    let host = tempfile::tempdir().unwrap();
    write(
        &host.path().join("passwd"),
        "evil:x:5:5::/:/bin/sh\n",
        0o644,
    );
    symlink(host.path(), e.root.join("etc")).unwrap();
    // The host's passwd (through the absolute link) is not read: "evil" is
    // unknown inside the root.
    assert_eq!(
        resolve_chown(&Root::open(&e.root).unwrap(), "evil").unwrap(),
        Owner { uid: 0, gid: 0 }
    );
}

#[test]
fn inline_files() {
    let e = env();
    write_inline(
        &Root::open(&e.root).unwrap(),
        &[("one".to_owned(), "1\n".to_owned())],
        "/etc/conf",
        &CopyOptions::default(),
    )
    .unwrap();
    assert_eq!(fs::read_to_string(e.root.join("etc/conf")).unwrap(), "1\n");
    assert_eq!(mode(&e.root.join("etc/conf")), 0o644);
    let opts = CopyOptions {
        chmod: parse_chmod("755").unwrap(),
        ..CopyOptions::default()
    };
    write_inline(
        &Root::open(&e.root).unwrap(),
        &[
            ("a.sh".to_owned(), "a".to_owned()),
            ("b.sh".to_owned(), "b".to_owned()),
        ],
        "/bin/",
        &opts,
    )
    .unwrap();
    assert_eq!(fs::read_to_string(e.root.join("bin/b.sh")).unwrap(), "b");
    assert_eq!(mode(&e.root.join("bin/a.sh")), 0o755);
}

fn tar_bytes() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o751);
    h.set_uid(123);
    h.set_gid(456);
    h.set_mtime(1_234_567_890);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, "pkg/hello.txt", &b"hello"[..])
        .unwrap();
    b.into_inner().unwrap()
}

fn add(e: &Env, name: &str, data: &[u8], opts: &CopyOptions) -> CopyStats {
    fs::write(e.ctx_dir.join(name), data).unwrap();
    copy(e, &[name], "/opt", false, opts).unwrap()
}

#[test]
fn add_unpacks_archives_by_content() {
    let e = env();
    let opts = CopyOptions {
        unpack_archives: true,
        ..CopyOptions::default()
    };
    let plain = tar_bytes();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain).unwrap();
    let gz = gz.finish().unwrap();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    bz.write_all(&plain).unwrap();
    let bz = bz.finish().unwrap();
    let zst = zstd::encode_all(&plain[..], 3).unwrap();
    let mut xz = Vec::new();
    lzma_rs::xz_compress(&mut &plain[..], &mut xz).unwrap();

    for (name, data) in [
        ("a.tar", &plain),
        ("b.bin", &gz),
        ("c.tar.bz2", &bz),
        ("d", &zst),
        ("e.txz", &xz),
    ] {
        let _ = fs::remove_dir_all(e.root.join("opt"));
        let stats = add(&e, name, data, &opts);
        assert_eq!(stats.archives, 1, "{name}");
        let out = e.root.join("opt/pkg/hello.txt");
        assert_eq!(fs::read_to_string(&out).unwrap(), "hello", "{name}");
        assert_eq!(mode(&out), 0o751, "{name}");
        if nix::unistd::geteuid().is_root() {
            assert_eq!(owner(&out), (123, 456), "{name}: archive owners kept");
        }
        fs::remove_file(e.ctx_dir.join(name)).unwrap();
    }
}

#[test]
fn add_copies_non_archives_as_is() {
    let e = env();
    let opts = CopyOptions {
        unpack_archives: true,
        ..CopyOptions::default()
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"not a tar at all").unwrap();
    let gz = gz.finish().unwrap();
    fs::create_dir(e.root.join("opt")).unwrap();
    let stats = add(&e, "x.tar.gz", &gz, &opts);
    assert_eq!(stats.archives, 0);
    assert_eq!(fs::read(e.root.join("opt/x.tar.gz")).unwrap(), gz);
    let stats = add(&e, "y.tar", b"plain text", &opts);
    assert_eq!(stats.archives, 0);
    assert_eq!(fs::read(e.root.join("opt/y.tar")).unwrap(), b"plain text");
    // COPY never unpacks.
    let stats = add(&e, "z.tar", &tar_bytes(), &CopyOptions::default());
    assert_eq!(stats.archives, 0);
    assert_eq!(fs::read(e.root.join("opt/z.tar")).unwrap(), tar_bytes());
}

#[test]
fn add_archive_with_chown_and_escapes() {
    let e = env();
    let opts = CopyOptions {
        unpack_archives: true,
        owner: Some(Owner { uid: 9, gid: 10 }),
        ..CopyOptions::default()
    };
    add(&e, "a.tar", &tar_bytes(), &opts);
    let out = e.root.join("opt/pkg/hello.txt");
    assert_eq!(fs::read_to_string(&out).unwrap(), "hello");
    assert_eq!(mode(&out), 0o751);
    if nix::unistd::geteuid().is_root() {
        assert_eq!(owner(&out), (9, 10));
        assert_eq!(owner(&e.root.join("opt/pkg")), (9, 10));
    }

    // `../x` is refused; nothing lands next to the root.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../escape");
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    let evil = b.into_inner().unwrap();
    fs::write(e.ctx_dir.join("evil.tar"), &evil).unwrap();
    let err = copy(
        &e,
        &["evil.tar"],
        "/opt",
        false,
        &CopyOptions {
            unpack_archives: true,
            ..CopyOptions::default()
        },
    )
    .unwrap_err();
    assert!(
        err.to_string().starts_with("unpacking /evil.tar: "),
        "{err}"
    );
    assert!(!e.root.parent().unwrap().join("escape").exists());
}

/// Serves `responses` (status line, headers, body) to one connection each.
fn serve(responses: Vec<(&'static str, &'static str, Vec<u8>)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for (status, headers, body) in responses {
            let (mut stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                line.clear();
            }
            write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
                body.len()
            )
            .unwrap();
            stream.write_all(&body).unwrap();
        }
    });
    format!("http://{addr}")
}

#[test]
fn download_checks_digest_and_status() {
    let tmp = tempfile::tempdir().unwrap();
    let body = b"downloaded".to_vec();
    let digest = kiln_store::digest::digest_bytes(&body).to_string();
    let base = serve(vec![
        (
            "200 OK",
            "Last-Modified: Tue, 15 Nov 1994 08:12:31 GMT\r\n",
            body.clone(),
        ),
        ("200 OK", "", body.clone()),
        ("404 Not Found", "", b"nope".to_vec()),
        ("200 OK", "", body.clone()),
    ]);

    let url = format!("{base}/files/tool%20v1.bin?x=1");
    let (path, name) = download(&url, Some(&digest), tmp.path(), true).unwrap();
    assert_eq!(name, "tool v1.bin");
    assert_eq!(fs::read(&path).unwrap(), body);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(fs::metadata(&path).unwrap().mtime(), 784_887_151);

    let wrong = format!("sha256:{}", "0".repeat(64));
    let url = format!("{base}/a");
    let err = download(&url, Some(&wrong), tmp.path(), true).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("digest mismatch for {url}: expected {wrong}, got {digest}")
    );

    let url = format!("{base}/missing");
    let err = download(&url, None, tmp.path(), true).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("downloading {url}: invalid response status 404")
    );

    let url = format!("{base}/");
    let (path, name) = download(&url, None, tmp.path(), true).unwrap();
    assert_eq!(name, UNNAMED_DOWNLOAD);

    // Then placed like a file source, owned by root.
    let e = env();
    fs::create_dir(e.root.join("srv")).unwrap();
    copy_file_to(
        &Root::open(&e.root).unwrap(),
        &path,
        &name,
        "/srv",
        false,
        &CopyOptions::default(),
    )
    .unwrap();
    let out = e.root.join("srv/__unnamed__");
    assert_eq!(fs::read(&out).unwrap(), body);
    assert_eq!(mode(&out), 0o600);
    copy_file_to(
        &Root::open(&e.root).unwrap(),
        &path,
        &name,
        "/srv/renamed",
        false,
        &CopyOptions::default(),
    )
    .unwrap();
    assert_eq!(fs::read(e.root.join("srv/renamed")).unwrap(), body);
}

#[test]
fn download_rejects_bad_checksum_syntax() {
    let err = download(
        "http://127.0.0.1:1/x",
        Some("md5:abc"),
        Path::new("/tmp"),
        true,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid checksum \"md5:abc\": expected sha256:<64 hex digits>"
    );
}

#[test]
fn url_file_names() {
    assert_eq!(url_file_name("https://example.com/a/b.tar.gz"), "b.tar.gz");
    assert_eq!(url_file_name("https://example.com/a/dir/"), "dir");
    assert_eq!(url_file_name("https://example.com"), UNNAMED_DOWNLOAD);
    assert_eq!(url_file_name("https://example.com/?q=1"), UNNAMED_DOWNLOAD);
}

#[test]
fn xattrs_and_fifos_are_copied() {
    let e = env();
    write(&e.ctx_dir.join("d/f"), "x", 0o644);
    let unsupported = xattr::set(e.ctx_dir.join("d/f"), "user.kiln", b"v")
        .err()
        .map(|err| format!("user xattrs unsupported here: {err}"));
    if !kiln_testkit::require("XATTRS", unsupported.as_deref()) {
        return;
    }
    nix::unistd::mkfifo(&e.ctx_dir.join("d/pipe"), Mode::from_bits_truncate(0o640)).unwrap();
    let stats = copy(&e, &["d"], "/o", false, &CopyOptions::default()).unwrap();
    assert_eq!(
        xattr::get(e.root.join("o/f"), "user.kiln").unwrap(),
        Some(b"v".to_vec())
    );
    let pipe = fs::symlink_metadata(e.root.join("o/pipe")).unwrap();
    assert!(pipe.file_type().is_fifo());
    assert_eq!(pipe.mode() & 0o7777, 0o640);
    assert_eq!(stats.others, 1);
}
