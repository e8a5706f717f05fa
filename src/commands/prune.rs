//! `kiln prune`: dangling (or all) images, orphan blobs and snapshots.

use std::io::{self, BufRead as _, Write as _};
use std::path::Path;
use std::process::ExitCode;

use clap::Args;

/// Arguments of `kiln prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all images not used by a container, not just dangling ones.
    #[arg(short, long)]
    all: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    force: bool,
}

/// Runs `kiln prune`.
pub fn run(root: Option<&Path>, args: &PruneArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(root)?;
    if !args.force {
        let warning = if args.all {
            "WARNING! This will remove all images without at least one container associated to them."
        } else {
            "WARNING! This will remove all dangling images."
        };
        eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let mut stdout = io::stdout().lock();
    let mut header = false;
    for image in store.images()? {
        if !args.all && !image.tags.is_empty() {
            continue;
        }
        // A container's image stays, as with Docker.
        if super::rmi::container_using(&store, &image)?.is_some() {
            continue;
        }
        if !header {
            writeln!(stdout, "Deleted Images:")?;
            header = true;
        }
        for tag in &image.tags {
            let reference = super::parse_reference(tag)?;
            writeln!(stdout, "untagged: {}", reference.familiar_string())?;
        }
        store.delete_image(&image.manifest_digest)?;
        writeln!(stdout, "deleted: {}", image.id)?;
    }
    let report = store.collect_garbage()?;
    if header {
        writeln!(stdout)?;
    }
    writeln!(
        stdout,
        "Total reclaimed space: {}",
        crate::units::human_size(report.reclaimed)
    )?;
    Ok(ExitCode::SUCCESS)
}
