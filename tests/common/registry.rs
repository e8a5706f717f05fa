//! A real registry on loopback for the registry tests: Debian's
//! `docker-registry` (distribution 2.8) started with a generated config in
//! a temporary directory, in the variants the tests need (plain HTTP,
//! htpasswd auth over TLS with a CA made by openssl, read-only, bearer
//! tokens from a [`TokenServer`] in the test process), skopeo to put
//! images into it, and a [`FaultProxy`] in front of it that breaks
//! responses on request and records every request.
//!
//! The registry is stopped (killed and waited for) and its directory
//! removed when the [`Registry`] is dropped, also when a test panics.
#![allow(
    clippy::panic,
    reason = "a harness that cannot start fails the test, loudly"
)]

use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

/// The tools the registry tests run, and the Debian package of each.
const TOOLS: [(&str, &str); 6] = [
    ("docker-registry", "docker-registry"),
    ("openssl", "openssl"),
    ("htpasswd", "apache2-utils"),
    ("skopeo", "skopeo"),
    ("curl", "curl"),
    // util-linux's `script`: a pseudo-terminal for the progress test.
    ("script", "bsdutils"),
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
    /// Bearer tokens from a [`TokenServer`] in the test process (plain
    /// HTTP on loopback), which takes [`USER`] and the registry's password.
    Token,
}

