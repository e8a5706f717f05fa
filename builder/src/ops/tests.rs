use serde_json::json;

use super::*;

#[test]
fn canonical_json_sorts_keys_at_every_level_and_has_no_whitespace() {
    let value = json!({"b": 1, "a": {"d": [true, null, "x\n"], "c": "é"}});
    assert_eq!(
        canonical_json(&value),
        r#"{"a":{"c":"é","d":[true,null,"x\n"]},"b":1}"#
    );
}

#[test]
fn the_key_is_the_digest_of_the_version_tag_and_the_canonical_form() {
    let op = Op::Mkdir(MkdirOp {
        parent: "scratch".to_owned(),
        path: "/app".to_owned(),
        user: String::new(),
    });
    let canonical = op.canonical().unwrap();
    assert_eq!(
        canonical,
        r#"{"op":"mkdir","parent":"scratch","path":"/app","user":""}"#
    );
    let expected = digest_bytes(format!("kiln-op-v3\n{canonical}").as_bytes());
    assert_eq!(op.key().unwrap(), expected.to_string());
}

#[test]
fn a_secret_is_keyed_by_its_id_and_where_it_goes_only() {
    let mount = MountInput::Secret {
        id: "token".to_owned(),
        target: Some("/run/secrets/token".to_owned()),
        env: None,
    };
    assert_eq!(
        canonical_json(&serde_json::to_value(&mount).unwrap()),
        r#"{"env":null,"id":"token","target":"/run/secrets/token","type":"secret"}"#
    );
}

#[test]
fn operations_round_trip_through_their_serialisation() {
    let op = Op::Run(RunOp {
        parent: "sha256:aa".to_owned(),
        argv: vec!["/bin/sh".to_owned(), "-c".to_owned(), "make".to_owned()],
        script: None,
        env: vec![("PATH".to_owned(), "/bin".to_owned())],
        user: String::new(),
        workdir: "/".to_owned(),
        network: "isolated".to_owned(),
        security: "sandbox".to_owned(),
        mounts: vec![MountInput::Tmpfs {
            target: "/tmp".to_owned(),
            size: Some(1024),
        }],
        platform: "linux/amd64".to_owned(),
    });
    let back: Op = serde_json::from_str(&op.canonical().unwrap()).unwrap();
    assert_eq!(back, op);
    assert_eq!(back.key().unwrap(), op.key().unwrap());
}
