//! A token's consent policy over HTTP (pipeline step 7): the registry signs what it
//! was given, and a token whose `policy_hash` is not its policy's is `TOKEN_INVALID`
//! even when the registry's parsed-policy cache already holds the hash it claims.

use crate::common;

use common::start;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn policy(cap: &str) -> Value {
    json!({
        "version": "pol.v0.2",
        "id": "pol_cache",
        "actions": ["payments.send"],
        "limits": {"per_txn": {"amount": cap, "currency": "USD"}}
    })
}

fn payload(token: &str) -> Value {
    let middle = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&bonafide_core::b64::decode(middle).unwrap()).unwrap()
}

#[tokio::test]
async fn a_cached_hash_with_another_policy_is_token_invalid() {
    let h = start().await;
    let key = h.issuer("cache.example").await;
    let reg = h
        .register(
            &key,
            json!({"name": "Payer", "scopes": ["read:x"], "policy": policy("10"), "user": "did:example:alice"}),
        )
        .await;
    let token = reg["token"].as_str().unwrap();
    let claims = payload(token);
    assert_eq!(claims["policy"], policy("10"));
    assert_eq!(claims["user"], "did:example:alice");
    assert_eq!(claims["policy_hash"], reg["policy_hash"]);
    let lint = h
        .call("POST", "/v1/policies/lint", None, Some(policy("10")))
        .await
        .1;
    assert_eq!(lint["policy_hash"], reg["policy_hash"], "{lint}");

    // Warm the cache with the genuine policy.
    let v = h
        .verify(json!({"token": token, "action": "payments.send"}))
        .await;
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["user"], "did:example:alice", "{v}");

    // The same claims, signed by the registry's own key, with a policy 1000 times
    // wider under the cached policy's hash.
    let mut forged = claims.clone();
    forged["policy"] = policy("10000");
    forged["jti"] = json!("tok_bbbbbbbbbbbbbbbbbbbbbbbbbb");
    let forged = h.sign_raw(&forged.to_string());
    let v = h
        .verify(json!({"token": forged, "action": "payments.send"}))
        .await;
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["error"]["code"], "TOKEN_INVALID", "{v}");
    assert!(v["reason"].as_str().unwrap().contains("policy_hash"), "{v}");

    // And the genuine token still verifies afterwards (the cache was not replaced).
    let v = h
        .verify(json!({"token": token, "action": "payments.send"}))
        .await;
    assert_eq!(v["valid"], true, "{v}");
}

#[tokio::test]
async fn registration_refuses_bad_policies_and_registers_nothing() {
    let h = start().await;
    let key = h.issuer("bad.example").await;
    let cases = [
        (
            json!({"version": "pol.v0.1", "id": "p", "actions": ["a"]}),
            "version",
        ),
        (
            json!({"version": "pol.v0.2", "id": "p", "actions": ["a"], "extra": 1}),
            "extra",
        ),
        (
            json!({"version": "pol.v0.2", "id": "p", "actions": ["a"],
                   "limits": {"per_txn": {"amount": 10.5, "currency": "USD"}}}),
            "limits.per_txn.amount",
        ),
        (
            json!({"version": "pol.v0.2", "id": "p", "actions": ["a"],
                   "constraints": {"time": {"tz": "Mars/Olympus"}}}),
            "constraints.time.tz",
        ),
        (json!("not an object"), "policy"),
    ];
    for (bad, needle) in cases {
        let (st, v) = h
            .call(
                "POST",
                "/v1/agents/register",
                Some(&key),
                Some(json!({"name": "X", "scopes": ["read:x"], "policy": bad})),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["error"]["code"], "POLICY_INVALID", "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{needle}: {msg}");
    }
    let (_, list) = h.call("GET", "/v1/agents", Some(&key), None).await;
    assert_eq!(list["agents"].as_array().unwrap().len(), 0, "{list}");
}

