//! An ordered environment with Docker's replace-in-place semantics.

use std::collections::HashMap;

use crate::shell::EnvLookup;

/// Variables in the order they were first set; setting an existing name
/// replaces its value where it stands (BuildKit's `AddEnv`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    vars: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl Environment {
    /// Builds an environment from `KEY=VALUE` strings (a missing `=` means
    /// an empty value, as Docker parses image config env).
    pub fn from_strings<S: AsRef<str>>(items: &[S]) -> Self {
        let mut env = Environment::default();
        for item in items {
            let (k, v) = item.as_ref().split_once('=').unwrap_or((item.as_ref(), ""));
            env.set(k, v);
        }
        env
    }

    /// Sets `key` to `value`.
    pub fn set(&mut self, key: &str, value: &str) {
        if let Some(&i) = self.index.get(key) {
            if let Some(slot) = self.vars.get_mut(i) {
                value.clone_into(&mut slot.1);
            }
        } else {
            self.index.insert(key.to_owned(), self.vars.len());
            self.vars.push((key.to_owned(), value.to_owned()));
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.index
            .get(key)
            .and_then(|&i| self.vars.get(i))
            .map(|(_, v)| v.as_str())
    }

    /// The variables in order.
    pub fn vars(&self) -> &[(String, String)] {
        &self.vars
    }

    /// `KEY=VALUE` strings in order.
    pub fn to_strings(&self) -> Vec<String> {
        self.vars.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// The names, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.vars.iter().map(|(k, _)| k.as_str())
    }
}

impl EnvLookup for Environment {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_in_place() {
        let mut env = Environment::from_strings(&["PATH=/bin", "A", "B=1=2"]);
        env.set("A", "x");
        env.set("C", "y");
        assert_eq!(env.to_strings(), vec!["PATH=/bin", "A=x", "B=1=2", "C=y"]);
        assert_eq!(env.get("B"), Some("1=2"));
        assert_eq!(env.get("D"), None);
    }
}
