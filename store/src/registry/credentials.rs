//! Registry credentials where Docker keeps them, so that `docker login`
//! and `kiln login` serve each other: `$DOCKER_CONFIG/config.json` (else
//! `~/.docker/config.json`), its `auths` entries (base64 `user:password`
//! in `auth`, or an `identitytoken`), and the credential helpers it names
//! (`credHelpers` per registry, else `credsStore` for all), which are
//! `docker-credential-<name>` programs speaking Docker's helper protocol
//! (`get`, `store`, `erase` on stdin/stdout).
//!
//! A credential belongs to one registry host: lookups match the host
//! exactly (Docker's `ConvertToHostname` of each key), and secrets never
//! appear in an error or in `Debug` output. The file is rewritten
//! atomically with mode 0600, keeping every field kiln does not know.

use std::fmt;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Docker Hub's server address as Docker writes it in `auths` and hands
/// it to helpers.
pub const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

/// The largest `config.json` or helper answer read (a hostile or broken
/// helper cannot make kiln buffer without end).
const MAX_DOCUMENT: u64 = 4 << 20;

/// The user name by which helpers mark an identity token (Docker's
/// `tokenUsername`).
const TOKEN_USERNAME: &str = "<token>";

/// What helpers answer when they hold nothing for a server.
const NOT_FOUND: &str = "credentials not found in native keychain";

/// The parts of Docker's `config.json` kiln reads; every other field is
/// kept as it is.
#[derive(Debug, Default, Serialize, Deserialize)]
struct DockerConfig {
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    auths: Map<String, Value>,
    #[serde(
        rename = "credsStore",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    creds_store: Option<String>,
    #[serde(rename = "credHelpers", default, skip_serializing_if = "Map::is_empty")]
    cred_helpers: Map<String, Value>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

/// A user name and its secret for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The user name (empty with an identity token from a helper).
    pub username: String,
    /// The password, or the identity token when `identity_token`.
    pub secret: String,
    /// Whether `secret` is an OAuth refresh token (Docker's
    /// `identitytoken`) rather than a password.
    pub identity_token: bool,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("secret", &"****")
            .field("identity_token", &self.identity_token)
            .finish()
    }
}

/// Why credentials could not be read, stored or erased.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The configuration file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The configuration file is not Docker's JSON.
    #[error("{path}: invalid Docker configuration: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong (never a secret).
        reason: String,
    },
    /// A credential helper could not be run or failed.
    #[error("credential helper docker-credential-{helper} ({action} {server}): {reason}")]
    Helper {
        /// The helper's name.
        helper: String,
        /// `get`, `store` or `erase`.
        action: &'static str,
        /// The server address it was asked about.
        server: String,
        /// What went wrong.
        reason: String,
    },
}

/// Docker's configuration directory and how to reach its helpers.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    dir: PathBuf,
    /// Where helpers are looked for; `None`: `$PATH`.
    helper_dir: Option<PathBuf>,
}

/// Where a credential lives.
enum Backend {
    File,
    Helper(String),
}

impl CredentialStore {
    /// The store Docker uses: `$DOCKER_CONFIG`, else `$HOME/.docker`.
    pub fn from_env() -> CredentialStore {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .filter(|d| !d.is_empty())
            .map_or_else(
                || {
                    let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
                    PathBuf::from(home).join(".docker")
                },
                PathBuf::from,
            );
        CredentialStore {
            dir,
            helper_dir: None,
        }
    }

    /// A store in `dir`, with helpers looked up in `helper_dir` (else
    /// `$PATH`).
    pub fn in_dir(dir: &Path, helper_dir: Option<&Path>) -> CredentialStore {
        CredentialStore {
            dir: dir.to_owned(),
            helper_dir: helper_dir.map(Path::to_owned),
        }
    }

