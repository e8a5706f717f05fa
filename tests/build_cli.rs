//! End-to-end tests of `kiln build` as root: each builds a Dockerfile on a
//! busybox base image made by the test and checks the built image's files
//! (through `kiln run`) and config (through `kiln inspect` and the store).
//! They need root and kernel namespaces for RUN; CI runs them as root.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness fails loudly"
)]

mod common;

use std::fmt::Write as _;
use std::fs;
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};

use common::Kiln;
use common::build::{build, build_fails, build_ok, busybox, context, sh};
use serde_json::{Value, json};

/// The image's `Config` as `kiln inspect` prints it.
fn config(kiln: &Kiln, image: &str) -> Value {
    serde_json::from_str(&kiln.ok(&["inspect", "-f", "{{json .Config}}", image])).unwrap()
}

/// The image ID.
fn image_id(kiln: &Kiln, image: &str) -> String {
    kiln.ok(&["inspect", "-f", "{{.Id}}", image])
        .trim()
        .to_owned()
}

/// The image's history entries as (`created_by`, `empty_layer`).
fn history(kiln: &Kiln, image: &str) -> Vec<(String, bool)> {
    let store = kiln_store::Store::open(&kiln.root()).unwrap();
    let image = store.resolve(image).unwrap();
    image
        .config
        .history
        .iter()
        .map(|h| (h.created_by.clone().unwrap_or_default(), h.empty_layer))
        .collect()
}

fn docker_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[test]
fn multi_stage_from_stage_copy_from_and_target() {
    let kiln = busybox();
    let dir = context(
        &kiln,
        "ctx",
        "FROM bb:1 AS base\n\
         RUN echo base > /stage-base\n\
         FROM base AS builder\n\
         RUN echo built > /artifact\n\
         FROM bb:1 AS broken\n\
         RUN false\n\
         FROM scratch AS out\n\
         COPY --from=builder /artifact /from-name\n\
         COPY --from=0 /stage-base /from-index\n\
         COPY --from=bb:1 /etc/base-file /from-image\n",
        &[],
    );
    // The default target is the last stage; `broken` is not needed.
    build_ok(&kiln, &dir, "ms:out", &[]);
    let root = kiln.root();
    assert_eq!(
        common::image_file(&root, "ms:out", "from-name").as_deref(),
        Some("built\n")
    );
    assert_eq!(
        common::image_file(&root, "ms:out", "from-index").as_deref(),
        Some("base\n")
    );
    assert_eq!(
        common::image_file(&root, "ms:out", "from-image").as_deref(),
        Some("base\n")
    );
    // FROM scratch: only the three COPY layers, no busybox.
    assert_eq!(common::image_file(&root, "ms:out", "bin/busybox"), None);
    let store = kiln_store::Store::open(&root).unwrap();
    assert_eq!(store.resolve("ms:out").unwrap().manifest.layers.len(), 3);

    // --target builds the named stage (on top of its FROM stage) only.
    build_ok(&kiln, &dir, "ms:builder", &["--target", "builder"]);
    assert_eq!(
        sh(&kiln, "ms:builder", "cat /stage-base /artifact"),
        "base\nbuilt\n"
    );
    // A needed stage failing fails the build, even while another needed
    // stage succeeds in parallel.
    let both = context(
        &kiln,
        "both",
        "FROM bb:1 AS a\nRUN exit 4\nFROM bb:1 AS b\nRUN echo ok\n\
         FROM scratch\nCOPY --from=a /etc/name2 /a\nCOPY --from=b /etc/name2 /b\n",
        &[],
    );
    let stderr = build_fails(&kiln, &both, &["-t", "both:1"]);
    assert!(
        stderr.contains("error: Dockerfile:2:1: process \"/bin/sh -c exit 4\" did not complete successfully: exit code: 4\n  |\n2 | RUN exit 4\n  | ^^^^^^^^^^ in stage a\n"),
        "{stderr}"
    );
    assert!(!kiln.run(&["inspect", "both:1"]).status.success());
    // And the unneeded failing stage fails when it is the target.
    let stderr = build_fails(&kiln, &dir, &["--target", "broken"]);
    assert!(stderr.contains("exit code: 1"), "{stderr}");
}

#[test]
fn args_env_build_args_and_platform_args() {
    let kiln = busybox();
    let dir = context(
        &kiln,
        "ctx",
        "ARG BASE=missing:1\n\
         ARG VERSION=1\n\
         ARG GLOBAL=g\n\
         FROM ${BASE}\n\
         RUN echo \"[$GLOBAL]\" > /global\n\
         ENV P=1\n\
         ENV P=2 Q=$P\n\
         ARG VERSION\n\
         ARG TARGETARCH\n\
         ARG LOCAL=local-default\n\
         ENV APP_VERSION=$VERSION GREETING=\"hello world\"\n\
         RUN echo \"$APP_VERSION|$GREETING|$TARGETARCH|$LOCAL\" > /vars\n",
        &[],
    );
    let stderr = build_ok(
        &kiln,
        &dir,
        "args:1",
        &[
            "--build-arg",
            "BASE=bb:1",
            "--build-arg",
            "VERSION=2",
            "--build-arg",
            "UNUSED=1",
        ],
    );
    assert!(
        stderr.contains("[UNUSED] were not consumed"),
        "no unused build-arg warning:\n{stderr}"
    );
    assert_eq!(
        sh(&kiln, "args:1", "cat /vars"),
        format!("2|hello world|{}|local-default\n", docker_arch())
    );
    // A global ARG is not in scope in a stage that does not redeclare it;
    // ENV sees the values before its own instruction.
    assert_eq!(sh(&kiln, "args:1", "cat /global; echo $P $Q"), "[]\n2 1\n");
    // ENV reaches the config, ARG does not.
    let env = config(&kiln, "args:1")["Env"].clone();
    let env: Vec<String> = serde_json::from_value(env).unwrap();
    assert!(env.contains(&"APP_VERSION=2".to_owned()), "{env:?}");
    assert!(env.contains(&"GREETING=hello world".to_owned()), "{env:?}");
    assert!(!env.iter().any(|e| e.starts_with("VERSION=")), "{env:?}");
    assert!(!env.iter().any(|e| e.starts_with("LOCAL=")), "{env:?}");
    // ENV is visible to `kiln run` of the image too.
    assert_eq!(sh(&kiln, "args:1", "echo $APP_VERSION"), "2\n");
}

#[test]
fn run_forms_shell_heredocs_user_and_workdir() {
    let kiln = busybox();
    let dir = context(
        &kiln,
        "ctx",
        "FROM bb:1\n\
         RUN echo shell > /shell\n\
         RUN [\"sh\", \"-c\", \"echo exec > /exec\"]\n\
         RUN <<EOF\n\
         echo one > /hd1\n\
         echo two > /hd2\n\
         EOF\n\
         RUN <<EOF\n\
         #!/bin/sh\n\
         echo shebang > /shebang\n\
         EOF\n\
         COPY <<-EOF /tabbed\n\
         \t\tindented\n\
         \tEOF\n\
         SHELL [\"/bin/sh\", \"-c\", \"echo wrapped > /wrapped; eval \\\"$1\\\"\", \"wrapper\"]\n\
         RUN echo through-shell > /through\n\
         USER app\n\
         WORKDIR /work/dir\n\
         RUN id -u > /tmp/uid; pwd > /tmp/pwd; (id -G; echo $HOME; hostname) > /tmp/ids\n\
         ENV V=val\n\
         COPY <<EOF /tmp/expanded\n\
         $V\n\
         EOF\n\
         COPY <<\"EOF\" /tmp/quoted\n\
         $V\n\
         EOF\n\
         WORKDIR rel\n\
         RUN pwd > /tmp/pwd2\n",
        &[],
    );
    build_ok(&kiln, &dir, "run:1", &[]);
    // Heredocs expand unless the delimiter is quoted; COPY ignores USER
    // (root-owned without --chown); WORKDIR is relative to the last one.
    assert_eq!(
        sh(
            &kiln,
            "run:1",
            "cat /tmp/expanded /tmp/quoted /tmp/pwd2; stat -c '%u:%g' /tmp/expanded"
        ),
        "val\n$V\n/work/dir/rel\n0:0\n"
    );
    // USER brings the supplementary groups and HOME of /etc/passwd and
    // /etc/group; the hostname is BuildKit's.
    assert_eq!(
        sh(&kiln, "run:1", "cat /tmp/ids"),
        "1000 50\n/home/app\nbuildkitsandbox\n"
    );
    assert_eq!(
        sh(
            &kiln,
            "run:1",
            "cat /shell /exec /hd1 /hd2 /shebang /tabbed /wrapped /through /tmp/uid /tmp/pwd"
        ),
        "shell\nexec\none\ntwo\nshebang\nindented\nwrapped\nthrough-shell\n1000\n/work/dir\n"
    );
    let config = config(&kiln, "run:1");
    assert_eq!(config["User"], "app");
    assert_eq!(config["WorkingDir"], "/work/dir/rel");
    assert_eq!(
        config["Shell"],
        json!([
            "/bin/sh",
            "-c",
            "echo wrapped > /wrapped; eval \"$1\"",
            "wrapper"
        ])
    );
}

