use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|&x| x.to_owned()).collect()
}

/// Creates files (`name` -> content; a name ending in `/` is a directory).
fn tree(root: &Path, files: &[(&str, &str)]) {
    fs::create_dir_all(root).unwrap();
    for (name, content) in files {
        let path = root.join(name);
        if name.ends_with('/') {
            fs::create_dir_all(&path).unwrap();
        } else {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, content).unwrap();
        }
    }
}

fn ctx_with(files: &[(&str, &str)], ignore: &[&str]) -> (tempfile::TempDir, PathBuf, BuildContext) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("ctx");
    tree(&root, files);
    let ctx = BuildContext::open(&root, &s(ignore)).unwrap();
    (tmp, root, ctx)
}

fn paths(sources: &[Source]) -> Vec<(&str, &str, bool)> {
    sources
        .iter()
        .map(|x| (x.path.as_str(), x.dest.as_str(), x.copy_contents))
        .collect()
}

fn resolve(ctx: &BuildContext, patterns: &[&str]) -> Vec<Source> {
    ctx.resolve_sources(&s(patterns), &[], false).unwrap()
}

fn digest_of(ctx: &BuildContext, patterns: &[&str]) -> Digest {
    let sources = resolve(ctx, patterns);
    ctx.digest_sources(&sources, &mut StatCache::new()).unwrap()
}

fn err_text(ctx: &BuildContext, patterns: &[&str]) -> String {
    ctx.resolve_sources(&s(patterns), &[], false)
        .unwrap_err()
        .to_string()
}

const BASIC: &[(&str, &str)] = &[
    ("a.txt", "a"),
    ("b.txt", "b"),
    ("c.md", "c"),
    ("dir/x", "x"),
    ("dir/sub/y", "y"),
    ("dir/z.txt", "z"),
];

#[test]
fn star_matches_within_one_directory_level() {
    let (_t, _r, ctx) = ctx_with(BASIC, &[]);
    let got = resolve(&ctx, &["*.txt"]);
    assert_eq!(
        paths(&got),
        [("a.txt", "a.txt", false), ("b.txt", "b.txt", false)]
    );
    assert!(got.iter().all(|x| x.file_type == FileType::File));
}

#[test]
fn dir_star_matches_files_and_directories() {
    let (_t, _r, ctx) = ctx_with(BASIC, &[]);
    let got = resolve(&ctx, &["dir/*"]);
    assert_eq!(
        paths(&got),
        [
            ("dir/sub", "", true),
            ("dir/x", "x", false),
            ("dir/z.txt", "z.txt", false)
        ]
    );
    assert_eq!(got[0].file_type, FileType::Dir);
    // `*/*.txt` needs two levels and does not descend further.
    let got = resolve(&ctx, &["*/*.txt"]);
    assert_eq!(paths(&got), [("dir/z.txt", "z.txt", false)]);
}

#[test]
fn character_class_and_question_mark() {
    let (_t, _r, ctx) = ctx_with(BASIC, &[]);
    assert_eq!(
        paths(&resolve(&ctx, &["[ab].txt"])),
        [("a.txt", "a.txt", false), ("b.txt", "b.txt", false)]
    );
    assert_eq!(
        paths(&resolve(&ctx, &["[^a].txt"])),
        [("b.txt", "b.txt", false)]
    );
    // Go negates with `^` only; `!` is an ordinary member of the class.
    assert_eq!(
        paths(&resolve(&ctx, &["[!a].txt"])),
        [("a.txt", "a.txt", false)]
    );
    assert_eq!(paths(&resolve(&ctx, &["[a-b].t?t"])).len(), 2);
    assert_eq!(paths(&resolve(&ctx, &["?.md"])), [("c.md", "c.md", false)]);
}

#[test]
fn escaped_star_is_literal() {
    let (_t, _r, ctx) = ctx_with(&[("*", "star"), ("x", "x")], &[]);
    assert_eq!(paths(&resolve(&ctx, &["\\*"])), [("*", "*", false)]);
    assert_eq!(
        paths(&resolve(&ctx, &["*"])),
        [("*", "*", false), ("x", "x", false)]
    );
}

