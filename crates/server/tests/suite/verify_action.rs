//! `POST /v1/agents/{id}/verify-action` over HTTP, with actions signed by Python
//! `cryptography` (a real outside signer): a genuine action, its replay, a stale
//! timestamp, a signature by an unregistered key presented with that key, an agent
//! without a key, scopes and policy, status, and the audit entries.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Harness, now_s, start};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn python() -> PathBuf {
    common::interop_python()
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/python/agent_key.py")
}

/// An Ed25519 key made by Python; the private key stays in its temp file.
struct Signer {
    jwk: Value,
    key_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Signer {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("agent.pem");
        let out = Command::new(python())
            .arg(script())
            .args(["keygen", "--alg", "Ed25519", "--key-file"])
            .arg(&key_file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        Signer {
            jwk: v["jwk"].clone(),
            key_file,
            _dir: dir,
        }
    }

    /// Standard padded base64 of the signature over `message`, made by Python.
    fn sign(&self, message: &str) -> String {
        let out = Command::new(python())
            .arg(script())
            .args(["sign", "--key-file"])
            .arg(&self.key_file)
            .args(["--message", message])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// A signed request body for `agent`.
    fn action(&self, agent: &str, action: &str, resource: &str, ts: i64, nonce: &str) -> Value {
        let sig = self.sign(&format!("{agent}:{action}:{resource}:{ts}:{nonce}"));
        json!({"action": action, "resource": resource, "timestamp": ts, "nonce": nonce, "signature": sig})
    }
}

async fn ask(h: &Harness, agent: &str, body: Value) -> Value {
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent}/verify-action"),
            None,
            Some(body),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

fn assert_denied(v: &Value, code: &str) {
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(v["reasons"], json!([code]), "{v}");
    // Refused before its signature checked out: it concerns no agent's act and is
    // counted, not logged (issue 13); anything the agent signed is logged.
    let unsigned = [
        "TIMESTAMP_OUT_OF_WINDOW",
        "NO_AGENT_KEY",
        "SIGNATURE_INVALID",
    ];
    assert_eq!(v["audit_index"].is_u64(), !unsigned.contains(&code), "{v}");
}

async fn agent_with_key(h: &Harness, iss: &str, signer: &Signer, extra: Value) -> String {
    let mut body =
        json!({"name": "Signer bot", "scopes": ["read:portfolio"], "public_key": signer.jwk});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    h.register(iss, body).await["agent_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_signed_action_is_allowed_once_and_its_replay_refused() {
    let h = start().await;
    let iss = h.issuer("signed.example").await;
    let signer = Signer::new();
    let agent = agent_with_key(&h, &iss, &signer, json!({})).await;
    let body = signer.action(&agent, "read:portfolio", "acct-42", now_s(), "nonce-1");

    let v = ask(&h, &agent, body.clone()).await;
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["reasons"], json!([]));
    let index = v["audit_index"].as_u64().unwrap();

    // The same signed request again: a replay, audited too.
    let v = ask(&h, &agent, body.clone()).await;
    assert_denied(&v, "REPLAY");
    assert!(v["audit_index"].as_u64().unwrap() > index);

    // The replay cache is durable: a restarted registry still refuses it.
    let h = h.restart().await;
    let v = ask(&h, &agent, body).await;
    assert_denied(&v, "REPLAY");

    // base64url is accepted too; a fresh nonce is a new action.
    let mut url = signer.action(&agent, "read:portfolio", "acct-42", now_s(), "nonce-2");
    let std_sig = url["signature"].as_str().unwrap().to_owned();
    url["signature"] = json!(
        std_sig
            .trim_end_matches('=')
            .replace('+', "-")
            .replace('/', "_")
    );
    assert_eq!(ask(&h, &agent, url).await["allowed"], true);

    // The decision entries name the agent, the action as target, and the outcome.
    let (st, entries) = h
        .call(
            "GET",
            &format!("/v1/audit/entries?start={index}&end={}", index + 1),
            Some(&h.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{entries}");
    let entry: Value =
        serde_json::from_str(entries["entries"][0]["entry"].as_str().unwrap()).unwrap();
    assert_eq!(entry["type"], "verify", "{entry}");
    assert_eq!(entry["agent"], agent.as_str());
    assert_eq!(entry["target"], "read:portfolio");
    assert_eq!(entry["decision"], "allow");
}

#[tokio::test]
async fn stale_forged_and_keyless_actions_are_refused() {
    let h = start().await;
    let iss = h.issuer("refused.example").await;
    let signer = Signer::new();
    let agent = agent_with_key(&h, &iss, &signer, json!({})).await;

    for ts in [now_s() - 400, now_s() + 400] {
        let v = ask(
            &h,
            &agent,
            signer.action(&agent, "read:portfolio", "r", ts, "stale"),
        )
        .await;
        assert_denied(&v, "TIMESTAMP_OUT_OF_WINDOW");
    }

    // A signature by a key the registry does not hold, presented with that key.
    let intruder = Signer::new();
    let mut forged = intruder.action(&agent, "read:portfolio", "r", now_s(), "forged");
    forged["public_key"] = intruder.jwk.clone();
    assert_denied(&ask(&h, &agent, forged).await, "SIGNATURE_INVALID");
    // A genuine signature over other fields does not carry over.
    let mut moved = signer.action(&agent, "read:portfolio", "r", now_s(), "moved");
    moved["resource"] = json!("other");
    assert_denied(&ask(&h, &agent, moved).await, "SIGNATURE_INVALID");
    // A refused signature does not use up the nonce: the genuine request still works.
    let v = ask(
        &h,
        &agent,
        signer.action(&agent, "read:portfolio", "r", now_s(), "forged"),
    )
    .await;
    assert_eq!(v["allowed"], true, "{v}");

    // An action outside the agent's scopes (it has no policy).
    let v = ask(
        &h,
        &agent,
        signer.action(&agent, "write:portfolio", "r", now_s(), "w"),
    )
    .await;
    assert_denied(&v, "SCOPE_NOT_GRANTED");

    // An agent without a registered key: the request's key is never trusted.
    let bare = h
        .register(&iss, json!({"name": "Bare", "scopes": ["read:portfolio"]}))
        .await["agent_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut offered = signer.action(&bare, "read:portfolio", "r", now_s(), "n");
    offered["public_key"] = signer.jwk.clone();
    assert_denied(&ask(&h, &bare, offered).await, "NO_AGENT_KEY");

    // Unknown agent: 404; malformed fields: 422.
    let (st, _) = h
        .call(
            "POST",
            "/v1/agents/agt_aaaaaaaaaaaaaaaaaaaaaaaaaa/verify-action",
            None,
            Some(signer.action(
                "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa",
                "read:portfolio",
                "r",
                now_s(),
                "n",
            )),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    for bad in [
        json!({"resource": "a:b"}),
        json!({"nonce": ""}),
        json!({"nonce": "x".repeat(129)}),
        json!({"nonce": "a:b"}),
        json!({"action": ""}),
    ] {
        let mut body = signer.action(&agent, "read:portfolio", "r", now_s(), "ok");
        for (k, v) in bad.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (st, v) = h
            .call(
                "POST",
                &format!("/v1/agents/{agent}/verify-action"),
                None,
                Some(body),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
    }
}

#[tokio::test]
async fn policy_actions_status_and_rotation_apply() {
    let h = start().await;
    let iss = h.issuer("policy.example").await;
    let signer = Signer::new();
    let policy = json!({"version": "pol.v0.2", "id": "pol_pay", "actions": ["payments.send"]});
    let agent = agent_with_key(&h, &iss, &signer, json!({"policy": policy})).await;
    let v = ask(
        &h,
        &agent,
        signer.action(&agent, "payments.send", "merchant-1", now_s(), "p1"),
    )
    .await;
    assert_eq!(v["allowed"], true, "{v}");
    let v = ask(
        &h,
        &agent,
        signer.action(&agent, "payments.refund", "merchant-1", now_s(), "p2"),
    )
    .await;
    assert_denied(&v, "POLICY_ACTION");
    // With a policy, the policy decides alone: a granted scope does not bypass it.
    let v = ask(
        &h,
        &agent,
        signer.action(&agent, "read:portfolio", "merchant-1", now_s(), "p3"),
    )
    .await;
    assert_denied(&v, "POLICY_ACTION");

    // After a rotation with no grace, only the new key signs for the agent.
    let next = Signer::new();
    let (st, _) = h
        .call(
            "PUT",
            &format!("/v1/agents/{agent}/keys"),
            Some(&iss),
            Some(json!({"public_key": next.jwk, "grace_seconds": 0})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let v = ask(
        &h,
        &agent,
        signer.action(&agent, "payments.send", "m", now_s(), "r1"),
    )
    .await;
    assert_denied(&v, "SIGNATURE_INVALID");
    let v = ask(
        &h,
        &agent,
        next.action(&agent, "payments.send", "m", now_s(), "r2"),
    )
    .await;
    assert_eq!(v["allowed"], true, "{v}");

    // Suspended, then revoked.
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent}/suspend"),
            Some(&iss),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let v = ask(
        &h,
        &agent,
        next.action(&agent, "payments.send", "m", now_s(), "s1"),
    )
    .await;
    assert_denied(&v, "AGENT_SUSPENDED");
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent}/revoke"),
            Some(&iss),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let v = ask(
        &h,
        &agent,
        next.action(&agent, "payments.send", "m", now_s(), "s2"),
    )
    .await;
    assert_denied(&v, "AGENT_REVOKED");
}

#[tokio::test]
async fn the_whole_policy_applies_to_a_signed_action() {
    let h = start().await;
    let iss = h.issuer("rules.example").await;
    let signer = Signer::new();
    // Only merchant m1 (resource `merchant/m1`), in a window that is never now.
    let hour = (now_s() / 3600 + 12) % 24;
    let policy = json!({
        "version": "pol.v0.2", "id": "pol_rules", "actions": ["payments.send"],
        "resources": [{"type": "merchant", "match": {"ids": ["m1"]}}],
        "constraints": {"time": {"start": format!("{hour:02}:00"), "end": format!("{hour:02}:01"), "tz": "UTC"}}
    });
    let agent = agent_with_key(&h, &iss, &signer, json!({"policy": policy})).await;
    let v = ask(
        &h,
        &agent,
        signer.action(&agent, "payments.send", "merchant/m2", now_s(), "w1"),
    )
    .await;
    assert_denied(&v, "POLICY_RESOURCE");
    assert!(v["reason"].as_str().unwrap().contains("m2"), "{v}");
    let v = ask(
        &h,
        &agent,
        signer.action(&agent, "payments.send", "merchant/m1", now_s(), "w2"),
    )
    .await;
    assert_denied(&v, "TIME_WINDOW");
    // A resource without a type matches no typed rule.
    let v = ask(
        &h,
        &agent,
        signer.action(&agent, "payments.send", "m1", now_s(), "w3"),
    )
    .await;
    assert_denied(&v, "POLICY_RESOURCE");

    // A policy with spending limits refuses an action that carries no amount.
    let limited = json!({
        "version": "pol.v0.2", "id": "pol_lim", "actions": ["payments.send"],
        "limits": {"per_txn": {"amount": "10.00", "currency": "USD"}}
    });
    let agent = agent_with_key(&h, &iss, &signer, json!({"policy": limited})).await;
    let v = ask(
        &h,
        &agent,
        signer.action(&agent, "payments.send", "merchant/m1", now_s(), "l1"),
    )
    .await;
    assert_denied(&v, "AMOUNT_REQUIRED");
}

#[tokio::test]
async fn the_window_edges_and_absurd_timestamps() {
    let h = start().await;
    let iss = h.issuer("edges.example").await;
    let signer = Signer::new();
    let agent = agent_with_key(&h, &iss, &signer, json!({})).await;
    // 299 s old is inside the window (a margin for the test's own clock), and its
    // replay stays refused until long after the window closes for it.
    let body = signer.action(&agent, "read:portfolio", "r", now_s() - 299, "edge-1");
    assert_eq!(ask(&h, &agent, body.clone()).await["allowed"], true);
    assert_denied(&ask(&h, &agent, body).await, "REPLAY");
    let body = signer.action(&agent, "read:portfolio", "r", now_s() + 299, "edge-2");
    assert_eq!(ask(&h, &agent, body).await["allowed"], true);
    for ts in [
        now_s() - 302,
        now_s() + 302,
        i64::MIN,
        i64::MAX,
        i64::MIN + now_s(),
    ] {
        let body = signer.action(&agent, "read:portfolio", "r", ts, "edge-3");
        assert_denied(&ask(&h, &agent, body).await, "TIMESTAMP_OUT_OF_WINDOW");
    }
}

/// AIM's call as its product page writes it: `/api/v1/agents/{id}/verify-action`,
/// the agent's own JWT as the bearer (ignored: the signature is the proof), a
/// timestamp as a string of digits and a standard-base64 nonce ending in `==`. A
/// refusal is 403 with the same body; the native route's rules all apply.
#[tokio::test]
async fn aims_own_verify_action_call_works_as_written() {
    let h = start().await;
    let iss = h.issuer("aim.example").await;
    let signer = Signer::new();
    let registered = h
        .register(
            &iss,
            json!({"name": "Aim bot", "scopes": ["read:portfolio"], "public_key": signer.jwk, "allow_bearer_tokens": true}),
        )
        .await;
    let agent = registered["agent_id"].as_str().unwrap().to_owned();
    let token = registered["token"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/agents/{agent}/verify-action");
    let aim_body = |action: &str, nonce: &str| {
        let ts = now_s();
        let mut body = signer.action(&agent, action, "acct-42", ts, nonce);
        body["timestamp"] = json!(ts.to_string());
        body
    };

    let body = aim_body("read:portfolio", "q83vEjRWeJq83vEjRWeJqw==");
    let (st, v) = h
        .call("POST", &path, Some(&token), Some(body.clone()))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["allowed"], true, "{v}");
    assert!(v["audit_index"].is_u64(), "{v}");

    // The same request again: a replay, refused with 403 and audited.
    let (st, v) = h.call("POST", &path, Some(&token), Some(body)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_denied(&v, "REPLAY");

    // An action the agent was not granted: 403 with the native reason.
    let (st, v) = h
        .call(
            "POST",
            &path,
            Some(&token),
            Some(aim_body("write:portfolio", "bm9uY2UtMw==")),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_denied(&v, "SCOPE_NOT_GRANTED");

    // A Bonafide key that is wrong is still a 401, never ignored.
    let stray = bonafide_core::apikey::ApiKey::from_random(
        bonafide_core::apikey::KeyKind::Receiver,
        [9; 20],
    );
    let (st, v) = h
        .call(
            "POST",
            &path,
            Some(stray.expose_secret()),
            Some(aim_body("read:portfolio", "bm9uY2UtNA==")),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");

    // A timestamp that is not Unix seconds, and an unknown agent, are refused plainly.
    let mut bad = aim_body("read:portfolio", "bm9uY2UtNQ==");
    bad["timestamp"] = json!("12ab");
    let (st, v) = h.call("POST", &path, Some(&token), Some(bad)).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (st, v) = h
        .call(
            "POST",
            "/api/v1/agents/agt_aaaaaaaaaaaaaaaaaaaaaaaaaa/verify-action",
            None,
            Some(aim_body("read:portfolio", "bm9uY2UtNg==")),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
}
