//! SSH agents for `RUN --mount=type=ssh`, as buildx and BuildKit serve
//! them: `--ssh ID=KEYFILE` puts the keys in an agent of the build's own
//! (OpenSSH's `ssh-agent`, with `ssh-add`), and each ssh mount gets a
//! fresh socket that relays the RUN's requests to the agent, read-only as
//! BuildKit's `readOnlyAgent`: only listing keys and signing reach the
//! agent; anything else (adding, removing or locking keys, extensions) is
//! answered with a failure.

use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::BuildError;

/// How long `ssh-agent` has to make its socket.
const AGENT_START: Duration = Duration::from_secs(10);

/// OpenSSH's limit on one agent message (`AGENT_MAX_LEN`).
const MAX_MESSAGE: usize = 256 * 1024;

/// `SSH_AGENT_FAILURE`.
const FAILURE: u8 = 5;

/// The requests a forwarded agent passes on: `SSH2_AGENTC_REQUEST_IDENTITIES`
/// and `SSH2_AGENTC_SIGN_REQUEST`. An allow list, since agents still honour
/// legacy requests too (`ssh-add -D` also sends protocol 1's remove-all).
const PASSED: [u8; 2] = [11, 13];

/// An `ssh-agent` holding the keys of one `--ssh ID=KEYFILE[,KEYFILE...]`;
/// killed when dropped.
#[derive(Debug)]
pub struct KeyAgent {
    child: Child,
    socket: PathBuf,
    /// The 0700 directory holding the socket (removed when dropped).
    _dir: tempfile::TempDir,
}

