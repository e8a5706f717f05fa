//! `kiln inspect`: image details as `docker image inspect` prints them,
//! and container details as `docker container inspect` does.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use kiln_store::Image;
use serde_json::{Value, json};

use crate::template::Template;

/// Arguments of `kiln inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format the output with a Go template (`{{.Config.Env}}`).
    #[arg(short, long, value_name = "TEMPLATE")]
    format: Option<String>,
    /// Only this kind of object: image or container (default: an image,
    /// else a container).
    #[arg(long = "type", value_parser = ["image", "container"], value_name = "image|container")]
    kind: Option<String>,
    /// Images or containers, by name or ID.
    #[arg(required = true, value_name = "NAME|ID")]
    images: Vec<String>,
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

/// Runs `kiln inspect`. As with Docker, every image that exists is
/// printed, missing ones are reported on stderr, and the exit status is 1
/// if any was missing.
pub fn run(root: Option<&Path>, args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(root)?;
    let template = args
        .format
        .as_deref()
        .map(|f| Template::parse(&f.replace("\\t", "\t").replace("\\n", "\n")))
        .transpose()?;
    let mut documents = Vec::new();
    let mut failed = false;
    for name in &args.images {
        let found = match args.kind.as_deref() {
            Some("image") => store
                .resolve(name)
                .map(|image| inspect_document(&image))
                .map_err(anyhow::Error::from),
            Some(_) => super::container::find(&store, name)
                .map(|c| super::container::inspect::document(&c)),
            None => match store.resolve(name) {
                Ok(image) => Ok(inspect_document(&image)),
                Err(kiln_store::StoreError::ImageNotFound(_)) => {
                    match super::container::find(&store, name) {
                        Ok(container) => Ok(super::container::inspect::document(&container)),
                        Err(e) if super::container::is_not_found(&e) => {
                            Err(anyhow::anyhow!("No such object: {name}"))
                        }
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e.into()),
            },
        };
        match found {
            Ok(document) => documents.push(document),
            Err(error) => {
                crate::output::print_error(&error);
                failed = true;
            }
        }
    }
    let mut stdout = std::io::stdout().lock();
    if let Some(template) = template {
        for document in &documents {
            writeln!(stdout, "{}", template.execute(document)?)?;
        }
    } else {
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
