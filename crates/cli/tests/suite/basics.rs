//! The `bonafide` binary end to end: `serve` as a real process on 127.0.0.1:0, and the
//! client commands against it.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common;

use common::{BIN, json_of, run, serve, serve_with_args, text};

#[test]
fn serve_bootstraps_the_admin_key_once_and_stores_it_privately() {
    let dir = tempfile::tempdir().unwrap();
    let first = serve(dir.path(), &[]);
    let printed = first
        .admin_printed
        .clone()
        .expect("first start prints the admin key");
    let file = dir.path().join("admin.key");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), printed);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let db = dir.path().join("bonafide.db");
        assert_eq!(
            std::fs::metadata(&db).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let out = run(
        &first.url,
        Some(&printed),
        &["issuer", "create", "--name", "boot.example", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    drop(first);
    let second = serve(dir.path(), &[]);
    assert!(second.admin_printed.is_none(), "the key is shown only once");
    let out = run(
        &second.url,
        Some(&printed),
        &["issuer", "create", "--name", "boot2.example", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn admin_key_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let key = run("http://127.0.0.1:1", None, &["keys", "new-admin-key"]);
    assert!(key.status.success());
    let key = String::from_utf8(key.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("bfk_adm_"));
    let s = serve(dir.path(), &[("BONAFIDE_ADMIN_KEY", &key)]);
    assert!(s.admin_printed.is_none());
    assert!(!dir.path().join("admin.key").exists());
    let out = run(
        &s.url,
        Some(&key),
        &["issuer", "create", "--name", "env.example"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("shown only once"));

    // A malformed BONAFIDE_ADMIN_KEY stops the server with a hint.
    let bad = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("BONAFIDE_ADMIN_KEY", "bfk_adm_nope")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad).contains("new-admin-key"), "{}", text(&bad));
}

#[test]
fn issuer_agent_verify_revoke_flow() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    let admin = s.admin_printed.clone().unwrap();

    let out = run(
        &s.url,
        Some(&admin),
        &["issuer", "create", "--name", "apexwealth.com", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let issuer_key = json_of(&out)["api_key"].as_str().unwrap().to_owned();

    let out = run(
        &s.url,
        Some(&issuer_key),
        &[
            "agent",
            "register",
            "--name",
            "PortfolioBot",
            "--scope",
            "read:portfolio",
            "--scope",
            "read:transactions",
            "--ttl",
            "24h",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let reg = json_of(&out);
    let token = reg["token"].as_str().unwrap().to_owned();
    let agent_id = reg["agent_id"].as_str().unwrap().to_owned();

    // Human output.
    let out = run(&s.url, Some(&issuer_key), &["agent", "list"]);
    assert!(out.status.success());
    let listing = text(&out);
    assert!(
        listing.contains("PortfolioBot")
            && listing.contains(&agent_id)
            && listing.contains("active"),
        "{listing}"
    );

    // Online verify: exit 0 only when valid and allowed.
    let out = run(
        &s.url,
        None,
        &["verify", &token, "--scope", "read:portfolio"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("VALID, ALLOWED"));
    let out = run(
        &s.url,
        None,
        &["verify", &token, "--scope", "write:email", "--json"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json_of(&out)["reasons"][0], "SCOPE_NOT_GRANTED");

    // Offline verify with the JWKS URL, and with a JWKS file.
    let jwks_url = format!("{}/.well-known/jwks.json", s.url);
    let out = run(
        "http://127.0.0.1:1",
        None,
        &["verify", &token, "--offline", "--jwks", &jwks_url, "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = json_of(&out);
    assert_eq!(v["valid"], true);
    // The token names its status list; the registry the JWKS URL names serves it.
    assert_eq!(v["revocation_checked"], true, "{v}");
    assert!(v["status_list"]["age_s"].is_u64(), "{v}");
    let jwks_file = dir.path().join("jwks.json");
    let jwks = reqwest_get(&jwks_url);
    std::fs::write(&jwks_file, jwks).unwrap();
    let jf = jwks_file.to_str().unwrap();
    let out = run(
        "http://127.0.0.1:1",
        None,
        &[
            "verify",
            &token,
            "--offline",
            "--jwks",
            jf,
            "--issuer",
            &s.url,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // A JWKS file: the lists are trusted from the registry --issuer names.
    assert!(
        text(&out).contains("revocation checked: yes"),
        "{}",
        text(&out)
    );
    let out = run(
        "http://127.0.0.1:1",
        None,
        &[
            "verify",
            &token,
            "--offline",
            "--jwks",
            jf,
            "--issuer",
            "https://other.example",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("ISSUER_UNKNOWN"), "{}", text(&out));
    let out = run(
        "http://127.0.0.1:1",
        None,
        &["verify", &token, "--offline", "--jwks", jf],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("--issuer"), "{}", text(&out));

    // Revoke the agent: online verify fails at once.
    let out = run(
        &s.url,
        Some(&issuer_key),
        &["revoke", "--agent", &agent_id, "--reason", "key leaked"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("revoked agent"));
    let out = run(&s.url, None, &["verify", &token]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("TOKEN_REVOKED"), "{}", text(&out));

    // Token revocation by jti.
    let out = run(
        &s.url,
        Some(&issuer_key),
        &[
            "agent", "register", "--name", "Other", "--scope", "read:x", "--json",
        ],
    );
    let other = json_of(&out);
    assert_eq!(other["allow_bearer_tokens"], false, "{other}");
    let token2 = other["token"].as_str().unwrap();
    let payload = token2.split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&bonafide_core::b64::decode(payload).unwrap()).unwrap();
    let jti = claims["jti"].as_str().unwrap();
    let out = run(
        &s.url,
        Some(&issuer_key),
        &["revoke", "--token", jti, "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json_of(&out)["jti"], jti);
    let out = run(&s.url, None, &["verify", token2]);
    assert_eq!(out.status.code(), Some(1));

    // The issuer's opt-out of bound-only tokens, said at registration.
    let out = run(
        &s.url,
        Some(&issuer_key),
        &[
            "agent",
            "register",
            "--name",
            "Bearer",
            "--scope",
            "read:x",
            "--allow-bearer-tokens",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("tokens without cnf stay valid"),
        "{}",
        text(&out)
    );

    // Secrets never reach the log (at debug level too): no token, no issuer key; the
    // admin key only in the one bootstrap line that shows it.
    let answer = reqwest_get(&format!("{}/v1/verify/{token}", s.url));
    assert!(answer.contains("TOKEN_REVOKED"), "{answer}");
    std::thread::sleep(Duration::from_millis(200));
    let log = s.log_text();
    assert!(
        log.contains("\"route\":\"/v1/verify/{*token}\""),
        "access log missing: {log}"
    );
    for secret in [token.as_str(), token2, issuer_key.as_str()] {
        assert!(!log.contains(secret), "secret in log");
        assert!(
            !log.contains(secret.split('.').next_back().unwrap()),
            "signature in log"
        );
    }
    assert_eq!(
        log.matches(admin.as_str()).count(),
        1,
        "admin key shown once only"
    );
}

fn reqwest_get(url: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() })
}

#[test]
fn client_command_errors_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    let admin = s.admin_printed.clone().unwrap();

    let out = run(&s.url, None, &["issuer", "create", "--name", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("BONAFIDE_API_KEY"), "{}", text(&out));

    let out = run(&s.url, Some("bfk_iss_garbage"), &["agent", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("not a Bonafide API key"),
        "{}",
        text(&out)
    );

    let out = run(&s.url, Some(&admin), &["agent", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("needs an issuer key"), "{}", text(&out));

    let out = run(
        "http://127.0.0.1:1",
        Some(&admin),
        &["issuer", "create", "--name", "x"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("bonafide serve"), "{}", text(&out));

    let out = run(
        &s.url,
        Some(&admin),
        &["issuer", "create", "--name", "dup.example"],
    );
    assert!(out.status.success());
    let out = run(
        &s.url,
        Some(&admin),
        &["issuer", "create", "--name", "dup.example"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("already exists") && text(&out).contains("409"),
        "{}",
        text(&out)
    );

    let out = run(
        &s.url,
        Some(&admin),
        &["issuer", "create", "--name", "k.example", "--json"],
    );
    let key = json_of(&out)["api_key"].as_str().unwrap().to_owned();
    let out = run(
        &s.url,
        Some(&key),
        &[
            "agent", "register", "--name", "n", "--scope", "read:x", "--ttl", "5w",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("duration"), "{}", text(&out));
    let out = run(
        &s.url,
        Some(&key),
        &["agent", "register", "--name", "n", "--scope", "Bad Scope"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("verb:resource"), "{}", text(&out));
    let out = run(&s.url, Some(&key), &["agent", "register", "--name", "n"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(
        &s.url,
        Some(&key),
        &["revoke", "--agent", "agt_x", "--token", "tok_y"],
    );
    assert_eq!(out.status.code(), Some(2));
    let out = run(&s.url, Some(&key), &["revoke"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&s.url, Some(&key), &["revoke", "--agent", "../../etc"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("not a valid agent id"),
        "{}",
        text(&out)
    );
    let out = run(
        &s.url,
        Some(&key),
        &["revoke", "--agent", "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("not found"), "{}", text(&out));

    let out = run(&s.url, None, &["verify", "garbage"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("TOKEN_INVALID"));
    let out = run(&s.url, None, &["verify", "garbage", "--offline"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(
        &s.url,
        None,
        &[
            "verify",
            "x",
            "--offline",
            "--jwks",
            "/nonexistent/jwks.json",
            "--issuer",
            "x",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("cannot read"), "{}", text(&out));
}

#[test]
fn keys_rotate_on_a_data_dir_keeps_old_tokens_valid() {
    let dir = tempfile::tempdir().unwrap();
    let (token, old_jwks, url) = {
        let s = serve(dir.path(), &[]);
        let admin = s.admin_printed.clone().unwrap();
        let out = run(
            &s.url,
            Some(&admin),
            &["issuer", "create", "--name", "rot.example", "--json"],
        );
        let key = json_of(&out)["api_key"].as_str().unwrap().to_owned();
        let out = run(
            &s.url,
            Some(&key),
            &[
                "agent", "register", "--name", "R", "--scope", "read:x", "--json",
            ],
        );
        let token = json_of(&out)["token"].as_str().unwrap().to_owned();
        (
            token,
            reqwest_get(&format!("{}/.well-known/jwks.json", s.url)),
            s.url.clone(),
        )
    };
    let _ = url;
    let out = run(
        "http://127.0.0.1:1",
        None,
        &[
            "keys",
            "rotate",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let new_kid = json_of(&out)["kid"].as_str().unwrap().to_owned();
    let s = serve(dir.path(), &[]);
    let jwks: Value =
        serde_json::from_str(&reqwest_get(&format!("{}/.well-known/jwks.json", s.url))).unwrap();
    let old: Value = serde_json::from_str(&old_jwks).unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(kids.contains(&new_kid.as_str()));
    assert!(kids.contains(&old["keys"][0]["kid"].as_str().unwrap()));
    // The old token's `iss` was the old address; verify offline against its issuer.
    let claims: Value = serde_json::from_slice(
        &bonafide_core::b64::decode(token.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap();
    let jwks_url = format!("{}/.well-known/jwks.json", s.url);
    let out = run(
        &s.url,
        None,
        &[
            "verify",
            &token,
            "--offline",
            "--jwks",
            &jwks_url,
            "--issuer",
            claims["iss"].as_str().unwrap(),
            // Its status list was served at the old address, which is gone.
            "--no-status",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run(
        "http://127.0.0.1:1",
        None,
        &["keys", "rotate", "--data-dir", "/proc/nonexistent/x"],
    );
    assert_eq!(out.status.code(), Some(2));
    let empty = tempfile::tempdir().unwrap();
    let out = run(
        "http://127.0.0.1:1",
        None,
        &[
            "keys",
            "rotate",
            "--data-dir",
            empty.path().to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("--data-dir"), "{}", text(&out));
    assert!(
        !empty.path().join("bonafide.db").exists(),
        "no registry created by mistake"
    );
}

#[cfg(unix)]
#[test]
fn serve_shuts_down_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = serve(dir.path(), &[]);
    let pid = s.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            assert!(st.success(), "exit status {st}");
            break;
        }
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_connection_bound_flags_parse_and_bad_values_are_refused() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    for (flag, value, says) in [
        ("--header-read-timeout", "5w", "use s, m, h or d"),
        ("--header-read-timeout", "soon", "invalid duration"),
        ("--idle-timeout", "0", "at least 1s"),
        ("--request-timeout", "25h", "at most 24h"),
        ("--max-connections", "0", "0 is not in 1.."),
        ("--max-connections", "many", "invalid digit"),
        ("--receipt-retention", "30m", "at least 1h"),
        ("--receipt-retention", "forever", "invalid duration"),
        ("--receipt-retention", "2w", "use s, m, h or d"),
    ] {
        let out = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args([flag, value])
            .env_remove("BONAFIDE_ADMIN_KEY")
            .output()
            .unwrap();
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {t}");
        assert!(t.contains(flag) && t.contains(says), "{flag} {value}: {t}");
    }
    // Refused before anything started.
    assert!(!dir.path().join("admin.key").exists());

    // Good values are taken: with a 1 s idle timeout, a kept-alive connection is
    // closed soon after its answer.
    let s = serve_with_args(
        dir.path(),
        "127.0.0.1:0",
        &[
            "--header-read-timeout",
            "5s",
            "--idle-timeout",
            "1s",
            "--request-timeout",
            "1m",
            "--max-connections",
            "8",
            "--receipt-retention",
            "90d",
        ],
        &[],
    );
    let mut c = std::net::TcpStream::connect(s.url.trim_start_matches("http://")).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: bonafide.test\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    let closed = loop {
        match c.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(e) => {
                let _ = e;
                break false;
            }
        }
    };
    let answer = String::from_utf8_lossy(&got);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");
    assert!(closed, "the idle connection was still open 10 s later");
}

/// `--quiet` prints only the key; `--output env` prints `NAME='value'` lines; either
/// with `--json` is refused before any request.
#[test]
fn quiet_and_env_forms_print_only_the_values() {
    let data = tempfile::tempdir().unwrap();
    let s = common::serve(data.path(), &[]);
    let admin = s.admin_printed.clone().unwrap();
    let out = run(
        &s.url,
        Some(&admin),
        &["issuer", "create", "--name", "q.example", "--quiet"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(printed.lines().count(), 1, "{printed}");
    assert!(printed.starts_with("bfk_iss_"), "{printed}");
    let out = run(
        &s.url,
        Some(&admin),
        &[
            "receiver",
            "create",
            "--name",
            "r.example",
            "--output",
            "env",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let printed = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 2, "{printed}");
    assert!(
        lines[0].starts_with("BONAFIDE_RECEIVER_ID='rcv_"),
        "{printed}"
    );
    assert!(
        lines[1].starts_with("BONAFIDE_RECEIVER_KEY='bfk_rcv_"),
        "{printed}"
    );
    for bad in [&["--quiet"][..], &["--output", "env"]] {
        let mut args = vec!["--json", "issuer", "create", "--name", "x.example"];
        args.extend_from_slice(bad);
        let out = run("http://127.0.0.1:1", Some(&admin), &args);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains("choose one form"), "{}", text(&out));
    }
}

/// `--database-url` is a PostgreSQL URL or refused at start, never echoed (it may hold
/// a password), and it excludes `--data-dir`.
#[test]
fn database_url_is_checked_and_exclusive_with_data_dir() {
    for args in [
        &["serve", "--database-url", "mysql://u:s3cret@h/db"][..],
        &["keys", "rotate", "--database-url", "sqlite://u:s3cret@h/db"][..],
    ] {
        let out = run("http://127.0.0.1:1", None, args);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains("postgres://"), "{}", text(&out));
        assert!(!text(&out).contains("s3cret"), "{}", text(&out));
    }
    let out = run(
        "http://127.0.0.1:1",
        None,
        &[
            "serve",
            "--data-dir",
            "./x",
            "--database-url",
            "postgres://u@127.0.0.1:1/db",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("cannot be used with"), "{}", text(&out));
    // An unreachable database: a clear failure naming it without its password.
    let out = run(
        "http://127.0.0.1:1",
        None,
        &[
            "keys",
            "rotate",
            "--database-url",
            "postgres://u:s3cret@127.0.0.1:1/db",
        ],
    );
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("127.0.0.1:1/db"), "{}", text(&out));
    assert!(!text(&out).contains("s3cret"), "{}", text(&out));
}

/// One HTTP/1.1 GET over a plain socket: (status line, body).
fn raw_get(base: &str, path: &str, bearer: Option<&str>) -> (String, String) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = bearer.map_or_else(String::new, |k| format!("Authorization: Bearer {k}\r\n"));
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: bonafide.test\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut got = String::new();
    c.read_to_string(&mut got).unwrap();
    let (head, body) = got.split_once("\r\n\r\n").unwrap_or((&got, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

/// `--metrics-listen` serves `GET /metrics` there without a key (and nothing else),
/// while the main address still asks for an admin key; a bad or taken address is
/// refused at start with a clear message.
#[test]
fn metrics_listen_serves_metrics_alone_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve_with_args(
        dir.path(),
        "127.0.0.1:0",
        &["--metrics-listen", "127.0.0.1:0"],
        &[],
    );
    let metrics = s
        .log_text()
        .lines()
        .find_map(|l| l.strip_prefix("bonafide metrics on ").map(str::to_owned))
        .expect("the metrics address is announced");
    let base = metrics.trim_end_matches("/metrics").to_owned();
    let (status, _) = raw_get(&s.url, "/healthz", None);
    assert!(status.contains(" 200 "), "{status}");
    let (status, body) = raw_get(&base, "/metrics", None);
    assert!(status.contains(" 200 "), "{status}: {body}");
    assert!(
        body.contains(
            "bonafide_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 1"
        ),
        "{body}"
    );
    let (status, _) = raw_get(&base, "/v1/agents", None);
    assert!(status.contains(" 404 "), "{status}");
    let (status, body) = raw_get(&s.url, "/metrics", None);
    assert!(status.contains(" 401 "), "{status}: {body}");
    let admin = s.admin_printed.clone().unwrap();
    let (status, _) = raw_get(&s.url, "/metrics", Some(&admin));
    assert!(status.contains(" 200 "), "{status}");

    // Refused at start, exit 2 with the reason: not an address, an address taken.
    let other = tempfile::tempdir().unwrap();
    let taken = base.trim_start_matches("http://").to_owned();
    for (value, code, says) in [
        ("nonsense", 2, "invalid socket address"),
        (taken.as_str(), 2, "Address already in use"),
    ] {
        let out = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(other.path())
            .args(["--metrics-listen", value])
            .env_remove("BONAFIDE_ADMIN_KEY")
            .output()
            .unwrap();
        let t = text(&out);
        assert_eq!(out.status.code(), Some(code), "{value}: {t}");
        assert!(t.contains(says), "{value}: {t}");
    }
}
