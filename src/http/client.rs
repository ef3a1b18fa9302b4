//! Who the client is, when a reverse proxy stands in between: the client address (for
//! the per-client rate limit and the logs) and the scheme and host the client used.
//!
//! Forwarding headers are believed only from a peer listed in `server.trusted_proxies`;
//! from anyone else they are ignored, since any client can send them. From a trusted peer
//! the hops are walked from the right, the end each proxy appends to: the right-most
//! address that is not itself a trusted proxy is the client. Everything left of it was
//! written by someone we do not trust and is never read, so a client cannot choose its own
//! address (and with it a fresh rate-limit bucket) by sending `X-Forwarded-For` itself. A
//! hop that does not parse (`unknown`, an obfuscated name, garbage) stops the walk at the
//! last address that did.
//!
//! `X-Forwarded-For` (and `X-Forwarded-Proto` / `X-Forwarded-Host`) win over RFC 7239
//! `Forwarded` when a request has both: nearly every proxy writes the `X-Forwarded-*`
//! family, and a proxy that writes one family usually passes the other through untouched
//! from the client. The proxy should write one of them; if it writes `Forwarded` only,
//! it should also drop a client's `X-Forwarded-For`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::http::{HeaderMap, HeaderName};

use crate::config::IpNet;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// The client address of a request as [`client_addr`] found it, put into the request's
/// extensions by the per-client rate limit ([`super::ratelimit::limit_clients`]) for
/// whatever later wants to name the client (logs, the journal's actor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The client's address: the peer's, unless the peer is a trusted proxy; then the
/// right-most forwarded hop that is not itself trusted (see the module doc). IPv4-mapped
/// IPv6 addresses come back as IPv4.
pub fn client_addr(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.ip().to_canonical();
    if !is_trusted(peer, trusted) {
        return peer;
    }
    if headers.contains_key(X_FORWARDED_FOR) {
        walk_x_forwarded_for(peer, headers, trusted).client
    } else {
        walk_forwarded(peer, headers, trusted).client
    }
}

/// The scheme (`http` or `https`, lower case) and the `host[:port]` the client asked
/// for, as a trusted proxy reports them; `None` for what no trusted proxy reported or
/// what is not a valid scheme or host. Always `(None, None)` from an untrusted peer.
pub fn forwarded_proto_host(
    peer: SocketAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> (Option<String>, Option<String>) {
    let peer = peer.ip().to_canonical();
    if !is_trusted(peer, trusted) {
        return (None, None);
    }
    let has_proto = headers.contains_key(X_FORWARDED_PROTO);
    let has_host = headers.contains_key(X_FORWARDED_HOST);
    let writers = if has_proto || has_host {
        walk_x_forwarded_for(peer, headers, trusted).trusted_writers
    } else {
        0
    };
    let forwarded = (!has_proto || !has_host).then(|| walk_forwarded(peer, headers, trusted));
    let proto = if has_proto {
        outermost_value(headers, &X_FORWARDED_PROTO, writers)
    } else {
        forwarded.as_ref().and_then(|w| w.proto.clone())
    }
    .and_then(|p| valid_proto(&p));
    let host = if has_host {
        outermost_value(headers, &X_FORWARDED_HOST, writers)
    } else {
        forwarded.as_ref().and_then(|w| w.host.clone())
    }
    .filter(|h| valid_host(h));
    (proto, host)
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(ip))
}

/// The outcome of walking `X-Forwarded-For`.
struct Walk {
    client: IpAddr,
    /// How many trusted proxies wrote hops we read (the peer included): the right-most
    /// that many values of `X-Forwarded-Proto`/`-Host` are theirs.
    trusted_writers: usize,
}

/// The hops of every field line of `name`, right-most first. A line that is not visible
/// ASCII yields one `None` (a malformed hop) where its hops would be.
fn hops_from_right<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> impl Iterator<Item = Option<&'a str>> {
    headers
        .get_all(name)
        .iter()
        .rev()
        .flat_map(|value| match value.to_str() {
            Ok(text) => Box::new(text.rsplit(',').map(|hop| Some(hop.trim())))
                as Box<dyn Iterator<Item = Option<&str>>>,
            Err(_) => Box::new(std::iter::once(None)),
        })
}

