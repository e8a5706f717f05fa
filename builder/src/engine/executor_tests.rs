//! The engine's scheduling and cache with a fake executor: which RUN steps
//! run and which the cache answers, without root.
//!
//! The fake runs RUN steps by writing or copying files, and emulates the
//! overlays and binds of COPY, ADD, WORKDIR and `RUN --mount` by copying,
//! so every step kind runs here on `FROM scratch` without privilege; the
//! end-to-end tests run the same steps in real containers and mounts.

use std::collections::BTreeMap;
use std::sync::Arc;

use kiln_runtime::Network;
use kiln_store::Store;
use kiln_store::layer::Compression;

use super::{BuildOptions, BuildOutcome, Entitlements, build};
use crate::cache::BuildCache;
use crate::cache::share::{CacheImport, CacheLocation, CacheMode};
use crate::context::BuildContext;
use crate::error::BuildError;
use crate::executor::fake::FakeExecutor;
use crate::progress::Silent;

/// A store and an empty build context in a temporary directory.
struct Setup {
    dir: tempfile::TempDir,
    store: Store,
    context: std::path::PathBuf,
    fake: Arc<FakeExecutor>,
    /// `--cache-from`.
    import: Option<Arc<CacheImport>>,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let context = dir.path().join("context");
        std::fs::create_dir(&context).unwrap();
        Self {
            dir,
            store,
            context,
            fake: Arc::new(FakeExecutor::default()),
            import: None,
        }
    }

    /// Writes `content` at `path` in the build context.
    fn context_file(&self, path: &str, content: &str) {
        let file = self.context.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
    }

    fn build(&self, dockerfile: &str, args: &[(&str, &str)]) -> Result<BuildOutcome, BuildError> {
        self.build_for(dockerfile, args, None)
    }

    /// [`Setup::build`] for a target platform (`--platform`).
    fn build_for(
        &self,
        dockerfile: &str,
        args: &[(&str, &str)],
        platform: Option<&str>,
    ) -> Result<BuildOutcome, BuildError> {
        let options = BuildOptions {
            dockerfile_name: "Dockerfile".to_owned(),
            dockerfile: dockerfile.to_owned(),
            context: BuildContext::open(&self.context, &[]).unwrap(),
            build_args: args
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            target: None,
            no_cache: false,
            no_cache_filter: Vec::new(),
            labels: BTreeMap::new(),
            // No network pool is made (it would need root).
            network: Network::None,
            allow: Entitlements::default(),
            compression: Compression::None,
            source_date_epoch: Some(0),
            tags: Vec::new(),
            target_platform: platform
                .map(|p| kiln_parser::values::Platform::parse(p).unwrap().normalize()),
            platform_member: false,
            stat_cache: None,
            secrets: BTreeMap::new(),
            ssh: BTreeMap::new(),
            fetcher: None,
            pull_always: false,
            explain: false,
            executor: Some(self.fake.clone()),
            cache_import: self.import.clone(),
            inline_cache: false,
            contexts: BTreeMap::new(),
            unstored_image: false,
            layer_recorded: None,
        };
        build(&self.store, &options, &Silent)
    }

    /// The descriptions of the cache's records.
    fn records(&self) -> Vec<String> {
        let mut records: Vec<String> = BuildCache::new(&self.store)
            .scan()
            .unwrap()
            .entries
            .into_iter()
            .map(|entry| entry.record.description)
            .collect();
        records.sort();
        records
    }
}

const THREE_RUNS: &str =
    "FROM scratch\nENV A=1\nRUN one\nARG V\nLABEL x=y\nWORKDIR /\nRUN two\nRUN three\n";

#[test]
fn a_second_build_runs_nothing() {
    let setup = Setup::new();
    setup.fake.writes("one", "/one", "1");
    setup.fake.writes("three", "/dir/three", "3");
    let first = setup.build(THREE_RUNS, &[("V", "a")]).unwrap();
    assert_eq!(first.steps_cached, 0);
    assert_eq!(setup.fake.total_runs(), 3);
    let second = setup.build(THREE_RUNS, &[("V", "a")]).unwrap();
    assert_eq!(setup.fake.total_runs(), 3, "a cached build runs nothing");
    // `WORKDIR /` only sets the config (BuildKit makes no mkdir for it):
    // it is neither run nor cached.
    assert_eq!(second.steps_cached, 3);
    assert_eq!(second.steps_run, 0);
    assert_eq!(second.image_id, first.image_id);
}

