//! SSRF-safe fetch of an issuer's published JWKS (`POST /v1/issuer/verify-domain`).
//!
//! The registry fetches a URL an issuer named, so the URL is hostile input: it must
//! not reach the registry's own network (cloud metadata at 169.254.169.254, admin
//! ports on loopback, the private LAN). The rules, all enforced here:
//!
//! - `https` only; no user info in the URL.
//! - The host is resolved by us (`tokio::net::lookup_host`) and **every** address it
//!   resolves to is checked with [`classify`]: one refused address refuses the fetch
//!   (a name that mixes public and private addresses is an attack, not a mistake).
//! - The connection is pinned to the checked addresses (reqwest `resolve_to_addrs`),
//!   and every other DNS lookup fails ([`NoDns`]), so a second lookup cannot rebind
//!   the name to another address. No proxy is used.
//! - Redirects are never followed: a 3xx is a failure that names its status.
//! - Bounded: a connect timeout and a total timeout (DNS, connect, TLS, headers and
//!   body), and a body cap checked against `Content-Length` and again while
//!   streaming.
//! - The body is checked by `bonafide_core::json::check` (no duplicate members,
//!   bounded depth) before it is parsed.
//!
//! The one exception is [`FetchLimits::allow_insecure_loopback`], a test-only switch
//! (off by default, `Config::allow_insecure_loopback_fetch`) that lets a test serve a
//! JWKS from `http://127.0.0.1:<port>` or `http://localhost:<port>`: it allows plain
//! `http` to a loopback host and loopback addresses, nothing else (private,
//! link-local and other ranges stay refused).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bonafide_core::json::{self, JsonLimits};
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Bounds of one fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Whole fetch: DNS, connect, TLS, response and body. Default 5 s.
    pub timeout: Duration,
    /// TCP connect (and TLS handshake start). Default 2 s.
    pub connect_timeout: Duration,
    /// Largest body accepted, bytes. Default 256 KiB.
    pub max_bytes: usize,
    /// TEST ONLY: also allow `http` to a loopback host (`127.0.0.1`, `[::1]`,
    /// `localhost`) and loopback addresses. Default false. Never turn it on in
    /// production: it opens the registry's own loopback services to issuers.
    pub allow_insecure_loopback: bool,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            max_bytes: 256 * 1024,
            allow_insecure_loopback: false,
        }
    }
}

/// Why a fetch failed. Every message is safe to show the issuer who asked: it never
/// names an address the registry resolved or its resolver's words, and a host that
/// does not resolve is one error with one message with a host that resolves to a
/// non-public address ([`FetchError::NotPublic`]), which would otherwise let an
/// issuer map the registry's internal DNS view (`fetch_json` logs the difference with
/// `tracing::warn!` instead). The fields hold it for the log and for tests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Not a URL, or one with user info or without a host.
    #[error("`{0}` is not a usable URL")]
    BadUrl(String),
    /// Not `https` (nor the test-only loopback `http`).
    #[error("only https URLs are fetched, not `{0}`")]
    Scheme(String),
    /// The host does not resolve (or its lookup does not finish in time), or it
    /// resolves to (or is) an address the registry never connects to: one variant and
    /// one message for all, so the answer does not tell them apart.
    #[error("refused: the host does not resolve to a public address")]
    NotPublic {
        /// The host.
        host: String,
        /// Which of them it was (logged, never shown).
        refusal: Refusal,
    },
    /// The server answered with a redirect, which is never followed.
    #[error("the server answered {0} (a redirect): redirects are not followed")]
    Redirect(u16),
    /// The server answered another non-200 status.
    #[error("the server answered {0}")]
    Status(u16),
    /// The body is larger than [`FetchLimits::max_bytes`].
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    /// The fetch took longer than [`FetchLimits::timeout`].
    #[error("no complete answer within {0} ms")]
    Timeout(u128),
    /// Connection, TLS or HTTP failure.
    #[error("the fetch failed: {0}")]
    Transport(String),
    /// The body is not one strict JSON object.
    #[error("the body is not a JSON object: {0}")]
    NotJson(String),
}

/// What lies behind a [`FetchError::NotPublic`], for the log only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The lookup failed: the resolver's words, or that it found no address.
    Unresolved(String),
    /// The lookup did not finish within [`FetchLimits::timeout`].
    LookupTimeout,
    /// An address the registry never connects to.
    Address {
        /// The refused address.
        addr: IpAddr,
        /// Which kind of address ([`classify`]).
        class: &'static str,
    },
}

