//! Rate limits over HTTP (issue 18 item 4): per client address without a key, per API
//! key (by kind, or an admin's setting for the key), per token issuer for anonymous
//! verifies (native and AgentOAuth's hosted-verifier paths), the IETF draft's
//! `RateLimit` / `RateLimit-Policy` fields and `Retry-After`, trusted proxies, and two
//! replicas sharing one store's buckets. The clock is a manual one: buckets refill only
//! when the test moves it, so every count is exact.

use std::sync::Arc;
use std::time::Duration;

use bonafide_core::apikey::ApiKey;
use bonafide_server::ratelimit::{Cidr, RateLimits};
use bonafide_server::time::ManualClock;
use bonafide_server::{Config, Server};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Harness, config, start_with_config};

fn limits(assignments: &[&str]) -> RateLimits {
    let mut l = RateLimits::seeds();
    for a in assignments {
        l.apply(a).unwrap();
    }
    l
}

async fn limited(assignments: &[&str], proxies: &[&str]) -> (Harness, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::now());
    let h = start_with_config(Config {
        rate_limits: limits(assignments),
        trusted_proxies: proxies.iter().map(|p| Cidr::parse(p).unwrap()).collect(),
        clock: clock.clone(),
        ..config()
    })
    .await;
    (h, clock)
}

struct Answer {
    status: StatusCode,
    body: Value,
    policy: Option<String>,
    current: Option<String>,
    retry_after: Option<String>,
}

async fn send(h: &Harness, req: reqwest::RequestBuilder) -> Answer {
    let _ = h;
    let resp = req.send().await.unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (policy, current, retry_after) = (
        header("ratelimit-policy"),
        header("ratelimit"),
        header("retry-after"),
    );
    let status = resp.status();
    let text = resp.text().await.unwrap();
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        policy,
        current,
        retry_after,
    }
}

async fn get(h: &Harness, path: &str, key: Option<&str>) -> Answer {
    let mut req = h.http.get(format!("{}{path}", h.base));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    send(h, req).await
}

fn assert_refused(a: &Answer, policy: &str, retry_after: u64) {
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    assert_eq!(a.body["error"]["code"], "RATE_LIMITED", "{}", a.body);
    assert_eq!(
        a.retry_after.as_deref(),
        Some(retry_after.to_string().as_str())
    );
    let current = a.current.as_deref().unwrap();
    assert!(current.contains(&format!("\"{policy}\";r=0;")), "{current}");
}

#[tokio::test]
async fn calls_without_a_key_are_limited_per_address_with_the_drafts_fields() {
    let (h, clock) = limited(&["ip=3/min"], &[]).await;
    for remaining in [2, 1, 0] {
        let a = get(&h, "/v1/scopes", None).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(a.policy.as_deref(), Some("\"ip\";q=3;w=60"));
        // Remaining requests, and seconds until the bucket is full again.
        let full_in = (3 - remaining) * 20;
        assert_eq!(
            a.current.as_deref(),
            Some(format!("\"ip\";r={remaining};t={full_in}").as_str())
        );
        assert_eq!(a.retry_after, None);
    }
    // Over the limit: one request refills in 60/3 = 20 s.
    let a = get(&h, "/v1/scopes", None).await;
    assert_refused(&a, "ip", 20);
    assert_eq!(a.policy.as_deref(), Some("\"ip\";q=3;w=60"));
    assert_eq!(a.current.as_deref(), Some("\"ip\";r=0;t=60"));
    // Any route, and an unknown path, counts against the same address.
    assert_refused(&get(&h, "/.well-known/jwks.json", None).await, "ip", 20);
    // A key this registry does not know counts against the address too: making keys
    // up does not escape the limit.
    let made_up = ApiKey::from_random(
        bonafide_core::apikey::KeyKind::Issuer,
        crate::common::rand20(),
    );
    assert_refused(
        &get(&h, "/v1/issuer", Some(made_up.expose_secret())).await,
        "ip",
        20,
    );
    // Health checks are never limited and carry no fields.
    for _ in 0..5 {
        let a = get(&h, "/healthz", None).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.policy, None);
    }
    clock.advance(Duration::from_secs(19));
    assert_refused(&get(&h, "/v1/scopes", None).await, "ip", 1);
    clock.advance(Duration::from_secs(1));
    let a = get(&h, "/v1/scopes", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_refused(&get(&h, "/v1/scopes", None).await, "ip", 20);
    // The refusals are counted by policy (the admin key has its own bucket), and
    // nothing of them reached the audit log.
    let (st, text) = metrics(&h).await;
    assert_eq!(st, StatusCode::OK, "{text}");
    let refused = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("bonafide_rate_limit_refusals_total{policy=\"ip\"} ")?
                .parse::<f64>()
                .ok()
        })
        .unwrap();
    assert_eq!(refused, 5.0, "{text}");
    let logged: Vec<Value> = audit_entries(&h)
        .await
        .into_iter()
        .filter(|e| e["type"] == "rate_limit.set")
        .collect();
    assert_eq!(
        logged.len(),
        1,
        "only the limits it started with: {logged:?}"
    );
    assert_eq!(logged[0]["target"], "defaults");
}