#[test]
fn failing_run_reports_exit_code_and_output() {
    let kiln = busybox();
    let dir = context(
        &kiln,
        "ctx",
        "FROM bb:1\nRUN echo first-line; echo last-line-of-output; exit 3\n",
        &[],
    );
    let output = build(&kiln, &["-t", "fail:1", dir.to_str().unwrap()]);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("did not complete successfully: exit code: 3"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "error: Dockerfile:2:1: process \"/bin/sh -c echo first-line; echo last-line-of-output; exit 3\" did not complete successfully: exit code: 3\n  |\n2 | RUN echo first-line; echo last-line-of-output; exit 3\n  | ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\nlast lines of output:\n  > first-line\n  > last-line-of-output\n"
        ),
        "{stderr}"
    );
    // No image is tagged.
    assert!(!kiln.run(&["inspect", "fail:1"]).status.success());
}

#[test]
fn copy_and_add_semantics() {
    let kiln = busybox();
    let dir = context(
        &kiln,
        "ctx",
        "FROM bb:1\n\
         COPY *.txt /glob/\n\
         COPY dir /contents\n\
         COPY a.txt /file-no-slash\n\
         COPY a.txt /newdir/\n\
         COPY a.txt b.txt /multi/\n\
         COPY --chown=app:staff a.txt /owned\n\
         COPY --chown=1000 a.txt /owned-numeric\n\
         COPY --chmod=0640 a.txt /moded\n\
         COPY --link a.txt /linked/\n\
         COPY --exclude=*.log --exclude=b.txt --exclude=etc --exclude=Dockerfile . /excl/\n\
         COPY --parents dir/sub/x.txt /par/\n\
         COPY abs-link /abs\n\
         COPY ../a.txt /up\n\
         COPY esc /esc\n\
         ADD arch.tar.gz /extract/\n\
         COPY --from=bb:1 --chown=app:staff /opt /opt2\n",
        &[
            ("a.txt", "a\n"),
            ("b.txt", "b\n"),
            ("c.log", "c\n"),
            ("dir/y.txt", "y\n"),
            ("dir/sub/x.txt", "x\n"),
            ("etc/hostname", "inside-context\n"),
        ],
    );
    symlink("y.txt", dir.join("dir/link-in-dir")).unwrap();
    symlink("/a.txt", dir.join("abs-link")).unwrap();
    symlink("../../../../../../../../etc/hostname", dir.join("esc")).unwrap();
    // A local tar.gz, auto-extracted by ADD.
    make_tar(&kiln, &dir.join("arch.tar.gz"), "-z");
    build_ok(&kiln, &dir, "copy:1", &[]);
    let out = sh(
        &kiln,
        "copy:1",
        "cd /glob && ls; echo ---; cd /contents && ls -R .; echo ---; \
         readlink /contents/link-in-dir; cat /file-no-slash /newdir/a.txt; ls /multi; \
         stat -c '%n %u:%g %a' /owned /owned-numeric /moded; cat /linked/a.txt; \
         echo ---; cd /excl && ls -A; echo ---; cat /par/dir/sub/x.txt; \
         cat /abs /up /esc /extract/pkg/inner.txt; test -L /abs || echo abs-is-file; \
         stat -c '%n %u:%g' /opt2 /opt2/old",
    );
    let expected = "a.txt\nb.txt\n---\n.:\nlink-in-dir\nsub\ny.txt\n\n./sub:\nx.txt\n---\n\
                    y.txt\na\na\na.txt\nb.txt\n\
                    /owned 1000:50 644\n/owned-numeric 1000:1000 644\n/moded 0:0 640\na\n\
                    ---\na.txt\nabs-link\narch.tar.gz\ndir\nesc\n---\nx\n\
                    a\na\ninside-context\ninner\nabs-is-file\n\
                    /opt2 1000:50\n/opt2/old 1000:50\n";
    assert_eq!(out, expected);
}

/// Serves `routes` (path, body) on a local port, `count` requests;
/// other paths get 404.
fn serve(routes: Vec<(&'static str, Vec<u8>)>, count: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(count) {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).into_owned();
            let path = request.split(' ').nth(1).unwrap_or("").to_owned();
            let (status, body) = routes
                .iter()
                .find(|(p, _)| *p == path)
                .map_or(("404 Not Found", &b"missing"[..]), |(_, b)| {
                    ("200 OK", &b[..])
                });
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
        }
    });
    format!("http://{addr}")
}

/// A tar archive with `pkg/inner.txt`, compressed with `compress` (a
/// tar option such as `-z`, or "" for none).
fn make_tar(kiln: &Kiln, dest: &Path, compress: &str) {
    let src = kiln.path("tarsrc");
    fs::create_dir_all(src.join("pkg")).unwrap();
    fs::write(src.join("pkg/inner.txt"), "inner\n").unwrap();
    let mut command = std::process::Command::new("tar");
    if !compress.is_empty() {
        command.arg(compress);
    }
    let status = command
        .arg("-cf")
        .arg(dest)
        .arg("-C")
        .arg(&src)
        .arg("pkg")
        .status()
        .unwrap();
    assert!(status.success());
}

fn sha256_hex(data: &[u8]) -> String {
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

#[test]
fn add_extracts_local_archives_of_every_compression() {
    let kiln = busybox();
    let dir = context(&kiln, "ctx", "", &[]);
    let mut dockerfile = String::from("FROM bb:1\n");
    let mut script = String::new();
    for (name, flag) in [
        ("plain.tar", ""),
        ("gz.tgz", "-z"),
        ("bz.tar.bz2", "-j"),
        ("xz.tar.xz", "-J"),
        ("zst.tar.zst", "--zstd"),
    ] {
        make_tar(&kiln, &dir.join(name), flag);
        writeln!(dockerfile, "ADD {name} /x/{name}/").unwrap();
        write!(script, "cat /x/{name}/pkg/inner.txt; ").unwrap();
    }
    // COPY never extracts; ADD copies compressed non-tar files as they are.
    dockerfile.push_str("COPY gz.tgz /copied.tgz\nADD notar.gz fake.tar /raw/\n");
    // With --chown every extracted entry gets the owner.
    dockerfile.push_str("ADD --chown=app:staff gz.tgz /owned/\n");
    script.push_str("test -f /copied.tgz && echo copied-as-file; ls /raw; cat /raw/fake.tar; ");
    script.push_str("stat -c '%u:%g %n' /owned/pkg /owned/pkg/inner.txt");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"hello\n").unwrap();
    fs::write(dir.join("notar.gz"), gz.finish().unwrap()).unwrap();
    fs::write(dir.join("fake.tar"), "not a tar\n").unwrap();
    fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    build_ok(&kiln, &dir, "archives:1", &[]);
    assert_eq!(
        sh(&kiln, "archives:1", &script),
        "inner\ninner\ninner\ninner\ninner\ncopied-as-file\nfake.tar\nnotar.gz\nnot a tar\n\
         1000:50 /owned/pkg\n1000:50 /owned/pkg/inner.txt\n"
    );
}

#[test]
fn copy_wildcard_matching_nothing_is_allowed() {
    // The `COPY package.json package-lock.json* ./` idiom: BuildKit's
    // Dockerfile frontend sets AllowEmptyWildcard.
    let kiln = busybox();
    let dir = context(
        &kiln,
        "ctx",
        "FROM bb:1\nCOPY a.txt lock.json* /d/\n",
        &[("a.txt", "a\n")],
    );
    build_ok(&kiln, &dir, "wild:1", &[]);
    assert_eq!(sh(&kiln, "wild:1", "ls /d"), "a.txt\n");
}

#[test]
fn add_url_with_checksum_and_mismatch() {
    let kiln = busybox();
    let body = b"remote content\n".to_vec();
    let sum = sha256_hex(&body);
    let archive = kiln.path("remote.tar.gz");
    make_tar(&kiln, &archive, "-z");
    let archive = fs::read(&archive).unwrap();
    let url = serve(
        vec![("/file.txt", body), ("/remote.tar.gz", archive.clone())],
        8,
    );
    let dir = context(
        &kiln,
        "ctx",
        &format!(
            "FROM bb:1\n\
             ADD --checksum=sha256:{sum} {url}/file.txt /dl/\n\
             ADD {url}/remote.tar.gz /remote/\n"
        ),
        &[],
    );
    // Without the entitlement, the build host's loopback is out of reach.
    let stderr = build_fails(&kiln, &dir, &[]);
    assert!(
        stderr.contains(&format!(
            "downloading {url}/file.txt: io: refusing to connect: 127.0.0.1 is an address of the build host (127.0.0.1), which the Dockerfile may not reach: a build reaches services on its host only with --allow network.host"
        )),
        "{stderr}"
    );
    let host = &["--allow", "network.host"];
    build_ok(&kiln, &dir, "add:1", host);
    // Remote archives are not extracted; URL downloads get mode 600.
    assert_eq!(
        sh(
            &kiln,
            "add:1",
            "cat /dl/file.txt; stat -c '%a %s' /dl/file.txt /remote/remote.tar.gz"
        ),
        format!("remote content\n600 15\n600 {}\n", archive.len())
    );

    let wrong = "0".repeat(64);
    let bad = context(
        &kiln,
        "bad",
        &format!("FROM bb:1\nADD --checksum=sha256:{wrong} {url}/file.txt /dl/\n"),
        &[],
    );
    let stderr = build_fails(&kiln, &bad, host);
    assert!(
        stderr.contains(&format!(
            "digest mismatch for {url}/file.txt: expected sha256:{wrong}, got sha256:{sum}"
        )),
        "{stderr}"
    );
    let missing = context(
        &kiln,
        "missing",
        &format!("FROM bb:1\nADD {url}/nope /dl/\n"),
        &[],
    );
    let stderr = build_fails(&kiln, &missing, host);
    assert!(
        stderr.contains(&format!(
            "downloading {url}/nope: invalid response status 404"
        )),
        "{stderr}"
    );
}

