//! COPY, ADD and WORKDIR: file operations on an overlay of the stage,
//! mounted in this process, whose upper directory becomes the layer.

use std::fmt::Write as _;
use std::fs;
use std::sync::Arc;

use kiln_parser::plan::{FileCopy, Source, Step};

use super::config::history_for;
use super::{StageState, StepContext, image_state, reuse, stage_result};
use crate::Digest;
use crate::context::BuildContext;
use crate::error::BuildError;
use crate::fileops::{self, CopyOptions};
use crate::mounts::Mounted;
use crate::ops::{CopyOp, FromSourcesOp, GitInput, InlineFile, LinkOp, MkdirOp, Op, UrlInput};

/// The stage or image a `--from` (or `RUN --mount from=`) names; `None`
/// for the build context or a named local context ([`local_context_name`]).
pub(super) fn source_state(
    ctx: &StepContext<'_, '_>,
    source: Option<&Source>,
) -> Result<Option<Arc<StageState>>, BuildError> {
    match source {
        None | Some(Source::Context { .. }) => Ok(None),
        Some(Source::Stage { index }) => Ok(Some(stage_result(ctx.shared, *index)?)),
        // An image or scratch named by `--from` is for the target
        // platform, as dockerfile2llb makes it an implicit stage.
        Some(Source::Image { reference }) => Ok(Some(image_state(
            ctx.shared,
            reference,
            ctx.shared.options.target_platform.as_ref(),
        )?)),
        Some(Source::Scratch) => Ok(Some(Arc::new(super::scratch_state(
            &ctx.shared
                .options
                .target_platform
                .clone()
                .unwrap_or_else(kiln_parser::values::Platform::host),
        )))),
    }
}

/// The named local context a `--from` names (`None`: the build context,
/// or not a local context).
pub(super) fn local_context_name(source: Option<&Source>) -> Option<&str> {
    match source {
        Some(Source::Context { name }) => Some(name),
        _ => None,
    }
}

/// Mounts a stage's filesystem read-only.
pub(super) fn mount_readonly(
    ctx: &StepContext<'_, '_>,
    state: &StageState,
) -> Result<Mounted, BuildError> {
    let merged = ctx.temp_dir("ro-")?;
    let empty = ctx.temp_dir("empty-")?;
    ctx.shared
        .executor
        .overlay(&ctx.shared.lowers(state)?, None, &empty, &merged)
}

/// A read-write overlay of `lowers` with a fresh upper directory.
struct Writable {
    overlay: Mounted,
    upper: std::path::PathBuf,
}

fn mount_writable(
    ctx: &StepContext<'_, '_>,
    lowers: &[std::path::PathBuf],
) -> Result<Writable, BuildError> {
    let upper = ctx.temp_dir("upper-")?;
    let work = ctx.temp_dir("work-")?;
    let merged = ctx.temp_dir("rw-")?;
    let empty = ctx.temp_dir("empty-")?;
    let overlay = ctx
        .shared
        .executor
        .overlay(lowers, Some((&upper, &work)), &empty, &merged)?;
    Ok(Writable { overlay, upper })
}

/// The root of an overlay this build mounted.
fn open_root(path: &std::path::Path) -> Result<kiln_rootfs::Root, BuildError> {
    kiln_rootfs::Root::open(path).map_err(|e| BuildError::io(path, e))
}

fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// The destination as an absolute container path, keeping a trailing `/`
/// (BuildKit's `pathRelativeToWorkingDir`).
pub(super) fn absolute_dest(fc: &FileCopy) -> String {
    let dest = if fc.dest.is_empty() || fc.dest == "." {
        "./"
    } else {
        fc.dest.as_str()
    };
    if dest.starts_with('/') {
        return dest.to_owned();
    }
    let base = fc.workdir.trim_end_matches('/');
    format!("{base}/{dest}")
}

/// BuildKit's history text for COPY/ADD.
fn created_by(fc: &FileCopy) -> String {
    let mut text = if fc.is_add { "ADD" } else { "COPY" }.to_owned();
    if fc.parents {
        text.push_str(" --parents");
    }
    if let Some(chown) = &fc.chown {
        let _ = write!(text, " --chown={chown}");
    }
    if let Some(chmod) = &fc.chmod {
        let _ = write!(text, " --chmod={chmod}");
    }
    for source in &fc.sources {
        text.push(' ');
        text.push_str(source);
    }
    for file in &fc.inline {
        let _ = write!(text, " <<{}", file.name);
    }
    text.push(' ');
    text.push_str(&fc.dest);
    text.push_str(" # buildkit");
    text
}

