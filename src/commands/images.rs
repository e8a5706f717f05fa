//! `kiln images`: the images in the store, as `docker images` lists them.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use kiln_store::Image;
use serde_json::{Map, Value, json};

use crate::table::{RowFormat, go_time, parse_created, since};
use crate::units::human_size;

/// Arguments of `kiln images`.
#[derive(Debug, Args)]
#[expect(clippy::struct_excessive_bools, reason = "Docker's flags")]
pub struct ImagesArgs {
    /// Show all images (kiln keeps no intermediate images, so this is the
    /// same list).
    #[arg(short, long)]
    all: bool,
    /// Only show image IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Show manifest digests.
    #[arg(long)]
    digests: bool,
    /// Do not truncate IDs.
    #[arg(long)]
    no_trunc: bool,
    /// Filter: dangling=true|false, reference=PATTERN, label=K[=V],
    /// before=IMAGE, since=IMAGE.
    #[arg(short, long, value_name = "FILTER")]
    filter: Vec<String>,
    /// `table`, `json`, `table TEMPLATE` or a Go template.
    #[arg(long)]
    format: Option<String>,
    /// Only images of this repository (`REPOSITORY[:TAG]`).
    repository: Option<String>,
}

/// One row: an image under one of its names (or `<none>`).
struct Row<'a> {
    image: &'a Image,
    repository: String,
    tag: String,
}

