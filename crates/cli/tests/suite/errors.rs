//! Errors a stranger understands: a URL that is not a registry, a URL without a
//! scheme, `--json` errors as one object with the registry's fields, `--ttl` bounds.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Output;

use serde_json::Value;

use crate::common::{json_of, run, serve, text};

/// A plain web server on 127.0.0.1 that answers every request `404 Not Found`,
/// `text/html`: what `--url` reaches when it points at the wrong port or host.
fn not_a_registry() -> String {
    serve_fixed(
        "404 Not Found",
        "text/html; charset=utf-8",
        "<html><body><h1>Not Found</h1></body></html>",
    )
}

/// A loopback server answering every request with `status`, `content_type` and
/// `body`, whatever was asked.
fn serve_fixed(status: &'static str, content_type: &'static str, body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                let _ = conn.read(&mut buf);
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes());
            });
        }
    });
    format!("http://{addr}")
}

/// A well-formed admin key no registry knows.
fn stray_admin_key() -> String {
    let out = run("http://127.0.0.1:1", None, &["keys", "new-admin-key"]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The one JSON object on stderr of a `--json` run that failed; stdout is empty.
fn json_error(out: &Output) -> Value {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one line on stderr: {stderr}"
    );
    assert!(out.stdout.is_empty(), "stdout: {}", text(out));
    let v: Value = serde_json::from_str(stderr.trim())
        .unwrap_or_else(|e| panic!("stderr is not JSON ({e}): {stderr}"));
    let error = v["error"].as_object().unwrap_or_else(|| panic!("{v}"));
    for member in ["code", "message", "http_status", "request_id"] {
        assert!(error.contains_key(member), "no `{member}`: {v}");
    }
    assert!(v["error"]["code"].is_string() && v["error"]["message"].is_string());
    v["error"].clone()
}

const NOT_A_REGISTRY: &str = "that is not a Bonafide registry: GET /.well-known/bonafide-configuration answered 404 text/html";

#[test]
fn a_url_that_is_not_a_registry_is_named_so() {
    let url = not_a_registry();
    let admin = stray_admin_key();
    for args in [
        &["issuer", "create", "--name", "x.example"][..],
        &["verify", "some.token.here"][..],
        &["audit", "verify", "--state", "/nonexistent/state.json"][..],
    ] {
        let out = run(&url, Some(&admin), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let t = text(&out);
        assert!(t.contains(NOT_A_REGISTRY), "{args:?}: {t}");
        assert!(t.contains(&url), "the hint names the URL: {t}");
    }
    let out = run(
        &url,
        Some(&admin),
        &["issuer", "create", "--name", "x", "--json"],
    );
    assert_eq!(out.status.code(), Some(2));
    let e = json_error(&out);
    assert_eq!(e["code"], "NOT_A_REGISTRY", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains(NOT_A_REGISTRY),
        "{e}"
    );
    assert!(
        e["http_status"].is_null() && e["request_id"].is_null(),
        "{e}"
    );
}

#[test]
fn a_url_without_a_scheme_says_what_to_write() {
    for args in [
        &["verify", "some.token.here"][..],
        &["issuer", "create", "--name", "x.example"][..],
    ] {
        let out = run("localhost:8080", Some(&stray_admin_key()), args);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let t = text(&out);
        assert!(
            t.contains(
                "the registry URL must start with http:// or https://, for example http://localhost:8080"
            ),
            "{t}"
        );
        assert!(!t.contains("builder error"), "{t}");
    }
    let out = run("localhost:8080", None, &["verify", "x", "--json"]);
    assert_eq!(json_error(&out)["code"], "INVALID_URL");
}

#[test]
fn json_errors_are_one_object_with_the_registrys_fields() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);

    // The registry refuses a key it does not know: its code, status and request id.
    let out = run(
        &s.url,
        Some(&stray_admin_key()),
        &["issuer", "create", "--name", "x.example", "--json"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let e = json_error(&out);
    assert_eq!(e["code"], "UNAUTHORIZED", "{e}");
    assert_eq!(e["http_status"], 401, "{e}");
    let request_id = e["request_id"].as_str().unwrap_or_else(|| panic!("{e}"));
    assert!(!request_id.is_empty() && request_id != "-", "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains(request_id) && message.contains("401"),
        "{e}"
    );
    assert_eq!(e["hint"], "check BONAFIDE_API_KEY", "{e}");
    // The same refusal in text: the message, then the hint.
    let out = run(
        &s.url,
        Some(&stray_admin_key()),
        &["issuer", "create", "--name", "x.example"],
    );
    let t = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        t.starts_with("error: ") && t.contains("\nhint: check BONAFIDE_API_KEY"),
        "{t}"
    );

    // CLI errors: their own codes, no status or request id.
    for (url, key, args, code) in [
        (
            s.url.as_str(),
            None,
            &["agent", "list", "--json"][..],
            "USAGE",
        ),
        (
            "http://127.0.0.1:1",
            None,
            &["verify", "x.y.z", "--json"][..],
            "UNREACHABLE",
        ),
        (
            s.url.as_str(),
            None,
            &[
                "verify",
                "x.y.z",
                "--offline",
                "--jwks",
                "/nonexistent/jwks.json",
                "--issuer",
                "x",
                "--json",
            ][..],
            "FILE",
        ),
        // clap's own refusal, with --json, is one object too.
        (s.url.as_str(), None, &["verify", "--json"][..], "USAGE"),
        (
            s.url.as_str(),
            None,
            &["verify", "x", "--dpop-key", "k.pem", "--json"][..],
            "USAGE",
        ),
    ] {
        let out = run(url, key, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let e = json_error(&out);
        assert_eq!(e["code"], code, "{args:?}: {e}");
        assert!(
            e["http_status"].is_null() && e["request_id"].is_null(),
            "{e}"
        );
    }
    // Help is still help.
    let out = run(&s.url, None, &["verify", "--help", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).contains("--dpop-key"), "{}", text(&out));
}

#[test]
fn a_lifetime_outside_60s_to_365d_is_refused_with_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    let admin = s.admin_printed.clone().unwrap();
    let out = run(
        &s.url,
        Some(&admin),
        &["issuer", "create", "--name", "ttl.example", "--json"],
    );
    let key = json_of(&out)["api_key"].as_str().unwrap().to_owned();
    for (ttl, says) in [
        (
            "59s",
            "the lifetime must be at least 60s (allowed: 60s to 365d)",
        ),
        (
            "366d",
            "the lifetime must be at most 365d (allowed: 60s to 365d)",
        ),
    ] {
        let out = run(
            &s.url,
            Some(&key),
            &[
                "agent", "register", "--name", "T", "--scope", "read:x", "--ttl", ttl,
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(says), "{ttl}: {}", text(&out));
    }
    let out = run(
        &s.url,
        Some(&key),
        &[
            "agent", "register", "--name", "T", "--scope", "read:x", "--ttl", "60s", "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    // Nothing was registered by the refused attempts.
    let out = run(&s.url, Some(&key), &["agent", "list", "--json"]);
    assert_eq!(json_of(&out)["agents"].as_array().unwrap().len(), 1);
}

/// A server that answers every request 200 with a JSON object that is no answer of
/// the registry's (`{"unexpected": true}`).
fn off_contract() -> String {
    serve_fixed("200 OK", "application/json", r#"{"unexpected": true}"#)
}

/// Text output is printed from the API types: an answer that does not keep the
/// contract is an error naming what was expected, never a row of dashes.
#[test]
fn an_answer_off_the_contract_is_an_error_not_dashes() {
    let url = off_contract();
    // Any well-formed issuer key will do: the server checks nothing.
    let key =
        bonafide_core::apikey::ApiKey::from_random(bonafide_core::apikey::KeyKind::Issuer, [7; 20]);
    for (args, what) in [
        (
            &["agent", "suspend", "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa"][..],
            "an agent",
        ),
        (
            &["revoke", "--agent", "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa"][..],
            "an agent revocation",
        ),
    ] {
        let out = run(&url, Some(key.expose_secret()), args);
        assert_ne!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
        let t = text(&out);
        assert!(
            t.contains(&format!("the registry's answer is not {what}")),
            "{args:?}: {t}"
        );
    }
}
