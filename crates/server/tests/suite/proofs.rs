//! Proof of possession on `POST /v1/verify` (issue 7 items 1, 2 and 5), over HTTP,
//! with proofs made by outside libraries: DPoP proofs by Python `jwcrypto` and node
//! `jose`, HTTP message signatures by the npm package `web-bot-auth`. Replays of each,
//! wrong `htm`/`htu`, a thumbprint mismatch, proofs for unbound tokens, malformed
//! proofs, and the agent's key directory.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use bonafide_core::keys::{Algorithm, SigningKey};
use common::{Harness, now_s, start};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(mut cmd: Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The agent's own key, its PKCS#8 PEM and private JWK files (the JWK written by node
/// from the PEM), and its thumbprint.
struct AgentKey {
    sk: SigningKey,
    pem: PathBuf,
    jwk: PathBuf,
    _dir: tempfile::TempDir,
}

impl AgentKey {
    fn new(alg: Algorithm) -> Self {
        let sk = SigningKey::generate(alg).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("agent.pem");
        std::fs::write(&pem, sk.to_pkcs8_pem().unwrap().expose_secret()).unwrap();
        let jwk = dir.path().join("agent.jwk");
        let mut cmd = Command::new("node");
        cmd.arg("-e")
            .arg(
                "const c=require('crypto');const fs=require('fs');\
                 const k=c.createPrivateKey(fs.readFileSync(process.argv[1]));\
                 fs.writeFileSync(process.argv[2], JSON.stringify(k.export({format:'jwk'})));",
            )
            .arg(&pem)
            .arg(&jwk);
        run(cmd);
        AgentKey {
            sk,
            pem,
            jwk,
            _dir: dir,
        }
    }

    fn jkt(&self) -> String {
        self.sk.kid().to_owned()
    }
}

/// A DPoP proof made by jwcrypto (`python`) or node jose (`node`).
fn dpop(lib: &str, key: &AgentKey, htm: &str, htu: &str, token: &str, iat: Option<i64>) -> String {
    let mut cmd = match lib {
        "python" => {
            let mut c = Command::new(common::interop_python());
            c.arg(root().join("interop/python/dpop_proof.py"));
            c
        }
        _ => {
            let mut c = Command::new("node");
            c.arg(root().join("interop/node/dpop_proof.mjs"));
            c
        }
    };
    cmd.arg("--key-file")
        .arg(&key.pem)
        .args(["--htm", htm, "--htu", htu, "--access-token", token]);
    if let Some(iat) = iat {
        cmd.args(["--iat", &iat.to_string()]);
    }
    run(cmd)
}

/// Headers of a request signed by `web-bot-auth`: (method, url, headers).
fn web_bot_auth(key: &AgentKey, method: &str, url: &str, extra: &[&str]) -> Value {
    let mut cmd = Command::new("node");
    cmd.current_dir(root().join("interop/node"))
        .arg("web_bot_auth_sign.mjs")
        .arg("--jwk")
        .arg(&key.jwk)
        .args(["--url", url, "--method", method]);
    for a in extra {
        cmd.arg(a);
    }
    serde_json::from_str(&run(cmd)).unwrap()
}

async fn bound_agent(h: &Harness, iss: &str, key: &AgentKey) -> (String, String) {
    let v = h
        .register(
            iss,
            json!({"name": "Bound bot", "scopes": ["read:orders"], "public_key": key.sk.verifying_key().jwk()}),
        )
        .await;
    (
        v["agent_id"].as_str().unwrap().to_owned(),
        v["token"].as_str().unwrap().to_owned(),
    )
}

fn denied(v: &Value, code: &str) {
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert_eq!(v["reasons"][0], code, "{v}");
    assert!(v["receipt_id"].is_string(), "a decision: {v}");
}

const URL: &str = "https://shop.example/v1/orders";

#[tokio::test]
async fn dpop_proofs_by_jwcrypto_and_jose_verify_once() {
    let h = start().await;
    let iss = h.issuer("dpop.example").await;
    let key = AgentKey::new(Algorithm::EdDSA);
    let (_, token) = bound_agent(&h, &iss, &key).await;

    // Bound, without a proof: PROOF_REQUIRED, on POST and on GET (which has no room
    // for a proof); introspection answers the binding for its caller to check.
    denied(&h.verify_token(&token).await, "PROOF_REQUIRED");
    let (_, v) = h
        .call("GET", &format!("/v1/verify/{token}"), None, None)
        .await;
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["error"]["code"], "PROOF_REQUIRED", "{v}");
    let intro: Value = h
        .http
        .post(format!("{}/v1/introspect", h.base))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(intro["active"], true, "{intro}");
    assert_eq!(intro["cnf"]["jkt"], key.jkt(), "{intro}");

    for lib in ["python", "node"] {
        let jwt = dpop(lib, &key, "POST", URL, &token, None);
        let body = json!({"token": token, "scopes_requested": ["read:orders"],
            "proof": {"type": "dpop", "jwt": jwt, "htm": "POST", "htu": "https://SHOP.example:443/v1/orders?page=2"}});
        let v = h.verify(body.clone()).await;
        assert_eq!(v["valid"], true, "{lib}: {v}");
        assert_eq!(v["allowed"], true, "{lib}: {v}");
        // The same proof again: a replay, decided and audited as one.
        let again = h.verify(body).await;
        denied(&again, "REPLAY");
        assert!(again["audit_index"].as_u64() > v["audit_index"].as_u64());
    }
    // A simulation checks the proof and claims nothing.
    let jwt = dpop("python", &key, "GET", URL, &token, None);
    let body =
        json!({"token": token, "proof": {"type": "dpop", "jwt": jwt, "htm": "GET", "htu": URL}});
    let (st, v) = h
        .call("POST", "/v1/simulate", None, Some(body.clone()))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(h.verify(body).await["valid"], true);

    // The replay cache survives a restart.
    let jwt = dpop("node", &key, "GET", URL, &token, None);
    let body =
        json!({"token": token, "proof": {"type": "dpop", "jwt": jwt, "htm": "GET", "htu": URL}});
    assert_eq!(h.verify(body.clone()).await["valid"], true);
    let h = h.restart().await;
    denied(&h.verify(body).await, "REPLAY");
}

