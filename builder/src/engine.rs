//! The build engine: runs a plan's stages (independent stages in parallel
//! on a rayon pool, steps in order within a stage), answers steps from the
//! build cache, and commits the target stage as an image.
//!
//! Each stage carries its filesystem as a list of layer snapshots and its
//! image config. RUN runs through kiln-runtime over an overlay of the
//! snapshots with a fresh upper directory; COPY, ADD and WORKDIR mount the
//! same overlay in this process (in its private mount namespace) and write
//! into it. Either way the upper directory, once the step is done, is packed
//! into the layer blob and then renamed into place as the snapshot of the
//! stage's chain (it is that layer applied on the stage's snapshots), so a
//! new layer is never unpacked again.

mod config;
mod files;
pub(crate) mod reuse;
mod run;
mod run_mounts;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use kiln_parser::plan::{
    self, Base, BaseConfig, BaseImages, NetworkMode, Plan, PlanOptions, PlannedStage, Step,
    StepKind,
};
use kiln_parser::values::Platform;
use kiln_store::layer::{Compression, PackOptions};
use kiln_store::spec::{ContainerConfig, Descriptor, History, ImageConfig, RootFs};
use kiln_store::{Digest, ImageReference, Snapshot, Store};

use crate::cache::{BuildCache, CacheRecord, CachedLayer, StepIdentity};
use crate::context::{BuildContext, SourceFile, StatCache};
use crate::error::{BuildError, StepLocation};
use crate::explain::{self, BaseKind};
use crate::ops::Op;
use crate::progress::{Event, PhaseTimer, Reporter};

pub use config::{apply_to_config, history_for};

/// The `comment` BuildKit writes on every history entry.
pub const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// The hostname RUN steps see, as under BuildKit.
pub const BUILD_HOSTNAME: &str = "buildkitsandbox";

/// At most this many isolated networks are made before a build's RUN
/// steps ask for them.
const PREWARM_MAX: usize = 4;

static CANCELLED: AtomicBool = AtomicBool::new(false);

/// Asks running builds to stop at the next step (for SIGINT/SIGTERM
/// handlers: only an atomic store).
pub fn cancel() {
    CANCELLED.store(true, Ordering::SeqCst);
}

/// Whether [`cancel`] was called.
pub fn is_cancelled() -> bool {
    CANCELLED.load(Ordering::SeqCst)
}

/// What to build and how.
#[derive(Debug, Clone)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "each is one `kiln build` flag, independent of the others"
)]
pub struct BuildOptions {
    /// The Dockerfile's name for messages (`Dockerfile`, `-`).
    pub dockerfile_name: String,
    /// The Dockerfile's text.
    pub dockerfile: String,
    /// The build context, with its ignore rules.
    pub context: BuildContext,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--no-cache-filter`: stage names (or indexes) not answered from the
    /// cache.
    pub no_cache_filter: Vec<String>,
    /// `--label` values, added to the image config.
    pub labels: BTreeMap<String, String>,
    /// `--network` for RUN steps that do not set their own.
    pub network: kiln_runtime::Network,
    /// `--allow`: what `RUN --network=host` and `RUN --security=insecure`
    /// need.
    pub allow: Entitlements,
    /// Compression of new layers.
    pub compression: Compression,
    /// `SOURCE_DATE_EPOCH`: timestamps in the config and history, and the
    /// clamp for file times in new layers.
    pub source_date_epoch: Option<i64>,
    /// Tags for the image.
    pub tags: Vec<ImageReference>,
    /// `--platform`: the platform of the result (`TARGETPLATFORM`, the
    /// config of `FROM scratch`, the base image picked from a tagged
    /// index); `None`: this machine's.
    pub target_platform: Option<Platform>,
    /// The image is one platform of a multi-platform build: its blobs go
    /// to the store, but index.json does not list it (the caller tags the
    /// index that holds it), so it shows as no dangling `<none>` image.
    pub platform_member: bool,
    /// Where the context's stat cache lives between builds (`None`: no
    /// persistent stat cache).
    pub stat_cache: Option<PathBuf>,
    /// Secrets for `RUN --mount=type=secret`, by id (`--secret`): never in
    /// a cache key, a layer or the image config.
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// SSH agents for `RUN --mount=type=ssh`, by id (`--ssh`): the socket
    /// of the agent each mount's own socket relays to. Never in a cache
    /// key, a layer or the image.
    pub ssh: BTreeMap<String, PathBuf>,
    /// Fetches base images the store lacks (from a registry); `None`: a
    /// missing base image is an error.
    pub fetcher: Option<Arc<dyn BaseImageFetcher>>,
    /// `--pull`: ask the fetcher for every base image, present or not.
    pub pull_always: bool,
    /// `--explain`: report why each step that ran missed the cache.
    pub explain: bool,
    /// What runs RUN steps' processes; `None`: kiln-runtime's containers
    /// ([`crate::RuntimeExecutor`]).
    pub executor: Option<Arc<dyn crate::Executor>>,
    /// Records read from `--cache-from`: a step the local cache misses
    /// is looked up there, and its layer fetched only when needed.
    pub cache_import: Option<Arc<crate::cache::share::CacheImport>>,
    /// `--cache-to type=inline`: the image's config carries the records
    /// of its steps ([`crate::cache::share::INLINE_KEY`]).
    pub inline_cache: bool,
    /// `--build-context` values, by name as [`plan::context_name`] gives it.
    pub contexts: BTreeMap<String, NamedContextInput>,
    /// The image goes only to a registry (`-o type=registry,store=false`):
    /// it is written but not added to the store, and layers an imported
    /// cache holds stay where they are (the push mounts them from there).
    pub unstored_image: bool,
    /// Called with each cache record of a layer this build made, as soon
    /// as it is recorded, so that `--cache-to` can send the layer while
    /// the build goes on.
    pub layer_recorded: Option<Arc<dyn crate::cache::share::LayerRecorded>>,
}

/// A `--build-context NAME=VALUE` as the CLI resolved it.
#[derive(Debug, Clone)]
pub enum NamedContextInput {
    /// A local directory, opened with its own `.dockerignore`.
    Local(BuildContext),
    /// `docker-image://REF`: the normalised reference, used (and pulled)
    /// as `FROM` uses an image.
    Image(String),
    /// `oci-layout://DIR[:TAG|@DIGEST]`: loaded into the store (untagged)
    /// before planning.
    OciLayout {
        /// The layout directory.
        dir: PathBuf,
        /// Which of its images.
        selector: kiln_store::archive::LayoutSelector,
        /// The value as given, for messages.
        value: String,
    },
}

/// Where a build gets the base images the store lacks (the CLI pulls them
/// from their registry).
pub trait BaseImageFetcher: std::fmt::Debug + Send + Sync {
    /// Puts `reference` (normalised) into `store`, for `platform` when
    /// the build names one (`--platform`, `FROM --platform`; else the
    /// fetcher's own default); the error is the whole message.
    fn fetch(
        &self,
        store: &Store,
        reference: &str,
        platform: Option<&kiln_store::registry::PlatformSpec>,
    ) -> Result<(), String>;
}

/// Privileges a Dockerfile may use only when the command line grants them
/// (`kiln build --allow`), as BuildKit's entitlements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entitlements {
    /// `network.host`: `RUN --network=host`.
    pub network_host: bool,
    /// `security.insecure`: `RUN --security=insecure` (every capability,
    /// no seccomp).
    pub security_insecure: bool,
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildOutcome {
    /// The image ID (config digest).
    pub image_id: Digest,
    /// The manifest written to the store.
    pub manifest: Descriptor,
    /// Steps executed.
    pub steps_run: usize,
    /// Steps answered from the cache.
    pub steps_cached: usize,
    /// The cache keys of the steps that make the final image (its stage
    /// and the stages it is built FROM), for `--cache-to mode=min`.
    pub cache_keys_min: Vec<String>,
    /// The cache keys of every step of every stage, for `mode=max`.
    pub cache_keys_max: Vec<String>,
}

/// One layer of a stage's filesystem.
#[derive(Debug, Clone)]
struct Layer {
    descriptor: Descriptor,
    diff_id: String,
    /// The layer applied on the layers below it; `None` until a step needs
    /// the files (a layer found in an imported cache is fetched and
    /// unpacked only then, see [`Shared::snapshots`]).
    snapshot: Option<Snapshot>,
}

/// A stage's state between steps; also what a finished stage hands to the
/// stages that use it.
#[derive(Debug, Clone)]
struct StageState {
    layers: Vec<Layer>,
    config: ImageConfig,
    /// Cache key of the filesystem so far (chain of step keys).
    key: String,
    /// The environment RUN sees: config env plus ARG values, in order.
    run_env: Vec<(String, String)>,
    /// ARGs declared in the stage (and its base stages), with values, for
    /// RUN history text.
    args: Vec<(String, Option<String>)>,
    /// Whether CMD was set in this stage (ENTRYPOINT then keeps it).
    cmd_set: bool,
}

