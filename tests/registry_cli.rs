//! `kiln pull` and `kiln push` against a real `docker-registry` on
//! loopback (the harness in `common::registry`), with skopeo as the other
//! client, and the registry faults an issue names.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::Kiln;
use common::registry::{self, Registry};

/// A store with `app:1` (a small image whose `/etc/name` says `app:1`)
/// saved as a docker-archive; returns the store and the archive.
fn saved_image(name: &str) -> (Kiln, PathBuf) {
    let kiln = Kiln::new();
    kiln.import_sample(name);
    let archive = kiln.path("image.tar");
    kiln.ok(&["save", "-o", archive.to_str().unwrap(), name]);
    (kiln, archive)
}

/// Pushes kiln's sample image `app:1` to `registry` as `name` (with
/// skopeo); returns the manifest's digest.
fn push_app(registry: &Registry, name: &str) -> String {
    let (_source, archive) = saved_image("app:1");
    registry::push_archive(registry, &archive, name)
}

/// A kiln command for a registry: its CA directory and a Docker config
/// with its credentials (when it has auth) in the test's directory.
fn kiln_for(kiln: &Kiln, registry: &Registry) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let config_dir = kiln.path("docker-config");
    std::fs::create_dir_all(&config_dir).unwrap();
    if registry.creds().is_some() {
        registry.write_docker_config(&config_dir);
    }
    env.push(("DOCKER_CONFIG".to_owned(), config_dir.display().to_string()));
    let certs = registry
        .certs_dir()
        .unwrap_or_else(|| kiln.path("no-certs"));
    env.push(("KILN_CERTS_DIR".to_owned(), certs.display().to_string()));
    env
}

fn run_with(kiln: &Kiln, env: &[(String, String)], args: &[&str]) -> std::process::Output {
    let mut command = kiln.command();
    for (k, v) in env {
        command.env(k, v);
    }
    command.args(args).output().unwrap()
}

