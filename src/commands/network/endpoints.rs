//! A container's place on bridge networks: the endpoints it asks for
//! (`--network`, `--network-alias`, `--ip`, `kiln network connect`), and
//! their setup around a run: address leases from the store's IPAM, the
//! network namespace with a veth per network, the `/etc` files, and the
//! peers' `/etc/hosts` rewritten (see docs/architecture.md, "Networks").

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, bail};
use kiln_runtime::bridge::{self, BridgeNetwork, Interface};
use kiln_runtime::ports::{Protocol, PublishedPort};
use kiln_store::networks::{
    self, DEFAULT_BRIDGE, DEFAULT_NETWORK, Lease, NetworkLock, NetworkRecord, Networks, PortForward,
};
use serde::{Deserialize, Serialize};

/// A container's file listing the networks it joins, in order (the first
/// carries the default route); replaced atomically by `connect` and
/// `disconnect`.
pub const ENDPOINTS_FILE: &str = "endpoints.json";

/// One network a container asks to join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointRequest {
    /// The network's name as given (resolved at each start).
    pub network: String,
    /// `--network-alias`es.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `--ip`.
    #[serde(default, rename = "IPv4Address")]
    pub ipv4_address: Option<String>,
}

/// Who a container is, for its leases and `/etc` files.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// The container ID.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its host name.
    pub hostname: String,
    /// `--add-host` entries (`NAME:ADDRESS`).
    pub extra_hosts: Vec<String>,
    /// `--dns` servers.
    pub dns: Vec<String>,
    /// The host ports its proxy holds: forwarded by DNAT to its address
    /// on its first network too (see [`forwards_of`]).
    pub ports: Vec<PublishedPort>,
}

/// The environment variable that keeps published ports on the userspace
/// proxy alone (no DNAT rules), for measurement or a host whose nftables
/// cannot NAT.
pub const PROXY_ONLY_ENV: &str = "KILN_USERLAND_PROXY_ONLY";

/// Whether published ports may get DNAT rules: not with
/// [`PROXY_ONLY_ENV`] set (to anything but `0` or empty).
pub fn kernel_forwarding_wanted() -> bool {
    std::env::var(PROXY_ONLY_ENV).map_or(true, |v| v.is_empty() || v == "0")
}

/// The ports of `ports` the kernel forwards: those on IPv4 host addresses
/// other than loopback (the proxy alone serves 127.0.0.1 and IPv6).
pub fn forwards_of(ports: &[PublishedPort]) -> Vec<PortForward> {
    ports
        .iter()
        .filter(|p| p.host.is_ipv4() && !p.host.ip().is_loopback())
        .map(|p| PortForward {
            protocol: p.protocol.to_string(),
            host_ip: p.host.ip().to_string(),
            host_port: p.host.port(),
            container_port: p.container_port,
        })
        .collect()
}

/// Set once adding DNAT rules failed in this process (nftables without
/// NAT support, say): later starts go straight to the proxy.
static DNAT_FAILED: AtomicBool = AtomicBool::new(false);

/// The kernel's view of a lease's forwards.
fn bridge_forwards(lease: &Lease) -> Vec<bridge::Forward> {
    let Ok(container) = lease.ip_address.parse::<Ipv4Addr>() else {
        return Vec::new();
    };
    lease
        .forwards
        .iter()
        .filter_map(|f| {
            Some(bridge::Forward {
                protocol: match f.protocol.as_str() {
                    "tcp" => Protocol::Tcp,
                    "udp" => Protocol::Udp,
                    _ => return None,
                },
                host_ip: f.host_ip.parse().ok()?,
                host_port: f.host_port,
                container,
                container_port: f.container_port,
            })
        })
        .collect()
}

/// Whether the holder named in a DNAT element's comment (a
/// [`Lease::owner_tag`]) is gone.
fn owner_gone(comment: &str) -> bool {
    let Some((_, owner)) = comment.split_once(' ') else {
        return false;
    };
    let Some((pid, start)) = owner.split_once(':') else {
        return false;
    };
    match (pid.parse(), start.parse()) {
        (Ok(pid), Ok(start)) => !kiln_store::containers::process_alive(pid, start, ""),
        _ => false,
    }
}

/// The store's [`networks::on_release`] hook: a freed lease's DNAT
/// elements go (with any other whose holder died).
pub fn forwards_released(lease: &Lease) {
    let tag = lease.owner_tag();
    if let Err(e) = bridge::remove_forwards(&|comment, _| comment == tag || owner_gone(comment)) {
        log::warn!("published ports of container {}: {e}", lease.container);
    }
}

