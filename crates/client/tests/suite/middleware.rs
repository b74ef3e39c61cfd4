//! The receiver layer on a real axum app on 127.0.0.1, driven over HTTP: tokens,
//! DPoP proofs (ours, node `jose`'s and Python jwcrypto's), HTTP message signatures,
//! replay, refusals, JWKS refresh, and online mode against a stand-in registry.
//!
//! Keys are served by a tiny local axum server (JWKS and agent key directories): no
//! registry is needed for offline mode.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use bonafide_client::receiver::{Config, JwksSource, ProofKind, Receiver, VerifiedAgent};
use bonafide_core::httpsig::{self, Message, SignParams};
use bonafide_core::keys::{Algorithm, Jwks, SigningKey};
use bonafide_core::token::AgentClaims;
use serde_json::{Value, json};

const ISSUER: &str = "https://registry.test";
const AGENT: &str = "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa";
const SUB_AGENT: &str = "agt_bbbbbbbbbbbbbbbbbbbbbbbbbb";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A fresh random-looking id suffix (26 base32 chars) from a counter and the clock.
fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let digest = bonafide_core::sha256(format!("{n}-{:?}", std::time::Instant::now()).as_bytes());
    let alphabet = b"abcdefghijklmnopqrstuvwxyz234567";
    let s: String = digest
        .iter()
        .take(26)
        .map(|b| alphabet[(*b % 32) as usize] as char)
        .collect();
    format!("{prefix}{s}")
}

/// The keys a registry would publish, served from memory.
#[derive(Clone)]
struct KeyServer {
    jwks: Arc<Mutex<Jwks>>,
    /// Agent id → its public keys (the key directory).
    agents: Arc<Mutex<Vec<(String, Jwks)>>>,
    fetches: Arc<Mutex<u32>>,
    url: String,
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn key_server(jwks: Jwks) -> KeyServer {
    let mut ks = KeyServer {
        jwks: Arc::new(Mutex::new(jwks)),
        agents: Arc::new(Mutex::new(Vec::new())),
        fetches: Arc::new(Mutex::new(0)),
        url: String::new(),
    };
    let app = Router::new()
        .route(
            "/.well-known/jwks.json",
            get(|State(ks): State<KeyServer>| async move {
                *ks.fetches.lock().unwrap() += 1;
                Json(ks.jwks.lock().unwrap().clone())
            }),
        )
        .route(
            "/agents/{id}/.well-known/http-message-signatures-directory",
            get(
                |State(ks): State<KeyServer>, Path(id): Path<String>| async move {
                    let agents = ks.agents.lock().unwrap();
                    match agents.iter().find(|(a, _)| *a == id) {
                        Some((_, jwks)) => Ok(Json(jwks.clone())),
                        None => Err(axum::http::StatusCode::NOT_FOUND),
                    }
                },
            ),
        )
        .with_state(ks.clone());
    ks.url = serve(app).await;
    ks
}

/// One receiver app and what the tests need to talk to it.
struct Fixture {
    registry_key: SigningKey,
    agent_key: SigningKey,
    keys: KeyServer,
    base: String,
    http: reqwest::Client,
}

async fn hello(agent: VerifiedAgent) -> Json<Value> {
    Json(json!({
        "agent_id": agent.agent_id.as_str(),
        "actor": agent.actor.as_str(),
        "name": agent.name,
        "issuer": agent.issuer,
        "scopes": agent.scopes,
        "user": agent.user,
        "proof": match &agent.proof {
            None => "bearer".to_owned(),
            Some(ProofKind::Dpop) => "dpop".to_owned(),
            Some(ProofKind::HttpSignature) => "http-signature".to_owned(),
            Some(_) => "other".to_owned(),
        },
        "delegation": agent.delegation.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        "has_claims": agent.claims.is_some(),
        "bound_key": agent.bound_key,
        "revocation_checked": agent.revocation_checked,
    }))
}

/// Binds first, so the receiver knows its public URL.
async fn receiver_app(make: impl FnOnce(String) -> Config) -> (String, Receiver) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let receiver = Receiver::new(make(base.clone())).await.unwrap();
    let app = Router::new()
        .route("/hello", get(hello).post(hello))
        .route("/api/v1/items/{id}", get(hello).delete(hello))
        .layer(receiver.layer())
        .route("/open", get(hello)); // the extractor without the layer
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, receiver)
}

