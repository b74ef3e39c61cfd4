//! Self-custody from the command line: `keys generate`, `token sign` and the local
//! refusals of `issuer-key add`, all offline (no server; client commands point at a
//! closed port, so any request would fail with "unreachable").

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use bonafide_core::b64;
use bonafide_core::ids::{AgentId, IssuerId};
use bonafide_core::keys::{Jwk, Jwks, SigningKey};
use bonafide_core::policy::Policy;
use bonafide_core::token::{self, Audience, KeySet, TokenError, VerifyOptions};
use common::{json_of, run, text};
use serde_json::{Value, json};

/// Nothing listens here: port 1 on loopback is closed on any test machine.
const CLOSED: &str = "http://127.0.0.1:1";

const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

fn issuer_id() -> String {
    IssuerId::from_random([3; 16]).to_string()
}

fn agent_id() -> String {
    AgentId::from_random([9; 16]).to_string()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn pub_of(p: &Path) -> PathBuf {
    PathBuf::from(format!("{}.pub.jwk", p.display()))
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn assert_exit(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", text(out));
}

/// RFC 7638 §3.2, computed here from the members rather than by the code under test.
fn thumbprint(jwk: &Value) -> String {
    let m = |k: &str| jwk[k].as_str().unwrap().to_owned();
    let canonical = match jwk["kty"].as_str().unwrap() {
        "OKP" => format!(r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#, m("crv"), m("x")),
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            m("crv"),
            m("x"),
            m("y")
        ),
        "RSA" => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, m("e"), m("n")),
        other => panic!("unexpected kty {other}"),
    };
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    b64::encode(digest.as_ref())
}

/// `keys generate --alg ALG --out FILE --json`, checked to succeed.
fn generate(dir: &Path, alg: &str, name: &str) -> (PathBuf, Value) {
    let key = dir.join(name);
    let out = run(
        CLOSED,
        None,
        &["keys", "generate", "--alg", alg, "--out", s(&key), "--json"],
    );
    assert_exit(&out, 0);
    (key, json_of(&out))
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn payload(token: &str) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    serde_json::from_slice(&b64::decode(parts[1]).unwrap()).unwrap()
}

fn header(token: &str) -> Value {
    let first = token.split('.').next().unwrap();
    serde_json::from_slice(&b64::decode(first).unwrap()).unwrap()
}

fn key_set(pub_jwk: &Path) -> KeySet {
    let jwk: Jwk = serde_json::from_slice(&std::fs::read(pub_jwk).unwrap()).unwrap();
    KeySet::from_jwks(&Jwks { keys: vec![jwk] }).unwrap()
}

fn sign(key: &Path, extra: &[&str]) -> Output {
    let (iss, agt) = (issuer_id(), agent_id());
    let mut args = vec![
        "token",
        "sign",
        "--key",
        s(key),
        "--issuer",
        &iss,
        "--agent",
        &agt,
    ];
    args.extend_from_slice(extra);
    run(CLOSED, None, &args)
}

#[test]
fn keys_generate_writes_a_private_pem_0600_and_its_public_jwk() {
    let dir = tempfile::tempdir().unwrap();
    for (alg, kty) in [("EdDSA", "OKP"), ("ES256", "EC"), ("RS256", "RSA")] {
        let (key, v) = generate(dir.path(), alg, &format!("{alg}.pem"));
        let pem = std::fs::read_to_string(&key).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        #[cfg(unix)]
        assert_eq!(mode(&key), 0o600, "{alg}");

        // The public JWK: no private members, kid = RFC 7638 thumbprint, alg set.
        let jwk = read_json(&pub_of(&key));
        assert_eq!(jwk["kty"], kty);
        for m in PRIVATE_MEMBERS {
            assert!(jwk.get(m).is_none(), "{alg}: `{m}` in {jwk}");
        }
        let kid = thumbprint(&jwk);
        assert_eq!(jwk["kid"], kid.as_str());
        assert_eq!(jwk["alg"], alg);

        // --json: exactly these members, matching the files.
        assert_eq!(
            v,
            json!({
                "kid": kid,
                "alg": alg,
                "jwk": jwk,
                "private_key_file": s(&key),
                "public_jwk_file": s(&pub_of(&key)),
            })
        );

        // The PEM is the private half of that JWK.
        let loaded = SigningKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(loaded.kid(), kid);
        assert_eq!(loaded.alg().as_str(), alg);
    }

    // Text output: the kid and the public JWK; never the private key.
    let key = dir.path().join("text.pem");
    let out = run(
        CLOSED,
        None,
        &["keys", "generate", "--alg", "EdDSA", "--out", s(&key)],
    );
    assert_exit(&out, 0);
    let said = text(&out);
    let kid = read_json(&pub_of(&key))["kid"].as_str().unwrap().to_owned();
    assert!(said.contains(&format!("kid      {kid}")), "{said}");
    assert!(said.contains(r#""kty": "OKP""#), "{said}");
    let pem = std::fs::read_to_string(&key).unwrap();
    let body = pem.lines().nth(1).unwrap();
    assert!(
        !said.contains("PRIVATE KEY") && !said.contains(body),
        "{said}"
    );
}

#[test]
fn keys_generate_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let (key, first) = generate(dir.path(), "EdDSA", "issuer.pem");
    let before = std::fs::read(&key).unwrap();

    for alg in ["EdDSA", "RS256"] {
        let out = run(
            CLOSED,
            None,
            &["keys", "generate", "--alg", alg, "--out", s(&key)],
        );
        assert_exit(&out, 2);
        assert!(
            text(&out).contains("exists; pass --force"),
            "{}",
            text(&out)
        );
    }
    assert_eq!(std::fs::read(&key).unwrap(), before);
    assert_eq!(read_json(&pub_of(&key))["kid"], first["kid"]);

    // Only the .pub.jwk in the way: refused too, and no private key left behind.
    let lone = dir.path().join("lone.pem");
    std::fs::write(pub_of(&lone), "{}").unwrap();
    let out = run(
        CLOSED,
        None,
        &["keys", "generate", "--alg", "EdDSA", "--out", s(&lone)],
    );
    assert_exit(&out, 2);
    assert!(!lone.exists());

    // --force replaces both; the new private file is 0600 even where the old one was
    // readable by everyone.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let out = run(
        CLOSED,
        None,
        &[
            "keys",
            "generate",
            "--alg",
            "ES256",
            "--out",
            s(&key),
            "--force",
            "--json",
        ],
    );
    assert_exit(&out, 0);
    let second = json_of(&out);
    assert_ne!(second["kid"], first["kid"]);
    assert_ne!(std::fs::read(&key).unwrap(), before);
    assert_eq!(read_json(&pub_of(&key))["kid"], second["kid"]);
    #[cfg(unix)]
    assert_eq!(mode(&key), 0o600);
    // No temporary files left in the directory.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["issuer.pem", "issuer.pem.pub.jwk", "lone.pem.pub.jwk"]
    );
}

