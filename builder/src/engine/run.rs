//! RUN steps: a container over the stage's snapshots whose upper directory
//! becomes the step's layer.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Mutex;

use kiln_parser::mount::MountType;
use kiln_parser::plan::{NetworkMode, PlannedMount, Step, StepKind};
use kiln_runtime::{Limits, Mount, Network, RunSpec, Stream};

use super::config::{history_for, run_command_string};
use super::files::{mount_readonly, source_state};
use super::{BUILD_HOSTNAME, StageState, StepContext, cancel};
use crate::context::cache_key;
use crate::error::BuildError;
use crate::mounts::Overlay;
use crate::progress::{Event, Reporter};

/// How many output lines a failed RUN error shows.
const TAIL_LINES: usize = 10;

/// A line longer than this is reported in pieces, so a process that never
/// ends its line cannot grow the buffer without bound.
const MAX_LINE: usize = 64 * 1024;

/// Splits the chunks of a RUN's stdout and stderr into lines and reports
/// each as it completes, so the progress shows the output live; keeps the
/// last [`TAIL_LINES`] for a failure message.
struct OutputLines<'r> {
    reporter: &'r dyn Reporter,
    id: usize,
    state: Mutex<LineState>,
}

#[derive(Default)]
struct LineState {
    /// The unfinished line of stdout and of stderr.
    partial: [Vec<u8>; 2],
    tail: VecDeque<String>,
}

impl<'r> OutputLines<'r> {
    fn new(reporter: &'r dyn Reporter, id: usize) -> Self {
        Self {
            reporter,
            id,
            state: Mutex::new(LineState::default()),
        }
    }

    fn push(&self, stream: Stream, data: &[u8]) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let state = &mut *state;
        let slot = usize::from(stream == Stream::Stderr);
        let Some(partial) = state.partial.get_mut(slot) else {
            return;
        };
        partial.extend_from_slice(data);
        while let Some(end) = partial
            .iter()
            .position(|&b| b == b'\n')
            .or((partial.len() >= MAX_LINE).then_some(MAX_LINE - 1))
        {
            let line: Vec<u8> = partial.drain(..=end).collect();
            self.emit(&mut state.tail, &line);
        }
    }

    fn emit(&self, tail: &mut VecDeque<String>, line: &[u8]) {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = String::from_utf8_lossy(line).into_owned();
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.clone());
        self.reporter
            .report(Event::StepOutput { id: self.id, line });
    }

    /// Reports what is left of unfinished lines; the last lines.
    fn finish(&self) -> VecDeque<String> {
        let Ok(mut state) = self.state.lock() else {
            return VecDeque::new();
        };
        let state = &mut *state;
        for partial in &mut state.partial {
            let partial = std::mem::take(partial);
            if !partial.is_empty() {
                self.emit(&mut state.tail, &partial);
            }
        }
        std::mem::take(&mut state.tail)
    }
}

