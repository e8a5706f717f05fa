//! Published ports end to end, as root: `-p`, `-P`, `kiln port`, the PORTS
//! column and `NetworkSettings.Ports`, reached from the host's loopback
//! and from another network namespace (a veth pair the test makes), TCP
//! and UDP; a service bound to the container's loopback stays private; a
//! port in use fails the run; the host port is free again after `rm -f`,
//! `stop` and `kill -9` of the monitor. Host ports are chosen free by the
//! test (or by kiln, read back with `kiln port`), so the tests run beside
//! anything else. They need slirp4netns, ip, unshare and nsenter, and
//! print SKIPPED without them unless `KILN_REQUIRE_NETWORK=1` (CI).
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::symlink;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::Kiln;

const BODY: &str = "hello through the port\n";

/// Whether the tests can run; prints SKIPPED (or fails in CI).
fn can_run() -> bool {
    common::root_with_network_tools("port tests", &["slirp4netns", "ip", "unshare", "nsenter"])
}

/// A store with `bb:1`: busybox with httpd and a page in /www.
fn busybox() -> Kiln {
    let kiln = Kiln::new();
    let rootfs = kiln.path("rootfs");
    common::busybox_rootfs(&rootfs);
    for applet in ["httpd", "sleep"] {
        symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    fs::create_dir(rootfs.join("www")).unwrap();
    fs::write(rootfs.join("www/index.html"), BODY).unwrap();
    kiln.ok(&["import", rootfs.to_str().unwrap(), "bb:1"]);
    kiln
}

/// A host port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` (every 10 ms, at most 10 s) until it holds.
fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The body of `GET /` at `addr`, or the error; HTTP/1.0, so the server
/// closes when done.
fn fetch(addr: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .ok_or_else(|| format!("no HTTP response: {response:?}"))
}

/// Waits until the container's server answers at `addr` (it starts after
/// the container is reported running), then returns the body.
fn fetch_when_up(addr: &str) -> String {
    let mut last = Err(String::new());
    until(&format!("an answer at {addr}"), || {
        last = fetch(addr);
        last.is_ok()
    });
    last.unwrap()
}

/// Whether the host port can be bound again.
fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("0.0.0.0", port)).is_ok()
}

/// `kiln run -d ARGS` on the default network; the container ID.
fn detach(kiln: &Kiln, args: &[&str]) -> String {
    let mut all = vec!["run", "-d"];
    all.extend_from_slice(args);
    kiln.ok(&all).trim().to_owned()
}

/// `kiln port CONTAINER PORT`, one line.
fn port_of(kiln: &Kiln, container: &str, port: &str) -> String {
    kiln.ok(&["port", container, port]).trim().to_owned()
}

/// A network namespace joined to the host by a veth pair on a /30 of
/// 10.x: "another host" on the host's network. The namespace is held by
/// a `sleep` of its own, not named under /run/netns (where anything on
/// the machine may remove it); it goes, with the veth pair, when that
/// process is killed on drop.
struct OtherHost {
    holder: std::process::Child,
    host_address: String,
    /// The namespace's own address (a client's source there).
    ns_address: String,
}

