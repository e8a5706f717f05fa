//! Tests of the registry harness (`common::registry`) with skopeo and
//! curl as clients: the registry variants start, hold what is pushed and
//! refuse what they should, so that kiln's registry tests stand on a
//! harness known to work.
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::net::TcpStream;
use std::process::Command;

use common::Kiln;
use common::registry::{self, Auth, FaultProxy, Options, Registry};
use kiln_store::digest::digest_bytes;

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
    assert_eq!(digest_bytes(&raw.stdout).to_string(), digest);
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
    assert_eq!(digest_bytes(&raw.stdout).to_string(), digest);
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

/// A plain registry (with `auth`) holding `app:1`, and the digest and
/// size of its first layer.
fn registry_with_image(auth: Auth) -> (Kiln, Registry, String, u64) {
    let (kiln, archive) = saved_image();
    let registry = Registry::start(Options {
        auth,
        ..Options::default()
    });
    registry::push_archive(&registry, &archive, "app:1");
    let raw = registry::skopeo_inspect(&registry, "app:1", true);
    assert!(raw.status.success(), "{raw:?}");
    let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    let layer = &manifest["layers"][0];
    (
        kiln,
        registry,
        layer["digest"].as_str().unwrap().to_owned(),
        layer["size"].as_u64().unwrap(),
    )
}

/// curl of `url` into a file; returns (exit code, body, HTTP status).
fn fetch(args: &[&str], url: &str) -> (i32, Vec<u8>, String) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let output = Command::new("curl")
        .args(["-s", "-w", "%{http_code}", "-o"])
        .arg(out.path())
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        std::fs::read(out.path()).unwrap(),
        String::from_utf8(output.stdout).unwrap(),
    )
}

#[test]
fn proxy_answers_500_as_many_times_as_asked_then_forwards_and_counts_them() {
    if !registry::available() {
        return;
    }
    let registry = Registry::plain();
    let proxy = FaultProxy::start(&registry);
    proxy.fail("GET /v2/", 500, 2);
    let url = format!("{}/v2/", proxy.url());
    let statuses: Vec<String> = (0..3).map(|_| fetch(&[], &url).2).collect();
    assert_eq!(statuses, ["500", "500", "200"]);
    let seen = proxy.matching("GET /v2/");
    assert_eq!(seen.len(), 3);
    assert_eq!(
        seen.iter().map(|r| r.status).collect::<Vec<_>>(),
        [Some(500), Some(500), Some(200)]
    );
    assert!(seen[0].fault.is_some() && seen[2].fault.is_none());
    assert!(proxy.pending().is_empty());
}

#[test]
fn proxy_cuts_a_blob_after_n_bytes_and_a_range_request_gets_the_rest() {
    if !registry::available() {
        return;
    }
    let (_kiln, registry, layer, size) = registry_with_image(Auth::None);
    assert!(size > 100, "{size}");
    let proxy = FaultProxy::start(&registry);
    proxy.cut(&format!("GET /v2/app/blobs/{layer}"), 100, 1);
    let url = format!("{}/v2/app/blobs/{layer}", proxy.url());
    let (code, head, status) = fetch(&[], &url);
    // 18: "partial file", the connection closed before Content-Length.
    assert_eq!((code, status.as_str(), head.len()), (18, "200", 100));
    let (code, tail, status) = fetch(&["-r", "100-"], &url);
    assert_eq!((code, status.as_str()), (0, "206"));
    let whole = [head, tail].concat();
    assert_eq!(whole.len() as u64, size);
    assert_eq!(digest_bytes(&whole).to_string(), layer);
    let seen = proxy.matching("/blobs/");
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].header("range"), None);
    assert_eq!(seen[1].header("range"), Some("bytes=100-"));
}

#[test]
fn proxy_flips_one_byte_of_a_blob_at_the_offset_asked() {
    if !registry::available() {
        return;
    }
    let (_kiln, registry, layer, size) = registry_with_image(Auth::None);
    let proxy = FaultProxy::start(&registry);
    proxy.corrupt("/blobs/sha256:", 10, 1);
    let url = format!("{}/v2/app/blobs/{layer}", proxy.url());
    let (code, bad, _) = fetch(&[], &url);
    let (_, good, _) = fetch(&[], &url);
    assert_eq!(code, 0);
    assert_eq!(bad.len() as u64, size);
    assert_eq!(digest_bytes(&good).to_string(), layer);
    assert_ne!(digest_bytes(&bad).to_string(), layer);
    let differ: Vec<usize> = (0..bad.len()).filter(|&i| bad[i] != good[i]).collect();
    assert_eq!(differ, [10]);
    assert_eq!(bad[10], !good[10]);
}

