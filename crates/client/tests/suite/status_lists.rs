//! Status lists against a registry fixture: a real axum server on 127.0.0.1:0 that
//! publishes a list in the registry's published format (core `status_list::sign`,
//! `typ statuslist+jwt`, `ETag`, 304 on `If-None-Match`, `Cache-Control`), the
//! token JWKS and, apart, the list key (`/.well-known/status-list-jwks.json`), as
//! the registry publishes them. Time is injected into
//! [`StatusLists::check`] (`now_ms`), so ttl and staleness are tested without
//! sleeping; the layer's own tests use a 1 s ttl.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bonafide_client::receiver::{Config, JwksSource, Receiver, VerifiedAgent};
use bonafide_client::status::{
    ListKeys, StatusCheck, StatusError, StatusListConfig, StatusLists, TrustedLists, WhenStale,
};
use bonafide_core::keys::{Algorithm, Jwks, SigningKey};
use bonafide_core::status_list::{self, Bits, Status, StatusList, StatusListClaims};
use bonafide_core::token::AgentClaims;
use serde_json::{Value, json};

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// What the fixture publishes, and what it saw.
struct Published {
    list: StatusList,
    version: u64,
    ttl: u64,
    /// Signs the list (the registry's list key, or a forger's).
    signer: Arc<SigningKey>,
    /// Answer 500 to every list request.
    failing: bool,
    /// A `sub` other than the list's URI.
    sub: Option<String>,
    /// The `If-None-Match` of the last request.
    if_none_match: Option<String>,
}

#[derive(Clone)]
struct Fixture {
    base: String,
    published: Arc<Mutex<Published>>,
    fetches: Arc<AtomicUsize>,
    not_modified: Arc<AtomicUsize>,
    token_key: Arc<SigningKey>,
    list_key: Arc<SigningKey>,
}

impl Fixture {
    async fn start() -> Self {
        let token_key = Arc::new(SigningKey::generate(Algorithm::EdDSA).unwrap());
        let list_key = Arc::new(SigningKey::generate(Algorithm::EdDSA).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let fx = Fixture {
            base,
            published: Arc::new(Mutex::new(Published {
                list: StatusList::new(Bits::TWO, 1024).unwrap(),
                version: 1,
                ttl: 60,
                signer: list_key.clone(),
                failing: false,
                sub: None,
                if_none_match: None,
            })),
            fetches: Arc::new(AtomicUsize::new(0)),
            not_modified: Arc::new(AtomicUsize::new(0)),
            token_key,
            list_key,
        };
        let app = Router::new()
            .route("/.well-known/jwks.json", get(jwks))
            .route("/.well-known/status-list-jwks.json", get(list_jwks))
            .route("/v1/status-lists/{id}", get(list))
            .with_state(fx.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fx
    }

    fn uri(&self) -> String {
        format!("{}/v1/status-lists/1", self.base)
    }

    fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.base)
    }

    /// Sets entry `idx` and publishes a new version.
    fn set(&self, idx: u64, status: Status) {
        let mut p = self.published.lock().unwrap();
        p.list.set(idx, status).unwrap();
        p.version += 1;
    }

