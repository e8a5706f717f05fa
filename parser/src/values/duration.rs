//! Go's `time.ParseDuration` and `time.Duration.String`, as used by the
//! `HEALTHCHECK` flags (`--interval`, `--timeout`, `--start-period`,
//! `--start-interval`).
//!
//! Durations are signed nanosecond counts (`i64`), exactly like Go's
//! `time.Duration`: Go accepts negative values such as `-5s`, and it is the
//! `HEALTHCHECK` instruction, not the duration grammar, that rejects them.
//! Ported from Go's `src/time/format.go`.

use std::fmt::Write as _;

use thiserror::Error;

/// Nanoseconds in one microsecond, millisecond, second, minute and hour.
const MICROSECOND: u64 = 1_000;
const MILLISECOND: u64 = 1_000_000;
const SECOND: u64 = 1_000_000_000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;

/// `1 << 63`: one past `i64::MAX`, the magnitude of `i64::MIN`.
const LIMIT: u64 = 1 << 63;

/// A duration string Go's `time.ParseDuration` rejects.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DurationError {
    /// Malformed or out of range; carries the whole input.
    #[error("time: invalid duration {}", go_time_quote(.0))]
    Invalid(String),
    /// A number without a unit, e.g. `5`.
    #[error("time: missing unit in duration {}", go_time_quote(.0))]
    MissingUnit(String),
    /// A unit other than `ns us µs μs ms s m h`.
    #[error("time: unknown unit {} in duration {}", go_time_quote(.unit), go_time_quote(.input))]
    UnknownUnit {
        /// The unrecognised unit text.
        unit: String,
        /// The whole input.
        input: String,
    },
}

/// Parses a duration the way Go's `time.ParseDuration` does: an optional
/// sign, then one or more `<decimal><unit>` terms (`1h30m`, `1.5s`, `-2ms`),
/// or the bare string `0`. Returns signed nanoseconds.
pub fn parse_duration(input: &str) -> Result<i64, DurationError> {
    let invalid = || DurationError::Invalid(input.to_owned());
    let bytes = input.as_bytes();
    let mut pos = 0;
    let mut negative = false;
    if let Some(&c) = bytes.first()
        && (c == b'-' || c == b'+')
    {
        negative = c == b'-';
        pos = 1;
    }
    let body = &bytes[pos..];
    if body == b"0" {
        return Ok(0);
    }
    if body.is_empty() {
        return Err(invalid());
    }

    let mut total: u64 = 0;
    while pos < bytes.len() {
        let value;
        (value, pos) = parse_term(input, pos)?;
        total = total.saturating_add(value);
        if total > LIMIT {
            return Err(invalid());
        }
    }

    if negative {
        // total <= 2^63, so the negation always fits (2^63 -> i64::MIN).
        return Ok(0i64.wrapping_sub_unsigned(total));
    }
    i64::try_from(total).map_err(|_| invalid())
}

