//! `kiln cp`: copies files between a container and the host, with
//! `docker cp`'s path rules (moby's `PrepareArchiveCopy`) and messages.
//!
//! Every path inside the container is resolved by a helper process whose
//! root directory *is* the container's root, so no symlink of the
//! container (absolute, `..`, or swapped in during the copy, the race of
//! CVE-2018-15664) can reach a file of the host: kiln re-executed as
//! `__kiln-cp` (single-threaded, as `setns` of a mount namespace needs)
//! either joins the mount namespace of the running container's process
//! through a pidfd (checked against the process's recorded start time),
//! or, for a stopped container, mounts the container's overlay (image
//! snapshots under its upper directory) in a private mount namespace and
//! chroots into it. There it resolves paths with kiln-rootfs's in-root
//! resolver and streams a tar over a pipe, written and read by the store's
//! one tar packer and unpacker (name cleaning, limits, `RESOLVE_IN_ROOT`
//! extraction). The helper does no user or group lookups (ids are
//! numeric) and loads no library after joining the container, so nothing
//! of the container's is ever executed or loaded by a host process
//! (CVE-2019-14271).

use std::ffi::OsString;
use std::fs;
use std::io::{BufWriter, Read as _, Write as _};
use std::os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};

use anyhow::{Context as _, bail};
use clap::Args;
use kiln_rootfs::Root;
use kiln_store::Store;
use serde::{Deserialize, Serialize};

use super::Container;

/// `argv[1]` that makes kiln act as the copy helper.
pub const CP_ARG: &str = "__kiln-cp";

/// Exit status of the helper when the container path does not exist.
const NOT_FOUND: u8 = 2;
/// The descriptor on which the helper gets the container process's pidfd.
const PIDFD: i32 = 3;

/// Arguments of `kiln cp`.
#[derive(Debug, Args)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information).
    #[arg(short, long)]
    archive: bool,
    /// Always follow symlinks in `SRC_PATH` (Docker's help text below).
    #[arg(short = 'L', long, help = "Always follow symlinks in SRC_PATH")]
    follow_link: bool,
    /// Suppress progress output during copy. Progress output is
    /// automatically suppressed if no terminal is attached.
    #[arg(short, long)]
    quiet: bool,
    /// `CONTAINER:SRC_PATH` or a local `SRC_PATH` (`-`: a tar on stdin).
    #[arg(
        value_name = "SRC",
        allow_hyphen_values = true,
        help = "CONTAINER:SRC_PATH, or a local SRC_PATH (- reads a tar archive from stdin)"
    )]
    source: String,
    /// A local `DEST_PATH` (`-`: a tar on stdout) or `CONTAINER:DEST_PATH`.
    #[arg(
        value_name = "DEST",
        allow_hyphen_values = true,
        help = "A local DEST_PATH (- writes a tar archive to stdout), or CONTAINER:DEST_PATH"
    )]
    destination: String,
}

