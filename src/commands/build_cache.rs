//! `kiln build --cache-to` and `--cache-from`: their values as buildx
//! takes them, and the export after a build (see
//! `kiln_builder::cache::share` for the format).

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};

use anyhow::{Context as _, bail};
use kiln_builder::BuildOutcome;
use kiln_builder::cache::recipe;
use kiln_builder::cache::share::{CacheImport, CacheLocation, CacheMode};
use kiln_builder::cache::{BuildCache, CacheRecord, CachedLayer};
use kiln_store::Store;
use kiln_store::layer::Compression;
use kiln_store::registry::Client;

use super::parse_reference;

/// One `--cache-to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheTo {
    /// Where; `None`: `type=inline`, in the image's config.
    pub location: Option<CacheLocation>,
    pub mode: CacheMode,
    /// Compression of the layers written (those stored uncompressed are
    /// compressed on the way; compressed ones are written as they are).
    pub compression: Compression,
    /// `ignore-error=true`: a failed export is a warning, not a failure.
    pub ignore_error: bool,
}

/// `KEY=VALUE` fields of a buildx CSV value; a value without `=` is a
/// registry reference, as buildx reads `--cache-from user/app:cache`.
fn fields<'a>(flag: &str, spec: &'a str) -> anyhow::Result<Vec<(&'a str, &'a str)>> {
    if !spec.contains('=') {
        return Ok(vec![("type", "registry"), ("ref", spec.trim())]);
    }
    spec.split(',')
        .map(|field| {
            field
                .split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| {
                    anyhow::anyhow!("invalid {flag} {spec:?}: {field:?} is not KEY=VALUE")
                })
        })
        .collect()
}

/// Parses `--cache-to type=local,dest=DIR[,mode=min|max]`,
/// `type=registry,ref=REF[,mode=][,compression=]` (or a bare `REF`).
pub fn parse_cache_to(spec: &str) -> anyhow::Result<CacheTo> {
    let fields = fields("--cache-to", spec)?;
    let kind = fields.iter().find(|(k, _)| *k == "type").map(|(_, v)| *v);
    match kind {
        Some("local" | "registry" | "inline") => {}
        Some(other) => bail!(
            "invalid --cache-to {spec:?}: unsupported type {other:?} (kiln exports type=local, type=registry or type=inline)"
        ),
        None => bail!("invalid --cache-to {spec:?}: missing type= (local, registry or inline)"),
    }
    let mut dest = None;
    let mut reference = None;
    let mut mode = CacheMode::Min;
    let mut compression = Compression::Zstd;
    let mut ignore_error = false;
    for (key, value) in &fields {
        match (*key, *value) {
            ("type", _) => {}
            ("dest", v) if kind == Some("local") => dest = Some(PathBuf::from(v)),
            ("ref", v) if kind == Some("registry") => reference = Some(v),
            ("mode", "min") => mode = CacheMode::Min,
            ("mode", "max") => mode = CacheMode::Max,
            ("mode", other) => {
                bail!("invalid --cache-to {spec:?}: mode={other} (expected min or max)")
            }
            ("compression", "uncompressed") => compression = Compression::None,
            ("compression", "gzip") => compression = Compression::Gzip,
            ("compression", "zstd") => compression = Compression::Zstd,
            ("compression", other) => bail!(
                "invalid --cache-to {spec:?}: compression={other} (expected uncompressed, gzip or zstd)"
            ),
            ("ignore-error", "true") => ignore_error = true,
            ("ignore-error", "false") => ignore_error = false,
            (other, value) => bail!("invalid --cache-to {spec:?}: unknown {other}={value}"),
        }
    }
    let location = match kind {
        // As BuildKit: an inline cache holds the final image's steps only.
        // Its layers are the image's own, compressed as the image is.
        Some("inline") if fields.iter().any(|(k, _)| *k == "compression") => bail!(
            "invalid --cache-to {spec:?}: type=inline takes no compression= (its layers are the image's; use --compression or push's)"
        ),
        Some("inline") if mode == CacheMode::Max => bail!(
            "invalid --cache-to {spec:?}: type=inline takes mode=min only (use type=registry for mode=max)"
        ),
        Some("inline") => None,
        Some("local") => Some(CacheLocation::Local(
            dest.filter(|d| !d.as_os_str().is_empty())
                .ok_or_else(|| anyhow::anyhow!("invalid --cache-to {spec:?}: missing dest=DIR"))?,
        )),
        Some("registry") => Some(CacheLocation::Registry(parse_reference(
            reference
                .ok_or_else(|| anyhow::anyhow!("invalid --cache-to {spec:?}: missing ref=REF"))?,
        )?)),
        _ => unreachable_type(spec)?,
    };
    Ok(CacheTo {
        location,
        mode,
        compression,
        ignore_error,
    })
}

