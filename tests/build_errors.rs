//! Golden tests of `kiln build`'s step errors: each names the Dockerfile,
//! line and column, shows the instruction with a caret under it (and the
//! stage, in a multi-stage build), as parse errors are shown, and keeps
//! BuildKit's words for what went wrong. Builds need root; CI runs them as
//! root (`busybox()` fails loudly otherwise).
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::net::TcpListener;

use common::build::{build_fails, build_ok, busybox, context};

/// The final error as the CLI prints it: from its `error: ` line to the end
/// of stderr.
fn rendered(stderr: &str) -> &str {
    let start = stderr.rfind("\nerror: ").map_or(0, |i| i + 1);
    assert!(
        stderr[start..].starts_with("error: "),
        "no error in:\n{stderr}"
    );
    &stderr[start..]
}

/// Builds a context with `dockerfile` and `files` and returns the final
/// error, after checking that progress showed the same located message on
/// its `#N ERROR:` line.
fn build_error(dockerfile: &str, files: &[(&str, &str)]) -> String {
    build_error_with(dockerfile, files, &[])
}

/// [`build_error`] with more `kiln build` arguments.
fn build_error_with(dockerfile: &str, files: &[(&str, &str)], extra: &[&str]) -> String {
    let kiln = busybox();
    let dir = context(&kiln, "ctx", dockerfile, files);
    let stderr = build_fails(&kiln, &dir, extra);
    let error = rendered(&stderr).to_owned();
    let first = error.lines().next().unwrap().trim_start_matches("error: ");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with('#') && l.ends_with(&format!(" ERROR: {first}"))),
        "progress does not show {first:?}:\n{stderr}"
    );
    error
}

#[test]
fn copy_missing_source() {
    assert_eq!(
        build_error("FROM bb:1\nCOPY missing.txt /x\n", &[("a.txt", "a\n")]),
        "error: Dockerfile:2:1: COPY source \"/missing.txt\": not found (the context has: Dockerfile, a.txt)\n\
         \x20 |\n\
         2 | COPY missing.txt /x\n\
         \x20 | ^^^^^^^^^^^^^^^^^^^\n"
    );
}

#[test]
fn add_missing_source() {
    assert_eq!(
        build_error("FROM bb:1\n\n  ADD  missing.txt /x\n", &[("a.txt", "a\n")]),
        "error: Dockerfile:3:3: ADD source \"/missing.txt\": not found (the context has: Dockerfile, a.txt)\n\
         \x20 |\n\
         3 |   ADD  missing.txt /x\n\
         \x20 |   ^^^^^^^^^^^^^^^^^^^\n"
    );
}

#[test]
fn add_url_nobody_answers() {
    // A loopback port nothing listens on once the listener is gone.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let error = build_error_with(
        &format!("FROM bb:1\nADD http://127.0.0.1:{port}/f /f\n"),
        &[],
        &["--allow", "network.host"],
    );
    let line = format!("ADD http://127.0.0.1:{port}/f /f");
    assert_eq!(
        error,
        format!(
            "error: Dockerfile:2:1: downloading http://127.0.0.1:{port}/f: io: Connection refused (os error 111)\n\
             \x20 |\n\
             2 | {line}\n\
             \x20 | {}\n",
            "^".repeat(line.len())
        )
    );
}

#[test]
fn add_url_of_the_build_hosts_loopback_is_refused() {
    let error = build_error("FROM bb:1\nADD http://localhost:1/f /f\n", &[]);
    let first = error.lines().next().unwrap();
    assert!(
        first.starts_with(
            "error: Dockerfile:2:1: downloading http://localhost:1/f: io: refusing to connect: localhost is an address of the build host ("
        ),
        "{error}"
    );
    assert!(
        first.ends_with(
            "), which the Dockerfile may not reach: a build reaches services on its host only with --allow network.host"
        ),
        "{error}"
    );
}

#[test]
fn workdir_through_a_file() {
    assert_eq!(
        build_error("FROM bb:1\nWORKDIR /etc/base-file/dir\n", &[]),
        "error: Dockerfile:2:1: cannot copy to non-directory: /etc/base-file\n\
         \x20 |\n\
         2 | WORKDIR /etc/base-file/dir\n\
         \x20 | ^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
    );
}

#[test]
fn chown_without_a_user() {
    assert_eq!(
        build_error(
            "FROM bb:1\nCOPY --chown=:staff a.txt /a\n",
            &[("a.txt", "a\n")]
        ),
        "error: Dockerfile:2:1: invalid --chown value \":staff\"\n\
         \x20 |\n\
         2 | COPY --chown=:staff a.txt /a\n\
         \x20 | ^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
    );
}

#[test]
fn run_exit_code_with_the_output_tail() {
    assert_eq!(
        build_error("FROM bb:1\nRUN echo oops; exit 3\n", &[]),
        "error: Dockerfile:2:1: process \"/bin/sh -c echo oops; exit 3\" did not complete successfully: exit code: 3\n\
         \x20 |\n\
         2 | RUN echo oops; exit 3\n\
         \x20 | ^^^^^^^^^^^^^^^^^^^^^\n\
         last lines of output:\n\
         \x20 > oops\n"
    );
}

