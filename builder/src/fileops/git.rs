//! ADD of a git repository, with the system's `git`, as `BuildKit`'s git
//! source (`source/git`) does it: `git ls-remote` resolves the ref to a
//! commit (a full commit needs no network), and only when the step runs is
//! that commit fetched (`--depth=1` when the server allows it) and checked
//! out, with its submodules.
//!
//! The repository is untrusted: git runs without the system's or the
//! user's configuration (`GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_GLOBAL` and
//! `HOME` on `/dev/null`, as `BuildKit` sets them), so no filter, hook or
//! credential helper of theirs runs; hooks are off (`core.hooksPath`
//! `/dev/null`, and the repository is made without templates) and the
//! `file` and `ext` transports are refused, so a submodule cannot name a
//! host path or a command. A fetched repository's own configuration is never
//! transferred, so it cannot set a filter either.
//!
//! An ssh address uses the invoking user's ssh setup (ssh reads `~/.ssh`
//! from the password database, not `HOME`) and `SSH_AUTH_SOCK`, in batch
//! mode: kiln has no daemon, so this is what `docker build --ssh default`
//! forwards to `BuildKit`. Unlike `BuildKit`, host keys are checked against
//! the user's `known_hosts`.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use kiln_parser::values::GitRef;

use crate::error::BuildError;

/// What a ref resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedRef {
    /// The commit (an annotated tag is peeled).
    pub commit: String,
    /// The annotated tag's own object, when the ref is one.
    pub tag: Option<String>,
    /// The full ref name `ls-remote` found (`refs/heads/main`).
    pub name: Option<String>,
}

/// Whether `text` is a full commit name (`BuildKit`'s `isCommitSHA`).
fn is_commit(text: &str) -> bool {
    text.len() == 40
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Resolves `git`'s ref to a commit (`BuildKit`'s `CacheKey`): a full
/// commit as it is, anything else with `git ls-remote`. A ref no branch or
/// tag matches but that is a commit's prefix is found by fetching the
/// repository into `scratch`. `checksum` must be a prefix of the commit or
/// of the annotated tag.
pub fn resolve(
    git: &GitRef,
    checksum: Option<&str>,
    scratch: &Path,
    reach_host: bool,
) -> Result<ResolvedRef, BuildError> {
    let url = git.redacted();
    if !reach_host {
        check_remote(&git.remote, &url, "resolving")?;
    }
    let resolved = if is_commit(&git.reference) {
        ResolvedRef {
            commit: git.reference.clone(),
            tag: None,
            name: None,
        }
    } else {
        let mut args = vec!["ls-remote".to_owned(), git.remote.clone()];
        if git.reference.is_empty() {
            args.push("HEAD".to_owned());
        } else {
            args.push(git.reference.clone());
            args.push(format!("{}^{{}}", git.reference));
        }
        let out = run_git(scratch, &args, &url, "failed to fetch remote")?;
        match parse_ls_remote(&out) {
            Some(resolved) => resolved,
            None if is_short_commit(&git.reference) => {
                let commit = fetch_all_and_find(git, scratch)?;
                ResolvedRef {
                    commit,
                    tag: None,
                    name: None,
                }
            }
            None => {
                return Err(BuildError::Git {
                    action: "resolving",
                    url,
                    reason: format!(
                        "repository does not contain ref {}",
                        if git.reference.is_empty() {
                            "HEAD"
                        } else {
                            &git.reference
                        }
                    ),
                });
            }
        }
    };
    if let Some(want) = checksum {
        let want_lower = want.to_ascii_lowercase();
        let matches = |sha: &String| !want_lower.is_empty() && sha.starts_with(&want_lower);
        if !matches(&resolved.commit) && !resolved.tag.as_ref().is_some_and(matches) {
            let got = match &resolved.tag {
                Some(tag) => format!("{tag} or {}", resolved.commit),
                None => resolved.commit.clone(),
            };
            return Err(BuildError::Git {
                action: "resolving",
                url,
                reason: format!("expected checksum to match {want}, got {got}"),
            });
        }
    }
    Ok(resolved)
}

