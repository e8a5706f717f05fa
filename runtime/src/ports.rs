//! Published ports (`-p`): a userspace proxy that owns the host's sockets
//! and opens, for each TCP connection or UDP flow, a socket inside the
//! container's network namespace that connects to the container's own
//! address.
//!
//! Why this shape:
//! - It works for every network kind: the proxy never asks how the
//!   namespace is joined to the host (slirp4netns today, a bridge or
//!   pasta later). A socket keeps the namespace it was created in, so an
//!   ephemeral thread that entered the namespace (`setns`) creates and
//!   makes it ([`in_netns`]). Without root, kiln and the monitor run in
//!   kiln's own user namespace, which owns the container's network
//!   namespace, so the thread may enter it there too. Connecting and copying happen in the host's namespace like any other
//!   socket I/O.
//! - It leaves no host state: the host's sockets belong to the process
//!   that holds the [`PortProxy`] (the container's monitor, or `kiln run`
//!   in the foreground), so the kernel frees them when that process ends,
//!   `kill -9` included. No rule or daemon has to be cleaned up.
//! - The target is the container's own address, never its loopback: a
//!   service listening only on 127.0.0.1 inside the container is not
//!   published, as with Docker.
//!
//! On a bridge, whose container address the host routes to, the kernel
//! forwards the same ports too (nftables DNAT, [`crate::bridge::add_forwards`]);
//! this proxy still binds every port (it holds it, as Docker's
//! docker-proxy does) and serves what DNAT does not: the host's
//! loopback, IPv6, and every network kind the host cannot route to
//! (slirp4netns, rootless).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// How long a UDP flow lives without traffic (Docker's proxy: 90 s).
const UDP_FLOW_TIMEOUT: Duration = Duration::from_secs(90);
/// How often idle UDP threads look at the stop flag and the flow's age.
const UDP_TICK: Duration = Duration::from_millis(500);
/// The largest UDP datagram.
const UDP_BUFFER: usize = 65_536;
/// How much one splice moves at most.
const SPLICE_CHUNK: usize = 1 << 20;
/// The pipe between the two sockets of one direction: larger than the
/// default 64 KiB, so one splice moves more.
const PIPE_SIZE: libc::c_int = 1 << 20;

/// A transport protocol kiln publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One port to publish: a host address and port range (`0`-`0` for any
/// free port) to the container's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The host address to listen on (`0.0.0.0` for every one).
    pub host_ip: IpAddr,
    /// The first host port to try (0: any free port).
    pub host_port_first: u16,
    /// The last host port to try (equal to the first for one port).
    pub host_port_last: u16,
    /// The port in the container.
    pub container_port: u16,
}

/// A port the proxy listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The host address and port it listens on.
    pub host: SocketAddr,
    /// The port in the container.
    pub container_port: u16,
}

/// A host port that could not be published.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PortError {
    /// Another socket holds the port (Docker's words).
    #[error("Bind for {addr} failed: port is already allocated")]
    Allocated {
        /// The host address and port.
        addr: SocketAddr,
    },
    /// Every port of a host range is taken.
    #[error("no free host port in {ip}:{first}-{last}/{protocol}: every one is already allocated")]
    RangeAllocated {
        /// The host address.
        ip: IpAddr,
        /// The range's first port.
        first: u16,
        /// The range's last port.
        last: u16,
        /// TCP or UDP.
        protocol: Protocol,
    },
    /// Binding failed otherwise (an address the host does not have, a
    /// privileged port without the capability).
    #[error("cannot publish {addr}/{protocol}: {source}")]
    Bind {
        /// The host address and port.
        addr: SocketAddr,
        /// TCP or UDP.
        protocol: Protocol,
        /// The system's error.
        source: io::Error,
    },
}

