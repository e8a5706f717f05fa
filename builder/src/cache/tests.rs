use std::fs;
use std::time::{Duration, SystemTime};

use filetime::FileTime;
use kiln_store::Store;
use kiln_store::commit::NewLayer;
use kiln_store::layer::Compression;
use kiln_store::spec::ImageConfig;
use tempfile::TempDir;

use super::*;

fn store() -> (TempDir, Store) {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    (dir, store)
}

/// A real layer holding one file with `content`.
fn layer(dir: &TempDir, store: &Store, content: &str) -> NewLayer {
    let tree = dir.path().join(format!("tree-{content}"));
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("file"), content).unwrap();
    store
        .write_layer_from_directory(
            &tree,
            Compression::Gzip,
            &kiln_store::layer::PackOptions::default(),
        )
        .unwrap()
}

fn key(n: u8) -> String {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
}

fn record(n: u8, layer: Option<&NewLayer>) -> CacheRecord {
    CacheRecord {
        version: RECORD_VERSION,
        key: key(n),
        description: format!("RUN step {n}"),
        layer: layer.map(|l| CachedLayer {
            descriptor: l.descriptor.clone(),
            diff_id: l.diff_id.to_string(),
            diff_size: l.diff_size,
            chain_id: None,
        }),
        created: "2026-11-30T12:00:00Z".to_owned(),
        sources_digest: None,
        inputs: Some(serde_json::json!({"op": "run", "parent": "scratch"})),
        step: Some(StepIdentity {
            stage: "0".to_owned(),
            position: 2,
            instruction: format!("RUN step {n}"),
        }),
    }
}

fn record_file(store: &Store, n: u8) -> PathBuf {
    store
        .cache_dir()
        .join(format!("{}.json", format!("{n:02x}").repeat(32)))
}

/// Sets a record's last use to `ago` before now.
fn age(store: &Store, n: u8, ago: Duration) {
    let time = SystemTime::now() - ago;
    filetime::set_file_mtime(record_file(store, n), FileTime::from_system_time(time)).unwrap();
}

fn blob_exists(store: &Store, layer: &NewLayer) -> bool {
    store
        .blobs()
        .contains(&parse_sha256(&layer.descriptor.digest).unwrap())
}

#[test]
fn put_then_get_round_trips_and_marks_used() {
    let (dir, store) = store();
    let cache = BuildCache::new(&store);
    let layer = layer(&dir, &store, "a");
    let rec = record(1, Some(&layer));
    cache.put(&rec).unwrap();
    let text = fs::read_to_string(record_file(&store, 1)).unwrap();
    // The collector finds both digests as plain strings.
    assert!(text.contains(&layer.descriptor.digest), "{text}");
    assert!(text.contains(&layer.diff_id.to_string()), "{text}");

    age(&store, 1, Duration::from_hours(1));
    let before = fs::metadata(record_file(&store, 1)).unwrap();
    assert_eq!(cache.get(&rec.key).unwrap(), Some(rec.clone()));
    let after = fs::metadata(record_file(&store, 1)).unwrap();
    let used = SystemTime::now()
        .duration_since(after.modified().unwrap())
        .unwrap_or_default();
    assert!(used < Duration::from_mins(1), "mtime not refreshed");
    assert!(after.modified().unwrap() > before.modified().unwrap());
    // A hit does not rewrite the file.
    assert_eq!(before.ino(), after.ino());
    assert_eq!(cache.get(&key(2)).unwrap(), None);
}

use std::os::unix::fs::MetadataExt as _;

#[test]
fn empty_diff_records_need_no_blob() {
    let (_dir, store) = store();
    let cache = BuildCache::new(&store);
    let rec = record(3, None);
    cache.put(&rec).unwrap();
    assert_eq!(cache.get(&rec.key).unwrap(), Some(rec));
}

#[test]
fn a_record_whose_blob_is_gone_is_a_miss_and_removed() {
    let (dir, store) = store();
    let cache = BuildCache::new(&store);
    let layer = layer(&dir, &store, "gone");
    cache.put(&record(1, Some(&layer))).unwrap();
    store
        .blobs()
        .remove(&parse_sha256(&layer.descriptor.digest).unwrap())
        .unwrap();
    assert_eq!(cache.get(&key(1)).unwrap(), None);
    assert!(!record_file(&store, 1).exists());
}