/// Runs `kiln cp`.
pub fn run(root: Option<&Path>, args: &CpArgs) -> anyhow::Result<ExitCode> {
    if args.source.is_empty() {
        bail!("source can not be empty");
    }
    if args.destination.is_empty() {
        bail!("destination can not be empty");
    }
    let (source_container, source) = split_cp_arg(&args.source);
    let (dest_container, dest) = split_cp_arg(&args.destination);
    let (key, to_container) = match (source_container, dest_container) {
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (None, None) => bail!("must specify at least one container source"),
        (Some(key), None) => (key, false),
        (None, Some(key)) => (key, true),
    };
    let store = crate::commands::open_store(root)?;
    let container = super::find(&store, key)?;
    let access = Access::new(&store, container, key)?;
    // Docker's default: progress only for a terminal.
    let quiet = args.quiet || !std::io::IsTerminal::is_terminal(&std::io::stdout());
    let (bytes, shown) = if to_container {
        let bytes = copy_in(&access, source, dest, args)?;
        (bytes, format!("{key}:{dest}"))
    } else {
        let bytes = copy_out(&access, source, dest, args.follow_link)?;
        // Docker names the destination by its absolute path.
        (
            bytes,
            resolve_local_path(dest).unwrap_or_else(|_| dest.to_owned()),
        )
    };
    if !quiet && dest != "-" {
        eprintln!(
            "Successfully copied {} to {shown}",
            crate::units::human_size(bytes)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Docker's `splitCpArg`: `CONTAINER:PATH`, unless the argument is an
/// absolute path or starts with `.` (`./file:name` is local).
fn split_cp_arg(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((container, path)) if !container.starts_with('.') => (Some(container), path),
        _ => (None, arg),
    }
}

/// Copies container path `source` to the host's `dest` (`-`: a tar on
/// stdout); returns the bytes of file content copied.
fn copy_out(access: &Access<'_>, source: &str, dest: &str, follow: bool) -> anyhow::Result<u64> {
    let dest_abs = (dest != "-")
        .then(|| resolve_local_path(dest))
        .transpose()?;
    if let Some(dest) = &dest_abs {
        validate_output_path(dest)?;
    }
    let stat = access.stat(source, follow)?;
    if !stat.found {
        bail!(
            "Could not find the file {source} in container {}",
            access.key
        );
    }
    // The archive's top entry is named after the path as given (after
    // `-L` too), as Docker's daemon names it.
    let default_name = archive_name(source);
    let Some(dest_abs) = dest_abs else {
        let op = Operation::Archive {
            path: source.to_owned(),
            follow,
            name: default_name,
        };
        let run = access.spawn(&op, Stdio::null(), Stdio::inherit())?;
        run.finish(access, source)?;
        return Ok(0);
    };
    let dest_info = copy_info_destination_path(&dest_abs)?;
    let source_info = CopyInfo {
        path: source.to_owned(),
        exists: true,
        is_dir: stat.is_dir,
    };
    let (dir, name) = prepare_archive_copy(&source_info, &default_name, &dest_info)?;
    // Files copied out belong to whoever runs kiln (Docker's NoLchown).
    let owner = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    let op = Operation::Archive {
        path: source.to_owned(),
        follow,
        name,
    };
    let mut run = access.spawn(&op, Stdio::null(), Stdio::piped())?;
    let stream = run
        .child
        .stdout
        .take()
        .context("the copy helper's output")?;
    let unpacked = kiln_store::layer::unpack_copy(stream, Path::new(&dir), Some(owner));
    let helper = run.finish(access, source);
    match (unpacked, helper) {
        (Ok(stats), Ok(())) => Ok(stats.bytes),
        // The helper broke the stream (or ended it early): its reason.
        (
            Ok(_)
            | Err(
                kiln_store::layer::LayerError::Truncated { .. }
                | kiln_store::layer::LayerError::Header { .. },
            ),
            Err(e),
        ) => Err(e),
        // Docker's message as it is.
        (
            Err(
                e @ (kiln_store::layer::LayerError::OverwriteDirectory { .. }
                | kiln_store::layer::LayerError::OverwriteNonDirectory { .. }),
            ),
            _,
        ) => Err(e.into()),
        (Err(e), _) => Err(anyhow::Error::from(e).context(format!("extracting into {dir}"))),
    }
}

/// Whether `error` comes from a pipe whose reader is gone.
fn broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Copies the host's `source` (`-`: a tar on stdin) to container path
/// `dest`; returns the bytes of file content copied.
fn copy_in(access: &Access<'_>, source: &str, dest: &str, args: &CpArgs) -> anyhow::Result<u64> {
    if access.read_only() {
        bail!("container rootfs is marked read-only");
    }
    // A symlink at the destination is followed, inside the container.
    let stat = access.stat(dest, true)?;
    if stat.found && stat.is_device {
        bail!(
            "destination \"{}:{dest}\" must be a directory or a regular file: got a device",
            access.key
        );
    }
    let dest_info = CopyInfo {
        path: if stat.found {
            stat.path.clone()
        } else {
            dest.to_owned()
        },
        exists: stat.found,
        is_dir: stat.is_dir,
    };
    // Copied files belong to the container's root unless -a keeps the
    // source's ids.
    let owner = (!args.archive).then_some((0, 0));
    if source == "-" {
        if !dest_info.is_dir {
            bail!("destination \"{}:{dest}\" must be a directory", access.key);
        }
        let op = Operation::Extract {
            dir: dest_info.path.clone(),
            owner,
        };
        let run = access.spawn(&op, Stdio::inherit(), Stdio::null())?;
        run.finish(access, &dest_info.path)?;
        return Ok(0);
    }
    let source_abs = resolve_local_path(source)?;
    let (source_info, rebase) = copy_info_source_path(&source_abs, args.follow_link)?;
    let default_name = rebase.unwrap_or_else(|| archive_name(&source_info.path));
    let (dir, name) = prepare_archive_copy(&source_info, &default_name, &dest_info)?;
    let op = Operation::Extract {
        dir: dir.clone(),
        owner,
    };
    let mut run = access.spawn(&op, Stdio::piped(), Stdio::null())?;
    let stream = run.child.stdin.take().context("the copy helper's input")?;
    let mut writer = BufWriter::with_capacity(1 << 16, stream);
    let packed =
        // The helper sets the owners it extracts with; names do not matter.
        kiln_store::layer::pack_path(
            Path::new(&source_info.path),
            name.as_bytes(),
            &mut writer,
            None,
        )
            .map_err(anyhow::Error::from)
            .and_then(|stats| {
                writer.flush()?;
                Ok(stats)
            });
    // The helper sees the end of its input.
    drop(writer);
    let helper = run.finish(access, &dir);
    match (packed, helper) {
        (Ok(stats), Ok(())) => Ok(stats.bytes),
        // The helper stopped reading: its reason.
        (Err(e), Err(helper)) if broken_pipe(&e) => Err(helper),
        (Err(e), _) => Err(e.context(format!("archiving {}", source_info.path))),
        (Ok(_), Err(helper)) => Err(helper),
    }
}

/// moby's `CopyInfo`: a copy's source or destination.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CopyInfo {
    path: String,
    exists: bool,
    is_dir: bool,
}

/// moby's `PrepareArchiveCopy`: where to extract an archive of `source`
/// (whose top entry would be named `default_name`) so that it lands as
/// `dest` says, and the name its top entry must have there.
fn prepare_archive_copy(
    source: &CopyInfo,
    default_name: &str,
    dest: &CopyInfo,
) -> anyhow::Result<(String, String)> {
    let (dest_dir, dest_base) = split_path_dir_entry(&dest.path);
    if dest.exists && dest.is_dir {
        return Ok((dest.path.clone(), default_name.to_owned()));
    }
    if dest.exists && source.is_dir {
        bail!("cannot copy directory");
    }
    if !dest.exists && !source.is_dir && asserts_directory(&dest.path) {
        bail!("no such directory");
    }
    Ok((dest_dir, dest_base))
}

/// The name of the top entry of an archive of `path`: its base name, `.`
/// for `DIR/.` and for the root (whose entries Docker's archives name
/// without a prefix).
fn archive_name(path: &str) -> String {
    match split_path_dir_entry(path).1 {
        base if base == "/" => ".".to_owned(),
        base => base,
    }
}

/// Whether `path` ends with `/` or `/.` (names a directory).
fn asserts_directory(path: &str) -> bool {
    path.ends_with('/') || specifies_current_dir(path)
}

/// Whether the last component of `path` is `.`.
fn specifies_current_dir(path: &str) -> bool {
    path == "." || path.ends_with("/.")
}

/// moby's `SplitPathDirEntry`: the cleaned directory and base name of
/// `path`, a trailing `.` kept as the base (`/a/.` is `/a` and `.`).
fn split_path_dir_entry(path: &str) -> (String, String) {
    let mut cleaned = clean(path);
    if specifies_current_dir(path) {
        if cleaned != "/" {
            cleaned.push('/');
        }
        cleaned.push('.');
    }
    match cleaned.rsplit_once('/') {
        Some(("", base)) if !base.is_empty() => ("/".to_owned(), base.to_owned()),
        Some((dir, base)) if !base.is_empty() => (dir.to_owned(), base.to_owned()),
        // `/`: Go's Dir and Base of the root are both `/`.
        Some(_) => ("/".to_owned(), "/".to_owned()),
        None => (".".to_owned(), cleaned),
    }
}

/// Go's `filepath.Clean`, lexically.
fn clean(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            part => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// Docker's `resolveLocalPath`: absolute, with a trailing `/` or `/.` of
/// the original kept.
fn resolve_local_path(path: &str) -> anyhow::Result<String> {
    let joined = if path.starts_with('/') {
        path.to_owned()
    } else {
        let cwd = std::env::current_dir().context("reading the current directory")?;
        format!("{}/{path}", cwd.display())
    };
    let mut cleaned = clean(&joined);
    if specifies_current_dir(path) && !specifies_current_dir(&cleaned) {
        if !cleaned.ends_with('/') {
            cleaned.push('/');
        }
        cleaned.push('.');
    }
    if path.ends_with('/') && !cleaned.ends_with('/') {
        cleaned.push('/');
    }
    Ok(cleaned)
}

/// Docker CLI's `ValidateOutputPath`.
fn validate_output_path(path: &str) -> anyhow::Result<()> {
    let dir = split_parent(&clean(path));
    if !Path::new(&dir).exists() {
        bail!("invalid output path: directory {dir:?} does not exist");
    }
    if let Ok(meta) = fs::metadata(path)
        && (meta.file_type().is_block_device() || meta.file_type().is_char_device())
    {
        bail!("invalid output path: {path:?} must be a directory or a regular file: got a device");
    }
    Ok(())
}

/// Go's `filepath.Dir` of a cleaned path.
fn split_parent(cleaned: &str) -> String {
    match cleaned.rsplit_once('/') {
        Some(("", _)) => "/".to_owned(),
        Some((dir, _)) => dir.to_owned(),
        None => ".".to_owned(),
    }
}

/// moby's `CopyInfoDestinationPath` on the host: symlinks at `path`
/// followed (at most 10), a missing destination accepted when its parent
/// is a directory.
fn copy_info_destination_path(path: &str) -> anyhow::Result<CopyInfo> {
    let original = path;
    let mut path = path.to_owned();
    let mut hops = 0;
    loop {
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                hops += 1;
                if hops > 11 {
                    bail!("too many symlinks in {original}");
                }
                let target = fs::read_link(&path)
                    .with_context(|| format!("readlink {path}"))?
                    .to_string_lossy()
                    .into_owned();
                path = if target.starts_with('/') {
                    target
                } else {
                    clean(&format!("{}/{target}", split_path_dir_entry(&path).0))
                };
            }
            Ok(meta) => {
                return Ok(CopyInfo {
                    path,
                    exists: true,
                    is_dir: meta.is_dir(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let parent = split_path_dir_entry(&path).0;
                let meta = fs::metadata(&parent)
                    .map_err(|e| anyhow::anyhow!("stat {parent}: {}", os_text(&e)))?;
                if !meta.is_dir() {
                    bail!("not a directory");
                }
                return Ok(CopyInfo {
                    path,
                    exists: false,
                    is_dir: false,
                });
            }
            Err(e) => bail!("lstat {path}: {}", os_text(&e)),
        }
    }
}

/// moby's `CopyInfoSourcePath` on the host: the parent's symlinks
/// resolved (the path's own too with `-L`, or when it ends with `/`); the
/// name the archive's top entry takes if it differs from the resolved
/// path's base name.
fn copy_info_source_path(path: &str, follow: bool) -> anyhow::Result<(CopyInfo, Option<String>)> {
    let canonical = |p: &str| -> anyhow::Result<String> {
        fs::canonicalize(p)
            .map(|c| c.to_string_lossy().into_owned())
            .map_err(|e| anyhow::anyhow!("lstat {path}: {}", os_text(&e)))
    };
    let resolved = if follow || asserts_directory(path) {
        let mut resolved = canonical(path)?;
        if specifies_current_dir(path) {
            resolved.push_str(if resolved == "/" { "." } else { "/." });
        }
        resolved
    } else {
        let (dir, base) = split_path_dir_entry(path);
        let dir = canonical(&dir)?;
        if dir == "/" {
            format!("/{base}")
        } else {
            format!("{dir}/{base}")
        }
    };
    let meta = fs::symlink_metadata(&resolved)
        .map_err(|e| anyhow::anyhow!("lstat {resolved}: {}", os_text(&e)))?;
    let original_base = split_path_dir_entry(path).1;
    let rebase = (original_base != split_path_dir_entry(&resolved).1).then_some(original_base);
    Ok((
        CopyInfo {
            path: resolved,
            exists: true,
            is_dir: meta.is_dir(),
        },
        rebase,
    ))
}

/// An I/O error as Go prints it: the bare `strerror` text, lowercase
/// (`no such file or directory`).
fn os_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => {
            let text = nix::errno::Errno::from_raw(code).desc().to_owned();
            let mut chars = text.chars();
            chars.next().map_or(text.clone(), |first| {
                first.to_lowercase().chain(chars).collect()
            })
        }
        None => e.to_string(),
    }
}

/// How the helper reaches the container's root.
#[derive(Debug, Serialize, Deserialize)]
enum Reach {
    /// Join the mount namespace (and the user namespace, when it differs
    /// from ours) of the process whose pidfd is on [`PIDFD`].
    Running {
        /// Join its user namespace too.
        user_namespace: bool,
    },
    /// Mount the overlay of `layers` (base first) under `upper` at
    /// `merged` in a private mount namespace, and chroot into it.
    Stopped {
        layers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
        empty: PathBuf,
        merged: PathBuf,
        /// The container's bind mounts (`-v`): (host source, container
        /// target, read-only), mounted over the overlay as a start would.
        binds: Vec<(PathBuf, String, bool)>,
    },
}

/// What the helper does once inside.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Operation {
    /// Prints a [`Stat`] of `path` (its last symlink followed with
    /// `follow`, or when the path ends with `/`) as JSON on stdout.
    Stat { path: String, follow: bool },
    /// Writes a tar of `path` to stdout, its top entry named `name`.
    Archive {
        path: String,
        follow: bool,
        name: String,
    },
    /// Extracts the tar on stdin into directory `dir`.
    Extract {
        dir: String,
        owner: Option<(u32, u32)>,
    },
}