/// Parses `--cache-from type=local,src=DIR`, `type=registry,ref=REF` or a
/// bare `REF`.
pub fn parse_cache_from(spec: &str) -> anyhow::Result<CacheLocation> {
    let fields = fields("--cache-from", spec)?;
    let kind = fields.iter().find(|(k, _)| *k == "type").map(|(_, v)| *v);
    match kind {
        Some("local" | "registry") => {}
        Some(other) => bail!(
            "invalid --cache-from {spec:?}: unsupported type {other:?} (kiln imports type=local or type=registry)"
        ),
        None => bail!("invalid --cache-from {spec:?}: missing type= (local or registry)"),
    }
    let mut src = None;
    let mut reference = None;
    for (key, value) in &fields {
        match (*key, *value) {
            ("type", _) => {}
            ("src", v) if kind == Some("local") => src = Some(PathBuf::from(v)),
            ("ref", v) if kind == Some("registry") => reference = Some(v),
            (other, value) => bail!("invalid --cache-from {spec:?}: unknown {other}={value}"),
        }
    }
    match kind {
        Some("local") => Ok(CacheLocation::Local(
            src.filter(|d| !d.as_os_str().is_empty())
                .ok_or_else(|| anyhow::anyhow!("invalid --cache-from {spec:?}: missing src=DIR"))?,
        )),
        Some("registry") => Ok(CacheLocation::Registry(parse_reference(
            reference
                .ok_or_else(|| anyhow::anyhow!("invalid --cache-from {spec:?}: missing ref=REF"))?,
        )?)),
        _ => unreachable_type(spec),
    }
}

/// The type was checked first; this is never reached.
fn unreachable_type<T>(spec: &str) -> anyhow::Result<T> {
    bail!("invalid cache value {spec:?}: unsupported type")
}

/// Reads the `--cache-from` caches; a registry is reached through
/// `client`.
pub fn import(
    locations: &[CacheLocation],
    client: &Arc<Client>,
    context: &std::path::Path,
) -> Option<Arc<CacheImport>> {
    if locations.is_empty() {
        return None;
    }
    let import =
        CacheImport::load(locations, Some(client.clone())).with_context(context.to_owned());
    // As BuildKit: a cache that cannot be read only costs the build time.
    for warning in import.warnings() {
        eprintln!("WARNING: {warning}");
    }
    if import.refused() > 0 {
        eprintln!(
            "WARNING: {} build cache record(s) refused (their key or layer did not check out); those steps run",
            import.refused()
        );
    }
    log::info!("imported {} build cache records", import.len());
    Some(Arc::new(import))
}