/// Runs `kiln images`.
pub fn run(root: Option<&Path>, args: &ImagesArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(root)?;
    let mut images = store.images()?;
    images.sort_by(|a, b| {
        let created = |i: &Image| parse_created(i.config.created.as_deref());
        created(b).cmp(&created(a)).then_with(|| a.id.cmp(&b.id))
    });
    let filters = Filters::parse(&args.filter, &store)?;
    let mut rows = Vec::new();
    for image in &images {
        if !filters.keeps_image(image) {
            continue;
        }
        if image.tags.is_empty() {
            if filters.reference.is_empty() && args.repository.is_none() {
                rows.push(Row {
                    image,
                    repository: "<none>".to_owned(),
                    tag: "<none>".to_owned(),
                });
            }
            continue;
        }
        for tag in &image.tags {
            let reference = super::parse_reference(tag)?;
            let repository = reference.familiar_name();
            let tag = reference.tag().unwrap_or("<none>").to_owned();
            let familiar = format!("{repository}:{tag}");
            if !filters.reference.is_empty()
                && !filters
                    .reference
                    .iter()
                    .any(|p| glob_match(p, &repository) || glob_match(p, &familiar))
            {
                continue;
            }
            if let Some(wanted) = &args.repository {
                // `REPOSITORY[:TAG]`, with Go path.Match wildcards as Docker.
                let has_tag = wanted
                    .rsplit('/')
                    .next()
                    .is_some_and(|last| last.contains(':'));
                let subject = if has_tag { &familiar } else { &repository };
                if !glob_match(wanted, subject) {
                    continue;
                }
            }
            rows.push(Row {
                image,
                repository,
                tag,
            });
        }
    }
    let mut stdout = std::io::stdout().lock();
    if args.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for row in &rows {
            let id = display_id(row.image, args.no_trunc);
            if seen.insert(id.clone()) {
                writeln!(stdout, "{id}")?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let default_table = if args.digests {
        "{{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    } else {
        "{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    };
    let format = RowFormat::parse(args.format.as_deref(), default_table)?;
    let headers = header_row();
    let data: Vec<Map<String, Value>> = rows.iter().map(|r| row_fields(r, args.no_trunc)).collect();
    write!(stdout, "{}", format.render(&headers, &data)?)?;
    Ok(ExitCode::SUCCESS)
}

fn display_id(image: &Image, no_trunc: bool) -> String {
    if no_trunc {
        image.id.to_string()
    } else {
        image.short_id()
    }
}

fn header_row() -> Map<String, Value> {
    let Value::Object(map) = json!({
        "Containers": "CONTAINERS",
        "CreatedAt": "CREATED AT",
        "CreatedSince": "CREATED",
        "Digest": "DIGEST",
        "ID": "IMAGE ID",
        "Repository": "REPOSITORY",
        "SharedSize": "SHARED SIZE",
        "Size": "SIZE",
        "Tag": "TAG",
        "UniqueSize": "UNIQUE SIZE",
        "VirtualSize": "VIRTUAL SIZE",
    }) else {
        return Map::new();
    };
    map
}

fn row_fields(row: &Row<'_>, no_trunc: bool) -> Map<String, Value> {
    let created = parse_created(row.image.config.created.as_deref());
    let size = human_size(row.image.size());
    let Value::Object(map) = json!({
        "Containers": "N/A",
        "CreatedAt": created.map_or_else(String::new, go_time),
        "CreatedSince": since(created),
        "Digest": row.image.manifest_digest.to_string(),
        "ID": display_id(row.image, no_trunc),
        "Repository": row.repository,
        "SharedSize": "N/A",
        "Size": size,
        "Tag": row.tag,
        "UniqueSize": "N/A",
        "VirtualSize": size,
    }) else {
        return Map::new();
    };
    map
}

/// Parsed `--filter` values.
struct Filters {
    dangling: Option<bool>,
    reference: Vec<String>,
    labels: Vec<(String, Option<String>)>,
    before: Option<jiff::Timestamp>,
    since: Option<jiff::Timestamp>,
}

impl Filters {
    fn parse(filters: &[String], store: &kiln_store::Store) -> anyhow::Result<Self> {
        let mut parsed = Self {
            dangling: None,
            reference: Vec::new(),
            labels: Vec::new(),
            before: None,
            since: None,
        };
        for filter in filters {
            let Some((key, value)) = filter.split_once('=') else {
                bail!("bad format of filter (expected name=value): {filter}");
            };
            match key {
                "dangling" => {
                    parsed.dangling = Some(match value {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => bail!("invalid filter 'dangling={value}': expected true or false"),
                    });
                }
                "reference" => parsed.reference.push(value.to_owned()),
                "label" => parsed.labels.push(match value.split_once('=') {
                    Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                    None => (value.to_owned(), None),
                }),
                "before" => parsed.before = Some(created_of(store, value)?),
                "since" => parsed.since = Some(created_of(store, value)?),
                _ => bail!("invalid filter '{key}'"),
            }
        }
        Ok(parsed)
    }

    fn keeps_image(&self, image: &Image) -> bool {
        if let Some(dangling) = self.dangling
            && dangling != image.tags.is_empty()
        {
            return false;
        }
        let labels = image.config.config.as_ref().and_then(|c| c.labels.as_ref());
        for (key, value) in &self.labels {
            let found = labels.and_then(|l| l.get(key));
            match (found, value) {
                (None, _) => return false,
                (Some(found), Some(value)) if found != value => return false,
                _ => {}
            }
        }
        let created = parse_created(image.config.created.as_deref());
        if let Some(before) = self.before
            && created.is_none_or(|c| c >= before)
        {
            return false;
        }
        if let Some(since) = self.since
            && created.is_none_or(|c| c <= since)
        {
            return false;
        }
        true
    }
}

/// The creation time of the image a `before=`/`since=` filter names.
fn created_of(store: &kiln_store::Store, name: &str) -> anyhow::Result<jiff::Timestamp> {
    let image = store.resolve(name)?;
    parse_created(image.config.created.as_deref())
        .ok_or_else(|| anyhow::anyhow!("image {name} has no creation time to filter by"))
}

/// Go's `path.Match`, what Docker's reference filter uses (the same as
/// `filepath.Match` on Linux, which kiln-parser ports for .dockerignore);
/// a malformed pattern matches nothing.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    kiln_parser::dockerignore::filepath_match(pattern, name).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn matches_like_go_path_match() {
        assert!(glob_match("busy*", "busybox"));
        assert!(glob_match("*box:1", "busybox:1"));
        assert!(!glob_match("*", "localhost/x"));
        assert!(glob_match("*/x", "localhost/x"));
        assert!(glob_match("b?sybox", "busybox"));
        assert!(glob_match("[a-c]usybox", "busybox"));
        assert!(!glob_match("[^b]usybox", "busybox"));
        assert!(!glob_match("busy", "busybox"));
    }
}
