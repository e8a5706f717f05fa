//! Root bridge networks, as Docker's `bridge` driver: a Linux bridge per
//! network with the gateway address, a veth pair per container and
//! network (one end on the bridge, the other in the container's network
//! namespace), outbound NAT and the isolation between networks in an
//! nftables table of kiln's own (`table inet kiln`).
//!
//! The plumbing goes through iproute2 (`ip`) and `nft` rather than raw
//! netlink: both are on every host that has nftables, their messages name
//! what failed, and a container start pays two or three short processes.
//! The kiln table is shared by every store of the host (bridges of two
//! stores are isolated from each other too): its rules are fixed and
//! match sets, each network adds and removes its own elements
//! ([`add_rules`], [`remove_rules`]).
//!
//! Published ports of containers on a bridge reach them through the
//! kernel too, as Docker's: DNAT rules in the same table
//! ([`add_forwards`], [`remove_forwards`]), elements of two maps (host
//! port, or host address and port, to the container's address and port)
//! that each carry their owner's identity in a comment, so that exactly
//! one container's elements are removed, and those of a holder that died
//! are recognised by any later kiln.
//!
//! Nothing here keeps state: the store records the networks and their
//! address leases; callers serialise [`ensure`] with the store's network
//! lock.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd as _, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::fcntl::{OFlag, open};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::stat::Mode;
use serde_json::Value;

use crate::ports::Protocol;

/// The nftables table kiln owns.
pub const TABLE: &str = "kiln";

/// One bridge network as the host sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeNetwork {
    /// The Linux bridge's name (at most 15 bytes).
    pub bridge: String,
    /// The subnet's first address.
    pub subnet: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix: u8,
    /// The bridge's own address, the containers' default route.
    pub gateway: Ipv4Addr,
    /// No route out (Docker's `--internal`): neither NAT nor forwarding
    /// to or from other interfaces.
    pub internal: bool,
}

/// A container's interface on one bridge network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// The host end of the veth pair (on the bridge).
    pub host: String,
    /// The name in the container (`eth0`, `eth1`, ...).
    pub name: String,
    /// The bridge it joins.
    pub bridge: String,
    /// The container's address.
    pub address: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix: u8,
    /// The gateway, the default route when `default_route`.
    pub gateway: Ipv4Addr,
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// This interface carries the default route (the first network).
    pub default_route: bool,
}

/// Where a tool is: `PATH`, then the sbin directories a non-login root
/// shell may lack.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Whether the tools bridge networks need are installed.
pub fn check_tools() -> Result<(), String> {
    for name in ["ip", "nft"] {
        if !tool(name).is_file() {
            return Err(format!(
                "bridge networks need {name}, which is not installed (Debian: apt-get install {})",
                if name == "ip" { "iproute2" } else { "nftables" }
            ));
        }
    }
    Ok(())
}

/// Runs `program args`, `input` on its stdin; its stderr in the error.
fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<(), String> {
    let mut child = Command::new(tool(program))
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running {program}: {e}"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| format!("writing to {program}: {e}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("running {program}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(format!(
        "{program} {}: {}",
        args.join(" "),
        stderr.trim().lines().last().unwrap_or("failed")
    ))
}

/// Whether the host has interface `interface`.
pub fn exists(interface: &str) -> bool {
    std::path::Path::new("/sys/class/net")
        .join(interface)
        .exists()
}

