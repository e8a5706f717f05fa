//! Applying layers on their parent chain ([`apply_layer`]). The reference
//! is the kernel: each chain of snapshots is mounted as an overlay (in a
//! mount namespace of the test's own thread, so nothing leaks) and its
//! merged view compared with the same layers flattened into one directory
//! ([`WhiteoutMode::Apply`]), which is what applying them one after the
//! other on a real file system gives.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{CHR, DIR, LNK, REG, RawTar, Sandbox, root_or_skip};
use crate::layer::{UnpackOptions, WhiteoutMode, apply_layer, unpack_layer};

/// Applies `layers` one on another into fresh snapshot directories under
/// `dir`; returns them, base first.
fn chain(dir: &Path, layers: &[Vec<u8>]) -> Vec<PathBuf> {
    let mut snapshots: Vec<PathBuf> = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let upper = dir.join(format!("s{i}"));
        fs::create_dir(&upper).unwrap();
        apply_layer(&layer[..], &upper, &snapshots).unwrap_or_else(|e| panic!("layer {i}: {e}"));
        snapshots.push(upper);
    }
    snapshots
}

/// The layers unpacked one after the other into one directory.
fn flattened(dir: &Path, layers: &[Vec<u8>]) -> PathBuf {
    let dest = dir.join("flat");
    fs::create_dir(&dest).unwrap();
    let opts = UnpackOptions {
        whiteouts: WhiteoutMode::Apply,
    };
    for layer in layers {
        unpack_layer(&layer[..], &dest, &opts).unwrap();
    }
    dest
}

/// One line per path under `root`: type, mode, owner, content or target
/// (no times: copied-up directories keep theirs, flattening bumps them).
fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let entry = entry.unwrap();
        let md = entry.path().symlink_metadata().unwrap();
        let ft = md.file_type();
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap()
            .display()
            .to_string();
        let body = if ft.is_symlink() {
            format!("-> {}", fs::read_link(entry.path()).unwrap().display())
        } else if ft.is_file() {
            format!(
                "= {:?}",
                String::from_utf8_lossy(&fs::read(entry.path()).unwrap())
            )
        } else if ft.is_char_device() {
            format!("char {}", md.rdev())
        } else {
            String::new()
        };
        out.push(format!(
            "{rel} {:o} {}:{} {body}",
            md.mode(),
            md.uid(),
            md.gid()
        ));
    }
    out
}

/// The merged view of `lowers` (base first) as the kernel's overlayfs
/// shows it, listed.
fn mounted(dir: &Path, lowers: &[PathBuf]) -> Vec<String> {
    let target = dir.join("merged");
    let empty = dir.join("empty");
    fs::create_dir_all(&target).unwrap();
    fs::create_dir_all(&empty).unwrap();
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // This thread's own mount namespace: the mount never shows
                // outside it and goes with it.
                kiln_rootfs::mount::private_namespace().unwrap();
                // A read-only overlay needs two lowers; overlayfs lists
                // them top first.
                let mut stack: Vec<&Path> = lowers.iter().rev().map(PathBuf::as_path).collect();
                stack.push(&empty);
                // The kernel's overlay is what the chain is compared with.
                let _mounted = kiln_rootfs::mount::overlay(
                    &stack,
                    None,
                    &target,
                    kiln_rootfs::mount::OverlayOptions {
                        userxattr: false,
                        snapshotter: Some(kiln_rootfs::mount::Snapshotter::Overlay),
                    },
                )
                .unwrap();
                let list = listing(&target);
                nix::mount::umount(&target).unwrap();
                list
            })
            .join()
            .unwrap()
    })
}

/// Asserts that the chain of `layers` merges into what flattening gives;
/// returns the snapshots.
fn assert_chain_matches_flattening(dir: &Path, layers: &[Vec<u8>]) -> Vec<PathBuf> {
    let snapshots = chain(dir, layers);
    let flat = listing(&flattened(dir, layers));
    assert_eq!(mounted(dir, &snapshots), flat);
    snapshots
}

fn header(name: &[u8], typ: u8, mode: u32, owner: u64) -> tar::Header {
    let mut h = RawTar::header(name, typ, 0, b"");
    h.set_mode(mode);
    h.set_uid(owner);
    h.set_gid(owner);
    h.set_cksum();
    h
}

