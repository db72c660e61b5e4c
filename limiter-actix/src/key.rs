//! Client keys: who a request comes from.
//!
//! The default key is the socket peer's IP address, with IPv4-mapped IPv6 addresses unwrapped
//! and IPv6 addresses grouped by /64 (one host usually owns a whole /64, so per-address keys
//! would let it rotate addresses freely). Behind trusted proxies, the header they write
//! (`X-Forwarded-For`, or `Forwarded` if configured; never whichever the client sent) is read
//! right to left, skipping trusted hops; a hop that does not parse falls back to the peer
//! address.

use std::cell::Cell;
use std::fmt::Write;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use actix_web::HttpRequest;
use actix_web::http::header::{FORWARDED, HeaderName, HeaderValue};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The header trusted proxies write the client's address in. Only that one is read: the
/// other is whatever the client sent, passed through.
///
/// ```
/// use actix_web::{test, web, App};
/// use limiter_actix::{Limiter, ProxyHeader};
///
/// # #[actix_web::main]
/// # async fn main() {
/// let limiter = Limiter::builder()
///     .trusted_proxies(["10.0.0.1"])
///     .proxy_header(ProxyHeader::Forwarded)
///     .default_limits("1 per minute")
///     .build()
///     .unwrap();
/// let app = App::new().wrap(limiter).route("/", web::get().to(|| async { "hi" }));
/// let app = test::init_service(app).await;
/// let status = |forwarded: &'static str| {
///     let req = test::TestRequest::get()
///         .insert_header(("Forwarded", forwarded))
///         .insert_header(("X-Forwarded-For", "198.51.100.1"))
///         .peer_addr("10.0.0.1:4000".parse().unwrap());
///     let app = &app;
///     async move { test::call_service(app, req.to_request()).await.status().as_u16() }
/// };
/// // Counted by `for=`; the X-Forwarded-For the client sent is ignored.
/// assert_eq!(status("for=203.0.113.7").await, 200);
/// assert_eq!(status("for=203.0.113.8").await, 200);
/// assert_eq!(status("for=203.0.113.7").await, 429);
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProxyHeader {
    /// `X-Forwarded-For`: nginx, HAProxy's `forwardfor`, Envoy, Traefik, Caddy and the
    /// cloud load balancers write it.
    #[default]
    XForwardedFor,
    /// `Forwarded` (RFC 7239), the `for=` of each element.
    Forwarded,
}

/// The trusted proxies and the header they write.
#[derive(Clone, Debug, Default)]
pub(crate) struct Proxies {
    pub(crate) nets: Box<[Cidr]>,
    pub(crate) header: ProxyHeader,
}

impl Proxies {
    fn trust(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(ip))
    }
}

/// A network: an address and a prefix length (`10.0.0.0/8`, `::1/128`, or a bare address), as
/// [`LimiterBuilder::trusted_proxies`](crate::LimiterBuilder::trusted_proxies) reads them.
///
/// ```
/// use limiter_actix::Cidr;
///
/// let net: Cidr = "10.0.0.0/8".parse().unwrap();
/// assert!(net.contains("10.1.2.3".parse().unwrap()));
/// assert!(!net.contains("192.0.2.1".parse().unwrap()));
/// assert!("10.0.0.0/33".parse::<Cidr>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in this network (IPv4-mapped addresses count as IPv4).
    ///
    /// ```
    /// use limiter_actix::Cidr;
    ///
    /// let net: Cidr = "192.0.2.0/24".parse().unwrap();
    /// assert!(net.contains("::ffff:192.0.2.9".parse().unwrap()));
    /// ```
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let written = IpAddr::from_str(addr)
            .map_err(|_| "expected an IP address or a network like 10.0.0.0/8".to_string())?;
        let max = if written.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("prefix length must be 0..={max}"))?,
        };
        // An IPv4-mapped network (`::ffff:10.0.0.0/104`) is the IPv4 one (`10.0.0.0/8`).
        let addr = canonical(written);
        let prefix = match (written, addr) {
            (IpAddr::V6(_), IpAddr::V4(_)) => prefix
                .checked_sub(96)
                .ok_or("an IPv4-mapped network needs a prefix length of 96 or more")?,
            _ => prefix,
        };
        Ok(Cidr { addr, prefix })
    }
}