/// Why an address is refused, or `None` if the registry may connect to it.
///
/// Refused: unspecified, "this network" (0/8), loopback, private (RFC 1918), shared
/// CGNAT (100.64/10, RFC 6598), link-local (169.254/16, fe80::/10), IETF protocol
/// assignments (192.0.0/24), documentation (192.0.2/24, 198.51.100/24, 203.0.113/24,
/// 2001:db8::/32, 3fff::/20), benchmarking (198.18/15, 2001:2::/48), 6to4 relay
/// anycast (192.88.99/24), multicast, reserved (240/4) and broadcast; for IPv6 every
/// address outside global unicast 2000::/3, unique-local fc00::/7, site-local, and
/// the IPv4 forms (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64
/// `64:ff9b::/96`, 6to4 `2002::/16`) judged by the IPv4 address they carry; Teredo
/// (2001::/32), ORCHID (2001:10::/28, 2001:20::/28) and local NAT64 (64:ff9b:1::/48)
/// always.
pub fn classify(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() => "unspecified",
        (0, _, _) => "this-network",
        (127, _, _) => "loopback",
        (10, _, _) => "private",
        (172, 16..=31, _) => "private",
        (192, 168, _) => "private",
        (100, 64..=127, _) => "shared (CGNAT)",
        (169, 254, _) => "link-local",
        (192, 0, 0) => "IETF protocol assignment",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking",
        (192, 88, 99) => "6to4 relay",
        (224..=239, _, _) => "multicast",
        _ if ip.is_broadcast() => "broadcast",
        (240..=255, _, _) => "reserved",
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    // IPv4 carried in IPv6: judged by the IPv4 address.
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    match s {
        // ::ffff:a.b.c.d (mapped).
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => return classify_v4(embedded(hi, lo)),
        // ::a.b.c.d (IPv4-compatible, deprecated by RFC 4291 §2.5.5.1): never used.
        [0, 0, 0, 0, 0, 0, hi, lo] => {
            return Some(classify_v4(embedded(hi, lo)).unwrap_or("IPv4-compatible"));
        }
        // NAT64 well-known prefix 64:ff9b::/96.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => {
            return classify_v4(embedded(hi, lo));
        }
        _ => {}
    }
    let first = s[0];
    Some(match s {
        _ if first & 0xff00 == 0xff00 => "multicast",
        _ if first & 0xffc0 == 0xfe80 => "link-local",
        _ if first & 0xffc0 == 0xfec0 => "site-local",
        _ if first & 0xfe00 == 0xfc00 => "unique-local",
        [0x64, 0xff9b, 1, ..] => "local NAT64",
        [0x2001, 0x0db8, ..] => "documentation",
        _ if first & 0xfff0 == 0x3ff0 => "documentation",
        [0x2001, 0, ..] => "Teredo",
        [0x2001, 2, 0, ..] => "benchmarking",
        [0x2001, x, ..] if x & 0xfff0 == 0x10 || x & 0xfff0 == 0x20 => "ORCHID",
        [0x2002, hi, lo, ..] => return classify_v4(embedded(hi, lo)),
        _ if first & 0xe000 != 0x2000 => "non-global IPv6",
        _ => return None,
    })
}

/// A DNS resolver that resolves nothing: every name the client connects to is
/// pinned with `resolve_to_addrs` to addresses already checked, so any other lookup
/// (which would be a rebinding chance) fails.
#[derive(Debug)]
struct NoDns;

impl Resolve for NoDns {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(
            async move { Err::<Addrs, _>(format!("`{host}` was not checked: refused").into()) },
        )
    }
}

/// A URL's host: a name to resolve, or an IP literal.
enum Host<'a> {
    Name(&'a str),
    Ip(IpAddr),
}

fn host_of(url: &Url) -> Option<Host<'_>> {
    let h = url.host_str()?;
    if let Some(v6) = h.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse().ok().map(Host::Ip);
    }
    // The URL parser has already normalised IPv4 literals (`0x7f.1` → `127.0.0.1`).
    Some(match h.parse::<Ipv4Addr>() {
        Ok(ip) => Host::Ip(ip.into()),
        Err(_) => Host::Name(h),
    })
}

