//! Test support shared by the integration tests: the real server on 127.0.0.1:0 with
//! a temp SQLite data dir, and an HTTP client for it.
#![allow(dead_code)]

use std::sync::Arc;

use bonafide_core::apikey::{ApiKey, KeyKind};
use bonafide_core::jws;
use bonafide_core::keys::Algorithm;
use bonafide_server::{AppState, Config, Server};
use bonafide_store::{SqliteStore, Store};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub struct Harness {
    pub base: String,
    pub state: Arc<AppState>,
    pub http: reqwest::Client,
    pub admin: String,
    /// The SQLite database file under the temp data dir (for tests that look behind
    /// the server's back).
    pub db_path: std::path::PathBuf,
    config: Config,
    _dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), bonafide_server::ServerError>>,
}

pub fn now_s() -> i64 {
    bonafide_server::time::now_ms() / 1000
}

/// The server settings of every test here: the defaults, with the status-list
/// publisher off. Tests count the audit log's entries exactly ("a repeated revoke
/// appends nothing"), and the publisher appends a `status_list.published` entry
/// shortly after any revocation or suspension, which would land inside those counts;
/// the publisher has its own tests (`status_lists`), which turn it on.
pub fn config() -> Config {
    Config {
        publish_status_lists: false,
        ..Config::default()
    }
}

pub async fn start_with(alg: Algorithm) -> Harness {
    start_with_config(Config {
        signing_alg: alg,
        ..config()
    })
    .await
}

pub async fn start_with_config(config: Config) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let admin = ApiKey::from_random(KeyKind::Admin, rand20());
    store
        .add_admin_key(&admin.hash(), 0, &admin_key_audit())
        .await
        .unwrap();
    boot(dir, store, config, admin.expose_secret().to_owned()).await
}

/// Like [`start_with_config`], with the data dir a fresh directory inside `parent`
/// (say, a size-limited file system the test mounted).
pub async fn start_in(parent: &std::path::Path, config: Config) -> Harness {
    let dir = tempfile::tempdir_in(parent).unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let admin = ApiKey::from_random(KeyKind::Admin, rand20());
    store
        .add_admin_key(&admin.hash(), 0, &admin_key_audit())
        .await
        .unwrap();
    boot(dir, store, config, admin.expose_secret().to_owned()).await
}

/// The real server on `store` (in `dir`), on 127.0.0.1:0.
async fn boot(
    dir: tempfile::TempDir,
    store: SqliteStore,
    config: Config,
    admin: String,
) -> Harness {
    let db_path = store.path().to_path_buf();
    let store: Arc<dyn Store> = Arc::new(store);
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), config.clone(), store)
        .await
        .unwrap();
    let base = format!("http://{}", server.local_addr().unwrap());
    let state = server.state();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    Harness {
        base,
        state,
        http: reqwest::Client::new(),
        admin,
        db_path,
        config,
        _dir: dir,
        _stop: tx,
        task,
    }
}

impl Harness {
    /// A connection of its own to the server's SQLite database, for tests that look
    /// or change things behind the server's back (as another process would).
    pub async fn db(&self) -> sqlx::sqlite::SqliteConnection {
        use sqlx::Connection;
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&self.db_path)
            .busy_timeout(std::time::Duration::from_secs(10));
        sqlx::sqlite::SqliteConnection::connect_with(&options)
            .await
            .unwrap()
    }

    /// Stops this server (waiting for it to finish) and starts a new one on the same
    /// data dir and config: what a registry restart keeps, the new one has.
    pub async fn restart(self) -> Harness {
        let Harness {
            admin,
            mut config,
            base,
            _dir: dir,
            _stop: stop,
            task,
            state,
            ..
        } = self;
        drop(state);
        // The registry keeps its identity (its tokens' `iss`) across the restart,
        // though the test server comes back on another port.
        if config.public_url.is_empty() {
            config.public_url = base;
        }
        let _ = stop.send(());
        task.await.unwrap().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        boot(dir, store, config, admin).await
    }
}

pub async fn start() -> Harness {
    start_with(Algorithm::EdDSA).await
}

/// The audit record of adding the test's admin key.
pub fn admin_key_audit() -> bonafide_store::AuditRecord {
    use bonafide_core::audit::{Actor, AuditEntry, EventType};
    let entry = AuditEntry::new(EventType::KeyAdded, 0, Actor::Registry);
    bonafide_server::audit::record(&entry, None, None).unwrap()
}

pub fn rand20() -> [u8; 20] {
    let mut b = [0u8; 20];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    b
}

