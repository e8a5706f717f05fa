//! The copy snapshotter, kiln's fallback where overlayfs cannot be
//! mounted (issue 18): builds and runs through it give what the kernel's
//! overlay gives, it is chosen by itself where the probe fails, and
//! `kiln info` names it.
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use common::build::{busybox, context};

/// Adds, modifies, deletes (files and a directory of an earlier layer,
/// and of the base), changes only a mode and only an owner, and RUN with
/// a cache mount; then directories where a whiteout or a file was (opaque
/// in overlayfs's upper directory). COPY, COPY --from (a read-only view
/// of a stage) and WORKDIR mount a stage too.
const CHANGES: &str = "FROM bb:1 AS other
RUN echo other >/o
FROM bb:1
COPY f /copied/f
COPY --from=other /o /o
RUN mkdir -p /d/sub /gone/deep && echo a >/d/sub/f && echo x >/gone/deep/x \
 && echo keep >/opt/keep && echo file >/was-file
RUN --mount=type=cache,target=/cache echo c >/cache/c && cp /cache/c /from-cache \
 && rm -rf /gone /etc/base-file /copied/f \
 && echo more >>/d/sub/f \
 && chmod 600 /etc/name2 && chown 1000:50 /opt/old && chmod 700 /d \
 && ln -s /d/sub/f /link
WORKDIR /w/x
RUN mkdir /gone && echo back >/gone/again && rm /was-file && mkdir /was-file
";

const SHOW: &str = "cat /d/sub/f /from-cache /opt/keep /o; ls -d /etc/base-file /copied/f 2>&1; \
ls /gone /was-file; \
stat -c '%a %u:%g %n' /etc/name2 /opt/old /d /w/x; readlink /link";

const SHOWN: &str = "a\nmore\nc\nkeep\nother\n\
ls: /etc/base-file: No such file or directory\n\
ls: /copied/f: No such file or directory\n\
/gone:\nagain\n\n/was-file:\n\
600 0:0 /etc/name2\n644 1000:50 /opt/old\n700 0:0 /d\n755 0:0 /w/x\n/d/sub/f\n";

fn build_with(kiln: &common::Kiln, snapshotter: &str, dir: &std::path::Path, tag: &str) {
    let output = kiln
        .command()
        .env("KILN_SNAPSHOTTER", snapshotter)
        .args(["build", "--progress=plain", "--no-cache", "-t", tag])
        .args(["--build-arg", "SOURCE_DATE_EPOCH=0", "--network", "none"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "build with {snapshotter}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn with(kiln: &common::Kiln, snapshotter: &str, args: &[&str]) -> String {
    let output = kiln
        .command()
        .env("KILN_SNAPSHOTTER", snapshotter)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "kiln {args:?} with {snapshotter}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn a_copy_build_gives_the_overlay_build_image_id_and_runs() {
    let kiln = busybox();
    let dir = context(&kiln, "ctx", CHANGES, &[("f", "copied\n")]);
    build_with(&kiln, "overlay", &dir, "changes:overlay");
    build_with(&kiln, "copy", &dir, "changes:copy");
    let id = |tag: &str| kiln.ok(&["images", "-q", "--no-trunc", tag]);
    assert_eq!(id("changes:copy"), id("changes:overlay"));
    let layers = |tag: &str| kiln.ok(&["inspect", "--format", "{{json .RootFS.Layers}}", tag]);
    assert_eq!(layers("changes:copy"), layers("changes:overlay"));

    // Runs through the copy see the image, and what they change is kept
    // as an overlay's upper directory would keep it.
    let run = ["run", "--network", "none"];
    let shown = with(
        &kiln,
        "copy",
        &[&run[..], &["--rm", "changes:copy", "sh", "-c", SHOW]].concat(),
    );
    assert_eq!(shown, SHOWN);
    with(
        &kiln,
        "copy",
        &[
            &run[..],
            &[
                "--name",
                "cc",
                "changes:copy",
                "sh",
                "-c",
                "echo new >/new && rm /link && chmod 640 /opt/keep && rm -r /d/sub",
            ],
        ]
        .concat(),
    );
    // `kiln cp` into the stopped container writes through a copy too.
    let host = kiln.path("host-file");
    std::fs::write(&host, "from the host\n").unwrap();
    with(
        &kiln,
        "copy",
        &["cp", host.to_str().unwrap(), "cc:/copied-in"],
    );
    with(&kiln, "copy", &["commit", "cc", "committed:1"]);
    let after = with(
        &kiln,
        "overlay",
        &[
            &run[..],
            &[
                "--rm",
                "committed:1",
                "sh",
                "-c",
                "cat /new /copied-in; stat -c '%a %n' /opt/keep; ls /link /d/sub 2>&1; ls /d",
            ],
        ]
        .concat(),
    );
    assert_eq!(
        after,
        "new\nfrom the host\n640 /opt/keep\nls: /link: No such file or directory\nls: /d/sub: No such file or directory\n"
    );

    // `kiln info` names the snapshotter, and why.
    let info = with(&kiln, "copy", &["info"]);
    assert!(
        info.contains(" Storage Driver: copy\n  Backing Filesystem: extfs\n  Snapshotter: KILN_SNAPSHOTTER=copy\n"),
        "{info}"
    );
    assert_eq!(
        with(&kiln, "auto", &["info", "--format", "{{.Driver}}"]),
        "overlay\n"
    );
    let info = with(&kiln, "auto", &["info"]);
    assert!(
        info.contains(" Storage Driver: overlay\n  Backing Filesystem: extfs\n  Snapshotter: overlayfs mounts here\n"),
        "{info}"
    );
    let (code, _, err) = {
        let output = kiln
            .command()
            .env("KILN_SNAPSHOTTER", "fuse")
            .args(["info"])
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    };
    assert_eq!(
        (code, err.as_str()),
        (
            Some(1),
            "error: KILN_SNAPSHOTTER=fuse: unknown snapshotter (overlay, copy or auto)\n"
        )
    );
}

/// Where the probe's overlay is refused (forced by the test hook: the
/// kernel's real refusals, e.g. an upper directory on overlayfs, are
/// tested in kiln-rootfs), kiln chooses the copy by itself, says so in
/// `kiln info`, and builds the same image.
#[test]
fn a_refused_probe_chooses_the_copy_by_itself() {
    let kiln = busybox();
    let dir = context(&kiln, "ctx", CHANGES, &[("f", "copied\n")]);
    build_with(&kiln, "overlay", &dir, "changes:overlay");
    let refused = |args: &[&str]| {
        let output = kiln
            .command()
            .env_remove("KILN_SNAPSHOTTER")
            .env("KILN_TEST_OVERLAY_REFUSED", "1")
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "kiln {args:?}:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let info = refused(&["info"]);
    assert!(
        info.contains(
            " Storage Driver: copy\n  Backing Filesystem: extfs\n  Snapshotter: overlayfs cannot be mounted here: KILN_TEST_OVERLAY_REFUSED=1: the mount is refused\n"
        ),
        "{info}"
    );
    refused(&[
        "build",
        "-q",
        "--no-cache",
        "-t",
        "changes:auto",
        "--build-arg",
        "SOURCE_DATE_EPOCH=0",
        "--network",
        "none",
        dir.to_str().unwrap(),
    ]);
    let id = |tag: &str| kiln.ok(&["images", "-q", "--no-trunc", tag]);
    assert_eq!(id("changes:auto"), id("changes:overlay"));
    assert_eq!(
        refused(&[
            "run",
            "--rm",
            "--network",
            "none",
            "changes:auto",
            "sh",
            "-c",
            SHOW
        ]),
        SHOWN
    );
}
