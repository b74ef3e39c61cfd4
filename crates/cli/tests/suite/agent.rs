//! `agent show`, `agent issue-token`, `agent keys register|rotate`, `token exchange`,
//! `receipt get` and `simulate` as processes against the real server: what each
//! prints (checked against what the registry then does with it: tokens verify, a
//! jti revokes its token, a rotated key's tokens stop, a fetched receipt passes
//! `receipt verify`), and each refusal with its exit code. Refusals that must happen
//! before any request run against a closed port, so a request would say
//! "cannot reach".

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use bonafide_core::apikey::{ApiKey, KeyKind};
use bonafide_core::b64;
use bonafide_core::keys::{Algorithm, SigningKey};
use common::{BIN, Served, json_of, run, serve, text};
use serde_json::{Value, json};

/// Nothing listens here: port 1 on loopback is closed on any test machine.
const CLOSED: &str = "http://127.0.0.1:1";

/// A well-formed agent id no registry has.
const UNKNOWN_AGENT: &str = "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa";

/// A running registry with an issuer and a receiver, and a folder for files.
struct Registry {
    s: Served,
    admin: String,
    issuer: String,
    receiver: String,
    work: tempfile::TempDir,
    _data: tempfile::TempDir,
}

impl Registry {
    fn new() -> Self {
        let data = tempfile::tempdir().unwrap();
        let s = serve(data.path(), &[]);
        let admin = s.admin_printed.clone().unwrap();
        let issuer = create(&s.url, &admin, "issuer", "agents.example");
        let receiver = create(&s.url, &admin, "receiver", "api.shop.example");
        Registry {
            s,
            admin,
            issuer,
            receiver,
            work: tempfile::tempdir().unwrap(),
            _data: data,
        }
    }

    fn url(&self) -> &str {
        &self.s.url
    }

    /// `bonafide ARGS` with the issuer key.
    fn issuer_run(&self, args: &[&str]) -> Output {
        run(self.url(), Some(&self.issuer), args)
    }

    /// Registers an agent with the issuer key: its id and first token.
    fn register(&self, name: &str, extra: &[&str]) -> (String, String) {
        let mut args = vec!["agent", "register", "--name", name, "--json"];
        args.extend_from_slice(extra);
        let out = self.issuer_run(&args);
        assert_exit(&out, 0);
        let v = json_of(&out);
        (
            v["agent_id"].as_str().unwrap().to_owned(),
            v["token"].as_str().unwrap().to_owned(),
        )
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.work.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    /// `keys generate --alg ALG --out NAME`: the private key file, the public JWK
    /// file and the kid.
    fn generate(&self, alg: &str, name: &str) -> (PathBuf, PathBuf, String) {
        let private = self.work.path().join(name);
        let out = run(
            CLOSED,
            None,
            &[
                "keys",
                "generate",
                "--alg",
                alg,
                "--out",
                s(&private),
                "--json",
            ],
        );
        assert_exit(&out, 0);
        let kid = json_of(&out)["kid"].as_str().unwrap().to_owned();
        let public = PathBuf::from(format!("{}.pub.jwk", private.display()));
        (private, public, kid)
    }
}

/// `POST /v1/issuers` or `/v1/receivers` through the CLI: the new API key.
fn create(url: &str, admin: &str, what: &str, name: &str) -> String {
    let out = run(
        url,
        Some(admin),
        &[what, "create", "--name", name, "--json"],
    );
    assert_exit(&out, 0);
    json_of(&out)["api_key"].as_str().unwrap().to_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[track_caller]
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", text(out));
}

/// Exit 2, nothing on stdout, and `says` on stderr.
#[track_caller]
fn assert_error(out: &Output, says: &str) {
    assert_exit(out, 2);
    assert!(out.stdout.is_empty(), "stdout: {}", text(out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(says), "expected `{says}` in: {err}");
}

/// Refused before any request: exit 2 with `says`, run against a closed port (a
/// request would fail with "cannot reach the registry").
#[track_caller]
fn assert_local_refusal(key: Option<&str>, args: &[&str], says: &str) {
    let out = run(CLOSED, key, args);
    assert_error(&out, says);
    assert!(!text(&out).contains("cannot reach"), "{}", text(&out));
}

/// The claims of a compact JWS, unverified (the registry judges them; this only
/// reads what was issued).
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&b64::decode(payload).unwrap()).unwrap()
}

