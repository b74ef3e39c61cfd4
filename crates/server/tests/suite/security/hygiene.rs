//! Rule (review item 9, hygiene): an answer that carries a secret or a token is never
//! kept by a cache, and API answers default to `no-store` (only public documents are
//! cacheable); list cursors and request ids reveal no registry-wide counts; a revoked
//! token leaves memory once it is past `exp` + leeway, and the periodic reload reads
//! only what changed while a revocation committed by another process still arrives.

use std::path::Path;
use std::time::Duration;

use bonafide_core::audit::{Actor, AuditEntry, EventType};
use bonafide_core::b64;
use bonafide_core::ids::{AgentId, IssuerId, TokenId};
use bonafide_core::keys::{Algorithm, SigningKey};
use bonafide_server::Config;
use bonafide_store::{SqliteStore, Store, TokenRecord};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::common::{self, Harness};

/// An answer with its headers.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn cache_control(&self) -> &str {
        self.headers
            .get("cache-control")
            .map_or("", |v| v.to_str().unwrap())
    }
}

async fn send(
    h: &Harness,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let url = format!("{}{path}", h.base);
    let mut req = match method {
        "GET" => h.http.get(&url),
        "POST" => h.http.post(&url),
        "PUT" => h.http.put(&url),
        _ => unreachable!(),
    };
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        headers,
        body,
    }
}

/// A fresh agent public key as a JWK.
fn agent_jwk() -> Value {
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    serde_json::to_value(key.verifying_key().jwk()).unwrap()
}

/// Asserts `no-store` exactly, naming the request.
fn assert_no_store(what: &str, a: &Answer) {
    assert_eq!(
        a.cache_control(),
        "no-store",
        "{what}: status {}, body {}",
        a.status,
        a.body
    );
}

/// Asserts a cache may keep the answer for anyone: a Cache-Control that is neither
/// `no-store` nor `private`.
fn assert_public(what: &str, a: &Answer) {
    assert!(a.status.is_success(), "{what}: {} {}", a.status, a.body);
    let cc = a.cache_control();
    assert!(
        !cc.is_empty() && !cc.contains("no-store") && !cc.contains("private"),
        "{what}: Cache-Control {cc:?}"
    );
}

