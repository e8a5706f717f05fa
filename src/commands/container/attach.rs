//! Attaching to a kept container's stdio: `kiln attach`, and the
//! foreground `kiln run -t --name` / `kiln start -a` of a container with a
//! terminal. The monitor listens on a unix socket, `attach` in the
//! container's directory (bound and reached through `/proc/self/fd/N/`, as
//! conmon does, so a long store path never meets `sun_path`'s 108 bytes).
//! Any number of clients may attach; each gets the output from the moment
//! it attached (earlier output is in `kiln logs`), and what a client types
//! goes to the container's terminal, or to its stdin when it was started
//! with `-i`.
//!
//! Frames both ways: one kind byte, a big-endian u32 length, the payload.
//! Client to monitor: [`INPUT`] bytes, [`RESIZE`] (rows, columns as two
//! big-endian u16). Monitor to client: [`OUT`] or [`ERR`] bytes. The monitor
//! closes every client when the container's process ends.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use kiln_runtime::Stream;

use super::Container;

/// The socket's name in the container's directory.
pub const SOCKET: &str = "attach";
/// Client to monitor: bytes for the container's terminal or stdin.
const INPUT: u8 = 0;
/// Client to monitor: the client's window size.
const RESIZE: u8 = 1;
/// Monitor to client: the container's stdout (all of a terminal's output).
const OUT: u8 = 1;
/// Monitor to client: the container's stderr.
const ERR: u8 = 2;
/// The largest frame either side accepts.
const MAX_FRAME: usize = 1 << 20;
/// How long the monitor waits on a client that does not read its output
/// before it drops the client (the container's output waits meanwhile).
const STALLED_CLIENT: Duration = Duration::from_secs(10);

/// A path that reaches `name` in the directory `dir` is open as, whatever
/// the length of the directory's own path.
fn through_fd(dir: &OwnedFd, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
}

fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)?;
    Ok(file.into())
}

fn write_frame(writer: &mut impl Write, kind: u8, data: &[u8]) -> io::Result<()> {
    let len = u32::try_from(data.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut frame = Vec::with_capacity(5 + data.len());
    frame.push(kind);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(data);
    writer.write_all(&frame)
}

/// The next frame's kind, its payload in `buf`; `None` at end of stream.
fn read_frame(reader: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Option<u8>> {
    let mut head = [0u8; 5];
    match reader.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let [kind, a, b, c, d] = head;
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("attach frame of {len} bytes (at most {MAX_FRAME})"),
        ));
    }
    buf.resize(len, 0);
    reader.read_exact(buf)?;
    Ok(Some(kind))
}

fn set_window(fd: RawFd, rows: u16, cols: u16) {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ with a valid winsize.
    unsafe {
        libc::ioctl(fd, libc::TIOCSWINSZ, &raw const size);
    }
}

fn window(fd: RawFd) -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ into a zeroed winsize.
    unsafe {
        let mut size: libc::winsize = std::mem::zeroed();
        (libc::ioctl(fd, libc::TIOCGWINSZ, &raw mut size) == 0 && size.ws_row > 0)
            .then_some((size.ws_row, size.ws_col))
    }
}

/// The monitor's side: the listening socket and the clients attached.
pub struct Hub {
    listener: UnixListener,
    tty: bool,
    clients: Mutex<Vec<(u64, UnixStream)>>,
    next: Mutex<u64>,
    /// Where clients' input goes: the terminal's master, or the write end
    /// of the container's stdin (`-i` without a starter's stdin).
    input: Mutex<Option<OwnedFd>>,
}