/// The helper's request, JSON in `argv[2]`.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    reach: Reach,
    operation: Operation,
}

/// What the helper found at a container path.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Stat {
    found: bool,
    /// The resolved container path.
    path: String,
    is_dir: bool,
    is_device: bool,
}

/// A container and how to reach its files.
struct Access<'a> {
    store: &'a Store,
    container: Container,
    /// The container as the user named it, for messages.
    key: &'a str,
    /// The running container's process.
    pidfd: Option<OwnedFd>,
    user_namespace: bool,
}

impl<'a> Access<'a> {
    fn new(store: &'a Store, mut container: Container, key: &'a str) -> anyhow::Result<Self> {
        let mut pidfd = None;
        let mut user_namespace = false;
        if container.is_running() {
            let (pid, start) = (container.state.pid, container.state.pid_start);
            pidfd = super::commands::pidfd(pid, start);
            if pidfd.is_none() {
                // Its process has just ended: stopped now, or between two
                // runs (a restart), when neither its namespace nor its
                // upper directory alone is the truth.
                container.refresh()?;
                if container.is_running() {
                    bail!(
                        "container {} is restarting: try again when it runs",
                        container.config.id
                    );
                }
            } else {
                let ns = |who: &str| fs::metadata(format!("/proc/{who}/ns/user")).map(|m| m.ino());
                user_namespace = ns(&pid.to_string()).ok() != ns("self").ok();
            }
        }
        Ok(Access {
            store,
            container,
            key,
            pidfd,
            user_namespace,
        })
    }

