//! Networks kept in the store: `networks/<id>/network.json` (the network,
//! written once) and `networks/<id>/leases/<address>` (one file per
//! address in use: who holds it and what peers need to reach it by name).
//! Every change happens under one flock (`networks/lock`), so address
//! allocation and the rewrite of the containers' `/etc/hosts` files see a
//! consistent set of leases; each file is written atomically (temporary
//! file, rename). A lease is held by a live process (the container's
//! monitor, or the foreground `kiln run`), recorded by pid, start time
//! and boot: [`Networks::reconcile`] frees the leases whose holder is
//! gone, as the container state of a killed monitor is recognised.
//!
//! Nothing here touches the host's interfaces or rules: the caller sets
//! them up from the records (kiln-runtime's `bridge` module).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::containers::{boot_id, process_alive};
use crate::error::{IoContext, StoreError};
use crate::store::{read_document, to_json, write_replace};

/// The store directory of networks.
pub const NETWORKS_DIR: &str = "networks";
/// A network's record.
pub const NETWORK_FILE: &str = "network.json";
/// A network's leases.
pub const LEASES_DIR: &str = "leases";
/// The default network of kept containers run as root (Docker's name).
pub const DEFAULT_NETWORK: &str = "bridge";
/// The default network's Linux bridge (as Docker's `docker0`).
pub const DEFAULT_BRIDGE: &str = "kiln0";
/// Names Docker reserves for its built-in networks.
pub const RESERVED_NAMES: [&str; 3] = ["bridge", "host", "none"];

/// One network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkRecord {
    /// Unique among the store's networks.
    pub name: String,
    /// 64 hex digits.
    pub id: String,
    /// RFC 3339 creation time.
    pub created: String,
    /// `bridge` (the only driver kiln has).
    pub driver: String,
    /// No route out (`--internal`).
    pub internal: bool,
    /// `-l` labels.
    pub labels: BTreeMap<String, String>,
    /// `A.B.C.D/N`.
    pub subnet: String,
    /// The bridge's address.
    pub gateway: String,
    /// The Linux bridge.
    pub bridge: String,
}

impl NetworkRecord {
    /// The subnet's address and prefix length.
    pub fn subnet(&self) -> Result<(Ipv4Addr, u8), StoreError> {
        parse_subnet(&self.subnet)
    }

    /// The gateway address.
    pub fn gateway(&self) -> Result<Ipv4Addr, StoreError> {
        self.gateway.parse().map_err(|_| {
            StoreError::InvalidNetwork(format!(
                "network {}: invalid gateway {:?}",
                self.name, self.gateway
            ))
        })
    }

    /// Whether containers on it find each other by name (user networks
    /// do; Docker's default `bridge` does not).
    pub fn resolves_names(&self) -> bool {
        self.name != DEFAULT_NETWORK
    }
}

/// `A.B.C.D/N` as an address (the network's first) and a prefix length.
pub fn parse_subnet(text: &str) -> Result<(Ipv4Addr, u8), StoreError> {
    let invalid =
        || StoreError::InvalidNetwork(format!("invalid subnet {text}: expected A.B.C.D/N (IPv4)"));
    let (address, prefix) = text.split_once('/').ok_or_else(invalid)?;
    let address: Ipv4Addr = address.parse().map_err(|_| invalid())?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or_else(invalid)?;
    let mask = mask(prefix);
    if u32::from(address) & !mask != 0 {
        return Err(StoreError::InvalidNetwork(format!(
            "invalid subnet {text}: it has host bits set (the network is {}/{prefix})",
            Ipv4Addr::from(u32::from(address) & mask)
        )));
    }
    if prefix > 30 {
        return Err(StoreError::InvalidNetwork(format!(
            "invalid subnet {text}: a /{prefix} leaves no address for a container"
        )));
    }
    Ok((address, prefix))
}

/// The netmask of a prefix length.
pub fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

/// Whether two subnets share an address.
pub fn overlaps(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    let prefix = a.1.min(b.1);
    let m = mask(prefix);
    u32::from(a.0) & m == u32::from(b.0) & m
}

/// The first free subnet of Docker's default pools (172.17-31.0.0/16,
/// then 192.168.0-240.0/20) that overlaps none of `used`.
pub fn free_subnet(used: &[(Ipv4Addr, u8)]) -> Option<(Ipv4Addr, u8)> {
    let sixteens = (17u8..=31).map(|b| (Ipv4Addr::new(172, b, 0, 0), 16));
    let twenties = (0u8..16).map(|c| (Ipv4Addr::new(192, 168, c * 16, 0), 20));
    sixteens
        .chain(twenties)
        .find(|candidate| !used.iter().any(|u| overlaps(*candidate, *u)))
}

