//! Rule: a revoked key ends every token it stands behind, however the token named it.
//! The key behind a token is the key that verified it, never what its header says.

use bonafide_core::b64;
use bonafide_core::keys::{Algorithm, SigningKey};
use bonafide_core::policy::Policy;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{self, Harness};

pub const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// Registers `key` as one of the issuer's signing keys (with its key proof).
pub async fn register_issuer_key(h: &Harness, iss: &common::CreatedIssuer, key: &SigningKey) {
    let (st, v) = h.add_issuer_key(&iss.key, &iss.id, key).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
}

/// A compact JWS with exactly this header (what AgentOAuth's SDK writes).
pub fn sign_with_header(key: &SigningKey, header: &Value, claims: &Value) -> String {
    let mut out = b64::encode(header.to_string().as_bytes());
    out.push('.');
    out.push_str(&b64::encode(claims.to_string().as_bytes()));
    let sig = key.sign(out.as_bytes()).unwrap();
    out.push('.');
    out.push_str(&b64::encode(&sig));
    out
}

/// An AgentOAuth `act.v0.2` consent token for `agent`, its header `kid` the issuer's
/// own key name `key-001` (not a thumbprint), with no spending policy.
pub fn consent_token(key: &SigningKey, iss: &str, agent: &str, exp_in: i64) -> String {
    let now = common::now_s();
    let policy = json!({"version": "pol.v0.2", "id": "pol_read", "actions": ["payments.send"]});
    let hash = Policy::from_value(policy.clone())
        .unwrap()
        .hash()
        .to_owned();
    let jti = format!("act_{}", bonafide_core::hex(&common::rand20()[..8]));
    let claims = json!({
        "ver": "act.v0.2", "iss": iss, "user": "did:user:alice", "agent": agent,
        "scope": "payments:write", "policy": policy, "policy_hash": hash,
        "iat": now, "exp": now + exp_in, "jti": jti,
    });
    sign_with_header(
        key,
        &json!({"alg": "EdDSA", "kid": "key-001", "typ": "JWT"}),
        &claims,
    )
}

pub async fn exchange(
    h: &Harness,
    issuer_key: &str,
    subject: &str,
    actor: &str,
) -> (StatusCode, Value) {
    let res = h
        .http
        .post(format!("{}/v1/token", h.base))
        .bearer_auth(issuer_key)
        .form(&[
            ("grant_type", GRANT),
            ("subject_token", subject),
            ("subject_token_type", JWT),
            ("actor_token", actor),
            ("actor_token_type", JWT),
        ])
        .send()
        .await
        .unwrap();
    let st = res.status();
    (st, res.json().await.unwrap())
}

#[tokio::test]
async fn revoking_the_key_behind_a_consent_token_ends_its_delegated_children() {
    let h = common::start().await;
    let iss = h.issuer_full("consent-keys.example").await;
    let signer = SigningKey::generate(Algorithm::EdDSA).unwrap();
    register_issuer_key(&h, &iss, &signer).await;
    let root = h
        .register(
            &iss.key,
            json!({"name": "Root", "scopes": ["payments:write"]}),
        )
        .await;
    let actor = h
        .register(
            &iss.key,
            json!({"name": "Actor", "scopes": ["payments:write"]}),
        )
        .await;
    let consent = consent_token(&signer, &iss.id, root["agent_id"].as_str().unwrap(), 600);
    assert_eq!(h.verify_token(&consent).await["valid"], true);

    let (st, v) = exchange(&h, &iss.key, &consent, actor["token"].as_str().unwrap()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let child = v["access_token"].as_str().unwrap().to_owned();
    assert_eq!(h.verify_token(&child).await["valid"], true);

    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/issuer/keys/{}/revoke", signer.kid()),
            Some(&iss.key),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // The parent and, through the key recorded with the delegation, the child.
    assert_eq!(
        h.verify_token(&consent).await["error"]["code"],
        "TOKEN_REVOKED"
    );
    let v = h.verify(json!({"token": child})).await;
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["reasons"], json!(["TOKEN_REVOKED", "KEY_REVOKED"]), "{v}");
}
