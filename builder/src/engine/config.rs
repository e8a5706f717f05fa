//! Steps that only change the image config (ENV, LABEL, CMD, ...), and the
//! history text BuildKit writes for each step.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kiln_parser::golang::quote;
use kiln_parser::plan::{Healthcheck, Step, StepKind};
use kiln_parser::values::format_duration;
use kiln_store::spec::{ContainerConfig, History};

use super::{HISTORY_COMMENT, StageState};

/// A history entry as BuildKit writes it.
pub fn history_for(created_by: String, created: &str) -> History {
    History {
        created: Some(created.to_owned()),
        created_by: Some(created_by),
        author: None,
        comment: Some(HISTORY_COMMENT.to_owned()),
        empty_layer: false,
    }
}

/// `K=V` split at the first `=`.
pub(super) fn split_env(entry: &str) -> (String, String) {
    match entry.split_once('=') {
        Some((k, v)) => (k.to_owned(), v.to_owned()),
        None => (entry.to_owned(), String::new()),
    }
}

/// Sets `key` in a `K=V` list in place, or appends it (BuildKit's
/// `addEnv`).
fn add_env(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    if let Some(slot) = env.iter_mut().find(|e| split_env(e).0 == key) {
        *slot = entry;
    } else {
        env.push(entry);
    }
}

/// Sets `key` in the environment RUN sees.
pub(super) fn set_run_env(run_env: &mut Vec<(String, String)>, key: &str, value: &str) {
    if let Some(slot) = run_env.iter_mut().find(|(k, _)| k == key) {
        value.clone_into(&mut slot.1);
    } else {
        run_env.push((key.to_owned(), value.to_owned()));
    }
}

/// Go's `%q` of a string slice: `["a" "b"]`.
pub(super) fn go_quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `%v` of a string slice: `[a b]`.
fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// The config's `Healthcheck` and BuildKit's history text for it (Go's
/// `%q` of the struct: durations quoted, the retry count as a rune).
fn healthcheck(h: &Healthcheck) -> (serde_json::Value, String) {
    match h {
        Healthcheck::None => (
            serde_json::json!({ "Test": ["NONE"] }),
            "HEALTHCHECK &{[\"NONE\"] \"0s\" \"0s\" \"0s\" \"0s\" '\\x00'}".to_owned(),
        ),
        Healthcheck::Cmd {
            test,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let mut value = serde_json::Map::new();
            value.insert("Test".to_owned(), serde_json::json!(test));
            for (name, v) in [
                ("Interval", interval),
                ("Timeout", timeout),
                ("StartPeriod", start_period),
                ("StartInterval", start_interval),
            ] {
                if *v != 0 {
                    value.insert(name.to_owned(), serde_json::json!(v));
                }
            }
            if *retries != 0 {
                value.insert("Retries".to_owned(), serde_json::json!(retries));
            }
            let rune = u32::try_from(*retries)
                .ok()
                .and_then(char::from_u32)
                .map_or_else(|| "'\\ufffd'".to_owned(), go_rune);
            let text = format!(
                "HEALTHCHECK &{{{} \"{}\" \"{}\" \"{}\" \"{}\" {rune}}}",
                go_quoted_list(test),
                format_duration(*interval),
                format_duration(*timeout),
                format_duration(*start_period),
                format_duration(*start_interval),
            );
            (serde_json::Value::Object(value), text)
        }
    }
}

/// Go's `%q` of a rune.
fn go_rune(c: char) -> String {
    match c {
        '\'' => "'\\''".to_owned(),
        '\\' => "'\\\\'".to_owned(),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => format!("'\\x{:02x}'", c as u32),
        c => format!("'{c}'"),
    }
}

/// The `RUN` history text: `|N K=V ... argv` when the stage has ARGs
/// (BuildKit's `runCommandString`).
pub(super) fn run_command_string(argv: &[String], state: &StageState) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (key, value) in &state.args {
        let v = state
            .run_env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .or_else(|| value.clone())
            .unwrap_or_default();
        if let Some(slot) = pairs.iter_mut().find(|(k, _)| k == key) {
            slot.1 = v;
        } else {
            pairs.push((key.clone(), v));
        }
    }
    let mut parts: Vec<String> = Vec::new();
    if !pairs.is_empty() {
        parts.push(format!("|{}", pairs.len()));
        parts.extend(pairs.into_iter().map(|(k, v)| format!("{k}={v}")));
    }
    parts.extend(argv.iter().cloned());
    parts.join(" ")
}

