//! `kiln history`: the steps that made an image, as `docker history`.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use clap::{ArgAction, Args};
use serde_json::{Map, Value, json};

use crate::table::{RowFormat, parse_created, since};
use crate::units::human_size;

/// Arguments of `kiln history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Do not truncate the output.
    #[arg(long)]
    no_trunc: bool,
    /// Only show image IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Print sizes and dates in human-readable form (`-H=false` for raw).
    #[arg(short = 'H', long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    human: bool,
    /// `table`, `json`, `table TEMPLATE` or a Go template.
    #[arg(long)]
    format: Option<String>,
    /// The image, by name or ID.
    image: String,
}

/// Runs `kiln history`.
pub fn run(root: Option<&Path>, args: &HistoryArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(root)?;
    let image = store.resolve(&args.image)?;
    let id = if args.no_trunc {
        image.id.to_string()
    } else {
        image.short_id()
    };
    // Layer sizes go to the non-empty history entries, in order.
    let mut layer_sizes = image
        .manifest
        .layers
        .iter()
        .map(|l| u64::try_from(l.size).unwrap_or(0));
    let mut rows = Vec::new();
    for entry in &image.config.history {
        let size = if entry.empty_layer {
            0
        } else {
            layer_sizes.next().unwrap_or(0)
        };
        rows.push((entry, size));
    }
    rows.reverse();
    let mut stdout = std::io::stdout().lock();
    if args.quiet {
        for (i, _) in rows.iter().enumerate() {
            writeln!(stdout, "{}", if i == 0 { id.as_str() } else { "<missing>" })?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let table = args
        .format
        .as_deref()
        .is_none_or(|f| f.trim_start().starts_with("table"));
    let data: Vec<Map<String, Value>> = rows
        .iter()
        .enumerate()
        .map(|(i, (entry, size))| {
            let created = parse_created(entry.created.as_deref());
            let rfc3339 = created.map_or_else(String::new, |c| {
                c.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
            });
            let mut created_by = entry
                .created_by
                .clone()
                .unwrap_or_default()
                .replace('\t', " ");
            // A heredoc's lines would break a table row: shown as `\n`
            // there (Docker's table breaks); templates get the text as is.
            if table {
                created_by = created_by.replace('\n', "\\n");
            }
            let created_by = if args.no_trunc {
                created_by
            } else {
                ellipsis(&created_by, 45)
            };
            let row = json!({
                "Comment": entry.comment.clone().unwrap_or_default(),
                "CreatedAt": rfc3339.clone(),
                "CreatedBy": created_by,
                "CreatedSince": if args.human { since(created) } else { rfc3339 },
                "ID": if i == 0 { id.clone() } else { "<missing>".to_owned() },
                "Size": if args.human { human_size(*size) } else { size.to_string() },
            });
            match row {
                Value::Object(map) => map,
                _ => Map::new(),
            }
        })
        .collect();
    let Value::Object(headers) = json!({
        "Comment": "COMMENT",
        "CreatedAt": "CREATED AT",
        "CreatedBy": "CREATED BY",
        "CreatedSince": "CREATED",
        "ID": "IMAGE",
        "Size": "SIZE",
    }) else {
        return Ok(ExitCode::FAILURE);
    };
    let format = RowFormat::parse(
        args.format.as_deref(),
        "{{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}",
    )?;
    write!(stdout, "{}", format.render(&headers, &data)?)?;
    Ok(ExitCode::SUCCESS)
}

/// Docker's `stringutils.Ellipsis`: at most `max` characters, the last
/// one `…` when cut.
pub(crate) fn ellipsis(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}