#[test]
fn a_changed_build_arg_reruns_the_run_that_uses_it_and_those_after() {
    let setup = Setup::new();
    setup.fake.writes("one", "/one", "1");
    setup.build(THREE_RUNS, &[("V", "a")]).unwrap();
    let outcome = setup.build(THREE_RUNS, &[("V", "b")]).unwrap();
    assert_eq!(setup.fake.runs("one"), 1, "before the ARG: cached");
    assert_eq!(setup.fake.runs("two"), 2);
    assert_eq!(setup.fake.runs("three"), 2);
    assert_eq!(outcome.steps_cached, 1);
    assert!(setup.fake.env("two").contains(&"V=b".to_owned()));
    // Back to the first value: everything is cached again.
    setup.build(THREE_RUNS, &[("V", "a")]).unwrap();
    assert_eq!(setup.fake.total_runs(), 5);
}

#[test]
fn a_stage_shared_by_two_stages_runs_once_and_unneeded_stages_not_at_all() {
    // The target's base chain runs, each RUN once; a stage it does not
    // use never runs. (Two stages needed side by side need COPY --from or
    // RUN --mount from=, which mount in this process: not covered here.)
    let dockerfile = "FROM scratch AS base\nRUN base\nFROM base AS unused\nRUN unused\nFROM base AS middle\nRUN middle\nFROM middle\nRUN last\n";
    let setup = Setup::new();
    setup.fake.writes("base", "/base", "b");
    setup.fake.writes("middle", "/middle", "m");
    setup.build(dockerfile, &[]).unwrap();
    assert_eq!(setup.fake.runs("base"), 1);
    assert_eq!(setup.fake.runs("middle"), 1);
    assert_eq!(setup.fake.runs("last"), 1);
    assert_eq!(setup.fake.runs("unused"), 0);
    // Building the other stage reuses the base.
    let other = "FROM scratch AS base\nRUN base\nFROM base AS unused\nRUN unused\n";
    setup.build(other, &[]).unwrap();
    assert_eq!(setup.fake.runs("base"), 1);
    assert_eq!(setup.fake.runs("unused"), 1);
}

#[test]
fn a_failing_run_stops_the_build_and_records_nothing_for_it() {
    let setup = Setup::new();
    setup.fake.writes("two", "/two", "written before failing");
    setup.fake.exits("two", 3);
    let error = setup.build(THREE_RUNS, &[]).unwrap_err();
    let location = error.location().expect("the failing RUN is located");
    assert_eq!(location.instruction, "RUN two");
    match error.unlocated() {
        BuildError::RunFailed {
            exit_code, output, ..
        } => {
            assert_eq!(*exit_code, 3);
            assert_eq!(output, "ran two");
        }
        other => panic!("expected RunFailed, got {other:?}"),
    }
    assert_eq!(
        setup.fake.runs("three"),
        0,
        "nothing after the failure runs"
    );
    assert_eq!(setup.records(), ["RUN /bin/sh -c one # buildkit"]);
    // Fixed, it runs the failed step and what follows, not the first.
    setup.fake.exits("two", 0);
    setup.build(THREE_RUNS, &[]).unwrap();
    assert_eq!(setup.fake.runs("one"), 1);
    assert_eq!(setup.fake.runs("two"), 2);
    assert_eq!(setup.fake.runs("three"), 1);
}

/// A stage that reruns (its ARG changed) with the same output: what reads
/// that output (`COPY --from`, `RUN --mount from=`) is keyed by its
/// content, so nothing after the stage reruns, as in BuildKit.
const FROM_GEN: &str = "FROM scratch AS gen\nARG V\nRUN gen\n\
FROM scratch\nWORKDIR /app\nCOPY a.txt .\nCOPY --from=gen /out/f /app/f\nRUN after\n\
RUN --mount=type=bind,from=gen,source=/out,target=/m use\n";

fn from_gen_setup() -> Setup {
    from_gen_setup_with("generated")
}

/// [`from_gen_setup`] with `gen` writing `generated` (large, its layer
/// and `after`'s are blobs of an exported cache, not carried by the
/// records).
fn from_gen_setup_with(generated: &str) -> Setup {
    let setup = Setup::new();
    setup.context_file("a.txt", "context a");
    setup.fake.writes("gen", "/out/f", generated);
    setup.fake.copies("after", "/app/f", "/seen-f");
    setup.fake.copies("after", "/app/a.txt", "/seen-a");
    setup.fake.copies("use", "/m/f", "/used");
    setup
}

