//! Hostile archives: nothing outside `dest` may change, and every failure is
//! a clean error naming the entry.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use super::{CHR, FIFO, RawTar, Sandbox, root_or_skip};
use crate::layer::WhiteoutMode::{Apply, Overlay};
use crate::layer::{LayerError, open_layer};

fn err(r: Result<crate::layer::UnpackStats, LayerError>) -> String {
    r.expect_err("archive should be rejected").to_string()
}

#[test]
fn dotdot_name_is_an_error() {
    if !root_or_skip() {
        return;
    }
    for mode in [Overlay, Apply] {
        let s = Sandbox::new();
        let tar = RawTar::default().file(b"../victim/x", b"pwned").finish();
        assert_eq!(
            err(s.unpack(&tar, mode)),
            "tar entry ../victim/x: name escapes the root directory"
        );
        let tar = RawTar::default()
            .dir(b"a/")
            .file(b"a/../../victim/secret", b"pwned")
            .finish();
        assert_eq!(
            err(s.unpack(&tar, mode)),
            "tar entry a/../../victim/secret: name escapes the root directory"
        );
    }
}

#[test]
fn inner_dotdot_is_cleaned_lexically() {
    if !root_or_skip() {
        return;
    }
    let s = Sandbox::new();
    let tar = RawTar::default().file(b"./a/b/../c/./f", b"x").finish();
    s.unpack(&tar, Overlay).unwrap();
    assert_eq!(fs::read(s.dest.join("a/c/f")).unwrap(), b"x");
    assert!(!s.dest.join("a/b").exists());
}

#[test]
fn absolute_names_land_inside_dest() {
    if !root_or_skip() {
        return;
    }
    let s = Sandbox::new();
    let mut abs = s.victim_abs();
    abs.extend_from_slice(b"/secret");
    let tar = RawTar::default()
        .file(b"/abs/x", b"one")
        .file(&abs, b"pwned")
        .finish();
    let stats = s.unpack(&tar, Overlay).unwrap();
    assert_eq!((stats.entries, stats.bytes), (2, 8));
    assert_eq!(fs::read(s.dest.join("abs/x")).unwrap(), b"one");
    let inside = s
        .dest
        .join(s.victim.strip_prefix("/").unwrap())
        .join("secret");
    assert_eq!(fs::read(inside).unwrap(), b"pwned");
}

#[test]
fn parent_symlink_pointing_out_is_resolved_in_root() {
    if !root_or_skip() {
        return;
    }
    // a -> ../victim resolves to dest/victim, which does not exist, and `a`
    // cannot be made a directory: a clean error, nothing written.
    for mode in [Overlay, Apply] {
        let s = Sandbox::new();
        let tar = RawTar::default()
            .symlink(b"a", b"../victim")
            .file(b"a/x", b"pwned")
            .finish();
        assert_eq!(
            err(s.unpack(&tar, mode)),
            "tar entry a/x: parent directory a exists and is not a directory"
        );
        assert!(!s.victim.join("x").exists());
    }
    // An absolute symlink to the victim's host path: the same.
    let s = Sandbox::new();
    let tar = RawTar::default()
        .symlink(b"a", &s.victim_abs())
        .file(b"a/secret", b"pwned")
        .finish();
    assert_eq!(
        err(s.unpack(&tar, Overlay)),
        "tar entry a/secret: parent directory a exists and is not a directory"
    );
    // a -> .. is the root itself, as the container would see it.
    let s = Sandbox::new();
    let tar = RawTar::default()
        .symlink(b"a", b"../..")
        .file(b"a/victim/secret", b"in root")
        .finish();
    s.unpack(&tar, Overlay).unwrap();
    assert_eq!(fs::read(s.dest.join("victim/secret")).unwrap(), b"in root");
}

#[test]
fn absolute_symlink_to_root_stays_in_root() {
    if !root_or_skip() {
        return;
    }
    let s = Sandbox::new();
    let tar = RawTar::default()
        .symlink(b"a", b"/")
        .file(b"a/etc/x", b"in root")
        .finish();
    s.unpack(&tar, Overlay).unwrap();
    assert_eq!(fs::read(s.dest.join("etc/x")).unwrap(), b"in root");
    assert_eq!(fs::read_link(s.dest.join("a")).unwrap().to_str(), Some("/"));
}