impl StageState {
    /// Whether every layer has its snapshot.
    fn materialized(&self) -> bool {
        self.layers.iter().all(|l| l.snapshot.is_some())
    }
}

/// Answers the planner's base-image questions from the store, fetching
/// the images it lacks (each once per build).
struct StoreBases<'a> {
    store: &'a Store,
    fetcher: Option<&'a dyn BaseImageFetcher>,
    pull_always: bool,
    fetched: Mutex<HashMap<String, Result<(), String>>>,
    /// Images of `oci-layout://` contexts, already loaded: never pulled.
    local: Vec<String>,
    /// The explicit target platform (`--platform`), which bases are
    /// fetched for.
    platform: Option<kiln_store::registry::PlatformSpec>,
}

impl StoreBases<'_> {
    /// Fetches `reference` if the store lacks it (or always with
    /// `--pull`), once per build.
    fn ensure(&self, reference: &str) -> Result<(), String> {
        self.ensure_for(reference, self.platform.as_ref())
    }

    /// [`StoreBases::ensure`] for a platform: with one, the store must
    /// have that platform's image (a tagged index with it, or an image of
    /// one platform that was not pulled through an index: a local base is
    /// used as it is, with BuildKit's warning when its platform differs).
    fn ensure_for(
        &self,
        reference: &str,
        platform: Option<&kiln_store::registry::PlatformSpec>,
    ) -> Result<(), String> {
        let Some(fetcher) = self.fetcher else {
            return Ok(());
        };
        if self.local.iter().any(|r| r == reference) {
            return Ok(());
        }
        let key = match platform {
            Some(p) => format!("{reference} {p}"),
            None => reference.to_owned(),
        };
        let mut done = self
            .fetched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(result) = done.get(&key) {
            return result.clone();
        }
        let missing = match platform {
            None => matches!(
                self.store.resolve(reference),
                Err(kiln_store::StoreError::ImageNotFound(_))
            ),
            Some(wanted) => match self.store.resolve_platform(reference, Some(wanted)) {
                Err(
                    kiln_store::StoreError::ImageNotFound(_)
                    | kiln_store::StoreError::NoMatchingPlatform { .. },
                ) => true,
                Ok(image) => {
                    image.index.is_none()
                        && !image.repo_digests.is_empty()
                        && (image.config.os != wanted.os
                            || image.config.architecture != wanted.architecture)
                }
                Err(_) => false,
            },
        };
        let result = if missing || self.pull_always {
            fetcher.fetch(self.store, reference, platform)
        } else {
            Ok(())
        };
        done.insert(key, result.clone());
        result
    }
}

impl BaseImages for StoreBases<'_> {
    fn config(&self, reference: &str) -> Option<BaseConfig> {
        // A failed fetch is reported after planning, with its reference.
        self.ensure(reference).ok()?;
        let image = self.store.resolve(reference).ok()?;
        let config = image.config.config.unwrap_or_default();
        Some(BaseConfig {
            env: config.env.unwrap_or_default(),
            working_dir: config.working_dir.unwrap_or_default(),
            user: config.user.unwrap_or_default(),
            shell: config.shell.unwrap_or_default(),
            on_build: config.on_build.unwrap_or_default(),
        })
    }
}

/// Shared by every stage of one build.
struct Shared<'a> {
    store: &'a Store,
    options: &'a BuildOptions,
    plan: &'a Plan,
    reporter: &'a dyn Reporter,
    cache: BuildCache<'a>,
    stat_cache: Mutex<StatCache>,
    /// Content digests of the context's sources, by what selected them
    /// ([`Shared::context_digest`]): the context is read once per build
    /// however many steps and stages select the same files.
    context_digests: Mutex<HashMap<String, Digest>>,
    /// The stat caches of the named local contexts, by name: kept for
    /// this build only.
    named_stat_caches: HashMap<String, Mutex<StatCache>>,
    /// Temporary directory of this build (removed at the end).
    tmp: PathBuf,
    results: Vec<OnceLock<Arc<StageState>>>,
    next_step: AtomicUsize,
    steps_run: AtomicUsize,
    steps_cached: AtomicUsize,
    failed: AtomicBool,
    /// The first error, reported at the end.
    error: Mutex<Option<BuildError>>,
    /// Timestamp for config and history.
    created: String,
    /// Unique suffix source for temporary names.
    counter: AtomicUsize,
    /// Images used as bases or `--from` sources, resolved once.
    images: Mutex<HashMap<String, Arc<StageState>>>,
    /// What runs RUN steps' processes.
    executor: Arc<dyn crate::Executor>,
    /// The isolated networks of this build's RUN steps.
    networks: kiln_runtime::NetworkPool,
    /// How many networks to make before RUN steps ask: as many as can
    /// run at once.
    prewarm: usize,
    /// Whether they are being made already.
    prewarmed: AtomicBool,
    /// When the build started: the origin of the times in progress events.
    started: Instant,
    /// With `--explain`, the cache's records of earlier builds, by step.
    history: Option<explain::History>,
    /// The cache keys each stage used (hit or recorded), by stage index,
    /// for `--cache-to`.
    used_keys: Mutex<Vec<(usize, String)>>,
}

impl Shared<'_> {
    /// The cache record of step key `key`: the store's, else one imported
    /// with `--cache-from`. An imported record that needs no blob the
    /// store lacks is kept in the store's cache at once; the others when
    /// their layer is fetched ([`Self::ensure_blob`]).
    fn find_record(&self, key: &str) -> Result<Option<CacheRecord>, BuildError> {
        if let Some(record) = self.cache.get(key)? {
            return Ok(Some(record));
        }
        let Some(record) = self.options.cache_import.as_ref().and_then(|i| i.get(key)) else {
            return Ok(None);
        };
        let local = record.layer.as_ref().is_none_or(|l| {
            kiln_store::digest::parse_sha256(&l.descriptor.digest)
                .is_ok_and(|d| self.store.blobs().contains(&d))
        });
        if local {
            self.cache.put(record)?;
        }
        Ok(Some(record.clone()))
    }

    /// Puts the layer blob `descriptor` names into the store if it lacks
    /// it (from the imported cache that lists it), and keeps the imported
    /// records of that layer in the store's cache.
    fn ensure_blob(&self, descriptor: &Descriptor) -> Result<(), BuildError> {
        let digest = kiln_store::digest::parse_sha256(&descriptor.digest)?;
        if self.store.blobs().contains(&digest) {
            return Ok(());
        }
        let Some(import) = &self.options.cache_import else {
            return Err(BuildError::Internal(format!(
                "layer {digest} is not in the store"
            )));
        };
        let _fetching = self.phase(None, None, "fetch cached layer");
        import
            .fetch_layer(self.store, descriptor)
            .map_err(|e| BuildError::PoisonedCacheLayer {
                digest: descriptor.digest.clone(),
                reason: e.to_string(),
            })?;
        for record in import.records_with_layer(&descriptor.digest) {
            self.cache.put(record)?;
        }
        Ok(())
    }

    /// The snapshots of `state`'s layers, base first, made as needed: a
    /// layer found in an imported cache is fetched and unpacked now,
    /// when a step needs the files.
    fn snapshots(&self, state: &StageState) -> Result<Vec<Snapshot>, BuildError> {
        let mut out: Vec<Snapshot> = Vec::with_capacity(state.layers.len());
        for layer in &state.layers {
            let snapshot = if let Some(snapshot) = &layer.snapshot {
                snapshot.clone()
            } else {
                self.ensure_blob(&layer.descriptor)?;
                self.store
                    .snapshot(&out, &layer.descriptor, &layer.diff_id)?
            };
            out.push(snapshot);
        }
        Ok(out)
    }

    /// The overlay lower directories of `state`, base first (see
    /// [`Self::snapshots`]).
    fn lowers(&self, state: &StageState) -> Result<Vec<PathBuf>, BuildError> {
        Ok(self.snapshots(state)?.into_iter().map(|s| s.path).collect())
    }

    /// The content digest of `sources`, which the build context resolved
    /// from `patterns` with `excludes` (and `--parents`): computed once
    /// per build for each such selection (two `COPY . .` in two stages,
    /// a bind mount of the same files), with the persistent stat cache.
    fn context_digest(
        &self,
        context: Option<&str>,
        patterns: &[String],
        excludes: &[String],
        parents: bool,
        sources: &[crate::context::Source],
    ) -> Result<Digest, BuildError> {
        // Each context has its own selections (a name cannot hold `\0`).
        let mut selection = context.map_or_else(String::new, |name| format!("{name}\0"));
        for pattern in patterns {
            selection.push_str(pattern);
            selection.push('\0');
        }
        selection.push('\n');
        for exclude in excludes {
            selection.push_str(exclude);
            selection.push('\0');
        }
        selection.push(if parents { 'p' } else { '-' });
        let lock_error = || BuildError::Internal("context digest lock".to_owned());
        if let Some(digest) = self
            .context_digests
            .lock()
            .map_err(|_| lock_error())?
            .get(&selection)
        {
            return Ok(digest.clone());
        }
        let reading = Instant::now();
        let digest = {
            let mut cache = self
                .stat_cache_of(context)?
                .lock()
                .map_err(|_| lock_error())?;
            self.local_context(context)?
                .digest_sources(sources, &mut cache)?
        };
        log::debug!(
            "context read for {} in {:?}",
            patterns.join(" "),
            reading.elapsed()
        );
        self.context_digests
            .lock()
            .map_err(|_| lock_error())?
            .insert(selection, digest.clone());
        Ok(digest)
    }

    /// The files `sources` of the build context select, with fingerprints
    /// of their content (for `--explain`), read through the stat cache.
    fn context_listing(
        &self,
        context: Option<&str>,
        sources: &[crate::context::Source],
    ) -> Result<Vec<SourceFile>, BuildError> {
        let mut cache = self
            .stat_cache_of(context)?
            .lock()
            .map_err(|_| BuildError::Internal("stat cache lock".to_owned()))?;
        self.local_context(context)?
            .list_sources(sources, &mut cache)
    }

    /// The build context (`None`) or the named local context `name`.
    fn local_context(&self, name: Option<&str>) -> Result<&BuildContext, BuildError> {
        match name {
            None => Ok(&self.options.context),
            Some(name) => match self.options.contexts.get(name) {
                Some(NamedContextInput::Local(context)) => Ok(context),
                _ => Err(BuildError::Internal(format!(
                    "no local build context named {name}"
                ))),
            },
        }
    }

    fn stat_cache_of(&self, context: Option<&str>) -> Result<&Mutex<StatCache>, BuildError> {
        match context {
            None => Ok(&self.stat_cache),
            Some(name) => self.named_stat_caches.get(name).ok_or_else(|| {
                BuildError::Internal(format!("no local build context named {name}"))
            }),
        }
    }

    /// Starts making the networks RUN steps will use (once): when the
    /// build starts with the cache off, else when a step first misses the
    /// cache, so that a build the cache answers makes none (each costs
    /// about 2 ms of a no-op build's time, CPU mostly, even when stopped
    /// at once).
    fn prewarm_networks(&self) {
        if !self.prewarmed.swap(true, Ordering::SeqCst) {
            self.networks.prewarm(self.prewarm);
        }
    }

    /// Times a phase of the build, of a stage or of a step.
    fn phase(
        &self,
        step: Option<usize>,
        stage: Option<usize>,
        name: &'static str,
    ) -> PhaseTimer<'_> {
        PhaseTimer::start(self.reporter, self.started, step, stage, name)
    }
}

