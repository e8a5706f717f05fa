//! `kiln info` (`kiln system info`): what `docker info` shows, for the
//! parts a daemonless builder has: the store, its file system, the
//! kernel and machine, the runtime's security options.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use serde_json::{Value, json};

use crate::template::Template;
use crate::units::bytes_size;

/// Arguments of `kiln info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Format the output with a Go template (`{{.Driver}}`, `{{json .}}`),
    /// over the fields of `docker info --format`.
    #[arg(short, long, value_name = "TEMPLATE")]
    format: Option<String>,
}

/// Runs `kiln info`.
pub fn run(root: Option<&Path>, args: &InfoArgs) -> anyhow::Result<ExitCode> {
    let template = args
        .format
        .as_deref()
        .map(Template::parse_flag)
        .transpose()?;
    let store = super::open_store(root)?;
    let document = info_document(&store)?;
    let mut stdout = std::io::stdout().lock();
    match template {
        Some(template) => writeln!(stdout, "{}", template.execute(&document)?)?,
        None => write!(stdout, "{}", render(&document))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The info document, with `docker info --format`'s field names.
fn info_document(store: &kiln_store::Store) -> anyhow::Result<Value> {
    let images: BTreeSet<String> = store
        .images()?
        .iter()
        .map(|image| image.id.to_string())
        .collect();
    // Running (or restarting) per their state, liveness checked.
    let (containers, running) = container_counts(store);
    let (os_name, os_version) = operating_system();
    let mut security = Vec::new();
    if seccomp_supported() {
        security.push("name=seccomp,profile=default".to_owned());
    }
    // Rootless kiln runs this inside its own user namespace, as root.
    let rootless = kiln_rootfs::userns::rootless();
    if rootless {
        security.push("name=rootless".to_owned());
    }
    // The snapshotter builds and runs use on this store's file system:
    // overlay where the probe mounts one, else the copy fallback.
    let probe_dir = store.root().join("tmp");
    let probe_dir = if probe_dir.is_dir() {
        probe_dir
    } else {
        store.root().to_path_buf()
    };
    let choice = kiln_rootfs::mount::snapshotter(&probe_dir, rootless)?;
    let mut driver_status = vec![
        json!(["Backing Filesystem", backing_filesystem(store.root())]),
        json!(["Snapshotter", choice.reason]),
    ];
    if rootless && choice.snapshotter == kiln_rootfs::mount::Snapshotter::Overlay {
        // What overlay keeps its marks in.
        driver_status.push(json!(["userxattr", "true"]));
    }
    if rootless {
        // Which ids exist: with one, image owners are not kept.
        let map = fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
        let map: Vec<String> = map
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(":"))
            .collect();
        driver_status.push(json!(["ID Map", map.join(",")]));
        if let Some(how) = crate::userns::how_entered() {
            driver_status.push(json!(["User Namespace", how]));
        }
    }
    let version = env!("CARGO_PKG_VERSION");
    let runtime_path =
        std::env::current_exe().map_or_else(|_| "kiln".to_owned(), |p| p.display().to_string());
    Ok(json!({
        "Containers": containers,
        "ContainersRunning": running,
        "ContainersPaused": 0,
        "ContainersStopped": containers - running,
        "Images": images.len(),
        "Driver": choice.snapshotter.name(),
        "DriverStatus": driver_status,
        "CgroupVersion": kiln_runtime::cgroup_version().to_string(),
        "KernelVersion": proc_text("/proc/sys/kernel/osrelease"),
        "OperatingSystem": os_name,
        "OSVersion": os_version,
        "OSType": std::env::consts::OS,
        "Architecture": std::env::consts::ARCH,
        "NCPU": cpu_count(),
        "MemTotal": memory_total(),
        "DockerRootDir": store.root().display().to_string(),
        "Name": proc_text("/proc/sys/kernel/hostname"),
        "ServerVersion": version,
        "Runtimes": {"kiln": {"path": runtime_path}},
        "DefaultRuntime": "kiln",
        "SecurityOptions": security,
        "Platforms": runnable_platforms(),
        "PublishedPorts": published_ports_path(),
        "Warnings": null,
        "ClientInfo": {"Version": version, "Debug": false},
    }))
}

/// What serves containers' published ports from here (kiln's own line:
/// see docs/architecture.md, "Published ports").
fn published_ports_path() -> String {
    let proxy = "userland proxy";
    if kiln_rootfs::userns::rootless() {
        format!("{proxy} (rootless: no bridge networks)")
    } else if let Err(e) = kiln_runtime::bridge::check_tools() {
        format!("{proxy} ({e})")
    } else if !crate::commands::network::endpoints::kernel_forwarding_wanted() {
        format!(
            "{proxy} ({}=1)",
            crate::commands::network::endpoints::PROXY_ONLY_ENV
        )
    } else {
        format!(
            "nftables DNAT on bridge networks (table inet {}), {proxy} for 127.0.0.1 and slirp4netns",
            kiln_runtime::bridge::TABLE
        )
    }
}

/// The document as `docker info` lays it out: a Client and a Server
/// section, one ` Label: value` line each, nested items indented.
fn render(info: &Value) -> String {
    let text = |key: &str| match info.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let mut out: Vec<String> = Vec::new();
    out.push("Client:".to_owned());
    out.push(format!(" Version:    {}", text("ServerVersion")));
    out.push("\nServer:".to_owned());
    out.push(format!(" Containers: {}", text("Containers")));
    out.push(format!("  Running: {}", text("ContainersRunning")));
    out.push(format!("  Paused: {}", text("ContainersPaused")));
    out.push(format!("  Stopped: {}", text("ContainersStopped")));
    out.push(format!(" Images: {}", text("Images")));
    out.push(format!(" Server Version: {}", text("ServerVersion")));
    out.push(format!(" Storage Driver: {}", text("Driver")));
    for pair in info["DriverStatus"].as_array().into_iter().flatten() {
        let field = |i: usize| pair.get(i).and_then(Value::as_str).unwrap_or("");
        out.push(format!("  {}: {}", field(0), field(1)));
    }
    out.push(format!(" Cgroup Version: {}", text("CgroupVersion")));
    let runtimes: Vec<&String> = info["Runtimes"]
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    out.push(format!(
        " Runtimes: {}",
        runtimes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    ));
    out.push(format!(" Default Runtime: {}", text("DefaultRuntime")));
    let options: Vec<&str> = info["SecurityOptions"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !options.is_empty() {
        out.push(" Security Options:".to_owned());
        // Docker's `name=seccomp,profile=default` as a name and its
        // capitalised keys below it.
        for option in options {
            for (i, part) in option.split(',').enumerate() {
                let (key, value) = part.split_once('=').unwrap_or((part, ""));
                if i == 0 {
                    out.push(format!("  {value}"));
                } else {
                    let mut chars = key.chars();
                    let key: String = chars
                        .next()
                        .map(|c| c.to_uppercase().chain(chars).collect())
                        .unwrap_or_default();
                    out.push(format!("   {key}: {value}"));
                }
            }
        }
    }
    // What RUN steps (and `kiln run`) can execute: natively, or through
    // qemu-user-static's binfmt_misc handlers.
    let platforms: Vec<String> = info["Platforms"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let name = p["Platform"].as_str().unwrap_or("");
            match p["Handler"].as_str() {
                Some(handler) => format!("{name} (emulated: {handler})"),
                None => name.to_owned(),
            }
        })
        .collect();
    if !platforms.is_empty() {
        out.push(format!(" Platforms: {}", platforms.join(", ")));
    }
    out.push(format!(" Kernel Version: {}", text("KernelVersion")));
    out.push(format!(" Operating System: {}", text("OperatingSystem")));
    out.push(format!(" OSType: {}", text("OSType")));
    out.push(format!(" Architecture: {}", text("Architecture")));
    out.push(format!(" CPUs: {}", text("NCPU")));
    out.push(format!(
        " Total Memory: {}",
        bytes_size(info["MemTotal"].as_u64().unwrap_or(0))
    ));
    out.push(format!(" Name: {}", text("Name")));
    out.push(format!(" Kiln Root Dir: {}", text("DockerRootDir")));
    if let Some(path) = info["PublishedPorts"].as_str() {
        out.push(format!(" Published Ports: {path}"));
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

/// The platforms this machine can run, for `Platforms`: each with the
/// `binfmt_misc` handler and interpreter that emulate it, if any.
fn runnable_platforms() -> Value {
    kiln_runtime::binfmt::runnable_platforms()
        .into_iter()
        .map(|(platform, handler)| match handler {
            None => json!({"Platform": platform, "Emulated": false}),
            Some(h) => json!({
                "Platform": platform,
                "Emulated": true,
                "Handler": h.name,
                "Interpreter": h.interpreter.display().to_string(),
            }),
        })
        .collect()
}

/// Containers in the store: the directories under `containers/`. kiln
/// keeps no running state there yet, so all count as stopped; the
/// container commands replace this with their own state.
fn container_counts(store: &kiln_store::Store) -> (usize, usize) {
    let ids = store.container_ids().unwrap_or_default();
    let running = ids
        .iter()
        .filter(|id| {
            kiln_store::containers::current_state(&store.container_dir(id))
                .is_ok_and(|s| matches!(s.status.as_str(), "running" | "restarting"))
        })
        .count();
    (ids.len(), running)
}

/// A one-line file of /proc, trimmed; empty when unreadable.
fn proc_text(path: &str) -> String {
    fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// `PRETTY_NAME` and `VERSION_ID` of /etc/os-release, as Docker reads them.
fn operating_system() -> (String, String) {
    let text = fs::read_to_string("/etc/os-release")
        .or_else(|_| fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_owned())
    };
    (
        field("PRETTY_NAME").unwrap_or_else(|| "Linux".to_owned()),
        field("VERSION_ID").unwrap_or_default(),
    )
}

/// The CPUs this process may run on (Go's `runtime.NumCPU`, which Docker
/// reports): the `Cpus_allowed_list` of /proc/self/status.
fn cpu_count() -> usize {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let count = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map_or(0, count_cpu_list);
    if count > 0 {
        count
    } else {
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    }
}

/// Counts a CPU list such as `0-3,8,10-11`.
fn count_cpu_list(list: &str) -> usize {
    list.trim()
        .split(',')
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_once('-') {
            Some((low, high)) => match (low.parse::<usize>(), high.parse::<usize>()) {
                (Ok(low), Ok(high)) if high >= low => high - low + 1,
                _ => 0,
            },
            None => usize::from(part.parse::<usize>().is_ok()),
        })
        .sum()
}

/// `MemTotal` of /proc/meminfo in bytes, as Docker reads it.
fn memory_total() -> u64 {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
            let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

/// Whether the kernel has seccomp (the runtime applies Docker's default
/// profile then).
fn seccomp_supported() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|s| s.contains("\nSeccomp:"))
}

/// The file system under `path` by Docker's names for the magic numbers
/// (`extfs` for ext2/3/4, `xfs`, `btrfs`, ...; `<unknown>` otherwise).
fn backing_filesystem(path: &Path) -> String {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return "<unknown>".to_owned();
    };
    // SAFETY: statfs is plain old data; all-zero bytes are a valid value.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a NUL-terminated string and buf a valid statfs
    // that lives across the call.
    if unsafe { libc::statfs(c_path.as_ptr(), &raw mut buf) } != 0 {
        return "<unknown>".to_owned();
    }
    #[allow(
        clippy::useless_conversion,
        reason = "f_type is i64 on 64-bit Linux, narrower elsewhere"
    )]
    let magic = i64::from(buf.f_type);
    filesystem_name(magic).to_owned()
}

