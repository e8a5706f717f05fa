//! The container network end to end, as root: RUN and `kiln run` get an
//! isolated network namespace with outbound NAT (slirp4netns) by default,
//! where the host's loopback services are out of reach; `none` has only
//! `lo`; `host` is the user's explicit choice (`--allow network.host` for
//! a Dockerfile). The tests make their own network namespaces, veth pairs
//! and loopback servers (unique names per test process); they need
//! slirp4netns and ip, and print SKIPPED without them unless
//! `KILN_REQUIRE_NETWORK=1` (CI), which makes them fail.
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::fs;
use std::io::Write as _;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::Kiln;

/// Whether the network tests can run; prints SKIPPED (or fails in CI).
fn can_run() -> bool {
    common::root_with_network_tools(
        "network tests",
        &["slirp4netns", "ip", "unshare", "setpriv", "nsenter"],
    )
}

/// A store with `bb:1`: busybox with the network applets.
fn busybox() -> Kiln {
    let kiln = Kiln::new();
    let rootfs = kiln.path("rootfs");
    common::busybox_rootfs(&rootfs);
    for applet in [
        "nc", "wget", "nslookup", "ls", "head", "grep", "sleep", "readlink",
    ] {
        let _ = symlink("busybox", rootfs.join("bin").join(applet));
    }
    kiln.ok(&["import", rootfs.to_str().unwrap(), "bb:1"]);
    kiln
}

/// A TCP server on a host loopback address that counts connections and
/// answers `HOST`.
struct LoopbackServer {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl LoopbackServer {
    fn start(addr: &str) -> LoopbackServer {
        let listener = TcpListener::bind((addr, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                let _ = stream.write_all(b"HOST\n");
            }
        });
        LoopbackServer { port, accepted }
    }
}

/// `nc` to each address on `port`; prints `ADDR rc=N` (and what the
/// server said) per address.
fn probe_script(addresses: &[&str], port: u16) -> String {
    addresses
        .iter()
        .map(|a| format!("nc -w 2 {a} {port} </dev/null; echo \"{a} rc=$?\""))
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn host_loopback_services_are_out_of_reach_of_run_and_kiln_run() {
    if !can_run() {
        return;
    }
    let kiln = busybox();
    let v4 = LoopbackServer::start("127.0.0.1");
    let v6 = LoopbackServer::start("::1");
    // 127.0.0.1 and ::1 are the container's own; 10.0.2.2 is the NAT's
    // gateway, which slirp4netns would map to the host's 127.0.0.1
    // without --disable-host-loopback; 10.0.2.3 only forwards DNS.
    let script = format!(
        "{}; {}",
        probe_script(&["127.0.0.1", "10.0.2.2", "10.0.2.3"], v4.port),
        probe_script(&["::1"], v6.port)
    );
    let expected = "127.0.0.1 rc=1\n10.0.2.2 rc=1\n10.0.2.3 rc=1\n::1 rc=1\n";
    assert_eq!(kiln.ok(&["run", "bb:1", "sh", "-c", &script]), expected);

    let dir = common::build::context(
        &kiln,
        "ctx",
        &format!("FROM bb:1\nRUN ({script}) > /probe\n"),
        &[],
    );
    kiln.ok(&["build", "-t", "probe:1", dir.to_str().unwrap()]);
    assert_eq!(kiln.ok(&["run", "probe:1", "cat", "/probe"]), expected);
    assert_eq!(v4.accepted.load(Ordering::SeqCst), 0);
    assert_eq!(v6.accepted.load(Ordering::SeqCst), 0);
    // `bridge` is Docker's name for the default; an unknown network is
    // refused in Docker's words.
    assert_eq!(
        kiln.ok(&[
            "run",
            "--network",
            "bridge",
            "bb:1",
            "sh",
            "-c",
            "ls /sys/class/net"
        ]),
        "eth0\nlo\n"
    );
    let bad = kiln.fails(&["run", "--network", "overlay", "bb:1", "true"]);
    assert_eq!(bad, "error: network overlay not found\n");
    // The host network is the user's explicit choice, and reaches them.
    assert_eq!(
        kiln.ok(&[
            "run",
            "--network",
            "host",
            "bb:1",
            "sh",
            "-c",
            &probe_script(&["127.0.0.1"], v4.port)
        ]),
        "HOST\n127.0.0.1 rc=0\n"
    );
    assert_no_helper_left();
}

/// slirp4netns processes whose container init is gone (a live one belongs
/// to a container of a test still running).
fn assert_no_helper_left() {
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let path = entry.path();
        if fs::read_to_string(path.join("comm")).is_ok_and(|c| c.trim() == "slirp4netns") {
            let cmdline = fs::read(path.join("cmdline")).unwrap_or_default();
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            // A zombie (no command line) is one a running kiln has yet to
            // reap; only a live helper without its container is a leak.
            let Some(target) = args.len().checked_sub(2).map(|i| &args[i]) else {
                continue;
            };
            assert!(
                Path::new(&format!("/proc/{target}")).exists(),
                "slirp4netns left behind: {args:?}"
            );
        }
    }
}

