//! What every comparison sets up with: servers in this process (the real Bonafide
//! server, bare axum routes) and how to stop them, the registry the in-process modes
//! share (issuer, agent, token over HTTP), and the setup's HTTP calls.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use aws_lc_rs::signature::{self, ParsedPublicKey};
use axum::Router;
use bonafide_core::apikey::{ApiKey, KeyKind};
use bonafide_core::b64;
use bonafide_core::keys::Algorithm;
use bonafide_core::policy::Decimal;
use bonafide_server::{AppState, Config, Server};
use bonafide_store::{SqliteStore, Store};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::cluster::{Postgres, Replica};
use crate::report;

/// Scopes granted to the benchmark agent.
pub const GRANTED: [&str; 2] = ["read:portfolio", "read:transactions"];
/// Scope asked about on every Bonafide verify.
pub const REQUESTED: &str = "read:portfolio";
/// Public URL of the registry when several servers must accept one token (the audited
/// and unaudited servers of `--compare-audit`, replicas): its `iss` (by default it
/// would be each server's own address).
pub const PUBLIC_URL: &str = "https://registry.bench.example";
/// The issuer every comparison creates.
pub const ISSUER_NAME: &str = "apexwealth.com";

/// A spawned server in this process and how to stop it.
#[derive(Debug)]
pub struct Running {
    name: &'static str,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), String>>,
}

/// Everything a comparison started, stopped by [`Servers::stop`] (or, on an error
/// path, by dropping: processes are killed and the cluster stopped).
#[derive(Debug, Default)]
pub struct Servers {
    pub running: Vec<Running>,
    /// The temporary data dir, removed on drop.
    pub dir: Option<tempfile::TempDir>,
    /// `bonafide serve` processes.
    pub replicas: Vec<Replica>,
    /// The PostgreSQL server the replicas use.
    pub postgres: Option<Postgres>,
}

impl Servers {
    /// The data dir and the file system it is on.
    pub fn data_dir(&self) -> String {
        match &self.dir {
            Some(dir) => {
                let path = dir.path();
                format!("{} ({})", path.display(), report::file_system(path))
            }
            None => "-".to_owned(),
        }
    }

    pub async fn stop(self) -> Result<()> {
        let mut first_error = None;
        for Running { name, stop, task } in self.running {
            // The receiver is gone only if the server already stopped.
            let _ = stop.send(());
            let result = match tokio::time::timeout(Duration::from_secs(10), task).await {
                Ok(Ok(Ok(()))) => Ok(()),
                Ok(Ok(Err(e))) => Err(anyhow!("{name} server failed: {e}")),
                Ok(Err(e)) => Err(anyhow!("{name} server task: {e}")),
                Err(_) => Err(anyhow!("{name} server did not stop within 10 s")),
            };
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        for replica in self.replicas {
            if let Err(e) = replica.stop() {
                first_error.get_or_insert(e);
            }
        }
        // After the replicas: their connections must be gone to drop the database.
        if let Some(pg) = self.postgres
            && let Err(e) = pg.stop().await
        {
            first_error.get_or_insert(e);
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Serves `app` on 127.0.0.1:0 until stopped.
pub async fn spawn_axum(name: &'static str, app: Router) -> Result<(SocketAddr, Running)> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .with_context(|| format!("binding the {name} server"))?;
    let addr = listener
        .local_addr()
        .with_context(|| format!("{name} server address"))?;
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
            .map_err(|e| e.to_string())
    });
    Ok((addr, Running { name, stop, task }))
}

/// Starts a real Bonafide server on 127.0.0.1:0 in this process.
pub async fn spawn_bonafide(
    name: &'static str,
    config: Config,
    store: Arc<dyn Store>,
) -> Result<(SocketAddr, Running, Arc<AppState>)> {
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let server = Server::bind(loopback, config, store)
        .await
        .with_context(|| format!("binding the {name} server"))?;
    let addr = server
        .local_addr()
        .with_context(|| format!("{name} server address"))?;
    let state = server.state();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .run(async {
                let _ = rx.await;
            })
            .await
            .map_err(|e| e.to_string())
    });
    Ok((addr, Running { name, stop, task }, state))
}

