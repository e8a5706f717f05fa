//! RUN steps: a container over the stage's snapshots whose upper directory
//! becomes the step's layer.

use std::collections::VecDeque;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Mutex;

use kiln_parser::plan::{NetworkMode, SecurityMode, Step, StepKind};
use kiln_runtime::{Limits, Mount, Network, RunSpec, Seccomp, Stream};

use super::config::{history_for, run_command_string, set_run_env};
use super::{BUILD_HOSTNAME, StageState, StepContext, cancel, is_cancelled, run_mounts};
use crate::error::BuildError;
use crate::ops::{InlineFile, MountInput, Op, RunOp};
use crate::progress::{Event, Reporter};

/// How long a RUN's processes have after the build is interrupted (the
/// SIGTERM passed on) before the whole container is killed.
const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

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

/// The operation of RUN step `step` on `state`, with the network it gets
/// (the build's for `--network=default`) and its mounts' inputs; `None`
/// for another kind of step.
pub(super) fn run_op(
    state: &StageState,
    step: &Step,
    network: Network,
    mounts: Vec<MountInput>,
) -> Option<Op> {
    let StepKind::Run {
        argv,
        script,
        security,
        workdir,
        user,
        ..
    } = &step.kind
    else {
        return None;
    };
    Some(Op::Run(RunOp {
        parent: state.key.clone(),
        argv: argv.clone(),
        script: script.as_ref().map(|(name, content)| InlineFile {
            name: name.clone(),
            content: content.clone(),
        }),
        env: state.run_env.clone(),
        user: user.clone(),
        workdir: workdir.clone(),
        network: match network {
            Network::Isolated => "isolated",
            Network::Host => "host",
            Network::None => "none",
        }
        .to_owned(),
        security: match security {
            SecurityMode::Insecure => "insecure",
            SecurityMode::Sandbox => "sandbox",
        }
        .to_owned(),
        mounts,
        platform: platform_of(&state.config),
    }))
}

/// The platform a RUN op runs for.
fn op_platform(op: &Op) -> String {
    match op {
        Op::Run(run) => run.platform.clone(),
        _ => String::new(),
    }
}