/// Builds the image and stores it.
pub fn build(
    store: &Store,
    options: &BuildOptions,
    reporter: &dyn Reporter,
) -> Result<BuildOutcome, BuildError> {
    loop {
        match build_once(store, options, reporter) {
            // A layer of an imported cache that cannot be had whole is
            // refused with every record naming it, and the build starts
            // again: the steps that used it run, what ran is cached.
            Err(BuildError::PoisonedCacheLayer { digest, reason }) => {
                let refused = options
                    .cache_import
                    .as_ref()
                    .is_some_and(|import| import.refuse_layer(&digest));
                if !refused {
                    return Err(BuildError::PoisonedCacheLayer { digest, reason });
                }
                log::warn!("{reason}: records naming layer {digest} refused; building again");
                reporter.report(Event::Warning {
                    message: format!("{reason}: the cache records naming it are refused, building again without them"),
                });
            }
            other => return other,
        }
    }
}

fn build_once(
    store: &Store,
    options: &BuildOptions,
    reporter: &dyn Reporter,
) -> Result<BuildOutcome, BuildError> {
    let started = Instant::now();
    // The stat cache (a few MB for a large context) loads while the
    // Dockerfile is planned and the bases resolved.
    let stat_cache_path = options.stat_cache.clone();
    let loading = std::thread::Builder::new()
        .name("stat-cache".to_owned())
        .spawn(move || load_stat_cache(stat_cache_path.as_deref()));
    let mut contexts = BTreeMap::new();
    let mut local = Vec::new();
    for (name, input) in &options.contexts {
        let context = match input {
            NamedContextInput::Local(_) => plan::NamedContext::Local,
            NamedContextInput::Image(reference) => plan::NamedContext::Image {
                reference: reference.clone(),
            },
            NamedContextInput::OciLayout {
                dir,
                selector,
                value,
            } => {
                // Loaded before planning, which reads the image's config.
                let _loading = PhaseTimer::start(reporter, started, None, None, "load oci layout");
                let image =
                    kiln_store::archive::load_layout(store, dir, selector).map_err(|e| {
                        BuildError::NamedContext {
                            name: name.clone(),
                            value: value.clone(),
                            message: e.to_string(),
                        }
                    })?;
                let reference = image.id.to_string();
                local.push(reference.clone());
                plan::NamedContext::Image { reference }
            }
        };
        contexts.insert(name.clone(), context);
    }
    let bases = StoreBases {
        store,
        fetcher: options.fetcher.as_deref(),
        pull_always: options.pull_always,
        fetched: Mutex::new(HashMap::new()),
        local,
        platform: options.target_platform.as_ref().map(platform_spec),
    };
    let plan_options = PlanOptions {
        build_args: options.build_args.clone(),
        target: options.target.clone(),
        target_platform: options.target_platform.clone(),
        build_platform: None,
        base_images: Some(&bases),
        contexts,
    };
    // Planning asks for the bases' configs, so it includes their pulls.
    let planning = PhaseTimer::start(reporter, started, None, None, "plan");
    let (_, plan) =
        plan::plan_dockerfile(&options.dockerfile_name, &options.dockerfile, &plan_options)
            .map_err(BuildError::Dockerfile)?;
    planning.end();
    for warning in &plan.warnings {
        reporter.report(Event::Warning {
            message: format!(
                "{}:{}: {} ({})",
                options.dockerfile_name, warning.span.line, warning.message, warning.rule
            ),
        });
    }
    if !plan.unused_build_args.is_empty() {
        reporter.report(Event::Warning {
            message: format!(
                "one or more build-args [{}] were not consumed",
                plan.unused_build_args.join(" ")
            ),
        });
    }
    let resolving = PhaseTimer::start(reporter, started, None, None, "resolve base images");
    for reference in &plan.external_images {
        let located = |error: BuildError| match image_location(options, &plan, reference) {
            Some(location) => error.at(location),
            None => error,
        };
        bases.ensure(reference).map_err(|message| {
            located(BuildError::BasePull {
                reference: reference.clone(),
                message,
            })
        })?;
        if let Err(e) = store.resolve(reference) {
            return Err(located(match e {
                kiln_store::StoreError::ImageNotFound(_) => BuildError::BaseImageNotFound {
                    reference: reference.clone(),
                },
                other => other.into(),
            }));
        }
    }
    // A stage of its own platform (`FROM --platform=$BUILDPLATFORM`)
    // needs its base for that platform.
    for stage in plan.stages.iter().filter(|s| s.needed) {
        if let (Base::Image { reference }, Some(platform)) = (&stage.base, &stage.platform) {
            bases
                .ensure_for(reference, Some(&platform_spec(platform)))
                .map_err(|message| {
                    BuildError::BasePull {
                        reference: reference.clone(),
                        message,
                    }
                    .at(step_location(
                        options,
                        &plan,
                        stage,
                        stage.span,
                        &stage.from_code,
                        false,
                    ))
                })?;
        }
    }
    resolving.end();
    let created = match options.source_date_epoch {
        Some(epoch) => jiff::Timestamp::from_second(epoch)
            .map_err(|e| BuildError::SourceDateEpoch(format!("{epoch}: {e}")))?
            .to_string(),
        None => jiff::Timestamp::now().to_string(),
    };
    let tmp = tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(store.tmp_dir())
        .map_err(|e| BuildError::io(store.tmp_dir(), e))?;
    let stat_cache = match loading {
        Ok(handle) => handle.join().unwrap_or_default(),
        Err(_) => load_stat_cache(options.stat_cache.as_deref()),
    };
    let shared = Shared {
        store,
        options,
        plan: &plan,
        reporter,
        cache: BuildCache::new(store),
        stat_cache: Mutex::new(stat_cache),
        context_digests: Mutex::new(HashMap::new()),
        named_stat_caches: options
            .contexts
            .iter()
            .filter(|(_, c)| matches!(c, NamedContextInput::Local(_)))
            .map(|(name, _)| (name.clone(), Mutex::new(StatCache::new())))
            .collect(),
        tmp: tmp.path().to_owned(),
        results: plan.stages.iter().map(|_| OnceLock::new()).collect(),
        next_step: AtomicUsize::new(1),
        steps_run: AtomicUsize::new(0),
        steps_cached: AtomicUsize::new(0),
        failed: AtomicBool::new(false),
        error: Mutex::new(None),
        created,
        counter: AtomicUsize::new(0),
        images: Mutex::new(HashMap::new()),
        executor: options
            .executor
            .clone()
            .unwrap_or_else(|| Arc::new(crate::RuntimeExecutor)),
        networks: kiln_runtime::NetworkPool::new(),
        prewarm: concurrent_run_stages(&plan, options.network).min(PREWARM_MAX),
        prewarmed: AtomicBool::new(false),
        started,
        // Read before any step records anything, so that a step is compared
        // with an earlier build, never with this one.
        history: if options.explain {
            Some(explain::History::new(
                BuildCache::new(store).scan()?.entries,
            ))
        } else {
            None
        },
        used_keys: Mutex::new(Vec::new()),
    };
    // Every step will run: the first RUN steps' networks are made now.
    if options.no_cache {
        shared.prewarm_networks();
    }
    let ran = run_stages(&shared);
    // No RUN is left: the networks' teardown (their helpers killed, reaped
    // on a thread; the CLI waits for it before it exits) overlaps the
    // commit.
    shared.networks.close();
    ran?;
    if let Some(error) = take_error(&shared) {
        return Err(error);
    }
    let Some(target) = shared.results.get(plan.target).and_then(OnceLock::get) else {
        return Err(BuildError::Internal(format!(
            "target stage {} produced no result",
            plan.target
        )));
    };
    let (cache_keys_min, cache_keys_max) = used_keys(&shared);
    // A shared cache's export can start now, beside the commit.
    if let Some(notify) = &options.layer_recorded {
        notify.steps_done(&cache_keys_min, &cache_keys_max);
    }
    let exporting = shared.phase(None, None, "export image");
    let export_started = Instant::now();
    let (manifest, image_id) = commit(&shared, target)?;
    let export_duration = export_started.elapsed();
    exporting.end();
    let saving = shared.phase(None, None, "save stat cache");
    if let (Some(path), Ok(mut cache)) = (&options.stat_cache, shared.stat_cache.lock()) {
        let before = cache.len();
        cache.prune_unseen();
        // Saving 20,000 entries costs more than the whole no-op rebuild:
        // skip it when nothing was read or dropped.
        if cache.reads() > 0 || cache.len() != before || !path.exists() {
            // A stat cache that cannot be saved only costs time next build.
            if let Some(dir) = path.parent() {
                let _ = fs::create_dir_all(dir);
            }
            let _ = cache.save(&store.tmp_dir(), path);
        } else {
            // Its mtime says when it was last used, for `cache prune
            // --filter until=`.
            let _ = filetime::set_file_mtime(path, filetime::FileTime::now());
        }
    }
    saving.end();
    let steps_run = shared.steps_run.load(Ordering::SeqCst);
    let steps_cached = shared.steps_cached.load(Ordering::SeqCst);
    reporter.report(Event::Exported {
        image_id: image_id.to_string(),
        tags: options.tags.iter().map(ToString::to_string).collect(),
        duration: export_duration,
    });
    reporter.report(Event::Finished {
        steps_run,
        steps_cached,
        duration: started.elapsed(),
    });
    drop(tmp);
    Ok(BuildOutcome {
        image_id,
        manifest,
        steps_run,
        steps_cached,
        cache_keys_min,
        cache_keys_max,
    })
}

