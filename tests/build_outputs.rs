//! `kiln build --output` and `--metadata-file` end to end, as root: each
//! output is read back with a real tool (tar, skopeo, umoci) and compared
//! with what `kiln run`, `kiln inspect` and `kiln save` show of the same
//! image. They need root (RUN uses namespaces and mounts); CI runs them as
//! root with `KILN_REQUIRE_ROOT=1`, and with the interop tools installed.
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::Kiln;
use common::build::{build, busybox, context, sh};
use serde_json::{Value, json};

/// Three layers over `bb:1`: the second makes a file with an owner and an
/// odd mode, a hard link, a symlink, a file it deletes later and a
/// directory it replaces later; the third deletes `/doomed` and the base's
/// `/opt/old` (whiteouts) and replaces `/etc/sub` (an opaque directory).
const DOCKERFILE: &str = "FROM bb:1
RUN echo doomed > /doomed && mkdir -p /d /etc/sub && echo data > /d/f && ln /d/f /d/hard \\
 && ln -s ../d/f /link && chmod 0741 /d/f && busybox chown 1000:50 /d/f && echo old > /etc/sub/old
RUN rm /doomed /opt/old && rm -rf /etc/sub && mkdir /etc/sub && echo new > /etc/sub/new
";

fn root() -> bool {
    kiln_testkit::root("kiln build mounts overlays")
}

/// Whether skopeo and umoci are there; prints SKIPPED (or fails in CI,
/// `KILN_REQUIRE_INTEROP=1`) if not.
fn interop_tools() -> bool {
    let missing: Vec<&str> = ["skopeo", "umoci"]
        .into_iter()
        .filter(|t| !common::have(t))
        .collect();
    missing.is_empty()
        || kiln_testkit::require(
            "INTEROP",
            Some(&format!(
                "interop tools missing: {missing:?} (apt-get install skopeo umoci)"
            )),
        )
}

/// Runs a command, asserts success and returns stdout.
fn run_ok(command: &mut Command) -> Vec<u8> {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// `kiln build --progress=plain ARGS CONTEXT`, asserting success; returns
/// stderr.
fn build_ok(kiln: &Kiln, context: &Path, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push(context.to_str().unwrap());
    let output = build(kiln, &all);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "build {all:?} failed:\n{stderr}");
    stderr
}

/// `kiln build --progress=plain ARGS CONTEXT`, asserting failure before
/// any step ran; returns stderr.
fn build_refused(kiln: &Kiln, context: &Path, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push(context.to_str().unwrap());
    let output = build(kiln, &all);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        !output.status.success(),
        "build {all:?} succeeded:\n{stderr}"
    );
    assert!(output.stdout.is_empty(), "{:?}", output.stdout);
    assert!(!stderr.contains("#1 "), "the build ran:\n{stderr}");
    stderr
}

