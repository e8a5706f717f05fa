//! `kiln system check`, `kiln system df` and `kiln system reset-userns`.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use kiln_store::Store;

use crate::units::human_size;

/// `kiln system` subcommands.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Verify every blob and every tag; report what is broken.
    Check,
    /// Show the space used by images, layers, snapshots and build cache.
    Df(DfArgs),
    /// Show the store, kernel and machine kiln works with (`kiln info`).
    Info(super::info::InfoArgs),
    /// Stop the process that keeps rootless kiln's user namespace between
    /// commands; the next command starts a new one.
    ResetUserns,
}

/// Arguments of `kiln system df`.
#[derive(Debug, Args)]
pub struct DfArgs {
    /// Show each image and build-cache record (Docker's verbose sections).
    #[arg(short, long)]
    verbose: bool,
}

/// Runs a `kiln system` subcommand.
pub fn run(root: Option<&Path>, command: &SystemCommand) -> anyhow::Result<ExitCode> {
    match command {
        SystemCommand::Info(args) => super::info::run(root, args),
        SystemCommand::Check => check(&open(root)?),
        SystemCommand::Df(args) if args.verbose => {
            let text = super::disk_usage::render(&open(root)?)?;
            write!(std::io::stdout().lock(), "{text}")?;
            Ok(ExitCode::SUCCESS)
        }
        SystemCommand::Df(_) => df(&open(root)?),
        SystemCommand::ResetUserns => {
            // Root that may mount has no holder to stop.
            if !kiln_rootfs::userns::can_mount() {
                crate::userns::holder::stop().map_err(anyhow::Error::msg)?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The store, for `check` and `df`: both report the temporary files of
/// dead processes rather than remove them on open, as every other
/// command does.
fn open(root: Option<&Path>) -> anyhow::Result<Store> {
    super::open_store_keeping_temporaries(root)
}

/// `kiln system check`.
fn check(store: &Store) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    let problems = store.check()?;
    let temporaries = store.temporaries()?;
    if problems.is_empty() {
        writeln!(stdout, "store {} is consistent", store.root().display())?;
    }
    for problem in &problems {
        writeln!(stdout, "{}: {}", problem.subject, problem.problem)?;
    }
    // Leftovers are garbage, not damage: reported, not failed.
    let leftovers = [
        (
            temporaries.abandoned,
            "of kiln processes that are gone (the next kiln command removes them)",
        ),
        (
            temporaries.unowned,
            "of unknown owner (the next prune removes them)",
        ),
    ];
    for (usage, whose) in leftovers {
        if usage.entries > 0 {
            writeln!(
                stdout,
                "tmp: {} temporary entries, {}, {whose}",
                usage.entries,
                human_size(usage.bytes)
            )?;
        }
    }
    if problems.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("error: {} problem(s) found", problems.len());
    Ok(ExitCode::FAILURE)
}

/// `kiln system df`.
fn df(store: &Store) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    let usage = store.disk_usage()?;
    // As `docker system df`: records, those whose layer an image
    // uses, the layers' bytes, and what a prune could free.
    let cache = super::cache::usage(store)?;
    // The files kept beside the records; the Build Cache row counts
    // records and their layers only.
    let side = kiln_builder::cache::BuildCache::new(store);
    let lists = side.source_lists_usage()?;
    let lineage = side.lineage_usage()?;
    // Entries of running processes are in use; the others are
    // garbage that the next command (or prune) removes.
    let temporaries = usage.temporaries;
    let reclaimable_temporaries = temporaries.abandoned.bytes + temporaries.unowned.bytes;
    let rows = [
        (
            "Images",
            usage.images.0.to_string(),
            usage.images.1.to_string(),
            usage.image_bytes.0,
            usage.image_bytes.1,
        ),
        (
            "Containers",
            usage.containers.0.to_string(),
            usage.containers.1.to_string(),
            usage.containers.2,
            usage.containers.3,
        ),
        (
            "Layers",
            usage.layers.0.to_string(),
            usage.layers.0.to_string(),
            usage.layers.1,
            0,
        ),
        (
            "Snapshots",
            usage.snapshots.0.to_string(),
            usage.snapshots.1.to_string(),
            usage.snapshots.2,
            usage.snapshots.3,
        ),
        (
            "Build Cache",
            cache.records.to_string(),
            cache.records_shared.to_string(),
            cache.shared + cache.private,
            cache.private,
        ),
        (
            "Source lists",
            lists.files.to_string(),
            lists.live.to_string(),
            lists.bytes,
            lists.reclaimable,
        ),
        (
            "Lineage",
            lineage.files.to_string(),
            lineage.live.to_string(),
            lineage.bytes,
            lineage.reclaimable,
        ),
        (
            "Local Volumes",
            usage.volumes.0.to_string(),
            usage.volumes.1.to_string(),
            usage.volumes.2,
            usage.volumes.3,
        ),
        (
            "Cache mounts",
            usage.cache_mounts.0.to_string(),
            "0".to_owned(),
            usage.cache_mounts.1,
            usage.cache_mounts.1,
        ),
        (
            "Stat caches",
            usage.stat_caches.0.to_string(),
            "0".to_owned(),
            usage.stat_caches.1,
            usage.stat_caches.1,
        ),
        (
            "Unused blobs",
            usage.orphans.0.to_string(),
            "0".to_owned(),
            usage.orphans.1,
            usage.orphans.1,
        ),
        (
            "Temporary",
            (temporaries.live.entries
                + temporaries.abandoned.entries
                + temporaries.unowned.entries)
                .to_string(),
            temporaries.live.entries.to_string(),
            temporaries.live.bytes + reclaimable_temporaries,
            reclaimable_temporaries,
        ),
    ];
    writeln!(
        stdout,
        "{:<15}{:<10}{:<10}{:<12}RECLAIMABLE",
        "TYPE", "TOTAL", "ACTIVE", "SIZE"
    )?;
    for (kind, total, active, size, reclaimable) in rows {
        writeln!(
            stdout,
            "{kind:<15}{total:<10}{active:<10}{:<12}{}",
            human_size(size),
            human_size(reclaimable)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
