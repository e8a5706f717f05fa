use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

/// A writer the test can read back while the renderer owns a clone.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// A clock that moves only when the test says so (milliseconds).
fn fake_clock() -> (Clock, Arc<AtomicU64>) {
    let base = Instant::now();
    let offset = Arc::new(AtomicU64::new(0));
    let handle = Arc::clone(&offset);
    let clock: Clock =
        Box::new(move || base + Duration::from_millis(handle.load(Ordering::SeqCst)));
    (clock, offset)
}

fn started(id: usize, stage: &str, index: usize, total: usize, name: &str) -> Event {
    Event::StepStarted {
        id,
        stage: stage.to_owned(),
        index,
        total,
        name: name.to_owned(),
    }
}

fn output(id: usize, line: &str) -> Event {
    Event::StepOutput {
        id,
        line: line.to_owned(),
    }
}

#[test]
fn plain_output_has_buildkit_shape() {
    let buffer = Buffer::default();
    let (clock, ms) = fake_clock();
    let renderer = PlainRenderer::with_clock(buffer.clone(), clock);
    renderer.report(started(1, "builder", 1, 2, "FROM busybox"));
    renderer.report(Event::StepCached { id: 1 });
    renderer.report(started(2, "builder", 2, 2, "RUN make"));
    ms.store(412, Ordering::SeqCst);
    renderer.report(output(2, "compiling..."));
    ms.store(12_345, Ordering::SeqCst);
    renderer.report(output(2, "linking"));
    renderer.report(Event::StepDone {
        id: 2,
        duration: Duration::from_millis(1234),
    });
    renderer.report(Event::Warning {
        message: "unused build arg: FOO".to_owned(),
    });
    renderer.report(Event::Exported {
        image_id: format!("sha256:{}", "ab12".repeat(16)),
        tags: vec![
            "docker.io/library/app:1".to_owned(),
            "docker.io/library/app:latest".to_owned(),
        ],
        duration: Duration::from_millis(5),
    });
    renderer.report(Event::Finished {
        steps_run: 1,
        steps_cached: 1,
        duration: Duration::from_millis(3210),
    });
    assert_eq!(
        buffer.text(),
        "#1 [builder 1/2] FROM busybox\n\
         #1 CACHED\n\
         \n\
         #2 [builder 2/2] RUN make\n\
         #2 0.412 compiling...\n\
         #2 12.35 linking\n\
         #2 DONE 1.2s\n\
         WARNING: unused build arg: FOO\n\
         \n\
         #3 exporting to image\n\
         #3 exporting layers done\n\
         #3 writing image sha256:ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12 done\n\
         #3 naming to docker.io/library/app:1 done\n\
         #3 naming to docker.io/library/app:latest done\n\
         #3 DONE 0.0s\n\
         \n\
         kiln: built ab12ab12ab12 in 3.2s: 1 step run, 1 cached\n"
    );
}

/// BuildKit shows a status's time only above 10 ms.
#[test]
fn export_block_shows_buildkit_status_times() {
    let buffer = Buffer::default();
    let renderer = PlainRenderer::new(buffer.clone());
    renderer.report(Event::Exported {
        image_id: "sha256:00".to_owned(),
        tags: Vec::new(),
        duration: Duration::from_millis(340),
    });
    assert_eq!(
        buffer.text(),
        "#1 exporting to image\n\
         #1 exporting layers 0.3s done\n\
         #1 writing image sha256:00 done\n\
         #1 DONE 0.3s\n"
    );
}

#[test]
fn plain_output_interleaves_parallel_steps_as_buildkit() {
    let buffer = Buffer::default();
    let (clock, ms) = fake_clock();
    let renderer = PlainRenderer::with_clock(buffer.clone(), clock);
    renderer.report(started(1, "a", 1, 10, "RUN one"));
    renderer.report(started(2, "", 3, 10, "RUN two"));
    ms.store(150_000, Ordering::SeqCst);
    renderer.report(output(1, "from one"));
    renderer.report(Event::StepFailed {
        id: 2,
        error: "process \"/bin/sh -c two\" did not complete successfully: exit code: 2".to_owned(),
    });
    assert_eq!(
        buffer.text(),
        "#1 [a  1/10] RUN one\n\
         #1 ...\n\
         \n\
         #2 [ 3/10] RUN two\n\
         #2 ...\n\
         \n\
         #1 [a  1/10] RUN one\n\
         #1 150.0 from one\n\
         #1 ...\n\
         \n\
         #2 [ 3/10] RUN two\n\
         #2 ERROR: process \"/bin/sh -c two\" did not complete successfully: exit code: 2\n"
    );
}