#[test]
fn config_instructions_and_onbuild() {
    let kiln = busybox();
    let dir = context(
        &kiln,
        "ctx",
        "FROM bb:1\n\
         WORKDIR /app/sub\n\
         USER app:staff\n\
         EXPOSE 8080 53/udp\n\
         VOLUME [\"/data\"]\n\
         LABEL a=b \"c d\"=\"e f\"\n\
         MAINTAINER someone <me@example.com>\n\
         STOPSIGNAL SIGINT\n\
         HEALTHCHECK --interval=5s --timeout=2s --retries=4 CMD [\"true\"]\n\
         SHELL [\"/bin/sh\", \"-ec\"]\n\
         CMD [\"echo\", \"cmd\"]\n\
         ENTRYPOINT [\"/bin/echo\"]\n\
         ONBUILD RUN echo triggered > /tmp/onbuild-ran\n",
        &[],
    );
    build_ok(&kiln, &dir, "cfg:1", &["--label", "extra=1"]);
    let config = config(&kiln, "cfg:1");
    assert_eq!(config["WorkingDir"], "/app/sub");
    assert_eq!(config["User"], "app:staff");
    assert_eq!(
        config["ExposedPorts"],
        json!({"53/udp": {}, "8080/tcp": {}})
    );
    assert_eq!(config["Volumes"], json!({"/data": {}}));
    assert_eq!(
        config["Labels"],
        json!({"a": "b", "c d": "e f", "extra": "1"})
    );
    assert_eq!(config["StopSignal"], "SIGINT");
    assert_eq!(
        config["Healthcheck"],
        json!({"Test": ["CMD", "true"], "Interval": 5_000_000_000_u64,
               "Timeout": 2_000_000_000_u64, "Retries": 4})
    );
    assert_eq!(config["Shell"], json!(["/bin/sh", "-ec"]));
    assert_eq!(config["Entrypoint"], json!(["/bin/echo"]));
    // A CMD of the same stage survives a later ENTRYPOINT (BuildKit's
    // cmdSet); an inherited one does not (checked in the child below).
    assert_eq!(config["Cmd"], json!(["echo", "cmd"]));
    assert_eq!(
        config["OnBuild"],
        json!(["RUN echo triggered > /tmp/onbuild-ran"])
    );
    assert_eq!(
        kiln.ok(&["inspect", "-f", "{{.Author}}", "cfg:1"]).trim(),
        "someone <me@example.com>"
    );
    // The entrypoint echoes its arguments.
    assert_eq!(kiln.ok(&["run", "--rm", "cfg:1", "hi"]), "hi\n");

    // The trigger runs in a build FROM the image, and is not inherited.
    let child = context(
        &kiln,
        "child",
        "FROM cfg:1\nRUN test -d /app/sub && pwd > /tmp/pwd\nENTRYPOINT []\n",
        &[],
    );
    build_ok(&kiln, &child, "child:1", &[]);
    assert_eq!(
        sh(&kiln, "child:1", "cat /tmp/onbuild-ran /tmp/pwd"),
        "triggered\n/app/sub\n"
    );
    let shell_form = context(&kiln, "shellform", "FROM cfg:1\nCMD echo child\n", &[]);
    build_ok(&kiln, &shell_form, "child:2", &[]);
    assert_eq!(
        child_config(&kiln, "child:2")["Cmd"],
        json!(["/bin/sh", "-ec", "echo child"]),
        "shell-form CMD goes through the inherited SHELL"
    );
    let child = child_config(&kiln, "child:1");
    assert_eq!(child["OnBuild"], Value::Null);
    assert_eq!(
        child["Cmd"],
        Value::Null,
        "ENTRYPOINT resets the base's CMD"
    );
}

fn child_config(kiln: &Kiln, image: &str) -> Value {
    config(kiln, image)
}

#[test]
fn dockerignore_and_dockerfile_specific_ignore() {
    let kiln = busybox();
    let dir = context(
        &kiln,
        "ctx",
        "FROM bb:1\nCOPY . /ctx/\n",
        &[
            (".dockerignore", "*.secret\n!keep.secret\nbuild\n"),
            ("a.secret", "s\n"),
            ("keep.secret", "k\n"),
            ("build/out", "o\n"),
            ("app.txt", "app\n"),
        ],
    );
    build_ok(&kiln, &dir, "ign:1", &[]);
    assert_eq!(
        sh(&kiln, "ign:1", "cd /ctx && ls -A"),
        ".dockerignore\nDockerfile\napp.txt\nkeep.secret\n"
    );
    // A Dockerfile outside the context with its own ignore file, which
    // replaces .dockerignore.
    let other = kiln.path("other");
    fs::create_dir_all(&other).unwrap();
    let dockerfile = other.join("My.Dockerfile");
    fs::write(&dockerfile, "FROM bb:1\nCOPY . /ctx/\n").unwrap();
    fs::write(
        other.join("My.Dockerfile.dockerignore"),
        "app.txt\nDockerfile\n",
    )
    .unwrap();
    build_ok(&kiln, &dir, "ign:2", &["-f", dockerfile.to_str().unwrap()]);
    assert_eq!(
        sh(&kiln, "ign:2", "cd /ctx && ls -A"),
        ".dockerignore\na.secret\nbuild\nkeep.secret\n"
    );
}

#[test]
fn layers_whiteouts_and_history() {
    let kiln = busybox();
    let dir = context(
        &kiln,
        "ctx",
        "FROM bb:1\n\
         ARG A=1\n\
         RUN rm /etc/base-file\n\
         RUN rm -rf /opt && mkdir /opt && echo new > /opt/new\n\
         ENV FOO=bar\n\
         RUN true\n\
         COPY f.txt /f.txt\n\
         RUN echo $A > /hi\n",
        &[("f.txt", "f\n")],
    );
    build_ok(&kiln, &dir, "layers:1", &["--build-arg", "A=2"]);
    // The deleted file is whited out, the replaced directory is opaque.
    assert_eq!(
        sh(
            &kiln,
            "layers:1",
            "test -e /etc/base-file && echo present || echo absent; ls /opt; cat /hi /etc/name2"
        ),
        "absent\nnew\n2\nbase2\n"
    );
    let history = history(&kiln, "layers:1");
    let tail: Vec<_> = history[history.len() - 7..].to_vec();
    let run = |cmd: &str| format!("RUN |1 A=2 /bin/sh -c {cmd} # buildkit");
    assert_eq!(
        tail,
        vec![
            ("ARG A=2".to_owned(), true),
            (run("rm /etc/base-file"), false),
            (
                run("rm -rf /opt && mkdir /opt && echo new > /opt/new"),
                false
            ),
            ("ENV FOO=bar".to_owned(), true),
            // An empty diff gets a history entry but no layer.
            (run("true"), true),
            ("COPY f.txt /f.txt # buildkit".to_owned(), false),
            (run("echo $A > /hi"), false),
        ]
    );
    let store = kiln_store::Store::open(&kiln.root()).unwrap();
    let image = store.resolve("layers:1").unwrap();
    let base = store.resolve("bb:1").unwrap();
    assert_eq!(image.manifest.layers.len(), base.manifest.layers.len() + 4);
    assert_eq!(
        image.config.rootfs.diff_ids.len(),
        image.manifest.layers.len()
    );
    assert_eq!(
        image
            .config
            .history
            .iter()
            .filter(|h| !h.empty_layer)
            .count(),
        image.manifest.layers.len()
    );
}

