//! pack -> unpack round trips, whiteout conversion and pack determinism.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};
use std::path::Path;

use filetime::{FileTime, set_symlink_file_times};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};

use super::{RawTar, root_or_skip, snapshot, tar_names};
use crate::layer::{PackOptions, UnpackOptions, WhiteoutMode, pack_directory, unpack_layer};

/// `security.capability` v2 granting `cap_net_raw`, effective.
const CAP_NET_RAW: [u8; 20] = [
    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];
const T: i64 = 1_600_000_000;

fn long_dir() -> String {
    format!("long/{}", "d".repeat(150))
}

fn long_file() -> String {
    format!("{}/{}", long_dir(), "f".repeat(200))
}

fn long_target() -> String {
    "x/".repeat(150)
}

/// Builds a tree with every supported kind of entry, in `order` (the
/// same tree either way, made with different inode numbers and creation order).
fn build_tree(root: &Path, reverse: bool) {
    let mut steps: Vec<Box<dyn Fn()>> = vec![
        Box::new(|| {
            fs::write(root.join("a.txt"), b"hello").unwrap();
            lchown(root.join("a.txt"), Some(1000), Some(2000)).unwrap();
            xattr::set(root.join("a.txt"), "user.comment", b"kept").unwrap();
        }),
        Box::new(|| {
            fs::create_dir_all(root.join("bin")).unwrap();
            fs::write(root.join("bin/su"), b"#!/bin/sh\n").unwrap();
            fs::set_permissions(root.join("bin/su"), fs::Permissions::from_mode(0o4755)).unwrap();
            xattr::set(root.join("bin/su"), "security.capability", &CAP_NET_RAW).unwrap();
        }),
        Box::new(|| {
            fs::create_dir(root.join("shared")).unwrap();
            fs::set_permissions(root.join("shared"), fs::Permissions::from_mode(0o2775)).unwrap();
            lchown(root.join("shared"), Some(0), Some(50)).unwrap();
            fs::create_dir(root.join("tmp")).unwrap();
            fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
            fs::create_dir(root.join("empty")).unwrap();
        }),
        Box::new(|| {
            symlink("a.txt", root.join("link")).unwrap();
            symlink("/usr/lib64", root.join("lib64")).unwrap();
            lchown(root.join("lib64"), Some(7), Some(8)).unwrap();
            symlink(long_target(), root.join("longlink")).unwrap();
        }),
        Box::new(|| {
            fs::write(root.join("h1"), b"linked").unwrap();
            fs::hard_link(root.join("h1"), root.join("h2")).unwrap();
            fs::write(root.join("big-uid"), b"").unwrap();
            lchown(root.join("big-uid"), Some(3_000_000), Some(4_000_000)).unwrap();
        }),
        Box::new(|| {
            fs::create_dir(root.join("dev")).unwrap();
            let m = Mode::from_bits_truncate(0o666);
            mknod(&root.join("dev/null"), SFlag::S_IFCHR, m, makedev(1, 3)).unwrap();
            mknod(
                &root.join("dev/loop0"),
                SFlag::S_IFBLK,
                Mode::from_bits_truncate(0o660),
                makedev(7, 0),
            )
            .unwrap();
            mknod(
                &root.join("dev/fifo"),
                SFlag::S_IFIFO,
                Mode::from_bits_truncate(0o600),
                0,
            )
            .unwrap();
            // mknod applies the umask.
            fs::set_permissions(root.join("dev/null"), fs::Permissions::from_mode(0o666)).unwrap();
            fs::set_permissions(root.join("dev/loop0"), fs::Permissions::from_mode(0o660)).unwrap();
        }),
        Box::new(|| {
            fs::create_dir_all(root.join(long_dir())).unwrap();
            fs::write(root.join(long_file()), b"deep").unwrap();
            fs::write(root.join(format!("{}.txt", "n".repeat(120))), b"medium").unwrap();
        }),
    ];
    if reverse {
        steps.reverse();
    }
    for s in &steps {
        s();
    }
    // Times last, files before their directories.
    let mut paths: Vec<_> = walkdir::WalkDir::new(root)
        .min_depth(1)
        .contents_first(true)
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .collect();
    paths.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in paths.iter().enumerate() {
        let t = FileTime::from_unix_time(T + i64::try_from(p.as_os_str().len() % 97).unwrap(), 0);
        let _ = i;
        set_symlink_file_times(p, t, t).unwrap();
    }
}

