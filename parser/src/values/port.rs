//! `EXPOSE` port specifications, as `BuildKit`'s `dispatchExpose` parses them
//! (`frontend/dockerfile/dockerfile2llb/convert_expose.go`, the version that
//! no longer depends on `docker/go-connections/nat` but keeps its grammar).
//!
//! A spec is `[[ip:]hostPort:]containerPort[/proto]`, where the ports may be
//! ranges (`8000-8010`) and `proto` is `tcp` (the default), `udp` or `sctp`,
//! case-insensitively. Host IP and host port are validated and then
//! ignored: only the container ports reach the image config. So
//! `EXPOSE 127.0.0.1:80:80` exposes `80/tcp`, and `EXPOSE localhost:80:80`
//! fails because `localhost` is not an IP address.

use std::collections::BTreeSet;

use thiserror::Error;

use crate::golang::to_lower as go_to_lower;

/// An `EXPOSE` argument that `BuildKit` rejects.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PortError {
    /// The container-port part is empty (`/tcp`, `80:`); carries that part.
    #[error("no port specified: {0}<empty>")]
    NoPortSpecified(String),
    /// A protocol other than tcp, udp or sctp; carries it lowercased.
    #[error("invalid proto: {0}")]
    InvalidProto(String),
    /// A bracketed IP that Go's `net.SplitHostPort` rejects.
    #[error("invalid IP address {ip}: address {ip}:: {reason}")]
    InvalidBracketedIp {
        /// The IP part as written, brackets included.
        ip: String,
        /// Go's `net.AddrError` reason, e.g. `missing ']' in address`.
        reason: &'static str,
    },
    /// An IP part that Go's `net.ParseIP` rejects (brackets removed).
    #[error("invalid IP address: {0}")]
    InvalidIp(String),
    /// A container port or range that does not parse.
    #[error("invalid containerPort: {0}")]
    InvalidContainerPort(String),
    /// A host port or range that does not parse.
    #[error("invalid hostPort: {0}")]
    InvalidHostPort(String),
    /// Container and host ranges of different sizes.
    #[error("invalid ranges specified for container and host Ports: {container} and {host}")]
    RangeMismatch {
        /// The container port range.
        container: String,
        /// The host port range.
        host: String,
    },
}

/// Parses one `EXPOSE` argument into the `port/proto` strings it exposes, in
/// order (a range expands to one entry per port).
pub fn parse_port_spec(raw: &str) -> Result<Vec<String>, PortError> {
    let (ip, host_port, tail) = split_parts(raw);
    let (container_port, proto) = split_proto_port(tail)?;

    let mut ip = ip;
    let stripped;
    if ip.starts_with('[') {
        stripped = strip_ipv6_brackets(&ip)?;
        ip = stripped;
    }
    if !ip.is_empty() && !is_go_ip(&ip) {
        return Err(PortError::InvalidIp(ip));
    }

    let (start, end) = parse_port_range(container_port)
        .ok_or_else(|| PortError::InvalidContainerPort(container_port.to_owned()))?;
    if !host_port.is_empty() {
        let (host_start, host_end) = parse_port_range(host_port)
            .ok_or_else(|| PortError::InvalidHostPort(host_port.to_owned()))?;
        // A host range is allowed with a single container port: it is the
        // pool the host port is picked from.
        if end - start != host_end - host_start && end != start {
            return Err(PortError::RangeMismatch {
                container: container_port.to_owned(),
                host: host_port.to_owned(),
            });
        }
    }

    Ok((start..=end)
        .map(|port| format!("{port}/{proto}"))
        .collect())
}

/// Parses every `EXPOSE` argument (already variable-expanded) and returns
/// all `port/proto` strings in argument order, as `BuildKit`'s history entry
/// lists them. Stops at the first error.
pub fn parse_port_specs<S: AsRef<str>>(specs: &[S]) -> Result<Vec<String>, PortError> {
    let mut out = Vec::new();
    for spec in specs {
        out.extend(parse_port_spec(spec.as_ref())?);
    }
    Ok(out)
}

