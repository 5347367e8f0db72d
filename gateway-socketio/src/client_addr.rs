//! The client's address when the relay sits behind a reverse proxy or a load balancer.
//!
//! Every connection through a proxy comes from the proxy's address, so per-address limits,
//! logs, the control center and the admission service would see one client. Proxies the
//! operator names (`--trusted-proxies`) say who their client is: an HTTP proxy in the
//! `Forwarded` (RFC 7239) or `X-Forwarded-For` header, an L4 load balancer in a PROXY
//! protocol preface (v1 text or v2 binary) ahead of the connection's first byte.
//!
//! Only a trusted peer's word counts: anyone can send those headers, so from any other
//! peer they are ignored, and the address is the TCP peer's. A header that cannot be read
//! is ignored too (the peer's address stands, the request goes on): a proxy that sends
//! garbage should not take its clients down with it.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use axum::http::HeaderMap;
use ipnet::IpNet;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The networks whose peers are believed about their clients' addresses
/// (`--trusted-proxies 10.0.0.0/8,127.0.0.1`): a comma-separated list of CIDR networks or
/// single addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

/// A `--trusted-proxies` list that is not one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrustedProxiesError {
    #[error("no network given: list CIDR networks or addresses, e.g. 10.0.0.0/8,127.0.0.1")]
    Empty,
    #[error("'{0}' is neither a CIDR network (e.g. 10.0.0.0/8, fd00::/8) nor an IP address")]
    Invalid(String),
}

impl FromStr for TrustedProxies {
    type Err = TrustedProxiesError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let nets = s
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                part.parse::<IpNet>()
                    .or_else(|_| part.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| TrustedProxiesError::Invalid(part.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if nets.is_empty() {
            return Err(TrustedProxiesError::Empty);
        }
        Ok(Self { nets })
    }
}

impl std::fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list: Vec<String> = self.nets.iter().map(ToString::to_string).collect();
        f.write_str(&list.join(","))
    }
}

impl TrustedProxies {
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            nets: nets.into_iter().collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is one of the trusted proxies. An IPv4 peer of a dual-stack listener
    /// (`::ffff:10.0.0.1`) is taken as the IPv4 address it is.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request from `peer`: from its `Forwarded` header, else
    /// its `X-Forwarded-For`, when `peer` is trusted; else `peer`.
    ///
    /// Proxies append the address they got the request from, so the list reads client,
    /// proxy, proxy...; everything left of the first untrusted hop from the right could
    /// have been written by the client itself. The client is therefore the rightmost
    /// address that is not a trusted proxy (the leftmost, if all are). A header's own port
    /// is kept when it has one; an address without one gets port 0.
    pub fn resolve(&self, peer: SocketAddr, headers: &HeaderMap) -> SocketAddr {
        if !self.contains(peer.ip()) {
            return peer;
        }
        let hops = match joined(headers, "forwarded") {
            Some(value) => forwarded_hops(&value),
            None => match joined(headers, "x-forwarded-for") {
                Some(value) => x_forwarded_for_hops(&value),
                None => return peer,
            },
        };
        let Some(hops) = hops else {
            tracing::debug!(proxy = %peer, "unreadable forwarding header ignored");
            return peer;
        };
        let client = hops
            .iter()
            .rev()
            .find(|hop| !self.contains(hop.ip()))
            .or(hops.first())
            .copied()
            .unwrap_or(peer);
        canonical(client)
    }
}

/// `::ffff:203.0.113.7` as the IPv4 address it is, so one client is one address however
/// its proxy wrote it.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Every value of a list header, as one list (HTTP allows a list split over several
/// header lines); `None` when it is absent, `Some("")` when it is not text.
fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    let mut text = Vec::new();
    for value in values {
        match value.to_str() {
            Ok(value) => text.push(value),
            Err(_) => return Some(String::new()),
        }
    }
    Some(text.join(","))
}

/// The `for=` addresses of a `Forwarded` value, nearest last; `None` when the value does
/// not parse or a hop's `for` is missing, `unknown` or obfuscated (the chain cannot be
/// followed past it). Parsed by `forwarded-header-value` (quoting, IPv6 brackets, ports).
fn forwarded_hops(value: &str) -> Option<Vec<SocketAddr>> {
    use forwarded_header_value::{ForwardedHeaderValue, Identifier};
    let parsed = ForwardedHeaderValue::from_forwarded(value).ok()?;
    parsed
        .iter()
        .map(|stanza| match stanza.forwarded_for.as_ref()? {
            Identifier::SocketAddr(addr) => Some(*addr),
            Identifier::IpAddr(ip) => Some(SocketAddr::new(*ip, 0)),
            _ => None,
        })
        .collect()
}

