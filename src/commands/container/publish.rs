//! Published ports: `-p`/`--expose` parsed as Docker parses them
//! (go-connections' `nat.ParsePortSpec`, its error messages verbatim),
//! kept in Docker's `HostConfig.PortBindings` and `Config.ExposedPorts`,
//! turned into the runtime's [`PortSpec`]s when the container starts, and
//! what the proxy bound shown as Docker's `NetworkSettings.Ports`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::bail;
use kiln_runtime::ports::{PortSpec, Protocol, PublishedPort};
use serde_json::{Map, Value, json};

/// One `-p` mapping: the container's `PORT/PROTO` and the host side as
/// Docker keeps it (`HostIp` empty for every address, `HostPort` empty for
/// any free port, or a range to choose from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    /// `80/tcp`.
    pub port: String,
    /// Docker's `HostIp`.
    pub host_ip: String,
    /// Docker's `HostPort`.
    pub host_port: String,
}

/// go-connections' `ParsePortRange`: `N` or `N-M` of 16-bit numbers.
fn parse_range(text: &str) -> Option<(u16, u16)> {
    if text.is_empty() {
        return None;
    }
    match text.split_once('-') {
        None => text.parse().ok().map(|p| (p, p)),
        Some((start, end)) => {
            let (start, end): (u16, u16) = (start.parse().ok()?, end.parse().ok()?);
            (end >= start).then_some((start, end))
        }
    }
}

/// go-connections' `SplitProtoPort`: `80/udp` to (`udp`, `80`), `80` to
/// (`tcp`, `80`).
fn split_proto_port(raw: &str) -> (&str, &str) {
    let mut parts = raw.split('/');
    let port = parts.next().unwrap_or("");
    if raw.is_empty() || port.is_empty() {
        return ("", "");
    }
    match parts.next() {
        None | Some("") => ("tcp", port),
        Some(proto) => (proto, port),
    }
}

/// Parses one `-p` value as Docker does: `[[IP:]HOSTPORT:]PORT[/PROTO]`,
/// either port a range (`8000-8009:80-89`; a host range with one
/// container port is a range to choose a free port from).
pub fn parse_publish(raw: &str) -> anyhow::Result<Vec<PortMapping>> {
    let parts: Vec<&str> = raw.split(':').collect();
    let n = parts.len();
    let container = parts.last().copied().unwrap_or("");
    let (ip, host_port) = match n {
        1 => (String::new(), ""),
        2 => (String::new(), parts.first().copied().unwrap_or("")),
        _ => (
            parts.get(..n - 2).unwrap_or_default().join(":"),
            parts.get(n - 2).copied().unwrap_or(""),
        ),
    };
    let (proto, container_port) = split_proto_port(container);
    let mut ip = ip;
    if let Some(inner) = ip.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            bail!("invalid IP address {ip}: missing ']' in address");
        };
        ip = inner.to_owned();
    }
    if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
        bail!("invalid IP address: {ip}");
    }
    if container_port.is_empty() {
        bail!("no port specified: {raw}<empty>");
    }
    let Some((start, end)) = parse_range(container_port) else {
        bail!("invalid containerPort: {container_port}");
    };
    let host_range = if host_port.is_empty() {
        None
    } else {
        let Some(range) = parse_range(host_port) else {
            bail!("invalid hostPort: {host_port}");
        };
        Some(range)
    };
    if let Some((host_start, host_end)) = host_range
        && end - start != host_end - host_start
        && end != start
    {
        bail!(
            "invalid ranges specified for container and host Ports: {container_port} and {host_port}"
        );
    }
    let proto = proto.to_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        bail!("invalid proto: {proto}");
    }
    if proto == "sctp" {
        bail!("invalid proto: sctp: kiln's port proxy publishes tcp and udp only");
    }
    let mut mappings = Vec::new();
    for offset in 0..=(end - start) {
        let host_port = match host_range {
            None => String::new(),
            // One container port and a host range: the range to choose from.
            Some((host_start, host_end)) if start == end && host_start != host_end => {
                format!("{host_start}-{host_end}")
            }
            Some((host_start, _)) => (host_start + offset).to_string(),
        };
        mappings.push(PortMapping {
            port: format!("{}/{proto}", start + offset),
            host_ip: ip.clone(),
            host_port,
        });
    }
    Ok(mappings)
}

