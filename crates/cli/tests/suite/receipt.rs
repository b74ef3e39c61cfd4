//! `bonafide receipt verify`, offline: receipts signed here with a fresh Ed25519 key
//! whose public half is written to a JWKS file (or served on loopback), checked with
//! and without the verify request they decided, and the ways a receipt must fail
//! (exit 1) or the command cannot tell (exit 2).

use crate::common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use bonafide_core::audit::Decision;
use bonafide_core::b64;
use bonafide_core::ids::{AgentId, ReceiptId, TokenId};
use bonafide_core::keys::{Algorithm, Jwks, SigningKey};
use bonafide_core::receipt::{self, ReceiptClaims, RemainingClaim, RequestFacts};
use bonafide_core::token::{self, AgentClaims};
use common::{BIN, json_of, text};
use serde_json::{Value, json};

/// The verify request the receipts below decided.
const REQUEST: &str = r#"{"token":"eyJ.the.token","audience":"https://shop.example","action":"payments.send","resource":{"type":"merchant","id":"airbnb"},"amount":"10","currency":"USD","scopes_requested":["payments:write"]}"#;

struct Setup {
    dir: tempfile::TempDir,
    key: SigningKey,
    jwks: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let jwks = dir.path().join("jwks.json");
        write_jwks(&jwks, &[&key]);
        Setup { dir, key, jwks }
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    fn receipt(&self) -> String {
        receipt::sign(&self.key, &claims()).unwrap()
    }

    fn jwks(&self) -> &str {
        self.jwks.to_str().unwrap()
    }
}

fn write_jwks(path: &Path, keys: &[&SigningKey]) {
    let jwks = Jwks {
        keys: keys
            .iter()
            .map(|k| k.verifying_key().jwk().clone())
            .collect(),
    };
    std::fs::write(path, serde_json::to_vec(&jwks).unwrap()).unwrap();
}

fn claims() -> ReceiptClaims {
    let facts = RequestFacts::from_request_json(REQUEST.as_bytes()).unwrap();
    ReceiptClaims {
        iss: "https://registry.example".into(),
        iat: 1_764_052_418,
        sub: ReceiptId::from_random([9; 16]),
        receipt_id: ReceiptId::from_random([9; 16]),
        decision: Decision::Allow,
        valid: true,
        reasons: Vec::new(),
        token_sha256: bonafide_core::audit::token_sha256("eyJ.the.token"),
        agent_id: Some(AgentId::from_random([1; 16])),
        jti: Some(TokenId::from_random([2; 16])),
        policy_hash: None,
        request_sha256: facts.sha256_hex(),
        verified_at: "2025-11-25T06:33:38.123Z".into(),
        remaining: Some(RemainingClaim {
            amount: "90.00".into(),
            currency: "USD".into(),
            period: "day".into(),
            period_ends: "2025-11-26T00:00:00Z".into(),
        }),
        audit_index: Some(12),
        receiver: None,
    }
}

/// `bonafide [--json] receipt verify FILE --jwks JWKS [extra…]`, with no registry
/// to reach (the URL is a closed port: the command must not need one).
fn verify(file: &str, jwks: &str, extra: &[&str], json_out: bool) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["--url", "http://127.0.0.1:1"]);
    if json_out {
        cmd.arg("--json");
    }
    cmd.args(["receipt", "verify", file, "--jwks", jwks])
        .args(extra)
        .env_remove("BONAFIDE_URL")
        .env_remove("BONAFIDE_API_KEY");
    cmd.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", text(out));
}

/// Exit 1 with a verdict line on stderr that contains `says`.
#[track_caller]
fn assert_check_failed(out: &Output, says: &str) {
    assert_exit(out, 1);
    let err = stderr(out);
    assert!(err.starts_with("RECEIPT CHECK FAILED: "), "{err}");
    assert!(err.contains(says), "expected `{says}` in: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
}

/// Exit 2 with an error on stderr that contains `says`, and nothing on stdout.
#[track_caller]
fn assert_error(out: &Output, says: &str) {
    assert_exit(out, 2);
    let err = stderr(out);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(says), "expected `{says}` in: {err}");
    assert!(out.stdout.is_empty(), "{}", text(out));
}

