//! `kiln top`: the processes of a running container, as `docker top`
//! shows them: the host's `ps` (default options `-ef`), its rows kept for
//! the container's processes only.

use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::{Context as _, bail};
use clap::Args;

/// Arguments of `kiln top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// The container (ID, ID prefix or name).
    container: String,
    /// Options for `ps` (default `-ef`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PS OPTIONS"
    )]
    options: Vec<String>,
}

/// Runs `kiln top`.
pub fn run(root: Option<&Path>, args: &TopArgs) -> anyhow::Result<ExitCode> {
    let store = crate::commands::open_store(root)?;
    let container = super::find(&store, &args.container)?;
    let pids = super::processes(&container)?;
    let options = if args.options.is_empty() {
        vec!["-ef".to_owned()]
    } else {
        args.options.clone()
    };
    let output = Command::new("ps")
        .args(&options)
        .output()
        .context("cannot run ps")?;
    if !output.status.success() {
        bail!("ps: {}", String::from_utf8_lossy(&output.stderr).trim_end());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    // As Docker: the PID column is found by name in the header.
    let Some(column) = header.split_whitespace().position(|h| h == "PID") else {
        bail!("Couldn't find PID field in ps output");
    };
    let mut out = vec![header.to_owned()];
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(column)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            out.push(line.to_owned());
        }
    }
    println!("{}", out.join("\n"));
    Ok(ExitCode::SUCCESS)
}
