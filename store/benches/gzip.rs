//! gzip layer compression throughput on 64 MiB of random and of text-like
//! data: flate2's single-stream `GzEncoder` (the layer encoder before
//! parallel gzip) against `ParallelGzEncoder` on 1 thread and on the
//! default thread count (the available parallelism, at most 4).
//!
//! Run: `cargo bench -p kiln-store --bench gzip`.
#![expect(clippy::unwrap_used, reason = "benchmark setup fails loudly")]

use std::hint::black_box;
use std::io::Write;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_main};
use kiln_store::layer::ParallelGzEncoder;
use kiln_store::layer::pgzip::default_threads;

const SIZE: usize = 64 << 20;

/// Incompressible bytes (xorshift64*).
fn random(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Source-code-like lines with varying identifiers and numbers
/// (compresses about 4:1 at level 6, like a typical text-heavy layer).
fn text(len: usize) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "let", "value", "config", "layer", "return", "if", "else", "match", "self", "build",
        "path", "error", "Some", "None", "Ok", "stage",
    ];
    let mut x: u64 = 12_345;
    let mut out = Vec::with_capacity(len + 128);
    while out.len() < len {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let r = x >> 33;
        let w = |k: u64| WORDS[usize::try_from((r >> k) % 16).unwrap()];
        let line = format!(
            "    {} {}_{} = {}({}, {});\n",
            w(0),
            w(4),
            r % 1000,
            w(8),
            w(12),
            (r >> 16) % 100_000
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(len);
    out
}

fn single_stream(data: &[u8]) -> usize {
    let mut e = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::with_capacity(data.len()), flate2::Compression::new(6));
    e.write_all(data).unwrap();
    e.finish().unwrap().len()
}

fn parallel(data: &[u8], threads: usize) -> usize {
    let mut e = ParallelGzEncoder::with_threads(Vec::with_capacity(data.len()), threads).unwrap();
    e.write_all(data).unwrap();
    e.finish().unwrap().len()
}

fn bench(c: &mut Criterion) {
    let threads = default_threads();
    for (name, data) in [("random", random(SIZE)), ("text", text(SIZE))] {
        println!(
            "{name}: 64 MiB -> single stream {} bytes, parallel {} bytes",
            single_stream(&data),
            parallel(&data, threads)
        );
        let mut g = c.benchmark_group(format!("gzip-{name}-64MiB"));
        g.throughput(Throughput::Bytes(SIZE as u64));
        g.sample_size(10);
        g.measurement_time(Duration::from_secs(15));
        g.bench_function("flate2-single-stream", |b| {
            b.iter(|| single_stream(black_box(&data)));
        });
        g.bench_function("parallel-1-thread", |b| {
            b.iter(|| parallel(black_box(&data), 1));
        });
        g.bench_function(format!("parallel-{threads}-threads"), |b| {
            b.iter(|| parallel(black_box(&data), threads));
        });
        g.finish();
    }
}

// In a private module, so the undocumented function criterion's macro
// defines is not public API.
mod group {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(group::benches);
