//! `STOPSIGNAL` values, as `moby/sys/signal.ParseSignal` accepts them with
//! its Linux signal table (`signal_linux.go`, the table used on amd64, arm64
//! and every other Linux architecture except MIPS and SPARC).
//!
//! `BuildKit` only *validates* the value with `ParseSignal` and stores the
//! original text in the image config's `StopSignal`; [`Signal`] additionally
//! reports the number and a canonical name.
//!
//! Accepted forms: a decimal integer other than zero (any `i64`, with an
//! optional sign, so `-1` and `99999` pass as upstream lets them), or a
//! signal name from the table, case-insensitively, with or without a `SIG`
//! prefix (`TERM`, `sigterm`, `SIGRTMIN+3`).

use thiserror::Error;

/// Linux real-time signal bounds as `moby/sys/signal` defines them.
const SIGRTMIN: i64 = 34;
const SIGRTMAX: i64 = 64;

/// `moby/sys/signal`'s Linux `SignalMap`, minus the real-time entries
/// (generated in [`lookup_name`]). Aliases (`CLD`, `IOT`, `POLL`) are listed
/// after the name Linux prefers for their number.
const NAMED: &[(&str, i64)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("IOT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("POLL", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// Canonical names of the real-time signals, indexed by `number - SIGRTMIN`
/// (`RTMIN`, `RTMIN+1` ... `RTMIN+15`, `RTMAX-14` ... `RTMAX-1`, `RTMAX`).
const REALTIME: [&str; 31] = [
    "SIGRTMIN",
    "SIGRTMIN+1",
    "SIGRTMIN+2",
    "SIGRTMIN+3",
    "SIGRTMIN+4",
    "SIGRTMIN+5",
    "SIGRTMIN+6",
    "SIGRTMIN+7",
    "SIGRTMIN+8",
    "SIGRTMIN+9",
    "SIGRTMIN+10",
    "SIGRTMIN+11",
    "SIGRTMIN+12",
    "SIGRTMIN+13",
    "SIGRTMIN+14",
    "SIGRTMIN+15",
    "SIGRTMAX-14",
    "SIGRTMAX-13",
    "SIGRTMAX-12",
    "SIGRTMAX-11",
    "SIGRTMAX-10",
    "SIGRTMAX-9",
    "SIGRTMAX-8",
    "SIGRTMAX-7",
    "SIGRTMAX-6",
    "SIGRTMAX-5",
    "SIGRTMAX-4",
    "SIGRTMAX-3",
    "SIGRTMAX-2",
    "SIGRTMAX-1",
    "SIGRTMAX",
];

/// Canonical `SIG…` names of the classic signals, indexed by number.
const CLASSIC: [&str; 32] = [
    "",
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// A `STOPSIGNAL` value that `ParseSignal` rejects.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SignalError {
    /// Zero, or a name not in the Linux table; carries the raw input.
    #[error("invalid signal: {0}")]
    Invalid(String),
}

/// A validated signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal {
    /// The signal number. Numeric input is taken as given, so this may be
    /// negative or beyond `SIGRTMAX`, exactly as upstream allows.
    pub number: i64,
    /// Linux's preferred name for `number` (`SIGCHLD` for `CLD`, `SIGABRT`
    /// for `IOT`, `SIGIO` for `POLL`), or `None` for numbers with no name.
    pub name: Option<&'static str>,
}

/// Parses a `STOPSIGNAL` value like `moby/sys/signal.ParseSignal` on Linux.
pub fn parse_signal(raw: &str) -> Result<Signal, SignalError> {
    let invalid = || SignalError::Invalid(raw.to_owned());
    if let Some(number) = crate::golang::atoi(raw) {
        if number == 0 {
            return Err(invalid());
        }
        return Ok(Signal {
            number,
            name: canonical_name(number),
        });
    }
    let upper = crate::golang::to_upper(raw);
    let key = upper.strip_prefix("SIG").unwrap_or(&upper);
    let number = lookup_name(key).ok_or_else(invalid)?;
    Ok(Signal {
        number,
        name: canonical_name(number),
    })
}

/// Linux's preferred name for a signal number, if it has one.
fn canonical_name(number: i64) -> Option<&'static str> {
    if (SIGRTMIN..=SIGRTMAX).contains(&number) {
        return REALTIME
            .get(usize::try_from(number - SIGRTMIN).ok()?)
            .copied();
    }
    let name = CLASSIC.get(usize::try_from(number).ok()?).copied()?;
    (!name.is_empty()).then_some(name)
}

