//! Rate limits (issue 18 item 4): token buckets per API key (default by the key's
//! kind, or a limit an admin set for that key), per person (requests authenticated by
//! their access token), per client address for calls without a credential, and per token issuer for anonymous
//! verifies (AgentOAuth's hosted verifier limits by issuer as well as by address).
//!
//! Buckets are shared by every replica through the store: a replica takes a small
//! lease from the shared bucket ([`bonafide_store::Store::rate_take`]) and spends it
//! locally, taking another when it runs out. What that costs in precision, per replica
//! and bucket: a lease is at most [`lease_cap`] requests (1/20 of the quota, at least 1)
//! and expires after the time the bucket takes to refill that many, so
//! a replica admits at most one lease more than the shared bucket allows over any
//! window, and leaves at most one lease unused. Leases start at one request and double
//! only while each is used up before it expires, so light traffic wastes nothing.
//! Every lease asked while the previous batch was in the store goes in one call (one
//! transaction), so buckets cost one store write per batch, not per request.
//!
//! Over a limit: 429 `RATE_LIMITED` with `Retry-After`; every answer a limit applied
//! to carries the `RateLimit-Policy` and `RateLimit` fields of the IETF httpapi draft
//! (draft-ietf-httpapi-ratelimit-headers: `"ip";q=100;w=60` and `"ip";r=42;t=25`).
//! Refusals are counted in `/metrics` and the access log, never in the audit log.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use bonafide_core::apikey::{ApiKeyHash, KeyKind};

use crate::auth::Presented;
use bonafide_store::{RateGrant, RateTake, Store, StoreError, limits};
use tokio::sync::{mpsc, oneshot};

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// `quota` requests per `window_s` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limit {
    /// Requests per window (at least 1).
    pub quota: u64,
    /// The window, seconds (at least 1): a full bucket refills in this time.
    pub window_s: u64,
}

/// Most requests a limit may allow per window.
pub const MAX_QUOTA: u64 = 1_000_000_000;
/// Longest window, seconds (a day).
pub const MAX_WINDOW_S: u64 = 86_400;

/// Why a limit's text is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not a rate limit: {why} (write it as N/min, N/h, N/s, N/d or N/<seconds>s, e.g. 1000/min)"
)]
pub struct LimitError {
    text: String,
    why: &'static str,
}

impl Limit {
    /// `N/min`, `N/h`, `N/s`, `N/d`, or `N/<n>s`, `N/<n>m`, `N/<n>h` (`100/min`,
    /// `5000/60s`). N from 1 to [`MAX_QUOTA`]; the window from 1 s to a day.
    pub fn parse(text: &str) -> Result<Self, LimitError> {
        let err = |why| LimitError {
            text: text.to_owned(),
            why,
        };
        let (n, per) = text.trim().split_once('/').ok_or_else(|| err("no `/`"))?;
        let quota: u64 = n
            .trim()
            .replace('_', "")
            .parse()
            .map_err(|_| err("the count is not a whole number"))?;
        if !(1..=MAX_QUOTA).contains(&quota) {
            return Err(err("the count must be from 1 to 1,000,000,000"));
        }
        let per = per.trim();
        let (count, unit) = match per {
            "s" | "sec" | "second" => (1, 1),
            "m" | "min" | "minute" => (1, 60),
            "h" | "hour" => (1, 3600),
            "d" | "day" => (1, 86_400),
            _ => {
                let split = per
                    .find(|c: char| !c.is_ascii_digit())
                    .ok_or_else(|| err("the window has no unit"))?;
                let (digits, unit) = per.split_at(split);
                let count: u64 = digits
                    .parse()
                    .map_err(|_| err("the window is not a whole number"))?;
                let unit = match unit {
                    "s" => 1,
                    "m" | "min" => 60,
                    "h" => 3600,
                    "d" => 86_400,
                    _ => return Err(err("the window's unit is not s, m, h or d")),
                };
                (count, unit)
            }
        };
        let window_s = count
            .checked_mul(unit)
            .ok_or_else(|| err("window too long"))?;
        if !(1..=MAX_WINDOW_S).contains(&window_s) {
            return Err(err("the window must be from 1 s to a day"));
        }
        Ok(Limit { quota, window_s })
    }

    fn window_ms(self) -> i64 {
        i64::try_from(self.window_s.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}s", self.quota, self.window_s)
    }
}

/// Which limit applies: also the policy's name in the headers, the metrics and the
/// bucket's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// An admin API key.
    Admin,
    /// An issuer API key.
    Issuer,
    /// A receiver API key.
    Receiver,
    /// A person logged in: requests authenticated by their access token.
    Person,
    /// A call without a key, by client address.
    Ip,
    /// An anonymous verify, by the token's issuer.
    Iss,
    /// A status-list slot allocated for an issuer-signed token, by issuer: slots are
    /// shared by every issuer, so no issuer may take them as fast as its key allows.
    Allocations,
    /// The AgentOAuth playground's demo-token issuance, by client address (applied
    /// with `--playground` whether or not the other limits are on).
    Playground,
}

impl Policy {
    /// Every policy, in the order `describe` lists them.
    pub const ALL: [Policy; 8] = [
        Policy::Admin,
        Policy::Issuer,
        Policy::Receiver,
        Policy::Person,
        Policy::Ip,
        Policy::Iss,
        Policy::Allocations,
        Policy::Playground,
    ];

