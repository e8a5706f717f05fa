//! Whether this machine can run a platform's executables: natively, or
//! through a `binfmt_misc` handler (qemu-user-static) registered with the
//! F flag, so that the kernel opens the interpreter at registration and
//! finds it from inside any container's root.
//!
//! A handler is matched to an architecture by the ELF header its magic
//! describes (class, byte order and `e_machine`), not by its name:
//! Debian calls them `qemu-aarch64`, tonistiigi/binfmt `qemu-aarch64` or
//! `aarch64`, and other distributions something else again.

use std::fs;
use std::path::{Path, PathBuf};

/// Where the kernel's `binfmt_misc` file system is mounted.
pub const BINFMT_MISC: &str = "/proc/sys/fs/binfmt_misc";

/// A registered `binfmt_misc` handler for ELF executables of one
/// architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handler {
    /// Its name under `/proc/sys/fs/binfmt_misc`.
    pub name: String,
    /// The OCI architecture of the executables it runs (`arm64`).
    pub architecture: &'static str,
    /// The interpreter (`/usr/libexec/qemu-binfmt/aarch64-binfmt-P`).
    pub interpreter: PathBuf,
    /// The flags (`POF`).
    pub flags: String,
    /// Whether it is enabled.
    pub enabled: bool,
}

impl Handler {
    /// Whether the interpreter was opened when the handler was registered
    /// (the F flag): only then does it work inside a container, whose
    /// root does not have the interpreter's path.
    pub fn fixed(&self) -> bool {
        self.flags.contains('F')
    }
}

/// How a platform's executables run here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emulation {
    /// The CPU runs them.
    Native,
    /// Through this handler.
    Binfmt(Handler),
}

/// Why a platform's executables cannot run here: what is missing, in
/// words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmulationError {
    /// The OS is not Linux.
    #[error("{platform} executables cannot run on Linux")]
    NotLinux {
        /// `os/arch[/variant]`.
        platform: String,
    },
    /// `binfmt_misc` is not mounted.
    #[error(
        "no binfmt_misc handler for {architecture} executables: {BINFMT_MISC} is not mounted (mount -t binfmt_misc binfmt_misc {BINFMT_MISC}), and qemu-user-static must register one (apt-get install qemu-user-static)"
    )]
    NotMounted {
        /// The architecture.
        architecture: String,
    },
    /// `binfmt_misc` is turned off.
    #[error(
        "no binfmt_misc handler for {architecture} executables: binfmt_misc is disabled (echo 1 > {BINFMT_MISC}/status)"
    )]
    Disabled {
        /// The architecture.
        architecture: String,
    },
    /// No handler knows the architecture.
    #[error(
        "no binfmt_misc handler for {architecture} executables: install qemu-user-static (apt-get install qemu-user-static), which registers one for each architecture it emulates"
    )]
    NoHandler {
        /// The architecture.
        architecture: String,
    },
    /// The handler is there but disabled.
    #[error(
        "the binfmt_misc handler {name} for {architecture} executables is disabled (echo 1 > {BINFMT_MISC}/{name})"
    )]
    HandlerDisabled {
        /// The handler's name.
        name: String,
        /// The architecture.
        architecture: String,
    },
    /// The handler lacks the F flag.
    #[error(
        "the binfmt_misc handler {name} for {architecture} executables was registered without the F flag (flags: {flags:?}), so its interpreter {interpreter} is looked up inside the container, where it does not exist: register it with F (Debian's qemu-user-static does)"
    )]
    NotFixed {
        /// The handler's name.
        name: String,
        /// The architecture.
        architecture: String,
        /// Its flags.
        flags: String,
        /// Its interpreter.
        interpreter: String,
    },
}

/// The architectures this machine's CPU runs without emulation: its own,
/// and the 32-bit one its kernel runs beside it on x86.
pub fn native_architectures() -> &'static [&'static str] {
    match std::env::consts::ARCH {
        "x86_64" => &["amd64", "386"],
        "aarch64" => &["arm64"],
        "x86" => &["386"],
        "arm" => &["arm"],
        "riscv64" => &["riscv64"],
        "powerpc64" => &["ppc64le"],
        "s390x" => &["s390x"],
        "loongarch64" => &["loong64"],
        _ => &[],
    }
}

/// The Linux platforms this machine runs: its CPU's, then those with an
/// enabled `binfmt_misc` handler that has the F flag (with that handler).
pub fn runnable_platforms() -> Vec<(String, Option<Handler>)> {
    runnable_platforms_in(Path::new(BINFMT_MISC))
}