/// What registry to start.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The authentication.
    pub auth: Auth,
    /// HTTPS with a server certificate for 127.0.0.1 signed by a CA made
    /// for the registry ([`Registry::certs_dir`]); plain HTTP otherwise.
    pub tls: bool,
    /// With `tls`: clients must show a certificate the CA signed
    /// (`http.tls.clientcas`); `client.cert`/`client.key` are put in the
    /// certs.d directory beside `ca.crt`, as Docker reads them.
    pub client_certs: bool,
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
    token: Option<TokenServer>,
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

    /// HTTPS with bearer tokens from a token server.
    pub fn tls_token() -> Self {
        Self::start(Options {
            auth: Auth::Token,
            tls: true,
            ..Options::default()
        })
    }

    /// HTTPS that asks every client for a certificate signed by its CA.
    pub fn tls_client_certs() -> Self {
        Self::start(Options {
            tls: true,
            client_certs: true,
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
            if options.client_certs {
                make_client_cert(dir.path());
            }
        }
        if options.auth == Auth::Htpasswd {
            let output = Command::new("htpasswd")
                .args(["-Bbn", USER, &password])
                .output()
                .unwrap();
            assert!(output.status.success(), "htpasswd failed: {output:?}");
            fs::write(dir.path().join("htpasswd"), output.stdout).unwrap();
        }
        let token =
            (options.auth == Auth::Token).then(|| TokenServer::start(dir.path(), &password));
        // A port taken between choosing and binding it is retried.
        for _ in 0..5 {
            let port = free_port();
            let config = config(dir.path(), &storage, port, &options, token.as_ref());
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
                if options.client_certs {
                    for name in ["client.cert", "client.key"] {
                        fs::copy(dir.path().join(name), certs.join(name)).unwrap();
                    }
                }
            }
            return Self {
                dir,
                child,
                port,
                options,
                storage,
                password,
                token,
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
        if self.options.client_certs {
            command
                .arg("--cert")
                .arg(self.dir.path().join("client.cert"))
                .arg("--key")
                .arg(self.dir.path().join("client.key"));
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

    /// The token server, with [`Auth::Token`].
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token.as_ref()
    }

    /// A curl command that trusts the CA and carries credentials good
    /// for pulling and pushing `name`: basic auth, or a bearer token for
    /// `repository:NAME:pull,push` from the token server.
    pub fn authorized_curl(&self, name: &str, args: &[&str]) -> Command {
        let mut command = self.curl(&["-s", "--fail-with-body"]);
        match self.options.auth {
            Auth::None => {}
            Auth::Htpasswd => {
                command.arg("-u").arg(format!("{USER}:{}", self.password));
            }
            Auth::Token => {
                let token = self.token.as_ref().unwrap();
                let output = Command::new("curl")
                    .args(["-s", "--fail-with-body", "-u"])
                    .arg(format!("{USER}:{}", self.password))
                    .arg(format!(
                        "{}/token?service={SERVICE}&scope=repository:{name}:pull,push",
                        token.url()
                    ))
                    .output()
                    .unwrap();
                assert!(output.status.success(), "token request failed: {output:?}");
                let body: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
                command.arg("-H").arg(format!(
                    "Authorization: Bearer {}",
                    body["token"].as_str().unwrap()
                ));
            }
        }
        command.args(args);
        command
    }

    /// Uploads `data` as a blob of repository `name` (POST, then one
    /// PUT with the whole blob); returns its digest.
    pub fn put_blob(&self, name: &str, data: &[u8]) -> String {
        let digest = kiln_store::digest::digest_bytes(data).to_string();
        let start = self
            .authorized_curl(
                name,
                &["-X", "POST", "-o", "/dev/null", "-w", "%header{location}"],
            )
            .arg(format!("{}/v2/{name}/blobs/uploads/", self.url()))
            .output()
            .unwrap();
        let location = String::from_utf8(start.stdout).unwrap();
        assert!(
            start.status.success() && !location.is_empty(),
            "blob upload to {name} not started: {}",
            String::from_utf8_lossy(&start.stderr)
        );
        let location = if location.starts_with('/') {
            format!("{}{location}", self.url())
        } else {
            location
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let file = tempfile::NamedTempFile::new().unwrap();
        fs::write(file.path(), data).unwrap();
        let output = self
            .authorized_curl(
                name,
                &["-X", "PUT", "-H", "Content-Type: application/octet-stream"],
            )
            .arg("--data-binary")
            .arg(format!("@{}", file.path().display()))
            .arg(format!("{location}{separator}digest={digest}"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "blob upload to {name} failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        digest
    }

    /// Puts `data` as the manifest `reference` (tag or digest) of `name`
    /// with `media_type`; returns its digest. The registry checks it
    /// (its blobs must be there).
    pub fn put_manifest(
        &self,
        name: &str,
        reference: &str,
        media_type: &str,
        data: &[u8],
    ) -> String {
        let file = tempfile::NamedTempFile::new().unwrap();
        fs::write(file.path(), data).unwrap();
        let output = self
            .authorized_curl(name, &["-X", "PUT", "-H"])
            .arg(format!("Content-Type: {media_type}"))
            .arg("--data-binary")
            .arg(format!("@{}", file.path().display()))
            .arg(format!("{}/v2/{name}/manifests/{reference}", self.url()))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "manifest put to {name}:{reference} failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        kiln_store::digest::digest_bytes(data).to_string()
    }

    /// Pushes an image of `layers` (uncompressed tars, gzipped here, base
    /// first) for `platform` (`os/arch[/variant]`) with `CMD ["sh"]` as the
    /// OCI manifest `reference` of `name`. The config's platform is
    /// `platform`, whatever the host's.
    pub fn put_image(
        &self,
        name: &str,
        reference: &str,
        layers: &[Vec<u8>],
        platform: &str,
    ) -> Pushed {
        use kiln_store::digest::digest_bytes;
        let mut parts = platform.split('/');
        let (os, arch) = (parts.next().unwrap(), parts.next().unwrap());
        let variant = parts.next();
        let mut descriptors = Vec::new();
        let mut diff_ids = Vec::new();
        for layer in layers {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(layer).unwrap();
            let blob = gz.finish().unwrap();
            diff_ids.push(digest_bytes(layer).to_string());
            descriptors.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": self.put_blob(name, &blob), "size": blob.len(),
            }));
        }
        let mut config = serde_json::json!({
            "architecture": arch, "os": os, "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        if let Some(variant) = variant {
            config["variant"] = variant.into();
        }
        let config = serde_json::to_vec(&config).unwrap();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": self.put_blob(name, &config), "size": config.len()},
            "layers": descriptors,
        }))
        .unwrap();
        let digest = self.put_manifest(name, reference, OCI_MANIFEST, &manifest);
        Pushed {
            digest,
            manifest,
            platform: platform.to_owned(),
        }
    }

    /// Puts an OCI index of `images` (each with its platform) as
    /// `reference` of `name`; returns the index's digest.
    pub fn put_index(&self, name: &str, reference: &str, images: &[&Pushed]) -> String {
        let manifests: Vec<serde_json::Value> = images
            .iter()
            .map(|image| {
                let mut parts = image.platform.split('/');
                let mut platform = serde_json::json!({
                    "os": parts.next().unwrap(), "architecture": parts.next().unwrap(),
                });
                if let Some(variant) = parts.next() {
                    platform["variant"] = variant.into();
                }
                serde_json::json!({
                    "mediaType": OCI_MANIFEST, "digest": image.digest,
                    "size": image.manifest.len(), "platform": platform,
                })
            })
            .collect();
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests,
        }))
        .unwrap();
        self.put_manifest(name, reference, OCI_INDEX, &index)
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

