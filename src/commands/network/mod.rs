//! `kiln network create|ls|inspect|rm|prune|connect|disconnect`, with
//! Docker's flags and output. Networks live in the store (`networks/`,
//! see `kiln_store::networks`); their host side (bridge, veths, nftables)
//! is kiln-runtime's `bridge` module; [`endpoints`] joins them for a run.

pub mod endpoints;

use std::collections::BTreeMap;
use std::io::{self, BufRead as _, Write as _};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use kiln_store::StoreError;
use kiln_store::containers::Containers;
use kiln_store::networks::{self, DEFAULT_NETWORK, NetworkRecord, Networks, RESERVED_NAMES};
use serde::Serialize as _;
use serde_json::{Map, Value, json};

use crate::table::RowFormat;
use endpoints::{EndpointRequest, Identity};

/// `kiln network` subcommands.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a bridge network.
    Create {
        /// Subnet in CIDR form (default: the first free one of
        /// 172.17-31.0.0/16, then 192.168.0-240.0/20).
        #[arg(long, value_name = "CIDR")]
        subnet: Option<String>,
        /// The bridge's address (default: the subnet's first).
        #[arg(long, value_name = "IP")]
        gateway: Option<String>,
        /// Driver (only bridge).
        #[arg(short, long, default_value = "bridge")]
        driver: String,
        /// No outbound access, nor inbound from outside the network.
        #[arg(long)]
        internal: bool,
        /// Set a label (`K=V`).
        #[arg(short = 'l', long = "label", value_name = "K=V")]
        labels: Vec<String>,
        /// The network's name.
        name: String,
    },
    /// List networks.
    #[command(visible_alias = "list")]
    Ls {
        /// Only display network IDs.
        #[arg(short, long)]
        quiet: bool,
        /// Do not truncate IDs.
        #[arg(long)]
        no_trunc: bool,
        /// `table`, `json`, `table TEMPLATE` or a Go template.
        #[arg(long)]
        format: Option<String>,
    },
    /// Display detailed information on one or more networks.
    Inspect {
        /// Format the output using the given Go template.
        #[arg(short, long)]
        format: Option<String>,
        /// The networks.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove one or more networks (not while containers are on them).
    #[command(visible_alias = "remove")]
    Rm {
        /// Do not fail for a network that does not exist.
        #[arg(short, long)]
        force: bool,
        /// The networks.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove all networks no container uses.
    Prune {
        /// Do not ask for confirmation.
        #[arg(short, long)]
        force: bool,
    },
    /// Connect a container to a network.
    Connect {
        /// Add a network-scoped alias for the container.
        #[arg(long = "alias", value_name = "NAME")]
        aliases: Vec<String>,
        /// The container's IPv4 address on the network.
        #[arg(long, value_name = "IP")]
        ip: Option<String>,
        /// The network.
        network: String,
        /// The container.
        container: String,
    },
    /// Disconnect a container from a network.
    Disconnect {
        /// Force the container to disconnect.
        #[arg(short, long)]
        force: bool,
        /// The network.
        network: String,
        /// The container.
        container: String,
    },
}

/// Runs a `kiln network` subcommand.
pub fn run(root: Option<&Path>, command: &NetworkCommand) -> anyhow::Result<ExitCode> {
    let root = crate::commands::store_root(root);
    // Through the store: it makes (and closes to others) `networks/`.
    drop(crate::commands::open_store(Some(&root))?);
    let nets = Networks::at(&root);
    let mut stdout = io::stdout().lock();
    match command {
        NetworkCommand::Create {
            subnet,
            gateway,
            driver,
            internal,
            labels,
            name,
        } => {
            let record = create(
                &nets,
                subnet.as_deref(),
                gateway.as_deref(),
                driver,
                *internal,
                labels,
                name,
            )?;
            writeln!(stdout, "{}", record.id)?;
        }
        NetworkCommand::Ls {
            quiet,
            no_trunc,
            format,
        } => {
            let records = listed(&nets)?;
            if *quiet {
                for record in &records {
                    writeln!(stdout, "{}", short(&record.id, *no_trunc))?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            let format = RowFormat::parse(
                format.as_deref(),
                "{{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
            )?;
            let rows: Vec<Map<String, Value>> = records.iter().map(|r| row(r, *no_trunc)).collect();
            write!(stdout, "{}", format.render(&headers(), &rows)?)?;
        }
        NetworkCommand::Inspect { format, names } => {
            // Parsed first: a bad template fails before anything is read.
            let template = format
                .as_deref()
                .map(crate::template::Template::parse_flag)
                .transpose()?;
            let lock = nets.lock()?;
            nets.reconcile(&lock)?;
            let mut found = Vec::new();
            let mut failed = false;
            for name in names {
                let record = if name == DEFAULT_NETWORK {
                    endpoints::resolve(&nets, &lock, name)
                } else {
                    nets.find(name).map_err(anyhow::Error::from)
                };
                match record {
                    Ok(record) => found.push(inspect_json(&nets, &record)?),
                    Err(e) if is_not_found(&e) => {
                        eprintln!("error: network {name} not found");
                        failed = true;
                    }
                    Err(e) => return Err(e),
                }
            }
            if let Some(template) = template {
                for document in &found {
                    writeln!(stdout, "{}", template.execute(document)?)?;
                }
            } else {
                let mut text = Vec::new();
                let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
                let mut serializer = serde_json::Serializer::with_formatter(&mut text, formatter);
                Value::Array(found).serialize(&mut serializer)?;
                stdout.write_all(&text)?;
                writeln!(stdout)?;
            }
            if failed {
                return Ok(ExitCode::FAILURE);
            }
        }
        NetworkCommand::Rm { force, names } => {
            let mut failed = false;
            for name in names {
                match remove(&nets, name) {
                    Ok(()) => writeln!(stdout, "{name}")?,
                    Err(e) if *force && is_not_found(&e) => {}
                    Err(e) => {
                        crate::output::print_error(&e);
                        failed = true;
                    }
                }
            }
            if failed {
                return Ok(ExitCode::FAILURE);
            }
        }
        NetworkCommand::Prune { force } => {
            if !force {
                write!(
                    stdout,
                    "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] "
                )?;
                stdout.flush()?;
                let mut answer = String::new();
                io::stdin().lock().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            let removed = prune(&nets, &root)?;
            if !removed.is_empty() {
                writeln!(stdout, "Deleted Networks:")?;
                for name in removed {
                    writeln!(stdout, "{name}")?;
                }
            }
        }
        NetworkCommand::Connect {
            aliases,
            ip,
            network,
            container,
        } => connect(&root, &nets, network, container, aliases, ip.as_deref())?,
        NetworkCommand::Disconnect {
            force: _,
            network,
            container,
        } => disconnect(&root, &nets, network, container)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn is_not_found(error: &anyhow::Error) -> bool {
    matches!(
        error.downcast_ref::<StoreError>(),
        Some(StoreError::NoSuchNetwork(_))
    )
}

fn short(id: &str, no_trunc: bool) -> &str {
    if no_trunc {
        id
    } else {
        id.get(..12).unwrap_or(id)
    }
}

/// The networks `ls` shows: the store's (the default one once a
/// container or `network inspect bridge` has recorded it; listing makes
/// no bridge).
fn listed(nets: &Networks) -> anyhow::Result<Vec<NetworkRecord>> {
    Ok(nets.list()?)
}

fn headers() -> Map<String, Value> {
    let Value::Object(map) = json!({
        "ID": "NETWORK ID",
        "Name": "NAME",
        "Driver": "DRIVER",
        "Scope": "SCOPE",
        "IPv6": "IPV6",
        "Internal": "INTERNAL",
        "Labels": "LABELS",
        "CreatedAt": "CREATED AT",
    }) else {
        return Map::new();
    };
    map
}

fn row(record: &NetworkRecord, no_trunc: bool) -> Map<String, Value> {
    let labels: Vec<String> = record
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let created = crate::table::parse_created(Some(&record.created))
        .map(crate::table::go_time)
        .unwrap_or_default();
    let Value::Object(map) = json!({
        "ID": short(&record.id, no_trunc),
        "Name": record.name,
        "Driver": record.driver,
        "Scope": "local",
        "IPv6": "false",
        "Internal": record.internal.to_string(),
        "Labels": labels.join(","),
        "CreatedAt": created,
    }) else {
        return Map::new();
    };
    map
}

/// `docker network inspect`'s document.
fn inspect_json(nets: &Networks, record: &NetworkRecord) -> anyhow::Result<Value> {
    let (_, prefix) = record.subnet()?;
    let mut containers = Map::new();
    for lease in nets.leases(&record.id)? {
        containers.insert(
            lease.container.clone(),
            json!({
                "Name": lease.name,
                "EndpointID": "",
                "MacAddress": lease.mac_address,
                "IPv4Address": format!("{}/{prefix}", lease.ip_address),
                "IPv6Address": "",
            }),
        );
    }
    let mut options = Map::new();
    options.insert(
        "com.docker.network.bridge.name".to_owned(),
        Value::String(record.bridge.clone()),
    );
    Ok(json!({
        "Name": record.name,
        "Id": record.id,
        "Created": record.created,
        "Scope": "local",
        "Driver": record.driver,
        "EnableIPv6": false,
        "IPAM": {
            "Driver": "default",
            "Options": {},
            "Config": [{"Subnet": record.subnet, "Gateway": record.gateway}],
        },
        "Internal": record.internal,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": containers,
        "Options": options,
        "Labels": record.labels,
    }))
}

/// Docker's rule for network names.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn create(
    nets: &Networks,
    subnet: Option<&str>,
    gateway: Option<&str>,
    driver: &str,
    internal: bool,
    labels: &[String],
    name: &str,
) -> anyhow::Result<NetworkRecord> {
    if driver != "bridge" {
        bail!("plugin \"{driver}\" not found: kiln has the bridge driver only");
    }
    if RESERVED_NAMES.contains(&name) {
        bail!("operation is not permitted on predefined {name} network");
    }
    if !valid_name(name) {
        bail!("invalid network name \"{name}\": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed");
    }
    endpoints::check_root(name)?;
    let lock = nets.lock()?;
    let known = nets.list()?;
    if known.iter().any(|r| r.name == name) {
        return Err(StoreError::NetworkExists(name.to_owned()).into());
    }
    let (address, prefix) = match subnet {
        Some(text) => networks::parse_subnet(text)?,
        None => endpoints::pick_subnet(&known)?,
    };
    let gateway = match gateway {
        Some(text) => {
            let gateway: Ipv4Addr = text
                .parse()
                .map_err(|_| anyhow::anyhow!("invalid gateway address {text}"))?;
            let mask = networks::mask(prefix);
            if u32::from(gateway) & mask != u32::from(address) {
                bail!("no matching subnet for gateway {text}");
            }
            gateway
        }
        None => Ipv4Addr::from(u32::from(address) + 1),
    };
    let mut label_map = BTreeMap::new();
    for label in labels {
        let (k, v) = label.split_once('=').unwrap_or((label.as_str(), ""));
        label_map.insert(k.to_owned(), v.to_owned());
    }
    let id = crate::commands::container::random_id();
    let record = NetworkRecord {
        name: name.to_owned(),
        bridge: format!("kiln-{}", id.get(..10).unwrap_or(&id)),
        id,
        created: jiff::Timestamp::now().to_string(),
        driver: "bridge".to_owned(),
        internal,
        labels: label_map,
        subnet: format!("{address}/{prefix}"),
        gateway: gateway.to_string(),
    };
    nets.create(&lock, &record)?;
    // The bridge and rules come up now, so a mistake shows at create.
    let host = endpoints::host_network(&record)?;
    let up =
        kiln_runtime::bridge::ensure(&host).and_then(|()| kiln_runtime::bridge::add_rules(&host));
    if let Err(e) = up {
        let _ = nets.remove(&lock, &record);
        let _ = kiln_runtime::bridge::remove_rules(&host);
        let _ = kiln_runtime::bridge::remove(&host);
        bail!("cannot set up network {name}: {e}");
    }
    Ok(record)
}

fn remove(nets: &Networks, key: &str) -> anyhow::Result<()> {
    if RESERVED_NAMES.contains(&key) {
        bail!("{key} is a pre-defined network and cannot be removed");
    }
    let lock = nets.lock()?;
    let record = nets.find(key)?;
    if record.name == DEFAULT_NETWORK {
        bail!("{DEFAULT_NETWORK} is a pre-defined network and cannot be removed");
    }
    nets.remove(&lock, &record)?;
    let host = endpoints::host_network(&record)?;
    endpoints::remove_network_forwards(&record)?;
    kiln_runtime::bridge::remove_rules(&host).map_err(anyhow::Error::msg)?;
    kiln_runtime::bridge::remove(&host).map_err(anyhow::Error::msg)?;
    Ok(())
}

/// Removes every user network that no container asks for and no live
/// lease holds; returns their names.
fn prune(nets: &Networks, root: &Path) -> anyhow::Result<Vec<String>> {
    let containers = Containers::at(root);
    let mut wanted = std::collections::BTreeSet::new();
    for id in containers.ids()? {
        for endpoint in endpoints::read_endpoints(&containers.dir(&id))? {
            wanted.insert(endpoint.network);
        }
    }
    let mut removed = Vec::new();
    for record in nets.list()? {
        if record.name == DEFAULT_NETWORK
            || wanted.contains(&record.name)
            || wanted.contains(&record.id)
        {
            continue;
        }
        match remove(nets, &record.id) {
            Ok(()) => removed.push(record.name),
            Err(e)
                if e.downcast_ref::<StoreError>()
                    .is_some_and(|e| matches!(e, StoreError::NetworkInUse { .. })) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

/// The identity of a kept container, from its configuration.
pub fn identity_of(config: &kiln_store::containers::ContainerConfig) -> Identity {
    let strings = |value: Option<&Value>| -> Vec<String> {
        value
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    Identity {
        id: config.id.clone(),
        name: config.name.clone(),
        hostname: config
            .config
            .get("Hostname")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        extra_hosts: strings(config.host_config.get("ExtraHosts")),
        dns: strings(config.host_config.get("Dns")),
        ports: Vec::new(),
    }
}

fn connect(
    root: &Path,
    nets: &Networks,
    network: &str,
    key: &str,
    aliases: &[String],
    ip: Option<&str>,
) -> anyhow::Result<()> {
    let containers = Containers::at(root);
    let container = crate::commands::container::find_in(&containers, key)?;
    let mut list = endpoints::read_endpoints(&container.dir)?;
    if list.is_empty() {
        let mode = container
            .config
            .host_config
            .get("NetworkMode")
            .and_then(Value::as_str)
            .unwrap_or("");
        bail!(
            "container {} is on network {mode}, which cannot be combined with bridge networks",
            container.config.name
        );
    }
    let lock = nets.lock()?;
    let record = endpoints::resolve(nets, &lock, network)?;
    let on = |e: &EndpointRequest| nets.find(&e.network).is_ok_and(|r| r.id == record.id);
    if list.iter().any(on) {
        bail!(
            "endpoint with name {} already exists in network {}",
            container.config.name,
            record.name
        );
    }
    let endpoint = EndpointRequest {
        network: record.name.clone(),
        aliases: aliases.to_vec(),
        ipv4_address: ip.map(str::to_owned),
    };
    if container.is_running() && container.state.pid > 0 {
        let namespace =
            kiln_runtime::bridge::namespace_of(container.state.pid).map_err(anyhow::Error::msg)?;
        let who = identity_of(&container.config);
        endpoints::join(
            nets,
            &lock,
            &record,
            &who,
            &endpoint,
            &container.dir,
            std::os::fd::AsFd::as_fd(&namespace),
            list.len(),
        )?;
        // The lease is the monitor's: it lives as long as the container.
        hand_leases_to_monitor(nets, &lock, &container)?;
        nets.refresh_hosts(&lock, std::slice::from_ref(&record.id))?;
    }
    list.push(endpoint);
    endpoints::write_endpoints(&container.dir, &list)
}

/// Leases made by `connect` for a running container are held by its
/// monitor, so they are freed when the container ends.
fn hand_leases_to_monitor(
    nets: &Networks,
    lock: &networks::NetworkLock,
    container: &crate::commands::container::Container,
) -> anyhow::Result<()> {
    let me = std::process::id();
    for record in nets.list()? {
        for mut lease in nets.leases(&record.id)? {
            if lease.container == container.config.id
                && u32::try_from(lease.owner_pid).ok() == Some(me)
            {
                lease.owner_pid = container.state.monitor_pid;
                lease.owner_start = container.state.monitor_start;
                lease.boot_id.clone_from(&container.state.boot_id);
                let address = lease.ip_address.parse().ok();
                nets.release(lock, &record.id, &lease.ip_address)?;
                nets.allocate(lock, &record, lease, address)?;
            }
        }
    }
    Ok(())
}

fn disconnect(root: &Path, nets: &Networks, network: &str, key: &str) -> anyhow::Result<()> {
    let containers = Containers::at(root);
    let container = crate::commands::container::find_in(&containers, key)?;
    let lock = nets.lock()?;
    let record = nets.find(network)?;
    let mut list = endpoints::read_endpoints(&container.dir)?;
    let before = list.len();
    list.retain(|e| !nets.find(&e.network).is_ok_and(|r| r.id == record.id));
    if list.len() == before {
        bail!(
            "container {} is not connected to network {}",
            container.config.id,
            record.name
        );
    }
    for lease in nets.leases(&record.id)? {
        if lease.container == container.config.id {
            let _ = kiln_runtime::bridge::remove_interface(&lease.interface);
            nets.release(&lock, &record.id, &lease.ip_address)?;
        }
    }
    nets.refresh_hosts(&lock, std::slice::from_ref(&record.id))?;
    // Its own hosts file loses the peers of that network.
    let own = container.dir.join("hosts");
    if own.is_file() {
        let text = nets.hosts_for(&lock, &container.config.id)?;
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&own)
        {
            let _ = file.write_all(text.as_bytes());
        }
    }
    endpoints::write_endpoints(&container.dir, &list).context("cannot record the disconnection")
}

/// Docker's `NetworkSettings` fields of a container on bridge networks
/// (`Gateway`, `IPAddress`, `IPPrefixLen`, `MacAddress` of the default
/// `bridge` network, as Docker fills them, and `Networks`), from its
/// endpoints and, while it runs, its leases. Empty for other modes.
pub fn settings(container: &crate::commands::container::Container) -> Map<String, Value> {
    let mut out = Map::new();
    let Ok(list) = endpoints::read_endpoints(&container.dir) else {
        return out;
    };
    if list.is_empty() {
        return out;
    }
    let Some(root) = container.dir.parent().and_then(Path::parent) else {
        return out;
    };
    let nets = Networks::at(root);
    let running = container.is_running();
    let mut networks = Map::new();
    for (key, value) in [
        ("Gateway", json!("")),
        ("IPAddress", json!("")),
        ("IPPrefixLen", json!(0)),
        ("MacAddress", json!("")),
    ] {
        out.insert(key.to_owned(), value);
    }
    for endpoint in &list {
        let record = nets.find(&endpoint.network).ok();
        let lease = record.as_ref().filter(|_| running).and_then(|r| {
            nets.leases(&r.id)
                .ok()?
                .into_iter()
                .find(|l| l.container == container.config.id)
        });
        let prefix = record
            .as_ref()
            .and_then(|r| r.subnet().ok())
            .map_or(0, |(_, p)| p);
        let (ip, mac, gateway, prefix) = match &lease {
            Some(lease) => (
                lease.ip_address.clone(),
                lease.mac_address.clone(),
                record
                    .as_ref()
                    .map(|r| r.gateway.clone())
                    .unwrap_or_default(),
                prefix,
            ),
            None => (String::new(), String::new(), String::new(), 0),
        };
        let user = endpoint.network != DEFAULT_NETWORK;
        let mut dns_names = vec![
            container.config.name.clone(),
            container.short_id().to_owned(),
        ];
        dns_names.extend(endpoint.aliases.iter().cloned());
        if endpoint.network == DEFAULT_NETWORK {
            out.insert("Gateway".to_owned(), json!(gateway));
            out.insert("IPAddress".to_owned(), json!(ip));
            out.insert("IPPrefixLen".to_owned(), json!(prefix));
            out.insert("MacAddress".to_owned(), json!(mac));
        }
        networks.insert(
            endpoint.network.clone(),
            json!({
                "IPAMConfig": endpoint.ipv4_address.as_ref().map(|ip| json!({"IPv4Address": ip})),
                "Links": Value::Null,
                "Aliases": if endpoint.aliases.is_empty() { Value::Null } else { json!(endpoint.aliases) },
                "MacAddress": mac,
                "DriverOpts": Value::Null,
                "NetworkID": record.as_ref().map(|r| r.id.clone()).unwrap_or_default(),
                "EndpointID": "",
                "Gateway": gateway,
                "IPAddress": ip,
                "IPPrefixLen": prefix,
                "IPv6Gateway": "",
                "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0,
                "DNSNames": if user && running { json!(dns_names) } else { Value::Null },
            }),
        );
    }
    out.insert("Networks".to_owned(), Value::Object(networks));
    out
}