/// The client's address as a client key, as the default key function computes it: the
/// socket peer or, from a trusted proxy of the request's [`Limiter`](crate::Limiter), the
/// client it forwarded for; IPv4-mapped addresses unwrapped, IPv6 grouped by /64
/// (Flask-Limiter's `get_remote_address`). For key functions that fall back to the address.
///
/// ```
/// use actix_web::test::TestRequest;
/// let req = TestRequest::default().peer_addr("[2001:db8::7]:1234".parse().unwrap()).to_http_request();
/// assert_eq!(limiter_actix::remote_address(&req).as_deref(), Some("2001:db8::/64"));
/// ```
pub fn remote_address(req: &HttpRequest) -> Option<String> {
    let keying = KEYING.with(Cell::get);
    let none = Proxies::default();
    let proxies = if keying.is_null() {
        let limiter = req.app_data::<crate::Limiter>();
        limiter.map_or(&none, |limiter| &limiter.inner.proxies)
    } else {
        // SAFETY: set by `keying_with` only while a key function runs on this thread, from a
        // reference that outlives that call, and restored when it returns (or unwinds).
        unsafe { &*keying }
    };
    let mut key = String::new();
    write_ip_key(&mut key, client_ip(req, proxies)?);
    Some(key)
}

thread_local! {
    /// The trusted proxies of the limiter whose key function runs on this thread, if one
    /// does: the middleware keys a request before it adds the app data `remote_address`
    /// would otherwise find the limiter in.
    static KEYING: Cell<*const Proxies> = const { Cell::new(std::ptr::null()) };
}

/// Runs the key function `f` with `proxies` as the ones [`remote_address`] reads.
pub(crate) fn keying_with<R>(proxies: &Proxies, f: impl FnOnce() -> R) -> R {
    struct Restore(*const Proxies);
    impl Drop for Restore {
        fn drop(&mut self) {
            KEYING.with(|keying| keying.set(self.0));
        }
    }
    let _restore = Restore(KEYING.with(|keying| keying.replace(proxies)));
    f()
}

/// `::ffff:1.2.3.4` is the IPv4 client 1.2.3.4.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Writes the key of a client address: IPv4 as is, IPv6 as its /64 network.
pub(crate) fn write_ip_key(out: &mut String, ip: IpAddr) {
    match canonical(ip) {
        IpAddr::V4(v4) => push_ipv4(out, v4),
        IpAddr::V6(v6) => {
            let net = Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64));
            let _ = write!(out, "{net}/64");
        }
    }
}

/// Dotted decimal without the formatting machinery (this runs on every request).
fn push_ipv4(out: &mut String, ip: std::net::Ipv4Addr) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
}

/// The client's address: the peer, or behind trusted proxies the nearest untrusted hop of the
/// forwarding chain. `None` without a peer address (a Unix socket, a bare test request).
pub(crate) fn client_ip(req: &HttpRequest, proxies: &Proxies) -> Option<IpAddr> {
    let peer = canonical(req.peer_addr()?.ip());
    if !proxies.trust(peer) {
        return Some(peer);
    }
    let chain = match proxies.header {
        ProxyHeader::XForwardedFor => walk(req.headers().get_all(&X_FORWARDED_FOR), proxies, |s| {
            parse_hop(s.trim())
        }),
        ProxyHeader::Forwarded => walk(req.headers().get_all(&FORWARDED), proxies, forwarded_for),
    };
    Some(chain.unwrap_or(peer))
}

/// Walks the hops right to left (last header line first): the first untrusted hop is the
/// client; if every hop is trusted, the leftmost one. `None` when the chain is empty or a hop
/// reached does not parse (then the peer address is used). Hops left of the client are never
/// looked at: whatever the client wrote there, even bytes that are not text, changes nothing.
fn walk<'a>(
    values: impl DoubleEndedIterator<Item = &'a HeaderValue>,
    proxies: &Proxies,
    parse: impl Fn(&str) -> Option<IpAddr>,
) -> Option<IpAddr> {
    let mut leftmost = None;
    for value in values.rev() {
        for hop in value.as_bytes().rsplit(|&b| b == b',') {
            let ip = canonical(parse(std::str::from_utf8(hop).ok()?)?);
            if !proxies.trust(ip) {
                return Some(ip);
            }
            leftmost = Some(ip);
        }
    }
    leftmost
}