#[test]
fn cache_hits_invalidation_no_cache_and_rmi() {
    let kiln = busybox();
    let dir = context(
        &kiln,
        "ctx",
        "FROM bb:1\n\
         RUN cat /proc/sys/kernel/random/uuid > /t1\n\
         COPY f.txt /f.txt\n\
         RUN cat /proc/sys/kernel/random/uuid > /t2\n",
        &[("f.txt", "one\n")],
    );
    let read = |tag: &str| sh(&kiln, tag, "cat /t1 /f.txt /t2");
    build_ok(&kiln, &dir, "cache:1", &[]);
    let id1 = image_id(&kiln, "cache:1");
    let first = read("cache:1");

    // A rebuild is all cached and gives the same image.
    let stderr = build_ok(&kiln, &dir, "cache:2", &[]);
    // The plain progress marks cached steps (`#N CACHED`; `StepCached`
    // until the progress renderer lands).
    assert_eq!(
        stderr.to_uppercase().matches("CACHED {").count() + stderr.matches(" CACHED").count(),
        3,
        "{stderr}"
    );
    assert_eq!(read("cache:2"), first);
    assert_eq!(image_id(&kiln, "cache:2"), id1);

    // The cache survives removing the images.
    kiln.ok(&["rmi", "cache:1", "cache:2"]);
    build_ok(&kiln, &dir, "cache:3", &[]);
    assert_eq!(read("cache:3"), first);
    assert_eq!(image_id(&kiln, "cache:3"), id1);
    assert_eq!(
        history(&kiln, "cache:3").len(),
        history(&kiln, "bb:1").len() + 3
    );

    // A changed context file reruns COPY and later steps only.
    fs::write(dir.join("f.txt"), "two\n").unwrap();
    build_ok(&kiln, &dir, "cache:4", &[]);
    let changed = read("cache:4");
    let (a, b): (Vec<_>, Vec<_>) = (first.lines().collect(), changed.lines().collect());
    assert_eq!(a[0], b[0], "the RUN before COPY reran");
    assert_eq!(b[1], "two");
    assert_ne!(a[2], b[2], "the RUN after COPY was cached");

    // --no-cache reruns everything.
    build_ok(&kiln, &dir, "cache:5", &["--no-cache"]);
    let fresh = read("cache:5");
    let c: Vec<_> = fresh.lines().collect();
    assert_ne!(b[0], c[0]);
    assert_ne!(b[2], c[2]);
}

#[test]
fn cached_rebuild_gives_the_same_image_id() {
    let kiln = busybox();
    let dir = context(
        &kiln,
        "ctx",
        "FROM bb:1\nRUN echo a > /a\nCOPY f.txt /f.txt\nENV X=1\n",
        &[("f.txt", "f\n")],
    );
    build_ok(&kiln, &dir, "same:1", &[]);
    build_ok(&kiln, &dir, "same:2", &[]);
    assert_eq!(image_id(&kiln, "same:1"), image_id(&kiln, "same:2"));
}

#[test]
fn a_change_invalidates_only_dependent_stages_and_mtime_is_ignored() {
    let kiln = busybox();
    let dir = context(
        &kiln,
        "ctx",
        "FROM bb:1 AS x\n\
         COPY fx.txt /fx.txt\n\
         RUN cat /proc/sys/kernel/random/uuid > /tx\n\
         FROM bb:1 AS y\n\
         RUN cat /proc/sys/kernel/random/uuid > /ty\n\
         FROM y\n\
         COPY --from=x /tx /fx.txt /\n\
         RUN cat /proc/sys/kernel/random/uuid > /tz\n",
        &[("fx.txt", "one\n")],
    );
    let read = |tag: &str| -> Vec<String> {
        sh(&kiln, tag, "cat /tx /ty /fx.txt /tz")
            .lines()
            .map(str::to_owned)
            .collect()
    };
    build_ok(&kiln, &dir, "inv:1", &[]);
    let first = read("inv:1");

    // Same content, new mtime: everything stays cached.
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(dir.join("fx.txt"), "one\n").unwrap();
    build_ok(&kiln, &dir, "inv:2", &[]);
    assert_eq!(read("inv:2"), first);

    // New content: stage x and the final stage rerun, stage y does not.
    fs::write(dir.join("fx.txt"), "two\n").unwrap();
    build_ok(&kiln, &dir, "inv:3", &[]);
    let third = read("inv:3");
    assert_ne!(third[0], first[0], "stage x was cached");
    assert_eq!(third[1], first[1], "independent stage y reran");
    assert_eq!(third[2], "two");
    assert_ne!(third[3], first[3], "the final RUN was cached");
}

#[test]
fn no_cache_filter_reruns_only_that_stage() {
    let kiln = busybox();
    let dir = context(
        &kiln,
        "ctx",
        "FROM bb:1 AS a\n\
         RUN cat /proc/sys/kernel/random/uuid > /ta\n\
         FROM a AS b\n\
         RUN cat /proc/sys/kernel/random/uuid > /tb\n",
        &[],
    );
    build_ok(&kiln, &dir, "ncf:1", &[]);
    let first = sh(&kiln, "ncf:1", "cat /ta /tb");
    build_ok(&kiln, &dir, "ncf:2", &["--no-cache-filter", "b"]);
    let second = sh(&kiln, "ncf:2", "cat /ta /tb");
    let (a, b): (Vec<_>, Vec<_>) = (first.lines().collect(), second.lines().collect());
    assert_eq!(a[0], b[0], "stage a was not cached");
    assert_ne!(a[1], b[1], "stage b was cached");
}

#[test]
fn quiet_iidfile_outputs_and_stdin() {
    let kiln = busybox();
    let dir = context(
        &kiln,
        "ctx",
        "FROM bb:1\nCOPY f.txt /f.txt\n",
        &[("f.txt", "f\n")],
    );
    let iidfile = kiln.path("iid");
    let oci = kiln.path("oci.tar");
    let docker = kiln.path("docker.tar");
    let output = kiln
        .command()
        .args(["build", "-q", "-t", "out:1", "--iidfile"])
        .arg(&iidfile)
        .arg(dir.to_str().unwrap())
        .output()
        .unwrap();
    assert!(output.status.success());
    let id = image_id(&kiln, "out:1");
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(String::from_utf8(output.stdout).unwrap(), format!("{id}\n"));
    assert_eq!(fs::read_to_string(&iidfile).unwrap(), id);

    for (kind, path) in [("oci", &oci), ("docker", &docker)] {
        let spec = format!("type={kind},dest={}", path.display());
        build_ok(&kiln, &dir, "out:1", &["--output", &spec]);
        let built = image_id(&kiln, "out:1");
        let other = Kiln::new();
        other.ok(&["load", "-i", path.to_str().unwrap()]);
        assert_eq!(image_id(&other, "out:1"), built, "{kind} archive");
        assert_eq!(
            common::image_file(&other.root(), "out:1", "f.txt").as_deref(),
            Some("f\n")
        );
    }

    // -f - reads the Dockerfile from stdin.
    let output = kiln
        .command()
        .args(["build", "-q", "-t", "stdin:1", "-f", "-"])
        .arg(&dir)
        .write_stdin("FROM bb:1\nCOPY f.txt /from-stdin-dockerfile\n")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(sh(&kiln, "stdin:1", "cat /from-stdin-dockerfile"), "f\n");

    // `-` takes the context as a tar on stdin.
    fs::write(
        dir.join("Dockerfile"),
        "FROM bb:1\nCOPY f.txt /from-tar-context\n",
    )
    .unwrap();
    let tar = std::process::Command::new("tar")
        .arg("-cf")
        .arg("-")
        .arg("-C")
        .arg(&dir)
        .arg(".")
        .output()
        .unwrap();
    assert!(tar.status.success());
    let output = kiln
        .command()
        .args(["build", "-q", "-t", "tarctx:1", "-"])
        .write_stdin(tar.stdout)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(sh(&kiln, "tarctx:1", "cat /from-tar-context"), "f\n");

    // `-` with a plain Dockerfile on stdin: no context at all.
    let output = kiln
        .command()
        .args(["build", "-q", "-t", "noctx:1", "-"])
        .write_stdin("FROM bb:1\nRUN echo no-context > /n\n")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(sh(&kiln, "noctx:1", "cat /n"), "no-context\n");
}

#[test]
fn source_date_epoch_gives_reproducible_images() {
    let first = busybox();
    let archive = first.path("bb.tar");
    first.ok(&["save", "-o", archive.to_str().unwrap(), "bb:1"]);
    let second = Kiln::new();
    second.ok(&["load", "-i", archive.to_str().unwrap()]);
    let mut ids = Vec::new();
    for kiln in [&first, &second] {
        let dir = context(
            kiln,
            "sde",
            "FROM bb:1\nRUN echo x > /x\nCOPY f.txt /f.txt\nENV A=b\n",
            &[("f.txt", "f\n")],
        );
        let mut command = kiln.command();
        // The first through the environment, the second as a build-arg.
        if ids.is_empty() {
            command.env("SOURCE_DATE_EPOCH", "1700000000");
            command.args(["build", "-t", "sde:1"]);
        } else {
            command.args(["build", "--build-arg", "SOURCE_DATE_EPOCH=1700000000"]);
            command.args(["-t", "sde:1"]);
        }
        let output = command.arg(&dir).output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        ids.push(image_id(kiln, "sde:1"));
        assert_eq!(
            kiln.ok(&["inspect", "-f", "{{.Created}}", "sde:1"]).trim(),
            "2023-11-14T22:13:20Z"
        );
    }
    assert_eq!(ids[0], ids[1]);
}

