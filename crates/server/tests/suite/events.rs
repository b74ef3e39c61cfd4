//! Push events (issue 19 item 4) over HTTP against the real server: SSE delivery of
//! each event type with its SET verified (by core and by PyJWT), `Last-Event-ID`
//! resume, filters, acknowledgements, webhooks (RFC 9421 signatures checked by
//! Python `cryptography` from a signature base it rebuilds itself, retries with
//! backoff then pause, resume), SSRF refusals, and every endpoint's bad input.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bonafide_core::keys::{Jwks, VerifyingKey};
use bonafide_core::secevent::{self, Event, Subject};
use bonafide_core::token::KeySet;
use bonafide_server::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{self, Harness};

/// Longest any wait for the server to reach a state (a liveness bound, not a
/// measurement: speed is in bench/RESULTS.md §12).
const PATIENCE: Duration = Duration::from_secs(30);

async fn receiver(h: &Harness, name: &str) -> (String, String) {
    let (st, v) = h
        .call(
            "POST",
            "/v1/receivers",
            Some(&h.admin),
            Some(json!({"name": name})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    (
        v["api_key"].as_str().unwrap().to_owned(),
        v["receiver_id"].as_str().unwrap().to_owned(),
    )
}

async fn event_keys(h: &Harness) -> (Value, KeySet) {
    let (st, jwks) = h
        .call("GET", "/.well-known/event-jwks.json", None, None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let parsed: Jwks = serde_json::from_value(jwks.clone()).unwrap();
    let mut set = KeySet::new();
    for k in &parsed.keys {
        set.insert(VerifyingKey::from_jwk(k).unwrap());
    }
    (jwks, set)
}

/// One Server-Sent Event.
#[derive(Debug, Clone)]
struct Sse {
    id: String,
    event: String,
    data: String,
}

/// A reader of an SSE response.
struct Stream {
    resp: reqwest::Response,
    buf: String,
}

impl Stream {
    async fn open(h: &Harness, key: &str, query: &str, last: Option<&str>) -> Stream {
        let mut req = h
            .http
            .get(format!("{}/v1/events?{query}", h.base))
            .bearer_auth(key)
            .header("accept", "text/event-stream");
        if let Some(l) = last {
            req = req.header("last-event-id", l);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Stream {
            resp,
            buf: String::new(),
        }
    }

    /// The next event (comments skipped), waiting at most [`PATIENCE`].
    async fn next(&mut self) -> Sse {
        tokio::time::timeout(PATIENCE, async {
            loop {
                if let Some(end) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..end + 2).collect();
                    let (mut id, mut event, mut data) =
                        (String::new(), String::new(), String::new());
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("id:") {
                            id = v.trim().to_owned();
                        } else if let Some(v) = line.strip_prefix("event:") {
                            event = v.trim().to_owned();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim());
                        }
                    }
                    if !data.is_empty() {
                        return Sse { id, event, data };
                    }
                    continue;
                }
                let chunk = self.resp.chunk().await.unwrap().expect("the stream ended");
                self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        })
        .await
        .expect("no event arrived")
    }
}

async fn revoke_token(h: &Harness, key: &str, token: &str) {
    let (st, v) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(key),
            Some(json!({"token": token})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

async fn post_ok(h: &Harness, key: &str, path: &str) {
    let (st, v) = h.call("POST", path, Some(key), None).await;
    assert_eq!(st, StatusCode::OK, "{path}: {v}");
}

fn python_check(mode: &str, input: &Value) -> (bool, Value) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../interop/python/secevent_check.py");
    let mut child = Command::new(common::interop_python())
        .arg(script)
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let code = out.status.code().unwrap();
    assert!(
        code == 0 || code == 1,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        code == 0,
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn sse_delivers_every_event_type_signed_and_resumes_after_last_event_id() {
    let h = common::start().await;
    let (rkey, _) = receiver(&h, "svc.example").await;
    let issuer = h.issuer_full("followed.example").await;
    let other = h.issuer_full("other.example").await;
    let reg = h
        .register(&issuer.key, json!({"name": "Bot", "scopes": ["read:x"]}))
        .await;
    let agent = reg["agent_id"].as_str().unwrap().to_owned();
    let token = reg["token"].as_str().unwrap().to_owned();
    let (st, second) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent}/issue-token"),
            Some(&issuer.key),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{second}");
    let second = second["token"].as_str().unwrap().to_owned();
    let bystander = h
        .register(&other.key, json!({"name": "Other", "scopes": ["read:x"]}))
        .await;
    let bystander_agent = bystander["agent_id"].as_str().unwrap().to_owned();

    let mut stream = Stream::open(&h, &rkey, &format!("issuer={}", issuer.id), None).await;
    // Another issuer's events are not followed: they must not show up in between.
    post_ok(
        &h,
        &other.key,
        &format!("/v1/agents/{bystander_agent}/revoke"),
    )
    .await;
    revoke_token(&h, &issuer.key, &token).await;
    post_ok(&h, &issuer.key, &format!("/v1/agents/{agent}/suspend")).await;
    post_ok(&h, &issuer.key, &format!("/v1/agents/{agent}/reactivate")).await;
    post_ok(&h, &h.admin, "/v1/admin/keys/rotate").await;
    revoke_token(&h, &issuer.key, &second).await;
    post_ok(&h, &issuer.key, &format!("/v1/agents/{agent}/revoke")).await;

    let (jwks, keys) = event_keys(&h).await;
    let jti_of = |t: &str| {
        let claims: Value = serde_json::from_slice(
            &bonafide_core::b64::decode(t.split('.').nth(1).unwrap()).unwrap(),
        )
        .unwrap();
        claims["jti"].as_str().unwrap().to_owned()
    };
    let expected = [
        ("token.revoked", Event::TokenRevoked(jti_of(&token))),
        ("agent.suspended", Event::AgentSuspended(agent.clone())),
        ("agent.reactivated", Event::AgentReactivated(agent.clone())),
        (
            "keys.changed",
            Event::KeysChanged(Subject::Uri {
                uri: h.state.config.public_url.clone(),
            }),
        ),
        ("token.revoked", Event::TokenRevoked(jti_of(&second))),
        ("agent.revoked", Event::AgentRevoked(agent.clone())),
    ];
    let mut got = Vec::new();
    for (name, event) in &expected {
        let e = stream.next().await;
        assert_eq!(&e.event, name, "{e:?}");
        let claims = secevent::verify(&e.data, &keys).unwrap();
        assert_eq!(claims.event().as_ref(), Some(event), "{claims:?}");
        assert_eq!(claims.iss, h.state.config.public_url);
        assert_eq!(claims.jti, format!("evt-{}", e.id));
        // PyJWT, with nothing but the published event JWKS, agrees.
        let (ok, py) = python_check("set", &json!({"jwks": jwks, "set": e.data}));
        assert!(ok, "{py}");
        assert_eq!(py["jti"], claims.jti);
        assert!(py["events"][event.type_uri()].is_object(), "{py}");
        got.push(e);
    }
    // The revocations name when they happened.
    let revoked = secevent::verify(&got[5].data, &keys).unwrap();
    assert!(
        revoked.toe.is_some()
            && revoked.events[secevent::ACCOUNT_PURGED]["event_timestamp"].is_i64()
    );
    // The token JWKS never holds the event key, nor the event JWKS a token key.
    let (_, token_jwks) = h.call("GET", "/.well-known/jwks.json", None, None).await;
    let event_kid = jwks["keys"][0]["kid"].as_str().unwrap();
    assert!(
        token_jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["kid"] != event_kid)
    );
    drop(stream);

    // Resume after the second event: the third comes next, then the rest.
    let mut resumed = Stream::open(
        &h,
        &rkey,
        &format!("issuer={}", issuer.id),
        Some(&got[1].id),
    )
    .await;
    for want in &got[2..] {
        let e = resumed.next().await;
        assert_eq!((&e.id, &e.event), (&want.id, &want.event));
    }
    // The JSON page says the same, from the start, with `agent=` as the filter.
    let (st, page) = h
        .call(
            "GET",
            &format!("/v1/events?agent={agent}"),
            Some(&rkey),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    let listed = page["events"].as_array().unwrap();
    let ids: Vec<&str> = listed.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let want: Vec<&str> = got.iter().map(|e| e.id.as_str()).collect();
    // Before the subscription: only the registry's first signing key (every
    // subscriber follows the registry's keys).
    let before = ids.len() - want.len();
    assert_eq!(&ids[before..], want.as_slice(), "{page}");
    assert!(
        listed[..before]
            .iter()
            .all(|e| e["event"] == "keys.changed"),
        "{page}"
    );
    assert_eq!(page["next"], want[want.len() - 1]);
}

#[tokio::test]
async fn acknowledgements_are_recorded_and_readable_by_the_receiver_and_admins() {
    let h = common::start().await;
    let (rkey, rid) = receiver(&h, "svc.example").await;
    let (other_key, other_id) = receiver(&h, "other-svc.example").await;
    let issuer = h.issuer_full("acme.example").await;
    let reg = h
        .register(&issuer.key, json!({"name": "Bot", "scopes": ["read:x"]}))
        .await;
    let mut stream = Stream::open(&h, &rkey, &format!("issuer={}", issuer.id), None).await;
    revoke_token(&h, &issuer.key, reg["token"].as_str().unwrap()).await;
    let e = stream.next().await;
    let (st, ack) = h
        .call(
            "POST",
            "/v1/events/ack",
            Some(&rkey),
            Some(json!({"last_event_id": e.id, "issuers": [issuer.id]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{ack}");
    assert_eq!(
        (ack["via"].as_str(), ack["receiver_id"].as_str()),
        (Some("sse"), Some(rid.as_str()))
    );
    let path = format!("/v1/events/acks?event={}", e.id);
    let (st, mine) = h.call("GET", &path, Some(&rkey), None).await;
    assert_eq!(st, StatusCode::OK, "{mine}");
    assert_eq!(mine["acks"][0]["last_event_id"], e.id.as_str());
    assert_eq!(mine["acks"][0]["acked_at"], ack["acked_at"]);
    let (st, by_admin) = h
        .call(
            "GET",
            &format!("{path}&receiver={rid}"),
            Some(&h.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(by_admin["acks"], mine["acks"]);
    // The other receiver acknowledged nothing, and cannot read the first's.
    let (_, none) = h.call("GET", &path, Some(&other_key), None).await;
    assert_eq!(none["acks"], json!([]));
    let (st, v) = h
        .call(
            "GET",
            &format!("{path}&receiver={rid}"),
            Some(&other_key),
            None,
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("FORBIDDEN"))
    );
    let _ = other_id;
}

/// Every entry of the audit log of type `ty`, as admins read them.
async fn audit_entries_of(h: &Harness, ty: &str) -> Vec<Value> {
    let mut found = Vec::new();
    for page in 0..10_000u64 {
        let (st, v) = h
            .call(
                "GET",
                &format!("/v1/audit/entries?start={}", page * 100),
                Some(&h.admin),
                None,
            )
            .await;
        if st != StatusCode::OK {
            break;
        }
        for e in v["entries"].as_array().unwrap() {
            let entry: Value = serde_json::from_str(e["entry"].as_str().unwrap()).unwrap();
            if entry["type"] == ty {
                found.push(entry);
            }
        }
    }
    found
}

/// The id of the latest event a JSON page of `query` lists, once it lists `n`
/// events besides the registry's own key changes.
async fn latest_event(h: &Harness, key: &str, query: &str, n: usize) -> String {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let (st, page) = h
                .call("GET", &format!("/v1/events?{query}"), Some(key), None)
                .await;
            assert_eq!(st, StatusCode::OK, "{page}");
            let own: Vec<&Value> = page["events"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["event"] != "keys.changed")
                .collect();
            if own.len() >= n {
                return own[n - 1]["id"].as_str().unwrap().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the event was not published")
}

#[tokio::test]
async fn an_acknowledgement_covers_only_events_its_stream_follows_and_is_audited() {
    let h = common::start().await;
    let (rkey, rid) = receiver(&h, "svc.example").await;
    let a = h.issuer_full("a.example").await;
    let b = h.issuer_full("b.example").await;
    let reg_a = h
        .register(&a.key, json!({"name": "A", "scopes": ["read:x"]}))
        .await;
    let reg_b = h
        .register(&b.key, json!({"name": "B", "scopes": ["read:x"]}))
        .await;
    // B's revocation first, then A's: A's event id is the later.
    revoke_token(&h, &b.key, reg_b["token"].as_str().unwrap()).await;
    let event_b = latest_event(&h, &rkey, &format!("issuer={}", b.id), 1).await;
    revoke_token(&h, &a.key, reg_a["token"].as_str().unwrap()).await;
    let event_a = latest_event(&h, &rkey, &format!("issuer={}", a.id), 1).await;
    assert!(event_a.parse::<u64>().unwrap() > event_b.parse::<u64>().unwrap());

    // A stream following A acknowledges up to A's event.
    let (st, ack) = h
        .call(
            "POST",
            "/v1/events/ack",
            Some(&rkey),
            Some(json!({"last_event_id": event_a, "issuers": [a.id]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{ack}");
    assert_eq!(ack["follows"]["issuers"], json!([a.id]), "{ack}");
    let acks_of = |event: String| {
        let h = &h;
        let rkey = rkey.clone();
        async move {
            let (st, v) = h
                .call(
                    "GET",
                    &format!("/v1/events/acks?event={event}"),
                    Some(&rkey),
                    None,
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{v}");
            v["acks"].as_array().unwrap().clone()
        }
    };
    let covering_a = acks_of(event_a.clone()).await;
    assert_eq!(covering_a.len(), 1, "{covering_a:?}");
    assert_eq!(covering_a[0]["acked_at"], ack["acked_at"]);
    // B's event is earlier, but that stream never followed B: not acknowledged.
    assert_eq!(acks_of(event_b.clone()).await, Vec::<Value>::new());

    // A stream following B acknowledges (as far as A's event): now B's is covered,
    // by that acknowledgement only.
    let (st, ack_b) = h
        .call(
            "POST",
            "/v1/events/ack",
            Some(&rkey),
            Some(json!({"last_event_id": event_a, "issuers": [b.id]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{ack_b}");
    let covering_b = acks_of(event_b.clone()).await;
    assert_eq!(covering_b.len(), 1, "{covering_b:?}");
    assert_eq!(covering_b[0]["follows"]["issuers"], json!([b.id]));
    assert_eq!(covering_b[0]["acked_at"], ack_b["acked_at"]);
    // The same acknowledgement again (ids in another order) is not a new one.
    let (st, _) = h
        .call(
            "POST",
            "/v1/events/ack",
            Some(&rkey),
            Some(json!({"last_event_id": event_a, "issuers": [b.id, b.id]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);

    // Each acknowledgement is in the log: who, how, how far, following what.
    let logged = audit_entries_of(&h, "event.acknowledged").await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    for (entry, issuer) in logged.iter().zip([&a.id, &b.id]) {
        assert_eq!(entry["actor"], json!({"kind": "receiver", "id": rid}));
        assert_eq!(entry["target"], "sse");
        assert_eq!(entry["jti"], format!("evt-{event_a}"));
        assert!(
            entry["note"].as_str().unwrap().contains(issuer.as_str()),
            "{entry}"
        );
    }

    // No event has this id.
    let (st, v) = h
        .call("GET", "/v1/events/acks?event=999999", Some(&rkey), None)
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );
}

/// A receiver holds at most `max_event_streams_per_receiver` streams open at once:
/// one more is a 429 `RATE_LIMITED`, another receiver is not affected, and a stream
/// closed frees its place.
#[tokio::test]
async fn a_receiver_holds_at_most_its_cap_of_open_streams() {
    let h = common::start_with_config(Config {
        max_event_streams_per_receiver: 2,
        ..common::config()
    })
    .await;
    let (rkey, _) = receiver(&h, "svc.example").await;
    let (other_key, _) = receiver(&h, "other-svc.example").await;
    let issuer = h.issuer_full("acme.example").await;
    let query = format!("issuer={}", issuer.id);
    let first = Stream::open(&h, &rkey, &query, None).await;
    let _second = Stream::open(&h, &rkey, &query, None).await;
    let open = || {
        h.http
            .get(format!("{}/v1/events?{query}", h.base))
            .bearer_auth(&rkey)
            .header("accept", "text/event-stream")
            .send()
    };
    let resp = open().await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "RATE_LIMITED", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2 event streams open"),
        "{v}"
    );
    // JSON pages hold nothing open: not counted.
    let (st, _) = h
        .call("GET", &format!("/v1/events?{query}"), Some(&rkey), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    // Another receiver's streams are its own.
    let _theirs = Stream::open(&h, &other_key, &query, None).await;
    // One closed: its place is free once the server sees the connection gone (at
    // the latest when it next writes to it: an event is published to make sure).
    drop(first);
    let reg = h
        .register(&issuer.key, json!({"name": "Bot", "scopes": ["read:x"]}))
        .await;
    revoke_token(&h, &issuer.key, reg["token"].as_str().unwrap()).await;
    tokio::time::timeout(PATIENCE, async {
        loop {
            let resp = open().await.unwrap();
            if resp.status() == StatusCode::OK {
                return;
            }
            assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the closed stream's place was never freed");
}

#[tokio::test]
async fn events_endpoints_refuse_bad_input_with_clear_4xx() {
    let h = common::start().await;
    let (rkey, _) = receiver(&h, "svc.example").await;
    let issuer = h.issuer_full("acme.example").await;
    let ok = format!("issuer={}", issuer.id);
    type Case<'a> = (
        Option<&'a str>,
        String,
        Option<&'a str>,
        StatusCode,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            None,
            ok.clone(),
            None,
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
        ),
        (
            Some(&issuer.key),
            ok.clone(),
            None,
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
        ),
        (
            Some(&h.admin),
            ok.clone(),
            None,
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
        ),
        (
            Some(&rkey),
            String::new(),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            Some(&rkey),
            format!("{ok}&seen=1"),
            None,
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
        ),
        (
            Some(&rkey),
            "issuer=nope".into(),
            None,
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
        ),
        (
            Some(&rkey),
            "agent=iss_x".into(),
            None,
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
        ),
        (
            Some(&rkey),
            format!("{ok}&after=-1"),
            None,
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
        ),
        (
            Some(&rkey),
            ok.clone(),
            Some("yesterday"),
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
        ),
    ];
    for (key, query, last, status, code) in cases {
        let mut req = h
            .http
            .get(format!("{}/v1/events?{query}", h.base))
            .header("accept", "text/event-stream");
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(l) = last {
            req = req.header("last-event-id", l);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), status, "{query} {last:?}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{query}: {v}");
    }
    let many: Vec<String> = (0..101).map(|_| format!("issuer={}", issuer.id)).collect();
    let (st, v) = h
        .call(
            "GET",
            &format!("/v1/events?{}", many.join("&")),
            Some(&rkey),
            None,
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("INVALID_REQUEST"))
    );

    for (key, body, status, code) in [
        (
            Some(rkey.as_str()),
            json!({"last_event_id": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            Some(rkey.as_str()),
            json!({"last_event_id": "0"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        // An event the registry has not sent.
        (
            Some(rkey.as_str()),
            json!({"last_event_id": "999999", "issuers": [issuer.id]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        // No stream filter: what the acknowledgement covers would be unknown.
        (
            Some(rkey.as_str()),
            json!({"last_event_id": "1"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            Some(rkey.as_str()),
            json!({"last_event_id": "1", "more": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            Some(h.admin.as_str()),
            json!({"last_event_id": "1"}),
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
        ),
        (
            None,
            json!({"last_event_id": "1"}),
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
        ),
    ] {
        let (st, v) = h
            .call("POST", "/v1/events/ack", key, Some(body.clone()))
            .await;
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {v}"
        );
    }
    for (key, query, status, code) in [
        (
            h.admin.as_str(),
            "",
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            h.admin.as_str(),
            "?receiver=nope",
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            rkey.as_str(),
            "?event=x",
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
        ),
        (
            rkey.as_str(),
            "?what=1",
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
        ),
        (issuer.key.as_str(), "", StatusCode::FORBIDDEN, "FORBIDDEN"),
    ] {
        let (st, v) = h
            .call("GET", &format!("/v1/events/acks{query}"), Some(key), None)
            .await;
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{query}: {v}"
        );
    }
}

#[tokio::test]
async fn webhook_urls_to_private_addresses_or_not_https_are_refused() {
    // The production rules: no test switch.
    let h = common::start().await;
    let (rkey, _) = receiver(&h, "svc.example").await;
    let issuer = h.issuer_full("acme.example").await;
    for url in [
        "http://example.com/hook",
        "https://127.0.0.1/hook",
        "https://10.0.0.7/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://[fd00::1]/hook",
        "https://localhost/hook",
        "https://user:pw@example.com/hook",
        "ftp://example.com/hook",
        "not a url",
        "http://127.0.0.1:9/hook",
    ] {
        let (st, v) = h
            .call(
                "POST",
                "/v1/webhooks",
                Some(&rkey),
                Some(json!({"url": url, "issuers": [issuer.id]})),
            )
            .await;
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("INVALID_REQUEST")),
            "{url}: {v}"
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("`url` refused"),
            "{v}"
        );
    }
    // Only https's port: no other service of a public host takes the POSTs.
    for url in [
        "https://example.com:8443/hook",
        "https://example.com:25/hook",
        "https://203.0.113.9:22/hook",
    ] {
        let (st, v) = h
            .call(
                "POST",
                "/v1/webhooks",
                Some(&rkey),
                Some(json!({"url": url, "issuers": [issuer.id]})),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("port 443 (https) only"),
            "{url}: {v}"
        );
    }
    for (key, body, status, code) in [
        (
            Some(rkey.as_str()),
            json!({"url": "https://example.com/h"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            Some(rkey.as_str()),
            json!({"url": "https://example.com/h", "issuers": ["nope"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            Some(rkey.as_str()),
            json!({"url": "https://example.com/h", "issuers": [issuer.id], "seen": true}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            Some(issuer.key.as_str()),
            json!({"url": "https://example.com/h", "issuers": [issuer.id]}),
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
        ),
        (
            None,
            json!({"url": "https://example.com/h", "issuers": [issuer.id]}),
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
        ),
    ] {
        let (st, v) = h
            .call("POST", "/v1/webhooks", key, Some(body.clone()))
            .await;
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {v}"
        );
    }
    for (method, path) in [
        ("DELETE", "/v1/webhooks/whk_nope"),
        ("POST", "/v1/webhooks/whk_nope/resume"),
        ("DELETE", "/v1/webhooks/other"),
    ] {
        let (st, v) = h.call(method, path, Some(&rkey), None).await;
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("NOT_FOUND")),
            "{path}"
        );
    }
    let (st, _) = h.call("GET", "/v1/webhooks", Some(&issuer.key), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

/// One request a target received: method, headers, body.
type Received = (String, Vec<(String, String)>, String);

/// A webhook target on loopback: records every request, answers `status`.
#[derive(Clone)]
struct Target {
    url: String,
    status: Arc<AtomicU16>,
    seen: Arc<Mutex<Vec<Received>>>,
}

async fn target() -> Target {
    use axum::body::Bytes;
    use axum::http::HeaderMap;
    let status = Arc::new(AtomicU16::new(202));
    let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
    let (s, r) = (Arc::clone(&status), Arc::clone(&seen));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |method: axum::http::Method, headers: HeaderMap, body: Bytes| {
                let (s, r) = (Arc::clone(&s), Arc::clone(&r));
                async move {
                    let hs = headers
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
                        .collect();
                    r.lock().unwrap().push((
                        method.to_string(),
                        hs,
                        String::from_utf8(body.to_vec()).unwrap(),
                    ));
                    axum::http::StatusCode::from_u16(s.load(Ordering::SeqCst)).unwrap()
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Target { url, status, seen }
}

impl Target {
    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn until<F: Fn() -> bool>(what: &str, f: F) {
    tokio::time::timeout(PATIENCE, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}"));
}

async fn webhooks(h: &Harness, key: &str) -> Value {
    let (st, v) = h.call("GET", "/v1/webhooks", Some(key), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

fn loopback_config() -> Config {
    Config {
        allow_insecure_loopback_fetch: true,
        webhook_retry_base: Duration::from_millis(20),
        webhook_max_failures: 3,
        ..common::config()
    }
}

/// The test-only loopback switch lets a test use its own loopback port, never another
/// port of another host.
#[tokio::test]
async fn the_loopback_switch_opens_no_other_port_of_a_public_host() {
    let h = common::start_with_config(loopback_config()).await;
    let (rkey, _) = receiver(&h, "svc.example").await;
    let issuer = h.issuer_full("acme.example").await;
    let (st, v) = h
        .call(
            "POST",
            "/v1/webhooks",
            Some(&rkey),
            Some(json!({"url": "https://example.com:8443/hook", "issuers": [issuer.id]})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("port 443 (https) only"),
        "{v}"
    );
}

#[tokio::test]
async fn webhook_deliveries_are_signed_acknowledged_and_verified_independently() {
    let h = common::start_with_config(loopback_config()).await;
    let (rkey, rid) = receiver(&h, "svc.example").await;
    let issuer = h.issuer_full("acme.example").await;
    let reg = h
        .register(&issuer.key, json!({"name": "Bot", "scopes": ["read:x"]}))
        .await;
    let agent = reg["agent_id"].as_str().unwrap().to_owned();
    let t = target().await;
    let (st, hook) = h
        .call(
            "POST",
            "/v1/webhooks",
            Some(&rkey),
            Some(json!({"url": t.url, "agents": [agent]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{hook}");
    assert_eq!(hook["state"], "active");
    let id = hook["id"].as_str().unwrap().to_owned();

    revoke_token(&h, &issuer.key, reg["token"].as_str().unwrap()).await;
    post_ok(&h, &issuer.key, &format!("/v1/agents/{agent}/suspend")).await;
    post_ok(&h, &issuer.key, &format!("/v1/agents/{agent}/reactivate")).await;
    post_ok(&h, &issuer.key, &format!("/v1/agents/{agent}/revoke")).await;
    until("four deliveries", || t.count() >= 4).await;

    let (jwks, keys) = event_keys(&h).await;
    let kinds: Vec<&str> = vec![
        "token.revoked",
        "agent.suspended",
        "agent.reactivated",
        "agent.revoked",
    ];
    let deliveries = t.seen.lock().unwrap().clone();
    let mut last_id = String::new();
    for ((method, headers, body), kind) in deliveries.iter().zip(&kinds) {
        assert_eq!(method, "POST");
        let header = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(header("content-type"), "application/secevent+jwt");
        let claims = secevent::verify(body, &keys).unwrap();
        assert_eq!(claims.event().unwrap().name(), *kind);
        last_id = claims.jti.trim_start_matches("evt-").to_owned();
        // The RFC 9421 signature and the digest, checked by `cryptography` alone.
        let (ok, py) = python_check(
            "webhook",
            &json!({"jwks": jwks, "method": method, "url": t.url, "headers": headers, "body": body}),
        );
        assert!(ok, "{py}");
        assert_eq!(py["params"]["tag"], "bonafide-event");
        assert_eq!(
            py["components"],
            json!(["@method", "@target-uri", "content-type", "content-digest"])
        );
        // A body changed in transit no longer matches.
        let (ok, _) = python_check(
            "webhook",
            &json!({"jwks": jwks, "method": method, "url": t.url, "headers": headers, "body": format!("{body}x")}),
        );
        assert!(!ok);
        // Nor does the signature once a covered header is changed.
        let mut edited = headers.clone();
        for (k, v) in edited.iter_mut() {
            if k == "content-type" {
                *v = "application/json".into();
            }
        }
        let (ok, py) = python_check(
            "webhook",
            &json!({"jwks": jwks, "method": method, "url": t.url, "headers": edited, "body": body}),
        );
        assert!(!ok, "{py}");
    }
    // Each 2xx is recorded as the receiver's acknowledgement.
    let rid2 = rid.clone();
    let h2 = &h;
    tokio::time::timeout(PATIENCE, async {
        loop {
            let v = webhooks(h2, &rkey).await;
            if v["webhooks"][0]["delivered_event_id"] == last_id.as_str() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    let (_, acks) = h
        .call(
            "GET",
            &format!("/v1/events/acks?receiver={rid2}&event={last_id}"),
            Some(&h.admin),
            None,
        )
        .await;
    assert_eq!(acks["acks"][0]["via"], id.as_str(), "{acks}");
    // Each delivery acknowledged is in the log, by the receiver, via the webhook.
    let logged = audit_entries_of(&h, "event.acknowledged").await;
    assert!(
        logged.iter().any(|e| e["target"] == id.as_str()
            && e["jti"] == format!("evt-{last_id}")
            && e["actor"]["id"] == rid2.as_str()),
        "{logged:?}"
    );

    // Deleted: nothing more is sent.
    let (st, _) = h
        .call("DELETE", &format!("/v1/webhooks/{id}"), Some(&rkey), None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(webhooks(&h, &rkey).await["webhooks"], json!([]));
}

#[tokio::test]
async fn a_failing_webhook_is_retried_with_backoff_then_paused_and_resumed() {
    let h = common::start_with_config(loopback_config()).await;
    let (rkey, _) = receiver(&h, "svc.example").await;
    let issuer = h.issuer_full("acme.example").await;
    let reg = h
        .register(&issuer.key, json!({"name": "Bot", "scopes": ["read:x"]}))
        .await;
    let t = target().await;
    t.status.store(500, Ordering::SeqCst);
    let (st, hook) = h
        .call(
            "POST",
            "/v1/webhooks",
            Some(&rkey),
            Some(json!({"url": t.url, "issuers": [issuer.id]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{hook}");
    let id = hook["id"].as_str().unwrap().to_owned();
    revoke_token(&h, &issuer.key, reg["token"].as_str().unwrap()).await;

    tokio::time::timeout(PATIENCE, async {
        while webhooks(&h, &rkey).await["webhooks"][0]["state"] != "paused" {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the webhook was never paused");
    let listed = webhooks(&h, &rkey).await;
    let w = &listed["webhooks"][0];
    assert_eq!(w["failures"], 3, "{w}");
    assert_eq!(w["last_error"], "the target answered 500", "{w}");
    assert!(
        w["paused_reason"]
            .as_str()
            .unwrap()
            .starts_with("3 deliveries in a row failed"),
        "{w}"
    );
    assert!(w["paused_at"].is_string());
    // Exactly the allowed attempts, all the same event; nothing while paused.
    assert_eq!(t.count(), 3);
    let bodies: Vec<String> = t
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, _, b)| b.clone())
        .collect();
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));

    // The target recovers; resumed, the same event is delivered and acknowledged.
    t.status.store(200, Ordering::SeqCst);
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/webhooks/{id}/resume"),
            Some(&rkey),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "active");
    until("the fourth attempt", || t.count() >= 4).await;
    tokio::time::timeout(PATIENCE, async {
        while webhooks(&h, &rkey).await["webhooks"][0]["failures"] != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(t.seen.lock().unwrap()[3].2, bodies[0]);
}

#[tokio::test]
async fn a_receiver_has_at_most_ten_webhooks_and_sees_only_its_own() {
    let h = common::start_with_config(loopback_config()).await;
    let (rkey, _) = receiver(&h, "svc.example").await;
    let (other, _) = receiver(&h, "other.example").await;
    let issuer = h.issuer_full("acme.example").await;
    let body = json!({"url": "http://127.0.0.1:9/hook", "issuers": [issuer.id]});
    let mut first = String::new();
    for i in 0..10 {
        let (st, v) = h
            .call("POST", "/v1/webhooks", Some(&rkey), Some(body.clone()))
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        if i == 0 {
            first = v["id"].as_str().unwrap().to_owned();
        }
    }
    let (st, v) = h
        .call("POST", "/v1/webhooks", Some(&rkey), Some(body.clone()))
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("CONFLICT"))
    );
    assert_eq!(webhooks(&h, &other).await["webhooks"], json!([]));
    for (method, path) in [
        ("DELETE", format!("/v1/webhooks/{first}")),
        ("POST", format!("/v1/webhooks/{first}/resume")),
    ] {
        let (st, _) = h.call(method, &path, Some(&other), None).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn ssf_metadata_names_the_event_jwks_and_delivery() {
    let h = common::start().await;
    let (st, v) = h
        .call("GET", "/.well-known/ssf-configuration", None, None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let base = &h.state.config.public_url;
    assert_eq!(v["issuer"], base.as_str());
    assert_eq!(v["jwks_uri"], format!("{base}/.well-known/event-jwks.json"));
    assert_eq!(
        v["delivery_methods_supported"],
        json!(["urn:ietf:rfc:8935"])
    );
    let (_, jwks) = h
        .call("GET", "/.well-known/event-jwks.json", None, None)
        .await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
}

#[tokio::test]
async fn open_streams_end_when_the_server_shuts_down() {
    let h = common::start().await;
    let (rkey, _) = receiver(&h, "svc.example").await;
    let issuer = h.issuer_full("acme.example").await;
    let mut stream = Stream::open(&h, &rkey, &format!("issuer={}", issuer.id), None).await;
    // A restart waits for every connection to finish: it returns only if the stream
    // ended, and the client sees its end.
    let h = tokio::time::timeout(PATIENCE, h.restart())
        .await
        .expect("the server did not stop with a stream open");
    let ended = tokio::time::timeout(PATIENCE, async {
        while let Ok(Some(_)) = stream.resp.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream did not end");
    drop(h);
}