/// The layers of `--cache-to type=local|registry,mode=max` sent while the
/// build goes on: each layer the build records is compressed and written
/// to every such location at once, on worker threads
/// ([`EarlySend::run`]), so that the export after the build sends only
/// the records and what is left; a layer small enough for the records to
/// carry is only compressed. `mode=min` waits for the end, which
/// alone knows the final image's steps.
#[derive(Debug, Default)]
pub struct EarlySend {
    sender: Mutex<Option<mpsc::Sender<CacheRecord>>>,
    /// The build context, for layer recipes ([`exported`]).
    context: Option<PathBuf>,
    /// Whether the export starts once every step has its record, beside
    /// the image's commit (one build; several platforms' builds each end
    /// on their own, and their export waits for all).
    pipelined: bool,
    /// Where the steps' keys go when they are known.
    done: Mutex<Option<mpsc::Sender<StepKeys>>>,
}

/// The keys a build's steps used: those `mode=min` exports, and all.
type StepKeys = (Vec<String>, Vec<String>);

/// What [`EarlySend::run`] returns: the build's result, what was sent to
/// each `--cache-to`, and the export's result for each when it ran
/// beside the build.
pub type EarlyRun<T, E> = (Result<T, E>, Vec<Sent>, Option<Vec<anyhow::Result<()>>>);

/// What [`EarlySend`] sent to one `--cache-to`.
#[derive(Debug, Default)]
pub struct Sent {
    /// A stored layer's digest -> the layer as exported (compressed).
    layers: HashMap<String, CachedLayer>,
    /// The blobs the location has now.
    blobs: BTreeSet<String>,
    /// Uploads opened in its repository while the build went on.
    prestarted: Vec<String>,
}

/// Threads that send layers early.
const EARLY_WORKERS: usize = 2;

impl kiln_builder::cache::share::LayerRecorded for EarlySend {
    fn layer_recorded(&self, record: &CacheRecord) {
        if let Ok(sender) = self.sender.lock()
            && let Some(sender) = &*sender
        {
            // A closed channel only means the build is over.
            let _ = sender.send(record.clone());
        }
    }

    fn steps_done(&self, keys_min: &[String], keys_max: &[String]) {
        if !self.pipelined {
            return;
        }
        // No layer comes after this: the workers end with the queue.
        if let Ok(mut slot) = self.sender.lock() {
            slot.take();
        }
        if let Some(done) = self.done.lock().ok().and_then(|mut d| d.take()) {
            let _ = done.send((keys_min.to_vec(), keys_max.to_vec()));
        }
    }
}

impl EarlySend {
    /// Sends layers early for a build of `context`; `pipelined`: exports
    /// once the steps are done, beside the image's commit.
    pub fn new(context: PathBuf, pipelined: bool) -> Self {
        Self {
            sender: Mutex::default(),
            context: Some(context),
            pipelined,
            done: Mutex::default(),
        }
    }

    /// Whether the build should tell `self` of its layers and steps.
    pub fn told(&self, cache_to: &[CacheTo]) -> bool {
        Self::wanted(cache_to) || (self.pipelined && cache_to.iter().any(|t| t.location.is_some()))
    }

    /// Whether `to` takes layers early.
    fn takes(to: &CacheTo) -> bool {
        to.location.is_some() && to.mode == CacheMode::Max
    }

    /// Whether any of `cache_to` takes layers early.
    pub fn wanted(cache_to: &[CacheTo]) -> bool {
        cache_to.iter().any(Self::takes)
    }

