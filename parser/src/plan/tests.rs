use std::collections::BTreeMap;

use super::*;
use crate::ast;

fn options(args: &[(&str, &str)], target: Option<&str>) -> PlanOptions<'static> {
    PlanOptions {
        build_args: args
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        target: target.map(str::to_owned),
        target_platform: Some(Platform::parse("linux/arm64").unwrap()),
        build_platform: Some(Platform::parse("linux/amd64").unwrap()),
        base_images: None,
        contexts: BTreeMap::new(),
    }
}

fn plan_with(text: &str, options: &PlanOptions<'_>) -> Plan {
    let df = ast::parse("Dockerfile", text).unwrap();
    plan(&df, options).unwrap_or_else(|e| panic!("{}", e.render()))
}

fn plan_of(text: &str) -> Plan {
    plan_with(text, &options(&[], None))
}

fn error_with(text: &str, options: &PlanOptions<'_>) -> String {
    let df = ast::parse("Dockerfile", text).unwrap();
    plan(&df, options).unwrap_err().to_string()
}

fn error(text: &str) -> String {
    error_with(text, &options(&[], None))
}

/// The steps of the target stage.
fn steps(plan: &Plan) -> &[Step] {
    &plan.stages[plan.target].steps
}

fn env_pairs(step: &Step) -> Vec<(String, String)> {
    match &step.kind {
        StepKind::Env { pairs } | StepKind::Label { pairs } => pairs.clone(),
        other => panic!("not ENV/LABEL: {other:?}"),
    }
}

fn pair(k: &str, v: &str) -> (String, String) {
    (k.to_owned(), v.to_owned())
}

fn workdir(step: &Step) -> &str {
    match &step.kind {
        StepKind::Workdir { path } => path,
        other => panic!("not WORKDIR: {other:?}"),
    }
}

fn copy(step: &Step) -> &FileCopy {
    match &step.kind {
        StepKind::Copy(c) | StepKind::Add(c) => c,
        other => panic!("not COPY/ADD: {other:?}"),
    }
}

#[test]
fn global_args_feed_from_and_need_redeclaring_in_stages() {
    let text = "ARG TAG=3.20\nARG IMG=alpine\nFROM ${IMG}:${TAG} AS base\nENV A=${TAG}:x\nARG TAG\nENV B=${TAG}\n";
    let p = plan_of(text);
    assert_eq!(p.external_images, vec!["docker.io/library/alpine:3.20"]);
    assert_eq!(env_pairs(&steps(&p)[0]), vec![pair("A", ":x")]);
    assert_eq!(env_pairs(&steps(&p)[2]), vec![pair("B", "3.20")]);
    // build args override global defaults
    let p = plan_with(text, &options(&[("TAG", "edge")], None));
    assert_eq!(p.external_images, vec!["docker.io/library/alpine:edge"]);
    assert_eq!(env_pairs(&steps(&p)[2]), vec![pair("B", "edge")]);
}

#[test]
fn arg_scope_defaults_overrides_and_env_precedence() {
    let text = "FROM scratch
WORKDIR ${U:-/fallback}
ARG U
WORKDIR /$U
ARG V=default
ENV V=from-env
WORKDIR /$V
ARG W=${V}-w
ENV X=$W
";
    let p = plan_of(text);
    let s = steps(&p);
    assert_eq!(workdir(&s[0]), "/fallback");
    assert_eq!(workdir(&s[2]), "/");
    assert_eq!(workdir(&s[5]), "/from-env");
    assert_eq!(env_pairs(&s[7]), vec![pair("X", "from-env-w")]);
    let p = plan_with(text, &options(&[("U", "given"), ("V", "cli")], None));
    let s = steps(&p);
    assert_eq!(workdir(&s[2]), "/given");
    // ENV set after the ARG wins over the build arg
    assert_eq!(workdir(&s[5]), "/from-env");
    assert!(p.unused_build_args.is_empty());
    let p = plan_with(
        text,
        &options(
            &[
                ("NOPE", "1"),
                ("HTTP_PROXY", "x"),
                ("no_proxy", "y"),
                ("All_Proxy", "z"),
                ("FTP_PROXY", ""),
            ],
            None,
        ),
    );
    assert_eq!(p.unused_build_args, vec!["NOPE"]);
    // both spellings of each name, in BuildKit's order; empty values none
    assert_eq!(
        p.proxy_env,
        vec![
            pair("HTTP_PROXY", "x"),
            pair("http_proxy", "x"),
            pair("NO_PROXY", "y"),
            pair("no_proxy", "y"),
            pair("ALL_PROXY", "z"),
            pair("all_proxy", "z"),
        ]
    );
    // Go's EqualFold: the long s folds to s
    let p = plan_with(text, &options(&[("HTTP\u{17f}_PROXY", "s")], None));
    assert!(p.unused_build_args.is_empty());
    assert_eq!(
        p.proxy_env,
        vec![pair("HTTPS_PROXY", "s"), pair("https_proxy", "s")]
    );
}