/// Removes the DNAT elements that point into `record`'s subnet (its
/// network is going; no lease holds an address of it).
pub fn remove_network_forwards(record: &NetworkRecord) -> anyhow::Result<()> {
    let (subnet, prefix) = record.subnet()?;
    let mask = networks::mask(prefix);
    bridge::remove_forwards(&|comment, address| {
        owner_gone(comment) || address.is_some_and(|a| u32::from(a) & mask == u32::from(subnet))
    })
    .map_err(anyhow::Error::msg)
}

/// Reads a container's endpoints (none when the file is missing).
pub fn read_endpoints(dir: &Path) -> anyhow::Result<Vec<EndpointRequest>> {
    let path = dir.join(ENDPOINTS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("cannot read {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Replaces a container's endpoints atomically.
pub fn write_endpoints(dir: &Path, endpoints: &[EndpointRequest]) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec_pretty(endpoints)?;
    kiln_store::store::write_replace(dir, &dir.join(ENDPOINTS_FILE), &bytes)
        .with_context(|| format!("cannot write {}", dir.join(ENDPOINTS_FILE).display()))
}

/// Checks `--add-host` entries (`HOST:IP`), with the Docker CLI's words.
pub fn check_add_hosts(entries: &[String]) -> anyhow::Result<()> {
    for entry in entries {
        let valid = entry.split_once(':').is_some_and(|(host, ip)| {
            !host.is_empty()
                && (ip == networks::HOST_GATEWAY || ip.parse::<std::net::IpAddr>().is_ok())
        });
        if !valid {
            bail!("invalid argument \"{entry}\" for \"--add-host\" flag: expected HOST:IP");
        }
    }
    Ok(())
}

/// Whether this process may set up bridge networks (they need root).
pub fn check_root(network: &str) -> anyhow::Result<()> {
    // Root of kiln's own user namespace (rootless kiln) is not the host's.
    if kiln_rootfs::userns::rootless() {
        bail!(
            "network {network} not found: bridge networks need root; without root kiln has default (slirp4netns), host and none"
        );
    }
    Ok(())
}

/// The IPv4 routes of the host (destination, prefix length) other than
/// the default route and those of the interfaces in `own` (this store's
/// bridges, whose subnets are known): the ranges a new network's subnet
/// must avoid (other stores' bridges included).
pub fn host_routes(own: &[&str]) -> Vec<(Ipv4Addr, u8)> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let iface = fields.first()?;
            if own.contains(iface) {
                return None;
            }
            let dest = u32::from_str_radix(fields.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(fields.get(7)?, 16).ok()?;
            if mask == 0 {
                return None;
            }
            // /proc/net/route prints the raw (network order) words as
            // host-order integers: their bytes in memory are the address.
            let dest = Ipv4Addr::from(dest.to_ne_bytes());
            let prefix =
                u8::try_from(u32::from_be_bytes(mask.to_ne_bytes()).leading_ones()).ok()?;
            Some((dest, prefix))
        })
        .collect()
}

/// A subnet for a new network: the first of Docker's pools that overlaps
/// neither the host's routes nor another network.
pub fn pick_subnet(known: &[NetworkRecord]) -> anyhow::Result<(Ipv4Addr, u8)> {
    let bridges: Vec<&str> = known.iter().map(|r| r.bridge.as_str()).collect();
    let mut used = host_routes(&bridges);
    for record in known {
        used.push(record.subnet()?);
    }
    networks::free_subnet(&used).context(
        "no free subnet left in the default pools (172.17-31.0.0/16, 192.168.0-240.0/20): give one with --subnet",
    )
}