/// A COPY or ADD step's operation: the instruction's fields, whether its
/// sources are another stage's (keyed by their content then, never by that
/// stage's key), its heredocs, its remote files and its sources' digest.
/// With --link the layer does not depend on what is below it, so its
/// operation has no parent.
pub(super) fn copy_op(
    state: &StageState,
    dest: &str,
    fc: &FileCopy,
    locals: &[String],
    from: bool,
    urls: Vec<UrlInput>,
    sources_digest: Option<&Digest>,
) -> CopyOp {
    CopyOp {
        parent: (!fc.link).then(|| state.key.clone()),
        add: fc.is_add,
        sources: locals.to_vec(),
        dest: dest.to_owned(),
        chown: fc.chown.clone(),
        chmod: fc.chmod.as_ref().map(ToString::to_string),
        link: fc.link,
        parents: fc.parents,
        excludes: fc.excludes.clone(),
        unpack: fc.unpack,
        checksum: fc.checksum.clone(),
        from_stage: from,
        inline: fc
            .inline
            .iter()
            .map(|f| InlineFile {
                name: f.name.clone(),
                content: f.content.clone(),
            })
            .collect(),
        urls,
        git: Vec::new(),
        sources_digest: sources_digest.map(ToString::to_string),
    }
}

/// The step's layer key and the key its stage goes on with. With --link
/// the stage's chain moves on from the layer's own key.
fn step_keys(state: &StageState, op: &Op) -> Result<(String, String), BuildError> {
    let layer_key = op.key()?;
    let chain_key = match op {
        Op::Copy(copy) if copy.link => Op::Link(LinkOp {
            parent: state.key.clone(),
            layer: layer_key.clone(),
        })
        .key()?,
        _ => layer_key.clone(),
    };
    Ok((layer_key, chain_key))
}

/// Where the content digest of a COPY --from's sources in `source` (a
/// stage's or image's files, named by its key) is remembered: the same
/// sources of the same files have the same digest.
fn from_sources_op(source: &StageState, fc: &FileCopy, locals: &[String]) -> Op {
    Op::FromSources(FromSourcesOp {
        source: source.key.clone(),
        sources: locals.to_vec(),
        excludes: fc.excludes.clone(),
        parents: fc.parents,
    })
}