    /// Its name: `admin`, `issuer`, `receiver`, `person`, `ip`, `iss`, `allocations`,
    /// `playground`.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Admin => "admin",
            Policy::Issuer => "issuer",
            Policy::Receiver => "receiver",
            Policy::Person => "person",
            Policy::Ip => "ip",
            Policy::Iss => "iss",
            Policy::Allocations => "allocations",
            Policy::Playground => "playground",
        }
    }

    fn of_kind(kind: KeyKind) -> Self {
        match kind {
            KeyKind::Admin => Policy::Admin,
            KeyKind::Issuer => Policy::Issuer,
            KeyKind::Receiver => Policy::Receiver,
        }
    }
}

/// The limits in force: one per policy, and whether limits apply at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// Off: nothing is limited or counted (for comparison; `serve --rate-limits off`).
    pub enabled: bool,
    limits: [Limit; 8],
}

impl Default for RateLimits {
    /// [`RateLimits::off`]: the library leaves limits off; `bonafide serve` turns the
    /// seeds' defaults on.
    fn default() -> Self {
        Self::off()
    }
}

impl RateLimits {
    /// The defaults, on: API keys 5,000 a minute, people 1,000 a minute, calls without
    /// a key 100 a minute per address (the limits AIM publishes), anonymous
    /// verifies 1,000 a minute per token issuer, status-list allocations 1,000 a
    /// minute per issuer, and demo tokens from the AgentOAuth playground 100 an hour
    /// per address (AgentOAuth's).
    pub fn seeds() -> Self {
        let per_min = |quota| Limit {
            quota,
            window_s: 60,
        };
        RateLimits {
            enabled: true,
            limits: [
                per_min(5000),
                per_min(5000),
                per_min(5000),
                per_min(1000),
                per_min(100),
                per_min(1000),
                per_min(1000),
                Limit {
                    quota: 100,
                    window_s: 3600,
                },
            ],
        }
    }

    /// The seeds' values, off.
    pub fn off() -> Self {
        RateLimits {
            enabled: false,
            ..Self::seeds()
        }
    }

    /// The limit of `policy`.
    pub fn get(&self, policy: Policy) -> Limit {
        self.limits[policy as usize]
    }

    /// Sets the limit of `policy`.
    pub fn set(&mut self, policy: Policy, limit: Limit) {
        self.limits[policy as usize] = limit;
    }

    /// Applies `policy=limit` (`ip=100/min`); `api-key=…` sets all three key kinds.
    pub fn apply(&mut self, assignment: &str) -> Result<(), String> {
        let (name, limit) = assignment
            .split_once('=')
            .ok_or_else(|| format!("`{assignment}`: write POLICY=LIMIT, e.g. ip=100/min"))?;
        let limit = Limit::parse(limit).map_err(|e| e.to_string())?;
        let name = name.trim();
        if name == "api-key" {
            for p in [Policy::Admin, Policy::Issuer, Policy::Receiver] {
                self.set(p, limit);
            }
            return Ok(());
        }
        let policy = Policy::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                format!(
                    "`{name}` is not a rate-limit policy: use admin, issuer, receiver, api-key, person, ip, iss, allocations or playground"
                )
            })?;
        self.set(policy, limit);
        Ok(())
    }

    /// `admin=5000/60s,issuer=…,playground=100/3600s`, or `off`: what `serve` records as the
    /// defaults it started with.
    pub fn describe(&self) -> String {
        if !self.enabled {
            return "off".to_owned();
        }
        Policy::ALL
            .iter()
            .map(|p| format!("{}={}", p.name(), self.get(*p)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// An address block (`10.0.0.0/8`, `2001:db8::/32`, or one address) whose peers are
/// trusted proxies: their `X-Forwarded-For` names the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDR/PREFIX` or one address.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("`{text}` is not an address block: {why} (e.g. 10.0.0.0/8 or 2001:db8::1)")
        };
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| bad("the prefix length is out of range"))?,
        };
        let cidr = Cidr { addr, prefix };
        if cidr.network(addr) != addr {
            return Err(bad("the address has bits set past the prefix length"));
        }
        Ok(cidr)
    }

    fn network(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((bits & mask).into())
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((bits & mask).into())
            }
        }
    }

    /// Whether `ip` is in the block (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.addr.is_ipv4() && self.network(ip) == self.addr
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the
/// right-most address of `X-Forwarded-For` that is not a trusted proxy (what each
/// proxy appended; addresses further left are the client's own word). A malformed
/// entry stops the walk at the last address known good. No trusted proxy: the peer.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let peer = canonical(peer);
    if !trusted.iter().any(|c| c.contains(peer)) {
        return peer;
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>().map(canonical) else {
            break;
        };
        client = ip;
        if !trusted.iter().any(|c| c.contains(ip)) {
            break;
        }
    }
    client
}

/// Who a request counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// An API key (by its hash) of a kind.
    Key(KeyKind, ApiKeyHash),
    /// A person, by id: requests authenticated by their access token.
    Person(String),
    /// A client address (IPv6 by its /64).
    Ip(IpAddr),
    /// A token issuer (the registry's issuer id of the token's agent).
    Iss(String),
    /// An issuer allocating status-list slots, by issuer id.
    Allocations(String),
    /// A client address asking the playground for a demo token (IPv6 by its /64).
    Playground(IpAddr),
    /// A call without a credential and without a known client address (see
    /// [`address_subject`]): one bucket, under the address limit.
    UnknownAddress,
}