/// Every audit entry, parsed.
pub async fn audit_entries(h: &Harness) -> Vec<Value> {
    let size = h.state.store.audit_size().await.unwrap();
    let (st, v) = h
        .call(
            "GET",
            &format!("/v1/audit/entries?start=0&end={size}"),
            Some(&h.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| serde_json::from_str(e["entry"].as_str().unwrap()).unwrap())
        .collect()
}

async fn metrics(h: &Harness) -> (StatusCode, String) {
    let resp = h
        .http
        .get(format!("{}/metrics", h.base))
        .bearer_auth(&h.admin)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.text().await.unwrap())
}

#[tokio::test]
async fn keys_are_limited_by_kind_or_by_an_admins_setting_for_the_key() {
    let (h, clock) = limited(&["issuer=2/min", "ip=1/min"], &[]).await;
    let issuer = h.issuer_full("limits.example").await;
    for remaining in [1, 0] {
        let a = get(&h, "/v1/issuer", Some(&issuer.key)).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(a.policy.as_deref(), Some("\"issuer\";q=2;w=60"));
        assert!(
            a.current
                .as_deref()
                .unwrap()
                .starts_with(&format!("\"issuer\";r={remaining};")),
            "{:?}",
            a.current
        );
    }
    assert_refused(
        &get(&h, "/v1/issuer", Some(&issuer.key)).await,
        "issuer",
        30,
    );
    // Another issuer's key, and the admin's, have buckets of their own.
    let other = h.issuer("other-limits.example").await;
    assert_eq!(
        get(&h, "/v1/issuer", Some(&other)).await.status,
        StatusCode::OK
    );
    // The admin gives this key a limit of its own, by the key's id.
    let id = ApiKey::parse(&issuer.key).unwrap().hash().key_id();
    let (st, v) = h
        .call(
            "PUT",
            &format!("/v1/admin/rate-limits/keys/{id}"),
            Some(&h.admin),
            Some(json!({"limit": "5/min"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["key_id"], id.as_str());
    assert_eq!(v["limit"], "5/60s");
    let (st, v) = h
        .call("GET", "/v1/admin/rate-limits", Some(&h.admin), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["enabled"], true);
    assert_eq!(v["defaults"]["issuer"], "2/60s");
    assert_eq!(v["defaults"]["ip"], "1/60s");
    assert_eq!(v["keys"][0]["key_id"], id.as_str());
    assert_eq!(v["keys"][0]["limit"], "5/60s");
    // The bucket is empty: it refills at the key's new rate, 5 a minute.
    clock.advance(Duration::from_secs(60));
    for _ in 0..5 {
        let a = get(&h, "/v1/issuer", Some(&issuer.key)).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(a.policy.as_deref(), Some("\"issuer\";q=5;w=60"));
    }
    assert_refused(
        &get(&h, "/v1/issuer", Some(&issuer.key)).await,
        "issuer",
        12,
    );
    // Cleared: the kind's default again; clearing twice is a 404.
    let (st, v) = h
        .call(
            "DELETE",
            &format!("/v1/admin/rate-limits/keys/{id}"),
            Some(&h.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["cleared"], true);
    let (st, v) = h
        .call(
            "DELETE",
            &format!("/v1/admin/rate-limits/keys/{id}"),
            Some(&h.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    clock.advance(Duration::from_secs(60));
    let a = get(&h, "/v1/issuer", Some(&issuer.key)).await;
    assert_eq!(a.policy.as_deref(), Some("\"issuer\";q=2;w=60"));
    // Both changes are audit entries, by the admin; the limits it started with, by the
    // registry.
    let registry = serde_json::to_value(bonafide_core::audit::Actor::Registry)
        .unwrap()
        .to_string();
    let admin = serde_json::to_value(bonafide_core::audit::Actor::Admin)
        .unwrap()
        .to_string();
    let entries = audit_entries(&h).await;
    let notes: Vec<(String, &str)> = entries
        .iter()
        .filter(|e| e["type"] == "rate_limit.set")
        .map(|e| (e["actor"].to_string(), e["note"].as_str().unwrap_or("-")))
        .collect();
    assert_eq!(
        notes,
        [
            (
                registry.clone(),
                "admin=5000/60s,issuer=2/60s,receiver=5000/60s,person=1000/60s,ip=1/60s,iss=1000/60s,allocations=1000/60s,playground=100/3600s; trusted proxies: none"
            ),
            (admin.clone(), "5/60s"),
            (admin.clone(), "cleared"),
        ],
        "{entries:?}"
    );
}

#[tokio::test]
async fn setting_a_keys_limit_refuses_bad_input_and_other_callers() {
    let (h, _clock) = limited(&[], &[]).await;
    let issuer = h.issuer("setter.example").await;
    let path = "/v1/admin/rate-limits/keys/sha256:0123456789abcdef";
    for (key, body, want) in [
        (
            Some(h.admin.as_str()),
            json!({"limit": "0/min"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Some(h.admin.as_str()),
            json!({"limit": "10/week"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Some(h.admin.as_str()),
            json!({"limit": "10/min", "x": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Some(h.admin.as_str()),
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Some(issuer.as_str()),
            json!({"limit": "10/min"}),
            StatusCode::FORBIDDEN,
        ),
        (None, json!({"limit": "10/min"}), StatusCode::UNAUTHORIZED),
    ] {
        let (st, v) = h.call("PUT", path, key, Some(body.clone())).await;
        assert_eq!(st, want, "{body}: {v}");
    }
    for bad in ["sha256:0123", "sha256:0123456789ABCDEF", "bfk_x", "x"] {
        let (st, v) = h
            .call(
                "PUT",
                &format!("/v1/admin/rate-limits/keys/{bad}"),
                Some(&h.admin),
                Some(json!({"limit": "10/min"})),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("sha256:"),
            "{v}"
        );
    }
    let (st, v) = h
        .call("GET", "/v1/admin/rate-limits", Some(&issuer), None)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
}

async fn agent_token(h: &Harness, issuer_key: &str, name: &str) -> String {
    let reg = h
        .register(issuer_key, json!({"name": name, "scopes": ["read:x"]}))
        .await;
    reg["token"].as_str().unwrap().to_owned()
}

async fn verify(h: &Harness, token: &str, key: Option<&str>) -> Answer {
    let mut req = h
        .http
        .post(format!("{}/v1/verify", h.base))
        .json(&json!({"token": token}));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    send(h, req).await
}

#[tokio::test]
async fn anonymous_verifies_are_limited_per_token_issuer_as_well_as_per_address() {
    let (h, clock) = limited(&["iss=2/min", "ip=50/min"], &[]).await;
    let a_key = h.issuer("issuer-a.example").await;
    let b_key = h.issuer("issuer-b.example").await;
    let a1 = agent_token(&h, &a_key, "A1").await;
    let a2 = agent_token(&h, &a_key, "A2").await;
    let b1 = agent_token(&h, &b_key, "B1").await;
    // Two of issuer A's tokens share A's bucket; both limits are reported.
    for (token, remaining) in [(&a1, 1), (&a2, 0)] {
        let v = verify(&h, token, None).await;
        assert_eq!(v.status, StatusCode::OK, "{}", v.body);
        assert_eq!(v.body["valid"], true, "{}", v.body);
        assert_eq!(
            v.policy.as_deref(),
            Some("\"ip\";q=50;w=60, \"iss\";q=2;w=60")
        );
        assert!(
            v.current
                .as_deref()
                .unwrap()
                .contains(&format!("\"iss\";r={remaining};")),
            "{:?}",
            v.current
        );
    }
    let v = verify(&h, &a1, None).await;
    assert_refused(&v, "iss", 30);
    // The same through GET, and through AgentOAuth's hosted verifier (its own error
    // shape, the same status and fields).
    let v = get(&h, &format!("/v1/verify/{a2}"), None).await;
    assert_refused(&v, "iss", 30);
    let v = send(
        &h,
        h.http
            .post(format!("{}/compat/agentoauth/verify", h.base))
            .json(&json!({"token": a1})),
    )
    .await;
    assert_eq!(v.status, StatusCode::TOO_MANY_REQUESTS, "{}", v.body);
    assert_eq!(v.retry_after.as_deref(), Some("30"));
    assert!(v.current.as_deref().unwrap().contains("\"iss\";r=0;"));
    // Issuer B's tokens are not A's.
    let v = verify(&h, &b1, None).await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.body);
    // A forged token (its signature does not check out) counts against no issuer:
    // nobody can use up an issuer's bucket with tokens claiming it.
    let mut forged = a1.clone();
    forged.pop();
    forged.push(if a1.ends_with('A') { 'B' } else { 'A' });
    let v = verify(&h, &forged, None).await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.body);
    assert_eq!(v.body["valid"], false);
    assert_eq!(v.policy.as_deref(), Some("\"ip\";q=50;w=60"));
    // A receiver verifying with its key is limited by its key, not by the issuer.
    let (st, r) = h
        .call(
            "POST",
            "/v1/receivers",
            Some(&h.admin),
            Some(json!({"name": "api.shop.example"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let receiver = r["api_key"].as_str().unwrap();
    let v = verify(&h, &a1, Some(receiver)).await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.body);
    assert_eq!(v.policy.as_deref(), Some("\"receiver\";q=5000;w=60"));
    clock.advance(Duration::from_secs(30));
    assert_eq!(verify(&h, &a1, None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn x_forwarded_for_counts_only_from_a_trusted_proxy() {
    // No trusted proxy: the header is the client's own word and changes nothing.
    let (h, _clock) = limited(&["ip=2/min"], &[]).await;
    for (i, xff) in ["1.1.1.1", "2.2.2.2", "3.3.3.3"].iter().enumerate() {
        let a = send(
            &h,
            h.http
                .get(format!("{}/v1/scopes", h.base))
                .header("x-forwarded-for", *xff),
        )
        .await;
        if i < 2 {
            assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        } else {
            assert_refused(&a, "ip", 30);
        }
    }
    // Loopback trusted: the right-most address that is not a trusted proxy is the
    // client, so each forwarded client has its own bucket.
    let (h, _clock) = limited(&["ip=2/min"], &["127.0.0.0/8", "10.0.0.0/8"]).await;
    let with = |xff: &'static str| {
        h.http
            .get(format!("{}/v1/scopes", h.base))
            .header("x-forwarded-for", xff)
    };
    for _ in 0..2 {
        assert_eq!(
            send(&h, with("9.9.9.9, 1.1.1.1, 10.0.0.7")).await.status,
            StatusCode::OK
        );
    }
    assert_refused(&send(&h, with("8.8.8.8, 1.1.1.1")).await, "ip", 30);
    assert_eq!(send(&h, with("2.2.2.2")).await.status, StatusCode::OK);
    // The proxy's own address (no header) is a client of its own.
    assert_eq!(get(&h, "/v1/scopes", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn replicas_share_one_bucket_through_the_store_within_a_lease() {
    let clock = Arc::new(ManualClock::now());
    let cfg = Config {
        rate_limits: limits(&["ip=200/min"]),
        clock: clock.clone(),
        ..config()
    };
    let h = start_with_config(cfg.clone()).await;
    // A second registry process on the same store (as a replica on one database).
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
    let mut allowed = [0u32; 2];
    let mut refused_in_a_row = 0;
    for i in 0..1000 {
        let base = if i % 2 == 0 { &h.base } else { &other_base };
        let st = h
            .http
            .get(format!("{base}/v1/scopes"))
            .send()
            .await
            .unwrap()
            .status();
        match st {
            StatusCode::OK => {
                allowed[i % 2] += 1;
                refused_in_a_row = 0;
            }
            StatusCode::TOO_MANY_REQUESTS => {
                refused_in_a_row += 1;
                if refused_in_a_row == 4 {
                    break;
                }
            }
            other => panic!("{other}"),
        }
    }
    let total = allowed[0] + allowed[1];
    // The shared bucket holds 200; each replica may hold back at most one lease
    // (1/20 of the quota, 10) unused: never more than the bucket, at most a lease
    // per replica fewer.
    assert!(
        (180..=200).contains(&total),
        "{allowed:?} allowed of a shared 200"
    );
    assert!(allowed[0] > 50 && allowed[1] > 50, "{allowed:?}");
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn concurrent_requests_take_one_lease_at_a_time_and_never_more_than_the_bucket() {
    let (h, _clock) = limited(&["ip=40/min"], &[]).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..120 {
        let http = h.http.clone();
        let url = format!("{}/v1/scopes", h.base);
        tasks.spawn(async move { http.get(url).send().await.unwrap().status() });
    }
    let mut allowed = 0;
    while let Some(st) = tasks.join_next().await {
        match st.unwrap() {
            StatusCode::OK => allowed += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("{other}"),
        }
    }
    // One replica, a frozen clock: exactly the bucket, however the requests raced.
    assert_eq!(allowed, 40);
}

/// A new key's limit is decided from the store, in the transaction that stores it: the
/// slowest of the rotated key's and the rotating key's effective limits (no setting:
/// the kind's default). A key at the default that rotates a key the admin raised gets
/// a key at the default, not a way to the raised limit; a raised key makes keys at the
/// kind's default; a rotation by a key that is not slower keeps the raised limit.
#[tokio::test]
async fn a_raised_limit_is_not_handed_on_by_a_key_at_the_default() {
    let h = start_with_config(Config {
        rate_limits: limits(&["issuer=100/min"]),
        ..config()
    })
    .await;
    let first = h.issuer("raised.example").await;
    let create = |by: String, name: &'static str| {
        let h = &h;
        async move {
            let (st, v) = h
                .call(
                    "POST",
                    "/v1/api-keys",
                    Some(&by),
                    Some(json!({"name": name})),
                )
                .await;
            assert_eq!(st, StatusCode::CREATED, "{v}");
            v["secret"].as_str().unwrap().to_owned()
        }
    };
    let rotate = |by: String, key: String| {
        let h = &h;
        async move {
            let id = ApiKey::parse(&key).unwrap().hash().public_id();
            let (st, v) = h
                .call(
                    "POST",
                    &format!("/v1/api-keys/{id}/rotate"),
                    Some(&by),
                    Some(json!({"grace_seconds": 3600})),
                )
                .await;
            assert_eq!(st, StatusCode::CREATED, "{v}");
            v["secret"].as_str().unwrap().to_owned()
        }
    };
    let policy = |key: String| {
        let h = &h;
        async move {
            let a = get(h, "/v1/issuer", Some(&key)).await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.body);
            a.policy.unwrap_or_default()
        }
    };
    let raised = create(first.clone(), "raised").await;
    assert_eq!(policy(raised.clone()).await, "\"issuer\";q=100;w=60");
    let hash = ApiKey::parse(&raised).unwrap().hash();
    let (st, v) = h
        .call(
            "PUT",
            &format!("/v1/admin/rate-limits/keys/{}", hash.key_id()),
            Some(&h.admin),
            Some(json!({"limit": "1000/min"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(policy(raised.clone()).await, "\"issuer\";q=1000;w=60");
    // `first` (at the default 100/min) rotates the raised key: the new one is at 100.
    let next = rotate(first.clone(), raised.clone()).await;
    assert_eq!(policy(next).await, "\"issuer\";q=100;w=60");
    // The raised key makes a key: at the kind's default, not its own raised limit.
    let made = create(raised.clone(), "made").await;
    assert_eq!(policy(made).await, "\"issuer\";q=100;w=60");
    // The admin key (5,000/min) rotates it: the rotated key's raised limit is kept.
    let kept = rotate(h.admin.clone(), raised.clone()).await;
    assert_eq!(policy(kept).await, "\"issuer\";q=1000;w=60");
    // Only the raised key and the key that keeps its limit have a setting, the
    // latter recorded as inherited.
    let (st, v) = h
        .call("GET", "/v1/admin/rate-limits", Some(&h.admin), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["keys"].as_array().unwrap().len(), 2, "{v}");
    let inherited: Vec<Value> = audit_entries(&h)
        .await
        .into_iter()
        .filter(|e| {
            e["type"] == "rate_limit.set"
                && e["note"].as_str().is_some_and(|n| n.contains("inherited"))
        })
        .collect();
    assert_eq!(inherited.len(), 1, "{inherited:?}");
    assert_eq!(
        inherited[0]["note"],
        format!("1000/60s, inherited from {}", hash.public_id())
    );
}

/// An identity cannot multiply its rate limit through keys: a key whose limit the
/// admin set passes it to the keys it makes and to its rotation's new key (audited),
/// and an identity has at most `max_keys_per_identity` live keys (a rotation's grace
/// period included), beyond which creating or rotating is a clear 409.
#[tokio::test]
async fn made_and_rotated_keys_keep_their_limit_and_live_keys_per_identity_are_capped() {
    let clock = Arc::new(ManualClock::now());
    let h = start_with_config(Config {
        rate_limits: limits(&["issuer=100/min"]),
        clock: clock.clone(),
        max_keys_per_identity: Some(3),
        ..config()
    })
    .await;
    let first = h.issuer("multiply.example").await;
    let hash = ApiKey::parse(&first).unwrap().hash();
    let (st, v) = h
        .call(
            "PUT",
            &format!("/v1/admin/rate-limits/keys/{}", hash.key_id()),
            Some(&h.admin),
            Some(json!({"limit": "7/min"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // A key it makes starts at its limit, not the kind's 100/min.
    let (st, made) = h
        .call(
            "POST",
            "/v1/api-keys",
            Some(&first),
            Some(json!({"name": "k2"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{made}");
    let k2 = made["secret"].as_str().unwrap().to_owned();
    let k2_id = made["key"]["id"].as_str().unwrap().to_owned();
    let a = get(&h, "/v1/issuer", Some(&k2)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.policy.as_deref(), Some("\"issuer\";q=7;w=60"));
    // Its rotation's new key keeps it too (here with a grace period: 3 live keys).
    let (st, rotated) = h
        .call(
            "POST",
            &format!("/v1/api-keys/{}/rotate", hash.public_id()),
            Some(&first),
            Some(json!({"grace_seconds": 3600})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{rotated}");
    let next = rotated["secret"].as_str().unwrap().to_owned();
    let a = get(&h, "/v1/issuer", Some(&next)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.policy.as_deref(), Some("\"issuer\";q=7;w=60"));
    let (st, v) = h
        .call("GET", "/v1/admin/rate-limits", Some(&h.admin), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["keys"].as_array().unwrap().len(), 3, "{v}");
    let inherited = audit_entries(&h)
        .await
        .into_iter()
        .filter(|e| {
            e["type"] == "rate_limit.set"
                && e["note"].as_str().is_some_and(|n| n.contains("inherited"))
        })
        .count();
    assert_eq!(inherited, 2);
    // The cap: a fourth live key is refused, by creation or by a rotation with a
    // grace period; a rotation without one replaces a key and passes.
    clock.advance(Duration::from_secs(60));
    let (st, v) = h
        .call(
            "POST",
            "/v1/api-keys",
            Some(&next),
            Some(json!({"name": "k4"})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "CONFLICT");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max-keys-per-identity"),
        "{v}"
    );
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/api-keys/{k2_id}/rotate"),
            Some(&next),
            Some(json!({"grace_seconds": 60})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    // Nothing changed: k2 still works.
    assert_eq!(
        get(&h, "/v1/issuer", Some(&k2)).await.status,
        StatusCode::OK
    );
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/api-keys/{k2_id}/rotate"),
            Some(&next),
            Some(json!({"grace_seconds": 0})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    // Once the old key's grace period ends, its place is free.
    clock.advance(Duration::from_secs(3601));
    let (st, v) = h
        .call(
            "POST",
            "/v1/api-keys",
            Some(&next),
            Some(json!({"name": "k4"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    // Admin keys are not capped.
    for i in 0..4 {
        let (st, v) = h
            .call(
                "POST",
                "/v1/api-keys",
                Some(&h.admin),
                Some(json!({"name": format!("ops {i}")})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
}

/// A client-credentials exchange or refresh names its key in the body, not the
/// headers: it spends that key's own bucket (each writes an audit entry), not only the
/// caller's address.
#[tokio::test]
async fn a_keys_token_exchanges_spend_its_own_bucket() {
    let (h, _clock) = limited(&["issuer=2/min", "ip=100/min"], &[]).await;
    let key = h.issuer("exchange-limits.example").await;
    let id = ApiKey::parse(&key).unwrap().hash().public_id();
    let exchange = || {
        h.http.post(format!("{}/v1/oauth/token", h.base)).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id.as_str()),
            ("client_secret", key.as_str()),
        ])
    };
    let a = send(&h, exchange()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    // A refresh spends the key's bucket too (each writes an audit entry).
    let refresh = a.body["refresh_token"].as_str().unwrap().to_owned();
    let a = send(
        &h,
        h.http.post(format!("{}/v1/oauth/token", h.base)).form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("client_id", id.as_str()),
            ("client_secret", key.as_str()),
        ]),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = send(&h, exchange()).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    assert!(
        a.current.as_deref().unwrap().contains("\"issuer\";r=0;"),
        "{:?}",
        a.current
    );
    // The key's own requests find its bucket empty too: one limit for both.
    assert_refused(&get(&h, "/v1/issuer", Some(&key)).await, "issuer", 30);
}
