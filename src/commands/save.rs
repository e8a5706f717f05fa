//! `kiln save`: images from the store into one archive.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use kiln_store::archive::SaveFormat;
use kiln_store::archive::save::SaveRequest;
use kiln_store::{fault, temp};

/// Arguments of `kiln save`.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write to a file (atomically) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Archive layout.
    #[arg(long, value_enum, default_value_t = Format::Docker)]
    format: Format,
    /// Images to save, by name or ID.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

/// `--format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// `docker save` layout (manifest.json, uncompressed layers; also an
    /// OCI layout).
    Docker,
    /// OCI image layout with the stored blobs as they are.
    Oci,
}

/// Runs `kiln save`.
pub fn run(root: Option<&Path>, args: &SaveArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(root)?;
    let mut requests: Vec<SaveRequest> = Vec::new();
    for name in &args.images {
        let image = store.resolve(name)?;
        // A name saves that tag; an ID saves the image untagged, as Docker.
        let tags = match super::parse_reference(name) {
            Ok(reference) if image.tags.contains(&reference.to_string()) => vec![reference],
            _ => Vec::new(),
        };
        if let Some(existing) = requests
            .iter_mut()
            .find(|r| r.image.manifest_digest == image.manifest_digest)
        {
            existing.tags.extend(tags);
        } else {
            requests.push(SaveRequest { image, tags });
        }
    }
    let format = match args.format {
        Format::Docker => SaveFormat::Docker,
        Format::Oci => SaveFormat::Oci,
    };
    if let Some(path) = &args.output {
        write_archive_file(&store, &requests, format, path)?;
    } else {
        let stdout = io::stdout().lock();
        if io::IsTerminal::is_terminal(&stdout) {
            anyhow::bail!(
                "refusing to write an archive to a terminal; use -o FILE or redirect stdout"
            );
        }
        let mut writer = io::BufWriter::with_capacity(1 << 20, stdout);
        kiln_store::archive::save_archive(&store, &requests, format, &mut writer)
            .context("cannot save to stdout")?;
        writer.flush().context("cannot write to stdout")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes an archive to `path` atomically (see [`write_file_atomically`]);
/// returns each request's manifest descriptor as written.
pub fn write_archive_file(
    store: &kiln_store::Store,
    requests: &[SaveRequest],
    format: SaveFormat,
    path: &Path,
) -> anyhow::Result<Vec<kiln_store::spec::Descriptor>> {
    write_file_atomically(path, |writer| {
        kiln_store::archive::save_archive(store, requests, format, writer)
            .with_context(|| format!("cannot save to {}", path.display()))
    })
}

/// Writes a file at `path` atomically: `write` fills a temporary file,
/// renamed into place once complete. The temporary file's name carries
/// this process (`.kiln-save-<pid>-<start>-<random>`) and the process
/// holds a lock on it, so that the next save into the same directory
/// removes what a killed save left there.
pub fn write_file_atomically<T>(
    path: &Path,
    write: impl FnOnce(&mut dyn io::Write) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match temp::sweep_saves(dir) {
        Ok(swept) if swept.entries > 0 => log::info!(
            "removed {} temporary archive(s) ({} bytes) of killed saves from {}",
            swept.entries,
            swept.bytes,
            dir.display()
        ),
        Ok(_) => {}
        Err(e) => log::warn!(
            "cannot remove temporary archives of killed saves from {}: {e}",
            dir.display()
        ),
    }
    // tempfile's default is 0600; the archive gets the mode any new
    // file would (0666 less the umask), as with `docker save -o`.
    let mut file = tempfile::Builder::new()
        .prefix(&format!(
            "{}{}-",
            temp::SAVE_PREFIX,
            temp::Owner::current().tag()
        ))
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    file.as_file()
        .lock()
        .with_context(|| format!("cannot lock {}", file.path().display()))?;
    let value = {
        let mut writer = io::BufWriter::with_capacity(1 << 20, file.as_file_mut());
        let value = write(&mut writer)?;
        writer
            .flush()
            .with_context(|| format!("cannot write {}", path.display()))?;
        value
    };
    file.as_file()
        .sync_all()
        .with_context(|| format!("cannot write {}", path.display()))?;
    fault::point("save.written");
    file.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    fault::point("save.renamed");
    Ok(value)
}
