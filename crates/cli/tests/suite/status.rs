//! `bonafide verify --offline` and status lists, against a list fixture (a plain HTTP
//! server on 127.0.0.1:0 in a thread, serving a list in the registry's published
//! format signed with core `status_list::sign`): revoked and suspended tokens
//! refused with the registry's codes after one fetch, the list's age printed, and
//! every new flag's failure (`--status-list-prefix`, `--no-status`).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bonafide_core::keys::{Algorithm, SigningKey};
use bonafide_core::status_list::{self, Bits, Status, StatusList, StatusListClaims};
use serde_json::{Value, json};

use crate::common::{json_of, run, text};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

struct ListServer {
    base: String,
    list: Arc<Mutex<StatusList>>,
    fetches: Arc<AtomicUsize>,
}

impl ListServer {
    /// Serves `/v1/status-lists/1` signed by `key` and, as the registry does, the
    /// list keys at `/.well-known/status-list-jwks.json` (`published`: the key's own,
    /// or another for a forgery), each request on its own connection.
    fn start(key: SigningKey, published: &bonafide_core::keys::Jwk) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let list = Arc::new(Mutex::new(StatusList::new(Bits::TWO, 4096).unwrap()));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (l, f, b) = (list.clone(), fetches.clone(), base.clone());
        let list_jwks = json!({ "keys": [published] }).to_string();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut buf = [0u8; 4096];
                let n = conn.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]);
                if head.starts_with("GET /.well-known/status-list-jwks.json ") {
                    let _ = write!(
                        conn,
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{list_jwks}",
                        list_jwks.len()
                    );
                    continue;
                }
                f.fetch_add(1, Ordering::SeqCst);
                let claims = StatusListClaims {
                    iss: Some(b.clone()),
                    sub: format!("{b}/v1/status-lists/1"),
                    iat: now(),
                    exp: Some(now() + 86_400),
                    ttl: Some(60),
                    status_list: l.lock().unwrap().encode(),
                    extra: serde_json::Map::new(),
                };
                let jws = status_list::sign(&key, &claims).unwrap();
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/statuslist+jwt\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{jws}",
                    jws.len()
                );
            }
        });
        ListServer {
            base,
            list,
            fetches,
        }
    }

    fn prefix(&self) -> String {
        format!("{}/v1/status-lists/", self.base)
    }
}

/// A token key in a JWKS file; tokens naming entries of a list.
struct Setup {
    _dir: tempfile::TempDir,
    jwks: String,
    token_key: SigningKey,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let token_key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let jwks = dir.path().join("jwks.json");
        let keys = json!({"keys": [token_key.verifying_key().jwk()]});
        std::fs::write(&jwks, keys.to_string()).unwrap();
        Setup {
            jwks: jwks.to_str().unwrap().to_owned(),
            _dir: dir,
            token_key,
        }
    }

    fn token(&self, uri: &str, idx: u64) -> String {
        let t = now();
        let claims = json!({
            "iss": "iss_aaaaaaaaaaaaaaaaaaaaaaaaaa", "sub": "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa",
            "iat": t, "exp": t + 3600, "jti": "tok_aaaaaaaaaaaaaaaaaaaaaaaaaa",
            "agent": {"name": "Signed", "issuer": "Apex", "scopes": ["read:x"]},
            "status": {"status_list": {"idx": idx, "uri": uri}},
        });
        bonafide_core::jws::sign_compact(
            &self.token_key,
            "agent+jwt",
            claims.to_string().as_bytes(),
        )
        .unwrap()
    }

    fn verify(&self, token: &str, extra: &[&str]) -> std::process::Output {
        let mut args = vec![
            "verify",
            token,
            "--offline",
            "--jwks",
            &self.jwks,
            "--issuer",
            "iss_aaaaaaaaaaaaaaaaaaaaaaaaaa",
        ];
        args.extend_from_slice(extra);
        // Nothing listens on the registry URL: offline needs none.
        run("http://127.0.0.1:1", None, &args)
    }
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr_json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stderr).unwrap_or(Value::Null)
}