impl OtherHost {
    fn new() -> OtherHost {
        // Tests of one process make theirs one after the other.
        static MADE: AtomicU32 = AtomicU32::new(0);
        let nth = MADE.fetch_add(1, Ordering::SeqCst);
        let id = std::process::id();
        let host_if = format!("kpt{}{nth}h", id % 10_000);
        let ns_if = format!("kpt{}{nth}n", id % 10_000);
        // A /30 per test process and namespace, from its pid.
        let subnet = (id % 250, (id / 250 % 15) * 16 + (nth % 4) * 4);
        let host_address = format!("10.217.{}.{}", subnet.0, subnet.1 + 1);
        let ns_address = format!("10.217.{}.{}", subnet.0, subnet.1 + 2);
        let holder = Command::new("unshare")
            .args(["-n", "sleep", "1000"])
            .spawn()
            .unwrap();
        let other = OtherHost {
            holder,
            host_address: host_address.clone(),
            ns_address: ns_address.clone(),
        };
        let netns = other.netns();
        until("the namespace holder to unshare", || {
            fs::read_link(&netns).ok() != fs::read_link("/proc/self/ns/net").ok()
        });
        let ip = |args: &[&str]| {
            let status = Command::new("ip").args(args).status().unwrap();
            assert!(status.success(), "ip {args:?} failed");
        };
        let pid = other.holder.id().to_string();
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if, "netns", &pid,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{host_address}/30"),
            "dev",
            &host_if,
        ]);
        ip(&["link", "set", &host_if, "up"]);
        let in_ns = |args: &[&str]| {
            let status = Command::new("nsenter")
                .arg(format!("--net={netns}"))
                .arg("ip")
                .args(args)
                .status()
                .unwrap();
            assert!(status.success(), "ip {args:?} in the namespace failed");
        };
        in_ns(&["addr", "add", &format!("{ns_address}/30"), "dev", &ns_if]);
        in_ns(&["link", "set", &ns_if, "up"]);
        in_ns(&["link", "set", "lo", "up"]);
        other
    }

    fn netns(&self) -> String {
        format!("/proc/{}/ns/net", self.holder.id())
    }

    /// The body of `GET /` at `addr`, fetched by `busybox nc` run in the
    /// namespace (Debian's static busybox `wget` crashes in its resolver
    /// outside a container's root); `None` when nothing answered.
    fn fetch(&self, addr: &str) -> Option<String> {
        let (host, port) = addr.rsplit_once(':').unwrap();
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", self.netns()))
            .args(["/bin/busybox", "nc", "-w", "5", host, port])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // nc may be gone before the request is written (a refused
        // connection): the missing answer says so, not a broken pipe.
        let _ = child
            .stdin
            .take()
            .unwrap()
            .write_all(b"GET / HTTP/1.0\r\n\r\n");
        let output = child.wait_with_output().unwrap();
        let response = String::from_utf8_lossy(&output.stdout).into_owned();
        response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
    }
}