#[test]
fn copy_workdir_and_mounts_run_with_the_fake_and_land_where_later_steps_see_them() {
    let setup = from_gen_setup();
    let first = setup.build(FROM_GEN, &[("V", "1")]).unwrap();
    assert_eq!(first.steps_cached, 0);
    assert_eq!(setup.fake.read("after", "/app/f"), "generated");
    assert_eq!(setup.fake.read("after", "/app/a.txt"), "context a");
    assert_eq!(setup.fake.read("use", "/m/f"), "generated");
    let again = setup.build(FROM_GEN, &[("V", "1")]).unwrap();
    assert_eq!(setup.fake.total_runs(), 3, "a cached build runs nothing");
    // gen's RUN, WORKDIR, two COPY and two RUN.
    assert_eq!(again.steps_cached, 6);
    assert_eq!(again.image_id, first.image_id);
}

#[test]
fn a_rerun_stage_with_identical_output_keeps_later_steps_cached() {
    let setup = from_gen_setup();
    let first = setup.build(FROM_GEN, &[("V", "1")]).unwrap();
    let second = setup.build(FROM_GEN, &[("V", "2")]).unwrap();
    assert_eq!(setup.fake.runs("gen"), 2, "the ARG reruns the stage");
    assert_eq!(setup.fake.runs("after"), 1, "the same file copied: cached");
    assert_eq!(setup.fake.runs("use"), 1, "the same files mounted: cached");
    assert_eq!(second.image_id, first.image_id);
    // A different output reruns what reads it, and only that.
    setup.fake.writes("gen", "/out/f", "changed");
    setup.build(FROM_GEN, &[("V", "3")]).unwrap();
    assert_eq!(setup.fake.runs("after"), 2);
    assert_eq!(setup.fake.read("after", "/app/f"), "changed");
    assert_eq!(setup.fake.runs("use"), 2);
    assert_eq!(setup.fake.read("use", "/m/f"), "changed");
}

#[test]
fn a_changed_context_file_reruns_its_copy_and_what_follows_only() {
    let setup = from_gen_setup();
    setup.build(FROM_GEN, &[("V", "1")]).unwrap();
    setup.context_file("a.txt", "context b");
    let outcome = setup.build(FROM_GEN, &[("V", "1")]).unwrap();
    assert_eq!(setup.fake.runs("gen"), 1, "another stage: cached");
    assert_eq!(setup.fake.runs("after"), 2);
    assert_eq!(setup.fake.read("after", "/app/a.txt"), "context b");
    // gen's RUN and WORKDIR are cached; COPY a.txt and all after it run.
    assert_eq!(outcome.steps_cached, 2);
}

#[test]
fn stages_read_side_by_side_run_once_each() {
    let dockerfile = "FROM scratch AS base\nRUN base\n\
FROM base AS left\nRUN left\nFROM base AS right\nRUN right\n\
FROM scratch\nCOPY --from=left /l /l\nCOPY --from=right /r /r\n\
RUN --mount=type=bind,from=base,target=/b last\n";
    let setup = Setup::new();
    setup.fake.writes("base", "/base", "b");
    setup.fake.writes("left", "/l", "l");
    setup.fake.writes("right", "/r", "r");
    setup.fake.copies("last", "/l", "/seen-l");
    setup.fake.copies("last", "/r", "/seen-r");
    setup.fake.copies("last", "/b/base", "/seen-b");
    setup.build(dockerfile, &[]).unwrap();
    for command in ["base", "left", "right", "last"] {
        assert_eq!(setup.fake.runs(command), 1, "{command}");
    }
    assert_eq!(setup.fake.read("last", "/b/base"), "b");
    assert_eq!(setup.fake.read("last", "/l"), "l");
    assert_eq!(setup.fake.read("last", "/r"), "r");
}

impl Setup {
    /// Exports the records `outcome` used (`mode`) to a layout directory
    /// beside the store, as `--cache-to type=local` does.
    fn export(&self, outcome: &BuildOutcome, mode: CacheMode) -> std::path::PathBuf {
        let keys = match mode {
            CacheMode::Min => &outcome.cache_keys_min,
            CacheMode::Max => &outcome.cache_keys_max,
        };
        let cache = BuildCache::new(&self.store);
        let records: Vec<_> = keys
            .iter()
            .filter_map(|key| cache.get(key).unwrap())
            .collect();
        let dir = self.dir.path().join("exported");
        crate::cache::share::export(
            &self.store,
            None,
            &records,
            &CacheLocation::Local(dir.clone()),
            (
                &std::collections::BTreeSet::new(),
                &std::sync::Mutex::new(Vec::new()),
            ),
        )
        .unwrap();
        dir
    }