/// Makes the network's bridge (when missing) with the gateway address and
/// brings it up, and turns on IPv4 forwarding (as Docker does; kiln never
/// turns it off, other networks of the host may need it).
pub fn ensure(network: &BridgeNetwork) -> Result<(), String> {
    check_tools()?;
    let name = &network.bridge;
    let mut batch = String::new();
    if !exists(name) {
        let _ = writeln!(batch, "link add {name} type bridge");
    }
    let _ = writeln!(
        batch,
        "addr replace {}/{} dev {name}",
        network.gateway, network.prefix
    );
    let _ = writeln!(batch, "link set {name} up");
    run("ip", &["-batch", "-"], Some(&batch))
        .map_err(|e| format!("setting up bridge {name}: {e}"))?;
    let forward = "/proc/sys/net/ipv4/ip_forward";
    if !std::fs::read_to_string(forward).is_ok_and(|s| s.trim() == "1") {
        std::fs::write(forward, "1").map_err(|e| format!("enabling {forward}: {e}"))?;
    }
    Ok(())
}

/// Removes the network's bridge (the veths still on it go with it).
pub fn remove(network: &BridgeNetwork) -> Result<(), String> {
    if !exists(&network.bridge) {
        return Ok(());
    }
    run(
        "ip",
        &["link", "delete", &network.bridge, "type", "bridge"],
        None,
    )
    .map_err(|e| format!("removing bridge {}: {e}", network.bridge))
}

/// The kiln table without any network: sets the networks fill, and the
/// rules over them. Intra-network traffic passes (it crosses the forward
/// hook only with `br_netfilter`), traffic between two kiln bridges is
/// dropped (isolation, across stores too), internal networks' traffic
/// goes nowhere else, and what leaves a non-internal subnet through
/// another interface is masqueraded.
const BASE_TABLE: &str = "table inet kiln {
  set bridges { type ifname; }
  set internal { type ifname; }
  set same { type ifname . ifname; }
  set nat_subnets { type ipv4_addr; flags interval; }
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname . oifname @same accept
    iifname @bridges oifname @bridges drop
    iifname @internal drop
    oifname @internal drop
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr @nat_subnets oifname != @bridges masquerade
  }
}
";

/// The set elements of one network: (set, element).
fn elements(network: &BridgeNetwork) -> Vec<(&'static str, String)> {
    let name = &network.bridge;
    let mut out = vec![
        ("bridges", format!("\"{name}\"")),
        ("same", format!("\"{name}\" . \"{name}\"")),
    ];
    if network.internal {
        out.push(("internal", format!("\"{name}\"")));
    } else {
        out.push((
            "nat_subnets",
            format!("{}/{}", network.subnet, network.prefix),
        ));
    }
    out
}

/// A host-wide lock for changes to the kiln table (every store's
/// networks share it; the table is made once).
fn table_lock() -> Result<std::fs::File, String> {
    host_lock("/run/lock/kiln-network.lock")
}

/// A host-wide lock held from the check that a network's subnet is free
/// on the host until its bridge (and so its route) exists: two stores
/// must not bring up bridges of one subnet.
pub fn subnet_lock() -> Result<std::fs::File, String> {
    host_lock("/run/lock/kiln-subnets.lock")
}

fn host_lock(path: &str) -> Result<std::fs::File, String> {
    let _ = std::fs::create_dir_all("/run/lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("opening {path}: {e}"))?;
    // SAFETY: flock on a descriptor we own; released when it is closed.
    while unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("locking {path}: {error}"));
        }
    }
    Ok(file)
}

/// Adds `network`'s elements to the kiln table (made when missing): its
/// bridge in the isolation sets, its subnet masqueraded (unless
/// internal). Idempotent, so every container start heals a flushed
/// table. Where Docker's iptables rules drop forwarded packets by
/// default (`FORWARD` policy `DROP`, the `DOCKER-USER` chain present),
/// kiln's bridges are let through there: a packet must be accepted by
/// every table's forward hook, and kiln's own table does the filtering.
pub fn add_rules(network: &BridgeNetwork) -> Result<(), String> {
    check_tools()?;
    let _lock = table_lock()?;
    let fail = |e: String| format!("writing the nftables table inet {TABLE}: {e}");
    if run("nft", &["list", "table", "inet", TABLE], None).is_err() {
        run("nft", &["-f", "-"], Some(BASE_TABLE)).map_err(fail)?;
    }
    let mut script = String::new();
    for (set, element) in elements(network) {
        let _ = writeln!(script, "add element inet {TABLE} {set} {{ {element} }}");
    }
    run("nft", &["-f", "-"], Some(&script)).map_err(fail)?;
    docker_user_accept();
    Ok(())
}

