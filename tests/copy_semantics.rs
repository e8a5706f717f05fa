//! COPY/ADD file semantics as BuildKit has them: `--parents` include
//! patterns, destinations made when nothing is copied, the mode of
//! directories a `--chmod` copy creates, sockets in the build context.
//! Each test builds on a busybox base image made by the test and reads the
//! image's files through `kiln run`; they need root (CI runs them as root).
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use common::build::{build_ok, busybox, context, sh};

/// Directories a COPY creates get an octal `--chmod` mode, existing ones
/// keep theirs, a symbolic mode leaves them 0755 (BuildKit's
/// `testCopyChmod`: fsutil's `MkdirAll` with the copy's `Mode`).
#[test]
fn octal_chmod_is_the_mode_of_created_directories() {
    let kiln = busybox();
    let dir = context(
        &kiln,
        "ctx",
        "FROM bb:1\n\
         RUN mkdir -m 0701 /existing\n\
         COPY --chmod=777 foo /parent/foo\n\
         COPY --chmod=770 foo /parent/sub/foo\n\
         COPY --chmod=777 foo /existing/new/foo\n\
         COPY --chmod=u+x foo /sym/dir/foo\n",
        &[("foo", "foo\n")],
    );
    build_ok(&kiln, &dir, "chmod:1", &[]);
    let out = sh(
        &kiln,
        "chmod:1",
        "stat -c '%n %a' /parent /parent/sub /parent/sub/foo /existing /existing/new /sym/dir",
    );
    assert_eq!(
        out,
        "/parent 777\n/parent/sub 770\n/parent/sub/foo 770\n/existing 701\n/existing/new 777\n\
         /sym/dir 755\n"
    );
}
