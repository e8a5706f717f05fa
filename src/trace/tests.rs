use std::time::Duration;

use kiln_builder::progress::{Event, Reporter as _};
use serde_json::Value;

use super::{TraceState, TraceWriter};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A two-stage build: `a` (index 0) and `b` (index 1) side by side.
fn sample() -> TraceState {
    let mut state = TraceState::default();
    let events = [
        Event::StageStarted {
            index: 0,
            name: "a".to_owned(),
            at: ms(1),
        },
        Event::StageStarted {
            index: 1,
            name: "b \"quoted\"\n✓".to_owned(),
            at: ms(1),
        },
        Event::StepStarted {
            id: 2,
            stage: "a".to_owned(),
            index: 2,
            total: 2,
            name: "RUN echo \"hi\" \\ <tab>\t".to_owned(),
        },
        Event::Phase {
            step: Some(2),
            stage: None,
            name: "run".to_owned(),
            start: Duration::from_nanos(2_000_999),
            duration: Duration::from_nanos(3_000_002),
        },
        Event::StepTimed {
            id: 2,
            stage: 0,
            start: ms(2),
            duration: ms(4),
        },
        Event::StepStarted {
            id: 3,
            stage: "b".to_owned(),
            index: 2,
            total: 2,
            name: "RUN true".to_owned(),
        },
        Event::StepCached { id: 3 },
        Event::StepTimed {
            id: 3,
            stage: 1,
            start: ms(3),
            duration: ms(0),
        },
        Event::Phase {
            step: None,
            stage: None,
            name: "export image".to_owned(),
            start: ms(7),
            duration: ms(1),
        },
        Event::StageFinished {
            index: 0,
            at: ms(6),
        },
        Event::StageFinished {
            index: 1,
            at: ms(4),
        },
        Event::Finished {
            steps_run: 1,
            steps_cached: 1,
            duration: ms(9),
        },
    ];
    for event in events {
        state.record(event);
    }
    state
}

fn find<'a>(trace: &'a Value, cat: &str, name: &str) -> &'a Value {
    trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["cat"] == cat && e["name"] == name)
        .unwrap_or_else(|| panic!("no {cat} {name:?} in {trace:#}"))
}

#[test]
fn steps_and_phases_become_complete_events_in_microseconds() {
    let trace = sample().to_json();
    let run = find(&trace, "step", "RUN echo \"hi\" \\ <tab>\t");
    assert_eq!(run["ph"], "X");
    assert_eq!(run["ts"], 2000);
    assert_eq!(run["dur"], 4000);
    assert_eq!(run["pid"], 1);
    assert_eq!(run["tid"], 1);
    assert_eq!(run["args"]["cached"], false);
    assert_eq!(run["args"]["stage"], "a");
    assert_eq!(run["args"]["position"], "2/2");
    // A phase sits on its step's row; its ends are rounded down to whole
    // microseconds each, so it stays inside the step.
    let phase = find(&trace, "phase", "run");
    assert_eq!(phase["tid"], 1);
    assert_eq!(phase["ts"], 2000);
    assert_eq!(phase["dur"], 3001);
    assert_eq!(phase["args"]["step"], "RUN echo \"hi\" \\ <tab>\t");
    let cached = find(&trace, "step", "RUN true");
    assert_eq!(cached["tid"], 2);
    assert_eq!(cached["args"]["cached"], true);
    // Work of no stage is on the build's row.
    let export = find(&trace, "phase", "export image");
    assert_eq!(export["tid"], 0);
    let build = find(&trace, "build", "build");
    assert_eq!(
        (build["ts"].as_u64(), build["dur"].as_u64()),
        (Some(0), Some(9000))
    );
    assert_eq!(build["args"]["failed"], false);
}

#[test]
fn rows_are_named_after_stages() {
    let trace = sample().to_json();
    let names: Vec<(u64, String)> = trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .map(|e| {
            (
                e["tid"].as_u64().unwrap(),
                e["args"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            (0, "build".to_owned()),
            (1, "a".to_owned()),
            (2, "b \"quoted\"\n✓".to_owned())
        ]
    );
    let stage = find(&trace, "stage", "a");
    assert_eq!(
        (stage["ts"].as_u64(), stage["dur"].as_u64()),
        (Some(1000), Some(5000))
    );
}

#[test]
fn names_are_escaped_as_json() {
    let text = serde_json::to_string(&sample().to_json()).unwrap();
    assert!(
        text.contains(r#""name":"RUN echo \"hi\" \\ <tab>\t""#),
        "{text}"
    );
    assert!(text.contains(r#""name":"b \"quoted\"\n✓""#), "{text}");
    // And it reads back as the same names.
    let back: Value = serde_json::from_str(&text).unwrap();
    find(&back, "stage", "b \"quoted\"\n✓");
}

#[test]
fn a_failed_build_keeps_what_ran() {
    let mut events = TraceState::default();
    events.record(Event::StageStarted {
        index: 0,
        name: "a".to_owned(),
        at: ms(1),
    });
    events.record(Event::StepStarted {
        id: 2,
        stage: "a".to_owned(),
        index: 2,
        total: 2,
        name: "RUN false".to_owned(),
    });
    events.record(Event::StepFailed {
        id: 2,
        error: "exit code: 1".to_owned(),
    });
    events.record(Event::StepTimed {
        id: 2,
        stage: 0,
        start: ms(2),
        duration: ms(3),
    });
    let trace = events.to_json();
    let step = find(&trace, "step", "RUN false");
    assert_eq!(step["args"]["error"], "exit code: 1");
    // The stage never finished: it ends with the last thing reported.
    let stage = find(&trace, "stage", "a");
    assert_eq!(stage["dur"], 4000);
    assert_eq!(find(&trace, "build", "build")["args"]["failed"], true);
}

#[test]
fn the_file_appears_whole_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.json");
    let writer = TraceWriter::create(&path).unwrap();
    writer.report(Event::StageStarted {
        index: 0,
        name: "a".to_owned(),
        at: ms(1),
    });
    // Nothing at the destination until the build ends.
    assert!(!path.exists());
    writer.finish().unwrap();
    let trace: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    find(&trace, "stage", "a");
    drop(writer);
    // Only the trace is left.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_path_that_cannot_be_written_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing/trace.json");
    let error = format!("{:#}", TraceWriter::create(&missing).err().unwrap());
    assert!(
        error.contains(&format!("cannot write --trace {}", missing.display())),
        "{error}"
    );
    assert!(error.contains("No such file or directory"), "{error}");
    let error = format!("{:#}", TraceWriter::create(dir.path()).err().unwrap());
    assert!(error.contains("Is a directory"), "{error}");
    // A writer dropped without finishing leaves nothing behind.
    let path = dir.path().join("t.json");
    drop(TraceWriter::create(&path).unwrap());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