/// Docker's `graphdriver.FsNames`.
fn filesystem_name(magic: i64) -> &'static str {
    match magic {
        0xEF53 => "extfs",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x794C_7630 => "overlayfs",
        0x2FC1_2FC1 => "zfs",
        0x6969 => "nfs",
        0xF2F5_2010 => "f2fs",
        0x7371_7368 => "squashfs",
        0x8584_58F6 => "ramfs",
        0x6175_6673 => "aufs",
        0x28CD_3D45 => "cramfs",
        0xF15F => "ecryptfs",
        0x4750_4653 => "gpfs",
        0x72B6 => "jffs2",
        0x3153_464A => "jfs",
        0x5265_4973 => "reiserfs",
        0x517B => "smb",
        0xA501_FCF5 => "vxfs",
        _ => "<unknown>",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_count_like_the_kernel_writes_them() {
        assert_eq!(count_cpu_list("0-3,8,10-11\n"), 7);
        assert_eq!(count_cpu_list("0"), 1);
        assert_eq!(count_cpu_list(""), 0);
    }

    #[test]
    fn info_renders_docker_sections() {
        let info = json!({
            "Containers": 0, "ContainersRunning": 0, "ContainersPaused": 0,
            "ContainersStopped": 0, "Images": 3, "Driver": "overlay",
            "DriverStatus": [["Backing Filesystem", "extfs"]],
            "CgroupVersion": "2", "KernelVersion": "6.1.0", "OperatingSystem":
            "Debian GNU/Linux 12 (bookworm)", "OSVersion": "12", "OSType": "linux",
            "Architecture": "x86_64", "NCPU": 2, "MemTotal": 25_276_203_008_u64,
            "DockerRootDir": "/var/lib/kiln", "Name": "vm", "ServerVersion": "0.1.0",
            "Runtimes": {"kiln": {"path": "/usr/bin/kiln"}}, "DefaultRuntime": "kiln",
            "SecurityOptions": ["name=seccomp,profile=default", "name=rootless"],
            "Platforms": [
                {"Platform": "linux/amd64", "Emulated": false},
                {"Platform": "linux/arm64", "Emulated": true, "Handler": "qemu-aarch64",
                 "Interpreter": "/usr/libexec/qemu-binfmt/aarch64-binfmt-P"},
            ],
        });
        assert_eq!(
            render(&info),
            "Client:\n \
             Version:    0.1.0\n\
             \n\
             Server:\n \
             Containers: 0\n  \
             Running: 0\n  \
             Paused: 0\n  \
             Stopped: 0\n \
             Images: 3\n \
             Server Version: 0.1.0\n \
             Storage Driver: overlay\n  \
             Backing Filesystem: extfs\n \
             Cgroup Version: 2\n \
             Runtimes: kiln\n \
             Default Runtime: kiln\n \
             Security Options:\n  \
             seccomp\n   \
             Profile: default\n  \
             rootless\n \
             Platforms: linux/amd64, linux/arm64 (emulated: qemu-aarch64)\n \
             Kernel Version: 6.1.0\n \
             Operating System: Debian GNU/Linux 12 (bookworm)\n \
             OSType: linux\n \
             Architecture: x86_64\n \
             CPUs: 2\n \
             Total Memory: 23.54GiB\n \
             Name: vm\n \
             Kiln Root Dir: /var/lib/kiln\n"
        );
    }
}