#[test]
fn bad_input_is_named() {
    let kiln = busybox();
    let missing = kiln.path("nope");
    let stderr = build_fails(&kiln, &missing, &[]);
    assert!(
        stderr.contains(&format!(
            "unable to prepare context: path \"{}\" not found",
            missing.display()
        )),
        "{stderr}"
    );

    let empty = kiln.path("empty");
    fs::create_dir_all(&empty).unwrap();
    let stderr = build_fails(&kiln, &empty, &[]);
    assert!(
        stderr.contains(&format!(
            "failed to read dockerfile: open {}: no such file or directory",
            empty.join("Dockerfile").display()
        )),
        "{stderr}"
    );

    let dir = context(
        &kiln,
        "ctx",
        "FROM bb:1\nCOPY src/nope.txt /\n",
        &[("src/near.txt", "n\n"), ("src/other.txt", "o\n")],
    );
    let stderr = build_fails(&kiln, &dir, &[]);
    assert!(
        stderr.contains("error: Dockerfile:2:1: COPY source \"/src/nope.txt\": not found"),
        "{stderr}"
    );
    assert!(
        stderr.contains("near.txt") && stderr.contains("other.txt"),
        "{stderr}"
    );

    let stderr = build_fails(&kiln, &dir, &["--target", "three"]);
    assert!(
        stderr.contains("target stage \"three\" could not be found"),
        "{stderr}"
    );

    let dir = context(&kiln, "base", "FROM ghost:7\nRUN true\n", &[]);
    let stderr = build_fails(&kiln, &dir, &[]);
    assert!(stderr.contains("ghost:7"), "{stderr}");
    assert!(stderr.contains("kiln load"), "{stderr}");
    assert!(stderr.contains("kiln import"), "{stderr}");

    let stderr = build_fails(&kiln, &dir, &["--build-arg", "=x"]);
    assert!(
        stderr
            .contains("invalid --build-arg \"=x\": the name is empty (use --build-arg NAME=VALUE)"),
        "{stderr}"
    );

    // Unknown names are 0 (as BuildKit's file operations make them, see
    // tests/run_mounts.rs); a value that is no USER[:GROUP] is an error.
    let dir = context(
        &kiln,
        "chown",
        "FROM bb:1\nCOPY --chown=:staff a.txt /a\n",
        &[("a.txt", "a\n")],
    );
    let stderr = build_fails(&kiln, &dir, &[]);
    assert!(
        stderr.contains("error: Dockerfile:2:1: invalid --chown value \":staff\"\n  |\n2 | COPY --chown=:staff a.txt /a\n  | ^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"),
        "{stderr}"
    );

    for (spec, message) in [
        ("type=cacheonly", "unsupported type \"cacheonly\""),
        ("type=tar,oops", "\"oops\" is not KEY=VALUE"),
        ("type=oci", "type=oci needs dest="),
        ("dest=x.tar", "missing type="),
        ("type=oci,dest=x.tar,push=true", "type=oci takes no push="),
    ] {
        let stderr = build_fails(&kiln, &dir, &["--output", spec]);
        assert!(
            stderr.contains(&format!("invalid --output \"{spec}\": {message}")),
            "{spec}: {stderr}"
        );
    }
}

#[test]
fn ctrl_c_stops_the_build_cleanly() {
    let kiln = busybox();
    // Two stages in parallel: one sleeping in RUN, one that would finish.
    let dir = context(
        &kiln,
        "interrupt",
        "FROM bb:1 AS slow\nRUN sleep 41.5\nFROM bb:1 AS other\nRUN echo other > /o\nFROM slow\nCOPY --from=other /o /o\n",
        &[],
    );
    let mut child = kiln.spawn(&[
        "build",
        "--progress=plain",
        "-t",
        "interrupted:1",
        dir.to_str().unwrap(),
    ]);
    // Wait until the RUN's process is up, then interrupt kiln as a
    // terminal's Ctrl-C would.
    let started = std::time::Instant::now();
    while common::processes_with("sleep 41.5").is_empty() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the RUN step never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: kill with a pid we spawned and a valid signal.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success(), "build should fail when interrupted");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "kiln did not stop the RUN promptly"
    );
    assert!(stderr.contains("build cancelled"), "{stderr}");
    // Nothing left behind: no container process, no mount, no temp dir,
    // no tag; the store checks clean and builds again.
    let leftovers = common::processes_with("sleep 41.5");
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let root = kiln.root();
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(root.to_str().unwrap()),
        "mounts left under the store:\n{mounts}"
    );
    let tmp: Vec<_> = fs::read_dir(root.join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "temporary files left: {tmp:?}");
    assert!(
        kiln.fails(&["image", "inspect", "interrupted:1"])
            .contains("no such image")
    );
    kiln.ok(&["system", "check"]);
    let again = context(&kiln, "after", "FROM bb:1\nRUN echo ok > /ok\n", &[]);
    build_ok(&kiln, &again, "after:1", &[]);
    assert_eq!(sh(&kiln, "after:1", "cat /ok"), "ok\n");
}

#[test]
fn secret_mounts_reach_the_run_and_nothing_else() {
    let kiln = busybox();
    let secret_file = kiln.path("token.txt");
    fs::write(&secret_file, "s3cret-value").unwrap();
    let dir = context(
        &kiln,
        "secrets",
        "FROM bb:1\n\
         RUN --mount=type=secret,id=tok test \"$(tr a-z A-Z < /run/secrets/tok)\" = S3CRET-VALUE && \
             stat -c '%a %u' /run/secrets/tok > /default-file\n\
         RUN --mount=type=secret,id=tok,target=/etc/app.key,mode=0440,uid=1000 \
             stat -c '%a %u' /etc/app.key > /custom-file\n\
         RUN --mount=type=secret,id=tok,env=TOKEN sh -c 'test \"$(echo $TOKEN | tr a-z A-Z)\" = S3CRET-VALUE && \
             test ! -e /run/secrets/tok && echo env > /env-only'\n\
         RUN --mount=type=secret,id=absent sh -c 'test ! -e /run/secrets/absent && echo skipped > /optional'\n",
        &[],
    );
    let src = format!("id=tok,src={}", secret_file.display());
    let stderr = build_ok(&kiln, &dir, "secrets:1", &["--secret", &src]);
    assert!(!stderr.contains("s3cret-value"), "{stderr}");
    assert_eq!(
        sh(
            &kiln,
            "secrets:1",
            "cat /default-file /custom-file /env-only /optional"
        ),
        "400 0\n440 1000\nenv\nskipped\n"
    );
    // No trace of the secret or its mount points in the image.
    assert_eq!(
        sh(
            &kiln,
            "secrets:1",
            "ls -a /run/secrets /etc/app.key 2>&1 | wc -l; busybox grep -rl s3cret-value /etc /tmp /opt /default-file /custom-file | wc -l"
        ),
        "2\n0\n"
    );
    let inspect = kiln.ok(&["inspect", "secrets:1"]);
    assert!(
        !inspect.contains("s3cret") && !inspect.contains("TOKEN"),
        "{inspect}"
    );
    // The secret's value is not in the cache key: a new value hits.
    fs::write(&secret_file, "other-value").unwrap();
    let again = build_ok(&kiln, &dir, "secrets:2", &["--secret", &src]);
    assert!(again.contains("0 steps run"), "{again}");

    // The secret comes from a variable too (env=, or the id's name).
    let by_env = context(
        &kiln,
        "secrets-env",
        "FROM bb:1\nRUN --mount=type=secret,id=API_KEY,required test \"$(cat /run/secrets/API_KEY)\" = from-env\n",
        &[],
    );
    let output = kiln
        .command()
        .env("API_KEY", "from-env")
        .args([
            "build",
            "--progress=plain",
            "--secret",
            "id=API_KEY",
            "-t",
            "secrets:3",
        ])
        .arg(&by_env)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Bad input names what is wrong.
    let err = build_fails(&kiln, &by_env, &[]);
    assert!(
        err.contains("secret API_KEY: not found (RUN --mount=type=secret,required needs it"),
        "{err}"
    );
    let err = build_fails(
        &kiln,
        &by_env,
        &["--secret", "id=API_KEY,src=/no/such/file"],
    );
    assert!(
        err.contains(
            "invalid --secret \"id=API_KEY,src=/no/such/file\": cannot read /no/such/file"
        ),
        "{err}"
    );
    let err = build_fails(&kiln, &by_env, &["--secret", "src=/etc/hostname"]);
    assert!(err.contains("the id is missing"), "{err}");
    let err = build_fails(&kiln, &by_env, &["--secret", "id=x,color=red"]);
    assert!(err.contains("unexpected key \"color\""), "{err}");
    let err = build_fails(&kiln, &by_env, &["--secret", "id=KILN_NO_SUCH_VARIABLE"]);
    assert!(
        err.contains("environment variable KILN_NO_SUCH_VARIABLE is not set"),
        "{err}"
    );
}