#[test]
fn token_sign_makes_a_token_that_verifies_with_the_public_jwk() {
    let dir = tempfile::tempdir().unwrap();
    let policy_value = json!({
        "version": "pol.v0.2",
        "id": "pol_cli_001",
        "actions": ["payments.send"],
        "limits": {"per_txn": {"amount": "25.00", "currency": "USD"}}
    });
    let policy_file = dir.path().join("policy.json");
    // Indented on purpose: the hash is of the canonical form, not of the file.
    std::fs::write(
        &policy_file,
        serde_json::to_string_pretty(&policy_value).unwrap(),
    )
    .unwrap();
    let expected_hash = Policy::parse(&std::fs::read(&policy_file).unwrap())
        .unwrap()
        .hash()
        .to_owned();

    for alg in ["EdDSA", "ES256", "RS256"] {
        let (key, generated) = generate(dir.path(), alg, &format!("{alg}.pem"));
        let before = now();
        let out = sign(
            &key,
            &[
                "--scope",
                "payments:write,read:portfolio",
                "--scope",
                "payments:write",
                "--ttl",
                "2h",
                "--aud",
                "api.shop.example",
                "--aud",
                "api.bank.example",
                "--policy",
                s(&policy_file),
                "--user",
                "did:example:alice",
                "--name",
                "PayBot",
            ],
        );
        assert_exit(&out, 0);
        // Only the token on stdout, so that it can be captured.
        let stdout = String::from_utf8(out.stdout.clone()).unwrap();
        assert_eq!(stdout.matches('\n').count(), 1, "{stdout}");
        let token = stdout.trim_end_matches('\n');
        assert_eq!(token.split('.').count(), 3, "{stdout}");

        let h = header(token);
        assert_eq!(h["alg"], alg);
        assert_eq!(h["kid"], generated["kid"]);
        assert_eq!(h["typ"], "agent+jwt");

        let c = payload(token);
        assert_eq!(c["iss"], issuer_id());
        assert_eq!(c["sub"], agent_id());
        assert_eq!(c["scope"], "payments:write read:portfolio");
        assert_eq!(
            c["agent"],
            json!({"name": "PayBot", "issuer": issuer_id(), "scopes": ["payments:write", "read:portfolio"]})
        );
        assert_eq!(c["aud"], json!(["api.shop.example", "api.bank.example"]));
        assert_eq!(c["user"], "did:example:alice");
        let iat = c["iat"].as_i64().unwrap();
        assert!(iat >= before && iat <= now(), "{c}");
        assert_eq!(c["nbf"], iat);
        assert_eq!(c["exp"].as_i64().unwrap() - iat, 7200);
        assert!(c["jti"].as_str().unwrap().starts_with("tok_"), "{c}");
        assert_eq!(c["policy"], policy_value);
        assert_eq!(c["policy_hash"], expected_hash.as_str());

        // Verifies with the public JWK alone, for this issuer and no other.
        let keys = key_set(&pub_of(&key));
        let mut opts = VerifyOptions::for_issuer(issuer_id());
        opts.audience = token::AudienceRule::one("api.bank.example");
        let verified =
            token::verify(token, &keys, &opts, now()).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(verified.claims.sub.as_str(), agent_id());
        assert_eq!(
            token::policy_of(&verified.claims).unwrap().unwrap().hash(),
            expected_hash
        );
        opts.issuers = vec![IssuerId::from_random([4; 16]).to_string()];
        assert!(matches!(
            token::verify(token, &keys, &opts, now()),
            Err(TokenError::IssuerUnknown(_))
        ));
    }
}