#[test]
fn bad_pattern_is_an_error() {
    let (_t, _r, ctx) = ctx_with(BASIC, &[]);
    let err = ctx.resolve_sources(&s(&["[a"]), &[], false).unwrap_err();
    assert!(matches!(err, BuildError::Pattern { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "invalid pattern \"[a\": syntax error in pattern"
    );
}

#[test]
fn directory_versus_file() {
    let (_t, _r, ctx) = ctx_with(BASIC, &[]);
    assert_eq!(paths(&resolve(&ctx, &["dir"])), [("dir", "", true)]);
    assert_eq!(paths(&resolve(&ctx, &["dir/"])), [("dir", "", true)]);
    assert_eq!(paths(&resolve(&ctx, &["."])), [(".", "", true)]);
    assert_eq!(
        paths(&resolve(&ctx, &["dir/sub/y"])),
        [("dir/sub/y", "y", false)]
    );
}

/// Where each file a COPY with these sources writes lands, relative to
/// the destination directory (directories end with `/`), sorted.
fn landed(ctx: &BuildContext, sources: &[Source]) -> Vec<String> {
    let mut out = Vec::new();
    for source in sources {
        if !source.copy_contents {
            out.push(source.dest.clone());
            continue;
        }
        for entry in ctx.entries(source).unwrap().into_iter().skip(1) {
            let rel = String::from_utf8(entry.rel).unwrap();
            let slash = if entry.meta.is_dir() { "/" } else { "" };
            out.push(format!("{rel}{slash}"));
        }
    }
    out.sort();
    out
}

fn parents(ctx: &BuildContext, patterns: &[&str], excludes: &[&str]) -> Vec<String> {
    let sources = ctx
        .resolve_sources(&s(patterns), &s(excludes), true)
        .unwrap();
    // Every pivot is a directory whose contents are copied: the
    // destination exists even when nothing matched.
    assert!(sources.iter().all(|x| x.copy_contents && x.dest.is_empty()));
    landed(ctx, &sources)
}

/// The tree of BuildKit's `testCopyRelativeParents`.
const PARENTS_TREE: &[(&str, &str)] = &[
    ("test/a/b/c/d/foo", ""),
    ("test/a/b/c/d/e/bay", ""),
    ("test/a/b2/c/d/e/bar", ""),
    ("test/a/b/c2/d/e/baz", ""),
    ("test/a/b/c2/d/e2/baz", ""),
];

#[test]
fn parents_copy_what_the_pattern_after_the_pivot_matches() {
    let (_t, _r, ctx) = ctx_with(PARENTS_TREE, &[]);
    let d_tree = |prefix: &str| -> Vec<String> {
        ["", "d/", "d/e/", "d/e/bay", "d/foo"]
            .iter()
            .map(|x| format!("{prefix}{x}"))
            .collect()
    };
    // The cases of BuildKit's testCopyRelativeParents and
    // testCopyParentsMissingDirectory.
    let cases: &[(&str, Vec<String>)] = &[
        ("/test/a/b/./c/d", d_tree("c/")),
        (
            "/test/a/b/c/d/.",
            [
                ["test/", "test/a/", "test/a/b/"]
                    .map(str::to_owned)
                    .to_vec(),
                d_tree("test/a/b/c/"),
            ]
            .concat(),
        ),
        (
            "./test/a/b/c/d",
            [
                ["test/", "test/a/", "test/a/b/"]
                    .map(str::to_owned)
                    .to_vec(),
                d_tree("test/a/b/c/"),
            ]
            .concat(),
        ),
        (
            "/test/a/./b/./c",
            [vec!["b/".to_owned()], d_tree("b/c/")].concat(),
        ),
        (
            "/test/a/./*/c",
            [
                vec!["b/".to_owned()],
                d_tree("b/c/"),
                ["b2/", "b2/c/", "b2/c/d/", "b2/c/d/e/", "b2/c/d/e/bar"]
                    .map(str::to_owned)
                    .to_vec(),
            ]
            .concat(),
        ),
        // `**` spans directories: via b and b2, one pivot each.
        (
            "/test/a/b*/./c/**/e",
            [
                "c/",
                "c/",
                "c/d/",
                "c/d/",
                "c/d/e/",
                "c/d/e/",
                "c/d/e/bar",
                "c/d/e/bay",
            ]
            .map(str::to_owned)
            .to_vec(),
        ),
        (
            "/test/a/b*/./c/**/bar",
            ["c/", "c/d/", "c/d/e/", "c/d/e/bar"]
                .map(str::to_owned)
                .to_vec(),
        ),
        (
            "/test/a/b/c*/./d/**/baz",
            ["d/", "d/e/", "d/e/baz", "d/e2/", "d/e2/baz"]
                .map(str::to_owned)
                .to_vec(),
        ),
        // Wildcards matching nothing copy nothing, without an error.
        ("/test/a/b3*/c", vec![]),
        ("/test/a/b/./x*", vec![]),
    ];
    for (pattern, want) in cases {
        assert_eq!(&parents(&ctx, &[pattern], &[]), want, "{pattern}");
    }
}

#[test]
fn parents_double_star_matches_zero_or_more_directories() {
    let (_t, _r, ctx) = ctx_with(
        &[
            ("package.json", ""),
            ("a/package.json", ""),
            ("a/b/c/package.json", ""),
            ("a/b/other", ""),
            ("z/other", ""),
        ],
        &[],
    );
    assert_eq!(
        parents(&ctx, &["**/package.json"], &[]),
        [
            "a/",
            "a/b/",
            "a/b/c/",
            "a/b/c/package.json",
            "a/package.json",
            "package.json"
        ]
    );
    // --exclude and the .dockerignore apply below the pivot.
    assert_eq!(
        parents(&ctx, &["**/package.json"], &["a/b"]),
        ["a/", "a/package.json", "package.json"]
    );
    let (_t, _r, ignoring) = ctx_with(&[("a/package.json", ""), ("b/package.json", "")], &["b"]);
    assert_eq!(
        parents(&ignoring, &["**/package.json"], &[]),
        ["a/", "a/package.json"]
    );
}

#[test]
fn parents_without_wildcards_must_exist() {
    let (_t, _r, ctx) = ctx_with(PARENTS_TREE, &[]);
    let err = ctx
        .resolve_sources(&s(&["/test/nonexistent-file"]), &[], true)
        .unwrap_err();
    assert!(
        matches!(&err, BuildError::SourceNotFound { pattern, .. } if pattern == "/test/nonexistent-file"),
        "{err:?}"
    );
    let err = ctx
        .resolve_sources(&s(&["/nope/./c"]), &[], true)
        .unwrap_err();
    assert!(
        matches!(&err, BuildError::SourceNotFound { pattern, .. } if pattern == "/nope/./c"),
        "{err:?}"
    );
    // A file matched by the pivot is copied as a file.
    let got = ctx
        .resolve_sources(&s(&["test/a/b/c/d/fo*/./x"]), &[], true)
        .unwrap();
    assert_eq!(paths(&got), [("test/a/b/c/d/foo", "foo", false)]);
}

#[test]
fn include_prunes_only_directories_it_cannot_reach() {
    let include = |pattern: &str| Include {
        matcher: compile(&s(&[pattern])).unwrap(),
    };
    let cases: &[(&str, &str, bool)] = &[
        ("a/b/c", "a", true),
        ("a/b/c", "a/b", true),
        ("a/b/c", "x", false),
        ("a/b/c", "a/x", false),
        ("a/b/c", "a/b/c/d", false),
        ("a*/?/c", "ab/x", true),
        ("a*/?/c", "b", false),
        ("a/**/c", "a/x/y/z", true),
        ("**/c", "x", true),
        ("a/[bc]/d", "a/zz", true),
        ("a/\\*/d", "a/zz", true),
        ("!a", "a", false),
    ];
    for (pattern, dir, want) in cases {
        assert_eq!(
            include(pattern).may_match_below(dir),
            *want,
            "{pattern} {dir}"
        );
    }
}

#[test]
fn dotdot_and_leading_slash_are_clamped_at_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("a/b/ctx");
    tree(&root, &[("etc/passwd", "inside")]);
    // Something that `../../etc/passwd` would reach on the host.
    tree(&tmp.path().join("a"), &[("etc/passwd", "OUTSIDE")]);
    tree(tmp.path(), &[("secret", "OUTSIDE")]);
    let ctx = BuildContext::open(&root, &[]).unwrap();
    for p in ["../../etc/passwd", "/etc/passwd", "etc/../../etc/./passwd"] {
        assert_eq!(
            paths(&resolve(&ctx, &[p])),
            [("etc/passwd", "passwd", false)],
            "{p}"
        );
    }
    assert_eq!(paths(&resolve(&ctx, &["../.."])), [(".", "", true)]);
    let err = err_text(&ctx, &["../../../secret"]);
    assert_eq!(
        err,
        "COPY source \"/secret\": not found (the context has: etc/)"
    );
}

#[test]
fn symlinks_resolve_inside_the_context() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("ctx");
    tree(&root, &[("x/secret", "inside"), ("file", "f")]);
    tree(tmp.path(), &[("x/secret", "VICTIM")]);
    symlink("/x", root.join("abs")).unwrap();
    symlink("../../x", root.join("rel")).unwrap();
    symlink("x/../../../x/secret", root.join("deep")).unwrap();
    symlink("file", root.join("tofile")).unwrap();
    let ctx = BuildContext::open(&root, &[]).unwrap();
    assert_eq!(paths(&resolve(&ctx, &["abs"])), [("x", "", true)]);
    assert_eq!(paths(&resolve(&ctx, &["rel"])), [("x", "", true)]);
    assert_eq!(
        paths(&resolve(&ctx, &["rel/secret"])),
        [("x/secret", "secret", false)]
    );
    assert_eq!(
        paths(&resolve(&ctx, &["deep"])),
        [("x/secret", "deep", false)]
    );
    // The copied file takes the link's name; a wildcard match is followed too.
    let got = resolve(&ctx, &["tofile"]);
    assert_eq!(paths(&got), [("file", "tofile", false)]);
    assert_eq!(got[0].file_type, FileType::File);
    assert_eq!(paths(&resolve(&ctx, &["to*"])), [("file", "tofile", false)]);
    // A symlink in the middle of a wildcard pattern's fixed part.
    assert_eq!(
        paths(&resolve(&ctx, &["abs/*"])),
        [("x/secret", "secret", false)]
    );
}

