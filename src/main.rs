//! The `kiln` command line: a daemonless Dockerfile builder and image
//! toolkit. This crate only wires the library crates to clap and formats
//! their output; stdout carries data, stderr carries logs and errors.

mod commands;

/// mimalloc instead of glibc's allocator: a no-op rebuild of a large
/// context makes a few allocations per file, and glibc's malloc and free
/// were a fifth of its time (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod output;
mod progress;
mod table;
mod template;
mod trace;
mod transfer;
mod units;
pub(crate) mod userns;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// A daemonless Dockerfile builder and image toolkit.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, long_about = None)]
struct Cli {
    /// The image store directory.
    #[arg(
        long,
        global = true,
        env = "KILN_ROOT",
        value_name = "DIR",
        long_help = "The image store directory (default: /var/lib/kiln as root, $XDG_DATA_HOME/kiln otherwise)"
    )]
    root: Option<PathBuf>,

    /// How much to log on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogLevel::Warn, env = "KILN_LOG")]
    log_level: LogLevel,

    #[command(subcommand)]
    command: Command,
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build an image from a Dockerfile and a context.
    Build(commands::build::BuildArgs),
    /// Parse a Dockerfile and show the build plan, its AST or its JSON form.
    Parse(commands::parse::ParseArgs),
    /// Run a command in a new container (kept with -d or --name).
    Run(commands::run::RunArgs),
    /// Create a container without starting it.
    Create(commands::run::RunArgs),
    /// Start stopped or created containers.
    Start(commands::container::commands::StartArgs),
    /// Attach local stdin, stdout and stderr to a running container.
    Attach(commands::container::attach::AttachArgs),
    /// Stop running containers (stop signal, then SIGKILL after a timeout).
    Stop(commands::container::commands::StopArgs),
    /// Restart containers.
    Restart(commands::container::commands::StopArgs),
    /// Send a signal to running containers.
    Kill(commands::container::commands::KillArgs),
    /// Wait for containers to stop and print their exit codes.
    Wait(commands::container::commands::WaitArgs),
    /// Remove containers.
    Rm(commands::container::commands::RmArgs),
    /// List containers.
    Ps(commands::container::ps::PsArgs),
    /// Show a container's output.
    Logs(commands::container::logs::LogsArgs),
    /// Run a command in a running container.
    Exec(commands::container::exec::ExecArgs),
    /// Create a new image from a container's changes.
    Commit(commands::container::commit::CommitArgs),
    /// Show the running processes of a container.
    Top(commands::container::top::TopArgs),
    /// List port mappings or a specific mapping for the container.
    Port(commands::container::port::PortArgs),
    /// Copy files/folders between a container and the local filesystem.
    Cp(commands::container::cp::CpArgs),
    /// Manage containers (Docker's `docker container` commands).
    Container {
        /// What to do.
        #[command(subcommand)]
        command: ContainerCommand,
    },
    /// Create a one-layer image from a root file system tarball or directory.
    Import(commands::import::ImportArgs),
    /// List images.
    Images(commands::images::ImagesArgs),
    /// Show an image's details as JSON (or through a Go template).
    Inspect(commands::inspect::InspectArgs),
    /// Show the steps that made an image.
    History(commands::history::HistoryArgs),
    /// Show the files added, removed and changed between two images.
    Diff(commands::diff::DiffArgs),
    /// Show what each layer of an image adds and wastes, and its largest files.
    Layers(commands::layers::LayersArgs),
    /// Load images from a docker-archive or OCI archive (stdin by default).
    Load(commands::load::LoadArgs),
    /// Pull an image from a registry.
    Pull(commands::pull::PullArgs),
    /// Push an image to a registry.
    Push(commands::push::PushArgs),
    /// Save images to a docker-archive or OCI archive (stdout by default).
    Save(commands::save::SaveArgs),
    /// Log in to a registry (credentials kept as Docker keeps them).
    Login(commands::login::LoginArgs),
    /// Log out from a registry.
    Logout(commands::login::LogoutArgs),
    /// Give an image another name.
    Tag(commands::tag::TagArgs),
    /// Remove images (untag, and delete the last name's image).
    Rmi(commands::rmi::RmiArgs),
    /// Remove dangling (or, with -a, all) images and unused blobs and snapshots.
    Prune(commands::prune::PruneArgs),
    /// List, measure and prune the build cache.
    Cache {
        /// What to do.
        #[command(subcommand)]
        command: commands::cache::CacheCommand,
    },
    /// Manage networks (create, ls, inspect, rm, prune, connect,
    /// disconnect).
    Network {
        /// What to do.
        #[command(subcommand)]
        command: commands::network::NetworkCommand,
    },
    /// Manage volumes (create, ls, inspect, rm, prune).
    Volume {
        /// What to do.
        #[command(subcommand)]
        command: commands::volume::VolumeCommand,
    },
    /// Check and measure the store.
    System {
        /// What to do.
        #[command(subcommand)]
        command: commands::system::SystemCommand,
    },
    /// Manage images (Docker's `docker image` commands).
    Image {
        /// What to do.
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Manage the build cache (Docker's `docker builder`; `kiln cache`).
    Builder {
        /// What to do.
        #[command(subcommand)]
        command: commands::cache::CacheCommand,
    },
    /// Show kiln's version (the Client section of `docker version`).
    Version(commands::version::VersionArgs),
    /// Show the store, kernel and machine kiln works with (`docker info`).
    Info(commands::info::InfoArgs),
}

/// `kiln image ...`: the image commands under Docker's group names.
#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// List images (`kiln images`).
    #[command(visible_alias = "list")]
    Ls(commands::images::ImagesArgs),
    /// Show an image's details (`kiln inspect`).
    Inspect(commands::inspect::InspectArgs),
    /// Show the steps that made an image (`kiln history`).
    History(commands::history::HistoryArgs),
    /// Create an image from a root file system (`kiln import`).
    Import(commands::import::ImportArgs),
    /// Load images from an archive (`kiln load`).
    Load(commands::load::LoadArgs),
    /// Save images to an archive (`kiln save`).
    Save(commands::save::SaveArgs),
    /// Pull an image (`kiln pull`).
    Pull(commands::pull::PullArgs),
    /// Push an image (`kiln push`).
    Push(commands::push::PushArgs),
    /// Give an image another name (`kiln tag`).
    Tag(commands::tag::TagArgs),
    /// Remove images (`kiln rmi`).
    #[command(visible_alias = "remove")]
    Rm(commands::rmi::RmiArgs),
    /// Remove unused images (`kiln prune`).
    Prune(commands::prune::PruneArgs),
}

