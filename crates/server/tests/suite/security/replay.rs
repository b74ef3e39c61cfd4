//! Rule: an idempotent replay never answers "allowed" where a fresh verify would
//! refuse for any reason other than the spend already made. The proof belongs to the
//! request (another valid proof is another request: 409); the token's status and
//! the proof are checked on every replay (a retry that no longer checks out is
//! decided afresh as a denial); only the spend is remembered.

use bonafide_core::dpop;
use bonafide_core::keys::{Algorithm, SigningKey};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{self, Harness};

pub async fn receiver(h: &Harness, name: &str) -> String {
    let (st, v) = h
        .call(
            "POST",
            "/v1/receivers",
            Some(&h.admin),
            Some(json!({"name": name})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v["api_key"].as_str().unwrap().to_owned()
}

pub fn spending_policy() -> Value {
    json!({
        "version": "pol.v0.2", "id": "pol_spend", "actions": ["payments.send"],
        "limits": {"per_period": {"amount": "100", "currency": "USD", "period": "month"}}
    })
}

/// An agent with a spending policy (and `extra` registration members): its issuer's
/// key, its id and its token.
pub async fn spender(h: &Harness, extra: Value) -> (String, String, String) {
    let iss = h.issuer("replay.example").await;
    let mut body =
        json!({"name": "Spender", "scopes": ["payments:write"], "policy": spending_policy()});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let reg = h.register(&iss, body).await;
    (
        iss,
        reg["agent_id"].as_str().unwrap().to_owned(),
        reg["token"].as_str().unwrap().to_owned(),
    )
}

async fn post(h: &Harness, key: &str, body: &Value) -> (StatusCode, Value) {
    h.call("POST", "/v1/verify", Some(key), Some(body.clone()))
        .await
}

#[tokio::test]
async fn a_replay_of_an_allowed_spend_is_refused_once_the_agent_is_revoked() {
    let h = common::start().await;
    let rcv = receiver(&h, "shop").await;
    let (iss, agent, token) = spender(&h, json!({})).await;
    let body = json!({"token": token, "action": "payments.send", "amount": "5",
        "currency": "USD", "idempotency_key": "order-1"});
    let (st, first) = post(&h, &rcv, &body).await;
    assert_eq!(st, StatusCode::OK, "{first}");
    assert_eq!(first["allowed"], true, "{first}");

    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent}/revoke"),
            Some(&iss),
            Some(json!({"reason": "leaked"})),
        )
        .await;
    assert!(st.is_success(), "{v}");
    let (st, again) = post(&h, &rcv, &body).await;
    assert_eq!(st, StatusCode::OK, "{again}");
    assert_eq!(again["allowed"], false, "{again}");
    assert_eq!(again["valid"], false, "{again}");
    assert_eq!(again["reasons"][0], "TOKEN_REVOKED", "{again}");
}

#[tokio::test]
async fn a_replay_with_another_proof_or_none_is_another_request() {
    let h = common::start().await;
    let rcv = receiver(&h, "shop").await;
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let (_, _, token) = spender(&h, json!({"public_key": key.verifying_key().jwk()})).await;
    let url = "https://shop.example/pay";
    let proof = |k: &SigningKey, jti: &str| {
        let jwt = dpop::sign(k, "POST", url, &token, common::now_s(), jti).unwrap();
        json!({"type": "dpop", "jwt": jwt, "htm": "POST", "htu": url})
    };
    let base = json!({"token": token, "action": "payments.send", "amount": "5",
        "currency": "USD", "idempotency_key": "order-2"});
    let mut first = base.clone();
    first["proof"] = proof(&key, "p-1");
    let (st, v) = post(&h, &rcv, &first).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["allowed"], true, "{v}");

    // The very same request (same proof) is a replay: the first answer, nothing spent.
    let res = h
        .http
        .post(format!("{}/v1/verify", h.base))
        .bearer_auth(&rcv)
        .json(&first)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()
            .get("idempotent-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["allowed"], true, "{v}");

    // No proof: decided afresh, never from the record.
    let (st, v) = post(&h, &rcv, &base).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(v["reasons"][0], "PROOF_REQUIRED", "{v}");
    // A proof by another key: refused, never the stored "allowed".
    let thief = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let mut stolen = base.clone();
    stolen["proof"] = proof(&thief, "p-2");
    let (st, v) = post(&h, &rcv, &stolen).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(v["reasons"][0], "PROOF_INVALID", "{v}");
    // A valid proof other than the first: another request under the same key.
    let mut fresh = base.clone();
    fresh["proof"] = proof(&key, "p-3");
    let (st, v) = post(&h, &rcv, &fresh).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "IDEMPOTENCY_CONFLICT", "{v}");
}

#[tokio::test]
async fn a_replay_is_refused_while_the_agent_is_suspended_and_answers_again_after() {
    let h = common::start().await;
    let rcv = receiver(&h, "shop").await;
    let (iss, agent, token) = spender(&h, json!({})).await;
    let body = json!({"token": token, "action": "payments.send", "amount": "7",
        "currency": "USD", "idempotency_key": "order-3"});
    let (_, first) = post(&h, &rcv, &body).await;
    assert_eq!(first["allowed"], true, "{first}");
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent}/suspend"),
            Some(&iss),
            Some(json!({"reason": "review"})),
        )
        .await;
    assert!(st.is_success(), "{v}");
    let (_, v) = post(&h, &rcv, &body).await;
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(v["reasons"][0], "AGENT_SUSPENDED", "{v}");
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent}/reactivate"),
            Some(&iss),
            Some(json!({})),
        )
        .await;
    assert!(st.is_success(), "{v}");
    // Back in good standing: the first answer again, and the spend was made once.
    let (_, v) = post(&h, &rcv, &body).await;
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["audit_index"], first["audit_index"], "{v}");
}

/// A spend of 0 asks for nothing: refused, so `remaining` is not read through it.
#[tokio::test]
async fn a_spend_of_zero_is_refused() {
    let h = common::start().await;
    let rcv = receiver(&h, "shop").await;
    let (_, _, token) = spender(&h, json!({})).await;
    let before = h.state.store.audit_size().await.unwrap();
    for amount in [json!("0"), json!("0.00"), json!(0), json!("000.0")] {
        let body =
            json!({"token": token, "action": "payments.send", "amount": amount, "currency": "USD"});
        for path in ["/v1/verify", "/v1/simulate"] {
            let (st, v) = h.call("POST", path, Some(&rcv), Some(body.clone())).await;
            assert!(
                st == StatusCode::UNPROCESSABLE_ENTITY && v["error"]["code"] == "AMOUNT_INVALID",
                "{path} {amount}: {st} {v}"
            );
            assert!(v.get("remaining").is_none(), "{v}");
        }
    }
    assert_eq!(h.state.store.audit_size().await.unwrap(), before);
    // The smallest positive amount is a spend.
    let (_, v) = post(
        &h,
        &rcv,
        &json!({"token": token, "action": "payments.send", "amount": "0.01", "currency": "USD"}),
    )
    .await;
    assert_eq!(v["allowed"], true, "{v}");
}