/// `os/arch[/variant]` of an image config.
fn platform_of(config: &kiln_store::spec::ImageConfig) -> String {
    match &config.variant {
        Some(variant) => format!("{}/{}/{variant}", config.os, config.architecture),
        None => format!("{}/{}", config.os, config.architecture),
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
        security,
        workdir,
        user,
        ..
    } = &step.kind
    else {
        return Ok(false);
    };
    let shared = ctx.shared;
    // The Dockerfile may ask for the host's network or for full privileges
    // only when the command line allows it (BuildKit's entitlements).
    let allow = shared.options.allow;
    let not_entitled = |flag: &str, entitlement: &'static str| BuildError::NotEntitled {
        flag: flag.to_owned(),
        entitlement,
    };
    if *network == NetworkMode::Host && !allow.network_host {
        return Err(not_entitled("--network=host", "network.host"));
    }
    let insecure = *security == SecurityMode::Insecure;
    if insecure && !allow.security_insecure {
        return Err(not_entitled("--security=insecure", "security.insecure"));
    }
    let created_by = format!("RUN {} # buildkit", run_command_string(argv, state));
    let history = history_for(created_by.clone(), &shared.created);
    let network = match network {
        NetworkMode::Default => shared.options.network,
        NetworkMode::None => Network::None,
        NetworkMode::Host => Network::Host,
    };
    // Everything that can change what the command does goes into the key;
    // proxy settings stay out, as in BuildKit.
    let mut planned: Vec<run_mounts::PlannedRunMount> = Vec::new();
    let mut inputs = Vec::new();
    for mount in mounts {
        let ssh_index = planned.iter().filter(|m| m.ssh_target().is_some()).count();
        let mount = run_mounts::plan(ctx, mount, workdir, ssh_index)?;
        inputs.push(mount.input.clone());
        planned.push(mount);
    }
    // As BuildKit's exec op: SSH_AUTH_SOCK names the first ssh mount's
    // socket (whether the agent was given or not) unless the stage sets
    // it. The target is in the key already.
    let ssh_auth_sock = planned
        .iter()
        .find_map(|m| m.ssh_target())
        .filter(|_| !state.run_env.iter().any(|(k, _)| k == "SSH_AUTH_SOCK"))
        .map(|target| ("SSH_AUTH_SOCK".to_owned(), target.to_owned()));
    let Some(op) = run_op(state, step, network, inputs) else {
        return Ok(false);
    };
    let key = op.key()?;
    if let Some(record) = ctx.lookup(&key)? {
        ctx.apply_cached(state, &record, history)?;
        return Ok(true);
    }
    ctx.explain(state, &op, None)?;
    // Only a RUN that runs needs the platform's CPU or emulator: a cached
    // one does not.
    shared
        .executor
        .check_platform(&state.config.os, &state.config.architecture)
        .map_err(|reason| BuildError::PlatformNotRunnable {
            platform: op_platform(&op),
            host: kiln_parser::values::Platform::host().to_string(),
            reason,
        })?;
    let mounting = ctx.phase("mounts");
    let mut guards = run_mounts::MountGuards::default();
    let mut run_mounts = Vec::new();
    let mut secret_env = Vec::new();
    for mount in planned {
        let (mount, variable) = run_mounts::make(ctx, mount, &mut guards)?;
        run_mounts.extend(mount);
        secret_env.extend(variable);
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
    mounting.end();
    // The proxy build args, then secrets as variables, go after the
    // stage's variables (and SSH_AUTH_SOCK, which BuildKit adds to them) and replace one of the same name where it stands,
    // as BuildKit's executor appends them and containerd's `WithEnv`
    // merges them. Neither is in the key, the config or the history.
    let mut vars = state.run_env.clone();
    vars.extend(ssh_auth_sock);
    for (k, v) in shared.plan.proxy_env.iter().chain(&secret_env) {
        set_run_env(&mut vars, k, v);
    }
    let env: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let spec = RunSpec {
        layers: shared.lowers(state)?,
        upper: upper.clone(),
        argv: argv.clone(),
        env,
        cwd: workdir.clone(),
        user: user.clone(),
        hostname: BUILD_HOSTNAME.to_owned(),
        network,
        // BuildKit's insecure mode: every capability and no seccomp.
        seccomp: if insecure {
            Seccomp::Unconfined
        } else {
            Seccomp::Default
        },
        privileged: insecure,
        stop_timeout: STOP_TIMEOUT,
        mounts: run_mounts,
        limits: Limits::default(),
        capture: true,
        tty: false,
        interactive: false,
        // A reaping init in front of the step's process: a cancelled
        // build's SIGTERM reaches a shell that has no handler (PID 1 would
        // ignore it and wait out the stop timeout), and orphans a step
        // leaves are reaped instead of filling the pids limit.
        init: true,
        group_add: Vec::new(),
        read_only_root: false,
    };
    let running = std::time::Instant::now();
    let running_phase = ctx.phase("run");
    let lines = OutputLines::new(shared.reporter, ctx.id);
    let outcome = shared.executor.run(
        &spec,
        &|stream, data| lines.push(stream, data),
        Some(&shared.networks),
    );
    let tail = lines.finish();
    running_phase.end();
    let outcome = outcome?;
    log::debug!("{created_by}: ran in {:?}", running.elapsed());
    drop(guards);
    // Interrupted during the run, or before it (the container was then
    // stopped as soon as it existed).
    if kiln_runtime::interrupted() || is_cancelled() {
        cancel();
        return Err(BuildError::Cancelled);
    }
    if outcome.exit_code != 0 {
        let tail = Vec::from(tail).join("\n");
        return Err(BuildError::RunFailed {
            command: argv.join(" "),
            exit_code: outcome.exit_code,
            output: tail,
        });
    }
    ctx.commit_upper(state, &upper, &key, &op, &created_by, history)?;
    Ok(false)
}