/// The network `key`; the default `bridge` network is recorded on first use.
pub fn resolve(nets: &Networks, lock: &NetworkLock, key: &str) -> anyhow::Result<NetworkRecord> {
    match nets.find(key) {
        Err(kiln_store::StoreError::NoSuchNetwork(_)) if key == DEFAULT_NETWORK => {
            // Held until kiln0 (and its route) exists, as in `join`.
            let _subnets = bridge::subnet_lock().map_err(anyhow::Error::msg)?;
            let known = nets.list()?;
            let (subnet, prefix) = pick_subnet(&known)?;
            let record = NetworkRecord {
                name: DEFAULT_NETWORK.to_owned(),
                id: crate::commands::container::random_id(),
                created: jiff::Timestamp::now().to_string(),
                driver: "bridge".to_owned(),
                internal: false,
                labels: std::collections::BTreeMap::new(),
                subnet: format!("{subnet}/{prefix}"),
                gateway: Ipv4Addr::from(u32::from(subnet) + 1).to_string(),
                bridge: String::new(),
            };
            // `kiln0` is the default store's; another store's default
            // network is named after its ID as user networks are.
            let default_store = nets
                .dir()
                .parent()
                .is_some_and(|root| root == crate::commands::store_root(None));
            let record = NetworkRecord {
                bridge: if default_store {
                    DEFAULT_BRIDGE.to_owned()
                } else {
                    format!("kiln-{}", record.id.get(..10).unwrap_or(&record.id))
                },
                ..record
            };
            nets.create(lock, &record)?;
            // kiln0's route claims the subnet for other stores from now
            // on (another store's default bridge lives with its
            // containers only, see `Attached::detach`).
            if record.bridge == DEFAULT_BRIDGE {
                bridge::ensure(&host_network(&record)?).map_err(anyhow::Error::msg)?;
            }
            Ok(record)
        }
        other => Ok(other?),
    }
}

/// The host's view of a network record.
pub fn host_network(record: &NetworkRecord) -> anyhow::Result<BridgeNetwork> {
    let (subnet, prefix) = record.subnet()?;
    Ok(BridgeNetwork {
        bridge: record.bridge.clone(),
        subnet,
        prefix,
        gateway: record.gateway()?,
        internal: record.internal,
    })
}

/// The host end of a container's veth on a network: `kv`, 8 digits of
/// the container ID, 5 of the network's (15 bytes, the kernel's limit).
pub fn host_interface(container: &str, network: &str) -> String {
    let c: String = container.chars().take(8).collect();
    let n: String = network.chars().take(5).collect();
    format!("kv{c}{n}")
}

/// The `resolv.conf` of a container on bridge networks: `--dns` servers,
/// or the host's non-loopback ones (Google's, as Docker's fallback, when
/// the host has only a loopback stub); search and options kept.
fn resolv_conf(dns: &[String]) -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut servers: Vec<String> = dns.to_vec();
    let mut rest = String::new();
    for line in host.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") if dns.is_empty() => {
                if let Some(address) = words.next()
                    && !address
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|a| a.is_loopback())
                {
                    servers.push(address.to_owned());
                }
            }
            Some("search" | "domain" | "options") => {
                rest.push_str(line.trim());
                rest.push('\n');
            }
            _ => {}
        }
    }
    if servers.is_empty() {
        servers = vec!["8.8.8.8".to_owned(), "8.8.4.4".to_owned()];
    }
    let mut text = String::new();
    for server in &servers {
        let _ = writeln!(text, "nameserver {server}");
    }
    text.push_str(&rest);
    text
}

/// A container's network setup for one run; [`Attached::detach`] undoes
/// it (and a killed holder's leases are freed by the next reconcile).
pub struct Attached {
    root: PathBuf,
    container: String,
    /// The namespace the container joins.
    pub netns: OwnedFd,
    interfaces: Vec<String>,
    /// The default network of a store other than the default one: its
    /// bridge goes when its last container does (see `detach`).
    transient: Vec<NetworkRecord>,
}

/// Sets up the networks of `endpoints` for container `who` in a new
/// network namespace: leases, veths, the `/etc` files in `etc` (`hosts`,
/// `hostname`, `resolv.conf`), and the peers' hosts files. The leases are
/// held by this process.
pub fn attach(
    root: &Path,
    who: &Identity,
    endpoints: &[EndpointRequest],
    etc: &Path,
) -> anyhow::Result<Attached> {
    let first = endpoints
        .first()
        .map_or(DEFAULT_NETWORK, |e| e.network.as_str());
    check_root(first)?;
    bridge::check_tools().map_err(anyhow::Error::msg)?;
    let namespace = bridge::new_namespace().map_err(anyhow::Error::msg)?;
    let nets = Networks::at(root);
    let lock = nets.lock()?;
    let mut attached = Attached {
        root: root.to_path_buf(),
        container: who.id.clone(),
        netns: namespace,
        interfaces: Vec::new(),
        transient: Vec::new(),
    };
    let result = (|| -> anyhow::Result<()> {
        let mut touched = Vec::new();
        for (index, endpoint) in endpoints.iter().enumerate() {
            let record = resolve(&nets, &lock, &endpoint.network)?;
            let interface = join(
                &nets,
                &lock,
                &record,
                who,
                endpoint,
                etc,
                attached.netns.as_fd(),
                index,
            )?;
            attached.interfaces.push(interface);
            touched.push(record.id.clone());
            if record.name == DEFAULT_NETWORK && record.bridge != DEFAULT_BRIDGE {
                attached.transient.push(record);
            }
        }
        std::fs::write(etc.join("hostname"), format!("{}\n", who.hostname))
            .with_context(|| format!("cannot write {}", etc.join("hostname").display()))?;
        std::fs::write(etc.join("resolv.conf"), resolv_conf(&who.dns))
            .with_context(|| format!("cannot write {}", etc.join("resolv.conf").display()))?;
        std::fs::write(etc.join("hosts"), nets.hosts_for(&lock, &who.id)?)
            .with_context(|| format!("cannot write {}", etc.join("hosts").display()))?;
        nets.refresh_hosts(&lock, &touched)?;
        Ok(())
    })();
    drop(lock);
    if let Err(e) = result {
        attached.detach();
        return Err(e);
    }
    Ok(attached)
}