/// [`runnable_platforms`] with the `binfmt_misc` directory given (tests).
pub fn runnable_platforms_in(dir: &Path) -> Vec<(String, Option<Handler>)> {
    let mut platforms: Vec<(String, Option<Handler>)> = native_architectures()
        .iter()
        .map(|a| (format!("linux/{a}"), None))
        .collect();
    let enabled = fs::read_to_string(dir.join("status")).is_ok_and(|s| s.trim() == "enabled");
    if enabled {
        for handler in handlers_in(dir) {
            let platform = format!("linux/{}", handler.architecture);
            if handler.enabled && handler.fixed() && !platforms.iter().any(|(p, _)| *p == platform)
            {
                platforms.push((platform, Some(handler)));
            }
        }
    }
    platforms
}

/// How executables of `os`/`architecture` run here, or why they cannot.
pub fn emulation(os: &str, architecture: &str) -> Result<Emulation, EmulationError> {
    emulation_in(Path::new(BINFMT_MISC), os, architecture)
}

/// [`emulation`] with the `binfmt_misc` directory given (tests).
pub fn emulation_in(dir: &Path, os: &str, architecture: &str) -> Result<Emulation, EmulationError> {
    if os != "linux" {
        return Err(EmulationError::NotLinux {
            platform: format!("{os}/{architecture}"),
        });
    }
    if native_architectures().contains(&architecture) {
        return Ok(Emulation::Native);
    }
    let owned = || architecture.to_owned();
    let status =
        fs::read_to_string(dir.join("status")).map_err(|_| EmulationError::NotMounted {
            architecture: owned(),
        })?;
    if status.trim() != "enabled" {
        return Err(EmulationError::Disabled {
            architecture: owned(),
        });
    }
    let handlers = handlers_in(dir);
    let mut candidates = handlers.iter().filter(|h| h.architecture == architecture);
    // An enabled handler with F wins; else the first says what is wrong.
    if let Some(handler) = handlers
        .iter()
        .find(|h| h.architecture == architecture && h.enabled && h.fixed())
    {
        return Ok(Emulation::Binfmt(handler.clone()));
    }
    match candidates.next() {
        None => Err(EmulationError::NoHandler {
            architecture: owned(),
        }),
        Some(h) if !h.enabled => Err(EmulationError::HandlerDisabled {
            name: h.name.clone(),
            architecture: owned(),
        }),
        Some(h) => Err(EmulationError::NotFixed {
            name: h.name.clone(),
            architecture: owned(),
            flags: h.flags.clone(),
            interpreter: h.interpreter.display().to_string(),
        }),
    }
}

/// The ELF handlers registered in `dir`, sorted by name.
pub fn handlers_in(dir: &Path) -> Vec<Handler> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut handlers: Vec<Handler> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "register" || name == "status" {
                return None;
            }
            let text = fs::read_to_string(entry.path()).ok()?;
            parse_handler(&name, &text)
        })
        .collect();
    handlers.sort_by(|a, b| a.name.cmp(&b.name));
    handlers
}

/// Parses one handler's file (`enabled`, `interpreter ...`, `flags: ...`,
/// `offset 0`, `magic ...`, `mask ...`); `None` for handlers that do not
/// match ELF executables of a known architecture.
pub fn parse_handler(name: &str, text: &str) -> Option<Handler> {
    let mut enabled = false;
    let mut interpreter = None;
    let mut flags = String::new();
    let mut offset = None;
    let mut magic = None;
    let mut mask = None;
    for line in text.lines() {
        let line = line.trim();
        if line == "enabled" {
            enabled = true;
        } else if let Some(rest) = line.strip_prefix("interpreter ") {
            interpreter = Some(PathBuf::from(rest));
        } else if let Some(rest) = line.strip_prefix("flags:") {
            rest.trim().clone_into(&mut flags);
        } else if let Some(rest) = line.strip_prefix("offset ") {
            offset = rest.trim().parse::<usize>().ok();
        } else if let Some(rest) = line.strip_prefix("magic ") {
            magic = decode_hex(rest.trim());
        } else if let Some(rest) = line.strip_prefix("mask ") {
            mask = decode_hex(rest.trim());
        }
    }
    if offset != Some(0) {
        return None;
    }
    let magic = magic?;
    let architecture = elf_architecture(&magic, mask.as_deref())?;
    Some(Handler {
        name: name.to_owned(),
        architecture,
        interpreter: interpreter?,
        flags,
        enabled,
    })
}

