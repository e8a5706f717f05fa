//! `kiln build --explain` end to end as root: each reason a rebuild gives
//! for a step that ran, word for word, in plain and JSON progress, and
//! `kiln cache ls --inputs`.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test harness fails loudly"
)]

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use common::Kiln;
use common::build::{build_ok, busybox, context};

/// The `(step, reason)` pairs of a plain progress log: each `#N REASON: `
/// line with the name of step N (its header without `[i/n] `).
fn reasons(log: &str) -> Vec<(String, String)> {
    let mut names: HashMap<&str, &str> = HashMap::new();
    let mut out = Vec::new();
    for line in log.lines() {
        let Some((id, rest)) = line.split_once(' ') else {
            continue;
        };
        if let Some(reason) = rest.strip_prefix("REASON: ") {
            let name = names
                .get(id)
                .unwrap_or_else(|| panic!("no step {id} in\n{log}"));
            out.push(((*name).to_owned(), reason.to_owned()));
        } else if rest.starts_with('[')
            && let Some((_, name)) = rest.split_once("] ")
        {
            names.insert(id, name);
        }
    }
    out
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

fn explain(kiln: &Kiln, dir: &Path, extra: &[&str]) -> Vec<(String, String)> {
    let mut args = vec!["--explain"];
    args.extend_from_slice(extra);
    reasons(&build_ok(kiln, dir, "explained:1", &args))
}

const DOCKERFILE: &str =
    "FROM bb:1\nARG VERSION\nRUN echo $VERSION > /version\nRUN echo done > /done\n";

#[test]
fn build_args_text_and_no_cache_are_explained() {
    if !kiln_testkit::root("kiln build mounts overlays") {
        return;
    }
    let kiln = busybox();
    let dir = context(&kiln, "ctx", DOCKERFILE, &[]);
    assert_eq!(
        explain(&kiln, &dir, &["--build-arg", "VERSION=1.2"]),
        pairs(&[
            ("RUN echo 1.2 > /version", "no earlier build of this step"),
            ("RUN echo done > /done", "no earlier build of this step"),
        ])
    );
    // Fully cached: nothing to explain.
    assert_eq!(explain(&kiln, &dir, &["--build-arg", "VERSION=1.2"]), []);
    assert_eq!(
        explain(&kiln, &dir, &["--build-arg", "VERSION=1.3"]),
        pairs(&[
            (
                "RUN echo 1.3 > /version",
                "build arg VERSION changed (1.2 -> 1.3)"
            ),
            // Its own input changed too: both are said.
            (
                "RUN echo done > /done",
                "build arg VERSION changed (1.2 -> 1.3); a previous step ran"
            ),
        ])
    );
    fs::write(
        dir.join("Dockerfile"),
        DOCKERFILE.replace("echo done", "echo finished"),
    )
    .unwrap();
    assert_eq!(
        explain(&kiln, &dir, &["--build-arg", "VERSION=1.3"]),
        pairs(&[("RUN echo finished > /done", "instruction text changed")])
    );
    assert_eq!(
        explain(&kiln, &dir, &["--build-arg", "VERSION=1.3", "--no-cache"]),
        pairs(&[
            ("RUN echo 1.3 > /version", "--no-cache"),
            ("RUN echo finished > /done", "--no-cache"),
        ])
    );
    // Without --explain nothing is said.
    let log = build_ok(&kiln, &dir, "explained:1", &["--no-cache"]);
    assert!(!log.contains("REASON"), "{log}");
}

#[test]
fn a_new_base_image_is_explained_on_from() {
    if !kiln_testkit::root("kiln build mounts overlays") {
        return;
    }
    let kiln = busybox();
    let dir = context(&kiln, "ctx", "FROM bb:1\nRUN echo hi > /hi\n", &[]);
    // Named by image ID, as `kiln images` shows it.
    let image_id = |kiln: &Kiln| {
        let store = kiln_store::Store::open(&kiln.root()).unwrap();
        let digest = store.resolve("bb:1").unwrap().id.to_string();
        format!("sha256:{}..", &digest["sha256:".len()..][..12])
    };
    let before = image_id(&kiln);
    build_ok(&kiln, &dir, "explained:1", &[]);
    // Another bb:1: the same busybox with one more file.
    let rootfs = kiln.path("rootfs");
    fs::write(rootfs.join("etc/extra"), "extra\n").unwrap();
    kiln.ok(&["import", rootfs.to_str().unwrap(), "bb:1"]);
    let after = image_id(&kiln);
    assert_ne!(before, after);
    let reason = format!("base image changed ({before} -> {after})");
    assert_eq!(
        explain(&kiln, &dir, &[]),
        pairs(&[
            ("FROM docker.io/library/bb:1", &reason),
            ("RUN echo hi > /hi", &reason),
        ])
    );
}

#[test]
fn a_copy_names_the_files_that_changed() {
    if !kiln_testkit::root("kiln build mounts overlays") {
        return;
    }
    let kiln = busybox();
    let dir = context(
        &kiln,
        "ctx",
        "FROM bb:1\nCOPY . /src\nRUN ls /src > /list\n",
        &[
            ("src/main.rs", "fn main() {}\n"),
            ("old.txt", "old\n"),
            ("keep.txt", "keep\n"),
        ],
    );
    build_ok(&kiln, &dir, "explained:1", &[]);
    fs::write(dir.join("src/main.rs"), "fn main() { run() }\n").unwrap();
    fs::write(dir.join("README.md"), "# app\n").unwrap();
    fs::remove_file(dir.join("old.txt")).unwrap();
    assert_eq!(
        explain(&kiln, &dir, &[]),
        pairs(&[
            (
                "COPY . /src",
                "3 files changed: README.md (added), old.txt (removed), src/main.rs (content)"
            ),
            ("RUN ls /src > /list", "a previous step ran"),
        ])
    );
    // Twelve new files: ten are named.
    for i in 0..12 {
        fs::write(dir.join(format!("n{i:02}")), "n\n").unwrap();
    }
    assert_eq!(
        explain(&kiln, &dir, &[])[0].1,
        "12 files changed: n00 (added), n01 (added), n02 (added), n03 (added), n04 (added), \
         n05 (added), n06 (added), n07 (added), n08 (added), n09 (added), and 2 more"
    );
    // The listings are the cache's: prune removes them with the records.
    let listings = kiln.root().join("cache/sources");
    assert_eq!(fs::read_dir(&listings).unwrap().count(), 3);
    kiln.ok(&["cache", "prune", "--all", "--force"]);
    assert_eq!(fs::read_dir(&listings).unwrap().count(), 0);
}

#[test]
fn json_progress_carries_the_reason_and_cache_ls_the_inputs() {
    if !kiln_testkit::root("kiln build mounts overlays") {
        return;
    }
    let kiln = busybox();
    let dir = context(&kiln, "ctx", DOCKERFILE, &[]);
    let output = kiln
        .command()
        .args([
            "build",
            "--progress=json",
            "--explain",
            "--build-arg",
            "VERSION=7",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(output.status.success());
    let events: Vec<serde_json::Value> = String::from_utf8(output.stderr)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let explained: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event"] == "step_explained")
        .collect();
    assert_eq!(explained.len(), 2, "{events:#?}");
    assert_eq!(explained[0]["name"], "RUN echo 7 > /version");
    assert_eq!(explained[0]["reason"], "no earlier build of this step");
    let listing = kiln.ok(&["cache", "ls", "--inputs"]);
    assert!(
        listing.contains("  step:   stage 0, step 2: RUN echo $VERSION > /version\n"),
        "{listing}"
    );
    assert!(
        listing.contains(r#""env":[["PATH","#) && listing.contains(r#"["VERSION","7"]"#),
        "{listing}"
    );
    assert!(
        !listing.contains(kiln.root().to_str().unwrap()),
        "{listing}"
    );
}