    /// `--read-only`: Docker refuses to copy into such a container.
    fn read_only(&self) -> bool {
        self.container
            .config
            .host_config
            .get("ReadonlyRootfs")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    }

    fn stat(&self, path: &str, follow: bool) -> anyhow::Result<Stat> {
        let op = Operation::Stat {
            path: path.to_owned(),
            follow,
        };
        let mut run = self.spawn(&op, Stdio::null(), Stdio::piped())?;
        let mut json = Vec::new();
        if let Some(mut out) = run.child.stdout.take() {
            out.read_to_end(&mut json)
                .context("reading the copy helper's answer")?;
        }
        run.finish(self, path)?;
        serde_json::from_slice(&json).context("parsing the copy helper's answer")
    }

    /// Starts the helper for `operation`.
    fn spawn(
        &self,
        operation: &Operation,
        stdin: Stdio,
        stdout: Stdio,
    ) -> anyhow::Result<HelperRun> {
        let mut scratch = None;
        let reach = if self.pidfd.is_some() {
            Reach::Running {
                user_namespace: self.user_namespace,
            }
        } else {
            let spec: kiln_runtime::RunSpec =
                serde_json::from_value(self.container.config.run_spec.clone())
                    .context("reading the container's run spec")?;
            // In this process's staging directory: the same file system as
            // the upper directory (overlayfs needs its work directory
            // there), and removed with the process if it is killed.
            let dir = tempfile::Builder::new()
                .prefix("cp-")
                .tempdir_in(self.store.tmp_dir())
                .context("creating the copy's scratch directory")?;
            for sub in ["work", "empty", "merged"] {
                let path = dir.path().join(sub);
                fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
            }
            // Absolute: the helper changes directory before it mounts.
            let absolute = |path: PathBuf| {
                fs::canonicalize(&path).with_context(|| format!("resolving {}", path.display()))
            };
            let scratch_dir = absolute(dir.path().to_path_buf())?;
            let binds = spec
                .mounts
                .iter()
                .filter_map(|m| match m {
                    // A volume's data directory is bound as the run binds it.
                    kiln_runtime::Mount::Bind {
                        source,
                        target,
                        read_only,
                    }
                    | kiln_runtime::Mount::Volume {
                        source,
                        target,
                        read_only,
                        ..
                    } => Some((source.clone(), target.clone(), *read_only)),
                    // Empty whenever the container is not running.
                    kiln_runtime::Mount::Tmpfs { .. } => None,
                })
                .collect();
            let reach = Reach::Stopped {
                binds,
                layers: spec.layers,
                upper: absolute(self.container.dir.join(kiln_store::containers::UPPER_DIR))?,
                work: scratch_dir.join("work"),
                empty: scratch_dir.join("empty"),
                merged: scratch_dir.join("merged"),
            };
            scratch = Some(dir);
            reach
        };
        let request = serde_json::to_string(&Request {
            reach,
            operation: operation.clone(),
        })
        .context("encoding the copy helper's request")?;
        let mut command = Command::new("/proc/self/exe");
        command.arg(CP_ARG).arg(request).env_clear();
        // What the helper must see of kiln's environment: the snapshotter
        // chosen, and rootless, the user's namespace holder.
        for name in [
            kiln_rootfs::mount::SNAPSHOTTER_ENV,
            "XDG_RUNTIME_DIR",
            crate::userns::holder::IDLE_ENV,
        ] {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        command.stdin(stdin).stdout(stdout).stderr(Stdio::piped());
        let raw = self.pidfd.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
        // SAFETY: prctl, dup2 and close are async-signal-safe; the pidfd
        // stays open in this process until the child has exec-ed.
        unsafe {
            command.pre_exec(move || {
                // A helper never outlives the kiln that waits for it.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(raw) = raw {
                    if libc::dup2(raw, PIDFD) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    if raw != PIDFD {
                        libc::close(raw);
                    }
                }
                Ok(())
            });
        }
        let child = command.spawn().context("starting the copy helper")?;
        Ok(HelperRun {
            child,
            _scratch: scratch,
        })
    }
}

