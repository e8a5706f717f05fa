//! `kiln build` reads a Dockerfile as BuildKit's Dockerfile frontend
//! (dockerfile2llb) does, in what a RUN sees, what an image holds and what
//! the user reads: proxy build args and progress names. As root, on the
//! busybox base image of `common::build` (CI runs them as root).
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::fs;

use common::build::{build_ok, busybox, context, sh};
use serde_json::Value;

/// The image's `Config` as `kiln inspect` prints it.
fn config(kiln: &common::Kiln, image: &str) -> Value {
    let out = kiln.ok(&["inspect", image]);
    serde_json::from_str::<Value>(&out).unwrap()[0]["Config"].clone()
}

#[test]
fn proxy_build_args_reach_every_run_under_both_names_and_nowhere_else() {
    let kiln = busybox();
    let dir = context(
        &kiln,
        "proxy",
        "FROM bb:1\n\
         ENV no_proxy=from-env\n\
         RUN env | grep -i _proxy= | sort > /proxies\n",
        &[],
    );
    let args = |http: &str| {
        vec![
            "--build-arg".to_owned(),
            format!("HTTP_PROXY={http}"),
            "--build-arg".to_owned(),
            "no_proxy=.local".to_owned(),
            "--build-arg".to_owned(),
            "Ftp_Proxy=ftp://f:21".to_owned(),
            // an empty value sets nothing
            "--build-arg".to_owned(),
            "HTTPS_PROXY=".to_owned(),
        ]
    };
    let first = args("http://p:3128");
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    let stderr = build_ok(&kiln, &dir, "proxy:1", &first);
    // Recognised in any case: no "unused build arg" warning for them.
    assert!(!stderr.contains("Ftp_Proxy"), "{stderr}");
    // Both spellings of each name, over the stage's own `no_proxy`.
    assert_eq!(
        sh(&kiln, "proxy:1", "cat /proxies"),
        "FTP_PROXY=ftp://f:21\nHTTP_PROXY=http://p:3128\nNO_PROXY=.local\n\
         ftp_proxy=ftp://f:21\nhttp_proxy=http://p:3128\nno_proxy=.local\n"
    );
    // Not in the config or the history of the image.
    let env = config(&kiln, "proxy:1")["Env"].to_string();
    assert!(env.contains("\"no_proxy=from-env\""), "{env}");
    assert!(!env.contains("PROXY") && !env.contains(".local"), "{env}");
    let history = kiln.ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}",
        "proxy:1",
    ]);
    assert!(
        !history.contains("3128") && !history.contains("ftp://"),
        "{history}"
    );
    // Not in the cache key: another proxy reuses every step.
    let second = args("http://other:8080");
    let second: Vec<&str> = second.iter().map(String::as_str).collect();
    let stderr = build_ok(&kiln, &dir, "proxy:2", &second);
    assert_eq!(stderr.matches(" CACHED").count(), 1, "{stderr}");
    // An explicit ARG makes it an ordinary build arg as well, as in
    // BuildKit: in the RUN's history entry and its cache key.
    let declared = context(
        &kiln,
        "declared",
        "FROM bb:1\nARG HTTP_PROXY\nRUN echo \"$HTTP_PROXY $http_proxy\" > /declared\n",
        &[],
    );
    build_ok(&kiln, &declared, "proxy:3", &first);
    assert_eq!(
        sh(&kiln, "proxy:3", "cat /declared"),
        "http://p:3128 http://p:3128\n"
    );
    let history = kiln.ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}",
        "proxy:3",
    ]);
    assert!(
        history.contains("RUN |1 HTTP_PROXY=http://p:3128 "),
        "{history}"
    );
    let stderr = build_ok(&kiln, &declared, "proxy:4", &second);
    assert!(!stderr.contains(" CACHED"), "{stderr}");
}

#[test]
fn progress_names_show_expanded_values_and_mask_env_secrets() {
    let kiln = busybox();
    let secret = kiln.path("token");
    fs::write(&secret, "hush-7f3a").unwrap();
    let dir = context(
        &kiln,
        "names",
        "FROM bb:1\n\
         ARG SRC=file.txt\n\
         ENV DST=/dst TOKEN=not-the-secret\n\
         COPY $SRC \"$DST/\"\n\
         WORKDIR $DST/sub\n\
         RUN --mount=type=secret,id=tok,env=TOKEN test -n \"$TOKEN\" && echo $SRC $UNSET > out\n",
        &[("file.txt", "x\n")],
    );
    let stderr = build_ok(
        &kiln,
        &dir,
        "names:1",
        &["--secret", &format!("id=tok,src={}", secret.display())],
    );
    for name in [
        "[2/4] COPY file.txt /dst/\n",
        "[3/4] WORKDIR /dst/sub\n",
        // RUN: quotes kept, unset variables as written, env secrets masked
        "[4/4] RUN --mount=type=secret,id=tok,env=TOKEN test -n \"****\" && echo file.txt $UNSET > out\n",
    ] {
        assert!(stderr.contains(name), "{name:?} not in:\n{stderr}");
    }
    assert!(!stderr.contains("hush-7f3a"), "{stderr}");
    assert!(!stderr.contains("not-the-secret"), "{stderr}");
    assert_eq!(sh(&kiln, "names:1", "cat /dst/sub/out"), "file.txt\n");
    // The JSON progress carries the same names.
    let output = kiln
        .command()
        .args(["build", "--progress=json", "--no-cache", "-t", "names:2"])
        .args(["--secret", &format!("id=tok,src={}", secret.display())])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(output.status.success());
    let events = String::from_utf8(output.stderr).unwrap();
    assert!(
        events.contains("\"name\":\"COPY file.txt /dst/\""),
        "{events}"
    );
}