impl Hub {
    /// Binds the socket in the container's directory `dir` (a stale one,
    /// left by a killed monitor, is replaced).
    pub fn bind(dir: &Path, tty: bool) -> anyhow::Result<Arc<Hub>> {
        let dir_fd = open_dir(dir).with_context(|| format!("cannot open {}", dir.display()))?;
        let path = through_fd(&dir_fd, SOCKET);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("cannot listen on {}", dir.join(SOCKET).display()))?;
        Ok(Arc::new(Hub {
            listener,
            tty,
            clients: Mutex::new(Vec::new()),
            next: Mutex::new(0),
            input: Mutex::new(None),
        }))
    }

    /// Waits up to `timeout` for one client (the starter of `run -t
    /// --name`, so it misses none of the output) and takes it in; returns
    /// the window size it sent first (see [`send_window`]), for the
    /// terminal to have it from the start.
    pub fn accept_first(self: &Arc<Self>, timeout: Duration) -> Option<[u16; 4]> {
        let mut poll = libc::pollfd {
            fd: self.listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&raw mut poll, 1, ms) } <= 0 {
            return None;
        }
        let (mut stream, _) = self.listener.accept().ok()?;
        let _ = stream.set_read_timeout(Some(timeout));
        let mut buf = Vec::new();
        let first = read_frame(&mut stream, &mut buf);
        let _ = stream.set_read_timeout(None);
        self.take(stream);
        match (first, buf.as_slice()) {
            (Ok(Some(RESIZE)), &[a, b, c, d]) => {
                Some([u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]), 0, 0])
            }
            _ => None,
        }
    }

    /// Takes in clients for as long as the process lives.
    pub fn serve(self: &Arc<Self>) {
        let hub = Arc::clone(self);
        std::thread::spawn(move || {
            for stream in hub.listener.incoming() {
                match stream {
                    Ok(stream) => hub.take(stream),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        });
    }

    fn take(self: &Arc<Self>, stream: UnixStream) {
        let Ok(writer) = stream.try_clone() else {
            return;
        };
        let _ = writer.set_write_timeout(Some(STALLED_CLIENT));
        let id = {
            let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
            *next += 1;
            *next
        };
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((id, writer));
        let hub = Arc::clone(self);
        std::thread::spawn(move || hub.read_client(id, stream));
    }

    /// Passes a client's input on until it leaves.
    fn read_client(&self, id: u64, mut stream: UnixStream) {
        let mut buf = Vec::new();
        while let Ok(Some(kind)) = read_frame(&mut stream, &mut buf) {
            let input = self.input.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(fd) = input.as_ref() else {
                continue;
            };
            match kind {
                INPUT => {
                    let _ = kiln_runtime::write_all(fd.as_raw_fd(), &buf);
                }
                RESIZE if self.tty => {
                    if let [a, b, c, d] = buf[..] {
                        set_window(
                            fd.as_raw_fd(),
                            u16::from_be_bytes([a, b]),
                            u16::from_be_bytes([c, d]),
                        );
                    }
                }
                _ => {}
            }
        }
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(client, _)| *client != id);
    }

    /// Sets where clients' input goes (`None`: nowhere).
    pub fn set_input(&self, fd: Option<OwnedFd>) {
        *self.input.lock().unwrap_or_else(PoisonError::into_inner) = fd;
    }

    /// Sends output to every client; one that cannot take it is dropped.
    pub fn broadcast(&self, stream: Stream, data: &[u8]) {
        let kind = match stream {
            Stream::Stdout => OUT,
            Stream::Stderr => ERR,
        };
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        clients.retain_mut(|(_, writer)| write_frame(writer, kind, data).is_ok());
    }

    /// Ends every client's attachment (the container's process ended).
    pub fn disconnect_all(&self) {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, writer) in clients.drain(..) {
            let _ = writer.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Copies a terminal's master until every slave is closed: each chunk to
/// `sink` (the log and the attached clients), clients' input to it.
pub fn pump_terminal(hub: &Hub, master: &OwnedFd, sink: &(dyn Fn(Stream, &[u8]) + Sync)) {
    hub.set_input(master.try_clone().ok());
    let mut buf = [0u8; 8192];
    loop {
        // SAFETY: reads into a buffer of the given length.
        let got = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        match usize::try_from(got) {
            Ok(len) if len > 0 => sink(Stream::Stdout, buf.get(..len).unwrap_or_default()),
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted && got < 0 => {}
            // EIO: every slave descriptor is closed, the container is gone.
            _ => break,
        }
    }
    hub.set_input(None);
}

/// Sends this process's window size (of stdin, else stdout; an empty
/// frame when neither is a terminal).
pub fn send_window(writer: &mut impl Write) -> io::Result<()> {
    let fd = i32::from(!io::IsTerminal::is_terminal(&io::stdin()));
    let payload = window(fd).map_or_else(Vec::new, |(rows, cols)| {
        let mut payload = rows.to_be_bytes().to_vec();
        payload.extend_from_slice(&cols.to_be_bytes());
        payload
    });
    write_frame(writer, RESIZE, &payload)
}

/// Connects to `container`'s monitor.
pub fn connect(container: &Container) -> anyhow::Result<UnixStream> {
    let not_running =
        || anyhow::anyhow!("You cannot attach to a stopped container, start it first");
    let dir_fd = open_dir(&container.dir).map_err(|_| not_running())?;
    UnixStream::connect(through_fd(&dir_fd, SOCKET)).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => not_running(),
        _ => anyhow::Error::new(e).context(format!(
            "cannot attach to container {}",
            container.config.id
        )),
    })
}