impl KeyAgent {
    /// Starts `ssh-agent -D -a SOCKET` in a new private directory and
    /// adds `keys` to it. A key with a passphrase is refused: kiln does
    /// not ask for it (buildx does not either).
    pub fn start(keys: &[PathBuf]) -> Result<Self, String> {
        // Checked before the agent starts: `ssh-keygen -y` with an empty
        // passphrase reads the key without ever prompting.
        for key in keys {
            check_key(key)?;
        }
        let dir = tempfile::Builder::new()
            .prefix("kiln-ssh-")
            .tempdir()
            .map_err(|e| format!("creating a directory for ssh-agent: {e}"))?;
        let socket = dir.path().join("agent.sock");
        // ssh-agent is set-group-id on Debian, and exec of such a program
        // clears the parent-death signal: a shell of kiln's own holds it
        // instead (SIGTERM when kiln dies, even by SIGKILL) and stops the
        // agent then, as drop does.
        let mut command = Command::new("/bin/sh");
        command
            .args(["-c", AGENT_SCRIPT, "kiln-ssh-agent"])
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // The death signal follows the thread that forks: kiln starts the
        // agent on its main thread, which lives as long as kiln.
        let parent = std::process::id();
        // SAFETY: only prctl and getppid run between fork and exec, both
        // async-signal-safe system calls on integers.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0);
                // kiln may have died before the prctl.
                if u32::try_from(libc::getppid()).ok() != Some(parent) {
                    libc::_exit(0);
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(|e| {
            format!("running ssh-agent (kiln serves key files with OpenSSH's ssh-agent): {e}")
        })?;
        let mut agent = Self {
            child,
            socket,
            _dir: dir,
        };
        agent.wait_for_socket()?;
        for key in keys {
            agent.add(key)?;
        }
        Ok(agent)
    }

    /// The agent's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn wait_for_socket(&mut self) -> Result<(), String> {
        let started = Instant::now();
        while UnixStream::connect(&self.socket).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                return Err(format!("ssh-agent exited ({status}): {}", stderr.trim()));
            }
            if started.elapsed() > AGENT_START {
                return Err(format!(
                    "ssh-agent made no socket at {} in {AGENT_START:?}",
                    self.socket.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn add(&self, key: &Path) -> Result<(), String> {
        let output = quiet(Command::new("ssh-add"))
            .env("SSH_AUTH_SOCK", &self.socket)
            .arg("-q")
            .arg(key)
            .output()
            .map_err(|e| format!("running ssh-add: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "ssh-add {}: {}",
                key.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(())
    }
}

impl Drop for KeyAgent {
    fn drop(&mut self) {
        // SIGTERM: the shell's trap stops the agent before the shell ends.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = self.child.wait();
    }
}

/// The shell that runs ssh-agent (`$1`: the socket) and stops it on
/// SIGTERM; its exit status is the agent's when the agent ends first.
const AGENT_SCRIPT: &str = r#"ssh-agent -D -a "$1" &
agent=$!
trap 'kill "$agent" 2>/dev/null; wait "$agent"; exit 0' TERM
wait "$agent"
"#;

/// An OpenSSH command that cannot prompt: no input, no askpass program.
fn quiet(mut command: Command) -> Command {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env_remove("DISPLAY")
        .env_remove("SSH_ASKPASS")
        .env("SSH_ASKPASS_REQUIRE", "never");
    command
}

/// Fails unless `key` is a private key without a passphrase.
fn check_key(key: &Path) -> Result<(), String> {
    let output = quiet(Command::new("ssh-keygen"))
        .args(["-y", "-P", "", "-f"])
        .arg(key)
        .output()
        .map_err(|e| format!("running ssh-keygen: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stderr = stderr.trim();
    if stderr.contains("passphrase") {
        return Err(format!(
            "{}: the key has a passphrase, and kiln cannot ask for it (add the key to an ssh-agent and pass its socket: --ssh ID=$SSH_AUTH_SOCK): {stderr}",
            key.display()
        ));
    }
    Err(format!("{}: not a private key: {stderr}", key.display()))
}

/// A socket of the build's own that relays to an agent until dropped.
pub(crate) struct Forwarder {
    socket: PathBuf,
    stop: Arc<AtomicBool>,
}

impl Forwarder {
    /// Listens on `socket` (made with `mode`, `uid` and `gid`) and relays
    /// each connection to the agent at `agent`, on threads of its own.
    pub(crate) fn start(
        socket: &Path,
        agent: &Path,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<Self, BuildError> {
        let listener = UnixListener::bind(socket).map_err(|e| BuildError::io(socket, e))?;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(mode))
            .map_err(|e| BuildError::io(socket, e))?;
        std::os::unix::fs::chown(socket, Some(uid), Some(gid))
            .map_err(|e| BuildError::io(socket, e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let agent = agent.to_owned();
        std::thread::Builder::new()
            .name("ssh-forward".to_owned())
            .spawn(move || accept(&listener, &agent, &stopped))
            .map_err(|e| BuildError::io(socket, e))?;
        Ok(Self {
            socket: socket.to_owned(),
            stop,
        })
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees the flag and ends.
        let _ = UnixStream::connect(&self.socket);
    }
}

fn accept(listener: &UnixListener, agent: &Path, stop: &AtomicBool) {
    for client in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let agent = agent.to_owned();
        let spawned = std::thread::Builder::new()
            .name("ssh-relay".to_owned())
            .spawn(move || {
                if let Err(e) = relay(client, &agent) {
                    log::debug!("ssh agent {}: {e}", agent.display());
                }
            });
        if let Err(e) = spawned {
            log::warn!("ssh agent forwarding: {e}");
        }
    }
}

/// Relays one client's requests to the agent, one message and its answer
/// at a time (the agent protocol is request and reply), until the client
/// closes.
fn relay(mut client: UnixStream, agent: &Path) -> io::Result<()> {
    let mut upstream = UnixStream::connect(agent)?;
    while let Some(request) = read_message(&mut client)? {
        if !request.get(4).is_some_and(|kind| PASSED.contains(kind)) {
            client.write_all(&[0, 0, 0, 1, FAILURE])?;
            continue;
        }
        upstream.write_all(&request)?;
        let Some(reply) = read_message(&mut upstream)? else {
            return Ok(());
        };
        client.write_all(&reply)?;
    }
    Ok(())
}

/// One agent message with its length prefix; `None` at the end of the
/// stream.
fn read_message(stream: &mut UnixStream) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let size = u32::from_be_bytes(len) as usize;
    if size == 0 || size > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("agent message of {size} bytes"),
        ));
    }
    let mut message = vec![0u8; 4 + size];
    if let Some(prefix) = message.get_mut(..4) {
        prefix.copy_from_slice(&len);
    }
    if let Some(body) = message.get_mut(4..) {
        stream.read_exact(body)?;
    }
    Ok(Some(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keygen(dir: &Path, passphrase: &str) -> PathBuf {
        let key = dir.join(format!("key{}", passphrase.len()));
        let status = Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                passphrase,
                "-C",
                "kiln-test",
                "-f",
            ])
            .arg(&key)
            .status()
            .unwrap();
        assert!(status.success());
        key
    }

    fn list(socket: &Path) -> std::process::Output {
        Command::new("ssh-add")
            .arg("-l")
            .env("SSH_AUTH_SOCK", socket)
            .output()
            .unwrap()
    }

    #[test]
    fn key_files_are_served_through_a_read_only_forwarder() {
        let dir = tempfile::tempdir().unwrap();
        let key = keygen(dir.path(), "");
        let agent = KeyAgent::start(std::slice::from_ref(&key)).unwrap();
        let socket = dir.path().join("fwd.sock");
        let forwarder = Forwarder::start(&socket, agent.socket(), 0o600, 0, 0).unwrap();
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let listed = list(&socket);
        assert!(listed.status.success(), "{listed:?}");
        assert!(String::from_utf8_lossy(&listed.stdout).contains("kiln-test"));
        // Removing keys is refused, and the key stays.
        let removed = Command::new("ssh-add")
            .arg("-D")
            .env("SSH_AUTH_SOCK", &socket)
            .output()
            .unwrap();
        assert!(!removed.status.success(), "{removed:?}");
        assert!(list(agent.socket()).status.success());
        drop(forwarder);
        let socket = agent.socket().to_owned();
        drop(agent);
        assert!(UnixStream::connect(&socket).is_err(), "the agent is gone");
    }

    #[test]
    fn keys_with_a_passphrase_or_not_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = keygen(dir.path(), "secret-phrase");
        let err = KeyAgent::start(&[key]).unwrap_err();
        assert!(err.contains("the key has a passphrase"), "{err}");
        let not_key = dir.path().join("notes");
        std::fs::write(&not_key, "hello\n").unwrap();
        let err = KeyAgent::start(&[not_key]).unwrap_err();
        assert!(err.contains("not a private key"), "{err}");
    }
}
