//! `kiln build`: builds an image from a Dockerfile and a context, as
//! `docker build` does, and stores it.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use kiln_builder::{BuildContext, BuildOptions, NamedContextInput};
use kiln_store::archive::SaveFormat;
use kiln_store::archive::save::SaveRequest;
use kiln_store::layer::Compression;

use super::{open_store, parse_reference};
use crate::progress::{self, ProgressMode};
use crate::trace::{Tee, TraceWriter};

/// Build an image from a Dockerfile
#[derive(Debug, Args)]
#[expect(clippy::struct_excessive_bools, reason = "Docker's flags")]
#[command(
    // As with Docker's flags, a repeated single-value flag takes the last
    // value (`--progress=plain ... --progress=json`).
    args_override_self = true,
    long_about = "Build an image from a Dockerfile and a context directory (or a tar archive on \
                  stdin with `-`). Base images come from the store: add them with `kiln load` or \
                  `kiln import`, or they are pulled from their registry. Steps are cached in the store across builds."
)]
pub struct BuildArgs {
    /// Name and optionally a tag (`name:tag`); may be repeated
    #[arg(short = 't', long = "tag", value_name = "REF")]
    tags: Vec<String>,
    /// Name of the Dockerfile (default: CONTEXT/Dockerfile; `-` reads stdin)
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    file: Option<String>,
    /// Set a build-time variable (`NAME=VALUE`, or `NAME` to take it from
    /// the environment)
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    arg_values: Vec<String>,
    /// The stage to build
    #[arg(long, value_name = "STAGE")]
    target: Option<String>,
    /// Do not use the cache
    #[arg(long)]
    no_cache: bool,
    /// Say why each step that ran missed the cache (compared with the
    /// most recent cache record of the same step)
    #[arg(long)]
    explain: bool,
    /// Do not use the cache for these stages (comma-separated, may repeat)
    #[arg(long, value_name = "STAGE,...", value_delimiter = ',')]
    no_cache_filter: Vec<String>,
    /// Set a label on the image (`KEY=VALUE`)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// A secret for `RUN --mount=type=secret` (`id=ID,src=FILE` or
    /// `id=ID,env=VAR`; with neither, the variable named ID); may repeat
    #[arg(long = "secret", value_name = "id=ID[,src=FILE|,env=VAR]")]
    secrets: Vec<String>,
    /// An SSH agent for `RUN --mount=type=ssh`: `default` or `ID` (the
    /// agent of `$SSH_AUTH_SOCK`), `ID=SOCKET`, or `ID=KEYFILE[,KEYFILE...]`
    /// (kiln serves the keys with OpenSSH's ssh-agent); may repeat
    #[arg(long = "ssh", value_name = "default|ID[=SOCKET|KEYFILE[,KEYFILE...]]")]
    ssh: Vec<String>,
    /// Network for RUN steps: `default` (an isolated network namespace
    /// with outbound NAT), `host`, `none` (only loopback), or a network of
    /// `kiln network create` (root: RUN steps reach its containers by
    /// name)
    #[arg(long, default_value = "default", value_name = "MODE")]
    network: String,
    /// Add a custom host-to-IP mapping to RUN steps' /etc/hosts
    /// (`HOST:IP`; default network or a user network)
    #[arg(long = "add-host", value_name = "HOST:IP")]
    add_hosts: Vec<String>,
    /// Let the Dockerfile use a privilege: `network.host` (`RUN
    /// --network=host`) or `security.insecure` (`RUN --security=insecure`);
    /// may repeat or be comma-separated
    #[arg(long = "allow", value_name = "ENTITLEMENT", value_delimiter = ',')]
    allow: Vec<String>,
    /// Progress output: auto, tty, plain, quiet or json
    #[arg(long, default_value = "auto", value_name = "TYPE")]
    progress: String,
    /// Print only the image ID on success
    #[arg(short, long)]
    quiet: bool,
    /// Write the image ID to this file
    #[arg(long, value_name = "FILE")]
    iidfile: Option<PathBuf>,
    /// Where the result goes, as buildx takes it:
    /// `type=image[,name=REF][,push=true]` (the store; the default), `type=registry,name=REF`,
    /// `type=docker|oci,dest=FILE|-` (`oci,tar=false,dest=DIR`: an OCI
    /// layout directory), `type=local,dest=DIR` or `type=tar,dest=FILE|-`
    /// (the image's file system); `DIR` alone is type=local, `-` type=tar
    #[arg(short = 'o', long, value_name = "SPEC")]
    output: Vec<String>,
    /// Write the build's result (digests, names) to FILE as JSON, as
    /// buildx does
    #[arg(long, value_name = "FILE")]
    metadata_file: Option<PathBuf>,
    /// Compression of new layers in the store: none (default), gzip or zstd
    #[arg(long, default_value = "none", value_name = "ALGORITHM")]
    compression: String,
    /// Check the registry for a newer version of every base image
    #[arg(long)]
    pull: bool,
    /// Push the image to its registry under every -t tag
    #[arg(long)]
    push: bool,
    /// Write a timeline of the build's stages, steps and their phases to
    /// FILE as Chrome trace-event JSON (for Perfetto or Chrome's tracing page)
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Export the build cache: `type=local,dest=DIR` or
    /// `type=registry,ref=REF`, with `mode=min|max`,
    /// `compression=uncompressed|gzip|zstd`, `ignore-error=true`; may repeat
    #[arg(long = "cache-to", value_name = "SPEC")]
    cache_to: Vec<String>,
    /// Import a build cache: `type=local,src=DIR`, `type=registry,ref=REF`
    /// or `REF`; may repeat
    #[arg(long = "cache-from", value_name = "SPEC")]
    cache_from: Vec<String>,
    /// The platform(s) to build for (OS/ARCH[/VARIANT], comma-separated):
    /// `TARGETPLATFORM` and the platform picked from multi-platform base
    /// images; several give one image per platform under one OCI index
    #[arg(long, value_name = "OS/ARCH[/VARIANT],...")]
    platform: Option<String>,
    /// An additional named context for `FROM NAME`, `COPY --from=NAME` and
    /// `RUN --mount=from=NAME`: a directory, a git address, `docker-image://REF` or
    /// `oci-layout://DIR[:TAG|@DIGEST]`; may repeat
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    build_contexts: Vec<String>,
    /// The build context: a directory, or `-` for a tar archive (or a
    /// Dockerfile) on stdin
    #[arg(value_name = "CONTEXT")]
    context: String,
}

/// Where an archive output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Dest {
    /// `dest=-`.
    Stdout,
    File(PathBuf),
}

/// `--output`, parsed (buildx's exporters).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Output {
    /// `type=image` (the default) and `type=registry` (which pushes by
    /// default): the image in the store, named `names` besides `-t`.
    Image {
        names: Vec<kiln_store::ImageReference>,
        push: bool,
        /// `store=false`: the image is pushed and not kept in the store.
        store: bool,
    },
    /// `type=docker|oci`: the image as an archive, or for `oci,tar=false`
    /// an OCI image layout directory, recording `names` besides `-t`.
    Archive {
        format: SaveFormat,
        dest: Dest,
        names: Vec<kiln_store::ImageReference>,
        tar: bool,
    },
    /// `type=local`: the image's file system into a directory.
    Local { dest: PathBuf },
    /// `type=tar`: the image's file system as one tar.
    Tar { dest: Dest },
}

impl Output {
    fn to_stdout(&self) -> bool {
        matches!(
            self,
            Output::Archive {
                dest: Dest::Stdout,
                ..
            } | Output::Tar { dest: Dest::Stdout }
        )
    }
}

/// Splits a CSV record as buildx reads `--output` (Go's encoding/csv): a
/// field in double quotes may hold commas (`"name=a,b"`), `""` in it is
/// one quote.
fn split_csv(spec: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = spec.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("a quoted field is not closed".to_owned()),
                }
            }
            fields.push(field);
            match chars.next() {
                None => return Ok(fields),
                Some(',') => continue,
                Some(_) => {
                    return Err("a closing quote is followed by more than a comma".to_owned());
                }
            }
        }
        loop {
            match chars.next() {
                Some(',') => break,
                Some(c) => field.push(c),
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
            }
        }
        fields.push(field);
    }
}

