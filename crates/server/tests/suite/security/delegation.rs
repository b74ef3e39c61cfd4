//! Rule: delegation only narrows, and absence is the widest value. A dimension the
//! parent constrains and the child leaves out is a widening (`DELEGATION_WIDENS`,
//! the dimension in `widened`), and a child never gains a grant its parent lacks: a
//! parent token without a consent policy grants no action and no spending, so its
//! child may not carry a policy (`policy`).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{self, Harness};

const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const SCOPES: [&str; 2] = ["payments:write", "read:account"];

/// A registered agent of `key` with `extra` registration members: id and token.
async fn agent(h: &Harness, key: &str, name: &str, extra: Value) -> (String, String) {
    let mut body = json!({"name": name, "scopes": SCOPES});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let reg = h.register(key, body).await;
    (
        reg["agent_id"].as_str().unwrap().to_owned(),
        reg["token"].as_str().unwrap().to_owned(),
    )
}

/// `POST /v1/token` from `subject` to `actor` with the issuer's key and `more`.
async fn exchange(
    h: &Harness,
    key: &str,
    subject: &str,
    actor: &str,
    more: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut params = vec![
        ("grant_type", GRANT),
        ("subject_token", subject),
        ("subject_token_type", JWT),
        ("actor_token", actor),
        ("actor_token_type", JWT),
    ];
    params.extend_from_slice(more);
    let resp = h
        .http
        .post(format!("{}/v1/token", h.base))
        .bearer_auth(key)
        .form(&params)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A refusal `DELEGATION_WIDENS` naming exactly `dims` in `widened`.
#[track_caller]
fn assert_widens(got: &(StatusCode, Value), dims: &[&str]) {
    let (st, v) = got;
    assert_eq!(*st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"], "invalid_request", "{v}");
    assert_eq!(v["code"], "DELEGATION_WIDENS", "{v}");
    assert_eq!(v["widened"], json!(dims), "{v}");
    assert!(
        v.get("access_token").is_none(),
        "a refusal carries no token: {v}"
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

/// `POST /v1/verify` as receiver `rcv` with `ask` (action, resource, amount…).
async fn decide(h: &Harness, rcv: &str, token: &str, ask: Value) -> Value {
    let mut body = json!({"token": token});
    if let (Some(b), Some(a)) = (body.as_object_mut(), ask.as_object()) {
        b.extend(a.clone());
    }
    let (st, v) = h.call("POST", "/v1/verify", Some(rcv), Some(body)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

/// Days `dow` names, Monday first.
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// `n` days (UTC) from today on: a window on two or more of them holds now, even
/// if the test runs across midnight.
fn days_from_today(n: usize) -> Value {
    // 1970-01-01 was a Thursday (Monday-first index 3).
    let today = usize::try_from((common::now_s().div_euclid(86_400) + 3) % 7).unwrap();
    json!((0..n).map(|d| DAYS[(today + d) % 7]).collect::<Vec<_>>())
}

/// The parent's policy: two actions, named resources, limits, and a time window of
/// three days from today (a window that allows every minute is no constraint).
fn parent_policy() -> Value {
    json!({
        "version": "pol.v0.2", "id": "pol_parent",
        "actions": ["payments.send", "payments.refund"],
        "resources": [{"type": "merchant", "match": {"ids": ["airbnb"], "prefixes": ["acct/12"]}}],
        "limits": {
            "per_txn": {"amount": "50.00", "currency": "USD"},
            "per_period": {"amount": "100.00", "currency": "USD", "period": "month"}
        },
        "constraints": {"time": {"tz": "UTC", "dow": days_from_today(3)}}
    })
}

/// `parent_policy` with the member at `path` removed.
fn without(path: &[&str]) -> String {
    let mut v = parent_policy();
    v["id"] = json!(format!("pol_without_{}", path.join("_")));
    let (last, parents) = path.split_last().unwrap();
    let mut at = &mut v;
    for k in parents {
        at = &mut at[*k];
    }
    at.as_object_mut().unwrap().remove(*last).unwrap();
    v.to_string()
}

#[tokio::test]
async fn a_parent_without_a_policy_gives_its_child_no_policy() {
    let h = common::start().await;
    let key = h.issuer("apex.example").await;
    let rcv = receiver(&h).await;
    // A root with a user and no policy: it grants no action and no spending.
    let (_, root) = agent(&h, &key, "Root", json!({"user": "alice@example.com"})).await;
    let (_, sub) = agent(&h, &key, "Sub", json!({})).await;
    let send = json!({"action": "payments.send"});
    let v = decide(&h, &rcv, &root, send.clone()).await;
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(v["reasons"], json!(["POLICY_ACTION"]), "{v}");

    // A child with spending limits would grant what the parent does not, on the
    // parent's user's behalf.
    let limits = json!({
        "version": "pol.v0.2", "id": "pol_child", "actions": ["payments.send"],
        "limits": {"per_txn": {"amount": "1000000", "currency": "USD"}}
    })
    .to_string();
    let got = exchange(&h, &key, &root, &sub, &[("policy", &limits)]).await;
    assert_widens(&got, &["policy"]);
    // Any policy grants some action, so even the narrowest one widens.
    let narrowest = json!({
        "version": "pol.v0.2", "id": "pol_narrowest", "actions": ["read.balance"],
        "resources": [{"type": "account", "match": {"ids": ["a1"]}}], "strict": true
    })
    .to_string();
    let got = exchange(&h, &key, &root, &sub, &[("policy", &narrowest)]).await;
    assert_widens(&got, &["policy"]);
    // Every widening is reported at once.
    let got = exchange(
        &h,
        &key,
        &root,
        &sub,
        &[("policy", &limits), ("expires_in", "99999999")],
    )
    .await;
    assert_widens(&got, &["exp", "policy"]);

    // Without a policy the child is as narrow as its parent: accepted, and it grants
    // no action either.
    let (st, v) = exchange(&h, &key, &root, &sub, &[("scope", "read:account")]).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let child = v["access_token"].as_str().unwrap();
    let v = decide(&h, &rcv, child, send).await;
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(v["reasons"], json!(["POLICY_ACTION"]), "{v}");
    assert_eq!(v["user"], "alice@example.com", "{v}");
}

#[tokio::test]
async fn a_child_that_leaves_out_a_constrained_dimension_widens() {
    let h = common::start().await;
    let key = h.issuer("apex.example").await;
    let rcv = receiver(&h).await;
    let (_, root) = agent(&h, &key, "Root", json!({"policy": parent_policy()})).await;
    let (_, sub) = agent(&h, &key, "Sub", json!({})).await;
    // The parent grants named merchants, with an amount, only.
    let merchant = json!({"type": "merchant", "id": "airbnb"});
    let v = decide(
        &h,
        &rcv,
        &root,
        json!({"action": "payments.send", "resource": merchant}),
    )
    .await;
    assert_eq!(v["reasons"], json!(["AMOUNT_REQUIRED"]), "{v}");
    let v = decide(
        &h,
        &rcv,
        &root,
        json!({"action": "payments.send", "amount": "10.00", "currency": "USD"}),
    )
    .await;
    assert_eq!(v["reasons"], json!(["POLICY_RESOURCE"]), "{v}");

    let cases: [(&[&str], &[&str]); 5] = [
        (&["limits"], &["policy.limits"]),
        (&["limits", "per_txn"], &["policy.limits.per_txn"]),
        (&["limits", "per_period"], &["policy.limits.per_period"]),
        (&["constraints"], &["policy.time"]),
        (&["resources"], &["policy.resources"]),
    ];
    for (path, dims) in cases {
        let got = exchange(&h, &key, &root, &sub, &[("policy", &without(path))]).await;
        assert_widens(&got, dims);
    }
    // All three at once, in check order.
    let mut v = parent_policy();
    for k in ["limits", "constraints", "resources"] {
        v.as_object_mut().unwrap().remove(k);
    }
    let got = exchange(&h, &key, &root, &sub, &[("policy", &v.to_string())]).await;
    assert_widens(&got, &["policy.resources", "policy.limits", "policy.time"]);
    // A strict parent's child may not drop `strict`.
    let mut strict = parent_policy();
    strict.as_object_mut().unwrap().remove("resources");
    strict["strict"] = json!(true);
    let (_, strict_root) = agent(&h, &key, "Strict root", json!({"policy": strict})).await;
    let mut loose = parent_policy();
    loose.as_object_mut().unwrap().remove("resources");
    let got = exchange(
        &h,
        &key,
        &strict_root,
        &sub,
        &[("policy", &loose.to_string())],
    )
    .await;
    assert_widens(&got, &["policy.strict"]);
}

#[tokio::test]
async fn a_narrowing_child_is_still_accepted() {
    let h = common::start().await;
    let key = h.issuer("apex.example").await;
    let rcv = receiver(&h).await;
    let (_, root) = agent(
        &h,
        &key,
        "Root",
        json!({"policy": parent_policy(), "user": "alice@example.com"}),
    )
    .await;
    let (_, sub) = agent(&h, &key, "Sub", json!({})).await;
    // Fewer actions, fewer resources, smaller limits, fewer days, strict.
    let narrower = json!({
        "version": "pol.v0.2", "id": "pol_narrower",
        "actions": ["payments.send"],
        "resources": [{"type": "merchant", "match": {"ids": ["acct/12/7"]}}],
        "limits": {
            "per_txn": {"amount": "20.00", "currency": "USD"},
            "per_period": {"amount": "90.00", "currency": "USD", "period": "month"}
        },
        "constraints": {"time": {"tz": "UTC", "dow": days_from_today(2)}},
        "strict": true
    })
    .to_string();
    let (st, v) = exchange(&h, &key, &root, &sub, &[("policy", &narrower)]).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let child = v["access_token"].as_str().unwrap().to_owned();

    let pay = |id: &str, amount: &str| {
        json!({
            "action": "payments.send", "resource": {"type": "merchant", "id": id},
            "amount": amount, "currency": "USD"
        })
    };
    let v = decide(&h, &rcv, &child, pay("acct/12/7", "20.00")).await;
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["user"], "alice@example.com", "{v}");
    // What the parent grants and the child does not.
    let v = decide(&h, &rcv, &child, pay("airbnb", "1.00")).await;
    assert_eq!(v["reasons"], json!(["POLICY_RESOURCE"]), "{v}");
    let v = decide(&h, &rcv, &child, pay("acct/12/7", "20.01")).await;
    assert_eq!(v["reasons"], json!(["LIMIT_PER_TXN"]), "{v}");
    let v = decide(
        &h,
        &rcv,
        &child,
        json!({"action": "payments.send", "resource": {"type": "merchant", "id": "acct/12/7"}}),
    )
    .await;
    assert_eq!(v["reasons"], json!(["AMOUNT_REQUIRED"]), "{v}");

    // A child without a policy keeps its parent's.
    let (st, v) = exchange(&h, &key, &root, &sub, &[]).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn a_bound_parent_has_no_bearer_child_and_every_widening_is_named() {
    use bonafide_core::keys::{Algorithm, SigningKey};

    let h = common::start().await;
    let key = h.issuer("apex.example").await;
    let root_key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let (_, root) = agent(
        &h,
        &key,
        "Bound root",
        json!({"policy": parent_policy(), "public_key": root_key.verifying_key().jwk()}),
    )
    .await;
    let (_, keyless) = agent(&h, &key, "Keyless", json!({})).await;
    // The binding is a dimension like the others: left out (a bearer child), it is
    // reported with the rest.
    let got = exchange(
        &h,
        &key,
        &root,
        &keyless,
        &[("policy", &without(&["limits"]))],
    )
    .await;
    assert_widens(&got, &["cnf", "policy.limits"]);
    let described = got.1["error_description"].as_str().unwrap();
    assert!(described.contains("PUT /v1/agents/"), "{described}");
    // An actor with a key gets a child bound to it.
    let actor_key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let (_, keyed) = agent(
        &h,
        &key,
        "Keyed",
        json!({"public_key": actor_key.verifying_key().jwk()}),
    )
    .await;
    let (st, v) = exchange(&h, &key, &root, &keyed, &[]).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let middle = v["access_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    let claims: Value =
        serde_json::from_slice(&bonafide_core::b64::decode(middle).unwrap()).unwrap();
    assert_eq!(
        claims["cnf"]["jkt"],
        actor_key.verifying_key().kid(),
        "{claims}"
    );
}