/// `bonafide ARGS` with `input` on stdin.
fn run_stdin(url: &str, key: Option<&str>, args: &[&str], input: &str) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("--url")
        .arg(url)
        .args(args)
        .env_remove("BONAFIDE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match key {
        Some(k) => cmd.env("BONAFIDE_API_KEY", k),
        None => cmd.env_remove("BONAFIDE_API_KEY"),
    };
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// stdout, which must be exactly one line: its text.
#[track_caller]
fn one_line(out: &Output) -> String {
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(stdout.ends_with('\n'), "{stdout:?}");
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    stdout.trim_end().to_owned()
}

/// The value of a text line `label   value` of stdout.
#[track_caller]
fn field(out: &Output, label: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix(label)
                .filter(|rest| rest.starts_with(' '))
                .map(|rest| rest.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no `{label}` line in: {stdout}"))
}

/// The line after `token…` in text output.
#[track_caller]
fn token_after_label(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    lines.find(|l| l.starts_with("token"));
    lines
        .next()
        .unwrap_or_else(|| panic!("no token in: {stdout}"))
        .to_owned()
}

/// The key refusals every issuer command shares: none, and the wrong kinds.
fn assert_needs_issuer_key(r: &Registry, args: &[&str]) {
    let out = run(r.url(), None, args);
    assert_error(&out, "set BONAFIDE_API_KEY to your issuer API key");
    for wrong in [&r.admin, &r.receiver] {
        let out = run(r.url(), Some(wrong), args);
        assert_error(&out, "this command needs an issuer key");
    }
    // A well-formed issuer key the registry does not know: its 401, with the hint.
    let stranger = ApiKey::from_random(KeyKind::Issuer, [7; 20]);
    let out = run(r.url(), Some(stranger.expose_secret()), args);
    assert_error(&out, "HTTP 401");
    assert!(
        text(&out).contains("hint: check BONAFIDE_API_KEY"),
        "{}",
        text(&out)
    );
}

#[test]
fn agent_show_prints_the_agent_as_the_registry_has_it() {
    let r = Registry::new();
    let (agent, _) = r.register(
        "ShowBot",
        &[
            "--scope",
            "read:portfolio,read:transactions",
            "--aud",
            "api.shop.example",
            "--description",
            "reads portfolios",
            "--user",
            "did:example:alice",
            "--ttl",
            "2h",
        ],
    );

    // --json: the API's answer, the same agent `agent list` shows.
    let out = r.issuer_run(&["agent", "show", &agent, "--json"]);
    assert_exit(&out, 0);
    let shown = json_of(&out);
    let out = r.issuer_run(&["agent", "list", "--json"]);
    let listed = json_of(&out)["agents"][0].clone();
    assert_eq!(shown, listed);
    assert_eq!(shown["agent_id"], agent.as_str());
    assert_eq!(shown["expiry_seconds"], 7200);

    // Text: each field on its line.
    let out = r.issuer_run(&["agent", "show", &agent]);
    assert_exit(&out, 0);
    assert_eq!(field(&out, "agent"), format!("ShowBot ({agent})"));
    assert_eq!(field(&out, "status"), "active");
    assert_eq!(field(&out, "issuer"), "agents.example");
    assert_eq!(field(&out, "scopes"), "read:portfolio, read:transactions");
    assert_eq!(field(&out, "audience"), "api.shop.example");
    assert_eq!(field(&out, "about"), "reads portfolios");
    assert_eq!(field(&out, "user"), "did:example:alice");
    assert!(field(&out, "ttl").starts_with("7200s"), "{}", text(&out));
    assert_eq!(
        field(&out, "created"),
        shown["created_at"].as_str().unwrap()
    );

    // A suspension shows, with its reason.
    let out = r.issuer_run(&["agent", "suspend", &agent, "--reason", "audit"]);
    assert_exit(&out, 0);
    let out = r.issuer_run(&["agent", "show", &agent]);
    assert_exit(&out, 0);
    assert_eq!(field(&out, "status"), "suspended");
    let said = field(&out, "suspended");
    assert!(
        said.starts_with("20") && said.ends_with(": audit"),
        "{said}"
    );

    // Unknown agent, and another issuer's agent: the same 404.
    let out = r.issuer_run(&["agent", "show", UNKNOWN_AGENT]);
    assert_error(&out, "not found");
    assert!(text(&out).contains("HTTP 404"), "{}", text(&out));
    let other = create(r.url(), &r.admin, "issuer", "other.example");
    let out = run(r.url(), Some(&other), &["agent", "show", &agent]);
    assert_error(&out, "not found");

    // Not an id: refused before any request, whatever the key.
    for bad in [
        "../../v1/issuers",
        "agt_x?y=1",
        "AGT_AAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        assert_local_refusal(
            Some(&r.issuer),
            &["agent", "show", bad],
            "not a valid agent id",
        );
    }
    assert_needs_issuer_key(&r, &["agent", "show", &agent]);
}

