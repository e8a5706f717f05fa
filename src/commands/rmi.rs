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

/// A container that uses `image` (its short ID, and whether it runs),
/// running ones first.
pub fn container_using(
    store: &Store,
    image: &kiln_store::Image,
) -> anyhow::Result<Option<(String, bool)>> {
    let mut found = None;
    for config in store.container_configs()? {
        if config.manifest_digest != image.manifest_digest.to_string()
            && config.image_id != image.id.to_string()
        {
            continue;
        }
        let running = kiln_store::containers::current_state(&store.container_dir(&config.id))
            .is_ok_and(|s| matches!(s.status.as_str(), "running" | "restarting"));
        let short = config.id.get(..12).unwrap_or(&config.id).to_owned();
        if running {
            return Ok(Some((short, true)));
        }
        found = found.or(Some((short, false)));
    }
    Ok(found)
}

fn remove(store: &Store, name: &str, force: bool) -> anyhow::Result<()> {
    let image = store.resolve(name)?;
    let mut stdout = std::io::stdout().lock();
    let by_tag = super::parse_reference(name)
        .ok()
        .map(|r| r.to_string())
        .filter(|r| image.tags.contains(r));
    let user = container_using(store, &image)?;
    if let Some(tag) = by_tag {
        let reference = super::parse_reference(&tag)?;
        if image.tags.len() == 1
            && !force
            && let Some((container, _)) = &user
        {
            anyhow::bail!(
                "conflict: unable to remove repository reference \"{name}\" (must force) - container {container} is using its referenced image {}",
                image.short_id()
            );
        }
        if image.tags.len() == 1 && user.is_some() {
            // Forced: the name goes, the image stays for its container.
            store.untag(&tag)?;
            writeln!(stdout, "Untagged: {}", reference.familiar_string())?;
            return Ok(());
        }
        let last = store.untag(&tag)?;
        writeln!(stdout, "Untagged: {}", reference.familiar_string())?;
        if last {
            writeln!(stdout, "Deleted: {}", image.id)?;
        }
        return Ok(());
    }
    if let Some((container, running)) = &user {
        let how = if *running { "running" } else { "stopped" };
        if !force || *running {
            let must = if *running {
                "cannot be forced"
            } else {
                "must be forced"
            };
            anyhow::bail!(
                "conflict: unable to delete {} ({must}) - image is being used by {how} container {container}",
                image.short_id()
            );
        }
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
    // A multi-platform image's entry is its index.
    store.delete_image(image.index.as_ref().unwrap_or(&image.manifest_digest))?;
    writeln!(stdout, "Deleted: {}", image.id)?;
    Ok(())
}
