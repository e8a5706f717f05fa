//! Unpacking without root, as for a rootless `kiln run`. The unpack runs on
//! a thread whose own credentials are nobody's: the raw set*id system calls
//! change only the calling thread (glibc's wrappers would change them all),
//! so the rest of the test process stays root.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use super::{CHR, DIR, FIFO, REG, RawTar, root_or_skip};
use crate::layer::{UnpackOptions, WhiteoutMode, unpack_layer};

const NOBODY: u32 = 65534;

/// Runs `f` on a thread with uid and gid nobody and no supplementary groups.
fn as_nobody<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: raw system calls on integers and a null list; they
                // change this thread's credentials only.
                unsafe {
                    let none = std::ptr::null::<libc::gid_t>();
                    assert_eq!(libc::syscall(libc::SYS_setgroups, 0, none), 0);
                    assert_eq!(
                        libc::syscall(libc::SYS_setresgid, NOBODY, NOBODY, NOBODY),
                        0
                    );
                    assert_eq!(
                        libc::syscall(libc::SYS_setresuid, NOBODY, NOBODY, NOBODY),
                        0
                    );
                }
                f()
            })
            .join()
            .unwrap()
    })
}

fn header(name: &[u8], typ: u8, mode: u32) -> tar::Header {
    let mut h = RawTar::header(name, typ, 0, b"");
    h.set_mode(mode);
    h.set_cksum();
    h
}

#[test]
fn without_root_unpacking_degrades_like_rootless_podman() {
    if !root_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    fs::create_dir(&dest).unwrap();
    for dir in [tmp.path(), dest.as_path()] {
        std::os::unix::fs::chown(dir, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let mut owned = RawTar::header(b"ro/f", REG, 1, b"");
    owned.set_uid(1000);
    owned.set_gid(1000);
    owned.set_cksum();
    let mut null = header(b"null", CHR, 0o666);
    null.set_device_major(1).unwrap();
    null.set_device_minor(3).unwrap();
    null.set_cksum();
    let tar = RawTar::default()
        // A read-only directory with content: written first, locked last.
        .push(&header(b"ro/", DIR, 0o555), b"")
        .push(&owned, b"x")
        .push(&header(b"suid", REG, 0o4755), b"")
        .push(&null, b"")
        .push(&header(b"p", FIFO, 0o600), b"")
        .file(b".wh.gone", b"")
        .dir(b"op/")
        .file(b"op/.wh..wh..opq", b"")
        .pax(&[
            ("SCHILY.xattr.trusted.foo", b"1"),
            ("SCHILY.xattr.user.kept", b"1"),
        ])
        .file(b"t", b"")
        .finish();
    let opts = UnpackOptions {
        whiteouts: WhiteoutMode::Overlay,
    };
    let stats = as_nobody(|| unpack_layer(&tar[..], &dest, &opts)).unwrap();
    assert_eq!(stats.entries, 9);

    let ro = fs::symlink_metadata(dest.join("ro")).unwrap();
    assert_eq!(ro.permissions().mode(), 0o40555);
    // Everything belongs to the caller (root in the container).
    let f = fs::symlink_metadata(dest.join("ro/f")).unwrap();
    assert_eq!((f.uid(), f.gid()), (NOBODY, NOBODY));
    assert_eq!(fs::read(dest.join("ro/f")).unwrap(), b"x");
    let suid = fs::symlink_metadata(dest.join("suid")).unwrap();
    assert_eq!(suid.permissions().mode(), 0o104_755);
    // The device is skipped; fifos and whiteouts need no privilege.
    assert!(!dest.join("null").exists());
    assert!(
        fs::symlink_metadata(dest.join("p"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let gone = fs::symlink_metadata(dest.join("gone")).unwrap();
    assert!(gone.file_type().is_char_device());
    assert_eq!(gone.rdev(), 0);
    // The opaque mark overlayfs reads with `userxattr`.
    let op = dest.join("op");
    assert_eq!(
        xattr::get(&op, "user.overlay.opaque").unwrap().as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(xattr::get(&op, "trusted.overlay.opaque").unwrap(), None);
    // trusted.* needs CAP_SYS_ADMIN: skipped; user.* is kept.
    let names: Vec<_> = xattr::list(dest.join("t")).unwrap().collect();
    assert_eq!(names, ["user.kept"]);
}

#[test]
fn without_root_a_layer_applies_on_its_parents_too() {
    if !root_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
    for dir in [tmp.path(), lower.as_path(), upper.as_path()] {
        if dir != tmp.path() {
            fs::create_dir(dir).unwrap();
        }
        std::os::unix::fs::chown(dir, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let base = RawTar::default()
        .push(&header(b"ro/", DIR, 0o555), b"")
        .file(b"ro/old", b"old\n")
        .dir(b"var/")
        .symlink(b"var/run", b"/run")
        .dir(b"run/")
        .finish();
    let top = RawTar::default()
        .file(b"ro/new", b"new\n")
        .file(b"var/run/x", b"x\n")
        .file(b"ro/.wh.old", b"")
        .finish();
    as_nobody(|| {
        crate::layer::apply_layer(&base[..], &lower, &[])?;
        crate::layer::apply_layer(&top[..], &upper, std::slice::from_ref(&lower))
    })
    .unwrap();
    // The read-only directory was copied up writable, filled, then locked
    // again with the lower's mode; the file went through the symlink.
    let ro = fs::symlink_metadata(upper.join("ro")).unwrap();
    assert_eq!((ro.permissions().mode(), ro.uid()), (0o40555, NOBODY));
    assert_eq!(fs::read(upper.join("ro/new")).unwrap(), b"new\n");
    let old = fs::symlink_metadata(upper.join("ro/old")).unwrap();
    assert!(old.file_type().is_char_device() && old.rdev() == 0);
    assert_eq!(fs::read(upper.join("run/x")).unwrap(), b"x\n");
    assert!(!upper.join("var").exists());
}
