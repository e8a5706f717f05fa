//! Parse time of a generated 10,000-line Dockerfile, per phase: text to
//! AST, AST to typed stages, and the full plan (expansion and graph).
//!
//! Run: `cargo bench -p kiln-parser --bench parse`.
#![expect(clippy::unwrap_used, reason = "benchmark setup fails loudly")]

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_main};
use kiln_parser::{ast, instructions, plan};

/// A realistic multi-stage Dockerfile of at least `lines` lines: global
/// ARGs, then stages with ARG/ENV/LABEL, continued RUNs, heredocs, COPY
/// --from earlier stages, mounts, HEALTHCHECK and comments.
fn generate(lines: usize) -> String {
    let mut out =
        String::from("# syntax=docker/dockerfile:1\nARG BASE=debian:bookworm\nARG VERSION=1.2.3\n");
    let mut stage = 0;
    while out.lines().count() < lines {
        let from = if stage == 0 {
            "${BASE}".to_owned()
        } else {
            format!("stage{}", stage - 1)
        };
        let _ = write!(
            out,
            "\n# stage {stage}\nFROM {from} AS stage{stage}\nARG VERSION\nARG JOBS=4\nENV APP_HOME=/opt/app{stage} PATH=/opt/app{stage}/bin:$PATH\nLABEL org.example.stage=\"{stage}\" org.example.version=$VERSION\nWORKDIR $APP_HOME\n"
        );
        for step in 0..20 {
            let _ = write!(
                out,
                "RUN --mount=type=cache,target=/root/.cache/{step} \\\n    set -eux; \\\n    echo \"building {stage}.{step} with $JOBS jobs\" \\\n    && make -j\"$JOBS\" target{step} \\\n    && rm -rf /tmp/*\nCOPY --chown=1000:1000 --chmod=644 src/{step}/ ${{APP_HOME}}/src/{step}/\nENV STEP{step}=\"value {step}\" LAST=${{STEP{step}:-none}}\n"
            );
        }
        if stage > 0 {
            let _ = writeln!(out, "COPY --from=stage{} /opt /opt", stage - 1);
        }
        let _ = write!(
            out,
            "RUN <<EOF\nset -e\necho stage {stage}\nEOF\nEXPOSE 80{stage:02}/tcp\nHEALTHCHECK --interval=30s --timeout=3s CMD [\"/bin/check\", \"{stage}\"]\nCMD [\"/opt/app/bin/run\"]\n"
        );
        stage += 1;
    }
    out
}

/// Times each phase on the generated file.
fn bench(c: &mut Criterion) {
    let text = generate(10_000);
    let lines = text.lines().count();
    let mut group = c.benchmark_group(format!("parse_{lines}_lines"));
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("ast", |b| {
        b.iter(|| ast::parse("Dockerfile", black_box(&text)).unwrap());
    });
    let df = ast::parse("Dockerfile", &text).unwrap();
    group.bench_function("stages", |b| {
        b.iter(|| instructions::parse_stages(black_box(&df)).unwrap());
    });
    let options = plan::PlanOptions::default();
    group.bench_function("plan", |b| {
        b.iter(|| plan::plan(black_box(&df), &options).unwrap());
    });
    group.bench_function("all", |b| {
        b.iter(|| {
            let df = ast::parse("Dockerfile", black_box(&text)).unwrap();
            plan::plan(&df, &options).unwrap()
        });
    });
    group.finish();
}

// In a private module, so the undocumented function criterion's macro
// defines is not public API.
mod group {
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(group::benches);
