//! `kiln build --explain`: why a step ran instead of hitting the cache,
//! found by comparing its operation ([`crate::ops`]) with the inputs of the
//! most recent cache record of the same step.

use std::collections::HashMap;

use serde_json::Value;

use crate::cache::{CacheEntry, CacheRecord, StepIdentity};
use crate::context::SourceFile;

/// How many changed files a reason names before `and N more`.
const FILES_SHOWN: usize = 10;

/// The most recent record of each step, by stage and position and by
/// instruction text.
#[derive(Debug, Default)]
pub struct History {
    by_position: HashMap<(String, usize), CacheRecord>,
    by_text: HashMap<String, CacheRecord>,
}

impl History {
    /// The history in `entries` (least recently used first, as
    /// [`crate::cache::BuildCache::scan`] lists them).
    pub fn new(entries: Vec<CacheEntry>) -> Self {
        let mut history = Self::default();
        for entry in entries {
            let Some(step) = entry.record.step.clone() else {
                continue;
            };
            history
                .by_text
                .insert(step.instruction.clone(), entry.record.clone());
            history
                .by_position
                .insert((step.stage, step.position), entry.record);
        }
        history
    }

    /// For a stage on an image whose key is now `base`: `base image
    /// changed (old -> new)` when the first step after FROM last ran on
    /// another image.
    pub fn base_changed(&self, stage: &str, base: &str) -> Option<String> {
        let record = self.by_position.get(&(stage.to_owned(), 2))?;
        let before = record.inputs.as_ref()?.get("parent")?.as_str()?;
        (before != base && before.starts_with("sha256:")).then(|| {
            format!(
                "base image changed ({} -> {})",
                short_digest(&Value::from(before)),
                short_digest(&Value::from(base))
            )
        })
    }

    /// The sources digest of the previous build of `step`, if it was a
    /// COPY.
    pub fn previous_sources_digest(&self, step: &StepIdentity) -> Option<kiln_store::Digest> {
        let digest = self
            .previous(step)?
            .inputs
            .as_ref()?
            .get("sources_digest")?
            .as_str()?;
        kiln_store::digest::parse_sha256(digest).ok()
    }

    /// The record of the same stage and position, unless another record
    /// has the very same instruction text (the step moved).
    fn previous(&self, step: &StepIdentity) -> Option<&CacheRecord> {
        let by_position = self.by_position.get(&(step.stage.clone(), step.position));
        match by_position {
            Some(record) if same_text(record, step) => Some(record),
            _ => self.by_text.get(&step.instruction).or(by_position),
        }
    }
}

fn same_text(record: &CacheRecord, step: &StepIdentity) -> bool {
    record
        .step
        .as_ref()
        .is_some_and(|s| s.instruction == step.instruction)
}

/// What the stage a step is in started from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseKind {
    /// An image.
    Image,
    /// Another stage.
    Stage,
    /// `scratch`.
    Scratch,
}

/// What the engine knows about a step that missed the cache.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// The step.
    pub step: &'a StepIdentity,
    /// `None` when the cache was on; else the flag that turned it off.
    pub cache_off: Option<&'static str>,
    /// Whether the step before it in the stage ran in this build.
    pub previous_ran: bool,
    /// Whether it is the first step after FROM.
    pub first: bool,
    /// What the stage started from.
    pub base: BaseKind,
    /// The build arguments the stage declared (the rest of the
    /// environment is ENV).
    pub args: &'a [String],
}

/// Why a step ran: one line for the user.
pub fn reason(
    history: &History,
    facts: &Facts<'_>,
    now: &Value,
    files: Option<(&[SourceFile], Option<&[SourceFile]>)>,
) -> String {
    if let Some(flag) = facts.cache_off {
        return flag.to_owned();
    }
    let Some(previous) = history.previous(facts.step) else {
        return "no earlier build of this step".to_owned();
    };
    if !same_text(previous, facts.step) {
        return "instruction text changed".to_owned();
    }
    let Some(before) = &previous.inputs else {
        return "no earlier build of this step".to_owned();
    };
    compare(before, now, facts, files)
}

