//! Quotas and usage over HTTP (issue 18 item 5): an organisation's monthly
//! verification quota counted exactly (across a restart and across two replicas on one
//! store), the 80 % warning (header, one audit entry, metric), 429 `QUOTA_EXCEEDED`
//! with `Retry-After` and `reset`, the reset at the start of the month (UTC, a manual
//! clock), plan assignment by the registry admin, and `GET /v1/usage` with its access
//! rules and range checks. Also the rate-limit gaps of the outside review: the person
//! bucket, and the credential the limiter charges being the one authentication uses.

use std::sync::Arc;
use std::time::Duration;

use bonafide_server::quota::Plans;
use bonafide_server::ratelimit::RateLimits;
use bonafide_server::time::ManualClock;
use bonafide_server::{Config, Server};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Harness, config, start_with_config};

const PASSWORD: &str = "correct horse battery staple";
/// 2026-12-31T23:00:00Z: an hour before the month ends.
const DEC_31_23H_MS: i64 = 1_798_758_000_000;

fn plans(assignments: &[&str]) -> Plans {
    let mut p = Plans::seeds();
    for a in assignments {
        p.apply(a).unwrap();
    }
    p
}

async fn server(plans: Plans, clock: Arc<ManualClock>) -> Harness {
    start_with_config(Config {
        plans,
        clock,
        ..config()
    })
    .await
}

struct Answer {
    status: StatusCode,
    body: Value,
    headers: reqwest::header::HeaderMap,
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    }
}

