//! End-to-end tests of `kiln cache ls|du|prune`. `kiln build` is not there
//! yet, so records are written directly into `<root>/cache/`, pointing at
//! the layer of an imported image.
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;

use common::Kiln;
use kiln_builder::cache::{CacheRecord, CachedLayer};

/// A cache key: 32 copies of the byte `n`, hex.
fn key_hex(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

/// The layer of a one-layer image in the store.
fn image_layer(kiln: &Kiln, name: &str) -> CachedLayer {
    // Closed again before kiln runs: an open store would keep `rmi` from
    // collecting garbage.
    let store = kiln_store::Store::open(&kiln.root()).unwrap();
    let image = store.resolve(name).unwrap();
    CachedLayer {
        descriptor: image.manifest.layers[0].clone(),
        diff_id: image.config.rootfs.diff_ids[0].clone(),
        diff_size: 0,
        chain_id: None,
    }
}

fn write_record(kiln: &Kiln, n: u8, description: &str, layer: Option<CachedLayer>) -> PathBuf {
    let record = CacheRecord {
        version: kiln_builder::cache::RECORD_VERSION,
        key: format!("sha256:{}", key_hex(n)),
        description: description.to_owned(),
        layer,
        created: "2026-11-30T12:00:00Z".to_owned(),
        sources_digest: None,
        inputs: None,
        step: None,
    };
    let dir = kiln.root().join("cache");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.json", key_hex(n)));
    fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
    path
}

fn blob_path(kiln: &Kiln, layer: &CachedLayer) -> PathBuf {
    let hex = layer.descriptor.digest.strip_prefix("sha256:").unwrap();
    kiln.root().join("blobs/sha256").join(hex)
}

fn size_of(layer: &CachedLayer) -> u64 {
    u64::try_from(layer.descriptor.size).unwrap()
}

/// go-units' size for the small sample layers (under 1000 bytes, which
/// go-units prints as a plain byte count).
fn human(bytes: u64) -> String {
    assert!(bytes < 1000, "sample layer unexpectedly big: {bytes}");
    format!("{bytes}B")
}

#[test]
fn records_keep_layers_after_rmi_until_pruned() {
    let kiln = Kiln::new();
    kiln.import_sample("base:1");
    let layer = image_layer(&kiln, "base:1");
    let record = write_record(&kiln, 1, "RUN make", Some(layer.clone()));

    let ls = kiln.ok(&["cache", "ls"]);
    let size = human(size_of(&layer));
    let expected = common_table(&[
        ["ID", "SIZE", "LAST USED", "DESCRIPTION"],
        [
            &key_hex(1)[..12],
            &size,
            "Less than a second ago",
            "RUN make",
        ],
    ]);
    assert_eq!(ls, expected);
    let shared = kiln.ok(&["cache", "ls", "--format", "{{.ID}} {{.Shared}}"]);
    assert_eq!(shared, format!("{} true\n", &key_hex(1)[..12]));
    // `system df` counts the record and its layer; nothing to reclaim
    // while the image uses the layer.
    let df = kiln.ok(&["system", "df"]);
    let row = format!("Build Cache    1         1         {size:<12}0B\n");
    assert!(df.contains(&row), "{df}");

    // The image goes; the record keeps its layer.
    kiln.ok(&["rmi", "base:1"]);
    assert!(kiln.ok(&["images", "-q"]).is_empty());
    assert!(
        blob_path(&kiln, &layer).exists(),
        "rmi deleted a cached layer"
    );
    let df = kiln.ok(&["system", "df"]);
    let row = format!("Build Cache    1         0         {size:<12}{size}\n");
    assert!(df.contains(&row), "{df}");
    let du = kiln.ok(&["cache", "du"]);
    assert!(du.contains(&format!("Reclaimable:   {size}\n")), "{du}");
    assert!(du.contains(&format!("Total:         {size}\n")), "{du}");
    assert!(du.starts_with("Records:       1\n"), "{du}");

    let out = kiln.ok(&["cache", "prune", "-a", "-f"]);
    assert!(
        out.starts_with(&format!(
            "Deleted build cache objects:\n{}\n\nTotal:",
            key_hex(1)
        )),
        "{out}"
    );
    assert!(!record.exists());
    assert!(!blob_path(&kiln, &layer).exists(), "prune left the layer");
    assert_eq!(
        kiln.ok(&["cache", "ls"]),
        "ID        SIZE      LAST USED   DESCRIPTION\n"
    );
}

/// A table as Go's tabwriter lays it out for the CLI (3 spaces of padding,
/// columns at least 10 wide).
fn common_table(rows: &[[&str; 4]]) -> String {
    let mut text = String::new();
    for row in rows {
        text.push_str(&row.join("\t"));
        text.push('\n');
    }
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let mut widths = [10usize; 3];
    for cells in &lines {
        for (i, width) in widths.iter_mut().enumerate() {
            *width = (*width).max(cells[i].chars().count() + 3);
        }
    }
    let mut out = String::new();
    for cells in &lines {
        for (i, width) in widths.iter().enumerate() {
            write!(out, "{:<width$}", cells[i]).unwrap();
        }
        out.push_str(cells[3]);
        out.push('\n');
    }
    out
}

#[test]
fn prune_keeps_what_images_use_and_what_was_used_recently() {
    let kiln = Kiln::new();
    kiln.import_sample("base:1");
    kiln.import_sample("other:1");
    let shared = image_layer(&kiln, "base:1");
    let private = image_layer(&kiln, "other:1");
    let shared_record = write_record(&kiln, 1, "COPY . .", Some(shared.clone()));
    let private_record = write_record(&kiln, 2, "RUN make", Some(private.clone()));
    kiln.ok(&["rmi", "other:1"]);
    let empty_record = write_record(&kiln, 3, "RUN true", None);

    // Used less than an hour ago: nothing is old enough.
    let out = kiln.ok(&["cache", "prune", "-a", "-f", "--filter", "until=1h"]);
    assert_eq!(out, "Total:    0B\n");
    // Room enough for everything.
    let out = kiln.ok(&["cache", "prune", "-a", "-f", "--keep-storage", "1g"]);
    assert_eq!(out, "Total:    0B\n");
    assert!(private_record.exists() && blob_path(&kiln, &private).exists());

    // Without -a, the record of base:1's layer stays.
    let out = kiln.ok(&["cache", "prune", "-f"]);
    let mut removed = [key_hex(2), key_hex(3)];
    removed.sort();
    assert!(
        out.starts_with(&format!(
            "Deleted build cache objects:\n{}\n{}\n\nTotal:",
            removed[0], removed[1]
        )),
        "{out}"
    );
    assert!(shared_record.exists());
    assert!(!private_record.exists() && !empty_record.exists());
    assert!(!blob_path(&kiln, &private).exists());
    assert!(blob_path(&kiln, &shared).exists());
    let ids = kiln.ok(&["cache", "ls", "--format", "{{.ID}}"]);
    assert_eq!(ids, format!("{}\n", &key_hex(1)[..12]));
}

#[test]
fn bad_prune_flags_fail_before_anything_is_removed() {
    let kiln = Kiln::new();
    let record = write_record(&kiln, 1, "RUN true", None);
    let cases: &[(&[&str], &str)] = &[
        (
            &["--filter", "dangling=true"],
            "error: invalid filter 'dangling': kiln cache prune supports until=DURATION\n",
        ),
        (
            &["--filter", "until=soon"],
            "error: invalid filter 'until=soon'\ncaused by: time: invalid duration \"soon\"\n",
        ),
        (
            &["--filter", "until"],
            "error: bad format of filter (expected name=value): until\n",
        ),
        (
            &["--keep-storage", "12 parsecs"],
            "error: invalid --keep-storage \"12 parsecs\"\ncaused by: invalid suffix: 'parsecs'\n",
        ),
    ];
    for (flags, message) in cases {
        let mut args = vec!["cache", "prune", "-a", "-f"];
        args.extend_from_slice(flags);
        assert_eq!(kiln.fails(&args), *message, "{flags:?}");
    }
    assert!(record.exists());
}

#[test]
fn unreadable_records_are_skipped_then_pruned() {
    let kiln = Kiln::new();
    write_record(&kiln, 1, "RUN true", None);
    let broken = kiln
        .root()
        .join("cache")
        .join(format!("{}.json", key_hex(2)));
    fs::write(&broken, b"{\"key\": 12").unwrap();

    let output = kiln.run(&["cache", "ls", "--format", "json"]);
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let row: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(row["ID"], key_hex(1)[..12]);
    assert_eq!(row["Description"], "RUN true");
    assert_eq!(row["Size"], "0B");
    assert_eq!(row["Shared"], false);
    assert_eq!(
        String::from_utf8(output.stderr).unwrap(),
        "warning: skipped 1 unreadable build-cache record file(s); `kiln cache prune` removes them\n"
    );

    let output = kiln.run(&["cache", "prune", "-f", "--filter", "until=1h"]);
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stderr).unwrap(),
        "removed 1 unreadable build-cache record file(s)\n"
    );
    assert!(!broken.exists());
    // The readable record was used just now: kept.
    assert_eq!(
        kiln.ok(&["cache", "ls", "-q"]),
        format!("{}\n", &key_hex(1)[..12])
    );
}