/// The in-process modes' registry: one real server on a temporary SQLite data dir
/// (EdDSA signing key, one admin key), an issuer and an agent made over HTTP, as a
/// deployment would.
pub struct Local {
    pub store: Arc<dyn Store>,
    pub config: Config,
    pub admin: ApiKey,
    pub addr: SocketAddr,
    pub base: String,
    pub state: Arc<AppState>,
    pub http: reqwest::Client,
    /// The agent's registry-signed token.
    pub token: String,
    /// The registry's Ed25519 key, from its JWKS.
    pub public_key: Arc<ParsedPublicKey>,
    pub issuer_key: String,
    pub issuer_id: String,
    pub agent_id: String,
    pub servers: Servers,
}

impl Local {
    /// Starts the server (named `name`) with `config` and makes the issuer and agent.
    pub async fn start(name: &'static str, config: Config, parent: Option<&Path>) -> Result<Self> {
        let dir = temp_dir(parent)?;
        let store = SqliteStore::open(dir.path())
            .await
            .context("opening the SQLite store")?;
        let admin = ApiKey::from_random(KeyKind::Admin, random()?);
        store
            .add_admin_key(
                &admin.hash(),
                0,
                &bonafide_server::audit::record(
                    &bonafide_core::audit::AuditEntry::new(
                        bonafide_core::audit::EventType::KeyAdded,
                        0,
                        bonafide_core::audit::Actor::Registry,
                    ),
                    None,
                    None,
                )?,
            )
            .await
            .context("adding the admin key")?;
        let store: Arc<dyn Store> = Arc::new(store);
        let config = Config {
            signing_alg: Algorithm::EdDSA,
            ..config
        };
        let (addr, running, state) =
            spawn_bonafide(name, config.clone(), Arc::clone(&store)).await?;
        let servers = Servers {
            running: vec![running],
            dir: Some(dir),
            ..Servers::default()
        };
        let base = format!("http://{addr}");
        let http = http_client()?;
        let made = Made::issuer_and_agent(&http, &base, admin.expose_secret()).await?;
        let jwks = call(
            &http,
            &format!("{base}/.well-known/jwks.json"),
            None,
            None,
            200,
        )
        .await?;
        let public_key = ed25519_key_from_jwks(&jwks, &made.token)?;
        Ok(Local {
            store,
            config,
            admin,
            addr,
            base,
            state,
            http,
            token: made.token,
            public_key: Arc::new(public_key),
            issuer_key: made.issuer_key,
            issuer_id: made.issuer_id,
            agent_id: made.agent_id,
            servers,
        })
    }
}

/// An issuer and its agent, made over HTTP on one registry.
pub struct Made {
    pub issuer_key: String,
    pub issuer_id: String,
    pub agent_id: String,
    pub token: String,
}

impl Made {
    /// `POST /v1/issuers` as the admin, then the issuer registers an agent with
    /// [`GRANTED`] scopes.
    pub async fn issuer_and_agent(http: &reqwest::Client, base: &str, admin: &str) -> Result<Self> {
        let issuer = call(
            http,
            &format!("{base}/v1/issuers"),
            Some(admin),
            Some(json!({"name": ISSUER_NAME})),
            201,
        )
        .await?;
        let issuer_key = str_member(&issuer, "api_key")?;
        let issuer_id = str_member(&issuer, "issuer_id")?;
        let agent = call(
            http,
            &format!("{base}/v1/agents/register"),
            Some(&issuer_key),
            Some(json!({
                "name": "PortfolioBot",
                "description": "Reads portfolio data",
                "scopes": GRANTED,
            })),
            201,
        )
        .await?;
        Ok(Made {
            issuer_key,
            issuer_id,
            agent_id: str_member(&agent, "agent_id")?,
            token: str_member(&agent, "token")?,
        })
    }
}

/// The body of the plain verify every comparison sends.
pub fn verify_body(token: &str) -> Result<Bytes> {
    Ok(Bytes::from(
        serde_json::to_vec(&json!({"token": token, "scopes_requested": [REQUESTED]}))
            .context("encoding the verify request")?,
    ))
}

/// A temporary dir under `parent` (default: the system temp dir), removed on drop.
pub fn temp_dir(parent: Option<&Path>) -> Result<tempfile::TempDir> {
    match parent {
        Some(p) => tempfile::tempdir_in(p),
        None => tempfile::tempdir(),
    }
    .context("creating a temp data dir")
}