/// The number for a table key (upper case, without `SIG`).
fn lookup_name(key: &str) -> Option<i64> {
    if let Some(&(_, number)) = NAMED.iter().find(|(name, _)| *name == key) {
        return Some(number);
    }
    match key {
        "RTMIN" => return Some(SIGRTMIN),
        "RTMAX" => return Some(SIGRTMAX),
        _ => {}
    }
    // `RTMIN+1`..`RTMIN+15` and `RTMAX-14`..`RTMAX-1`, spelled exactly so:
    // no leading zeros or signs.
    let (base, offset, sign) = if let Some(rest) = key.strip_prefix("RTMIN+") {
        (SIGRTMIN, rest, 1)
    } else if let Some(rest) = key.strip_prefix("RTMAX-") {
        (SIGRTMAX, rest, -1)
    } else {
        return None;
    };
    let limit = if sign > 0 { 15 } else { 14 };
    let valid_digits = !offset.is_empty()
        && offset.len() <= 2
        && offset.bytes().all(|b| b.is_ascii_digit())
        && !offset.starts_with('0');
    if !valid_digits {
        return None;
    }
    let n: i64 = offset.parse().ok()?;
    (1..=limit).contains(&n).then_some(base + sign * n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::XorShift;

    fn ok(number: i64, name: Option<&'static str>) -> Signal {
        Signal { number, name }
    }

    #[test]
    fn upstream_parse_signal_errors() {
        // moby/sys signal_test.go TestParseSignal.
        for (input, message) in [("0", "invalid signal: 0"), ("SIG", "invalid signal: SIG")] {
            assert_eq!(parse_signal(input).unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn every_table_entry_parses_bare_and_prefixed() {
        // moby/sys signal_test.go: every SignalMap key parses to its value.
        let mut all: Vec<(String, i64)> = NAMED.iter().map(|&(k, v)| (k.to_owned(), v)).collect();
        all.push(("RTMIN".into(), 34));
        all.push(("RTMAX".into(), 64));
        for n in 1..=15 {
            all.push((format!("RTMIN+{n}"), 34 + n));
        }
        for n in 1..=14 {
            all.push((format!("RTMAX-{n}"), 64 - n));
        }
        assert_eq!(all.len(), 65, "SignalMap has 65 entries on Linux");
        for (key, number) in all {
            for input in [key.clone(), format!("SIG{key}"), key.to_lowercase()] {
                let got = parse_signal(&input).unwrap();
                assert_eq!(got.number, number, "input {input}");
                assert!(got.name.is_some(), "input {input}");
            }
        }
    }

    #[test]
    fn accepts_like_upstream() {
        let cases: &[(&str, Signal)] = &[
            ("SIGTERM", ok(15, Some("SIGTERM"))),
            ("TERM", ok(15, Some("SIGTERM"))),
            ("term", ok(15, Some("SIGTERM"))),
            ("SigTerm", ok(15, Some("SIGTERM"))),
            ("15", ok(15, Some("SIGTERM"))),
            ("+15", ok(15, Some("SIGTERM"))),
            ("0015", ok(15, Some("SIGTERM"))),
            ("9", ok(9, Some("SIGKILL"))),
            ("SIGKILL", ok(9, Some("SIGKILL"))),
            ("SIGCLD", ok(17, Some("SIGCHLD"))),
            ("IOT", ok(6, Some("SIGABRT"))),
            ("SIGPOLL", ok(29, Some("SIGIO"))),
            ("SIGRTMIN+3", ok(37, Some("SIGRTMIN+3"))),
            ("rtmin+15", ok(49, Some("SIGRTMIN+15"))),
            ("SIGRTMAX-14", ok(50, Some("SIGRTMAX-14"))),
            ("SIGRTMAX", ok(64, Some("SIGRTMAX"))),
            ("37", ok(37, Some("SIGRTMIN+3"))),
            ("32", ok(32, None)),
            ("65", ok(65, None)),
            ("99999", ok(99_999, None)),
            ("-1", ok(-1, None)),
            ("-9223372036854775808", ok(i64::MIN, None)),
            ("9223372036854775807", ok(i64::MAX, None)),
            // Go's ToUpper maps U+017F (long s) and U+0131 (dotless i) to ASCII.
            ("\u{17f}igterm", ok(15, Some("SIGTERM"))),
            ("S\u{131}GINT", ok(2, Some("SIGINT"))),
        ];
        for (input, want) in cases {
            assert_eq!(parse_signal(input), Ok(*want), "input {input:?}");
        }
    }

    #[test]
    fn rejects_like_upstream() {
        for input in [
            "",
            "0",
            "-0",
            "+0",
            "SIG",
            "sig",
            "SIGSIGTERM",
            "SIGRTMIN+16",
            "SIGRTMIN+0",
            "SIGRTMIN+03",
            "SIGRTMAX-15",
            "SIGRTMAX-0",
            "RTMIN-1",
            "RTMAX+1",
            " SIGTERM",
            "SIGTERM ",
            "SIG TERM",
            "15 ",
            "1_5",
            "0x0f",
            "+",
            "-",
            "9223372036854775808",
            "-9223372036854775809",
            "SIGﬅOP",
            "TERMINATE",
            "SIGEMT",
            "SIGINFO",
            "SIGLOST",
            "SIGUNUSED",
        ] {
            assert_eq!(
                parse_signal(input),
                Err(SignalError::Invalid(input.to_owned())),
                "input {input:?}"
            );
            assert_eq!(
                parse_signal(input).unwrap_err().to_string(),
                format!("invalid signal: {input}")
            );
        }
    }

    #[test]
    fn never_panics_on_garbage() {
        let alphabet: Vec<char> = "SIGTERMRTMINAX+-0123456789 sigtrm\u{17f}\u{131}ß🐳"
            .chars()
            .collect();
        let mut rng = XorShift::new(0x5151_7777);
        for _ in 0..5_000 {
            let s = rng.string(&alphabet, 16);
            if let Ok(signal) = parse_signal(&s) {
                assert_ne!(signal.number, 0, "input {s:?}");
            }
        }
        let huge = "9".repeat(100_000);
        assert!(parse_signal(&huge).is_err());
    }
}
