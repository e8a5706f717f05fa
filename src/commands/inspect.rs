//! `kiln inspect`: image details as `docker image inspect` prints them,
//! container details as `docker container inspect` does; `--type` picks
//! the kind of object as `docker inspect --type` does.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use kiln_store::{Image, Store, StoreError};
use serde_json::{Value, json};

use crate::template::{GoType, IMAGE_INSPECT, Template};

/// Arguments of `kiln inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format the output with a Go template (`{{.Config.Env}}`).
    #[arg(short, long, value_name = "TEMPLATE")]
    format: Option<String>,
    /// Only objects of this type: `image` or `container`.
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<String>,
    /// Containers or images, by name or ID.
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
}

impl InspectArgs {
    /// The arguments of `kiln image inspect`.
    pub fn images_only(mut self) -> Self {
        self.kind = Some("image".to_owned());
        self
    }

    /// The arguments of `kiln container inspect`.
    pub fn containers_only(mut self) -> Self {
        self.kind = Some("container".to_owned());
        self
    }
}

/// The kinds of object `inspect` finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ObjectKind {
    Image,
    Container,
}

impl ObjectKind {
    /// Parses `--type`, with Docker's message for a bad value.
    fn parse(value: &str) -> anyhow::Result<Self> {
        match value {
            "image" => Ok(Self::Image),
            "container" => Ok(Self::Container),
            _ => anyhow::bail!("{value:?} is not a valid value for --type"),
        }
    }
}

/// One object's inspect document and the Go type Docker decodes it into.
struct Found {
    document: Value,
    ty: &'static GoType,
}

/// A container's inspect document, if `name` names a container (its
/// ID, name or a unique ID prefix).
fn find_container(store: &Store, name: &str) -> anyhow::Result<Option<Found>> {
    match super::container::find(store, name) {
        Ok(container) => Ok(Some(Found {
            document: super::container::inspect::document(&container),
            ty: &crate::template::CONTAINER_INSPECT,
        })),
        Err(e) if super::container::is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Looks `name` up as `kind` (any kind when `None`, containers first, as
/// Docker does); the error is Docker's `no such image|container|object`.
fn find(store: &Store, kind: Option<ObjectKind>, name: &str) -> anyhow::Result<Found> {
    if kind != Some(ObjectKind::Image)
        && let Some(found) = find_container(store, name)?
    {
        return Ok(found);
    }
    if kind == Some(ObjectKind::Container) {
        anyhow::bail!("No such container: {name}");
    }
    match store.resolve(name) {
        Ok(image) => Ok(Found {
            document: inspect_document(&image),
            ty: &IMAGE_INSPECT,
        }),
        Err(StoreError::ImageNotFound(_)) if kind.is_none() => {
            anyhow::bail!("No such object: {name}")
        }
        Err(error) => Err(error.into()),
    }
}

/// Runs `kiln inspect`. As with Docker, every object that exists is
/// printed, missing ones are reported on stderr, and the exit status is 1
/// if any was missing.
pub fn run(root: Option<&Path>, args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let kind = args.kind.as_deref().map(ObjectKind::parse).transpose()?;
    let store = super::open_store(root)?;
    let template = args
        .format
        .as_deref()
        .map(Template::parse_flag)
        .transpose()?;
    let mut found = Vec::new();
    let mut failed = false;
    for name in &args.names {
        match find(&store, kind, name) {
            Ok(object) => found.push(object),
            Err(error) => {
                crate::output::print_error(&error);
                failed = true;
            }
        }
    }
    let mut stdout = std::io::stdout().lock();
    if let Some(template) = template {
        for object in &found {
            writeln!(
                stdout,
                "{}",
                template.execute_typed(&object.document, object.ty)?
            )?;
        }
    } else {
        let documents: Vec<Value> = found.into_iter().map(|f| f.document).collect();
        let text = serde_json::to_string_pretty(&Value::Array(documents))?;
        writeln!(stdout, "{}", indent_like_docker(&text))?;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The inspect document of one image, in `docker image inspect`'s shape
/// and field order. Every config field is present (null when unset), as a
/// Go struct would be, so that templates such as `{{.Config.Healthcheck}}`
/// print `<nil>` rather than failing.
pub fn inspect_document(image: &Image) -> Value {
    let config = image.config.config.clone().unwrap_or_default();
    let repo_tags: Vec<String> = image
        .tags
        .iter()
        .filter_map(|t| super::parse_reference(t).ok())
        // A pull by digest names the image `name@digest`: a repo digest,
        // not a tag.
        .filter(|r| r.digest().is_none())
        .map(|r| r.familiar_string())
        .collect();
    // A name pulled by digest shows that digest; a tag pulled through an
    // index, the index's; any other name, the manifest's.
    let repo_digests: Vec<String> = image
        .tags
        .iter()
        .filter_map(|t| Some((t, super::parse_reference(t).ok()?)))
        .map(|(tag, r)| {
            let digest = r
                .digest()
                .or_else(|| image.repo_digests.get(tag))
                .unwrap_or(&image.manifest_digest);
            format!("{}@{digest}", r.familiar_name())
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let comment = image
        .config
        .history
        .last()
        .and_then(|h| h.comment.clone())
        .unwrap_or_default();
    json!({
        "Id": image.id.to_string(),
        "RepoTags": repo_tags,
        "RepoDigests": repo_digests,
        "Parent": "",
        "Comment": comment,
        "Created": image.config.created.clone().unwrap_or_default(),
        "DockerVersion": image.config.extra.get("docker_version").cloned().unwrap_or(json!("")),
        "Author": image.config.author.clone().unwrap_or_default(),
        "Config": {
            "Hostname": "",
            "Domainname": "",
            "User": config.user.unwrap_or_default(),
            "AttachStdin": false,
            "AttachStdout": false,
            "AttachStderr": false,
            "ExposedPorts": config.exposed_ports,
            "Tty": false,
            "OpenStdin": false,
            "StdinOnce": false,
            "Env": config.env,
            "Cmd": config.cmd,
            "Healthcheck": config.healthcheck,
            "ArgsEscaped": config.args_escaped.unwrap_or(false),
            "Image": "",
            "Volumes": config.volumes,
            "WorkingDir": config.working_dir.unwrap_or_default(),
            "Entrypoint": config.entrypoint,
            "OnBuild": config.on_build,
            "Labels": config.labels,
            "StopSignal": config.stop_signal.unwrap_or_default(),
            "Shell": config.shell,
        },
        "Architecture": image.config.architecture,
        "Variant": image.config.variant.clone().unwrap_or_default(),
        "Os": image.config.os,
        "Size": image.size(),
        "RootFS": {
            "Type": image.config.rootfs.kind,
            "Layers": image.config.rootfs.diff_ids,
        },
        "Descriptor": {
            "mediaType": if image.manifest.media_type.is_empty() {
                kiln_store::spec::OCI_MANIFEST
            } else {
                &image.manifest.media_type
            },
            "digest": image.manifest_digest.to_string(),
        },
    })
}

/// `docker inspect` indents with four spaces; `serde_json`'s pretty printer
/// uses two. Leading spaces are doubled (string contents never start a
/// line, since newlines inside strings are escaped).
fn indent_like_docker(text: &str) -> String {
    text.lines()
        .map(|line| {
            let spaces = line.len() - line.trim_start_matches(' ').len();
            format!("{}{}", " ".repeat(spaces * 2), line.trim_start_matches(' '))
        })
        .collect::<Vec<_>>()
        .join("\n")
}
