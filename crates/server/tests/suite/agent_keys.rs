//! Agents' own keys over HTTP, end to end: registration with a key made by Python
//! `cryptography` (JWK, and PEM + `key_algorithm`), `cnf.jkt` in the token, refusals
//! (private key, RSA, both forms), rotation with a grace period keeping the agent id,
//! the did:web document, the `KEY_EXPIRES_SOON` warning, an expired key, and issuer
//! isolation.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bonafide_core::b64;
use bonafide_server::Config;
use common::{Harness, start, start_with_config};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn python() -> PathBuf {
    common::interop_python()
}

/// A key pair made by Python `cryptography`: the public JWK, the public PEM, the
/// private JWK and the RFC 7638 thumbprint Python computed.
struct OutsideKey {
    jwk: Value,
    pem: String,
    private_jwk: Value,
    jkt: String,
    /// The private key (PEM), for proofs of possession.
    key_file: PathBuf,
    _dir: tempfile::TempDir,
}

fn outside_key(alg: &str) -> OutsideKey {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("agent.pem");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/python/agent_key.py");
    let out = Command::new(python())
        .arg(script)
        .args(["keygen", "--alg", alg, "--key-file"])
        .arg(&key_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "agent_key.py keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    OutsideKey {
        jwk: v["jwk"].clone(),
        pem: v["pem"].as_str().unwrap().to_owned(),
        private_jwk: v["private_jwk"].clone(),
        jkt: v["jkt"].as_str().unwrap().to_owned(),
        key_file,
        _dir: dir,
    }
}

/// `POST /v1/verify` of a token bound to `key`, with a DPoP proof made by Python
/// `jwcrypto` with that key (a bound token needs one).
async fn verify_bound(h: &Harness, key: &OutsideKey, token: &str) -> Value {
    let htu = "https://receiver.example/orders";
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/python/dpop_proof.py");
    let out = Command::new(python())
        .arg(script)
        .arg("--key-file")
        .arg(&key.key_file)
        .args(["--htm", "POST", "--htu", htu, "--access-token", token])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dpop_proof.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jwt = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    h.verify(
        json!({"token": token, "proof": {"type": "dpop", "jwt": jwt, "htm": "POST", "htu": htu}}),
    )
    .await
}

/// The token's claims, decoded without verification (the test reads what it holds).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&b64::decode(payload).unwrap()).unwrap()
}

