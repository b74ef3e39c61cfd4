//! `bonafide verify` against the real registry: actions and amounts under a consent
//! policy (reasons in text), proofs of possession for a token bound to the agent's key
//! (online and offline), and expired tokens said in words.

use std::path::Path;
use std::process::Output;

use bonafide_core::keys::SigningKey;
use serde_json::{Value, json};

use crate::common::{Served, json_of, run, serve, text};

/// Admin → issuer → receiver: the issuer's and the receiver's keys.
fn issuer_and_receiver(s: &Served, name: &str) -> (String, String) {
    let admin = s.admin_printed.clone().unwrap();
    let out = run(
        &s.url,
        Some(&admin),
        &["issuer", "create", "--name", name, "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let issuer = json_of(&out)["api_key"].as_str().unwrap().to_owned();
    let out = run(
        &s.url,
        Some(&admin),
        &["receiver", "create", "--name", "api.shop.example", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let receiver = json_of(&out)["api_key"].as_str().unwrap().to_owned();
    (issuer, receiver)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn actions_and_amounts_are_decided_with_reasons_in_text() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    let (issuer, receiver) = issuer_and_receiver(&s, "pay.example");
    let policy = dir.path().join("policy.json");
    std::fs::write(
        &policy,
        json!({
            "version": "pol.v0.2", "id": "pol_travel_001", "actions": ["payments.send"],
            "resources": [{"type": "merchant", "match": {"ids": ["airbnb"], "prefixes": ["acct/12"]}}],
            "limits": {"per_txn": {"amount": "500", "currency": "USD"},
                       "per_period": {"amount": "1500", "currency": "USD", "period": "week"}}
        })
        .to_string(),
    )
    .unwrap();
    let out = run(
        &s.url,
        Some(&issuer),
        &[
            "agent",
            "register",
            "--name",
            "PayBot",
            "--scope",
            "payments:write",
            "--policy",
            policy.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let token = json_of(&out)["token"].as_str().unwrap().to_owned();
    let spend = |amount: &str, action: &str, resource: &str| {
        run(
            &s.url,
            Some(&receiver),
            &[
                "verify",
                &token,
                "--action",
                action,
                "--resource",
                resource,
                "--amount",
                amount,
                "--currency",
                "USD",
            ],
        )
    };

    // Allowed: exit 0, charged, what is left said.
    let out = spend("100", "payments.send", "merchant/airbnb");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = stdout(&out);
    assert!(t.starts_with("VALID, ALLOWED\n"), "{t}");
    assert!(t.contains("budget   1400.00 USD left this week"), "{t}");
    assert!(t.contains("receipt  rcp_"), "{t}");
    assert!(t.contains("expires  ") && t.contains("(in "), "{t}");
    // Under a prefix, the id past the first `/` is the resource's.
    let out = spend("1", "payments.send", "merchant/acct/12/sub");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Denied: exit 1, every reason code and the registry's words in text.
    let out = spend("600", "payments.send", "merchant/airbnb");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = stdout(&out);
    assert!(t.starts_with("VALID, NOT ALLOWED\n"), "{t}");
    assert!(t.contains("reasons  LIMIT_PER_TXN\n"), "{t}");
    assert!(t.contains("reason   ") && t.contains("500"), "{t}");
    let out = spend("10", "payments.refund", "merchant/booking");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stdout(&out).contains("reasons  POLICY_ACTION, POLICY_RESOURCE\n"),
        "{}",
        text(&out)
    );
    // A token with a policy grants named actions only.
    let out = run(&s.url, None, &["verify", &token]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stdout(&out).contains("reasons  POLICY_ACTION"),
        "{}",
        text(&out)
    );
    // The denial spent nothing: 1400 - 1 left, minus this 1.
    let out = run(
        &s.url,
        Some(&receiver),
        &[
            "verify",
            &token,
            "--action",
            "payments.send",
            "--resource",
            "merchant/airbnb",
            "--amount",
            "1",
            "--currency",
            "USD",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json_of(&out)["remaining"]["amount"], "1398.00");

    // A spend needs a receiver key, said before any request; and flags that go
    // together are refused apart.
    let out = run(
        &s.url,
        Some(&issuer),
        &[
            "verify",
            &token,
            "--action",
            "payments.send",
            "--amount",
            "5",
            "--currency",
            "USD",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("needs a receiver key") && text(&out).contains("issuer key"),
        "{}",
        text(&out)
    );
    for args in [
        &["--amount", "5", "--action", "payments.send"][..],
        &["--resource", "merchant/airbnb"][..],
    ] {
        let mut all = vec!["verify", token.as_str()];
        all.extend_from_slice(args);
        let out = run(&s.url, Some(&receiver), &all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
    }
    let out = run(
        &s.url,
        Some(&receiver),
        &[
            "verify",
            &token,
            "--action",
            "payments.send",
            "--resource",
            "airbnb",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("TYPE/ID"), "{}", text(&out));
}

/// `bonafide keys generate --alg EdDSA --out DIR/NAME.pem`: the private key file and
/// its public JWK.
fn agent_key(dir: &Path, name: &str) -> (String, Value) {
    let pem = dir.join(name);
    let out = run(
        "http://127.0.0.1:1",
        None,
        &[
            "keys",
            "generate",
            "--alg",
            "EdDSA",
            "--out",
            pem.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let jwk: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("{name}.pub.jwk"))).unwrap(),
    )
    .unwrap();
    (pem.to_str().unwrap().to_owned(), jwk)
}

fn post(url: &str, key: &str, body: &Value) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = reqwest::Client::new()
            .post(url)
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    })
}

#[test]
fn a_bound_token_needs_a_proof_by_its_key_online_and_offline() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    let (issuer, _) = issuer_and_receiver(&s, "bound.example");
    let (key, jwk) = agent_key(dir.path(), "agent.pem");
    let (other_key, _) = agent_key(dir.path(), "other.pem");
    // Registered over HTTP with the agent's public key: its tokens carry `cnf.jkt`.
    let (status, reg) = post(
        &format!("{}/v1/agents/register", s.url),
        &issuer,
        &json!({"name": "BoundBot", "scopes": ["read:x"], "public_key": jwk}),
    );
    assert_eq!(status, 201, "{reg}");
    let token = reg["token"].as_str().unwrap().to_owned();
    let jkt = reg["key"]["jkt"].as_str().unwrap().to_owned();
    let jwks = format!("{}/.well-known/jwks.json", s.url);
    let verify = |offline: bool, extra: &[&str]| {
        let mut args = vec!["verify", token.as_str(), "--scope", "read:x"];
        if offline {
            args.extend_from_slice(&["--offline", "--jwks", &jwks]);
        }
        args.extend_from_slice(extra);
        run(&s.url, None, &args)
    };
    let proof = |file: &str| {
        [
            "--dpop-key",
            file,
            "--htm",
            "POST",
            "--htu",
            "https://api.shop.example/orders?id=7",
        ]
        .map(str::to_owned)
    };

    for offline in [false, true] {
        let at = if offline { "offline" } else { "online" };
        // No proof: not valid, and the text says why and what to do.
        let out = verify(offline, &[]);
        assert_eq!(out.status.code(), Some(1), "{at}: {}", text(&out));
        let t = stdout(&out);
        assert!(t.starts_with("INVALID  PROOF_REQUIRED\n"), "{at}: {t}");
        assert!(t.contains("reasons  PROOF_REQUIRED"), "{at}: {t}");
        assert!(
            t.contains(&format!("the token is bound to a key (cnf.jkt {jkt})"))
                && t.contains("present a proof with --dpop-key"),
            "{at}: {t}"
        );
        assert!(!t.contains("ALLOWED"), "{at}: {t}");

        // The agent's key: a fresh proof each run (the registry claims its jti).
        for _ in 0..2 {
            let p = proof(&key);
            let args: Vec<&str> = p.iter().map(String::as_str).collect();
            let out = verify(offline, &args);
            assert_eq!(out.status.code(), Some(0), "{at}: {}", text(&out));
            assert!(
                stdout(&out).starts_with("VALID, ALLOWED\n"),
                "{at}: {}",
                text(&out)
            );
        }

        // Another key: the proof does not hold.
        let p = proof(&other_key);
        let args: Vec<&str> = p.iter().map(String::as_str).collect();
        let out = verify(offline, &args);
        assert_eq!(out.status.code(), Some(1), "{at}: {}", text(&out));
        let t = stdout(&out);
        assert!(t.starts_with("INVALID  PROOF_INVALID\n"), "{at}: {t}");
        assert!(t.contains("not the key the token is bound to"), "{at}: {t}");
    }

    // The flags go together (clap), and a method must be one.
    let out = verify(false, &["--dpop-key", &key]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--htm"), "{}", text(&out));
    let out = verify(
        false,
        &[
            "--dpop-key",
            &key,
            "--htm",
            "PO ST",
            "--htu",
            "https://api.shop.example/",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = verify(
        false,
        &[
            "--dpop-key",
            &key,
            "--htm",
            "POST",
            "--htu",
            "api.shop.example/x",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--htu"), "{}", text(&out));

    // A token that is not bound takes no proof: refused, not judged, either way.
    let out = run(
        &s.url,
        Some(&issuer),
        &[
            "agent", "register", "--name", "Plain", "--scope", "read:x", "--json",
        ],
    );
    let plain = json_of(&out)["token"].as_str().unwrap().to_owned();
    let p = proof(&key);
    for offline in [false, true] {
        let mut args = vec!["verify", plain.as_str()];
        if offline {
            args.extend_from_slice(&["--offline", "--jwks", &jwks]);
        }
        args.extend(p.iter().map(String::as_str));
        let out = run(&s.url, None, &args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "offline={offline}: {}",
            text(&out)
        );
        assert!(
            text(&out).contains("PROOF_NOT_APPLICABLE"),
            "offline={offline}: {}",
            text(&out)
        );
    }
}

/// An issuer whose own key (`keys generate` + `issuer-key add`) is registered, and
/// one of its agents: `(issuer API key, issuer id, agent id, the key, its JWK file)`.
struct SelfSigning {
    api_key: String,
    issuer_id: String,
    agent: String,
    key: SigningKey,
    jwk_file: std::path::PathBuf,
}

impl SelfSigning {
    fn new(s: &Served, dir: &Path, name: &str) -> Self {
        let (api_key, _) = issuer_and_receiver(s, name);
        let out = run(
            &s.url,
            Some(&api_key),
            &[
                "agent", "register", "--name", "Signed", "--scope", "read:x", "--json",
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
        let agent = json_of(&out)["agent_id"].as_str().unwrap().to_owned();
        let pem = dir.join("issuer.pem");
        let out = run(
            "http://127.0.0.1:1",
            None,
            &[
                "keys",
                "generate",
                "--alg",
                "EdDSA",
                "--out",
                pem.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
        let jwk_file = dir.join("issuer.pem.pub.jwk");
        let out = run(
            &s.url,
            Some(&api_key),
            &["issuer-key", "add", jwk_file.to_str().unwrap()],
        );
        assert!(out.status.success(), "{}", text(&out));
        let issuer_id = std::fs::read_to_string(dir.join("issuer.pem.issuer"))
            .unwrap()
            .trim()
            .to_owned();
        let key = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&pem).unwrap()).unwrap();
        SelfSigning {
            api_key,
            issuer_id,
            agent,
            key,
            jwk_file,
        }
    }

    /// A token of the agent signed with the issuer key, living `iat`..`exp` from now.
    fn token(&self, iat: i64, exp: i64, jti: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let claims = json!({
            "iss": self.issuer_id, "sub": self.agent, "iat": now + iat, "nbf": now + iat,
            "exp": now + exp, "jti": jti,
            "agent": {"name": "Signed", "issuer": self.issuer_id, "scopes": ["read:x"]},
        });
        bonafide_core::jws::sign_compact(&self.key, "agent+jwt", claims.to_string().as_bytes())
            .unwrap()
    }
}

#[test]
fn an_expired_token_says_when_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    let signer = SelfSigning::new(&s, dir.path(), "late.example");
    // Expired half an hour ago (`token sign` makes only live ones).
    let token = signer.token(-3600, -1800, "tok_aaaaaaaaaaaaaaaaaaaaaaaaab");

    // Online: the registry's TOKEN_EXPIRED, with the time in words.
    let out = run(&s.url, None, &["verify", &token]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = stdout(&out);
    assert!(t.starts_with("INVALID  TOKEN_EXPIRED\n"), "{t}");
    assert!(
        t.contains("\nexpired  ") && t.contains("Z (30 minutes ago)"),
        "{t}"
    );

    // Offline, with a JWKS file holding the issuer key.
    let jwks = dir.path().join("jwks.json");
    let jwk: Value =
        serde_json::from_str(&std::fs::read_to_string(&signer.jwk_file).unwrap()).unwrap();
    std::fs::write(&jwks, json!({ "keys": [jwk] }).to_string()).unwrap();
    let out = run(
        &s.url,
        None,
        &[
            "verify",
            &token,
            "--offline",
            "--jwks",
            jwks.to_str().unwrap(),
            "--issuer",
            &signer.issuer_id,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = stdout(&out);
    assert!(t.starts_with("INVALID  TOKEN_EXPIRED\n"), "{t}");
    assert!(
        t.contains("reason   token expired at ") && t.contains("Z (30 minutes ago)"),
        "{t}"
    );
    // No Unix time left in the text.
    assert!(
        !t.split_whitespace()
            .any(|w| w.len() == 10 && w.bytes().all(|b| b.is_ascii_digit())),
        "{t}"
    );

    // A live one offline: NOT ALLOWED for a scope it lacks, with the reason.
    let live = signer.token(0, 3600, "tok_aaaaaaaaaaaaaaaaaaaaaaaaac");
    let out = run(
        &s.url,
        None,
        &[
            "verify",
            &live,
            "--offline",
            "--jwks",
            jwks.to_str().unwrap(),
            "--issuer",
            &signer.issuer_id,
            "--scope",
            "write:email",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = stdout(&out);
    assert!(t.starts_with("VALID, NOT ALLOWED\n"), "{t}");
    assert!(t.contains("reasons  SCOPE_NOT_GRANTED\n"), "{t}");
    assert!(t.contains("`write:email` not granted"), "{t}");
    assert!(t.contains("Z (in 1 hour)"), "{t}");
}

#[test]
fn the_registrys_refusals_show_their_reasons_in_text() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    let signer = SelfSigning::new(&s, dir.path(), "refused.example");
    let token = signer.token(0, 3600, "tok_aaaaaaaaaaaaaaaaaaaaaaaaad");
    let out = run(&s.url, None, &["verify", &token]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Suspended: the agent's status, with the registry's words.
    let out = run(
        &s.url,
        Some(&signer.api_key),
        &["agent", "suspend", &signer.agent, "--reason", "review"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&s.url, None, &["verify", &token]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = stdout(&out);
    assert!(t.starts_with("INVALID  AGENT_SUSPENDED\n"), "{t}");
    assert!(t.contains("reasons  AGENT_SUSPENDED\n"), "{t}");
    assert!(t.contains("reason   ") && t.contains("suspended"), "{t}");
    let out = run(
        &s.url,
        Some(&signer.api_key),
        &["agent", "reactivate", &signer.agent],
    );
    assert!(out.status.success(), "{}", text(&out));

    // The issuer key that signed it revoked: both reasons.
    let out = run(
        &s.url,
        Some(&signer.api_key),
        &["issuer-key", "revoke", signer.key.kid()],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&s.url, None, &["verify", &token]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = stdout(&out);
    assert!(t.starts_with("INVALID  TOKEN_REVOKED\n"), "{t}");
    assert!(t.contains("reasons  TOKEN_REVOKED, KEY_REVOKED\n"), "{t}");
}