/// The host and port git connects to for `remote` (`scheme://[user@]host
/// [:port]/path` or scp-like `[user@]host:path`); `None` for a form with
/// no host (a relative submodule path, which stays on its parent's host).
fn remote_host(remote: &str) -> Option<(String, u16)> {
    let (authority, default_port) = match remote.split_once("://") {
        Some((scheme, rest)) => {
            let port = match scheme {
                "https" => 443,
                "http" => 80,
                "git" => 9418,
                "ssh" | "git+ssh" | "ssh+git" => 22,
                _ => return None,
            };
            (rest.split('/').next().unwrap_or(rest), port)
        }
        None if remote.starts_with('.') || remote.starts_with('/') => return None,
        // scp-like: the part before the first `:`.
        None => (remote.split_once(':')?.0, 22),
    };
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(rest) = host_port.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after
            .strip_prefix(':')
            .and_then(|p| p.parse().ok())
            .unwrap_or(default_port);
        return Some((host.to_owned(), port));
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) if remote.contains("://") => {
            Some((host.to_owned(), port.parse().unwrap_or(default_port)))
        }
        _ => Some((host_port.to_owned(), default_port)),
    }
}

/// Refuses a remote on the build host's own addresses (see
/// [`super::reach`]). git resolves the name again when it connects; a name
/// whose answer changes in between is not caught here.
fn check_remote(remote: &str, url: &str, action: &'static str) -> Result<(), BuildError> {
    let Some((host, port)) = remote_host(remote) else {
        return Ok(());
    };
    super::reach::check_host(&host, port, "git").map_err(|reason| BuildError::Git {
        action,
        url: url.to_owned(),
        reason,
    })
}

/// Checks out the submodules of `tree`, each level's addresses checked
/// (unless `reach_host`) before git fetches them, then the submodules'
/// own submodules.
fn update_submodules(tree: &Path, url: &str, reach_host: bool) -> Result<(), BuildError> {
    const ACTION: &str = "failed to update submodules for";
    if reach_host {
        run_git(
            tree,
            &["submodule", "update", "--init", "--recursive", "--depth=1"].map(str::to_owned),
            url,
            ACTION,
        )?;
        return Ok(());
    }
    let root = fs::canonicalize(tree).map_err(|e| BuildError::io(tree, e))?;
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        if !dir.join(".gitmodules").is_file() {
            continue;
        }
        let urls = run_git(
            &dir,
            &[
                "config",
                "-f",
                ".gitmodules",
                "--get-regexp",
                r"^submodule\..*\.url$",
            ]
            .map(str::to_owned),
            url,
            ACTION,
        )
        .unwrap_or_default();
        for remote in urls
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(_, u)| u))
        {
            check_remote(remote.trim(), url, ACTION)?;
        }
        run_git(
            &dir,
            &["submodule", "update", "--init", "--depth=1"].map(str::to_owned),
            url,
            ACTION,
        )?;
        // git names the paths it checked out; each must be a directory
        // inside the checkout.
        let paths = run_git(
            &dir,
            &["submodule", "foreach", "--quiet", "pwd"].map(str::to_owned),
            url,
            ACTION,
        )?;
        for path in paths.lines() {
            let path = fs::canonicalize(path).map_err(|e| BuildError::io(Path::new(path), e))?;
            if path.starts_with(&root) && path != dir {
                pending.push(path);
            }
        }
    }
    Ok(())
}