/// The cache keys the build used: those of the target's stage and the
/// stages it is built FROM, and all of them; each once, in use order.
fn used_keys(shared: &Shared<'_>) -> (Vec<String>, Vec<String>) {
    let mut chain = vec![shared.plan.target];
    while let Some(Base::Stage { index }) = chain
        .last()
        .and_then(|i| shared.plan.stages.get(*i))
        .map(|s| &s.base)
    {
        if chain.contains(index) {
            break;
        }
        chain.push(*index);
    }
    let used = shared
        .used_keys
        .lock()
        .map(|u| u.clone())
        .unwrap_or_default();
    let mut min = Vec::new();
    let mut max = Vec::new();
    for (stage, key) in used {
        if chain.contains(&stage) && !min.contains(&key) {
            min.push(key.clone());
        }
        if !max.contains(&key) {
            max.push(key);
        }
    }
    (min, max)
}

/// The location of `stage`'s FROM, for the errors of its base.
fn from_location(shared: &Shared<'_>, stage: &PlannedStage) -> StepLocation {
    step_location(
        shared.options,
        shared.plan,
        stage,
        stage.span,
        &stage.from_code,
        false,
    )
}

/// The location of an instruction of `stage` at `span` (its keyword),
/// for the errors it raises.
fn step_location(
    options: &BuildOptions,
    plan: &Plan,
    stage: &PlannedStage,
    span: kiln_parser::Span,
    instruction: &str,
    onbuild: bool,
) -> StepLocation {
    StepLocation {
        stage_index: stage.index,
        stage_name: stage.name.clone(),
        multi_stage: plan.stages.len() > 1,
        onbuild,
        ..StepLocation::new(
            &options.dockerfile_name,
            &options.dockerfile,
            plan.escape,
            span,
            instruction,
        )
    }
}

/// The first instruction of a needed stage that uses image `reference`:
/// a FROM, else a `COPY --from` or `RUN --mount from=`.
fn image_location(options: &BuildOptions, plan: &Plan, reference: &str) -> Option<StepLocation> {
    let needed = || plan.stages.iter().filter(|s| s.needed);
    if let Some(stage) =
        needed().find(|s| matches!(&s.base, Base::Image { reference: r } if r == reference))
    {
        return Some(step_location(
            options,
            plan,
            stage,
            stage.span,
            &stage.from_code,
            false,
        ));
    }
    needed().find_map(|stage| {
        let dependency = stage.dependencies.iter().find(
            |d| matches!(&d.source, plan::Source::Image { reference: r } if r == reference),
        )?;
        let code = stage
            .steps
            .iter()
            .find(|s| s.span == dependency.span && !s.onbuild)
            .map_or(stage.from_code.as_str(), |s| s.code.as_str());
        let mut location = step_location(
            options,
            plan,
            stage,
            dependency.span,
            code,
            dependency.onbuild,
        );
        // The caret goes under the reference itself (`--from=` value).
        if !dependency.onbuild {
            location.span = dependency.span;
        }
        Some(location)
    })
}

/// The saved stat cache at `path`, or an empty one (none saved, or it
/// cannot be read: that only costs reading the files again).
fn load_stat_cache(path: Option<&Path>) -> StatCache {
    path.and_then(|p| StatCache::load(p).ok())
        .unwrap_or_default()
}

fn take_error(shared: &Shared<'_>) -> Option<BuildError> {
    shared.error.lock().ok().and_then(|mut e| e.take())
}

/// Runs the needed stages: each starts once the stages it uses are done.
fn run_stages(shared: &Shared<'_>) -> Result<(), BuildError> {
    let order = &shared.plan.build_order;
    let mut waiting: HashMap<usize, usize> = HashMap::new();
    let mut dependents: HashMap<usize, Vec<usize>> = HashMap::new();
    for &index in order {
        let deps = stage_dependencies(shared.plan, index);
        waiting.insert(index, deps.len());
        for dep in deps {
            dependents.entry(dep).or_default().push(index);
        }
    }
    let waiting = Mutex::new(waiting);
    // RUN steps mostly wait on their process, so every independent stage
    // gets a thread even on a small machine.
    let threads = order.len().clamp(2, 16);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("kiln-build-{i}"))
        .build()
        .map_err(|e| BuildError::Internal(format!("starting build threads: {e}")))?;
    let ready: Vec<usize> = order
        .iter()
        .copied()
        .filter(|i| stage_dependencies(shared.plan, *i).is_empty())
        .collect();
    pool.scope(|scope| {
        for index in ready {
            spawn_stage(scope, shared, index, &waiting, &dependents);
        }
    });
    Ok(())
}

