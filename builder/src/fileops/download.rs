//! ADD's HTTP source: downloading a URL and the file name it gets.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, fchmod, futimens};
use nix::sys::time::TimeSpec;

use super::UNNAMED_DOWNLOAD;
use crate::error::BuildError;

/// Mode `BuildKit` gives files downloaded by ADD.
const DOWNLOAD_MODE: u32 = 0o600;

/// Downloads an ADD URL (http or https) into a new file in `tmp_dir` and
/// returns its path and the name `BuildKit` gives it (the URL path's last
/// segment, or [`UNNAMED_DOWNLOAD`]).
///
/// `checksum` (`sha256:<hex>`) is verified when given. The file gets mode
/// 0600 and, when the server sends `Last-Modified`, that mtime, as
/// `BuildKit`'s HTTP source does; it is never unpacked. Unless
/// `reach_host` (`--allow network.host`), no connection goes to the
/// build host's own addresses ([`super::reach`]).
pub fn download(
    url: &str,
    checksum: Option<&str>,
    tmp_dir: &Path,
    reach_host: bool,
) -> Result<(PathBuf, String), BuildError> {
    let expected = checksum
        .map(|c| {
            let hex = c.strip_prefix("sha256:").unwrap_or("");
            if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(format!("sha256:{}", hex.to_ascii_lowercase()))
            } else {
                Err(BuildError::InvalidChecksum {
                    checksum: c.to_owned(),
                })
            }
        })
        .transpose()?;
    let fail = |reason: String| BuildError::Download {
        url: url.to_owned(),
        reason,
    };
    let agent = if reach_host {
        ureq::Agent::new_with_defaults()
    } else {
        ureq::Agent::with_parts(
            ureq::config::Config::default(),
            ureq::unversioned::transport::DefaultConnector::default(),
            super::reach::OutsideResolver::default(),
        )
    };
    let response = match agent.get(url).call() {
        Ok(r) => r,
        Err(ureq::Error::StatusCode(status)) => {
            return Err(BuildError::DownloadStatus {
                url: url.to_owned(),
                status,
            });
        }
        Err(e) => return Err(fail(e.to_string())),
    };
    let last_modified = response
        .headers()
        .get("last-modified")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            jiff::fmt::rfc2822::DateTimeParser::new()
                .parse_timestamp(v)
                .ok()
        });
    let mut reader = response.into_body().into_reader();
    let mut tmp = tempfile::Builder::new()
        .prefix("kiln-download-")
        .tempfile_in(tmp_dir)
        .map_err(|e| BuildError::io(tmp_dir, e))?;
    let mut hasher = kiln_store::digest::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail(e.to_string())),
        };
        let chunk = buf.get(..n).unwrap_or_default();
        hasher.update(chunk);
        tmp.write_all(chunk)
            .map_err(|e| BuildError::io(tmp.path(), e))?;
    }
    let actual = hasher.finish().to_string();
    if let Some(expected) = expected
        && expected != actual
    {
        return Err(BuildError::ChecksumMismatch {
            url: url.to_owned(),
            expected,
            actual,
        });
    }
    let (file, path) = tmp.keep().map_err(|e| BuildError::io(tmp_dir, e.error))?;
    fchmod(file.as_fd(), Mode::from_bits_truncate(DOWNLOAD_MODE))
        .map_err(|e| BuildError::io(&path, e.into()))?;
    if let Some(ts) = last_modified {
        let t = TimeSpec::new(ts.as_second(), 0);
        futimens(file.as_fd(), &t, &t).map_err(|e| BuildError::io(&path, e.into()))?;
    }
    Ok((path, url_file_name(url)))
}

/// The name `BuildKit`'s Dockerfile frontend gives a downloaded file: the
/// last segment of the URL's path (percent-decoded), or
/// [`UNNAMED_DOWNLOAD`].
pub fn url_file_name(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let no_query = after_scheme
        .split(['?', '#'])
        .next()
        .unwrap_or(after_scheme);
    let path = no_query
        .find('/')
        .map_or("", |i| no_query.get(i..).unwrap_or(""));
    let base = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    let decoded = percent_decode(base);
    if decoded.is_empty() || decoded == "." || decoded == ".." {
        UNNAMED_DOWNLOAD.to_owned()
    } else {
        decoded
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(hex, 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