/// Hex of 4 to 39 digits: a ref that may be a commit's prefix.
fn is_short_commit(text: &str) -> bool {
    (4..40).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The first ref of `ls-remote`'s answer, with the commit of its `^{}` line
/// when it is an annotated tag.
fn parse_ls_remote(out: &str) -> Option<ResolvedRef> {
    let lines: Vec<(&str, &str)> = out
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(sha, _)| is_commit(sha))
        .collect();
    let &(sha, name) = lines.iter().find(|(_, name)| !name.ends_with("^{}"))?;
    let peeled = format!("{name}^{{}}");
    let commit = lines.iter().find(|(_, n)| *n == peeled).map(|(s, _)| *s);
    Some(ResolvedRef {
        commit: commit.unwrap_or(sha).to_owned(),
        tag: commit.map(|_| sha.to_owned()),
        name: (name != "HEAD").then(|| name.to_owned()),
    })
}

/// Fetches every branch and tag into a repository at `scratch/repo` and
/// finds the commit `git.reference` is a prefix of.
fn fetch_all_and_find(git: &GitRef, scratch: &Path) -> Result<String, BuildError> {
    let url = git.redacted();
    let repo = scratch.join("repo");
    init(&repo, git, &url)?;
    run_git(
        &repo,
        &[
            "fetch",
            "-q",
            "--no-tags",
            "origin",
            "+refs/heads/*:refs/remotes/origin/*",
            "+refs/tags/*:refs/tags/*",
        ]
        .map(str::to_owned),
        &url,
        "failed to fetch remote",
    )?;
    let found = run_git(
        &repo,
        &[
            "rev-parse".to_owned(),
            "--verify".to_owned(),
            "-q".to_owned(),
            format!("{}^{{commit}}", git.reference),
        ],
        &url,
        "resolving",
    )
    .map_err(|_| BuildError::Git {
        action: "resolving",
        url: url.clone(),
        reason: format!("repository does not contain ref {}", git.reference),
    })?;
    Ok(found.trim().to_owned())
}

/// Makes an empty repository at `dir` (no templates, so no sample hooks)
/// whose `origin` is the remote.
fn init(dir: &Path, git: &GitRef, url: &str) -> Result<(), BuildError> {
    fs::create_dir_all(dir).map_err(|e| BuildError::io(dir, e))?;
    run_git(
        dir,
        &["init", "-q", "--template="].map(str::to_owned),
        url,
        "failed to init repo for",
    )?;
    run_git(
        dir,
        &["remote", "add", "origin", &git.remote].map(str::to_owned),
        url,
        "failed to add remote",
    )?;
    Ok(())
}