#[test]
fn token_sign_json_and_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let (key, generated) = generate(dir.path(), "EdDSA", "k.pem");
    let out = sign(
        &key,
        &[
            "--scope",
            "read:x",
            "--ttl",
            "60s",
            "--aud",
            "api.one.example",
            "--json",
        ],
    );
    assert_exit(&out, 0);
    let v = json_of(&out);
    let token = v["token"].as_str().unwrap();
    let c = payload(token);
    assert_eq!(v["jti"], c["jti"]);
    assert_eq!(v["kid"], generated["kid"]);
    let expires: jiff::Timestamp = v["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires.as_second(), c["exp"].as_i64().unwrap());
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 60);
    // One audience is a string; the name defaults to the agent id; no policy, no user.
    assert_eq!(c["aud"], "api.one.example");
    assert_eq!(c["agent"]["name"], agent_id());
    for absent in ["policy", "policy_hash", "user"] {
        assert!(c.get(absent).is_none(), "{c}");
    }
    let mut opts = VerifyOptions::for_issuer(issuer_id());
    opts.audience = token::AudienceRule::one("api.one.example");
    let verified = token::verify(token, &key_set(&pub_of(&key)), &opts, now()).unwrap();
    assert_eq!(
        verified.claims.aud,
        Some(Audience::One("api.one.example".into()))
    );

    // Every token has its own jti.
    let again = json_of(&sign(&key, &["--scope", "read:x", "--ttl", "1h", "--json"]));
    assert_ne!(again["jti"], v["jti"]);
}