/// One fetch per run: a valid entry prints the list's age, a revoked or suspended
/// one refuses with the registry's code (exit 1), `--json` says so too.
#[test]
fn offline_verify_reads_the_token_s_status_list() {
    let list_key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let s = Setup::new();
    let published = list_key.verifying_key().jwk().clone();
    let server = ListServer::start(list_key, &published);
    let uri = format!("{}1", server.prefix());
    let prefix = server.prefix();
    let with_prefix = ["--status-list-prefix", prefix.as_str()];

    let out = s.verify(&s.token(&uri, 7), &with_prefix);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = stdout(&out);
    assert!(t.starts_with("VALID, ALLOWED\n"), "{t}");
    assert!(
        t.contains("\nrevocation checked: yes (list age 0s)\n"),
        "{t}"
    );
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);

    let mut json_args = with_prefix.to_vec();
    json_args.push("--json");
    let out = s.verify(&s.token(&uri, 7), &json_args);
    let v = json_of(&out);
    assert_eq!(v["revocation_checked"], true, "{v}");
    assert_eq!(v["status_list"]["idx"], 7, "{v}");
    assert_eq!(v["status_list"]["age_s"], 0, "{v}");
    assert_eq!(v["status_list"]["uri"], uri.as_str(), "{v}");

    for (status, code) in [
        (Status::Invalid, "TOKEN_REVOKED"),
        (Status::Suspended, "AGENT_SUSPENDED"),
    ] {
        server.list.lock().unwrap().set(7, status).unwrap();
        let out = s.verify(&s.token(&uri, 7), &with_prefix);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let t = stdout(&out);
        assert!(t.starts_with(&format!("INVALID  {code}\n")), "{t}");
        assert!(
            t.contains("revocation checked against the status list"),
            "{t}"
        );
        let out = s.verify(&s.token(&uri, 7), &json_args);
        let v = json_of(&out);
        assert_eq!(v["error"]["code"], code, "{v}");
        assert_eq!(v["revocation_checked"], true, "{v}");
    }

    // --no-status: nothing fetched, said so.
    let before = server.fetches.load(Ordering::SeqCst);
    let out = s.verify(&s.token(&uri, 7), &["--no-status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("revocation NOT checked (--no-status)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(server.fetches.load(Ordering::SeqCst), before);
}

/// Each new flag's failures, and the status list's: no registry to trust the list
/// from, a prefix that is not one, a list elsewhere (never fetched), a list that
/// cannot be fetched (fail closed), one signed by another key; the flags without
/// --offline or together.
#[test]
fn status_list_flags_and_failures() {
    let list_key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let s = Setup::new();
    let published = list_key.verifying_key().jwk().clone();
    let server = ListServer::start(list_key, &published);
    let uri = format!("{}1", server.prefix());
    let token = s.token(&uri, 3);

    // A JWKS file and an issuer id: no registry to take the lists from.
    let out = s.verify(&token, &["--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let e = stderr_json(&out);
    assert_eq!(e["error"]["code"], "USAGE", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--status-list-prefix"),
        "{e}"
    );
    for bad in [
        "ftp://registry.example/v1/status-lists/",
        "http://registry.example/v1/status-lists/",
        "https://registry.example/v1/status-lists",
        "https://registry.example/lists/",
        "not a url",
    ] {
        let out = s.verify(&token, &["--status-list-prefix", bad, "--json"]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out));
        assert_eq!(stderr_json(&out)["error"]["code"], "USAGE", "{bad}");
    }
    // A list outside the trusted prefix: refused, nothing fetched.
    let out = s.verify(
        &token,
        &[
            "--status-list-prefix",
            "http://127.0.0.1:1/v1/status-lists/",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(json_of(&out)["error"]["code"], "STATUS_LIST_UNTRUSTED");
    assert_eq!(server.fetches.load(Ordering::SeqCst), 0);
    // A trusted prefix where nothing answers: fail closed.
    let closed = s.token("http://127.0.0.1:1/v1/status-lists/1", 3);
    let out = s.verify(
        &closed,
        &[
            "--status-list-prefix",
            "http://127.0.0.1:1/v1/status-lists/",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(
        stderr_json(&out)["error"]["code"],
        "STATUS_LIST_UNAVAILABLE"
    );
    // A list signed by a key the registry's list keys do not hold.
    let forger = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let forged = ListServer::start(forger, &published);
    let forged_uri = format!("{}1", forged.prefix());
    let forged_prefix = forged.prefix();
    let out = s.verify(
        &s.token(&forged_uri, 3),
        &["--status-list-prefix", forged_prefix.as_str(), "--json"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let e = stderr_json(&out);
    assert_eq!(e["error"]["code"], "STATUS_LIST_UNAVAILABLE", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not verify"),
        "{e}"
    );

    // The flags need --offline, and exclude each other.
    let prefix = server.prefix();
    for args in [
        vec!["verify", token.as_str(), "--no-status"],
        vec![
            "verify",
            token.as_str(),
            "--status-list-prefix",
            prefix.as_str(),
        ],
        vec![
            "verify",
            token.as_str(),
            "--offline",
            "--jwks",
            s.jwks.as_str(),
            "--no-status",
            "--status-list-prefix",
            prefix.as_str(),
        ],
    ] {
        let out = run("http://127.0.0.1:1", None, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
    }
}

/// Against the real registry: offline verify with its JWKS URL reads the token's
/// list; once the token is revoked online, the next offline verify (a new fetch)
/// refuses it with the registry's code.
#[test]
fn offline_verify_sees_a_revocation_made_online() {
    let dir = tempfile::tempdir().unwrap();
    let s = crate::common::serve(dir.path(), &[]);
    let admin = s.admin_printed.clone().unwrap();
    let out = run(
        &s.url,
        Some(&admin),
        &["issuer", "create", "--name", "lists.example", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let issuer = json_of(&out)["api_key"].as_str().unwrap().to_owned();
    let out = run(
        &s.url,
        Some(&issuer),
        &[
            "agent", "register", "--name", "Bot", "--scope", "read:x", "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let token = json_of(&out)["token"].as_str().unwrap().to_owned();
    let claims: Value = serde_json::from_slice(
        &bonafide_core::b64::decode(token.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap();
    let jti = claims["jti"].as_str().unwrap().to_owned();
    let jwks = format!("{}/.well-known/jwks.json", s.url);
    let offline = || {
        run(
            "http://127.0.0.1:1",
            None,
            &["verify", &token, "--offline", "--jwks", &jwks],
        )
    };
    let out = offline();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("revocation checked: yes (list age "),
        "{}",
        stdout(&out)
    );

    let out = run(&s.url, Some(&issuer), &["revoke", "--token", &jti]);
    assert!(out.status.success(), "{}", text(&out));
    // The registry republishes the list within a second; the deadline only keeps a
    // broken build from hanging.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let out = loop {
        let out = offline();
        if out.status.code() != Some(0) || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = stdout(&out);
    assert!(t.starts_with("INVALID  TOKEN_REVOKED\n"), "{t}");
    assert!(
        t.contains("revocation checked against the status list"),
        "{t}"
    );
}
