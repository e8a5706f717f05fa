//! `kiln diff`: the files added, removed and changed between two images,
//! in the shape of `docker diff` and container-diff. The comparison is
//! the store's ([`kiln_store::compare`]); this module only prints it.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use kiln_store::compare::{
    Counts, Field, ImageDiff, LayerDiff, PathChange, Status, display_bytes, display_path,
};
use kiln_store::layer::changes::{FileNode, FileType};
use kiln_store::{Digest, Image};
use serde_json::{Value, json};

use crate::units::human_size;

/// Output formats of `kiln diff` and `kiln layers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// Lines for people.
    Text,
    /// One JSON document (fields in docs/architecture.md, "Image commands").
    Json,
}

/// Arguments of `kiln diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Show each layer of IMAGE2: shared with IMAGE1, or what it adds,
    /// removes and changes.
    #[arg(long)]
    layers: bool,
    /// `text` or `json`.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    format: ReportFormat,
    /// The first image, by name or ID.
    image1: String,
    /// The second image, by name or ID.
    image2: String,
}

/// Runs `kiln diff`.
pub fn run(root: Option<&Path>, args: &DiffArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(root)?;
    let first = store.resolve(&args.image1)?;
    let second = store.resolve(&args.image2)?;
    let diff = store.diff_images(&first, &second, args.layers)?;
    let mut stdout = std::io::stdout().lock();
    match args.format {
        ReportFormat::Json => {
            let document = json_document(args, &first, &second, &diff);
            writeln!(stdout, "{}", serde_json::to_string_pretty(&document)?)?;
        }
        ReportFormat::Text => write!(stdout, "{}", text(args, &diff))?,
    }
    Ok(ExitCode::SUCCESS)
}

fn text(args: &DiffArgs, diff: &ImageDiff) -> String {
    let mut out = String::new();
    if let Some(layers) = &diff.layers {
        for layer in layers {
            out.push_str(&layer_heading(layer));
            out.push('\n');
            for change in &layer.changes {
                out.push_str("  ");
                out.push_str(&change_line(change));
                out.push('\n');
            }
        }
        for (index, diff_id) in &diff.first_only {
            let _ = writeln!(
                out,
                "{} only: layer {} {}",
                args.image1,
                index + 1,
                short(diff_id)
            );
        }
    } else {
        for change in &diff.changes {
            out.push_str(&change_line(change));
            out.push('\n');
        }
    }
    if diff.changes.is_empty() {
        let _ = writeln!(
            out,
            "no differences between {} and {}",
            args.image1, args.image2
        );
    } else {
        out.push_str(&summary(
            Counts::of(&diff.changes),
            diff.size_before,
            diff.size_after,
        ));
        out.push('\n');
    }
    out
}

fn layer_heading(layer: &LayerDiff) -> String {
    let name = format!("layer {} {}", layer.index + 1, short(&layer.diff_id));
    if layer.shared {
        format!("{name}: shared")
    } else {
        format!(
            "{name}: {}",
            summary(
                Counts::of(&layer.changes),
                layer.size_before,
                layer.size_after
            )
        )
    }
}

/// `1 added, 1 removed, 3 changed; content 4.26MB -> 4.26MB (+28 bytes)`.
fn summary(counts: Counts, before: u64, after: u64) -> String {
    let delta = i128::from(after) - i128::from(before);
    format!(
        "{} added, {} removed, {} changed; content {} -> {} ({delta:+} bytes)",
        counts.added,
        counts.removed,
        counts.changed,
        human_size(before),
        human_size(after)
    )
}

/// `A /path`, `D /path`, `C /path (what changed)`.
fn change_line(change: &PathChange) -> String {
    let path = display_path(&change.path);
    match (change.status, &change.before, &change.after) {
        (Status::Changed, Some(before), Some(after)) => {
            let details: Vec<String> = change
                .fields
                .iter()
                .map(|field| field_change(*field, before, after))
                .collect();
            format!("C {path} ({})", details.join("; "))
        }
        (Status::Removed, ..) => format!("D {path}"),
        _ => format!("A {path}"),
    }
}

