use super::*;
use crate::ast;

fn stages(text: &str) -> Stages {
    let df = ast::parse("Dockerfile", text).unwrap();
    parse_stages(&df).unwrap()
}

fn first(text: &str) -> InstructionKind {
    let s = stages(&format!("FROM scratch\n{text}"));
    s.stages[0].instructions[0].kind.clone()
}

/// The one-line error for a Dockerfile.
fn error(text: &str) -> String {
    let df = ast::parse("Dockerfile", text).unwrap();
    parse_stages(&df).unwrap_err().to_string()
}

fn values(words: &[Word]) -> Vec<&str> {
    words.iter().map(|w| w.value.as_str()).collect()
}

#[test]
fn stages_and_meta_args() {
    let s = stages("ARG V=1\nARG W\nFROM a AS One\nRUN x\nFROM b\nCOPY --from=one / /\n");
    assert_eq!(s.meta_args.len(), 2);
    assert_eq!(s.stages.len(), 2);
    assert_eq!(s.stages[0].name(), Some("one"));
    assert_eq!(s.stages[1].name(), None);
    assert_eq!(s.stages[1].index, 1);
    assert_eq!(s.stages[0].instructions.len(), 1);
}

#[test]
fn every_instruction_parses() {
    let text = "FROM --platform=linux/amd64 alpine:3 AS base
RUN --mount=type=cache,target=/c --network=none --security=sandbox make
CMD [\"a\", \"b\"]
LABEL a=b c=\"d e\"
MAINTAINER me
EXPOSE 80/tcp 443
ENV A=1 B=2
ADD --chown=1:1 --chmod=644 --link --keep-git-dir --checksum=sha256:abc --unpack=false --exclude=*.md a b /dst/
COPY --from=base --chown=u --chmod=755 --link --parents --exclude=x --exclude=y src /dst
ENTRYPOINT /bin/app
VOLUME /v1 /v2
USER nobody
WORKDIR /app
ARG X=1 Y
ONBUILD RUN echo hi
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --timeout=3s --start-period=1s --start-interval=2s --retries=3 CMD curl -f localhost
SHELL [\"/bin/bash\", \"-c\"]
";
    let s = stages(text);
    let names: Vec<&str> = s.stages[0]
        .instructions
        .iter()
        .map(|i| i.kind.name())
        .collect();
    assert_eq!(
        names,
        vec![
            "RUN",
            "CMD",
            "LABEL",
            "MAINTAINER",
            "EXPOSE",
            "ENV",
            "ADD",
            "COPY",
            "ENTRYPOINT",
            "VOLUME",
            "USER",
            "WORKDIR",
            "ARG",
            "ONBUILD",
            "STOPSIGNAL",
            "HEALTHCHECK",
            "SHELL"
        ]
    );
    let from = s.stages[0].from_args().unwrap();
    assert_eq!(from.platform.as_ref().unwrap().value, "linux/amd64");
    assert_eq!(from.name.as_ref().unwrap().value, "base");
    let InstructionKind::Run(run) = &s.stages[0].instructions[0].kind else {
        panic!()
    };
    assert_eq!(run.mounts.len(), 1);
    assert_eq!(run.network, Some(NetworkMode::None));
    assert_eq!(run.command.strings(), vec!["make"]);
    assert!(run.command.prepend_shell);
    let InstructionKind::Add(add) = &s.stages[0].instructions[6].kind else {
        panic!()
    };
    assert_eq!(add.unpack, Some(false));
    assert!(add.link && add.keep_git_dir);
    assert_eq!(values(&add.files.sources), vec!["a", "b"]);
    assert_eq!(add.files.dest.value, "/dst/");
    assert_eq!(values(&add.excludes), vec!["*.md"]);
    let InstructionKind::Copy(copy) = &s.stages[0].instructions[7].kind else {
        panic!()
    };
    assert!(copy.parents && copy.link);
    assert_eq!(copy.from.as_ref().unwrap().value, "base");
    assert_eq!(values(&copy.excludes), vec!["x", "y"]);
    let InstructionKind::Expose { ports } = &s.stages[0].instructions[4].kind else {
        panic!()
    };
    assert_eq!(values(ports), vec!["443", "80/tcp"]);
    let InstructionKind::Healthcheck(Healthcheck::Cmd {
        test,
        interval,
        retries,
        start_interval,
        ..
    }) = &s.stages[0].instructions[15].kind
    else {
        panic!()
    };
    assert_eq!(
        test,
        &vec!["CMD-SHELL".to_owned(), "curl -f localhost".to_owned()]
    );
    assert_eq!(*interval, 5_000_000_000);
    assert_eq!(*start_interval, 2_000_000_000);
    assert_eq!(*retries, 3);
    let InstructionKind::Onbuild(onbuild) = &s.stages[0].instructions[13].kind else {
        panic!()
    };
    assert_eq!(onbuild.expression, "RUN echo hi");
    assert_eq!(onbuild.trigger.as_ref().unwrap().kind.name(), "RUN");
}

#[test]
fn heredoc_sources_and_run_scripts() {
    let kind = first("COPY <<EOF <<-\"TWO\" plain /dst/\nhello $X\nEOF\n\tbye\n\tTWO\n");
    let InstructionKind::Copy(copy) = kind else {
        panic!()
    };
    assert_eq!(values(&copy.files.sources), vec!["plain"]);
    assert_eq!(copy.files.inline.len(), 2);
    assert_eq!(copy.files.inline[0].content, "hello $X\n");
    assert!(copy.files.inline[0].expand);
    assert_eq!(copy.files.inline[1].content, "bye\n");
    assert!(!copy.files.inline[1].expand);

    let InstructionKind::Run(run) = first("RUN <<EOF\necho a\necho b\nEOF\n") else {
        panic!()
    };
    assert_eq!(run.effective_command(), vec!["echo a\necho b\n"]);
    assert_eq!(run.script_file(), None);

    let InstructionKind::Run(run) = first("RUN <<eot\n#!/usr/bin/env python3\nprint(1)\neot\n")
    else {
        panic!()
    };
    assert_eq!(run.effective_command(), vec!["/dev/pipes/eot"]);
    assert_eq!(
        run.script_file(),
        Some((
            "eot".to_owned(),
            "#!/usr/bin/env python3\nprint(1)\n".to_owned()
        ))
    );

    let InstructionKind::Run(run) = first("RUN cat <<A <<B > /out\none\nA\ntwo\nB\n") else {
        panic!()
    };
    assert_eq!(
        run.effective_command(),
        vec!["cat <<A <<B > /out\none\nA\ntwo\nB"]
    );

    let InstructionKind::Run(run) = first("RUN <<-EOF\n\t\techo tabs\n\tEOF\n") else {
        panic!()
    };
    assert_eq!(run.effective_command(), vec!["echo tabs\n"]);
}

#[test]
fn cmd_entrypoint_forms() {
    let InstructionKind::Cmd(c) = first("CMD echo  \"hi\"") else {
        panic!()
    };
    assert_eq!(
        (c.strings(), c.prepend_shell),
        (vec!["echo  \"hi\"".to_owned()], true)
    );
    let InstructionKind::Cmd(c) = first("CMD [\"echo\", \"hi\"]") else {
        panic!()
    };
    assert_eq!(
        (c.strings(), c.prepend_shell),
        (vec!["echo".to_owned(), "hi".to_owned()], false)
    );
    let InstructionKind::Entrypoint(c) = first("ENTRYPOINT []") else {
        panic!()
    };
    assert!(c.args.is_empty());
    // invalid JSON falls back to the shell form
    let InstructionKind::Cmd(c) = first("CMD ['a']") else {
        panic!()
    };
    assert_eq!(c.strings(), vec!["['a']"]);
}

#[test]
fn healthcheck_none_ignores_flags() {
    assert_eq!(
        first("HEALTHCHECK --interval=bogus NONE"),
        InstructionKind::Healthcheck(Healthcheck::None)
    );
    let InstructionKind::Healthcheck(Healthcheck::Cmd { test, .. }) =
        first("HEALTHCHECK CMD [\"a\", \"b\"]")
    else {
        panic!()
    };
    assert_eq!(test, vec!["CMD", "a", "b"]);
}

#[test]
fn unknown_instruction_suggests_the_nearest() {
    assert_eq!(
        error("FORM alpine"),
        "Dockerfile:1:1: unknown instruction: FORM (did you mean FROM?)"
    );
    assert_eq!(
        error("FROM a\nrnu x"),
        "Dockerfile:2:1: unknown instruction: rnu (did you mean run?)"
    );
    assert_eq!(
        error("FROM a\nCopi x y"),
        "Dockerfile:2:1: unknown instruction: Copi (did you mean copy?)"
    );
    assert_eq!(
        error("FROM a\nFOOBAR x"),
        "Dockerfile:2:1: unknown instruction: FOOBAR"
    );
}

#[test]
fn errors_worded_as_buildkit() {
    let cases = [
        ("RUN x", "Dockerfile:1:1: no build stage in current context"),
        (
            "ARG A\nENV B=1",
            "Dockerfile:2:1: no build stage in current context",
        ),
        (
            "FROM",
            "Dockerfile:1:1: FROM requires either one or three arguments",
        ),
        (
            "FROM a b",
            "Dockerfile:1:8: FROM requires either one or three arguments",
        ),
        (
            "FROM a AS b c",
            "Dockerfile:1:8: FROM requires either one or three arguments",
        ),
        (
            "FROM a AS 1bad",
            "Dockerfile:1:11: invalid name for build stage: \"1bad\", name can't start with a number or contain symbols",
        ),
        (
            "FROM a AS b$c",
            "Dockerfile:1:11: invalid name for build stage: \"b$c\", name can't start with a number or contain symbols",
        ),
        (
            "FROM a\nENV",
            "Dockerfile:2:1: ENV requires at least one argument",
        ),
        (
            "FROM a\nLABEL",
            "Dockerfile:2:1: LABEL requires at least one argument",
        ),
        (
            "FROM a\nENV =x",
            "Dockerfile:2:5: ENV names can not be blank",
        ),
        (
            "FROM a\nARG",
            "Dockerfile:2:1: ARG requires at least one argument",
        ),
        (
            "FROM a\nARG =x",
            "Dockerfile:2:5: ARG names can not be blank",
        ),
        (
            "FROM a\nARG \"A\"=1",
            "Dockerfile:2:5: invalid ARG name \"\\\"A\\\"\": a name is a letter or underscore followed by letters, digits and underscores",
        ),
        (
            "FROM a\nCOPY x",
            "Dockerfile:2:6: COPY requires at least two arguments, but only one was provided. Destination could not be determined",
        ),
        (
            "FROM a\nADD x",
            "Dockerfile:2:5: ADD requires at least two arguments, but only one was provided. Destination could not be determined",
        ),
        (
            "FROM a\nCOPY",
            "Dockerfile:2:1: COPY requires at least two arguments, but only one was provided. Destination could not be determined",
        ),
        (
            "FROM a\nCOPY x <<EOF\nEOF\n",
            "Dockerfile:2:8: COPY cannot accept a heredoc as a destination",
        ),
        (
            "FROM a\nWORKDIR",
            "Dockerfile:2:1: WORKDIR requires exactly one argument",
        ),
        (
            "FROM a\nUSER",
            "Dockerfile:2:1: USER requires exactly one argument",
        ),
        (
            "FROM a\nSTOPSIGNAL",
            "Dockerfile:2:1: STOPSIGNAL requires exactly one argument",
        ),
        (
            "FROM a\nMAINTAINER",
            "Dockerfile:2:1: MAINTAINER requires exactly one argument",
        ),
        (
            "FROM a\nEXPOSE",
            "Dockerfile:2:1: EXPOSE requires at least one argument",
        ),
        (
            "FROM a\nVOLUME",
            "Dockerfile:2:1: VOLUME requires at least one argument",
        ),
        (
            "FROM a\nVOLUME [\"\"]",
            "Dockerfile:2:9: VOLUME specified can not be an empty string",
        ),
        (
            "FROM a\nONBUILD",
            "Dockerfile:2:1: ONBUILD requires at least one argument",
        ),
        (
            "FROM a\nONBUILD ONBUILD RUN x",
            "Dockerfile:2:9: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
        ),
        (
            "FROM a\nONBUILD FROM b",
            "Dockerfile:2:9: FROM isn't allowed as an ONBUILD trigger",
        ),
        (
            "FROM a\nonbuild maintainer b",
            "Dockerfile:2:9: MAINTAINER isn't allowed as an ONBUILD trigger",
        ),
        (
            "FROM a\nHEALTHCHECK",
            "Dockerfile:2:1: HEALTHCHECK requires at least one argument",
        ),
        (
            "FROM a\nHEALTHCHECK NONE x",
            "Dockerfile:2:18: HEALTHCHECK NONE takes no arguments",
        ),
        (
            "FROM a\nHEALTHCHECK CMD",
            "Dockerfile:2:13: Missing command after HEALTHCHECK CMD",
        ),
        (
            "FROM a\nHEALTHCHECK FOO bar",
            "Dockerfile:2:13: Unknown type \"FOO\" in HEALTHCHECK (try CMD)",
        ),
        (
            "FROM a\nHEALTHCHECK --interval=5x CMD a",
            "Dockerfile:2:24: time: unknown unit \"x\" in duration \"5x\"",
        ),
        (
            "FROM a\nHEALTHCHECK --timeout=10us CMD a",
            "Dockerfile:2:23: Interval \"timeout\" cannot be less than 1ms",
        ),
        (
            "FROM a\nHEALTHCHECK --retries=x CMD a",
            "Dockerfile:2:23: strconv.ParseInt: parsing \"x\": invalid syntax",
        ),
        (
            "FROM a\nHEALTHCHECK --retries=99999999999 CMD a",
            "Dockerfile:2:23: strconv.ParseInt: parsing \"99999999999\": value out of range",
        ),
        (
            "FROM a\nHEALTHCHECK --retries=-1 CMD a",
            "Dockerfile:2:23: --retries cannot be negative (-1)",
        ),
        (
            "FROM a\nSHELL []",
            "Dockerfile:2:1: SHELL requires at least one argument",
        ),
        (
            "FROM a\nSHELL /bin/sh -c",
            "Dockerfile:2:7: SHELL requires the arguments to be in JSON form",
        ),
        (
            "FROM a\nCOPY --bogus=1 a b",
            "Dockerfile:2:6: unknown flag: --bogus",
        ),
        ("FROM a\nENV --x=1 a=b", "Dockerfile:2:5: unknown flag: --x"),
        (
            "FROM a\nCOPY --from a b",
            "Dockerfile:2:6: missing a value on flag: --from",
        ),
        (
            "FROM a\nCOPY --link=maybe a b",
            "Dockerfile:2:13: expecting boolean value for flag --link, not: maybe",
        ),
        (
            "FROM a\nCOPY --from=x --from=y a b",
            "Dockerfile:2:15: duplicate flag specified: --from",
        ),
        ("FROM --bogus=1 a", "Dockerfile:1:6: unknown flag: --bogus"),
        // BuildKit's words and its suggestion among the instruction's flags
        (
            "FROM a\nRUN --mont=target=/mytmp,type=tmpfs /bin/true",
            "Dockerfile:2:5: unknown flag: --mont (did you mean mount?)",
        ),
        (
            "FROM a\nCOPY --chmd=755 a b",
            "Dockerfile:2:6: unknown flag: --chmd (did you mean chmod?)",
        ),
        (
            "FROM --platfrom=linux/amd64 a",
            "Dockerfile:1:6: unknown flag: --platfrom (did you mean platform?)",
        ),
        (
            "FROM a\nRUN --network=bridge x",
            "Dockerfile:2:15: invalid network mode \"bridge\"",
        ),
        (
            "FROM a\nRUN --security=root x",
            "Dockerfile:2:16: security \"root\" is not valid",
        ),
        (
            "FROM a\nRUN --device=x y",
            "Dockerfile:2:5: unknown flag: --device",
        ),
        (
            "FROM a\nADD --from=x a b",
            "Dockerfile:2:5: unknown flag: --from",
        ),
        (
            "FROM a\nCOPY --checksum=x a b",
            "Dockerfile:2:6: unknown flag: --checksum",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error(text), expected, "for {text:?}");
    }
}

#[test]
fn errors_say_what_was_expected() {
    let df = ast::parse("Dockerfile", "FROM a\nCOPY --bogus=1 a b").unwrap();
    let e = parse_stages(&df).unwrap_err();
    assert_eq!(
        e.expected.as_deref(),
        Some("one of --exclude, --parents, --chown, --from, --chmod, --link")
    );
    assert!(e.render().ends_with("2 | COPY --bogus=1 a b\n  |      ^^^^^^^^^ expected one of --exclude, --parents, --chown, --from, --chmod, --link"), "{}", e.render());
}

#[test]
fn onbuild_triggers_that_fail_are_warnings() {
    let df = ast::parse(
        "Dockerfile",
        "FROM a\nONBUILD BOGUS x\nONBUILD COPY --bad=1 a b",
    )
    .unwrap();
    let s = parse_stages(&df).unwrap();
    assert_eq!(s.warnings.len(), 2);
    assert_eq!(s.warnings[0].rule, "InvalidOnbuildTrigger");
    assert!(
        s.warnings[1].message.contains("unknown flag: --bad"),
        "{:?}",
        s.warnings
    );
}

#[test]
fn suggestion_distance() {
    assert_eq!(suggest_instruction("RUNN"), Some("RUN".into()));
    assert_eq!(suggest_instruction("xyzzy"), None);
    assert_eq!(
        suggest_instruction("healtcheck"),
        Some("healthcheck".into())
    );
}

#[test]
fn single_instruction_parsing() {
    assert_eq!(
        parse_single_instruction("RUN echo hi").unwrap().kind.name(),
        "RUN"
    );
    assert!(parse_single_instruction("RUN a\nRUN b").is_err());
}
