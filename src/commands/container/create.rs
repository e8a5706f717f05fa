//! Creating a kept container (`run -d`, `run --name`, `create`) and
//! starting it: the monitor is spawned detached and reports on a pipe
//! once the container's process exists (or why it could not start).

use std::io::{BufRead as _, BufReader};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context as _, bail};
use kiln_runtime::RunSpec;
use kiln_store::Store;
use kiln_store::containers::{self, ContainerConfig, ContainerState, UPPER_DIR};
use serde_json::{Value, json};

use super::{Container, STOPPED_MARKER};

/// The container's program could not be executed (Docker's start
/// failure): the runtime's message and exit code (126 or 127).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StartFailed {
    /// What the runtime said.
    pub message: String,
    /// 126 (not executable) or 127 (not found).
    pub code: u8,
}

/// [`start`] found the container running (another start won the race).
#[derive(Debug, thiserror::Error)]
#[error("the container is already running")]
pub struct AlreadyRunning;

/// The monitor's `argv[1]`.
pub const MONITOR_ARG: &str = "__kiln-monitor";

/// What `kiln run` hands over for a container it keeps.
pub struct Kept<'a> {
    /// The container ID (its first 12 digits are the default host name).
    pub id: String,
    /// The image as named.
    pub image: &'a str,
    /// `--name`.
    pub name: Option<&'a str>,
    /// `--restart`.
    pub restart: &'a str,
    /// `--log-opt`s.
    pub log_opts: &'a [String],
    /// `--label`s.
    pub labels: &'a [String],
    /// `--rm`.
    pub auto_remove: bool,
    /// `Config.Healthcheck`: the image's with the `--health-*` flags.
    pub healthcheck: Option<Value>,
    /// `-p`.
    pub port_bindings: &'a [super::publish::PortMapping],
    /// `-P`.
    pub publish_all: bool,
    /// `--expose`, and the ports `-p` names.
    pub exposed: &'a [String],
    /// The bridge networks it joins (none: `spec.network` as it is).
    pub endpoints: Vec<crate::commands::network::endpoints::EndpointRequest>,
    /// `--add-host`s.
    pub extra_hosts: &'a [String],
    /// `--dns` servers.
    pub dns: &'a [String],
}

/// A restart policy, as Docker's `HostConfig.RestartPolicy`.
pub fn parse_restart(policy: &str) -> anyhow::Result<(String, u32)> {
    let (name, count) = policy.split_once(':').unwrap_or((policy, ""));
    match (name, count) {
        ("no" | "always" | "unless-stopped" | "on-failure", "") => Ok((name.to_owned(), 0)),
        ("on-failure", n) => {
            let n = n
                .parse::<u32>()
                .with_context(|| format!("invalid restart policy format: maximum retry count must be an integer: {policy}"))?;
            Ok((name.to_owned(), n))
        }
        ("always" | "unless-stopped" | "no", _) => {
            bail!(
                "invalid restart policy format: maximum retry count can only be used with 'on-failure'"
            )
        }
        _ => bail!("invalid restart policy format: {policy}"),
    }
}

/// `--log-opt`s of the json-file driver as Docker's `LogConfig.Config`.
fn parse_log_opts(options: &[String]) -> anyhow::Result<serde_json::Map<String, Value>> {
    let mut config = serde_json::Map::new();
    for option in options {
        let Some((key, value)) = option.split_once('=') else {
            bail!("invalid log opt format: {option}");
        };
        match key {
            "max-size" => {
                crate::units::parse_size(value)
                    .with_context(|| format!("invalid log opt max-size {value:?}"))?;
            }
            "max-file" => {
                let n: u32 = value.parse().ok().filter(|n| *n >= 1).with_context(|| {
                    format!("invalid log opt max-file {value:?}: expected a positive integer")
                })?;
                let _ = n;
            }
            _ => bail!("unknown log opt '{key}' for json-file log driver"),
        }
        config.insert(key.to_owned(), Value::String(value.to_owned()));
    }
    if config.contains_key("max-file") && !config.contains_key("max-size") {
        bail!("max-file cannot be set without max-size");
    }
    Ok(config)
}