impl Subject {
    fn policy(&self) -> Policy {
        match self {
            Subject::Key(kind, _) => Policy::of_kind(*kind),
            Subject::Person(_) => Policy::Person,
            Subject::Ip(_) | Subject::UnknownAddress => Policy::Ip,
            Subject::Iss(_) => Policy::Iss,
            Subject::Allocations(_) => Policy::Allocations,
            Subject::Playground(_) => Policy::Playground,
        }
    }

    /// The shared bucket's name: the policy and a hash, so no key, address or id is
    /// stored in the clear (and names stay short).
    fn bucket(&self) -> String {
        let what = match self {
            Subject::Key(_, hash) => bonafide_core::hex(&hash.0),
            Subject::Person(id) => id.clone(),
            Subject::Ip(ip) | Subject::Playground(ip) => match canonical(*ip) {
                IpAddr::V6(v6) => {
                    let net = u128::from(v6) & (u128::MAX << 64);
                    std::net::Ipv6Addr::from(net).to_string() + "/64"
                }
                v4 => v4.to_string(),
            },
            Subject::Iss(id) | Subject::Allocations(id) => id.clone(),
            // Not an address's text, so it cannot share an address's bucket.
            Subject::UnknownAddress => "unknown".to_owned(),
        };
        let digest = bonafide_core::sha256(what.as_bytes());
        format!(
            "{}:{}",
            self.policy().name(),
            bonafide_core::hex(digest.get(..16).unwrap_or(&digest))
        )
    }
}

/// The name of a per-key setting ([`bonafide_store::RateLimitSetting::name`]).
pub fn key_setting(key_id: &str) -> String {
    format!("key:{key_id}")
}

/// The name of the setting recording the defaults `serve` started with.
pub const DEFAULTS_SETTING: &str = "defaults";

/// One limit's verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Which policy.
    pub policy: Policy,
    /// The limit applied.
    pub limit: Limit,
    /// Requests left (this replica's lease and the shared bucket as last seen).
    pub remaining: u64,
    /// Seconds until the bucket is full again.
    pub reset_s: u64,
    /// Refused: seconds until a request would be allowed (at least 1).
    pub retry_after_s: Option<u64>,
}

/// One bucket as this replica sees it.
#[derive(Debug)]
struct Local {
    limit: Limit,
    /// Requests leased and not yet spent; usable until `expires_ms`.
    tokens: u64,
    expires_ms: i64,
    /// Spent from the current lease.
    used: u64,
    /// The next lease's size (doubles while leases run out before expiring).
    next_take: u64,
    /// The shared bucket was empty: refuse without asking until then.
    empty_until_ms: i64,
    /// The shared bucket's whole requests left and its refill time, as last seen.
    shared_remaining: u64,
    shared_seen_ms: i64,
    /// This replica's own bucket, used when the store cannot be asked.
    fallback: Option<(i64, i64)>,
    /// A lease is being taken; requests wait for it.
    asking: Option<Arc<tokio::sync::Notify>>,
}

/// The request taking a bucket's lease: when it is done (or dropped), the bucket is
/// free to take the next and its waiters look again.
struct Asking<'a> {
    limiter: &'a Limiter,
    subject: &'a Subject,
}

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        let mut local = self.limiter.lock();
        if let Some(b) = local.get_mut(self.subject)
            && let Some(n) = b.asking.take()
        {
            n.notify_waiters();
        }
    }
}

/// A lease asked of the lease task.
struct Ask {
    take: RateTake,
    answer: oneshot::Sender<Result<RateGrant, StoreError>>,
}

/// The largest lease of a limit: 1/20 of its quota, at least 1. Its expiry is the
/// time the bucket takes to refill it (1/20 of the window), so whatever the quota a
/// busy bucket costs the store about one lease per 1/20 of its window.
pub fn lease_cap(limit: Limit) -> u64 {
    (limit.quota / 20).max(1)
}

/// How long a lease is spendable: the time the bucket takes to refill a full lease
/// (at least 100 ms), so a replica never spends more than one lease beyond the shared
/// bucket's rate.
fn lease_ttl_ms(limit: Limit) -> i64 {
    let ms = u128::from(lease_cap(limit)) * u128::from(limit.window_s) * 1000
        / u128::from(limit.quota.max(1));
    i64::try_from(ms).unwrap_or(i64::MAX).max(100)
}

/// Most buckets one replica keeps in memory; idle ones are dropped first.
const MAX_LOCAL_BUCKETS: usize = 100_000;

/// The limiter: the limits, the admins' per-key limits, and this replica's view of
/// the shared buckets.
#[derive(Debug)]
pub struct Limiter {
    limits: RateLimits,
    trusted_proxies: Vec<Cidr>,
    /// Per-key limits an admin set, by key id (`sha256:…`), read from the store.
    overrides: ArcSwap<HashMap<String, Limit>>,
    local: Mutex<HashMap<Subject, Local>>,
    asks: mpsc::UnboundedSender<Ask>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl std::fmt::Debug for Ask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ask")
            .field("bucket", &self.take.bucket)
            .finish()
    }
}