fn new_socket(kind: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket with plain flags; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, kind | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket returned a descriptor nobody else owns.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// Where connections go: the container's network namespace and its
/// address there.
struct Target {
    /// The container's network namespace.
    netns: OwnedFd,
    addr: IpAddr,
}

impl Target {
    /// An unconnected socket of `kind` (`SOCK_STREAM`, `SOCK_DGRAM`) in
    /// the container's namespace: a short-lived thread enters it
    /// ([`in_netns`]); the socket keeps it.
    fn socket(&self, kind: libc::c_int) -> io::Result<OwnedFd> {
        in_netns(&self.netns, || new_socket(kind))
    }

    /// A TCP connection to the container's `port`, from inside its
    /// namespace.
    fn connect_tcp(&self, port: u16) -> io::Result<TcpStream> {
        let socket = self.socket(libc::SOCK_STREAM)?;
        let IpAddr::V4(ip) = self.addr else {
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        };
        let address = libc::sockaddr_in {
            sin_family: libc::sa_family_t::try_from(libc::AF_INET).unwrap_or(2),
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: connect with a sockaddr_in of the size given.
        let connected = unsafe {
            libc::connect(
                socket.as_raw_fd(),
                (&raw const address).cast(),
                libc::socklen_t::try_from(size_of::<libc::sockaddr_in>()).unwrap_or(16),
            )
        };
        if connected != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(TcpStream::from(socket))
    }

    /// A UDP socket connected to the container's `port`, in its namespace.
    fn connect_udp(&self, port: u16) -> io::Result<UdpSocket> {
        let socket = UdpSocket::from(self.socket(libc::SOCK_DGRAM)?);
        socket.connect(SocketAddr::new(self.addr, port))?;
        Ok(socket)
    }
}

struct Shared {
    stop: AtomicBool,
    target: Mutex<Option<Arc<Target>>>,
}

impl Shared {
    fn target(&self) -> Option<Arc<Target>> {
        self.target
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

enum Socket {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// The published ports of one container: the host's sockets, bound by
/// [`PortProxy::bind`], served by threads once [`PortProxy::serve`] is
/// called, forwarded to whatever container [`PortProxy::set_target`] last
/// named (none between runs: connections are closed at once). Dropping it
/// closes the host's sockets.
pub struct PortProxy {
    shared: Arc<Shared>,
    sockets: Vec<(PublishedPort, Arc<Socket>)>,
    serving: bool,
}

impl PortProxy {
    /// Binds every spec's host socket, or fails with the first that could
    /// not be bound (the others are closed again).
    pub fn bind(specs: &[PortSpec]) -> Result<PortProxy, PortError> {
        let mut sockets = Vec::with_capacity(specs.len());
        for spec in specs {
            sockets.push(bind_one(spec)?);
        }
        Ok(PortProxy {
            shared: Arc::new(Shared {
                stop: AtomicBool::new(false),
                target: Mutex::new(None),
            }),
            sockets,
            serving: false,
        })
    }

    /// The ports bound, with the host ports chosen.
    pub fn published(&self) -> Vec<PublishedPort> {
        self.sockets.iter().map(|(port, _)| *port).collect()
    }

    /// Starts a thread per host socket (once).
    pub fn serve(&mut self) -> io::Result<()> {
        if self.serving {
            return Ok(());
        }
        self.serving = true;
        for (port, socket) in &self.sockets {
            let shared = Arc::clone(&self.shared);
            let socket = Arc::clone(socket);
            let port = *port;
            std::thread::Builder::new()
                .name(format!("port-{}", port.host.port()))
                .spawn(move || match &*socket {
                    Socket::Tcp(listener) => serve_tcp(listener, &shared, port.container_port),
                    Socket::Udp(udp) => serve_udp(udp, &shared, port.container_port),
                })?;
        }
        Ok(())
    }

    /// Forwards to the container whose process is `pid` (any process in
    /// its network namespace), at its first IPv4 address there; `None`
    /// while no container runs.
    pub fn set_target(&self, pid: Option<i32>) -> io::Result<()> {
        let no_address =
            || io::Error::other("the container's network has no IPv4 address to forward to");
        let target = match pid {
            Some(pid) => {
                let netns = OwnedFd::from(std::fs::File::open(format!("/proc/{pid}/ns/net"))?);
                let addr = in_netns(&netns, container_address)?.ok_or_else(no_address)?;
                Some(Arc::new(Target { netns, addr }))
            }
            None => None,
        };
        *self
            .shared
            .target
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = target;
        Ok(())
    }
}

impl Drop for PortProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for (_, socket) in &self.sockets {
            // Wakes the thread blocked in accept (UDP threads look at the
            // stop flag every tick).
            if let Socket::Tcp(listener) = &**socket {
                // SAFETY: shutdown on a socket this proxy owns.
                unsafe { libc::shutdown(listener.as_raw_fd(), libc::SHUT_RDWR) };
            }
        }
    }
}

fn bind_one(spec: &PortSpec) -> Result<(PublishedPort, Arc<Socket>), PortError> {
    let ports: Vec<u16> = if spec.host_port_first == 0 {
        vec![0]
    } else {
        (spec.host_port_first..=spec.host_port_last.max(spec.host_port_first)).collect()
    };
    let single = ports.len() == 1;
    for port in ports {
        let addr = SocketAddr::new(spec.host_ip, port);
        let bound = match spec.protocol {
            Protocol::Tcp => TcpListener::bind(addr).and_then(|l| {
                let local = l.local_addr()?;
                Ok((local, Socket::Tcp(l)))
            }),
            Protocol::Udp => UdpSocket::bind(addr).and_then(|u| {
                let local = u.local_addr()?;
                Ok((local, Socket::Udp(u)))
            }),
        };
        match bound {
            Ok((host, socket)) => {
                let published = PublishedPort {
                    protocol: spec.protocol,
                    host,
                    container_port: spec.container_port,
                };
                return Ok((published, Arc::new(socket)));
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && single => {
                return Err(PortError::Allocated { addr });
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {}
            Err(source) => {
                return Err(PortError::Bind {
                    addr,
                    protocol: spec.protocol,
                    source,
                });
            }
        }
    }
    Err(PortError::RangeAllocated {
        ip: spec.host_ip,
        first: spec.host_port_first,
        last: spec.host_port_last,
        protocol: spec.protocol,
    })
}

/// Runs `f` on a short-lived thread that entered the network namespace
/// `netns`: sockets `f` creates belong to that namespace for good, and no
/// long-lived thread pins a namespace that should go with its container.
fn in_netns<T: Send>(netns: &OwnedFd, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("port-netns".to_owned())
            .spawn_scoped(scope, || {
                // SAFETY: setns on a namespace descriptor we hold; it
                // changes only this thread's network namespace.
                if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                f()
            })?
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
    })
}

/// The first IPv4 address of an interface that is up and not loopback, in
/// the calling thread's network namespace.
fn container_address() -> io::Result<Option<IpAddr>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, freed below.
    if unsafe { libc::getifaddrs(&raw mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = None;
    let mut entry = list;
    while !entry.is_null() && found.is_none() {
        // SAFETY: `entry` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*entry };
        entry = ifa.ifa_next;
        let up = ifa.ifa_flags & libc::IFF_UP as libc::c_uint != 0;
        let loopback = ifa.ifa_flags & libc::IFF_LOOPBACK as libc::c_uint != 0;
        if !up || loopback || ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: a non-null address of the list.
        let family = unsafe { (*ifa.ifa_addr).sa_family };
        if i32::from(family) == libc::AF_INET {
            // SAFETY: an AF_INET address is a sockaddr_in; read unaligned
            // since the list types it as the less aligned sockaddr.
            let sin = unsafe { std::ptr::read_unaligned(ifa.ifa_addr.cast::<libc::sockaddr_in>()) };
            found = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))));
        }
    }
    // SAFETY: the list getifaddrs returned, freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(found)
}