/// One address in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Lease {
    /// The container (64 hex digits).
    pub container: String,
    /// Its name (peers resolve it).
    pub name: String,
    /// Its host name.
    pub hostname: String,
    /// `--network-alias`es on this network.
    pub aliases: Vec<String>,
    /// The address.
    pub ip_address: String,
    /// Its MAC address.
    pub mac_address: String,
    /// The host end of its veth pair.
    pub interface: String,
    /// The container's `/etc/hosts` on the host, rewritten in place.
    pub hosts_path: PathBuf,
    /// `--add-host` lines (`NAME:ADDRESS`).
    pub extra_hosts: Vec<String>,
    /// The process that holds the lease.
    pub owner_pid: i32,
    /// Its start time (clock ticks since boot).
    pub owner_start: u64,
    /// Its boot.
    pub boot_id: String,
    /// Published ports the kernel forwards to this address (DNAT rules
    /// that live exactly as long as the lease: see [`on_release`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forwards: Vec<PortForward>,
}

/// A published port forwarded to a lease's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortForward {
    /// `tcp` or `udp`.
    pub protocol: String,
    /// The host address (`0.0.0.0`: every one).
    pub host_ip: String,
    /// The host port.
    pub host_port: u16,
    /// The port in the container.
    pub container_port: u16,
}

/// What is told of freed leases that carry [`Lease::forwards`].
static RELEASED: OnceLock<fn(&Lease)> = OnceLock::new();

/// Registers what removes the host state that lives with a lease (the
/// binary's: the store touches no host rules). It is called, the network
/// lock held, for every freed lease that has forwards, wherever it is
/// freed: the holder's own release, `rm`, or a reconcile that found the
/// holder dead. Set once per process.
pub fn on_release(hook: fn(&Lease)) {
    let _ = RELEASED.set(hook);
}

impl Lease {
    /// The identity its host state (DNAT elements) is tagged with:
    /// container and holder, so a later holder of the same container
    /// is another owner.
    pub fn owner_tag(&self) -> String {
        format!("{} {}:{}", self.container, self.owner_pid, self.owner_start)
    }
    /// Whether the process holding it still runs.
    pub fn alive(&self) -> bool {
        process_alive(self.owner_pid, self.owner_start, &self.boot_id)
    }
}

/// The networks of a store, used without opening the store (a monitor
/// never holds it open).
#[derive(Debug, Clone)]
pub struct Networks {
    dir: PathBuf,
}

/// The network lock; the proof of holding it that changes ask for.
pub struct NetworkLock {
    _file: File,
}

impl Networks {
    /// The networks of the store at `root`.
    pub fn at(root: &Path) -> Networks {
        Networks {
            dir: root.join(NETWORKS_DIR),
        }
    }