#[track_caller]
fn assert_ok_with_claims(out: &Output) {
    assert_exit(out, 0);
    assert_eq!(json_of(out), serde_json::to_value(claims()).unwrap());
    let err = stderr(out);
    assert!(err.starts_with("receipt OK: rcp_"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
}

#[test]
fn a_valid_receipt_verifies_from_a_raw_jws_file() {
    let s = Setup::new();
    let file = s.file("receipt.jws", &format!("{}\n", s.receipt()));
    let out = verify(file.to_str().unwrap(), s.jwks(), &[], false);
    assert_ok_with_claims(&out);
    assert!(stderr(&out).contains(s.key.kid()), "{}", text(&out));
    assert!(
        stderr(&out).contains("request not checked"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_jwks_file_is_held_to_1_mib() {
    let s = Setup::new();
    let file = s.file("receipt.jws", &s.receipt());
    let jwks = std::fs::read_to_string(&s.jwks).unwrap();
    // The same JSON, padded with spaces to exactly the limit, then one byte over.
    let padded = |len: usize| format!("{jwks}{}", " ".repeat(len - jwks.len()));
    let at_limit = s.file("at-limit.json", &padded(1024 * 1024));
    let over = s.file("over.json", &padded(1024 * 1024 + 1));
    assert_ok_with_claims(&verify(
        file.to_str().unwrap(),
        at_limit.to_str().unwrap(),
        &[],
        false,
    ));
    let out = verify(file.to_str().unwrap(), over.to_str().unwrap(), &[], false);
    assert_error(&out, "larger than 1048576 bytes");
}

#[test]
fn a_valid_receipt_verifies_from_the_receipts_endpoint_answer() {
    let s = Setup::new();
    // The decoded form next to the JWS is not trusted: a lie there changes nothing.
    let mut lie = serde_json::to_value(claims()).unwrap();
    lie["decision"] = "deny".into();
    let answer = json!({ "jws": s.receipt(), "receipt": lie });
    let file = s.file(
        "answer.json",
        &serde_json::to_string_pretty(&answer).unwrap(),
    );
    assert_ok_with_claims(&verify(file.to_str().unwrap(), s.jwks(), &[], false));
}

#[test]
fn a_valid_receipt_verifies_from_stdin() {
    let s = Setup::new();
    let mut child = Command::new(BIN)
        .args(["receipt", "verify", "-", "--jwks", s.jwks()])
        .env_remove("BONAFIDE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(s.receipt().as_bytes())
        .unwrap();
    assert_ok_with_claims(&child.wait_with_output().unwrap());
}

#[test]
fn the_request_it_decided_matches() {
    let s = Setup::new();
    let file = s.file("receipt.jws", &s.receipt());
    // Same request, written differently: "10.00" for "10", members reordered,
    // another token (the request digest leaves the token out).
    let request = s.file(
        "request.json",
        r#"{
          "scopes_requested": ["payments:write"],
          "currency": "USD", "amount": "10.00",
          "resource": {"id": "airbnb", "type": "merchant"},
          "action": "payments.send",
          "target_resource": "https://shop.example",
          "token": "not.kept.here"
        }"#,
    );
    let out = verify(
        file.to_str().unwrap(),
        s.jwks(),
        &["--request", request.to_str().unwrap()],
        false,
    );
    assert_ok_with_claims(&out);
    assert!(
        stderr(&out).contains("the request matches"),
        "{}",
        text(&out)
    );
}

#[test]
fn another_request_fails_and_still_shows_what_the_receipt_says() {
    let s = Setup::new();
    let file = s.file("receipt.jws", &s.receipt());
    let changed = REQUEST.replace(r#""amount":"10""#, r#""amount":"1000""#);
    assert_ne!(changed, REQUEST);
    let request = s.file("request.json", &changed);
    let out = verify(
        file.to_str().unwrap(),
        s.jwks(),
        &["--request", request.to_str().unwrap()],
        false,
    );
    assert_check_failed(&out, "the receipt is for another request");
    assert!(
        stderr(&out).contains(&claims().request_sha256),
        "{}",
        text(&out)
    );
    assert_eq!(json_of(&out), serde_json::to_value(claims()).unwrap());
}

#[test]
fn a_tampered_payload_fails() {
    let s = Setup::new();
    let jws = s.receipt();
    let parts: Vec<&str> = jws.split('.').collect();
    let mut forged = claims();
    forged.audit_index = Some(13);
    let payload = b64::encode(&serde_json::to_vec(&forged).unwrap());
    let file = s.file(
        "receipt.jws",
        &format!("{}.{payload}.{}", parts[0], parts[2]),
    );
    let out = verify(file.to_str().unwrap(), s.jwks(), &[], false);
    assert_check_failed(&out, "signature does not verify");
    assert!(
        out.stdout.is_empty(),
        "no claims from a forgery: {}",
        text(&out)
    );
}

#[test]
fn a_receipt_signed_by_a_key_not_in_the_jwks_fails() {
    let s = Setup::new();
    let other = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let file = s.file("receipt.jws", &receipt::sign(&other, &claims()).unwrap());
    let out = verify(file.to_str().unwrap(), s.jwks(), &[], false);
    assert_check_failed(&out, "not in the JWKS");
    assert!(stderr(&out).contains(other.kid()), "{}", text(&out));
}

#[test]
fn an_agent_token_is_not_a_receipt() {
    let s = Setup::new();
    // Built from JSON, so claims the token format gains later default to absent.
    let agent: AgentClaims = serde_json::from_value(json!({
        "iss": "https://registry.example",
        "sub": AgentId::from_random([1; 16]),
        "iat": 1_764_052_418,
        "exp": 1_764_056_018,
        "jti": TokenId::from_random([2; 16]),
        "agent": {"name": "bot", "issuer": "shop.example", "scopes": ["payments:write"]},
    }))
    .unwrap();
    let token = token::sign(&s.key, &agent).unwrap();
    let file = s.file("token.jws", &token);
    let out = verify(file.to_str().unwrap(), s.jwks(), &[], false);
    assert_check_failed(&out, "`agent+jwt`");
    assert!(stderr(&out).contains("agent token"), "{}", text(&out));
}

#[test]
fn json_output_says_ok_or_the_problem() {
    let s = Setup::new();
    let file = s.file("receipt.jws", &s.receipt());
    let out = verify(file.to_str().unwrap(), s.jwks(), &[], true);
    assert_exit(&out, 0);
    let v = json_of(&out);
    assert_eq!(v["ok"], true);
    assert_eq!(v["kid"], s.key.kid());
    assert_eq!(v["request_checked"], false);
    assert_eq!(v["receipt"], serde_json::to_value(claims()).unwrap());

    let other = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let bad = s.file("bad.jws", &receipt::sign(&other, &claims()).unwrap());
    let out = verify(bad.to_str().unwrap(), s.jwks(), &[], true);
    assert_exit(&out, 1);
    let v = json_of(&out);
    assert_eq!(v["ok"], false);
    assert!(
        v["problem"].as_str().unwrap().contains("not in the JWKS"),
        "{v}"
    );
    assert_eq!(v["receipt"], Value::Null);
}

#[test]
fn a_missing_receipt_file_is_an_error() {
    let s = Setup::new();
    let missing = s.dir.path().join("nope.jws");
    let out = verify(missing.to_str().unwrap(), s.jwks(), &[], false);
    assert_error(&out, "cannot read the receipt file");
}

#[test]
fn json_without_a_jws_member_is_an_error() {
    let s = Setup::new();
    let file = s.file("answer.json", r#"{"receipt_id":"rcp_x"}"#);
    let out = verify(file.to_str().unwrap(), s.jwks(), &[], false);
    assert_error(&out, "no `jws` string");
}

#[test]
fn a_malformed_jwks_is_an_error() {
    let s = Setup::new();
    let file = s.file("receipt.jws", &s.receipt());
    for (name, content, says) in [
        ("not_json.json", "{\"keys\": [", "cannot load the JWKS"),
        (
            "bad_key.json",
            r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"!!"}]}"#,
            "is unusable",
        ),
        ("empty.json", r#"{"keys":[]}"#, "holds no keys"),
    ] {
        let jwks = s.file(name, content);
        let out = verify(file.to_str().unwrap(), jwks.to_str().unwrap(), &[], false);
        assert_error(&out, says);
    }
    let missing = s.dir.path().join("no-jwks.json");
    let out = verify(
        file.to_str().unwrap(),
        missing.to_str().unwrap(),
        &[],
        false,
    );
    assert_error(&out, "cannot load the JWKS");
}

#[test]
fn a_malformed_request_file_is_an_error_not_a_mismatch() {
    let s = Setup::new();
    let file = s.file("receipt.jws", &s.receipt());
    for (name, content, says) in [
        (
            "float.json",
            r#"{"amount":10.5,"currency":"USD"}"#,
            "JSON floats",
        ),
        (
            "unknown.json",
            r#"{"amout":"10"}"#,
            "unknown member `amout`",
        ),
        ("syntax.json", "{\"action\":", "malformed JSON"),
    ] {
        let request = s.file(name, content);
        let out = verify(
            file.to_str().unwrap(),
            s.jwks(),
            &["--request", request.to_str().unwrap()],
            false,
        );
        assert_error(&out, says);
        assert!(stderr(&out).contains("request file"), "{}", text(&out));
    }
    let missing = s.dir.path().join("no-request.json");
    let out = verify(
        file.to_str().unwrap(),
        s.jwks(),
        &["--request", missing.to_str().unwrap()],
        false,
    );
    assert_error(&out, "cannot read the request file");
}

/// Serves `body` once as `200 application/json` on a loopback port; the URL.
fn serve_once(body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn the_jwks_can_come_from_a_url() {
    let s = Setup::new();
    let file = s.file("receipt.jws", &s.receipt());
    let url = serve_once(std::fs::read_to_string(&s.jwks).unwrap());
    assert_ok_with_claims(&verify(file.to_str().unwrap(), &url, &[], false));
}

#[test]
fn an_unreachable_jwks_url_is_an_error() {
    let s = Setup::new();
    let file = s.file("receipt.jws", &s.receipt());
    let out = verify(
        file.to_str().unwrap(),
        "http://127.0.0.1:1/.well-known/jwks.json",
        &[],
        false,
    );
    assert_error(&out, "cannot load the JWKS");
}