/// A helper process and the scratch directory of its mount.
struct HelperRun {
    child: Child,
    _scratch: Option<tempfile::TempDir>,
}

impl HelperRun {
    /// Waits for the helper; its error, `path` not found named as Docker
    /// names it.
    fn finish(mut self, access: &Access<'_>, path: &str) -> anyhow::Result<()> {
        drop(self.child.stdin.take());
        drop(self.child.stdout.take());
        let mut message = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = err.read_to_string(&mut message);
        }
        let status = self.child.wait().context("waiting for the copy helper")?;
        match status.code() {
            Some(0) => Ok(()),
            Some(code) if code == i32::from(NOT_FOUND) => {
                bail!("Could not find the file {path} in container {}", access.key)
            }
            _ if !message.trim().is_empty() => bail!("{}", message.trim_end()),
            _ => bail!("the copy helper failed ({status})"),
        }
    }
}

/// Entry point of the helper: `kiln __kiln-cp REQUEST`; called before
/// anything else, while the process has one thread.
pub fn helper_main() -> ExitCode {
    match helper() {
        Ok(()) => ExitCode::SUCCESS,
        Err(HelperError::NotFound) => ExitCode::from(NOT_FOUND),
        Err(HelperError::Failed(message)) => {
            let _ = writeln!(std::io::stderr(), "{message}");
            ExitCode::FAILURE
        }
    }
}

enum HelperError {
    NotFound,
    Failed(String),
}

impl<E: std::fmt::Display> From<E> for HelperError {
    fn from(e: E) -> Self {
        HelperError::Failed(e.to_string())
    }
}

fn helper() -> Result<(), HelperError> {
    let request: OsString = std::env::args_os().nth(2).unwrap_or_default();
    let request: Request = serde_json::from_slice(request.as_bytes())
        .map_err(|e| format!("parsing the copy request: {e}"))?;
    let entered = enter(request.reach)?;
    let result = operate(request.operation, entered.upper.as_ref());
    entered.remove_stubs();
    result
}

