//! Unit tests: upstream `lex_test.go` cases plus kiln's own edge cases.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::pattern::{reverse_pattern, reverse_string, translate};
use super::*;
use crate::testing::XorShift;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|&s| s.to_owned()).collect()
}

/// A variable list as written in the tables.
type Vars = &'static [(&'static str, &'static str)];

/// Looks a name up through a generic (by-reference) `EnvLookup`.
fn via<E: EnvLookup>(e: E, name: &str) -> Option<String> {
    e.lookup(name).map(str::to_owned)
}

fn lex() -> Lexer {
    Lexer::new('\\')
}

/// The lexer `BuildKit`'s parser uses to find heredoc words.
fn heredoc_lex() -> Lexer {
    Lexer {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset_env: true,
        ..Lexer::new('\\')
    }
}

fn err_msg(word: &str, vars: &[(&str, &str)]) -> String {
    match lex().process_word(word, &env(vars)) {
        Ok(x) => panic!("{word:?}: expected an error, got {:?}", x.value),
        Err(e) => e.to_string(),
    }
}

// Upstream TestConvertShellPatternToRegex.
#[test]
fn pattern_to_regex() {
    let cases = [
        ("*", "^.*"),
        ("?", "^."),
        ("\\*", "^\\*"),
        (
            "(()[]{\\}^$.\\*\\?|\\\\",
            "^\\(\\(\\)\\[\\]\\{\\}\\^\\$\\.\\*\\?\\|\\\\",
        ),
    ];
    for (pattern, want) in cases {
        assert_eq!(
            translate(pattern, true, true).unwrap().regex,
            want,
            "{pattern}"
        );
    }
    assert_eq!(translate("a*b", false, false).unwrap().regex, "a.*?b");
    assert_eq!(translate("a\\/b\\}", false, false).unwrap().regex, "a/b\\}");
    for pattern in ["\\", "\\x", "\\\\\\"] {
        assert!(translate(pattern, true, true).is_err(), "{pattern}");
    }
    assert_eq!(
        translate("\\", true, true).unwrap_err(),
        PatternError::InvalidEscape('\u{FFFD}')
    );
    assert_eq!(
        translate("a\\x", true, true).unwrap_err().to_string(),
        "invalid escape '\\x'"
    );
}

#[test]
fn pattern_literal_fast_path() {
    let lit = |p: &str| translate(p, true, true).unwrap().literal;
    assert_eq!(lit("abc").as_deref(), Some("abc"));
    assert_eq!(lit("a\\*\\?\\\\\\}\\/.[").as_deref(), Some("a*?\\}/.["));
    assert_eq!(lit("").as_deref(), Some(""));
    assert_eq!(lit("\u{FEFF}ab").as_deref(), Some("ab"));
    assert_eq!(lit("a*"), None);
    assert_eq!(lit("a?"), None);
}

// Upstream TestReverseString.
#[test]
fn reverse_strings() {
    assert_eq!(reverse_string("54321"), "12345");
    assert_eq!(reverse_string("🖖🚀👽"), "👽🚀🖖");
    assert_eq!(reverse_string(""), "");
}

// Upstream TestReversePattern.
#[test]
fn reverse_patterns() {
    let cases = [
        ("a\\*c", "c\\*a"),
        ("\\\\\\ab", "b\\a\\\\"),
        ("ab\\", "\\ba"),
        ("👽\\🚀🖖", "🖖\\🚀👽"),
        ("\\\\b", "b\\\\"),
        ("", ""),
        ("\\", "\\"),
    ];
    for (pattern, want) in cases {
        assert_eq!(reverse_pattern(pattern), want, "{pattern}");
    }
}