    /// Runs `build` while worker threads send each layer it records to
    /// the `cache_to` locations that take them; returns its result and,
    /// per `cache_to` entry, what was sent. A layer that fails to go
    /// early is only logged: the export after the build sends it again
    /// and reports the error. A failed build sends nothing more (a layer
    /// being sent is finished).
    pub fn run<T, E>(
        &self,
        (store, client, import): (&Store, &Client, Option<&CacheImport>),
        cache_to: &[CacheTo],
        build: impl FnOnce() -> Result<T, E>,
    ) -> EarlyRun<T, E> {
        let failed = std::sync::atomic::AtomicBool::new(false);
        let mut build_ended = std::time::Instant::now();
        let (sender, receiver) = mpsc::channel::<CacheRecord>();
        if let Ok(mut slot) = self.sender.lock() {
            *slot = Some(sender);
        }
        let (done, keys) = mpsc::channel::<StepKeys>();
        if let Ok(mut slot) = self.done.lock() {
            *slot = Some(done);
        }
        let receiver = Mutex::new(receiver);
        let sent: Vec<Mutex<Sent>> = cache_to.iter().map(|_| Mutex::default()).collect();
        let (result, exported) = std::thread::scope(|scope| {
            let mut helpers = Vec::new();
            // The registries' probes, connections and tokens, ready before
            // the export needs them.
            for (to, sent) in cache_to.iter().zip(&sent) {
                if let Some(CacheLocation::Registry(reference)) = &to.location {
                    helpers.push(scope.spawn(move || {
                        match kiln_store::registry::artifact::prepare_push(client, reference) {
                            Ok(location) => sent
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .prestarted
                                .push(location),
                            Err(e) => {
                                log::debug!("cache export: readying {reference} failed: {e}");
                            }
                        }
                    }));
                }
            }
            for _ in 0..EARLY_WORKERS {
                helpers.push(scope.spawn(|| {
                    loop {
                        let next = match receiver.lock() {
                            Ok(receiver) => receiver.recv(),
                            Err(_) => break,
                        };
                        let Ok(record) = next else { break };
                        if failed.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        for (to, sent) in cache_to.iter().zip(&sent) {
                            if Self::takes(to)
                                && let Err(e) = send_layer(
                                    store,
                                    client,
                                    &record,
                                    to,
                                    self.context.as_deref(),
                                    sent,
                                )
                            {
                                log::debug!("cache export: sending a layer early failed: {e:#}");
                            }
                        }
                    }
                }));
            }
            // The export, once every step has its record (steps_done) and
            // the layers sent early are there: beside the image's commit.
            let sent = &sent;
            let export_thread = scope.spawn(move || {
                let (keys_min, keys_max) = keys.recv().ok()?;
                for helper in helpers {
                    let _ = helper.join();
                }
                let started = std::time::Instant::now();
                let results = cache_to
                    .iter()
                    .zip(sent)
                    .map(|(to, sent)| {
                        let sent = sent
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        let keys = match to.mode {
                            CacheMode::Min => &keys_min,
                            CacheMode::Max => &keys_max,
                        };
                        let keys: Vec<&String> = keys.iter().collect();
                        export(
                            (store, client, import),
                            &keys,
                            to,
                            self.context.as_deref(),
                            Some(&sent),
                        )
                    })
                    .collect::<Vec<_>>();
                log::info!(
                    "cache export: written beside the image's commit in {:?}",
                    started.elapsed()
                );
                Some(results)
            });
            let result = build();
            build_ended = std::time::Instant::now();
            if result.is_err() {
                failed.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            // Dropping the senders ends the workers once the queue is
            // empty, and the exporter if the steps never were done.
            if let Ok(mut slot) = self.sender.lock() {
                slot.take();
            }
            if let Ok(mut slot) = self.done.lock() {
                slot.take();
            }
            (result, export_thread.join().ok().flatten())
        });
        log::debug!(
            "cache export: early sends done {:?} after the build",
            build_ended.elapsed()
        );
        let sent = sent
            .into_iter()
            .map(|s| {
                s.into_inner()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
            })
            .collect();
        (result, sent, exported)
    }
}

/// Makes `record`'s layer as `to` exports it (a recipe, or compressed)
/// and writes that blob there (see [`EarlySend`]).
fn send_layer(
    store: &Store,
    client: &Client,
    record: &CacheRecord,
    to: &CacheTo,
    context: Option<&std::path::Path>,
    sent: &Mutex<Sent>,
) -> anyhow::Result<()> {
    let Some(stored) = record.layer.as_ref().map(|l| l.descriptor.digest.clone()) else {
        return Ok(());
    };
    let exported = exported(store, record.clone(), to.compression, context)?;
    let Some(layer) = exported.layer else {
        return Ok(());
    };
    // The blob that goes: the recipe, if the layer has one.
    let blob = match layer.descriptor.extra.get(recipe::RECIPE_KEY) {
        Some(recipe) => serde_json::from_value::<kiln_store::spec::Descriptor>(recipe.clone())?,
        None => layer.descriptor.clone(),
    };
    let digest = kiln_store::digest::parse_sha256(&blob.digest)?;
    if blob.media_type != recipe::RECIPE_TYPE
        && u64::try_from(blob.size).is_ok_and(|n| n <= kiln_builder::cache::share::INLINE_MAX)
    {
        // The records will most likely carry it: only keep it compressed.
        let mut sent = sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        sent.layers.insert(stored, layer);
        return Ok(());
    }
    match &to.location {
        Some(CacheLocation::Local(dir)) => {
            kiln_builder::cache::share::write_layout_blob(store, dir, &digest)
                .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
        }
        Some(CacheLocation::Registry(reference)) => {
            let quiet = |_: kiln_store::registry::PushEvent| {};
            let options = kiln_store::registry::PushOptions {
                compression: Compression::None,
                monolithic_max: kiln_store::registry::push::MONOLITHIC_MAX,
                chunk_size: kiln_store::registry::push::CHUNK_SIZE,
                progress: &quiet,
                uploads: 1,
                unchecked_below: 0,
                prestarted: None,
            };
            let size = store.blobs().size(&digest)?;
            kiln_store::registry::artifact::push_artifact_blobs(
                store,
                client,
                reference,
                &[(digest, size)],
                &options,
            )?;
        }
        None => return Ok(()),
    }
    let what = if blob.digest == layer.descriptor.digest {
        format!("layer {}", blob.digest)
    } else {
        format!(
            "layer {} as its recipe {}",
            layer.descriptor.digest, blob.digest
        )
    };
    log::info!(
        "cache export: {what} sent to {} while the build goes on",
        to.location
            .as_ref()
            .map_or_else(String::new, ToString::to_string)
    );
    let mut sent = sent
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    sent.blobs.insert(blob.digest);
    sent.layers.insert(stored, layer);
    Ok(())
}

/// The keys `to` exports of `outcomes` (one build, or one per platform):
/// platforms share the steps that do not depend on the platform (a
/// `FROM --platform=$BUILDPLATFORM` stage), each key once.
pub fn keys<'a>(outcomes: &[&'a BuildOutcome], to: &CacheTo) -> Vec<&'a String> {
    let mut seen = std::collections::HashSet::new();
    outcomes
        .iter()
        .flat_map(|outcome| match to.mode {
            CacheMode::Min => &outcome.cache_keys_min,
            CacheMode::Max => &outcome.cache_keys_max,
        })
        .filter(|key| seen.insert(key.as_str()))
        .collect()
}

