//! Suspend and reactivate, end to end over HTTP: a suspended agent's tokens answer
//! `valid:false` with `AGENT_SUSPENDED` on every verify endpoint until it is
//! reactivated; revocation stays permanent; each change is one audit entry; a
//! suspension committed by another process reaches a running server within one
//! refresh, and so does its end.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bonafide_core::audit::{Actor, AuditEntry, EventType};
use bonafide_core::ids::{AgentId, IssuerId};
use bonafide_server::{Config, Server};
use bonafide_store::{SqliteStore, Store};
use common::{Harness, start, start_with_config};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;

fn assert_error(st: StatusCode, v: &Value, status: StatusCode, code: &str) {
    assert_eq!(st, status, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
}

/// An issuer with one agent: (issuer key, agent id, token).
async fn issuer_with_agent(h: &Harness, name: &str) -> (String, String, String) {
    let key = h.issuer(name).await;
    let reg = h
        .register(&key, json!({"name": "Bot", "scopes": ["read:x"]}))
        .await;
    (
        key,
        reg["agent_id"].as_str().unwrap().to_owned(),
        reg["token"].as_str().unwrap().to_owned(),
    )
}

async fn suspend(
    h: &Harness,
    key: Option<&str>,
    agent: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    h.call("POST", &format!("/v1/agents/{agent}/suspend"), key, body)
        .await
}

async fn reactivate(h: &Harness, key: Option<&str>, agent: &str) -> (StatusCode, Value) {
    h.call("POST", &format!("/v1/agents/{agent}/reactivate"), key, None)
        .await
}

async fn introspect(h: &Harness, token: &str) -> Value {
    let resp = h
        .http
        .post(format!("{}/v1/introspect", h.base))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

/// The three verify endpoints agree on `token`: `None` = valid, `Some(code)` =
/// refused with that code (introspection only says inactive).
async fn assert_verdict(h: &Harness, token: &str, want: Option<&str>) {
    let post = h.verify_token(token).await;
    let (st, get) = h
        .call("GET", &format!("/v1/verify/{token}"), None, None)
        .await;
    assert_eq!(st, StatusCode::OK, "{get}");
    let intro = introspect(h, token).await;
    match want {
        None => {
            assert_eq!(post["valid"], true, "{post}");
            assert_eq!(post["allowed"], true, "{post}");
            assert_eq!(get["valid"], true, "{get}");
            assert_eq!(intro["active"], true, "{intro}");
        }
        Some(code) => {
            assert_eq!(post["valid"], false, "{post}");
            assert_eq!(post["allowed"], false, "{post}");
            assert_eq!(post["error"]["code"], code, "{post}");
            // The denial's `error` is an error body's object, its message the reason.
            assert_eq!(post["error"]["message"], post["reason"], "{post}");
            assert!(
                post["error"]["request_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("req_")),
                "{post}"
            );
            assert_eq!(post["reasons"], json!([code]), "{post}");
            crate::common::assert_simple_denial(&get, code);
            assert_eq!(intro, json!({"active": false}));
        }
    }
}

/// Every audit entry, as JSON, read over HTTP with the admin key.
async fn audit_entries(h: &Harness) -> Vec<Value> {
    let size = h.state.store.audit_size().await.unwrap();
    let mut out = Vec::new();
    let mut start = 0;
    while start < size {
        let end = size.min(start + 1000);
        let (st, v) = h
            .call(
                "GET",
                &format!("/v1/audit/entries?start={start}&end={end}"),
                Some(&h.admin),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        for e in v["entries"].as_array().unwrap() {
            out.push(serde_json::from_str(e["entry"].as_str().unwrap()).unwrap());
        }
        start = end;
    }
    out
}

/// The audit entries of this type about this agent.
async fn events(h: &Harness, event: &str, agent: &str) -> Vec<Value> {
    audit_entries(h)
        .await
        .into_iter()
        .filter(|e| e["type"] == event && e["agent"] == agent)
        .collect()
}

/// Polls until `token`'s POST verify answers `want` (`None` = valid), or panics after
/// `within`.
async fn wait_for_verdict(h: &Harness, token: &str, want: Option<&str>, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let v = h.verify_token(token).await;
        let got = if v["valid"] == true {
            None
        } else {
            Some(v["error"]["code"].as_str().unwrap().to_owned())
        };
        if got.as_deref() == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still {got:?} after {within:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_suspended_agent_is_refused_everywhere_until_reactivated() {
    // The default 5 s refresh: only the handler's own mirroring can make the very
    // next verify see the change.
    let h = start().await;
    let (key, agent, token) = issuer_with_agent(&h, "suspend.example").await;
    let reg = h
        .register(&key, json!({"name": "Other", "scopes": ["read:x"]}))
        .await;
    let bystander = reg["token"].as_str().unwrap();
    assert_verdict(&h, &token, None).await;

    let (st, v) = suspend(
        &h,
        Some(&key),
        &agent,
        Some(json!({"reason": "odd trades"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["agent_id"], agent);
    assert_eq!(v["status"], "suspended");
    assert_eq!(v["suspend_reason"], "odd trades");
    let suspended_at = v["suspended_at"].as_str().unwrap().to_owned();
    assert!(suspended_at.ends_with('Z'), "{suspended_at}");
    assert!(v.get("revoked_at").is_none(), "{v}");

    assert_verdict(&h, &token, Some("AGENT_SUSPENDED")).await;
    assert_verdict(&h, bystander, None).await;

    // The agent shows its suspension, alone and in the list.
    let (st, one) = h
        .call("GET", &format!("/v1/agents/{agent}"), Some(&key), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{one}");
    assert_eq!(one, v);
    let (_, list) = h.call("GET", "/v1/agents", Some(&key), None).await;
    let listed = &list["agents"].as_array().unwrap()[0];
    assert_eq!(listed["agent_id"], agent);
    assert_eq!(listed["status"], "suspended");
    assert_eq!(listed["suspended_at"], suspended_at);
    assert_eq!(list["agents"][1]["status"], "active");
    assert!(list["agents"][1].get("suspended_at").is_none(), "{list}");

    // No fresh tokens while suspended.
    let (st, e) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent}/issue-token"),
            Some(&key),
            None,
        )
        .await;
    assert_error(st, &e, StatusCode::CONFLICT, "AGENT_SUSPENDED");

    // Exactly one entry, by the issuer, with the reason; the refused verifies are
    // logged with the code.
    let entries = events(&h, "agent.suspended", &agent).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["note"], "odd trades");
    assert_eq!(entries[0]["actor"]["kind"], "issuer");
    assert!(entries[0]["issuer"].as_str().unwrap().starts_with("iss_"));
    let denials: Vec<Value> = events(&h, "verify", &agent)
        .await
        .into_iter()
        .filter(|e| e["reasons"] == json!(["AGENT_SUSPENDED"]))
        .collect();
    assert_eq!(denials.len(), 3, "POST, GET and introspection: {denials:?}");
    assert!(denials.iter().all(|e| e["decision"] == "deny"));

    let (st, v) = reactivate(&h, Some(&key), &agent).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "active");
    assert!(v.get("suspended_at").is_none(), "{v}");
    assert!(v.get("suspend_reason").is_none(), "{v}");
    assert_verdict(&h, &token, None).await;
    assert_eq!(events(&h, "agent.reactivated", &agent).await.len(), 1);
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent}/issue-token"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");

    // And again: suspension is reversible as often as the issuer likes.
    let (st, _) = suspend(&h, Some(&key), &agent, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_verdict(&h, &token, Some("AGENT_SUSPENDED")).await;
    assert_eq!(events(&h, "agent.suspended", &agent).await.len(), 2);
}

#[tokio::test]
async fn suspending_twice_or_reactivating_an_active_agent_changes_nothing() {
    let h = start().await;
    let (key, agent, token) = issuer_with_agent(&h, "twice.example").await;

    // Not suspended: reactivating is a no-op that logs nothing.
    let (st, v) = reactivate(&h, Some(&key), &agent).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "active");
    assert!(events(&h, "agent.reactivated", &agent).await.is_empty());

    let (st, first) = suspend(&h, Some(&key), &agent, Some(json!({"reason": "first"}))).await;
    assert_eq!(st, StatusCode::OK, "{first}");
    let (st, again) = suspend(&h, Some(&key), &agent, Some(json!({"reason": "second"}))).await;
    assert_eq!(st, StatusCode::OK, "{again}");
    assert_eq!(again, first, "the first suspension's time and reason stay");
    assert_eq!(events(&h, "agent.suspended", &agent).await.len(), 1);
    assert_verdict(&h, &token, Some("AGENT_SUSPENDED")).await;

    for _ in 0..2 {
        let (st, v) = reactivate(&h, Some(&key), &agent).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["status"], "active");
    }
    assert_eq!(events(&h, "agent.reactivated", &agent).await.len(), 1);
    assert_verdict(&h, &token, None).await;
}

#[tokio::test]
async fn revocation_stays_permanent() {
    let h = start().await;
    let (key, agent, token) = issuer_with_agent(&h, "permanent.example").await;
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent}/revoke"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, e) = reactivate(&h, Some(&key), &agent).await;
    assert_error(st, &e, StatusCode::CONFLICT, "AGENT_REVOKED");
    let (st, e) = suspend(&h, Some(&key), &agent, Some(json!({"reason": "x"}))).await;
    assert_error(st, &e, StatusCode::CONFLICT, "AGENT_REVOKED");
    assert_verdict(&h, &token, Some("TOKEN_REVOKED")).await;
    assert!(events(&h, "agent.suspended", &agent).await.is_empty());
    assert!(events(&h, "agent.reactivated", &agent).await.is_empty());

    // Suspended, then revoked: revoked wins, and reactivating cannot undo it.
    let (key, agent, token) = issuer_with_agent(&h, "held-then-gone.example").await;
    let (st, _) = suspend(&h, Some(&key), &agent, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent}/revoke"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_verdict(&h, &token, Some("TOKEN_REVOKED")).await;
    let (st, e) = reactivate(&h, Some(&key), &agent).await;
    assert_error(st, &e, StatusCode::CONFLICT, "AGENT_REVOKED");
    assert_verdict(&h, &token, Some("TOKEN_REVOKED")).await;
    let (_, v) = h
        .call("GET", &format!("/v1/agents/{agent}"), Some(&key), None)
        .await;
    assert_eq!(v["status"], "revoked");
    assert!(v.get("suspended_at").is_none(), "{v}");
}

#[tokio::test]
async fn only_the_agents_issuer_may_suspend_or_reactivate() {
    let h = start().await;
    let (owner, agent, token) = issuer_with_agent(&h, "owner.example").await;
    let stranger = h.issuer("stranger.example").await;
    let (st, receiver) = h
        .call(
            "POST",
            "/v1/receivers",
            Some(&h.admin),
            Some(json!({"name": "api.shop.example"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{receiver}");
    let receiver = receiver["api_key"].as_str().unwrap().to_owned();

    // Another issuer's agent is exactly a missing one.
    let (st, e) = suspend(&h, Some(&stranger), &agent, None).await;
    assert_error(st, &e, StatusCode::NOT_FOUND, "NOT_FOUND");
    let missing = AgentId::from_random([7; 16]).to_string();
    let (st, e2) = suspend(&h, Some(&owner), &missing, None).await;
    assert_error(st, &e2, StatusCode::NOT_FOUND, "NOT_FOUND");
    assert_eq!(e["error"]["message"], e2["error"]["message"]);
    let (st, e) = suspend(&h, Some(&owner), "not-an-id", None).await;
    assert_error(st, &e, StatusCode::NOT_FOUND, "NOT_FOUND");

    // Keys: none is 401, an admin or receiver key 403.
    let (st, e) = suspend(&h, None, &agent, None).await;
    assert_error(st, &e, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    for key in [&h.admin, &receiver] {
        let (st, e) = suspend(&h, Some(key), &agent, None).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{e}");
    }

    // Bodies: unknown members, bad reasons and malformed JSON are refused.
    for body in [
        json!({"reason": "x", "until": "tomorrow"}),
        json!({"reason": ""}),
        json!({"reason": "x".repeat(513)}),
        json!({"reason": 5}),
    ] {
        let (st, e) = suspend(&h, Some(&owner), &agent, Some(body.clone())).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {e}");
    }
    let resp = h
        .http
        .post(format!("{}/v1/agents/{agent}/suspend", h.base))
        .bearer_auth(&owner)
        .header("content-type", "application/json")
        .body("{\"reason\":")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let (st, e) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent}/reactivate"),
            Some(&owner),
            Some(json!({"reason": "done"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");

    // Nothing of that suspended the agent or wrote an entry.
    assert_verdict(&h, &token, None).await;
    assert!(events(&h, "agent.suspended", &agent).await.is_empty());

    // The owner suspends; the stranger can neither see nor end it.
    let (st, _) = suspend(&h, Some(&owner), &agent, None).await;
    assert_eq!(st, StatusCode::OK);
    for path in ["reactivate", "suspend"] {
        let (st, e) = h
            .call(
                "POST",
                &format!("/v1/agents/{agent}/{path}"),
                Some(&stranger),
                None,
            )
            .await;
        assert_error(st, &e, StatusCode::NOT_FOUND, "NOT_FOUND");
    }
    let (st, e) = reactivate(&h, None, &agent).await;
    assert_error(st, &e, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert_verdict(&h, &token, Some("AGENT_SUSPENDED")).await;
    assert!(events(&h, "agent.reactivated", &agent).await.is_empty());
}

#[tokio::test]
async fn suspensions_from_another_process_arrive_within_one_refresh() {
    let refresh = Duration::from_millis(200);
    let h = start_with_config(Config {
        key_refresh: refresh,
        ..common::config()
    })
    .await;
    let (key, agent, token) = issuer_with_agent(&h, "replica.example").await;
    assert_verdict(&h, &token, None).await;

    // A second server on the same database, as another replica would be.
    let data_dir = h.db_path.parent().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(data_dir).await.unwrap());
    let other = Server::bind("127.0.0.1:0".parse().unwrap(), common::config(), store)
        .await
        .unwrap();
    let other_base = format!("http://{}", other.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(other.run(async {
        let _ = stopped.await;
    }));
    let resp = h
        .http
        .post(format!("{other_base}/v1/agents/{agent}/suspend"))
        .bearer_auth(&key)
        .json(&json!({"reason": "from the other replica"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    let within = refresh * 10;
    wait_for_verdict(&h, &token, Some("AGENT_SUSPENDED"), within).await;
    assert_verdict(&h, &token, Some("AGENT_SUSPENDED")).await;

    // The end of a suspension arrives too: the refresh replaces the set, it does not
    // only add to it. Here straight through the store, as another process would.
    let direct = SqliteStore::open(data_dir).await.unwrap();
    let agent_id = AgentId::try_from(agent.as_str()).unwrap();
    let issuer_id: IssuerId = direct.agent(&agent_id).await.unwrap().unwrap().issuer_id;
    let mut entry = AuditEntry::new(
        EventType::AgentReactivated,
        bonafide_server::time::now_ms(),
        Actor::Issuer {
            id: issuer_id.to_string(),
        },
    );
    entry.agent = Some(agent.clone());
    entry.issuer = Some(issuer_id.to_string());
    let record = bonafide_server::audit::record(&entry, Some(&agent_id), Some(&issuer_id)).unwrap();
    direct
        .reactivate_agent(&issuer_id, &agent_id, &record)
        .await
        .unwrap();
    wait_for_verdict(&h, &token, None, within).await;
    assert_verdict(&h, &token, None).await;

    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    direct.close().await;
}
