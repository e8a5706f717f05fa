use super::*;

fn dump(text: &str) -> String {
    parse("Dockerfile", text).unwrap().dump()
}

fn error(text: &str) -> Error {
    parse("Dockerfile", text).unwrap_err()
}

#[test]
fn instructions_are_case_insensitive_and_keep_their_case() {
    let df = parse("Dockerfile", "from a\nRuN echo hi\n").unwrap();
    assert_eq!(df.dump(), "(from \"a\")\n(run \"echo hi\")\n");
    assert_eq!(df.nodes[1].keyword.value, "RuN");
    assert_eq!(df.nodes[1].name(), "run");
}

#[test]
fn continuation_lines_comments_and_blank_lines() {
    assert_eq!(
        dump("RUN a \\\n  # comment\n\n  b \\\n c"),
        "(run \"a   b  c\")\n"
    );
    let df = parse("Dockerfile", "RUN a \\\n\n b\n").unwrap();
    assert_eq!(df.warnings.len(), 1);
    assert_eq!(df.warnings[0].span.line, 2);
    assert_eq!(df.nodes[0].start_line, 1);
    assert_eq!(df.nodes[0].end_line, 3);
    // continuation at end of file
    assert_eq!(dump("RUN a \\"), "(run \"a\")\n");
    // an escaped escape is no continuation
    assert_eq!(
        dump("RUN a \\\\\nRUN b"),
        "(run \"a \\\\\\\\\")\n(run \"b\")\n"
    );
    // a lone escape on a line continues too
    assert_eq!(dump("RUN a \\\n\\\nb"), "(run \"a b\")\n");
}

#[test]
fn crlf_bom_and_leading_whitespace() {
    assert_eq!(
        dump("\u{feff}FROM a\r\n   RUN b \\\r\n c\r\n"),
        "(from \"a\")\n(run \"b  c\")\n"
    );
}

#[test]
fn directives_and_escape() {
    let df = parse(
        "Dockerfile",
        "# syntax=docker/dockerfile:1\n# escape=`\nRUN a `\n b\n",
    )
    .unwrap();
    assert_eq!(df.escape, '`');
    assert_eq!(df.directive("syntax").unwrap().value, "docker/dockerfile:1");
    assert_eq!(df.dump(), "(run \"a  b\")\n");
    // after the first other line, directives are comments
    let df = parse("Dockerfile", "FROM a\n# escape=`\nRUN b \\\n c").unwrap();
    assert_eq!(df.escape, '\\');
    assert!(df.directives.is_empty());
}

#[test]
fn directive_errors() {
    let e = error("# escape=x\nFROM a");
    assert_eq!(
        e.to_string(),
        "Dockerfile:1:1: invalid escape token 'x' does not match ` or \\"
    );
    let e = error("# syntax=a\n# syntax=b\nFROM a");
    assert_eq!(
        e.to_string(),
        "Dockerfile:2:1: only one syntax parser directive can be used"
    );
}

#[test]
fn empty_and_comment_only_files() {
    assert_eq!(
        error("").to_string(),
        "Dockerfile:1:1: the Dockerfile cannot be empty"
    );
    assert_eq!(
        error("# just\n# comments\n\n").to_string(),
        "Dockerfile:3:1: file with no instructions"
    );
    assert_eq!(error("   \n\t\n").kind, ErrorKind::NoInstructions);
}

#[test]
fn flags_and_json() {
    assert_eq!(
        dump("COPY --from=a --chown=\"1 2\" [\"x y\", \"z\"]"),
        "(copy [\"--from=a\" \"--chown=1 2\"] \"x y\" \"z\")\n"
    );
    let df = parse("Dockerfile", "CMD [\"a\"]\nCMD a\n").unwrap();
    assert!(df.nodes[0].json);
    assert!(!df.nodes[1].json);
    let e = error("FROM a\nCMD [\"a\", 1]");
    assert_eq!(e.kind, ErrorKind::NotStringArray);
    assert_eq!(
        e.span,
        Span {
            line: 2,
            column: 5,
            width: 8
        }
    );
}

