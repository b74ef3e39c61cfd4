//! Delegation by RFC 8693 token exchange (`POST /v1/token`), end to end over HTTP: a
//! three-hop chain and what verify answers show of it, a widening attempt in each
//! dimension (scope, audience, exp, policy limits, currency, depth) named in
//! `widened`, cascade revocation and suspension, a descendant's spends exhausting its
//! ancestors' budgets, the child bound to the actor's key (a DPoP proof by the root's
//! key is refused), and every bad input with its status and codes.
//!
//! The real server on 127.0.0.1:0 with a temp SQLite data dir (see `common`). Budgets
//! here are monthly in UTC: a run that straddles the first instant of a month would
//! see its budget reset halfway.

use crate::common;

use bonafide_core::b64;
use bonafide_server::Config;
use common::{Harness, start_with_config};
use reqwest::StatusCode;
use serde_json::{Value, json};

const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const SCOPES: [&str; 2] = ["payments:write", "read:account"];

/// A server whose delegation chains may go 3 hops from the root.
async fn start() -> Harness {
    start_with_config(Config {
        max_delegation_depth: 3,
        ..common::config()
    })
    .await
}

/// A registered agent: id and token.
#[derive(Debug, Clone)]
struct Agent {
    id: String,
    token: String,
}

async fn agent(h: &Harness, key: &str, name: &str, extra: Value) -> Agent {
    let mut body = json!({"name": name, "scopes": SCOPES});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let reg = h.register(key, body).await;
    Agent {
        id: reg["agent_id"].as_str().unwrap().to_owned(),
        token: reg["token"].as_str().unwrap().to_owned(),
    }
}

/// A monthly budget of `cap` USD for `payments.send` (and at most `per_txn`, if any).
fn policy(id: &str, cap: &str, per_txn: Option<&str>, currency: &str) -> Value {
    let mut limits =
        json!({"per_period": {"amount": cap, "currency": currency, "period": "month"}});
    if let Some(t) = per_txn {
        limits["per_txn"] = json!({"amount": t, "currency": currency});
    }
    json!({"version": "pol.v0.2", "id": id, "actions": ["payments.send"], "limits": limits})
}

/// The claims of a compact JWS, unverified.
fn payload(jws: &str) -> Value {
    let middle = jws.split('.').nth(1).unwrap();
    serde_json::from_slice(&b64::decode(middle).unwrap()).unwrap()
}

/// `POST /v1/token` with form parameters.
async fn exchange(h: &Harness, key: Option<&str>, params: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut req = h.http.post(format!("{}/v1/token", h.base)).form(params);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    assert_eq!(
        resp.headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store")
    );
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The parameters of a delegation from `subject` to `actor`, with `more`.
fn delegate<'a>(
    subject: &'a str,
    actor: &'a str,
    more: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut p = vec![
        ("grant_type", GRANT),
        ("subject_token", subject),
        ("subject_token_type", JWT),
        ("actor_token", actor),
        ("actor_token_type", JWT),
    ];
    p.extend_from_slice(more);
    p
}

/// A successful exchange: the child token.
async fn child(
    h: &Harness,
    key: &str,
    subject: &str,
    actor: &str,
    more: &[(&str, &str)],
) -> String {
    let (st, v) = exchange(h, Some(key), &delegate(subject, actor, more)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["issued_token_type"], JWT, "{v}");
    assert_eq!(v["token_type"], "N_A", "{v}");
    assert!(v["expires_in"].as_i64().unwrap() > 0, "{v}");
    v["access_token"].as_str().unwrap().to_owned()
}