fn spawn_stage<'s>(
    scope: &rayon::Scope<'s>,
    shared: &'s Shared<'_>,
    index: usize,
    waiting: &'s Mutex<HashMap<usize, usize>>,
    dependents: &'s HashMap<usize, Vec<usize>>,
) {
    scope.spawn(move |scope| {
        if shared.failed.load(Ordering::SeqCst) || is_cancelled() {
            return;
        }
        let name = shared
            .plan
            .stages
            .get(index)
            .map_or_else(|| index.to_string(), PlannedStage::display_name);
        shared.reporter.report(Event::StageStarted {
            index,
            name,
            at: shared.started.elapsed(),
        });
        let built = build_stage(shared, index);
        shared.reporter.report(Event::StageFinished {
            index,
            at: shared.started.elapsed(),
        });
        match built {
            Ok(state) => {
                let _ = shared.results.get(index).map(|r| r.set(Arc::new(state)));
            }
            Err(error) => {
                shared.failed.store(true, Ordering::SeqCst);
                if let Ok(mut slot) = shared.error.lock() {
                    slot.get_or_insert(error);
                }
                return;
            }
        }
        let mut now_ready = Vec::new();
        if let Ok(mut waiting) = waiting.lock() {
            for &dependent in dependents.get(&index).map_or(&[][..], Vec::as_slice) {
                if let Some(count) = waiting.get_mut(&dependent) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        now_ready.push(dependent);
                    }
                }
            }
        }
        for dependent in now_ready {
            spawn_stage(scope, shared, dependent, waiting, dependents);
        }
    });
}

/// The stages `index` needs finished before it starts (its base, `COPY
/// --from` and `RUN --mount from=` stages, ONBUILD triggers included), from
/// the plan's stage graph, without duplicates.
fn stage_dependencies(plan: &Plan, index: usize) -> Vec<usize> {
    let mut deps = Vec::new();
    if let Some(stage) = plan.stages.get(index) {
        for dep in &stage.dependencies {
            if let plan::Source::Stage { index } = dep.source
                && !deps.contains(&index)
            {
                deps.push(index);
            }
        }
    }
    deps
}

/// Whether `step` is a RUN on the isolated network (`network`: the build's
/// `--network`, for RUN steps without their own).
fn isolated_run(step: &Step, network: kiln_runtime::Network) -> bool {
    matches!(
        step.kind,
        StepKind::Run {
            network: NetworkMode::Default,
            ..
        }
    ) && network == kiln_runtime::Network::Isolated
}

/// How many of the needed stages with RUN steps on the isolated network
/// can run at once: the largest set of them in which no stage uses another,
/// directly or not. By Dilworth's theorem that is their number minus a
/// maximum matching between each stage and the stages it uses.
fn concurrent_run_stages(plan: &Plan, network: kiln_runtime::Network) -> usize {
    let stages: Vec<usize> = plan
        .build_order
        .iter()
        .copied()
        .filter(|&i| {
            plan.stages
                .get(i)
                .is_some_and(|s| s.steps.iter().any(|step| isolated_run(step, network)))
        })
        .collect();
    // uses[a]: the positions in `stages` of the stages stage a uses.
    let uses: Vec<Vec<usize>> = stages
        .iter()
        .map(|&stage| {
            let mut used = Vec::new();
            let mut next = stage_dependencies(plan, stage);
            while let Some(dep) = next.pop() {
                if !used.contains(&dep) {
                    used.push(dep);
                    next.extend(stage_dependencies(plan, dep));
                }
            }
            (0..stages.len())
                .filter(|&j| stages.get(j).is_some_and(|s| used.contains(s)))
                .collect()
        })
        .collect();
    // Kuhn's augmenting paths.
    let mut matched: Vec<Option<usize>> = vec![None; stages.len()];
    let mut size = 0;
    for stage in 0..stages.len() {
        let mut seen = vec![false; stages.len()];
        if augment(stage, &uses, &mut matched, &mut seen) {
            size += 1;
        }
    }
    stages.len() - size
}

/// Finds an augmenting path from `from` (Kuhn's algorithm): matches it to
/// a stage it uses, moving earlier matches along.
fn augment(
    from: usize,
    uses: &[Vec<usize>],
    matched: &mut [Option<usize>],
    seen: &mut [bool],
) -> bool {
    for &to in uses.get(from).map_or(&[][..], Vec::as_slice) {
        if seen.get(to).copied().unwrap_or(true) {
            continue;
        }
        if let Some(s) = seen.get_mut(to) {
            *s = true;
        }
        let previous = matched.get(to).copied().flatten();
        if previous.is_none_or(|p| augment(p, uses, matched, seen)) {
            if let Some(m) = matched.get_mut(to) {
                *m = Some(from);
            }
            return true;
        }
    }
    false
}

/// A finished stage's state (its dependencies always finish first).
fn stage_result(shared: &Shared<'_>, index: usize) -> Result<Arc<StageState>, BuildError> {
    shared
        .results
        .get(index)
        .and_then(OnceLock::get)
        .cloned()
        .ok_or_else(|| BuildError::Internal(format!("stage {index} used before it was built")))
}

/// The state an image starts a stage with: its layers (unpacked as
/// snapshots on first use) and config.
///
/// `platform` (an explicit `--platform` or `FROM --platform`) picks the
/// image from a multi-platform one; `None` takes it as resolved.
fn image_state(
    shared: &Shared<'_>,
    reference: &str,
    platform: Option<&Platform>,
) -> Result<Arc<StageState>, BuildError> {
    let cache_name = match platform {
        Some(p) => format!("{reference} {p}"),
        None => reference.to_owned(),
    };
    if let Some(state) = shared
        .images
        .lock()
        .ok()
        .and_then(|m| m.get(&cache_name).cloned())
    {
        return Ok(state);
    }
    let spec = platform.map(platform_spec);
    let image = shared
        .store
        .resolve_platform(reference, spec.as_ref())
        .map_err(|e| match e {
            kiln_store::StoreError::ImageNotFound(_) => BuildError::BaseImageNotFound {
                reference: reference.to_owned(),
            },
            other => other.into(),
        })?;
    let snapshots = shared
        .store
        .snapshots(&image.manifest.layers, &image.config.rootfs.diff_ids)?;
    let layers = image
        .manifest
        .layers
        .iter()
        .zip(&image.config.rootfs.diff_ids)
        .zip(snapshots)
        .map(|((descriptor, diff_id), snapshot)| Layer {
            descriptor: descriptor.clone(),
            diff_id: diff_id.clone(),
            snapshot: Some(snapshot),
        })
        .collect();
    let mut config = image.config.clone();
    let container = config.config.get_or_insert_with(ContainerConfig::default);
    let env = container.env.get_or_insert_with(Vec::new);
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, format!("PATH={}", plan::DEFAULT_PATH));
    }
    let run_env = env.iter().map(|e| config::split_env(e)).collect();
    let state = Arc::new(StageState {
        layers,
        config,
        // The image ID (its config's digest), as BuildKit keys an image by
        // its config: the same whatever compression or manifest carries it
        // (a pull, a load or an import of the same image on another
        // machine), so shared caches meet.
        key: image.id.to_string(),
        run_env,
        args: Vec::new(),
        cmd_set: false,
    });
    if let Ok(mut images) = shared.images.lock() {
        images.insert(cache_name, state.clone());
    }
    Ok(state)
}

/// The store's form of a platform.
fn platform_spec(platform: &Platform) -> kiln_store::registry::PlatformSpec {
    kiln_store::registry::PlatformSpec {
        os: platform.os.clone(),
        architecture: platform.architecture.clone(),
        variant: (!platform.variant.is_empty()).then(|| platform.variant.clone()),
    }
}

/// BuildKit's `InvalidBaseImagePlatform` warning: a base image of one
/// platform that is not the one the stage is built for (its RUN steps
/// run for the image's platform, and the result says so).
fn warn_base_platform(
    shared: &Shared<'_>,
    stage: &PlannedStage,
    reference: &str,
    config: &ImageConfig,
    expected: &Platform,
) {
    let variant_differs =
        !expected.variant.is_empty() && config.variant.as_deref().unwrap_or("") != expected.variant;
    if config.os == expected.os && config.architecture == expected.architecture && !variant_differs
    {
        return;
    }
    let actual = Platform {
        architecture: config.architecture.clone(),
        os: config.os.clone(),
        os_version: String::new(),
        variant: config.variant.clone().unwrap_or_default(),
    };
    shared.reporter.report(Event::Warning {
        message: format!(
            "{}:{}: Base image {reference} was pulled with platform \"{actual}\", expected \"{expected}\" for current build (InvalidBaseImagePlatform)",
            shared.options.dockerfile_name, stage.span.line
        ),
    });
}