#[test]
fn token_sign_refusals_exit_2_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = generate(dir.path(), "EdDSA", "k.pem");
    let ok = ["--scope", "read:x", "--ttl", "1h"];

    let expect = |out: Output, needle: &str| {
        assert_exit(&out, 2);
        assert!(out.stdout.is_empty(), "{}", text(&out));
        assert!(
            text(&out).contains(needle),
            "want `{needle}`: {}",
            text(&out)
        );
    };

    // Key files: missing, a public JWK, a public PEM, not a key at all.
    let missing = dir.path().join("missing.pem");
    expect(
        sign(&missing, &ok),
        &format!("cannot read the key file `{}`", missing.display()),
    );
    expect(sign(&pub_of(&key), &ok), "is a JWK");
    let spki = dir.path().join("public.pem");
    let public_pem = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&key).unwrap())
        .unwrap()
        .verifying_key()
        .public_pem()
        .unwrap();
    std::fs::write(&spki, public_pem).unwrap();
    expect(sign(&spki, &ok), "is a public key");
    let junk = dir.path().join("junk.pem");
    std::fs::write(
        &junk,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    expect(sign(&junk, &ok), "is not a PKCS#8 PEM private key");

    // Lifetimes: not a duration, too short, too long.
    for ttl in ["5w", "soon", "1.5h"] {
        expect(
            sign(&key, &["--scope", "read:x", "--ttl", ttl]),
            "invalid duration",
        );
    }
    for (ttl, says) in [
        (
            "0",
            "the lifetime must be at least 60s (allowed: 60s to 365d)",
        ),
        (
            "59s",
            "the lifetime must be at least 60s (allowed: 60s to 365d)",
        ),
        (
            "366d",
            "the lifetime must be at most 365d (allowed: 60s to 365d)",
        ),
    ] {
        expect(sign(&key, &["--scope", "read:x", "--ttl", ttl]), says);
    }

    // Ids and scopes.
    let out = run(
        CLOSED,
        None,
        &[
            "token",
            "sign",
            "--key",
            s(&key),
            "--issuer",
            &issuer_id(),
            "--agent",
            "agt_nope",
            "--scope",
            "read:x",
            "--ttl",
            "1h",
        ],
    );
    expect(out, "--agent: `agt_nope` is not a valid agent id");
    let out = run(
        CLOSED,
        None,
        &[
            "token",
            "sign",
            "--key",
            s(&key),
            "--issuer",
            &agent_id(),
            "--agent",
            &agent_id(),
            "--scope",
            "read:x",
            "--ttl",
            "1h",
        ],
    );
    expect(out, "--issuer:");
    expect(
        sign(&key, &["--scope", "Read X", "--ttl", "1h"]),
        "--scope:",
    );

    // An invalid policy: refused locally with the file and the JSON path.
    let bad = dir.path().join("bad-policy.json");
    std::fs::write(
        &bad,
        r#"{"version": "pol.v0.2", "id": "p", "actions": ["payments.send"],
            "limits": {"per_txn": {"amount": "ten", "currency": "USD"}}}"#,
    )
    .unwrap();
    let out = sign(
        &key,
        &["--scope", "read:x", "--ttl", "1h", "--policy", s(&bad)],
    );
    expect(
        out,
        &format!(
            "the policy file `{}` is invalid: limits.per_txn.amount",
            bad.display()
        ),
    );
    let dup = dir.path().join("dup-policy.json");
    std::fs::write(
        &dup,
        r#"{"version": "pol.v0.2", "id": "a", "id": "b", "actions": ["x"]}"#,
    )
    .unwrap();
    expect(
        sign(
            &key,
            &["--scope", "read:x", "--ttl", "1h", "--policy", s(&dup)],
        ),
        "duplicate member `id`",
    );
}

#[test]
fn issuer_key_add_refuses_private_material_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = generate(dir.path(), "RS256", "k.pem");
    let public = read_json(&pub_of(&key));
    // A well-formed issuer key, so that only the file can stop the command.
    let api_key =
        bonafide_core::apikey::ApiKey::from_random(bonafide_core::apikey::KeyKind::Issuer, [5; 20]);
    let api_key = api_key.expose_secret();

    // The control: a public JWK goes on to the request, which fails (closed port).
    let out = run(
        CLOSED,
        Some(api_key),
        &["issuer-key", "add", s(&pub_of(&key))],
    );
    assert_exit(&out, 2);
    assert!(
        text(&out).contains("is `bonafide serve` running"),
        "{}",
        text(&out)
    );

    for m in PRIVATE_MEMBERS {
        let mut jwk = public.clone();
        jwk[m] = json!("AQAB");
        let file = dir.path().join(format!("private-{m}.jwk"));
        std::fs::write(&file, serde_json::to_string(&jwk).unwrap()).unwrap();
        let out = run(CLOSED, Some(api_key), &["issuer-key", "add", s(&file)]);
        assert_exit(&out, 2);
        let said = text(&out);
        assert!(
            said.contains(&format!("contains the private member `{m}`"))
                && said.contains("the private key must stay local"),
            "{said}"
        );
        assert!(
            !said.contains("serve` running"),
            "a request was tried: {said}"
        );
    }

    // The PEM private key itself, and a JWK Set holding a private key.
    let out = run(CLOSED, Some(api_key), &["issuer-key", "add", s(&key)]);
    assert_exit(&out, 2);
    assert!(
        text(&out).contains("is a private key; the private key must stay local"),
        "{}",
        text(&out)
    );
    let mut private = public.clone();
    private["d"] = json!("AQAB");
    let set = dir.path().join("set.json");
    std::fs::write(&set, json!({ "keys": [private] }).to_string()).unwrap();
    let out = run(CLOSED, Some(api_key), &["issuer-key", "add", s(&set)]);
    assert_exit(&out, 2);
    assert!(
        text(&out).contains("contains the private member `d`"),
        "{}",
        text(&out)
    );

    // Refused even with no API key set: the file is checked first.
    let mut private = public;
    private["d"] = json!("AQAB");
    let file = dir.path().join("no-key.jwk");
    std::fs::write(&file, private.to_string()).unwrap();
    let out = run(CLOSED, None, &["issuer-key", "add", s(&file)]);
    assert_exit(&out, 2);
    assert!(text(&out).contains("must stay local"), "{}", text(&out));

    // A kid that could change the request path is refused locally too.
    let out = run(
        CLOSED,
        Some(api_key),
        &["issuer-key", "revoke", "../agents/x"],
    );
    assert_exit(&out, 2);
    assert!(text(&out).contains("is not a key id"), "{}", text(&out));

    // A thumbprint may start with `-` (base64url): it is the kid, not an option (it
    // gets as far as the closed registry).
    let out = run(
        CLOSED,
        Some(api_key),
        &[
            "issuer-key",
            "revoke",
            "-cXYZ0123456789abcdefghijklmnopqrstuvwxyzAB",
        ],
    );
    assert_exit(&out, 2);
    assert!(
        !text(&out).contains("unexpected argument"),
        "{}",
        text(&out)
    );
}