    fn with<R>(&self, f: impl FnOnce(&mut Published) -> R) -> R {
        f(&mut self.published.lock().unwrap())
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// A registry token naming entry `idx` of `uri`: (compact JWS, its claims).
    fn token_at(&self, uri: &str, idx: u64) -> (String, AgentClaims) {
        let t = now_s();
        let claims: AgentClaims = serde_json::from_value(json!({
            "iss": self.base, "sub": "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa",
            "iat": t, "exp": t + 3600, "jti": jti(idx),
            "agent": {"name": "ledger-bot", "issuer": "Apex", "scopes": ["read:x"]},
            "status": {"status_list": {"idx": idx, "uri": uri}},
        }))
        .unwrap();
        let jws = bonafide_core::token::sign(&self.token_key, &claims).unwrap();
        (jws, claims)
    }

    fn token(&self, idx: u64) -> (String, AgentClaims) {
        self.token_at(&self.uri(), idx)
    }
}

async fn jwks(State(fx): State<Fixture>) -> Json<Jwks> {
    Json(Jwks {
        keys: vec![fx.token_key.verifying_key().jwk().clone()],
    })
}

async fn list_jwks(State(fx): State<Fixture>) -> Json<Jwks> {
    Json(Jwks {
        keys: vec![fx.list_key.verifying_key().jwk().clone()],
    })
}

async fn list(State(fx): State<Fixture>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    fx.fetches.fetch_add(1, Ordering::SeqCst);
    let mut p = fx.published.lock().unwrap();
    p.if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if p.failing {
        return (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response();
    }
    if id != "1" {
        let body =
            json!({"error": {"code": "NOT_FOUND", "message": "no such list", "request_id": "r"}});
        return (StatusCode::NOT_FOUND, Json(body)).into_response();
    }
    let etag = format!("\"v{}\"", p.version);
    let cache = format!("max-age={}", p.ttl);
    if p.if_none_match.as_deref() == Some(etag.as_str()) {
        fx.not_modified.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache)],
        )
            .into_response();
    }
    let uri = fx.uri();
    let iat = now_s();
    let mut extra = serde_json::Map::new();
    extra.insert("version".into(), json!(p.version));
    extra.insert("audit".into(), json!({"index": 7, "tree_size": 8}));
    let claims = StatusListClaims {
        iss: Some(fx.base.clone()),
        sub: p.sub.clone().unwrap_or(uri),
        iat,
        exp: Some(iat + 86_400),
        ttl: Some(p.ttl),
        status_list: p.list.encode(),
        extra,
    };
    let jws = status_list::sign(&p.signer, &claims).unwrap();
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                status_list::STATUS_LIST_MEDIA_TYPE.to_owned(),
            ),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache),
        ],
        jws,
    )
        .into_response()
}

fn lists(fx: &Fixture, f: impl FnOnce(StatusListConfig) -> StatusListConfig) -> StatusLists {
    StatusLists::new(f(StatusListConfig::for_registry(&fx.base))).unwrap()
}

/// A token id for entry `idx` (base32: `a`–`z`, `2`–`7`).
fn jti(idx: u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let body: String = (0..26)
        .map(|i| {
            let v = if i < 13 { (idx >> (5 * i)) & 31 } else { 0 };
            char::from(ALPHABET[v as usize])
        })
        .collect();
    format!("tok_{body}")
}

/// Revoked online (the list's next version), refused offline once the cache's ttl is
/// over and the list is fetched again; not before (the cached list is used).
#[tokio::test]
async fn a_revocation_is_seen_at_the_next_fetch_and_suspension_reverses() {
    let fx = Fixture::start().await;
    let t0 = now_s() * 1000;
    let sl = lists(&fx, |c| c);
    let (_, claims) = fx.token(42);
    let ok = sl.check(&claims, t0).await.unwrap();
    assert_eq!(
        ok,
        StatusCheck::Valid {
            age: Duration::ZERO,
            version: Some(1)
        }
    );
    assert!(ok.revocation_checked());
    fx.set(42, Status::Invalid);
    // Within the ttl (60 s): the cached list, no fetch.
    let cached = sl.check(&claims, t0 + 30_000).await.unwrap();
    assert_eq!(cached.age(), Some(Duration::from_secs(30)));
    assert_eq!(fx.fetches(), 1);
    // After it: fetched again, refused with the registry's code.
    let e = sl.check(&claims, t0 + 61_000).await.unwrap_err();
    assert_eq!(e.code(), "TOKEN_REVOKED", "{e}");
    assert!(e.is_refusal());
    assert_eq!(fx.fetches(), 2);

    // Suspension, then reactivation.
    let (_, other) = fx.token(43);
    assert!(sl.check(&other, t0 + 61_000).await.is_ok());
    fx.set(43, Status::Suspended);
    let e = sl.check(&other, t0 + 122_000).await.unwrap_err();
    assert_eq!(e.code(), "AGENT_SUSPENDED", "{e}");
    fx.set(43, Status::Valid);
    let back = sl.check(&other, t0 + 183_000).await.unwrap();
    // Its age counts from its `iat` (signed when the fixture published it, at t0 on
    // the wall clock), not from the fetch.
    assert!(
        matches!(
            back,
            StatusCheck::Valid {
                version: Some(4),
                ..
            }
        ),
        "{back:?}"
    );
    let age = back.age().unwrap();
    assert!(
        age >= Duration::from_secs(182) && age <= Duration::from_secs(184),
        "{age:?}"
    );
    // The revoked token stays refused.
    let e = sl.check(&claims, t0 + 183_000).await.unwrap_err();
    assert_eq!(e.code(), "TOKEN_REVOKED");
}