#[test]
fn corrupt_records_are_misses_and_skipped_in_listings() {
    let (dir, store) = store();
    let cache = BuildCache::new(&store);
    let layer = layer(&dir, &store, "ok");
    cache.put(&record(1, Some(&layer))).unwrap();
    fs::write(record_file(&store, 2), b"{not json").unwrap();
    // Valid JSON, but filed under another key.
    fs::write(
        record_file(&store, 3),
        serde_json::to_vec(&record(4, None)).unwrap(),
    )
    .unwrap();
    // Not record names: ignored entirely (e.g. a stat cache).
    fs::write(store.cache_dir().join("stat-cache.json"), b"{}").unwrap();

    assert_eq!(cache.get(&key(2)).unwrap(), None);
    let listing = cache.scan().unwrap();
    assert_eq!(listing.entries.len(), 1);
    assert_eq!(listing.entries[0].record.key, key(1));
    assert_eq!(
        listing.unreadable,
        vec![record_file(&store, 2), record_file(&store, 3)]
    );
    assert_eq!(cache.list().unwrap().len(), 1);
}

#[test]
fn bad_keys_and_digests_are_refused() {
    let (_dir, store) = store();
    let cache = BuildCache::new(&store);
    let mut rec = record(1, None);
    rec.key = "sha256:abc".to_owned();
    let error = cache.put(&rec).unwrap_err().to_string();
    assert!(
        error.starts_with("invalid digest \"sha256:abc\""),
        "{error}"
    );
    assert!(cache.get("../../etc/passwd").is_err());

    let mut rec = record(1, None);
    rec.layer = Some(CachedLayer {
        descriptor: Descriptor::new("application/x", "md5:00", 1),
        diff_id: key(9),
        diff_size: 1,
        chain_id: None,
    });
    let error = cache.put(&rec).unwrap_err().to_string();
    assert!(error.contains("\"md5:00\""), "{error}");
    assert!(!record_file(&store, 1).exists());
}

/// Tags an image `img:1` whose only layer is `layer`.
fn tag_image_of(store: &Store, layer: &NewLayer) {
    let tag = kiln_parser::values::parse_normalized_named("img:1").unwrap();
    store
        .commit_image(
            &ImageConfig::default(),
            std::slice::from_ref(&layer.descriptor),
            &[tag],
        )
        .unwrap();
}

#[test]
fn list_reports_size_sharing_and_last_use() {
    let (dir, store) = store();
    let cache = BuildCache::new(&store);
    let own = layer(&dir, &store, "own");
    let used = layer(&dir, &store, "used-by-image");
    tag_image_of(&store, &used);
    cache.put(&record(1, Some(&own))).unwrap();
    cache.put(&record(2, Some(&used))).unwrap();
    cache.put(&record(3, None)).unwrap();
    age(&store, 1, Duration::from_mins(5));
    age(&store, 2, Duration::from_secs(200));
    age(&store, 3, Duration::from_secs(100));

    let entries = cache.list().unwrap();
    let summary: Vec<(String, u64, bool)> = entries
        .iter()
        .map(|e| (e.record.key.clone(), e.size, e.shared))
        .collect();
    assert_eq!(
        summary,
        vec![
            (key(1), u64::try_from(own.descriptor.size).unwrap(), false),
            (key(2), u64::try_from(used.descriptor.size).unwrap(), true),
            (key(3), 0, false),
        ]
    );
    let idle = SystemTime::now()
        .duration_since(entries[0].last_used)
        .unwrap();
    assert!(idle >= Duration::from_mins(5) && idle < Duration::from_secs(400));
}

#[test]
fn records_keep_blobs_and_snapshots_alive_until_pruned() {
    let (dir, store) = store();
    let cache = BuildCache::new(&store);
    let base = layer(&dir, &store, "base");
    let layer = layer(&dir, &store, "kept");
    // The step's snapshot is its layer on the stage's: named by the chain.
    let below = store
        .snapshot(&[], &base.descriptor, &base.diff_id.to_string())
        .unwrap();
    let snapshot = store
        .snapshot(
            std::slice::from_ref(&below),
            &layer.descriptor,
            &layer.diff_id.to_string(),
        )
        .unwrap();
    assert_ne!(snapshot.chain_id, layer.diff_id);
    let mut rec = record(1, Some(&layer));
    if let Some(l) = rec.layer.as_mut() {
        l.chain_id = Some(snapshot.chain_id.to_string());
    }
    cache.put(&rec).unwrap();
    store.collect_garbage().unwrap();
    assert!(blob_exists(&store, &layer));
    let snapshot = snapshot.path;
    assert!(snapshot.exists(), "the record keeps the snapshot");
    // Nothing keeps the base layer: its blob and snapshot go.
    assert!(!blob_exists(&store, &base));
    assert!(!below.path.exists());

    let report = cache
        .prune(&PruneOptions {
            all: true,
            ..PruneOptions::default()
        })
        .unwrap();
    assert_eq!(report.removed, vec![rec]);
    assert!(!blob_exists(&store, &layer));
    assert!(!snapshot.exists());
    assert!(report.reclaimed >= u64::try_from(layer.descriptor.size).unwrap());
    assert!(cache.list().unwrap().is_empty());
}

