//! The HTTP side of the registry client: endpoints, TLS, authentication,
//! retries and redirects, on ureq.
//!
//! Every request goes through [`Session::request`], which is where the
//! rules live: credentials and tokens are attached only to requests for
//! the registry's own scheme, host and port (never after a redirect, which
//! typically leads to blob storage on another host); a 401 is answered
//! once by authenticating (bearer token for the session's scope, or
//! basic); 5xx answers and broken connections are retried with backoff;
//! an unknown host or a refused connection fails at once.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use ureq::http::Response;

use super::RegistryError;
use super::auth::{TokenResponse, parse_challenges};
use super::credentials::{Credential, CredentialStore};

/// How many times a request is tried when the registry answers 5xx or
/// the connection breaks.
pub const MAX_ATTEMPTS: u32 = 4;
/// First backoff delay; doubled after each failed attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Redirects followed (blob downloads to storage, say).
const MAX_REDIRECTS: u32 = 5;
/// Cap on a token endpoint's answer.
pub const MAX_TOKEN_SIZE: u64 = 1 << 20;
/// Cap on an error body read for its message.
const MAX_ERROR_BODY: u64 = 64 * 1024;
/// Where Docker reads per-registry CA and client certificates.
const DEFAULT_CERTS_DIR: &str = "/etc/docker/certs.d";
/// Docker's daemon settings, read for its registry settings.
const DEFAULT_DAEMON_JSON: &str = "/etc/docker/daemon.json";
/// The largest daemon.json read.
const MAX_DAEMON_JSON: u64 = 1 << 20;
/// Docker Hub's registry host.
const DOCKER_HUB_HOST: &str = "registry-1.docker.io";

/// Registry settings that are not per request.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// Registries (`host[:port]`) reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Mirrors of docker.io, tried in order before it (`https://m.example`).
    pub mirrors: Vec<String>,
    /// The `certs.d` directory (`/etc/docker/certs.d`).
    pub certs_dir: PathBuf,
    /// Docker's configuration directory holding the credentials; `None`:
    /// `$DOCKER_CONFIG`, else `~/.docker`.
    pub docker_config: Option<PathBuf>,
}

impl RegistryConfig {
    /// The settings from the environment: `KILN_INSECURE_REGISTRIES` and
    /// `KILN_REGISTRY_MIRRORS` (comma-separated), `KILN_CERTS_DIR`, plus
    /// Docker's daemon settings `insecure-registries` and
    /// `registry-mirrors` from `/etc/docker/daemon.json` (or
    /// `KILN_DOCKER_DAEMON_JSON`), so a CI runner set up for Docker needs
    /// nothing more.
    pub fn from_env() -> Self {
        let mut config = Self::from_env_only();
        let daemon = std::env::var_os("KILN_DOCKER_DAEMON_JSON")
            .filter(|p| !p.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_DAEMON_JSON), PathBuf::from);
        let (insecure, mirrors) = daemon_settings(&daemon);
        config.insecure.extend(insecure);
        config.mirrors.extend(mirrors);
        config
    }

    fn from_env_only() -> Self {
        let list = |name: &str| -> Vec<String> {
            std::env::var(name)
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        Self {
            insecure: list("KILN_INSECURE_REGISTRIES"),
            mirrors: list("KILN_REGISTRY_MIRRORS"),
            certs_dir: std::env::var_os("KILN_CERTS_DIR")
                .filter(|d| !d.is_empty())
                .map_or_else(|| PathBuf::from(DEFAULT_CERTS_DIR), PathBuf::from),
            docker_config: None,
        }
    }
}