#[tokio::test]
async fn wrong_dpop_proofs_are_proof_invalid() {
    let h = start().await;
    let iss = h.issuer("wrong.example").await;
    let key = AgentKey::new(Algorithm::ES256);
    let other = AgentKey::new(Algorithm::EdDSA);
    let (_, token) = bound_agent(&h, &iss, &key).await;
    let (_, token_b) = bound_agent(&h, &iss, &other).await;
    let proof = |jwt: String, htm: &str, htu: &str| json!({"token": token, "proof": {"type": "dpop", "jwt": jwt, "htm": htm, "htu": htu}});
    let cases = [
        // Signed for another method, another URL, another token.
        proof(dpop("python", &key, "POST", URL, &token, None), "GET", URL),
        proof(
            dpop("node", &key, "POST", URL, &token, None),
            "POST",
            "https://shop.example/v1/refunds",
        ),
        proof(
            dpop("python", &key, "POST", URL, &token_b, None),
            "POST",
            URL,
        ),
        // Another key's proof: its thumbprint is not `cnf.jkt`.
        proof(dpop("node", &other, "POST", URL, &token, None), "POST", URL),
        // Too old, and from the future.
        proof(
            dpop("python", &key, "POST", URL, &token, Some(now_s() - 400)),
            "POST",
            URL,
        ),
        proof(
            dpop("python", &key, "POST", URL, &token, Some(now_s() + 400)),
            "POST",
            URL,
        ),
        // Not a JWS at all.
        proof("not.a.jwt".into(), "POST", URL),
    ];
    for body in cases {
        let v = h.verify(body.clone()).await;
        denied(&v, "PROOF_INVALID");
        assert!(v["reason"].as_str().unwrap().contains("DPoP"), "{v}");
    }
}

