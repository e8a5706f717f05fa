//! `kiln run`'s mounts: `-v`, `--mount` and `--tmpfs` parsed with
//! Docker's syntax and messages, and the volumes of one container
//! ([`ContainerVolumes`]): named ones made on first use, anonymous ones
//! for the image's VOLUMEs, all held in use while the container runs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use kiln_runtime::Mount;
use kiln_store::Store;
use kiln_store::volume::{Attachment, Volume, valid_volume_name};

/// One mount a user asked for, before volumes are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MountRequest {
    /// A host path.
    Bind {
        /// Absolute, existing host path.
        source: PathBuf,
        /// Absolute path in the container.
        target: String,
        /// Read-only.
        read_only: bool,
    },
    /// A volume: by name (made when missing), or anonymous.
    Volume {
        /// The name; `None` for an anonymous volume.
        name: Option<String>,
        /// Absolute path in the container.
        target: String,
        /// Read-only.
        read_only: bool,
        /// Never fill it from the image (`nocopy`, `volume-nocopy`).
        no_copy: bool,
    },
    /// A fresh tmpfs.
    Tmpfs {
        /// Absolute path in the container.
        target: String,
        /// Size limit in bytes.
        size: Option<u64>,
        /// Permission bits of its root (Docker's 1777 when `None`).
        mode: Option<u32>,
    },
}

impl MountRequest {
    fn target(&self) -> &str {
        match self {
            Self::Bind { target, .. }
            | Self::Volume { target, .. }
            | Self::Tmpfs { target, .. } => target,
        }
    }
}

/// `-v SRC:DST[:MODE]`, `-v NAME:DST[:MODE]` or `-v DST`: a host path
/// when SRC is absolute, else a volume name; MODE is a comma list of
/// `ro`, `rw` and `nocopy`.
pub(crate) fn parse_volume(spec: &str) -> anyhow::Result<MountRequest> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [target] => ("", *target, ""),
        [source, target] => (*source, *target, ""),
        [source, target, mode] => (*source, *target, *mode),
        _ => bail!("invalid volume specification: '{spec}'"),
    };
    let (mut read_only, mut no_copy) = (false, false);
    for option in mode.split(',').filter(|o| !o.is_empty()) {
        match option {
            "ro" => read_only = true,
            "rw" => read_only = false,
            "nocopy" => no_copy = true,
            _ => bail!("invalid volume specification: '{spec}': invalid mode: {option}"),
        }
    }
    if !target.starts_with('/') {
        bail!("invalid volume specification: '{spec}': the container path must be absolute");
    }
    if source.starts_with('/') {
        if !Path::new(source).exists() {
            bail!(
                "invalid volume specification: '{spec}': bind source path does not exist: {source}"
            );
        }
        if no_copy {
            bail!("invalid volume specification: '{spec}': invalid mode: nocopy");
        }
        return Ok(MountRequest::Bind {
            source: PathBuf::from(source),
            target: target.to_owned(),
            read_only,
        });
    }
    if !source.is_empty() && !valid_volume_name(source) {
        bail!(kiln_store::StoreError::InvalidVolumeName(source.to_owned()));
    }
    Ok(MountRequest::Volume {
        name: (!source.is_empty()).then(|| source.to_owned()),
        target: target.to_owned(),
        read_only,
        no_copy,
    })
}

/// `--mount type=volume|bind|tmpfs,source=..,target=..,readonly,...` with
/// the Docker CLI's keys, aliases and messages.
pub(crate) fn parse_mount(spec: &str) -> anyhow::Result<MountRequest> {
    parse_mount_fields(spec)
        .with_context(|| format!("invalid argument {spec:?} for \"--mount\" flag"))
        .map_err(|e| anyhow::anyhow!("{e:#}"))
}

