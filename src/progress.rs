//! STUB progress (replaced by the cacheui branch).
#![allow(missing_docs, clippy::all, clippy::pedantic)]
use kiln_builder::progress::{Event, Reporter};
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    Auto,
    Tty,
    Plain,
    Quiet,
    Json,
}
impl ProgressMode {
    pub fn from_flag(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "auto" => Self::Auto,
            "tty" => Self::Tty,
            "plain" => Self::Plain,
            "quiet" => Self::Quiet,
            "json" => Self::Json,
            o => anyhow::bail!("bad progress {o}"),
        })
    }
}
struct Plain;
impl Reporter for Plain {
    fn report(&self, e: Event) {
        eprintln!("{e:?}");
    }
}
pub fn reporter(mode: ProgressMode) -> Box<dyn Reporter> {
    match mode {
        ProgressMode::Quiet => Box::new(kiln_builder::progress::Silent),
        _ => Box::new(Plain),
    }
}
