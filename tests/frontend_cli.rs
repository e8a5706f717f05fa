//! `kiln build` reads a Dockerfile as BuildKit's Dockerfile frontend
//! (dockerfile2llb) does, in what a RUN sees, what an image holds and what
//! the user reads: proxy build args, `TARGETSTAGE`, JSON forms followed by
//! text, progress names and BuildKit's error words. As root, on the
//! busybox base image of `common::build` (CI runs them as root).
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::fs;

use common::build::{build_fails, build_ok, busybox, context, sh};
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
fn targetstage_holds_the_stage_being_built() {
    let kiln = busybox();
    // BuildKit's own test (moby/buildkit#5431), on busybox final stages
    // so that the result can be read with `kiln run`.
    let stages = "FROM bb:1 AS base\n\
         WORKDIR /out\n\
         RUN echo -n \"value:$TARGETSTAGE\" > /out/first\n\
         ARG TARGETSTAGE\n\
         RUN echo -n \"value:$TARGETSTAGE\" > /out/second\n\
         FROM bb:1 AS foo\n\
         COPY --from=base /out/ /res/\n";
    let unnamed = context(
        &kiln,
        "unnamed",
        &format!("{stages}FROM bb:1\nCOPY --from=base /out/ /res/\n"),
        &[],
    );
    let read = |image: &str| sh(&kiln, image, "cat /res/first; echo; cat /res/second");
    // The last stage has no name: `default`; nothing before `ARG`.
    build_ok(&kiln, &unnamed, "ts:default", &[]);
    assert_eq!(read("ts:default"), "value:\nvalue:default");
    // --target, as given.
    build_ok(&kiln, &unnamed, "ts:foo", &["--target", "foo"]);
    assert_eq!(read("ts:foo"), "value:\nvalue:foo");
    // The last stage's name.
    let named = context(
        &kiln,
        "named",
        &format!("{stages}FROM bb:1 AS final\nCOPY --from=base /out/ /res/\n"),
        &[],
    );
    build_ok(&kiln, &named, "ts:final", &[]);
    assert_eq!(read("ts:final"), "value:\nvalue:final");
}

#[test]
fn json_form_followed_by_text_is_the_shell_form() {
    let kiln = busybox();
    // BuildKit runs `/bin/sh -c '["echo", "hello"]this is invalid'`,
    // which fails with that text in the message.
    let dir = context(
        &kiln,
        "run",
        "FROM bb:1\nRUN [\"echo\", \"hello\"]this is invalid\n",
        &[],
    );
    let stderr = build_fails(&kiln, &dir, &["-t", "json:1"]);
    assert!(
        stderr.contains(
            "process \"/bin/sh -c [\\\"echo\\\", \\\"hello\\\"]this is invalid\" did not complete successfully: exit code: 127"
        ),
        "{stderr}"
    );
    let dir = context(
        &kiln,
        "entrypoint",
        "FROM bb:1\nENTRYPOINT []random string\nCMD [\"a\", 1] x\n",
        &[],
    );
    build_ok(&kiln, &dir, "json:2", &[]);
    let config = config(&kiln, "json:2");
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/bin/sh", "-c", "[]random string"])
    );
    assert_eq!(
        config["Cmd"],
        serde_json::json!(["/bin/sh", "-c", "[\"a\", 1] x"])
    );
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

#[test]
fn errors_use_buildkit_words_inside_kilns_context() {
    let kiln = busybox();
    let fails = |name: &str, dockerfile: &str, extra: &[&str]| {
        let dir = context(&kiln, name, dockerfile, &[("present", "p\n")]);
        build_fails(&kiln, &dir, extra)
    };
    // An unknown flag: BuildKit's words with the flag's dashes and the
    // nearest flag of RUN, after kiln's location and before its caret.
    let stderr = fails(
        "flag",
        "FROM bb:1\nRUN --mont=target=/mytmp,type=tmpfs /bin/true\n",
        &[],
    );
    assert!(
        stderr.contains(
            "Dockerfile:2:5: unknown flag: --mont (did you mean mount?)\n  |\n2 | RUN --mont="
        ),
        "{stderr}"
    );
    // A --target that names no stage.
    let stderr = fails(
        "target",
        "FROM bb:1 AS build\nFROM bb:1 AS runtime\n",
        &["--target", "bulid"],
    );
    assert!(
        stderr.contains("target stage \"bulid\" could not be found (did you mean build?)"),
        "{stderr}"
    );
    // A variable in COPY --from: COPY's message, not RUN --mount's.
    let stderr = fails(
        "from",
        "ARG STAGE=build\nFROM bb:1 AS build\nFROM bb:1\nCOPY --from=${STAGE} /a /a\n",
        &[],
    );
    assert!(
        stderr.contains(
            "Dockerfile:4:13: variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("define alias stage"), "{stderr}");
    // A required secret that was not given.
    let stderr = fails(
        "secret",
        "FROM bb:1\nRUN --mount=type=secret,id=mysecret,required true\n",
        &[],
    );
    assert!(
        stderr.contains("error: Dockerfile:2:1: secret mysecret: not found"),
        "{stderr}"
    );
    // A missing COPY source: its absolute path, quoted, and what the
    // context has nearby.
    let stderr = fails("source", "FROM bb:1\nCOPY ./sub/../nosuch /x\n", &[]);
    assert!(
        stderr.contains("\"/nosuch\": not found (the context has: Dockerfile, present)"),
        "{stderr}"
    );
}
