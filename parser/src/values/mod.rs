//! The small value grammars that Dockerfile instructions use, ported from the
//! Go code that `BuildKit`'s Dockerfile frontend calls.
//!
//! Each submodule matches one upstream package's accept/reject decisions and
//! error wording:
//!
//! | module | upstream | used by |
//! | --- | --- | --- |
//! | [`reference`](mod@reference) | `distribution/reference` + `opencontainers/go-digest` | `FROM`, `COPY --from`, `RUN --mount from=` |
//! | [`duration`] | Go's `time.ParseDuration` / `Duration.String` | `HEALTHCHECK --interval` etc. |
//! | [`port`] | `BuildKit` `dockerfile2llb/convert_expose.go` | `EXPOSE` |
//! | [`signal`] | `moby/sys/signal.ParseSignal` (Linux table) | `STOPSIGNAL` |
//! | [`chmod`] | `BuildKit` `convert_copy.go` + `tonistiigi/dchapes-mode` | `COPY/ADD --chmod` |
//! | [`platform`] | `containerd/platforms` `Parse` / `Normalize` | `FROM --platform`, `--platform` |
//! | [`git`] | `BuildKit` `dfgitutil.ParseGitRef` + `gitutil.ParseURL` | `ADD <git URL>` |
//! | [`size`] | `docker/go-units` `RAMInBytes` / `FromHumanSize` | `RUN --mount=type=tmpfs,size=`, the CLI's size flags |
//!
//! Every entry point is total: it returns an error for any input it rejects
//! and never panics.

pub mod chmod;
pub mod duration;
pub mod git;
pub mod platform;
pub mod port;
pub mod reference;
pub mod signal;
pub mod size;

pub use chmod::{Chmod, ChmodError, SymbolicMode, parse_chmod};
pub use duration::{DurationError, format_duration, parse_duration};
pub use git::{GitRef, GitRefError, parse_git_ref};
pub use platform::{Platform, PlatformError, parse_platform};
pub use port::{PortError, exposed_ports, parse_port_spec, parse_port_specs};
pub use reference::{Digest, ImageReference, ReferenceError, parse_normalized_named};
pub use signal::{Signal, SignalError, parse_signal};
pub use size::{SizeError, from_human_size, ram_in_bytes};

#[cfg(test)]
mod tests {
    use crate::golang::to_lower as go_to_lower;

    #[test]
    fn go_to_lower_matches_go_simple_mapping() {
        let cases = [
            ("", ""),
            ("ABC", "abc"),
            ("MiXeD-09_", "mixed-09_"),
            ("\u{130}", "i"),
            ("\u{212A}", "k"),
            ("ÀÉÎ", "àéî"),
            ("straße", "straße"),
            ("ΣΑΣ", "σασ"),
        ];
        for (input, want) in cases {
            assert_eq!(go_to_lower(input), want, "input {input:?}");
        }
    }
}