impl Harness {
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "GET" => self.http.get(&url),
            "POST" => self.http.post(&url),
            "PUT" => self.http.put(&url),
            "DELETE" => self.http.delete(&url),
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
        let text = resp.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    pub async fn issuer(&self, name: &str) -> String {
        let (st, v) = self
            .call(
                "POST",
                "/v1/issuers",
                Some(&self.admin),
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        v["api_key"].as_str().unwrap().to_owned()
    }

    pub async fn register(&self, key: &str, body: Value) -> Value {
        let (st, v) = self
            .call("POST", "/v1/agents/register", Some(key), Some(body))
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        v
    }

    pub async fn verify(&self, body: Value) -> Value {
        let (st, v) = self.call("POST", "/v1/verify", None, Some(body)).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        v
    }

    pub async fn verify_token(&self, token: &str) -> Value {
        self.verify(json!({"token": token})).await
    }

    /// Signs arbitrary claims with the registry's real active key.
    pub fn sign_raw(&self, payload: &str) -> String {
        let ring = self.state.keys();
        jws::sign_compact(&ring.active, "agent+jwt", payload.as_bytes()).unwrap()
    }

    pub fn claims(&self, agent_id: &str) -> Value {
        let now = now_s();
        json!({
            "iss": self.base, "sub": agent_id, "iat": now, "nbf": now, "exp": now + 600,
            "jti": "tok_aaaaaaaaaaaaaaaaaaaaaaaaaa",
            "agent": {"name": "X", "issuer": "x.example", "scopes": ["read:x"]},
            "scope": "read:x"
        })
    }
}

/// An issuer created through the API: its key, id and name.
pub struct CreatedIssuer {
    pub key: String,
    pub id: String,
    pub name: String,
}

impl Harness {
    /// Creates an issuer (admin key) and returns its key, id and name.
    pub async fn issuer_full(&self, name: &str) -> CreatedIssuer {
        let (st, v) = self
            .call(
                "POST",
                "/v1/issuers",
                Some(&self.admin),
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        CreatedIssuer {
            key: v["api_key"].as_str().unwrap().to_owned(),
            id: v["issuer_id"].as_str().unwrap().to_owned(),
            name: name.to_owned(),
        }
    }

    /// A fresh key proof (`bonafide-key-proof+jwt`) by `sk` for registering it as a
    /// key of `issuer_id` at this registry.
    pub fn key_proof(&self, issuer_id: &str, sk: &bonafide_core::keys::SigningKey) -> String {
        let claims = bonafide_core::key_proof::KeyProofClaims {
            iss: issuer_id.to_owned(),
            aud: self.state.config.public_url.clone(),
            iat: now_s(),
            jkt: sk.kid().to_owned(),
            jti: None,
        };
        bonafide_core::key_proof::sign(sk, &claims).unwrap()
    }

    /// `POST /v1/issuer/keys` with the public half of `sk` and its key proof.
    pub async fn add_issuer_key(
        &self,
        api_key: &str,
        issuer_id: &str,
        sk: &bonafide_core::keys::SigningKey,
    ) -> (StatusCode, Value) {
        let jwk = serde_json::to_value(sk.verifying_key().jwk()).unwrap();
        let proof = self.key_proof(issuer_id, sk);
        self.call(
            "POST",
            "/v1/issuer/keys",
            Some(api_key),
            Some(json!({"jwk": jwk, "proof": proof})),
        )
        .await
    }
}

/// The interop virtualenv's Python (`BONAFIDE_INTEROP_PYTHON` overrides), which the
/// test command installs; a clear hint when it is missing.
pub fn interop_python() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = std::env::var_os("BONAFIDE_INTEROP_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join(".interop/venv/bin/python"));
    assert!(
        python.exists(),
        "no interop virtualenv at {}: run `bash scripts/interop-setup.sh` first",
        python.display()
    );
    python
}

/// A `GET /v1/verify/{token}` answer for a token that is not valid: exactly `valid:
/// false` and the error object (`code`, `message`, `request_id`), the shape of an
/// error answer's `error`.
#[track_caller]
pub fn assert_simple_denial(v: &Value, code: &str) {
    let answer: bonafide_api::verify::SimpleVerify =
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"));
    let error = answer.error.as_ref().unwrap_or_else(|| panic!("{v}"));
    assert!(!answer.valid, "{v}");
    assert_eq!(error.code.as_str(), code, "{v}");
    assert!(error.code.is_known(), "{v}");
    assert!(!error.message.is_empty(), "{v}");
    assert!(error.request_id.starts_with("req_"), "{v}");
    // Nothing else: what the type writes back is all that was sent.
    assert_eq!(&serde_json::to_value(&answer).unwrap(), v);
    assert_eq!(
        v.as_object().map(|o| o.len()),
        Some(2),
        "only `valid` and `error`: {v}"
    );
}