#[test]
fn a_lower_layers_parent_symlink_is_followed_inside_the_root() {
    if !root_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let base = RawTar::default()
        .dir(b"var/")
        .symlink(b"var/run", b"/run")
        .symlink(b"var/lock", b"../run/lock")
        .push(&header(b"run/", DIR, 0o710, 7), b"")
        .dir(b"run/lock/")
        .finish();
    let top = RawTar::default()
        .file(b"var/run/x/f", b"through the link\n")
        .file(b"var/lock/l", b"relative\n")
        .finish();
    let snapshots = assert_chain_matches_flattening(tmp.path(), &[base, top]);
    let upper = &snapshots[1];
    // The symlinks stay; the files are where they point, and `run` is
    // copied up with its owner and mode.
    assert!(!upper.join("var").exists());
    assert_eq!(
        fs::read(upper.join("run/x/f")).unwrap(),
        b"through the link\n"
    );
    assert_eq!(fs::read(upper.join("run/lock/l")).unwrap(), b"relative\n");
    let run = fs::symlink_metadata(upper.join("run")).unwrap();
    assert_eq!((run.mode() & 0o7777, run.uid(), run.gid()), (0o710, 7, 7));
    assert_eq!(
        mounted(tmp.path(), &snapshots)
            .iter()
            .filter(|l| l.starts_with("var/"))
            .count(),
        2,
        "var/run and var/lock stay symlinks"
    );
}

