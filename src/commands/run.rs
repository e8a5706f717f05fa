//! `kiln run`: one process from an image, in Linux namespaces over an
//! overlayfs snapshot. A plain foreground run keeps no container: the
//! writable layer is discarded when the process exits. With `-d` or
//! `--name` (and for `kiln create`) the container is kept in the store and
//! run by a monitor process (see `commands::container`).

mod mounts;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use kiln_runtime::{Limits, Network, RunSpec, Seccomp, SeccompProfile};

/// Docker's default PATH for containers whose image sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Docker's smallest memory limit.
const MIN_MEMORY: u64 = 6 * 1024 * 1024;

/// Arguments of `kiln run`.
#[expect(
    clippy::struct_excessive_bools,
    reason = "Docker's independent switches (--rm, -d, -i, -t, --init, --read-only)"
)]
#[derive(Debug, Args)]
#[command(
    disable_help_flag = true,
    after_help = "Without -d or --name, kiln keeps no container: its writable layer is discarded when its process exits (--rm is in effect). With -d or --name the container is kept (see kiln ps -a) until kiln rm, or until it exits with --rm."
)]
pub struct RunArgs {
    /// Print help (`-h` is --hostname, as in Docker).
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Remove the container when it exits (always the case without -d or
    /// --name).
    #[arg(long)]
    rm: bool,
    /// Run the container in the background and print its ID.
    #[arg(short, long)]
    detach: bool,
    /// Name the container (unique; kept, as with -d; so are containers
    /// given --restart, --log-opt or --label).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Restart policy of a kept container: no, on-failure[:N], always or
    /// unless-stopped (applied by its monitor while it lives; nothing
    /// restarts containers after a reboot).
    #[arg(long, default_value = "no", value_name = "POLICY")]
    restart: String,
    /// Log options of a kept container (json-file): max-size=SIZE,
    /// max-file=N.
    #[arg(long = "log-opt", value_name = "OPT")]
    log_opts: Vec<String>,
    /// Set a label on a kept container (`K=V`).
    #[arg(short = 'l', long = "label", value_name = "K=V")]
    labels: Vec<String>,
    /// Set an environment variable (`K=V`, or `K` to pass the host's value).
    #[arg(short, long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Read environment variables from a file (`K=V` lines, `#` comments).
    #[arg(long = "env-file", value_name = "FILE")]
    env_files: Vec<PathBuf>,
    /// Bind-mount a host path (`/SRC:DST`), mount a named volume
    /// (`NAME:DST`, made on first use) or an anonymous one (`DST`);
    /// options after a second colon: `ro`, `rw`, `nocopy`.
    #[arg(short, long = "volume", value_name = "SRC:DST[:OPTS]")]
    volumes: Vec<String>,
    /// Attach a mount: `type=volume|bind|tmpfs,source=..,target=..`
    /// with `readonly`, `volume-nocopy`, `tmpfs-size=`, `tmpfs-mode=`
    /// (Docker's keys).
    #[arg(long = "mount", value_name = "SPEC")]
    mounts: Vec<String>,
    /// Mount a tmpfs: `DST[:size=SIZE,mode=OCTAL]`.
    #[arg(long = "tmpfs", value_name = "DST[:OPTS]")]
    tmpfs: Vec<String>,
    /// Mount the container's root file system read-only.
    #[arg(long = "read-only")]
    read_only: bool,
    /// Add an additional group to join (a name in the container's
    /// /etc/group, or a number).
    #[arg(long = "group-add", value_name = "GROUP")]
    group_add: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long, value_name = "DIR")]
    workdir: Option<String>,
    /// User (`name`, `uid`, `name:group`, `uid:gid`).
    #[arg(short, long)]
    user: Option<String>,
    /// Overwrite the image's ENTRYPOINT.
    #[arg(long, value_name = "CMD")]
    entrypoint: Option<String>,
    /// Network: `default` (or `bridge`: as root, a kept container joins
    /// the `bridge` network; a foreground run gets an isolated namespace
    /// with outbound NAT through slirp4netns), `host`, `none` (only a
    /// loopback interface), or a network of `kiln network create` (root).
    #[arg(long, default_value = "default", value_name = "NETWORK")]
    network: String,
    /// Publish a container's port to the host:
    /// `[[IP:]HOSTPORT:]PORT[/tcp|udp]` (no host port: a free one; ranges
    /// as `8000-8009:80-89`). Served by a userspace proxy that lives as
    /// long as the container's monitor.
    #[arg(
        short = 'p',
        long = "publish",
        value_name = "[[IP:]HOSTPORT:]PORT[/PROTO]"
    )]
    publish: Vec<String>,
    /// Publish every exposed port (the image's EXPOSE and --expose) on a
    /// free host port.
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// Expose a port or a range of ports (`PORT[/PROTO]`), published by -P.
    #[arg(long = "expose", value_name = "PORT[/PROTO]")]
    expose: Vec<String>,
    /// Add a network-scoped alias for the container (user networks).
    #[arg(long = "network-alias", value_name = "NAME")]
    network_aliases: Vec<String>,
    /// The container's IPv4 address (user networks).
    #[arg(long, value_name = "IP")]
    ip: Option<String>,
    /// Add a custom host-to-IP mapping (`HOST:IP`; bridge networks).
    #[arg(long = "add-host", value_name = "HOST:IP")]
    add_hosts: Vec<String>,
    /// Set custom DNS servers (bridge networks).
    #[arg(long = "dns", value_name = "IP")]
    dns: Vec<String>,
    /// Security options: `seccomp=unconfined` (no seccomp filter) or
    /// `seccomp=PROFILE.json` (a profile in Docker's format instead of
    /// Docker's default one).
    #[arg(long = "security-opt", value_name = "OPT")]
    security_opt: Vec<String>,
    /// Command to run to check health (run as HEALTHCHECK CMD-SHELL by the
    /// container's monitor; the container is kept, as with -d).
    #[arg(long = "health-cmd", value_name = "CMD")]
    health_cmd: Option<String>,
    /// Time between running the check (`30s`, `1m30s`).
    #[arg(long = "health-interval", value_name = "DURATION")]
    health_interval: Option<String>,
    /// Maximum time to allow one check to run.
    #[arg(long = "health-timeout", value_name = "DURATION")]
    health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy.
    #[arg(long = "health-retries", value_name = "N")]
    health_retries: Option<u64>,
    /// Start period for the container to initialize before failures count.
    #[arg(long = "health-start-period", value_name = "DURATION")]
    health_start_period: Option<String>,
    /// Disable any container-specified HEALTHCHECK.
    #[arg(long = "no-healthcheck")]
    no_healthcheck: bool,
    /// Seconds the container has to exit after kiln gets SIGTERM or SIGINT
    /// (passed on to it) before it is killed.
    #[arg(long = "stop-timeout", default_value_t = 10, value_name = "SECONDS")]
    stop_timeout: u64,
    /// Container host name.
    #[arg(long, short = 'h', value_name = "NAME")]
    hostname: Option<String>,
    /// Memory limit (`512m`, `1g`).
    #[arg(short, long, value_name = "SIZE")]
    memory: Option<String>,
    /// Number of CPUs (`1.5`).
    #[arg(long, value_name = "N")]
    cpus: Option<String>,
    /// Maximum number of processes.
    #[arg(long = "pids-limit", value_name = "N")]
    pids_limit: Option<String>,
    /// Keep stdin open.
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    tty: bool,
    /// Run an init inside the container that forwards signals and reaps
    /// processes (the command is then not PID 1).
    #[arg(long)]
    init: bool,
    /// Pull the image before running: missing (when the store lacks it),
    /// always, or never.
    #[arg(long, default_value = "missing", value_parser = ["missing", "always", "never"])]
    pull: String,
    /// The platform to pull from a multi-platform image (OS/ARCH[/VARIANT]).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// The image (by name or ID), then the command and its arguments
    /// (default: the image's CMD). Everything after the image is the
    /// container's, `-e` or `--` included, as with `docker run`.
    #[arg(
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "IMAGE [COMMAND [ARG...]]"
    )]
    argv: Vec<String>,
}