/// Runs `operation` in the container's root (`/`); `upper` is the
/// stopped container's upper directory, synced after a copy in.
fn operate(operation: Operation, upper: Option<&OwnedFd>) -> Result<(), HelperError> {
    let root = Root::open("/").map_err(|e| format!("opening the container's root: {e}"))?;
    match operation {
        Operation::Stat { path, follow } => {
            let follow = follow || asserts_directory(&path);
            let stat = match resolve(&root, &path, follow)? {
                None => Stat::default(),
                Some((resolved, fd)) => {
                    let st = nix::sys::stat::fstat(fd.as_fd())
                        .map_err(|e| format!("inspecting {resolved}: {e}"))?;
                    let kind = st.st_mode & libc::S_IFMT;
                    Stat {
                        found: true,
                        path: resolved,
                        is_dir: kind == libc::S_IFDIR,
                        is_device: kind == libc::S_IFCHR || kind == libc::S_IFBLK,
                    }
                }
            };
            let json = serde_json::to_vec(&stat).map_err(|e| e.to_string())?;
            std::io::stdout().write_all(&json)?;
        }
        Operation::Archive { path, follow, name } => {
            let follow = follow || asserts_directory(&path);
            let (resolved, _fd) = resolve(&root, &path, follow)?.ok_or(HelperError::NotFound)?;
            let out = std::io::stdout().as_fd().try_clone_to_owned()?;
            let mut out = BufWriter::with_capacity(1 << 16, fs::File::from(out));
            // Owners named as the container names them (Docker's archive
            // does): its /etc/passwd and /etc/group read as text, in root.
            let names = kiln_rootfs::user::account_files(&root)
                .ok()
                .map(|(passwd, group)| {
                    let (users, groups) = kiln_rootfs::user::id_names(&passwd, &group);
                    std::sync::Arc::new(kiln_store::layer::OwnerNames { users, groups })
                });
            kiln_store::layer::pack_path(Path::new(&resolved), name.as_bytes(), &mut out, names)
                .map_err(|e| format!("archiving {path}: {e}"))?;
            out.flush()?;
        }
        Operation::Extract { dir, owner } => {
            let (resolved, fd) = resolve(&root, &dir, true)?.ok_or(HelperError::NotFound)?;
            let st = nix::sys::stat::fstat(fd.as_fd())
                .map_err(|e| format!("inspecting {resolved}: {e}"))?;
            if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                return Err(HelperError::Failed(
                    "extraction point is not a directory".to_owned(),
                ));
            }
            let input = std::io::stdin().lock();
            kiln_store::layer::unpack_copy(input, Path::new(&resolved), owner).map_err(
                |e| match e {
                    // Docker's message as it is.
                    kiln_store::layer::LayerError::OverwriteDirectory { .. }
                    | kiln_store::layer::LayerError::OverwriteNonDirectory { .. } => e.to_string(),
                    // The root file system is writable: a read-only volume
                    // (Docker checks before it extracts; same words).
                    kiln_store::layer::LayerError::Io { ref source, .. }
                        if source.raw_os_error() == Some(libc::EROFS) =>
                    {
                        "mounted volume is marked read-only".to_owned()
                    }
                    e => format!("extracting into {dir}: {e}"),
                },
            )?;
            if let Some(upper) = upper {
                // The overlay was mounted volatile: make the copy durable.
                // SAFETY: syncfs on a descriptor we own.
                unsafe {
                    libc::syncfs(upper.as_raw_fd());
                }
            }
        }
    }
    Ok(())
}

/// What [`enter`] set up.
#[derive(Default)]
struct Entered {
    /// A stopped container's upper directory.
    upper: Option<OwnedFd>,
    /// Mount points created for its binds: (parent, name, is a directory,
    /// container path), removed after the copy as a run removes them.
    stubs: Vec<(OwnedFd, OsString, bool, String)>,
}

impl Entered {
    /// Unmounts the binds on created mount points and removes those
    /// (still empty: what was copied there went to the bind's source).
    fn remove_stubs(self) {
        for (parent, name, is_dir, target) in self.stubs.into_iter().rev() {
            let _ = nix::mount::umount2(
                target.as_str(),
                nix::mount::MntFlags::MNT_DETACH | nix::mount::MntFlags::UMOUNT_NOFOLLOW,
            );
            let flag = if is_dir {
                nix::unistd::UnlinkatFlags::RemoveDir
            } else {
                let empty = nix::sys::stat::fstatat(
                    parent.as_fd(),
                    name.as_os_str(),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .is_ok_and(|st| st.st_size == 0 && st.st_mode & libc::S_IFMT == libc::S_IFREG);
                if !empty {
                    continue;
                }
                nix::unistd::UnlinkatFlags::NoRemoveDir
            };
            // A directory the copy wrote into (under the bind, so none)
            // stays.
            let _ = nix::unistd::unlinkat(parent.as_fd(), name.as_os_str(), flag);
        }
    }
}

/// Mounts host `source` on container path `target` of `root` (an overlay
/// not yet entered), read-only if asked; a missing mount point is made
/// and recorded in `stubs`. One whose parent is missing too is skipped:
/// no path of the container leads there.
fn bind_into(
    root: &Root,
    source: &Path,
    target: &str,
    read_only: bool,
    stubs: &mut Vec<(OwnedFd, OsString, bool, String)>,
) -> Result<(), String> {
    use nix::fcntl::OFlag;
    let fail =
        |e: &dyn std::fmt::Display| format!("bind-mounting {} on {target}: {e}", source.display());
    let from = nix::fcntl::open(
        source,
        OFlag::O_PATH | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| fail(&e))?;
    let is_dir = nix::sys::stat::fstat(from.as_fd())
        .map_err(|e| fail(&e))?
        .st_mode
        & libc::S_IFMT
        == libc::S_IFDIR;
    let to = match root.open_at(target, OFlag::O_PATH) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            let (parent, name) = match root.open_parent(target) {
                Ok(Some(found)) => found,
                Ok(None) => return Err(fail(&"the root is no mount point")),
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                    return Ok(());
                }
                Err(e) => return Err(fail(&e)),
            };
            let mode = nix::sys::stat::Mode::from_bits_truncate(0o755);
            if is_dir {
                nix::sys::stat::mkdirat(parent.as_fd(), name.as_os_str(), mode)
                    .map_err(|e| fail(&e))?;
            } else {
                nix::fcntl::openat(
                    parent.as_fd(),
                    name.as_os_str(),
                    OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW,
                    nix::sys::stat::Mode::from_bits_truncate(0o644),
                )
                .map_err(|e| fail(&e))?;
            }
            let fd = nix::fcntl::openat(
                parent.as_fd(),
                name.as_os_str(),
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| fail(&e))?;
            stubs.push((parent, name, is_dir, target.to_owned()));
            fd
        }
        Err(e) => return Err(fail(&e)),
    };
    kiln_rootfs::mount::bind(
        from.as_fd(),
        to.as_fd(),
        kiln_rootfs::mount::BindOptions {
            read_only,
            recursive: true,
        },
    )
    .map_err(|e| fail(&e))
}

