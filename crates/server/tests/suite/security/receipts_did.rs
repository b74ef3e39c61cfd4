//! Rules (review item 9, two of the smaller findings):
//!
//! - Receipts are kept apart from agent tokens: the receipt key is not in the token
//!   JWKS but in its own (`receipt_jwks_uri` in discovery), and a receipt carries `iat`
//!   and `sub` (its own `rcp_…` id), so no JWT library can take one for a token.
//! - An agent with its own key accepts only tokens bound to it (`cnf.jkt`), unless
//!   its issuer opted out at registration (`allow_bearer_tokens: true`); an unbound
//!   token of such an agent is `TOKEN_INVALID` with reason `BINDING_REQUIRED`.
//! - The did:web document and the key directory of a suspended or revoked agent say
//!   it is deactivated (410, DID document metadata `deactivated: true`).

use bonafide_core::b64;
use bonafide_core::ids::TokenId;
use bonafide_core::jws;
use bonafide_core::keys::{Algorithm, SigningKey};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{self, Harness, now_s, start};

fn segment(jws: &str, n: usize) -> Value {
    let part = jws.split('.').nth(n).unwrap();
    serde_json::from_slice(&b64::decode(part).unwrap()).unwrap()
}

async fn get(h: &Harness, path: &str) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let resp = h
        .http
        .get(format!("{}{path}", h.base))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