impl RunArgs {
    /// The image argument.
    fn image(&self) -> &str {
        self.argv.first().map_or("", String::as_str)
    }

    /// The command after the image.
    fn command(&self) -> &[String] {
        self.argv.get(1..).unwrap_or_default()
    }
}

/// Runs `kiln run`; the exit status is the container process's, as Docker
/// reports it.
pub fn run(root: Option<&Path>, args: &RunArgs) -> anyhow::Result<ExitCode> {
    run_or_create(root, args, false)
}

/// Runs `kiln create`: the container is kept, not started; its ID is
/// printed.
pub fn create(root: Option<&Path>, args: &RunArgs) -> anyhow::Result<ExitCode> {
    run_or_create(root, args, true)
}

fn run_or_create(root: Option<&Path>, args: &RunArgs, create: bool) -> anyhow::Result<ExitCode> {
    // The list after kiln's options takes hyphens (a command's own
    // flags), so an unknown option of kiln's lands where IMAGE is.
    if args.image().starts_with('-') {
        anyhow::bail!("unknown flag: {}\nSee 'kiln run --help'.", args.image());
    }
    // As the Docker CLI: `-it` needs a terminal on stdin (a pipe would
    // feed a shell that waits on its prompt forever); exit 1, the CLI's.
    // Detached (`-dit`, `create -it`) nothing is attached yet.
    if args.interactive
        && args.tty
        && !args.detach
        && !create
        && !std::io::IsTerminal::is_terminal(&std::io::stdin())
    {
        eprintln!("the input device is not a TTY");
        return Ok(ExitCode::FAILURE);
    }
    let limits = Limits {
        memory: args.memory.as_deref().map(parse_memory).transpose()?,
        cpus: args.cpus.as_deref().map(parse_cpus).transpose()?,
        pids: args
            .pids_limit
            .as_deref()
            .map(|n| {
                n.parse::<u64>().with_context(|| {
                    format!("invalid argument {n:?} for \"--pids-limit\" flag: expected a positive integer")
                })
            })
            .transpose()?,
    };
    let network = match args.network.as_str() {
        "host" => Network::Host,
        "none" => Network::None,
        // The default, or a bridge network (joined through a namespace
        // kiln prepares, which replaces this one).
        _ => Network::Isolated,
    };
    let seccomp = parse_security_opts(&args.security_opt)?;
    let publish = Publish::parse(args)?;
    if network == Network::Host && publish.any() {
        eprintln!("WARNING: Published ports are discarded when using host network mode");
    }
    let mount_requests = mount_requests(args)?;
    if let Some(dir) = &args.workdir
        && !dir.starts_with('/')
    {
        bail!("the working directory '{dir}' is invalid, it needs to be an absolute path");
    }

    let platform = args
        .platform
        .as_deref()
        .map(kiln_store::registry::PlatformSpec::parse)
        .transpose()?;
    let store = super::open_store(root)?;
    let image = resolve_or_pull(&store, args.image(), &args.pull, platform.as_ref())?;
    check_platform(&image, args.image())?;
    let config = image.config.config.clone().unwrap_or_default();
    let command = command_line(&config, args)?;

    let layers = store
        .snapshots(&image.manifest.layers, &image.config.rootfs.diff_ids)
        .with_context(|| format!("cannot prepare the file system of {}", args.image()))?
        .into_iter()
        .map(|snapshot| snapshot.path)
        .collect();
    let container_id = super::container::random_id();
    let hostname = args
        .hostname
        .clone()
        .unwrap_or_else(|| container_id.chars().take(12).collect());
    let image_exposed = config.exposed_ports.clone().unwrap_or_default();
    let env = environment(config.env.as_deref().unwrap_or_default(), &hostname, args)?;
    let image_volumes: Vec<String> = config
        .volumes
        .as_ref()
        .map(|v| v.keys().cloned().collect())
        .unwrap_or_default();
    // Last before the run: from here every path goes through
    // finish_volumes (or, for a kept container, its removal), which
    // removes the anonymous volumes.
    let (mounts, mut volumes) =
        mounts::ContainerVolumes::attach(&store, &container_id, &mount_requests, &image_volumes)?;
    let mut spec = RunSpec {
        layers,
        upper: PathBuf::new(),
        argv: command,
        env,
        cwd: args
            .workdir
            .clone()
            .or(config.working_dir.filter(|d| !d.is_empty()))
            .unwrap_or_else(|| "/".to_owned()),
        user: args.user.clone().or(config.user).unwrap_or_default(),
        hostname,
        network,
        seccomp,
        privileged: false,
        stop_timeout: std::time::Duration::from_secs(args.stop_timeout),
        mounts,
        limits,
        capture: false,
        tty: args.tty,
        interactive: args.interactive,
        init: args.init,
        group_add: args.group_add.clone(),
        read_only_root: args.read_only,
    };
    // What only a kept container has (a name, a restart policy, log
    // options, labels) keeps it, so that no such flag is ignored.
    let keep = create
        || args.detach
        || args.name.is_some()
        || args.restart != "no"
        || !args.log_opts.is_empty()
        || !args.labels.is_empty()
        || args.health_flags_given();
    let endpoints = endpoints_of(args, keep)?;
    if keep {
        let kept_dir = store.container_dir(&container_id);
        let kept = super::container::create::Kept {
            id: container_id,
            image: args.image(),
            name: args.name.as_deref(),
            restart: &args.restart,
            log_opts: &args.log_opts,
            labels: &args.labels,
            auto_remove: args.rm,
            healthcheck: healthcheck(config.healthcheck.as_ref(), args)?,
            port_bindings: &publish.mappings,
            publish_all: args.publish_all,
            exposed: &publish.exposed,
            endpoints,
            extra_hosts: &args.add_hosts,
            dns: &args.dns,
        };
        let created =
            super::container::create::from_run(&store, &image, &kept, spec, create, args.detach);
        // A container that could not be made releases its volumes; one
        // made (even if it could not start) holds them until removed.
        if created.is_err() && !kept_dir.is_dir() {
            finish_volumes(&store, volumes, false)?;
            return created;
        }
        // Started: the volumes it was to fill are filled.
        if !create {
            volumes.mark_filled(&store)?;
        }
        volumes.keep_for_container();
        return created;
    }
    let scratch = tempfile::Builder::new()
        .prefix("container-")
        .tempdir_in(store.tmp_dir())
        .context("cannot create the container's writable layer")?;
    let upper = scratch.path().join("upper");
    std::fs::create_dir(&upper).with_context(|| format!("cannot create {}", upper.display()))?;
    spec.upper = upper;
    // Published ports: the proxy lives in this process while the
    // container runs, bound before it starts (and before its network, whose
    // DNAT rules name the host ports chosen), so a port in use fails the
    // run.
    let proxy = if network == Network::Isolated && publish.any() {
        match bind_published(&publish, image_exposed) {
            Ok(proxy) => Some(proxy),
            Err(e) => {
                let _ = finish_volumes(&store, volumes, false);
                return Err(e.context(format!("cannot run {}", args.image())));
            }
        }
    } else {
        None
    };
    // A foreground run on a user network: its leases are this
    // process's, its /etc files in the scratch directory.
    let attached = if endpoints.is_empty() {
        None
    } else {
        let who = super::network::endpoints::Identity {
            id: container_id.clone(),
            name: container_id.chars().take(12).collect(),
            hostname: spec.hostname.clone(),
            extra_hosts: args.add_hosts.clone(),
            dns: args.dns.clone(),
            ports: proxy
                .as_ref()
                .map(kiln_runtime::ports::PortProxy::published)
                .unwrap_or_default(),
        };
        Some(super::network::endpoints::attach(
            store.root(),
            &who,
            &endpoints,
            scratch.path(),
        )?)
    };
    let hooks = kiln_runtime::Hooks {
        netns: attached
            .as_ref()
            .map(|a| std::os::fd::AsFd::as_fd(&a.netns)),
        etc: attached.as_ref().map(|_| scratch.path()),
        ..kiln_runtime::Hooks::default()
    };
    let outcome = if let Some(proxy) = &proxy {
        run_published(&spec, proxy, hooks)
    } else if attached.is_some() {
        kiln_runtime::run_hooked(&spec, hooks).map_err(anyhow::Error::from)
    } else {
        kiln_runtime::run(&spec).map_err(anyhow::Error::from)
    };
    if let Some(attached) = attached {
        attached.detach();
    }
    // The NAT helper is reaped in the background; it must not outlive kiln.
    kiln_runtime::wait_for_helpers();
    let outcome = finish_volumes(&store, volumes, outcome.is_ok())
        .and_then(|()| outcome.with_context(|| format!("cannot run {}", args.image())))?;
    drop(scratch);
    Ok(ExitCode::from(
        u8::try_from(outcome.exit_code).unwrap_or(255),
    ))
}