/// Makes `/` the container's root.
fn enter(reach: Reach) -> Result<Entered, HelperError> {
    match reach {
        Reach::Running { user_namespace } => {
            // SAFETY: the parent put the container process's pidfd on
            // PIDFD; it is closed below.
            let pidfd = unsafe { BorrowedFd::borrow_raw(PIDFD) };
            let mut flags = nix::sched::CloneFlags::CLONE_NEWNS;
            if user_namespace {
                flags |= nix::sched::CloneFlags::CLONE_NEWUSER;
            }
            // Joining the mount namespace makes its root (the container's
            // pivoted root) this process's root and working directory.
            nix::sched::setns(pidfd, flags)
                .map_err(|e| format!("joining the container's mount namespace: {e}"))?;
            // SAFETY: closes the pidfd, which nothing uses any more.
            unsafe {
                libc::close(PIDFD);
            }
            nix::unistd::chdir("/").map_err(|e| format!("entering /: {e}"))?;
            // The container's files as Docker's daemon sees them: its root
            // file system with its volumes, without the kernel file systems
            // the runtime mounted for its processes. A copy of `/` must not
            // read /proc/kmsg (it would block) and no copy may write to the
            // kernel through /proc or /sys. Detached in a private copy of
            // the namespace, so nothing changes for the container.
            kiln_rootfs::mount::private_namespace()
                .map_err(|e| format!("copying the container's mount namespace: {e}"))?;
            for dir in ["/proc", "/sys", "/dev"] {
                // Absent when the container unmounted it (privileged).
                let _ = nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH);
            }
            Ok(Entered::default())
        }
        Reach::Stopped {
            layers,
            upper,
            work,
            empty,
            merged,
            binds,
        } => {
            // Rootless, the overlay can only be mounted in a user
            // namespace with the store's ids: the one kiln's commands
            // use (a running container's is joined instead, above).
            if !kiln_rootfs::userns::can_mount() {
                let store = upper
                    .ancestors()
                    .nth(3)
                    .unwrap_or(Path::new("/"))
                    .to_path_buf();
                crate::userns::enter_or_exit(&store)?;
            }
            // Read while /proc is still the host's: the copy runs chrooted.
            let _ = kiln_rootfs::userns::rootless();
            // One thread: unsharing the mount namespace is possible, and
            // the mount goes with this process.
            kiln_builder::mounts::enter_private_mount_namespace()?;
            // Layers relative to the snapshots' directory: before Linux
            // 6.8 every lower goes into one option string of a page.
            let common = layers
                .first()
                .and_then(|l| l.parent())
                .and_then(Path::parent)
                .filter(|dir| layers.iter().all(|l| l.starts_with(dir)));
            let lowers: Vec<PathBuf> = match common {
                Some(dir) => {
                    nix::unistd::chdir(dir)
                        .map_err(|e| format!("entering {}: {e}", dir.display()))?;
                    layers
                        .iter()
                        .filter_map(|l| l.strip_prefix(dir).ok().map(Path::to_path_buf))
                        .collect()
                }
                None => layers,
            };
            let mounted = kiln_builder::mounts::Mounted::overlay(
                &lowers,
                Some((&upper, &work)),
                &empty,
                &merged,
            )?;
            // A copy reaches the upper directory once the copy helper is
            // done with it: a child chroots and copies, this process waits
            // and records what it changed (it never returns).
            let mounted = if mounted.is_copy() {
                finish_copy_after_child(mounted)?
            } else {
                mounted
            };
            let upper_fd = nix::fcntl::open(
                &upper,
                nix::fcntl::OFlag::O_RDONLY
                    | nix::fcntl::OFlag::O_DIRECTORY
                    | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| format!("opening {}: {e}", upper.display()))?;
            // Volumes as a start mounts them, so that a copy reaches them.
            let root =
                Root::open(&merged).map_err(|e| format!("opening {}: {e}", merged.display()))?;
            let mut stubs = Vec::new();
            for (source, target, read_only) in &binds {
                bind_into(&root, source, target, *read_only, &mut stubs)?;
            }
            drop(root);
            nix::unistd::chroot(&merged)
                .map_err(|e| format!("entering {}: {e}", merged.display()))?;
            nix::unistd::chdir("/").map_err(|e| format!("entering /: {e}"))?;
            // Unmounted with the namespace when this process exits; its
            // path means nothing inside the chroot.
            std::mem::forget(mounted);
            Ok(Entered {
                upper: Some(upper_fd),
                stubs,
            })
        }
    }
}