#[tokio::test]
async fn answers_carrying_a_secret_or_a_token_are_no_store() {
    let h = common::start().await;
    let a = send(
        &h,
        "POST",
        "/v1/issuers",
        Some(&h.admin),
        Some(json!({"name": "nostore.example"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert!(a.body["api_key"].is_string());
    assert_no_store("POST /v1/issuers", &a);
    let key = a.body["api_key"].as_str().unwrap().to_owned();

    let a = send(
        &h,
        "POST",
        "/v1/receivers",
        Some(&h.admin),
        Some(json!({"name": "api.nostore.example"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert!(a.body["api_key"].is_string());
    assert_no_store("POST /v1/receivers", &a);

    let a = send(
        &h,
        "POST",
        "/v1/agents/register",
        Some(&key),
        Some(json!({"name": "Bot", "scopes": ["read:x"], "public_key": agent_jwk()})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert!(a.body["token"].is_string());
    assert_no_store("POST /v1/agents/register", &a);
    let agent = a.body["agent_id"].as_str().unwrap().to_owned();

    let a = send(
        &h,
        "POST",
        &format!("/v1/agents/{agent}/issue-token"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert!(a.body["token"].is_string());
    assert_no_store("POST /v1/agents/{id}/issue-token", &a);

    let a = send(
        &h,
        "PUT",
        &format!("/v1/agents/{agent}/keys"),
        Some(&key),
        Some(json!({"public_key": agent_jwk()})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body["token"].is_string());
    assert_no_store("PUT /v1/agents/{id}/keys", &a);

    let a = send(&h, "POST", "/v1/admin/keys/rotate", Some(&h.admin), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_no_store("POST /v1/admin/keys/rotate", &a);
}

#[tokio::test]
async fn api_answers_default_to_no_store() {
    let h = common::start().await;
    let key = h.issuer("default.example").await;
    let reg = h
        .register(&key, json!({"name": "Bot", "scopes": ["read:x"]}))
        .await;
    let agent = reg["agent_id"].as_str().unwrap();
    let token = reg["token"].as_str().unwrap();

    let cases: Vec<(&str, Answer)> = vec![
        (
            "GET /v1/agents",
            send(&h, "GET", "/v1/agents", Some(&key), None).await,
        ),
        (
            "GET /v1/agents/{id}",
            send(&h, "GET", &format!("/v1/agents/{agent}"), Some(&key), None).await,
        ),
        (
            "POST /v1/verify",
            send(
                &h,
                "POST",
                "/v1/verify",
                None,
                Some(json!({"token": token})),
            )
            .await,
        ),
        (
            "GET /v1/verify/{token}",
            send(&h, "GET", &format!("/v1/verify/{token}"), None, None).await,
        ),
        (
            "GET /v1/audit/entries (caller-dependent)",
            send(&h, "GET", "/v1/audit/entries?start=0", Some(&h.admin), None).await,
        ),
        (
            "GET /v1/health",
            send(&h, "GET", "/v1/health", None, None).await,
        ),
        ("401", send(&h, "GET", "/v1/agents", None, None).await),
        (
            "404 of the fallback",
            send(&h, "GET", "/v1/no-such-endpoint", None, None).await,
        ),
        ("405", send(&h, "GET", "/v1/issuers", None, None).await),
        (
            "404 of a public route (did.json of no agent)",
            send(
                &h,
                "GET",
                "/agents/agt_aaaaaaaaaaaaaaaaaaaaaaaaaa/did.json",
                None,
                None,
            )
            .await,
        ),
    ];
    for (what, a) in &cases {
        assert_no_store(what, a);
    }
}

/// The audit log's size now (the latest checkpoint may be older): its entries.
async fn log_size(h: &Harness) -> u64 {
    let a = send(h, "GET", "/v1/audit/entries?start=0", None, None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body["entries"].as_array().unwrap().len() as u64
}

#[tokio::test]
async fn public_answers_are_cacheable() {
    let h = common::start().await;
    let key = h.issuer("public.example").await;
    let reg = h
        .register(
            &key,
            json!({"name": "Bot", "scopes": ["read:x"], "public_key": agent_jwk()}),
        )
        .await;
    let agent = reg["agent_id"].as_str().unwrap().to_owned();
    let size = log_size(&h).await;
    assert!((2..256).contains(&size), "{size}");

    for path in [
        "/.well-known/jwks.json".to_owned(),
        "/.well-known/public-key.pem".to_owned(),
        "/.well-known/bonafide-configuration".to_owned(),
        "/v1/audit/checkpoint".to_owned(),
        format!("/v1/audit/tile/0/000.p/{size}"),
        "/v1/audit/proof/inclusion?index=0".to_owned(),
        format!("/v1/audit/proof/consistency?first=1&second={size}"),
        "/v1/audit/proof/bundle?index=0".to_owned(),
        format!("/agents/{agent}/did.json"),
        format!("/agents/{agent}/.well-known/http-message-signatures-directory"),
        "/v1/scopes".to_owned(),
        "/openapi.json".to_owned(),
    ] {
        let a = send(&h, "GET", &path, None, None).await;
        assert_public(&path, &a);
    }
}

#[tokio::test]
async fn authenticated_audit_answers_are_not_publicly_cacheable() {
    let h = common::start().await;
    let key = h.issuer("private.example").await;
    h.register(&key, json!({"name": "Bot", "scopes": ["read:x"]}))
        .await;
    let size = log_size(&h).await;
    // An entry bundle needs a key: only the caller's own cache may keep it.
    let path = format!("/v1/audit/tile/entries/000.p/{size}");
    let a = send(&h, "GET", &path, Some(&h.admin), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let cc = a.cache_control();
    assert!(cc.contains("private") && !cc.contains("public"), "{cc:?}");
    // A proof bundle that carries the entry (the caller may read it) is not stored.
    let a = send(
        &h,
        "GET",
        "/v1/audit/proof/bundle?index=0",
        Some(&h.admin),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body.as_str().unwrap().contains("\nextra "), "{}", a.body);
    assert_no_store("proof bundle with its entry", &a);
}

/// Registers `n` agents for `key`.
async fn register_many(h: &Harness, key: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let v = h
            .register(
                key,
                json!({"name": format!("Bot {i}"), "scopes": ["read:x"]}),
            )
            .await;
        ids.push(v["agent_id"].as_str().unwrap().to_owned());
    }
    ids
}

async fn list(h: &Harness, key: &str, query: &str) -> Answer {
    send(h, "GET", &format!("/v1/agents?{query}"), Some(key), None).await
}

fn assert_bad_cursor(what: &str, a: &Answer) {
    assert!(
        a.status == StatusCode::BAD_REQUEST || a.status == StatusCode::UNPROCESSABLE_ENTITY,
        "{what}: {} {}",
        a.status,
        a.body
    );
    let message = a.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("cursor"), "{what}: {}", a.body);
}

#[tokio::test]
async fn list_cursors_reveal_no_counts_and_tampered_ones_are_refused() {
    let h = common::start().await;
    let a = h.issuer("cursor-a.example").await;
    let b = h.issuer("cursor-b.example").await;
    // B's nine agents come first: A's are the registry's 10th and 11th and 12th.
    register_many(&h, &b, 9).await;
    let mine = register_many(&h, &a, 3).await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut cursors = Vec::new();
    loop {
        let query = match &cursor {
            Some(c) => format!("limit=1&cursor={c}"),
            None => "limit=1".to_owned(),
        };
        let page = list(&h, &a, &query).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for agent in page.body["agents"].as_array().unwrap() {
            seen.push(agent["agent_id"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => {
                cursors.push(c.to_owned());
                cursor = Some(c.to_owned());
            }
            None => break,
        }
    }
    assert_eq!(seen, mine);
    assert_eq!(cursors.len(), 2);
    // The cursors after A's 1st and 2nd agents hold no registry-wide position (10,
    // 11): each decodes to the id of the last agent shown and nothing else. (The
    // base64 text itself is not searched for the digits: random id bytes encode to
    // "10" or "11" now and then, which says nothing.)
    for ((c, position), last) in cursors.iter().zip(["10", "11"]).zip(&seen) {
        let decoded = b64::decode(c)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        assert_eq!(&decoded, last, "cursor {c:?} holds more than the last id");
        assert!(
            !decoded.contains(position),
            "cursor {c:?} ({decoded:?}) shows the position {position}"
        );
    }

    // Tampered, forged, garbage or another issuer's cursors are refused cleanly.
    let good = &cursors[0];
    let mut flipped: Vec<char> = good.chars().collect();
    let last = flipped.len() - 4;
    flipped[last] = if flipped[last] == 'A' { 'B' } else { 'A' };
    let flipped: String = flipped.into_iter().collect();
    for (what, bad) in [
        ("garbage", "!!not-a-cursor!!".to_owned()),
        ("flipped", flipped),
        ("a forged position", b64::encode(b"a10")),
        ("a forged number", b64::encode(&10u64.to_be_bytes())),
        (
            "an unknown agent",
            b64::encode(b"agt_aaaaaaaaaaaaaaaaaaaaaaaaaa"),
        ),
        ("empty", String::new()),
    ] {
        let page = list(&h, &a, &format!("cursor={bad}")).await;
        assert_bad_cursor(what, &page);
    }
    let page = list(&h, &b, &format!("cursor={good}")).await;
    assert_bad_cursor("another issuer's cursor", &page);
}

#[tokio::test]
async fn request_ids_are_not_sequential() {
    let h = common::start().await;
    let other = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..16 {
        let client = if i % 2 == 0 { &h.http } else { &other };
        let resp = client
            .get(format!("{}/v1/health", h.base))
            .send()
            .await
            .unwrap();
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        ids.push(id.strip_prefix("req_").unwrap().to_owned());
    }
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), ids.len(), "{ids:?}");
    // A counter, even behind a random prefix, shows in a long shared start.
    for pair in ids.windows(2) {
        let shared = pair[0]
            .chars()
            .zip(pair[1].chars())
            .take_while(|(a, b)| a == b)
            .count();
        assert!(shared < 8, "consecutive ids {pair:?} share {shared} chars");
    }
}

/// A second handle on the server's database: another process writing behind its back.
async fn other_process(h: &Harness) -> SqliteStore {
    SqliteStore::open(Path::new(&h.db_path).parent().unwrap())
        .await
        .unwrap()
}

fn audit(event: EventType, jti: Option<&TokenId>) -> bonafide_store::AuditRecord {
    let mut entry = AuditEntry::new(event, bonafide_server::time::now_ms(), Actor::Registry);
    entry.jti = jti.map(ToString::to_string);
    bonafide_server::audit::record(&entry, None, None).unwrap()
}

/// The `jti` of a compact JWS, unverified.
fn jti_of(token: &str) -> TokenId {
    let payload = b64::decode(token.split('.').nth(1).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&payload).unwrap();
    TokenId::try_from(claims["jti"].as_str().unwrap()).unwrap()
}

fn fast_refresh() -> Config {
    Config {
        key_refresh: Duration::from_millis(100),
        signing_alg: Algorithm::EdDSA,
        ..common::config()
    }
}

/// Waits until `done` holds (at most 10 s: many refresh periods).
async fn eventually<F: AsyncFn() -> bool>(what: &str, done: F) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn revoked_tokens_leave_memory_once_past_exp_and_leeway() {
    let h = common::start_with_config(fast_refresh()).await;
    let issuer = h.issuer_full("expiry.example").await;
    let reg = h
        .register(&issuer.key, json!({"name": "Bot", "scopes": ["read:x"]}))
        .await;
    let agent = AgentId::try_from(reg["agent_id"].as_str().unwrap()).unwrap();
    let live_token = reg["token"].as_str().unwrap().to_owned();
    let live = jti_of(&live_token);

    // A token that expired (past `exp` + leeway) an hour ago, recorded behind the
    // server's back, then revoked through the API like any other.
    let store = other_process(&h).await;
    let now = common::now_s();
    let expired = TokenId::from_random(common::rand20()[..16].try_into().unwrap());
    store
        .record_token(
            &TokenRecord {
                jti: expired.clone(),
                agent_id: agent.clone(),
                issuer_id: IssuerId::try_from(issuer.id.as_str()).unwrap(),
                kid: "k".into(),
                issued_at_s: now - 7200,
                expires_at_s: now - 3600,
                revoked_at_ms: None,
            },
            &audit(EventType::TokenIssued, Some(&expired)),
        )
        .await
        .unwrap();
    for jti in [&expired, &live] {
        let (st, v) = h
            .call(
                "POST",
                "/v1/tokens/revoke",
                Some(&issuer.key),
                Some(json!({"jti": jti.to_string()})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    assert!(h.state.snapshot().revoked(&agent, &live).is_some());
    // The refresh forgets the dead token and does not read it back.
    eventually("the expired token's revocation leaves memory", async || {
        h.state.snapshot().revoked(&agent, &expired).is_none()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(h.state.snapshot().revoked(&agent, &expired).is_none());
    assert!(h.state.snapshot().revoked(&agent, &live).is_some());
    assert_eq!(
        h.verify_token(&live_token).await["error"]["code"],
        "TOKEN_REVOKED"
    );

    // Nor does a restart load it; the live one stays revoked.
    let h = h.restart().await;
    assert!(h.state.snapshot().revoked(&agent, &expired).is_none());
    assert!(h.state.snapshot().revoked(&agent, &live).is_some());
    assert_eq!(
        h.verify_token(&live_token).await["error"]["code"],
        "TOKEN_REVOKED"
    );
}

#[tokio::test]
async fn a_revocation_committed_by_another_process_arrives_within_a_refresh() {
    let h = common::start_with_config(fast_refresh()).await;
    let issuer = h.issuer_full("elsewhere.example").await;
    let issuer_id = IssuerId::try_from(issuer.id.as_str()).unwrap();
    let first = h
        .register(&issuer.key, json!({"name": "Bot", "scopes": ["read:x"]}))
        .await;
    let agent = first["agent_id"].as_str().unwrap().to_owned();
    let (st, second) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent}/issue-token"),
            Some(&issuer.key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{second}");
    let other = h
        .register(&issuer.key, json!({"name": "Other", "scopes": ["read:x"]}))
        .await;
    let tokens = [
        first["token"].as_str().unwrap().to_owned(),
        second["token"].as_str().unwrap().to_owned(),
        other["token"].as_str().unwrap().to_owned(),
    ];
    for t in &tokens {
        assert_eq!(h.verify_token(t).await["valid"], true);
    }
    let revoked = async |t: &str| h.verify_token(t).await["error"]["code"] == "TOKEN_REVOKED";

    let store = other_process(&h).await;
    // One token, then (after the reload has moved past it) another token and an agent.
    let jti = jti_of(&tokens[0]);
    store
        .revoke_token(
            &issuer_id,
            &jti,
            bonafide_server::time::now_ms(),
            &audit(EventType::TokenRevoked, Some(&jti)),
        )
        .await
        .unwrap();
    eventually("a token revoked elsewhere is refused", async || {
        revoked(&tokens[0]).await
    })
    .await;
    assert_eq!(h.verify_token(&tokens[1]).await["valid"], true);

    let jti = TokenId::try_from(second["jti"].as_str().unwrap()).unwrap();
    store
        .revoke_token(
            &issuer_id,
            &jti,
            bonafide_server::time::now_ms(),
            &audit(EventType::TokenRevoked, Some(&jti)),
        )
        .await
        .unwrap();
    let other_id = AgentId::try_from(other["agent_id"].as_str().unwrap()).unwrap();
    store
        .revoke_agent(
            &issuer_id,
            &other_id,
            Some("elsewhere"),
            bonafide_server::time::now_ms(),
            &audit(EventType::AgentRevoked, None),
        )
        .await
        .unwrap();
    eventually("a later token revocation arrives", async || {
        revoked(&tokens[1]).await
    })
    .await;
    eventually("an agent revoked elsewhere is refused", async || {
        revoked(&tokens[2]).await
    })
    .await;
}
