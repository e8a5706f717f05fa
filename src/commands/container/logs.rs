//! `kiln logs`, and following a container's output for a named foreground
//! run or `kiln start -a`.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;

use super::Container;
use super::monitor::log_path;

/// Arguments of `kiln logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow the output while the container runs.
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines (`all` for every line).
    #[arg(short = 'n', long, value_name = "N", default_value = "all")]
    tail: String,
    /// Show the time of each line.
    #[arg(short, long)]
    timestamps: bool,
    /// Only lines since a time (RFC 3339, Unix seconds, or a duration
    /// before now such as 10m or 1h30m).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// The container (ID, ID prefix or name).
    container: String,
}

/// One log entry.
struct Entry {
    log: String,
    stderr: bool,
    time: String,
}

fn parse_entry(line: &str) -> Option<Entry> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    Some(Entry {
        log: value.get("log")?.as_str()?.to_owned(),
        stderr: value.get("stream").and_then(serde_json::Value::as_str) == Some("stderr"),
        time: value
            .get("time")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_owned(),
    })
}

/// The log files of a container, oldest first.
fn log_files(current: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for n in (1..100).rev() {
        let path = PathBuf::from(format!("{}.{n}", current.display()));
        if path.exists() {
            files.push(path);
        }
    }
    files.push(current.to_owned());
    files
}

/// `--since`: a time as Docker takes it.
fn parse_since(text: &str) -> anyhow::Result<jiff::Timestamp> {
    if let Ok(time) = text.parse::<jiff::Timestamp>() {
        return Ok(time);
    }
    if let Ok(seconds) = text.parse::<f64>() {
        #[expect(
            clippy::cast_possible_truncation,
            reason = "nanoseconds of a Unix time"
        )]
        let nanos = (seconds * 1e9) as i128;
        return jiff::Timestamp::from_nanosecond(nanos).context("--since is out of range");
    }
    let mut total = 0.0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600.0,
            'm' => 60.0,
            's' => 1.0,
            _ => bail!("invalid value for \"since\": {text:?}"),
        };
        let n: f64 = number
            .parse()
            .with_context(|| format!("invalid value for \"since\": {text:?}"))?;
        total += n * unit;
        number.clear();
    }
    if !number.is_empty() || total == 0.0 {
        bail!("invalid value for \"since\": {text:?}");
    }
    let span = jiff::SignedDuration::try_from_secs_f64(total)
        .with_context(|| format!("invalid value for \"since\": {text:?}"))?;
    jiff::Timestamp::now()
        .checked_sub(span)
        .context("--since is out of range")
}

