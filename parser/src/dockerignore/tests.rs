//! Tests: the tables of moby/patternmatcher's `patternmatcher_test.go` and
//! `ignorefile/ignorefile_test.go`, the fixture in
//! `testdata/dockerignore/cases.txt`, and kiln's own edge cases.

use std::path::Path;

use super::*;
use crate::testing::XorShift;

/// Upstream's package-level `MatchesOrParentMatches(file, patterns)`.
fn matches(file: &str, patterns: &[&str]) -> Result<bool, DockerignoreError> {
    let pm = PatternMatcher::new(patterns)?;
    let file = crate::golang::path_clean(file);
    if file == "." {
        // Upstream refuses to exclude the whole context this way.
        return Ok(false);
    }
    Ok(pm.matches_or_parent_matches(&file))
}

/// Match through `matches_using_parent_results`, feeding it the results for
/// each ancestor in turn, as a walker does.
fn walk_match(pm: &PatternMatcher, path: &str) -> bool {
    let parent = golang::dir(path);
    let mut info = MatchInfo::default();
    if parent != "." {
        for prefix in parent_prefixes(&parent) {
            info = pm.matches_using_parent_results(prefix, &info).unwrap().1;
        }
    }
    pm.matches_using_parent_results(path, &info).unwrap().0
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Pass {
    Fail,
    Exact,
    Inexact,
}
use Pass::{Exact, Fail, Inexact};

/// Upstream `TestMatches`' single-pattern table (Unix flavour).
const MATCHES: &[(&str, &str, Pass)] = &[
    ("**", "file", Exact),
    ("**", "file/", Exact),
    ("**/", "file", Exact),
    ("**/", "file/", Exact),
    ("**", "/", Exact),
    ("**/", "/", Exact),
    ("**", "dir/file", Exact),
    ("**/", "dir/file", Exact),
    ("**", "dir/file/", Exact),
    ("**/", "dir/file/", Exact),
    ("**/**", "dir/file", Exact),
    ("**/**", "dir/file/", Exact),
    ("dir/**", "dir/file", Exact),
    ("dir/**", "dir/file/", Exact),
    ("dir/**", "dir/dir2/file", Exact),
    ("dir/**", "dir/dir2/file/", Exact),
    ("**/dir", "dir", Exact),
    ("**/dir", "dir/file", Inexact),
    ("**/dir2/*", "dir/dir2/file", Exact),
    ("**/dir2/*", "dir/dir2/file/", Inexact),
    ("**/dir2/**", "dir/dir2/dir3/file", Exact),
    ("**/dir2/**", "dir/dir2/dir3/file/", Exact),
    ("**file", "file", Exact),
    ("**file", "dir/file", Exact),
    ("**/file", "dir/file", Exact),
    ("**file", "dir/dir/file", Exact),
    ("**/file", "dir/dir/file", Exact),
    ("**/file*", "dir/dir/file", Exact),
    ("**/file*", "dir/dir/file.txt", Exact),
    ("**/file*txt", "dir/dir/file.txt", Exact),
    ("**/file*.txt", "dir/dir/file.txt", Exact),
    ("**/file*.txt*", "dir/dir/file.txt", Exact),
    ("**/**/*.txt", "dir/dir/file.txt", Exact),
    ("**/**/*.txt2", "dir/dir/file.txt", Fail),
    ("**/*.txt", "file.txt", Exact),
    ("**/**/*.txt", "file.txt", Exact),
    ("a**/*.txt", "a/file.txt", Exact),
    ("a**/*.txt", "a/dir/file.txt", Exact),
    ("a**/*.txt", "a/dir/dir/file.txt", Exact),
    ("a/*.txt", "a/dir/file.txt", Fail),
    ("a/*.txt", "a/file.txt", Exact),
    ("a/*.txt**", "a/file.txt", Exact),
    ("a[b-d]e", "ae", Fail),
    ("a[b-d]e", "ace", Exact),
    ("a[b-d]e", "aae", Fail),
    ("a[^b-d]e", "aze", Exact),
    (".*", ".foo", Exact),
    (".*", "foo", Fail),
    ("abc.def", "abcdef", Fail),
    ("abc.def", "abc.def", Exact),
    ("abc.def", "abcZdef", Fail),
    ("abc?def", "abcZdef", Exact),
    ("abc?def", "abcdef", Fail),
    ("**/foo/bar", "foo/bar", Exact),
    ("**/foo/bar", "dir/foo/bar", Exact),
    ("**/foo/bar", "dir/dir2/foo/bar", Exact),
    ("abc/**", "abc", Fail),
    ("abc/**", "abc/def", Exact),
    ("abc/**", "abc/def/ghi", Exact),
    ("**/.foo", ".foo", Exact),
    ("**/.foo", "bar.foo", Fail),
    ("a(b)c/def", "a(b)c/def", Exact),
    ("a(b)c/def", "a(b)c/xyz", Fail),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", Exact),
    (
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        Exact,
    ),
    (
        "dist/*.whl",
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        Exact,
    ),
    // Unix-only additions upstream.
    ("a\\\\", "a\\", Exact),
    ("a\\*b", "a*b", Exact),
];

/// Upstream `TestMatches`' multi-pattern table.
const MULTI_MATCHES: &[(&[&str], &str, Pass)] = &[
    (&["**", "!util/docker/web"], "util/docker/web/foo", Fail),
    (
        &["**", "!util/docker/web", "util/docker/web/foo"],
        "util/docker/web/foo",
        Exact,
    ),
    (
        &[
            "**",
            "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        ],
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        Fail,
    ),
    (
        &["**", "!dist/*.whl"],
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        Fail,
    ),
];

#[test]
fn upstream_matches_exact() {
    for &(pattern, text, pass) in MATCHES {
        let pm = PatternMatcher::new(&[pattern]).unwrap();
        assert_eq!(
            pm.matches_exact(text),
            pass == Exact,
            "pattern={pattern:?} text={text:?}"
        );
    }
}

#[test]
fn upstream_matches_or_parent_matches() {
    for &(pattern, text, pass) in MATCHES {
        let pm = PatternMatcher::new(&[pattern]).unwrap();
        assert_eq!(
            pm.matches_or_parent_matches(text),
            pass != Fail,
            "pattern={pattern:?} text={text:?}"
        );
    }
    for &(patterns, text, pass) in MULTI_MATCHES {
        let pm = PatternMatcher::new(patterns).unwrap();
        assert_eq!(
            pm.matches_or_parent_matches(text),
            pass != Fail,
            "patterns={patterns:?} text={text:?}"
        );
    }
}

#[test]
fn upstream_matches_using_parent_results() {
    for &(pattern, text, pass) in MATCHES {
        let pm = PatternMatcher::new(&[pattern]).unwrap();
        assert_eq!(
            walk_match(&pm, text),
            pass != Fail,
            "pattern={pattern:?} text={text:?}"
        );
    }
    for &(patterns, text, pass) in MULTI_MATCHES {
        let pm = PatternMatcher::new(patterns).unwrap();
        assert_eq!(
            walk_match(&pm, text),
            pass != Fail,
            "patterns={patterns:?} text={text:?}"
        );
    }
}

#[test]
fn upstream_matches_using_parent_results_no_context() {
    for &(pattern, text, pass) in MATCHES {
        let pm = PatternMatcher::new(&[pattern]).unwrap();
        let (got, _) = pm
            .matches_using_parent_results(text, &MatchInfo::default())
            .unwrap();
        assert_eq!(got, pass != Fail, "pattern={pattern:?} text={text:?}");
    }
    for &(patterns, text, pass) in MULTI_MATCHES {
        let pm = PatternMatcher::new(patterns).unwrap();
        let (got, _) = pm
            .matches_using_parent_results(text, &MatchInfo::default())
            .unwrap();
        assert_eq!(got, pass != Fail, "patterns={patterns:?} text={text:?}");
    }
}

#[test]
fn upstream_simple_matches() {
    // TestWildcardMatches .. TestMatchesWithMalformedPatterns.
    let cases: &[(&str, &[&str], Result<bool, &str>)] = &[
        ("fileutils.go", &["*"], Ok(true)),
        ("fileutils.go", &["*.go"], Ok(true)),
        ("fileutils.go", &["!fileutils.go", "*.go"], Ok(true)),
        ("docs/README.md", &["docs", "!docs/README.md"], Ok(false)),
        ("docs/README.md", &["docs/", "!docs/README.md"], Ok(false)),
        ("docs/README.md", &["docs/*", "!docs/README.md"], Ok(false)),
        ("fileutils.go", &["*.go", "!fileutils.go"], Ok(false)),
        (".", &["*.go"], Ok(false)),
        (
            "fileutils.go",
            &["!"],
            Err("illegal exclusion pattern: \"!\""),
        ),
        ("/any/path/there", &[], Ok(false)),
        ("/any/path/there", &["["], Err("syntax error in pattern")),
    ];
    for &(file, patterns, want) in cases {
        let got = matches(file, patterns).map_err(|e| e.to_string());
        assert_eq!(
            got,
            want.map_err(str::to_owned),
            "file={file:?} patterns={patterns:?}"
        );
    }
}

#[test]
fn upstream_clean_patterns() {
    let pm = PatternMatcher::new(&["docs", "config"]).unwrap();
    assert_eq!(pm.patterns().len(), 2);
    let pm = PatternMatcher::new(&["docs", "config", ""]).unwrap();
    assert_eq!(pm.patterns().len(), 2);
    for patterns in [
        ["docs", "!docs/README.md"],
        ["docs", "  !docs/README.md"],
        ["docs", "!docs/README.md  "],
    ] {
        let pm = PatternMatcher::new(&patterns).unwrap();
        assert!(pm.has_exclusions(), "{patterns:?}");
    }
    assert!(!PatternMatcher::new(&["docs"]).unwrap().has_exclusions());
    let err = PatternMatcher::new(&["!"]).unwrap_err();
    assert_eq!(err.to_string(), "illegal exclusion pattern: \"!\"");
}

#[test]
fn patterns_are_cleaned_for_display() {
    let pm = PatternMatcher::new(&["./docs/", " !a//b/../c ", "x/**/"]).unwrap();
    let shown: Vec<(String, bool)> = pm
        .patterns()
        .iter()
        .map(|p| (p.to_string(), p.is_exclusion()))
        .collect();
    assert_eq!(
        shown,
        [
            ("docs".to_owned(), false),
            ("a/c".to_owned(), true),
            ("x/**".to_owned(), false)
        ]
    );
    assert_eq!(pm.patterns()[1].as_str(), "a/c");
}

/// Upstream `matchTests` (taken from Go's filepath tests), run through the
/// package-level `Matches`: `None` expects `syntax error in pattern`.
#[test]
fn upstream_match_table() {
    let cases: &[(&str, &str, Option<bool>)] = &[
        ("abc", "abc", Some(true)),
        ("*", "abc", Some(true)),
        ("*c", "abc", Some(true)),
        ("a*", "a", Some(true)),
        ("a*", "abc", Some(true)),
        ("a*", "ab/c", Some(true)),
        ("a*/b", "abc/b", Some(true)),
        ("a*/b", "a/c/b", Some(false)),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", Some(true)),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Some(true)),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Some(false)),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Some(false)),
        ("a*b?c*x", "abxbbxdbxebxczzx", Some(true)),
        ("a*b?c*x", "abxbbxdbxebxczzy", Some(false)),
        ("ab[c]", "abc", Some(true)),
        ("ab[b-d]", "abc", Some(true)),
        ("ab[e-g]", "abc", Some(false)),
        ("ab[^c]", "abc", Some(false)),
        ("ab[^b-d]", "abc", Some(false)),
        ("ab[^e-g]", "abc", Some(true)),
        ("a\\*b", "a*b", Some(true)),
        ("a\\*b", "ab", Some(false)),
        ("a?b", "a☺b", Some(true)),
        ("a[^a]b", "a☺b", Some(true)),
        ("a???b", "a☺b", Some(false)),
        ("a[^a][^a][^a]b", "a☺b", Some(false)),
        ("[a-ζ]*", "α", Some(true)),
        ("*[a-ζ]", "A", Some(false)),
        ("a?b", "a/b", Some(false)),
        ("a*b", "a/b", Some(false)),
        ("[\\]a]", "]", Some(true)),
        ("[\\-]", "-", Some(true)),
        ("[x\\-]", "x", Some(true)),
        ("[x\\-]", "-", Some(true)),
        ("[x\\-]", "z", Some(false)),
        ("[\\-x]", "x", Some(true)),
        ("[\\-x]", "-", Some(true)),
        ("[\\-x]", "a", Some(false)),
        ("[]a]", "]", None),
        ("[-]", "-", None),
        ("[x-]", "x", None),
        ("[x-]", "-", None),
        ("[x-]", "z", None),
        ("[-x]", "x", None),
        ("[-x]", "-", None),
        ("[-x]", "a", None),
        ("\\", "a", None),
        ("[a-b-c]", "a", None),
        ("[", "a", None),
        ("[^", "a", None),
        ("[^bc", "a", None),
        ("a[", "a", None),
        ("a[", "ab", None),
        ("*x", "xxx", Some(true)),
    ];
    for &(pattern, s, want) in cases {
        let got = matches(s, &[pattern]);
        match want {
            Some(b) => assert_eq!(got, Ok(b), "Match({pattern:?}, {s:?})"),
            None => assert_eq!(
                got.map_err(|e| e.to_string()),
                Err("syntax error in pattern".to_owned()),
                "Match({pattern:?}, {s:?})"
            ),
        }
    }
}

/// Upstream `compileTests` (slash flavour): match type and Go regexp.
#[test]
fn upstream_compile_table() {
    use MatchType::{Exact as E, Prefix as P, Regexp as R, Suffix as S};
    let cases: &[(&str, MatchType, &str)] = &[
        ("*", R, r"^[^/]*$"),
        ("file*", R, r"^file[^/]*$"),
        ("*file", R, r"^[^/]*file$"),
        ("a*/b", R, r"^a[^/]*/b$"),
        ("**", S, ""),
        ("**/**", R, r"^(.*/)?.*$"),
        ("dir/**", P, ""),
        ("**/dir", S, ""),
        ("**/dir2/*", R, r"^(.*/)?dir2/[^/]*$"),
        ("**/dir2/**", R, r"^(.*/)?dir2/.*$"),
        ("**file", S, ""),
        ("**/file*txt", R, r"^(.*/)?file[^/]*txt$"),
        ("**/**/*.txt", R, r"^(.*/)?(.*/)?[^/]*\.txt$"),
        ("a[b-d]e", R, r"^a[b-d]e$"),
        (".*", R, r"^\.[^/]*$"),
        ("abc.def", E, ""),
        ("abc?def", R, r"^abc[^/]def$"),
        ("**/foo/bar", S, ""),
        ("a(b)c/def", E, ""),
        ("a.|)$(}+{bc", E, ""),
        (
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            E,
            "",
        ),
    ];
    for &(pattern, want_type, want_re) in cases {
        let (ty, re) = pattern_to_go_regex(&crate::golang::path_clean(pattern));
        assert_eq!(ty, want_type, "pattern {pattern:?}");
        if ty == MatchType::Regexp {
            assert_eq!(re, want_re, "pattern {pattern:?}");
        }
    }
}

#[test]
fn regexp_failures_are_reported_when_compiling() {
    // Upstream's regression test for moby/moby#52203: this pattern passes
    // filepath.Match but is not a valid Go regexp (`l-O` is a reversed
    // range). Upstream reports `syntax error in pattern` on every match
    // attempt; kiln reports it when the matcher is built.
    let err = PatternMatcher::new(&["[Local-Only]/"]).unwrap_err();
    assert_eq!(err.to_string(), "syntax error in pattern");
    assert_eq!(err.pattern(), Some("[Local-Only]/"));
    assert_eq!(err.line(), None);
    for pattern in [
        "[z-a]",
        "a*[",
        "\\é",
        "[[:foo:]]",
        "\\pX",
        "x\\1",
        "[\\b]",
        "\\C",
        "[a--b]",
    ] {
        let err = PatternMatcher::new(&[pattern]).unwrap_err();
        assert!(
            matches!(&err, DockerignoreError::BadPattern { pattern: p, line: None } if p == pattern),
            "{pattern:?}: {err:?}"
        );
    }
}

#[test]
fn go_regexp_semantics_are_kept() {
    // (pattern, path, excluded): cases where a naive glob or a verbatim
    // `regex`-crate translation would disagree with Docker.
    let cases: &[(&str, &str, bool)] = &[
        ("{a,b}", "{a,b}", true),
        ("{a,b}", "a", false),
        ("x[!a]", "x!", true),
        ("x[!a]", "xb", false),
        ("[*]", "]", true),
        ("[*]", "[^/]", true),
        ("[*]", "*", false),
        ("[a&&b]", "&", true),
        ("[[:alpha:]]", "q", true),
        ("[[:alpha:]]", "é", false),
        ("file\\d", "file7", true),
        ("file\\d", "file٣", false),
        ("\\pL", "é", true),
        // Go 1.25+ looks Unicode class names up case-insensitively.
        ("\\pl", "é", true),
        ("a\\x41", "aA", true),
        ("\\Q*", "[^/]*$", true),
        ("\\Q*", "[^/]*$/more", true),
        ("\\Q*", "x", false),
        ("a\\/b", "a/b", true),
        ("a\\\nb", "a\nb", true),
        ("a?b", "a\nb", true),
        ("a*b", "a\n\nb", true),
        ("**", "a\nb/c", true),
        ("a/**", "a/\n", true),
        // `.` in the `(.*/)?` that `**` becomes does not match a newline.
        ("x/**/y", "x/\n/y", false),
        ("\u{feff}*.go", "a.go", true),
        ("\u{feff}x", "x", false),
        ("\u{feff}x", "\u{feff}x", true),
        // Without a wildcard the pattern is compared as a plain string...
        ("a^b", "a^b", true),
        // ...with one, `^` is a start-of-text anchor and never matches.
        ("a^b*", "a^b", false),
        ("é?", "éé", true),
        ("[é-ê]", "ê", true),
        ("**é", "aé", true),
        ("\u{feff}**/foo", "¿**/foo", true),
    ];
    for &(pattern, path, want) in cases {
        let pm = PatternMatcher::new(&[pattern]).unwrap();
        assert_eq!(
            pm.matches_or_parent_matches(path),
            want,
            "pattern={pattern:?} path={path:?}"
        );
    }
}

#[test]
fn wrong_match_info_is_rejected() {
    let pm = PatternMatcher::new(&["a", "b"]).unwrap();
    let other = PatternMatcher::new(&["a"]).unwrap();
    let (_, info) = other
        .matches_using_parent_results("a", &MatchInfo::default())
        .unwrap();
    let err = pm.matches_using_parent_results("a/b", &info).unwrap_err();
    assert_eq!(err.to_string(), "wrong number of values in parentMatched");
    assert_eq!(
        err,
        DockerignoreError::WrongParentMatchCount {
            expected: 2,
            got: 1
        }
    );
}

#[test]
fn match_info_carries_parent_results() {
    let pm = PatternMatcher::new(&["dir", "!dir/keep"]).unwrap();
    let (dir, info) = pm
        .matches_using_parent_results("dir", &MatchInfo::default())
        .unwrap();
    assert!(dir);
    let (keep, keep_info) = pm.matches_using_parent_results("dir/keep", &info).unwrap();
    assert!(!keep);
    let (other, _) = pm.matches_using_parent_results("dir/other", &info).unwrap();
    assert!(other);
    let (inner, _) = pm
        .matches_using_parent_results("dir/keep/x", &keep_info)
        .unwrap();
    assert!(!inner);
}

#[test]
fn upstream_read_all() {
    assert_eq!(read_ignore_file("").unwrap(), []);
    let content =
        "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! ";
    let got = read_ignore_file(content).unwrap();
    let want = [
        (1, "test1"),
        (2, "test2"),
        (3, "a/file/here"),
        (5, "lastfile"),
        (7, "!inverted/abs/path"),
        (8, "!"),
        (9, "!"),
    ];
    let got: Vec<(usize, &str)> = got.iter().map(|l| (l.line, l.pattern.as_str())).collect();
    assert_eq!(got, want);
}

#[test]
fn read_ignore_file_edge_cases() {
    let cases: &[(&str, &[&str])] = &[
        ("\n", &[]),
        ("a", &["a"]),
        ("a\n", &["a"]),
        ("a\r\nb\r\n", &["a", "b"]),
        ("a\r\r\n", &["a"]),
        ("\u{feff}a\n\u{feff}b", &["a", "\u{feff}b"]),
        ("\u{feff}#c\nd", &["d"]),
        (" #not a comment", &["#not a comment"]),
        ("\t!\t./x/../y/", &["!y"]),
        ("/", &["/"]),
        ("!/", &["!/"]),
        ("//a", &["a"]),
        ("../a", &["../a"]),
        ("/../a", &["a"]),
        ("\u{a0}a\u{2003}", &["a"]),
        ("a\u{200b}", &["a\u{200b}"]),
        ("\r", &[]),
        ("!!a", &["!!a"]),
    ];
    for &(text, want) in cases {
        let got: Vec<String> = read_ignore_file(text)
            .unwrap()
            .into_iter()
            .map(|l| l.pattern)
            .collect();
        assert_eq!(got, want, "text={text:?}");
    }
}

#[test]
fn long_lines_are_refused_like_bufio_scanner() {
    let ok = format!("x\n{}\ny", "a".repeat(MAX_LINE - 1));
    assert_eq!(read_ignore_file(&ok).unwrap().len(), 3);
    let ok_last = format!("x\n{}", "a".repeat(MAX_LINE - 1));
    assert_eq!(read_ignore_file(&ok_last).unwrap().len(), 2);
    for text in [
        format!("x\n{}\n", "a".repeat(MAX_LINE)),
        format!("x\n{}", "a".repeat(MAX_LINE)),
        // The '\r' counts before it is dropped.
        format!("x\n{}\r\n", "a".repeat(MAX_LINE - 1)),
    ] {
        let err = read_ignore_file(&text).unwrap_err();
        assert_eq!(err, DockerignoreError::LineTooLong { line: 2 });
        assert_eq!(err.to_string(), "bufio.Scanner: token too long");
        assert_eq!(err.line(), Some(2));
        assert_eq!(parse_ignore_file(&text).unwrap_err(), err);
    }
}

#[test]
fn parse_ignore_file_reports_lines() {
    assert_eq!(parse_ignore_file("# c\n/a\n!b/\n\n").unwrap(), ["a", "!b"]);
    let cases: &[(&str, DockerignoreError)] = &[
        (
            "a\n# c\n!\n",
            DockerignoreError::IllegalExclusion {
                pattern: "!".to_owned(),
                line: Some(3),
            },
        ),
        (
            "a\n\n  [abc\n",
            DockerignoreError::BadPattern {
                pattern: "[abc".to_owned(),
                line: Some(3),
            },
        ),
        (
            "ok\n[z-a]",
            DockerignoreError::BadPattern {
                pattern: "[z-a]".to_owned(),
                line: Some(2),
            },
        ),
        (
            "\u{feff}!",
            DockerignoreError::IllegalExclusion {
                pattern: "!".to_owned(),
                line: Some(1),
            },
        ),
    ];
    for (text, want) in cases {
        let err = parse_ignore_file(text).unwrap_err();
        assert_eq!(&err, want, "text={text:?}");
        assert_eq!(
            PatternMatcher::from_ignore_file(text).unwrap_err(),
            err,
            "text={text:?}"
        );
    }
    let err = parse_ignore_file("x\n! ").unwrap_err();
    assert_eq!(err.to_string(), "illegal exclusion pattern: \"!\"");
    assert_eq!((err.line(), err.pattern()), (Some(2), Some("!")));
}

#[test]
fn from_ignore_file_matches() {
    let pm = PatternMatcher::from_ignore_file("# deps\n/node_modules\n*.log\n!keep.log\n").unwrap();
    assert!(pm.matches_or_parent_matches("node_modules/x/y"));
    assert!(pm.matches_or_parent_matches("debug.log"));
    assert!(!pm.matches_or_parent_matches("keep.log"));
    assert!(!pm.matches_or_parent_matches("src/main.rs"));
    assert!(pm.has_exclusions());
}

#[test]
fn find_ignore_file_precedence() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    let sub = ctx.join("dir");
    std::fs::create_dir_all(&sub).unwrap();
    let dockerfile = ctx.join("Dockerfile");
    let app = sub.join("app.Dockerfile");

    // Nothing yet.
    assert_eq!(find_ignore_file(&ctx, &dockerfile), None);
    assert_eq!(find_ignore_file(&ctx, Path::new("")), None);

    // The context's file.
    std::fs::write(ctx.join(".dockerignore"), "a\n").unwrap();
    assert_eq!(
        find_ignore_file(&ctx, &dockerfile),
        Some(ctx.join(".dockerignore"))
    );
    assert_eq!(
        find_ignore_file(&ctx, &app),
        Some(ctx.join(".dockerignore"))
    );

    // A Dockerfile-specific file beside the Dockerfile wins, even when empty.
    std::fs::write(sub.join("app.Dockerfile.dockerignore"), "").unwrap();
    assert_eq!(
        find_ignore_file(&ctx, &app),
        Some(sub.join("app.Dockerfile.dockerignore"))
    );
    // ...but only for that Dockerfile.
    assert_eq!(
        find_ignore_file(&ctx, &dockerfile),
        Some(ctx.join(".dockerignore"))
    );
    // It is looked up beside the Dockerfile, not in the context.
    std::fs::write(ctx.join("other.Dockerfile.dockerignore"), "").unwrap();
    assert_eq!(
        find_ignore_file(&ctx, &sub.join("other.Dockerfile")),
        Some(ctx.join(".dockerignore"))
    );

    // The default Dockerfile's own ignore file.
    std::fs::write(ctx.join("Dockerfile.dockerignore"), "b\n").unwrap();
    assert_eq!(
        find_ignore_file(&ctx, &dockerfile),
        Some(ctx.join("Dockerfile.dockerignore"))
    );
    assert_eq!(
        find_ignore_file(&ctx, Path::new("")),
        Some(ctx.join("Dockerfile.dockerignore"))
    );

    // Directories do not count.
    let ctx2 = tmp.path().join("ctx2");
    std::fs::create_dir_all(ctx2.join(".dockerignore")).unwrap();
    std::fs::create_dir_all(ctx2.join("Dockerfile.dockerignore")).unwrap();
    assert_eq!(find_ignore_file(&ctx2, &ctx2.join("Dockerfile")), None);
}

/// Runs `testdata/dockerignore/cases.txt`; see its header for the format.
#[test]
fn fixture_cases() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/dockerignore/cases.txt");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut count = 0;
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<String> =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("cases.txt:{}: {e}", index + 1));
        let [expected, path, lines @ ..] = fields.as_slice() else {
            panic!("cases.txt:{}: need expected and path", index + 1);
        };
        let file = lines.join("\n");
        let got = match PatternMatcher::from_ignore_file(&file) {
            Ok(pm) if pm.matches_or_parent_matches(path) => "excluded".to_owned(),
            Ok(_) => "included".to_owned(),
            Err(e) => format!("error: {e} (line {})", e.line().unwrap_or(0)),
        };
        assert_eq!(&got, expected, "cases.txt:{}: {line}", index + 1);
        // The other entry points must agree.
        if let Ok(pm) = PatternMatcher::from_ignore_file(&file) {
            let patterns = parse_ignore_file(&file).unwrap();
            let again = PatternMatcher::new(&patterns).unwrap();
            assert_eq!(again.matches_or_parent_matches(path), got == "excluded");
            let (walked, _) = pm
                .matches_using_parent_results(path, &MatchInfo::default())
                .unwrap();
            assert_eq!(walked, got == "excluded", "cases.txt:{}", index + 1);
        }
        count += 1;
    }
    assert!(count >= 40, "only {count} fixture cases");
}

