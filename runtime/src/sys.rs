//! Small system-call helpers shared by the parent and the init.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A close-on-exec pipe (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both are fresh descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A pseudo-terminal pair (master, slave) from the host's devpts, both
/// close-on-exec (the tests' terminals; containers get theirs from their
/// own devpts, see [`open_terminal`]).
#[cfg(test)]
pub(crate) fn openpty() -> io::Result<(OwnedFd, OwnedFd)> {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: out-pointers are valid; name, termios and winsize may be null.
    check(unsafe {
        libc::openpty(
            &raw mut master,
            &raw mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    })?;
    // SAFETY: openpty succeeded and returned two descriptors we own.
    let pair = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [&pair.0, &pair.1] {
        // SAFETY: plain fcntl on a valid descriptor.
        check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) })?;
    }
    Ok(pair)
}

/// The window size of the terminal `fd` (rows, columns, x and y pixels);
/// `None` when it is not a terminal.
pub(crate) fn window_size(fd: RawFd) -> Option<[u16; 4]> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize.
    let ret = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &raw mut size) };
    (ret == 0).then_some([size.ws_row, size.ws_col, size.ws_xpixel, size.ws_ypixel])
}

/// Opens a new pseudo-terminal from the devpts instance at `/dev/pts` of
/// the calling process's root, with window size `size`: the master
/// (close-on-exec) and the slave, `/dev/pts/N` of that instance, as a
/// process sees its terminal there (`tty` prints that path).
pub(crate) fn open_terminal(size: Option<[u16; 4]>) -> io::Result<(OwnedFd, OwnedFd)> {
    let open = |path: &std::ffi::CStr, flags: libc::c_int| -> io::Result<OwnedFd> {
        // SAFETY: a NUL-terminated path; the descriptor is ours.
        let fd = check(unsafe { libc::open(path.as_ptr(), flags | libc::O_NOCTTY) })?;
        // SAFETY: open succeeded.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let master = open(c"/dev/pts/ptmx", libc::O_RDWR | libc::O_CLOEXEC)?;
    let unlock: libc::c_int = 0;
    let mut number: libc::c_uint = 0;
    // SAFETY: TIOCSPTLCK reads an int, TIOCGPTN writes an unsigned int.
    unsafe {
        check(libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCSPTLCK,
            &raw const unlock,
        ))?;
        check(libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTN,
            &raw mut number,
        ))?;
    }
    if let Some([rows, columns, x, y]) = size {
        let size = libc::winsize {
            ws_row: rows,
            ws_col: columns,
            ws_xpixel: x,
            ws_ypixel: y,
        };
        // SAFETY: TIOCSWINSZ reads one winsize.
        check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &raw const size) })?;
    }
    let path = std::ffi::CString::new(format!("/dev/pts/{number}"))
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let slave = open(&path, libc::O_RDWR)?;
    Ok((master, slave))
}

/// A close-on-exec pair of connected Unix sockets, for passing a
/// descriptor across.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType};
    nix::sys::socket::socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io::Error::from)
}

/// Sends `fd` over the Unix socket `socket`.
pub(crate) fn send_fd(socket: RawFd, fd: RawFd) -> io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let fds = [fd];
    sendmsg::<()>(
        socket,
        &[io::IoSlice::new(b"t")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map(drop)
    .map_err(io::Error::from)
}

/// The descriptor [`send_fd`] sent on `socket` (close-on-exec here);
/// `None` when every sender closed the socket without sending one.
pub(crate) fn receive_fd(socket: &OwnedFd) -> io::Result<Option<OwnedFd>> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut byte = [0u8; 1];
    let mut iov = [io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let message = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    let mut received = None;
    for cmsg in message.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for fd in fds {
                // SAFETY: the kernel installed this descriptor for us.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                received.get_or_insert(owned);
            }
        }
    }
    Ok(received)
}

/// In a spawned child, before exec: puts each `(descriptor, number)` at
/// its fixed number, open across exec (at most [`PLACED_MAX`]). Only
/// async-signal-safe calls, no allocation.
pub(crate) fn place_fds(fds: &[(RawFd, RawFd)]) -> io::Result<()> {
    if fds.len() > PLACED_MAX {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // Move every one out of the way first, so no dup2 clobbers another.
    let mut moved = [0; PLACED_MAX];
    for (slot, &(fd, _)) in moved.iter_mut().zip(fds) {
        // SAFETY: fcntl on an integer.
        *slot = check(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) })?;
    }
    for (&from, &(_, to)) in moved.iter().zip(fds) {
        // SAFETY: dup2 on integers; the copy at `to` is not close-on-exec.
        check(unsafe { libc::dup2(from, to) })?;
    }
    Ok(())
}