#[test]
fn no_trunc_shows_full_keys_and_descriptions() {
    let kiln = Kiln::new();
    let long = format!("RUN {}", "x".repeat(80));
    write_record(&kiln, 7, &long, None);
    let short = kiln.ok(&["cache", "ls", "--format", "{{.ID}} {{.Description}}"]);
    assert_eq!(
        short,
        format!("{} RUN {}…\n", &key_hex(7)[..12], "x".repeat(45))
    );
    let full = kiln.ok(&[
        "cache",
        "ls",
        "--no-trunc",
        "--format",
        "{{.ID}} {{.Description}}",
    ]);
    assert_eq!(full, format!("sha256:{} {long}\n", key_hex(7)));
}

#[test]
fn prune_until_removes_records_unused_for_longer() {
    let kiln = Kiln::new();
    let old = write_record(&kiln, 1, "RUN old", None);
    let new = write_record(&kiln, 2, "RUN new", None);
    let status = std::process::Command::new("touch")
        .args(["-m", "-d", "2 days ago"])
        .arg(&old)
        .status()
        .unwrap();
    assert!(status.success());
    let ls = kiln.ok(&["cache", "ls", "--format", "{{.ID}} {{.LastUsed}}"]);
    assert_eq!(
        ls,
        format!(
            "{} Less than a second ago\n{} 2 days ago\n",
            &key_hex(2)[..12],
            &key_hex(1)[..12]
        )
    );
    let out = kiln.ok(&["cache", "prune", "-f", "--filter", "until=24h"]);
    assert!(
        out.starts_with(&format!(
            "Deleted build cache objects:\n{}\n\nTotal:",
            key_hex(1)
        )),
        "{out}"
    );
    assert!(!old.exists() && new.exists());
}