#[test]
fn huge_inputs() {
    let many: Vec<String> = (0..500).map(|i| format!("dir{i}/**/*.tmp")).collect();
    let pm = PatternMatcher::new(&many).unwrap();
    assert!(pm.matches_or_parent_matches("dir499/a/b/c.tmp"));
    assert!(!pm.matches_or_parent_matches("dir500/a/b/c.tmp"));

    let long = "a*".repeat(1000);
    let pm = PatternMatcher::new(&[long.as_str()]).unwrap();
    assert!(pm.matches_or_parent_matches(&"a".repeat(1200)));
    assert!(!pm.matches_or_parent_matches(&"b".repeat(1200)));

    let deep = "x/".repeat(10_000);
    let pm = PatternMatcher::new(&["x"]).unwrap();
    assert!(pm.matches_or_parent_matches(&deep));
    assert!(pm.matches_exact("x"));
}

#[test]
fn never_panics() {
    const PATTERN_BITS: &[&str] = &[
        "*",
        "**",
        "?",
        "[",
        "]",
        "^",
        "\\",
        "-",
        "!",
        "/",
        ".",
        "..",
        "{",
        "}",
        "(",
        ")",
        "|",
        "$",
        "+",
        "a",
        "é",
        "☺",
        " ",
        ":",
        "[:alpha:]",
        "[:",
        ":]",
        "&&",
        "d",
        "Q",
        "E",
        "p",
        "P",
        "x",
        "0",
        "7",
        "#",
        "\t",
        "\n",
        "\r",
        "\u{feff}",
        "\u{a0}",
        "\0",
        "\u{10ffff}",
        "{1}",
        "x{",
    ];
    const PATH_BITS: &[&str] = &[
        "a", "é", "☺", "/", ".", "..", "]", "*", "\\", "\n", "\u{feff}", "¿", "",
    ];
    let mut rng = XorShift::new(0x9E37_79B9_7F4A_7C15);
    for _ in 0..3000 {
        let patterns: Vec<String> = (0..=rng.below(3))
            .map(|_| rng.join(PATTERN_BITS, 12))
            .collect();
        let paths: Vec<String> = (0..4).map(|_| rng.join(PATH_BITS, 10)).collect();
        let text = patterns.join("\n");
        let _ = read_ignore_file(&text);
        let _ = parse_ignore_file(&text);
        let _ = PatternMatcher::from_ignore_file(&text);
        if let Ok(pm) = PatternMatcher::new(&patterns) {
            for path in &paths {
                let or = pm.matches_or_parent_matches(path);
                let _ = pm.matches_exact(path);
                let (no_ctx, info) = pm
                    .matches_using_parent_results(path, &MatchInfo::default())
                    .unwrap();
                assert_eq!(no_ctx, or, "patterns={patterns:?} path={path:?}");
                let _ = pm.matches_using_parent_results(path, &info).unwrap();
                let _ = walk_match(&pm, path);
            }
            for p in pm.patterns() {
                let _ = p.to_string();
            }
        }
        // Raw bytes turned into text, as a reader of an arbitrary file would.
        let bytes: Vec<u8> = (0..rng.below(40))
            .map(|_| rng.next_u64().to_le_bytes()[0])
            .collect();
        let lossy = String::from_utf8_lossy(&bytes);
        let _ = parse_ignore_file(&lossy);
        let _ = PatternMatcher::new(&[lossy.as_ref()]);
    }
}