    /// Imports the cache at `dir`, as `--cache-from type=local` does.
    fn import(&mut self, dir: &std::path::Path) {
        let import = CacheImport::load(&[CacheLocation::Local(dir.to_owned())], None);
        assert!(import.warnings().is_empty(), "{:?}", import.warnings());
        self.import = Some(Arc::new(import));
    }

    /// Whether the store holds the blob `digest`.
    fn has_blob(&self, digest: &str) -> bool {
        self.store
            .blobs()
            .contains(&kiln_store::digest::parse_sha256(digest).unwrap())
    }

    /// The layer digest of the record whose description holds `description`.
    fn layer_of(&self, description: &str) -> String {
        BuildCache::new(&self.store)
            .scan()
            .unwrap()
            .entries
            .into_iter()
            .find(|e| e.record.description.contains(description))
            .and_then(|e| e.record.layer)
            .map(|l| l.descriptor.digest)
            .unwrap()
    }
}

#[test]
fn an_exported_cache_answers_every_step_on_an_empty_store_and_fetches_only_the_image_layers() {
    let a = from_gen_setup();
    let first = a.build(FROM_GEN, &[("V", "1")]).unwrap();
    let dir = a.export(&first, CacheMode::Max);
    let gen_layer = a.layer_of("-c gen # buildkit");
    let mut b = from_gen_setup();
    b.import(&dir);
    let second = b.build(FROM_GEN, &[("V", "1")]).unwrap();
    assert_eq!(b.fake.total_runs(), 0, "every step answered by the import");
    assert_eq!(second.steps_cached, first.steps_run);
    assert_eq!(second.image_id, first.image_id);
    // gen's layer is read only through remembered digests: never fetched.
    assert!(!b.has_blob(&gen_layer));
    for layer in &b
        .store
        .resolve(&second.image_id.to_string())
        .unwrap()
        .manifest
        .layers
    {
        assert!(
            b.has_blob(&layer.digest),
            "the image's layer {}",
            layer.digest
        );
    }
    // What was fetched is now in B's own cache: without the import only
    // gen, whose layer B never had, runs again (and writes the same file).
    b.import = None;
    let third = b.build(FROM_GEN, &[("V", "1")]).unwrap();
    assert_eq!(b.fake.runs("gen"), 1);
    assert_eq!(b.fake.total_runs(), 1);
    assert_eq!(third.image_id, first.image_id);
}

#[test]
fn mode_min_leaves_out_the_steps_of_other_stages() {
    let a = from_gen_setup();
    let first = a.build(FROM_GEN, &[("V", "1")]).unwrap();
    let dir = a.export(&first, CacheMode::Min);
    let mut b = from_gen_setup();
    b.import(&dir);
    let second = b.build(FROM_GEN, &[("V", "1")]).unwrap();
    assert_eq!(b.fake.runs("gen"), 1, "the other stage was not exported");
    assert_eq!(b.fake.runs("after"), 0);
    assert_eq!(b.fake.runs("use"), 0);
    assert_eq!(second.image_id, first.image_id);
}

#[test]
fn a_step_whose_import_is_gone_or_changed_runs() {
    let a = from_gen_setup();
    let first = a.build(FROM_GEN, &[("V", "1")]).unwrap();
    let dir = a.export(&first, CacheMode::Max);
    // A changed input misses the import as it would miss a local cache.
    let mut b = from_gen_setup();
    b.import(&dir);
    b.build(FROM_GEN, &[("V", "2")]).unwrap();
    assert_eq!(b.fake.runs("gen"), 1);
    assert_eq!(b.fake.runs("after"), 0, "gen wrote the same file");
}