/// The image config's `ExposedPorts` keys for these arguments: deduplicated
/// and in the byte-wise order Go's JSON encoder writes map keys in.
pub fn exposed_ports<S: AsRef<str>>(specs: &[S]) -> Result<BTreeSet<String>, PortError> {
    Ok(parse_port_specs(specs)?.into_iter().collect())
}

/// Splits on `:` into (host IP, host port, container part). With four or
/// more parts everything before the last two is the IP, which is how IPv6
/// addresses survive (`::1:80:80`).
fn split_parts(raw: &str) -> (String, &str, &str) {
    let parts: Vec<&str> = raw.split(':').collect();
    match parts.as_slice() {
        [container] => (String::new(), "", container),
        [host, container] => (String::new(), host, container),
        [ip, host, container] => ((*ip).to_owned(), host, container),
        [ip_parts @ .., host, container] => (ip_parts.join(":"), host, container),
        [] => (String::new(), "", ""),
    }
}

/// Splits `port[/proto]` at the first `/`, defaulting the protocol to tcp.
fn split_proto_port(raw: &str) -> Result<(&str, String), PortError> {
    let (port, proto) = raw.split_once('/').unwrap_or((raw, ""));
    if port.is_empty() {
        return Err(PortError::NoPortSpecified(raw.to_owned()));
    }
    let proto = go_to_lower(proto);
    match proto.as_str() {
        "" => Ok((port, "tcp".to_owned())),
        "tcp" | "udp" | "sctp" => Ok((port, proto)),
        _ => Err(PortError::InvalidProto(proto)),
    }
}

/// Go's `net.SplitHostPort(ip + ":")` for an IP part starting with `[`,
/// returning the text inside the brackets.
fn strip_ipv6_brackets(ip: &str) -> Result<String, PortError> {
    let fail = |reason| PortError::InvalidBracketedIp {
        ip: ip.to_owned(),
        reason,
    };
    let hostport = format!("{ip}:");
    let last_colon = hostport.len() - 1;
    let Some(close) = hostport.find(']') else {
        return Err(fail("missing ']' in address"));
    };
    if close + 1 != last_colon {
        // `]` is not directly before the final `:`.
        return Err(if hostport.as_bytes().get(close + 1) == Some(&b':') {
            fail("too many colons in address")
        } else {
            fail("missing port in address")
        });
    }
    if hostport[1..].contains('[') {
        return Err(fail("unexpected '[' in address"));
    }
    if hostport[close + 1..].contains(']') {
        return Err(fail("unexpected ']' in address"));
    }
    Ok(hostport[1..close].to_owned())
}

/// Go's `strconv.ParseUint(s, 10, 16)`.
fn parse_port_number(s: &str) -> Option<u16> {
    crate::golang::parse_uint(s, 10, 16)
        .ok()
        .and_then(|v| u16::try_from(v).ok())
}

/// A port (`80`) or inclusive range (`8000-8010`, start <= end).
fn parse_port_range(ports: &str) -> Option<(u32, u32)> {
    if !ports.contains('-') {
        let port = u32::from(parse_port_number(ports)?);
        return Some((port, port));
    }
    let (start, end) = ports.split_once('-')?;
    if end.contains('-') {
        return None;
    }
    let (start, end) = (
        u32::from(parse_port_number(start)?),
        u32::from(parse_port_number(end)?),
    );
    (end >= start).then_some((start, end))
}

/// Whether Go's `net.ParseIP` accepts `s`: dotted-quad IPv4 without leading
/// zeros, or IPv6 (optionally ending in an IPv4 quad) without a zone. This
/// follows `net/netip.ParseAddr`, which `net.ParseIP` uses.
fn is_go_ip(s: &str) -> bool {
    for b in s.bytes() {
        match b {
            b'.' => return parse_ipv4(s.as_bytes()),
            b':' => return parse_ipv6(s.as_bytes()),
            b'%' => return false,
            _ => {}
        }
    }
    false
}