fn ok_with(kiln: &Kiln, env: &[(String, String)], args: &[&str]) -> (String, String) {
    let output = run_with(kiln, env, args);
    assert!(
        output.status.success(),
        "kiln {args:?} failed ({:?}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    (
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn fails_with(kiln: &Kiln, env: &[(String, String)], args: &[&str]) -> String {
    let output = run_with(kiln, env, args);
    assert!(
        !output.status.success(),
        "kiln {args:?} should have failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stderr).unwrap()
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn inspect(kiln: &Kiln, reference: &str) -> serde_json::Value {
    let out = kiln.ok(&["inspect", reference]);
    let mut docs: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    docs.remove(0)
}

#[test]
fn pull_of_an_image_pushed_by_skopeo_stores_it_verified_and_unpacked() {
    if !registry::available() {
        return;
    }
    let (source, archive) = saved_image("app:1");
    let registry = Registry::plain();
    let digest = registry::push_archive(&registry, &archive, "app:1");
    let source_id = inspect(&source, "app:1")["Id"].as_str().unwrap().to_owned();

    let kiln = Kiln::new();
    let env = kiln_for(&kiln, &registry);
    let reference = registry.reference("app:1");
    let (stdout, stderr) = ok_with(&kiln, &env, &["pull", &reference]);
    assert_eq!(stdout.trim(), reference);
    assert!(stderr.contains("1: Pulling from app"), "{stderr}");
    assert!(stderr.contains(&format!("Digest: {digest}")), "{stderr}");
    assert!(
        stderr.contains(&format!("Status: Downloaded newer image for {reference}")),
        "{stderr}"
    );
    let image = inspect(&kiln, &reference);
    assert_eq!(image["Id"], source_id.as_str());
    assert_eq!(
        image["RepoDigests"][0],
        format!("{}/app@{digest}", registry.host())
    );
    assert_eq!(
        common::image_file(&kiln.root(), &reference, "etc/name").as_deref(),
        Some("app:1\n")
    );
    // A second pull fetches nothing.
    let (_, stderr) = ok_with(&kiln, &env, &["pull", &reference]);
    assert!(stderr.contains("Already exists"), "{stderr}");
    assert!(
        stderr.contains(&format!("Status: Image is up to date for {reference}")),
        "{stderr}"
    );
    assert!(!stderr.contains("Download complete"), "{stderr}");
}

#[test]
fn pull_by_digest_is_verified_and_names_the_image_by_its_digest() {
    if !registry::available() {
        return;
    }
    let registry = Registry::plain();
    let digest = push_app(&registry, "app:1");
    let kiln = Kiln::new();
    let env = kiln_for(&kiln, &registry);
    let reference = registry.reference(&format!("app@{digest}"));
    let (stdout, _) = ok_with(&kiln, &env, &["pull", "-q", &reference]);
    assert_eq!(stdout.trim(), reference);
    let image = inspect(&kiln, &reference);
    assert_eq!(
        image["RepoDigests"][0],
        format!("{}/app@{digest}", registry.host())
    );
    assert_eq!(image["RepoTags"], serde_json::json!([]));
}

#[test]
fn pull_over_tls_with_htpasswd_uses_the_stored_credentials_and_the_certs_dir() {
    if !registry::available() {
        return;
    }
    let registry = Registry::tls_htpasswd();
    push_app(&registry, "secure/app:1");
    let kiln = Kiln::new();
    let env = kiln_for(&kiln, &registry);
    let reference = registry.reference("secure/app:1");
    let (_, stderr) = ok_with(&kiln, &env, &["pull", &reference]);
    assert!(!stderr.contains(registry.password()), "{stderr}");
    assert_eq!(
        common::image_file(&kiln.root(), &reference, "etc/name").as_deref(),
        Some("app:1\n")
    );
}

#[test]
fn a_loopback_registry_with_tls_and_no_certs_dir_is_used_over_https_unverified() {
    // Docker's insecure registries (loopback, insecure-registries): HTTPS
    // without verifying the certificate when the registry speaks TLS,
    // plain HTTP only when it does not (the other tests' plain registry).
    if !registry::available() {
        return;
    }
    let registry = Registry::tls_htpasswd();
    push_app(&registry, "selfsigned/app:1");
    let kiln = Kiln::new();
    let mut env = kiln_for(&kiln, &registry);
    env.retain(|(k, _)| k != "KILN_CERTS_DIR");
    env.push((
        "KILN_CERTS_DIR".to_owned(),
        kiln.path("no-certs").display().to_string(),
    ));
    let reference = registry.reference("selfsigned/app:1");
    ok_with(&kiln, &env, &["pull", &reference]);
    assert_eq!(
        common::image_file(&kiln.root(), &reference, "etc/name").as_deref(),
        Some("app:1\n")
    );
    let pushed = registry.reference("selfsigned/copy:1");
    kiln.ok(&["tag", &reference, &pushed]);
    ok_with(&kiln, &env, &["push", &pushed]);
    let output = registry::skopeo_inspect(&registry, "selfsigned/copy:1", true);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn pull_with_a_wrong_password_fails_with_unauthorized_and_never_shows_it() {
    if !registry::available() {
        return;
    }
    let registry = Registry::tls_htpasswd();
    push_app(&registry, "app:1");
    let kiln = Kiln::new();
    let mut env = kiln_for(&kiln, &registry);
    // Overwrite the config with a wrong password for the same host.
    let config_dir = kiln.path("wrong-config");
    std::fs::create_dir_all(&config_dir).unwrap();
    let wrong = format!("{}:not-{}", registry::USER, registry.password());
    let auth = registry::base64(
        wrong.as_bytes(),
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        true,
    );
    std::fs::write(
        config_dir.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
            registry.host()
        ),
    )
    .unwrap();
    env.retain(|(k, _)| k != "DOCKER_CONFIG");
    env.push(("DOCKER_CONFIG".to_owned(), config_dir.display().to_string()));
    let reference = registry.reference("app:1");
    let stderr = fails_with(&kiln, &env, &["pull", &reference]);
    assert!(
        stderr.contains(&format!(
            "unauthorized: authentication required for {}/app: the credentials were refused",
            registry.host()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(registry.password()), "{stderr}");
    assert!(!stderr.contains(&auth), "{stderr}");
    assert!(
        kiln.fails(&["image", "inspect", &reference])
            .contains("no such image")
    );
}

#[test]
fn pull_of_an_unknown_tag_fails_with_manifest_unknown() {
    if !registry::available() {
        return;
    }
    let registry = Registry::plain();
    let kiln = Kiln::new();
    let env = kiln_for(&kiln, &registry);
    let reference = registry.reference("nothing:here");
    let stderr = fails_with(&kiln, &env, &["pull", &reference]);
    assert!(
        stderr.contains(&format!(
            "manifest for {reference} not found: manifest unknown"
        )),
        "{stderr}"
    );
}

#[test]
fn pull_from_a_closed_port_fails_with_connection_refused() {
    let kiln = Kiln::new();
    let port = closed_port();
    let reference = format!("127.0.0.1:{port}/app:1");
    let stderr = kiln.fails(&["pull", &reference]);
    assert!(
        stderr.contains(&format!(
            "cannot reach registry 127.0.0.1:{port} at http://127.0.0.1:{port}/v2/app/manifests/1: connection refused"
        )),
        "{stderr}"
    );
}

#[test]
fn pull_from_an_unknown_host_fails_naming_it() {
    let kiln = Kiln::new();
    let stderr = kiln.fails(&["pull", "no-such-host.invalid/app:1"]);
    assert!(
        stderr.contains(
            "cannot reach registry no-such-host.invalid: unknown host no-such-host.invalid"
        ),
        "{stderr}"
    );
}

/// `kiln push` of `reference`; returns (stdout, stderr).
fn push(kiln: &Kiln, env: &[(String, String)], reference: &str) -> (String, String) {
    ok_with(kiln, env, &["push", "--progress=plain", reference])
}

#[test]
fn push_is_read_back_by_skopeo_under_the_stores_digest_and_a_repush_uploads_nothing() {
    if !registry::available() {
        return;
    }
    let registry = Registry::plain();
    let kiln = Kiln::new();
    let env = kiln_for(&kiln, &registry);
    let reference = registry.reference("pushed/app:1");
    kiln.import_sample(&reference);
    let local_digest = kiln_store::Store::open(&kiln.root())
        .unwrap()
        .resolve(&reference)
        .unwrap()
        .manifest_digest
        .to_string();
    let (stdout, stderr) = push(&kiln, &env, &reference);
    assert!(
        stderr.contains(&format!(
            "The push refers to repository [{}/pushed/app]",
            registry.host()
        )),
        "{stderr}"
    );
    assert!(stderr.contains(": Pushed"), "{stderr}");
    let size = std::fs::metadata(
        kiln.root()
            .join("blobs/sha256")
            .join(local_digest.trim_start_matches("sha256:")),
    )
    .unwrap()
    .len();
    assert_eq!(
        stdout.trim(),
        format!("1: digest: {local_digest} size: {size}")
    );
    let raw = registry::skopeo_inspect(&registry, "pushed/app:1", true);
    assert!(raw.status.success(), "{raw:?}");
    assert_eq!(
        kiln_store::digest::digest_bytes(&raw.stdout).to_string(),
        local_digest
    );
    let image = inspect(&kiln, &reference);
    assert_eq!(
        image["RepoDigests"][0],
        format!("{}/pushed/app@{local_digest}", registry.host())
    );
    // Everything is there: nothing is uploaded again.
    let (_, stderr) = push(&kiln, &env, &reference);
    assert!(stderr.contains("Layer already exists"), "{stderr}");
    assert!(!stderr.contains(": Pushed"), "{stderr}");
    // And another store pulls what was pushed.
    let other = Kiln::new();
    ok_with(&other, &kiln_for(&other, &registry), &["pull", &reference]);
    assert_eq!(
        common::image_file(&other.root(), &reference, "etc/name").as_deref(),
        Some(format!("{reference}\n").as_str())
    );
}

#[test]
fn push_of_uncompressed_layers_compresses_them_once_and_retags_the_image() {
    if !registry::available() {
        return;
    }
    let registry = Registry::plain();
    let kiln = Kiln::new();
    let env = kiln_for(&kiln, &registry);
    let reference = registry.reference("raw/app:1");
    let rootfs = kiln.path("rootfs");
    common::sample_rootfs(&rootfs, "raw");
    kiln.ok(&[
        "import",
        "--compression",
        "none",
        rootfs.to_str().unwrap(),
        &reference,
    ]);
    let (stdout, _) = ok_with(
        &kiln,
        &env,
        &["push", "-q", "--compression", "zstd", &reference],
    );
    let raw = registry::skopeo_inspect(&registry, "raw/app:1", true);
    let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let pushed = kiln_store::digest::digest_bytes(&raw.stdout).to_string();
    assert!(stdout.contains(&pushed), "{stdout}");
    // The tag now names the compressed manifest, so RepoDigests agree.
    let image = inspect(&kiln, &reference);
    assert_eq!(
        image["RepoDigests"][0],
        format!("{}/raw/app@{pushed}", registry.host())
    );
}

#[test]
fn push_mounts_a_blob_from_another_repository_of_the_registry() {
    if !registry::available() {
        return;
    }
    let registry = Registry::plain();
    let kiln = Kiln::new();
    let env = kiln_for(&kiln, &registry);
    let first = registry.reference("first/app:1");
    let second = registry.reference("second/app:1");
    kiln.import_sample(&first);
    push(&kiln, &env, &first);
    kiln.ok(&["tag", &first, &second]);
    let (_, stderr) = push(&kiln, &env, &second);
    assert!(stderr.contains("Mounted from first/app"), "{stderr}");
    assert!(!stderr.contains(": Pushed"), "{stderr}");
    assert!(
        registry::skopeo_inspect(&registry, "second/app:1", true)
            .status
            .success()
    );
}

#[test]
fn push_to_a_read_only_registry_is_denied() {
    if !registry::available() {
        return;
    }
    let registry = Registry::read_only();
    let kiln = Kiln::new();
    let env = kiln_for(&kiln, &registry);
    let reference = registry.reference("app:1");
    kiln.import_sample(&reference);
    let stderr = fails_with(&kiln, &env, &["push", &reference]);
    assert!(
        stderr.contains(&format!(
            "denied: push access to {}/app is not allowed",
            registry.host()
        )),
        "{stderr}"
    );
}

#[test]
fn push_over_tls_with_htpasswd_round_trips_through_skopeo() {
    if !registry::available() {
        return;
    }
    let registry = Registry::tls_htpasswd();
    let kiln = Kiln::new();
    let env = kiln_for(&kiln, &registry);
    let reference = registry.reference("secure/app:2");
    kiln.import_sample(&reference);
    let (stdout, stderr) = push(&kiln, &env, &reference);
    assert!(!stdout.contains(registry.password()));
    assert!(!stderr.contains(registry.password()));
    let raw = registry::skopeo_inspect(&registry, "secure/app:2", true);
    assert!(raw.status.success(), "{raw:?}");
}

#[test]
fn skopeo_push_then_kiln_run_pulls_the_missing_image_and_runs_it() {
    if !registry::available() {
        return;
    }
    let source = common::build::busybox();
    let archive = source.path("bb.tar");
    source.ok(&["save", "-o", archive.to_str().unwrap(), "bb:1"]);
    let registry = Registry::plain();
    registry::push_archive(&registry, &archive, "base/bb:1");
    let kiln = Kiln::new();
    let env = kiln_for(&kiln, &registry);
    let reference = registry.reference("base/bb:1");
    // --pull never does not reach the registry.
    let stderr = fails_with(
        &kiln,
        &env,
        &["run", "--rm", "--pull", "never", &reference, "true"],
    );
    assert!(stderr.contains("no such image"), "{stderr}");
    let output = run_with(
        &kiln,
        &env,
        &["run", "--rm", &reference, "cat", "/etc/base-file"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "base\n");
    assert!(
        stderr.contains(&format!("Unable to find image '{reference}' locally")),
        "{stderr}"
    );
    // Present now: run does not pull again.
    let output = run_with(&kiln, &env, &["run", "--rm", &reference, "true"]);
    assert!(output.status.success());
    assert!(!String::from_utf8_lossy(&output.stderr).contains("Pulling from"));
}

#[test]
fn build_pulls_a_base_image_only_in_the_registry_pushes_the_result_and_a_rebuild_pulls_nothing() {
    if !registry::available() {
        return;
    }
    let source = common::build::busybox();
    let registry = Registry::plain();
    let env_source = kiln_for(&source, &registry);
    let base = registry.reference("base/bb:1");
    source.ok(&["tag", "bb:1", &base]);
    push(&source, &env_source, &base);

    let kiln = Kiln::new();
    let env = kiln_for(&kiln, &registry);
    let context = common::build::context(
        &kiln,
        "ctx",
        &format!("FROM {base}\nRUN echo built > /built\n"),
        &[],
    );
    let app = registry.reference("app:1");
    let (_, stderr) = ok_with(
        &kiln,
        &env,
        &[
            "build",
            "--progress=plain",
            "--push",
            "-t",
            &app,
            context.to_str().unwrap(),
        ],
    );
    assert!(stderr.contains("1: Pulling from base/bb"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "The push refers to repository [{}/app]",
            registry.host()
        )),
        "{stderr}"
    );
    let raw = registry::skopeo_inspect(&registry, "app:1", true);
    assert!(raw.status.success(), "{raw:?}");
    let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    // The build's uncompressed layers went out gzip-compressed.
    for layer in manifest["layers"].as_array().unwrap() {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
    }
    let (_, stderr) = ok_with(
        &kiln,
        &env,
        &[
            "build",
            "--progress=plain",
            "-t",
            &app,
            context.to_str().unwrap(),
        ],
    );
    assert!(!stderr.contains("Pulling from"), "{stderr}");
    // --pull asks the registry again (nothing new: nothing downloaded).
    let (_, stderr) = ok_with(
        &kiln,
        &env,
        &[
            "build",
            "--progress=plain",
            "--pull",
            "-t",
            &app,
            context.to_str().unwrap(),
        ],
    );
    assert!(stderr.contains("Status: Image is up to date"), "{stderr}");
    // A third store runs what was pushed.
    let other = Kiln::new();
    let output = run_with(
        &other,
        &kiln_for(&other, &registry),
        &["run", "--rm", &app, "cat", "/built"],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "built\n");
}

#[test]
fn build_with_a_base_image_the_registry_lacks_fails_naming_it() {
    if !registry::available() {
        return;
    }
    let registry = Registry::plain();
    let kiln = Kiln::new();
    let env = kiln_for(&kiln, &registry);
    let base = registry.reference("missing/base:1");
    let context = common::build::context(&kiln, "ctx", &format!("FROM {base}\n"), &[]);
    let output = run_with(
        &kiln,
        &env,
        &["build", "--progress=plain", context.to_str().unwrap()],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot pull base image {base}: manifest for {base} not found: manifest unknown"
        )),
        "{stderr}"
    );
}

#[test]
fn build_output_type_registry_tags_and_pushes_the_image() {
    if !registry::available() {
        return;
    }
    let registry = Registry::plain();
    let kiln = common::build::busybox();
    let env = kiln_for(&kiln, &registry);
    let context = common::build::context(&kiln, "ctx", "FROM bb:1\nRUN echo out > /out\n", &[]);
    let name = registry.reference("out:1");
    let metadata = kiln.path("metadata.json");
    ok_with(
        &kiln,
        &env,
        &[
            "build",
            "--progress=plain",
            "--output",
            &format!("type=registry,name={name}"),
            "--metadata-file",
            metadata.to_str().unwrap(),
            context.to_str().unwrap(),
        ],
    );
    let pushed = registry::skopeo_inspect(&registry, "out:1", true);
    assert!(pushed.status.success());
    assert_eq!(
        common::image_file(&kiln.root(), &name, "out").as_deref(),
        Some("out\n")
    );
    // The metadata names the manifest the registry holds (pushing
    // compresses the layers, so it is not the store's).
    let digest = kiln_store::digest::digest_bytes(&pushed.stdout).to_string();
    let metadata: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&metadata).unwrap()).unwrap();
    assert_eq!(metadata["containerimage.digest"], serde_json::json!(digest));
    assert_eq!(
        metadata["containerimage.descriptor"]["size"],
        serde_json::json!(pushed.stdout.len())
    );
    assert_eq!(
        metadata["containerimage.config.digest"],
        serde_json::json!(
            kiln.ok(&["inspect", "-f", "{{.Id}}", &name])
                .trim()
                .to_owned()
        )
    );
    assert_eq!(metadata["image.name"], serde_json::json!(name));

    // push=false names the image in the store and pushes nothing.
    let name = registry.reference("kept:1");
    ok_with(
        &kiln,
        &env,
        &[
            "build",
            "--progress=plain",
            "--output",
            &format!("type=registry,name={name},push=false"),
            context.to_str().unwrap(),
        ],
    );
    assert!(kiln.run(&["inspect", &name]).status.success());
    assert!(
        !registry::skopeo_inspect(&registry, "kept:1", true)
            .status
            .success()
    );
}

/// A plain registry (with `auth`) holding `app:1` (pushed by skopeo), and
/// the digest of its first layer and of its manifest.
fn registry_with_image(auth: registry::Auth) -> (Registry, String, String) {
    let (_source, archive) = saved_image("app:1");
    let registry = Registry::start(registry::Options {
        auth,
        ..registry::Options::default()
    });
    let digest = registry::push_archive(&registry, &archive, "app:1");
    let raw = registry::skopeo_inspect(&registry, "app:1", true);
    let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    (registry, layer, digest)
}

/// A Docker config in `kiln`'s directory with the registry's credentials
/// filed under `host` (a proxy in front of it); returns the env to use.
fn credentials_for(kiln: &Kiln, registry: &Registry, host: &str) -> Vec<(String, String)> {
    let (user, password) = registry.creds().unwrap();
    let dir = kiln.path("proxy-config");
    std::fs::create_dir_all(&dir).unwrap();
    let auth = registry::base64(
        format!("{user}:{password}").as_bytes(),
        registry::STANDARD,
        true,
    );
    std::fs::write(
        dir.join("config.json"),
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    vec![
        ("DOCKER_CONFIG".to_owned(), dir.display().to_string()),
        (
            "KILN_CERTS_DIR".to_owned(),
            kiln.path("no-certs").display().to_string(),
        ),
    ]
}

#[test]
fn pull_resumes_a_blob_cut_mid_way_with_a_range_request() {
    if !registry::available() {
        return;
    }
    let (registry, layer, _) = registry_with_image(registry::Auth::None);
    let proxy = registry::FaultProxy::start(&registry);
    proxy.cut(&format!("GET /v2/app/blobs/{layer}"), 100, 1);
    let kiln = Kiln::new();
    let env = kiln_for(&kiln, &registry);
    let reference = proxy.reference("app:1");
    ok_with(&kiln, &env, &["pull", &reference]);
    let seen = proxy.matching(&format!("/blobs/{layer}"));
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].header("range"), None);
    assert_eq!(seen[1].header("range"), Some("bytes=100-"));
    assert_eq!(
        common::image_file(&kiln.root(), &reference, "etc/name").as_deref(),
        Some("app:1\n")
    );
}

#[test]
fn pull_retries_a_manifest_after_two_500s() {
    if !registry::available() {
        return;
    }
    let (registry, _, digest) = registry_with_image(registry::Auth::None);
    let proxy = registry::FaultProxy::start(&registry);
    proxy.fail("GET /v2/app/manifests/1", 500, 2);
    let kiln = Kiln::new();
    let env = kiln_for(&kiln, &registry);
    let (_, stderr) = ok_with(&kiln, &env, &["pull", &proxy.reference("app:1")]);
    assert!(stderr.contains(&format!("Digest: {digest}")), "{stderr}");
    let statuses: Vec<_> = proxy
        .matching("GET /v2/app/manifests/1")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [Some(500), Some(500), Some(200)]);
}