/// `issuer-key add` signs the registry's proof of possession with the private half
/// (FILE for FILE.pub.jwk, or `--key`), so it needs that half, and the right one,
/// before any request.
#[test]
fn issuer_key_add_needs_the_private_half_to_prove_possession() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = generate(dir.path(), "EdDSA", "k.pem");
    let (other, _) = generate(dir.path(), "EdDSA", "other.pem");
    let api_key =
        bonafide_core::apikey::ApiKey::from_random(bonafide_core::apikey::KeyKind::Issuer, [5; 20]);
    let api_key = api_key.expose_secret();
    let offline = |args: &[&str], says: &str| {
        let out = run(CLOSED, Some(api_key), args);
        assert_exit(&out, 2);
        let said = text(&out);
        assert!(said.contains(says), "{args:?}: {said}");
        assert!(
            !said.contains("serve` running"),
            "a request was tried: {said}"
        );
    };
    // A public JWK not named FILE.pub.jwk, without --key.
    let loose = dir.path().join("loose.jwk");
    std::fs::copy(pub_of(&key), &loose).unwrap();
    offline(&["issuer-key", "add", s(&loose)], "--key");
    // The private key of another public key.
    offline(
        &["issuer-key", "add", s(&pub_of(&key)), "--key", s(&other)],
        "is not the other half of",
    );
    // No private key beside the public one.
    std::fs::remove_file(&key).unwrap();
    offline(
        &["issuer-key", "add", s(&pub_of(&key))],
        "cannot read the key file",
    );
    // A public key given as the private one.
    offline(
        &["issuer-key", "add", s(&loose), "--key", s(&loose)],
        "is a JWK",
    );
    // The matching half, by --key, gets as far as the (closed) registry.
    let out = run(
        CLOSED,
        Some(api_key),
        &["issuer-key", "add", s(&pub_of(&other)), "--key", s(&other)],
    );
    assert_exit(&out, 2);
    assert!(
        text(&out).contains("is `bonafide serve` running"),
        "{}",
        text(&out)
    );
}

