//! `RUN --mount` end to end, as root: every option BuildKit implements is
//! implemented the same way (or refused with a message), and every source
//! is resolved inside its own root, never on the host.
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::fs;

use common::build::{build_fails, build_ok, busybox, context, sh};

/// A host file outside every root, with a content no image has.
fn canary(kiln: &common::Kiln) -> std::path::PathBuf {
    let dir = kiln.path("canary");
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secret");
    fs::write(&file, "HOST SECRET\n").unwrap();
    file
}

#[test]
fn bind_sources_resolve_inside_their_stage_not_on_the_host() {
    let kiln = busybox();
    let secret = canary(&kiln);
    let secret = secret.to_str().unwrap();
    let dir = secret.rsplit_once('/').unwrap().0;
    // The stage's links point at the host's canary, by absolute path, by a
    // relative path climbing out, and through a linked directory: none of
    // their targets exists in the stage.
    let dockerfile = format!(
        "FROM bb:1 AS st\n\
         RUN ln -s {secret} /abs && ln -s ../../../../../../../../..{secret} /rel && ln -s {dir} /dir\n\
         FROM bb:1\n\
         RUN --mount=type=bind,from=st,source=/abs,target=/m cat /m\n"
    );
    let ctx = context(&kiln, "abs", &dockerfile, &[]);
    let err = build_fails(&kiln, &ctx, &[]);
    assert!(
        err.contains(
            "error: Dockerfile:4:1: \"/abs\": not found in stage st (RUN --mount=type=bind,source=/abs)\n"
        ),
        "{err}"
    );
    assert!(!err.contains("HOST SECRET"), "{err}");
    for source in ["/rel", "/dir/secret"] {
        let dockerfile = dockerfile.replace("source=/abs", &format!("source={source}"));
        let ctx = context(&kiln, "other", &dockerfile, &[]);
        let err = build_fails(&kiln, &ctx, &[]);
        assert!(
            err.contains(&format!(
                "\"{source}\": not found in stage st (RUN --mount=type=bind,source={source})"
            )),
            "{source}: {err}"
        );
        assert!(!err.contains("HOST SECRET"), "{source}: {err}");
    }
    // The same links name the stage's own files once they exist there,
    // and a writable bind cannot write through them to the host.
    let dockerfile = format!(
        "FROM bb:1 AS st\n\
         RUN mkdir -p {dir} && echo stage > {secret} && ln -s {secret} /abs && ln -s {dir} /dir\n\
         FROM bb:1\n\
         RUN --mount=type=bind,from=st,source=/abs,target=/m cat /m > /seen\n\
         RUN --mount=type=bind,from=st,source=/dir,target=/m,rw sh -c 'echo pwned > /m/secret; rm -f /m/secret; echo new > /m/new'\n"
    );
    let ctx = context(&kiln, "inside", &dockerfile, &[]);
    build_ok(&kiln, &ctx, "inside:1", &[]);
    assert_eq!(sh(&kiln, "inside:1", "cat /seen"), "stage\n");
    assert_eq!(fs::read_to_string(secret).unwrap(), "HOST SECRET\n");
    assert_eq!(fs::read_dir(dir).unwrap().count(), 1);
}

#[test]
fn writable_binds_throw_their_writes_away() {
    let kiln = busybox();
    let ctx = context(
        &kiln,
        "rw",
        "FROM bb:1 AS st\n\
         RUN mkdir /data && echo one > /data/f && echo file > /single\n\
         FROM bb:1\n\
         RUN --mount=type=bind,from=st,source=/data,target=/m,rw sh -c 'echo two > /m/f && echo added > /m/g && cat /m/f' > /out1\n\
         RUN --mount=type=bind,from=st,source=/single,target=/s,rw sh -c 'echo changed > /s && cat /s' > /out2\n\
         RUN --mount=type=bind,from=st,source=/data,target=/m sh -c 'cat /m/f; test ! -e /m/g && echo no-g' > /out3\n\
         RUN --mount=type=bind,from=st,source=/data,target=/m sh -c 'touch /m/x 2>&1 || true' > /out4\n\
         RUN --mount=type=bind,from=st,source=/single,target=/s cat /s > /out5\n",
        &[],
    );
    build_ok(&kiln, &ctx, "rw:1", &[]);
    assert_eq!(
        sh(&kiln, "rw:1", "cat /out1 /out2 /out3 /out5"),
        "two\nchanged\none\nno-g\nfile\n"
    );
    assert!(
        sh(&kiln, "rw:1", "cat /out4").contains("Read-only file system"),
        "a bind without rw is read-only"
    );
    // Nothing written under the targets entered a layer.
    assert_eq!(sh(&kiln, "rw:1", "ls -a /m /s 2>&1 | wc -l").trim(), "2");
}