#[test]
fn prune_without_all_keeps_records_of_image_layers() {
    let (dir, store) = store();
    let cache = BuildCache::new(&store);
    let own = layer(&dir, &store, "own");
    let used = layer(&dir, &store, "used");
    tag_image_of(&store, &used);
    cache.put(&record(1, Some(&own))).unwrap();
    cache.put(&record(2, Some(&used))).unwrap();
    let report = cache.prune(&PruneOptions::default()).unwrap();
    assert_eq!(report.removed, vec![record(1, Some(&own))]);
    assert!(!blob_exists(&store, &own));
    assert!(blob_exists(&store, &used));
    assert_eq!(cache.list().unwrap().len(), 1);
}

#[test]
fn prune_until_removes_only_records_idle_longer() {
    let (dir, store) = store();
    let cache = BuildCache::new(&store);
    let old = layer(&dir, &store, "old");
    let new = layer(&dir, &store, "new");
    cache.put(&record(1, Some(&old))).unwrap();
    cache.put(&record(2, Some(&new))).unwrap();
    age(&store, 1, Duration::from_hours(48));
    age(&store, 2, Duration::from_hours(1));
    let report = cache
        .prune(&PruneOptions {
            until: Some(Duration::from_hours(24)),
            ..PruneOptions::default()
        })
        .unwrap();
    assert_eq!(report.removed, vec![record(1, Some(&old))]);
    assert!(!blob_exists(&store, &old));
    assert!(blob_exists(&store, &new));
}

#[test]
fn prune_keep_storage_removes_least_recently_used_first() {
    let (dir, store) = store();
    let cache = BuildCache::new(&store);
    let layers: Vec<NewLayer> = ["l1", "l2", "l3"]
        .iter()
        .map(|c| layer(&dir, &store, c))
        .collect();
    for (n, l) in (1..).zip(&layers) {
        cache.put(&record(n, Some(l))).unwrap();
    }
    // Two records share layer 3: removing one of them frees nothing.
    cache.put(&record(4, Some(&layers[2]))).unwrap();
    // Least recently used: 2, then 4, then 1, then 3.
    age(&store, 2, Duration::from_secs(400));
    age(&store, 4, Duration::from_mins(5));
    age(&store, 1, Duration::from_secs(200));
    age(&store, 3, Duration::from_secs(100));
    let size = |l: &NewLayer| u64::try_from(l.descriptor.size).unwrap();
    // Room for layers 1 and 3 only.
    let keep = size(&layers[0]) + size(&layers[2]);
    let report = cache
        .prune(&PruneOptions {
            keep_storage: Some(keep),
            ..PruneOptions::default()
        })
        .unwrap();
    assert_eq!(report.removed, vec![record(2, Some(&layers[1]))]);

    // Now room for one layer: 4 goes (frees nothing, 3 still uses the
    // blob), then 1 goes.
    let report = cache
        .prune(&PruneOptions {
            keep_storage: Some(size(&layers[2])),
            ..PruneOptions::default()
        })
        .unwrap();
    assert_eq!(
        report.removed,
        vec![record(4, Some(&layers[2])), record(1, Some(&layers[0]))]
    );
    assert!(blob_exists(&store, &layers[2]));
    assert!(!blob_exists(&store, &layers[0]));
    assert!(!blob_exists(&store, &layers[1]));
    let left: Vec<String> = cache
        .list()
        .unwrap()
        .into_iter()
        .map(|e| e.record.key)
        .collect();
    assert_eq!(left, vec![key(3)]);
}

