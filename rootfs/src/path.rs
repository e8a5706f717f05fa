//! Lexical cleaning of paths inside a root.
//!
//! A container path is cleaned as Go's `path.Clean("/" + p)`: empty and `.`
//! components go, `a/..` cancels, and a `..` at the root stays at the root
//! (the kernel's `RESOLVE_IN_ROOT` treats `..` the same way). Tar entry
//! names are the exception: Docker refuses a relative name that climbs
//! above the root ("breakout"), so [`Escape::Error`] reports it instead.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// What a `..` above the root means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// It stays at the root (container paths, `RESOLVE_IN_ROOT`).
    Clamp,
    /// It is an error unless the path is absolute (tar entry names, as
    /// Docker's breakout check: `/../x` is `x`, `../x` is refused).
    Error,
}

/// A `..` climbed above the root of a relative path under [`Escape::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("path escapes the root directory")]
pub struct Escaped;

/// The components of `path` (bytes, `/`-separated) after cleaning; the
/// root itself is no component.
pub fn components(path: &[u8], escape: Escape) -> Result<Vec<&[u8]>, Escaped> {
    let absolute = path.starts_with(b"/");
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() && escape == Escape::Error && !absolute {
                    return Err(Escaped);
                }
            }
            c => parts.push(c),
        }
    }
    Ok(parts)
}

/// `path` cleaned and made relative to the root (`a/b`; empty for the
/// root), with `..` clamped at the root.
pub fn relative(path: impl AsRef<OsStr>) -> Vec<u8> {
    components(path.as_ref().as_bytes(), Escape::Clamp)
        .unwrap_or_default()
        .join(&b'/')
}

/// `path` cleaned as an absolute container path (`/a/b`; `/` for the root).
pub fn absolute(path: impl AsRef<OsStr>) -> String {
    let rel = relative(path);
    format!("/{}", String::from_utf8_lossy(&rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_like_go_path_clean_from_the_root() {
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("/", ""),
            (".", ""),
            ("a/b", "a/b"),
            ("/a//b/./c/", "a/b/c"),
            ("a/../b", "b"),
            ("../../etc/passwd", "etc/passwd"),
            ("/a/../../b", "b"),
            ("a/b/../../..", ""),
        ];
        for (input, want) in cases {
            assert_eq!(relative(input), want.as_bytes(), "{input:?}");
        }
        assert_eq!(absolute("x/../../y/"), "/y");
        assert_eq!(absolute(""), "/");
    }

    #[test]
    fn relative_escapes_are_errors_only_when_asked() {
        assert_eq!(components(b"../x", Escape::Error), Err(Escaped));
        assert_eq!(components(b"a/../../x", Escape::Error), Err(Escaped));
        assert_eq!(
            components(b"/../x", Escape::Error),
            Ok(vec![b"x".as_slice()])
        );
        assert_eq!(
            components(b"../x", Escape::Clamp),
            Ok(vec![b"x".as_slice()])
        );
    }
}