/// `kiln container ...`: the container commands under Docker's group names.
#[derive(Debug, Subcommand)]
enum ContainerCommand {
    /// List containers (`kiln ps`).
    #[command(visible_aliases = ["ps", "list"])]
    Ls(commands::container::ps::PsArgs),
    /// Show a container's details (`kiln inspect --type container`).
    Inspect(commands::inspect::InspectArgs),
    /// Remove containers (`kiln rm`).
    #[command(visible_alias = "remove")]
    Rm(commands::container::commands::RmArgs),
    /// Remove every stopped container.
    Prune(commands::container::commands::PruneArgs),
    /// Stop containers (`kiln stop`).
    Stop(commands::container::commands::StopArgs),
    /// Send a signal to containers (`kiln kill`).
    Kill(commands::container::commands::KillArgs),
    /// Start containers (`kiln start`).
    Start(commands::container::commands::StartArgs),
    /// Attach to a running container (`kiln attach`).
    Attach(commands::container::attach::AttachArgs),
    /// Restart containers (`kiln restart`).
    Restart(commands::container::commands::StopArgs),
    /// Wait for containers to stop (`kiln wait`).
    Wait(commands::container::commands::WaitArgs),
    /// Show a container's output (`kiln logs`).
    Logs(commands::container::logs::LogsArgs),
    /// Create a container (`kiln create`).
    Create(commands::run::RunArgs),
    /// Run a command in a new container (`kiln run`).
    Run(commands::run::RunArgs),
    /// Run a command in a running container (`kiln exec`).
    Exec(commands::container::exec::ExecArgs),
    /// Create a new image from a container's changes (`kiln commit`).
    Commit(commands::container::commit::CommitArgs),
    /// Show the running processes of a container (`kiln top`).
    Top(commands::container::top::TopArgs),
    /// List port mappings or a specific mapping for the container.
    Port(commands::container::port::PortArgs),
    /// Copy files/folders between a container and the local filesystem (`kiln cp`).
    Cp(commands::container::cp::CpArgs),
}

