//! AgentOAuth consent tokens over HTTP (issue 6, item 2, last sentence): an `act.v0.2`
//! token made by the `jose` npm package (`interop/node/act_token.mjs`, an outside
//! signer), with AgentOAuth's header (`kid` `key-001`, the issuer's own key name, and
//! `typ` `JWT`) and claim names, signed by an Ed25519 key the issuer registered. Its
//! policy is evaluated, and revocation, suspension and key revocation apply.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use bonafide_core::ids::IssuerId;
use bonafide_core::policy::Policy;
use common::{Harness, now_s, rand20, start};
use reqwest::StatusCode;
use serde_json::{Value, json};

type Iss = common::CreatedIssuer;

async fn issuer(h: &Harness, name: &str) -> Iss {
    h.issuer_full(name).await
}

fn node_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join("interop/node");
    assert!(
        dir.join("node_modules/jose").exists(),
        "the `jose` npm package is missing: run `bash scripts/interop-setup.sh` first"
    );
    dir
}

fn node(args: &[&str]) -> String {
    let dir = node_dir();
    let out = Command::new("node")
        .arg(dir.join("act_token.mjs"))
        .args(args)
        .output()
        .expect("node must be installed (see scripts/interop-setup.sh)");
    assert!(
        out.status.success(),
        "act_token.mjs {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// An Ed25519 key pair made by `jose`: the private JWK in a file, the public JWK.
struct NodeKey {
    dir: tempfile::TempDir,
    private_file: PathBuf,
    public: Value,
}

fn node_key() -> NodeKey {
    let pair: Value = serde_json::from_str(&node(&["keygen"])).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let private_file = dir.path().join("private.jwk");
    std::fs::write(&private_file, pair["private"].to_string()).unwrap();
    NodeKey {
        dir,
        private_file,
        public: pair["public"].clone(),
    }
}

impl NodeKey {
    /// The same key in core, to sign the registration's key proof (the interop under
    /// test is the consent token): the JWK's `d` is the Ed25519 seed, wrapped here in
    /// a PKCS#8 v1 structure (RFC 8410 §7).
    fn signing_key(&self) -> bonafide_core::keys::SigningKey {
        let private: Value =
            serde_json::from_str(&std::fs::read_to_string(&self.private_file).unwrap()).unwrap();
        let seed = bonafide_core::b64::decode(private["d"].as_str().unwrap()).unwrap();
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&seed);
        bonafide_core::keys::SigningKey::from_pkcs8_der(bonafide_core::keys::Algorithm::EdDSA, &der)
            .unwrap()
    }
}

fn act_token(key: &NodeKey, kid: &str, claims: &Value) -> String {
    let claims_file = key.dir.path().join("claims.json");
    std::fs::write(&claims_file, claims.to_string()).unwrap();
    // `--kid=…` in one argument: a thumbprint may start with `-`, which node's
    // parseArgs takes for an option when it is a separate argument.
    let kid = format!("--kid={kid}");
    node(&[
        "sign",
        "--jwk-file",
        key.private_file.to_str().unwrap(),
        &kid,
        "--claims-file",
        claims_file.to_str().unwrap(),
    ])
}

fn policy() -> Value {
    json!({
        "version": "pol.v0.2",
        "id": "pol_travel_001",
        "actions": ["payments.send"],
        "resources": [],
        "limits": {"per_txn": {"amount": 500, "currency": "USD"}}
    })
}

fn new_jti() -> String {
    format!("act_{}", bonafide_core::hex(&rand20()[..8]))
}

/// The claims AgentOAuth's `issueConsent` writes, for `agent`.
fn consent_claims(iss: &str, agent: &str) -> Value {
    let now = now_s();
    let hash = Policy::from_value(policy()).unwrap().hash().to_owned();
    json!({
        "ver": "act.v0.2",
        "iss": iss,
        "user": "did:user:alice",
        "agent": agent,
        "scope": "payments.send",
        "policy": policy(),
        "policy_hash": hash,
        "iat": now,
        "exp": now + 600,
        "jti": new_jti(),
    })
}

/// A `jose` Ed25519 key registered as `iss`'s (with its key proof), and its kid.
async fn registered_node_key(h: &Harness, iss: &Iss) -> (NodeKey, String) {
    let key = node_key();
    let proof = h.key_proof(&iss.id, &key.signing_key());
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
    (key, kid)
}

fn refused(v: &Value, code: &str) {
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
}

#[tokio::test]
async fn an_agentoauth_consent_token_made_by_jose_verifies_with_its_policy() {
    let h = start().await;
    let iss = issuer(&h, "travel.example").await;
    let (key, kid) = registered_node_key(&h, &iss).await;
    let agent = h
        .register(
            &iss.key,
            json!({"name": "Travel AI", "scopes": ["payments:write", "payments:read"]}),
        )
        .await["agent_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, rcv) = h
        .call(
            "POST",
            "/v1/receivers",
            Some(&h.admin),
            Some(json!({"name": "merchant"})),
        )
        .await;
    let rcv = rcv["api_key"].as_str().unwrap().to_owned();
    let https_iss = format!("https://{}", iss.name);

    // The agent named by its did:web, the issuer by `https://<name>`, the key by the
    // issuer's own name for it.
    let did = format!("{}:agents:{agent}", did_web_prefix(&h));
    let claims = consent_claims(&https_iss, &did);
    let token = act_token(&key, "key-001", &claims);
    let spend = |token: &str, amount: &str| json!({"token": token, "action": "payments.send", "amount": amount, "currency": "USD"});
    let (st, v) = h
        .call(
            "POST",
            "/v1/verify",
            Some(&rcv),
            Some(spend(&token, "100.00")),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["user"], "did:user:alice", "{v}");
    let (_, v) = h
        .call(
            "POST",
            "/v1/verify",
            Some(&rcv),
            Some(spend(&token, "600.00")),
        )
        .await;
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(v["reasons"], json!(["LIMIT_PER_TXN"]), "{v}");
    // Not an action of the policy.
    let v = h
        .verify(json!({"token": token, "action": "payments.refund"}))
        .await;
    assert_eq!(v["allowed"], false, "{v}");

    // GET verify shows what the registry knows: name and issuer; the scopes are the
    // registered ones narrowed to the token's own `scope` (what the user consented
    // to), never widened by the registration.
    let (_, v) = h
        .call("GET", &format!("/v1/verify/{token}"), None, None)
        .await;
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["agent_id"], agent, "{v}");
    assert_eq!(v["name"], "Travel AI", "{v}");
    assert_eq!(v["issuer"], iss.name, "{v}");
    // `payments.send` is a policy action, not a registered scope.
    assert_eq!(v["scopes"], json!([]), "{v}");
    let mut narrow = consent_claims(&https_iss, &did);
    narrow["scope"] = json!("payments:read");
    let narrow = act_token(&key, "key-001", &narrow);
    let (_, v) = h
        .call("GET", &format!("/v1/verify/{narrow}"), None, None)
        .await;
    assert_eq!(v["scopes"], json!(["payments:read"]), "{v}");
    let v = h
        .verify(json!({"token": narrow, "scopes_requested": ["payments:write"], "action": "payments.send"}))
        .await;
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(v["reasons"][0], "SCOPE_NOT_GRANTED", "{v}");
    // Without a `scope` of its own, a consent token carries the registered scopes.
    let mut unscoped = consent_claims(&https_iss, &did);
    unscoped.as_object_mut().unwrap().remove("scope");
    let (_, v) = h
        .call(
            "GET",
            &format!("/v1/verify/{}", act_token(&key, "key-001", &unscoped)),
            None,
            None,
        )
        .await;
    assert_eq!(
        v["scopes"],
        json!(["payments:write", "payments:read"]),
        "{v}"
    );

    // The bare `agt_…` id, the issuer by id and by name, and the key by thumbprint.
    for (iss_claim, kid_header) in [(iss.id.as_str(), "key-001"), (&iss.name, kid.as_str())] {
        let t = act_token(&key, kid_header, &consent_claims(iss_claim, &agent));
        assert_eq!(h.verify_token(&t).await["valid"], true, "{iss_claim}");
    }

    // An agent the issuer never registered (AgentOAuth's own naming), and another
    // issuer's agent.
    let t = act_token(
        &key,
        "key-001",
        &consent_claims(&https_iss, "did:agent:travel-ai"),
    );
    refused(&h.verify_token(&t).await, "AGENT_UNKNOWN");
    let other = issuer(&h, "other.example").await;
    let theirs = h
        .register(&other.key, json!({"name": "Theirs", "scopes": ["x:y"]}))
        .await["agent_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let t = act_token(&key, "key-001", &consent_claims(&https_iss, &theirs));
    refused(&h.verify_token(&t).await, "AGENT_UNKNOWN");
    // Claiming to be the other issuer with this issuer's key: no key of theirs.
    let t = act_token(
        &key,
        "key-001",
        &consent_claims("https://other.example", &theirs),
    );
    refused(&h.verify_token(&t).await, "ISSUER_UNKNOWN");
    let t = act_token(
        &key,
        &kid,
        &consent_claims("https://other.example", &theirs),
    );
    refused(&h.verify_token(&t).await, "ISSUER_UNKNOWN");

    // A policy that is not the one hashed.
    let mut wider = consent_claims(&https_iss, &agent);
    wider["policy"]["limits"]["per_txn"]["amount"] = json!(50_000);
    let t = act_token(&key, "key-001", &wider);
    let v = h.verify_token(&t).await;
    refused(&v, "TOKEN_INVALID");
    assert!(v["reason"].as_str().unwrap().contains("policy_hash"), "{v}");
    // Another key, not registered, under the same `kid`.
    let stranger = node_key();
    let t = act_token(&stranger, "key-001", &consent_claims(&https_iss, &agent));
    refused(&h.verify_token(&t).await, "TOKEN_INVALID");

    // Revocation by presenting the token: its `jti` maps to an internal token id.
    let revoked = act_token(&key, "key-001", &consent_claims(&https_iss, &agent));
    let jti = payload(&revoked)["jti"].as_str().unwrap().to_owned();
    let (st, r) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&iss.key),
            Some(json!({"token": revoked})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let expected =
        bonafide_core::token::issuer_token_id(&IssuerId::try_from(iss.id.as_str()).unwrap(), &jti);
    assert_eq!(r["jti"], expected.as_str(), "{r}");
    assert_eq!(r["agent_id"], agent, "{r}");
    refused(&h.verify_token(&revoked).await, "TOKEN_REVOKED");
    assert_eq!(h.verify_token(&token).await["valid"], true);

    // Suspension applies, and ends with reactivation.
    for (path, expected) in [("suspend", false), ("reactivate", true)] {
        let (st, _) = h
            .call(
                "POST",
                &format!("/v1/agents/{agent}/{path}"),
                Some(&iss.key),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        let v = h.verify_token(&token).await;
        assert_eq!(v["valid"], expected, "{v}");
        if !expected {
            refused(&v, "AGENT_SUSPENDED");
        }
    }

    // The issuer key revoked: every token it signed, whatever its `kid`.
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/issuer/keys/{kid}/revoke"),
            Some(&iss.key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let v = h.verify_token(&token).await;
    refused(&v, "TOKEN_REVOKED");
    assert_eq!(v["reasons"], json!(["TOKEN_REVOKED", "KEY_REVOKED"]), "{v}");
}

fn payload(token: &str) -> Value {
    let middle = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&bonafide_core::b64::decode(middle).unwrap()).unwrap()
}

/// `did:web:<host>` of the test registry.
fn did_web_prefix(h: &Harness) -> String {
    let did = h.state.agent_did("");
    did.strip_suffix(":agents:")
        .unwrap_or_else(|| panic!("unexpected did:web form `{did}`"))
        .to_owned()
}

/// AgentOAuth's SDK leaves `iss` out by default and may write `scope` as an array: a
/// consent token whose `kid` is the registered thumbprint is its key's issuer's
/// without `iss`; one whose `kid` is the issuer's own name for the key still needs
/// `iss` to pick the issuer.
#[tokio::test]
async fn a_consent_token_without_iss_is_its_registered_key_s_issuer_s() {
    let h = start().await;
    let iss = issuer(&h, "noiss.example").await;
    let (key, kid) = registered_node_key(&h, &iss).await;
    let agent = h
        .register(
            &iss.key,
            json!({"name": "Travel AI", "scopes": ["payments.send", "payments:read"]}),
        )
        .await["agent_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut claims = consent_claims("unused", &agent);
    claims.as_object_mut().unwrap().remove("iss");
    claims["scope"] = json!(["payments.send"]);
    let token = act_token(&key, &kid, &claims);
    let v = h.verify_token(&token).await;
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["agent"]["id"], agent.as_str(), "{v}");
    // The token's array `scope` narrows the registered scopes.
    assert_eq!(v["agent"]["active_scopes"], json!(["payments.send"]), "{v}");
    // Named by the issuer's own name for the key, the token must say whose it is.
    let other = act_token(&key, "key-001", &claims);
    let v = h.verify_token(&other).await;
    assert_eq!(v["valid"], false, "{v}");
}