impl RunArgs {
    /// Whether a `--health-*` or `--no-healthcheck` flag is given: only a
    /// kept container has a monitor to run checks.
    fn health_flags_given(&self) -> bool {
        self.health_cmd.is_some()
            || self.health_interval.is_some()
            || self.health_timeout.is_some()
            || self.health_retries.is_some()
            || self.health_start_period.is_some()
            || self.no_healthcheck
    }
}

/// The container's `Config.Healthcheck`: the image's, with the
/// `--health-*` flags over it (Docker's rules and messages).
fn healthcheck(
    image: Option<&serde_json::Value>,
    args: &RunArgs,
) -> anyhow::Result<Option<serde_json::Value>> {
    let tuned = args.health_cmd.is_some()
        || args.health_interval.is_some()
        || args.health_timeout.is_some()
        || args.health_retries.is_some()
        || args.health_start_period.is_some();
    if args.no_healthcheck {
        if tuned {
            bail!("--no-healthcheck conflicts with --health-* options");
        }
        return Ok(Some(serde_json::json!({"Test": ["NONE"]})));
    }
    if !tuned {
        return Ok(image.cloned());
    }
    let mut check = match image {
        Some(serde_json::Value::Object(map)) => map.clone(),
        _ => serde_json::Map::new(),
    };
    if let Some(cmd) = &args.health_cmd {
        check.insert("Test".to_owned(), serde_json::json!(["CMD-SHELL", cmd]));
    }
    for (flag, key, value) in [
        ("interval", "Interval", &args.health_interval),
        ("timeout", "Timeout", &args.health_timeout),
        ("start-period", "StartPeriod", &args.health_start_period),
    ] {
        if let Some(text) = value {
            let nanos = kiln_parser::values::parse_duration(text).map_err(|e| {
                anyhow::anyhow!("invalid argument {text:?} for \"--health-{flag}\" flag: {e}")
            })?;
            if nanos < 0 {
                bail!("--health-{flag} cannot be negative");
            }
            check.insert(key.to_owned(), serde_json::json!(nanos));
        }
    }
    if let Some(retries) = args.health_retries {
        check.insert("Retries".to_owned(), serde_json::json!(retries));
    }
    Ok(Some(serde_json::Value::Object(check)))
}