/// Removes `network`'s elements from the kiln table (each on its own:
/// one already gone must not keep the others).
pub fn remove_rules(network: &BridgeNetwork) -> Result<(), String> {
    check_tools()?;
    let _lock = table_lock()?;
    if run("nft", &["list", "table", "inet", TABLE], None).is_err() {
        return Ok(());
    }
    for (set, element) in elements(network) {
        let script = format!("delete element inet {TABLE} {set} {{ {element} }}\n");
        let _ = run("nft", &["-f", "-"], Some(&script));
    }
    Ok(())
}

/// The accept rules for kiln's bridges in Docker's `DOCKER-USER` chain,
/// when it exists (best effort: without it nothing drops kiln's traffic).
fn docker_user_accept() {
    let iptables = tool("iptables");
    if !iptables.is_file() {
        return;
    }
    let quiet = |args: &[&str]| {
        Command::new(&iptables)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !quiet(&["-w", "-n", "-L", "DOCKER-USER"]) {
        return;
    }
    let rules: [&[&str]; 3] = [
        &["-i", "kiln+", "-j", "ACCEPT"],
        // Published ports: connections DNAT'd to a container (see
        // `add_forwards`) are new in FORWARD, neither of the others.
        &[
            "-o",
            "kiln+",
            "-m",
            "conntrack",
            "--ctstate",
            "DNAT",
            "-j",
            "ACCEPT",
        ],
        &[
            "-o",
            "kiln+",
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-j",
            "ACCEPT",
        ],
    ];
    for rule in rules {
        let check: Vec<&str> = ["-w", "-C", "DOCKER-USER"]
            .iter()
            .chain(rule)
            .copied()
            .collect();
        if !quiet(&check) {
            let insert: Vec<&str> = ["-w", "-I", "DOCKER-USER"]
                .iter()
                .chain(rule)
                .copied()
                .collect();
            let _ = quiet(&insert);
        }
    }
}

/// One published port the kernel forwards: DNAT of the host's port to
/// the container's address on a bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The host address it answers on; `0.0.0.0` for every local address
    /// (loopback excepted: see [`PORT_CHAINS`]).
    pub host_ip: Ipv4Addr,
    /// The host port.
    pub host_port: u16,
    /// The container's address on the bridge.
    pub container: Ipv4Addr,
    /// The port in the container.
    pub container_port: u16,
}

impl Forward {
    /// The map it is an element of.
    fn map(&self) -> &'static str {
        if self.host_ip.is_unspecified() {
            "ports_any"
        } else {
            "ports_at"
        }
    }

    /// Its key in that map, as nft writes it.
    fn key(&self) -> String {
        if self.host_ip.is_unspecified() {
            format!("{} . {}", self.protocol, self.host_port)
        } else {
            format!("{} . {} . {}", self.host_ip, self.protocol, self.host_port)
        }
    }
}