/// Parses one `<decimal><unit>` term starting at byte `pos`, returning its
/// value in nanoseconds (at most 2^63) and the position after it.
fn parse_term(input: &str, mut pos: usize) -> Result<(u64, usize), DurationError> {
    let invalid = || DurationError::Invalid(input.to_owned());
    let bytes = input.as_bytes();
    if !bytes
        .get(pos)
        .is_some_and(|&c| c == b'.' || c.is_ascii_digit())
    {
        return Err(invalid());
    }

    // Integer part; an overflowing integer part is an error.
    let int_start = pos;
    let mut whole: u64 = 0;
    while let Some(&d) = bytes.get(pos).filter(|d| d.is_ascii_digit()) {
        if whole > LIMIT / 10 {
            return Err(invalid());
        }
        whole = whole * 10 + u64::from(d - b'0');
        if whole > LIMIT {
            return Err(invalid());
        }
        pos += 1;
    }
    let had_int = pos != int_start;

    // Fraction; digits past u64 precision are consumed but ignored.
    let mut frac: u64 = 0;
    let mut scale: f64 = 1.0;
    let mut had_frac = false;
    if bytes.get(pos) == Some(&b'.') {
        pos += 1;
        let frac_start = pos;
        let mut overflow = false;
        while let Some(&d) = bytes.get(pos).filter(|d| d.is_ascii_digit()) {
            pos += 1;
            if overflow {
                continue;
            }
            if frac > (LIMIT - 1) / 10 {
                overflow = true;
                continue;
            }
            let next = frac * 10 + u64::from(d - b'0');
            if next > LIMIT {
                overflow = true;
                continue;
            }
            frac = next;
            scale *= 10.0;
        }
        had_frac = pos != frac_start;
    }
    if !had_int && !had_frac {
        return Err(invalid());
    }

    // Unit: everything up to the next digit or '.', both ASCII, so the
    // slice boundaries are always char boundaries.
    let unit_start = pos;
    while let Some(&u) = bytes.get(pos) {
        if u == b'.' || u.is_ascii_digit() {
            break;
        }
        pos += 1;
    }
    let unit_text = input.get(unit_start..pos).unwrap_or_default();
    if unit_text.is_empty() {
        return Err(DurationError::MissingUnit(input.to_owned()));
    }
    let Some(unit) = unit_nanos(unit_text) else {
        return Err(DurationError::UnknownUnit {
            unit: unit_text.to_owned(),
            input: input.to_owned(),
        });
    };

    if whole > LIMIT / unit {
        return Err(invalid());
    }
    let mut value = whole * unit;
    if frac > 0 {
        // Go computes the fractional part in float64 and truncates.
        #[expect(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "mirrors Go's float64 arithmetic for fractional units"
        )]
        let extra = (frac as f64 * (unit as f64 / scale)) as u64;
        value = value.saturating_add(extra);
        if value > LIMIT {
            return Err(invalid());
        }
    }
    Ok((value, pos))
}

/// The nanosecond value of a Go duration unit.
fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        // U+00B5 micro sign and U+03BC Greek small mu are both accepted.
        "us" | "\u{b5}s" | "\u{3bc}s" => MICROSECOND,
        "ms" => MILLISECOND,
        "s" => SECOND,
        "m" => MINUTE,
        "h" => HOUR,
        _ => return None,
    })
}

/// Formats nanoseconds the way Go's `time.Duration.String` does: `1h2m3.5s`,
/// `1.5ms`, `0s`, with sub-second values in `ns`, `µs` or `ms`.
pub fn format_duration(nanos: i64) -> String {
    let mut magnitude = nanos.unsigned_abs();
    let mut out = String::new();
    if nanos < 0 {
        out.push('-');
    }
    if magnitude < SECOND {
        if magnitude == 0 {
            return "0s".to_owned();
        }
        let (unit, precision) = if magnitude < MICROSECOND {
            ("ns", 0)
        } else if magnitude < MILLISECOND {
            ("\u{b5}s", 3)
        } else {
            ("ms", 6)
        };
        let (whole, frac) = split_fraction(magnitude, precision);
        out.push_str(&whole.to_string());
        out.push_str(&frac);
        out.push_str(unit);
        return out;
    }

    let (seconds, frac) = split_fraction(magnitude, 9);
    magnitude = seconds;
    let secs = magnitude % 60;
    magnitude /= 60;
    if magnitude > 0 {
        let minutes = magnitude % 60;
        let hours = magnitude / 60;
        if hours > 0 {
            out.push_str(&hours.to_string());
            out.push('h');
        }
        out.push_str(&minutes.to_string());
        out.push('m');
    }
    out.push_str(&secs.to_string());
    out.push_str(&frac);
    out.push('s');
    out
}

/// Splits `value` into `value / 10^precision` and the fraction digits as
/// `.ddd` with trailing zeros (and a bare `.`) removed, like Go's `fmtFrac`.
fn split_fraction(value: u64, precision: u32) -> (u64, String) {
    let divisor = 10u64.pow(precision);
    let frac = value % divisor;
    if frac == 0 {
        return (value / divisor, String::new());
    }
    let digits = format!("{frac:0width$}", width = precision as usize);
    let trimmed = digits.trim_end_matches('0');
    (value / divisor, format!(".{trimmed}"))
}

