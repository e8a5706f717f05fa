//! Containers without a daemon: `kiln run -d`, `create`, `start`, `ps`,
//! `logs`, `stop`, `kill`, `restart`, `wait`, `rm`, `container prune`,
//! `exec` and `inspect` of a container. Every command reads the truth from
//! `containers/<id>/` in the store; a per-container monitor process (kiln
//! re-executed as `__kiln-monitor`, see [`monitor`]) runs the container,
//! keeps its log and records its exit.

pub mod attach;
pub mod commands;
pub mod commit;
pub mod cp;
pub mod create;
pub mod exec;
pub mod inspect;
pub mod logs;
pub mod monitor;
pub mod port;
pub mod ps;
pub mod publish;
pub mod top;

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use kiln_store::Store;
use kiln_store::containers::{self, ContainerConfig, ContainerState, Containers};

/// A container found by ID, ID prefix or name.
pub struct Container {
    /// Its directory.
    pub dir: PathBuf,
    /// Its configuration.
    pub config: ContainerConfig,
    /// Its state, the monitor's liveness checked.
    pub state: ContainerState,
}

impl Container {
    /// Reads container `id`.
    pub fn load(containers: &Containers, id: &str) -> anyhow::Result<Container> {
        let dir = containers.dir(id);
        let config = containers::read_config(&dir)?;
        // A state that cannot be read (a torn write after a power cut, a
        // hand edit) is Docker's "dead": listed, and removable.
        let state = containers::current_state(&dir).unwrap_or_else(|e| ContainerState {
            status: "dead".to_owned(),
            error: e.to_string(),
            ..ContainerState::created()
        });
        Ok(Container { dir, config, state })
    }

    /// The first 12 digits of the ID.
    pub fn short_id(&self) -> &str {
        self.config.id.get(..12).unwrap_or(&self.config.id)
    }

    /// Running or restarting (a monitor holds it).
    pub fn is_running(&self) -> bool {
        matches!(self.state.status.as_str(), "running" | "restarting")
    }

    /// Reads the state again.
    pub fn refresh(&mut self) -> anyhow::Result<()> {
        if !self.dir.is_dir() {
            // Removed meanwhile (an `--rm` container, another `rm`).
            bail!("No such container: {}", self.config.id);
        }
        self.state = containers::current_state(&self.dir)?;
        Ok(())
    }
}

/// Finds a container as Docker does: full ID, then name, then a unique ID
/// prefix. Docker's message when none matches.
pub fn find(store: &Store, key: &str) -> anyhow::Result<Container> {
    find_in(&store.containers(), key)
}

/// [`find`] without an open store (see [`Containers`]).
pub fn find_in(store: &Containers, key: &str) -> anyhow::Result<Container> {
    let key = key.strip_prefix('/').unwrap_or(key);
    if containers::is_container_id(key) && store.dir(key).is_dir() {
        return Container::load(store, key);
    }
    let configs = store.configs()?;
    if let Some(config) = configs.iter().find(|c| c.name == key) {
        return Container::load(store, &config.id);
    }
    let matches: Vec<&ContainerConfig> = if key.is_empty() {
        Vec::new()
    } else {
        configs.iter().filter(|c| c.id.starts_with(key)).collect()
    };
    match matches.as_slice() {
        [one] => Container::load(store, &one.id),
        [] => bail!("No such container: {key}"),
        _ => bail!("multiple IDs found with provided prefix: {key}"),
    }
}

/// The containers of the store at `root` (`--root`), read without opening
/// the store.
pub fn containers_at(root: Option<&std::path::Path>) -> Containers {
    Containers::at(&crate::commands::store_root(root))
}

/// The host pids of every process in `container`'s PID namespace (its
/// process and what it started): for `top` and `commit --pause`.
pub fn processes(container: &Container) -> anyhow::Result<std::collections::BTreeSet<i32>> {
    use std::os::unix::fs::MetadataExt as _;
    let namespace = |pid: &str| {
        std::fs::metadata(format!("/proc/{pid}/ns/pid"))
            .ok()
            .map(|m| m.ino())
    };
    let own = namespace("self");
    let Some(target) = (container.is_running() && container.state.pid > 0)
        .then(|| namespace(&container.state.pid.to_string()))
        .flatten()
        .filter(|n| Some(*n) != own)
    else {
        bail!("Container {} is not running", container.config.id);
    };
    let mut pids = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir("/proc").context("cannot read /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if namespace(&pid.to_string()) == Some(target) {
            pids.insert(pid);
        }
    }
    Ok(pids)
}

