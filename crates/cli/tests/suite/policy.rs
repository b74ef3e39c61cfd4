//! `bonafide receiver create`, `bonafide policy lint` and `bonafide agent register
//! --policy --user` against the real server, and the whole receipt path a receiver
//! walks: a spend verified with its key, the receipt fetched, and `bonafide receipt
//! verify` checking it offline against the served JWKS and the request it kept.

use crate::common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use bonafide_core::{b64, hex, sha256};
use common::{BIN, Served, json_of, run, serve, text};
use serde_json::{Value, json};

/// A per-transaction limit written as a JSON float: refused at `limits.per_txn.amount`.
const FLOAT_AMOUNT: &str = r#"{"version": "pol.v0.2", "id": "pol_float", "actions": ["payments.send"],
 "limits": {"per_txn": {"amount": 12.5, "currency": "USD"}}}"#;

/// A monthly budget of 100.00 USD for payments to one merchant.
fn budget_policy() -> Value {
    json!({
        "version": "pol.v0.2",
        "id": "pol_budget_001",
        "actions": ["payments.send"],
        "resources": [{"type": "merchant", "match": {"ids": ["airbnb"]}}],
        "limits": {"per_period": {"amount": "100.00", "currency": "USD", "period": "month"}}
    })
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// `POST url` with these exact bytes and an optional key: status and JSON body.
fn post_bytes(url: &str, key: Option<&str>, body: &[u8]) -> (u16, Value) {
    block_on(async {
        let mut req = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    })
}

/// `GET url` with an optional key: status and body text.
fn get(url: &str, key: Option<&str>) -> (u16, String) {
    block_on(async {
        let mut req = reqwest::Client::new().get(url);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    })
}

/// A running registry with an issuer, and a folder for the files the commands read.
struct Registry {
    s: Served,
    admin: String,
    issuer: String,
    work: tempfile::TempDir,
    _data: tempfile::TempDir,
}

impl Registry {
    fn new() -> Self {
        let data = tempfile::tempdir().unwrap();
        let s = serve(data.path(), &[]);
        let admin = s.admin_printed.clone().unwrap();
        let out = run(
            &s.url,
            Some(&admin),
            &["issuer", "create", "--name", "shop.example", "--json"],
        );
        assert_exit(&out, 0);
        let issuer = json_of(&out)["api_key"].as_str().unwrap().to_owned();
        Registry {
            s,
            admin,
            issuer,
            work: tempfile::tempdir().unwrap(),
            _data: data,
        }
    }

    fn url(&self) -> &str {
        &self.s.url
    }

    fn file(&self, name: &str, content: &[u8]) -> PathBuf {
        let path = self.work.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    /// `bonafide agent register` with the issuer's key and `extra` arguments.
    fn register(&self, extra: &[&str]) -> Output {
        let mut args = vec![
            "agent",
            "register",
            "--name",
            "PayBot",
            "--scope",
            "payments:write",
        ];
        args.extend_from_slice(extra);
        run(self.url(), Some(&self.issuer), &args)
    }

    fn agent_count(&self) -> usize {
        let out = run(
            self.url(),
            Some(&self.issuer),
            &["agent", "list", "--all", "--json"],
        );
        assert_exit(&out, 0);
        json_of(&out)["agents"].as_array().unwrap().len()
    }

    /// Creates a receiver: (receiver id, its API key).
    fn receiver(&self, name: &str) -> (String, String) {
        let out = run(
            self.url(),
            Some(&self.admin),
            &["receiver", "create", "--name", name, "--json"],
        );
        assert_exit(&out, 0);
        let v = json_of(&out);
        (
            v["receiver_id"].as_str().unwrap().to_owned(),
            v["api_key"].as_str().unwrap().to_owned(),
        )
    }
}

/// The claims of a compact JWS, unverified.
fn payload(jws: &str) -> Value {
    let middle = jws.split('.').nth(1).unwrap();
    serde_json::from_slice(&b64::decode(middle).unwrap()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[track_caller]
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", text(out));
}

/// `bonafide --url URL policy lint - [--json]` with `input` on stdin.
fn lint_stdin(url: &str, input: &[u8], json_out: bool) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["--url", url, "policy", "lint", "-"]);
    if json_out {
        cmd.arg("--json");
    }
    let mut child = cmd
        .env_remove("BONAFIDE_URL")
        .env_remove("BONAFIDE_API_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn receiver_create_prints_the_key_once_and_needs_an_admin_key() {
    let r = Registry::new();

    let out = run(
        r.url(),
        Some(&r.admin),
        &["receiver", "create", "--name", "api.shop.example"],
    );
    assert_exit(&out, 0);
    let printed = stdout(&out);
    assert!(
        printed.contains("receiver api.shop.example (rcv_"),
        "{printed}"
    );
    assert!(printed.contains("api key  bfk_rcv_"), "{printed}");
    assert!(
        printed.contains("The API key is shown only once. Keep it secret;"),
        "{printed}"
    );

    let out = run(
        r.url(),
        Some(&r.admin),
        &[
            "receiver",
            "create",
            "--name",
            "api.other.example",
            "--json",
        ],
    );
    assert_exit(&out, 0);
    let v = json_of(&out);
    assert!(
        v["receiver_id"].as_str().unwrap().starts_with("rcv_"),
        "{v}"
    );
    assert_eq!(v["name"], "api.other.example");
    assert!(
        v["api_key"].as_str().unwrap().starts_with("bfk_rcv_"),
        "{v}"
    );
    assert!(v["created_at"].is_string(), "{v}");

    // A name is unique: the registry's 409 is passed on.
    let out = run(
        r.url(),
        Some(&r.admin),
        &["receiver", "create", "--name", "api.shop.example"],
    );
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("already exists"), "{}", text(&out));
    assert!(stderr(&out).contains("HTTP 409"), "{}", text(&out));

    // No key, or an issuer's key: refused before any request.
    let out = run(
        r.url(),
        None,
        &["receiver", "create", "--name", "x.example"],
    );
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("set BONAFIDE_API_KEY to your admin API key"),
        "{}",
        text(&out)
    );
    let out = run(
        r.url(),
        Some(&r.issuer),
        &["receiver", "create", "--name", "x.example"],
    );
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("this command needs an admin key"),
        "{}",
        text(&out)
    );
    assert!(stdout(&out).is_empty(), "{}", text(&out));
}

