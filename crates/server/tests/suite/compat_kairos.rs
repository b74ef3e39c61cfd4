//! KairosAI Identity's calls against the real server: its integration snippet from
//! its product page, run in Node with only the URL and key changed
//! (`interop/node/kairos/`); `POST /api/v1/verify` and its `decision`; registration
//! with `capabilities` and `signing_key_pub` (unbound unless `bind_token`), and the
//! agent-key rule it keeps; the JWKS under `/api/v1`; the verified badge (parsed as
//! XML) and its page.

use crate::common::{self, Harness};

use std::path::PathBuf;
use std::process::Command;

use bonafide_core::keys::{Algorithm, SigningKey};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A receiver verifying as `your-service` (the snippet's `target_resource`): its key.
async fn receiver(h: &Harness) -> String {
    let (st, v) = h
        .call(
            "POST",
            "/v1/receivers",
            Some(&h.admin),
            Some(json!({"name": "api.service.example", "audiences": ["your-service"]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v["api_key"].as_str().unwrap().to_owned()
}

fn pem(sk: &SigningKey) -> String {
    sk.verifying_key().public_pem().unwrap()
}

/// `POST /api/v1/agents/register` as KairosAI's clients send it.
async fn register(h: &Harness, key: &str, body: Value) -> (StatusCode, Value) {
    h.call("POST", "/api/v1/agents/register", Some(key), Some(body))
        .await
}

async fn kairos_verify(h: &Harness, rcv: &str, token: &str, scopes: &[&str]) -> Value {
    let (st, v) = h
        .call(
            "POST",
            "/api/v1/verify",
            Some(rcv),
            Some(json!({"token": token, "target_resource": "your-service", "scopes_requested": scopes})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v
}

/// The token's claims (unverified: the test looks at what it was given).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&bonafide_core::b64::decode(payload).unwrap()).unwrap()
}

/// Runs the snippet in Node for one request carrying `agent_token` (off the test's
/// runtime thread, which also serves the registry).
async fn run_snippet(h: &Harness, receiver_key: &str, agent_token: &str) -> Value {
    let mut cmd = Command::new("node");
    cmd.arg(repo_root().join("interop/node/kairos/run_snippet.mjs"))
        .env("BONAFIDE_URL", &h.base)
        .env("YOUR_API_KEY", receiver_key)
        .env("AGENT_TOKEN", agent_token);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("node is needed for the KairosAI snippet (see interop/README.md)");
    assert!(
        out.status.success(),
        "node: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn kairos_snippet_runs_unchanged_against_the_registry() {
    let h = common::start().await;
    let issuer = h.issuer("kairos-user.example").await;
    let rcv = receiver(&h).await;
    // KairosAI registration always sends the agent's key.
    let sk = SigningKey::generate(Algorithm::ES256).unwrap();
    let (st, reg) = register(
        &h,
        &issuer,
        json!({"name": "mail-helper", "capabilities": ["read:data"], "signing_key_pub": pem(&sk), "key_algorithm": "ES256"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{reg}");
    for member in ["did", "agent_id", "token", "token_expires_at", "created_at"] {
        assert!(reg[member].is_string(), "{member}: {reg}");
    }
    let agent = reg["agent_id"].as_str().unwrap();
    let token = reg["token"].as_str().unwrap();
    assert!(
        reg["did"].as_str().unwrap().starts_with("did:web:"),
        "{reg}"
    );
    assert!(reg["did"].as_str().unwrap().ends_with(agent), "{reg}");
    // Unbound, since the issuer did not ask for binding: the snippet's plain
    // `/verify` can pass.
    assert_eq!(reg["token_bound"], false);
    assert!(claims(token).get("cnf").is_none(), "{}", claims(token));

    let run = run_snippet(&h, &rcv, token).await;
    assert_eq!(run["answered"]["status"], 200, "{run}");
    assert_eq!(
        run["logged"],
        json!([
            format!("\"{}\"", reg["did"].as_str().unwrap()),
            "[\"read:data\"]"
        ]),
        "{run}"
    );

    // Revoked: the snippet's `allowed` is false and it answers 403.
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent}/revoke"),
            Some(&issuer),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let run = run_snippet(&h, &rcv, token).await;
    assert_eq!(run["answered"]["status"], 403, "{run}");
    assert_eq!(run["answered"]["body"]["error"], "Agent not authorized");
    assert_eq!(run["logged"], json!([]));
    // A token that is no token: refused too.
    let run = run_snippet(&h, &rcv, "garbage").await;
    assert_eq!(run["answered"]["status"], 403, "{run}");
}

#[tokio::test]
async fn kairos_verify_decisions_and_refusals() {
    let h = common::start().await;
    let issuer = h.issuer("decisions.example").await;
    let rcv = receiver(&h).await;
    let (st, reg) = register(
        &h,
        &issuer,
        json!({"name": "a", "capabilities": ["read:data", "read:calendar"]}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{reg}");
    let token = reg["token"].as_str().unwrap();
    let agent = reg["agent_id"].as_str().unwrap();

    let v = kairos_verify(&h, &rcv, token, &["read:data"]).await;
    assert_eq!(
        (v["allowed"].clone(), v["decision"].clone()),
        (json!(true), json!("ALLOWED")),
        "{v}"
    );
    assert_eq!(v["agent"]["did"], reg["did"]);
    // `active_scopes`: the scopes asked for and granted.
    assert_eq!(v["agent"]["active_scopes"], json!(["read:data"]));
    // A scope not granted: denied, and audited like the native decision.
    let v = kairos_verify(&h, &rcv, token, &["write:email"]).await;
    assert_eq!(
        (v["allowed"].clone(), v["decision"].clone()),
        (json!(false), json!("DENIED")),
        "{v}"
    );
    assert!(v["audit_index"].is_u64(), "{v}");
    // Another audience than the receiver's: the native 403, never an allow.
    let (st, v) = h
        .call(
            "POST",
            "/api/v1/verify",
            Some(&rcv),
            Some(json!({"token": token, "target_resource": "someone-else"})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    // Bad input: clear 4xx.
    for body in [
        json!({}),
        json!({"token": token, "scopes_requested": "read:data"}),
        json!({"token": token, "unknown": true}),
        json!({"token": token, "target_resource": ""}),
    ] {
        let (st, v) = h
            .call("POST", "/api/v1/verify", Some(&rcv), Some(body.clone()))
            .await;
        assert!(st.is_client_error(), "{body}: {st} {v}");
        assert!(v["error"]["code"].is_string(), "{v}");
    }
    // Revoked.
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent}/revoke"),
            Some(&issuer),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let v = kairos_verify(&h, &rcv, token, &["read:data"]).await;
    assert_eq!(
        (v["allowed"].clone(), v["decision"].clone()),
        (json!(false), json!("REVOKED")),
        "{v}"
    );
    // The JWKS under KairosAI's path is the registry's.
    let (st, jwks) = h
        .call("GET", "/api/v1/.well-known/jwks.json", None, None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, native) = h.call("GET", "/.well-known/jwks.json", None, None).await;
    assert_eq!(jwks, native);
}

#[tokio::test]
async fn kairos_registration_binds_on_request_and_keeps_the_key_rules() {
    let h = common::start().await;
    let issuer = h.issuer("binding.example").await;
    let rcv = receiver(&h).await;
    let sk = SigningKey::generate(Algorithm::ES256).unwrap();
    // Binding asked for: the token carries the key's thumbprint, and a plain verify
    // without the agent's proof is refused (the native rule).
    let (st, reg) = register(
        &h,
        &issuer,
        json!({"name": "b", "capabilities": ["read:data"], "signing_key_pub": pem(&sk), "key_algorithm": "ES256", "bind_token": true}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{reg}");
    assert_eq!(reg["token_bound"], true);
    let token = reg["token"].as_str().unwrap();
    assert_eq!(claims(token)["cnf"]["jkt"], sk.kid());
    let v = kairos_verify(&h, &rcv, token, &["read:data"]).await;
    assert_eq!(
        (v["allowed"].clone(), v["decision"].clone()),
        (json!(false), json!("DENIED")),
        "{v}"
    );
    assert_eq!(v["error"]["code"], "PROOF_REQUIRED", "{v}");

    // The same key for another issuer's agent: refused (409), as natively.
    let other = h.issuer("other.example").await;
    let (st, v) = register(
        &h,
        &other,
        json!({"name": "c", "capabilities": ["read:data"], "signing_key_pub": pem(&sk), "key_algorithm": "ES256"}),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");

    // Refusals: a clear 4xx each.
    for (body, status) in [
        (json!({"name": "d"}), 422),
        (json!({"name": "d", "capabilities": ["bad scope"]}), 422),
        (
            json!({"name": "d", "capabilities": ["read:data"], "bind_token": true}),
            422,
        ),
        (
            json!({"name": "d", "capabilities": ["read:data"], "signing_key_pub": "not a pem", "key_algorithm": "ES256"}),
            422,
        ),
        (
            json!({"name": "d", "capabilities": ["read:data"], "signing_key_pub": pem(&sk)}),
            422,
        ),
        (
            json!({"name": "d", "capabilities": ["read:data"], "owner": "x"}),
            422,
        ),
    ] {
        let (st, v) = register(&h, &issuer, body.clone()).await;
        assert_eq!(st.as_u16(), status, "{body}: {v}");
        assert!(v["error"]["code"].is_string(), "{v}");
    }
    let (st, _) = h
        .call(
            "POST",
            "/api/v1/agents/register",
            Some(&rcv),
            Some(json!({"name": "d", "capabilities": ["read:data"]})),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::FORBIDDEN,
        "a receiver key registers nothing"
    );
    let (st, _) = h
        .call(
            "POST",
            "/api/v1/agents/register",
            None,
            Some(json!({"name": "d", "capabilities": ["read:data"]})),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_verified_badge_is_well_formed_svg_and_its_page_links_it() {
    let h = common::start().await;
    let resp = h
        .http
        .get(format!("{}/api/badge/verified.svg", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "image/svg+xml");
    let svg = resp.text().await.unwrap();
    // Parsed by an XML parser (Python's standard library): the root is an SVG with a
    // size, and its text reads "Verified by Bonafide".
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            r#"import sys, json, xml.etree.ElementTree as ET
root = ET.fromstring(sys.stdin.read())
ns = "{http://www.w3.org/2000/svg}"
texts = [t.text for t in root.iter(ns + "text")]
print(json.dumps({"tag": root.tag, "width": root.get("width"), "height": root.get("height"),
  "title": root.find(ns + "title").text, "texts": texts}))"#,
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(svg.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(
        out.status.success(),
        "not well-formed XML: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(parsed["tag"], "{http://www.w3.org/2000/svg}svg", "{parsed}");
    assert_eq!(parsed["height"], "24");
    assert!(parsed["width"].as_str().unwrap().parse::<u32>().unwrap() > 0);
    assert_eq!(parsed["title"], "Verified by Bonafide");
    assert_eq!(parsed["texts"], json!(["Verified by", "Bonafide"]));

    let resp = h
        .http
        .get(format!("{}/verified", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = resp.text().await.unwrap();
    assert!(page.contains("/api/badge/verified.svg"), "{page}");
    assert!(page.contains(&h.base), "{page}");
    // Unknown methods are refused cleanly.
    let (st, _) = h.call("POST", "/api/badge/verified.svg", None, None).await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
}