/// Kills a build if the test fails half-way, so no container is left
/// waiting forever.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn run_output_is_shown_while_the_step_runs() {
    let kiln = busybox();
    // The RUN prints a line, then waits for a file the test creates in the
    // container's /tmp (through /proc/PID/root) only after it has seen that
    // line: if output came only at the end of the step, the line would
    // never arrive.
    let dir = context(
        &kiln,
        "live",
        "FROM bb:1\nRUN sh -c 'echo first-$((1+1)); echo err-$((2+2)) >&2; \
         while [ ! -e /tmp/go ]; do sleep 0.05; done; printf tail-$((3+3))' live-wait-marker\n",
        &[],
    );
    let mut child = KillOnDrop(kiln.spawn(&[
        "build",
        "--progress=plain",
        "-t",
        "live:1",
        dir.to_str().unwrap(),
    ]));
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap();
            let _ = tx.send(line.clone());
        }
    });
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(std::time::Duration::from_mins(1)) {
            Ok(line) => {
                // The output line, not the step's header quoting the command.
                let done = line.ends_with(" first-2");
                seen.push(line);
                if done {
                    break;
                }
            }
            Err(e) => panic!(
                "no live RUN output within 60 s ({e}); saw:\n{}",
                seen.join("\n")
            ),
        }
    }
    // BuildKit's plain shape: `#N <seconds> <line>`.
    let first = seen.last().unwrap();
    assert!(
        first.starts_with('#') && first.split(' ').nth(1).unwrap().contains('.'),
        "{first}"
    );
    // The RUN's shell and the inner one: both see the container's root.
    let pid = common::pids_with("live-wait-marker");
    assert!(!pid.is_empty(), "the waiting RUN process");
    common::touch_as_kiln(Path::new(&format!("/proc/{}/root/tmp/go", pid[0])));
    let status = child.0.wait().unwrap();
    reader.join().unwrap();
    seen.extend(rx.try_iter());
    let all = seen.join("\n");
    assert!(status.success(), "{all}");
    assert!(all.lines().any(|l| l.ends_with(" err-4")), "{all}");
    // An unfinished last line is still shown.
    assert!(all.lines().any(|l| l.ends_with(" tail-6")), "{all}");
}

/// The layers' `diff_id`s of an image.
fn diff_ids(kiln: &Kiln, image: &str) -> Vec<String> {
    let store = kiln_store::Store::open(&kiln.root()).unwrap();
    store.resolve(image).unwrap().config.rootfs.diff_ids
}

/// Builds `dir` as `tag` with `SOURCE_DATE_EPOCH` (so that layers do not
/// depend on when they were made) and debug logs; returns stderr.
fn build_logged(kiln: &Kiln, dir: &Path, tag: &str, extra: &[&str]) -> String {
    let output = kiln
        .command()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["--log-level", "debug", "build", "-t", tag])
        .args(extra)
        .arg(dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "build {tag} failed:\n{stderr}");
    stderr
}

/// `touch -h -d @SECONDS` on every path.
fn touch_at(paths: &[&Path], seconds: i64) {
    let status = std::process::Command::new("touch")
        .args(["-h", "-d", &format!("@{seconds}")])
        .args(paths)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn incremental_copy_links_unchanged_files_and_equals_a_cold_build() {
    let kiln = busybox();
    let dir = context(
        &kiln,
        "inc",
        "FROM bb:1\nWORKDIR /src\nCOPY . .\n",
        &[
            ("a.txt", "aaaa\n"),
            ("sub/b.txt", "bbbb\n"),
            ("sub/deep/c.txt", "cccc\n"),
            ("sub/deep/e.txt", "eeee\n"),
            ("d.sh", "#!/bin/sh\n"),
        ],
    );
    fs::set_permissions(dir.join("d.sh"), fs::Permissions::from_mode(0o750)).unwrap();
    let all: Vec<PathBuf> = [
        "",
        "Dockerfile",
        "a.txt",
        "sub",
        "sub/b.txt",
        "sub/deep",
        "sub/deep/c.txt",
        "sub/deep/e.txt",
        "d.sh",
    ]
    .iter()
    .map(|p| dir.join(p))
    .collect();
    touch_at(
        &all.iter().map(PathBuf::as_path).collect::<Vec<_>>(),
        1_600_000_000,
    );
    // Files changed less than a second before a build are not trusted to
    // be unchanged by the next one (filesystems with whole-second times).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let first = build_logged(&kiln, &dir, "inc:1", &[]);
    assert!(!first.contains("unchanged files from"), "{first}");

    // A size change, a content change with size and mtime forced back (only
    // the ctime tells), a new file and a removed one.
    fs::write(dir.join("a.txt"), "aaaa-changed\n").unwrap();
    fs::write(dir.join("sub/deep/c.txt"), "CCCC\n").unwrap();
    touch_at(&[&dir.join("sub/deep/c.txt")], 1_600_000_000);
    fs::write(dir.join("f.txt"), "new\n").unwrap();
    fs::remove_file(dir.join("sub/deep/e.txt")).unwrap();
    let second = build_logged(&kiln, &dir, "inc:2", &[]);
    // Dockerfile, sub/b.txt and d.sh.
    assert!(second.contains("linked 3 unchanged files from"), "{second}");
    assert_eq!(
        sh(
            &kiln,
            "inc:2",
            "cat /src/a.txt /src/sub/b.txt /src/sub/deep/c.txt /src/f.txt; \
             ls /src/sub/deep; stat -c %a /src/d.sh"
        ),
        "aaaa-changed\nbbbb\nCCCC\nnew\nc.txt\n750\n"
    );

    // The same context built from scratch gives the same layers.
    let cold = build_logged(&kiln, &dir, "inc:cold", &["--no-cache"]);
    assert!(!cold.contains("unchanged files from"), "{cold}");
    let (incremental, scratch) = (diff_ids(&kiln, "inc:2"), diff_ids(&kiln, "inc:cold"));
    assert_eq!(incremental, scratch);
    assert_ne!(diff_ids(&kiln, "inc:1"), incremental);

    // The rebuild's snapshot shares the unchanged file with the first one.
    let snapshot = |image: &str| common::image_snapshots(&kiln.root(), image).pop().unwrap();
    let old = fs::metadata(snapshot("inc:1").join("src/sub/b.txt")).unwrap();
    let new = fs::metadata(snapshot("inc:2").join("src/sub/b.txt")).unwrap();
    assert_eq!(old.ino(), new.ino());
    let old_c = fs::metadata(snapshot("inc:1").join("src/sub/deep/c.txt")).unwrap();
    let new_c = fs::metadata(snapshot("inc:2").join("src/sub/deep/c.txt")).unwrap();
    assert_ne!(old_c.ino(), new_c.ino());
}

/// The media types of an image's layers, read from the store's OCI layout.
fn layer_media_types(kiln: &Kiln, reference: &str) -> Vec<String> {
    let root = kiln.root();
    let index: Value =
        serde_json::from_str(&fs::read_to_string(root.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == reference)
        .expect("the reference is in index.json");
    let hex = entry["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let manifest: Value =
        serde_json::from_str(&fs::read_to_string(root.join("blobs/sha256").join(hex)).unwrap())
            .unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn network_compression_json_progress_and_cache_commands() {
    let kiln = busybox();
    // --network none: RUN sees only the loopback interface.
    let dir = context(
        &kiln,
        "net",
        "FROM bb:1\nRUN ls /sys/class/net > /nets\n",
        &[],
    );
    build_ok(&kiln, &dir, "net:none", &["--network", "none"]);
    assert_eq!(sh(&kiln, "net:none", "cat /nets"), "lo\n");
    // `bridge` is Docker's name for the default; an unknown network is
    // refused in Docker's words.
    build_ok(&kiln, &dir, "net:bridge", &["--network", "bridge"]);
    assert_eq!(sh(&kiln, "net:bridge", "cat /nets"), "eth0\nlo\n");
    assert!(build_fails(&kiln, &dir, &["--network", "bogus"]).contains("network bogus not found"));

    // --compression: new layers are stored compressed as asked, and the
    // image still runs.
    let dir = context(
        &kiln,
        "compress",
        "FROM bb:1\nCOPY data.txt /data.txt\n",
        &[("data.txt", "compress me\n")],
    );
    for (algorithm, suffix) in [("gzip", "+gzip"), ("zstd", "+zstd"), ("none", ".tar")] {
        let tag = format!("compressed:{algorithm}");
        build_ok(
            &kiln,
            &dir,
            &tag,
            &["--no-cache", "--compression", algorithm],
        );
        let types = layer_media_types(&kiln, &format!("docker.io/library/{tag}"));
        assert!(
            types.last().unwrap().ends_with(suffix),
            "{algorithm}: {types:?}"
        );
        assert_eq!(sh(&kiln, &tag, "cat /data.txt"), "compress me\n");
    }
    assert!(
        build_fails(&kiln, &dir, &["--compression", "lz4"])
            .contains("invalid --compression \"lz4\": expected none, gzip or zstd")
    );

    // --progress=json: one JSON object per line, ending with the summary.
    let dir = context(
        &kiln,
        "json",
        "FROM bb:1\nRUN echo out && echo made > /made\n",
        &[],
    );
    let stderr = build_ok(&kiln, &dir, "json:1", &["--progress=json"]);
    let events: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).expect("each progress line is JSON"))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"step_started"), "{kinds:?}");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "step_output" && e["line"] == "out"),
        "{stderr}"
    );
    let last = events.last().unwrap();
    assert_eq!(last["event"], "finished");
    assert_eq!(last["steps_run"], 1);
    assert!(
        build_fails(&kiln, &dir, &["--progress=fancy"]).contains("invalid progress mode \"fancy\"")
    );

    // kiln cache: the records of real builds are listed and pruned; after
    // a prune the same build runs its steps again.
    let listing = kiln.ok(&["cache", "ls", "--no-trunc"]);
    assert!(
        listing.contains("RUN /bin/sh -c echo out && echo made > /made"),
        "{listing}"
    );
    let du = kiln.ok(&["cache", "du"]);
    assert!(du.contains("Total:"), "{du}");
    let pruned = kiln.ok(&["cache", "prune", "-a", "-f"]);
    assert!(pruned.contains("Total:"), "{pruned}");
    assert_eq!(kiln.ok(&["cache", "ls", "-q"]), "");
    let stderr = build_ok(&kiln, &dir, "json:2", &["--progress=plain"]);
    assert!(stderr.contains("1 step run, 0 cached"), "{stderr}");
    assert_eq!(sh(&kiln, "json:2", "cat /made"), "made\n");
}

