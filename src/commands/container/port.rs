//! `kiln port`: the published ports of a container, as `docker port`
//! prints them (`80/tcp -> 0.0.0.0:18080`, or the host addresses alone
//! for one port).

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

use super::publish;

/// Arguments of `kiln port`.
#[derive(Debug, Args)]
pub struct PortArgs {
    /// The container (ID, ID prefix or name).
    container: String,
    /// Only this port (`PORT[/PROTO]`, tcp by default).
    #[arg(value_name = "PRIVATE_PORT[/PROTO]")]
    port: Option<String>,
}

/// Runs `kiln port`.
pub fn run(root: Option<&Path>, args: &PortArgs) -> anyhow::Result<ExitCode> {
    let store = super::containers_at(root);
    let container = super::find_in(&store, &args.container)?;
    // Only a running container's monitor holds the ports.
    let ports = super::ps::running_ports(&container);
    let mut bindings = publish::bindings_of(&ports);
    // Docker sorts naturally: 80/tcp before 443/tcp.
    bindings.sort_by_key(|(key, host)| {
        let (number, proto) = key.split_once('/').unwrap_or((key, ""));
        (
            number.parse::<u32>().unwrap_or(0),
            proto.to_owned(),
            host.clone(),
        )
    });
    let out: Vec<String> = match &args.port {
        Some(port) => {
            let (number, proto) = port.split_once('/').unwrap_or((port, "tcp"));
            if let Err(e) = number.parse::<u16>() {
                // Go's words for what Rust's parse found.
                let why = if matches!(e.kind(), std::num::IntErrorKind::PosOverflow) {
                    "value out of range"
                } else {
                    "invalid syntax"
                };
                bail!("invalid port ({number}): strconv.ParseUint: parsing {number:?}: {why}");
            }
            let key = format!("{number}/{proto}");
            let found: Vec<String> = bindings
                .into_iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, host)| host)
                .collect();
            if found.is_empty() {
                bail!("No public port '{key}' published for {}", args.container);
            }
            found
        }
        None => bindings
            .into_iter()
            .map(|(key, host)| format!("{key} -> {host}"))
            .collect(),
    };
    for line in out {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