#[test]
fn policy_lint_gives_hash_and_canonical_form_or_the_paths_of_problems() {
    let r = Registry::new();
    let policy = budget_policy();
    let file = r.file("policy.json", &serde_json::to_vec_pretty(&policy).unwrap());
    let file = file.to_str().unwrap();

    // Valid: exit 0, the hash is SHA-256 of the canonical form.
    let out = run(r.url(), None, &["policy", "lint", file, "--json"]);
    assert_exit(&out, 0);
    let v = json_of(&out);
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["errors"], json!([]), "{v}");
    let canonical = v["canonical"].as_str().unwrap();
    let hash = v["policy_hash"].as_str().unwrap();
    assert_eq!(
        hash,
        format!("sha256:{}", hex(&sha256(canonical.as_bytes())))
    );
    assert_eq!(
        serde_json::from_str::<Value>(canonical).unwrap(),
        policy,
        "the canonical form is the same policy"
    );
    // In text, and from stdin: the same hash; the file's layout does not matter.
    let out = run(r.url(), None, &["policy", "lint", file]);
    assert_exit(&out, 0);
    let printed = stdout(&out);
    assert!(printed.starts_with("VALID"), "{printed}");
    assert!(printed.contains(&format!("hash     {hash}\n")), "{printed}");
    assert!(printed.contains(canonical), "{printed}");
    let out = lint_stdin(
        r.url(),
        serde_json::to_string(&policy).unwrap().as_bytes(),
        true,
    );
    assert_exit(&out, 0);
    assert_eq!(json_of(&out)["policy_hash"], hash);

    // Invalid: exit 1 with the JSON path of the problem.
    let bad = r.file("float.json", FLOAT_AMOUNT.as_bytes());
    let bad = bad.to_str().unwrap();
    let out = run(r.url(), None, &["policy", "lint", bad]);
    assert_exit(&out, 1);
    let printed = stdout(&out);
    assert!(printed.starts_with("INVALID"), "{printed}");
    assert!(
        printed.contains("error    limits.per_txn.amount: "),
        "{printed}"
    );
    let out = run(r.url(), None, &["policy", "lint", bad, "--json"]);
    assert_exit(&out, 1);
    let v = json_of(&out);
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["errors"][0]["path"], "limits.per_txn.amount", "{v}");
    assert!(v.get("policy_hash").is_none(), "{v}");
    // The bytes are judged as written: syntax and duplicate members too.
    let dup = r.file(
        "dup.json",
        br#"{"version": "pol.v0.2", "id": "a", "id": "b", "actions": ["x"]}"#,
    );
    let out = run(r.url(), None, &["policy", "lint", dup.to_str().unwrap()]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("duplicate member `id`"),
        "{}",
        text(&out)
    );
    let out = lint_stdin(r.url(), b"version: pol.v0.2\n", false);
    assert_exit(&out, 1);
    assert!(stdout(&out).contains("malformed JSON"), "{}", text(&out));

    // Errors: exit 2.
    let missing = r.work.path().join("missing.json");
    let out = run(
        r.url(),
        None,
        &["policy", "lint", missing.to_str().unwrap()],
    );
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("cannot read the policy file"),
        "{}",
        text(&out)
    );
    assert!(stdout(&out).is_empty(), "{}", text(&out));
    let big = r.file("big.json", &vec![b' '; 70_000]);
    let out = run(r.url(), None, &["policy", "lint", big.to_str().unwrap()]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("is over 65536 bytes"),
        "{}",
        text(&out)
    );
    // Local: no registry needed (a closed port as --url), the same hash.
    let out = run(
        "http://127.0.0.1:1",
        None,
        &["policy", "lint", file, "--json"],
    );
    assert_exit(&out, 0);
    assert_eq!(json_of(&out)["policy_hash"], hash, "{}", text(&out));
}