/// Fetches and checks out `resolved` in `work`, and returns the directory
/// whose contents ADD copies: the checkout, or its `subdir`. With
/// `keep_git_dir` (and no subdir, as `BuildKit`) its `.git` stays, with
/// `origin` set to the address without password; otherwise it goes.
/// Modes are those of a checkout with umask 022 whatever kiln's umask.
pub fn checkout(
    git: &GitRef,
    resolved: &ResolvedRef,
    keep_git_dir: bool,
    work: &Path,
    reach_host: bool,
) -> Result<PathBuf, BuildError> {
    let url = git.redacted();
    if !reach_host {
        check_remote(&git.remote, &url, "failed to fetch remote")?;
    }
    let tree = work.join("repo");
    if !tree.join(".git").exists() {
        init(&tree, git, &url)?;
    }
    let commit = resolved.commit.as_str();
    let have = |tree: &Path| {
        run_git(
            tree,
            &["cat-file", "-e", &format!("{commit}^{{commit}}")].map(str::to_owned),
            &url,
            "",
        )
        .is_ok()
    };
    if !have(&tree) {
        let shallow = run_git(
            &tree,
            &["fetch", "-q", "--no-tags", "--depth=1", "origin", commit].map(str::to_owned),
            &url,
            "failed to fetch remote",
        );
        // A server that does not serve a commit by name, or no shallow
        // fetch: everything is fetched (BuildKit's argsNoDepth retry).
        if shallow.is_err() || !have(&tree) {
            let mut args = ["fetch", "-q", "--no-tags", "origin"]
                .map(str::to_owned)
                .to_vec();
            args.extend(
                resolved
                    .name
                    .iter()
                    .map(|n| format!("+{n}:refs/kiln/fetched")),
            );
            if resolved.name.is_none() {
                args.push("+refs/heads/*:refs/remotes/origin/*".to_owned());
                args.push("+refs/tags/*:refs/tags/*".to_owned());
            }
            run_git(&tree, &args, &url, "failed to fetch remote")?;
            if !have(&tree) {
                return Err(BuildError::Git {
                    action: "failed to fetch remote",
                    url,
                    reason: format!("commit {commit} is not in the repository"),
                });
            }
        }
    }
    run_git(
        &tree,
        &["checkout", "-q", "--detach", commit].map(str::to_owned),
        &url,
        "failed to checkout remote",
    )?;
    if git.submodules != Some(false) && tree.join(".gitmodules").exists() {
        update_submodules(&tree, &url, reach_host)?;
    }
    let subdir = clean_subdir(&git.subdir);
    let git_dir = tree.join(".git");
    if keep_git_dir && subdir.is_empty() {
        if let Some(name) = resolved
            .name
            .as_deref()
            .filter(|n| n.starts_with("refs/heads/"))
        {
            run_git(
                &tree,
                &["update-ref", name, commit].map(str::to_owned),
                &url,
                "failed to checkout remote",
            )?;
        }
        let _ = run_git(
            &tree,
            &["update-ref", "-d", "refs/kiln/fetched"].map(str::to_owned),
            &url,
            "",
        );
        run_git(
            &tree,
            &["remote", "set-url", "origin", &url].map(str::to_owned),
            &url,
            "failed to set remote origin to",
        )?;
        run_git(
            &tree,
            &["reflog", "expire", "--all", "--expire=now"].map(str::to_owned),
            &url,
            "failed to expire reflog for remote",
        )?;
        let fetch_head = git_dir.join("FETCH_HEAD");
        if let Err(e) = fs::remove_file(&fetch_head)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(BuildError::io(&fetch_head, e));
        }
    } else {
        fs::remove_dir_all(&git_dir).map_err(|e| BuildError::io(&git_dir, e))?;
    }
    normalize_modes(&tree)?;
    // Each part of the subdir must be a directory of the checkout, never
    // a symlink that could lead out of it.
    let mut dir = tree;
    for part in subdir.split('/').filter(|p| !p.is_empty()) {
        dir.push(part);
        let meta = fs::symlink_metadata(&dir);
        if !meta.is_ok_and(|m| m.is_dir()) {
            return Err(BuildError::Git {
                action: "failed to checkout remote",
                url,
                reason: format!(
                    "failed to open subdir {subdir}: not a directory of the repository"
                ),
            });
        }
    }
    Ok(dir)
}

/// The subdir as a relative path without `.` or `..` parts (cleaned as
/// an absolute path, so it cannot climb out of the repository).
pub fn clean_subdir(subdir: &str) -> String {
    kiln_parser::golang::path_clean(&format!("/{subdir}"))
        .trim_start_matches('/')
        .to_owned()
}

/// Gives the checkout the modes git makes with umask 022: directories
/// 0755, files 0644, or 0755 when executable (symlinks have none).
fn normalize_modes(dir: &Path) -> Result<(), BuildError> {
    let entries = fs::read_dir(dir).map_err(|e| BuildError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| BuildError::io(dir, e))?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(|e| BuildError::io(&path, e))?;
        let mode = if meta.is_dir() {
            normalize_modes(&path)?;
            0o755
        } else if meta.is_file() {
            if meta.permissions().mode() & 0o111 == 0 {
                0o644
            } else {
                0o755
            }
        } else {
            continue;
        };
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .map_err(|e| BuildError::io(&path, e))?;
    }
    Ok(())
}

/// Configuration every git command runs with (see the module's comment).
const SAFE_CONFIG: &[&str] = &[
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "protocol.file.allow=never",
    "protocol.ext.allow=never",
    "init.defaultBranch=master",
    "advice.detachedHead=false",
];