#[test]
fn pull_of_a_corrupted_blob_is_refused_and_stores_neither_the_blob_nor_a_tag() {
    if !registry::available() {
        return;
    }
    let (registry, layer, _) = registry_with_image(registry::Auth::None);
    let proxy = registry::FaultProxy::start(&registry);
    proxy.corrupt(&format!("GET /v2/app/blobs/{layer}"), 10, 1);
    let kiln = Kiln::new();
    let env = kiln_for(&kiln, &registry);
    let reference = proxy.reference("app:1");
    let stderr = fails_with(&kiln, &env, &["pull", &reference]);
    assert!(
        stderr.contains(&format!(
            "digest mismatch for blob {layer} from {}/app: expected {layer}, got sha256:",
            proxy.host()
        )),
        "{stderr}"
    );
    assert!(
        !kiln
            .root()
            .join("blobs/sha256")
            .join(layer.trim_start_matches("sha256:"))
            .exists()
    );
    assert!(
        kiln.fails(&["image", "inspect", &reference])
            .contains("no such image")
    );
}

#[test]
fn pull_of_a_corrupted_manifest_is_refused_as_a_digest_mismatch() {
    if !registry::available() {
        return;
    }
    let (registry, _, digest) = registry_with_image(registry::Auth::None);
    let proxy = registry::FaultProxy::start(&registry);
    proxy.corrupt("GET /v2/app/manifests/1", 30, 1);
    let kiln = Kiln::new();
    let env = kiln_for(&kiln, &registry);
    let reference = proxy.reference("app:1");
    let stderr = fails_with(&kiln, &env, &["pull", &reference]);
    assert!(
        stderr.contains(&format!(
            "manifest digest mismatch for {reference}: expected {digest}, got sha256:"
        )),
        "{stderr}"
    );
    assert!(
        kiln.fails(&["image", "inspect", &reference])
            .contains("no such image")
    );
}