#[test]
fn policy_lint_reports_every_problem_locally_as_the_registry_does() {
    let r = Registry::new();
    let mut bad = budget_policy();
    bad["actions"] = json!(["payments.send", "payments.send"]);
    bad["limits"]["per_period"]["period"] = json!("fortnight");
    bad["strict"] = json!("yes");
    bad["colour"] = json!("red");
    let bytes = serde_json::to_vec_pretty(&bad).unwrap();
    let file = r.file("many.json", &bytes);
    let file = file.to_str().unwrap();
    let out = run("http://127.0.0.1:1", None, &["policy", "lint", file]);
    assert_exit(&out, 1);
    let printed = stdout(&out);
    for line in [
        "error    colour: unknown field",
        "error    actions[1]: `payments.send` appears twice",
        "error    limits.per_period.period: `fortnight` is not a period",
        "error    strict: must be a boolean",
    ] {
        assert!(printed.contains(line), "{line}: {printed}");
    }
    // The same answer as POST /v1/policies/lint.
    let local = json_of(&run(r.url(), None, &["policy", "lint", file, "--json"]));
    let (status, served) = post_bytes(&format!("{}/v1/policies/lint", r.url()), None, &bytes);
    assert_eq!(status, 200);
    assert_eq!(local, served);
    assert_eq!(local["errors"].as_array().map(Vec::len), Some(4), "{local}");
}