/// `netip`'s `parseIPv4Fields`: four decimal octets, no leading zeros.
fn parse_ipv4(s: &[u8]) -> bool {
    let mut fields = 0;
    let mut value: u32 = 0;
    let mut digits = 0;
    for (i, &c) in s.iter().enumerate() {
        if c.is_ascii_digit() {
            if digits == 1 && value == 0 {
                return false;
            }
            value = value * 10 + u32::from(c - b'0');
            digits += 1;
            if value > 255 {
                return false;
            }
        } else if c == b'.' {
            if i == 0 || i == s.len() - 1 || s[i - 1] == b'.' || fields == 3 {
                return false;
            }
            fields += 1;
            value = 0;
            digits = 0;
        } else {
            return false;
        }
    }
    fields == 3
}

/// `netip`'s `parseIPv6`, then `net.ParseIP`'s refusal of zones.
fn parse_ipv6(input: &[u8]) -> bool {
    if input.contains(&b'%') {
        // Either an empty zone (a parse error) or a zone, which ParseIP
        // refuses.
        return false;
    }
    let mut s = input;
    let mut filled = 0usize; // bytes of the 16-byte address parsed so far
    let mut ellipsis: Option<usize> = None;
    if s.starts_with(b"::") {
        ellipsis = Some(0);
        s = &s[2..];
        if s.is_empty() {
            return true;
        }
    }
    while filled < 16 {
        let mut off = 0;
        let mut acc: u32 = 0;
        while let Some(&c) = s.get(off) {
            let Some(digit) = char::from(c).to_digit(16) else {
                break;
            };
            acc = (acc << 4) + digit;
            if off > 3 || acc > 0xffff {
                return false;
            }
            off += 1;
        }
        if off == 0 {
            return false;
        }
        if s.get(off) == Some(&b'.') {
            // A trailing IPv4 quad fills the last four bytes.
            if (ellipsis.is_none() && filled != 12) || filled + 4 > 16 {
                return false;
            }
            if !parse_ipv4(s) {
                return false;
            }
            s = &[];
            filled += 4;
            break;
        }
        filled += 2;
        s = &s[off..];
        if s.is_empty() {
            break;
        }
        if s[0] != b':' || s.len() == 1 {
            return false;
        }
        s = &s[1..];
        if s[0] == b':' {
            if ellipsis.is_some() {
                return false;
            }
            ellipsis = Some(filled);
            s = &s[1..];
            if s.is_empty() {
                break;
            }
        }
    }
    if !s.is_empty() {
        return false;
    }
    if filled < 16 {
        ellipsis.is_some()
    } else {
        // The `::` must stand for at least one zero group.
        ellipsis.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::XorShift;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn buildkit_parse_port_spec_full() {
        // convert_expose_test.go TestParsePortSpecFull.
        assert_eq!(
            parse_port_spec("0.0.0.0:1234-1235:3333-3334/tcp"),
            Ok(strings(&["3333/tcp", "3334/tcp"]))
        );
    }

    #[test]
    fn buildkit_ipv6_specs() {
        // convert_expose_test.go TestPartPortSpecIPV6.
        let cases = [
            ("[2001:4860:0:2001::68]::333", "333/tcp"),
            ("[::1]:80:80", "80/tcp"),
            ("2001:4860:0:2001::68::333", "333/tcp"),
            ("::1:80:80", "80/tcp"),
            ("::::80", "80/tcp"),
        ];
        for (spec, want) in cases {
            assert_eq!(parse_port_spec(spec), Ok(strings(&[want])), "spec {spec}");
        }
    }

    #[test]
    fn buildkit_parse_port_specs() {
        // convert_expose_test.go TestParsePortSpecs.
        for specs in [
            ["1234/tcp", "2345/udp", "3456/sctp"],
            ["1234:1234/tcp", "2345:2345/udp", "3456:3456/sctp"],
            [
                "0.0.0.0:1234:1234/tcp",
                "0.0.0.0:2345:2345/udp",
                "0.0.0.0:3456:3456/sctp",
            ],
        ] {
            assert_eq!(
                parse_port_specs(&specs),
                Ok(strings(&["1234/tcp", "2345/udp", "3456/sctp"])),
                "specs {specs:?}"
            );
        }
        assert_eq!(
            parse_port_specs(&["localhost:1234:1234/tcp"]),
            Err(PortError::InvalidIp("localhost".into()))
        );
    }

    #[test]
    fn buildkit_parse_port_specs_with_range() {
        // convert_expose_test.go TestParsePortSpecsWithRange.
        let want = strings(&[
            "1234/tcp",
            "1235/tcp",
            "1236/tcp",
            "2345/udp",
            "2346/udp",
            "2347/udp",
            "3456/sctp",
            "3457/sctp",
            "3458/sctp",
        ]);
        for specs in [
            ["1234-1236/tcp", "2345-2347/udp", "3456-3458/sctp"],
            [
                "1234-1236:1234-1236/tcp",
                "2345-2347:2345-2347/udp",
                "3456-3458:3456-3458/sctp",
            ],
            [
                "0.0.0.0:1234-1236:1234-1236/tcp",
                "0.0.0.0:2345-2347:2345-2347/udp",
                "0.0.0.0:3456-3458:3456-3458/sctp",
            ],
        ] {
            assert_eq!(
                parse_port_specs(&specs),
                Ok(want.clone()),
                "specs {specs:?}"
            );
        }
        assert_eq!(
            parse_port_specs(&["localhost:1234-1236:1234-1236/tcp"]),
            Err(PortError::InvalidIp("localhost".into()))
        );
    }

    #[test]
    fn accepts_dockerfile_forms() {
        let cases: &[(&str, &[&str])] = &[
            ("80", &["80/tcp"]),
            ("80/tcp", &["80/tcp"]),
            ("80/TCP", &["80/tcp"]),
            ("53/udp", &["53/udp"]),
            ("53/Udp", &["53/udp"]),
            ("9/sctp", &["9/sctp"]),
            ("80/", &["80/tcp"]),
            ("0", &["0/tcp"]),
            ("0080", &["80/tcp"]),
            ("65535", &["65535/tcp"]),
            ("8000-8002", &["8000/tcp", "8001/tcp", "8002/tcp"]),
            ("8000-8001/udp", &["8000/udp", "8001/udp"]),
            ("8000-8000", &["8000/tcp"]),
            ("127.0.0.1:80:80", &["80/tcp"]),
            ("127.0.0.1::80", &["80/tcp"]),
            ("8080:80", &["80/tcp"]),
            (":80", &["80/tcp"]),
            ("192.168.1.100::80", &["80/tcp"]),
            ("192.168.1.100:8080:80", &["80/tcp"]),
            // A host range with a single container port is a pool.
            ("8000-9000:80", &["80/tcp"]),
            ("[::]:80:80/udp", &["80/udp"]),
            ("::ffff:1.2.3.4:80:80", &["80/tcp"]),
            ("[1.2.3.4]:80:80", &["80/tcp"]),
            // An empty IP between brackets is no IP at all.
            ("[]:80:80", &["80/tcp"]),
        ];
        for &(spec, want) in cases {
            assert_eq!(parse_port_spec(spec), Ok(strings(want)), "spec {spec}");
        }
    }

    #[test]
    fn rejects_with_buildkit_messages() {
        let cases: &[(&str, &str)] = &[
            ("", "no port specified: <empty>"),
            ("/tcp", "no port specified: /tcp<empty>"),
            ("0.0.0.0:1234-1235:/tcp", "no port specified: /tcp<empty>"),
            ("0.0.0.0:1234-1235:", "no port specified: <empty>"),
            ("80:", "no port specified: <empty>"),
            ("80/http", "invalid proto: http"),
            ("80/TCPX", "invalid proto: tcpx"),
            ("80/tcp/udp", "invalid proto: tcp/udp"),
            ("80/\u{130}", "invalid proto: i"),
            ("localhost:80:80", "invalid IP address: localhost"),
            ("1.2.3:80:80", "invalid IP address: 1.2.3"),
            ("01.2.3.4:80:80", "invalid IP address: 01.2.3.4"),
            ("256.1.1.1:80:80", "invalid IP address: 256.1.1.1"),
            ("fe80::1%eth0:80:80", "invalid IP address: fe80::1%eth0"),
            (
                "[::1:80:80",
                "invalid IP address [::1: address [::1:: missing ']' in address",
            ),
            (
                "[::1]x:80:80",
                "invalid IP address [::1]x: address [::1]x:: missing port in address",
            ),
            (
                "[::1]:5:80:80",
                "invalid IP address [::1]:5: address [::1]:5:: too many colons in address",
            ),
            (
                "[[::1]:80:80",
                "invalid IP address [[::1]: address [[::1]:: unexpected '[' in address",
            ),
            ("[zz]:80:80", "invalid IP address: zz"),
            ("192.168.1.100", "invalid containerPort: 192.168.1.100"),
            ("192.168.1.100:-1:-1", "invalid containerPort: -1"),
            ("abc", "invalid containerPort: abc"),
            ("65536", "invalid containerPort: 65536"),
            ("-1", "invalid containerPort: -1"),
            ("+80", "invalid containerPort: +80"),
            ("8_0", "invalid containerPort: 8_0"),
            ("80 ", "invalid containerPort: 80 "),
            ("8010-8000", "invalid containerPort: 8010-8000"),
            ("80-90-100", "invalid containerPort: 80-90-100"),
            ("80-", "invalid containerPort: 80-"),
            ("-80", "invalid containerPort: -80"),
            ("x:80", "invalid hostPort: x"),
            ("90-80:80", "invalid hostPort: 90-80"),
            (
                "1000-1002:80-81",
                "invalid ranges specified for container and host Ports: 80-81 and 1000-1002",
            ),
        ];
        for &(spec, want) in cases {
            let err = parse_port_spec(spec).expect_err(spec);
            assert_eq!(err.to_string(), want, "spec {spec:?}");
        }
    }

    #[test]
    fn exposed_ports_are_sorted_and_deduplicated_like_go_json() {
        let got = exposed_ports(&["8080", "80/udp", "80", "443", "80/tcp", "1000-1001"]).unwrap();
        let want: Vec<&str> = vec![
            "1000/tcp", "1001/tcp", "443/tcp", "80/tcp", "80/udp", "8080/tcp",
        ];
        assert_eq!(got.iter().map(String::as_str).collect::<Vec<_>>(), want);
        assert_eq!(
            exposed_ports(&["80", "bad"]),
            Err(PortError::InvalidContainerPort("bad".into()))
        );
    }

    #[test]
    fn full_range_expands() {
        let all = parse_port_spec("0-65535/udp").unwrap();
        assert_eq!(all.len(), 65_536);
        assert_eq!(all.first().map(String::as_str), Some("0/udp"));
        assert_eq!(all.last().map(String::as_str), Some("65535/udp"));
    }

    #[test]
    fn go_ip_grammar() {
        let valid = [
            "0.0.0.0",
            "127.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "1::",
            "fe80::1",
            "2001:db8::68",
            "2001:4860:0:2001::68",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:1.2.3.4",
            "::ffff:1.2.3.4",
            "::1.2.3.4",
            "1::1.2.3.4",
            "ABCD:ef01::",
            "0000:0000::",
        ];
        let invalid = [
            "",
            "localhost",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.2.3.04",
            "256.0.0.0",
            "1..2.3",
            ".1.2.3",
            "1.2.3.",
            ":",
            ":::",
            "1:::2",
            "1::2::3",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7::8",
            "1:2:3:4:5:6:7:8::",
            "1:2:3:4:5:1.2.3.4",
            "12345::",
            "00000::",
            "::1%eth0",
            "::1%",
            "%eth0",
            "1:2",
            "::g",
            "1:",
            ":1",
            "::ffff:01.2.3.4",
            "1.2.3.4::",
            "[::1]",
        ];
        for ip in valid {
            assert!(is_go_ip(ip), "{ip} should be valid");
        }
        for ip in invalid {
            assert!(!is_go_ip(ip), "{ip} should be invalid");
        }
    }

    #[test]
    fn never_panics_on_garbage() {
        let alphabet: Vec<char> = "0123456789:/-.[]%abcdefx tcpudpsTCP\u{130}é🐳"
            .chars()
            .collect();
        let mut rng = XorShift::new(0xE4_905E);
        for _ in 0..5_000 {
            let s = rng.string(&alphabet, 20);
            if let Ok(ports) = parse_port_spec(&s) {
                assert!(!ports.is_empty(), "spec {s:?}");
            }
        }
        assert!(parse_port_spec(&":".repeat(100_000)).is_err());
        assert!(parse_port_spec(&"1".repeat(100_000)).is_err());
    }
}