/// The whole flow against the real registry: register the public keys, sign tokens
/// offline, `POST /v1/verify` accepts them; a revoked key's tokens are refused and
/// the other keys' are not.
#[test]
fn issuer_keys_registered_signed_verified_and_revoked() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let srv = common::serve(data.path(), &[]);
    let admin = srv.admin_printed.clone().unwrap();
    let out = run(
        &srv.url,
        Some(&admin),
        &["issuer", "create", "--name", "selfsign.example", "--json"],
    );
    assert_exit(&out, 0);
    let created = json_of(&out);
    let api_key = created["api_key"].as_str().unwrap().to_owned();
    let issuer = created["issuer_id"].as_str().unwrap().to_owned();
    let out = run(
        &srv.url,
        Some(&api_key),
        &[
            "agent", "register", "--name", "SelfBot", "--scope", "read:x", "--json",
        ],
    );
    assert_exit(&out, 0);
    let agent = json_of(&out)["agent_id"].as_str().unwrap().to_owned();
    let sign_with = |key: &Path| {
        let out = run(
            CLOSED,
            None,
            &[
                "token",
                "sign",
                "--key",
                s(key),
                "--issuer",
                &issuer,
                "--agent",
                &agent,
                "--scope",
                "read:x",
                "--ttl",
                "1h",
            ],
        );
        assert_exit(&out, 0);
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let verify = |token: &str, code: i32| {
        let out = run(&srv.url, None, &["verify", token, "--json"]);
        assert_exit(&out, code);
        json_of(&out)
    };

    // No keys yet.
    let out = run(&srv.url, Some(&api_key), &["issuer-key", "list", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(json_of(&out)["keys"], json!([]));

    // One key of each algorithm: `add` prints only the kid, the thumbprint.
    let mut keys = Vec::new();
    for alg in ["EdDSA", "ES256", "RS256"] {
        let (key, generated) = generate(dir.path(), alg, &format!("{alg}.pem"));
        let out = run(
            &srv.url,
            Some(&api_key),
            &["issuer-key", "add", s(&pub_of(&key))],
        );
        assert_exit(&out, 0);
        let kid = generated["kid"].as_str().unwrap().to_owned();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("{kid}\n"));
        keys.push((alg, key, kid));
    }
    let out = run(&srv.url, Some(&api_key), &["issuer-key", "list", "--json"]);
    assert_exit(&out, 0);
    let listed = json_of(&out);
    let listed = listed["keys"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    for (alg, _, kid) in &keys {
        let entry = listed.iter().find(|k| k["kid"] == kid.as_str()).unwrap();
        assert_eq!(entry["alg"], *alg);
        assert_eq!(entry["jwk"]["kid"], kid.as_str());
        assert!(entry["created_at"].is_string(), "{entry}");
        assert!(entry["revoked_at"].is_null(), "{entry}");
        for m in PRIVATE_MEMBERS {
            assert!(entry["jwk"].get(m).is_none(), "{entry}");
        }
    }
    let out = run(&srv.url, Some(&api_key), &["issuer-key", "list"]);
    assert_exit(&out, 0);
    for (_, _, kid) in &keys {
        assert!(text(&out).contains(kid.as_str()), "{}", text(&out));
    }

    // Tokens signed offline with each key verify at the registry.
    let tokens: Vec<String> = keys.iter().map(|(_, key, _)| sign_with(key)).collect();
    for token in &tokens {
        let v = verify(token, 0);
        assert_eq!(v["valid"], true, "{v}");
        assert_eq!(v["agent"]["id"], agent.as_str(), "{v}");
    }

    // The contract's command line, without `--issuer`: `issuer-key add` recorded the
    // issuer beside the key (FILE.issuer), so signing stays offline.
    let recorded = std::fs::read_to_string(format!("{}.issuer", s(&keys[0].1))).unwrap();
    assert_eq!(recorded.trim(), issuer);
    let out = run(
        CLOSED,
        None,
        &[
            "token",
            "sign",
            "--key",
            s(&keys[0].1),
            "--agent",
            &agent,
            "--scope",
            "read:x",
            "--ttl",
            "1h",
        ],
    );
    assert_exit(&out, 0);
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(payload(&token)["iss"], issuer.as_str());
    assert_eq!(verify(&token, 0)["valid"], true);
    // A key never added has no record: a clear error naming both ways out.
    let (stray, _) = generate(dir.path(), "EdDSA", "stray.pem");
    let out = run(
        CLOSED,
        None,
        &[
            "token",
            "sign",
            "--key",
            s(&stray),
            "--agent",
            &agent,
            "--scope",
            "read:x",
            "--ttl",
            "1h",
        ],
    );
    assert_exit(&out, 2);
    assert!(text(&out).contains("--issuer"), "{}", text(&out));
    assert!(text(&out).contains("issuer-key add"), "{}", text(&out));

    // A registered key signs only for the issuer's own agents.
    let out = run(
        CLOSED,
        None,
        &[
            "token",
            "sign",
            "--key",
            s(&keys[2].1),
            "--issuer",
            &issuer,
            "--agent",
            &agent_id(),
            "--scope",
            "read:x",
            "--ttl",
            "1h",
        ],
    );
    assert_exit(&out, 0);
    let v = verify(String::from_utf8(out.stdout).unwrap().trim(), 1);
    assert_eq!(v["error"]["code"], "AGENT_UNKNOWN", "{v}");

    // The same key twice: the registry's refusal, exit 2.
    let out = run(
        &srv.url,
        Some(&api_key),
        &["issuer-key", "add", s(&pub_of(&keys[0].1))],
    );
    assert_exit(&out, 2);
    assert!(text(&out).contains("already registered"), "{}", text(&out));

    // A key the registry does not know signs nothing it accepts.
    let (stranger, _) = generate(dir.path(), "EdDSA", "stranger.pem");
    let v = verify(&sign_with(&stranger), 1);
    assert_eq!(v["valid"], false, "{v}");

    // Revoke the EdDSA key: its token is refused from the next request; the others
    // still verify.
    let (_, _, revoked_kid) = &keys[0];
    let out = run(
        &srv.url,
        Some(&api_key),
        &["issuer-key", "revoke", revoked_kid],
    );
    assert_exit(&out, 0);
    assert!(
        text(&out).contains(&format!("revoked issuer key {revoked_kid} at 20")),
        "{}",
        text(&out)
    );
    let v = verify(&tokens[0], 1);
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["error"]["code"], "TOKEN_REVOKED", "{v}");
    assert!(
        v["reasons"]
            .as_array()
            .unwrap()
            .contains(&json!("KEY_REVOKED")),
        "{v}"
    );
    for token in &tokens[1..] {
        assert_eq!(verify(token, 0)["valid"], true);
    }
    let out = run(&srv.url, Some(&api_key), &["issuer-key", "list", "--json"]);
    let listed = json_of(&out);
    let entry = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == revoked_kid.as_str())
        .unwrap()
        .clone();
    assert!(entry["revoked_at"].is_string(), "{entry}");

    // Revoke with --json: the API's answer.
    let (_, _, kid) = &keys[1];
    let out = run(
        &srv.url,
        Some(&api_key),
        &["issuer-key", "revoke", kid, "--json"],
    );
    assert_exit(&out, 0);
    let v = json_of(&out);
    assert_eq!(v["kid"], kid.as_str());
    assert!(v["revoked_at"].is_string(), "{v}");

    // Issuer keys need an issuer's API key.
    let out = run(
        &srv.url,
        Some(&admin),
        &["issuer-key", "add", s(&pub_of(&stranger))],
    );
    assert_exit(&out, 2);
    assert!(text(&out).contains("needs an issuer key"), "{}", text(&out));
}

