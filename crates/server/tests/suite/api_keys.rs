//! API keys as objects over HTTP (issue 18 item 3): create, list (never the secret),
//! rotate with a grace period, revoke from the next request (on a second replica
//! too), expiry with the clock, scopes refused, the last admin key, bad input.

use std::sync::Arc;
use std::time::Duration;

use bonafide_server::time::ManualClock;
use bonafide_server::{Config, Server};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Harness, config, start, start_with_config};

async fn create(h: &Harness, by: &str, body: Value) -> (StatusCode, Value) {
    h.call("POST", "/v1/api-keys", Some(by), Some(body)).await
}

async fn created(h: &Harness, by: &str, body: Value) -> (String, String) {
    let (st, v) = create(h, by, body).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    (
        v["key"]["id"].as_str().unwrap().to_owned(),
        v["secret"].as_str().unwrap().to_owned(),
    )
}

async fn status_with(h: &Harness, base: &str, key: &str) -> StatusCode {
    h.http
        .get(format!("{base}/v1/issuer"))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
        .status()
}

async fn audit_events(h: &Harness) -> Vec<String> {
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
        .filter_map(|e| e["entry"].as_str())
        .map(|e| {
            let entry: Value = serde_json::from_str(e).unwrap();
            entry["type"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn keys_are_created_listed_rotated_and_revoked_from_the_next_request() {
    let h = start().await;
    let first = h.issuer("keys.example").await;
    let (st, me) = h.call("GET", "/v1/issuer", Some(&first), None).await;
    assert_eq!(st, StatusCode::OK);
    let issuer = me["issuer_id"].as_str().unwrap().to_owned();

    let (st, v) = create(&h, &first, json!({"name": "ci deploys"})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let ci = v["secret"].as_str().unwrap().to_owned();
    let ci_id = v["key"]["id"].as_str().unwrap().to_owned();
    assert!(ci.starts_with("bfk_iss_"));
    assert!(ci_id.starts_with("key_") && ci_id.len() == 20, "{ci_id}");
    assert_eq!(v["key"]["owner"], issuer.as_str());
    assert_eq!(v["key"]["kind"], "issuer");
    assert_eq!(v["key"]["created_by"], issuer.as_str());
    assert_eq!(v["key"]["state"], "active");
    // Both headers authenticate it.
    assert_eq!(status_with(&h, &h.base, &ci).await, StatusCode::OK);
    let (st, _) = h.call("GET", "/v1/issuer", Some(&ci), None).await;
    assert_eq!(st, StatusCode::OK);

    // Listed, with the first key (migrated names), never a secret.
    let (st, list) = h.call("GET", "/v1/api-keys", Some(&first), None).await;
    assert_eq!(st, StatusCode::OK, "{list}");
    let text = list.to_string();
    assert!(!text.contains("bfk_"), "{text}");
    let keys = list["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["name"], "initial key");
    assert_eq!(keys[0]["created_by"], "admin");
    assert_eq!(keys[1]["id"], ci_id.as_str());

    // Rotated with a grace period: both work, both listed, the old one expiring.
    let (st, r) = h
        .call(
            "POST",
            &format!("/v1/api-keys/{ci_id}/rotate"),
            Some(&first),
            Some(json!({"grace_seconds": 3600})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let ci2 = r["secret"].as_str().unwrap().to_owned();
    let ci2_id = r["key"]["id"].as_str().unwrap().to_owned();
    assert_ne!(ci2_id, ci_id);
    assert_eq!(r["key"]["rotated_from"], ci_id.as_str());
    assert_eq!(r["key"]["name"], "ci deploys");
    assert_eq!(r["previous"]["state"], "rotating");
    assert!(r["previous"]["expires_at"].is_string(), "{r}");
    assert_eq!(status_with(&h, &h.base, &ci).await, StatusCode::OK);
    assert_eq!(status_with(&h, &h.base, &ci2).await, StatusCode::OK);
    let (_, list) = h.call("GET", "/v1/api-keys", Some(&first), None).await;
    let old = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == ci_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(old["rotated_to"], ci2_id.as_str());
    assert_eq!(old["expires_at"], r["previous"]["expires_at"]);

    // A second replica on the same store, its cache warm with the key.
    let other = Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        config(),
        Arc::clone(&h.state.store),
    )
    .await
    .unwrap();
    let other_base = format!("http://{}", other.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(other.run(async {
        let _ = stopped.await;
    }));
    assert_eq!(status_with(&h, &other_base, &ci2).await, StatusCode::OK);

    // Revoked: refused from the very next request here, and on the replica as soon
    // as its change feed brings it (bounded wait).
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/api-keys/{ci2_id}/revoke"),
            Some(&first),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["key"]["state"], "revoked");
    assert_eq!(
        status_with(&h, &h.base, &ci2).await,
        StatusCode::UNAUTHORIZED
    );
    let mut refused = false;
    for _ in 0..100 {
        if status_with(&h, &other_base, &ci2).await == StatusCode::UNAUTHORIZED {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "the replica still accepts a revoked key after 5 s");
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    // Twice: 404.
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/api-keys/{ci2_id}/revoke"),
            Some(&first),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Another issuer's key neither sees nor touches these keys.
    let stranger = h.issuer("stranger.example").await;
    let (st, _) = h
        .call(
            "GET",
            &format!("/v1/api-keys?owner={issuer}"),
            Some(&stranger),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    for action in ["revoke", "rotate"] {
        let (st, _) = h
            .call(
                "POST",
                &format!("/v1/api-keys/{ci_id}/{action}"),
                Some(&stranger),
                Some(json!({})),
            )
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{action}");
    }
    // The admin key manages any identity's keys.
    let (st, v) = h
        .call(
            "GET",
            &format!("/v1/api-keys?owner={issuer}"),
            Some(&h.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["keys"].as_array().unwrap().len(), 3);

    let events = audit_events(&h).await;
    for e in ["key.added", "key.rotated", "key.revoked"] {
        assert!(events.iter().any(|t| t == e), "{e} in {events:?}");
    }
}

#[tokio::test]
async fn expiry_and_grace_periods_end_with_the_clock_and_last_use_is_recorded() {
    let clock = Arc::new(ManualClock::now());
    let h = start_with_config(Config {
        clock: clock.clone(),
        ..config()
    })
    .await;
    let first = h.issuer("clock.example").await;
    let (_, short) = created(
        &h,
        &first,
        json!({"name": "one minute", "expires_in_seconds": 60}),
    )
    .await;
    let (long_id, long) = created(&h, &first, json!({"name": "long"})).await;
    assert_eq!(status_with(&h, &h.base, &short).await, StatusCode::OK);
    clock.advance(Duration::from_secs(61));
    let (st, v) = h.call("GET", "/v1/issuer", Some(&short), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("expired"));

    // Rotation with a 10 s grace: the old key works for 10 s, then not; the new one on.
    assert_eq!(status_with(&h, &h.base, &long).await, StatusCode::OK);
    let (st, r) = h
        .call(
            "POST",
            &format!("/v1/api-keys/{long_id}/rotate"),
            Some(&first),
            Some(json!({"grace_seconds": 10})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let new = r["secret"].as_str().unwrap().to_owned();
    clock.advance(Duration::from_secs(9));
    assert_eq!(status_with(&h, &h.base, &long).await, StatusCode::OK);
    clock.advance(Duration::from_secs(2));
    assert_eq!(
        status_with(&h, &h.base, &long).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(status_with(&h, &h.base, &new).await, StatusCode::OK);
    // An expired key cannot be rotated.
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/api-keys/{long_id}/rotate"),
            Some(&first),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Last use: written off the request path (bounded wait), listed.
    let mut seen = false;
    for _ in 0..100 {
        let (_, list) = h.call("GET", "/v1/api-keys", Some(&first), None).await;
        // Same creation time (the clock stood still): found by name and predecessor.
        let keys = list["keys"].as_array().unwrap();
        let state = |name: &str, rotated: bool| {
            keys.iter()
                .find(|k| k["name"] == name && k["rotated_from"].is_string() == rotated)
                .map(|k| (k["state"].as_str().unwrap().to_owned(), k.clone()))
                .unwrap()
        };
        assert_eq!(state("initial key", false).0, "active");
        assert_eq!(state("one minute", false).0, "expired");
        assert_eq!(state("long", false).0, "expired");
        let (st, newest) = state("long", true);
        assert_eq!(st, "active");
        if newest["last_used_at"].is_string() {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "last_used_at never written");
}

#[tokio::test]
async fn scopes_narrow_a_key_and_a_scoped_key_makes_none_broader() {
    let h = start().await;
    let first = h.issuer("scopes.example").await;
    let (_, reader) = created(&h, &first, json!({"name": "r", "scopes": ["read"]})).await;
    let (st, _) = h.call("GET", "/v1/issuer", Some(&reader), None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = h
        .call(
            "POST",
            "/v1/agents/register",
            Some(&reader),
            Some(json!({"name": "bot", "scopes": ["read:x"]})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("`write`"));
    // Managing keys needs `keys:manage`.
    let (st, _) = create(&h, &reader, json!({"name": "x"})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = h.call("GET", "/v1/api-keys", Some(&reader), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // A manager scoped to read + keys:manage makes no broader key; an unscoped ask
    // inherits its scopes.
    let (_, manager) = created(
        &h,
        &first,
        json!({"name": "m", "scopes": ["keys:manage", "read", "read"]}),
    )
    .await;
    let (st, v) = create(&h, &manager, json!({"name": "w", "scopes": ["write"]})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = create(&h, &manager, json!({"name": "inherit"})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["key"]["scopes"], json!(["read", "keys:manage"]));
    // Unknown or empty scopes: 422.
    for scopes in [json!(["admin"]), json!([])] {
        let (st, v) = create(&h, &first, json!({"name": "bad", "scopes": scopes})).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    }
    // Receivers: a verify-only key verifies, reads no events.
    let (st, rcv) = h
        .call(
            "POST",
            "/v1/receivers",
            Some(&h.admin),
            Some(json!({"name": "api.scopes.example"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{rcv}");
    let rcv_key = rcv["api_key"].as_str().unwrap();
    let (_, verifier) = created(&h, rcv_key, json!({"name": "v", "scopes": ["verify"]})).await;
    let (st, v) = h
        .call(
            "POST",
            "/v1/verify",
            Some(&verifier),
            Some(json!({"token": "not-a-token"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _) = h.call("GET", "/v1/webhooks", Some(&verifier), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_bootstrap_admin_key_goes_once_another_exists_but_never_the_last() {
    let h = start().await;
    let issuer = h.issuer("adm.example").await;
    // Only admin keys manage admin keys.
    let (st, _) = create(&h, &issuer, json!({"name": "sneaky", "owner": "admin"})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = h
        .call("GET", "/v1/api-keys?owner=admin", Some(&issuer), None)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (_, list) = h.call("GET", "/v1/api-keys", Some(&h.admin), None).await;
    let bootstrap_id = list["keys"][0]["id"].as_str().unwrap().to_owned();
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/api-keys/{bootstrap_id}/revoke"),
            Some(&h.admin),
            None,
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("LAST_ADMIN_KEY")),
        "{v}"
    );
    let (second_id, second) = created(&h, &h.admin, json!({"name": "ops"})).await;
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/api-keys/{bootstrap_id}/revoke"),
            Some(&second),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _) = h.call("GET", "/v1/api-keys", Some(&h.admin), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/api-keys/{second_id}/revoke"),
            Some(&second),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    // Rotating the last admin key is fine: the new one is live.
    let (st, r) = h
        .call(
            "POST",
            &format!("/v1/api-keys/{second_id}/rotate"),
            Some(&second),
            Some(json!({"grace_seconds": 0})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let third = r["secret"].as_str().unwrap();
    assert!(third.starts_with("bfk_adm_"));
    let (st, _) = h.call("GET", "/v1/api-keys", Some(&second), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = h.call("GET", "/v1/api-keys", Some(third), None).await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx() {
    let h = start().await;
    let key = h.issuer("bad.example").await;
    let cases = [
        json!({"name": ""}),
        json!({"name": "x", "owner": "bogus"}),
        json!({"name": "x", "expires_in_seconds": 0}),
        json!({"name": "x", "expires_in_seconds": 999_999_999_999u64}),
        json!({"name": "x", "unknown": 1}),
        json!({"name": "x".repeat(101)}),
        json!({"name": "x", "scopes": "read"}),
    ];
    for body in cases {
        let (st, v) = create(&h, &key, body.clone()).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {v}");
    }
    let (id, _) = created(&h, &key, json!({"name": "ok"})).await;
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/api-keys/{id}/rotate"),
            Some(&key),
            Some(json!({"grace_seconds": 31 * 86_400})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    for bad in ["sha256:0011223344556677", "key_zz", "key_0011223344556677"] {
        let (st, _) = h
            .call(
                "POST",
                &format!("/v1/api-keys/{bad}/revoke"),
                Some(&key),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{bad}");
    }
    // No credential, or a key that is no key.
    let (st, _) = h.call("GET", "/v1/api-keys", None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = h
        .call("GET", "/v1/api-keys", Some("bfk_iss_nope"), None)
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = h
        .call("GET", "/v1/api-keys?owner=nobody", Some(&key), None)
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    // An admin key names whose keys it creates when not its own kind's: default is
    // admin keys.
    let (st, v) = create(&h, &h.admin, json!({"name": "a"})).await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(v["key"]["kind"], "admin");
}

/// A token request's form, its HTTP Basic credentials, and the status and RFC 6749
/// error expected.
type TokenCase<'a> = (
    Vec<(&'a str, &'a str)>,
    Option<(&'a str, &'a str)>,
    StatusCode,
    &'a str,
);

async fn token_request(
    h: &Harness,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let mut r = h.http.post(format!("{}/v1/oauth/token", h.base)).form(form);
    if let Some((id, secret)) = basic {
        r = r.basic_auth(id, Some(secret));
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let v = resp.json::<Value>().await.unwrap();
    (status, v, headers)
}

#[tokio::test]
async fn client_credentials_give_a_short_token_worth_what_the_key_is() {
    let h = start().await;
    let first = h.issuer("oauth.example").await;
    let (id, key) = created(
        &h,
        &first,
        json!({"name": "sdk", "scopes": ["read", "keys:manage"]}),
    )
    .await;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", id.as_str()),
        ("client_secret", key.as_str()),
    ];
    let (st, v, headers) = token_request(&h, &form, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 900);
    assert_eq!(headers["cache-control"], "no-store");
    let token = v["access_token"].as_str().unwrap().to_owned();
    let header: Value = serde_json::from_slice(
        &bonafide_core::b64::decode(token.split('.').next().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(header["typ"], "at+jwt");
    // Worth what the key is: reads, manages keys, writes nothing.
    let (st, me) = h.call("GET", "/v1/issuer", Some(&token), None).await;
    assert_eq!(st, StatusCode::OK, "{me}");
    let (st, _) = h.call("GET", "/v1/api-keys", Some(&token), None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = h
        .call(
            "POST",
            "/v1/agents/register",
            Some(&token),
            Some(json!({"name": "bot", "scopes": ["read:x"]})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // HTTP Basic works too.
    let (st, v, _) = token_request(
        &h,
        &[("grant_type", "client_credentials")],
        Some((&id, &key)),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // RFC 6749 §5.2 errors.
    let other = h.issuer("other-oauth.example").await;
    let cases: Vec<TokenCase> = vec![
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "key_0011223344556677"),
                ("client_secret", key.as_str()),
            ],
            None,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", id.as_str()),
                ("client_secret", other.as_str()),
            ],
            None,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", id.as_str()),
                ("client_secret", "bfk_iss_nope"),
            ],
            None,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![("grant_type", "client_credentials")],
            None,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", id.as_str()),
                ("client_secret", key.as_str()),
            ],
            None,
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            vec![("client_id", id.as_str()), ("client_secret", key.as_str())],
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("grant_type", "client_credentials"),
                ("client_id", id.as_str()),
                ("client_secret", key.as_str()),
            ],
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "write"),
                ("client_id", id.as_str()),
                ("client_secret", key.as_str()),
            ],
            None,
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", id.as_str()),
                ("client_secret", key.as_str()),
            ],
            Some((id.as_str(), key.as_str())),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (form, basic, status, error) in cases {
        let (st, v, headers) = token_request(&h, &form, basic).await;
        assert_eq!(
            (st, v["error"].as_str()),
            (status, Some(error)),
            "{form:?}: {v}"
        );
        assert!(v["error_description"].is_string());
        if st == StatusCode::UNAUTHORIZED {
            assert!(headers.contains_key("www-authenticate"));
        }
    }

    // Revoking the key ends its tokens from the next request.
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/api-keys/{id}/revoke"),
            Some(&first),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = h.call("GET", "/v1/issuer", Some(&token), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    let (st, _, _) = token_request(&h, &form, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_keys_access_token_spends_its_keys_rate_limit_not_its_address() {
    let mut limits = bonafide_server::ratelimit::RateLimits::seeds();
    limits.apply("issuer=5/min").unwrap();
    limits.apply("ip=1000/min").unwrap();
    let h = start_with_config(Config {
        rate_limits: limits,
        clock: Arc::new(ManualClock::now()),
        ..config()
    })
    .await;
    let first = h.issuer("limits.example").await;
    let (id, key) = created(&h, &first, json!({"name": "sdk"})).await;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", id.as_str()),
        ("client_secret", key.as_str()),
    ];
    let (st, v, _) = token_request(&h, &form, None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let token = v["access_token"].as_str().unwrap().to_owned();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let (st, _) = h.call("GET", "/v1/issuer", Some(&token), None).await;
        statuses.push(st);
    }
    // The key's bucket (5 a minute: the exchange spent one) spent, the address's
    // (1000) not.
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        4,
        "{statuses:?}"
    );
    assert_eq!(statuses[7], StatusCode::TOO_MANY_REQUESTS);
    // The key itself shares the bucket.
    let (st, _) = h.call("GET", "/v1/issuer", Some(&key), None).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
}

/// From an outside review: a scoped key rotates no broader key (an unscoped one has
/// its kind's full rights), a rotated key keeps the old one's expiry, a key never
/// outlives the key that made it, and the compatibility surfaces ask the scopes their
/// native routes ask.
#[tokio::test]
async fn a_scoped_or_expiring_key_escapes_neither_its_scopes_nor_its_expiry() {
    let h = start().await;
    let first = h.issuer("escape.example").await;
    let (full_id, _) = created(&h, &first, json!({"name": "full"})).await;
    let (_, manager) = created(
        &h,
        &first,
        json!({"name": "m", "scopes": ["keys:manage", "read"], "expires_in_seconds": 3600}),
    )
    .await;
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/api-keys/{full_id}/rotate"),
            Some(&manager),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    // A key it made (no expiry asked) expires with it; so does one it rotates.
    let (st, made) = create(&h, &manager, json!({"name": "child"})).await;
    assert_eq!(st, StatusCode::CREATED, "{made}");
    assert!(made["key"]["expires_at"].is_string(), "{made}");
    let (st, made_long) = create(
        &h,
        &manager,
        json!({"name": "long", "expires_in_seconds": 86400 * 30}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{made_long}");
    assert_eq!(made_long["key"]["expires_at"], made["key"]["expires_at"]);
    let (exp_id, _) = created(
        &h,
        &first,
        json!({"name": "expiring", "expires_in_seconds": 600}),
    )
    .await;
    let (st, rotated) = h
        .call(
            "POST",
            &format!("/v1/api-keys/{exp_id}/rotate"),
            Some(&first),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{rotated}");
    assert!(rotated["key"]["expires_at"].is_string(), "{rotated}");
    // A `read`-only receiver key verifies on no surface; a `verify` key does.
    let (st, rcv) = h
        .call(
            "POST",
            "/v1/receivers",
            Some(&h.admin),
            Some(json!({"name": "api.escape.example"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{rcv}");
    let rcv_key = rcv["api_key"].as_str().unwrap();
    let (_, reader) = created(&h, rcv_key, json!({"name": "r", "scopes": ["read"]})).await;
    let (st, _) = h
        .call(
            "GET",
            "/compat/imarobot/v1/verify/not-a-token",
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = h
        .call(
            "POST",
            "/compat/agentoauth/verify",
            Some(&reader),
            Some(json!({"token": "not-a-token"})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

/// A key's exchange is a refresh-token family, rotated by people's rule: each refresh
/// gives a new pair and uses the old token up; a token used twice revokes the whole
/// family (its access tokens too) and is a security event; a wrong client burns
/// nothing; a person's refresh endpoint knows no key's token; revoking the key, or
/// rotating it out past its grace period, ends its families. All of it audited.
#[tokio::test]
async fn key_refresh_tokens_rotate_and_a_reused_one_revokes_its_family() {
    let h = start().await;
    let first = h.issuer("refresh.example").await;
    let (id, key) = created(&h, &first, json!({"name": "sdk"})).await;
    let exchange = |id: String, key: String| {
        let h = &h;
        async move {
            let form = [
                ("grant_type", "client_credentials"),
                ("client_id", id.as_str()),
                ("client_secret", key.as_str()),
            ];
            let (st, v, _) = token_request(h, &form, None).await;
            assert_eq!(st, StatusCode::OK, "{v}");
            assert_eq!(v["refresh_expires_in"], 7 * 86_400);
            (
                v["access_token"].as_str().unwrap().to_owned(),
                v["refresh_token"].as_str().unwrap().to_owned(),
            )
        }
    };
    let refresh = |rt: String, extra: Vec<(&'static str, String)>| {
        let h = &h;
        async move {
            let mut form = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", rt.as_str()),
            ];
            form.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
            let (st, v, headers) = token_request(h, &form, None).await;
            if st == StatusCode::OK {
                assert_eq!(headers["cache-control"], "no-store");
            }
            (st, v)
        }
    };
    let works = |token: String| {
        let h = &h;
        async move { h.call("GET", "/v1/issuer", Some(&token), None).await.0 }
    };
    let creds = |id: &str, key: &str| {
        vec![
            ("client_id", id.to_owned()),
            ("client_secret", key.to_owned()),
        ]
    };
    let (a1, r1) = exchange(id.clone(), key.clone()).await;
    assert!(r1.starts_with("bfr_"), "{r1}");
    // A key is a confidential client: a refresh token alone is refused, and not used up.
    let (st, v) = refresh(r1.clone(), vec![]).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client")),
        "{v}"
    );
    let (st, v) = refresh(r1.clone(), creds(&id, &key)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let a2 = v["access_token"].as_str().unwrap().to_owned();
    let r2 = v["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r2, r1);
    // The refreshed token is the key's, with the session in `sid`.
    let claims: Value =
        serde_json::from_slice(&bonafide_core::b64::decode(a2.split('.').nth(1).unwrap()).unwrap())
            .unwrap();
    assert_eq!(
        (claims["sub"].as_str(), claims["client_id"].as_str()),
        (Some(id.as_str()), Some(id.as_str()))
    );
    assert!(
        claims["sid"].as_str().unwrap().starts_with("ses_"),
        "{claims}"
    );
    assert_eq!(works(a1.clone()).await, StatusCode::OK);
    assert_eq!(works(a2.clone()).await, StatusCode::OK);
    // R1 again: reuse. The family ends, its access tokens with it, and R2 too.
    let (st, v) = refresh(r1.clone(), creds(&id, &key)).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "{v}"
    );
    assert_eq!(works(a2.clone()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(works(a1).await, StatusCode::UNAUTHORIZED);
    let (st, v) = refresh(r2, creds(&id, &key)).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "{v}"
    );
    let (st, events) = h
        .call(
            "GET",
            "/v1/admin/security-events?limit=1000",
            Some(&h.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{events}");
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "refresh_reuse"),
        "{events}"
    );
    // Another exchange is another family, unharmed by the first one's end.
    let (a3, r3) = exchange(id.clone(), key.clone()).await;
    assert_eq!(works(a3).await, StatusCode::OK);
    // A client that is not the family's key burns nothing; a person's endpoint does
    // not know a key's refresh token.
    let other = h.issuer("other-refresh.example").await;
    let (st, v) = refresh(
        r3.clone(),
        vec![("client_secret", other.clone()), ("client_id", id.clone())],
    )
    .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client")),
        "{v}"
    );
    let (st, v) = refresh(
        r3.clone(),
        vec![("client_id", "key_0011223344556677".into())],
    )
    .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client")),
        "{v}"
    );
    let (st, v) = h
        .call(
            "POST",
            "/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": r3})),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    // Still unused: it rotates (with the key's own credentials).
    let (st, v) = refresh(
        r3,
        vec![("client_id", id.clone()), ("client_secret", key.clone())],
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let a4 = v["access_token"].as_str().unwrap().to_owned();
    let r4 = v["refresh_token"].as_str().unwrap().to_owned();
    // Revoking the key ends its families: neither the token nor a refresh works.
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/api-keys/{id}/revoke"),
            Some(&first),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(works(a4).await, StatusCode::UNAUTHORIZED);
    let (st, v) = refresh(r4, creds(&id, &key)).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "{v}"
    );
    // Rotated out (no grace period): its families end too.
    let (id2, key2) = created(&h, &first, json!({"name": "sdk2"})).await;
    let (_, r5) = exchange(id2.clone(), key2.clone()).await;
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/api-keys/{id2}/rotate"),
            Some(&first),
            Some(json!({"grace_seconds": 0})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v) = refresh(r5, creds(&id2, &key2)).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "{v}"
    );
    // Bad input: a refresh grant without its token.
    let (st, v) = refresh(String::new(), creds(&id, &key)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v, _) = token_request(&h, &[("grant_type", "refresh_token")], None).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "{v}"
    );
    // Audited as people's sessions are: made, refreshed, revoked.
    let types = audit_events(&h).await;
    for t in ["session.created", "session.refreshed", "session.revoked"] {
        assert!(types.iter().any(|x| x == t), "{t}: {types:?}");
    }
}