fn parse_mount_fields(spec: &str) -> anyhow::Result<MountRequest> {
    let mut kind = "volume".to_owned();
    let (mut source, mut target) = (String::new(), String::new());
    let mut read_only = false;
    let mut no_copy = None;
    let mut size = None;
    let mut mode = None;
    for field in spec.split(',') {
        let (key, value) = match field.split_once('=') {
            Some((key, value)) => (key.to_ascii_lowercase(), Some(value)),
            None => (field.to_ascii_lowercase(), None),
        };
        let flag = |value: Option<&str>, key: &str| -> anyhow::Result<bool> {
            match value {
                None | Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
                Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
                Some(other) => bail!("invalid value for {key}: {other}"),
            }
        };
        match (key.as_str(), value) {
            ("readonly" | "ro", value) => read_only = flag(value, &key)?,
            ("volume-nocopy", value) => no_copy = Some(flag(value, &key)?),
            (_, None) => bail!("invalid field '{field}' must be a key=value pair"),
            ("type", Some(value)) => kind = value.to_ascii_lowercase(),
            ("source" | "src", Some(value)) => value.clone_into(&mut source),
            ("target" | "dst" | "destination", Some(value)) => value.clone_into(&mut target),
            ("tmpfs-size", Some(value)) => {
                size = Some(
                    crate::units::parse_size(value)
                        .map_err(|_| anyhow::anyhow!("invalid value for {key}: {value}"))?,
                );
            }
            ("tmpfs-mode", Some(value)) => {
                mode = Some(
                    u32::from_str_radix(value, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| anyhow::anyhow!("invalid value for {key}: {value}"))?,
                );
            }
            _ => bail!("unexpected key '{key}' in '{field}'"),
        }
    }
    if target.is_empty() {
        bail!("target is required");
    }
    if no_copy.is_some() && kind != "volume" {
        bail!("cannot mix 'volume-*' options with mount type '{kind}'");
    }
    if (size.is_some() || mode.is_some()) && kind != "tmpfs" {
        bail!("cannot mix 'tmpfs-*' options with mount type '{kind}'");
    }
    let config =
        |message: String| anyhow::anyhow!("invalid mount config for type {kind:?}: {message}");
    if !target.starts_with('/') {
        return Err(config(format!(
            "invalid mount path: '{target}' mount path must be absolute"
        )));
    }
    match kind.as_str() {
        "bind" => {
            if source.is_empty() {
                return Err(config("field Source must not be empty".to_owned()));
            }
            if !source.starts_with('/') {
                return Err(config(format!(
                    "invalid mount path: '{source}' mount path must be absolute"
                )));
            }
            if !Path::new(&source).exists() {
                return Err(config(format!("bind source path does not exist: {source}")));
            }
            Ok(MountRequest::Bind {
                source: PathBuf::from(source),
                target,
                read_only,
            })
        }
        "volume" => {
            if !source.is_empty() && !valid_volume_name(&source) {
                bail!(kiln_store::StoreError::InvalidVolumeName(source));
            }
            Ok(MountRequest::Volume {
                name: (!source.is_empty()).then_some(source),
                target,
                read_only,
                no_copy: no_copy.unwrap_or(false),
            })
        }
        "tmpfs" => {
            if !source.is_empty() {
                return Err(config("field Source must not be specified".to_owned()));
            }
            if read_only {
                bail!("kiln has no read-only tmpfs mounts");
            }
            Ok(MountRequest::Tmpfs { target, size, mode })
        }
        other => Err(anyhow::anyhow!(
            "invalid mount config for type {other:?}: mount type unknown"
        )),
    }
}

