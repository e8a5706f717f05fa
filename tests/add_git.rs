//! `ADD <git repository>` end to end as root, against a `git daemon` on
//! 127.0.0.1 serving repositories made here: branches, tags, commits,
//! subdirs, `--keep-git-dir`, `--checksum`, the cache by commit, and a
//! repository's hooks and filters never running.
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::build::{build_fails, build_ok, busybox, cached, context, sh};

/// The repositories are served on the build host's loopback, which a
/// Dockerfile reaches only with this entitlement.
const HOST: &[&str] = &["--allow", "network.host"];

/// Runs git in `dir` with a fixed identity and no user configuration.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "init.defaultBranch=main",
            // The rootless pass hands the repositories to its user.
            "-c",
            "safe.directory=*",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A `git daemon` serving the repositories under `base`, killed on drop.
struct Daemon {
    child: Child,
    port: u16,
}

impl Daemon {
    fn start(base: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // In the rootless pass (KILN_TEST_AS_USER) the repositories are
        // that user's: git as root would refuse them as dubious.
        let child = Command::new("git")
            .args([
                "-c",
                "safe.directory=*",
                "daemon",
                "--export-all",
                "--reuseaddr",
                &format!("--base-path={}", base.display()),
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                base.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "git daemon did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Daemon { child, port }
    }

    fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A repository `repo` under `base`: `README`, `docs/guide` and an
/// executable `bin/run` on `main`, tagged `v1` (annotated) and `light`.
fn repository(base: &Path) -> PathBuf {
    let repo = base.join("repo");
    fs::create_dir_all(repo.join("docs")).unwrap();
    fs::create_dir_all(repo.join("bin")).unwrap();
    git(&repo, &["init", "-q"]);
    fs::write(repo.join("README"), "one\n").unwrap();
    fs::write(repo.join("docs/guide"), "guide\n").unwrap();
    fs::write(repo.join("bin/run"), "#!/bin/sh\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["update-index", "--chmod=+x", "bin/run"]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    git(&repo, &["tag", "-a", "v1", "-m", "v1"]);
    git(&repo, &["tag", "light"]);
    repo
}

fn commit_on(repo: &Path, content: &str) -> String {
    fs::write(repo.join("README"), content).unwrap();
    git(repo, &["commit", "-q", "-am", content.trim()]);
    git(repo, &["rev-parse", "HEAD"])
}

#[test]
fn branches_tags_commits_and_subdirs_are_added() {
    if !common::tools("GIT", &[("git", "git")]) {
        return;
    }
    let kiln = busybox();
    let base = kiln.path("served");
    let repo = repository(&base);
    let first = git(&repo, &["rev-parse", "HEAD"]);
    commit_on(&repo, "two\n");
    let daemon = Daemon::start(&base);
    let url = daemon.url("repo");
    let dockerfile = format!(
        "FROM bb:1\n\
         ADD {url} /default\n\
         ADD {url}#main /branch/\n\
         ADD {url}#v1 /tag\n\
         ADD {url}#light /light\n\
         ADD {url}#{first} /commit\n\
         ADD {url}#{short}:docs /short\n\
         ADD {url}#main:docs /sub\n\
         ADD {url}?ref=v1&subdir=bin /query\n",
        short = &first[..10]
    );
    let dir = context(&kiln, "ctx", &dockerfile, &[]);
    build_ok(&kiln, &dir, "git:1", HOST);
    let out = sh(
        &kiln,
        "git:1",
        "cat /default/README /branch/README /tag/README /light/README /commit/README; \
         ls -A /short; ls -A /sub; ls -A /query; \
         stat -c '%n %a %u:%g' /commit/README /commit/bin/run /commit/docs; \
         test -e /branch/.git || echo no-git",
    );
    assert_eq!(
        out,
        "two\ntwo\none\none\none\nguide\nguide\nrun\n\
         /commit/README 644 0:0\n/commit/bin/run 755 0:0\n/commit/docs 755 0:0\nno-git\n"
    );
}

#[test]
fn keep_git_dir_and_checksum() {
    if !common::tools("GIT", &[("git", "git")]) {
        return;
    }
    let kiln = busybox();
    let base = kiln.path("served");
    let repo = repository(&base);
    let commit = git(&repo, &["rev-parse", "HEAD"]);
    let daemon = Daemon::start(&base);
    let url = daemon.url("repo");
    let dockerfile = format!(
        "FROM bb:1\n\
         ADD --keep-git-dir=true {url}#main /kept\n\
         ADD --checksum={prefix} {url}#v1 /sum\n\
         ADD --checksum={commit} {url}#main /full\n",
        prefix = &commit[..7]
    );
    let dir = context(&kiln, "ctx", &dockerfile, &[]);
    build_ok(&kiln, &dir, "kept:1", HOST);
    let out = sh(
        &kiln,
        "kept:1",
        "cat /kept/.git/HEAD /kept/.git/refs/heads/main; grep -c url /kept/.git/config; \
         cat /sum/README; test -e /sum/.git || echo no-git",
    );
    assert_eq!(out, format!("{commit}\n{commit}\n1\none\nno-git\n"));

    let wrong = context(
        &kiln,
        "wrong",
        &format!("FROM bb:1\nADD --checksum=0123abc {url}#main /x\n"),
        &[],
    );
    let err = build_fails(&kiln, &wrong, HOST);
    assert!(
        err.contains(&format!("expected checksum to match 0123abc, got {commit}")),
        "{err}"
    );
    assert!(err.contains("Dockerfile:2"), "{err}");
}

/// The step is keyed by the resolved commit: unchanged, it is cached
/// (also from another context directory: no host path in the key); a new
/// commit on the branch reruns it and the RUN after it.
#[test]
fn the_cache_follows_the_commit() {
    if !common::tools("GIT", &[("git", "git")]) {
        return;
    }
    let kiln = busybox();
    let base = kiln.path("served");
    let repo = repository(&base);
    let daemon = Daemon::start(&base);
    let url = daemon.url("repo");
    let dockerfile = format!("FROM bb:1\nADD {url}#main /src\nRUN cat /src/README > /copy\n");
    let dir = context(&kiln, "ctx", &dockerfile, &[]);
    let first = build_ok(&kiln, &dir, "c:1", HOST);
    assert!(!cached(&first, "ADD "), "{first}");
    let again = build_ok(&kiln, &dir, "c:1", HOST);
    assert!(cached(&again, "ADD ") && cached(&again, "RUN "), "{again}");
    let elsewhere = context(&kiln, "elsewhere", &dockerfile, &[]);
    let moved = build_ok(&kiln, &elsewhere, "c:1", HOST);
    assert!(cached(&moved, "ADD "), "{moved}");
    commit_on(&repo, "two\n");
    let after = build_ok(&kiln, &dir, "c:2", HOST);
    assert!(
        !cached(&after, "ADD ") && !cached(&after, "RUN "),
        "{after}"
    );
    assert_eq!(sh(&kiln, "c:2", "cat /copy"), "two\n");
}

#[test]
fn unreachable_repositories_and_unknown_refs_fail_clearly() {
    if !common::tools("GIT", &[("git", "git")]) {
        return;
    }
    let kiln = busybox();
    let base = kiln.path("served");
    repository(&base);
    let daemon = Daemon::start(&base);
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for (source, expected) in [
        (
            format!("git://127.0.0.1:{closed}/repo"),
            format!("failed to fetch remote git://127.0.0.1:{closed}/repo: "),
        ),
        (
            format!("{}#nope", daemon.url("repo")),
            "repository does not contain ref nope".to_owned(),
        ),
        (
            format!("{}#main:missing", daemon.url("repo")),
            "failed to open subdir missing".to_owned(),
        ),
    ] {
        let dir = context(&kiln, "bad", &format!("FROM bb:1\nADD {source} /x\n"), &[]);
        let err = build_fails(&kiln, &dir, HOST);
        assert!(err.contains(&expected), "{source}: {err}");
        assert!(err.contains("Dockerfile:2"), "{source}: {err}");
    }
}

/// A checkout runs nothing of the repository's: not a hook it ships (git
/// never transfers hooks or configuration), not a filter its
/// `.gitattributes` names, not one the serving side's configuration
/// defines for itself.
#[test]
fn hooks_and_filters_of_the_repository_do_not_run() {
    if !common::tools("GIT", &[("git", "git")]) {
        return;
    }
    let kiln = busybox();
    let base = kiln.path("served");
    let repo = repository(&base);
    let canary = kiln.path("canary");
    let script = format!("#!/bin/sh\ntouch {}\ncat\n", canary.display());
    fs::create_dir_all(repo.join("hooks")).unwrap();
    fs::write(repo.join("hooks/post-checkout"), &script).unwrap();
    fs::write(repo.join(".gitattributes"), "* filter=evil\n").unwrap();
    git(&repo, &["add", "."]);
    git(
        &repo,
        &["update-index", "--chmod=+x", "hooks/post-checkout"],
    );
    git(&repo, &["commit", "-q", "-m", "hooks"]);
    let hook = repo.join(".git/hooks/post-checkout");
    fs::write(&hook, &script).unwrap();
    git(
        &repo,
        &[
            "config",
            "filter.evil.smudge",
            &format!("touch {}; cat", canary.display()),
        ],
    );
    git(
        &repo,
        &[
            "config",
            "core.hooksPath",
            repo.join("hooks").to_str().unwrap(),
        ],
    );
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
    let daemon = Daemon::start(&base);
    let url = daemon.url("repo");
    let dir = context(
        &kiln,
        "ctx",
        &format!("FROM bb:1\nADD {url}#main /src\nADD --keep-git-dir=true {url}#main /kept\n"),
        &[],
    );
    build_ok(&kiln, &dir, "h:1", HOST);
    assert!(!canary.exists(), "a hook or filter of the repository ran");
    assert_eq!(
        sh(
            &kiln,
            "h:1",
            "cat /src/README; test -x /src/hooks/post-checkout && echo shipped"
        ),
        "one\nshipped\n"
    );
}

#[test]
fn a_git_repository_is_a_named_build_context() {
    if !common::tools("GIT", &[("git", "git")]) {
        return;
    }
    let kiln = busybox();
    let base = kiln.path("served");
    let repo = repository(&base);
    commit_on(&repo, "two\n");
    let daemon = Daemon::start(&base);
    let url = daemon.url("repo");
    // COPY --from the repository's docs at tag v1; FROM the whole
    // repository at main (a stage of its files, no .git).
    let dir = context(
        &kiln,
        "ctx",
        "FROM bb:1\nCOPY --from=docs / /docs/\nCOPY --from=src / /src/\n",
        &[],
    );
    build_ok(
        &kiln,
        &dir,
        "named-git:1",
        &[
            "--build-context",
            &format!("docs={url}#v1:docs"),
            "--build-context",
            &format!("src={url}#main"),
        ],
    );
    assert_eq!(
        sh(
            &kiln,
            "named-git:1",
            "ls -A /docs; cat /src/README; test -e /src/.git || echo no-git"
        ),
        "guide\ntwo\nno-git\n"
    );
    // A ref the repository lacks fails before the build, naming it.
    let stderr = build_fails(
        &kiln,
        &dir,
        &[
            "--build-context",
            &format!("docs={url}#nope"),
            "--build-context",
            &format!("src={url}"),
        ],
    );
    assert!(
        stderr.contains(&format!("build context docs: {url}")),
        "{stderr}"
    );
    assert!(
        stderr.contains("repository does not contain ref nope"),
        "{stderr}"
    );
}

#[test]
fn a_repository_on_the_build_hosts_loopback_is_refused_without_network_host() {
    if !common::tools("GIT", &[("git", "git")]) {
        return;
    }
    let kiln = busybox();
    let base = kiln.path("served");
    repository(&base);
    let daemon = Daemon::start(&base);
    let url = daemon.url("repo");
    let dir = context(&kiln, "ctx", &format!("FROM bb:1\nADD {url} /src\n"), &[]);
    let stderr = build_fails(&kiln, &dir, &[]);
    assert!(
        stderr.contains(&format!(
            "resolving {url}: git: 127.0.0.1 is an address of the build host (127.0.0.1), which the Dockerfile may not reach: a build reaches services on its host only with --allow network.host"
        )),
        "{stderr}"
    );
    // A name that resolves to the loopback is refused as its address is.
    let local = url.replace("127.0.0.1", "localhost");
    let dir = context(
        &kiln,
        "ctx2",
        &format!("FROM bb:1\nADD {local} /src\n"),
        &[],
    );
    let stderr = build_fails(&kiln, &dir, &[]);
    assert!(
        stderr.contains("git: localhost is an address of the build host ("),
        "{stderr}"
    );
}
