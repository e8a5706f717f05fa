//! BuildKit's "did you mean" (`util/suggest`): the option nearest to what
//! was written, at a Levenshtein distance under 3, added to an error as
//! ` (did you mean X?)`. One copy for every message that suggests:
//! instructions, flags, `--target`, mount types, keys and sharing modes.

/// How Go visits the options, which decides ties between equally near
/// ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// A slice: the first of the nearest wins, as in BuildKit.
    Listed,
    /// A map, whose order Go randomises: kiln picks the option sharing the
    /// longest prefix with the input, then the earlier one, so the answer
    /// does not change from run to run.
    Unordered,
}

/// `suggest.WrapErrorMaybe`'s search, case-sensitive: the nearest option
/// at distance under 3; `None` when `val` is one of the options (the
/// error is then not about its spelling) or none is near.
pub(crate) fn nearest<'o>(
    val: &str,
    options: impl IntoIterator<Item = &'o str>,
    order: Order,
) -> Option<&'o str> {
    // A string more than two characters longer than an option is at
    // distance 3 or more from it; this also bounds the work on huge input.
    let len = val.chars().take(64).count();
    let mut best: Option<(usize, usize, &'o str)> = None;
    for option in options {
        if val == option {
            return None;
        }
        if len > option.chars().count() + 2 {
            continue;
        }
        let distance = levenshtein(val, option);
        if distance >= 3 {
            continue;
        }
        let prefix = match order {
            Order::Listed => 0,
            Order::Unordered => val
                .chars()
                .zip(option.chars())
                .take_while(|(a, b)| a == b)
                .count(),
        };
        let better = best.is_none_or(|(d, p, _)| distance < d || (distance == d && prefix > p));
        if better {
            best = Some((distance, prefix, option));
        }
    }
    best.map(|(_, _, option)| option)
}

/// The case-insensitive search (`caseSensitive` false): both sides are
/// compared lowercased and the answer takes the case of `val` as Go's
/// `matchCase` does (all lower: lower; all upper: upper; else as listed).
pub(crate) fn nearest_ignoring_case<'o>(
    val: &str,
    options: impl IntoIterator<Item = &'o str>,
    order: Order,
) -> Option<String> {
    let lower = crate::golang::to_lower(val);
    let options: Vec<String> = options.into_iter().map(crate::golang::to_lower).collect();
    let option = nearest(&lower, options.iter().map(String::as_str), order)?;
    Some(if val == lower {
        option.to_owned()
    } else if val == crate::golang::to_upper(val) {
        crate::golang::to_upper(option)
    } else {
        option.to_owned()
    })
}

/// ` (did you mean X?)`, or nothing.
pub(crate) fn did_you_mean(suggestion: Option<&str>) -> String {
    suggestion.map_or_else(String::new, |s| format!(" (did you mean {s}?)"))
}

/// Character-level edit distance with unit costs.
pub(crate) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = i;
        let mut left = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let up = row.get(j + 1).copied().unwrap_or(usize::MAX);
            let cost = diag + usize::from(ca != *cb);
            let cur = cost.min(up.saturating_add(1)).min(left + 1);
            diag = up;
            if let Some(slot) = row.get_mut(j + 1) {
                *slot = cur;
            }
            left = cur;
        }
        if let Some(first) = row.first_mut() {
            *first = i + 1;
        }
    }
    row.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance() {
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("tmp", "tmpfs"), 2);
        assert_eq!(levenshtein("ü", "u"), 1);
        assert_eq!(levenshtein("mont", "mount"), 1);
    }

    #[test]
    fn nearest_under_three_and_not_an_exact_match() {
        let flags = ["mount", "network", "security"];
        assert_eq!(nearest("mont", flags, Order::Unordered), Some("mount"));
        assert_eq!(nearest("netwrk", flags, Order::Unordered), Some("network"));
        assert_eq!(nearest("xyz", flags, Order::Unordered), None);
        assert_eq!(nearest("mount", flags, Order::Unordered), None);
        assert_eq!(nearest(&"x".repeat(100_000), flags, Order::Listed), None);
        // case matters unless asked otherwise
        assert_eq!(nearest("MOUNT", flags, Order::Listed), None);
    }

    #[test]
    fn ties_follow_the_listed_order_or_the_longest_prefix() {
        // "ab" is at distance 1 from both
        assert_eq!(nearest("ab", ["xb", "ax"], Order::Listed), Some("xb"));
        assert_eq!(nearest("ab", ["xb", "ax"], Order::Unordered), Some("ax"));
        // a nearer option wins whatever the order
        assert_eq!(nearest("abc", ["xbx", "abx"], Order::Listed), Some("abx"));
    }

    #[test]
    fn case_insensitive_search_matches_the_case_written() {
        let names = ["build", "runtime"];
        assert_eq!(
            nearest_ignoring_case("bulid", names, Order::Listed).as_deref(),
            Some("build")
        );
        assert_eq!(
            nearest_ignoring_case("BULID", names, Order::Listed).as_deref(),
            Some("BUILD")
        );
        assert_eq!(
            nearest_ignoring_case("Bulid", names, Order::Listed).as_deref(),
            Some("build")
        );
        assert_eq!(nearest_ignoring_case("BUILD", names, Order::Listed), None);
        assert_eq!(did_you_mean(Some("x")), " (did you mean x?)");
        assert_eq!(did_you_mean(None), "");
    }
}
