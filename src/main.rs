//! The `kiln` command line: a daemonless Dockerfile builder and image
//! toolkit. This crate only wires the library crates to clap and formats
//! their output; stdout carries data, stderr carries logs and errors.

mod commands;
mod output;
#[cfg_attr(
    not(test),
    expect(dead_code, reason = "used by the image commands, next")
)]
mod template;
#[cfg_attr(
    not(test),
    expect(dead_code, reason = "used by the image commands, next")
)]
mod units;

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
    /// Parse a Dockerfile and show the build plan, its AST or its JSON form.
    Parse(commands::parse::ParseArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::new()
        .filter_level(cli.log_level.filter())
        .format_timestamp(None)
        .format_target(false)
        .init();
    log::debug!("store root: {:?}", cli.root);
    let result = match cli.command {
        Command::Parse(args) => commands::parse::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            output::print_error(&error);
            ExitCode::FAILURE
        }
    }
}