/// Applies a config instruction (ENV, LABEL, CMD, ENTRYPOINT, USER,
/// VOLUME, EXPOSE, STOPSIGNAL, HEALTHCHECK, SHELL, ONBUILD) to `config`
/// as BuildKit's and Docker's dispatchers do; `cmd_set` says whether the
/// stage (or the `import --change` list) set CMD before, which keeps it
/// over a later ENTRYPOINT. The one place such a step changes a config:
/// builds, and `kiln import --change`. Returns false for other steps.
pub fn apply_to_config(config: &mut ContainerConfig, kind: &StepKind, cmd_set: &mut bool) -> bool {
    match kind {
        StepKind::Env { pairs } => {
            let env = config.env.get_or_insert_with(Vec::new);
            for (k, v) in pairs {
                add_env(env, k, v);
            }
        }
        StepKind::Label { pairs } => {
            let labels = config.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in pairs {
                labels.insert(k.clone(), v.clone());
            }
        }
        StepKind::Cmd { argv } => {
            config.cmd = Some(argv.clone());
            *cmd_set = true;
        }
        StepKind::Entrypoint { argv } => {
            config.entrypoint = if argv.is_empty() {
                None
            } else {
                Some(argv.clone())
            };
            if !*cmd_set {
                config.cmd = None;
            }
        }
        StepKind::User { user } => config.user = Some(user.clone()),
        StepKind::Volume { paths } => {
            let volumes = config.volumes.get_or_insert_with(BTreeMap::new);
            for p in paths {
                volumes.insert(p.clone(), serde_json::json!({}));
            }
        }
        StepKind::Expose { ports } => {
            let exposed = config.exposed_ports.get_or_insert_with(BTreeMap::new);
            for p in ports {
                exposed.insert(p.clone(), serde_json::json!({}));
            }
        }
        StepKind::Stopsignal { signal } => config.stop_signal = Some(signal.clone()),
        StepKind::Healthcheck(h) => config.healthcheck = Some(healthcheck(h).0),
        StepKind::Shell { shell } => config.shell = Some(shell.clone()),
        StepKind::Onbuild { expression } => {
            config
                .on_build
                .get_or_insert_with(Vec::new)
                .push(expression.clone());
        }
        _ => return false,
    }
    true
}

/// Applies a step that changes only the config, with its history entry
/// (BuildKit's text for it) and what it does to the stage's RUN
/// environment and ARGs.
pub(super) fn apply_metadata(state: &mut StageState, step: &Step, created: &str) {
    let config = state
        .config
        .config
        .get_or_insert_with(ContainerConfig::default);
    apply_to_config(config, &step.kind, &mut state.cmd_set);
    let text = match &step.kind {
        StepKind::Env { pairs } => {
            let mut text = "ENV".to_owned();
            for (k, v) in pairs {
                set_run_env(&mut state.run_env, k, v);
                let _ = write!(text, " {k}={v}");
            }
            Some(text)
        }
        StepKind::Label { pairs } => {
            let mut text = "LABEL".to_owned();
            for (k, v) in pairs {
                let _ = write!(text, " {k}={v}");
            }
            Some(text)
        }
        StepKind::Arg { args } => {
            let mut parts = Vec::new();
            for (k, v) in args {
                if let Some(v) = v {
                    set_run_env(&mut state.run_env, k, v);
                    parts.push(format!("{k}={v}"));
                } else {
                    parts.push(k.clone());
                }
                state.args.push((k.clone(), v.clone()));
            }
            Some(format!("ARG {}", parts.join(" ")))
        }
        StepKind::Cmd { argv } => {
            // BuildKit marks every CMD so (Docker's import does not).
            config.args_escaped = Some(true);
            Some(format!("CMD {}", go_quoted_list(argv)))
        }
        StepKind::Entrypoint { argv } => Some(format!("ENTRYPOINT {}", go_quoted_list(argv))),
        StepKind::User { user } => Some(format!("USER {user}")),
        StepKind::Volume { paths } => Some(format!("VOLUME {}", go_list(paths))),
        StepKind::Expose { ports } => {
            let mut sorted = ports.clone();
            sorted.sort();
            sorted.dedup();
            let items: Vec<String> = sorted.iter().map(|p| format!("{p}:{{}}")).collect();
            Some(format!("EXPOSE map[{}]", items.join(" ")))
        }
        StepKind::Stopsignal { signal } => Some(format!("STOPSIGNAL {signal}")),
        StepKind::Healthcheck(h) => Some(healthcheck(h).1),
        StepKind::Shell { shell } => Some(format!("SHELL {}", go_list(shell))),
        StepKind::Maintainer { name } => {
            state.config.author = Some(name.clone());
            Some(format!("MAINTAINER {name}"))
        }
        // BuildKit records no history entry for ONBUILD.
        StepKind::Onbuild { .. } | StepKind::Run { .. } | StepKind::Copy(_) | StepKind::Add(_) => {
            None
        }
        // Only `WORKDIR /` comes here (see is_filesystem_step).
        StepKind::Workdir { path } => {
            config.working_dir = Some(path.clone());
            Some(format!("WORKDIR {path}"))
        }
    };
    if let Some(text) = text {
        let mut entry = history_for(text, created);
        entry.empty_layer = true;
        state.config.history.push(entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_lists() {
        assert_eq!(
            go_quoted_list(&["cat".to_owned(), "/a b".to_owned()]),
            r#"["cat" "/a b"]"#
        );
        assert_eq!(go_quoted_list(&[]), "[]");
    }
}