#[test]
fn escaping_symlink_never_reads_outside() {
    // Context A links to `../x` (outside: a victim with a secret); context
    // B links to `x` inside. Both must digest the in-context `x`.
    let tmp = tempfile::tempdir().unwrap();
    tree(&tmp.path().join("x"), &[("secret", "VICTIM SECRET")]);
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    for (root, target) in [(&a, "../x"), (&b, "x")] {
        tree(root, &[("x/secret", "public")]);
        symlink(target, root.join("link")).unwrap();
    }
    let ctx_a = BuildContext::open(&a, &[]).unwrap();
    let ctx_b = BuildContext::open(&b, &[]).unwrap();
    for pattern in ["link", "link/secret", "link/*"] {
        let da = digest_of(&ctx_a, &[pattern]);
        assert_eq!(da, digest_of(&ctx_b, &[pattern]), "{pattern}");
    }
    // Sanity: the digest does depend on the content, so a read of the
    // victim would have shown.
    fs::write(b.join("x/secret"), "VICTIM SECRET").unwrap();
    assert_ne!(digest_of(&ctx_a, &["link"]), digest_of(&ctx_b, &["link"]));
    // Without an in-context target the link is simply not found.
    fs::remove_dir_all(a.join("x")).unwrap();
    assert_eq!(
        err_text(&ctx_a, &["link/secret"]),
        "COPY source \"/link/secret\": not found (the context has: link)"
    );
}