fn main() -> ExitCode {
    // A container's init is this same binary, re-executed: it must act
    // before anything else (no logger, no clap, no threads).
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| kiln_runtime::is_init_arg(&a))
    {
        return kiln_runtime::init_main();
    }
    // The exec helper and the container monitor are re-executions of
    // kiln too, with no command line of the user's to parse.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| kiln_runtime::is_exec_arg(&a))
    {
        return kiln_runtime::exec_main();
    }
    // The copy helper joins a container's mount namespace (or mounts a
    // stopped one's overlay): single-threaded, before anything else.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == commands::container::cp::CP_ARG)
    {
        return commands::container::cp::helper_main();
    }
    // Published ports' DNAT rules go with their address lease, wherever
    // the store frees it (a monitor's own end, `rm`, a dead holder found).
    kiln_store::networks::on_release(commands::network::endpoints::forwards_released);
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == commands::container::create::MONITOR_ARG)
    {
        return commands::container::monitor::main();
    }
    // Rootless kiln's user namespace holder (`src/userns/holder.rs`).
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == userns::holder::HOLDER_ARG)
    {
        return userns::holder::main();
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            // `docker run` exits 125 on a bad flag too; help and version
            // are not errors.
            let code = if error.use_stderr() && subcommand_is_run() {
                125
            } else {
                u8::try_from(error.exit_code()).unwrap_or(1)
            };
            return ExitCode::from(code);
        }
    };
    env_logger::Builder::new()
        .filter_level(cli.log_level.filter())
        // At trace level the HTTP client dumps raw request and response
        // bytes (Authorization headers, token answers): registry
        // credentials must never reach a log, so it stops at debug,
        // where it redacts them.
        .filter_module("ureq", cli.log_level.filter().min(log::LevelFilter::Debug))
        .filter_module(
            "ureq_proto",
            cli.log_level.filter().min(log::LevelFilter::Debug),
        )
        .filter_module(
            "rustls",
            cli.log_level.filter().min(log::LevelFilter::Debug),
        )
        .format_timestamp(None)
        .format_target(false)
        .init();
    log::debug!("store root: {:?}", cli.root);
    // Without root, or as root without CAP_SYS_ADMIN (an unprivileged
    // container), the command runs in a user namespace of kiln's own,
    // with the store the caller's default names.
    let entered_store;
    let root = if !kiln_rootfs::userns::can_mount() && cli.command.needs_user_namespace() {
        entered_store = commands::store_root(cli.root.as_deref());
        match userns::enter(&entered_store) {
            Ok(userns::Entered::Inside) => Some(entered_store.as_path()),
            Ok(userns::Entered::Done(code)) => return ExitCode::from(code),
            Err(message) => {
                eprintln!("Error: {message}");
                return ExitCode::from(125);
            }
        }
    } else {
        cli.root.as_deref()
    };
    // `docker run` exits 125 when Docker itself fails (no such image, a
    // bad value, an unknown user), keeping the process's own codes apart.
    let failure = if matches!(
        cli.command,
        Command::Run(_)
            | Command::Create(_)
            | Command::Container {
                command: ContainerCommand::Run(_) | ContainerCommand::Create(_)
            }
    ) {
        ExitCode::from(125)
    } else {
        ExitCode::FAILURE
    };
    let result = match cli.command {
        Command::Build(args) => commands::build::run(root, &args),
        Command::Parse(args) => commands::parse::run(&args),
        Command::Import(args) => commands::import::run(root, &args),
        Command::Run(args)
        | Command::Container {
            command: ContainerCommand::Run(args),
        } => commands::run::run(root, &args),
        Command::Create(args)
        | Command::Container {
            command: ContainerCommand::Create(args),
        } => commands::run::create(root, &args),
        Command::Start(args)
        | Command::Container {
            command: ContainerCommand::Start(args),
        } => commands::container::commands::run_start(root, &args),
        Command::Attach(args)
        | Command::Container {
            command: ContainerCommand::Attach(args),
        } => commands::container::attach::run_attach(root, &args),
        Command::Stop(args)
        | Command::Container {
            command: ContainerCommand::Stop(args),
        } => commands::container::commands::run_stop(root, &args),
        Command::Restart(args)
        | Command::Container {
            command: ContainerCommand::Restart(args),
        } => commands::container::commands::run_restart(root, &args),
        Command::Kill(args)
        | Command::Container {
            command: ContainerCommand::Kill(args),
        } => commands::container::commands::run_kill(root, &args),
        Command::Wait(args)
        | Command::Container {
            command: ContainerCommand::Wait(args),
        } => Ok(commands::container::commands::run_wait(root, &args)),
        Command::Rm(args)
        | Command::Container {
            command: ContainerCommand::Rm(args),
        } => commands::container::commands::run_rm(root, &args),
        Command::Ps(args)
        | Command::Container {
            command: ContainerCommand::Ls(args),
        } => commands::container::ps::run(root, &args),
        Command::Logs(args)
        | Command::Container {
            command: ContainerCommand::Logs(args),
        } => commands::container::logs::run(root, &args),
        Command::Exec(args)
        | Command::Container {
            command: ContainerCommand::Exec(args),
        } => commands::container::exec::run(root, &args),
        Command::Commit(args)
        | Command::Container {
            command: ContainerCommand::Commit(args),
        } => commands::container::commit::run(root, &args),
        Command::Top(args)
        | Command::Container {
            command: ContainerCommand::Top(args),
        } => commands::container::top::run(root, &args),
        Command::Port(args)
        | Command::Container {
            command: ContainerCommand::Port(args),
        } => commands::container::port::run(root, &args),
        Command::Cp(args)
        | Command::Container {
            command: ContainerCommand::Cp(args),
        } => commands::container::cp::run(root, &args),
        Command::Container {
            command: ContainerCommand::Inspect(args),
        } => commands::inspect::run(root, &args.containers_only()),
        Command::Container {
            command: ContainerCommand::Prune(args),
        } => commands::container::commands::run_prune(root, &args),
        Command::Images(args) => commands::images::run(root, &args),
        Command::Inspect(args) => commands::inspect::run(root, &args),
        Command::History(args) => commands::history::run(root, &args),
        Command::Diff(args) => commands::diff::run(root, &args),
        Command::Layers(args) => commands::layers::run(root, &args),
        Command::Load(args) => commands::load::run(root, &args),
        Command::Pull(args) => commands::pull::run(root, &args),
        Command::Push(args) => commands::push::run(root, &args),
        Command::Save(args) => commands::save::run(root, &args),
        Command::Tag(args) => commands::tag::run(root, &args),
        Command::Login(args) => commands::login::login(root, &args),
        Command::Logout(args) => commands::login::logout(root, &args),
        Command::Rmi(args) => commands::rmi::run(root, &args),
        Command::Prune(args) => commands::prune::run(root, &args),
        Command::Cache { command } | Command::Builder { command } => {
            commands::cache::run(root, &command)
        }
        Command::Network { command } => commands::network::run(root, &command),
        Command::Volume { command } => commands::volume::run(root, &command),
        Command::System { command } => commands::system::run(root, &command),
        Command::Image { command } => match command {
            ImageCommand::Ls(args) => commands::images::run(root, &args),
            ImageCommand::Inspect(args) => commands::inspect::run(root, &args.images_only()),
            ImageCommand::History(args) => commands::history::run(root, &args),
            ImageCommand::Import(args) => commands::import::run(root, &args),
            ImageCommand::Load(args) => commands::load::run(root, &args),
            ImageCommand::Save(args) => commands::save::run(root, &args),
            ImageCommand::Pull(args) => commands::pull::run(root, &args),
            ImageCommand::Push(args) => commands::push::run(root, &args),
            ImageCommand::Tag(args) => commands::tag::run(root, &args),
            ImageCommand::Rm(args) => commands::rmi::run(root, &args),
            ImageCommand::Prune(args) => commands::prune::run(root, &args),
        },
        Command::Version(args) => commands::version::run(&args),
        Command::Info(args) => commands::info::run(root, &args),
    };
    match result {
        Ok(code) => code,
        // `kiln history | head`: the reader left; as a Go CLI killed by
        // SIGPIPE, say nothing and exit 141 (128 + SIGPIPE).
        Err(error) if stdout_reader_gone(&error) => ExitCode::from(141),
        Err(error) => {
            output::print_error(&error);
            failure
        }
    }
}