/// Why a step with inputs `now` ran, when it ran before with `before`.
fn compare(
    before: &Value,
    now: &Value,
    facts: &Facts<'_>,
    files: Option<(&[SourceFile], Option<&[SourceFile]>)>,
) -> String {
    let field = |v: &Value, name: &str| v.get(name).cloned().unwrap_or(Value::Null);
    if field(before, "op") != field(now, "op") {
        return "instruction text changed".to_owned();
    }
    // The step's own inputs first: they say what the user changed here,
    // also when an earlier step ran too.
    let (old_parent, new_parent) = (field(before, "parent"), field(now, "parent"));
    let parent_reason = (old_parent != new_parent).then(|| {
        if facts.previous_ran {
            "a previous step ran".to_owned()
        } else if facts.first && facts.base == BaseKind::Image {
            format!(
                "base image changed ({} -> {})",
                short_digest(&old_parent),
                short_digest(&new_parent)
            )
        } else if facts.first && facts.base == BaseKind::Stage {
            "base stage changed".to_owned()
        } else {
            "a previous step changed".to_owned()
        }
    });
    let mut reasons = Vec::new();
    let (Value::Object(old), Value::Object(new)) = (before, now) else {
        return parent_reason.unwrap_or_else(|| "inputs changed".to_owned());
    };
    let mut names: Vec<&String> = old.keys().chain(new.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let (a, b) = (field(before, name), field(now, name));
        if a == b || name == "parent" {
            continue;
        }
        let reason = match name.as_str() {
            "env" => env_changes(&a, &b, facts.args),
            "sources_digest" => files_changed(files),
            "argv" | "script" => "command changed".to_owned(),
            "user" => format!("user changed ({} -> {})", text(&a), text(&b)),
            "workdir" => format!("working directory changed ({} -> {})", text(&a), text(&b)),
            "network" => format!("network changed ({} -> {})", text(&a), text(&b)),
            "platform" => format!("platform changed ({} -> {})", text(&a), text(&b)),
            "security" => format!("security changed ({} -> {})", text(&a), text(&b)),
            "mounts" => "mounts changed".to_owned(),
            "dest" => format!("destination changed ({} -> {})", text(&a), text(&b)),
            "urls" => "remote files changed".to_owned(),
            other => format!("{other} changed"),
        };
        reasons.push(reason);
    }
    reasons.extend(parent_reason);
    if reasons.is_empty() {
        // Same inputs: the record was there but its layer was not.
        return "the cached result is gone".to_owned();
    }
    reasons.join("; ")
}

/// `sha256:` and the first 12 hex digits, then `..`.
fn short_digest(value: &Value) -> String {
    let text = text(value);
    match text.strip_prefix("sha256:") {
        Some(hex) if hex.len() > 12 => format!("sha256:{}..", hex.get(..12).unwrap_or(hex)),
        _ => text,
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "none".to_owned(),
        other => other.to_string(),
    }
}

/// The variables that differ: `build arg V changed (1 -> 2)`, `env X
/// changed (unset -> 1)`.
fn env_changes(before: &Value, now: &Value, args: &[String]) -> String {
    let pairs = |v: &Value| -> Vec<(String, String)> {
        serde_json::from_value::<Vec<(String, String)>>(v.clone()).unwrap_or_default()
    };
    let (old, new) = (pairs(before), pairs(now));
    let lookup = |list: &[(String, String)], name: &str| {
        list.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    };
    let mut names: Vec<&String> = new.iter().chain(&old).map(|(k, _)| k).collect();
    names.dedup();
    let mut seen = Vec::new();
    let mut changes = Vec::new();
    for name in names {
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        let (a, b) = (lookup(&old, name), lookup(&new, name));
        if a == b {
            continue;
        }
        let kind = if args.iter().any(|arg| arg == name) {
            "build arg"
        } else {
            "env"
        };
        let show = |v: Option<String>| v.unwrap_or_else(|| "unset".to_owned());
        changes.push(format!(
            "{kind} {name} changed ({} -> {})",
            show(a),
            show(b)
        ));
    }
    if changes.is_empty() {
        "environment order changed".to_owned()
    } else {
        changes.join(", ")
    }
}

/// `3 files changed: a (content), b (added), c (removed)`, from the
/// listing of the sources now and the one kept for the previous build.
fn files_changed(files: Option<(&[SourceFile], Option<&[SourceFile]>)>) -> String {
    let Some((now, Some(before))) = files else {
        return "source files changed".to_owned();
    };
    let changes = file_changes(before, now);
    if changes.is_empty() {
        return "source files changed".to_owned();
    }
    let count = changes.len();
    let mut shown: Vec<String> = changes
        .iter()
        .take(FILES_SHOWN)
        .map(|(path, what)| format!("{path} ({what})"))
        .collect();
    if count > FILES_SHOWN {
        shown.push(format!("and {} more", count - FILES_SHOWN));
    }
    let noun = if count == 1 { "file" } else { "files" };
    format!("{count} {noun} changed: {}", shown.join(", "))
}

/// What changed between two listings, in path order.
pub fn file_changes(before: &[SourceFile], now: &[SourceFile]) -> Vec<(String, &'static str)> {
    let old: HashMap<&str, &SourceFile> = before.iter().map(|f| (f.path.as_str(), f)).collect();
    let new: HashMap<&str, &SourceFile> = now.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut changes: Vec<(String, &'static str)> = Vec::new();
    for file in now {
        match old.get(file.path.as_str()) {
            None => changes.push((file.path.clone(), "added")),
            Some(was) if was.content != file.content => {
                changes.push((file.path.clone(), "content"));
            }
            Some(was) if was.meta != file.meta => changes.push((file.path.clone(), "metadata")),
            Some(_) => {}
        }
    }
    for file in before {
        if !new.contains_key(file.path.as_str()) {
            changes.push((file.path.clone(), "removed"));
        }
    }
    changes.sort_by(|a, b| a.0.cmp(&b.0));
    changes
}

#[cfg(test)]
mod tests;
