//! `kiln build --trace FILE`: the build's stages, steps and phases as
//! Chrome trace-event JSON, which Perfetto and `chrome://tracing` show as
//! a timeline, one row ("thread") per stage so parallel stages sit side by
//! side.
//!
//! The writer collects the engine's timed events and writes the file once,
//! when the build has ended (also when it failed), to a temporary file
//! beside the destination that is then renamed over it: a reader never
//! sees half a trace.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use kiln_builder::progress::{Event, Reporter};
use serde_json::{Value, json};

/// The process id in the trace: one build, one process.
const PID: u32 = 1;

/// The row of work that belongs to no stage (planning, export).
const BUILD_TID: usize = 0;

/// Sends every event to two reporters: the progress display and a trace.
pub struct Tee<'a>(pub &'a dyn Reporter, pub &'a dyn Reporter);

impl Reporter for Tee<'_> {
    fn report(&self, event: Event) {
        self.0.report(event.clone());
        self.1.report(event);
    }
}

/// Collects a build's timed events and writes them as a trace.
pub struct TraceWriter {
    path: PathBuf,
    temp: PathBuf,
    /// The open temporary file; taken when the trace is written.
    file: Mutex<Option<File>>,
    state: Mutex<TraceState>,
}

impl TraceWriter {
    /// Opens a temporary file beside `path`, so a path that cannot be
    /// written fails before the build starts.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let context = || format!("cannot write --trace {}", path.display());
        let name = path
            .file_name()
            .filter(|_| !path.is_dir())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EISDIR))
            .with_context(context)?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".{}.tmp", std::process::id()));
        let temp = dir.join(temp_name);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)
            .with_context(context)?;
        Ok(Self {
            path: path.to_owned(),
            temp,
            file: Mutex::new(Some(file)),
            state: Mutex::new(TraceState::default()),
        })
    }

    /// Writes the trace of what has been reported and renames it into
    /// place.
    pub fn finish(&self) -> anyhow::Result<()> {
        let context = || format!("cannot write --trace {}", self.path.display());
        let trace = self
            .state
            .lock()
            .map_or_else(|_| TraceState::default().to_json(), |s| s.to_json());
        let file = self
            .file
            .lock()
            .ok()
            .and_then(|mut f| f.take())
            .context("the trace was written already")
            .with_context(context)?;
        let mut out = BufWriter::new(file);
        serde_json::to_writer(&mut out, &trace)
            .map_err(io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush())
            .with_context(context)?;
        fs::rename(&self.temp, &self.path).with_context(context)?;
        Ok(())
    }
}

