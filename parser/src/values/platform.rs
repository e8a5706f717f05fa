//! OCI platform specifiers (`linux/amd64`, `linux/arm/v7`, `arm64`), as
//! `containerd/platforms` `Parse`, `Normalize` and `Format` handle them;
//! `BuildKit`'s Dockerfile frontend parses `--platform` values with `Parse`
//! and normalizes them before use.
//!
//! A specifier is `<os>[(<osversion>)]`, `<arch>`, or
//! `<os>[(<osversion>)]/<arch>[/<variant>]`. A lone word is an OS if it is a
//! known one (the architecture then defaults to the host's), else an
//! architecture (the OS defaults to the host's). Names are lowercased and
//! aliases normalized: `x86_64`/`x86-64` -> `amd64`, `aarch64` -> `arm64`,
//! `armhf` -> `arm` v7, `armel` -> `arm` v6, `i386` -> `386`, `macos` ->
//! `darwin`.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::golang::to_lower as go_to_lower;

/// The OS-and-version pattern, quoted in errors exactly as upstream does.
const OS_AND_VERSION_PATTERN: &str = r"^([A-Za-z0-9_-]+)(?:\(([A-Za-z0-9_.-]*)\))?$";
/// The pattern every other component must match.
const SPECIFIER_PATTERN: &str = "^[A-Za-z0-9_-]+$";

/// A platform specifier that `platforms.Parse` rejects. Every message ends
/// in `: invalid argument`, upstream's wrapped `errdefs` sentinel.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PlatformError {
    /// The specifier contains `*`.
    #[error("{}: wildcards not yet supported: invalid argument", crate::golang::quote(.0))]
    Wildcard(String),
    /// The first component is not `<os>[(<osversion>)]`.
    #[error(
        "{} is an invalid OS component of {}: OSAndVersion specifier component must match {}: invalid argument",
        crate::golang::quote(.component), crate::golang::quote(.specifier), crate::golang::quote(OS_AND_VERSION_PATTERN)
    )]
    InvalidOsComponent {
        /// The offending component.
        component: String,
        /// The whole specifier.
        specifier: String,
    },
    /// A later component contains characters other than `[A-Za-z0-9_-]`.
    #[error(
        "{} is an invalid component of {}: platform specifier component must match {}: invalid argument",
        crate::golang::quote(.component), crate::golang::quote(.specifier), crate::golang::quote(SPECIFIER_PATTERN)
    )]
    InvalidComponent {
        /// The offending component.
        component: String,
        /// The whole specifier.
        specifier: String,
    },
    /// A lone word that is neither a known OS nor a known architecture.
    #[error("{}: unknown operating system or architecture: invalid argument", crate::golang::quote(.0))]
    Unknown(String),
    /// More than three components.
    #[error("{}: cannot parse platform specifier: invalid argument", crate::golang::quote(.0))]
    TooManyComponents(String),
}

/// An OCI platform. Empty strings mean "not set", as in the OCI JSON form;
/// fields are in the OCI Go struct's order so JSON output matches Docker's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture, e.g. `amd64`.
    pub architecture: String,
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// OS version, e.g. `10.0.17763` from `windows(10.0.17763)`; empty if
    /// unset.
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub os_version: String,
    /// CPU variant, e.g. `v7`; empty if unset.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl Platform {
    /// The platform kiln itself runs on, in normalized form (as `BuildKit`
    /// normalizes `platforms.DefaultSpec()`): e.g. `linux/amd64`,
    /// `linux/arm64`, `darwin/arm64`. 32-bit ARM is assumed to be v7.
    pub fn host() -> Self {
        Self {
            os: host_os().to_owned(),
            architecture: host_arch().to_owned(),
            variant: if host_arch() == "arm" {
                "v7".to_owned()
            } else {
                String::new()
            },
            os_version: String::new(),
        }
    }

    /// Parses a specifier like `platforms.Parse` (no normalization of the
    /// `arm` variant beyond what `Parse` does; see [`Platform::normalize`]).
    pub fn parse(specifier: &str) -> Result<Self, PlatformError> {
        parse_platform(specifier)
    }

    /// `platforms.Normalize`: lowercases, resolves aliases, fills an empty
    /// OS with the host's, and applies the variant defaults (`arm` gets
    /// `v7`, `arm64` drops `v8`, `amd64` drops `v1`).
    #[must_use]
    pub fn normalize(mut self) -> Self {
        self.os = normalize_os(&self.os);
        let (architecture, variant) = normalize_arch(&self.architecture, &self.variant);
        self.architecture = architecture;
        self.variant = variant;
        self
    }

    /// `platforms.FormatAll`: like [`Display`](fmt::Display) but with the
    /// OS version, e.g. `windows(10.0.17763)/amd64`.
    pub fn format_all(&self) -> String {
        if self.os.is_empty() {
            return "unknown".to_owned();
        }
        if self.os_version.is_empty() {
            return self.to_string();
        }
        join_non_empty(&[
            &format!("{}({})", self.os, self.os_version),
            &self.architecture,
            &self.variant,
        ])
    }
}

