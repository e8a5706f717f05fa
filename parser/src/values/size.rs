//! go-units' size parsers (`RAMInBytes`, `FromHumanSize`): `RUN
//! --mount=type=tmpfs,size=` in the Dockerfile, and the CLI's size flags
//! (`--memory`, `cache prune --keep-storage`). One copy for both.

/// A size go-units rejects, in its words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SizeError {
    /// The number part is missing, malformed, negative or too large.
    #[error("invalid size: '{0}'")]
    InvalidSize(String),
    /// The unit after the number is not one of k, m, g, t, p (with an
    /// optional `b` or `ib`): lowercased, as go-units reports it, unless
    /// it is over three characters long.
    #[error("invalid suffix: '{0}'")]
    InvalidSuffix(String),
}

/// `go-units`' `RAMInBytes` (binary multipliers): `512m`, `1g`, `1.5GiB`,
/// `32 kb`, `300`. Go converts the float result to int64 with a
/// platform-dependent value when it does not fit; such sizes (2^63 bytes
/// or more, infinities, NaN) are rejected here instead. Fractions of a
/// byte are dropped, as Go's `int64()` does.
pub fn ram_in_bytes(s: &str) -> Result<u64, SizeError> {
    parse_size(s, 1024)
}

/// `go-units`' `FromHumanSize` (decimal multipliers).
pub fn from_human_size(s: &str) -> Result<u64, SizeError> {
    parse_size(s, 1000)
}

/// `go-units`' `parseSize` with multipliers `unit^1..unit^5` for k, m, g, t, p.
fn parse_size(s: &str, unit: u64) -> Result<u64, SizeError> {
    let invalid = || SizeError::InvalidSize(s.to_owned());
    // The number ends at the last digit, dot or space.
    let sep = s
        .rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ')
        .ok_or_else(invalid)?;
    let num_end = if s.as_bytes().get(sep) == Some(&b' ') {
        sep
    } else {
        sep + 1
    };
    let num = s.get(..num_end).ok_or_else(invalid)?;
    let sfx = s.get(sep + 1..).ok_or_else(invalid)?;

    let mut size = crate::golang::parse_float(num).ok_or_else(invalid)?;
    if size < 0.0 {
        return Err(invalid());
    }
    if sfx.is_empty() {
        return float_to_size(size).ok_or_else(invalid);
    }
    // Too long: reported as written, before go-units lowercases it.
    if sfx.len() > 3 {
        return Err(SizeError::InvalidSuffix(sfx.to_owned()));
    }
    let sfx = crate::golang::to_lower(sfx);
    let bad_suffix = || SizeError::InvalidSuffix(sfx.clone());
    let b = sfx.as_bytes();
    let first = *b.first().ok_or_else(bad_suffix)?;
    if first == b'b' {
        return if b.len() > 1 {
            Err(bad_suffix())
        } else {
            float_to_size(size).ok_or_else(invalid)
        };
    }
    let power = match first {
        b'k' => 1,
        b'm' => 2,
        b'g' => 3,
        b't' => 4,
        b'p' => 5,
        _ => return Err(bad_suffix()),
    };
    let mul = unit.checked_pow(power).ok_or_else(invalid)?;
    #[expect(
        clippy::cast_precision_loss,
        reason = "multipliers are at most 2^50 or 10^15, exact in f64"
    )]
    let mul = mul as f64;
    size *= mul;
    match b.len() {
        2 if b.get(1) != Some(&b'b') => return Err(bad_suffix()),
        3 if b.get(1..) != Some(b"ib".as_slice()) => return Err(bad_suffix()),
        _ => {}
    }
    float_to_size(size).ok_or_else(invalid)
}