impl Drop for OtherHost {
    fn drop(&mut self) {
        // The veth pair goes with the namespace, which goes with its
        // last process.
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

#[test]
fn a_published_port_answers_on_the_hosts_loopback_and_from_another_namespace() {
    if !can_run() {
        return;
    }
    let kiln = busybox();
    let port = free_port();
    let id = detach(
        &kiln,
        &[
            "-p",
            &format!("{port}:80"),
            "--name",
            "web",
            "bb:1",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ],
    );
    assert_eq!(fetch_when_up(&format!("127.0.0.1:{port}")), BODY);

    // Docker's shapes: `port`, the PORTS column, inspect.
    assert_eq!(
        kiln.ok(&["port", "web"]),
        format!("80/tcp -> 0.0.0.0:{port}\n")
    );
    assert_eq!(port_of(&kiln, "web", "80/tcp"), format!("0.0.0.0:{port}"));
    let ps = kiln.ok(&["ps", "--format", "{{.Names}} {{.Ports}}"]);
    assert_eq!(ps, format!("web 0.0.0.0:{port}->80/tcp\n"));
    let inspect = |template: &str| kiln.ok(&["inspect", "-f", template, &id]);
    assert_eq!(
        inspect("{{.NetworkSettings.Ports}}"),
        format!("map[80/tcp:[{{0.0.0.0 {port}}}]]\n")
    );
    assert_eq!(
        inspect("{{json .HostConfig.PortBindings}}"),
        format!("{{\"80/tcp\":[{{\"HostIp\":\"\",\"HostPort\":\"{port}\"}}]}}\n")
    );
    assert_eq!(
        inspect("{{.Config.ExposedPorts}}"),
        "map[80/tcp:{}]\n".to_owned()
    );

    // From another host's view: the host's address on a veth link.
    let other = OtherHost::new();
    let body = other.fetch(&format!("{}:{port}", other.host_address));
    assert_eq!(body.as_deref(), Some(BODY), "fetch from another namespace");

    // A port that is not published.
    let (code, _, stderr) = kiln.outcome(&["port", "web", "443"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("No public port '443/tcp' published for web"),
        "{stderr}"
    );
    let (code, _, stderr) = kiln.outcome(&["port", "web", "x"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("invalid port (x): strconv.ParseUint: parsing \"x\": invalid syntax"),
        "{stderr}"
    );

    kiln.ok(&["rm", "-f", "web"]);
    until("the host port to be free after rm -f", || {
        port_is_free(port)
    });
}

#[test]
fn publish_all_chooses_free_ports_that_port_reports_and_that_answer() {
    if !can_run() {
        return;
    }
    let kiln = busybox();
    detach(
        &kiln,
        &[
            "-P",
            "--expose",
            "80",
            "--expose",
            "8080/tcp",
            "--name",
            "all",
            "bb:1",
            "sh",
            "-c",
            "httpd -p 8080 -h /www && exec httpd -f -p 80 -h /www",
        ],
    );
    let listed = kiln.ok(&["port", "all"]);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(lines[0].starts_with("80/tcp -> 0.0.0.0:"), "{listed}");
    assert!(lines[1].starts_with("8080/tcp -> 0.0.0.0:"), "{listed}");
    for container_port in ["80", "8080"] {
        let host = port_of(&kiln, "all", container_port);
        let port: u16 = host.rsplit(':').next().unwrap().parse().unwrap();
        assert_ne!(port, 0);
        assert_eq!(fetch_when_up(&format!("127.0.0.1:{port}")), BODY);
    }
    let ps = kiln.ok(&["ps", "--format", "{{.Ports}}"]);
    assert!(ps.contains("->80/tcp") && ps.contains("->8080/tcp"), "{ps}");
}

#[test]
fn a_service_on_the_containers_loopback_is_not_published() {
    if !can_run() {
        return;
    }
    let kiln = busybox();
    // The same server on the container's loopback (81) and on every
    // address (82): only the second answers through its published port.
    detach(
        &kiln,
        &[
            "-p",
            "127.0.0.1::81",
            "-p",
            "127.0.0.1::82",
            "--name",
            "private",
            "bb:1",
            "sh",
            "-c",
            "httpd -p 127.0.0.1:81 -h /www && exec httpd -f -p 82 -h /www",
        ],
    );
    let open = port_of(&kiln, "private", "82");
    assert_eq!(fetch_when_up(&open), BODY);
    // The loopback server is up (its sibling answered, and it started
    // first), yet the proxy's connection is refused: the client is closed.
    let private = port_of(&kiln, "private", "81");
    let result = fetch(&private);
    assert!(
        result.is_err(),
        "a loopback-only service answered: {result:?}"
    );
}

#[test]
fn a_port_in_use_fails_the_run_with_dockers_message_and_no_container_runs() {
    if !can_run() {
        return;
    }
    let kiln = busybox();
    let taken = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let message = format!("Bind for 0.0.0.0:{port} failed: port is already allocated");
    let publish = format!("{port}:80");
    let (code, stdout, stderr) =
        kiln.outcome(&["run", "-d", "-p", &publish, "bb:1", "sleep", "60"]);
    assert_eq!(code, 125, "{stderr}");
    assert_eq!(stdout, "");
    assert!(stderr.contains(&message), "{stderr}");
    assert_eq!(kiln.ok(&["ps", "-q"]), "");
    // As Docker: the container was created, and did not start.
    assert_eq!(
        kiln.ok(&["ps", "-a", "--format", "{{.State}}"]),
        "created\n"
    );
    // The foreground run fails the same way before the container starts.
    let (code, stdout, stderr) =
        kiln.outcome(&["run", "--rm", "-p", &publish, "bb:1", "echo", "ran"]);
    assert_eq!(code, 125, "{stderr}");
    assert_eq!(stdout, "");
    assert!(stderr.contains(&message), "{stderr}");
    drop(taken);
}

#[test]
fn bad_publish_values_give_dockers_errors() {
    let kiln = Kiln::new();
    for (value, message) in [
        ("8080:x", "invalid containerPort: x"),
        ("x:80", "invalid hostPort: x"),
        ("80/sctpx", "invalid proto: sctpx"),
        ("1.2.3:80:80", "invalid IP address: 1.2.3"),
        ("8080:", "no port specified: 8080:<empty>"),
        (
            "8000-8001:80-82",
            "invalid ranges specified for container and host Ports: 80-82 and 8000-8001",
        ),
    ] {
        let (code, _, stderr) = kiln.outcome(&["run", "-p", value, "bb:1"]);
        assert_eq!(code, 125, "{value}: {stderr}");
        assert!(stderr.contains(message), "{value}: {stderr}");
    }
    let (code, _, stderr) = kiln.outcome(&["run", "--expose", "1:2", "bb:1"]);
    assert_eq!(code, 125);
    assert!(
        stderr.contains("invalid port format for --expose: 1:2"),
        "{stderr}"
    );
}

#[test]
fn the_host_port_is_free_after_rm_stop_and_kill_of_the_monitor() {
    if !can_run() {
        return;
    }
    let kiln = busybox();
    let server = ["bb:1", "httpd", "-f", "-p", "80", "-h", "/www"];
    let start = |name: &str| -> u16 {
        let port = free_port();
        let publish = format!("{port}:80");
        let mut args = vec!["-p", publish.as_str(), "--name", name];
        args.extend(server);
        detach(&kiln, &args);
        assert_eq!(fetch_when_up(&format!("127.0.0.1:{port}")), BODY);
        assert!(!port_is_free(port));
        port
    };

    let port = start("removed");
    kiln.ok(&["rm", "-f", "removed"]);
    until("the port to be free after rm -f", || port_is_free(port));

    let port = start("stopped");
    kiln.ok(&["stop", "-t", "1", "stopped"]);
    until("the port to be free after stop", || port_is_free(port));
    assert_eq!(kiln.ok(&["port", "stopped"]), "");

    let port = start("killed");
    let dir = kiln.root().join("containers");
    let id = kiln
        .ok(&["inspect", "-f", "{{.Id}}", "killed"])
        .trim()
        .to_owned();
    let state: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join(&id).join("state.json")).unwrap()).unwrap();
    let monitor = i32::try_from(state["MonitorPid"].as_i64().unwrap()).unwrap();
    assert!(monitor > 0);
    // SAFETY: kill of the monitor this test started.
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    until("the port to be free after kill -9 of the monitor", || {
        port_is_free(port)
    });
    assert!(fetch(&format!("127.0.0.1:{port}")).is_err());
}

#[test]
fn a_foreground_run_publishes_while_it_runs() {
    if !can_run() {
        return;
    }
    let kiln = busybox();
    let control = kiln.path("control");
    fs::create_dir(&control).unwrap();
    let port = free_port();
    let volume = format!("{}:/control", control.display());
    let publish = format!("127.0.0.1:{port}:80");
    let child = kiln.spawn(&[
        "run",
        "--rm",
        "-v",
        &volume,
        "-p",
        &publish,
        "bb:1",
        "sh",
        "-c",
        "httpd -p 80 -h /www; while [ ! -e /control/stop ]; do sleep 0.05; done; echo done",
    ]);
    assert_eq!(fetch_when_up(&format!("127.0.0.1:{port}")), BODY);
    fs::write(control.join("stop"), "").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "done\n");
    assert!(port_is_free(port), "the port outlived the run");
}

/// A UDP echo server in the container's network namespace: a thread of
/// this test that entered it (the busybox here has no UDP server), bound
/// to the container's port on every address, as a service in the
/// container would be.
fn udp_echo_in(pid: i32, port: u16) -> std::thread::JoinHandle<()> {
    let netns = fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
    let (ready_send, ready) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        // SAFETY: setns of this thread only, to a namespace file we hold.
        assert_eq!(
            unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        let socket = UdpSocket::bind(("0.0.0.0", port)).unwrap();
        ready_send.send(()).unwrap();
        let mut buffer = [0u8; 1500];
        // Three datagrams, then done.
        for _ in 0..3 {
            let (n, from) = socket.recv_from(&mut buffer).unwrap();
            let mut reply = b"echo ".to_vec();
            reply.extend_from_slice(&buffer[..n]);
            socket.send_to(&reply, from).unwrap();
        }
    });
    ready.recv().unwrap();
    handle
}