/// Parses `--output` as buildx does: `type=TYPE,KEY=VALUE,...` (CSV), or
/// a bare path (`type=local,dest=PATH`), or `-` (`type=tar,dest=-`).
/// Every key is checked against the type, so a mistake fails before the
/// build.
fn parse_output(spec: &str) -> anyhow::Result<Output> {
    const TYPES: &str = "image, registry, docker, oci, local or tar";
    let invalid = |why: String| anyhow::anyhow!("invalid --output {spec:?}: {why}");
    if spec == "-" {
        return Ok(Output::Tar { dest: Dest::Stdout });
    }
    if !spec.contains('=') {
        if spec.trim().is_empty() {
            return Err(invalid(format!(
                "empty (expected type=TYPE[,KEY=VALUE...] with TYPE {TYPES}, a directory or -)"
            )));
        }
        return Ok(Output::Local {
            dest: PathBuf::from(spec),
        });
    }
    let fields = split_csv(spec).map_err(invalid)?;
    let (mut kind, mut dest, mut push, mut tar, mut store) = (None, None, None, None, None);
    let mut names = Vec::new();
    let mut given = Vec::new();
    let boolean = |key: &str, value: &str| match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(format!("{key}={value:?} is not true or false"))),
    };
    for field in &fields {
        let Some((key, value)) = field.split_once('=') else {
            return Err(invalid(format!("{field:?} is not KEY=VALUE")));
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "type" => kind = Some(value),
            "dest" => dest = Some(value),
            "name" => {
                for name in value.split(',').map(str::trim) {
                    let name = parse_reference(name).map_err(|e| invalid(format!("{e:#}")))?;
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
            }
            "push" => push = Some(boolean(key, value)?),
            "tar" => tar = Some(boolean(key, value)?),
            "store" => store = Some(boolean(key, value)?),
            other => {
                return Err(invalid(format!(
                    "unknown key {other:?} (kiln knows type, name, push, store, dest and tar)"
                )));
            }
        }
        given.push(key);
    }
    let kind = kind.ok_or_else(|| invalid(format!("missing type= ({TYPES})")))?;
    let allowed: &[&str] = match kind {
        "image" | "registry" => &["type", "name", "push", "store"],
        "docker" => &["type", "name", "dest"],
        "oci" => &["type", "name", "dest", "tar"],
        "local" | "tar" => &["type", "dest"],
        other => return Err(invalid(format!("unsupported type {other:?} ({TYPES})"))),
    };
    if let Some(key) = given.iter().find(|k| !allowed.contains(k)) {
        return Err(invalid(format!("type={kind} takes no {key}=")));
    }
    let dest = || match dest {
        None | Some("") => Err(invalid(format!("type={kind} needs dest="))),
        Some("-") => Ok(Dest::Stdout),
        Some(path) => Ok(Dest::File(PathBuf::from(path))),
    };
    Ok(match kind {
        "image" | "registry" => {
            let push = push.unwrap_or(kind == "registry");
            let store = store.unwrap_or(true);
            if !store && !push {
                return Err(invalid(
                    "store=false needs push=true (or type=registry): the image would go nowhere"
                        .to_owned(),
                ));
            }
            Output::Image { names, push, store }
        }
        "docker" | "oci" => {
            let tar = tar.unwrap_or(true);
            let dest = dest()?;
            if !tar && dest == Dest::Stdout {
                return Err(invalid(
                    "tar=false writes a directory, which cannot go to stdout".to_owned(),
                ));
            }
            Output::Archive {
                format: if kind == "docker" {
                    SaveFormat::Docker
                } else {
                    SaveFormat::Oci
                },
                dest,
                names,
                tar,
            }
        }
        "local" => match dest()? {
            Dest::Stdout => {
                return Err(invalid(
                    "type=local writes a directory, not stdout (type=tar,dest=- writes a tar there)"
                        .to_owned(),
                ));
            }
            Dest::File(dest) => Output::Local { dest },
        },
        _ => Output::Tar { dest: dest()? },
    })
}

/// Parses `--build-arg` values; `NAME` alone takes the value from the
/// environment and is dropped when the environment has none, as in Docker.
fn parse_build_args(args: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for arg in args {
        let (key, value) = match arg.split_once('=') {
            Some((k, v)) => (k, Some(v.to_owned())),
            None => (arg.as_str(), std::env::var(arg).ok()),
        };
        if key.is_empty() {
            bail!("invalid --build-arg {arg:?}: the name is empty (use --build-arg NAME=VALUE)");
        }
        if key.chars().any(char::is_whitespace) {
            bail!("invalid --build-arg {arg:?}: the name {key:?} contains whitespace");
        }
        if let Some(value) = value {
            out.insert(key.to_owned(), value);
        }
    }
    Ok(out)
}

/// `--secret` values as buildx reads them: `id=`, `src=`/`source=`,
/// `env=` and `type=file|env`; the secret is read now, so a missing file
/// or variable fails before anything is built.
fn parse_secrets(values: &[String]) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    for value in values {
        let (mut id, mut src, mut env, mut kind) = (None, None, None, None);
        for field in value.split(',') {
            let Some((key, val)) = field.split_once('=') else {
                bail!("invalid --secret {value:?}: {field:?} is not KEY=VALUE");
            };
            match key {
                "id" => id = Some(val),
                "src" | "source" => src = Some(val),
                "env" => env = Some(val),
                "type" if val == "file" || val == "env" => kind = Some(val),
                "type" => {
                    bail!("invalid --secret {value:?}: unsupported type {val:?} (file or env)")
                }
                _ => bail!("invalid --secret {value:?}: unexpected key {key:?}"),
            }
        }
        let Some(id) = id.filter(|i| !i.is_empty()) else {
            bail!("invalid --secret {value:?}: the id is missing (id=ID)");
        };
        if kind == Some("env") && env.is_none() {
            env = src.take();
        }
        let bytes = match (src, env) {
            (Some(_), Some(_)) => {
                bail!("invalid --secret {value:?}: give either src= or env=, not both")
            }
            (Some(path), None) => fs::read(path)
                .with_context(|| format!("invalid --secret {value:?}: cannot read {path}"))?,
            (None, var) => {
                let var = var.unwrap_or(id);
                std::env::var_os(var)
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "invalid --secret {value:?}: environment variable {var} is not set"
                        )
                    })?
                    .into_encoded_bytes()
            }
        };
        out.insert(id.to_owned(), bytes);
    }
    Ok(out)
}

/// `--ssh` values as buildx reads them: `ID[=PATH[,PATH...]]`, where no
/// path means `$SSH_AUTH_SOCK`, a path is one agent socket or any number of
/// private key files (not both), an empty id is `default` and a later
/// value replaces an earlier one of the same id. The agent socket each id
/// forwards to, and the agents kiln started for key files (killed when
/// dropped, at the end of the build).
fn parse_ssh(
    values: &[String],
) -> anyhow::Result<(BTreeMap<String, PathBuf>, Vec<kiln_builder::ssh::KeyAgent>)> {
    let mut specs: BTreeMap<String, (&str, Vec<PathBuf>)> = BTreeMap::new();
    for value in values.iter().filter(|v| !v.is_empty()) {
        let (id, paths) = match value.split_once('=') {
            Some((id, paths)) => (id, paths.split(',').map(PathBuf::from).collect()),
            None => (value.as_str(), Vec::new()),
        };
        let id = if id.is_empty() { "default" } else { id };
        specs.insert(id.to_owned(), (value, paths));
    }
    let mut sockets = BTreeMap::new();
    let mut agents = Vec::new();
    for (id, (value, mut paths)) in specs {
        let invalid = |message: String| anyhow::anyhow!("invalid --ssh {value:?}: {message}");
        if paths.iter().all(|p| p.as_os_str().is_empty()) && paths.len() <= 1 {
            match std::env::var_os("SSH_AUTH_SOCK").filter(|v| !v.is_empty()) {
                Some(socket) => paths = vec![PathBuf::from(socket)],
                None => {
                    return Err(invalid(
                        "invalid empty ssh agent socket: make sure SSH_AUTH_SOCK is set".to_owned(),
                    ));
                }
            }
        }
        let (mut socket, mut keys) = (None, Vec::new());
        for path in paths {
            if socket.is_some() {
                return Err(invalid("only single socket allowed".to_owned()));
            }
            let meta =
                fs::metadata(&path).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
            if std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) {
                socket = Some(path);
            } else {
                keys.push(path);
            }
        }
        let path = match socket {
            Some(_) if !keys.is_empty() => {
                return Err(invalid(
                    "invalid combination of keys and sockets".to_owned(),
                ));
            }
            Some(socket) => {
                std::os::unix::net::UnixStream::connect(&socket).map_err(|e| {
                    invalid(format!("failed to connect to {}: {e}", socket.display()))
                })?;
                socket
            }
            None => {
                let agent = kiln_builder::ssh::KeyAgent::start(&keys).map_err(invalid)?;
                let socket = agent.socket().to_owned();
                agents.push(agent);
                socket
            }
        };
        // The relay connects by this path from kiln's own threads.
        let path =
            std::path::absolute(&path).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
        sockets.insert(id, path);
    }
    Ok((sockets, agents))
}

/// `--allow` values, as BuildKit's entitlements.
fn parse_allow(values: &[String]) -> anyhow::Result<kiln_builder::Entitlements> {
    let mut allow = kiln_builder::Entitlements::default();
    for value in values {
        match value.trim() {
            "network.host" => allow.network_host = true,
            "security.insecure" => allow.security_insecure = true,
            other => bail!("invalid --allow {other:?}: expected network.host or security.insecure"),
        }
    }
    Ok(allow)
}

fn parse_labels(labels: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for label in labels {
        let (key, value) = label.split_once('=').unwrap_or((label.as_str(), ""));
        if key.is_empty() {
            bail!("invalid --label {label:?}: the key is empty");
        }
        out.insert(key.to_owned(), value.to_owned());
    }
    Ok(out)
}

/// The Dockerfile: its display name, text and the directory holding it
/// (for `<Dockerfile>.dockerignore`).
struct Dockerfile {
    name: String,
    text: String,
    path: Option<PathBuf>,
}

fn read_dockerfile(file: Option<&str>, context: Option<&Path>) -> anyhow::Result<Dockerfile> {
    if file == Some("-") {
        let mut text = String::new();
        io::stdin()
            .read_to_string(&mut text)
            .context("failed to read dockerfile from stdin")?;
        return Ok(Dockerfile {
            name: "Dockerfile".to_owned(),
            text,
            path: None,
        });
    }
    let path = match (file, context) {
        // As with docker build, a relative -f is relative to the current
        // directory.
        (Some(file), _) => std::path::absolute(file).unwrap_or_else(|_| PathBuf::from(file)),
        (None, Some(context)) => {
            let upper = context.join("Dockerfile");
            let lower = context.join("dockerfile");
            if !upper.exists() && lower.exists() {
                lower
            } else {
                upper
            }
        }
        (None, None) => bail!("failed to read dockerfile: no Dockerfile given (use -f)"),
    };
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
            "failed to read dockerfile: open {}: no such file or directory",
            path.display()
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("failed to read dockerfile {}", path.display()));
        }
    };
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("failed to read dockerfile {}: not UTF-8", path.display()))?;
    let name = path.file_name().map_or_else(
        || "Dockerfile".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok(Dockerfile {
        name,
        text,
        path: Some(path),
    })
}