/// Truncates toward zero like Go's `int64(f)`, refusing values outside
/// `[0, 2^63)` where Go's result depends on the CPU.
fn float_to_size(f: f64) -> Option<u64> {
    if (0.0..9_223_372_036_854_775_808.0).contains(&f) {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "range checked above; truncation toward zero is intended"
        )]
        Some(f as u64)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // go-units size_test.go: TestRAMInBytes, and TestFromHumanSize (same
    // parser with decimal multipliers).
    #[test]
    #[expect(clippy::too_many_lines, reason = "upstream's tables of cases")]
    fn sizes_match_go_units() {
        const KIB: u64 = 1024;
        let ram_ok: &[(&str, u64)] = &[
            ("32", 32),
            ("32b", 32),
            ("32B", 32),
            ("32k", 32 * KIB),
            ("32K", 32 * KIB),
            ("32kb", 32 * KIB),
            ("32Kb", 32 * KIB),
            ("32Kib", 32 * KIB),
            ("32KIB", 32 * KIB),
            ("32Mb", 32 << 20),
            ("32Gb", 32 << 30),
            ("32Tb", 32 << 40),
            ("32Pb", 32 << 50),
            ("32PB", 32 << 50),
            ("32P", 32 << 50),
            ("32.3", 32),
            ("32.3 mb", 33_869_004),
            ("0.3MB", 314_572),
            // Own cases: Go float syntax.
            ("1e3", 1000),
            ("1E3k", 1_024_000),
            ("+5", 5),
            ("1_000", 1000),
            ("0x10p0", 16),
            ("0x1.8p1k", 3 * KIB),
            ("0X_1P4", 16),
            ("1e-400", 0),
            ("0.9", 0),
            ("9223372036854774784", 9_223_372_036_854_775_808 - 1024),
        ];
        for (input, want) in ram_ok {
            assert_eq!(ram_in_bytes(input), Ok(*want), "{input:?}");
        }
        let ram_bad = [
            "",
            "hello",
            "-32",
            " 32 ",
            "32m b",
            "32bm",
            "32.3.3",
            "1e",
            "0x10",
            "1__0",
            "_1",
            "1_",
            "0x_p1",
            "inf",
            "inf ",
            "nan ",
            "Infinity",
            "1e400",
            "8e18k",
            "9223372036854775808",
            "9223372036854775807",
            "0x1p63",
            "1kibb",
            "1x",
            "1 k b",
            "١٢",
            "1\u{130}",
        ];
        for input in ram_bad {
            assert!(ram_in_bytes(input).is_err(), "{input:?}");
        }

        let human_ok: &[(&str, u64)] = &[
            ("0", 0),
            ("0b", 0),
            ("0B", 0),
            ("0 B", 0),
            ("32", 32),
            ("32k", 32_000),
            ("32Kb", 32_000),
            ("32Mb", 32_000_000),
            ("32Pb", 32_000_000_000_000_000),
            ("32.5kB", 32_500),
            ("32.5 kB", 32_500),
            ("32.5 B", 32),
            ("0.3 K", 300),
            (".3kB", 300),
            ("0.", 0),
            ("0. ", 0),
            ("0.b", 0),
            ("-0", 0),
            ("-0b", 0),
            ("-0 B", 0),
            ("32.", 32),
            ("32.b", 32),
            ("32. b", 32),
            ("32. B", 32),
            ("0 ", 0),
        ];
        for (input, want) in human_ok {
            assert_eq!(from_human_size(input), Ok(*want), "{input:?}");
        }
        let human_bad = [
            " 0", " 0b", " 0B", " 0 B", "0b ", "0B ", "0 B ", "", "hello", ".", ". ", " ", "  ",
            " .", " . ", "-32", "-32b", "-32B", "-32 b", "-32 B", "32b.", "32B.", "32 b.", "32 B.",
            "32 bb", "32 BB", "32 b b", "32 B B", "32  b", "32  B", " 32 ", "32m b", "32bm",
        ];
        for input in human_bad {
            assert!(from_human_size(input).is_err(), "{input:?}");
        }
    }

    #[test]
    fn huge_inputs_end_without_panicking() {
        assert!(ram_in_bytes(&"9".repeat(100_000)).is_err());
        assert_eq!(ram_in_bytes(&format!("0.{}1", "0".repeat(100_000))), Ok(0));
        // The exponent saturates at 40000 as in Go; 1 - 2^-40000 rounds to 1.0.
        assert_eq!(
            ram_in_bytes(&format!("0x{}p-400000", "f".repeat(10_000))),
            Ok(1)
        );
        assert_eq!(
            ram_in_bytes(&format!("0x{}p-40004", "f".repeat(10_000))),
            Ok(0)
        );
    }

    // The CLI's wording (`kiln run --memory`, `cache prune --keep-storage`).
    #[test]
    fn errors_are_go_units_words() {
        let cases: &[(&str, &str)] = &[
            ("", "invalid size: ''"),
            ("xyz", "invalid size: 'xyz'"),
            ("k", "invalid size: 'k'"),
            ("-1", "invalid size: '-1'"),
            ("-1k", "invalid size: '-1k'"),
            ("1.2.3", "invalid size: '1.2.3'"),
            ("1  k", "invalid size: '1  k'"),
            ("inf", "invalid size: 'inf'"),
            ("99999999999p", "invalid size: '99999999999p'"),
            (
                "20000000000000000000",
                "invalid size: '20000000000000000000'",
            ),
            ("32x", "invalid suffix: 'x'"),
            ("32kk", "invalid suffix: 'kk'"),
            ("32bb", "invalid suffix: 'bb'"),
            ("32mib1", "invalid size: '32mib1'"),
            ("12 kilobytes", "invalid suffix: 'kilobytes'"),
            ("32kbi", "invalid suffix: 'kbi'"),
            ("32KIBB", "invalid suffix: 'KIBB'"),
            ("32KBB", "invalid suffix: 'kbb'"),
        ];
        for &(input, want) in cases {
            let err = ram_in_bytes(input).expect_err(input);
            assert_eq!(err.to_string(), want, "{input:?}");
        }
    }
}
