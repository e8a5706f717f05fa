//! BuildKit's parser test corpus: every `testfiles` case dumps to its
//! `result`, every `testfiles-negative` case is rejected, and
//! `testfile-line` has the documented line ranges.
//!
//! The corpus lives outside the repository (`../shared/conformance`, or
//! `KILN_CONFORMANCE_DIR`). When it is missing the test reports itself as
//! skipped, unless `KILN_REQUIRE_CONFORMANCE=1` (as in CI), where it fails.
#![expect(clippy::unwrap_used, reason = "test helpers fail loudly")]

use std::fs;
use std::path::PathBuf;

use kiln_parser::{ast, instructions};

mod common;

fn corpus() -> Option<PathBuf> {
    common::corpus("parser")
}

fn cases(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    cases
}

#[test]
fn positive_cases_dump_to_their_result() {
    let Some(dir) = corpus() else { return };
    let mut failures = Vec::new();
    let all = cases(&dir.join("testfiles"));
    for case in &all {
        let text = fs::read_to_string(case.join("Dockerfile")).unwrap();
        let expected = fs::read_to_string(case.join("result")).unwrap();
        match ast::parse("Dockerfile", &text) {
            Ok(df) => {
                let dump = df.dump();
                let got: Vec<&str> = dump.lines().collect();
                let want: Vec<&str> = expected.lines().collect();
                if got != want {
                    failures.push(format!(
                        "{}:\n--- expected\n{expected}\n--- got\n{dump}",
                        case.display()
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: {}", case.display(), e.render())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(all.len() >= 27, "only {} positive cases found", all.len());
    eprintln!("ran {} positive AST cases", all.len());
}

#[test]
fn negative_cases_are_rejected() {
    let Some(dir) = corpus() else { return };
    let all = cases(&dir.join("testfiles-negative"));
    for case in &all {
        let text = fs::read_to_string(case.join("Dockerfile")).unwrap();
        // BuildKit rejects these in the parser or when building
        // instructions; either layer may reject.
        let result = ast::parse("Dockerfile", &text).and_then(|df| instructions::parse_stages(&df));
        let error = result.expect_err(&format!("{} must be rejected", case.display()));
        let rendered = error.render();
        assert!(rendered.contains('^'), "{rendered}");
    }
    assert!(all.len() >= 4, "only {} negative cases found", all.len());
    eprintln!("ran {} negative AST cases", all.len());
}

#[test]
fn negative_cases_give_buildkit_messages() {
    let Some(dir) = corpus() else { return };
    let message = |name: &str| {
        let text = fs::read_to_string(dir.join("testfiles-negative").join(name).join("Dockerfile"))
            .unwrap();
        ast::parse("Dockerfile", &text)
            .and_then(|df| instructions::parse_stages(&df))
            .unwrap_err()
            .kind
            .to_string()
    };
    assert_eq!(
        message("empty_dockerfile"),
        "the Dockerfile cannot be empty"
    );
    assert_eq!(message("only_comments"), "file with no instructions");
    assert_eq!(message("env_no_value"), "ENV must have two arguments");
    assert_eq!(
        message("shykes-nested-json"),
        "when using JSON array syntax, arrays must be comprised of strings only"
    );
}

#[test]
fn line_numbers_match() {
    let Some(dir) = corpus() else { return };
    let text = fs::read_to_string(dir.join("testfile-line/Dockerfile")).unwrap();
    let df = ast::parse("Dockerfile", &text).unwrap();
    let ranges: Vec<(usize, usize)> = df
        .nodes
        .iter()
        .map(|n| (n.start_line, n.end_line))
        .collect();
    assert_eq!(ranges, vec![(5, 5), (11, 12), (17, 31)]);
}
