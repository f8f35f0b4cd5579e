//! The client's address: what the audit trail records and the login limit counts against.
//!
//! It is the socket's peer, unless that peer is a trusted proxy (`TRUSTED_PROXIES`); then the
//! chain the proxies wrote is walked from the right, past every trusted address, and the
//! first address that is not trusted is the client. Everything left of it was written by the
//! client (or by proxies we do not know) and is never believed, and a hop we cannot read stops
//! the walk at the last address we could trust.
//!
//! The chain is every `X-Forwarded-For` field line, joined in order (RFC 9110 §5.3): a proxy
//! that appends its own line (HAProxy's `option forwardfor`) leaves the client's forged line
//! first, so reading one line would let the client choose. `Forwarded` (RFC 7239) is read only
//! when no `X-Forwarded-For` line came at all: the proxies in front of most deployments
//! (HAProxy, nginx, the cloud load balancers) write `X-Forwarded-For` and pass a `Forwarded`
//! the client sent untouched, so believing it too would hand the choice back to the client. A
//! proxy that writes only `Forwarded` must drop any `X-Forwarded-For` it receives.
//!
//! Addresses are compared and recorded in canonical form (`::ffff:192.0.2.1` is
//! `192.0.2.1`): a server listening on `::` sees IPv4 peers as IPv4-mapped IPv6, and they
//! must still match an IPv4 `TRUSTED_PROXIES` entry, and count as one client however spelled.

use std::net::IpAddr;

use actix_web::http::header::HeaderMap;
use ipnet::IpNet;

/// One address a proxy wrote into the chain, or something that is not one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hop {
    Address(IpAddr),
    /// Not an address (`unknown`, an obfuscated id, a typo, bytes that are not text): the
    /// walk stops trusting here.
    Unreadable,
}

/// The forwarding chain of a request, oldest hop first, nearest last; `None` when the
/// request carries neither header.
pub fn forwarded_chain(headers: &HeaderMap) -> Option<Vec<Hop>> {
    let lines = |name: &str| -> Vec<Option<&str>> {
        headers
            .get_all(name)
            .map(|value| value.to_str().ok())
            .collect()
    };
    let forwarded_for = lines("x-forwarded-for");
    if !forwarded_for.is_empty() {
        return Some(chain_of(&forwarded_for, x_forwarded_for_hops));
    }
    let forwarded = lines("forwarded");
    if !forwarded.is_empty() {
        return Some(chain_of(&forwarded, forwarded_hops));
    }
    None
}

/// The hops of every field line, in order; a line that is not text is one unreadable hop.
fn chain_of(lines: &[Option<&str>], hops: fn(&str) -> Vec<Hop>) -> Vec<Hop> {
    lines
        .iter()
        .flat_map(|line| line.map_or_else(|| vec![Hop::Unreadable], hops))
        .collect()
}

/// `X-Forwarded-For: 203.0.113.9, 2001:db8::1, [2001:db8::2]:443, 198.51.100.7:5678`. Empty
/// list elements are skipped, as RFC 9110 §5.6.1 asks of any list.
fn x_forwarded_for_hops(line: &str) -> Vec<Hop> {
    line.split(',')
        .map(str::trim)
        .filter(|element| !element.is_empty())
        .map(|element| node(element).map_or(Hop::Unreadable, Hop::Address))
        .collect()
}

