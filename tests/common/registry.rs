//! A real registry on loopback for the registry tests: Debian's
//! `docker-registry` (distribution 2.8) started with a generated config in
//! a temporary directory, in the variants the tests need (plain HTTP,
//! htpasswd auth over TLS with a CA made by openssl, read-only), and
//! skopeo to put images into it.
//!
//! The registry is stopped (killed and waited for) and its directory
//! removed when the [`Registry`] is dropped, also when a test panics.
#![allow(
    clippy::panic,
    reason = "a harness that cannot start fails the test, loudly"
)]

use std::fmt::Write as _;
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The tools the registry tests run, and the Debian package of each.
const TOOLS: [(&str, &str); 5] = [
    ("docker-registry", "docker-registry"),
    ("openssl", "openssl"),
    ("htpasswd", "apache2-utils"),
    ("skopeo", "skopeo"),
    ("curl", "curl"),
];

/// The user name of the registries with auth (the password is
/// per registry: [`Registry::creds`]).
pub const USER: &str = "kiln-user";

/// Whether the registry tools are installed; prints SKIPPED (or fails
/// where `KILN_REQUIRE_REGISTRY=1`, as in CI) when one is missing.
pub fn available() -> bool {
    let missing: Vec<String> = TOOLS
        .iter()
        .filter(|(tool, _)| !super::have(tool))
        .map(|(tool, package)| format!("{tool} (apt-get install {package})"))
        .collect();
    kiln_testkit::require(
        "REGISTRY",
        (!missing.is_empty())
            .then(|| format!("registry tests need {}", missing.join(", ")))
            .as_deref(),
    )
}

/// How a registry authenticates clients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Auth {
    /// Anyone may pull and push.
    #[default]
    None,
    /// HTTP basic against an htpasswd file (bcrypt) holding [`USER`].
    Htpasswd,
}

/// What registry to start.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The authentication.
    pub auth: Auth,
    /// HTTPS with a server certificate for 127.0.0.1 signed by a CA made
    /// for the registry ([`Registry::certs_dir`]); plain HTTP otherwise.
    pub tls: bool,
    /// Refuses every write (`storage.maintenance.readonly`).
    pub read_only: bool,
    /// Serves this storage directory (another registry's, to see what was
    /// pushed there in another variant) instead of an empty one.
    pub storage: Option<PathBuf>,
}

/// A running `docker-registry`, stopped on drop.
pub struct Registry {
    dir: TempDir,
    child: Child,
    port: u16,
    options: Options,
    storage: PathBuf,
    password: String,
}

impl Registry {
    /// Plain HTTP, no auth.
    pub fn plain() -> Self {
        Self::start(Options::default())
    }

    /// HTTPS with htpasswd auth.
    pub fn tls_htpasswd() -> Self {
        Self::start(Options {
            auth: Auth::Htpasswd,
            tls: true,
            ..Options::default()
        })
    }

    /// Plain HTTP, no auth, read-only (an empty store: pushes are refused).
    pub fn read_only() -> Self {
        Self::start(Options {
            read_only: true,
            ..Options::default()
        })
    }

    /// Another registry serving this one's storage, with `options` (its
    /// `storage` is replaced): a read-only view of what was pushed here,
    /// or an unauthenticated "blob store" to redirect to.
    pub fn view(&self, options: &Options) -> Self {
        Self::start(Options {
            storage: Some(self.storage.clone()),
            ..options.clone()
        })
    }