pub fn random() -> Result<[u8; 20]> {
    let mut random = [0u8; 20];
    aws_lc_rs::rand::fill(&mut random).map_err(|_| anyhow!("no randomness"))?;
    Ok(random)
}

pub fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .context("building the setup HTTP client")
}

/// Unix seconds now.
pub fn now_s() -> i64 {
    bonafide_server::time::now_ms() / 1000
}

pub fn decimal(text: &str) -> Result<Decimal> {
    text.parse()
        .with_context(|| format!("`{text}` is not a decimal amount"))
}

/// One verify of `token` through `base`'s real endpoint; it must be valid and allowed,
/// and carry an `audit_index` exactly when decisions are audited.
pub async fn check_bonafide(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    audited: bool,
) -> Result<()> {
    let check = call(
        http,
        &format!("{base}/v1/verify"),
        None,
        Some(json!({"token": token, "scopes_requested": [REQUESTED]})),
        200,
    )
    .await?;
    ensure!(
        check["valid"] == true && check["allowed"] == true,
        "{base} did not accept the registry's token: {check}"
    );
    ensure!(
        check["audit_index"].is_u64() == audited,
        "{base}: `audit_index` {} but verify decisions are {}audited: {check}",
        if check["audit_index"].is_u64() {
            "present"
        } else {
            "absent"
        },
        if audited { "" } else { "not " }
    );
    Ok(())
}

/// One setup call; fails unless the status is `want`.
pub async fn call(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    body: Option<Value>,
    want: u16,
) -> Result<Value> {
    let mut req = match &body {
        Some(b) => http.post(url).json(b),
        None => http.get(url),
    };
    if let Some(key) = bearer {
        req = req.bearer_auth(key);
    }
    finish(req, url, want).await
}

/// One `POST` with a receiver key in `X-API-Key`; fails unless the status is `want`.
pub async fn call_as_receiver(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    body: &Value,
    want: u16,
) -> Result<Value> {
    finish(
        http.post(url).header("x-api-key", key).json(body),
        url,
        want,
    )
    .await
}

async fn finish(req: reqwest::RequestBuilder, url: &str, want: u16) -> Result<Value> {
    let resp = req.send().await.with_context(|| format!("calling {url}"))?;
    let status = resp.status().as_u16();
    let text = resp
        .text()
        .await
        .with_context(|| format!("reading the answer of {url}"))?;
    if status != want {
        bail!("{url}: status {status}, want {want}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("{url}: answer is not JSON: {text}"))
}

pub fn str_member(v: &Value, name: &str) -> Result<String> {
    v[name]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("answer has no string `{name}`: {v}"))
}

/// The JSON of a compact JWS's header.
pub fn jws_header(token: &str) -> Option<Value> {
    token
        .split('.')
        .next()
        .and_then(|h| b64::decode(h).ok())
        .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
}

/// The Ed25519 key that signed `token` from the registry's JWK Set (the one with the
/// token's `kid`; the set also holds the receipt key): `x`, raw 32 bytes.
fn ed25519_key_from_jwks(jwks: &Value, token: &str) -> Result<ParsedPublicKey> {
    let keys = jwks["keys"]
        .as_array()
        .ok_or_else(|| anyhow!("JWKS has no `keys` array: {jwks}"))?;
    let header =
        jws_header(token).ok_or_else(|| anyhow!("the registry's token has no readable header"))?;
    let jwk = keys
        .iter()
        .find(|k| k["kty"] == "OKP" && k["crv"] == "Ed25519" && k["kid"] == header["kid"])
        .ok_or_else(|| {
            anyhow!(
                "JWKS has no OKP/Ed25519 key with the token's kid {}: {jwks}",
                header["kid"]
            )
        })?;
    let x = jwk["x"]
        .as_str()
        .ok_or_else(|| anyhow!("Ed25519 JWK has no `x`"))?;
    let raw = b64::decode(x).context("Ed25519 JWK `x` is not base64url")?;
    ensure!(raw.len() == 32, "Ed25519 JWK `x` is {} bytes", raw.len());
    ParsedPublicKey::new(&signature::ED25519, raw)
        .map_err(|_| anyhow!("AWS-LC refused the Ed25519 public key"))
}