/// Writes one entry to stdout or stderr.
fn print(entry: &Entry, timestamps: bool) {
    let text = if timestamps {
        format!("{} {}", entry.time, entry.log)
    } else {
        entry.log.clone()
    };
    if entry.stderr {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
    } else {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

/// Runs `kiln logs`.
pub fn run(root: Option<&Path>, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let container = super::find_in(&super::containers_at(root), &args.container)?;
    let tail = if args.tail == "all" || args.tail == "-1" {
        None
    } else {
        Some(
            args.tail
                .parse::<usize>()
                .with_context(|| format!("invalid value for \"tail\": {:?}", args.tail))?,
        )
    };
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let current = log_path(&container.dir, &container.config.id);
    // The current file is opened first: whatever is appended from here
    // on is read from this descriptor when following.
    let mut followed = File::open(&current).ok();
    let mut entries = Vec::new();
    for path in log_files(&current) {
        let is_current = path == current;
        let reader: Box<dyn std::io::Read> = match (is_current, &followed) {
            (true, Some(file)) => Box::new(file.try_clone()?),
            _ => match File::open(&path) {
                Ok(file) => Box::new(file),
                Err(_) => continue,
            },
        };
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if let Some(entry) = parse_entry(&line) {
                entries.push(entry);
            }
        }
    }
    let keep = |entry: &Entry| {
        since.is_none_or(|since| {
            entry
                .time
                .parse::<jiff::Timestamp>()
                .is_ok_and(|t| t >= since)
        })
    };
    let entries: Vec<Entry> = entries.into_iter().filter(|e| keep(e)).collect();
    let skip = tail.map_or(0, |n| entries.len().saturating_sub(n));
    for entry in entries.iter().skip(skip) {
        print(entry, args.timestamps);
    }
    if args.follow {
        let dir = container.dir.clone();
        let running = move || {
            kiln_store::containers::current_state(&dir)
                .is_ok_and(|s| matches!(s.status.as_str(), "running" | "restarting" | "created"))
        };
        let mut file = match followed.take() {
            Some(mut file) => {
                file.seek(SeekFrom::End(0))?;
                file
            }
            None => wait_for_file(&current, &running)?,
        };
        follow(&current, &mut file, &running, args.timestamps);
    }
    Ok(ExitCode::SUCCESS)
}

fn wait_for_file(path: &Path, running: &dyn Fn() -> bool) -> anyhow::Result<File> {
    loop {
        if let Ok(file) = File::open(path) {
            return Ok(file);
        }
        if !running() {
            bail!("cannot open {}: the container has no log", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Prints what is appended to `file` (the log at `path`, reopened when it
/// is rotated) until `running` says no and nothing more is left.
fn follow(path: &Path, file: &mut File, running: &dyn Fn() -> bool, timestamps: bool) {
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let was_running = running();
        let mut got_any = false;
        loop {
            match file.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    got_any = true;
                    pending.extend_from_slice(buf.get(..n).unwrap_or_default());
                    while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=end).collect();
                        if let Some(entry) = parse_entry(&String::from_utf8_lossy(&line)) {
                            print(&entry, timestamps);
                        }
                    }
                }
            }
        }
        // Rotated: the name now points at a new file, read from its start
        // (what was left in the old one was read just above).
        let rotated = match (std::fs::metadata(path), file.metadata()) {
            (Ok(now), Ok(open)) => now.ino() != open.ino(),
            _ => false,
        };
        if rotated && let Ok(new) = File::open(path) {
            *file = new;
            pending.clear();
            continue;
        }
        if !was_running && !got_any {
            return;
        }
        if !got_any {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The log of a container about to be started and attached, opened
/// before the start: an `--rm` container may be gone (its directory
/// removed) before the attached kiln reads its output.
pub struct Log {
    file: File,
    from: u64,
}

impl Log {
    /// Opens (creating) `container`'s log; what is appended from now on
    /// will be shown.
    pub fn open(container: &Container) -> anyhow::Result<Log> {
        let path = log_path(&container.dir, &container.config.id);
        let file = File::options()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let from = file.metadata().map_or(0, |m| m.len());
        Ok(Log { file, from })
    }
}

/// A SIGINT, SIGTERM or SIGHUP that reached an attached kiln, to pass on
/// to the container (Docker's sig-proxy); 0 when none is pending.
static PENDING_SIGNAL: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn note_signal(signal: libc::c_int) {
    PENDING_SIGNAL.store(signal, std::sync::atomic::Ordering::SeqCst);
}

/// Passes a pending signal on to the container's process.
fn proxy_signal(container: &Container) {
    let signal = PENDING_SIGNAL.swap(0, std::sync::atomic::Ordering::SeqCst);
    if signal == 0 {
        return;
    }
    if let Ok(state) = kiln_store::containers::current_state(&container.dir)
        && let Some(fd) = super::commands::pidfd(state.pid, state.pid_start)
    {
        let _ = super::commands::send(&fd, signal);
    }
}

/// Follows the output `container` writes from log offset `from` on while
/// `monitor` (the container's monitor, a child of this process) lives;
/// returns the container's exit code, which the monitor exits with.
/// SIGINT, SIGTERM and SIGHUP to this process are passed on to the
/// container, as `docker run` does.
pub fn attach(
    container: &Container,
    log: Log,
    monitor: std::process::Child,
) -> anyhow::Result<ExitCode> {
    let path = log_path(&container.dir, &container.config.id);
    let Log { mut file, from } = log;
    let exited = std::cell::RefCell::new(None);
    let monitor = std::cell::RefCell::new(monitor);
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores into an atomic.
        unsafe {
            libc::signal(signal, note_signal as *const () as libc::sighandler_t);
        }
    }
    let running = || {
        proxy_signal(container);
        let mut exited = exited.borrow_mut();
        if exited.is_none() {
            *exited = monitor.borrow_mut().try_wait().ok().flatten();
        }
        exited.is_none()
    };
    file.seek(SeekFrom::Start(from))?;
    follow(&path, &mut file, &running, false);
    let status = match exited.into_inner() {
        Some(status) => status,
        None => monitor.borrow_mut().wait()?,
    };
    let code = status.code().unwrap_or(1);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(255)))
}