#[test]
fn agent_issue_token_prints_a_token_that_verifies() {
    let r = Registry::new();
    let (agent, _) = r.register(
        "IssueBot",
        &[
            "--scope",
            "read:x",
            "--aud",
            "api.shop.example",
            "--aud",
            "api.bank.example",
        ],
    );

    // Text: agent, jti, expiry and the token; the token verifies for its audience,
    // lives the --ttl asked, and is the one the jti names (revoking it stops it).
    let out = r.issuer_run(&[
        "agent",
        "issue-token",
        &agent,
        "--ttl",
        "1h",
        "--aud",
        "api.shop.example",
    ]);
    assert_exit(&out, 0);
    assert_eq!(field(&out, "agent"), agent);
    let jti = field(&out, "jti");
    assert!(jti.starts_with("tok_"), "{jti}");
    let token = token_after_label(&out);
    let c = claims_of(&token);
    assert_eq!(c["sub"], agent.as_str());
    assert_eq!(c["jti"], jti.as_str());
    assert_eq!(c["aud"], "api.shop.example");
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        3600
    );
    assert!(field(&out, "expires").starts_with("20"), "{}", text(&out));
    let out = run(
        r.url(),
        None,
        &["verify", &token, "--audience", "api.shop.example", "--json"],
    );
    assert_exit(&out, 0);
    assert_eq!(json_of(&out)["agent"]["id"], agent.as_str());
    let out = r.issuer_run(&["revoke", "--token", &jti]);
    assert_exit(&out, 0);
    let out = run(
        r.url(),
        None,
        &["verify", &token, "--audience", "api.shop.example"],
    );
    assert_exit(&out, 1);
    assert!(text(&out).contains("TOKEN_REVOKED"), "{}", text(&out));

    // --quiet: exactly one line, the token, which verifies.
    let out = r.issuer_run(&["agent", "issue-token", &agent, "--quiet"]);
    assert_exit(&out, 0);
    let quiet = one_line(&out);
    assert_eq!(claims_of(&quiet)["sub"], agent.as_str());
    let out = run(
        r.url(),
        None,
        &["verify", &quiet, "--audience", "api.bank.example"],
    );
    assert_exit(&out, 0);

    // --json: the API's answer.
    let out = r.issuer_run(&["agent", "issue-token", &agent, "--json"]);
    assert_exit(&out, 0);
    let v = json_of(&out);
    assert_eq!(v["agent_id"], agent.as_str());
    assert_eq!(claims_of(v["token"].as_str().unwrap())["jti"], v["jti"]);
    assert!(v["expires_at"].is_string());

    // The registry's refusals, exit 2 with its words; --quiet prints nothing then.
    let out = r.issuer_run(&[
        "agent",
        "issue-token",
        &agent,
        "--aud",
        "elsewhere.example",
        "--quiet",
    ]);
    assert_error(&out, "not among the agent's audiences");
    let out = r.issuer_run(&["agent", "issue-token", &agent, "--ttl", "10s"]);
    assert_error(&out, "`expiry_seconds` must be between 60");
    let out = r.issuer_run(&["agent", "issue-token", UNKNOWN_AGENT]);
    assert_error(&out, "not found");
    let out = r.issuer_run(&["agent", "suspend", &agent]);
    assert_exit(&out, 0);
    let out = r.issuer_run(&["agent", "issue-token", &agent]);
    assert_error(&out, "AGENT_SUSPENDED");

    // Local refusals: not an id, a bad duration, --quiet with --json.
    assert_local_refusal(
        Some(&r.issuer),
        &["agent", "issue-token", "agt_/../x"],
        "not a valid agent id",
    );
    assert_local_refusal(
        Some(&r.issuer),
        &["agent", "issue-token", UNKNOWN_AGENT, "--ttl", "1w"],
        "invalid duration unit",
    );
    assert_local_refusal(
        Some(&r.issuer),
        &["--json", "agent", "issue-token", UNKNOWN_AGENT, "--quiet"],
        "give one",
    );
    assert_needs_issuer_key(&r, &["agent", "issue-token", &agent]);
}

