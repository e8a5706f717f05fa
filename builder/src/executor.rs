//! What runs a RUN step's process: the engine hands an [`Executor`] the
//! step's [`RunSpec`] (the stage's snapshots as lowers, the fresh upper
//! directory that becomes the layer, mounts, environment, argv, network)
//! and gets the exit status back, with the output streamed to a sink.
//!
//! The executor also makes the mounts the engine itself needs (BuildKit's
//! worker pairs its executor with a snapshotter the same way): overlays
//! of a stage for COPY, ADD and WORKDIR, and binds of `RUN --mount`
//! sources. By default they are the kernel's, made in this process.
//!
//! The build uses [`RuntimeExecutor`] (kiln-runtime's containers) unless
//! [`crate::BuildOptions::executor`] names another; the engine's tests use
//! a fake that writes files into the upper directory and counts runs, so
//! scheduling and the cache are tested without root (as BuildKit's solver
//! tests count executor calls), beside the end-to-end tests.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use kiln_runtime::{NetworkPool, OutputSink, RunOutcome, RunSpec, RuntimeError};

use crate::error::BuildError;
use crate::mounts::Mounted;

#[cfg(test)]
pub(crate) mod fake;

/// Runs the process of a RUN step.
pub trait Executor: std::fmt::Debug + Send + Sync {
    /// Runs `spec` to its end: whatever it writes to its root lands in
    /// `spec.upper`, each chunk of its stdout and stderr goes to `output`
    /// as it comes; `networks` lends the isolated network
    /// (`Network::Isolated`). A non-zero exit is an outcome, not an error.
    ///
    /// # Errors
    ///
    /// The process could not be run (or waited for).
    fn run(
        &self,
        spec: &RunSpec,
        output: OutputSink<'_>,
        networks: Option<&NetworkPool>,
    ) -> Result<RunOutcome, RuntimeError>;

    /// Checks that executables of `os`/`architecture` can run, before a
    /// RUN of that platform starts; the error says what is missing.
    ///
    /// # Errors
    ///
    /// They cannot: no CPU or emulator for them.
    fn check_platform(&self, os: &str, architecture: &str) -> Result<(), String> {
        let _ = (os, architecture);
        Ok(())
    }

    /// Mounts an overlay of `lowers` (base first) at `target`, writable
    /// into `upper` (with its `work` directory) when given; see
    /// [`Mounted::overlay`].
    ///
    /// # Errors
    ///
    /// The mount failed.
    fn overlay(
        &self,
        lowers: &[PathBuf],
        upper: Option<(&Path, &Path)>,
        empty: &Path,
        target: &Path,
    ) -> Result<Mounted, BuildError> {
        Mounted::overlay(lowers, upper, empty, target)
    }

    /// Binds `source` (resolved inside its root) on `target`; see
    /// [`Mounted::bind`].
    ///
    /// # Errors
    ///
    /// The mount failed.
    fn bind(
        &self,
        source: &OwnedFd,
        target: &Path,
        read_only: bool,
    ) -> Result<Mounted, BuildError> {
        Mounted::bind(source, target, read_only)
    }
}

/// The executor of `kiln build`: a kiln-runtime container per RUN.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuntimeExecutor;

impl Executor for RuntimeExecutor {
    fn run(
        &self,
        spec: &RunSpec,
        output: OutputSink<'_>,
        networks: Option<&NetworkPool>,
    ) -> Result<RunOutcome, RuntimeError> {
        kiln_runtime::run_streaming(spec, output, networks)
    }

    /// Natively, or through a `binfmt_misc` handler with the F flag
    /// (qemu-user-static), which the kernel runs for every executable of
    /// that architecture, inside the container as well.
    fn check_platform(&self, os: &str, architecture: &str) -> Result<(), String> {
        // A config without a platform (hand-made images) runs as before.
        if architecture.is_empty() {
            return Ok(());
        }
        let os = if os.is_empty() { "linux" } else { os };
        kiln_runtime::binfmt::emulation(os, architecture)
            .map(drop)
            .map_err(|e| e.to_string())
    }
}