/// The media type of an OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The media type of an OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// An image [`Registry::put_image`] pushed.
#[derive(Clone, Debug)]
pub struct Pushed {
    /// The manifest's digest.
    pub digest: String,
    /// The manifest as pushed.
    pub manifest: Vec<u8>,
    /// Its platform, `os/arch[/variant]`.
    pub platform: String,
}

/// Copies an image archive (a docker-archive, read as one when it has a
/// `manifest.json`, or an OCI archive) to `reference` (`repo:tag`) in
/// `registry` with skopeo; returns the manifest digest the registry stored.
pub fn push_archive(registry: &Registry, archive: &Path, reference: &str) -> String {
    push_archive_via(registry, &registry.host(), archive, reference)
}

/// [`push_archive`] through `host` (a [`FaultProxy`] in front of
/// `registry`, which gives the TLS trust and credentials).
pub fn push_archive_via(
    registry: &Registry,
    host: &str,
    archive: &Path,
    reference: &str,
) -> String {
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
        .arg(format!("docker://{host}/{reference}"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "skopeo copy to {host}/{reference} failed:\n{}",
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
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "pw-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
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
    issue(
        dir,
        "/CN=127.0.0.1",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ["server.key", "server.csr", "server.ext", "server.crt"],
    );
}

/// A client certificate (`client.cert`, `client.key`) signed by the CA
/// of [`make_server_cert`], for TLS client authentication.
fn make_client_cert(dir: &Path) {
    issue(
        dir,
        "/CN=kiln-test-client",
        "extendedKeyUsage=clientAuth",
        ["client.key", "client.csr", "client.ext", "client.cert"],
    );
}

/// A P-256 key and a certificate for `subject` with the extension
/// `ext`, signed by the CA in `dir`; files: key, request, extension
/// file, certificate.
fn issue(dir: &Path, subject: &str, ext: &str, [key, csr, ext_file, cert]: [&str; 4]) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    openssl(
        dir,
        &[
            &["req", "-nodes", "-subj", subject][..],
            &ec,
            &["-keyout", key, "-out", csr],
        ]
        .concat(),
    );
    fs::write(dir.join(ext_file), format!("{ext}\n")).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-extfile",
            ext_file,
            "-out",
            cert,
        ],
    );
}

/// The registry's config.yml.
fn config(
    dir: &Path,
    storage: &Path,
    port: u16,
    options: &Options,
    token: Option<&TokenServer>,
) -> String {
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
        if options.client_certs {
            let _ = writeln!(
                config,
                "    clientcas:\n      - {}",
                dir.join("ca.crt").display()
            );
        }
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
        Auth::Token => {
            let _ = write!(
                config,
                "auth:\n  token:\n    realm: {}/token\n    service: {SERVICE}\n    \
                 issuer: {ISSUER}\n    rootcertbundle: {}\n",
                token.unwrap().url(),
                dir.join("token.crt").display()
            );
        }
    }
    config
}

/// RFC 4648 alphabets.
pub const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
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
            let mut curl = Command::new("curl");
            curl.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
                .arg(dir.join("ca.crt"));
            if dir.join("client.cert").exists() {
                curl.arg("--cert")
                    .arg(dir.join("client.cert"))
                    .arg("--key")
                    .arg(dir.join("client.key"));
            }
            let output = curl
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

/// The `service` of the token registries (the tokens' audience).
pub const SERVICE: &str = "kiln-test-registry";
/// The issuer of their tokens.
const ISSUER: &str = "kiln-test-issuer";

/// Decodes standard or URL-safe base64, padded or not.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.trim_end_matches('=').bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        bits = bits << 6 | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push(u8::try_from(bits >> count & 0xff).unwrap());
        }
    }
    Some(out)
}

/// One request a [`FaultProxy`] or [`TokenServer`] received.
#[derive(Clone, Debug)]
pub struct Seen {
    /// `GET`, `HEAD`, `PUT`...
    pub method: String,
    /// The request target (path and query).
    pub target: String,
    /// The request headers as sent (names as the client wrote them).
    pub headers: Vec<(String, String)>,
    /// The status the client got, also when its body was then cut
    /// (`None`: no answer yet, or the upstream connection failed).
    pub status: Option<u16>,
    /// The fault applied, if any (`"500"`, `"cut after 100"`...).
    pub fault: Option<String>,
}