#[test]
fn the_context_bind_shows_exactly_what_copy_sees() {
    let kiln = busybox();
    let ctx = context(
        &kiln,
        "ctx",
        "FROM bb:1\n\
         RUN --mount=type=bind,target=/ctx sh -c 'cd /ctx && find . | sort' > /listing\n\
         RUN --mount=type=bind,source=kept.txt,target=/k cat /k > /kept\n\
         RUN --mount=type=bind,source=sub,target=/s stat -c '%u:%g %n' /s/inner > /owner\n\
         RUN --mount=type=bind,target=/ctx,rw sh -c 'echo x > /ctx/new && rm /ctx/kept.txt && ls /ctx'\n",
        &[
            (".dockerignore", "secret.txt\n*.log\n"),
            ("secret.txt", "ignored secret\n"),
            ("debug.log", "ignored log\n"),
            ("kept.txt", "kept\n"),
            ("sub/inner", "inner\n"),
        ],
    );
    build_ok(&kiln, &ctx, "ctx:1", &[]);
    assert_eq!(
        sh(&kiln, "ctx:1", "cat /listing"),
        ".\n./.dockerignore\n./Dockerfile\n./kept.txt\n./sub\n./sub/inner\n"
    );
    assert_eq!(
        sh(&kiln, "ctx:1", "cat /kept /owner"),
        "kept\n0:0 /s/inner\n"
    );
    // The rw RUN changed nothing in the context on the host.
    assert!(!ctx.join("new").exists());
    assert_eq!(fs::read_to_string(ctx.join("kept.txt")).unwrap(), "kept\n");
    // An ignored file cannot be mounted by name.
    let bad = context(
        &kiln,
        "bad",
        "FROM bb:1\nRUN --mount=type=bind,source=secret.txt,target=/s cat /s\n",
        &[
            (".dockerignore", "secret.txt\n"),
            ("secret.txt", "ignored\n"),
        ],
    );
    let err = build_fails(&kiln, &bad, &[]);
    assert!(err.contains("secret.txt"), "{err}");
    assert!(!err.contains("ignored\n"), "{err}");

    // The key follows the mounted files only: an ignored file's change
    // keeps the step cached, a mounted file's change reruns it.
    fs::write(ctx.join("secret.txt"), "changed secret\n").unwrap();
    let out = build_ok(&kiln, &ctx, "ctx:2", &[]);
    assert!(out.contains(": 0 steps run, 4 cached"), "{out}");
    fs::write(ctx.join("kept.txt"), "kept v2\n").unwrap();
    let out = build_ok(&kiln, &ctx, "ctx:3", &[]);
    assert_eq!(sh(&kiln, "ctx:3", "cat /kept"), "kept v2\n");
    assert!(out.contains(": 4 steps run, 0 cached"), "{out}");
    // A mount of one directory is keyed by that directory alone.
    let narrow = context(
        &kiln,
        "narrow",
        "FROM bb:1\nRUN --mount=type=bind,source=sub,target=/s cat /s/inner > /inner\n",
        &[("sub/inner", "inner\n"), ("other", "1\n")],
    );
    build_ok(&kiln, &narrow, "narrow:1", &[]);
    fs::write(narrow.join("other"), "2\n").unwrap();
    let out = build_ok(&kiln, &narrow, "narrow:2", &[]);
    assert!(out.contains(": 0 steps run, 1 cached"), "{out}");
    fs::write(narrow.join("sub/inner"), "inner v2\n").unwrap();
    let out = build_ok(&kiln, &narrow, "narrow:3", &[]);
    assert!(out.contains(": 1 step run, 0 cached"), "{out}");
    assert_eq!(sh(&kiln, "narrow:3", "cat /inner"), "inner v2\n");
}