/// `insecure-registries` and `registry-mirrors` of a Docker daemon.json
/// (none when it is absent; a broken one is logged and ignored, as it
/// only adds to the defaults).
fn daemon_settings(path: &Path) -> (Vec<String>, Vec<String>) {
    #[derive(serde::Deserialize, Default)]
    struct Daemon {
        #[serde(default, rename = "insecure-registries")]
        insecure: Vec<String>,
        #[serde(default, rename = "registry-mirrors")]
        mirrors: Vec<String>,
    }
    let read = std::fs::File::open(path).and_then(|file| {
        let mut text = Vec::new();
        file.take(MAX_DAEMON_JSON)
            .read_to_end(&mut text)
            .map(|_| text)
    });
    let daemon: Daemon = match read {
        Ok(text) => serde_json::from_slice(&text).unwrap_or_else(|e| {
            log::warn!("{}: ignored: {e}", path.display());
            Daemon::default()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Daemon::default(),
        Err(e) => {
            log::warn!("{}: ignored: {e}", path.display());
            Daemon::default()
        }
    };
    (daemon.insecure, daemon.mirrors)
}

/// Whether `registry` (`host[:port]`) is named by an insecure-registries
/// entry: the same `host[:port]`, or a CIDR (`10.0.0.0/8`) holding its
/// address, as Docker matches them.
fn is_insecure(insecure: &[String], registry: &str) -> bool {
    let address = split_host(registry).parse::<std::net::IpAddr>().ok();
    insecure.iter().any(|entry| {
        let entry = entry
            .strip_prefix("http://")
            .or_else(|| entry.strip_prefix("https://"))
            .unwrap_or(entry)
            .trim_end_matches('/');
        if entry == registry {
            return true;
        }
        let (Some(address), Some((net, bits))) = (address, entry.split_once('/')) else {
            return false;
        };
        let (Ok(net), Ok(bits)) = (net.parse::<std::net::IpAddr>(), bits.parse::<u32>()) else {
            return false;
        };
        match (address, net) {
            (std::net::IpAddr::V4(a), std::net::IpAddr::V4(n)) if bits <= 32 => {
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                u32::from(a) & mask == u32::from(n) & mask
            }
            (std::net::IpAddr::V6(a), std::net::IpAddr::V6(n)) if bits <= 128 => {
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                u128::from(a) & mask == u128::from(n) & mask
            }
            _ => false,
        }
    })
}

/// Where requests for one registry go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The registry as references name it (`docker.io`, `localhost:5000`).
    pub registry: String,
    /// `scheme://host[:port]` requests go to.
    pub base: String,
    /// The host credentials are looked up for (the registry, or a mirror).
    pub credential_host: String,
    /// Whether this is a mirror (pull only).
    pub mirror: bool,
    /// Docker's insecure registry (loopback or named in
    /// `insecure-registries`, without a certs.d directory): HTTPS without
    /// verifying the certificate where the registry speaks TLS, else plain
    /// HTTP ([`Client::resolve`] asks once per registry).
    pub insecure: bool,
}

/// Whether a host (without port) is a loopback name Docker reaches over
/// plain HTTP.
fn is_loopback(host_port: &str) -> bool {
    let host = split_host(host_port);
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `url` reaches this host's loopback (or the unspecified address,
/// which connects there too) while `registry` (the endpoint's `host[:port]`)
/// is not itself on loopback.
fn sends_to_host_loopback(registry: &str, url: &str) -> bool {
    let host = split_host(host_of(url));
    let local = host.trim_end_matches('.').eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified() || ip.to_canonical().is_loopback());
    local && !is_loopback(registry)
}

/// The host of `host[:port]` (brackets of an IPv6 literal removed).
fn split_host(host_port: &str) -> &str {
    if let Some(rest) = host_port.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
}

/// The key of a cached token: host, repository and actions.
fn token_key(base: &str, scope: &str) -> String {
    format!("{base} {scope}")
}

/// A registry client: one per command, shared by threads.
pub struct Client {
    config: RegistryConfig,
    agents: Mutex<HashMap<String, ureq::Agent>>,
    tokens: Mutex<HashMap<String, String>>,
    /// Bases that asked for basic authentication.
    basic: Mutex<HashMap<String, bool>>,
    credentials: Mutex<HashMap<String, Option<Credential>>>,
    /// Insecure endpoints by their HTTPS base, as [`Client::resolve`]
    /// chose them.
    resolved: Mutex<HashMap<String, Endpoint>>,
}

impl Client {
    /// A client with these settings.
    pub fn new(config: RegistryConfig) -> Self {
        Self {
            config,
            agents: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            basic: Mutex::new(HashMap::new()),
            resolved: Mutex::new(HashMap::new()),
            credentials: Mutex::new(HashMap::new()),
        }
    }

    /// The endpoints of a registry, in the order they are tried: for a
    /// pull from docker.io the mirrors first.
    pub fn endpoints(&self, registry: &str, pull: bool) -> Vec<Endpoint> {
        let mut endpoints = Vec::new();
        if registry == "docker.io" {
            if pull {
                for mirror in &self.config.mirrors {
                    let base = mirror.trim_end_matches('/').to_owned();
                    let host = base
                        .split_once("://")
                        .map_or(base.as_str(), |(_, h)| h)
                        .to_owned();
                    let base = if base.contains("://") {
                        base
                    } else {
                        format!("https://{base}")
                    };
                    endpoints.push(Endpoint {
                        registry: registry.to_owned(),
                        base,
                        credential_host: host,
                        mirror: true,
                        insecure: false,
                    });
                }
            }
            endpoints.push(Endpoint {
                registry: registry.to_owned(),
                base: format!("https://{DOCKER_HUB_HOST}"),
                credential_host: registry.to_owned(),
                mirror: false,
                insecure: false,
            });
            return endpoints;
        }
        // A certs.d directory means verified TLS even on loopback;
        // otherwise loopback and named-insecure registries are Docker's
        // insecure ones: unverified HTTPS, or plain HTTP (resolve).
        let has_certs = self.config.certs_dir.join(registry).is_dir();
        let insecure =
            !has_certs && (is_loopback(registry) || is_insecure(&self.config.insecure, registry));
        endpoints.push(Endpoint {
            registry: registry.to_owned(),
            base: format!("https://{registry}"),
            credential_host: registry.to_owned(),
            mirror: false,
            insecure,
        });
        endpoints
    }

    /// A session for one repository at one endpoint, with the scope
    /// `repository:NAME:pull` or `pull,push`.
    pub fn session(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        push: bool,
    ) -> Result<Session<'_>, RegistryError> {
        let endpoint = &self.resolve(endpoint);
        let agent = self.agent(endpoint)?;
        let actions = if push { "pull,push" } else { "pull" };
        Ok(Session {
            client: self,
            endpoint: endpoint.clone(),
            repository: repository.to_owned(),
            scope: format!("repository:{repository}:{actions}"),
            agent,
        })
    }

    /// The endpoint to use for an insecure registry, as Docker picks it:
    /// HTTPS (the certificate unverified) when the registry answers a TLS
    /// handshake and `GET /v2/` over it, plain HTTP otherwise. One probe
    /// per registry and process; it carries no credentials. Any other
    /// endpoint is returned as it is.
    pub fn resolve(&self, endpoint: &Endpoint) -> Endpoint {
        if !endpoint.insecure || !endpoint.base.starts_with("https://") {
            return endpoint.clone();
        }
        let mut resolved = self
            .resolved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(found) = resolved.get(&endpoint.base) {
            return found.clone();
        }
        let probe: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            // Go's TLS handshake timeout, which Docker's probe has.
            .timeout_global(Some(Duration::from_secs(10)))
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .disable_verification(true)
                    .build(),
            )
            .build()
            .into();
        let url = format!("{}/v2/", endpoint.base);
        let chosen = match probe.get(&url).call() {
            Ok(_) => endpoint.clone(),
            Err(e) => {
                log::info!(
                    "{}: no HTTPS at {url} ({e}); using plain HTTP",
                    endpoint.registry
                );
                Endpoint {
                    base: format!("http://{}", &endpoint.base["https://".len()..]),
                    ..endpoint.clone()
                }
            }
        };
        resolved.insert(endpoint.base.clone(), chosen.clone());
        chosen
    }

    fn agent(&self, endpoint: &Endpoint) -> Result<ureq::Agent, RegistryError> {
        let mut agents = self
            .agents
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(agent) = agents.get(&endpoint.base) {
            return Ok(agent.clone());
        }
        let host = endpoint
            .base
            .split_once("://")
            .map_or(endpoint.base.as_str(), |(_, h)| h);
        let tls = if endpoint.insecure {
            ureq::tls::TlsConfig::builder()
                .disable_verification(true)
                .build()
        } else {
            tls_config(&self.config.certs_dir, host)?
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_mins(2)))
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build()
            .into();
        agents.insert(endpoint.base.clone(), agent.clone());
        Ok(agent)
    }

    fn credential(&self, host: &str) -> Result<Option<Credential>, RegistryError> {
        let mut cache = self
            .credentials
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(found) = cache.get(host) {
            return Ok(found.clone());
        }
        let store = self
            .config
            .docker_config
            .as_deref()
            .map_or_else(CredentialStore::from_env, |dir| {
                CredentialStore::in_dir(dir, None)
            });
        let found = store.lookup(host).map_err(|e| RegistryError::Credentials {
            registry: host.to_owned(),
            reason: e.to_string(),
        })?;
        cache.insert(host.to_owned(), found.clone());
        Ok(found)
    }

    /// Checks that `credential` logs in to `registry` (`kiln login`): `GET
    /// /v2/` with it, through the registry's challenge (basic, or a bearer
    /// token for no repository), as Docker checks a login.
    pub fn check_login(
        &self,
        registry: &str,
        credential: &Credential,
    ) -> Result<(), RegistryError> {
        let endpoint = self
            .endpoints(registry, false)
            .into_iter()
            .find(|e| !e.mirror)
            .map(|e| self.resolve(&e))
            .ok_or_else(|| RegistryError::Reference(format!("no endpoint for {registry}")))?;
        // The credential to check stands in for any stored one.
        self.credentials
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(endpoint.credential_host.clone(), Some(credential.clone()));
        let session = Session {
            client: self,
            agent: self.agent(&endpoint)?,
            endpoint,
            repository: String::new(),
            scope: String::new(),
        };
        let url = format!("{}/v2/", session.endpoint.base);
        let mut response = session.request("GET", &url, &[], &Body::Empty, "login")?;
        if response.status().as_u16() == 200 {
            return Ok(());
        }
        Err(session.status_error("login", &mut response))
    }
}