/// The state of `FROM scratch`: no layers, BuildKit's empty image config.
fn scratch_state(platform: &Platform) -> StageState {
    let config = ImageConfig {
        created: None,
        author: None,
        architecture: platform.architecture.clone(),
        variant: (!platform.variant.is_empty()).then(|| platform.variant.clone()),
        os: platform.os.clone(),
        config: Some(ContainerConfig {
            env: Some(vec![format!("PATH={}", plan::DEFAULT_PATH)]),
            working_dir: Some("/".to_owned()),
            ..ContainerConfig::default()
        }),
        rootfs: RootFs {
            kind: "layers".to_owned(),
            diff_ids: Vec::new(),
        },
        history: Vec::new(),
        extra: BTreeMap::new(),
    };
    StageState {
        layers: Vec::new(),
        config,
        key: "scratch".to_owned(),
        run_env: vec![("PATH".to_owned(), plan::DEFAULT_PATH.to_owned())],
        args: Vec::new(),
        cmd_set: false,
    }
}

/// Whether the cache may answer steps of this stage.
fn cache_enabled(shared: &Shared<'_>, stage: &PlannedStage) -> bool {
    if shared.options.no_cache {
        return false;
    }
    let name = stage.name.as_deref().unwrap_or("");
    let index = stage.index.to_string();
    !shared
        .options
        .no_cache_filter
        .iter()
        .any(|f| f.eq_ignore_ascii_case(name) || *f == index)
}

/// Whether a step makes a filesystem change (and so shows in progress).
/// `WORKDIR /` only sets the config: BuildKit makes no mkdir for it.
fn is_filesystem_step(step: &Step) -> bool {
    match &step.kind {
        StepKind::Run { .. } | StepKind::Copy(_) | StepKind::Add(_) => true,
        StepKind::Workdir { path } => path != "/",
        _ => false,
    }
}

#[expect(
    clippy::similar_names,
    reason = "stage (the plan) and state (the result) are the natural names"
)]
fn build_stage(shared: &Shared<'_>, index: usize) -> Result<StageState, BuildError> {
    let plan = shared.plan;
    let stage = plan
        .stages
        .get(index)
        .ok_or_else(|| BuildError::Internal(format!("no stage {index}")))?;
    // A stage without `FROM --platform` is for the target platform.
    let platform = stage
        .platform
        .clone()
        .or_else(|| shared.options.target_platform.clone())
        .unwrap_or_else(Platform::host);
    let mut state = match &stage.base {
        // A local context's files are added once the FROM step is
        // reported (below).
        Base::Scratch | Base::Context { .. } => scratch_state(&platform),
        Base::Stage { index } => {
            let base = stage_result(shared, *index)?;
            let mut inherited = (*base).clone();
            inherited.cmd_set = false;
            inherited
        }
        Base::Image { reference } => {
            let _resolving = shared.phase(None, Some(index), "base image");
            let explicit = stage
                .platform
                .as_ref()
                .or(shared.options.target_platform.as_ref());
            let state = (*image_state(shared, reference, explicit)
                .map_err(|e| e.at(from_location(shared, stage)))?)
            .clone();
            if let Some(expected) = explicit {
                warn_base_platform(shared, stage, reference, &state.config, expected);
            }
            state
        }
    };
    // ONBUILD triggers of the base run first (the plan puts them at the
    // front of the steps); the new image does not inherit them.
    if stage.steps.iter().any(|s| s.onbuild)
        && let Some(c) = state.config.config.as_mut()
    {
        c.on_build = None;
    }
    // BuildKit counts (and shows) FROM only when it pulls an image: FROM
    // scratch and FROM <stage> are no vertex of their own
    // (dockerfile2llb's `cmdTotal`).
    let from_vertex = matches!(stage.base, Base::Image { .. } | Base::Context { .. });
    let total =
        usize::from(from_vertex) + stage.steps.iter().filter(|s| is_filesystem_step(s)).count();
    // BuildKit calls an unnamed stage `stage-N`, and leaves the name out
    // when the Dockerfile has one stage.
    let display = if plan.stages.len() > 1 {
        stage.display_name()
    } else {
        String::new()
    };
    let use_cache = cache_enabled(shared, stage);
    // The FROM step, as BuildKit shows it.
    let from_id = shared
        .next_step
        .fetch_add(usize::from(from_vertex), Ordering::SeqCst);
    if from_vertex {
        shared.reporter.report(Event::StepStarted {
            id: from_id,
            stage: display.clone(),
            index: 1,
            total,
            name: from_name(stage, plan),
        });
    }
    let stage_id = stage
        .name
        .clone()
        .unwrap_or_else(|| stage.index.to_string());
    let base_kind = match &stage.base {
        Base::Image { .. } => BaseKind::Image,
        Base::Stage { .. } => BaseKind::Stage,
        Base::Scratch | Base::Context { .. } => BaseKind::Scratch,
    };
    if let Some(history) = &shared.history
        && base_kind == BaseKind::Image
        && use_cache
        && let Some(reason) = history.base_changed(&stage_id, &state.key)
    {
        shared.reporter.report(Event::StepExplained {
            id: from_id,
            name: from_name(stage, plan),
            reason,
        });
    }
    let from_started = Instant::now();
    if let Base::Context { name } = &stage.base {
        let ctx = StepContext {
            shared,
            id: from_id,
            stage: index,
            use_cache,
            identity: StepIdentity {
                stage: stage_id.clone(),
                position: 1,
                instruction: stage.from_code.clone(),
            },
            name: from_name(stage, plan),
            previous_ran: false,
            base: base_kind,
        };
        if let Err(error) = run_mounts::context_base(&ctx, name, &mut state) {
            let error = error.at(from_location(shared, stage));
            shared.reporter.report(Event::StepFailed {
                id: from_id,
                error: error.to_string(),
            });
            return Err(error);
        }
    }
    if from_vertex {
        shared.reporter.report(Event::StepTimed {
            id: from_id,
            stage: index,
            start: from_started.saturating_duration_since(shared.started),
            duration: from_started.elapsed(),
        });
        shared.reporter.report(Event::StepDone {
            id: from_id,
            duration: from_started.elapsed(),
        });
    }
    // `position` identifies the step for its cache record (FROM is 1
    // whatever its kind); the progress index counts BuildKit's vertices.
    let mut position = 1;
    let skipped_from = usize::from(!from_vertex);
    let mut previous_ran = false;
    for step in &stage.steps {
        if shared.failed.load(Ordering::SeqCst) {
            return Err(BuildError::Cancelled);
        }
        if is_cancelled() {
            return Err(BuildError::Cancelled);
        }
        if !is_filesystem_step(step) {
            config::apply_metadata(&mut state, step, &shared.created);
            continue;
        }
        position += 1;
        let id = shared.next_step.fetch_add(1, Ordering::SeqCst);
        shared.reporter.report(Event::StepStarted {
            id,
            stage: display.clone(),
            index: position - skipped_from,
            total,
            name: step_name(step, plan.escape, &state),
        });
        let started = Instant::now();
        let ctx = StepContext {
            shared,
            id,
            stage: index,
            use_cache,
            identity: StepIdentity {
                stage: stage_id.clone(),
                position,
                instruction: step.code.clone(),
            },
            name: step_name(step, plan.escape, &state),
            previous_ran,
            base: base_kind,
        };

        let result = match &step.kind {
            StepKind::Run { .. } => run::run_step(&ctx, &mut state, step),
            StepKind::Copy(fc) | StepKind::Add(fc) => files::copy_step(&ctx, &mut state, step, fc),
            StepKind::Workdir { path } => files::workdir_step(&ctx, &mut state, path),
            _ => Ok(false),
        };
        shared.reporter.report(Event::StepTimed {
            id,
            stage: index,
            start: started.saturating_duration_since(shared.started),
            duration: started.elapsed(),
        });
        match result {
            Ok(cached) => {
                previous_ran = !cached;
                if cached {
                    shared.steps_cached.fetch_add(1, Ordering::SeqCst);
                    shared.reporter.report(Event::StepCached { id });
                } else {
                    shared.steps_run.fetch_add(1, Ordering::SeqCst);
                    shared.reporter.report(Event::StepDone {
                        id,
                        duration: started.elapsed(),
                    });
                }
            }
            Err(error) => {
                let error = error.at(step_location(
                    shared.options,
                    plan,
                    stage,
                    step.span,
                    &step.code,
                    step.onbuild,
                ));
                shared.reporter.report(Event::StepFailed {
                    id,
                    error: error.to_string(),
                });
                return Err(error);
            }
        }
    }
    Ok(state)
}