impl Seen {
    /// A header's value (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Whether `pattern` is part of `"METHOD TARGET"`.
    pub fn matches(&self, pattern: &str) -> bool {
        format!("{} {}", self.method, self.target).contains(pattern)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The head of an HTTP/1.1 message: start line and headers.
struct Head {
    start: String,
    headers: Vec<(String, String)>,
}

impl Head {
    /// Reads a head; `None` when the peer closed before sending one.
    fn read(reader: &mut impl BufRead) -> io::Result<Option<Self>> {
        let mut start = String::new();
        if reader.read_line(&mut start)? == 0 {
            return Ok(None);
        }
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.to_owned(), value.trim().to_owned()));
            }
        }
        Ok(Some(Self {
            start: start.trim_end_matches(['\r', '\n']).to_owned(),
            headers,
        }))
    }

    fn get(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    fn remove(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        let mut text = format!("{}\r\n", self.start);
        for (name, value) in &self.headers {
            let _ = write!(text, "{name}: {value}\r\n");
        }
        text.push_str("\r\n");
        out.write_all(text.as_bytes())
    }

    /// The request's method and target.
    fn request_line(&self) -> (String, String) {
        let mut parts = self.start.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        (method, target)
    }

    /// The response's status code.
    fn status(&self) -> u16 {
        self.start
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// How the body of this message is delimited; `method` is the
    /// request's for a response, `None` for a request.
    fn framing(&self, method: Option<&str>) -> Framing {
        if let Some(method) = method {
            let status = self.status();
            if method == "HEAD" || status < 200 || status == 204 || status == 304 {
                return Framing::Length(0);
            }
        }
        if self
            .get("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
        {
            return Framing::Chunked;
        }
        match self.get("content-length").and_then(|l| l.parse().ok()) {
            Some(length) => Framing::Length(length),
            None if method.is_some() => Framing::UntilClose,
            None => Framing::Length(0),
        }
    }
}

/// How a message body ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// What happens to the bytes of a body on their way.
#[derive(Default)]
struct Tamper {
    /// Bytes of body passed so far.
    offset: u64,
    /// Stop after this many bytes of body.
    cut_after: Option<u64>,
    /// Flip every bit of the byte at this offset of the body.
    flip_at: Option<u64>,
}

impl Tamper {
    /// Passes `data` on; `false` once the cut is reached (the rest is
    /// not written).
    fn pass(&mut self, data: &mut [u8], out: &mut impl Write) -> io::Result<bool> {
        let start = self.offset;
        if let Some(at) = self.flip_at
            && (start..start + data.len() as u64).contains(&at)
        {
            data[usize::try_from(at - start).unwrap()] ^= 0xff;
        }
        let mut keep = data.len();
        let mut cut = false;
        if let Some(limit) = self.cut_after
            && start + data.len() as u64 >= limit
        {
            keep = usize::try_from(limit - start).unwrap();
            cut = true;
        }
        out.write_all(&data[..keep])?;
        self.offset += keep as u64;
        if cut {
            out.flush()?;
        }
        Ok(!cut)
    }
}

/// Copies a body framed as `framing` from `from` to `out` through
/// `tamper`; `Ok(false)` when it was cut.
fn copy_body(
    from: &mut impl BufRead,
    out: &mut impl Write,
    framing: Framing,
    tamper: &mut Tamper,
) -> io::Result<bool> {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut copy_exact = |from: &mut dyn BufRead, out: &mut dyn Write, mut left: Option<u64>| {
        let mut out = out;
        loop {
            let want = left.map_or(buffer.len(), |l| {
                usize::try_from(l.min(buffer.len() as u64)).unwrap()
            });
            if want == 0 {
                return Ok(true);
            }
            let n = from.read(&mut buffer[..want])?;
            if n == 0 {
                return match left {
                    Some(_) => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                    None => Ok(true),
                };
            }
            if !tamper.pass(&mut buffer[..n], &mut out)? {
                return Ok(false);
            }
            left = left.map(|l| l - n as u64);
        }
    };
    match framing {
        Framing::Length(length) => copy_exact(from, out, Some(length)),
        Framing::UntilClose => copy_exact(from, out, None),
        Framing::Chunked => loop {
            let mut line = String::new();
            from.read_line(&mut line)?;
            let size =
                u64::from_str_radix(line.trim_end().split(';').next().unwrap_or_default(), 16)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            out.write_all(line.as_bytes())?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let mut trailer = String::new();
                    if from.read_line(&mut trailer)? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    out.write_all(trailer.as_bytes())?;
                    if trailer.trim_end().is_empty() {
                        return Ok(true);
                    }
                }
            }
            if !copy_exact(from, out, Some(size))? {
                return Ok(false);
            }
            let mut crlf = String::new();
            from.read_line(&mut crlf)?;
            out.write_all(crlf.as_bytes())?;
        },
    }
}