fn serve_tcp(listener: &TcpListener, shared: &Arc<Shared>, container_port: u16) {
    loop {
        let accepted = listener.accept();
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok((client, _)) => {
                let shared = Arc::clone(shared);
                let _ = std::thread::Builder::new()
                    .name("port-tcp".to_owned())
                    .spawn(move || forward_tcp(&client, &shared, container_port));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Out of descriptors or memory: the client waits in the
            // backlog rather than the thread spinning.
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// One TCP connection: the container's side is connected from inside its
/// namespace, then each direction is copied by its own thread. A client
/// whose container does not answer is closed, as Docker's proxy does.
fn forward_tcp(client: &TcpStream, shared: &Shared, container_port: u16) {
    let Some(target) = shared.target() else {
        return;
    };
    let Ok(server) = target.connect_tcp(container_port) else {
        return;
    };
    drop(target);
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    std::thread::scope(|scope| {
        scope.spawn(|| pump(&server, client));
        pump(client, &server);
    });
}

/// Copies `from` to `to` until end of file, then half-closes `to`; on an
/// error both sockets are shut so that the other direction ends too.
fn pump(from: &TcpStream, to: &TcpStream) {
    if splice_all(from, to).is_ok() {
        let _ = to.shutdown(Shutdown::Write);
    } else {
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    }
}

/// splice(2) through a pipe: the bytes never enter this process.
fn splice_all(from: &TcpStream, to: &TcpStream) -> io::Result<()> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return copy_all(from, to);
    }
    // SAFETY: pipe2 returned two descriptors we own from here on.
    let (pipe_read, pipe_write): (OwnedFd, OwnedFd) = unsafe {
        (
            std::os::fd::FromRawFd::from_raw_fd(fds[0]),
            std::os::fd::FromRawFd::from_raw_fd(fds[1]),
        )
    };
    // SAFETY: F_SETPIPE_SZ on our pipe; a failure keeps the default size.
    unsafe { libc::fcntl(pipe_write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
    let splice = |input: i32, output: i32, len: usize| loop {
        // SAFETY: splice between descriptors we hold, no offsets.
        let n = unsafe {
            libc::splice(
                input,
                std::ptr::null_mut(),
                output,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE,
            )
        };
        if n >= 0 {
            return Ok(n.unsigned_abs());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    loop {
        let n = splice(from.as_raw_fd(), pipe_write.as_raw_fd(), SPLICE_CHUNK)?;
        if n == 0 {
            return Ok(());
        }
        let mut left = n;
        while left > 0 {
            let m = splice(pipe_read.as_raw_fd(), to.as_raw_fd(), left)?;
            if m == 0 {
                return Err(io::Error::from(io::ErrorKind::WriteZero));
            }
            left -= m;
        }
    }
}

/// The plain copy, where no pipe could be made.
fn copy_all(mut from: &TcpStream, mut to: &TcpStream) -> io::Result<()> {
    io::copy(&mut from, &mut to).map(drop)
}

/// One UDP client's flow: a socket in the container's namespace connected
/// to the container's port, and when it last carried a datagram.
struct Flow {
    socket: Arc<UdpSocket>,
    last: Arc<Mutex<Instant>>,
}

fn serve_udp(host: &UdpSocket, shared: &Arc<Shared>, container_port: u16) {
    let _ = host.set_read_timeout(Some(UDP_TICK));
    let flows: Arc<Mutex<HashMap<SocketAddr, Flow>>> = Arc::new(Mutex::new(HashMap::new()));
    let mut buffer = vec![0u8; UDP_BUFFER];
    while !shared.stop.load(Ordering::SeqCst) {
        let Ok((n, client)) = host.recv_from(&mut buffer) else {
            continue;
        };
        let Some(datagram) = buffer.get(..n) else {
            continue;
        };
        let existing = flows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&client)
            .map(|f| (Arc::clone(&f.socket), Arc::clone(&f.last)));
        let Some((socket, last)) =
            existing.or_else(|| open_flow(host, shared, &flows, client, container_port))
        else {
            continue;
        };
        *last.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        let _ = socket.send(datagram);
    }
}

/// A new flow for `client`, with a thread that carries the container's
/// replies back until the flow has been idle for [`UDP_FLOW_TIMEOUT`].
fn open_flow(
    host: &UdpSocket,
    shared: &Arc<Shared>,
    flows: &Arc<Mutex<HashMap<SocketAddr, Flow>>>,
    client: SocketAddr,
    container_port: u16,
) -> Option<(Arc<UdpSocket>, Arc<Mutex<Instant>>)> {
    let target = shared.target()?;
    let socket = target.connect_udp(container_port).ok()?;
    let _ = socket.set_read_timeout(Some(UDP_TICK));
    let socket = Arc::new(socket);
    let last = Arc::new(Mutex::new(Instant::now()));
    let reply_host = host.try_clone().ok()?;
    let (thread_socket, thread_last) = (Arc::clone(&socket), Arc::clone(&last));
    let (thread_flows, thread_shared) = (Arc::clone(flows), Arc::clone(shared));
    std::thread::Builder::new()
        .name("port-udp".to_owned())
        .spawn(move || {
            let mut buffer = vec![0u8; UDP_BUFFER];
            while !thread_shared.stop.load(Ordering::SeqCst) {
                match thread_socket.recv(&mut buffer) {
                    Ok(n) => {
                        *thread_last.lock().unwrap_or_else(PoisonError::into_inner) =
                            Instant::now();
                        if let Some(datagram) = buffer.get(..n) {
                            let _ = reply_host.send_to(datagram, client);
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        let idle = thread_last
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .elapsed();
                        if idle >= UDP_FLOW_TIMEOUT {
                            break;
                        }
                    }
                    // The container refused the datagram (ICMP port
                    // unreachable): the client may try again.
                    Err(_) => {}
                }
            }
            thread_flows
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&client);
        })
        .ok()?;
    flows.lock().unwrap_or_else(PoisonError::into_inner).insert(
        client,
        Flow {
            socket: Arc::clone(&socket),
            last: Arc::clone(&last),
        },
    );
    Some((socket, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(protocol: Protocol, first: u16, last: u16) -> PortSpec {
        PortSpec {
            protocol,
            host_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            host_port_first: first,
            host_port_last: last,
            container_port: 80,
        }
    }

    #[test]
    fn a_free_port_is_chosen_and_a_taken_one_is_refused_in_dockers_words() {
        let proxy = PortProxy::bind(&[spec(Protocol::Tcp, 0, 0)]).unwrap();
        let published = proxy.published();
        let port = published[0].host.port();
        assert_ne!(port, 0);
        let err = PortProxy::bind(&[spec(Protocol::Tcp, port, port)])
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            format!("Bind for 127.0.0.1:{port} failed: port is already allocated")
        );
        // A range moves on to the next free port.
        let next = PortProxy::bind(&[spec(Protocol::Tcp, port, port.saturating_add(20))]);
        if let Ok(next) = next {
            assert_ne!(next.published()[0].host.port(), port);
        }
    }

    #[test]
    fn udp_and_tcp_bind_the_same_port_number() {
        let tcp = PortProxy::bind(&[spec(Protocol::Tcp, 0, 0)]).unwrap();
        let port = tcp.published()[0].host.port();
        let udp = PortProxy::bind(&[spec(Protocol::Udp, port, port)]).unwrap();
        assert_eq!(udp.published()[0].host.port(), port);
    }

    #[test]
    fn an_address_the_host_lacks_names_the_address_and_the_cause() {
        let mut bad = spec(Protocol::Tcp, 0, 0);
        bad.host_ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let err = PortProxy::bind(&[bad]).err().unwrap().to_string();
        assert!(err.starts_with("cannot publish 192.0.2.1:0/tcp: "), "{err}");
    }
}
