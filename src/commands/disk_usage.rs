//! `kiln system df -v`: Docker's verbose disk usage, a table per kind of
//! object (images, containers, volumes, build cache).

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use kiln_builder::cache::BuildCache;
use kiln_store::{Image, Store};

use crate::table::{parse_created, since, tabwrite};
use crate::units::human_size;

/// The four sections of `docker system df -v`.
pub fn render(store: &Store) -> anyhow::Result<String> {
    let mut images = store.images()?;
    images.sort_by(|a, b| {
        let created = |i: &Image| parse_created(i.config.created.as_deref());
        created(b).cmp(&created(a)).then_with(|| a.id.cmp(&b.id))
    });
    // How many images use each layer: a layer of several is shared.
    let mut users: HashMap<&str, usize> = HashMap::new();
    for image in &images {
        for digest in layer_digests(image) {
            *users.entry(digest).or_default() += 1;
        }
    }
    // The store's containers, and how many use each image.
    let kept = store.containers();
    let containers: Vec<crate::commands::container::Container> = store
        .container_ids()?
        .iter()
        .filter_map(|id| crate::commands::container::Container::load(&kept, id).ok())
        .collect();
    let mut image_users: HashMap<String, usize> = HashMap::new();
    for container in &containers {
        *image_users
            .entry(container.config.manifest_digest.clone())
            .or_default() += 1;
    }
    let mut out = String::from("Images space usage:\n\n");
    let mut table = String::from(
        "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\tSHARED SIZE\tUNIQUE SIZE\tCONTAINERS\n",
    );
    for image in &images {
        let shared: i64 = image
            .manifest
            .layers
            .iter()
            .filter(|l| users.get(l.digest.as_str()).is_some_and(|n| *n > 1))
            .map(|l| l.size.max(0))
            .sum();
        let shared = u64::try_from(shared).unwrap_or(0);
        let size = image.size();
        let created = since(parse_created(image.config.created.as_deref()));
        let names = names(image)?;
        let used_by = image_users
            .get(&image.manifest_digest.to_string())
            .copied()
            .unwrap_or(0);
        for (repository, tag) in names {
            let _ = writeln!(
                table,
                "{repository}\t{tag}\t{}\t{created}\t{}\t{}\t{}\t{used_by}",
                image.short_id(),
                human_size(size),
                human_size(shared),
                human_size(size.saturating_sub(shared)),
            );
        }
    }
    out.push_str(&tabwrite(&table));
    out.push_str("\nContainers space usage:\n\n");
    let mut table =
        String::from("CONTAINER ID\tIMAGE\tCOMMAND\tLOCAL VOLUMES\tSIZE\tCREATED\tSTATUS\tNAMES\n");
    let volumes = store.volumes()?;
    for container in &containers {
        let row = crate::commands::container::ps::row(container, false);
        let text = |key: &str| {
            row.get(key)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned()
        };
        let local_volumes = volumes
            .iter()
            .filter(|v| {
                store
                    .volume_users(&v.name)
                    .is_ok_and(|users| users.contains(&container.config.id))
            })
            .count();
        // As Docker's SIZE: what the container wrote (its upper layer).
        let size =
            kiln_store::store::disk_usage(&container.dir.join(kiln_store::containers::UPPER_DIR));
        let _ = writeln!(
            table,
            "{}\t{}\t{}\t{local_volumes}\t{}\t{}\t{}\t{}",
            text("ID"),
            text("Image"),
            text("Command"),
            human_size(size),
            text("RunningFor"),
            text("Status"),
            text("Names"),
        );
    }
    out.push_str(&tabwrite(&table));
    out.push_str("\nLocal Volumes space usage:\n\n");
    let mut table = String::from("VOLUME NAME\tLINKS\tSIZE\n");
    for volume in store.volumes()? {
        let links = store.volume_users(&volume.name)?.len();
        let size = kiln_store::store::disk_usage(&volume.mountpoint);
        let _ = writeln!(table, "{}\t{links}\t{}", volume.name, human_size(size));
    }
    out.push_str(&tabwrite(&table));
    let cache = super::cache::usage(store)?;
    let _ = write!(
        out,
        "\nBuild cache usage: {}\n\n",
        human_size(cache.shared + cache.private)
    );
    let listing = BuildCache::new(store).scan()?;
    let mut table = String::from("CACHE ID\tCACHE TYPE\tSIZE\tCREATED\tLAST USED\tUSAGE\tSHARED\n");
    // Most recently used first; kiln does not count uses (USAGE N/A).
    for entry in listing.entries.iter().rev() {
        let record = &entry.record;
        let hex = record.key.strip_prefix("sha256:").unwrap_or(&record.key);
        let last_used = jiff::Timestamp::try_from(entry.last_used).ok();
        let _ = writeln!(
            table,
            "{}\tregular\t{}\t{}\t{}\tN/A\t{}",
            hex.chars().take(12).collect::<String>(),
            human_size(entry.size),
            since(parse_created(Some(&record.created))),
            since(last_used),
            entry.shared
        );
    }
    out.push_str(&tabwrite(&table));
    Ok(out)
}

/// The distinct layer blobs of an image.
fn layer_digests(image: &Image) -> BTreeSet<&str> {
    image
        .manifest
        .layers
        .iter()
        .map(|l| l.digest.as_str())
        .collect()
}

/// An image's rows: one per name, `<none>` for an untagged image.
fn names(image: &Image) -> anyhow::Result<Vec<(String, String)>> {
    if image.tags.is_empty() {
        return Ok(vec![("<none>".to_owned(), "<none>".to_owned())]);
    }
    image
        .tags
        .iter()
        .map(|tag| {
            let reference = super::parse_reference(tag)?;
            let repository = reference.familiar_name();
            let tag = reference.tag().unwrap_or("<none>").to_owned();
            Ok((repository, tag))
        })
        .collect()
}
