//! Self-custody end to end over HTTP (issue 6, items 1 and 2, server side): issuers
//! register public keys, sign their agents' tokens themselves (with keys made here by
//! core and by Python `cryptography` + PyJWT, an outside signer), and the registry
//! verifies them with every revocation, suspension and audit rule.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bonafide_core::ids::{IssuerId, TokenId};
use bonafide_core::jws;
use bonafide_core::keys::{Algorithm, SigningKey};
use bonafide_server::Config;
use bonafide_store::IssuerKey;
use common::{Harness, now_s, rand20, start, start_with_config};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// An issuer: its API key and id.
type Iss = common::CreatedIssuer;

async fn issuer(h: &Harness, name: &str) -> Iss {
    h.issuer_full(name).await
}

/// Registers an agent; its id.
async fn agent(h: &Harness, iss: &Iss, name: &str, scopes: &[&str]) -> String {
    let v = h
        .register(&iss.key, json!({"name": name, "scopes": scopes}))
        .await;
    v["agent_id"].as_str().unwrap().to_owned()
}

async fn add_key(h: &Harness, key: &str, body: Value) -> (StatusCode, Value) {
    h.call("POST", "/v1/issuer/keys", Some(key), Some(body))
        .await
}

/// Registers the public half of `sk`; asserts the answer.
async fn register_key(h: &Harness, iss: &Iss, sk: &SigningKey) -> Value {
    let mut jwk = serde_json::to_value(sk.verifying_key().jwk()).unwrap();
    // Sent as an issuer would: without `kid`, `alg` and `use` (the registry fills them).
    for member in ["kid", "alg", "use"] {
        jwk.as_object_mut().unwrap().remove(member);
    }
    let proof = h.key_proof(&iss.id, sk);
    let (st, v) = add_key(h, &iss.key, json!({"jwk": jwk, "proof": proof})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["kid"], sk.kid());
    assert_eq!(v["alg"], sk.alg().as_str());
    assert_eq!(v["jwk"]["kid"], sk.kid());
    assert_eq!(v["jwk"]["alg"], sk.alg().as_str());
    assert_eq!(v["issuer_id"], iss.id);
    assert!(v["jwk"].get("d").is_none());
    assert!(v["created_at"].is_string());
    v
}

fn new_jti() -> String {
    let r = rand20();
    TokenId::from_random(r[..16].try_into().unwrap()).to_string()
}

/// Claims an issuer writes for its own agent.
fn claims(iss: &str, agent: &str, scopes: &[&str]) -> Value {
    let now = now_s();
    json!({
        "iss": iss, "sub": agent, "iat": now, "nbf": now, "exp": now + 600,
        "jti": new_jti(),
        "agent": {"name": "name in the token", "issuer": iss, "scopes": scopes},
        "scope": scopes.join(" "),
    })
}

fn sign(sk: &SigningKey, claims: &Value) -> String {
    jws::sign_compact(sk, "agent+jwt", claims.to_string().as_bytes()).unwrap()
}

async fn verify(h: &Harness, token: &str) -> Value {
    h.verify_token(token).await
}