#[test]
fn a_stage_base_reapplies_its_config_env_over_args() {
    // In stage a, the last ARG V overrides ENV V for expansion; stage b
    // starts from a's image config, where V is the ENV value (as BuildKit).
    let p = plan_of(
        "ARG V=global\nFROM scratch AS a\nENV V=env-wins\nARG V\nENV AFTER=$V\nFROM a\nENV B=$V\n",
    );
    assert_eq!(
        env_pairs(&p.stages[0].steps[2]),
        vec![pair("AFTER", "global")]
    );
    assert_eq!(
        env_pairs(&p.stages[1].steps[0]),
        vec![pair("B", "env-wins")]
    );
}

#[test]
fn env_pairs_see_the_environment_before_the_instruction() {
    let p = plan_of("FROM scratch\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n");
    let s = steps(&p);
    assert_eq!(
        env_pairs(&s[1]),
        vec![pair("abc", "bye"), pair("def", "hello")]
    );
    assert_eq!(env_pairs(&s[2]), vec![pair("ghi", "bye")]);
    // quotes and escapes are processed at expansion
    let p = plan_of("FROM scratch\nENV a=\"x y\" b='$z' c=p\\ q\nLABEL \"k k\"=v\n");
    let s = steps(&p);
    assert_eq!(
        env_pairs(&s[0]),
        vec![pair("a", "x y"), pair("b", "$z"), pair("c", "p q")]
    );
    assert_eq!(env_pairs(&s[1]), vec![pair("k k", "v")]);
}

#[test]
fn default_path_is_set_and_extendable() {
    let p = plan_of("FROM scratch\nENV PATH=$PATH:/opt/bin\n");
    assert_eq!(
        env_pairs(&steps(&p)[0]),
        vec![pair("PATH", &format!("{DEFAULT_PATH}:/opt/bin"))]
    );
}

#[test]
fn predefined_platform_args() {
    let text = "FROM --platform=$BUILDPLATFORM scratch AS b\nARG TARGETARCH\nARG BUILDOS\nENV T=$TARGETARCH B=$BUILDOS P=$TARGETPLATFORM\n";
    let p = plan_of(text);
    assert_eq!(
        p.stages[0].platform.as_ref().unwrap().to_string(),
        "linux/amd64"
    );
    assert_eq!(
        env_pairs(&steps(&p)[2]),
        vec![pair("T", "arm64"), pair("B", "linux"), pair("P", "")]
    );
    let globals: BTreeMap<_, _> = p.global_args.iter().cloned().collect();
    assert_eq!(globals["TARGETPLATFORM"], "linux/arm64");
    assert_eq!(globals["BUILDARCH"], "amd64");
    assert_eq!(globals["TARGETVARIANT"], "");
}

#[test]
fn platform_args_take_buildkits_values_for_a_variant_and_reach_from() {
    // BuildKit's documented values: linux/arm/v7 is TARGETARCH=arm,
    // TARGETVARIANT=v7; the global scope has them for FROM, a stage
    // only after ARG.
    let mut opts = options(&[], None);
    opts.target_platform = Some(Platform::parse("linux/arm/v7").unwrap().normalize());
    let text = "FROM base-$TARGETARCH$TARGETVARIANT\nARG TARGETPLATFORM\nARG TARGETOS\nARG TARGETARCH\nARG TARGETVARIANT\nARG BUILDPLATFORM\nENV A=$TARGETPLATFORM B=$TARGETOS C=$TARGETARCH D=$TARGETVARIANT E=$BUILDPLATFORM F=$BUILDVARIANT\n";
    let p = plan_with(text, &opts);
    assert_eq!(
        p.external_images,
        vec!["docker.io/library/base-armv7:latest".to_owned()]
    );
    assert_eq!(
        env_pairs(&steps(&p)[5]),
        vec![
            pair("A", "linux/arm/v7"),
            pair("B", "linux"),
            pair("C", "arm"),
            pair("D", "v7"),
            pair("E", "linux/amd64"),
            pair("F", ""),
        ]
    );
    // linux/arm64 has no variant (platforms.Normalize drops v8).
    opts.target_platform = Some(Platform::parse("linux/arm64/v8").unwrap().normalize());
    let p = plan_with(text, &opts);
    assert_eq!(
        p.external_images,
        vec!["docker.io/library/base-arm64:latest".to_owned()]
    );
}