fn field_change(field: Field, before: &FileNode, after: &FileNode) -> String {
    match field {
        Field::Type => format!(
            "type {} -> {}",
            before.file_type.name(),
            after.file_type.name()
        ),
        Field::Content => format!(
            "content, {} -> {}",
            human_size(before.size),
            human_size(after.size)
        ),
        Field::Mode => format!("mode {:04o} -> {:04o}", before.mode, after.mode),
        Field::Owner => format!(
            "owner {}:{} -> {}:{}",
            before.uid, before.gid, after.uid, after.gid
        ),
        Field::Link => format!(
            "link {} -> {}",
            display_bytes(before.link.as_deref().unwrap_or_default()),
            display_bytes(after.link.as_deref().unwrap_or_default())
        ),
        Field::Device => format!(
            "device {}:{} -> {}:{}",
            before.device.0, before.device.1, after.device.0, after.device.1
        ),
        _ => field.name().to_owned(),
    }
}

/// `sha256:` and the first 12 hex digits, as kiln prints short IDs.
fn short(digest: &Digest) -> String {
    let hex: String = digest.encoded().chars().take(12).collect();
    format!("{}:{hex}", digest.algorithm())
}

fn json_document(args: &DiffArgs, first: &Image, second: &Image, diff: &ImageDiff) -> Value {
    let mut document = json!({
        "image1": {"name": args.image1, "id": first.id.to_string()},
        "image2": {"name": args.image2, "id": second.id.to_string()},
        "identical": diff.changes.is_empty(),
        "summary": json_summary(Counts::of(&diff.changes), diff.size_before, diff.size_after),
        "shared_layers": diff.shared_layers,
        "changes": diff.changes.iter().map(json_change).collect::<Vec<_>>(),
    });
    if let (Some(layers), Value::Object(map)) = (&diff.layers, &mut document) {
        let layers: Vec<Value> = layers
            .iter()
            .map(|layer| {
                json!({
                    "layer": layer.index + 1,
                    "diff_id": layer.diff_id.to_string(),
                    "shared": layer.shared,
                    "summary": json_summary(
                        Counts::of(&layer.changes),
                        layer.size_before,
                        layer.size_after,
                    ),
                    "changes": layer.changes.iter().map(json_change).collect::<Vec<_>>(),
                })
            })
            .collect();
        map.insert("layers".to_owned(), Value::Array(layers));
        let first_only: Vec<Value> = diff
            .first_only
            .iter()
            .map(|(index, diff_id)| json!({"layer": index + 1, "diff_id": diff_id.to_string()}))
            .collect();
        map.insert("image1_only_layers".to_owned(), Value::Array(first_only));
    }
    document
}

fn json_summary(counts: Counts, before: u64, after: u64) -> Value {
    json!({
        "added": counts.added,
        "removed": counts.removed,
        "changed": counts.changed,
        "size_before": before,
        "size_after": after,
        "size_delta": i128::from(after) - i128::from(before),
    })
}

fn json_change(change: &PathChange) -> Value {
    let status = match change.status {
        Status::Added => "added",
        Status::Removed => "removed",
        Status::Changed => "changed",
    };
    json!({
        "path": display_path(&change.path),
        "status": status,
        "fields": change.fields.iter().map(|f| f.name()).collect::<Vec<_>>(),
        "before": change.before.as_ref().map(json_file),
        "after": change.after.as_ref().map(json_file),
    })
}

fn json_file(node: &FileNode) -> Value {
    let device = matches!(node.file_type, FileType::Char | FileType::Block)
        .then(|| format!("{}:{}", node.device.0, node.device.1));
    json!({
        "type": node.file_type.name(),
        "mode": format!("{:04o}", node.mode),
        "uid": node.uid,
        "gid": node.gid,
        "size": node.size,
        "digest": node.digest.as_ref().map(ToString::to_string),
        "link": node.link.as_deref().map(display_bytes),
        "device": device,
        "xattrs": node.xattrs.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>(),
    })
}