/// A network namespace with a veth pair to the host, standing in for a
/// remote host; gone (with the pair) on drop. The namespace is held by a
/// process of its own, not by a file under /run/netns: `ip netns`'s
/// files are bind mounts there, shared with every mount namespace, and
/// were seen hidden mid-test ("setting the network namespace ... Invalid
/// argument") while other tests ran containers.
struct RemoteHost {
    holder: Child,
    address: String,
    server: Option<Child>,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().unwrap();
    assert!(status.success(), "ip {args:?} failed");
}

impl RemoteHost {
    fn new(tag: u8) -> RemoteHost {
        use std::io::BufRead as _;
        let pid = std::process::id();
        // Unique per test process: interface names have 15 bytes at most.
        let host_if = format!("kv{}{tag}h", pid % 100_000);
        let ns_if = format!("kv{}{tag}n", pid % 100_000);
        let net = format!("10.{}.{}", 200 + pid % 50, (pid / 50) % 256);
        let base = u32::from(tag) * 4;
        let (host_addr, address) = (format!("{net}.{}", base + 1), format!("{net}.{}", base + 2));
        // The line comes once the new namespace exists, so the veth's peer
        // goes into it and not into the host's.
        let mut holder = Command::new("unshare")
            .args(["--net", "sh", "-c", "echo ready; exec sleep infinity"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n");
        let remote = RemoteHost {
            holder,
            address: address.clone(),
            server: None,
        };
        let netns = remote.holder.id().to_string();
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if, "netns", &netns,
        ]);
        ip(&["addr", "add", &format!("{host_addr}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        for args in [
            vec!["addr", "add", &format!("{address}/30"), "dev", &ns_if],
            vec!["link", "set", &ns_if, "up"],
            vec!["link", "set", "lo", "up"],
        ] {
            let status = remote.inside().arg("ip").args(&args).status().unwrap();
            assert!(status.success(), "ip {args:?} in the remote host failed");
        }
        remote
    }

    /// A command in the namespace's network.
    fn inside(&self) -> Command {
        let mut command = Command::new("nsenter");
        command.args(["-t", &self.holder.id().to_string(), "-n"]);
        command
    }

    /// Serves `dir` over HTTP on port 8080 inside the namespace.
    fn serve(&mut self, dir: &Path) {
        let child = self
            .inside()
            .args(["busybox", "httpd", "-f", "-p"])
            .arg(format!("{}:8080", self.address))
            .arg("-h")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.server = Some(child);
        // Ready once a connection from the host goes through.
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect((self.address.as_str(), 8080)).is_err() {
            assert!(started.elapsed().as_secs() < 10, "httpd did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for RemoteHost {
    fn drop(&mut self) {
        // The namespace, and the veth pair with it, goes with the last
        // process in it.
        for child in self.server.iter_mut().chain([&mut self.holder]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn a_remote_host_is_reached_through_the_nat_and_none_has_only_lo() {
    if !can_run() {
        return;
    }
    let kiln = busybox();
    let mut remote = RemoteHost::new(1);
    let www = kiln.path("www");
    fs::create_dir_all(&www).unwrap();
    fs::write(www.join("hello.txt"), "remote hello\n").unwrap();
    remote.serve(&www);
    let url = format!("http://{}:8080/hello.txt", remote.address);

    // kiln run and a RUN both reach it by the default network.
    assert_eq!(
        kiln.ok(&["run", "bb:1", "wget", "-q", "-O", "-", &url]),
        "remote hello\n"
    );
    let dir = common::build::context(
        &kiln,
        "ctx",
        &format!("FROM bb:1\nRUN wget -q -O /fetched {url} && ls /sys/class/net > /nets\n"),
        &[],
    );
    kiln.ok(&["build", "-t", "fetched:1", dir.to_str().unwrap()]);
    assert_eq!(
        kiln.ok(&["run", "fetched:1", "cat", "/fetched", "/nets"]),
        "remote hello\neth0\nlo\n"
    );

    // none: only lo, and the remote host is unreachable.
    let (code, out) = {
        let output = kiln.run(&[
            "run",
            "--network",
            "none",
            "bb:1",
            "sh",
            "-c",
            // (busybox wget crashes when it cannot connect: nc instead)
            &format!(
                "ls /sys/class/net; nc -w 2 {} 8080 </dev/null; echo rc=$?",
                remote.address
            ),
        ]);
        (
            output.status.code(),
            String::from_utf8(output.stdout).unwrap(),
        )
    };
    assert_eq!((code, out.as_str()), (Some(0), "lo\nrc=1\n"));
    let dir = common::build::context(
        &kiln,
        "ctx-none",
        "FROM bb:1\nRUN --network=none ls /sys/class/net > /nets\n",
        &[],
    );
    kiln.ok(&["build", "-t", "none:1", dir.to_str().unwrap()]);
    assert_eq!(kiln.ok(&["run", "none:1", "cat", "/nets"]), "lo\n");
    assert_no_helper_left();
}

#[test]
fn run_network_host_needs_the_entitlement() {
    if !can_run() {
        return;
    }
    let kiln = busybox();
    let dir = common::build::context(
        &kiln,
        "ctx",
        "FROM bb:1\nRUN echo step1\nRUN --network=host readlink /proc/self/ns/net > /ns\n",
        &[],
    );
    let stderr = kiln.fails(&["build", "-t", "host:1", dir.to_str().unwrap()]);
    assert!(
        stderr.contains(
            "error: Dockerfile:3:1: --network=host needs the network.host entitlement: pass --allow network.host to kiln build\n  |\n3 | RUN --network=host readlink /proc/self/ns/net > /ns\n  | ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
        ),
        "{stderr}"
    );
    kiln.ok(&[
        "build",
        "--allow",
        "network.host",
        "-t",
        "host:1",
        dir.to_str().unwrap(),
    ]);
    // The RUN was in the host's network namespace.
    let host_ns = format!(
        "{}\n",
        fs::read_link("/proc/self/ns/net").unwrap().display()
    );
    assert_eq!(kiln.ok(&["run", "host:1", "cat", "/ns"]), host_ns);
    // `kiln build --network host` is the user's explicit choice: no
    // entitlement needed. The default is another namespace.
    let dir = common::build::context(
        &kiln,
        "ctx2",
        "FROM bb:1\nRUN readlink /proc/self/ns/net > /ns\n",
        &[],
    );
    kiln.ok(&[
        "build",
        "--network",
        "host",
        "-t",
        "host:2",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(kiln.ok(&["run", "host:2", "cat", "/ns"]), host_ns);
    kiln.ok(&["build", "-t", "isolated:1", dir.to_str().unwrap()]);
    assert_ne!(kiln.ok(&["run", "isolated:1", "cat", "/ns"]), host_ns);
    let bad = kiln.fails(&["build", "--allow", "device", dir.to_str().unwrap()]);
    assert!(
        bad.contains("invalid --allow \"device\": expected network.host or security.insecure"),
        "{bad}"
    );
}

/// A DNS server for one name on a host loopback address: answers every A
/// query with 192.0.2.77.
fn dns_server(addr: &str) -> Arc<AtomicUsize> {
    let socket = UdpSocket::bind((addr, 53)).unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((len, from)) = socket.recv_from(&mut buf) {
            let query = &buf[..len];
            // Header (12 bytes), then the question: name labels, type, class.
            let Some(end) = query[12..].iter().position(|b| *b == 0) else {
                continue;
            };
            let question = &query[12..12 + end + 5];
            let mut answer = Vec::new();
            answer.extend_from_slice(&query[..2]);
            answer.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
            answer.extend_from_slice(question);
            answer.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 77]);
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = socket.send_to(&answer, from);
        }
    });
    count
}

#[test]
fn dns_works_when_the_host_resolver_is_a_loopback_stub() {
    if !can_run() {
        return;
    }
    let kiln = busybox();
    // The host's resolv.conf names a loopback resolver, as with
    // systemd-resolved's 127.0.0.53: useless as such in another network
    // namespace. kiln sees that file through a private mount namespace.
    let pid = std::process::id();
    let resolver = format!("127.53.{}.{}", (pid / 250) % 250 + 1, pid % 250 + 1);
    let queries = dns_server(&resolver);
    let resolv = kiln.path("resolv.conf");
    fs::write(
        &resolv,
        format!("nameserver {resolver}\nsearch kiln.test\n"),
    )
    .unwrap();
    let kiln_bin = assert_cmd::cargo::cargo_bin("kiln");
    let output: Output = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("mount --bind \"$1\" /etc/resolv.conf && exec \"$2\" --root \"$3\" run bb:1 sh -c 'cat /etc/resolv.conf; nslookup web.example'")
        .arg("sh")
        .arg(&resolv)
        .arg(&kiln_bin)
        .arg(kiln.root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The loopback server is dropped; the NAT's forwarder reaches it.
    assert!(
        stdout.starts_with("nameserver 10.0.2.3\nsearch kiln.test\n"),
        "{stdout}"
    );
    assert!(stdout.contains("Address: 192.0.2.77"), "{stdout}");
    assert!(queries.load(Ordering::SeqCst) >= 1);
}

#[test]
fn kill_9_of_kiln_leaves_no_nat_helper() {
    if !can_run() {
        return;
    }
    let kiln = busybox();
    let marker = format!("4242.{}", std::process::id());
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("kiln"))
        .arg("--root")
        .arg(kiln.root())
        .args(["run", "bb:1", "sleep", &marker])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let helper_of = |init: &str| {
        fs::read_dir("/proc").unwrap().flatten().any(|e| {
            fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c).replace('\0', " ");
                c.starts_with("slirp4netns ") && c.ends_with(&format!(" {init} eth0 "))
            })
        })
    };
    // The init is kiln's child (`kiln __kiln-init`).
    let init = loop {
        let found = fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
            let stat = fs::read_to_string(e.path().join("stat")).ok()?;
            let ppid = stat
                .rsplit(')')
                .next()?
                .split_whitespace()
                .nth(1)?
                .to_owned();
            let cmdline = fs::read(e.path().join("cmdline")).ok()?;
            (ppid == child.id().to_string() && cmdline.ends_with(b"__kiln-init\0"))
                .then(|| e.file_name().to_string_lossy().into_owned())
        });
        if let Some(init) = found.filter(|i| helper_of(i)) {
            break init;
        }
        assert!(
            started.elapsed().as_secs() < 20,
            "the container did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut sleeping = false;
    while !sleeping {
        sleeping = fs::read_dir("/proc").unwrap().flatten().any(|e| {
            fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| c == format!("sleep\0{marker}\0").as_bytes())
        });
        assert!(started.elapsed().as_secs() < 20, "sleep did not start");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The init, PID 1, the process and slirp4netns all follow kiln.
    let gone = std::time::Instant::now();
    while helper_of(&init)
        || fs::read_dir("/proc").unwrap().flatten().any(|e| {
            fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| c == format!("sleep\0{marker}\0").as_bytes())
        })
    {
        assert!(
            gone.elapsed().as_secs() < 10,
            "processes left after kill -9 of kiln"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Gives a directory tree to nobody (65534).
fn chown_tree(path: &Path) {
    std::os::unix::fs::lchown(path, Some(65534), Some(65534)).unwrap();
    if fs::symlink_metadata(path).unwrap().is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path());
        }
    }
}

#[test]
fn rootless_kiln_run_gets_the_isolated_network() {
    if !can_run() {
        return;
    }
    let kiln = busybox();
    let mut remote = RemoteHost::new(2);
    let www = kiln.path("www");
    fs::create_dir_all(&www).unwrap();
    fs::write(www.join("hello.txt"), "rootless hello\n").unwrap();
    remote.serve(&www);
    // A copy of kiln nobody can run, and the store handed to nobody.
    let binary = kiln.path("kiln-nobody");
    common::copy_executable(&assert_cmd::cargo::cargo_bin("kiln"), &binary);
    chown_tree(kiln.dir.path());
    fs::set_permissions(
        kiln.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // Without root slirp4netns opens /dev/net/tun as the caller; hosts
    // that keep it to root get kiln's error (tests/run_cli.rs), so the
    // test opens it up in a private mount namespace of its own.
    let tun = kiln.path("tun");
    let script = "mknod \"$1\" c 10 200 && chmod 666 \"$1\" && mount --bind \"$1\" /dev/net/tun \
                  && exec setpriv --reuid 65534 --regid 65534 --clear-groups \
                  env HOME=/tmp \"$2\" --root \"$3\" run bb:1 sh -c \"$4\"";
    let output = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(&tun)
        .arg(&binary)
        .arg(kiln.root())
        .arg(format!(
            "id -u; ls /sys/class/net; wget -q -O - http://{}:8080/hello.txt",
            remote.address
        ))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "0\neth0\nlo\nrootless hello\n"
    );
    assert_no_helper_left();
}

/// `readlink /proc/self/ns/net` of the host, as a RUN would write it.
fn host_network_namespace() -> String {
    format!(
        "{}\n",
        fs::read_link("/proc/self/ns/net").unwrap().display()
    )
}

#[test]
fn runs_at_once_get_different_networks_and_a_later_run_reuses_one_cleaned() {
    if !can_run() {
        return;
    }
    let kiln = busybox();
    // Two stages whose RUNs wait for each other (through a shared cache
    // mount), so they run at the same time; each records its namespace.
    let rendezvous = |me: &str, other: &str| {
        format!(
            "RUN --mount=type=cache,id=rendezvous,target=/sync,sharing=shared \
             readlink /proc/self/ns/net > /sync/{me}.tmp && busybox mv /sync/{me}.tmp /sync/{me} \
             && i=0 && while [ ! -e /sync/{other} ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done \
             && cat /sync/{other} > /other && readlink /proc/self/ns/net > /mine\n"
        )
    };
    let dir = common::build::context(
        &kiln,
        "ctx",
        &format!(
            "FROM bb:1 AS a\n{}FROM bb:1 AS b\n{}FROM bb:1\nCOPY --from=a /mine /a-mine\nCOPY --from=a /other /a-other\nCOPY --from=b /mine /b-mine\nCOPY --from=b /other /b-other\n",
            rendezvous("a", "b"),
            rendezvous("b", "a")
        ),
        &[],
    );
    kiln.ok(&["build", "-t", "atonce:1", dir.to_str().unwrap()]);
    let read = |image: &str, path: &str| kiln.ok(&["run", image, "cat", path]);
    let (a, b) = (read("atonce:1", "/a-mine"), read("atonce:1", "/b-mine"));
    // Each saw the other's namespace while it ran: they overlapped.
    assert_eq!(read("atonce:1", "/a-other"), b);
    assert_eq!(read("atonce:1", "/b-other"), a);
    assert!(a.starts_with("net:["), "{a}");
    assert_ne!(a, b);
    assert_ne!(a, host_network_namespace());
    assert_ne!(b, host_network_namespace());

    // One RUN after another: the second gets the first's network back,
    // without the server the first left running in the background.
    let dir = common::build::context(
        &kiln,
        "ctx-seq",
        "FROM bb:1\n\
         RUN (busybox nc -l -p 8080 </dev/null >/dev/null &) \
         && until busybox netstat -ltn | grep -q ':8080 '; do sleep 0.01; done \
         && busybox netstat -ltn | grep -c ':8080 ' > /listening \
         && readlink /proc/self/ns/net > /ns-first\n\
         RUN (busybox netstat -ltn | grep -c ':8080 ' || true) > /listening-after \
         && readlink /proc/self/ns/net > /ns-second && ls /sys/class/net > /nets\n",
        &[],
    );
    kiln.ok(&["build", "-t", "seq:1", dir.to_str().unwrap()]);
    assert_eq!(read("seq:1", "/ns-first"), read("seq:1", "/ns-second"));
    assert_eq!(read("seq:1", "/listening"), "1\n");
    assert_eq!(read("seq:1", "/listening-after"), "0\n");
    assert_eq!(read("seq:1", "/nets"), "eth0\nlo\n");
    assert_no_helper_left();
}

#[test]
fn an_insecure_run_gets_a_network_no_other_run_shares() {
    if !can_run() {
        return;
    }
    let kiln = busybox();
    let dir = kiln.path("ctx");
    fs::create_dir_all(&dir).unwrap();
    // The insecure RUN has CAP_NET_ADMIN: it adds an address to its
    // network, which no later RUN may see.
    fs::write(
        dir.join("Dockerfile"),
        "FROM bb:1\n\
         RUN readlink /proc/self/ns/net > /ns-before\n\
         RUN --security=insecure busybox ip addr add 10.9.9.9/32 dev lo \
         && busybox ip addr show > /addrs-insecure && readlink /proc/self/ns/net > /ns-insecure\n\
         RUN busybox ip addr show > /addrs-after && readlink /proc/self/ns/net > /ns-after\n",
    )
    .unwrap();
    kiln.ok(&[
        "build",
        "--allow",
        "security.insecure",
        "-t",
        "insecure:1",
        dir.to_str().unwrap(),
    ]);
    let read = |path: &str| kiln.ok(&["run", "insecure:1", "cat", path]);
    assert!(read("/addrs-insecure").contains("inet 10.9.9.9/32"));
    let after = read("/addrs-after");
    assert!(!after.contains("10.9.9.9"), "{after}");
    assert!(after.contains("inet 10.0.2.100/24"), "{after}");
    let (before, insecure, later) = (read("/ns-before"), read("/ns-insecure"), read("/ns-after"));
    assert_ne!(insecure, before);
    assert_ne!(insecure, later);
    // The other RUNs shared the pool's network, which the insecure RUN
    // never had.
    assert_eq!(before, later);
    assert_no_helper_left();
}

#[test]
fn kill_9_of_a_build_leaves_no_nat_helper_of_its_pool() {
    if !can_run() {
        return;
    }
    let kiln = busybox();
    let marker = format!("4243.{}", std::process::id());
    let dir = common::build::context(
        &kiln,
        "ctx",
        &format!("FROM bb:1\nRUN sleep {marker}\n"),
        &[],
    );
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("kiln"))
        .arg("--root")
        .arg(kiln.root())
        .args(["build", "-q", dir.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The pool's helpers name the namespace by kiln's pid: `PID/fd/N`.
    let owned = format!("{}/fd/", child.id());
    let helpers = || {
        fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                    let c = String::from_utf8_lossy(&c).replace('\0', " ");
                    c.starts_with("slirp4netns ") && c.contains(&format!(" {owned}"))
                })
            })
            .count()
    };
    let running = |cmdline: &str| {
        fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .any(|e| fs::read(e.path().join("cmdline")).is_ok_and(|c| c == cmdline.as_bytes()))
    };
    let sleep = format!("sleep\0{marker}\0");
    let started = std::time::Instant::now();
    while !running(&sleep) {
        assert!(started.elapsed().as_secs() < 20, "the RUN did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(helpers() >= 1, "no helper of the build's pool");
    child.kill().unwrap();
    child.wait().unwrap();
    let gone = std::time::Instant::now();
    while helpers() > 0 || running(&sleep) {
        assert!(
            gone.elapsed().as_secs() < 10,
            "processes left after kill -9 of kiln build"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