/// The TLS settings for one host: the system roots plus `*.crt` from
/// `certs.d/HOST[:PORT]/`, and `client.cert`/`client.key` if present.
fn tls_config(certs_dir: &Path, host: &str) -> Result<ureq::tls::TlsConfig, RegistryError> {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
    let dir = certs_dir.join(host);
    let tls_error = |path: &Path, reason: String| RegistryError::Tls {
        registry: host.to_owned(),
        path: path.display().to_string(),
        reason,
    };
    let mut extra: Vec<Certificate<'static>> = Vec::new();
    let mut client_cert = None;
    if dir.is_dir() {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| tls_error(&dir, e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        names.sort();
        for path in &names {
            if path.extension().is_some_and(|e| e == "crt") {
                let pem = std::fs::read(path).map_err(|e| tls_error(path, e.to_string()))?;
                let before = extra.len();
                for item in ureq::tls::parse_pem(&pem) {
                    match item {
                        Ok(ureq::tls::PemItem::Certificate(cert)) => extra.push(cert),
                        Ok(_) => {}
                        Err(e) => return Err(tls_error(path, format!("invalid PEM: {e}"))),
                    }
                }
                if extra.len() == before {
                    return Err(tls_error(path, "holds no certificate".to_owned()));
                }
            }
        }
        let cert_path = dir.join("client.cert");
        let key_path = dir.join("client.key");
        match (cert_path.is_file(), key_path.is_file()) {
            (true, true) => {
                let pem =
                    std::fs::read(&cert_path).map_err(|e| tls_error(&cert_path, e.to_string()))?;
                let chain: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
                    .filter_map(|item| match item {
                        Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                        _ => None,
                    })
                    .collect();
                if chain.is_empty() {
                    return Err(tls_error(&cert_path, "holds no certificate".to_owned()));
                }
                let key_pem =
                    std::fs::read(&key_path).map_err(|e| tls_error(&key_path, e.to_string()))?;
                let key = PrivateKey::from_pem(&key_pem)
                    .map_err(|e| tls_error(&key_path, format!("invalid private key: {e}")))?;
                client_cert = Some(ClientCert::new_with_certs(&chain, key));
            }
            (true, false) => {
                return Err(tls_error(
                    &key_path,
                    "client.cert without client.key".to_owned(),
                ));
            }
            (false, true) => {
                return Err(tls_error(
                    &cert_path,
                    "client.key without client.cert".to_owned(),
                ));
            }
            (false, false) => {}
        }
    }
    let roots = if extra.is_empty() {
        system_roots().map_or(RootCerts::WebPki, RootCerts::from)
    } else {
        let mut all = system_roots().unwrap_or_default();
        all.extend(extra);
        RootCerts::from(all)
    };
    Ok(TlsConfig::builder()
        .root_certs(roots)
        .client_cert(client_cert)
        .build())
}

/// The system's CA bundle (`SSL_CERT_FILE`, else Debian's or Red Hat's).
fn system_roots() -> Option<Vec<ureq::tls::Certificate<'static>>> {
    let candidates = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
            ]
            .map(PathBuf::from),
        );
    for path in candidates {
        if let Ok(pem) = std::fs::read(&path) {
            let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if !certs.is_empty() {
                return Some(certs);
            }
        }
    }
    None
}