#[test]
fn agent_keys_register_and_rotate() {
    let r = Registry::new();
    let (agent, bearer) = r.register("KeyBot", &["--scope", "read:x"]);
    let (k1_private, k1_public, k1) = r.generate("EdDSA", "k1.pem");

    // Register a public JWK: the key is current, and the fresh token is bound to it.
    let out = r.issuer_run(&[
        "agent",
        "keys",
        "register",
        &agent,
        "--public-key",
        s(&k1_public),
        "--key-expires-in",
        "30d",
    ]);
    assert_exit(&out, 0);
    assert_eq!(field(&out, "agent"), agent);
    let row = field(&out, &k1);
    assert!(row.starts_with("EdDSA  current"), "{row}");
    assert!(!text(&out).contains("already had a key"), "{}", text(&out));
    let bound = token_after_label(&out);
    assert_eq!(claims_of(&bound)["cnf"]["jkt"], k1.as_str());
    assert_eq!(
        field(&out, "jti"),
        claims_of(&bound)["jti"].as_str().unwrap()
    );
    // The agent now accepts only bound tokens: its first (bearer) token is refused.
    let out = run(r.url(), None, &["verify", &bearer]);
    assert_exit(&out, 1);
    // And issue-token binds to the key too.
    let out = r.issuer_run(&["agent", "issue-token", &agent, "--quiet"]);
    assert_exit(&out, 0);
    assert_eq!(claims_of(&one_line(&out))["cnf"]["jkt"], k1.as_str());

    // Simulate sends no proof of possession: a bound token answers PROOF_REQUIRED.
    let out = run(r.url(), None, &["simulate", &bound]);
    assert_exit(&out, 1);
    assert!(
        text(&out).starts_with("INVALID  PROOF_REQUIRED"),
        "{}",
        text(&out)
    );

    // Rotate to a PEM public key (SubjectPublicKeyInfo) with no grace: the first key
    // is retired at once, so its tokens answer KEY_ROTATED.
    let k2 = SigningKey::generate(Algorithm::ES256).unwrap();
    let k2_pem = r.file("k2.pub.pem", &k2.verifying_key().public_pem().unwrap());
    let out = r.issuer_run(&[
        "agent",
        "keys",
        "rotate",
        &agent,
        "--public-key",
        s(&k2_pem),
        "--grace",
        "0",
        "--json",
    ]);
    assert_exit(&out, 0);
    let v = json_of(&out);
    assert_eq!(v["agent_id"], agent.as_str());
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{v}");
    assert_eq!(keys[0]["jkt"], k1.as_str());
    assert_eq!(keys[0]["status"], "retired");
    assert_eq!(keys[1]["jkt"], k2.kid());
    assert_eq!(keys[1]["alg"], "ES256");
    assert_eq!(keys[1]["status"], "current");
    assert_eq!(
        claims_of(v["token"].as_str().unwrap())["cnf"]["jkt"],
        k2.kid()
    );
    let out = run(r.url(), None, &["simulate", &bound]);
    assert_exit(&out, 1);
    assert!(
        field(&out, "reasons").contains("KEY_ROTATED"),
        "{}",
        text(&out)
    );

    // Rotate again with a grace period: the previous key is in grace until then.
    let (_, k3_public, k3) = r.generate("ES256", "k3.pem");
    let out = r.issuer_run(&[
        "agent",
        "keys",
        "rotate",
        &agent,
        "--public-key",
        s(&k3_public),
        "--grace",
        "2h",
    ]);
    assert_exit(&out, 0);
    let row = field(&out, k2.kid());
    assert!(row.starts_with("ES256  grace"), "{row}");
    assert!(field(&out, &k3).starts_with("ES256  current"));

    // `register` on an agent that has a key says it was a rotation.
    let (_, k4_public, _) = r.generate("EdDSA", "k4.pem");
    let out = r.issuer_run(&[
        "agent",
        "keys",
        "register",
        &agent,
        "--public-key",
        s(&k4_public),
    ]);
    assert_exit(&out, 0);
    assert!(text(&out).contains("already had a key"), "{}", text(&out));

    // The registry's refusals: a key it already has, RSA, a grace over 30 days, an
    // unknown agent, another issuer's agent.
    let out = r.issuer_run(&[
        "agent",
        "keys",
        "rotate",
        &agent,
        "--public-key",
        s(&k3_public),
    ]);
    assert_error(&out, "KEY_ALREADY_REGISTERED");
    let (_, rsa_public, _) = r.generate("RS256", "rsa.pem");
    let out = r.issuer_run(&[
        "agent",
        "keys",
        "register",
        &agent,
        "--public-key",
        s(&rsa_public),
    ]);
    assert_error(&out, "KEY_INVALID");
    let (_, k5_public, _) = r.generate("EdDSA", "k5.pem");
    let out = r.issuer_run(&[
        "agent",
        "keys",
        "rotate",
        &agent,
        "--public-key",
        s(&k5_public),
        "--grace",
        "31d",
    ]);
    assert_error(&out, "`grace_seconds` must be between 0 and 2592000");
    let out = r.issuer_run(&[
        "agent",
        "keys",
        "register",
        UNKNOWN_AGENT,
        "--public-key",
        s(&k5_public),
    ]);
    assert_error(&out, "not found");

    // Private material never leaves: a JWK with private members (`d`), a JWK Set
    // holding one, a private PEM, refused before any request and before the API key
    // is even looked at (none is set).
    let mut private_jwk: Value =
        serde_json::from_str(&std::fs::read_to_string(&k5_public).unwrap()).unwrap();
    private_jwk["d"] = json!("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A");
    let private_jwk_file = r.file("private.jwk", &private_jwk.to_string());
    let set_file = r.file("set.jwk", &json!({ "keys": [private_jwk] }).to_string());
    for cmd in ["register", "rotate"] {
        for (file, says) in [
            (&private_jwk_file, "contains the private member `d`"),
            (&set_file, "contains the private member `d`"),
            (&k1_private, "is a private key"),
        ] {
            assert_local_refusal(
                None,
                &["agent", "keys", cmd, &agent, "--public-key", s(file)],
                says,
            );
        }
        // Not an id; a file that is no key; a missing file.
        assert_local_refusal(
            Some(&r.issuer),
            &[
                "agent",
                "keys",
                cmd,
                "agt_../../x",
                "--public-key",
                s(&k5_public),
            ],
            "not a valid agent id",
        );
        let junk = r.file(
            "junk.pem",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        );
        assert_local_refusal(
            Some(&r.issuer),
            &["agent", "keys", cmd, &agent, "--public-key", s(&junk)],
            "is not a PEM public key",
        );
        assert_local_refusal(
            Some(&r.issuer),
            &[
                "agent",
                "keys",
                cmd,
                &agent,
                "--public-key",
                "/nonexistent/k.jwk",
            ],
            "cannot read the public key file",
        );
        assert_needs_issuer_key(
            &r,
            &["agent", "keys", cmd, &agent, "--public-key", s(&k5_public)],
        );
    }
}