fn pack(dir: &Path, opts: &PackOptions) -> Vec<u8> {
    let mut out = Vec::new();
    pack_directory(dir, &mut out, opts).unwrap();
    out
}

#[test]
fn round_trip_preserves_everything() {
    if !root_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let dest = tmp.path().join("dest");
    fs::create_dir(&src).unwrap();
    fs::create_dir(&dest).unwrap();
    build_tree(&src, false);
    let tar = pack(&src, &PackOptions::default());
    let stats = unpack_layer(&tar[..], &dest, &UnpackOptions::default()).unwrap();
    // 20 entries under the root; bytes of the regular files written (h2 is a link).
    assert_eq!(stats.entries, 20);
    assert_eq!(stats.bytes, 5 + 10 + 6 + 4 + 6);
    let a = snapshot(&src);
    let b = snapshot(&dest);
    assert_eq!(a[1..], b[1..]);
    // Spot checks, so the comparison cannot pass vacuously.
    assert!(
        b.iter().any(|l| l.contains("\"bin/su\" 104755 0:0")
            && l.contains("security.capability=01000002002000")),
        "{b:#?}"
    );
    assert!(
        b.iter().any(
            |l| l.contains("\"a.txt\" 100644 1000:2000") && l.contains("user.comment=6b657074")
        )
    );
    assert!(
        b.iter()
            .any(|l| l.contains("\"lib64\"") && l.contains("7:8") && l.contains("-> /usr/lib64"))
    );
    assert!(
        b.iter()
            .any(|l| l.contains("\"dev/null\" 20666") && l.contains("dev 1:3"))
    );
    assert!(
        b.iter()
            .any(|l| l.contains("\"dev/loop0\" 60660") && l.contains("dev 7:0"))
    );
    assert!(b.iter().any(|l| l.contains("\"dev/fifo\" 10600")));
    assert!(
        b.iter()
            .any(|l| l.contains("\"big-uid\" 100644 3000000:4000000"))
    );
    assert!(b.iter().any(|l| l.contains("\"shared\" 42775 0:50")));
    assert!(b.iter().any(|l| l.contains("\"tmp\" 41777")));
    assert_eq!(fs::read(dest.join(long_file())).unwrap(), b"deep");
    assert_eq!(
        fs::read_link(dest.join("longlink"))
            .unwrap()
            .to_str()
            .unwrap(),
        long_target()
    );
    let h1 = fs::metadata(dest.join("h1")).unwrap();
    let h2 = fs::metadata(dest.join("h2")).unwrap();
    assert_eq!((h1.ino(), h1.nlink()), (h2.ino(), 2));
    // Standard readers see the long names through PAX.
    let names = tar_names(&tar);
    assert!(names.contains(&format!("0 {}", long_file())), "{names:#?}");
    assert!(names.contains(&format!("2 longlink -> {}", long_target())));
    assert!(names.contains(&"1 h2 -> h1".to_owned()));
    assert!(names.contains(&"5 long/".to_owned()));
}

#[test]
fn pax_mtime_nanoseconds_and_dir_times_last() {
    if !root_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let tar = RawTar::default()
        .pax(&[("mtime", b"1234567890.123456789")])
        .dir(b"d/")
        .pax(&[("mtime", b"-1.25")])
        .file(b"d/f", b"x")
        .file(b"d/g", b"y")
        .finish();
    unpack_layer(&tar[..], tmp.path(), &UnpackOptions::default()).unwrap();
    let d = fs::metadata(tmp.path().join("d")).unwrap();
    assert_eq!((d.mtime(), d.mtime_nsec()), (1_234_567_890, 123_456_789));
    let f = fs::metadata(tmp.path().join("d/f")).unwrap();
    assert_eq!((f.mtime(), f.mtime_nsec()), (-2, 750_000_000));
    assert_eq!(
        fs::metadata(tmp.path().join("d/g")).unwrap().mtime(),
        1_500_000_000
    );
}