// Upstream TestShellParserMandatoryEnvVars.
#[test]
fn mandatory_vars() {
    let set_envs = [("VAR", "plain"), ("ARG", "x")];
    let empty_envs = [("VAR", ""), ("ARG", "x")];
    let unset_envs = [("ARG", "x")];
    let no_empty = "${VAR:?message here$ARG}";
    let no_unset = "${VAR?message here$ARG}";

    let ok = |w: &str, e: &[(&str, &str)]| lex().process_word(w, &env(e)).unwrap().value;
    assert_eq!(ok(no_empty, &set_envs), "plain");
    assert_eq!(err_msg(no_empty, &empty_envs), "VAR: message herex");
    assert_eq!(err_msg(no_empty, &unset_envs), "VAR: message herex");
    assert_eq!(ok(no_unset, &set_envs), "plain");
    assert_eq!(ok(no_unset, &empty_envs), "");
    assert_eq!(err_msg(no_unset, &unset_envs), "VAR: message herex");

    assert_eq!(
        err_msg("${VAR:?}", &empty_envs),
        "VAR: is not allowed to be empty"
    );
    assert_eq!(
        err_msg("${VAR:?}", &unset_envs),
        "VAR: is not allowed to be unset"
    );
    assert_eq!(
        err_msg("${VAR?}", &unset_envs),
        "VAR: is not allowed to be unset"
    );
}

// Upstream TestGetEnv, plus the other lookup impls.
#[test]
fn env_lookups() {
    let v: Vec<(String, String)> = Vec::new();
    assert_eq!(v.lookup("foo"), None);
    assert_eq!(env(&[("foo", "")]).lookup("foo"), Some(""));
    assert_eq!(env(&[("foo", "bar")]).lookup("foo"), Some("bar"));
    let v = env(&[("foo", "bar"), ("car", "hat")]);
    assert_eq!(v.lookup("foo"), Some("bar"));
    assert_eq!(v.lookup("car"), Some("hat"));
    let v = env(&[("foo", "bar"), ("car", "hat"), ("car", "bike")]);
    assert_eq!(v.lookup("car"), Some("bike"));
    assert_eq!(v.as_slice().lookup("car"), Some("bike"));
    assert_eq!(v.lookup("CAR"), None);

    let b: BTreeMap<String, String> = v.iter().cloned().collect();
    assert_eq!(b.lookup("car"), Some("bike"));
    let h: HashMap<String, String> = v.iter().cloned().collect();
    assert_eq!(h.lookup("foo"), Some("bar"));
    assert_eq!(h.lookup("nope"), None);
    assert_eq!(NoEnv.lookup("foo"), None);
    assert_eq!(via(&h, "foo").as_deref(), Some("bar"));
}