/// How many descriptors [`place_fds`] places.
const PLACED_MAX: usize = 4;

/// In the spawned init, before exec: moves the configuration and error
/// pipes, the network namespace to join and the terminal socket, if any,
/// to their fixed numbers and dies with the calling thread. Only
/// async-signal-safe calls.
pub(crate) fn child_fds(
    config: RawFd,
    error: RawFd,
    network: Option<RawFd>,
    terminal: Option<RawFd>,
) -> io::Result<()> {
    let mut all = [
        (config, crate::CONFIG_FD),
        (error, crate::ERROR_FD),
        (-1, -1),
        (-1, -1),
    ];
    let mut count = 2;
    for (fd, number) in [(network, crate::NETWORK_FD), (terminal, crate::TERMINAL_FD)] {
        if let (Some(fd), Some(slot)) = (fd, all.get_mut(count)) {
            *slot = (fd, number);
            count += 1;
        }
    }
    place_fds(all.get(..count).unwrap_or_default())?;
    // SAFETY: prctl on integers.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) })?;
    Ok(())
}

/// Every signal back to its default action, none blocked: what a new
/// program expects. Ignored signals and the mask survive `execve`, and
/// kiln's Rust runtime ignores SIGPIPE, so without this `yes | head -1`
/// would never end in a container. Async-signal-safe.
pub(crate) fn reset_signals() -> io::Result<()> {
    // The kernel's struct sigaction (handler, flags, restorer, mask): all
    // zero is SIG_DFL with no flags and an empty mask. The raw call also
    // reaches 32 and 33, which glibc's wrapper refuses; it fails
    // harmlessly (EINVAL) on SIGKILL and SIGSTOP.
    let action = [0u64; 4];
    for sig in 1..=64 {
        // SAFETY: rt_sigaction reads one kernel sigaction of the given
        // mask size; no old action is written.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                action.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8,
            );
        }
    }
    // SAFETY: an empty set from sigemptyset; no old mask is written.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut empty);
        check(libc::sigprocmask(
            libc::SIG_SETMASK,
            &raw const empty,
            std::ptr::null_mut(),
        ))?;
    }
    Ok(())
}

/// Copies between the caller's terminal and the pty master until the
/// container side closes; returns the output when capturing.
pub(crate) fn pty_copy(master: &OwnedFd, capture: bool, interactive: bool) -> Vec<u8> {
    let mut captured = Vec::new();
    let _raw = interactive.then(RawMode::enter);
    let mut buf = [0u8; 8192];
    let mut stdin_open = interactive;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: master.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if stdin_open { 0 } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: fds is a valid array of two pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        if fds[1].revents != 0 {
            // SAFETY: reads into a buffer of the given length.
            let got = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            match usize::try_from(got) {
                Ok(len) if len > 0 => {
                    let _ = write_all(master.as_raw_fd(), buf.get(..len).unwrap_or_default());
                }
                _ => stdin_open = false,
            }
        }
        if fds[0].revents != 0 {
            // SAFETY: reads into a buffer of the given length.
            let got = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            match usize::try_from(got) {
                Ok(len) if len > 0 => {
                    let data = buf.get(..len).unwrap_or_default();
                    if capture {
                        captured.extend_from_slice(data);
                    } else {
                        let _ = write_all(1, data);
                    }
                }
                // EIO: every slave descriptor is closed, the container is gone.
                _ => break,
            }
        }
    }
    captured
}

/// The terminal on fd 0 in raw mode (what is typed passes as it is, to a
/// container's terminal) while this lives; nothing when fd 0 is no
/// terminal.
pub struct RawMode(Option<libc::termios>);

impl RawMode {
    /// Puts fd 0 in raw mode, keeping its settings to restore.
    pub fn enter() -> RawMode {
        // SAFETY: isatty/tcgetattr/tcsetattr on fd 0 with valid pointers.
        unsafe {
            let mut term: libc::termios = std::mem::zeroed();
            if libc::isatty(0) == 1 && libc::tcgetattr(0, &raw mut term) == 0 {
                let mut raw = term;
                libc::cfmakeraw(&raw mut raw);
                libc::tcsetattr(0, libc::TCSANOW, &raw const raw);
                return RawMode(Some(term));
            }
        }
        RawMode(None)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(term) = self.0 {
            // SAFETY: restores the settings read in `enter`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &raw const term);
            }
        }
    }
}

/// Writes all of `data` to `fd` (retrying after a signal).
pub fn write_all(fd: RawFd, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        // SAFETY: writes from a valid slice.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if let Ok(n) = usize::try_from(n) {
            data = data.get(n..).unwrap_or_default();
        } else {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
    Ok(())
}
