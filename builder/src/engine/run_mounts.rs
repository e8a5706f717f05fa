//! `RUN --mount`: what each mount adds to the step's cache key (known
//! before the cache is asked), and the mount itself (made only when the
//! step runs).
//!
//! Every source path a mount names (`source=` in a stage, an image or the
//! build context, a cache's `from=`) is resolved inside its own root with
//! [`kiln_rootfs::Root`] and mounted from the resulting descriptor on a
//! directory or file of the build's own ([`Mounted::bind`]); the runtime
//! then binds that kiln-owned path. A symlink in an image that points at
//! `/etc/shadow` therefore names the stage's `/etc/shadow` (or nothing),
//! never the host's. The build context is mounted as COPY sees it: only
//! the files `.dockerignore` keeps, copied once into a snapshot keyed by
//! their content.
//!
//! Options follow BuildKit's dockerfile2llb (`convert_runmount.go`): bind
//! mounts are read-only unless `rw`, and writes to an `rw` bind are thrown
//! away (an overlay over the source); cache mounts are persistent
//! directories per `id` (default: the target) and, with `from=`, per base,
//! seeded from `from`'s `source=` the first time, with `mode`/`uid`/`gid`
//! for a cache without a source; `sharing=shared` lets RUNs use one cache
//! at once, `locked` makes them wait for each other, `private` gives a RUN
//! that finds the cache in use a cache of its own; `ro` mounts the cache
//! read-only; tmpfs mounts take `size=`. An ssh mount gets a socket of
//! the RUN's own that relays to the `--ssh` agent of its id
//! ([`crate::ssh::Forwarder`]); the agent's own socket never enters the
//! container.

use std::collections::HashSet;
use std::fs::{self, File};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_parser::mount::{CacheSharing, MountType};
use kiln_parser::plan::{PlannedMount, Source as PlanSource};
use kiln_rootfs::Root;
use kiln_runtime::Mount;
use nix::fcntl::OFlag;

use super::config::history_for;
use super::files::{local_context_name, mount_readonly, source_state};
use super::{StageState, StepContext, scratch_state};
use crate::context::{BuildContext, Source};
use crate::error::BuildError;
use crate::fileops::{self, CopyOptions};
use crate::mounts::Mounted;
use crate::ops::{ContextSnapshotOp, FromSourcesOp, MountInput, Op};

/// A `RUN --mount` between the cache lookup and the run.
pub(super) struct PlannedRunMount {
    kind: Kind,
    /// What the mount adds to the step's cache key (for a secret: the id,
    /// target and variable name, never the value).
    pub(super) input: MountInput,
}