/// A request body that can be sent again on a retry.
#[derive(Debug, Clone)]
pub enum Body {
    /// No body.
    Empty,
    /// Bytes in memory.
    Bytes(Arc<[u8]>),
    /// A range of a file.
    File {
        /// The file.
        path: PathBuf,
        /// Where the range starts.
        offset: u64,
        /// Its length.
        len: u64,
    },
}

/// Talks to one repository of one registry endpoint.
pub struct Session<'a> {
    client: &'a Client,
    endpoint: Endpoint,
    repository: String,
    scope: String,
    agent: ureq::Agent,
}

impl Session<'_> {
    /// The registry (`docker.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        &self.endpoint.registry
    }

    /// The repository (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// `base/v2/REPOSITORY/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.endpoint.base, self.repository)
    }

    /// Resolves a `Location` header against the endpoint.
    pub fn resolve_location(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else if location.starts_with('/') {
            format!("{}{location}", self.endpoint.base)
        } else {
            format!("{}/{location}", self.endpoint.base)
        }
    }

    /// Sends a request, authenticating, retrying and following redirects
    /// as described in the module docs. `what` names the request in errors.
    pub fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: &Body,
        what: &str,
    ) -> Result<Response<ureq::Body>, RegistryError> {
        let mut url = url.to_owned();
        let mut redirected = false;
        let mut authenticated = false;
        let mut redirects = 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            // A registry elsewhere must not send kiln to this host's own
            // services (a redirect or an upload Location naming loopback).
            // (The endpoint's own address counts: a mirror may be local.)
            if sends_to_host_loopback(host_of(&self.endpoint.base), &url) {
                return Err(RegistryError::Invalid {
                    registry: self.endpoint.registry.clone(),
                    what: what.to_owned(),
                    reason: format!(
                        "it sends kiln to {}, this host's loopback, which only a registry on this host may",
                        strip_query(&url)
                    ),
                });
            }
            // Credentials go to the registry's own origin only, and never
            // after a redirect.
            let authorization = if !redirected && self.same_origin(&url) {
                self.authorization()?
            } else {
                None
            };
            let result = self.send_once(method, &url, headers, body, authorization.as_deref());
            let response = match result {
                Ok(response) => response,
                Err(error) => {
                    let retry = match &error {
                        ureq::Error::HostNotFound => {
                            return Err(RegistryError::UnknownHost {
                                registry: self.endpoint.registry.clone(),
                                host: split_host(host_of(&url)).to_owned(),
                            });
                        }
                        // The resolver's failure comes as an I/O error.
                        ureq::Error::Io(e)
                            if e.to_string().contains("failed to lookup address") =>
                        {
                            return Err(RegistryError::UnknownHost {
                                registry: self.endpoint.registry.clone(),
                                host: split_host(host_of(&url)).to_owned(),
                            });
                        }
                        // TLS failures (rustls reports them as
                        // InvalidData: a bad certificate, an alert) are not
                        // transient.
                        ureq::Error::Io(e) => !matches!(
                            e.kind(),
                            std::io::ErrorKind::ConnectionRefused
                                | std::io::ErrorKind::NotFound
                                | std::io::ErrorKind::PermissionDenied
                                | std::io::ErrorKind::InvalidData
                        ),
                        ureq::Error::Timeout(_) => true,
                        _ => false,
                    };
                    let cause = error.to_string();
                    if !retry && attempt == 1 {
                        return Err(RegistryError::Connect {
                            registry: self.endpoint.registry.clone(),
                            url: strip_query(&url),
                            cause: describe_transport(&error, cause),
                        });
                    }
                    if !retry || attempt >= MAX_ATTEMPTS {
                        return Err(RegistryError::Transport {
                            registry: self.endpoint.registry.clone(),
                            what: what.to_owned(),
                            attempts: attempt,
                            cause,
                        });
                    }
                    backoff(attempt);
                    continue;
                }
            };
            let status = response.status().as_u16();
            if status == 401 && !redirected {
                if authenticated {
                    return Err(self.unauthorized()?);
                }
                authenticated = true;
                self.authenticate(&response)?;
                attempt = 0;
                continue;
            }
            if status >= 500 && attempt < MAX_ATTEMPTS {
                log::debug!("{what}: {status} from {}, retrying", self.endpoint.registry);
                backoff(attempt);
                continue;
            }
            if matches!(status, 301 | 302 | 303 | 307 | 308)
                && (method == "GET" || method == "HEAD")
                && let Some(location) = header(&response, "location")
            {
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(RegistryError::Invalid {
                        registry: self.endpoint.registry.clone(),
                        what: what.to_owned(),
                        reason: format!("more than {MAX_REDIRECTS} redirects"),
                    });
                }
                url = resolve_against(&url, &location);
                redirected = true;
                attempt = 0;
                continue;
            }
            return Ok(response);
        }
    }

    fn send_once(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: &Body,
        authorization: Option<&str>,
    ) -> Result<Response<ureq::Body>, ureq::Error> {
        let mut request = ureq::http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        match body {
            Body::Empty => {
                let request = if method == "PUT" || method == "POST" || method == "PATCH" {
                    request.header("content-length", "0")
                } else {
                    request
                };
                let request = request.body(()).map_err(ureq::Error::from)?;
                self.agent.run(request)
            }
            Body::Bytes(bytes) => {
                let request = request.body(bytes.to_vec()).map_err(ureq::Error::from)?;
                self.agent.run(request)
            }
            Body::File { path, offset, len } => {
                let mut file = std::fs::File::open(path)?;
                file.seek(SeekFrom::Start(*offset))?;
                let reader = file.take(*len);
                let request = request
                    .header("content-length", len.to_string())
                    .body(ureq::SendBody::from_owned_reader(reader))
                    .map_err(ureq::Error::from)?;
                self.agent.run(request)
            }
        }
    }

    fn same_origin(&self, url: &str) -> bool {
        url == self.endpoint.base
            || url
                .strip_prefix(&self.endpoint.base)
                .is_some_and(|rest| rest.starts_with('/') || rest.starts_with('?'))
    }

    /// The Authorization header for the next request, if any: a cached
    /// token for this scope, or basic credentials once asked for.
    fn authorization(&self) -> Result<Option<String>, RegistryError> {
        let key = token_key(&self.endpoint.base, &self.scope);
        if let Some(token) = self
            .client
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
        {
            return Ok(Some(format!("Bearer {token}")));
        }
        let basic = self
            .client
            .basic
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&self.endpoint.base)
            .copied()
            .unwrap_or(false);
        if basic && let Some(credential) = self.client.credential(&self.endpoint.credential_host)? {
            return Ok(Some(basic_header(&credential)));
        }
        Ok(None)
    }

    /// Answers a 401: fetches a token for the session's scope, or marks
    /// the endpoint as using basic authentication.
    fn authenticate(&self, response: &Response<ureq::Body>) -> Result<(), RegistryError> {
        let challenges = response
            .headers()
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_challenges)
            .collect::<Vec<_>>();
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let Some(realm) = bearer.param("realm") else {
                return Err(RegistryError::Invalid {
                    registry: self.endpoint.registry.clone(),
                    what: "WWW-Authenticate header".to_owned(),
                    reason: "bearer challenge without realm".to_owned(),
                });
            };
            let token = self.fetch_token(realm, bearer.param("service"))?;
            self.client
                .tokens
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(token_key(&self.endpoint.base, &self.scope), token);
            return Ok(());
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            if self
                .client
                .credential(&self.endpoint.credential_host)?
                .is_none()
            {
                return Err(self.unauthorized()?);
            }
            self.client
                .basic
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(self.endpoint.base.clone(), true);
            return Ok(());
        }
        Err(self.unauthorized()?)
    }

    fn fetch_token(&self, realm: &str, service: Option<&str>) -> Result<String, RegistryError> {
        let realm_display = strip_query(realm);
        let token_error = |cause: String| RegistryError::Token {
            registry: self.endpoint.registry.clone(),
            repository: self.repository.clone(),
            realm: realm_display.clone(),
            cause,
        };
        if !(realm.starts_with("https://") || realm.starts_with("http://")) {
            return Err(token_error("the realm is not an http(s) URL".to_owned()));
        }
        let mut url = realm.to_owned();
        let mut separator = if url.contains('?') { '&' } else { '?' };
        if let Some(service) = service {
            let _ = write!(url, "{separator}service={}", query_escape(service));
            separator = '&';
        }
        if !self.scope.is_empty() {
            let _ = write!(url, "{separator}scope={}", query_escape(&self.scope));
        }
        // Credentials go to the token service the registry names (as
        // Docker sends them) only over TLS, or over plain HTTP on this
        // machine's loopback, where nobody else can read them.
        let credential = self.client.credential(&self.endpoint.credential_host)?;
        let may_send = realm.starts_with("https://") || is_loopback(host_of(realm));
        // An identity token (Docker's `identitytoken`, as `az acr login`
        // or an SSO `docker login` keep) is an OAuth refresh token: it is
        // exchanged by the refresh-token grant, a form POSTed to the
        // realm, as Docker does; never sent as a password.
        let refresh = credential
            .as_ref()
            .filter(|c| c.identity_token && may_send)
            .map(|c| {
                let mut form = format!(
                    "grant_type=refresh_token&client_id=kiln&refresh_token={}",
                    query_escape(&c.secret)
                );
                if let Some(service) = service {
                    let _ = write!(form, "&service={}", query_escape(service));
                }
                if !self.scope.is_empty() {
                    let _ = write!(form, "&scope={}", query_escape(&self.scope));
                }
                form
            });
        let authorization = credential
            .as_ref()
            .filter(|c| may_send && !c.identity_token)
            .map(basic_header);
        let mut attempt = 0;
        let mut response = loop {
            attempt += 1;
            let sent = if let Some(form) = &refresh {
                self.agent
                    .post(realm)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .send(form.as_str())
            } else {
                let mut request = self.agent.get(&url);
                if let Some(authorization) = &authorization {
                    request = request.header("authorization", authorization);
                }
                request.call()
            };
            match sent {
                Ok(response) if response.status().as_u16() >= 500 && attempt < MAX_ATTEMPTS => {
                    backoff(attempt);
                }
                Ok(response) => break response,
                Err(e) => return Err(token_error(e.to_string())),
            }
        };
        let status = response.status().as_u16();
        // OAuth answers a refused grant with 400 (`invalid_grant`).
        if status == 401 || status == 403 || (status == 400 && refresh.is_some()) {
            return Err(self.unauthorized_with(&format!(
                "the token service refused {} (status {status})",
                if credential.is_some() {
                    "the credentials"
                } else {
                    "anonymous access"
                }
            )));
        }
        if status != 200 {
            return Err(token_error(format!("status {status}")));
        }
        let bytes = read_capped(response.body_mut(), MAX_TOKEN_SIZE)
            .map_err(|e| token_error(format!("cannot read the answer: {e}")))?
            .ok_or_else(|| token_error(format!("answer over {MAX_TOKEN_SIZE} bytes")))?;
        let parsed: TokenResponse = serde_json::from_slice(&bytes)
            .map_err(|e| token_error(format!("invalid JSON answer: {e}")))?;
        parsed
            .into_token()
            .ok_or_else(|| token_error("the answer holds no token".to_owned()))
    }

    fn unauthorized(&self) -> Result<RegistryError, RegistryError> {
        let has = self
            .client
            .credential(&self.endpoint.credential_host)?
            .is_some();
        Ok(self.unauthorized_with(if has {
            "the credentials were refused (wrong user name or password?)"
        } else {
            "no credentials are stored for it (kiln login)"
        }))
    }

    fn unauthorized_with(&self, why: &str) -> RegistryError {
        RegistryError::Unauthorized {
            registry: self.endpoint.registry.clone(),
            repository: self.repository.clone(),
            hint: format!(": {why}"),
        }
    }

    /// The error for an unexpected answer, with the registry's message.
    pub fn status_error(&self, what: &str, response: &mut Response<ureq::Body>) -> RegistryError {
        let status = response.status().as_u16();
        let detail = error_detail(response);
        match status {
            401 => self.unauthorized_with(&format!("the registry refused access{detail}")),
            403 => RegistryError::Denied {
                registry: self.endpoint.registry.clone(),
                repository: self.repository.clone(),
                action: if self.scope.ends_with("push") {
                    "push".to_owned()
                } else {
                    "pull".to_owned()
                },
                detail,
            },
            _ => RegistryError::Status {
                registry: self.endpoint.registry.clone(),
                what: what.to_owned(),
                status,
                detail,
            },
        }
    }
}

