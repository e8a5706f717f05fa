//! Build progress on stderr: live bars on a terminal (indicatif), BuildKit's
//! plain line-per-event format, JSON lines, or only warnings (`-q`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, IsTerminal as _, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use kiln_builder::progress::{Event, Reporter};

/// How `kiln build` shows progress (`--progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// `tty` when stderr is a terminal (and `TERM` is not `dumb`), else `plain`.
    Auto,
    /// Live bars, one line per running step.
    Tty,
    /// One line per event, as BuildKit's plain printer writes them.
    Plain,
    /// Warnings only.
    Quiet,
    /// One JSON object per event per line.
    Json,
}

/// The `--progress` values, for messages.
const MODES: &str = "auto, tty, plain, quiet, json";

impl ProgressMode {
    /// Parses a `--progress` value.
    pub fn from_flag(value: &str) -> anyhow::Result<Self> {
        match value {
            "auto" => Ok(Self::Auto),
            "tty" => Ok(Self::Tty),
            "plain" => Ok(Self::Plain),
            "quiet" => Ok(Self::Quiet),
            "json" => Ok(Self::Json),
            _ => anyhow::bail!("invalid progress mode {value:?}: expected one of {MODES}"),
        }
    }

    /// The mode to use: `-q` wins over `--progress`; `auto` (and `tty`
    /// without a terminal, where indicatif would draw nothing) become
    /// `plain` unless stderr is a terminal whose `TERM` is not `dumb`.
    pub fn resolve(self, quiet: bool) -> Self {
        if quiet {
            return Self::Quiet;
        }
        match self {
            Self::Auto | Self::Tty => {
                let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
                if io::stderr().is_terminal() && !dumb {
                    Self::Tty
                } else {
                    Self::Plain
                }
            }
            other => other,
        }
    }
}

/// A reporter that renders events on stderr in `mode` (resolved as
/// [`ProgressMode::resolve`] does without `-q`).
pub fn reporter(mode: ProgressMode) -> Box<dyn Reporter> {
    match mode.resolve(false) {
        ProgressMode::Tty => Box::new(TtyRenderer::new()),
        ProgressMode::Json => Box::new(JsonRenderer::new(io::stderr())),
        ProgressMode::Quiet => Box::new(QuietRenderer::new(io::stderr())),
        ProgressMode::Plain | ProgressMode::Auto => Box::new(PlainRenderer::new(io::stderr())),
    }
}

/// The final line: `kiln: built 1a2b3c4d5e6f in 3.2s: 5 steps run, 12 cached`.
fn summary(
    image: Option<&str>,
    steps_run: usize,
    steps_cached: usize,
    duration: Duration,
) -> String {
    let what = image.map_or_else(
        || "build finished".to_owned(),
        |id| {
            let hex = id.strip_prefix("sha256:").unwrap_or(id);
            format!("built {}", hex.get(..12).unwrap_or(hex))
        },
    );
    let steps = |n: usize| if n == 1 { "step" } else { "steps" };
    format!(
        "kiln: {what} in {:.1}s: {steps_run} {} run, {steps_cached} cached",
        duration.as_secs_f64(),
        steps(steps_run)
    )
}

/// `[stage i/n] NAME` as BuildKit prefixes a Dockerfile step: the index
/// padded to the width of the total, the stage name left out when empty.
fn step_label(stage: &str, index: usize, total: usize, name: &str) -> String {
    let width = total.to_string().len();
    let mut label = String::from("[");
    if !stage.is_empty() {
        label.push_str(stage);
        label.push(' ');
    }
    let _ = write!(label, "{index:>width$}/{total}] {name}");
    label
}

/// Seconds since a step started as BuildKit prints them before each output
/// line: three decimals under 10 s, two under 100 s, else one.
fn log_seconds(elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs < 10.0 {
        format!("{secs:.3}")
    } else if secs < 100.0 {
        format!("{secs:.2}")
    } else {
        format!("{secs:.1}")
    }
}

/// The time BuildKit's plain printer puts on a status line (` 0.3s`): only
/// when it is above 10 ms.
fn status_seconds(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs > 0.01 {
        format!(" {secs:.1}s")
    } else {
        String::new()
    }
}

/// A clock, replaceable in tests.
type Clock = Box<dyn Fn() -> Instant + Send + Sync>;

/// BuildKit's plain printer: a `#N [stage i/n] NAME` header whenever the
/// step being printed changes (a blank line between blocks, `#N ...` when
/// leaving an unfinished step), `#N <secs> <line>` for output, and `#N
/// DONE 1.2s`, `#N CACHED` or `#N ERROR: msg` when a step ends.
pub struct PlainRenderer<W> {
    state: Mutex<PlainState<W>>,
    clock: Clock,
}