/// The `-p`, `-P` and `--expose` of a run.
struct Publish {
    mappings: Vec<super::container::publish::PortMapping>,
    /// `--expose` and the ports `-p` names (Docker exposes those too).
    exposed: Vec<String>,
    all: bool,
}

impl Publish {
    fn parse(args: &RunArgs) -> anyhow::Result<Publish> {
        use super::container::publish;
        let mut mappings = Vec::new();
        for raw in &args.publish {
            mappings.extend(publish::parse_publish(raw)?);
        }
        let mut exposed = Vec::new();
        for raw in &args.expose {
            exposed.extend(publish::parse_expose(raw)?);
        }
        exposed.extend(mappings.iter().map(|m| m.port.clone()));
        Ok(Publish {
            mappings,
            exposed,
            all: args.publish_all,
        })
    }

    fn any(&self) -> bool {
        !self.mappings.is_empty() || self.all
    }
}

/// The proxy of a foreground run's published ports, bound and serving.
fn bind_published(
    publish: &Publish,
    image_exposed: std::collections::BTreeMap<String, serde_json::Value>,
) -> anyhow::Result<kiln_runtime::ports::PortProxy> {
    use super::container::publish as ports;
    let mut exposed: serde_json::Map<String, serde_json::Value> =
        image_exposed.into_iter().collect();
    for port in &publish.exposed {
        exposed.insert(port.clone(), serde_json::json!({}));
    }
    let config = serde_json::json!({"ExposedPorts": exposed});
    let host_config = serde_json::json!({
        "PortBindings": ports::port_bindings(&publish.mappings),
        "PublishAllPorts": publish.all,
    });
    let specs = ports::port_specs(&config, &host_config)?;
    let mut proxy = kiln_runtime::ports::PortProxy::bind(&specs)?;
    proxy.serve().context("cannot start the port proxy")?;
    Ok(proxy)
}