/// Parses one `--expose` value (`PORT[/PROTO]` or a range) as Docker does.
pub fn parse_expose(raw: &str) -> anyhow::Result<Vec<String>> {
    if raw.contains(':') {
        bail!("invalid port format for --expose: {raw}");
    }
    let (proto, port) = split_proto_port(raw);
    let Some((start, end)) = parse_range(port) else {
        bail!("invalid range format for --expose: {raw}");
    };
    let proto = proto.to_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp") {
        bail!("invalid proto: {proto}");
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// Docker's `HostConfig.PortBindings` of `mappings`.
pub fn port_bindings(mappings: &[PortMapping]) -> Value {
    let mut map: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for m in mappings {
        map.entry(&m.port)
            .or_default()
            .push(json!({"HostIp": m.host_ip, "HostPort": m.host_port}));
    }
    json!(map)
}

/// `80/tcp` to (80, TCP); `None` for what kiln does not publish.
fn port_key(key: &str) -> Option<(u16, Protocol)> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let protocol = match proto {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        _ => return None,
    };
    Some((port.parse().ok()?, protocol))
}

/// What the container's proxy binds: every binding of
/// `HostConfig.PortBindings`, and with `PublishAllPorts` (`-P`) every
/// port of `Config.ExposedPorts` that has none, on a free host port.
pub fn port_specs(config: &Value, host_config: &Value) -> anyhow::Result<Vec<PortSpec>> {
    let mut specs = Vec::new();
    let bindings = host_config
        .get("PortBindings")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut add = |key: &str, host_ip: &str, host_port: &str| -> anyhow::Result<()> {
        let Some((container_port, protocol)) = port_key(key) else {
            bail!("cannot publish {key}: kiln publishes tcp and udp ports");
        };
        let host_ip: IpAddr = if host_ip.is_empty() {
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
        } else {
            host_ip
                .parse()
                .map_err(|_| anyhow::anyhow!("invalid IP address: {host_ip}"))?
        };
        let (first, last) = if host_port.is_empty() {
            (0, 0)
        } else {
            parse_range(host_port)
                .ok_or_else(|| anyhow::anyhow!("invalid hostPort: {host_port}"))?
        };
        specs.push(PortSpec {
            protocol,
            host_ip,
            host_port_first: first,
            host_port_last: last,
            container_port,
        });
        Ok(())
    };
    for (key, list) in &bindings {
        for binding in list.as_array().map(Vec::as_slice).unwrap_or_default() {
            let field = |name: &str| binding.get(name).and_then(Value::as_str).unwrap_or("");
            add(key, field("HostIp"), field("HostPort"))?;
        }
    }
    let publish_all = host_config
        .get("PublishAllPorts")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if publish_all && let Some(exposed) = config.get("ExposedPorts").and_then(Value::as_object) {
        for key in exposed.keys() {
            if !bindings.contains_key(key) {
                add(key, "", "")?;
            }
        }
    }
    Ok(specs)
}

/// Docker's `NetworkSettings.Ports` of a running container: each exposed
/// port with its host bindings, or null when it is not published.
pub fn network_ports(config: &Value, published: &[PublishedPort]) -> Value {
    let mut map = Map::new();
    if let Some(exposed) = config.get("ExposedPorts").and_then(Value::as_object) {
        for key in exposed.keys() {
            map.insert(key.clone(), Value::Null);
        }
    }
    for port in published {
        let key = format!("{}/{}", port.container_port, port.protocol);
        let entry = map.entry(key).or_insert_with(|| json!([]));
        if !entry.is_array() {
            *entry = json!([]);
        }
        if let Value::Array(list) = entry {
            list.push(json!({
                "HostIp": port.host.ip().to_string(),
                "HostPort": port.host.port().to_string(),
            }));
        }
    }
    Value::Object(map)
}