impl Fixture {
    async fn new() -> Self {
        Self::with(|c| c).await
    }

    async fn with(tune: impl FnOnce(Config) -> Config) -> Self {
        let registry_key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let agent_key = SigningKey::generate(Algorithm::ES256).unwrap();
        let keys = key_server(Jwks {
            keys: vec![registry_key.verifying_key().jwk().clone()],
        })
        .await;
        keys.agents.lock().unwrap().push((
            AGENT.to_owned(),
            Jwks {
                keys: vec![agent_key.verifying_key().jwk().clone()],
            },
        ));
        let jwks_url = format!("{}/.well-known/jwks.json", keys.url);
        let registry = keys.url.clone();
        let (base, _) = receiver_app(|base| {
            tune(
                Config::offline(JwksSource::url(jwks_url), ISSUER)
                    .public_base_url(base)
                    .agent_keys_from_registry(registry),
            )
        })
        .await;
        Fixture {
            registry_key,
            agent_key,
            keys,
            base,
            http: reqwest::Client::new(),
        }
    }

    fn token(&self, edit: impl FnOnce(&mut Value)) -> String {
        token_with(&self.registry_key, edit)
    }

    fn bound_token(&self) -> String {
        let jkt = self.agent_key.kid().to_owned();
        self.token(|c| c["cnf"] = json!({ "jkt": jkt }))
    }

    fn dpop(&self, htm: &str, htu: &str, token: &str) -> String {
        bonafide_core::dpop::sign(&self.agent_key, htm, htu, token, now(), &unique("p")).unwrap()
    }
}

fn token_with(key: &SigningKey, edit: impl FnOnce(&mut Value)) -> String {
    let t = now();
    let mut claims = json!({
        "iss": ISSUER, "sub": AGENT, "iat": t - 10, "exp": t + 600, "jti": unique("tok_"),
        "agent": {"name": "ledger-bot", "issuer": "Apex Wealth", "scopes": ["read:portfolio"]},
        "scope": "read:portfolio", "user": "alice@example.com",
    });
    edit(&mut claims);
    let claims: AgentClaims = serde_json::from_value(claims).unwrap();
    bonafide_core::token::sign(key, &claims).unwrap()
}

async fn answer(resp: reqwest::Response) -> (u16, Value, Option<String>) {
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body, challenge)
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn unbound_bearer_token_is_accepted_in_every_header() {
    let f = Fixture::new().await;
    let token = f.token(|_| {});
    for req in [
        f.http.get(format!("{}/hello", f.base)).bearer_auth(&token),
        f.http
            .get(format!("{}/hello", f.base))
            .header("x-agent-token", &token),
    ] {
        let (status, body, _) = answer(req.send().await.unwrap()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["agent_id"], AGENT);
        assert_eq!(body["name"], "ledger-bot");
        assert_eq!(body["issuer"], ISSUER);
        assert_eq!(body["user"], "alice@example.com");
        assert_eq!(body["scopes"], json!(["read:portfolio"]));
        assert_eq!(body["proof"], "bearer");
        assert_eq!(body["delegation"], json!([AGENT]));
        assert_eq!(body["has_claims"], true);
        assert_eq!(body["revocation_checked"], false);
    }
}