/// A one-shot registry on loopback: answers the first request with a
/// manifest of `content_type` holding `body`; returns its port and the
/// server thread.
fn serve_one_manifest(
    content_type: &'static str,
    body: Vec<u8>,
) -> (u16, std::thread::JoinHandle<()>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let stream = loop {
            let (stream, _) = listener.accept().unwrap();
            if !registry::is_tls_probe(&stream) {
                break stream;
            }
        };
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 2 {
            line.clear();
        }
        let mut stream = stream;
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(&body);
    });
    (port, server)
}

#[test]
fn pull_refuses_a_manifest_over_the_size_cap() {
    let (port, server) = serve_one_manifest(
        "application/vnd.oci.image.manifest.v1+json",
        vec![b' '; 5 << 20],
    );
    let kiln = Kiln::new();
    let reference = format!("127.0.0.1:{port}/big:1");
    let stderr = kiln.fails(&["pull", &reference]);
    assert!(
        stderr.contains(&format!(
            "manifest {reference} from 127.0.0.1:{port} is over the 4194304-byte limit"
        )),
        "{stderr}"
    );
    server.join().unwrap();
}

#[test]
fn pull_refuses_foreign_and_non_distributable_layers_before_fetching_anything() {
    // Docker's foreign layers (Windows base layers) and OCI's
    // non-distributable ones point at URLs outside the registry; the
    // one-shot server answers only the manifest, so a fetch of the
    // config or a layer would fail differently.
    let cases = [
        (
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        ),
        (
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        ),
    ];
    for (manifest_type, config_type, layer_type) in cases {
        let layer = format!("sha256:{}", "ab".repeat(32));
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {"mediaType": config_type,
                       "digest": format!("sha256:{}", "cd".repeat(32)), "size": 2},
            "layers": [{"mediaType": layer_type, "digest": layer, "size": 1000,
                        "urls": ["https://example.invalid/layer"]}],
        }))
        .unwrap();
        let (port, server) = serve_one_manifest(manifest_type, manifest);
        let kiln = Kiln::new();
        let reference = format!("127.0.0.1:{port}/win:1");
        let stderr = kiln.fails(&["pull", &reference]);
        assert!(
            stderr.contains(&format!(
                "layer {layer} of {reference} is a foreign or non-distributable layer ({layer_type}): kiln does not fetch layers from outside the registry"
            )),
            "{stderr}"
        );
        assert!(
            kiln.fails(&["image", "inspect", &reference])
                .contains("no such image")
        );
        server.join().unwrap();
    }
}

#[test]
fn pull_picks_the_platform_asked_for_from_an_index_and_lists_the_platforms_it_lacks() {
    if !registry::available() {
        return;
    }
    let registry = Registry::plain();
    let mut entries = Vec::new();
    for (name, platform) in [
        ("amd", r#"{"architecture":"amd64","os":"linux"}"#),
        (
            "arm",
            r#"{"architecture":"arm64","os":"linux","variant":"v8"}"#,
        ),
    ] {
        let (_source, archive) = saved_image(&format!("{name}:1"));
        let digest = registry::push_archive(&registry, &archive, &format!("multi:{name}"));
        let raw = registry::skopeo_inspect(&registry, &format!("multi:{name}"), true);
        let media_type: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
        entries.push(format!(
            r#"{{"mediaType":{},"digest":"{digest}","size":{},"platform":{platform}}}"#,
            media_type["mediaType"],
            raw.stdout.len()
        ));
    }
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
        entries.join(",")
    );
    let output = registry
        .curl(&[
            "-sf",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/vnd.oci.image.index.v1+json",
            "--data-binary",
            &index,
        ])
        .arg(format!("{}/v2/multi/manifests/1", registry.url()))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let kiln = Kiln::new();
    let env = kiln_for(&kiln, &registry);
    let reference = registry.reference("multi:1");
    ok_with(
        &kiln,
        &env,
        &["pull", "--platform", "linux/arm64", &reference],
    );
    assert_eq!(
        common::image_file(&kiln.root(), &reference, "etc/name").as_deref(),
        Some("arm:1\n")
    );
    ok_with(
        &kiln,
        &env,
        &["pull", "--platform", "linux/amd64", &reference],
    );
    assert_eq!(
        common::image_file(&kiln.root(), &reference, "etc/name").as_deref(),
        Some("amd:1\n")
    );
    // As Docker: RepoDigests name the index the tag named, and that
    // digest finds the image pulled through it.
    let index_digest = kiln_store::digest::digest_bytes(index.as_bytes()).to_string();
    let name = format!("{}/multi", registry.host());
    let document = inspect(&kiln, &reference);
    assert_eq!(
        document["RepoDigests"],
        serde_json::json!([format!("{name}@{index_digest}")])
    );
    let by_index = format!("{name}@{index_digest}");
    assert_eq!(
        kiln.ok(&["inspect", "--format", "{{.Id}}", &by_index]),
        kiln.ok(&["inspect", "--format", "{{.Id}}", &reference])
    );
    // Pulled by the index's digest into another store: named by it.
    let other = Kiln::new();
    let env = kiln_for(&other, &registry);
    ok_with(
        &other,
        &env,
        &["pull", "--platform", "linux/arm64", &by_index],
    );
    assert_eq!(
        common::image_file(&other.root(), &by_index, "etc/name").as_deref(),
        Some("arm:1\n")
    );
    assert_eq!(
        inspect(&other, &by_index)["RepoDigests"],
        serde_json::json!([by_index])
    );
    let env = kiln_for(&kiln, &registry);
    let stderr = fails_with(
        &kiln,
        &env,
        &["pull", "--platform", "linux/s390x", &reference],
    );
    assert!(
        stderr.contains(&format!(
            "no matching manifest for linux/s390x in the manifest list entries of {reference} (it has: linux/amd64, linux/arm64/v8)"
        )),
        "{stderr}"
    );
}