#[test]
fn targetstage_is_the_stage_being_built() {
    let text = "FROM a AS base\nENV BEFORE=x$TARGETSTAGE\nARG TARGETSTAGE\nENV AFTER=$TARGETSTAGE\nFROM base AS foo\nFROM base\n";
    let value = |p: &Plan| {
        let base = &p.stages[0].steps;
        (env_pairs(&base[0]), env_pairs(&base[2]))
    };
    // the last stage is unnamed: `default`; only after `ARG TARGETSTAGE`
    assert_eq!(
        value(&plan_of(text)),
        (vec![pair("BEFORE", "x")], vec![pair("AFTER", "default")])
    );
    // --target as given
    let p = plan_with(text, &options(&[], Some("Foo")));
    assert_eq!(value(&p).1, vec![pair("AFTER", "Foo")]);
    // the last stage's name
    let named = format!("{text}FROM base AS final\n");
    assert_eq!(value(&plan_of(&named)).1, vec![pair("AFTER", "final")]);
    // a global ARG: FROM sees it; a build arg overrides it
    let p = plan_of("FROM img:$TARGETSTAGE AS x\n");
    assert_eq!(
        p.stages[0].base,
        Base::Image {
            reference: "docker.io/library/img:x".into()
        }
    );
    let p = plan_with(text, &options(&[("TARGETSTAGE", "mine")], None));
    assert_eq!(value(&p).1, vec![pair("AFTER", "mine")]);
    assert!(p.unused_build_args.is_empty());
}

#[test]
fn stage_graph_and_target_pruning() {
    let text = "FROM alpine AS base
RUN echo base
FROM busybox AS tools
FROM base AS build
RUN --mount=type=bind,from=tools,target=/t make
COPY --from=0 /a /a
FROM golang AS unused
RUN go version
FROM scratch AS final
COPY --from=build /out /out
COPY --from=nginx:1 /etc/nginx /etc/nginx
";
    let p = plan_of(text);
    assert_eq!(p.target, 4);
    assert_eq!(p.build_order, vec![0, 1, 2, 4]);
    assert!(!p.stages[3].needed);
    assert!(p.stages[3].steps.is_empty());
    assert_eq!(p.stages[2].base, Base::Stage { index: 0 });
    assert_eq!(p.stages[4].base, Base::Scratch);
    assert_eq!(
        p.external_images,
        vec![
            "docker.io/library/alpine:latest",
            "docker.io/library/busybox:latest",
            "docker.io/library/nginx:1"
        ]
    );
    let kinds: Vec<_> = p.stages[2]
        .dependencies
        .iter()
        .map(|d| (d.kind, d.source.clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (DependencyKind::Base, Source::Stage { index: 0 }),
            (DependencyKind::MountFrom, Source::Stage { index: 1 }),
            (DependencyKind::CopyFrom, Source::Stage { index: 0 }),
        ]
    );
    // --target prunes to what the target needs
    let p = plan_with(text, &options(&[], Some("unused")));
    assert_eq!(p.build_order, vec![3]);
    assert_eq!(p.external_images, vec!["docker.io/library/golang:latest"]);
}

#[test]
fn forward_references_are_errors_when_needed() {
    let text = "FROM alpine AS build\nRUN --mount=type=bind,from=tools,target=/t make\nFROM busybox AS tools\n";
    assert_eq!(
        error_with(text, &options(&[], Some("build"))),
        "Dockerfile:2:13: cannot mount from stage \"tools\" to \"/t\", stage needs to be defined before current command"
    );
    let text = "FROM alpine AS a\nCOPY --from=b /x /x\nFROM busybox AS b\n";
    assert_eq!(
        error_with(text, &options(&[], Some("a"))),
        "Dockerfile:2:13: cannot copy from stage \"b\", it needs to be defined before current stage \"a\""
    );
    let text =
        "FROM alpine\nCOPY --from=1 /x /x\nFROM busybox\nFROM scratch\nCOPY --from=0 /x /x\n";
    assert_eq!(
        error_with(text, &options(&[], None)),
        "Dockerfile:2:13: cannot copy from stage \"1\", it needs to be defined before current stage \"stage-0\""
    );
    // not needed for the target: BuildKit never looks at it
    let text = "FROM alpine AS a\nCOPY --from=b /x /x\nFROM busybox AS b\nRUN true\n";
    assert_eq!(plan_of(text).build_order, vec![1]);
}

