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
    /// Network for RUN steps: `default` (an isolated network namespace
    /// with outbound NAT), `host` or `none` (only loopback)
    #[arg(long, default_value = "default", value_name = "MODE")]
    network: String,
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
    /// Also write the image as an archive: `type=docker|oci,dest=FILE.tar`
    #[arg(short = 'o', long, value_name = "SPEC")]
    output: Option<String>,
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
    /// The platform of the base images to pull from a multi-platform image
    /// (OS/ARCH[/VARIANT])
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// An additional named context for `FROM NAME`, `COPY --from=NAME` and
    /// `RUN --mount=from=NAME`: a directory, `docker-image://REF` or
    /// `oci-layout://DIR[:TAG|@DIGEST]`; may repeat
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    build_contexts: Vec<String>,
    /// The build context: a directory, or `-` for a tar archive (or a
    /// Dockerfile) on stdin
    #[arg(value_name = "CONTEXT")]
    context: String,
}

/// `--output`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OutputSpec {
    format: SaveFormat,
    dest: PathBuf,
}

/// `--output type=registry,name=REF[,push=true|false]`: tag the image
/// `REF` and (by default) push it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RegistryOutput {
    name: kiln_store::ImageReference,
    push: bool,
}

/// Parses `--output type=registry,...`; `None` for any other type.
fn parse_registry_output(spec: &str) -> anyhow::Result<Option<RegistryOutput>> {
    let fields: Vec<(&str, &str)> = spec
        .split(',')
        .filter_map(|f| f.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    if !fields.contains(&("type", "registry")) {
        return Ok(None);
    }
    let mut name = None;
    let mut push = true;
    for (key, value) in fields {
        match (key, value) {
            ("type", _) => {}
            ("name", value) => name = Some(parse_reference(value)?),
            ("push", "true") => push = true,
            ("push", "false") => push = false,
            _ => bail!(
                "invalid --output {spec:?}: unknown {key}={value} (expected type=registry,name=REF[,push=true|false])"
            ),
        }
    }
    let Some(name) = name else {
        bail!("invalid --output {spec:?}: missing name=REF");
    };
    Ok(Some(RegistryOutput { name, push }))
}

/// Parses `type=docker|oci,dest=FILE` (BuildKit's CSV form).
fn parse_output(spec: &str) -> anyhow::Result<OutputSpec> {
    let mut kind = None;
    let mut dest = None;
    for field in spec.split(',') {
        let Some((key, value)) = field.split_once('=') else {
            bail!(
                "invalid --output {spec:?}: {field:?} is not KEY=VALUE (expected type=docker|oci,dest=FILE.tar)"
            );
        };
        match key.trim() {
            "type" => kind = Some(value.trim().to_owned()),
            "dest" => dest = Some(PathBuf::from(value.trim())),
            other => bail!(
                "invalid --output {spec:?}: unknown key {other:?} (expected type=docker|oci,dest=FILE.tar)"
            ),
        }
    }
    let format = match kind.as_deref() {
        Some("docker") => SaveFormat::Docker,
        Some("oci") => SaveFormat::Oci,
        Some(other) => bail!(
            "invalid --output {spec:?}: unsupported type {other:?} (kiln writes type=docker or type=oci)"
        ),
        None => bail!("invalid --output {spec:?}: missing type= (docker or oci)"),
    };
    let Some(dest) = dest.filter(|d| !d.as_os_str().is_empty()) else {
        bail!("invalid --output {spec:?}: missing dest=FILE.tar");
    };
    Ok(OutputSpec { format, dest })
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
fn parse_build_contexts(values: &[String]) -> anyhow::Result<BTreeMap<String, NamedContextInput>> {
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
        } else if let Some((scheme, _)) = value.split_once("://").filter(|(scheme, _)| {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }) {
            return Err(invalid(format!(
                "{scheme}:// contexts are not supported by kiln (only a directory, docker-image:// and oci-layout://)"
            )));
        } else if value.starts_with("git@")
            || value.starts_with("target:")
            || value.starts_with("input:")
        {
            return Err(invalid(
                "git, target: and input: contexts are not supported by kiln (only a directory, docker-image:// and oci-layout://)".to_owned(),
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
        contexts.insert(name, input);
    }
    Ok(contexts)
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
    let registry_output = args
        .output
        .as_deref()
        .map(parse_registry_output)
        .transpose()?
        .flatten();
    let output = match &registry_output {
        Some(_) => None,
        None => args.output.as_deref().map(parse_output).transpose()?,
    };
    let mut tags = args
        .tags
        .iter()
        .map(|t| parse_reference(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(registry_output) = &registry_output
        && !tags.contains(&registry_output.name)
    {
        tags.push(registry_output.name.clone());
    }
    let mut push_tags = if args.push { tags.clone() } else { Vec::new() };
    if let Some(RegistryOutput { name, push: true }) = &registry_output
        && !push_tags.contains(name)
    {
        push_tags.push(name.clone());
    }
    if args.push && tags.is_empty() {
        bail!("--push needs a name: give one with -t NAME[:TAG]");
    }
    let platform = args
        .platform
        .as_deref()
        .map(kiln_store::registry::PlatformSpec::parse)
        .transpose()?;
    let network = match args.network.as_str() {
        "default" => kiln_runtime::Network::Isolated,
        "host" => kiln_runtime::Network::Host,
        "none" => kiln_runtime::Network::None,
        other => bail!("invalid --network {other:?}: expected default, host or none"),
    };
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
    // Opened now, so a path that cannot be written fails before the build.
    let trace = args.trace.as_deref().map(TraceWriter::create).transpose()?;
    // Mounts made by the build stay in a namespace of their own; this
    // must happen while the process still has one thread.
    kiln_builder::mounts::enter_private_mount_namespace()
        .context("kiln build needs root (it mounts overlay filesystems)")?;
    let store = open_store(root)?;
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
    let options = BuildOptions {
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
        stat_cache,
        secrets,
        fetcher: Some(std::sync::Arc::new(RegistryFetcher {
            platform,
            mode: transfer_mode(mode),
        })),
        pull_always: args.pull,
        explain: args.explain,
        executor: None,
        contexts,
    };
    install_signal_handlers();
    let reporter = progress::reporter(mode);
    let result = match &trace {
        Some(trace) => kiln_builder::build(&store, &options, &Tee(reporter.as_ref(), trace)),
        None => kiln_builder::build(&store, &options, reporter.as_ref()),
    };
    // RUN steps' NAT helpers are reaped in the background; none may
    // outlive kiln.
    kiln_runtime::wait_for_helpers();
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
    if let Some(path) = &args.iidfile {
        fs::write(path, outcome.image_id.to_string())
            .with_context(|| format!("cannot write --iidfile {}", path.display()))?;
    }
    if let Some(output) = output {
        let image = store
            .resolve(&outcome.image_id.to_string())
            .context("cannot read back the built image")?;
        let request = SaveRequest { image, tags };
        super::save::write_archive_file(&store, &[request], output.format, &output.dest)?;
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
            let pushed = super::push::push_image(
                &store,
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
        }
    }
    if args.quiet {
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "{}", outcome.image_id).context("cannot write to stdout")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The progress of pulls and pushes in a build: plain lines (the build's
/// own bars own the terminal), JSON or nothing as the build's.
fn transfer_mode(mode: ProgressMode) -> ProgressMode {
    match mode {
        ProgressMode::Quiet | ProgressMode::Json => mode,
        _ => ProgressMode::Plain,
    }
}

/// Pulls the base images a build lacks from their registry.
#[derive(Debug)]
struct RegistryFetcher {
    platform: Option<kiln_store::registry::PlatformSpec>,
    mode: ProgressMode,
}

impl kiln_builder::BaseImageFetcher for RegistryFetcher {
    fn fetch(&self, store: &kiln_store::Store, reference: &str) -> Result<(), String> {
        let reference = parse_reference(reference).map_err(|e| format!("{e:#}"))?;
        let client =
            kiln_store::registry::Client::new(kiln_store::registry::RegistryConfig::from_env());
        super::pull::pull_image(store, &client, &reference, self.platform.clone(), self.mode)
            .map(drop)
            .map_err(|e| {
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

    #[test]
    fn output_specs() {
        assert_eq!(
            parse_output("type=oci,dest=out.tar").unwrap(),
            OutputSpec {
                format: SaveFormat::Oci,
                dest: PathBuf::from("out.tar")
            }
        );
        assert_eq!(
            parse_output("type=docker,dest=/tmp/a.tar").unwrap().format,
            SaveFormat::Docker
        );
        for (spec, message) in [
            (
                "dest=a.tar",
                "invalid --output \"dest=a.tar\": missing type= (docker or oci)",
            ),
            (
                "type=oci",
                "invalid --output \"type=oci\": missing dest=FILE.tar",
            ),
            (
                "type=local,dest=x",
                "invalid --output \"type=local,dest=x\": unsupported type \"local\" (kiln writes type=docker or type=oci)",
            ),
            (
                "out.tar",
                "invalid --output \"out.tar\": \"out.tar\" is not KEY=VALUE (expected type=docker|oci,dest=FILE.tar)",
            ),
        ] {
            assert_eq!(parse_output(spec).unwrap_err().to_string(), message);
        }
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