/// Rewrites the records of the layout at `dir` with `edit`, as a hostile
/// cache would (new config, manifest and index, all consistent).
fn tamper_records(dir: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let blob = |digest: &str| {
        dir.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let write = |bytes: &[u8]| {
        let digest = kiln_store::digest::digest_bytes(bytes);
        std::fs::write(blob(&digest.to_string()), bytes).unwrap();
        (digest.to_string(), bytes.len())
    };
    let read = |path: std::path::PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let mut index = read(dir.join("index.json"));
    let mut manifest = read(blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let mut records = read(blob(manifest["config"]["digest"].as_str().unwrap()));
    edit(&mut records);
    let (digest, size) = write(&serde_json::to_vec(&records).unwrap());
    manifest["config"]["digest"] = digest.into();
    manifest["config"]["size"] = size.into();
    let (digest, size) = write(&serde_json::to_vec(&manifest).unwrap());
    index["manifests"][0]["digest"] = digest.into();
    index["manifests"][0]["size"] = size.into();
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

#[test]
fn a_record_whose_key_is_not_its_operation_is_refused_and_the_step_runs() {
    let a = from_gen_setup();
    let first = a.build(FROM_GEN, &[("V", "1")]).unwrap();
    let dir = a.export(&first, CacheMode::Max);
    // The record of `RUN after` claims another command: its key no longer
    // is its operation's digest.
    tamper_records(&dir, |records| {
        for record in records["records"].as_array_mut().unwrap() {
            if record["description"]
                .as_str()
                .unwrap()
                .ends_with("-c after # buildkit")
            {
                record["inputs"]["argv"][2] = "something else".into();
            }
        }
    });
    let mut b = from_gen_setup();
    let import = CacheImport::load(&[CacheLocation::Local(dir)], None);
    assert_eq!(import.refused(), 1);
    assert!(
        import.warnings()[0].contains("refused: its key is not its operation's"),
        "{:?}",
        import.warnings()
    );
    b.import = Some(Arc::new(import));
    let second = b.build(FROM_GEN, &[("V", "1")]).unwrap();
    assert_eq!(b.fake.runs("after"), 1, "the refused step runs");
    // The next step's key is its operation's: the import still answers it.
    assert_eq!(b.fake.runs("use"), 0);
    assert_eq!(b.fake.runs("gen"), 0);
    assert_eq!(second.image_id, first.image_id);
}

#[test]
fn a_layer_that_does_not_match_its_digest_is_refused_and_its_step_runs() {
    let generated = "generated ".repeat(4000);
    let a = from_gen_setup_with(&generated);
    let first = a.build(FROM_GEN, &[("V", "1")]).unwrap();
    let dir = a.export(&first, CacheMode::Max);
    // The layer `RUN after` made, replaced by other bytes under its name.
    let layer = a.layer_of("-c after # buildkit");
    let path = dir
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let mut b = from_gen_setup_with(&generated);
    b.import(&dir);
    let second = b.build(FROM_GEN, &[("V", "1")]).unwrap();
    assert_eq!(b.fake.runs("after"), 1, "the poisoned layer's step runs");
    assert_eq!(b.fake.runs("gen"), 0);
    assert_eq!(second.image_id, first.image_id);
    // B made that layer itself (the same bytes, times clamped); the
    // poisoned bytes never reached its store.
    let digest = kiln_store::digest::parse_sha256(&layer).unwrap();
    let stored = std::fs::read(b.store.blobs().path(&digest)).unwrap();
    assert_eq!(kiln_store::digest::digest_bytes(&stored), digest);
    assert_eq!(b.import.as_ref().unwrap().refused(), 1);
}

#[test]
fn the_target_platform_reaches_run_and_the_config_and_keys_the_runs_apart() {
    let dockerfile = "FROM scratch\nARG TARGETARCH\nARG TARGETVARIANT\nARG TARGETPLATFORM\nARG BUILDARCH\nRUN show\n";
    let setup = Setup::new();
    let arm = setup
        .build_for(dockerfile, &[], Some("linux/arm/v7"))
        .unwrap();
    let env = setup.fake.env("show");
    for expected in [
        "TARGETARCH=arm",
        "TARGETVARIANT=v7",
        "TARGETPLATFORM=linux/arm/v7",
    ] {
        assert!(env.contains(&expected.to_owned()), "{expected} in {env:?}");
    }
    let host = kiln_parser::values::Platform::host();
    assert!(env.contains(&format!("BUILDARCH={}", host.architecture)));
    let image = setup
        .store
        .image(&kiln_store::digest::parse_sha256(&arm.manifest.digest).unwrap())
        .unwrap();
    assert_eq!(image.config.architecture, "arm");
    assert_eq!(image.config.variant.as_deref(), Some("v7"));
    // Another platform has its own cache keys: the RUN runs again.
    let arm64 = setup
        .build_for(dockerfile, &[], Some("linux/arm64"))
        .unwrap();
    assert_eq!(setup.fake.runs("show"), 2);
    assert!(
        setup
            .fake
            .env("show")
            .contains(&"TARGETARCH=arm64".to_owned())
    );
    assert_ne!(arm64.image_id, arm.image_id);
    // Each platform's result is cached on its own.
    setup
        .build_for(dockerfile, &[], Some("linux/arm/v7"))
        .unwrap();
    assert_eq!(setup.fake.runs("show"), 2);
}
