//! Push events across replicas (issue 19 item 4): two `bonafide serve` processes on
//! one PostgreSQL database serve the same events under the same ids, so a receiver
//! subscribed to one replica sees a revocation committed by the other, resumes with
//! `Last-Event-ID` on either, and acknowledges on either. Needs
//! `BONAFIDE_TEST_PG_URL` (see `replicas.rs`).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::replicas::{admin_url, fresh_database, new_admin_key, spawn_replica};

/// Longest wait for an event (liveness only).
const PATIENCE: Duration = Duration::from_secs(30);

async fn call(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    key: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = if method == "GET" {
        http.get(url)
    } else {
        http.post(url)
    };
    req = req.bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Reads SSE events (id, event) from a streaming response.
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn open(http: &reqwest::Client, url: &str, key: &str, last: Option<&str>) -> Sse {
        let mut req = http
            .get(url)
            .bearer_auth(key)
            .header("accept", "text/event-stream");
        if let Some(l) = last {
            req = req.header("last-event-id", l);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        Sse {
            resp,
            buf: String::new(),
        }
    }

    async fn next(&mut self) -> (String, String) {
        tokio::time::timeout(PATIENCE, async {
            loop {
                if let Some(end) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..end + 2).collect();
                    let mut id = None;
                    let mut event = None;
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("id:") {
                            id = Some(v.trim().to_owned());
                        } else if let Some(v) = line.strip_prefix("event:") {
                            event = Some(v.trim().to_owned());
                        }
                    }
                    if let (Some(id), Some(event)) = (id, event) {
                        return (id, event);
                    }
                    continue;
                }
                let chunk = self.resp.chunk().await.unwrap().expect("stream ended");
                self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        })
        .await
        .expect("no event arrived")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_serve_the_same_events_under_the_same_ids() {
    let db = fresh_database(&admin_url(), "push").await;
    let admin = new_admin_key();
    let a = spawn_replica(&db, &admin);
    let b = spawn_replica(&db, &admin);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let (st, issuer) = call(
        &http,
        "POST",
        &format!("{}/v1/issuers", a.url),
        &admin,
        Some(json!({"name": "acme.example"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{issuer}");
    let ikey = issuer["api_key"].as_str().unwrap().to_owned();
    let iid = issuer["issuer_id"].as_str().unwrap().to_owned();
    let (_, rcv) = call(
        &http,
        "POST",
        &format!("{}/v1/receivers", a.url),
        &admin,
        Some(json!({"name": "svc.example"})),
    )
    .await;
    let rkey = rcv["api_key"].as_str().unwrap().to_owned();
    let mut tokens = Vec::new();
    for i in 0..3 {
        let (st, v) = call(
            &http,
            "POST",
            &format!("{}/v1/agents/register", a.url),
            &ikey,
            Some(json!({"name": format!("Bot{i}"), "scopes": ["read:x"]})),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        tokens.push(v["token"].as_str().unwrap().to_owned());
    }

    // Subscribed on B; the revocations are committed by A.
    let events = |base: &str| format!("{base}/v1/events?issuer={iid}");
    let mut on_b = Sse::open(&http, &events(&b.url), &rkey, None).await;
    for t in &tokens {
        let (st, v) = call(
            &http,
            "POST",
            &format!("{}/v1/tokens/revoke", a.url),
            &ikey,
            Some(json!({"token": t})),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (id, event) = on_b.next().await;
        assert_eq!(event, "token.revoked");
        seen.push(id);
    }
    // A resumes after B's first id with B's next ones: the same ids on both.
    let mut on_a = Sse::open(&http, &events(&a.url), &rkey, Some(&seen[0])).await;
    assert_eq!(on_a.next().await.0, seen[1]);
    assert_eq!(on_a.next().await.0, seen[2]);
    // And the JSON pages agree, SET for SET (ids, names; the SETs' `jti`s).
    let page = |base: String| {
        let (http, rkey) = (http.clone(), rkey.clone());
        async move {
            let (st, v) = call(&http, "GET", &format!("{base}&after={}", 0), &rkey, None).await;
            assert_eq!(st, StatusCode::OK, "{v}");
            v["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["id"].as_str().unwrap().to_owned(),
                        e["event"].as_str().unwrap().to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page(events(&a.url)).await, page(events(&b.url)).await);

    // Acknowledged on A, read on B.
    let last = seen[2].clone();
    let (st, v) = call(
        &http,
        "POST",
        &format!("{}/v1/events/ack", a.url),
        &rkey,
        Some(json!({"last_event_id": last, "issuers": [iid]})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = call(
        &http,
        "GET",
        &format!("{}/v1/events/acks?event={}", b.url, seen[1]),
        &rkey,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["acks"][0]["last_event_id"], last.as_str());
    drop((a, b));
}
