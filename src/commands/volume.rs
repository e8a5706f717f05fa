//! `kiln volume create|ls|inspect|rm|prune`, with Docker's output. The
//! volumes live in the store (`volumes/<name>/_data`, see
//! `kiln_store::volume`); `kiln run -v NAME:/path` makes one on first use.

use std::io::{self, BufRead as _, Write as _};
use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use kiln_store::StoreError;
use kiln_store::volume::Volume;
use serde::Serialize as _;

/// `kiln volume` subcommands.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume (a random name when none is given).
    Create {
        /// The volume's name.
        name: Option<String>,
    },
    /// List volumes.
    #[command(visible_alias = "list")]
    Ls {
        /// Only display volume names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Display detailed information on one or more volumes.
    Inspect {
        /// The volumes.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove one or more volumes (not while a container uses them).
    #[command(visible_alias = "remove")]
    Rm {
        /// Do not fail for a volume that does not exist.
        #[arg(short, long)]
        force: bool,
        /// The volumes.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove unused anonymous volumes (all unused ones with `-a`).
    Prune {
        /// Remove all unused volumes, not just anonymous ones.
        #[arg(short, long)]
        all: bool,
        /// Do not ask for confirmation.
        #[arg(short, long)]
        force: bool,
    },
}

/// Runs a `kiln volume` subcommand.
pub fn run(root: Option<&Path>, command: &VolumeCommand) -> anyhow::Result<ExitCode> {
    let store = super::open_store(root)?;
    let mut stdout = io::stdout().lock();
    match command {
        VolumeCommand::Create { name } => {
            let (volume, _) = store.create_volume(name.as_deref(), false)?;
            writeln!(stdout, "{}", volume.name)?;
        }
        VolumeCommand::Ls { quiet } => {
            let volumes = store.volumes()?;
            if !quiet {
                writeln!(stdout, "DRIVER    VOLUME NAME")?;
            }
            for volume in volumes {
                if *quiet {
                    writeln!(stdout, "{}", volume.name)?;
                } else {
                    writeln!(stdout, "local     {}", volume.name)?;
                }
            }
        }
        VolumeCommand::Inspect { names } => {
            let mut found = Vec::new();
            let mut failed = false;
            for name in names {
                match store.volume(name) {
                    Ok(volume) => found.push(inspect_json(&volume)),
                    Err(StoreError::NoSuchVolume(_)) => {
                        eprintln!("error: no such volume: {name}");
                        failed = true;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            // Docker's indentation: four spaces.
            let mut text = Vec::new();
            let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut serializer = serde_json::Serializer::with_formatter(&mut text, formatter);
            serde_json::Value::Array(found).serialize(&mut serializer)?;
            stdout.write_all(&text)?;
            writeln!(stdout)?;
            if failed {
                return Ok(ExitCode::FAILURE);
            }
        }
        VolumeCommand::Rm { force, names } => {
            let mut failed = false;
            for name in names {
                match store.remove_volume(name) {
                    Ok(_) => writeln!(stdout, "{name}")?,
                    Err(StoreError::NoSuchVolume(_)) if *force => {}
                    Err(e) => {
                        eprintln!("error: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                return Ok(ExitCode::FAILURE);
            }
        }
        VolumeCommand::Prune { all, force } => {
            if !force {
                let warning = if *all {
                    "WARNING! This will remove all local volumes not used by at least one container."
                } else {
                    "WARNING! This will remove anonymous local volumes not used by at least one container."
                };
                eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
                let mut answer = String::new();
                io::stdin().lock().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            let mut reclaimed = 0;
            let mut deleted = Vec::new();
            for volume in store.volumes()? {
                if !all && !volume.anonymous {
                    continue;
                }
                match store.remove_volume(&volume.name) {
                    Ok(bytes) => {
                        reclaimed += bytes;
                        deleted.push(volume.name);
                    }
                    // In use, or gone meanwhile: not prunable.
                    Err(StoreError::VolumeInUse { .. } | StoreError::NoSuchVolume(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if !deleted.is_empty() {
                writeln!(stdout, "Deleted Volumes:")?;
                for name in &deleted {
                    writeln!(stdout, "{name}")?;
                }
                writeln!(stdout)?;
            }
            writeln!(
                stdout,
                "Total reclaimed space: {}",
                crate::units::human_size(reclaimed)
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `docker volume inspect`'s object for one volume.
fn inspect_json(volume: &Volume) -> serde_json::Value {
    let created = i64::try_from(volume.created)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(String::new, |t| {
            t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
        });
    let labels = if volume.anonymous {
        serde_json::json!({"com.docker.volume.anonymous": ""})
    } else {
        serde_json::Value::Null
    };
    serde_json::json!({
        "CreatedAt": created,
        "Driver": "local",
        "Labels": labels,
        "Mountpoint": volume.mountpoint.display().to_string(),
        "Name": volume.name,
        "Options": null,
        "Scope": "local",
    })
}