impl fmt::Display for Platform {
    /// `platforms.Format`: `os/arch[/variant]`, or `unknown` without an OS.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.os.is_empty() {
            return f.write_str("unknown");
        }
        f.write_str(&join_non_empty(&[
            &self.os,
            &self.architecture,
            &self.variant,
        ]))
    }
}

/// Joins the non-empty parts with `/`, as Go's `path.Join` does for the
/// slash-free components a parsed platform has.
fn join_non_empty(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/")
}

/// Parses a platform specifier exactly like `containerd/platforms.Parse`.
pub fn parse_platform(specifier: &str) -> Result<Platform, PlatformError> {
    if specifier.contains('*') {
        return Err(PlatformError::Wildcard(specifier.to_owned()));
    }
    let parts: Vec<&str> = specifier.splitn(4, '/').collect();

    let mut platform = Platform::default();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some((os, version)) = split_os_version(part) else {
                return Err(PlatformError::InvalidOsComponent {
                    component: (*part).to_owned(),
                    specifier: specifier.to_owned(),
                });
            };
            platform.os = normalize_os(os);
            version.clone_into(&mut platform.os_version);
        } else if !is_specifier_component(part) {
            return Err(PlatformError::InvalidComponent {
                component: (*part).to_owned(),
                specifier: specifier.to_owned(),
            });
        }
    }

    match parts.as_slice() {
        [only] => {
            if is_known_os(&platform.os) {
                host_arch().clone_into(&mut platform.architecture);
                // Upstream leaves the variant empty unless the host is ARM
                // with a variant other than v7, which kiln assumes it is not.
                return Ok(platform);
            }
            let (architecture, variant) = normalize_arch(only, "");
            platform.architecture = architecture;
            platform.variant = if platform.architecture == "arm" && variant == "v7" {
                String::new()
            } else {
                variant
            };
            if is_known_arch(&platform.architecture) {
                host_os().clone_into(&mut platform.os);
                return Ok(platform);
            }
            Err(PlatformError::Unknown(specifier.to_owned()))
        }
        [_, arch] => {
            let (architecture, variant) = normalize_arch(arch, "");
            platform.variant = if architecture == "arm" && variant == "v7" {
                String::new()
            } else {
                variant
            };
            platform.architecture = architecture;
            Ok(platform)
        }
        [_, arch, variant] => {
            let (architecture, variant) = normalize_arch(arch, variant);
            platform.variant = if architecture == "arm64" && variant.is_empty() {
                "v8".to_owned()
            } else {
                variant
            };
            platform.architecture = architecture;
            Ok(platform)
        }
        _ => Err(PlatformError::TooManyComponents(specifier.to_owned())),
    }
}

/// Matches `^([A-Za-z0-9_-]+)(?:\(([A-Za-z0-9_.-]*)\))?$`, returning the OS
/// and the (possibly empty) version.
fn split_os_version(part: &str) -> Option<(&str, &str)> {
    let (os, version) = match part.split_once('(') {
        None => (part, ""),
        Some((os, rest)) => {
            let version = rest.strip_suffix(')')?;
            let version_ok = version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
            if !version_ok {
                return None;
            }
            (os, version)
        }
    };
    is_specifier_component(os).then_some((os, version))
}

