//! Token Status Lists over HTTP: every token the registry signs names a slot; the
//! published list (signed by the status-list key, verified here with core's
//! `status_list::verify`) flips within a publish round of a revocation, suspension
//! or reactivation, also for delegated tokens whose ancestor changed; each version
//! is an audit entry before it is served; conditional GET; issuer allocations and
//! their refusals; unknown lists. (The publisher is on here, as by default; the
//! other suites turn it off, see `common::config`.)

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bonafide_core::keys::Jwks;
use bonafide_core::merkle;
use bonafide_core::status_list::{self, Status, StatusList, StatusListClaims};
use bonafide_core::token::AgentClaims;
use bonafide_core::token::{KeyResolver, KeySet};
use bonafide_server::Config;
use common::{Harness, now_s, start_with_config};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The claims of a compact JWS, unverified (the registry's own token).
fn claims(jws: &str) -> AgentClaims {
    let payload = jws.split('.').nth(1).unwrap();
    serde_json::from_slice(&bonafide_core::b64::decode(payload).unwrap()).unwrap()
}

/// The token's slot: (uri, idx).
fn slot(token: &str) -> (String, u64) {
    let status = claims(token)
        .status
        .expect("a registry token names its status")
        .status_list
        .expect("in a status list");
    (status.uri, status.idx)
}

async fn list_keys(h: &Harness) -> KeySet {
    let jwks: Jwks = h
        .http
        .get(format!("{}/.well-known/status-list-jwks.json", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    KeySet::from_jwks(&jwks).unwrap()
}

/// Fetches and verifies the list at `uri`: claims, statuses, ETag.
async fn fetch(h: &Harness, uri: &str) -> (StatusListClaims, StatusList, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = h.http.get(uri).send().await.unwrap();
        if resp.status() == StatusCode::SERVICE_UNAVAILABLE && Instant::now() < deadline {
            // A new list is published within a round.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()["content-type"],
            status_list::STATUS_LIST_MEDIA_TYPE
        );
        assert_eq!(resp.headers()["cache-control"], "max-age=60");
        let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
        let text = resp.text().await.unwrap();
        let keys = list_keys(h).await;
        let (claims, list) = status_list::verify(&text, &keys, uri, now_s(), 5).unwrap();
        return (claims, list, etag);
    }
}

/// Waits for the list to show `want` at `idx` (a publish round is under a second);
/// the claims of the first version showing it.
async fn until_status(h: &Harness, uri: &str, idx: u64, want: Status) -> StatusListClaims {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (claims, list, _) = fetch(h, uri).await;
        let got = list.get(idx).unwrap();
        if got == want {
            return claims;
        }
        assert!(
            Instant::now() < deadline,
            "index {idx} still {got:?}, not {want:?}, after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Standard base64 in a query.
fn q(b64: &str) -> String {
    b64.replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

fn version(claims: &StatusListClaims) -> u64 {
    status_list::log_claims(claims).unwrap().0
}

async fn agent(h: &Harness, key: &str, name: &str) -> (String, String) {
    let reg = h
        .register(key, json!({"name": name, "scopes": ["read:x"]}))
        .await;
    (
        reg["agent_id"].as_str().unwrap().to_owned(),
        reg["token"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn a_registry_token_flips_in_its_list_on_suspension_reactivation_and_revocation() {
    let h = start_with_config(Config::default()).await;
    let key = h.issuer("lists.example").await;
    let (agent_id, token) = agent(&h, &key, "Bot").await;
    let (_, other) = agent(&h, &key, "Other").await;
    let (uri, idx) = slot(&token);
    let (other_uri, other_idx) = slot(&other);
    assert!(
        uri.starts_with(&format!("{}/v1/status-lists/", h.base)),
        "{uri}"
    );
    assert_eq!(uri, other_uri, "one list is shared");
    assert_ne!(idx, other_idx);

    let first = until_status(&h, &uri, idx, Status::Valid).await;
    assert_eq!(first.iss.as_deref(), Some(h.base.as_str()));
    assert_eq!(first.ttl, Some(60));
    assert_eq!(first.status_list.bits, 2);
    assert!(first.exp.unwrap() > first.iat);

    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent_id}/suspend"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let suspended = until_status(&h, &uri, idx, Status::Suspended).await;
    assert!(version(&suspended) > version(&first));
    let (_, list, _) = fetch(&h, &uri).await;
    assert_eq!(
        list.get(other_idx).unwrap(),
        Status::Valid,
        "only its own slot"
    );

    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent_id}/reactivate"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    until_status(&h, &uri, idx, Status::Valid).await;

    // One token of the other agent revoked: that slot only.
    let jti = claims(&other).jti.to_string();
    let (st, v) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&key),
            Some(json!({"jti": jti})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    until_status(&h, &uri, other_idx, Status::Invalid).await;
    let (_, list, _) = fetch(&h, &uri).await;
    assert_eq!(list.get(idx).unwrap(), Status::Valid);

    // Revoking the agent revokes every token it has, including ones issued later.
    let (st, issued) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent_id}/issue-token"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{issued}");
    let (_, idx2) = slot(issued["token"].as_str().unwrap());
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent_id}/revoke"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    until_status(&h, &uri, idx, Status::Invalid).await;
    until_status(&h, &uri, idx2, Status::Invalid).await;
}

#[tokio::test]
async fn conditional_gets_answer_304_until_the_list_changes() {
    let h = start_with_config(Config::default()).await;
    let key = h.issuer("etag.example").await;
    let (agent_id, token) = agent(&h, &key, "Bot").await;
    let (uri, idx) = slot(&token);
    until_status(&h, &uri, idx, Status::Valid).await;
    let (_, _, etag) = fetch(&h, &uri).await;
    let not_modified = h
        .http
        .get(&uri)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(not_modified.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(not_modified.headers()["cache-control"], "max-age=60");
    assert!(not_modified.text().await.unwrap().is_empty());
    // A list of tags, weak or not, and `*`.
    for tag in [format!("\"x\", W/{etag}"), "*".to_owned()] {
        let r = h
            .http
            .get(&uri)
            .header("if-none-match", tag)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    }
    let r = h
        .http
        .get(&uri)
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // After a change, the old tag gets the new list.
    h.call(
        "POST",
        &format!("/v1/agents/{agent_id}/suspend"),
        Some(&key),
        None,
    )
    .await;
    until_status(&h, &uri, idx, Status::Suspended).await;
    let r = h
        .http
        .get(&uri)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_ne!(r.headers()["etag"].to_str().unwrap(), etag);
}

#[tokio::test]
async fn every_published_version_is_in_the_audit_log_before_it_is_served() {
    let h = start_with_config(Config::default()).await;
    let key = h.issuer("logged.example").await;
    let (agent_id, token) = agent(&h, &key, "Bot").await;
    let (uri, idx) = slot(&token);
    until_status(&h, &uri, idx, Status::Valid).await;
    h.call(
        "POST",
        &format!("/v1/agents/{agent_id}/suspend"),
        Some(&key),
        None,
    )
    .await;
    let claims = until_status(&h, &uri, idx, Status::Suspended).await;
    let (version, position) = status_list::log_claims(&claims).unwrap();
    let list = StatusList::decode(&claims.status_list).unwrap();
    let entry = status_list::published_entry(&uri, version, claims.iat, &list);
    let leaf = merkle::leaf_hash(&entry.to_canonical().unwrap());
    let b64 = leaf.to_base64();
    let proof: Value = h
        .http
        .get(format!(
            "{}/v1/audit/proof/inclusion?leaf_hash={}",
            h.base,
            q(&b64)
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(proof["index"], position.index, "{proof}");
    assert!(proof["tree_size"].as_u64().unwrap() >= position.tree_size);
    // A different list (one status changed) is not in the log.
    let mut forged = list.clone();
    forged.set(idx, Status::Valid).unwrap();
    let entry = status_list::published_entry(&uri, version, claims.iat, &forged);
    let leaf = merkle::leaf_hash(&entry.to_canonical().unwrap());
    let r = h
        .http
        .get(format!(
            "{}/v1/audit/proof/inclusion?leaf_hash={}",
            h.base,
            q(&leaf.to_base64())
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

#[tokio::test]
async fn a_delegated_token_flips_with_its_actor_and_its_parent() {
    let h = start_with_config(Config::default()).await;
    let key = h.issuer("chain.example").await;
    let (_, root) = agent(&h, &key, "Root").await;
    let (sub_id, sub) = agent(&h, &key, "Sub").await;
    let (_, sub2) = agent(&h, &key, "Sub 2").await;
    let mut children = Vec::new();
    for actor in [&sub, &sub2] {
        let resp = h
            .http
            .post(format!("{}/v1/token", h.base))
            .header("authorization", format!("Bearer {key}"))
            .form(&[
                ("grant_type", GRANT),
                ("subject_token", root.as_str()),
                ("subject_token_type", JWT),
                ("actor_token", actor.as_str()),
                ("actor_token_type", JWT),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let v: Value = resp.json().await.unwrap();
        children.push(v["access_token"].as_str().unwrap().to_owned());
    }
    let (uri, child_idx) = slot(&children[0]);
    let (uri2, child2_idx) = slot(&children[1]);
    let (root_uri, root_idx) = slot(&root);
    assert_eq!((&uri, &uri2), (&root_uri, &root_uri));
    until_status(&h, &uri, child_idx, Status::Valid).await;
    // Suspending the actor suspends the child, not the root nor the other child.
    h.call(
        "POST",
        &format!("/v1/agents/{sub_id}/suspend"),
        Some(&key),
        None,
    )
    .await;
    until_status(&h, &uri, child_idx, Status::Suspended).await;
    let (_, list, _) = fetch(&h, &uri).await;
    assert_eq!(list.get(root_idx).unwrap(), Status::Valid);
    assert_eq!(list.get(child2_idx).unwrap(), Status::Valid);
    // Revoking the root token revokes both children.
    let root_claims = claims(&root);
    let (st, v) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&key),
            Some(json!({"jti": root_claims.jti.to_string()})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    until_status(&h, &uri, root_idx, Status::Invalid).await;
    until_status(&h, &uri, child_idx, Status::Invalid).await;
    until_status(&h, &uri, child2_idx, Status::Invalid).await;
}

#[tokio::test]
async fn issuers_allocate_slots_for_their_own_tokens_and_bad_requests_are_refused() {
    let h = start_with_config(Config::default()).await;
    let me = h.issuer_full("self.example").await;
    let them = h.issuer_full("other.example").await;
    let (key, other_key) = (me.key.clone(), them.key.clone());
    let kid = signing_kid(&h, &key, &me.id).await;
    let other_kid = signing_kid(&h, &other_key, &them.id).await;
    let (agent_id, _) = agent(&h, &key, "Bot").await;
    let (other_agent, _) = agent(&h, &other_key, "Theirs").await;
    let (second_agent, _) = agent(&h, &key, "Second").await;
    let jti = bonafide_core::ids::TokenId::from_random(common::rand20()[..16].try_into().unwrap())
        .to_string();
    let exp = now_s() + 3600;
    let ask = |agent: &str, jti: &str, exp: i64| json!({"agent_id": agent, "jti": jti, "expires_at": exp, "kid": kid});
    let (st, v) = h
        .call(
            "POST",
            "/v1/status-lists/allocations",
            Some(&key),
            Some(ask(&agent_id, &jti, exp)),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let idx = v["status"]["status_list"]["idx"].as_u64().unwrap();
    let uri = v["status"]["status_list"]["uri"]
        .as_str()
        .unwrap()
        .to_owned();
    // The same jti again: the same slot.
    let (st, again) = h
        .call(
            "POST",
            "/v1/status-lists/allocations",
            Some(&key),
            Some(ask(&agent_id, &jti, exp)),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{again}");
    assert_eq!(again["status"], v["status"]);
    until_status(&h, &uri, idx, Status::Valid).await;

    let cases: Vec<(Option<&str>, Value, StatusCode, &str)> = vec![
        (
            None,
            ask(&agent_id, &jti, exp),
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
        ),
        (
            Some(&key),
            ask(&other_agent, &jti, exp),
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        ),
        (
            Some(&key),
            ask(&agent_id, "not-a-jti", exp),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            Some(&key),
            ask(&agent_id, &jti, now_s() - 10),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            Some(&key),
            ask(&agent_id, &jti, now_s() + 400 * 86_400),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        // No kid: a slot that would never follow the signing key's revocation.
        (
            Some(&key),
            json!({"agent_id": agent_id, "jti": jti, "expires_at": exp}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            Some(&key),
            json!({"agent_id": agent_id, "jti": jti, "expires_at": exp, "more": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            Some(&key),
            json!({"agent_id": agent_id}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        // This issuer's token with this jti is another agent's.
        (
            Some(&key),
            ask(&second_agent, &jti, exp),
            StatusCode::CONFLICT,
            "CONFLICT",
        ),
    ];
    for (k, body, status, code) in cases {
        let (st, v) = h
            .call(
                "POST",
                "/v1/status-lists/allocations",
                k,
                Some(body.clone()),
            )
            .await;
        assert_eq!(st, status, "{body} → {v}");
        assert_eq!(v["error"]["code"], code, "{body} → {v}");
    }
    // Another issuer's token with the same jti is another token: its own slot.
    let (st, theirs) = h
        .call(
            "POST",
            "/v1/status-lists/allocations",
            Some(&other_key),
            Some(json!({"agent_id": other_agent, "jti": jti, "expires_at": exp, "kid": other_kid})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{theirs}");
    assert_ne!(theirs["status"], v["status"]);
    // Suspended and revoked agents get no slot.
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent_id}/suspend"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let fresh = bonafide_core::ids::TokenId::from_random([7; 16]).to_string();
    let (st, v) = h
        .call(
            "POST",
            "/v1/status-lists/allocations",
            Some(&key),
            Some(ask(&agent_id, &fresh, exp)),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("AGENT_SUSPENDED")),
        "{v}"
    );
    // The slot already given flips with the agent.
    until_status(&h, &uri, idx, Status::Suspended).await;
    h.call(
        "POST",
        &format!("/v1/agents/{agent_id}/revoke"),
        Some(&key),
        None,
    )
    .await;
    let (st, v) = h
        .call(
            "POST",
            "/v1/status-lists/allocations",
            Some(&key),
            Some(ask(&agent_id, &fresh, exp)),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("AGENT_REVOKED")),
        "{v}"
    );
    until_status(&h, &uri, idx, Status::Invalid).await;
}

#[tokio::test]
async fn unknown_lists_are_a_404_and_the_key_is_published_apart() {
    let h = start_with_config(Config::default()).await;
    for id in ["999999", "0", "01", "-1", "abc", "4294967296", "1.0"] {
        let r = h
            .http
            .get(format!("{}/v1/status-lists/{id}", h.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{id}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "NOT_FOUND", "{id}");
    }
    // The status-list key signs lists only: not in the token JWKS, named by discovery.
    let lists = list_keys(&h).await;
    let tokens: Value = h
        .http
        .get(format!("{}/.well-known/jwks.json", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let conf: Value = h
        .http
        .get(format!("{}/.well-known/bonafide-configuration", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = conf["status_list_signing_kid"].as_str().unwrap();
    assert!(lists.key(kid).is_some());
    assert!(
        tokens["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["kid"] != kid),
        "{tokens}"
    );
}

/// An unchanged list is re-signed at least every five minutes (its `iat` is how a
/// receiver tells a list the registry still stands behind from an old one), as a new
/// version in the log; the statuses stay.
#[tokio::test]
async fn an_unchanged_list_is_resigned_every_five_minutes() {
    let clock = std::sync::Arc::new(bonafide_server::time::ManualClock::now());
    let h = start_with_config(Config {
        clock: clock.clone(),
        ..Config::default()
    })
    .await;
    let key = h.issuer("resign.example").await;
    let (_, token) = agent(&h, &key, "Bot").await;
    let (uri, idx) = slot(&token);
    let first = until_status(&h, &uri, idx, Status::Valid).await;
    // Four minutes: nothing new.
    clock.advance(Duration::from_secs(240));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (same, _, _) = fetch(&h, &uri).await;
    assert_eq!(version(&same), version(&first));
    // Past five: a newer version, signed then, same statuses.
    clock.advance(Duration::from_secs(61));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (claims, list, _) = fetch(&h, &uri).await;
        if version(&claims) > version(&first) {
            assert!(
                claims.iat >= first.iat + 300,
                "{} vs {}",
                claims.iat,
                first.iat
            );
            assert_eq!(list.get(idx).unwrap(), Status::Valid);
            break;
        }
        assert!(Instant::now() < deadline, "never re-signed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A token revoked under the id consent tokens had before every issuer-signed token
/// had one (`consent::legacy_token_id`): verify refuses it, and so does its list.
#[tokio::test]
async fn a_token_revoked_under_its_legacy_consent_id_is_revoked_in_its_list() {
    let h = start_with_config(Config::default()).await;
    let key = h.issuer("legacy.example").await;
    let (agent_id, _) = agent(&h, &key, "Bot").await;
    let issuer = h
        .state
        .store
        .issuer_by_name("legacy.example")
        .await
        .unwrap()
        .unwrap();
    let kid = signing_kid(&h, &key, issuer.id.as_str()).await;
    let allocate = |jti: String| {
        let h = &h;
        let key = key.clone();
        let agent_id = agent_id.clone();
        let kid = kid.clone();
        async move {
            let (st, v) = h
                .call(
                    "POST",
                    "/v1/status-lists/allocations",
                    Some(&key),
                    Some(json!({"agent_id": agent_id, "jti": jti, "expires_at": now_s() + 3600, "kid": kid})),
                )
                .await;
            assert_eq!(st, StatusCode::CREATED, "{v}");
            (
                v["status"]["status_list"]["uri"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                v["status"]["status_list"]["idx"].as_u64().unwrap(),
            )
        }
    };
    let new_jti =
        || bonafide_core::ids::TokenId::from_random(common::rand20()[..16].try_into().unwrap());
    let (revoked_jti, kept_jti) = (new_jti(), new_jti());
    // The revocation as it was recorded before the change: under the legacy id.
    let legacy = bonafide_core::consent::legacy_token_id(&issuer.id, revoked_jti.as_str());
    let agent: bonafide_core::ids::AgentId = agent_id.parse().unwrap();
    let mut entry = bonafide_core::audit::AuditEntry::new(
        bonafide_core::audit::EventType::TokenRevoked,
        h.state.now_ms(),
        bonafide_core::audit::Actor::Issuer {
            id: issuer.id.to_string(),
        },
    );
    entry.agent = Some(agent.to_string());
    entry.issuer = Some(issuer.id.to_string());
    let audit = bonafide_server::audit::record(&entry, Some(&agent), Some(&issuer.id)).unwrap();
    h.state
        .store
        .revoke_issuer_signed_token(
            &issuer.id,
            &bonafide_store::TokenRecord {
                jti: legacy,
                agent_id: agent,
                issuer_id: issuer.id.clone(),
                kid: "key-001".into(),
                issued_at_s: now_s(),
                expires_at_s: now_s() + 3600,
                revoked_at_ms: None,
            },
            h.state.now_ms(),
            &audit,
        )
        .await
        .unwrap();
    let (uri, idx) = allocate(revoked_jti.to_string()).await;
    let (kept_uri, kept_idx) = allocate(kept_jti.to_string()).await;
    until_status(&h, &uri, idx, Status::Invalid).await;
    until_status(&h, &kept_uri, kept_idx, Status::Valid).await;
}

/// The body of an allocation for a fresh `jti` of `agent_id`, an hour to live, with
/// `fields` (`kid`, `jkt`, `policy_id`, another `expires_at`…) set as given: a `null`
/// is sent as `null`.
fn allocation(agent_id: &str, fields: Value) -> Value {
    let mut body = json!({
        "agent_id": agent_id,
        "jti": bonafide_core::ids::TokenId::from_random(common::rand20()[..16].try_into().unwrap())
            .to_string(),
        "expires_at": now_s() + 3600,
    });
    for (name, value) in fields.as_object().unwrap() {
        body[name] = value.clone();
    }
    body
}

/// Asks for a slot with `key`.
async fn allocate_slot(h: &Harness, key: &str, body: Value) -> (StatusCode, Value) {
    h.call(
        "POST",
        "/v1/status-lists/allocations",
        Some(key),
        Some(body),
    )
    .await
}

/// The list and index an allocation's answer gives.
fn allocated_slot(v: &Value) -> (String, u64) {
    (
        v["status"]["status_list"]["uri"]
            .as_str()
            .unwrap()
            .to_owned(),
        v["status"]["status_list"]["idx"].as_u64().unwrap(),
    )
}

fn public_jwk(sk: &bonafide_core::keys::SigningKey) -> Value {
    serde_json::to_value(sk.verifying_key().jwk()).unwrap()
}

/// Registers a fresh issuer key for `issuer` (API key `api_key`) and returns its kid:
/// what an issuer-signed token's slot names (`kid` is required at allocation).
async fn signing_kid(h: &Harness, api_key: &str, issuer_id: &str) -> String {
    use bonafide_core::keys::{Algorithm, SigningKey};
    let sk = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let (st, v) = h.add_issuer_key(api_key, issuer_id, &sk).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    sk.kid().to_owned()
}

/// A token bound to an agent key is revoked in its list once that key is rotated out
/// and its grace has passed, though nothing changes at that moment (the publisher
/// keeps the grace's end), as verify refuses it then; the new key's token stays valid.
#[tokio::test]
async fn a_bound_token_is_revoked_in_its_list_when_its_rotated_key_is_past_its_grace() {
    use bonafide_core::keys::{Algorithm, SigningKey};
    let clock = std::sync::Arc::new(bonafide_server::time::ManualClock::now());
    let h = start_with_config(Config {
        clock: clock.clone(),
        ..Config::default()
    })
    .await;
    let key = h.issuer("bound.example").await;
    let (first, second) = (
        SigningKey::generate(Algorithm::EdDSA).unwrap(),
        SigningKey::generate(Algorithm::EdDSA).unwrap(),
    );
    let reg = h
        .register(
            &key,
            json!({"name": "Bound", "scopes": ["read:x"], "public_key": public_jwk(&first)}),
        )
        .await;
    let agent_id = reg["agent_id"].as_str().unwrap().to_owned();
    let (uri, idx) = slot(reg["token"].as_str().unwrap());
    until_status(&h, &uri, idx, Status::Valid).await;
    let (st, rotated) = h
        .call(
            "PUT",
            &format!("/v1/agents/{agent_id}/keys"),
            Some(&key),
            Some(json!({"public_key": public_jwk(&second), "grace_seconds": 60})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{rotated}");
    let (new_uri, new_idx) = slot(rotated["token"].as_str().unwrap());
    until_status(&h, &new_uri, new_idx, Status::Valid).await;
    // Within the grace the old token still verifies, so its list says valid: a round
    // of the publisher after the rotation changed nothing.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (_, list, _) = fetch(&h, &uri).await;
    assert_eq!(list.get(idx).unwrap(), Status::Valid);
    clock.advance(Duration::from_secs(61));
    until_status(&h, &uri, idx, Status::Invalid).await;
    let (_, list, _) = fetch(&h, &new_uri).await;
    assert_eq!(list.get(new_idx).unwrap(), Status::Valid);
}

/// An agent whose tokens must be bound (it has a key and no `allow_bearer_tokens`)
/// gets an issuer-signed token's slot only naming that key (`jkt`): a slot without
/// it would stay valid after the key's rotation, though verify refuses the token.
/// The slot that names it flips once the key is rotated out past its grace. An agent
/// that allows bearer tokens, or has no key, needs no `jkt`.
#[tokio::test]
async fn a_slot_for_an_agent_whose_tokens_must_be_bound_names_its_key() {
    use bonafide_core::keys::{Algorithm, SigningKey};
    let clock = std::sync::Arc::new(bonafide_server::time::ManualClock::now());
    let h = start_with_config(Config {
        clock: clock.clone(),
        ..Config::default()
    })
    .await;
    let iss = h.issuer_full("must-bind.example").await;
    let kid = signing_kid(&h, &iss.key, &iss.id).await;
    let (first, second, bearer_key) = (
        SigningKey::generate(Algorithm::EdDSA).unwrap(),
        SigningKey::generate(Algorithm::EdDSA).unwrap(),
        SigningKey::generate(Algorithm::EdDSA).unwrap(),
    );
    let register = |body: Value| {
        let h = &h;
        let key = iss.key.clone();
        async move {
            h.register(&key, body).await["agent_id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let bound =
        register(json!({"name": "Bound", "scopes": ["read:x"], "public_key": public_jwk(&first)}))
            .await;
    let bearer = register(json!({"name": "Bearer", "scopes": ["read:x"],
        "public_key": public_jwk(&bearer_key), "allow_bearer_tokens": true}))
    .await;
    let keyless = register(json!({"name": "Keyless", "scopes": ["read:x"]})).await;
    let allocate = |agent_id: &str, jkt: Option<&str>| {
        let mut fields = json!({"kid": kid});
        if let Some(jkt) = jkt {
            fields["jkt"] = json!(jkt);
        }
        allocate_slot(&h, &iss.key, allocation(agent_id, fields))
    };
    let (st, v) = allocate(&bound, None).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "INVALID_REQUEST", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`jkt` is required"),
        "{v}"
    );
    // Another agent's key is no key of this one.
    let (st, v) = allocate(&bound, Some(bearer_key.kid())).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    for (agent_id, jkt) in [
        (&bearer, None),
        (&bearer, Some(bearer_key.kid())),
        (&keyless, None),
    ] {
        let (st, v) = allocate(agent_id, jkt).await;
        assert_eq!(st, StatusCode::CREATED, "{agent_id} {jkt:?}: {v}");
    }
    let (st, v) = allocate(&bound, Some(first.kid())).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (uri, idx) = allocated_slot(&v);
    until_status(&h, &uri, idx, Status::Valid).await;
    let (st, rotated) = h
        .call(
            "PUT",
            &format!("/v1/agents/{bound}/keys"),
            Some(&iss.key),
            Some(json!({"public_key": public_jwk(&second), "grace_seconds": 60})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{rotated}");
    // The old key, within its grace, still gets a slot; the new one does.
    for jkt in [first.kid(), second.kid()] {
        let (st, v) = allocate(&bound, Some(jkt)).await;
        assert_eq!(st, StatusCode::CREATED, "{jkt}: {v}");
    }
    clock.advance(Duration::from_secs(61));
    until_status(&h, &uri, idx, Status::Invalid).await;
    let (st, v) = allocate(&bound, Some(first.kid())).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (st, v) = allocate(&bound, None).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
}

/// An issuer-signed token whose slot names the key that signs it (`kid`) is revoked
/// in its list when that key is revoked; another key's token is not. A `kid` or `jkt`
/// that is not the issuer's or the agent's is refused at allocation.
#[tokio::test]
async fn an_issuer_signed_token_is_revoked_in_its_list_with_the_key_that_signed_it() {
    use bonafide_core::keys::{Algorithm, SigningKey};
    let h = start_with_config(Config::default()).await;
    let iss = h.issuer_full("keyed.example").await;
    let other = h.issuer_full("other-keyed.example").await;
    let (agent_id, _) = agent(&h, &iss.key, "Bot").await;
    let mut kids = Vec::new();
    for (who, sk) in [
        (&iss, SigningKey::generate(Algorithm::EdDSA).unwrap()),
        (&iss, SigningKey::generate(Algorithm::EdDSA).unwrap()),
        (&other, SigningKey::generate(Algorithm::EdDSA).unwrap()),
    ] {
        let mut jwk = public_jwk(&sk);
        jwk.as_object_mut().unwrap().remove("kid");
        let proof = h.key_proof(&who.id, &sk);
        let (st, v) = h
            .call(
                "POST",
                "/v1/issuer/keys",
                Some(&who.key),
                Some(json!({"jwk": jwk, "proof": proof})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        kids.push(sk.kid().to_owned());
    }
    // `None` is sent as `null`, as a client may.
    let allocate = |kid: Option<&str>, jkt: Option<&str>| {
        allocate_slot(
            &h,
            &iss.key,
            allocation(&agent_id, json!({"kid": kid, "jkt": jkt})),
        )
    };
    let (st, signed) = allocate(Some(&kids[0]), None).await;
    assert_eq!(st, StatusCode::CREATED, "{signed}");
    let (st, by_other_key) = allocate(Some(&kids[1]), None).await;
    assert_eq!(st, StatusCode::CREATED, "{by_other_key}");
    // Another issuer's kid, an unknown one, none, a jkt that is no key of the agent:
    // 422.
    for (kid, jkt) in [
        (Some(kids[2].as_str()), None),
        (Some("no-such-kid"), None),
        (None, None),
        (Some(kids[1].as_str()), Some("no-such-jkt")),
    ] {
        let (st, v) = allocate(kid, jkt).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{kid:?} {jkt:?}: {v}");
        assert_eq!(v["error"]["code"], "INVALID_REQUEST", "{v}");
    }
    let (uri, idx) = allocated_slot(&signed);
    let (other_uri, other_idx) = allocated_slot(&by_other_key);
    until_status(&h, &uri, idx, Status::Valid).await;
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/issuer/keys/{}/revoke", kids[0]),
            Some(&iss.key),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    until_status(&h, &uri, idx, Status::Invalid).await;
    let (_, list, _) = fetch(&h, &other_uri).await;
    assert_eq!(list.get(other_idx).unwrap(), Status::Valid);
    // A revoked key can no longer be named.
    let (st, _) = allocate(Some(&kids[0]), None).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn a_revoked_policy_flips_every_slot_of_a_token_carrying_it() {
    let h = start_with_config(Config::default()).await;
    let iss = h.issuer_full("policies.example").await;
    let key = iss.key.clone();
    let kid = signing_kid(&h, &key, &iss.id).await;
    let policy = |id: &str| json!({"version": "pol.v0.2", "id": id, "actions": ["read:x"]});
    let register = |name: &'static str, policy_id: &'static str| {
        let h = &h;
        let key = &key;
        async move {
            let reg = h
                .register(
                    key,
                    json!({"name": name, "scopes": ["read:x"], "policy": policy(policy_id)}),
                )
                .await;
            (
                reg["agent_id"].as_str().unwrap().to_owned(),
                reg["token"].as_str().unwrap().to_owned(),
            )
        }
    };
    // Registry-minted tokens with the revoked policy and with another one.
    let (agent_id, carrying) = register("Carrying", "pol_lists_1").await;
    let (_, other) = register("Other", "pol_lists_2").await;
    let (uri, idx) = slot(&carrying);
    let (other_uri, other_idx) = slot(&other);
    // An issuer's own token's slot, with and without the policy's id.
    let allocate = |policy_id: Option<&str>| {
        let mut fields = json!({"kid": kid});
        if let Some(p) = policy_id {
            fields["policy_id"] = json!(p);
        }
        let body = allocation(&agent_id, fields);
        let (h, key) = (&h, &key);
        async move {
            let (st, v) = allocate_slot(h, key, body).await;
            assert_eq!(st, StatusCode::CREATED, "{v}");
            allocated_slot(&v)
        }
    };
    let (own_uri, own_idx) = allocate(Some("pol_lists_1")).await;
    let (plain_uri, plain_idx) = allocate(None).await;
    // A policy id that is not one is refused.
    let unused =
        bonafide_core::ids::TokenId::from_random(common::rand20()[..16].try_into().unwrap())
            .to_string();
    for bad in [
        json!(""),
        json!("x".repeat(129)),
        json!("a\u{200b}b"),
        json!(7),
    ] {
        let (st, v) = h
            .call(
                "POST",
                "/v1/status-lists/allocations",
                Some(&key),
                Some(json!({"agent_id": agent_id, "jti": unused, "expires_at": now_s() + 60, "kid": kid, "policy_id": bad})),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
    }
    until_status(&h, &uri, idx, Status::Valid).await;
    until_status(&h, &own_uri, own_idx, Status::Valid).await;

    let (st, v) = h
        .call(
            "POST",
            "/v1/policies/revoke",
            Some(&key),
            Some(json!({"policy_id": "pol_lists_1"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    until_status(&h, &uri, idx, Status::Invalid).await;
    until_status(&h, &own_uri, own_idx, Status::Invalid).await;
    // The other policy's token and the issuer's token without a policy stay valid.
    for (u, i) in [(&other_uri, other_idx), (&plain_uri, plain_idx)] {
        let (_, list, _) = fetch(&h, u).await;
        assert_eq!(list.get(i).unwrap(), Status::Valid, "{u} {i}");
    }
}

/// The same jti asked for again keeps its slot only with the same dependencies: a
/// second ask naming a policy (or key) the first did not is a 409, not a slot that
/// would never flip with it.
#[tokio::test]
async fn a_jti_asked_again_with_other_dependencies_is_a_conflict() {
    let h = start_with_config(Config::default()).await;
    let iss = h.issuer_full("again.example").await;
    let key = iss.key.clone();
    let kid = signing_kid(&h, &key, &iss.id).await;
    let (agent_id, _) = agent(&h, &key, "Bot").await;
    let jti = bonafide_core::ids::TokenId::from_random(common::rand20()[..16].try_into().unwrap())
        .to_string();
    let exp = now_s() + 3600;
    let ask = |policy_id: Option<&str>| {
        let mut body = json!({"agent_id": agent_id, "jti": jti, "expires_at": exp, "kid": kid});
        if let Some(p) = policy_id {
            body["policy_id"] = json!(p);
        }
        body
    };
    let (st, first) = h
        .call(
            "POST",
            "/v1/status-lists/allocations",
            Some(&key),
            Some(ask(None)),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{first}");
    let (st, same) = h
        .call(
            "POST",
            "/v1/status-lists/allocations",
            Some(&key),
            Some(ask(None)),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{same}");
    assert_eq!(same["status"], first["status"]);
    let (st, other) = h
        .call(
            "POST",
            "/v1/status-lists/allocations",
            Some(&key),
            Some(ask(Some("pol_later"))),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{other}");
    assert_eq!(other["error"]["code"], "CONFLICT", "{other}");
}

/// A delegated child carrying a narrower policy of another `id` flips when its
/// parent's policy is revoked (the exchange records the parent's policy revocation id
/// among the child's entry's ancestors).
#[tokio::test]
async fn a_child_with_its_own_policy_flips_when_its_parents_policy_is_revoked() {
    let h = start_with_config(Config::default()).await;
    let key = h.issuer("family.example").await;
    let policy = |id: &str| json!({"version": "pol.v0.2", "id": id, "actions": ["read:x"]});
    let root = h
        .register(
            &key,
            json!({"name": "Root", "scopes": ["read:x"], "policy": policy("pol_parent")}),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, sub) = agent(&h, &key, "Sub").await;
    let own = policy("pol_child").to_string();
    let resp = h
        .http
        .post(format!("{}/v1/token", h.base))
        .header("authorization", format!("Bearer {key}"))
        .form(&[
            ("grant_type", GRANT),
            ("subject_token", root.as_str()),
            ("subject_token_type", JWT),
            ("actor_token", sub.as_str()),
            ("actor_token_type", JWT),
            ("policy", own.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    let child = v["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_owned();
    let child_claims: Value = serde_json::from_slice(
        &bonafide_core::b64::decode(child.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(child_claims["policy"]["id"], "pol_child");
    let (uri, idx) = slot(&child);
    until_status(&h, &uri, idx, Status::Valid).await;
    let (st, v) = h
        .call(
            "POST",
            "/v1/policies/revoke",
            Some(&key),
            Some(json!({"policy_id": "pol_parent"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    until_status(&h, &uri, idx, Status::Invalid).await;
}

/// Allocations count against a bucket per issuer (`allocations`), beside the key's
/// own limit: over it 429 `RATE_LIMITED` with the fields every limit sends; another
/// issuer's bucket is its own.
#[tokio::test]
async fn allocations_are_limited_per_issuer() {
    let mut limits = bonafide_server::ratelimit::RateLimits::seeds();
    limits.apply("allocations=2/min").unwrap();
    let h = start_with_config(Config {
        rate_limits: limits,
        ..Config::default()
    })
    .await;
    let me = h.issuer_full("busy.example").await;
    let them = h.issuer_full("calm.example").await;
    let kid = signing_kid(&h, &me.key, &me.id).await;
    let their_kid = signing_kid(&h, &them.key, &them.id).await;
    let (agent_id, _) = agent(&h, &me.key, "Bot").await;
    let (their_agent, _) = agent(&h, &them.key, "Theirs").await;
    let ask = |key: &str, agent: &str, kid: &str| {
        let body = json!({
            "agent_id": agent,
            "jti": bonafide_core::ids::TokenId::from_random(
                common::rand20()[..16].try_into().unwrap()
            )
            .to_string(),
            "expires_at": now_s() + 3600,
            "kid": kid,
        });
        h.http
            .post(format!("{}/v1/status-lists/allocations", h.base))
            .bearer_auth(key)
            .json(&body)
            .send()
    };
    for left in [1, 0] {
        let resp = ask(&me.key, &agent_id, &kid).await.unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let policy = resp.headers()["ratelimit-policy"].to_str().unwrap();
        assert!(policy.contains("\"allocations\";q=2;w=60"), "{policy}");
        let current = resp.headers()["ratelimit"].to_str().unwrap();
        assert!(
            current.contains(&format!("\"allocations\";r={left};")),
            "{current}"
        );
    }
    let resp = ask(&me.key, &agent_id, &kid).await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    assert!(
        resp.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .contains("\"allocations\";r=0;")
    );
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "RATE_LIMITED", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("status-list allocations of this issuer"),
        "{v}"
    );
    // The issuer's other calls are not refused; another issuer allocates.
    let (st, _) = h.call("GET", "/v1/issuer", Some(&me.key), None).await;
    assert_eq!(st, StatusCode::OK);
    let resp = ask(&them.key, &their_agent, &their_kid).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
}

/// Several lists due in one round are published under one checkpoint: an agent whose
/// tokens sit in two lists is revoked, and both new versions name the same tree size
/// (each its own entry in it), not a checkpoint each.
#[tokio::test]
async fn lists_due_together_are_published_under_one_checkpoint() {
    let h = start_with_config(Config {
        status_list_size: 1024,
        ..Config::default()
    })
    .await;
    let iss = h.issuer_full("many.example").await;
    let kid = signing_kid(&h, &iss.key, &iss.id).await;
    let (agent_id, token) = agent(&h, &iss.key, "Bot").await;
    // A list takes new slots until half full: 512 of 1,024. Allocate until this
    // agent's tokens sit in two lists.
    let mut slots: BTreeMap<String, u64> = BTreeMap::new();
    let (uri, idx) = slot(&token);
    slots.insert(uri, idx);
    for _ in 0..1100 {
        if slots.len() >= 2 {
            break;
        }
        let (st, v) = h
            .call(
                "POST",
                "/v1/status-lists/allocations",
                Some(&iss.key),
                Some(json!({
                    "agent_id": agent_id,
                    "jti": bonafide_core::ids::TokenId::from_random(
                        common::rand20()[..16].try_into().unwrap()
                    )
                    .to_string(),
                    "expires_at": now_s() + 3600,
                    "kid": kid,
                })),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        let uri = v["status"]["status_list"]["uri"].as_str().unwrap();
        slots
            .entry(uri.to_owned())
            .or_insert(v["status"]["status_list"]["idx"].as_u64().unwrap());
    }
    assert_eq!(
        slots.len(),
        2,
        "the allocations never reached a second list"
    );
    for (uri, idx) in &slots {
        until_status(&h, uri, *idx, Status::Valid).await;
    }
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent_id}/revoke"),
            Some(&iss.key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let mut positions = Vec::new();
    for (uri, idx) in &slots {
        let claims = until_status(&h, uri, *idx, Status::Invalid).await;
        positions.push(status_list::log_claims(&claims).unwrap().1);
    }
    assert_ne!(positions[0].index, positions[1].index);
    assert_eq!(
        positions[0].tree_size, positions[1].tree_size,
        "two checkpoints for one round: {positions:?}"
    );
    assert!(positions.iter().all(|p| p.index < p.tree_size));
}

/// A list that takes no new slots and whose every entry is purged (past `exp` and the
/// validity margin) is retired: no longer signed, and its URI answers 404 saying so;
/// the open list goes on.
#[tokio::test]
async fn a_closed_list_whose_tokens_all_expired_is_retired() {
    let clock = std::sync::Arc::new(bonafide_server::time::ManualClock::now());
    let h = start_with_config(Config {
        status_list_size: 1024,
        clock: clock.clone(),
        ..Config::default()
    })
    .await;
    let iss = h.issuer_full("retiring.example").await;
    let kid = signing_kid(&h, &iss.key, &iss.id).await;
    let (agent_id, token) = agent(&h, &iss.key, "Bot").await;
    let allocate = || {
        let body = allocation(
            &agent_id,
            json!({"kid": kid, "expires_at": h.state.now_ms() / 1000 + 600}),
        );
        let (h, key) = (&h, &iss.key);
        async move {
            let (st, v) = allocate_slot(h, key, body).await;
            assert_eq!(st, StatusCode::CREATED, "{v}");
            allocated_slot(&v)
        }
    };
    // Fill the first list to half (it then takes no new slots) and open a second.
    let (first, first_idx) = slot(&token);
    let mut second = None;
    for _ in 0..1100 {
        let (uri, idx) = allocate().await;
        if uri != first {
            second = Some((uri, idx));
            break;
        }
    }
    let (second, second_idx) = second.expect("the allocations never reached a second list");
    until_status(&h, &first, first_idx, Status::Valid).await;
    until_status(&h, &second, second_idx, Status::Valid).await;

    // Every token expires (the registered one after a day), then the margin passes
    // and the hourly purge runs (called here rather than waited for).
    clock.advance(Duration::from_secs(26 * 3600));
    let by = h.state.now_ms() / 1000 - h.state.config.leeway_secs - 3600;
    assert!(h.state.store.purge_status_entries(by).await.unwrap() >= 512);
    let get = |uri: String| {
        let h = &h;
        async move {
            let resp = h.http.get(uri).send().await.unwrap();
            let status = resp.status();
            (status, resp.text().await.unwrap())
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (st, body) = get(first.clone()).await;
        if st == StatusCode::NOT_FOUND {
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["error"]["code"], "NOT_FOUND", "{v}");
            assert!(
                v["error"]["message"].as_str().unwrap().contains("retired"),
                "{v}"
            );
            break;
        }
        assert_eq!(st, StatusCode::OK, "{body}");
        assert!(
            Instant::now() < deadline,
            "the first list was never retired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The open list is still served, and new slots land there, never in the retired.
    let (st, _) = get(second.clone()).await;
    assert_eq!(st, StatusCode::OK);
    let (uri, _) = allocate().await;
    assert_eq!(uri, second);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (st, _) = get(first.clone()).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "published again after retiring");
}

/// Allocates the slot of a token `jti` of `agent` (issuer `issuer`) bound to its key
/// `jkt`, as the registry does before signing it: straight through the server's
/// allocator, so the agent and key need not be committed (or loadable).
async fn allocate_bound(
    h: &Harness,
    agent: &bonafide_core::ids::AgentId,
    issuer: &bonafide_core::ids::IssuerId,
    jkt: &str,
) -> status_list::StatusRef {
    use bonafide_server::status_lists::{DependsOn, entry_of};
    let jti = bonafide_core::ids::TokenId::from_random(common::rand20()[..16].try_into().unwrap());
    let entry = entry_of(
        &jti,
        agent,
        issuer,
        now_s() + 3600,
        DependsOn {
            keys: vec![bonafide_store::AncestorKey {
                agent: agent.clone(),
                issuer_kid: None,
                jkt: Some(jkt.to_owned()),
                policy_revocation: None,
            }],
            ..Default::default()
        },
    );
    let claim = h
        .state
        .status_lists
        .allocate(&h.state, &entry)
        .await
        .unwrap();
    claim.status_list.expect("in a status list")
}

/// A registration allocates its token's slot before its agent and key commit: a
/// publisher round that reads the slot in between finds no such key, and must not
/// publish the token as revoked (it did, until the key's commit read it again).
#[tokio::test]
async fn a_slot_read_before_its_agents_key_commits_is_not_published_revoked() {
    use bonafide_core::ids::{AgentId, IssuerId};
    let h = start_with_config(Config::default()).await;
    let key = h.issuer("lists.example").await;
    let (revoked_agent, revoked_token) = agent(&h, &key, "Revoked").await;
    let (uri, revoked_idx) = slot(&revoked_token);
    until_status(&h, &uri, revoked_idx, Status::Valid).await;

    // The slot of a token bound to a key of an agent not committed yet.
    let pending = AgentId::from_random(common::rand20()[..16].try_into().unwrap());
    let pending_ref = allocate_bound(
        &h,
        &pending,
        &IssuerId::from_random([9; 16]),
        "not-registered-yet",
    )
    .await;
    assert_eq!(pending_ref.uri, uri, "one list is shared");

    // A revocation allocated after it: a round that publishes the revocation has
    // read the pending slot too.
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/agents/{revoked_agent}/revoke"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    until_status(&h, &uri, revoked_idx, Status::Invalid).await;
    let (_, list, _) = fetch(&h, &uri).await;
    assert_eq!(
        list.get(pending_ref.idx).unwrap(),
        Status::Valid,
        "a token whose key is not committed yet is not revoked"
    );
}

/// A key stored but that no longer loads (its JWK edited behind the server's back, as
/// a damaged row or a dropped key form would leave it) fails every verify: a slot
/// bound to it is published revoked, unlike a key not stored yet.
#[tokio::test]
async fn a_slot_bound_to_a_stored_key_that_no_longer_loads_is_published_revoked() {
    use bonafide_core::keys::{Algorithm, SigningKey};
    let h = start_with_config(Config {
        // The agent's keys are read again soon after the edit below.
        key_refresh: Duration::from_millis(200),
        ..Config::default()
    })
    .await;
    let me = h.issuer_full("lists.example").await;
    let sk = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let reg = h
        .register(
            &me.key,
            json!({"name": "Bound", "scopes": ["read:x"], "public_key": public_jwk(&sk)}),
        )
        .await;
    let agent_id = reg["agent_id"].as_str().unwrap().to_owned();
    let jkt = sk.kid().to_owned();
    {
        let mut db = h.db().await;
        let done = sqlx::query("UPDATE agent_keys SET jwk = ? WHERE agent_id = ? AND jkt = ?")
            .bind(r#"{"kty":"OKP","crv":"Ed25519","x":"AAAA"}"#)
            .bind(&agent_id)
            .bind(&jkt)
            .execute(&mut db)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let agent = bonafide_core::ids::AgentId::try_from(agent_id.as_str()).unwrap();
    let issuer = bonafide_core::ids::IssuerId::try_from(me.id.as_str()).unwrap();
    let slot = allocate_bound(&h, &agent, &issuer, &jkt).await;
    until_status(&h, &slot.uri, slot.idx, Status::Invalid).await;
}