/// Leases an address of `record` for `who` and adds the interface
/// `eth{index}` to `namespace`; returns the host end's name.
#[expect(
    clippy::too_many_arguments,
    reason = "one network's join, all of it needed"
)]
pub fn join(
    nets: &Networks,
    lock: &NetworkLock,
    record: &NetworkRecord,
    who: &Identity,
    endpoint: &EndpointRequest,
    etc: &Path,
    namespace: std::os::fd::BorrowedFd<'_>,
    index: usize,
) -> anyhow::Result<String> {
    // Held until the bridge (and its route) exists.
    let _subnets = bridge::subnet_lock().map_err(anyhow::Error::msg)?;
    let record = &claim_subnet(nets, lock, record)?;
    let host = host_network(record)?;
    let requested = endpoint
        .ipv4_address
        .as_deref()
        .map(|ip| {
            ip.parse::<Ipv4Addr>()
                .map_err(|_| anyhow::anyhow!("invalid IPv4 address: {ip}"))
        })
        .transpose()?;
    let mut lease: Lease = networks::own_lease(&who.id, &who.name, &who.hostname);
    lease.aliases.clone_from(&endpoint.aliases);
    lease.extra_hosts.clone_from(&who.extra_hosts);
    lease.hosts_path = etc.join("hosts");
    lease.interface = host_interface(&who.id, &record.id);
    // Published ports reach the container's address on its first
    // network through DNAT too; recorded in the lease before the rules
    // exist, so whoever frees it removes them (an internal network has
    // no route in: its ports stay the proxy's, as the host's loopback).
    if index == 0 && !record.internal && kernel_forwarding_wanted() {
        lease.forwards = forwards_of(&who.ports);
    }
    let lease = nets.allocate(lock, record, lease, requested)?;
    let address: Ipv4Addr = lease.ip_address.parse()?;
    let set_up = (|| -> anyhow::Result<()> {
        bridge::ensure(&host).map_err(anyhow::Error::msg)?;
        bridge::add_rules(&host).map_err(anyhow::Error::msg)?;
        bridge::add_interface(
            namespace,
            &Interface {
                host: lease.interface.clone(),
                name: format!("eth{index}"),
                bridge: record.bridge.clone(),
                address,
                prefix: host.prefix,
                gateway: host.gateway,
                mac: lease.mac_address.clone(),
                default_route: index == 0 && !record.internal,
            },
        )
        .map_err(anyhow::Error::msg)
    })();
    if let Err(e) = set_up {
        let _ = nets.release(lock, &record.id, &lease.ip_address);
        return Err(e.context(format!("cannot join network {}", record.name)));
    }
    if !lease.forwards.is_empty() {
        let forwards = bridge_forwards(&lease);
        let added = if DNAT_FAILED.load(Ordering::Relaxed) {
            Err("it failed before in this process".to_owned())
        } else {
            bridge::add_forwards(&lease.owner_tag(), &forwards, &owner_gone)
        };
        if let Err(e) = added {
            // The proxy holds every published port and serves them all:
            // the kernel path is what shows the client's own address and
            // spares a copy, not what makes the ports answer.
            if !DNAT_FAILED.swap(true, Ordering::Relaxed) {
                log::debug!(
                    "published ports of {}: nftables DNAT unavailable, the userspace proxy serves them: {e}",
                    who.name
                );
            }
            let mut lease = lease.clone();
            lease.forwards.clear();
            nets.update(lock, &record.id, &lease)?;
        }
    }
    Ok(lease.interface)
}