/// Whether `error` is Docker's "No such container".
pub fn is_not_found(error: &anyhow::Error) -> bool {
    error.to_string().starts_with("No such container: ")
}

/// A random 64-hex-digit ID.
pub fn random_id() -> String {
    let mut bytes = [0u8; 32];
    if let Ok(mut urandom) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut urandom, &mut bytes);
    }
    bytes.iter().fold(String::with_capacity(64), |mut id, b| {
        let _ = std::fmt::Write::write_fmt(&mut id, format_args!("{b:02x}"));
        id
    })
}

/// Docker's container name rule.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let name = name.strip_prefix('/').unwrap_or(name);
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
    let rest_ok = name.len() >= 2
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !first_ok || !rest_ok {
        bail!("Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed");
    }
    Ok(())
}

/// A Docker-like random name (`adjective_surname`), unique in `store`
/// (else the short ID).
pub fn random_name(store: &Store, id: &str) -> anyhow::Result<String> {
    const LEFT: [&str; 16] = [
        "admiring", "brave", "clever", "dazzling", "eager", "focused", "gifted", "happy", "jolly",
        "keen", "lucid", "modest", "nifty", "quirky", "serene", "vibrant",
    ];
    const RIGHT: [&str; 16] = [
        "archimedes",
        "babbage",
        "curie",
        "darwin",
        "euler",
        "fermat",
        "galileo",
        "hopper",
        "johnson",
        "kepler",
        "lovelace",
        "meitner",
        "noether",
        "pascal",
        "ritchie",
        "turing",
    ];
    let taken: std::collections::BTreeSet<String> = store
        .container_configs()?
        .into_iter()
        .map(|c| c.name)
        .collect();
    let bytes = id.as_bytes();
    for i in 0..8 {
        let a = usize::from(bytes.get(i * 2).copied().unwrap_or(0)) % LEFT.len();
        let b = usize::from(bytes.get(i * 2 + 1).copied().unwrap_or(0)) % RIGHT.len();
        let name = format!(
            "{}_{}",
            LEFT.get(a).copied().unwrap_or("kiln"),
            RIGHT.get(b).copied().unwrap_or("container")
        );
        if !taken.contains(&name) {
            return Ok(name);
        }
    }
    Ok(id.get(..12).unwrap_or(id).to_owned())
}

/// Docker's STATUS column: `Up 3 seconds`, `Exited (0) 2 seconds ago`,
/// `Created`, `Restarting (1) 1 second ago`.
pub fn status_text(state: &ContainerState) -> String {
    let ago = |time: &str| -> String {
        let elapsed = time
            .parse::<jiff::Timestamp>()
            .ok()
            .and_then(|t| {
                std::time::Duration::try_from(jiff::Timestamp::now().duration_since(t)).ok()
            })
            .unwrap_or_default();
        crate::units::human_duration(elapsed)
    };
    match state.status.as_str() {
        "running" => {
            let health = state
                .health
                .as_ref()
                .and_then(|h| h.get("Status"))
                .and_then(serde_json::Value::as_str)
                .map(|s| match s {
                    "starting" => " (health: starting)".to_owned(),
                    s => format!(" ({s})"),
                })
                .unwrap_or_default();
            format!("Up {}{health}", ago(&state.started_at))
        }
        "restarting" => format!(
            "Restarting ({}) {} ago",
            state.exit_code,
            ago(&state.finished_at)
        ),
        "exited" => format!(
            "Exited ({}) {} ago",
            state.exit_code,
            ago(&state.finished_at)
        ),
        "dead" => "Dead".to_owned(),
        _ => "Created".to_owned(),
    }
}

/// The marker file `stop`, `kill` and `rm -f` leave so that the monitor
/// applies no restart policy to the exit they cause.
pub const STOPPED_MARKER: &str = "stopped";
