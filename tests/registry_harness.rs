//! Tests of the registry harness (`common::registry`) with skopeo and
//! curl as clients: the registry variants start, hold what is pushed and
//! refuse what they should, so that kiln's registry tests stand on a
//! harness known to work.
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::net::TcpStream;
use std::process::Command;

use common::Kiln;
use common::registry::{self, Options, Registry};

/// A store with a small image `app:1` saved as a docker-archive; returns
/// the store and the archive.
fn saved_image() -> (Kiln, std::path::PathBuf) {
    let kiln = Kiln::new();
    kiln.import_sample("app:1");
    let archive = kiln.path("app.tar");
    kiln.ok(&["save", "-o", archive.to_str().unwrap(), "app:1"]);
    (kiln, archive)
}

/// stdout of a command that must succeed.
fn ok(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The HTTP status curl got for `args`.
fn status(registry: &Registry, args: &[&str], path: &str) -> String {
    ok(registry
        .curl(&["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(args)
        .arg(format!("{}{path}", registry.url())))
}

#[test]
fn plain_registry_serves_an_image_pushed_by_skopeo_under_the_digest_skopeo_reports() {
    if !registry::available() {
        return;
    }
    let (_kiln, archive) = saved_image();
    let registry = Registry::plain();
    let digest = registry::push_archive(&registry, &archive, "app:1");
    assert!(digest.starts_with("sha256:"), "{digest}");
    let raw = registry::skopeo_inspect(&registry, "app:1", true);
    assert!(raw.status.success(), "{raw:?}");
    let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    assert_eq!(
        kiln_store::digest::digest_bytes(&raw.stdout).to_string(),
        digest
    );
    let by_digest = registry::skopeo_inspect(&registry, &format!("app@{digest}"), true);
    assert_eq!(by_digest.stdout, raw.stdout);
    assert_eq!(status(&registry, &[], "/v2/app/manifests/2"), "404");
}

#[test]
fn tls_htpasswd_registry_needs_its_password_and_its_ca() {
    if !registry::available() {
        return;
    }
    let (_kiln, archive) = saved_image();
    let registry = Registry::tls_htpasswd();
    assert!(registry.url().starts_with("https://127.0.0.1:"));
    let certs = registry.certs_dir().unwrap();
    assert!(certs.join(registry.host()).join("ca.crt").is_file());
    let digest = registry::push_archive(&registry, &archive, "team/app:1");

    let inspect = registry::skopeo_inspect(&registry, "team/app:1", false);
    assert!(inspect.status.success(), "{inspect:?}");
    let inspected: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(inspected["Digest"], digest);

    let (user, password) = registry.creds().unwrap();
    let path = "/v2/team/app/manifests/1";
    assert_eq!(status(&registry, &[], path), "401");
    let wrong = format!("{user}:not-{password}");
    assert_eq!(status(&registry, &["-u", &wrong], path), "401");
    let right = format!("{user}:{password}");
    assert_eq!(status(&registry, &["-u", &right], path), "200");
    // Without the CA the server's certificate is not trusted.
    let untrusted = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("{}/v2/", registry.url()))
        .output()
        .unwrap();
    assert_eq!(untrusted.status.code(), Some(60), "{untrusted:?}");
}

#[test]
fn read_only_registry_refuses_a_push_and_its_view_serves_what_was_pushed_before() {
    if !registry::available() {
        return;
    }
    let (_kiln, archive) = saved_image();
    let empty = Registry::read_only();
    let push = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("docker-archive:{}", archive.display()))
        .arg(format!("docker://{}", empty.reference("app:1")))
        .output()
        .unwrap();
    assert!(!push.status.success());
    let stderr = String::from_utf8_lossy(&push.stderr);
    assert!(
        stderr.contains("StatusCode: 405, Method not allowed"),
        "{stderr}"
    );

    let writable = Registry::plain();
    let digest = registry::push_archive(&writable, &archive, "app:1");
    let view = writable.view(&Options {
        read_only: true,
        ..Options::default()
    });
    let raw = registry::skopeo_inspect(&view, "app:1", true);
    assert!(raw.status.success(), "{raw:?}");
    assert_eq!(
        kiln_store::digest::digest_bytes(&raw.stdout).to_string(),
        digest
    );
    let upload = ok(view
        .curl(&["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .arg(format!("{}/v2/other/blobs/uploads/", view.url())));
    assert_eq!(upload, "405");
}

#[test]
fn registry_is_stopped_and_its_directory_removed_on_drop() {
    if !registry::available() {
        return;
    }
    let registry = Registry::plain();
    let port = registry.port();
    let storage = registry.storage().to_owned();
    assert!(storage.is_dir());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    drop(registry);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(!storage.exists());
}

#[test]
fn docker_config_written_for_a_registry_holds_its_credentials_in_base64() {
    if !registry::available() {
        return;
    }
    let registry = Registry::tls_htpasswd();
    let dir = tempfile::TempDir::new().unwrap();
    let path = registry.write_docker_config(dir.path());
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let auth = config["auths"][registry.host()]["auth"].as_str().unwrap();
    let decoded = ok(Command::new("sh").args(["-c", "printf %s \"$1\" | base64 -d", "sh", auth]));
    assert_eq!(
        decoded,
        format!("{}:{}", registry::USER, registry.password())
    );
}