#[test]
fn symlink_replaced_by_directory_and_back() {
    if !root_or_skip() {
        return;
    }
    let s = Sandbox::new();
    let tar = RawTar::default()
        .symlink(b"a", b"../victim")
        .dir(b"a/")
        .file(b"a/x", b"inside")
        .finish();
    s.unpack(&tar, Overlay).unwrap();
    assert!(s.dest.join("a").symlink_metadata().unwrap().is_dir());
    assert_eq!(fs::read(s.dest.join("a/x")).unwrap(), b"inside");

    let s = Sandbox::new();
    let tar = RawTar::default()
        .dir(b"d/")
        .file(b"d/f", b"old")
        .symlink(b"d", b"../victim")
        .file(b"d/secret", b"pwned")
        .finish();
    assert_eq!(
        err(s.unpack(&tar, Overlay)),
        "tar entry d/secret: parent directory d exists and is not a directory"
    );
    assert_eq!(
        fs::read_link(s.dest.join("d")).unwrap().to_str(),
        Some("../victim")
    );
}

#[test]
fn hardlinks_cannot_reach_outside() {
    if !root_or_skip() {
        return;
    }
    let s = Sandbox::new();
    let tar = RawTar::default()
        .hardlink(b"l", b"../victim/secret")
        .finish();
    assert_eq!(
        err(s.unpack(&tar, Overlay)),
        "tar entry l: hardlink target ../victim/secret: name escapes the root directory"
    );

    let mut abs = s.victim_abs();
    abs.extend_from_slice(b"/secret");
    let tar = RawTar::default().hardlink(b"l", &abs).finish();
    let msg = err(s.unpack(&tar, Overlay));
    assert!(
        msg.starts_with("resolving hardlink target /")
            && msg.ends_with(" of l: No such file or directory (os error 2)"),
        "{msg}"
    );

    // Through a symlinked parent, relative and absolute.
    for target in [b"../victim".to_vec(), s.victim_abs()] {
        let s = Sandbox::new();
        let tar = RawTar::default()
            .symlink(b"a", &target)
            .hardlink(b"l", b"a/secret")
            .finish();
        assert_eq!(
            err(s.unpack(&tar, Apply)),
            "resolving hardlink target a/secret of l: No such file or directory (os error 2)"
        );
        assert!(!s.dest.join("l").exists());
        assert_eq!(fs::metadata(s.victim.join("secret")).unwrap().nlink(), 1);
    }

    // A hardlink to a symlink links the symlink, not its target.
    let s = Sandbox::new();
    let tar = RawTar::default()
        .symlink(b"s", &[s.victim_abs(), b"/secret".to_vec()].concat())
        .hardlink(b"l", b"s")
        .finish();
    s.unpack(&tar, Overlay).unwrap();
    assert!(
        s.dest
            .join("l")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::metadata(s.victim.join("secret")).unwrap().nlink(), 1);
}

#[test]
fn whiteout_tricks() {
    if !root_or_skip() {
        return;
    }
    for mode in [Overlay, Apply] {
        let s = Sandbox::new();
        for (name, want) in [
            (
                &b"../.wh.victim"[..],
                "tar entry ../.wh.victim: name escapes the root directory",
            ),
            (
                b"../.wh..wh..opq",
                "tar entry ../.wh..wh..opq: name escapes the root directory",
            ),
            (
                b"a/../../.wh.victim",
                "tar entry a/../../.wh.victim: name escapes the root directory",
            ),
            (b".wh...", "tar entry .wh...: invalid whiteout name"),
            (b".wh..", "tar entry .wh..: invalid whiteout name"),
            (b".wh.", "tar entry .wh.: invalid whiteout name"),
            (b"sub/.wh.", "tar entry sub/.wh.: invalid whiteout name"),
        ] {
            let tar = RawTar::default().file(name, b"").finish();
            assert_eq!(err(s.unpack(&tar, mode)), want, "{mode:?}");
        }
        assert!(s.dest.is_dir());
        assert_eq!(fs::read_dir(&s.dest).unwrap().count(), 0);
    }
}