/// KairosAI's convention: the agent's token in `X-Agent-Token`, the service's own
/// key in `Authorization`. The agent header wins; `Authorization` is never read as
/// the agent's, whatever it holds.
#[tokio::test]
async fn x_agent_token_takes_precedence_over_authorization() {
    let f = Fixture::new().await;
    let url = format!("{}/hello", f.base);
    let token = f.token(|_| {});
    let expired = f.token(|c| {
        c["iat"] = json!(now() - 1000);
        c["exp"] = json!(now() - 500);
    });
    for service_auth in ["Bearer bfk_rcv_service_own_key", "Bearer", &expired] {
        let auth = if service_auth.starts_with("Bearer") {
            service_auth.to_owned()
        } else {
            format!("Bearer {service_auth}")
        };
        let (status, body, _) = answer(
            f.http
                .get(&url)
                .header("authorization", &auth)
                .header("x-agent-token", &token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{auth}: {body}");
        assert_eq!(body["agent_id"], AGENT);
        assert_eq!(body["proof"], "bearer");
    }
    // And the other way round: the agent header decides, even when `Authorization`
    // holds a good token.
    let (status, body, _) = answer(
        f.http
            .get(&url)
            .bearer_auth(&token)
            .header("x-agent-token", &expired)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code(&body)), (401, "TOKEN_EXPIRED"), "{body}");
}

#[tokio::test]
async fn missing_malformed_forged_and_expired_tokens_are_refused() {
    let f = Fixture::new().await;
    let url = format!("{}/hello", f.base);
    let (status, body, challenge) = answer(f.http.get(&url).send().await.unwrap()).await;
    assert_eq!((status, code(&body)), (401, "TOKEN_MISSING"));
    assert!(challenge.unwrap().starts_with("DPoP algs="));

    let (status, body, challenge) = answer(
        f.http
            .get(&url)
            .bearer_auth("not.a.token")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code(&body)), (401, "TOKEN_INVALID"), "{body}");
    assert_eq!(challenge.as_deref(), Some("Bearer error=\"invalid_token\""));

    let expired = f.token(|c| {
        c["iat"] = json!(now() - 1000);
        c["exp"] = json!(now() - 500);
    });
    let (status, body, _) =
        answer(f.http.get(&url).bearer_auth(&expired).send().await.unwrap()).await;
    assert_eq!((status, code(&body)), (401, "TOKEN_EXPIRED"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    // Signed by a key the JWKS does not hold (the refetch finds nothing new).
    let stranger = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let forged = token_with(&stranger, |_| {});
    let (status, body, _) =
        answer(f.http.get(&url).bearer_auth(&forged).send().await.unwrap()).await;
    assert_eq!((status, code(&body)), (401, "TOKEN_INVALID"), "{body}");

    let other_issuer = f.token(|c| c["iss"] = json!("https://elsewhere.test"));
    let (status, body, _) = answer(
        f.http
            .get(&url)
            .bearer_auth(&other_issuer)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code(&body)), (401, "ISSUER_UNKNOWN"), "{body}");

    let token = f.token(|_| {});

    // The extractor on a route without the layer never lets a request through.
    let (status, body, _) = answer(
        f.http
            .get(format!("{}/open", f.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code(&body)), (401, "UNAUTHENTICATED"), "{body}");
}

#[tokio::test]
async fn bound_token_without_proof_is_proof_required() {
    let f = Fixture::new().await;
    let token = f.bound_token();
    for req in [
        f.http.get(format!("{}/hello", f.base)).bearer_auth(&token),
        f.http
            .get(format!("{}/hello", f.base))
            .header("x-agent-token", &token),
        f.http
            .get(format!("{}/hello", f.base))
            .header("authorization", format!("DPoP {token}")),
    ] {
        let (status, body, challenge) = answer(req.send().await.unwrap()).await;
        assert_eq!((status, code(&body)), (401, "PROOF_REQUIRED"), "{body}");
        assert!(
            challenge.unwrap().starts_with("DPoP error="),
            "RFC 9449 §7.1"
        );
    }
}

#[tokio::test]
async fn dpop_proof_is_accepted_once() {
    let f = Fixture::new().await;
    let token = f.bound_token();
    let url = format!("{}/hello", f.base);
    let proof = f.dpop("GET", &url, &token);
    let send = || {
        f.http
            .get(format!("{url}?page=2")) // the query is not part of htu
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", &proof)
            .send()
    };
    let (status, body, _) = answer(send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["proof"], "dpop");
    assert_eq!(body["bound_key"], f.agent_key.kid());

    let (status, body, challenge) = answer(send().await.unwrap()).await;
    assert_eq!((status, code(&body)), (401, "REPLAY"), "{body}");
    assert!(challenge.unwrap().contains("invalid_dpop_proof"));

    // X-Agent-Token with a DPoP header is a DPoP presentation.
    let proof = f.dpop("POST", &url, &token);
    let (status, body, _) = answer(
        f.http
            .post(&url)
            .header("x-agent-token", &token)
            .header("dpop", &proof)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn dpop_proof_for_another_request_or_key_is_invalid() {
    let f = Fixture::new().await;
    let token = f.bound_token();
    let url = format!("{}/hello", f.base);
    let send = |method: reqwest::Method, proof: String, token: String| {
        f.http
            .request(method, &url)
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof)
            .send()
    };
    let cases = [
        ("htm", f.dpop("POST", &url, &token), token.clone()),
        (
            "htu host",
            f.dpop("GET", "https://other.example/hello", &token),
            token.clone(),
        ),
        (
            "htu path",
            f.dpop("GET", &format!("{}/other", f.base), &token),
            token.clone(),
        ),
        ("ath", f.dpop("GET", &url, &f.bound_token()), token.clone()),
        (
            "thumbprint",
            {
                let other = SigningKey::generate(Algorithm::ES256).unwrap();
                bonafide_core::dpop::sign(&other, "GET", &url, &token, now(), &unique("p")).unwrap()
            },
            token.clone(),
        ),
        (
            "stale iat",
            bonafide_core::dpop::sign(&f.agent_key, "GET", &url, &token, now() - 3600, "x")
                .unwrap(),
            token.clone(),
        ),
        ("garbage", "a.b.c".to_owned(), token.clone()),
    ];
    for (what, proof, token) in cases {
        let (status, body, challenge) =
            answer(send(reqwest::Method::GET, proof, token).await.unwrap()).await;
        assert_eq!(
            (status, code(&body)),
            (401, "PROOF_INVALID"),
            "{what}: {body}"
        );
        assert!(
            challenge
                .unwrap()
                .starts_with("DPoP error=\"invalid_dpop_proof\"")
        );
    }

    // Two DPoP headers (RFC 9449 §4.3 step 1).
    let (status, body, _) = answer(
        f.http
            .get(&url)
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", f.dpop("GET", &url, &token))
            .header("dpop", f.dpop("GET", &url, &token))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code(&body)), (401, "PROOF_INVALID"), "{body}");

    // An unbound token cannot be DPoP-presented.
    let bearer = f.token(|_| {});
    let (status, body, _) = answer(
        send(reqwest::Method::GET, f.dpop("GET", &url, &bearer), bearer)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code(&body)), (401, "PROOF_INVALID"), "{body}");
}

fn sign_request(
    key: &SigningKey,
    method: &str,
    url: &str,
    nonce: &str,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let mut headers = extra.to_vec();
    let msg = Message::Request {
        method,
        url,
        headers: &headers,
    };
    let t = now();
    let signed = httpsig::sign(
        key,
        &msg,
        &["@method", "@authority", "@path"],
        &SignParams {
            label: "sig1",
            created: t,
            expires: Some(t + 60),
            keyid: None,
            nonce: Some(nonce),
            tag: Some(httpsig::WEB_BOT_AUTH_TAG),
            include_alg: false,
        },
    )
    .unwrap();
    headers.push(("signature-input".into(), signed.signature_input));
    headers.push(("signature".into(), signed.signature));
    headers
}

#[tokio::test]
async fn http_message_signature_is_accepted_once() {
    let f = Fixture::new().await;
    let token = f.bound_token();
    let url = format!("{}/api/v1/items/42?full=1", f.base);
    let headers = sign_request(&f.agent_key, "DELETE", &url, &unique("n"), &[]);
    let send = || {
        let mut req = f.http.delete(&url).bearer_auth(&token);
        for (n, v) in &headers {
            req = req.header(n, v);
        }
        req.send()
    };
    let (status, body, _) = answer(send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["proof"], "http-signature");

    let (status, body, _) = answer(send().await.unwrap()).await;
    assert_eq!((status, code(&body)), (401, "REPLAY"), "{body}");

    // Signed for another path, by another key, or without a nonce: refused.
    let other_key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let cases = [
        (
            "path",
            sign_request(
                &f.agent_key,
                "DELETE",
                &format!("{}/api/v1/items/43", f.base),
                &unique("n"),
                &[],
            ),
        ),
        (
            "key",
            sign_request(&other_key, "DELETE", &url, &unique("n"), &[]),
        ),
        (
            "method",
            sign_request(&f.agent_key, "GET", &url, &unique("n"), &[]),
        ),
    ];
    for (what, headers) in cases {
        let mut req = f.http.delete(&url).bearer_auth(&token);
        for (n, v) in &headers {
            req = req.header(n, v);
        }
        let (status, body, _) = answer(req.send().await.unwrap()).await;
        assert_eq!(
            (status, code(&body)),
            (401, "PROOF_INVALID"),
            "{what}: {body}"
        );
    }
}

#[tokio::test]
async fn signature_key_comes_from_a_resolver_or_nowhere() {
    // Resolver closure.
    let agent_key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let public = agent_key.verifying_key().jwk().clone();
    let f = Fixture::with(move |c| {
        c.agent_key_resolver(move |agent, jkt| {
            let key = bonafide_core::keys::VerifyingKey::from_jwk(&public).ok()?;
            (agent.as_str() == AGENT && key.kid() == jkt).then_some(key)
        })
    })
    .await;
    let jkt = agent_key.kid().to_owned();
    let token = f.token(|c| c["cnf"] = json!({ "jkt": jkt }));
    let url = format!("{}/hello", f.base);
    let headers = sign_request(&agent_key, "GET", &url, &unique("n"), &[]);
    let mut req = f.http.get(&url).header("x-agent-token", &token);
    for (n, v) in &headers {
        req = req.header(n, v);
    }
    let (status, body, _) = answer(req.send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");

    // No source of agent keys: signatures cannot be checked (DPoP would still work).
    let f = Fixture::with(|mut c| {
        c.agent_keys = bonafide_client::receiver::AgentKeySource::None;
        c
    })
    .await;
    let token = f.bound_token();
    let url = format!("{}/hello", f.base);
    let headers = sign_request(&f.agent_key, "GET", &url, &unique("n"), &[]);
    let mut req = f.http.get(&url).bearer_auth(&token);
    for (n, v) in &headers {
        req = req.header(n, v);
    }
    let (status, body, _) = answer(req.send().await.unwrap()).await;
    assert_eq!((status, code(&body)), (401, "PROOF_INVALID"), "{body}");
}

#[tokio::test]
async fn stale_jwks_is_refetched_for_a_new_key() {
    let f = Fixture::with(|mut c| {
        if let JwksSource::Url { min_refetch, .. } = &mut c.jwks {
            *min_refetch = Duration::ZERO;
        }
        c
    })
    .await;
    let fetches_before = *f.keys.fetches.lock().unwrap();
    // The registry rotates: a new key appears in its JWKS after the receiver started.
    let new_key = SigningKey::generate(Algorithm::ES256).unwrap();
    f.keys
        .jwks
        .lock()
        .unwrap()
        .keys
        .push(new_key.verifying_key().jwk().clone());
    let token = token_with(&new_key, |_| {});
    let (status, body, _) = answer(
        f.http
            .get(format!("{}/hello", f.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(*f.keys.fetches.lock().unwrap(), fetches_before + 1);
}

#[tokio::test]
async fn unknown_kids_do_not_hammer_the_jwks() {
    let f = Fixture::new().await; // min_refetch 10 s
    let before = *f.keys.fetches.lock().unwrap();
    let stranger = SigningKey::generate(Algorithm::EdDSA).unwrap();
    for _ in 0..5 {
        let forged = token_with(&stranger, |_| {});
        let (status, _, _) = answer(
            f.http
                .get(format!("{}/hello", f.base))
                .bearer_auth(&forged)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 401);
    }
    // The fetch at start-up was less than 10 s ago: no refetch at all.
    assert_eq!(*f.keys.fetches.lock().unwrap(), before);
}

#[tokio::test]
async fn delegated_token_names_subject_actor_and_chain() {
    let f = Fixture::new().await;
    let token = f.token(|c| {
        c["act"] = json!({ "sub": SUB_AGENT });
        c["ancestor_jtis"] = json!([unique("tok_")]);
    });
    let (status, body, _) = answer(
        f.http
            .get(format!("{}/hello", f.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["agent_id"], AGENT);
    assert_eq!(body["actor"], SUB_AGENT);
    assert_eq!(body["delegation"], json!([AGENT, SUB_AGENT]));
}

#[tokio::test]
async fn require_binding_refuses_bearer_tokens() {
    let f = Fixture::with(|mut c| {
        c.proofs.require_binding = true;
        c
    })
    .await;
    let (status, body, _) = answer(
        f.http
            .get(format!("{}/hello", f.base))
            .bearer_auth(f.token(|_| {}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code(&body)), (401, "PROOF_REQUIRED"), "{body}");
}

#[tokio::test]
async fn without_a_public_base_url_bound_tokens_are_refused() {
    let registry_key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let agent_key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let jwks = Jwks {
        keys: vec![registry_key.verifying_key().jwk().clone()],
    };
    let (base, _) = receiver_app(|_| Config::offline(JwksSource::Static(jwks), ISSUER)).await;
    let jkt = agent_key.kid().to_owned();
    let token = token_with(&registry_key, |c| c["cnf"] = json!({ "jkt": jkt }));
    let url = format!("{base}/hello");
    let proof =
        bonafide_core::dpop::sign(&agent_key, "GET", &url, &token, now(), &unique("p")).unwrap();
    let http = reqwest::Client::new();
    let (status, body, _) = answer(
        http.get(&url)
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code(&body)), (401, "PROOF_INVALID"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("public base URL")
    );
    // Unbound tokens still work.
    let (status, _, _) = answer(
        http.get(&url)
            .bearer_auth(token_with(&registry_key, |_| {}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
}

// --- DPoP proofs made by independent libraries ----------------------------------

pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The interop virtualenv's Python, located like the server tests do.
pub(crate) fn interop_python() -> PathBuf {
    let python = std::env::var_os("BONAFIDE_INTEROP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".interop/venv/bin/python"));
    assert!(
        python.exists(),
        "no interop virtualenv at {}: run `bash scripts/interop-setup.sh` first",
        python.display()
    );
    python
}

fn outside_proof(
    program: &str,
    script: &str,
    key_file: &std::path::Path,
    htm: &str,
    htu: &str,
    token: &str,
) -> String {
    let out = std::process::Command::new(program)
        .arg(repo_root().join(script))
        .args([
            "--key-file",
            key_file.to_str().unwrap(),
            "--htm",
            htm,
            "--htu",
            htu,
        ])
        .args(["--access-token", token])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn dpop_proofs_from_node_jose_and_python_jwcrypto_are_accepted() {
    for alg in [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256] {
        let mut f = Fixture::new().await;
        f.agent_key = SigningKey::generate(alg).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("agent.pem");
        std::fs::write(
            &key_file,
            f.agent_key.to_pkcs8_pem().unwrap().expose_secret(),
        )
        .unwrap();
        let token = f.bound_token();
        let url = format!("{}/hello", f.base);
        let python = interop_python();
        for (program, script) in [
            ("node", "interop/node/dpop_proof.mjs"),
            (python.to_str().unwrap(), "interop/python/dpop_proof.py"),
        ] {
            let proof = outside_proof(program, script, &key_file, "POST", &url, &token);
            let send = || {
                f.http
                    .post(&url)
                    .header("authorization", format!("DPoP {token}"))
                    .header("dpop", &proof)
                    .send()
            };
            let (status, body, _) = answer(send().await.unwrap()).await;
            assert_eq!(status, 200, "{alg:?} {script}: {body}");
            assert_eq!(body["proof"], "dpop");
            let (status, body, _) = answer(send().await.unwrap()).await;
            assert_eq!((status, code(&body)), (401, "REPLAY"), "{alg:?} {script}");
            // The same library's proof for another method is refused.
            let wrong = outside_proof(program, script, &key_file, "GET", &url, &token);
            let (status, body, _) = answer(
                f.http
                    .post(&url)
                    .header("authorization", format!("DPoP {token}"))
                    .header("dpop", &wrong)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(
                (status, code(&body)),
                (401, "PROOF_INVALID"),
                "{alg:?} {script}"
            );
        }
    }
}

// --- Online mode against a stand-in registry -------------------------------------

#[tokio::test]
async fn online_mode_sends_token_and_proof_and_trusts_the_answer() {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let registry = serve(
        Router::new()
            .route(
                "/v1/verify",
                post(
                    |State(seen): State<Arc<Mutex<Vec<Value>>>>, Json(body): Json<Value>| async move {
                        seen.lock().unwrap().push(body.clone());
                        if body["token"] == "revoked" {
                            return (StatusCode::OK, Json(json!({"valid": false, "allowed": false,
                                "error": {"code": "TOKEN_REVOKED", "message": "revoked", "request_id": "req_1"},
                                "reason": "revoked",
                                "reasons": ["TOKEN_REVOKED"], "verified_at": "t"})));
                        }
                        if body["token"] == "receiver-key-refused" {
                            return (StatusCode::UNAUTHORIZED, Json(json!({"error": {
                                "code": "UNAUTHORIZED", "message": "bad key", "request_id": "r"}})));
                        }
                        if body["token"] == "huge" {
                            return (StatusCode::PAYLOAD_TOO_LARGE, Json(json!({"error": {
                                "code": "TOO_LARGE", "message": "too large", "request_id": "r"}})));
                        }
                        if body["token"] == "unbound" && body.get("proof").is_some() {
                            return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": {
                                "code": "PROOF_NOT_APPLICABLE", "message": "not bound",
                                "request_id": "r"}})));
                        }
                        (StatusCode::OK, Json(json!({"valid": true, "allowed": true, "reasons": [],
                            "agent": {"id": AGENT, "did": "did:web:x", "name": "ledger-bot",
                                      "issuer": "Apex Wealth", "active_scopes": ["read:portfolio"]},
                            "user": "alice@example.com", "verified_at": "t"})))
                    },
                ),
            )
            .with_state(seen.clone()),
    )
    .await;
    let (base, _) = receiver_app(|base| {
        Config::online(registry.clone(), None)
            .public_base_url(base)
            .audience("https://api.example")
    })
    .await;
    let http = reqwest::Client::new();
    let url = format!("{base}/hello");

    let (status, body, _) = answer(http.get(&url).bearer_auth("tok-a").send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["agent_id"], AGENT);
    assert_eq!(body["revocation_checked"], true);
    assert_eq!(body["has_claims"], false);

    let (status, body, _) = answer(
        http.post(format!("{url}?x=1"))
            .header("authorization", "DPoP tok-b")
            .header("dpop", "proof-jwt")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["proof"], "dpop");

    let (status, body, _) = answer(
        http.get(format!("{url}?q=1"))
            .header("x-agent-token", "tok-c")
            .header(
                "signature-input",
                r#"sig1=("@authority" "content-type");created=1;keyid="k";nonce="n""#,
            )
            .header("signature", "sig1=:AA==:")
            .header("content-type", "text/plain")
            .header("cookie", "secret")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["proof"], "http-signature");

    let (status, body, _) =
        answer(http.get(&url).bearer_auth("revoked").send().await.unwrap()).await;
    assert_eq!((status, code(&body)), (401, "TOKEN_REVOKED"), "{body}");

    // The registry refusing the receiver's own key is not the agent's fault: 503.
    let (status, body, _) = answer(
        http.get(&url)
            .bearer_auth("receiver-key-refused")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (503, "REGISTRY_UNAVAILABLE"),
        "{body}"
    );
    let (status, body, _) = answer(http.get(&url).bearer_auth("huge").send().await.unwrap()).await;
    assert_eq!((status, code(&body)), (401, "TOO_LARGE"), "{body}");

    // A signed request with an unbound token: asked again without the proof.
    let (status, body, _) = answer(
        http.get(&url)
            .bearer_auth("unbound")
            .header(
                "signature-input",
                r#"sig1=("@authority");created=1;keyid="k""#,
            )
            .header("signature", "sig1=:AA==:")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["proof"], "bearer");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen[0],
        json!({"token": "tok-a", "audience": "https://api.example"})
    );
    assert_eq!(
        seen[1]["proof"],
        json!({"type": "dpop", "jwt": "proof-jwt", "htm": "POST", "htu": url})
    );
    assert_eq!(
        seen[2]["proof"],
        json!({"type": "http-signature", "method": "GET", "url": format!("{url}?q=1"),
               "headers": {
                   "signature": "sig1=:AA==:",
                   "signature-input": r#"sig1=("@authority" "content-type");created=1;keyid="k";nonce="n""#,
                   "content-type": "text/plain"}})
    );

    // A `DPoP` header that is not visible ASCII is a bad proof, as offline (the
    // registry is never asked).
    let bad = reqwest::header::HeaderValue::from_bytes(b"proof-\xff").unwrap();
    let (base, _) =
        receiver_app(|base| Config::online("http://127.0.0.1:9", None).public_base_url(base)).await;
    let (status, body, _) = answer(
        http.get(format!("{base}/hello"))
            .header("authorization", "DPoP tok-b")
            .header("dpop", bad)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code(&body)), (401, "PROOF_INVALID"), "{body}");

    // An unreachable registry fails closed.
    let (status, body, _) = answer(
        http.get(format!("{base}/hello"))
            .bearer_auth("tok")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (503, "REGISTRY_UNAVAILABLE"),
        "{body}"
    );
}

#[tokio::test]
async fn jwks_is_refreshed_in_the_background_when_old() {
    let f = Fixture::with(|mut c| {
        if let JwksSource::Url {
            refresh,
            min_refetch,
            ..
        } = &mut c.jwks
        {
            *refresh = Duration::ZERO;
            *min_refetch = Duration::from_secs(3600);
        }
        c
    })
    .await;
    let before = *f.keys.fetches.lock().unwrap();
    let new_key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    f.keys
        .jwks
        .lock()
        .unwrap()
        .keys
        .push(new_key.verifying_key().jwk().clone());
    // A request with a known key answers from the cache and starts a refresh.
    let (status, _, _) = answer(
        f.http
            .get(format!("{}/hello", f.base))
            .bearer_auth(f.token(|_| {}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    for _ in 0..100 {
        if *f.keys.fetches.lock().unwrap() > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(*f.keys.fetches.lock().unwrap() > before);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The new key is known without a foreground refetch (min_refetch is an hour).
    let (status, body, _) = answer(
        f.http
            .get(format!("{}/hello", f.base))
            .bearer_auth(token_with(&new_key, |_| {}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_full_replay_cache_fails_closed_with_503() {
    let f = Fixture::with(|mut c| {
        c.replay_capacity = 1; // one live proof per shard
        c
    })
    .await;
    let token = f.bound_token();
    let url = format!("{}/hello", f.base);
    let mut full = None;
    for _ in 0..40 {
        let resp = f
            .http
            .get(&url)
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", f.dpop("GET", &url, &token))
            .send()
            .await
            .unwrap();
        if resp.status() == 503 {
            full = Some(resp);
            break;
        }
        assert_eq!(resp.status(), 200);
    }
    let resp = full.expect("the cache fills up");
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(code(&body), "REPLAY_CACHE_FULL");
}

#[tokio::test]
async fn under_a_nested_router_proofs_name_the_whole_path() {
    let registry_key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let agent_key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let jwks = Jwks {
        keys: vec![registry_key.verifying_key().jwk().clone()],
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let receiver = Receiver::new(
        Config::offline(JwksSource::Static(jwks), ISSUER).public_base_url(base.clone()),
    )
    .await
    .unwrap();
    let api = Router::new()
        .route("/hello", get(hello))
        .layer(receiver.layer());
    let app = Router::new().nest("/api", api);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let jkt = agent_key.kid().to_owned();
    let token = token_with(&registry_key, |c| c["cnf"] = json!({ "jkt": jkt }));
    let url = format!("{base}/api/hello");
    let http = reqwest::Client::new();
    for (htu, want) in [(url.clone(), 200), (format!("{base}/hello"), 401)] {
        let proof = bonafide_core::dpop::sign(&agent_key, "GET", &htu, &token, now(), &unique("p"))
            .unwrap();
        let (status, body, _) = answer(
            http.get(&url)
                .header("authorization", format!("DPoP {token}"))
                .header("dpop", proof)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, want, "{htu}: {body}");
    }
}