/// Runs a RUN step (or answers it from the cache). Returns whether it was
/// cached.
pub(super) fn run_step(
    ctx: &StepContext<'_, '_>,
    state: &mut StageState,
    step: &Step,
) -> Result<bool, BuildError> {
    let StepKind::Run {
        argv,
        script,
        mounts,
        network,
        workdir,
        user,
        ..
    } = &step.kind
    else {
        return Ok(false);
    };
    let shared = ctx.shared;
    let created_by = format!("RUN {} # buildkit", run_command_string(argv, state));
    let history = history_for(created_by.clone(), &shared.created);
    let network = match network {
        NetworkMode::Default => shared.options.network,
        NetworkMode::None => Network::None,
        NetworkMode::Host => Network::Host,
    };
    // Everything that can change what the command does goes into the key;
    // proxy settings stay out, as in BuildKit.
    let mut description = format!(
        "RUN\0{}\0user={user}\0cwd={workdir}\0net={network:?}\0",
        argv.join("\0")
    );
    if let Some((name, content)) = script {
        let _ = write!(description, "script={name}\0{content}\0");
    }
    let mut guards: Vec<Overlay> = Vec::new();
    let mut run_mounts = Vec::new();
    let mut secret_env = Vec::new();
    let mut secret_files = SecretFiles::default();
    for mount in mounts {
        let prepared = prepare_mount(ctx, mount, workdir, &mut guards, &mut secret_files)?;
        description.push_str(&prepared.key);
        description.push('\0');
        run_mounts.extend(prepared.mount);
        secret_env.extend(prepared.env);
    }
    let key = cache_key(&state.key, &description, &state.run_env, None);
    if let Some(record) = ctx.lookup(&key)? {
        ctx.apply_cached(state, &record, history)?;
        return Ok(true);
    }
    if let Some((name, content)) = script {
        let dir = ctx.temp_dir("script-")?;
        let path = dir.join(name);
        fs::write(&path, content).map_err(|e| BuildError::io(&path, e))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .map_err(|e| BuildError::io(&path, e))?;
        run_mounts.push(Mount::Bind {
            source: path,
            target: format!("/dev/pipes/{name}"),
            read_only: true,
        });
    }
    let upper = ctx.temp_dir("upper-")?;
    let mut env: Vec<String> = state
        .run_env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for (k, v) in &shared.plan.proxy_env {
        env.push(format!("{k}={v}"));
    }
    // Secrets as variables exist for this process only: not in the key,
    // the config or the history.
    for (k, v) in secret_env {
        env.push(format!("{k}={v}"));
    }
    let spec = RunSpec {
        layers: state.lowers(),
        upper: upper.clone(),
        argv: argv.clone(),
        env,
        cwd: workdir.clone(),
        user: user.clone(),
        hostname: BUILD_HOSTNAME.to_owned(),
        network,
        mounts: run_mounts,
        limits: Limits::default(),
        capture: true,
        tty: false,
        interactive: false,
    };
    let running = std::time::Instant::now();
    let lines = OutputLines::new(shared.reporter, ctx.id);
    let outcome = kiln_runtime::run_streaming(&spec, &|stream, data| lines.push(stream, data));
    let tail = lines.finish();
    let outcome = outcome?;
    log::debug!("{created_by}: ran in {:?}", running.elapsed());
    drop(guards);
    drop(secret_files);
    if kiln_runtime::interrupted() {
        cancel();
        return Err(BuildError::Cancelled);
    }
    if outcome.exit_code != 0 {
        let tail = Vec::from(tail).join("\n");
        return Err(BuildError::RunFailed {
            location: format!("{}:{}", shared.options.dockerfile_name, step.span.line),
            code: step.code.clone(),
            command: argv.join(" "),
            exit_code: outcome.exit_code,
            output: tail,
        });
    }
    ctx.commit_upper(state, &upper, &key, &created_by, history)?;
    Ok(false)
}

/// What a `RUN --mount` adds to the step.
struct PreparedMount {
    /// The runtime mount; none for a secret that is only a variable, or
    /// optional and missing.
    mount: Option<Mount>,
    /// The text it adds to the cache key (for a secret: the id, target and
    /// variable name, never the value).
    key: String,
    /// A secret's `env=`: the variable and its value.
    env: Option<(String, String)>,
}

impl PreparedMount {
    fn mount(mount: Mount, key: String) -> Self {
        Self {
            mount: Some(mount),
            key,
            env: None,
        }
    }
}