#[test]
fn symlink_loop_is_an_error() {
    let (_t, root, ctx) = ctx_with(&[], &[]);
    symlink("b", root.join("a")).unwrap();
    symlink("a", root.join("b")).unwrap();
    let err = ctx.resolve_sources(&s(&["a"]), &[], false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "too many levels of symbolic links resolving \"a\" in the build context"
    );
}

#[test]
fn dockerignore_hides_files_and_reinclude_works() {
    let files = &[
        ("a.log", "l"),
        ("b.txt", "b"),
        ("build/x", "x"),
        ("build/keep.txt", "k"),
        ("tmp/y", "y"),
    ];
    let (_t, _r, ctx) = ctx_with(files, &["*.log", "build", "!build/keep.txt", "tmp"]);
    assert_eq!(
        paths(&resolve(&ctx, &["*"])),
        [("b.txt", "b.txt", false), ("build", "", true)]
    );
    assert_eq!(
        paths(&resolve(&ctx, &["build/keep.txt"])),
        [("build/keep.txt", "keep.txt", false)]
    );
    assert_eq!(
        err_text(&ctx, &["a.log"]),
        "COPY source \"/a.log\": not found (the context has: b.txt, build/)"
    );
    assert_eq!(
        err_text(&ctx, &["build/x"]),
        "COPY source \"/build/x\": not found (the context has: build/keep.txt)"
    );
    assert!(err_text(&ctx, &["tmp"]).starts_with("COPY source \"/tmp\": not found"));
    // The directory digests as if only the re-included file were there.
    let (_t2, _r2, only) = ctx_with(&[("b.txt", "b"), ("build/keep.txt", "k")], &[]);
    assert_eq!(digest_of(&ctx, &["build"]), digest_of(&only, &["build"]));
    assert_eq!(digest_of(&ctx, &["."]), digest_of(&only, &["."]));
}

#[test]
fn exclude_applies_below_each_source() {
    let (_t, _r, ctx) = ctx_with(BASIC, &[]);
    // fsutil matches --exclude only below the path it copies: a wildcard
    // match is never excluded itself.
    let got = ctx
        .resolve_sources(&s(&["*.txt"]), &s(&["b.txt"]), false)
        .unwrap();
    assert_eq!(
        paths(&got),
        [("a.txt", "a.txt", false), ("b.txt", "b.txt", false)]
    );
    // BuildKit's testExcludedFilesOnCopy: `ADD --exclude=* dir* /6` keeps
    // the directory and copies none of its contents.
    let got = ctx
        .resolve_sources(&s(&["di*"]), &s(&["*"]), false)
        .unwrap();
    assert_eq!(paths(&got), [("dir", "", true)]);
    assert!(landed(&ctx, &got).is_empty());
    let got = ctx
        .resolve_sources(&s(&["dir"]), &s(&["*.txt", "sub"]), false)
        .unwrap();
    assert!(got[0].is_excluded("z.txt") && got[0].is_excluded("sub/y") && !got[0].is_excluded("x"));
    let excluded = ctx.digest_sources(&got, &mut StatCache::new()).unwrap();
    let (_t2, _r2, only) = ctx_with(&[("dir/x", "x")], &[]);
    assert_eq!(excluded, digest_of(&only, &["dir"]));
    // Re-include through `!`, as in .dockerignore.
    let got = ctx
        .resolve_sources(&s(&["dir"]), &s(&["sub", "!sub/y"]), false)
        .unwrap();
    let reincluded = ctx.digest_sources(&got, &mut StatCache::new()).unwrap();
    assert_eq!(reincluded, digest_of(&ctx, &["dir"]));
}

#[test]
fn double_star_in_a_plain_source_is_one_level_as_in_go_filepath_match() {
    // fsutil's ResolveWildcards matches with Go's filepath.Match, where `**`
    // is `*`; only --parents include patterns give `**` its
    // patternmatcher meaning.
    let (_t, _r, ctx) = ctx_with(
        &[("a/c/bar", "0"), ("a/c/d/bar", "1"), ("a/c/d/e/bar", "2")],
        &[],
    );
    assert_eq!(
        paths(&resolve(&ctx, &["/a/c/**/bar"])),
        [("a/c/d/bar", "bar", false)]
    );
}

