//! `kiln import`: a root file system (tarball or directory) becomes a
//! one-layer image, as `docker import` does.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use kiln_parser::plan::{PlanOptions, StepKind, plan_dockerfile};
use kiln_store::layer::{Compression, PackOptions, open_layer};
use kiln_store::spec::{ContainerConfig, History, ImageConfig, RootFs};

/// Arguments of `kiln import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A tarball (plain, gzip or zstd), a directory, or `-` for a tarball
    /// on stdin.
    #[arg(value_name = "FILE|DIR|-")]
    source: PathBuf,
    /// Name for the image.
    #[arg(value_name = "REF")]
    reference: Option<String>,
    /// A Dockerfile instruction to apply to the config: CMD, ENTRYPOINT,
    /// ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME or WORKDIR.
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    changes: Vec<String>,
    /// Commit message (the history comment).
    #[arg(short, long, value_name = "MSG")]
    message: Option<String>,
    /// Layer compression.
    #[arg(long, value_name = "gzip|zstd|none", default_value = "gzip")]
    compression: String,
    /// The platform the files are for (the config's os, architecture
    /// and variant); default: this machine's
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
}

/// Runs `kiln import`; prints the image ID on stdout as Docker does.
pub fn run(root: Option<&Path>, args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let compression =
        kiln_store::commit::parse_compression(&args.compression).with_context(|| {
            format!(
                "invalid --compression {:?}: expected gzip, zstd or none",
                args.compression
            )
        })?;
    let references = match &args.reference {
        Some(name) => {
            let reference = super::parse_reference(name)?;
            if reference.digest().is_some() {
                bail!("refusing to import as a digest reference: {name}");
            }
            vec![reference]
        }
        None => Vec::new(),
    };
    let platform = match &args.platform {
        Some(text) => kiln_parser::values::Platform::parse(text)
            .map_err(|e| anyhow::anyhow!("invalid --platform {text:?}: {e}"))?
            .normalize(),
        None => kiln_parser::values::Platform {
            architecture: kiln_store::archive::load::host_architecture().to_owned(),
            os: "linux".to_owned(),
            ..kiln_parser::values::Platform::default()
        },
    };
    let config = apply_changes(&args.changes)?;
    let store = super::open_store(root)?;
    let source = &args.source;
    let layer = if source.as_os_str() == "-" {
        import_tar(&store, io::stdin().lock(), compression).context("cannot import from stdin")?
    } else if source.is_dir() {
        store
            .write_layer_from_directory(source, compression, &PackOptions::default())
            .with_context(|| format!("cannot import directory {}", source.display()))?
    } else {
        let file =
            File::open(source).with_context(|| format!("cannot open {}", source.display()))?;
        import_tar(&store, file, compression)
            .with_context(|| format!("cannot import {}", source.display()))?
    };
    let created = created_time();
    let image_config = ImageConfig {
        created: Some(created.clone()),
        architecture: platform.architecture,
        variant: (!platform.variant.is_empty()).then_some(platform.variant),
        os: platform.os,
        config: Some(config),
        rootfs: RootFs {
            kind: "layers".to_owned(),
            diff_ids: vec![layer.diff_id.to_string()],
        },
        history: vec![History {
            created: Some(created),
            comment: Some(
                args.message
                    .clone()
                    .unwrap_or_else(|| format!("Imported from {}", source_name(source))),
            ),
            ..History::default()
        }],
        ..ImageConfig::default()
    };
    let (_, id) = store.commit_image(&image_config, &[layer.descriptor], &references)?;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

fn source_name(source: &Path) -> String {
    if source.as_os_str() == "-" {
        "-".to_owned()
    } else {
        source.display().to_string()
    }
}

fn import_tar(
    store: &kiln_store::Store,
    input: impl Read,
    compression: Compression,
) -> anyhow::Result<kiln_store::commit::NewLayer> {
    let (_, decoded) = open_layer(BufReader::with_capacity(1 << 20, input))?;
    Ok(store.write_layer(decoded, compression)?)
}

/// The creation time: `SOURCE_DATE_EPOCH` when set, else now.
pub fn created_time() -> String {
    let now = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .unwrap_or_else(jiff::Timestamp::now);
    now.strftime("%Y-%m-%dT%H:%M:%S%.fZ").to_string()
}

/// Applies `--change` instructions to an empty config.
fn apply_changes(changes: &[String]) -> anyhow::Result<ContainerConfig> {
    let mut config = ContainerConfig::default();
    apply_changes_to(&mut config, changes)?;
    Ok(config)
}

/// Applies `--change` (`-c`) instructions of `kiln import` and `kiln
/// commit` to `config`, through the Dockerfile parser and planner so that
/// quoting, JSON forms and variable expansion match a Dockerfile; the
/// instructions Docker allows there (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL,
/// ONBUILD, USER, VOLUME, WORKDIR).
pub fn apply_changes_to(config: &mut ContainerConfig, changes: &[String]) -> anyhow::Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    for change in changes {
        let keyword = change
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let allowed = [
            "CMD",
            "ENTRYPOINT",
            "ENV",
            "EXPOSE",
            "LABEL",
            "ONBUILD",
            "USER",
            "VOLUME",
            "WORKDIR",
        ];
        if !allowed.contains(&keyword.as_str()) {
            bail!(
                "invalid --change {change:?}: {keyword} is not a valid change command (use one of {})",
                allowed.join(", ")
            );
        }
        if change.contains('\n') {
            bail!("invalid --change {change:?}: one instruction per --change");
        }
    }
    // The config's own environment and working directory come first, so
    // that `ENV PATH=$PATH:/x` and a relative WORKDIR build on them, as
    // Docker applies changes to the existing config.
    let mut prelude = String::new();
    for entry in config.env.as_deref().unwrap_or_default() {
        let Some((key, value)) = entry.split_once('=') else {
            continue;
        };
        let plain_key = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if plain_key && !value.contains(['\n', '\r']) {
            let quoted = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('$', "\\$");
            let _ = writeln!(prelude, "ENV {key}=\"{quoted}\"");
        }
    }
    if let Some(dir) = config.working_dir.as_deref().filter(|d| {
        d.starts_with('/') && !d.contains(|c: char| c.is_whitespace() || "\"'\\$".contains(c))
    }) {
        let _ = writeln!(prelude, "WORKDIR {dir}");
    }
    let text = format!("FROM scratch\n{prelude}{}\n", changes.join("\n"));
    let (_, plan) = plan_dockerfile("--change", &text, &PlanOptions::default())
        .map_err(|e| anyhow::anyhow!("invalid --change: {}", e.render()))?;
    let steps = plan
        .stages
        .into_iter()
        .next()
        .map(|s| s.steps)
        .unwrap_or_default();
    let mut cmd_set = false;
    for step in steps {
        if let StepKind::Workdir { path } = &step.kind {
            config.working_dir = Some(path.clone());
        } else {
            kiln_builder::engine::apply_to_config(config, &step.kind, &mut cmd_set);
        }
    }
    Ok(())
}