#[test]
fn cache_mounts_persist_and_honour_every_option() {
    let kiln = busybox();
    let ctx = context(
        &kiln,
        "cache",
        "FROM bb:1 AS seed\n\
         RUN mkdir /seed && echo seeded > /seed/f\n\
         FROM bb:1\n\
         ARG N=1\n\
         RUN --mount=type=cache,target=/c,id=counter sh -c 'echo $N >> /c/log; cat /c/log' > /log\n\
         RUN --mount=type=cache,target=/p,mode=0700,uid=1000,gid=50 stat -c '%a %u %g' /p > /perm\n\
         RUN --mount=type=cache,target=/f,from=seed,source=/seed cat /f/f > /from\n\
         RUN --mount=type=cache,target=/c,id=counter,ro sh -c 'cat /c/log; touch /c/x 2>&1 || true' > /ro\n\
         RUN --mount=type=tmpfs,target=/t,size=1m grep ' /t ' /proc/mounts > /tmpfs\n",
        &[],
    );
    build_ok(&kiln, &ctx, "cache:1", &[]);
    build_ok(&kiln, &ctx, "cache:2", &["--build-arg", "N=2"]);
    assert_eq!(sh(&kiln, "cache:2", "cat /log"), "1\n2\n");
    assert_eq!(
        sh(&kiln, "cache:2", "cat /perm /from"),
        "700 1000 50\nseeded\n"
    );
    let ro = sh(&kiln, "cache:2", "cat /ro");
    assert!(
        ro.starts_with("1\n2\n") && ro.contains("Read-only file system"),
        "{ro}"
    );
    let tmpfs = sh(&kiln, "cache:2", "cat /tmpfs");
    assert!(
        tmpfs.contains("tmpfs") && tmpfs.contains("size=1024k"),
        "{tmpfs}"
    );
    // The cache directories belong to the store.
    let mode = fs::metadata(kiln.root().join("cache-mounts")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o700
    );
}

/// Two stages that run at once and both use cache `c` with `sharing`; a
/// shared cache `sync` lets them meet.
fn sharing_dockerfile(sharing: &str, a: &str, b: &str) -> String {
    format!(
        "FROM bb:1 AS a\n\
         RUN --mount=type=cache,target=/sync,id=sync --mount=type=cache,target=/c,id=c,sharing={sharing} sh -c '{a}' > /out\n\
         FROM bb:1 AS b\n\
         RUN --mount=type=cache,target=/sync,id=sync --mount=type=cache,target=/c,id=c,sharing={sharing} sh -c '{b}' > /out\n\
         FROM bb:1\n\
         COPY --from=a /out /a\n\
         COPY --from=b /out /b\n"
    )
}

#[test]
fn cache_sharing_locked_waits_and_private_separates() {
    let kiln = busybox();
    // locked: each RUN holds the cache for a while; one that got in while
    // the other was inside would find its mark (both stages start at once,
    // so without the lock they overlap).
    let step = |me: &str| {
        format!("test ! -e /c/inside && touch /c/inside && sleep 1 && rm /c/inside && echo {me}-ok")
    };
    let ctx = context(
        &kiln,
        "locked",
        &sharing_dockerfile("locked", &step("a"), &step("b")),
        &[],
    );
    build_ok(&kiln, &ctx, "locked:1", &[]);
    assert_eq!(sh(&kiln, "locked:1", "cat /a /b"), "a-ok\nb-ok\n");

    // private: both RUNs hold the cache at the same moment (each waits for
    // the other's mark in the shared cache), so they get different ones.
    let step = |me: &str, other: &str| {
        format!(
            "touch /c/{me} /sync/p-{me}; while [ ! -e /sync/p-{other} ]; do sleep 0.05; done; ls /c"
        )
    };
    let ctx = context(
        &kiln,
        "private",
        &sharing_dockerfile("private", &step("a", "b"), &step("b", "a")),
        &[],
    );
    build_ok(&kiln, &ctx, "private:1", &[]);
    assert_eq!(sh(&kiln, "private:1", "cat /a /b"), "a\nb\n");
}

#[test]
fn file_operations_fall_back_to_root_for_unknown_users() {
    let kiln = busybox();
    let ctx = context(
        &kiln,
        "users",
        "FROM bb:1\n\
         USER docker\n\
         WORKDIR /test\n\
         USER root\n\
         COPY --chown=ghost:staff f /f\n\
         COPY --chown=app:ghosts f /g\n\
         RUN stat -c '%u:%g %n' /test /f /g > /owners\n",
        &[("f", "f\n")],
    );
    build_ok(&kiln, &ctx, "users:1", &[]);
    assert_eq!(
        sh(&kiln, "users:1", "cat /owners"),
        "0:0 /test\n0:50 /f\n1000:1000 /g\n"
    );
}