#[test]
fn prune_removes_unreadable_records() {
    let (_dir, store) = store();
    let cache = BuildCache::new(&store);
    fs::write(record_file(&store, 2), b"garbage").unwrap();
    let report = cache.prune(&PruneOptions::default()).unwrap();
    assert_eq!(report.unreadable_removed, 1);
    assert!(report.removed.is_empty());
    assert!(!record_file(&store, 2).exists());
}

#[test]
fn prune_removes_cache_mounts_by_the_same_rules() {
    let (dir, store) = store();
    let owner = {
        use std::os::unix::fs::MetadataExt as _;
        let meta = fs::metadata(dir.path()).unwrap();
        (meta.uid(), meta.gid())
    };
    let mount = |name: &str, bytes: usize, ago: Duration| {
        let id = kiln_store::digest::digest_bytes(name.as_bytes());
        let path = store.cache_mount(&id, 0o755, owner.0, owner.1).unwrap();
        fs::write(path.join("data"), vec![b'x'; bytes]).unwrap();
        let time = FileTime::from_system_time(SystemTime::now() - ago);
        filetime::set_file_mtime(&path, time).unwrap();
        id.encoded().to_owned()
    };
    let old = mount("old", 100, Duration::from_hours(48));
    let recent = mount("recent", 10, Duration::from_secs(5));
    let cache = BuildCache::new(&store);
    // Idle for longer than a day: only the old one.
    let report = cache
        .prune(&PruneOptions {
            until: Some(Duration::from_hours(24)),
            ..PruneOptions::default()
        })
        .unwrap();
    assert_eq!(report.cache_mounts, std::slice::from_ref(&old));
    assert_eq!(report.reclaimed, 100);
    assert!(!store.cache_mounts_dir().join(&old).exists());
    // Within the storage kept: nothing.
    let report = cache
        .prune(&PruneOptions {
            keep_storage: Some(10),
            ..PruneOptions::default()
        })
        .unwrap();
    assert!(report.cache_mounts.is_empty());
    // A plain prune: everything.
    let report = cache.prune(&PruneOptions::default()).unwrap();
    assert_eq!(report.cache_mounts, [recent]);
    assert!(store.cache_mounts().unwrap().is_empty());
}

#[test]
fn records_of_another_version_are_never_read_listed_or_pruned() {
    let (_dir, store) = store();
    let cache = BuildCache::new(&store);
    cache.put(&record(1, None)).unwrap();
    let path = record_file(&store, 1);
    let written: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(written["version"], RECORD_VERSION);
    // A newer kiln's record, whatever its other fields hold.
    let newer = serde_json::json!({
        "version": RECORD_VERSION + 1, "key": key(1), "operation": {"run": "make"},
    });
    fs::write(&path, serde_json::to_vec(&newer).unwrap()).unwrap();
    assert_eq!(cache.get(&key(1)).unwrap(), None);
    assert!(cache.list().unwrap().is_empty());
    let report = cache.prune(&PruneOptions {
        all: true,
        ..PruneOptions::default()
    });
    assert_eq!(report.unwrap().unreadable_removed, 0);
    assert!(path.exists(), "another kiln's record was pruned");
}

#[test]
fn records_of_version_one_are_ignored_cleanly() {
    // Version 1 keyed steps by text: its records are never read as
    // version 2 ones, with the field or without it (written before it).
    let (_dir, store) = store();
    let cache = BuildCache::new(&store);
    let mut old = serde_json::to_value(record(2, None)).unwrap();
    let fields = old.as_object_mut().unwrap();
    fields.remove("inputs");
    fields.remove("step");
    fields.remove("version");
    fs::create_dir_all(store.cache_dir()).unwrap();
    fs::write(record_file(&store, 2), serde_json::to_vec(&old).unwrap()).unwrap();
    fields_version_one(&store, 3, &old);
    assert_eq!(cache.get(&key(2)).unwrap(), None);
    assert_eq!(cache.get(&key(3)).unwrap(), None);
    let listing = cache.scan().unwrap();
    assert!(listing.entries.is_empty() && listing.unreadable.is_empty());
    let report = cache.prune(&PruneOptions {
        all: true,
        ..PruneOptions::default()
    });
    assert_eq!(report.unwrap().unreadable_removed, 0);
    assert!(record_file(&store, 2).exists() && record_file(&store, 3).exists());
}

fn fields_version_one(store: &Store, n: u8, old: &serde_json::Value) {
    let mut with_version = old.clone();
    with_version["version"] = serde_json::json!(1);
    with_version["key"] = serde_json::json!(key(n));
    fs::write(
        record_file(store, n),
        serde_json::to_vec(&with_version).unwrap(),
    )
    .unwrap();
}