#[test]
fn graph_errors() {
    assert_eq!(
        error("FROM busybox AS stage0\nCOPY --from=stage0 f1 /sub/\n"),
        "Dockerfile:2:13: circular dependency detected on stage: stage0"
    );
    assert_eq!(
        error(
            "FROM busybox AS stage0\nCOPY --from=stage2 f1 /sub/\nFROM busybox AS stage1\nCOPY --from=stage0 f2 /sub/\nFROM busybox AS stage2\nCOPY --from=stage1 f2 /sub/\n"
        ),
        "Dockerfile:4:13: circular dependency detected on stage: stage0"
    );
    assert_eq!(
        error("FROM a\nCOPY --from=5 x y\n"),
        "Dockerfile:2:13: invalid stage index 5"
    );
    assert_eq!(
        error("FROM a\nCOPY --from=-1 x y\n"),
        "Dockerfile:2:13: invalid stage index -1"
    );
    assert_eq!(
        error("FROM a AS x\nFROM b AS X\n"),
        "Dockerfile:2:11: Duplicate stage name \"x\", stage names should be unique"
    );
    // COPY gets BuildKit's COPY message, RUN --mount its own
    let copy_from = "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround";
    assert_eq!(
        error("ARG S=a\nFROM a\nCOPY --from=$S x y\n"),
        format!("Dockerfile:3:13: {copy_from}")
    );
    assert_eq!(
        error("FROM a AS b\nFROM a\nCOPY --from=b${NOPE} x y\n"),
        format!("Dockerfile:3:13: {copy_from}")
    );

    assert_eq!(
        error("FROM a\nRUN --mount=from=${S},target=/x true\n"),
        "Dockerfile:2:13: 'from' doesn't support variable expansion, define alias stage instead"
    );
    assert_eq!(
        error_with(
            "FROM a AS one\nFROM b AS two\n",
            &options(&[], Some("three"))
        ),
        "Dockerfile:1:1: target stage \"three\" could not be found"
    );
    // the nearest stage name, matched ignoring case as --target is
    let text = "FROM a AS build\nFROM b AS runtime\n";
    assert_eq!(
        error_with(text, &options(&[], Some("bulid"))),
        "Dockerfile:1:1: target stage \"bulid\" could not be found (did you mean build?)"
    );
    assert_eq!(
        error_with(text, &options(&[], Some("RUNTIM"))),
        "Dockerfile:1:1: target stage \"RUNTIM\" could not be found (did you mean RUNTIME?)"
    );
    assert_eq!(
        error("ARG A=1\nARG B=2\n"),
        "Dockerfile:2:1: dockerfile contains no stages to build"
    );
}

#[test]
fn target_is_case_insensitive_and_names_are_lowercased() {
    let p = plan_with(
        "FROM a AS Build\nFROM b\nCOPY --from=BUILD x y\n",
        &options(&[], Some("BUILD")),
    );
    assert_eq!(p.target, 0);
    assert_eq!(p.stages[0].name.as_deref(), Some("build"));
    let p = plan_of("FROM a AS Build\nFROM b\nCOPY --from=BUILD x y\n");
    assert_eq!(copy(&steps(&p)[0]).from, Some(Source::Stage { index: 0 }));
}

#[test]
fn from_bases_and_references() {
    assert_eq!(
        error("FROM Alpine\n"),
        "Dockerfile:1:6: failed to parse stage name \"Alpine\": invalid reference format: repository name (library/Alpine) must be lowercase"
    );
    let df = ast::parse("Dockerfile", "FROM a AS build\nFROM Build\n").unwrap();
    let e = plan(&df, &options(&[], None)).unwrap_err();
    assert_eq!(
        e.expected.as_deref(),
        Some("the stage name as declared, in lowercase: FROM build")
    );
    assert_eq!(
        error("ARG IMG\nFROM $IMG\n"),
        "Dockerfile:2:6: base name ($IMG) should not be blank"
    );
    assert_eq!(
        error("FROM a:b:c\n"),
        "Dockerfile:1:6: failed to parse stage name \"a:b:c\": invalid reference format"
    );
    assert_eq!(
        error("FROM ${X:?required}\n"),
        "Dockerfile:1:6: X: required"
    );
    let p = plan_of(
        "FROM localhost:5000/team/app:1@sha256:0123456789012345678901234567890123456789012345678901234567890123\n",
    );
    assert_eq!(
        p.external_images,
        vec![
            "localhost:5000/team/app:1@sha256:0123456789012345678901234567890123456789012345678901234567890123"
        ]
    );
    // a FROM naming a later stage is an image, as in BuildKit, with a warning
    let p = plan_of("FROM later AS first\nFROM busybox AS later\n");
    assert_eq!(
        p.stages[0].base,
        Base::Image {
            reference: "docker.io/library/later:latest".into()
        }
    );
    assert!(p.warnings.iter().any(|w| w.rule == "FromLaterStage"));
    assert_eq!(
        error("FROM --platform=$NOPE a\n"),
        "Dockerfile:1:17: empty platform value from expression $NOPE"
    );
    assert_eq!(
        error("FROM --platform=bogus a\n"),
        "Dockerfile:1:17: failed to parse platform bogus: \"bogus\": unknown operating system or architecture: invalid argument"
    );
}

