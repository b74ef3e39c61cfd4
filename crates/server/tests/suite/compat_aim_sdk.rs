//! The aim-sdk Tier 1 surface under `/api/v1` over HTTP, with requests signed the
//! way aim-sdk 2.0.3 signs them (`interop/python/aim_sdk_sign.py`: Python's
//! `json.dumps` and PyNaCl, not Bonafide's code): verifications allowed (201) and
//! denied (403) in AIM's shape, the signed poll, `capabilities/register` granting
//! nothing, `GET /api/v1/agents/{id}`, and every refusal a 4xx whose `error` is a
//! string: a signature by another key, a tampered body, a stale timestamp, replay,
//! unknown agents, another agent's or issuer's objects, malformed bodies.
//! (The SDK itself, unchanged, runs in the CLI suite: `aim_sdk.rs`.)

use crate::common;

use std::process::Command;

use bonafide_core::keys::{Algorithm, SigningKey};
use common::{Harness, now_s, start};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// An agent key made here; the signing is done by Python.
pub(crate) struct AgentKey {
    seed: String,
    jwk: Value,
}

impl AgentKey {
    pub(crate) fn new() -> Self {
        let sk = SigningKey::generate(Algorithm::EdDSA).unwrap();
        AgentKey {
            seed: std_b64(&sk.ed25519_seed().unwrap()),
            jwk: serde_json::to_value(sk.verifying_key().jwk()).unwrap(),
        }
    }

    /// The SDK's base64 of the public key.
    fn public_b64(&self) -> String {
        std_b64(&bonafide_core::b64::decode(self.jwk["x"].as_str().unwrap()).unwrap())
    }

