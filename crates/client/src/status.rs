//! Token Status Lists for receivers that verify offline (draft-ietf-oauth-status-list):
//! the registry publishes, per list, a signed Status List Token (`typ statuslist+jwt`)
//! holding a 2-bit entry per token (valid, revoked, suspended); a token names its entry
//! in its `status.status_list` claim (`idx`, `uri`). [`StatusLists`] fetches those
//! lists, verifies them with the registry's JWKS, caches them and answers, for a
//! verified token, whether its entry still says valid.
//!
//! The rules, each in one place here:
//! - **Only the trusted registry is fetched.** A token names its list's URI, so a URI
//!   is fetched only if it lies under a trusted prefix ([`StatusListConfig::trusted`]:
//!   by default the registry's `…/v1/status-lists/`), is in normal form (what
//!   `url::Url` would write back, no user info, query or fragment) and names one
//!   list id of unreserved characters. Any other URI is never requested: the token
//!   is refused ([`StatusError::Untrusted`], `STATUS_LIST_UNTRUSTED`), because a
//!   status this receiver will not look at cannot be checked, and following it would
//!   let whoever writes tokens make the receiver fetch URLs of their choosing (SSRF).
//! - **Verification** (draft §8.3): the list token is opened by core
//!   (`status_list::verify`: `typ statuslist+jwt`, a `kid` of the status-list keys of
//!   the registry the prefix belongs to, signature, `sub` = the URI, `exp`), at most
//!   [`status_list::MAX_TOKEN_BYTES`],
//!   inflated at most [`status_list::MAX_LIST_BYTES`]; an index beyond the list and
//!   a status this verifier does not know refuse the token; a list whose `version`
//!   is lower than the one cached is refused (a replayed older list).
//! - **Caching.** A list is used without asking again for its `ttl` (default 60 s
//!   when it has none), never past its `exp`. After that the next request refetches
//!   with `If-None-Match` (a 304 confirms the cached list). One fetch per list is in
//!   flight at a time: other requests use the cached list meanwhile, or wait for the
//!   fetch if there is none. A list is (re)fetched at most once per
//!   [`StatusListConfig::min_refetch`] (default 5 s), whether the last fetch worked
//!   or not, so neither a failing registry nor a flood of requests makes a storm. A
//!   list the registry has not published yet (503; a new list is within a second)
//!   is asked for again after 1 s, up to 3 times in one check, then again 1 s later.
//!   A list obtained otherwise ([`StatusLists::offer`]) goes through the same
//!   verification and is recorded exactly as if this cache had fetched it.
//! - **Staleness.** A list's age is the time since its `iat` (the statuses are as of
//!   then: a 304 says the registry still serves it, not that it is recent; the
//!   registry re-signs every list at least every 5 minutes). Past [`StatusListConfig::max_staleness`] (or its `exp`), a valid
//!   entry no longer counts: the check fails closed ([`StatusError::Stale`], 503
//!   `STATUS_LIST_STALE`, or `STATUS_LIST_UNAVAILABLE` when no list was ever
//!   fetched) unless [`WhenStale::FailOpen`] is configured, and then the answer says
//!   revocation was not checked ([`StatusCheck::Unchecked`]). An entry that says
//!   revoked or suspended refuses the token whatever the list's age.
//!
//! - **Keys.** A registry signs its lists with a key of their own, published apart
//!   from the token keys (`/.well-known/status-list-jwks.json`), so no verifier
//!   configured with the token JWKS can take a list for a token, nor a token key a
//!   list. Each trusted prefix has its key set ([`ListKeys`]: by default that URL of
//!   its registry, fetched on first use and again, at most once per `min_refetch`,
//!   when a list names a `kid` it does not hold).
//!
//! The list token's `iss` is not compared with the token's: issuer-signed tokens
//! carry their issuer's id as `iss` while the registry publishes every list; the
//! registry's list key (by `kid`) and `sub` = the trusted URI are what bind the list
//! to the token.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bonafide_core::status_list::{
    self, MAX_TOKEN_BYTES, STATUS_LIST_MEDIA_TYPE, StatusList, StatusListError,
};
use bonafide_core::token::{AgentClaims, KeySet, TokenError};

use crate::is_loopback_http;

