//! Variable lookup used by the lexer.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

/// Variable lookup for expansion.
///
/// Names are compared exactly (case-sensitive), as `BuildKit` does on Unix.
pub trait EnvLookup {
    /// The value of `name`, or None when unset (`Some("")` when set but empty).
    fn lookup(&self, name: &str) -> Option<&str>;
}

/// An environment with no variables at all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoEnv;

impl EnvLookup for NoEnv {
    fn lookup(&self, _name: &str) -> Option<&str> {
        None
    }
}

impl EnvLookup for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl<S: BuildHasher> EnvLookup for HashMap<String, String, S> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// A Docker-style ordered env list; a later entry overrides an earlier one.
impl EnvLookup for [(String, String)] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Same as the slice impl: the last occurrence of a name wins.
impl EnvLookup for Vec<(String, String)> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.as_slice().lookup(name)
    }
}

impl<T: EnvLookup + ?Sized> EnvLookup for &T {
    fn lookup(&self, name: &str) -> Option<&str> {
        (**self).lookup(name)
    }
}