#[test]
fn udp_datagrams_go_both_ways_per_client() {
    if !can_run() {
        return;
    }
    let kiln = busybox();
    detach(
        &kiln,
        &[
            "-p",
            "127.0.0.1::9999/udp",
            "--name",
            "udp",
            "bb:1",
            "sleep",
            "60",
        ],
    );
    let pid: i32 = kiln
        .ok(&["inspect", "-f", "{{.State.Pid}}", "udp"])
        .trim()
        .parse()
        .unwrap();
    let echo = udp_echo_in(pid, 9999);
    let host: SocketAddr = port_of(&kiln, "udp", "9999/udp").parse().unwrap();
    assert_eq!(kiln.ok(&["port", "udp"]), format!("9999/udp -> {host}\n"));
    // Two clients: each gets its own replies.
    let first = UdpSocket::bind("127.0.0.1:0").unwrap();
    let second = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut buffer = [0u8; 100];
    for (client, text) in [(&first, "one"), (&second, "two"), (&first, "three")] {
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.send_to(text.as_bytes(), host).unwrap();
        let n = client.recv(&mut buffer).unwrap();
        assert_eq!(
            std::str::from_utf8(&buffer[..n]).unwrap(),
            format!("echo {text}")
        );
    }
    echo.join().unwrap();
    kiln.ok(&["rm", "-f", "udp"]);
}

