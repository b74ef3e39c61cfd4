//! `bonafide api-key create|list|rotate|revoke` against the real server: two admin
//! keys, one revoked (it then authenticates nothing), the last refused, bad ids
//! refused locally; an issuer's keys made, rotated and revoked; a different
//! BONAFIDE_ADMIN_KEY refused at start without `--add-admin-key`.

use crate::common;

use common::{json_of, run, serve, serve_with_args, text};

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

#[test]
fn admin_keys_are_listed_and_revoked_but_never_the_last() {
    let data = tempfile::tempdir().unwrap();
    // First start: the registry makes key A; the next start adds key B.
    let first = {
        let s = serve(data.path(), &[]);
        s.admin_printed.clone().unwrap()
    };
    let out = run("http://127.0.0.1:1", None, &["keys", "new-admin-key"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let second = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    // A different BONAFIDE_ADMIN_KEY no longer adds itself silently: refused (exit 2)
    // without --add-admin-key.
    let refused = std::process::Command::new(common::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("BONAFIDE_ADMIN_KEY", &second)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains("--add-admin-key"),
        "{}",
        text(&refused)
    );
    let s = serve_with_args(
        data.path(),
        "127.0.0.1:0",
        &["--add-admin-key"],
        &[("BONAFIDE_ADMIN_KEY", second.as_str())],
    );

    let out = run(&s.url, Some(&second), &["api-key", "list", "--json"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let keys = json_of(&out)["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let ids: Vec<String> = keys
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect();
    // Ids only: neither key's text is ever listed.
    let listed = text(&run(&s.url, Some(&second), &["api-key", "list"]));
    assert!(
        listed.contains(&ids[0]) && listed.contains(&ids[1]),
        "{listed}"
    );
    assert!(
        !listed.contains(&first) && !listed.contains(&second),
        "{listed}"
    );

    // Revoke A (the oldest) with B: A authenticates nothing afterwards.
    assert_eq!(
        code(&run(
            &s.url,
            Some(&first),
            &["issuer", "create", "--name", "a.example"]
        )),
        0
    );
    let out = run(&s.url, Some(&second), &["api-key", "revoke", &ids[0]]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(text(&out).contains(&format!("revoked API key {}", ids[0])));
    let out = run(
        &s.url,
        Some(&first),
        &["issuer", "create", "--name", "b.example"],
    );
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("401"), "{}", text(&out));
    // Again: not found now.
    let out = run(&s.url, Some(&second), &["api-key", "revoke", &ids[0]]);
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("404"), "{}", text(&out));

    // The last key: refused, and it still works.
    let out = run(&s.url, Some(&second), &["api-key", "revoke", &ids[1]]);
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("LAST_ADMIN_KEY"), "{}", text(&out));
    assert_eq!(code(&run(&s.url, Some(&second), &["api-key", "list"])), 0);

    // Bad ids never reach the registry; an issuer key is not an admin key.
    for bad in [
        "sha256:../../x",
        "abc",
        "sha256:ABCDEF0123456789",
        "sha256:0123",
        "key_../../x",
        "key_0123",
    ] {
        let out = run(
            "http://127.0.0.1:1",
            Some(&second),
            &["api-key", "revoke", bad],
        );
        assert_eq!(code(&out), 2, "{bad}: {}", text(&out));
        assert!(
            text(&out).contains("is not an API key id"),
            "{}",
            text(&out)
        );
    }
    let out = run(
        &s.url,
        Some(&second),
        &["issuer", "create", "--name", "c.example", "--json"],
    );
    let issuer_key = json_of(&out)["api_key"].as_str().unwrap().to_owned();
    let out = run(
        &s.url,
        Some(&issuer_key),
        &["api-key", "list", "--owner", "admin"],
    );
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("403"), "{}", text(&out));

    // The issuer's own keys: create (secret once), list, rotate, revoke.
    let out = run(
        &s.url,
        Some(&issuer_key),
        &[
            "api-key",
            "create",
            "--name",
            "deploys",
            "--scope",
            "read",
            "--expires-in",
            "30d",
            "--json",
        ],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    let made = json_of(&out);
    let deploy = made["secret"].as_str().unwrap().to_owned();
    let deploy_id = made["key"]["id"].as_str().unwrap().to_owned();
    assert_eq!(made["key"]["scopes"], serde_json::json!(["read"]));
    assert!(made["key"]["expires_at"].is_string());
    let listed = text(&run(&s.url, Some(&issuer_key), &["api-key", "list"]));
    assert!(
        listed.contains(&deploy_id) && listed.contains("deploys [read]"),
        "{listed}"
    );
    assert!(!listed.contains(&deploy), "{listed}");
    let out = run(
        &s.url,
        Some(&issuer_key),
        &["api-key", "rotate", &deploy_id, "--grace", "1h"],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains("rotated API key key_"), "{shown}");
    assert!(
        shown.contains(&format!("the old key {deploy_id} works until")),
        "{shown}"
    );
    let listed = json_of(&run(
        &s.url,
        Some(&issuer_key),
        &["api-key", "list", "--json"],
    ));
    let states: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["active", "rotating", "active"], "{listed}");
    let out = run(
        &s.url,
        Some(&issuer_key),
        &["api-key", "revoke", &deploy_id],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    // The read-only key cannot manage keys; bad flags never reach the registry.
    let out = run(&s.url, Some(&deploy), &["api-key", "list"]);
    assert_eq!(code(&out), 2, "{}", text(&out));
    for args in [
        &["api-key", "create", "--name", "x", "--scope", "everything"][..],
        &["api-key", "create", "--name", "x", "--expires-in", "soon"][..],
        &["api-key", "create", "--name", "x", "--expires-in", "0"][..],
        &["api-key", "list", "--owner", "../admin"][..],
        &["api-key", "rotate", "key_0011223344556677", "--grace", "-1"][..],
    ] {
        let out = run("http://127.0.0.1:1", Some(&issuer_key), args);
        assert_eq!(code(&out), 2, "{args:?}: {}", text(&out));
        assert!(
            !text(&out).contains("127.0.0.1:1"),
            "{args:?} reached the network: {}",
            text(&out)
        );
    }
    // A registry-side refusal: a grace period over 30 days.
    let out = run(
        &s.url,
        Some(&issuer_key),
        &["api-key", "rotate", &deploy_id, "--grace", "31d"],
    );
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(
        text(&out).contains("404") || text(&out).contains("422"),
        "{}",
        text(&out)
    );
    let out = run(&s.url, None, &["api-key", "list"]);
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("BONAFIDE_API_KEY"), "{}", text(&out));

    // The revoked key supplied again on a restart (an old environment) is refused:
    // `serve` exits 2 and says so, instead of bringing it back.
    drop(s);
    let mut child = std::process::Command::new(common::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("BONAFIDE_ADMIN_KEY", &first)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve took a revoked BONAFIDE_ADMIN_KEY and kept running");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("BONAFIDE_ADMIN_KEY was revoked"), "{err}");
}
