//! ImaRobot's documented calls as an ImaRobot user makes them, with only the base URL
//! changed to `<registry>/compat/imarobot` (and the key): register, the GET-able
//! `verify_url`, the verify answers in exactly the shapes ImaRobot's product page
//! shows, the PEM key, `/health`; and on the native API the pieces issue 21 asked
//! of it: `issuer_domain`, the token in `verify_url`, CORS `*` with a preflight on
//! the public reads, lifetimes up to a year.

use crate::common::{self, Harness};
use crate::domain;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bonafide_server::time::ManualClock;
use bonafide_server::{Config, MAX_TOKEN_TTL_CEILING_S, Server};
use reqwest::StatusCode;
use serde_json::{Value, json};

const BASE: &str = "/compat/imarobot";
const YEAR: i64 = 365 * 86_400;

/// A registry that allows ImaRobot's longest expiry (1 year), on a clock the test
/// moves.
async fn registry(clock: Arc<ManualClock>) -> Harness {
    common::start_with_config(Config {
        max_token_ttl_s: YEAR,
        clock,
        ..domain::test_switch()
    })
    .await
}

/// The members of a JSON object.
fn members(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// `GET url` as a browser or curl would: no key.
async fn get(h: &Harness, url: &str) -> (StatusCode, Value) {
    let resp = h.http.get(url).send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

/// The verify decisions the audit log holds for `agent`.
async fn verify_entries(h: &Harness, agent: &str) -> Vec<Value> {
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
        .filter_map(|e| serde_json::from_str::<Value>(e["entry"].as_str()?).ok())
        .filter(|e| e["type"] == "verify" && e["agent"] == agent)
        .collect()
}

#[tokio::test]
async fn imarobot_register_verify_and_failures_in_its_shapes() {
    let clock = Arc::new(ManualClock::now());
    let h = registry(Arc::clone(&clock)).await;
    let key = h.issuer("apexwealth.com").await;
    let base = format!("{}{BASE}", h.base);

    // Register as ImaRobot documents it, under the new base URL; 90 days (ImaRobot's
    // common expiry) is allowed on this registry.
    let (st, reg) = h
        .call(
            "POST",
            &format!("{BASE}/v1/agents/register"),
            Some(&key),
            Some(json!({
                "name": "PortfolioBot",
                "description": "Reads portfolio data from financial APIs",
                "scopes": ["read:portfolio", "read:transactions"],
                "expiry_seconds": 90 * 86_400,
            })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{reg}");
    let token = reg["token"].as_str().unwrap();
    let agent = reg["agent_id"].as_str().unwrap();
    assert_eq!(reg["verify_url"], format!("{base}/v1/verify/{token}"));
    assert_eq!(
        reg["public_key_url"],
        format!("{base}/.well-known/public-key.pem")
    );

    // The verify_url is GET-able as is, and answers exactly ImaRobot's success shape.
    let (st, ok) = get(&h, reg["verify_url"].as_str().unwrap()).await;
    assert_eq!(st, StatusCode::OK, "{ok}");
    assert_eq!(
        members(&ok),
        set(&[
            "valid",
            "agent_id",
            "name",
            "issuer",
            "scopes",
            "expires_at",
            "verified_at"
        ]),
        "{ok}"
    );
    assert_eq!(ok["valid"], true);
    assert_eq!(ok["agent_id"], agent);
    assert_eq!(ok["name"], "PortfolioBot");
    assert_eq!(ok["issuer"], "apexwealth.com");
    assert_eq!(ok["scopes"], json!(["read:portfolio", "read:transactions"]));
    for at in ["expires_at", "verified_at"] {
        let t = ok[at].as_str().unwrap();
        // ImaRobot's form: `2026-03-27T18:00:00.000Z`.
        assert!(
            t.len() == 24 && t.ends_with('Z') && &t[19..20] == ".",
            "{t}"
        );
    }
    // The decision is audited like the native one.
    let entries = verify_entries(&h, agent).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["decision"], "allow");

    // issue-token names its own GET-able verify_url.
    let (st, issued) = h
        .call(
            "POST",
            &format!("{BASE}/v1/agents/{agent}/issue-token"),
            Some(&key),
            Some(json!({"expiry_seconds": YEAR})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{issued}");
    let second = issued["token"].as_str().unwrap();
    assert_eq!(issued["verify_url"], format!("{base}/v1/verify/{second}"));
    let (_, v) = get(&h, issued["verify_url"].as_str().unwrap()).await;
    assert_eq!(v["valid"], true, "{v}");

    // Failures: exactly `{valid: false, error: <string>}`.
    let (st, v) = get(&h, &format!("{base}/v1/verify/not-a-token")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v, json!({"valid": false, "error": "TOKEN_INVALID"}));
    // A tampered token: invalid, never valid.
    let forged = h.sign_raw(&h.claims(agent).to_string()).replace('.', ".x");
    let (_, v) = get(&h, &format!("{base}/v1/verify/{forged}")).await;
    assert_eq!(v, json!({"valid": false, "error": "TOKEN_INVALID"}));

    // Expired: the clock moves past the first token's 90 days.
    clock.advance(Duration::from_secs(91 * 86_400));
    let (_, v) = get(&h, &format!("{base}/v1/verify/{token}")).await;
    assert_eq!(v, json!({"valid": false, "error": "TOKEN_EXPIRED"}));

    // Revoked: the agent, through the native API.
    let (st, r) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent}/revoke"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let (_, v) = get(&h, &format!("{base}/v1/verify/{second}")).await;
    assert_eq!(v, json!({"valid": false, "error": "TOKEN_REVOKED"}));
    // The native endpoint keeps its own error object for the same token.
    let (_, native) = get(&h, &format!("{}/v1/verify/{second}", h.base)).await;
    common::assert_simple_denial(&native, "TOKEN_REVOKED");
    // Every decision about the agent was audited, allow and deny alike.
    let entries = verify_entries(&h, agent).await;
    assert!(
        entries.iter().filter(|e| e["decision"] == "deny").count() >= 2,
        "{entries:?}"
    );
}

#[tokio::test]
async fn imarobot_refusals_are_4xx_with_a_string_error() {
    let h = registry(Arc::new(ManualClock::now())).await;
    let key = h.issuer("refusals.example").await;
    let reg = |body: Value| {
        let h = &h;
        let key = key.clone();
        async move {
            h.call(
                "POST",
                &format!("{BASE}/v1/agents/register"),
                Some(&key),
                Some(body),
            )
            .await
        }
    };
    for (body, status, code) in [
        (json!({"name": "x"}), 422, "INVALID_REQUEST"),
        (
            json!({"name": "x", "scopes": ["not a scope"]}),
            422,
            "INVALID_REQUEST",
        ),
        (
            json!({"name": "x", "scopes": ["read:x"], "unknown": 1}),
            422,
            "INVALID_REQUEST",
        ),
        (
            json!({"name": "x", "scopes": ["read:x"], "expiry_seconds": YEAR + 1}),
            422,
            "INVALID_REQUEST",
        ),
    ] {
        let (st, v) = reg(body.clone()).await;
        assert_eq!(st.as_u16(), status, "{body}: {v}");
        assert_eq!(v["error"], code, "{body}: {v}");
        assert!(v["message"].as_str().is_some(), "{v}");
    }
    // A year exactly is allowed.
    let (st, v) = reg(json!({"name": "x", "scopes": ["read:x"], "expiry_seconds": YEAR})).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    // No key, a wrong key: 401 with the code as a string.
    let (st, v) = h
        .call(
            "POST",
            &format!("{BASE}/v1/agents/register"),
            None,
            Some(json!({"name": "x", "scopes": ["read:x"]})),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"], "UNAUTHORIZED");
    // Malformed JSON.
    let resp = h
        .http
        .post(format!("{}{BASE}/v1/agents/register", h.base))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"], "MALFORMED_JSON", "{v}");
    // issue-token for an unknown agent, or with a bad body.
    let (st, v) = h
        .call(
            "POST",
            &format!("{BASE}/v1/agents/agt_nope/issue-token"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["error"], "NOT_FOUND");
    let agent = h
        .register(&key, json!({"name": "y", "scopes": ["read:x"]}))
        .await;
    let agent = agent["agent_id"].as_str().unwrap();
    let (st, v) = h
        .call(
            "POST",
            &format!("{BASE}/v1/agents/{agent}/issue-token"),
            Some(&key),
            Some(json!({"expiry_seconds": 10})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"], "INVALID_REQUEST");
    // Verify with an unknown query parameter or a wrong key: the status says it,
    // `valid` is false, `error` a string.
    let (st, v) = get(&h, &format!("{}{BASE}/v1/verify/abc?foo=1", h.base)).await;
    assert!(st.is_client_error(), "{st} {v}");
    assert_eq!(v["valid"], false);
    assert!(v["error"].is_string(), "{v}");
    let (st, v) = h
        .call(
            "GET",
            &format!("{BASE}/v1/verify/abc"),
            Some("bfk_rcv_wrong"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(
        (v["valid"].clone(), v["error"].clone()),
        (json!(false), json!("UNAUTHORIZED"))
    );
}

#[tokio::test]
async fn native_answers_carry_a_get_able_verify_url_and_health() {
    let h = registry(Arc::new(ManualClock::now())).await;
    let key = h.issuer("native.example").await;
    let reg = h
        .register(&key, json!({"name": "n", "scopes": ["read:x"]}))
        .await;
    let token = reg["token"].as_str().unwrap();
    assert_eq!(reg["verify_url"], format!("{}/v1/verify/{token}", h.base));
    let (_, v) = get(&h, reg["verify_url"].as_str().unwrap()).await;
    assert_eq!(v["valid"], true, "{v}");
    let agent = reg["agent_id"].as_str().unwrap();
    let (st, issued) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent}/issue-token"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let t2 = issued["token"].as_str().unwrap();
    assert_eq!(issued["verify_url"], format!("{}/v1/verify/{t2}", h.base));

    // `/health` is `/v1/health`; ImaRobot's under its base too; its PEM key.
    for path in ["/health", "/v1/health", "/compat/imarobot/health"] {
        let (st, v) = h.call("GET", path, None, None).await;
        assert_eq!(st, StatusCode::OK, "{path}: {v}");
        assert_eq!(v["status"], "ok", "{path}: {v}");
    }
    let pem = h
        .http
        .get(format!("{}{BASE}/.well-known/public-key.pem", h.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
}

#[tokio::test]
async fn public_reads_answer_cors_and_their_preflight_keyed_routes_do_not() {
    let h = registry(Arc::new(ManualClock::now())).await;
    let key = h.issuer("cors.example").await;
    let reg = h
        .register(&key, json!({"name": "c", "scopes": ["read:x"]}))
        .await;
    let token = reg["token"].as_str().unwrap();
    for path in [
        format!("/v1/verify/{token}"),
        format!("{BASE}/v1/verify/{token}"),
        "/.well-known/jwks.json".to_owned(),
        "/.well-known/public-key.pem".to_owned(),
        "/.well-known/bonafide-configuration".to_owned(),
        "/v1/audit/checkpoint".to_owned(),
        "/v1/scopes".to_owned(),
        "/health".to_owned(),
        format!("{BASE}/.well-known/public-key.pem"),
        "/api/v1/.well-known/jwks.json".to_owned(),
    ] {
        let url = format!("{}{path}", h.base);
        let pre = h
            .http
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", "https://app.example")
            .header("access-control-request-method", "GET")
            .send()
            .await
            .unwrap();
        assert_eq!(pre.status(), StatusCode::NO_CONTENT, "{path}");
        let hd = pre.headers();
        assert_eq!(hd["access-control-allow-origin"], "*", "{path}");
        assert!(
            hd["access-control-allow-methods"]
                .to_str()
                .unwrap()
                .contains("GET"),
            "{path}"
        );
        assert!(hd.contains_key("access-control-allow-headers"), "{path}");
        assert!(hd.contains_key("access-control-max-age"), "{path}");
        let resp = h
            .http
            .get(&url)
            .header("origin", "https://app.example")
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        assert_eq!(resp.headers()["access-control-allow-origin"], "*", "{path}");
    }
    // A verify that fails still carries it, so the page can read why.
    let resp = h
        .http
        .get(format!("{}/v1/verify/nope", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    // Endpoints that take a key to act: no CORS, and no preflight (405).
    for path in [
        "/v1/agents/register",
        "/v1/agents",
        "/v1/verify",
        "/v1/audit/entries",
        "/compat/imarobot/v1/agents/register",
        "/api/v1/verify",
        "/api/v1/agents/register",
    ] {
        let url = format!("{}{path}", h.base);
        let pre = h
            .http
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", "https://app.example")
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert_eq!(pre.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert!(
            !pre.headers().contains_key("access-control-allow-origin"),
            "{path}"
        );
        let resp = h
            .http
            .get(&url)
            .header("origin", "https://app.example")
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert!(
            !resp.headers().contains_key("access-control-allow-origin"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn issuer_domain_is_accepted_only_when_verified() {
    let h = registry(Arc::new(ManualClock::now())).await;
    let iss = domain::issuer_with_key(&h, "apex.example").await;
    let body = |d: &str| json!({"name": "d", "scopes": ["read:x"], "issuer_domain": d});
    let path = format!("{BASE}/v1/agents/register");
    // Not verified yet: a 422 that says how.
    let (st, v) = h
        .call("POST", &path, Some(&iss.key), Some(body("apex.example")))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"], "INVALID_REQUEST");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("no verified domain") && msg.contains("verify-domain"),
        "{msg}"
    );
    // Verified (the domain's JWKS holds the issuer's key, with its domain proof).
    let server = domain::JwksServer::start(domain::Answer::Json(domain::jwks(&[&iss.sk]))).await;
    let (st, v) = domain::verify_domain(
        &h,
        Some(&iss.key),
        json!({"domain": "apex.example", "jwks_url": server.url(), "proof": domain::proof(&h, &iss, "apex.example")}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // The verified domain, in any case, with or without the trailing dot: accepted,
    // natively and under the ImaRobot base.
    for (p, d) in [
        (path.as_str(), "apex.example"),
        ("/v1/agents/register", "APEX.example."),
    ] {
        let (st, v) = h.call("POST", p, Some(&iss.key), Some(body(d))).await;
        assert_eq!(st, StatusCode::CREATED, "{d}: {v}");
        let (_, ok) = get(&h, v["verify_url"].as_str().unwrap()).await;
        assert_eq!(ok["valid"], true, "{ok}");
    }
    // Another domain: refused, naming the verified one.
    let (st, v) = h
        .call("POST", &path, Some(&iss.key), Some(body("other.example")))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("apex.example"),
        "{v}"
    );
    // Another issuer cannot claim it.
    let other = h.issuer("squatter.example").await;
    let (st, v) = h
        .call("POST", &path, Some(&other), Some(body("apex.example")))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
}

#[tokio::test]
async fn max_token_ttl_is_configurable_up_to_a_year_and_no_further() {
    let store = |dir: &tempfile::TempDir| {
        let path = dir.path().to_path_buf();
        async move {
            Arc::new(bonafide_store::SqliteStore::open(&path).await.unwrap())
                as Arc<dyn bonafide_store::Store>
        }
    };
    let dir = tempfile::tempdir().unwrap();
    for ttl in [59, MAX_TOKEN_TTL_CEILING_S + 1] {
        let e = Server::bind(
            "127.0.0.1:0".parse().unwrap(),
            Config {
                max_token_ttl_s: ttl,
                ..common::config()
            },
            store(&dir).await,
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("max_token_ttl"), "{e}");
    }
    assert_eq!(MAX_TOKEN_TTL_CEILING_S, YEAR);
    // The default stays 30 days: a year is refused there.
    let h = common::start().await;
    let key = h.issuer("default.example").await;
    let (st, v) = h
        .call(
            "POST",
            "/v1/agents/register",
            Some(&key),
            Some(json!({"name": "x", "scopes": ["read:x"], "expiry_seconds": YEAR})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("2592000"),
        "{v}"
    );
}
