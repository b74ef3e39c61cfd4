//! The receiver layer against the real registry (`bonafide-server` on 127.0.0.1:0 with
//! a temp SQLite store): offline with the registry's JWKS and agent key directory, and
//! online through its `POST /v1/verify` with DPoP proofs and message signatures.

use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use bonafide_client::receiver::{Config, JwksSource, ProofKind, Receiver, VerifiedAgent};
use bonafide_core::apikey::{ApiKey, KeyKind};
use bonafide_core::httpsig::{self, Message, SignParams};
use bonafide_core::keys::{Algorithm, SigningKey};
use bonafide_store::{SqliteStore, Store};
use serde_json::{Value, json};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let d = bonafide_core::sha256(format!("{tag}{n}{:?}", std::time::Instant::now()).as_bytes());
    format!("{tag}{}", bonafide_core::hex(&d[..16]))
}

pub(crate) struct Registry {
    pub(crate) base: String,
    admin: String,
    pub(crate) http: reqwest::Client,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Registry {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// The registry with its configuration changed by `f`.
    pub(crate) async fn start_with(f: impl FnOnce(&mut bonafide_server::Config)) -> Self {
        use bonafide_core::audit::{Actor, AuditEntry, EventType};
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let mut seed = [0u8; 20];
        seed.copy_from_slice(&bonafide_core::sha256(unique("admin").as_bytes())[..20]);
        let admin = ApiKey::from_random(KeyKind::Admin, seed);
        let entry = AuditEntry::new(EventType::KeyAdded, 0, Actor::Registry);
        let record = bonafide_server::audit::record(&entry, None, None).unwrap();
        store
            .add_admin_key(&admin.hash(), 0, &record)
            .await
            .unwrap();
        let store: Arc<dyn Store> = Arc::new(store);
        let mut config = bonafide_server::Config {
            signing_alg: Algorithm::EdDSA,
            ..bonafide_server::Config::default()
        };
        f(&mut config);
        let server = bonafide_server::Server::bind("127.0.0.1:0".parse().unwrap(), config, store)
            .await
            .unwrap();
        let base = format!("http://{}", server.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Registry {
            base,
            admin: admin.expose_secret().to_owned(),
            http: reqwest::Client::new(),
            _dir: dir,
            _stop: tx,
        }
    }

    pub(crate) async fn post(&self, path: &str, key: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    /// A new issuer's API key.
    pub(crate) async fn issuer(&self) -> String {
        let issuer = self
            .post("/v1/issuers", &self.admin, json!({"name": unique("iss-")}))
            .await;
        issuer["api_key"].as_str().unwrap().to_owned()
    }

    /// An unbound agent of the issuer whose key is `issuer`: (agent id, token).
    pub(crate) async fn agent_of(&self, issuer: &str) -> (String, String) {
        let body = json!({"name": "ledger-bot", "scopes": ["read:portfolio"]});
        let v = self.post("/v1/agents/register", issuer, body).await;
        (
            v["agent_id"].as_str().unwrap().to_owned(),
            v["token"].as_str().unwrap().to_owned(),
        )
    }

    /// An issuer, and an agent of it: bound to `key` if given. (agent id, token)
    async fn agent(&self, key: Option<&SigningKey>) -> (String, String) {
        let issuer = self
            .post("/v1/issuers", &self.admin, json!({"name": unique("iss-")}))
            .await;
        let mut body = json!({"name": "ledger-bot", "scopes": ["read:portfolio"]});
        if let Some(k) = key {
            body["public_key"] = serde_json::to_value(k.verifying_key().jwk()).unwrap();
        }
        let v = self
            .post(
                "/v1/agents/register",
                issuer["api_key"].as_str().unwrap(),
                body,
            )
            .await;
        (
            v["agent_id"].as_str().unwrap().to_owned(),
            v["token"].as_str().unwrap().to_owned(),
        )
    }
}

pub(crate) async fn hello(agent: VerifiedAgent) -> Json<Value> {
    Json(json!({
        "agent_id": agent.agent_id.as_str(),
        "name": agent.name,
        "proof": match agent.proof {
            None => "bearer",
            Some(ProofKind::Dpop) => "dpop",
            Some(ProofKind::HttpSignature) => "http-signature",
            Some(_) => "other",
        },
        "revocation_checked": agent.revocation_checked,
        "list_age_s": agent.status_list.as_ref().and_then(|s| s.age()).map(|a| a.as_secs()),
    }))
}

pub(crate) async fn receiver(make: impl FnOnce(String) -> Config) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let receiver = Receiver::new(make(base.clone())).await.unwrap();
    let app = Router::new()
        .route("/orders", get(hello).post(hello))
        .layer(receiver.layer());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

fn signed(key: &SigningKey, method: &str, url: &str) -> Vec<(String, String)> {
    let t = now();
    let nonce = unique("n");
    let msg = Message::Request {
        method,
        url,
        headers: &[],
    };
    let s = httpsig::sign(
        key,
        &msg,
        &["@method", "@authority", "@path"],
        &SignParams {
            label: "sig1",
            created: t,
            expires: Some(t + 60),
            keyid: None,
            nonce: Some(&nonce),
            tag: Some(httpsig::WEB_BOT_AUTH_TAG),
            include_alg: false,
        },
    )
    .unwrap();
    vec![
        ("signature-input".into(), s.signature_input),
        ("signature".into(), s.signature),
    ]
}

/// Repeats `call` until `done` holds for its answer (a list is published within a
/// second of a change; the deadline only keeps a broken build from hanging); the
/// last answer.
pub(crate) async fn until<F, Fut>(call: F, done: impl Fn(u16, &Value) -> bool) -> (u16, Value)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = (u16, Value)>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (st, v) = call().await;
        if done(st, &v) || std::time::Instant::now() > deadline {
            return (st, v);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Sends and returns (status, body).
pub(crate) async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub(crate) fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

/// Both modes, the same requests: a bound agent's DPoP proof and message signature
/// are accepted once, a bearer use of its token is refused, an unbound agent's token
/// passes as a bearer token.
#[tokio::test]
async fn offline_and_online_against_the_real_registry() {
    let reg = Registry::start().await;
    let agent_key = SigningKey::generate(Algorithm::ES256).unwrap();
    let (agent_id, bound) = reg.agent(Some(&agent_key)).await;
    let (plain_id, plain) = reg.agent(None).await;
    let http = reqwest::Client::new();

    let offline = receiver(|me| {
        Config::offline(
            JwksSource::url(format!("{}/.well-known/jwks.json", reg.base)),
            reg.base.clone(),
        )
        .public_base_url(me)
        .agent_keys_from_registry(reg.base.clone())
    })
    .await;
    let online = receiver(|me| Config::online(reg.base.clone(), None).public_base_url(me)).await;

    // A new list is published within a second of its first slot: until then the
    // offline receiver fails closed (503 STATUS_LIST_UNAVAILABLE).
    let url = format!("{offline}/orders");
    until(
        || send(http.get(&url).bearer_auth(&plain)),
        |st, _| st == 200,
    )
    .await;
    for (mode, base) in [("offline", &offline), ("online", &online)] {
        let url = format!("{base}/orders");
        // Offline too: registry tokens name their status list, which the layer reads.
        let checked = true;

        let (st, v) = send(http.get(&url).bearer_auth(&plain)).await;
        assert_eq!(st, 200, "{mode}: {v}");
        assert_eq!(v["agent_id"], plain_id.as_str());
        assert_eq!(v["proof"], "bearer");
        assert_eq!(v["revocation_checked"], checked);

        let (st, v) = send(http.get(&url).bearer_auth(&bound)).await;
        assert_eq!((st, code(&v)), (401, "PROOF_REQUIRED"), "{mode}: {v}");

        let proof =
            bonafide_core::dpop::sign(&agent_key, "POST", &url, &bound, now(), &unique("p"))
                .unwrap();
        let dpop = || {
            http.post(&url)
                .header("authorization", format!("DPoP {bound}"))
                .header("dpop", &proof)
        };
        let (st, v) = send(dpop()).await;
        assert_eq!(st, 200, "{mode}: {v}");
        assert_eq!(v["agent_id"], agent_id.as_str());
        assert_eq!(v["proof"], "dpop");
        let (st, v) = send(dpop()).await;
        assert_eq!((st, code(&v)), (401, "REPLAY"), "{mode}: {v}");

        let headers = signed(&agent_key, "GET", &url);
        let sig = || {
            let mut r = http.get(&url).header("x-agent-token", &bound);
            for (n, val) in &headers {
                r = r.header(n, val);
            }
            r
        };
        let (st, v) = send(sig()).await;
        assert_eq!(st, 200, "{mode}: {v}");
        assert_eq!(v["proof"], "http-signature");
        let (st, v) = send(sig()).await;
        assert_eq!((st, code(&v)), (401, "REPLAY"), "{mode}: {v}");

        // Signed by a key that is not the agent's.
        let stranger = SigningKey::generate(Algorithm::ES256).unwrap();
        let mut r = http.get(&url).header("x-agent-token", &bound);
        for (n, val) in signed(&stranger, "GET", &url) {
            r = r.header(n, val);
        }
        let (st, v) = send(r).await;
        assert_eq!((st, code(&v)), (401, "PROOF_INVALID"), "{mode}: {v}");

        // An unbound token on a signed request: the signature is not needed.
        let mut r = http.get(&url).bearer_auth(&plain);
        for (n, val) in signed(&agent_key, "GET", &url) {
            r = r.header(n, val);
        }
        let (st, v) = send(r).await;
        assert_eq!(st, 200, "{mode}: {v}");
        assert_eq!(v["proof"], "bearer");
    }
}

/// `Client::receipt`: the receipt of a real verify decision, fetched by the agent's
/// issuer and verified with the registry's receipt JWKS, is the receipt of the
/// request sent and of no other; an id that is not one is refused unsent.
#[tokio::test]
async fn a_verify_receipt_is_fetched_verified_and_bound_to_its_request() {
    use bonafide_client::receipts::ReceiptCheckError;
    use bonafide_client::{Client, ClientError, VerifyRequest};
    use bonafide_core::receipt::ReceiptError;
    let r = Registry::start().await;
    let issuer = r.issuer().await;
    let (agent_id, token) = r.agent_of(&issuer).await;
    let client = Client::new(&r.base, Some(issuer)).unwrap();
    let req = VerifyRequest {
        token,
        scopes: vec!["read:portfolio".into()],
        ..VerifyRequest::default()
    };
    let answer = client.verify_request(&req).await.unwrap();
    assert!(answer.valid && answer.allowed);
    let id = answer.receipt_id.expect("a receipt");
    let (jws, receipt) = client.receipt(&id).await.unwrap();
    assert_eq!(receipt.claims.receipt_id.as_str(), id);
    assert_eq!(
        receipt.claims.agent_id.as_ref().map(|a| a.as_str()),
        Some(agent_id.as_str())
    );
    let body = serde_json::to_vec(&req).unwrap();
    let facts = receipt.check_request(&body).unwrap();
    assert_eq!(facts.sha256_hex(), receipt.claims.request_sha256);
    // Another request (wider scopes): not this receipt's.
    let other = VerifyRequest {
        scopes: vec!["read:portfolio".into(), "payments:write".into()],
        ..req.clone()
    };
    let e = receipt
        .check_request(&serde_json::to_vec(&other).unwrap())
        .unwrap_err();
    assert!(matches!(e, ReceiptError::RequestMismatch { .. }), "{e:?}");
    // The `jws` kept verifies offline with the receipt keys, not the token keys.
    let receipt_keys = client.receipt_jwks().await.unwrap();
    assert!(bonafide_client::receipts::verify(&jws, &receipt_keys).is_ok());
    let token_keys = client.jwks().await.unwrap();
    assert!(bonafide_client::receipts::verify(&jws, &token_keys).is_err());
    let e = client.receipt("../v1/agents").await.unwrap_err();
    assert!(
        matches!(e, ClientError::Receipt(ReceiptCheckError::InvalidId(_))),
        "{e:?}"
    );
}