/// `.dockerignore` rules: `<Dockerfile>.dockerignore` beside the
/// Dockerfile wins over the context's `.dockerignore`, as in BuildKit.
fn ignore_patterns(dockerfile: &Dockerfile, context: &Path) -> anyhow::Result<Vec<String>> {
    let mut candidates = Vec::new();
    if let Some(path) = &dockerfile.path {
        let mut name = path.as_os_str().to_owned();
        name.push(".dockerignore");
        candidates.push(PathBuf::from(name));
    }
    candidates.push(context.join(".dockerignore"));
    for candidate in candidates {
        match fs::read_to_string(&candidate) {
            Ok(text) => {
                return kiln_parser::dockerignore::parse_ignore_file(&text)
                    .with_context(|| format!("invalid {}", candidate.display()));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", candidate.display()));
            }
        }
    }
    Ok(Vec::new())
}

/// Parses `--build-context NAME=VALUE` values as buildx does: the name
/// normalised as an image reference (familiar, without `:latest`); the
/// value `docker-image://REF`, `oci-layout://DIR[:TAG|@DIGEST]` (tag
/// `latest` by default), or a local directory, checked now even if no
/// instruction uses it. A later value for the same name wins.
fn parse_build_contexts(values: &[String]) -> anyhow::Result<BTreeMap<String, ContextValue>> {
    let mut contexts = BTreeMap::new();
    for given in values {
        let invalid =
            |message: String| anyhow::anyhow!("invalid --build-context {given:?}: {message}");
        let Some((name, value)) = given.split_once('=') else {
            return Err(invalid("expected NAME=VALUE".to_owned()));
        };
        let name = kiln_parser::plan::context_name(name)
            .map_err(|e| invalid(format!("invalid context name {name:?}: {e}")))?;
        let input = if let Some(reference) = value.strip_prefix("docker-image://") {
            if reference == "scratch" {
                return Err(invalid(
                    "docker-image://scratch is not supported by kiln yet".to_owned(),
                ));
            }
            let reference = parse_reference(reference).map_err(|e| invalid(format!("{e:#}")))?;
            NamedContextInput::Image(reference.to_string())
        } else if let Some(layout) = value.strip_prefix("oci-layout://") {
            // buildx splits at the first `@`, then at the first `:`.
            let (path, digest) = match layout.split_once('@') {
                Some((path, digest)) => (path, Some(digest)),
                None => (layout, None),
            };
            let (path, tag) = path.split_once(':').unwrap_or((path, "latest"));
            let selector = match digest {
                Some(digest) => kiln_store::archive::LayoutSelector::Digest(
                    kiln_reference::Digest::parse(digest)
                        .map_err(|e| invalid(format!("invalid digest {digest:?}: {e}")))?,
                ),
                None => kiln_store::archive::LayoutSelector::Tag(tag.to_owned()),
            };
            let dir = PathBuf::from(path);
            if !dir.join("index.json").is_file() {
                return Err(invalid(format!(
                    "{path:?} is not an OCI image layout directory (no index.json)"
                )));
            }
            NamedContextInput::OciLayout {
                dir,
                selector,
                value: value.to_owned(),
            }
        } else if let Some(git) = kiln_parser::values::parse_git_ref(value)
            .filter(|_| value.contains("://") || value.starts_with("git@"))
        {
            let git = git.map_err(|e| invalid(e.to_string()))?;
            contexts.insert(name, ContextValue::Git(Box::new(git)));
            continue;
        } else if let Some((scheme, _)) = value.split_once("://").filter(|(scheme, _)| {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }) {
            return Err(invalid(format!(
                "{scheme}:// contexts other than git repositories are not supported by kiln (a directory, a git address, docker-image:// or oci-layout://)"
            )));
        } else if value.starts_with("target:") || value.starts_with("input:") {
            return Err(invalid(
                "target: and input: contexts (buildx bake's) are not supported by kiln".to_owned(),
            ));
        } else {
            let dir = PathBuf::from(value);
            match fs::metadata(&dir) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => return Err(invalid(format!("{value:?} is not a directory"))),
                Err(e) => return Err(invalid(format!("cannot use directory {value:?}: {e}"))),
            }
            let patterns = context_ignore_patterns(&dir)?;
            NamedContextInput::Local(
                BuildContext::open(&dir, &patterns).map_err(|e| invalid(e.to_string()))?,
            )
        };
        contexts.insert(name, ContextValue::Ready(input));
    }
    Ok(contexts)
}

/// A `--build-context` value as parsed: ready, or a git repository to
/// fetch once the store is open ([`fetch_git_contexts`]).
enum ContextValue {
    Ready(NamedContextInput),
    Git(Box<kiln_parser::values::GitRef>),
}

/// Fetches the git repositories among `contexts` (with the system's
/// `git`, as `ADD` of a git address does: the ref resolved with
/// `ls-remote`, a shallow fetch of that commit, no `.git`), each into a
/// directory under the store's `tmp/` that `keep` holds for the build,
/// and reads each as a local directory context.
fn fetch_git_contexts(
    contexts: BTreeMap<String, ContextValue>,
    store: &kiln_store::Store,
    keep: &mut Vec<tempfile::TempDir>,
) -> anyhow::Result<BTreeMap<String, NamedContextInput>> {
    let mut ready = BTreeMap::new();
    for (name, value) in contexts {
        let input = match value {
            ContextValue::Ready(input) => input,
            ContextValue::Git(git) => {
                let work = tempfile::Builder::new()
                    .prefix("git-context-")
                    .tempdir_in(store.tmp_dir())
                    .context("cannot create a directory for a git build context")?;
                let failed = || format!("build context {name}: {}", git.redacted());
                let resolved = kiln_builder::fileops::git::resolve(
                    &git,
                    git.checksum.as_deref(),
                    work.path(),
                    true,
                )
                .with_context(failed)?;
                let dir = kiln_builder::fileops::git::checkout(
                    &git,
                    &resolved,
                    git.keep_git_dir.unwrap_or(false),
                    work.path(),
                    true,
                )
                .with_context(failed)?;
                let patterns = context_ignore_patterns(&dir)?;
                let context = BuildContext::open(&dir, &patterns).with_context(failed)?;
                keep.push(work);
                NamedContextInput::Local(context)
            }
        };
        ready.insert(name, input);
    }
    Ok(ready)
}

/// A named local context's own `.dockerignore` (BuildKit reads it from
/// the context, never through a symlink leaving it).
fn context_ignore_patterns(dir: &Path) -> anyhow::Result<Vec<String>> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join(".dockerignore");
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path);
    let mut text = String::new();
    match file {
        Ok(mut file) => {
            file.read_to_string(&mut text)
                .with_context(|| format!("cannot read {}", path.display()))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(Vec::new());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    kiln_parser::dockerignore::parse_ignore_file(&text)
        .with_context(|| format!("invalid {}", path.display()))
}

/// Whether `head` starts a tar archive (the `ustar` magic at 257).
fn looks_like_tar(head: &[u8]) -> bool {
    head.get(257..262) == Some(b"ustar")
}

/// Reads stdin for `kiln build -`: a tar archive becomes the context
/// (extracted into `dir`); anything else is the Dockerfile, with an empty
/// context, as `docker build -` does.
fn context_from_stdin(dir: &Path) -> anyhow::Result<Option<String>> {
    let mut data = Vec::new();
    io::stdin()
        .read_to_end(&mut data)
        .context("cannot read the build context from stdin")?;
    if !looks_like_tar(&data) {
        let text = String::from_utf8(data).map_err(|_| {
            anyhow::anyhow!("stdin is neither a tar archive nor a UTF-8 Dockerfile")
        })?;
        return Ok(Some(text));
    }
    let mut archive = tar::Archive::new(io::Cursor::new(data));
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive
        .unpack(dir)
        .context("cannot extract the build context from stdin")?;
    Ok(None)
}

/// `SOURCE_DATE_EPOCH` from `--build-arg` or the environment.
fn source_date_epoch(build_args: &BTreeMap<String, String>) -> anyhow::Result<Option<i64>> {
    let value = build_args
        .get("SOURCE_DATE_EPOCH")
        .cloned()
        .or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok())
        .filter(|v| !v.is_empty());
    value
        .map(|v| {
            v.trim().parse::<i64>().map_err(|_| {
                anyhow::anyhow!("invalid SOURCE_DATE_EPOCH {v:?}: expected seconds since 1970")
            })
        })
        .transpose()
}

extern "C" fn on_signal(_: libc::c_int) {
    kiln_builder::cancel();
    // A RUN about to start (its container not yet known to the runtime's
    // own handler) is stopped as soon as it exists.
    kiln_runtime::stop_all();
}

/// Turns SIGINT/SIGTERM into a cancellation request, so the build stops
/// between steps and cleans up (a RUN in progress gets the signal through
/// the runtime, which stops its container within its stop timeout).
fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic; the zeroed
        // sigaction is completed before the call.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&raw mut action.sa_mask);
            libc::sigaction(sig, &raw const action, std::ptr::null_mut());
        }
    }
}

