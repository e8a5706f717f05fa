//! `kiln cache ls|du|prune`: the build cache, as `docker buildx du` and
//! `docker builder prune` show and trim it.

use std::collections::BTreeMap;
use std::io::{self, BufRead as _, Write as _};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use kiln_builder::cache::{BuildCache, CacheEntry, PruneOptions};
use serde_json::{Map, Value, json};

use crate::table::{RowFormat, go_time, since, tabwrite};
use crate::units::{human_size, parse_size};

/// How many characters of a description `kiln cache ls` shows.
const DESCRIPTION_WIDTH: usize = 50;

/// `kiln cache` subcommands.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List build-cache records, most recently used first.
    Ls(LsArgs),
    /// Show the space the build cache uses and how much a prune can free.
    Du,
    /// Remove build cache records and the layers only they keep.
    Prune(PruneArgs),
}

/// Arguments of `kiln cache ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only show IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Do not truncate IDs and descriptions.
    #[arg(long)]
    no_trunc: bool,
    /// Show each record's step (stage, position, instruction) and the
    /// inputs of its operation, as its key was computed from them
    /// (fields `Step` and `Inputs` in templates and JSON).
    #[arg(long)]
    inputs: bool,
    /// `table`, `json`, `table TEMPLATE` or a Go template (fields: `ID`,
    /// `Size`, `LastUsed`, `LastUsedAt`, `CreatedAt`, `Shared`, `Description`).
    #[arg(long)]
    format: Option<String>,
}

/// Arguments of `kiln cache prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Also remove records whose layers images in the store use (removing
    /// those frees no space, but the next build of them misses the cache),
    /// and the incremental COPY's lineage records.
    #[arg(short, long)]
    all: bool,
    /// Filter: until=DURATION (Go duration: records unused for longer).
    #[arg(long, value_name = "FILTER")]
    filter: Vec<String>,
    /// Remove least recently used records only until the cache is at most
    /// this big (`512m`, `10GB`).
    #[arg(long, value_name = "SIZE")]
    keep_storage: Option<String>,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    force: bool,
}

/// Runs a `kiln cache` subcommand.
pub fn run(root: Option<&Path>, command: &CacheCommand) -> anyhow::Result<ExitCode> {
    match command {
        CacheCommand::Ls(args) => ls(root, args),
        CacheCommand::Du => du(root),
        CacheCommand::Prune(args) => prune(root, args),
    }
}