#[test]
fn sockets_are_empty_files_in_the_context_and_absent_from_a_stage() {
    let (_t, root, ctx) = ctx_with(&[("f", "x")], &[]);
    let listener = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
    drop(listener);
    fs::set_permissions(root.join("sock"), fs::Permissions::from_mode(0o640)).unwrap();
    let got = resolve(&ctx, &["sock"]);
    assert_eq!(got[0].file_type, FileType::File);
    // Digested as an empty file of the same mode, without opening it.
    let mut cache = StatCache::new();
    let with_socket = ctx
        .digest_sources(&resolve(&ctx, &["."]), &mut cache)
        .unwrap();
    assert_eq!(cache.reads(), 1);
    let (_t2, root2, plain) = ctx_with(&[("f", "x"), ("sock", "")], &[]);
    fs::set_permissions(root2.join("sock"), fs::Permissions::from_mode(0o640)).unwrap();
    for dir in [&root, &root2] {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    assert_eq!(with_socket, digest_of(&plain, &["."]));
    // A stage's filesystem leaves it out.
    let stage = BuildContext::open_stage(&root).unwrap();
    let (_t3, root3, without) = ctx_with(&[("f", "x")], &[]);
    fs::set_permissions(&root3, fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(digest_of(&stage, &["."]), digest_of(&without, &["."]));
    assert_eq!(
        EMPTY_SHA256.to_vec(),
        hex_bytes(&kiln_store::digest::digest_bytes(b""))
    );
}

fn hex_bytes(digest: &Digest) -> Vec<u8> {
    decode_hex32(digest.encoded()).unwrap().to_vec()
}

#[test]
fn not_found_lists_the_closest_directory() {
    let (_t, root, ctx) = ctx_with(BASIC, &[".git"]);
    tree(&root, &[(".git/HEAD", "ref")]);
    assert_eq!(
        err_text(&ctx, &["nope"]),
        "COPY source \"/nope\": not found (the context has: a.txt, b.txt, c.md, dir/)"
    );
    assert_eq!(
        err_text(&ctx, &["dir/sub/nope/deeper"]),
        "COPY source \"/dir/sub/nope/deeper\": not found (the context has: dir/sub/y)"
    );
    // An empty wildcard is no error (BuildKit's AllowEmptyWildcard).
    assert!(
        ctx.resolve_sources(&["dir/*.md".to_owned()], &[], false)
            .unwrap()
            .is_empty()
    );
    // A later pattern failing is reported even after earlier ones matched.
    assert!(err_text(&ctx, &["a.txt", "/nope"]).starts_with("COPY source \"/nope\": not found"));

    let many: Vec<(String, &str)> = (0..12).map(|i| (format!("f{i:02}"), "")).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, c)| (n.as_str(), *c)).collect();
    let (_t2, _r2, big) = ctx_with(&many, &[]);
    assert_eq!(
        err_text(&big, &["nope"]),
        "COPY source \"/nope\": not found (the context has: f00, f01, f02, f03, f04, f05, f06, f07, f08, f09, ...)"
    );
    let (_t3, _r3, empty) = ctx_with(&[], &[]);
    assert_eq!(
        err_text(&empty, &["nope"]),
        "COPY source \"/nope\": not found (the context is empty there)"
    );
}

#[test]
fn missing_context_uses_dockers_message() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    let err = BuildContext::open(&missing, &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "unable to prepare context: path \"{}\" not found",
            missing.display()
        )
    );
    fs::write(&missing, "").unwrap();
    let err = BuildContext::open(&missing, &[]).unwrap_err();
    assert!(
        matches!(err, BuildError::ContextNotDirectory { .. }),
        "{err:?}"
    );
}

#[test]
fn digest_is_deterministic_and_ignores_mtime() {
    let (_t1, r1, c1) = ctx_with(BASIC, &[]);
    let (_t2, r2, c2) = ctx_with(BASIC, &[]);
    let d = digest_of(&c1, &["."]);
    assert_eq!(d, digest_of(&c2, &["."]));
    assert_eq!(d, digest_of(&c1, &["."]));
    filetime::set_file_mtime(
        r1.join("a.txt"),
        filetime::FileTime::from_unix_time(1000, 0),
    )
    .unwrap();
    filetime::set_file_mtime(r1.join("dir"), filetime::FileTime::from_unix_time(1000, 0)).unwrap();
    assert_eq!(d, digest_of(&c1, &["."]));

    fs::set_permissions(r1.join("a.txt"), fs::Permissions::from_mode(0o755)).unwrap();
    let mode_changed = digest_of(&c1, &["."]);
    assert_ne!(d, mode_changed);
    let original = fs::metadata(r2.join("a.txt")).unwrap().permissions();
    fs::set_permissions(r1.join("a.txt"), original).unwrap();
    assert_eq!(d, digest_of(&c1, &["."]));

    fs::write(r1.join("dir/x"), "X").unwrap();
    assert_ne!(d, digest_of(&c1, &["."]));
    fs::write(r1.join("dir/x"), "x").unwrap();
    symlink("a.txt", r1.join("dir/l")).unwrap();
    let with_link = digest_of(&c1, &["."]);
    assert_ne!(d, with_link);
    fs::remove_file(r1.join("dir/l")).unwrap();
    symlink("b.txt", r1.join("dir/l")).unwrap();
    assert_ne!(
        with_link,
        digest_of(&c1, &["."]),
        "symlink target is hashed"
    );
}

