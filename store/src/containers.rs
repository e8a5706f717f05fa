//! Containers kept in the store: `containers/<id>/` holds `config.json`
//! (what to run, written once), `state.json` (status, pids, exit code,
//! times; replaced atomically by whoever changes it), the writable
//! `upper/` directory and the log. A container directory appears complete
//! (built in the staging directory, one rename) and disappears atomically
//! (renamed into the staging directory, then removed). The process that
//! keeps a container running is its monitor, not the store: nothing here
//! needs a daemon, and a state that a killed monitor left is recognised
//! by its recorded pid and start time.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{IoContext, StoreError};
use crate::store::{Store, read_document, remove_tree, to_json, write_atomic};

/// The store directory of containers.
pub const CONTAINERS_DIR: &str = "containers";
/// A container's configuration file.
pub const CONFIG_FILE: &str = "config.json";
/// A container's state file.
pub const STATE_FILE: &str = "state.json";
/// A container's writable layer.
pub const UPPER_DIR: &str = "upper";

/// What a container runs: fixed at creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// 64 hex digits.
    pub id: String,
    /// Unique among the store's containers (without Docker's `/`).
    pub name: String,
    /// RFC 3339 creation time.
    pub created: String,
    /// The image as the user named it.
    pub image: String,
    /// The image ID (`sha256:` of its config).
    pub image_id: String,
    /// The image's manifest digest: what keeps its blobs and snapshots
    /// from garbage collection while the container exists.
    pub manifest_digest: String,
    /// The process's program and arguments (Docker's `Path`, `Args`).
    pub path: String,
    /// Arguments after [`ContainerConfig::path`].
    pub args: Vec<String>,
    /// Docker's `Config` of the container.
    pub config: Value,
    /// Docker's `HostConfig` of the container.
    pub host_config: Value,
    /// The runtime's run spec (kiln's own shape).
    pub run_spec: Value,
}

/// Where a container is in its life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerState {
    /// `created`, `running`, `restarting`, `exited` or `dead`.
    pub status: String,
    /// The container's process (host pid), 0 when none.
    pub pid: i32,
    /// Its start time (clock ticks since boot), to tell a reused pid.
    pub pid_start: u64,
    /// The monitor process that keeps the container, 0 when none.
    pub monitor_pid: i32,
    /// Its start time.
    pub monitor_start: u64,
    /// The boot the pids belong to (`/proc/sys/kernel/random/boot_id`).
    pub boot_id: String,
    /// Exit code, Docker numbering.
    pub exit_code: i32,
    /// Why the container could not run, if it could not.
    pub error: String,
    /// The kernel's OOM killer ended it.
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    /// RFC 3339, or Go's zero time.
    pub started_at: String,
    /// RFC 3339, or Go's zero time.
    pub finished_at: String,
    /// How often the monitor restarted it.
    pub restart_count: u32,
    /// Stopped by `stop`, `kill` or `rm -f`: no restart policy applies.
    pub manually_stopped: bool,
    /// Docker's `State.Health`, when the image has a HEALTHCHECK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Value>,
    /// Docker's `NetworkSettings.Ports` while the monitor publishes ports
    /// (the host ports its proxy bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Value>,
}

/// Go's zero `time.Time`, as Docker shows times that never happened.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

impl ContainerState {
    /// The state of a container just created.
    pub fn created() -> Self {
        ContainerState {
            status: "created".to_owned(),
            pid: 0,
            pid_start: 0,
            monitor_pid: 0,
            monitor_start: 0,
            boot_id: String::new(),
            exit_code: 0,
            error: String::new(),
            oom_killed: false,
            started_at: ZERO_TIME.to_owned(),
            finished_at: ZERO_TIME.to_owned(),
            restart_count: 0,
            manually_stopped: false,
            health: None,
            ports: None,
        }
    }
}

/// Reads `config.json` of the container directory `dir`.
pub fn read_config(dir: &Path) -> Result<ContainerConfig, StoreError> {
    let path = dir.join(CONFIG_FILE);
    let bytes = read_document(&path)?;
    serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
        what: path.display().to_string(),
        source,
    })
}

/// Reads `state.json` of the container directory `dir`.
pub fn read_state(dir: &Path) -> Result<ContainerState, StoreError> {
    let path = dir.join(STATE_FILE);
    let bytes = read_document(&path)?;
    serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
        what: path.display().to_string(),
        source,
    })
}