    /// The `networks/` directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the network lock (blocking until other kiln processes are
    /// done with theirs).
    pub fn lock(&self) -> Result<NetworkLock, StoreError> {
        fs::create_dir_all(&self.dir).at(&self.dir)?;
        let path = self.dir.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .at(&path)?;
        loop {
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(NetworkLock { _file: file });
            }
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                return Err(StoreError::io(path, error));
            }
        }
    }

    /// Every network, by name.
    pub fn list(&self) -> Result<Vec<NetworkRecord>, StoreError> {
        let mut records = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(records),
            Err(e) => return Err(StoreError::io(&self.dir, e)),
        };
        for entry in entries {
            let entry = entry.at(&self.dir)?;
            let path = entry.path().join(NETWORK_FILE);
            if !path.is_file() {
                continue;
            }
            let bytes = read_document(&path)?;
            let record: NetworkRecord =
                serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
                    what: path.display().to_string(),
                    source,
                })?;
            records.push(record);
        }
        records.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(records)
    }

    /// The network named `key`, or whose ID is `key` or starts with it
    /// (Docker's lookup order).
    pub fn find(&self, key: &str) -> Result<NetworkRecord, StoreError> {
        let records = self.list()?;
        if let Some(found) = records.iter().find(|r| r.name == key || r.id == key) {
            return Ok(found.clone());
        }
        let mut prefixed = records
            .iter()
            .filter(|r| !key.is_empty() && r.id.starts_with(key));
        match (prefixed.next(), prefixed.next()) {
            (Some(found), None) => Ok(found.clone()),
            (Some(_), Some(_)) => Err(StoreError::AmbiguousId(key.to_owned())),
            _ => Err(StoreError::NoSuchNetwork(key.to_owned())),
        }
    }

    /// Records `record` after checking that its name is free and its
    /// subnet overlaps no other network's.
    pub fn create(&self, _lock: &NetworkLock, record: &NetworkRecord) -> Result<(), StoreError> {
        let subnet = record.subnet()?;
        for other in self.list()? {
            if other.name == record.name {
                return Err(StoreError::NetworkExists(record.name.clone()));
            }
            if overlaps(subnet, other.subnet()?) {
                return Err(StoreError::SubnetOverlap {
                    subnet: record.subnet.clone(),
                    other: other.name,
                    other_subnet: other.subnet,
                });
            }
        }
        let dir = self.dir.join(&record.id);
        fs::create_dir_all(dir.join(LEASES_DIR)).at(&dir)?;
        write_replace(&self.dir, &dir.join(NETWORK_FILE), &to_json(record)?)
    }

    /// Moves network `record` (which no lease holds) to another subnet:
    /// its recorded one was taken on the host meanwhile (another store's
    /// bridge) before its own bridge existed.
    pub fn move_subnet(
        &self,
        _lock: &NetworkLock,
        record: &NetworkRecord,
        subnet: (Ipv4Addr, u8),
    ) -> Result<NetworkRecord, StoreError> {
        let (address, prefix) = subnet;
        let moved = NetworkRecord {
            subnet: format!("{address}/{prefix}"),
            gateway: Ipv4Addr::from(u32::from(address) + 1).to_string(),
            ..record.clone()
        };
        let dir = self.dir.join(&record.id);
        write_replace(&self.dir, &dir.join(NETWORK_FILE), &to_json(&moved)?)?;
        Ok(moved)
    }

    /// Removes network `record`, refused while a live lease holds one of
    /// its addresses (dead ones are freed first).
    pub fn remove(&self, lock: &NetworkLock, record: &NetworkRecord) -> Result<(), StoreError> {
        self.reconcile(lock)?;
        if !self.leases(&record.id)?.is_empty() {
            return Err(StoreError::NetworkInUse {
                name: record.name.clone(),
                id: record.id.clone(),
            });
        }
        let dir = self.dir.join(&record.id);
        // The record goes first: a half-removed directory is no network.
        let file = dir.join(NETWORK_FILE);
        fs::remove_file(&file).at(&file)?;
        fs::remove_dir_all(&dir).at(&dir)
    }

    /// The leases of network `id`, by address.
    pub fn leases(&self, id: &str) -> Result<Vec<Lease>, StoreError> {
        let dir = self.dir.join(id).join(LEASES_DIR);
        let mut leases = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(leases),
            Err(e) => return Err(StoreError::io(&dir, e)),
        };
        for entry in entries {
            let path = entry.at(&dir)?.path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            let bytes = read_document(&path)?;
            let lease: Lease =
                serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
                    what: path.display().to_string(),
                    source,
                })?;
            leases.push(lease);
        }
        leases.sort_by_key(|l| l.ip_address.parse::<Ipv4Addr>().map_or(0, u32::from));
        Ok(leases)
    }

    /// Leases an address of `network` for `lease` (its `ip_address` is
    /// filled in): `requested` if given and free, else the lowest free
    /// one. Dead leases are freed first.
    pub fn allocate(
        &self,
        lock: &NetworkLock,
        network: &NetworkRecord,
        mut lease: Lease,
        requested: Option<Ipv4Addr>,
    ) -> Result<Lease, StoreError> {
        self.reconcile(lock)?;
        let (subnet, prefix) = network.subnet()?;
        let gateway = network.gateway()?;
        let taken: Vec<String> = self
            .leases(&network.id)?
            .into_iter()
            .map(|l| l.ip_address)
            .collect();
        let first = u32::from(subnet) + 1;
        let last = (u32::from(subnet) | !mask(prefix)).saturating_sub(1);
        let address = if let Some(wanted) = requested {
            let value = u32::from(wanted);
            if value < first || value > last || wanted == gateway {
                return Err(StoreError::InvalidNetwork(format!(
                    "invalid address {wanted} for network {}: not a host address of {} other than the gateway",
                    network.name, network.subnet
                )));
            }
            if taken.contains(&wanted.to_string()) {
                return Err(StoreError::AddressInUse(wanted.to_string()));
            }
            wanted
        } else {
            (first..=last)
                .map(Ipv4Addr::from)
                .find(|a| *a != gateway && !taken.contains(&a.to_string()))
                .ok_or_else(|| StoreError::AddressesExhausted {
                    name: network.name.clone(),
                    id: network.id.clone(),
                })?
        };
        lease.ip_address = address.to_string();
        // Docker's: 02:42 and the address's four bytes.
        let [a, b, c, d] = address.octets();
        lease.mac_address = format!("02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x}");
        let dir = self.dir.join(&network.id).join(LEASES_DIR);
        fs::create_dir_all(&dir).at(&dir)?;
        write_replace(&dir, &dir.join(&lease.ip_address), &to_json(&lease)?)?;
        Ok(lease)
    }

    /// Rewrites `lease` (held, of network `id`) in place.
    pub fn update(&self, _lock: &NetworkLock, id: &str, lease: &Lease) -> Result<(), StoreError> {
        let dir = self.dir.join(id).join(LEASES_DIR);
        write_replace(&dir, &dir.join(&lease.ip_address), &to_json(lease)?)
    }

    /// Frees address `address` of network `id` (and what lives with its
    /// lease, through [`on_release`]).
    pub fn release(&self, _lock: &NetworkLock, id: &str, address: &str) -> Result<(), StoreError> {
        let path = self.dir.join(id).join(LEASES_DIR).join(address);
        let lease = read_document(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Lease>(&bytes).ok());
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(StoreError::io(path, e));
            }
            _ => {}
        }
        if let (Some(lease), Some(hook)) = (lease, RELEASED.get())
            && !lease.forwards.is_empty()
        {
            hook(&lease);
        }
        Ok(())
    }

    /// Frees every lease of container `container` (it is being removed);
    /// returns the leases freed with their networks' IDs.
    pub fn release_container(
        &self,
        lock: &NetworkLock,
        container: &str,
    ) -> Result<Vec<(String, Lease)>, StoreError> {
        self.release_where(lock, |lease| lease.container == container)
    }

    /// Frees the leases whose holder is gone; returns them with their
    /// networks' IDs (their peers' hosts files need a rewrite).
    pub fn reconcile(&self, lock: &NetworkLock) -> Result<Vec<(String, Lease)>, StoreError> {
        self.release_where(lock, |lease| !lease.alive())
    }

    fn release_where(
        &self,
        lock: &NetworkLock,
        dead: impl Fn(&Lease) -> bool,
    ) -> Result<Vec<(String, Lease)>, StoreError> {
        let mut freed = Vec::new();
        for network in self.list()? {
            for lease in self.leases(&network.id)? {
                if dead(&lease) {
                    self.release(lock, &network.id, &lease.ip_address)?;
                    freed.push((network.id.clone(), lease));
                }
            }
        }
        Ok(freed)
    }

    /// Rewrites, in place (a bind mount pins the inode), the `/etc/hosts`
    /// of every container with a lease on one of `networks` (IDs), from
    /// the current leases; files that are gone are skipped.
    pub fn refresh_hosts(
        &self,
        _lock: &NetworkLock,
        networks: &[String],
    ) -> Result<(), StoreError> {
        let all = self.list()?;
        let mut by_network: Vec<(NetworkRecord, Vec<Lease>)> = Vec::new();
        for network in all {
            let leases = self.leases(&network.id)?;
            by_network.push((network, leases));
        }
        let mut done = std::collections::BTreeSet::new();
        for (network, leases) in &by_network {
            if !networks.contains(&network.id) {
                continue;
            }
            for lease in leases {
                if !done.insert(lease.container.clone()) {
                    continue;
                }
                let text = hosts_file(&lease.container, &by_network);
                rewrite_in_place(&lease.hosts_path, &text);
            }
        }
        Ok(())
    }

    /// The `/etc/hosts` of container `container` from the current leases.
    pub fn hosts_for(&self, _lock: &NetworkLock, container: &str) -> Result<String, StoreError> {
        let mut by_network = Vec::new();
        for network in self.list()? {
            let leases = self.leases(&network.id)?;
            by_network.push((network, leases));
        }
        Ok(hosts_file(container, &by_network))
    }
}