/// The maps and chains of published ports, added to the kiln table when
/// missing (hosts whose table predates them, or a flushed one).
///
/// - prerouting: traffic from other hosts and namespaces to a local
///   address; not from kiln's own bridges, whose containers reach
///   published ports through the userspace proxy as Docker's do (no
///   hairpin NAT, no exception to the isolation between networks).
/// - output: this host's own traffic to its non-loopback addresses. A
///   loopback destination would need `route_localnet` to be routed to a
///   bridge, which Docker avoids too: the proxy serves 127.0.0.1.
///
/// A host address's own map is looked up first, then the any-address
/// one; a miss leaves the packet to the proxy's socket.
pub const PORT_CHAINS: &str = "add map inet kiln ports_at { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }
add map inet kiln ports_any { type inet_proto . inet_service : ipv4_addr . inet_service; }
add chain inet kiln prerouting { type nat hook prerouting priority dstnat; policy accept; }
add chain inet kiln output { type nat hook output priority -100; policy accept; }
add rule inet kiln prerouting iifname != @bridges fib daddr type local meta nfproto ipv4 dnat ip to ip daddr . meta l4proto . th dport map @ports_at
add rule inet kiln prerouting iifname != @bridges fib daddr type local meta nfproto ipv4 dnat ip to meta l4proto . th dport map @ports_any
add rule inet kiln output meta nfproto ipv4 ip daddr != 127.0.0.0/8 fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @ports_at
add rule inet kiln output meta nfproto ipv4 ip daddr != 127.0.0.0/8 fib daddr type local dnat ip to meta l4proto . th dport map @ports_any
";

/// Makes the kiln table and its port chains when missing (the table
/// lock held).
fn ensure_port_chains() -> Result<(), String> {
    if run("nft", &["list", "table", "inet", TABLE], None).is_err() {
        run("nft", &["-f", "-"], Some(BASE_TABLE))?;
    }
    if run("nft", &["list", "chain", "inet", TABLE, "prerouting"], None).is_err() {
        run("nft", &["-f", "-"], Some(PORT_CHAINS))?;
    }
    Ok(())
}

/// One element of a port map: its key as nft reads it, its comment
/// (the owner), and the container's address it points at.
struct Element {
    map: &'static str,
    key: String,
    comment: String,
    container: Option<Ipv4Addr>,
}

/// A JSON value of an element's key or data as nft reads it back.
fn nft_word(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The words of a concatenation (`{"concat": [...]}`) or a lone value.
fn nft_words(value: &Value) -> Vec<String> {
    match value.get("concat").and_then(Value::as_array) {
        Some(parts) => parts.iter().map(nft_word).collect(),
        None => vec![nft_word(value)],
    }
}

/// The elements of port map `map` in `nft -j list map` output.
fn elements_of(map: &'static str, document: &Value) -> Vec<Element> {
    let mut out = Vec::new();
    let entries = document
        .get("nftables")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|item| item.pointer("/map/elem").and_then(Value::as_array))
        .flatten();
    for entry in entries {
        let (Some(key), Some(data)) = (entry.get(0), entry.get(1)) else {
            continue;
        };
        // With a comment the key is wrapped: {"elem": {"val", "comment"}}.
        let (key, comment) = match key.get("elem") {
            Some(inner) => (
                inner.get("val").unwrap_or(&Value::Null),
                inner
                    .get("comment")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            ),
            None => (key, ""),
        };
        out.push(Element {
            map,
            key: nft_words(key).join(" . "),
            comment: comment.to_owned(),
            container: nft_words(data).first().and_then(|a| a.parse().ok()),
        });
    }
    out
}

/// The elements of both port maps (none when the maps do not exist).
fn port_elements() -> Vec<Element> {
    let mut out = Vec::new();
    for map in ["ports_at", "ports_any"] {
        let Ok(output) = Command::new(tool("nft"))
            .args(["-j", "list", "map", "inet", TABLE, map])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
        else {
            continue;
        };
        let Ok(document) = serde_json::from_slice::<Value>(&output.stdout) else {
            continue;
        };
        out.extend(elements_of(map, &document));
    }
    out
}

