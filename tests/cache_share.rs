//! `kiln build --cache-to` and `--cache-from`: a cache one store pushes to
//! a loopback registry (or writes to a directory) answers every step of a
//! build on an empty store, which fetches only the layers the image
//! needs; `mode=min` and `mode=max`; a tampered cache is refused and the
//! step runs.
#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::path::Path;

use common::Kiln;
use common::build::{busybox, context, sh};
use common::registry::{self, FaultProxy, Registry};

/// A builder stage that writes a large file and a small one; the final
/// stage copies only the small one.
const DOCKERFILE: &str = "FROM bb:1 AS builder\n\
    RUN head -c 300000 /dev/urandom > /big && echo built > /out\n\
    FROM bb:1\n\
    COPY --from=builder /out /out\n\
    RUN cat /out > /seen\n";

/// As [`DOCKERFILE`], with final-stage layers too large for the records
/// to carry: they are blobs of their own in the cache.
const DOCKERFILE_BLOBS: &str = "FROM bb:1 AS builder\n\
    RUN head -c 300000 /dev/urandom > /big && head -c 40000 /dev/urandom > /out\n\
    FROM bb:1\n\
    COPY --from=builder /out /out\n\
    RUN cat /out > /seen && echo built > /note\n";

/// How many layers the records document `records` carries (OCI 1.1
/// `data` in their descriptors), each checked against its digest.
fn carried(records: &serde_json::Value) -> usize {
    use base64::Engine as _;
    let mut seen = std::collections::BTreeSet::new();
    for record in records["records"].as_array().unwrap() {
        let descriptor = &record["layer"]["descriptor"];
        if let Some(data) = descriptor["data"].as_str() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap();
            assert_eq!(bytes.len() as u64, descriptor["size"].as_u64().unwrap());
            assert_eq!(
                kiln_store::digest::digest_bytes(&bytes).to_string(),
                descriptor["digest"].as_str().unwrap()
            );
            seen.insert(descriptor["digest"].as_str().unwrap().to_owned());
        }
    }
    seen.len()
}

/// An empty store with `a`'s base image, as another CI runner pulls the
/// same base (an import would make another image).
fn runner_like(a: &Kiln) -> Kiln {
    let archive = a.path("bb.tar");
    if !archive.exists() {
        a.ok(&["save", "-o", archive.to_str().unwrap(), "bb:1"]);
    }
    let b = Kiln::new();
    b.ok(&["load", "-i", archive.to_str().unwrap()]);
    b
}

/// Builds `dir` with `SOURCE_DATE_EPOCH` (so that two stores make the same
/// image ID) and `extra`; returns the image ID and stderr.
fn build(kiln: &Kiln, dir: &Path, extra: &[&str]) -> (String, String) {
    let iid = kiln.path("iid");
    let output = kiln
        .command()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("DOCKER_CONFIG", kiln.path("docker-config"))
        .env("KILN_CERTS_DIR", kiln.path("no-certs"))
        .args([
            "build",
            "--progress=plain",
            "--iidfile",
            iid.to_str().unwrap(),
        ])
        .args(extra)
        .arg(dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "build {extra:?} failed:\n{stderr}");
    (std::fs::read_to_string(iid).unwrap(), stderr)
}