/// Docker's detach keys: `ctrl-p,ctrl-q` unless `--detach-keys` says
/// otherwise (comma-separated letters or `ctrl-` with a letter or one of
/// `@[\]^_`).
pub fn parse_detach_keys(text: &str) -> anyhow::Result<Vec<u8>> {
    let mut keys = Vec::new();
    for key in text.split(',') {
        let lower = key.to_ascii_lowercase();
        if let Some(c) = lower.strip_prefix("ctrl-") {
            let code = match c.as_bytes() {
                [c @ b'a'..=b'z'] => c - b'a' + 1,
                [b'@'] => 0,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => bail!("Unknown character: '{key}'"),
            };
            keys.push(code);
        } else if let [c] = key.as_bytes()
            && c.is_ascii_alphabetic()
        {
            keys.push(*c);
        } else {
            bail!("Unknown character: '{key}'");
        }
    }
    Ok(keys)
}

/// How an attachment ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The detach keys were typed; the container runs on.
    Detached,
    /// The container's process ended (or its monitor did).
    Exited,
}

/// What the client passes on.
pub struct Relay {
    /// Pass this process's stdin on.
    pub stdin: bool,
    /// The detach sequence (empty: none).
    pub detach_keys: Vec<u8>,
    /// Pass SIGINT, SIGTERM and SIGHUP on to the container's process
    /// (without a terminal; with one, Ctrl-C is a byte like any other).
    pub sig_proxy: bool,
}

/// Signals noted by the handler: a bit per signal number.
static PENDING: AtomicU32 = AtomicU32::new(0);
/// The write end of the self-pipe the handler wakes the relay with.
static WAKE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn note(signal: libc::c_int) {
    PENDING.fetch_or(1 << signal, Ordering::SeqCst);
    let fd = WAKE.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; a full pipe is fine.
        unsafe {
            libc::write(fd, [0u8].as_ptr().cast(), 1);
        }
    }
}

/// Whether `container` was made with `-t`.
pub fn has_terminal(container: &Container) -> bool {
    container
        .config
        .config
        .get("Tty")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
}

/// As the Docker CLI: stdin attached to a container's terminal must be a
/// terminal itself (a pipe would feed a shell that waits on its prompt);
/// said on stderr, exit 1.
pub fn refuse_piped_terminal(container: &Container, stdin: bool) -> bool {
    let refused = stdin && has_terminal(container) && !io::IsTerminal::is_terminal(&io::stdin());
    if refused {
        eprintln!("the input device is not a TTY");
    }
    refused
}