/// Without `--issuer`, a wrong key file is named before the missing issuer record
/// (issue 14), and a public key readable by others draws no "private key" warning.
#[test]
fn token_sign_names_a_wrong_key_file_before_the_missing_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = generate(dir.path(), "EdDSA", "k.pem");
    let spki = dir.path().join("public.pem");
    let public_pem = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&key).unwrap())
        .unwrap()
        .verifying_key()
        .public_pem()
        .unwrap();
    std::fs::write(&spki, public_pem).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&spki, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let agent = agent_id();
    for (file, needle) in [
        (spki.clone(), "is a public key"),
        (pub_of(&key), "is a JWK"),
        (dir.path().join("missing.pem"), "cannot read the key file"),
    ] {
        let out = run(
            CLOSED,
            None,
            &[
                "token",
                "sign",
                "--key",
                s(&file),
                "--agent",
                &agent,
                "--scope",
                "read:x",
                "--ttl",
                "1h",
            ],
        );
        assert_exit(&out, 2);
        let said = text(&out);
        assert!(said.contains(needle), "want `{needle}`: {said}");
        assert!(!said.contains("--issuer"), "the key file first: {said}");
        assert!(!said.contains("readable by others"), "{said}");
    }
    // A real private key without a record: now the missing issuer is the problem.
    let out = run(
        CLOSED,
        None,
        &[
            "token",
            "sign",
            "--key",
            s(&key),
            "--agent",
            &agent,
            "--scope",
            "read:x",
            "--ttl",
            "1h",
        ],
    );
    assert_exit(&out, 2);
    assert!(text(&out).contains("--issuer"), "{}", text(&out));
}