#[test]
fn digest_depends_on_names_and_order() {
    let (_t, root, ctx) = ctx_with(&[("a", "same"), ("b", "same")], &[]);
    assert_ne!(digest_of(&ctx, &["a"]), digest_of(&ctx, &["b"]));
    assert_ne!(digest_of(&ctx, &["a", "b"]), digest_of(&ctx, &["b", "a"]));
    // Moving a file within a directory source changes the digest.
    let before = digest_of(&ctx, &["."]);
    fs::rename(root.join("b"), root.join("c")).unwrap();
    assert_ne!(before, digest_of(&ctx, &["."]));
}

#[test]
fn digest_of_root_owned_files_records_owner() {
    let (_t, root, ctx) = ctx_with(&[("f", "x")], &[]);
    if !kiln_testkit::root("chown") {
        return;
    }
    let before = digest_of(&ctx, &["f"]);
    std::os::unix::fs::chown(root.join("f"), Some(1234), Some(5678)).unwrap();
    assert_ne!(before, digest_of(&ctx, &["f"]));
}

#[test]
fn stat_cache_avoids_reads_and_detects_changes_via_ctime() {
    let (tmp, root, ctx) = ctx_with(BASIC, &[]);
    // Let ctimes age past the racy window so entries are trusted.
    std::thread::sleep(RACY_WINDOW + Duration::from_millis(50));
    let sources = resolve(&ctx, &["."]);
    let mut cache = StatCache::new();
    let d1 = ctx.digest_sources(&sources, &mut cache).unwrap();
    assert_eq!(cache.reads(), 6);
    assert_eq!(cache.len(), 6);
    assert_eq!(ctx.digest_sources(&sources, &mut cache).unwrap(), d1);
    assert_eq!(cache.reads(), 6, "second digest read no file");

    let file = tmp.path().join("cache/stat.json");
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    cache.save(file.parent().unwrap(), &file).unwrap();
    let mut loaded = StatCache::load(&file).unwrap();
    assert_eq!(loaded.len(), 6);
    assert_eq!(ctx.digest_sources(&sources, &mut loaded).unwrap(), d1);
    assert_eq!(loaded.reads(), 0, "a loaded cache reads no file");

    // Same size, mtime forced back: only ctime tells.
    let x = root.join("dir/x");
    let meta = fs::metadata(&x).unwrap();
    let mtime = filetime::FileTime::from_last_modification_time(&meta);
    std::thread::sleep(Duration::from_millis(20));
    fs::write(&x, "X").unwrap();
    filetime::set_file_mtime(&x, mtime).unwrap();
    let after = fs::metadata(&x).unwrap();
    assert_eq!(
        (after.len(), after.mtime(), after.mtime_nsec()),
        (meta.len(), meta.mtime(), meta.mtime_nsec())
    );
    let d2 = ctx.digest_sources(&sources, &mut loaded).unwrap();
    assert_ne!(d1, d2);
    assert_eq!(loaded.reads(), 1, "only the changed file is read");
    assert_eq!(
        d2,
        ctx.digest_sources(&sources, &mut StatCache::new()).unwrap()
    );
}

#[test]
fn stat_cache_does_not_trust_just_changed_files() {
    let (_t, _root, ctx) = ctx_with(&[("f", "x")], &[]);
    let sources = resolve(&ctx, &["f"]);
    let mut cache = StatCache::new();
    ctx.digest_sources(&sources, &mut cache).unwrap();
    // Hashed within the racy window of its last change: read again.
    ctx.digest_sources(&sources, &mut cache).unwrap();
    assert_eq!(cache.reads(), 2);
}