/// Whether OpenSSH's agent tools are there (SKIPPED, or a failure under
/// `KILN_REQUIRE_SSH=1`, when not).
fn ssh_tools() -> bool {
    common::tools(
        "SSH",
        &[
            ("ssh-agent", "openssh-client"),
            ("ssh-add", "openssh-client"),
            ("ssh-keygen", "openssh-client"),
        ],
    )
}

/// A real `ssh-agent` of the test's own with one new ed25519 key; killed
/// when dropped.
struct TestAgent {
    child: std::process::Child,
    socket: std::path::PathBuf,
    key: std::path::PathBuf,
    /// `SHA256:...` of the key, as `ssh-add -l` shows it.
    fingerprint: String,
}

impl TestAgent {
    fn start(kiln: &common::Kiln, name: &str) -> Self {
        let dir = kiln.path(name);
        fs::create_dir_all(&dir).unwrap();
        let key = dir.join("key");
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(status.success());
        let listed = std::process::Command::new("ssh-keygen")
            .arg("-lf")
            .arg(key.with_extension("pub"))
            .output()
            .unwrap();
        let listed = String::from_utf8(listed.stdout).unwrap();
        let fingerprint = listed.split_whitespace().nth(1).unwrap().to_owned();
        assert!(fingerprint.starts_with("SHA256:"), "{listed}");
        let socket = dir.join("agent.sock");
        kiln.hand_to_test_user();
        let child = common::command_as_kiln_user("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let agent = Self {
            child,
            socket,
            key,
            fingerprint,
        };
        let mut tries = 0;
        while std::os::unix::net::UnixStream::connect(&agent.socket).is_err() {
            tries += 1;
            assert!(tries < 500, "ssh-agent made no socket");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let added = std::process::Command::new("ssh-add")
            .arg("-q")
            .arg(&agent.key)
            .env("SSH_AUTH_SOCK", &agent.socket)
            .status()
            .unwrap();
        assert!(added.success());
        agent
    }

    fn socket(&self) -> &str {
        self.socket.to_str().unwrap()
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `bb:1` plus the host's `ssh-add` with the shared libraries it needs,
/// as `sshbb:1`.
fn ssh_image(kiln: &common::Kiln) {
    let rootfs = kiln.path("ssh-rootfs");
    common::busybox_rootfs(&rootfs);
    let ldd = std::process::Command::new("ldd")
        .arg("/usr/bin/ssh-add")
        .output()
        .unwrap();
    let ldd = String::from_utf8(ldd.stdout).unwrap();
    let libs = ldd.lines().filter_map(|line| {
        let path = line.split("=>").last()?.split_whitespace().next()?;
        path.starts_with('/').then(|| path.to_owned())
    });
    for file in libs.chain(["/usr/bin/ssh-add".to_owned()]) {
        let inside = rootfs.join(file.trim_start_matches('/'));
        fs::create_dir_all(inside.parent().unwrap()).unwrap();
        fs::copy(&file, &inside).unwrap();
    }
    kiln.ok(&["import", rootfs.to_str().unwrap(), "sshbb:1"]);
}

#[test]
fn ssh_mounts_forward_the_agent_and_nothing_else() {
    if !ssh_tools() {
        return;
    }
    let kiln = busybox();
    ssh_image(&kiln);
    let agent = TestAgent::start(&kiln, "agent1");
    let dockerfile = "FROM sshbb:1\n\
         RUN --mount=type=ssh sh -c 'echo \"$SSH_AUTH_SOCK\" > /sock; ssh-add -l > /listed; \
             ls -ln \"$SSH_AUTH_SOCK\" > /socket-file'\n";
    let ctx = context(&kiln, "ssh", dockerfile, &[]);
    let stderr = kiln
        .command()
        .env("SSH_AUTH_SOCK", agent.socket())
        .args([
            "build",
            "--progress=plain",
            "--ssh",
            "default",
            "-t",
            "ssh:1",
        ])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(stderr.status.success(), "{stderr:?}");
    assert_eq!(
        sh(&kiln, "ssh:1", "cat /sock"),
        "/run/buildkit/ssh_agent.0\n"
    );
    let listed = sh(&kiln, "ssh:1", "cat /listed");
    assert!(listed.contains(&agent.fingerprint), "{listed}");
    // A socket, 0600 and owned by root.
    let socket = sh(&kiln, "ssh:1", "cat /socket-file");
    assert!(socket.starts_with("srw------- "), "{socket}");
    let owner: Vec<&str> = socket.split_whitespace().skip(2).take(2).collect();
    assert_eq!(owner, ["0", "0"], "{socket}");
    // The socket and its mount point are in no layer, nor the agent's
    // socket path anywhere.
    assert_eq!(
        sh(&kiln, "ssh:1", "ls -a /run 2>&1; true"),
        "ls: /run: No such file or directory\n"
    );
    let inspect = kiln.ok(&["inspect", "ssh:1"]);
    assert!(!inspect.contains(agent.socket()), "{inspect}");
    assert!(!inspect.contains("SSH_AUTH_SOCK"), "{inspect}");

    // Another agent socket with the same id: the step is cached.
    let other = TestAgent::start(&kiln, "agent2");
    let again = build_ok(
        &kiln,
        &ctx,
        "ssh:2",
        &["--ssh", &format!("default={}", other.socket())],
    );
    assert!(again.contains("0 steps run"), "{again}");
    // Another id or target is another step.
    for (i, mount) in ["type=ssh,id=other", "type=ssh,target=/tmp/agent"]
        .iter()
        .enumerate()
    {
        let ctx = context(
            &kiln,
            &format!("ssh-key-{i}"),
            &dockerfile.replace("type=ssh", mount),
            &[],
        );
        let ssh = format!("other={}", other.socket());
        let out = build_ok(
            &kiln,
            &ctx,
            "ssh:3",
            &["--ssh", &ssh, "--ssh", &ssh.replace("other=", "default=")],
        );
        assert!(out.contains(": 1 step run, 0 cached"), "{mount}: {out}");
    }
}

#[test]
fn ssh_key_files_are_served_by_an_agent_of_the_build() {
    if !ssh_tools() {
        return;
    }
    let kiln = busybox();
    ssh_image(&kiln);
    let agent = TestAgent::start(&kiln, "keys");
    let ctx = context(
        &kiln,
        "ssh-keys",
        "FROM sshbb:1\n\
         RUN --mount=type=ssh,id=mykey,target=/agent,mode=0660,uid=1000,gid=50 sh -c \
             'echo \"$SSH_AUTH_SOCK\" > /sock; ssh-add -l > /listed; stat -c \"%a %u %g\" /agent > /mode'\n",
        &[],
    );
    let key = format!("mykey={}", agent.key.display());
    // The agent's directory goes under a TMPDIR of this test's own, so
    // that other tests' agents are not counted below.
    let tmp = kiln.path("ssh-tmp");
    fs::create_dir_all(&tmp).unwrap();
    let out = kiln
        .command()
        .env("TMPDIR", &tmp)
        .args(["build", "-t", "keys:1", "--ssh", &key])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        sh(&kiln, "keys:1", "cat /sock /mode"),
        "/agent\n660 1000 50\n"
    );
    let listed = sh(&kiln, "keys:1", "cat /listed");
    assert!(listed.contains(&agent.fingerprint), "{listed}");
    assert_eq!(
        sh(&kiln, "keys:1", "ls -a /agent 2>&1; true"),
        "ls: /agent: No such file or directory\n"
    );
    // The build's agent is gone with the build.
    let agents: Vec<String> = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.starts_with("ssh-agent") && c.contains(tmp.to_str().unwrap()))
        .collect();
    assert!(agents.is_empty(), "{agents:?}");
}

#[test]
fn missing_ssh_agents_fail_when_required_and_are_skipped_otherwise() {
    if !ssh_tools() {
        return;
    }
    let kiln = busybox();
    let optional = context(
        &kiln,
        "ssh-optional",
        "FROM bb:1\n\
         RUN --mount=type=ssh,id=absent sh -c 'echo \"$SSH_AUTH_SOCK\" > /sock; test ! -e /run/buildkit/ssh_agent.0 && echo skipped > /skipped'\n",
        &[],
    );
    build_ok(&kiln, &optional, "opt:1", &[]);
    assert_eq!(
        sh(&kiln, "opt:1", "cat /sock /skipped"),
        "/run/buildkit/ssh_agent.0\nskipped\n"
    );
    let required = context(
        &kiln,
        "ssh-required",
        "FROM bb:1\nRUN --mount=type=ssh,required=true true\n",
        &[],
    );
    let err = build_fails(&kiln, &required, &[]);
    assert!(
        err.contains("Dockerfile:2")
            && err.contains("no SSH key \"default\" forwarded from the client"),
        "{err}"
    );
    let agent = TestAgent::start(&kiln, "unset");
    let err = build_fails(
        &kiln,
        &required,
        &["--ssh", &format!("gh={}", agent.socket())],
    );
    assert!(err.contains("unset ssh forward key default"), "{err}");
}

#[test]
fn bad_ssh_values_are_refused() {
    if !ssh_tools() {
        return;
    }
    let kiln = common::Kiln::new();
    let ctx = kiln.path("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), "FROM scratch\n").unwrap();
    let agent = TestAgent::start(&kiln, "bad");
    let protected = kiln.path("protected");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "a passphrase", "-f"])
        .arg(&protected)
        .status()
        .unwrap();
    assert!(status.success());
    let notes = kiln.path("notes.txt");
    fs::write(&notes, "not a key\n").unwrap();
    let cases = [
        (
            "default=/no/such/socket",
            "/no/such/socket: No such file or directory",
        ),
        (
            &format!("x={},{}", agent.socket(), agent.key.display()),
            "only single socket allowed",
        ),
        (
            &format!("x={},{}", agent.key.display(), agent.socket()),
            "invalid combination of keys and sockets",
        ),
        (
            &format!("x={}", protected.display()),
            "the key has a passphrase",
        ),
        (&format!("x={}", notes.display()), "not a private key"),
    ];
    for (value, message) in cases {
        let out = kiln
            .command()
            .args(["build", "--ssh", value])
            .arg(&ctx)
            .output()
            .unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(!out.status.success());
        assert!(
            err.contains(&format!("invalid --ssh {value:?}: ")),
            "{value}: {err}"
        );
        assert!(err.contains(message), "{value}: {err}");
    }
    let out = kiln
        .command()
        .env_remove("SSH_AUTH_SOCK")
        .args(["build", "--ssh", "default"])
        .arg(&ctx)
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("invalid --ssh \"default\": invalid empty ssh agent socket: make sure SSH_AUTH_SOCK is set"),
        "{err}"
    );
}

