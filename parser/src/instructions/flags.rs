//! Instruction flags, checked as BuildKit's `BFlags` checks them: each
//! instruction declares its flags; anything else is an error naming it.

use crate::ast::Word;
use crate::error::ErrorKind;
use crate::source::Span;

/// The kind of value a flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagKind {
    /// `--link`, `--link=true|false`.
    Bool,
    /// `--from=x`, once.
    String,
    /// `--exclude=x`, any number of times.
    Strings,
}

/// A declared flag.
pub(crate) struct FlagSpec {
    pub name: &'static str,
    pub kind: FlagKind,
}

/// The flags given to one instruction, after checking.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    values: Vec<(&'static str, Word)>,
}

impl Flags {
    /// The value of string flag `name`, with the span of its flag word.
    pub fn string(&self, name: &str) -> Option<&Word> {
        self.values.iter().find(|(n, _)| *n == name).map(|(_, w)| w)
    }

    /// All values of a repeatable flag.
    pub fn strings(&self, name: &str) -> Vec<Word> {
        self.values
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, w)| w.clone())
            .collect()
    }

    /// A boolean flag: `None` when not given.
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.string(name).map(|w| w.value == "true")
    }
}

/// A flag error and where it is.
pub(crate) type FlagError = (Span, ErrorKind, String);

fn expected_list(specs: &[FlagSpec]) -> String {
    if specs.is_empty() {
        return "no flags on this instruction".to_owned();
    }
    let names: Vec<String> = specs.iter().map(|s| format!("--{}", s.name)).collect();
    format!("one of {}", names.join(", "))
}

/// Checks `given` against `specs` (BuildKit's `BFlags.Parse`). Messages
/// name the flag as written, dashes included (`unknown flag: --mont (did
/// you mean mount?)`), as current BuildKit does.
pub(crate) fn parse_flags(given: &[Word], specs: &[FlagSpec]) -> Result<Flags, FlagError> {
    let mut flags = Flags::default();
    for word in given {
        let Some(arg) = word.value.strip_prefix("--") else {
            return Err((
                word.span,
                ErrorKind::UnknownFlag {
                    flag: word.value.clone(),
                    suggestion: None,
                },
                expected_list(specs),
            ));
        };
        if arg.is_empty() {
            break;
        }
        let (name, value) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (arg, None),
        };
        // for messages only
        let flag = || format!("--{name}");
        let Some(spec) = specs.iter().find(|s| s.name == name) else {
            // BuildKit lists the flags from a map: see suggest::Order.
            let suggestion = crate::suggest::nearest(
                name,
                specs.iter().map(|s| s.name),
                crate::suggest::Order::Unordered,
            );
            return Err((
                word.span,
                ErrorKind::UnknownFlag {
                    flag: flag(),
                    suggestion: suggestion.map(str::to_owned),
                },
                expected_list(specs),
            ));
        };
        if spec.kind != FlagKind::Strings && flags.string(spec.name).is_some() {
            return Err((
                word.span,
                ErrorKind::DuplicateFlag { flag: flag() },
                format!("--{name} at most once"),
            ));
        }
        let value_span = value_span(word, name);
        let stored = match (spec.kind, value) {
            (FlagKind::Bool, None) => "true".to_owned(),
            (FlagKind::Bool, Some("")) | (FlagKind::String | FlagKind::Strings, None) => {
                return Err((
                    word.span,
                    ErrorKind::MissingFlagValue { flag: flag() },
                    format!("--{name}=<value>"),
                ));
            }
            (FlagKind::Bool, Some(v)) => {
                let lower = v.to_lowercase();
                if lower != "true" && lower != "false" {
                    return Err((
                        value_span,
                        ErrorKind::InvalidBool {
                            flag: flag(),
                            value: v.to_owned(),
                        },
                        "true or false".to_owned(),
                    ));
                }
                lower
            }
            (FlagKind::String | FlagKind::Strings, Some(v)) => v.to_owned(),
        };
        flags.values.push((
            spec.name,
            Word {
                value: stored,
                span: value_span,
            },
        ));
    }
    Ok(flags)
}

/// The span of the value part of `--name=value` (the whole flag when the
/// value cannot be told apart).
fn value_span(word: &Word, name: &str) -> Span {
    // `--` + name + `=`
    word.span.skip(name.chars().count() + 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[FlagSpec] = &[
        FlagSpec {
            name: "from",
            kind: FlagKind::String,
        },
        FlagSpec {
            name: "link",
            kind: FlagKind::Bool,
        },
        FlagSpec {
            name: "exclude",
            kind: FlagKind::Strings,
        },
    ];

    fn words(values: &[&str]) -> Vec<Word> {
        values
            .iter()
            .map(|v| Word {
                value: (*v).to_owned(),
                span: Span {
                    line: 1,
                    column: 6,
                    width: v.chars().count(),
                },
            })
            .collect()
    }

    #[test]
    fn accepts_declared_flags() {
        let f = parse_flags(
            &words(&["--from=a", "--link", "--exclude=x", "--exclude=y"]),
            SPECS,
        )
        .unwrap();
        assert_eq!(f.string("from").unwrap().value, "a");
        assert_eq!(f.string("from").unwrap().span.column, 13);
        assert_eq!(f.bool("link"), Some(true));
        assert_eq!(f.strings("exclude").len(), 2);
        let f = parse_flags(&words(&["--link=FALSE"]), SPECS).unwrap();
        assert_eq!(f.bool("link"), Some(false));
        assert_eq!(f.bool("from"), None);
    }

    #[test]
    fn rejects_bad_flags_with_buildkit_wording() {
        let err = |v: &[&str]| parse_flags(&words(v), SPECS).unwrap_err().1.to_string();
        assert_eq!(err(&["--chown=x"]), "unknown flag: --chown");
        assert_eq!(
            err(&["--frm=x"]),
            "unknown flag: --frm (did you mean from?)"
        );
        assert_eq!(
            err(&["--exclud"]),
            "unknown flag: --exclud (did you mean exclude?)"
        );
        assert_eq!(
            err(&["--from=a", "--from=b"]),
            "duplicate flag specified: --from"
        );
        assert_eq!(err(&["--from"]), "missing a value on flag: --from");
        assert_eq!(err(&["--link="]), "missing a value on flag: --link");
        assert_eq!(
            err(&["--link=yes"]),
            "expecting boolean value for flag --link, not: yes"
        );
        let (_, _, expected) = parse_flags(&words(&["--x"]), SPECS).unwrap_err();
        assert_eq!(expected, "one of --from, --link, --exclude");
    }
}
