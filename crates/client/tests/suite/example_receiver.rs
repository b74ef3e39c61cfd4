//! `examples/receiver.rs` as the README runs it: built by Cargo, started as a process
//! against a real registry, it prints where it listens and answers a verified agent in
//! plain words (no Rust debug output such as `Some(…)`/`None`), and refuses a request
//! without a token.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use bonafide_core::apikey::{ApiKey, KeyKind};
use bonafide_store::{SqliteStore, Store};
use serde_json::{Value, json};

/// Kills the example when the test ends, whichever way it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Builds the example (nothing to do when `cargo test` already built it) and returns
/// its path, as Cargo reports it.
fn example_binary() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "-p",
            "bonafide-client",
            "--example",
            "receiver",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo build --example receiver failed"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|m| m["target"]["name"] == "receiver" && m["executable"].is_string())
        .and_then(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo named the example's executable")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_receiver_example_prints_where_it_listens_and_answers_in_plain_words() {
    // The registry, in process, with one admin key.
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let admin = ApiKey::from_random(KeyKind::Admin, [7; 20]);
    let entry = bonafide_core::audit::AuditEntry::new(
        bonafide_core::audit::EventType::KeyAdded,
        0,
        bonafide_core::audit::Actor::Registry,
    );
    let record = bonafide_server::audit::record(&entry, None, None).unwrap();
    store
        .add_admin_key(&admin.hash(), 0, &record)
        .await
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(store);
    let server = bonafide_server::Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        bonafide_server::Config::default(),
        store,
    )
    .await
    .unwrap();
    let registry = format!("http://{}", server.local_addr().unwrap());
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let http = reqwest::Client::new();
    let post = |path: &str, key: &str, body: Value| {
        let req = http
            .post(format!("{registry}{path}"))
            .bearer_auth(key)
            .json(&body);
        async move {
            let resp = req.send().await.unwrap();
            assert!(resp.status().is_success(), "{}", resp.status());
            resp.json::<Value>().await.unwrap()
        }
    };
    let issuer = post(
        "/v1/issuers",
        admin.expose_secret(),
        json!({"name": "example.test"}),
    )
    .await;
    let issuer_key = issuer["api_key"].as_str().unwrap().to_owned();
    let register = |body: Value| post("/v1/agents/register", &issuer_key, body);
    let plain = register(json!({"name": "PortfolioBot", "scopes": ["read:portfolio"]})).await;
    let for_alice = register(json!({
        "name": "PayBot", "scopes": ["read:portfolio"], "user": "did:example:alice"
    }))
    .await;

    // The example, started the way the README says, on a port of its choosing.
    let binary = tokio::task::spawn_blocking(example_binary).await.unwrap();
    let mut child = Running(
        Command::new(binary)
            .env("BONAFIDE_URL", &registry)
            .env("LISTEN", "127.0.0.1:0")
            .env_remove("PUBLIC_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    // An example that never says where it listens must fail the test, not hang it.
    let first = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).unwrap();
            line
        }),
    )
    .await
    .expect("the example printed nothing within 30 s")
    .unwrap();
    let listening = first
        .strip_prefix("receiver listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the example did not say where it listens: {first:?}"))
        .to_owned();
    assert!(first.contains(&format!("trusting {registry}")), "{first}");

    let hello = |token: Option<String>| {
        let mut req = http.get(format!("{listening}/hello"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let (status, body) = hello(plain["token"].as_str().map(str::to_owned)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        format!(
            "hello PortfolioBot ({})\n",
            plain["agent_id"].as_str().unwrap()
        )
    );
    let (status, body) = hello(for_alice["token"].as_str().map(str::to_owned)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        format!(
            "hello PayBot ({}), acting for did:example:alice\n",
            for_alice["agent_id"].as_str().unwrap()
        )
    );
    let (status, body) = hello(None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("TOKEN_MISSING"), "{body}");
}