/// The (container port key, host address) pairs of a `NetworkSettings.Ports`
/// map, the host address as Go's `net.JoinHostPort` writes it.
pub fn bindings_of(ports: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(map) = ports.as_object() {
        for (key, list) in map {
            for binding in list.as_array().map(Vec::as_slice).unwrap_or_default() {
                let ip = binding.get("HostIp").and_then(Value::as_str).unwrap_or("");
                let port = binding
                    .get("HostPort")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let host = if ip.contains(':') {
                    format!("[{ip}]:{port}")
                } else {
                    format!("{ip}:{port}")
                };
                out.push((key.clone(), host));
            }
        }
    }
    out
}

/// One row of Docker's `types.Port`: a container port, and the host
/// address and port it is published on (empty and 0 when it is not).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PsPort {
    private: u16,
    ip: String,
    public: u16,
    protocol: String,
}

/// The PORTS column of `ps`, as Docker's `DisplayablePorts` writes it:
/// ports published on the same number and unpublished ones grouped into
/// ranges per address and protocol (`0.0.0.0:80-81->80-81/tcp`,
/// `443/tcp`), then each port published on another number
/// (`0.0.0.0:18080->80/tcp`), joined by `, `.
pub fn ps_column(ports: &Value) -> String {
    let Some(map) = ports.as_object() else {
        return String::new();
    };
    let mut rows: Vec<PsPort> = Vec::new();
    for (key, list) in map {
        let (port, protocol) = key.split_once('/').unwrap_or((key, "tcp"));
        let Ok(private) = port.parse::<u16>() else {
            continue;
        };
        let bindings = list.as_array().map(Vec::as_slice).unwrap_or_default();
        if bindings.is_empty() {
            rows.push(PsPort {
                private,
                ip: String::new(),
                public: 0,
                protocol: protocol.to_owned(),
            });
        }
        for binding in bindings {
            let field = |name: &str| binding.get(name).and_then(Value::as_str).unwrap_or("");
            rows.push(PsPort {
                private,
                ip: field("HostIp").to_owned(),
                public: field("HostPort").parse().unwrap_or(0),
                protocol: protocol.to_owned(),
            });
        }
    }
    // Docker's comparePorts: private port, address, public port, type.
    rows.sort();
    let mut groups: Vec<(String, u16, u16)> = Vec::new();
    let mut done: Vec<String> = Vec::new();
    let mut host_mappings: Vec<String> = Vec::new();
    for row in rows {
        let key = if row.ip.is_empty() {
            row.protocol.clone()
        } else if row.public != row.private {
            let host = if row.ip.contains(':') {
                format!("[{}]:{}", row.ip, row.public)
            } else {
                format!("{}:{}", row.ip, row.public)
            };
            host_mappings.push(format!("{host}->{}/{}", row.private, row.protocol));
            continue;
        } else {
            format!("{}/{}", row.ip, row.protocol)
        };
        match groups.iter_mut().find(|(k, ..)| *k == key) {
            None => groups.push((key, row.private, row.private)),
            Some(group) if row.private == group.2.saturating_add(1) => group.2 = row.private,
            Some(group) => {
                done.push(form_group(&group.0, group.1, group.2));
                group.1 = row.private;
                group.2 = row.private;
            }
        }
    }
    done.extend(
        groups
            .iter()
            .map(|(key, first, last)| form_group(key, *first, *last)),
    );
    done.extend(host_mappings);
    done.join(", ")
}

