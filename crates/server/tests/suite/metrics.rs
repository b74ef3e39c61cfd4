//! `GET /metrics`: admins only on the main address; what it counts, labelled by route
//! template and fixed codes, never by a token, a key or an id.

use crate::common::start;
use reqwest::StatusCode;
use serde_json::json;

async fn scrape(h: &crate::common::Harness, key: Option<&str>) -> (StatusCode, String, String) {
    let mut req = h.http.get(format!("{}/metrics", h.base));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let kind = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, kind, resp.text().await.unwrap())
}

/// The value of the sample line starting with `series` (name and labels), if any.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_are_for_admins_and_count_by_template_and_code_only() {
    let h = start().await;
    let issuer_key = h.issuer("metrics.example").await;
    let (status, _, body) = scrape(&h, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _, body) = scrape(&h, Some(&issuer_key)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, body) = scrape(&h, Some("bfk_adm_not-a-key")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    let reg = h
        .register(
            &issuer_key,
            json!({"name": "Counted", "scopes": ["read:x"]}),
        )
        .await;
    let token = reg["token"].as_str().unwrap().to_owned();
    let agent_id = reg["agent_id"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        let v = h
            .verify(json!({"token": token, "scopes_requested": ["read:x"]}))
            .await;
        assert_eq!(v["allowed"], true, "{v}");
    }
    let v = h
        .verify(json!({"token": token, "scopes_requested": ["write:x"]}))
        .await;
    assert_eq!(v["allowed"], false, "{v}");
    let v = h.verify(json!({"token": "eyJ.not.a-token"})).await;
    assert_eq!(v["valid"], false, "{v}");
    let (st, _) = h
        .call(
            "GET",
            &format!("/v1/agents/{agent_id}"),
            Some(&issuer_key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = h
        .call("GET", &format!("/v1/verify/{token}"), None, None)
        .await;
    assert_eq!(st, StatusCode::OK);

    let (status, kind, text) = scrape(&h, Some(&h.admin)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    for (series, at_least) in [
        (
            "bonafide_http_requests_total{route=\"/v1/verify\",method=\"POST\",status=\"200\"}",
            5.0,
        ),
        (
            "bonafide_http_requests_total{route=\"/v1/agents/{id}\",method=\"GET\",status=\"200\"}",
            1.0,
        ),
        (
            "bonafide_http_requests_total{route=\"/v1/verify/{*token}\",method=\"GET\",status=\"200\"}",
            1.0,
        ),
        (
            "bonafide_verify_decisions_total{outcome=\"allowed\",code=\"none\"}",
            3.0,
        ),
        (
            "bonafide_verify_decisions_total{outcome=\"denied\",code=\"SCOPE_NOT_GRANTED\"}",
            1.0,
        ),
        (
            "bonafide_verify_decisions_total{outcome=\"invalid\",code=\"TOKEN_INVALID\"}",
            1.0,
        ),
        (
            "bonafide_cache_lookups_total{cache=\"api_keys\",result=\"hit\"}",
            1.0,
        ),
        ("bonafide_audit_commit_batch_entries_count", 4.0),
        ("bonafide_audit_commit_duration_seconds_count", 1.0),
        (
            "bonafide_http_request_duration_seconds_count{route=\"/v1/verify\",method=\"POST\"}",
            5.0,
        ),
    ] {
        let got = sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
        assert!(
            got >= at_least,
            "{series} = {got}, expected at least {at_least}"
        );
    }
    assert!(
        sample(&text, "bonafide_audit_checkpoint_age_seconds").is_some(),
        "{text}"
    );
    // SQLite's readers' pool: 4 at most.
    assert_eq!(
        sample(&text, "bonafide_store_connections{state=\"max\"}"),
        Some(4.0),
        "{text}"
    );
    // No token, agent id or key reaches a label.
    for secret in [
        token.as_str(),
        agent_id.as_str(),
        issuer_key.as_str(),
        h.admin.as_str(),
    ] {
        assert!(!text.contains(secret), "{secret} leaked into\n{text}");
    }
    assert!(!text.contains("eyJ"), "{text}");
}