fn ls(root: Option<&Path>, args: &LsArgs) -> anyhow::Result<ExitCode> {
    let format = RowFormat::parse(
        args.format.as_deref(),
        "{{.ID}}\t{{.Size}}\t{{.LastUsed}}\t{{.Description}}",
    )?;
    let store = super::open_store(root)?;
    let listing = BuildCache::new(&store).scan()?;
    warn_unreadable(listing.unreadable.len());
    let rows: Vec<Map<String, Value>> = listing
        .entries
        .iter()
        .rev()
        .map(|entry| {
            let mut row = row_fields(entry, args.no_trunc);
            if args.inputs {
                let record = &entry.record;
                let step = record.step.as_ref().map_or_else(String::new, |s| {
                    format!("stage {}, step {}: {}", s.stage, s.position, s.instruction)
                });
                let inputs = record
                    .inputs
                    .as_ref()
                    .map_or_else(String::new, kiln_builder::ops::canonical_json);
                row.insert("Step".to_owned(), Value::String(step));
                row.insert("Inputs".to_owned(), Value::String(inputs));
            }
            row
        })
        .collect();
    if args.quiet {
        let mut stdout = io::stdout().lock();
        for row in &rows {
            if let Some(Value::String(id)) = row.get("ID") {
                writeln!(stdout, "{id}")?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.inputs && args.format.is_none() {
        // A record's inputs do not fit a table column: a block each.
        let mut stdout = io::stdout().lock();
        for row in &rows {
            let field = |name: &str| row.get(name).and_then(Value::as_str).unwrap_or("");
            writeln!(stdout, "{}\t{}", field("ID"), field("Description"))?;
            writeln!(stdout, "  step:   {}", field("Step"))?;
            writeln!(stdout, "  inputs: {}", field("Inputs"))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Value::Object(headers) = json!({
        "CreatedAt": "CREATED AT",
        "Description": "DESCRIPTION",
        "ID": "ID",
        "LastUsed": "LAST USED",
        "LastUsedAt": "LAST USED AT",
        "Shared": "SHARED",
        "Size": "SIZE",
    }) else {
        bail!("header row is not an object");
    };
    write!(io::stdout().lock(), "{}", format.render(&headers, &rows)?)?;
    Ok(ExitCode::SUCCESS)
}

fn row_fields(entry: &CacheEntry, no_trunc: bool) -> Map<String, Value> {
    let record = &entry.record;
    let hex = record.key.strip_prefix("sha256:").unwrap_or(&record.key);
    let (id, description) = if no_trunc {
        (record.key.clone(), record.description.clone())
    } else {
        (
            hex.chars().take(12).collect(),
            super::history::ellipsis(&record.description, DESCRIPTION_WIDTH),
        )
    };
    let last_used = jiff::Timestamp::try_from(entry.last_used).ok();
    let Value::Object(map) = json!({
        "CreatedAt": record.created,
        "Description": description,
        "ID": id,
        "LastUsed": since(last_used),
        "LastUsedAt": last_used.map_or_else(String::new, go_time),
        "Shared": entry.shared,
        "Size": human_size(entry.size),
    }) else {
        return Map::new();
    };
    map
}

/// What the build cache's layers take, each blob counted once (records
/// may share a layer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheUsage {
    /// Readable records.
    pub records: usize,
    /// Records whose layer an image in the store also uses.
    pub records_shared: usize,
    /// Bytes of layers an image also uses (a prune frees none of it).
    pub shared: u64,
    /// Bytes of layers only the cache keeps (what a prune can free).
    pub private: u64,
}

/// The build cache's usage in `store`, warning about unreadable records.
pub fn usage(store: &kiln_store::Store) -> anyhow::Result<CacheUsage> {
    let listing = BuildCache::new(store).scan()?;
    warn_unreadable(listing.unreadable.len());
    let mut blobs: BTreeMap<&str, (u64, bool)> = BTreeMap::new();
    for entry in &listing.entries {
        if let Some(layer) = &entry.record.layer {
            blobs.insert(&layer.descriptor.digest, (entry.size, entry.shared));
        }
    }
    let sum = |shared: bool| -> u64 {
        blobs
            .values()
            .filter(|(_, s)| *s == shared)
            .map(|(size, _)| size)
            .sum()
    };
    Ok(CacheUsage {
        records: listing.entries.len(),
        records_shared: listing.entries.iter().filter(|e| e.shared).count(),
        shared: sum(true),
        private: sum(false),
    })
}

fn du(root: Option<&Path>) -> anyhow::Result<ExitCode> {
    let store = super::open_store(root)?;
    let usage = usage(&store)?;
    let text = format!(
        "Records:\t{}\nShared:\t{}\nPrivate:\t{}\nReclaimable:\t{}\nTotal:\t{}\n",
        usage.records,
        human_size(usage.shared),
        human_size(usage.private),
        human_size(usage.private),
        human_size(usage.shared + usage.private)
    );
    write!(io::stdout().lock(), "{}", tabwrite(&text))?;
    Ok(ExitCode::SUCCESS)
}

fn prune(root: Option<&Path>, args: &PruneArgs) -> anyhow::Result<ExitCode> {
    let options = prune_options(args)?;
    let store = super::open_store(root)?;
    if !args.force {
        let warning = if args.all {
            "WARNING! This will remove all build cache."
        } else {
            "WARNING! This will remove build cache that no image uses."
        };
        eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let report = BuildCache::new(&store).prune(&options)?;
    let mut stdout = io::stdout().lock();
    if !report.removed.is_empty()
        || !report.cache_mounts.is_empty()
        || !report.stat_caches.is_empty()
    {
        writeln!(stdout, "Deleted build cache objects:")?;
        for record in &report.removed {
            let hex = record.key.strip_prefix("sha256:").unwrap_or(&record.key);
            writeln!(stdout, "{hex}")?;
        }
        // Cache mounts are named by the digest of their id, stat caches by
        // the digest of their context's path.
        for name in &report.cache_mounts {
            writeln!(stdout, "{name}")?;
        }
        for name in &report.stat_caches {
            writeln!(stdout, "{}", name.strip_suffix(".bin").unwrap_or(name))?;
        }
        writeln!(stdout)?;
    }
    if report.unreadable_removed > 0 {
        eprintln!(
            "removed {} unreadable build-cache record file(s)",
            report.unreadable_removed
        );
    }
    write!(
        stdout,
        "{}",
        tabwrite(&format!("Total:\t{}\n", human_size(report.reclaimed)))
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Checks the flags of `kiln cache prune` before anything is removed.
fn prune_options(args: &PruneArgs) -> anyhow::Result<PruneOptions> {
    let keep_storage = args
        .keep_storage
        .as_deref()
        .map(|size| parse_size(size).with_context(|| format!("invalid --keep-storage {size:?}")))
        .transpose()?;
    let mut until = None;
    for filter in &args.filter {
        let Some((key, value)) = filter.split_once('=') else {
            bail!("bad format of filter (expected name=value): {filter}");
        };
        match key {
            "until" => until = Some(parse_until(value)?),
            _ => bail!("invalid filter '{key}': kiln cache prune supports until=DURATION"),
        }
    }
    Ok(PruneOptions {
        keep_storage,
        until,
        all: args.all,
    })
}

/// An `until=` value: a non-negative Go duration (`24h`, `90m`).
fn parse_until(value: &str) -> anyhow::Result<Duration> {
    let nanos = kiln_parser::values::parse_duration(value)
        .with_context(|| format!("invalid filter 'until={value}'"))?;
    let nanos = u64::try_from(nanos).map_err(|_| {
        anyhow::anyhow!("invalid filter 'until={value}': the duration must not be negative")
    })?;
    Ok(Duration::from_nanos(nanos))
}

fn warn_unreadable(count: usize) {
    if count > 0 {
        eprintln!(
            "warning: skipped {count} unreadable build-cache record file(s); `kiln cache prune` removes them"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(filter: &[&str], keep: Option<&str>) -> PruneArgs {
        PruneArgs {
            all: false,
            filter: filter.iter().map(|f| (*f).to_owned()).collect(),
            keep_storage: keep.map(str::to_owned),
            force: true,
        }
    }

    fn error(filter: &[&str], keep: Option<&str>) -> String {
        format!("{:#}", prune_options(&args(filter, keep)).unwrap_err())
    }

    #[test]
    fn prune_flags_parse() {
        let options = prune_options(&args(&["until=1h30m"], Some("512m"))).unwrap();
        assert_eq!(
            options,
            PruneOptions {
                keep_storage: Some(512 << 20),
                until: Some(Duration::from_mins(90)),
                all: false,
            }
        );
    }

    #[test]
    fn bad_prune_flags_are_explained() {
        assert_eq!(
            error(&["dangling=true"], None),
            "invalid filter 'dangling': kiln cache prune supports until=DURATION"
        );
        assert_eq!(
            error(&["until"], None),
            "bad format of filter (expected name=value): until"
        );
        assert_eq!(
            error(&["until=24"], None),
            "invalid filter 'until=24': time: missing unit in duration \"24\""
        );
        assert_eq!(
            error(&["until=-1h"], None),
            "invalid filter 'until=-1h': the duration must not be negative"
        );
        assert_eq!(
            error(&[], Some("lots")),
            "invalid --keep-storage \"lots\": invalid size: 'lots'"
        );
    }
}