#[test]
fn agent_register_with_a_policy_file_and_a_user() {
    let r = Registry::new();
    let policy = budget_policy();
    let file = r.file("policy.json", &serde_json::to_vec_pretty(&policy).unwrap());
    let file = file.to_str().unwrap();
    let lint = json_of(&run(r.url(), None, &["policy", "lint", file, "--json"]));
    let hash = lint["policy_hash"].as_str().unwrap();

    let out = r.register(&["--policy", file, "--user", "did:example:alice", "--json"]);
    assert_exit(&out, 0);
    let v = json_of(&out);
    assert_eq!(v["policy_hash"], hash, "{v}");
    assert_eq!(v["user"], "did:example:alice", "{v}");
    let claims = payload(v["token"].as_str().unwrap());
    assert_eq!(claims["policy"], policy, "{claims}");
    assert_eq!(claims["policy_hash"], hash, "{claims}");
    assert_eq!(claims["user"], "did:example:alice", "{claims}");

    // In text, the hash and the user are shown.
    let out = r.register(&["--policy", file, "--user", "did:example:bob"]);
    assert_exit(&out, 0);
    let printed = stdout(&out);
    assert!(printed.contains(&format!("policy   {hash}\n")), "{printed}");
    assert!(printed.contains("user     did:example:bob\n"), "{printed}");
    // Without a policy, none is shown and the token carries none.
    let out = r.register(&["--json"]);
    assert_exit(&out, 0);
    let v = json_of(&out);
    assert!(v.get("policy_hash").is_none(), "{v}");
    assert!(
        payload(v["token"].as_str().unwrap())
            .get("policy")
            .is_none()
    );
    let agents = r.agent_count();
    assert_eq!(agents, 3);

    // A policy the registry refuses: its 422 and message, with the path.
    let bad = r.file("float.json", FLOAT_AMOUNT.as_bytes());
    let out = r.register(&["--policy", bad.to_str().unwrap()]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("limits.per_txn.amount: "), "{err}");
    assert!(err.contains("POLICY_INVALID, HTTP 422"), "{err}");
    assert!(stdout(&out).is_empty(), "{}", text(&out));

    // Not JSON, a repeated member, a missing file: local errors, no request made
    // (with the registry's URL a closed port, the message is still about the file).
    let not_json = r.file("policy.yaml", b"version: pol.v0.2\nid: pol_1\n");
    let dup = r.file(
        "dup.json",
        br#"{"version": "pol.v0.2", "id": "a", "id": "b", "actions": ["x"]}"#,
    );
    // `meta` nested past the policy depth limit: the registry would accept the
    // request and then fail to mint the token (HTTP 500), so the CLI refuses it.
    let mut meta = json!({});
    for _ in 0..12 {
        meta = json!({ "x": meta });
    }
    let mut deep = budget_policy();
    deep["meta"] = meta;
    let deep = r.file("deep.json", &serde_json::to_vec(&deep).unwrap());
    let missing = r.work.path().join("missing.json");
    for (path, says) in [
        (&not_json, "is not valid JSON"),
        (&dup, "is not valid JSON: duplicate member `id`"),
        (&deep, "nested deeper than 12 levels"),
        (&missing, "cannot read the policy file"),
    ] {
        let path = path.to_str().unwrap();
        let out = r.register(&["--policy", path]);
        assert_exit(&out, 2);
        assert!(stderr(&out).contains(says), "{}", text(&out));
        let out = run(
            "http://127.0.0.1:1",
            Some(&r.issuer),
            &[
                "agent", "register", "--name", "PayBot", "--scope", "x:y", "--policy", path,
            ],
        );
        assert_exit(&out, 2);
        assert!(stderr(&out).contains(says), "{}", text(&out));
        assert!(!stderr(&out).contains("cannot reach"), "{}", text(&out));
    }
    assert_eq!(r.agent_count(), agents, "no agent was registered");
}