impl Drop for TraceWriter {
    /// Removes the temporary file of a trace that was never written.
    fn drop(&mut self) {
        if self.file.get_mut().is_ok_and(|f| f.is_some()) {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

impl Reporter for TraceWriter {
    fn report(&self, event: Event) {
        if let Ok(mut state) = self.state.lock() {
            state.record(event);
        }
    }
}

/// What the trace needs of the events, in the order they came.
#[derive(Default)]
struct TraceState {
    stages: BTreeMap<usize, StageSpan>,
    steps: BTreeMap<usize, StepSpan>,
    phases: Vec<PhaseSpan>,
    /// The build's duration, once it finished.
    finished: Option<Duration>,
}

#[derive(Default)]
struct StageSpan {
    name: String,
    start: Duration,
    end: Option<Duration>,
}

#[derive(Default)]
struct StepSpan {
    name: String,
    /// `i/n` in its stage, as progress shows it.
    position: String,
    cached: bool,
    error: Option<String>,
    /// Stage index, start and duration, once it ended.
    timed: Option<(usize, Duration, Duration)>,
}

struct PhaseSpan {
    step: Option<usize>,
    stage: Option<usize>,
    name: String,
    start: Duration,
    duration: Duration,
}

impl TraceState {
    fn record(&mut self, event: Event) {
        match event {
            Event::StageStarted { index, name, at } => {
                self.stages.insert(
                    index,
                    StageSpan {
                        name,
                        start: at,
                        end: None,
                    },
                );
            }
            Event::StageFinished { index, at } => {
                if let Some(stage) = self.stages.get_mut(&index) {
                    stage.end = Some(at);
                }
            }
            Event::StepStarted {
                id,
                index,
                total,
                name,
                ..
            } => {
                let step = self.steps.entry(id).or_default();
                step.name = name;
                step.position = format!("{index}/{total}");
            }
            Event::StepCached { id } => self.steps.entry(id).or_default().cached = true,
            Event::StepFailed { id, error } => {
                self.steps.entry(id).or_default().error = Some(error);
            }
            Event::StepTimed {
                id,
                stage,
                start,
                duration,
            } => self.steps.entry(id).or_default().timed = Some((stage, start, duration)),
            Event::Phase {
                step,
                stage,
                name,
                start,
                duration,
            } => self.phases.push(PhaseSpan {
                step,
                stage,
                name,
                start,
                duration,
            }),
            Event::Finished { duration, .. } => self.finished = Some(duration),
            _ => {}
        }
    }

    /// The latest time anything reported: the end of spans that never
    /// ended (a failed build).
    fn last_time(&self) -> Duration {
        let stages = self.stages.values().map(|s| s.end.unwrap_or(s.start));
        let steps = self
            .steps
            .values()
            .filter_map(|s| s.timed.map(|(_, a, d)| a + d));
        let phases = self.phases.iter().map(|p| p.start + p.duration);
        stages
            .chain(steps)
            .chain(phases)
            .chain(self.finished)
            .max()
            .unwrap_or_default()
    }

    /// The trace: `M` events naming the rows, then `X` events ordered by
    /// row and start (longer first at equal starts, so viewers nest them).
    fn to_json(&self) -> Value {
        let end = self.last_time();
        let mut events = vec![
            metadata("process_name", BUILD_TID, "kiln build"),
            metadata("thread_name", BUILD_TID, "build"),
            sort_index(BUILD_TID),
        ];
        for (&index, stage) in &self.stages {
            events.push(metadata("thread_name", stage_tid(index), &stage.name));
            events.push(sort_index(stage_tid(index)));
        }
        let mut spans = vec![Span {
            name: "build".to_owned(),
            category: "build",
            tid: BUILD_TID,
            start: Duration::ZERO,
            end: self.finished.unwrap_or(end),
            args: json!({ "failed": self.finished.is_none() }),
        }];
        for (&index, stage) in &self.stages {
            spans.push(Span {
                name: stage.name.clone(),
                category: "stage",
                tid: stage_tid(index),
                start: stage.start,
                end: stage.end.unwrap_or(end),
                args: json!({ "stage": stage.name }),
            });
        }
        let mut step_rows = HashMap::new();
        for (&id, step) in &self.steps {
            let Some((stage, start, duration)) = step.timed else {
                continue;
            };
            step_rows.insert(id, stage_tid(stage));
            let stage_name = self.stages.get(&stage).map_or("", |s| s.name.as_str());
            let mut args = json!({
                "step": step.name,
                "id": id,
                "stage": stage_name,
                "position": step.position,
                "cached": step.cached,
            });
            if let (Some(error), Some(map)) = (&step.error, args.as_object_mut()) {
                map.insert("error".to_owned(), Value::from(error.as_str()));
            }
            spans.push(Span {
                name: step.name.clone(),
                category: "step",
                tid: stage_tid(stage),
                start,
                end: start + duration,
                args,
            });
        }
        for phase in &self.phases {
            let tid = match (phase.step, phase.stage) {
                (Some(step), _) => step_rows.get(&step).copied().unwrap_or(BUILD_TID),
                (None, Some(stage)) => stage_tid(stage),
                (None, None) => BUILD_TID,
            };
            let args = match phase.step.and_then(|id| self.steps.get(&id)) {
                Some(step) => json!({ "step": step.name }),
                None => json!({}),
            };
            spans.push(Span {
                name: phase.name.clone(),
                category: "phase",
                tid,
                start: phase.start,
                end: phase.start + phase.duration,
                args,
            });
        }
        spans.sort_by_key(|s| (s.tid, micros(s.start), std::cmp::Reverse(micros(s.end))));
        events.extend(spans.into_iter().map(Span::into_json));
        json!({ "traceEvents": events, "displayTimeUnit": "ms" })
    }
}

/// One `X` (complete) event.
struct Span {
    name: String,
    category: &'static str,
    tid: usize,
    start: Duration,
    end: Duration,
    args: Value,
}

impl Span {
    fn into_json(self) -> Value {
        let ts = micros(self.start);
        // From the rounded ends, so a span inside another stays inside
        // after rounding.
        let dur = micros(self.end).saturating_sub(ts);
        json!({
            "name": self.name,
            "cat": self.category,
            "ph": "X",
            "ts": ts,
            "dur": dur,
            "pid": PID,
            "tid": self.tid,
            "args": self.args,
        })
    }
}

/// Each stage's row; row 0 is the build's own.
fn stage_tid(index: usize) -> usize {
    index + 1
}

/// Whole microseconds, the trace format's unit.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn metadata(kind: &str, tid: usize, name: &str) -> Value {
    json!({ "name": kind, "ph": "M", "pid": PID, "tid": tid, "args": { "name": name } })
}

/// Rows in stage order rather than by first event.
fn sort_index(tid: usize) -> Value {
    json!({ "name": "thread_sort_index", "ph": "M", "pid": PID, "tid": tid, "args": { "sort_index": tid } })
}

#[cfg(test)]
mod tests;