impl Limiter {
    /// A limiter over `store`, starting its lease task (one batch of leases in the
    /// store at a time; it ends when the limiter is dropped).
    pub fn new(
        limits: RateLimits,
        trusted_proxies: Vec<Cidr>,
        store: Arc<dyn Store>,
        clock: Arc<dyn crate::time::Clock>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        let (asks, rx) = mpsc::unbounded_channel();
        if limits.enabled {
            tokio::spawn(lease_task(rx, store, clock));
        }
        Limiter {
            limits,
            trusted_proxies,
            overrides: ArcSwap::from_pointee(HashMap::new()),
            local: Mutex::new(HashMap::new()),
            asks,
            metrics,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// The trusted proxies.
    pub fn trusted_proxies(&self) -> &[Cidr] {
        &self.trusted_proxies
    }

    /// Replaces the per-key limits (from [`bonafide_store::Store::rate_limit_settings`]).
    pub fn set_overrides(&self, overrides: HashMap<String, Limit>) {
        self.overrides.store(Arc::new(overrides));
    }

    /// The per-key limits in force on this replica, by key id (`sha256:…`).
    pub fn overrides(&self) -> Arc<HashMap<String, Limit>> {
        self.overrides.load_full()
    }

    /// Reads the per-key limits from the store.
    pub async fn load_overrides(&self, store: &dyn Store) -> Result<(), StoreError> {
        let mut map = HashMap::new();
        for s in store.rate_limit_settings().await? {
            if let Some(id) = s.name.strip_prefix("key:") {
                match Limit::parse(&s.value) {
                    Ok(limit) => {
                        map.insert(id.to_owned(), limit);
                    }
                    Err(e) => {
                        tracing::warn!(setting = %s.name, error = %e, "stored rate limit ignored")
                    }
                }
            }
        }
        self.set_overrides(map);
        Ok(())
    }

    /// The limit a subject gets: an admin's per-key limit, else its policy's.
    pub fn limit_of(&self, subject: &Subject) -> Limit {
        if let Subject::Key(_, hash) = subject {
            let overrides = self.overrides.load();
            // The id is text made per call: not made while no key has a limit of its own.
            if !overrides.is_empty()
                && let Some(limit) = overrides.get(&hash.key_id())
            {
                return *limit;
            }
        }
        self.limits.get(subject.policy())
    }

    /// Spends one request of `subject`'s bucket at `now_ms`: from this replica's lease,
    /// else from a new lease of the shared bucket.
    pub async fn check(&self, subject: Subject, now_ms: i64) -> Outcome {
        let limit = self.limit_of(&subject);
        let policy = subject.policy();
        // One lease in flight per bucket: other requests wait for it rather than each
        // asking (which would hold many leases at once, past the documented error).
        let want = loop {
            let waiting = {
                let mut local = self.lock();
                if local.len() >= MAX_LOCAL_BUCKETS && !local.contains_key(&subject) {
                    // Idle buckets first (a missing local bucket costs only a lease).
                    local.retain(|_, b| {
                        b.asking.is_some() || (b.tokens > 0 && b.expires_ms > now_ms)
                    });
                    if local.len() >= MAX_LOCAL_BUCKETS {
                        local.retain(|_, b| b.asking.is_some());
                    }
                }
                let b = local.entry(subject.clone()).or_insert_with(|| Local {
                    limit,
                    tokens: 0,
                    expires_ms: 0,
                    used: 0,
                    next_take: 1,
                    empty_until_ms: 0,
                    shared_remaining: limit.quota,
                    shared_seen_ms: now_ms,
                    fallback: None,
                    asking: None,
                });
                if b.limit != limit {
                    // The limit changed (an admin's setting): start over from the store.
                    b.limit = limit;
                    b.tokens = 0;
                    b.empty_until_ms = 0;
                    b.next_take = 1;
                }
                if b.tokens > 0 && now_ms < b.expires_ms {
                    b.tokens -= 1;
                    b.used += 1;
                    return self.allowed(policy, b, now_ms);
                }
                if now_ms < b.empty_until_ms {
                    return self.refused(policy, b, now_ms);
                }
                match &b.asking {
                    // Registered before the lock is released, so the asker's
                    // `notify_waiters` reaches it.
                    Some(n) => Arc::clone(n).notified_owned(),
                    None => {
                        // A new lease: bigger if the last one was used up in time, else
                        // as large as what was used of it.
                        let cap = lease_cap(limit);
                        b.next_take = if b.tokens == 0 && b.used > 0 && now_ms < b.expires_ms {
                            (b.next_take.saturating_mul(2)).min(cap)
                        } else {
                            b.used.clamp(1, cap)
                        };
                        b.tokens = 0;
                        b.used = 0;
                        b.asking = Some(Arc::new(tokio::sync::Notify::new()));
                        break b.next_take;
                    }
                }
            };
            waiting.await;
        };
        // Whatever happens to this request (its client may go away), the bucket's
        // waiters are released when this guard drops.
        let _asking = Asking {
            limiter: self,
            subject: &subject,
        };
        let take = RateTake {
            bucket: subject.bucket(),
            quota: limit.quota,
            window_ms: limit.window_ms(),
            want,
        };
        let (tx, rx) = oneshot::channel();
        let asked = self.asks.send(Ask {
            take: take.clone(),
            answer: tx,
        });
        let grant = match asked {
            Ok(()) => rx
                .await
                .unwrap_or_else(|_| Err(StoreError::Unavailable("lease task gone".into()))),
            Err(_) => Err(StoreError::Unavailable("lease task gone".into())),
        };
        let mut local = self.lock();
        let Some(b) = local.get_mut(&subject) else {
            // Dropped meanwhile (the map was full): decide on the grant alone.
            return match grant {
                Ok(g) if g.granted > 0 => Outcome {
                    policy,
                    limit,
                    remaining: g.remaining,
                    reset_s: reset_s(limit, g.remaining),
                    retry_after_s: None,
                },
                _ => Outcome {
                    policy,
                    limit,
                    remaining: 0,
                    reset_s: limit.window_s,
                    retry_after_s: Some(1),
                },
            };
        };
        let grant = match grant {
            Ok(g) => {
                self.metrics
                    .rate_limit_leases(if g.granted > 0 { "granted" } else { "empty" }, 1);
                g
            }
            Err(e) => {
                // The store cannot be asked: this replica's own bucket decides, so the
                // limit still holds per replica.
                tracing::warn!(error = %e, "rate-limit lease not taken; this replica's own bucket decides");
                self.metrics.rate_limit_leases("store_error", 1);
                let (g, level, at) = limits::take(b.fallback, &take, now_ms);
                b.fallback = Some((level, at));
                g
            }
        };
        b.shared_remaining = grant.remaining;
        b.shared_seen_ms = now_ms;
        if grant.granted == 0 {
            b.empty_until_ms = now_ms.saturating_add(grant.next_in_ms);
            return self.refused(policy, b, now_ms);
        }
        b.tokens += grant.granted - 1;
        b.used += 1;
        b.expires_ms = now_ms.saturating_add(lease_ttl_ms(limit));
        self.allowed(policy, b, now_ms)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Subject, Local>> {
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn allowed(&self, policy: Policy, b: &Local, now_ms: i64) -> Outcome {
        let remaining = self.remaining(b, now_ms);
        Outcome {
            policy,
            limit: b.limit,
            remaining,
            reset_s: reset_s(b.limit, remaining),
            retry_after_s: None,
        }
    }

    fn refused(&self, policy: Policy, b: &Local, now_ms: i64) -> Outcome {
        self.metrics.rate_limit_refused(policy.name());
        let wait_ms = b.empty_until_ms.saturating_sub(now_ms).max(1);
        Outcome {
            policy,
            limit: b.limit,
            remaining: 0,
            reset_s: reset_s(b.limit, 0),
            retry_after_s: Some(u64::try_from(wait_ms).unwrap_or(1).div_ceil(1000).max(1)),
        }
    }

    /// This replica's lease plus the shared bucket as last seen, refilled since.
    fn remaining(&self, b: &Local, now_ms: i64) -> u64 {
        let refill = u128::try_from(now_ms.saturating_sub(b.shared_seen_ms).max(0)).unwrap_or(0)
            * u128::from(b.limit.quota)
            / (u128::from(b.limit.window_s) * 1000).max(1);
        let shared = (u128::from(b.shared_remaining) + refill).min(u128::from(b.limit.quota));
        u64::try_from(shared)
            .unwrap_or(u64::MAX)
            .saturating_add(b.tokens)
            .min(b.limit.quota)
    }

    /// The client address of a request (see [`client_ip`]); `None` without a peer
    /// address (a router driven without a listener).
    pub fn client_of(&self, req: &Request) -> Option<IpAddr> {
        let peer = req.extensions().get::<ConnectInfo<SocketAddr>>()?.0.ip();
        Some(client_ip(peer, req.headers(), &self.trusted_proxies))
    }
}

/// Seconds until a bucket with `remaining` of `limit` is full again.
fn reset_s(limit: Limit, remaining: u64) -> u64 {
    let missing = limit.quota.saturating_sub(remaining);
    let ms =
        u128::from(missing) * u128::from(limit.window_s) * 1000 / u128::from(limit.quota.max(1));
    u64::try_from(ms.div_ceil(1000)).unwrap_or(u64::MAX)
}

/// Takes every lease asked while the previous batch was in the store in one call; the
/// asks for one bucket are summed into one take and the grant shared out in order.
async fn lease_task(
    mut rx: mpsc::UnboundedReceiver<Ask>,
    store: Arc<dyn Store>,
    clock: Arc<dyn crate::time::Clock>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(ask) => batch.push(ask),
                Err(_) => break,
            }
        }
        let mut takes: Vec<RateTake> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for ask in &batch {
            match index.get(&ask.take.bucket) {
                Some(&i) => {
                    if let Some(t) = takes.get_mut(i) {
                        t.want = t.want.saturating_add(ask.take.want);
                    }
                }
                None => {
                    index.insert(ask.take.bucket.clone(), takes.len());
                    takes.push(ask.take.clone());
                }
            }
        }
        let result = store.rate_take(&takes, clock.now_ms()).await;
        let mut left: Vec<u64> = match &result {
            Ok(grants) => grants.iter().map(|g| g.granted).collect(),
            Err(_) => Vec::new(),
        };
        for ask in batch {
            let answer = match &result {
                Ok(grants) => {
                    let i = index.get(&ask.take.bucket).copied().unwrap_or(0);
                    match (grants.get(i), left.get_mut(i)) {
                        (Some(g), Some(l)) => {
                            let mine = (*l).min(ask.take.want);
                            *l -= mine;
                            Ok(RateGrant {
                                granted: mine,
                                remaining: g.remaining,
                                next_in_ms: g.next_in_ms,
                            })
                        }
                        _ => Err(StoreError::Backend("lease batch mismatch".into())),
                    }
                }
                Err(e) => Err(e.clone()),
            };
            // An asker gone (its request dropped) loses its share: never more.
            let _ = ask.answer.send(answer);
        }
    }
}

/// Paths never limited: health checks read memory only, and a load balancer's probes
/// must not be refused.
pub(crate) const EXEMPT: [&str; 3] = ["/healthz", "/health", "/v1/health"];

/// Whom a request's front limit is charged to ([`crate::front`]): the key it presents
/// (itself, or an access token issued for it at `/v1/oauth/token`), as resolved once
/// for the request, while it is live; else the person whose access token it is; else
/// its client address (a revoked, expired, unknown or malformed credential counts
/// against its address: making keys up must not escape the address limit; the route
/// answers 401 for it).
pub fn subject_of(
    state: &AppState,
    resolved: Option<&crate::auth::ResolvedKey>,
    req: &Request,
) -> Subject {
    if let Some(record) = resolved.and_then(|r| r.live_record(state.now_ms())) {
        return Subject::Key(record.kind, record.hash);
    }
    if resolved.is_none()
        && let Presented::Person(token) = crate::auth::presented(req.headers())
        && let Some(person) = crate::accounts::PersonAuth::person_of_token(state, token)
        // A key's token whose key did not resolve is no person's.
        && !person.starts_with("key_")
    {
        return Subject::Person(person);
    }
    address_subject(state.limiter.client_of(req))
}

/// Who a request without a usable credential counts against: its client address,
/// or, without a peer address (a router driven without `serve`'s listener, which
/// records it), one bucket shared by every such request, under the address limit:
/// unauthenticated calls are never unlimited.
pub fn address_subject(client: Option<IpAddr>) -> Subject {
    client.map_or(Subject::UnknownAddress, Subject::Ip)
}

/// [`charge_issuer`] for an anonymous caller's verify of a genuine token of `agent`
/// (its issuer read through the agent-record cache); nothing for a caller with a key
/// (its key's own limit applied) or a token that did not verify.
pub async fn charge_token_issuer(
    state: &AppState,
    caller: &crate::auth::Caller,
    agent: Option<&bonafide_core::ids::AgentId>,
) -> Result<(), ApiError> {
    if !state.limiter.limits.enabled || *caller != crate::auth::Caller::Anonymous {
        return Ok(());
    }
    let Some(agent) = agent else {
        return Ok(());
    };
    let Some(record) = state.agent_record(agent).await? else {
        return Ok(());
    };
    charge_issuer(state, record.issuer_id.as_str()).await
}

/// The issuer limit of an anonymous verify (per token issuer, as AgentOAuth's hosted
/// verifier limits): spends one request of the issuer's bucket, `Err` 429 when it is
/// empty. Called once the token's signature checked out, so only genuine tokens count
/// against their issuer (a forged token claiming an issuer cannot use up its bucket;
/// it counts against its sender's address).
pub async fn charge_issuer(state: &AppState, issuer_id: &str) -> Result<(), ApiError> {
    charge(state, Subject::Iss(issuer_id.to_owned())).await
}

/// A key's own limit, for a request that presents the key in its body rather than
/// its headers (`POST /v1/oauth/token`'s client credentials): spends one request of
/// its bucket, `Err` 429 when it is empty.
pub async fn charge_key(
    state: &AppState,
    kind: bonafide_core::apikey::KeyKind,
    hash: bonafide_core::apikey::ApiKeyHash,
) -> Result<(), ApiError> {
    charge(state, Subject::Key(kind, hash)).await
}

/// The allocation limit of an issuer (`POST /v1/status-lists/allocations`): spends
/// one of its bucket's, `Err` 429 when it is empty, with the same fields as every
/// limit. Slots of the shared lists are what an issuer could otherwise use up.
pub async fn charge_allocation(state: &AppState, issuer_id: &str) -> Result<(), ApiError> {
    charge(state, Subject::Allocations(issuer_id.to_owned())).await
}

/// Spends one request of `subject`'s bucket inside a handler; its outcome goes into
/// the answer's headers ([`crate::front`]).
async fn charge(state: &AppState, subject: Subject) -> Result<(), ApiError> {
    let limiter = &state.limiter;
    if !limiter.limits.enabled {
        return Ok(());
    }
    let outcome = limiter.check(subject, state.now_ms()).await;
    crate::front::push_outcome(outcome);
    match outcome.retry_after_s {
        Some(_) => {
            tracing::info!(policy = outcome.policy.name(), "rate limit: refused");
            Err(refusal(&outcome))
        }
        None => Ok(()),
    }
}

/// The playground's limit on demo tokens, per client address: spends one request of
/// the address's bucket. Applied whether or not the other limits are on (the
/// playground signs for anyone who asks, so it is never unlimited); a request without
/// a peer address (a router driven without a listener) counts against one bucket
/// shared by all such requests. The outcome goes to the answer's headers through the
/// front layer when it runs (limits or quotas on); otherwise it is handed back
/// (`Some`) for the caller to write with [`write_headers`].
pub async fn charge_playground(
    state: &AppState,
    client: Option<IpAddr>,
) -> (Result<(), ApiError>, Option<Outcome>) {
    let ip = client.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let outcome = state
        .limiter
        .check(Subject::Playground(ip), state.now_ms())
        .await;
    let pushed = crate::front::push_outcome(outcome);
    let verdict = match outcome.retry_after_s {
        Some(_) => {
            tracing::info!(policy = outcome.policy.name(), "rate limit: refused");
            Err(refusal(&outcome))
        }
        None => Ok(()),
    };
    (verdict, (!pushed).then_some(outcome))
}

pub(crate) fn refusal(o: &Outcome) -> ApiError {
    let what = match o.policy {
        Policy::Ip => "calls without a key from this address",
        Policy::Iss => "anonymous verifies of this issuer's tokens",
        Policy::Allocations => "status-list allocations of this issuer",
        Policy::Person => "this person",
        Policy::Playground => "demo tokens from this address",
        _ => "this API key",
    };
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::RateLimited,
        format!(
            "rate limit of {} requests per {} s for {what} reached; retry in {} s",
            o.limit.quota,
            o.limit.window_s,
            o.retry_after_s.unwrap_or(1)
        ),
    )
}

