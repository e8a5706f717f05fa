//! `kiln push`: an image to a registry.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use kiln_store::layer::Compression;
use kiln_store::registry::{self, Client, PushEvent, PushOptions, PushedImage};
use kiln_store::{ImageReference, Store};

use crate::progress::ProgressMode;
use crate::transfer::TransferProgress;

/// Arguments of `kiln push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The image: `NAME[:TAG]`.
    reference: String,
    /// Print only the pushed reference and digest (no progress).
    #[arg(short, long)]
    quiet: bool,
    /// How layers stored uncompressed are compressed for the registry.
    #[arg(long, default_value = "gzip", value_parser = ["gzip", "zstd"])]
    compression: String,
    /// Progress output: auto, tty, plain, quiet or json.
    #[arg(long, default_value = "auto")]
    progress: String,
}

/// Runs `kiln push`.
pub fn run(root: Option<&std::path::Path>, args: &PushArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(root)?;
    let mode = ProgressMode::from_flag(&args.progress)?.resolve(args.quiet);
    let reference = super::parse_reference(&args.reference)?;
    let compression =
        kiln_store::commit::parse_compression(&args.compression).unwrap_or(Compression::Gzip);
    let client = Client::new(registry::RegistryConfig::from_env());
    let pushed = push_image(&store, &client, &reference, compression, mode)?;
    writeln!(
        std::io::stdout().lock(),
        "{}: digest: {} size: {}",
        pushed.reference.tag().unwrap_or("latest"),
        pushed.digest,
        pushed.size
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Pushes one image with Docker-shaped progress on stderr; shared by
/// `kiln push` and `kiln build --push`.
pub fn push_image(
    store: &Store,
    client: &Client,
    reference: &ImageReference,
    compression: Compression,
    mode: ProgressMode,
) -> anyhow::Result<PushedImage> {
    push_reporting(reference, compression, mode, |options| {
        registry::push(store, client, reference, options)
    })
}

/// Runs `push` (one image to `reference`) with Docker-shaped progress on
/// stderr.
pub fn push_reporting(
    reference: &ImageReference,
    compression: Compression,
    mode: ProgressMode,
    push: impl FnOnce(&PushOptions<'_>) -> Result<PushedImage, registry::RegistryError>,
) -> anyhow::Result<PushedImage> {
    let progress = TransferProgress::new(mode);
    progress.message(&format!(
        "The push refers to repository [{}]",
        reference.name()
    ));
    let report = |event: PushEvent| match event {
        PushEvent::Preparing(digest) => progress.status(&digest, "Preparing"),
        PushEvent::Exists(digest) => progress.status(&digest, "Layer already exists"),
        PushEvent::Mounted { digest, from } => {
            progress.status(&digest, &format!("Mounted from {from}"));
        }
        PushEvent::Progress {
            digest,
            done,
            total,
        } => progress.bytes(&digest, "Pushing", done, total),
        PushEvent::Pushed(digest) => progress.status(&digest, "Pushed"),
    };
    let options = PushOptions {
        compression,
        monolithic_max: registry::push::MONOLITHIC_MAX,
        chunk_size: registry::push::CHUNK_SIZE,
        progress: &report,
        uploads: registry::push::PARALLEL_UPLOADS,
        unchecked_below: 0,
        prestarted: None,
    };
    let pushed = push(&options);
    progress.finish();
    pushed.with_context(|| format!("cannot push {}", reference.familiar_string()))
}
