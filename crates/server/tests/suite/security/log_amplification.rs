//! Rule: nobody writes kilobytes into the permanent log for free. Every
//! caller-controlled field that reaches an audit entry or a receipt is bounded (422
//! beyond); a token that does not verify concerns no agent: it is counted, not
//! logged, and gets no receipt.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{self, Harness};

async fn audit_size(h: &Harness) -> u64 {
    h.state.store.audit_size().await.unwrap()
}

#[tokio::test]
async fn oversized_fields_are_refused_before_anything_is_logged() {
    let h = common::start().await;
    let rcv = super::replay::receiver(&h, "shop").await;
    let before = audit_size(&h).await;
    let big = "A".repeat(60_000);
    let over = "a".repeat(257);
    let cases = [
        json!({"token": "a.b.c", "audience": big}),
        json!({"token": "a.b.c", "audience": over}),
        json!({"token": "a.b.c", "target_resource": big}),
        json!({"token": "a.b.c", "scopes_requested": [big]}),
        json!({"token": "a.b.c", "scopes_requested": ["x".repeat(129)]}),
        json!({"token": "a.b.c", "action": big}),
        json!({"token": "a.b.c", "action": "pay", "resource": {"type": "t", "id": big}}),
        // Bounds are in bytes: 65 four-byte characters are over 256 bytes.
        json!({"token": "a.b.c", "audience": "😀".repeat(65)}),
        json!({"token": "a.b.c", "scopes_requested": ["😀".repeat(17)]}),
        json!({"token": "a.b.c", "action": "pay", "resource": {"type": "t", "id": "😀".repeat(65)}}),
        // What reaches the log is shown there: no bidirectional controls.
        json!({"token": "a.b.c", "audience": "shop\u{202e}"}),
        // One audience per request.
        json!({"token": "a.b.c", "audience": "shop", "target_resource": "bank"}),
    ];
    for body in cases.iter() {
        for key in [None, Some(rcv.as_str())] {
            let (st, v) = h.call("POST", "/v1/verify", key, Some(body.clone())).await;
            assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
            let (st, v) = h
                .call("POST", "/v1/simulate", key, Some(body.clone()))
                .await;
            assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        }
    }
    let (st, v) = h
        .call(
            "POST",
            "/v1/verify",
            Some(&rcv),
            Some(json!({"token": "a.b.c", "idempotency_key": "k".repeat(256)})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(audit_size(&h).await, before);
}

#[tokio::test]
async fn a_token_that_does_not_verify_is_counted_not_logged_and_gets_no_receipt() {
    let h = common::start().await;
    let rcv = super::replay::receiver(&h, "shop").await;
    let iss = h.issuer("log.example").await;
    let good = h
        .register(&iss, json!({"name": "Logged", "scopes": ["read:account"]}))
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // A forged signature on a real token's header and claims.
    let mut parts: Vec<&str> = good.split('.').collect();
    let forged_sig = "A".repeat(parts[2].len());
    parts[2] = &forged_sig;
    let forged = parts.join(".");
    let before = audit_size(&h).await;
    for token in ["a.b.c", "not a token", forged.as_str()] {
        for key in [None, Some(rcv.as_str())] {
            let (st, v) = h
                .call(
                    "POST",
                    "/v1/verify",
                    key,
                    Some(json!({"token": token, "audience": "shop"})),
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{v}");
            assert_eq!(v["valid"], false, "{v}");
            assert!(v.get("receipt_id").is_none(), "{v}");
            assert!(v.get("audit_index").is_none(), "{v}");
        }
        let (_, v) = h
            .call(
                "GET",
                &format!("/v1/verify/{}", token.replace(' ', "%20")),
                None,
                None,
            )
            .await;
        assert_eq!(v["valid"], false, "{v}");
    }
    assert_eq!(
        audit_size(&h).await,
        before,
        "nothing reached the permanent log"
    );
    let (_, health) = h.call("GET", "/v1/health", None, None).await;
    assert!(
        health["counters"]["unverifiable_tokens"].as_u64().unwrap() >= 9,
        "{health}"
    );

    // A token that verifies (even to refuse it) concerns an agent: logged, with a receipt.
    let (_, v) = h
        .call(
            "POST",
            "/v1/verify",
            Some(&rcv),
            Some(json!({"token": good})),
        )
        .await;
    assert_eq!(v["valid"], true, "{v}");
    assert!(v.get("receipt_id").is_some(), "{v}");
    assert_eq!(audit_size(&h).await, before + 1);
}

#[tokio::test]
async fn a_signed_action_that_is_not_signed_by_the_agent_is_counted_not_logged() {
    let h = common::start().await;
    let iss = h.issuer("action-log.example").await;
    let key =
        bonafide_core::keys::SigningKey::generate(bonafide_core::keys::Algorithm::EdDSA).unwrap();
    let agent = h
        .register(
            &iss,
            json!({"name": "Signer", "scopes": ["read:portfolio"], "public_key": key.verifying_key().jwk()}),
        )
        .await["agent_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let keyless = h
        .register(
            &iss,
            json!({"name": "Keyless", "scopes": ["read:portfolio"]}),
        )
        .await["agent_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = audit_size(&h).await;
    let now = common::now_s();
    for (who, timestamp) in [(&agent, now), (&agent, 0), (&keyless, now)] {
        let (st, v) = h
            .call(
                "POST",
                &format!("/v1/agents/{who}/verify-action"),
                None,
                Some(
                    json!({"action": "😀".repeat(32), "resource": "x", "timestamp": timestamp,
                    "nonce": "n-1", "signature": "AAAA"}),
                ),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["allowed"], false, "{v}");
        assert!(
            v.get("audit_index").is_none() || v["audit_index"].is_null(),
            "{v}"
        );
    }
    assert_eq!(
        audit_size(&h).await,
        before,
        "nothing unsigned reached the log"
    );
}
