//! End-to-end API tests: the real server on 127.0.0.1:0 with a temp SQLite data dir,
//! driven over HTTP.

use crate::common;

use std::sync::Arc;

use bonafide_core::apikey::{ApiKey, KeyKind};
use bonafide_core::b64;
use bonafide_core::keys::{Algorithm, SigningKey};
use bonafide_server::{Config, Server};
use bonafide_store::{SqliteStore, Store};
use common::{admin_key_audit, now_s, rand20, start, start_with, start_with_config};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;

fn assert_error(v: &Value, code: &str) {
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    assert!(
        v["error"]["request_id"]
            .as_str()
            .is_some_and(|m| m.starts_with("req_")),
        "{v}"
    );
}

#[tokio::test]
async fn three_party_flow_register_verify_revoke() {
    let h = start().await;
    let key = h.issuer("apexwealth.com").await;
    let reg = h
        .register(
            &key,
            json!({"name": "PortfolioBot", "description": "Reads portfolio data", "scopes": ["read:portfolio", "read:transactions"], "expiry_seconds": 3600}),
        )
        .await;
    let agent_id = reg["agent_id"].as_str().unwrap();
    assert!(agent_id.starts_with("agt_"));
    assert_eq!(reg["name"], "PortfolioBot");
    assert_eq!(reg["issuer"], "apexwealth.com");
    assert_eq!(
        reg["scopes"],
        json!(["read:portfolio", "read:transactions"])
    );
    assert_eq!(
        reg["verify_url"],
        format!("{}/v1/verify/{}", h.base, reg["token"].as_str().unwrap())
    );
    assert_eq!(
        reg["public_key_url"],
        format!("{}/.well-known/public-key.pem", h.base)
    );
    let token = reg["token"].as_str().unwrap();

    // ImaRobot GET shape.
    let (st, v) = h
        .call("GET", &format!("/v1/verify/{token}"), None, None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["valid"], true);
    assert_eq!(v["agent_id"], agent_id);
    assert_eq!(v["name"], "PortfolioBot");
    assert_eq!(v["issuer"], "apexwealth.com");
    assert_eq!(v["scopes"], json!(["read:portfolio", "read:transactions"]));
    assert_eq!(v["description"], "Reads portfolio data");
    for field in ["issued_at", "expires_at", "verified_at"] {
        let t = v[field].as_str().unwrap();
        assert_eq!(t.len(), 24, "{field}: {t}");
        assert!(t.ends_with('Z') && t.as_bytes()[19] == b'.', "{field}: {t}");
    }

    // KairosAI POST shape with scopes.
    let v = h
        .verify(json!({"token": token, "scopes_requested": ["read:portfolio"], "target_resource": "plaid"}))
        .await;
    assert_eq!(v["valid"], true);
    assert_eq!(v["allowed"], true);
    assert_eq!(v["reasons"], json!([]));
    assert_eq!(v["agent"]["id"], agent_id);
    assert_eq!(v["agent"]["active_scopes"], json!(["read:portfolio"]));
    let host = h.base.trim_start_matches("http://").replace(':', "%3A");
    assert_eq!(
        v["agent"]["did"],
        format!("did:web:{host}:agents:{agent_id}")
    );

    let v = h
        .verify(json!({"token": token, "scopes_requested": ["write:email"]}))
        .await;
    assert_eq!(v["valid"], true);
    assert_eq!(v["allowed"], false);
    assert_eq!(v["reasons"], json!(["SCOPE_NOT_GRANTED"]));
    assert!(v["reason"].as_str().unwrap().contains("write:email"));

    // Revoke: the very next verify fails.
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent_id}/revoke"),
            Some(&key),
            Some(json!({"reason": "compromised"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["revoked"], true);
    assert_eq!(v["agent_id"], agent_id);
    assert_eq!(v["reason"], "compromised");
    assert!(v["revoked_at"].as_str().unwrap().ends_with('Z'));
    let (_, v) = h
        .call("GET", &format!("/v1/verify/{token}"), None, None)
        .await;
    common::assert_simple_denial(&v, "TOKEN_REVOKED");
    let v = h.verify_token(token).await;
    assert_eq!(v["valid"], false);
    assert_eq!(v["error"]["code"], "TOKEN_REVOKED");

    // A revoked agent gets no new tokens; revoking again keeps the first record.
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent_id}/issue-token"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_error(&v, "AGENT_REVOKED");
    let (st, v2) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent_id}/revoke"),
            Some(&key),
            Some(json!({"reason": "again"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v2["reason"], "compromised");
}

#[tokio::test]
async fn issue_token_and_revoke_single_token_by_jti_and_by_token() {
    let h = start().await;
    let key = h.issuer("acme.example").await;
    let reg = h
        .register(&key, json!({"name": "A", "scopes": ["read:files"]}))
        .await;
    let agent_id = reg["agent_id"].as_str().unwrap();
    let first = reg["token"].as_str().unwrap().to_owned();

    let (st, t2) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent_id}/issue-token"),
            Some(&key),
            Some(json!({"expiry_seconds": 120})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{t2}");
    let second = t2["token"].as_str().unwrap().to_owned();
    let jti = t2["jti"].as_str().unwrap();
    assert!(jti.starts_with("tok_"));
    let (st, t3) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent_id}/issue-token"),
            Some(&key),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let third = t3["token"].as_str().unwrap().to_owned();

    let (st, v) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&key),
            Some(json!({"jti": jti})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["jti"], jti);
    assert_eq!(
        h.verify_token(&second).await["error"]["code"],
        "TOKEN_REVOKED"
    );
    assert_eq!(h.verify_token(&first).await["valid"], true);

    let (st, _) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&key),
            Some(json!({"token": third})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        h.verify_token(&third).await["error"]["code"],
        "TOKEN_REVOKED"
    );
    assert_eq!(h.verify_token(&first).await["valid"], true);

    // Failure cases.
    let (st, v) = h
        .call("POST", "/v1/tokens/revoke", Some(&key), Some(json!({})))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&v, "INVALID_REQUEST");
    let (st, _) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&key),
            Some(json!({"jti": jti, "token": first})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, v) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&key),
            Some(json!({"jti": "tok_aaaaaaaaaaaaaaaaaaaaaaaaaa"})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_error(&v, "NOT_FOUND");
    let (st, _) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&key),
            Some(json!({"jti": "'; DROP TABLE tokens; --"})),
        )
        .await;
    // Not a `jti` at all (spaces): a 422. One that could be the issuer's own but
    // names none of its tokens: a 404.
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, _) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&key),
            Some(json!({"jti": "';DROP_TABLE_tokens;--"})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&key),
            Some(json!({"token": "garbage"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent_id}/issue-token"),
            Some(&key),
            Some(json!({"expiry_seconds": 5})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn issuers_are_isolated() {
    let h = start().await;
    let a = h.issuer("a.example").await;
    let b = h.issuer("b.example").await;
    let reg = h
        .register(&a, json!({"name": "A1", "scopes": ["read:x"]}))
        .await;
    let id = reg["agent_id"].as_str().unwrap();
    let jti_token = reg["token"].as_str().unwrap();

    let (st, v) = h
        .call("GET", &format!("/v1/agents/{id}"), Some(&b), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_error(&v, "NOT_FOUND");
    let (st, _) = h
        .call("POST", &format!("/v1/agents/{id}/revoke"), Some(&b), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/agents/{id}/issue-token"),
            Some(&b),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&b),
            Some(json!({"token": jti_token})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, v) = h.call("GET", "/v1/agents", Some(&b), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["agents"], json!([]));
    // Still valid: B could not touch it.
    assert_eq!(h.verify_token(jti_token).await["valid"], true);
    let (st, v) = h
        .call("GET", &format!("/v1/agents/{id}"), Some(&a), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["status"], "active");
}

#[tokio::test]
async fn listing_is_cursor_paginated() {
    let h = start().await;
    let key = h.issuer("many.example").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let v = h
            .register(
                &key,
                json!({"name": format!("bot-{i}"), "scopes": ["read:x"]}),
            )
            .await;
        ids.push(v["agent_id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/agents?limit=3&cursor={c}"),
            None => "/v1/agents?limit=3".to_owned(),
        };
        let (st, v) = h.call("GET", &path, Some(&key), None).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        pages += 1;
        for a in v["agents"].as_array().unwrap() {
            seen.push(a["agent_id"].as_str().unwrap().to_owned());
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    assert_eq!(pages, 3);
    for bad in ["/v1/agents?limit=0", "/v1/agents?limit=201"] {
        let (st, v) = h.call("GET", bad, Some(&key), None).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
        assert_error(&v, "INVALID_REQUEST");
    }
    for bad in [
        "/v1/agents?limit=x",
        "/v1/agents?cursor=%%%",
        "/v1/agents?cursor=Zm9v",
        "/v1/agents?bogus=1",
    ] {
        let (st, v) = h.call("GET", bad, Some(&key), None).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert_error(&v, "BAD_REQUEST");
    }
}

#[tokio::test]
async fn authentication_failures() {
    let h = start().await;
    let issuer = h.issuer("auth.example").await;
    let body = json!({"name": "n", "scopes": ["read:x"]});
    let (st, v) = h
        .call("POST", "/v1/agents/register", None, Some(body.clone()))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_error(&v, "UNAUTHORIZED");
    let (st, _) = h
        .call(
            "POST",
            "/v1/agents/register",
            Some("not-a-key"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let unknown = ApiKey::from_random(KeyKind::Issuer, rand20());
    let (st, _) = h
        .call(
            "POST",
            "/v1/agents/register",
            Some(unknown.expose_secret()),
            Some(body.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // Bad checksum.
    let mut typo = issuer.clone();
    typo.pop();
    typo.push(if issuer.ends_with('a') { 'b' } else { 'a' });
    let (st, v) = h
        .call(
            "POST",
            "/v1/agents/register",
            Some(&typo),
            Some(body.clone()),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("checksum"),
        "{v}"
    );
    // Wrong kind: admin key on an issuer endpoint and the reverse.
    let (st, v) = h
        .call("POST", "/v1/agents/register", Some(&h.admin), Some(body))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_error(&v, "FORBIDDEN");
    let (st, _) = h
        .call(
            "POST",
            "/v1/issuers",
            Some(&issuer),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = h
        .call("POST", "/v1/admin/keys/rotate", Some(&issuer), None)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // X-API-Key works too.
    let resp = h
        .http
        .get(format!("{}/v1/agents", h.base))
        .header("X-API-Key", &issuer)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Other auth schemes are refused clearly.
    let resp = h
        .http
        .get(format!("{}/v1/agents", h.base))
        .header("Authorization", format!("Basic {issuer}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().contains_key("www-authenticate"));
}

#[tokio::test]
async fn issuer_creation_failures() {
    let h = start().await;
    h.issuer("dup.example").await;
    let (st, v) = h
        .call(
            "POST",
            "/v1/issuers",
            Some(&h.admin),
            Some(json!({"name": "dup.example"})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_error(&v, "CONFLICT");
    for (body, code) in [
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"name": ""}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"name": "   "}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"name": 5}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"name": "a\u{0007}b"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"name": "x".repeat(300)}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"name": "ok.example", "extra": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (st, v) = h
            .call("POST", "/v1/issuers", Some(&h.admin), Some(body.clone()))
            .await;
        assert_eq!(st, code, "{body}: {v}");
        assert!(v["error"]["code"].is_string(), "{v}");
    }
}

#[tokio::test]
async fn registration_rejects_bad_input() {
    let h = start().await;
    let key = h.issuer("bad.example").await;
    let cases = [
        json!({"scopes": ["read:x"]}),
        json!({"name": "n"}),
        json!({"name": "n", "scopes": []}),
        json!({"name": "n", "scopes": ["READ:X"]}),
        json!({"name": "n", "scopes": ["read x"]}),
        json!({"name": "n", "scopes": ["read"]}),
        json!({"name": "n", "scopes": "read:x"}),
        json!({"name": "n", "scopes": [1]}),
        json!({"name": "n", "scopes": ["read:x"], "expiry_seconds": 10}),
        json!({"name": "n", "scopes": ["read:x"], "expiry_seconds": 999_999_999}),
        json!({"name": "n", "scopes": ["read:x"], "expiry_seconds": "3600"}),
        json!({"name": "n", "scopes": ["read:x"], "audience": []}),
        json!({"name": "n", "scopes": ["read:x"], "audience": 7}),
        json!({"name": "n", "scopes": ["read:x"], "policy": {}}),
        json!({"name": "", "scopes": ["read:x"]}),
        json!([1, 2]),
    ];
    for body in cases {
        let (st, v) = h
            .call(
                "POST",
                "/v1/agents/register",
                Some(&key),
                Some(body.clone()),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert!(v["error"]["message"].as_str().is_some(), "{v}");
    }
    // Malformed JSON, wrong content type, oversize body.
    let url = format!("{}/v1/agents/register", h.base);
    let resp = h
        .http
        .post(&url)
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: Value = resp.json().await.unwrap();
    assert_error(&v, "MALFORMED_JSON");
    let resp = h
        .http
        .post(&url)
        .bearer_auth(&key)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let big = json!({"name": "n", "scopes": ["read:x"], "description": "x".repeat(100_000)});
    let (st, v) = h
        .call("POST", "/v1/agents/register", Some(&key), Some(big))
        .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_error(&v, "PAYLOAD_TOO_LARGE");
    // Custom scopes that follow the grammar are fine; audiences are carried.
    let v = h
        .register(&key, json!({"name": "n", "scopes": ["call:agents:billing", "read:v1.accounts"], "audience": "bank.example"}))
        .await;
    let verdict = h
        .verify(json!({"token": v["token"], "audience": "other.example"}))
        .await;
    assert_eq!(verdict["error"]["code"], "AUDIENCE_MISMATCH");
    let verdict = h
        .verify(json!({"token": v["token"], "audience": "bank.example"}))
        .await;
    assert_eq!(verdict["valid"], true);
}

#[tokio::test]
async fn unknown_routes_methods_and_odd_paths() {
    let h = start().await;
    let (st, v) = h.call("GET", "/v1/nope", None, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_error(&v, "NOT_FOUND");
    let (st, v) = h.call("DELETE", "/v1/verify", None, None).await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&v, "METHOD_NOT_ALLOWED");
    let (st, _) = h
        .call("PUT", "/v1/issuers", Some(&h.admin), Some(json!({})))
        .await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
    let key = h.issuer("paths.example").await;
    for path in [
        "/v1/agents/..%2F..%2Fetc%2Fpasswd",
        "/v1/agents/agt_%00",
        "/v1/agents/%FF%FE",
        "/v1/agents/agt_aaaaaaaaaaaaaaaaaaaaaaaaaa",
    ] {
        let (st, v) = h.call("GET", path, Some(&key), None).await;
        assert!(
            st == StatusCode::NOT_FOUND || st == StatusCode::BAD_REQUEST,
            "{path}: {st} {v}"
        );
        assert!(v["error"]["code"].is_string(), "{path}: {v}");
    }
    for path in [
        "/v1/verify/garbage",
        "/v1/verify/a.b.c",
        "/v1/verify/a/b/c",
        "/v1/verify/%20%20",
        "/v1/verify/..%2F..",
        "/v1/verify/%E2%9C%93.x.y",
    ] {
        let (st, v) = h.call("GET", path, None, None).await;
        assert_eq!(st, StatusCode::OK, "{path}: {v}");
        common::assert_simple_denial(&v, "TOKEN_INVALID");
    }
    let (st, v) = h.call("GET", "/v1/verify/%FF%FF", None, None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_error(&v, "BAD_REQUEST");
}

#[tokio::test]
async fn verify_rejects_bad_bodies_without_500() {
    let h = start().await;
    for body in [
        json!({}),
        json!({"token": 5}),
        json!({"token": "x", "scopes_requested": "read:x"}),
        json!({"token": "x", "amount": "5"}),
    ] {
        let (st, v) = h.call("POST", "/v1/verify", None, Some(body.clone())).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
    }
    let many: Vec<String> = (0..65).map(|i| format!("read:s{i}")).collect();
    let (st, _) = h
        .call(
            "POST",
            "/v1/verify",
            None,
            Some(json!({"token": "x", "scopes_requested": many})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let v = h.verify(json!({"token": ""})).await;
    assert_eq!(v["valid"], false);
    assert_eq!(v["error"]["code"], "TOKEN_INVALID");
    assert_eq!(v["reasons"], json!(["TOKEN_INVALID"]));
    let v = h.verify(json!({"token": "x".repeat(20_000)})).await;
    assert_eq!(v["error"]["code"], "TOKEN_INVALID");
    assert!(v["reason"].as_str().unwrap().contains("bytes"), "{v}");
}

/// The attack suite over HTTP: each crafted token is refused by both verify endpoints.
#[tokio::test]
async fn attack_tokens_are_refused_over_http() {
    let h = start().await;
    let key = h.issuer("victim.example").await;
    let reg = h
        .register(&key, json!({"name": "V", "scopes": ["read:x"]}))
        .await;
    let good = reg["token"].as_str().unwrap().to_owned();
    let agent_id = reg["agent_id"].as_str().unwrap().to_owned();
    let kid = h.state.keys().active.kid().to_owned();
    let parts: Vec<&str> = good.split('.').collect();
    let claims_b64 = parts[1];
    let enc = |v: &Value| b64::encode(v.to_string().as_bytes());
    let attacker = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let sign_with = |k: &SigningKey, header: &Value, payload_b64: &str| {
        let input = format!("{}.{payload_b64}", enc(header));
        let sig = k.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", b64::encode(&sig))
    };
    let pem = h.state.keys().active.verifying_key().public_pem().unwrap();
    let hs256 = {
        let header = json!({"alg": "HS256", "typ": "agent+jwt", "kid": kid});
        let input = format!("{}.{claims_b64}", enc(&header));
        let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, pem.as_bytes());
        let tag = aws_lc_rs::hmac::sign(&k, input.as_bytes());
        format!("{input}.{}", b64::encode(tag.as_ref()))
    };
    let now = now_s();
    let mut expired = h.claims(&agent_id);
    expired["iat"] = json!(now - 7200);
    expired["nbf"] = json!(now - 7200);
    expired["exp"] = json!(now - 3600);
    let mut future = h.claims(&agent_id);
    future["nbf"] = json!(now + 3600);
    let mut wrong_iss = h.claims(&agent_id);
    wrong_iss["iss"] = json!("https://evil.example");
    let dup_exp = format!(
        r#"{{"iss":"{}","sub":"{agent_id}","iat":{now},"exp":{},"exp":{},"jti":"tok_aaaaaaaaaaaaaaaaaaaaaaaaaa","agent":{{"name":"X","issuer":"x","scopes":["read:x"]}}}}"#,
        h.base,
        now + 600,
        now + 999_999
    );
    let nested = format!(
        r#"{{"iss":"{}","sub":"{agent_id}","iat":{now},"exp":{},"jti":"tok_aaaaaaaaaaaaaaaaaaaaaaaaaa","agent":{{"name":"X","issuer":"x","scopes":["read:x"]}},"deep":{}{}}}"#,
        h.base,
        now + 600,
        "[".repeat(100),
        "]".repeat(100)
    );
    let mut tampered = serde_json::from_slice::<Value>(&b64::decode(claims_b64).unwrap()).unwrap();
    tampered["agent"]["scopes"] = json!(["read:x", "write:email"]);
    tampered["scope"] = json!("read:x write:email");

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "alg none",
            format!(
                "{}.{claims_b64}.",
                enc(&json!({"alg": "none", "typ": "agent+jwt", "kid": kid}))
            ),
            "TOKEN_INVALID",
        ),
        (
            "alg None",
            format!(
                "{}.{claims_b64}.",
                enc(&json!({"alg": "None", "typ": "agent+jwt", "kid": kid}))
            ),
            "TOKEN_INVALID",
        ),
        (
            "alg NONE",
            format!(
                "{}.{claims_b64}.",
                enc(&json!({"alg": "NONE", "typ": "agent+jwt", "kid": kid}))
            ),
            "TOKEN_INVALID",
        ),
        ("hs256 with public key", hs256, "TOKEN_INVALID"),
        (
            "embedded jwk",
            sign_with(
                &attacker,
                &json!({"alg": "EdDSA", "typ": "agent+jwt", "kid": kid, "jwk": attacker.verifying_key().jwk()}),
                claims_b64,
            ),
            "TOKEN_INVALID",
        ),
        (
            "jku elsewhere",
            sign_with(
                &attacker,
                &json!({"alg": "EdDSA", "typ": "agent+jwt", "kid": kid, "jku": "https://evil.example/jwks.json"}),
                claims_b64,
            ),
            "TOKEN_INVALID",
        ),
        (
            "x5u elsewhere",
            sign_with(
                &attacker,
                &json!({"alg": "EdDSA", "typ": "agent+jwt", "kid": kid, "x5u": "https://evil.example/cert.pem"}),
                claims_b64,
            ),
            "TOKEN_INVALID",
        ),
        (
            "attacker key, our kid",
            sign_with(
                &attacker,
                &json!({"alg": "EdDSA", "typ": "agent+jwt", "kid": kid}),
                claims_b64,
            ),
            "TOKEN_INVALID",
        ),
        (
            "kid path traversal",
            sign_with(
                &attacker,
                &json!({"alg": "EdDSA", "typ": "agent+jwt", "kid": "../../../../etc/passwd"}),
                claims_b64,
            ),
            "TOKEN_INVALID",
        ),
        (
            "kid sql injection",
            sign_with(
                &attacker,
                &json!({"alg": "EdDSA", "typ": "agent+jwt", "kid": "' OR 1=1 --"}),
                claims_b64,
            ),
            "TOKEN_INVALID",
        ),
        (
            "signature stripped",
            format!("{}.{}.", parts[0], parts[1]),
            "TOKEN_INVALID",
        ),
        (
            "payload changed",
            format!("{}.{}.{}", parts[0], enc(&tampered), parts[2]),
            "TOKEN_INVALID",
        ),
        (
            "crit header",
            {
                let header =
                    json!({"alg": "EdDSA", "typ": "agent+jwt", "kid": kid, "crit": ["exp"]});
                let ring = h.state.keys();
                let input = format!("{}.{claims_b64}", enc(&header));
                let sig = ring.active.sign(input.as_bytes()).unwrap();
                format!("{input}.{}", b64::encode(&sig))
            },
            "TOKEN_INVALID",
        ),
        ("duplicate exp", h.sign_raw(&dup_exp), "TOKEN_INVALID"),
        ("deeply nested", h.sign_raw(&nested), "TOKEN_INVALID"),
        ("expired", h.sign_raw(&expired.to_string()), "TOKEN_EXPIRED"),
        (
            "not yet valid",
            h.sign_raw(&future.to_string()),
            "TOKEN_NOT_YET_VALID",
        ),
        (
            "unknown issuer",
            h.sign_raw(&wrong_iss.to_string()),
            "ISSUER_UNKNOWN",
        ),
        (
            "padded base64url",
            format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
            "TOKEN_INVALID",
        ),
        (
            "standard alphabet",
            format!(
                "{}.{}.{}",
                parts[0],
                parts[1],
                // Always a standard-alphabet character, even for a signature that
                // happens to hold no `-` or `_` (the replacement alone would leave
                // such a token unchanged and valid).
                format!("+{}", &parts[2][1..])
                    .replace('-', "+")
                    .replace('_', "/")
            ),
            "TOKEN_INVALID",
        ),
        (
            "oversized",
            format!("{}.{}.{}", parts[0], "A".repeat(9000), parts[2]),
            "TOKEN_INVALID",
        ),
        (
            "two segments",
            format!("{}.{}", parts[0], parts[1]),
            "TOKEN_INVALID",
        ),
    ];
    for (name, token, code) in cases {
        let v = h.verify(json!({"token": token})).await;
        assert_eq!(v["valid"], false, "{name}: {v}");
        assert_eq!(v["error"]["code"], code, "{name}: {v}");
        assert_eq!(v["allowed"], false, "{name}");
        if !token.contains('/') && !token.contains('+') && !token.contains('=') {
            let (st, g) = h
                .call("GET", &format!("/v1/verify/{token}"), None, None)
                .await;
            assert_eq!(st, StatusCode::OK, "{name}");
            assert_eq!(g["error"]["code"], code, "{name}: {g}");
        }
    }
    // Positive control: the genuine token still verifies.
    assert_eq!(h.verify_token(&good).await["valid"], true);
}

#[tokio::test]
async fn key_rotation_keeps_old_tokens_valid_until_they_expire() {
    let h = start().await;
    let key = h.issuer("rotate.example").await;
    let reg = h
        .register(
            &key,
            json!({"name": "R", "scopes": ["read:x"], "expiry_seconds": 600}),
        )
        .await;
    let old_token = reg["token"].as_str().unwrap().to_owned();
    let old_kid = h.state.keys().active.kid().to_owned();

    let (st, v) = h
        .call("POST", "/v1/admin/keys/rotate", Some(&h.admin), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let new_kid = v["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    assert_eq!(v["retired"][0]["kid"], old_kid);

    let (_, jwks) = h.call("GET", "/.well-known/jwks.json", None, None).await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(
        kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()),
        "{jwks}"
    );
    assert_eq!(h.verify_token(&old_token).await["valid"], true);

    let agent_id = reg["agent_id"].as_str().unwrap();
    let (_, t) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent_id}/issue-token"),
            Some(&key),
            None,
        )
        .await;
    let new_token = t["token"].as_str().unwrap();
    let header: Value =
        serde_json::from_slice(&b64::decode(new_token.split('.').next().unwrap()).unwrap())
            .unwrap();
    assert_eq!(header["kid"], new_kid);
    assert_eq!(h.verify_token(new_token).await["valid"], true);

    // A key that signed no tokens leaves the JWKS at once after the next rotation.
    let (_, v2) = h
        .call("POST", "/v1/admin/keys/rotate", Some(&h.admin), None)
        .await;
    let newest = v2["kid"].as_str().unwrap();
    let (_, jwks) = h.call("GET", "/.well-known/jwks.json", None, None).await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(kids.contains(&newest));
    assert!(
        kids.contains(&old_kid.as_str()),
        "old key still has live tokens"
    );
    assert!(
        kids.contains(&new_kid.as_str()),
        "second key signed a live token"
    );
    assert_eq!(h.verify_token(&old_token).await["valid"], true);
}

#[tokio::test]
async fn discovery_endpoints() {
    let h = start_with(Algorithm::RS256).await;
    let (st, jwks) = h.call("GET", "/.well-known/jwks.json", None, None).await;
    assert_eq!(st, StatusCode::OK);
    let k = &jwks["keys"][0];
    assert_eq!(k["kty"], "RSA");
    assert_eq!(k["alg"], "RS256");
    assert_eq!(k["use"], "sig");
    assert!(k.get("d").is_none());
    let resp = h
        .http
        .get(format!("{}/.well-known/public-key.pem", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let pem = resp.text().await.unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    assert!(!pem.contains("PRIVATE"));
    let (_, conf) = h
        .call("GET", "/.well-known/bonafide-configuration", None, None)
        .await;
    assert_eq!(conf["issuer"], h.base);
    assert_eq!(
        conf["jwks_uri"],
        format!("{}/.well-known/jwks.json", h.base)
    );
    assert_eq!(conf["signing_alg"], "RS256");
    let (_, scopes) = h.call("GET", "/v1/scopes", None, None).await;
    let list = scopes["scopes"].as_array().unwrap();
    assert!(
        list.iter()
            .any(|s| s["scope"] == "write:email" && s["risk"] == "high")
    );
    assert!(
        scopes["grammar"]
            .as_str()
            .unwrap()
            .contains("verb:resource")
    );
    let (st, health) = h.call("GET", "/v1/health", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(health["status"], "ok");
    assert!(health["version"].is_string());
    let (st, body) = h.call("GET", "/healthz", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body, "ok");
    let resp = h
        .http
        .get(format!("{}/healthz", h.base))
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_")
    );

    // RS256 tokens verify end to end.
    let key = h.issuer("rsa.example").await;
    let reg = h
        .register(&key, json!({"name": "R", "scopes": ["read:x"]}))
        .await;
    assert_eq!(
        h.verify_token(reg["token"].as_str().unwrap()).await["valid"],
        true
    );
}

#[tokio::test]
async fn introspection_rfc7662() {
    let h = start_with(Algorithm::ES256).await;
    let key = h.issuer("intro.example").await;
    let reg = h
        .register(
            &key,
            json!({"name": "I", "scopes": ["read:x", "read:y"], "audience": ["r1", "r2"]}),
        )
        .await;
    let token = reg["token"].as_str().unwrap();
    let url = format!("{}/v1/introspect", h.base);
    // A token with `aud` is active only for a caller that names one of them.
    let resp = h
        .http
        .post(&url)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v, json!({"active": false}));
    let resp = h
        .http
        .post(&url)
        .form(&[("token", token), ("audience", "r2")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["active"], true);
    assert_eq!(v["scope"], "read:x read:y");
    assert_eq!(v["sub"], reg["agent_id"]);
    assert_eq!(v["aud"], json!(["r1", "r2"]));
    assert_eq!(v["iss"], h.base);
    assert!(v["exp"].is_i64() && v["iat"].is_i64());
    let resp = h
        .http
        .post(&url)
        .form(&[("token", "garbage")])
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v, json!({"active": false}));
    let resp = h
        .http
        .post(&url)
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let resp = h
        .http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("nothing=here")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error());
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"]["code"].is_string());
}

#[tokio::test]
async fn revocations_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let admin = ApiKey::from_random(KeyKind::Admin, rand20());
    let base_cfg = || Config {
        signing_alg: Algorithm::EdDSA,
        public_url: "http://registry.test".into(),
        ..common::config()
    };
    let (token, state2) = {
        let store = SqliteStore::open(dir.path()).await.unwrap();
        store
            .add_admin_key(&admin.hash(), 0, &admin_key_audit())
            .await
            .unwrap();
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), base_cfg(), Arc::new(store))
            .await
            .unwrap();
        let base = format!("http://{}", server.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        let http = reqwest::Client::new();
        let v: Value = http
            .post(format!("{base}/v1/issuers"))
            .bearer_auth(admin.expose_secret())
            .json(&json!({"name": "restart.example"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let key = v["api_key"].as_str().unwrap().to_owned();
        let reg: Value = http
            .post(format!("{base}/v1/agents/register"))
            .bearer_auth(&key)
            .json(&json!({"name": "S", "scopes": ["read:x"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let agent = reg["agent_id"].as_str().unwrap();
        let resp = http
            .post(format!("{base}/v1/agents/{agent}/revoke"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        tx.send(()).unwrap();
        task.await.unwrap().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), base_cfg(), Arc::new(store))
            .await
            .unwrap();
        (reg["token"].as_str().unwrap().to_owned(), server.state())
    };
    let err = bonafide_server::token_check::check_token(
        &state2,
        &token,
        bonafide_core::token::AudienceRule::Unnamed,
        bonafide_server::time::now_ms(),
    )
    .await
    .unwrap()
    .token()
    .unwrap_err();
    assert_eq!(err.error.code().as_str(), "TOKEN_REVOKED");
}

#[tokio::test]
async fn a_retired_key_leaves_the_jwks_once_its_tokens_have_expired() {
    // No leeway, so "expired" is exact and the test need not wait.
    let h = start_with_config(Config {
        signing_alg: Algorithm::EdDSA,
        leeway_secs: 0,
        ..common::config()
    })
    .await;
    let first = h.state.keys().active.kid().to_owned();
    let (st, v) = h
        .call("POST", "/v1/admin/keys/rotate", Some(&h.admin), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // The first key signed no token: nothing keeps it published.
    let (_, jwks) = h.call("GET", "/.well-known/jwks.json", None, None).await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, vec![v["kid"].as_str().unwrap()], "{jwks}");
    assert!(!kids.contains(&first.as_str()));
}

/// ECDSA-specific attacks over HTTP, against an ES256 registry.
#[tokio::test]
async fn ecdsa_signature_attacks_are_refused_over_http() {
    let h = start_with(Algorithm::ES256).await;
    let key = h.issuer("ecdsa.example").await;
    let reg = h
        .register(&key, json!({"name": "E", "scopes": ["read:x"]}))
        .await;
    let good = reg["token"].as_str().unwrap();
    let agent_id = reg["agent_id"].as_str().unwrap();
    let (head, rest) = good.split_once('.').unwrap();
    let (payload, sig_b64) = rest.split_once('.').unwrap();
    let sig = b64::decode(sig_b64).unwrap();
    assert_eq!(sig.len(), 64);

    // CVE-2022-21449 ("psychic signatures"): r = s = 0.
    let zeros = format!("{head}.{payload}.{}", b64::encode(&[0u8; 64]));
    // The same valid signature, DER-encoded instead of R‖S.
    let der_int = |x: &[u8]| {
        let x: Vec<u8> = x.iter().copied().skip_while(|b| *b == 0).collect();
        let mut v = if x[0] & 0x80 != 0 { vec![0u8] } else { vec![] };
        v.extend(x);
        let mut out = vec![0x02, v.len() as u8];
        out.extend(v);
        out
    };
    let (r, s) = (der_int(&sig[..32]), der_int(&sig[32..]));
    let mut der = vec![0x30, (r.len() + s.len()) as u8];
    der.extend(r);
    der.extend(s);
    let der_token = format!("{head}.{payload}.{}", b64::encode(&der));
    let now = now_s();
    let dup_sub = format!(
        r#"{{"iss":"{}","sub":"{agent_id}","sub":"agt_bbbbbbbbbbbbbbbbbbbbbbbbbb","iat":{now},"exp":{},"jti":"tok_aaaaaaaaaaaaaaaaaaaaaaaaaa","agent":{{"name":"X","issuer":"x","scopes":["read:x"]}}}}"#,
        h.base,
        now + 600
    );
    for (name, token) in [
        ("r = s = 0", zeros),
        ("DER signature", der_token),
        ("duplicate sub", h.sign_raw(&dup_sub)),
    ] {
        let v = h.verify_token(&token).await;
        assert_eq!(v["valid"], false, "{name}: {v}");
        assert_eq!(v["error"]["code"], "TOKEN_INVALID", "{name}: {v}");
    }
    assert_eq!(h.verify_token(good).await["valid"], true);
}

#[tokio::test]
async fn registration_refuses_a_token_that_would_be_too_large_to_verify() {
    let h = start().await;
    let key = h.issuer("big.example").await;
    let scopes: Vec<String> = (0..64)
        .map(|i| format!("read:{}{i:02}", "s".repeat(57)))
        .collect();
    let (st, v) = h
        .call(
            "POST",
            "/v1/agents/register",
            Some(&key),
            Some(json!({"name": "Big", "scopes": scopes})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("byte limit"),
        "{v}"
    );
    let (_, list) = h.call("GET", "/v1/agents", Some(&key), None).await;
    assert_eq!(list["agents"], json!([]), "nothing half-registered");
}

/// Admin API keys over HTTP: only an admin lists or revokes them; an unknown or
/// malformed id is a 404; the only admin key is never revoked (409 LAST_ADMIN_KEY).
#[tokio::test]
async fn admin_api_keys_list_and_revoke_refusals() {
    let h = start().await;
    let iss = h.issuer_full("keys.example").await;
    for key in [None, Some(iss.key.as_str())] {
        let (st, v) = h.call("GET", "/v1/admin/api-keys", key, None).await;
        assert!(
            st == StatusCode::UNAUTHORIZED || st == StatusCode::FORBIDDEN,
            "{st}: {v}"
        );
    }
    let (st, v) = h
        .call("GET", "/v1/admin/api-keys", Some(&h.admin), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{v}");
    let id = keys[0]["id"].as_str().unwrap().to_owned();
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/admin/api-keys/{id}/revoke"),
            Some(&iss.key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    for bad in ["sha256:0000000000000000", "nope", "sha256:%2e%2e"] {
        let (st, v) = h
            .call(
                "POST",
                &format!("/v1/admin/api-keys/{bad}/revoke"),
                Some(&h.admin),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{bad}: {v}");
    }
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/admin/api-keys/{id}/revoke"),
            Some(&h.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "LAST_ADMIN_KEY", "{v}");
    let (st, _) = h
        .call("GET", "/v1/admin/api-keys", Some(&h.admin), None)
        .await;
    assert_eq!(st, StatusCode::OK, "the key still works");
}

/// The one write path: a commit whose caller goes away (its future dropped mid-write)
/// still completes, and its change reaches the read model.
#[tokio::test]
async fn a_commit_whose_caller_goes_away_still_reaches_memory() {
    use bonafide_server::state::Revoked;
    use bonafide_server::write::{Change, Part};
    let h = start().await;
    let agent = bonafide_core::ids::AgentId::from_random([9; 16]);
    let gone = agent.clone();
    let commit = h.state.commit(
        "test",
        Part::Revocations,
        Box::new(move |_state| {
            Box::pin(async move {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                Ok(((), Change::Revoked(Revoked::Agent(gone))))
            })
        }),
    );
    // The caller hangs up long before the write is done.
    let dropped = tokio::time::timeout(std::time::Duration::from_millis(20), commit).await;
    assert!(dropped.is_err(), "the write takes 200 ms");
    let mut seen = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        if h.state.snapshot().agent_revoked(&agent) {
            seen = true;
            break;
        }
    }
    assert!(seen, "the change never reached the read model");
}

/// AgentOAuth's dotted scopes (`payments.send`) are granted and verify like the colon
/// form; a malformed one is refused with the grammar in the message.
#[tokio::test]
async fn dotted_scopes_are_scopes() {
    let h = start().await;
    let key = h.issuer("dotted.example").await;
    let agent = h
        .register(
            &key,
            json!({"name": "Payer", "scopes": ["payments.send", "read:files"]}),
        )
        .await;
    let token = agent["token"].as_str().unwrap();
    let v = h
        .verify(json!({"token": token, "scopes_requested": ["payments.send"]}))
        .await;
    assert_eq!(v["valid"], true, "{v}");
    for bad in ["payments..send", "Payments.send", "payments", "a.b.c.d.e"] {
        let (st, v) = h
            .call(
                "POST",
                "/v1/agents/register",
                Some(&key),
                Some(json!({"name": "Bad", "scopes": [bad]})),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
        assert!(v.to_string().contains("payments.send"), "{bad}: {v}");
    }
}
