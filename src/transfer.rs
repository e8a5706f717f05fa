//! Progress of pulls and pushes on stderr, in Docker's shape: a line per
//! layer (`<short id>: <status>`), with bytes and a bar on a terminal,
//! plain lines otherwise (a byte count at most once a second per layer),
//! JSON lines with `--progress=json`, nothing with `-q`.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write as _};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln_store::Digest;

use crate::progress::ProgressMode;

/// How often a plain-mode line reports a layer's bytes.
const PLAIN_INTERVAL: Duration = Duration::from_secs(1);

/// A renderer shared by the transfer threads.
pub struct TransferProgress {
    mode: ProgressMode,
    state: Mutex<State>,
}

struct State {
    last_line: HashMap<String, Instant>,
    bars: HashMap<String, ProgressBar>,
    /// Layers whose line has its bar (bytes have moved).
    barred: HashSet<String>,
    multi: Option<MultiProgress>,
}

/// The 12-character ID Docker shows for a layer.
pub fn short(digest: &Digest) -> String {
    digest.encoded().chars().take(12).collect()
}

impl TransferProgress {
    /// A renderer for `mode` (already resolved: auto is not expected).
    pub fn new(mode: ProgressMode) -> Self {
        let multi = (mode == ProgressMode::Tty)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self {
            mode,
            state: Mutex::new(State {
                last_line: HashMap::new(),
                bars: HashMap::new(),
                barred: HashSet::new(),
                multi,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A general line (`latest: Pulling from library/busybox`).
    pub fn message(&self, text: &str) {
        match self.mode {
            ProgressMode::Quiet => {}
            ProgressMode::Json => json_line(&serde_json::json!({ "status": text })),
            ProgressMode::Tty => {
                let state = self.lock();
                if let Some(multi) = &state.multi {
                    let _ = multi.println(text);
                }
            }
            _ => line(text),
        }
    }

    /// A layer's status (`Already exists`, `Pull complete`).
    pub fn status(&self, digest: &Digest, status: &str) {
        let id = short(digest);
        match self.mode {
            ProgressMode::Quiet => {}
            ProgressMode::Json => {
                json_line(&serde_json::json!({ "id": id, "status": status }));
            }
            ProgressMode::Tty => {
                let mut state = self.lock();
                if let Some(bar) = state.bars.get(&id) {
                    bar.set_message(status.to_owned());
                    return;
                }
                if let Some(multi) = &state.multi {
                    // No bar until bytes move, as Docker's `Already
                    // exists` and `Pulling fs layer` lines.
                    let bar = multi.add(
                        ProgressBar::new(0)
                            .with_style(status_style())
                            .with_prefix(id.clone())
                            .with_message(status.to_owned()),
                    );
                    state.bars.insert(id, bar);
                }
            }
            _ => line(&format!("{id}: {status}")),
        }
    }

    /// Bytes moved so far for a layer (`Downloading`, `Pushing`).
    pub fn bytes(&self, digest: &Digest, action: &str, done: u64, total: u64) {
        let id = short(digest);
        match self.mode {
            ProgressMode::Quiet => {}
            ProgressMode::Tty => {
                let mut guard = self.lock();
                let state = &mut *guard;
                let multi = state.multi.clone();
                let bar = state.bars.entry(id.clone()).or_insert_with(|| {
                    multi.map_or_else(ProgressBar::hidden, |m| {
                        m.add(
                            ProgressBar::new(total)
                                .with_style(status_style())
                                .with_prefix(id.clone())
                                .with_message(action.to_owned()),
                        )
                    })
                });
                // Each setter may draw a frame: the bytes before the bar
                // that shows them.
                bar.set_length(total);
                bar.set_position(done);
                if state.barred.insert(id) {
                    bar.set_style(style());
                }
                bar.set_message(action.to_owned());
            }
            ProgressMode::Json | ProgressMode::Plain | ProgressMode::Auto => {
                let mut state = self.lock();
                let now = Instant::now();
                let due = state
                    .last_line
                    .get(&id)
                    .is_none_or(|t| now.duration_since(*t) >= PLAIN_INTERVAL);
                if !due && done < total {
                    return;
                }
                state.last_line.insert(id.clone(), now);
                drop(state);
                if self.mode == ProgressMode::Json {
                    json_line(&serde_json::json!({
                        "id": id, "status": action,
                        "progressDetail": {"current": done, "total": total}
                    }));
                } else {
                    line(&format!(
                        "{id}: {action} {}/{}",
                        crate::units::human_size(done),
                        crate::units::human_size(total)
                    ));
                }
            }
        }
    }

    /// Clears the bars (the last state of each stays on screen).
    pub fn finish(&self) {
        let state = self.lock();
        for bar in state.bars.values() {
            bar.finish();
        }
    }
}

fn status_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: {msg}").unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: {msg:<16} [{bar:40}] {bytes}/{total_bytes}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn line(text: &str) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

fn json_line(value: &serde_json::Value) {
    let _ = writeln!(io::stderr().lock(), "{value}");
}
