//! `kiln build --build-context NAME=VALUE` as root: named local
//! directories read as the build context is, images (`docker-image://`)
//! and OCI layouts (`oci-layout://`) that replace a `FROM` image or a
//! stage, their cache keys and their errors.
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use common::Kiln;
use common::build::{build_fails, build_ok, busybox, cached, context, sh};

/// `other:1`: `bb:1` with `/marker` = `two`.
fn other_image(kiln: &Kiln) {
    let dir = context(kiln, "other", "FROM bb:1\nRUN echo two > /marker\n", &[]);
    build_ok(kiln, &dir, "other:1", &[]);
}

#[test]
fn docker_image_context_replaces_an_image_reference_and_a_stage() {
    let kiln = busybox();
    other_image(&kiln);
    let dir = context(
        &kiln,
        "ctx",
        "FROM alpine AS tools\n\
         RUN exit 1\n\
         FROM docker.io/library/alpine:latest\n\
         COPY --from=tools /marker /from-stage\n\
         COPY --from=alpine:latest /marker /from-image\n\
         RUN cat /marker > /seen\n",
        &[],
    );
    // `alpine` is never pulled: the context stands for it, and for the
    // stage `tools`, whose RUN never runs.
    build_ok(
        &kiln,
        &dir,
        "ctx:1",
        &[
            "--build-context",
            "alpine=docker-image://other:1",
            "--build-context",
            "tools=docker-image://other:1",
            "--build-context",
            "unused=docker-image://never-pulled.invalid/x:1",
        ],
    );
    assert_eq!(
        sh(&kiln, "ctx:1", "cat /seen /from-stage /from-image"),
        "two\ntwo\ntwo\n"
    );
}

#[test]
fn local_context_copy_from_and_bind_mount_read_it_as_the_build_context() {
    let kiln = busybox();
    let outside = kiln.path("outside-secret");
    fs::write(&outside, "host secret\n").unwrap();
    let src = kiln.path("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a.txt"), "a1\n").unwrap();
    fs::write(src.join("sub/b.txt"), "b\n").unwrap();
    fs::write(src.join("ignored.txt"), "ignored\n").unwrap();
    fs::write(src.join(".dockerignore"), "ignored.txt\n").unwrap();
    symlink(&outside, src.join("link")).unwrap();
    let dir = context(
        &kiln,
        "ctx",
        "FROM bb:1\n\
         COPY --from=src a.txt sub /got/\n\
         RUN --mount=type=bind,from=src,target=/m cat /m/a.txt /m/sub/b.txt > /mounted && \
             test ! -e /m/ignored.txt && readlink /m/link > /mounted-link\n\
         COPY --from=src / /all/\n",
        &[("a.txt", "main context\n")],
    );
    let context_arg = format!("src={}", src.display());
    build_ok(&kiln, &dir, "local:1", &["--build-context", &context_arg]);
    assert_eq!(
        sh(
            &kiln,
            "local:1",
            "cat /got/a.txt /got/b.txt /mounted; stat -c %u:%g /got/a.txt; \
             test -e /all/ignored.txt || echo no ignored; readlink /all/link; cat /mounted-link"
        ),
        format!(
            "a1\nb\na1\nb\n0:0\nno ignored\n{0}\n{0}\n",
            outside.display()
        )
    );
    // The link is copied as a link: the host file it names is never read.
    assert!(!sh(&kiln, "local:1", "cat /all/link 2>&1 || true").contains("host secret"));

    // Unchanged: every step is cached. A changed file reruns the steps
    // that read it.
    let again = build_ok(&kiln, &dir, "local:2", &["--build-context", &context_arg]);
    assert!(cached(&again, "COPY --from=src a.txt"), "{again}");
    assert!(cached(&again, "RUN --mount"), "{again}");
    fs::write(src.join("a.txt"), "a2\n").unwrap();
    let changed = build_ok(&kiln, &dir, "local:3", &["--build-context", &context_arg]);
    assert!(!cached(&changed, "COPY --from=src a.txt"), "{changed}");
    assert!(!cached(&changed, "RUN --mount"), "{changed}");
    assert_eq!(
        sh(&kiln, "local:3", "cat /got/a.txt /mounted"),
        "a2\na2\nb\n"
    );
    // An ignored file changing changes nothing.
    fs::write(src.join("ignored.txt"), "still ignored\n").unwrap();
    let ignored = build_ok(&kiln, &dir, "local:4", &["--build-context", &context_arg]);
    assert!(cached(&ignored, "COPY --from=src / /all/"), "{ignored}");
}

#[test]
fn a_symlink_out_of_a_local_context_is_not_followed() {
    let kiln = busybox();
    let outside = kiln.path("outside-secret");
    fs::write(&outside, "host secret\n").unwrap();
    let src = kiln.path("src");
    fs::create_dir_all(&src).unwrap();
    symlink(&outside, src.join("link")).unwrap();
    symlink("../outside-secret", src.join("rel")).unwrap();
    let context_arg = format!("src={}", src.display());
    for source in ["link", "rel"] {
        let dir = context(
            &kiln,
            &format!("ctx-{source}"),
            &format!("FROM bb:1\nCOPY --from=src {source} /x\n"),
            &[],
        );
        let stderr = build_fails(&kiln, &dir, &["--build-context", &context_arg]);
        assert!(stderr.contains("not found"), "{stderr}");
        assert!(stderr.contains("Dockerfile:2"), "{stderr}");
    }
}