#[test]
fn plain_summary_without_an_image() {
    let buffer = Buffer::default();
    let renderer = PlainRenderer::new(buffer.clone());
    renderer.report(Event::Finished {
        steps_run: 5,
        steps_cached: 12,
        duration: Duration::from_millis(50),
    });
    assert_eq!(
        buffer.text(),
        "kiln: build finished in 0.1s: 5 steps run, 12 cached\n"
    );
}

#[test]
fn json_writes_one_object_per_line() {
    let buffer = Buffer::default();
    let renderer = JsonRenderer::new(buffer.clone());
    renderer.report(started(1, "stage-0", 1, 1, "COPY . ."));
    renderer.report(Event::StepDone {
        id: 1,
        duration: Duration::from_millis(1500),
    });
    let text = buffer.text();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        vec![
            serde_json::json!({"event": "step_started", "id": 1, "stage": "stage-0",
                "index": 1, "total": 1, "name": "COPY . ."}),
            serde_json::json!({"event": "step_done", "id": 1, "duration": 1.5}),
        ]
    );
}

#[test]
fn quiet_prints_only_warnings() {
    let buffer = Buffer::default();
    let renderer = QuietRenderer::new(buffer.clone());
    renderer.report(started(1, "", 1, 1, "RUN x"));
    renderer.report(output(1, "noise"));
    renderer.report(Event::Warning {
        message: "careful".to_owned(),
    });
    renderer.report(Event::Finished {
        steps_run: 1,
        steps_cached: 0,
        duration: Duration::from_secs(1),
    });
    assert_eq!(buffer.text(), "WARNING: careful\n");
}

#[test]
fn progress_flag_values() {
    assert_eq!(
        ProgressMode::from_flag("plain").unwrap(),
        ProgressMode::Plain
    );
    assert_eq!(ProgressMode::from_flag("json").unwrap(), ProgressMode::Json);
    assert_eq!(ProgressMode::from_flag("auto").unwrap(), ProgressMode::Auto);
    assert_eq!(
        ProgressMode::from_flag("fancy").unwrap_err().to_string(),
        "invalid progress mode \"fancy\": expected one of auto, tty, plain, quiet, json"
    );
    assert_eq!(ProgressMode::Json.resolve(true), ProgressMode::Quiet);
    assert_eq!(ProgressMode::Json.resolve(false), ProgressMode::Json);
    // Tests run with stderr captured, not on a terminal.
    if !io::stderr().is_terminal() {
        assert_eq!(ProgressMode::Auto.resolve(false), ProgressMode::Plain);
        assert_eq!(ProgressMode::Tty.resolve(false), ProgressMode::Plain);
    }
}

#[test]
fn step_labels_pad_the_index_like_buildkit() {
    assert_eq!(
        step_label("builder", 2, 4, "RUN make"),
        "[builder 2/4] RUN make"
    );
    assert_eq!(step_label("", 2, 12, "COPY . ."), "[ 2/12] COPY . .");
    assert_eq!(log_seconds(Duration::from_millis(412)), "0.412");
    assert_eq!(log_seconds(Duration::from_millis(99_994)), "99.99");
    assert_eq!(log_seconds(Duration::from_secs(100)), "100.0");
}

#[test]
fn plain_output_puts_the_reason_in_the_steps_block() {
    let buffer = Buffer::default();
    let (clock, _) = fake_clock();
    let renderer = PlainRenderer::with_clock(buffer.clone(), clock);
    renderer.report(started(3, "", 2, 3, "RUN make"));
    renderer.report(Event::StepExplained {
        id: 3,
        name: "RUN make".to_owned(),
        reason: "build arg VERSION changed (1.2 -> 1.3)".to_owned(),
    });
    renderer.report(Event::StepDone {
        id: 3,
        duration: Duration::from_millis(100),
    });
    assert_eq!(
        buffer.text(),
        "#3 [2/3] RUN make\n\
         #3 REASON: build arg VERSION changed (1.2 -> 1.3)\n\
         #3 DONE 0.1s\n"
    );
}

#[test]
fn json_progress_has_the_reason_as_a_field() {
    let event = Event::StepExplained {
        id: 3,
        name: "RUN make".to_owned(),
        reason: "--no-cache".to_owned(),
    };
    assert_eq!(
        serde_json::to_string(&event).unwrap(),
        r#"{"event":"step_explained","id":3,"name":"RUN make","reason":"--no-cache"}"#
    );
}