#[test]
fn env_label_and_arg_forms() {
    assert_eq!(
        dump("ENV a=1 b=\"2 3\"\nENV c 4 5\nLABEL x=y\nARG p q=r"),
        "(env \"a\" \"1\" \"=\" \"b\" \"\\\"2 3\\\"\" \"=\")\n(env \"c\" \"4 5\" \"\")\n(label \"x\" \"y\" \"=\")\n(arg \"p\" \"q=r\")\n"
    );
    let e = error("FROM a\nENV a=1 b");
    assert_eq!(
        e.to_string(),
        "Dockerfile:2:9: Syntax error - can't find = in \"b\". Must be of the form: name=value"
    );
    let e = error("FROM a\nENV PATH");
    assert_eq!(e.to_string(), "Dockerfile:2:5: ENV must have two arguments");
    assert_eq!(e.span.width, 4);
}

#[test]
fn onbuild_and_healthcheck_and_unknown() {
    assert_eq!(dump("ONBUILD RUN a b"), "(onbuild (run \"a b\"))\n");
    assert_eq!(
        dump("HEALTHCHECK --interval=5s CMD [\"x\"]"),
        "(healthcheck [\"--interval=5s\"] \"CMD\" \"x\")\n"
    );
    assert_eq!(dump("HEALTHCHECK NONE"), "(healthcheck \"NONE\")\n");
    assert_eq!(dump("BOGUS a b"), "(bogus \"\")\n");
    let deep = format!("{}RUN x", "ONBUILD ".repeat(100));
    assert_eq!(error(&deep).kind, ErrorKind::NestingTooDeep);
}

#[test]
fn heredocs() {
    let df = parse(
        "Dockerfile",
        "FROM a\nRUN <<EOF cat >/x <<-'EOT'\necho $HOME\nEOF\n\tline\n\tEOT\nRUN b\n",
    )
    .unwrap();
    let run = &df.nodes[1];
    assert_eq!(run.heredocs.len(), 2);
    assert_eq!(run.heredocs[0].name, "EOF");
    assert_eq!(run.heredocs[0].content, "echo $HOME\n");
    assert!(run.heredocs[0].expand);
    assert_eq!(run.heredocs[1].content, "\tline\n");
    assert_eq!(run.heredocs[1].body(), "line\n");
    assert!(!run.heredocs[1].expand);
    assert_eq!((run.start_line, run.end_line), (2, 6));
    assert_eq!(df.nodes[2].start_line, 7);
    assert_eq!(
        run.heredocs[0].span,
        Span {
            line: 2,
            column: 5,
            width: 5
        }
    );

    // exec form has no heredocs
    let df = parse("Dockerfile", "RUN [\"<<EOF\"]\nRUN b").unwrap();
    assert_eq!(df.nodes.len(), 2);

    let e = error("FROM a\nRUN <<EOF\nno end\n");
    assert_eq!(e.to_string(), "Dockerfile:2:5: unterminated heredoc EOF");
    assert_eq!(e.span.width, 5);
}

#[test]
fn spans_point_at_words_across_continuations() {
    let df = parse(
        "Dockerfile",
        "FROM a\nCOPY \\\n  --chown=x \\\n  src   dst\n",
    )
    .unwrap();
    let copy = &df.nodes[1];
    assert_eq!(
        copy.flags[0].span,
        Span {
            line: 3,
            column: 3,
            width: 9
        }
    );
    let words = copy.arg_words();
    assert_eq!(
        words[0].span,
        Span {
            line: 4,
            column: 3,
            width: 3
        }
    );
    assert_eq!(
        words[1].span,
        Span {
            line: 4,
            column: 9,
            width: 3
        }
    );
}