#[test]
fn identical_layers_each_get_the_snapshot_of_their_chain() {
    let kiln = busybox();
    let files = [("sub/f", "f\n"), ("other", "o\n")];
    // The directory a COPY fills gets the time of the copy, so the same
    // layer twice needs its times clamped: two steps a second apart (a
    // loaded machine) made two layers.
    let epoch = ["--build-arg", "SOURCE_DATE_EPOCH=1700000000"];
    // The third COPY used to mount one snapshot directory twice (ELOOP).
    let dir = context(
        &kiln,
        "same-scratch",
        "FROM scratch\nCOPY sub sub\nCOPY sub sub\nCOPY other /x\n",
        &files,
    );
    build_ok(&kiln, &dir, "same:scratch", &epoch);
    let ids = diff_ids(&kiln, "same:scratch");
    assert_eq!(ids[0], ids[1]);
    assert_eq!(
        common::image_file(&kiln.root(), "same:scratch", "x").as_deref(),
        Some("o\n")
    );
    // Three identical layers in a row under a RUN (which used to fail
    // with EINVAL), and identical layers around one deleting their files.
    // (A directory made again over its whiteout is opaque, which makes
    // another layer: the deleted one is a file.)
    for (tag, dockerfile, script, seen) in [
        (
            "same:row",
            "FROM bb:1\nCOPY sub /sub\nCOPY sub /sub\nCOPY sub /sub\nRUN cat /sub/f > /seen\n",
            "cat /sub/f /seen",
            "f\nf\n",
        ),
        (
            "same:deleted",
            "FROM bb:1\nCOPY other /x\nRUN rm /x\nCOPY other /x\nRUN cat /x > /seen\n",
            "cat /x /seen",
            "o\no\n",
        ),
    ] {
        let dir = context(&kiln, tag, dockerfile, &files);
        build_ok(&kiln, &dir, tag, &epoch);
        let ids = diff_ids(&kiln, tag);
        assert_eq!(ids[1], ids[3], "{tag}");
        assert_eq!(sh(&kiln, tag, script), seen, "{tag}");
        // From the cache, with every snapshot gone, the chains are made
        // again from the layers.
        kiln.ok(&["rmi", tag]);
        fs::remove_dir_all(kiln.root().join("snapshots")).unwrap();
        fs::create_dir(kiln.root().join("snapshots")).unwrap();
        let again = build_ok(&kiln, &dir, tag, &epoch);
        assert!(again.contains("0 steps run, 4 cached"), "{again}");
        assert_eq!(sh(&kiln, tag, script), seen, "{tag}");
    }
}

#[test]
fn add_extracts_an_archive_whose_first_entry_names_the_root() {
    let kiln = busybox();
    // Empty names (as some writers make for `.`; kiln used to refuse the
    // regular one as replacing the root), then GNU tar's `./` with another
    // mode: none touches the destination, as in BuildKit.
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, mode) in [
        (&b""[..], tar::EntryType::Regular, 0o644),
        (b"", tar::EntryType::Directory, 0o755),
        (b"./", tar::EntryType::Directory, 0o700),
    ] {
        let mut header = tar::Header::new_ustar();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_600_000_000);
        header.set_size(0);
        header.set_cksum();
        builder.append(&header, &b""[..]).unwrap();
    }
    let mut header = tar::Header::new_ustar();
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_600_000_000);
    header.set_size(6);
    builder
        .append_data(&mut header, "./pkg/inner.txt", &b"inner\n"[..])
        .unwrap();
    let dir = context(&kiln, "add-root", "FROM bb:1\nADD root.tar /dest/\n", &[]);
    fs::write(dir.join("root.tar"), builder.into_inner().unwrap()).unwrap();
    build_ok(&kiln, &dir, "addroot:1", &[]);
    assert_eq!(
        sh(
            &kiln,
            "addroot:1",
            "cat /dest/pkg/inner.txt; stat -c %a /dest"
        ),
        "inner\n755\n"
    );
}

#[test]
fn copy_link_layers_are_the_snapshot_of_the_stage_chain() {
    let kiln = busybox();
    // /app is a symlink in the stage; a --link layer is built on nothing,
    // so its `app/` is a directory that replaces the link, whether the
    // layer is stacked as built or applied again on the real parents.
    let dockerfile = |n: u32| {
        format!(
            "FROM bb:1\nRUN mkdir /srv && busybox ln -s /srv /app && echo {n} > /n\n\
             COPY --link f /app/f\nRUN cat /app/f; test -L /app || echo app is a dir\n"
        )
    };
    let dir = context(&kiln, "link", &dockerfile(1), &[("f", "linked\n")]);
    build_ok(&kiln, &dir, "link:1", &[]);
    let script = "cat /app/f /n; test -L /app || echo app is a dir; ls /srv";
    assert_eq!(sh(&kiln, "link:1", script), "linked\n1\napp is a dir\n");
    // Reused from the cache on other parents: applied on them.
    fs::write(dir.join("Dockerfile"), dockerfile(2)).unwrap();
    let second = build_ok(&kiln, &dir, "link:2", &[]);
    assert!(second.contains("CACHED"), "{second}");
    assert_eq!(sh(&kiln, "link:2", script), "linked\n2\napp is a dir\n");
    // Both stand the comparison with the layer applied again.
    assert_eq!(
        kiln.ok(&["system", "check"]),
        format!("store {} is consistent\n", kiln.root().display())
    );
    // And an image loaded elsewhere gives the same files.
    let archive = kiln.path("link.tar");
    kiln.ok(&["save", "-o", archive.to_str().unwrap(), "link:1"]);
    let other = Kiln::new();
    other.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(sh(&other, "link:1", script), "linked\n1\napp is a dir\n");
}

#[test]
fn add_extracts_whiteout_names_as_plain_files() {
    // BuildKit untars an ADD archive with moby's Unpack, which converts
    // whiteouts only for image layers: `.wh.gone` is an ordinary file and
    // the `gone` below stays.
    let kiln = busybox();
    let dir = context(
        &kiln,
        "wh",
        "FROM bb:1\nRUN mkdir /dest && echo below > /dest/gone\nADD layer.tar /dest/\n\
         RUN ls -a /dest > /listing && cat /dest/gone /dest/.wh.gone >> /listing\n",
        &[],
    );
    let mut tar = Vec::new();
    common::tar_entry(&mut tar, ".wh.gone", b'0', "", b"plain\n");
    common::tar_entry(&mut tar, "keep", b'0', "", b"keep\n");
    common::tar_end(&mut tar);
    fs::write(dir.join("layer.tar"), tar).unwrap();
    build_ok(&kiln, &dir, "wh:1", &[]);
    assert_eq!(
        sh(&kiln, "wh:1", "cat /listing"),
        ".\n..\n.wh.gone\ngone\nkeep\nbelow\nplain\n"
    );
}

#[test]
fn copy_from_a_stage_that_ran_again_with_the_same_output_stays_cached() {
    // BuildKit keys COPY --from by the content it copies: a source stage
    // that runs again (its ARG changed) but writes the same file leaves
    // the COPY and everything after it cached; a changed file does not.
    let kiln = busybox();
    let dockerfile = "FROM bb:1 AS build\nARG V\nARG OUT=same\n\
                      RUN echo $V > /v && echo $OUT > /out\n\
                      FROM bb:1\nCOPY --from=build /out /out\nRUN cat /out > /seen\n";
    let dir = context(&kiln, "from-content", dockerfile, &[]);
    let build = |args: &[&str]| {
        let mut all = vec!["--progress=plain", "--log-level", "debug"];
        all.extend_from_slice(args);
        build_ok(&kiln, &dir, "from:1", &all)
    };
    let first = build(&["--build-arg", "V=1"]);
    assert!(first.contains("3 steps run, 0 cached"), "{first}");
    let again = build(&["--build-arg", "V=2"]);
    assert!(again.contains("1 step run, 2 cached"), "{again}");
    assert!(again.contains("[build 2/2] RUN echo 2 > /v"), "{again}");
    assert_eq!(sh(&kiln, "from:1", "cat /seen"), "same\n");
    // Nothing changed: the sources' digest is remembered under the source
    // stage's key, so the COPY is answered without mounting that stage
    // or reading its files.
    let noop = build(&["--build-arg", "V=2"]);
    assert!(noop.contains("0 steps run, 3 cached"), "{noop}");
    assert!(!noop.contains("sources digested"), "{noop}");
    // A different output runs the COPY and what follows.
    let changed = build(&["--build-arg", "V=2", "--build-arg", "OUT=other"]);
    assert!(changed.contains("3 steps run, 0 cached"), "{changed}");
    assert_eq!(sh(&kiln, "from:1", "cat /seen"), "other\n");
}