    /// The configuration file.
    pub fn path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// The credential for a registry host (`docker.io`, `host:5000`), as
    /// Docker resolves it: the registry's own helper, else the default
    /// store, else the file's entry.
    pub fn lookup(&self, host: &str) -> Result<Option<Credential>, CredentialsError> {
        let config = self.read()?;
        let server = server_address(host);
        match backend(&config, &server) {
            Backend::Helper(helper) => self.helper_get(&helper, &server),
            Backend::File => Ok(file_entry(&config, &server)
                .map(|(_, entry)| decode_entry(entry, &self.path()))
                .transpose()?
                .flatten()),
        }
    }

    /// Keeps `credential` for `host` (after a successful login).
    pub fn store(&self, host: &str, credential: &Credential) -> Result<(), CredentialsError> {
        let mut config = self.read()?;
        let server = server_address(host);
        let entry = match backend(&config, &server) {
            Backend::Helper(helper) => {
                self.helper_store(&helper, &server, credential)?;
                // As Docker: the file only records that a login exists.
                Map::new()
            }
            Backend::File => encode_entry(credential),
        };
        // One entry per host: older spellings of the same host go.
        config
            .auths
            .retain(|key, _| hostname(key) != hostname(&server));
        config.auths.insert(server, Value::Object(entry));
        self.write(&config)
    }

    /// Whether `host`'s secret goes into the file itself (no helper
    /// configured for it), which `kiln login` warns about as Docker does.
    pub fn keeps_secrets_in_file(&self, host: &str) -> Result<bool, CredentialsError> {
        let config = self.read()?;
        Ok(matches!(
            backend(&config, &server_address(host)),
            Backend::File
        ))
    }

    /// Forgets the credential for `host`; whether there was one.
    pub fn erase(&self, host: &str) -> Result<bool, CredentialsError> {
        let mut config = self.read()?;
        let server = server_address(host);
        let found_in_file = file_entry(&config, &server).is_some();
        let found = match backend(&config, &server) {
            Backend::Helper(helper) => self.helper_erase(&helper, &server)? || found_in_file,
            Backend::File => found_in_file,
        };
        if found_in_file {
            config
                .auths
                .retain(|key, _| hostname(key) != hostname(&server));
            self.write(&config)?;
        }
        Ok(found)
    }