/// Matches `^[A-Za-z0-9_-]+$`.
fn is_specifier_component(part: &str) -> bool {
    !part.is_empty()
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `normalizeOS`: empty -> host OS, lowercase, `macos` -> `darwin`.
fn normalize_os(os: &str) -> String {
    if os.is_empty() {
        return host_os().to_owned();
    }
    let os = go_to_lower(os);
    if os == "macos" {
        "darwin".to_owned()
    } else {
        os
    }
}

/// `normalizeArch`: lowercases both, resolves aliases and variant defaults.
fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let arch = go_to_lower(arch);
    let variant = go_to_lower(variant);
    match arch.as_str() {
        "i386" => ("386".to_owned(), String::new()),
        "x86_64" | "x86-64" | "amd64" => {
            let variant = if variant == "v1" {
                String::new()
            } else {
                variant
            };
            ("amd64".to_owned(), variant)
        }
        "aarch64" | "arm64" => {
            let variant = match variant.as_str() {
                "8" | "v8" | "v8.0" => String::new(),
                "9" | "9.0" | "v9.0" => "v9".to_owned(),
                _ => variant,
            };
            ("arm64".to_owned(), variant)
        }
        "armhf" => ("arm".to_owned(), "v7".to_owned()),
        "armel" => ("arm".to_owned(), "v6".to_owned()),
        "arm" => {
            let variant = match variant.as_str() {
                "" | "7" => "v7".to_owned(),
                "5" | "6" | "8" => format!("v{variant}"),
                _ => variant,
            };
            (arch, variant)
        }
        _ => (arch, variant),
    }
}

/// Go's `GOOS` values that `platforms` knows.
fn is_known_os(os: &str) -> bool {
    matches!(
        os,
        "aix"
            | "android"
            | "darwin"
            | "dragonfly"
            | "freebsd"
            | "hurd"
            | "illumos"
            | "ios"
            | "js"
            | "linux"
            | "nacl"
            | "netbsd"
            | "openbsd"
            | "plan9"
            | "solaris"
            | "windows"
            | "zos"
    )
}

/// Go's `GOARCH` values that `platforms` knows.
fn is_known_arch(arch: &str) -> bool {
    matches!(
        arch,
        "386"
            | "amd64"
            | "amd64p32"
            | "arm"
            | "armbe"
            | "arm64"
            | "arm64be"
            | "ppc64"
            | "ppc64le"
            | "loong64"
            | "mips"
            | "mipsle"
            | "mips64"
            | "mips64le"
            | "mips64p32"
            | "mips64p32le"
            | "ppc"
            | "riscv"
            | "riscv64"
            | "s390"
            | "s390x"
            | "sparc"
            | "sparc64"
            | "wasm"
    )
}

/// The host OS under Go's `GOOS` name.
fn host_os() -> &'static str {
    match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    }
}