/// The registry's own error message (`: CODE: message`), from an OCI
/// error body, else empty.
pub fn error_detail(response: &mut Response<ureq::Body>) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let Ok(Some(bytes)) = read_capped(response.body_mut(), MAX_ERROR_BODY) else {
        return String::new();
    };
    let Ok(parsed) = serde_json::from_slice::<Errors>(&bytes) else {
        return String::new();
    };
    let text: Vec<String> = parsed
        .errors
        .iter()
        .take(3)
        .map(|e| {
            let message: String = e.message.chars().take(200).collect();
            format!("{}: {message}", e.code)
        })
        .collect();
    if text.is_empty() {
        String::new()
    } else {
        format!(" ({})", text.join("; "))
    }
}

/// Reads a body of at most `limit` bytes (`None` if it is longer).
pub fn read_capped(body: &mut ureq::Body, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    if body.content_length().is_some_and(|n| n > limit) {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    body.with_config()
        .limit(u64::MAX)
        .reader()
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Ok(None);
    }
    Ok(Some(bytes))
}

/// A response header as text.
pub fn header(response: &Response<ureq::Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn basic_header(credential: &Credential) -> String {
    let raw = format!("{}:{}", credential.username, credential.secret);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// Waits before attempt `attempt + 1`: 100 ms, doubled each time.
pub fn backoff(attempt: u32) {
    let delay = FIRST_BACKOFF * 2u32.saturating_pow(attempt.saturating_sub(1));
    std::thread::sleep(delay);
}

/// `host[:port]` of a URL.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..end).unwrap_or(rest);
    // Never user info.
    authority.rsplit_once('@').map_or(authority, |(_, h)| h)
}

/// A URL without its query (which may hold upload state or signatures).
fn strip_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_owned()
}