enum Kind {
    Tmpfs {
        target: String,
        size: Option<u64>,
    },
    Cache(CachePlan),
    Bind {
        target: String,
        source: BindSource,
        writable: bool,
    },
    Secret {
        target: Option<String>,
        value: Vec<u8>,
        env: Option<String>,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Ssh {
        id: String,
        target: String,
        mode: u32,
        uid: u32,
        gid: u32,
        required: bool,
    },
    /// An optional secret that was not given.
    Nothing,
}

enum BindSource {
    /// `source=` inside a stage or image (`from=`).
    Stage {
        state: Arc<StageState>,
        path: String,
        from: String,
    },
    /// `source=` inside the build context (or a named local context,
    /// `context`), as COPY would select it.
    Context {
        context: Option<String>,
        source: Source,
        digest: String,
        pattern: String,
    },
}

struct CachePlan {
    target: String,
    /// What names the cache (its id, and base when `from=`).
    name: String,
    /// `from=` and `source=`: what a new cache starts with.
    base: Option<(Arc<StageState>, String, String)>,
    read_only: bool,
    sharing: CacheSharing,
    /// `mode`, `uid`, `gid` for a new cache without a source.
    permissions: Option<(u32, u32, u32)>,
}

/// What the made mounts hold until the RUN ends: mounts of the build's
/// own, temporary files (secrets, writable copies) and cache locks.
#[derive(Default)]
pub(super) struct MountGuards {
    mounted: Vec<Mounted>,
    temp: Vec<PathBuf>,
    locks: Vec<File>,
    locked: HashSet<PathBuf>,
    forwarders: Vec<crate::ssh::Forwarder>,
}

impl Drop for MountGuards {
    fn drop(&mut self) {
        // Mounts go first (in reverse order: a bind may sit on an overlay),
        // then the files under them; locks last.
        while let Some(mounted) = self.mounted.pop() {
            drop(mounted);
        }
        // Before their sockets go with the temporary directories: stopping
        // a forwarder connects to its socket.
        self.forwarders.clear();
        for path in &self.temp {
            let _ = fs::remove_dir_all(path);
        }
    }
}

fn unsupported(message: String) -> BuildError {
    BuildError::UnsupportedMount(message)
}

impl PlannedRunMount {
    /// Where an ssh mount's socket appears (given or not).
    pub(super) fn ssh_target(&self) -> Option<&str> {
        match &self.kind {
            Kind::Ssh { target, .. } => Some(target),
            _ => None,
        }
    }
}

/// Plans `mount`: checks it, works out its key, reads nothing it does not
/// need for the key. `ssh_index` counts the ssh mounts before it in the
/// RUN (for the default target of an ssh mount).
pub(super) fn plan(
    ctx: &StepContext<'_, '_>,
    mount: &PlannedMount,
    workdir: &str,
    ssh_index: usize,
) -> Result<PlannedRunMount, BuildError> {
    let m = &mount.mount;
    let target = || {
        m.resolve_target(workdir)
            .map_err(|e| unsupported(e.to_string()))
    };
    match m.kind {
        MountType::Secret => plan_secret(ctx, m, workdir),
        MountType::Ssh => Ok(plan_ssh(m, ssh_index)),
        MountType::Tmpfs => {
            let target = target()?;
            Ok(PlannedRunMount {
                input: MountInput::Tmpfs {
                    target: target.clone(),
                    size: m.size_limit,
                },
                kind: Kind::Tmpfs {
                    target,
                    size: m.size_limit,
                },
            })
        }
        MountType::Cache => plan_cache(ctx, mount, target()?),
        MountType::Bind => {
            let target = target()?;
            let rel = m.source.clone().unwrap_or_default();
            let writable = !m.read_only;
            let (source, key) = match source_state(ctx, mount.source.as_ref())? {
                None => {
                    let name = local_context_name(mount.source.as_ref());
                    let context = ctx.shared.local_context(name)?;
                    let pattern = if rel.is_empty() { ".".to_owned() } else { rel };
                    let mut sources = context
                        .resolve_sources(std::slice::from_ref(&pattern), &[], false)
                        .map_err(|e| match e {
                            BuildError::SourceNotFound { .. } => BuildError::MountSource {
                                kind: "bind",
                                path: pattern.clone(),
                                from: describe(ctx, mount.source.as_ref()),
                                cause: None,
                            },
                            other => other,
                        })?;
                    if sources.len() != 1 {
                        return Err(unsupported(format!(
                            "RUN --mount source {pattern:?} names {} files of the build context; a bind mount takes one",
                            sources.len()
                        )));
                    }
                    let digest = ctx
                        .shared
                        .context_digest(name, std::slice::from_ref(&pattern), &[], false, &sources)?
                        .to_string();
                    let key = MountInput::Bind {
                        target: target.clone(),
                        source: pattern.clone(),
                        from: None,
                        digest: Some(digest.clone()),
                        writable,
                    };
                    let source = sources.remove(0);
                    (
                        BindSource::Context {
                            context: name.map(str::to_owned),
                            source,
                            digest,
                            pattern,
                        },
                        key,
                    )
                }
                Some(state) => {
                    // Keyed by the content it shows, as COPY --from is: a
                    // source stage that ran again with the same files
                    // leaves this step cached. An empty stage has no
                    // files to digest; its key says as much.
                    let (from, digest) = if state.layers.is_empty() {
                        (Some(state.key.clone()), None)
                    } else {
                        let digest =
                            stage_content_digest(ctx, &state, &rel, mount.source.as_ref())?;
                        (None, Some(digest))
                    };
                    let key = MountInput::Bind {
                        target: target.clone(),
                        source: rel.clone(),
                        from,
                        digest,
                        writable,
                    };
                    (
                        BindSource::Stage {
                            state,
                            path: rel,
                            from: describe(ctx, mount.source.as_ref()),
                        },
                        key,
                    )
                }
            };
            Ok(PlannedRunMount {
                kind: Kind::Bind {
                    target,
                    source,
                    writable,
                },
                input: key,
            })
        }
    }
}

/// The content digest of `rel` (a file or directory; empty: the root) in
/// `state`'s files, remembered under the stage's key as COPY --from's is
/// (the lookup needs no mount; a miss mounts the stage to digest it).
fn stage_content_digest(
    ctx: &StepContext<'_, '_>,
    state: &StageState,
    rel: &str,
    from: Option<&PlanSource>,
) -> Result<String, BuildError> {
    let pattern = match rel.trim_start_matches('/') {
        "" => ".".to_owned(),
        _ => rel.to_owned(),
    };
    let remembered = Op::FromSources(FromSourcesOp {
        source: state.key.clone(),
        sources: vec![pattern.clone()],
        excludes: Vec::new(),
        parents: false,
    });
    if let Some(digest) = ctx.remembered_digest(&remembered.key()?)? {
        return Ok(digest.to_string());
    }
    let overlay = mount_readonly(ctx, state)?;
    let source_ctx = BuildContext::open_stage(overlay.path())?;
    let sources = source_ctx
        .resolve_sources(std::slice::from_ref(&pattern), &[], false)
        .map_err(|e| match e {
            BuildError::SourceNotFound { .. } => BuildError::MountSource {
                kind: "bind",
                path: rel.to_owned(),
                from: describe(ctx, from),
                cause: None,
            },
            other => other,
        })?;
    let digest = source_ctx.digest_sources(&sources, &mut crate::StatCache::new())?;
    overlay.unmount()?;
    let what = format!(
        "RUN --mount=type=bind from {} source={rel}",
        describe(ctx, from)
    );
    ctx.remember_digest(&remembered, &what, &digest)?;
    Ok(digest.to_string())
}

/// How a `from=` is named in messages.
fn describe(ctx: &StepContext<'_, '_>, source: Option<&PlanSource>) -> String {
    match source {
        None => "the build context".to_owned(),
        Some(PlanSource::Stage { index }) => match ctx
            .shared
            .plan
            .stages
            .get(*index)
            .and_then(|stage| stage.name.as_deref())
        {
            Some(name) => format!("stage {name}"),
            None => format!("stage {index}"),
        },
        Some(PlanSource::Image { reference }) => format!("image {reference}"),
        Some(PlanSource::Scratch) => "scratch".to_owned(),
        Some(PlanSource::Context { name }) => format!("context {name}"),
    }
}

fn plan_cache(
    ctx: &StepContext<'_, '_>,
    mount: &PlannedMount,
    target: String,
) -> Result<PlannedRunMount, BuildError> {
    let m = &mount.mount;
    let id = m.cache_id.clone().unwrap_or_else(|| target.clone());
    let source = kiln_rootfs::path::absolute(m.source.as_deref().unwrap_or(""));
    let base = match source_state(ctx, mount.source.as_ref())? {
        Some(state) => Some((state, source.clone(), describe(ctx, mount.source.as_ref()))),
        None if source != "/" => {
            // BuildKit's default base is the empty image: a source in it
            // names nothing.
            return Err(unsupported(format!(
                "RUN --mount=type=cache,source={source}: the source needs from= (a cache without from= starts empty)"
            )));
        }
        None => None,
    };
    // As dockerfile2llb: mode, uid and gid make the cache an empty
    // directory with those settings, and apply only without a source.
    let permissions = (source == "/" && (m.mode.is_some() || m.uid.is_some() || m.gid.is_some()))
        .then(|| {
            let id = |v: Option<u64>| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
            (m.mode.unwrap_or(0o755), id(m.uid), id(m.gid))
        });
    // A cache is one per id, and with a base one per id and base, as
    // BuildKit keys `cache-dir:<id>:<base ref>`.
    let mut name = id.clone();
    if let Some((state, source, _)) = &base {
        name = format!("{id}\0{}\0{source}", state.key);
    }
    if let Some((mode, uid, gid)) = permissions {
        name = format!("{name}\0{mode:o}:{uid}:{gid}");
    }
    // A cache mount's content never enters the key.
    let key = MountInput::Cache {
        target: target.clone(),
        read_only: m.read_only,
        sharing: m.sharing.as_str().to_owned(),
    };
    Ok(PlannedRunMount {
        kind: Kind::Cache(CachePlan {
            target,
            name,
            base,
            read_only: m.read_only,
            sharing: m.sharing,
            permissions,
        }),
        input: key,
    })
}

/// A secret mount as BuildKit's dockerfile2llb makes it: the id is
/// `source=`, else `id=`, else the target's base name; the file goes to
/// the target, by default `/run/secrets/<id>` (none when only `env=` is
/// given), read-only, mode 0400 and owned by 0:0 unless `mode`, `uid` or
/// `gid` say otherwise. A missing secret fails the step only if
/// `required`; otherwise the step runs without it.
fn plan_secret(
    ctx: &StepContext<'_, '_>,
    m: &kiln_parser::mount::Mount,
    workdir: &str,
) -> Result<PlannedRunMount, BuildError> {
    let base = |p: &str| {
        p.rsplit('/')
            .find(|c| !c.is_empty())
            .unwrap_or("")
            .to_owned()
    };
    let id = m
        .source
        .clone()
        .or_else(|| m.cache_id.clone())
        .or_else(|| m.target.as_deref().map(base))
        .unwrap_or_default();
    let target = match (&m.target, &m.env) {
        (Some(_), _) => Some(
            m.resolve_target(workdir)
                .map_err(|e| unsupported(e.to_string()))?,
        ),
        (None, Some(_)) => None,
        (None, None) => Some(format!("/run/secrets/{}", base(&id))),
    };
    let key = MountInput::Secret {
        id: id.clone(),
        target: target.clone(),
        env: m.env.clone(),
    };
    let Some(value) = ctx.shared.options.secrets.get(&id) else {
        if m.required {
            return Err(BuildError::SecretNotFound { id });
        }
        return Ok(PlannedRunMount {
            kind: Kind::Nothing,
            input: key,
        });
    };
    let id_of = |v: Option<u64>| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
    Ok(PlannedRunMount {
        kind: Kind::Secret {
            target,
            value: value.clone(),
            env: m.env.clone(),
            mode: m.mode.unwrap_or(0o400),
            uid: id_of(m.uid),
            gid: id_of(m.gid),
        },
        input: key,
    })
}

/// An ssh mount as dockerfile2llb makes it: the id is `id=`, else
/// `default`; the socket goes to the target, by default
/// `/run/buildkit/ssh_agent.<index among the RUN's ssh mounts>`, mode
/// 0600 and owned by 0:0 unless `mode`, `uid` or `gid` say otherwise. The
/// agent is looked up when the step runs: BuildKit asks for it only then.
fn plan_ssh(m: &kiln_parser::mount::Mount, ssh_index: usize) -> PlannedRunMount {
    let id_of = |v: Option<u64>| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
    // The runtime mounts on absolute paths; BuildKit's executor places a
    // relative target under the root too.
    let target = kiln_rootfs::path::absolute(m.ssh_target(ssh_index));
    let (id, mode, uid, gid) = (
        m.ssh_id().to_owned(),
        m.mode.unwrap_or(0o600),
        id_of(m.uid),
        id_of(m.gid),
    );
    PlannedRunMount {
        input: MountInput::Ssh {
            id: id.clone(),
            target: target.clone(),
            mode,
            uid,
            gid,
            required: m.required,
        },
        kind: Kind::Ssh {
            id,
            target,
            mode,
            uid,
            gid,
            required: m.required,
        },
    }
}

/// A variable for the RUN's process only (a secret's `env=`).
pub(super) type Variable = (String, String);

/// Makes the planned mount: the runtime mount (none for a secret that is
/// only a variable, or missing) and a variable for the process.
pub(super) fn make(
    ctx: &StepContext<'_, '_>,
    planned: PlannedRunMount,
    guards: &mut MountGuards,
) -> Result<(Option<Mount>, Option<Variable>), BuildError> {
    match planned.kind {
        Kind::Nothing => Ok((None, None)),
        Kind::Tmpfs { target, size } => Ok((
            Some(Mount::Tmpfs {
                target,
                size,
                mode: None,
            }),
            None,
        )),
        Kind::Secret {
            target,
            value,
            env,
            mode,
            uid,
            gid,
        } => {
            let variable = env.map(|name| (name, String::from_utf8_lossy(&value).into_owned()));
            let Some(target) = target else {
                return Ok((None, variable));
            };
            let dir = ctx.temp_dir("secret-")?;
            guards.temp.push(dir.clone());
            let path = dir.join("secret");
            fs::write(&path, &value).map_err(|e| BuildError::io(&path, e))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .map_err(|e| BuildError::io(&path, e))?;
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                .map_err(|e| BuildError::io(&path, e))?;
            let mount = Mount::Bind {
                source: path,
                target,
                read_only: true,
            };
            Ok((Some(mount), variable))
        }
        Kind::Bind {
            target,
            source,
            writable,
        } => {
            let (root, path, from) = match source {
                BindSource::Stage { state, path, from } => {
                    if state.layers.is_empty() {
                        (ctx.temp_dir("empty-")?, path, from)
                    } else {
                        let overlay = mount_readonly(ctx, &state)?;
                        let root = overlay.path().to_owned();
                        guards.mounted.push(overlay);
                        (root, path, from)
                    }
                }
                BindSource::Context {
                    context,
                    source,
                    digest,
                    pattern,
                } => {
                    let (root, path) =
                        context_snapshot(ctx, context.as_deref(), &source, &digest, &pattern)?;
                    let from = match context {
                        None => "the build context".to_owned(),
                        Some(name) => format!("context {name}"),
                    };
                    (root, path, from)
                }
            };
            let root = Root::open(&root).map_err(|e| BuildError::io(&root, e))?;
            let fd =
                root.open_at(&path, OFlag::O_PATH)
                    .map_err(|cause| BuildError::MountSource {
                        kind: "bind",
                        path: path.clone(),
                        from,
                        cause: Some(cause),
                    })?;
            let staged = stage_source(ctx, &fd, !writable, guards)?;
            Ok((
                Some(Mount::Bind {
                    source: staged,
                    target,
                    read_only: !writable,
                }),
                None,
            ))
        }
        Kind::Cache(plan) => make_cache(ctx, plan, guards).map(|m| (Some(m), None)),
        Kind::Ssh {
            id,
            target,
            mode,
            uid,
            gid,
            required,
        } => {
            let agents = &ctx.shared.options.ssh;
            let Some(agent) = agents.get(&id) else {
                // BuildKit skips a missing optional agent.
                if !required {
                    return Ok((None, None));
                }
                return Err(BuildError::SshNotFound {
                    others: !agents.is_empty(),
                    id,
                });
            };
            let dir = ctx.temp_dir("ssh-")?;
            guards.temp.push(dir.clone());
            let socket = dir.join("agent.sock");
            guards.forwarders.push(crate::ssh::Forwarder::start(
                &socket, agent, mode, uid, gid,
            )?);
            let mount = Mount::Bind {
                source: socket,
                target,
                read_only: true,
            };
            Ok((Some(mount), None))
        }
    }
}

/// Mounts `source` (resolved inside its root) on a file or directory of the
/// build's own, which the runtime can then bind by its path. Writable:
/// an overlay with a throwaway upper directory over a directory, or a copy
/// of a file, so the RUN's writes never reach the source.
fn stage_source(
    ctx: &StepContext<'_, '_>,
    source: &OwnedFd,
    read_only: bool,
    guards: &mut MountGuards,
) -> Result<PathBuf, BuildError> {
    let shown = kiln_rootfs::fd_path(source.as_fd());
    let meta = fs::metadata(&shown).map_err(|e| BuildError::io(&shown, e))?;
    let dir = ctx.temp_dir("bind-")?;
    guards.temp.push(dir.clone());
    if meta.is_dir() {
        let target = dir.join("mnt");
        fs::create_dir(&target).map_err(|e| BuildError::io(&target, e))?;
        if read_only {
            guards
                .mounted
                .push(ctx.shared.executor.bind(source, &target, true)?);
        } else {
            let upper = dir.join("upper");
            let work = dir.join("work");
            for d in [&upper, &work] {
                fs::create_dir(d).map_err(|e| BuildError::io(d, e))?;
            }
            let empty = ctx.temp_dir("empty-")?;
            // The descriptor's magic link names the resolved directory
            // itself, so overlayfs looks nothing up in the image.
            guards.mounted.push(ctx.shared.executor.overlay(
                &[shown],
                Some((&upper, &work)),
                &empty,
                &target,
            )?);
        }
        return Ok(target);
    }
    let target = dir.join("file");
    if read_only {
        File::create(&target).map_err(|e| BuildError::io(&target, e))?;
        guards
            .mounted
            .push(ctx.shared.executor.bind(source, &target, true)?);
    } else {
        // Reopening an O_PATH descriptor through its magic link reads the
        // resolved file.
        let mut input = File::open(&shown).map_err(|e| BuildError::io(&shown, e))?;
        let mut output = File::create(&target).map_err(|e| BuildError::io(&target, e))?;
        std::io::copy(&mut input, &mut output).map_err(|e| BuildError::io(&target, e))?;
        fs::set_permissions(&target, meta.permissions()).map_err(|e| BuildError::io(&target, e))?;
    }
    Ok(target)
}

/// The build context's `source` as COPY selects it (ignored files left
/// out, owned by 0:0), in a snapshot made once per content digest: the
/// snapshot's root and the path of the source in it.
fn context_snapshot(
    ctx: &StepContext<'_, '_>,
    context: Option<&str>,
    source: &Source,
    digest: &str,
    pattern: &str,
) -> Result<(PathBuf, String), BuildError> {
    let path = format!("/{}", source.dest);
    let description = format!("context for RUN --mount source {pattern}");
    let mut state = scratch_state(&kiln_parser::values::Platform::host());
    context_layer(
        ctx,
        context,
        source,
        digest,
        pattern,
        &description,
        &mut state,
    )?;
    match ctx.shared.snapshots(&state)?.pop() {
        Some(snapshot) => Ok((snapshot.path, path)),
        // An empty directory makes no layer.
        None => Ok((ctx.temp_dir("empty-")?, path)),
    }
}

/// `FROM NAME` of a named local context: `state` (scratch) gets the
/// whole context as COPY selects it, as one layer keyed by its content.
pub(super) fn context_base(
    ctx: &StepContext<'_, '_>,
    name: &str,
    state: &mut StageState,
) -> Result<(), BuildError> {
    let shared = ctx.shared;
    let pattern = ".".to_owned();
    let mut sources = shared.local_context(Some(name))?.resolve_sources(
        std::slice::from_ref(&pattern),
        &[],
        false,
    )?;
    let digest = shared
        .context_digest(
            Some(name),
            std::slice::from_ref(&pattern),
            &[],
            false,
            &sources,
        )?
        .to_string();
    if sources.len() != 1 {
        return Err(BuildError::Internal(format!(
            "context {name}: \".\" selected {} sources",
            sources.len()
        )));
    }
    let source = sources.remove(0);
    let description = format!("[context {name}] load from client");
    context_layer(
        ctx,
        Some(name),
        &source,
        &digest,
        &pattern,
        &description,
        state,
    )
}

/// Adds to `state` the layer of the context's `source` (a cached one when
/// the cache has it).
fn context_layer(
    ctx: &StepContext<'_, '_>,
    context: Option<&str>,
    source: &Source,
    digest: &str,
    pattern: &str,
    description: &str,
    state: &mut StageState,
) -> Result<(), BuildError> {
    let shared = ctx.shared;
    let op = Op::ContextSnapshot(ContextSnapshotOp {
        pattern: pattern.to_owned(),
        digest: digest.to_owned(),
    });
    let key = op.key()?;
    if let Some(record) = shared.cache.get(&key)? {
        ctx.apply_cached(
            state,
            &record,
            history_for(description.to_owned(), &shared.created),
        )?;
    } else {
        let upper = ctx.temp_dir("context-")?;
        let root = Root::open(&upper).map_err(|e| BuildError::io(&upper, e))?;
        fileops::copy_sources(
            shared.local_context(context)?,
            std::slice::from_ref(source),
            &root,
            "/",
            true,
            &CopyOptions::default(),
        )?;
        drop(root);
        let history = history_for(description.to_owned(), &shared.created);
        ctx.commit_upper(state, &upper, &key, &op, description, history)?;
    }
    Ok(())
}

fn make_cache(
    ctx: &StepContext<'_, '_>,
    plan: CachePlan,
    guards: &mut MountGuards,
) -> Result<Mount, BuildError> {
    let store = ctx.shared.store;
    let instance = |n: usize| {
        let name = if n == 0 {
            plan.name.clone()
        } else {
            format!("{}\0private\0{n}", plan.name)
        };
        kiln_store::digest::digest_bytes(name.as_bytes())
    };
    let id = match plan.sharing {
        CacheSharing::Shared => {
            lock(
                &store.cache_mount_lock(&instance(0)),
                LockMode::Shared,
                guards,
            )?;
            instance(0)
        }
        CacheSharing::Locked => {
            lock(
                &store.cache_mount_lock(&instance(0)),
                LockMode::Exclusive,
                guards,
            )?;
            instance(0)
        }
        CacheSharing::Private => {
            // The first instance no other RUN holds.
            let mut n = 0usize;
            loop {
                let id = instance(n);
                if lock(&store.cache_mount_lock(&id), LockMode::TryExclusive, guards)? {
                    break id;
                }
                n += 1;
            }
        }
    };
    let dir = store.cache_mount_with(&id, |dir| init_cache(ctx, &plan, dir))?;
    Ok(Mount::Bind {
        source: dir,
        target: plan.target,
        read_only: plan.read_only,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum LockMode {
    Shared,
    Exclusive,
    TryExclusive,
}

/// Takes the lock file `path` of a cache mount for the RUN; `false` when
/// `TryExclusive` finds it held. A lock this RUN already holds (the same
/// cache mounted twice) is not taken again.
fn lock(path: &Path, mode: LockMode, guards: &mut MountGuards) -> Result<bool, BuildError> {
    if guards.locked.contains(path) {
        return Ok(mode != LockMode::TryExclusive);
    }
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| BuildError::io(path, e))?;
    let locked = match mode {
        LockMode::Shared => file.lock_shared().map(|()| true),
        LockMode::Exclusive => file.lock().map(|()| true),
        LockMode::TryExclusive => match file.try_lock() {
            Ok(()) => Ok(true),
            Err(fs::TryLockError::WouldBlock) => Ok(false),
            Err(fs::TryLockError::Error(e)) => Err(e),
        },
    }
    .map_err(|e| BuildError::io(path, e))?;
    if locked {
        guards.locks.push(file);
        guards.locked.insert(path.to_owned());
    }
    Ok(locked)
}

/// Fills a new cache directory `dir`: a copy of its base (`from=`,
/// `source=`), or empty with `mode`/`uid`/`gid`.
fn init_cache(ctx: &StepContext<'_, '_>, plan: &CachePlan, dir: &Path) -> Result<(), BuildError> {
    let (mode, uid, gid) = plan.permissions.unwrap_or((0o755, 0, 0));
    match (&plan.base, plan.permissions) {
        (Some((state, source, from)), None) if !state.layers.is_empty() => {
            let overlay = mount_readonly(ctx, state)?;
            let context = BuildContext::open_stage(overlay.path())?;
            let sources = context
                .resolve_sources(std::slice::from_ref(source), &[], false)
                .map_err(|e| {
                    unsupported(format!(
                        "RUN --mount=type=cache,source={source}: not found in {from}: {e}"
                    ))
                })?;
            let root = Root::open(dir).map_err(|e| BuildError::io(dir, e))?;
            fileops::copy_sources(
                &context,
                &sources,
                &root,
                "/",
                true,
                &CopyOptions {
                    preserve_owner: true,
                    ..CopyOptions::default()
                },
            )?;
        }
        _ => {
            fs::set_permissions(dir, fs::Permissions::from_mode(mode))
                .map_err(|e| BuildError::io(dir, e))?;
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                .map_err(|e| BuildError::io(dir, e))?;
        }
    }
    Ok(())
}