/// Default [`StatusListConfig::max_staleness`]: 10 minutes.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(600);
/// Default [`StatusListConfig::min_refetch`]: 5 seconds.
pub const DEFAULT_MIN_REFETCH: Duration = Duration::from_secs(5);
/// How long a list without `ttl` is used before it is refetched.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// Most lists cached at once (lists are shared by many tokens; a registry has few).
pub const MAX_LISTS: usize = 1024;
/// Where a registry serves its lists, under its base URL.
pub const STATUS_LISTS_PATH: &str = "/v1/status-lists/";
/// Where a registry publishes the keys that sign its lists, under its base URL.
pub const STATUS_LIST_JWKS_PATH: &str = "/.well-known/status-list-jwks.json";
/// How long after a 503 (a list not published yet) it is asked again.
const UNPUBLISHED_RETRY: Duration = Duration::from_secs(1);
/// Most fetches of a list not published yet within one check (about 2 s of waiting).
const UNPUBLISHED_TRIES: u32 = 3;
/// Time allowed for one list fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest status list URI looked at.
const MAX_URI_BYTES: usize = 2048;

/// What happens when the only list at hand is older than
/// [`StatusListConfig::max_staleness`] (or there is none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WhenStale {
    /// Refuse with 503 `STATUS_LIST_STALE` / `STATUS_LIST_UNAVAILABLE` (the default).
    #[default]
    FailClosed,
    /// Accept the token and say revocation was not checked
    /// ([`StatusCheck::Unchecked`]).
    FailOpen,
}

/// The keys that sign the lists under one prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListKeys {
    /// A JWK Set URL (`https://`, or `http://` on loopback), such as
    /// `https://registry.example/.well-known/status-list-jwks.json`.
    Url(String),
    /// A fixed key set.
    Static(bonafide_core::keys::Jwks),
}

/// Lists that may be fetched: a URI prefix and the keys its lists are signed with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedLists {
    /// An `https://` URL (or `http://` on loopback) ending in `/`, in normal form,
    /// such as `https://registry.example/v1/status-lists/`.
    pub prefix: String,
    /// The keys.
    pub keys: ListKeys,
}

impl TrustedLists {
    /// The lists of the registry at `registry_url` (its base URL), signed by the keys
    /// it publishes at `/.well-known/status-list-jwks.json`.
    pub fn registry(registry_url: &str) -> Self {
        let base = registry_url.trim_end_matches('/');
        TrustedLists {
            prefix: format!("{base}{STATUS_LISTS_PATH}"),
            keys: ListKeys::Url(format!("{base}{STATUS_LIST_JWKS_PATH}")),
        }
    }

    /// A registry's lists given by their prefix (`…/v1/status-lists/`): the keys at
    /// the same registry's `/.well-known/status-list-jwks.json`. `None` when the
    /// prefix does not end in `/v1/status-lists/`.
    pub fn prefix(prefix: &str) -> Option<Self> {
        let base = prefix.strip_suffix(STATUS_LISTS_PATH)?;
        Some(TrustedLists {
            prefix: prefix.to_owned(),
            keys: ListKeys::Url(format!("{base}{STATUS_LIST_JWKS_PATH}")),
        })
    }
}

/// How status lists are fetched and trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusListConfig {
    /// Where lists may be fetched from, and the keys each is signed with.
    pub trusted: Vec<TrustedLists>,
    /// Oldest list whose "valid" is believed. Default [`DEFAULT_MAX_STALENESS`].
    pub max_staleness: Duration,
    /// Beyond `max_staleness`: fail closed (default) or open.
    pub when_stale: WhenStale,
    /// A list is fetched at most once per this interval. Default
    /// [`DEFAULT_MIN_REFETCH`].
    pub min_refetch: Duration,
    /// Clock skew allowed on the list token's `exp`, seconds. Default 60.
    pub leeway_secs: i64,
}

impl StatusListConfig {
    /// Trusts the lists of the registry at `registry_url` (its base URL, e.g.
    /// `https://registry.example`): `{registry_url}/v1/status-lists/`.
    pub fn for_registry(registry_url: &str) -> Self {
        StatusListConfig {
            trusted: vec![TrustedLists::registry(registry_url)],
            max_staleness: DEFAULT_MAX_STALENESS,
            when_stale: WhenStale::FailClosed,
            min_refetch: DEFAULT_MIN_REFETCH,
            leeway_secs: bonafide_core::token::DEFAULT_LEEWAY_SECS,
        }
    }