/// After the ttl the list is asked for with its ETag; a 304 confirms it without a new
/// body (its age still counts from its `iat`).
#[tokio::test]
async fn an_unchanged_list_is_confirmed_by_a_304() {
    let fx = Fixture::start().await;
    let t0 = now_s() * 1000;
    let sl = lists(&fx, |c| c);
    let (_, claims) = fx.token(1);
    sl.check(&claims, t0).await.unwrap();
    assert_eq!(fx.with(|p| p.if_none_match.clone()), None);
    let again = sl.check(&claims, t0 + 61_000).await.unwrap();
    assert_eq!(
        fx.with(|p| p.if_none_match.clone()).as_deref(),
        Some("\"v1\"")
    );
    assert_eq!(fx.not_modified.load(Ordering::SeqCst), 1);
    assert!(
        matches!(
            again,
            StatusCheck::Valid {
                version: Some(1),
                ..
            }
        ),
        "{again:?}"
    );
    let age = again.age().unwrap();
    assert!(
        age >= Duration::from_secs(60) && age <= Duration::from_secs(62),
        "{age:?}"
    );
    // A change after the 304 is a new body again.
    fx.set(1, Status::Invalid);
    let e = sl.check(&claims, t0 + 122_000).await.unwrap_err();
    assert_eq!(e.code(), "TOKEN_REVOKED");
    assert_eq!(fx.not_modified.load(Ordering::SeqCst), 1);
}

/// The registry goes down: the cached list serves until the staleness bound, then
/// the check fails closed (503 code) or, configured so, open (said in the answer).
/// A revoked entry refuses whatever the list's age.
#[tokio::test]
async fn a_stale_list_fails_closed_or_open_as_configured() {
    let fx = Fixture::start().await;
    let t0 = now_s() * 1000;
    let (_, claims) = fx.token(5);
    let (_, revoked) = fx.token(6);
    fx.set(6, Status::Invalid);
    let max = Duration::from_secs(120);
    let closed = lists(&fx, |c| c.max_staleness(max));
    let open = lists(&fx, |c| {
        c.max_staleness(max).when_stale(WhenStale::FailOpen)
    });
    for sl in [&closed, &open] {
        sl.check(&claims, t0).await.unwrap();
    }
    fx.with(|p| p.failing = true);
    for sl in [&closed, &open] {
        // Past the ttl, the refetch fails: the list at hand is within the bound.
        let c = sl.check(&claims, t0 + 90_000).await.unwrap();
        assert_eq!(c.age(), Some(Duration::from_secs(90)));
        assert!(c.revocation_checked());
        let e = sl.check(&revoked, t0 + 200_000).await.unwrap_err();
        assert_eq!(e.code(), "TOKEN_REVOKED");
    }
    let e = closed.check(&claims, t0 + 200_000).await.unwrap_err();
    assert_eq!(e.code(), "STATUS_LIST_STALE");
    assert!(!e.is_refusal());
    assert!(e.to_string().contains("200s old"), "{e}");
    assert!(e.to_string().contains("HTTP 500"), "{e}");
    let c = open.check(&claims, t0 + 200_000).await.unwrap();
    assert!(!c.revocation_checked());
    assert!(
        matches!(&c, StatusCheck::Unchecked { age: Some(a), reason } if a.as_secs() == 200 && reason.contains("HTTP 500")),
        "{c:?}"
    );

    // Never fetched: unavailable, closed or open.
    let cold = lists(&fx, |c| c);
    let e = cold.check(&claims, t0).await.unwrap_err();
    assert_eq!(e.code(), "STATUS_LIST_UNAVAILABLE");
    let cold_open = lists(&fx, |c| c.when_stale(WhenStale::FailOpen));
    let c = cold_open.check(&claims, t0).await.unwrap();
    assert!(
        matches!(c, StatusCheck::Unchecked { age: None, .. }),
        "{c:?}"
    );
}