#[test]
fn records_carry_their_inputs_and_step() {
    let (_dir, store) = store();
    let cache = BuildCache::new(&store);
    cache.put(&record(4, None)).unwrap();
    let text = fs::read_to_string(record_file(&store, 4)).unwrap();
    assert!(
        text.contains(r#""inputs":{"op":"run","parent":"scratch"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#""step":{"stage":"0","position":2,"instruction":"RUN step 4"}"#),
        "{text}"
    );
    assert_eq!(cache.get(&key(4)).unwrap(), Some(record(4, None)));
}

#[test]
fn source_file_listings_are_kept_until_no_record_names_them() {
    let (_dir, store) = store();
    let cache = BuildCache::new(&store);
    let named = kiln_store::digest::digest_bytes(b"named");
    let orphan = kiln_store::digest::digest_bytes(b"orphan");
    let files = vec![crate::context::SourceFile {
        path: "a.txt".to_owned(),
        content: "00".repeat(16),
        meta: "f:644:0:0".to_owned(),
    }];
    cache.put_source_files(&named, &files).unwrap();
    cache.put_source_files(&orphan, &files).unwrap();
    assert_eq!(cache.source_files(&named), Some(files.clone()));
    let mut kept = record(5, None);
    kept.inputs = Some(serde_json::json!({"op": "copy", "sources_digest": named.to_string()}));
    cache.put(&kept).unwrap();
    // Keeps every record (the cache is under the limit), drops listings.
    cache
        .prune(&PruneOptions {
            keep_storage: Some(u64::MAX),
            ..PruneOptions::default()
        })
        .unwrap();
    assert_eq!(cache.source_files(&named), Some(files));
    assert_eq!(cache.source_files(&orphan), None);
}

#[test]
fn prune_removes_lineage_records_without_a_snapshot_and_all_with_all() {
    let (dir, store) = store();
    let cache = BuildCache::new(&store);
    // A snapshot an image keeps (its one layer's chain id is the layer's
    // diff id), so that every prune here leaves it.
    let layer = layer(&dir, &store, "copied");
    let snapshot = store
        .snapshot(&[], &layer.descriptor, &layer.diff_id.to_string())
        .unwrap();
    let mut config = ImageConfig::default();
    config.rootfs.diff_ids = vec![layer.diff_id.to_string()];
    let tag = kiln_parser::values::parse_normalized_named("img:1").unwrap();
    store
        .commit_image(&config, std::slice::from_ref(&layer.descriptor), &[tag])
        .unwrap();

    let lineage = store.cache_dir().join(LINEAGE_DIR);
    fs::create_dir_all(&lineage).unwrap();
    let write = |n: u8, text: &str| {
        let path = lineage.join(format!("{n:02x}").repeat(32));
        fs::write(&path, text).unwrap();
        path
    };
    let live = write(1, &format!("{} 1700000000 5\n", snapshot.chain_id));
    let dangling = write(2, &format!("{} 1700000000 5\n", key(0xee)));
    let garbled = write(3, "not a lineage record\n");
    // Not a name kiln looks up: not a record, left alone.
    let other = lineage.join("notes");
    fs::write(&other, "x").unwrap();
    let usage = cache.lineage_usage().unwrap();
    assert_eq!((usage.files, usage.live), (3, 1));
    let dead_bytes = file_size(&dangling) + file_size(&garbled);
    assert_eq!(usage.reclaimable, dead_bytes);

    let report = cache.prune(&PruneOptions::default()).unwrap();
    assert!(snapshot.path.exists());
    assert!(live.exists(), "the record of an existing snapshot is kept");
    assert!(
        !dangling.exists(),
        "the record of a missing snapshot is removed"
    );
    assert!(!garbled.exists(), "a garbled record is removed");
    assert!(other.exists());
    assert!(report.reclaimed >= dead_bytes);

    // `until` keeps a record whose step ran recently, even with `all`.
    cache
        .prune(&PruneOptions {
            all: true,
            until: Some(Duration::from_hours(1)),
            ..PruneOptions::default()
        })
        .unwrap();
    assert!(live.exists());

    cache
        .prune(&PruneOptions {
            all: true,
            ..PruneOptions::default()
        })
        .unwrap();
    assert!(snapshot.path.exists());
    assert!(!live.exists(), "`all` removes every lineage record");
    assert!(other.exists());
}
