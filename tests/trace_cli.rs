//! `kiln build --trace FILE` end to end as root: the Chrome trace-event
//! file of a two-stage build whose stages run side by side, of a cached
//! rebuild, of a failed build, and a path that cannot be written.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test harness fails loudly"
)]

mod common;

use std::fs;
use std::path::Path;

use common::build::{build_fails, build_ok, busybox, context};
use serde_json::Value;

/// The trace's events.
fn events(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).expect("the trace is written");
    let trace: Value = serde_json::from_str(&text).expect("the trace is JSON");
    trace["traceEvents"]
        .as_array()
        .expect("traceEvents")
        .clone()
}

fn complete<'a>(events: &'a [Value], cat: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["ph"] == "X" && e["cat"] == cat)
        .collect()
}

/// The one step event named `name`.
fn step<'a>(events: &'a [Value], name: &str) -> &'a Value {
    let found: Vec<&Value> = complete(events, "step")
        .into_iter()
        .filter(|e| e["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "one step {name:?} in {events:#?}");
    found[0]
}

/// Start and end in microseconds.
fn span(event: &Value) -> (u64, u64) {
    let ts = event["ts"].as_u64().unwrap();
    (ts, ts + event["dur"].as_u64().unwrap())
}

/// The row named after `stage`.
fn thread(events: &[Value], stage: &str) -> u64 {
    events
        .iter()
        .find(|e| e["ph"] == "M" && e["name"] == "thread_name" && e["args"]["name"] == stage)
        .and_then(|e| e["tid"].as_u64())
        .unwrap_or_else(|| panic!("no row named {stage}"))
}

const PARALLEL: &str = "\
FROM bb:1 AS left
RUN sleep 1 && echo l > /l
FROM bb:1 AS right
RUN sleep 1 && echo r > /r
FROM bb:1 AS final
COPY --from=left /l /l
COPY --from=right /r /r
";

#[test]
fn trace_shows_parallel_stages_steps_and_phases() {
    if !kiln_testkit::root("kiln build mounts overlays") {
        return;
    }
    let kiln = busybox();
    let dir = context(&kiln, "parallel", PARALLEL, &[]);
    let first = kiln.path("first.json");
    build_ok(&kiln, &dir, "par:1", &["--trace", first.to_str().unwrap()]);
    let events = events(&first);

    // One complete event per step, named as progress names it.
    let names: Vec<&str> = complete(&events, "step")
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 7, "{names:?}");
    let left_run = step(&events, "RUN sleep 1 && echo l > /l");
    let right_run = step(&events, "RUN sleep 1 && echo r > /r");
    step(&events, "COPY --from=left /l /l");
    step(&events, "COPY --from=right /r /r");
    assert_eq!(left_run["args"]["cached"], false);
    assert_eq!(left_run["args"]["stage"], "left");

    // Rows named after the stages; the two RUN stages on rows of their
    // own, at the same time.
    let mut rows: Vec<&str> = events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name" && e["tid"] != 0)
        .map(|e| e["args"]["name"].as_str().unwrap())
        .collect();
    rows.sort_unstable();
    assert_eq!(rows, ["final", "left", "right"]);
    let (left, right) = (thread(&events, "left"), thread(&events, "right"));
    assert_ne!(left, right);
    assert_eq!(left_run["tid"], left);
    assert_eq!(right_run["tid"], right);
    let stage = |name: &str| {
        *complete(&events, "stage")
            .iter()
            .find(|e| e["name"] == name)
            .unwrap()
    };
    let (l, r) = (span(stage("left")), span(stage("right")));
    assert!(l.0 < r.1 && r.0 < l.1, "stages overlap: {l:?} {r:?}");
    let (l, r) = (span(left_run), span(right_run));
    assert!(l.0 < r.1 && r.0 < l.1, "RUN steps overlap: {l:?} {r:?}");

    // RUN and layer packing inside their step's time, on its row.
    for run in [left_run, right_run] {
        let (start, end) = span(run);
        for phase in [
            "cache lookup",
            "mounts",
            "run",
            "pack layer",
            "commit snapshot",
        ] {
            let found: Vec<&Value> = complete(&events, "phase")
                .into_iter()
                .filter(|e| e["name"] == phase && e["args"]["step"] == run["name"])
                .collect();
            assert_eq!(found.len(), 1, "{phase} of {}", run["name"]);
            let (a, b) = span(found[0]);
            assert!(start <= a && b <= end, "{phase} {a}..{b} in {start}..{end}");
            assert_eq!(found[0]["tid"], run["tid"]);
        }
    }
    // The RUN itself is most of its step (it sleeps 1 s).
    let run_phase = complete(&events, "phase")
        .into_iter()
        .find(|e| e["name"] == "run")
        .unwrap();
    assert!(run_phase["dur"].as_u64().unwrap() >= 1_000_000);
    // Work of the whole build on the build's row.
    for phase in ["plan", "resolve base images", "export image"] {
        let found = complete(&events, "phase")
            .into_iter()
            .find(|e| e["name"] == phase)
            .unwrap_or_else(|| panic!("no {phase}"));
        assert_eq!(found["tid"], 0);
    }

    // A rebuild: every step after FROM cached, and marked so.
    let second = kiln.path("second.json");
    build_ok(&kiln, &dir, "par:1", &["--trace", second.to_str().unwrap()]);
    let events = self::events(&second);
    for e in complete(&events, "step") {
        let from = e["name"].as_str().unwrap().starts_with("FROM ");
        assert_eq!(e["args"]["cached"], !from, "{e}");
    }
    assert!(
        complete(&events, "phase")
            .iter()
            .all(|e| e["name"] != "run"),
        "nothing ran"
    );
    // No temporary file is left beside the traces.
    let mut left_over: Vec<String> = fs::read_dir(kiln.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".json."))
        .collect();
    left_over.sort();
    assert!(left_over.is_empty(), "{left_over:?}");
}