/// An OAuth error answer (RFC 6749 §5.2) with Bonafide's code.
#[track_caller]
fn assert_oauth(got: &(StatusCode, Value), status: StatusCode, error: &str, code: &str) {
    let (st, v) = got;
    assert_eq!(*st, status, "{v}");
    assert_eq!(v["error"], error, "{v}");
    assert_eq!(v["code"], code, "{v}");
    assert!(
        v["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{v}"
    );
    assert!(
        v["request_id"]
            .as_str()
            .is_some_and(|r| r.starts_with("req_")),
        "{v}"
    );
}

async fn receiver(h: &Harness) -> String {
    let (st, v) = h
        .call(
            "POST",
            "/v1/receivers",
            Some(&h.admin),
            Some(json!({"name": "bank"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v["api_key"].as_str().unwrap().to_owned()
}

async fn spend(h: &Harness, rcv: &str, token: &str, amount: &str) -> Value {
    let (st, v) = h
        .call(
            "POST",
            "/v1/verify",
            Some(rcv),
            Some(json!({"token": token, "action": "payments.send", "amount": amount, "currency": "USD"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

/// A root agent with a policy and audiences, and three sub-agents; the chain
/// root → a1 → a2 → a3 (`tokens[i]` is hop `i`).
struct Chain {
    key: String,
    root: Agent,
    subs: Vec<Agent>,
    tokens: Vec<String>,
}

async fn three_hops(h: &Harness) -> Chain {
    three_hops_of(h, "apex.example").await
}

async fn three_hops_of(h: &Harness, issuer: &str) -> Chain {
    let key = h.issuer(issuer).await;
    let root = agent(
        h,
        &key,
        "Root assistant",
        json!({
            "audience": ["bank.example", "shop.example"],
            "policy": policy("pol_root", "100.00", Some("50.00"), "USD"),
        }),
    )
    .await;
    let mut subs = Vec::new();
    for n in 1..=3 {
        subs.push(agent(h, &key, &format!("Sub-agent {n}"), json!({})).await);
    }
    let hop1_policy = policy("pol_hop1", "60.00", Some("50.00"), "USD").to_string();
    let t1 = child(
        h,
        &key,
        &root.token,
        &subs[0].token,
        &[
            ("scope", "payments:write read:account"),
            ("audience", "bank.example"),
            ("expires_in", "3000"),
            ("policy", &hop1_policy),
        ],
    )
    .await;
    let t2 = child(h, &key, &t1, &subs[1].token, &[("scope", "payments:write")]).await;
    let t3 = child(h, &key, &t2, &subs[2].token, &[("expires_in", "600")]).await;
    Chain {
        key,
        tokens: vec![root.token.clone(), t1, t2, t3],
        root,
        subs,
    }
}

#[tokio::test]
async fn a_three_hop_chain_narrows_and_verify_answers_show_it() {
    let h = start().await;
    let c = three_hops(&h).await;
    let t3 = &c.tokens[3];
    let claims = payload(t3);
    // RFC 8693 §4.1: `sub` stays the root, the current actor is outermost.
    assert_eq!(claims["sub"], c.root.id.as_str());
    assert_eq!(
        claims["act"],
        json!({"sub": c.subs[2].id, "act": {"sub": c.subs[1].id, "act": {"sub": c.subs[0].id}}})
    );
    let jtis: Vec<Value> = c.tokens[..3]
        .iter()
        .map(|t| payload(t)["jti"].clone())
        .collect();
    assert_eq!(claims["ancestor_jtis"], json!(jtis));
    assert_eq!(claims["scope"], "payments:write");
    assert_eq!(claims["aud"], "bank.example");
    assert_eq!(claims["iss"], h.base.as_str());
    assert!(claims["exp"].as_i64().unwrap() <= payload(&c.tokens[2])["exp"].as_i64().unwrap());
    assert_eq!(
        claims["policy_hash"],
        payload(&c.tokens[1])["policy_hash"],
        "hops 2 and 3 keep hop 1's policy"
    );

    let chain = json!([
        {"agent_id": c.root.id, "name": "Root assistant"},
        {"agent_id": c.subs[0].id, "name": "Sub-agent 1"},
        {"agent_id": c.subs[1].id, "name": "Sub-agent 2"},
        {"agent_id": c.subs[2].id, "name": "Sub-agent 3"},
    ]);
    let v = h
        .verify(json!({"token": t3, "audience": "bank.example"}))
        .await;
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["agent"]["id"], c.root.id.as_str(), "{v}");
    assert_eq!(v["delegation"], chain, "{v}");
    let (st, g) = h
        .call(
            "GET",
            &format!("/v1/verify/{t3}?audience=bank.example"),
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(g["valid"], true, "{g}");
    assert_eq!(g["delegation"], chain, "{g}");
    // A token that was not delegated shows no chain.
    let v = h
        .verify(json!({"token": c.root.token, "audience": "shop.example"}))
        .await;
    assert_eq!(v["valid"], true, "{v}");
    assert!(v.get("delegation").is_none(), "{v}");
    let v = h
        .verify(json!({"token": &c.tokens[1], "audience": "bank.example"}))
        .await;
    assert_eq!(v["delegation"].as_array().unwrap().len(), 2, "{v}");
    // The child is for its audience only.
    let v = h
        .verify(json!({"token": t3, "audience": "shop.example"}))
        .await;
    assert_eq!(v["error"]["code"], "AUDIENCE_MISMATCH", "{v}");

    // JSON bodies are accepted too.
    let extra = agent(&h, &c.key, "Sub-agent 4", json!({})).await;
    let resp = h
        .http
        .post(format!("{}/v1/token", h.base))
        .bearer_auth(&c.key)
        .json(&json!({
            "grant_type": GRANT, "subject_token": c.root.token, "subject_token_type": JWT,
            "actor_token": extra.token, "actor_token_type": JWT,
            "scope": "read:account", "audience": ["shop.example"], "expires_in": 60
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["scope"], "read:account", "{v}");
    assert!(v["expires_in"].as_i64().unwrap() <= 60, "{v}");

    // The exchange is audited.
    let size = h.state.store.audit_size().await.unwrap();
    let rows = h.state.store.audit_entries(0, size).await.unwrap();
    let delegated = rows
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.entry).contains("\"token.delegated\""))
        .count();
    assert_eq!(delegated, 4);
}

/// Extra parameters, the expected OAuth `error`, the expected `widened`.
type WideningCase = (Vec<(&'static str, String)>, &'static str, Vec<&'static str>);

#[tokio::test]
async fn every_widening_is_refused_and_named() {
    let h = start().await;
    let c = three_hops(&h).await;
    let t2 = &c.tokens[2];
    let extra = agent(&h, &c.key, "Sub-agent 4", json!({})).await;
    let widens = |more: Vec<(&'static str, String)>| {
        let h = &h;
        let key = c.key.clone();
        let subject = t2.clone();
        let actor = extra.token.clone();
        async move {
            let more: Vec<(&str, &str)> = more.iter().map(|(k, v)| (*k, v.as_str())).collect();
            exchange(h, Some(&key), &delegate(&subject, &actor, &more)).await
        }
    };
    let cases: Vec<WideningCase> = vec![
        (
            vec![("scope", "payments:write read:account".into())],
            "invalid_scope",
            vec!["scope"],
        ),
        (
            vec![("audience", "shop.example".into())],
            "invalid_target",
            vec!["audience"],
        ),
        (
            vec![("expires_in", "86400".into())],
            "invalid_request",
            vec!["exp"],
        ),
        (
            vec![(
                "policy",
                policy("pol_more", "61.00", Some("50.00"), "USD").to_string(),
            )],
            "invalid_request",
            vec!["policy.limits.per_period"],
        ),
        (
            vec![(
                "policy",
                policy("pol_txn", "60.00", Some("50.01"), "USD").to_string(),
            )],
            "invalid_request",
            vec!["policy.limits.per_txn"],
        ),
        (
            vec![(
                "policy",
                policy("pol_eur", "10.00", Some("5.00"), "EUR").to_string(),
            )],
            "invalid_request",
            vec!["policy.currency"],
        ),
        (
            vec![
                ("scope", "read:account".into()),
                ("expires_in", "86400".into()),
            ],
            "invalid_scope",
            vec!["scope", "exp"],
        ),
    ];
    for (more, error, dims) in cases {
        let got = widens(more.clone()).await;
        assert_oauth(&got, StatusCode::BAD_REQUEST, error, "DELEGATION_WIDENS");
        assert_eq!(got.1["widened"], json!(dims), "{more:?}: {}", got.1);
    }
    // Depth: hop 3 is the cap here, so hop 4 widens it.
    let got = exchange(&h, Some(&c.key), &delegate(&c.tokens[3], &extra.token, &[])).await;
    assert_oauth(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "DELEGATION_WIDENS",
    );
    assert_eq!(got.1["widened"], json!(["depth"]), "{}", got.1);
    // A narrower one at the same hop is fine.
    let narrower = policy("pol_less", "20.00", Some("5.00"), "USD").to_string();
    child(
        &h,
        &c.key,
        t2,
        &extra.token,
        &[("policy", &narrower), ("expires_in", "60")],
    )
    .await;
}

#[tokio::test]
async fn revoking_or_suspending_an_ancestor_fails_every_descendant() {
    let h = start().await;
    let c = three_hops(&h).await;
    let t3 = c.tokens[3].clone();
    let check = |expected: Option<&'static str>| {
        let h = &h;
        let t3 = t3.clone();
        async move {
            let v = h
                .verify(json!({"token": t3, "audience": "bank.example"}))
                .await;
            match expected {
                None => assert_eq!(v["valid"], true, "{v}"),
                Some(code) => {
                    assert_eq!(v["valid"], false, "{v}");
                    assert_eq!(v["error"]["code"], code, "{v}");
                }
            }
            let (_, g) = h
                .call(
                    "GET",
                    &format!("/v1/verify/{t3}?audience=bank.example"),
                    None,
                    None,
                )
                .await;
            assert_eq!(g["valid"], expected.is_none(), "{g}");
        }
    };
    check(None).await;
    // Suspending the middle agent fails hop 3; reactivating brings it back.
    let a2 = &c.subs[1].id;
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/agents/{a2}/suspend"),
            Some(&c.key),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    check(Some("AGENT_SUSPENDED")).await;
    // A suspended ancestor cannot delegate further either.
    let extra = agent(&h, &c.key, "Sub-agent 4", json!({})).await;
    let got = exchange(&h, Some(&c.key), &delegate(&c.tokens[2], &extra.token, &[])).await;
    assert_oauth(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "AGENT_SUSPENDED",
    );
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/agents/{a2}/reactivate"),
            Some(&c.key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    check(None).await;

    // Revoking hop 1's token fails hops 2 and 3.
    let jti1 = payload(&c.tokens[1])["jti"].as_str().unwrap().to_owned();
    let (st, v) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&c.key),
            Some(json!({"jti": jti1})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    check(Some("TOKEN_REVOKED")).await;
    let v = h
        .verify(json!({"token": &c.tokens[2], "audience": "bank.example"}))
        .await;
    assert_eq!(v["error"]["code"], "TOKEN_REVOKED", "{v}");

    // Revoking the root agent fails a whole fresh chain too.
    let d = three_hops_under(&h, &c).await;
    let v = h
        .verify(json!({"token": &d, "audience": "bank.example"}))
        .await;
    assert_eq!(v["valid"], true, "{v}");
    let root = &c.root.id;
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/agents/{root}/revoke"),
            Some(&c.key),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let v = h
        .verify(json!({"token": &d, "audience": "bank.example"}))
        .await;
    assert_eq!(v["error"]["code"], "TOKEN_REVOKED", "{v}");
    // And revoking an actor agent fails what it delegated.
    let e = three_hops_of(&h, "other.example").await;
    let a1 = &e.subs[0].id;
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/agents/{a1}/revoke"),
            Some(&e.key),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let v = h
        .verify(json!({"token": &e.tokens[3], "audience": "bank.example"}))
        .await;
    assert_eq!(v["error"]["code"], "TOKEN_REVOKED", "{v}");
}

/// A new three-hop chain from `c`'s root token and sub-agents: its last token.
async fn three_hops_under(h: &Harness, c: &Chain) -> String {
    let t1 = child(
        h,
        &c.key,
        &c.root.token,
        &c.subs[0].token,
        &[("audience", "bank.example")],
    )
    .await;
    let t2 = child(h, &c.key, &t1, &c.subs[1].token, &[]).await;
    child(h, &c.key, &t2, &c.subs[2].token, &[]).await
}

#[tokio::test]
async fn a_descendants_spends_count_against_every_ancestors_budget() {
    let h = start().await;
    let rcv = receiver(&h).await;
    let key = h.issuer("apex.example").await;
    let root = agent(
        &h,
        &key,
        "Root",
        json!({"policy": policy("pol_parent", "10.00", None, "USD")}),
    )
    .await;
    let a1 = agent(&h, &key, "Child", json!({})).await;
    let a2 = agent(&h, &key, "Grandchild", json!({})).await;
    // The child has its own budget (another policy), as large as the parent's.
    let own = policy("pol_child", "10.00", None, "USD").to_string();
    let t1 = child(&h, &key, &root.token, &a1.token, &[("policy", &own)]).await;

    let v = spend(&h, &rcv, &t1, "4.00").await;
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["remaining"]["amount"], "6.00", "{v}");
    assert_eq!(spend(&h, &rcv, &t1, "4.00").await["allowed"], true);
    let v = spend(&h, &rcv, &t1, "4.00").await;
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(v["reasons"], json!(["LIMIT_PER_PERIOD"]), "{v}");
    // The parent's budget has spent the child's 8.00: 4.00 more is refused.
    let v = spend(&h, &rcv, &root.token, "4.00").await;
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(v["reasons"], json!(["LIMIT_PER_PERIOD"]), "{v}");
    assert_eq!(v["remaining"]["amount"], "2.00", "{v}");
    let v = spend(&h, &rcv, &root.token, "2.00").await;
    assert_eq!(v["allowed"], true, "{v}");
    // The parent is exhausted: the child, 2.00 left of its own budget, sees the
    // tightest remaining (the parent's 0.00) and is refused.
    let v = spend(&h, &rcv, &t1, "1.00").await;
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(v["reasons"], json!(["LIMIT_PER_PERIOD"]), "{v}");
    assert_eq!(v["remaining"]["amount"], "0.00", "{v}");
    // So is a grandchild with a fresh budget of its own (two ancestors).
    let grand = policy("pol_grand", "5.00", None, "USD").to_string();
    let t2 = child(&h, &key, &t1, &a2.token, &[("policy", &grand)]).await;
    let v = spend(&h, &rcv, &t2, "0.01").await;
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(v["reasons"], json!(["LIMIT_PER_PERIOD"]), "{v}");
    // Simulate sees the same tightest remaining.
    let (st, s) = h
        .call(
            "POST",
            "/v1/simulate",
            Some(&rcv),
            Some(json!({"token": t2, "action": "payments.send", "amount": "0.01", "currency": "USD"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{s}");
    assert_eq!(s["reasons"], json!(["LIMIT_PER_PERIOD"]), "{s}");
    assert_eq!(s["remaining"]["amount"], "0.00", "{s}");
}

#[tokio::test]
async fn a_grandchild_is_stopped_by_its_grandparents_budget() {
    let h = start().await;
    let rcv = receiver(&h).await;
    let key = h.issuer("apex.example").await;
    let root = agent(
        &h,
        &key,
        "Root",
        json!({"policy": policy("pol_r", "10.00", None, "USD")}),
    )
    .await;
    let a1 = agent(&h, &key, "Child", json!({})).await;
    let a2 = agent(&h, &key, "Grandchild", json!({})).await;
    // The child keeps the root's policy (one shared budget); the grandchild has its
    // own, whose spending still counts against the root's.
    let t1 = child(&h, &key, &root.token, &a1.token, &[]).await;
    let own = policy("pol_g", "8.00", None, "USD").to_string();
    let t2 = child(&h, &key, &t1, &a2.token, &[("policy", &own)]).await;
    assert_eq!(spend(&h, &rcv, &t1, "5.00").await["allowed"], true);
    let v = spend(&h, &rcv, &t2, "6.00").await;
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(v["remaining"]["amount"], "5.00", "{v}");
    let v = spend(&h, &rcv, &t2, "5.00").await;
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["remaining"]["amount"], "0.00", "{v}");
    let v = spend(&h, &rcv, &root.token, "0.01").await;
    assert_eq!(v["allowed"], false, "{v}");
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx() {
    let h = start().await;
    let key = h.issuer("apex.example").await;
    let other = h.issuer("other.example").await;
    let root = agent(&h, &key, "Root", json!({})).await;
    let sub = agent(&h, &key, "Sub", json!({})).await;
    let foreign = agent(&h, &other, "Foreign", json!({})).await;
    let rcv = receiver(&h).await;
    let ok = delegate(&root.token, &sub.token, &[]);
    let with = |i: usize, value: &'static str| {
        let mut p = ok.clone();
        p[i].1 = value;
        p
    };
    let bad = StatusCode::BAD_REQUEST;

    // Who calls.
    assert_oauth(
        &exchange(&h, None, &ok).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "UNAUTHORIZED",
    );
    assert_oauth(
        &exchange(&h, Some("bfk_iss_nope"), &ok).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "UNAUTHORIZED",
    );
    assert_oauth(
        &exchange(&h, Some(&rcv), &ok).await,
        bad,
        "unauthorized_client",
        "FORBIDDEN",
    );
    assert_oauth(
        &exchange(&h, Some(&h.admin), &ok).await,
        bad,
        "unauthorized_client",
        "FORBIDDEN",
    );
    // Grant and token types.
    assert_oauth(
        &exchange(&h, Some(&key), &with(0, "client_credentials")).await,
        bad,
        "unsupported_grant_type",
        "UNSUPPORTED_GRANT_TYPE",
    );
    for i in [2, 4] {
        assert_oauth(
            &exchange(
                &h,
                Some(&key),
                &with(i, "urn:ietf:params:oauth:token-type:saml2"),
            )
            .await,
            bad,
            "invalid_request",
            "UNSUPPORTED_TOKEN_TYPE",
        );
    }
    let mut p = ok.clone();
    p.push((
        "requested_token_type",
        "urn:ietf:params:oauth:token-type:id_token",
    ));
    assert_oauth(
        &exchange(&h, Some(&key), &p).await,
        bad,
        "invalid_request",
        "UNSUPPORTED_TOKEN_TYPE",
    );
    // Missing, repeated, malformed parameters.
    for i in 0..5 {
        let mut p = ok.clone();
        p.remove(i);
        assert_oauth(
            &exchange(&h, Some(&key), &p).await,
            bad,
            "invalid_request",
            "INVALID_REQUEST",
        );
    }
    assert_oauth(
        &exchange(&h, Some(&key), &[]).await,
        bad,
        "invalid_request",
        "INVALID_REQUEST",
    );
    let mut p = ok.clone();
    p.push(("subject_token", &root.token));
    assert_oauth(
        &exchange(&h, Some(&key), &p).await,
        bad,
        "invalid_request",
        "INVALID_REQUEST",
    );
    for e in ["0", "-5", "soon", "1.5", "99999999999999999999"] {
        let mut p = ok.clone();
        p.push(("expires_in", e));
        assert_oauth(
            &exchange(&h, Some(&key), &p).await,
            bad,
            "invalid_request",
            "INVALID_REQUEST",
        );
    }
    let mut p = ok.clone();
    p.push(("policy", "{not json"));
    assert_oauth(
        &exchange(&h, Some(&key), &p).await,
        bad,
        "invalid_request",
        "POLICY_INVALID",
    );
    let mut p = ok.clone();
    p.push(("scope", "NOT A SCOPE!"));
    assert_oauth(
        &exchange(&h, Some(&key), &p).await,
        bad,
        "invalid_scope",
        "SCOPE_INVALID",
    );
    let mut p = ok.clone();
    p.push(("resource", "https://bank.example/api"));
    assert_oauth(
        &exchange(&h, Some(&key), &p).await,
        bad,
        "invalid_target",
        "RESOURCE_UNSUPPORTED",
    );
    // Tokens that do not verify, or are not acceptable.
    assert_oauth(
        &exchange(&h, Some(&key), &with(1, "not.a.token")).await,
        bad,
        "invalid_request",
        "TOKEN_INVALID",
    );
    assert_oauth(
        &exchange(&h, Some(&key), &with(3, "garbage")).await,
        bad,
        "invalid_request",
        "TOKEN_INVALID",
    );
    assert_oauth(
        &exchange(&h, Some(&other), &ok).await,
        bad,
        "invalid_grant",
        "FORBIDDEN",
    );
    assert_oauth(
        &exchange(&h, Some(&key), &delegate(&root.token, &foreign.token, &[])).await,
        bad,
        "invalid_request",
        "INVALID_REQUEST",
    );
    assert_oauth(
        &exchange(&h, Some(&key), &delegate(&root.token, &root.token, &[])).await,
        bad,
        "invalid_request",
        "DELEGATION_LOOP",
    );
    let t1 = child(&h, &key, &root.token, &sub.token, &[]).await;
    let third = agent(&h, &key, "Third", json!({})).await;
    assert_oauth(
        &exchange(&h, Some(&key), &delegate(&third.token, &t1, &[])).await,
        bad,
        "invalid_request",
        "INVALID_REQUEST",
    );
    // Bodies that are neither form nor JSON object.
    for (ctype, body) in [
        ("text/plain", "grant_type=x"),
        ("application/json", "[1]"),
        ("application/json", "{"),
    ] {
        let resp = h
            .http
            .post(format!("{}/v1/token", h.base))
            .bearer_auth(&key)
            .header("content-type", ctype)
            .body(body)
            .send()
            .await
            .unwrap();
        let st = resp.status();
        let v: Value = resp.json().await.unwrap();
        assert_oauth(&(st, v), bad, "invalid_request", "INVALID_REQUEST");
    }
    let resp = h
        .http
        .post(format!("{}/v1/token", h.base))
        .bearer_auth(&key)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![b'a'; 70 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // A delegated token signed by someone else than the registry's exchange: never
    // accepted (here: `act` claims the registry never recorded).
    let mut forged = h.claims(&root.id);
    forged["act"] = json!({"sub": sub.id});
    forged["ancestor_jtis"] = json!(["tok_bbbbbbbbbbbbbbbbbbbbbbbbbb"]);
    let forged = h.sign_raw(&forged.to_string());
    let v = h.verify_token(&forged).await;
    assert_eq!(v["error"]["code"], "TOKEN_INVALID", "{v}");
}

#[tokio::test]
async fn the_child_is_bound_to_the_actors_key_not_the_roots() {
    use bonafide_core::dpop;
    use bonafide_core::keys::{Algorithm, SigningKey};

    let h = start().await;
    let key = h.issuer("apex.example").await;
    let root_key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let actor_key = SigningKey::generate(Algorithm::ES256).unwrap();
    let root = agent(
        &h,
        &key,
        "Root",
        json!({"public_key": root_key.verifying_key().jwk()}),
    )
    .await;
    let sub = agent(
        &h,
        &key,
        "Sub",
        json!({"public_key": actor_key.verifying_key().jwk()}),
    )
    .await;
    let t1 = child(&h, &key, &root.token, &sub.token, &[]).await;
    let claims = payload(&t1);
    assert_eq!(
        claims["cnf"]["jkt"],
        actor_key.verifying_key().kid(),
        "bound to the actor's key"
    );
    assert_ne!(claims["cnf"], payload(&root.token)["cnf"]);

    let url = "https://bank.example/pay";
    let proved = |signer: &SigningKey, n: u8| {
        let jwt = dpop::sign(
            signer,
            "POST",
            url,
            &t1,
            common::now_s(),
            &format!("jti-{n}"),
        )
        .unwrap();
        json!({"token": t1, "proof": {"type": "dpop", "jwt": jwt, "htm": "POST", "htu": url}})
    };
    let v = h.verify(proved(&actor_key, 1)).await;
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["delegation"][1]["agent_id"], sub.id.as_str(), "{v}");
    // The root's key does not prove possession of its child.
    let v = h.verify(proved(&root_key, 2)).await;
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["error"]["code"], "PROOF_INVALID", "{v}");
}

/// Whatever ends a parent ends its children: a bound parent cannot be exchanged for
/// an unbound (bearer) child; rotating out the key the root was bound to, or revoking
/// the issuer key that signed an issuer-signed root, fails every descendant.
#[tokio::test]
async fn the_keys_behind_the_ancestors_bind_the_children() {
    use bonafide_core::dpop;
    use bonafide_core::keys::{Algorithm, SigningKey};

    let h = start().await;
    let iss = h.issuer_full("keys.example").await;
    let root_key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let actor_key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let root = agent(
        &h,
        &iss.key,
        "Root",
        json!({"public_key": root_key.verifying_key().jwk()}),
    )
    .await;
    let keyless = agent(&h, &iss.key, "Keyless", json!({})).await;
    let keyed = agent(
        &h,
        &iss.key,
        "Keyed",
        json!({"public_key": actor_key.verifying_key().jwk()}),
    )
    .await;

    // 1. A bound parent, an actor without a key: the child would be a bearer token.
    let got = exchange(
        &h,
        Some(&iss.key),
        &delegate(&root.token, &keyless.token, &[]),
    )
    .await;
    assert_oauth(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "DELEGATION_WIDENS",
    );
    assert_eq!(got.1["widened"], json!(["cnf"]), "{}", got.1);

    // 2. The root's bound key rotated out with no grace: the child fails too.
    let t1 = child(&h, &iss.key, &root.token, &keyed.token, &[]).await;
    let url = "https://bank.example/pay";
    let proved = |n: u8| {
        let jwt = dpop::sign(
            &actor_key,
            "POST",
            url,
            &t1,
            common::now_s(),
            &format!("k-{n}"),
        )
        .unwrap();
        json!({"token": t1, "proof": {"type": "dpop", "jwt": jwt, "htm": "POST", "htu": url}})
    };
    assert_eq!(h.verify(proved(1)).await["valid"], true);
    let fresh = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let (st, v) = h
        .call(
            "PUT",
            &format!("/v1/agents/{}/keys", root.id),
            Some(&iss.key),
            Some(json!({"public_key": fresh.verifying_key().jwk(), "grace_seconds": 0})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let v = h.verify(proved(2)).await;
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["reasons"], json!(["TOKEN_REVOKED", "KEY_ROTATED"]), "{v}");

    // 3. An issuer-signed root: revoking the issuer key ends its child.
    let signer = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let (st, v) = h.add_issuer_key(&iss.key, &iss.id, &signer).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let plain = agent(&h, &iss.key, "Plain root", json!({})).await;
    let now = common::now_s();
    let claims = json!({
        "iss": iss.id, "sub": plain.id, "iat": now, "exp": now + 600,
        "jti": "tok_aaaaaaaaaaaaaaaaaaaaaaaaab",
        "agent": {"name": "Plain root", "issuer": "keys.example", "scopes": SCOPES},
    });
    let self_signed =
        bonafide_core::jws::sign_compact(&signer, "agent+jwt", claims.to_string().as_bytes())
            .unwrap();
    assert_eq!(h.verify_token(&self_signed).await["valid"], true);
    let other = agent(&h, &iss.key, "Other", json!({})).await;
    let t2 = child(&h, &iss.key, &self_signed, &other.token, &[]).await;
    assert_eq!(h.verify_token(&t2).await["valid"], true);
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/issuer/keys/{}/revoke", signer.kid()),
            Some(&iss.key),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let v = h.verify_token(&t2).await;
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["reasons"], json!(["TOKEN_REVOKED", "KEY_REVOKED"]), "{v}");
}

/// ImaRobot's verify answer names one agent and would show the root as the one
/// acting, so its compatibility surface refuses a delegated token that the native
/// answer (with its chain) accepts.
#[tokio::test]
async fn the_imarobot_surface_refuses_a_delegated_token() {
    let h = start().await;
    let key = h.issuer("imarobot-delegation.example").await;
    let root = agent(&h, &key, "Root", json!({})).await;
    let sub = agent(&h, &key, "Sub", json!({})).await;
    let token = child(
        &h,
        &key,
        &root.token,
        &sub.token,
        &[("scope", "read:account")],
    )
    .await;
    let (st, native) = h
        .call("GET", &format!("/v1/verify/{token}"), None, None)
        .await;
    assert_eq!(st, StatusCode::OK, "{native}");
    assert_eq!(native["valid"], true, "{native}");
    assert!(native["delegation"].is_array(), "{native}");
    let (st, compat) = h
        .call(
            "GET",
            &format!("/compat/imarobot/v1/verify/{token}"),
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{compat}");
    assert_eq!(compat, json!({"valid": false, "error": "TOKEN_INVALID"}));
    // The root's own token still verifies there.
    let (_, v) = h
        .call(
            "GET",
            &format!("/compat/imarobot/v1/verify/{}", root.token),
            None,
            None,
        )
        .await;
    assert_eq!(v["valid"], true, "{v}");
}

/// A consent policy revoked by its issuer ends every descendant of a token carrying
/// it, even one that carries a narrower policy of another `id` (which the child's own
/// claims do not name): the exchange records the ancestors' policy revocation ids.
#[tokio::test]
async fn revoking_an_ancestors_policy_ends_children_with_policies_of_other_ids() {
    let h = start().await;
    let c = three_hops(&h).await;
    let verdict = |token: String| {
        let h = &h;
        async move {
            h.call(
                "POST",
                "/v1/verify",
                None,
                Some(json!({"token": token, "audience": "bank.example"})),
            )
            .await
            .1
        }
    };
    for t in &c.tokens {
        let v = verdict(t.clone()).await;
        assert_eq!(v["valid"], true, "{v}");
    }
    // The hop-1 child carries `pol_hop1`, not the root's `pol_root`.
    assert_eq!(payload(&c.tokens[1])["policy"]["id"], "pol_hop1");
    let (st, v) = h
        .call(
            "POST",
            "/v1/policies/revoke",
            Some(&c.key),
            Some(json!({"policy_id": "pol_root"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    for t in &c.tokens {
        let v = verdict(t.clone()).await;
        assert_eq!(v["valid"], false, "{v}");
        assert_eq!(v["error"]["code"], "TOKEN_REVOKED", "{v}");
        assert_eq!(
            v["reasons"],
            json!(["TOKEN_REVOKED", "POLICY_REVOKED"]),
            "{v}"
        );
    }
    // Revoking a child's own policy ends it and its descendants, not its ancestors.
    let d = three_hops_of(&h, "other.example").await;
    let (st, v) = h
        .call(
            "POST",
            "/v1/policies/revoke",
            Some(&d.key),
            Some(json!({"policy_id": "pol_hop1"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(verdict(d.tokens[0].clone()).await["valid"], true);
    for t in &d.tokens[1..] {
        assert_eq!(verdict(t.clone()).await["valid"], false);
    }
}