/// Adds `forwards` to the port maps in one transaction, each element's
/// comment `owner`. Elements of the same keys are replaced: the caller's
/// proxy holds those host ports, so whatever pointed there is stale (a
/// holder killed with `kill -9`); elements whose comment `stale` names
/// go in the same transaction.
pub fn add_forwards(
    owner: &str,
    forwards: &[Forward],
    stale: &dyn Fn(&str) -> bool,
) -> Result<(), String> {
    if forwards.is_empty() {
        return Ok(());
    }
    check_tools()?;
    let _lock = table_lock()?;
    let fail = |e: String| format!("adding DNAT rules to the nftables table inet {TABLE}: {e}");
    ensure_port_chains().map_err(fail)?;
    let mut script = String::new();
    let mut doomed = std::collections::BTreeSet::new();
    for element in port_elements() {
        let taken = forwards
            .iter()
            .any(|f| f.map() == element.map && f.key() == element.key);
        if taken || stale(&element.comment) {
            doomed.insert((element.map, element.key));
        }
    }
    for (map, key) in &doomed {
        let _ = writeln!(script, "delete element inet {TABLE} {map} {{ {key} }}");
    }
    let comment = owner.replace('"', "");
    for forward in forwards {
        let _ = writeln!(
            script,
            "add element inet {TABLE} {} {{ {} comment \"{comment}\" : {} . {} }}",
            forward.map(),
            forward.key(),
            forward.container,
            forward.container_port
        );
    }
    // Docker's `DOCKER-USER` accepts DNAT'd connections to kiln's bridges
    // since `add_rules`, which every join runs first.
    run("nft", &["-f", "-"], Some(&script)).map_err(fail)
}

/// Removes, in one transaction, the port elements for which `doomed`
/// (given the element's comment and the container address it points at)
/// holds. Nothing to do without the table or its maps.
pub fn remove_forwards(doomed: &dyn Fn(&str, Option<Ipv4Addr>) -> bool) -> Result<(), String> {
    if check_tools().is_err() {
        return Ok(());
    }
    let _lock = table_lock()?;
    let mut script = String::new();
    for element in port_elements() {
        if doomed(&element.comment, element.container) {
            let _ = writeln!(
                script,
                "delete element inet {TABLE} {} {{ {} }}",
                element.map, element.key
            );
        }
    }
    if script.is_empty() {
        return Ok(());
    }
    run("nft", &["-f", "-"], Some(&script))
        .map_err(|e| format!("removing DNAT rules from the nftables table inet {TABLE}: {e}"))
}

/// A new network namespace with `lo` up, made on a thread of its own (the
/// calling thread keeps its namespace). It lives while the descriptor is
/// open or a process is in it.
pub fn new_namespace() -> Result<OwnedFd, String> {
    let thread = std::thread::Builder::new()
        .name("kiln-netns".to_owned())
        .spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("bridge network: unshare network namespace: {e}"))?;
            let fd = open_own()?;
            crate::network::loopback_up()
                .map_err(|e| format!("bridge network: bringing lo up: {e}"))?;
            Ok(fd)
        })
        .map_err(|e| format!("bridge network: starting a thread: {e}"))?;
    thread
        .join()
        .map_err(|_| "bridge network: the namespace thread panicked".to_owned())?
}

fn open_own() -> Result<OwnedFd, String> {
    open(
        "/proc/thread-self/ns/net",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("bridge network: opening /proc/thread-self/ns/net: {e}"))
}

/// Opens the network namespace of process `pid` (a running container's).
pub fn namespace_of(pid: i32) -> Result<OwnedFd, String> {
    let path = format!("/proc/{pid}/ns/net");
    open(
        path.as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("opening {path}: {e}"))
}

