//! `kiln diff` and `kiln layers` end to end: images loaded from archives
//! written here (no root needed) and images built twice from one
//! Dockerfile (root, as every build test).
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::fs;

use common::build::{build_ok, busybox, context};
use common::{Entry, Kiln, layer, oci_archive};
use serde_json::Value;

/// Loads an image made of `layers` as `reference`.
fn load(kiln: &Kiln, reference: &str, layers: &[Vec<u8>]) {
    let file = kiln.path(&format!("{}.tar", reference.replace(':', "_")));
    fs::write(&file, oci_archive(reference, layers)).unwrap();
    kiln.ok(&["load", "-q", "-i", file.to_str().unwrap()]);
}

/// The base layer both images of [`two_images`] share.
fn base_layer() -> Vec<u8> {
    layer(&[
        Entry::Dir("bin"),
        Entry::FileMode("bin/tool", b"#!/bin/sh\n", 0o644),
        Entry::Dir("etc"),
        Entry::File("etc/app.conf", b"twelve bytes"),
        Entry::File("old.txt", b"old\n"),
        Entry::Symlink("l", "/a"),
    ])
}

/// `a:1` (the base layer) and `b:1` (the base layer and one that adds a
/// file, removes one, changes a mode, a content and a symlink target).
fn two_images() -> Kiln {
    let kiln = Kiln::new();
    load(&kiln, "a:1", &[base_layer()]);
    let top = layer(&[
        Entry::FileMode("bin/tool", b"#!/bin/sh\n", 0o755),
        Entry::Dir("etc"),
        Entry::File("etc/app.conf", b"forty bytes of configuration, not twelve"),
        Entry::File(".wh.old.txt", b""),
        Entry::Symlink("l", "/b"),
        Entry::File("new.txt", b"new\n"),
    ]);
    load(&kiln, "b:1", &[base_layer(), top]);
    kiln
}

const EXPECTED: &str = "\
C /bin/tool (mode 0644 -> 0755)
C /etc/app.conf (content, 12B -> 40B)
C /l (link /a -> /b)
A /new.txt
D /old.txt
1 added, 1 removed, 3 changed; content 26B -> 54B (+28 bytes)
";

#[test]
fn diff_names_each_added_removed_and_changed_file() {
    let kiln = two_images();
    assert_eq!(kiln.ok(&["diff", "a:1", "b:1"]), EXPECTED);
}

#[test]
fn diff_json_holds_the_same_changes() {
    let kiln = two_images();
    let out = kiln.ok(&["diff", "--format", "json", "a:1", "b:1"]);
    let document: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(document["identical"], false);
    assert_eq!(document["image1"]["name"], "a:1");
    assert_eq!(document["shared_layers"], 1);
    let summary = &document["summary"];
    assert_eq!(
        (
            &summary["added"],
            &summary["removed"],
            &summary["changed"],
            &summary["size_before"],
            &summary["size_after"],
            &summary["size_delta"]
        ),
        (
            &Value::from(1),
            &Value::from(1),
            &Value::from(3),
            &Value::from(26),
            &Value::from(54),
            &Value::from(28)
        )
    );
    let changes: Vec<(String, String, String)> = document["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let fields: Vec<&str> = c["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap())
                .collect();
            (
                c["status"].as_str().unwrap().to_owned(),
                c["path"].as_str().unwrap().to_owned(),
                fields.join(","),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("changed", "/bin/tool", "mode"),
        ("changed", "/etc/app.conf", "content"),
        ("changed", "/l", "link"),
        ("added", "/new.txt", ""),
        ("removed", "/old.txt", ""),
    ]
    .iter()
    .map(|(s, p, f)| ((*s).to_owned(), (*p).to_owned(), (*f).to_owned()))
    .collect();
    assert_eq!(changes, expected);
    let tool = &document["changes"][0];
    assert_eq!(tool["before"]["mode"], "0644");
    assert_eq!(tool["after"]["mode"], "0755");
    assert_eq!(tool["after"]["type"], "file");
    let conf = &document["changes"][1];
    assert_eq!(conf["before"]["size"], 12);
    assert_eq!(conf["after"]["size"], 40);
    assert_eq!(
        conf["after"]["digest"],
        kiln_store::digest::digest_bytes(b"forty bytes of configuration, not twelve").to_string()
    );
    let link = &document["changes"][2];
    assert_eq!(
        (&link["before"]["link"], &link["after"]["link"]),
        (&Value::from("/a"), &Value::from("/b"))
    );
    assert_eq!(document["changes"][3]["before"], Value::Null);
    assert_eq!(document["changes"][4]["after"], Value::Null);
    assert!(document.get("layers").is_none());
}

