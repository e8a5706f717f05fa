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
//!
//! Every entry point is total: it returns an error for any input it rejects
//! and never panics.

pub mod chmod;
pub mod duration;
pub mod platform;
pub mod port;
pub mod reference;
pub mod signal;

pub use chmod::{Chmod, ChmodError, SymbolicMode, parse_chmod};
pub use duration::{DurationError, format_duration, parse_duration};
pub use platform::{Platform, PlatformError, parse_platform};
pub use port::{PortError, exposed_ports, parse_port_spec, parse_port_specs};
pub use reference::{Digest, ImageReference, ReferenceError, parse_normalized_named};
pub use signal::{Signal, SignalError, parse_signal};

/// A xorshift64 generator for the "never panics" tests of every submodule.
#[cfg(test)]
pub(crate) struct XorShift(u64);

#[cfg(test)]
impl XorShift {
    /// A generator from a non-zero seed.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next pseudo-random value.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % u64::try_from(n).unwrap()).unwrap()
    }

    /// A string of up to `max_len` characters drawn from `alphabet`.
    pub(crate) fn string(&mut self, alphabet: &[char], max_len: usize) -> String {
        let len = self.below(max_len + 1);
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len())])
            .collect()
    }
}

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