async fn register(h: &Harness, key: &str, extra: Value) -> (StatusCode, Value) {
    let mut body = json!({"name": "Keyed bot", "scopes": ["read:x"]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    h.call("POST", "/v1/agents/register", Some(key), Some(body))
        .await
}

async fn did(h: &Harness, agent_id: &str) -> (StatusCode, Value) {
    h.call("GET", &format!("/agents/{agent_id}/did.json"), None, None)
        .await
}

/// The verification method ids a DID document lists, checked consistent across
/// `verificationMethod`, `authentication` and `assertionMethod`.
fn listed_keys(doc: &Value, did: &str) -> Vec<String> {
    let methods: Vec<String> = doc["verificationMethod"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["type"], "JsonWebKey2020");
            assert_eq!(m["controller"], did);
            assert!(m["publicKeyJwk"].get("d").is_none());
            m["id"].as_str().unwrap().to_owned()
        })
        .collect();
    for rel in ["authentication", "assertionMethod"] {
        let listed: Vec<String> = doc[rel]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(listed, methods, "{rel}");
    }
    methods
        .iter()
        .map(|m| m.strip_prefix(&format!("{did}#")).unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_jwk_made_by_python_binds_the_token_to_its_thumbprint() {
    let h = start().await;
    let iss = h.issuer("keys.example").await;
    for alg in ["Ed25519", "P-256"] {
        let key = outside_key(alg);
        let (st, v) = register(&h, &iss, json!({"public_key": key.jwk})).await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        let token = v["token"].as_str().unwrap();
        assert_eq!(claims(token)["cnf"], json!({"jkt": key.jkt}), "{alg}");
        assert_eq!(v["key"]["jkt"], key.jkt.as_str());
        assert_eq!(v["key"]["status"], "current");
        // The registry never hands out a private key.
        assert!(v["key"]["jwk"].get("d").is_none());
        assert!(
            !v.to_string()
                .contains(key.private_jwk["d"].as_str().unwrap())
        );
        let verdict = verify_bound(&h, &key, token).await;
        assert_eq!(verdict["valid"], true, "{verdict}");
        // 90 days by default: nothing to warn about.
        assert!(verdict.get("warnings").is_none(), "{verdict}");
        let key_expires = v["key"]["key_expires_at"].as_str().unwrap();
        let created = v["key"]["created_at"].as_str().unwrap();
        assert_ne!(key_expires, created);
    }
}

#[tokio::test]
async fn a_pem_with_its_algorithm_is_accepted_as_kairosai_sends_it() {
    let h = start().await;
    let iss = h.issuer("pem.example").await;
    for (alg, name) in [
        ("Ed25519", "Ed25519"),
        ("P-256", "ES256"),
        ("Ed25519", "EdDSA"),
    ] {
        let key = outside_key(alg);
        let (st, v) = register(
            &h,
            &iss,
            json!({"signing_key_pub": key.pem, "key_algorithm": name}),
        )
        .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        assert_eq!(
            claims(v["token"].as_str().unwrap())["cnf"]["jkt"],
            key.jkt.as_str()
        );
        // The same key as a JWK: the same thumbprint.
        assert_eq!(v["key"]["jwk"]["x"], key.jwk["x"]);
    }
}

#[tokio::test]
async fn private_rsa_and_ambiguous_keys_are_refused() {
    let h = start().await;
    let iss = h.issuer("refusals.example").await;
    let ed = outside_key("Ed25519");
    let p256 = outside_key("P-256");
    let rsa = outside_key("RSA");

    for private in [&ed.private_jwk, &p256.private_jwk] {
        let (st, v) = register(&h, &iss, json!({"public_key": private})).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["error"]["code"], "PRIVATE_KEY_REFUSED");
    }
    let (st, v) = register(&h, &iss, json!({"public_key": rsa.jwk})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "KEY_INVALID");
    let (st, v) = register(
        &h,
        &iss,
        json!({"signing_key_pub": rsa.pem, "key_algorithm": "ES256"}),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    let cases = [
        json!({"public_key": ed.jwk, "signing_key_pub": ed.pem, "key_algorithm": "Ed25519"}),
        json!({"public_key": ed.jwk, "key_algorithm": "Ed25519"}),
        json!({"signing_key_pub": ed.pem}),
        json!({"key_algorithm": "Ed25519"}),
        json!({"signing_key_pub": ed.pem, "key_algorithm": "ES256"}),
        json!({"signing_key_pub": ed.pem, "key_algorithm": "RS256"}),
        json!({"public_key": ed.jwk, "key_expires_in": 3600}),
        json!({"public_key": ed.jwk, "key_expires_in": 366 * 86_400}),
        json!({"key_expires_in": 2 * 86_400}),
    ];
    for body in cases {
        let (st, v) = register(&h, &iss, body.clone()).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
    }
    // Nothing was registered by any of them.
    let (_, list) = h.call("GET", "/v1/agents", Some(&iss), None).await;
    assert_eq!(list["agents"], json!([]));
}

#[tokio::test]
async fn rotation_keeps_the_agent_and_the_old_key_verifies_only_during_grace() {
    // The server's clock is ours: the grace period passes without sleeping.
    let clock = std::sync::Arc::new(bonafide_server::time::ManualClock::now());
    let h = start_with_config(Config {
        clock: clock.clone(),
        ..common::config()
    })
    .await;
    let iss = h.issuer("rotate.example").await;
    let first = outside_key("Ed25519");
    let second = outside_key("P-256");
    let (st, v) = register(&h, &iss, json!({"public_key": first.jwk})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let agent_id = v["agent_id"].as_str().unwrap().to_owned();
    let old_token = v["token"].as_str().unwrap().to_owned();
    let agent_did = format!(
        "did:web:{}:agents:{agent_id}",
        h.base.trim_start_matches("http://").replace(':', "%3A")
    );

    let (st, doc) = did(&h, &agent_id).await;
    assert_eq!(st, StatusCode::OK, "{doc}");
    assert_eq!(doc["id"], agent_did.as_str());
    assert_eq!(doc["@context"][0], "https://www.w3.org/ns/did/v1");
    assert_eq!(listed_keys(&doc, &agent_did), vec![first.jkt.clone()]);

    let (st, rotated) = h
        .call(
            "PUT",
            &format!("/v1/agents/{agent_id}/keys"),
            Some(&iss),
            // Long enough for the checks inside it to finish on a loaded machine
            // (they start outside signers as processes).
            Some(json!({"public_key": second.jwk, "grace_seconds": 5})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{rotated}");
    assert_eq!(rotated["agent_id"], agent_id.as_str());
    let statuses: Vec<(&str, &str)> = rotated["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["jkt"].as_str().unwrap(), k["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (first.jkt.as_str(), "grace"),
            (second.jkt.as_str(), "current")
        ]
    );
    let new_token = rotated["token"].as_str().unwrap().to_owned();
    let new_claims = claims(&new_token);
    assert_eq!(new_claims["sub"], agent_id.as_str());
    assert_eq!(new_claims["cnf"]["jkt"], second.jkt.as_str());

    // Inside the grace period both tokens verify and the document lists both keys.
    assert_eq!(verify_bound(&h, &first, &old_token).await["valid"], true);
    assert_eq!(verify_bound(&h, &second, &new_token).await["valid"], true);
    let (_, doc) = did(&h, &agent_id).await;
    assert_eq!(
        listed_keys(&doc, &agent_did),
        vec![first.jkt.clone(), second.jkt.clone()]
    );

    clock.advance(Duration::from_millis(5_100));

    // After it, the old key's tokens are refused, and only the new key is listed.
    let verdict = verify_bound(&h, &first, &old_token).await;
    assert_eq!(verdict["valid"], false, "{verdict}");
    assert_eq!(verdict["error"]["code"], "TOKEN_REVOKED");
    assert_eq!(verdict["reasons"], json!(["TOKEN_REVOKED", "KEY_ROTATED"]));
    let (_, simple) = h
        .call("GET", &format!("/v1/verify/{old_token}"), None, None)
        .await;
    assert_eq!(simple["valid"], false);
    assert_eq!(simple["error"]["code"], "TOKEN_REVOKED");
    assert_eq!(verify_bound(&h, &second, &new_token).await["valid"], true);
    let (_, doc) = did(&h, &agent_id).await;
    assert_eq!(listed_keys(&doc, &agent_did), vec![second.jkt.clone()]);

    // Further tokens are bound to the current key.
    let (st, issued) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent_id}/issue-token"),
            Some(&iss),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{issued}");
    assert_eq!(
        claims(issued["token"].as_str().unwrap())["cnf"]["jkt"],
        second.jkt.as_str()
    );

    // The same key again, or an earlier one, is a conflict.
    for again in [&second.jwk, &first.jwk] {
        let (st, v) = h
            .call(
                "PUT",
                &format!("/v1/agents/{agent_id}/keys"),
                Some(&iss),
                Some(json!({"public_key": again})),
            )
            .await;
        assert_eq!(st, StatusCode::CONFLICT, "{v}");
        assert_eq!(v["error"]["code"], "KEY_ALREADY_REGISTERED");
    }
    // A PEM works for rotation too, and the grace period defaults to a day.
    let third = outside_key("Ed25519");
    let (st, v) = h
        .call(
            "PUT",
            &format!("/v1/agents/{agent_id}/keys"),
            Some(&iss),
            Some(json!({"signing_key_pub": third.pem, "key_algorithm": "Ed25519"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let grace = v["keys"][1]["grace_until"].as_str().unwrap();
    assert_eq!(v["keys"][1]["status"], "grace");
    assert!(grace > v["keys"][1]["retired_at"].as_str().unwrap());
    assert_eq!(verify_bound(&h, &second, &new_token).await["valid"], true);
}

/// `GET /v1/verify/{token}`: the token's own status (no request, so no proof).
async fn get_verify(h: &Harness, token: &str) -> Value {
    let (st, v) = h
        .call("GET", &format!("/v1/verify/{token}"), None, None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

/// A bound token whose key is in force: valid, or refused only for want of a proof of
/// possession (its key's status is checked before any proof is looked at).
fn assert_live(v: &Value) {
    assert!(
        v["valid"] == true || v["error"]["code"] == "PROOF_REQUIRED",
        "not live: {v}"
    );
}

/// A key that leaked while in grace is killed by rotating again with no grace: every
/// key in grace ends with the newest rotation's grace, never later.
#[tokio::test]
async fn a_rotation_without_grace_ends_the_grace_of_every_earlier_key() {
    let h = start().await;
    let iss = h.issuer("leak.example").await;
    let k1 = outside_key("Ed25519");
    let k2 = outside_key("Ed25519");
    let k3 = outside_key("P-256");
    let (st, v) = register(&h, &iss, json!({"public_key": k1.jwk})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let agent_id = v["agent_id"].as_str().unwrap().to_owned();
    let t1 = v["token"].as_str().unwrap().to_owned();
    let path = format!("/v1/agents/{agent_id}/keys");

    // K1 leaks: rotate to K2 with the default grace (a day); K1 still verifies.
    let (st, rotated) = h
        .call(
            "PUT",
            &path,
            Some(&iss),
            Some(json!({"public_key": k2.jwk})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{rotated}");
    let t2 = rotated["token"].as_str().unwrap().to_owned();
    assert_live(&get_verify(&h, &t1).await);

    // Rotating again with no grace cuts K1 off at once, not a day later.
    let (st, rotated) = h
        .call(
            "PUT",
            &path,
            Some(&iss),
            Some(json!({"public_key": k3.jwk, "grace_seconds": 0})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{rotated}");
    let statuses: Vec<&str> = rotated["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["retired", "retired", "current"], "{rotated}");
    for old in [&t1, &t2] {
        let verdict = h.verify_token(old).await;
        assert_eq!(verdict["valid"], false, "{verdict}");
        assert_eq!(verdict["error"]["code"], "TOKEN_REVOKED");
        assert_eq!(verdict["reasons"], json!(["TOKEN_REVOKED", "KEY_ROTATED"]));
        let simple = get_verify(&h, old).await;
        assert_eq!(simple["valid"], false, "{simple}");
        assert_eq!(simple["error"]["code"], "TOKEN_REVOKED");
    }
    let t3 = rotated["token"].as_str().unwrap();
    assert_eq!(claims(t3)["cnf"]["jkt"], k3.jkt.as_str());
    assert_live(&get_verify(&h, t3).await);
    let agent_did = format!(
        "did:web:{}:agents:{agent_id}",
        h.base.trim_start_matches("http://").replace(':', "%3A")
    );
    let (_, doc) = did(&h, &agent_id).await;
    assert_eq!(listed_keys(&doc, &agent_did), vec![k3.jkt.clone()]);
}

#[tokio::test]
async fn a_key_expiring_within_two_weeks_is_warned_about() {
    let h = start().await;
    let iss = h.issuer("soon.example").await;
    let key = outside_key("Ed25519");
    let (st, v) = register(
        &h,
        &iss,
        json!({"public_key": key.jwk, "key_expires_in": 2 * 86_400}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let verdict = verify_bound(&h, &key, v["token"].as_str().unwrap()).await;
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert_eq!(verdict["allowed"], true);
    assert_eq!(verdict["warnings"], json!(["KEY_EXPIRES_SOON"]));
    // A token without `cnf` never gets the warning.
    let (_, plain) = register(&h, &iss, json!({})).await;
    assert!(
        claims(plain["token"].as_str().unwrap())
            .get("cnf")
            .is_none()
    );
    let verdict = h.verify_token(plain["token"].as_str().unwrap()).await;
    assert!(verdict.get("warnings").is_none(), "{verdict}");
}

#[tokio::test]
async fn a_key_past_its_expiry_makes_its_tokens_expired() {
    // Re-read the agent's keys from the store often, so the edit made behind the
    // server's back below (as another process would) arrives quickly.
    let h = start_with_config(Config {
        key_refresh: Duration::from_millis(200),
        ..common::config()
    })
    .await;
    let iss = h.issuer("expired.example").await;
    let key = outside_key("Ed25519");
    let (_, v) = register(&h, &iss, json!({"public_key": key.jwk})).await;
    let agent_id = v["agent_id"].as_str().unwrap().to_owned();
    let token = v["token"].as_str().unwrap().to_owned();
    assert_eq!(verify_bound(&h, &key, &token).await["valid"], true);

    {
        let mut db = h.db().await;
        sqlx::query("UPDATE agent_keys SET expires_at_ms = ? WHERE agent_id = ?")
            .bind(bonafide_server::time::now_ms() - 1)
            .bind(&agent_id)
            .execute(&mut db)
            .await
            .unwrap();
    }
    let mut verdict = Value::Null;
    for _ in 0..50 {
        // Its key's status is checked before any proof is asked for.
        verdict = h.verify_token(&token).await;
        if verdict["error"]["code"] != "PROOF_REQUIRED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(verdict["error"]["code"], "TOKEN_EXPIRED", "{verdict}");
    assert_eq!(verdict["reasons"], json!(["TOKEN_EXPIRED", "KEY_EXPIRED"]));
    // No new token bound to an expired key, and no key left in the DID document.
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent_id}/issue-token"),
            Some(&iss),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "KEY_EXPIRED");
    let (st, v) = did(&h, &agent_id).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    // Rotation is the way out.
    let fresh = outside_key("Ed25519");
    let (st, v) = h
        .call(
            "PUT",
            &format!("/v1/agents/{agent_id}/keys"),
            Some(&iss),
            Some(json!({"public_key": fresh.jwk})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        verify_bound(&h, &fresh, v["token"].as_str().unwrap()).await["valid"],
        true
    );
}

#[tokio::test]
async fn rotation_is_the_issuers_alone_and_the_did_document_is_open() {
    let h = start().await;
    let iss = h.issuer("owner.example").await;
    let other = h.issuer("other.example").await;
    let key = outside_key("Ed25519");
    let next = outside_key("Ed25519");
    let (_, v) = register(&h, &iss, json!({"public_key": key.jwk})).await;
    let agent_id = v["agent_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/agents/{agent_id}/keys");
    let body = json!({"public_key": next.jwk});

    let (st, v) = h.call("PUT", &path, None, Some(body.clone())).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    let (st, v) = h.call("PUT", &path, Some(&other), Some(body.clone())).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let (st, v) = h
        .call(
            "PUT",
            "/v1/agents/agt_aaaaaaaaaaaaaaaaaaaaaaaaaa/keys",
            Some(&iss),
            Some(body.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let (st, v) = h
        .call("PUT", &path, Some(&iss), Some(json!({"grace_seconds": 5})))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    for grace in [-1, 30 * 86_400 + 1] {
        let (st, v) = h
            .call(
                "PUT",
                &path,
                Some(&iss),
                Some(json!({"public_key": next.jwk, "grace_seconds": grace})),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    }
    let (st, v) = h
        .call(
            "PUT",
            &path,
            Some(&iss),
            Some(json!({"public_key": next.private_jwk})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["code"], "PRIVATE_KEY_REFUSED");

    // The DID document needs no key; unknown agents and agents without a key are 404.
    let (st, _) = did(&h, &agent_id).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = did(&h, "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = did(&h, "not-an-id").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, bare) = register(&h, &iss, json!({})).await;
    let bare_id = bare["agent_id"].as_str().unwrap();
    let (st, v) = did(&h, bare_id).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["error"]["code"], "NO_AGENT_KEY");
    // An agent registered without a key gets its first one by "rotation".
    let (st, v) = h
        .call(
            "PUT",
            &format!("/v1/agents/{bare_id}/keys"),
            Some(&iss),
            Some(json!({"public_key": next.jwk})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["keys"].as_array().unwrap().len(), 1);
    let (st, _) = did(&h, bare_id).await;
    assert_eq!(st, StatusCode::OK);

    // A revoked agent: its DID is gone (410) and its key cannot be rotated (409).
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent_id}/revoke"),
            Some(&iss),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = did(&h, &agent_id).await;
    assert_eq!(st, StatusCode::GONE, "{v}");
    assert_eq!(v["error"]["code"], "AGENT_REVOKED");
    let (st, v) = h.call("PUT", &path, Some(&iss), Some(body)).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "AGENT_REVOKED");
}

#[tokio::test]
async fn rotations_are_audited_with_the_new_key() {
    let h = start().await;
    let iss = h.issuer("audited.example").await;
    let key = outside_key("Ed25519");
    let next = outside_key("Ed25519");
    let (_, v) = register(&h, &iss, json!({"public_key": key.jwk})).await;
    let agent_id = v["agent_id"].as_str().unwrap().to_owned();
    let (st, _) = h
        .call(
            "PUT",
            &format!("/v1/agents/{agent_id}/keys"),
            Some(&iss),
            Some(json!({"public_key": next.jwk})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let size = h.state.store.audit_size().await.unwrap();
    let (st, entries) = h
        .call(
            "GET",
            &format!("/v1/audit/entries?start=0&end={size}"),
            Some(&h.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{entries}");
    let text = entries.to_string();
    assert!(text.contains("key.rotated"), "{text}");
    assert!(text.contains(&next.jkt), "{text}");
}