    fn read(&self) -> Result<DockerConfig, CredentialsError> {
        let path = self.path();
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(DockerConfig::default());
            }
            Err(source) => return Err(CredentialsError::Io { path, source }),
        };
        let mut text = Vec::new();
        file.take(MAX_DOCUMENT + 1)
            .read_to_end(&mut text)
            .map_err(|source| CredentialsError::Io {
                path: path.clone(),
                source,
            })?;
        if text.len() as u64 > MAX_DOCUMENT {
            return Err(CredentialsError::Invalid {
                path,
                reason: format!("larger than {MAX_DOCUMENT} bytes"),
            });
        }
        if text.iter().all(u8::is_ascii_whitespace) {
            return Ok(DockerConfig::default());
        }
        // serde_json's message names a line and column, never the text.
        serde_json::from_slice(&text).map_err(|e| CredentialsError::Invalid {
            path,
            reason: e.to_string(),
        })
    }

    /// Replaces the file atomically, mode 0600 (it holds secrets).
    fn write(&self, config: &DockerConfig) -> Result<(), CredentialsError> {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| CredentialsError::Io { path, source }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io(&self.dir))?;
        let path = self.path();
        let mut text =
            serde_json::to_vec_pretty(config).map_err(|e| CredentialsError::Invalid {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        text.push(b'\n');
        let mut file = tempfile::Builder::new()
            .prefix(".config.json.")
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(&self.dir)
            .map_err(io(&self.dir))?;
        file.write_all(&text).map_err(io(file.path()))?;
        file.as_file().sync_all().map_err(io(file.path()))?;
        // A symlinked config.json (dotfiles managers) is replaced where it
        // points, as Docker does.
        let target = std::fs::canonicalize(&path).unwrap_or(path);
        file.persist(&target)
            .map_err(|e| CredentialsError::Io {
                path: target,
                source: e.error,
            })
            .map(drop)
    }

    fn helper_get(
        &self,
        helper: &str,
        server: &str,
    ) -> Result<Option<Credential>, CredentialsError> {
        let fail = |reason: String| CredentialsError::Helper {
            helper: helper.to_owned(),
            action: "get",
            server: server.to_owned(),
            reason,
        };
        let (ok, out) = self.run_helper(helper, "get", server.as_bytes(), &fail)?;
        let text = String::from_utf8_lossy(&out);
        if !ok {
            if text.contains(NOT_FOUND) {
                return Ok(None);
            }
            return Err(fail(first_line(&text)));
        }
        let value: Value =
            serde_json::from_slice(&out).map_err(|e| fail(format!("invalid answer: {e}")))?;
        let field = |name: &str| value.get(name).and_then(Value::as_str).unwrap_or_default();
        let (username, secret) = (field("Username"), field("Secret"));
        if secret.is_empty() {
            return Ok(None);
        }
        Ok(Some(if username == TOKEN_USERNAME {
            Credential {
                username: String::new(),
                secret: secret.to_owned(),
                identity_token: true,
            }
        } else {
            Credential {
                username: username.to_owned(),
                secret: secret.to_owned(),
                identity_token: false,
            }
        }))
    }

    fn helper_store(
        &self,
        helper: &str,
        server: &str,
        credential: &Credential,
    ) -> Result<(), CredentialsError> {
        let fail = |reason: String| CredentialsError::Helper {
            helper: helper.to_owned(),
            action: "store",
            server: server.to_owned(),
            reason,
        };
        let username = if credential.identity_token {
            TOKEN_USERNAME
        } else {
            credential.username.as_str()
        };
        let input = serde_json::json!({
            "ServerURL": server,
            "Username": username,
            "Secret": credential.secret,
        });
        let (ok, out) = self.run_helper(helper, "store", input.to_string().as_bytes(), &fail)?;
        if ok {
            Ok(())
        } else {
            Err(fail(first_line(&String::from_utf8_lossy(&out))))
        }
    }

    fn helper_erase(&self, helper: &str, server: &str) -> Result<bool, CredentialsError> {
        let fail = |reason: String| CredentialsError::Helper {
            helper: helper.to_owned(),
            action: "erase",
            server: server.to_owned(),
            reason,
        };
        let (ok, out) = self.run_helper(helper, "erase", server.as_bytes(), &fail)?;
        let text = String::from_utf8_lossy(&out);
        match (ok, text.contains(NOT_FOUND)) {
            (true, _) => Ok(true),
            (false, true) => Ok(false),
            (false, false) => Err(fail(first_line(&text))),
        }
    }

    /// Runs `docker-credential-<helper> <action>` with `input` on stdin;
    /// whether it succeeded, and its stdout (else stderr, where helpers
    /// also print their errors).
    fn run_helper(
        &self,
        helper: &str,
        action: &str,
        input: &[u8],
        fail: &dyn Fn(String) -> CredentialsError,
    ) -> Result<(bool, Vec<u8>), CredentialsError> {
        if helper.is_empty() || helper.contains('/') {
            return Err(fail("not a helper name".to_owned()));
        }
        let program = format!("docker-credential-{helper}");
        let program = match &self.helper_dir {
            Some(dir) => dir.join(&program),
            None => PathBuf::from(program),
        };
        let mut child = Command::new(&program)
            .arg(action)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot run {}: {e}", program.display())))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading gives EPIPE: its status
            // and output tell what happened.
            let _ = stdin.write_all(input);
        }
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        if let Some(out) = child.stdout.take() {
            out.take(MAX_DOCUMENT)
                .read_to_end(&mut stdout)
                .map_err(|e| fail(format!("reading its output: {e}")))?;
        }
        if let Some(err) = child.stderr.take() {
            err.take(MAX_DOCUMENT)
                .read_to_end(&mut stderr)
                .map_err(|e| fail(format!("reading its errors: {e}")))?;
        }
        let status = child
            .wait()
            .map_err(|e| fail(format!("waiting for it: {e}")))?;
        if !status.success() && stdout.iter().all(u8::is_ascii_whitespace) {
            stdout = stderr;
        }
        Ok((status.success(), stdout))
    }
}

