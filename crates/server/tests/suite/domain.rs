//! Domain-verified issuers end to end over HTTP (issue 6, item 3): a local JWKS
//! server on 127.0.0.1, reached only with the test-only
//! `Config::allow_insecure_loopback_fetch` switch; without it, loopback, private and
//! plain-http URLs are refused before any connection.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bonafide_core::domain_proof::{self, DomainProofClaims};
use bonafide_core::keys::{Algorithm, SigningKey};
use bonafide_server::Config;
use bonafide_server::fetch::{self, FetchError, FetchLimits};
use common::{Harness, now_s, start_with_config};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the local JWKS server answers.
#[derive(Clone)]
pub(crate) enum Answer {
    /// 200 with this JSON body.
    Json(String),
    /// 302 to this location.
    Redirect(String),
    /// Waits this long, then answers 200 with this body.
    Slow(Duration, String),
    /// 200 with a body of this many bytes and no `Content-Length` (read to close).
    Endless(usize),
}

/// A local HTTP server that counts the connections it accepted.
pub(crate) struct JwksServer {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl JwksServer {
    pub(crate) async fn start(answer: Answer) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&connections);
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let json = |body: &str| {
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    };
                    match answer {
                        Answer::Json(body) => {
                            let _ = sock.write_all(json(&body).as_bytes()).await;
                        }
                        Answer::Redirect(to) => {
                            let r = format!(
                                "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            );
                            let _ = sock.write_all(r.as_bytes()).await;
                        }
                        Answer::Slow(wait, body) => {
                            tokio::time::sleep(wait).await;
                            let _ = sock.write_all(json(&body).as_bytes()).await;
                        }
                        Answer::Endless(n) => {
                            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"keys\":[],\"pad\":\"";
                            if sock.write_all(head.as_bytes()).await.is_err() {
                                return;
                            }
                            let block = vec![b'a'; 16 * 1024];
                            let mut sent = 0;
                            while sent < n {
                                if sock.write_all(&block).await.is_err() {
                                    return;
                                }
                                sent += block.len();
                            }
                            let _ = sock.write_all(b"\"}").await;
                        }
                    }
                    let _ = sock.shutdown().await;
                });
            }
        });
        JwksServer { port, connections }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/.well-known/jwks.json", self.port)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

pub(crate) fn test_switch() -> Config {
    Config {
        allow_insecure_loopback_fetch: true,
        jwks_fetch_timeout: Duration::from_millis(1500),
        jwks_fetch_max_bytes: 64 * 1024,
        ..common::config()
    }
}

fn production() -> Config {
    Config {
        jwks_fetch_timeout: Duration::from_millis(1500),
        ..common::config()
    }
}

/// An issuer with one registered Ed25519 key: its API key, id and signing key.
pub(crate) struct Iss {
    pub(crate) key: String,
    pub(crate) id: String,
    pub(crate) sk: SigningKey,
}

pub(crate) async fn issuer_with_key(h: &Harness, name: &str) -> Iss {
    let (st, v) = h
        .call(
            "POST",
            "/v1/issuers",
            Some(&h.admin),
            Some(json!({"name": name})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let key = v["api_key"].as_str().unwrap().to_owned();
    let id = v["issuer_id"].as_str().unwrap().to_owned();
    let sk = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let (st, v) = h.add_issuer_key(&key, &id, &sk).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    Iss { key, id, sk }
}

/// A domain proof signed by `sk` with these claims.
fn proof_with(sk: &SigningKey, iss: &str, domain: &str, aud: &str, iat: i64) -> String {
    let claims = DomainProofClaims {
        iss: iss.into(),
        domain: domain.into(),
        aud: aud.into(),
        iat,
        jti: None,
    };
    domain_proof::sign(sk, &claims).unwrap()
}

/// `iss`'s proof for `domain` at this registry, now, signed by its registered key.
pub(crate) fn proof(h: &Harness, iss: &Iss, domain: &str) -> String {
    proof_with(
        &iss.sk,
        &iss.id,
        domain,
        &h.state.config.public_url,
        now_s(),
    )
}

/// A JWKS document holding these keys' public halves.
pub(crate) fn jwks(keys: &[&SigningKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.verifying_key().jwk()).collect::<Vec<_>>()}).to_string()
}

