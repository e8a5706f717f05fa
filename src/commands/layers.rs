//! `kiln layers`: per layer of an image, the bytes it adds, the bytes of
//! them that later layers delete or overwrite (wasted, as dive reports
//! it) and its largest files; the image's efficiency. The measuring is
//! the store's ([`kiln_store::compare::layer_report`]); this module only
//! prints it.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use kiln_store::Image;
use kiln_store::compare::{LayerReport, display_path};
use serde_json::{Value, json};

use super::diff::ReportFormat;
use super::history::ellipsis;
use crate::table::tabwrite;
use crate::units::human_size;

/// Arguments of `kiln layers`.
#[derive(Debug, Args)]
pub struct LayersArgs {
    /// How many of each layer's largest files to show.
    #[arg(long, value_name = "N", default_value_t = 5)]
    top: usize,
    /// `text` or `json`.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    format: ReportFormat,
    /// The image, by name or ID.
    image: String,
}

/// Runs `kiln layers`.
pub fn run(root: Option<&Path>, args: &LayersArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(root)?;
    let image = store.resolve(&args.image)?;
    let report = store.layer_report(&image, args.top)?;
    let created_by = created_by(&image);
    let mut stdout = std::io::stdout().lock();
    match args.format {
        ReportFormat::Json => {
            let document = json_document(args, &image, &report, &created_by);
            writeln!(stdout, "{}", serde_json::to_string_pretty(&document)?)?;
        }
        ReportFormat::Text => write!(stdout, "{}", text(&report, &created_by))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The CREATED BY of each layer: the history entries that are not empty
/// layers belong to the layers in order (as `kiln history` pairs them).
fn created_by(image: &Image) -> Vec<String> {
    image
        .config
        .history
        .iter()
        .filter(|entry| !entry.empty_layer)
        .map(|entry| {
            entry
                .created_by
                .clone()
                .unwrap_or_default()
                .replace(['\t', '\n'], " ")
        })
        .collect()
}

fn text(report: &LayerReport, created_by: &[String]) -> String {
    let mut table = String::from("LAYER\tSIZE\tWASTED\tENTRIES\tCREATED BY\n");
    for layer in &report.layers {
        let _ = writeln!(
            table,
            "{}\t{}\t{}\t{}\t{}",
            layer.index + 1,
            human_size(layer.added),
            human_size(layer.wasted),
            layer.entries,
            ellipsis(created_by.get(layer.index).map_or("", String::as_str), 45)
        );
    }
    let mut out = tabwrite(&table);
    let mut largest = String::from("LAYER\tSIZE\tFILE\n");
    let mut any = false;
    for layer in &report.layers {
        for file in &layer.largest {
            any = true;
            let _ = writeln!(
                largest,
                "{}\t{}\t{}{}",
                layer.index + 1,
                human_size(file.size),
                display_path(&file.path),
                if file.wasted { " (wasted)" } else { "" }
            );
        }
    }
    if any {
        out.push('\n');
        out.push_str(&tabwrite(&largest));
    }
    let _ = writeln!(
        out,
        "\nTotal: {} ({} bytes), wasted: {} ({} bytes), efficiency: {:.2}%",
        human_size(report.total),
        report.total,
        human_size(report.wasted),
        report.wasted,
        report.efficiency() * 100.0
    );
    out
}

fn json_document(
    args: &LayersArgs,
    image: &Image,
    report: &LayerReport,
    created_by: &[String],
) -> Value {
    let layers: Vec<Value> = report
        .layers
        .iter()
        .map(|layer| {
            json!({
                "layer": layer.index + 1,
                "diff_id": layer.diff_id.to_string(),
                "digest": image.manifest.layers.get(layer.index).map(|l| l.digest.clone()),
                "created_by": created_by.get(layer.index),
                "entries": layer.entries,
                "size": layer.added,
                "wasted": layer.wasted,
                "largest": layer.largest.iter().map(|file| json!({
                    "path": display_path(&file.path),
                    "size": file.size,
                    "wasted": file.wasted,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "image": {"name": args.image, "id": image.id.to_string()},
        "layers": layers,
        "total": report.total,
        "wasted": report.wasted,
        "efficiency": report.efficiency(),
    })
}