// Upstream TestProcessWithMatches (successful rows).
#[test]
#[expect(clippy::too_many_lines, reason = "one table of upstream cases")]
fn process_with_matches() {
    struct Case {
        input: &'static str,
        env: &'static [(&'static str, &'static str)],
        want: &'static str,
        matched: &'static [&'static str],
        unmatched: &'static [&'static str],
    }
    const FB: &[(&str, &str)] = &[("FOO", "xxx"), ("BAR", "")];
    let cases = [
        Case {
            input: "x",
            env: &[("DUMMY", "dummy")],
            want: "x",
            matched: &[],
            unmatched: &[],
        },
        Case {
            input: "x ${UNUSED}",
            env: &[("DUMMY", "dummy")],
            want: "x ",
            matched: &[],
            unmatched: &["UNUSED"],
        },
        Case {
            input: "x ${FOO}",
            env: &[("FOO", "y")],
            want: "x y",
            matched: &["FOO"],
            unmatched: &[],
        },
        Case {
            input: "${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}",
            env: FB,
            want: "xxx  ccc",
            matched: &["FOO", "BAR"],
            unmatched: &["BAZ"],
        },
        Case {
            input: "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}",
            env: FB,
            want: "xxx bbb ccc",
            matched: &["FOO", "BAR"],
            unmatched: &["BAZ"],
        },
        Case {
            input: "${FOO:-}",
            env: FB,
            want: "xxx",
            matched: &["FOO"],
            unmatched: &[],
        },
        Case {
            input: "${FOO:-}",
            env: &[],
            want: "",
            matched: &[],
            unmatched: &["FOO"],
        },
        Case {
            input: "${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}",
            env: FB,
            want: "aaa bbb ",
            matched: &["FOO", "BAR"],
            unmatched: &["BAZ"],
        },
        Case {
            input: "${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}",
            env: FB,
            want: "aaa  ",
            matched: &["FOO", "BAR"],
            unmatched: &["BAZ"],
        },
        Case {
            input: "${FOO?aaa}",
            env: FB,
            want: "xxx",
            matched: &["FOO"],
            unmatched: &[],
        },
        Case {
            input: "${BAR?bbb}",
            env: FB,
            want: "",
            matched: &["BAR"],
            unmatched: &[],
        },
        Case {
            input: "${FOO:?aaa}",
            env: FB,
            want: "xxx",
            matched: &["FOO"],
            unmatched: &[],
        },
        Case {
            input: "${FOO#()[]{\\}^$.\\*\\?|\\\\}",
            env: &[("FOO", "()[]{}^$.*?|\\x")],
            want: "x",
            matched: &["FOO"],
            unmatched: &[],
        },
        Case {
            input: "${FOO%%\\**}",
            env: &[("FOO", "xx**")],
            want: "xx",
            matched: &["FOO"],
            unmatched: &[],
        },
        Case {
            input: "${FOO#*x*y}",
            env: &[("FOO", "xxyy")],
            want: "y",
            matched: &["FOO"],
            unmatched: &[],
        },
        Case {
            input: "${FOO#*}",
            env: &[("FOO", "xxyy")],
            want: "xxyy",
            matched: &["FOO"],
            unmatched: &[],
        },
        Case {
            input: "${FOO#$BAR}",
            env: &[("FOO", "xxyy"), ("BAR", "x")],
            want: "xyy",
            matched: &["FOO", "BAR"],
            unmatched: &[],
        },
        Case {
            input: "${FOO#$BAR}",
            env: &[("FOO", "xxyy"), ("BAR", "")],
            want: "xxyy",
            matched: &["FOO", "BAR"],
            unmatched: &[],
        },
        Case {
            input: "${FOO#}",
            env: &[("FOO", "xxyy")],
            want: "xxyy",
            matched: &["FOO"],
            unmatched: &[],
        },
        Case {
            input: "${FOO##*x}",
            env: &[("FOO", "xxyy")],
            want: "yy",
            matched: &["FOO"],
            unmatched: &[],
        },
        Case {
            input: "${FOO##}",
            env: &[("FOO", "xxyy")],
            want: "xxyy",
            matched: &["FOO"],
            unmatched: &[],
        },
        Case {
            input: "${FOO#?\\?}",
            env: &[("FOO", "???y")],
            want: "?y",
            matched: &["FOO"],
            unmatched: &[],
        },
        Case {
            input: "${ABC:-.}${FOO%x}${ABC:-.}",
            env: &[("FOO", "xxyy")],
            want: ".xxyy.",
            matched: &["FOO"],
            unmatched: &["ABC"],
        },
        Case {
            input: "${FOO%%\\**\\*}",
            env: &[("FOO", "a***yy*")],
            want: "a",
            matched: &["FOO"],
            unmatched: &[],
        },
        Case {
            input: "${FOO%}",
            env: &[("FOO", "xxyy")],
            want: "xxyy",
            matched: &["FOO"],
            unmatched: &[],
        },
        Case {
            input: "${FOO%%$BAR}",
            env: &[("FOO", "xxyy"), ("BAR", "")],
            want: "xxyy",
            matched: &["FOO", "BAR"],
            unmatched: &[],
        },
        Case {
            input: "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
            env: &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")],
            want: "/foo.*/*.txt - /foo..*.txt",
            matched: &["FOO", "NEEDLE"],
            unmatched: &[],
        },
        Case {
            input: "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
            env: &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
            want: "/tmp/bar.txt - /bar.txt",
            matched: &["FOO", "NEEDLE"],
            unmatched: &[],
        },
        Case {
            input: "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
            env: &[
                ("FOO", "/a/foo/b/c.txt"),
                ("NEEDLE", "/?/"),
                ("REPLACEMENT", "/"),
            ],
            want: "/foo/b/c.txt - /foo/c.txt",
            matched: &["FOO", "NEEDLE", "REPLACEMENT"],
            unmatched: &[],
        },
        Case {
            input: "${FOO/$NEEDLE/$REPLACEMENT}",
            env: &[
                ("FOO", "http://google.de"),
                ("NEEDLE", "http://"),
                ("REPLACEMENT", "https://"),
            ],
            want: "https://google.de",
            matched: &["FOO", "NEEDLE", "REPLACEMENT"],
            unmatched: &[],
        },
        Case {
            input: "${FOO//\\//\\/}",
            env: &[("FOO", "/tmp/foo.txt")],
            want: "\\/tmp\\/foo.txt",
            matched: &["FOO"],
            unmatched: &[],
        },
        Case {
            input: "${FOO/$BAR/ww}",
            env: &[("FOO", "xxyy"), ("BAR", "")],
            want: "wwxxyy",
            matched: &["FOO", "BAR"],
            unmatched: &[],
        },
        Case {
            input: "${FOO///}",
            env: &[("FOO", "xxyy")],
            want: "xxyy",
            matched: &["FOO"],
            unmatched: &[],
        },
        Case {
            input: "${FOO///}",
            env: &[],
            want: "",
            matched: &[],
            unmatched: &["FOO"],
        },
    ];
    for c in cases {
        let got = lex().process_word(c.input, &env(c.env)).unwrap();
        assert_eq!(got.value, c.want, "{}", c.input);
        assert_eq!(got.matched, set(c.matched), "{}", c.input);
        assert_eq!(got.unmatched, set(c.unmatched), "{}", c.input);
    }
}