/// `RateLimit-Policy: "ip";q=100;w=60` and `RateLimit: "ip";r=42;t=25` (one member
/// per limit applied), and `Retry-After` (the longest wait) when one refused.
pub fn write_headers(headers: &mut HeaderMap, outcomes: &[Outcome]) {
    if outcomes.is_empty() {
        return;
    }
    use std::fmt::Write as _;
    let (mut policy, mut current) = (String::with_capacity(64), String::with_capacity(64));
    for (i, o) in outcomes.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let name = o.policy.name();
        // Writing into a String cannot fail.
        let _ = write!(
            policy,
            "{sep}\"{name}\";q={};w={}",
            o.limit.quota, o.limit.window_s
        );
        let _ = write!(current, "{sep}\"{name}\";r={};t={}", o.remaining, o.reset_s);
    }
    if let Ok(v) = HeaderValue::from_str(&policy) {
        headers.insert("ratelimit-policy", v);
    }
    if let Ok(v) = HeaderValue::from_str(&current) {
        headers.insert("ratelimit", v);
    }
    if let Some(wait) = outcomes.iter().filter_map(|o| o.retry_after_s).max() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(wait));
    }
}

/// Keeps the limits current while the server runs: the per-key limits admins set
/// (read every `key_refresh`, so a change made on another replica applies here
/// within it) and, hourly, the shared buckets idle for a day dropped (full again,
/// which a missing bucket stands for).
pub async fn maintain(state: Arc<AppState>) {
    if !state.limiter.limits.enabled {
        return;
    }
    let mut tick = tokio::time::interval(state.config.key_refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_purge: Option<std::time::Instant> = None;
    loop {
        tick.tick().await;
        if let Err(e) = state.limiter.load_overrides(state.store.as_ref()).await {
            tracing::debug!(error = %e, "per-key rate limits not reread; keeping the last read");
        }
        if last_purge.is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(3600)) {
            last_purge = Some(std::time::Instant::now());
            let idle_ms = i64::try_from(MAX_WINDOW_S * 1000).unwrap_or(i64::MAX);
            match state
                .store
                .purge_rate_buckets(state.now_ms().saturating_sub(idle_ms))
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "idle rate-limit buckets dropped"),
                Err(e) => tracing::warn!(error = %e, "could not purge idle rate-limit buckets"),
            }
        }
    }
}

