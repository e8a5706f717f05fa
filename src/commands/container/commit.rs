//! `kiln commit`: a container's writable layer becomes a layer on top of
//! its image, as `docker commit` makes it.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{ArgAction, Args};
use kiln_store::containers::UPPER_DIR;
use kiln_store::layer::{Compression, PackOptions};
use kiln_store::spec::{ContainerConfig, History};

use super::Container;

/// Arguments of `kiln commit`.
#[derive(Debug, Args)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>").
    #[arg(short, long)]
    author: Option<String>,
    /// Apply a Dockerfile instruction to the created image: CMD,
    /// ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME or WORKDIR.
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    changes: Vec<String>,
    /// Commit message (the history comment).
    #[arg(short, long, value_name = "MSG")]
    message: Option<String>,
    /// Pause the container's processes during the commit (SIGSTOP, then
    /// SIGCONT), so its files do not change half-way.
    #[arg(
        short,
        long,
        action = ArgAction::Set,
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pause: bool,
    /// The container (ID, ID prefix or name).
    container: String,
    /// Name for the image.
    #[arg(value_name = "REPOSITORY[:TAG]")]
    reference: Option<String>,
}

/// Runs `kiln commit`; prints the new image ID on stdout, as Docker does.
pub fn run(root: Option<&Path>, args: &CommitArgs) -> anyhow::Result<ExitCode> {
    let references = match &args.reference {
        Some(name) => {
            let reference = crate::commands::parse_reference(name)?;
            if reference.digest().is_some() {
                bail!("refusing to create a tag with a digest reference");
            }
            vec![reference]
        }
        None => Vec::new(),
    };
    let store = crate::commands::open_store(root)?;
    let container = super::find(&store, &args.container)?;
    let digest = kiln_store::digest::parse_sha256(&container.config.manifest_digest)?;
    let image = store.image(&digest).with_context(|| {
        format!(
            "the image of container {} ({}) is gone",
            container.short_id(),
            container.config.image
        )
    })?;
    let mut config = image.config.clone();
    let mut run_config = commit_config(config.config.clone().unwrap_or_default(), &container);
    crate::commands::import::apply_changes_to(&mut run_config, &args.changes)?;
    config.config = Some(run_config);

    let upper = container.dir.join(UPPER_DIR);
    // The upper directory is read by path: a running process of the
    // container could swap one of its directories for a symlink to the
    // host's / while it is read. Paused, none can.
    if !args.pause && container.is_running() {
        bail!(
            "refusing to commit the running container {} without pausing it: its processes could swap a directory for a symlink while its files are read; commit with --pause (the default) or stop it first",
            container.short_id()
        );
    }
    let paused = if args.pause && container.is_running() {
        Some(Paused::stop(&container)?)
    } else {
        None
    };
    let layer = if is_empty_dir(&upper)? {
        None
    } else {
        Some(
            store
                .write_build_layer(
                    &upper,
                    Compression::None,
                    &PackOptions {
                        clamp_mtime: None,
                        overlay_whiteouts: true,
                        owner_names: None,
                    },
                )
                .with_context(|| format!("cannot pack the changes of {}", container.short_id()))?,
        )
    };
    drop(paused);

    let created = crate::commands::import::created_time();
    let command = std::iter::once(container.config.path.as_str())
        .chain(container.config.args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    config.created = Some(created.clone());
    config.author = args.author.clone().or(config.author);
    config.history.push(History {
        created: Some(created),
        created_by: Some(command),
        author: args.author.clone(),
        comment: args.message.clone().filter(|m| !m.is_empty()),
        empty_layer: layer.is_none(),
    });
    let mut layers = image.manifest.layers.clone();
    if let Some(layer) = &layer {
        config.rootfs.diff_ids.push(layer.diff_id.to_string());
        layers.push(layer.descriptor.clone());
    }
    let (_, id) = store.commit_image(&config, &layers, &references)?;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

/// The image's run-time config with the container's settings, as Docker
/// commits `container.Config`: its environment (without the HOSTNAME the
/// runtime adds), user, working directory and command (the image's
/// ENTRYPOINT kept when the command starts with it).
fn commit_config(mut config: ContainerConfig, container: &Container) -> ContainerConfig {
    let docker = &container.config.config;
    let strings = |key: &str| -> Option<Vec<String>> {
        docker.get(key).and_then(|v| v.as_array()).map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
    };
    if let Some(env) = strings("Env") {
        config.env = Some(
            env.into_iter()
                .filter(|e| !e.starts_with("HOSTNAME="))
                .collect(),
        );
    }
    if let Some(user) = docker.get("User").and_then(|v| v.as_str()) {
        config.user = (!user.is_empty()).then(|| user.to_owned()).or(config.user);
    }
    if let Some(dir) = docker.get("WorkingDir").and_then(|v| v.as_str())
        && !(dir == "/" && config.working_dir.is_none())
    {
        config.working_dir = Some(dir.to_owned());
    }
    let argv: Vec<String> = std::iter::once(container.config.path.clone())
        .chain(container.config.args.iter().cloned())
        .collect();
    let entrypoint = config.entrypoint.clone().unwrap_or_default();
    if !entrypoint.is_empty() && argv.starts_with(&entrypoint) {
        config.cmd = Some(argv[entrypoint.len()..].to_vec());
    } else {
        config.entrypoint = None;
        config.cmd = Some(argv);
    }
    config
}

fn is_empty_dir(dir: &Path) -> anyhow::Result<bool> {
    Ok(std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .next()
        .is_none())
}

/// The container's processes stopped with SIGSTOP until dropped (then
/// SIGCONT): every process in the container's PID namespace, found again
/// until no new one appears (one may fork while the others stop).
struct Paused {
    pids: BTreeSet<i32>,
}

impl Paused {
    fn stop(container: &Container) -> anyhow::Result<Paused> {
        let mut paused = Paused {
            pids: BTreeSet::new(),
        };
        for _ in 0..16 {
            let mut found = false;
            for pid in super::processes(container)? {
                if paused.pids.contains(&pid) {
                    continue;
                }
                // SAFETY: kill with a pid of the container and a valid signal.
                if unsafe { libc::kill(pid, libc::SIGSTOP) } == 0 {
                    paused.pids.insert(pid);
                    found = true;
                }
            }
            if !found {
                break;
            }
        }
        Ok(paused)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        for pid in &self.pids {
            // SAFETY: kill with a pid this struct stopped and SIGCONT.
            unsafe { libc::kill(*pid, libc::SIGCONT) };
        }
    }
}