/// A foreground run with published ports: `proxy` forwards to the
/// container once its process exists.
fn run_published(
    spec: &RunSpec,
    proxy: &kiln_runtime::ports::PortProxy,
    hooks: kiln_runtime::Hooks<'_>,
) -> anyhow::Result<kiln_runtime::RunOutcome> {
    let done = std::sync::atomic::AtomicBool::new(false);
    let init_pid = std::sync::atomic::AtomicI32::new(0);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            super::container::monitor::follow_start(&init_pid, &done, spec.init, |pid| {
                if let Err(e) = super::container::monitor::publish_to(proxy, pid) {
                    eprintln!("kiln: cannot publish the container's ports: {e}");
                }
            });
        });
        let started = |pid: i32| init_pid.store(pid, std::sync::atomic::Ordering::SeqCst);
        let outcome = kiln_runtime::run_hooked(
            spec,
            kiln_runtime::Hooks {
                started: Some(&started),
                ..hooks
            },
        );
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        outcome.map_err(anyhow::Error::from)
    })
}

/// The bridge networks a run joins: `--network NAME` of a user network,
/// or for a container kept as root the default `bridge` network (a
/// foreground run keeps slirp4netns: see docs/architecture.md,
/// "Networks"). `--network-alias` and `--ip` need a user network,
/// `--add-host` and `--dns` a bridge network, as Docker's do.
fn endpoints_of(
    args: &RunArgs,
    keep: bool,
) -> anyhow::Result<Vec<super::network::endpoints::EndpointRequest>> {
    use kiln_store::networks::DEFAULT_NETWORK;
    // The host's root (rootless kiln is root of its own user namespace).
    let root = !kiln_rootfs::userns::rootless();
    let name = match args.network.as_str() {
        "default" | "bridge" if keep && root => Some(DEFAULT_NETWORK),
        "host" | "none" | "default" | "bridge" => None,
        other => Some(other),
    };
    let user = name.is_some_and(|n| n != DEFAULT_NETWORK);
    if !user && !args.network_aliases.is_empty() {
        bail!("network-scoped alias is supported only for containers in user defined networks");
    }
    if !user && args.ip.is_some() {
        bail!("user specified IP address is supported on user defined networks only");
    }
    if name.is_none() && !(args.add_hosts.is_empty() && args.dns.is_empty()) {
        bail!(
            "--add-host and --dns need a bridge network: a container kept as root, or --network NAME (network {} has kiln's own /etc/hosts and resolv.conf)",
            args.network
        );
    }
    super::network::endpoints::check_add_hosts(&args.add_hosts)?;
    for server in &args.dns {
        if server.parse::<std::net::IpAddr>().is_err() {
            bail!(
                "invalid argument \"{server}\" for \"--dns\" flag: {server} is not an ip address"
            );
        }
    }
    let Some(name) = name else {
        return Ok(Vec::new());
    };
    super::network::endpoints::check_root(name)?;
    Ok(vec![super::network::endpoints::EndpointRequest {
        network: name.to_owned(),
        aliases: args.network_aliases.clone(),
        ipv4_address: args.ip.clone(),
    }])
}

