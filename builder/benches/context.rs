//! Digest of a generated build context of 20,000 small files, cold (every
//! file read and hashed) and warm (stat cache loaded from disk, no file
//! read). Prints one timed run of each before criterion's measurements.
//!
//! Run: `cargo bench -p kiln-builder --bench context`.
#![expect(clippy::unwrap_used, reason = "benchmark setup fails loudly")]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_main};
use kiln_builder::{BuildContext, StatCache};

const DIRS: usize = 200;
const FILES_PER_DIR: usize = 100;

/// `DIRS` directories of `FILES_PER_DIR` files of 200-700 bytes each.
fn generate(root: &Path) {
    for d in 0..DIRS {
        let dir = root.join(format!("src/mod{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..FILES_PER_DIR {
            let body = format!("// file {d}/{f}\n").repeat(20 + (d * 7 + f) % 40);
            std::fs::write(dir.join(format!("file{f:03}.rs")), body).unwrap();
        }
    }
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("ctx");
    generate(&root);
    // Let the files' ctimes age past the stat cache's racy window.
    std::thread::sleep(Duration::from_millis(200));
    let ctx = BuildContext::open(&root, &[]).unwrap();
    let sources = ctx.resolve_sources(&[".".to_owned()], &[], false).unwrap();
    let cache_file = tmp.path().join("statcache.bin");

    let start = Instant::now();
    let mut cache = StatCache::new();
    let cold = ctx.digest_sources(&sources, &mut cache).unwrap();
    let cold_time = start.elapsed();
    let reads = cache.reads();
    cache
        .save(cache_file.parent().unwrap(), &cache_file)
        .unwrap();

    let start = Instant::now();
    let mut cache = StatCache::load(&cache_file).unwrap();
    let warm = ctx.digest_sources(&sources, &mut cache).unwrap();
    let warm_time = start.elapsed();
    assert_eq!(cold, warm);
    println!(
        "{} files: cold {cold_time:?} ({reads} files read), warm {warm_time:?} incl. loading the stat cache ({} files read)",
        DIRS * FILES_PER_DIR,
        cache.reads()
    );

    let mut group = c.benchmark_group("context_digest_20k");
    group.sample_size(10);
    group.bench_function("cold", |b| {
        b.iter(|| {
            let mut cache = StatCache::new();
            ctx.digest_sources(black_box(&sources), &mut cache).unwrap()
        });
    });
    group.bench_function("warm", |b| {
        b.iter(|| {
            let mut cache = StatCache::load(&cache_file).unwrap();
            ctx.digest_sources(black_box(&sources), &mut cache).unwrap()
        });
    });
    group.finish();
}

// In a private module, so the undocumented function criterion's macro
// defines is not public API.
mod group {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(group::benches);