/// Frees the leases of container `id` of the store at `root` (being
/// removed) and rewrites its peers' hosts files.
pub fn forget_container(root: &Path, id: &str) -> Result<(), StoreError> {
    let networks = Networks::at(root);
    if !networks.dir().is_dir() {
        return Ok(());
    }
    let lock = networks.lock()?;
    let mut freed = networks.release_container(&lock, id)?;
    freed.extend(networks.reconcile(&lock)?);
    let ids: Vec<String> = freed.into_iter().map(|(net, _)| net).collect();
    networks.refresh_hosts(&lock, &ids)
}

/// Frees the leases whose holder is gone, in the store at `root`, and
/// rewrites the hosts files of the containers that shared their networks.
pub fn forget_dead(root: &Path) -> Result<(), StoreError> {
    let networks = Networks::at(root);
    if !networks.dir().is_dir() {
        return Ok(());
    }
    let lock = networks.lock()?;
    let ids: Vec<String> = networks
        .reconcile(&lock)?
        .into_iter()
        .map(|(net, _)| net)
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    networks.refresh_hosts(&lock, &ids)
}

/// Problems of `networks/` of the store at `root`, for `system check`:
/// entries that are no network, records or leases that do not parse.
pub fn check(root: &Path) -> Result<Vec<crate::maintenance::Problem>, StoreError> {
    use crate::maintenance::Problem;
    let networks = Networks::at(root);
    let mut problems = Vec::new();
    let Ok(entries) = fs::read_dir(networks.dir()) else {
        return Ok(problems);
    };
    for entry in entries {
        let entry = entry.at(networks.dir())?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "lock" {
            continue;
        }
        let subject = format!("network {name}");
        let record = entry.path().join(NETWORK_FILE);
        let parsed = read_document(&record).and_then(|bytes| {
            serde_json::from_slice::<NetworkRecord>(&bytes).map_err(|source| StoreError::Json {
                what: record.display().to_string(),
                source,
            })
        });
        match parsed {
            Ok(network) if network.id == name => {}
            Ok(_) => problems.push(Problem {
                subject,
                problem: "its network.json has another ID".to_owned(),
            }),
            Err(e) => {
                problems.push(Problem {
                    subject,
                    problem: format!("not a network (expected network.json): {e}"),
                });
                continue;
            }
        }
        if let Err(e) = networks.leases(&name) {
            problems.push(Problem {
                subject: format!("leases of network {name}"),
                problem: e.to_string(),
            });
        }
    }
    Ok(problems)
}

