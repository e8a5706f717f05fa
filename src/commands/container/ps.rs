//! `kiln ps`: containers, as `docker ps` lists them.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use serde_json::{Map, Value, json};

use super::{Container, status_text};
use crate::table::{RowFormat, parse_created, since};

/// Arguments of `kiln ps`.
#[derive(Debug, Args)]
#[expect(clippy::struct_excessive_bools, reason = "Docker's flags")]
pub struct PsArgs {
    /// Show all containers (the default shows running ones).
    #[arg(short, long)]
    all: bool,
    /// Only show container IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Do not truncate IDs and commands.
    #[arg(long)]
    no_trunc: bool,
    /// Show the latest created container only.
    #[arg(short, long)]
    latest: bool,
    /// Filter: status=, name=, ancestor=, label=K[=V], id=.
    #[arg(short, long, value_name = "FILTER")]
    filter: Vec<String>,
    /// `table`, `json`, `table TEMPLATE` or a Go template.
    #[arg(long)]
    format: Option<String>,
}

const DEFAULT_TABLE: &str =
    "{{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

/// Docker's `formatter.Ellipsis`: at most `width` characters, the last an
/// ellipsis when cut.
fn ellipsis(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Go's `strconv.Quote` for the printable text Docker quotes here.
fn go_quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ =
                    std::fmt::Write::write_fmt(&mut out, format_args!("\\x{:02x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `word` as a POSIX shell reads it back: as is when plain, else in
/// single quotes.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./_-".contains(&b));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\"'\"'"))
    }
}

struct Filters {
    status: Vec<String>,
    name: Vec<String>,
    ancestor: Vec<String>,
    label: Vec<String>,
    id: Vec<String>,
    /// The image IDs the ancestor filters name.
    ancestor_ids: Vec<String>,
}

impl Filters {
    fn parse(filters: &[String]) -> anyhow::Result<Filters> {
        let mut parsed = Filters {
            status: Vec::new(),
            name: Vec::new(),
            ancestor: Vec::new(),
            label: Vec::new(),
            id: Vec::new(),
            ancestor_ids: Vec::new(),
        };
        for filter in filters {
            let Some((key, value)) = filter.split_once('=') else {
                bail!("bad format of filter (expected name=value)");
            };
            let list = match key {
                "status" => {
                    let known = [
                        "created",
                        "restarting",
                        "running",
                        "removing",
                        "paused",
                        "exited",
                        "dead",
                    ];
                    if !known.contains(&value) {
                        bail!("invalid filter 'status={value}'");
                    }
                    &mut parsed.status
                }
                "name" => &mut parsed.name,
                "ancestor" => &mut parsed.ancestor,
                "label" => &mut parsed.label,
                "id" => &mut parsed.id,
                _ => bail!("invalid filter '{key}'"),
            };
            list.push(value.to_owned());
        }
        Ok(parsed)
    }

    fn keeps(&self, container: &Container) -> bool {
        let config = &container.config;
        let any = |list: &[String], f: &dyn Fn(&str) -> bool| {
            list.is_empty() || list.iter().any(|v| f(v))
        };
        any(&self.status, &|s| s == container.state.status)
            && any(&self.name, &|n| {
                config.name.contains(n.trim_start_matches('/'))
            })
            && any(&self.id, &|i| config.id.starts_with(i))
            && any(&self.label, &|l| {
                let labels = config.config.get("Labels");
                match l.split_once('=') {
                    Some((k, v)) => {
                        labels.and_then(|m| m.get(k)).and_then(Value::as_str) == Some(v)
                    }
                    None => labels.and_then(|m| m.get(l)).is_some(),
                }
            })
            && any(&self.ancestor, &|a| {
                config.image == a
                    || config
                        .image_id
                        .trim_start_matches("sha256:")
                        .starts_with(a.trim_start_matches("sha256:"))
                    || self.ancestor_ids.contains(&config.image_id)
            })
    }
}

/// Runs `kiln ps`.
pub fn run(root: Option<&Path>, args: &PsArgs) -> anyhow::Result<ExitCode> {
    let store = super::containers_at(root);
    let mut filters = Filters::parse(&args.filter)?;
    if !filters.ancestor.is_empty() {
        // Only an ancestor filter needs the images.
        let images = crate::commands::open_store(root)?;
        filters.ancestor_ids = filters
            .ancestor
            .iter()
            .filter_map(|a| images.resolve(a).ok())
            .map(|image| image.id.to_string())
            .collect();
    }
    let format = RowFormat::parse(args.format.as_deref(), DEFAULT_TABLE)?;
    let mut containers: Vec<Container> = store
        .ids()?
        .iter()
        .filter_map(|id| Container::load(&store, id).ok())
        .collect();
    containers.sort_by(|a, b| b.config.created.cmp(&a.config.created));
    let show_all = args.all || args.latest || !filters.status.is_empty();
    containers.retain(|c| (show_all || c.is_running()) && filters.keeps(c));
    if args.latest {
        containers.truncate(1);
    }
    let mut stdout = std::io::stdout().lock();
    if args.quiet {
        for container in &containers {
            let id = if args.no_trunc {
                &container.config.id
            } else {
                container.short_id()
            };
            writeln!(stdout, "{id}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Map<String, Value>> = containers.iter().map(|c| row(c, args.no_trunc)).collect();
    write!(stdout, "{}", format.render(&headers(), &rows)?)?;
    Ok(ExitCode::SUCCESS)
}

fn headers() -> Map<String, Value> {
    let Value::Object(map) = json!({
        "Command": "COMMAND",
        "CreatedAt": "CREATED AT",
        "ID": "CONTAINER ID",
        "Image": "IMAGE",
        "Labels": "LABELS",
        "LocalVolumes": "LOCAL VOLUMES",
        "Mounts": "MOUNTS",
        "Names": "NAMES",
        "Networks": "NETWORKS",
        "Ports": "PORTS",
        "RunningFor": "CREATED",
        "Size": "SIZE",
        "State": "STATE",
        "Status": "STATUS",
    }) else {
        return Map::new();
    };
    map
}

pub(crate) fn row(container: &Container, no_trunc: bool) -> Map<String, Value> {
    let config = &container.config;
    // Docker joins the command line with shell quoting where needed.
    let command = std::iter::once(config.path.as_str())
        .chain(config.args.iter().map(String::as_str))
        .map(shell_quote)
        .collect::<Vec<_>>()
        .join(" ");
    let command = if no_trunc {
        command
    } else {
        ellipsis(&command, 20)
    };
    let labels = config
        .config
        .get("Labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let created = parse_created(Some(&config.created));
    let id = if no_trunc {
        config.id.clone()
    } else {
        container.short_id().to_owned()
    };
    let network = config
        .host_config
        .get("NetworkMode")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let Value::Object(map) = json!({
        "Command": go_quote(&command),
        "CreatedAt": created.map(|c| c.strftime("%Y-%m-%d %H:%M:%S +0000 UTC").to_string()).unwrap_or_default(),
        "ID": id,
        "Image": config.image,
        "Labels": labels,
        "LocalVolumes": "0",
        "Mounts": "",
        "Names": config.name,
        "Networks": network,
        "Ports": super::publish::ps_column(&running_ports(container)),
        "RunningFor": since(created),
        "Size": "",
        "State": container.state.status,
        "Status": status_text(&container.state),
    }) else {
        return Map::new();
    };
    map
}

/// Docker's `NetworkSettings.Ports` of `container`: what its monitor
/// published while it runs, nothing otherwise (as Docker, whose stopped
/// containers list no ports).
pub(crate) fn running_ports(container: &Container) -> Value {
    container
        .state
        .ports
        .clone()
        .filter(|_| container.is_running())
        .unwrap_or_else(|| json!({}))
}
