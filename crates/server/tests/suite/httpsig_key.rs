//! Web Bot Auth's current form of covering `Signature-Agent` (issue 21): the header is
//! a Dictionary and the signature covers the member its label names,
//! `"signature-agent";key="sig1"` (RFC 9421 §2.1.2). The signature is made by an
//! independent implementation (`interop/python/httpsig_key_member.py`: Python
//! `cryptography`, the signature base written out by hand) and verified through
//! `POST /v1/verify`; the base core builds must be the one the script signed.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use bonafide_core::httpsig::{Message, signature_base};
use bonafide_core::keys::{Algorithm, SigningKey};
use common::{Harness, now_s, start};
use serde_json::{Value, json};

const URL: &str = "https://shop.example/v1/orders";
const AUTHORITY: &str = "shop.example";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The script's output for `key` (PKCS#8 PEM in `pem`).
fn python_signature(pem: &Path, agent_url: &str, label: &str, created: i64) -> Value {
    let out = Command::new(common::interop_python())
        .arg(root().join("interop/python/httpsig_key_member.py"))
        .arg("--key-file")
        .arg(pem)
        .args([
            "--authority",
            AUTHORITY,
            "--signature-agent",
            agent_url,
            "--label",
            label,
            "--created",
            &created.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "httpsig_key_member.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn proof(headers: &Value) -> Value {
    json!({"type": "http-signature", "method": "GET", "url": URL, "headers": headers})
}

async fn bound_agent(h: &Harness, key: &SigningKey) -> (String, String) {
    let iss = h.issuer("wba.example").await;
    let v = h
        .register(
            &iss,
            json!({"name": "Crawler", "scopes": ["read:orders"], "public_key": key.verifying_key().jwk()}),
        )
        .await;
    (
        v["agent_id"].as_str().unwrap().to_owned(),
        v["token"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn a_signature_covering_the_signature_agent_member_made_by_python_verifies() {
    let h = start().await;
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("agent.pem");
    std::fs::write(&pem, key.to_pkcs8_pem().unwrap().expose_secret()).unwrap();
    let (agent, token) = bound_agent(&h, &key).await;
    let directory = format!("{}/agents/{agent}", h.base);

    for label in ["sig1", "bot-2"] {
        let signed = python_signature(&pem, &directory, label, now_s());
        assert_eq!(
            signed["keyid"],
            key.kid(),
            "the script's RFC 7638 thumbprint"
        );
        // Core's signature base for the message as sent is byte for byte the one the
        // script wrote by hand and signed.
        let headers: Vec<(String, String)> = signed["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        let msg = Message::Request {
            method: "GET",
            url: URL,
            headers: &headers,
        };
        assert_eq!(
            signature_base(&msg, label).unwrap(),
            signed["base"].as_str().unwrap()
        );
        assert!(
            signed["base"].as_str().unwrap().contains(&format!(
                "\"signature-agent\";key=\"{label}\": \"{directory}\""
            )),
            "{signed}"
        );

        let v = h
            .verify(json!({"token": token, "proof": proof(&signed["headers"])}))
            .await;
        assert_eq!(v["valid"], true, "{label}: {v}");
        // The same signature again is a replay.
        let v = h
            .verify(json!({"token": token, "proof": proof(&signed["headers"])}))
            .await;
        assert_eq!(v["error"]["code"], "REPLAY", "{v}");
    }

    // The member changed after signing, or another member added beside it (not
    // vouched for by the signature): refused.
    let signed = python_signature(&pem, &directory, "sig1", now_s());
    let mut changed = signed["headers"].clone();
    changed["Signature-Agent"] = json!("sig1=\"https://evil.example/agents/x\"");
    let v = h
        .verify(json!({"token": token, "proof": proof(&changed)}))
        .await;
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["error"]["code"], "PROOF_INVALID", "{v}");
    let mut added = signed["headers"].clone();
    added["Signature-Agent"] = json!(format!(
        "sig1=\"{directory}\", sig2=\"https://evil.example\""
    ));
    let (st, v) = h
        .call(
            "POST",
            "/v1/verify",
            None,
            Some(json!({"token": token, "proof": proof(&added)})),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::OK, "{v}");
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["error"]["code"], "PROOF_INVALID", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("signature-agent"),
        "{v}"
    );
    // Untouched, it still verifies once.
    let v = h
        .verify(json!({"token": token, "proof": proof(&signed["headers"])}))
        .await;
    assert_eq!(v["valid"], true, "{v}");
}
