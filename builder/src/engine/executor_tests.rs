//! The engine's scheduling and cache with a fake executor: which RUN steps
//! run and which the cache answers, without root.
//!
//! The fake covers RUN (and the config-only steps around it) on `FROM
//! scratch`: the runtime mounts a RUN's overlay itself, so with the fake
//! nothing is mounted and the engine only packs and commits the upper
//! directory the fake wrote, which needs no privilege. COPY, ADD, WORKDIR
//! other than `/` and `RUN --mount` mount overlays or binds in this process
//! and need root: they are covered by the end-to-end tests only.

use std::collections::BTreeMap;
use std::sync::Arc;

use kiln_runtime::Network;
use kiln_store::Store;
use kiln_store::layer::Compression;

use super::{BuildOptions, BuildOutcome, Entitlements, build};
use crate::cache::BuildCache;
use crate::context::BuildContext;
use crate::error::BuildError;
use crate::executor::fake::FakeExecutor;
use crate::progress::Silent;

/// A store and an empty build context in a temporary directory.
struct Setup {
    _dir: tempfile::TempDir,
    store: Store,
    context: std::path::PathBuf,
    fake: Arc<FakeExecutor>,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let context = dir.path().join("context");
        std::fs::create_dir(&context).unwrap();
        Self {
            _dir: dir,
            store,
            context,
            fake: Arc::new(FakeExecutor::default()),
        }
    }

    fn build(&self, dockerfile: &str, args: &[(&str, &str)]) -> Result<BuildOutcome, BuildError> {
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
            stat_cache: None,
            secrets: BTreeMap::new(),
            fetcher: None,
            pull_always: false,
            explain: false,
            executor: Some(self.fake.clone()),
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
    // `WORKDIR /` makes no layer and has no record: it is never cached.
    assert_eq!(second.steps_cached, 3);
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