async fn get_verify(h: &Harness, token: &str) -> Value {
    let (st, v) = h
        .call("GET", &format!("/v1/verify/{token}"), None, None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

fn assert_refused(v: &Value, code: &str) {
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
}

/// Every audit entry's text, in order.
async fn audit_texts(h: &Harness) -> Vec<String> {
    let size = h.state.store.audit_size().await.unwrap();
    h.state
        .store
        .audit_entries(0, size)
        .await
        .unwrap()
        .into_iter()
        .map(|r| String::from_utf8(r.entry).unwrap())
        .collect()
}

#[tokio::test]
async fn full_flow_for_each_algorithm() {
    let h = start().await;
    let iss = issuer(&h, "apexwealth.com").await;
    for alg in [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256] {
        let sk = SigningKey::generate(alg).unwrap();
        register_key(&h, &iss, &sk).await;
        let agent = agent(
            &h,
            &iss,
            &format!("Registered {alg}"),
            &["read:x", "write:x"],
        )
        .await;
        let token = sign(&sk, &claims(&iss.id, &agent, &["read:x"]));

        let v = verify(&h, &token).await;
        assert_eq!(v["valid"], true, "{alg}: {v}");
        assert_eq!(v["allowed"], true, "{v}");
        assert_eq!(v["agent"]["id"], agent);
        // The registered names, never the token's own words.
        assert_eq!(v["agent"]["name"], format!("Registered {alg}"));
        assert_eq!(v["agent"]["issuer"], iss.name);
        assert_eq!(v["agent"]["active_scopes"], json!(["read:x"]));
        let g = get_verify(&h, &token).await;
        assert_eq!(g["valid"], true, "{g}");
        assert_eq!(g["name"], format!("Registered {alg}"));
        assert_eq!(g["issuer"], iss.name);

        let (st, r) = h
            .call(
                "POST",
                &format!("/v1/issuer/keys/{}/revoke", sk.kid()),
                Some(&iss.key),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{r}");
        assert_eq!(r["kid"], sk.kid());
        // Revoking again keeps the first time and appends nothing.
        let size = h.state.store.audit_size().await.unwrap();
        let (st, again) = h
            .call(
                "POST",
                &format!("/v1/issuer/keys/{}/revoke", sk.kid()),
                Some(&iss.key),
                Some(json!({})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{again}");
        assert_eq!(again["revoked_at"], r["revoked_at"]);
        assert_eq!(h.state.store.audit_size().await.unwrap(), size);

        // From the very next verify on.
        let v = verify(&h, &token).await;
        assert_refused(&v, "TOKEN_REVOKED");
        assert_eq!(v["reasons"], json!(["TOKEN_REVOKED", "KEY_REVOKED"]), "{v}");
        assert_refused(&get_verify(&h, &token).await, "TOKEN_REVOKED");
        // A new token signed by the revoked key fails too.
        let fresh = sign(&sk, &claims(&iss.id, &agent, &["write:x"]));
        assert_refused(&verify(&h, &fresh).await, "TOKEN_REVOKED");
    }
    // The list shows the caller's keys, all revoked now.
    let (st, list) = h.call("GET", "/v1/issuer/keys", Some(&iss.key), None).await;
    assert_eq!(st, StatusCode::OK, "{list}");
    let keys = list["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3);
    let algs: Vec<&str> = keys.iter().map(|k| k["alg"].as_str().unwrap()).collect();
    assert_eq!(algs, ["EdDSA", "ES256", "RS256"]);
    assert!(keys.iter().all(|k| k["revoked_at"].is_string()), "{list}");
    // Audited: one key.added and one key.revoked per key, by the issuer.
    let texts = audit_texts(&h).await;
    for k in keys {
        let kid = k["kid"].as_str().unwrap();
        for event in ["key.added", "key.revoked"] {
            let n = texts
                .iter()
                .filter(|t| t.contains(event) && t.contains(kid) && t.contains(&iss.id))
                .count();
            assert_eq!(n, 1, "{event} {kid}");
        }
    }
}

fn python() -> PathBuf {
    common::interop_python()
}

fn signer(args: &[&str]) -> String {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/python/issuer_signer.py");
    let out = Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "issuer_signer.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn a_key_made_and_used_by_python_cryptography_verifies() {
    let h = start().await;
    let iss = issuer(&h, "outside.example").await;
    let agent = agent(&h, &iss, "Outside bot", &["read:x"]).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("issuer.pem");
    let jwk: Value = serde_json::from_str(&signer(&[
        "keygen",
        "--key-file",
        key_file.to_str().unwrap(),
    ]))
    .unwrap();
    assert!(jwk.get("d").is_none());
    // The proof of possession is signed here with the same key (the interop under
    // test is the token, below).
    let private = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    let proof = h.key_proof(&iss.id, &private);
    let (st, v) = add_key(
        &h,
        &iss.key,
        json!({"jwk": jwk, "alg": "EdDSA", "proof": proof}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let kid = v["kid"].as_str().unwrap().to_owned();

    let payload = dir.path().join("claims.json");
    std::fs::write(&payload, claims(&iss.id, &agent, &["read:x"]).to_string()).unwrap();
    let token = signer(&[
        "sign",
        "--key-file",
        key_file.to_str().unwrap(),
        "--kid",
        &kid,
        "--payload-file",
        payload.to_str().unwrap(),
    ]);
    let v = verify(&h, &token).await;
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["agent"]["name"], "Outside bot");
    assert_eq!(v["agent"]["issuer"], "outside.example");

    // Signed with another kid (unregistered): refused.
    let other = signer(&[
        "sign",
        "--key-file",
        key_file.to_str().unwrap(),
        "--kid",
        "unregistered-kid",
        "--payload-file",
        payload.to_str().unwrap(),
    ]);
    assert_refused(&verify(&h, &other).await, "TOKEN_INVALID");

    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/issuer/keys/{kid}/revoke"),
            Some(&iss.key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let v = verify(&h, &token).await;
    assert_eq!(v["reasons"], json!(["TOKEN_REVOKED", "KEY_REVOKED"]), "{v}");
}

#[tokio::test]
async fn one_issuers_key_never_speaks_for_another() {
    let h = start().await;
    let a = issuer(&h, "a.example").await;
    let b = issuer(&h, "b.example").await;
    let a_key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    register_key(&h, &a, &a_key).await;
    let a_agent = agent(&h, &a, "A bot", &["read:x"]).await;
    let b_agent = agent(&h, &b, "B bot", &["read:x"]).await;

    // A's key, A's iss, B's agent.
    let t = sign(&a_key, &claims(&a.id, &b_agent, &["read:x"]));
    let v = verify(&h, &t).await;
    assert_refused(&v, "AGENT_UNKNOWN");
    assert!(v.get("agent").is_none(), "{v}");
    assert_refused(&get_verify(&h, &t).await, "AGENT_UNKNOWN");
    // A's key claiming B as `iss` (for B's agent or A's own).
    for sub in [&b_agent, &a_agent] {
        let t = sign(&a_key, &claims(&b.id, sub, &["read:x"]));
        assert_refused(&verify(&h, &t).await, "ISSUER_UNKNOWN");
    }
    // A's key claiming the registry as `iss`.
    let t = sign(&a_key, &claims(&h.base, &a_agent, &["read:x"]));
    assert_refused(&verify(&h, &t).await, "ISSUER_UNKNOWN");
    // B cannot revoke A's key (404, like a missing one), and A's tokens still verify.
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/issuer/keys/{}/revoke", a_key.kid()),
            Some(&b.key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let (_, list) = h.call("GET", "/v1/issuer/keys", Some(&b.key), None).await;
    assert_eq!(list["keys"], json!([]));
    let ok = sign(&a_key, &claims(&a.id, &a_agent, &["read:x"]));
    assert_eq!(verify(&h, &ok).await["valid"], true);
    // Nor can B revoke a token A signed.
    let (st, v) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&b.key),
            Some(json!({"token": ok})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(verify(&h, &ok).await["valid"], true);
}

#[tokio::test]
async fn unknown_agents_and_ungranted_scopes_are_refused() {
    let h = start().await;
    let iss = issuer(&h, "scopes.example").await;
    let sk = SigningKey::generate(Algorithm::ES256).unwrap();
    register_key(&h, &iss, &sk).await;
    let agent = agent(&h, &iss, "Reader", &["read:x"]).await;

    let r = rand20();
    let ghost = bonafide_core::ids::AgentId::from_random(r[..16].try_into().unwrap());
    let t = sign(&sk, &claims(&iss.id, ghost.as_str(), &["read:x"]));
    assert_refused(&verify(&h, &t).await, "AGENT_UNKNOWN");

    let t = sign(&sk, &claims(&iss.id, &agent, &["read:x", "write:x"]));
    let v = verify(&h, &t).await;
    assert_refused(&v, "TOKEN_INVALID");
    assert!(
        v["reason"].as_str().unwrap().contains("write:x"),
        "the reason names the scope: {v}"
    );
    // Within the grant: fine.
    let t = sign(&sk, &claims(&iss.id, &agent, &["read:x"]));
    assert_eq!(verify(&h, &t).await["valid"], true);
}

#[tokio::test]
async fn key_registration_errors() {
    let h = start().await;
    let iss = issuer(&h, "errors.example").await;
    let other = issuer(&h, "other.example").await;
    let ed = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let public = serde_json::to_value(ed.verifying_key().jwk()).unwrap();

    // Private members: 400, whatever else the JWK says.
    let mut with_d = public.clone();
    with_d["d"] = json!("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A");
    for jwk in [
        with_d,
        json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "p": "AQAB", "q": "AQAB"}),
        json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "dp": "AQAB"}),
        json!({"kty": "oct", "k": "c2VjcmV0"}),
    ] {
        let (st, v) = add_key(&h, &iss.key, json!({"jwk": jwk})).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["error"]["code"], "PRIVATE_KEY_REFUSED", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("never holds an issuer's private key"),
            "{v}"
        );
    }
    // Unusable keys: 422.
    let small_rsa = {
        let n = bonafide_core::b64::encode(&[0xc5u8; 128]);
        json!({"kty": "RSA", "n": n, "e": "AQAB"})
    };
    for jwk in [
        json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}),
        json!({"kty": "EC", "crv": "P-384", "x": "AAAA", "y": "AAAA"}),
        json!({"kty": "oct"}),
        small_rsa,
    ] {
        let (st, v) = add_key(&h, &iss.key, json!({"jwk": jwk})).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{jwk}: {v}");
    }
    // A JWK that is not a JWK at all.
    let (st, v) = add_key(&h, &iss.key, json!({"jwk": "not a key"})).await;
    assert!(st.is_client_error(), "{v}");
    // Algorithm that does not fit the key: in the body or in the JWK.
    let (st, v) = add_key(&h, &iss.key, json!({"jwk": public, "alg": "ES256"})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (st, v) = add_key(&h, &iss.key, json!({"jwk": public, "alg": "HS256"})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let mut rs = public.clone();
    rs["alg"] = json!("RS256");
    let (st, v) = add_key(&h, &iss.key, json!({"jwk": rs})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // A `kid` that is not the thumbprint.
    let mut wrong_kid = public.clone();
    wrong_kid["kid"] = json!("my-own-name");
    let (st, v) = add_key(&h, &iss.key, json!({"jwk": wrong_kid})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // Nothing was registered so far.
    let (_, list) = h.call("GET", "/v1/issuer/keys", Some(&iss.key), None).await;
    assert_eq!(list["keys"], json!([]));

    // With the thumbprint as kid and a matching alg: fine; then a duplicate is 409,
    // for the same issuer and for another one.
    // (Each with its proof of possession; see the security suite for its refusals.)
    let proof = h.key_proof(&iss.id, &ed);
    let (st, v) = add_key(
        &h,
        &iss.key,
        json!({"jwk": public, "alg": "EdDSA", "proof": proof}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let proof = h.key_proof(&iss.id, &ed);
    let (st, v) = add_key(&h, &iss.key, json!({"jwk": public, "proof": proof})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let proof = h.key_proof(&other.id, &ed);
    let (st, v) = add_key(&h, &other.key, json!({"jwk": public, "proof": proof})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    // The registry's own signing key cannot be registered as an issuer key (even by
    // someone who could sign with it).
    let ring = h.state.keys();
    let registry_jwk = serde_json::to_value(ring.active.verifying_key().jwk()).unwrap();
    let proof = h.key_proof(&iss.id, &ring.active);
    let (st, v) = add_key(&h, &iss.key, json!({"jwk": registry_jwk, "proof": proof})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");

    // Keys: none is 401; admin and receiver keys are 403.
    let fresh = serde_json::to_value(
        SigningKey::generate(Algorithm::EdDSA)
            .unwrap()
            .verifying_key()
            .jwk(),
    )
    .unwrap();
    let (st, _) = h
        .call("POST", "/v1/issuer/keys", None, Some(json!({"jwk": fresh})))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = h.call("GET", "/v1/issuer/keys", None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, rcv) = h
        .call(
            "POST",
            "/v1/receivers",
            Some(&h.admin),
            Some(json!({"name": "api.shop.example"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{rcv}");
    let receiver = rcv["api_key"].as_str().unwrap();
    for key in [h.admin.as_str(), receiver] {
        let (st, v) = add_key(&h, key, json!({"jwk": fresh})).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
        let (st, _) = h.call("GET", "/v1/issuer/keys", Some(key), None).await;
        assert_eq!(st, StatusCode::FORBIDDEN);
        let (st, _) = h
            .call(
                "POST",
                &format!("/v1/issuer/keys/{}/revoke", ed.kid()),
                Some(key),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN);
    }
    // Unknown kid: 404.
    let (st, _) = h
        .call(
            "POST",
            "/v1/issuer/keys/no-such-kid/revoke",
            Some(&iss.key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn agent_revocation_suspension_and_token_revocation_apply() {
    let h = start().await;
    let iss = issuer(&h, "status.example").await;
    let sk = SigningKey::generate(Algorithm::EdDSA).unwrap();
    register_key(&h, &iss, &sk).await;

    // Suspension, then reactivation.
    let agent = agent(&h, &iss, "Suspendable", &["read:x"]).await;
    let token = sign(&sk, &claims(&iss.id, &agent, &["read:x"]));
    assert_eq!(verify(&h, &token).await["valid"], true);
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent}/suspend"),
            Some(&iss.key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_refused(&verify(&h, &token).await, "AGENT_SUSPENDED");
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent}/reactivate"),
            Some(&iss.key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(verify(&h, &token).await["valid"], true);

    // One token revoked by presenting it (the registry never saw it before).
    let other = sign(&sk, &claims(&iss.id, &agent, &["read:x"]));
    let jti = {
        let payload = other.split('.').nth(1).unwrap();
        let c: Value =
            serde_json::from_slice(&bonafide_core::b64::decode(payload).unwrap()).unwrap();
        c["jti"].as_str().unwrap().to_owned()
    };
    let (st, r) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&iss.key),
            Some(json!({"token": other})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    // Known to the registry by (issuer, jti); the issuer's own `jti` still names it.
    let scoped =
        bonafide_core::token::issuer_token_id(&IssuerId::try_from(iss.id.as_str()).unwrap(), &jti);
    assert_eq!(r["jti"], scoped.as_str());
    assert_eq!(r["agent_id"], agent);
    let v = verify(&h, &other).await;
    assert_refused(&v, "TOKEN_REVOKED");
    assert_eq!(v["reasons"], json!(["TOKEN_REVOKED"]), "{v}");
    // Only that token: the other one still verifies.
    assert_eq!(verify(&h, &token).await["valid"], true);
    // Recorded with the issuer key's kid; revoking again (by jti) keeps the time.
    let stored = h.state.store.token(&scoped).await.unwrap().unwrap();
    assert_eq!(stored.kid, sk.kid());
    let (st, again) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&iss.key),
            Some(json!({"jti": jti})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{again}");
    assert_eq!(again["revoked_at"], r["revoked_at"]);
    let texts = audit_texts(&h).await;
    assert_eq!(
        texts
            .iter()
            .filter(|t| t.contains("token.revoked") && t.contains(scoped.as_str()))
            .count(),
        1
    );

    // A token never shown: revoked by its `jti` with its agent, for as long as any
    // token could verify; `agent_id` alone, or a malformed one, is a 422.
    let unseen = sign(&sk, &claims(&iss.id, &agent, &["read:x"]));
    let unseen_jti = {
        let payload = unseen.split('.').nth(1).unwrap();
        let c: Value =
            serde_json::from_slice(&bonafide_core::b64::decode(payload).unwrap()).unwrap();
        c["jti"].as_str().unwrap().to_owned()
    };
    for bad in [
        json!({"agent_id": agent}),
        json!({"jti": unseen_jti, "agent_id": "../x"}),
        json!({"token": unseen, "agent_id": agent}),
    ] {
        let (st, r) = h
            .call(
                "POST",
                "/v1/tokens/revoke",
                Some(&iss.key),
                Some(bad.clone()),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {r}");
    }
    let (st, r) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&iss.key),
            Some(json!({"jti": unseen_jti})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "without its agent: {r}");
    assert_eq!(verify(&h, &unseen).await["valid"], true);
    // A known token named with an agent that is not its own: refused, not revoked.
    let (st, r) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&iss.key),
            Some(json!({"jti": jti, "agent_id": "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa"})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "another agent's name: {r}");
    let (st, r) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&iss.key),
            Some(json!({"jti": unseen_jti, "agent_id": agent})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["agent_id"], agent);
    assert_refused(&verify(&h, &unseen).await, "TOKEN_REVOKED");
    let scoped = bonafide_core::token::issuer_token_id(
        &IssuerId::try_from(iss.id.as_str()).unwrap(),
        &unseen_jti,
    );
    let stored = h.state.store.token(&scoped).await.unwrap().unwrap();
    let now = (bonafide_server::time::now_ms() / 1000) as i64;
    assert!(
        stored.expires_at_s >= now + h.state.config.max_token_ttl_s,
        "kept as long as any token could verify: {stored:?}"
    );

    // Revoking the agent revokes its issuer-signed tokens.
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent}/revoke"),
            Some(&iss.key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_refused(&verify(&h, &token).await, "TOKEN_REVOKED");
    let fresh = sign(&sk, &claims(&iss.id, &agent, &["read:x"]));
    assert_refused(&verify(&h, &fresh).await, "TOKEN_REVOKED");
    // Every verify of an issuer-signed token is audited like any other.
    let texts = audit_texts(&h).await;
    assert!(
        texts
            .iter()
            .any(|t| t.contains("\"verify\"") && t.contains(&agent)),
        "no verify entry for the agent"
    );
}

/// The `jti` of a token (unverified: the test signed it).
fn jti_of(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let c: Value = serde_json::from_slice(&bonafide_core::b64::decode(payload).unwrap()).unwrap();
    c["jti"].as_str().unwrap().to_owned()
}

/// An issuer chooses its tokens' `jti`, so another issuer can reuse one: revoking its
/// own token with that `jti` must not revoke the first issuer's, nor take the `jti`
/// from it (revocation is per issuer and `jti`).
#[tokio::test]
async fn another_issuer_reusing_a_jti_revokes_only_its_own_token() {
    let h = start().await;
    let a = issuer(&h, "a.example").await;
    let b = issuer(&h, "b.example").await;
    let ka = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let kb = SigningKey::generate(Algorithm::ES256).unwrap();
    register_key(&h, &a, &ka).await;
    register_key(&h, &b, &kb).await;
    let agent_a = agent(&h, &a, "A bot", &["read:x"]).await;
    let agent_b = agent(&h, &b, "B bot", &["read:x"]).await;
    let token_a = sign(&ka, &claims(&a.id, &agent_a, &["read:x"]));
    let jti = jti_of(&token_a);
    let mut cb = claims(&b.id, &agent_b, &["read:x"]);
    cb["jti"] = jti.clone().into();
    let token_b = sign(&kb, &cb);
    assert_eq!(verify(&h, &token_a).await["valid"], true);
    assert_eq!(verify(&h, &token_b).await["valid"], true);

    // B revokes its own token, by presenting it and then by the shared `jti`.
    let (st, r) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&b.key),
            Some(json!({"token": token_b})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let (st, r) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&b.key),
            Some(json!({"jti": jti})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["agent_id"], agent_b);
    assert_refused(&verify(&h, &token_b).await, "TOKEN_REVOKED");
    // A's token is untouched.
    let v = verify(&h, &token_a).await;
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(get_verify(&h, &token_a).await["valid"], true);

    // A's own `jti` is A's to revoke: by token, then by `jti` (already revoked, 200).
    let (st, r) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&a.key),
            Some(json!({"token": token_a})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["agent_id"], agent_a);
    let (st, again) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&a.key),
            Some(json!({"jti": jti})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{again}");
    assert_eq!(again["jti"], r["jti"]);
    assert_eq!(again["agent_id"], agent_a);
    assert_refused(&verify(&h, &token_a).await, "TOKEN_REVOKED");

    // Each issuer's revocation is its own row; neither sees the other's by `jti`.
    let c = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&a.key),
            Some(json!({"jti": r["jti"].as_str().unwrap()})),
        )
        .await;
    assert_eq!(c.0, StatusCode::OK, "{}", c.1);
    let scoped_a = r["jti"].as_str().unwrap().to_owned();
    let (st, _) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&b.key),
            Some(json!({"jti": scoped_a})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn keys_changed_by_another_process_arrive_within_one_refresh() {
    let h = start_with_config(Config {
        key_refresh: Duration::from_millis(200),
        ..common::config()
    })
    .await;
    let iss = issuer(&h, "elsewhere.example").await;
    let agent = agent(&h, &iss, "Bot", &["read:x"]).await;
    let sk = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let token = sign(&sk, &claims(&iss.id, &agent, &["read:x"]));
    assert_refused(&verify(&h, &token).await, "TOKEN_INVALID");

    // Another process (here: a second handle on the same database file) adds the key.
    let other = bonafide_store::SqliteStore::open(h.db_path.parent().unwrap())
        .await
        .unwrap();
    let other: Arc<dyn bonafide_store::Store> = Arc::new(other);
    let issuer_id = IssuerId::try_from(iss.id.as_str()).unwrap();
    let record = IssuerKey {
        kid: sk.kid().to_owned(),
        issuer_id: issuer_id.clone(),
        alg: sk.alg(),
        jwk: serde_json::to_string(sk.verifying_key().jwk()).unwrap(),
        created_at_ms: bonafide_server::time::now_ms(),
        revoked_at_ms: None,
        alias: None,
    };
    other
        .add_issuer_key(&record, &common::admin_key_audit())
        .await
        .unwrap();
    wait_until(&h, &token, |v| v["valid"] == true).await;

    // … and revokes it.
    other
        .revoke_issuer_key(
            &issuer_id,
            sk.kid(),
            bonafide_server::time::now_ms(),
            &common::admin_key_audit(),
        )
        .await
        .unwrap();
    wait_until(&h, &token, |v| v["error"]["code"] == "TOKEN_REVOKED").await;
    let v = verify(&h, &token).await;
    assert_eq!(v["reasons"], json!(["TOKEN_REVOKED", "KEY_REVOKED"]), "{v}");
}

/// Verifies until `done` holds, for at most a few refresh periods.
async fn wait_until(h: &Harness, token: &str, done: impl Fn(&Value) -> bool) {
    let mut last = Value::Null;
    for _ in 0..20 {
        last = verify(h, token).await;
        if done(&last) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not within 2 s (refresh every 200 ms): {last}");
}