/// Writes the records of `keys` to `to`: each from the store's cache,
/// else from the import (its layer fetched now); layers compressed as
/// asked, or as [`EarlySend`] sent them (`sent`).
pub fn export(
    (store, client, import): (&Store, &Client, Option<&CacheImport>),
    keys: &[&String],
    to: &CacheTo,
    context: Option<&std::path::Path>,
    sent: Option<&Sent>,
) -> anyhow::Result<()> {
    // An inline cache went into the image's config during the build.
    let Some(location) = &to.location else {
        return Ok(());
    };
    let started = std::time::Instant::now();
    let cache = BuildCache::new(store);
    let mut records = Vec::with_capacity(keys.len());
    for key in keys {
        let record = match cache.get(key)? {
            Some(record) => record,
            None => match import.and_then(|i| i.get(key)) {
                Some(record) => {
                    if let (Some(layer), Some(import)) = (&record.layer, import) {
                        import.fetch_layer(store, &layer.descriptor)?;
                    }
                    record.clone()
                }
                None => continue,
            },
        };
        let early = record
            .layer
            .as_ref()
            .and_then(|l| sent.and_then(|s| s.layers.get(&l.descriptor.digest)));
        records.push(match early {
            Some(layer) => CacheRecord {
                layer: Some(layer.clone()),
                ..record
            },
            None => exported(store, record, to.compression, context)?,
        });
    }
    log::debug!(
        "cache export: {} records ready in {:?}",
        records.len(),
        started.elapsed()
    );
    let none = BTreeSet::new();
    let sent_blobs = sent.map_or(&none, |s| &s.blobs);
    let prestarted = Mutex::new(sent.map_or_else(Vec::new, |s| s.prestarted.clone()));
    kiln_builder::cache::share::export(
        store,
        Some(client),
        &records,
        location,
        (sent_blobs, &prestarted),
    )
    .with_context(|| format!("exporting the build cache to {location}"))?;
    log::debug!("cache export: written in {:?}", started.elapsed());
    Ok(())
}