#[test]
fn stat_cache_load_missing_and_corrupt() {
    let (tmp, _root, ctx) = ctx_with(BASIC, &[]);
    let missing = tmp.path().join("none.bin");
    assert!(StatCache::load(&missing).unwrap().is_empty());

    let mut cache = StatCache::new();
    ctx.digest_sources(&resolve(&ctx, &["."]), &mut cache)
        .unwrap();
    let file = tmp.path().join("stat.bin");
    cache.save(file.parent().unwrap(), &file).unwrap();
    let good = fs::read(&file).unwrap();
    assert_eq!(&good[..8], b"KILNSTC\0");
    assert_eq!(StatCache::load(&file).unwrap().len(), 6);

    // Every truncation, a flipped version, trailing bytes, an absurd
    // count, garbage and the old JSON format all load as an empty cache.
    let mut bad: Vec<Vec<u8>> = (0..good.len()).map(|n| good[..n].to_vec()).collect();
    let mut version = good.clone();
    version[8] ^= 1;
    bad.push(version);
    let mut trailing = good.clone();
    trailing.push(0);
    bad.push(trailing);
    let mut count = good.clone();
    count[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
    bad.push(count);
    let mut path_len = good.clone();
    path_len[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
    bad.push(path_len);
    bad.push(b"{not json".to_vec());
    bad.push(br#"{"entries":{}}"#.to_vec());
    bad.push((0..=255u8).cycle().take(4096).collect());
    for bytes in bad {
        fs::write(&file, &bytes).unwrap();
        let loaded = StatCache::load(&file).unwrap();
        assert!(
            loaded.is_empty(),
            "{} bytes loaded {}",
            bytes.len(),
            loaded.len()
        );
    }
}

#[test]
fn warm_digest_equals_cold_and_pinned_value() {
    let (tmp, root, ctx) = ctx_with(
        &[
            ("a.txt", "alpha"),
            ("dir/b", "beta"),
            ("dir/sub/c", ""),
            ("empty/", ""),
        ],
        &[],
    );
    symlink("dir/b", root.join("link")).unwrap();
    fs::set_permissions(root.join("a.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    std::thread::sleep(RACY_WINDOW + Duration::from_millis(50));
    let sources = resolve(&ctx, &["."]);
    let mut cache = StatCache::new();
    let cold = ctx.digest_sources(&sources, &mut cache).unwrap();
    assert_eq!(cache.reads(), 3);
    let file = tmp.path().join("stat.bin");
    cache.save(file.parent().unwrap(), &file).unwrap();
    let mut loaded = StatCache::load(&file).unwrap();
    assert_eq!(loaded.len(), 3);
    assert_eq!(ctx.digest_sources(&sources, &mut loaded).unwrap(), cold);
    assert_eq!(loaded.reads(), 0);
    // A file's digest through the cache is its real content digest.
    let meta = fs::symlink_metadata(root.join("a.txt")).unwrap();
    assert_eq!(
        loaded.content_digest(&root.join("a.txt"), &meta).unwrap(),
        kiln_store::digest::digest_bytes(b"alpha")
    );

    // The encoding, spelled out with the digest strings of the code before
    // the binary cache, so the value cannot drift.
    let mut h = KeyHasher::new();
    put(&mut h, b"kiln-sources-v1");
    put_u64(&mut h, 1);
    put(&mut h, b"");
    put(&mut h, &[1]);
    let dir_meta = fs::symlink_metadata(&root).unwrap();
    let entries: &[(&str, u8, Option<&[u8]>)] = &[
        ("", b'd', None),
        ("a.txt", b'f', Some(b"alpha")),
        ("dir", b'd', None),
        ("dir/b", b'f', Some(b"beta")),
        ("dir/sub", b'd', None),
        ("dir/sub/c", b'f', Some(b"")),
        ("empty", b'd', None),
        ("link", b'l', None),
    ];
    put_u64(&mut h, entries.len() as u64);
    for (rel, tag, content) in entries {
        let meta = fs::symlink_metadata(root.join(rel)).unwrap();
        put(&mut h, rel.as_bytes());
        put(&mut h, &[*tag]);
        put_u64(&mut h, u64::from(meta.mode() & 0o7777));
        put_u64(&mut h, u64::from(dir_meta.uid()));
        put_u64(&mut h, u64::from(dir_meta.gid()));
        match (tag, content) {
            (b'f', Some(c)) => put(
                &mut h,
                kiln_store::digest::digest_bytes(c).to_string().as_bytes(),
            ),
            (b'l', _) => put(&mut h, b"dir/b"),
            _ => {}
        }
    }
    assert_eq!(cold, h.finish());
}

#[test]
fn star_matches_hidden_files_as_go_does() {
    let (_t, _r, ctx) = ctx_with(&[(".env", "e"), ("app", "a")], &[]);
    assert_eq!(
        paths(&resolve(&ctx, &["*"])),
        [(".env", ".env", false), ("app", "app", false)]
    );
}

#[test]
fn special_files_are_typed_and_digested_without_reading() {
    let (_t, root, ctx) = ctx_with(&[("f", "x")], &[]);
    let status = std::process::Command::new("mkfifo")
        .arg(root.join("pipe"))
        .status()
        .unwrap();
    assert!(status.success());
    let got = resolve(&ctx, &["pipe"]);
    assert_eq!(got[0].file_type, FileType::Other);
    // Opening a FIFO for reading would block: the digest must not.
    let mut cache = StatCache::new();
    let with_pipe = ctx
        .digest_sources(&resolve(&ctx, &["."]), &mut cache)
        .unwrap();
    assert_eq!(cache.reads(), 1);
    fs::remove_file(root.join("pipe")).unwrap();
    assert_ne!(with_pipe, digest_of(&ctx, &["."]));
}

#[test]
fn stat_cache_prunes_files_not_seen() {
    let (tmp, root, ctx) = ctx_with(&[("a", "1"), ("b", "2")], &[]);
    let file = tmp.path().join("stat.json");
    let mut cache = StatCache::new();
    ctx.digest_sources(&resolve(&ctx, &["."]), &mut cache)
        .unwrap();
    cache.save(file.parent().unwrap(), &file).unwrap();
    fs::remove_file(root.join("b")).unwrap();
    let mut loaded = StatCache::load(&file).unwrap();
    ctx.digest_sources(&resolve(&ctx, &["."]), &mut loaded)
        .unwrap();
    assert_eq!(loaded.len(), 2);
    loaded.prune_unseen();
    assert_eq!(loaded.len(), 1);
    loaded.save(file.parent().unwrap(), &file).unwrap();
    let saved = String::from_utf8_lossy(&fs::read(&file).unwrap()).into_owned();
    assert!(
        saved.contains(&root.join("a").display().to_string()),
        "{saved}"
    );
    assert!(
        !saved.contains(&root.join("b").display().to_string()),
        "{saved}"
    );
}

#[test]
fn key_hasher_hashes_what_a_plain_hasher_hashes() {
    // Pieces below, across and above the buffer size, so every path of
    // `update` runs; the digest must not depend on how bytes are grouped.
    let pieces: Vec<Vec<u8>> = [3, KEY_BUFFER - 1, 2, KEY_BUFFER * 2 + 5, 0, 17]
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            (0..n)
                .map(|j| u8::try_from((i * 31 + j) % 251).unwrap())
                .collect()
        })
        .collect();
    let mut plain = Hasher::new();
    let mut buffered = KeyHasher::new();
    for piece in &pieces {
        plain.update(piece);
        buffered.update(piece);
    }
    assert_eq!(buffered.finish(), plain.finish());
}

#[test]
fn stat_cache_survives_prune_and_rerecord() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for name in ["a", "b", "c"] {
        fs::write(root.join(name), name).unwrap();
    }
    // Old enough that the cache trusts the entries.
    std::thread::sleep(std::time::Duration::from_millis(150));
    let mut cache = StatCache::new();
    for name in ["a", "b", "c"] {
        let meta = fs::symlink_metadata(root.join(name)).unwrap();
        cache.content_digest(&root.join(name), &meta).unwrap();
    }
    let file = root.join("cache.bin");
    cache.save(file.parent().unwrap(), &file).unwrap();

    // Only "b" is looked up after loading: pruning keeps just it, and its
    // digest still comes from the cache.
    let mut loaded = StatCache::load(&file).unwrap();
    let meta = fs::symlink_metadata(root.join("b")).unwrap();
    let digest = loaded.content_digest(&root.join("b"), &meta).unwrap();
    assert_eq!(digest, kiln_store::digest::digest_bytes(b"b"));
    loaded.prune_unseen();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded.reads(), 0);

    // A changed file is read again and replaces its entry.
    fs::write(root.join("b"), "changed").unwrap();
    let meta = fs::symlink_metadata(root.join("b")).unwrap();
    let digest = loaded.content_digest(&root.join("b"), &meta).unwrap();
    assert_eq!(digest, kiln_store::digest::digest_bytes(b"changed"));
    assert_eq!((loaded.len(), loaded.reads()), (1, 1));
    loaded.save(file.parent().unwrap(), &file).unwrap();
    let again = StatCache::load(&file).unwrap();
    assert_eq!(again.len(), 1);

    // A duplicated path in a hand-made file keeps one entry.
    let bytes = fs::read(&file).unwrap();
    let (head, body) = bytes.split_at(20);
    let mut doubled = head.to_vec();
    doubled[12..20].copy_from_slice(&2u64.to_le_bytes());
    doubled.extend_from_slice(body);
    doubled.extend_from_slice(body);
    fs::write(&file, &doubled).unwrap();
    assert_eq!(StatCache::load(&file).unwrap().len(), 1);
}

#[test]
fn list_sources_names_files_as_they_land_with_content_fingerprints() {
    let (_t, root, ctx) = ctx_with(&[("src/main.rs", "a"), ("README.md", "b")], &[]);
    let list = |ctx: &BuildContext| {
        let sources = ctx.resolve_sources(&[".".to_owned()], &[], false).unwrap();
        ctx.list_sources(&sources, &mut StatCache::new()).unwrap()
    };
    let before = list(&ctx);
    let paths: Vec<&str> = before.iter().map(|f| f.path.as_str()).collect();
    // Directories are left out; paths are relative to the destination.
    assert_eq!(paths, ["README.md", "src/main.rs"]);
    assert!(
        before
            .iter()
            .all(|f| f.content.len() == 32 && f.meta.starts_with("f:"))
    );
    fs::write(root.join("src/main.rs"), "changed").unwrap();
    let after = list(&ctx);
    assert_eq!(before[0], after[0]);
    assert_ne!(before[1].content, after[1].content);
}