/// Replaces `state.json` of `dir` atomically (temporary file in `dir`,
/// rename): a reader sees the old state or the new one. Needs no open
/// [`Store`], so a monitor never holds the store open. Not fsynced: it is
/// on the path of every start, and after a power cut the pids it holds
/// mean nothing anyway (the boot ID differs, so a running state reads as
/// exited); the file it replaces was complete, and ext4 flushes a file
/// renamed over another before the rename.
pub fn write_state(dir: &Path, state: &ContainerState) -> Result<(), StoreError> {
    crate::store::write_replace(dir, &dir.join(STATE_FILE), &to_json(state)?)?;
    crate::fault::point("container.state.written");
    Ok(())
}

/// Exit code shown for a container whose monitor is gone while the
/// container was running (the monitor was killed, or the host rebooted):
/// the monitor's death kills the container (SIGKILL, its parent-death
/// signal), so Docker's code for a SIGKILL.
pub const LOST_EXIT_CODE: i32 = 137;

/// The boot this process runs in.
pub fn boot_id() -> String {
    static BOOT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BOOT.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    })
    .clone()
}

/// Whether the process recorded as (`pid`, `start`) in boot `boot` still
/// runs (the same process, not another one that got its pid).
pub fn process_alive(pid: i32, start: u64, boot: &str) -> bool {
    let Ok(pid) = u32::try_from(pid) else {
        return false;
    };
    if pid == 0 || !(boot.is_empty() || boot == boot_id()) {
        return false;
    }
    // A zombie (killed, not yet reaped by whoever adopted it) is gone.
    let Ok(proc_stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some((_, rest)) = proc_stat.rsplit_once(')') else {
        return false;
    };
    let mut fields = rest.split_whitespace();
    let state = fields.next().unwrap_or("");
    // Field 22 (start time) is the 20th after the state (field 3).
    let started = fields.nth(18).and_then(|s| s.parse::<u64>().ok());
    !matches!(state, "Z" | "X") && started == Some(start)
}

/// The state of container `dir` as it really is: a state that says
/// running (or restarting) whose monitor is gone is the state of an exited
/// container, [`LOST_EXIT_CODE`], and is written back as such (once: later
/// readers see a plain exited state).
pub fn current_state(dir: &Path) -> Result<ContainerState, StoreError> {
    let mut state = read_state(dir)?;
    let active = matches!(state.status.as_str(), "running" | "restarting");
    if !active || process_alive(state.monitor_pid, state.monitor_start, &state.boot_id) {
        return Ok(state);
    }
    // Read again: the monitor may have recorded the exit just before it
    // ended, between the first read and the liveness check.
    state = read_state(dir)?;
    if !matches!(state.status.as_str(), "running" | "restarting") {
        return Ok(state);
    }
    "exited".clone_into(&mut state.status);
    state.exit_code = LOST_EXIT_CODE;
    "the container's monitor is gone (killed, or the host rebooted)".clone_into(&mut state.error);
    state.finished_at = jiff::Timestamp::now().to_string();
    state.pid = 0;
    state.monitor_pid = 0;
    // Best effort: the container directory may be being removed.
    let _ = write_state(dir, &state);
    // The monitor held the container's network leases: found dead, they
    // are freed as the state is (best effort, as the state write).
    if let Some(root) = dir.parent().and_then(Path::parent) {
        let _ = crate::networks::forget_dead(root);
    }
    Ok(state)
}

/// Whether `name` is a container ID as kiln makes them.
pub fn is_container_id(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The containers of a store, read without opening the store (no staging
/// directory, no lock, no sweep): for the commands that only read them or
/// signal their processes (`ps`, `exec`, `logs`, `wait`, `kill`), which
/// must be quick.
#[derive(Debug, Clone)]
pub struct Containers {
    dir: PathBuf,
}

impl Containers {
    /// The containers of the store at `root` (which may not exist yet).
    pub fn at(root: &Path) -> Containers {
        Containers {
            dir: root.join(CONTAINERS_DIR),
        }
    }

    /// The directory of container `id`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// The IDs of every container, sorted.
    pub fn ids(&self) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            // No store yet: no containers.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
            Err(e) => return Err(StoreError::io(&self.dir, e)),
        };
        for entry in entries {
            let entry = entry.at(&self.dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_container_id(&name) {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// The configurations of every container (those that cannot be read
    /// are skipped: `system check` reports them).
    pub fn configs(&self) -> Result<Vec<ContainerConfig>, StoreError> {
        Ok(self
            .ids()?
            .iter()
            .filter_map(|id| read_config(&self.dir(id)).ok())
            .collect())
    }
}

impl Store {
    /// The store's containers.
    pub fn containers(&self) -> Containers {
        Containers::at(self.root())
    }

    /// `containers/`.
    pub fn containers_dir(&self) -> PathBuf {
        self.root().join(CONTAINERS_DIR)
    }

    /// The directory of container `id`.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.containers().dir(id)
    }

    /// The IDs of every container, sorted.
    pub fn container_ids(&self) -> Result<Vec<String>, StoreError> {
        self.containers().ids()
    }

    /// The configurations of every container (those that cannot be read
    /// are skipped: `system check` reports them).
    pub fn container_configs(&self) -> Result<Vec<ContainerConfig>, StoreError> {
        self.containers().configs()
    }

    /// Adds a container: its directory (config, state, empty `upper/`) is
    /// made in the staging directory and renamed into place while
    /// `locks/containers.lock` is held, after checking that no container
    /// has its name.
    pub fn create_container(
        &self,
        config: &ContainerConfig,
        state: &ContainerState,
    ) -> Result<PathBuf, StoreError> {
        let staged = tempfile::Builder::new()
            .prefix("container-")
            .tempdir_in(self.tmp_dir())
            .at(self.tmp_dir())?;
        let dir = staged.path().join("c");
        fs::create_dir(&dir).at(&dir)?;
        fs::create_dir(dir.join(UPPER_DIR)).at(dir.join(UPPER_DIR))?;
        // Durable: a container survives a power cut whole or not at all.
        write_atomic(&dir, &dir.join(CONFIG_FILE), &to_json(config)?)?;
        write_atomic(&dir, &dir.join(STATE_FILE), &to_json(state)?)?;
        let lock_path = self.root().join("locks/containers.lock");
        let lock = fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .at(&lock_path)?;
        lock.lock().at(&lock_path)?;
        if let Some(other) = self
            .container_configs()?
            .into_iter()
            .find(|c| c.name == config.name)
        {
            return Err(StoreError::ContainerNameInUse {
                name: config.name.clone(),
                id: other.id,
            });
        }
        let target = self.container_dir(&config.id);
        fs::rename(&dir, &target).at(&target)?;
        crate::fault::point("container.created");
        crate::blobs::sync_dir(&self.containers_dir())?;
        Ok(target)
    }

    /// Removes container `id`'s directory: renamed out of `containers/`
    /// first (one step), then deleted. Its processes must be gone.
    pub fn remove_container(&self, id: &str) -> Result<(), StoreError> {
        let path = self.container_dir(id);
        let aside = self.tmp_dir().join(format!("removed-container-{id}"));
        match fs::rename(&path, &aside) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io(&path, e)),
        }
        crate::fault::point("container.removed");
        crate::blobs::sync_dir(&self.containers_dir())?;
        // Its addresses are free, and its peers forget its name.
        crate::networks::forget_container(self.root(), id)?;
        remove_tree(&aside)
    }

    /// The manifest digests of the images containers use (which garbage
    /// collection keeps, and `rmi` and `prune` refuse to remove).
    pub(crate) fn container_manifests(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .container_configs()?
            .into_iter()
            .map(|c| c.manifest_digest)
            .collect())
    }

    /// Problems of the containers' directories, for `system check`.
    pub(crate) fn check_containers(&self) -> Result<Vec<crate::maintenance::Problem>, StoreError> {
        use crate::maintenance::Problem;
        let mut problems = Vec::new();
        let dir = self.containers_dir();
        for entry in fs::read_dir(&dir).at(&dir)? {
            let entry = entry.at(&dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let subject = format!("container {name}");
            if !is_container_id(&name) {
                problems.push(Problem {
                    subject,
                    problem: "not a container directory (expected a 64-hex-digit ID)".to_owned(),
                });
                continue;
            }
            let path = entry.path();
            let config = match read_config(&path) {
                Ok(config) => config,
                Err(e) => {
                    problems.push(Problem {
                        subject,
                        problem: e.to_string(),
                    });
                    continue;
                }
            };
            if let Err(e) = read_state(&path) {
                problems.push(Problem {
                    subject: subject.clone(),
                    problem: e.to_string(),
                });
            }
            if !path.join(UPPER_DIR).is_dir() {
                problems.push(Problem {
                    subject: subject.clone(),
                    problem: "its writable layer (upper/) is missing".to_owned(),
                });
            }
            if config.id != name {
                problems.push(Problem {
                    subject: subject.clone(),
                    problem: format!("config.json names container {}", config.id),
                });
            }
            let mut marks = crate::maintenance::Marks::default();
            if let Err(e) = self.mark_descriptor(
                crate::spec::OCI_MANIFEST,
                &config.manifest_digest,
                &mut marks,
                0,
            ) {
                problems.push(Problem {
                    subject,
                    problem: format!("its image {}: {e}", config.image),
                });
            }
        }
        Ok(problems)
    }
}
