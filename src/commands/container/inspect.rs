//! The inspect document of a container, in `docker container inspect`'s
//! shape and field order, as far as kiln has the fields.

use serde_json::{Value, json};

use super::Container;
use super::monitor::log_path;

/// `docker container inspect`'s document for `container`.
pub fn document(container: &Container) -> Value {
    let config = &container.config;
    let state = &container.state;
    let running = state.status == "running";
    let mounts: Vec<Value> = config
        .host_config
        .get("Binds")
        .and_then(Value::as_array)
        .map(|binds| {
            binds
                .iter()
                .filter_map(Value::as_str)
                .map(|bind| {
                    let parts: Vec<&str> = bind.split(':').collect();
                    let read_only = parts.get(2) == Some(&"ro");
                    json!({
                        "Type": "bind",
                        "Source": parts.first().copied().unwrap_or(""),
                        "Destination": parts.get(1).copied().unwrap_or(""),
                        "Mode": if read_only { "ro" } else { "" },
                        "RW": !read_only,
                        "Propagation": "rprivate",
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let network = config
        .host_config
        .get("NetworkMode")
        .and_then(Value::as_str)
        .unwrap_or("bridge");
    let mut state_doc = json!({
        "Status": state.status,
        "Running": running,
        "Paused": false,
        "Restarting": state.status == "restarting",
        "OOMKilled": state.oom_killed,
        "Dead": state.status == "dead",
        "Pid": if running { state.pid } else { 0 },
        "ExitCode": state.exit_code,
        "Error": state.error,
        "StartedAt": state.started_at,
        "FinishedAt": state.finished_at,
    });
    if let (Some(health), Some(map)) = (&state.health, state_doc.as_object_mut()) {
        map.insert("Health".to_owned(), health.clone());
    }
    let mut document = json!({
        "Id": config.id,
        "Created": config.created,
        "Path": config.path,
        "Args": config.args,
        "State": state_doc,
        "Image": config.image_id,
        "ResolvConfPath": "",
        "HostnamePath": "",
        "HostsPath": "",
        "LogPath": log_path(&container.dir, &config.id),
        "Name": format!("/{}", config.name),
        "RestartCount": state.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": Value::Null,
        "HostConfig": config.host_config,
        "GraphDriver": {
            "Data": {"UpperDir": container.dir.join(kiln_store::containers::UPPER_DIR)},
            "Name": "overlay",
        },
        "Mounts": mounts,
        "Config": config.config,
        "NetworkSettings": {
            "Bridge": "",
            "SandboxID": "",
            "Ports": super::ps::running_ports(container),
            "SandboxKey": "",
            "Networks": {network: {}},
        },
    });
    if let Some(Value::Object(settings)) = document.get_mut("NetworkSettings") {
        for (key, value) in crate::commands::network::settings(container) {
            settings.insert(key, value);
        }
    }
    document
}