/// True for the hosts the test-only switch lets through with plain `http`.
pub(crate) fn loopback_host(url: &Url) -> bool {
    match host_of(url) {
        Some(Host::Name(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ip(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Checks `url` and resolves its host to addresses that pass [`classify`] (or are
/// loopback, with the test-only switch).
async fn checked_addrs(url: &Url, limits: &FetchLimits) -> Result<Vec<SocketAddr>, FetchError> {
    let shown: String = url.as_str().chars().take(256).collect();
    match url.scheme() {
        "https" => {}
        "http" if limits.allow_insecure_loopback && loopback_host(url) => {}
        other => return Err(FetchError::Scheme(other.chars().take(16).collect())),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(FetchError::BadUrl(shown));
    }
    let port = url
        .port_or_known_default()
        .ok_or_else(|| FetchError::BadUrl(shown.clone()))?;
    let (host, addrs): (String, Vec<SocketAddr>) = match host_of(url) {
        Some(Host::Name(d)) => {
            let resolved = tokio::net::lookup_host((d, port)).await.map_err(|e| {
                tracing::warn!(host = %d, error = %e, "outbound request refused: the host does not resolve");
                FetchError::NotPublic {
                    host: d.to_owned(),
                    refusal: Refusal::Unresolved(e.to_string()),
                }
            })?;
            (d.to_owned(), resolved.collect())
        }
        Some(Host::Ip(ip)) => (ip.to_string(), vec![SocketAddr::new(ip, port)]),
        None => return Err(FetchError::BadUrl(shown)),
    };
    if addrs.is_empty() {
        tracing::warn!(host = %host, "outbound request refused: the host resolves to no address");
        return Err(FetchError::NotPublic {
            host,
            refusal: Refusal::Unresolved("no addresses".into()),
        });
    }
    for a in &addrs {
        let ip = a.ip();
        if let Some(class) = classify(ip) {
            let test_loopback = limits.allow_insecure_loopback && class == "loopback";
            if !test_loopback {
                tracing::warn!(host = %host, addr = %ip, class, "outbound request refused: not a public address");
                return Err(FetchError::NotPublic {
                    host,
                    refusal: Refusal::Address { addr: ip, class },
                });
            }
        }
    }
    Ok(addrs)
}

/// Fetches `url` under the rules of this module and returns the body, checked to be
/// one strict JSON object.
pub async fn fetch_json(url: &str, limits: &FetchLimits) -> Result<Vec<u8>, FetchError> {
    let deadline = tokio::time::Instant::now() + limits.timeout;
    let (url, addrs) = resolve_checked(url, limits, deadline).await?;
    tokio::time::timeout_at(deadline, fetch_from(url, addrs, limits))
        .await
        .map_err(|_| FetchError::Timeout(limits.timeout.as_millis()))?
}

/// Checks `url` under the rules of this module without sending anything: the URL,
/// its scheme and every address its host resolves to now. For a URL the registry
/// will call later (a webhook), refused at once when it names a private address; it
/// is checked again at each call, since a name can resolve elsewhere later.
pub async fn check_url(url: &str, limits: &FetchLimits) -> Result<(), FetchError> {
    let deadline = tokio::time::Instant::now() + limits.timeout;
    resolve_checked(url, limits, deadline).await.map(|_| ())
}

/// POSTs `body` with `headers` to `url` under the rules of this module (checked
/// addresses only, pinned; no redirect followed; bounded) and returns the status of
/// the answer, whose body is not read beyond [`FetchLimits::max_bytes`]. A redirect
/// is [`FetchError::Redirect`]; any other status is returned for the caller to judge.
pub async fn post(
    url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
    limits: &FetchLimits,
) -> Result<u16, FetchError> {
    let deadline = tokio::time::Instant::now() + limits.timeout;
    let (url, addrs) = resolve_checked(url, limits, deadline).await?;
    let ms = limits.timeout.as_millis();
    tokio::time::timeout_at(deadline, async move {
        let client = pinned_client(&url, &addrs, limits, "webhook")?;
        let mut request = client.post(url);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let mut resp = request
            .body(body)
            .send()
            .await
            .map_err(|e| transport(e, limits))?;
        let status = resp.status();
        if status.is_redirection() {
            return Err(FetchError::Redirect(status.as_u16()));
        }
        // Drain a bounded body so the connection closes cleanly; its content is unused.
        let mut read = 0usize;
        while let Some(chunk) = resp.chunk().await.map_err(|e| transport(e, limits))? {
            read += chunk.len();
            if read > limits.max_bytes {
                break;
            }
        }
        Ok(status.as_u16())
    })
    .await
    .map_err(|_| FetchError::Timeout(ms))?
}

/// Parses `url` and resolves it to checked addresses before `deadline`.
async fn resolve_checked(
    url: &str,
    limits: &FetchLimits,
    deadline: tokio::time::Instant,
) -> Result<(Url, Vec<SocketAddr>), FetchError> {
    let url = Url::parse(url).map_err(|_| FetchError::BadUrl(url.chars().take(256).collect()))?;
    // A lookup that does not finish is a host that does not resolve, and is answered
    // in the same words (a distinct timeout would tell a slow internal resolver apart).
    let addrs = tokio::time::timeout_at(deadline, checked_addrs(&url, limits))
        .await
        .map_err(|_| {
            let host = url.host_str().unwrap_or_default().to_owned();
            tracing::warn!(host = %host, "outbound request refused: the lookup did not finish in time");
            FetchError::NotPublic {
                host,
                refusal: Refusal::LookupTimeout,
            }
        })??;
    Ok((url, addrs))
}

fn transport(e: reqwest::Error, limits: &FetchLimits) -> FetchError {
    if e.is_timeout() {
        FetchError::Timeout(limits.timeout.as_millis())
    } else {
        // Without the URL: the caller knows it, and it makes messages long.
        FetchError::Transport(e.without_url().to_string())
    }
}

/// A client that connects only to `addrs` (checked), follows no redirect and uses
/// no proxy, within `limits`.
fn pinned_client(
    url: &Url,
    addrs: &[SocketAddr],
    limits: &FetchLimits,
    purpose: &str,
) -> Result<reqwest::Client, FetchError> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(limits.timeout)
        .connect_timeout(limits.connect_timeout)
        .https_only(!limits.allow_insecure_loopback)
        .dns_resolver(Arc::new(NoDns))
        .user_agent(format!(
            "bonafide/{} ({purpose})",
            env!("CARGO_PKG_VERSION")
        ));
    if let Some(Host::Name(d)) = host_of(url) {
        builder = builder.resolve_to_addrs(d, addrs);
    }
    builder
        .build()
        .map_err(|e| FetchError::Transport(e.to_string()))
}

/// The fetch itself, from addresses [`checked_addrs`] let through.
async fn fetch_from(
    url: Url,
    addrs: Vec<SocketAddr>,
    limits: &FetchLimits,
) -> Result<Vec<u8>, FetchError> {
    let transport = |e: reqwest::Error| transport(e, limits);
    let client = pinned_client(&url, &addrs, limits, "jwks fetch")?;
    let mut resp = client
        .get(url)
        .header(
            reqwest::header::ACCEPT,
            "application/jwk-set+json, application/json",
        )
        .send()
        .await
        .map_err(transport)?;
    let status = resp.status();
    if status.is_redirection() {
        return Err(FetchError::Redirect(status.as_u16()));
    }
    if status != reqwest::StatusCode::OK {
        return Err(FetchError::Status(status.as_u16()));
    }
    if resp
        .content_length()
        .is_some_and(|n| n > limits.max_bytes as u64)
    {
        return Err(FetchError::TooLarge(limits.max_bytes));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > limits.max_bytes {
            return Err(FetchError::TooLarge(limits.max_bytes));
        }
        body.extend_from_slice(&chunk);
    }
    json::check(&body, JsonLimits::default()).map_err(|e| FetchError::NotJson(e.to_string()))?;
    if !json::is_object(&body) {
        return Err(FetchError::NotJson("not an object".into()));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_classified() {
        let refused = [
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "this-network"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("10.0.0.1", "private"),
            ("10.255.255.255", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "shared (CGNAT)"),
            ("100.127.255.255", "shared (CGNAT)"),
            ("169.254.169.254", "link-local"),
            ("192.0.0.8", "IETF protocol assignment"),
            ("192.0.2.1", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("192.88.99.1", "6to4 relay"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.255", "broadcast"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.1.2.3", "private"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::ffff:0.0.0.0", "unspecified"),
            ("::127.0.0.1", "loopback"),
            ("::10.0.0.1", "private"),
            ("64:ff9b::7f00:1", "loopback"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("64:ff9b:1::1", "local NAT64"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("ff02::1", "multicast"),
            ("ff0e::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation"),
            ("2001::1", "Teredo"),
            ("2001:2::1", "benchmarking"),
            ("2001:10::1", "ORCHID"),
            ("2001:20::1", "ORCHID"),
            ("2002:7f00:1::1", "loopback"),
            ("2002:c0a8:101::1", "private"),
            ("100::1", "non-global IPv6"),
            ("::2", "this-network"),
            ("::8.8.8.8", "IPv4-compatible"),
            ("4000::1", "non-global IPv6"),
        ];
        for (text, want) in refused {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(classify(ip), Some(want), "{text}");
        }
        let allowed = [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "169.253.255.255",
            "192.0.1.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ];
        for text in allowed {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(classify(ip), None, "{text}");
        }
    }

    fn test_limits() -> FetchLimits {
        FetchLimits {
            timeout: Duration::from_secs(2),
            ..FetchLimits::default()
        }
    }

    #[tokio::test]
    async fn urls_are_refused_before_any_lookup_or_connection() {
        let cases = [
            ("http://example.com/jwks.json", "only https"),
            ("ftp://example.com/jwks.json", "only https"),
            ("https://user:pw@example.com/", "not a usable URL"),
            ("not a url", "not a usable URL"),
            ("https://127.0.0.1/", "loopback"),
            ("https://[::1]/", "loopback"),
            ("https://[::ffff:7f00:1]/", "loopback"),
            ("https://169.254.169.254/latest/meta-data", "link-local"),
            ("https://10.0.0.1/", "private"),
            ("https://localhost/", "loopback"),
            ("http://127.0.0.1:9/", "only https"),
        ];
        for (url, want) in cases {
            let e = fetch_json(url, &test_limits()).await.unwrap_err();
            assert!(refused_as(&e, want), "{url}: {e:?}");
        }
    }

    /// True if `e` is a refused address of class `want` (whose message names no
    /// address), or a URL refusal whose message says `want`.
    fn refused_as(e: &FetchError, want: &str) -> bool {
        match e {
            FetchError::NotPublic {
                refusal: Refusal::Address { addr, class },
                ..
            } => {
                let shown = e.to_string();
                *class == want
                    && shown == "refused: the host does not resolve to a public address"
                    && !shown.contains(&addr.to_string())
            }
            other => other.to_string().contains(want),
        }
    }

    #[test]
    fn messages_never_name_an_address_or_the_resolver_nor_tell_them_apart() {
        let refusals = [
            Refusal::Address {
                addr: "10.1.2.3".parse().unwrap(),
                class: "private",
            },
            Refusal::Unresolved(
                "failed to lookup address information: Name or service not known".into(),
            ),
            Refusal::LookupTimeout,
        ];
        for refusal in refusals {
            let e = FetchError::NotPublic {
                host: "internal.example".into(),
                refusal,
            };
            assert_eq!(
                e.to_string(),
                "refused: the host does not resolve to a public address"
            );
        }
    }

    #[tokio::test]
    async fn a_host_that_does_not_resolve_is_refused_like_a_private_one() {
        // `.invalid` never resolves (RFC 6761 §6.4).
        let e = fetch_json("https://no-such-host.invalid/", &test_limits())
            .await
            .unwrap_err();
        let private = fetch_json("https://10.0.0.1/", &test_limits())
            .await
            .unwrap_err();
        assert!(matches!(e, FetchError::NotPublic { .. }), "{e:?}");
        assert_eq!(e.to_string(), private.to_string());
    }

    #[tokio::test]
    async fn the_test_switch_allows_loopback_only() {
        let limits = FetchLimits {
            allow_insecure_loopback: true,
            ..test_limits()
        };
        for (url, want) in [
            ("http://10.0.0.1/", "only https"),
            ("http://example.com/", "only https"),
            ("https://10.0.0.1/", "private"),
            ("https://169.254.169.254/", "link-local"),
        ] {
            let e = fetch_json(url, &limits).await.unwrap_err();
            assert!(refused_as(&e, want), "{url}: {e:?}");
        }
        // Loopback passes the checks; nothing listens on port 9, so it fails later.
        let e = fetch_json("http://127.0.0.1:9/", &limits)
            .await
            .unwrap_err();
        assert!(matches!(e, FetchError::Transport(_)), "{e}");
    }
}