/// What `serve` records as the limits it starts with: the defaults and the trusted
/// proxies, as one line.
pub fn defaults_text(limits: &RateLimits, trusted: &[Cidr]) -> String {
    let proxies = if trusted.is_empty() {
        "none".to_owned()
    } else {
        trusted
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!("{}; trusted proxies: {proxies}", limits.describe())
}

/// Records the limits this process starts with when they differ from the last ones
/// recorded (an audit entry, `rate_limit.set` on `defaults`): a configuration change
/// made by restarting with other flags is logged like an admin's. Nothing is recorded
/// while limits were never turned on.
pub async fn record_defaults(
    store: &dyn Store,
    limits: &RateLimits,
    trusted: &[Cidr],
    now_ms: i64,
) -> Result<bool, crate::ServerError> {
    let text = defaults_text(limits, trusted);
    let previous = store
        .rate_limit_settings()
        .await?
        .into_iter()
        .find(|s| s.name == DEFAULTS_SETTING);
    if previous.is_none() && !limits.enabled {
        return Ok(false);
    }
    if previous.as_ref().is_some_and(|p| p.value == text) {
        return Ok(false);
    }
    let mut entry = bonafide_core::audit::AuditEntry::new(
        bonafide_core::audit::EventType::RateLimitSet,
        now_ms,
        bonafide_core::audit::Actor::Registry,
    );
    entry.target = Some(DEFAULTS_SETTING.to_owned());
    entry.note = Some(text.clone());
    let audit =
        crate::audit::record(&entry, None, None).map_err(crate::audit::AuditLogError::from)?;
    Ok(store
        .set_rate_limit_setting(DEFAULTS_SETTING, Some(&text), now_ms, &audit)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_in_every_written_form_and_refuse_the_rest() {
        for (text, quota, window_s) in [
            ("100/min", 100, 60),
            ("1_000/m", 1000, 60),
            ("5000/60s", 5000, 60),
            ("10/s", 10, 1),
            ("7/2h", 7, 7200),
            ("1/d", 1, 86_400),
            (" 3 / 90s ", 3, 90),
        ] {
            assert_eq!(Limit::parse(text), Ok(Limit { quota, window_s }), "{text}");
        }
        for bad in [
            "",
            "100",
            "0/min",
            "-1/min",
            "x/min",
            "100/",
            "100/week",
            "100/0s",
            "100/2d",
            "1000000001/s",
            "100/5x",
            "100/99999999999999999999s",
        ] {
            let err = Limit::parse(bad).unwrap_err().to_string();
            assert!(err.contains("is not a rate limit"), "{bad}: {err}");
        }
        assert_eq!(Limit::parse("5000/min").unwrap().to_string(), "5000/60s");
    }

    #[test]
    fn assignments_set_one_policy_or_every_key_kind() {
        let mut l = RateLimits::seeds();
        l.apply("ip=10/s").unwrap();
        assert_eq!(
            l.get(Policy::Ip),
            Limit {
                quota: 10,
                window_s: 1
            }
        );
        l.apply("api-key=7/min").unwrap();
        for p in [Policy::Admin, Policy::Issuer, Policy::Receiver] {
            assert_eq!(l.get(p).quota, 7);
        }
        assert!(
            l.apply("nobody=1/s")
                .unwrap_err()
                .contains("not a rate-limit policy")
        );
        assert!(l.apply("ip").unwrap_err().contains("POLICY=LIMIT"));
        assert!(
            l.apply("ip=1/week")
                .unwrap_err()
                .contains("is not a rate limit")
        );
        assert_eq!(
            RateLimits::seeds().describe(),
            "admin=5000/60s,issuer=5000/60s,receiver=5000/60s,person=1000/60s,ip=100/60s,iss=1000/60s,allocations=1000/60s,playground=100/3600s"
        );
        assert_eq!(RateLimits::off().describe(), "off");
    }

    #[test]
    fn address_blocks_parse_and_match() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let one = Cidr::parse("2001:db8::1").unwrap();
        assert!(one.contains("2001:db8::1".parse().unwrap()));
        assert!(!one.contains("2001:db8::2".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "nope",
            "10.0.0.0/x",
            "::/129",
            "",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_client_address_is_the_peer_unless_a_trusted_proxy_forwarded() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.1.1.1, 2.2.2.2, 10.0.0.5"),
        );
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        // Nothing trusted: the peer, whatever it says.
        assert_eq!(client_ip(peer, &h, &[]), peer);
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        // The right-most address that is not a trusted proxy.
        assert_eq!(
            client_ip(peer, &h, &trusted),
            "2.2.2.2".parse::<IpAddr>().unwrap()
        );
        // An untrusted peer's header is ignored.
        assert_eq!(
            client_ip("3.3.3.3".parse().unwrap(), &h, &trusted),
            "3.3.3.3".parse::<IpAddr>().unwrap()
        );
        // A malformed hop stops the walk at the last good address.
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.1.1.1, junk, 10.0.0.5"),
        );
        assert_eq!(
            client_ip(peer, &h, &trusted),
            "10.0.0.5".parse::<IpAddr>().unwrap()
        );
        // No header: the peer.
        assert_eq!(client_ip(peer, &HeaderMap::new(), &trusted), peer);
    }

    #[test]
    fn buckets_name_no_address_or_key_and_ipv6_counts_by_64() {
        let a = Subject::Ip("2001:db8::1".parse().unwrap()).bucket();
        let b = Subject::Ip("2001:db8::ffff:1".parse().unwrap()).bucket();
        let c = Subject::Ip("2001:db8:0:1::1".parse().unwrap()).bucket();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let v4 = Subject::Ip("192.0.2.1".parse().unwrap()).bucket();
        assert!(v4.starts_with("ip:") && !v4.contains("192"), "{v4}");
        assert!(v4.len() <= limits::MAX_BUCKET_BYTES);
    }

    #[test]
    fn calls_without_an_address_share_one_bucket_under_the_address_limit() {
        let unknown = address_subject(None);
        assert_eq!(unknown, Subject::UnknownAddress);
        assert_eq!(unknown.policy(), Policy::Ip);
        assert_eq!(unknown.bucket(), address_subject(None).bucket());
        let ip = address_subject(Some("192.0.2.1".parse().unwrap()));
        assert_eq!(ip, Subject::Ip("192.0.2.1".parse().unwrap()));
        assert_ne!(unknown.bucket(), ip.bucket());
        assert!(unknown.bucket().starts_with("ip:"));
    }

    #[test]
    fn headers_follow_the_draft() {
        let mut h = HeaderMap::new();
        let ip = Outcome {
            policy: Policy::Ip,
            limit: Limit {
                quota: 100,
                window_s: 60,
            },
            remaining: 42,
            reset_s: 35,
            retry_after_s: None,
        };
        let iss = Outcome {
            policy: Policy::Iss,
            remaining: 0,
            retry_after_s: Some(3),
            ..ip
        };
        write_headers(&mut h, &[ip, iss]);
        assert_eq!(
            h["ratelimit-policy"],
            "\"ip\";q=100;w=60, \"iss\";q=100;w=60"
        );
        assert_eq!(h["ratelimit"], "\"ip\";r=42;t=35, \"iss\";r=0;t=35");
        assert_eq!(h["retry-after"], "3");
    }

    #[test]
    fn leases_are_a_twentieth_of_the_quota_and_last_as_long_as_their_refill() {
        let l = |quota, window_s| Limit { quota, window_s };
        assert_eq!(lease_cap(l(100, 60)), 5);
        assert_eq!(lease_cap(l(5000, 60)), 250);
        assert_eq!(lease_cap(l(3, 60)), 1);
        assert_eq!(lease_cap(l(1_000_000, 1)), 50_000);
        assert_eq!(lease_ttl_ms(l(100, 60)), 3000);
        assert_eq!(lease_ttl_ms(l(1_000_000, 60)), 3000);
        assert_eq!(lease_ttl_ms(l(1_000_000, 1)), 100);
        assert_eq!(reset_s(l(100, 60), 40), 36);
    }
}