fn resolve_against(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_owned();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
    let host = rest.split('/').next().unwrap_or(rest);
    if location.starts_with('/') {
        format!("{scheme}://{host}{location}")
    } else {
        let dir = base.rsplit_once('/').map_or(base, |(d, _)| d);
        format!("{dir}/{location}")
    }
}

/// Percent-encodes a query value.
pub fn query_escape(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The cause of a failed connection, in words.
fn describe_transport(error: &ureq::Error, cause: String) -> String {
    match error {
        ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused".to_owned()
        }
        _ => cause,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client::new(RegistryConfig {
            insecure: vec!["reg.internal:5000".to_owned()],
            mirrors: vec!["https://mirror.example".to_owned()],
            certs_dir: PathBuf::from("/nonexistent-certs"),
            docker_config: None,
        })
    }

    #[test]
    fn insecure_registries_match_as_docker_matches_them() {
        let list = [
            "reg.internal:5000".to_owned(),
            "http://plain.example/".to_owned(),
            "10.20.0.0/16".to_owned(),
            "fd00::/8".to_owned(),
        ];
        for (registry, insecure) in [
            ("reg.internal:5000", true),
            ("reg.internal:5001", false),
            ("reg.internal", false),
            ("plain.example", true),
            ("10.20.3.4:5000", true),
            ("10.21.3.4:5000", false),
            ("[fd12::1]:5000", true),
            ("[fe80::1]:5000", false),
            ("evil.reg.internal:5000", false),
        ] {
            assert_eq!(is_insecure(&list, registry), insecure, "{registry}");
        }
        let dir = tempfile::tempdir().unwrap();
        let daemon = dir.path().join("daemon.json");
        std::fs::write(
            &daemon,
            r#"{"insecure-registries": ["ci-cache:5000"], "registry-mirrors": ["https://mirror.ci"], "debug": true}"#,
        )
        .unwrap();
        assert_eq!(
            daemon_settings(&daemon),
            (
                vec!["ci-cache:5000".to_owned()],
                vec!["https://mirror.ci".to_owned()]
            )
        );
        assert_eq!(
            daemon_settings(&dir.path().join("none.json")),
            (vec![], vec![])
        );
        std::fs::write(&daemon, "{broken").unwrap();
        assert_eq!(daemon_settings(&daemon), (vec![], vec![]));
    }

    #[test]
    fn endpoints_follow_dockers_rules() {
        let c = client();
        let hub = c.endpoints("docker.io", true);
        assert_eq!(hub[0].base, "https://mirror.example");
        assert!(hub[0].mirror);
        assert_eq!(hub[1].base, "https://registry-1.docker.io");
        assert_eq!(c.endpoints("docker.io", false).len(), 1);
        // Loopback and insecure-registries are tried over HTTPS without
        // verification first (resolve), as Docker does.
        for insecure in [
            "localhost:5000",
            "127.0.0.1:5000",
            "[::1]:5000",
            "reg.internal:5000",
        ] {
            let endpoint = c.endpoints(insecure, true).remove(0);
            assert_eq!(endpoint.base, format!("https://{insecure}"));
            assert!(endpoint.insecure, "{insecure}");
        }
        assert!(!c.endpoints("quay.io", true)[0].insecure);
        assert_eq!(c.endpoints("quay.io", true)[0].base, "https://quay.io");
    }

    #[test]
    fn a_registry_elsewhere_cannot_send_kiln_to_this_hosts_loopback() {
        for url in [
            "http://127.0.0.1:6379/v2/x/blobs/uploads/1",
            "http://localhost/x",
            "http://LOCALHOST./x",
            "http://[::1]:80/x",
            "http://[::ffff:127.0.0.1]/x",
            "http://0.0.0.0:8080/x",
            "http://user@127.0.0.2/x",
        ] {
            assert!(sends_to_host_loopback("registry.example", url), "{url}");
        }
        // Elsewhere, or a registry that is itself on loopback.
        assert!(!sends_to_host_loopback(
            "registry.example",
            "https://s3.example/x"
        ));
        assert!(!sends_to_host_loopback(
            "127.0.0.1:5000",
            "http://127.0.0.1:5000/v2/"
        ));
        assert!(!sends_to_host_loopback(
            "localhost:5000",
            "http://127.0.0.1:5001/x"
        ));
    }

    #[test]
    fn a_certs_dir_makes_a_loopback_registry_https() {
        let certs = tempfile::tempdir().unwrap();
        std::fs::create_dir(certs.path().join("127.0.0.1:5000")).unwrap();
        let c = Client::new(RegistryConfig {
            certs_dir: certs.path().to_owned(),
            ..RegistryConfig::default()
        });
        assert!(!c.endpoints("127.0.0.1:5000", true)[0].insecure);
        assert!(c.endpoints("127.0.0.1:5001", true)[0].insecure);
        // A CA file that holds no certificate is refused, naming it.
        std::fs::write(certs.path().join("127.0.0.1:5000/ca.crt"), "not a cert").unwrap();
        let endpoint = c.endpoints("127.0.0.1:5000", true).remove(0);
        let Err(e) = c.session(&endpoint, "x", false) else {
            panic!("a bad ca.crt was accepted");
        };
        assert!(
            e.to_string()
                .starts_with("TLS configuration for 127.0.0.1:5000 in ")
                && e.to_string().ends_with("ca.crt: holds no certificate"),
            "{e}"
        );
    }

    #[test]
    fn credentials_stay_on_their_origin() {
        let c = client();
        let endpoint = c.endpoints("quay.io", false).remove(0);
        let session = c.session(&endpoint, "a/b", false).unwrap();
        assert!(session.same_origin("https://quay.io/v2/a/b/blobs/x"));
        assert!(!session.same_origin("https://quay.io.evil.example/v2/"));
        assert!(!session.same_origin("http://quay.io/v2/"));
        assert!(!session.same_origin("https://storage.example/quay.io/v2"));
    }

    #[test]
    fn hosts_and_locations_resolve() {
        assert_eq!(host_of("https://u:p@h:5000/x?y"), "h:5000");
        assert_eq!(split_host("[::1]:5000"), "::1");
        assert_eq!(strip_query("https://h/t?token=secret"), "https://h/t");
        assert_eq!(
            resolve_against("http://h:1/v2/a", "/v2/b?x"),
            "http://h:1/v2/b?x"
        );
        assert_eq!(
            resolve_against("http://h:1/v2/a", "https://s/b"),
            "https://s/b"
        );
        assert_eq!(
            query_escape("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