/// Whether `error` is a broken pipe and stdout is a pipe nobody reads
/// (not a broken connection to a registry, say).
fn stdout_reader_gone(error: &anyhow::Error) -> bool {
    let broken = error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    });
    let mut poll = libc::pollfd {
        fd: 1,
        events: 0,
        revents: 0,
    };
    // SAFETY: poll on one valid pollfd, without waiting; a pipe whose
    // reading end is closed reports POLLERR.
    broken && unsafe { libc::poll(&raw mut poll, 1, 0) } == 1 && poll.revents & libc::POLLERR != 0
}

impl Command {
    /// Whether this command runs in kiln's own user namespace when kiln
    /// is not root (`src/userns.rs`): every command that makes or removes
    /// files of the store, which belong to the namespace's ids. Those that
    /// only read the store's metadata, signal containers or join a
    /// container's namespaces (`exec`, `cp`, `top`) run as the caller.
    fn needs_user_namespace(&self) -> bool {
        match self {
            Self::Parse(_)
            | Self::Version(_)
            | Self::Login(_)
            | Self::Logout(_)
            | Self::Stop(_)
            | Self::Kill(_)
            | Self::Wait(_)
            | Self::Ps(_)
            | Self::Logs(_)
            | Self::Exec(_)
            | Self::Top(_)
            | Self::Cp(_)
            | Self::Images(_)
            | Self::Inspect(_)
            | Self::History(_)
            | Self::Layers(_)
            | Self::Tag(_)
            | Self::Save(_)
            | Self::Push(_)
            // Stops the holder from outside its namespace.
            | Self::System {
                command: commands::system::SystemCommand::ResetUserns,
            } => false,
            Self::Container { command } => !matches!(
                command,
                ContainerCommand::Ls(_)
                    | ContainerCommand::Inspect(_)
                    | ContainerCommand::Stop(_)
                    | ContainerCommand::Kill(_)
                    | ContainerCommand::Wait(_)
                    | ContainerCommand::Logs(_)
                    | ContainerCommand::Exec(_)
                    | ContainerCommand::Top(_)
                    | ContainerCommand::Cp(_)
            ),
            Self::Image { command } => !matches!(
                command,
                ImageCommand::Ls(_)
                    | ImageCommand::Inspect(_)
                    | ImageCommand::History(_)
                    | ImageCommand::Tag(_)
                    | ImageCommand::Save(_)
                    | ImageCommand::Push(_)
            ),
            _ => true,
        }
    }
}

/// Whether the command line's subcommand is `run`: its first word that is
/// neither an option nor the value of a global option.
fn subcommand_is_run() -> bool {
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        match word.as_str() {
            "--root" | "--log-level" => {
                words.next();
            }
            w if w.starts_with('-') => {}
            w => return w == "run" || w == "create",
        }
    }
    false
}
