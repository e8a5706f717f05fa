//! Golden tests of `kiln parse`: every directory under `testdata/parse/`
//! is one case.
//!
//! A case holds a Dockerfile (and any context files) plus:
//! - `args`: the command line after `kiln`, one argument per line
//!   (default: `parse` and `.`), run with the case directory as cwd;
//! - `stdin`: piped to the command when present;
//! - `stdout`, `stderr`: the exact expected output (a missing file means
//!   the stream must be empty);
//! - `status`: the expected exit code (default 0).
//!
//! `KILN_BLESS=1` rewrites the expected files from the actual output (then
//! review the diff).
#![expect(clippy::unwrap_used, reason = "test harness fails loudly")]

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/parse");
    let mut cases: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    cases
}

fn read_or_empty(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn golden_cases() {
    let bless = std::env::var("KILN_BLESS").as_deref() == Ok("1");
    let mut failures = Vec::new();
    let all = cases();
    assert!(all.len() >= 30, "only {} cases", all.len());
    for case in &all {
        let args: Vec<String> = match fs::read_to_string(case.join("args")) {
            Ok(text) => text.lines().map(str::to_owned).collect(),
            Err(_) => vec!["parse".to_owned(), ".".to_owned()],
        };
        let mut command = Command::cargo_bin("kiln").unwrap();
        command
            .current_dir(case)
            .args(&args)
            .env_remove("KILN_ROOT")
            .env_remove("KILN_LOG");
        if let Ok(stdin) = fs::read(case.join("stdin")) {
            command.write_stdin(stdin);
        }
        let output = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let status = output.status.code().unwrap_or(-1);
        if bless {
            for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
                let path = case.join(name);
                if text.is_empty() {
                    let _ = fs::remove_file(path);
                } else {
                    fs::write(path, text).unwrap();
                }
            }
            if status == 0 {
                let _ = fs::remove_file(case.join("status"));
            } else {
                fs::write(case.join("status"), format!("{status}\n")).unwrap();
            }
            continue;
        }
        let want_stdout = read_or_empty(&case.join("stdout"));
        let want_stderr = read_or_empty(&case.join("stderr"));
        let want_status: i32 = read_or_empty(&case.join("status"))
            .trim()
            .parse()
            .unwrap_or(0);
        let name = case.file_name().unwrap().to_string_lossy();
        if stdout != want_stdout {
            failures.push(format!(
                "{name}: stdout\n--- expected\n{want_stdout}--- got\n{stdout}"
            ));
        }
        if stderr != want_stderr {
            failures.push(format!(
                "{name}: stderr\n--- expected\n{want_stderr}--- got\n{stderr}"
            ));
        }
        if status != want_status {
            failures.push(format!(
                "{name}: exit status {status}, expected {want_status}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn version_and_help() {
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("kiln {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("parse"), "{help}");
    assert!(help.contains("--root <DIR>"), "{help}");
    assert!(help.contains("--log-level"), "{help}");
    // Only commands that work are listed.
    for present in [
        "build", "import", "load", "save", "images", "tag", "rmi", "inspect", "history", "prune",
        "system", "cache",
    ] {
        assert!(
            help.contains(&format!("\n  {present} ")),
            "{present}: {help}"
        );
    }
    assert!(
        help.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")
                == "build Build an image from a Dockerfile and a context"),
        "{help}"
    );
}

#[test]
fn json_plan_is_valid_json_with_expanded_values() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .args(["parse", "--json", "--build-arg", "GREETING=hey"])
        .arg(&case)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stages = value["plan"]["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[0]["name"], "build");
    assert_eq!(stages[0]["steps"][0]["instruction"], "arg");
    assert_eq!(stages[0]["steps"][0]["args"][0][1], "hey");
    assert_eq!(value["plan"]["build_order"], serde_json::json!([0, 1]));
    assert_eq!(value["ignore_patterns"], serde_json::json!(["*.md"]));
}
