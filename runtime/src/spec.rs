//! What to run and how: the input of [`crate::run`] and its outcome.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::seccomp::Profile;

/// One container run: the filesystem, the process and its confinement.
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent switches of one run, as in an OCI spec"
)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// Lower directories (unpacked snapshots), base first; empty for scratch.
    pub layers: Vec<PathBuf>,
    /// An existing empty directory that becomes the overlay upper directory.
    pub upper: PathBuf,
    /// The command line (ENTRYPOINT + CMD); `argv[0]` is looked up in the
    /// container's PATH when it has no `/`.
    pub argv: Vec<String>,
    /// The final `K=V` environment.
    pub env: Vec<String>,
    /// Absolute working directory in the container, created when missing.
    pub cwd: String,
    /// USER spec, resolved against the container's passwd and group files.
    pub user: String,
    /// Hostname in the container's UTS namespace.
    pub hostname: String,
    /// Network namespace choice.
    pub network: Network,
    /// The seccomp filter of the process.
    pub seccomp: Seccomp,
    /// Full capabilities, writable `/proc` and `/sys` (BuildKit's
    /// `security.insecure`, Docker's `--privileged`); with
    /// [`Seccomp::Unconfined`] nothing confines root but the namespaces.
    pub privileged: bool,
    /// After a SIGTERM or SIGINT is passed on to the container, how long
    /// its processes have to exit before all of them are killed (Docker's
    /// stop timeout).
    pub stop_timeout: Duration,
    /// Extra mounts, applied in order.
    pub mounts: Vec<Mount>,
    /// Resource limits.
    pub limits: Limits,
    /// Collect stdout and stderr into the outcome instead of inheriting them.
    pub capture: bool,
    /// Run the process on a new pseudo-terminal.
    pub tty: bool,
    /// Keep stdin attached; otherwise stdin is `/dev/null`.
    pub interactive: bool,
    /// A small init (kiln's own) is PID 1 in front of the process: it
    /// reaps orphans, passes signals on and exits with the process's
    /// status (Docker's `--init`, and RUN steps). Without it the process
    /// itself is PID 1, as under Docker.
    pub init: bool,
    /// The root file system is mounted read-only (`--read-only`); mounts
    /// on it stay as they are.
    pub read_only_root: bool,
    /// Extra supplementary groups (`--group-add`): names resolved in the
    /// container's `/etc/group`, or numeric ids.
    pub group_add: Vec<String>,
}

/// Network namespace choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Network {
    /// A new network namespace with outbound access through a user-mode
    /// NAT (slirp4netns), as Docker's bridge gives: the host's loopback
    /// services are out of reach, DNS goes through the NAT's forwarder.
    Isolated,
    /// Share the host's network namespace.
    Host,
    /// A new network namespace with only `lo`, up.
    None,
}

/// The seccomp filter a container process runs under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Seccomp {
    /// Docker's default profile.
    Default,
    /// No filter (`--security-opt seccomp=unconfined`).
    Unconfined,
    /// A profile in Docker's JSON format (`--security-opt seccomp=FILE`).
    Profile(Box<Profile>),
}

/// An extra mount in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mount {
    /// A host file or directory bind-mounted at `target`. The source is
    /// a path of kiln's own (the builder mounts what it resolved inside an
    /// image's root there, from a descriptor) or one the user named (`kiln
    /// run -v`); the target is resolved inside the container's root.
    Bind {
        /// Host path; must exist.
        source: PathBuf,
        /// Absolute path in the container.
        target: String,
        /// Read-only (the bind is read-only from the moment it appears).
        read_only: bool,
    },
    /// A volume's data directory (kiln's own, under the store) at
    /// `target`, resolved inside the container's root. With `fill`, an
    /// empty volume first gets what the image has at `target`, with its
    /// owners, modes and times, as Docker fills a new volume.
    Volume {
        /// Host path of the volume's data directory.
        source: PathBuf,
        /// Absolute path in the container.
        target: String,
        /// Read-only.
        read_only: bool,
        /// Copy the image's content at `target` into an empty volume.
        fill: bool,
    },
    /// A fresh tmpfs at `target`.
    Tmpfs {
        /// Absolute path in the container.
        target: String,
        /// Size limit in bytes.
        size: Option<u64>,
        /// Permission bits of its root (1777 when `None`).
        mode: Option<u32>,
    },
}

/// Resource limits, enforced with cgroups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Memory limit in bytes (swap is not allowed on top).
    pub memory: Option<u64>,
    /// CPU quota in CPUs.
    pub cpus: Option<f64>,
    /// Maximum number of processes.
    pub pids: Option<u64>,
}

impl Limits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.memory.is_some() || self.cpus.is_some() || self.pids.is_some()
    }
}

/// How a run ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOutcome {
    /// Docker numbering: the exit code, 128+signal, 137 on OOM kill,
    /// 126 (not executable) or 127 (not found).
    pub exit_code: i32,
    /// The kernel's OOM killer killed a process of the container.
    pub oom_killed: bool,
    /// Captured stdout (empty unless `capture`).
    pub stdout: Vec<u8>,
    /// Captured stderr (empty unless `capture`).
    pub stderr: Vec<u8>,
}