/// Adds `interface` to the namespace `netns`: the veth pair, its host end
/// on the bridge, the container's end addressed and up (with the default
/// route when asked).
pub fn add_interface(netns: BorrowedFd<'_>, interface: &Interface) -> Result<(), String> {
    check_tools()?;
    let host = &interface.host;
    if exists(host) {
        // Left by a container whose namespace is still being torn down,
        // or by a failed attach: the name is the container's and network's.
        let _ = run("ip", &["link", "delete", host], None);
    }
    let target = format!("/proc/{}/fd/{}", std::process::id(), netns.as_raw_fd());
    run(
        "ip",
        &[
            "link",
            "add",
            host,
            "type",
            "veth",
            "peer",
            "name",
            &interface.name,
            "netns",
            &target,
        ],
        None,
    )
    .map_err(|e| format!("creating the veth pair {host}: {e}"))?;
    let on_bridge = run(
        "ip",
        &["link", "set", host, "master", &interface.bridge, "up"],
        None,
    );
    if let Err(e) = on_bridge {
        let _ = run("ip", &["link", "delete", host], None);
        return Err(format!("attaching {host} to {}: {e}", interface.bridge));
    }
    let name = &interface.name;
    let mut batch = format!(
        "link set {name} address {}\naddr add {}/{} dev {name}\nlink set {name} up\n",
        interface.mac, interface.address, interface.prefix
    );
    if interface.default_route {
        let _ = writeln!(batch, "route add default via {}", interface.gateway);
    }
    let inside = in_namespace(netns, move || run("ip", &["-batch", "-"], Some(&batch)));
    if let Err(e) = inside {
        let _ = run("ip", &["link", "delete", host], None);
        return Err(format!("configuring {name} in the container: {e}"));
    }
    Ok(())
}

/// Removes the veth pair whose host end is `host` (both ends go).
pub fn remove_interface(host: &str) -> Result<(), String> {
    if !exists(host) {
        return Ok(());
    }
    run("ip", &["link", "delete", host], None).map_err(|e| format!("removing {host}: {e}"))
}

/// Runs `work` on a thread that joined `netns` (processes it starts are
/// in that namespace).
fn in_namespace<T: Send>(
    netns: BorrowedFd<'_>,
    work: impl FnOnce() -> Result<T, String> + Send,
) -> Result<T, String> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                setns(netns, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("joining the container's network namespace: {e}"))?;
                work()
            })
            .join()
            .map_err(|_| "the network namespace thread panicked".to_owned())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_are_keyed_per_address_or_for_any() {
        let mut forward = Forward {
            protocol: Protocol::Udp,
            host_ip: Ipv4Addr::UNSPECIFIED,
            host_port: 5353,
            container: Ipv4Addr::new(172, 18, 0, 2),
            container_port: 53,
        };
        assert_eq!(
            (forward.map(), forward.key().as_str()),
            ("ports_any", "udp . 5353")
        );
        forward.host_ip = Ipv4Addr::new(10, 0, 0, 1);
        assert_eq!(
            (forward.map(), forward.key().as_str()),
            ("ports_at", "10.0.0.1 . udp . 5353")
        );
    }

    #[test]
    fn elements_are_read_back_from_nfts_json_with_and_without_comments() {
        // As nft 1.0.6 writes `nft -j list map inet kiln ports_at`.
        let document: Value = serde_json::from_str(
            r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"map": {"family": "inet",
            "name": "ports_at", "table": "kiln", "elem": [
              [{"elem": {"val": {"concat": ["10.0.0.1", "tcp", 8080]}, "comment": "abc 1:2"}},
               {"concat": ["172.18.0.2", 80]}],
              [{"concat": ["10.0.0.1", "udp", 53]}, {"concat": ["172.18.0.3", 53]}]
            ]}}]}"#,
        )
        .unwrap_or_default();
        let elements = elements_of("ports_at", &document);
        assert_eq!(elements.len(), 2);
        assert_eq!(elements[0].key, "10.0.0.1 . tcp . 8080");
        assert_eq!(elements[0].comment, "abc 1:2");
        assert_eq!(elements[0].container, Some(Ipv4Addr::new(172, 18, 0, 2)));
        assert_eq!(elements[1].key, "10.0.0.1 . udp . 53");
        assert_eq!(elements[1].comment, "");
        // A map without elements, or no map at all.
        assert!(elements_of("ports_at", &serde_json::json!({"nftables": []})).is_empty());
    }
}