#[test]
fn values_are_validated_after_expansion() {
    assert_eq!(
        error("FROM a\nARG M=999\nCOPY --chmod=$M x y\n"),
        "Dockerfile:3:14: invalid chmod parameter: '999'. it should be octal string and between 0 and 07777"
    );
    assert_eq!(
        error("FROM a\nEXPOSE 80/xyz\n"),
        "Dockerfile:2:8: invalid proto: xyz"
    );
    assert_eq!(
        error("FROM a\nEXPOSE 99999\n"),
        "Dockerfile:2:8: invalid containerPort: 99999"
    );
    assert_eq!(
        error("FROM a\nSTOPSIGNAL SIGBOGUS\n"),
        "Dockerfile:2:12: invalid signal: SIGBOGUS"
    );
    assert_eq!(
        error("FROM a\nCOPY http://x/y /z\n"),
        "Dockerfile:2:6: source can't be a URL for COPY"
    );
    assert_eq!(
        error("FROM a\nADD --checksum=sha256:abc a b /c\n"),
        "Dockerfile:2:16: checksum can't be specified for multiple sources"
    );
    assert_eq!(
        error("FROM a\nADD --checksum=sha256:abc a /c\n"),
        "Dockerfile:2:16: checksum requires HTTP(S) or Git sources"
    );
    assert!(
        error("FROM a\nADD --checksum=sha256:abc https://x/y /c\n")
            .contains("invalid checksum digest")
    );
    assert_eq!(
        error("FROM a\nADD --checksum=abc https://x/y.git?checksum=abd /c\n"),
        "Dockerfile:2:16: checksum mismatch \"abc\" != \"abd\""
    );
    assert_eq!(
        error("FROM a\nADD git://h/r?bogus=1 /c\n"),
        "Dockerfile:2:5: unexpected query \"bogus\""
    );
    assert_eq!(
        error("FROM a\nCOPY git@h:r.git /c\n"),
        "Dockerfile:2:6: source can't be a git ref for COPY"
    );
    assert_eq!(
        error("FROM a\nRUN --mount=type=bogus x\n"),
        "Dockerfile:2:13: unsupported mount type \"bogus\""
    );
    assert_eq!(
        error("FROM a\nARG T=bogus\nRUN --mount=type=$T x\n"),
        "Dockerfile:3:13: unsupported mount type \"bogus\""
    );
    assert_eq!(
        error("FROM a\nENV A=${B:?required}\n"),
        "Dockerfile:2:7: B: required"
    );
    assert_eq!(
        error("FROM a\nWORKDIR ${oops\n"),
        "Dockerfile:2:9: syntax error: missing '}'"
    );
}

#[test]
fn expose_splits_words_and_canonicalises() {
    let p = plan_of("FROM a\nENV PORTS=\"8080 9090/udp\"\nEXPOSE $PORTS 80 8000-8001\n");
    let StepKind::Expose { ports } = &steps(&p)[1].kind else {
        panic!()
    };
    assert_eq!(
        ports,
        &vec!["80/tcp", "8000/tcp", "8001/tcp", "8080/tcp", "9090/udp"]
    );
}

#[test]
fn copy_and_add_expand_their_words() {
    let p = plan_of(
        "FROM a\nARG SRC=app DEST=/opt OWNER=1000 MODE=u+x\nWORKDIR /w\nCOPY --chown=$OWNER --chmod=$MODE --exclude=*.$SRC ${SRC}/ $DEST/\nCOPY <<EOF <<'RAW' rel/\nv=$SRC\nEOF\nv=$SRC\nRAW\nADD --unpack=true --checksum=sha256:0123456789012345678901234567890123456789012345678901234567890123 https://example.com/x.tgz /x\n",
    );
    let s = steps(&p);
    let c = copy(&s[2]);
    assert_eq!(c.sources, vec!["app/"]);
    assert_eq!(c.dest, "/opt/");
    assert_eq!(c.chown.as_deref(), Some("1000"));
    assert_eq!(c.chmod.as_ref().unwrap().to_string(), "u+x");
    assert_eq!(c.excludes, vec!["*.app"]);
    assert_eq!(c.workdir, "/w");
    let c = copy(&s[3]);
    assert_eq!(c.inline[0].content, "v=app\n");
    assert_eq!(c.inline[1].content, "v=$SRC\n");
    let c = copy(&s[4]);
    assert!(c.is_add);
    assert_eq!(c.unpack, Some(true));
}