/// `Forwarded: for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711"` (RFC 7239 §4):
/// the `for` of each element. An element without one, with two, or whose node is `unknown`
/// or obfuscated (`_hidden`) names no address.
fn forwarded_hops(line: &str) -> Vec<Hop> {
    split_outside_quotes(line, ',')
        .into_iter()
        .map(str::trim)
        .filter(|element| !element.is_empty())
        .map(|element| {
            let mut nodes = split_outside_quotes(element, ';')
                .into_iter()
                .filter_map(|pair| pair.trim().split_once('='))
                .filter(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                .map(|(_, value)| unquote(value.trim()));
            match (nodes.next(), nodes.next()) {
                (Some(Some(value)), None) => node(&value).map_or(Hop::Unreadable, Hop::Address),
                _ => Hop::Unreadable,
            }
        })
        .collect()
}

/// `text` cut at each `separator` that is not inside a quoted string.
fn split_outside_quotes(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (at, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(&text[start..at]);
                start = at + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// A token as it is, or a quoted string without its quotes and escapes; `None` for an
/// unterminated quote.
fn unquote(value: &str) -> Option<String> {
    let Some(inner) = value.strip_prefix('"') else {
        return Some(value.to_owned());
    };
    let inner = inner.strip_suffix('"')?;
    let mut text = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        text.push(if c == '\\' { chars.next()? } else { c });
    }
    Some(text)
}

/// An address with an optional port: `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:443`. Obfuscated ports (`_abc`) are allowed, as RFC 7239
/// §6.3 lets a proxy hide the port but not the address.
fn node(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    let (address, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let (inside, after) = rest.split_once(']')?;
            let port = match after {
                "" => None,
                after => Some(after.strip_prefix(':')?),
            };
            (
                inside.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)?,
                port,
            )
        }
        None => {
            let (address, port) = text.split_once(':')?;
            (IpAddr::V4(address.parse().ok()?), Some(port))
        }
    };
    let port_is_valid = port.is_none_or(|port| {
        let digits =
            !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
        let obfuscated = port.len() > 1
            && port.starts_with('_')
            && port[1..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        digits || obfuscated
    });
    port_is_valid.then_some(address)
}

/// Whether `ip` is one of the trusted proxies. An IPv4 address also matches an entry written
/// in IPv4-mapped form (`::ffff:10.0.0.0/104`).
fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let mapped = match ip {
        IpAddr::V4(v4) => Some(IpAddr::V6(v4.to_ipv6_mapped())),
        IpAddr::V6(_) => None,
    };
    trusted
        .iter()
        .any(|net| net.contains(&ip) || mapped.is_some_and(|mapped| net.contains(&mapped)))
}