/// Creates the container `kept` describes from `spec` (its upper directory
/// is the container's own), then starts it unless `create_only`; without
/// `detach` (a named foreground run) its output is followed until it ends.
pub fn from_run(
    store: &Store,
    image: &kiln_store::Image,
    kept: &Kept<'_>,
    mut spec: RunSpec,
    create_only: bool,
    detach: bool,
) -> anyhow::Result<ExitCode> {
    let name = match kept.name {
        Some(name) => {
            super::check_name(name)?;
            name.trim_start_matches('/').to_owned()
        }
        None => super::random_name(store, &kept.id)?,
    };
    let (restart, retries) = parse_restart(kept.restart)?;
    if kept.auto_remove && restart != "no" {
        bail!("Conflicting options: --restart and --rm");
    }
    let log_config = parse_log_opts(kept.log_opts)?;
    let mut labels = image
        .config
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    for label in kept.labels {
        let (k, v) = label.split_once('=').unwrap_or((label.as_str(), ""));
        labels.insert(k.to_owned(), v.to_owned());
    }
    let image_config = image.config.config.clone().unwrap_or_default();
    let mut exposed_ports = image_config.exposed_ports.clone().unwrap_or_default();
    for port in kept.exposed {
        exposed_ports.insert(port.clone(), json!({}));
    }
    let dir = store.container_dir(&kept.id);
    spec.upper = dir.join(UPPER_DIR);
    spec.capture = true;
    let path = spec.argv.first().cloned().unwrap_or_default();
    let args: Vec<String> = spec.argv.iter().skip(1).cloned().collect();
    let network = match (kept.endpoints.first(), spec.network) {
        (Some(endpoint), _) => endpoint.network.as_str(),
        (None, kiln_runtime::Network::Isolated) => "bridge",
        (None, kiln_runtime::Network::Host) => "host",
        (None, kiln_runtime::Network::None) => "none",
    };
    // An unknown network is refused before the container exists.
    if !kept.endpoints.is_empty() {
        let nets = kiln_store::networks::Networks::at(store.root());
        let lock = nets.lock()?;
        for endpoint in &kept.endpoints {
            crate::commands::network::endpoints::resolve(&nets, &lock, &endpoint.network)?;
        }
    }
    let binds: Vec<String> = spec
        .mounts
        .iter()
        .filter_map(|m| match m {
            kiln_runtime::Mount::Bind {
                source,
                target,
                read_only,
            } => Some(format!(
                "{}:{target}{}",
                source.display(),
                if *read_only { ":ro" } else { "" }
            )),
            kiln_runtime::Mount::Tmpfs { .. } => None,
            // A named volume as Docker lists it (`NAME:/path`); anonymous
            // ones (64 hex digits) are not in Binds.
            kiln_runtime::Mount::Volume {
                source,
                target,
                read_only,
                ..
            } => source
                .parent()
                .and_then(|dir| dir.file_name())
                .map(|name| name.to_string_lossy().into_owned())
                .filter(|name| !containers::is_container_id(name))
                .map(|name| format!("{name}:{target}{}", if *read_only { ":ro" } else { "" })),
        })
        .collect();
    let config = ContainerConfig {
        id: kept.id.clone(),
        name,
        created: jiff::Timestamp::now().to_string(),
        image: kept.image.to_owned(),
        image_id: image.id.to_string(),
        manifest_digest: image.manifest_digest.to_string(),
        path,
        args,
        config: json!({
            "Hostname": spec.hostname,
            "Domainname": "",
            "User": spec.user,
            "AttachStdin": !detach && spec.interactive,
            "AttachStdout": !detach,
            "AttachStderr": !detach,
            "ExposedPorts": if exposed_ports.is_empty() { Value::Null } else { json!(exposed_ports) },
            "Tty": spec.tty,
            "OpenStdin": spec.interactive,
            "StdinOnce": !detach && spec.interactive,
            "Env": spec.env,
            "Cmd": spec.argv,
            "Healthcheck": kept.healthcheck,
            "Image": kept.image,
            "Volumes": image_config.volumes,
            "WorkingDir": spec.cwd,
            "Entrypoint": Value::Null,
            "OnBuild": Value::Null,
            "Labels": labels,
            "StopSignal": image_config.stop_signal,
            "StopTimeout": spec.stop_timeout.as_secs(),
        }),
        host_config: json!({
            "Binds": if binds.is_empty() { Value::Null } else { json!(binds) },
            "LogConfig": {"Type": "json-file", "Config": log_config},
            "NetworkMode": network,
            "PortBindings": super::publish::port_bindings(kept.port_bindings),
            "PublishAllPorts": kept.publish_all,
            "ExtraHosts": if kept.extra_hosts.is_empty() { Value::Null } else { json!(kept.extra_hosts) },
            "Dns": kept.dns,
            "RestartPolicy": {"Name": restart, "MaximumRetryCount": retries},
            "AutoRemove": kept.auto_remove,
            "Privileged": spec.privileged,
            "ReadonlyRootfs": false,
            "Memory": spec.limits.memory.unwrap_or(0),
            "NanoCpus": spec.limits.cpus.map_or(0.0, |c| c * 1e9),
            "PidsLimit": spec.limits.pids,
            "SecurityOpt": match &spec.seccomp {
                kiln_runtime::Seccomp::Unconfined => json!(["seccomp=unconfined"]),
                _ => Value::Null,
            },
        }),
        run_spec: serde_json::to_value(&spec).context("cannot record the run spec")?,
    };
    let dir = store
        .create_container(&config, &ContainerState::created())
        .map_err(anyhow::Error::from)?;
    if !kept.endpoints.is_empty() {
        crate::commands::network::endpoints::write_endpoints(&dir, &kept.endpoints)?;
    }
    if create_only {
        println!("{}", config.id);
        return Ok(ExitCode::SUCCESS);
    }
    let container = Container {
        dir,
        config,
        state: ContainerState::created(),
    };
    let log = if detach || spec.tty {
        None
    } else {
        Some(super::logs::Log::open(&container)?)
    };
    // With a terminal the foreground run attaches through the monitor's
    // socket (its stdin, raw, goes to the container's terminal); without,
    // stdin goes through a FIFO and the output is followed in the log.
    let attach = spec.tty && !detach;
    let started = start_with(&container, spec.interactive && !detach && !attach, attach);
    let (monitor, stream) = match started {
        Ok(started) => started,
        // As `docker run`: the runtime's message, and 126 or 127.
        Err(e) if e.is::<StartFailed>() => {
            let code = e.downcast_ref::<StartFailed>().map_or(127, |f| f.code);
            crate::output::print_error(&e);
            return Ok(ExitCode::from(code));
        }
        Err(e) => return Err(e),
    };
    if detach {
        println!("{}", container.config.id);
        return Ok(ExitCode::SUCCESS);
    }
    match (log, stream) {
        (_, Some(stream)) => {
            super::attach::relay_started(&container, stream, monitor, spec.interactive)
        }
        (Some(log), None) => super::logs::attach(&container, log, monitor),
        (None, None) => Ok(ExitCode::SUCCESS),
    }
}

