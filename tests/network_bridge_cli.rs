//! Bridge networks end to end, as root: `kiln network create|ls|inspect|
//! rm`, containers on a user network reaching each other by name and
//! alias but not a container of another network, the default `bridge`
//! network's outbound NAT (to a listener in a network namespace the test
//! makes: no traffic leaves for any other address), the cleanup of veths,
//! leases and nftables elements after `rm -f`, a kill -9 of the monitor
//! and `network rm`, and the errors (address exhaustion, unknown network,
//! overlapping subnets). They need ip and nft, and print SKIPPED without
//! them (or without root) unless `KILN_REQUIRE_NETWORK=1` (CI).
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Kiln;

fn can_run() -> bool {
    common::root_with_network_tools("bridge network tests", &["ip", "nft"])
}

/// A store with `bb:1` (busybox with the network applets) whose
/// containers and networks are removed when the test ends, pass or fail.
struct Store {
    kiln: Kiln,
}

impl Store {
    fn new() -> Store {
        let kiln = Kiln::new();
        let rootfs = kiln.path("rootfs");
        common::busybox_rootfs(&rootfs);
        for applet in ["nc", "wget", "httpd", "sleep", "mkdir", "ip", "hostname"] {
            let _ = symlink("busybox", rootfs.join("bin").join(applet));
        }
        kiln.ok(&["import", rootfs.to_str().unwrap(), "bb:1"]);
        Store { kiln }
    }

    /// A kept container serving `text` over HTTP on port 80.
    fn web(&self, args: &[&str], text: &str) -> String {
        let script =
            format!("mkdir /www && echo {text} > /www/index.html && httpd -f -p 80 -h /www");
        let mut all = vec!["run", "-d"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["bb:1", "sh", "-c", &script]);
        self.kiln.ok(&all).trim().to_owned()
    }

    /// The network's record: (ID, bridge name).
    fn network(&self, name: &str) -> (String, String) {
        let out = self.kiln.ok(&["network", "inspect", name]);
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        let net = &doc[0];
        (
            net["Id"].as_str().unwrap().to_owned(),
            net["Options"]["com.docker.network.bridge.name"]
                .as_str()
                .unwrap()
                .to_owned(),
        )
    }