async fn receiver(h: &Harness) -> String {
    let (st, v) = h
        .call(
            "POST",
            "/v1/receivers",
            Some(&h.admin),
            Some(json!({"name": "api.shop.example"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v["api_key"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn receipt_key_is_served_only_at_its_own_jwks_named_in_discovery() {
    let h = start().await;
    let (st, _, conf) = get(&h, "/.well-known/bonafide-configuration").await;
    assert_eq!(st, StatusCode::OK);
    let receipt_kid = conf["receipt_signing_kid"].as_str().unwrap().to_owned();
    let token_kid = conf["signing_kid"].as_str().unwrap().to_owned();

    let (st, headers, token_jwks) = get(&h, "/.well-known/jwks.json").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/jwk-set+json");
    assert!(kids(&token_jwks).contains(&token_kid), "{token_jwks}");
    assert!(
        !kids(&token_jwks).contains(&receipt_kid),
        "the receipt key is not a token key: {token_jwks}"
    );

    let uri = conf["receipt_jwks_uri"].as_str().unwrap_or_else(|| {
        panic!("discovery names no receipt_jwks_uri: {conf}");
    });
    assert_eq!(uri, format!("{}/.well-known/receipt-jwks.json", h.base));
    let path = uri.strip_prefix(&h.base).unwrap();
    let (st, headers, receipt_jwks) = get(&h, path).await;
    assert_eq!(st, StatusCode::OK, "{receipt_jwks}");
    assert_eq!(headers["content-type"], "application/jwk-set+json");
    assert!(
        headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    assert_eq!(kids(&receipt_jwks), [receipt_kid], "{receipt_jwks}");
    let key = &receipt_jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    assert!(key.get("d").is_none(), "{key}");
}

#[tokio::test]
async fn receipts_carry_iat_and_sub_and_say_their_type() {
    let h = start().await;
    let iss = h.issuer("receipts.example").await;
    let rcv = receiver(&h).await;
    let agent = h
        .register(&iss, json!({"name": "Bot", "scopes": ["read:orders"]}))
        .await;
    let token = agent["token"].as_str().unwrap();
    let before = now_s();
    for body in [
        json!({"token": token, "scopes_requested": ["read:orders"]}),
        // A deny of a genuine token (a token that does not verify may get no receipt).
        json!({"token": token, "scopes_requested": ["write:orders"]}),
    ] {
        let (st, v) = h.call("POST", "/v1/verify", Some(&rcv), Some(body)).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let id = v["receipt_id"].as_str().unwrap();
        let (st, view) = h
            .call("GET", &format!("/v1/receipts/{id}"), Some(&rcv), None)
            .await;
        assert_eq!(st, StatusCode::OK, "{view}");
        let jws = view["jws"].as_str().unwrap();
        // What any JWT library shows before it checks anything.
        let header = segment(jws, 0);
        let claims = segment(jws, 1);
        assert_eq!(header["typ"], "receipt+jwt", "{header}");
        let iat = claims["iat"].as_i64().unwrap_or_else(|| panic!("{claims}"));
        assert!((before - 1..=now_s() + 1).contains(&iat), "{claims}");
        assert_eq!(claims["sub"], id, "a receipt's subject is itself: {claims}");
        assert!(claims.get("exp").is_none(), "{claims}");
        assert_eq!(view["receipt"], claims, "{view}");

        // It verifies with the receipt JWKS, and not with the token JWKS.
        let (_, _, receipt_jwks) = get(&h, "/.well-known/receipt-jwks.json").await;
        let keys =
            bonafide_core::token::KeySet::from_jwks(&serde_json::from_value(receipt_jwks).unwrap())
                .unwrap();
        let verified = bonafide_core::receipt::verify(jws, &keys).unwrap();
        assert_eq!(serde_json::to_value(&verified).unwrap()["sub"], id);
        let (_, _, token_jwks) = get(&h, "/.well-known/jwks.json").await;
        let token_keys =
            bonafide_core::token::KeySet::from_jwks(&serde_json::from_value(token_jwks).unwrap())
                .unwrap();
        assert!(bonafide_core::receipt::verify(jws, &token_keys).is_err());
    }
}

/// Registers an agent with its own Ed25519 key (`extra` merged into the body).
async fn keyed_agent(h: &Harness, iss: &str, key: &SigningKey, extra: Value) -> Value {
    let mut body = json!({"name": "Keyed bot", "scopes": ["read:orders"],
        "public_key": key.verifying_key().jwk()});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    h.register(iss, body).await
}

/// An issuer key registered for self-custody: the signing key.
async fn issuer_key(h: &Harness, iss: &str) -> SigningKey {
    let sk = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let (st, me) = h.call("GET", "/v1/issuer", Some(iss), None).await;
    assert_eq!(st, StatusCode::OK, "{me}");
    let id = me["issuer_id"].as_str().unwrap();
    let (st, v) = h.add_issuer_key(iss, id, &sk).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    sk
}

/// An issuer-signed token for `agent` without `cnf`: a bearer token.
fn bearer_token(sk: &SigningKey, issuer_id: &str, agent: &str) -> String {
    let now = now_s();
    let r = common::rand20();
    let claims = json!({
        "iss": issuer_id, "sub": agent, "iat": now, "nbf": now, "exp": now + 600,
        "jti": TokenId::from_random(r[..16].try_into().unwrap()).to_string(),
        "agent": {"name": "Keyed bot", "issuer": issuer_id, "scopes": ["read:orders"]},
        "scope": "read:orders",
    });
    jws::sign_compact(sk, "agent+jwt", claims.to_string().as_bytes()).unwrap()
}

fn binding_required(v: &Value) {
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["error"]["code"], "TOKEN_INVALID", "{v}");
    assert_eq!(
        v["reasons"],
        json!(["TOKEN_INVALID", "BINDING_REQUIRED"]),
        "{v}"
    );
}

async fn introspect(h: &Harness, token: &str) -> Value {
    h.http
        .post(format!("{}/v1/introspect", h.base))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

const URL: &str = "https://shop.example/v1/orders";

fn dpop_body(key: &SigningKey, token: &str) -> Value {
    let r = common::rand20();
    let jti = b64::encode(&r);
    let jwt = bonafide_core::dpop::sign(key, "POST", URL, token, now_s(), &jti).unwrap();
    json!({"token": token, "scopes_requested": ["read:orders"],
        "proof": {"type": "dpop", "jwt": jwt, "htm": "POST", "htu": URL}})
}

#[tokio::test]
async fn an_agent_with_its_own_key_accepts_only_bound_tokens() {
    let h = start().await;
    let iss = h.issuer_full("bound.example").await;
    let agent_key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let reg = keyed_agent(&h, &iss.key, &agent_key, json!({})).await;
    assert_eq!(reg["allow_bearer_tokens"], false, "{reg}");
    let agent = reg["agent_id"].as_str().unwrap();

    // The registry's token is bound, and with a proof it verifies.
    let bound = reg["token"].as_str().unwrap();
    assert_eq!(segment(bound, 1)["cnf"]["jkt"], agent_key.kid());
    let v = h.verify(dpop_body(&agent_key, bound)).await;
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["allowed"], true, "{v}");

    // A bearer token of the same agent, signed by its own issuer: refused everywhere.
    let sk = issuer_key(&h, &iss.key).await;
    let bearer = bearer_token(&sk, &iss.id, agent);
    binding_required(&h.verify_token(&bearer).await);
    // GET verify answers only `valid` and `error`.
    let (_, v) = h
        .call("GET", &format!("/v1/verify/{bearer}"), None, None)
        .await;
    crate::common::assert_simple_denial(&v, "TOKEN_INVALID");
    let (st, v) = h
        .call("POST", "/v1/simulate", None, Some(json!({"token": bearer})))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    binding_required(&v);
    assert_eq!(introspect(&h, &bearer).await["active"], false);
    // A proof does not make a bearer token bound.
    let (st, v) = h
        .call(
            "POST",
            "/v1/verify",
            None,
            Some(dpop_body(&agent_key, &bearer)),
        )
        .await;
    assert!(st == StatusCode::OK || st.is_client_error(), "{st} {v}");
    assert_ne!(v["valid"], true, "{v}");

    // The agent's account says so.
    let (st, v) = h
        .call("GET", &format!("/v1/agents/{agent}"), Some(&iss.key), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["allow_bearer_tokens"], false, "{v}");
}

#[tokio::test]
async fn tokens_issued_before_the_agent_had_a_key_are_refused_once_it_has_one() {
    let h = start().await;
    let iss = h.issuer_full("later.example").await;
    let reg = h
        .register(
            &iss.key,
            json!({"name": "Late bot", "scopes": ["read:orders"]}),
        )
        .await;
    let agent = reg["agent_id"].as_str().unwrap();
    let old = reg["token"].as_str().unwrap();
    assert_eq!(h.verify_token(old).await["valid"], true);

    let agent_key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let (st, v) = h
        .call(
            "PUT",
            &format!("/v1/agents/{agent}/keys"),
            Some(&iss.key),
            Some(json!({"public_key": agent_key.verifying_key().jwk()})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    binding_required(&h.verify_token(old).await);
    let fresh = v["token"].as_str().unwrap();
    assert_eq!(h.verify(dpop_body(&agent_key, fresh)).await["valid"], true);
}

#[tokio::test]
async fn an_issuer_that_opts_out_at_registration_allows_bearer_tokens() {
    let h = start().await;
    let iss = h.issuer_full("optout.example").await;
    let agent_key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let reg = keyed_agent(
        &h,
        &iss.key,
        &agent_key,
        json!({"allow_bearer_tokens": true}),
    )
    .await;
    assert_eq!(reg["allow_bearer_tokens"], true, "{reg}");
    let agent = reg["agent_id"].as_str().unwrap();
    // The registry still binds what it signs.
    assert_eq!(
        segment(reg["token"].as_str().unwrap(), 1)["cnf"]["jkt"],
        agent_key.kid()
    );
    let sk = issuer_key(&h, &iss.key).await;
    let bearer = bearer_token(&sk, &iss.id, agent);
    let v = h.verify_token(&bearer).await;
    assert_eq!(v["valid"], true, "{v}");

    // Opting out is a boolean, said at registration only.
    let (st, v) = h
        .call(
            "POST",
            "/v1/agents/register",
            Some(&iss.key),
            Some(json!({"name": "x", "scopes": ["read:orders"], "allow_bearer_tokens": "yes"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allow_bearer_tokens"),
        "{v}"
    );
    let (st, v) = h
        .call(
            "PUT",
            &format!("/v1/agents/{agent}/keys"),
            Some(&iss.key),
            Some(json!({"public_key": SigningKey::generate(Algorithm::EdDSA).unwrap().verifying_key().jwk(),
                "allow_bearer_tokens": false})),
        )
        .await;
    assert!(st.is_client_error(), "{st} {v}");
}

/// (status, content type, body) of the agent's did.json and key directory.
async fn documents(h: &Harness, agent: &str) -> [(StatusCode, String, Value); 2] {
    let mut out = Vec::new();
    for path in [
        format!("/agents/{agent}/did.json"),
        format!("/agents/{agent}/.well-known/http-message-signatures-directory"),
    ] {
        let (st, headers, body) = get(h, &path).await;
        let ct = headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        out.push((st, ct, body));
    }
    out.try_into().unwrap()
}

fn says_deactivated(h: &Harness, agent: &str, docs: &[(StatusCode, String, Value); 2], code: &str) {
    let [(st, ct, did), (dst, _, dir)] = docs;
    assert_eq!(*st, StatusCode::GONE, "{did}");
    assert_eq!(ct, "application/did-resolution", "{did}");
    assert_eq!(did["didDocumentMetadata"]["deactivated"], true, "{did}");
    assert_eq!(
        did["didDocument"]["id"],
        h.state.agent_did(agent).as_str(),
        "{did}"
    );
    assert!(
        did["didDocument"].get("verificationMethod").is_none(),
        "no usable key is published: {did}"
    );
    assert_eq!(did["error"]["code"], code, "{did}");
    assert_eq!(*dst, StatusCode::GONE, "{dir}");
    assert_eq!(dir["keys"], json!([]), "{dir}");
    assert_eq!(dir["deactivated"], true, "{dir}");
    assert_eq!(dir["error"]["code"], code, "{dir}");
}

#[tokio::test]
async fn did_document_and_directory_of_a_suspended_or_revoked_agent_say_deactivated() {
    let h = start().await;
    let iss = h.issuer("did.example").await;
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let agent = keyed_agent(&h, &iss, &key, json!({})).await["agent_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Active: the bare document, which says nothing of deactivation.
    let [(st, ct, did), (dst, _, dir)] = documents(&h, &agent).await;
    assert_eq!(st, StatusCode::OK, "{did}");
    assert_eq!(ct, "application/did+ld+json");
    assert_eq!(did["id"], h.state.agent_did(&agent).as_str());
    assert!(!did.to_string().contains("deactivated"), "{did}");
    assert_eq!(dst, StatusCode::OK, "{dir}");
    assert_eq!(dir["keys"][0]["kid"], key.kid(), "{dir}");
    assert!(dir.get("deactivated").is_none(), "{dir}");

    let post = |path: String| {
        let h = &h;
        let iss = iss.clone();
        async move {
            let (st, v) = h.call("POST", &path, Some(&iss), Some(json!({}))).await;
            assert_eq!(st, StatusCode::OK, "{path}: {v}");
        }
    };
    post(format!("/v1/agents/{agent}/suspend")).await;
    says_deactivated(&h, &agent, &documents(&h, &agent).await, "AGENT_SUSPENDED");
    // A suspension ends: no cache may keep the answer.
    let (_, headers, _) = get(&h, &format!("/agents/{agent}/did.json")).await;
    assert_eq!(headers["cache-control"], "no-store");

    post(format!("/v1/agents/{agent}/reactivate")).await;
    let [(st, _, did), (dst, _, _)] = documents(&h, &agent).await;
    assert_eq!(st, StatusCode::OK, "{did}");
    assert_eq!(dst, StatusCode::OK);

    post(format!("/v1/agents/{agent}/revoke")).await;
    says_deactivated(&h, &agent, &documents(&h, &agent).await, "AGENT_REVOKED");
}

#[tokio::test]
async fn a_delegated_token_is_refused_unbound_once_its_actor_has_a_key() {
    let h = start().await;
    let iss = h.issuer("chain.example").await;
    let scopes = json!({"name": "Root", "scopes": ["read:orders"]});
    let root = h.register(&iss, scopes.clone()).await;
    let mut sub_body = scopes;
    sub_body["name"] = json!("Sub");
    let sub = h.register(&iss, sub_body).await;
    let jwt = "urn:ietf:params:oauth:token-type:jwt";
    let resp = h
        .http
        .post(format!("{}/v1/token", h.base))
        .bearer_auth(&iss)
        .form(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", root["token"].as_str().unwrap()),
            ("subject_token_type", jwt),
            ("actor_token", sub["token"].as_str().unwrap()),
            ("actor_token_type", jwt),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    let child = v["access_token"].as_str().unwrap().to_owned();
    assert!(segment(&child, 1).get("cnf").is_none());
    assert_eq!(h.verify_token(&child).await["valid"], true);

    // The actor (the agent presenting the child) gets a key: the unbound child is
    // refused, as its own unbound tokens are.
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let sub_id = sub["agent_id"].as_str().unwrap();
    let (st, v) = h
        .call(
            "PUT",
            &format!("/v1/agents/{sub_id}/keys"),
            Some(&iss),
            Some(json!({"public_key": key.verifying_key().jwk()})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    binding_required(&h.verify_token(&child).await);
    binding_required(&h.verify_token(sub["token"].as_str().unwrap()).await);
    // The root has no key: its own bearer token still verifies.
    assert_eq!(
        h.verify_token(root["token"].as_str().unwrap()).await["valid"],
        true
    );
}

#[tokio::test]
async fn a_receipt_stored_before_sub_was_a_claim_reads_with_its_sub() {
    use sqlx::Connection;
    let h = start().await;
    let iss = h.issuer("old-receipts.example").await;
    let rcv = receiver(&h).await;
    let agent = h
        .register(&iss, json!({"name": "Bot", "scopes": ["read:orders"]}))
        .await;
    let (_, v) = h
        .call(
            "POST",
            "/v1/verify",
            Some(&rcv),
            Some(json!({"token": agent["token"]})),
        )
        .await;
    let id = v["receipt_id"].as_str().unwrap().to_owned();
    let (st, first) = h
        .call("GET", &format!("/v1/receipts/{id}"), Some(&rcv), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{first}");

    // The row as an older registry wrote it: all the claims but `sub` (and the audit
    // index, a column), and its readers in their columns.
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&h.db_path)
        .busy_timeout(std::time::Duration::from_secs(10));
    let mut db = sqlx::sqlite::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    let stored: Vec<u8> = sqlx::query_scalar("SELECT claims FROM receipts WHERE id = ?")
        .bind(&id)
        .fetch_one(&mut db)
        .await
        .unwrap();
    let stored: Value = serde_json::from_slice(&stored).unwrap();
    assert!(
        stored.get("sub").is_none() && stored.get("token_sha256").is_none(),
        "new receipts store only what their audit entry lacks: {stored}"
    );
    let mut claims = first["receipt"].clone();
    let claims_map = claims.as_object_mut().unwrap();
    claims_map.remove("sub");
    claims_map.remove("audit_index");
    sqlx::query("UPDATE receipts SET claims = ?, receiver_id = ?, issuer_id = ? WHERE id = ?")
        .bind(serde_json::to_vec(&claims).unwrap())
        .bind(claims["receiver"].as_str().unwrap())
        .bind(agent["issuer_id"].as_str())
        .bind(&id)
        .execute(&mut db)
        .await
        .unwrap();
    db.close().await.unwrap();

    let (st, view) = h
        .call("GET", &format!("/v1/receipts/{id}"), Some(&rcv), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{view}");
    let jws = view["jws"].as_str().unwrap();
    assert_eq!(segment(jws, 1)["sub"], id.as_str());
    // The same receipt, whichever form it was stored in (signatures are deterministic).
    assert_eq!(view, first);
    let (_, _, receipt_jwks) = get(&h, "/.well-known/receipt-jwks.json").await;
    let keys =
        bonafide_core::token::KeySet::from_jwks(&serde_json::from_value(receipt_jwks).unwrap())
            .unwrap();
    assert!(bonafide_core::receipt::verify(jws, &keys).is_ok());
}