    /// The registry a JWKS URL belongs to: the URL without
    /// `/.well-known/jwks.json`, else its origin. `None` for a URL that is not one.
    pub fn registry_of_jwks(jwks_url: &str) -> Option<String> {
        let url = reqwest::Url::parse(jwks_url).ok()?;
        let path = url.path();
        let base = path.strip_suffix("/.well-known/jwks.json").unwrap_or("");
        let host = url.host_str()?;
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        Some(format!("{}://{host}{port}{base}", url.scheme()))
    }

    /// Trusts the lists of another registry too (its base URL).
    pub fn trust(mut self, registry_url: &str) -> Self {
        self.trusted.push(TrustedLists::registry(registry_url));
        self
    }

    /// Sets [`StatusListConfig::max_staleness`].
    pub fn max_staleness(mut self, max: Duration) -> Self {
        self.max_staleness = max;
        self
    }

    /// Sets [`StatusListConfig::when_stale`].
    pub fn when_stale(mut self, when: WhenStale) -> Self {
        self.when_stale = when;
        self
    }

    /// Sets [`StatusListConfig::min_refetch`].
    pub fn min_refetch(mut self, min: Duration) -> Self {
        self.min_refetch = min;
        self
    }
}

/// What the status check found for a verified token.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatusCheck {
    /// The token names no status list (an issuer-signed token made without one):
    /// revocation is not checked.
    NoStatus,
    /// Its entry says valid, in a list the registry confirmed `age` ago.
    Valid {
        /// Time since the registry last confirmed the list.
        age: Duration,
        /// The list's `version`, when it has one.
        version: Option<u64>,
    },
    /// Not checked: the list is stale or unavailable and the configuration fails
    /// open ([`WhenStale::FailOpen`]).
    Unchecked {
        /// The age of the stale list; `None` when none was ever fetched.
        age: Option<Duration>,
        /// Why.
        reason: String,
    },
}

impl StatusCheck {
    /// True when the token's entry was read from a list within the staleness bound.
    pub fn revocation_checked(&self) -> bool {
        matches!(self, StatusCheck::Valid { .. })
    }

    /// The age of the list consulted, if one was.
    pub fn age(&self) -> Option<Duration> {
        match self {
            StatusCheck::Valid { age, .. } => Some(*age),
            StatusCheck::Unchecked { age, .. } => *age,
            StatusCheck::NoStatus => None,
        }
    }
}

/// Why a token's status refuses it, or cannot be decided.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// The token's entry refuses it (revoked, suspended, an unknown status, an index
    /// beyond the list): the code the registry answers online.
    #[error(transparent)]
    Refused(TokenError),
    /// The token's status list URI is not under a trusted prefix, or not in normal
    /// form: it was not fetched.
    #[error("the token's status list `{uri}` is not one this receiver trusts: {reason}")]
    Untrusted {
        /// The URI (cut at 200 characters).
        uri: String,
        /// Why.
        reason: &'static str,
    },
    /// A list handed to [`StatusLists::offer`] was refused: it does not verify, or
    /// is older than the list cached.
    #[error("the status list offered for `{uri}` was refused: {reason}")]
    Invalid {
        /// The URI (cut at 200 characters).
        uri: String,
        /// Why.
        reason: String,
    },
    /// No list within the staleness bound, and the configuration fails closed.
    #[error("{}", stale_message(.age, .reason))]
    Stale {
        /// The age of the list at hand; `None` when none was ever fetched.
        age: Option<Duration>,
        /// What went wrong fetching it.
        reason: String,
    },
}

fn stale_message(age: &Option<Duration>, reason: &str) -> String {
    match age {
        Some(age) => format!(
            "the token's status list is {}s old, beyond this receiver's bound (failing closed): {reason}",
            age.as_secs()
        ),
        None => format!("the token's status list cannot be fetched (failing closed): {reason}"),
    }
}