#[test]
fn a_failed_build_still_writes_its_trace() {
    if !kiln_testkit::root("kiln build mounts overlays") {
        return;
    }
    let kiln = busybox();
    let dir = context(
        &kiln,
        "fails",
        "FROM bb:1 AS broken\nRUN echo before > /b\nRUN exit 3\nRUN echo never\n",
        &[],
    );
    let path = kiln.path("failed.json");
    let stderr = build_fails(&kiln, &dir, &["--trace", path.to_str().unwrap()]);
    assert!(stderr.contains("exit code: 3"), "{stderr}");
    let events = events(&path);
    let before = step(&events, "RUN echo before > /b");
    assert_eq!(before["args"]["cached"], false);
    let failed = step(&events, "RUN exit 3");
    assert!(
        failed["args"]["error"]
            .as_str()
            .unwrap()
            .contains("exit code: 3"),
        "{failed}"
    );
    assert!(
        complete(&events, "step")
            .iter()
            .all(|e| e["name"] != "RUN echo never")
    );
    assert_eq!(
        complete(&events, "build")[0]["args"]["failed"],
        true,
        "{events:#?}"
    );
}

#[test]
fn a_trace_path_that_cannot_be_written_fails_before_the_build() {
    if !kiln_testkit::root("kiln build mounts overlays") {
        return;
    }
    let kiln = busybox();
    let dir = context(&kiln, "bad", "FROM bb:1\nRUN echo ran > /ran\n", &[]);
    let path = kiln.path("no-such-dir/trace.json");
    let stderr = build_fails(
        &kiln,
        &dir,
        &["-t", "bad:1", "--trace", path.to_str().unwrap()],
    );
    assert!(
        stderr.contains(&format!("cannot write --trace {}", path.display())),
        "{stderr}"
    );
    assert!(stderr.contains("No such file or directory"), "{stderr}");
    // Nothing was built.
    assert!(!stderr.contains("#1 "), "{stderr}");
    assert!(!kiln.run(&["inspect", "bad:1"]).status.success());
    // `--trace` belongs to `kiln build` only.
    let output = kiln.run(&["run", "--trace", "x.json", "bb:1", "true"]);
    assert!(!output.status.success());
}
