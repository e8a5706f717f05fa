//! What a build's own fetches (ADD of a URL or a git repository) may
//! connect to. The Dockerfile is untrusted: without `--allow
//! network.host` it must not reach a service listening on the build
//! host's loopback (kiln's threat model), which these fetches, made from
//! kiln's own network namespace, otherwise could. RUN steps are confined
//! by their network namespace instead.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// The hint every refusal ends with.
pub const ALLOW_HINT: &str = "a build reaches services on its host only with --allow network.host";

/// Whether `ip` is the build host's own: loopback, or the unspecified
/// address (which connects to the host), also as IPv4-mapped IPv6.
pub fn is_host_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_loopback() || v4.is_unspecified())
        }
    }
}

/// Refuses `host:port` when any address it resolves to is the build
/// host's own; `what` names the fetch in the message.
///
/// # Errors
///
/// The refusal, or the resolver's error.
pub fn check_host(host: &str, port: u16, what: &str) -> Result<(), String> {
    // `[::1]` as a URL writes it.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = (bare, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    match addrs.iter().find(|a| is_host_address(a.ip())) {
        Some(addr) => Err(refusal(what, host, addr.ip())),
        None => Ok(()),
    }
}

fn refusal(what: &str, host: &str, ip: IpAddr) -> String {
    format!(
        "{what}: {host} is an address of the build host ({ip}), which the Dockerfile may not reach: {ALLOW_HINT}"
    )
}

/// The system's resolver with the build host's own addresses removed: an
/// HTTP client using it never connects to them, whatever the URL, a
/// redirect or a DNS answer says (the checked address is the one
/// connected to).
#[derive(Debug, Default)]
pub struct OutsideResolver(DefaultResolver);

impl Resolver for OutsideResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let all = self.0.resolve(uri, config, timeout)?;
        let mut kept = self.empty();
        let mut refused = None;
        for &addr in &all {
            if is_host_address(addr.ip()) {
                refused = Some(addr.ip());
            } else {
                kept.push(addr);
            }
        }
        match refused {
            // One host address among others is as bad: the name is the
            // attacker's to point.
            Some(ip) => Err(ureq::Error::Io(io::Error::new(
                io::ErrorKind::PermissionDenied,
                refusal("refusing to connect", uri.host().unwrap_or_default(), ip),
            ))),
            None => Ok(kept),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_addresses() {
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "::1",
            "::",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_host_address(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.2.2", "192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1"] {
            assert!(!is_host_address(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn loopback_names_are_refused() {
        let error = check_host("localhost", 80, "ADD http://localhost/x").unwrap_err();
        assert!(
            error
                .starts_with("ADD http://localhost/x: localhost is an address of the build host ("),
            "{error}"
        );
        assert!(error.ends_with(ALLOW_HINT), "{error}");
        assert!(check_host("[::1]", 80, "x").is_err());
        assert!(check_host("192.0.2.1", 80, "x").is_ok());
    }
}
