//! Build progress events: what the engine reports while it works. The CLI
//! turns them into live bars, plain lines or JSON lines.

use std::time::Duration;

use serde::Serialize;

/// One thing that happened during a build.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A step started. `id` is unique within the build and numbers steps
    /// in the order they start, from 1.
    StepStarted {
        /// Step number within the build.
        id: usize,
        /// Stage display name (`builder`, `stage-0`).
        stage: String,
        /// 1-based position of the step in its stage.
        index: usize,
        /// Number of steps in the stage.
        total: usize,
        /// What the step does, as BuildKit names it (`RUN make`).
        name: String,
    },
    /// The step's result came from the build cache.
    StepCached {
        /// Step number.
        id: usize,
    },
    /// A line of output of a RUN step (without its newline).
    StepOutput {
        /// Step number.
        id: usize,
        /// The line, lossily decoded.
        line: String,
    },
    /// The step finished.
    StepDone {
        /// Step number.
        id: usize,
        /// How long it took.
        #[serde(serialize_with = "secs")]
        duration: Duration,
    },
    /// The step failed; the build stops.
    StepFailed {
        /// Step number.
        id: usize,
        /// The error, one line.
        error: String,
    },
    /// Something the user should know that does not stop the build.
    Warning {
        /// The message.
        message: String,
    },
    /// The image was written to the store (or to `--output`).
    Exported {
        /// The image ID (config digest).
        image_id: String,
        /// Tags given with `-t`, normalised.
        tags: Vec<String>,
    },
    /// The build finished.
    Finished {
        /// Steps executed.
        steps_run: usize,
        /// Steps answered from the cache.
        steps_cached: usize,
        /// Wall time of the whole build.
        #[serde(serialize_with = "secs")]
        duration: Duration,
    },
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Receives progress events. Called from the build's worker threads.
pub trait Reporter: Send + Sync {
    /// Handles one event.
    fn report(&self, event: Event);
}

/// A reporter that drops everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Reporter for Silent {
    fn report(&self, _event: Event) {}
}

/// A reporter that keeps every event, for tests.
#[derive(Debug, Default)]
pub struct Recorder {
    events: std::sync::Mutex<Vec<Event>>,
}

impl Recorder {
    /// The events so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl Reporter for Recorder {
    fn report(&self, event: Event) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }
}
