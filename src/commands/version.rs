//! `kiln version`: the Client section of `docker version` (kiln has no
//! daemon, so no Server section), or a Go template over it.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use clap::Args;
use serde_json::{Value, json};

use crate::template::Template;

/// Arguments of `kiln version`.
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Format the output with a Go template (`{{.Client.Version}}`).
    #[arg(short, long, value_name = "TEMPLATE")]
    format: Option<String>,
}

/// The version document, with `docker version --format`'s field names;
/// `Server` is null as for a Docker client without a daemon.
fn version_document() -> Value {
    let platform = kiln_parser::values::Platform::host();
    json!({
        "Client": {
            "Platform": {"Name": "kiln"},
            "Version": env!("CARGO_PKG_VERSION"),
            "Os": platform.os,
            "Arch": platform.architecture,
        },
        "Server": null,
    })
}

/// Docker's layout: `Client: NAME`, then ` Label:` padded to 20 columns
/// (its tabwriter's minimum width) and the value.
fn render(document: &Value) -> String {
    let client = &document["Client"];
    let field = |key: &str| client[key].as_str().unwrap_or("").to_owned();
    let mut out = format!(
        "Client: {}\n",
        client["Platform"]["Name"].as_str().unwrap_or("")
    );
    for (label, value) in [
        ("Version:", field("Version")),
        ("OS/Arch:", format!("{}/{}", field("Os"), field("Arch"))),
    ] {
        let _ = writeln!(out, " {label:<19}{value}");
    }
    out
}

/// Runs `kiln version`.
pub fn run(args: &VersionArgs) -> anyhow::Result<ExitCode> {
    let document = version_document();
    let mut stdout = std::io::stdout().lock();
    match &args.format {
        Some(format) => {
            let template = Template::parse_flag(format)?;
            writeln!(stdout, "{}", template.execute(&document)?)?;
        }
        None => write!(stdout, "{}", render(&document))?,
    }
    Ok(ExitCode::SUCCESS)
}
