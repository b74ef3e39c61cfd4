//! Organisations, people and sessions (issue 18) over HTTP against the real server:
//! invitations, roles × endpoints, login, access tokens (RFC 9068), refresh rotation
//! and reuse detection, sessions, password change, TOTP with a real clock-based code,
//! recovery codes, backoff, security events and audit entries.

use std::sync::Arc;
use std::time::Duration;

use bonafide_core::keys::VerifyingKey;
use bonafide_core::token::KeySet;
use bonafide_core::totp::{self, TotpAlg};
use bonafide_server::Config;
use bonafide_server::time::ManualClock;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Harness, config, start, start_with_config};

const PASSWORD: &str = "correct horse battery staple";

/// One row of the roles × endpoints table: who, method, path, the issuer named (if
/// any), body, expected status.
type Case<'a> = (
    &'a str,
    &'a str,
    String,
    Option<&'a str>,
    Option<Value>,
    StatusCode,
);

/// A request with an optional bearer token and an optional `X-Bonafide-Issuer`.
async fn req(
    h: &Harness,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    issuer: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let url = format!("{}{path}", h.base);
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = h.http.request(method, &url);
    if let Some(t) = bearer {
        r = r.bearer_auth(t);
    }
    if let Some(i) = issuer {
        r = r.header("x-bonafide-issuer", i);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v, headers)
}