/// Runs git in `dir` and returns its output; a failure keeps git's
/// message. The child is in its own process group, killed with its
/// helpers (ssh, remote-https) when the build is cancelled.
fn run_git(
    dir: &Path,
    args: &[String],
    url: &str,
    action: &'static str,
) -> Result<String, BuildError> {
    let fail = |reason: String| BuildError::Git {
        action,
        url: url.to_owned(),
        reason,
    };
    let mut command = Command::new("git");
    for config in SAFE_CONFIG {
        command.arg("-c").arg(config);
    }
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("HOME", "/dev/null")
        .env("LC_ALL", "C")
        .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        // Never look for a repository above the one kiln made.
        .env("GIT_CEILING_DIRECTORIES", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for name in [
        "SSH_AUTH_SOCK",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
    ] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    let mut child = command
        .spawn()
        .map_err(|e| fail(format!("running git: {e}")))?;
    let reader = |stream: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut stream) = stream {
                let _ = stream.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = reader(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let stderr = reader(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let status = loop {
        if crate::is_cancelled() || kiln_runtime::interrupted() {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.wait();
            crate::cancel();
            return Err(BuildError::Cancelled);
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(fail(format!("waiting for git: {e}"))),
        }
    };
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    if status.success() {
        Ok(out)
    } else {
        let message = err.trim();
        Err(fail(if message.is_empty() {
            format!(
                "git {} failed: {status}",
                args.first().map_or("", String::as_str)
            )
        } else {
            message.to_owned()
        }))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn remote_hosts() {
        use super::remote_host;
        let host = |h: &str, p: u16| Some((h.to_owned(), p));
        assert_eq!(
            remote_host("https://example.com/a.git"),
            host("example.com", 443)
        );
        assert_eq!(
            remote_host("http://u:pw@example.com:8080/a"),
            host("example.com", 8080)
        );
        assert_eq!(
            remote_host("git://127.0.0.1:9999/repo"),
            host("127.0.0.1", 9999)
        );
        assert_eq!(remote_host("ssh://git@[::1]:2222/r"), host("::1", 2222));
        assert_eq!(
            remote_host("git@github.com:moby/buildkit.git"),
            host("github.com", 22)
        );
        assert_eq!(remote_host("localhost:repo"), host("localhost", 22));
        assert_eq!(remote_host("../sibling.git"), None);
        assert_eq!(remote_host("file:///etc"), None);
    }

    use super::*;

    #[test]
    fn ls_remote_answers() {
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let out = format!("{a}\trefs/tags/v1\n{b}\trefs/tags/v1^{{}}\n");
        assert_eq!(
            parse_ls_remote(&out),
            Some(ResolvedRef {
                commit: b.clone(),
                tag: Some(a.clone()),
                name: Some("refs/tags/v1".to_owned()),
            })
        );
        let out = format!("{a}\trefs/heads/main\n{b}\trefs/remotes/origin/main\n");
        assert_eq!(parse_ls_remote(&out).map(|r| r.commit), Some(a.clone()));
        assert_eq!(
            parse_ls_remote(&format!("ref: refs/heads/main\tHEAD\n{a}\tHEAD\n")),
            Some(ResolvedRef {
                commit: a,
                tag: None,
                name: None,
            })
        );
        assert_eq!(parse_ls_remote(""), None);
    }

    #[test]
    fn subdirs_stay_inside() {
        assert_eq!(clean_subdir(""), "");
        assert_eq!(clean_subdir("/"), "");
        assert_eq!(clean_subdir("a/./b/"), "a/b");
        assert_eq!(clean_subdir("../x"), "x");
        assert!(is_commit(&"0".repeat(40)) && !is_commit("abc"));
        assert!(is_short_commit("abcd1234") && !is_short_commit("main"));
    }
}