/// Turns a `RUN --mount` into what it adds to the container and the key.
fn prepare_mount(
    ctx: &StepContext<'_, '_>,
    mount: &PlannedMount,
    workdir: &str,
    guards: &mut Vec<Overlay>,
    secret_files: &mut SecretFiles,
) -> Result<PreparedMount, BuildError> {
    let m = &mount.mount;
    let target = match m.kind {
        // A secret's default target is not under the workdir.
        MountType::Secret => return prepare_secret(ctx, m, workdir, secret_files),
        MountType::Ssh => {
            return Err(BuildError::UnsupportedMount(
                "RUN --mount=type=ssh is not supported by kiln yet".to_owned(),
            ));
        }
        MountType::Bind | MountType::Cache | MountType::Tmpfs => m
            .resolve_target(workdir)
            .map_err(|e| BuildError::UnsupportedMount(e.to_string()))?,
    };
    match m.kind {
        MountType::Tmpfs => Ok(PreparedMount::mount(
            Mount::Tmpfs {
                target: target.clone(),
                size: m.size_limit,
            },
            format!("tmpfs={target}"),
        )),
        MountType::Cache => {
            let id = m.cache_id.clone().unwrap_or_else(|| target.clone());
            let name = kiln_store::digest::digest_bytes(id.as_bytes());
            let source = ctx
                .shared
                .store
                .root()
                .join("cache-mounts")
                .join(name.encoded());
            if !source.exists() {
                fs::create_dir_all(&source).map_err(|e| BuildError::io(&source, e))?;
                let mode = m.mode.unwrap_or(0o755);
                fs::set_permissions(&source, fs::Permissions::from_mode(mode))
                    .map_err(|e| BuildError::io(&source, e))?;
                let uid = m.uid.and_then(|u| u32::try_from(u).ok()).unwrap_or(0);
                let gid = m.gid.and_then(|g| u32::try_from(g).ok()).unwrap_or(0);
                std::os::unix::fs::chown(&source, Some(uid), Some(gid))
                    .map_err(|e| BuildError::io(&source, e))?;
            }
            // A cache mount's content never enters the key.
            Ok(PreparedMount::mount(
                Mount::Cache {
                    source,
                    target: target.clone(),
                },
                format!("cache={target}"),
            ))
        }
        MountType::Bind => {
            let from = source_state(ctx, mount.source.as_ref())?;
            let rel = m.source.clone().unwrap_or_default();
            let (root, key_part): (PathBuf, String) = match from {
                None => {
                    // The build context: its content digest goes into the key.
                    let context = &ctx.shared.options.context;
                    let pattern = if rel.is_empty() { ".".to_owned() } else { rel };
                    let sources =
                        context.resolve_sources(std::slice::from_ref(&pattern), &[], false)?;
                    let digest = {
                        let mut cache = ctx
                            .shared
                            .stat_cache
                            .lock()
                            .map_err(|_| BuildError::Internal("stat cache lock".to_owned()))?;
                        context.digest_sources(&sources, &mut cache)?
                    };
                    let path = sources.first().map_or_else(
                        || context.root().to_owned(),
                        |s| context.root().join(&s.path),
                    );
                    (path, format!("bind={target}\0context\0{digest}"))
                }
                Some(state) => {
                    let overlay = mount_readonly(ctx, &state)?;
                    let root = overlay.path().to_owned();
                    guards.push(overlay);
                    let inside = crate::rootfs::resolve_in_root(&root, &rel)?;
                    (inside, format!("bind={target}\0{}\0{rel}", state.key))
                }
            };
            Ok(PreparedMount::mount(
                Mount::Bind {
                    source: root,
                    target,
                    read_only: true,
                },
                key_part,
            ))
        }
        MountType::Secret | MountType::Ssh => Err(BuildError::Internal(format!(
            "{:?} mount handled above",
            m.kind
        ))),
    }
}

/// Secret files written for one RUN, removed as soon as it ends (they
/// live in the store's staging directory while the step runs).
#[derive(Default)]
struct SecretFiles(Vec<PathBuf>);

impl Drop for SecretFiles {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// A secret mount as BuildKit's dockerfile2llb makes it: the id is
/// `source=`, else `id=`, else the target's base name; the file goes to
/// the target, by default `/run/secrets/<id>` (none when only `env=` is
/// given), read-only, mode 0400 and owned by 0:0 unless `mode`, `uid` or
/// `gid` say otherwise. A missing secret fails the step only if
/// `required`; otherwise the step runs without it.
fn prepare_secret(
    ctx: &StepContext<'_, '_>,
    m: &kiln_parser::mount::Mount,
    workdir: &str,
    files: &mut SecretFiles,
) -> Result<PreparedMount, BuildError> {
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
                .map_err(|e| BuildError::UnsupportedMount(e.to_string()))?,
        ),
        (None, Some(_)) => None,
        (None, None) => Some(format!("/run/secrets/{}", base(&id))),
    };
    let key = format!(
        "secret={id}\0{}\0{}",
        target.as_deref().unwrap_or(""),
        m.env.as_deref().unwrap_or("")
    );
    let Some(value) = ctx.shared.options.secrets.get(&id) else {
        if m.required {
            return Err(BuildError::SecretNotFound { id });
        }
        return Ok(PreparedMount {
            mount: None,
            key,
            env: None,
        });
    };
    let env = m
        .env
        .as_ref()
        .map(|name| (name.clone(), String::from_utf8_lossy(value).into_owned()));
    let mount = match target {
        Some(target) => {
            let dir = ctx.temp_dir("secret-")?;
            files.0.push(dir.clone());
            let path = dir.join("secret");
            fs::write(&path, value).map_err(|e| BuildError::io(&path, e))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(m.mode.unwrap_or(0o400)))
                .map_err(|e| BuildError::io(&path, e))?;
            let uid = m.uid.and_then(|u| u32::try_from(u).ok()).unwrap_or(0);
            let gid = m.gid.and_then(|g| u32::try_from(g).ok()).unwrap_or(0);
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                .map_err(|e| BuildError::io(&path, e))?;
            Some(Mount::Bind {
                source: path,
                target,
                read_only: true,
            })
        }
        None => None,
    };
    Ok(PreparedMount { mount, key, env })
}