/// `record` as it may bring up its bridge: when the bridge does not exist
/// yet and the host routes its subnet elsewhere (another store's bridge
/// took it since it was recorded), the default network, which no lease
/// holds then, moves to a free subnet; a user network's subnet was the
/// user's choice, so that is an error.
fn claim_subnet(
    nets: &Networks,
    lock: &NetworkLock,
    record: &NetworkRecord,
) -> anyhow::Result<NetworkRecord> {
    if bridge::exists(&record.bridge) {
        return Ok(record.clone());
    }
    let subnet = record.subnet()?;
    let taken = host_routes(&[record.bridge.as_str()])
        .into_iter()
        .any(|route| networks::overlaps(route, subnet));
    if !taken {
        return Ok(record.clone());
    }
    if record.name != DEFAULT_NETWORK || !nets.leases(&record.id)?.is_empty() {
        bail!(
            "network {}: its subnet {} is routed on the host by another interface now; remove the network and create it with another --subnet",
            record.name,
            record.subnet
        );
    }
    let others: Vec<NetworkRecord> = nets
        .list()?
        .into_iter()
        .filter(|other| other.id != record.id)
        .collect();
    let free = pick_subnet(&others)?;
    Ok(nets.move_subnet(lock, record, free)?)
}

/// A store's default network other than the default store's (`kiln0`)
/// keeps no bridge while no container holds it: a temporary store (a CI
/// job's, a test's) is often deleted with its network recorded, and its
/// bridge would hold a subnet of the host's pools for ever (a start makes
/// it again). Called when a container's run ends and when one is removed
/// (after `rm -f` or a killed monitor the run's own end may not come).
pub fn remove_idle_bridges(root: &Path) {
    let nets = Networks::at(root);
    if !nets.dir().is_dir() {
        return;
    }
    let Ok(_lock) = nets.lock() else { return };
    let Ok(records) = nets.list() else { return };
    for record in records
        .iter()
        .filter(|r| r.name == DEFAULT_NETWORK && r.bridge != DEFAULT_BRIDGE)
    {
        if nets.leases(&record.id).is_ok_and(|l| l.is_empty())
            && bridge::exists(&record.bridge)
            && let Ok(host) = host_network(record)
        {
            let _ = bridge::remove_rules(&host);
            let _ = bridge::remove(&host);
        }
    }
}

impl Attached {
    /// Frees the container's leases, removes its veths (they would go with
    /// the namespace anyway, but later) and tells the peers.
    pub fn detach(self) {
        for interface in &self.interfaces {
            let _ = bridge::remove_interface(interface);
        }
        let _ = networks::forget_container(&self.root, &self.container);
        drop(self.netns);
        if !self.transient.is_empty() {
            remove_idle_bridges(&self.root);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(host: &str, container_port: u16) -> PublishedPort {
        PublishedPort {
            protocol: Protocol::Tcp,
            host: host.parse().unwrap_or_else(|e| panic!("{host}: {e}")),
            container_port,
        }
    }

    #[test]
    fn loopback_and_ipv6_bindings_stay_the_proxys() {
        let forwards = forwards_of(&[
            published("0.0.0.0:8080", 80),
            published("127.0.0.1:8081", 80),
            published("10.0.0.1:8082", 81),
            published("[::1]:8083", 80),
        ]);
        let shown: Vec<(String, u16, u16)> = forwards
            .iter()
            .map(|f| (f.host_ip.clone(), f.host_port, f.container_port))
            .collect();
        assert_eq!(
            shown,
            [
                ("0.0.0.0".to_owned(), 8080, 80),
                ("10.0.0.1".to_owned(), 8082, 81)
            ]
        );
    }

    #[test]
    fn an_elements_owner_is_gone_only_when_its_tag_names_a_dead_process() {
        let me = kiln_store::temp::Owner::of(std::process::id())
            .unwrap_or_else(|| panic!("no start time of this process"));
        assert!(!owner_gone(&format!("abc {}:{}", me.pid, me.start)));
        // The same pid with another start time is another process.
        assert!(owner_gone(&format!("abc {}:{}", me.pid, me.start + 1)));
        // Not a tag kiln writes: left alone.
        assert!(!owner_gone("someone else's comment"));
        assert!(!owner_gone(""));
    }
}