async fn call(
    h: &Harness,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = h.http.request(method, format!("{}{path}", h.base));
    if let Some(t) = bearer {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    send(r).await
}

/// An organisation with an owner logged in: (org id, owner's access token).
async fn org(h: &Harness, name: &str) -> (String, String) {
    let owner = format!("owner@{name}.example");
    let a = call(
        h,
        "POST",
        "/v1/orgs",
        Some(&h.admin),
        Some(json!({"name": name, "owner_email": owner})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let org = a.body["org_id"].as_str().unwrap().to_owned();
    let token = a.body["invitation"]["token"].as_str().unwrap().to_owned();
    let a = call(
        h,
        "POST",
        "/v1/invitations/accept",
        None,
        Some(json!({"token": token, "password": PASSWORD})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    (org, login(h, &owner).await)
}

async fn login(h: &Harness, email: &str) -> String {
    let a = call(
        h,
        "POST",
        "/v1/auth/login",
        None,
        Some(json!({"email": email, "password": PASSWORD})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body["access_token"].as_str().unwrap().to_owned()
}

/// A receiver of `org` (by its owner): (receiver id, its key).
async fn receiver(h: &Harness, org: &str, owner: &str, name: &str) -> (String, String) {
    let a = call(
        h,
        "POST",
        &format!("/v1/orgs/{org}/receivers"),
        Some(owner),
        Some(json!({"name": name})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    (
        a.body["receiver_id"].as_str().unwrap().to_owned(),
        a.body["api_key"].as_str().unwrap().to_owned(),
    )
}

/// One verification (of a token that is no token: it counts all the same).
async fn verify_at(base: &str, http: &reqwest::Client, key: Option<&str>) -> Answer {
    let mut r = http
        .post(format!("{base}/v1/verify"))
        .json(&json!({"token": "not.a.token"}));
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    send(r).await
}

async fn verify(h: &Harness, key: Option<&str>) -> Answer {
    verify_at(&h.base, &h.http, key).await
}

async fn audit_of(h: &Harness, event: &str) -> Vec<Value> {
    let size = h.state.store.audit_size().await.unwrap();
    let a = call(
        h,
        "GET",
        &format!("/v1/audit/entries?start=0&end={size}"),
        Some(&h.admin),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| serde_json::from_str::<Value>(e["entry"].as_str().unwrap()).unwrap())
        .filter(|e| e["type"] == event)
        .collect()
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn the_quota_warns_at_80_percent_refuses_at_100_survives_a_restart_and_resets_next_month() {
    let clock = Arc::new(ManualClock::at(DEC_31_23H_MS));
    let h = server(plans(&["free=5"]), clock.clone()).await;
    let (org, owner) = org(&h, "acme").await;
    let (_, key) = receiver(&h, &org, &owner, "api.acme.example").await;

    for n in 1..=3 {
        let a = verify(&h, Some(&key)).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert!(a.headers.get("bonafide-quota-warning").is_none(), "{n}");
    }
    assert!(audit_of(&h, "quota.warning").await.is_empty());
    // The 4th of 5 is 80 %: warned, once.
    let a = verify(&h, Some(&key)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.headers["bonafide-quota-warning"],
        "4/5; reset=2027-01-01T00:00:00.000Z"
    );
    // Anonymous verifies count against no quota.
    for _ in 0..3 {
        let a = verify(&h, None).await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(a.headers.get("bonafide-quota-warning").is_none());
    }
    let a = verify(&h, Some(&key)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.headers["bonafide-quota-warning"],
        "5/5; reset=2027-01-01T00:00:00.000Z"
    );
    let warnings = audit_of(&h, "quota.warning").await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["org"], org.as_str());

    let m = call(&h, "GET", "/metrics", Some(&h.admin), None).await;
    let text = m.body.as_str().unwrap_or_default().to_owned();
    assert_eq!(
        metric(&text, "bonafide_quota_warnings_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "bonafide_quota_refusals_total"),
        Some(0.0),
        "{text}"
    );

    // Counted in the store: a restart knows the month is used up.
    let h = h.restart().await;
    let a = verify(&h, Some(&key)).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    assert_eq!(a.body["error"]["code"], "QUOTA_EXCEEDED");
    assert_eq!(a.body["error"]["reset"], "2027-01-01T00:00:00.000Z");
    assert_eq!(a.headers["retry-after"], "3600");
    // GET verify and introspection count too.
    let a = send(
        h.http
            .get(format!("{}/v1/verify/not.a.token", h.base))
            .bearer_auth(&key),
    )
    .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    let a = send(
        h.http
            .post(format!("{}/v1/introspect", h.base))
            .bearer_auth(&key)
            .form(&[("token", "not.a.token")]),
    )
    .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    let m = call(&h, "GET", "/metrics", Some(&h.admin), None).await;
    let text = m.body.as_str().unwrap_or_default().to_owned();
    assert_eq!(
        metric(&text, "bonafide_quota_refusals_total"),
        Some(3.0),
        "{text}"
    );
    assert!(!text.contains(&key) && !text.contains(&org));

    // The month ends: the quota is full again.
    clock.advance(Duration::from_secs(3600));
    let a = verify(&h, Some(&key)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.headers.get("bonafide-quota-warning").is_none());
    let u = call(&h, "GET", "/v1/usage", Some(&key), None).await;
    assert_eq!(u.status, StatusCode::OK, "{}", u.body);
    assert_eq!(u.body["quota"]["month"], "2027-01");
    assert_eq!(u.body["quota"]["used"], 1);
    assert_eq!(u.body["quota"]["limit"], 5);
    assert_eq!(u.body["quota"]["plan"], "free");
    assert_eq!(u.body["quota"]["reset"], "2027-02-01T00:00:00.000Z");
    // The refused verification of the new month's first second was not a warning.
    assert_eq!(audit_of(&h, "quota.warning").await.len(), 1);
}

/// A verification whose decision is recorded (an agent's token) and crosses 80 % has
/// the month's `quota.warning` at the next index of the log, appended in the same
/// transaction as its own entry: durable with the flag, never owed to a later write.
#[tokio::test]
async fn the_warning_of_a_recorded_decision_is_written_with_it() {
    let clock = Arc::new(ManualClock::at(DEC_31_23H_MS - 86_400_000));
    let h = server(plans(&["free=5"]), clock).await;
    let (org, owner) = org(&h, "recorded").await;
    let (_, key) = receiver(&h, &org, &owner, "api.recorded.example").await;
    let issuer = h.issuer("tokens.recorded.example").await;
    let reg = h
        .register(&issuer, json!({"name": "bot", "scopes": ["read:x"]}))
        .await;
    let token = reg["token"].as_str().unwrap().to_owned();
    let mut indexes = Vec::new();
    for n in 1..=4 {
        let a = send(
            h.http
                .post(format!("{}/v1/verify", h.base))
                .bearer_auth(&key)
                .json(&json!({"token": token})),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{n}: {}", a.body);
        assert_eq!(a.body["valid"], true, "{}", a.body);
        indexes.push(a.body["audit_index"].as_u64().unwrap());
        if n < 4 {
            assert!(audit_of(&h, "quota.warning").await.is_empty(), "{n}");
        }
    }
    // The 4th of 5 crossed 80 %: its warning follows its own entry, already stored.
    let crossing = indexes[3];
    let a = call(
        &h,
        "GET",
        &format!("/v1/audit/entries?start={crossing}&end={}", crossing + 2),
        Some(&h.admin),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let entries: Vec<Value> = a.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| serde_json::from_str(e["entry"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[1]["type"], "quota.warning", "{entries:?}");
    assert_eq!(entries[1]["org"], org.as_str());
    assert_eq!(entries[1]["note"], "2026-12: 4 of 5 verifications");
    assert_eq!(audit_of(&h, "quota.warning").await.len(), 1);
}

#[tokio::test]
async fn two_replicas_on_one_store_admit_exactly_the_quota() {
    let clock = Arc::new(ManualClock::at(DEC_31_23H_MS - 86_400_000));
    let cfg = Config {
        plans: plans(&["free=40"]),
        clock: clock.clone(),
        ..config()
    };
    let h = start_with_config(cfg.clone()).await;
    let (org, owner) = org(&h, "twins").await;
    let (_, key) = receiver(&h, &org, &owner, "api.twins.example").await;
    let other = Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        cfg,
        Arc::clone(&h.state.store),
    )
    .await
    .unwrap();
    let other_base = format!("http://{}", other.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(other.run(async {
        let _ = stopped.await;
    }));
    // 60 verifications at once, split over the replicas: exactly 40 admitted.
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..60 {
        let base = if i % 2 == 0 {
            h.base.clone()
        } else {
            other_base.clone()
        };
        let (http, key) = (h.http.clone(), key.clone());
        calls.spawn(async move { verify_at(&base, &http, Some(&key)).await.status });
    }
    let (mut ok, mut refused) = (0, 0);
    while let Some(st) = calls.join_next().await {
        match st.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            other => panic!("{other}"),
        }
    }
    assert_eq!((ok, refused), (40, 20));
    assert_eq!(audit_of(&h, "quota.warning").await.len(), 1);
    let u = call(&h, "GET", "/v1/usage", Some(&key), None).await;
    assert_eq!(u.body["quota"]["used"], 40, "{}", u.body);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_admin_assigns_plans_and_a_smaller_plan_applies_at_once() {
    let clock = Arc::new(ManualClock::at(DEC_31_23H_MS - 86_400_000));
    let h = server(plans(&["pro=100", "tiny=2"]), clock).await;
    let (org, owner) = org(&h, "planned").await;
    let (_, key) = receiver(&h, &org, &owner, "api.planned.example").await;
    let path = format!("/v1/admin/orgs/{org}/plan");

    let a = call(&h, "GET", &path, Some(&h.admin), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        (&a.body["plan"], &a.body["limit"]),
        (&json!("free"), &json!(10_000))
    );
    assert_eq!(
        a.body["plans"],
        json!({"free": 10000, "pro": 100, "tiny": 2})
    );
    for (bearer, body, want) in [
        (
            Some(h.admin.as_str()),
            json!({"plan": "gold"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Some(h.admin.as_str()),
            json!({"plan": "pro", "x": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Some(key.as_str()),
            json!({"plan": "pro"}),
            StatusCode::FORBIDDEN,
        ),
        (
            Some(owner.as_str()),
            json!({"plan": "pro"}),
            StatusCode::FORBIDDEN,
        ),
        (None, json!({"plan": "pro"}), StatusCode::UNAUTHORIZED),
    ] {
        let a = call(&h, "PUT", &path, bearer, Some(body.clone())).await;
        assert_eq!(a.status, want, "{body}: {}", a.body);
    }
    let a = call(
        &h,
        "PUT",
        "/v1/admin/orgs/org_00000000000000000000000000000000/plan",
        Some(&h.admin),
        Some(json!({"plan": "pro"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);

    for _ in 0..3 {
        assert_eq!(verify(&h, Some(&key)).await.status, StatusCode::OK);
    }
    let a = call(
        &h,
        "PUT",
        &path,
        Some(&h.admin),
        Some(json!({"plan": "tiny"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        (&a.body["plan"], &a.body["limit"]),
        (&json!("tiny"), &json!(2))
    );
    // 3 already counted this month: refused at once.
    let a = verify(&h, Some(&key)).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    assert_eq!(a.body["error"]["code"], "QUOTA_EXCEEDED");
    let a = call(
        &h,
        "PUT",
        &path,
        Some(&h.admin),
        Some(json!({"plan": "pro"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(verify(&h, Some(&key)).await.status, StatusCode::OK);
    // Back to the default: stored as no assignment.
    let a = call(
        &h,
        "PUT",
        &path,
        Some(&h.admin),
        Some(json!({"plan": null})),
    )
    .await;
    assert_eq!(
        (&a.body["plan"], &a.body["limit"]),
        (&json!("free"), &json!(10_000))
    );
    let notes: Vec<Value> = audit_of(&h, "org.updated")
        .await
        .into_iter()
        .map(|e| e["note"].clone())
        .collect();
    assert_eq!(
        notes,
        [json!("plan=tiny"), json!("plan=pro"), json!("plan=free")]
    );
}

#[tokio::test]
async fn usage_counts_by_day_endpoint_and_key_for_the_organisation_only() {
    let clock = Arc::new(ManualClock::at(DEC_31_23H_MS - 86_400_000));
    let h = server(Plans::seeds(), clock.clone()).await;
    let (org, owner) = org(&h, "metered").await;
    let (rcv, key) = receiver(&h, &org, &owner, "api.metered.example").await;
    let (other_org, _) = org_named(&h, "elsewhere").await;
    let first = login(&h, "owner@elsewhere.example").await;
    let (_, other_key) = receiver(&h, &other_org, &first, "api.elsewhere.example").await;

    for _ in 0..3 {
        assert_eq!(verify(&h, Some(&key)).await.status, StatusCode::OK);
    }
    let a = send(
        h.http
            .get(format!("{}/v1/verify/not.a.token", h.base))
            .bearer_auth(&key),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    clock.advance(Duration::from_secs(86_400));
    // A day later: logged in again (access tokens last 15 minutes).
    let owner = login(&h, "owner@metered.example").await;
    let other_owner = login(&h, "owner@elsewhere.example").await;
    assert_eq!(verify(&h, Some(&key)).await.status, StatusCode::OK);
    assert_eq!(verify(&h, Some(&other_key)).await.status, StatusCode::OK);
    assert_eq!(verify(&h, None).await.status, StatusCode::OK);

    // The organisation's own key: its organisation, this month by default.
    let u = call(
        &h,
        "GET",
        "/v1/usage?from=2026-12-30&to=2026-12-31",
        Some(&key),
        None,
    )
    .await;
    assert_eq!(u.status, StatusCode::OK, "{}", u.body);
    // Named by the key's public id, as `GET /v1/api-keys` lists it.
    let me = bonafide_core::apikey::ApiKey::parse(&key)
        .unwrap()
        .hash()
        .public_id();
    assert!(!u.body.to_string().contains(&format!("receiver:{rcv}")));
    assert_eq!(u.body["org_id"], org.as_str());
    assert_eq!(u.body["total"], 5, "{}", u.body);
    assert_eq!(u.body["by_day"], json!({"2026-12-30": 4, "2026-12-31": 1}));
    assert_eq!(
        u.body["by_endpoint"],
        json!({"/v1/verify": 4, "/v1/verify/{*token}": 1})
    );
    assert_eq!(u.body["by_key"], json!({ me.clone(): 5 }));
    assert_eq!(u.body["rows"].as_array().unwrap().len(), 3);
    assert!(!u.body.to_string().contains("sha256"));
    // Flushed to the store and read back the same (what another replica would see).
    h.state
        .quotas
        .flush_usage(h.state.store.as_ref())
        .await
        .unwrap();
    let all = call(
        &h,
        "GET",
        &format!("/v1/usage?org={org}&from=2026-12-01&to=2027-01-31"),
        Some(&owner),
        None,
    )
    .await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    // The usage reads themselves are counted too (the organisation's key on /v1/usage).
    assert_eq!(all.body["by_day"]["2026-12-31"], 2, "{}", all.body);
    assert_eq!(all.body["by_endpoint"]["/v1/verify"], 4);
    assert_eq!(all.body["by_endpoint"]["/v1/usage"], 1);
    assert_eq!(all.body["quota"]["used"], 5);

    // Who may read: the organisation's admins and owners, its keys, the registry admin.
    let viewer = invite(&h, &org, &owner, "viewer@metered.example", "viewer").await;
    let admin = invite(&h, &org, &owner, "admin@metered.example", "admin").await;
    for (bearer, path, want) in [
        (
            admin.as_str(),
            format!("/v1/usage?org={org}"),
            StatusCode::OK,
        ),
        (
            viewer.as_str(),
            format!("/v1/usage?org={org}"),
            StatusCode::FORBIDDEN,
        ),
        (
            other_owner.as_str(),
            format!("/v1/usage?org={org}"),
            StatusCode::NOT_FOUND,
        ),
        (
            other_key.as_str(),
            format!("/v1/usage?org={org}"),
            StatusCode::NOT_FOUND,
        ),
        (
            h.admin.as_str(),
            format!("/v1/usage?org={org}"),
            StatusCode::OK,
        ),
        (
            h.admin.as_str(),
            "/v1/usage".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            owner.as_str(),
            "/v1/usage".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            key.as_str(),
            "/v1/usage?from=2026-12-31&to=2026-12-01".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            key.as_str(),
            "/v1/usage?from=2026-1-01".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            key.as_str(),
            "/v1/usage?from=2026-02-30".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            key.as_str(),
            "/v1/usage?from=2025-01-01&to=2026-12-31".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            key.as_str(),
            "/v1/usage?nope=1".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let a = call(&h, "GET", &path, Some(bearer), None).await;
        assert_eq!(a.status, want, "{path}: {}", a.body);
    }
    let a = call(&h, "GET", "/v1/usage", None, None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
}

async fn org_named(h: &Harness, name: &str) -> (String, String) {
    org(h, name).await
}

async fn invite(h: &Harness, org: &str, by: &str, email: &str, role: &str) -> String {
    let a = call(
        h,
        "POST",
        &format!("/v1/orgs/{org}/invitations"),
        Some(by),
        Some(json!({"email": email, "role": role})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let token = a.body["token"].as_str().unwrap().to_owned();
    let a = call(
        h,
        "POST",
        "/v1/invitations/accept",
        None,
        Some(json!({"token": token, "password": PASSWORD})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    login(h, email).await
}

#[tokio::test]
async fn a_persons_requests_are_charged_to_their_own_bucket_whatever_key_rides_along() {
    let clock = Arc::new(ManualClock::now());
    let mut limits = RateLimits::seeds();
    limits.apply("person=4/min").unwrap();
    let h = start_with_config(Config {
        rate_limits: limits,
        clock: clock.clone(),
        ..config()
    })
    .await;
    let (org, owner) = org(&h, "limited").await;
    // One of the person's 4 a minute.
    let (_, key) = receiver(&h, &org, &owner, "api.limited.example").await;
    // Authentication takes the person's token over `X-API-Key`: so does the limiter.
    let mut seen = Vec::new();
    for _ in 0..4 {
        let a = send(
            h.http
                .get(format!("{}/v1/orgs/{org}", h.base))
                .bearer_auth(&owner)
                .header("x-api-key", &key),
        )
        .await;
        seen.push((a.status, a.headers.get("ratelimit-policy").cloned()));
    }
    for (st, policy) in &seen[..3] {
        assert_eq!(*st, StatusCode::OK);
        assert_eq!(policy.as_ref().unwrap(), "\"person\";q=4;w=60");
    }
    assert_eq!(seen[3].0, StatusCode::TOO_MANY_REQUESTS);
    // The key's own bucket was never charged; the person's refills with time.
    let a = verify(&h, Some(&key)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["ratelimit-policy"], "\"receiver\";q=5000;w=60");
    clock.advance(Duration::from_secs(60));
    let a = call(&h, "GET", &format!("/v1/orgs/{org}"), Some(&owner), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    // A forged access token is charged to the address, not to a person.
    let a = call(
        &h,
        "GET",
        &format!("/v1/orgs/{org}"),
        Some("e30.e30.sig"),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(
        a.headers["ratelimit-policy"]
            .to_str()
            .unwrap()
            .starts_with("\"ip\"")
    );
}

#[tokio::test]
async fn without_a_peer_address_calls_without_a_credential_share_one_bucket() {
    use tower::ServiceExt;
    let mut limits = RateLimits::seeds();
    limits.apply("ip=2/min").unwrap();
    let h = start_with_config(Config {
        rate_limits: limits,
        clock: Arc::new(ManualClock::now()),
        ..config()
    })
    .await;
    // The router embedded without `serve`'s listener: no peer address on requests.
    let app = bonafide_server::router(Arc::clone(&h.state));
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let req = axum::http::Request::get("/v1/scopes")
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        if resp.status() == StatusCode::OK {
            assert_eq!(resp.headers()["ratelimit-policy"], "\"ip\";q=2;w=60");
        }
        statuses.push(resp.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // Through the listener a caller has its address's own bucket.
    let a = call(&h, "GET", "/v1/scopes", None, None).await;
    assert_eq!(a.status, StatusCode::OK);
}

/// An access token issued for an organisation's receiver key (`/v1/oauth/token`) is
/// worth what the key is: its verifies count against the organisation's quota and
/// usage under that key, and it reads the organisation's usage.
#[tokio::test]
async fn a_keys_access_token_counts_and_reads_usage_as_its_key() {
    let clock = Arc::new(ManualClock::at(DEC_31_23H_MS - 86_400_000));
    let h = server(Plans::seeds(), clock).await;
    let (org, owner) = org(&h, "tokened").await;
    let (rcv, key) = receiver(&h, &org, &owner, "api.tokened.example").await;
    let key_id = bonafide_core::apikey::ApiKey::parse(&key)
        .unwrap()
        .hash()
        .public_id();
    let t = send(h.http.post(format!("{}/v1/oauth/token", h.base)).form(&[
        ("grant_type", "client_credentials"),
        ("client_id", key_id.as_str()),
        ("client_secret", key.as_str()),
    ]))
    .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    let token = t.body["access_token"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        assert_eq!(verify(&h, Some(&token)).await.status, StatusCode::OK);
    }
    let u = call(&h, "GET", "/v1/usage", Some(&token), None).await;
    assert_eq!(u.status, StatusCode::OK, "{}", u.body);
    assert_eq!(u.body["org_id"], org.as_str());
    assert_eq!(u.body["by_key"][&key_id], 2, "{}", u.body);
    assert!(!u.body.to_string().contains(&rcv));
    assert_eq!(u.body["quota"]["used"], 2, "{}", u.body);
}

/// A verification of a real token is counted in the transaction that records its
/// decision: admitted ones with their entry, an idempotent replay not again (the
/// same answer), and one over the limit refused with nothing written.
#[tokio::test]
async fn a_decision_is_counted_with_its_entry_and_a_refused_one_writes_nothing() {
    let clock = Arc::new(ManualClock::at(DEC_31_23H_MS));
    let h = server(plans(&["free=4"]), clock.clone()).await;
    let (org, owner) = org(&h, "decide").await;
    let (_, key) = receiver(&h, &org, &owner, "api.decide.example").await;
    let issuer = h.issuer("decide-agents").await;
    let reg = h
        .register(&issuer, json!({"name": "Payer", "scopes": ["read:data"]}))
        .await;
    let token = reg["token"].as_str().unwrap().to_owned();
    let body = json!({"token": token, "idempotency_key": "once"});
    let a = call(&h, "POST", "/v1/verify", Some(&key), Some(body.clone())).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["valid"], true, "{}", a.body);
    assert!(a.body["audit_index"].is_u64(), "{}", a.body);
    assert_eq!(used(&h, &key).await, 1);
    // The same request again: the first answer, not another verification.
    let again = call(&h, "POST", "/v1/verify", Some(&key), Some(body)).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(used(&h, &key).await, 1);
    // GET verify of a token that concerns an agent: counted with its entry.
    let g = send(
        h.http
            .get(format!("{}/v1/verify/{token}", h.base))
            .bearer_auth(&key),
    )
    .await;
    assert_eq!(g.status, StatusCode::OK, "{}", g.body);
    assert_eq!(g.body["valid"], true, "{}", g.body);
    // A simulation answers what a verify would: it counts as one.
    let sim = call(
        &h,
        "POST",
        "/v1/simulate",
        Some(&key),
        Some(json!({"token": token})),
    )
    .await;
    assert_eq!(sim.status, StatusCode::OK, "{}", sim.body);
    assert_eq!(used(&h, &key).await, 3);
    let last = call(
        &h,
        "POST",
        "/v1/verify",
        Some(&key),
        Some(json!({"token": token})),
    )
    .await;
    assert_eq!(last.status, StatusCode::OK, "{}", last.body);
    assert_eq!(
        last.headers["bonafide-quota-warning"],
        "4/4; reset=2027-01-01T00:00:00.000Z"
    );
    assert_eq!(used(&h, &key).await, 4);
    // The month's one warning is written by the audit log's committer, in the batch
    // after the decision's (so a request gone meanwhile cannot lose it).
    let mut warnings = Vec::new();
    for _ in 0..100 {
        warnings = audit_of(&h, "quota.warning").await;
        if !warnings.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["org"], org.as_str());
    // Over the limit: 429, and the log has no entry for it.
    let size = h.state.store.audit_size().await.unwrap();
    let over = call(
        &h,
        "POST",
        "/v1/verify",
        Some(&key),
        Some(json!({"token": token})),
    )
    .await;
    assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS, "{}", over.body);
    assert_eq!(over.body["error"]["code"], "QUOTA_EXCEEDED");
    assert_eq!(h.state.store.audit_size().await.unwrap(), size);
    assert_eq!(used(&h, &key).await, 4);
}

/// This month's count, as `GET /v1/usage` reads it.
async fn used(h: &Harness, key: &str) -> u64 {
    let u = call(h, "GET", "/v1/usage", Some(key), None).await;
    assert_eq!(u.status, StatusCode::OK, "{}", u.body);
    u.body["quota"]["used"].as_u64().unwrap()
}

/// AIM's SDK verifications count as the native verify-action does, refused ones
/// (a bad signature: 401) too: a used-up month is a 429 before any of them.
#[tokio::test]
async fn aim_sdk_verifications_count_whatever_their_signature() {
    use crate::compat_aim_sdk::{AgentKey, agent_with};
    // The SDK signs at the real time: the registry's clock must agree.
    let clock = Arc::new(ManualClock::at(crate::common::now_s() * 1000));
    let h = server(plans(&["free=2"]), clock.clone()).await;
    let (org, owner) = org(&h, "aimed").await;
    let (_, key) = receiver(&h, &org, &owner, "api.aimed.example").await;
    let issuer = h.issuer("aimed-agents").await;
    let agent_key = AgentKey::new();
    let agent = agent_with(&h, &issuer, &agent_key, &["orders:read"]).await;
    let verify = |body: Value| {
        h.http
            .post(format!("{}/api/v1/sdk-api/verifications", h.base))
            .bearer_auth(&key)
            .json(&body)
    };
    let good = agent_key.verification(&agent, "orders:read", Value::Null, json!({}));
    let a = send(verify(good)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    // Signed by a key the agent never registered: refused, and counted.
    let forged = AgentKey::new().verification(&agent, "orders:read", Value::Null, json!({}));
    let a = send(verify(forged.clone())).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert_eq!(used(&h, &key).await, 2);
    let a = send(verify(forged)).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    assert_eq!(used(&h, &key).await, 2);
}

/// An organisation's issuer key verifying is the organisation's verification too:
/// counted against its quota like its receivers' (not a way around it).
#[tokio::test]
async fn an_organisations_issuer_keys_verify_within_its_quota() {
    let clock = Arc::new(ManualClock::at(DEC_31_23H_MS));
    let h = server(plans(&["free=2"]), clock.clone()).await;
    let (org, owner) = org(&h, "issuing").await;
    let a = call(
        &h,
        "POST",
        &format!("/v1/orgs/{org}/issuers"),
        Some(&owner),
        Some(json!({"name": "issuing-agents"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let key = a.body["api_key"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        assert_eq!(verify(&h, Some(&key)).await.status, StatusCode::OK);
    }
    let over = verify(&h, Some(&key)).await;
    assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS, "{}", over.body);
    assert_eq!(over.body["error"]["code"], "QUOTA_EXCEEDED");
}