#[test]
fn token_exchange_delegates_and_shows_oauth_errors() {
    let r = Registry::new();
    let (parent, parent_token) = r.register(
        "ParentBot",
        &["--scope", "read:x,read:y", "--aud", "api.shop.example"],
    );
    let (actor, actor_token) = r.register("ChildBot", &["--scope", "read:z"]);

    // Text: jti, scope, expiry and the child, which verifies with the chain.
    let out = r.issuer_run(&[
        "token",
        "exchange",
        "--subject-token",
        &parent_token,
        "--actor-token",
        &actor_token,
        "--scope",
        "read:x",
        "--ttl",
        "30m",
    ]);
    assert_exit(&out, 0);
    let jti = field(&out, "jti");
    assert!(jti.starts_with("tok_"), "{jti}");
    assert_eq!(field(&out, "scope"), "read:x");
    assert!(
        field(&out, "expires").ends_with("(in 1800s)"),
        "{}",
        text(&out)
    );
    let child = token_after_label(&out);
    let c = claims_of(&child);
    assert_eq!(c["jti"], jti.as_str());
    assert_eq!(c["act"]["sub"], actor.as_str());
    let out = run(
        r.url(),
        None,
        &["verify", &child, "--audience", "api.shop.example", "--json"],
    );
    assert_exit(&out, 0);
    let v = json_of(&out);
    assert_eq!(v["agent"]["id"], parent.as_str());
    assert_eq!(v["agent"]["active_scopes"], json!(["read:x"]));

    // --quiet: one line; the subject token from stdin.
    let out = run_stdin(
        r.url(),
        Some(&r.issuer),
        &[
            "token",
            "exchange",
            "--subject-token",
            "-",
            "--actor-token",
            &actor_token,
            "--quiet",
        ],
        &format!("{parent_token}\n"),
    );
    assert_exit(&out, 0);
    let quiet = one_line(&out);
    assert_eq!(claims_of(&quiet)["act"]["sub"], actor.as_str());
    let out = run(
        r.url(),
        None,
        &["verify", &quiet, "--audience", "api.shop.example"],
    );
    assert_exit(&out, 0);

    // --json: the RFC 8693 answer.
    let out = r.issuer_run(&[
        "token",
        "exchange",
        "--subject-token",
        &parent_token,
        "--actor-token",
        &actor_token,
        "--json",
    ]);
    assert_exit(&out, 0);
    let v = json_of(&out);
    assert_eq!(v["token_type"], "N_A");
    assert_eq!(
        v["issued_token_type"],
        "urn:ietf:params:oauth:token-type:jwt"
    );
    assert_eq!(v["scope"], "read:x read:y");
    assert_eq!(
        claims_of(v["access_token"].as_str().unwrap())["jti"],
        v["jti"]
    );

    // OAuth errors, readable: the RFC code, the words, Bonafide's code.
    let out = r.issuer_run(&[
        "token",
        "exchange",
        "--subject-token",
        &parent_token,
        "--actor-token",
        &actor_token,
        "--scope",
        "write:z",
    ]);
    assert_error(
        &out,
        "error: invalid_scope: the child token would be wider than its parent",
    );
    assert!(
        text(&out).contains("(DELEGATION_WIDENS, HTTP 400"),
        "{}",
        text(&out)
    );
    let out = r.issuer_run(&[
        "token",
        "exchange",
        "--subject-token",
        "not.a.token",
        "--actor-token",
        &actor_token,
    ]);
    assert_error(&out, "invalid_request: `subject_token` does not verify");
    let other = create(r.url(), &r.admin, "issuer", "other.example");
    let out = run(
        r.url(),
        Some(&other),
        &[
            "token",
            "exchange",
            "--subject-token",
            &parent_token,
            "--actor-token",
            &actor_token,
        ],
    );
    assert_error(
        &out,
        "invalid_grant: `subject_token` is not a token of one of this issuer's agents",
    );
    // A revoked parent: its token no longer exchanges.
    let out = r.issuer_run(&["revoke", "--agent", &parent]);
    assert_exit(&out, 0);
    let out = r.issuer_run(&[
        "token",
        "exchange",
        "--subject-token",
        &parent_token,
        "--actor-token",
        &actor_token,
        "--quiet",
    ]);
    assert_error(&out, "invalid_request: `subject_token` does not verify");
    assert!(
        text(&out).contains("(TOKEN_REVOKED, HTTP 400"),
        "{}",
        text(&out)
    );
    // ... nor do its children.
    let out = run(
        r.url(),
        None,
        &["verify", &child, "--audience", "api.shop.example"],
    );
    assert_exit(&out, 1);

    // Local refusals: two readers of stdin, a bad policy file, a bad duration, no
    // actor token (clap), the wrong kind of key.
    assert_local_refusal(
        Some(&r.issuer),
        &[
            "token",
            "exchange",
            "--subject-token",
            "-",
            "--actor-token",
            "-",
        ],
        "only one of --subject-token, --actor-token and --policy can read stdin",
    );
    let not_json = r.file("policy.txt", "actions: [x]");
    assert_local_refusal(
        Some(&r.issuer),
        &[
            "token",
            "exchange",
            "--subject-token",
            &parent_token,
            "--actor-token",
            &actor_token,
            "--policy",
            s(&not_json),
        ],
        "is not valid JSON",
    );
    assert_local_refusal(
        Some(&r.issuer),
        &[
            "token",
            "exchange",
            "--subject-token",
            &parent_token,
            "--actor-token",
            &actor_token,
            "--ttl",
            "soon",
        ],
        "invalid duration",
    );
    let out = run(
        CLOSED,
        Some(&r.issuer),
        &["token", "exchange", "--subject-token", &parent_token],
    );
    assert_exit(&out, 2);
    assert!(text(&out).contains("--actor-token"), "{}", text(&out));
    assert_needs_issuer_key(
        &r,
        &[
            "token",
            "exchange",
            "--subject-token",
            &parent_token,
            "--actor-token",
            &actor_token,
        ],
    );
}

