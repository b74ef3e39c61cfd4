//! Rule: every token has a bounded lifetime. Every token the registry accepts or
//! signs lives at most `max_token_ttl` from its `iat` (a longer one is
//! `TOKEN_INVALID`, with the reason); a delegated child lives until min(parent's
//! `exp`, now + `max_token_ttl`); every time conversion is checked (no 1970 answers).

use bonafide_core::keys::{Algorithm, SigningKey};
use bonafide_server::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::key_behind_token::{consent_token, exchange, register_issuer_key};
use crate::common::{self, Harness};

const TTL: i64 = 3600;

async fn start() -> Harness {
    common::start_with_config(Config {
        max_token_ttl_s: TTL,
        ..common::config()
    })
    .await
}

fn self_signed(key: &SigningKey, iss: &str, sub: &str, iat: i64, exp: i64) -> String {
    let claims = json!({
        "iss": iss, "sub": sub, "iat": iat, "exp": exp,
        "jti": bonafide_core::ids::TokenId::from_random(common::rand20()[..16].try_into().unwrap()).to_string(),
        "agent": {"name": "Long", "issuer": "ttl.example", "scopes": ["payments:write"]},
    });
    bonafide_core::jws::sign_compact(key, "agent+jwt", claims.to_string().as_bytes()).unwrap()
}

fn refused_as_too_long(v: &Value) {
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["error"]["code"], "TOKEN_INVALID", "{v}");
}

#[tokio::test]
async fn issuer_signed_and_consent_tokens_live_at_most_max_token_ttl() {
    let h = start().await;
    let iss = h.issuer_full("ttl.example").await;
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    register_issuer_key(&h, &iss, &key).await;
    let agent = h
        .register(
            &iss.key,
            json!({"name": "Long", "scopes": ["payments:write"], "expiry_seconds": 1800}),
        )
        .await;
    let sub = agent["agent_id"].as_str().unwrap();
    let now = common::now_s();

    let ok = self_signed(&key, &iss.id, sub, now, now + TTL);
    let v = h.verify_token(&ok).await;
    assert_eq!(v["valid"], true, "{v}");
    for exp in [now + TTL + 1, now + 10 * TTL, i64::MAX, 1 << 53] {
        let t = self_signed(&key, &iss.id, sub, now, exp);
        let v = h.verify_token(&t).await;
        refused_as_too_long(&v);
        let (_, v) = h
            .call("POST", "/v1/verify", None, Some(json!({"token": t})))
            .await;
        assert_eq!(v["valid"], false, "{v}");
        assert!(
            v["message"]
                .as_str()
                .unwrap_or_default()
                .contains("lifetime")
                || v.to_string().contains("max_token_ttl"),
            "the reason names the bound: {v}"
        );
        assert!(!v.to_string().contains("1970-01-01"), "{v}");
    }

    // Nothing to revoke in a token that can never verify: refused, so its revocation
    // never sits in memory until an `exp` of 2^63 − 1.
    let forever = self_signed(&key, &iss.id, sub, now, i64::MAX);
    let (st, v) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&iss.key),
            Some(json!({"token": forever})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    let long_consent = consent_token(&key, &iss.id, sub, 10 * TTL);
    refused_as_too_long(&h.verify_token(&long_consent).await);
    let fine = consent_token(&key, &iss.id, sub, TTL);
    assert_eq!(h.verify_token(&fine).await["valid"], true);
}

#[tokio::test]
async fn a_child_lives_no_longer_than_its_parent_nor_max_token_ttl() {
    let h = start().await;
    let iss = h.issuer_full("ttl-child.example").await;
    let parent = h
        .register(
            &iss.key,
            json!({"name": "P", "scopes": ["payments:write"], "expiry_seconds": 600}),
        )
        .await;
    let actor = h
        .register(
            &iss.key,
            json!({"name": "A", "scopes": ["payments:write"], "expiry_seconds": 1800}),
        )
        .await;
    let (st, v) = exchange(
        &h,
        &iss.key,
        parent["token"].as_str().unwrap(),
        actor["token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let expires_in = v["expires_in"].as_i64().unwrap();
    assert!(expires_in <= 600, "{v}");
    let child = v["access_token"].as_str().unwrap();
    let answer = h.verify_token(child).await;
    assert_eq!(answer["valid"], true, "{answer}");
    let expires_at = answer["expires_at"].as_str().unwrap();
    assert!(!expires_at.starts_with("1970"), "{answer}");
}