#[test]
fn build_records_keep_the_snapshots_of_their_chains_after_rmi() {
    assert!(
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() } == 0,
        "kiln build needs root (RUN uses namespaces and mounts); CI runs it as root"
    );
    let kiln = Kiln::new();
    let rootfs = kiln.path("rootfs");
    common::busybox_rootfs(&rootfs);
    kiln.ok(&["import", rootfs.to_str().unwrap(), "bb:1"]);
    let dir = kiln.path("ctx");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("Dockerfile"), "FROM bb:1\nRUN echo hi > /f\n").unwrap();
    kiln.ok(&["build", "-q", "-t", "app:1", dir.to_str().unwrap()]);
    // The RUN's snapshot is named by its chain (on bb:1's layer), not by
    // its layer's diff_id.
    let snapshot = common::image_snapshots(&kiln.root(), "app:1").remove(1);
    let inode = fs::metadata(&snapshot).unwrap().ino();

    kiln.ok(&["rmi", "app:1"]);
    assert!(snapshot.exists(), "rmi deleted a cached step's snapshot");
    let output = kiln
        .command()
        .args([
            "build",
            "--progress=plain",
            "-t",
            "app:1",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("0 steps run, 1 cached"), "{stderr}");
    // Used as it was, not made again.
    assert_eq!(fs::metadata(&snapshot).unwrap().ino(), inode);

    kiln.ok(&["rmi", "app:1"]);
    kiln.ok(&["cache", "prune", "-a", "-f"]);
    assert!(!snapshot.exists(), "prune left the snapshot");
}

