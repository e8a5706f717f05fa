//! Human-readable sizes and durations, ported from Docker's go-units
//! (`size.go`, `duration.go`) so `kiln images` and friends print exactly
//! what `docker images` prints.

use std::fmt::Write as _;
use std::time::Duration;

/// Decimal unit names, as `units.HumanSize` uses them.
const DECIMAL_ABBRS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];

/// A size string that [`parse_size`] rejects, in go-units' words.
pub use kiln_parser::values::SizeError as UnitsError;

/// Divides `size` by `base` until it is below `base` (go-units' `getSizeAndUnit`).
fn size_and_unit(mut size: f64, base: f64, units: &[&'static str; 9]) -> (f64, &'static str) {
    let mut i = 0;
    while size >= base && i < units.len() - 1 {
        size /= base;
        i += 1;
    }
    (size, units[i])
}

/// `docker images` SIZE: `units.HumanSizeWithPrecision(float64(size), 3)`,
/// decimal units (`4.26MB`, `123kB`, `0B`, `1.05GB`, `999B`).
pub fn human_size(bytes: u64) -> String {
    #[expect(
        clippy::cast_precision_loss,
        reason = "go-units converts to float64 too"
    )]
    let (size, unit) = size_and_unit(bytes as f64, 1000.0, &DECIMAL_ABBRS);
    format!("{}{unit}", format_float_g(size, Some(3)))
}

/// Binary unit names, as `units.BytesSize` uses them.
const BINARY_ABBRS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];

/// `units.BytesSize`: binary units, four significant digits (`docker
/// info`'s Total Memory: `23.54GiB`, `512MiB`, `1KiB`).
pub fn bytes_size(bytes: u64) -> String {
    #[expect(
        clippy::cast_precision_loss,
        reason = "go-units converts to float64 too"
    )]
    let (size, unit) = size_and_unit(bytes as f64, 1024.0, &BINARY_ABBRS);
    format!("{}{unit}", format_float_g(size, Some(4)))
}

/// `units.HumanDuration`: "Less than a second", "About a minute", "3 hours",
/// "2 weeks"... (`docker images` prints it followed by " ago").
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    if seconds < 1 {
        return "Less than a second".to_owned();
    }
    if seconds == 1 {
        return "1 second".to_owned();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = seconds / 60;
    if minutes == 1 {
        return "About a minute".to_owned();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    // Go rounds hours to the nearest: int(d.Hours() + 0.5).
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a positive float, truncated like Go's int()"
    )]
    let hours = (d.as_secs_f64() / 3600.0 + 0.5) as u64;
    if hours == 1 {
        return "About an hour".to_owned();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    // Years use the truncated hours, as go-units does.
    format!("{} years", seconds / 3600 / 24 / 365)
}

/// `units.RAMInBytes`: parses `512m`, `1g`, `100k`, `1.5g`, `2GiB`, `300`
/// (binary multiples, case-insensitive, optional `b`/`ib`, optional space
/// before the unit), with the parser's one port of go-units.
pub fn parse_size(s: &str) -> Result<u64, UnitsError> {
    kiln_parser::values::ram_in_bytes(s)
}

