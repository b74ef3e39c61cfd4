//! Quotas and usage through the real binary (issue 18 item 5): `serve --plan` and its
//! refusals, `bonafide plan get|set`, a verification refused 429 `QUOTA_EXCEEDED` once
//! the organisation's plan is used up, and `bonafide usage` as a table and `--json`.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{BIN, json_of, run, serve_with_args, text};

#[test]
fn bad_plan_flags_exit_2_saying_why() {
    for (args, says) in [
        (&["--plan", "pro=0"][..], "the limit must be a whole number"),
        (&["--plan", "pro"][..], "NAME=LIMIT"),
        (&["--plan", "Pro=5"][..], "is not a plan name"),
        (&["--quotas", "maybe"][..], "maybe"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(args)
            .env_remove("BONAFIDE_ADMIN_KEY")
            .env_remove("BONAFIDE_PLANS")
            .env_remove("BONAFIDE_QUOTAS")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
    }
}

#[tokio::test]
async fn plans_are_assigned_the_quota_refuses_and_usage_prints_as_a_table() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve_with_args(
        dir.path(),
        "127.0.0.1:0",
        &["--plan", "free=2", "--plan", "pro=3"],
        &[],
    );
    let admin = served.admin_printed.clone().unwrap();
    let url = &served.url;
    let out = run(
        url,
        Some(&admin),
        &[
            "org",
            "create",
            "--name",
            "acme",
            "--owner-email",
            "o@acme.example",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let org = json_of(&out)["org_id"].as_str().unwrap().to_owned();
    let out = run(
        url,
        Some(&admin),
        &["receiver", "create", "--name", "api.acme.example", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let created = json_of(&out);
    let key = created["api_key"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{url}/v1/orgs/{org}/adopt"))
        .bearer_auth(&admin)
        .json(&json!({"receiver_id": created["receiver_id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let out = run(url, Some(&admin), &["plan", "get", &org]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("is on plan free (2 verifications a month)"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("plans: free=2, pro=3"),
        "{}",
        text(&out)
    );
    let out = run(url, Some(&admin), &["plan", "set", &org, "gold"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("no plan `gold`"), "{}", text(&out));
    let out = run(url, Some(&key), &["plan", "set", &org, "pro"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = run(url, Some(&admin), &["plan", "set", &org, "pro", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json_of(&out)["limit"], 3);

    let verify = || {
        http.post(format!("{url}/v1/verify"))
            .bearer_auth(&key)
            .json(&json!({"token": "not.a.token"}))
            .send()
    };
    for _ in 0..3 {
        assert_eq!(verify().await.unwrap().status(), StatusCode::OK);
    }
    let r = verify().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "QUOTA_EXCEEDED");
    assert!(
        body["error"]["reset"]
            .as_str()
            .unwrap()
            .ends_with("-01T00:00:00.000Z")
    );

    let out = run(url, Some(&key), &["usage"]);
    assert!(out.status.success(), "{}", text(&out));
    let table = text(&out);
    for want in [
        org.as_str(),
        "quota: 3 of 3 verifications",
        "(plan pro)",
        "/v1/verify",
        "key_",
        "by endpoint",
    ] {
        assert!(table.contains(want), "{want}: {table}");
    }
    assert!(
        !table.contains(&key) && !table.contains("sha256"),
        "{table}"
    );
    let out = run(url, Some(&admin), &["usage", "--org", &org, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v = json_of(&out);
    // Three verifications admitted, the refused one and the key's usage read counted.
    assert_eq!(v["by_endpoint"]["/v1/verify"], 4, "{v}");
    assert_eq!(v["quota"]["used"], 3);
    let out = run(url, Some(&key), &["usage", "--from", "2026-13-01"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("YYYY-MM-DD"), "{}", text(&out));
    let out = run(
        url,
        Some(&key),
        &["usage", "--from", "2026-12-31", "--to", "2026-12-01"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("after"), "{}", text(&out));
}