#[test]
fn opaque_whiteout_at_root_with_content_keeps_dest() {
    if !root_or_skip() {
        return;
    }
    let s = Sandbox::new();
    fs::write(s.dest.join("earlier"), b"layer 1").unwrap();
    let tar = RawTar::default()
        .file(b".wh..wh..opq", b"junk content")
        .file(b"new", b"layer 2")
        .finish();
    s.unpack(&tar, Apply).unwrap();
    assert!(s.dest.is_dir());
    let names: Vec<_> = fs::read_dir(&s.dest)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["new"]);

    let s = Sandbox::new();
    let tar = RawTar::default().file(b"./.wh..wh..opq", b"junk").finish();
    s.unpack(&tar, Overlay).unwrap();
    assert_eq!(
        xattr::get(&s.dest, "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
}

#[test]
fn whiteout_through_symlink_to_outside() {
    if !root_or_skip() {
        return;
    }
    for target in [b"../victim".to_vec(), {
        let s = Sandbox::new();
        s.victim_abs()
    }] {
        let s = Sandbox::new();
        let tar = RawTar::default()
            .symlink(b"a", &target)
            .file(b"a/.wh.secret", b"")
            .file(b"a/.wh..wh..opq", b"")
            .finish();
        // Apply: a resolves to a missing in-root path; nothing to delete.
        s.unpack(&tar, Apply).unwrap();
        assert!(
            s.dest
                .join("a")
                .symlink_metadata()
                .unwrap()
                .file_type()
                .is_symlink()
        );

        let s = Sandbox::new();
        assert_eq!(
            err(s.unpack(&tar, Overlay)),
            "tar entry a/.wh.secret: parent directory a exists and is not a directory"
        );
    }
    // Whiting out the symlink itself removes the link, not its target.
    let s = Sandbox::new();
    let tar = RawTar::default().symlink(b"link", &s.victim_abs()).finish();
    s.unpack(&tar, Apply).unwrap();
    let tar = RawTar::default().file(b".wh.link", b"").finish();
    s.unpack(&tar, Apply).unwrap();
    assert!(!s.dest.join("link").exists());
}

#[test]
fn entries_over_symlinks_replace_the_symlink() {
    if !root_or_skip() {
        return;
    }
    let s = Sandbox::new();
    let secret = [s.victim_abs(), b"/secret".to_vec()].concat();
    let dir = [s.victim_abs(), b"/dir".to_vec()].concat();
    let mut tar = RawTar::default();
    tar.symlink(b"f", &secret)
        .symlink(b"f2", b"../victim/secret")
        .symlink(b"d", &dir)
        .symlink(b"c", &secret)
        .symlink(b"p", &secret);
    let mut h = RawTar::header(b"f", b'0', 3, b"");
    h.set_mode(0o4777);
    h.set_uid(1234);
    h.set_cksum();
    tar.push(&h, b"new");
    let mut h = RawTar::header(b"f2", b'0', 0, b"");
    h.set_mode(0o777);
    h.set_cksum();
    tar.push(&h, b"");
    let mut h = RawTar::header(b"d/", b'5', 0, b"");
    h.set_mode(0o777);
    h.set_uid(99);
    h.set_cksum();
    tar.push(&h, b"");
    let mut h = RawTar::header(b"c", CHR, 0, b"");
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    h.set_cksum();
    tar.push(&h, b"");
    tar.push(&RawTar::header(b"p", FIFO, 0, b""), b"");
    s.unpack(&tar.finish(), Overlay).unwrap();
    let md = s.dest.join("f").symlink_metadata().unwrap();
    assert!(md.is_file());
    assert_eq!((md.mode() & 0o7777, md.uid()), (0o4777, 1234));
    assert!(s.dest.join("f2").symlink_metadata().unwrap().is_file());
    let md = s.dest.join("d").symlink_metadata().unwrap();
    assert!(md.is_dir());
    assert_eq!((md.mode() & 0o7777, md.uid()), (0o777, 99));
    assert!(
        s.dest
            .join("c")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_char_device()
    );
    assert!(
        s.dest
            .join("p")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(
        fs::metadata(s.victim.join("secret"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o644
    );
}

#[test]
fn entries_naming_the_root_are_skipped_whatever_their_type() {
    if !root_or_skip() {
        return;
    }
    // As containerd's applier (which skips an entry resolving to the root)
    // and Docker's (which skips `.`): the root belongs to the snapshot or
    // the ADD destination. GNU tar writes `./` first; other writers an
    // empty name, for a directory or (v7 headers) a regular file.
    for mode in [Overlay, Apply] {
        let s = Sandbox::new();
        fs::set_permissions(&s.dest, fs::Permissions::from_mode(0o750)).unwrap();
        let before = s.dest.symlink_metadata().unwrap();
        let mut dir = RawTar::header(b"./", b'5', 0, b"");
        dir.set_mode(0o777);
        dir.set_cksum();
        let mut tar = RawTar::default();
        tar.push(&RawTar::header(b"", b'5', 0, b""), b"")
            .push(&RawTar::header(b"", b'0', 0, b""), b"")
            .push(&dir, b"");
        for name in [&b"."[..], b"/", b"a/..", b"./."] {
            tar.symlink(name, b"/etc");
        }
        tar.hardlink(b"./", b"x").file(b"./x", b"kept\n");
        let stats = s.unpack(&tar.finish(), mode).unwrap();
        assert_eq!(stats.entries, 1, "{mode:?}");
        let after = s.dest.symlink_metadata().unwrap();
        assert!(after.is_dir());
        assert_eq!(
            (after.mode(), after.uid(), after.mtime()),
            (before.mode(), before.uid(), before.mtime()),
            "{mode:?}"
        );
        assert_eq!(fs::read(s.dest.join("x")).unwrap(), b"kept\n");
    }
}

#[test]
fn huge_extension_headers_are_refused_before_reading() {
    if !root_or_skip() {
        return;
    }
    let s = Sandbox::new();
    let h = RawTar::header(b"././@LongLink", b'L', 1 << 40, b"");
    let tar = RawTar::default().push(&h, b"").finish();
    assert_eq!(
        err(s.unpack(&tar, Overlay)),
        "tar entry ././@LongLink: gnu long name of 1099511627776 bytes exceeds the limit of 65536 bytes"
    );
    let h = RawTar::header(b"././@LongLink", b'K', 70_000, b"");
    let tar = RawTar::default().push(&h, &vec![b'a'; 70_000]).finish();
    assert_eq!(
        err(s.unpack(&tar, Overlay)),
        "tar entry ././@LongLink: gnu long link name of 70000 bytes exceeds the limit of 65536 bytes"
    );
    let h = RawTar::header(b"PaxHeader", b'x', 2 << 20, b"");
    let tar = RawTar::default().push(&h, b"").finish();
    assert_eq!(
        err(s.unpack(&tar, Overlay)),
        "tar entry PaxHeader: pax header of 2097152 bytes exceeds the limit of 1048576 bytes"
    );
    // A PAX path within the PAX limit but over the name limit.
    let long = vec![b'a'; 70_000];
    let tar = RawTar::default()
        .pax(&[("path", &long)])
        .file(b"short", b"")
        .finish();
    assert_eq!(
        err(s.unpack(&tar, Overlay)),
        format!(
            "tar entry {}: name of 70000 bytes exceeds the limit of 65536 bytes",
            "a".repeat(64)
        )
    );
    // A GNU long name that fits the cap but no path component limit: a syscall error.
    let long = [vec![b'b'; 300], b"\0".to_vec()].concat();
    let h = RawTar::header(b"././@LongLink", b'L', long.len() as u64, b"");
    let tar = RawTar::default()
        .push(&h, &long)
        .file(b"ignored", b"x")
        .finish();
    assert_eq!(
        err(s.unpack(&tar, Overlay)),
        format!(
            "inspecting existing {}: File name too long (os error 36)",
            "b".repeat(300)
        )
    );
}

#[test]
fn bad_device_numbers_and_fields() {
    if !root_or_skip() {
        return;
    }
    let s = Sandbox::new();
    let mut h = RawTar::header(b"dev", CHR, 0, b"");
    h.set_device_major(0o7_777_777).unwrap();
    h.set_cksum();
    let tar = RawTar::default().push(&h, b"").finish();
    assert_eq!(
        err(s.unpack(&tar, Overlay)),
        "tar entry dev: device number 2097151:0 out of range"
    );
    let mut h = RawTar::header(b"dev", CHR, 0, b"");
    h.set_device_minor(0x10_0000).unwrap();
    h.set_cksum();
    let tar = RawTar::default().push(&h, b"").finish();
    assert_eq!(
        err(s.unpack(&tar, Overlay)),
        "tar entry dev: device number 0:1048576 out of range"
    );
    let mut h = RawTar::header(b"m", b'0', 0, b"");
    h.as_old_mut().mode = *b"99999999";
    h.set_cksum();
    let tar = RawTar::default().push(&h, b"").finish();
    let msg = err(s.unpack(&tar, Overlay));
    assert!(msg.starts_with("tar entry m: bad mode field: "), "{msg}");
    let tar = RawTar::default()
        .pax(&[("size", b"5")])
        .file(b"f", b"abc")
        .finish();
    assert_eq!(
        err(s.unpack(&tar, Overlay)),
        "tar entry f: pax size record disagrees with the header size"
    );
    let tar = RawTar::default()
        .pax(&[("path", b"a\0b")])
        .file(b"f", b"")
        .finish();
    assert_eq!(
        err(s.unpack(&tar, Overlay)),
        "tar entry a\0b: name contains a NUL byte"
    );
    let tar = RawTar::default().symlink(b"s", b"").finish();
    assert_eq!(
        err(s.unpack(&tar, Overlay)),
        "tar entry s: link without a target"
    );
    let mut h = RawTar::header(b"sparse", b'S', 0, b"");
    h.set_cksum();
    let tar = RawTar::default().push(&h, b"").finish();
    assert_eq!(
        err(s.unpack(&tar, Overlay)),
        "tar entry sparse: sparse files are not supported"
    );
}

#[test]
fn truncated_and_corrupt_archives() {
    if !root_or_skip() {
        return;
    }
    let s = Sandbox::new();
    let h = RawTar::header(b"f", b'0', 1000, b"");
    let mut tar = h.as_bytes().to_vec();
    tar.extend_from_slice(&[b'x'; 100]);
    assert_eq!(
        err(s.unpack(&tar, Overlay)),
        "truncated archive: entry f has 100 of 1000 bytes"
    );
    // Truncated inside the data of an entry whose data is skipped.
    let mut tar = RawTar::default().dir(b"d/").0.clone();
    let h = RawTar::header(b"d/", b'5', 5000, b"");
    tar.extend_from_slice(h.as_bytes());
    tar.extend_from_slice(&[0; 10]);
    let msg = err(s.unpack(&tar, Overlay));
    assert_eq!(
        msg,
        "reading tar header after d/: unexpected EOF during skip"
    );
    // Half a header.
    let mut tar = RawTar::default().file(b"a", b"x").0.clone();
    tar.extend_from_slice(&RawTar::header(b"b", b'0', 0, b"").as_bytes()[..200]);
    assert_eq!(
        err(s.unpack(&tar, Overlay)),
        "reading tar header after a: failed to read entire block"
    );
    // Corrupt checksum.
    let mut tar = RawTar::default().file(b"a", b"x").finish();
    tar[0] = b'b';
    assert_eq!(
        err(s.unpack(&tar, Overlay)),
        "reading tar header after the start of the archive: archive header checksum mismatch"
    );
    // Extension header at the very end.
    let tar = RawTar::default()
        .file(b"a", b"x")
        .pax(&[("path", b"b")])
        .finish();
    assert_eq!(
        err(s.unpack(&tar, Overlay)),
        "reading tar header after a: extension header without the member it describes"
    );
    // Truncated gzip stream.
    // Incompressible data, so that half the stream ends inside the file.
    let data: Vec<u8> = (0..100_000u64)
        .map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8)
        .collect();
    let tar = RawTar::default().file(b"g", &data).finish();
    let mut enc = crate::layer::encoder(Vec::new(), crate::layer::Compression::Gzip).unwrap();
    std::io::Write::write_all(&mut enc, &tar).unwrap();
    let gz = enc.finish().unwrap();
    let (_, r) = open_layer(&gz[..gz.len() / 2]).unwrap();
    let r = crate::layer::unpack_layer(r, &s.dest, &crate::layer::UnpackOptions::default());
    assert_eq!(err(r), "extracting file g: incomplete deflate stream");
    s.assert_victim_untouched();
}

#[test]
fn unknown_types_are_skipped() {
    if !root_or_skip() {
        return;
    }
    let s = Sandbox::new();
    let mut tar = RawTar::default();
    tar.push(&RawTar::header(b"weird", b'Z', 3, b""), b"abc")
        .push(&RawTar::header(b"global", b'g', 0, b""), b"")
        .file(b"after", b"ok");
    let stats = s.unpack(&tar.finish(), Overlay).unwrap();
    assert_eq!((stats.entries, stats.bytes), (1, 2));
    assert!(!s.dest.join("weird").exists());
    assert_eq!(fs::read(s.dest.join("after")).unwrap(), b"ok");
}

#[test]
fn overlay_xattrs_from_archives_are_dropped() {
    if !root_or_skip() {
        return;
    }
    let s = Sandbox::new();
    let tar = RawTar::default()
        .pax(&[
            ("SCHILY.xattr.trusted.overlay.redirect", b"/victim"),
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            ("SCHILY.xattr.user.kept", b"1"),
        ])
        .dir(b"d/")
        .finish();
    s.unpack(&tar, Overlay).unwrap();
    let names: Vec<_> = xattr::list(s.dest.join("d")).unwrap().collect();
    assert_eq!(names, ["user.kept"]);
}

#[test]
fn negative_and_huge_sizes() {
    if !root_or_skip() {
        return;
    }
    let s = Sandbox::new();
    // A base-256 size with every bit set (negative in two's complement).
    let mut h = RawTar::header(b"neg", b'0', 0, b"");
    h.as_old_mut().size = [0xff; 12];
    h.set_cksum();
    let tar = RawTar::default().push(&h, b"").finish();
    assert_eq!(
        err(s.unpack(&tar, Overlay)),
        "reading tar header after the start of the archive: size overflow"
    );
    // The largest octal size, with almost no data behind it.
    let mut h = RawTar::header(b"huge", b'0', 0, b"");
    h.as_old_mut().size = *b"77777777777\0";
    h.set_cksum();
    let tar = RawTar::default().push(&h, b"abc").finish();
    assert_eq!(
        err(s.unpack(&tar, Overlay)),
        "truncated archive: entry huge has 1536 of 8589934591 bytes"
    );
    // A directory claiming data that is not there.
    let h = RawTar::header(b"dir/", b'5', 1 << 33, b"");
    let tar = RawTar::default().push(&h, b"").finish();
    assert_eq!(
        err(s.unpack(&tar, Overlay)),
        "reading tar header after dir/: unexpected EOF during skip"
    );
}

#[test]
fn dotdot_in_absolute_names_is_clamped_at_the_root() {
    if !root_or_skip() {
        return;
    }
    let s = Sandbox::new();
    let tar = RawTar::default()
        .file(b"/../victim/secret", b"clamped")
        .file(b"/a/../../../b", b"also")
        .hardlink(b"l", b"/../../victim/secret")
        .finish();
    let stats = s.unpack(&tar, Apply).unwrap();
    assert_eq!(stats.entries, 3);
    assert_eq!(fs::read(s.dest.join("victim/secret")).unwrap(), b"clamped");
    assert_eq!(fs::read(s.dest.join("b")).unwrap(), b"also");
    assert_eq!(fs::metadata(s.dest.join("l")).unwrap().nlink(), 2);
}
