//! Scheduled rotation of the registry's signing key (issue 18 item 7) over HTTP, with
//! a manual clock: the next key is in the JWKS at least the JWKS cache lifetime (plus
//! `key_refresh`) before it signs anything, the old key stays while its tokens live,
//! and both steps are audit entries.

use std::sync::Arc;
use std::time::Duration;

use bonafide_server::time::ManualClock;
use bonafide_server::{Config, Server};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Harness, config, start_with_config};
use crate::rate_limits::audit_entries;

async fn jwks_kids(h: &Harness) -> Vec<String> {
    let resp = h
        .http
        .get(format!("{}/.well-known/jwks.json", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["cache-control"],
        format!(
            "public, max-age={}",
            bonafide_server::rotation::PUBLISH_AHEAD_S
        )
    );
    let v: Value = resp.json().await.unwrap();
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let bytes = bonafide_core::b64::decode(header).unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    v["kid"].as_str().unwrap().to_owned()
}

async fn issue(h: &Harness, key: &str, agent: &str) -> String {
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent}/issue-token"),
            Some(key),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v["token"].as_str().unwrap().to_owned()
}

/// Polls `until` for up to 10 s (the schedule is looked at every second).
async fn eventually<F, Fut>(what: &str, mut until: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..100 {
        if until().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not within 10 s: {what}");
}

#[tokio::test]
async fn the_next_key_is_published_ahead_and_signs_only_at_the_end_of_the_lifetime() {
    let clock = Arc::new(ManualClock::now());
    let lifetime = Duration::from_secs(3600);
    let h = start_with_config(Config {
        signing_key_lifetime: Some(lifetime),
        clock: clock.clone(),
        ..config()
    })
    .await;
    let issuer = h.issuer("rotating.example").await;
    let reg = h
        .register(&issuer, json!({"name": "Rotor", "scopes": ["read:x"]}))
        .await;
    let agent = reg["agent_id"].as_str().unwrap().to_owned();
    let first = h.state.keys().active.kid().to_owned();
    assert_eq!(jwks_kids(&h).await, std::slice::from_ref(&first));
    let ahead = bonafide_server::rotation::publish_ahead(h.state.config.key_refresh);
    assert_eq!(ahead, Duration::from_secs(305));

    // Just before the publication time: nothing happens (two ticks of the schedule).
    clock.advance(lifetime - ahead - Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(jwks_kids(&h).await, std::slice::from_ref(&first));

    // At it: the next key is published, and signs nothing yet.
    clock.advance(Duration::from_secs(1));
    eventually("the next key published", || async {
        jwks_kids(&h).await.len() == 2
    })
    .await;
    let kids = jwks_kids(&h).await;
    let next = kids.iter().find(|k| **k != first).unwrap().clone();
    let old_token = issue(&h, &issuer, &agent).await;
    assert_eq!(kid_of(&old_token), first);

    // Until the end of the lifetime the old key signs, the new one only waits.
    clock.advance(ahead - Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(kid_of(&issue(&h, &issuer, &agent).await), first);

    // At the end: the next key signs; the old one stays published (its tokens live).
    clock.advance(Duration::from_secs(1));
    let mut signed = String::new();
    for _ in 0..100 {
        signed = issue(&h, &issuer, &agent).await;
        if kid_of(&signed) == next {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        kid_of(&signed),
        next,
        "the next key signs at the lifetime's end"
    );
    let kids = jwks_kids(&h).await;
    assert!(kids.contains(&first) && kids.contains(&next), "{kids:?}");
    for token in [&old_token, &signed] {
        assert_eq!(h.verify_token(token).await["valid"], true);
    }

    // Both steps are in the audit log, by the registry, naming the new key.
    let entries = audit_entries(&h).await;
    let registry = serde_json::to_value(bonafide_core::audit::Actor::Registry).unwrap();
    let steps: Vec<&str> = entries
        .iter()
        .filter(|e| e["kid"] == next.as_str() && e["actor"] == registry)
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["key.added", "key.rotated"], "{entries:?}");

    // The next rotation is scheduled from the new key's own start.
    assert!(h.state.keys().next.is_none());
}

#[tokio::test]
async fn a_second_replica_neither_publishes_nor_rotates_twice() {
    let clock = Arc::new(ManualClock::now());
    let lifetime = Duration::from_secs(3600);
    let cfg = Config {
        signing_key_lifetime: Some(lifetime),
        clock: clock.clone(),
        ..config()
    };
    let h = start_with_config(cfg.clone()).await;
    let other = Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        cfg,
        Arc::clone(&h.state.store),
    )
    .await
    .unwrap();
    let other_state = other.state();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(other.run(async {
        let _ = stopped.await;
    }));
    let first = h.state.keys().active.kid().to_owned();
    clock.advance(lifetime);
    // Both look at the schedule every second: one next key, published once.
    eventually("a next key", || async { h.state.keys().next.is_some() }).await;
    clock.advance(Duration::from_secs(400));
    eventually("rotated", || async { h.state.keys().active.kid() != first }).await;
    // The other replica reads it from the store (its refresh).
    let new = h.state.keys().active.kid().to_owned();
    eventually("the replica follows", || async {
        other_state.refresh().await.unwrap();
        other_state.keys().active.kid() == new
    })
    .await;
    let entries = audit_entries(&h).await;
    let count = |t: &str| entries.iter().filter(|e| e["type"] == t).count();
    assert_eq!(count("key.rotated"), 1, "{entries:?}");
    let published = entries
        .iter()
        .filter(|e| {
            e["type"] == "key.added"
                && e["note"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("next signing key"))
        })
        .count();
    assert_eq!(published, 1, "{entries:?}");
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_lifetime_too_short_to_publish_ahead_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = bonafide_store::SqliteStore::open(dir.path()).await.unwrap();
    let err = Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        Config {
            signing_key_lifetime: Some(Duration::from_secs(600)),
            ..config()
        },
        Arc::new(store),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("signing_key_lifetime must be at least 1 hour"),
        "{err}"
    );
}