#[test]
fn receipt_of_a_spend_verifies_offline_against_the_served_jwks() {
    let r = Registry::new();
    let policy = r.file(
        "policy.json",
        &serde_json::to_vec_pretty(&budget_policy()).unwrap(),
    );
    let out = r.register(&[
        "--policy",
        policy.to_str().unwrap(),
        "--user",
        "did:example:alice",
        "--json",
    ]);
    assert_exit(&out, 0);
    let reg = json_of(&out);
    let token = reg["token"].as_str().unwrap();
    let (receiver_id, receiver_key) = r.receiver("api.shop.example");

    // The receiver spends 10.00 of the budget and keeps the exact body it sent.
    let request = serde_json::to_vec(&json!({
        "token": token,
        "action": "payments.send",
        "resource": {"type": "merchant", "id": "airbnb"},
        "amount": "10.00",
        "currency": "USD",
        "idempotency_key": "order-0001",
    }))
    .unwrap();
    let (status, v) = post_bytes(
        &format!("{}/v1/verify", r.url()),
        Some(&receiver_key),
        &request,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["remaining"]["amount"], "90.00", "{v}");
    let receipt_id = v["receipt_id"].as_str().unwrap().to_owned();
    assert!(receipt_id.starts_with("rcp_"), "{v}");

    let (status, answer) = get(
        &format!("{}/v1/receipts/{receipt_id}", r.url()),
        Some(&receiver_key),
    );
    assert_eq!(status, 200, "{answer}");
    let jws = serde_json::from_str::<Value>(&answer).unwrap()["jws"]
        .as_str()
        .unwrap()
        .to_owned();
    let receipt_file = r.file("receipt.json", answer.as_bytes());
    let request_file = r.file("request.json", &request);
    let jwks = format!("{}/.well-known/receipt-jwks.json", r.url());
    let check = |receipt: &PathBuf, request: &PathBuf, json_out: bool| {
        let mut args = vec![
            "receipt",
            "verify",
            receipt.to_str().unwrap(),
            "--jwks",
            &jwks,
            "--request",
            request.to_str().unwrap(),
        ];
        if json_out {
            args.push("--json");
        }
        run(r.url(), None, &args)
    };

    // The answer of GET /v1/receipts/{id}, checked against the request: exit 0.
    let out = check(&receipt_file, &request_file, true);
    assert_exit(&out, 0);
    let v = json_of(&out);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["request_checked"], true, "{v}");
    let claims = &v["receipt"];
    assert_eq!(claims["receipt_id"], receipt_id.as_str(), "{v}");
    assert_eq!(claims["decision"], "allow", "{v}");
    assert_eq!(claims["policy_hash"], reg["policy_hash"], "{v}");
    assert_eq!(claims["agent_id"], reg["agent_id"], "{v}");
    assert_eq!(claims["receiver"], receiver_id.as_str(), "{v}");
    assert_eq!(claims["remaining"]["amount"], "90.00", "{v}");
    let out = check(&receipt_file, &request_file, false);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("receipt OK: "), "{}", text(&out));

    // The raw JWS alone: exit 0.
    let raw_file = r.file("receipt.jws", format!("{jws}\n").as_bytes());
    assert_exit(&check(&raw_file, &request_file, false), 0);

    // Another amount than the one decided: exit 1.
    let mut altered: Value = serde_json::from_slice(&request).unwrap();
    altered["amount"] = json!("100.00");
    let altered_file = r.file("altered.json", &serde_json::to_vec(&altered).unwrap());
    let out = check(&receipt_file, &altered_file, false);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("RECEIPT CHECK FAILED: the receipt is for another request"),
        "{}",
        text(&out)
    );

    // A payload character changed after signing: exit 1.
    let (header, rest) = jws.split_once('.').unwrap();
    let (body, signature) = rest.split_once('.').unwrap();
    let mut chars: Vec<char> = body.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let tampered = format!(
        "{header}.{}.{signature}",
        chars.into_iter().collect::<String>()
    );
    assert_ne!(tampered, jws);
    let tampered_file = r.file("tampered.jws", tampered.as_bytes());
    let out = check(&tampered_file, &request_file, false);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("the receipt was altered after it was signed"),
        "{}",
        text(&out)
    );

    // The token JWKS does not hold the receipt key: exit 1, and the message says
    // where the receipt key is.
    let token_jwks = format!("{}/.well-known/jwks.json", r.url());
    let out = run(
        r.url(),
        None,
        &[
            "receipt",
            "verify",
            receipt_file.to_str().unwrap(),
            "--jwks",
            &token_jwks,
        ],
    );
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("receipt-jwks.json"), "{}", text(&out));
}