/// What a step is called in progress output: BuildKit's name for it, with
/// the variables the step runs with expanded, after `ONBUILD ` for a
/// trigger of the base, as BuildKit's `prefixCommand` shows it.
fn step_name(step: &Step, escape: char, state: &StageState) -> String {
    let name = step.name(escape, state.run_env.as_slice());
    if step.onbuild {
        format!("ONBUILD {name}")
    } else {
        name
    }
}

fn from_name(stage: &PlannedStage, plan: &Plan) -> String {
    match &stage.base {
        Base::Scratch => "FROM scratch".to_owned(),
        Base::Image { reference } => format!("FROM {reference}"),
        Base::Context { name } => format!("[context {name}] load from client"),
        Base::Stage { index } => format!(
            "FROM {}",
            plan.stages
                .get(*index)
                .map_or_else(|| index.to_string(), PlannedStage::display_name)
        ),
    }
}

/// What step implementations get besides the state.
pub(crate) struct StepContext<'a, 'b> {
    shared: &'a Shared<'b>,
    id: usize,
    /// The index of the step's stage.
    stage: usize,
    use_cache: bool,
    /// Which step this is, for its cache record and `--explain`.
    identity: StepIdentity,
    /// Its name in progress output.
    name: String,
    /// Whether the step before it in the stage ran in this build.
    previous_ran: bool,
    /// What the stage started from.
    base: BaseKind,
}

impl StepContext<'_, '_> {
    /// Times a phase of this step.
    fn phase(&self, name: &'static str) -> PhaseTimer<'_> {
        self.shared.phase(Some(self.id), None, name)
    }

    /// A fresh directory under the build's temporary directory.
    fn temp_dir(&self, prefix: &str) -> Result<PathBuf, BuildError> {
        let n = self.shared.counter.fetch_add(1, Ordering::SeqCst);
        let path = self.shared.tmp.join(format!("{prefix}{n}"));
        fs::create_dir(&path).map_err(|e| BuildError::io(&path, e))?;
        Ok(path)
    }

    /// Looks a step up in the cache.
    /// The step's cache record; a miss starts making the build's
    /// networks (the build has work to do).
    fn lookup(&self, key: &str) -> Result<Option<CacheRecord>, BuildError> {
        let _looking = self.phase("cache lookup");
        let found = if self.use_cache {
            self.shared.find_record(key)?
        } else {
            None
        };
        match &found {
            Some(_) => self.used(key),
            None => self.shared.prewarm_networks(),
        }
        Ok(found)
    }

    /// Notes that this step's stage used the record of `key`.
    fn used(&self, key: &str) {
        if let Ok(mut used) = self.shared.used_keys.lock() {
            used.push((self.stage, key.to_owned()));
        }
    }

    /// The content digest of a COPY --from's sources remembered under
    /// `key` ([`Self::remember_digest`]), unless the cache is off.
    pub(super) fn remembered_digest(&self, key: &str) -> Result<Option<Digest>, BuildError> {
        if !self.use_cache {
            return Ok(None);
        }
        let found = self
            .shared
            .find_record(key)?
            .and_then(|record| record.sources_digest)
            .and_then(|digest| kiln_store::digest::parse_sha256(&digest).ok());
        if found.is_some() {
            self.used(key);
        }
        Ok(found)
    }

    /// Remembers the content digest of a COPY --from's sources under
    /// `key`: a record without a layer, which `kiln cache ls` shows as
    /// `WHAT (sources)` and prune may drop (it is made again).
    pub(super) fn remember_digest(
        &self,
        op: &Op,
        what: &str,
        digest: &Digest,
    ) -> Result<(), BuildError> {
        let key = op.key()?;
        self.used(&key);
        self.shared.cache.put(&CacheRecord {
            version: crate::cache::RECORD_VERSION,
            key,
            description: format!("{what} (sources)"),
            layer: None,
            created: self.shared.created.clone(),
            sources_digest: Some(digest.to_string()),
            // The operation, so that another machine importing the record
            // can check its key.
            inputs: Some(op.to_value()?),
            step: None,
        })
    }

    /// Whether the build explains why steps run (`--explain`).
    fn explaining(&self) -> bool {
        self.shared.history.is_some()
    }

    /// With `--explain`, reports why the step with operation `op` missed
    /// the cache; `files` is the listing of its context sources, for a
    /// COPY.
    fn explain(
        &self,
        state: &StageState,
        op: &Op,
        files: Option<&[SourceFile]>,
    ) -> Result<(), BuildError> {
        let Some(history) = &self.shared.history else {
            return Ok(());
        };
        let now = op.to_value()?;
        let args: Vec<String> = state.args.iter().map(|(name, _)| name.clone()).collect();
        let cache_off = (!self.use_cache).then_some(if self.shared.options.no_cache {
            "--no-cache"
        } else {
            "--no-cache-filter"
        });
        let facts = explain::Facts {
            step: &self.identity,
            cache_off,
            previous_ran: self.previous_ran,
            first: self.identity.position == 2,
            base: self.base,
            args: &args,
        };
        // The previous build's listing, only for a COPY whose sources
        // changed.
        let before = files
            .and_then(|_| history.previous_sources_digest(&self.identity))
            .and_then(|digest| self.shared.cache.source_files(&digest));
        let files = files.map(|now_files| (now_files, before.as_deref()));
        let reason = explain::reason(history, &facts, &now, files);
        self.shared.reporter.report(Event::StepExplained {
            id: self.id,
            name: self.name.clone(),
            reason,
        });
        Ok(())
    }

    /// Applies a cached step's layer to the state.
    fn apply_cached(
        &self,
        state: &mut StageState,
        record: &CacheRecord,
        mut history: History,
    ) -> Result<(), BuildError> {
        let _applying = self.phase("apply cached layer");
        // A cached step keeps the time it first ran, as in BuildKit, so
        // that a fully cached rebuild gives the same image ID.
        if self.shared.options.source_date_epoch.is_none() {
            history.created = Some(record.created.clone());
        }
        match &record.layer {
            Some(layer) => {
                // The snapshot of this stage's chain, not of wherever the
                // record was made (a `--link` layer is reused on other
                // parents): the chain id is computed, never read from the
                // record. A layer the store lacks (from an imported cache)
                // waits, as do layers above one that waits, until a step
                // needs the files.
                let local = state.materialized()
                    && kiln_store::digest::parse_sha256(&layer.descriptor.digest)
                        .is_ok_and(|d| self.shared.store.blobs().contains(&d));
                let snapshot = if local {
                    Some(self.shared.store.snapshot(
                        &self.shared.snapshots(state)?,
                        &layer.descriptor,
                        &layer.diff_id,
                    )?)
                } else {
                    None
                };
                push_layer(
                    state,
                    Layer {
                        descriptor: layer.descriptor.clone(),
                        diff_id: layer.diff_id.clone(),
                        snapshot,
                    },
                    history,
                );
            }
            None => push_empty(state, history),
        }
        state.key.clone_from(&record.key);
        Ok(())
    }

    /// Packs an upper directory into a layer (none when it is empty), moves
    /// it into place as the snapshot of the stage's chain with that layer,
    /// records the step in the cache and applies it to the state.
    ///
    /// The upper directory of a step run on the stage's snapshots *is* the
    /// layer applied on them: what a RUN or COPY wrote through the overlay
    /// is where the layer's entries land when the layer is applied on the
    /// same parents. That holds for `COPY --link` too, whose upper
    /// directory was written over no lower at all: its layer (packed by
    /// `pack_directory`, which lists every directory before what it
    /// holds) has a directory entry for every parent of every entry, no
    /// whiteout, no opaque directory and no hardlink out of the layer, so
    /// applying it on any parents resolves no path through them and copies
    /// nothing up: the result is the upper directory itself, which
    /// `kiln system check` confirms by applying the layer again.
    fn commit_upper(
        &self,
        state: &mut StageState,
        upper: &Path,
        key: &str,
        op: &Op,
        description: &str,
        history: History,
    ) -> Result<(), BuildError> {
        let store = self.shared.store;
        let empty = fs::read_dir(upper)
            .map_err(|e| BuildError::io(upper, e))?
            .next()
            .is_none();
        let packing = Instant::now();
        let layer = if empty {
            None
        } else {
            let packing_phase = self.phase("pack layer");
            let new = store.write_build_layer(
                upper,
                self.shared.options.compression,
                &PackOptions {
                    clamp_mtime: self.shared.options.source_date_epoch,
                    overlay_whiteouts: true,
                    owner_names: None,
                },
            )?;
            packing_phase.end();
            let _committing = self.phase("commit snapshot");
            let parents = self.shared.snapshots(state)?;
            let snapshot = store.commit_snapshot(&parents, upper, &new.descriptor, &new.diff_id)?;
            kiln_store::fault::point("build.snapshot.committed");
            Some((new, snapshot))
        };
        log::debug!("{description}: packed in {:?}", packing.elapsed());
        let record = CacheRecord {
            version: crate::cache::RECORD_VERSION,
            key: key.to_owned(),
            description: description.to_owned(),
            layer: layer.as_ref().map(|(new, snapshot)| CachedLayer {
                descriptor: new.descriptor.clone(),
                diff_id: new.diff_id.to_string(),
                diff_size: new.diff_size,
                chain_id: Some(snapshot.chain_id.to_string()),
            }),
            created: self.shared.created.clone(),
            sources_digest: None,
            inputs: Some(op.to_value()?),
            // A context snapshot for a mount is not the step itself.
            step: (!matches!(op, Op::ContextSnapshot(_))).then(|| self.identity.clone()),
        };
        let recording = self.phase("record cache");
        self.shared.cache.put(&record)?;
        self.used(key);
        recording.end();
        if let (Some(notify), Some(_)) = (&self.shared.options.layer_recorded, &record.layer) {
            notify.layer_recorded(&record);
        }
        match layer {
            Some((new, snapshot)) => push_layer(
                state,
                Layer {
                    descriptor: new.descriptor,
                    diff_id: new.diff_id.to_string(),
                    snapshot: Some(snapshot),
                },
                history,
            ),
            None => push_empty(state, history),
        }
        key.clone_into(&mut state.key);
        Ok(())
    }
}

fn push_layer(state: &mut StageState, layer: Layer, mut history: History) {
    history.empty_layer = false;
    state.config.rootfs.diff_ids.push(layer.diff_id.clone());
    state.config.history.push(history);
    state.layers.push(layer);
}

fn push_empty(state: &mut StageState, mut history: History) {
    history.empty_layer = true;
    state.config.history.push(history);
}

/// BuildKit's `normalizeLayersAndHistory`: entries without a layer of
/// this build (stamped `now`) take the time of the first new layer after
/// them, or of the layer before them, so that metadata steps do not
/// change the image ID of a fully cached rebuild.
fn fill_history_times(history: &mut [History], now: &str) {
    let unset = |h: &History| h.empty_layer && h.created.as_deref() == Some(now);
    let mut created: Option<String> = None;
    let mut seen_unset = false;
    for h in history.iter() {
        if unset(h) {
            seen_unset = true;
        } else if h.created.is_some() {
            created.clone_from(&h.created);
            if seen_unset {
                break;
            }
        }
    }
    let mut seen_unset = false;
    for h in history.iter_mut() {
        if unset(h) {
            seen_unset = true;
            if created.is_some() {
                h.created.clone_from(&created);
            }
        } else if h.created.is_some() && seen_unset {
            created.clone_from(&h.created);
        }
    }
}

/// Writes the target stage's config and manifest and tags the image.
fn commit(shared: &Shared<'_>, target: &StageState) -> Result<(Descriptor, Digest), BuildError> {
    let mut config = target.config.clone();
    if shared.options.source_date_epoch.is_none() {
        fill_history_times(&mut config.history, &shared.created);
    }
    config.created = match shared.options.source_date_epoch {
        None => config.history.last().and_then(|h| h.created.clone()),
        Some(_) => None,
    }
    .or_else(|| Some(shared.created.clone()));
    if !shared.options.labels.is_empty() {
        let c = config.config.get_or_insert_with(ContainerConfig::default);
        let labels = c.labels.get_or_insert_with(BTreeMap::new);
        for (k, v) in &shared.options.labels {
            labels.insert(k.clone(), v.clone());
        }
    }
    normalize_config(&mut config);
    // An image in the store has all its blobs there: fetch those a cache
    // import left where they were.
    if !shared.options.unstored_image {
        for layer in &target.layers {
            shared.ensure_blob(&layer.descriptor)?;
        }
    }
    if shared.options.inline_cache {
        let records = used_keys(shared)
            .0
            .iter()
            .map(|key| shared.cache.get(key))
            .filter_map(Result::transpose)
            .collect::<Result<Vec<_>, _>>()?;
        config.extra.insert(
            crate::cache::share::INLINE_KEY.to_owned(),
            crate::cache::share::inline_document(records)?,
        );
    }
    let layers: Vec<Descriptor> = target.layers.iter().map(|l| l.descriptor.clone()).collect();
    let (manifest, id) = if shared.options.unstored_image || shared.options.platform_member {
        shared.store.write_image(&config, &layers)?
    } else {
        shared
            .store
            .commit_image(&config, &layers, &shared.options.tags)?
    };
    Ok((manifest, id))
}

/// Drops what BuildKit's image config types leave out: empty fields (they
/// are all `omitempty`) and the Docker-daemon fields a base image may carry
/// (`Hostname`, `container_config`, ...), so kiln's config reads as
/// BuildKit's does.
fn normalize_config(config: &mut ImageConfig) {
    // A base image's inline cache is the base's, not this image's.
    for key in [
        "container",
        "container_config",
        "docker_version",
        crate::cache::share::INLINE_KEY,
    ] {
        config.extra.remove(key);
    }
    if let Some(c) = config.config.as_mut() {
        c.extra.clear();
        for field in [&mut c.user, &mut c.working_dir, &mut c.stop_signal] {
            if field.as_deref() == Some("") {
                *field = None;
            }
        }
        for list in [
            &mut c.env,
            &mut c.entrypoint,
            &mut c.cmd,
            &mut c.on_build,
            &mut c.shell,
        ] {
            if list.as_ref().is_some_and(Vec::is_empty) {
                *list = None;
            }
        }
        if c.exposed_ports.as_ref().is_some_and(BTreeMap::is_empty) {
            c.exposed_ports = None;
        }
        if c.volumes.as_ref().is_some_and(BTreeMap::is_empty) {
            c.volumes = None;
        }
        if c.labels.as_ref().is_some_and(BTreeMap::is_empty) {
            c.labels = None;
        }
        if c.args_escaped == Some(false) {
            c.args_escaped = None;
        }
    }
}

#[cfg(test)]
mod executor_tests;
#[cfg(test)]
mod op_tests;

#[cfg(test)]
mod tests {
    use kiln_parser::plan::{PlanOptions, plan_dockerfile};
    use kiln_runtime::Network;