/// One `Forwarded` element (`for=192.0.2.1;proto=https`): its `for` address.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let value = element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then_some(value.trim())
    })?;
    parse_hop(value.trim_matches('"'))
}

/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1` or `[2001:db8::1]:80`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = IpAddr::from_str(hop) {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split_once(']').and_then(|(v6, _)| v6.parse().ok());
    }
    let (v4, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    v4.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// `value` as text when every byte is visible ASCII or a tab: what `HeaderValue::to_str`
/// accepts, eight bytes at a time. A key header (an API key, often 32 bytes or more) is read
/// on every request, and `to_str` checks it a byte at a time.
pub(crate) fn header_text(value: &HeaderValue) -> Option<&str> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGHS: u64 = ONES << 7;
    let bytes = value.as_bytes();
    let mut chunks = bytes.chunks_exact(8);
    // Flags a byte below 0x20 (the borrow's false flags only ever send a value to the exact
    // check), or one of 0x7f and above.
    let suspicious = |word: u64| {
        (word.wrapping_sub(ONES * 0x20) & !word & HIGHS)
            | ((word | word.wrapping_add(ONES)) & HIGHS)
    };
    let plain = chunks
        .all(|chunk| suspicious(u64::from_le_bytes(chunk.try_into().unwrap_or_default())) == 0)
        && chunks
            .remainder()
            .iter()
            .all(|&b| (0x20..0x7f).contains(&b));
    if plain {
        // SAFETY: every byte is printable ASCII, so the bytes are valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        // A tab, or a byte `to_str` refuses: its own check decides.
        value.to_str().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_text_accepts_what_to_str_accepts() {
        // Every byte value at every position of values 0 to 17 bytes long (two words and a
        // remainder), on a printable background.
        for len in 0..=17usize {
            for at in 0..len {
                for byte in 0..=255u8 {
                    let mut bytes = vec![b'k'; len];
                    bytes[at] = byte;
                    let Ok(value) = HeaderValue::from_bytes(&bytes) else {
                        continue;
                    };
                    assert_eq!(header_text(&value), value.to_str().ok(), "{bytes:?}");
                }
            }
        }
        let key = HeaderValue::from_static("0123456789abcdef0123456789abcdef~ !");
        assert_eq!(
            header_text(&key),
            Some("0123456789abcdef0123456789abcdef~ !")
        );
    }

    fn key(ip: &str) -> String {
        let mut out = String::new();
        write_ip_key(&mut out, ip.parse().unwrap());
        out
    }

    #[test]
    fn ipv6_grouped_by_64_and_mapped_v4_unwrapped() {
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:bbbb::9"), "2001:db8:1:2::/64");
        assert_eq!(key("::ffff:10.1.2.3"), "10.1.2.3");
        for ip in ["10.1.2.3", "0.0.0.0", "192.168.100.255", "8.80.109.99"] {
            assert_eq!(key(ip), ip);
        }
    }

    #[test]
    fn cidr_parsing_and_membership() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains("10.200.1.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("ten".parse::<Cidr>().is_err());
        // An IPv4-mapped network is the IPv4 network.
        let mapped: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped, net);
        assert_eq!(
            "::ffff:10.1.2.3".parse::<Cidr>(),
            "10.1.2.3".parse::<Cidr>()
        );
        assert!("::ffff:10.0.0.0/95".parse::<Cidr>().is_err());
    }

    #[test]
    fn hops() {
        assert_eq!(parse_hop("1.2.3.4:80"), Some("1.2.3.4".parse().unwrap()));
        assert_eq!(
            parse_hop("[2001:db8::1]:80"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            forwarded_for("for=\"[2001:db8::1]:4711\";proto=http"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(parse_hop("unknown"), None);
    }
}