/// `--security-opt` values as Docker reads them (`seccomp=...`, or the
/// older `seccomp:...`); the last seccomp option wins.
fn parse_security_opts(options: &[String]) -> anyhow::Result<Seccomp> {
    let mut seccomp = Seccomp::Default;
    for option in options {
        let (key, value) = option
            .split_once('=')
            .or_else(|| option.split_once(':'))
            .unwrap_or((option.as_str(), ""));
        match (key, value) {
            ("seccomp", "unconfined") => seccomp = Seccomp::Unconfined,
            ("seccomp", "") => bail!(
                "invalid --security-opt {option:?}: seccomp needs a value (unconfined or a profile file)"
            ),
            ("seccomp", path) => {
                seccomp = Seccomp::Profile(Box::new(SeccompProfile::from_file(Path::new(path))?));
            }
            _ => bail!(
                "invalid --security-opt {option:?}: kiln supports seccomp=unconfined and seccomp=PROFILE.json"
            ),
        }
    }
    Ok(seccomp)
}

/// ENTRYPOINT and CMD combined as Docker does: arguments replace CMD;
/// `--entrypoint` replaces ENTRYPOINT and drops the image's CMD.
fn command_line(
    config: &kiln_store::spec::ContainerConfig,
    args: &RunArgs,
) -> anyhow::Result<Vec<String>> {
    let (entrypoint, image_cmd) = match &args.entrypoint {
        Some(e) if e.is_empty() => (Vec::new(), Vec::new()),
        Some(e) => (vec![e.clone()], Vec::new()),
        None => (
            config.entrypoint.clone().unwrap_or_default(),
            config.cmd.clone().unwrap_or_default(),
        ),
    };
    let cmd = if args.command().is_empty() {
        image_cmd
    } else {
        args.command().to_vec()
    };
    let full: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if full.is_empty() {
        bail!(
            "no command specified: the image has no ENTRYPOINT or CMD; give one after the image name"
        );
    }
    Ok(full)
}

