//! Login backoff over HTTP (issue 18, outside review): the check and the record of an
//! attempt are one step, so parallel wrong attempts pass no more often than the
//! backoff allows; and an account's backoff is kept per address (plus a much higher
//! ceiling for the account overall), so failures from one address do not lock its
//! owner out elsewhere.

use reqwest::StatusCode;
use serde_json::{Value, json};

use bonafide_server::Config;
use bonafide_server::ratelimit::Cidr;

use crate::common::{Harness, config, start_with_config};

const PASSWORD: &str = "correct horse battery staple";

async fn login_from(h: &Harness, from: &str, email: &str, password: &str) -> (StatusCode, Value) {
    let resp = h
        .http
        .post(format!("{}/v1/auth/login", h.base))
        .header("x-forwarded-for", from)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn parallel_wrong_logins_pass_no_more_often_than_the_backoff_allows_and_only_from_their_address()
 {
    // The test client is the trusted proxy: `X-Forwarded-For` names each attempt's
    // address.
    let h = start_with_config(Config {
        trusted_proxies: vec![Cidr::parse("127.0.0.1").unwrap()],
        ..config()
    })
    .await;
    let (st, v) = h
        .call(
            "POST",
            "/v1/orgs",
            Some(&h.admin),
            Some(json!({"name": "victim", "owner_email": "v@example.com"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let token = v["invitation"]["token"].as_str().unwrap().to_owned();
    let (st, v) = h
        .call(
            "POST",
            "/v1/invitations/accept",
            None,
            Some(json!({"token": token, "password": PASSWORD})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");

    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (http, base) = (h.http.clone(), h.base.clone());
        attempts.spawn(async move {
            http.post(format!("{base}/v1/auth/login"))
                .header("x-forwarded-for", "198.51.100.7")
                .json(&json!({"email": "v@example.com", "password": "guess guess guess"}))
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    let (mut refused, mut throttled) = (0, 0);
    while let Some(st) = attempts.join_next().await {
        match st.unwrap() {
            StatusCode::UNAUTHORIZED => refused += 1,
            StatusCode::TOO_MANY_REQUESTS => throttled += 1,
            other => panic!("{other}"),
        }
    }
    // Five free failures for the account from one address: five passwords checked.
    assert_eq!((refused, throttled), (5, 15));
    // From there the account backs off, the right password too.
    let (st, v) = login_from(&h, "198.51.100.7", "v@example.com", PASSWORD).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["error"]["code"], "LOGIN_THROTTLED");
    // Its owner, elsewhere, logs in.
    let (st, v) = login_from(&h, "203.0.113.9", "v@example.com", PASSWORD).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // A wrong guess from a third address is checked (its own count starts at zero).
    let (st, _) = login_from(&h, "192.0.2.55", "v@example.com", "guess guess guess").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}