#[test]
fn run_commands_use_the_shell_and_heredocs() {
    let p = plan_of(
        "FROM a\nRUN echo $HOME\nSHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]\nRUN echo two\nRUN [\"ls\", \"-l\"]\nRUN <<EOF\necho a\nEOF\nCMD run me\nENTRYPOINT [\"tini\"]\n",
    );
    let argv = |i: usize| match &steps(&p)[i].kind {
        StepKind::Run { argv, .. } | StepKind::Cmd { argv } | StepKind::Entrypoint { argv } => {
            argv.clone()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(argv(0), vec!["/bin/sh", "-c", "echo $HOME"]);
    assert_eq!(
        argv(2),
        vec!["/bin/bash", "-o", "pipefail", "-c", "echo two"]
    );
    assert_eq!(argv(3), vec!["ls", "-l"]);
    assert_eq!(
        argv(4),
        vec!["/bin/bash", "-o", "pipefail", "-c", "echo a\n"]
    );
    assert_eq!(argv(5), vec!["/bin/bash", "-o", "pipefail", "-c", "run me"]);
    assert_eq!(argv(6), vec!["tini"]);
    // bare CMD/ENTRYPOINT are shell forms of nothing; exec [] is empty
    let p = plan_of("FROM a\nCMD\nENTRYPOINT\nENTRYPOINT []\nCMD []\n");
    let argvs: Vec<Vec<String>> = steps(&p)
        .iter()
        .map(|s| match &s.kind {
            StepKind::Cmd { argv } | StepKind::Entrypoint { argv } => argv.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    let sh = vec!["/bin/sh".to_owned(), "-c".to_owned(), String::new()];
    assert_eq!(argvs, vec![sh.clone(), sh, vec![], vec![]]);
}

#[test]
fn json_followed_by_text_is_the_shell_form() {
    // json.Unmarshal takes nothing after the array but whitespace
    let p = plan_of(
        "FROM a\nRUN [\"echo\", \"hello\"]this is invalid\nENTRYPOINT []random string\nCMD [\"a\", 1] x\nVOLUME [\"/v\"] /w\nRUN [\"true\"] \t\n",
    );
    let argv = |i: usize| match &steps(&p)[i].kind {
        StepKind::Run { argv, .. } | StepKind::Cmd { argv } | StepKind::Entrypoint { argv } => {
            argv.clone()
        }
        StepKind::Volume { paths } => paths.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        argv(0),
        vec!["/bin/sh", "-c", "[\"echo\", \"hello\"]this is invalid"]
    );
    assert_eq!(argv(1), vec!["/bin/sh", "-c", "[]random string"]);
    // not an error: Go rejects the syntax of the whole input first
    assert_eq!(argv(2), vec!["/bin/sh", "-c", "[\"a\", 1] x"]);
    // words, then expanded (quotes removed) as every VOLUME path is
    assert_eq!(argv(3), vec!["[/v]", "/w"]);
    assert_eq!(argv(4), vec!["true"]);
}

#[test]
fn step_names_expand_as_buildkit_names_its_operations() {
    let p = plan_of(
        "FROM a\nARG SRC=src\nENV DIR=/dst TOKEN=visible\nCOPY $SRC \"$DIR/x\"\nadd --chown=$NOPE ${SRC}.tar /\nWORKDIR $DIR/w\nRUN --mount=type=secret,id=tok,env=TOKEN echo \"$SRC\" $NOPE ${NOPE} $TOKEN\nrun echo hi\nRUN <<EOF\necho $SRC\nmore\nEOF\nRUN <<EOF\n  one line  \nEOF\nENV X=$SRC\n",
    );
    // the variables the steps run with (the builder passes its own)
    let env = Environment::from_strings(&["SRC=src", "DIR=/dst", "TOKEN=visible"]);
    let names: Vec<String> = steps(&p).iter().map(|s| s.name('\\', &env)).collect();
    assert_eq!(
        names,
        vec![
            "ARG SRC=src",
            "ENV DIR=/dst TOKEN=visible",
            // COPY/ADD/WORKDIR: expanded as their arguments are
            "COPY src /dst/x",
            "ADD --chown= src.tar /",
            "WORKDIR /dst/w",
            // RUN: quotes kept, unset variables as written, env secrets masked
            "RUN --mount=type=secret,id=tok,env=TOKEN echo \"src\" $NOPE ${NOPE} ****",
            "RUN echo hi",
            // a single heredoc: its first line, expanded too
            "RUN <<EOF (echo src...)",
            "RUN <<EOF (one line)",
            // not an operation: as written
            "ENV X=$SRC",
        ]
    );
    // a failing expansion leaves the text as written
    let p = plan_of("FROM a\nWORKDIR /w\nRUN echo ${X:?unset}\n");
    assert_eq!(steps(&p)[1].name('\\', &env), "RUN echo ${X:?unset}");
    // the escape character of the Dockerfile
    let p = plan_of("# escape=`\nFROM a\nCOPY `$SRC $SRC\\x /\n");
    assert_eq!(p.escape, '`');
    assert_eq!(steps(&p)[0].name(p.escape, &env), "COPY $SRC src\\x /");
}

#[test]
fn run_mounts_are_expanded() {
    let p = plan_of(
        "FROM a AS tools\nFROM b\nARG CACHE=/root/.cache\nRUN --mount=type=cache,target=$CACHE,id=c1 --mount=from=tools,target=/t --network=none true\n",
    );
    let StepKind::Run {
        mounts, network, ..
    } = &steps(&p)[1].kind
    else {
        panic!()
    };
    assert_eq!(mounts[0].mount.target.as_deref(), Some("/root/.cache"));
    assert_eq!(mounts[0].mount.cache_id.as_deref(), Some("c1"));
    assert_eq!(mounts[1].source, Some(Source::Stage { index: 0 }));
    assert_eq!(*network, NetworkMode::None);
}

#[test]
fn workdir_user_volume_stopsignal() {
    let p = plan_of(
        "FROM a\nWORKDIR app\nWORKDIR ../lib\nENV U=nobody\nUSER $U:$U\nVOLUME [\"/data\", \"$U\"]\nSTOPSIGNAL ${SIG:-SIGQUIT}\n",
    );
    let s = steps(&p);
    assert_eq!(workdir(&s[0]), "/app");
    assert_eq!(workdir(&s[1]), "/lib");
    assert!(matches!(&s[3].kind, StepKind::User { user } if user == "nobody:nobody"));
    assert!(
        matches!(&s[4].kind, StepKind::Volume { paths } if paths == &vec!["/data".to_owned(), "nobody".to_owned()])
    );
    assert!(matches!(&s[5].kind, StepKind::Stopsignal { signal } if signal == "SIGQUIT"));
}

#[test]
fn onbuild_triggers_of_a_base_stage_run_first() {
    let text = "FROM a AS base\nONBUILD RUN echo trigger\nONBUILD COPY --from=tools /t /t\nFROM b AS tools\nFROM base AS app\nRUN echo app\nFROM app\n";
    let p = plan_with(text, &options(&[], Some("app")));
    let app = &p.stages[2];
    assert!(app.steps[0].onbuild && app.steps[1].onbuild);
    assert!(!app.steps[2].onbuild);
    assert!(
        app.dependencies
            .iter()
            .any(|d| d.onbuild && d.source == Source::Stage { index: 1 })
    );
    assert_eq!(p.build_order, vec![0, 1, 2]);
    // grandchildren do not run them again
    let p = plan_of(text);
    assert!(p.stages[3].steps.is_empty());
}

struct Configs;

impl BaseImages for Configs {
    fn config(&self, reference: &str) -> Option<BaseConfig> {
        (reference == "docker.io/library/golang:1").then(|| BaseConfig {
            env: vec!["GOPATH=/go".into(), "PATH=/go/bin:/usr/bin".into()],
            working_dir: "/go".into(),
            user: "gopher".into(),
            shell: vec![],
            on_build: vec!["RUN echo from-image".into()],
        })
    }
}

#[test]
fn base_image_configs_feed_expansion_and_triggers() {
    let mut o = options(&[], None);
    o.base_images = Some(&Configs);
    let p = plan_with(
        "FROM golang:1\nWORKDIR src\nENV P=$PATH G=$GOPATH\nRUN x\n",
        &o,
    );
    let s = steps(&p);
    assert!(s[0].onbuild);
    assert_eq!(workdir(&s[1]), "/go/src");
    assert_eq!(
        env_pairs(&s[2]),
        vec![pair("P", "/go/bin:/usr/bin"), pair("G", "/go")]
    );
    let StepKind::Run { user, workdir, .. } = &s[3].kind else {
        panic!()
    };
    assert_eq!((user.as_str(), workdir.as_str()), ("gopher", "/go/src"));
}

#[test]
fn undefined_variables_are_warned() {
    let p = plan_of("FROM scratch\nARG DECLARED\nENV A=$NOPE B=$DECLARED\n");
    let undefined: Vec<_> = p
        .warnings
        .iter()
        .filter(|w| w.rule == "UndefinedVar")
        .map(|w| w.message.clone())
        .collect();
    assert_eq!(undefined, vec!["Usage of undefined variable '$NOPE'"]);
    // with an unknown base image environment nothing is claimed
    let p = plan_of("FROM alpine\nENV A=$NOPE\n");
    assert!(p.warnings.iter().all(|w| w.rule != "UndefinedVar"));
}

fn with_contexts(contexts: &[(&str, NamedContext)]) -> PlanOptions<'static> {
    let mut options = options(&[], None);
    options.contexts = contexts
        .iter()
        .map(|(name, c)| ((*name).to_owned(), c.clone()))
        .collect();
    options
}

fn image(reference: &str) -> NamedContext {
    NamedContext::Image {
        reference: reference.to_owned(),
    }
}

#[test]
fn context_names_are_normalised_as_buildx_does() {
    assert_eq!(context_name("alpine").unwrap(), "alpine");
    assert_eq!(context_name("alpine:latest").unwrap(), "alpine");
    assert_eq!(context_name("docker.io/library/alpine").unwrap(), "alpine");
    assert_eq!(context_name("alpine:3.20").unwrap(), "alpine:3.20");
    assert_eq!(context_name("ghcr.io/a/b:latest").unwrap(), "ghcr.io/a/b");
    assert!(context_name("Alpine").is_err());
    assert!(context_name("").is_err());
}

#[test]
fn a_named_context_replaces_an_image_reference() {
    let options = with_contexts(&[
        ("alpine", image("docker.io/library/busybox:latest")),
        ("src", NamedContext::Local),
    ]);
    let plan = plan_with(
        "FROM docker.io/library/alpine:latest AS a\n\
         COPY --from=src /x /x\n\
         RUN --mount=type=bind,from=src,target=/s true\n\
         COPY --from=alpine /y /y\n\
         FROM alpine:3.20\n\
         FROM src\n\
         COPY --from=scratch / /\n",
        &options,
    );
    assert_eq!(
        plan.stages[0].base,
        Base::Image {
            reference: "docker.io/library/busybox:latest".to_owned()
        }
    );
    let sources: Vec<&Source> = plan.stages[0]
        .dependencies
        .iter()
        .map(|d| &d.source)
        .collect();
    let src = Source::Context {
        name: "src".to_owned(),
    };
    let busybox = Source::Image {
        reference: "docker.io/library/busybox:latest".to_owned(),
    };
    assert_eq!(sources, [&src, &src, &busybox]);
    // `alpine:3.20` is not the context `alpine`.
    assert_eq!(
        plan.stages[1].base,
        Base::Image {
            reference: "docker.io/library/alpine:3.20".to_owned()
        }
    );
    assert_eq!(
        plan.stages[2].base,
        Base::Context {
            name: "src".to_owned()
        }
    );
    assert_eq!(plan.stages[2].dependencies[0].source, Source::Scratch);
    assert!(plan.stages.iter().all(|s| s.context.is_none()));
}

#[test]
fn a_named_context_replaces_a_stage_of_its_name() {
    let options = with_contexts(&[("build", NamedContext::Local), ("tools", image("t:1"))]);
    let plan = plan_with(
        "FROM busybox AS build\n\
         RUN exit 1\n\
         COPY --from=other / /\n\
         FROM alpine AS tools\n\
         ONBUILD RUN x\n\
         FROM tools\n\
         COPY --from=build /out /out\n",
        &options,
    );
    let build = &plan.stages[0];
    assert_eq!(build.context.as_deref(), Some("build"));
    assert_eq!(
        build.base,
        Base::Context {
            name: "build".to_owned()
        }
    );
    assert!(build.steps.is_empty());
    assert!(
        build.dependencies.is_empty(),
        "its instructions are not run"
    );
    assert_eq!(plan.stages[1].context.as_deref(), Some("tools"));
    assert_eq!(
        plan.stages[1].base,
        Base::Image {
            reference: "t:1".to_owned()
        }
    );
    // Later stages still use the stages, which are now the contexts.
    assert_eq!(plan.stages[2].base, Base::Stage { index: 1 });
    // As in BuildKit, a stage built on a replaced stage still runs the
    // ONBUILD triggers written in it (`dispatchState.base.commands`).
    assert_eq!(steps(&plan).len(), 2);
    assert_eq!(
        plan.stages[2].dependencies.last().map(|d| &d.source),
        Some(&Source::Stage { index: 0 })
    );
    // busybox and alpine are never needed.
    assert_eq!(plan.external_images, ["t:1"]);
}

#[test]
fn scratch_and_context_are_never_named_contexts() {
    let options = with_contexts(&[("scratch", image("x:1")), ("context", image("y:1"))]);
    let plan = plan_with("FROM scratch\nCOPY --from=context / /\n", &options);
    assert_eq!(plan.stages[0].base, Base::Scratch);
    assert_eq!(
        plan.stages[0].dependencies[0].source,
        Source::Image {
            reference: "docker.io/library/context:latest".to_owned()
        }
    );
}