/// Docker's `formGroup`: `80-81/tcp`, or `IP:80-81->80-81/tcp`.
fn form_group(key: &str, first: u16, last: u16) -> String {
    let (ip, protocol) = key.rsplit_once('/').unwrap_or(("", key));
    let mut group = first.to_string();
    if first != last {
        group = format!("{group}-{last}");
    }
    if !ip.is_empty() {
        group = format!("{ip}:{group}->{group}");
    }
    format!("{group}/{protocol}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(port: &str, host_ip: &str, host_port: &str) -> PortMapping {
        PortMapping {
            port: port.to_owned(),
            host_ip: host_ip.to_owned(),
            host_port: host_port.to_owned(),
        }
    }

    #[test]
    fn publish_forms_parse_as_dockers() {
        assert_eq!(
            parse_publish("18080:80").unwrap(),
            [mapping("80/tcp", "", "18080")]
        );
        assert_eq!(
            parse_publish("127.0.0.1:18080:80/udp").unwrap(),
            [mapping("80/udp", "127.0.0.1", "18080")]
        );
        assert_eq!(
            parse_publish("127.0.0.1::80").unwrap(),
            [mapping("80/tcp", "127.0.0.1", "")]
        );
        assert_eq!(parse_publish("80").unwrap(), [mapping("80/tcp", "", "")]);
        assert_eq!(
            parse_publish("[::1]:8080:80/TCP").unwrap(),
            [mapping("80/tcp", "::1", "8080")]
        );
        assert_eq!(
            parse_publish("8000-8001:80-81").unwrap(),
            [mapping("80/tcp", "", "8000"), mapping("81/tcp", "", "8001")]
        );
        assert_eq!(
            parse_publish("8000-8009:80").unwrap(),
            [mapping("80/tcp", "", "8000-8009")]
        );
    }

    #[test]
    fn publish_errors_are_dockers() {
        let err = |raw: &str| parse_publish(raw).unwrap_err().to_string();
        assert_eq!(err("8080:x"), "invalid containerPort: x");
        assert_eq!(err("x:80"), "invalid hostPort: x");
        assert_eq!(err("80/sctpx"), "invalid proto: sctpx");
        assert_eq!(err("1.2.3:80:80"), "invalid IP address: 1.2.3");
        assert_eq!(err("8080:"), "no port specified: 8080:<empty>");
        assert_eq!(err("70000"), "invalid containerPort: 70000");
        assert_eq!(
            err("8000-8001:80-82"),
            "invalid ranges specified for container and host Ports: 80-82 and 8000-8001"
        );
        assert_eq!(
            err("80/sctp"),
            "invalid proto: sctp: kiln's port proxy publishes tcp and udp only"
        );
    }

    #[test]
    fn expose_parses_as_dockers() {
        assert_eq!(parse_expose("80").unwrap(), ["80/tcp"]);
        assert_eq!(parse_expose("53-54/udp").unwrap(), ["53/udp", "54/udp"]);
        assert_eq!(
            parse_expose("1:2").unwrap_err().to_string(),
            "invalid port format for --expose: 1:2"
        );
        assert_eq!(
            parse_expose("x").unwrap_err().to_string(),
            "invalid range format for --expose: x"
        );
    }

    #[test]
    fn bindings_become_specs_and_publish_all_adds_the_exposed_ports() {
        let host_config = json!({
            "PortBindings": port_bindings(&[mapping("80/tcp", "127.0.0.1", "8000-8009")]),
            "PublishAllPorts": true,
        });
        let config = json!({"ExposedPorts": {"80/tcp": {}, "53/udp": {}}});
        let specs = port_specs(&config, &host_config).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].host_port_first, 8000);
        assert_eq!(specs[0].host_port_last, 8009);
        assert_eq!(specs[1].protocol, Protocol::Udp);
        assert_eq!(specs[1].host_port_first, 0);
    }

    #[test]
    fn network_ports_and_the_ps_column_look_like_dockers() {
        let config = json!({"ExposedPorts": {"80/tcp": {}, "443/tcp": {}}});
        let published = [PublishedPort {
            protocol: Protocol::Tcp,
            host: "0.0.0.0:18080".parse().unwrap(),
            container_port: 80,
        }];
        let ports = network_ports(&config, &published);
        assert_eq!(
            ports,
            json!({"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "18080"}], "443/tcp": null})
        );
        // As Docker: groups first, then ports published on another number.
        assert_eq!(ps_column(&ports), "443/tcp, 0.0.0.0:18080->80/tcp");
        let same = json!({
            "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "80"}],
            "81/tcp": [{"HostIp": "0.0.0.0", "HostPort": "81"}],
            "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}],
            "90/tcp": null,
            "91/tcp": null,
        });
        assert_eq!(
            ps_column(&same),
            "0.0.0.0:80-81->80-81/tcp, 90-91/tcp, 127.0.0.1:5353->53/udp"
        );
    }
}