impl StatusError {
    /// The stable code: the token error's (`TOKEN_REVOKED`, `AGENT_SUSPENDED`,
    /// `TOKEN_INVALID`), `STATUS_LIST_UNTRUSTED`, `STATUS_LIST_STALE` or
    /// `STATUS_LIST_UNAVAILABLE`.
    pub fn code(&self) -> &'static str {
        match self {
            StatusError::Refused(e) => e.code().as_str(),
            StatusError::Untrusted { .. } => "STATUS_LIST_UNTRUSTED",
            // The list cannot be used: as for a fetch that brought it.
            StatusError::Invalid { .. } => "STATUS_LIST_UNAVAILABLE",
            StatusError::Stale { age: Some(_), .. } => "STATUS_LIST_STALE",
            StatusError::Stale { age: None, .. } => "STATUS_LIST_UNAVAILABLE",
        }
    }

    /// True when the token itself is refused (401); false when this receiver cannot
    /// decide (503).
    pub fn is_refusal(&self) -> bool {
        !matches!(
            self,
            StatusError::Stale { .. } | StatusError::Invalid { .. }
        )
    }
}

/// A verified list, as cached.
#[derive(Debug)]
struct Cached {
    list: StatusList,
    etag: Option<String>,
    /// When the registry last confirmed it (200 or 304), Unix ms.
    confirmed_ms: i64,
    /// Its `iat`, Unix ms: the statuses are as of then, however recently a 304 said
    /// the registry still serves it (a publisher that stopped re-signing, or a cache
    /// replaying an old list, keeps answering).
    issued_ms: i64,
    /// Its `ttl`, ms.
    ttl_ms: i64,
    /// Its `exp`, Unix seconds.
    exp_s: Option<i64>,
    version: Option<u64>,
}

#[derive(Debug, Default)]
struct SlotState {
    list: Option<Arc<Cached>>,
    /// No fetch before this time, Unix ms.
    next_ms: Option<i64>,
    /// Why the last fetch failed, if it did.
    error: Option<String>,
}

#[derive(Debug, Default)]
struct Slot {
    state: RwLock<SlotState>,
    /// Held by the one fetch in flight.
    fetch: tokio::sync::Mutex<()>,
}

impl Slot {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, SlotState> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, SlotState> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Fetches, verifies and caches status lists; see the module docs. Cheap to share
/// behind an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct StatusLists {
    config: StatusListConfig,
    /// One per [`StatusListConfig::trusted`], in order.
    keys: Vec<Keys>,
    http: reqwest::Client,
    lists: RwLock<HashMap<String, (usize, Arc<Slot>)>>,
}

/// The keys of one trusted prefix.
#[derive(Debug)]
struct Keys {
    url: Option<String>,
    set: RwLock<Option<Arc<KeySet>>>,
    /// No fetch of `url` before this time, Unix ms.
    next_ms: std::sync::atomic::AtomicI64,
    lock: tokio::sync::Mutex<()>,
}

/// What one fetch brought.
enum Fetched {
    New(Cached),
    NotModified,
}

/// Why a fetch failed, and when to try again.
struct FetchError {
    reason: String,
    /// The registry said the list is not published yet (503): sooner.
    unpublished: bool,
}

impl From<String> for FetchError {
    fn from(reason: String) -> Self {
        FetchError {
            reason,
            unpublished: false,
        }
    }
}

