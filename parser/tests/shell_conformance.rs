//! Runs `BuildKit`'s shell lexer test data (`envVarTest`, `wordsTest`) against
//! `kiln_parser::shell`, the way upstream's `lex_test.go` reads them.
#![expect(clippy::panic, reason = "test harness reports failures by panicking")]

use kiln_parser::shell::Lexer;

mod common;

/// Reads a corpus file, or `None` when the corpus is absent and not
/// required (reported as skipped).
fn read_corpus(name: &str) -> Option<String> {
    let path = common::corpus("shell")?.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn env_var_test() {
    let Some(text) = read_corpus("envVarTest") else {
        return;
    };
    let env = pairs(&[
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]);
    let lexer = Lexer::new('\\');
    let mut run = 0;
    let mut failures = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        if raw.starts_with('#') {
            continue;
        }
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        let [platform, source, expected] = fields.as_slice() else {
            panic!("envVarTest:{line_no}: expected 3 fields: {raw:?}");
        };
        let (platform, source, expected) = (platform.trim(), source.trim(), expected.trim());
        match platform {
            "W" => continue,
            "A" | "U" => {}
            other => panic!("envVarTest:{line_no}: invalid platform tag {other:?}"),
        }
        run += 1;
        let got = lexer.process_word(source, &env);
        match (expected, got) {
            ("error", Err(_)) => {}
            ("error", Ok(x)) => failures.push(format!(
                "envVarTest:{line_no}: {source:?} should fail, got {:?}",
                x.value
            )),
            (want, Ok(x)) if x.value == want => {}
            (want, got) => failures.push(format!(
                "envVarTest:{line_no}: {source:?}: want {want:?}, got {got:?}"
            )),
        }
    }
    eprintln!("envVarTest: {run} rows run");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(run > 0, "no envVarTest rows found");
}

#[test]
fn words_test() {
    let Some(text) = read_corpus("wordsTest") else {
        return;
    };
    let lexer = Lexer::new('\\');
    let mut env: Vec<(String, String)> = Vec::new();
    let mut run = 0;
    let mut failures = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            let entry = rest.trim_start_matches(' ');
            let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
            env.push((k.to_owned(), v.to_owned()));
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        let [input, expected] = fields.as_slice() else {
            panic!("wordsTest:{line_no}: expected exactly one '|': {line:?}");
        };
        let input = input.trim();
        let expected: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
        run += 1;
        let got = lexer
            .process_words(input, &env)
            .unwrap_or_else(|_| vec!["error".to_owned()]);
        if got != expected {
            failures.push(format!(
                "wordsTest:{line_no}: {input:?}: want {expected:?}, got {got:?}"
            ));
        }
    }
    eprintln!("wordsTest: {run} rows run");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(run > 0, "no wordsTest rows found");
}