/// A token signed offline can be revoked by the `jti` that `token sign` printed (with
/// its agent: the registry never saw it) and by the token itself; another issuer's
/// agent, a token id without an agent, and `--for-agent` with a whole token are refused.
#[test]
fn self_signed_tokens_are_revoked_by_printed_jti_and_by_the_token() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let srv = common::serve(data.path(), &[]);
    let admin = srv.admin_printed.clone().unwrap();
    let issuer_of = |name: &str| {
        let out = run(
            &srv.url,
            Some(&admin),
            &["issuer", "create", "--name", name, "--json"],
        );
        assert_exit(&out, 0);
        let v = json_of(&out);
        (
            v["api_key"].as_str().unwrap().to_owned(),
            v["issuer_id"].as_str().unwrap().to_owned(),
        )
    };
    let (api_key, issuer) = issuer_of("revoker.example");
    let (other_key, _) = issuer_of("other.example");
    let agent_of = |key: &str| {
        let out = run(
            &srv.url,
            Some(key),
            &[
                "agent", "register", "--name", "Bot", "--scope", "read:x", "--json",
            ],
        );
        assert_exit(&out, 0);
        json_of(&out)["agent_id"].as_str().unwrap().to_owned()
    };
    let agent = agent_of(&api_key);
    let other_agent = agent_of(&other_key);
    let (key, _) = generate(dir.path(), "EdDSA", "k.pem");
    let out = run(
        &srv.url,
        Some(&api_key),
        &["issuer-key", "add", s(&pub_of(&key))],
    );
    assert_exit(&out, 0);
    let sign = || {
        let out = run(
            CLOSED,
            None,
            &[
                "token",
                "sign",
                "--key",
                s(&key),
                "--issuer",
                &issuer,
                "--agent",
                &agent,
                "--scope",
                "read:x",
                "--ttl",
                "1h",
            ],
        );
        assert_exit(&out, 0);
        let token = String::from_utf8(out.stdout.clone())
            .unwrap()
            .trim()
            .to_owned();
        // The id is printed on stderr, with the command that revokes it.
        let err = String::from_utf8(out.stderr).unwrap();
        let jti = err.split_whitespace().nth(1).unwrap_or_default().to_owned();
        assert!(jti.starts_with("tok_"), "{err}");
        assert!(
            err.contains(&format!(
                "bonafide revoke --token {jti} --for-agent {agent}"
            )),
            "{err}"
        );
        (token, jti)
    };
    let verify = |token: &str| run(&srv.url, None, &["verify", token, "--json"]);

    // By the printed jti and its agent.
    let (token, jti) = sign();
    assert_exit(&verify(&token), 0);
    // Without the agent: a clear refusal, nothing revoked.
    let out = run(&srv.url, Some(&api_key), &["revoke", "--token", &jti]);
    assert_exit(&out, 2);
    assert!(text(&out).contains("--for-agent"), "{}", text(&out));
    assert_exit(&verify(&token), 0);
    // Another issuer's agent: not found, nothing revoked.
    let out = run(
        &srv.url,
        Some(&api_key),
        &["revoke", "--token", &jti, "--for-agent", &other_agent],
    );
    assert_exit(&out, 2);
    assert!(text(&out).contains("404"), "{}", text(&out));
    assert_exit(&verify(&token), 0);
    let out = run(
        &srv.url,
        Some(&api_key),
        &["revoke", "--token", &jti, "--for-agent", &agent],
    );
    assert_exit(&out, 0);
    // Said in the user's own terms: the jti as given, and what cannot be confirmed.
    let said = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        said.contains(&format!("revoked jti {jti} of agent {agent}")),
        "{said}"
    );
    assert!(said.contains("cannot confirm"), "{said}");
    let v = json_of(&verify(&token));
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["error"]["code"], "TOKEN_REVOKED", "{v}");

    // By the token itself (also from stdin-free argument form).
    let (token, _) = sign();
    assert_exit(&verify(&token), 0);
    let out = run(
        &srv.url,
        Some(&api_key),
        &["revoke", "--token", &token, "--json"],
    );
    assert_exit(&out, 0);
    assert_eq!(json_of(&out)["revoked"], true);
    assert_eq!(json_of(&verify(&token))["error"]["code"], "TOKEN_REVOKED");
    // A whole token with --for-agent: refused locally.
    let (token, _) = sign();
    let out = run(
        &srv.url,
        Some(&api_key),
        &["revoke", "--token", &token, "--for-agent", &agent],
    );
    assert_exit(&out, 2);
    assert!(text(&out).contains("names its agent"), "{}", text(&out));
    assert_exit(&verify(&token), 0);
}