/// Runs a COPY or ADD step (or answers it from the cache). Returns whether
/// it was cached.
pub(super) fn copy_step(
    ctx: &StepContext<'_, '_>,
    state: &mut StageState,
    _step: &Step,
    fc: &FileCopy,
) -> Result<bool, BuildError> {
    let shared = ctx.shared;
    // Before any source is read (see reuse::start_time).
    let started = reuse::start_time();
    let created_by = created_by(fc);
    let history = history_for(created_by.clone(), &shared.created);
    let dest = absolute_dest(fc);
    let mut gits = Vec::new();
    let mut rest = Vec::new();
    for source in &fc.sources {
        match kiln_parser::values::parse_git_ref(source).filter(|_| fc.is_add) {
            Some(Ok(git)) => gits.push(git),
            Some(Err(e)) => {
                return Err(BuildError::Git {
                    action: "parsing",
                    url: source.clone(),
                    reason: e.to_string(),
                });
            }
            None => rest.push(source),
        }
    }
    let (urls, locals): (Vec<&String>, Vec<&String>) =
        rest.into_iter().partition(|s| fc.is_add && is_url(s));
    let from = source_state(ctx, fc.from.as_ref())?;
    // A named local context is read as the build context is.
    let context = local_context_name(fc.from.as_ref());
    let locals: Vec<String> = locals.into_iter().cloned().collect();
    // Another stage's (or image's) files are keyed by their content, as
    // BuildKit keys them, so a source stage that ran again with the same
    // output leaves this step cached. Their digest is remembered under
    // the source stage's key: a source stage answered from the cache
    // needs no mount, and the lookup comes before any.
    let remembered_op = from
        .as_ref()
        .filter(|state| !state.layers.is_empty() && urls.is_empty())
        .map(|state| from_sources_op(state, fc, &locals));
    let remembered = match &remembered_op {
        Some(op) => ctx.remembered_digest(&op.key()?)?,
        None => None,
    };
    if let Some(digest) = &remembered {
        let op = Op::Copy(copy_op(
            state,
            &dest,
            fc,
            &locals,
            from.is_some(),
            Vec::new(),
            Some(digest),
        ));
        let (layer_key, chain_key) = step_keys(state, &op)?;
        if let Some(record) = ctx.lookup(&layer_key)? {
            ctx.apply_cached(state, &record, history)?;
            state.key = chain_key;
            return Ok(true);
        }
    }
    // The filesystem sources come from: the context, or a mounted stage.
    let mounting_source = ctx.phase("mount source");
    let mut guards = Vec::new();
    let source_ctx = match &from {
        None => shared.local_context(context)?.clone(),
        Some(state) if state.layers.is_empty() => {
            BuildContext::open_stage(&ctx.temp_dir("empty-")?)?
        }
        Some(state) => {
            let overlay = mount_readonly(ctx, state)?;
            let source_ctx = BuildContext::open_stage(overlay.path())?;
            guards.push(overlay);
            source_ctx
        }
    };
    mounting_source.end();
    let walking = ctx.phase("resolve sources");
    let sources = if locals.is_empty() {
        Vec::new()
    } else {
        source_ctx
            .resolve_sources(&locals, &fc.excludes, fc.parents)
            .map_err(|e| with_instruction(e, fc))?
    };
    walking.end();
    let digesting = std::time::Instant::now();
    let digesting_phase = ctx.phase("context digest");
    let sources_digest = match &from {
        None => {
            Some(shared.context_digest(context, &locals, &fc.excludes, fc.parents, &sources)?)
        }
        Some(_) if remembered.is_some() => remembered,
        Some(_) => {
            // Paths of a temporary mount: a cache of their own, dropped.
            let digest = source_ctx.digest_sources(&sources, &mut crate::StatCache::new())?;
            if let Some(op) = &remembered_op {
                ctx.remember_digest(op, &created_by, &digest)?;
            }
            Some(digest)
        }
    };
    digesting_phase.end();
    log::debug!(
        "{created_by}: sources digested in {:?}",
        digesting.elapsed()
    );
    // Remote files: a pinned checksum identifies them; otherwise they are
    // fetched now and their digest goes into the key.
    let mut url_inputs = Vec::new();
    let mut downloads = Vec::new();
    for url in &urls {
        if let Some(sum) = &fc.checksum {
            url_inputs.push(UrlInput {
                url: (*url).clone(),
                digest: sum.clone(),
            });
        } else {
            let dir = ctx.temp_dir("download-")?;
            let (path, name) =
                fileops::download(url, None, &dir, shared.options.allow.network_host)?;
            url_inputs.push(UrlInput {
                url: (*url).clone(),
                digest: file_digest(&path)?,
            });
            downloads.push(((*url).clone(), path, name));
        }
    }
    // Git repositories: their refs resolve to commits now; the fetch waits
    // for a cache miss.
    let resolving = ctx.phase("git resolve");
    let mut git_inputs = Vec::new();
    let mut resolved = Vec::new();
    for git in &gits {
        let checksum = fc.checksum.as_deref().or(git.checksum.as_deref());
        let found = fileops::git::resolve(
            git,
            checksum,
            &ctx.temp_dir("git-")?,
            shared.options.allow.network_host,
        )?;
        let keep_git_dir = fc.keep_git_dir || git.keep_git_dir == Some(true);
        git_inputs.push(GitInput {
            remote: git.redacted(),
            commit: found.commit.clone(),
            subdir: fileops::git::clean_subdir(&git.subdir),
            keep_git_dir,
            submodules: git.submodules != Some(false),
        });
        resolved.push((git, found, keep_git_dir));
    }
    resolving.end();
    let mut copy = copy_op(
        state,
        &dest,
        fc,
        &locals,
        from.is_some(),
        url_inputs,
        sources_digest.as_ref(),
    );
    copy.git = git_inputs;
    let op = Op::Copy(copy.clone());
    let (layer_key, chain_key) = step_keys(state, &op)?;
    if let Some(record) = ctx.lookup(&layer_key)? {
        ctx.apply_cached(state, &record, history)?;
        state.key = chain_key;
        return Ok(true);
    }
    // The step runs: the per-file digests of the context's sources are
    // kept (for a later --explain) only now, never on a cache hit. With
    // --explain they are needed at once; otherwise they are listed while
    // the files are copied.
    let listed = match (&from, &sources_digest) {
        (None, Some(digest)) if !sources.is_empty() => Some(digest),
        _ => None,
    };
    let files = match listed {
        Some(digest) if ctx.explaining() => Some(keep_listing(shared, context, &sources, digest)?),
        _ => None,
    };
    ctx.explain(state, &op, files.as_deref())?;
    let listed_later = listed.filter(|_| files.is_none());
    // Earlier copies can stand for files of the build context copied as
    // they are: not for --from sources, ADD, --chmod/--chown (mode and
    // owner would need their own checks), heredocs (written afterwards),
    // or with a single id mapped (copies are not chowned then).
    let lineage_key = (from.is_none()
        && !fc.is_add
        && fc.chmod.is_none()
        && fc.chown.is_none()
        && fc.inline.is_empty()
        && urls.is_empty()
        && !kiln_rootfs::userns::single_id())
    .then(|| {
        reuse::lineage_key(
            &CopyOp {
                sources_digest: None,
                ..copy
            },
            source_ctx.root(),
        )
    })
    .transpose()?;
    let lineage = lineage_key
        .as_deref()
        .filter(|_| ctx.use_cache)
        .and_then(|key| reuse::lookup(shared.store, key));
    for url in &urls {
        if !downloads.iter().any(|(u, _, _)| u == *url) {
            let dir = ctx.temp_dir("download-")?;
            let (path, name) = fileops::download(
                url,
                fc.checksum.as_deref(),
                &dir,
                shared.options.allow.network_host,
            )?;
            downloads.push(((*url).clone(), path, name));
        }
    }
    let fetching = ctx.phase("git fetch");
    let mut checkouts = Vec::new();
    for (git, found, keep_git_dir) in &resolved {
        let dir = fileops::git::checkout(
            git,
            found,
            *keep_git_dir,
            &ctx.temp_dir("git-")?,
            shared.options.allow.network_host,
        )?;
        checkouts.push(BuildContext::open_stage(&dir)?);
    }
    fetching.end();
    let lowers = if fc.link {
        Vec::new()
    } else {
        shared.lowers(state)?
    };
    let mounting = ctx.phase("mounts");
    let writable = mount_writable(ctx, &lowers)?;
    mounting.end();
    let root = open_root(writable.overlay.path())?;
    let owner = match &fc.chown {
        None => None,
        Some(spec) if fc.link && !state.layers.is_empty() => {
            // Names resolve in the stage's files, which --link does not mount.
            let view = mount_readonly(ctx, state)?;
            let owner = fileops::resolve_chown(&open_root(view.path())?, spec)?;
            view.unmount()?;
            Some(owner)
        }
        Some(spec) => Some(fileops::resolve_chown(&root, spec)?),
    };
    let options = CopyOptions {
        owner,
        chmod: fc.chmod.clone(),
        unpack_archives: fc.is_add && fc.unpack != Some(false),
        preserve_owner: from.is_some(),
        clamp_mtime: None,
        // Only ADD --chown of an archive stages files.
        staging: (fc.is_add && fc.chown.is_some())
            .then(|| ctx.temp_dir("add-"))
            .transpose()?,
    };
    let count = sources.len() + fc.inline.len() + downloads.len() + checkouts.len();
    let dest_is_dir = dest.ends_with('/') || count > 1;
    let copying = std::time::Instant::now();
    let copying_phase = ctx.phase("copy");
    let (copied, listing) = std::thread::scope(|scope| {
        let sources = &sources;
        let listing = listed_later.map(|digest| {
            scope.spawn(move || keep_listing(shared, context, sources, digest).map(drop))
        });
        let copied = if let Some(lineage) = &lineage {
            let judge = |file: &fileops::PlannedFile<'_>| reuse::reusable(lineage, file);
            fileops::copy_sources_reusing(
                &source_ctx,
                sources,
                &root,
                &dest,
                dest_is_dir,
                &options,
                &judge,
            )
            .map(|(_, skipped)| skipped)
        } else {
            fileops::copy_sources(&source_ctx, sources, &root, &dest, dest_is_dir, &options)
                .map(|_| Vec::new())
        };
        let listing = listing.map(|thread| {
            thread
                .join()
                .unwrap_or_else(|_| Err(BuildError::Internal("listing sources".to_owned())))
        });
        (copied, listing)
    });
    let skipped = copied?;
    listing.transpose()?;
    log::debug!(
        "{created_by}: copied in {:?} ({} unchanged files left to link)",
        copying.elapsed(),
        skipped.len()
    );
    if !fc.inline.is_empty() {
        let files: Vec<(String, String)> = fc
            .inline
            .iter()
            .map(|f| (f.name.clone(), f.content.clone()))
            .collect();
        fileops::write_inline(&root, &files, &dest, &options)?;
    }
    let url_options = CopyOptions {
        unpack_archives: false,
        ..options.clone()
    };
    for (_, path, name) in &downloads {
        fileops::copy_file_to(&root, path, name, &dest, dest_is_dir, &url_options)?;
    }
    // A repository's tree is a directory source: its contents go into
    // dest, owned by 0:0 (or --chown), archives in it left packed.
    let git_options = CopyOptions {
        preserve_owner: false,
        ..url_options
    };
    for checkout in &checkouts {
        let tree = checkout.resolve_sources(&["/".to_owned()], &[], false)?;
        fileops::copy_sources(checkout, &tree, &root, &dest, true, &git_options)?;
    }
    drop(root);
    let Writable { overlay, upper } = writable;
    overlay.unmount()?;
    drop(guards);
    copying_phase.end();
    if let Some(lineage) = &lineage
        && !skipped.is_empty()
    {
        let linking = std::time::Instant::now();
        reuse::place(&upper, lineage, &skipped)?;
        log::debug!(
            "{created_by}: linked {} unchanged files from {} in {:?}",
            skipped.len(),
            lineage.snapshot.display(),
            linking.elapsed()
        );
    }
    ctx.commit_upper(state, &upper, &layer_key, &op, &created_by, history)?;
    if let Some(key) = &lineage_key {
        let chain_id = state
            .config
            .history
            .last()
            .filter(|h| !h.empty_layer)
            .and_then(|_| state.layers.last())
            .and_then(|l| l.snapshot.as_ref())
            .map(|s| &s.chain_id);
        reuse::record(shared.store, key, chain_id, started);
    }
    state.key = chain_key;
    Ok(false)
}