fn walk_x_forwarded_for(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> Walk {
    let mut walk = Walk {
        client: peer,
        trusted_writers: 1,
    };
    for hop in hops_from_right(headers, &X_FORWARDED_FOR) {
        let Some(ip) = hop.and_then(parse_node) else {
            break;
        };
        walk.client = ip;
        if !is_trusted(ip, trusted) {
            break;
        }
        walk.trusted_writers += 1;
    }
    walk
}

/// The value of an `X-Forwarded-Proto`/`-Host` header written by the outermost of
/// `writers` trusted proxies: with one value, that one; with a list (each proxy appended
/// its own), the `writers`-th from the right, or the left-most of a shorter list. Values
/// further left come from the client and are never read.
fn outermost_value(headers: &HeaderMap, name: &HeaderName, writers: usize) -> Option<String> {
    let mut chosen = None;
    for (i, value) in hops_from_right(headers, name).enumerate() {
        if i >= writers {
            break;
        }
        match value {
            Some(v) if !v.is_empty() => chosen = Some(v.to_string()),
            _ => return None,
        }
    }
    chosen
}

/// The outcome of walking RFC 7239 `Forwarded` elements.
struct ForwardedWalk {
    client: IpAddr,
    proto: Option<String>,
    host: Option<String>,
}

/// Walks `Forwarded` elements from the right. Each element was written by the hop named
/// by the element to its right (the right-most one by the peer); an element is read only
/// when its writer is trusted, and `proto`/`host` come from the outermost such element
/// that carries them (the edge proxy saw what the client asked for).
fn walk_forwarded(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> ForwardedWalk {
    let mut walk = ForwardedWalk {
        client: peer,
        proto: None,
        host: None,
    };
    for line in headers.get_all(FORWARDED).iter().rev() {
        let Ok(text) = line.to_str() else {
            return walk;
        };
        for element in split_unquoted_from_right(text, b',') {
            let Some(element) = parse_element(element) else {
                return walk;
            };
            if element.proto.is_some() {
                walk.proto = element.proto;
            }
            if element.host.is_some() {
                walk.host = element.host;
            }
            let Some(ip) = element.for_ip else {
                return walk;
            };
            walk.client = ip;
            if !is_trusted(ip, trusted) {
                return walk;
            }
        }
    }
    walk
}

/// One `Forwarded` element's parameters that matter here.
struct Element {
    for_ip: Option<IpAddr>,
    proto: Option<String>,
    host: Option<String>,
}

/// `for=…;proto=…;host=…;by=…` (parameter names case-insensitive, values tokens or
/// quoted strings). `None` when the element is not well formed; `for_ip` is `None` when
/// `for` is absent or not an address (`unknown`, an obfuscated name).
fn parse_element(element: &str) -> Option<Element> {
    let mut parsed = Element {
        for_ip: None,
        proto: None,
        host: None,
    };
    for pair in element.split(';') {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=')?;
        let value = unquote(value.trim())?;
        match name.trim().to_ascii_lowercase().as_str() {
            "for" => parsed.for_ip = parse_node(value),
            "proto" => parsed.proto = Some(value.to_string()),
            "host" => parsed.host = Some(value.to_string()),
            _ => {}
        }
    }
    Some(parsed)
}

/// A token as is, or a quoted string without its quotes. Escapes (`\`) never occur in
/// the values read here, so a value with one is refused rather than unescaped.
fn unquote(value: &str) -> Option<&str> {
    let inner = match value.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => value,
    };
    (!inner.contains(['"', '\\'])).then_some(inner)
}

/// `text` split at `sep` bytes outside double quotes, right-most part first. Scanning
/// from the right keeps the parts a proxy appended intact even when a client's part to
/// their left has an unbalanced quote.
fn split_unquoted_from_right(text: &str, sep: u8) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let mut end = bytes.len();
    let mut in_quotes = false;
    let mut parts = Vec::new();
    for i in (0..bytes.len()).rev() {
        match bytes[i] {
            b'"' => in_quotes = !in_quotes,
            b if b == sep && !in_quotes => {
                parts.push(&text[i + 1..end]);
                end = i;
            }
            _ => {}
        }
    }
    parts.push(&text[..end]);
    parts.into_iter()
}

