//! `kiln tag`: a new name for an image.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;

/// Arguments of `kiln tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// The image, by name or ID.
    source: String,
    /// The new name.
    target: String,
}

/// Runs `kiln tag`.
pub fn run(root: Option<&Path>, args: &TagArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(root)?;
    let target = super::parse_reference(&args.target)?;
    if target.digest().is_some() {
        anyhow::bail!(
            "refusing to create a tag with a digest reference: {}",
            args.target
        );
    }
    let image = store.resolve(&args.source)?;
    store.tag(&image, &target)?;
    Ok(ExitCode::SUCCESS)
}
