//! The keys the engine gives a small Dockerfile's steps, computed as the
//! step implementations compute them, without running anything.

use std::collections::BTreeMap;

use kiln_parser::plan::{PlanOptions, StepKind, plan_dockerfile};
use kiln_parser::values::Platform;
use kiln_runtime::Network;

use super::files::{absolute_dest, copy_op};
use super::{config, run, scratch_state};
use crate::ops::{MkdirOp, Op};

/// Each filesystem step's instruction, canonical operation and key, for
/// `dockerfile` (on scratch for linux/amd64, whatever this machine is)
/// with `args`; COPY sources have the content digest `sources`.
fn operations(
    dockerfile: &str,
    args: &[(&str, &str)],
    sources: &str,
) -> Vec<(String, String, String)> {
    operations_for("linux/amd64", dockerfile, args, sources)
}

fn operations_for(
    platform: &str,
    dockerfile: &str,
    args: &[(&str, &str)],
    sources: &str,
) -> Vec<(String, String, String)> {
    let options = PlanOptions {
        build_args: args
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        ..PlanOptions::default()
    };
    let (_, plan) = plan_dockerfile("Dockerfile", dockerfile, &options).unwrap();
    let planned = &plan.stages[plan.target];
    let mut state = scratch_state(&Platform::parse(platform).unwrap());
    let digest = kiln_store::digest::digest_bytes(sources.as_bytes());
    let mut out = Vec::new();
    for step in &planned.steps {
        let op = match &step.kind {
            StepKind::Run { .. } => {
                run::run_op(&state, step, Network::Isolated, Vec::new()).unwrap()
            }
            StepKind::Workdir { path } => {
                let config = state.config.config.get_or_insert_with(Default::default);
                config.working_dir = Some(path.clone());
                Op::Mkdir(MkdirOp {
                    parent: state.key.clone(),
                    path: path.clone(),
                    user: config.user.clone().unwrap_or_default(),
                })
            }
            StepKind::Copy(fc) => Op::Copy(copy_op(
                &state,
                &absolute_dest(fc),
                fc,
                &fc.sources,
                false,
                Vec::new(),
                Some(&digest),
            )),
            _ => {
                config::apply_metadata(&mut state, step, "2026-01-01T00:00:00Z");
                continue;
            }
        };
        let key = op.key().unwrap();
        state.key.clone_from(&key);
        out.push((step.code.clone(), op.canonical().unwrap(), key));
    }
    out
}

const DOCKERFILE: &str =
    "FROM scratch\nWORKDIR /app\nCOPY a.txt ./\nARG VERSION=1.2\nRUN make\nRUN echo $VERSION\n";

#[test]
fn golden_operations_and_keys_of_a_small_dockerfile() {
    let ops = operations(DOCKERFILE, &[], "a.txt v1");
    let expected = GOLDEN;
    let got: Vec<(&str, &str, &str)> = ops
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    for (i, (got, want)) in got.iter().zip(expected).enumerate() {
        assert_eq!(got, want, "step {i}");
    }
    assert_eq!(got.len(), expected.len());
}

/// Recorded from the first run and read through: a change here changes
/// every key in every store, so it needs a new [`crate::ops::OP_VERSION`].
const GOLDEN: &[(&str, &str, &str)] = &[
    (
        "WORKDIR /app",
        r#"{"op":"mkdir","parent":"scratch","path":"/app","user":""}"#,
        "sha256:6099aa70d82f9f7953d9a3f9851eaf8e4015eaafe5d74327e32f01983b9f1344",
    ),
    (
        "COPY a.txt ./",
        r#"{"add":false,"checksum":null,"chmod":null,"chown":null,"dest":"/app/./","excludes":[],"from_stage":false,"inline":[],"link":false,"op":"copy","parent":"sha256:6099aa70d82f9f7953d9a3f9851eaf8e4015eaafe5d74327e32f01983b9f1344","parents":false,"sources":["a.txt"],"sources_digest":"sha256:ca84ee154bf2c9e94069f2b35d31ad0f536d7615c0241c8dbebfbb37218ab9b4","unpack":null,"urls":[]}"#,
        "sha256:f90015bfac575eaf4e82edbc7b20cad05f21b33bb03eebf8d528b9f0ff4f2a77",
    ),
    (
        "RUN make",
        r#"{"argv":["/bin/sh","-c","make"],"env":[["PATH","/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],["VERSION","1.2"]],"mounts":[],"network":"isolated","op":"run","parent":"sha256:f90015bfac575eaf4e82edbc7b20cad05f21b33bb03eebf8d528b9f0ff4f2a77","platform":"linux/amd64","script":null,"security":"sandbox","user":"","workdir":"/app"}"#,
        "sha256:e4f4edada9284ac961b29b0c706f49451a3625e8a9d68fd5a7265f5c0d2803c1",
    ),
    (
        "RUN echo $VERSION",
        r#"{"argv":["/bin/sh","-c","echo $VERSION"],"env":[["PATH","/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],["VERSION","1.2"]],"mounts":[],"network":"isolated","op":"run","parent":"sha256:e4f4edada9284ac961b29b0c706f49451a3625e8a9d68fd5a7265f5c0d2803c1","platform":"linux/amd64","script":null,"security":"sandbox","user":"","workdir":"/app"}"#,
        "sha256:d7aa237d40bf18e877a9731d792ab827e351eb043a21a9a070d1d13c563da8ea",
    ),
];