    fn leases(&self, id: &str) -> Vec<String> {
        let dir = self.kiln.root().join("networks").join(id).join("leases");
        fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let ids = self.kiln.run(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.kiln.run(&["rm", "-f", id]);
        }
        let nets = self.kiln.run(&["network", "ls", "-q", "--no-trunc"]);
        for id in String::from_utf8_lossy(&nets.stdout).split_whitespace() {
            let _ = self.kiln.run(&["network", "rm", id]);
        }
        // The default network cannot be removed by `network rm`: its
        // bridge and elements go by hand (a temporary store's).
        if let Ok(out) = String::from_utf8(self.kiln.run(&["network", "inspect", "bridge"]).stdout)
            && let Ok(doc) = serde_json::from_str::<serde_json::Value>(&out)
            && let Some(bridge) = doc[0]["Options"]["com.docker.network.bridge.name"].as_str()
        {
            let _ = Command::new("ip").args(["link", "delete", bridge]).status();
            for (set, element) in [
                ("bridges", format!("\"{bridge}\"")),
                ("same", format!("\"{bridge}\" . \"{bridge}\"")),
            ] {
                let _ = Command::new("nft")
                    .args([
                        "delete",
                        "element",
                        "inet",
                        "kiln",
                        set,
                        &format!("{{ {element} }}"),
                    ])
                    .stderr(Stdio::null())
                    .status();
            }
            if let Some(subnet) = doc[0]["IPAM"]["Config"][0]["Subnet"].as_str() {
                let _ = Command::new("nft")
                    .args([
                        "delete",
                        "element",
                        "inet",
                        "kiln",
                        "nat_subnets",
                        &format!("{{ {subnet} }}"),
                    ])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// A unique name for this test process and `what`.
fn unique(what: &str) -> String {
    format!("kt{}{what}", std::process::id() % 100_000)
}

fn links() -> String {
    String::from_utf8(
        Command::new("ip")
            .args(["-o", "link", "show"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
}

fn ruleset() -> String {
    String::from_utf8(
        Command::new("nft")
            .args(["list", "ruleset"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
}

/// Polls `condition` for up to 10 seconds (a network namespace is torn
/// down by the kernel in the background).
fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `wget` of `url` from a foreground container on `network`: its output.
fn fetch(store: &Store, network: &str, url: &str) -> (i32, String, String) {
    // busybox's wget crashes with -T; nc bounds the wait instead.
    let script =
        format!("wget -q -O- {url} & pid=$!; (sleep 5; kill $pid 2>/dev/null) & wait $pid");
    store.kiln.outcome(&[
        "run",
        "--rm",
        "--network",
        network,
        "bb:1",
        "sh",
        "-c",
        &script,
    ])
}

#[test]
fn containers_on_a_user_network_reach_each_other_by_name_and_alias_but_not_across_networks() {
    if !can_run() {
        return;
    }
    let store = Store::new();
    let front = unique("front");
    let back = unique("back");
    store.kiln.ok(&["network", "create", &front]);
    store.kiln.ok(&["network", "create", &back]);
    let ls = store.kiln.ok(&["network", "ls"]);
    assert!(ls.starts_with("NETWORK ID     NAME"), "{ls}");
    assert!(
        ls.contains(&front) && ls.contains(" bridge    local"),
        "{ls}"
    );
    let web = store.web(
        &[
            "--name",
            "web",
            "--network",
            &front,
            "--network-alias",
            "www",
        ],
        "front-page",
    );
    store.web(&["--name", "other", "--network", &back], "back-page");

    let (code, out, err) = fetch(&store, &front, "http://web/");
    assert_eq!((code, out.trim()), (0, "front-page"), "{err}");
    let (code, out, err) = fetch(&store, &front, "http://www/");
    assert_eq!((code, out.trim()), (0, "front-page"), "{err}");
    let short: String = web.chars().take(12).collect();
    let (code, out, err) = fetch(&store, &front, &format!("http://{short}/"));
    assert_eq!((code, out.trim()), (0, "front-page"), "{err}");

    // Not by name across networks, nor by address.
    let (code, _, err) = fetch(&store, &front, "http://other/");
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("bad address"), "{err}");
    let inspect = store.kiln.ok(&["inspect", "other"]);
    let doc: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    let other_ip = doc[0]["NetworkSettings"]["Networks"][&back]["IPAddress"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!other_ip.is_empty(), "{inspect}");
    let (code, out, _) = fetch(&store, &front, &format!("http://{other_ip}/"));
    assert!(
        code != 0 && out.is_empty(),
        "reached {other_ip} across networks: {out}"
    );

    // inspect: NetworkSettings as Docker's.
    let doc: serde_json::Value = serde_json::from_str(&store.kiln.ok(&["inspect", "web"])).unwrap();
    let settings = &doc[0]["NetworkSettings"]["Networks"][&front];
    let (front_id, _) = store.network(&front);
    assert_eq!(settings["NetworkID"], front_id.as_str());
    assert_eq!(settings["Aliases"], serde_json::json!(["www"]));
    let ip = settings["IPAddress"].as_str().unwrap();
    assert!(ip.ends_with(".2"), "{settings}");
    assert!(
        settings["Gateway"].as_str().unwrap().ends_with(".1"),
        "{settings}"
    );
    assert!(
        settings["MacAddress"]
            .as_str()
            .unwrap()
            .starts_with("02:42:"),
        "{settings}"
    );
    // network inspect lists it.
    let net: serde_json::Value =
        serde_json::from_str(&store.kiln.ok(&["network", "inspect", &front])).unwrap();
    assert_eq!(net[0]["Containers"][&web]["Name"], "web");
    assert_eq!(net[0]["Driver"], "bridge");
    assert!(
        net[0]["IPAM"]["Config"][0]["Subnet"]
            .as_str()
            .unwrap()
            .contains('/')
    );
}

#[test]
fn connect_and_disconnect_update_peers_hosts_files() {
    if !can_run() {
        return;
    }
    let store = Store::new();
    let a = unique("ca");
    let b = unique("cb");
    store.kiln.ok(&["network", "create", &a]);
    store.kiln.ok(&["network", "create", &b]);
    store.web(&["--name", "svc", "--network", &a], "svc-page");
    let (code, _, _) = fetch(&store, &b, "http://svc/");
    assert_ne!(code, 0);
    store
        .kiln
        .ok(&["network", "connect", "--alias", "api", &b, "svc"]);
    let (code, out, err) = fetch(&store, &b, "http://api/");
    assert_eq!((code, out.trim()), (0, "svc-page"), "{err}");
    let err = store.kiln.fails(&["network", "connect", &b, "svc"]);
    assert!(
        err.contains(&format!(
            "endpoint with name svc already exists in network {b}"
        )),
        "{err}"
    );
    store.kiln.ok(&["network", "disconnect", &b, "svc"]);
    let (code, _, _) = fetch(&store, &b, "http://api/");
    assert_ne!(code, 0);
    let err = store.kiln.fails(&["network", "disconnect", &b, "svc"]);
    assert!(
        err.contains(&format!("is not connected to network {b}")),
        "{err}"
    );
}

/// A network namespace with a veth to the host and a TCP listener: the
/// "outside" a container's outbound traffic may reach.
struct Outside {
    name: String,
    host_if: String,
    address: String,
}

impl Outside {
    fn new() -> Outside {
        let name = unique("out");
        let host_if = unique("oh");
        let n = std::process::id() % 200 + 20;
        let ip = |args: &[&str]| {
            let status = Command::new("ip").args(args).status().unwrap();
            assert!(status.success(), "ip {args:?}");
        };
        ip(&["netns", "add", &name]);
        let outside = Outside {
            name: name.clone(),
            host_if: host_if.clone(),
            address: format!("10.251.{n}.2"),
        };
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &name,
        ]);
        ip(&["addr", "add", &format!("10.251.{n}.1/24"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("10.251.{n}.2/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &name, "link", "set", "eth0", "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        outside
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        // The veth pair goes with the namespace too, later.
        let _ = Command::new("ip")
            .args(["link", "delete", &self.host_if])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

#[test]
fn the_default_bridge_reaches_the_outside_through_nat() {
    if !can_run() {
        return;
    }
    let store = Store::new();
    let outside = Outside::new();
    // A one-shot listener in the test namespace; what it received goes to
    // its stdout.
    let listener = Command::new("ip")
        .args([
            "netns",
            "exec",
            &outside.name,
            "busybox",
            "nc",
            "-l",
            "-p",
            "9999",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // busybox nc ends at the end of its stdin, which may come before the
    // peer's bytes: its stdin stays open until it has exited.
    let mut listener = listener;
    let _stdin = listener.stdin.take();
    eventually("the listener", || {
        let tcp = Command::new("ip")
            .args([
                "netns",
                "exec",
                &outside.name,
                "cat",
                "/proc/net/tcp",
                "/proc/net/tcp6",
            ])
            .output()
            .unwrap();
        // Port 9999 in state LISTEN (0A), over IPv4 or IPv6.
        String::from_utf8_lossy(&tcp.stdout)
            .lines()
            .any(|l| l.contains(":270F ") && l.split_whitespace().nth(3) == Some("0A"))
    });
    let script = format!(
        "ip addr; ip route; echo hello-from-$(hostname) | nc {} 9999",
        outside.address
    );
    let id = store
        .kiln
        .ok(&["run", "-d", "--name", "out", "bb:1", "sh", "-c", &script])
        .trim()
        .to_owned();
    assert_eq!(store.kiln.ok(&["wait", "out"]).trim(), "0");
    let output = listener.wait_with_output().unwrap();
    let short: String = id.chars().take(12).collect();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("hello-from-{short}"),
        "the container's output: {}",
        store.kiln.ok(&["logs", "out"])
    );
    // It was on the default network, with Docker's top-level fields.
    let doc: serde_json::Value = serde_json::from_str(&store.kiln.ok(&["inspect", "out"])).unwrap();
    assert_eq!(doc[0]["HostConfig"]["NetworkMode"], "bridge");
    assert!(
        doc[0]["NetworkSettings"]["Networks"]["bridge"].is_object(),
        "{doc}"
    );
    // A temporary store's default bridge and rules go with its last
    // container.
    let (_, bridge) = store.network("bridge");
    assert!(!links().contains(&format!(" {bridge}:")), "{}", links());
    assert!(
        !ruleset().contains(&format!("\"{bridge}\"")),
        "{}",
        ruleset()
    );
}

#[test]
fn veths_leases_and_rules_are_gone_after_rm_f_kill_of_the_monitor_and_network_rm() {
    if !can_run() {
        return;
    }
    let store = Store::new();
    let net = unique("clean");
    store.kiln.ok(&["network", "create", &net]);
    let (net_id, bridge) = store.network(&net);
    assert!(links().contains(&format!(" {bridge}:")), "{}", links());
    assert!(ruleset().contains(&format!("\"{bridge}\"")));

    // rm -f of a running container.
    let one = store.web(&["--network", &net], "one");
    let veth_one = format!("kv{}{}", &one[..8], &net_id[..5]);
    assert!(links().contains(&veth_one), "{}", links());
    assert_eq!(store.leases(&net_id).len(), 1);
    store.kiln.ok(&["rm", "-f", &one]);
    eventually("the veth of a removed container", || {
        !links().contains(&veth_one)
    });
    assert!(store.leases(&net_id).is_empty());

    // kill -9 of the monitor: found dead by the next command.
    let two = store.web(&["--network", &net], "two");
    let veth_two = format!("kv{}{}", &two[..8], &net_id[..5]);
    assert!(links().contains(&veth_two));
    let state: serde_json::Value = serde_json::from_slice(
        &fs::read(
            store
                .kiln
                .root()
                .join("containers")
                .join(&two)
                .join("state.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let monitor = i32::try_from(state["MonitorPid"].as_i64().unwrap()).unwrap();
    // SAFETY: kill on the monitor's pid, which this test just started.
    assert_eq!(unsafe { libc::kill(monitor, libc::SIGKILL) }, 0);
    eventually("the veth of a killed monitor's container", || {
        !links().contains(&veth_two)
    });
    store.kiln.ok(&["ps", "-a"]);
    assert!(
        store.leases(&net_id).is_empty(),
        "{:?}",
        store.leases(&net_id)
    );

    // network rm: the bridge and its rules go.
    let err = {
        store.web(&["--name", "busy", "--network", &net], "three");
        store.kiln.fails(&["network", "rm", &net])
    };
    assert!(
        err.contains(&format!(
            "error while removing network: network {net} id {net_id} has active endpoints"
        )),
        "{err}"
    );
    store.kiln.ok(&["rm", "-f", "busy", &two]);
    assert_eq!(store.kiln.ok(&["network", "rm", &net]).trim(), net);
    assert!(!links().contains(&format!(" {bridge}:")), "{}", links());
    assert!(
        !ruleset().contains(&format!("\"{bridge}\"")),
        "{}",
        ruleset()
    );
    assert!(!store.kiln.root().join("networks").join(&net_id).exists());
}

#[test]
fn address_exhaustion_unknown_networks_and_overlaps_are_refused() {
    if !can_run() {
        return;
    }
    let store = Store::new();
    let tiny = unique("tiny");
    let n = std::process::id() % 200 + 20;
    let subnet = format!("10.252.{n}.0/30");
    store
        .kiln
        .ok(&["network", "create", "--subnet", &subnet, &tiny]);
    store
        .kiln
        .ok(&["run", "-d", "--network", &tiny, "bb:1", "sleep", "60"]);
    let err = store
        .kiln
        .fails(&["run", "--rm", "--network", &tiny, "bb:1", "true"]);
    assert!(
        err.contains(&format!(
            "no available IPv4 addresses on this network's address pools: {tiny}"
        )),
        "{err}"
    );
    let err = store
        .kiln
        .fails(&["run", "--rm", "--network", "nosuchnet", "bb:1", "true"]);
    assert!(err.contains("network nosuchnet not found"), "{err}");
    let err = store
        .kiln
        .fails(&["create", "--network", "nosuchnet", "bb:1", "true"]);
    assert!(err.contains("network nosuchnet not found"), "{err}");
    let err = store.kiln.fails(&["network", "rm", "nosuchnet"]);
    assert!(err.contains("network nosuchnet not found"), "{err}");
    let err = store.kiln.fails(&[
        "network",
        "create",
        "--subnet",
        &format!("10.252.{n}.0/24"),
        &unique("over"),
    ]);
    assert!(
        err.contains("Pool overlaps with other one on this address space"),
        "{err}"
    );
    let err = store.kiln.fails(&["network", "create", &tiny]);
    assert!(
        err.contains(&format!("network with name {tiny} already exists")),
        "{err}"
    );
    let err = store
        .kiln
        .fails(&["run", "--rm", "--network-alias", "x", "bb:1", "true"]);
    assert!(
        err.contains(
            "network-scoped alias is supported only for containers in user defined networks"
        ),
        "{err}"
    );
    let err = store.kiln.fails(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--add-host",
        "a:1.2.3.4",
        "bb:1",
        "true",
    ]);
    assert!(
        err.contains("--add-host and --dns need a bridge network"),
        "{err}"
    );
}

#[test]
fn add_host_dns_hostname_and_ip_on_a_user_network() {
    if !can_run() {
        return;
    }
    let store = Store::new();
    let net = unique("opts");
    let n = std::process::id() % 200 + 20;
    store.kiln.ok(&[
        "network",
        "create",
        "--subnet",
        &format!("10.253.{n}.0/24"),
        &net,
    ]);
    let ip = format!("10.253.{n}.77");
    let out = store.kiln.ok(&[
        "run",
        "--rm",
        "--network",
        &net,
        "--ip",
        &ip,
        "--add-host",
        "db.local:10.9.8.7",
        "--add-host",
        "host.docker.internal:host-gateway",
        "--dns",
        "10.0.0.53",
        "--hostname",
        "box",
        "bb:1",
        "sh",
        "-c",
        "cat /etc/hosts /etc/resolv.conf; hostname; ip -4 addr show eth0",
    ]);
    assert!(out.contains("10.9.8.7\tdb.local"), "{out}");
    // Docker's host-gateway: the network's gateway, the host's bridge.
    assert!(
        out.contains(&format!("10.253.{n}.1\thost.docker.internal")),
        "{out}"
    );
    assert!(out.contains(&format!("{ip}\tbox")), "{out}");
    assert!(out.contains("nameserver 10.0.0.53"), "{out}");
    assert!(out.contains(&format!("inet {ip}/24")), "{out}");
    assert!(out.lines().any(|l| l == "box"), "{out}");
}

#[test]
fn build_network_name_lets_run_reach_a_container_by_name_and_add_host_fills_hosts() {
    if !can_run() {
        return;
    }
    let store = Store::new();
    let net = unique("build");
    store.kiln.ok(&["network", "create", &net]);
    store.web(&["--name", "api", "--network", &net], "api-page");
    let dir = common::build::context(
        &store.kiln,
        "ctx",
        "FROM bb:1\nRUN wget -q -O /got http://api/ && cat /etc/hosts > /hosts\n",
        &[],
    );
    store.kiln.ok(&[
        "build",
        "--network",
        &net,
        "--add-host",
        "extra.local:10.1.2.3",
        "--add-host",
        "gw:host-gateway",
        "-t",
        "got:1",
        dir.to_str().unwrap(),
    ]);
    let out = store
        .kiln
        .ok(&["run", "--rm", "got:1", "cat", "/got", "/hosts"]);
    assert!(out.starts_with("api-page\n"), "{out}");
    assert!(out.contains("10.1.2.3\textra.local"), "{out}");
    let inspected: serde_json::Value =
        serde_json::from_str(&store.kiln.ok(&["network", "inspect", &net])).unwrap();
    let gateway = inspected[0]["IPAM"]["Config"][0]["Gateway"]
        .as_str()
        .unwrap();
    assert!(out.contains(&format!("{gateway}\tgw")), "{out}\n{gateway}");
    // The same through Docker's template.
    let templated = store.kiln.ok(&[
        "network",
        "inspect",
        "-f",
        "{{range .IPAM.Config}}{{.Gateway}}{{end}} {{.Name}}",
        &net,
    ]);
    assert_eq!(templated, format!("{gateway} {net}\n"));
    // The default network has no address the host answers at.
    let refused = store
        .kiln
        .command()
        .args(["build", "--add-host", "gw:host-gateway"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains(
            "--add-host NAME:host-gateway needs --network NAME (a bridge network) for RUN steps"
        ),
        "{refused:?}"
    );
    // The build's lease is gone with the build.
    let (net_id, _) = store.network(&net);
    assert_eq!(
        store.leases(&net_id).len(),
        1,
        "{:?}",
        store.leases(&net_id)
    );

    // --add-host on the default (slirp4netns) network too.
    let dir = common::build::context(
        &store.kiln,
        "ctx2",
        "FROM bb:1\nRUN cat /etc/hosts > /h\n",
        &[],
    );
    store.kiln.ok(&[
        "build",
        "--add-host",
        "x.y:1.1.1.1",
        "-t",
        "h:1",
        dir.to_str().unwrap(),
    ]);
    let out = store.kiln.ok(&["run", "--rm", "h:1", "cat", "/h"]);
    assert!(out.contains("1.1.1.1\tx.y"), "{out}");

    let err = store
        .kiln
        .fails(&["build", "--network", "nosuchnet", dir.to_str().unwrap()]);
    assert!(err.contains("network nosuchnet not found"), "{err}");
    let err = store.kiln.fails(&[
        "build",
        "--network",
        "none",
        "--add-host",
        "a:1.2.3.4",
        dir.to_str().unwrap(),
    ]);
    assert!(
        err.contains("--add-host needs the default network or a user network"),
        "{err}"
    );
}

#[test]
fn network_ls_quiet_and_format_prune_and_the_predefined_network() {
    if !can_run() {
        return;
    }
    let store = Store::new();
    let used = unique("used");
    let unused = unique("unused");
    let used_id = store
        .kiln
        .ok(&["network", "create", "-l", "team=a", &used])
        .trim()
        .to_owned();
    store.kiln.ok(&["network", "create", "--internal", &unused]);
    store.kiln.ok(&[
        "create",
        "--name",
        "later",
        "--network",
        &used,
        "bb:1",
        "true",
    ]);
    let quiet = store.kiln.ok(&["network", "ls", "-q"]);
    assert!(quiet.lines().any(|l| l == &used_id[..12]), "{quiet}");
    let names = store.kiln.ok(&[
        "network",
        "ls",
        "--format",
        "{{.Name}} {{.Internal}} {{.Labels}}",
    ]);
    assert!(names.contains(&format!("{used} false team=a\n")), "{names}");
    assert!(names.contains(&format!("{unused} true \n")), "{names}");
    let pruned = store.kiln.ok(&["network", "prune", "-f"]);
    assert_eq!(pruned, format!("Deleted Networks:\n{unused}\n"));
    let err = store.kiln.fails(&["network", "rm", "bridge"]);
    assert!(
        err.contains("bridge is a pre-defined network and cannot be removed"),
        "{err}"
    );
    let err = store.kiln.fails(&["network", "create", "host"]);
    assert!(
        err.contains("operation is not permitted on predefined host network"),
        "{err}"
    );
    // A created container is on the network in inspect, without an
    // address until it runs.
    let doc: serde_json::Value =
        serde_json::from_str(&store.kiln.ok(&["inspect", "later"])).unwrap();
    assert_eq!(doc[0]["HostConfig"]["NetworkMode"], used.as_str());
    assert_eq!(
        doc[0]["NetworkSettings"]["Networks"][&used]["NetworkID"],
        used_id.as_str()
    );
    assert_eq!(
        doc[0]["NetworkSettings"]["Networks"][&used]["IPAddress"],
        ""
    );
}

/// The subnet of network `name` of `store`, as `network inspect` says it.
fn subnet_of(store: &Store, name: &str) -> String {
    let out = store.kiln.ok(&["network", "inspect", name]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    doc[0]["IPAM"]["Config"][0]["Subnet"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn two_stores_never_bring_up_bridges_of_one_subnet() {
    if !can_run() {
        return;
    }
    let b = Store::new();
    // B's default network is recorded; its bridge goes with its last
    // container (a store of its own, as a CI job's).
    b.web(&["--name", "b1"], "b");
    b.kiln.ok(&["rm", "-f", "b1"]);
    let (_, bridge) = b.network("bridge");
    assert!(
        !std::path::Path::new("/sys/class/net")
            .join(&bridge)
            .exists(),
        "{bridge} outlived the store's last container"
    );
    let recorded = subnet_of(&b, "bridge");
    // Meanwhile store A brings up a bridge of that very subnet.
    let a = Store::new();
    let net = unique("claim");
    a.kiln
        .ok(&["network", "create", "--subnet", &recorded, &net]);
    a.web(&["--name", "a1", "--network", &net], "a");
    // B's next container moves B's default network to a free subnet
    // rather than bring up a second bridge routing the same addresses.
    b.web(&["--name", "b2"], "b");
    let moved = subnet_of(&b, "bridge");
    assert_ne!(moved, recorded);
    let ip = b
        .kiln
        .ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "b2"])
        .trim()
        .to_owned();
    let prefix: String = moved.split('.').take(2).collect::<Vec<_>>().join(".");
    assert!(ip.starts_with(&format!("{prefix}.")), "{ip} in {moved}");
    assert_eq!(
        b.kiln.ok(&["inspect", "-f", "{{.State.Running}}", "b2"]),
        "true\n"
    );
}