    /// Starts a registry; panics with its log if it does not come up.
    pub fn start(options: Options) -> Self {
        let dir = TempDir::new().unwrap();
        let storage = options
            .storage
            .clone()
            .unwrap_or_else(|| dir.path().join("storage"));
        fs::create_dir_all(&storage).unwrap();
        let password = unique_password();
        if options.tls {
            make_server_cert(dir.path());
        }
        if options.auth == Auth::Htpasswd {
            let output = Command::new("htpasswd")
                .args(["-Bbn", USER, &password])
                .output()
                .unwrap();
            assert!(output.status.success(), "htpasswd failed: {output:?}");
            fs::write(dir.path().join("htpasswd"), output.stdout).unwrap();
        }
        // A port taken between choosing and binding it is retried.
        for _ in 0..5 {
            let port = free_port();
            let config = config(dir.path(), &storage, port, &options);
            fs::write(dir.path().join("config.yml"), config).unwrap();
            let log = fs::File::create(dir.path().join("registry.log")).unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(dir.path().join("config.yml"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            match wait_ready(&mut child, dir.path(), port, options.tls) {
                Ok(()) => {}
                Err(log) if log.contains("address already in use") => continue,
                Err(log) => panic!("docker-registry did not start:\n{log}"),
            }
            if options.tls {
                let certs = dir.path().join("certs.d").join(format!("127.0.0.1:{port}"));
                fs::create_dir_all(&certs).unwrap();
                fs::copy(dir.path().join("ca.crt"), certs.join("ca.crt")).unwrap();
            }
            return Self {
                dir,
                child,
                port,
                options,
                storage,
                password,
            };
        }
        panic!("docker-registry found no free port in 5 tries");
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A curl command that trusts the registry's CA (no credentials).
    pub fn curl(&self, args: &[&str]) -> Command {
        let mut command = Command::new("curl");
        if self.options.tls {
            command.arg("--cacert").arg(self.dir.path().join("ca.crt"));
        }
        command.args(args);
        command
    }

    /// `HOST:PORT` of the registry (`127.0.0.1:PORT`).
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://HOST:PORT` or `https://HOST:PORT`.
    pub fn url(&self) -> String {
        let scheme = if self.options.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.host())
    }

    /// A reference to `name` (`repo:tag` or `repo@digest`) in this registry.
    pub fn reference(&self, name: &str) -> String {
        format!("{}/{name}", self.host())
    }

    /// User and password, with auth.
    pub fn creds(&self) -> Option<(&'static str, &str)> {
        (self.options.auth != Auth::None).then_some((USER, self.password.as_str()))
    }

    /// The password alone (also without auth: what must never leak).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// With TLS, the directory laid out as `/etc/docker/certs.d`
    /// (`HOST:PORT/ca.crt`), for the client's `KILN_CERTS_DIR`.
    pub fn certs_dir(&self) -> Option<PathBuf> {
        self.options.tls.then(|| self.dir.path().join("certs.d"))
    }

    /// The CA certificate that signed the server's (with TLS).
    pub fn ca(&self) -> Option<PathBuf> {
        self.options.tls.then(|| self.dir.path().join("ca.crt"))
    }

    /// The storage directory (`storage.filesystem.rootdirectory`).
    pub fn storage(&self) -> &Path {
        &self.storage
    }

    /// The registry's log so far (requests, errors).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Writes a Docker `config.json` into `dir` with an `auths` entry for
    /// this registry, as `docker login` writes it; returns its path.
    pub fn write_docker_config(&self, dir: &Path) -> PathBuf {
        fs::create_dir_all(dir).unwrap();
        let auth = base64(
            format!("{USER}:{}", self.password).as_bytes(),
            STANDARD,
            true,
        );
        let config = serde_json::json!({"auths": {self.host(): {"auth": auth}}});
        let path = dir.join("config.json");
        fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        path
    }

    /// skopeo's flags to reach this registry as a destination (`dest`) or
    /// source (`src`): TLS trust, credentials.
    pub fn skopeo_flags(&self, side: &str) -> Vec<String> {
        let mut flags = Vec::new();
        match self.certs_dir() {
            Some(certs) => flags.push(format!(
                "--{side}-cert-dir={}",
                certs.join(self.host()).display()
            )),
            None => flags.push(format!("--{side}-tls-verify=false")),
        }
        match self.creds() {
            Some((user, password)) => flags.push(format!("--{side}-creds={user}:{password}")),
            None => flags.push(format!("--{side}-no-creds")),
        }
        flags
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Copies an image archive (a docker-archive, read as one when it has a
/// `manifest.json`, or an OCI archive) to `reference` (`repo:tag`) in `registry`
/// with skopeo; returns the manifest digest the registry stored.
pub fn push_archive(registry: &Registry, archive: &Path, reference: &str) -> String {
    let transport = if archive_has(archive, "manifest.json") {
        "docker-archive"
    } else {
        "oci-archive"
    };
    let digest_file = tempfile::NamedTempFile::new().unwrap();
    let output = Command::new("skopeo")
        .args(["copy", "--quiet"])
        .args(registry.skopeo_flags("dest"))
        .arg("--digestfile")
        .arg(digest_file.path())
        .arg(format!("{transport}:{}", archive.display()))
        .arg(format!("docker://{}", registry.reference(reference)))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "skopeo copy to {reference} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    fs::read_to_string(digest_file.path())
        .unwrap()
        .trim()
        .to_owned()
}

/// `skopeo inspect --raw` (`raw`) or `skopeo inspect` of `reference` in
/// `registry`.
pub fn skopeo_inspect(registry: &Registry, reference: &str, raw: bool) -> Output {
    let mut command = Command::new("skopeo");
    command.arg("inspect");
    if raw {
        command.arg("--raw");
    }
    command
        .args(
            registry
                .skopeo_flags("src")
                .iter()
                .map(|f| f.replace("--src-", "--")),
        )
        .arg(format!("docker://{}", registry.reference(reference)))
        .output()
        .unwrap()
}

/// Whether a tar archive has an entry `name`.
fn archive_has(archive: &Path, name: &str) -> bool {
    let mut tar = tar::Archive::new(fs::File::open(archive).unwrap());
    tar.entries()
        .unwrap()
        .flatten()
        .any(|entry| entry.path().is_ok_and(|p| p.as_os_str() == name))
}

/// A password no other registry of the run has, so a test can search
/// logs and output for it.
fn unique_password() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "pw-{}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        Instant::now().elapsed().subsec_nanos()
    )
}

/// A port free now on 127.0.0.1 (the registry binds it itself).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs openssl with `args` in `dir`; panics with its output on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA (`ca.crt`, `ca.key`) and a server certificate it signed for
/// 127.0.0.1 and localhost (`server.crt`, `server.key`), P-256 keys.
fn make_server_cert(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    openssl(
        dir,
        &[
            &[
                "req",
                "-x509",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=kiln-test-ca",
            ][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.crt"],
        ]
        .concat(),
    );
    openssl(
        dir,
        &[
            &["req", "-nodes", "-subj", "/CN=127.0.0.1"][..],
            &ec,
            &["-keyout", "server.key", "-out", "server.csr"],
        ]
        .concat(),
    );
    fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    );
}

/// The registry's config.yml.
fn config(dir: &Path, storage: &Path, port: u16, options: &Options) -> String {
    let mut config = String::new();
    let _ = write!(
        config,
        "version: 0.1\n\
         log:\n  level: info\n  accesslog:\n    disabled: false\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n  \
         maintenance:\n    uploadpurging:\n      enabled: false\n    readonly:\n      enabled: {read_only}\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: kiln-test-secret\n",
        storage = storage.display(),
        read_only = options.read_only,
    );
    if options.tls {
        let _ = write!(
            config,
            "  tls:\n    certificate: {}\n    key: {}\n",
            dir.join("server.crt").display(),
            dir.join("server.key").display()
        );
    }
    match options.auth {
        Auth::None => {}
        Auth::Htpasswd => {
            let _ = write!(
                config,
                "auth:\n  htpasswd:\n    realm: kiln-test-realm\n    path: {}\n",
                dir.join("htpasswd").display()
            );
        }
    }
    config
}

/// RFC 4648 alphabets.
const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
#[allow(dead_code)]
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 of `data` (tokens and Docker's `auth` fields; the tests have no
/// base64 crate).
pub fn base64(data: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(alphabet[(n >> (18 - 6 * i) & 63) as usize]));
        }
        if pad {
            for _ in chunk.len()..3 {
                out.push('=');
            }
        }
    }
    out
}

/// Polls the socket until the registry answers `GET /v2/` (200, or 401
/// with auth); `Err(log)` when the process exits first.
fn wait_ready(child: &mut Child, dir: &Path, port: u16, tls: bool) -> Result<(), String> {
    let log = || fs::read_to_string(dir.join("registry.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!("exited with {status}:\n{}", log()));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "docker-registry did not answer on port {port} in 30 s:\n{}",
                log()
            );
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let scheme = if tls { "https" } else { "http" };
            let output = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
                .arg(dir.join("ca.crt"))
                .arg(format!("{scheme}://127.0.0.1:{port}/v2/"))
                .output()
                .unwrap();
            if matches!(&output.stdout[..], b"200" | b"401") {
                return Ok(());
            }
        }
        // The registry announces nowhere but on its socket that it listens.
        std::thread::sleep(Duration::from_millis(10));
    }
}