/// `record` with its layer as an export carries it: a recipe
/// ([`recipe`]) for a `COPY` of a directory of `context`, else compressed.
fn exported(
    store: &Store,
    record: CacheRecord,
    compression: Compression,
    context: Option<&std::path::Path>,
) -> anyhow::Result<CacheRecord> {
    if let Some(context) = context
        && let Some(with) = with_recipe(store, &record, context)?
    {
        return Ok(with);
    }
    compressed(store, record, compression)
}

/// `record` with a recipe for its layer, if its step copied a directory
/// of `context` into a layer larger than the records would carry.
fn with_recipe(
    store: &Store,
    record: &CacheRecord,
    context: &std::path::Path,
) -> anyhow::Result<Option<CacheRecord>> {
    let Some(layer) = &record.layer else {
        return Ok(None);
    };
    let stored_plain =
        kiln_store::layer::from_media_type(&layer.descriptor.media_type) == Some(Compression::None);
    if !stored_plain
        || layer.descriptor.digest != layer.diff_id
        || u64::try_from(layer.descriptor.size)
            .is_ok_and(|n| n <= kiln_builder::cache::share::INLINE_MAX)
    {
        return Ok(None);
    }
    let Some(Ok(kiln_builder::ops::Op::Copy(op))) = record
        .inputs
        .as_ref()
        .map(|inputs| serde_json::from_value::<kiln_builder::ops::Op>(inputs.clone()))
    else {
        return Ok(None);
    };
    let Some((prefix, source)) = recipe::mapping(&op) else {
        return Ok(None);
    };
    // A directory: a file source lands under its own name, which the
    // mapping does not cover.
    let root = kiln_rootfs::Root::open(context)
        .with_context(|| format!("opening the build context {}", context.display()))?;
    let is_dir = root
        .open_at(
            if source.is_empty() {
                "."
            } else {
                source.as_str()
            },
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY,
        )
        .is_ok();
    if !is_dir {
        return Ok(None);
    }
    let digest = kiln_store::digest::parse_sha256(&layer.descriptor.digest)?;
    let Some(bytes) =
        recipe::make(store, &digest, (&prefix, &source)).map_err(anyhow::Error::msg)?
    else {
        return Ok(None);
    };
    let written = store.blobs().write_bytes(&bytes)?;
    let recipe = kiln_store::spec::Descriptor::new(
        recipe::RECIPE_TYPE,
        &written.to_string(),
        bytes.len() as u64,
    );
    let mut layer = layer.clone();
    layer
        .descriptor
        .extra
        .insert(recipe::RECIPE_KEY.to_owned(), serde_json::to_value(recipe)?);
    Ok(Some(CacheRecord {
        layer: Some(layer),
        ..record.clone()
    }))
}