/// `POST /v1/verify` as a receiver (with its key): the answer.
fn verify_as(url: &str, key: &str, body: Value) -> Value {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            reqwest::Client::new()
                .post(format!("{url}/v1/verify"))
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        })
}

#[test]
fn receipt_get_fetches_a_receipt_that_verifies() {
    let r = Registry::new();
    let (agent, token) = r.register("ReceiptBot", &["--scope", "read:x"]);
    let jwks = format!("{}/.well-known/receipt-jwks.json", r.url());

    // A denied decision by an anonymous verify: its issuer reads the receipt.
    let out = run(
        r.url(),
        None,
        &["verify", &token, "--scope", "write:y", "--json"],
    );
    assert_exit(&out, 1);
    let denied = json_of(&out)["receipt_id"].as_str().unwrap().to_owned();
    let out = r.issuer_run(&["receipt", "get", &denied]);
    assert_exit(&out, 0);
    assert_eq!(field(&out, "receipt"), denied);
    assert_eq!(field(&out, "decision"), "deny");
    assert_eq!(field(&out, "valid"), "true");
    assert_eq!(field(&out, "reasons"), "SCOPE_NOT_GRANTED");
    assert_eq!(field(&out, "agent"), agent);
    assert_eq!(
        field(&out, "jti"),
        claims_of(&token)["jti"].as_str().unwrap()
    );
    assert!(field(&out, "audit").starts_with("entry "), "{}", text(&out));

    // --json > file passes `receipt verify` with the receipt JWKS.
    let out = r.issuer_run(&["receipt", "get", &denied, "--json"]);
    assert_exit(&out, 0);
    let answer = json_of(&out);
    assert_eq!(answer["receipt_id"], denied.as_str());
    let file = r.work.path().join("receipt.json");
    std::fs::write(&file, &out.stdout).unwrap();
    let out = run(
        CLOSED,
        None,
        &["receipt", "verify", s(&file), "--jwks", &jwks, "--json"],
    );
    assert_exit(&out, 0);
    let checked = json_of(&out);
    assert_eq!(checked["ok"], true);
    assert_eq!(checked["receipt"]["receipt_id"], denied.as_str());
    assert_eq!(checked["receipt"]["decision"], "deny");
    // Altered, it fails: the check is real.
    let mut forged = answer.clone();
    let jws = answer["jws"].as_str().unwrap();
    let mut parts: Vec<String> = jws.split('.').map(str::to_owned).collect();
    let mut claims = claims_of(jws);
    claims["decision"] = json!("allow");
    parts[1] = b64::encode(claims.to_string().as_bytes());
    forged["jws"] = json!(parts.join("."));
    let forged_file = r.file("forged.json", &forged.to_string());
    let out = run(
        CLOSED,
        None,
        &["receipt", "verify", s(&forged_file), "--jwks", &jwks],
    );
    assert_exit(&out, 1);

    // A receiver's decision: that receiver reads it, another receiver does not.
    let v = verify_as(
        r.url(),
        &r.receiver,
        json!({ "token": token, "audience": "api.shop.example", "scopes_requested": ["read:x"] }),
    );
    assert_eq!(v["allowed"], true, "{v}");
    let allowed = v["receipt_id"].as_str().unwrap().to_owned();
    let out = run(r.url(), Some(&r.receiver), &["receipt", "get", &allowed]);
    assert_exit(&out, 0);
    assert_eq!(field(&out, "decision"), "allow");
    assert!(
        field(&out, "receiver").starts_with("rcv_"),
        "{}",
        text(&out)
    );
    let stranger = create(r.url(), &r.admin, "receiver", "api.other.example");
    let out = run(r.url(), Some(&stranger), &["receipt", "get", &allowed]);
    assert_error(&out, "not found");

    // Unknown receipt, another issuer: 404 exit 2.
    let out = r.issuer_run(&["receipt", "get", "rcp_aaaaaaaaaaaaaaaaaaaaaaaaaa"]);
    assert_error(&out, "not found");
    assert!(text(&out).contains("HTTP 404"), "{}", text(&out));
    let other = create(r.url(), &r.admin, "issuer", "other.example");
    let out = run(r.url(), Some(&other), &["receipt", "get", &denied]);
    assert_error(&out, "not found");

    // Local refusals: not a receipt id, no key, an admin key (it never reads
    // receipts: the audit log is its record).
    for bad in ["rcp_../../v1/issuers", "rcp_x#y", agent.as_str()] {
        assert_local_refusal(
            Some(&r.issuer),
            &["receipt", "get", bad],
            "not a valid receipt id",
        );
    }
    assert_local_refusal(None, &["receipt", "get", &denied], "set BONAFIDE_API_KEY");
    assert_local_refusal(
        Some(&r.admin),
        &["receipt", "get", &denied],
        "BONAFIDE_API_KEY is an admin key",
    );
}