#[test]
fn an_agent_for_key_files_dies_with_a_killed_kiln() {
    if !ssh_tools() {
        return;
    }
    let kiln = busybox();
    let agent = TestAgent::start(&kiln, "killed");
    let marker = format!("4244.{}", std::process::id());
    let tmp = kiln.path("ssh-tmp");
    fs::create_dir_all(&tmp).unwrap();
    let ctx = context(
        &kiln,
        "ssh-killed",
        &format!("FROM bb:1\nRUN --mount=type=ssh,id=k sleep {marker}\n"),
        &[],
    );
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kiln"))
        .arg("--root")
        .arg(kiln.root())
        .env("TMPDIR", &tmp)
        .args(["build", "-q", "--ssh"])
        .arg(format!("k={}", agent.key.display()))
        .arg(&ctx)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The agent and the shell that holds it name the socket under `tmp`.
    let agents = || -> Vec<String> {
        fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains("ssh-agent") && c.contains(tmp.to_str().unwrap()))
            .collect()
    };
    let running = |cmdline: &str| {
        fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .any(|e| fs::read(e.path().join("cmdline")).is_ok_and(|c| c == cmdline.as_bytes()))
    };
    let sleep = format!("sleep\0{marker}\0");
    let started = std::time::Instant::now();
    while !running(&sleep) {
        assert!(started.elapsed().as_secs() < 20, "the RUN did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let before = agents();
    assert!(
        before.iter().any(|c| c.starts_with("ssh-agent ")),
        "{before:?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let gone = std::time::Instant::now();
    while !agents().is_empty() || running(&sleep) {
        assert!(
            gone.elapsed().as_secs() < 10,
            "ssh-agent or the RUN left after kill -9 of kiln build"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
