use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use super::{Credential, CredentialStore, DOCKER_HUB_SERVER, server_address};

fn password(user: &str, secret: &str) -> Credential {
    Credential {
        username: user.to_owned(),
        secret: secret.to_owned(),
        identity_token: false,
    }
}

/// A helper program `docker-credential-<name>` in `dir` that keeps its
/// credentials as files named after the server (Docker's protocol).
fn fake_helper(dir: &Path, name: &str) {
    let store = dir.join(format!("{name}-data"));
    fs::create_dir_all(&store).unwrap();
    let script = format!(
        r#"#!/bin/sh
store={store}
read -r input
key=$(printf %s "$input" | sed -e 's/"ServerURL":"\([^"]*\)".*/\1/' -e 's/^{{//' | tr '/:' '__')
case "$1" in
get) f=$store/$(printf %s "$input" | tr '/:' '__')
     if [ -f "$f" ]; then cat "$f"; else echo "credentials not found in native keychain"; exit 1; fi ;;
store) printf %s "$input" > "$store/$key" ;;
erase) f=$store/$(printf %s "$input" | tr '/:' '__')
     if [ -f "$f" ]; then rm "$f"; else echo "credentials not found in native keychain"; exit 1; fi ;;
esac
"#,
        store = store.display()
    );
    let path = dir.join(format!("docker-credential-{name}"));
    fs::write(&path, script).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn docker_hub_and_other_hosts_are_keyed_as_docker_keys_them() {
    assert_eq!(server_address("docker.io"), DOCKER_HUB_SERVER);
    assert_eq!(server_address("index.docker.io"), DOCKER_HUB_SERVER);
    assert_eq!(server_address("registry-1.docker.io"), DOCKER_HUB_SERVER);
    assert_eq!(server_address("localhost:5000"), "localhost:5000");
    assert_eq!(server_address("https://ghcr.io/v2/"), "ghcr.io");
}

#[test]
fn entries_written_by_docker_are_read_for_their_own_host_only() {
    let dir = tempfile::tempdir().unwrap();
    // As `docker login` writes them: base64 user:password, Docker Hub's
    // URL key, a scheme-and-path key, an identity token.
    fs::write(
        dir.path().join("config.json"),
        r#"{
  "auths": {
    "https://index.docker.io/v1/": {"auth": "aHViOmh1YnBhc3M="},
    "https://reg.example:5000/v2/": {"auth": "dTpwOndpdGg6Y29sb25z"},
    "tok.example": {"auth": "am9objo=", "identitytoken": "refresh-me"}
  },
  "HttpHeaders": {"User-Agent": "kept"}
}"#,
    )
    .unwrap();
    let store = CredentialStore::in_dir(dir.path(), None);
    assert_eq!(
        store.lookup("docker.io").unwrap(),
        Some(password("hub", "hubpass"))
    );
    // The password may hold colons: only the first one separates.
    assert_eq!(
        store.lookup("reg.example:5000").unwrap(),
        Some(password("u", "p:with:colons"))
    );
    assert_eq!(
        store.lookup("tok.example").unwrap(),
        Some(Credential {
            username: "john".to_owned(),
            secret: "refresh-me".to_owned(),
            identity_token: true,
        })
    );
    // Another port, another host, a suffix: nothing.
    assert_eq!(store.lookup("reg.example").unwrap(), None);
    assert_eq!(store.lookup("reg.example:5001").unwrap(), None);
    assert_eq!(store.lookup("evil.reg.example:5000").unwrap(), None);
}