struct PlainState<W> {
    out: W,
    steps: HashMap<usize, PlainStep>,
    /// The step whose block is open.
    current: Option<usize>,
    /// Whether anything was printed (no blank line before the first block).
    printed: bool,
    image: Option<String>,
    /// The highest step number seen: the export is the next one.
    last_id: usize,
}

struct PlainStep {
    label: String,
    started: Instant,
}

impl<W: Write + Send> PlainRenderer<W> {
    /// A renderer writing to `out`.
    pub fn new(out: W) -> Self {
        Self::with_clock(out, Box::new(Instant::now))
    }

    fn with_clock(out: W, clock: Clock) -> Self {
        Self {
            state: Mutex::new(PlainState {
                out,
                steps: HashMap::new(),
                current: None,
                printed: false,
                image: None,
                last_id: 0,
            }),
            clock,
        }
    }

    fn render(&self, event: Event) -> io::Result<()> {
        let now = (self.clock)();
        let Ok(mut state) = self.state.lock() else {
            return Ok(());
        };
        let state = &mut *state;
        match event {
            Event::StepStarted {
                id,
                stage,
                index,
                total,
                name,
            } => {
                state.steps.insert(
                    id,
                    PlainStep {
                        label: step_label(&stage, index, total, &name),
                        started: now,
                    },
                );
                state.last_id = state.last_id.max(id);
                state.switch_to(id)?;
            }
            Event::StepOutput { id, line } => {
                state.switch_to(id)?;
                let elapsed = state
                    .steps
                    .get(&id)
                    .map_or(Duration::ZERO, |s| now.saturating_duration_since(s.started));
                writeln!(state.out, "#{id} {} {line}", log_seconds(elapsed))?;
            }
            Event::StepExplained { id, reason, .. } => {
                state.switch_to(id)?;
                writeln!(state.out, "#{id} REASON: {reason}")?;
            }
            Event::StepCached { id } => {
                state.switch_to(id)?;
                writeln!(state.out, "#{id} CACHED")?;
                state.current = None;
            }
            Event::StepDone { id, duration } => {
                state.switch_to(id)?;
                writeln!(state.out, "#{id} DONE {:.1}s", duration.as_secs_f64())?;
                state.current = None;
            }
            Event::StepFailed { id, error } => {
                state.switch_to(id)?;
                writeln!(state.out, "#{id} ERROR: {error}")?;
                state.current = None;
            }
            Event::Warning { message } => {
                writeln!(state.out, "WARNING: {message}")?;
                state.printed = true;
            }
            Event::Exported {
                image_id,
                tags,
                duration,
            } => {
                state.export(&image_id, &tags, duration)?;
                state.image = Some(image_id);
            }
            Event::Finished {
                steps_run,
                steps_cached,
                duration,
            } => {
                if state.printed {
                    writeln!(state.out)?;
                }
                let line = summary(state.image.as_deref(), steps_run, steps_cached, duration);
                writeln!(state.out, "{line}")?;
                state.printed = true;
            }
            _ => {}
        }
        state.out.flush()
    }
}

impl<W: Write> PlainState<W> {
    /// The export block, as BuildKit ends a build that stores an image:
    /// `#N exporting to image`, the layers, `writing image sha256:... done`,
    /// one `naming to REF done` per tag, `#N DONE 0.0s`.
    fn export(&mut self, image_id: &str, tags: &[String], duration: Duration) -> io::Result<()> {
        if let Some(old) = self.current.take() {
            writeln!(self.out, "#{old} ...")?;
        }
        if self.printed {
            writeln!(self.out)?;
        }
        self.last_id += 1;
        let id = self.last_id;
        writeln!(self.out, "#{id} exporting to image")?;
        writeln!(
            self.out,
            "#{id} exporting layers{} done",
            status_seconds(duration)
        )?;
        writeln!(self.out, "#{id} writing image {image_id} done")?;
        for tag in tags {
            writeln!(self.out, "#{id} naming to {tag} done")?;
        }
        writeln!(self.out, "#{id} DONE {:.1}s", duration.as_secs_f64())?;
        self.printed = true;
        Ok(())
    }

    /// Opens step `id`'s block unless it is the open one.
    fn switch_to(&mut self, id: usize) -> io::Result<()> {
        if self.current == Some(id) {
            return Ok(());
        }
        if let Some(old) = self.current {
            writeln!(self.out, "#{old} ...")?;
        }
        if self.printed {
            writeln!(self.out)?;
        }
        let label = self.steps.get(&id).map_or("", |s| s.label.as_str());
        writeln!(self.out, "#{id} {label}")?;
        self.current = Some(id);
        self.printed = true;
        Ok(())
    }
}

impl<W: Write + Send> Reporter for PlainRenderer<W> {
    fn report(&self, event: Event) {
        // Progress output is best effort: a closed stderr must not stop
        // the build.
        let _ = self.render(event);
    }
}