impl StatusLists {
    /// Checks the configuration: every trusted prefix an `https://` URL (or `http://`
    /// on loopback) in normal form, ending in `/`, without user info, query or
    /// fragment; a positive staleness bound.
    pub fn new(config: StatusListConfig) -> Result<Self, crate::ClientError> {
        let bad = |reason: String| crate::ClientError::InvalidUrl {
            url: "status list configuration".into(),
            reason,
        };
        if config.trusted.is_empty() {
            return Err(bad("no trusted status list prefix".into()));
        }
        if config.max_staleness.is_zero() || config.leeway_secs < 0 {
            return Err(bad(
                "max_staleness must be positive and leeway_secs ≥ 0".into()
            ));
        }
        let mut keys = Vec::new();
        for t in &config.trusted {
            let p = &t.prefix;
            let url = reqwest::Url::parse(p)
                .map_err(|e| bad(format!("trusted prefix `{p}` is not a URL: {e}")))?;
            let scheme_ok = url.scheme() == "https" || is_loopback_http(p);
            if !scheme_ok {
                return Err(bad(format!(
                    "trusted prefix `{p}` must be https (plain http only on loopback)"
                )));
            }
            if url.as_str() != p
                || !p.ends_with('/')
                || !url.username().is_empty()
                || url.password().is_some()
                || url.query().is_some()
                || url.fragment().is_some()
            {
                return Err(bad(format!(
                    "trusted prefix `{p}` must be a URL in normal form ending in `/`, without user, query or fragment"
                )));
            }
            keys.push(match &t.keys {
                ListKeys::Url(u) => {
                    if !(u.starts_with("https://") || is_loopback_http(u)) {
                        return Err(bad(format!(
                            "status list keys URL `{u}` must be https (plain http only on loopback)"
                        )));
                    }
                    Keys {
                        url: Some(u.clone()),
                        set: RwLock::new(None),
                        next_ms: std::sync::atomic::AtomicI64::new(i64::MIN),
                        lock: tokio::sync::Mutex::new(()),
                    }
                }
                ListKeys::Static(jwks) => Keys {
                    url: None,
                    set: RwLock::new(Some(Arc::new(
                        KeySet::from_jwks(jwks).map_err(crate::ClientError::Key)?,
                    ))),
                    next_ms: std::sync::atomic::AtomicI64::new(i64::MAX),
                    lock: tokio::sync::Mutex::new(()),
                },
            });
        }
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| bad(format!("cannot set up the HTTP client: {e}")))?;
        Ok(StatusLists {
            config,
            keys,
            http,
            lists: RwLock::new(HashMap::new()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &StatusListConfig {
        &self.config
    }

    /// The status of a verified token at `now_ms` (Unix ms). Fetches the token's list
    /// (and its registry's list keys) if the cache has none fresh enough.
    pub async fn check(
        &self,
        claims: &AgentClaims,
        now_ms: i64,
    ) -> Result<StatusCheck, StatusError> {
        let Some(r) = claims.status.as_ref().and_then(|s| s.status_list.as_ref()) else {
            return Ok(StatusCheck::NoStatus);
        };
        // Only trusted URIs are ever cached: a cached one skips the URL parse.
        let (trusted, slot) = match self.cached_slot(&r.uri) {
            Some(found) => found,
            None => {
                let trusted = self.trusted(&r.uri)?;
                (trusted, self.slot(&r.uri, trusted))
            }
        };
        let cached = slot.read().list.clone();
        let cached = match cached {
            Some(c) if self.fresh(&c, now_ms) => Some(c),
            _ => self.refresh(&slot, &r.uri, trusted, now_ms).await,
        };
        let reason = || {
            slot.read()
                .error
                .clone()
                .unwrap_or_else(|| "the list is older than its bound".to_owned())
        };
        let Some(c) = cached else {
            return self.stale(None, reason());
        };
        let status = c.list.get(r.idx).map_err(|_| {
            StatusError::Refused(TokenError::Claims(format!(
                "the token's status index {} is beyond its list ({} entries)",
                r.idx,
                c.list.len()
            )))
        })?;
        // Revoked or suspended refuses whatever the list's age: only "valid" expires.
        status.check().map_err(StatusError::Refused)?;
        let age = Duration::from_millis(u64::try_from(c.age_ms(now_ms)).unwrap_or(0));
        if self.usable(&c, now_ms) {
            Ok(StatusCheck::Valid {
                age,
                version: c.version,
            })
        } else {
            self.stale(Some(age), reason())
        }
    }

    fn stale(&self, age: Option<Duration>, reason: String) -> Result<StatusCheck, StatusError> {
        match self.config.when_stale {
            WhenStale::FailClosed => Err(StatusError::Stale { age, reason }),
            WhenStale::FailOpen => Ok(StatusCheck::Unchecked { age, reason }),
        }
    }

    /// Within both its `ttl` and the staleness bound: used without asking.
    fn fresh(&self, c: &Cached, now_ms: i64) -> bool {
        let bound = c.ttl_ms.min(millis(self.config.max_staleness));
        now_ms.saturating_sub(c.confirmed_ms) < bound && self.usable(c, now_ms)
    }

    /// Within the staleness bound and not past its `exp`: its "valid" is believed.
    fn usable(&self, c: &Cached, now_ms: i64) -> bool {
        let within = c.age_ms(now_ms) <= millis(self.config.max_staleness);
        let expired = c.exp_s.is_some_and(|exp| {
            exp.saturating_add(self.config.leeway_secs)
                .saturating_mul(1000)
                <= now_ms
        });
        within && !expired
    }

    /// The trusted prefix a URI is under (its index), or the refusal, before
    /// anything is fetched.
    fn trusted(&self, uri: &str) -> Result<usize, StatusError> {
        let untrusted = |reason| StatusError::Untrusted {
            uri: uri.chars().take(200).collect(),
            reason,
        };
        if uri.len() > MAX_URI_BYTES {
            return Err(untrusted("it is too long"));
        }
        let Ok(url) = reqwest::Url::parse(uri) else {
            return Err(untrusted("it is not a URL"));
        };
        // Normal form only: what is compared is exactly what would be requested.
        if url.as_str() != uri
            || !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(untrusted(
                "it is not in normal form, or has user info, a query or a fragment",
            ));
        }
        let one_id = |rest: &str| {
            !rest.is_empty()
                && rest != "."
                && rest != ".."
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        };
        self.config
            .trusted
            .iter()
            .position(|t| uri.strip_prefix(t.prefix.as_str()).is_some_and(one_id))
            .ok_or_else(|| {
                untrusted(
                    "it is not a list of the registry whose keys verify the token (see the trusted status list prefixes)",
                )
            })
    }

    fn cached_slot(&self, uri: &str) -> Option<(usize, Arc<Slot>)> {
        self.lists
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(uri)
            .cloned()
    }

    /// The slot of a URI under trusted prefix `trusted`, made if need be.
    fn slot(&self, uri: &str, trusted: usize) -> Arc<Slot> {
        let mut map = self
            .lists
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= MAX_LISTS && !map.contains_key(uri) {
            // Lists that never fetched go first; if all did, start over (each list is
            // one fetch away).
            map.retain(|_, (_, s)| s.read().list.is_some());
            if map.len() >= MAX_LISTS {
                map.clear();
            }
        }
        map.entry(uri.to_owned())
            .or_insert_with(|| (trusted, Arc::default()))
            .1
            .clone()
    }

    /// Brings the slot up to date (one fetch in flight, at most one per
    /// `min_refetch`) and returns the best list it has.
    async fn refresh(
        &self,
        slot: &Slot,
        uri: &str,
        trusted: usize,
        now_ms: i64,
    ) -> Option<Arc<Cached>> {
        let min_refetch = millis(self.config.min_refetch);
        let recently = |st: &SlotState| st.next_ms.is_some_and(|next| now_ms < next);
        {
            // Asked recently and a list at hand: no new fetch. Without a list, a
            // fetch may be in flight: the lock below waits for it.
            let st = slot.read();
            if recently(&st) && st.list.is_some() {
                return st.list.clone();
            }
        }
        let _guard = match slot.fetch.try_lock() {
            Ok(g) => g,
            Err(_) => {
                // A fetch is in flight: use the list at hand if its "valid" still
                // counts, else wait for the fetch.
                if let Some(c) = slot.read().list.clone()
                    && self.usable(&c, now_ms)
                {
                    return Some(c);
                }
                slot.fetch.lock().await
            }
        };
        // Someone else may have fetched (or failed to) while we waited.
        {
            let st = slot.read();
            if recently(&st) {
                return st.list.clone();
            }
        }
        let (etag, cached_version) = {
            let mut st = slot.write();
            st.next_ms = Some(now_ms.saturating_add(min_refetch));
            let c = st.list.as_ref();
            (c.and_then(|c| c.etag.clone()), c.and_then(|c| c.version))
        };
        let mut fetched = self.fetch(uri, etag.as_deref(), trusted, now_ms).await;
        // A list the registry has not published yet (503: a new list is, within a
        // second) and none at hand: wait for it here, a few times, rather than fail a
        // token issued a moment ago. Only this one fetch waits; others wait on it.
        let mut tries = 1;
        while tries < UNPUBLISHED_TRIES
            && etag.is_none()
            && matches!(&fetched, Err(e) if e.unpublished)
        {
            tokio::time::sleep(UNPUBLISHED_RETRY).await;
            fetched = self.fetch(uri, None, trusted, now_ms).await;
            tries += 1;
        }
        // A failure is recorded in the slot (the reason a check gives); the best list
        // at hand is returned either way.
        let _ = store(slot, fetched, cached_version, now_ms);
        slot.read().list.clone()
    }

    /// Takes a list obtained some other way than this cache's own fetch (pushed by
    /// the registry, shipped with the application, read from a file) as if it had
    /// just been fetched from `uri` at `now_ms` (Unix ms): the same checks first
    /// (`uri` under a trusted prefix and in normal form, else
    /// [`StatusError::Untrusted`]; the list verified with that prefix's keys, `sub` =
    /// `uri`, not older than the version cached), then the same record: accepted, it
    /// is the cached list, and `uri` is not fetched again before its `ttl` runs out;
    /// refused ([`StatusError::Invalid`]), the previous list stays, and until
    /// [`StatusListConfig::min_refetch`] has passed a check uses it or, with none,
    /// fails closed with this reason, exactly as after a fetch that brought that list.
    /// Returns the list as accepted.
    pub async fn offer(
        &self,
        uri: &str,
        list_token: &str,
        now_ms: i64,
    ) -> Result<StatusList, StatusError> {
        let (trusted, slot) = match self.cached_slot(uri) {
            Some(found) => found,
            None => {
                let trusted = self.trusted(uri)?;
                (trusted, self.slot(uri, trusted))
            }
        };
        // One writer at a time, whether fetching or offered.
        let _guard = slot.fetch.lock().await;
        let cached_version = {
            let mut st = slot.write();
            st.next_ms = Some(now_ms.saturating_add(millis(self.config.min_refetch)));
            st.list.as_ref().and_then(|c| c.version)
        };
        let verified = if list_token.len() > MAX_TOKEN_BYTES {
            Err(format!("the list is over {MAX_TOKEN_BYTES} bytes").into())
        } else {
            self.verify_list(uri, list_token.trim(), None, trusted, now_ms)
                .await
                .map(Fetched::New)
        };
        store(&slot, verified, cached_version, now_ms).map_err(|reason| StatusError::Invalid {
            uri: uri.chars().take(200).collect(),
            reason,
        })?;
        slot.read()
            .list
            .as_ref()
            .map(|c| c.list.clone())
            .ok_or_else(|| StatusError::Invalid {
                uri: uri.chars().take(200).collect(),
                reason: "no list was kept".into(),
            })
    }

    /// The key set of trusted prefix `i`; fetched when there is none yet, or when
    /// `refetch` (a list named a `kid` it lacks), at most once per `min_refetch`.
    async fn list_keys(&self, i: usize, refetch: bool, now_ms: i64) -> Result<Arc<KeySet>, String> {
        let k = self
            .keys
            .get(i)
            .ok_or_else(|| "no keys for this prefix".to_owned())?;
        let current = || {
            k.set
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        };
        let due = |k: &Keys| now_ms >= k.next_ms.load(std::sync::atomic::Ordering::Acquire);
        if let Some(set) = current()
            && (!refetch || !due(k))
        {
            return Ok(set);
        }
        let Some(url) = &k.url else {
            return current().ok_or_else(|| "no status list keys".to_owned());
        };
        let _guard = k.lock.lock().await;
        if let Some(set) = current()
            && !due(k)
        {
            return Ok(set);
        }
        if current().is_none() && !due(k) {
            return Err(format!(
                "the status list keys at {url} could not be fetched; retrying shortly"
            ));
        }
        k.next_ms.store(
            now_ms.saturating_add(millis(self.config.min_refetch)),
            std::sync::atomic::Ordering::Release,
        );
        let set = crate::load_jwks(url)
            .await
            .map_err(|e| format!("cannot fetch the status list keys: {e}"))
            .and_then(|jwks| {
                KeySet::from_jwks(&jwks).map_err(|e| format!("the status list keys: {e}"))
            })?;
        let set = Arc::new(set);
        *k.set
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(set.clone());
        Ok(set)
    }

    /// One `GET` of the list: a verified list, a 304, or why not.
    async fn fetch(
        &self,
        uri: &str,
        etag: Option<&str>,
        trusted: usize,
        now_ms: i64,
    ) -> Result<Fetched, FetchError> {
        let mut req = self
            .http
            .get(uri)
            .header(reqwest::header::ACCEPT, STATUS_LIST_MEDIA_TYPE);
        if let Some(tag) = etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, tag);
        }
        let mut resp = req.send().await.map_err(|e| format!("GET failed: {e}"))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_MODIFIED && etag.is_some() {
            return Ok(Fetched::NotModified);
        }
        if !status.is_success() {
            return Err(FetchError {
                reason: format!("the registry answered HTTP {status}"),
                unpublished: status == reqwest::StatusCode::SERVICE_UNAVAILABLE,
            });
        }
        let media = crate::media_type(resp.headers());
        if media != STATUS_LIST_MEDIA_TYPE {
            return Err(format!("the answer is {media}, not {STATUS_LIST_MEDIA_TYPE}").into());
        }
        let new_etag = resp
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_TOKEN_BYTES as u64)
        {
            return Err(format!("the list is over {MAX_TOKEN_BYTES} bytes").into());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("reading the list failed: {e}"))?
        {
            if body.len() + chunk.len() > MAX_TOKEN_BYTES {
                return Err(format!("the list is over {MAX_TOKEN_BYTES} bytes").into());
            }
            body.extend_from_slice(&chunk);
        }
        let jws = std::str::from_utf8(&body).map_err(|_| "the list is not text".to_owned())?;
        self.verify_list(uri, jws.trim(), new_etag, trusted, now_ms)
            .await
            .map(Fetched::New)
    }

    /// A list token as served at `uri` (under trusted prefix `trusted`), verified with
    /// that prefix's keys (refetched once for an unknown `kid`), as it is cached.
    async fn verify_list(
        &self,
        uri: &str,
        jws: &str,
        etag: Option<String>,
        trusted: usize,
        now_ms: i64,
    ) -> Result<Cached, FetchError> {
        let now_s = now_ms.div_euclid(1000);
        let leeway = self.config.leeway_secs;
        let keys = self.list_keys(trusted, false, now_ms).await?;
        let verified = match status_list::verify(jws, &*keys, uri, now_s, leeway) {
            // A key the set lacks: the registry may have rotated it; ask once.
            Err(StatusListError::Jws(TokenError::UnknownKey)) => {
                let keys = self.list_keys(trusted, true, now_ms).await?;
                status_list::verify(jws, &*keys, uri, now_s, leeway)
            }
            other => other,
        };
        let (claims, list) =
            verified.map_err(|e: StatusListError| format!("the list does not verify: {e}"))?;
        let ttl_s = claims.ttl.map_or(DEFAULT_TTL.as_secs(), |t| t);
        Ok(Cached {
            list,
            etag,
            confirmed_ms: now_ms,
            issued_ms: claims.iat.saturating_mul(1000),
            ttl_ms: i64::try_from(ttl_s.saturating_mul(1000)).unwrap_or(i64::MAX),
            exp_s: claims.exp,
            version: claims.extra.get("version").and_then(|v| v.as_u64()),
        })
    }
}