/// The client's address (see the module comment), in canonical form.
pub fn client_ip(peer: Option<IpAddr>, chain: Option<&[Hop]>, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    if !is_trusted(peer, trusted) {
        return Some(peer);
    }
    let mut last = peer;
    for hop in chain.unwrap_or_default().iter().rev() {
        match hop {
            Hop::Address(ip) => {
                let ip = ip.to_canonical();
                if !is_trusted(ip, trusted) {
                    return Some(ip);
                }
                last = ip;
            }
            Hop::Unreadable => return Some(last),
        }
    }
    Some(last)
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn nets(texts: &[&str]) -> Vec<IpNet> {
        texts
            .iter()
            .map(|t| {
                t.parse()
                    .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
                    .unwrap()
            })
            .collect()
    }

    fn headers(lines: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in lines {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    /// The client as a server behind `trusted` sees it from `peer` with these header lines.
    fn client(peer: &str, lines: &[(&'static str, &str)], trusted: &[&str]) -> Option<IpAddr> {
        let chain = forwarded_chain(&headers(lines));
        client_ip(Some(ip(peer)), chain.as_deref(), &nets(trusted))
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let trusted = ["10.0.0.0/8"];
        let header: &[(&str, &str)] = &[("x-forwarded-for", "203.0.113.9, 198.51.100.7, 10.0.0.2")];
        assert_eq!(
            client("198.51.100.1", header, &trusted),
            Some(ip("198.51.100.1"))
        );
        assert_eq!(
            client("10.0.0.1", header, &trusted),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(client("10.0.0.1", &[], &trusted), Some(ip("10.0.0.1")));
        assert_eq!(
            client(
                "10.0.0.1",
                &[("x-forwarded-for", "junk, 10.0.0.3")],
                &trusted
            ),
            Some(ip("10.0.0.3"))
        );
        assert_eq!(client("10.0.0.1", header, &[]), Some(ip("10.0.0.1")));
        assert_eq!(client_ip(None, None, &nets(&trusted)), None);
    }

    #[test]
    fn every_forwarded_for_line_is_read_in_order() {
        // The client's forged line first, the proxy's own line last.
        let lines: &[(&str, &str)] = &[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "198.51.100.7"),
        ];
        assert_eq!(
            client("127.0.0.1", lines, &["127.0.0.1"]),
            Some(ip("198.51.100.7"))
        );
        // A line that is not text stops the walk where it stands, and empty elements are
        // skipped.
        let mut lines = headers(&[("x-forwarded-for", "203.0.113.9")]);
        let name = HeaderName::from_static("x-forwarded-for");
        lines.append(name.clone(), HeaderValue::from_bytes(b"\xff").unwrap());
        lines.append(name, HeaderValue::from_static("10.0.0.3,,"));
        let chain = forwarded_chain(&lines);
        assert_eq!(
            client_ip(
                Some(ip("10.0.0.1")),
                chain.as_deref(),
                &nets(&["10.0.0.0/8"])
            ),
            Some(ip("10.0.0.3"))
        );
    }

    #[test]
    fn hops_may_carry_ports_and_brackets() {
        let trusted = ["10.0.0.0/8"];
        for (hop, expected) in [
            ("198.51.100.7:5678", "198.51.100.7"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("2001:db8::1", "2001:db8::1"),
        ] {
            let line = format!("{hop}, 10.0.0.2");
            assert_eq!(
                client("10.0.0.1", &[("x-forwarded-for", &line)], &trusted),
                Some(ip(expected)),
                "{hop}"
            );
        }
        for garbage in [
            "198.51.100.7:http",
            "[2001:db8::1",
            "2001:db8::1]:1",
            "1.2.3.4:123456",
        ] {
            let line = format!("{garbage}, 10.0.0.2");
            assert_eq!(
                client("10.0.0.1", &[("x-forwarded-for", &line)], &trusted),
                Some(ip("10.0.0.2")),
                "{garbage}"
            );
        }
    }

    #[test]
    fn forwarded_is_read_when_no_forwarded_for_came() {
        let trusted = ["10.0.0.0/8"];
        let lines: &[(&str, &str)] = &[
            ("forwarded", "for=1.2.3.4"),
            (
                "forwarded",
                "For=\"[2001:db8:cafe::17]:4711\";proto=https;by=10.0.0.1, for=10.0.0.2:80",
            ),
        ];
        assert_eq!(
            client("10.0.0.1", lines, &trusted),
            Some(ip("2001:db8:cafe::17"))
        );
        // A quoted value may hold the separators.
        let quoted: &[(&str, &str)] =
            &[("forwarded", "for=192.0.2.60;ext=\"a,b;c\", for=10.0.0.2")];
        assert_eq!(client("10.0.0.1", quoted, &trusted), Some(ip("192.0.2.60")));
        // Names no address: stop trusting there.
        for element in [
            "for=unknown",
            "for=_hidden",
            "for=\"_hidden:80\"",
            "proto=http",
            "for=192.0.2.60;for=192.0.2.61",
            "for=\"[2001:db8::1]:x\"",
        ] {
            let line = format!("for=198.51.100.9, {element}, for=10.0.0.2");
            assert_eq!(
                client("10.0.0.1", &[("forwarded", &line)], &trusted),
                Some(ip("10.0.0.2")),
                "{element}"
            );
        }
        // An unterminated quote swallows the rest of the line: nothing of it is believed.
        assert_eq!(
            client(
                "10.0.0.1",
                &[(
                    "forwarded",
                    "for=198.51.100.9, for=\"192.0.2.60, for=10.0.0.2"
                )],
                &trusted
            ),
            Some(ip("10.0.0.1"))
        );
        // An obfuscated port hides the port, not the address.
        assert_eq!(
            client(
                "10.0.0.1",
                &[("forwarded", "for=\"192.0.2.60:_p1\"")],
                &trusted
            ),
            Some(ip("192.0.2.60"))
        );
    }

    #[test]
    fn forwarded_for_wins_over_forwarded() {
        // The proxy wrote X-Forwarded-For; the client's own Forwarded is not believed.
        let lines: &[(&str, &str)] = &[
            ("forwarded", "for=1.2.3.4"),
            ("x-forwarded-for", "198.51.100.7"),
        ];
        assert_eq!(
            client("10.0.0.1", lines, &["10.0.0.0/8"]),
            Some(ip("198.51.100.7"))
        );
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4() {
        let forwarded: &[(&str, &str)] = &[("x-forwarded-for", "::ffff:198.51.100.7")];
        // The peer of a server on `::`, a forwarded hop, and a trusted entry in either form.
        assert_eq!(
            client("::ffff:127.0.0.1", forwarded, &["127.0.0.1"]),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(
            client("127.0.0.1", forwarded, &["::ffff:127.0.0.1"]),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(
            client("::ffff:203.0.113.5", forwarded, &["127.0.0.1"]),
            Some(ip("203.0.113.5"))
        );
        let hops: &[(&str, &str)] = &[("x-forwarded-for", "203.0.113.9, ::ffff:10.0.0.2")];
        assert_eq!(
            client("::ffff:10.0.0.1", hops, &["10.0.0.0/8"]),
            Some(ip("203.0.113.9"))
        );
        // Only mapped addresses: a real IPv6 peer stays as it is.
        assert_eq!(client("2001:db8::1", &[], &[]), Some(ip("2001:db8::1")));
    }
}