#[test]
fn pull_with_bearer_tokens_fetches_one_token_and_a_failing_token_service_is_named() {
    if !registry::available() {
        return;
    }
    let registry = Registry::tls_token();
    push_app(&registry, "app:1");
    let kiln = Kiln::new();
    let env = kiln_for(&kiln, &registry);
    let reference = registry.reference("app:1");
    let token = registry.token_server().unwrap();
    let before = token.issued();
    let (_, stderr) = ok_with(&kiln, &env, &["pull", &reference]);
    assert!(!stderr.contains(registry.password()), "{stderr}");
    // One token serves every request of the pull (cached per scope).
    assert_eq!(token.issued() - before, 1);
    let scopes: Vec<String> = token
        .requests()
        .iter()
        .skip(before)
        .map(|r| r.target.clone())
        .collect();
    assert!(
        scopes
            .iter()
            .all(|t| t.contains("scope=repository%3Aapp%3Apull")),
        "{scopes:?}"
    );
    let other = Kiln::new();
    let env = kiln_for(&other, &registry);
    token.fail(10);
    let stderr = fails_with(&other, &env, &["pull", &reference]);
    assert!(
        stderr.contains(&format!(
            "cannot get a token for {}/app from {}/token: status 500",
            registry.host(),
            token.url()
        )),
        "{stderr}"
    );
}

#[test]
fn credentials_are_not_sent_after_a_redirect_to_blob_storage() {
    if !registry::available() {
        return;
    }
    let (registry, layer, _) = registry_with_image(registry::Auth::Htpasswd);
    let front = registry::FaultProxy::start(&registry);
    let storage = registry.view(&registry::Options::default());
    let blobs = registry::FaultProxy::start(&storage);
    front.redirect(&format!("GET /v2/app/blobs/{layer}"), &blobs.url(), 1);
    let kiln = Kiln::new();
    let env = credentials_for(&kiln, &registry, &front.host());
    let reference = front.reference("app:1");
    ok_with(&kiln, &env, &["pull", &reference]);
    let sent = front.matching(&format!("/blobs/{layer}"));
    assert_eq!(sent[0].status, Some(307), "{sent:?}");
    assert!(
        sent[0]
            .header("authorization")
            .is_some_and(|a| a.starts_with("Basic "))
    );
    let redirected = blobs.requests();
    assert_eq!(redirected.len(), 1, "{redirected:?}");
    assert_eq!(redirected[0].header("authorization"), None);
    assert_eq!(
        common::image_file(&kiln.root(), &reference, "etc/name").as_deref(),
        Some("app:1\n")
    );
}

#[test]
fn push_in_chunks_is_read_back_whole_by_skopeo() {
    if !registry::available() {
        return;
    }
    let registry = Registry::plain();
    let kiln = Kiln::new();
    let reference = registry.reference("chunked/app:1");
    kiln.import_sample(&reference);
    let store = kiln_store::Store::open(&kiln.root()).unwrap();
    let image = store.resolve(&reference).unwrap();
    let layer_size = u64::try_from(image.manifest.layers[0].size).unwrap();
    assert!(layer_size > 100, "{layer_size}");
    let events = std::sync::Mutex::new(Vec::new());
    let report = |event: kiln_store::registry::PushEvent| events.lock().unwrap().push(event);
    let client = kiln_store::registry::Client::new(kiln_store::registry::RegistryConfig {
        certs_dir: kiln.path("no-certs"),
        ..kiln_store::registry::RegistryConfig::default()
    });
    let pushed = kiln_store::registry::push(
        &store,
        &client,
        &kiln_reference::parse_normalized_named(&reference).unwrap(),
        &kiln_store::registry::PushOptions {
            compression: kiln_store::layer::Compression::Gzip,
            monolithic_max: 64,
            chunk_size: 50,
            progress: &report,
            uploads: kiln_store::registry::push::PARALLEL_UPLOADS,
            unchecked_below: 0,
            prestarted: None,
        },
    )
    .unwrap();
    assert_eq!(pushed.digest, image.manifest_digest);
    // The layer went in 50-byte chunks: progress after each.
    let layer = kiln_store::digest::parse_sha256(&image.manifest.layers[0].digest).unwrap();
    let steps: Vec<u64> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            kiln_store::registry::PushEvent::Progress { digest, done, .. } if *digest == layer => {
                Some(*done)
            }
            _ => None,
        })
        .collect();
    let expected: Vec<u64> = (1..=layer_size.div_ceil(50))
        .map(|n| (n * 50).min(layer_size))
        .collect();
    assert_eq!(steps, expected);
    let other = Kiln::new();
    ok_with(&other, &kiln_for(&other, &registry), &["pull", &reference]);
    assert_eq!(
        common::image_file(&other.root(), &reference, "etc/name").as_deref(),
        Some(format!("{reference}\n").as_str())
    );
}

#[test]
fn push_cut_off_and_run_again_uploads_only_what_the_registry_lacks() {
    if !registry::available() {
        return;
    }
    let registry = Registry::plain();
    let proxy = registry::FaultProxy::start(&registry);
    let kiln = Kiln::new();
    let env = kiln_for(&kiln, &registry);
    let reference = proxy.reference("again/app:1");
    kiln.import_sample(&reference);
    // The manifest PUT fails on every attempt: the blobs are in, the
    // image is not.
    proxy.fail("PUT /v2/again/app/manifests/1", 503, 4);
    let stderr = fails_with(&kiln, &env, &["push", &reference]);
    assert!(
        stderr.contains(&format!(
            "manifest {} at registry {}: unexpected status 503",
            kiln_reference::parse_normalized_named(&reference).unwrap(),
            proxy.host()
        )),
        "{stderr}"
    );
    let uploads_before = proxy.matching("POST /v2/again/app/blobs/uploads").len();
    assert_eq!(uploads_before, 2, "config and one layer");
    let (_, stderr) = push(&kiln, &env, &reference);
    assert!(!stderr.contains(": Pushed"), "{stderr}");
    assert_eq!(
        proxy.matching("POST /v2/again/app/blobs/uploads").len(),
        uploads_before
    );
    assert!(
        registry::skopeo_inspect(&registry, "again/app:1", true)
            .status
            .success()
    );
}

