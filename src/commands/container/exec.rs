//! `kiln exec`: a further process in a running container.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use kiln_runtime::{ExecSpec, RunSpec};

/// Arguments of `kiln exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep stdin attached.
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    tty: bool,
    /// Set an environment variable (`K=V`, or `K` to pass the host's value).
    #[arg(short, long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// User (`name`, `uid`, `name:group`, `uid:gid`); default: the
    /// container's.
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory inside the container; default: the container's.
    #[arg(short, long, value_name = "DIR")]
    workdir: Option<String>,
    /// The container, then the command and its arguments.
    #[arg(
        required = true,
        num_args = 2..,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CONTAINER COMMAND [ARG...]"
    )]
    argv: Vec<String>,
}

/// Runs `kiln exec`; the exit status is the command's (126 and 127 when
/// it cannot be run, as `docker exec`).
pub fn run(root: Option<&Path>, args: &ExecArgs) -> anyhow::Result<ExitCode> {
    let [key, command @ ..] = args.argv.as_slice() else {
        bail!("\"kiln exec\" requires at least 2 arguments");
    };
    if key.starts_with('-') {
        bail!("unknown flag: {key}\nSee 'kiln exec --help'.");
    }
    if args.interactive && args.tty && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprintln!("the input device is not a TTY");
        return Ok(ExitCode::FAILURE);
    }
    let container = super::find_in(&super::containers_at(root), key)?;
    let not_running = || anyhow::anyhow!("Container {} is not running", container.config.id);
    if container.state.status != "running" {
        return Err(not_running());
    }
    let Some(pidfd) = super::commands::pidfd(container.state.pid, container.state.pid_start) else {
        return Err(not_running());
    };
    let spec: RunSpec = serde_json::from_value(container.config.run_spec.clone())
        .context("reading the container's run spec")?;
    let mut env = spec.env.clone();
    // As Docker's daemon environment for an exec with a terminal.
    if args.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".to_owned());
    }
    for entry in &args.env {
        if let Some(entry) = crate::commands::run::env_entry(entry)? {
            let key = entry.split('=').next().unwrap_or("").to_owned();
            env.retain(|e| e.split('=').next() != Some(key.as_str()));
            env.push(entry);
        }
    }
    if let Some(dir) = &args.workdir
        && !dir.starts_with('/')
    {
        bail!("the working directory '{dir}' is invalid, it needs to be an absolute path");
    }
    let exec = ExecSpec {
        argv: command.to_vec(),
        env,
        cwd: args.workdir.clone().unwrap_or(spec.cwd),
        user: args.user.clone().unwrap_or(spec.user),
        tty: args.tty,
        interactive: args.interactive,
        privileged: spec.privileged,
        seccomp: spec.seccomp,
        group_add: spec.group_add,
    };
    let code = kiln_runtime::exec(&pidfd, container.state.pid, &exec)
        .with_context(|| format!("cannot exec in container {}", container.config.id))?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(255)))
}
