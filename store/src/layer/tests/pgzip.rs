//! Parallel gzip: round trips through flate2 and the gzip CLI, identical
//! bytes for any thread count, write pattern and run.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use flate2::read::MultiGzDecoder;

use crate::layer::pgzip::BLOCK_SIZE;
use crate::layer::{Compression, ParallelGzEncoder, encoder};

/// Incompressible bytes from a fixed seed (xorshift64*).
fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// Text-like bytes: lines of words from a small vocabulary.
fn text(len: usize) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "layer", "kiln", "build", "stage", "copy", "run", "the", "of", "usr/lib", "=", "0644",
        "sha256",
    ];
    let mut out = Vec::with_capacity(len + 16);
    let mut i = 0usize;
    while out.len() < len {
        i = i.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        out.extend_from_slice(WORDS[(i >> 16) % WORDS.len()].as_bytes());
        out.push(if (i >> 8).is_multiple_of(9) {
            b'\n'
        } else {
            b' '
        });
    }
    out.truncate(len);
    out
}

fn gzip(data: &[u8], threads: usize) -> Vec<u8> {
    let mut e = ParallelGzEncoder::with_threads(Vec::new(), threads).unwrap();
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn flate2_decode(gz: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    MultiGzDecoder::new(gz).read_to_end(&mut out).unwrap();
    out
}

/// Runs the gzip CLI with `args`, `input` on stdin; returns stdout.
fn gzip_cli(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the gzip command is needed for this test");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "gzip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn cases() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("empty", Vec::new()),
        ("one byte", b"k".to_vec()),
        ("one block", random(BLOCK_SIZE, 1)),
        ("one block + 1", random(BLOCK_SIZE + 1, 2)),
        ("5 MiB random", random(5 << 20, 3)),
        ("5 MiB text", text(5 << 20)),
    ]
}

#[test]
fn round_trips_and_is_identical_for_any_thread_count() {
    for (name, data) in cases() {
        let one = gzip(&data, 1);
        assert_eq!(
            &one[..10],
            &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff],
            "{name}: header"
        );
        let isize = u32::try_from(data.len()).unwrap().to_le_bytes();
        assert_eq!(&one[one.len() - 4..], &isize, "{name}: ISIZE");
        for threads in [2, 3] {
            assert_eq!(gzip(&data, threads), one, "{name}: {threads} threads");
        }
        // The layer encoder is this encoder with the default thread count
        // (a second run of 2 threads on a 2-core machine).
        let mut e = encoder(Vec::new(), Compression::Gzip).unwrap();
        e.write_all(&data).unwrap();
        assert_eq!(e.finish().unwrap(), one, "{name}: layer encoder");
        assert_eq!(flate2_decode(&one), data, "{name}: flate2");
        gzip_cli(&["-t"], &one);
        assert_eq!(gzip_cli(&["-d", "-c"], &one), data, "{name}: gunzip");
    }
}

#[test]
fn output_does_not_depend_on_write_sizes_or_flushes() {
    let data = text(3 * BLOCK_SIZE + 12_345);
    let whole = gzip(&data, 2);
    for threads in [1, 2] {
        let mut e = ParallelGzEncoder::with_threads(Vec::new(), threads).unwrap();
        let mut rest = &data[..];
        let mut step = 1;
        while !rest.is_empty() {
            let n = e.write(&rest[..step.min(rest.len())]).unwrap();
            assert!(n > 0);
            rest = &rest[n..];
            step = step * 3 + 7;
            e.flush().unwrap();
        }
        assert_eq!(e.finish().unwrap(), whole, "{threads} threads");
    }
}

#[test]
fn blocks_use_the_previous_input_as_dictionary() {
    // The second block repeats the end of the first: with the previous 32 KiB
    // as dictionary it compresses to almost nothing.
    let mut data = random(BLOCK_SIZE, 7);
    let tail = data[BLOCK_SIZE - 30_000..].to_vec();
    data.extend_from_slice(&tail);
    let gz = gzip(&data, 2);
    assert!(
        gz.len() < BLOCK_SIZE + 2_000,
        "{} bytes: the repeat was not matched",
        gz.len()
    );
    assert_eq!(flate2_decode(&gz), data);
}

#[test]
fn ratio_is_close_to_a_single_stream() {
    let data = text(5 << 20);
    let mut single = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    single.write_all(&data).unwrap();
    let single = single.finish().unwrap().len();
    let parallel = gzip(&data, 2).len();
    assert!(
        parallel <= single + single / 100,
        "parallel {parallel} vs single stream {single}"
    );
}

#[test]
fn dropping_an_unfinished_encoder_stops_its_threads() {
    let mut e = ParallelGzEncoder::with_threads(Vec::new(), 3).unwrap();
    e.write_all(&random(3 * BLOCK_SIZE + 5, 9)).unwrap();
    // Joins the workers; a hang here would time the test out.
    drop(e);
}
