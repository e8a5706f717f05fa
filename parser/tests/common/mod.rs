//! The BuildKit conformance corpus, shared by the conformance tests.

use std::path::PathBuf;

/// `<conformance>/buildkit/<sub>`, where `<conformance>` is
/// `$KILN_CONFORMANCE_DIR` or `../shared/conformance` beside the checkout.
/// When it is missing the test is reported as skipped (`None`), unless
/// `KILN_REQUIRE_CONFORMANCE=1` (CI), where that is a failure.
pub fn corpus(sub: &str) -> Option<PathBuf> {
    let root = std::env::var_os("KILN_CONFORMANCE_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance"),
        PathBuf::from,
    );
    let dir = root.join("buildkit").join(sub);
    if dir.is_dir() {
        return Some(dir);
    }
    kiln_testkit::require(
        "CONFORMANCE",
        Some(&format!(
            "conformance corpus not found at {}",
            dir.display()
        )),
    );
    None
}