/// One JSON object per event per line.
pub struct JsonRenderer<W> {
    out: Mutex<W>,
}

impl<W: Write + Send> JsonRenderer<W> {
    /// A renderer writing to `out`.
    pub fn new(out: W) -> Self {
        Self {
            out: Mutex::new(out),
        }
    }
}

impl<W: Write + Send> Reporter for JsonRenderer<W> {
    fn report(&self, event: Event) {
        let Ok(mut line) = serde_json::to_vec(&event) else {
            return;
        };
        line.push(b'\n');
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(&line).and_then(|()| out.flush());
        }
    }
}

/// `-q`: warnings only (errors reach stderr through the command's result).
pub struct QuietRenderer<W> {
    out: Mutex<W>,
}

impl<W: Write + Send> QuietRenderer<W> {
    /// A renderer writing to `out`.
    pub fn new(out: W) -> Self {
        Self {
            out: Mutex::new(out),
        }
    }
}

impl<W: Write + Send> Reporter for QuietRenderer<W> {
    fn report(&self, event: Event) {
        if let Event::Warning { message } = event
            && let Ok(mut out) = self.out.lock()
        {
            let _ = writeln!(out, "WARNING: {message}");
        }
    }
}

/// Live progress on a terminal: a spinner line per running step with its
/// elapsed time and last output line; a finished step leaves a permanent
/// line, `=> CACHED [stage i/n] NAME` or `=> [stage i/n] NAME  1.2s`, as
/// BuildKit's tty display does.
pub struct TtyRenderer {
    multi: MultiProgress,
    style: ProgressStyle,
    state: Mutex<TtyState>,
}

#[derive(Default)]
struct TtyState {
    bars: HashMap<usize, (ProgressBar, String)>,
    image: Option<String>,
}

impl TtyRenderer {
    /// A renderer drawing on stderr.
    pub fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style =
            ProgressStyle::with_template("{spinner:.cyan} {prefix} {secs:.dim} {wide_msg:.dim}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner())
                .with_key(
                    "secs",
                    |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.1}s", state.elapsed().as_secs_f64());
                    },
                );
        Self {
            multi,
            style,
            state: Mutex::new(TtyState::default()),
        }
    }

    /// Prints a permanent line above the bars.
    fn line(&self, text: &str) {
        self.multi.suspend(|| {
            let _ = writeln!(io::stderr().lock(), "{text}");
        });
    }

    /// Removes a step's bar; returns its label.
    fn finish(state: &mut TtyState, id: usize) -> String {
        state.bars.remove(&id).map_or_else(
            || format!("#{id}"),
            |(bar, label)| {
                bar.finish_and_clear();
                label
            },
        )
    }
}

impl Default for TtyRenderer {
    fn default() -> Self {
        Self::new()
    }
}

impl Reporter for TtyRenderer {
    fn report(&self, event: Event) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match event {
            Event::StepStarted {
                id,
                stage,
                index,
                total,
                name,
            } => {
                let label = step_label(&stage, index, total, &name);
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(self.style.clone());
                bar.set_prefix(label.clone());
                bar.enable_steady_tick(Duration::from_millis(100));
                state.bars.insert(id, (bar, label));
            }
            Event::StepOutput { id, line } => {
                if let Some((bar, _)) = state.bars.get(&id) {
                    bar.set_message(line);
                }
            }
            Event::StepExplained { name, reason, .. } => {
                self.line(&format!("=> REASON {name}: {reason}"));
            }
            Event::StepCached { id } => {
                let label = Self::finish(&mut state, id);
                self.line(&format!("=> CACHED {label}"));
            }
            Event::StepDone { id, duration } => {
                let label = Self::finish(&mut state, id);
                self.line(&format!("=> {label}  {:.1}s", duration.as_secs_f64()));
            }
            // The error itself reaches stderr through the command's result.
            Event::StepFailed { id, .. } => {
                let label = Self::finish(&mut state, id);
                self.line(&format!("=> ERROR {label}"));
            }
            Event::Warning { message } => self.line(&format!("WARNING: {message}")),
            Event::Exported { image_id, .. } => state.image = Some(image_id),
            Event::Finished {
                steps_run,
                steps_cached,
                duration,
            } => {
                let line = summary(state.image.as_deref(), steps_run, steps_cached, duration);
                self.line(&line);
            }
            _ => {}
        }
    }
}

impl Drop for TtyRenderer {
    /// Clears the bars of steps that never finished (a failed or
    /// interrupted build), so the terminal is left clean.
    fn drop(&mut self) {
        if let Ok(state) = self.state.get_mut() {
            for (bar, _) in state.bars.values() {
                bar.finish_and_clear();
            }
        }
        let _ = self.multi.clear();
    }
}

#[cfg(test)]
mod tests;