#[test]
fn proxy_records_credentials_sent_to_the_registry_and_none_after_a_redirect_to_blob_storage() {
    if !registry::available() {
        return;
    }
    let (_kiln, registry, layer, _) = registry_with_image(Auth::Htpasswd);
    let front = FaultProxy::start(&registry);
    // "Blob storage": the same storage served without auth, elsewhere.
    let storage = registry.view(&Options::default());
    let blobs = FaultProxy::start(&storage);
    front.redirect("/blobs/", &blobs.url(), 1);
    let (user, password) = registry.creds().unwrap();
    let url = format!("{}/v2/app/blobs/{layer}", front.url());
    let (code, body, status) = fetch(&["-L", "-u", &format!("{user}:{password}")], &url);
    assert_eq!((code, status.as_str()), (0, "200"));
    assert_eq!(digest_bytes(&body).to_string(), layer);
    let sent = front.matching("/blobs/");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].status, Some(307));
    assert!(
        sent[0]
            .header("authorization")
            .unwrap()
            .starts_with("Basic ")
    );
    let redirected = blobs.matching("/blobs/");
    assert_eq!(redirected.len(), 1);
    assert_eq!(redirected[0].header("authorization"), None);
    assert!(
        !format!("{:?}", blobs.requests()).contains(&registry::base64(
            format!("{user}:{password}").as_bytes(),
            registry::STANDARD,
            true
        ))
    );
}

#[test]
fn proxy_drops_the_authorization_header_once_and_the_registry_challenges() {
    if !registry::available() {
        return;
    }
    let registry = Registry::start(Options {
        auth: Auth::Htpasswd,
        ..Options::default()
    });
    let proxy = FaultProxy::start(&registry);
    proxy.unauthorize("GET /v2/", 1);
    let (user, password) = registry.creds().unwrap();
    let creds = format!("{user}:{password}");
    let url = format!("{}/v2/", proxy.url());
    assert_eq!(fetch(&["-u", &creds], &url).2, "401");
    assert_eq!(fetch(&["-u", &creds], &url).2, "200");
    let seen = proxy.requests();
    // What the client sent is recorded, before the proxy dropped it.
    assert!(seen.iter().all(|r| r.header("authorization").is_some()));
}

#[test]
fn skopeo_pushes_and_inspects_through_the_proxy_which_records_every_request() {
    if !registry::available() {
        return;
    }
    let (_kiln, archive) = saved_image();
    let registry = Registry::plain();
    let proxy = FaultProxy::start(&registry);
    let digest = registry::push_archive_via(&registry, &proxy.host(), &archive, "app:1");
    let seen = proxy.requests();
    let statuses = |pattern: &str| -> Vec<Option<u16>> {
        seen.iter()
            .filter(|r| r.matches(pattern))
            .map(|r| r.status)
            .collect()
    };
    assert!(statuses("POST /v2/app/blobs/uploads/").contains(&Some(202)));
    assert!(
        statuses("PUT /v2/app/blobs/uploads/")
            .iter()
            .all(|s| *s == Some(201))
    );
    assert_eq!(statuses("PUT /v2/app/manifests/1"), [Some(201)]);
    let raw = registry::skopeo_inspect(&registry, &format!("app@{digest}"), true);
    assert!(raw.status.success(), "{raw:?}");
}

#[test]
fn token_registry_serves_with_a_token_for_the_password_and_refuses_without() {
    if !registry::available() {
        return;
    }
    let (_kiln, archive) = saved_image();
    let registry = Registry::tls_token();
    let tokens = registry.token_server().unwrap();
    let digest = registry::push_archive(&registry, &archive, "team/app:1");
    let inspect = registry::skopeo_inspect(&registry, "team/app:1", false);
    assert!(inspect.status.success(), "{inspect:?}");
    let inspected: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(inspected["Digest"], digest);
    assert!(tokens.issued() >= 2);
    let asked = tokens.requests();
    assert!(asked.iter().all(|r| r.header("authorization").is_some()));
    assert!(
        asked.iter().any(
            |r| r.target.contains("repository%3Ateam%2Fapp%3Apull%2Cpush")
                || r.target.contains("repository:team/app:pull,push")
        ),
        "{asked:?}"
    );

    // The challenge names the token server, service and scope.
    let challenge = ok(registry
        .curl(&["-s", "-D", "-", "-o", "/dev/null"])
        .arg(format!("{}/v2/team/app/manifests/1", registry.url())));
    let expected = format!(
        "Bearer realm=\"{}/token\",service=\"{}\",scope=\"repository:team/app:pull\"",
        tokens.url(),
        registry::SERVICE
    );
    assert!(challenge.contains(&expected), "{challenge}");

    let token_url = format!(
        "{}/token?service={}&scope=repository:team/app:pull",
        tokens.url(),
        registry::SERVICE
    );
    let (user, password) = registry.creds().unwrap();
    let (_, body, status) = fetch(&["-u", &format!("{user}:wrong")], &token_url);
    assert_eq!(status, "401", "{}", String::from_utf8_lossy(&body));
    // An anonymous token grants nothing: the registry still says 401.
    let (_, body, status) = fetch(&[], &token_url);
    assert_eq!(status, "200");
    let anonymous: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let bearer = format!(
        "Authorization: Bearer {}",
        anonymous["token"].as_str().unwrap()
    );
    let manifest = format!("{}/v2/team/app/manifests/1", registry.url());
    assert_eq!(status_with(&registry, &["-H", &bearer], &manifest), "401");
    let (_, body, _) = fetch(&["-u", &format!("{user}:{password}")], &token_url);
    let granted: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let bearer = format!(
        "Authorization: Bearer {}",
        granted["token"].as_str().unwrap()
    );
    assert_eq!(status_with(&registry, &["-H", &bearer], &manifest), "200");
}