/// Formats a float like Go's `%g` (`precision` = `Some(n)` for `%.ng`,
/// `None` for the shortest representation that `%v` uses): `4.26`, `1e+03`,
/// `1.5e+06`, `0.0001`.
pub(crate) fn format_float_g(value: f64, precision: Option<usize>) -> String {
    if value.is_nan() {
        return "NaN".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    let negative = value.is_sign_negative();
    let abs = value.abs();
    // Rust's exponent formatting rounds half to even like Go's strconv.
    let sci = match precision {
        Some(p) => format!("{:.*e}", p.max(1) - 1, abs),
        None => format!("{abs:e}"),
    };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let mut digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    while digits.len() > 1 && digits.last() == Some(&b'0') {
        digits.pop();
    }
    let sign = if negative { "-" } else { "" };
    if digits == [b'0'] {
        return format!("{sign}0");
    }
    #[expect(clippy::cast_possible_wrap, reason = "at most 17 digits")]
    let nd = digits.len() as i64;
    let dp = exp + 1;
    let shortest = precision.is_none();
    #[expect(clippy::cast_possible_wrap, reason = "small precision")]
    let mut prec = precision.map_or(nd, |p| p.max(1) as i64);
    let mut eprec = prec;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    if shortest {
        eprec = 6;
    }
    let mut out = String::from(sign);
    if exp < -4 || exp >= eprec {
        // %e with min(prec, nd) significant digits and a two-digit exponent.
        prec = prec.min(nd);
        out.push(char::from(digits[0]));
        if prec > 1 {
            out.push('.');
            for &d in digits
                .iter()
                .skip(1)
                .take(usize::try_from(prec - 1).unwrap_or(0))
            {
                out.push(char::from(d));
            }
        }
        let exp_sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "e{exp_sign}{:02}", exp.abs());
        return out;
    }
    if prec > dp {
        prec = nd;
    }
    let decimals = (prec - dp).max(0);
    let digit_at = |i: i64| -> char {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i))
            .map_or('0', |&d| char::from(d))
    };
    if dp > 0 {
        for i in 0..dp {
            out.push(digit_at(i));
        }
    } else {
        out.push('0');
    }
    if decimals > 0 {
        out.push('.');
        for i in 0..decimals {
            out.push(digit_at(dp + i));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_size_matches_go_units() {
        for (bytes, want) in [
            (0, "0B"),
            (1023, "1023B"),
            (1024, "1KiB"),
            (536_870_912, "512MiB"),
            (25_276_203_008, "23.54GiB"),
        ] {
            assert_eq!(bytes_size(bytes), want, "{bytes}");
        }
    }

    #[test]
    fn human_size_matches_go_units() {
        let cases: &[(u64, &str)] = &[
            (0, "0B"),
            (1, "1B"),
            (999, "999B"),
            (1000, "1kB"),
            (1024, "1.02kB"),
            (123_000, "123kB"),
            (123_456, "123kB"),
            (999_499, "999kB"),
            // Rounds to 1000 with three digits: Go switches to %e here.
            (999_500, "1e+03kB"),
            (1_000_000, "1MB"),
            (4_260_000, "4.26MB"),
            (4_264_999, "4.26MB"),
            (4_265_001, "4.27MB"),
            // An exact tie rounds half to even, as Go's strconv does.
            (1_125, "1.12kB"),
            (1_050_000_000, "1.05GB"),
            (72_900_000, "72.9MB"),
            (1_000_000_000_000, "1TB"),
            (1_000_000_000_000_000, "1PB"),
            (u64::MAX, "18.4EB"),
        ];
        for &(bytes, want) in cases {
            assert_eq!(human_size(bytes), want, "human_size({bytes})");
        }
    }

    #[test]
    fn human_duration_matches_go_units() {
        const MIN: u64 = 60;
        const HOUR: u64 = 60 * MIN;
        const DAY: u64 = 24 * HOUR;
        const WEEK: u64 = 7 * DAY;
        const MONTH: u64 = 30 * DAY;
        const YEAR: u64 = 365 * DAY;
        let s = Duration::from_secs;
        let cases: &[(Duration, &str)] = &[
            (Duration::ZERO, "Less than a second"),
            (Duration::from_millis(450), "Less than a second"),
            (Duration::from_millis(999), "Less than a second"),
            (s(1), "1 second"),
            (Duration::from_millis(1999), "1 second"),
            (s(2), "2 seconds"),
            (s(45), "45 seconds"),
            (s(59), "59 seconds"),
            (s(60), "About a minute"),
            (s(119), "About a minute"),
            (s(120), "2 minutes"),
            (s(3 * MIN), "3 minutes"),
            (s(35 * MIN + 40), "35 minutes"),
            (s(59 * MIN + 59), "59 minutes"),
            (s(HOUR), "About an hour"),
            (s(HOUR + 29 * MIN), "About an hour"),
            (s(HOUR + 30 * MIN), "2 hours"),
            (s(HOUR + 31 * MIN), "2 hours"),
            (s(3 * HOUR + 29 * MIN), "3 hours"),
            (s(3 * HOUR + 31 * MIN), "4 hours"),
            (s(DAY), "24 hours"),
            (s(DAY + 12 * HOUR), "36 hours"),
            (s(47 * HOUR + 29 * MIN), "47 hours"),
            (s(47 * HOUR + 30 * MIN), "2 days"),
            (s(2 * DAY), "2 days"),
            (s(7 * DAY), "7 days"),
            (s(13 * DAY + 5 * HOUR), "13 days"),
            (s(2 * WEEK - HOUR), "13 days"),
            (s(2 * WEEK), "2 weeks"),
            (s(2 * WEEK + 4 * DAY), "2 weeks"),
            (s(3 * WEEK), "3 weeks"),
            (s(4 * WEEK + 3 * DAY), "4 weeks"),
            (s(MONTH), "4 weeks"),
            (s(MONTH + 2 * WEEK), "6 weeks"),
            (s(2 * MONTH - HOUR), "8 weeks"),
            (s(2 * MONTH), "2 months"),
            (s(3 * MONTH + WEEK), "3 months"),
            (s(5 * MONTH + 2 * WEEK), "5 months"),
            (s(13 * MONTH), "13 months"),
            (s(24 * MONTH), "24 months"),
            (s(2 * YEAR - HOUR), "24 months"),
            (s(2 * YEAR), "2 years"),
            (s(24 * MONTH + 2 * WEEK), "2 years"),
            (s(3 * YEAR + 2 * MONTH), "3 years"),
            (s(100 * YEAR), "100 years"),
        ];
        for &(d, want) in cases {
            assert_eq!(human_duration(d), want, "human_duration({d:?})");
        }
    }

    #[test]
    fn parse_size_accepts_ram_in_bytes_forms() {
        let cases: &[(&str, u64)] = &[
            ("0", 0),
            ("32", 32),
            ("32b", 32),
            ("32B", 32),
            ("32k", 32 << 10),
            ("32K", 32 << 10),
            ("32kb", 32 << 10),
            ("32Kb", 32 << 10),
            ("32KiB", 32 << 10),
            ("32kib", 32 << 10),
            ("32Mb", 32 << 20),
            ("512m", 512 << 20),
            ("32Gb", 32 << 30),
            ("1g", 1 << 30),
            ("32Tb", 32 << 40),
            ("32PB", 32 << 50),
            ("32 mb", 32 << 20),
            ("100k", 100 << 10),
            ("1.5g", 3 << 29),
            ("0.3k", 307),
            ("1.", 1),
            (".5k", 512),
            ("1e3", 1000),
            ("32.3", 32),
            ("1024.9b", 1024),
        ];
        for &(input, want) in cases {
            assert_eq!(parse_size(input), Ok(want), "parse_size({input:?})");
        }
    }

    #[test]
    fn format_float_g_matches_go() {
        let shortest: &[(f64, &str)] = &[
            (0.0, "0"),
            (1.5, "1.5"),
            (3.0, "3"),
            (100_000.0, "100000"),
            (1_000_000.0, "1e+06"),
            (1_500_000.0, "1.5e+06"),
            (123_456_789.0, "1.23456789e+08"),
            (1e21, "1e+21"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.25, "-2.25"),
            (0.1, "0.1"),
            (1e100, "1e+100"),
        ];
        for &(v, want) in shortest {
            assert_eq!(format_float_g(v, None), want, "%v of {v}");
        }
        let fixed: &[(f64, usize, &str)] = &[
            (1000.0, 4, "1000"),
            (999.5, 3, "1e+03"),
            (4.264, 3, "4.26"),
            (12.0, 3, "12"),
            (0.000_012_34, 3, "1.23e-05"),
            (1023.0, 4, "1023"),
            (1023.99, 4, "1024"),
        ];
        for &(v, p, want) in fixed {
            assert_eq!(format_float_g(v, Some(p)), want, "%.{p}g of {v}");
        }
    }
}