/// `--tmpfs DST[:OPTIONS]`, OPTIONS a comma list where kiln takes
/// `size=SIZE`, `mode=OCTAL` (and `rw`, its only access mode).
pub(crate) fn parse_tmpfs(spec: &str) -> anyhow::Result<MountRequest> {
    let (target, options) = spec.split_once(':').unwrap_or((spec, ""));
    if !target.starts_with('/') {
        bail!(
            "invalid mount config for type \"tmpfs\": invalid mount path: '{target}' mount path must be absolute"
        );
    }
    let (mut size, mut mode) = (None, None);
    for option in options.split(',').filter(|o| !o.is_empty()) {
        match option.split_once('=') {
            Some(("mode", value)) => {
                mode = Some(
                    u32::from_str_radix(value, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .with_context(|| format!("invalid --tmpfs mode in {spec:?}"))?,
                );
            }
            Some(("size", value)) => {
                size = Some(
                    crate::units::parse_size(value)
                        .with_context(|| format!("invalid --tmpfs size in {spec:?}"))?,
                );
            }
            None if option == "rw" => {}
            _ => bail!(
                "invalid --tmpfs option {option:?} in {spec:?}: kiln takes size=SIZE and mode=OCTAL"
            ),
        }
    }
    Ok(MountRequest::Tmpfs {
        target: target.to_owned(),
        size,
        mode,
    })
}

/// The volumes of one container: held in use (see
/// [`Store::attach_volume`]) until [`ContainerVolumes::release`].
#[derive(Debug, Default)]
pub(crate) struct ContainerVolumes {
    held: Vec<(Volume, Attachment)>,
    /// Volumes this container filled from its image: recorded once it ran.
    filling: Vec<Volume>,
}

impl ContainerVolumes {
    /// Makes the runtime mounts of `requests` for container `id`: named
    /// volumes made on first use, an anonymous volume for each of the
    /// image's VOLUMEs that no request covers, each marked in use by the
    /// container. A target given twice is Docker's `Duplicate mount point`.
    pub(crate) fn attach(
        store: &Store,
        id: &str,
        requests: &[MountRequest],
        image_volumes: &[String],
    ) -> anyhow::Result<(Vec<Mount>, Self)> {
        let mut seen = BTreeSet::new();
        for request in requests {
            let target = clean(request.target());
            if seen.contains(&target) {
                bail!("Duplicate mount point: {target}");
            }
            seen.insert(target);
        }
        let implied = image_volumes
            .iter()
            .filter(|target| !seen.contains(&clean(target)))
            .map(|target| MountRequest::Volume {
                name: None,
                target: target.clone(),
                read_only: false,
                no_copy: false,
            });
        let all: Vec<MountRequest> = requests.iter().cloned().chain(implied).collect();
        let mut volumes = Self::default();
        let mut mounts = Vec::new();
        for request in all {
            mounts.push(match request {
                MountRequest::Bind {
                    source,
                    target,
                    read_only,
                } => Mount::Bind {
                    source,
                    target,
                    read_only,
                },
                MountRequest::Tmpfs { target, size, mode } => Mount::Tmpfs { target, size, mode },
                MountRequest::Volume {
                    name,
                    target,
                    read_only,
                    no_copy,
                } => {
                    let (volume, _) = store.create_volume(name.as_deref(), name.is_none())?;
                    let attachment = store.attach_volume(&volume, id)?;
                    let fill = !no_copy && !volume.populated;
                    if fill {
                        volumes.filling.push(volume.clone());
                    }
                    let source = volume.mountpoint.clone();
                    volumes.held.push((volume, attachment));
                    Mount::Volume {
                        source,
                        target,
                        read_only,
                        fill,
                    }
                }
            });
        }
        Ok((mounts, volumes))
    }

    /// Records that the volumes this container was to fill are filled
    /// (the container started, so the copy happened), so no later one
    /// fills them again.
    pub(crate) fn mark_filled(&mut self, store: &Store) -> anyhow::Result<()> {
        for volume in self.filling.drain(..) {
            store.mark_volume_populated(&volume)?;
        }
        Ok(())
    }

    /// Leaves the volumes marked in use by the kept container (the marks
    /// stay while its directory exists; `Store::release_container_volumes`
    /// lets them go when it is removed).
    pub(crate) fn keep_for_container(self) {
        for (_, attachment) in self.held {
            attachment.keep();
        }
    }

    /// Lets the volumes go; with `remove_anonymous` (a container removed,
    /// as `--rm` does), its anonymous volumes are removed too.
    pub(crate) fn release(self, store: &Store, remove_anonymous: bool) -> anyhow::Result<()> {
        let mut doomed = Vec::new();
        for (volume, attachment) in self.held {
            drop(attachment);
            if remove_anonymous && volume.anonymous {
                doomed.push(volume.name);
            }
        }
        for name in doomed {
            store
                .remove_volume(&name)
                .with_context(|| format!("cannot remove anonymous volume {name}"))?;
        }
        Ok(())
    }
}

/// A container path without `.`, doubled or trailing slashes, for
/// comparing mount targets.
fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(result: anyhow::Result<MountRequest>) -> String {
        format!("{:#}", result.unwrap_err())
    }

    #[test]
    fn mount_specs_take_dockers_keys_and_aliases() {
        assert_eq!(
            parse_mount("type=volume,src=data,dst=/data,ro").unwrap(),
            MountRequest::Volume {
                name: Some("data".to_owned()),
                target: "/data".to_owned(),
                read_only: true,
                no_copy: false,
            }
        );
        assert_eq!(
            parse_mount("destination=/x,volume-nocopy=true,readonly=false").unwrap(),
            MountRequest::Volume {
                name: None,
                target: "/x".to_owned(),
                read_only: false,
                no_copy: true,
            }
        );
        assert_eq!(
            parse_mount("type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=700").unwrap(),
            MountRequest::Tmpfs {
                target: "/t".to_owned(),
                size: Some(1024 * 1024),
                mode: Some(0o700),
            }
        );
        assert_eq!(
            parse_volume("data:/d:ro,nocopy").unwrap(),
            MountRequest::Volume {
                name: Some("data".to_owned()),
                target: "/d".to_owned(),
                read_only: true,
                no_copy: true,
            }
        );
        assert_eq!(
            parse_tmpfs("/run:size=64k,mode=1770").unwrap(),
            MountRequest::Tmpfs {
                target: "/run".to_owned(),
                size: Some(65536),
                mode: Some(0o1770),
            }
        );
    }

    #[test]
    fn bad_mount_specs_get_dockers_messages() {
        let cases = [
            (
                "type=volume,source=x",
                "invalid argument \"type=volume,source=x\" for \"--mount\" flag: target is required",
            ),
            (
                "target=/x,bogus",
                "invalid argument \"target=/x,bogus\" for \"--mount\" flag: invalid field 'bogus' must be a key=value pair",
            ),
            (
                "target=/x,color=red",
                "invalid argument \"target=/x,color=red\" for \"--mount\" flag: unexpected key 'color' in 'color=red'",
            ),
            (
                "target=/x,ro=maybe",
                "invalid argument \"target=/x,ro=maybe\" for \"--mount\" flag: invalid value for ro: maybe",
            ),
            (
                "type=bind,target=/x,volume-nocopy",
                "invalid argument \"type=bind,target=/x,volume-nocopy\" for \"--mount\" flag: cannot mix 'volume-*' options with mount type 'bind'",
            ),
            (
                "type=volume,target=/x,tmpfs-size=1m",
                "invalid argument \"type=volume,target=/x,tmpfs-size=1m\" for \"--mount\" flag: cannot mix 'tmpfs-*' options with mount type 'volume'",
            ),
            (
                "type=bind,source=/nonexistent-kiln,target=/x",
                "invalid argument \"type=bind,source=/nonexistent-kiln,target=/x\" for \"--mount\" flag: invalid mount config for type \"bind\": bind source path does not exist: /nonexistent-kiln",
            ),
            (
                "type=bind,target=/x",
                "invalid argument \"type=bind,target=/x\" for \"--mount\" flag: invalid mount config for type \"bind\": field Source must not be empty",
            ),
            (
                "type=tmpfs,source=a,target=/x",
                "invalid argument \"type=tmpfs,source=a,target=/x\" for \"--mount\" flag: invalid mount config for type \"tmpfs\": field Source must not be specified",
            ),
            (
                "type=volume,target=rel",
                "invalid argument \"type=volume,target=rel\" for \"--mount\" flag: invalid mount config for type \"volume\": invalid mount path: 'rel' mount path must be absolute",
            ),
            (
                "type=nfs,target=/x",
                "invalid argument \"type=nfs,target=/x\" for \"--mount\" flag: invalid mount config for type \"nfs\": mount type unknown",
            ),
        ];
        for (spec, message) in cases {
            assert_eq!(error(parse_mount(spec)), message, "{spec}");
        }
        assert_eq!(
            error(parse_volume("a/b:/x")),
            "create a/b: \"a/b\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        );
        assert_eq!(
            error(parse_volume("data:/x:rx")),
            "invalid volume specification: 'data:/x:rx': invalid mode: rx"
        );
        assert_eq!(
            error(parse_tmpfs("rel")),
            "invalid mount config for type \"tmpfs\": invalid mount path: 'rel' mount path must be absolute"
        );
    }
}