/// Truncates and writes `path` with one write (best effort: a container
/// may be going away).
fn rewrite_in_place(path: &Path, text: &str) {
    if let Ok(mut file) = fs::OpenOptions::new().write(true).truncate(true).open(path) {
        let _ = file.write_all(text.as_bytes());
    }
}

/// The `--add-host` address that stands for the host (Docker's).
pub const HOST_GATEWAY: &str = "host-gateway";

/// Docker's `/etc/hosts` of a container on user networks: localhost, the
/// container's own addresses with its host name, `--add-host` entries,
/// then every other container on the networks it shares, by name, short
/// ID and aliases (on the default `bridge` network no peer is listed, as
/// Docker resolves no names there).
pub fn hosts_file(container: &str, by_network: &[(NetworkRecord, Vec<Lease>)]) -> String {
    let mut text = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    let mut extra = Vec::new();
    let mut gateway = None;
    for (network, leases) in by_network {
        for own in leases.iter().filter(|l| l.container == container) {
            let _ = writeln!(text, "{}\t{}", own.ip_address, own.hostname);
            extra.clone_from(&own.extra_hosts);
            gateway.get_or_insert(network.gateway.as_str());
        }
    }
    for entry in &extra {
        if let Some((name, address)) = entry.split_once(':') {
            // Docker's special value: the host, as the container's first
            // network reaches it (its bridge's address).
            let address = match (address, gateway) {
                (HOST_GATEWAY, Some(gateway)) => gateway,
                _ => address,
            };
            let _ = writeln!(text, "{address}\t{name}");
        }
    }
    for (network, leases) in by_network {
        if !network.resolves_names() || !leases.iter().any(|l| l.container == container) {
            continue;
        }
        for peer in leases.iter().filter(|l| l.container != container) {
            let short: String = peer.container.chars().take(12).collect();
            let mut names = vec![peer.name.clone(), short];
            for alias in &peer.aliases {
                if !names.contains(alias) {
                    names.push(alias.clone());
                }
            }
            let _ = writeln!(text, "{}\t{}", peer.ip_address, names.join(" "));
        }
    }
    text
}