/// Forks: the child gets `mounted` back and carries on; this process
/// waits for it, then unmounts (recording the copy's changes in the
/// upper directory) and exits with the child's status.
fn finish_copy_after_child(
    mounted: kiln_builder::mounts::Mounted,
) -> Result<kiln_builder::mounts::Mounted, HelperError> {
    // SAFETY: the helper has one thread (it unshared its mount namespace).
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => Ok(mounted),
        nix::unistd::ForkResult::Parent { child } => {
            let code = match nix::sys::wait::waitpid(child, None)
                .map_err(|e| format!("waiting for the copy: {e}"))?
            {
                nix::sys::wait::WaitStatus::Exited(_, code) => code,
                _ => 1,
            };
            if code == 0
                && let Err(e) = mounted.unmount()
            {
                let _ = writeln!(std::io::stderr(), "{e}");
                std::process::exit(1);
            }
            std::process::exit(code);
        }
    }
}

/// `path` resolved inside `root` (the last symlink followed with
/// `follow`): the resolved container path and a descriptor; `None` when
/// something on the way is missing.
fn resolve(root: &Root, path: &str, follow: bool) -> Result<Option<(String, OwnedFd)>, String> {
    let mut everything = |_: &str, _: bool| Ok(true);
    match root.resolve_filtered(path, follow, &mut everything) {
        Ok(Some((components, fd))) => Ok(Some((kiln_rootfs::root::display(&components), fd))),
        Ok(None) => Ok(None),
        Err(kiln_rootfs::PathError::Io { source, .. })
            if matches!(
                source.raw_os_error(),
                Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(format!("resolving {path}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(path: &str, exists: bool, is_dir: bool) -> CopyInfo {
        CopyInfo {
            path: path.to_owned(),
            exists,
            is_dir,
        }
    }

    #[test]
    fn split_path_dir_entry_keeps_a_trailing_dot() {
        let split = |p: &str| split_path_dir_entry(p);
        assert_eq!(split("/a/b"), ("/a".into(), "b".into()));
        assert_eq!(split("/a/b/"), ("/a".into(), "b".into()));
        assert_eq!(split("/a/b/."), ("/a/b".into(), ".".into()));
        assert_eq!(split("/a"), ("/".into(), "a".into()));
        assert_eq!(split("/"), ("/".into(), "/".into()));
        assert_eq!(split("a"), (".".into(), "a".into()));
        assert_eq!(split("a/../b"), (".".into(), "b".into()));
    }

    #[test]
    fn docker_path_rules() {
        let file = info("/src/f", true, false);
        let dir = info("/src/d", true, true);
        // Into an existing directory: unchanged names.
        assert_eq!(
            prepare_archive_copy(&file, "f", &info("/dst", true, true)).unwrap(),
            ("/dst".into(), "f".into())
        );
        // Onto an existing file, or to a new name: renamed.
        assert_eq!(
            prepare_archive_copy(&file, "f", &info("/dst/g", true, false)).unwrap(),
            ("/dst".into(), "g".into())
        );
        assert_eq!(
            prepare_archive_copy(&dir, "d", &info("/dst/new", false, false)).unwrap(),
            ("/dst".into(), "new".into())
        );
        assert_eq!(
            prepare_archive_copy(&file, "f", &info("/dst/new", false, false)).unwrap(),
            ("/dst".into(), "new".into())
        );
        let err =
            |s: &CopyInfo, d: &CopyInfo| prepare_archive_copy(s, "x", d).unwrap_err().to_string();
        assert_eq!(
            err(&dir, &info("/dst/file", true, false)),
            "cannot copy directory"
        );
        assert_eq!(
            err(&file, &info("/dst/new/", false, false)),
            "no such directory"
        );
    }

    #[test]
    fn split_cp_arg_as_docker() {
        assert_eq!(split_cp_arg("c:/a"), (Some("c"), "/a"));
        assert_eq!(split_cp_arg("/abs:x"), (None, "/abs:x"));
        assert_eq!(split_cp_arg("./f:x"), (None, "./f:x"));
        assert_eq!(split_cp_arg("file"), (None, "file"));
        assert_eq!(split_cp_arg("-"), (None, "-"));
    }

    #[test]
    fn clean_is_go_clean() {
        assert_eq!(clean("/a/./b/../c/"), "/a/c");
        assert_eq!(clean("/../a"), "/a");
        assert_eq!(clean("../a"), "../a");
        assert_eq!(clean(""), ".");
        assert_eq!(clean("/"), "/");
    }
}
