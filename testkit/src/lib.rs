//! What kiln's tests share across crates: one way to skip a test whose
//! requirement (root, a tool, a service, the conformance corpus) is not
//! met.
//!
//! A skip is never silent. Outside CI it is printed on the terminal: the
//! line is written to the process's stderr directly, past the test
//! harness's capture of `println!`/`eprintln!`, so `cargo test` shows it
//! without `--nocapture`; with `KILN_SKIP_LOG=FILE` (scripts/test sets
//! it) the line is also appended to FILE. In CI, where `KILN_REQUIRE_<NAME>=1` is set for
//! each requirement, an unmet one fails the test instead.

use std::io::Write as _;

/// Whether a requirement is met. `name` names it in the variable
/// `KILN_REQUIRE_<name>`; `unmet` says why it is not (`None`: it is).
///
/// # Panics
///
/// When the requirement is unmet and `KILN_REQUIRE_<name>=1`.
pub fn require(name: &str, unmet: Option<&str>) -> bool {
    let Some(reason) = unmet else {
        return true;
    };
    let variable = format!("KILN_REQUIRE_{name}");
    assert!(
        std::env::var(&variable).as_deref() != Ok("1"),
        "{reason} ({variable}=1)"
    );
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let line = format!("SKIPPED {test}: {reason}");
    // Straight to the descriptor: the harness captures only the macros.
    let _ = writeln!(std::io::stderr(), "{line}");
    // scripts/test lists every skip again after the last test binary,
    // where a person reads the end of the output.
    if let Some(log) = std::env::var_os("KILN_SKIP_LOG") {
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut file| writeln!(file, "{line}"));
    }
    false
}

/// Whether the test runs as root (`KILN_REQUIRE_ROOT`).
pub fn root(why: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    require(
        "ROOT",
        (!root).then(|| format!("needs root: {why}")).as_deref(),
    )
}