    fn sign(&self, args: &[&str]) -> Value {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../interop/python/aim_sdk_sign.py");
        let out = Command::new(common::interop_python())
            .arg(script)
            .arg(args[0])
            .arg(&self.seed)
            .args(&args[1..])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The SDK's verification body.
    pub(crate) fn verification(
        &self,
        agent: &str,
        capability: &str,
        resource: Value,
        context: Value,
    ) -> Value {
        self.sign(&[
            "verification",
            agent,
            capability,
            &resource.to_string(),
            &context.to_string(),
        ])
    }
}

fn std_b64(bytes: &[u8]) -> String {
    let mut s: String = bonafide_core::b64::encode(bytes)
        .replace('-', "+")
        .replace('_', "/");
    while !s.len().is_multiple_of(4) {
        s.push('=');
    }
    s
}

pub(crate) async fn agent_with(h: &Harness, iss: &str, key: &AgentKey, scopes: &[&str]) -> String {
    h.register(
        iss,
        json!({"name": "Order bot", "scopes": scopes, "public_key": key.jwk}),
    )
    .await["agent_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A call with headers, answered as (status, body).
async fn send(
    h: &Harness,
    method: &str,
    path: &str,
    headers: &Value,
    body: Option<String>,
) -> (StatusCode, Value) {
    let url = format!("{}{path}", h.base);
    let mut req = match method {
        "GET" => h.http.get(&url),
        _ => h.http.post(&url),
    };
    for (k, v) in headers.as_object().unwrap() {
        req = req.header(k.as_str(), v.as_str().unwrap());
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn create(h: &Harness, body: &Value) -> (StatusCode, Value) {
    send(
        h,
        "POST",
        "/api/v1/sdk-api/verifications",
        &json!({}),
        Some(body.to_string()),
    )
    .await
}

/// A refusal in the SDK's shape: the status, and `error` a string.
#[track_caller]
fn assert_refused(got: &(StatusCode, Value), status: StatusCode) {
    assert_eq!(got.0, status, "{}", got.1);
    assert!(
        got.1["error"].is_string(),
        "`error` must be a string: {}",
        got.1
    );
}

#[track_caller]
fn assert_verification(got: &(StatusCode, Value), approved: bool, reason: Option<&str>) -> String {
    let (st, v) = got;
    let want = if approved {
        StatusCode::CREATED
    } else {
        StatusCode::FORBIDDEN
    };
    assert_eq!(*st, want, "{v}");
    assert_eq!(
        v["status"],
        if approved { "approved" } else { "denied" },
        "{v}"
    );
    assert_eq!(v["enforcementMode"], "strict", "{v}");
    assert_eq!(v["denialReason"].is_string(), !approved, "{v}");
    assert_eq!(
        v["reasons"],
        json!(reason.into_iter().collect::<Vec<_>>()),
        "{v}"
    );
    let id = v["id"].as_str().unwrap().to_owned();
    // A random id (the SDK's reports are authorised by holding it), not the index.
    let rest = id.strip_prefix("ver_").unwrap_or_else(|| panic!("{v}"));
    assert_eq!(rest.len(), 22, "{v}");
    assert!(v["auditIndex"].is_u64(), "{v}");
    id
}

#[tokio::test]
async fn verifications_are_the_native_verdict_in_aims_shape_and_the_poll_is_the_agents_own() {
    let h = start().await;
    let iss = h.issuer("aim-sdk.example").await;
    let key = AgentKey::new();
    let agent = agent_with(&h, &iss, &key, &["orders:read"]).await;
    // Escapes and floats as Python writes them are part of what is signed.
    let context = json!({"b": 1.5, "a": "é – ok", "n": [1, null, true, 1e-7], "z": {}});

    let allowed = key.verification(&agent, "orders:read", json!("orders/1"), context.clone());
    let first = create(&h, &allowed).await;
    let approved_id = assert_verification(&first, true, None);
    // The same signed request again: a replay, refused and audited.
    let again = create(&h, &allowed).await;
    assert_verification(&again, false, Some("REPLAY"));
    // No resource at all (the SDK sends null).
    let no_resource = key.verification(&agent, "orders:read", Value::Null, json!({}));
    assert_verification(&create(&h, &no_resource).await, true, None);
    // Not granted: the native reason, the SDK's denialReason.
    let refund = key.verification(&agent, "orders:refund", json!("orders/1"), json!({}));
    let denied = create(&h, &refund).await;
    let denied_id = assert_verification(&denied, false, Some("SCOPE_NOT_GRANTED"));

    // The poll, signed by the agent: each verification as decided.
    for (id, status) in [(&approved_id, "approved"), (&denied_id, "denied")] {
        let headers = key.sign(&["poll", &agent, id]);
        let (st, v) = send(
            &h,
            "GET",
            &format!("/api/v1/sdk-api/verifications/{id}"),
            &headers,
            None,
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(
            (v["id"].as_str(), v["status"].as_str()),
            (Some(id.as_str()), Some(status)),
            "{v}"
        );
    }

    // Another agent (another issuer's, even) polling it: as if it did not exist.
    let other_iss = h.issuer("other.example").await;
    let other_key = AgentKey::new();
    let other = agent_with(&h, &other_iss, &other_key, &["orders:read"]).await;
    let path = format!("/api/v1/sdk-api/verifications/{approved_id}");
    let headers = other_key.sign(&["poll", &other, &approved_id]);
    assert_refused(
        &send(&h, "GET", &path, &headers, None).await,
        StatusCode::NOT_FOUND,
    );
    // An entry that is not a verification of this agent, and ids that are not ids.
    let unknown = format!("ver_{}", "A".repeat(22));
    for id in ["audit-0", "audit-1", "xyz", "ver_", &unknown] {
        let headers = key.sign(&["poll", &agent, id]);
        let got = send(
            &h,
            "GET",
            &format!("/api/v1/sdk-api/verifications/{id}"),
            &headers,
            None,
        )
        .await;
        assert_refused(&got, StatusCode::NOT_FOUND);
    }
    // Signed for another verification, by another key, or not at all: 401.
    let wrong_id = key.sign(&["poll", &agent, &denied_id]);
    assert_refused(
        &send(&h, "GET", &path, &wrong_id, None).await,
        StatusCode::UNAUTHORIZED,
    );
    let mut by_other = other_key.sign(&["poll", &other, &approved_id]);
    by_other["X-AIM-Agent-ID"] = json!(agent);
    assert_refused(
        &send(&h, "GET", &path, &by_other, None).await,
        StatusCode::UNAUTHORIZED,
    );
    assert_refused(
        &send(&h, "GET", &path, &json!({}), None).await,
        StatusCode::UNAUTHORIZED,
    );
    let stale = key.sign(&["poll", &agent, &approved_id, &(now_s() - 600).to_string()]);
    assert_refused(
        &send(&h, "GET", &path, &stale, None).await,
        StatusCode::UNAUTHORIZED,
    );

    // Revoked: signed, so refused for its standing, in AIM's shape.
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent}/revoke"),
            Some(&iss),
            Some(json!({})),
        )
        .await;
    assert!(st.is_success(), "{v}");
    let after = key.verification(&agent, "orders:read", json!("orders/1"), json!({}));
    assert_verification(&create(&h, &after).await, false, Some("AGENT_REVOKED"));
}

#[tokio::test]
async fn verification_refusals_are_clear_4xx_in_aims_shape() {
    let h = start().await;
    let iss = h.issuer("aim-sdk.example").await;
    let key = AgentKey::new();
    let agent = agent_with(&h, &iss, &key, &["orders:read"]).await;

    // Signed by a key the agent never registered, though the body names it as its own.
    let stranger = AgentKey::new();
    let mut forged = stranger.verification(&agent, "orders:read", json!("orders/1"), json!({}));
    forged["publicKey"] = json!(stranger.public_b64());
    let got = create(&h, &forged).await;
    assert_refused(&got, StatusCode::UNAUTHORIZED);
    assert_eq!(got.1["reason"], "SIGNATURE_INVALID", "{}", got.1);
    // A genuine signature over another body.
    let mut tampered = key.verification(&agent, "orders:read", json!("orders/1"), json!({}));
    tampered["resource"] = json!("orders/2");
    assert_refused(&create(&h, &tampered).await, StatusCode::UNAUTHORIZED);
    // Signed ten minutes ago.
    let old = jiff::Timestamp::from_second(now_s() - 600).unwrap();
    let stale = key.sign(&[
        "verification",
        &agent,
        "orders:read",
        "null",
        "{}",
        &old.to_string(),
    ]);
    let got = create(&h, &stale).await;
    assert_refused(&got, StatusCode::UNAUTHORIZED);
    assert_eq!(got.1["reason"], "TIMESTAMP_OUT_OF_WINDOW", "{}", got.1);

    // Unknown agents: well-formed or not.
    let unknown = key.verification(
        "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa",
        "orders:read",
        Value::Null,
        json!({}),
    );
    assert_refused(&create(&h, &unknown).await, StatusCode::NOT_FOUND);
    let nonsense = key.verification("550e8400-e29b-41d4", "orders:read", Value::Null, json!({}));
    assert_refused(&create(&h, &nonsense).await, StatusCode::NOT_FOUND);

    // Malformed bodies.
    let no_headers = json!({});
    let raw = |b: &str| {
        send(
            &h,
            "POST",
            "/api/v1/sdk-api/verifications",
            &no_headers,
            Some(b.to_owned()),
        )
    };
    assert_refused(&raw("{not json").await, StatusCode::BAD_REQUEST);
    assert_refused(&raw("[]").await, StatusCode::UNPROCESSABLE_ENTITY);
    let good = key.verification(&agent, "orders:read", Value::Null, json!({}));
    for (member, value) in [
        ("timestamp", json!("yesterday")),
        ("timestamp", json!(12)),
        ("capability", json!("")),
        ("context", json!([1])),
        ("extra", json!(1)),
    ] {
        let mut b = good.clone();
        b[member] = value;
        assert_refused(&create(&h, &b).await, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let mut b = good.clone();
    b.as_object_mut().unwrap().remove("signature");
    assert_refused(&create(&h, &b).await, StatusCode::UNPROCESSABLE_ENTITY);
    // The untouched body still verifies: none of the above spent it.
    assert_verification(&create(&h, &good).await, true, None);
}

#[tokio::test]
async fn capabilities_register_grants_nothing_and_agents_are_404_only_when_unknown() {
    let h = start().await;
    let iss = h.issuer("aim-sdk.example").await;
    let key = AgentKey::new();
    let agent = agent_with(&h, &iss, &key, &["orders:read"]).await;
    let path = format!("/api/v1/sdk-api/agents/{agent}/capabilities/register");
    let register = |cap: &str| {
        let signed = key.sign(&["register", &agent, cap]);
        (
            signed["headers"].clone(),
            signed["body"].as_str().unwrap().to_owned(),
        )
    };

    let (headers, body) = register("orders:read");
    let (st, v) = send(&h, "POST", &path, &headers, Some(body)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "already_exists", "{v}");
    let (headers, body) = register("orders:refund");
    let got = send(&h, "POST", &path, &headers, Some(body.clone())).await;
    assert_refused(&got, StatusCode::FORBIDDEN);
    assert_eq!(got.1["status"], "not_granted", "{}", got.1);
    let (_, shown) = h
        .call("GET", &format!("/v1/agents/{agent}"), Some(&iss), None)
        .await;
    assert_eq!(shown["scopes"], json!(["orders:read"]), "{shown}");
    // Unsigned, signed over another body, or for another agent's path.
    assert_refused(
        &send(&h, "POST", &path, &json!({}), Some(body.clone())).await,
        StatusCode::UNAUTHORIZED,
    );
    let (headers, _) = register("orders:read");
    assert_refused(
        &send(&h, "POST", &path, &headers, Some(body)).await,
        StatusCode::UNAUTHORIZED,
    );
    let other_key = AgentKey::new();
    let other = agent_with(&h, &iss, &other_key, &["orders:read"]).await;
    let (headers, body) = register("orders:read");
    let other_path = format!("/api/v1/sdk-api/agents/{other}/capabilities/register");
    // Signed over this agent's path: it does not verify for the other one's.
    assert_refused(
        &send(&h, "POST", &other_path, &headers, Some(body)).await,
        StatusCode::UNAUTHORIZED,
    );

    // GET /api/v1/agents/{id}: anyone learns what its DID document says.
    let agent_path = format!("/api/v1/agents/{agent}");
    let (st, v) = h.call("GET", &agent_path, None, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "active", "{v}");
    assert_eq!(v["publicKey"], key.public_b64().as_str(), "{v}");
    assert!(v.get("name").is_none(), "{v}");
    let (st, v) = h.call("GET", &agent_path, Some(&iss), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["capabilities"], json!(["orders:read"]), "{v}");
    let other_iss = h.issuer("other.example").await;
    assert_refused(
        &h.call("GET", &agent_path, Some(&other_iss), None).await,
        StatusCode::FORBIDDEN,
    );
    for unknown in ["agt_aaaaaaaaaaaaaaaaaaaaaaaaaa", "550e8400-e29b-41d4"] {
        assert_refused(
            &h.call("GET", &format!("/api/v1/agents/{unknown}"), None, None)
                .await,
            StatusCode::NOT_FOUND,
        );
    }
    h.call(
        "POST",
        &format!("/v1/agents/{agent}/revoke"),
        Some(&iss),
        Some(json!({})),
    )
    .await;
    let (st, v) = h.call("GET", &agent_path, None, None).await;
    assert_eq!(
        (st, v["status"].as_str()),
        (StatusCode::OK, Some("revoked")),
        "{v}"
    );

    // Every other call under /api/v1: a 404 whose `error` is a string.
    for (method, path) in [
        ("GET", format!("/api/v1/sdk-api/agents/{agent}/mcp-servers")),
        ("GET", format!("/api/v1/agents/{agent}/capabilities")),
        ("POST", "/api/v1/public/agents/register".to_owned()),
    ] {
        let got = h.call(method, &path, None, Some(json!({}))).await;
        assert_refused(&got, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn reports_are_kept_once_beside_the_decision_for_whoever_holds_the_id() {
    let h = start().await;
    let iss = h.issuer("aim-reports.example").await;
    let key = AgentKey::new();
    let agent = agent_with(&h, &iss, &key, &["orders:read"]).await;
    let allowed = key.verification(&agent, "orders:read", json!("orders/1"), json!({}));
    let id = assert_verification(&create(&h, &allowed).await, true, None);
    let denied_body = key.verification(&agent, "orders:refund", Value::Null, json!({}));
    let denied = assert_verification(
        &create(&h, &denied_body).await,
        false,
        Some("SCOPE_NOT_GRANTED"),
    );
    let result_path = format!("/api/v1/sdk-api/verifications/{id}/result");
    let exec_path = format!("/api/v1/sdk-api/verifications/{id}/execution-status");
    // Exactly what aim-sdk 2.0.3 sends: no signature, no key.
    let result = json!({
        "result": "success",
        "result_summary": "1 order read",
        "error_message": null,
        "timestamp": "2026-12-05T10:00:00.123456+00:00",
    });
    let (st, v) = h
        .call("POST", &result_path, None, Some(result.clone()))
        .await;
    assert_eq!(
        (st, v["recorded"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{v}"
    );
    // The SDK retrying the same report: accepted, nothing changes.
    let (st, v) = h
        .call("POST", &result_path, None, Some(result.clone()))
        .await;
    assert_eq!(
        (st, v["recorded"].as_bool()),
        (StatusCode::OK, Some(false)),
        "{v}"
    );
    // A different second report: refused, the first stays.
    let mut other = result.clone();
    other["result"] = json!("failure");
    let got = h.call("POST", &result_path, None, Some(other)).await;
    assert_refused(&got, StatusCode::CONFLICT);
    let execution = json!({
        "executed": true,
        "strictMode": true,
        "executedAt": "2026-12-05T10:00:00.2+00:00",
    });
    let (st, v) = h.call("POST", &exec_path, None, Some(execution)).await;
    assert_eq!(
        (st, v["recorded"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{v}"
    );
    // A denied verification's report (the SDK reports `executed: false`).
    let (st, v) = h
        .call(
            "POST",
            &format!("/api/v1/sdk-api/verifications/{denied}/execution-status"),
            None,
            Some(json!({
                "executed": false,
                "strictMode": true,
                "executedAt": "2026-12-05T10:00:01+00:00",
                "executionError": "Action denied by policy",
            })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // The agent's poll shows both reports beside the decision.
    let headers = key.sign(&["poll", &agent, &id]);
    let (st, v) = send(
        &h,
        "GET",
        &format!("/api/v1/sdk-api/verifications/{id}"),
        &headers,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["result"]["result"], "success", "{v}");
    assert_eq!(v["result"]["result_summary"], "1 order read", "{v}");
    assert_eq!(v["executionStatus"]["executed"], true, "{v}");

    // Ids never given, and malformed reports: clear 404s and 422s, nothing recorded.
    let unknown = format!("ver_{}", "B".repeat(22));
    for vid in [unknown.as_str(), "audit-1", "ver_short"] {
        let got = h
            .call(
                "POST",
                &format!("/api/v1/sdk-api/verifications/{vid}/result"),
                None,
                Some(result.clone()),
            )
            .await;
        assert_refused(&got, StatusCode::NOT_FOUND);
    }
    let fresh = assert_verification(
        &create(
            &h,
            &key.verification(&agent, "orders:read", json!("orders/2"), json!({})),
        )
        .await,
        true,
        None,
    );
    let fresh_result = format!("/api/v1/sdk-api/verifications/{fresh}/result");
    let fresh_exec = format!("/api/v1/sdk-api/verifications/{fresh}/execution-status");
    for (path, body) in [
        (
            &fresh_result,
            json!({"result": "maybe", "timestamp": "2026-12-05T10:00:00Z"}),
        ),
        (
            &fresh_result,
            json!({"result": "success", "timestamp": "yesterday"}),
        ),
        (
            &fresh_result,
            json!({"result": "success", "timestamp": "2026-12-05T10:00:00Z", "result_summary": "x".repeat(2049)}),
        ),
        (
            &fresh_result,
            json!({"result": "success", "timestamp": "2026-12-05T10:00:00Z", "extra": 1}),
        ),
        (
            &fresh_exec,
            json!({"executed": "yes", "strictMode": true, "executedAt": "2026-12-05T10:00:00Z"}),
        ),
        (&fresh_exec, json!({"executed": true, "strictMode": true})),
    ] {
        let got = h.call("POST", path, None, Some(body)).await;
        assert!(
            got.0 == StatusCode::UNPROCESSABLE_ENTITY || got.0 == StatusCode::BAD_REQUEST,
            "{path}: {:?}",
            got
        );
        assert!(got.1["error"].is_string(), "{}", got.1);
    }
    // Nothing of those landed: the first real report is still the first.
    let (st, v) = h
        .call("POST", &fresh_result, None, Some(result.clone()))
        .await;
    assert_eq!(
        (st, v["recorded"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{v}"
    );
}