/// The host CPU under Go's `GOARCH` name.
fn host_arch() -> &'static str {
    let little = cfg!(target_endian = "little");
    match std::env::consts::ARCH {
        "x86" => "386",
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "loongarch64" => "loong64",
        "powerpc" => "ppc",
        "powerpc64" if little => "ppc64le",
        "powerpc64" => "ppc64",
        "mips" if little => "mipsle",
        "mips64" if little => "mips64le",
        "wasm32" => "wasm",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::XorShift;

    fn platform(os: &str, architecture: &str, variant: &str) -> Platform {
        Platform {
            os: os.into(),
            architecture: architecture.into(),
            variant: variant.into(),
            os_version: String::new(),
        }
    }

    #[test]
    fn upstream_parse_selector_table() {
        // platforms_test.go TestParseSelector (the non-skipped cases), with
        // the expected Format output.
        let host = Platform::host();
        let (os, arch) = (host.os.as_str(), host.architecture.as_str());
        let cases: Vec<(&str, Platform, String)> = vec![
            (
                "linux/arm64",
                platform("linux", "arm64", ""),
                "linux/arm64".into(),
            ),
            (
                "linux/arm64/v8",
                platform("linux", "arm64", "v8"),
                "linux/arm64/v8".into(),
            ),
            (
                "linux/arm",
                platform("linux", "arm", ""),
                "linux/arm".into(),
            ),
            (
                "linux/arm/v6",
                platform("linux", "arm", "v6"),
                "linux/arm/v6".into(),
            ),
            (
                "linux/arm/v7",
                platform("linux", "arm", "v7"),
                "linux/arm/v7".into(),
            ),
            ("arm", platform(os, "arm", ""), format!("{os}/arm")),
            ("armel", platform(os, "arm", "v6"), format!("{os}/arm/v6")),
            ("armhf", platform(os, "arm", ""), format!("{os}/arm")),
            ("Aarch64", platform(os, "arm64", ""), format!("{os}/arm64")),
            ("x86_64", platform(os, "amd64", ""), format!("{os}/amd64")),
            (
                "Linux/x86_64",
                platform("linux", "amd64", ""),
                "linux/amd64".into(),
            ),
            ("i386", platform(os, "386", ""), format!("{os}/386")),
            (
                "linux",
                platform("linux", arch, ""),
                format!("linux/{arch}"),
            ),
            ("s390x", platform(os, "s390x", ""), format!("{os}/s390x")),
            (
                "linux/s390x",
                platform("linux", "s390x", ""),
                "linux/s390x".into(),
            ),
            (
                "macOS",
                platform("darwin", arch, ""),
                format!("darwin/{arch}"),
            ),
            (
                "windows",
                platform("windows", arch, ""),
                format!("windows/{arch}"),
            ),
        ];
        for (input, want, formatted) in cases {
            let got = parse_platform(input).unwrap();
            assert_eq!(got, want, "input {input}");
            assert_eq!(got.to_string(), formatted, "input {input}");
            // Formatting is stable under re-parsing.
            assert_eq!(parse_platform(&formatted).unwrap().to_string(), formatted);
        }
    }

    #[test]
    fn upstream_os_version_cases() {
        let host = Platform::host();
        let arch = host.architecture.as_str();
        let with_version = |os: &str, version: &str, architecture: &str| Platform {
            os: os.into(),
            architecture: architecture.into(),
            variant: String::new(),
            os_version: version.into(),
        };
        let cases: Vec<(&str, Platform, String)> = vec![
            (
                "windows()",
                with_version("windows", "", arch),
                format!("windows/{arch}"),
            ),
            (
                "windows(10.0.17763)",
                with_version("windows", "10.0.17763", arch),
                format!("windows(10.0.17763)/{arch}"),
            ),
            (
                "windows(10.0.17763)/amd64",
                with_version("windows", "10.0.17763", "amd64"),
                "windows(10.0.17763)/amd64".into(),
            ),
            (
                "macos(Abcd.Efgh.123-4)/aarch64",
                with_version("darwin", "Abcd.Efgh.123-4", "arm64"),
                "darwin(Abcd.Efgh.123-4)/arm64".into(),
            ),
        ];
        for (input, want, formatted) in cases {
            let got = parse_platform(input).unwrap();
            assert_eq!(got, want, "input {input}");
            assert_eq!(got.format_all(), formatted, "input {input}");
            assert_eq!(parse_platform(&formatted).unwrap().format_all(), formatted);
        }
    }

    #[test]
    fn upstream_invalid_selectors_with_messages() {
        // platforms_test.go TestParseSelectorInvalid, with full messages.
        let os_pattern = r#""^([A-Za-z0-9_-]+)(?:\\(([A-Za-z0-9_.-]*)\\))?$""#;
        let pattern = r#""^[A-Za-z0-9_-]+$""#;
        let cases: Vec<(&str, String)> = vec![
            (
                "",
                format!(
                    r#""" is an invalid OS component of "": OSAndVersion specifier component must match {os_pattern}: invalid argument"#
                ),
            ),
            (
                "/linux/arm",
                format!(
                    r#""" is an invalid OS component of "/linux/arm": OSAndVersion specifier component must match {os_pattern}: invalid argument"#
                ),
            ),
            (
                "linux/arm/",
                format!(
                    r#""" is an invalid component of "linux/arm/": platform specifier component must match {pattern}: invalid argument"#
                ),
            ),
            (
                "linux /arm",
                format!(
                    r#""linux " is an invalid OS component of "linux /arm": OSAndVersion specifier component must match {os_pattern}: invalid argument"#
                ),
            ),
            (
                "linux/&arm",
                format!(
                    r#""&arm" is an invalid component of "linux/&arm": platform specifier component must match {pattern}: invalid argument"#
                ),
            ),
            (
                "linux/arm/foo/bar",
                r#""linux/arm/foo/bar": cannot parse platform specifier: invalid argument"#.into(),
            ),
            (
                "amd64/windows(10.0.17763)/foo",
                format!(
                    r#""windows(10.0.17763)" is an invalid component of "amd64/windows(10.0.17763)/foo": platform specifier component must match {pattern}: invalid argument"#
                ),
            ),
            (
                "linux)()---()..../arm/foo",
                format!(
                    r#""linux)()---()...." is an invalid OS component of "linux)()---()..../arm/foo": OSAndVersion specifier component must match {os_pattern}: invalid argument"#
                ),
            ),
            (
                "../arm/foo",
                format!(
                    r#"".." is an invalid OS component of "../arm/foo": OSAndVersion specifier component must match {os_pattern}: invalid argument"#
                ),
            ),
            (
                "*",
                r#""*": wildcards not yet supported: invalid argument"#.into(),
            ),
            (
                "linux/*",
                r#""linux/*": wildcards not yet supported: invalid argument"#.into(),
            ),
            (
                "foo",
                r#""foo": unknown operating system or architecture: invalid argument"#.into(),
            ),
            (
                "amd64()",
                r#""amd64()": unknown operating system or architecture: invalid argument"#.into(),
            ),
            (
                "a/b/c/d/e",
                format!(
                    r#""d/e" is an invalid component of "a/b/c/d/e": platform specifier component must match {pattern}: invalid argument"#
                ),
            ),
            (
                "linux/arm\t",
                format!(
                    r#""arm\t" is an invalid component of "linux/arm\t": platform specifier component must match {pattern}: invalid argument"#
                ),
            ),
            (
                "linux/\u{e9}",
                format!(
                    "\"\u{e9}\" is an invalid component of \"linux/\u{e9}\": platform specifier component must match {pattern}: invalid argument"
                ),
            ),
            (
                "linux/a\u{200b}",
                format!(
                    r#""a\u200b" is an invalid component of "linux/a\u200b": platform specifier component must match {pattern}: invalid argument"#
                ),
            ),
        ];
        for (input, want) in cases {
            let err = parse_platform(input).unwrap_err();
            assert_eq!(err.to_string(), want, "input {input:?}");
        }
    }

    #[test]
    fn dockerfile_platforms_parse_and_normalize() {
        let cases: &[(&str, &str, &str)] = &[
            // (input, Format after Parse, Format after Parse + Normalize)
            ("linux/amd64", "linux/amd64", "linux/amd64"),
            ("linux/amd64/v1", "linux/amd64", "linux/amd64"),
            ("linux/amd64/v3", "linux/amd64/v3", "linux/amd64/v3"),
            ("linux/x86-64", "linux/amd64", "linux/amd64"),
            ("linux/arm64/v8", "linux/arm64/v8", "linux/arm64"),
            ("linux/arm64/8", "linux/arm64/v8", "linux/arm64"),
            ("linux/arm64/9", "linux/arm64/v9", "linux/arm64/v9"),
            ("linux/aarch64", "linux/arm64", "linux/arm64"),
            ("linux/arm", "linux/arm", "linux/arm/v7"),
            ("linux/arm/7", "linux/arm/v7", "linux/arm/v7"),
            ("linux/arm/5", "linux/arm/v5", "linux/arm/v5"),
            ("linux/armhf", "linux/arm", "linux/arm/v7"),
            ("linux/armel", "linux/arm/v6", "linux/arm/v6"),
            ("LINUX/AMD64", "linux/amd64", "linux/amd64"),
            ("linux/ppc64le", "linux/ppc64le", "linux/ppc64le"),
            ("linux/riscv64", "linux/riscv64", "linux/riscv64"),
            ("linux/i386", "linux/386", "linux/386"),
            // Two-part specifiers accept any architecture name.
            ("linux/foo", "linux/foo", "linux/foo"),
            ("freebsd/amd64", "freebsd/amd64", "freebsd/amd64"),
        ];
        for &(input, parsed, normalized) in cases {
            let got = parse_platform(input).unwrap();
            assert_eq!(got.to_string(), parsed, "input {input}");
            assert_eq!(got.normalize().to_string(), normalized, "input {input}");
        }
    }

    #[test]
    fn normalize_fills_empty_os_and_formats_unknown() {
        let empty = Platform::default();
        assert_eq!(empty.to_string(), "unknown");
        assert_eq!(empty.format_all(), "unknown");
        let normalized = Platform::default().normalize();
        assert_eq!(normalized.os, Platform::host().os);
        // `.` is not allowed in a parsed variant, but Normalize still maps
        // these spellings from image configs.
        assert_eq!(
            platform("Linux", "ARM64", "v8.0").normalize(),
            platform("linux", "arm64", "")
        );
        assert_eq!(
            platform("linux", "aarch64", "9.0").normalize(),
            platform("linux", "arm64", "v9")
        );
        assert_eq!(
            platform("MacOS", "x86_64", "V1").normalize(),
            platform("darwin", "amd64", "")
        );
    }

    #[test]
    fn host_is_normalized() {
        let host = Platform::host();
        assert_eq!(host.clone().normalize(), host);
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        assert_eq!(host.to_string(), "linux/amd64");
        #[cfg(all(target_os = "linux", target_arch = "aarch64"))]
        assert_eq!(host.to_string(), "linux/arm64");
    }

    #[test]
    fn serializes_like_oci() {
        let p = parse_platform("linux/arm/v7").unwrap();
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"architecture":"arm","os":"linux","variant":"v7"}"#
        );
        let w = parse_platform("windows(10.0.1)/amd64").unwrap();
        assert_eq!(
            serde_json::to_string(&w).unwrap(),
            r#"{"architecture":"amd64","os":"windows","os.version":"10.0.1"}"#
        );
        let back: Platform =
            serde_json::from_str(r#"{"os":"linux","architecture":"amd64"}"#).unwrap();
        assert_eq!(back, platform("linux", "amd64", ""));
    }

    #[test]
    fn go_quote_matches_strconv_quote() {
        let cases = [
            ("", r#""""#),
            ("abc", r#""abc""#),
            ("a\"b\\c", r#""a\"b\\c""#),
            ("\u{7}\u{8}\u{c}\n\r\t\u{b}", r#""\a\b\f\n\r\t\v""#),
            ("\u{0}\u{1f}\u{7f}", r#""\x00\x1f\x7f""#),
            ("é☃🐳", "\"é☃🐳\""),
            ("\u{a0}\u{feff}", r#""\u00a0\ufeff""#),
            ("\u{f0000}", r#""\U000f0000""#),
        ];
        for (input, want) in cases {
            assert_eq!(crate::golang::quote(input), want, "input {input:?}");
        }
    }

    #[test]
    fn never_panics_on_garbage() {
        let alphabet: Vec<char> = "linuxamd64armv78/()._-*Wé \t".chars().collect();
        let mut rng = XorShift::new(0x91A7_F0E2);
        for _ in 0..5_000 {
            let s = rng.string(&alphabet, 20);
            if let Ok(p) = parse_platform(&s) {
                let _ = p.format_all();
                let normalized = p.normalize();
                assert!(!normalized.os.is_empty(), "input {s:?}");
            }
        }
        assert!(parse_platform(&"/".repeat(100_000)).is_err());
        assert!(parse_platform(&"a".repeat(100_000)).is_err());
    }
}