/// Relays between this process's stdio and `stream` (attached to
/// `container`) until the container's process ends or the detach keys
/// are typed.
pub fn relay(container: &Container, stream: UnixStream, options: &Relay) -> anyhow::Result<Ended> {
    let tty = has_terminal(container);
    let writer = Arc::new(Mutex::new(
        stream
            .try_clone()
            .context("cannot attach: duplicating the socket")?,
    ));
    let (wake_read, wake_write) = self_pipe()?;
    WAKE.store(wake_write.as_raw_fd(), Ordering::SeqCst);
    let mut signals = Vec::new();
    if tty {
        signals.push(libc::SIGWINCH);
    } else if options.sig_proxy {
        signals.extend([libc::SIGINT, libc::SIGTERM, libc::SIGHUP]);
    }
    for &signal in &signals {
        // SAFETY: the handler only does async-signal-safe work.
        unsafe {
            libc::signal(signal, note as *const () as libc::sighandler_t);
        }
    }
    let _raw = (tty && options.stdin).then(kiln_runtime::RawMode::enter);
    let resize = |writer: &Mutex<UnixStream>| {
        let mut w = writer.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = send_window(&mut *w);
    };
    if tty {
        resize(&writer);
    }
    let detached = Arc::new(AtomicBool::new(false));
    if options.stdin {
        let writer = Arc::clone(&writer);
        let detached = Arc::clone(&detached);
        let keys = options.detach_keys.clone();
        std::thread::spawn(move || forward_input(&writer, &keys, &detached));
    }
    let mut reader = stream;
    let mut buf = Vec::new();
    loop {
        let mut fds = [
            libc::pollfd {
                fd: reader.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: wake_read.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: a valid array of two pollfd.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
            continue;
        }
        if fds[1].revents != 0 {
            let mut drain = [0u8; 64];
            // SAFETY: reads into a buffer of the given length.
            unsafe {
                libc::read(
                    wake_read.as_raw_fd(),
                    drain.as_mut_ptr().cast(),
                    drain.len(),
                );
            }
            let pending = PENDING.swap(0, Ordering::SeqCst);
            if pending & (1 << libc::SIGWINCH) != 0 {
                resize(&writer);
            }
            for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                if pending & (1 << signal) != 0 {
                    proxy(container, signal);
                }
            }
        }
        if fds[0].revents == 0 {
            continue;
        }
        match read_frame(&mut reader, &mut buf) {
            Ok(Some(OUT)) => {
                let mut out = io::stdout().lock();
                let _ = out.write_all(&buf).and_then(|()| out.flush());
            }
            Ok(Some(ERR)) => {
                let mut err = io::stderr().lock();
                let _ = err.write_all(&buf).and_then(|()| err.flush());
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    WAKE.store(-1, Ordering::SeqCst);
    for &signal in &signals {
        // SAFETY: restores the default disposition.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
        }
    }
    Ok(if detached.load(Ordering::SeqCst) {
        Ended::Detached
    } else {
        Ended::Exited
    })
}

/// A non-blocking, close-on-exec pipe (read end, write end).
fn self_pipe() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error()).context("cannot attach: creating a pipe");
    }
    // SAFETY: both descriptors are fresh and owned from here on.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Passes a signal on to the container's process.
fn proxy(container: &Container, signal: i32) {
    if let Ok(state) = kiln_store::containers::current_state(&container.dir)
        && let Some(fd) = super::commands::pidfd(state.pid, state.pid_start)
    {
        let _ = super::commands::send(&fd, signal);
    }
}

/// Reads this process's stdin and sends it, until end of file or the
/// detach keys (then the attachment is shut, which ends the relay).
fn forward_input(writer: &Mutex<UnixStream>, keys: &[u8], detached: &AtomicBool) {
    let mut chunk = [0u8; 4096];
    // The part of the detach sequence typed so far, held back until it
    // is either completed or broken.
    let mut held: Vec<u8> = Vec::new();
    loop {
        // SAFETY: reads fd 0 into a buffer of the given length.
        let got = unsafe { libc::read(0, chunk.as_mut_ptr().cast(), chunk.len()) };
        let Ok(len) = usize::try_from(got) else {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        };
        if len == 0 {
            return;
        }
        let mut out = Vec::with_capacity(len);
        for &byte in chunk.get(..len).unwrap_or_default() {
            if keys.is_empty() {
                out.push(byte);
                continue;
            }
            if keys.get(held.len()) == Some(&byte) {
                held.push(byte);
                if held.len() == keys.len() {
                    let mut w = writer.lock().unwrap_or_else(PoisonError::into_inner);
                    if !out.is_empty() {
                        let _ = write_frame(&mut *w, INPUT, &out);
                    }
                    detached.store(true, Ordering::SeqCst);
                    let _ = w.shutdown(std::net::Shutdown::Both);
                    return;
                }
            } else {
                out.append(&mut held);
                if keys.first() == Some(&byte) {
                    held.push(byte);
                } else {
                    out.push(byte);
                }
            }
        }
        if !out.is_empty() {
            let mut w = writer.lock().unwrap_or_else(PoisonError::into_inner);
            if write_frame(&mut *w, INPUT, &out).is_err() {
                return;
            }
        }
    }
}

