//! Push events in the receiver layer (issue 19): a receiver verifying offline follows
//! the registry's event stream and refuses a revoked token, a suspended agent and a
//! revoked agent as soon as the event arrives, long before the token would expire.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use bonafide_client::events::{RevokedSet, Subscription};
use bonafide_client::receiver::{Config, JwksSource, Receiver};
use bonafide_core::apikey::{ApiKey, KeyKind};
use bonafide_core::keys::Algorithm;
use bonafide_store::{SqliteStore, Store};
use serde_json::{Value, json};

/// Longest wait for an event to arrive (liveness, not speed: that is the benchmark).
const PATIENCE: Duration = Duration::from_secs(30);

async fn post(http: &reqwest::Client, url: String, key: &str, body: Value) -> Value {
    let resp = http
        .post(&url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    resp.json().await.unwrap()
}

#[tokio::test]
async fn a_subscribed_receiver_refuses_revoked_and_suspended_tokens_offline_at_once() {
    use bonafide_core::audit::{Actor, AuditEntry, EventType};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let admin = ApiKey::from_random(KeyKind::Admin, [7; 20]);
    let entry = AuditEntry::new(EventType::KeyAdded, 0, Actor::Registry);
    let record = bonafide_server::audit::record(&entry, None, None).unwrap();
    store
        .add_admin_key(&admin.hash(), 0, &record)
        .await
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(store);
    let config = bonafide_server::Config {
        signing_alg: Algorithm::EdDSA,
        ..bonafide_server::Config::default()
    };
    let server = bonafide_server::Server::bind("127.0.0.1:0".parse().unwrap(), config, store)
        .await
        .unwrap();
    let base = format!("http://{}", server.local_addr().unwrap());
    let (_stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    let http = reqwest::Client::new();
    let admin = admin.expose_secret().to_owned();
    let issuer = post(
        &http,
        format!("{base}/v1/issuers"),
        &admin,
        json!({"name": "acme.example"}),
    )
    .await;
    let ikey = issuer["api_key"].as_str().unwrap().to_owned();
    let rcv = post(
        &http,
        format!("{base}/v1/receivers"),
        &admin,
        json!({"name": "svc.example"}),
    )
    .await;
    let rkey = rcv["api_key"].as_str().unwrap().to_owned();
    let body = json!({"name": "Bot", "scopes": ["read:x"]});
    let one = post(
        &http,
        format!("{base}/v1/agents/register"),
        &ikey,
        body.clone(),
    )
    .await;
    let two = post(&http, format!("{base}/v1/agents/register"), &ikey, body).await;

    let revoked = RevokedSet::new();
    let mut config = Config::offline(
        JwksSource::url(format!("{base}/.well-known/jwks.json")),
        base.clone(),
    );
    config.revoked = Some(Arc::clone(&revoked));
    let receiver = Receiver::new(config).await.unwrap();
    let stream = Subscription::new(&base, &rkey)
        .issuer(issuer["issuer_id"].as_str().unwrap())
        .spawn(Arc::clone(&revoked))
        .unwrap();
    tokio::time::timeout(PATIENCE, stream.connected())
        .await
        .unwrap();

    let check = |token: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        let receiver = receiver.clone();
        async move {
            receiver
                .authenticate(&Method::GET, &Uri::from_static("/x"), &headers)
                .await
                .map(|_| ())
                .map_err(|r| r.code().to_owned())
        }
    };
    let wait_applied = |n: u64| {
        let revoked = Arc::clone(&revoked);
        async move {
            tokio::time::timeout(PATIENCE, async {
                while revoked.applied() < n {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("event {n} never arrived: {:?}", revoked.last_error()));
        }
    };
    let t1 = one["token"].as_str().unwrap();
    let t2 = two["token"].as_str().unwrap();
    let a2 = two["agent_id"].as_str().unwrap();
    assert_eq!(check(t1).await, Ok(()));
    assert_eq!(check(t2).await, Ok(()));

    post(
        &http,
        format!("{base}/v1/tokens/revoke"),
        &ikey,
        json!({"token": t1}),
    )
    .await;
    wait_applied(1).await;
    assert_eq!(check(t1).await, Err("TOKEN_REVOKED".to_owned()));
    assert_eq!(check(t2).await, Ok(()));

    post(
        &http,
        format!("{base}/v1/agents/{a2}/suspend"),
        &ikey,
        json!({}),
    )
    .await;
    wait_applied(2).await;
    assert_eq!(check(t2).await, Err("AGENT_SUSPENDED".to_owned()));
    post(
        &http,
        format!("{base}/v1/agents/{a2}/reactivate"),
        &ikey,
        json!({}),
    )
    .await;
    wait_applied(3).await;
    assert_eq!(check(t2).await, Ok(()));
    post(
        &http,
        format!("{base}/v1/agents/{a2}/revoke"),
        &ikey,
        json!({}),
    )
    .await;
    wait_applied(4).await;
    assert_eq!(check(t2).await, Err("TOKEN_REVOKED".to_owned()));
    assert_eq!(revoked.refused_sets(), 0);

    // Each event applied was acknowledged to the registry.
    let last = revoked.last_event_id().unwrap();
    let acks: Value = tokio::time::timeout(PATIENCE, async {
        loop {
            let v: Value = http
                .get(format!("{base}/v1/events/acks?event={last}"))
                .bearer_auth(&rkey)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if !v["acks"].as_array().unwrap().is_empty() {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(acks["acks"][0]["via"], "sse");
}

/// A fake registry on loopback: its event JWKS, and one SSE stream of `events` (id,
/// SET) held open after them. Enough HTTP/1.1 for the subscriber, nothing more.
async fn fake_registry(
    jwks: String,
    events: impl Fn(&str) -> Vec<(u64, String)> + Send + Sync + 'static,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let events = Arc::new(events);
    let jwks = Arc::new(jwks);
    let base2 = base.clone();
    tokio::spawn(async move {
        for _ in 0..100 {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let (events, jwks, base) = (Arc::clone(&events), Arc::clone(&jwks), base2.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65_536 {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                if path.starts_with("/.well-known/event-jwks.json") {
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                        jwks.len(),
                        jwks
                    );
                    let _ = conn.write_all(answer.as_bytes()).await;
                    return;
                }
                let mut body = String::new();
                for (id, set) in events(&base) {
                    body.push_str(&format!("id: {id}\nevent: x\ndata: {set}\n\n"));
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n{body}"
                );
                let _ = conn.write_all(answer.as_bytes()).await;
                // Held open: no reconnection (which would send them all again).
                tokio::time::sleep(PATIENCE * 2).await;
            });
        }
    });
    base
}

/// The SSE consumer acts only on the registry's own SETs (`iss`) and never applies
/// the same SET (`jti`) twice: an old `agent.reactivated` sent again after a
/// suspension does not lift it.
#[tokio::test]
async fn the_consumer_refuses_another_issuers_sets_and_drops_a_repeated_jti() {
    use bonafide_core::keys::{Jwks, SigningKey};
    use bonafide_core::secevent::{self, Event, SetClaims};
    let key = Arc::new(SigningKey::generate(Algorithm::EdDSA).unwrap());
    let jwks = serde_json::to_string(&Jwks {
        keys: vec![key.verifying_key().jwk().clone()],
    })
    .unwrap();
    let agent = "agt_repeated";
    let signer = Arc::clone(&key);
    let base = fake_registry(jwks, move |base| {
        let set = |event: Event, iss: &str, jti: &str| {
            secevent::sign(
                &signer,
                &SetClaims::new(&event, iss, jti.to_owned(), 1_700_000_000, None),
            )
            .unwrap()
        };
        let suspended = set(Event::AgentSuspended(agent.into()), base, "evt-2");
        let reactivated = set(Event::AgentReactivated(agent.into()), base, "evt-3");
        vec![
            // Signed by the event key, but by another issuer: refused.
            (
                1,
                set(
                    Event::TokenRevoked("tok_other".into()),
                    "https://elsewhere.example",
                    "evt-1",
                ),
            ),
            (2, suspended),
            (3, reactivated.clone()),
            (4, set(Event::AgentSuspended(agent.into()), base, "evt-4")),
            // The reactivation sent again: dropped, so the agent stays suspended.
            (5, reactivated),
            (
                6,
                set(Event::TokenRevoked("tok_last".into()), base, "evt-6"),
            ),
        ]
    })
    .await;
    let revoked = RevokedSet::new();
    let _stream = Subscription::new(&base, "bfk_receiver_unused")
        .agent(agent)
        .acknowledge(false)
        .spawn(Arc::clone(&revoked))
        .unwrap();
    tokio::time::timeout(PATIENCE, async {
        while revoked.last_event_id().as_deref() != Some("6") {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the stream was not read: {:?}", revoked.last_error()));
    // Applied: suspended, reactivated, suspended, the last revocation; not the
    // repeated reactivation.
    assert_eq!(revoked.applied(), 4, "{:?}", revoked.last_error());
    assert_eq!(revoked.refused_sets(), 1);
    assert_eq!(revoked.repeated_sets(), 1);
    assert!(
        revoked.last_error().unwrap().contains("elsewhere.example"),
        "{:?}",
        revoked.last_error()
    );
}