pub(crate) async fn verify_domain(
    h: &Harness,
    key: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    h.call("POST", "/v1/issuer/verify-domain", key, Some(body))
        .await
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or_default()
}

/// Asserts that `text` names no IP address (v4 or v6, in any word of it).
fn assert_no_address(text: &str) {
    for word in text.split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':')) {
        let word = word.trim_matches(|c| c == '.' || c == ':');
        let bare = word.strip_prefix("::ffff:").unwrap_or(word);
        assert!(
            word.parse::<std::net::IpAddr>().is_err() && bare.parse::<std::net::IpAddr>().is_err(),
            "`{word}` in {text:?}"
        );
    }
    assert!(
        !text.contains("::1") && !text.contains("127.0.0."),
        "{text:?}"
    );
}

/// A registry token for a new agent of `iss`.
async fn agent_token(h: &Harness, iss: &Iss) -> String {
    let v = h
        .register(&iss.key, json!({"name": "bot", "scopes": ["read:x"]}))
        .await;
    v["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_published_registered_key_verifies_the_domain_and_shows_in_verify() {
    let h = start_with_config(test_switch()).await;
    let a = issuer_with_key(&h, "a.example").await;
    let b = issuer_with_key(&h, "b.example").await;
    let token_a = agent_token(&h, &a).await;
    let token_b = agent_token(&h, &b).await;
    let before = h.verify_token(&token_a).await;
    assert_eq!(before["valid"], true, "{before}");
    assert_eq!(before["trust_level"], "registered", "{before}");

    // The JWKS also holds an unrelated key: one registered key is enough.
    let other = SigningKey::generate(Algorithm::ES256).unwrap();
    let server = JwksServer::start(Answer::Json(jwks(&[&other, &a.sk]))).await;
    let (st, v) = verify_domain(
        &h,
        Some(&a.key),
        json!({"domain": "A.Example", "jwks_url": server.url(), "proof": proof(&h, &a, "A.Example")}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["issuer_id"], a.id);
    assert_eq!(v["domain"], "a.example");
    assert_eq!(v["domain_verified"], true);
    assert_eq!(v["kid"], a.sk.kid());
    assert_eq!(v["trust_level"], "domain_verified");
    assert_eq!(v["issuer_domain"], "a.example");
    assert!(v["domain_verified_at"].is_string());
    assert_eq!(server.connections(), 1);

    let after = h.verify_token(&token_a).await;
    assert_eq!(after["trust_level"], "domain_verified", "{after}");
    // The domain it is about, for answers to show beside `trust_level`.
    let sub = |token: &str| {
        let payload = token.split('.').nth(1).unwrap();
        let c: Value =
            serde_json::from_slice(&bonafide_core::b64::decode(payload).unwrap()).unwrap();
        bonafide_core::ids::AgentId::try_from(c["sub"].as_str().unwrap()).unwrap()
    };
    let now = bonafide_server::time::now_ms();
    assert_eq!(
        h.state.issuer_domain(&sub(&token_a), now).await.unwrap(),
        Some("a.example".to_owned())
    );
    assert_eq!(
        h.state.issuer_domain(&sub(&token_b), now).await.unwrap(),
        None
    );
    // Every verify answer shows the domain beside the trust level.
    assert_eq!(after["issuer_domain"], "a.example", "{after}");
    let (_, get) = h
        .call("GET", &format!("/v1/verify/{token_a}"), None, None)
        .await;
    assert_eq!(get["issuer_domain"], "a.example", "{get}");
    let intro: Value = h
        .http
        .post(format!("{}/v1/introspect", h.base))
        .form(&[("token", token_a.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(intro["issuer_domain"], "a.example", "{intro}");
    // Another issuer's agents are unaffected.
    let theirs = h.verify_token(&token_b).await;
    assert_eq!(theirs["trust_level"], "registered", "{theirs}");
    assert!(theirs.get("issuer_domain").is_none(), "{theirs}");
    // An invalid token has no trust level.
    let bad = h.verify_token("e30.e30.e30").await;
    assert_eq!(bad["valid"], false);
    assert!(bad.get("trust_level").is_none(), "{bad}");

    // Audited, with the domain and the key, readable by the issuer.
    let size = h.state.store.audit_size().await.unwrap();
    let rows = h
        .state
        .store
        .audit_entries(size.saturating_sub(20), size)
        .await
        .unwrap();
    let entry = rows
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.entry).unwrap())
        .find(|e| e["type"] == "issuer.domain_verified")
        .expect("an issuer.domain_verified entry");
    assert_eq!(entry["note"], "a.example", "{entry}");
    assert_eq!(entry["kid"], a.sk.kid(), "{entry}");
    assert_eq!(entry["issuer"], a.id, "{entry}");

    // A second issuer cannot take the domain: 409, before any fetch.
    let (st, v) = verify_domain(
        &h,
        Some(&b.key),
        json!({"domain": "a.example", "jwks_url": server.url(), "proof": proof(&h, &b, "a.example")}),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(server.connections(), 1);

    // One domain per issuer: verifying another one replaces it, freeing the first.
    let (st, v) = verify_domain(
        &h,
        Some(&a.key),
        json!({"domain": "new.a.example", "jwks_url": server.url(), "proof": proof(&h, &a, "new.a.example")}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let server_b = JwksServer::start(Answer::Json(jwks(&[&b.sk]))).await;
    let (st, v) = verify_domain(
        &h,
        Some(&b.key),
        json!({"domain": "a.example", "jwks_url": server_b.url(), "proof": proof(&h, &b, "a.example")}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let theirs = h.verify_token(&token_b).await;
    assert_eq!(theirs["trust_level"], "domain_verified", "{theirs}");
}

#[tokio::test]
async fn a_jwks_without_a_registered_live_key_is_refused() {
    let h = start_with_config(test_switch()).await;
    let a = issuer_with_key(&h, "a.example").await;
    let token = agent_token(&h, &a).await;
    let stranger = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let server = JwksServer::start(Answer::Json(jwks(&[&stranger]))).await;
    let (st, v) = verify_domain(
        &h,
        Some(&a.key),
        json!({"domain": "a.example", "jwks_url": server.url(), "proof": proof(&h, &a, "a.example")}),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(code(&v), "DOMAIN_NOT_VERIFIED");
    assert!(message(&v).contains("no matching key"), "{v}");
    assert_eq!(server.connections(), 1);

    // A published key that the issuer has revoked does not count either (the issuer
    // still has another, unpublished key).
    let spare = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let (st, v) = h.add_issuer_key(&a.key, &a.id, &spare).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/issuer/keys/{}/revoke", a.sk.kid()),
            Some(&a.key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let revoked = JwksServer::start(Answer::Json(jwks(&[&a.sk]))).await;
    // Its proof no longer counts (refused before any fetch)...
    let (st, v) = verify_domain(
        &h,
        Some(&a.key),
        json!({"domain": "a.example", "jwks_url": revoked.url(), "proof": proof(&h, &a, "a.example")}),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(code(&v), "DOMAIN_PROOF_INVALID", "{v}");
    assert!(
        message(&v).contains("not a registered, unrevoked key"),
        "{v}"
    );
    assert_eq!(revoked.connections(), 0);
    // ...and a proof by the live key finds only the revoked one published.
    let spare_iss = Iss {
        key: a.key.clone(),
        id: a.id.clone(),
        sk: spare,
    };
    let (st, v) = verify_domain(
        &h,
        Some(&a.key),
        json!({"domain": "a.example", "jwks_url": revoked.url(), "proof": proof(&h, &spare_iss, "a.example")}),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(code(&v), "DOMAIN_NOT_VERIFIED", "{v}");
    assert!(message(&v).contains("no matching key"), "{v}");
    assert!(message(&v).contains("holds 1 usable public key"), "{v}");
    assert_eq!(revoked.connections(), 1);

    // Not a JWKS at all.
    let junk = JwksServer::start(Answer::Json(r#"{"keys": 1}"#.into())).await;
    let (st, v) = verify_domain(
        &h,
        Some(&a.key),
        json!({"domain": "a.example", "jwks_url": junk.url(), "proof": proof(&h, &spare_iss, "a.example")}),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message(&v).contains("fetch failed"), "{v}");
    // Duplicate members are refused by core's strict JSON check.
    let dup = JwksServer::start(Answer::Json(r#"{"keys": [], "keys": []}"#.into())).await;
    let (st, v) = verify_domain(
        &h,
        Some(&a.key),
        json!({"domain": "a.example", "jwks_url": dup.url(), "proof": proof(&h, &spare_iss, "a.example")}),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message(&v).contains("duplicate"), "{v}");

    let still = h.verify_token(&token).await;
    assert_eq!(still["trust_level"], "registered", "{still}");
}

#[tokio::test]
async fn oversize_redirect_and_slow_answers_are_refused() {
    let h = start_with_config(Config {
        jwks_fetch_timeout: Duration::from_millis(400),
        ..test_switch()
    })
    .await;
    let a = issuer_with_key(&h, "a.example").await;

    // A body larger than the cap, without Content-Length: cut while streaming.
    let big = JwksServer::start(Answer::Endless(1024 * 1024)).await;
    let (st, v) = verify_domain(
        &h,
        Some(&a.key),
        json!({"domain": "a.example", "jwks_url": big.url(), "proof": proof(&h, &a, "a.example")}),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message(&v).contains("larger than 65536 bytes"), "{v}");
    // With a Content-Length above the cap: refused before reading.
    let padded = format!(
        r#"{{"keys": {}, "pad": "{}"}}"#,
        json!([a.sk.verifying_key().jwk()]),
        "a".repeat(70 * 1024)
    );
    let declared = JwksServer::start(Answer::Json(padded)).await;
    let (st, v) = verify_domain(
        &h,
        Some(&a.key),
        json!({"domain": "a.example", "jwks_url": declared.url(), "proof": proof(&h, &a, "a.example")}),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message(&v).contains("larger than"), "{v}");

    // A redirect is never followed, even to a JWKS that would verify.
    let good = JwksServer::start(Answer::Json(jwks(&[&a.sk]))).await;
    let hop = JwksServer::start(Answer::Redirect(good.url())).await;
    let (st, v) = verify_domain(
        &h,
        Some(&a.key),
        json!({"domain": "a.example", "jwks_url": hop.url(), "proof": proof(&h, &a, "a.example")}),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message(&v).contains("302"), "{v}");
    assert!(message(&v).contains("redirect"), "{v}");
    assert_eq!(hop.connections(), 1);
    assert_eq!(good.connections(), 0, "the redirect was followed");

    // Slower than the timeout.
    let slow = JwksServer::start(Answer::Slow(Duration::from_secs(3), jwks(&[&a.sk]))).await;
    let started = std::time::Instant::now();
    let (st, v) = verify_domain(
        &h,
        Some(&a.key),
        json!({"domain": "a.example", "jwks_url": slow.url(), "proof": proof(&h, &a, "a.example")}),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message(&v).contains("within 400 ms"), "{v}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // The good server, asked directly, verifies: the refusals above were the answers'.
    let (st, v) = verify_domain(
        &h,
        Some(&a.key),
        json!({"domain": "a.example", "jwks_url": good.url(), "proof": proof(&h, &a, "a.example")}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn without_the_switch_loopback_and_http_are_refused_before_connecting() {
    let h = start_with_config(production()).await;
    let a = issuer_with_key(&h, "a.example").await;
    let server = JwksServer::start(Answer::Json(jwks(&[&a.sk]))).await;

    // A loopback `jwks_url`: refused as a URL, nothing fetched.
    for url in [
        server.url(),
        format!("http://localhost:{}/.well-known/jwks.json", server.port),
        "http://a.example/.well-known/jwks.json".to_owned(),
        "https://a.example/other.json".to_owned(),
        "https://169.254.169.254/latest/meta-data".to_owned(),
    ] {
        let (st, v) = verify_domain(
            &h,
            Some(&a.key),
            json!({"domain": "a.example", "jwks_url": url, "proof": proof(&h, &a, "a.example")}),
        )
        .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {v}");
        assert_eq!(code(&v), "JWKS_URL_REFUSED", "{url}: {v}");
    }
    // A domain that resolves to loopback: refused after our own lookup, before any
    // connection.
    let (st, v) = verify_domain(
        &h,
        Some(&a.key),
        json!({"domain": "localhost", "proof": proof(&h, &a, "localhost")}),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(code(&v), "DOMAIN_NOT_VERIFIED");
    assert!(message(&v).contains("fetch failed"), "{v}");
    assert!(
        message(&v).contains("refused: the host does not resolve to a public address"),
        "{v}"
    );
    // What the registry resolved stays in its log: an issuer cannot map its DNS view.
    assert_no_address(message(&v));
    assert!(!message(&v).contains("loopback"), "{v}");
    assert_eq!(server.connections(), 0);

    // The fetcher itself, pointed at the live server by name and by address: the
    // server sees no connection at all.
    let limits = FetchLimits {
        timeout: Duration::from_secs(2),
        ..FetchLimits::default()
    };
    for url in [
        format!("https://localhost:{}/.well-known/jwks.json", server.port),
        format!("https://127.0.0.1:{}/.well-known/jwks.json", server.port),
        format!("https://[::ffff:127.0.0.1]:{}/", server.port),
        format!("http://127.0.0.1:{}/", server.port),
    ] {
        let e = fetch::fetch_json(&url, &limits).await.unwrap_err();
        assert!(
            matches!(e, FetchError::NotPublic { .. } | FetchError::Scheme(_)),
            "{url}: {e}"
        );
        assert_no_address(&e.to_string());
    }
    assert_eq!(server.connections(), 0);
    // The same fetch with the test switch reaches it: the refusals were the rules'.
    let on = FetchLimits {
        allow_insecure_loopback: true,
        ..limits
    };
    fetch::fetch_json(&server.url(), &on).await.unwrap();
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn bad_domains_and_wrong_callers_are_refused() {
    let h = start_with_config(test_switch()).await;
    let a = issuer_with_key(&h, "a.example").await;
    let server = JwksServer::start(Answer::Json(jwks(&[&a.sk]))).await;
    for bad in [
        "",
        "127.0.0.1",
        "[::1]",
        "a.example:443",
        "https://a.example",
        "a.example/x",
        "a..example",
        "-a.example",
        "a_b.example",
        "a.example.",
    ] {
        let (st, v) = verify_domain(
            &h,
            Some(&a.key),
            json!({"domain": bad, "jwks_url": server.url()}),
        )
        .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}: {v}");
        assert_eq!(code(&v), "DOMAIN_INVALID", "{bad:?}: {v}");
    }
    let body = json!({"domain": "a.example", "jwks_url": server.url(), "proof": proof(&h, &a, "a.example")});
    let (st, v) = verify_domain(&h, None, body.clone()).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    let admin = h.admin.clone();
    let (st, v) = verify_domain(&h, Some(&admin), body.clone()).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    // Unknown members are refused.
    let (st, v) = verify_domain(
        &h,
        Some(&a.key),
        json!({"domain": "a.example", "jwks_url": server.url(), "force": true, "proof": proof(&h, &a, "a.example")}),
    )
    .await;
    assert!(st.is_client_error(), "{st}: {v}");
    assert_eq!(server.connections(), 0);

    // An issuer with no registered key has nothing to look for.
    let (st, v) = h
        .call(
            "POST",
            "/v1/issuers",
            Some(&h.admin),
            Some(json!({"name": "keyless.example"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let keyless = v["api_key"].as_str().unwrap().to_owned();
    let (st, v) = verify_domain(&h, Some(&keyless), body).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(message(&v).contains("no registered, unrevoked key"), "{v}");
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn a_domain_verified_by_another_process_arrives_within_key_refresh() {
    let h = start_with_config(Config {
        key_refresh: Duration::from_millis(100),
        ..production()
    })
    .await;
    let a = issuer_with_key(&h, "a.example").await;
    let token = agent_token(&h, &a).await;
    assert_eq!(h.verify_token(&token).await["trust_level"], "registered");
    // Written straight to the store, as another replica would.
    let entry = bonafide_core::audit::AuditEntry::new(
        bonafide_core::audit::EventType::IssuerDomainVerified,
        0,
        bonafide_core::audit::Actor::Registry,
    );
    let record = bonafide_server::audit::record(&entry, None, None).unwrap();
    let domain = bonafide_store::IssuerDomain {
        issuer_id: a.id.as_str().try_into().unwrap(),
        domain: "a.example".into(),
        kid: a.sk.kid().to_owned(),
        verified_at_ms: bonafide_server::time::now_ms(),
    };
    h.state
        .store
        .set_issuer_domain(&domain, &record)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let v = h.verify_token(&token).await;
        if v["trust_level"] == "domain_verified" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never refreshed: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The trust level on `GET /v1/verify/{token}` and in introspection.
async fn trust_on_get_and_introspect(h: &Harness, token: &str) -> (Value, Value) {
    let (st, get) = h
        .call("GET", &format!("/v1/verify/{token}"), None, None)
        .await;
    assert_eq!(st, StatusCode::OK, "{get}");
    let resp = h
        .http
        .post(format!("{}/v1/introspect", h.base))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let intro: Value = resp.json().await.unwrap();
    (get["trust_level"].clone(), intro["trust_level"].clone())
}

#[tokio::test]
async fn trust_shows_on_every_verify_path_and_lapses_with_its_key_or_its_age() {
    let h = start_with_config(test_switch()).await;
    let a = issuer_with_key(&h, "lapse.example").await;
    let token = agent_token(&h, &a).await;
    assert_eq!(
        trust_on_get_and_introspect(&h, &token).await,
        (json!("registered"), json!("registered"))
    );
    let server = JwksServer::start(Answer::Json(jwks(&[&a.sk]))).await;
    let (st, v) = verify_domain(
        &h,
        Some(&a.key),
        json!({"domain": "lapse.example", "jwks_url": server.url(), "proof": proof(&h, &a, "lapse.example")}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        trust_on_get_and_introspect(&h, &token).await,
        (json!("domain_verified"), json!("domain_verified"))
    );
    // An inactive token says nothing about trust.
    let (get, intro) = trust_on_get_and_introspect(&h, "e30.e30.e30").await;
    assert!(get.is_null() && intro.is_null(), "{get} {intro}");

    // Revoking the key that proved the domain ends the proof.
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/issuer/keys/{}/revoke", a.sk.kid()),
            Some(&a.key),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(h.verify_token(&token).await["trust_level"], "registered");
    assert_eq!(
        trust_on_get_and_introspect(&h, &token).await,
        (json!("registered"), json!("registered"))
    );

    // A proof older than `domain_verification_ttl` no longer counts.
    let h = start_with_config(Config {
        domain_verification_ttl: Duration::from_millis(300),
        ..test_switch()
    })
    .await;
    let b = issuer_with_key(&h, "old.example").await;
    let token = agent_token(&h, &b).await;
    let server = JwksServer::start(Answer::Json(jwks(&[&b.sk]))).await;
    let (st, v) = verify_domain(
        &h,
        Some(&b.key),
        json!({"domain": "old.example", "jwks_url": server.url(), "proof": proof(&h, &b, "old.example")}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        h.verify_token(&token).await["trust_level"],
        "domain_verified"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(h.verify_token(&token).await["trust_level"], "registered");
    // Verifying again renews it.
    let (st, _) = verify_domain(
        &h,
        Some(&b.key),
        json!({"domain": "old.example", "jwks_url": server.url(), "proof": proof(&h, &b, "old.example")}),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        h.verify_token(&token).await["trust_level"],
        "domain_verified"
    );
}

/// The squatting attack: a public key is public, so another party could register the
/// key a victim publishes at its domain. The key proof stops that at registration;
/// and a key registered before that rule (put in the store here) still cannot make
/// the domain proof without the private half, so it never gets the victim's domain.
#[tokio::test]
async fn registering_someone_elses_published_key_does_not_verify_their_domain() {
    let h = start_with_config(test_switch()).await;
    // The victim publishes its key at victim.example (it never used this registry).
    let victim = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let site = JwksServer::start(Answer::Json(jwks(&[&victim]))).await;
    // The squatter has its own key, and tries to register the victim's public key
    // too: without the private half, it cannot prove it holds it.
    let squatter = issuer_with_key(&h, "squatter.example").await;
    let (st, v) = h
        .call(
            "POST",
            "/v1/issuer/keys",
            Some(&squatter.key),
            Some(json!({"jwk": victim.verifying_key().jwk()})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(code(&v), "KEY_PROOF_INVALID", "{v}");
    // As a registry from before the key proof could hold it: registered anyway.
    let record = bonafide_store::IssuerKey {
        kid: victim.kid().to_owned(),
        issuer_id: bonafide_core::ids::IssuerId::try_from(squatter.id.as_str()).unwrap(),
        alg: victim.alg(),
        jwk: serde_json::to_string(victim.verifying_key().jwk()).unwrap(),
        created_at_ms: bonafide_server::time::now_ms(),
        revoked_at_ms: None,
        alias: None,
    };
    h.state
        .store
        .add_issuer_key(&record, &common::admin_key_audit())
        .await
        .unwrap();
    let token = agent_token(&h, &squatter).await;
    let aud = h.state.config.public_url.clone();
    let ask = |proof: Option<String>| {
        let mut body = json!({"domain": "victim.example", "jwks_url": site.url()});
        if let Some(p) = proof {
            body["proof"] = p.into();
        }
        verify_domain(&h, Some(&squatter.key), body)
    };

    // No proof at all.
    let (st, v) = ask(None).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(code(&v), "DOMAIN_PROOF_INVALID", "{v}");
    assert!(message(&v).contains("`proof` is required"), "{v}");
    // A proof that names the victim's key but is signed by the squatter's own.
    let payload =
        json!({"iss": squatter.id, "domain": "victim.example", "aud": aud, "iat": now_s()});
    let mut forged = bonafide_core::jws::header_b64(
        Algorithm::EdDSA,
        domain_proof::DOMAIN_PROOF_TYP,
        victim.kid(),
    )
    .unwrap();
    forged.push('.');
    forged.push_str(&bonafide_core::b64::encode(payload.to_string().as_bytes()));
    let sig = squatter.sk.sign(forged.as_bytes()).unwrap();
    forged.push('.');
    forged.push_str(&bonafide_core::b64::encode(&sig));
    let (st, v) = ask(Some(forged)).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(code(&v), "DOMAIN_PROOF_INVALID", "{v}");
    assert!(message(&v).contains("signature"), "{v}");
    // A proof by a key it holds but never registered.
    let unregistered = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let (st, v) = ask(Some(proof_with(
        &unregistered,
        &squatter.id,
        "victim.example",
        &aud,
        now_s(),
    )))
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(code(&v), "DOMAIN_PROOF_INVALID", "{v}");
    assert!(
        message(&v).contains("not a registered, unrevoked key"),
        "{v}"
    );
    // None of these made the registry fetch anything.
    assert_eq!(site.connections(), 0);
    // A genuine proof by its own registered key: that key is not what the domain
    // publishes.
    let (st, v) = ask(Some(proof(&h, &squatter, "victim.example"))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(code(&v), "DOMAIN_NOT_VERIFIED", "{v}");
    assert!(message(&v).contains("no matching key"), "{v}");
    assert_eq!(site.connections(), 1);

    assert_eq!(h.verify_token(&token).await["trust_level"], "registered");
    assert!(h.state.store.issuer_domains().await.unwrap().is_empty());
}

/// `who` asks for `a.example` with this proof.
async fn ask_a_example(
    h: &Harness,
    who: &Iss,
    site: &JwksServer,
    proof: String,
) -> (StatusCode, Value) {
    verify_domain(
        h,
        Some(&who.key),
        json!({"domain": "a.example", "jwks_url": site.url(), "proof": proof}),
    )
    .await
}

/// A proof states who claims which domain at which registry, and when: a proof for
/// another issuer, another domain or another registry, or an old one, is refused
/// before anything is fetched.
#[tokio::test]
async fn proofs_for_another_issuer_domain_or_registry_and_stale_proofs_are_refused() {
    let h = start_with_config(test_switch()).await;
    let a = issuer_with_key(&h, "a.example").await;
    let b = issuer_with_key(&h, "b.example").await;
    let site = JwksServer::start(Answer::Json(jwks(&[&a.sk, &b.sk]))).await;
    let aud = h.state.config.public_url.clone();
    let now = now_s();
    let cases = [
        // B's proof (signed by B's key) presented by A: not A's key.
        (
            proof_with(&b.sk, &b.id, "a.example", &aud, now),
            "not a registered, unrevoked key",
        ),
        // A's key, but stating B as the issuer.
        (
            proof_with(&a.sk, &b.id, "a.example", &aud, now),
            "the proof is for iss",
        ),
        // Another domain.
        (
            proof_with(&a.sk, &a.id, "b.example", &aud, now),
            "the proof is for domain `b.example`",
        ),
        // Another registry.
        (
            proof_with(
                &a.sk,
                &a.id,
                "a.example",
                "https://other-registry.example",
                now,
            ),
            "the proof is for aud",
        ),
        // Stale (time passing only makes it staler).
        (
            proof_with(&a.sk, &a.id, "a.example", &aud, now - 301),
            "at most 300 s",
        ),
        // Not a domain proof: an agent token by the same key.
        (
            bonafide_core::jws::sign_compact(
                &a.sk,
                "agent+jwt",
                json!({"iss": a.id, "domain": "a.example", "aud": aud, "iat": now})
                    .to_string()
                    .as_bytes(),
            )
            .unwrap(),
            "not a domain proof",
        ),
        ("not.a.jws".to_owned(), "does not verify"),
    ];
    for (proof, want) in cases {
        let (st, v) = ask_a_example(&h, &a, &site, proof).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{want}: {v}");
        assert_eq!(code(&v), "DOMAIN_PROOF_INVALID", "{want}: {v}");
        assert!(message(&v).contains(want), "{want}: {v}");
    }
    // From the future: made just before it is sent (the cases above can take seconds
    // on a loaded machine, and each brings a proof made earlier closer to the window:
    // `now + 301` made up front was accepted in a full-suite run), 302 s ahead so that
    // crossing a second boundary on the way cannot put it inside.
    let future = proof_with(&a.sk, &a.id, "a.example", &aud, now_s() + 302);
    let (st, v) = ask_a_example(&h, &a, &site, future).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "future: {v}");
    assert_eq!(code(&v), "DOMAIN_PROOF_INVALID", "future: {v}");
    assert!(message(&v).contains("at most 300 s"), "future: {v}");
    // A proof B made for itself does not let B take A's domain by presenting it.
    let (st, v) = ask_a_example(&h, &b, &site, proof(&h, &a, "a.example")).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(code(&v), "DOMAIN_PROOF_INVALID", "{v}");
    assert_eq!(
        site.connections(),
        0,
        "a refused proof made the registry fetch"
    );

    // Within 300 s either way it holds.
    let (st, v) = ask_a_example(
        &h,
        &a,
        &site,
        proof_with(&a.sk, &a.id, "a.example", &aud, now - 250),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["issuer_domain"], "a.example");
    assert_eq!(site.connections(), 1);
}