#[test]
fn a_cache_pushed_to_a_registry_answers_every_step_on_an_empty_store_fetching_only_the_image_layers()
 {
    if !kiln_testkit::root("kiln build mounts overlays") || !registry::available() {
        return;
    }
    let registry = Registry::plain();
    let proxy = FaultProxy::start(&registry);
    let cache = format!("{}/cache/app:build", proxy.host());
    let a = busybox();
    let dir = context(&a, "ctx", DOCKERFILE, &[]);
    let to = format!("type=registry,ref={cache},mode=max");
    let (first, stderr) = build(&a, &dir, &["-t", "app:1", "--cache-to", &to]);
    assert!(stderr.contains("3 steps run, 0 cached"), "{stderr}");
    // The artifact: an index naming a manifest of three layers (the
    // builder's, the COPY's and the last RUN's) and the records.
    let index: serde_json::Value = serde_json::from_slice(
        &registry
            .curl(&[
                "-H",
                "Accept: application/vnd.oci.image.index.v1+json",
                &format!("{}/v2/cache/app/manifests/build", registry.url()),
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let entry = &index["manifests"][0];
    assert_eq!(entry["artifactType"], "application/vnd.kiln.build-cache.v1");
    let manifest: serde_json::Value = serde_json::from_slice(
        &registry
            .curl(&[
                "-H",
                "Accept: application/vnd.oci.image.manifest.v1+json",
                &format!(
                    "{}/v2/cache/app/manifests/{}",
                    registry.url(),
                    entry["digest"].as_str().unwrap()
                ),
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    // One layer blob, the builder's large one; the COPY's and the last
    // RUN's are small, and the records carry them.
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    // Compressed with zstd on the way out (the store keeps them plain).
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let big = layers[0]["digest"].as_str().unwrap().to_owned();
    let records: serde_json::Value = serde_json::from_slice(
        &registry
            .curl(&[&format!(
                "{}/v2/cache/app/blobs/{}",
                registry.url(),
                manifest["config"]["digest"].as_str().unwrap()
            )])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(carried(&records), 2, "{records}");

    let b = runner_like(&a);
    let before = proxy.requests().len();
    let from = format!("type=registry,ref={cache}");
    let (second, stderr) = build(&b, &dir, &["-t", "app:1", "--cache-from", &from]);
    assert!(stderr.contains("0 steps run, 3 cached"), "{stderr}");
    assert_eq!(second, first, "the same image ID on the other store");
    assert_eq!(sh(&b, "app:1", "cat /seen"), "built\n");
    let fetched: Vec<String> = proxy.requests()[before..]
        .iter()
        .filter(|r| r.method == "GET" && r.target.contains("/blobs/"))
        .map(|r| r.target.clone())
        .collect();
    // The records, which carry the two layers the image has beyond its
    // base; the builder's large layer is never fetched.
    assert_eq!(fetched.len(), 1, "{fetched:?}");
    assert!(!fetched.iter().any(|t| t.contains(&big)), "{fetched:?}");
}

#[test]
fn a_local_cache_in_mode_max_restores_another_stage_and_mode_min_does_not() {
    if !kiln_testkit::root("kiln build mounts overlays") {
        return;
    }
    let a = busybox();
    let dir = context(&a, "ctx", DOCKERFILE, &[]);
    let min = a.path("cache-min");
    let max = a.path("cache-max");
    let (first, _) = build(
        &a,
        &dir,
        &[
            "-t",
            "app:1",
            "--cache-to",
            &format!("type=local,dest={}", min.display()),
            "--cache-to",
            &format!(
                "type=local,dest={},mode=max,compression=uncompressed",
                max.display()
            ),
        ],
    );
    for layout in [&min, &max] {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        assert_eq!(
            index["manifests"][0]["artifactType"],
            "application/vnd.kiln.build-cache.v1"
        );
        assert_eq!(
            std::fs::read_to_string(layout.join("oci-layout")).unwrap(),
            r#"{"imageLayoutVersion":"1.0.0"}"#
        );
    }
    // The final image from mode=max: nothing runs. From mode=min the
    // builder stage's step runs (kiln builds every stage the target
    // needs), and the final stage's steps are cached: its COPY --from is
    // keyed by the content it copies, which is the same.
    for (layout, summary) in [
        (&max, "0 steps run, 3 cached"),
        (&min, "1 step run, 2 cached"),
    ] {
        let b = runner_like(&a);
        let from = format!("type=local,src={}", layout.display());
        let (id, stderr) = build(&b, &dir, &["-t", "app:1", "--cache-from", &from]);
        assert!(stderr.contains(summary), "{stderr}");
        assert_eq!(id, first);
    }
    // The builder stage alone: only mode=max has its step.
    let b = runner_like(&a);
    let from = format!("type=local,src={}", max.display());
    let (_, stderr) = build(&b, &dir, &["--target", "builder", "--cache-from", &from]);
    assert!(stderr.contains("0 steps run, 1 cached"), "{stderr}");
    let c = runner_like(&a);
    let from = format!("type=local,src={}", min.display());
    let (_, stderr) = build(&c, &dir, &["--target", "builder", "--cache-from", &from]);
    assert!(stderr.contains("1 step run, 0 cached"), "{stderr}");
}

/// Rewrites the cache layout `layout` through `edit` (its manifest and
/// records, and a way to add a blob: its digest and size), keeping every
/// digest consistent: only the checks on what the records claim can
/// tell.
fn rewrite_layout(
    layout: &Path,
    edit: impl FnOnce(&mut serde_json::Value, &mut serde_json::Value, &dyn Fn(&[u8]) -> (String, usize)),
) {
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let read = |p: std::path::PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let add = |bytes: &[u8]| {
        let digest = kiln_store::digest::digest_bytes(bytes).to_string();
        std::fs::write(blob(&digest), bytes).unwrap();
        (digest, bytes.len())
    };
    let mut index = read(layout.join("index.json"));
    let mut manifest = read(blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let mut records = read(blob(manifest["config"]["digest"].as_str().unwrap()));
    edit(&mut manifest, &mut records, &add);
    let (digest, size) = add(&serde_json::to_vec(&records).unwrap());
    manifest["config"]["digest"] = digest.into();
    manifest["config"]["size"] = size.into();
    let (digest, size) = add(&serde_json::to_vec(&manifest).unwrap());
    index["manifests"][0]["digest"] = digest.into();
    index["manifests"][0]["size"] = size.into();
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

#[test]
fn a_tampered_record_is_refused_with_a_warning_and_its_step_runs() {
    if !kiln_testkit::root("kiln build mounts overlays") {
        return;
    }
    let a = busybox();
    let dir = context(&a, "ctx", DOCKERFILE, &[]);
    let layout = a.path("cache");
    let to = format!("type=local,dest={},mode=max", layout.display());
    let (first, _) = build(&a, &dir, &["-t", "app:1", "--cache-to", &to]);
    // Rewrite the records so that the last RUN's claims another command.
    rewrite_layout(&layout, |_, records, _| {
        for record in records["records"].as_array_mut().unwrap() {
            let description = record["description"].as_str().unwrap().to_owned();
            if description.contains("cat /out") {
                record["inputs"]["argv"][2] = "echo pwned > /seen".into();
            }
            // A carried layer with other bytes under the same digest.
            if description == "COPY /out /out # buildkit" {
                use base64::Engine as _;
                let descriptor = &mut record["layer"]["descriptor"];
                let engine = base64::engine::general_purpose::STANDARD;
                let mut bytes = engine.decode(descriptor["data"].as_str().unwrap()).unwrap();
                let last = bytes.len() - 1;
                bytes[last] ^= 1;
                descriptor["data"] = engine.encode(&bytes).into();
            }
        }
    });

    let b = runner_like(&a);
    let from = format!("type=local,src={}", layout.display());
    let (id, stderr) = build(&b, &dir, &["-t", "app:1", "--cache-from", &from]);
    assert!(
        stderr.contains(
            "(RUN /bin/sh -c cat /out > /seen # buildkit) refused: its key is not its operation's"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("(COPY /out /out # buildkit) refused: the layer it carries does not match its digest sha256:"),
        "{stderr}"
    );
    assert!(stderr.contains("2 steps run, 1 cached"), "{stderr}");
    assert_eq!(id, first);
    assert_eq!(sh(&b, "app:1", "cat /seen"), "built\n");
}

#[test]
fn a_missing_cache_is_a_warning_and_bad_values_fail_before_the_build() {
    if !kiln_testkit::root("kiln build mounts overlays") {
        return;
    }
    let a = busybox();
    let dir = context(&a, "ctx", DOCKERFILE, &[]);
    let missing = a.path("no-cache-here");
    let from = format!("type=local,src={}", missing.display());
    let (_, stderr) = build(&a, &dir, &["--cache-from", &from]);
    assert!(
        stderr.contains(&format!(
            "WARNING: build cache {}: not found, nothing imported",
            missing.display()
        )),
        "{stderr}"
    );
    let out = a
        .command()
        .args(["build", "--cache-to", "type=local", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: invalid --cache-to \"type=local\": missing dest=DIR\n"
    );
}

#[test]
fn an_inline_cache_in_a_pushed_image_answers_the_steps_of_another_store() {
    if !kiln_testkit::root("kiln build mounts overlays") || !registry::available() {
        return;
    }
    let registry = Registry::plain();
    let image = registry.reference("app:inline");
    let a = busybox();
    let dir = context(
        &a,
        "ctx",
        "FROM bb:1\nRUN echo one > /one\nCOPY f /f\nRUN cat /one /f > /both\n",
        &[("f", "file\n")],
    );
    let (_, stderr) = build(
        &a,
        &dir,
        &["-t", &image, "--push", "--cache-to", "type=inline"],
    );
    assert!(stderr.contains("3 steps run, 0 cached"), "{stderr}");
    // The records ride in the pushed image's config.
    let inspected = std::process::Command::new("skopeo")
        .args(["inspect", "--config", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{image}"))
        .output()
        .unwrap();
    let config: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
    let records = config["kiln.build-cache.v1"]["records"].as_array().unwrap();
    assert_eq!(records.len(), 3, "{config}");

    let b = runner_like(&a);
    let (_, stderr) = build(&b, &dir, &["-t", "app:1", "--cache-from", &image]);
    assert!(stderr.contains("0 steps run, 3 cached"), "{stderr}");
    assert_eq!(sh(&b, "app:1", "cat /both"), "one\nfile\n");
    // Built without type=inline: no records in the config.
    let out = b.ok(&["inspect", "app:1"]);
    assert!(!out.contains("kiln.build-cache.v1"), "{out}");
}

/// Runs kiln with `build`'s registry environment; returns stdout.
fn kiln_ok(kiln: &Kiln, args: &[&str]) -> String {
    let output = kiln
        .command()
        .env("DOCKER_CONFIG", kiln.path("docker-config"))
        .env("KILN_CERTS_DIR", kiln.path("no-certs"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kiln {args:?} failed:\n{stderr}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn a_push_only_build_from_a_cache_mounts_its_layers_in_the_registry_without_fetching_them() {
    if !kiln_testkit::root("kiln build mounts overlays") || !registry::available() {
        return;
    }
    let registry = Registry::plain();
    let proxy = FaultProxy::start(&registry);
    let cache = format!("{}/cache/app:build", proxy.host());
    let a = busybox();
    let dir = context(&a, "ctx", DOCKERFILE_BLOBS, &[]);
    let to = format!("type=registry,ref={cache},mode=max");
    let (first, _) = build(&a, &dir, &["-t", "app:1", "--cache-to", &to]);

    // Another runner pushes the image it finds whole in the cache to the
    // same registry: the layers are mounted from the cache's repository.
    let b = runner_like(&a);
    let before = proxy.requests().len();
    let from = format!("type=registry,ref={cache}");
    let pushed = format!("{}/app/final:1", proxy.host());
    let output = format!("type=registry,name={pushed},store=false");
    let (second, stderr) = build(&b, &dir, &["--cache-from", &from, "-o", &output]);
    assert!(stderr.contains("0 steps run, 3 cached"), "{stderr}");
    assert_eq!(second, first, "the same image ID");
    let requests = proxy.requests()[before..].to_vec();
    let fetched: Vec<&str> = requests
        .iter()
        .filter(|r| r.method == "GET" && r.target.contains("/blobs/"))
        .map(|r| r.target.as_str())
        .collect();
    // Only the records: no layer passes through kiln.
    assert_eq!(fetched.len(), 1, "{fetched:?}");
    let mounts = requests
        .iter()
        .filter(|r| {
            r.method == "POST"
                && r.target.starts_with("/v2/app/final/blobs/uploads/?mount=")
                && r.target.ends_with("&from=cache%2Fapp")
        })
        .count();
    assert_eq!(mounts, 2, "{requests:?}");
    assert!(
        stderr.contains("Mounted from cache/app"),
        "the push says where its layers came from:\n{stderr}"
    );
    // store=false: the image is not in the store.
    assert!(!kiln_ok(&b, &["images", "-q", "--no-trunc"]).contains(&second));

    // What the registry holds is the whole image.
    let c = Kiln::new();
    kiln_ok(&c, &["pull", "-q", &pushed]);
    assert_eq!(
        kiln_ok(&c, &["inspect", "-f", "{{.Id}}", &pushed]).trim(),
        first
    );
    assert_eq!(sh(&c, &pushed, "cat /note"), "built\n");

    // To another registry, nothing can be mounted: the layers come
    // through the store and are uploaded.
    let other = Registry::plain();
    let elsewhere = format!("{}/app/final:1", other.host());
    let output = format!("type=registry,name={elsewhere},store=false");
    let before = proxy.requests().len();
    let (third, _) = build(&b, &dir, &["--cache-from", &from, "-o", &output]);
    assert_eq!(third, first);
    let fetched = proxy.requests()[before..]
        .iter()
        .filter(|r| r.method == "GET" && r.target.contains("/blobs/"))
        .count();
    assert_eq!(fetched, 3, "the records and the two layers");
    let d = Kiln::new();
    kiln_ok(&d, &["pull", "-q", &elsewhere]);
    assert_eq!(sh(&d, &elsewhere, "cat /note"), "built\n");
}

#[test]
fn mode_max_sends_each_layer_while_the_build_goes_on_and_the_export_only_adds_the_records() {
    if !kiln_testkit::root("kiln build mounts overlays") {
        return;
    }
    let a = busybox();
    let dir = context(&a, "ctx", DOCKERFILE, &[]);
    let max = a.path("cache-early");
    let min = a.path("cache-late");
    let output = a
        .command()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("KILN_LOG", "info")
        .args(["build", "--progress=plain", "-t", "app:1", "--cache-to"])
        .arg(format!("type=local,dest={},mode=max", max.display()))
        .arg("--cache-to")
        .arg(format!("type=local,dest={}", min.display()))
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{stderr}");
    // The layer too large for the records (the builder's RUN) went to
    // the mode=max cache as it was recorded; the small ones (the COPY, the
    // last RUN) are carried by the records. mode=min waits for the end,
    // which alone knows the final image's steps.
    let early: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("while the build goes on"))
        .collect();
    assert_eq!(early.len(), 1, "{stderr}");
    assert!(
        early.iter().all(|l| l.contains(&max.display().to_string())),
        "{early:?}"
    );
    // The layout names exactly those blobs, and a build from it runs
    // nothing.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(max.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            max.join("blobs/sha256")
                .join(manifest_digest.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    let digest = layers[0]["digest"].as_str().unwrap();
    assert!(
        early.iter().any(|l| l.contains(digest)),
        "{digest} was not sent early: {early:?}"
    );
    let records: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            max.join("blobs/sha256").join(
                manifest["config"]["digest"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("sha256:"),
            ),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(carried(&records), 2, "{records}");
    // Both exports ran once the steps were done, beside the commit.
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("cache export: written beside the image's commit"))
            .count(),
        1,
        "{stderr}"
    );
    // Only the records, the manifest and the large layer are files.
    assert_eq!(
        std::fs::read_dir(max.join("blobs/sha256")).unwrap().count(),
        3
    );
    let b = runner_like(&a);
    let from = format!("type=local,src={}", max.display());
    let (_, stderr) = build(&b, &dir, &["-t", "app:1", "--cache-from", &from]);
    assert!(stderr.contains("0 steps run, 3 cached"), "{stderr}");
}

/// A `COPY` of a context directory larger than the records carry, and a
/// step on its files.
const DOCKERFILE_RECIPE: &str = "FROM bb:1\n\
    WORKDIR /srv\n\
    COPY app ./app/\n\
    RUN cat app/*.txt app/sub/*.txt | wc -c > /size\n";

/// A context for [`DOCKERFILE_RECIPE`] in `dir` of `kiln`: 60 KiB of
/// files, their mtimes set to 2020-09-13 (so that a copy made now has
/// other ones).
fn recipe_context(kiln: &Kiln) -> std::path::PathBuf {
    let a = "a".repeat(20_000);
    let b = "b".repeat(30_000);
    let c = "c".repeat(10_000);
    let dir = context(
        kiln,
        "ctx",
        DOCKERFILE_RECIPE,
        &[("app/a.txt", &a), ("app/b.txt", &b), ("app/sub/c.txt", &c)],
    );
    let touched = std::process::Command::new("touch")
        .args(["-h", "-d", "@1600000000"])
        .args(["app/a.txt", "app/b.txt", "app/sub/c.txt", "app/sub", "app"])
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(touched.success());
    dir
}

/// A copy of `dir` made now (new mtimes), as another checkout.
fn checkout(dir: &Path, to: &Path) -> std::path::PathBuf {
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(dir)
        .arg(to)
        .status()
        .unwrap();
    assert!(copied.success());
    to.to_owned()
}

#[test]
fn a_copy_of_the_context_travels_as_a_recipe_and_another_checkout_remakes_its_layer() {
    if !kiln_testkit::root("kiln build mounts overlays") || !registry::available() {
        return;
    }
    let registry = Registry::plain();
    let proxy = FaultProxy::start(&registry);
    let cache = format!("{}/cache/recipe:build", proxy.host());
    let a = busybox();
    let dir = recipe_context(&a);
    let to = format!("type=registry,ref={cache},mode=max");
    let (first, stderr) = build(&a, &dir, &["-t", "app:1", "--cache-to", &to]);
    assert!(stderr.contains("3 steps run, 0 cached"), "{stderr}");
    let uploaded: Vec<(String, u64)> = proxy
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.target.contains("/blobs/uploads/"))
        .map(|r| {
            let size = r
                .headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap());
            (r.target.clone(), size)
        })
        .collect();
    // Two blobs: the records (which carry the WORKDIR's and the RUN's
    // small layers) and the COPY's recipe: headers, not the 60 KiB.
    assert_eq!(uploaded.len(), 2, "{uploaded:?}");
    assert!(
        uploaded.iter().all(|(_, size)| *size < 10_000),
        "{uploaded:?}"
    );

    // Another runner, another checkout of the same files (other mtimes).
    let b = runner_like(&a);
    let other = checkout(&dir, &b.path("checkout"));
    let before = proxy.requests().len();
    let from = format!("type=registry,ref={cache}");
    let (second, stderr) = build(&b, &other, &["-t", "app:1", "--cache-from", &from]);
    assert!(stderr.contains("0 steps run, 3 cached"), "{stderr}");
    assert_eq!(second, first, "the exporter's image, mtimes included");
    assert_eq!(sh(&b, "app:1", "cat /size"), "60000\n");
    assert_eq!(
        sh(&b, "app:1", "busybox stat -c %Y /srv/app/a.txt"),
        "1600000000\n"
    );
    let fetched = proxy.requests()[before..]
        .iter()
        .filter(|r| r.method == "GET" && r.target.contains("/blobs/"))
        .count();
    assert_eq!(fetched, 2, "the records and the recipe");
}

#[test]
fn a_recipe_that_does_not_remake_its_layer_is_refused_and_the_copy_runs() {
    if !kiln_testkit::root("kiln build mounts overlays") {
        return;
    }
    let a = busybox();
    let dir = recipe_context(&a);
    let layout = a.path("cache");
    let to = format!("type=local,dest={},mode=max", layout.display());
    let (first, _) = build(&a, &dir, &["-t", "app:1", "--cache-to", &to]);
    // Flip a byte of the first tar header the recipe holds: only the
    // remade layer's digest can tell.
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    rewrite_layout(&layout, |manifest, records, add| {
        let layers = manifest["layers"].as_array_mut().unwrap();
        assert_eq!(layers.len(), 1, "{layers:?}");
        let recipe = &mut layers[0];
        assert_eq!(
            recipe["mediaType"],
            "application/vnd.kiln.layer-recipe.v1+zstd"
        );
        let old = recipe["digest"].as_str().unwrap().to_owned();
        let compressed = std::fs::read(blob(&old)).unwrap();
        let mut plain = zstd::decode_all(compressed.as_slice()).unwrap();
        let magic = b"kiln-layer-recipe-v1\n".len();
        assert_eq!(plain[magic], b'R');
        plain[magic + 1 + 8 + 101] ^= 1;
        let (digest, size) = add(&zstd::encode_all(plain.as_slice(), 3).unwrap());
        recipe["digest"] = digest.clone().into();
        recipe["size"] = size.into();
        for record in records["records"].as_array_mut().unwrap() {
            let named = &mut record["layer"]["descriptor"]["kiln.recipe"];
            if named["digest"] == old.as_str() {
                named["digest"] = digest.clone().into();
                named["size"] = size.into();
            }
        }
    });

    let b = runner_like(&a);
    let from = format!("type=local,src={}", layout.display());
    let (id, stderr) = build(&b, &dir, &["-t", "app:1", "--cache-from", &from]);
    assert!(
        stderr.contains("remade from the build context"),
        "the refusal names the remade layer:\n{stderr}"
    );
    assert!(
        stderr.contains("the cache records naming it are refused, building again without them"),
        "{stderr}"
    );
    // The COPY ran (from the same files: the same image), the others hit.
    assert!(stderr.contains("1 step run, 2 cached"), "{stderr}");
    assert_eq!(id, first);
}