/// `record` with its layer compressed as `compression` says, if it is
/// stored uncompressed.
fn compressed(
    store: &Store,
    mut record: CacheRecord,
    compression: Compression,
) -> anyhow::Result<CacheRecord> {
    let Some(layer) = &record.layer else {
        return Ok(record);
    };
    let stored = kiln_store::layer::from_media_type(&layer.descriptor.media_type);
    if compression == Compression::None || stored != Some(Compression::None) {
        return Ok(record);
    }
    let digest = kiln_store::digest::parse_sha256(&layer.descriptor.digest)?;
    let mut descriptor = layer.descriptor.clone();
    kiln_store::layer::media_type(compression, false).clone_into(&mut descriptor.media_type);
    // A small layer is compressed in memory, its bytes in the descriptor
    // for the records to carry (the export writes a blob of them only if
    // they are not carried).
    if let Some(bytes) = small_layer(store, &digest, layer.descriptor.size, compression)? {
        use base64::Engine as _;
        descriptor.digest = kiln_store::digest::digest_bytes(&bytes).to_string();
        descriptor.size = i64::try_from(bytes.len())?;
        descriptor.extra.insert(
            "data".to_owned(),
            base64::engine::general_purpose::STANDARD
                .encode(&bytes)
                .into(),
        );
    } else {
        let written = store.write_layer(store.blobs().open(&digest)?, compression)?;
        descriptor.digest = written.descriptor.digest;
        descriptor.size = written.descriptor.size;
    }
    record.layer = Some(CachedLayer {
        descriptor,
        ..layer.clone()
    });
    Ok(record)
}

/// The stored (plain) layer `digest` of `size` bytes compressed in
/// memory, if it is small enough for the records to carry it.
fn small_layer(
    store: &Store,
    digest: &kiln_store::Digest,
    size: i64,
    compression: Compression,
) -> anyhow::Result<Option<Vec<u8>>> {
    // A plain tar this small compresses to what the records carry
    // (headers and padding are most of a small layer).
    const SMALL_PLAIN: i64 = 256 << 10;
    if size > SMALL_PLAIN {
        return Ok(None);
    }
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut store.blobs().open(digest)?, &mut plain)
        .with_context(|| format!("reading layer {digest}"))?;
    let bytes = kiln_store::layer::compress_small(&plain, compression)?;
    Ok((bytes.len() as u64 <= kiln_builder::cache::share::INLINE_MAX).then_some(bytes))
}