/// The process environment: the image's, then `--env-file`s, then `-e`,
/// with Docker's default PATH and HOSTNAME.
fn environment(
    image_env: &[String],
    hostname: &str,
    args: &RunArgs,
) -> anyhow::Result<Vec<String>> {
    let mut env: Vec<String> = Vec::new();
    let mut set = |entry: String| {
        let key = entry.split('=').next().unwrap_or("").to_owned();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(entry);
    };
    set(format!("HOSTNAME={hostname}"));
    // As Docker: a terminal gets TERM=xterm unless the image or -e sets it.
    if args.tty {
        set("TERM=xterm".to_owned());
    }
    for entry in image_env {
        set(entry.clone());
    }
    for file in &args.env_files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read env file {}", file.display()))?;
        for (number, line) in text.lines().enumerate() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match env_entry(line) {
                Ok(Some(entry)) => set(entry),
                Ok(None) => {}
                Err(e) => bail!("{}:{}: {e}", file.display(), number + 1),
            }
        }
    }
    for entry in &args.env {
        if let Some(entry) = env_entry(entry)? {
            set(entry);
        }
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    Ok(env)
}

/// `K=V` as given, or `K` alone: the host's value, or nothing when unset
/// (as Docker does).
pub(crate) fn env_entry(entry: &str) -> anyhow::Result<Option<String>> {
    let key = entry.split('=').next().unwrap_or("");
    if key.is_empty() {
        bail!("invalid environment variable: {entry}");
    }
    if entry.contains('=') {
        return Ok(Some(entry.to_owned()));
    }
    Ok(std::env::var(key)
        .ok()
        .map(|value| format!("{key}={value}")))
}