/// The addresses of an `X-Forwarded-For` value, nearest last; `None` if one is not an IP
/// address (with or without a port, IPv6 in brackets or bare).
fn x_forwarded_for_hops(value: &str) -> Option<Vec<SocketAddr>> {
    value
        .split(',')
        .map(|hop| {
            let hop = hop.trim();
            hop.parse::<SocketAddr>()
                .ok()
                .or_else(|| hop.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0)))
                .or_else(|| {
                    let bare = hop.strip_prefix('[')?.strip_suffix(']')?;
                    bare.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0))
                })
        })
        .collect()
}

/// The largest PROXY preface read: a v1 line is at most 107 bytes; a v2 header is 16
/// bytes plus its addresses and TLVs, which load balancers keep to a few hundred bytes.
pub const MAX_PROXY_PREFACE_BYTES: usize = 4096;

/// Why a PROXY protocol preface was refused (the connection is closed).
#[derive(Debug, thiserror::Error)]
pub enum ProxyPrefaceError {
    #[error("no PROXY protocol preface within {0:?}")]
    Timeout(Duration),
    #[error("the connection ended in its PROXY protocol preface: {0}")]
    Io(#[from] std::io::Error),
    #[error("the connection does not start with a PROXY protocol preface (v1 or v2)")]
    Missing,
    #[error("PROXY protocol preface longer than {MAX_PROXY_PREFACE_BYTES} bytes")]
    TooLong,
    #[error("malformed PROXY protocol preface: {0}")]
    Malformed(String),
}

const V1_PREFIX: &[u8] = b"PROXY ";
const V1_MAX_LINE: usize = 107;

/// Reads the PROXY protocol preface a trusted load balancer sends ahead of the
/// connection's own bytes, and returns the client address it names: `peer` when it names
/// none (v1 `UNKNOWN`, a v2 `LOCAL` health check, a unix socket). Reads exactly the
/// preface, so what follows (TLS or HTTP) is left for its reader. Bounded by `timeout` and
/// [`MAX_PROXY_PREFACE_BYTES`].
pub async fn read_proxy_preface(
    tcp: &mut TcpStream,
    peer: SocketAddr,
    timeout: Duration,
) -> Result<SocketAddr, ProxyPrefaceError> {
    let client = tokio::time::timeout(timeout, read_preface(tcp, peer))
        .await
        .map_err(|_| ProxyPrefaceError::Timeout(timeout))??;
    Ok(canonical(client))
}

async fn read_preface(
    tcp: &mut TcpStream,
    peer: SocketAddr,
) -> Result<SocketAddr, ProxyPrefaceError> {
    // 12 bytes: the v2 signature, and no more than the shortest v1 line
    // ("PROXY UNKNOWN\r\n") holds.
    let mut preface = vec![0u8; ppp::v2::PROTOCOL_PREFIX.len()];
    tcp.read_exact(&mut preface).await?;
    if preface == ppp::v2::PROTOCOL_PREFIX {
        let mut rest = [0u8; 4];
        tcp.read_exact(&mut rest).await?;
        preface.extend_from_slice(&rest);
        let length = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        if preface.len() + length > MAX_PROXY_PREFACE_BYTES {
            return Err(ProxyPrefaceError::TooLong);
        }
        let start = preface.len();
        preface.resize(start + length, 0);
        tcp.read_exact(&mut preface[start..]).await?;
        return v2_client(&preface, peer);
    }
    if !preface.starts_with(V1_PREFIX) {
        return Err(ProxyPrefaceError::Missing);
    }
    // The line ends at CRLF; read a byte at a time so as not to take what follows.
    while !preface.ends_with(b"\r\n") {
        if preface.len() >= V1_MAX_LINE {
            return Err(ProxyPrefaceError::TooLong);
        }
        preface.push(tcp.read_u8().await?);
    }
    v1_client(&preface, peer)
}

fn v1_client(line: &[u8], peer: SocketAddr) -> Result<SocketAddr, ProxyPrefaceError> {
    use ppp::v1::{Addresses, Header};
    let header = Header::try_from(line).map_err(|e| ProxyPrefaceError::Malformed(e.to_string()))?;
    Ok(match header.addresses {
        Addresses::Tcp4(a) => SocketAddr::new(a.source_address.into(), a.source_port),
        Addresses::Tcp6(a) => SocketAddr::new(a.source_address.into(), a.source_port),
        Addresses::Unknown => peer,
    })
}

fn v2_client(bytes: &[u8], peer: SocketAddr) -> Result<SocketAddr, ProxyPrefaceError> {
    use ppp::v2::{Addresses, Command, Header};
    let header =
        Header::try_from(bytes).map_err(|e| ProxyPrefaceError::Malformed(e.to_string()))?;
    if header.command == Command::Local {
        return Ok(peer);
    }
    Ok(match header.addresses {
        Addresses::IPv4(a) => SocketAddr::new(a.source_address.into(), a.source_port),
        Addresses::IPv6(a) => SocketAddr::new(a.source_address.into(), a.source_port),
        Addresses::Unspecified | Addresses::Unix(_) => peer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    fn trusted(list: &str) -> TrustedProxies {
        list.parse().unwrap()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    const PROXY: &str = "10.0.0.5:40000";

    #[test]
    fn the_list_takes_networks_and_addresses() {
        let list = trusted("10.0.0.0/8, 127.0.0.1,fd00::/8");
        assert!(list.contains("10.1.2.3".parse().unwrap()));
        assert!(list.contains("127.0.0.1".parse().unwrap()));
        assert!(!list.contains("127.0.0.2".parse().unwrap()));
        assert!(list.contains("fd12::1".parse().unwrap()));
        assert!(
            list.contains("::ffff:10.0.0.1".parse().unwrap()),
            "an IPv4-mapped peer is its IPv4 address"
        );
        assert_eq!(
            "".parse::<TrustedProxies>(),
            Err(TrustedProxiesError::Empty)
        );
        assert_eq!(
            "10.0.0.0/8,nginx".parse::<TrustedProxies>(),
            Err(TrustedProxiesError::Invalid("nginx".into()))
        );
        assert_eq!(trusted("10.1.2.3/8").to_string(), "10.0.0.0/8");
    }

    #[test]
    fn x_forwarded_for_from_a_trusted_peer_names_the_client() {
        let list = trusted("10.0.0.0/8");
        let h = headers(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(list.resolve(addr(PROXY), &h), addr("203.0.113.7:0"));
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_ignored() {
        let list = trusted("10.0.0.0/8");
        let peer = addr("198.51.100.1:5000");
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("forwarded", "for=203.0.113.8"),
        ]);
        assert_eq!(list.resolve(peer, &h), peer);
        assert_eq!(TrustedProxies::default().resolve(peer, &h), peer);
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let list = trusted("10.0.0.0/8");
        // The client wrote "1.1.1.1" itself; its real address was appended by the first
        // proxy, then a second trusted proxy appended the first's.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.7, 10.0.0.9")]);
        assert_eq!(list.resolve(addr(PROXY), &h), addr("203.0.113.7:0"));
        // Split over several header lines, the list is the same.
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "203.0.113.7, 10.0.0.9"),
        ]);
        assert_eq!(list.resolve(addr(PROXY), &h), addr("203.0.113.7:0"));
        // All trusted: the farthest.
        let h = headers(&[("x-forwarded-for", "10.0.0.7, 10.0.0.9")]);
        assert_eq!(list.resolve(addr(PROXY), &h), addr("10.0.0.7:0"));
    }

    #[test]
    fn forwarded_comes_first_and_keeps_ports_and_ipv6() {
        let list = trusted("10.0.0.0/8");
        let h = headers(&[
            (
                "forwarded",
                "for=1.1.1.1, for=\"[2001:db8::7]:4711\";proto=https, for=10.0.0.9",
            ),
            ("x-forwarded-for", "198.51.100.9"),
        ]);
        assert_eq!(list.resolve(addr(PROXY), &h), addr("[2001:db8::7]:4711"));
        let h = headers(&[("forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43")]);
        assert_eq!(list.resolve(addr(PROXY), &h), addr("192.0.2.60:0"));
        let h = headers(&[("x-forwarded-for", "::ffff:192.0.2.61")]);
        assert_eq!(list.resolve(addr(PROXY), &h), addr("192.0.2.61:0"));
    }

    #[test]
    fn unreadable_headers_leave_the_peer_address() {
        let list = trusted("10.0.0.0/8");
        let peer = addr(PROXY);
        for (name, value) in [
            ("x-forwarded-for", "not an address"),
            ("x-forwarded-for", "203.0.113.7,,"),
            ("x-forwarded-for", ""),
            ("forwarded", "for=unknown"),
            ("forwarded", "for=_hidden"),
            ("forwarded", "for=\"[::1"),
            ("forwarded", "proto=https"),
            ("forwarded", "garbage"),
        ] {
            let h = headers(&[(name, value)]);
            assert_eq!(list.resolve(peer, &h), peer, "{name}: {value}");
        }
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"203.0.113.\xff").unwrap(),
        );
        assert_eq!(list.resolve(peer, &h), peer, "not text");
        assert_eq!(list.resolve(peer, &HeaderMap::new()), peer, "no header");
    }

    /// A connected pair: what the test writes arrives at the returned server side.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_v1_preface_names_the_client_and_leaves_what_follows() {
        let (mut client, mut server) = pair().await;
        let peer = addr("127.0.0.1:1");
        client
            .write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 9000\r\nGET / HTTP/1.1\r\n")
            .await
            .unwrap();
        let client_addr = read_proxy_preface(&mut server, peer, WAIT).await.unwrap();
        assert_eq!(client_addr, addr("203.0.113.7:5555"));
        let mut next = [0u8; 5];
        server.read_exact(&mut next).await.unwrap();
        assert_eq!(&next, b"GET /");

        let (mut client, mut server) = pair().await;
        client.write_all(b"PROXY UNKNOWN\r\n").await.unwrap();
        assert_eq!(
            read_proxy_preface(&mut server, peer, WAIT).await.unwrap(),
            peer
        );
    }

    #[tokio::test]
    async fn a_v2_preface_names_the_client_and_leaves_what_follows() {
        use ppp::v2::{Builder, Command, Protocol, Version};
        let (mut client, mut server) = pair().await;
        let peer = addr("127.0.0.1:1");
        let preface = Builder::with_addresses(
            Version::Two | Command::Proxy,
            Protocol::Stream,
            (addr("[2001:db8::7]:4711"), addr("[2001:db8::1]:443")),
        )
        .write_tlv(ppp::v2::Type::NoOp, b"pad")
        .unwrap()
        .build()
        .unwrap();
        client.write_all(&preface).await.unwrap();
        client.write_all(b"\x16\x03\x01").await.unwrap();
        let client_addr = read_proxy_preface(&mut server, peer, WAIT).await.unwrap();
        assert_eq!(client_addr, addr("[2001:db8::7]:4711"));
        let mut next = [0u8; 3];
        server.read_exact(&mut next).await.unwrap();
        assert_eq!(&next, b"\x16\x03\x01");

        // A LOCAL header (a load balancer's health check) names nobody.
        let (mut client, mut server) = pair().await;
        let local = Builder::new(Version::Two | Command::Local, 0)
            .build()
            .unwrap();
        client.write_all(&local).await.unwrap();
        assert_eq!(
            read_proxy_preface(&mut server, peer, WAIT).await.unwrap(),
            peer
        );
    }

    #[tokio::test]
    async fn bad_prefaces_are_refused_within_bounds() {
        let peer = addr("127.0.0.1:1");
        let (mut client, mut server) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let e = read_proxy_preface(&mut server, peer, WAIT).await;
        assert!(matches!(e, Err(ProxyPrefaceError::Missing)), "{e:?}");

        let (mut client, mut server) = pair().await;
        client
            .write_all(format!("PROXY TCP4 {}\r\n", "1".repeat(200)).as_bytes())
            .await
            .unwrap();
        let e = read_proxy_preface(&mut server, peer, WAIT).await;
        assert!(matches!(e, Err(ProxyPrefaceError::TooLong)), "{e:?}");

        let (mut client, mut server) = pair().await;
        client
            .write_all(b"PROXY TCP4 300.0.0.1 127.0.0.1 1 2\r\n")
            .await
            .unwrap();
        let e = read_proxy_preface(&mut server, peer, WAIT).await;
        assert!(matches!(e, Err(ProxyPrefaceError::Malformed(_))), "{e:?}");

        // A v2 header announcing 64 KiB of addresses is not read.
        let (mut client, mut server) = pair().await;
        let mut big = ppp::v2::PROTOCOL_PREFIX.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        client.write_all(&big).await.unwrap();
        let e = read_proxy_preface(&mut server, peer, WAIT).await;
        assert!(matches!(e, Err(ProxyPrefaceError::TooLong)), "{e:?}");

        // Silence is timed out.
        let (_client, mut server) = pair().await;
        let e = read_proxy_preface(&mut server, peer, Duration::from_millis(50)).await;
        assert!(matches!(e, Err(ProxyPrefaceError::Timeout(_))), "{e:?}");
    }
}