/// Runs `kiln build`.
pub fn run(root: Option<&Path>, args: &BuildArgs) -> anyhow::Result<ExitCode> {
    // Parse every flag before touching anything.
    let build_args = parse_build_args(&args.arg_values)?;
    let labels = parse_labels(&args.labels)?;
    let secrets = parse_secrets(&args.secrets)?;
    // The agents live (and are killed) with this function's frame.
    let (ssh, _ssh_agents) = parse_ssh(&args.ssh)?;
    if args.output.len() > 1 {
        bail!(
            "kiln build takes one --output, got {}: {}",
            args.output.len(),
            args.output.join(" ")
        );
    }
    let output_spec = args.output.first().map(String::as_str);
    let output = match output_spec {
        Some(spec) => parse_output(spec)?,
        None => Output::Image {
            names: Vec::new(),
            push: false,
            store: true,
        },
    };
    let mut tags = args
        .tags
        .iter()
        .map(|t| parse_reference(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // type=image|registry's names name the image in the store, as -t does.
    let (output_names, output_push) = match &output {
        Output::Image { names, push, .. } => (names.clone(), *push),
        _ => (Vec::new(), false),
    };
    for name in &output_names {
        if !tags.contains(name) {
            tags.push(name.clone());
        }
    }
    // push=true pushes the output's names, or the -t names when it has
    // none (buildx gives -t to the exporter without name=); --push pushes
    // every name.
    let push_tags = if args.push {
        if tags.is_empty() {
            bail!("--push needs a name: give one with -t NAME[:TAG]");
        }
        tags.clone()
    } else if output_push {
        let names = if output_names.is_empty() {
            tags.clone()
        } else {
            output_names
        };
        if names.is_empty() {
            bail!(
                "invalid --output {:?}: push=true needs a name: give name=REF or -t NAME[:TAG]",
                output_spec.unwrap_or_default()
            );
        }
        names
    } else {
        Vec::new()
    };
    if output.to_stdout() {
        let spec = output_spec.unwrap_or_default();
        if args.quiet {
            bail!(
                "--output {spec:?} writes a tar to stdout, where -q would print the image ID: use --progress=quiet (and --iidfile FILE for the ID)"
            );
        }
        if io::IsTerminal::is_terminal(&io::stdout()) {
            bail!(
                "--output {spec:?}: refusing to write a tar to a terminal; redirect stdout or give dest=FILE"
            );
        }
    }
    // Directories are made whole or not at all, so one there must be empty.
    match &output {
        Output::Local { dest }
        | Output::Archive {
            dest: Dest::File(dest),
            tar: false,
            ..
        } => check_empty_dir(dest).map_err(|e| {
            anyhow::anyhow!(
                "invalid --output {:?}: {e:#}",
                output_spec.unwrap_or_default()
            )
        })?,
        _ => {}
    }
    let platforms = parse_platforms(args.platform.as_deref())?;
    let multi_platform = platforms.len() > 1;
    if multi_platform {
        check_multi_platform(&output)?;
    }
    let platform = platforms.first().map(platform_spec);
    let network = match args.network.as_str() {
        "host" => kiln_runtime::Network::Host,
        "none" => kiln_runtime::Network::None,
        // The default, or a user network's namespace (see RunNetwork).
        _ => kiln_runtime::Network::Isolated,
    };
    if network != kiln_runtime::Network::Isolated && !args.add_hosts.is_empty() {
        bail!(
            "--add-host needs the default network or a user network for RUN steps (--network {} uses kiln's own /etc/hosts)",
            args.network
        );
    }
    super::network::endpoints::check_add_hosts(&args.add_hosts)?;
    // The default network's RUN steps have no bridge: nothing on the host
    // answers them at a gateway address (slirp4netns keeps the host's
    // loopback out of reach).
    let user_network = !matches!(
        args.network.as_str(),
        "default" | "bridge" | "host" | "none"
    );
    if !user_network
        && args
            .add_hosts
            .iter()
            .any(|e| e.ends_with(&format!(":{}", kiln_store::networks::HOST_GATEWAY)))
    {
        bail!(
            "--add-host NAME:host-gateway needs --network NAME (a bridge network) for RUN steps: the default network has no address the host answers at"
        );
    }
    let allow = parse_allow(&args.allow)?;
    let compression = match args.compression.as_str() {
        "none" | "uncompressed" => Compression::None,
        other => kiln_store::commit::parse_compression(other).ok_or_else(|| {
            anyhow::anyhow!("invalid --compression {other:?}: expected none, gzip or zstd")
        })?,
    };
    let contexts = parse_build_contexts(&args.build_contexts)?;
    let mode = ProgressMode::from_flag(&args.progress)?.resolve(args.quiet);
    let epoch = source_date_epoch(&build_args)?;
    if args.context == "-" && args.file.as_deref() == Some("-") {
        bail!("invalid argument: can't use stdin for both the build context and the Dockerfile");
    }
    let cache_to = args
        .cache_to
        .iter()
        .map(|spec| super::build_cache::parse_cache_to(spec))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cache_from = args
        .cache_from
        .iter()
        .map(|spec| super::build_cache::parse_cache_from(spec))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Opened now, so a path that cannot be written fails before the build.
    let trace = args.trace.as_deref().map(TraceWriter::create).transpose()?;
    // Mounts made by the build stay in a namespace of their own; this
    // must happen while the process still has one thread.
    kiln_builder::mounts::enter_private_mount_namespace()
        .context("kiln build needs root (it mounts overlay filesystems)")?;
    let store = open_store(root)?;
    let mut git_contexts = Vec::new();
    let contexts = fetch_git_contexts(contexts, &store, &mut git_contexts)?;
    let stdin_dir;
    let (context_dir, stdin_dockerfile) = if args.context == "-" {
        stdin_dir = tempfile::Builder::new()
            .prefix("context-")
            .tempdir_in(store.tmp_dir())
            .context("cannot create a directory for the build context")?;
        let text = context_from_stdin(stdin_dir.path())?;
        (stdin_dir.path().to_owned(), text)
    } else {
        (PathBuf::from(&args.context), None)
    };
    // A missing context is reported before a missing Dockerfile.
    let meta = fs::metadata(&context_dir);
    if meta.is_err() {
        BuildContext::open(&context_dir, &[])?;
    }
    let dockerfile = match stdin_dockerfile {
        Some(text) => Dockerfile {
            name: "Dockerfile".to_owned(),
            text,
            path: None,
        },
        None => read_dockerfile(args.file.as_deref(), Some(&context_dir))?,
    };
    let patterns = ignore_patterns(&dockerfile, &context_dir)?;
    let context = BuildContext::open(&context_dir, &patterns)?;
    let stat_cache = if args.context == "-" {
        None
    } else {
        let absolute = fs::canonicalize(&context_dir).unwrap_or(context_dir.clone());
        let digest = kiln_store::digest::digest_bytes(absolute.as_os_str().as_encoded_bytes());
        Some(
            store
                .stat_cache_dir()
                .join(format!("{}.bin", digest.encoded())),
        )
    };
    let registry = std::sync::Arc::new(kiln_store::registry::Client::new(
        kiln_store::registry::RegistryConfig::from_env(),
    ));
    let cache_import = super::build_cache::import(&cache_from, &registry, &context_dir);
    let unstored = matches!(output, Output::Image { store: false, .. });
    let mut options = BuildOptions {
        dockerfile_name: dockerfile.name.clone(),
        dockerfile: dockerfile.text,
        context,
        build_args,
        target: args.target.clone(),
        no_cache: args.no_cache,
        no_cache_filter: args.no_cache_filter.clone(),
        labels,
        network,
        allow,
        compression,
        source_date_epoch: epoch,
        tags: tags.clone(),
        target_platform: platforms.first().cloned(),
        platform_member: false,
        stat_cache,
        secrets,
        ssh,
        fetcher: Some(std::sync::Arc::new(RegistryFetcher {
            platform,
            mode: transfer_mode(mode),
        })),
        pull_always: args.pull,
        explain: args.explain,
        executor: None,
        cache_import: cache_import.clone(),
        inline_cache: cache_to.iter().any(|to| to.location.is_none()),
        contexts,
        unstored_image: unstored,
        layer_recorded: None,
    };
    // Layers of a mode=max --cache-to go out while the build goes on, and
    // (one platform) the export beside the image's commit.
    let early = std::sync::Arc::new(super::build_cache::EarlySend::new(
        context_dir.clone(),
        !multi_platform,
    ));
    if early.told(&cache_to) {
        options.layer_recorded = Some(early.clone());
    }
    let exporting = (&store, &*registry, cache_import.as_deref());
    if multi_platform {
        install_signal_handlers();
        let reporter = progress::reporter(mode);
        let (built, sent, _) = early.run(exporting, &cache_to, || {
            build_platforms(&store, &options, &platforms, reporter.as_ref(), mode)
        });
        kiln_runtime::wait_for_helpers();
        drop(reporter);
        let built = built?;
        // One cache for every platform: their steps have keys of their own.
        let outcomes: Vec<&kiln_builder::BuildOutcome> =
            built.0.iter().map(|b| &b.outcome).collect();
        let results = export_caches(exporting, &outcomes, (&cache_to, &context_dir), &sent);
        report_exports(&cache_to, results)?;
        return finish_multi_platform(
            &store,
            args,
            built,
            (&output, &tags, &push_tags),
            compression,
            mode,
        );
    }
    // What the store lists before the build: an image it already had is
    // not removed after a type=local|tar build.
    let listed_before: std::collections::BTreeSet<String> = store
        .index()?
        .manifests
        .into_iter()
        .map(|d| d.digest)
        .collect();
    let run_network = RunNetwork::set_up(&store, args)?;
    options.executor = run_network.as_ref().map(RunNetwork::executor).transpose()?;
    install_signal_handlers();
    let reporter = progress::reporter(mode);
    let (result, sent, exported) = early.run(exporting, &cache_to, || match &trace {
        Some(trace) => kiln_builder::build(&store, &options, &Tee(reporter.as_ref(), trace)),
        None => kiln_builder::build(&store, &options, reporter.as_ref()),
    });
    // RUN steps' NAT helpers are reaped in the background; none may
    // outlive kiln.
    kiln_runtime::wait_for_helpers();
    drop(options);
    if let Some(run_network) = run_network {
        run_network.finish();
    }
    drop(reporter);
    // A failed build's trace shows what ran until then; the build's own
    // error goes first.
    if let Some(trace) = trace {
        match (trace.finish(), &result) {
            (Err(e), Ok(_)) => return Err(e),
            (Err(e), Err(_)) => eprintln!("WARNING: {e:#}"),
            (Ok(()), _) => {}
        }
    }
    let outcome = result?;
    let results = exported
        .unwrap_or_else(|| export_caches(exporting, &[&outcome], (&cache_to, &context_dir), &sent));
    report_exports(&cache_to, results)?;
    if let Some(path) = &args.iidfile {
        fs::write(path, outcome.image_id.to_string())
            .with_context(|| format!("cannot write --iidfile {}", path.display()))?;
    }
    let manifest_digest = kiln_store::digest::parse_sha256(&outcome.manifest.digest)?;
    let image = store
        .image(&manifest_digest)
        .context("cannot read back the built image")?;
    // The manifest as exported, and the names it went out under, for
    // --metadata-file.
    let mut exported = None;
    let mut exported_names = Vec::new();
    match &output {
        Output::Image { .. } => {
            exported = Some(outcome.manifest.clone());
            exported_names.clone_from(&tags);
        }
        Output::Archive {
            format,
            dest,
            names,
            tar,
        } => {
            let mut archive_tags = tags.clone();
            for name in names {
                if !archive_tags.contains(name) {
                    archive_tags.push(name.clone());
                }
            }
            let requests = [SaveRequest {
                image: image.clone(),
                tags: archive_tags.clone(),
            }];
            let manifests = save_output(&store, &requests, *format, dest, *tar)?;
            exported = manifests.into_iter().next();
            exported_names = archive_tags;
        }
        Output::Local { dest } => write_directory(dest, |dir| {
            kiln_store::archive::unpack_rootfs(&store, &image, dir)
                .with_context(|| format!("cannot write the image's files to {}", dest.display()))
        })?,
        Output::Tar { dest } => {
            let staging = tempfile::Builder::new()
                .prefix("rootfs-")
                .tempdir_in(store.tmp_dir())
                .context("cannot create a directory for the image's files")?;
            kiln_store::archive::unpack_rootfs(&store, &image, staging.path())
                .context("cannot unpack the image's files")?;
            write_rootfs_tar(staging.path(), dest)?;
        }
    }
    if !push_tags.is_empty() {
        let client =
            kiln_store::registry::Client::new(kiln_store::registry::RegistryConfig::from_env());
        let push_compression = if compression == Compression::None {
            Compression::Gzip
        } else {
            compression
        };
        for tag in &push_tags {
            let pushed = if unstored {
                super::build_cache::push_unstored(
                    &store,
                    &client,
                    tag,
                    &image,
                    cache_import.as_deref(),
                    push_compression,
                    transfer_mode(mode),
                )?
            } else {
                super::push::push_image(
                    &store,
                    &client,
                    tag,
                    push_compression,
                    transfer_mode(mode),
                )?
            };
            if !args.quiet {
                eprintln!(
                    "{}: digest: {} size: {}",
                    tag.tag().unwrap_or("latest"),
                    pushed.digest,
                    pushed.size
                );
            }
            // What the registry holds is the image as exported (pushing
            // recompresses, so its manifest is not the store's).
            if matches!(output, Output::Image { .. }) {
                let media_type = if image.manifest.media_type.is_empty() {
                    kiln_store::spec::OCI_MANIFEST
                } else {
                    &image.manifest.media_type
                };
                exported = Some(kiln_store::spec::Descriptor::new(
                    media_type,
                    &pushed.digest.to_string(),
                    pushed.size,
                ));
            }
        }
    }
    // type=local|tar leave no image behind unless -t named it (buildx
    // keeps none); the layers stay in the store as build cache.
    if matches!(output, Output::Local { .. } | Output::Tar { .. })
        && tags.is_empty()
        && !listed_before.contains(&outcome.manifest.digest)
        && store
            .image(&manifest_digest)
            .is_ok_and(|image| image.tags.is_empty())
    {
        store
            .delete_image(&manifest_digest)
            .context("cannot remove the untagged image of a type=local|tar build")?;
    }
    if let Some(path) = &args.metadata_file {
        let metadata = build_metadata(&outcome.image_id, exported.as_ref(), &exported_names);
        write_metadata(path, &metadata)?;
    }
    finish_quiet(args.quiet, &outcome.image_id)
}

/// Writes `--metadata-file`, as buildx writes it.
fn write_metadata(path: &Path, metadata: &serde_json::Value) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(metadata)?;
    text.push('\n');
    fs::write(path, text)
        .with_context(|| format!("cannot write --metadata-file {}", path.display()))
}

/// With `-q`, the image's (or index's) ID on stdout, as `docker build -q`.
fn finish_quiet(quiet: bool, id: &impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    if quiet {
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "{id}").context("cannot write to stdout")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `--platform`'s list, normalised as BuildKit normalises it
/// (`linux/arm64/v8` is `linux/arm64`, `linux/arm` is `linux/arm/v7`),
/// without repeats.
fn parse_platforms(value: Option<&str>) -> anyhow::Result<Vec<kiln_parser::values::Platform>> {
    let mut platforms = Vec::new();
    let Some(value) = value else {
        return Ok(platforms);
    };
    for text in value.split(',').map(str::trim) {
        if text.is_empty() {
            bail!("invalid --platform {value:?}: an empty platform in the list");
        }
        let platform = kiln_parser::values::Platform::parse(text)
            .map_err(|e| anyhow::anyhow!("invalid --platform {text:?}: {e}"))?
            .normalize();
        if !platforms.contains(&platform) {
            platforms.push(platform);
        }
    }
    Ok(platforms)
}

/// The store's (and the registry client's) form of a platform.
fn platform_spec(platform: &kiln_parser::values::Platform) -> kiln_store::registry::PlatformSpec {
    kiln_store::registry::PlatformSpec {
        os: platform.os.clone(),
        architecture: platform.architecture.clone(),
        variant: (!platform.variant.is_empty()).then(|| platform.variant.clone()),
    }
}

/// Writes each `--cache-to` of a build (`outcomes`: one per platform),
/// after the layers `sent` while it went on; each one's result.
fn export_caches(
    exporting: (
        &kiln_store::Store,
        &kiln_store::registry::Client,
        Option<&kiln_builder::cache::share::CacheImport>,
    ),
    outcomes: &[&kiln_builder::BuildOutcome],
    (cache_to, context): (&[super::build_cache::CacheTo], &Path),
    sent: &[super::build_cache::Sent],
) -> Vec<anyhow::Result<()>> {
    cache_to
        .iter()
        .zip(sent)
        .map(|(to, sent)| {
            let keys = super::build_cache::keys(outcomes, to);
            super::build_cache::export(exporting, &keys, to, Some(context), Some(sent))
        })
        .collect()
}

/// Fails the build with the first export that failed, unless it asked to
/// only be warned about (`ignore-error=true`).
fn report_exports(
    cache_to: &[super::build_cache::CacheTo],
    results: Vec<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    for (to, result) in cache_to.iter().zip(results) {
        match result {
            Ok(()) => {}
            Err(e) if to.ignore_error => eprintln!("WARNING: {e:#}"),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What a multi-platform build can output: an index (stored, pushed,
/// or as an OCI layout), or each platform's files (`type=local`,
/// `type=tar`). A docker archive holds one image per name.
fn check_multi_platform(output: &Output) -> anyhow::Result<()> {
    match output {
        Output::Image { store: true, .. }
        | Output::Local { .. }
        | Output::Tar { .. }
        | Output::Archive {
            format: SaveFormat::Oci,
            ..
        } => {}
        // buildx's words: a docker archive holds one image per name.
        Output::Archive {
            format: SaveFormat::Docker,
            ..
        } => bail!(
            "docker exporter does not currently support exporting manifest lists: use --output type=oci for several platforms"
        ),
        _ => bail!(
            "a build for several platforms is stored as an image index: --output type=image (the default), type=registry, type=oci, type=local or type=tar; build one platform at a time for other outputs"
        ),
    }
    Ok(())
}

/// Shows each platform's steps as BuildKit does (`[linux/arm64 2/3]`),
/// with step ids kept apart, and holds back each build's own summary:
/// the caller reports the index as the build's result.
struct PlatformReporter<'a> {
    inner: &'a dyn kiln_builder::Reporter,
    platform: String,
    position: usize,
    count: usize,
    totals: std::sync::Mutex<(usize, usize)>,
}

impl PlatformReporter<'_> {
    fn id(&self, id: usize) -> usize {
        id * self.count + self.position
    }
}

impl kiln_builder::Reporter for PlatformReporter<'_> {
    fn report(&self, event: kiln_builder::Event) {
        use kiln_builder::Event;
        let event = match event {
            Event::StepStarted {
                id,
                stage,
                index,
                total,
                name,
            } => Event::StepStarted {
                id: self.id(id),
                stage: if stage.is_empty() {
                    self.platform.clone()
                } else {
                    format!("{} {stage}", self.platform)
                },
                index,
                total,
                name,
            },
            Event::StepCached { id } => Event::StepCached { id: self.id(id) },
            Event::StepExplained { id, name, reason } => Event::StepExplained {
                id: self.id(id),
                name,
                reason,
            },
            Event::StepOutput { id, line } => Event::StepOutput {
                id: self.id(id),
                line,
            },
            Event::StepDone { id, duration } => Event::StepDone {
                id: self.id(id),
                duration,
            },
            Event::StepFailed { id, error } => Event::StepFailed {
                id: self.id(id),
                error,
            },
            Event::StepTimed {
                id,
                stage,
                start,
                duration,
            } => Event::StepTimed {
                id: self.id(id),
                stage,
                start,
                duration,
            },
            Event::Phase {
                step,
                stage,
                name,
                start,
                duration,
            } => Event::Phase {
                step: step.map(|s| self.id(s)),
                stage,
                name,
                start,
                duration,
            },
            Event::Warning { message } => Event::Warning {
                message: format!("[{}] {message}", self.platform),
            },
            Event::Finished {
                steps_run,
                steps_cached,
                ..
            } => {
                if let Ok(mut totals) = self.totals.lock() {
                    *totals = (steps_run, steps_cached);
                }
                return;
            }
            Event::Exported { .. } => return,
            other => other,
        };
        self.inner.report(event);
    }
}

/// One platform's result of a multi-platform build.
struct PlatformBuilt {
    platform: kiln_parser::values::Platform,
    outcome: kiln_builder::BuildOutcome,
    steps: (usize, usize),
}

/// Builds one image per platform, in parallel: each platform is a build
/// of its own (its own target platform, base images and cache keys) on
/// the one store; their images are written but not listed in index.json.
fn build_platforms(
    store: &kiln_store::Store,
    options: &BuildOptions,
    platforms: &[kiln_parser::values::Platform],
    reporter: &dyn kiln_builder::Reporter,
    mode: ProgressMode,
) -> anyhow::Result<(Vec<PlatformBuilt>, std::time::Duration)> {
    let started = std::time::Instant::now();
    let results: Vec<anyhow::Result<PlatformBuilt>> = std::thread::scope(|scope| {
        let handles: Vec<_> = platforms
            .iter()
            .enumerate()
            .map(|(position, platform)| {
                let mut options = options.clone();
                options.target_platform = Some(platform.clone());
                options.platform_member = true;
                options.tags = Vec::new();
                options.fetcher = Some(std::sync::Arc::new(RegistryFetcher {
                    platform: Some(platform_spec(platform)),
                    mode: transfer_mode(mode),
                }));
                let platform = platform.clone();
                scope.spawn(move || {
                    let reporter = PlatformReporter {
                        inner: reporter,
                        platform: platform.to_string(),
                        position,
                        count: platforms.len(),
                        totals: std::sync::Mutex::new((0, 0)),
                    };
                    let outcome = kiln_builder::build(store, &options, &reporter).map_err(|e| {
                        anyhow::Error::new(e).context(format!("building for {platform}"))
                    })?;
                    let steps = reporter.totals.lock().map(|t| *t).unwrap_or_default();
                    Ok(PlatformBuilt {
                        platform,
                        outcome,
                        steps,
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a platform's build thread panicked")))
            })
            .collect()
    });
    let built = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    Ok((built, started.elapsed()))
}

/// Stores the index of a multi-platform build under the tags, pushes it,
/// and writes what `--iidfile`, `--metadata-file` and `-q` ask for: the
/// index's digest, as buildx gives for a multi-platform image.
fn finish_multi_platform(
    store: &kiln_store::Store,
    args: &BuildArgs,
    (built, duration): (Vec<PlatformBuilt>, std::time::Duration),
    (output, tags, push_tags): (
        &Output,
        &[kiln_store::ImageReference],
        &[kiln_store::ImageReference],
    ),
    compression: Compression,
    mode: ProgressMode,
) -> anyhow::Result<ExitCode> {
    let manifests: Vec<(kiln_store::spec::Descriptor, kiln_store::spec::Platform)> = built
        .iter()
        .map(|b| {
            let spec = platform_spec(&b.platform);
            (
                b.outcome.manifest.clone(),
                kiln_store::spec::Platform {
                    architecture: spec.architecture,
                    os: spec.os,
                    variant: spec.variant,
                    extra: BTreeMap::new(),
                },
            )
        })
        .collect();
    let index = store
        .commit_index(&manifests, tags)
        .context("cannot store the image index")?;
    let reporter = progress::reporter(mode);
    reporter.report(kiln_builder::Event::Exported {
        image_id: index.digest.clone(),
        tags: tags.iter().map(ToString::to_string).collect(),
        duration: std::time::Duration::ZERO,
    });
    reporter.report(kiln_builder::Event::Finished {
        steps_run: built.iter().map(|b| b.steps.0).sum(),
        steps_cached: built.iter().map(|b| b.steps.1).sum(),
        duration,
    });
    drop(reporter);
    let mut exported = index.clone();
    let mut exported_names = tags.to_vec();
    let index_digest = kiln_store::digest::parse_sha256(&index.digest)?;
    // type=local: each platform's files in a directory of its own
    // (`linux_arm64`, `linux_arm_v7`), as buildx writes them; the index
    // stays only if -t named it.
    // type=tar: the same directories in one tar.
    match output {
        Output::Local { dest } => {
            write_directory(dest, |dir| unpack_platforms(store, &built, dir))?;
        }
        Output::Tar { dest } => {
            let staging = tempfile::Builder::new()
                .prefix("rootfs-")
                .tempdir_in(store.tmp_dir())
                .context("cannot create a directory for the images' files")?;
            unpack_platforms(store, &built, staging.path())?;
            write_rootfs_tar(staging.path(), dest)?;
        }
        _ => {}
    }
    if matches!(output, Output::Local { .. } | Output::Tar { .. }) && tags.is_empty() {
        store
            .delete_image(&index_digest)
            .context("cannot remove the untagged index of a type=local or type=tar build")?;
    }
    // type=oci: the index with every platform, as `kiln save` writes it.
    if let Output::Archive {
        format,
        dest,
        names,
        tar,
    } = output
    {
        for name in names {
            if !exported_names.contains(name) {
                exported_names.push(name.clone());
            }
        }
        let requests = [SaveRequest {
            image: store.index_image(&index_digest, None, "")?,
            tags: exported_names.clone(),
        }];
        if let Some(written) = save_output(store, &requests, *format, dest, *tar)?
            .into_iter()
            .next()
        {
            exported = written;
        }
    }
    if !push_tags.is_empty() {
        let client =
            kiln_store::registry::Client::new(kiln_store::registry::RegistryConfig::from_env());
        let push_compression = if compression == Compression::None {
            Compression::Gzip
        } else {
            compression
        };
        for tag in push_tags {
            let pushed = super::push::push_image(
                store,
                &client,
                tag,
                push_compression,
                transfer_mode(mode),
            )?;
            if !args.quiet {
                eprintln!(
                    "{}: digest: {} size: {}",
                    tag.tag().unwrap_or("latest"),
                    pushed.digest,
                    pushed.size
                );
            }
            exported = kiln_store::spec::Descriptor::new(
                kiln_store::spec::OCI_INDEX,
                &pushed.digest.to_string(),
                pushed.size,
            );
        }
    }
    if let Some(path) = &args.iidfile {
        fs::write(path, &index.digest)
            .with_context(|| format!("cannot write --iidfile {}", path.display()))?;
    }
    if let Some(path) = &args.metadata_file {
        let mut metadata = build_metadata(&index_digest, Some(&exported), &exported_names);
        // An index has no one config.
        if let Some(map) = metadata.as_object_mut() {
            map.remove("containerimage.config.digest");
        }
        write_metadata(path, &metadata)?;
    }
    finish_quiet(args.quiet, &index.digest)
}

/// Writes each platform's files into a directory of its own under `dir`
/// (`linux_arm64`, `linux_arm_v7`), as buildx does.
fn unpack_platforms(
    store: &kiln_store::Store,
    built: &[PlatformBuilt],
    dir: &Path,
) -> anyhow::Result<()> {
    for platform in built {
        let name = platform.platform.to_string().replace('/', "_");
        let target = dir.join(&name);
        fs::create_dir(&target).with_context(|| format!("cannot create {}", target.display()))?;
        let digest = kiln_store::digest::parse_sha256(&platform.outcome.manifest.digest)?;
        let image = store.image(&digest)?;
        kiln_store::archive::unpack_rootfs(store, &image, &target)
            .with_context(|| format!("cannot write the {name} image's files"))?;
    }
    Ok(())
}

/// Writes the files under `dir` as one tar to `dest` (`-o type=tar`).
fn write_rootfs_tar(dir: &Path, dest: &Dest) -> anyhow::Result<()> {
    let pack = |out: &mut dyn Write| {
        kiln_store::layer::pack_directory(dir, out, &kiln_store::layer::PackOptions::default())
            .map(drop)
            .context("cannot write the image's files as a tar")
    };
    match dest {
        Dest::Stdout => write_stdout(pack),
        Dest::File(path) => super::save::write_file_atomically(path, pack),
    }
}

/// Writes `requests` as `--output type=docker|oci` asks: a tar to stdout
/// or a file, or an OCI layout directory; returns each request's
/// manifest (or index) descriptor as written.
fn save_output(
    store: &kiln_store::Store,
    requests: &[SaveRequest],
    format: SaveFormat,
    dest: &Dest,
    tar: bool,
) -> anyhow::Result<Vec<kiln_store::spec::Descriptor>> {
    match (dest, tar) {
        (Dest::Stdout, _) => write_stdout(|out| {
            kiln_store::archive::save_archive(store, requests, format, out)
                .context("cannot save the image to stdout")
        }),
        (Dest::File(path), true) => super::save::write_archive_file(store, requests, format, path),
        (Dest::File(path), false) => write_directory(path, |dir| {
            kiln_store::archive::save_layout(store, requests, dir)
                .with_context(|| format!("cannot write an OCI layout to {}", path.display()))
        }),
    }
}

/// `--metadata-file`'s JSON, with buildx's keys (BuildKit's exporter
/// response): the config digest (the image ID), the manifest as exported
/// (its digest and descriptor) and the names, comma-joined. An output
/// with no image (`type=local|tar`) has none of them.
fn build_metadata(
    image_id: &kiln_store::Digest,
    exported: Option<&kiln_store::spec::Descriptor>,
    names: &[kiln_store::ImageReference],
) -> serde_json::Value {
    let mut metadata = serde_json::Map::new();
    if let Some(manifest) = exported {
        metadata.insert(
            "containerimage.config.digest".to_owned(),
            image_id.to_string().into(),
        );
        metadata.insert(
            "containerimage.descriptor".to_owned(),
            serde_json::json!({
                "mediaType": manifest.media_type,
                "digest": manifest.digest,
                "size": manifest.size,
            }),
        );
        metadata.insert(
            "containerimage.digest".to_owned(),
            manifest.digest.clone().into(),
        );
        if !names.is_empty() {
            let names: Vec<String> = names.iter().map(ToString::to_string).collect();
            metadata.insert("image.name".to_owned(), names.join(",").into());
        }
    }
    serde_json::Value::Object(metadata)
}

/// Fails unless `dest` is missing or an empty directory.
fn check_empty_dir(dest: &Path) -> anyhow::Result<()> {
    match fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!("{} is not empty", dest.display());
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            bail!("{} exists and is not a directory", dest.display())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dest.display())),
    }
}

/// Makes the directory `dest` whole or not at all: `fill` writes into a
/// new directory beside it, renamed to `dest` once complete (replacing
/// the empty directory there, if any).
fn write_directory<T>(
    dest: &Path,
    fill: impl FnOnce(&Path) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    check_empty_dir(dest)?;
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    // What a killed build left here goes first; this one's directory
    // carries its owner and is locked while it lives, as `kiln save`'s
    // temporary archives are.
    match kiln_store::temp::sweep_outputs(parent) {
        Ok(swept) if swept.entries > 0 => log::info!(
            "removed {} output directory(ies) of killed builds from {}",
            swept.entries,
            parent.display()
        ),
        Ok(_) => {}
        Err(e) => log::warn!(
            "cannot remove output directories of killed builds from {}: {e}",
            parent.display()
        ),
    }
    let staging = tempfile::Builder::new()
        .prefix(&format!(
            "{}{}-",
            kiln_store::temp::OUTPUT_PREFIX,
            kiln_store::temp::Owner::current().tag()
        ))
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a directory in {}", parent.display()))?;
    let lock = fs::File::open(staging.path())
        .with_context(|| format!("cannot open {}", staging.path().display()))?;
    lock.lock()
        .with_context(|| format!("cannot lock {}", staging.path().display()))?;
    // tempfile makes it 0700; the result gets a new directory's usual mode.
    fs::set_permissions(
        staging.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .with_context(|| format!("cannot set the mode of {}", staging.path().display()))?;
    let value = fill(staging.path())?;
    let staged = staging.keep();
    // The rename below moves the locked directory: the lock goes with it
    // and is dropped once it is in place.
    if let Err(e) = fs::rename(&staged, dest) {
        let _ = fs::remove_dir_all(&staged);
        return Err(e).with_context(|| format!("cannot move the output into {}", dest.display()));
    }
    Ok(value)
}

/// Writes to stdout through a large buffer, flushed at the end.
fn write_stdout<T>(write: impl FnOnce(&mut dyn Write) -> anyhow::Result<T>) -> anyhow::Result<T> {
    let mut out = io::BufWriter::with_capacity(1 << 20, io::stdout().lock());
    let value = write(&mut out)?;
    out.flush().context("cannot write to stdout")?;
    Ok(value)
}

/// The progress of pulls and pushes in a build: plain lines (the build's
/// own bars own the terminal), JSON or nothing as the build's.
fn transfer_mode(mode: ProgressMode) -> ProgressMode {
    match mode {
        ProgressMode::Quiet | ProgressMode::Json => mode,
        _ => ProgressMode::Plain,
    }
}

/// After a pull of one platform of `reference`, tags an index of the
/// pulled image and the other platforms the tag named `before` (an
/// image of another platform, or a tagged index's other entries); does
/// nothing when there were none.
fn keep_other_platforms(
    store: &kiln_store::Store,
    reference: &kiln_store::ImageReference,
    before: Option<&kiln_store::Image>,
) -> anyhow::Result<()> {
    use kiln_store::spec::{Descriptor, Index, OCI_MANIFEST, Platform};
    let Some(before) = before else {
        return Ok(());
    };
    let pulled = store.resolve(&reference.to_string())?;
    let platform_of = |config: &kiln_store::spec::ImageConfig| Platform {
        architecture: config.architecture.clone(),
        os: config.os.clone(),
        variant: config.variant.clone(),
        extra: BTreeMap::new(),
    };
    let descriptor_of = |image: &kiln_store::Image| -> anyhow::Result<Descriptor> {
        let media_type = if image.manifest.media_type.is_empty() {
            OCI_MANIFEST
        } else {
            &image.manifest.media_type
        };
        let size = store.blobs().size(&image.manifest_digest)?;
        Ok(Descriptor::new(
            media_type,
            &image.manifest_digest.to_string(),
            size,
        ))
    };
    let new = platform_of(&pulled.config);
    let same = |p: &Platform| {
        p.os == new.os && p.architecture == new.architecture && p.variant == new.variant
    };
    let mut entries: Vec<(Descriptor, Platform)> = Vec::new();
    if let Some(index) = &before.index {
        let (index, _): (Index, _) = store.read_json(index)?;
        for entry in index.manifests {
            if let Some(platform) = entry.platform.clone()
                && !same(&platform)
            {
                entries.push((entry, platform));
            }
        }
    } else {
        let platform = platform_of(&before.config);
        if !same(&platform) {
            entries.push((descriptor_of(before)?, platform));
        }
    }
    if entries.is_empty() {
        return Ok(());
    }
    entries.push((descriptor_of(&pulled)?, new));
    store
        .commit_index(&entries, std::slice::from_ref(reference))
        .with_context(|| format!("cannot keep the platforms of {reference} side by side"))?;
    Ok(())
}

/// Pulls the base images a build lacks from their registry.
#[derive(Debug)]
struct RegistryFetcher {
    platform: Option<kiln_store::registry::PlatformSpec>,
    mode: ProgressMode,
}

/// Serialises the pulls for an explicit platform in this process: each
/// reads what the tag named, pulls, and merges the two into an index.
static PLATFORM_PULLS: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl kiln_builder::BaseImageFetcher for RegistryFetcher {
    fn fetch(
        &self,
        store: &kiln_store::Store,
        reference: &str,
        platform: Option<&kiln_store::registry::PlatformSpec>,
    ) -> Result<(), String> {
        let reference = parse_reference(reference).map_err(|e| format!("{e:#}"))?;
        let client =
            kiln_store::registry::Client::new(kiln_store::registry::RegistryConfig::from_env());
        let platform = platform.cloned().or_else(|| self.platform.clone());
        let pulled = if platform.is_some() {
            // A pull tags the one platform it fetched; the platforms the
            // tag named before stay beside it in a local index, so that
            // the builds of other platforms (and FROM --platform stages)
            // still find theirs.
            let _serial = PLATFORM_PULLS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let before = store.resolve(&reference.to_string()).ok();
            super::pull::pull_image(store, &client, &reference, platform, self.mode)
                .and_then(|_| keep_other_platforms(store, &reference, before.as_ref()))
        } else {
            super::pull::pull_image(store, &client, &reference, None, self.mode).map(drop)
        };
        pulled.map_err(|e| {
            // The cause chain in one line: the reference is named by
            // the caller.
            e.chain()
                .skip(1)
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(": ")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(name: &str) -> kiln_store::ImageReference {
        parse_reference(name).unwrap()
    }

    #[test]
    fn output_specs() {
        for (spec, expected) in [
            (
                "type=image",
                Output::Image {
                    names: vec![],
                    push: false,
                    store: true,
                },
            ),
            (
                "type=image,name=a:1,push=true",
                Output::Image {
                    names: vec![reference("a:1")],
                    push: true,
                    store: true,
                },
            ),
            (
                "type=image,\"name=a:1,b\",push=false",
                Output::Image {
                    names: vec![reference("a:1"), reference("b")],
                    push: false,
                    store: true,
                },
            ),
            (
                "type=registry,name=r.example/a",
                Output::Image {
                    names: vec![reference("r.example/a")],
                    push: true,
                    store: true,
                },
            ),
            (
                "type=registry,name=a,push=false",
                Output::Image {
                    names: vec![reference("a")],
                    push: false,
                    store: true,
                },
            ),
            (
                "type=registry,name=a,store=false",
                Output::Image {
                    names: vec![reference("a")],
                    push: true,
                    store: false,
                },
            ),
            (
                "type=docker,dest=/tmp/a.tar",
                Output::Archive {
                    format: SaveFormat::Docker,
                    dest: Dest::File(PathBuf::from("/tmp/a.tar")),
                    names: vec![],
                    tar: true,
                },
            ),
            (
                "type=docker,dest=-,name=x",
                Output::Archive {
                    format: SaveFormat::Docker,
                    dest: Dest::Stdout,
                    names: vec![reference("x")],
                    tar: true,
                },
            ),
            (
                " type = oci , dest = out.tar ",
                Output::Archive {
                    format: SaveFormat::Oci,
                    dest: Dest::File(PathBuf::from("out.tar")),
                    names: vec![],
                    tar: true,
                },
            ),
            (
                "type=oci,dest=layout,tar=false",
                Output::Archive {
                    format: SaveFormat::Oci,
                    dest: Dest::File(PathBuf::from("layout")),
                    names: vec![],
                    tar: false,
                },
            ),
            (
                "type=oci,dest=-",
                Output::Archive {
                    format: SaveFormat::Oci,
                    dest: Dest::Stdout,
                    names: vec![],
                    tar: true,
                },
            ),
            (
                "type=local,dest=out",
                Output::Local {
                    dest: PathBuf::from("out"),
                },
            ),
            (
                "out/dir",
                Output::Local {
                    dest: PathBuf::from("out/dir"),
                },
            ),
            (
                "type=tar,dest=fs.tar",
                Output::Tar {
                    dest: Dest::File(PathBuf::from("fs.tar")),
                },
            ),
            ("type=tar,dest=-", Output::Tar { dest: Dest::Stdout }),
            ("-", Output::Tar { dest: Dest::Stdout }),
        ] {
            assert_eq!(parse_output(spec).unwrap(), expected, "{spec}");
        }
        assert!(parse_output("-").unwrap().to_stdout());
        assert!(parse_output("type=oci,dest=-").unwrap().to_stdout());
        assert!(!parse_output("type=oci,dest=a").unwrap().to_stdout());
        assert!(!parse_output("type=image").unwrap().to_stdout());
    }

    #[test]
    fn output_spec_errors() {
        for (spec, why) in [
            (
                "",
                "empty (expected type=TYPE[,KEY=VALUE...] with TYPE image, registry, docker, oci, local or tar, a directory or -)",
            ),
            (
                "dest=a.tar",
                "missing type= (image, registry, docker, oci, local or tar)",
            ),
            ("type=oci", "type=oci needs dest="),
            ("type=docker,dest=", "type=docker needs dest="),
            ("type=local", "type=local needs dest="),
            ("type=tar", "type=tar needs dest="),
            (
                "type=local,dest=-",
                "type=local writes a directory, not stdout (type=tar,dest=- writes a tar there)",
            ),
            (
                "type=oci,dest=-,tar=false",
                "tar=false writes a directory, which cannot go to stdout",
            ),
            (
                "type=cacheonly",
                "unsupported type \"cacheonly\" (image, registry, docker, oci, local or tar)",
            ),
            (
                "type=oci,dest=a,compression=zstd",
                "unknown key \"compression\" (kiln knows type, name, push, store, dest and tar)",
            ),
            ("type=oci,dest=a,tar=no", "tar=\"no\" is not true or false"),
            ("type=image,push=1", "push=\"1\" is not true or false"),
            ("type=image,dest=a", "type=image takes no dest="),
            (
                "type=image,store=false",
                "store=false needs push=true (or type=registry): the image would go nowhere",
            ),
            (
                "type=docker,dest=a,store=false",
                "type=docker takes no store=",
            ),
            (
                "type=registry,name=a,tar=false",
                "type=registry takes no tar=",
            ),
            ("type=docker,dest=a,push=true", "type=docker takes no push="),
            ("type=docker,dest=a,tar=false", "type=docker takes no tar="),
            ("type=local,dest=a,name=x", "type=local takes no name="),
            ("type=tar,dest=a,push=true", "type=tar takes no push="),
            ("type=tar,dest", "\"dest\" is not KEY=VALUE"),
            ("type=tar,dest=a,", "\"\" is not KEY=VALUE"),
            ("type=image,\"name=a", "a quoted field is not closed"),
            (
                "type=image,\"name=a\"x",
                "a closing quote is followed by more than a comma",
            ),
            (
                "type=image,name=UPPER",
                "invalid reference format \"UPPER\": invalid reference format: repository name (library/UPPER) must be lowercase",
            ),
        ] {
            let message = parse_output(spec).unwrap_err().to_string();
            assert_eq!(
                message,
                format!("invalid --output {spec:?}: {why}"),
                "{spec}"
            );
        }
    }

    #[test]
    fn csv_fields() {
        assert_eq!(split_csv("a,b").unwrap(), ["a", "b"]);
        assert_eq!(split_csv("\"a,b\",c").unwrap(), ["a,b", "c"]);
        assert_eq!(split_csv("\"say \"\"hi\"\"\"").unwrap(), ["say \"hi\""]);
        assert_eq!(split_csv("a,").unwrap(), ["a", ""]);
        assert_eq!(split_csv("\"a\",").unwrap(), ["a", ""]);
    }

    #[test]
    fn metadata_keys() {
        let id = kiln_store::digest::digest_bytes(b"config");
        let manifest = kiln_store::spec::Descriptor::new(
            kiln_store::spec::OCI_MANIFEST,
            &kiln_store::digest::digest_bytes(b"manifest").to_string(),
            42,
        );
        let value = build_metadata(&id, Some(&manifest), &[reference("a:1"), reference("b")]);
        assert_eq!(
            value,
            serde_json::json!({
                "containerimage.config.digest": id.to_string(),
                "containerimage.descriptor": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest.digest,
                    "size": 42,
                },
                "containerimage.digest": manifest.digest,
                "image.name": "docker.io/library/a:1,docker.io/library/b:latest",
            })
        );
        let unnamed = build_metadata(&id, Some(&manifest), &[]);
        assert!(unnamed.get("image.name").is_none(), "{unnamed}");
        assert_eq!(
            build_metadata(&id, None, &[reference("a")]),
            serde_json::json!({})
        );
    }

    #[test]
    fn build_args() {
        let parsed = parse_build_args(&["A=1".to_owned(), "B=".to_owned()]).unwrap();
        assert_eq!(parsed.get("A").map(String::as_str), Some("1"));
        assert_eq!(parsed.get("B").map(String::as_str), Some(""));
        assert_eq!(
            parse_build_args(&["=x".to_owned()])
                .unwrap_err()
                .to_string(),
            "invalid --build-arg \"=x\": the name is empty (use --build-arg NAME=VALUE)"
        );
    }

    #[test]
    fn allow_values() {
        let allow = parse_allow(&["network.host".to_owned()]).unwrap();
        assert!(allow.network_host && !allow.security_insecure);
        let allow =
            parse_allow(&["security.insecure".to_owned(), "network.host".to_owned()]).unwrap();
        assert!(allow.network_host && allow.security_insecure);
        assert_eq!(
            parse_allow(&["device".to_owned()]).unwrap_err().to_string(),
            "invalid --allow \"device\": expected network.host or security.insecure"
        );
    }

    #[test]
    fn tar_detection() {
        let mut header = vec![0u8; 512];
        header[257..262].copy_from_slice(b"ustar");
        assert!(looks_like_tar(&header));
        assert!(!looks_like_tar(b"FROM scratch\n"));
    }
}

/// Where RUN steps on the build's default network go when `--network`
/// names a user network or `--add-host` is given: the `/etc` files kiln
/// writes (in a temporary directory) and, on a user network, one network
/// namespace joined to it for the whole build (its lease is this
/// process's, freed at the end or, if kiln is killed, by the next
/// reconcile). RUN steps with `--network=host|none` keep theirs.
struct RunNetwork {
    etc: tempfile::TempDir,
    attached: Option<super::network::endpoints::Attached>,
}

impl RunNetwork {
    fn set_up(store: &kiln_store::Store, args: &BuildArgs) -> anyhow::Result<Option<RunNetwork>> {
        let user = !matches!(
            args.network.as_str(),
            "default" | "bridge" | "host" | "none"
        );
        if !user && args.add_hosts.is_empty() {
            return Ok(None);
        }
        let etc = tempfile::Builder::new()
            .prefix("build-etc-")
            .tempdir_in(store.tmp_dir())
            .context("cannot create the RUN steps' /etc files")?;
        let hostname = kiln_builder::engine::BUILD_HOSTNAME;
        if !user {
            let mut hosts = format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
            );
            for entry in &args.add_hosts {
                if let Some((name, address)) = entry.split_once(':') {
                    let _ =
                        std::fmt::Write::write_fmt(&mut hosts, format_args!("{address}\t{name}\n"));
                }
            }
            for (name, text) in [
                ("hosts", hosts),
                ("hostname", format!("{hostname}\n")),
                ("resolv.conf", kiln_runtime::isolated_resolv_conf()),
            ] {
                let path = etc.path().join(name);
                fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            return Ok(Some(RunNetwork {
                etc,
                attached: None,
            }));
        }
        let id = super::container::random_id();
        let who = super::network::endpoints::Identity {
            name: format!("build-{}", id.get(..12).unwrap_or(&id)),
            id,
            hostname: hostname.to_owned(),
            extra_hosts: args.add_hosts.clone(),
            dns: Vec::new(),
            ports: Vec::new(),
        };
        let endpoints = [super::network::endpoints::EndpointRequest {
            network: args.network.clone(),
            aliases: Vec::new(),
            ipv4_address: None,
        }];
        let attached =
            super::network::endpoints::attach(store.root(), &who, &endpoints, etc.path())?;
        Ok(Some(RunNetwork {
            etc,
            attached: Some(attached),
        }))
    }

    fn executor(&self) -> anyhow::Result<std::sync::Arc<dyn kiln_builder::Executor>> {
        let netns = self
            .attached
            .as_ref()
            .map(|a| a.netns.try_clone())
            .transpose()
            .context("cannot share the build's network namespace")?;
        Ok(std::sync::Arc::new(NetworkExecutor {
            etc: self.etc.path().to_path_buf(),
            netns,
        }))
    }

    fn finish(self) {
        if let Some(attached) = self.attached {
            attached.detach();
        }
        drop(self.etc);
    }
}

/// Runs RUN steps on the default network with [`RunNetwork`]'s files
/// and namespace; others as kiln-runtime does.
#[derive(Debug)]
struct NetworkExecutor {
    etc: PathBuf,
    netns: Option<std::os::fd::OwnedFd>,
}

impl kiln_builder::Executor for NetworkExecutor {
    fn run(
        &self,
        spec: &kiln_runtime::RunSpec,
        output: kiln_runtime::OutputSink<'_>,
        networks: Option<&kiln_runtime::NetworkPool>,
    ) -> Result<kiln_runtime::RunOutcome, kiln_runtime::RuntimeError> {
        if spec.network != kiln_runtime::Network::Isolated {
            return kiln_runtime::run_streaming(spec, output, networks);
        }
        let hooks = kiln_runtime::Hooks {
            sink: Some(output),
            keep_output: true,
            netns: self.netns.as_ref().map(std::os::fd::AsFd::as_fd),
            etc: Some(&self.etc),
            ..kiln_runtime::Hooks::default()
        };
        // Without a namespace of ours, the pool's (slirp4netns) is used.
        if self.netns.is_none() {
            return kiln_runtime::run_hooked_pooled(spec, hooks, networks);
        }
        kiln_runtime::run_hooked(spec, hooks)
    }
}