#[tokio::test]
async fn spending_with_an_issuer_or_admin_key_is_forbidden_not_unauthorized() {
    let h = start().await;
    let key = h.issuer("keys.example").await;
    let reg = h
        .register(
            &key,
            json!({"name": "Payer", "scopes": ["read:x"], "policy": policy("10")}),
        )
        .await;
    let body = json!({"token": reg["token"], "action": "payments.send",
                      "amount": "1", "currency": "USD"});
    for (who, k) in [
        ("issuer", Some(key.as_str())),
        ("admin", Some(h.admin.as_str())),
    ] {
        for path in ["/v1/verify", "/v1/simulate"] {
            let (st, v) = h.call("POST", path, k, Some(body.clone())).await;
            assert_eq!(st, StatusCode::FORBIDDEN, "{who} {path}: {v}");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("receiver key"),
                "{v}"
            );
        }
    }
    let (st, _) = h.call("POST", "/v1/verify", None, Some(body)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let mut with_key = json!({"token": reg["token"], "idempotency_key": "k1"});
    let (st, _) = h
        .call("POST", "/v1/verify", Some(&key), Some(with_key.clone()))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    with_key["idempotency_key"] = json!("has space");
    let (st, _) = h.call("POST", "/v1/verify", None, Some(with_key)).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn registration_judges_the_policy_bytes_as_sent_like_lint() {
    let h = start().await;
    let key = h.issuer("bytes.example").await;
    let deep = format!("{}1{}", "{\"a\":".repeat(14), "}".repeat(14));
    let cases = [
        // A repeated member would otherwise be merged (last one wins) into `id: b`.
        r#"{"version":"pol.v0.2","id":"a","id":"b","actions":["x"]}"#.to_owned(),
        // Deeper than the policy depth bound (was a 500 when the token was minted).
        format!(r#"{{"version":"pol.v0.2","id":"a","actions":["x"],"meta":{deep}}}"#),
    ];
    for policy in cases {
        let lint = h
            .http
            .post(format!("{}/v1/policies/lint", h.base))
            .header("content-type", "application/json")
            .body(policy.clone())
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        assert_eq!(lint["valid"], false, "{lint}");
        let body = format!(r#"{{"name":"X","scopes":["read:x"],"policy":{policy}}}"#);
        let resp = h
            .http
            .post(format!("{}/v1/agents/register", h.base))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], "POLICY_INVALID", "{v}");
    }
    let (_, list) = h.call("GET", "/v1/agents", Some(&key), None).await;
    assert_eq!(list["agents"].as_array().unwrap().len(), 0, "{list}");
}

#[tokio::test]
async fn a_policy_token_grants_nothing_without_a_named_action() {
    // A strict policy whose window is 12 hours away: a request that names no action
    // must not be `allowed` (it would otherwise skip the window and the action list).
    let h = start().await;
    let key = h.issuer("window.example").await;
    let hour = (jiff::Timestamp::now().as_second().rem_euclid(86_400) / 3600 + 12) % 24;
    let policy = json!({
        "version": "pol.v0.2", "id": "pol_window", "actions": ["payments.send"],
        "strict": true,
        "constraints": {"time": {"tz": "UTC", "start": format!("{hour:02}:00"),
                                 "end": format!("{:02}:00", (hour + 1) % 24)}}
    });
    let reg = h
        .register(
            &key,
            json!({"name": "P", "scopes": ["read:x"], "policy": policy}),
        )
        .await;
    let v = h
        .verify(json!({"token": reg["token"], "scopes_requested": ["read:x"]}))
        .await;
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(v["reasons"], json!(["POLICY_ACTION"]), "{v}");
    let v = h
        .verify(json!({"token": reg["token"], "action": "payments.send"}))
        .await;
    assert_eq!(v["reasons"], json!(["TIME_WINDOW"]), "{v}");
}

#[tokio::test]
async fn two_policies_that_reuse_an_id_do_not_share_a_budget() {
    let h = start().await;
    let key = h.issuer("reuse.example").await;
    let (_, rcv) = h
        .call(
            "POST",
            "/v1/receivers",
            Some(&h.admin),
            Some(json!({"name": "shop"})),
        )
        .await;
    let rcv = rcv["api_key"].as_str().unwrap().to_owned();
    let with_cap = |cap: &str| {
        json!({
            "version": "pol.v0.2", "id": "pol_same", "actions": ["payments.send"],
            "limits": {"per_period": {"amount": cap, "currency": "USD", "period": "month"}}
        })
    };
    let small = h
        .register(
            &key,
            json!({"name": "S", "scopes": ["read:x"], "policy": with_cap("10.00")}),
        )
        .await;
    let big = h
        .register(
            &key,
            json!({"name": "B", "scopes": ["read:x"], "policy": with_cap("1000.00")}),
        )
        .await;
    let spend = |token: &Value, amount: &str| json!({"token": token, "action": "payments.send", "amount": amount, "currency": "USD"});
    let (_, v) = h
        .call(
            "POST",
            "/v1/verify",
            Some(&rcv),
            Some(spend(&big["token"], "500.00")),
        )
        .await;
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["remaining"]["amount"], "500.00", "{v}");
    // The small policy's budget is untouched by the big one's spending.
    let (_, v) = h
        .call(
            "POST",
            "/v1/verify",
            Some(&rcv),
            Some(spend(&small["token"], "4.00")),
        )
        .await;
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["remaining"]["amount"], "6.00", "{v}");
}

#[tokio::test]
async fn a_mismatched_policy_hash_is_invalid_on_every_verify_path() {
    let h = start().await;
    let key = h.issuer("paths.example").await;
    let reg = h
        .register(
            &key,
            json!({"name": "P", "scopes": ["read:x"], "policy": policy("10")}),
        )
        .await;
    let mut forged = payload(reg["token"].as_str().unwrap());
    forged["policy"] = policy("10000");
    let forged = h.sign_raw(&forged.to_string());
    let (_, v) = h
        .call("GET", &format!("/v1/verify/{forged}"), None, None)
        .await;
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["error"]["code"], "TOKEN_INVALID", "{v}");
    let resp = h
        .http
        .post(format!("{}/v1/introspect", h.base))
        .form(&[("token", forged.as_str())])
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v, json!({"active": false}));
    // The genuine token is fine on both.
    let token = reg["token"].as_str().unwrap();
    let (_, v) = h
        .call("GET", &format!("/v1/verify/{token}"), None, None)
        .await;
    assert_eq!(v["valid"], true, "{v}");
}