/// A list URI the token names but this receiver does not trust is never fetched:
/// another port, another path, a path that climbs out, a query, user info, a
/// non-normal form.
#[tokio::test]
async fn a_status_uri_outside_the_registry_is_refused_unfetched() {
    let fx = Fixture::start().await;
    let t0 = now_s() * 1000;
    let elsewhere = Fixture::start().await;
    let sl = lists(&fx, |c| c);
    let host = fx.base.trim_start_matches("http://");
    for uri in [
        elsewhere.uri(),
        format!("{}/v1/other/1", fx.base),
        format!("{}/v1/status-lists/", fx.base),
        format!("{}/v1/status-lists/1/x", fx.base),
        format!("{}/v1/status-lists/../../admin", fx.base),
        format!("{}/v1/status-lists/%2e%2e", fx.base),
        format!("{}/v1/status-lists/1?x=1", fx.base),
        format!("{}/v1/status-lists/1#f", fx.base),
        format!("http://user@{host}/v1/status-lists/1"),
        format!("HTTP://{host}/v1/status-lists/1"),
        format!("https://{host}/v1/status-lists/1"),
        "file:///etc/passwd".to_owned(),
        "not a uri".to_owned(),
    ] {
        let (_, claims) = fx.token_at(&uri, 1);
        let e = sl.check(&claims, t0).await.unwrap_err();
        assert!(matches!(e, StatusError::Untrusted { .. }), "{uri}: {e:?}");
        assert_eq!(e.code(), "STATUS_LIST_UNTRUSTED");
        assert!(e.is_refusal());
    }
    assert_eq!(fx.fetches() + elsewhere.fetches(), 0);
    // An allow-listed prefix is trusted.
    let both = lists(&fx, |c| c.trust(&elsewhere.base));
    let (_, claims) = fx.token_at(&elsewhere.uri(), 1);
    assert!(both.check(&claims, t0).await.is_ok());
    // Each prefix with its own registry's keys: a list of `fx` signed with
    // `elsewhere`'s key does not verify.
    fx.with(|p| p.signer = elsewhere.list_key.clone());
    let (_, claims) = fx.token(1);
    let e = both.check(&claims, t0).await.unwrap_err();
    assert!(e.to_string().contains("does not verify"), "{e}");
    assert_eq!(elsewhere.fetches(), 1);
    // A prefix that is not https, loopback http, or in normal form is refused.
    for bad in [
        "http://registry.example/v1/status-lists/",
        "https://registry.example/v1/status-lists",
        "https://u@registry.example/v1/status-lists/",
        "https://registry.example/v1/status-lists/?x",
    ] {
        let mut c = StatusListConfig::for_registry("https://registry.example");
        c.trusted.push(TrustedLists {
            prefix: bad.to_owned(),
            keys: ListKeys::Url(
                "https://registry.example/.well-known/status-list-jwks.json".into(),
            ),
        });
        assert!(StatusLists::new(c).is_err(), "{bad}");
    }
    // Nor keys over plain http to another host.
    let mut c = StatusListConfig::for_registry("https://registry.example");
    c.trusted[0].keys =
        ListKeys::Url("http://registry.example/.well-known/status-list-jwks.json".into());
    assert!(StatusLists::new(c).is_err());
    // A prefix given as such takes its registry's list keys.
    let t = TrustedLists::prefix("https://r.example/base/v1/status-lists/").unwrap();
    assert_eq!(
        t.keys,
        ListKeys::Url("https://r.example/base/.well-known/status-list-jwks.json".into())
    );
    assert!(TrustedLists::prefix("https://r.example/lists/").is_none());
}

/// A list signed by a key outside the JWKS, one for another URI (`sub`), a list
/// whose index is short, a 404: none is believed.
#[tokio::test]
async fn forged_or_foreign_lists_are_not_believed() {
    let fx = Fixture::start().await;
    let t0 = now_s() * 1000;
    let (_, claims) = fx.token(3);
    let forger = Arc::new(SigningKey::generate(Algorithm::EdDSA).unwrap());
    fx.with(|p| p.signer = forger.clone());
    let e = lists(&fx, |c| c).check(&claims, t0).await.unwrap_err();
    assert_eq!(e.code(), "STATUS_LIST_UNAVAILABLE");
    assert!(e.to_string().contains("does not verify"), "{e}");
    // The token key does not sign lists (the list keys are a set of their own).
    fx.with(|p| p.signer = fx.token_key.clone());
    let e = lists(&fx, |c| c).check(&claims, t0).await.unwrap_err();
    assert!(e.to_string().contains("does not verify"), "{e}");
    // The list key, but a list for another URI (`sub`).
    fx.with(|p| {
        p.signer = fx.list_key.clone();
        p.sub = Some(format!("{}/v1/status-lists/2", fx.base));
    });
    let e = lists(&fx, |c| c).check(&claims, t0).await.unwrap_err();
    assert!(e.to_string().contains("`sub`"), "{e}");
    fx.with(|p| p.sub = None);
    // An index beyond the list refuses the token (the draft: MUST reject).
    let (_, beyond) = fx.token(1_000_000);
    let e = lists(&fx, |c| c).check(&beyond, t0).await.unwrap_err();
    assert_eq!(e.code(), "TOKEN_INVALID");
    // A list the registry does not know.
    let (_, unknown) = fx.token_at(&format!("{}/v1/status-lists/2", fx.base), 1);
    let e = lists(&fx, |c| c).check(&unknown, t0).await.unwrap_err();
    assert!(e.to_string().contains("404"), "{e}");
}

