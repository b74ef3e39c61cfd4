//! AgentOAuth's hosted verifier under `/compat/agentoauth` (issue 21): consent tokens
//! made the way AgentOAuth's SDK's `issueConsent` makes them
//! (`interop/node/agentoauth_issue_consent.mjs`: node `jose`, EdDSA, the SDK's claims,
//! no `iss`, no `iat`), decided through the native `POST /v1/verify` and the
//! hosted-verifier-shaped endpoints alike: the same decisions, budget, audit entries
//! and receipts; revocation by the token's own `jti`; every route's refusals.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use bonafide_core::ids::IssuerId;
use bonafide_core::keys::{Jwks, SigningKey};
use common::{CreatedIssuer, Harness, start};
use reqwest::StatusCode;
use serde_json::{Value, json};

const BASE: &str = "/compat/agentoauth";

fn node_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/node");
    assert!(
        dir.join("node_modules/jose").exists(),
        "the `jose` npm package is missing: run `bash scripts/interop-setup.sh` first"
    );
    dir
}

fn node(script: &str, args: &[&str]) -> String {
    let out = Command::new("node")
        .arg(node_dir().join(script))
        .args(args)
        .output()
        .expect("node must be installed (see scripts/interop-setup.sh)");
    assert!(
        out.status.success(),
        "{script} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// An Ed25519 key made by `jose`, its private JWK in a file.
struct IssuerKey {
    dir: tempfile::TempDir,
    private_file: PathBuf,
    public: Value,
}

impl IssuerKey {
    fn new() -> Self {
        let pair: Value = serde_json::from_str(&node("act_token.mjs", &["keygen"])).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let private_file = dir.path().join("private.jwk");
        std::fs::write(&private_file, pair["private"].to_string()).unwrap();
        IssuerKey {
            dir,
            private_file,
            public: pair["public"].clone(),
        }
    }

    /// The same key in core, only to sign the registration's key proof: the JWK's
    /// `d` is the Ed25519 seed, in a PKCS#8 v1 structure (RFC 8410 §7).
    fn core_key(&self) -> SigningKey {
        let private: Value =
            serde_json::from_str(&std::fs::read_to_string(&self.private_file).unwrap()).unwrap();
        let seed = bonafide_core::b64::decode(private["d"].as_str().unwrap()).unwrap();
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&seed);
        SigningKey::from_pkcs8_der(bonafide_core::keys::Algorithm::EdDSA, &der).unwrap()
    }
}

/// What `issueConsent` returned: the token, its `jti` and `policy_hash`.
struct Consent {
    token: String,
    jti: String,
    policy_hash: String,
}

/// `issueConsent({user, agent, scope, policy, privateKey, keyId, expiresIn})`.
fn issue_consent(key: &IssuerKey, kid: &str, agent: &str, scope: &str, policy: &Value) -> Consent {
    issue_consent_with(key, kid, agent, scope, policy, &[])
}

/// [`issue_consent`] with more of the script's options (`--iss`, `--audience`).
fn issue_consent_with(
    key: &IssuerKey,
    kid: &str,
    agent: &str,
    scope: &str,
    policy: &Value,
    extra: &[&str],
) -> Consent {
    let policy_file = key.dir.path().join("policy.json");
    std::fs::write(&policy_file, policy.to_string()).unwrap();
    // `--kid=…` in one argument: a thumbprint may start with `-`.
    let kid = format!("--kid={kid}");
    let out: Value = serde_json::from_str(&node(
        "agentoauth_issue_consent.mjs",
        &[
            "--jwk-file",
            key.private_file.to_str().unwrap(),
            &kid,
            "--user",
            "did:user:alice",
            "--agent",
            agent,
            "--scope",
            scope,
            "--policy-file",
            policy_file.to_str().unwrap(),
            "--expires-in",
            "600",
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .collect::<Vec<_>>(),
    ))
    .unwrap();
    Consent {
        token: out["token"].as_str().unwrap().to_owned(),
        jti: out["jti"].as_str().unwrap().to_owned(),
        policy_hash: out["policy_hash"].as_str().unwrap().to_owned(),
    }
}

/// The policy AgentOAuth's page builds with `buildPolicyV2()` (its builder writes
/// `strict: false`), without the time window.
fn travel_policy() -> Value {
    json!({
        "version": "pol.v0.2",
        "id": "pol_travel_001",
        "strict": false,
        "actions": ["payments.send"],
        "resources": [{"type": "merchant", "match": {"ids": ["airbnb", "expedia"]}}],
        "limits": {
            "per_txn": {"amount": 500, "currency": "USD"},
            "per_period": {"amount": 1500, "currency": "USD", "period": "week"}
        }
    })
}

/// An issuer with its `jose` key registered, an agent granted `payments.send`, and a
/// receiver (its key spends budgets and reads receipts).
struct World {
    h: Harness,
    iss: CreatedIssuer,
    key: IssuerKey,
    kid: String,
    agent: String,
    receiver_key: String,
}

async fn world() -> World {
    let h = start().await;
    let iss = h.issuer_full("travel.example").await;
    let key = IssuerKey::new();
    let proof = h.key_proof(&iss.id, &key.core_key());
    let (st, reg) = h
        .call(
            "POST",
            "/v1/issuer/keys",
            Some(&iss.key),
            Some(json!({"jwk": key.public, "proof": proof})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{reg}");
    let kid = reg["kid"].as_str().unwrap().to_owned();
    let agent = h
        .register(
            &iss.key,
            json!({"name": "Travel AI", "scopes": ["payments.send"]}),
        )
        .await["agent_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, r) = h
        .call(
            "POST",
            "/v1/receivers",
            Some(&h.admin),
            Some(json!({"name": "merchant.example"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    World {
        receiver_key: r["api_key"].as_str().unwrap().to_owned(),
        h,
        iss,
        key,
        kid,
        agent,
    }
}

/// A raw call: status, body text and content type.
async fn raw(
    h: &Harness,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, String, String) {
    let url = format!("{}{path}", h.base);
    let mut req = match method {
        "GET" => h.http.get(&url),
        _ => h.http.post(&url),
    };
    if let Some(k) = key {
        req = req.header("X-API-Key", k);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, resp.text().await.unwrap(), ct)
}

/// An AgentOAuth-shaped error: a 4xx with `error` and `code` strings, never a 500.
#[track_caller]
fn assert_refused(st: StatusCode, v: &Value, status: StatusCode, code: &str) {
    assert_eq!(st, status, "{v}");
    assert_eq!(v["code"], code, "{v}");
    assert!(v["error"].is_string(), "{v}");
    assert!(v["message"].is_string(), "{v}");
}

#[tokio::test]
async fn an_sdk_consent_token_is_decided_alike_natively_and_by_the_hosted_verifier_shape() {
    let w = world().await;
    let h = &w.h;
    let c = issue_consent(&w.key, &w.kid, &w.agent, "payments.send", &travel_policy());
    // The SDK's own hash is the registry's (the lint answers the same).
    let (st, lint) = h
        .call(
            "POST",
            &format!("{BASE}/lint/policy"),
            None,
            Some(travel_policy()),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{lint}");
    assert_eq!(lint["valid"], true, "{lint}");
    assert_eq!(lint["policy_hash"], c.policy_hash.as_str(), "{lint}");

    // Native: a JSON-number amount, read exactly.
    let (st, v) = h
        .call(
            "POST",
            "/v1/verify",
            Some(&w.receiver_key),
            Some(json!({"token": c.token, "action": "payments.send",
                "resource": {"type": "merchant", "id": "airbnb"}, "amount": 120.50, "currency": "USD"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["remaining"]["amount"], "1379.50", "{v}");
    let native_index = v["audit_index"].as_u64().unwrap();

    // The hosted verifier's shape: no `action` (the token's scope is the action, as
    // AgentOAuth's verifier takes it), the amount a JSON number.
    let body = json!({"token": c.token, "audience": null,
        "resource": {"type": "merchant", "id": "expedia"}, "amount": 200, "currency": "USD"});
    let (st, text, ct) = raw(
        h,
        "POST",
        &format!("{BASE}/verify"),
        Some(&w.receiver_key),
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{text}");
    assert!(ct.starts_with("application/json"), "{ct}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["decision"], "ALLOW", "{v}");
    // The payload is the token's own claims, as the SDK wrote them.
    assert_eq!(v["payload"]["jti"], c.jti.as_str(), "{v}");
    assert_eq!(v["payload"]["ver"], "act.v0.2", "{v}");
    assert_eq!(v["payload"]["user"], "did:user:alice", "{v}");
    assert_eq!(v["payload"]["policy_hash"], c.policy_hash.as_str(), "{v}");
    assert!(
        v["payload"].get("iss").is_none(),
        "the SDK writes no iss: {v}"
    );
    let d = &v["policy_decision"];
    assert_eq!(d["allowed"], true, "{v}");
    // The remaining budget with exactly the registry's digits, as a JSON number.
    assert!(text.contains("\"period\":1179.50"), "{text}");
    assert_eq!(d["remaining"]["currency"], "USD", "{v}");
    let receipt_id = d["receipt_id"].as_str().unwrap().to_owned();
    assert!(receipt_id.starts_with("rcp_"), "{v}");
    let r = &d["receipt"];
    assert_eq!(r["version"], "receipt.v0.2", "{v}");
    assert_eq!(r["id"], receipt_id.as_str(), "{v}");
    assert_eq!(r["policy_id"], "pol_travel_001", "{v}");
    assert_eq!(r["decision"], "ALLOW", "{v}");
    assert!(r["timestamp"].as_i64().unwrap() > 1_700_000_000, "{v}");
    assert!(text.contains("\"amount\":1179.50"), "{text}");
    let index = v["audit_index"].as_u64().unwrap();
    assert!(index > native_index, "{v}");

    // The same decision is in the audit log, for the token's agent.
    let (st, entry) = h
        .call(
            "GET",
            &format!("/v1/audit/entries?start={index}&end={}", index + 1),
            Some(&h.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{entry}");
    let entry_text = entry.to_string();
    assert!(entry_text.contains(&w.agent), "{entry}");
    assert!(entry_text.contains(&receipt_id), "{entry}");

    // The receipt, signed with the receipt key this surface publishes.
    let (st, jws, ct) = raw(
        h,
        "GET",
        &format!("{BASE}/receipts/{receipt_id}"),
        Some(&w.receiver_key),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{jws}");
    assert_eq!(ct, "application/jwt");
    let (st, jwks) = h
        .call("GET", &format!("{BASE}/.well-known/jwks.json"), None, None)
        .await;
    assert_eq!(st, StatusCode::OK, "{jwks}");
    let jwks: Jwks = serde_json::from_value(jwks).unwrap();
    let set = bonafide_core::token::KeySet::from_jwks(&jwks).unwrap();
    let claims = bonafide_core::receipt::verify(&jws, &set).unwrap();
    assert_eq!(claims.receipt_id.as_str(), receipt_id);
    assert_eq!(claims.audit_index, Some(index));
    assert!(claims.valid);

    // Over the per-transaction limit: a refusal with its receipt (DENY), 403 as
    // AgentOAuth answers a denial.
    let (st, v) = h
        .call(
            "POST",
            &format!("{BASE}/verify"),
            Some(&w.receiver_key),
            Some(
                json!({"token": c.token, "resource": {"type": "merchant", "id": "airbnb"},
                "amount": "600.00", "currency": "USD"}),
            ),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["decision"], "DENY", "{v}");
    assert_eq!(v["policy_decision"]["allowed"], false, "{v}");
    assert_eq!(
        v["policy_decision"]["reasons"],
        json!(["LIMIT_PER_TXN"]),
        "{v}"
    );
    assert_eq!(v["policy_decision"]["receipt"]["decision"], "DENY", "{v}");
    // A merchant the policy does not name.
    let (st, v) = h
        .call(
            "POST",
            &format!("{BASE}/verify"),
            Some(&w.receiver_key),
            Some(
                json!({"token": c.token, "resource": {"type": "merchant", "id": "hotels"},
                "amount": 10, "currency": "USD"}),
            ),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(
        v["policy_decision"]["reasons"],
        json!(["POLICY_RESOURCE"]),
        "{v}"
    );

    // Simulate: the same decision against the budget as it stands, nothing spent.
    for _ in 0..2 {
        let (st, v) = h
            .call(
                "POST",
                &format!("{BASE}/simulate"),
                Some(&w.receiver_key),
                Some(
                    json!({"token": c.token, "resource": {"type": "merchant", "id": "airbnb"},
                    "amount": 500, "currency": "USD"}),
                ),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["simulation"], true, "{v}");
        assert_eq!(v["policy_decision"]["allowed"], true, "{v}");
        assert_eq!(v["policy_decision"]["remaining"]["period"], 679.5, "{v}");
        assert!(v["policy_decision"].get("receipt_id").is_none(), "{v}");
    }
    // Spend the week's budget (320.50 spent): 500 and 500 pass, then 500 more does
    // not, natively or here.
    for _ in 0..2 {
        let (st, v) = h
            .call(
                "POST",
                &format!("{BASE}/verify"),
                Some(&w.receiver_key),
                Some(
                    json!({"token": c.token, "resource": {"type": "merchant", "id": "airbnb"},
                    "amount": 500, "currency": "USD"}),
                ),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let (st, v) = h
        .call(
            "POST",
            &format!("{BASE}/verify"),
            Some(&w.receiver_key),
            Some(
                json!({"token": c.token, "resource": {"type": "merchant", "id": "airbnb"},
                "amount": 500, "currency": "USD"}),
            ),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(
        v["policy_decision"]["reasons"],
        json!(["LIMIT_PER_PERIOD"]),
        "{v}"
    );
    let (_, v) = h
        .call(
            "POST",
            "/v1/verify",
            Some(&w.receiver_key),
            Some(json!({"token": c.token, "action": "payments.send",
                "resource": {"type": "merchant", "id": "airbnb"}, "amount": "179.51", "currency": "USD"})),
        )
        .await;
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(v["reasons"], json!(["LIMIT_PER_PERIOD"]), "{v}");

    // Suspension applies on this surface too: valid false, a refusal.
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/agents/{}/suspend", w.agent),
            Some(&w.iss.key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = h
        .call(
            "POST",
            &format!("{BASE}/verify"),
            Some(&w.receiver_key),
            Some(json!({"token": c.token})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["code"], "AGENT_SUSPENDED", "{v}");
    assert_eq!(v["policy_decision"]["allowed"], false, "{v}");
    assert!(
        v.get("payload").is_none(),
        "no claims shown for a refused token: {v}"
    );
}

#[tokio::test]
async fn consent_tokens_are_revoked_by_their_own_jti_natively_and_by_revoke() {
    let w = world().await;
    let h = &w.h;
    let verify = |token: String| async move {
        h.call(
            "POST",
            &format!("{BASE}/verify"),
            None,
            Some(json!({"token": token, "action": "payments.send"})),
        )
        .await
    };
    let keep = issue_consent(&w.key, &w.kid, &w.agent, "payments.send", &travel_policy());
    // Without a resource and an amount the policy refuses (it names resources and
    // has limits), but the token is valid.
    let (st, v) = verify(keep.token.clone()).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(
        v["policy_decision"]["reasons"],
        json!(["POLICY_RESOURCE", "AMOUNT_REQUIRED"]),
        "{v}"
    );

    // A token the registry has seen only in verifies, revoked by its own `jti` (a
    // UUID, as the SDK makes): the registry needs its agent to record it.
    let a = issue_consent(&w.key, &w.kid, &w.agent, "payments.send", &travel_policy());
    assert_eq!(verify(a.token.clone()).await.1["valid"], true);
    let (st, v) = h
        .call(
            "POST",
            &format!("{BASE}/revoke"),
            Some(&w.iss.key),
            Some(json!({"jti": a.jti})),
        )
        .await;
    assert_refused(st, &v, StatusCode::NOT_FOUND, "NOT_FOUND");
    let (st, v) = h
        .call(
            "POST",
            &format!("{BASE}/revoke"),
            Some(&w.iss.key),
            Some(json!({"jti": a.jti, "agent_id": w.agent})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["revoked"], true, "{v}");
    // One id derivation: the id it is recorded under is the one verify computes.
    let issuer = IssuerId::try_from(w.iss.id.as_str()).unwrap();
    let id = bonafide_core::token::issuer_token_id(&issuer, &a.jti);
    assert_eq!(v["jti"], id.as_str(), "{v}");
    let (st, v) = verify(a.token.clone()).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["code"], "TOKEN_REVOKED", "{v}");
    let (_, n) = h
        .call("POST", "/v1/verify", None, Some(json!({"token": a.token})))
        .await;
    assert_eq!(n["error"]["code"], "TOKEN_REVOKED", "{n}");
    // Its own `jti` names it from now on, natively too, without the agent.
    let (st, again) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&w.iss.key),
            Some(json!({"jti": a.jti})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{again}");
    assert_eq!(again["jti"], id.as_str(), "{again}");

    // Revoked natively by `{token}`, then named by its own `jti`: the same id.
    let b = issue_consent(&w.key, &w.kid, &w.agent, "payments.send", &travel_policy());
    let (st, r) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&w.iss.key),
            Some(json!({"token": b.token})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let b_id = bonafide_core::token::issuer_token_id(&issuer, &b.jti);
    assert_eq!(r["jti"], b_id.as_str(), "{r}");
    let (st, r) = h
        .call(
            "POST",
            &format!("{BASE}/revoke"),
            Some(&w.iss.key),
            Some(json!({"jti": b.jti})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["jti"], b_id.as_str(), "{r}");
    assert_eq!(verify(b.token).await.1["code"], "TOKEN_REVOKED");

    // Another issuer's equal `jti` is not this issuer's token.
    let other = h.issuer_full("other.example").await;
    let (st, v) = h
        .call(
            "POST",
            &format!("{BASE}/revoke"),
            Some(&other.key),
            Some(json!({"jti": b.jti})),
        )
        .await;
    assert_refused(st, &v, StatusCode::NOT_FOUND, "NOT_FOUND");

    // A `policy_id` goes alone (a token is revoked in a request of its own).
    let (st, v) = h
        .call(
            "POST",
            &format!("{BASE}/revoke"),
            Some(&w.iss.key),
            Some(json!({"policy_id": "pol_travel_001", "jti": keep.jti})),
        )
        .await;
    assert_refused(st, &v, StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    assert!(v["message"].as_str().unwrap().contains("policy_id"), "{v}");
    assert_eq!(verify(keep.token.clone()).await.1["valid"], true);

    // Only the issuer revokes: no key, a receiver's key, a malformed `jti`.
    let (st, v) = h
        .call(
            "POST",
            &format!("{BASE}/revoke"),
            None,
            Some(json!({"jti": keep.jti})),
        )
        .await;
    assert_refused(st, &v, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let (st, v) = h
        .call(
            "POST",
            &format!("{BASE}/revoke"),
            Some(&w.receiver_key),
            Some(json!({"jti": keep.jti})),
        )
        .await;
    assert_refused(st, &v, StatusCode::FORBIDDEN, "FORBIDDEN");
    for bad in [
        json!({"jti": ""}),
        json!({"jti": "a b"}),
        json!({"jti": "x".repeat(129)}),
    ] {
        let (st, v) = h
            .call(
                "POST",
                &format!("{BASE}/revoke"),
                Some(&w.iss.key),
                Some(bad),
            )
            .await;
        assert_refused(st, &v, StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    }
    assert_eq!(verify(keep.token).await.1["valid"], true);
}

/// The same policy under another `id`.
fn policy_with_id(id: &str) -> Value {
    let mut p = travel_policy();
    p["id"] = json!(id);
    p
}

/// The audit entries (decoded) of type `event`, over the whole log.
async fn audit_entries_of(h: &Harness, event: &str) -> Vec<Value> {
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
        .map(|t| serde_json::from_str::<Value>(t).unwrap())
        .filter(|e| e["type"] == event)
        .collect()
}

#[tokio::test]
async fn revoking_a_policy_refuses_every_token_carrying_it_and_nothing_else() {
    let w = world().await;
    let h = &w.h;
    let native = |token: String| async move {
        h.call("POST", "/v1/verify", None, Some(json!({"token": token})))
            .await
            .1
    };
    let compat = |token: String| async move {
        h.call(
            "POST",
            &format!("{BASE}/verify"),
            None,
            Some(json!({"token": token, "action": "payments.send"})),
        )
        .await
    };
    // A consent token as the SDK makes it, and a registry-minted token of an agent
    // registered with the same policy: both carry `pol_travel_001`.
    let consent = issue_consent(&w.key, &w.kid, &w.agent, "payments.send", &travel_policy());
    let minted = h
        .register(
            &w.iss.key,
            json!({"name": "Booker", "scopes": ["payments.send"], "policy": travel_policy()}),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Another policy id of the same issuer, and the same id of another issuer.
    let other_policy = issue_consent(
        &w.key,
        &w.kid,
        &w.agent,
        "payments.send",
        &policy_with_id("pol_travel_002"),
    );
    let other = h.issuer_full("other.example").await;
    let theirs = h
        .register(
            &other.key,
            json!({"name": "Their booker", "scopes": ["payments.send"], "policy": travel_policy()}),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for t in [&consent.token, &minted, &other_policy.token, &theirs] {
        let v = native(t.clone()).await;
        assert_eq!(v["valid"], true, "{v}");
    }

    // Revoked natively by the issuer.
    let (st, first) = h
        .call(
            "POST",
            "/v1/policies/revoke",
            Some(&w.iss.key),
            Some(json!({"policy_id": "pol_travel_001"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{first}");
    assert_eq!(first["policy_id"], "pol_travel_001", "{first}");
    let revoked_at = first["revoked_at"].as_str().unwrap().to_owned();
    assert!(revoked_at.parse::<jiff::Timestamp>().is_ok(), "{first}");

    // Both tokens carrying it are refused, natively and by the hosted-verifier shape,
    // saying it was the policy.
    for t in [&consent.token, &minted] {
        let v = native(t.clone()).await;
        assert_eq!(v["valid"], false, "{v}");
        assert_eq!(v["error"]["code"], "TOKEN_REVOKED", "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("policy"),
            "{v}"
        );
        assert_eq!(
            v["reasons"],
            json!(["TOKEN_REVOKED", "POLICY_REVOKED"]),
            "{v}"
        );
        let (st, v) = compat(t.clone()).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(v["valid"], false, "{v}");
        assert_eq!(v["code"], "TOKEN_REVOKED", "{v}");
        assert_eq!(v["policy_decision"]["allowed"], false, "{v}");
        // Simulate is refused alike (the verdict, not the route, decides).
        let (_, v) = h
            .call(
                "POST",
                "/v1/simulate",
                None,
                Some(json!({"token": t, "action": "payments.send"})),
            )
            .await;
        assert_eq!(v["error"]["code"], "TOKEN_REVOKED", "{v}");
    }
    // A consent token signed after the revocation, never seen before: refused too.
    let late = issue_consent(&w.key, &w.kid, &w.agent, "payments.send", &travel_policy());
    assert_eq!(native(late.token).await["error"]["code"], "TOKEN_REVOKED");
    // Another policy id, and another issuer's policy of the same id: untouched.
    assert_eq!(native(other_policy.token.clone()).await["valid"], true);
    assert_eq!(native(theirs.clone()).await["valid"], true);
    let (st, v) = compat(other_policy.token.clone()).await;
    assert_eq!(v["valid"], true, "{st} {v}");

    // Revoking again (natively, or as AgentOAuth's `/revoke`) keeps the first time.
    let (st, again) = h
        .call(
            "POST",
            "/v1/policies/revoke",
            Some(&w.iss.key),
            Some(json!({"policy_id": "pol_travel_001"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{again}");
    assert_eq!(again["revoked_at"], revoked_at.as_str(), "{again}");
    let (st, v) = h
        .call(
            "POST",
            &format!("{BASE}/revoke"),
            Some(&w.iss.key),
            Some(json!({"policy_id": "pol_travel_001"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"success": true, "policy_id": "pol_travel_001",
            "revokedAt": revoked_at, "alreadyRevoked": true}),
    );
    // One audit entry, naming the issuer and the policy.
    let entries = audit_entries_of(h, "policy.revoked").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let issuer = IssuerId::try_from(w.iss.id.as_str()).unwrap();
    assert_eq!(entries[0]["issuer"], w.iss.id.as_str(), "{entries:?}");
    assert_eq!(entries[0]["target"], "pol_travel_001", "{entries:?}");
    assert_eq!(
        entries[0]["jti"],
        bonafide_core::token::policy_revocation_id(&issuer, "pol_travel_001").as_str(),
        "{entries:?}"
    );
    assert_eq!(entries[0]["actor"]["id"], w.iss.id.as_str(), "{entries:?}");

    // First revocation through AgentOAuth's `/revoke`: `alreadyRevoked: false`, and the
    // token carrying that policy is refused at once.
    let (st, v) = h
        .call(
            "POST",
            &format!("{BASE}/revoke"),
            Some(&w.iss.key),
            Some(json!({"policy_id": "pol_travel_002"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["alreadyRevoked"], false, "{v}");
    assert_eq!(v["policy_id"], "pol_travel_002", "{v}");
    let (st, v) = compat(other_policy.token).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["code"], "TOKEN_REVOKED", "{v}");
    assert_eq!(audit_entries_of(h, "policy.revoked").await.len(), 2);
    // The other issuer's token of `pol_travel_001` still verifies.
    assert_eq!(native(theirs).await["valid"], true);
}

#[tokio::test]
async fn revoking_a_policy_refuses_bad_input_and_the_wrong_keys() {
    let w = world().await;
    let h = &w.h;
    let c = issue_consent(&w.key, &w.kid, &w.agent, "payments.send", &travel_policy());
    let before = h.state.store.audit_size().await.unwrap();
    for path in ["/v1/policies/revoke", "/compat/agentoauth/revoke"] {
        // No key, a receiver's key, the admin key.
        let (st, v) = h
            .call(
                "POST",
                path,
                None,
                Some(json!({"policy_id": "pol_travel_001"})),
            )
            .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{path}: {v}");
        for key in [&w.receiver_key, &h.admin] {
            let (st, v) = h
                .call(
                    "POST",
                    path,
                    Some(key),
                    Some(json!({"policy_id": "pol_travel_001"})),
                )
                .await;
            assert_eq!(st, StatusCode::FORBIDDEN, "{path}: {v}");
        }
        // Not a policy id (the policy module's rule), or not a string.
        for bad in [
            json!({"policy_id": ""}),
            json!({"policy_id": "x".repeat(129)}),
            json!({"policy_id": "a\u{202e}b"}),
            json!({"policy_id": "a\nb"}),
            json!({"policy_id": 7}),
        ] {
            let (st, v) = h
                .call("POST", path, Some(&w.iss.key), Some(bad.clone()))
                .await;
            assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{path} {bad}: {v}");
        }
    }
    // Natively: a missing `policy_id` or an unknown member.
    for bad in [json!({}), json!({"policy_id": "p", "jti": "x"})] {
        let (st, v) = h
            .call(
                "POST",
                "/v1/policies/revoke",
                Some(&w.iss.key),
                Some(bad.clone()),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
    }
    let (st, text, _) = raw(
        h,
        "POST",
        "/v1/policies/revoke",
        Some(&w.iss.key),
        Some("{"),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");
    // Nothing was revoked or recorded: the token still verifies.
    assert_eq!(h.state.store.audit_size().await.unwrap(), before);
    let (_, v) = h
        .call("POST", "/v1/verify", None, Some(json!({"token": c.token})))
        .await;
    assert_eq!(v["valid"], true, "{v}");
    // The longest id is accepted.
    let (st, v) = h
        .call(
            "POST",
            "/v1/policies/revoke",
            Some(&w.iss.key),
            Some(json!({"policy_id": "x".repeat(128)})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn every_agentoauth_route_refuses_bad_input_with_a_clear_4xx() {
    let w = world().await;
    let h = &w.h;
    let c = issue_consent(&w.key, &w.kid, &w.agent, "payments.send", &travel_policy());
    let key = Some(w.receiver_key.as_str());

    // A registry token without a policy is asked no action (its `scope` is not one),
    // as AgentOAuth evaluates policies only: valid and allowed.
    let plain = h
        .register(
            &w.iss.key,
            json!({"name": "Reader", "scopes": ["read:orders"]}),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, v) = h
        .call(
            "POST",
            &format!("{BASE}/verify"),
            None,
            Some(json!({"token": plain})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["policy_decision"]["allowed"], true, "{v}");
    assert_eq!(v["payload"]["scope"], "read:orders", "{v}");

    for route in ["verify", "simulate"] {
        let path = format!("{BASE}/{route}");
        for (body, status) in [
            (Some("{"), StatusCode::BAD_REQUEST),
            (Some("[]"), StatusCode::UNPROCESSABLE_ENTITY),
            (Some("{}"), StatusCode::UNPROCESSABLE_ENTITY),
            (Some(r#"{"token": 7}"#), StatusCode::UNPROCESSABLE_ENTITY),
            (
                Some(r#"{"token": "x", "surprise": 1}"#),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                Some(
                    r#"{"token": "x", "amount": 1e3, "currency": "USD", "action": "payments.send"}"#,
                ),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
        ] {
            let (st, text, _) = raw(h, "POST", &path, key, body).await;
            assert_eq!(st, status, "{route} {body:?}: {text}");
            let v: Value = serde_json::from_str(&text).unwrap();
            assert!(v["code"].is_string() && v["error"].is_string(), "{text}");
            assert_eq!(v["valid"], false, "{text}");
        }
        let (st, text, _) = raw(h, "POST", &path, key, None).await;
        assert!(st.is_client_error(), "{route} no body: {st} {text}");
        // A spend needs a receiver key, as natively.
        let (st, v) = h
            .call(
                "POST",
                &path,
                None,
                Some(json!({"token": c.token, "amount": 5, "currency": "USD"})),
            )
            .await;
        assert_refused(st, &v, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        // A wrong key is a 401, never ignored.
        let (st, v) = h
            .call(
                "POST",
                &path,
                Some("bfk_nope"),
                Some(json!({"token": c.token})),
            )
            .await;
        assert_refused(st, &v, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        // Tokens that are not genuine: a decision (`valid: false`), 400 as AgentOAuth
        // answers a token it cannot accept.
        let mut tampered = c.token.clone();
        tampered.pop();
        tampered.push(if c.token.ends_with('A') { 'B' } else { 'A' });
        for token in ["abc", "a.b.c", tampered.as_str()] {
            let (st, v) = h
                .call("POST", &path, key, Some(json!({"token": token})))
                .await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{token}: {v}");
            assert_eq!(v["valid"], false, "{v}");
            assert_eq!(v["code"], "TOKEN_INVALID", "{v}");
            assert!(v["error"].is_string(), "{v}");
            assert!(v.get("payload").is_none(), "{v}");
        }
    }
    // A token for another audience (the SDK's `audience` option): not valid here.
    let policy_file = w.key.dir.path().join("policy.json");
    std::fs::write(&policy_file, travel_policy().to_string()).unwrap();
    let kid = format!("--kid={}", w.kid);
    let out: Value = serde_json::from_str(&node(
        "agentoauth_issue_consent.mjs",
        &[
            "--jwk-file",
            w.key.private_file.to_str().unwrap(),
            &kid,
            "--user",
            "did:user:alice",
            "--agent",
            &w.agent,
            "--scope",
            "payments.send",
            "--policy-file",
            policy_file.to_str().unwrap(),
            "--audience",
            "merchant.example",
        ],
    ))
    .unwrap();
    let for_merchant = out["token"].as_str().unwrap();
    let (st, v) = h
        .call(
            "POST",
            &format!("{BASE}/verify"),
            None,
            Some(json!({"token": for_merchant, "audience": "elsewhere.example"})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["valid"], false, "{v}");
    assert!(v["code"].is_string(), "{v}");
    assert!(v.get("payload").is_none(), "{v}");
    let (st, v) = h
        .call(
            "POST",
            &format!("{BASE}/verify"),
            None,
            Some(json!({"token": for_merchant, "audience": "merchant.example"})),
        )
        .await;
    assert_eq!(v["valid"], true, "{st} {v}");

    // Receipts: malformed id, unknown id, someone else's.
    let (st, v) = h
        .call("GET", &format!("{BASE}/receipts/receipt_abc"), key, None)
        .await;
    assert_refused(st, &v, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    let unknown = format!("rcp_{}", "a".repeat(26));
    let (st, v) = h
        .call("GET", &format!("{BASE}/receipts/{unknown}"), key, None)
        .await;
    assert!(
        st == StatusCode::NOT_FOUND || st == StatusCode::BAD_REQUEST,
        "{st} {v}"
    );
    assert!(v["code"].is_string(), "{v}");
    let (_, v) = h
        .call(
            "POST",
            &format!("{BASE}/verify"),
            key,
            Some(
                json!({"token": c.token, "resource": {"type": "merchant", "id": "airbnb"},
                "amount": 1, "currency": "USD"}),
            ),
        )
        .await;
    let receipt_id = v["policy_decision"]["receipt_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, v) = h
        .call("GET", &format!("{BASE}/receipts/{receipt_id}"), None, None)
        .await;
    assert_refused(st, &v, StatusCode::NOT_FOUND, "NOT_FOUND");
    let (st, _) = h
        .call(
            "GET",
            &format!("{BASE}/receipts/{receipt_id}"),
            Some(&w.iss.key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "the agent's issuer reads it");

    // Lint: a policy that is not one (400 with its errors), no body, not JSON.
    let (st, v) = h
        .call(
            "POST",
            &format!("{BASE}/lint/policy"),
            None,
            Some(json!({"version": "pol.v0.2", "id": "p", "actions": [], "limits": {"per_txn": {"amount": "x", "currency": "USD"}}})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["valid"], false, "{v}");
    assert!(!v["errors"].as_array().unwrap().is_empty(), "{v}");
    let (st, text, _) = raw(h, "POST", &format!("{BASE}/lint/policy"), None, Some("")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");
    let (st, text, _) = raw(h, "POST", &format!("{BASE}/lint/policy"), None, Some("{")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");

    // Lint token: the SDK's token decoded (not verified); what is not a JWS refused.
    let (st, v) = h
        .call(
            "POST",
            &format!("{BASE}/lint/token"),
            None,
            Some(json!({"token": c.token})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["verified"], false, "{v}");
    assert_eq!(v["header"]["kid"], w.kid.as_str(), "{v}");
    assert_eq!(v["header"]["typ"], "JWT", "{v}");
    assert_eq!(v["payload"]["jti"], c.jti.as_str(), "{v}");
    let dup = format!(
        "{}.{}.sig",
        bonafide_core::b64::encode(br#"{"alg":"EdDSA","alg":"none"}"#),
        bonafide_core::b64::encode(br#"{"a":1}"#)
    );
    let not_object = format!(
        "{}.{}.sig",
        bonafide_core::b64::encode(br#"{"alg":"EdDSA"}"#),
        bonafide_core::b64::encode(b"[1]")
    );
    for body in [
        json!({"token": "abc"}),
        json!({"token": "%%%.e30.sig"}),
        json!({"token": dup}),
        json!({"token": not_object}),
        json!({}),
        json!({"token": c.token, "extra": true}),
    ] {
        let (st, v) = h
            .call(
                "POST",
                &format!("{BASE}/lint/token"),
                None,
                Some(body.clone()),
            )
            .await;
        assert!(st.is_client_error(), "{body}: {st} {v}");
        assert_eq!(v["valid"], false, "{v}");
        assert!(v["code"].is_string(), "{v}");
    }

    // Health: the native checks, AgentOAuth's feature list.
    let (st, v) = h.call("GET", &format!("{BASE}/health"), None, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "ok", "{v}");
    let features: Vec<&str> = v["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    for f in ["act.v0.2", "policy-eval", "stateful-budgets", "receipts"] {
        assert!(features.contains(&f), "{v}");
    }
    assert_eq!(v["endpoints"]["verify"], "POST /verify", "{v}");

    // Not in the OpenAPI document: it describes Bonafide's own contract.
    let (_, doc) = h.call("GET", "/openapi.json", None, None).await;
    assert!(!doc.to_string().contains("/compat/agentoauth"));
}

/// Registers `key`'s public JWK for `iss` with `kid` in it (the issuer's own name for
/// the key, or none).
async fn register_key(
    h: &Harness,
    iss: &CreatedIssuer,
    key: &IssuerKey,
    kid: Option<&str>,
) -> (StatusCode, Value) {
    let mut jwk = key.public.clone();
    if let Some(kid) = kid {
        jwk["kid"] = json!(kid);
    }
    let proof = h.key_proof(&iss.id, &key.core_key());
    h.call(
        "POST",
        "/v1/issuer/keys",
        Some(&iss.key),
        Some(json!({"jwk": jwk, "proof": proof})),
    )
    .await
}

#[tokio::test]
async fn an_issuer_key_registered_under_its_own_kid_keeps_it_as_an_alias() {
    let h = start().await;
    let iss = h.issuer_full("alias.example").await;
    let key = IssuerKey::new();
    let (st, reg) = register_key(&h, &iss, &key, Some("key-001")).await;
    assert_eq!(st, StatusCode::CREATED, "{reg}");
    assert_eq!(reg["alias"], "key-001", "{reg}");
    let thumbprint = reg["kid"].as_str().unwrap().to_owned();
    assert_ne!(thumbprint, "key-001");
    let (_, list) = h.call("GET", "/v1/issuer/keys", Some(&iss.key), None).await;
    assert_eq!(list["keys"][0]["alias"], "key-001", "{list}");

    // Unique per issuer: a second key under the same alias is a 409, and another
    // issuer may use the alias for its own key.
    let twin = IssuerKey::new();
    let (st, v) = register_key(&h, &iss, &twin, Some("key-001")).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("kid"),
        "{v}"
    );
    let other = h.issuer_full("other-alias.example").await;
    let theirs = IssuerKey::new();
    let (st, v) = register_key(&h, &other, &theirs, Some("key-001")).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    // Not a usable name: control characters, too long.
    for bad in ["key\u{1}", &"k".repeat(129)] {
        let (st, v) = register_key(&h, &iss, &IssuerKey::new(), Some(bad)).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["error"]["code"], "KEY_INVALID", "{v}");
    }

    let agent = h
        .register(
            &iss.key,
            json!({"name": "Travel AI", "scopes": ["payments.send"]}),
        )
        .await["agent_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let verify = |token: String| {
        let h = &h;
        async move {
            h.call(
                "POST",
                &format!("{BASE}/verify"),
                None,
                Some(json!({"token": token})),
            )
            .await
            .1
        }
    };
    // The SDK's `keyId: "key-001"` with `iss` naming the issuer: that key verifies it.
    for iss_claim in [iss.id.as_str(), "alias.example"] {
        let c = issue_consent_with(
            &key,
            "key-001",
            &agent,
            "payments.send",
            &travel_policy(),
            &["--iss", iss_claim],
        );
        let v = verify(c.token).await;
        assert_eq!(v["valid"], true, "{iss_claim}: {v}");
    }
    // The other issuer's `key-001` cannot sign for this issuer, nor can an
    // unregistered key under the alias.
    for signer in [&theirs, &IssuerKey::new()] {
        let c = issue_consent_with(
            signer,
            "key-001",
            &agent,
            "payments.send",
            &travel_policy(),
            &["--iss", iss.id.as_str()],
        );
        let v = verify(c.token).await;
        assert_eq!(v["valid"], false, "{v}");
        assert_eq!(v["code"], "TOKEN_INVALID", "{v}");
    }
    // Without `iss` an alias names no issuer (aliases are unique per issuer only).
    let c = issue_consent(&key, "key-001", &agent, "payments.send", &travel_policy());
    let v = verify(c.token).await;
    assert_eq!(v["valid"], false, "{v}");
    // Revoking the key by its thumbprint ends what it signed under the alias.
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/issuer/keys/{thumbprint}/revoke"),
            Some(&iss.key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let c = issue_consent_with(
        &key,
        "key-001",
        &agent,
        "payments.send",
        &travel_policy(),
        &["--iss", iss.id.as_str()],
    );
    let v = verify(c.token).await;
    assert_eq!(v["code"], "TOKEN_REVOKED", "{v}");
}

/// A registry with the playground on (and the other limits off, as in tests): the
/// playground's own limit applies all the same.
async fn playground(limit: Option<&str>) -> Harness {
    let mut rate_limits = bonafide_server::ratelimit::RateLimits::off();
    if let Some(l) = limit {
        rate_limits.apply(l).unwrap();
    }
    common::start_with_config(bonafide_server::Config {
        playground: true,
        rate_limits,
        ..common::config()
    })
    .await
}

/// The policy of AgentOAuth's playground example.
fn demo_policy() -> Value {
    json!({
        "version": "pol.v0.2",
        "id": "pol_demo_001",
        "actions": ["payments.send"],
        "resources": [],
        "limits": {"per_txn": {"amount": 500, "currency": "USD"}}
    })
}

/// `jose`'s `jwtVerify` with a JWK Set: the claims, or the error's code.
fn jose_verify(jwks: &Value, token: &str) -> Value {
    let script = "import { createLocalJWKSet, jwtVerify } from 'jose';\n\
        const [jwks, token] = process.argv.slice(1);\n\
        try { const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(JSON.parse(jwks)));\n\
        console.log(JSON.stringify({ ok: true, payload, protectedHeader })); }\n\
        catch (e) { console.log(JSON.stringify({ ok: false, code: e.code })); }";
    let out = Command::new("node")
        .current_dir(node_dir())
        .args(["--input-type=module", "-e", script])
        .arg(jwks.to_string())
        .arg(token)
        .output()
        .expect("node must be installed (see scripts/interop-setup.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn the_playground_issues_demo_tokens_that_are_decided_as_any_consent_token() {
    let h = playground(None).await;
    let (st, issued) = h
        .call(
            "POST",
            &format!("{BASE}/playground/issue-demo-token"),
            None,
            Some(json!({"policy": demo_policy(), "user_id": "demo-user",
                "agent_id": "demo-agent", "expires_in": 3600})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{issued}");
    assert_eq!(issued["demo"], true, "{issued}");
    let token = issued["token"].as_str().unwrap();
    let issuer = issued["issuer"].as_str().unwrap();
    assert!(IssuerId::try_from(issuer).is_ok(), "{issued}");
    let agent = issued["agent_id"].as_str().unwrap().to_owned();
    assert!(agent.starts_with("agt_"), "{issued}");
    assert_eq!(issued["agent_label"], "demo-agent");

    // The demo key is published, and an independent JOSE library verifies the token
    // with it: the claims AgentOAuth's demo tokens carry, marked as demo.
    let (st, jwks) = h
        .call(
            "GET",
            &format!("{BASE}/playground/.well-known/jwks.json"),
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{jwks}");
    assert_eq!(jwks["keys"][0]["kid"], issued["kid"], "{jwks}");
    let v = jose_verify(&jwks, token);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["protectedHeader"]["alg"], "EdDSA", "{v}");
    assert_eq!(v["payload"]["ver"], "act.v0.2", "{v}");
    assert_eq!(v["payload"]["iss"], issuer, "{v}");
    assert_eq!(v["payload"]["agent"], agent.as_str(), "{v}");
    assert_eq!(v["payload"]["user"], "demo-user", "{v}");
    assert_eq!(v["payload"]["demo"], true, "{v}");
    assert_eq!(v["payload"]["policy_hash"], issued["policy_hash"], "{v}");
    let exp = v["payload"]["exp"].as_i64().unwrap();
    assert_eq!(exp - v["payload"]["iat"].as_i64().unwrap(), 3600, "{v}");
    // Another key's JWKS does not verify it (the check above can fail).
    let other = json!({"keys": [SigningKey::generate(bonafide_core::keys::Algorithm::EdDSA)
        .unwrap().verifying_key().jwk()]});
    assert_eq!(jose_verify(&other, token)["ok"], false);

    // The hosted verifier decides it as any consent token: its policy applies and the
    // answer says it is a demo token.
    let (st, r) = h
        .call(
            "POST",
            "/v1/receivers",
            Some(&h.admin),
            Some(json!({"name": "merchant.example"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let receiver = r["api_key"].as_str().unwrap().to_owned();
    let (st, v) = h
        .call(
            "POST",
            &format!("{BASE}/verify"),
            Some(&receiver),
            Some(json!({"token": token, "amount": 120, "currency": "USD"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["decision"], "ALLOW", "{v}");
    assert_eq!(v["demo_token"], true, "{v}");
    assert!(v["warning"].as_str().unwrap().contains("demo"), "{v}");
    let (st, v) = h
        .call(
            "POST",
            &format!("{BASE}/verify"),
            Some(&receiver),
            Some(json!({"token": token, "amount": 600, "currency": "USD"})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["decision"], "DENY", "{v}");
    // Anywhere else it is refused: a receiver's own checks never take a demo token.
    for (path, body) in [
        ("/v1/verify", json!({"token": token})),
        (
            "/api/v1/verify",
            json!({"token": token, "target_resource": "merchant.example"}),
        ),
    ] {
        let (st, v) = h.call("POST", path, Some(&receiver), Some(body)).await;
        assert_eq!(st, StatusCode::OK, "{path}: {v}");
        assert_eq!(v["valid"], false, "{path}: {v}");
        assert_eq!(v["error"]["code"], "TOKEN_INVALID", "{path}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("playground"),
            "{path}: {v}"
        );
    }
    let (st, v) = h
        .call("GET", &format!("/v1/verify/{token}"), None, None)
        .await;
    assert_eq!(v["valid"], false, "{st} {v}");
    // A token of an ordinary issuer is not marked.
    let w = world().await;
    let c = issue_consent(&w.key, &w.kid, &w.agent, "payments.send", &travel_policy());
    let (st, v) =
        w.h.call(
            "POST",
            &format!("{BASE}/verify"),
            None,
            Some(json!({"token": c.token})),
        )
        .await;
    // Valid, and denied only by its policy (no resource or amount asked).
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["valid"], true, "{v}");
    assert!(v.get("demo_token").is_none(), "{v}");

    // Any label and any of the demo actions: the one demo agent, and nothing stored.
    let size = h.state.store.audit_size().await.unwrap();
    let mut other = demo_policy();
    other["actions"] = json!(["read:calendar", "payments.send"]);
    let (st, again) = h
        .call(
            "POST",
            &format!("{BASE}/playground/issue-demo-token"),
            None,
            Some(json!({"policy": other, "agent_id": "Acme Bank Payments"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{again}");
    assert_eq!(again["agent_id"], agent.as_str(), "{again}");
    assert_eq!(again["agent_label"], "Acme Bank Payments", "{again}");
    assert_ne!(again["token"], issued["token"]);
    assert_eq!(h.state.store.audit_size().await.unwrap(), size);
    // The demo issuer and agent were made once, at start, in the audit log.
    let registered = audit_entries_of(&h, "agent.registered").await;
    assert_eq!(registered.len(), 1, "{registered:?}");
    assert_eq!(registered[0]["issuer"], issuer);
    assert_eq!(audit_entries_of(&h, "issuer.created").await.len(), 1);
    // Its name is reserved: no one else registers it.
    for name in ["bonafide-playground", "https://Bonafide-Playground/"] {
        let (st, v) = h
            .call(
                "POST",
                "/v1/issuers",
                Some(&h.admin),
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("reserved"),
            "{v}"
        );
    }
}

#[tokio::test]
async fn the_playground_refuses_bad_input_is_limited_per_address_and_is_off_by_default() {
    // Off: a clear 404 in AgentOAuth's shape, for both routes.
    let off = start().await;
    for (method, path) in [
        ("POST", "/playground/issue-demo-token"),
        ("GET", "/playground/.well-known/jwks.json"),
    ] {
        let body = (method == "POST").then(|| json!({"policy": demo_policy()}));
        let (st, v) = off.call(method, &format!("{BASE}{path}"), None, body).await;
        assert_refused(st, &v, StatusCode::NOT_FOUND, "NOT_FOUND");
        assert!(
            v["message"].as_str().unwrap().contains("--playground"),
            "{v}"
        );
    }

    let h = playground(Some("playground=7/h")).await;
    let size = h.state.store.audit_size().await.unwrap();
    let url = format!("{BASE}/playground/issue-demo-token");
    let cases = [
        (
            json!({"policy": {"version": "pol.v0.2"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "POLICY_INVALID",
        ),
        (
            json!({"policy": {"version": "pol.v0.2", "id": "p", "actions": ["wire.transfer"]}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "POLICY_INVALID",
        ),
        (
            json!({"policy": demo_policy(), "expires_in": 10}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            json!({"policy": demo_policy(), "expires_in": 86_401}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            json!({"policy": demo_policy(), "agent_id": ""}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            json!({"policy": demo_policy(), "issuer": "me"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
    ];
    for (body, status, code) in &cases {
        let (st, v) = h.call("POST", &url, None, Some(body.clone())).await;
        assert_refused(st, &v, *status, code);
    }
    let (st, text, _) = raw(&h, "POST", &url, None, Some("{not json")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");
    // Seven asks an hour from this address (the refusals above counted): the next is
    // a 429 with the limit's fields; nothing was stored.
    let (st, v) = h
        .call("POST", &url, None, Some(json!({"policy": demo_policy()})))
        .await;
    assert_refused(st, &v, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    let resp = h
        .http
        .post(format!("{}{url}", h.base))
        .json(&json!({"policy": demo_policy()}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().get("retry-after").is_some());
    assert_eq!(
        resp.headers()["ratelimit-policy"].to_str().unwrap(),
        "\"playground\";q=7;w=3600"
    );
    assert_eq!(h.state.store.audit_size().await.unwrap(), size);
}

/// The push events a receiver following `issuer` has been sent (JSON pages).
async fn events_of(h: &Harness, receiver_key: &str, issuer: &str) -> Vec<Value> {
    let (st, v) = h
        .call(
            "GET",
            &format!("/v1/events?issuer={issuer}"),
            Some(receiver_key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["events"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_policy_revocation_reaches_the_revoking_issuers_subscribers_as_an_event() {
    let w = world().await;
    let h = &w.h;
    let other = h.issuer_full("other.example").await;
    let (st, v) = h
        .call(
            "POST",
            "/v1/policies/revoke",
            Some(&w.iss.key),
            Some(json!({"policy_id": "pol_travel_001"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let revocation_id = bonafide_core::token::policy_revocation_id(
        &IssuerId::try_from(w.iss.id.as_str()).unwrap(),
        "pol_travel_001",
    );
    // The publisher turns the change into an event within moments.
    let revocations = |events: Vec<Value>| -> Vec<Value> {
        events
            .into_iter()
            .filter(|e| e["event"] == "token.revoked")
            .collect()
    };
    let mut events = Vec::new();
    for _ in 0..300 {
        events = revocations(events_of(h, &w.receiver_key, &w.iss.id).await);
        if !events.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event"], "token.revoked");
    let set = events[0]["set"].as_str().unwrap();
    let claims: Value = serde_json::from_slice(
        &bonafide_core::b64::decode(set.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub_id"]["id"], revocation_id.as_str(), "{claims}");
    assert!(claims["toe"].as_i64().is_some(), "{claims}");
    // Subscribers following only another issuer are not sent it.
    assert!(revocations(events_of(h, &w.receiver_key, &other.id).await).is_empty());
}