// Upstream TestProcessWithMatches (error rows), with BuildKit's messages
// (without its `failed to process "<word>": ` prefix).
#[test]
fn process_errors() {
    const FB: &[(&str, &str)] = &[("FOO", "xxx"), ("BAR", "")];
    let cases: &[(&str, Vars, &str)] = &[
        ("${BAZ?ccc}", FB, "BAZ: ccc"),
        ("${BAR:?bbb}", FB, "BAR: bbb"),
        ("${BAZ:?ccc}", FB, "BAZ: ccc"),
        ("${BAZ:?}", FB, "BAZ: is not allowed to be unset"),
        ("${FOO=aaa}", FB, "unsupported modifier (=) in substitution"),
        (
            "${FOO=:aaa}",
            FB,
            "unsupported modifier (=) in substitution",
        ),
        ("${FOO=}", &[], "unsupported modifier (=) in substitution"),
        ("${FOO:#}", &[], "unsupported modifier (:#) in substitution"),
        (
            "${FOO:##}",
            &[],
            "unsupported modifier (:#) in substitution",
        ),
        ("${FOO:%}", &[], "unsupported modifier (:%) in substitution"),
        (
            "${FOO:%%}",
            &[],
            "unsupported modifier (:%) in substitution",
        ),
        (
            "${FOO//ww}",
            &[("FOO", "xxyy")],
            "syntax error: missing '/' in ${}",
        ),
        (
            "${FOO//}",
            &[("FOO", "xxyy")],
            "syntax error: missing '/' in ${}",
        ),
        // kiln's own, checked against upstream behaviour.
        (
            "${x%ab\\q}",
            &[("x", "zzab")],
            "invalid pattern (\\qba) in substitution: invalid escape '\\q'",
        ),
        (
            "${x#ab\\q}",
            &[("x", "zzab")],
            "invalid pattern (ab\\q) in substitution: invalid escape '\\q'",
        ),
        (
            "${x/a\\q/b}",
            &[("x", "a")],
            "invalid pattern (a\\q) in substitution: invalid escape '\\q'",
        ),
        ("${x#ab\\}", &[("x", "zzab")], "syntax error: missing '}'"),
        // BuildKit says "unsupported modifier (\u{FFFD}) in substitution"
        // here; kiln names the missing brace.
        ("${abc", &[], "syntax error: missing '}'"),
        ("${x:", &[], "syntax error: missing '}'"),
        (
            "${x:}abc}",
            &[],
            "unsupported modifier (:}) in substitution",
        ),
        ("${", &[], "syntax error: missing '}'"),
        ("${}", &[], "syntax error: bad substitution"),
        ("${:}", &[], "syntax error: bad substitution"),
        ("${{a}", &[], "syntax error: bad substitution"),
        ("${.}", &[], "unsupported modifier (.) in substitution"),
        ("${#x}", &[], "unsupported modifier (x) in substitution"),
        ("${a:-'abc}", &[], "syntax error: missing '}'"),
        ("${a:-${b:?m}", &[], "syntax error: missing '}'"),
        ("${a:-${b:?m}}", &[], "b: m"),
        ("x${a:-${b:?m}} ", &[], "b: m"),
        (
            "'abc",
            &[],
            "unexpected end of statement while looking for matching single-quote",
        ),
        (
            "ab\"cd",
            &[],
            "unexpected end of statement while looking for matching double-quote",
        ),
        (
            "\"ab\\",
            &[],
            "unexpected end of statement while looking for matching double-quote",
        ),
    ];
    for &(input, vars, want) in cases {
        assert_eq!(err_msg(input, vars), want, "{input}");
        let words = lex().process_words(input, &env(vars)).unwrap_err();
        assert_eq!(words.to_string(), want, "{input}");
    }
}

