//! COPY/ADD file semantics as BuildKit has them: `--parents` include
//! patterns, destinations made when nothing is copied, the mode of
//! directories a `--chmod` copy creates, sockets in the build context.
//! Each test builds on a busybox base image made by the test and reads the
//! image's files through `kiln run`; they need root (CI runs them as root).
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixListener;

use common::build::{build_ok, busybox, context, sh};

/// `--parents` turns the part after the pivot into a patternmatcher
/// include pattern (BuildKit's `testCopyRelativeParents`), where `**` is
/// any number of directories, none included. A plain source keeps Go's
/// `filepath.Match` (fsutil's `ResolveWildcards`), where `**` is `*`.
#[test]
fn parents_double_star_spans_any_number_of_directories() {
    let kiln = busybox();
    let dir = context(
        &kiln,
        "ctx",
        "FROM bb:1\n\
         COPY --parents /a/b*/./c/**/bar /out/\n\
         COPY --parents **/package.json /pkgs/\n\
         COPY /a/b/c/**/bar /flat/\n",
        &[
            ("a/b/c/bar", "0\n"),
            ("a/b/c/d/bar", "1\n"),
            ("a/b/c/other", "x\n"),
            ("a/b2/c/d/e/bar", "2\n"),
            ("package.json", "root\n"),
            ("x/package.json", "x\n"),
            ("x/y/z/package.json", "z\n"),
            ("x/y/other", "o\n"),
        ],
    );
    build_ok(&kiln, &dir, "parents:1", &[]);
    let out = sh(
        &kiln,
        "parents:1",
        "cd /out && find . | sort && cat c/bar c/d/bar c/d/e/bar; \
         cd /pkgs && find . | sort; ls /flat; cat /flat/bar",
    );
    assert_eq!(
        out,
        ".\n./c\n./c/bar\n./c/d\n./c/d/bar\n./c/d/e\n./c/d/e/bar\n0\n1\n2\n\
         .\n./package.json\n./x\n./x/package.json\n./x/y\n./x/y/z\n./x/y/z/package.json\n\
         bar\n1\n"
    );
}

/// The destination exists when a copy of directory contents copies
/// nothing: `--parents` wildcards matching nothing (BuildKit's
/// `testCopyParentsMissingDirectory`) and `--exclude` of everything below
/// the matched directories (`testExcludedFilesOnCopy`'s `ADD --exclude=*
/// dir* /6`).
#[test]
fn destinations_exist_when_nothing_is_copied() {
    let kiln = busybox();
    let dir = context(
        &kiln,
        "ctx",
        "FROM bb:1\n\
         COPY --parents /a/b3*/c /none/\n\
         COPY --parents /a/b/./c2* /after-pivot/\n\
         ADD --exclude=* dir* /6\n",
        &[
            ("a/b/c/d/foo", "foo\n"),
            ("dir1/file-101.png", "2\n"),
            ("dir2/file-201.pdf", "6\n"),
        ],
    );
    build_ok(&kiln, &dir, "empty:1", &[]);
    let out = sh(
        &kiln,
        "empty:1",
        "for d in /none /after-pivot /6; do test -d $d && echo \"$d $(ls -A $d | wc -l)\"; done",
    );
    assert_eq!(out, "/none 0\n/after-pivot 0\n/6 0\n");
}

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

/// fsutil sends a socket's metadata and no content, and BuildKit writes it
/// as an empty regular file: through COPY, as a single source, and in a
/// bind mount of the context. A rebuild of the same context is cached.
#[test]
fn sockets_in_the_context_arrive_as_empty_files() {
    let kiln = busybox();
    let dir = context(
        &kiln,
        "ctx",
        "FROM bb:1\n\
         COPY . /ctx/\n\
         COPY sock /single\n\
         RUN --mount=type=bind,target=/m sh -c 'test -f /m/sock && ! test -s /m/sock && echo mounted-ok' > /mounted\n",
        &[("dir/f", "f\n")],
    );
    for socket in ["sock", "dir/inner.sock"] {
        drop(UnixListener::bind(dir.join(socket)).unwrap());
        fs::set_permissions(dir.join(socket), fs::Permissions::from_mode(0o640)).unwrap();
    }
    build_ok(&kiln, &dir, "sock:1", &[]);
    let out = sh(
        &kiln,
        "sock:1",
        "for f in /ctx/sock /ctx/dir/inner.sock /single; do \
           test -f $f && ! test -S $f && echo \"$f $(stat -c '%s %a' $f)\"; done; cat /mounted",
    );
    assert_eq!(
        out,
        "/ctx/sock 0 640\n/ctx/dir/inner.sock 0 640\n/single 0 640\nmounted-ok\n"
    );
    let id = |tag: &str| kiln.ok(&["inspect", "-f", "{{.Id}}", tag]);
    let stderr = build_ok(&kiln, &dir, "sock:2", &[]);
    assert_eq!(id("sock:2"), id("sock:1"), "{stderr}");
}
