//! `kiln rmi`: untag and delete images, with Docker's rules.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use kiln_store::Store;

/// Arguments of `kiln rmi`.
#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Remove an image that several tags name, by ID, with all its tags.
    #[arg(short, long)]
    force: bool,
    /// Images, by name or ID.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

/// Runs `kiln rmi`. Like Docker: a name removes that tag, and the image
/// too when it was the last; an ID removes the image, but only with `-f`
/// when several tags name it. Each image is tried; the exit status is 1
/// if any failed.
pub fn run(root: Option<&Path>, args: &RmiArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(root)?;
    let mut failed = false;
    for name in &args.images {
        if let Err(error) = remove(&store, name, args.force) {
            crate::output::print_error(&error);
            failed = true;
        }
    }
    match store.collect_garbage_if_idle()? {
        Some(report) => log::debug!("rmi freed {} bytes", report.reclaimed),
        None => log::info!("store busy: unused blobs are left for a later prune"),
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn remove(store: &Store, name: &str, force: bool) -> anyhow::Result<()> {
    let image = store.resolve(name)?;
    let mut stdout = std::io::stdout().lock();
    let by_tag = super::parse_reference(name)
        .ok()
        .map(|r| r.to_string())
        .filter(|r| image.tags.contains(r));
    if let Some(tag) = by_tag {
        let reference = super::parse_reference(&tag)?;
        let last = store.untag(&tag)?;
        writeln!(stdout, "Untagged: {}", reference.familiar_string())?;
        if last {
            writeln!(stdout, "Deleted: {}", image.id)?;
        }
        return Ok(());
    }
    if image.tags.len() > 1 && !force {
        return Err(kiln_store::StoreError::ImageReferencedByTags {
            id: image.short_id(),
        }
        .into());
    }
    for tag in &image.tags {
        let reference = super::parse_reference(tag)?;
        writeln!(stdout, "Untagged: {}", reference.familiar_string())?;
    }
    store.delete_image(&image.manifest_digest)?;
    writeln!(stdout, "Deleted: {}", image.id)?;
    Ok(())
}