#[tokio::test]
async fn web_bot_auth_signatures_verify_once() {
    let h = start().await;
    let iss = h.issuer("sig.example").await;
    let key = AgentKey::new(Algorithm::EdDSA);
    let (agent, token) = bound_agent(&h, &iss, &key).await;

    // The key directory a receiver would fetch, found through discovery.
    let (_, conf) = h
        .call("GET", "/.well-known/bonafide-configuration", None, None)
        .await;
    assert_eq!(
        conf["proof_types_supported"],
        json!(["dpop", "http-signature"])
    );
    let (_, health) = h.call("GET", "/v1/health", None, None).await;
    assert_eq!(health["features"]["proof_of_possession"], true, "{health}");
    let url = conf["http_signature_directory_uri_template"]
        .as_str()
        .unwrap()
        .replace("{agent_id}", &agent);
    let resp = h.http.get(url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"],
        "application/http-message-signatures-directory+json"
    );
    let dir: Value = resp.json().await.unwrap();
    assert_eq!(dir["keys"][0], json!(key.sk.verifying_key().jwk()), "{dir}");

    let directory = format!("\"{}/agents/{agent}\"", h.base);
    let signed = web_bot_auth(
        &key,
        "GET",
        URL,
        &[
            "--signature-agent",
            &directory,
            "--header",
            "Accept: application/json",
        ],
    );
    assert_eq!(signed["keyid"], key.jkt());
    let mut headers = signed["headers"].clone();
    headers["Accept"] = json!("application/json");
    let body = json!({"token": token, "proof": {"type": "http-signature", "method": "GET", "url": URL, "headers": headers}});
    let v = h.verify(body.clone()).await;
    assert_eq!(v["valid"], true, "{v}");
    denied(&h.verify(body).await, "REPLAY");

    // Another key's signature, and a request other than the one signed.
    let other = AgentKey::new(Algorithm::EdDSA);
    let foreign = web_bot_auth(&other, "GET", URL, &[]);
    let v = h
        .verify(json!({"token": token, "proof": {"type": "http-signature", "method": "GET", "url": URL, "headers": foreign["headers"]}}))
        .await;
    denied(&v, "PROOF_INVALID");
    let fresh = web_bot_auth(&key, "GET", URL, &[]);
    let v = h
        .verify(json!({"token": token, "proof": {"type": "http-signature", "method": "GET", "url": "https://elsewhere.example/v1/orders", "headers": fresh["headers"]}}))
        .await;
    denied(&v, "PROOF_INVALID");

    // A covered header the receiver did not pass on: its request is incomplete.
    let covering = web_bot_auth(
        &key,
        "GET",
        URL,
        &[
            "--header",
            "X-Order: 7",
            "--components",
            "@authority,x-order",
        ],
    );
    let mut partial = covering["headers"].clone();
    partial.as_object_mut().unwrap().remove("X-Order");
    let (st, v) = h
        .call(
            "POST",
            "/v1/verify",
            None,
            Some(json!({"token": token, "proof": {"type": "http-signature", "method": "GET", "url": URL, "headers": partial}})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "PROOF_INCOMPLETE", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("x-order"),
        "{v}"
    );
}

#[tokio::test]
async fn malformed_proofs_and_unbound_tokens_are_request_errors() {
    let h = start().await;
    let iss = h.issuer("bad.example").await;
    let key = AgentKey::new(Algorithm::EdDSA);
    let (_, token) = bound_agent(&h, &iss, &key).await;
    let unbound = h
        .register(&iss, json!({"name": "Plain", "scopes": ["read:orders"]}))
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let jwt = dpop("python", &key, "GET", URL, &unbound, None);
    for (proof, status, code) in [
        (json!({"type": "mtls"}), 422, None),
        (json!({"jwt": jwt}), 422, None),
        (json!({"type": "dpop", "htm": "GET", "htu": URL}), 422, None),
        (
            json!({"type": "dpop", "jwt": 7, "htm": "GET", "htu": URL}),
            422,
            None,
        ),
        (
            json!({"type": "dpop", "jwt": jwt, "htm": "GET", "htu": URL, "extra": 1}),
            422,
            None,
        ),
        (
            json!({"type": "dpop", "jwt": jwt, "htm": "GET", "htu": "/relative"}),
            422,
            Some("INVALID_REQUEST"),
        ),
        (
            json!({"type": "dpop", "jwt": jwt, "htm": "G E T", "htu": URL}),
            422,
            Some("INVALID_REQUEST"),
        ),
        (
            json!({"type": "http-signature", "method": "GET", "url": URL, "headers": {}}),
            422,
            Some("INVALID_REQUEST"),
        ),
        (
            json!({"type": "http-signature", "method": "GET", "url": "ftp://x", "headers": {"Signature": "a", "Signature-Input": "b"}}),
            422,
            Some("INVALID_REQUEST"),
        ),
        (
            json!({"type": "http-signature", "method": "GET", "url": "https://exa mple/x", "headers": {"Signature": "a", "Signature-Input": "b"}}),
            422,
            Some("INVALID_REQUEST"),
        ),
        (
            json!({"type": "http-signature", "method": "GET", "url": "https://h:99999/x", "headers": {"Signature": "a", "Signature-Input": "b"}}),
            422,
            Some("INVALID_REQUEST"),
        ),
        (
            json!({"type": "http-signature", "method": "GET", "url": "https://", "headers": {"Signature": "a", "Signature-Input": "b"}}),
            422,
            Some("INVALID_REQUEST"),
        ),
    ] {
        let (st, v) = h
            .call(
                "POST",
                "/v1/verify",
                None,
                Some(json!({"token": token, "proof": proof})),
            )
            .await;
        assert!(
            st.as_u16() == status || (st.is_client_error() && code.is_none()),
            "{proof}: {st} {v}"
        );
        assert!(v["error"]["message"].is_string(), "{proof}: {v}");
        if let Some(code) = code {
            assert_eq!(v["error"]["code"], code, "{proof}: {v}");
        }
    }
    // A proof for a token bound to nothing.
    let (st, v) = h
        .call(
            "POST",
            "/v1/verify",
            None,
            Some(json!({"token": unbound, "proof": {"type": "dpop", "jwt": jwt, "htm": "GET", "htu": URL}})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "PROOF_NOT_APPLICABLE", "{v}");
    // The unbound token alone is fine.
    assert_eq!(h.verify_token(&unbound).await["valid"], true);
    // Unknown agent's key directory: 404.
    let (st, _) = h
        .call(
            "GET",
            "/agents/agt_aaaaaaaaaaaaaaaaaaaaaaaaaa/.well-known/http-message-signatures-directory",
            None,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}