    use super::concurrent_run_stages;

    fn concurrent(dockerfile: &str, network: Network) -> usize {
        let (_, plan) = plan_dockerfile("Dockerfile", dockerfile, &PlanOptions::default()).unwrap();
        concurrent_run_stages(&plan, network)
    }

    #[test]
    fn concurrent_run_stages_counts_stages_that_can_run_at_once() {
        // The `parallel` workload: a base, three stages on it, a final
        // stage copying from them.
        let parallel = "FROM scratch AS base\nRUN a\nFROM base AS s1\nRUN b\nFROM base AS s2\nRUN c\nFROM base AS s3\nRUN d\nFROM base\nCOPY --from=s1 /x /\nCOPY --from=s2 /x /\nCOPY --from=s3 /x /\nRUN e\n";
        assert_eq!(concurrent(parallel, Network::Isolated), 3);
        // Without the isolated network no run needs one.
        assert_eq!(concurrent(parallel, Network::None), 0);
        // One stage: one at a time, however many RUNs.
        assert_eq!(
            concurrent("FROM scratch\nRUN a\nRUN b\nRUN c\n", Network::Isolated),
            1
        );
        // RUNs with a network of their own do not count.
        assert_eq!(
            concurrent(
                "FROM scratch AS a\nRUN --network=none a\nFROM scratch\nRUN --network=host b\n",
                Network::Isolated
            ),
            0
        );
        // A stage without RUN in between: `a` and `c` (on `b`) overlap.
        assert_eq!(
            concurrent(
                "FROM scratch AS a\nRUN a\nFROM scratch AS b\nCOPY x /\nFROM b AS c\nRUN c\nFROM a\nCOPY --from=c /x /\n",
                Network::Isolated
            ),
            2
        );
        // A chain through COPY --from and RUN --mount from=: one at a time.
        assert_eq!(
            concurrent(
                "FROM scratch AS a\nRUN a\nFROM scratch AS b\nCOPY --from=a /x /\nRUN b\nFROM scratch\nRUN --mount=from=b,target=/b c\n",
                Network::Isolated
            ),
            1
        );
        // Stages the target does not need do not count.
        assert_eq!(
            concurrent(
                "FROM scratch AS unused\nRUN a\nFROM scratch AS other\nRUN b\nFROM scratch\nRUN c\n",
                Network::Isolated
            ),
            1
        );
    }
}