#[test]
fn error_offsets() {
    let cases: &[(&str, usize)] = &[
        ("ab${x:?msg}", 2),
        ("${x?}", 0),
        ("a 'bc", 2),
        ("a \"bc", 2),
        ("é${", 2),
        ("x ${a:-${b:?m}} y", 7),
        ("x ${a:-${b:?m}", 2),
        ("${x/a", 0),
        ("ab${}", 2),
        ("${x#\\q}", 0),
        ("\"$x ${y=}\"", 4),
    ];
    for &(input, offset) in cases {
        let e = lex().process_word(input, &NoEnv).unwrap_err();
        assert_eq!(e.offset, offset, "{input}: {e}");
    }
    let e = lex().process_word("a${x:?gone}", &NoEnv).unwrap_err();
    assert_eq!(
        e,
        ShellError {
            kind: ShellErrorKind::Required {
                name: "x".to_owned(),
                message: "gone".to_owned()
            },
            offset: 1
        }
    );
}

// Upstream TestProcessWithMatchesPlatform.
#[test]
fn platform_release_name() {
    let release =
        "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
    let base = [("VERSION", "v1.2.3"), ("TARGETOS", "linux")];
    let run = |extra: &[(&str, &str)]| {
        let mut e = env(&base);
        e.extend(env(extra));
        lex().process_word(release, &e).unwrap().value
    };
    assert_eq!(
        run(&[("TARGETARCH", "arm"), ("TARGETVARIANT", "v7")]),
        "something-v1.2.3.linux-arm-v7.tar.gz"
    );
    assert_eq!(
        run(&[("TARGETARCH", "arm64"), ("TARGETVARIANT", "")]),
        "something-v1.2.3.linux-arm64.tar.gz"
    );
    assert_eq!(
        run(&[("TARGETARCH", "arm64")]),
        "something-v1.2.3.linux-arm64.tar.gz"
    );
}