#[test]
fn contexts_stat_caches_are_counted_and_pruned_when_idle() {
    let kiln = common::build::busybox();
    let dir = common::build::context(&kiln, "ctx", "FROM bb:1\nCOPY f /f\n", &[("f", "x\n")]);
    common::build::build_ok(&kiln, &dir, "app:1", &[]);
    let caches: Vec<PathBuf> = fs::read_dir(kiln.root().join("statcache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let [cache] = caches.as_slice() else {
        panic!("one stat cache expected: {caches:?}")
    };
    let df = kiln.ok(&["system", "df"]);
    assert!(df.contains("\nStat caches    1         0         "), "{df}");
    // A no-op build marks it used, so `until` keeps it.
    let backdate = || {
        let two_days = std::time::Duration::from_hours(48);
        fs::File::options()
            .write(true)
            .open(cache)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - two_days)
            .unwrap();
    };
    backdate();
    let again = common::build::build_ok(&kiln, &dir, "app:1", &[]);
    assert!(again.contains("0 steps run, 1 cached"), "{again}");
    let out = kiln.ok(&["cache", "prune", "-f", "--filter", "until=24h"]);
    assert!(cache.exists(), "{out}");
    // Idle for two days: pruned, and named as the records are.
    backdate();
    let out = kiln.ok(&["cache", "prune", "-f", "--filter", "until=24h"]);
    let name = cache.file_stem().unwrap().to_str().unwrap();
    assert!(
        out.starts_with(&format!("Deleted build cache objects:\n{name}\n\nTotal:")),
        "{out}"
    );
    assert!(!cache.exists());
    let df = kiln.ok(&["system", "df"]);
    assert!(
        df.contains("\nStat caches    0         0         0B          0B\n"),
        "{df}"
    );
    // The next build reads the context again and keeps a new one.
    let rebuilt = common::build::build_ok(&kiln, &dir, "app:1", &[]);
    assert!(rebuilt.contains("0 steps run, 1 cached"), "{rebuilt}");
    assert!(cache.exists());
}

#[test]
fn ls_inputs_shows_each_records_step_and_operation() {
    let kiln = Kiln::new();
    let path = write_record(&kiln, 7, "WORKDIR /app", None);
    let mut record: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    // As the engine writes them: the operation in field order, the step.
    record["inputs"] =
        serde_json::json!({"op": "mkdir", "parent": "scratch", "path": "/app", "user": ""});
    record["step"] =
        serde_json::json!({"stage": "build", "position": 2, "instruction": "WORKDIR /app"});
    fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
    assert_eq!(
        kiln.ok(&["cache", "ls", "--inputs"]),
        format!(
            "{}\tWORKDIR /app\n  step:   stage build, step 2: WORKDIR /app\n  inputs: {}\n",
            &key_hex(7)[..12],
            r#"{"op":"mkdir","parent":"scratch","path":"/app","user":""}"#
        )
    );
    let json = kiln.ok(&["cache", "ls", "--inputs", "--format", "json"]);
    let row: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(row["Step"], "stage build, step 2: WORKDIR /app");
    assert_eq!(
        row["Inputs"],
        r#"{"op":"mkdir","parent":"scratch","path":"/app","user":""}"#
    );
}

#[test]
fn system_df_counts_lineage_records_and_source_lists() {
    let kiln = Kiln::new();
    let cache = kiln.root().join("cache");
    fs::create_dir_all(cache.join("lineage")).unwrap();
    fs::create_dir_all(cache.join("sources")).unwrap();
    // A lineage record naming a snapshot the store does not have, and a
    // listing no record names: both reclaimable.
    let line = format!("sha256:{} 1700000000 0\n", key_hex(0xee));
    fs::write(cache.join("lineage").join(key_hex(1)), &line).unwrap();
    fs::write(
        cache.join("sources").join(format!("{}.list", key_hex(2))),
        "[]",
    )
    .unwrap();
    let df = kiln.ok(&["system", "df"]);
    let row = |kind: &str| {
        let line = df.lines().find(|l| l.starts_with(kind)).unwrap();
        line[kind.len()..]
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let size = human(u64::try_from(line.len()).unwrap());
    assert_eq!(row("Lineage"), ["1", "0", &size, &size], "{df}");
    assert_eq!(row("Source lists"), ["1", "0", "2B", "2B"], "{df}");

    kiln.ok(&["cache", "prune", "-f"]);
    let df = kiln.ok(&["system", "df"]);
    assert!(
        df.contains("\nLineage        0         0         0B          0B\n"),
        "{df}"
    );
    assert!(
        df.contains("\nSource lists   0         0         0B          0B\n"),
        "{df}"
    );
}