/// A new lease held by this process (the address is filled in by
/// [`Networks::allocate`]).
pub fn own_lease(container: &str, name: &str, hostname: &str) -> Lease {
    let me = crate::temp::Owner::of(std::process::id());
    Lease {
        container: container.to_owned(),
        name: name.to_owned(),
        hostname: hostname.to_owned(),
        aliases: Vec::new(),
        ip_address: String::new(),
        mac_address: String::new(),
        interface: String::new(),
        hosts_path: PathBuf::new(),
        extra_hosts: Vec::new(),
        owner_pid: me.as_ref().map_or(0, |o| i32::try_from(o.pid).unwrap_or(0)),
        owner_start: me.map_or(0, |o| o.start),
        boot_id: boot_id(),
        forwards: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_overlap() {
        assert_eq!(
            parse_subnet("172.18.0.0/16").ok(),
            Some((Ipv4Addr::new(172, 18, 0, 0), 16))
        );
        assert!(parse_subnet("172.18.0.1/16").is_err());
        assert!(parse_subnet("10.0.0.0/31").is_err());
        assert!(parse_subnet("nope").is_err());
        let a = (Ipv4Addr::new(10, 0, 0, 0), 8);
        let b = (Ipv4Addr::new(10, 1, 0, 0), 16);
        let c = (Ipv4Addr::new(11, 0, 0, 0), 8);
        assert!(overlaps(a, b) && overlaps(b, a) && !overlaps(a, c));
    }

    fn record(name: &str, id: &str) -> NetworkRecord {
        NetworkRecord {
            name: name.to_owned(),
            id: id.to_owned(),
            created: String::new(),
            driver: "bridge".to_owned(),
            internal: false,
            labels: BTreeMap::new(),
            subnet: "10.1.0.0/24".to_owned(),
            gateway: "10.1.0.1".to_owned(),
            bridge: "kiln-test".to_owned(),
        }
    }

    fn lease(container: &str, name: &str, ip: &str, aliases: &[&str]) -> Lease {
        Lease {
            container: container.to_owned(),
            name: name.to_owned(),
            hostname: format!("{name}-host"),
            aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
            ip_address: ip.to_owned(),
            mac_address: String::new(),
            interface: String::new(),
            hosts_path: PathBuf::new(),
            extra_hosts: vec!["db.local:10.9.9.9".to_owned()],
            owner_pid: 0,
            owner_start: 0,
            boot_id: String::new(),
            forwards: Vec::new(),
        }
    }

    #[test]
    fn hosts_list_peers_of_shared_user_networks_only() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let c = "c".repeat(64);
        let by_network = vec![
            (
                record("front", "1"),
                vec![
                    lease(&a, "web", "10.1.0.2", &["www"]),
                    lease(&b, "client", "10.1.0.3", &[]),
                ],
            ),
            (record("back", "2"), vec![lease(&c, "db", "10.2.0.2", &[])]),
            (
                record(DEFAULT_NETWORK, "3"),
                vec![
                    lease(&b, "client", "10.3.0.2", &[]),
                    lease(&c, "db", "10.3.0.3", &[]),
                ],
            ),
        ];
        let text = hosts_file(&b, &by_network);
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"), "{text}");
        assert!(text.contains("10.1.0.3\tclient-host\n"), "{text}");
        assert!(text.contains("10.9.9.9\tdb.local\n"), "{text}");
        assert!(text.contains("10.1.0.2\tweb aaaaaaaaaaaa www\n"), "{text}");
        // Not the container of another network, nor peers on `bridge`.
        assert!(!text.contains("\tdb "), "{text}");
        assert!(!text.contains("10.3.0.3"), "{text}");
    }

    #[test]
    fn system_check_names_what_is_no_network() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let networks = dir.path().join(NETWORKS_DIR);
        fs::create_dir_all(networks.join("junk")).unwrap_or_else(|e| panic!("{e}"));
        let problems = check(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].subject, "network junk");
        assert!(
            problems[0].problem.starts_with("not a network"),
            "{}",
            problems[0].problem
        );
    }

    #[test]
    fn free_subnet_skips_used_ranges() {
        let used = [
            (Ipv4Addr::new(172, 17, 0, 0), 16),
            (Ipv4Addr::new(172, 16, 0, 0), 12),
        ];
        assert_eq!(
            free_subnet(&used[..1]),
            Some((Ipv4Addr::new(172, 18, 0, 0), 16))
        );
        assert_eq!(
            free_subnet(&used),
            Some((Ipv4Addr::new(192, 168, 0, 0), 20))
        );
    }
}
