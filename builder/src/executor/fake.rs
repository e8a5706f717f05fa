//! A fake [`Executor`] for the engine's tests: it runs nothing, writes the
//! files it was told to into the step's upper directory, exits with the
//! code it was told to, and counts runs per command. It needs no root.

use std::collections::HashMap;
use std::fs;
use std::sync::Mutex;

use kiln_runtime::{NetworkPool, OutputSink, RunOutcome, RunSpec, RuntimeError, Stream};

use super::Executor;

/// What the fake does for one command.
#[derive(Debug, Clone, Default)]
struct Behaviour {
    /// Files (paths in the container, contents) written into the upper
    /// directory.
    files: Vec<(String, Vec<u8>)>,
    exit_code: i32,
}

/// Counts runs by command: the last element of the argv (the script of a
/// shell-form RUN, `/bin/sh -c SCRIPT`).
#[derive(Debug, Default)]
pub(crate) struct FakeExecutor {
    behaviours: Mutex<HashMap<String, Behaviour>>,
    runs: Mutex<HashMap<String, usize>>,
    /// The environment of each command's last run.
    env: Mutex<HashMap<String, Vec<String>>>,
}

fn command(spec: &RunSpec) -> String {
    spec.argv.last().cloned().unwrap_or_default()
}

impl FakeExecutor {
    /// `command` writes `content` at `path` (absolute, in the container).
    pub(crate) fn writes(&self, command: &str, path: &str, content: &str) {
        let mut behaviours = self.behaviours.lock().unwrap();
        let behaviour = behaviours.entry(command.to_owned()).or_default();
        behaviour.files.retain(|(p, _)| p != path);
        behaviour
            .files
            .push((path.to_owned(), content.as_bytes().to_vec()));
    }

    /// `command` exits with `exit_code` (after writing its files).
    pub(crate) fn exits(&self, command: &str, exit_code: i32) {
        self.behaviours
            .lock()
            .unwrap()
            .entry(command.to_owned())
            .or_default()
            .exit_code = exit_code;
    }

    /// How many times `command` ran.
    pub(crate) fn runs(&self, command: &str) -> usize {
        self.runs.lock().unwrap().get(command).copied().unwrap_or(0)
    }

    /// How many runs there were in all.
    pub(crate) fn total_runs(&self) -> usize {
        self.runs.lock().unwrap().values().sum()
    }

    /// The environment `command` last ran with.
    pub(crate) fn env(&self, command: &str) -> Vec<String> {
        self.env
            .lock()
            .unwrap()
            .get(command)
            .cloned()
            .unwrap_or_default()
    }
}

impl Executor for FakeExecutor {
    fn run(
        &self,
        spec: &RunSpec,
        output: OutputSink<'_>,
        _networks: Option<&NetworkPool>,
    ) -> Result<RunOutcome, RuntimeError> {
        let command = command(spec);
        *self
            .runs
            .lock()
            .unwrap()
            .entry(command.clone())
            .or_default() += 1;
        self.env
            .lock()
            .unwrap()
            .insert(command.clone(), spec.env.clone());
        let behaviour = self
            .behaviours
            .lock()
            .unwrap()
            .get(&command)
            .cloned()
            .unwrap_or_default();
        for (path, content) in &behaviour.files {
            let file = spec.upper.join(path.trim_start_matches('/'));
            if let Some(parent) = file.parent() {
                fs::create_dir_all(parent).unwrap();
            }
            fs::write(&file, content).unwrap();
        }
        output(Stream::Stdout, format!("ran {command}\n").as_bytes());
        Ok(RunOutcome {
            exit_code: behaviour.exit_code,
            oom_killed: false,
            stdout: Vec::new(),
            stderr: Vec::new(),
        })
    }
}