#[test]
fn pull_progress_json_is_one_json_object_per_line_and_quiet_prints_only_the_reference() {
    if !registry::available() {
        return;
    }
    let registry = Registry::plain();
    push_app(&registry, "app:1");
    let kiln = Kiln::new();
    let env = kiln_for(&kiln, &registry);
    let reference = registry.reference("app:1");
    let (stdout, stderr) = ok_with(&kiln, &env, &["pull", "--progress=json", &reference]);
    assert_eq!(stdout.trim(), reference);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["status"] == "Pull complete" && l["id"].is_string())
    );
    assert!(lines.iter().any(|l| l["progressDetail"]["total"].is_u64()));
    let other = Kiln::new();
    let (stdout, stderr) = ok_with(
        &other,
        &kiln_for(&other, &registry),
        &["pull", "-q", &reference],
    );
    assert_eq!(stdout, format!("{reference}\n"));
    assert_eq!(stderr, "");
}

#[test]
fn pull_all_tags_pulls_every_tag_of_the_repository() {
    if !registry::available() {
        return;
    }
    let registry = Registry::plain();
    for tag in ["1", "2"] {
        let (_source, archive) = saved_image(&format!("app:{tag}"));
        registry::push_archive(&registry, &archive, &format!("app:{tag}"));
    }
    let kiln = Kiln::new();
    let env = kiln_for(&kiln, &registry);
    let name = registry.reference("app");
    let (stdout, _) = ok_with(&kiln, &env, &["pull", "-a", "-q", &name]);
    assert_eq!(stdout, format!("{name}:1\n{name}:2\n"));
    for tag in ["1", "2"] {
        assert_eq!(
            common::image_file(&kiln.root(), &format!("{name}:{tag}"), "etc/name").as_deref(),
            Some(format!("app:{tag}\n").as_str())
        );
    }
    let stderr = fails_with(&kiln, &env, &["pull", "-a", &format!("{name}:1")]);
    assert!(
        stderr.contains("tag can't be used with --all-tags/-a"),
        "{stderr}"
    );
}

#[test]
fn trace_logs_of_a_token_pull_hold_neither_the_password_nor_a_token() {
    if !registry::available() {
        return;
    }
    let registry = Registry::tls_token();
    push_app(&registry, "app:1");
    let kiln = Kiln::new();
    let env = kiln_for(&kiln, &registry);
    let reference = registry.reference("app:1");
    let (_, stderr) = ok_with(&kiln, &env, &["--log-level", "trace", "pull", &reference]);
    assert!(
        stderr.contains("TRACE") || stderr.contains("DEBUG"),
        "{stderr}"
    );
    assert!(!stderr.contains(registry.password()), "{stderr}");
    // The registry's tokens are JWTs: base64 of `{"` starts them.
    assert!(!stderr.contains("eyJ"), "{stderr}");
    let encoded = registry::base64(
        format!("{}:{}", registry::USER, registry.password()).as_bytes(),
        registry::STANDARD,
        true,
    );
    assert!(!stderr.contains(&encoded), "{stderr}");
}

#[test]
fn a_docker_io_pull_goes_to_the_configured_mirror() {
    if !registry::available() {
        return;
    }
    let mirror = Registry::plain();
    push_app(&mirror, "library/app:1");
    let kiln = Kiln::new();
    let mut env = kiln_for(&kiln, &mirror);
    env.push(("KILN_REGISTRY_MIRRORS".to_owned(), mirror.url()));
    let (stdout, stderr) = ok_with(&kiln, &env, &["pull", "app:1"]);
    assert_eq!(stdout.trim(), "docker.io/library/app:1");
    assert!(stderr.contains("1: Pulling from library/app"), "{stderr}");
    assert!(
        stderr.contains("Status: Downloaded newer image for app:1"),
        "{stderr}"
    );
    assert_eq!(
        common::image_file(&kiln.root(), "app:1", "etc/name").as_deref(),
        Some("app:1\n")
    );
    assert!(
        mirror.log().contains("/v2/library/app/manifests/1"),
        "{}",
        mirror.log()
    );
}

#[test]
fn pull_retries_a_manifest_and_a_config_cut_mid_body() {
    if !registry::available() {
        return;
    }
    let (registry, layer, digest) = registry_with_image(registry::Auth::None);
    let proxy = registry::FaultProxy::start(&registry);
    proxy.cut("GET /v2/app/manifests/1", 20, 1);
    // Every blob but the layer: the config.
    let raw = registry::skopeo_inspect(&registry, "app:1", true);
    let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    let config = manifest["config"]["digest"].as_str().unwrap().to_owned();
    assert_ne!(config, layer);
    proxy.cut(&format!("GET /v2/app/blobs/{config}"), 20, 1);
    let kiln = Kiln::new();
    let env = kiln_for(&kiln, &registry);
    let (_, stderr) = ok_with(&kiln, &env, &["pull", &proxy.reference("app:1")]);
    assert!(stderr.contains(&format!("Digest: {digest}")), "{stderr}");
    assert_eq!(proxy.matching("GET /v2/app/manifests/1").len(), 2);
    assert_eq!(
        proxy.matching(&format!("GET /v2/app/blobs/{config}")).len(),
        2
    );
    assert!(proxy.pending().is_empty());
}

#[test]
fn pull_answered_403_is_denied_and_401_without_credentials_says_so() {
    if !registry::available() {
        return;
    }
    let (registry, _, _) = registry_with_image(registry::Auth::None);
    let proxy = registry::FaultProxy::start(&registry);
    proxy.fail("GET /v2/app/manifests/1", 403, 1);
    let kiln = Kiln::new();
    let env = kiln_for(&kiln, &registry);
    let reference = proxy.reference("app:1");
    let stderr = fails_with(&kiln, &env, &["pull", &reference]);
    assert!(
        stderr.contains(&format!(
            "denied: pull access to {}/app is not allowed",
            proxy.host()
        )),
        "{stderr}"
    );
    proxy.fail("GET /v2/app/manifests/1", 401, 2);
    let stderr = fails_with(&kiln, &env, &["pull", &reference]);
    assert!(
        stderr.contains(&format!(
            "unauthorized: authentication required for {}/app: no credentials are stored for it (kiln login)",
            proxy.host()
        )),
        "{stderr}"
    );
}

/// `kiln ARGS` with `input` on stdin.
fn run_with_input(
    kiln: &Kiln,
    env: &[(String, String)],
    args: &[&str],
    input: &str,
) -> std::process::Output {
    let mut command = kiln.command();
    for (k, v) in env {
        command.env(k, v);
    }
    command
        .args(args)
        .write_stdin(input.as_bytes().to_vec())
        .output()
        .unwrap()
}

/// The env of [`kiln_for`] with an empty Docker config of the test's own.
fn logged_out(kiln: &Kiln, registry: &Registry) -> (Vec<(String, String)>, PathBuf) {
    let mut env = kiln_for(kiln, registry);
    let config_dir = kiln.path("login-config");
    std::fs::create_dir_all(&config_dir).unwrap();
    env.retain(|(k, _)| k != "DOCKER_CONFIG");
    env.push(("DOCKER_CONFIG".to_owned(), config_dir.display().to_string()));
    (env, config_dir)
}