/// Many checks at once on a cold cache make one fetch; a failing registry is asked
/// at most once per `min_refetch` however many requests come.
#[tokio::test]
async fn no_fetch_storm() {
    let fx = Fixture::start().await;
    let t0 = now_s() * 1000;
    let sl = Arc::new(lists(&fx, |c| c));
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (sl, (_, claims)) = (sl.clone(), fx.token(i));
        tasks.push(tokio::spawn(async move { sl.check(&claims, t0).await }));
    }
    for t in tasks {
        assert!(t.await.unwrap().is_ok());
    }
    assert_eq!(fx.fetches(), 1);
    fx.with(|p| p.failing = true);
    let (_, claims) = fx.token(1);
    for step in 0..20 {
        // Past the ttl; within 5 s of each other.
        let r = sl.check(&claims, t0 + 61_000 + step * 100).await;
        assert!(r.is_ok(), "the cached list is within its bound");
    }
    assert_eq!(fx.fetches(), 2);
    sl.check(&claims, t0 + 67_000).await.unwrap();
    assert_eq!(fx.fetches(), 3);
}

async fn hello(agent: VerifiedAgent) -> Json<Value> {
    Json(json!({
        "revocation_checked": agent.revocation_checked,
        "age": agent.status_list.as_ref().and_then(|s| s.age()).map(|a| a.as_secs()),
        "status": agent.status_list.map(|s| format!("{s:?}")),
    }))
}

async fn layer(config: Config) -> String {
    let receiver = Receiver::new(config).await.unwrap();
    let app = Router::new()
        .route("/hello", get(hello))
        .layer(receiver.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("{base}/hello")
}

async fn call(url: &str, token: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let st = resp.status().as_u16();
    (st, resp.json().await.unwrap_or(Value::Null))
}

/// The layer with a JWKS URL uses the registry's lists by default: revocation
/// checked, the age handed to the handler; revoked and suspended refused with the
/// registry's codes after the next fetch (ttl 1 s); a token naming a list elsewhere
/// refused; a stale list a 503 with its code, or a pass saying so when failing open.
#[tokio::test]
async fn the_layer_refuses_revoked_tokens_offline() {
    let fx = Fixture::start().await;
    fx.with(|p| p.ttl = 1);
    let url = layer(Config::offline(
        JwksSource::url(fx.jwks_url()),
        fx.base.clone(),
    ))
    .await;
    let (token, _) = fx.token(9);
    let (st, v) = call(&url, &token).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["revocation_checked"], true);
    assert!(v["age"].as_u64().is_some(), "{v}");
    fx.set(9, Status::Suspended);
    // The list is fetched again once its 1 s ttl is over (at most every 5 s: the
    // first fetch was made at start, so wait past both).
    tokio::time::sleep(Duration::from_millis(5_100)).await;
    let (st, v) = call(&url, &token).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (401, Some("AGENT_SUSPENDED")),
        "{v}"
    );
    let (other, _) = fx.token_at("http://10.0.0.1/v1/status-lists/1", 9);
    let (st, v) = call(&url, &other).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (401, Some("STATUS_LIST_UNTRUSTED")),
        "{v}"
    );

    // Stale: a receiver whose bound is 1 s, a registry that went down.
    let closed = layer(
        Config::offline(JwksSource::url(fx.jwks_url()), fx.base.clone()).status_lists(
            StatusListConfig::for_registry(&fx.base)
                .max_staleness(Duration::from_secs(1))
                .min_refetch(Duration::from_millis(1)),
        ),
    )
    .await;
    let open = layer(
        Config::offline(JwksSource::url(fx.jwks_url()), fx.base.clone()).status_lists(
            StatusListConfig::for_registry(&fx.base)
                .max_staleness(Duration::from_secs(1))
                .when_stale(WhenStale::FailOpen),
        ),
    )
    .await;
    let (fine, _) = fx.token(10);
    for u in [&closed, &open] {
        let (st, v) = call(u, &fine).await;
        assert_eq!((st, &v["revocation_checked"]), (200, &json!(true)), "{v}");
    }
    fx.with(|p| p.failing = true);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let (st, v) = call(&closed, &fine).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (503, Some("STATUS_LIST_STALE")),
        "{v}"
    );
    let (st, v) = call(&open, &fine).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["revocation_checked"], false);
    assert!(v["status"].as_str().unwrap().contains("Unchecked"), "{v}");

    // A static JWKS without status lists: not checked, as before.
    let jwks = Jwks {
        keys: vec![fx.token_key.verifying_key().jwk().clone()],
    };
    let plain = layer(Config::offline(JwksSource::Static(jwks), fx.base.clone())).await;
    let (st, v) = call(&plain, &fine).await;
    assert_eq!(
        (st, &v["revocation_checked"], &v["status"]),
        (200, &json!(false), &Value::Null)
    );
}