/// A forwarded node (`X-Forwarded-For` entry or `Forwarded: for=` value): an IPv4
/// address with an optional `:port`, an IPv6 address bare or in brackets with an optional
/// `:port`; quotes around it are allowed. Anything else (`unknown`, `_hidden`) is `None`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    let node = match node.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => node,
    };
    let ip = if let Some(rest) = node.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        IpAddr::V6(v6.parse::<Ipv6Addr>().ok()?)
    } else if let Ok(ip) = node.parse::<IpAddr>() {
        ip
    } else {
        let (v4, port) = node.split_once(':')?;
        if !is_port(port) {
            return None;
        }
        IpAddr::V4(v4.parse::<Ipv4Addr>().ok()?)
    };
    Some(ip.to_canonical())
}

fn is_port(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_digit()) && text.parse::<u16>().is_ok()
}

fn valid_proto(proto: &str) -> Option<String> {
    let proto = proto.to_ascii_lowercase();
    matches!(proto.as_str(), "http" | "https").then_some(proto)
}

/// `host[:port]`: a DNS name or IPv4 address (letters, digits, `-`, `.`, `_`) or an IPv6
/// address in brackets, then an optional port. No spaces, slashes, `@` or anything else
/// that could turn a URL built from it into another one.
fn valid_host(host: &str) -> bool {
    if let Some(rest) = host.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        return v6.parse::<Ipv6Addr>().is_ok()
            && (after.is_empty() || after.strip_prefix(':').is_some_and(is_port));
    }
    let (name, port) = match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && port.is_none_or(is_port)
}

/// The internal header carrying the origin (`https://scim.example.com`) the client used,
/// as a trusted proxy reported it. Set only by [`forwarded_origin`], which first removes
/// any copy the client sent.
pub const ORIGIN_HEADER: &str = "x-scim-bridge-origin";