#[test]
fn login_checks_the_password_keeps_it_as_docker_does_and_logout_forgets_it() {
    if !registry::available() {
        return;
    }
    let (_source, archive) = saved_image("app:1");
    for registry in [Registry::tls_htpasswd(), Registry::tls_token()] {
        registry::push_archive(&registry, &archive, "app:1");
        let kiln = Kiln::new();
        let (env, config_dir) = logged_out(&kiln, &registry);
        let host = registry.host();
        let reference = registry.reference("app:1");
        // Not logged in: the pull is refused.
        let stderr = fails_with(&kiln, &env, &["pull", &reference]);
        assert!(stderr.contains("unauthorized"), "{stderr}");

        // A wrong password is refused and nothing is kept.
        let wrong = format!("not-{}\n", registry.password());
        let output = run_with_input(
            &kiln,
            &env,
            &["login", "-u", registry::USER, "--password-stdin", &host],
            &wrong,
        );
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.starts_with(&format!("error: login to {host} failed\ncaused by: ")),
            "{stderr}"
        );
        assert!(stderr.contains("unauthorized"), "{stderr}");
        assert!(!stderr.contains(wrong.trim()), "{stderr}");
        assert!(!config_dir.join("config.json").exists());

        // The right one: kept in config.json as `docker login` keeps it.
        let output = run_with_input(
            &kiln,
            &env,
            &["login", "-u", registry::USER, "--password-stdin", &host],
            &format!("{}\n", registry.password()),
        );
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(output.status.success(), "{stderr}");
        assert_eq!(
            String::from_utf8(output.stdout).unwrap(),
            "Login Succeeded\n"
        );
        assert!(stderr.starts_with("WARNING! Your password will be stored unencrypted in "));
        assert!(!stderr.contains(registry.password()), "{stderr}");
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(config_dir.join("config.json")).unwrap())
                .unwrap();
        let expected = registry::base64(
            format!("{}:{}", registry::USER, registry.password()).as_bytes(),
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
            true,
        );
        assert_eq!(config["auths"][&host]["auth"], expected.as_str());
        ok_with(&kiln, &env, &["pull", &reference]);
        assert_eq!(
            common::image_file(&kiln.root(), &reference, "etc/name").as_deref(),
            Some("app:1\n")
        );
        // A login without flags uses what is kept.
        let (out, _) = ok_with(&kiln, &env, &["login", &host]);
        assert_eq!(out, "Login Succeeded\n");

        let (out, _) = ok_with(&kiln, &env, &["logout", &host]);
        assert_eq!(out, format!("Removing login credentials for {host}\n"));
        let (out, _) = ok_with(&kiln, &env, &["logout", &host]);
        assert_eq!(out, format!("Not logged in to {host}\n"));
        kiln.ok(&["rmi", &reference]);
        let stderr = fails_with(&kiln, &env, &["pull", &reference]);
        assert!(stderr.contains("unauthorized"), "{stderr}");
    }
}