#[test]
fn token_server_fails_as_many_times_as_asked() {
    if !registry::available() {
        return;
    }
    let registry = Registry::tls_token();
    let tokens = registry.token_server().unwrap();
    tokens.fail(1);
    let (user, password) = registry.creds().unwrap();
    let url = format!(
        "{}/token?service={}&scope=repository:x:pull",
        tokens.url(),
        registry::SERVICE
    );
    let creds = format!("{user}:{password}");
    let (_, body, status) = fetch(&["-u", &creds], &url);
    assert_eq!(status, "500");
    assert!(String::from_utf8_lossy(&body).contains("injected"));
    assert_eq!(fetch(&["-u", &creds], &url).2, "200");
    assert_eq!(tokens.issued(), 1);
}

/// The HTTP status curl (trusting the registry's CA) got for `url`.
fn status_with(registry: &Registry, args: &[&str], url: &str) -> String {
    ok(registry
        .curl(&["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(args)
        .arg(url))
}

#[test]
fn put_index_makes_a_two_platform_index_that_skopeo_resolves_per_platform() {
    if !registry::available() {
        return;
    }
    let registry = Registry::tls_token();
    let amd = registry.put_image(
        "multi",
        "amd",
        &[common::layer(&[common::Entry::File("which", b"amd64\n")])],
        "linux/amd64",
    );
    let arm = registry.put_image(
        "multi",
        "arm",
        &[common::layer(&[common::Entry::File("which", b"arm64\n")])],
        "linux/arm64/v8",
    );
    assert_ne!(amd.digest, arm.digest);
    let index = registry.put_index("multi", "1", &[&amd, &arm]);
    let raw = registry::skopeo_inspect(&registry, "multi:1", true);
    assert!(raw.status.success(), "{raw:?}");
    assert_eq!(digest_bytes(&raw.stdout).to_string(), index);
    let listed: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(listed["manifests"][1]["platform"]["variant"], "v8");
    for (arch, variant, image) in [("amd64", None, &amd), ("arm64", Some("v8"), &arm)] {
        let mut command = Command::new("skopeo");
        command.args(["inspect", "--override-os", "linux", "--override-arch", arch]);
        if let Some(variant) = variant {
            command.args(["--override-variant", variant]);
        }
        let (user, password) = registry.creds().unwrap();
        let certs = registry.certs_dir().unwrap().join(registry.host());
        let inspected: serde_json::Value = serde_json::from_str(&ok(command
            .arg(format!("--cert-dir={}", certs.display()))
            .arg(format!("--creds={user}:{password}"))
            .arg(format!("docker://{}", registry.reference("multi:1")))))
        .unwrap();
        assert_eq!(inspected["Architecture"], arch);
        let by_digest =
            registry::skopeo_inspect(&registry, &format!("multi@{}", image.digest), true);
        assert_eq!(by_digest.stdout, image.manifest);
    }
}

#[test]
fn proxy_answers_a_response_of_the_tests_choosing_to_get_and_head() {
    if !registry::available() {
        return;
    }
    let registry = Registry::plain();
    let proxy = FaultProxy::start(&registry);
    let big = vec![b' '; 5 << 20];
    let headers = [
        ("Content-Type", registry::OCI_MANIFEST),
        ("Docker-Content-Digest", "sha256:0000"),
    ];
    proxy.respond("/v2/app/manifests/big", 200, &headers, &big, 2);
    let url = format!("{}/v2/app/manifests/big", proxy.url());
    let (code, body, status) = fetch(&[], &url);
    assert_eq!((code, status.as_str(), body.len()), (0, "200", 5 << 20));
    let head = ok(Command::new("curl").args(["-s", "-I", &url]));
    assert!(head.contains("Content-Length: 5242880"), "{head}");
    assert!(
        head.contains("Docker-Content-Digest: sha256:0000"),
        "{head}"
    );
    // Then the registry answers again.
    assert_eq!(fetch(&[], &url).2, "404");
    let faults: Vec<Option<String>> = proxy.requests().into_iter().map(|r| r.fault).collect();
    assert_eq!(
        faults,
        [
            Some("200 with 5242880 bytes".to_owned()),
            Some("200 with 5242880 bytes".to_owned()),
            None
        ]
    );
}