#[test]
fn diff_layers_shows_shared_layers_and_what_the_others_do() {
    let kiln = two_images();
    let out = kiln.ok(&["diff", "--layers", "a:1", "b:1"]);
    let base = kiln_store::digest::digest_bytes(&base_layer()).encoded()[..12].to_owned();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("layer 1 sha256:{base}: shared"));
    assert!(
        lines[1].starts_with("layer 2 sha256:")
            && lines[1]
                .ends_with(": 1 added, 1 removed, 3 changed; content 26B -> 54B (+28 bytes)"),
        "{out}"
    );
    assert_eq!(
        lines[2..].join("\n"),
        "  C /bin/tool (mode 0644 -> 0755)
  C /etc/app.conf (content, 12B -> 40B)
  C /l (link /a -> /b)
  A /new.txt
  D /old.txt
1 added, 1 removed, 3 changed; content 26B -> 54B (+28 bytes)"
    );
    // The other way round: b's top layer is b's only, a adds nothing.
    let out = kiln.ok(&["diff", "--layers", "--format", "json", "b:1", "a:1"]);
    let document: Value = serde_json::from_str(&out).unwrap();
    let layers = document["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0]["shared"], true);
    assert_eq!(layers[0]["changes"], Value::Array(Vec::new()));
    assert_eq!(document["image1_only_layers"][0]["layer"], 2);
    assert_eq!(document["summary"]["removed"], 1);
}

#[test]
fn identical_images_have_no_differences() {
    let kiln = two_images();
    assert_eq!(
        kiln.ok(&["diff", "a:1", "a:1"]),
        "no differences between a:1 and a:1\n"
    );
    // Another image (another config) with the same files.
    load(
        &kiln,
        "same:1",
        &[base_layer(), layer(&[Entry::Dir("etc")])],
    );
    let output = kiln.run(&["diff", "a:1", "same:1"]);
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "no differences between a:1 and same:1\n"
    );
    let document: Value =
        serde_json::from_str(&kiln.ok(&["diff", "--format", "json", "a:1", "same:1"])).unwrap();
    assert_eq!(document["identical"], true);
    assert_eq!(document["changes"], Value::Array(Vec::new()));
}

#[test]
fn a_missing_image_is_named() {
    let kiln = two_images();
    assert_eq!(
        kiln.fails(&["diff", "a:1", "nothere:1"]),
        "error: no such image: nothere:1\n"
    );
    assert_eq!(
        kiln.fails(&["diff", "nothere", "a:1"]),
        "error: no such image: nothere\n"
    );
    assert_eq!(
        kiln.fails(&["layers", "nothere:2"]),
        "error: no such image: nothere:2\n"
    );
}

/// A layer that writes `/big` (10 MiB) and a later one that deletes it.
const TEN_MIB: u64 = 10 * 1024 * 1024;

#[test]
fn layers_reports_ten_mib_written_then_deleted_as_wasted() {
    let kiln = Kiln::new();
    let mib = usize::try_from(TEN_MIB).unwrap();
    load(
        &kiln,
        "waste:1",
        &[
            layer(&[
                Entry::File("keep", &vec![1u8; mib]),
                Entry::File("small", b"x"),
            ]),
            layer(&[Entry::File("big", &vec![0u8; mib])]),
            layer(&[Entry::File(".wh.big", b"")]),
        ],
    );
    let out = kiln.ok(&["layers", "waste:1"]);
    assert!(
        out.ends_with(
            "\nTotal: 21MB (20971521 bytes), wasted: 10.5MB (10485760 bytes), efficiency: 50.00%\n"
        ),
        "{out}"
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..4],
        [
            "LAYER     SIZE      WASTED    ENTRIES   CREATED BY",
            "1         10.5MB    0B        2         ",
            "2         10.5MB    10.5MB    1         ",
            "3         0B        0B        1         ",
        ]
    );
    assert!(
        out.contains("\n2         10.5MB    /big (wasted)\n"),
        "{out}"
    );
    let document: Value =
        serde_json::from_str(&kiln.ok(&["layers", "--format", "json", "--top", "1", "waste:1"]))
            .unwrap();
    assert_eq!(document["wasted"], TEN_MIB);
    assert_eq!(document["total"], 2 * TEN_MIB + 1);
    let efficiency = document["efficiency"].as_f64().unwrap();
    #[expect(clippy::cast_precision_loss, reason = "test figures are small")]
    let expected = 1.0 - TEN_MIB as f64 / (2 * TEN_MIB + 1) as f64;
    assert!((efficiency - expected).abs() < 1e-12, "{efficiency}");
    assert_eq!(document["layers"][1]["wasted"], TEN_MIB);
    assert_eq!(document["layers"][1]["largest"][0]["path"], "/big");
    assert_eq!(document["layers"][1]["largest"][0]["wasted"], true);
    assert_eq!(
        document["layers"][0]["largest"].as_array().unwrap().len(),
        1
    );
    assert_eq!(document["layers"][0]["largest"][0]["path"], "/keep");
}