/// The private `quote` helper of Go's `time` package: wraps in double quotes,
/// backslash-escapes `"` and `\`, and writes every byte of a non-ASCII or
/// control character as `\xNN`. This is not `strconv.Quote`.
fn go_time_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c.is_ascii() && c >= ' ' {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "\\x{byte:02x}");
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::XorShift;

    const NS: i64 = 1;
    const US: i64 = 1_000;
    const MS: i64 = 1_000_000;
    const S: i64 = 1_000_000_000;
    const M: i64 = 60 * S;
    const H: i64 = 60 * M;

    /// Go's `parseDurationTests` from `time_test.go`.
    #[test]
    fn parses_go_table() {
        let cases: &[(&str, i64)] = &[
            // simple
            ("0", 0),
            ("5s", 5 * S),
            ("30s", 30 * S),
            ("1478s", 1478 * S),
            // sign
            ("-5s", -5 * S),
            ("+5s", 5 * S),
            ("-0", 0),
            ("+0", 0),
            // decimal
            ("5.0s", 5 * S),
            ("5.6s", 5 * S + 600 * MS),
            ("5.s", 5 * S),
            (".5s", 500 * MS),
            ("1.0s", S),
            ("1.00s", S),
            ("1.004s", S + 4 * MS),
            ("1.0040s", S + 4 * MS),
            ("100.00100s", 100 * S + MS),
            // different units
            ("10ns", 10 * NS),
            ("11us", 11 * US),
            ("12µs", 12 * US),
            ("12μs", 12 * US),
            ("13ms", 13 * MS),
            ("14s", 14 * S),
            ("15m", 15 * M),
            ("16h", 16 * H),
            // composite durations
            ("3h30m", 3 * H + 30 * M),
            ("10.5s4m", 4 * M + 10 * S + 500 * MS),
            ("-2m3.4s", -(2 * M + 3 * S + 400 * MS)),
            (
                "1h2m3s4ms5us6ns",
                H + 2 * M + 3 * S + 4 * MS + 5 * US + 6 * NS,
            ),
            ("39h9m14.425s", 39 * H + 9 * M + 14 * S + 425 * MS),
            // large value
            ("52763797000ns", 52_763_797_000 * NS),
            // more than 9 digits after decimal point
            ("0.3333333333333333333h", 20 * M),
            // 9007199254740993 = 1<<53+1 cannot be stored precisely in a float64
            ("9007199254740993ns", (1 << 53) + 1),
            // largest duration that can be represented by int64 in nanoseconds
            ("9223372036854775807ns", i64::MAX),
            ("9223372036854775.807us", i64::MAX),
            ("9223372036s854ms775us807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("-9223372036854775.808us", i64::MIN),
            ("-9223372036s854ms775us808ns", i64::MIN),
            // largest negative value
            ("-9223372036854775808ns", i64::MIN),
            // largest negative round trip value
            ("-2562047h47m16.854775808s", i64::MIN),
            // huge string; issue 15011.
            ("0.100000000000000000000h", 6 * M),
            // This value tests the first overflow check in leadingFraction.
            (
                "0.830103483285477580700h",
                49 * M + 48 * S + 372_539_827 * NS,
            ),
        ];
        for &(input, want) in cases {
            assert_eq!(parse_duration(input), Ok(want), "input {input:?}");
        }
    }

    /// Go's `parseDurationErrorTests`, with the full error text.
    #[test]
    fn rejects_go_table_with_go_messages() {
        let cases: &[(&str, &str)] = &[
            ("", r#"time: invalid duration """#),
            ("3", r#"time: missing unit in duration "3""#),
            ("-", r#"time: invalid duration "-""#),
            ("s", r#"time: invalid duration "s""#),
            (".", r#"time: invalid duration ".""#),
            ("-.", r#"time: invalid duration "-.""#),
            (".s", r#"time: invalid duration ".s""#),
            ("+.s", r#"time: invalid duration "+.s""#),
            ("1d", r#"time: unknown unit "d" in duration "1d""#),
            (
                "\u{85}\u{85}",
                r#"time: invalid duration "\xc2\x85\xc2\x85""#,
            ),
            ("\u{ffff}", r#"time: invalid duration "\xef\xbf\xbf""#),
            ("\u{fffd}", r#"time: invalid duration "\xef\xbf\xbd""#),
            (
                "\u{fffd} hello \u{fffd} world",
                r#"time: invalid duration "\xef\xbf\xbd hello \xef\xbf\xbd world""#,
            ),
            (
                "9223372036854775810ns",
                r#"time: invalid duration "9223372036854775810ns""#,
            ),
            (
                "9223372036854775808ns",
                r#"time: invalid duration "9223372036854775808ns""#,
            ),
            (
                "-9223372036854775809ns",
                r#"time: invalid duration "-9223372036854775809ns""#,
            ),
            (
                "9223372036854776us",
                r#"time: invalid duration "9223372036854776us""#,
            ),
            ("3000000h", r#"time: invalid duration "3000000h""#),
            (
                "9223372036854775.808us",
                r#"time: invalid duration "9223372036854775.808us""#,
            ),
            (
                "9223372036854ms775us808ns",
                r#"time: invalid duration "9223372036854ms775us808ns""#,
            ),
            ("5x", r#"time: unknown unit "x" in duration "5x""#),
            ("1h 30m", r#"time: unknown unit "h " in duration "1h 30m""#),
            ("5S", r#"time: unknown unit "S" in duration "5S""#),
            ("--5s", r#"time: invalid duration "--5s""#),
            ("5s-3s", r#"time: unknown unit "s-" in duration "5s-3s""#),
            ("1.2.3s", r#"time: missing unit in duration "1.2.3s""#),
            (" 5s", r#"time: invalid duration " 5s""#),
            (
                "5é",
                r#"time: unknown unit "\xc3\xa9" in duration "5\xc3\xa9""#,
            ),
            ("5\"", r#"time: unknown unit "\"" in duration "5\"""#),
            ("5\\", r#"time: unknown unit "\\" in duration "5\\""#),
            ("5\t", r#"time: unknown unit "\x09" in duration "5\x09""#),
            ("5\x7f", "time: unknown unit \"\x7f\" in duration \"5\x7f\""),
        ];
        for &(input, want) in cases {
            let err = parse_duration(input).expect_err(input);
            assert_eq!(err.to_string(), want, "input {input:?}");
        }
    }

    /// Go's `durationTests` for `Duration.String`.
    #[test]
    fn formats_like_go() {
        let cases: &[(&str, i64)] = &[
            ("0s", 0),
            ("1ns", NS),
            ("1.1µs", 1100 * NS),
            ("2.2ms", 2200 * US),
            ("3.3s", 3300 * MS),
            ("4m5s", 4 * M + 5 * S),
            ("4m5.001s", 4 * M + 5001 * MS),
            ("5h6m7.001s", 5 * H + 6 * M + 7001 * MS),
            ("8m0.000000001s", 8 * M + NS),
            ("2562047h47m16.854775807s", i64::MAX),
            ("-2562047h47m16.854775808s", i64::MIN),
            ("1m30s", 90 * S),
            ("1.5s", 1500 * MS),
            ("1h0m0s", H),
            ("-1ns", -1),
            ("-5s", -5 * S),
            ("999ns", 999),
            ("1µs", US),
            ("999.999µs", 999_999),
            ("1ms", MS),
            ("999.999999ms", 999_999_999),
            ("1s", S),
        ];
        for &(want, nanos) in cases {
            assert_eq!(format_duration(nanos), want, "nanos {nanos}");
        }
    }

    #[test]
    fn round_trips_through_go_format() {
        for nanos in [
            0,
            1,
            999,
            1000,
            1_500_000,
            90 * S,
            H + 1,
            i64::MAX,
            i64::MIN,
            -42 * MS,
        ] {
            assert_eq!(parse_duration(&format_duration(nanos)), Ok(nanos));
        }
    }

    #[test]
    fn huge_inputs() {
        let many_zeros = format!("0.{}1s", "0".repeat(10_000));
        assert_eq!(parse_duration(&many_zeros), Ok(0));
        let long_sum = "1ns".repeat(10_000);
        assert_eq!(parse_duration(&long_sum), Ok(10_000));
        let overflow = "9223372036s".repeat(2);
        assert!(matches!(
            parse_duration(&overflow),
            Err(DurationError::Invalid(_))
        ));
    }

    #[test]
    fn never_panics_on_garbage() {
        let alphabet: Vec<char> = "0123456789.+-nsuµμmh d\"\\\u{0}é€🐳".chars().collect();
        let mut rng = XorShift::new(0x9E37_79B9_7F4A_7C15);
        for _ in 0..5_000 {
            let s = rng.string(&alphabet, 24);
            if let Ok(nanos) = parse_duration(&s) {
                assert_eq!(
                    parse_duration(&format_duration(nanos)),
                    Ok(nanos),
                    "input {s:?}"
                );
            }
        }
    }
}