fn chown_tree(path: &std::path::Path) {
    std::os::unix::fs::lchown(path, Some(65534), Some(65534)).unwrap();
    if fs::symlink_metadata(path).unwrap().is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path());
        }
    }
}

#[test]
fn a_rootless_container_publishes_its_port_too() {
    if !can_run()
        || !common::tools(
            "NETWORK",
            &[("unshare", "util-linux"), ("setpriv", "util-linux")],
        )
    {
        return;
    }
    let kiln = busybox();
    // A copy of kiln nobody can run, and the store handed to nobody.
    let binary = kiln.path("kiln-nobody");
    common::copy_executable(&assert_cmd::cargo::cargo_bin("kiln"), &binary);
    chown_tree(kiln.dir.path());
    fs::set_permissions(
        kiln.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let calls = std::cell::Cell::new(0);
    let as_nobody = |kiln_args: &str| {
        calls.set(calls.get() + 1);
        // Without root slirp4netns opens /dev/net/tun as the caller: the
        // test opens it up in a private mount namespace of its own (see
        // tests/network_cli.rs).
        let script = "mknod \"$1\" c 10 200 && chmod 666 \"$1\" && mount --bind \"$1\" /dev/net/tun \
                      && exec setpriv --reuid 65534 --regid 65534 --clear-groups \
                      env HOME=/tmp sh -c 'exec \"$0\" --root \"$1\" $2' \"$2\" \"$3\" \"$4\"";
        let tun = kiln.path(&format!("tun-{}", calls.get()));
        let output = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
            .arg(&tun)
            .arg(&binary)
            .arg(kiln.root())
            .arg(kiln_args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "kiln {kiln_args} as nobody: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let port = free_port();
    as_nobody(&format!(
        "run -d -p 127.0.0.1:{port}:80 --name rootless bb:1 httpd -f -p 80 -h /www"
    ));
    assert_eq!(fetch_when_up(&format!("127.0.0.1:{port}")), BODY);
    assert_eq!(
        as_nobody("port rootless"),
        format!("80/tcp -> 127.0.0.1:{port}\n")
    );
    as_nobody("rm -f rootless");
    until("the port to be free after rm -f", || port_is_free(port));
}

#[test]
fn created_containers_publish_when_started_and_again_after_a_restart() {
    if !can_run() {
        return;
    }
    let kiln = busybox();
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    kiln.ok(&[
        "create", "-p", &publish, "--name", "later", "bb:1", "httpd", "-f", "-p", "80", "-h",
        "/www",
    ]);
    // Created: kept in the config, nothing bound, nothing listed.
    assert_eq!(
        kiln.ok(&["inspect", "-f", "{{.HostConfig.PortBindings}}", "later"]),
        format!("map[80/tcp:[{{127.0.0.1 {port}}}]]\n")
    );
    assert_eq!(kiln.ok(&["port", "later"]), "");
    assert!(port_is_free(port));
    kiln.ok(&["start", "later"]);
    assert_eq!(fetch_when_up(&format!("127.0.0.1:{port}")), BODY);
    kiln.ok(&["restart", "-t", "1", "later"]);
    assert_eq!(fetch_when_up(&format!("127.0.0.1:{port}")), BODY);
    assert_eq!(
        kiln.ok(&["port", "later"]),
        format!("80/tcp -> 127.0.0.1:{port}\n")
    );
}

/// Whether the kernel-path tests can run: the port tests' tools and nft.
fn can_dnat() -> bool {
    if !common::have("nft") {
        return kiln_testkit::require("NETWORK", Some("DNAT tests: missing nft"));
    }
    can_run()
}

/// The host's whole nftables ruleset (kiln's elements are in it).
fn ruleset() -> String {
    let output = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .unwrap();
    assert!(output.status.success(), "nft list ruleset failed");
    String::from_utf8(output.stdout).unwrap()
}

/// Whether the ruleset has a DNAT element of host port `port` owned by
/// container `id`.
fn forwarded(id: &str, port: u16) -> bool {
    ruleset()
        .lines()
        .flat_map(|line| line.split(','))
        .any(|element| element.contains(&format!(" . {port} comment \"{id} ")))
}

/// The monitor pid a container's state records.
fn monitor_of(kiln: &Kiln, id: &str) -> i32 {
    let path = kiln.root().join("containers").join(id).join("state.json");
    let state: serde_json::Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    i32::try_from(state["MonitorPid"].as_i64().unwrap()).unwrap()
}

/// A kept busybox `httpd` that logs each client's address.
const LOGGING_SERVER: [&str; 8] = ["bb:1", "httpd", "-f", "-vv", "-p", "80", "-h", "/www"];

/// The server's log (its stderr, which `kiln logs` writes to stderr).
fn server_log(kiln: &Kiln, id: &str) -> String {
    let (code, _, stderr) = kiln.outcome(&["logs", id]);
    assert_eq!(code, 0, "kiln logs: {stderr}");
    stderr
}

/// Waits until the container's log names a request from `client` (busybox
/// httpd writes `[::ffff:ADDRESS]:PORT: url:/`).
fn logs_name_client(kiln: &Kiln, id: &str, client: &str) {
    let needle = format!("[::ffff:{client}]:");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = server_log(kiln, id);
        if logs.contains(&needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no request from {client} in the log:\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_bridge_containers_port_is_reached_through_dnat_with_the_clients_own_address() {
    if !can_dnat() {
        return;
    }
    let kiln = busybox();
    let other = OtherHost::new();
    let port = free_port();
    let publish = format!("{port}:80");
    let mut args = vec!["-p", publish.as_str()];
    args.extend(LOGGING_SERVER);
    let id = detach(&kiln, &args);
    // The proxy serves the host's loopback; the rule is in kiln's table.
    assert_eq!(fetch_when_up(&format!("127.0.0.1:{port}")), BODY);
    assert!(forwarded(&id, port), "{}", ruleset());
    // From another namespace: DNAT, so the server sees the client's own
    // address (the proxy would connect from the container's namespace).
    let body = other.fetch(&format!("{}:{port}", other.host_address));
    assert_eq!(body.as_deref(), Some(BODY));
    logs_name_client(&kiln, &id, &other.ns_address);

    // A host address of its own: only that address is forwarded; the
    // loopback one is the proxy's alone and unreachable from elsewhere.
    let (at, local) = (free_port(), free_port());
    let publish_at = format!("{}:{at}:80", other.host_address);
    let publish_local = format!("127.0.0.1:{local}:80");
    let mut args = vec!["-p", publish_at.as_str(), "-p", publish_local.as_str()];
    args.extend(LOGGING_SERVER);
    let two = detach(&kiln, &args);
    assert_eq!(fetch_when_up(&format!("127.0.0.1:{local}")), BODY);
    let rules = ruleset();
    assert!(
        rules.contains(&format!(
            "{} . tcp . {at} comment \"{two} ",
            other.host_address
        )),
        "{rules}"
    );
    assert!(!forwarded(&two, local), "{rules}");
    let body = other.fetch(&format!("{}:{at}", other.host_address));
    assert_eq!(body.as_deref(), Some(BODY));
    logs_name_client(&kiln, &two, &other.ns_address);
    assert_eq!(
        other.fetch(&format!("{}:{local}", other.host_address)),
        None
    );

    kiln.ok(&["rm", "-f", &id, &two]);
    let rules = ruleset();
    assert!(!forwarded(&id, port), "{rules}");
    assert!(!rules.contains(&format!("comment \"{two} ")), "{rules}");
}

#[test]
fn dnat_rules_go_with_stop_rm_a_killed_monitor_prune_and_network_rm() {
    if !can_dnat() {
        return;
    }
    let kiln = busybox();
    let network = format!("kpd{}", std::process::id() % 100_000);
    kiln.ok(&["network", "create", &network]);
    let port = free_port();
    let publish = format!("{port}:80");
    let mut args = vec!["--network", network.as_str(), "-p", publish.as_str()];
    args.extend(LOGGING_SERVER);
    let id = detach(&kiln, &args);
    assert!(forwarded(&id, port), "{}", ruleset());

    kiln.ok(&["stop", "-t", "1", &id]);
    assert!(!forwarded(&id, port), "after stop: {}", ruleset());

    kiln.ok(&["start", &id]);
    assert!(forwarded(&id, port), "after start: {}", ruleset());
    // kill -9 of the monitor: the next kiln command, whatever it is,
    // finds the holder dead, frees its lease and the rules with it.
    // SAFETY: kill of the monitor this test started.
    assert_eq!(
        unsafe { libc::kill(monitor_of(&kiln, &id), libc::SIGKILL) },
        0
    );
    until("the port to be free after kill -9", || port_is_free(port));
    assert!(forwarded(&id, port), "before any command: {}", ruleset());
    kiln.ok(&["ps", "-a"]);
    assert!(!forwarded(&id, port), "after kill -9 and ps: {}", ruleset());

    kiln.ok(&["start", &id]);
    assert!(forwarded(&id, port), "after start: {}", ruleset());
    kiln.ok(&["rm", "-f", &id]);
    assert!(!forwarded(&id, port), "after rm -f: {}", ruleset());

    // `prune` (the store's garbage collection) as the first command
    // after a kill -9.
    let id = detach(&kiln, &args);
    assert!(forwarded(&id, port), "{}", ruleset());
    // SAFETY: as above.
    assert_eq!(
        unsafe { libc::kill(monitor_of(&kiln, &id), libc::SIGKILL) },
        0
    );
    until("the port to be free after kill -9", || port_is_free(port));
    kiln.ok(&["prune", "-f"]);
    assert!(!forwarded(&id, port), "after prune: {}", ruleset());

    // `network rm` as the first command after a kill -9.
    let id = detach(&kiln, &args);
    assert!(forwarded(&id, port), "{}", ruleset());
    // SAFETY: as above.
    assert_eq!(
        unsafe { libc::kill(monitor_of(&kiln, &id), libc::SIGKILL) },
        0
    );
    until("the port to be free after kill -9", || port_is_free(port));
    assert_eq!(kiln.ok(&["network", "rm", &network]).trim(), network);
    assert!(!forwarded(&id, port), "after network rm: {}", ruleset());
}

#[test]
fn the_proxy_only_switch_leaves_no_rule_and_the_server_sees_the_proxy() {
    if !can_dnat() {
        return;
    }
    let kiln = busybox();
    let other = OtherHost::new();
    let port = free_port();
    let publish = format!("{port}:80");
    let mut args = vec!["run", "-d", "-p", publish.as_str()];
    args.extend(LOGGING_SERVER);
    let output = kiln
        .command()
        .env("KILN_USERLAND_PROXY_ONLY", "1")
        .args(&args)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let id = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let info = kiln
        .command()
        .env("KILN_USERLAND_PROXY_ONLY", "1")
        .arg("info")
        .output()
        .unwrap();
    let info = String::from_utf8(info.stdout).unwrap();
    assert!(
        info.contains(" Published Ports: userland proxy (KILN_USERLAND_PROXY_ONLY=1)\n"),
        "{info}"
    );
    assert!(
        kiln.ok(&["info"])
            .contains(" Published Ports: nftables DNAT on bridge networks (table inet kiln)"),
    );
    assert_eq!(fetch_when_up(&format!("127.0.0.1:{port}")), BODY);
    assert!(!forwarded(&id, port), "{}", ruleset());
    let body = other.fetch(&format!("{}:{port}", other.host_address));
    assert_eq!(body.as_deref(), Some(BODY));
    // The proxy connects from inside the container's namespace: the
    // server sees the container's own address, never the client's.
    let address = kiln
        .ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &id])
        .trim()
        .to_owned();
    logs_name_client(&kiln, &id, &address);
    let log = server_log(&kiln, &id);
    assert!(!log.contains(&other.ns_address), "{log}");
}

#[test]
fn a_foreground_run_on_a_user_network_forwards_until_it_is_killed() {
    if !can_dnat() {
        return;
    }
    let kiln = busybox();
    let other = OtherHost::new();
    let network = format!("kpf{}", std::process::id() % 100_000);
    kiln.ok(&["network", "create", &network]);
    let port = free_port();
    let publish = format!("{port}:80");
    let mut args = vec![
        "run",
        "--rm",
        "--network",
        network.as_str(),
        "-p",
        publish.as_str(),
    ];
    args.extend(LOGGING_SERVER);
    let mut child = kiln.spawn(&args);
    // Its lease and rules are held by this `kiln run` itself.
    let element = format!(" . {port} comment \"");
    until("the foreground run's DNAT rule", || {
        ruleset().contains(&element)
    });
    assert_eq!(fetch_when_up(&format!("127.0.0.1:{port}")), BODY);
    let body = other.fetch(&format!("{}:{port}", other.host_address));
    assert_eq!(body.as_deref(), Some(BODY));
    // kill -9 of kiln: the next command that looks at the network's
    // leases frees the dead holder's, and its rules with it.
    child.kill().unwrap();
    child.wait().unwrap();
    kiln.ok(&["network", "inspect", &network]);
    assert!(!ruleset().contains(&element), "{}", ruleset());
}

#[test]
fn where_nftables_cannot_nat_the_proxy_serves_and_the_debug_log_says_why() {
    if !can_dnat() {
        return;
    }
    let kiln = busybox();
    let other = OtherHost::new();
    // An `nft` that refuses kiln's port maps and chains (as a kernel
    // without nft_nat or nft_fib would), and passes the rest through.
    let bin = kiln.path("bin");
    fs::create_dir(&bin).unwrap();
    let real = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())
        .unwrap();
    let fake = bin.join("nft");
    fs::write(
        &fake,
        format!(
            "#!/bin/sh\n\
             case \"$*\" in *prerouting*|*ports_*) echo 'Error: Could not process rule: No such file or directory' >&2; exit 1;; esac\n\
             if [ \"$1\" = -f ]; then\n  \
               input=$(cat)\n  \
               case \"$input\" in *ports_*) echo 'Error: Could not process rule: No such file or directory' >&2; exit 1;; esac\n  \
               printf '%s\\n' \"$input\" | exec {real} \"$@\"\n\
             fi\n\
             exec {real} \"$@\"\n"
        ),
    )
    .unwrap();
    fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let port = free_port();
    let publish = format!("{port}:80");
    let mut args = vec!["--log-level", "debug", "run", "-d", "-p", publish.as_str()];
    args.extend(LOGGING_SERVER);
    let output = kiln
        .command()
        .env("PATH", &path)
        .args(&args)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let id = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert_eq!(fetch_when_up(&format!("127.0.0.1:{port}")), BODY);
    assert!(!forwarded(&id, port), "{}", ruleset());
    // Still published to other hosts, by the proxy.
    let body = other.fetch(&format!("{}:{port}", other.host_address));
    assert_eq!(body.as_deref(), Some(BODY));
    let address = kiln
        .ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &id])
        .trim()
        .to_owned();
    logs_name_client(&kiln, &id, &address);
    let log =
        fs::read_to_string(kiln.root().join("containers").join(&id).join("monitor.log")).unwrap();
    assert!(
        log.contains("nftables DNAT unavailable, the userspace proxy serves them")
            && log.contains("No such file or directory"),
        "{log}"
    );
}