/// The server address Docker keys a registry's credential by: Docker
/// Hub's index URL, else the host as given (`host:port`).
pub fn server_address(host: &str) -> String {
    let host = hostname(host);
    match host.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_SERVER.to_owned(),
        _ => host,
    }
}

/// Docker's `ConvertToHostname`: the key without scheme and path.
fn hostname(key: &str) -> String {
    let rest = key
        .strip_prefix("http://")
        .or_else(|| key.strip_prefix("https://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or_default().to_owned()
}

/// Which backend holds `server`'s credential: its own helper
/// (`credHelpers`, by server address or host), else `credsStore`, else
/// the file.
fn backend(config: &DockerConfig, server: &str) -> Backend {
    let helpers = &config.cred_helpers;
    let own = helpers
        .get(server)
        .or_else(|| helpers.get(&hostname(server)))
        .and_then(Value::as_str);
    match own.or(config.creds_store.as_deref()) {
        Some(helper) if !helper.is_empty() => Backend::Helper(helper.to_owned()),
        _ => Backend::File,
    }
}

/// The `auths` entry for `server`: its exact key, else one naming the
/// same host (`https://host/v2/`, `http://host`).
fn file_entry<'a>(config: &'a DockerConfig, server: &str) -> Option<(&'a str, &'a Value)> {
    let auths = &config.auths;
    if let Some((key, entry)) = auths.get_key_value(server) {
        return Some((key.as_str(), entry));
    }
    let host = hostname(server);
    auths
        .iter()
        .find(|(key, _)| hostname(key) == host)
        .map(|(key, entry)| (key.as_str(), entry))
}

/// A credential from an `auths` entry: `auth` (base64 `user:password`),
/// or `username`/`password`, plus an `identitytoken`.
fn decode_entry(entry: &Value, path: &Path) -> Result<Option<Credential>, CredentialsError> {
    let field = |name: &str| entry.get(name).and_then(Value::as_str).unwrap_or_default();
    let (mut username, mut password) = (field("username").to_owned(), field("password").to_owned());
    let auth = field("auth");
    if !auth.is_empty() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| CredentialsError::Invalid {
                path: path.to_owned(),
                reason: "an auths entry's auth is not base64 of user:password".to_owned(),
            })?;
        let (user, pass) = decoded
            .split_once(':')
            .ok_or_else(|| CredentialsError::Invalid {
                path: path.to_owned(),
                reason: "an auths entry's auth has no ':' between user and password".to_owned(),
            })?;
        user.clone_into(&mut username);
        pass.clone_into(&mut password);
    }
    let token = field("identitytoken");
    if !token.is_empty() {
        return Ok(Some(Credential {
            username,
            secret: token.to_owned(),
            identity_token: true,
        }));
    }
    if username.is_empty() && password.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credential {
        username,
        secret: password,
        identity_token: false,
    }))
}

/// An `auths` entry as Docker writes one.
fn encode_entry(credential: &Credential) -> Map<String, Value> {
    let mut entry = Map::new();
    if credential.identity_token {
        let auth = format!("{}:", credential.username);
        entry.insert(
            "auth".to_owned(),
            base64::engine::general_purpose::STANDARD
                .encode(auth)
                .into(),
        );
        entry.insert("identitytoken".to_owned(), credential.secret.clone().into());
    } else {
        let auth = format!("{}:{}", credential.username, credential.secret);
        entry.insert(
            "auth".to_owned(),
            base64::engine::general_purpose::STANDARD
                .encode(auth)
                .into(),
        );
    }
    entry
}

fn first_line(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("failed");
    line.chars().take(300).collect()
}

#[cfg(test)]
mod tests;