#[test]
fn chains_merge_as_the_layers_flattened() {
    if !root_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let l0 = RawTar::default()
        .push(&header(b"etc/", DIR, 0o750, 3), b"")
        .file(b"etc/passwd", b"root\n")
        .dir(b"d/")
        .file(b"d/a", b"a\n")
        .dir(b"d/sub/")
        .file(b"d/sub/b", b"b\n")
        .dir(b"o/")
        .file(b"o/old", b"old\n")
        .dir(b"o/deep/")
        .file(b"o/deep/older", b"older\n")
        .file(b"becomes-dir", b"file\n")
        .dir(b"becomes-file/")
        .file(b"becomes-file/x", b"x\n")
        .dir(b"gone/")
        .file(b"gone/y", b"y\n")
        .dir(b"keep/")
        .file(b"keep/z", b"z\n")
        .dir(b"gone2/")
        .file(b"gone2/old", b"old\n")
        .file(b"root-file", b"r\n")
        .symlink(b"lnk", b"d/sub")
        .finish();
    let l1 = RawTar::default()
        // A new file deep in a lower directory: parents copied up.
        .file(b"etc/group", b"root\n")
        .file(b"d/.wh.a", b"")
        // An opaque directory, with new content listed before the mark.
        .file(b"o/new", b"new\n")
        .file(b"o/.wh..wh..opq", b"")
        .dir(b"becomes-dir/")
        .file(b"becomes-dir/inside", b"in\n")
        .file(b"becomes-file", b"now a file\n")
        // Whiteout then a directory of the same name: opaque.
        .file(b".wh.gone", b"")
        .dir(b"gone/")
        .file(b"gone/fresh", b"fresh\n")
        // ... or a file in it, without the directory's own entry.
        .file(b".wh.gone2", b"")
        .file(b"gone2/new", b"new\n")
        // A whiteout of what this layer writes hides nothing of it.
        .file(b"keep/w", b"w\n")
        .file(b"keep/.wh.w", b"")
        .file(b"keep/.wh.z", b"")
        // Through a symlink of the lower layer.
        .file(b"lnk/via", b"via\n")
        // A hardlink to a lower layer's file: copied up, then linked.
        .hardlink(b"d/hard", b"etc/passwd")
        .finish();
    let l2 = RawTar::default()
        .file(b"o/deep2", b"2\n")
        .file(b"d/.wh.sub", b"")
        .file(b"etc/.wh.group", b"")
        .dir(b"d/sub/")
        .file(b"lnk", b"the link is a file now\n")
        .finish();
    let snapshots = assert_chain_matches_flattening(tmp.path(), &[l0, l1, l2]);
    // Overlay form: a whiteout device, opaque marks, linked copies.
    let s1 = &snapshots[1];
    let wh = fs::symlink_metadata(s1.join("d/a")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    for opaque in ["o", "gone"] {
        assert_eq!(
            xattr::get(s1.join(opaque), "trusted.overlay.opaque")
                .unwrap()
                .as_deref(),
            Some(&b"y"[..]),
            "{opaque}"
        );
    }
    assert!(
        !s1.join("keep/w")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_char_device()
    );
    let hard = fs::symlink_metadata(s1.join("d/hard")).unwrap();
    let passwd = fs::symlink_metadata(s1.join("etc/passwd")).unwrap();
    assert_eq!(hard.ino(), passwd.ino());
    // Copied-up parents keep the lower directory's mode and owner.
    let etc = fs::symlink_metadata(s1.join("etc")).unwrap();
    assert_eq!((etc.mode() & 0o7777, etc.uid()), (0o750, 3));
}

#[test]
fn an_opaque_root_hides_every_lower_entry() {
    if !root_or_skip() {
        return;
    }
    // overlayfs ignores the opaque mark of a layer's root, so the lowers'
    // root entries get whiteouts instead and this layer's directories
    // become opaque.
    let tmp = tempfile::tempdir().unwrap();
    let l0 = RawTar::default()
        .file(b"a", b"a\n")
        .dir(b"usr/")
        .file(b"usr/old", b"old\n")
        .dir(b"var/")
        .finish();
    let l1 = RawTar::default()
        .file(b".wh..wh..opq", b"")
        .file(b"usr/new", b"new\n")
        .finish();
    let snapshots = assert_chain_matches_flattening(tmp.path(), &[l0, l1]);
    assert_eq!(
        mounted(tmp.path(), &snapshots)
            .iter()
            .map(|l| l.split(' ').next().unwrap().to_owned())
            .collect::<Vec<_>>(),
        ["usr", "usr/new"]
    );
}

#[test]
fn identical_layers_in_a_chain_stay_distinct() {
    if !root_or_skip() {
        return;
    }
    // The same layer three times, and again after one that deletes it.
    let tmp = tempfile::tempdir().unwrap();
    let same = RawTar::default()
        .dir(b"sub/")
        .file(b"sub/f", b"f\n")
        .finish();
    let delete = RawTar::default().file(b".wh.sub", b"").finish();
    let layers = [
        same.clone(),
        same.clone(),
        same.clone(),
        delete,
        same.clone(),
    ];
    let snapshots = assert_chain_matches_flattening(tmp.path(), &layers);
    assert!(mounted(tmp.path(), &snapshots).contains(&"sub/f 100644 0:0 = \"f\\n\"".to_owned()));
}

#[test]
fn lower_symlinks_never_lead_out_of_the_root() {
    if !root_or_skip() {
        return;
    }
    let s = Sandbox::new();
    let victim = String::from_utf8(s.victim_abs()).unwrap();
    let base = RawTar::default()
        .symlink(b"up", b"../../../..")
        .symlink(b"abs", victim.as_bytes())
        .symlink(b"dot", b"/../../victim")
        .dir(b"victim/")
        .dir(b"adir/")
        .symlink(b"loop1", b"loop2")
        .symlink(b"loop2", b"loop1")
        .symlink(b"dangling", b"/nowhere/at/all")
        .file(b"secretish", b"mine\n")
        .finish();
    let tmp = s.dest.join("layers");
    fs::create_dir(&tmp).unwrap();
    let lower = tmp.join("s0");
    fs::create_dir(&lower).unwrap();
    apply_layer(&base[..], &lower, &[]).unwrap();
    let apply = |tar: Vec<u8>| {
        let upper = tmp.join(format!("u{}", rand_suffix()));
        fs::create_dir(&upper).unwrap();
        let r = apply_layer(&tar[..], &upper, std::slice::from_ref(&lower));
        s.assert_victim_untouched();
        (upper, r.map_err(|e| e.to_string()))
    };
    // `..` stops at the merged root: these land inside the upper.
    for (name, lands) in [(&b"up/secret"[..], "secret"), (b"dot/x", "victim/x")] {
        let (upper, r) = apply(RawTar::default().file(name, b"pwned\n").finish());
        r.unwrap();
        assert_eq!(fs::read(upper.join(lands)).unwrap(), b"pwned\n");
    }
    // An absolute target is looked up inside the root, where the victim's
    // path does not exist; loops are errors too, naming the entry.
    for (name, error) in [
        (&b"abs/secret"[..], "parent directory abs does not exist"),
        (b"dangling/x", "parent directory dangling does not exist"),
        (
            b"loop1/x",
            "parent directory loop1 Too many levels of symbolic links (os error 40)",
        ),
    ] {
        let (_, r) = apply(RawTar::default().file(name, b"pwned\n").finish());
        assert_eq!(
            r.unwrap_err(),
            format!("tar entry {}: {error}", String::from_utf8_lossy(name))
        );
    }
    // A hardlink's target resolves in the merged root as well, and a
    // lower file is copied up, never linked across snapshots.
    let (upper, r) = apply(RawTar::default().hardlink(b"h", b"up/secretish").finish());
    r.unwrap();
    assert_eq!(fs::read(upper.join("h")).unwrap(), b"mine\n");
    assert_eq!(
        fs::metadata(upper.join("h")).unwrap().ino(),
        fs::metadata(upper.join("secretish")).unwrap().ino()
    );
    let lower_ino = fs::metadata(lower.join("secretish")).unwrap().ino();
    assert_ne!(fs::metadata(upper.join("h")).unwrap().ino(), lower_ino);
    let (_, r) = apply(RawTar::default().hardlink(b"h", b"adir").finish());
    assert_eq!(
        r.unwrap_err(),
        "resolving hardlink target adir of h: Operation not permitted (os error 1)"
    );
}

/// A suffix for unique directory names within one test.
fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn whiteouts_and_devices_stay_in_overlay_form() {
    if !root_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut null = RawTar::header(b"dev/null", CHR, 0, b"");
    null.set_device_major(1).unwrap();
    null.set_device_minor(3).unwrap();
    null.set_cksum();
    let l0 = RawTar::default()
        .dir(b"dev/")
        .push(&null, b"")
        .file(b"f", b"f\n")
        .push(&RawTar::header(b"g", LNK, 0, b"f"), b"")
        .finish();
    let l1 = RawTar::default()
        .file(b".wh.f", b"")
        .push(&header(b"dev/", DIR, 0o700, 0), b"")
        .push(&RawTar::header(b"dev/zero", REG, 0, b""), b"")
        .finish();
    let snapshots = assert_chain_matches_flattening(tmp.path(), &[l0, l1]);
    let dev = fs::symlink_metadata(snapshots[1].join("dev")).unwrap();
    assert_eq!(dev.permissions().mode() & 0o7777, 0o700);
    // The layer's directory entry over a lower directory merges with it.
    assert!(
        mounted(tmp.path(), &snapshots)
            .iter()
            .any(|l| l.starts_with("dev/null "))
    );
}

#[test]
fn an_entry_that_changes_a_resolved_parent_is_seen_by_the_next() {
    if !root_or_skip() {
        return;
    }
    // `l` resolves through `y/z`: once this layer replaces `y/z` with a
    // file, `l` is no directory any more, for the kernel and for kiln.
    let tmp = tempfile::tempdir().unwrap();
    let base = RawTar::default()
        .dir(b"y/")
        .dir(b"y/z/")
        .symlink(b"l", b"y/z/..")
        .finish();
    let top = RawTar::default()
        .file(b"l/a", b"a\n")
        .file(b"l/z", b"now a file\n")
        .file(b"l/b", b"b\n")
        .finish();
    let expected = "tar entry l/b: parent directory l is not a directory";
    let flat = tmp.path().join("flat");
    fs::create_dir(&flat).unwrap();
    let opts = UnpackOptions {
        whiteouts: WhiteoutMode::Apply,
    };
    unpack_layer(&base[..], &flat, &opts).unwrap();
    assert_eq!(
        unpack_layer(&top[..], &flat, &opts)
            .unwrap_err()
            .to_string(),
        expected
    );
    let snapshots = chain(tmp.path(), &[base]);
    let upper = tmp.path().join("upper");
    fs::create_dir(&upper).unwrap();
    assert_eq!(
        apply_layer(&top[..], &upper, &snapshots)
            .unwrap_err()
            .to_string(),
        expected
    );
}