#[test]
fn two_builds_of_one_dockerfile_differ_by_what_changed() {
    let kiln = busybox();
    let dockerfile = "FROM bb:1
ARG V=1
COPY app.conf /etc/app.conf
RUN ln -s /target$V /link && if [ \"$V\" = 2 ]; then rm /opt/old; chmod 755 /etc/base-file; echo hi > /added; fi
";
    let one = context(&kiln, "one", dockerfile, &[("app.conf", "twelve bytes")]);
    build_ok(&kiln, &one, "app:1", &[]);
    let two = context(
        &kiln,
        "two",
        dockerfile,
        &[("app.conf", "forty bytes of configuration, not twelve")],
    );
    build_ok(&kiln, &two, "app:2", &["--build-arg", "V=2"]);
    let out = kiln.ok(&["diff", "app:1", "app:2"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..lines.len() - 1],
        [
            "A /added",
            "C /etc/app.conf (content, 12B -> 40B)",
            "C /etc/base-file (mode 0644 -> 0755)",
            "C /link (link /target1 -> /target2)",
            "D /opt/old",
        ],
        "{out}"
    );
    assert!(
        lines[lines.len() - 1].starts_with("1 added, 1 removed, 3 changed; content "),
        "{out}"
    );
    let document: Value =
        serde_json::from_str(&kiln.ok(&["diff", "--format", "json", "app:1", "app:2"])).unwrap();
    let paths: Vec<&str> = document["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/added",
            "/etc/app.conf",
            "/etc/base-file",
            "/link",
            "/opt/old"
        ]
    );
    // The same build twice: nothing differs, however the mtimes do.
    build_ok(&kiln, &one, "app:1b", &["--no-cache"]);
    assert_eq!(
        kiln.ok(&["diff", "app:1", "app:1b"]),
        "no differences between app:1 and app:1b\n"
    );
}

#[test]
fn a_build_that_writes_then_deletes_ten_mib_wastes_them() {
    let kiln = busybox();
    let dir = context(
        &kiln,
        "waste",
        "FROM bb:1\nRUN head -c 10485760 /dev/zero > /big\nRUN rm /big\n",
        &[],
    );
    build_ok(&kiln, &dir, "waste:1", &[]);
    let document: Value =
        serde_json::from_str(&kiln.ok(&["layers", "--format", "json", "waste:1"])).unwrap();
    assert_eq!(document["wasted"], TEN_MIB);
    let layers = document["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    assert_eq!(layers[1]["wasted"], TEN_MIB);
    assert_eq!(layers[1]["largest"][0]["path"], "/big");
    assert_eq!(
        layers[1]["created_by"],
        "RUN /bin/sh -c head -c 10485760 /dev/zero > /big # buildkit"
    );
    let total = document["total"].as_u64().unwrap();
    #[expect(clippy::cast_precision_loss, reason = "test figures are small")]
    let expected = 1.0 - TEN_MIB as f64 / total as f64;
    assert!((document["efficiency"].as_f64().unwrap() - expected).abs() < 1e-12);
    let out = kiln.ok(&["layers", "waste:1"]);
    assert!(
        out.contains(", wasted: 10.5MB (10485760 bytes), efficiency: "),
        "{out}"
    );
}