/// `kiln save --format oci` of `image`, unpacked into directory `name`.
fn oci_layout(kiln: &Kiln, image: &str, name: &str) -> std::path::PathBuf {
    let archive = kiln.path(&format!("{name}.tar"));
    kiln.ok(&[
        "save",
        "--format",
        "oci",
        "-o",
        archive.to_str().unwrap(),
        image,
    ]);
    let dir = kiln.path(name);
    fs::create_dir_all(&dir).unwrap();
    tar::Archive::new(fs::File::open(&archive).unwrap())
        .unpack(&dir)
        .unwrap();
    dir
}

fn manifest_digest(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"].as_str().unwrap().to_owned()
}

#[test]
fn oci_layout_context_by_tag_and_by_digest() {
    let kiln = busybox();
    other_image(&kiln);
    let layout = oci_layout(&kiln, "other:1", "layout");
    // The image leaves the store: the layout is where it comes from.
    kiln.ok(&["rmi", "other:1"]);
    let dir = context(&kiln, "ctx", "FROM base\nRUN cat /marker > /seen\n", &[]);
    let by_tag = format!("base=oci-layout://{}", layout.display());
    build_ok(&kiln, &dir, "oci:1", &["--build-context", &by_tag]);
    assert_eq!(sh(&kiln, "oci:1", "cat /seen"), "two\n");
    let by_digest = format!(
        "base=oci-layout://{}@{}",
        layout.display(),
        manifest_digest(&layout)
    );
    let stderr = build_ok(&kiln, &dir, "oci:2", &["--build-context", &by_digest]);
    assert!(cached(&stderr, "RUN cat /marker"), "{stderr}");

    // A blob that does not hash to its name is refused.
    let digest = manifest_digest(&layout);
    let blob = layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let mut bytes = fs::read(&blob).unwrap();
    bytes.push(b' ');
    fs::write(&blob, bytes).unwrap();
    let stderr = build_fails(&kiln, &dir, &["--build-context", &by_tag]);
    assert!(stderr.contains("invalid --build-context"), "{stderr}");
    assert!(stderr.contains("digest"), "{stderr}");
}

#[test]
fn bad_build_context_values_are_refused() {
    let kiln = busybox();
    let dir = context(&kiln, "ctx", "FROM bb:1\n", &[]);
    let missing = kiln.path("missing");
    let file = kiln.path("ctx/Dockerfile");
    let cases = [
        (
            "x".to_owned(),
            "invalid --build-context \"x\": expected NAME=VALUE",
        ),
        ("Src=.".to_owned(), "invalid context name \"Src\""),
        (format!("src={}", missing.display()), "cannot use directory"),
        (format!("src={}", file.display()), "is not a directory"),
        (
            "src=https://example.com/src.tar".to_owned(),
            "https:// contexts other than git repositories are not supported by kiln",
        ),
        (
            "src=target:other".to_owned(),
            "target: and input: contexts (buildx bake's) are not supported by kiln",
        ),
        (
            format!("src=oci-layout://{}", missing.display()),
            "not an OCI image layout directory",
        ),
        (
            "src=docker-image://Bad:1".to_owned(),
            "invalid reference format",
        ),
    ];
    for (value, message) in cases {
        let stderr = build_fails(&kiln, &dir, &["--build-context", &value]);
        assert!(stderr.contains(message), "{value}: {stderr}");
        assert!(
            stderr.contains(&format!("invalid --build-context {value:?}")),
            "{value}: {stderr}"
        );
    }
    // A bad FROM context is reported at its line.
    let from_dir = context(&kiln, "from-dir", "FROM bb:1\nFROM src\n", &[]);
    let stderr = build_fails(
        &kiln,
        &from_dir,
        &["--build-context", "src=docker-image://bad.invalid/none:1"],
    );
    assert!(stderr.contains("Dockerfile:2"), "{stderr}");
}

#[test]
fn from_a_local_context_and_a_stage_it_replaces() {
    let kiln = busybox();
    let src = kiln.path("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a.txt"), "a\n").unwrap();
    fs::write(src.join("sub/b.txt"), "b\n").unwrap();
    fs::write(src.join("ignored.txt"), "ignored\n").unwrap();
    fs::write(src.join(".dockerignore"), "ignored.txt\n").unwrap();
    let dir = context(
        &kiln,
        "ctx",
        "FROM bb:1 AS build\n\
         RUN exit 1\n\
         FROM src AS files\n\
         FROM bb:1\n\
         COPY --from=files / /files/\n\
         COPY --from=build sub/b.txt /from-build\n",
        &[],
    );
    let src_arg = format!("src={}", src.display());
    let build_arg = format!("build={}", src.display());
    let args = ["--build-context", &src_arg, "--build-context", &build_arg];
    build_ok(&kiln, &dir, "from:1", &args);
    assert_eq!(
        sh(
            &kiln,
            "from:1",
            "cat /files/a.txt /files/sub/b.txt /from-build; ls -A /files; stat -c %u /files/a.txt"
        ),
        "a\nb\nb\n.dockerignore\na.txt\nsub\n0\n"
    );
    let again = build_ok(&kiln, &dir, "from:2", &args);
    assert!(cached(&again, "COPY --from=files"), "{again}");
    fs::write(src.join("a.txt"), "changed\n").unwrap();
    let changed = build_ok(&kiln, &dir, "from:3", &args);
    assert!(!cached(&changed, "COPY --from=files"), "{changed}");
    assert_eq!(sh(&kiln, "from:3", "cat /files/a.txt"), "changed\n");
}