#[test]
fn simulate_shows_the_verdict_and_its_reasons() {
    let r = Registry::new();
    let policy = r.file(
        "policy.json",
        &json!({
            "version": "pol.v0.2",
            "id": "pol_sim_001",
            "actions": ["payments.send"],
            "resources": [{"type": "merchant", "match": {"ids": ["airbnb"], "prefixes": ["acct/12"]}}],
            "limits": {
                "per_txn": {"amount": "100.00", "currency": "USD"},
                "per_period": {"amount": "150.00", "currency": "USD", "period": "day"}
            }
        })
        .to_string(),
    );
    let (agent, token) = r.register(
        "PayBot",
        &["--scope", "payments:write", "--policy", s(&policy)],
    );
    let pay = |amount: &str| {
        vec![
            "simulate".to_owned(),
            token.clone(),
            "--action".into(),
            "payments.send".into(),
            "--resource".into(),
            "merchant/acct/12/sub".into(),
            "--amount".into(),
            amount.into(),
            "--currency".into(),
            "USD".into(),
        ]
    };

    // Allowed: exit 0, the budget left, and nothing spent (twice the same).
    let allowed = pay("80");
    for _ in 0..2 {
        let out = run(r.url(), Some(&r.receiver), &args(&allowed));
        assert_exit(&out, 0);
        let said = text(&out);
        assert!(said.starts_with("VALID, ALLOWED (simulated"), "{said}");
        assert_eq!(field(&out, "agent"), format!("PayBot ({agent})"));
        assert!(
            field(&out, "remaining").starts_with("70.00 USD this day"),
            "{said}"
        );
        assert!(!said.contains("reasons"), "{said}");
    }

    // Not allowed: exit 1, and every reason code in the text.
    let out = run(r.url(), Some(&r.receiver), &args(&pay("120")));
    assert_exit(&out, 1);
    assert!(
        text(&out).starts_with("VALID, NOT ALLOWED"),
        "{}",
        text(&out)
    );
    assert_eq!(field(&out, "reasons"), "LIMIT_PER_TXN");
    let out = run(
        r.url(),
        None,
        &[
            "simulate",
            &token,
            "--scope",
            "read:x",
            "--action",
            "payments.refund",
            "--resource",
            "merchant/other",
        ],
    );
    assert_exit(&out, 1);
    assert_eq!(
        field(&out, "reasons"),
        "SCOPE_NOT_GRANTED, POLICY_ACTION, POLICY_RESOURCE, AMOUNT_REQUIRED"
    );
    assert!(field(&out, "reason").len() > 3, "{}", text(&out));
    // --json: the API's answer, the same exit code.
    let out = run(
        r.url(),
        None,
        &["simulate", &token, "--scope", "read:x", "--json"],
    );
    assert_exit(&out, 1);
    let v = json_of(&out);
    assert_eq!(v["simulated"], true);
    assert_eq!(v["allowed"], false);
    assert!(
        v["reasons"]
            .as_array()
            .unwrap()
            .contains(&json!("SCOPE_NOT_GRANTED")),
        "{v}"
    );

    // An agent without a policy: scopes alone; the token from stdin.
    let (_, plain) = r.register("ReadBot", &["--scope", "read:x"]);
    let out = run_stdin(
        r.url(),
        None,
        &["simulate", "-", "--scope", "read:x"],
        &plain,
    );
    assert_exit(&out, 0);
    assert!(text(&out).starts_with("VALID, ALLOWED"), "{}", text(&out));

    // A revoked token: invalid, exit 1, its code.
    let out = r.issuer_run(&["revoke", "--agent", &agent]);
    assert_exit(&out, 0);
    let out = run(r.url(), Some(&r.receiver), &args(&allowed));
    assert_exit(&out, 1);
    assert!(
        text(&out).starts_with("INVALID  TOKEN_REVOKED"),
        "{}",
        text(&out)
    );
    assert!(
        field(&out, "reasons").contains("TOKEN_REVOKED"),
        "{}",
        text(&out)
    );

    // Errors are exit 2: an amount without a receiver key (the registry's 401/403),
    // a malformed resource or key (local).
    let out = run(r.url(), None, &args(&pay("10")));
    assert_error(&out, "send a receiver key");
    let out = run(r.url(), Some(&r.issuer), &args(&pay("10")));
    assert_error(&out, "not an admin or issuer key");
    assert_local_refusal(
        None,
        &[
            "simulate",
            &plain,
            "--action",
            "a.b",
            "--resource",
            "merchant",
        ],
        "give TYPE/ID",
    );
    assert_local_refusal(
        Some("bfk_rcv_nonsense"),
        &["simulate", &plain],
        "BONAFIDE_API_KEY",
    );
    let out = run(CLOSED, None, &["simulate", &plain]);
    assert_error(&out, "cannot reach the registry");
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