/// Middleware: records the scheme and host a trusted reverse proxy reports
/// (`X-Forwarded-Proto`/`-Host`, `Forwarded: proto=;host=`) in [`ORIGIN_HEADER`], for
/// `meta.location` when no `server.public_url` is configured. From any other peer, or
/// without a peer address, the header is only removed.
pub async fn forwarded_origin(
    axum::extract::State(trusted): axum::extract::State<std::sync::Arc<[IpNet]>>,
    peer: Result<
        axum::extract::ConnectInfo<SocketAddr>,
        axum::extract::rejection::ExtensionRejection,
    >,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    req.headers_mut().remove(ORIGIN_HEADER);
    if let Ok(axum::extract::ConnectInfo(peer)) = peer {
        let (proto, host) = forwarded_proto_host(peer, req.headers(), &trusted);
        let host = host.or_else(|| {
            proto.as_ref().and(
                req.headers()
                    .get(axum::http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string),
            )
        });
        if let Some(host) = host {
            let origin = format!("{}://{host}", proto.as_deref().unwrap_or("http"));
            if let Ok(value) = axum::http::HeaderValue::from_str(&origin) {
                req.headers_mut().insert(ORIGIN_HEADER, value);
            }
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .map(|s| IpNet::parse(s).unwrap_or_else(|| panic!("bad net {s}")))
            .collect()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                HeaderValue::from_str(value).expect("header value"),
            );
        }
        map
    }

    fn peer(text: &str) -> SocketAddr {
        text.parse().expect("socket address")
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip address")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("forwarded", "for=5.6.7.8;proto=https;host=evil.example"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
        ]);
        let p = peer("203.0.113.9:5555");
        assert_eq!(client_addr(p, &h, &trusted), ip("203.0.113.9"));
        assert_eq!(forwarded_proto_host(p, &h, &trusted), (None, None));
        // No trusted proxies at all: the same.
        assert_eq!(client_addr(p, &h, &[]), ip("203.0.113.9"));
    }

    #[test]
    fn a_trusted_proxy_names_the_client_and_client_supplied_hops_are_skipped() {
        let trusted = nets(&["127.0.0.1"]);
        // The client sent "X-Forwarded-For: 9.9.9.9"; the proxy appended the real address.
        let h = headers(&[("x-forwarded-for", "9.9.9.9, 198.51.100.7")]);
        assert_eq!(
            client_addr(peer("127.0.0.1:40000"), &h, &trusted),
            ip("198.51.100.7")
        );
        // Without any forwarding header, the proxy itself is the client.
        assert_eq!(
            client_addr(peer("127.0.0.1:40000"), &HeaderMap::new(), &trusted),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn a_chain_through_two_trusted_proxies_is_walked_to_the_client() {
        let trusted = nets(&["10.0.0.0/8", "192.168.1.1"]);
        // client 198.51.100.7 → edge 192.168.1.1 → inner 10.1.1.1 → us (peer 10.2.2.2)
        let h = headers(&[(
            "x-forwarded-for",
            "6.6.6.6, 198.51.100.7, 192.168.1.1, 10.1.1.1",
        )]);
        assert_eq!(
            client_addr(peer("10.2.2.2:1"), &h, &trusted),
            ip("198.51.100.7")
        );
        // Split over two field lines: the same.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.7"),
            ("x-forwarded-for", "192.168.1.1, 10.1.1.1"),
        ]);
        assert_eq!(
            client_addr(peer("10.2.2.2:1"), &h, &trusted),
            ip("198.51.100.7")
        );
        // Every hop trusted: the left-most is the client.
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 10.1.1.1")]);
        assert_eq!(
            client_addr(peer("10.2.2.2:1"), &h, &trusted),
            ip("10.9.9.9")
        );
        // The same chain in RFC 7239 form.
        let h = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=198.51.100.7;proto=https;host=scim.example.com, for=192.168.1.1;proto=http, for=10.1.1.1",
        )]);
        let p = peer("10.2.2.2:1");
        assert_eq!(client_addr(p, &h, &trusted), ip("198.51.100.7"));
        assert_eq!(
            forwarded_proto_host(p, &h, &trusted),
            (Some("https".into()), Some("scim.example.com".into()))
        );
    }

    #[test]
    fn forwarded_accepts_ipv6_in_brackets_with_and_without_port() {
        let trusted = nets(&["::1", "2001:db8:ffff::/48"]);
        let p = peer("[::1]:443");
        for (value, want) in [
            (r#"for="[2001:db8:cafe::17]:4711""#, "2001:db8:cafe::17"),
            (r#"for="[2001:db8:cafe::17]""#, "2001:db8:cafe::17"),
            (r#"For=192.0.2.60;proto=http;by=203.0.113.43"#, "192.0.2.60"),
            (r#"for="192.0.2.60:8080""#, "192.0.2.60"),
            (
                r#"for="[2001:db8:cafe::17]:4711", for="[2001:db8:ffff::1]""#,
                "2001:db8:cafe::17",
            ),
        ] {
            let h = headers(&[("forwarded", value)]);
            assert_eq!(client_addr(p, &h, &trusted), ip(want), "{value}");
        }
        // X-Forwarded-For with IPv6, bare and bracketed.
        for (value, want) in [
            ("2001:db8::5", "2001:db8::5"),
            ("[2001:db8::5]:1234", "2001:db8::5"),
            ("192.0.2.1:4242", "192.0.2.1"),
            ("::ffff:192.0.2.1", "192.0.2.1"),
        ] {
            let h = headers(&[("x-forwarded-for", value)]);
            assert_eq!(client_addr(p, &h, &trusted), ip(want), "{value}");
        }
        // An IPv4-mapped peer is matched against IPv4 networks and reported as IPv4.
        let trusted = nets(&["127.0.0.1"]);
        let h = headers(&[("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(
            client_addr(peer("[::ffff:127.0.0.1]:1"), &h, &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_addr(peer("[::ffff:203.0.113.1]:1"), &h, &trusted),
            ip("203.0.113.1")
        );
    }

    #[test]
    fn garbage_stops_the_walk_at_the_last_good_address() {
        let trusted = nets(&["10.0.0.0/8"]);
        let p = peer("10.0.0.1:1");
        for (name, value, want) in [
            ("x-forwarded-for", "garbage", "10.0.0.1"),
            ("x-forwarded-for", "", "10.0.0.1"),
            ("x-forwarded-for", ",,,", "10.0.0.1"),
            ("x-forwarded-for", "unknown", "10.0.0.1"),
            ("x-forwarded-for", "1.2.3.4, unknown, 10.0.0.2", "10.0.0.2"),
            ("x-forwarded-for", "1.2.3.4:99999", "10.0.0.1"),
            ("x-forwarded-for", "[1.2.3.4]", "10.0.0.1"),
            ("x-forwarded-for", "fe80::1%eth0", "10.0.0.1"),
            // Garbage left of the client is never read.
            ("x-forwarded-for", "<script>, 198.51.100.7", "198.51.100.7"),
            ("forwarded", "for=_hidden", "10.0.0.1"),
            ("forwarded", "for", "10.0.0.1"),
            ("forwarded", "by=10.0.0.1", "10.0.0.1"),
            ("forwarded", r#"for="[2001:db8::1"#, "10.0.0.1"),
            ("forwarded", r#"for="1.2.3.4\"""#, "10.0.0.1"),
            // A client's unbalanced quote does not swallow what the proxy appended.
            (
                "forwarded",
                r#"for="1.2.3.4, for=198.51.100.7"#,
                "198.51.100.7",
            ),
            (
                "forwarded",
                "for=1.2.3.4;;, for=198.51.100.7",
                "198.51.100.7",
            ),
        ] {
            let h = headers(&[(name, value)]);
            assert_eq!(client_addr(p, &h, &trusted), ip(want), "{name}: {value}");
        }
        // Not visible ASCII: the line is malformed as a whole.
        let mut h = HeaderMap::new();
        h.append(
            X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"1.2.3.4\xff").expect("opaque header value"),
        );
        assert_eq!(client_addr(p, &h, &trusted), ip("10.0.0.1"));
        assert_eq!(forwarded_proto_host(p, &h, &trusted), (None, None));
    }

    #[test]
    fn x_forwarded_for_wins_over_forwarded() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(
            client_addr(peer("10.0.0.1:1"), &h, &trusted),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn proto_and_host_come_from_trusted_proxies_and_are_validated() {
        let trusted = nets(&["10.0.0.0/8"]);
        let p = peer("10.0.0.1:1");
        let h = headers(&[
            ("x-forwarded-proto", "HTTPS"),
            ("x-forwarded-host", "scim.example.com:8443"),
        ]);
        assert_eq!(
            forwarded_proto_host(p, &h, &trusted),
            (Some("https".into()), Some("scim.example.com:8443".into()))
        );
        let h = headers(&[("x-forwarded-host", "[2001:db8::1]:443")]);
        assert_eq!(
            forwarded_proto_host(p, &h, &trusted),
            (None, Some("[2001:db8::1]:443".into()))
        );
        for bad_host in [
            "evil.example/path",
            "a b",
            "user@evil.example",
            "host:port",
            "host:123456",
            "[::1",
            "[zz]:1",
            "",
            "host:",
        ] {
            let h = headers(&[("x-forwarded-host", bad_host), ("x-forwarded-proto", "ftp")]);
            assert_eq!(
                forwarded_proto_host(p, &h, &trusted),
                (None, None),
                "{bad_host}"
            );
        }
        // Forwarded: quoted host, case-insensitive names.
        let h = headers(&[(
            "forwarded",
            r#"for=198.51.100.7;Proto=https;HOST="scim.example.com""#,
        )]);
        assert_eq!(
            forwarded_proto_host(p, &h, &trusted),
            (Some("https".into()), Some("scim.example.com".into()))
        );
        let h = headers(&[("forwarded", r#"for=198.51.100.7;host="a/b""#)]);
        assert_eq!(forwarded_proto_host(p, &h, &trusted), (None, None));
    }

    #[test]
    fn a_list_of_forwarded_hosts_is_read_only_as_far_as_trusted_proxies_wrote_it() {
        let trusted = nets(&["10.0.0.0/8"]);
        let p = peer("10.0.0.1:1");
        // One trusted writer (the peer): its own value, the client's is ignored.
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.7"),
            ("x-forwarded-host", "evil.example, scim.example.com"),
            ("x-forwarded-proto", "http, https"),
        ]);
        assert_eq!(
            forwarded_proto_host(p, &h, &trusted),
            (Some("https".into()), Some("scim.example.com".into()))
        );
        // Two trusted writers, each appended: the outer proxy's value.
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.7, 10.1.1.1"),
            (
                "x-forwarded-host",
                "evil.example, scim.example.com, inner.local",
            ),
            ("x-forwarded-proto", "https, http"),
        ]);
        assert_eq!(
            forwarded_proto_host(p, &h, &trusted),
            (Some("https".into()), Some("scim.example.com".into()))
        );
        // Forwarded: an element written by an untrusted hop is not read.
        let h = headers(&[(
            "forwarded",
            "for=10.1.1.1;host=evil.example, for=198.51.100.7;host=scim.example.com",
        )]);
        assert_eq!(
            forwarded_proto_host(p, &h, &trusted),
            (None, Some("scim.example.com".into()))
        );
    }
}