/// Records in `slot` what one fetch (or offer) brought: a new list (unless older than
/// the version cached), a confirmation of the cached one, or why not, which is
/// returned too.
fn store(
    slot: &Slot,
    fetched: Result<Fetched, FetchError>,
    cached_version: Option<u64>,
    now_ms: i64,
) -> Result<(), String> {
    let mut st = slot.write();
    let failed = match fetched {
        Ok(Fetched::New(c)) if c.version < cached_version => format!(
            "the registry served an older version of the list ({:?} after {:?})",
            c.version, cached_version
        ),
        Ok(Fetched::New(c)) => {
            st.list = Some(Arc::new(c));
            st.error = None;
            return Ok(());
        }
        Ok(Fetched::NotModified) => match &st.list {
            Some(c) => {
                st.list = Some(Arc::new(Cached {
                    list: c.list.clone(),
                    etag: c.etag.clone(),
                    confirmed_ms: now_ms,
                    issued_ms: c.issued_ms,
                    ttl_ms: c.ttl_ms,
                    exp_s: c.exp_s,
                    version: c.version,
                }));
                st.error = None;
                return Ok(());
            }
            None => "304 Not Modified for a list not cached".into(),
        },
        Err(e) => {
            if e.unpublished {
                let soon = now_ms.saturating_add(millis(UNPUBLISHED_RETRY));
                st.next_ms = st.next_ms.map(|n| n.min(soon));
            }
            e.reason
        }
    };
    st.error = Some(failed.clone());
    Err(failed)
}

impl Cached {
    /// How old its statuses are: since its `iat`, or since the registry last
    /// confirmed it if that is earlier (a list signed ahead of this clock).
    fn age_ms(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(self.confirmed_ms.min(self.issued_ms))
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Unix time in milliseconds, from the system clock.
pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
