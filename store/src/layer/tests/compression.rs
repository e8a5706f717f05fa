//! Compression detection, round trips, determinism and media types.

use std::io::{Read, Write};

use crate::layer::{Compression, decoder, encoder, from_media_type, media_type, open_layer};

fn sample() -> Vec<u8> {
    (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

fn compress(data: &[u8], c: Compression) -> Vec<u8> {
    let mut e = encoder(Vec::new(), c).unwrap();
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn detect_magic() {
    assert_eq!(Compression::detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
    assert_eq!(
        Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]),
        Compression::Zstd
    );
    assert_eq!(
        Compression::detect(&[0x5a, 0x2a, 0x4d, 0x18]),
        Compression::Zstd
    );
    assert_eq!(Compression::detect(b"etc/"), Compression::None);
    assert_eq!(Compression::detect(&[0x1f]), Compression::None);
    assert_eq!(Compression::detect(&[]), Compression::None);
}

#[test]
fn encoders_are_deterministic_and_round_trip() {
    let data = sample();
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let a = compress(&data, c);
        let b = compress(&data, c);
        assert_eq!(a, b, "{c:?} output differs between runs");
        assert_eq!(Compression::detect(&a), c);
        let (found, mut r) = open_layer(&a[..]).unwrap();
        assert_eq!(found, c);
        let mut back = Vec::new();
        r.read_to_end(&mut back).unwrap();
        assert_eq!(back, data, "{c:?}");
        let mut back = Vec::new();
        decoder(&a[..], c).read_to_end(&mut back).unwrap();
        assert_eq!(back, data, "{c:?}");
    }
    // gzip header: no name, mtime 0, XFL 0 (level 6), OS 255.
    let gz = compress(b"x", Compression::Gzip);
    assert_eq!(&gz[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    // A single-byte and an empty input still detect after compression.
    assert_eq!(open_layer(&b""[..]).unwrap().0, Compression::None);
    assert_eq!(open_layer(&b"ab"[..]).unwrap().0, Compression::None);
}

#[test]
fn zstd_output_is_the_multithreaded_format() {
    // With one worker the output equals any n >= 1; compare with 2 workers.
    let data = sample();
    let ours = compress(&data, Compression::Zstd);
    let mut e = zstd::Encoder::new(Vec::new(), 3).unwrap();
    e.multithread(2).unwrap();
    e.write_all(&data).unwrap();
    assert_eq!(ours, e.finish().unwrap());
}

#[test]
fn concatenated_gzip_members_are_read() {
    let mut two = compress(b"hello ", Compression::Gzip);
    two.extend(compress(b"world", Compression::Gzip));
    let (_, mut r) = open_layer(&two[..]).unwrap();
    let mut s = String::new();
    r.read_to_string(&mut s).unwrap();
    assert_eq!(s, "hello world");
}

#[test]
fn media_types() {
    assert_eq!(
        media_type(Compression::None, false),
        "application/vnd.oci.image.layer.v1.tar"
    );
    assert_eq!(
        media_type(Compression::Gzip, false),
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(
        media_type(Compression::Zstd, false),
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(
        media_type(Compression::Gzip, true),
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    assert_eq!(
        media_type(Compression::None, true),
        "application/vnd.docker.image.rootfs.diff.tar"
    );
    assert_eq!(
        media_type(Compression::Zstd, true),
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        for docker in [false, true] {
            assert_eq!(from_media_type(media_type(c, docker)), Some(c));
        }
    }
    for (mt, c) in [
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            Compression::None,
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            Compression::Gzip,
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
            Compression::Zstd,
        ),
        (
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            Compression::Gzip,
        ),
    ] {
        assert_eq!(from_media_type(mt), Some(c), "{mt}");
    }
    assert_eq!(
        from_media_type("application/vnd.oci.image.config.v1+json"),
        None
    );
    assert_eq!(
        from_media_type("application/vnd.oci.image.layer.v1.tar+bzip2"),
        None
    );
}