/// Starts `container` (created or exited): spawns its monitor, detached
/// from this process's session, and returns once the container's process
/// exists, or with the reason it could not start. With `stdin`, this
/// process's stdin is passed on to the container through a FIFO. The
/// monitor, a child of this process, exits with the container's exit code.
pub fn start(container: &Container, stdin: bool) -> anyhow::Result<std::process::Child> {
    start_with(container, stdin, false).map(|(monitor, _)| monitor)
}

/// [`start`], and with `attach` the monitor takes this process in as its
/// first client before the container starts: the connection comes back
/// with the monitor.
pub fn start_with(
    container: &Container,
    stdin: bool,
    attach: bool,
) -> anyhow::Result<(std::process::Child, Option<UnixStream>)> {
    let dir = &container.dir;
    // One starter at a time: the lock is held until the monitor has
    // reported, so a second `start` sees the container running.
    let lock_path = dir.join("start.lock");
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    if containers::current_state(dir)
        .is_ok_and(|s| matches!(s.status.as_str(), "running" | "restarting"))
    {
        bail!(AlreadyRunning);
    }
    // A new start: an earlier stop no longer applies; a killed monitor's
    // run directory is garbage.
    let _ = std::fs::remove_file(dir.join(STOPPED_MARKER));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(".kiln-run-")
            {
                let _ = kiln_store::store::remove_tree(&entry.path());
            }
        }
    }
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(dir.join("monitor.log"))
        .with_context(|| format!("cannot open {}", dir.join("monitor.log").display()))?;
    let mut command = Command::new("/proc/self/exe");
    command
        .arg(MONITOR_ARG)
        .arg(dir)
        // The starter's log level, for the monitor's own log.
        .env("KILN_LOG", log::max_level().to_string().to_lowercase())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    let fifo = dir.join("stdin");
    if stdin {
        let _ = std::fs::remove_file(&fifo);
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes())
            .context("the container directory's path holds a NUL byte")?;
        // SAFETY: a NUL-terminated path.
        if unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot create {}", fifo.display()));
        }
        command.arg("--stdin");
    }
    if attach {
        command.arg("--attach");
    }
    // SAFETY: setsid is async-signal-safe; the monitor leaves the
    // caller's session, so the terminal's hangup or Ctrl-C never reach it.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .context("cannot start the container's monitor")?;
    if stdin {
        // Opening the FIFO meets the monitor's open: then stdin flows.
        let mut writer = std::fs::File::options()
            .write(true)
            .open(&fifo)
            .with_context(|| format!("cannot open {}", fifo.display()))?;
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut writer);
        });
    }
    let mut line = String::new();
    let mut stream = None;
    if let Some(stdout) = child.stdout.take() {
        let mut reader = BufReader::new(stdout);
        reader
            .read_line(&mut line)
            .context("cannot read from the container's monitor")?;
        if attach && line.trim_end() == "listening" {
            let mut attached = super::attach::connect(container)?;
            // The monitor waits for it before the container starts.
            super::attach::send_window(&mut attached)
                .context("cannot attach to the container's monitor")?;
            stream = Some(attached);
            line.clear();
            reader
                .read_line(&mut line)
                .context("cannot read from the container's monitor")?;
        }
    }
    let line = line.trim_end();
    if let Some(code) = line.strip_prefix("exited ")
        && let Ok(code @ (126 | 127)) = code.parse::<u8>()
        && let Some(message) = exec_failure(container)
    {
        let _ = child.wait();
        return Err(StartFailed { message, code }.into());
    }
    if line.starts_with("running") || line.starts_with("exited") {
        return Ok((child, stream));
    }
    if let Some(message) = line.strip_prefix("error ") {
        bail!("{message}");
    }
    let _ = child.wait();
    bail!(
        "the container's monitor ended before the container started; see {}",
        dir.join("monitor.log").display()
    )
}

/// The runtime's message when the container's program could not be
/// executed: the last line of its log, if it is that message.
fn exec_failure(container: &Container) -> Option<String> {
    let log = super::monitor::log_path(&container.dir, &container.config.id);
    let text = std::fs::read_to_string(log).ok()?;
    let last: Value = serde_json::from_str(text.lines().last()?).ok()?;
    let message = last.get("log")?.as_str()?;
    message
        .strip_prefix("kiln: ")
        .filter(|m| m.starts_with("unable to start container process: "))
        .map(|m| m.trim_end().to_owned())
}
