//! `bonafide migrate`: a SQLite registry moved into PostgreSQL (issue 16 item 5) keeps
//! everything (tokens, revocations, budgets, receipts, the audit log and its
//! checkpoints), and `bonafide audit verify` with the state file pinned against the
//! old registry passes against the new one. Needs `BONAFIDE_TEST_PG_URL` (see
//! `replicas.rs`).

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{self, BIN, Served};
use crate::replicas::{admin_url, fresh_database, new_admin_key};

const PUBLIC_URL: &str = "http://registry.test";

fn migrate(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("migrate")
        .args(args)
        .env_remove("BONAFIDE_KEY_ENCRYPTION_KEY_FILE")
        .env_remove("BONAFIDE_DATABASE_URL")
        .output()
        .unwrap()
}

fn new_kek(path: &Path) {
    let out = Command::new(BIN)
        .args(["keys", "new-kek", "--out"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::text(&out));
}

fn serve_sqlite(dir: &Path, admin: &str) -> Served {
    common::serve_with_args(
        dir,
        "127.0.0.1:0",
        &["--public-url", PUBLIC_URL],
        &[("BONAFIDE_ADMIN_KEY", admin)],
    )
}

fn serve_postgres(db_url: &str, kek: &Path, admin: &str) -> Served {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--signing-alg", "EdDSA"])
        .args(["--public-url", PUBLIC_URL])
        .args(["--database-url", db_url])
        .arg("--key-encryption-key-file")
        .arg(kek)
        .env_remove("BONAFIDE_DATA_DIR")
        .env_remove("BONAFIDE_PUBLIC_URL")
        .env_remove("BONAFIDE_KEY_ENCRYPTION_KEY_FILE")
        .env("BONAFIDE_ADMIN_KEY", admin);
    common::spawn_served(cmd)
}

async fn call(method: &str, url: &str, key: Option<&str>, body: Option<&Value>) -> (u16, Value) {
    let http = reqwest::Client::new();
    let mut req = if method == "GET" {
        http.get(url)
    } else {
        http.post(url)
    };
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn spend(token: &str, amount: &str) -> Value {
    json!({"token": token, "action": "payments.send", "amount": amount, "currency": "USD"})
}

/// `audit verify` against `url` with the state file `state`, once the registry has
/// signed a checkpoint covering `at_least` entries.
async fn audit_verify(url: &str, log_key: &str, state: &Path, at_least: u64) -> Output {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = call("GET", &format!("{url}/v1/audit/checkpoint"), None, None).await;
        // The signed note's second line is the tree size.
        let size: u64 = v
            .as_str()
            .and_then(|t| t.lines().nth(1))
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        if size >= at_least {
            break;
        }
        assert!(Instant::now() < deadline, "no checkpoint covers {at_least}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let state = state.to_str().unwrap();
    common::run(
        url,
        None,
        &["audit", "verify", "--log-key", log_key, "--state", state],
    )
}

/// A registry built on SQLite, moved, and used on PostgreSQL: the same tokens verify,
/// the revoked one stays refused, the budget continues where it was, the receipt is
/// there, listings keep their order, and the audit log is consistent across the move.
/// The failure cases leave the target empty; a second copy into it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_registry_moves_to_postgres_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let admin = new_admin_key();
    let state = tmp.path().join("audit-state.json");

    // The old registry, on SQLite.
    let served = serve_sqlite(&dir, &admin);
    let old = served.url.clone();
    let (_, issuer) = call(
        "POST",
        &format!("{old}/v1/issuers"),
        Some(&admin),
        Some(&json!({"name": "move.example"})),
    )
    .await;
    let issuer_key = issuer["api_key"].as_str().unwrap().to_owned();
    let (_, receiver) = call(
        "POST",
        &format!("{old}/v1/receivers"),
        Some(&admin),
        Some(&json!({"name": "api.move.example"})),
    )
    .await;
    let receiver_key = receiver["api_key"].as_str().unwrap().to_owned();
    let mut agents = Vec::new();
    for (name, policy) in [
        (
            "Spender",
            Some(json!({
                "version": "pol.v0.2", "id": "pol_move", "actions": ["payments.send"],
                "limits": {"per_period": {"amount": "10.00", "currency": "USD", "period": "month"}}
            })),
        ),
        ("Revoked", None),
        ("Third", None),
        (
            "Policy revoked",
            Some(json!({"version": "pol.v0.2", "id": "pol_gone", "actions": ["payments.send"]})),
        ),
    ] {
        let mut body =
            json!({"name": name, "scopes": ["payments:write"], "user": "did:example:alice"});
        if let Some(p) = policy {
            body["policy"] = p;
        }
        let (status, v) = call(
            "POST",
            &format!("{old}/v1/agents/register"),
            Some(&issuer_key),
            Some(&body),
        )
        .await;
        assert_eq!(status, 201, "{v}");
        agents.push((
            v["agent_id"].as_str().unwrap().to_owned(),
            v["token"].as_str().unwrap().to_owned(),
        ));
    }
    let (status, first) = call(
        "POST",
        &format!("{old}/v1/verify"),
        Some(&receiver_key),
        Some(&spend(&agents[0].1, "3.00")),
    )
    .await;
    assert_eq!((status, &first["allowed"]), (200, &json!(true)), "{first}");
    let receipt_id = first["receipt_id"].as_str().unwrap().to_owned();
    let (status, v) = call(
        "POST",
        &format!("{old}/v1/agents/{}/revoke", agents[1].0),
        Some(&issuer_key),
        Some(&json!({"reason": "moved"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, policy_revoked) = call(
        "POST",
        &format!("{old}/v1/policies/revoke"),
        Some(&issuer_key),
        Some(&json!({"policy_id": "pol_gone"})),
    )
    .await;
    assert_eq!(status, 200, "{policy_revoked}");
    let (_, discovery) = call(
        "GET",
        &format!("{old}/.well-known/bonafide-configuration"),
        None,
        None,
    )
    .await;
    let log_key = discovery["audit_log"]["log_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = audit_verify(&old, &log_key, &state, 6).await;
    assert!(out.status.success(), "{}", common::text(&out));
    let (_, listing_before) =
        call("GET", &format!("{old}/v1/agents"), Some(&issuer_key), None).await;
    drop(served);

    // The target: a new database and the replicas' KEK.
    let db = fresh_database(&admin_url(), "migrate").await;
    // The test cluster trusts local connections: the password is only there to be
    // kept out of every output.
    let db = match db.split_once("://") {
        Some((scheme, rest)) if !rest.split('@').next().unwrap_or("").contains(':') => {
            format!("{scheme}://{}", rest.replacen('@', ":s3cret-pw@", 1))
        }
        _ => db,
    };
    let kek = tmp.path().join("replicas.kek");
    new_kek(&kek);
    let from = dir.to_str().unwrap();
    let kek_arg = kek.to_str().unwrap();

    // Failure cases first: each leaves the target empty.
    let out = migrate(&[
        "--from",
        from,
        "--to",
        "mysql://x/y",
        "--key-encryption-key-file",
        kek_arg,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
    assert!(
        common::text(&out).contains("postgres://"),
        "{}",
        common::text(&out)
    );
    let nowhere = tmp.path().join("nowhere");
    let out = migrate(&[
        "--from",
        nowhere.to_str().unwrap(),
        "--to",
        &db,
        "--key-encryption-key-file",
        kek_arg,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
    assert!(
        common::text(&out).contains("no Bonafide database"),
        "{}",
        common::text(&out)
    );
    assert!(!nowhere.exists(), "a missing source is never created");
    let out = migrate(&["--from", from, "--to", &db]);
    assert_eq!(out.status.code(), Some(2), "a target KEK is required");
    let wrong = tmp.path().join("wrong.kek");
    new_kek(&wrong);
    let out = migrate(&[
        "--from",
        from,
        "--to",
        &db,
        "--key-encryption-key-file",
        kek_arg,
        "--from-key-encryption-key-file",
        wrong.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
    assert!(
        common::text(&out).contains("does not open"),
        "{}",
        common::text(&out)
    );

    // The move.
    let out = migrate(&[
        "--from",
        from,
        "--to",
        &db,
        "--key-encryption-key-file",
        kek_arg,
    ]);
    assert!(out.status.success(), "{}", common::text(&out));
    let text = common::text(&out);
    assert!(
        !text.contains(&db),
        "the URL (and its password) is never printed: {text}"
    );
    let out = Command::new(BIN)
        .args(["--json", "migrate", "--from", from, "--to", &db])
        .args(["--key-encryption-key-file", kek_arg])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a second copy is refused");
    assert!(
        common::text(&out).contains("not empty"),
        "{}",
        common::text(&out)
    );

    // The new registry, on PostgreSQL.
    let replica = serve_postgres(&db, &kek, &admin);
    let new = replica.url.clone();
    let (_, listing_after) =
        call("GET", &format!("{new}/v1/agents"), Some(&issuer_key), None).await;
    assert_eq!(
        listing_after["agents"], listing_before["agents"],
        "listing order kept"
    );
    let (status, v) = call(
        "POST",
        &format!("{new}/v1/verify"),
        Some(&receiver_key),
        Some(&json!({"token": agents[1].1})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["valid"],
        json!(false),
        "the revoked agent stays revoked: {v}"
    );
    // The revoked policy too, and its first revocation time moved with it.
    let (status, v) = call(
        "POST",
        &format!("{new}/v1/verify"),
        Some(&receiver_key),
        Some(&json!({"token": agents[3].1})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["error"]["code"], "TOKEN_REVOKED", "{v}");
    assert_eq!(v["reasons"][1], "POLICY_REVOKED", "{v}");
    let (status, again) = call(
        "POST",
        &format!("{new}/v1/policies/revoke"),
        Some(&issuer_key),
        Some(&json!({"policy_id": "pol_gone"})),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["revoked_at"], policy_revoked["revoked_at"], "{again}");
    let (status, v) = call(
        "POST",
        &format!("{new}/v1/verify"),
        Some(&receiver_key),
        Some(&spend(&agents[0].1, "7.00")),
    )
    .await;
    assert_eq!(
        (status, &v["allowed"]),
        (200, &json!(true)),
        "the budget continues: {v}"
    );
    let (status, v) = call(
        "POST",
        &format!("{new}/v1/verify"),
        Some(&receiver_key),
        Some(&spend(&agents[0].1, "0.01")),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["allowed"],
        json!(false),
        "3.00 + 7.00 spent of 10.00: {v}"
    );
    assert_eq!(v["reasons"], json!(["LIMIT_PER_PERIOD"]), "{v}");
    let (status, v) = call(
        "GET",
        &format!("{new}/v1/receipts/{receipt_id}"),
        Some(&receiver_key),
        None,
    )
    .await;
    assert_eq!(status, 200, "the receipt moved: {v}");
    let (status, _) = call(
        "POST",
        &format!("{new}/v1/verify"),
        Some(&receiver_key),
        Some(&json!({"token": agents[2].1})),
    )
    .await;
    assert_eq!(status, 200);

    // The log: consistent with the checkpoint the state file pinned on SQLite, and
    // signed with the same key by the new registry.
    let out = audit_verify(&new, &log_key, &state, 9).await;
    assert!(out.status.success(), "{}", common::text(&out));
    drop(replica);

    // The KEK rotates on PostgreSQL too: the new one starts the registry, the old
    // one no longer does.
    let next = tmp.path().join("next.kek");
    new_kek(&next);
    let out = Command::new(BIN)
        .args(["keys", "rotate-kek", "--database-url", &db])
        .args(["--key-encryption-key-file", kek_arg])
        .args(["--new-key-encryption-key-file", next.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::text(&out));
    assert!(!common::text(&out).contains("s3cret-pw"));
    let out = Command::new(BIN)
        .args(["keys", "rotate-kek", "--database-url", &db])
        .args(["--key-encryption-key-file", kek_arg])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
    let replica = serve_postgres(&db, &next, &admin);
    let (status, v) = call(
        "POST",
        &format!("{}/v1/verify", replica.url),
        Some(&receiver_key),
        Some(&json!({"token": agents[2].1})),
    )
    .await;
    assert_eq!((status, &v["valid"]), (200, &json!(true)), "{v}");
}