/// `-v`, then `--mount`, then `--tmpfs`, parsed.
fn mount_requests(args: &RunArgs) -> anyhow::Result<Vec<mounts::MountRequest>> {
    let mut requests = Vec::new();
    for spec in &args.volumes {
        requests.push(mounts::parse_volume(spec)?);
    }
    for spec in &args.mounts {
        requests.push(mounts::parse_mount(spec)?);
    }
    for spec in &args.tmpfs {
        requests.push(mounts::parse_tmpfs(spec)?);
    }
    Ok(requests)
}

/// After the run: the volumes it filled are recorded as filled (when it
/// started), then let go, its anonymous ones removed (kiln keeps no
/// containers, so `--rm` is in effect).
fn finish_volumes(
    store: &kiln_store::Store,
    mut volumes: mounts::ContainerVolumes,
    started: bool,
) -> anyhow::Result<()> {
    let filled = if started {
        volumes.mark_filled(store)
    } else {
        Ok(())
    };
    let released = volumes.release(store, true);
    filled.and(released)
}

fn parse_memory(text: &str) -> anyhow::Result<u64> {
    let bytes = crate::units::parse_size(text)
        .with_context(|| format!("invalid argument {text:?} for \"-m, --memory\" flag"))?;
    if bytes < MIN_MEMORY {
        bail!("Minimum memory limit allowed is 6MB");
    }
    Ok(bytes)
}

fn parse_cpus(text: &str) -> anyhow::Result<f64> {
    let cpus: f64 = text.parse().ok().filter(|c: &f64| c.is_finite()).with_context(|| {
        format!("invalid argument {text:?} for \"--cpus\" flag: failed to parse {text} as a rational number")
    })?;
    let available = std::thread::available_parallelism()
        .ok()
        .and_then(|n| u32::try_from(n.get()).ok())
        .unwrap_or(1);
    if cpus < 0.01 || cpus > f64::from(available) {
        bail!(
            "range of CPUs is from 0.01 to {available}.00, as there are only {available} CPUs available"
        );
    }
    Ok(cpus)
}

/// Fails, saying what is missing, when this machine cannot run the
/// image's executables (another architecture without a qemu-user-static
/// handler), as a build's RUN does; an image without a platform runs.
fn check_platform(image: &kiln_store::Image, name: &str) -> anyhow::Result<()> {
    let config = &image.config;
    if config.architecture.is_empty() {
        return Ok(());
    }
    let os = if config.os.is_empty() {
        "linux"
    } else {
        &config.os
    };
    kiln_runtime::binfmt::emulation(os, &config.architecture).map_err(|reason| {
        let platform = match &config.variant {
            Some(variant) => format!("{os}/{}/{variant}", config.architecture),
            None => format!("{os}/{}", config.architecture),
        };
        anyhow::anyhow!(
            "cannot run {name} ({platform}) on this {} machine: {reason}",
            kiln_parser::values::Platform::host()
        )
    })?;
    Ok(())
}

/// The image to run: pulled first with `--pull always`, or when the store
/// lacks it with `--pull missing` (as `docker run` does, progress on
/// stderr); never pulled with `--pull never`.
fn resolve_or_pull(
    store: &kiln_store::Store,
    name: &str,
    policy: &str,
    platform: Option<&kiln_store::registry::PlatformSpec>,
) -> anyhow::Result<kiln_store::Image> {
    // `--platform` picks from a multi-platform image in the store too.
    let found = store.resolve_platform(name, platform);
    let missing = matches!(found, Err(kiln_store::StoreError::ImageNotFound(_)));
    let pull = match policy {
        "always" => true,
        "never" => false,
        _ => missing,
    };
    if !pull {
        return Ok(found?);
    }
    let reference = super::parse_reference(name)?;
    if missing {
        eprintln!(
            "Unable to find image '{}' locally",
            reference.familiar_string()
        );
    }
    let client =
        kiln_store::registry::Client::new(kiln_store::registry::RegistryConfig::from_env());
    let mode = crate::progress::ProgressMode::Auto.resolve(false);
    super::pull::pull_image(store, &client, &reference, platform.cloned(), mode)?;
    Ok(store.resolve_platform(&reference.to_string(), platform)?)
}