#[test]
fn login_and_logout_rewrite_the_file_keeping_what_kiln_does_not_know() {
    let dir = tempfile::tempdir().unwrap();
    let docker = dir.path().join("docker");
    fs::create_dir(&docker).unwrap();
    fs::write(
        docker.join("config.json"),
        r#"{"auths": {"http://localhost:5000": {"auth": "b2xkOm9sZA=="}}, "psFormat": "table {{.ID}}"}"#,
    )
    .unwrap();
    let store = CredentialStore::in_dir(&docker, None);
    store
        .store("localhost:5000", &password("new", "s3cret"))
        .unwrap();
    let text = fs::read_to_string(docker.join("config.json")).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    // The old spelling of the same host is replaced, not kept beside.
    assert_eq!(
        value["auths"],
        serde_json::json!({"localhost:5000": {"auth": "bmV3OnMzY3JldA=="}})
    );
    assert_eq!(value["psFormat"], "table {{.ID}}");
    let mode = fs::metadata(docker.join("config.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        store.lookup("localhost:5000").unwrap(),
        Some(password("new", "s3cret"))
    );
    assert!(store.erase("localhost:5000").unwrap());
    assert!(!store.erase("localhost:5000").unwrap());
    assert_eq!(store.lookup("localhost:5000").unwrap(), None);
    let value: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(docker.join("config.json")).unwrap()).unwrap();
    assert_eq!(value["psFormat"], "table {{.ID}}");

    // A store that does not exist yet is made, closed to others.
    let fresh = CredentialStore::in_dir(&dir.path().join("new/.docker"), None);
    fresh.store("docker.io", &password("a", "b")).unwrap();
    let mode = fs::metadata(dir.path().join("new/.docker"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    assert!(
        fs::read_to_string(fresh.path())
            .unwrap()
            .contains(DOCKER_HUB_SERVER)
    );
}

#[test]
fn helpers_hold_the_secrets_when_the_config_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).unwrap();
    fake_helper(&bin, "kilntest");
    fake_helper(&bin, "other");
    fs::write(
        dir.path().join("config.json"),
        r#"{"credsStore": "kilntest", "credHelpers": {"special.example": "other"}}"#,
    )
    .unwrap();
    let store = CredentialStore::in_dir(dir.path(), Some(&bin));
    assert_eq!(store.lookup("localhost:5000").unwrap(), None);
    store
        .store("localhost:5000", &password("u", "in-helper"))
        .unwrap();
    store
        .store("special.example", &password("v", "in-other"))
        .unwrap();
    assert_eq!(
        store.lookup("localhost:5000").unwrap(),
        Some(password("u", "in-helper"))
    );
    assert_eq!(
        store.lookup("special.example").unwrap(),
        Some(password("v", "in-other"))
    );
    // Each helper got its own registry's secret only.
    assert_eq!(fs::read_dir(bin.join("kilntest-data")).unwrap().count(), 1);
    assert_eq!(fs::read_dir(bin.join("other-data")).unwrap().count(), 1);
    // The file records the logins, not the secrets.
    let text = fs::read_to_string(dir.path().join("config.json")).unwrap();
    assert!(
        !text.contains("in-helper") && !text.contains("in-other"),
        "{text}"
    );
    assert!(store.erase("localhost:5000").unwrap());
    assert_eq!(store.lookup("localhost:5000").unwrap(), None);
}

#[test]
fn broken_configs_and_helpers_are_errors_that_name_them_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    let store = CredentialStore::in_dir(dir.path(), Some(dir.path()));
    fs::write(
        &config,
        r#"{"auths": {"h": {"auth": "secret-not-base64!"}}}"#,
    )
    .unwrap();
    let err = store.lookup("h").unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}: invalid Docker configuration: an auths entry's auth is not base64 of user:password",
            config.display()
        )
    );
    fs::write(&config, r#"{"auths": ["not", "a", "map"]}"#).unwrap();
    let err = store.lookup("h").unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "{}: invalid Docker configuration: ",
            config.display()
        )),
        "{err}"
    );
    fs::write(&config, r#"{"credsStore": "missing"}"#).unwrap();
    let err = store.lookup("h").unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "credential helper docker-credential-missing (get h): cannot run {}/docker-credential-missing: ",
            dir.path().display()
        )),
        "{err}"
    );
    // A helper name cannot leave the helper directory.
    fs::write(&config, r#"{"credsStore": "../../bin/sh"}"#).unwrap();
    let err = store.lookup("h").unwrap_err().to_string();
    assert_eq!(
        err,
        "credential helper docker-credential-../../bin/sh (get h): not a helper name"
    );
    // Debug output hides the secret.
    let shown = format!("{:?}", password("u", "hunter2"));
    assert!(!shown.contains("hunter2"), "{shown}");
}