/// Rows of Go's `path/filepath` `matchTests`, through the public wrapper.
#[test]
fn filepath_match_go_table() {
    let rows: &[(&str, &str, Option<bool>)] = &[
        ("abc", "abc", Some(true)),
        ("*", "abc", Some(true)),
        ("*c", "abc", Some(true)),
        ("a*", "ab/c", Some(false)),
        ("a*/b", "abc/b", Some(true)),
        ("a*/b", "a/c/b", Some(false)),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", Some(true)),
        ("a*b?c*x", "abxbbxdbxebxczzx", Some(true)),
        ("a*b?c*x", "abxbbxdbxebxczzy", Some(false)),
        ("ab[b-d]", "abc", Some(true)),
        ("ab[^c]", "abc", Some(false)),
        ("ab[^e-g]", "abc", Some(true)),
        ("a\\*b", "a*b", Some(true)),
        ("a\\*b", "ab", Some(false)),
        ("a?b", "a☺b", Some(true)),
        ("a???b", "a☺b", Some(false)),
        ("a?b", "a/b", Some(false)),
        ("a*b", "a/b", Some(false)),
        ("[\\]a]", "]", Some(true)),
        ("[x\\-]", "-", Some(true)),
        ("[]a]", "]", None),
        ("[", "a", None),
        ("\\", "a", None),
        ("*x", "xxx", Some(true)),
    ];
    for &(pattern, name, want) in rows {
        let got = filepath_match(pattern, name);
        match want {
            Some(want) => assert_eq!(got, Ok(want), "{pattern:?} {name:?}"),
            None => assert_eq!(
                got,
                Err(DockerignoreError::BadPattern {
                    pattern: pattern.to_owned(),
                    line: None
                }),
                "{pattern:?} {name:?}"
            ),
        }
    }
}