#[test]
fn pack_is_deterministic() {
    if !root_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    fs::create_dir(&a).unwrap();
    fs::create_dir(&b).unwrap();
    build_tree(&a, false);
    build_tree(&b, true);
    let opts = PackOptions::default();
    let ta = pack(&a, &opts);
    assert_eq!(ta, pack(&a, &opts));
    assert_eq!(ta, pack(&b, &opts));
    assert_eq!(ta.len() % 512, 0);
    assert!(ta.ends_with(&[0; 1024]));
    // Clamping: every mtime is T + something > T - 1, so all become the clamp.
    let clamped = pack(
        &a,
        &PackOptions {
            clamp_mtime: Some(T - 1),
            ..PackOptions::default()
        },
    );
    let mut archive = tar::Archive::new(&clamped[..]);
    for e in archive.entries().unwrap() {
        let e = e.unwrap();
        assert_eq!(e.header().mtime().unwrap(), u64::try_from(T - 1).unwrap());
        assert!(e.header().username_bytes().is_none_or(<[u8]>::is_empty));
    }
    let unclamped = pack(
        &a,
        &PackOptions {
            clamp_mtime: Some(T + 1000),
            ..PackOptions::default()
        },
    );
    assert_eq!(unclamped, ta);
}

#[test]
fn overlay_whiteouts_pack_and_unpack() {
    if !root_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let upper = tmp.path().join("upper");
    fs::create_dir_all(upper.join("d")).unwrap();
    fs::create_dir_all(upper.join("e")).unwrap();
    mknod(
        &upper.join("d/gone"),
        SFlag::S_IFCHR,
        Mode::empty(),
        makedev(0, 0),
    )
    .unwrap();
    xattr::set(upper.join("e"), "trusted.overlay.opaque", b"y").unwrap();
    xattr::set(upper.join("e"), "trusted.overlay.origin", b"junk").unwrap();
    fs::write(upper.join("e/keep"), b"k").unwrap();

    let tar = pack(
        &upper,
        &PackOptions {
            clamp_mtime: None,
            overlay_whiteouts: true,
            owner_names: None,
        },
    );
    assert_eq!(
        tar_names(&tar),
        [
            "5 d/",
            "0 d/.wh.gone",
            "5 e/",
            "0 e/.wh..wh..opq",
            "0 e/keep"
        ]
    );
    // Without the option the device and xattrs are copied as they are.
    let plain = pack(&upper, &PackOptions::default());
    assert_eq!(tar_names(&plain), ["5 d/", "3 d/gone", "5 e/", "0 e/keep"]);

    let dest = tmp.path().join("dest");
    fs::create_dir(&dest).unwrap();
    unpack_layer(
        &tar[..],
        &dest,
        &UnpackOptions {
            whiteouts: WhiteoutMode::Overlay,
        },
    )
    .unwrap();
    let gone = dest.join("d/gone").symlink_metadata().unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &gone.file_type()
    ));
    assert_eq!(gone.rdev(), 0);
    assert_eq!(
        xattr::get(dest.join("e"), "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
    assert_eq!(
        xattr::get(dest.join("e"), "trusted.overlay.origin").unwrap(),
        None
    );
    assert_eq!(fs::read(dest.join("e/keep")).unwrap(), b"k");
    // Unpacked overlay form packs back to the same members.
    let again = pack(
        &dest,
        &PackOptions {
            clamp_mtime: None,
            overlay_whiteouts: true,
            owner_names: None,
        },
    );
    assert_eq!(tar_names(&again), tar_names(&tar));
}

#[test]
fn overlay_whiteout_replaces_existing_entry() {
    if !root_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir_all(tmp.path().join("x/deep")).unwrap();
    let tar = RawTar::default().file(b".wh.x", b"").finish();
    unpack_layer(&tar[..], tmp.path(), &UnpackOptions::default()).unwrap();
    assert_eq!(tmp.path().join("x").symlink_metadata().unwrap().rdev(), 0);
    assert!(!tmp.path().join("x").is_dir());
}

#[test]
fn apply_mode_flattens_layers() {
    if !root_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path();
    let opts = UnpackOptions {
        whiteouts: WhiteoutMode::Apply,
    };
    let layer1 = RawTar::default()
        .dir(b"d/")
        .file(b"d/gone", b"1")
        .file(b"d/stay", b"1")
        .dir(b"gonedir/")
        .file(b"gonedir/f", b"1")
        .dir(b"e/")
        .file(b"e/old", b"1")
        .dir(b"e/sub/")
        .file(b"e/sub/older", b"1")
        .dir(b"e/sub2/")
        .finish();
    unpack_layer(&layer1[..], dest, &opts).unwrap();
    let layer2 = RawTar::default()
        .file(b"d/.wh.gone", b"")
        .file(b".wh.gonedir", b"")
        .file(b".wh.never-existed", b"")
        .dir(b"e/")
        .file(b"e/new1", b"2")
        .file(b"e/.wh..wh..opq", b"")
        .dir(b"e/sub/")
        .file(b"e/sub/new", b"2")
        .file(b"f", b"2")
        .file(b".wh.f", b"")
        .finish();
    let stats = unpack_layer(&layer2[..], dest, &opts).unwrap();
    assert_eq!(stats.entries, 10);
    let mut names: Vec<String> = walkdir::WalkDir::new(dest)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .map(|e| {
            e.unwrap()
                .path()
                .strip_prefix(dest)
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["d", "d/stay", "e", "e/new1", "e/sub", "e/sub/new", "f"]
    );
}

#[test]
fn pack_path_names_one_resource_and_unpack_copy_keeps_kinds() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    fs::create_dir_all(tree.join("sub")).unwrap();
    fs::write(tree.join("sub/f"), b"f").unwrap();
    fs::hard_link(tree.join("sub/f"), tree.join("g")).unwrap();
    symlink("/", tree.join("up")).unwrap();
    // A directory: under the given name, hard links renamed with it.
    let mut out = Vec::new();
    crate::layer::pack_path(&tree, b"renamed", &mut out, None).unwrap();
    assert_eq!(
        tar_names(&out),
        [
            "5 renamed/",
            "0 renamed/g",
            "5 renamed/sub/",
            "1 renamed/sub/f -> renamed/g",
            "2 renamed/up -> /"
        ]
    );
    // A symlink is one entry, not followed.
    let mut link = Vec::new();
    crate::layer::pack_path(&tree.join("up"), b"up", &mut link, None).unwrap();
    assert_eq!(tar_names(&link), ["2 up -> /"]);

    if !root_or_skip() {
        return;
    }
    let dest = tmp.path().join("dest");
    fs::create_dir(&dest).unwrap();
    crate::layer::unpack_copy(out.as_slice(), &dest, Some((3, 4))).unwrap();
    for path in ["renamed", "renamed/sub/f", "renamed/up"] {
        let meta = fs::symlink_metadata(dest.join(path)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (3, 4), "{path}");
    }
    assert_eq!(fs::metadata(dest.join("renamed/g")).unwrap().nlink(), 2);
    // Files replace files (without an owner, with the header's ids); a
    // directory and a non-directory never replace each other (Docker's
    // NoOverwriteDirNonDir).
    lchown(tree.join("g"), Some(7), Some(8)).unwrap();
    let mut again = Vec::new();
    crate::layer::pack_path(&tree, b"renamed", &mut again, None).unwrap();
    crate::layer::unpack_copy(again.as_slice(), &dest, None).unwrap();
    assert_eq!(fs::metadata(dest.join("renamed/g")).unwrap().uid(), 7);
    let mut file_over_dir = Vec::new();
    crate::layer::pack_path(&tree.join("g"), b"renamed/sub", &mut file_over_dir, None).unwrap();
    let err = crate::layer::unpack_copy(file_over_dir.as_slice(), &dest, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot overwrite directory \"{0}/renamed/sub\" with non-directory \"{0}\"",
            dest.display()
        )
    );
    let mut dir_over_link = Vec::new();
    crate::layer::pack_path(&tree.join("sub"), b"renamed/up", &mut dir_over_link, None).unwrap();
    let err = crate::layer::unpack_copy(dir_over_link.as_slice(), &dest, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot overwrite non-directory \"{0}/renamed/up\" with directory \"{0}\"",
            dest.display()
        )
    );
    assert!(
        fs::symlink_metadata(dest.join("renamed/up"))
            .unwrap()
            .is_symlink()
    );
}
