//! Build progress events: what the engine reports while it works. The CLI
//! turns them into live bars, plain lines or JSON lines, and a trace.

use std::time::{Duration, Instant};

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
    /// Why a step ran instead of hitting the cache (`--explain`); for FROM,
    /// that its base image changed.
    StepExplained {
        /// Step number.
        id: usize,
        /// What the step does (`RUN make`).
        name: String,
        /// Why (`build arg VERSION changed (1.2 -> 1.3)`).
        reason: String,
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
        /// How long writing the image (config, manifest, index) took.
        #[serde(serialize_with = "secs")]
        duration: Duration,
    },
    /// A stage started (before its base is resolved). Times of this and
    /// the events below are on the build's own monotonic clock, since the
    /// build started, so that spans reported from different threads line
    /// up.
    StageStarted {
        /// Index of the stage in the Dockerfile.
        index: usize,
        /// Its name, or `stage-N`.
        name: String,
        /// When it started.
        #[serde(serialize_with = "secs")]
        at: Duration,
    },
    /// A stage ended, built or not.
    StageFinished {
        /// Index of the stage in the Dockerfile.
        index: usize,
        /// When it ended.
        #[serde(serialize_with = "secs")]
        at: Duration,
    },
    /// When a step ran, reported as it ends (done, cached or failed).
    StepTimed {
        /// Step number.
        id: usize,
        /// Index of its stage in the Dockerfile.
        stage: usize,
        /// When it started.
        #[serde(serialize_with = "secs")]
        start: Duration,
        /// How long it took.
        #[serde(serialize_with = "secs")]
        duration: Duration,
    },
    /// A timed part of the work (`run`, `pack layer`, `cache lookup`, ...),
    /// reported as it ends, also when it fails.
    Phase {
        /// The step it belongs to; `None` for work of a stage or the build.
        step: Option<usize>,
        /// The stage it belongs to (index); `None` for work of the build.
        stage: Option<usize>,
        /// What it was.
        name: String,
        /// When it started.
        #[serde(serialize_with = "secs")]
        start: Duration,
        /// How long it took.
        #[serde(serialize_with = "secs")]
        duration: Duration,
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

/// Times a phase and reports it when dropped, so a phase cut short by an
/// error (`?`) still shows, with the time it took until then.
pub(crate) struct PhaseTimer<'r> {
    reporter: &'r dyn Reporter,
    origin: Instant,
    start: Instant,
    step: Option<usize>,
    stage: Option<usize>,
    name: &'static str,
}

impl<'r> PhaseTimer<'r> {
    /// Starts timing `name`; `origin` is when the build started.
    pub(crate) fn start(
        reporter: &'r dyn Reporter,
        origin: Instant,
        step: Option<usize>,
        stage: Option<usize>,
        name: &'static str,
    ) -> Self {
        Self {
            reporter,
            origin,
            start: Instant::now(),
            step,
            stage,
            name,
        }
    }

    /// Ends the phase now (reads better than `drop` where one phase
    /// follows another).
    pub(crate) fn end(self) {
        drop(self);
    }
}

impl Drop for PhaseTimer<'_> {
    fn drop(&mut self) {
        self.reporter.report(Event::Phase {
            step: self.step,
            stage: self.stage,
            name: self.name.to_owned(),
            start: self.start.saturating_duration_since(self.origin),
            duration: self.start.elapsed(),
        });
    }
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