#[test]
fn a_bind_mount_from_a_stage_that_ran_again_with_the_same_output_stays_cached() {
    // As COPY --from: `RUN --mount=type=bind,from=` is keyed by the content
    // it shows, not by the source stage's chain.
    let kiln = busybox();
    let dockerfile = "FROM bb:1 AS build\nARG V\nARG OUT=same\n\
                      RUN mkdir /o && echo $V > /v && echo $OUT > /o/out\n\
                      FROM bb:1\nRUN --mount=type=bind,from=build,source=/o,target=/m cat /m/out > /seen\n";
    let dir = context(&kiln, "mount-content", dockerfile, &[]);
    let build = |args: &[&str]| {
        let mut all = vec!["--progress=plain"];
        all.extend_from_slice(args);
        build_ok(&kiln, &dir, "mnt:1", &all)
    };
    let first = build(&["--build-arg", "V=1"]);
    assert!(first.contains("2 steps run, 0 cached"), "{first}");
    let again = build(&["--build-arg", "V=2"]);
    assert!(again.contains("1 step run, 1 cached"), "{again}");
    assert_eq!(sh(&kiln, "mnt:1", "cat /seen"), "same\n");
    let changed = build(&["--build-arg", "V=2", "--build-arg", "OUT=other"]);
    assert!(changed.contains("2 steps run, 0 cached"), "{changed}");
    assert_eq!(sh(&kiln, "mnt:1", "cat /seen"), "other\n");
    // A source the stage lacks is named with the stage.
    let missing = "FROM bb:1 AS build\nRUN true > /x\n\
                   FROM bb:1\nRUN --mount=type=bind,from=build,source=/nope,target=/m true\n";
    fs::write(dir.join("Dockerfile"), missing).unwrap();
    let stderr = build_fails(&kiln, &dir, &[]);
    assert!(
        stderr.contains(
            "Dockerfile:4:1: \"/nope\": not found in stage build (RUN --mount=type=bind,source=/nope)"
        ),
        "{stderr}"
    );
}

#[test]
fn the_context_is_read_once_per_build_for_the_same_files() {
    // Two stages copy the whole context and a RUN binds it: one read of
    // the context (the stat cache then spares even that on a rebuild).
    let kiln = busybox();
    let files: Vec<(String, String)> = (0..50)
        .map(|i| (format!("src/d{}/f{i}", i % 5), format!("{i}\n")))
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let dockerfile = "FROM bb:1 AS a\nCOPY . /src\nRUN ls /src/src | wc -l > /n\n\
                      FROM bb:1\nCOPY . /src\nCOPY --from=a /n /n\n\
                      RUN --mount=type=bind,source=.,target=/ctx ls /ctx/src > /listed\n";
    let dir = context(&kiln, "read-once", dockerfile, &files);
    let stderr = build_ok(&kiln, &dir, "once:1", &["--log-level", "debug"]);
    assert_eq!(stderr.matches("context read for .").count(), 1, "{stderr}");
    assert_eq!(
        sh(&kiln, "once:1", "cat /n /listed"),
        "5\nd0\nd1\nd2\nd3\nd4\n"
    );
}

#[test]
fn history_keeps_a_heredoc_on_one_table_row() {
    let kiln = busybox();
    let dir = context(
        &kiln,
        "heredoc-history",
        "FROM bb:1\nRUN <<EOF\necho one > /one\necho two > /two\nEOF\n",
        &[],
    );
    build_ok(&kiln, &dir, "hd:1", &[]);
    for args in [&["history", "hd:1"][..], &["history", "--no-trunc", "hd:1"]] {
        let out = kiln.ok(args);
        let lines: Vec<&str> = out.lines().collect();
        // The header, the RUN and busybox's import: one line each.
        assert_eq!(lines.len(), 3, "{out}");
        assert!(
            lines[1].contains("RUN /bin/sh -c echo one > /one\\necho two > /"),
            "{out}"
        );
    }
    // A template gets the text as it is.
    let out = kiln.ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}",
        "hd:1",
    ]);
    assert!(
        out.starts_with("RUN /bin/sh -c echo one > /one\necho two > /two\n"),
        "{out}"
    );
}

/// `inspect -f` prints Docker's typed values as Docker 20.10 does (issue
/// 16): sets as `map[k:{}]`, the health check as a Go struct with
/// durations, unset slices as `[]` and an unset pointer as `<nil>`.
#[test]
fn inspect_formats_typed_values_like_docker() {
    let kiln = busybox();
    let dir = context(
        &kiln,
        "typed",
        "FROM bb:1\n\
         ENV A=1 B=2\n\
         LABEL b=2 a=1\n\
         EXPOSE 80 53/udp\n\
         VOLUME /data\n\
         HEALTHCHECK --interval=30s --timeout=3s CMD curl -f localhost\n",
        &[],
    );
    build_ok(&kiln, &dir, "typed:1", &[]);
    let f = |template: &str, image: &str| kiln.ok(&["inspect", "-f", template, image]);
    assert_eq!(
        f("{{.Config.ExposedPorts}}", "typed:1"),
        "map[53/udp:{} 80/tcp:{}]\n"
    );
    assert_eq!(
        f("{{.Config.Healthcheck}}", "typed:1"),
        "{[CMD-SHELL curl -f localhost] 30s 3s 0s 0}\n"
    );
    assert_eq!(
        f("{{.Config.Env}}", "typed:1"),
        "[PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin A=1 B=2]\n"
    );
    assert_eq!(f("{{.Config.Labels}}", "typed:1"), "map[a:1 b:2]\n");
    assert_eq!(f("{{.Config.Volumes}}", "typed:1"), "map[/data:{}]\n");
    assert_eq!(f("{{.Config.Entrypoint}}", "typed:1"), "[]\n");
    assert_eq!(f("{{.Config.Healthcheck}}", "bb:1"), "<nil>\n");
    assert_eq!(
        f("{{.Config.ExposedPorts}} {{.Config.Volumes}}", "bb:1"),
        "map[] map[]\n"
    );
    let size = f("{{.Size}}", "typed:1");
    assert!(size.trim().parse::<u64>().is_ok(), "{size:?}");
    let created = f("{{.Created}}", "typed:1");
    assert!(
        created.trim_end().ends_with('Z') && created.contains('T'),
        "{created:?}"
    );
    assert_eq!(
        f("{{json .Config.Healthcheck}}", "typed:1"),
        "{\"Test\":[\"CMD-SHELL\",\"curl -f localhost\"],\"Interval\":30000000000,\"Timeout\":3000000000}\n"
    );
    // Docker reports a bad field at the chain's second identifier.
    let error = kiln.fails(&["inspect", "-f", "{{.Config.Foo}}", "typed:1"]);
    assert!(
        error.contains(
            r#"template: :1:9: executing "" at <.Config.Foo>: map has no entry for key "Foo""#
        ),
        "{error}"
    );
}

/// Plain progress as BuildKit prints it (issue 16): an unnamed stage of a
/// multi-stage build is `stage-N`; FROM scratch and FROM <stage> are no
/// step of their own; names show expanded arguments (RUN's too, as
/// BuildKit's `processCmdEnv` expands them); the build ends with the
/// export block. Times are masked.
#[test]
fn plain_progress_matches_buildkit() {
    let kiln = busybox();
    let dir = context(
        &kiln,
        "plain",
        "FROM scratch AS s\n\
         ARG U=1000\n\
         COPY --chown=$U f.txt /s/$U\n\
         FROM s AS t\n\
         COPY f.txt /t\n\
         FROM bb:1\n\
         ARG X=hello\n\
         ENV Y=world\n\
         RUN [\"true\", \"$X\", \"${Y}\"]\n\
         COPY --from=t /s/1000 /from/$Y\n\
         WORKDIR $Y/sub\n",
        &[("f.txt", "hi\n")],
    );
    let stderr = build_ok(&kiln, &dir, "app:1", &["--no-cache"]);
    let id = image_id(&kiln, "app:1");
    let masked: Vec<String> = stderr
        .lines()
        .map(|line| {
            if let Some((head, _)) = line.split_once(" DONE ") {
                format!("{head} DONE 0.0s")
            } else if line.contains(" exporting layers ") {
                let (head, _) = line.split_once(" exporting layers").unwrap();
                format!("{head} exporting layers done")
            } else {
                line.to_owned()
            }
        })
        .collect();
    let expected = format!(
        "#1 [s 1/1] COPY --chown=1000 f.txt /s/1000\n\
         #1 DONE 0.0s\n\
         \n\
         #2 [t 1/1] COPY f.txt /t\n\
         #2 DONE 0.0s\n\
         \n\
         #3 [stage-2 1/4] FROM docker.io/library/bb:1\n\
         #3 DONE 0.0s\n\
         \n\
         #4 [stage-2 2/4] RUN [\"true\", \"hello\", \"world\"]\n\
         #4 DONE 0.0s\n\
         \n\
         #5 [stage-2 3/4] COPY --from=t /s/1000 /from/world\n\
         #5 DONE 0.0s\n\
         \n\
         #6 [stage-2 4/4] WORKDIR world/sub\n\
         #6 DONE 0.0s\n\
         \n\
         #7 exporting to image\n\
         #7 exporting layers done\n\
         #7 writing image {id} done\n\
         #7 naming to docker.io/library/app:1 done\n\
         #7 DONE 0.0s\n"
    );
    let masked = masked.join("\n");
    assert!(masked.starts_with(&expected), "{masked}");
}