/// `kiln build --progress=plain ARGS CONTEXT` with stdout piped straight
/// into `tar -tf -`: the members tar lists, and kiln's stderr.
fn build_piped_to_tar(kiln: &Kiln, context: &Path, args: &[&str]) -> (Vec<String>, String) {
    let mut all = vec!["build", "--progress=plain"];
    all.extend_from_slice(args);
    all.push(context.to_str().unwrap());
    let mut child = kiln.spawn(&all);
    let tar = Command::new("tar")
        .args(["-tf", "-"])
        .stdin(Stdio::from(child.stdout.take().unwrap()))
        .output()
        .unwrap();
    let kiln_output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8(kiln_output.stderr).unwrap();
    assert!(kiln_output.status.success(), "build {all:?}:\n{stderr}");
    assert!(
        tar.status.success(),
        "tar -t of kiln's stdout: {}",
        String::from_utf8_lossy(&tar.stderr)
    );
    let members = String::from_utf8(tar.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    (members, stderr)
}

/// The images the store lists (by manifest digest).
fn listed_images(kiln: &Kiln) -> BTreeSet<String> {
    let store = kiln_store::Store::open(&kiln.root()).unwrap();
    store
        .images()
        .unwrap()
        .into_iter()
        .map(|image| image.manifest_digest.to_string())
        .collect()
}

/// The image's ID (config digest) and manifest digest in the store.
fn digests(kiln: &Kiln, image: &str) -> (String, String) {
    let id = kiln
        .ok(&["inspect", "-f", "{{.Id}}", image])
        .trim()
        .to_owned();
    let store = kiln_store::Store::open(&kiln.root()).unwrap();
    let manifest = store.resolve(image).unwrap().manifest_digest.to_string();
    (id, manifest)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// `index.json` of a tar archive, read with tar.
fn archive_index(archive: &Path) -> Value {
    let bytes = run_ok(
        Command::new("tar")
            .arg("-xOf")
            .arg(archive)
            .arg("index.json"),
    );
    serde_json::from_slice(&bytes).unwrap()
}

/// Every path under `dir`, relative, without a leading `/`.
fn paths(dir: &Path) -> BTreeSet<String> {
    common::tree(dir)
        .into_iter()
        .map(|(path, ..)| path)
        .collect()
}

/// The paths `find / -xdev` shows in a container of `image`, less the
/// mount points and files `kiln run` itself adds to a container.
fn container_paths(kiln: &Kiln, image: &str) -> BTreeSet<String> {
    let mounted = [
        "proc",
        "dev",
        "sys",
        "etc/hosts",
        "etc/resolv.conf",
        "etc/hostname",
    ];
    sh(kiln, image, "find / -xdev")
        .lines()
        .filter_map(|line| line.strip_prefix('/'))
        .filter(|path| !path.is_empty())
        .filter(|path| {
            !mounted
                .iter()
                .any(|m| path == m || path.starts_with(&format!("{m}/")))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn local_output_is_the_image_file_system_with_whiteouts_applied() {
    if !root() {
        return;
    }
    let kiln = busybox();
    let dir = context(&kiln, "ctx", DOCKERFILE, &[]);
    let before = listed_images(&kiln);
    let out = kiln.path("out");
    build_ok(
        &kiln,
        &dir,
        &["-o", &format!("type=local,dest={}", out.display())],
    );
    // No image is left in the store without -t (its layers stay as cache:
    // the tagged build below runs nothing).
    assert_eq!(listed_images(&kiln), before);

    // The same files as the image shows in a container.
    let stderr = build_ok(&kiln, &dir, &["-t", "img:1"]);
    assert!(stderr.contains("0 steps run"), "{stderr}");
    let local = paths(&out);
    assert_eq!(local, container_paths(&kiln, "img:1"));
    for gone in ["doomed", "opt/old", "etc/sub/old"] {
        assert!(!local.contains(gone), "{gone} was deleted by a later layer");
        assert!(!out.join(gone).exists());
    }
    for kept in [
        "etc/base-file",
        "etc/sub/new",
        "d/f",
        "d/hard",
        "link",
        "bin/busybox",
    ] {
        assert!(local.contains(kept), "{kept} is missing: {local:?}");
    }
    assert_eq!(
        fs::read_to_string(out.join("etc/sub/new")).unwrap(),
        "new\n"
    );
    assert_eq!(
        fs::read_link(out.join("link")).unwrap(),
        Path::new("../d/f")
    );
    let file = fs::symlink_metadata(out.join("d/f")).unwrap();
    let hard = fs::symlink_metadata(out.join("d/hard")).unwrap();
    assert_eq!(
        (file.mode() & 0o7777, file.uid(), file.gid(), file.nlink()),
        (
            0o741,
            common::host_id(1000, false),
            common::host_id(50, true),
            2
        )
    );
    assert_eq!(file.ino(), hard.ino(), "the hard link is kept");
    assert_eq!(
        sh(&kiln, "img:1", "stat -c '%a %u %g %h' /d/f"),
        "741 1000 50 2\n"
    );

    // A bare path is type=local; an existing empty directory is filled.
    let bare = kiln.path("bare");
    fs::create_dir(&bare).unwrap();
    build_ok(&kiln, &dir, &["-o", bare.to_str().unwrap()]);
    assert_eq!(paths(&bare), local);

    // A directory with something in it is refused before the build.
    let full = kiln.path("full");
    fs::create_dir(&full).unwrap();
    fs::write(full.join("mine"), "mine\n").unwrap();
    let spec = format!("type=local,dest={}", full.display());
    let stderr = build_refused(&kiln, &dir, &["-o", &spec]);
    assert!(
        stderr.contains(&format!(
            "invalid --output {spec:?}: {} is not empty",
            full.display()
        )),
        "{stderr}"
    );
    assert_eq!(paths(&full), BTreeSet::from(["mine".to_owned()]));
}

#[test]
fn tar_output_to_a_file_and_to_stdout() {
    if !root() {
        return;
    }
    let kiln = busybox();
    let dir = context(&kiln, "ctx", DOCKERFILE, &[]);
    let archive = kiln.path("fs.tar");
    build_ok(
        &kiln,
        &dir,
        &["-o", &format!("type=tar,dest={}", archive.display())],
    );
    let verbose = String::from_utf8(run_ok(
        Command::new("tar")
            .args(["--numeric-owner", "-tvf"])
            .arg(&archive),
    ))
    .unwrap();
    let line = |name: &str| {
        verbose
            .lines()
            .find(|l| {
                [
                    format!(" {name}\n"),
                    format!(" {name} -> "),
                    format!(" {name} link to "),
                ]
                .iter()
                .any(|end| format!("{l}\n").contains(end.as_str()))
            })
            .unwrap_or_else(|| panic!("{name} is not in the tar:\n{verbose}"))
            .to_owned()
    };
    assert!(line("d/f").starts_with("-rwxr----x 1000/50 "), "{verbose}");
    assert!(line("d/hard").ends_with("d/hard link to d/f"), "{verbose}");
    assert!(line("link").ends_with("link -> ../d/f"), "{verbose}");
    let listed = String::from_utf8(run_ok(Command::new("tar").arg("-tf").arg(&archive))).unwrap();
    let members: BTreeSet<&str> = listed.lines().map(|l| l.trim_end_matches('/')).collect();
    for gone in ["doomed", "opt/old", "etc/sub/old"] {
        assert!(!members.contains(gone), "{gone} is in the tar:\n{listed}");
    }
    assert!(members.contains("etc/sub/new"), "{listed}");

    // Extracted by tar, it is the type=local directory, file for file.
    let extracted = kiln.path("extracted");
    fs::create_dir(&extracted).unwrap();
    run_ok(
        Command::new("tar")
            .args(["--numeric-owner", "-xpf"])
            .arg(&archive)
            .arg("-C")
            .arg(&extracted),
    );
    let local = kiln.path("local");
    build_ok(
        &kiln,
        &dir,
        &["-o", &format!("type=local,dest={}", local.display())],
    );
    assert_eq!(common::tree(&extracted), common::tree(&local));

    // `-` is type=tar to stdout: progress stays on stderr, stdout is the
    // same tar.
    let (piped, stderr) = build_piped_to_tar(&kiln, &dir, &["-o", "-"]);
    assert!(stderr.contains("#1 "), "no progress on stderr:\n{stderr}");
    assert_eq!(piped.join("\n") + "\n", listed);
    let (piped, _) = build_piped_to_tar(&kiln, &dir, &["-o", "type=tar,dest=-"]);
    assert_eq!(piped.join("\n") + "\n", listed);

    // -q would print the ID into the tar.
    let stderr = build_refused(&kiln, &dir, &["-q", "-o", "-"]);
    assert!(
        stderr.contains(
            "--output \"-\" writes a tar to stdout, where -q would print the image ID: use --progress=quiet (and --iidfile FILE for the ID)"
        ),
        "{stderr}"
    );
}

#[test]
fn docker_and_oci_outputs_and_their_metadata() {
    if !root() || !interop_tools() {
        return;
    }
    let kiln = busybox();
    let dir = context(&kiln, "ctx", DOCKERFILE, &[]);

    // An OCI layout directory, read by skopeo and unpacked by umoci.
    let layout = kiln.path("layout");
    let metadata = kiln.path("oci.json");
    build_ok(
        &kiln,
        &dir,
        &[
            "-t",
            "app:1",
            "-o",
            &format!("type=oci,dest={},tar=false", layout.display()),
            "--metadata-file",
            metadata.to_str().unwrap(),
        ],
    );
    let (id, manifest) = digests(&kiln, "app:1");
    let store = kiln_store::Store::open(&kiln.root()).unwrap();
    let size = store
        .blobs()
        .size(&kiln_store::digest::parse_sha256(&manifest).unwrap())
        .unwrap();
    assert_eq!(
        read_json(&metadata),
        json!({
            "containerimage.config.digest": id,
            "containerimage.descriptor": {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest,
                "size": size,
            },
            "containerimage.digest": manifest,
            "image.name": "docker.io/library/app:1",
        })
    );
    for entry in [
        "oci-layout",
        "index.json",
        &format!("blobs/sha256/{}", &manifest[7..]),
    ] {
        assert!(layout.join(entry).is_file(), "{entry} is missing");
    }
    let inspected: Value = serde_json::from_slice(&run_ok(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}", layout.display())),
    ))
    .unwrap();
    assert_eq!(inspected["Digest"], json!(manifest));
    let bundle = kiln.path("bundle");
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:docker.io/library/app:1", layout.display()))
            .arg(&bundle),
    );
    assert_eq!(
        fs::read_to_string(bundle.join("rootfs/etc/sub/new")).unwrap(),
        "new\n"
    );
    assert!(!bundle.join("rootfs/doomed").exists());

    // An OCI archive on stdout, which skopeo copies.
    let (members, _) = build_piped_to_tar(&kiln, &dir, &["-t", "app:1", "-o", "type=oci,dest=-"]);
    assert!(members.contains(&"index.json".to_owned()), "{members:?}");
    let oci_tar = kiln.path("oci.tar");
    let output = kiln
        .command()
        .args(["build", "-t", "app:1", "-o", "type=oci,dest=-"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(output.status.success());
    fs::write(&oci_tar, &output.stdout).unwrap();
    let copied = kiln.path("copied");
    run_ok(
        Command::new("skopeo")
            .arg("copy")
            .arg(format!("oci-archive:{}", oci_tar.display()))
            .arg(format!("dir:{}", copied.display())),
    );
    let inspected: Value = serde_json::from_slice(&run_ok(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci-archive:{}", oci_tar.display())),
    ))
    .unwrap();
    assert_eq!(inspected["Digest"], json!(manifest));

    // A docker archive: its manifest (uncompressed layers) is the one
    // `kiln save` writes, and that is the digest the metadata gives.
    let docker_tar = kiln.path("docker.tar");
    let metadata = kiln.path("docker.json");
    build_ok(
        &kiln,
        &dir,
        &[
            "-t",
            "app:1",
            "-o",
            &format!("type=docker,dest={},name=extra:2", docker_tar.display()),
            "--metadata-file",
            metadata.to_str().unwrap(),
        ],
    );
    let saved = kiln.path("saved.tar");
    kiln.ok(&["save", "-o", saved.to_str().unwrap(), "app:1"]);
    let saved_digest = archive_index(&saved)["manifests"][0]["digest"].clone();
    let index = archive_index(&docker_tar);
    let metadata = read_json(&metadata);
    assert_eq!(metadata["containerimage.digest"], saved_digest);
    assert_eq!(
        metadata["containerimage.descriptor"]["digest"],
        saved_digest
    );
    assert_eq!(metadata["containerimage.config.digest"], json!(id));
    assert_eq!(
        metadata["image.name"],
        json!("docker.io/library/app:1,docker.io/library/extra:2")
    );
    let names: BTreeSet<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["digest"], saved_digest);
            m["annotations"]["io.containerd.image.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["docker.io/library/app:1", "docker.io/library/extra:2"])
    );
    // name= names the archive's image, not the store's.
    assert!(!kiln.run(&["inspect", "extra:2"]).status.success());
    let (members, _) =
        build_piped_to_tar(&kiln, &dir, &["-t", "app:1", "-o", "type=docker,dest=-"]);
    for member in ["manifest.json", "index.json", "oci-layout"] {
        assert!(members.contains(&member.to_owned()), "{members:?}");
    }
}

#[test]
fn image_output_names_and_metadata() {
    if !root() {
        return;
    }
    let kiln = busybox();
    let dir = context(&kiln, "ctx", DOCKERFILE, &[]);
    let metadata = kiln.path("image.json");
    build_ok(
        &kiln,
        &dir,
        &[
            "-o",
            "type=image,\"name=named:1,other/named:2\"",
            "--metadata-file",
            metadata.to_str().unwrap(),
        ],
    );
    let (id, manifest) = digests(&kiln, "named:1");
    assert_eq!(
        digests(&kiln, "other/named:2"),
        (id.clone(), manifest.clone())
    );
    let metadata = read_json(&metadata);
    assert_eq!(metadata["containerimage.config.digest"], json!(id));
    assert_eq!(metadata["containerimage.digest"], json!(manifest));
    assert_eq!(
        metadata["image.name"],
        json!("docker.io/library/named:1,docker.io/other/named:2")
    );

    // type=local|tar give no image, so no image keys.
    let metadata = kiln.path("local.json");
    build_ok(
        &kiln,
        &dir,
        &[
            "-o",
            &format!("type=local,dest={}", kiln.path("l").display()),
            "--metadata-file",
            metadata.to_str().unwrap(),
        ],
    );
    assert_eq!(read_json(&metadata), json!({}));
}

#[test]
fn bad_outputs_fail_before_the_build() {
    if !root() {
        return;
    }
    let kiln = busybox();
    let dir = context(&kiln, "ctx", DOCKERFILE, &[]);
    let before = listed_images(&kiln);
    for (args, message) in [
        (
            vec!["-o", "type=tar,dest=a.tar", "-o", "type=image"],
            "kiln build takes one --output, got 2: type=tar,dest=a.tar type=image".to_owned(),
        ),
        (
            vec!["-o", "type=image,push=true"],
            "invalid --output \"type=image,push=true\": push=true needs a name: give name=REF or -t NAME[:TAG]".to_owned(),
        ),
        (
            vec!["-o", "type=local,dest=x,compression=gzip"],
            "invalid --output \"type=local,dest=x,compression=gzip\": unknown key \"compression\" (kiln knows type, name, push, store, dest and tar)".to_owned(),
        ),
        (
            vec!["-o", "type=oci,dest=-,tar=false"],
            "invalid --output \"type=oci,dest=-,tar=false\": tar=false writes a directory, which cannot go to stdout".to_owned(),
        ),
    ] {
        let stderr = build_refused(&kiln, &dir, &args);
        assert!(stderr.contains(&message), "{args:?}:\n{stderr}");
    }
    assert_eq!(listed_images(&kiln), before);
    let output: Output = kiln
        .command()
        .args(["build", "-o", "type=tar,dest=-"])
        .arg(&dir)
        .output()
        .unwrap();
    // Not a terminal here: stdout is a pipe, so the tar is written.
    assert!(output.status.success());
}

#[test]
fn what_a_killed_build_left_beside_an_output_directory_is_removed_by_the_next() {
    if !root() {
        return;
    }
    let kiln = busybox();
    let dir = context(&kiln, "ctx", "FROM bb:1\nRUN echo hi > /hi\n", &[]);
    let out = kiln.path("out");
    fs::create_dir_all(&out).unwrap();
    // A dead owner (a start time no process has) left a half-written tree.
    let dead = out.join(format!(".kiln-output-{}-1-abc", std::process::id()));
    fs::create_dir_all(dead.join("etc")).unwrap();
    fs::write(dead.join("etc/half"), "half").unwrap();
    // A live one (this test process, as another kiln would be) stays.
    let live = out.join(format!(
        ".kiln-output-{}-live",
        kiln_store::temp::Owner::current().tag()
    ));
    fs::create_dir_all(&live).unwrap();
    let dest = out.join("fs");
    build_ok(
        &kiln,
        &dir,
        &["-o", &format!("type=local,dest={}", dest.display())],
    );
    assert!(!dead.exists(), "the killed build's directory is gone");
    assert!(live.exists(), "a live build's directory stays");
    assert_eq!(fs::read_to_string(dest.join("hi")).unwrap(), "hi\n");
    let left: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".kiln-output-") && !n.ends_with("-live"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
