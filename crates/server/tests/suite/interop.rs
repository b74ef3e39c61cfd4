//! Interop with independent JOSE libraries, as real outside clients: PyJWT, jwcrypto
//! and node `jose` verify Bonafide tokens of each algorithm with nothing but the
//! published JWKS, and the attack tokens each of them forges are refused by Bonafide.
//!
//! The clients are installed, pinned, by `scripts/interop-setup.sh` (the README's test
//! command runs it). Without them these tests fail and say how to install them.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use bonafide_core::keys::Algorithm;
use serde_json::{Value, json};

const ATTACKS: [&str; 7] = [
    "none",
    "hs256-pubkey",
    "embedded-jwk",
    "jku",
    "x5u",
    "crit",
    "tampered-payload",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Client {
    name: &'static str,
    program: PathBuf,
    script: PathBuf,
}

fn clients() -> Vec<Client> {
    let root = repo();
    let python = std::env::var_os("BONAFIDE_INTEROP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".interop/venv/bin/python"));
    let setup_hint = "run `bash scripts/interop-setup.sh` first (the README's test command does)";
    assert!(
        python.exists(),
        "no interop virtualenv at {}: {setup_hint}",
        python.display()
    );
    assert!(
        root.join("interop/node/node_modules/jose").exists(),
        "node `jose` is not installed under interop/node: {setup_hint}"
    );
    vec![
        Client {
            name: "pyjwt",
            program: python.clone(),
            script: root.join("interop/python/pyjwt_client.py"),
        },
        Client {
            name: "jwcrypto",
            program: python,
            script: root.join("interop/python/jwcrypto_client.py"),
        },
        Client {
            name: "jose",
            program: PathBuf::from("node"),
            script: root.join("interop/node/jose_client.mjs"),
        },
    ]
}

impl Client {
    fn run(&self, args: &[&str]) -> (i32, Value, String) {
        let out = Command::new(&self.program)
            .arg(&self.script)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.name));
        let code = out.status.code().unwrap_or(-1);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let v = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert_ne!(
            code, 3,
            "{}: environment error, no verdict: {all}",
            self.name
        );
        assert_ne!(code, 2, "{}: usage error: {all}", self.name);
        (code, v, all)
    }
}

async fn check_alg(alg: Algorithm) {
    let h = common::start_with(alg).await;
    let key = h.issuer("interop.example").await;
    let reg = h
        .register(&key, json!({"name": "InteropBot", "scopes": ["read:portfolio", "read:transactions"], "audience": "bank.example"}))
        .await;
    let agent_id = reg["agent_id"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, reg["token"].as_str().unwrap()).unwrap();
    let tf = token_file.to_str().unwrap();
    let jwks = format!("{}/.well-known/jwks.json", h.base);

    for c in clients() {
        // The outside library verifies our token from the JWKS alone.
        let (code, v, all) = c.run(&[
            "verify",
            "--jwks",
            &jwks,
            "--token-file",
            tf,
            "--issuer",
            &h.base,
            "--audience",
            "bank.example",
        ]);
        assert_eq!(code, 0, "{} {alg}: {all}", c.name);
        assert_eq!(v["valid"], true, "{} {alg}: {all}", c.name);
        assert_eq!(v["claims"]["sub"], agent_id, "{} {alg}", c.name);
        assert_eq!(v["header"]["alg"], alg.as_str(), "{} {alg}", c.name);
        // And refuses it for the wrong audience (a control: the check can fail).
        let (code, _, all) = c.run(&[
            "verify",
            "--jwks",
            &jwks,
            "--token-file",
            tf,
            "--issuer",
            &h.base,
            "--audience",
            "other.example",
        ]);
        assert_eq!(code, 1, "{} {alg}: {all}", c.name);

        // Every attack the library can forge is refused by Bonafide.
        for kind in ATTACKS {
            let out = dir.path().join(format!("{}-{kind}", c.name));
            let of = out.to_str().unwrap();
            let (code, _, all) = c.run(&[
                "attack",
                "--kind",
                kind,
                "--out-file",
                of,
                "--token-file",
                tf,
                "--jwks",
                &jwks,
            ]);
            assert_eq!(code, 0, "{} {kind}: {all}", c.name);
            let forged = std::fs::read_to_string(&out).unwrap();
            assert_ne!(forged.trim(), reg["token"].as_str().unwrap());
            let verdict = h
                .verify(json!({"token": forged.trim(), "audience": "bank.example"}))
                .await;
            assert_eq!(
                verdict["valid"], false,
                "{} {alg} {kind}: {verdict}",
                c.name
            );
            assert_eq!(
                verdict["error"]["code"], "TOKEN_INVALID",
                "{} {alg} {kind}: {verdict}",
                c.name
            );
        }
    }
    // Positive control through Bonafide itself.
    let ok = h
        .verify(json!({"token": reg["token"], "audience": "bank.example"}))
        .await;
    assert_eq!(ok["valid"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_rs256() {
    check_alg(Algorithm::RS256).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_es256() {
    check_alg(Algorithm::ES256).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_eddsa() {
    check_alg(Algorithm::EdDSA).await;
}