/// Lists the context's `sources` (whose content digest is `digest`) and
/// keeps the listing in the cache for a later `--explain`.
fn keep_listing(
    shared: &super::Shared<'_>,
    context: Option<&str>,
    sources: &[crate::context::Source],
    digest: &Digest,
) -> Result<Vec<crate::context::SourceFile>, BuildError> {
    let listing = shared.context_listing(context, sources)?;
    shared.cache.put_source_files(digest, &listing)?;
    Ok(listing)
}

/// Names the instruction in a not-found error, as BuildKit does.
fn with_instruction(error: BuildError, fc: &FileCopy) -> BuildError {
    match error {
        BuildError::SourceNotFound { pattern, nearby } if fc.is_add => {
            BuildError::AddSourceNotFound { pattern, nearby }
        }
        other => other,
    }
}

fn file_digest(path: &std::path::Path) -> Result<String, BuildError> {
    let mut file = fs::File::open(path).map_err(|e| BuildError::io(path, e))?;
    let mut hashing = kiln_store::digest::HashingReader::new(&mut file);
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(|e| BuildError::io(path, e))?;
    Ok(hashing.digest().to_string())
}

/// Runs a WORKDIR step: sets the working directory and creates it (owned
/// by the stage's USER), as BuildKit does.
pub(super) fn workdir_step(
    ctx: &StepContext<'_, '_>,
    state: &mut StageState,
    path: &str,
) -> Result<bool, BuildError> {
    let shared = ctx.shared;
    let config = state
        .config
        .config
        .get_or_insert_with(kiln_store::spec::ContainerConfig::default);
    config.working_dir = Some(path.to_owned());
    let user = config.user.clone().unwrap_or_default();
    let history = history_for(format!("WORKDIR {path}"), &shared.created);
    let op = Op::Mkdir(MkdirOp {
        parent: state.key.clone(),
        path: path.to_owned(),
        user: user.clone(),
    });
    let key = op.key()?;
    if let Some(record) = ctx.lookup(&key)? {
        ctx.apply_cached(state, &record, history)?;
        return Ok(true);
    }
    ctx.explain(state, &op, None)?;
    let mounting = ctx.phase("mounts");
    let writable = mount_writable(ctx, &shared.lowers(state)?)?;
    mounting.end();
    let root = open_root(writable.overlay.path())?;
    // The directories belong to USER as BuildKit's mkdir resolves it: a
    // name the image does not list is 0:0, not an error.
    let owner = if user.is_empty() {
        None
    } else {
        Some(fileops::resolve_chown(&root, &user).map_err(|e| match e {
            BuildError::InvalidChown { .. } => BuildError::InvalidUser { user: user.clone() },
            other => other,
        })?)
    };
    fileops::mkdir_all_in_root(&root, path, owner)?;
    drop(root);
    let Writable { overlay, upper } = writable;
    overlay.unmount()?;
    ctx.commit_upper(
        state,
        &upper,
        &key,
        &op,
        &format!("WORKDIR {path}"),
        history,
    )?;
    Ok(false)
}