// Pattern operators on more values; expectations checked against upstream.
#[test]
fn pattern_operators() {
    let cases: &[(&str, &str, &str)] = &[
        ("${x%.*}", "a.b.c", "a.b"),
        ("${x%%.*}", "a.b.c", "a"),
        ("${x#*.}", "a.b.c", "b.c"),
        ("${x##*.}", "a.b.c", "c"),
        ("${x#한}", "한국어", "국어"),
        ("${x%어}", "한국어", "한국"),
        ("${x%?}", "한국어", "한국"),
        ("${x//\\*/}", "a*b*", "ab"),
        ("${x//*/-}", "abc", "-"),
        ("${x//?/-}", "ab\nc", "--\n-"),
        ("${x///-}", "ab", "-a-b-"),
        ("${x//[/(}", "a[b[c", "a(b(c"),
        ("${x/a/b}", "aaa", "baa"),
        ("${x//a/b}", "aaa", "bbb"),
        ("${x/#a/b}", "#aa", "ba"),
        ("${x/%a/b}", "a%a", "ab"),
        ("${x#*}", "abc", "abc"),
        ("${x##*}", "abc", ""),
        ("${x%*}", "abc", "abc"),
        ("${x%%*}", "abc", ""),
        // Go's ReplaceAllString expands `$0` (the match) in the replacement.
        ("${x//a/\\$0\\$0}", "abca", "\\a\\abc\\a\\a"),
        ("${x//a/\\$00}", "abca", "\\bc\\"),
        ("${x//a/\\${0x}", "abca", "\\${0xbc\\${0x"),
        ("${x/a/\\$0}", "abca", "\\$0bca"),
        ("${x//a/$$}", "abca", "bc"),
    ];
    for &(input, value, want) in cases {
        let got = lex().process_word(input, &env(&[("x", value)])).unwrap();
        assert_eq!(got.value, want, "{input} with x={value:?}");
    }
}

#[test]
fn names_and_special_params() {
    let vars = env(&[("é", "E"), ("ǅ", "D"), ("١", "one"), ("1", "first")]);
    let got = lex().process_word("$é$ǅ$١x ${é}", &vars).unwrap();
    assert_eq!(got.value, "EDonex E");
    assert_eq!(got.matched, set(&["é", "ǅ", "١"]));
    // Digits make a name of their own; `$1` is looked up like any name.
    assert_eq!(
        lex().process_word("$1a $12", &vars).unwrap().value,
        "firsta "
    );
    let got = lex().process_word("${/a/b}${#}$@x$", &NoEnv).unwrap();
    assert_eq!(got.value, "x$");
    assert_eq!(got.unmatched, set(&["", "#", "@"]));
}

#[test]
fn byte_order_mark_at_start_is_skipped() {
    let vars = env(&[("x", "v")]);
    assert_eq!(lex().process_word("\u{FEFF}$x", &vars).unwrap().value, "v");
    assert_eq!(
        lex().process_word("a\u{FEFF}$x", &vars).unwrap().value,
        "a\u{FEFF}v"
    );
    assert_eq!(
        lex().process_word("${x#\u{FEFF}v}", &vars).unwrap().value,
        ""
    );
}

// Word splitting, including upstream's shared word buffer: scanning the
// operand of `${x<op>...}` drops what the current word held before it.
#[test]
fn word_splitting() {
    let vars = env(&[("x", "X Y")]);
    let cases: &[(&str, &[&str])] = &[
        ("ab${x:-cd}ef", &["X", "Yef"]),
        ("xy\"ab${x:-c}\"z", &["abX Yz"]),
        ("ab${y:-cd}ef", &["cdef"]),
        ("a ${x:-b c}d", &["a", "X", "Yd"]),
        ("a${x}b", &["aX", "Yb"]),
        ("a${x/a/b}c", &["X", "Yc"]),
        ("a \"\" b", &["a", "b"]),
        ("\"\"", &[]),
        ("", &[]),
        ("  a   b  ", &["a", "b"]),
        ("a\u{00A0}b\u{3000}c", &["a", "b", "c"]),
        ("a\\ b", &["a b"]),
    ];
    for &(input, want) in cases {
        assert_eq!(lex().process_words(input, &vars).unwrap(), want, "{input}");
    }
    assert_eq!(
        lex().process_word("ab${y:-cd}ef", &vars).unwrap().value,
        "abcdef"
    );
}