#[test]
fn login_through_a_credential_helper_keeps_the_secret_out_of_the_file() {
    if !registry::available() {
        return;
    }
    let registry = Registry::tls_htpasswd();
    push_app(&registry, "app:1");
    let kiln = Kiln::new();
    let (mut env, config_dir) = logged_out(&kiln, &registry);
    // A helper speaking Docker's protocol, keeping one secret in a file.
    let bin = kiln.path("helper-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let kept = kiln.path("helper-kept.json");
    let helper = bin.join("docker-credential-kilntest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\ncase \"$1\" in\nstore) cat > {kept} ;;\nget) cat > /dev/null; if [ -f {kept} ]; then cat {kept}; else echo 'credentials not found in native keychain'; exit 1; fi ;;\nerase) cat > /dev/null; rm {kept} ;;\nesac\n",
            kept = kept.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(
        config_dir.join("config.json"),
        r#"{"credsStore": "kilntest"}"#,
    )
    .unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    env.push(("PATH".to_owned(), format!("{}:{path}", bin.display())));
    let host = registry.host();
    let output = run_with_input(
        &kiln,
        &env,
        &["login", "-u", registry::USER, "--password-stdin", &host],
        registry.password(),
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{stderr}");
    // No warning about unencrypted storage: the helper has the secret.
    assert!(!stderr.contains("WARNING"), "{stderr}");
    let file = std::fs::read_to_string(config_dir.join("config.json")).unwrap();
    assert!(!file.contains(registry.password()), "{file}");
    let helper_kept = std::fs::read_to_string(&kept).unwrap();
    assert!(helper_kept.contains(registry.password()), "{helper_kept}");
    ok_with(&kiln, &env, &["pull", &registry.reference("app:1")]);
    let (out, _) = ok_with(&kiln, &env, &["logout", &host]);
    assert_eq!(out, format!("Removing login credentials for {host}\n"));
    assert!(!kept.exists());
}

#[test]
fn login_flags_are_checked_as_docker_checks_them() {
    let kiln = Kiln::new();
    let env = vec![(
        "DOCKER_CONFIG".to_owned(),
        kiln.path("cfg").display().to_string(),
    )];
    for (args, message) in [
        (
            &["login", "--password-stdin", "localhost:5000"][..],
            "error: Must provide --username with --password-stdin\n",
        ),
        (
            &[
                "login",
                "-u",
                "a",
                "-p",
                "b",
                "--password-stdin",
                "localhost:5000",
            ][..],
            "error: --password and --password-stdin are mutually exclusive\n",
        ),
        (
            &["login", "localhost:5000"][..],
            "error: Cannot perform an interactive login from a non TTY device\n",
        ),
    ] {
        let output = run_with_input(&kiln, &env, args, "");
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert_eq!(
            String::from_utf8(output.stderr).unwrap(),
            message,
            "{args:?}"
        );
    }
}

#[test]
fn an_identity_token_is_exchanged_by_the_oauth_refresh_grant_never_sent_as_a_password() {
    if !registry::available() {
        return;
    }
    let registry = Registry::tls_token();
    push_app(&registry, "app:1");
    let kiln = Kiln::new();
    let (env, config_dir) = logged_out(&kiln, &registry);
    let host = registry.host();
    let reference = registry.reference("app:1");
    // As `az acr login` or an SSO `docker login` keep it.
    let write_token = |token: &str| {
        std::fs::write(
            config_dir.join("config.json"),
            format!(
                r#"{{"auths": {{"{host}": {{"auth": "{}", "identitytoken": "{token}"}}}}}}"#,
                registry::base64(
                    format!("{}:", registry::USER).as_bytes(),
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
                    true
                )
            ),
        )
        .unwrap();
    };
    let identity = registry::identity_token(registry.password());
    write_token(&identity);
    let tokens = registry.token_server().unwrap();
    let before = tokens.requests().len();
    let (_, stderr) = ok_with(&kiln, &env, &["pull", &reference]);
    assert!(!stderr.contains(&identity), "{stderr}");
    let asked: Vec<_> = tokens.requests().into_iter().skip(before).collect();
    assert!(!asked.is_empty());
    for request in &asked {
        assert_eq!(
            (request.method.as_str(), request.target.as_str()),
            ("POST", "/token")
        );
        assert!(
            !request
                .headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("authorization")),
            "{:?}",
            request.headers
        );
    }
    assert_eq!(
        common::image_file(&kiln.root(), &reference, "etc/name").as_deref(),
        Some("app:1\n")
    );
    // A token the service does not take is refused by name.
    write_token("refresh-stale");
    kiln.ok(&["rmi", &reference]);
    let stderr = fails_with(&kiln, &env, &["pull", &reference]);
    assert!(
        stderr.contains("the token service refused the credentials (status 400)"),
        "{stderr}"
    );
    assert!(!stderr.contains("refresh-stale"), "{stderr}");
}

#[test]
fn a_registry_that_asks_for_a_client_certificate_gets_the_one_in_certs_d() {
    if !registry::available() {
        return;
    }
    let registry = Registry::tls_client_certs();
    push_app(&registry, "app:1");
    let kiln = Kiln::new();
    let env = kiln_for(&kiln, &registry);
    let reference = registry.reference("app:1");
    ok_with(&kiln, &env, &["pull", &reference]);
    assert_eq!(
        common::image_file(&kiln.root(), &reference, "etc/name").as_deref(),
        Some("app:1\n")
    );
    // The same CA without the client's certificate: refused in the
    // handshake, and said so.
    let bare = kiln.path("bare-certs");
    let host_dir = bare.join(registry.host());
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::copy(
        registry
            .certs_dir()
            .unwrap()
            .join(registry.host())
            .join("ca.crt"),
        host_dir.join("ca.crt"),
    )
    .unwrap();
    let mut env = env;
    env.retain(|(k, _)| k != "KILN_CERTS_DIR");
    env.push(("KILN_CERTS_DIR".to_owned(), bare.display().to_string()));
    let other = Kiln::new();
    let stderr = fails_with(&other, &env, &["pull", &reference]);
    assert!(
        stderr.contains(&format!(
            "cannot reach registry {host} at https://{host}/v2/app/manifests/1: ",
            host = registry.host()
        )) && stderr.contains("received fatal alert: BadCertificate"),
        "{stderr}"
    );
    // A lone key (or certificate) is a configuration error naming it.
    std::fs::copy(
        registry
            .certs_dir()
            .unwrap()
            .join(registry.host())
            .join("client.key"),
        host_dir.join("client.key"),
    )
    .unwrap();
    let stderr = fails_with(&other, &env, &["pull", &reference]);
    assert!(
        stderr.contains("client.key without client.cert"),
        "{stderr}"
    );
}

#[test]
fn pull_and_push_on_a_terminal_draw_a_line_per_layer_with_a_bar_and_its_bytes() {
    if !registry::available() {
        return;
    }
    let registry = Registry::plain();
    push_app(&registry, "app:1");
    let kiln = Kiln::new();
    let env = kiln_for(&kiln, &registry);
    // `script` gives kiln a pseudo-terminal; its transcript holds what a
    // person would see, cursor movements included.
    let on_a_terminal = |args: &str| {
        let log = kiln.path("typescript");
        let mut command = Command::new("script");
        command.envs(env.iter().map(|(k, v)| (k, v)));
        let output = command
            .env("TERM", "xterm")
            .env_remove("KILN_ROOT")
            .arg("-qec")
            .arg(format!(
                "{} --root {} {args}",
                assert_cmd::cargo::cargo_bin("kiln").display(),
                kiln.root().display()
            ))
            .arg(&log)
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
        assert!(output.status.success(), "kiln {args} failed: {shown}");
        shown
    };
    // What the last frame of `line` shows after it: a bar of 40 cells,
    // then the bytes moved of the layer's size.
    let bar_after = |shown: &str, line: &str| -> Option<String> {
        let rest = &shown[shown.rfind(line)? + line.len()..];
        let rest = rest.trim_start();
        let bar = rest.strip_prefix('[')?;
        let end = bar.find(']')?;
        (end == 40 && bar[..end].chars().all(|c| "=> ".contains(c))).then(|| {
            bar[end + 1..]
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
    };
    let reference = registry.reference("app:1");
    let shown = on_a_terminal(&format!("pull {reference}"));
    let blob = inspect(&kiln, &reference);
    let layer_id = {
        let manifest = registry::skopeo_inspect(&registry, "app:1", true);
        let manifest: serde_json::Value = serde_json::from_slice(&manifest.stdout).unwrap();
        let digest = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
        let size = manifest["layers"][0]["size"].as_u64().unwrap();
        (digest["sha256:".len()..][..12].to_owned(), size)
    };
    let (id, size) = layer_id;
    assert!(blob["Id"].is_string());
    assert!(shown.contains("1: Pulling from app"), "{shown}");
    // Docker's order of a layer's words, each on the layer's own line.
    let mut at = 0;
    for word in [
        "Pulling fs layer",
        "Downloading",
        "Download complete",
        "Pull complete",
    ] {
        let line = format!("{id}: {word}");
        let found = shown[at..].find(&line);
        assert!(found.is_some(), "no {line:?} after byte {at} of {shown:?}");
        at += found.unwrap_or(0);
    }
    for word in ["Downloading", "Pull complete"] {
        assert_eq!(
            bar_after(&shown, &format!("{id}: {word}")).as_deref(),
            Some(format!("{size} B/{size} B").as_str()),
            "{shown:?}"
        );
    }
    assert!(
        !shown.contains(&format!("{id}: Pulling fs layer [")),
        "a layer gets its bar only once bytes move: {shown:?}"
    );
    assert!(shown.contains("Status: Downloaded newer image"), "{shown}");

    // A push of a layer the registry lacks draws its upload the same way.
    kiln.import_sample("other:1");
    let target = registry.reference("other:1");
    kiln.ok(&["tag", "other:1", &target]);
    let shown = on_a_terminal(&format!("push {target}"));
    assert!(shown.contains(": Pushing"), "{shown:?}");
    assert!(shown.contains(": Pushed"), "{shown:?}");
}

/// Uploads opened ahead of a push (a build cache's export opens one while
/// the build runs) are used first, and one the registry no longer knows
/// is replaced by a new upload: the push still lands.
#[test]
fn a_push_takes_uploads_opened_ahead_and_replaces_one_the_registry_dropped() {
    if !registry::available() {
        return;
    }
    let registry = Registry::plain();
    let proxy = registry::FaultProxy::start(&registry);
    let kiln = Kiln::new();
    let reference = format!("{}/ahead/app:1", proxy.host());
    kiln.import_sample(&reference);
    let store = kiln_store::Store::open(&kiln.root()).unwrap();
    let image = store.resolve(&reference).unwrap();
    let client = kiln_store::registry::Client::new(kiln_store::registry::RegistryConfig {
        certs_dir: kiln.path("no-certs"),
        ..kiln_store::registry::RegistryConfig::default()
    });
    let named = kiln_reference::parse_normalized_named(&reference).unwrap();
    let opened = kiln_store::registry::artifact::prepare_push(&client, &named).unwrap();
    let prestarted = std::sync::Mutex::new(vec![
        opened.clone(),
        "/v2/ahead/app/blobs/uploads/00000000-0000-0000-0000-000000000000?_state=gone".to_owned(),
    ]);
    let quiet = |_: kiln_store::registry::PushEvent| {};
    let pushed = kiln_store::registry::push(
        &store,
        &client,
        &named,
        &kiln_store::registry::PushOptions {
            compression: kiln_store::layer::Compression::Gzip,
            monolithic_max: kiln_store::registry::push::MONOLITHIC_MAX,
            chunk_size: kiln_store::registry::push::CHUNK_SIZE,
            progress: &quiet,
            uploads: 1,
            unchecked_below: 0,
            prestarted: Some(&prestarted),
        },
    )
    .unwrap();
    assert_eq!(pushed.digest, image.manifest_digest);
    assert!(prestarted.lock().unwrap().is_empty(), "both were taken");
    let requests = proxy.requests();
    let puts: Vec<&str> = requests
        .iter()
        .filter(|r| r.method == "PUT" && r.target.contains("/blobs/uploads/"))
        .map(|r| r.target.as_str())
        .collect();
    // The dropped upload was tried, then a new one; the one opened ahead
    // served the other blob.
    assert!(puts.iter().any(|t| t.contains("_state=gone")), "{puts:?}");
    let path = opened
        .split('?')
        .next()
        .unwrap()
        .trim_start_matches("http://");
    let path = path.find("/v2/").map_or(path, |i| &path[i..]);
    assert!(puts.iter().any(|t| t.starts_with(path)), "{path} {puts:?}");
    let other = Kiln::new();
    ok_with(
        &other,
        &kiln_for(&other, &registry),
        &["pull", &format!("{}/ahead/app:1", registry.host())],
    );
}
