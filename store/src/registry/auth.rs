//! `WWW-Authenticate` challenges (RFC 7235) and bearer-token responses.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Longest challenge header parsed; registries send a few hundred bytes.
const MAX_CHALLENGE_LEN: usize = 8 * 1024;

/// One authentication challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercased (`bearer`, `basic`).
    pub scheme: String,
    /// Its parameters, keys lowercased (`realm`, `service`, `scope`).
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// A parameter's value.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }
}

/// Parses a `WWW-Authenticate` header into its challenges. Malformed
/// parts end the parse; what was read so far is returned (a registry
/// that sends garbage gets an "unauthorized" error, not a crash).
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut challenges: Vec<Challenge> = Vec::new();
    if header.len() > MAX_CHALLENGE_LEN {
        return challenges;
    }
    let mut rest = header;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return challenges;
        }
        let (token, after) = split_token(rest);
        if token.is_empty() {
            return challenges;
        }
        let after_spaces = after.trim_start_matches([' ', '\t']);
        if let Some(value_part) = after_spaces.strip_prefix('=')
            && let Some(current) = challenges.last_mut()
        {
            // A parameter of the current challenge.
            let value_part = value_part.trim_start_matches([' ', '\t']);
            let Some((value, remaining)) = parse_value(value_part) else {
                return challenges;
            };
            current.params.insert(token.to_ascii_lowercase(), value);
            rest = remaining;
        } else {
            challenges.push(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
            rest = after;
        }
    }
}

/// Splits off an RFC 7230 token.
fn split_token(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)))
        .unwrap_or(text.len());
    text.split_at(end)
}

/// A quoted string (with `\` escapes) or a token.
fn parse_value(text: &str) -> Option<(String, &str)> {
    if let Some(quoted) = text.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Some((value, quoted.get(i + 1..)?)),
                '\\' => value.push(chars.next()?.1),
                c => value.push(c),
            }
        }
        None
    } else {
        let (token, rest) = split_token(text);
        // token68 values may end in `=` padding.
        let padding = rest.len() - rest.trim_start_matches('=').len();
        let (pad, rest) = rest.split_at(padding);
        Some((format!("{token}{pad}"), rest))
    }
}

/// A token endpoint's answer (Docker's `token`, OAuth's `access_token`).
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    /// Docker's field.
    #[serde(default)]
    pub token: Option<String>,
    /// The OAuth 2 field.
    #[serde(default)]
    pub access_token: Option<String>,
}

impl TokenResponse {
    /// The token, whichever field carries it.
    pub fn into_token(self) -> Option<String> {
        self.token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_challenges;

    #[test]
    fn bearer_challenge_with_quoted_parameters_parses() {
        let challenges = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(challenges.len(), 1);
        let c = &challenges[0];
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.param("service"), Some("registry.docker.io"));
        assert_eq!(c.param("scope"), Some("repository:library/busybox:pull"));
    }

    #[test]
    fn several_challenges_and_escapes_parse() {
        let challenges =
            parse_challenges(r#"Basic realm="a \"b\" c", Bearer realm="https://x/t",service=s"#);
        assert_eq!(challenges.len(), 2);
        assert_eq!(challenges[0].scheme, "basic");
        assert_eq!(challenges[0].param("realm"), Some(r#"a "b" c"#));
        assert_eq!(challenges[1].scheme, "bearer");
        assert_eq!(challenges[1].param("service"), Some("s"));
    }

    #[test]
    fn malformed_challenges_give_what_was_read() {
        assert!(parse_challenges("").is_empty());
        assert!(parse_challenges("=x").is_empty());
        let challenges = parse_challenges(r#"Bearer realm="unterminated"#);
        assert_eq!(challenges.len(), 1);
        assert!(challenges[0].params.is_empty());
        assert!(parse_challenges(&"a".repeat(20_000)).is_empty());
    }
}