// The heredoc finder's lexer (RawQuotes, RawEscapes, SkipUnsetEnv) and the
// other options; expectations checked against upstream.
#[test]
fn lexer_options() {
    let vars = env(&[("x", "X Y")]);
    let cases: &[(Lexer, &str, &[&str])] = &[
        (heredoc_lex(), "cat <<EOF", &["cat", "<<EOF"]),
        (
            heredoc_lex(),
            "cat <<-EOF > file",
            &["cat", "<<-EOF", ">", "file"],
        ),
        (heredoc_lex(), "<<'EOF'", &["<<'EOF'"]),
        (heredoc_lex(), "<<\"EOF\"", &["<<\"EOF\""]),
        (heredoc_lex(), "<<\\EOF", &["<<\\EOF"]),
        (heredoc_lex(), "<<$EOF", &["<<$EOF"]),
        (heredoc_lex(), "<<${EOF}", &["<<${EOF}"]),
        (heredoc_lex(), "<<${EOF:-x}", &["${EOF:-x}"]),
        (heredoc_lex(), "cat <<E'O'F", &["cat", "<<E'O'F"]),
        (heredoc_lex(), "3<<\"E O F\"", &["3<<\"E O F\""]),
        (
            heredoc_lex(),
            "a\\ b 'c d' \"e $f\"",
            &["a\\ b", "'c d'", "\"e $f\""],
        ),
        (heredoc_lex(), "${x//a/b} ${y%x}", &["X", "Y", "${y%x}"]),
        (heredoc_lex(), "${y//a/b}", &["${y/a/b}"]),
        (heredoc_lex(), "${x:?} $1", &["X", "Y", "$1"]),
        (heredoc_lex(), "\"a\\tb\"", &["\"a\\\\tb\""]),
        (heredoc_lex(), "'a\\tb'", &["'a\\tb'"]),
        (heredoc_lex(), "a\\", &["a\\"]),
        (
            Lexer {
                skip_process_quotes: true,
                skip_unset_env: true,
                ..lex()
            },
            "echo \"$x\" '$y' $z ${w}",
            &["echo", "\"X", "Y\"", "'$y'", "$z", "${w}"],
        ),
        (
            Lexer {
                skip_process_quotes: true,
                ..lex()
            },
            "a 'b c' \"d\"",
            &["a", "'b", "c'", "\"d\""],
        ),
        (
            Lexer {
                raw_quotes: true,
                ..lex()
            },
            "a 'b c' \"d\"",
            &["a", "'b c'", "\"d\""],
        ),
        (
            Lexer {
                raw_escapes: true,
                ..lex()
            },
            "a\\ b\\\\c \\$x",
            &["a\\ b\\\\c", "\\$x"],
        ),
        (Lexer::new('`'), "a`$x `\"b", &["a$x", "\"b"]),
        (Lexer::new('`'), "\"a`\"b`$x``c`d\"", &["a\"b$x`c`d"]),
        (Lexer::new('`'), "a\\b", &["a\\b"]),
    ];
    for (lexer, input, want) in cases {
        assert_eq!(
            lexer.process_words(input, &vars).unwrap(),
            *want,
            "{input} with {lexer:?}"
        );
    }
    let got = heredoc_lex()
        .process_word("<<$EOF ${x:+$x}", &vars)
        .unwrap();
    assert_eq!(got.value, "<<$EOF X Y");
    assert_eq!(got.matched, set(&["x"]));
    assert_eq!(got.unmatched, set(&["EOF"]));
}

#[test]
fn nesting_limit() {
    let ok = "${a:-".repeat(MAX_NESTING) + "v" + &"}".repeat(MAX_NESTING);
    assert_eq!(lex().process_word(&ok, &NoEnv).unwrap().value, "v");
    let deep = "${a:-".repeat(MAX_NESTING + 1) + "v" + &"}".repeat(MAX_NESTING + 1);
    let e = lex().process_word(&deep, &NoEnv).unwrap_err();
    assert_eq!(e.kind, ShellErrorKind::NestingTooDeep);
    assert_eq!(e.offset, 5 * MAX_NESTING);
    // Hostile depth fails cleanly instead of overflowing the stack.
    let hostile = "\"${a:-".repeat(100_000);
    assert!(lex().process_words(&hostile, &NoEnv).is_err());
}