/// The README's status-list snippet, exactly as written between its markers.
pub(crate) fn readme_snippet() -> String {
    let readme = std::fs::read_to_string(crate::middleware::repo_root().join("README.md")).unwrap();
    let start = "<!-- status-list-snippet -->\n```python\n";
    let from = readme.find(start).expect("the README's snippet marker") + start.len();
    let len = readme[from..]
        .find("```\n<!-- /status-list-snippet -->")
        .expect("the snippet's end marker");
    readme[from..from + len].to_owned()
}

/// Runs the README's snippet with the interop venv's PyJWT: `status_of(token)` for
/// each token, with `REGISTRY` set to `registry`; one line per token, the status or
/// the exception's name.
pub(crate) fn python_status_of(registry: &str, tokens: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let snippet = dir.path().join("snippet.py");
    std::fs::write(&snippet, readme_snippet()).unwrap();
    let driver = r#"
import sys
ns = {}
exec(open(sys.argv[1]).read(), ns)
ns["REGISTRY"] = sys.argv[2]
for t in sys.argv[3:]:
    try:
        print(ns["status_of"](t))
    except Exception as e:
        print(type(e).__name__)
"#;
    let out = std::process::Command::new(crate::middleware::interop_python())
        .args(["-c", driver])
        .arg(&snippet)
        .arg(registry)
        .args(tokens)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The README's PyJWT snippet against the fixture: valid, then revoked and
/// suspended from the next fetch; a token naming a list elsewhere is not fetched;
/// a forged list does not verify.
#[tokio::test]
async fn the_readme_s_python_snippet_reads_the_list() {
    let fx = Fixture::start().await;
    let (a, _) = fx.token(11);
    let (b, _) = fx.token(12);
    let (elsewhere, _) = fx.token_at("http://10.0.0.1/v1/status-lists/1", 11);
    let base = fx.base.clone();
    let run = move |tokens: Vec<String>| {
        let base = base.clone();
        tokio::task::spawn_blocking(move || {
            let t: Vec<&str> = tokens.iter().map(String::as_str).collect();
            python_status_of(&base, &t)
        })
    };
    let got = run(vec![a.clone(), b.clone(), elsewhere]).await.unwrap();
    assert_eq!(got, ["0", "0", "ValueError"]);
    let fetched = fx.fetches();
    fx.set(11, Status::Invalid);
    fx.set(12, Status::Suspended);
    let got = run(vec![a.clone(), b.clone()]).await.unwrap();
    assert_eq!(got, ["1", "2"]);
    assert_eq!(fx.fetches(), fetched + 2);
    let forger = Arc::new(SigningKey::generate(Algorithm::EdDSA).unwrap());
    fx.with(|p| p.signer = forger);
    let got = run(vec![a]).await.unwrap();
    assert_eq!(got, ["PyJWKClientError"]);
}

/// A list the registry keeps answering 304 for but never re-signs (a publisher that
/// stopped, or a cache replaying it) grows old by its `iat`: past the staleness bound
/// it no longer vouches for a valid entry, however recent the 304.
#[tokio::test]
async fn a_list_confirmed_by_304s_but_never_resigned_goes_stale() {
    let fx = Fixture::start().await;
    let t0 = now_s() * 1000;
    let sl = lists(&fx, |c| c);
    let (_, claims) = fx.token(5);
    sl.check(&claims, t0).await.unwrap();
    // 9 minutes on: refetched, 304, still within the 10-minute bound.
    assert!(sl.check(&claims, t0 + 9 * 60_000).await.is_ok());
    // 11 minutes on: refetched, 304 again, but signed 11 minutes ago: stale.
    let e = sl.check(&claims, t0 + 11 * 60_000).await.unwrap_err();
    assert_eq!(e.code(), "STATUS_LIST_STALE", "{e}");
    assert!(fx.not_modified.load(Ordering::SeqCst) >= 2);
}

/// A list as the fixture would publish it, signed by `signer`, as of `iat_ms`.
fn signed_list(fx: &Fixture, version: u64, signer: &SigningKey, iat_ms: i64) -> String {
    let p = fx.published.lock().unwrap();
    let mut extra = serde_json::Map::new();
    extra.insert("version".into(), json!(version));
    let iat = iat_ms / 1000;
    let claims = StatusListClaims {
        iss: Some(fx.base.clone()),
        sub: fx.uri(),
        iat,
        exp: Some(iat + 86_400),
        ttl: Some(p.ttl),
        status_list: p.list.encode(),
        extra,
    };
    status_list::sign(signer, &claims).unwrap()
}

/// A list handed to the cache (`StatusLists::offer`) is verified as a fetched one and
/// then used as one: no fetch within its ttl; an older version, a forged list or an
/// untrusted URI is refused, and a refused offer holds back fetching for
/// `min_refetch` exactly as a fetch that brought it would.
#[tokio::test]
async fn an_offered_list_is_verified_and_used_as_a_fetched_one() {
    let fx = Fixture::start().await;
    let t0 = now_s() * 1000;
    fx.set(3, Status::Invalid);
    let cache = lists(&fx, |c| c);
    let v2 = signed_list(&fx, 2, &fx.list_key, t0);
    let list = cache.offer(&fx.uri(), &v2, t0).await.unwrap();
    assert_eq!(list.get(3).unwrap(), Status::Invalid);
    let (_, revoked) = fx.token(3);
    let (_, valid) = fx.token(4);
    let e = cache.check(&revoked, t0).await.unwrap_err();
    assert_eq!(e.code(), "TOKEN_REVOKED");
    assert!(matches!(
        cache.check(&valid, t0 + 1_000).await.unwrap(),
        StatusCheck::Valid {
            version: Some(2),
            ..
        }
    ));
    assert_eq!(fx.fetches(), 0, "an offered list is not fetched again");
    // An older version is refused; the newer one stays.
    let v1 = signed_list(&fx, 1, &fx.list_key, t0);
    let e = cache.offer(&fx.uri(), &v1, t0).await.unwrap_err();
    assert!(matches!(e, StatusError::Invalid { .. }), "{e:?}");
    assert!(e.to_string().contains("older"), "{e}");
    assert!(matches!(
        cache.check(&valid, t0).await.unwrap(),
        StatusCheck::Valid {
            version: Some(2),
            ..
        }
    ));
    // A URI outside the trusted prefix: refused before anything else.
    let e = cache
        .offer("https://elsewhere.example/v1/status-lists/1", &v2, t0)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "STATUS_LIST_UNTRUSTED");
    // A forged list on a cold cache: refused, and the token fails closed with that
    // reason, unfetched, until `min_refetch` (5 s) has passed; then it is fetched.
    let cold = lists(&fx, |c| c);
    let forger = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let e = cold
        .offer(&fx.uri(), &signed_list(&fx, 2, &forger, t0), t0)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "STATUS_LIST_UNAVAILABLE");
    let e = cold.check(&valid, t0 + 1_000).await.unwrap_err();
    assert_eq!(e.code(), "STATUS_LIST_UNAVAILABLE");
    assert!(e.to_string().contains("does not verify"), "{e}");
    assert_eq!(fx.fetches(), 0);
    assert!(cold.check(&valid, t0 + 5_000).await.is_ok());
    assert_eq!(fx.fetches(), 1);
}