#[test]
fn continued_instruction_shows_its_first_line() {
    // The caret stops before the continuation's escape.
    assert_eq!(
        build_error("FROM bb:1\nRUN true && \\\n  exit 2\n", &[]),
        "error: Dockerfile:2:1: process \"/bin/sh -c true &&   exit 2\" did not complete successfully: exit code: 2\n\
         \x20 |\n\
         2 | RUN true && \\\n\
         \x20 | ^^^^^^^^^^^\n"
    );
}

#[test]
fn error_in_a_named_stage_names_it() {
    assert_eq!(
        build_error(
            "FROM bb:1 AS build\nRUN exit 4\nFROM scratch\nCOPY --from=build /etc/name2 /x\n",
            &[]
        ),
        "error: Dockerfile:2:1: process \"/bin/sh -c exit 4\" did not complete successfully: exit code: 4\n\
         \x20 |\n\
         2 | RUN exit 4\n\
         \x20 | ^^^^^^^^^^ in stage build\n"
    );
    // An unnamed stage of several is named by its index.
    assert_eq!(
        build_error("FROM bb:1 AS build\nFROM bb:1\nCOPY nope /x\n", &[]),
        "error: Dockerfile:3:1: COPY source \"/nope\": not found (the context has: Dockerfile)\n\
         \x20 |\n\
         3 | COPY nope /x\n\
         \x20 | ^^^^^^^^^^^^ in stage 1\n"
    );
}

#[test]
fn missing_secret_and_bind_source() {
    assert_eq!(
        build_error(
            "FROM bb:1\nRUN --mount=type=secret,id=mysecret,required true\n",
            &[]
        ),
        "error: Dockerfile:2:1: secret mysecret: not found (RUN --mount=type=secret,required needs it: pass --secret id=mysecret,src=FILE or id=mysecret,env=VAR)\n\
         \x20 |\n\
         2 | RUN --mount=type=secret,id=mysecret,required true\n\
         \x20 | ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
    );
    assert_eq!(
        build_error(
            "FROM bb:1\nRUN --mount=type=bind,source=nope,target=/m true\n",
            &[]
        ),
        "error: Dockerfile:2:1: \"/nope\": not found in the build context (RUN --mount=type=bind,source=nope)\n\
         \x20 |\n\
         2 | RUN --mount=type=bind,source=nope,target=/m true\n\
         \x20 | ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
    );
}

#[test]
fn base_image_that_cannot_be_pulled() {
    // A loopback registry nobody serves: the FROM is named, with a caret;
    // a `COPY --from` image gets the caret under its reference.
    let kiln = busybox();
    let dir = context(&kiln, "from", "FROM 127.0.0.1:1/nosuch:1\n", &[]);
    let error = rendered(&build_fails(&kiln, &dir, &[])).to_owned();
    assert!(
        error.starts_with(
            "error: Dockerfile:1:1: cannot pull base image 127.0.0.1:1/nosuch:1: cannot reach registry 127.0.0.1:1"
        ),
        "{error}"
    );
    assert!(
        error.ends_with("\n  |\n1 | FROM 127.0.0.1:1/nosuch:1\n  | ^^^^^^^^^^^^^^^^^^^^^^^^^\n"),
        "{error}"
    );
    let dir = context(
        &kiln,
        "copy-from",
        "FROM bb:1\nCOPY --from=127.0.0.1:1/nosuch:2 /a /x\n",
        &[],
    );
    let error = rendered(&build_fails(&kiln, &dir, &[])).to_owned();
    assert!(
        error.starts_with("error: Dockerfile:2:13: cannot pull base image 127.0.0.1:1/nosuch:2: "),
        "{error}"
    );
    assert!(
        error.ends_with(
            "\n  |\n2 | COPY --from=127.0.0.1:1/nosuch:2 /a /x\n  |             ^^^^^^^^^^^^^^^^^^^^\n"
        ),
        "{error}"
    );
}

#[test]
fn onbuild_trigger_points_at_the_from() {
    let kiln = busybox();
    let base = context(&kiln, "base", "FROM bb:1\nONBUILD RUN exit 5\n", &[]);
    build_ok(&kiln, &base, "ob:1", &[]);
    let dir = context(&kiln, "child", "FROM ob:1\nRUN true\n", &[]);
    assert_eq!(
        rendered(&build_fails(&kiln, &dir, &[])),
        "error: Dockerfile:1:1: process \"/bin/sh -c exit 5\" did not complete successfully: exit code: 5\n\
         \x20 |\n\
         1 | FROM ob:1\n\
         \x20 | ^^^^^^^^^ running the base image's ONBUILD RUN exit 5\n"
    );
}

#[test]
fn workdir_under_a_malformed_user() {
    assert_eq!(
        build_error("FROM bb:1\nUSER :x\nWORKDIR /w\n", &[]),
        "error: Dockerfile:3:1: invalid USER \":x\"\n\
         \x20 |\n\
         3 | WORKDIR /w\n\
         \x20 | ^^^^^^^^^^\n"
    );
}