#[test]
fn oversized_pattern_is_an_error() {
    let word = format!("${{x#{}}}", "?".repeat(50_000));
    let e = lex()
        .process_word(&word, &env(&[("x", "abc")]))
        .unwrap_err();
    assert_eq!(e.offset, 0);
    assert!(
        e.to_string()
            .ends_with(") in substitution: expression too large"),
        "{e}"
    );
}

#[test]
fn huge_input() {
    let vars = env(&[("x", "a b")]);
    let word = "$x ${x:-y} '${x}' \"$x\" ".repeat(20_000);
    let got = lex().process_word(&word, &vars).unwrap();
    assert_eq!(got.value.len(), "a b a b ${x} a b ".len() * 20_000);
    assert_eq!(lex().process_words(&word, &vars).unwrap().len(), 6 * 20_000);
    let long_value = env(&[("x", &"ab".repeat(100_000))]);
    let got = lex()
        .process_word("${x//b/c}${x%%a*}${x##*b}", &long_value)
        .unwrap();
    assert_eq!(got.value, "ac".repeat(100_000));
}

#[test]
fn never_panics() {
    const ATOMS: &[&str] = &[
        "$",
        "${",
        "}",
        "{",
        ":",
        "-",
        "+",
        "?",
        "#",
        "%",
        "/",
        "\\",
        "'",
        "\"",
        "`",
        "a",
        "x",
        "*",
        ".",
        " ",
        "\t",
        "\n",
        "한",
        "0",
        "1",
        "@",
        "\u{FEFF}",
        "é",
        "[",
        "(",
        "^",
        "|",
        "=",
        "\\*",
        "\\}",
        "\\/",
        "$0",
        "$$",
        "\u{0}",
        "\u{10FFFF}",
        "👽",
        ":-",
        "##",
        "%%",
        "//",
    ];
    const VALUES: &[&str] = &[
        "",
        "abc",
        "a b",
        "*?",
        "$0",
        "한국어",
        "\\",
        "a\nb",
        "}}",
        "x/x",
    ];
    let mut rng = XorShift::new(0x9E37_79B9_7F4A_7C15);
    for _ in 0..5000 {
        let len = rng.below(24);
        let word: String = (0..len).map(|_| ATOMS[rng.below(ATOMS.len())]).collect();
        let mut vars = Vec::new();
        for k in ["a", "x", "0", "@"] {
            if rng.below(3) > 0 {
                vars.push((k.to_owned(), VALUES[rng.below(VALUES.len())].to_owned()));
            }
        }
        let bits = rng.next_u64();
        let lexer = Lexer {
            escape: if bits & 1 == 0 { '\\' } else { '`' },
            raw_quotes: bits & 2 != 0,
            raw_escapes: bits & 4 != 0,
            skip_process_quotes: bits & 8 != 0,
            skip_unset_env: bits & 16 != 0,
        };
        if let Err(e) = lexer.process_word(&word, &vars) {
            assert!(e.offset <= word.len(), "{word:?}: {e:?}");
            assert!(word.is_char_boundary(e.offset), "{word:?}: {e:?}");
            assert!(!e.to_string().is_empty());
        }
        let _ = lexer.process_words(&word, &vars);
    }
}

#[test]
fn error_display_is_the_kind() {
    let e = ShellError {
        kind: ShellErrorKind::UnexpectedEnd('}'),
        offset: 3,
    };
    assert_eq!(
        e.to_string(),
        "unexpected end of statement while looking for matching }"
    );
    assert_eq!(
        ShellErrorKind::NestingTooDeep.to_string(),
        "syntax error: substitutions nested too deeply"
    );
    assert_eq!(
        ShellErrorKind::InvalidPattern {
            pattern: "a\\".to_owned(),
            reason: PatternError::InvalidEscape('\u{FFFD}')
        }
        .to_string(),
        "invalid pattern (a\\) in substitution: invalid escape '\\\u{FFFD}'"
    );
}