/// Writes a whole response with a body.
fn respond(
    out: &mut impl Write,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    respond_to(out, "GET", status, headers, body)
}

/// Writes a whole response to a `method` request: to HEAD, the headers
/// of `body` (its length) without it.
fn respond_to(
    out: &mut impl Write,
    method: &str,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Injected",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    if method != "HEAD" {
        out.write_all(body)?;
    }
    out.flush()
}

/// A listener on 127.0.0.1 whose connections are served each on a
/// thread by `serve`, until dropped.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(serve: impl Fn(TcpStream) -> io::Result<()> + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let serve = Arc::new(serve);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let serve = Arc::clone(&serve);
                // A connection's error only ends that connection.
                std::thread::spawn(move || {
                    if is_tls_probe(&stream) {
                        return Ok(());
                    }
                    serve(stream)
                });
            }
        });
        Self { port, stop }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Whether a connection opens with a TLS handshake record: kiln's probe
/// of an insecure (loopback) registry for HTTPS, which a plain-HTTP
/// server of the harness turns away by closing the connection, unseen, as
/// Go's server answers it with a 400.
pub fn is_tls_probe(stream: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(stream.peek(&mut first), Ok(1) if first[0] == 0x16)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A bearer token server (the distribution token spec) on loopback, for
/// [`Auth::Token`]: `GET /token?service=..&scope=..` with [`USER`] and the
/// registry's password grants the actions asked for; without credentials
/// it grants nothing (a private registry: the registry then answers 401);
/// with wrong ones it answers 401. Tokens are RS256 JWTs signed with a key
/// made by openssl, whose certificate the registry trusts; the signing is
/// `openssl dgst`, since the tests have no crypto crate.
pub struct TokenServer {
    server: Server,
    state: Arc<Mutex<TokenState>>,
}

struct TokenState {
    requests: Vec<Seen>,
    failures: usize,
    expires_in: u64,
    password: String,
    key: PathBuf,
    x5c: String,
    issued: usize,
}

impl TokenServer {
    /// Makes the signing key and certificate in `dir` (`token.key`,
    /// `token.crt`) and starts serving.
    fn start(dir: &Path, password: &str) -> Self {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=kiln-test-token",
                "-newkey",
                "rsa:2048",
                "-keyout",
                "token.key",
                "-out",
                "token.crt",
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-in",
                "token.crt",
                "-outform",
                "DER",
                "-out",
                "token.der",
            ],
        );
        let der = fs::read(dir.join("token.der")).unwrap();
        let state = Arc::new(Mutex::new(TokenState {
            requests: Vec::new(),
            failures: 0,
            expires_in: 300,
            password: password.to_owned(),
            key: dir.join("token.key"),
            x5c: base64(&der, STANDARD, true),
            issued: 0,
        }));
        let shared = Arc::clone(&state);
        let server = Server::start(move |stream| serve_tokens(stream, &shared));
        Self { server, state }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// Answers the next `times` token requests with 500.
    pub fn fail(&self, times: usize) {
        lock(&self.state).failures = times;
    }

    /// The `expires_in` of the next tokens, in seconds (300 by default;
    /// the JWT's `exp` follows it).
    pub fn set_expires_in(&self, seconds: u64) {
        lock(&self.state).expires_in = seconds;
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Seen> {
        lock(&self.state).requests.clone()
    }

    /// How many tokens were issued.
    pub fn issued(&self) -> usize {
        lock(&self.state).issued
    }
}

fn serve_tokens(stream: TcpStream, state: &Mutex<TokenState>) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    while let Some(head) = Head::read(&mut reader)? {
        let mut form = Vec::new();
        copy_body(
            &mut reader,
            &mut form,
            head.framing(None),
            &mut Tamper::default(),
        )?;
        let (method, target) = head.request_line();
        let (status, body) = grant(state, &method, &target, &head, &form);
        lock(state).requests.push(Seen {
            method,
            target,
            headers: head.headers.clone(),
            status: Some(status),
            fault: None,
        });
        respond(
            &mut out,
            status,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )?;
    }
    Ok(())
}