/// Pushes `image`, which a `store=false` build wrote without adding it
/// to the store: layers an imported cache left in its registry are
/// mounted from there when it is the registry pushed to (nothing passes
/// through kiln), else fetched into the store and uploaded.
pub fn push_unstored(
    store: &Store,
    client: &Client,
    reference: &kiln_store::ImageReference,
    image: &kiln_store::Image,
    import: Option<&CacheImport>,
    compression: Compression,
    mode: crate::progress::ProgressMode,
) -> anyhow::Result<kiln_store::registry::PushedImage> {
    let missing: Vec<&kiln_store::spec::Descriptor> = image
        .manifest
        .layers
        .iter()
        .filter(|layer| {
            kiln_store::digest::parse_sha256(&layer.digest)
                .is_ok_and(|digest| !store.blobs().contains(&digest))
        })
        .collect();
    let sources = import.map_or_else(Vec::new, |import| {
        import.registry_sources(missing.iter().map(|layer| layer.digest.as_str()))
    });
    let fetch = |digest: &kiln_store::Digest| {
        let wanted = digest.to_string();
        let layer = missing
            .iter()
            .find(|layer| layer.digest == wanted)
            .ok_or_else(|| {
                kiln_store::registry::RegistryError::Reference(format!(
                    "blob {digest} is neither in the store nor in an imported build cache"
                ))
            })?;
        let import = import.ok_or_else(|| {
            kiln_store::registry::RegistryError::Reference(format!(
                "blob {digest} is not in the store"
            ))
        })?;
        import.fetch_layer(store, layer).map_err(|e| {
            kiln_store::registry::RegistryError::Reference(format!(
                "cannot fetch cached layer {digest}: {e}"
            ))
        })
    };
    let remote = kiln_store::registry::push::RemoteBlobs {
        sources,
        fetch: &fetch,
    };
    super::push::push_reporting(reference, compression, mode, |options| {
        kiln_store::registry::push::push_unstored(
            store,
            client,
            reference,
            image.clone(),
            &remote,
            options,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_to_values() {
        let to = parse_cache_to("type=local,dest=/tmp/c,mode=max").unwrap();
        assert_eq!(
            to.location,
            Some(CacheLocation::Local(PathBuf::from("/tmp/c")))
        );
        assert_eq!(to.mode, CacheMode::Max);
        assert_eq!(to.compression, Compression::Zstd);
        let to = parse_cache_to(
            "type=registry,ref=localhost:5000/app:cache,compression=gzip,ignore-error=true",
        )
        .unwrap();
        assert_eq!(
            to.location.as_ref().map(ToString::to_string).as_deref(),
            Some("localhost:5000/app:cache")
        );
        assert_eq!(to.mode, CacheMode::Min);
        assert_eq!(to.compression, Compression::Gzip);
        assert!(to.ignore_error);
        let bare = parse_cache_to("localhost:5000/app:cache").unwrap();
        assert_eq!(bare.location, to.location);
        assert_eq!(parse_cache_to("type=inline").unwrap().location, None);
        for (spec, message) in [
            (
                "type=local",
                "invalid --cache-to \"type=local\": missing dest=DIR",
            ),
            (
                "type=registry",
                "invalid --cache-to \"type=registry\": missing ref=REF",
            ),
            (
                "type=local,dest=d,mode=all",
                "invalid --cache-to \"type=local,dest=d,mode=all\": mode=all (expected min or max)",
            ),
            (
                "type=local,dest=d,compression=lz4",
                "invalid --cache-to \"type=local,dest=d,compression=lz4\": compression=lz4 (expected uncompressed, gzip or zstd)",
            ),
            (
                "type=local,dest=d,src=e",
                "invalid --cache-to \"type=local,dest=d,src=e\": unknown src=e",
            ),
            (
                "type=gha",
                "invalid --cache-to \"type=gha\": unsupported type \"gha\" (kiln exports type=local, type=registry or type=inline)",
            ),
            (
                "type=inline,compression=gzip",
                "invalid --cache-to \"type=inline,compression=gzip\": type=inline takes no compression= (its layers are the image's; use --compression or push's)",
            ),
            (
                "type=inline,mode=max",
                "invalid --cache-to \"type=inline,mode=max\": type=inline takes mode=min only (use type=registry for mode=max)",
            ),
            (
                "dest=d",
                "invalid --cache-to \"dest=d\": missing type= (local, registry or inline)",
            ),
            (
                "type=local,dest",
                "invalid --cache-to \"type=local,dest\": \"dest\" is not KEY=VALUE",
            ),
        ] {
            assert_eq!(
                parse_cache_to(spec).unwrap_err().to_string(),
                message,
                "{spec}"
            );
        }
    }

    #[test]
    fn cache_from_values() {
        assert_eq!(
            parse_cache_from("type=local,src=/tmp/c").unwrap(),
            CacheLocation::Local(PathBuf::from("/tmp/c"))
        );
        assert_eq!(
            parse_cache_from("type=registry,ref=localhost:5000/app:cache")
                .unwrap()
                .to_string(),
            "localhost:5000/app:cache"
        );
        for (spec, message) in [
            (
                "type=local",
                "invalid --cache-from \"type=local\": missing src=DIR",
            ),
            (
                "type=local,dest=x",
                "invalid --cache-from \"type=local,dest=x\": unknown dest=x",
            ),
            (
                "type=s3,bucket=b",
                "invalid --cache-from \"type=s3,bucket=b\": unsupported type \"s3\" (kiln imports type=local or type=registry)",
            ),
        ] {
            assert_eq!(
                parse_cache_from(spec).unwrap_err().to_string(),
                message,
                "{spec}"
            );
        }
    }
}
