//! `kiln pull`: an image (or every tag of a repository) from a registry.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use kiln_store::registry::{self, Client, PlatformSpec, PullEvent, PullOptions, PulledImage};
use kiln_store::{ImageReference, Store};

use crate::progress::ProgressMode;
use crate::transfer::TransferProgress;

/// Arguments of `kiln pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// The image: `NAME[:TAG]` or `NAME@DIGEST`.
    reference: String,
    /// Pull every tagged image of the repository.
    #[arg(short = 'a', long = "all-tags")]
    all_tags: bool,
    /// The platform to pick from a multi-platform image (OS/ARCH[/VARIANT]).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// Print only the image reference (no progress).
    #[arg(short, long)]
    quiet: bool,
    /// Progress output: auto, tty, plain, quiet or json.
    #[arg(long, default_value = "auto")]
    progress: String,
}

/// Runs `kiln pull`.
pub fn run(root: Option<&std::path::Path>, args: &PullArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(root)?;
    let mode = ProgressMode::from_flag(&args.progress)?.resolve(args.quiet);
    let platform = args
        .platform
        .as_deref()
        .map(PlatformSpec::parse)
        .transpose()?;
    let reference = kiln_reference::parse_normalized_named(&args.reference)
        .map_err(|e| anyhow::anyhow!("invalid reference format {:?}: {e}", args.reference))?;
    let client = Client::new(registry::RegistryConfig::from_env());
    let references = if args.all_tags {
        if !reference.is_name_only() {
            anyhow::bail!("tag can't be used with --all-tags/-a");
        }
        let tags = registry::list_tags(&client, &reference)
            .with_context(|| format!("cannot list the tags of {}", reference.familiar_name()))?;
        tags.iter()
            .map(|tag| super::parse_reference(&format!("{}:{tag}", reference.name())))
            .collect::<anyhow::Result<Vec<_>>>()?
    } else {
        vec![reference.tag_name_only()]
    };
    for reference in &references {
        let pulled = pull_image(&store, &client, reference, platform.clone(), mode)?;
        writeln!(std::io::stdout().lock(), "{}", pulled.reference)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Pulls one image with Docker-shaped progress on stderr; shared by
/// `kiln pull`, `kiln run` and `kiln build`.
pub fn pull_image(
    store: &Store,
    client: &Client,
    reference: &ImageReference,
    platform: Option<PlatformSpec>,
    mode: ProgressMode,
) -> anyhow::Result<PulledImage> {
    let progress = TransferProgress::new(mode);
    let label = reference.tag().map_or_else(
        || {
            reference
                .digest()
                .map(ToString::to_string)
                .unwrap_or_default()
        },
        str::to_owned,
    );
    // Docker names the repository by its path (`library/busybox`).
    progress.message(&format!("{label}: Pulling from {}", reference.path()));
    let report = |event: PullEvent| match event {
        PullEvent::Resolved { .. } => {}
        PullEvent::LayerPresent(digest) => progress.status(&digest, "Already exists"),
        PullEvent::LayerQueued(digest) => progress.status(&digest, "Pulling fs layer"),
        PullEvent::LayerProgress {
            digest,
            done,
            total,
        } => progress.bytes(&digest, "Downloading", done, total),
        PullEvent::LayerDownloaded(digest) => progress.status(&digest, "Download complete"),
        PullEvent::LayerUnpacked(digest) => progress.status(&digest, "Pull complete"),
    };
    let options = PullOptions {
        platform,
        progress: &report,
    };
    let pulled = registry::pull(store, client, reference, &options);
    progress.finish();
    let pulled = pulled.with_context(|| format!("cannot pull {}", reference.familiar_string()))?;
    progress.message(&format!("Digest: {}", pulled.digest));
    progress.message(&format!(
        "Status: {} for {}",
        if pulled.updated {
            "Downloaded newer image"
        } else {
            "Image is up to date"
        },
        pulled.reference.familiar_string()
    ));
    Ok(pulled)
}