/// The identity token (an OAuth refresh token) the token server takes
/// for [`USER`] of a registry with `password`.
pub fn identity_token(password: &str) -> String {
    format!("refresh-{password}")
}

/// The status and body of the answer to one token request: `GET
/// /token?..` with basic credentials, or the OAuth refresh-token grant
/// (`POST /token`, a form with [`identity_token`]).
fn grant(
    state: &Mutex<TokenState>,
    method: &str,
    target: &str,
    head: &Head,
    form: &[u8],
) -> (u16, String) {
    let mut state = lock(state);
    if state.failures > 0 {
        state.failures -= 1;
        return (
            500,
            r#"{"details":"token server failure injected by the test"}"#.into(),
        );
    }
    let query = match (method, target) {
        ("POST", "/token") => String::from_utf8_lossy(form).into_owned(),
        ("GET", _) if target.starts_with("/token?") => target["/token?".len()..].to_owned(),
        _ => return (404, r#"{"details":"not found"}"#.into()),
    };
    let params: Vec<(String, String)> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let subject = match head.get("authorization") {
        _ if method == "POST" => {
            let expected = identity_token(&state.password);
            if param("grant_type") != Some("refresh_token")
                || param("refresh_token") != Some(expected.as_str())
            {
                return (400, r#"{"error":"invalid_grant"}"#.into());
            }
            USER.to_owned()
        }
        None => String::new(),
        Some(auth) => {
            let given = auth
                .strip_prefix("Basic ")
                .and_then(base64_decode)
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            if given != Some(format!("{USER}:{}", state.password)) {
                return (
                    401,
                    r#"{"details":"incorrect username or password"}"#.into(),
                );
            }
            USER.to_owned()
        }
    };
    let access: Vec<serde_json::Value> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .filter(|_| !subject.is_empty())
        .flat_map(|(_, scope)| scope.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|scope| {
            let (kind, rest) = scope.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            Some(serde_json::json!({
                "type": kind, "name": name,
                "actions": actions.split(',').collect::<Vec<_>>()
            }))
        })
        .collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    state.issued += 1;
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [state.x5c]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": subject, "aud": SERVICE,
        "exp": now + state.expires_in, "nbf": now - 1, "iat": now,
        "jti": format!("kiln-test-{}", state.issued), "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        base64(&serde_json::to_vec(&header).unwrap(), URL_SAFE, false),
        base64(&serde_json::to_vec(&claims).unwrap(), URL_SAFE, false)
    );
    let mut openssl = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(&state.key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    openssl
        .stdin
        .take()
        .unwrap()
        .write_all(signing_input.as_bytes())
        .unwrap();
    let signature = openssl.wait_with_output().unwrap();
    assert!(signature.status.success(), "openssl dgst -sign failed");
    let token = format!(
        "{signing_input}.{}",
        base64(&signature.stdout, URL_SAFE, false)
    );
    let body = serde_json::json!({
        "token": token, "access_token": token, "expires_in": state.expires_in,
    });
    (200, body.to_string())
}

/// `%XX` and `+` decoding of a query component.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("-");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A fault a [`FaultProxy`] applies to the requests matching a pattern.
#[derive(Clone, Debug)]
enum Fault {
    /// Answers this status itself (the registry never sees the request).
    Status(u16),
    /// Passes the response on but closes both connections after this
    /// many bytes of its body.
    Cut(u64),
    /// Flips every bit of the body byte at this offset.
    Flip(u64),
    /// Answers 307 to this base URL plus the request's target.
    Redirect(String),
    /// Forwards the request without its `Authorization` header, so the
    /// registry answers 401 with its challenge (a token refused).
    Unauthorize,
    /// Answers this response itself: status, headers, body.
    Respond(u16, Vec<(String, String)>, Vec<u8>),
}

impl Fault {
    /// A short description (without a body's bytes).
    fn describe(&self) -> String {
        match self {
            Self::Status(status) => format!("status {status}"),
            Self::Cut(bytes) => format!("cut after {bytes} bytes"),
            Self::Flip(offset) => format!("byte {offset} flipped"),
            Self::Redirect(base) => format!("redirect to {base}"),
            Self::Unauthorize => "authorization dropped".to_owned(),
            Self::Respond(status, _, body) => format!("{status} with {} bytes", body.len()),
        }
    }
}

struct Rule {
    pattern: String,
    fault: Fault,
    times: usize,
}

#[derive(Default)]
struct ProxyState {
    rules: Vec<Rule>,
    requests: Vec<Seen>,
}

/// An HTTP proxy on 127.0.0.1 in front of a plain-HTTP registry (the
/// client talks to the proxy as if it were the registry). Per test it
/// answers a status N times, cuts a response after N bytes of body, flips
/// a byte of a body, redirects, or drops the `Authorization` header, for
/// the requests whose `"METHOD TARGET"` contains a pattern (e.g.
/// `"GET /v2/app/blobs/"`); the first rule with times left applies. It
/// records every request with its headers and the status the client got.
pub struct FaultProxy {
    server: Server,
    state: Arc<Mutex<ProxyState>>,
}

impl FaultProxy {
    /// A proxy in front of `registry`, which must be plain HTTP.
    pub fn start(registry: &Registry) -> Self {
        assert!(
            registry.url().starts_with("http://"),
            "the fault proxy reads HTTP: put it in front of a plain-HTTP registry"
        );
        Self::to_port(registry.port())
    }

    /// A proxy in front of whatever serves HTTP on 127.0.0.1:`port`.
    pub fn to_port(port: u16) -> Self {
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let shared = Arc::clone(&state);
        let server = Server::start(move |client| proxy(client, port, &shared));
        Self { server, state }
    }

    /// `127.0.0.1:PORT` of the proxy.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.server.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// A reference to `name` through the proxy.
    pub fn reference(&self, name: &str) -> String {
        format!("{}/{name}", self.host())
    }

    fn add(&self, pattern: &str, fault: Fault, times: usize) {
        lock(&self.state).rules.push(Rule {
            pattern: pattern.to_owned(),
            fault,
            times,
        });
    }

    /// Answers `status` (with a JSON error body) `times` times.
    pub fn fail(&self, pattern: &str, status: u16, times: usize) {
        self.add(pattern, Fault::Status(status), times);
    }

    /// Cuts the response after `bytes` bytes of body, `times` times.
    pub fn cut(&self, pattern: &str, bytes: u64, times: usize) {
        self.add(pattern, Fault::Cut(bytes), times);
    }

    /// Flips the body byte at `offset`, `times` times.
    pub fn corrupt(&self, pattern: &str, offset: u64, times: usize) {
        self.add(pattern, Fault::Flip(offset), times);
    }

    /// Answers `307 Location: {base}{target}`, `times` times (blob
    /// storage elsewhere, as S3-backed registries do).
    pub fn redirect(&self, pattern: &str, base: &str, times: usize) {
        self.add(pattern, Fault::Redirect(base.to_owned()), times);
    }

    /// Answers with `status`, `headers` and `body` instead of the
    /// registry, `times` times (a manifest too big, with foreign layers,
    /// under a wrong `Docker-Content-Digest`...); `Content-Length` is
    /// added.
    pub fn respond(
        &self,
        pattern: &str,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
        times: usize,
    ) {
        let headers = headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        self.add(
            pattern,
            Fault::Respond(status, headers, body.to_vec()),
            times,
        );
    }

    /// Drops the request's `Authorization` header, `times` times.
    pub fn unauthorize(&self, pattern: &str, times: usize) {
        self.add(pattern, Fault::Unauthorize, times);
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<Seen> {
        lock(&self.state).requests.clone()
    }

    /// The requests whose `"METHOD TARGET"` contains `pattern`.
    pub fn matching(&self, pattern: &str) -> Vec<Seen> {
        self.requests()
            .into_iter()
            .filter(|r| r.matches(pattern))
            .collect()
    }

    /// Faults left to apply (times not yet used), as `"PATTERN: FAULT"`.
    pub fn pending(&self) -> Vec<String> {
        lock(&self.state)
            .rules
            .iter()
            .filter(|r| r.times > 0)
            .map(|r| format!("{}: {} x{}", r.pattern, r.fault.describe(), r.times))
            .collect()
    }
}

/// Whether the peer of an idle connection closed it (a read would end).
fn closed(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut byte = [0u8; 1];
    let closed = match stream.peek(&mut byte) {
        Ok(n) => n == 0,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    };
    closed || stream.set_nonblocking(false).is_err()
}

/// Serves one client connection of a [`FaultProxy`]: request by request,
/// over one upstream connection opened as needed.
fn proxy(client: TcpStream, port: u16, state: &Mutex<ProxyState>) -> io::Result<()> {
    let mut from_client = BufReader::new(client.try_clone()?);
    let mut to_client = client;
    let mut upstream: Option<(BufReader<TcpStream>, TcpStream)> = None;
    while let Some(mut request) = Head::read(&mut from_client)? {
        let (method, target) = request.request_line();
        if request
            .get("expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
        {
            request.remove("expect");
            to_client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let (index, fault) = {
            let mut state = lock(state);
            let line = format!("{method} {target}");
            let fault = state
                .rules
                .iter_mut()
                .find(|r| r.times > 0 && line.contains(&r.pattern))
                .map(|rule| {
                    rule.times -= 1;
                    rule.fault.clone()
                });
            state.requests.push(Seen {
                method: method.clone(),
                target: target.clone(),
                headers: request.headers.clone(),
                status: None,
                fault: fault.as_ref().map(Fault::describe),
            });
            (state.requests.len() - 1, fault)
        };
        let set_status = |status| lock(state).requests[index].status = Some(status);
        let request_framing = request.framing(None);
        match &fault {
            Some(Fault::Status(status)) => {
                copy_body(
                    &mut from_client,
                    &mut io::sink(),
                    request_framing,
                    &mut Tamper::default(),
                )?;
                set_status(*status);
                let body = format!(
                    r#"{{"errors":[{{"code":"UNKNOWN","message":"status {status} injected by the fault proxy"}}]}}"#
                );
                respond(
                    &mut to_client,
                    *status,
                    &[("Content-Type", "application/json")],
                    body.as_bytes(),
                )?;
                continue;
            }
            Some(Fault::Redirect(base)) => {
                copy_body(
                    &mut from_client,
                    &mut io::sink(),
                    request_framing,
                    &mut Tamper::default(),
                )?;
                set_status(307);
                respond(
                    &mut to_client,
                    307,
                    &[("Location", &format!("{base}{target}"))],
                    b"",
                )?;
                continue;
            }
            Some(Fault::Respond(status, headers, body)) => {
                copy_body(
                    &mut from_client,
                    &mut io::sink(),
                    request_framing,
                    &mut Tamper::default(),
                )?;
                set_status(*status);
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                respond_to(&mut to_client, &method, *status, &headers, body)?;
                continue;
            }
            Some(Fault::Unauthorize) => request.remove("authorization"),
            _ => {}
        }
        // The registry may have closed an idle connection: a new one then.
        if upstream.as_ref().is_some_and(|(_, stream)| closed(stream)) {
            upstream = None;
        }
        if upstream.is_none() {
            let stream = TcpStream::connect(("127.0.0.1", port))?;
            upstream = Some((BufReader::new(stream.try_clone()?), stream));
        }
        let Some((from_upstream, to_upstream)) = upstream.as_mut() else {
            unreachable!()
        };
        request.write_to(to_upstream)?;
        copy_body(
            &mut from_client,
            to_upstream,
            request_framing,
            &mut Tamper::default(),
        )?;
        to_upstream.flush()?;
        let response = loop {
            let Some(response) = Head::read(from_upstream)? else {
                return Err(io::ErrorKind::UnexpectedEof.into());
            };
            if response.status() >= 200 {
                break response;
            }
            // Interim responses (100 Continue) go through as they are.
            response.write_to(&mut to_client)?;
        };
        set_status(response.status());
        let framing = response.framing(Some(&method));
        let mut tamper = Tamper {
            cut_after: match fault {
                Some(Fault::Cut(bytes)) => Some(bytes),
                _ => None,
            },
            flip_at: match fault {
                Some(Fault::Flip(offset)) => Some(offset),
                _ => None,
            },
            ..Tamper::default()
        };
        response.write_to(&mut to_client)?;
        let whole = copy_body(from_upstream, &mut to_client, framing, &mut tamper)?;
        to_client.flush()?;
        let closes = response
            .get("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        if !whole || framing == Framing::UntilClose || closes {
            let _ = to_client.shutdown(Shutdown::Both);
            let _ = to_upstream.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
    Ok(())
}