#[test]
fn a_build_arg_changes_the_keys_from_the_first_run_that_sees_it() {
    let before = operations(DOCKERFILE, &[], "a.txt v1");
    let after = operations(DOCKERFILE, &[("VERSION", "1.3")], "a.txt v1");
    let keys =
        |ops: &[(String, String, String)]| ops.iter().map(|o| o.2.clone()).collect::<Vec<_>>();
    let (before, after) = (keys(&before), keys(&after));
    // WORKDIR and COPY come before the ARG: unchanged.
    assert_eq!(before[..2], after[..2]);
    // Both RUNs see VERSION in their environment, as under BuildKit.
    assert_ne!(before[2], after[2]);
    assert_ne!(before[3], after[3]);
}

#[test]
fn a_build_arg_declared_late_leaves_every_earlier_key_alone() {
    let dockerfile =
        "FROM scratch\nRUN make\nCOPY a.txt /\nARG VERSION=1.2\nRUN echo $VERSION\nRUN ls\n";
    let before = operations(dockerfile, &[], "x");
    let after = operations(dockerfile, &[("VERSION", "1.3")], "x");
    let changed: Vec<bool> = before.iter().zip(&after).map(|(b, a)| b.2 != a.2).collect();
    assert_eq!(changed, [false, false, true, true]);
}

#[test]
fn changed_sources_change_the_copy_and_what_follows_only() {
    let before = operations(DOCKERFILE, &[], "a.txt v1");
    let after = operations(DOCKERFILE, &[], "a.txt v2");
    let changed: Vec<bool> = before.iter().zip(&after).map(|(b, a)| b.2 != a.2).collect();
    assert_eq!(changed, [false, true, true, true]);
}

#[test]
fn the_platform_changes_the_runs_and_not_the_file_operations() {
    let amd64 = operations(DOCKERFILE, &[], "a.txt v1");
    let arm64 = operations_for("linux/arm64", DOCKERFILE, &[], "a.txt v1");
    let changed: Vec<bool> = amd64.iter().zip(&arm64).map(|(b, a)| b.2 != a.2).collect();
    // WORKDIR and COPY write the same files for any platform; the RUNs
    // run other binaries.
    assert_eq!(changed, [false, false, true, true]);
    assert!(arm64[2].1.contains(r#""platform":"linux/arm64""#));
    let v7 = operations_for("linux/arm/v7", DOCKERFILE, &[], "a.txt v1");
    assert!(v7[2].1.contains(r#""platform":"linux/arm/v7""#));
}

#[test]
fn keys_hold_no_path_of_the_machine() {
    let ops = operations(DOCKERFILE, &[("VERSION", "1.3")], "a.txt v1");
    let home = std::env::var("HOME").unwrap_or_default();
    let cwd = std::env::current_dir().unwrap();
    for (_, canonical, _) in &ops {
        for path in [
            cwd.to_string_lossy().as_ref(),
            "/tmp/",
            "/work/",
            "/var/lib/kiln",
        ] {
            assert!(!canonical.contains(path), "{path} in {canonical}");
        }
        assert!(
            home.len() < 2 || !canonical.contains(&home),
            "{home} in {canonical}"
        );
    }
}
