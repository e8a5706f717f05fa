//! `kiln load`: image archives into the store.

use std::fs::File;
use std::io::{self, Read, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

/// Arguments of `kiln load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from an archive file instead of stdin (docker-archive or OCI
    /// archive, optionally gzip or zstd compressed).
    #[arg(short, long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Suppress the "Loaded image" lines.
    #[arg(short, long)]
    quiet: bool,
}

/// Runs `kiln load`.
pub fn run(root: Option<&std::path::Path>, args: &LoadArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(root)?;
    let (input, what): (Box<dyn Read>, String) = match &args.input {
        Some(path) => (
            Box::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?),
            path.display().to_string(),
        ),
        None => (Box::new(io::stdin().lock()), "stdin".to_owned()),
    };
    // As `docker load` does, unpack the layers now, so the first build or
    // run from these images does not pay for it. A layer that cannot be
    // unpacked (a hostile entry, a full disk) fails the whole load before
    // any image is tagged, as it fails `docker load`. Each layer is applied
    // on the ones below it (snapshots are keyed by chain).
    let mut unpack = |image: &kiln_store::archive::LoadedImage| {
        let stored = store.image(&image.manifest_digest)?;
        match store.snapshots(&stored.manifest.layers, &stored.config.rootfs.diff_ids) {
            Ok(_) => {}
            Err(kiln_store::StoreError::Snapshot { layer, source }) => {
                return Err(kiln_store::StoreError::Unpack {
                    layer,
                    image: image.id.to_string(),
                    source,
                });
            }
            Err(e) => return Err(e),
        }
        Ok(())
    };
    let loaded = kiln_store::archive::load::load_archive_with(&store, input, &mut unpack)
        .with_context(|| format!("cannot load images from {what}"))?;
    if !args.quiet {
        let mut stdout = io::stdout().lock();
        for image in &loaded {
            if image.tags.is_empty() {
                writeln!(stdout, "Loaded image ID: {}", image.id)?;
            }
            for tag in &image.tags {
                writeln!(stdout, "Loaded image: {}", tag.familiar_string())?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