/// Arguments of `kiln attach`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Override the key sequence for detaching a container.
    #[arg(long, value_name = "KEYS")]
    detach_keys: Option<String>,
    /// Do not attach STDIN.
    #[arg(long)]
    no_stdin: bool,
    /// Proxy all received signals to the process.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    sig_proxy: bool,
    /// The container (ID, ID prefix or name).
    #[arg(value_name = "CONTAINER")]
    container: String,
}

/// Runs `kiln attach`.
pub fn run_attach(
    root: Option<&Path>,
    args: &AttachArgs,
) -> anyhow::Result<std::process::ExitCode> {
    let store = super::containers_at(root);
    let container = super::find_in(&store, &args.container)?;
    let detach_keys = parse_detach_keys(args.detach_keys.as_deref().unwrap_or("ctrl-p,ctrl-q"))?;
    attach_running(
        container,
        &Relay {
            stdin: !args.no_stdin,
            detach_keys,
            sig_proxy: args.sig_proxy,
        },
    )
}

/// Attaches to the running `container`: its exit code when it ends; 1
/// with "read escape sequence" when detached, as the Docker CLI.
pub fn attach_running(
    mut container: Container,
    options: &Relay,
) -> anyhow::Result<std::process::ExitCode> {
    if !container.is_running() {
        bail!("You cannot attach to a stopped container, start it first");
    }
    if refuse_piped_terminal(&container, options.stdin) {
        return Ok(std::process::ExitCode::FAILURE);
    }
    let stream = connect(&container)?;
    match relay(&container, stream, options)? {
        Ended::Detached => {
            eprintln!("read escape sequence");
            Ok(std::process::ExitCode::FAILURE)
        }
        Ended::Exited => {
            super::commands::wait_not_running(&mut container, None)?;
            let code = container.state.exit_code;
            Ok(std::process::ExitCode::from(
                u8::try_from(code).unwrap_or(255),
            ))
        }
    }
}

/// Relays for the foreground `run -t --name` or `start -a` of `container`,
/// whose monitor (`monitor`, a child of this process) exits with the
/// container's code; detaching leaves it running and exits 0, as `docker
/// run -it` does.
pub fn relay_started(
    container: &Container,
    stream: UnixStream,
    monitor: std::process::Child,
    stdin: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let options = Relay {
        stdin,
        detach_keys: parse_detach_keys("ctrl-p,ctrl-q")?,
        sig_proxy: true,
    };
    let mut monitor = monitor;
    match relay(container, stream, &options)? {
        // The monitor lives on; it is not waited for.
        Ended::Detached => Ok(std::process::ExitCode::SUCCESS),
        Ended::Exited => {
            let status = monitor.wait()?;
            let code = status.code().unwrap_or(1);
            Ok(std::process::ExitCode::from(
                u8::try_from(code).unwrap_or(255),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_as_docker_reads_them() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").ok(), Some(vec![16, 17]));
        assert_eq!(
            parse_detach_keys("a,ctrl-@,ctrl-\\").ok(),
            Some(vec![b'a', 0, 28])
        );
        let err = parse_detach_keys("ctrl-1").err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("Unknown character: 'ctrl-1'"));
        let err = parse_detach_keys("ab").err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("Unknown character: 'ab'"));
    }

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused() {
        let mut wire = Vec::new();
        write_frame(&mut wire, OUT, b"hello").ok();
        write_frame(&mut wire, ERR, b"").ok();
        let mut reader = wire.as_slice();
        let mut buf = Vec::new();
        assert_eq!(read_frame(&mut reader, &mut buf).ok().flatten(), Some(OUT));
        assert_eq!(buf, b"hello");
        assert_eq!(read_frame(&mut reader, &mut buf).ok().flatten(), Some(ERR));
        assert!(buf.is_empty());
        assert!(matches!(read_frame(&mut reader, &mut buf), Ok(None)));
        let huge = [OUT, 0xff, 0xff, 0xff, 0xff];
        assert!(read_frame(&mut huge.as_slice(), &mut buf).is_err());
    }
}