/// Creates an organisation (admin key); its id and the owner's invitation token.
async fn create_org(h: &Harness, name: &str, owner: &str) -> (String, String) {
    let (st, v, _) = req(
        h,
        "POST",
        "/v1/orgs",
        Some(&h.admin),
        None,
        Some(json!({"name": name, "owner_email": owner})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["invitation"]["role"], "owner");
    assert!(
        v["invitation"]["token"]
            .as_str()
            .unwrap()
            .starts_with("bfi_")
    );
    (
        v["org_id"].as_str().unwrap().to_owned(),
        v["invitation"]["token"].as_str().unwrap().to_owned(),
    )
}

async fn accept(h: &Harness, token: &str) -> Value {
    let (st, v, _) = req(
        h,
        "POST",
        "/v1/invitations/accept",
        None,
        None,
        Some(json!({"token": token, "password": PASSWORD})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

async fn login(h: &Harness, email: &str, extra: Value) -> (StatusCode, Value) {
    let mut body = json!({"email": email, "password": PASSWORD});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    let (st, v, _) = req(h, "POST", "/v1/auth/login", None, None, Some(body)).await;
    (st, v)
}

async fn access(h: &Harness, email: &str) -> String {
    let (st, v) = login(h, email, json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["access_token"].as_str().unwrap().to_owned()
}

/// Invites `email` into `org` with `role` (by `by`), accepts and logs in.
async fn member(h: &Harness, org: &str, by: &str, email: &str, role: &str) -> String {
    let (st, v, _) = req(
        h,
        "POST",
        &format!("/v1/orgs/{org}/invitations"),
        Some(by),
        None,
        Some(json!({"email": email, "role": role})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    accept(h, v["token"].as_str().unwrap()).await;
    access(h, email).await
}

async fn audit_entries(h: &Harness) -> Vec<Value> {
    let size = h.state.store.audit_size().await.unwrap();
    let (st, v) = h
        .call(
            "GET",
            &format!("/v1/audit/entries?start=0&end={size}"),
            Some(&h.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["entry"].as_str())
        .map(|e| serde_json::from_str(e).unwrap())
        .collect()
}

async fn audit_types(h: &Harness) -> Vec<String> {
    let size = h.state.store.audit_size().await.unwrap();
    let (st, v) = h
        .call(
            "GET",
            &format!("/v1/audit/entries?start=0&end={size}"),
            Some(&h.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["entry"].as_str())
        .map(|e| {
            let e: Value = serde_json::from_str(e).unwrap();
            e["type"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn invitations_login_and_roles_over_every_endpoint() {
    let h = start().await;
    let (org, invitation) = create_org(&h, "Acme", "Owner@Example.com").await;
    // Open sign-up is off: no key, no organisation.
    let (st, v, _) = req(
        &h,
        "POST",
        "/v1/orgs",
        None,
        None,
        Some(json!({"name": "x", "owner_email": "a@b.example"})),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    // A short password is refused by the length rule, and the invitation survives.
    let (st, v, _) = req(
        &h,
        "POST",
        "/v1/invitations/accept",
        None,
        None,
        Some(json!({"token": invitation, "password": "short one"})),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("15"),
        "{v}"
    );
    let joined = accept(&h, &invitation).await;
    assert_eq!(joined["email"], "owner@example.com");
    assert_eq!(joined["role"], "owner");
    // Single use.
    let (st, _, _) = req(
        &h,
        "POST",
        "/v1/invitations/accept",
        None,
        None,
        Some(json!({"token": invitation, "password": PASSWORD})),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // A wrong password and an unknown email get the same answer.
    let (st1, v1) = login(
        &h,
        "owner@example.com",
        json!({"password": "wrong wrong wrong"}),
    )
    .await;
    let (st2, v2) = login(&h, "nobody@example.com", json!({})).await;
    assert_eq!(
        (st1, st2),
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    assert_eq!(v1["error"]["code"], "INVALID_CREDENTIALS");
    assert_eq!(v1["error"]["code"], v2["error"]["code"]);
    assert_eq!(v1["error"]["message"], v2["error"]["message"]);

    let (st, tokens) = login(&h, "OWNER@example.com", json!({})).await;
    assert_eq!(st, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert_eq!(tokens["refresh_expires_in"], 7 * 86_400);
    let owner = tokens["access_token"].as_str().unwrap().to_owned();
    // RFC 9068: `typ at+jwt`, verified with the session JWKS, which is not the token
    // JWKS.
    let header: Value = serde_json::from_slice(
        &bonafide_core::b64::decode(owner.split('.').next().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(header["typ"], "at+jwt");
    let (_, jwks, _) = req(
        &h,
        "GET",
        "/.well-known/session-jwks.json",
        None,
        None,
        None,
    )
    .await;
    let (_, token_jwks, _) = req(&h, "GET", "/.well-known/jwks.json", None, None, None).await;
    let kid = header["kid"].as_str().unwrap();
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == kid)
    );
    assert!(
        !token_jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == kid)
    );
    let mut keys = KeySet::new();
    let jwk: bonafide_core::keys::Jwk = serde_json::from_value(jwks["keys"][0].clone()).unwrap();
    keys.insert(VerifyingKey::from_jwk(&jwk).unwrap());
    let aud = format!("{}/v1", h.base);
    let claims = bonafide_core::access_token::verify(
        &owner,
        &keys,
        bonafide_core::access_token::Expect {
            issuer: &h.base,
            audience: &aud,
            now_s: crate::common::now_s(),
            leeway_s: 5,
        },
    )
    .unwrap();
    assert_eq!(claims.sub, joined["person_id"].as_str().unwrap());
    assert_eq!(claims.exp - claims.iat, 900);
    assert_eq!(claims.client_id, "bonafide");
    assert_eq!(claims.sid, tokens["session_id"].as_str().unwrap());

    let (st, me, _) = req(&h, "GET", "/v1/auth/me", Some(&owner), None, None).await;
    assert_eq!(st, StatusCode::OK, "{me}");
    assert_eq!(me["memberships"][0]["role"], "owner");
    assert_eq!(me["memberships"][0]["name"], "Acme");

    // The organisation's issuer, made by its owner.
    let (st, iss, _) = req(
        &h,
        "POST",
        &format!("/v1/orgs/{org}/issuers"),
        Some(&owner),
        None,
        Some(json!({"name": "acme.example"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{iss}");
    let issuer = iss["issuer_id"].as_str().unwrap().to_owned();
    assert!(iss["api_key"].as_str().unwrap().starts_with("bfk_iss_"));

    let admin = member(&h, &org, &owner, "admin@example.com", "admin").await;
    let memb = member(&h, &org, &admin, "member@example.com", "member").await;
    let viewer = member(&h, &org, &admin, "viewer@example.com", "viewer").await;
    let (other_org, other_inv) = create_org(&h, "Other", "stranger@example.com").await;
    accept(&h, &other_inv).await;
    let stranger = access(&h, "stranger@example.com").await;

    let register = json!({"name": "bot", "scopes": ["read:x"]});
    // (who, method, path, issuer header, body, expected status)
    let cases: Vec<Case> = vec![
        (
            "viewer",
            "GET",
            "/v1/agents".into(),
            Some(&issuer),
            None,
            StatusCode::OK,
        ),
        (
            "viewer",
            "POST",
            "/v1/agents/register".into(),
            Some(&issuer),
            Some(register.clone()),
            StatusCode::FORBIDDEN,
        ),
        (
            "member",
            "POST",
            "/v1/agents/register".into(),
            Some(&issuer),
            Some(register.clone()),
            StatusCode::CREATED,
        ),
        (
            "admin",
            "POST",
            "/v1/agents/register".into(),
            Some(&issuer),
            Some(register.clone()),
            StatusCode::CREATED,
        ),
        (
            "stranger",
            "GET",
            "/v1/agents".into(),
            Some(&issuer),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            "member",
            "GET",
            "/v1/agents".into(),
            None,
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "viewer",
            "GET",
            format!("/v1/orgs/{org}"),
            None,
            None,
            StatusCode::OK,
        ),
        (
            "viewer",
            "GET",
            format!("/v1/orgs/{org}/members"),
            None,
            None,
            StatusCode::OK,
        ),
        (
            "stranger",
            "GET",
            format!("/v1/orgs/{org}"),
            None,
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            "viewer",
            "POST",
            format!("/v1/orgs/{org}/invitations"),
            None,
            Some(json!({"email": "x@example.com", "role": "viewer"})),
            StatusCode::FORBIDDEN,
        ),
        (
            "member",
            "POST",
            format!("/v1/orgs/{org}/invitations"),
            None,
            Some(json!({"email": "x@example.com", "role": "viewer"})),
            StatusCode::FORBIDDEN,
        ),
        (
            "admin",
            "POST",
            format!("/v1/orgs/{org}/invitations"),
            None,
            Some(json!({"email": "x@example.com", "role": "owner"})),
            StatusCode::FORBIDDEN,
        ),
        (
            "owner",
            "POST",
            format!("/v1/orgs/{org}/invitations"),
            None,
            Some(json!({"email": "y@example.com", "role": "owner"})),
            StatusCode::CREATED,
        ),
        (
            "member",
            "POST",
            format!("/v1/orgs/{org}/issuers"),
            None,
            Some(json!({"name": "m.example"})),
            StatusCode::FORBIDDEN,
        ),
        (
            "admin",
            "POST",
            format!("/v1/orgs/{org}/receivers"),
            None,
            Some(json!({"name": "api.acme.example"})),
            StatusCode::CREATED,
        ),
        (
            "member",
            "GET",
            format!("/v1/orgs/{org}/security-events"),
            None,
            None,
            StatusCode::FORBIDDEN,
        ),
        (
            "admin",
            "GET",
            format!("/v1/orgs/{org}/security-events"),
            None,
            None,
            StatusCode::OK,
        ),
        (
            "admin",
            "PATCH",
            format!("/v1/orgs/{org}"),
            None,
            Some(json!({"require_2fa": false})),
            StatusCode::FORBIDDEN,
        ),
        (
            "owner",
            "PATCH",
            format!("/v1/orgs/{org}"),
            None,
            Some(json!({"require_2fa": false})),
            StatusCode::OK,
        ),
        (
            "owner",
            "GET",
            format!("/v1/orgs/{other_org}"),
            None,
            None,
            StatusCode::NOT_FOUND,
        ),
        // A person is never the registry's admin, and API-key-only endpoints say so.
        (
            "owner",
            "POST",
            "/v1/issuers".into(),
            None,
            Some(json!({"name": "z.example"})),
            StatusCode::FORBIDDEN,
        ),
        (
            "owner",
            "POST",
            "/v1/verify".into(),
            None,
            Some(json!({"token": "x"})),
            StatusCode::FORBIDDEN,
        ),
    ];
    for (who, method, path, iss, body, want) in cases {
        let token = match who {
            "owner" => &owner,
            "admin" => &admin,
            "member" => &memb,
            "viewer" => &viewer,
            _ => &stranger,
        };
        let (st, v, _) = req(&h, method, &path, Some(token), iss, body).await;
        assert_eq!(st, want, "{who} {method} {path}: {v}");
    }
    // Role changes: an admin cannot touch an owner; the last owner stays one.
    let person_of = |me: &Value| me["person_id"].as_str().unwrap().to_owned();
    let (_, owner_me, _) = req(&h, "GET", "/v1/auth/me", Some(&owner), None, None).await;
    let (_, viewer_me, _) = req(&h, "GET", "/v1/auth/me", Some(&viewer), None, None).await;
    let (st, _, _) = req(
        &h,
        "PUT",
        &format!("/v1/orgs/{org}/members/{}", person_of(&owner_me)),
        Some(&admin),
        None,
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v, _) = req(
        &h,
        "PUT",
        &format!("/v1/orgs/{org}/members/{}", person_of(&owner_me)),
        Some(&owner),
        None,
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let (st, v, _) = req(
        &h,
        "PUT",
        &format!("/v1/orgs/{org}/members/{}", person_of(&viewer_me)),
        Some(&admin),
        None,
        Some(json!({"role": "member"})),
    )
    .await;
    assert_eq!(
        (st, v["role"].as_str()),
        (StatusCode::OK, Some("member")),
        "{v}"
    );
    // Removed from their only organisation: their sessions end.
    let (st, _, _) = req(
        &h,
        "DELETE",
        &format!("/v1/orgs/{org}/members/{}", person_of(&viewer_me)),
        Some(&admin),
        None,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _, _) = req(&h, "GET", "/v1/auth/me", Some(&viewer), None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Existing rows: an issuer made by the admin key has no organisation until
    // adopted, then the organisation's people act for it.
    let legacy_key = h.issuer("legacy.example").await;
    let (_, legacy, _) = req(&h, "GET", "/v1/issuer", Some(&legacy_key), None, None).await;
    let legacy_id = legacy["issuer_id"].as_str().unwrap();
    let (st, _, _) = req(&h, "GET", "/v1/agents", Some(&memb), Some(legacy_id), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, v, _) = req(
        &h,
        "POST",
        &format!("/v1/orgs/{org}/adopt"),
        Some(&h.admin),
        None,
        Some(json!({"issuer_id": legacy_id})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(
        v["issuers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i == legacy_id)
    );
    let (st, _, _) = req(&h, "GET", "/v1/agents", Some(&memb), Some(legacy_id), None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _) = req(&h, "GET", "/v1/issuer", Some(&legacy_key), None, None).await;
    assert_eq!(st, StatusCode::OK, "its own key still works");
    let (st, _, _) = req(
        &h,
        "POST",
        &format!("/v1/orgs/{other_org}/adopt"),
        Some(&h.admin),
        None,
        Some(json!({"issuer_id": legacy_id})),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT);

    // What a person did as the issuer names them beside it.
    let (_, memb_me, _) = req(&h, "GET", "/v1/auth/me", Some(&memb), None, None).await;
    assert!(
        audit_entries(&h)
            .await
            .iter()
            .any(|e| e["type"] == "agent.registered"
                && e["issuer"] == issuer.as_str()
                && e["person"] == memb_me["person_id"]),
        "no agent.registered entry naming the member"
    );
    let types = audit_types(&h).await;
    for t in [
        "org.created",
        "person.invited",
        "person.joined",
        "session.created",
        "member.role_changed",
        "member.removed",
        "issuer.created",
        "receiver.created",
        "org.updated",
    ] {
        assert!(types.iter().any(|x| x == t), "no {t} entry in {types:?}");
    }
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_its_session() {
    let h = start().await;
    let (org, inv) = create_org(&h, "Rot", "r@example.com").await;
    accept(&h, &inv).await;
    let (_, first) = login(&h, "r@example.com", json!({"client_id": "cli"})).await;
    let r1 = first["refresh_token"].as_str().unwrap().to_owned();
    assert!(r1.starts_with("bfr_"));
    let (st, second, _) = req(
        &h,
        "POST",
        "/v1/auth/refresh",
        None,
        None,
        Some(json!({"refresh_token": r1})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{second}");
    let r2 = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2);
    assert_eq!(second["session_id"], first["session_id"]);
    let a2 = second["access_token"].as_str().unwrap().to_owned();
    let (st, _, _) = req(&h, "GET", "/v1/auth/me", Some(&a2), None, None).await;
    assert_eq!(st, StatusCode::OK);
    // r1 again: reuse. The whole family ends: r2 and the access tokens too.
    let (st, v, _) = req(
        &h,
        "POST",
        "/v1/auth/refresh",
        None,
        None,
        Some(json!({"refresh_token": r1})),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("used before"),
        "{v}"
    );
    let (st, _, _) = req(
        &h,
        "POST",
        "/v1/auth/refresh",
        None,
        None,
        Some(json!({"refresh_token": r2})),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    for t in [&a2, first["access_token"].as_str().unwrap()] {
        let (st, _, _) = req(&h, "GET", "/v1/auth/me", Some(t), None, None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    let (st, v, _) = req(
        &h,
        "POST",
        "/v1/auth/refresh",
        None,
        None,
        Some(json!({"refresh_token": "bfr_nothing"})),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    // Recorded: a security event the owner reads, and a session.revoked entry.
    let owner = access(&h, "r@example.com").await;
    let (st, ev, _) = req(
        &h,
        "GET",
        &format!("/v1/orgs/{org}/security-events"),
        Some(&owner),
        None,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{ev}");
    assert!(
        ev["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "refresh_reuse"),
        "{ev}"
    );
    let types = audit_types(&h).await;
    assert!(types.iter().any(|t| t == "session.refreshed"));
    assert!(types.iter().any(|t| t == "session.revoked"));
    // The reuse never reached the permanent log as a failure of its own.
    assert!(!types.iter().any(|t| t.contains("fail")));
}

#[tokio::test]
async fn sessions_logout_and_password_change() {
    let h = start().await;
    let (_, inv) = create_org(&h, "Sess", "s@example.com").await;
    accept(&h, &inv).await;
    let a = access(&h, "s@example.com").await;
    let b = access(&h, "s@example.com").await;
    let c = access(&h, "s@example.com").await;
    let (st, list, _) = req(&h, "GET", "/v1/auth/sessions", Some(&a), None, None).await;
    assert_eq!(st, StatusCode::OK, "{list}");
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 3);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    // Revoke b's session from a: b's access token stops at once.
    let (_, bme, _) = req(&h, "GET", "/v1/auth/me", Some(&b), None, None).await;
    let bsid = bme["session_id"].as_str().unwrap();
    let (st, _, _) = req(
        &h,
        "DELETE",
        &format!("/v1/auth/sessions/{bsid}"),
        Some(&a),
        None,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _, _) = req(&h, "GET", "/v1/auth/me", Some(&b), None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _, _) = req(
        &h,
        "DELETE",
        &format!("/v1/auth/sessions/{bsid}"),
        Some(&a),
        None,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Password change: the current one must be right; the new one must be long.
    let (st, v, _) = req(&h, "POST", "/v1/auth/password", Some(&a), None, Some(json!({"current_password": "not it at all!!", "new_password": "a brand new passphrase"}))).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("INVALID_CREDENTIALS"))
    );
    let (st, _, _) = req(
        &h,
        "POST",
        "/v1/auth/password",
        Some(&a),
        None,
        Some(json!({"current_password": PASSWORD, "new_password": "tiny"})),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, v, _) = req(
        &h,
        "POST",
        "/v1/auth/password",
        Some(&a),
        None,
        Some(json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"})),
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    // c's session ended, a's did not; the old password no longer works.
    let (st, _, _) = req(&h, "GET", "/v1/auth/me", Some(&c), None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _, _) = req(&h, "GET", "/v1/auth/me", Some(&a), None, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = login(&h, "s@example.com", json!({})).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = login(
        &h,
        "s@example.com",
        json!({"password": "a brand new passphrase"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    // Logout ends the session of the token.
    let (st, _, _) = req(&h, "POST", "/v1/auth/logout", Some(&a), None, None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _, _) = req(&h, "GET", "/v1/auth/me", Some(&a), None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(
        audit_types(&h)
            .await
            .iter()
            .any(|t| t == "password.changed")
    );
}

/// The code an authenticator app shows at `time_s` for the base32 `secret`.
fn app_code(secret: &str, time_s: i64) -> String {
    let secret = totp::base32_decode(secret).unwrap();
    totp::format_code(totp::totp_at(&secret, time_s, 30, 6, TotpAlg::Sha1), 6)
}

#[tokio::test]
async fn totp_enrolment_login_with_a_real_code_and_recovery_codes() {
    let h = start().await;
    let (org, inv) = create_org(&h, "Totp", "t@example.com").await;
    accept(&h, &inv).await;
    let a = access(&h, "t@example.com").await;
    let (st, enrol, _) = req(&h, "POST", "/v1/auth/totp/enroll", Some(&a), None, None).await;
    assert_eq!(st, StatusCode::OK, "{enrol}");
    let secret = enrol["secret"].as_str().unwrap().to_owned();
    let uri = enrol["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    assert!(
        uri.contains("t%40example.com") && uri.contains("digits=6") && uri.contains("period=30"),
        "{uri}"
    );
    // A wrong code does not confirm.
    let (st, _, _) = req(
        &h,
        "POST",
        "/v1/auth/totp/confirm",
        Some(&a),
        None,
        Some(json!({"code": "000000"})),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let now = crate::common::now_s();
    let (st, codes, _) = req(
        &h,
        "POST",
        "/v1/auth/totp/confirm",
        Some(&a),
        None,
        Some(json!({"code": app_code(&secret, now)})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{codes}");
    let codes: Vec<String> = codes["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    // Enrolled: a second enrolment is refused.
    let (st, _, _) = req(&h, "POST", "/v1/auth/totp/enroll", Some(&a), None, None).await;
    assert_eq!(st, StatusCode::CONFLICT);
    // Login now needs the second factor.
    let (st, v) = login(&h, "t@example.com", json!({})).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("TWO_FACTOR_REQUIRED"))
    );
    let (st, v) = login(&h, "t@example.com", json!({"totp_code": "123456"})).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("INVALID_CREDENTIALS"))
    );
    // The code used to confirm is spent; the app's next one (within one step of
    // drift) logs in, once.
    let next = app_code(&secret, now + 30);
    let (st, v) = login(&h, "t@example.com", json!({"totp_code": next})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["two_factor"], true);
    let two_factor = v["access_token"].as_str().unwrap().to_owned();
    let (st, _) = login(&h, "t@example.com", json!({"totp_code": next})).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "a TOTP code works once");
    // A recovery code works once, typed in any case.
    let (st, v) = login(
        &h,
        "t@example.com",
        json!({"recovery_code": codes[0].to_uppercase()}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _) = login(&h, "t@example.com", json!({"recovery_code": codes[0]})).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (_, me, _) = req(&h, "GET", "/v1/auth/me", Some(&two_factor), None, None).await;
    assert_eq!(me["two_factor_enabled"], true);
    assert_eq!(me["recovery_codes_left"], 9);
    // The owner requires 2FA of everyone (from a two-factor session only).
    let (st, _, _) = req(
        &h,
        "PATCH",
        &format!("/v1/orgs/{org}"),
        Some(&a),
        None,
        Some(json!({"require_2fa": true})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v, _) = req(
        &h,
        "PATCH",
        &format!("/v1/orgs/{org}"),
        Some(&two_factor),
        None,
        Some(json!({"require_2fa": true})),
    )
    .await;
    assert_eq!(
        (st, v["require_2fa"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{v}"
    );
    // A member without 2FA may not act in it until they enrol.
    let (st, inv, _) = req(
        &h,
        "POST",
        &format!("/v1/orgs/{org}/invitations"),
        Some(&two_factor),
        None,
        Some(json!({"email": "m@example.com", "role": "member"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{inv}");
    accept(&h, inv["token"].as_str().unwrap()).await;
    let m = access(&h, "m@example.com").await;
    let (st, v, _) = req(&h, "GET", &format!("/v1/orgs/{org}"), Some(&m), None, None).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("TWO_FACTOR_REQUIRED")),
        "{v}"
    );
    // The secret never reaches the log; enabling it is an entry.
    let types = audit_types(&h).await;
    assert!(types.iter().any(|t| t == "totp.enabled"));
    assert!(
        types.iter().any(|t| t == "totp.changed"),
        "recovery code use"
    );
    // Disable: password and a code.
    let (st, _, _) = req(
        &h,
        "POST",
        "/v1/auth/totp/disable",
        Some(&two_factor),
        None,
        Some(json!({"password": PASSWORD})),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, v, _) = req(
        &h,
        "POST",
        "/v1/auth/totp/disable",
        Some(&two_factor),
        None,
        Some(json!({"password": PASSWORD, "recovery_code": codes[1]})),
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    let (st, _) = login(&h, "t@example.com", json!({})).await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn failed_logins_back_off_per_account_and_per_address_alike() {
    let clock = Arc::new(ManualClock::now());
    let h = start_with_config(Config {
        clock: clock.clone(),
        ..config()
    })
    .await;
    let (org, inv) = create_org(&h, "Brute", "b@example.com").await;
    accept(&h, &inv).await;
    // Five failures for a real account, and for an email that is none: then both
    // are held back alike (429 with Retry-After), the right password too.
    for email in ["b@example.com", "ghost@example.com"] {
        for _ in 0..5 {
            let (st, v) = login(&h, email, json!({"password": "guess guess guess"})).await;
            assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
        }
    }
    for email in ["b@example.com", "ghost@example.com"] {
        let (st, v, headers) = req(
            &h,
            "POST",
            "/v1/auth/login",
            None,
            None,
            Some(json!({"email": email, "password": PASSWORD})),
        )
        .await;
        assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
        assert_eq!(v["error"]["code"], "LOGIN_THROTTLED");
        assert_eq!(headers["retry-after"], "1");
    }
    clock.advance(Duration::from_secs(2));
    let (st, v) = login(&h, "b@example.com", json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // After a success the account starts afresh; the address keeps its count: ten
    // failures so far, ten more from new emails reach its limit of twenty.
    for i in 0..10 {
        let (st, _) = login(
            &h,
            &format!("n{i}@example.com"),
            json!({"password": "guess guess guess"}),
        )
        .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    let (st, v) = login(&h, "fresh@example.com", json!({})).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    // The owner sees their own account's failures, never the ghost's; the registry
    // admin sees both.
    let owner_session = {
        clock.advance(Duration::from_secs(3600));
        access(&h, "b@example.com").await
    };
    let (_, ev, _) = req(
        &h,
        "GET",
        &format!("/v1/orgs/{org}/security-events"),
        Some(&owner_session),
        None,
        None,
    )
    .await;
    let kinds: Vec<&str> = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "login_failed").count(),
        5,
        "{ev}"
    );
    assert!(
        ev["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["person_id"].is_string())
    );
    let (st, all) = h
        .call(
            "GET",
            "/v1/admin/security-events?limit=1000",
            Some(&h.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{all}");
    let all = all["events"].as_array().unwrap();
    assert!(all.iter().filter(|e| e["kind"] == "login_failed").count() >= 20);
    // Attempts refused while backing off are not recorded (anyone could grow the
    // table at request rate); the failures that started it are.
    assert!(!all.iter().any(|e| e["kind"] == "login_throttled"));
    // None of it is in the permanent log.
    assert!(!audit_types(&h).await.iter().any(|t| t.contains("login")));
    // Retention: after it, they are purged (the hourly task's call, made here).
    let before = bonafide_server::time::now_ms() + 3_600_000 * 24 * 31;
    assert!(h.state.store.purge_security_events(before).await.unwrap() >= 20);
}

#[tokio::test]
async fn any_api_key_is_revoked_by_its_hash_from_the_next_request() {
    let h = start().await;
    let issuer_key = h.issuer("leaky.example").await;
    let (st, _) = h.call("GET", "/v1/issuer", Some(&issuer_key), None).await;
    assert_eq!(st, StatusCode::OK);
    let hash = bonafide_core::apikey::ApiKey::parse(&issuer_key)
        .unwrap()
        .hash();
    let hex = bonafide_core::hex(&hash.0);
    // Only the admin key may; a malformed hash is a 422.
    let (st, _) = h
        .call(
            "POST",
            "/v1/admin/api-keys/revoke",
            Some(&issuer_key),
            Some(json!({"key_sha256": hex})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = h
        .call(
            "POST",
            "/v1/admin/api-keys/revoke",
            Some(&h.admin),
            Some(json!({"key_sha256": "XYZ"})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, v) = h
        .call(
            "POST",
            "/v1/admin/api-keys/revoke",
            Some(&h.admin),
            Some(json!({"key_sha256": hex, "reason": "found in a public repo"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["kind"], "issuer");
    assert_eq!(v["id"], hash.key_id());
    // The very next request with it is refused.
    let (st, _) = h.call("GET", "/v1/issuer", Some(&issuer_key), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // Twice, or a key of no registry: 404; the only admin key: 409.
    let (st, _) = h
        .call(
            "POST",
            "/v1/admin/api-keys/revoke",
            Some(&h.admin),
            Some(json!({"key_sha256": hex})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let admin_hash = bonafide_core::apikey::ApiKey::parse(&h.admin)
        .unwrap()
        .hash();
    let (st, v) = h
        .call(
            "POST",
            "/v1/admin/api-keys/revoke",
            Some(&h.admin),
            Some(json!({"key_sha256": bonafide_core::hex(&admin_hash.0)})),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("LAST_ADMIN_KEY"))
    );
    assert!(audit_types(&h).await.iter().any(|t| t == "key.revoked"));
}

#[tokio::test]
async fn a_session_refreshed_every_week_still_ends_thirty_days_after_login() {
    let clock = Arc::new(ManualClock::now());
    let h = start_with_config(Config {
        clock: clock.clone(),
        ..config()
    })
    .await;
    let (_, inv) = create_org(&h, "Long", "l@example.com").await;
    accept(&h, &inv).await;
    let (_, mut tokens) = login(&h, "l@example.com", json!({})).await;
    // An access token lives 15 minutes.
    clock.advance(Duration::from_secs(15 * 60));
    let (st, _, _) = req(
        &h,
        "GET",
        "/v1/auth/me",
        tokens["access_token"].as_str(),
        None,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    for week in 1..=4 {
        clock.advance(Duration::from_secs(6 * 86_400));
        let (st, v, _) = req(
            &h,
            "POST",
            "/v1/auth/refresh",
            None,
            None,
            Some(json!({"refresh_token": tokens["refresh_token"]})),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "week {week}: {v}");
        tokens = v;
    }
    // Day 24 + 15 min: the last refresh token ends with the session, at day 30.
    assert!(tokens["refresh_expires_in"].as_i64().unwrap() <= 6 * 86_400);
    clock.advance(Duration::from_secs(6 * 86_400));
    let (st, v, _) = req(
        &h,
        "POST",
        "/v1/auth/refresh",
        None,
        None,
        Some(json!({"refresh_token": tokens["refresh_token"]})),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
}

#[tokio::test]
async fn people_manage_their_organisations_keys_and_a_removed_members_keys_die() {
    let h = start().await;
    let (org, invitation) = create_org(&h, "Keyco", "owner@keyco.example").await;
    accept(&h, &invitation).await;
    let owner = access(&h, "owner@keyco.example").await;
    let (st, iss, _) = req(
        &h,
        "POST",
        &format!("/v1/orgs/{org}/issuers"),
        Some(&owner),
        None,
        Some(json!({"name": "keyco.example"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{iss}");
    let issuer = iss["issuer_id"].as_str().unwrap().to_owned();
    let admin = member(&h, &org, &owner, "admin@keyco.example", "admin").await;
    let memb = member(&h, &org, &owner, "member@keyco.example", "member").await;
    let (other_org, other_inv) = create_org(&h, "Elsewhere", "x@elsewhere.example").await;
    accept(&h, &other_inv).await;
    let stranger = access(&h, "x@elsewhere.example").await;
    let _ = other_org;

    // An org admin makes a key for the org's issuer; a member may not (403); someone
    // of another organisation does not see it (404); a person names the owner.
    let body = json!({"name": "by the admin", "owner": issuer});
    let (st, made, _) = req(
        &h,
        "POST",
        "/v1/api-keys",
        Some(&admin),
        None,
        Some(body.clone()),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{made}");
    let key = made["secret"].as_str().unwrap().to_owned();
    let key_id = made["key"]["id"].as_str().unwrap().to_owned();
    assert!(
        made["key"]["created_by"]
            .as_str()
            .unwrap()
            .starts_with("usr_")
    );
    let (st, _, _) = req(
        &h,
        "POST",
        "/v1/api-keys",
        Some(&memb),
        None,
        Some(body.clone()),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _, _) = req(
        &h,
        "POST",
        "/v1/api-keys",
        Some(&stranger),
        None,
        Some(body),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _, _) = req(&h, "GET", "/v1/api-keys", Some(&admin), None, None).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, _, _) = req(
        &h,
        "GET",
        "/v1/api-keys?owner=admin",
        Some(&owner),
        None,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, list, _) = req(
        &h,
        "GET",
        &format!("/v1/api-keys?owner={issuer}"),
        Some(&owner),
        None,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{list}");
    assert_eq!(list["keys"].as_array().unwrap().len(), 2);
    let (st, _, _) = req(&h, "GET", "/v1/issuer", Some(&key), None, None).await;
    assert_eq!(st, StatusCode::OK);
    // The owner's own key stays when the admin goes; the admin's dies, audited.
    let (_, owner_key, _) = req(
        &h,
        "POST",
        "/v1/api-keys",
        Some(&owner),
        None,
        Some(json!({"name": "by the owner", "owner": issuer})),
    )
    .await;
    let owner_key = owner_key["secret"].as_str().unwrap().to_owned();
    let (_, admin_me, _) = req(&h, "GET", "/v1/auth/me", Some(&admin), None, None).await;
    let (st, v, _) = req(
        &h,
        "DELETE",
        &format!(
            "/v1/orgs/{org}/members/{}",
            admin_me["person_id"].as_str().unwrap()
        ),
        Some(&owner),
        None,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    let (st, _, _) = req(&h, "GET", "/v1/issuer", Some(&key), None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _, _) = req(&h, "GET", "/v1/issuer", Some(&owner_key), None, None).await;
    assert_eq!(st, StatusCode::OK);
    let revoked: Vec<Value> = audit_entries(&h)
        .await
        .into_iter()
        .filter(|e| e["type"] == "key.revoked")
        .collect();
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["kid"], key_id.as_str());
}

/// `created_by` names the person at the root of a key's chain: the first key of an
/// identity a person creates is theirs, and so is a key made through a key they made.
/// Removing them from the organisation revokes every one of those keys (each
/// audited), so none survives its maker's departure.
#[tokio::test]
async fn a_removed_members_whole_key_chain_dies_with_the_first_keys_they_made() {
    let h = start().await;
    let (org, invitation) = create_org(&h, "Chainco", "owner@chainco.example").await;
    accept(&h, &invitation).await;
    let owner = access(&h, "owner@chainco.example").await;
    let admin = member(&h, &org, &owner, "admin@chainco.example", "admin").await;
    let (_, admin_me, _) = req(&h, "GET", "/v1/auth/me", Some(&admin), None, None).await;
    let admin_id = admin_me["person_id"].as_str().unwrap().to_owned();
    // The admin creates an issuer and a receiver: their first keys are the admin's.
    let (st, iss, _) = req(
        &h,
        "POST",
        &format!("/v1/orgs/{org}/issuers"),
        Some(&admin),
        None,
        Some(json!({"name": "chainco.example"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{iss}");
    let issuer = iss["issuer_id"].as_str().unwrap().to_owned();
    let first = iss["api_key"].as_str().unwrap().to_owned();
    let (st, rcv, _) = req(
        &h,
        "POST",
        &format!("/v1/orgs/{org}/receivers"),
        Some(&admin),
        None,
        Some(json!({"name": "api.chainco.example"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{rcv}");
    let receiver = rcv["receiver_id"].as_str().unwrap().to_owned();
    let rcv_key = rcv["api_key"].as_str().unwrap().to_owned();
    for owned in [&issuer, &receiver] {
        let (st, list, _) = req(
            &h,
            "GET",
            &format!("/v1/api-keys?owner={owned}"),
            Some(&owner),
            None,
            None,
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{list}");
        assert_eq!(list["keys"][0]["created_by"], admin_id.as_str(), "{list}");
    }
    // K1 by the admin, K2 by K1, K3 by K2: all the admin's.
    let (st, k1, _) = req(
        &h,
        "POST",
        "/v1/api-keys",
        Some(&admin),
        None,
        Some(json!({"name": "k1", "owner": issuer})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{k1}");
    let k1 = k1["secret"].as_str().unwrap().to_owned();
    let (st, k2) = h
        .call(
            "POST",
            "/v1/api-keys",
            Some(&k1),
            Some(json!({"name": "k2"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{k2}");
    assert_eq!(k2["key"]["created_by"], admin_id.as_str(), "{k2}");
    let k2 = k2["secret"].as_str().unwrap().to_owned();
    let (st, k3) = h
        .call(
            "POST",
            "/v1/api-keys",
            Some(&k2),
            Some(json!({"name": "k3"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{k3}");
    let k3_id = k3["key"]["id"].as_str().unwrap().to_owned();
    let k3 = k3["secret"].as_str().unwrap().to_owned();
    // Rotating through the chain keeps the root too.
    let (st, rotated) = h
        .call(
            "POST",
            &format!("/v1/api-keys/{k3_id}/rotate"),
            Some(&k2),
            Some(json!({"grace_seconds": 3600})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{rotated}");
    assert_eq!(rotated["key"]["created_by"], admin_id.as_str());
    let k3b = rotated["secret"].as_str().unwrap().to_owned();
    // The owner's own key is not the admin's.
    let (_, owner_key, _) = req(
        &h,
        "POST",
        "/v1/api-keys",
        Some(&owner),
        None,
        Some(json!({"name": "by the owner", "owner": issuer})),
    )
    .await;
    let owner_key = owner_key["secret"].as_str().unwrap().to_owned();
    let keys = [&first, &rcv_key, &k1, &k2, &k3, &k3b];
    for k in keys {
        let (st, v) = h.call("GET", "/v1/api-keys", Some(k), None).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let before = audit_entries(&h)
        .await
        .iter()
        .filter(|e| e["type"] == "key.revoked")
        .count();
    let (st, v, _) = req(
        &h,
        "DELETE",
        &format!("/v1/orgs/{org}/members/{admin_id}"),
        Some(&owner),
        None,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{v}");
    // Every key of the chain is refused on the next request.
    for k in keys {
        let (st, v) = h.call("GET", "/v1/api-keys", Some(k), None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    }
    let (st, _) = h.call("GET", "/v1/issuer", Some(&owner_key), None).await;
    assert_eq!(st, StatusCode::OK);
    let after = audit_entries(&h)
        .await
        .iter()
        .filter(|e| e["type"] == "key.revoked")
        .count();
    assert_eq!(after - before, keys.len());
}

/// People read the audit log as their organisation's keys do: a viewer (and up) sees
/// in full the entries of the issuers their organisation owns, leaf hashes only for
/// the rest; someone of another organisation sees none of them in full.
#[tokio::test]
async fn org_people_read_their_issuers_audit_entries_and_no_others() {
    let h = start().await;
    let (org, invitation) = create_org(&h, "Auditco", "owner@auditco.example").await;
    accept(&h, &invitation).await;
    let owner = access(&h, "owner@auditco.example").await;
    let viewer = member(&h, &org, &owner, "viewer@auditco.example", "viewer").await;
    let (st, iss, _) = req(
        &h,
        "POST",
        &format!("/v1/orgs/{org}/issuers"),
        Some(&owner),
        None,
        Some(json!({"name": "auditco.example"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{iss}");
    let ours = iss["issuer_id"].as_str().unwrap().to_owned();
    let our_key = iss["api_key"].as_str().unwrap().to_owned();
    h.register(&our_key, json!({"name": "our-bot", "scopes": ["read:x"]}))
        .await;
    let theirs_key = h.issuer("elsewhere-audit.example").await;
    h.register(
        &theirs_key,
        json!({"name": "their-bot", "scopes": ["read:x"]}),
    )
    .await;
    let (other_org, other_inv) = create_org(&h, "Otherco", "x@otherco.example").await;
    accept(&h, &other_inv).await;
    let _ = other_org;
    let stranger = access(&h, "x@otherco.example").await;
    let size = h.state.store.audit_size().await.unwrap();
    let read = |token: String| {
        let h = &h;
        async move {
            let (st, v, _) = req(
                h,
                "GET",
                &format!("/v1/audit/entries?start=0&end={size}"),
                Some(&token),
                None,
                None,
            )
            .await;
            assert_eq!(st, StatusCode::OK, "{v}");
            let entries = v["entries"].as_array().unwrap().clone();
            assert_eq!(entries.len() as u64, size);
            entries
                .iter()
                .filter_map(|e| e["entry"].as_str())
                .map(|e| serde_json::from_str::<Value>(e).unwrap())
                .collect::<Vec<Value>>()
        }
    };
    let seen = read(viewer).await;
    assert!(
        seen.iter().any(|e| e["type"] == "agent.registered"),
        "{seen:?}"
    );
    assert!(
        seen.iter().all(|e| e["issuer"] == ours.as_str()),
        "{seen:?}"
    );
    assert_eq!(read(owner).await.len(), seen.len());
    assert!(read(stranger).await.is_empty());
}