/// Decodes the kernel's lowercase hex (`7f454c46...`).
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The OCI architecture of the ELF executables a magic (with its mask)
/// matches: class (byte 4), byte order (5) and `e_machine` (18-19).
fn elf_architecture(magic: &[u8], mask: Option<&[u8]>) -> Option<&'static str> {
    if magic.len() < 20 || magic.get(..4)? != b"\x7fELF" {
        return None;
    }
    let byte = |i: usize| -> u8 {
        let m = mask.and_then(|m| m.get(i)).copied().unwrap_or(0xff);
        magic[i] & m
    };
    let class = byte(4);
    let big_endian = byte(5) == 2;
    let machine = if big_endian {
        u16::from_be_bytes([byte(18), byte(19)])
    } else {
        u16::from_le_bytes([byte(18), byte(19)])
    };
    Some(match (class, big_endian, machine) {
        (2, false, 183) => "arm64",
        (1, false, 40) => "arm",
        (2, false, 62) => "amd64",
        (1, false, 3) => "386",
        (2, false, 243) => "riscv64",
        (2, false, 21) => "ppc64le",
        (2, true, 22) => "s390x",
        (2, false, 258) => "loong64",
        (2, false, 8) => "mips64le",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian bookworm's qemu-aarch64, as systemd-binfmt registers it.
    const DEBIAN_AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";
    const DEBIAN_ARM: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/arm-binfmt-P\nflags: POCF\noffset 0\nmagic 7f454c4601010100000000000000000002002800\nmask ffffffffffffff00fffffffffffffffffeffffff\n";
    const DEBIAN_S390X: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/s390x-binfmt-P\nflags: POF\noffset 0\nmagic 7f454c4602020100000000000000000000020016\nmask ffffffffffffff00fffffffffffffffffffeffff\n";

    fn binfmt(entries: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("status"), "enabled\n").unwrap();
        fs::write(dir.path().join("register"), "").unwrap();
        for (name, text) in entries {
            fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn handlers_are_matched_by_their_elf_magic_not_their_name() {
        let dir = binfmt(&[
            ("aarch64", DEBIAN_AARCH64),
            ("qemu-arm", DEBIAN_ARM),
            ("qemu-s390x", DEBIAN_S390X),
            (
                "python3.11",
                "enabled\ninterpreter /usr/bin/python3.11\nflags: \noffset 0\nmagic a70d0d0a\n",
            ),
        ]);
        let found: Vec<(String, &str)> = handlers_in(dir.path())
            .into_iter()
            .map(|h| (h.name, h.architecture))
            .collect();
        assert_eq!(
            found,
            [
                ("aarch64".to_owned(), "arm64"),
                ("qemu-arm".to_owned(), "arm"),
                ("qemu-s390x".to_owned(), "s390x"),
            ]
        );
    }

    #[test]
    fn a_foreign_platform_runs_through_an_enabled_handler_with_f() {
        let dir = binfmt(&[("qemu-aarch64", DEBIAN_AARCH64)]);
        let foreign = if native_architectures().contains(&"arm64") {
            return;
        } else {
            "arm64"
        };
        match emulation_in(dir.path(), "linux", foreign).unwrap() {
            Emulation::Binfmt(handler) => {
                assert_eq!(handler.name, "qemu-aarch64");
                assert_eq!(
                    handler.interpreter,
                    Path::new("/usr/libexec/qemu-binfmt/aarch64-binfmt-P")
                );
            }
            Emulation::Native => panic!("arm64 is not native here"),
        }
        let native = native_architectures()[0];
        assert_eq!(
            emulation_in(dir.path(), "linux", native).unwrap(),
            Emulation::Native
        );
    }

    #[test]
    fn what_is_missing_is_said() {
        if native_architectures().contains(&"arm64") {
            return;
        }
        let none = binfmt(&[]);
        assert_eq!(
            emulation_in(none.path(), "linux", "arm64")
                .unwrap_err()
                .to_string(),
            "no binfmt_misc handler for arm64 executables: install qemu-user-static (apt-get install qemu-user-static), which registers one for each architecture it emulates"
        );
        let unmounted = tempfile::tempdir().unwrap();
        assert!(
            emulation_in(unmounted.path(), "linux", "arm64")
                .unwrap_err()
                .to_string()
                .contains(
                    "is not mounted (mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc)"
                )
        );
        let without_f = binfmt(&[(
            "qemu-aarch64",
            &DEBIAN_AARCH64.replace("flags: POF", "flags: P"),
        )]);
        assert_eq!(
            emulation_in(without_f.path(), "linux", "arm64")
                .unwrap_err()
                .to_string(),
            "the binfmt_misc handler qemu-aarch64 for arm64 executables was registered without the F flag (flags: \"P\"), so its interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P is looked up inside the container, where it does not exist: register it with F (Debian's qemu-user-static does)"
        );
        let disabled = binfmt(&[(
            "qemu-aarch64",
            &DEBIAN_AARCH64.replace("enabled\n", "disabled\n"),
        )]);
        assert_eq!(
            emulation_in(disabled.path(), "linux", "arm64")
                .unwrap_err()
                .to_string(),
            "the binfmt_misc handler qemu-aarch64 for arm64 executables is disabled (echo 1 > /proc/sys/fs/binfmt_misc/qemu-aarch64)"
        );
        fs::write(disabled.path().join("status"), "disabled\n").unwrap();
        assert!(
            emulation_in(disabled.path(), "linux", "arm64")
                .unwrap_err()
                .to_string()
                .contains("binfmt_misc is disabled")
        );
        assert_eq!(
            emulation_in(none.path(), "windows", "amd64")
                .unwrap_err()
                .to_string(),
            "windows/amd64 executables cannot run on Linux"
        );
    }
}
