//! `bonafide issuer verify-domain` against the real registry, run in this process
//! with the test-only `allow_insecure_loopback_fetch` switch (which `bonafide serve`
//! cannot turn on), and a JWKS served from 127.0.0.1: the proof is signed locally
//! with `--key`, and a key that is not registered, or not the published one, does not
//! verify the domain.

use crate::common;

use std::path::Path;
use std::sync::Arc;

use bonafide_core::apikey::{ApiKey, KeyKind};
use bonafide_core::audit::{Actor, AuditEntry, EventType};
use bonafide_server::{Config, Server};
use bonafide_store::{SqliteStore, Store};
use common::{json_of, run, text};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves `body` as JSON to every request on 127.0.0.1; its URL.
async fn jwks_server(body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(answer.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://127.0.0.1:{port}/.well-known/jwks.json")
}

/// `bonafide ARGS` off the async runtime (the registry runs on it).
async fn cli(url: &str, key: Option<&str>, args: &[&str]) -> std::process::Output {
    let url = url.to_owned();
    let key = key.map(str::to_owned);
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&url, key.as_deref(), &args)
    })
    .await
    .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_domain_signs_the_proof_with_the_published_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("data")).await.unwrap();
    let admin = ApiKey::from_random(KeyKind::Admin, [7; 20]);
    let audit = bonafide_server::audit::record(
        &AuditEntry::new(EventType::KeyAdded, 0, Actor::Registry),
        None,
        None,
    )
    .unwrap();
    store.add_admin_key(&admin.hash(), 0, &audit).await.unwrap();
    let store: Arc<dyn Store> = Arc::new(store);
    let config = Config {
        allow_insecure_loopback_fetch: true,
        ..Config::default()
    };
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), config, store)
        .await
        .unwrap();
    let url = format!("http://{}", server.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let out = cli(
        &url,
        Some(admin.expose_secret()),
        &["issuer", "create", "--name", "cli.example", "--json"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let created = json_of(&out);
    let iss_key = created["api_key"].as_str().unwrap().to_owned();
    let iss_id = created["issuer_id"].as_str().unwrap().to_owned();

    let key = dir.path().join("issuer.pem");
    let other = dir.path().join("other.pem");
    for k in [&key, &other] {
        let out = cli(
            &url,
            None,
            &[
                "keys",
                "generate",
                "--alg",
                "EdDSA",
                "--out",
                s(k),
                "--json",
            ],
        )
        .await;
        assert!(out.status.success(), "{}", text(&out));
    }
    let public = format!("{}.pub.jwk", key.display());
    let out = cli(&url, Some(&iss_key), &["issuer-key", "add", &public]).await;
    assert!(out.status.success(), "{}", text(&out));
    let jwk: Value = serde_json::from_str(&std::fs::read_to_string(&public).unwrap()).unwrap();
    let jwks_url = jwks_server(json!({ "keys": [jwk] }).to_string()).await;

    let verify = |k: String| {
        let (url, iss_key, jwks_url) = (url.clone(), iss_key.clone(), jwks_url.clone());
        async move {
            cli(
                &url,
                Some(&iss_key),
                &[
                    "issuer",
                    "verify-domain",
                    "--domain",
                    "cli.example",
                    "--jwks-url",
                    &jwks_url,
                    "--key",
                    &k,
                    "--json",
                ],
            )
            .await
        }
    };

    // A key the issuer never registered: refused before any request is made for it.
    let out = verify(s(&other).to_owned()).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("is not registered by this issuer"),
        "{}",
        text(&out)
    );
    // The public file is not a signing key.
    let out = verify(public.clone()).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("is a JWK"), "{}", text(&out));
    // Registered but not the published one: the registry refuses it.
    let other_public = format!("{}.pub.jwk", other.display());
    let out = cli(&url, Some(&iss_key), &["issuer-key", "add", &other_public]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = verify(s(&other).to_owned()).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("DOMAIN_NOT_VERIFIED"), "{}", text(&out));

    // The published key's private half proves it.
    let out = verify(s(&key).to_owned()).await;
    assert!(out.status.success(), "{}", text(&out));
    let v = json_of(&out);
    assert_eq!(v["issuer_id"], iss_id.as_str());
    assert_eq!(v["domain"], "cli.example");
    assert_eq!(v["trust_level"], "domain_verified");
    assert_eq!(v["issuer_domain"], "cli.example");
    // The text form says the same.
    let out = cli(
        &url,
        Some(&iss_key),
        &[
            "issuer",
            "verify-domain",
            "--domain",
            "cli.example",
            "--jwks-url",
            &jwks_url,
            "--key",
            s(&key),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("cli.example verified for cli.example"),
        "{}",
        text(&out)
    );

    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
