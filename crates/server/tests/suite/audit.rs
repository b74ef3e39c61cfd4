//! End-to-end tests of the audit log over HTTP: the real server on 127.0.0.1:0 with a
//! temp SQLite data dir, checked the way an outside monitor would check it (signed
//! checkpoints opened with the log key from the discovery document, proofs checked
//! with core's Merkle verifiers, roots recomputed from the served leaf hashes).

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bonafide_core::audit::{Actor, AuditEntry, Decision, EventType, token_sha256};
use bonafide_core::keys::Algorithm;
use bonafide_core::merkle::{self, Hash};
use bonafide_core::note::{self, NoteSigner, NoteVerifier};
use bonafide_core::tlog_proof;
use bonafide_server::Config;
use common::{Harness, start_with_config};
use reqwest::StatusCode;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------
// Helpers

/// A cloneable HTTP client for the server (for spawned tasks).
#[derive(Clone)]
struct Api {
    base: String,
    http: reqwest::Client,
}

/// A response with its headers and raw body.
struct Resp {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    /// The body as an error answer with `code`.
    fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{}", self.text());
        let v = self.json();
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
    }
}

impl Api {
    fn of(h: &Harness) -> Self {
        Api {
            base: h.base.clone(),
            http: h.http.clone(),
        }
    }

    async fn send(&self, method: &str, path: &str, key: Option<&str>, body: Option<Value>) -> Resp {
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "GET" => self.http.get(&url),
            "POST" => self.http.post(&url),
            _ => unreachable!(),
        };
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        Resp {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: resp.bytes().await.unwrap().to_vec(),
        }
    }

    async fn get(&self, path: &str, key: Option<&str>) -> Resp {
        self.send("GET", path, key, None).await
    }

    /// The latest checkpoint, opened with the log key: signature, origin and syntax.
    async fn checkpoint(&self, log: &Log) -> Cp {
        let r = self.get("/v1/audit/checkpoint", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert!(
            r.header("content-type").starts_with("text/plain"),
            "{}",
            r.header("content-type")
        );
        let text = r.text();
        let opened = note::open_checkpoint(&text, &log.origin, std::slice::from_ref(&log.verifier))
            .unwrap_or_else(|e| panic!("checkpoint does not open ({e}):\n{text}"));
        assert!(opened.note().is_signed_by(&log.verifier));
        let c = opened.checkpoint();
        assert!(c.extensions.is_empty(), "{text}");
        Cp {
            size: c.size,
            root: c.root,
            note: text,
        }
    }
}

/// The log's identity, from the discovery document.
#[derive(Clone)]
struct Log {
    origin: String,
    verifier: NoteVerifier,
}

/// A checkpoint as received, after it was opened and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cp {
    size: u64,
    root: Hash,
    note: String,
}

/// One row of `/v1/audit/entries`.
#[derive(Debug, Clone)]
struct Row {
    index: u64,
    leaf: Hash,
    entry: Option<String>,
}

async fn log_of(h: &Harness) -> Log {
    let (st, conf) = h
        .call("GET", "/.well-known/bonafide-configuration", None, None)
        .await;
    assert_eq!(st, StatusCode::OK, "{conf}");
    let a = &conf["audit_log"];
    let origin = a["origin"].as_str().unwrap().to_owned();
    let verifier = NoteVerifier::from_key_string(a["log_key"].as_str().unwrap()).unwrap();
    Log { origin, verifier }
}

/// Polls the checkpoint until one covers at least `min` entries (the background
/// signer runs every `checkpoint_interval`). Generous bound: this checks that one
/// appears, not how fast.
async fn wait_checkpoint(api: &Api, log: &Log, min: u64) -> Cp {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let cp = api.checkpoint(log).await;
        if cp.size >= min {
            return cp;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint covering {min} entries was signed (latest has {})",
            cp.size
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The stored log size (the test's oracle; everything else goes over HTTP).
async fn size(h: &Harness) -> u64 {
    h.state.store.audit_size().await.unwrap()
}

/// Standard base64 made safe for a query string.
fn q(b64: &str) -> String {
    b64.replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

fn hash_b64(v: &Value) -> Hash {
    Hash::from_base64(v.as_str().unwrap()).unwrap_or_else(|e| panic!("{v}: {e}"))
}

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array().unwrap().iter().map(hash_b64).collect()
}

/// Parses a served entry: RFC 8785 canonical (by core's check and by the
/// independent serializer below), of this version.
fn decode(text: &str) -> AuditEntry {
    let value: Value = serde_json::from_str(text).unwrap();
    assert_eq!(jcs(&value), text, "entry is not RFC 8785 canonical");
    AuditEntry::from_canonical(text.as_bytes())
        .unwrap_or_else(|e| panic!("entry is not a canonical audit entry ({e}): {text}"))
}

/// RFC 8785 (JCS) serialization of the JSON entries hold (no floats), written here
/// from the RFC so that it does not share code with the server's serializer:
/// members sorted by UTF-16 code units, no whitespace, strings escaped as ECMAScript
/// `JSON.stringify` does.
fn jcs(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            assert!(n.is_i64() || n.is_u64(), "entries hold integers only: {n}");
            n.to_string()
        }
        Value::String(s) => jcs_string(s),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(jcs).collect();
            format!("[{}]", inner.join(","))
        }
        Value::Object(members) => {
            let mut keys: Vec<&String> = members.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            let inner: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", jcs_string(k), jcs(&members[k.as_str()])))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
    }
}

fn jcs_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `GET /v1/audit/entries?start&end` as `key`; checks indexes, leaf hashes and that
/// every entry shown is canonical.
async fn entries(api: &Api, start: u64, end: u64, key: Option<&str>) -> Vec<Row> {
    let r = api
        .get(&format!("/v1/audit/entries?start={start}&end={end}"), key)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    let rows: Vec<Row> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| Row {
            index: e["index"].as_u64().unwrap(),
            leaf: hash_b64(&e["leaf_hash"]),
            entry: e.get("entry").map(|t| t.as_str().unwrap().to_owned()),
        })
        .collect();
    assert_eq!(
        rows.iter().map(|r| r.index).collect::<Vec<_>>(),
        (start..end).collect::<Vec<_>>()
    );
    for row in &rows {
        if let Some(text) = &row.entry {
            decode(text);
            assert_eq!(
                row.leaf,
                merkle::leaf_hash(text.as_bytes()),
                "leaf hash of entry {}",
                row.index
            );
        }
    }
    rows
}

/// Every entry of the log, in pages of 1000.
async fn all_entries(h: &Harness, key: Option<&str>) -> Vec<Row> {
    let api = Api::of(h);
    let n = size(h).await;
    let mut out = Vec::new();
    let mut start = 0;
    while start < n {
        let end = (start + 1000).min(n);
        out.extend(entries(&api, start, end, key).await);
        start = end;
    }
    out
}

/// The one entry at `index`, admin view, parsed.
async fn entry_at(h: &Harness, index: u64) -> (AuditEntry, String) {
    let rows = entries(&Api::of(h), index, index + 1, Some(&h.admin)).await;
    let text = rows[0].entry.clone().expect("admins see every entry");
    (decode(&text), text)
}

/// RFC 6962 Merkle Tree Hash, computed here from leaf hashes (independently of the
/// server's stored interior hashes).
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => merkle::empty_tree_hash(),
        1 => leaves[0],
        n => {
            // The largest power of two smaller than n.
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            merkle::node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

async fn issuer_with_id(h: &Harness, name: &str) -> (String, String) {
    let (st, v) = h
        .call(
            "POST",
            "/v1/issuers",
            Some(&h.admin),
            Some(json!({"name": name})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    (
        v["issuer_id"].as_str().unwrap().to_owned(),
        v["api_key"].as_str().unwrap().to_owned(),
    )
}

/// Registers an agent; (agent id, token).
async fn agent(h: &Harness, key: &str, name: &str, scopes: &[&str]) -> (String, String) {
    let v = h
        .register(key, json!({"name": name, "scopes": scopes}))
        .await;
    (
        v["agent_id"].as_str().unwrap().to_owned(),
        v["token"].as_str().unwrap().to_owned(),
    )
}

fn assert_no_secret(text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!s.is_empty());
        assert!(!text.contains(s), "entry holds a secret `{s}`: {text}");
        // Nor the token's signature or an API key's random part on its own.
        if let Some((_, sig)) = s.rsplit_once('.') {
            assert!(!text.contains(sig), "entry holds a token signature: {text}");
        }
        if let Some(secret) = s.strip_prefix("bfk_").and_then(|r| r.split_once('_')) {
            assert!(!text.contains(secret.1), "entry holds a key secret: {text}");
        }
    }
}

/// EdDSA, and no status lists published: these tests count the log's entries
/// exactly, and the publisher's entries (tested in `status_lists`) would interleave.
fn edd_config() -> Config {
    Config {
        signing_alg: Algorithm::EdDSA,
        publish_status_lists: false,
        ..common::config()
    }
}

fn unpublished() -> Config {
    Config {
        publish_status_lists: false,
        ..common::config()
    }
}

fn fast_checkpoints() -> Config {
    Config {
        checkpoint_interval: Duration::from_millis(50),
        ..edd_config()
    }
}

// ---------------------------------------------------------------------------------
// Checkpoints and start-up entries

#[tokio::test]
async fn checkpoint_is_a_signed_note_over_the_served_leaf_hashes() {
    let h = start_with_config(unpublished()).await;
    let api = Api::of(&h);
    let (_, conf) = h
        .call("GET", "/.well-known/bonafide-configuration", None, None)
        .await;
    assert_eq!(conf["audit_log"]["verify_decisions_logged"], true, "{conf}");
    assert_eq!(
        conf["audit_log"]["checkpoint_uri"],
        format!("{}/v1/audit/checkpoint", h.base)
    );
    let log = log_of(&h).await;
    // C2SP: the log's key name is its origin.
    assert_eq!(log.verifier.name(), log.origin);

    let cp = api.checkpoint(&log).await;
    assert_eq!(cp.size, size(&h).await);
    let rows = all_entries(&h, Some(&h.admin)).await;
    assert_eq!(rows.len() as u64, cp.size);
    let leaves: Vec<Hash> = rows.iter().map(|r| r.leaf).collect();
    assert_eq!(cp.root, mth(&leaves));

    // Opening is strict: another origin, another key, or an edited note is refused.
    assert!(
        note::open_checkpoint(
            &cp.note,
            "other.example/audit",
            std::slice::from_ref(&log.verifier)
        )
        .is_err()
    );
    let stranger = NoteSigner::generate(&log.origin).unwrap();
    assert!(note::open_checkpoint(&cp.note, &log.origin, &[stranger.verifier().clone()]).is_err());
    let edited = cp.note.replacen(
        &format!("\n{}\n", cp.size),
        &format!("\n{}\n", cp.size + 1),
        1,
    );
    assert_ne!(edited, cp.note);
    assert!(
        note::open_checkpoint(&edited, &log.origin, std::slice::from_ref(&log.verifier)).is_err()
    );

    // New entries get a new checkpoint from the background signer (polled; any
    // reasonable delay passes).
    let key = h.issuer("cp.example").await;
    let (_, token) = agent(&h, &key, "A", &["read:x"]).await;
    h.verify_token(&token).await;
    let n = size(&h).await;
    assert_eq!(n, cp.size + 3);
    let next = wait_checkpoint(&api, &log, n).await;
    assert_eq!(next.size, n);
    let leaves: Vec<Hash> = all_entries(&h, None).await.iter().map(|r| r.leaf).collect();
    assert_eq!(next.root, mth(&leaves));
    assert_eq!(mth(&leaves[..cp.size as usize]), cp.root);
}

#[tokio::test]
async fn start_up_logs_the_admin_key_and_the_first_signing_key() {
    let h = start_with_config(unpublished()).await;
    assert_eq!(size(&h).await, 2);
    let (admin_key, _) = entry_at(&h, 0).await;
    assert_eq!(admin_key.event, EventType::KeyAdded);
    assert_eq!(admin_key.actor, Actor::Registry);
    let (signing_key, text) = entry_at(&h, 1).await;
    assert_eq!(signing_key.event, EventType::KeyAdded);
    assert_eq!(signing_key.actor, Actor::Registry);
    let (_, jwks) = h.call("GET", "/.well-known/jwks.json", None, None).await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids.len(), 1, "{jwks}");
    assert_eq!(signing_key.kid.as_deref(), Some(kids[0]));
    assert_no_secret(&text, &[&h.admin]);
    assert!(!text.contains("PRIVATE"), "{text}");
}

// ---------------------------------------------------------------------------------
// What is logged

#[tokio::test]
async fn every_state_change_appends_exactly_one_entry() {
    let h = start_with_config(unpublished()).await;
    let api = Api::of(&h);
    let mut secrets: Vec<String> = vec![h.admin.clone()];
    let (_, jwks) = h.call("GET", "/.well-known/jwks.json", None, None).await;
    let kid0 = jwks["keys"][0]["kid"].as_str().unwrap().to_owned();

    // issuer.created
    let before = size(&h).await;
    let r = api
        .send(
            "POST",
            "/v1/issuers",
            Some(&h.admin),
            Some(json!({"name": "apex.example"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let v = r.json();
    let issuer_id = v["issuer_id"].as_str().unwrap().to_owned();
    let key = v["api_key"].as_str().unwrap().to_owned();
    secrets.push(key.clone());
    assert_eq!(size(&h).await, before + 1);
    let (e, _) = entry_at(&h, before).await;
    assert_eq!(e.event, EventType::IssuerCreated);
    assert_eq!(e.actor, Actor::Admin);
    assert_eq!(e.issuer.as_deref(), Some(issuer_id.as_str()));
    assert_eq!(e.note.as_deref(), Some("apex.example"));
    assert_eq!(
        e.request_id.as_deref(),
        Some(r.header("x-request-id").as_str())
    );
    let me = Actor::Issuer {
        id: issuer_id.clone(),
    };

    // agent.registered
    let before = size(&h).await;
    let r = api
        .send(
            "POST",
            "/v1/agents/register",
            Some(&key),
            Some(json!({"name": "Bot", "scopes": ["read:a", "read:b"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let v = r.json();
    let agent_id = v["agent_id"].as_str().unwrap().to_owned();
    let first = v["token"].as_str().unwrap().to_owned();
    secrets.push(first.clone());
    assert_eq!(size(&h).await, before + 1);
    let (e, _) = entry_at(&h, before).await;
    assert_eq!(e.event, EventType::AgentRegistered);
    assert_eq!(e.actor, me);
    assert_eq!(e.agent.as_deref(), Some(agent_id.as_str()));
    assert_eq!(e.issuer.as_deref(), Some(issuer_id.as_str()));
    assert_eq!(e.token_sha256, Some(token_sha256(&first)));
    assert_eq!(e.kid.as_deref(), Some(kid0.as_str()));
    assert_eq!(e.scopes, vec!["read:a".to_owned(), "read:b".to_owned()]);
    assert!(e.jti.as_deref().is_some_and(|j| j.starts_with("tok_")));
    assert_eq!(
        e.request_id.as_deref(),
        Some(r.header("x-request-id").as_str())
    );
    let first_jti = e.jti.clone().unwrap();

    // token.issued
    let before = size(&h).await;
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent_id}/issue-token"),
            Some(&key),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let second = v["token"].as_str().unwrap().to_owned();
    let second_jti = v["jti"].as_str().unwrap().to_owned();
    secrets.push(second.clone());
    assert_eq!(size(&h).await, before + 1);
    let (e, _) = entry_at(&h, before).await;
    assert_eq!(e.event, EventType::TokenIssued);
    assert_eq!(e.actor, me);
    assert_eq!(e.agent.as_deref(), Some(agent_id.as_str()));
    assert_eq!(e.issuer.as_deref(), Some(issuer_id.as_str()));
    assert_eq!(e.jti.as_deref(), Some(second_jti.as_str()));
    assert_eq!(e.token_sha256, Some(token_sha256(&second)));

    // token.revoked, by jti; a second revoke of the same token appends nothing.
    let before = size(&h).await;
    let (st, v) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&key),
            Some(json!({"jti": second_jti})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(size(&h).await, before + 1);
    let (e, _) = entry_at(&h, before).await;
    assert_eq!(e.event, EventType::TokenRevoked);
    assert_eq!(e.actor, me);
    assert_eq!(e.jti.as_deref(), Some(second_jti.as_str()));
    assert_eq!(e.agent.as_deref(), Some(agent_id.as_str()));
    assert_eq!(e.issuer.as_deref(), Some(issuer_id.as_str()));
    let (st, _) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&key),
            Some(json!({"jti": second_jti})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        size(&h).await,
        before + 1,
        "a repeated token revoke appended"
    );

    // token.revoked, by the token itself: its hash, never its text.
    let before = size(&h).await;
    let (st, v) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&key),
            Some(json!({"token": first})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(size(&h).await, before + 1);
    let (e, _) = entry_at(&h, before).await;
    assert_eq!(e.event, EventType::TokenRevoked);
    assert_eq!(e.jti.as_deref(), Some(first_jti.as_str()));
    assert_eq!(e.token_sha256, Some(token_sha256(&first)));

    // agent.revoked, once; the second revoke appends nothing.
    let (_, third) = {
        let (st, v) = h
            .call(
                "POST",
                &format!("/v1/agents/{agent_id}/issue-token"),
                Some(&key),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        ((), v["token"].as_str().unwrap().to_owned())
    };
    secrets.push(third.clone());
    let before = size(&h).await;
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent_id}/revoke"),
            Some(&key),
            Some(json!({"reason": "compromised"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(size(&h).await, before + 1);
    let (e, _) = entry_at(&h, before).await;
    assert_eq!(e.event, EventType::AgentRevoked);
    assert_eq!(e.actor, me);
    assert_eq!(e.agent.as_deref(), Some(agent_id.as_str()));
    assert_eq!(e.issuer.as_deref(), Some(issuer_id.as_str()));
    assert_eq!(e.note.as_deref(), Some("compromised"));
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent_id}/revoke"),
            Some(&key),
            Some(json!({"reason": "again"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        size(&h).await,
        before + 1,
        "a repeated agent revoke appended"
    );

    // key.rotated
    let before = size(&h).await;
    let (st, v) = h
        .call("POST", "/v1/admin/keys/rotate", Some(&h.admin), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let new_kid = v["kid"].as_str().unwrap();
    assert_ne!(new_kid, kid0);
    assert_eq!(size(&h).await, before + 1);
    let (e, _) = entry_at(&h, before).await;
    assert_eq!(e.event, EventType::KeyRotated);
    assert_eq!(e.actor, Actor::Admin);
    assert_eq!(e.kid.as_deref(), Some(new_kid));

    // Reads append nothing.
    let before = size(&h).await;
    for path in [
        "/v1/agents".to_owned(),
        format!("/v1/agents/{agent_id}"),
        "/.well-known/jwks.json".to_owned(),
        "/v1/audit/checkpoint".to_owned(),
        "/v1/audit/entries?start=0".to_owned(),
        "/v1/audit/proof/inclusion?index=0".to_owned(),
    ] {
        let r = api.get(&path, Some(&key)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
    }
    assert_eq!(size(&h).await, before);

    // No entry holds a token or an API key.
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    for row in all_entries(&h, Some(&h.admin)).await {
        assert_no_secret(row.entry.as_deref().unwrap(), &secrets);
    }
}

#[tokio::test]
async fn failed_requests_append_nothing() {
    let h = start_with_config(unpublished()).await;
    let api = Api::of(&h);
    let (_, key) = issuer_with_id(&h, "fail.example").await;
    let (other_agent, _) = {
        let (_, other) = issuer_with_id(&h, "other.example").await;
        agent(&h, &other, "O", &["read:x"]).await
    };
    let (agent_id, token) = agent(&h, &key, "A", &["read:x"]).await;
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent_id}/revoke"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (live, live_token) = agent(&h, &key, "B", &["read:x"]).await;
    let before = size(&h).await;

    let bogus_admin = "bfk_adm_0000000000000000000000000000000000000000";
    type Case<'a> = (&'a str, String, Option<&'a str>, Option<Value>, StatusCode);
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/v1/issuers".into(),
            None,
            Some(json!({"name": "x.example"})),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "POST",
            "/v1/issuers".into(),
            Some(bogus_admin),
            Some(json!({"name": "x.example"})),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "POST",
            "/v1/issuers".into(),
            Some(&key),
            Some(json!({"name": "x.example"})),
            StatusCode::FORBIDDEN,
        ),
        (
            "POST",
            "/v1/issuers".into(),
            Some(&h.admin),
            Some(json!({"name": "fail.example"})),
            StatusCode::CONFLICT,
        ),
        (
            "POST",
            "/v1/issuers".into(),
            Some(&h.admin),
            Some(json!({"name": ""})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            "/v1/agents/register".into(),
            None,
            Some(json!({"name": "n", "scopes": ["read:x"]})),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "POST",
            "/v1/agents/register".into(),
            Some(&h.admin),
            Some(json!({"name": "n", "scopes": ["read:x"]})),
            StatusCode::FORBIDDEN,
        ),
        (
            "POST",
            "/v1/agents/register".into(),
            Some(&key),
            Some(json!({"name": "n", "scopes": ["NOT A SCOPE"]})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            "/v1/agents/register".into(),
            Some(&key),
            Some(json!({"name": "n", "scopes": ["read:x"], "bogus": 1})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            format!("/v1/agents/{agent_id}/issue-token"),
            Some(&key),
            None,
            StatusCode::CONFLICT,
        ),
        (
            "POST",
            format!("/v1/agents/{other_agent}/issue-token"),
            Some(&key),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            format!("/v1/agents/{live}/issue-token"),
            Some(&key),
            Some(json!({"expiry_seconds": 5})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            format!("/v1/agents/{other_agent}/revoke"),
            Some(&key),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            "/v1/agents/agt_nope/revoke".into(),
            Some(&key),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            "/v1/tokens/revoke".into(),
            Some(&key),
            Some(json!({"jti": "tok_aaaaaaaaaaaaaaaaaaaaaaaaaa"})),
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            "/v1/tokens/revoke".into(),
            Some(&key),
            Some(json!({})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            "/v1/tokens/revoke".into(),
            Some(&key),
            Some(json!({"token": "garbage"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            "/v1/admin/keys/rotate".into(),
            Some(&key),
            None,
            StatusCode::FORBIDDEN,
        ),
        (
            "POST",
            "/v1/admin/keys/rotate".into(),
            None,
            None,
            StatusCode::UNAUTHORIZED,
        ),
        // A verify that is refused before any decision is not a decision.
        (
            "POST",
            "/v1/verify".into(),
            Some(bogus_admin),
            Some(json!({"token": live_token})),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "POST",
            "/v1/verify".into(),
            None,
            Some(json!({"token": live_token, "bogus": 1})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            "/v1/verify".into(),
            None,
            Some(json!({"token": live_token, "scopes_requested": vec!["read:x"; 65]})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "GET",
            format!("/v1/verify/{token}"),
            Some(bogus_admin),
            None,
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (method, path, k, body, want) in cases {
        let r = api.send(method, &path, k, body.clone()).await;
        // 400 and 422 are both "malformed" answers; accept the documented one only.
        assert_eq!(r.status, want, "{method} {path} {body:?}: {}", r.text());
        assert_eq!(
            size(&h).await,
            before,
            "{method} {path} {body:?} appended an entry"
        );
    }
    // Malformed JSON.
    let resp = h
        .http
        .post(format!("{}/v1/verify", h.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error(), "{}", resp.status());
    assert_eq!(size(&h).await, before);
}

#[tokio::test]
async fn verify_decisions_are_logged_with_their_index() {
    let h = start_with_config(unpublished()).await;
    let api = Api::of(&h);
    let (issuer_id, key) = issuer_with_id(&h, "v.example").await;
    let (agent_id, token) = agent(&h, &key, "V", &["read:portfolio", "read:tx"]).await;
    let secrets = [token.as_str(), key.as_str(), h.admin.as_str()];
    let mut indexes = Vec::new();

    // Allow, anonymous, with scopes and a target resource.
    let before = size(&h).await;
    let r = api
        .send(
            "POST",
            "/v1/verify",
            None,
            Some(json!({"token": token, "scopes_requested": ["read:portfolio"], "target_resource": "plaid"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(v["allowed"], true, "{v}");
    let i = v["audit_index"].as_u64().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(i, before);
    assert_eq!(size(&h).await, before + 1);
    indexes.push(i);
    let (e, text) = entry_at(&h, i).await;
    assert_eq!(e.event, EventType::Verify);
    assert_eq!(e.actor, Actor::Anonymous);
    assert_eq!(e.decision, Some(Decision::Allow));
    assert!(e.reasons.is_empty(), "{text}");
    assert_eq!(e.scopes, vec!["read:portfolio".to_owned()]);
    assert_eq!(e.target.as_deref(), Some("plaid"));
    assert_eq!(e.token_sha256, Some(token_sha256(&token)));
    assert_eq!(e.agent.as_deref(), Some(agent_id.as_str()));
    assert!(e.jti.as_deref().is_some_and(|j| j.starts_with("tok_")));
    assert_eq!(
        e.request_id.as_deref(),
        Some(r.header("x-request-id").as_str())
    );
    assert_no_secret(&text, &secrets);

    // Deny: a scope not granted; the caller is the issuer, the audience is named.
    let v = api
        .send(
            "POST",
            "/v1/verify",
            Some(&key),
            Some(json!({"token": token, "scopes_requested": ["write:email"], "audience": "bank.example"})),
        )
        .await
        .json();
    assert_eq!(v["allowed"], false, "{v}");
    let i = v["audit_index"].as_u64().unwrap();
    indexes.push(i);
    let (e, text) = entry_at(&h, i).await;
    assert_eq!(e.decision, Some(Decision::Deny));
    assert_eq!(e.reasons, vec!["SCOPE_NOT_GRANTED".to_owned()]);
    assert_eq!(e.scopes, vec!["write:email".to_owned()]);
    assert_eq!(e.target.as_deref(), Some("bank.example"));
    assert_eq!(e.actor, Actor::Issuer { id: issuer_id });
    assert_eq!(e.agent.as_deref(), Some(agent_id.as_str()));
    assert_no_secret(&text, &secrets);

    // Requested scopes and targets are the client's text: whatever it is, the entry
    // stays canonical and its leaf hash is the hash of the served bytes.
    let odd = [
        "read:é",
        "emoji:😀",
        "quote:\"\\/",
        "sep:\u{2028}\u{2029}",
        "bom:\u{feff}",
        "astral:\u{10ffff}",
    ];
    let v = h
        .verify(json!({"token": token, "scopes_requested": odd, "audience": "ünïcôdé\u{1F600}"}))
        .await;
    assert_eq!(v["allowed"], false, "{v}");
    let i = v["audit_index"].as_u64().unwrap();
    indexes.push(i);
    let (e, _) = entry_at(&h, i).await;
    assert_eq!(e.scopes, odd.map(str::to_owned).to_vec());
    assert_eq!(e.target.as_deref(), Some("ünïcôdé\u{1F600}"));
    // Control characters are refused before anything is decided or logged.
    let before = size(&h).await;
    for body in [
        json!({"token": token, "scopes_requested": ["ctl:\u{1}\u{1f}"]}),
        json!({"token": token, "scopes_requested": ["ws:\t\n\r\u{8}\u{c}"]}),
        json!({"token": token, "scopes_requested": ["del:\u{7f}"]}),
        json!({"token": token, "audience": "ünï\u{0}côdé"}),
    ] {
        let r = api.send("POST", "/v1/verify", None, Some(body)).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    }
    assert_eq!(size(&h).await, before);

    // Deny: not a token at all; the admin as caller. It concerns no agent: answered
    // and counted, not logged.
    let garbage = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLW9mLWdhcmJhZ2U";
    let before = size(&h).await;
    let v = api
        .send(
            "POST",
            "/v1/verify",
            Some(&h.admin),
            Some(json!({"token": garbage})),
        )
        .await
        .json();
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["error"]["code"], "TOKEN_INVALID", "{v}");
    assert_eq!(v.get("audit_index"), None, "{v}");
    assert_eq!(size(&h).await, before);

    // GET /v1/verify/{token}: logged, no index in the answer.
    let before = size(&h).await;
    let (st, v) = h
        .call("GET", &format!("/v1/verify/{token}"), None, None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["valid"], true);
    assert!(v.get("audit_index").is_none(), "{v}");
    assert_eq!(size(&h).await, before + 1);
    let (e, text) = entry_at(&h, before).await;
    assert_eq!(e.event, EventType::Verify);
    assert_eq!(e.decision, Some(Decision::Allow));
    assert_eq!(e.token_sha256, Some(token_sha256(&token)));
    assert!(e.scopes.is_empty() && e.target.is_none(), "{text}");
    indexes.push(before);

    // Revoked: deny with TOKEN_REVOKED, still naming the agent; by GET as well.
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent_id}/revoke"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let v = h.verify_token(&token).await;
    assert_eq!(v["error"]["code"], "TOKEN_REVOKED", "{v}");
    let i = v["audit_index"].as_u64().unwrap();
    indexes.push(i);
    let (e, _) = entry_at(&h, i).await;
    assert_eq!(e.decision, Some(Decision::Deny));
    assert_eq!(e.reasons, vec!["TOKEN_REVOKED".to_owned()]);
    assert_eq!(e.agent.as_deref(), Some(agent_id.as_str()));
    let before = size(&h).await;
    let (_, v) = h
        .call("GET", &format!("/v1/verify/{token}"), None, None)
        .await;
    assert_eq!(v["error"]["code"], "TOKEN_REVOKED");
    assert_eq!(size(&h).await, before + 1);
    let (e, _) = entry_at(&h, before).await;
    assert_eq!(e.decision, Some(Decision::Deny));
    assert_eq!(e.reasons, vec!["TOKEN_REVOKED".to_owned()]);

    // Expired, signed with the real key: deny with TOKEN_EXPIRED.
    let mut claims = h.claims(&agent_id);
    claims["iat"] = json!(common::now_s() - 7200);
    claims["nbf"] = json!(common::now_s() - 7200);
    claims["exp"] = json!(common::now_s() - 3600);
    let expired = h.sign_raw(&claims.to_string());
    let v = h.verify_token(&expired).await;
    assert_eq!(v["error"]["code"], "TOKEN_EXPIRED", "{v}");
    let (e, _) = entry_at(&h, v["audit_index"].as_u64().unwrap()).await;
    assert_eq!(e.reasons, vec!["TOKEN_EXPIRED".to_owned()]);
    assert_eq!(e.token_sha256, Some(token_sha256(&expired)));

    // Indexes only grow, and each one proves into a signed checkpoint.
    assert!(indexes.windows(2).all(|w| w[0] < w[1]), "{indexes:?}");
    let log = log_of(&h).await;
    let cp = wait_checkpoint(&api, &log, size(&h).await).await;
    for i in indexes {
        let v = api
            .get(&format!("/v1/audit/proof/inclusion?index={i}"), None)
            .await
            .json();
        assert_eq!(v["tree_size"].as_u64().unwrap(), cp.size);
        let (_, text) = entry_at(&h, i).await;
        merkle::check_record(
            &hashes(&v["hashes"]),
            cp.size,
            &cp.root,
            i,
            &merkle::leaf_hash(text.as_bytes()),
        )
        .unwrap();
    }
}

#[tokio::test]
async fn with_audit_verify_off_only_state_changes_are_logged() {
    let h = start_with_config(Config {
        audit_verify: false,
        ..edd_config()
    })
    .await;
    let (_, conf) = h
        .call("GET", "/.well-known/bonafide-configuration", None, None)
        .await;
    assert_eq!(
        conf["audit_log"]["verify_decisions_logged"], false,
        "{conf}"
    );
    let key = h.issuer("off.example").await;
    let before = size(&h).await;
    let (agent_id, token) = agent(&h, &key, "Off", &["read:x"]).await;
    assert_eq!(size(&h).await, before + 1);
    let before = size(&h).await;
    for body in [
        json!({"token": token}),
        json!({"token": token, "scopes_requested": ["write:y"]}),
        json!({"token": "garbage"}),
    ] {
        let v = h.verify(body).await;
        assert!(v.get("audit_index").is_none(), "{v}");
    }
    let (st, _) = h
        .call("GET", &format!("/v1/verify/{token}"), None, None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(size(&h).await, before, "verify decisions were logged");
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent_id}/revoke"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let v = h.verify_token(&token).await;
    assert_eq!(v["error"]["code"], "TOKEN_REVOKED");
    assert!(v.get("audit_index").is_none(), "{v}");
    assert_eq!(size(&h).await, before + 1);
    let (e, _) = entry_at(&h, before).await;
    assert_eq!(e.event, EventType::AgentRevoked);
    // The log is still a log: signed and provable.
    let api = Api::of(&h);
    let log = log_of(&h).await;
    let cp = wait_checkpoint(&api, &log, before + 1).await;
    let leaves: Vec<Hash> = all_entries(&h, None).await.iter().map(|r| r.leaf).collect();
    assert_eq!(cp.root, mth(&leaves));
}

// ---------------------------------------------------------------------------------
// Reading entries

#[tokio::test]
async fn entries_are_shown_only_to_admins_and_the_issuer_concerned() {
    let h = start_with_config(unpublished()).await;
    let api = Api::of(&h);
    let (ia, ka) = issuer_with_id(&h, "a.example").await;
    let (ib, kb) = issuer_with_id(&h, "b.example").await;
    let (a1, t1) = agent(&h, &ka, "A1", &["read:x"]).await;
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/agents/{a1}/issue-token"),
            Some(&ka),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let t1b = v["token"].as_str().unwrap().to_owned();
    let jti1b = v["jti"].as_str().unwrap().to_owned();
    let (b1, tb) = agent(&h, &kb, "B1", &["read:x"]).await;
    h.verify(json!({"token": t1})).await;
    h.verify(json!({"token": t1, "scopes_requested": ["write:z"]}))
        .await;
    h.verify(json!({"token": "garbage.garbage.garbage"})).await;
    let (st, _) = h.call("GET", &format!("/v1/verify/{t1}"), None, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = h
        .call(
            "POST",
            "/v1/tokens/revoke",
            Some(&ka),
            Some(json!({"jti": jti1b})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h.verify_token(&t1b).await["error"]["code"], "TOKEN_REVOKED");
    h.verify_token(&tb).await;
    // B verifies A's token: B is the actor, but the entry concerns A.
    let r = api
        .send("POST", "/v1/verify", Some(&kb), Some(json!({"token": t1})))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let b_on_a = r.json()["audit_index"].as_u64().unwrap();
    let (st, _) = h
        .call("POST", "/v1/admin/keys/rotate", Some(&h.admin), None)
        .await;
    assert_eq!(st, StatusCode::OK);

    let admin = all_entries(&h, Some(&h.admin)).await;
    let as_a = all_entries(&h, Some(&ka)).await;
    let as_b = all_entries(&h, Some(&kb)).await;
    let anon = all_entries(&h, None).await;
    let agents: HashMap<&str, &str> =
        [(a1.as_str(), ia.as_str()), (b1.as_str(), ib.as_str())].into();
    let mut seen_by_a = Vec::new();
    for (((ad, a), b), n) in admin.iter().zip(&as_a).zip(&as_b).zip(&anon) {
        // Leaf hashes are public and the same for everyone.
        assert_eq!(ad.leaf, a.leaf);
        assert_eq!(ad.leaf, b.leaf);
        assert_eq!(ad.leaf, n.leaf);
        assert!(n.entry.is_none(), "anonymous caller saw entry {}", n.index);
        let text = ad.entry.as_deref().expect("admins see every entry");
        let e = decode(text);
        let owner = e
            .issuer
            .as_deref()
            .or_else(|| e.agent.as_deref().and_then(|g| agents.get(g).copied()));
        let want_a = owner == Some(ia.as_str());
        let want_b = owner == Some(ib.as_str());
        assert_eq!(
            a.entry.is_some(),
            want_a,
            "issuer A, entry {}: {text}",
            ad.index
        );
        assert_eq!(
            b.entry.is_some(),
            want_b,
            "issuer B, entry {}: {text}",
            ad.index
        );
        if let Some(t) = &a.entry {
            assert_eq!(t, text);
            seen_by_a.push(e.clone());
        }
        if let Some(t) = &b.entry {
            assert_eq!(t, text);
        }
    }
    // What A sees, by kind: its own events and its agents' decisions only.
    let count = |ty: EventType, d: Option<Decision>| {
        seen_by_a
            .iter()
            .filter(|e| e.event == ty && (d.is_none() || e.decision == d))
            .count()
    };
    assert_eq!(count(EventType::IssuerCreated, None), 1);
    assert_eq!(count(EventType::AgentRegistered, None), 1);
    assert_eq!(count(EventType::TokenIssued, None), 1);
    assert_eq!(count(EventType::TokenRevoked, None), 1);
    assert_eq!(count(EventType::Verify, Some(Decision::Allow)), 3);
    // Scope deny and revoked-token deny; not the garbage token, which concerns no one.
    assert_eq!(count(EventType::Verify, Some(Decision::Deny)), 2);
    assert_eq!(
        count(EventType::KeyAdded, None) + count(EventType::KeyRotated, None),
        0
    );
    assert_eq!(seen_by_a.len(), 9);
    assert!(as_a[b_on_a as usize].entry.is_some());
    assert!(as_b[b_on_a as usize].entry.is_none());
    assert_eq!(
        decode(admin[b_on_a as usize].entry.as_deref().unwrap()).actor,
        Actor::Issuer { id: ib.clone() }
    );
}

#[tokio::test]
async fn entries_ranges_and_keys_are_checked() {
    let h = start_with_config(unpublished()).await;
    let api = Api::of(&h);
    let key = h.issuer("r.example").await;
    let (_, token) = agent(&h, &key, "R", &["read:x"]).await;
    for _ in 0..5 {
        h.verify_token(&token).await;
    }
    let n = size(&h).await;
    assert!(n >= 8);

    // Default end: start + 100, capped at the size.
    let v = api.get("/v1/audit/entries?start=0", None).await.json();
    assert_eq!(v["entries"].as_array().unwrap().len() as u64, n);
    let v = api
        .get(&format!("/v1/audit/entries?start={}", n - 3), None)
        .await
        .json();
    let got: Vec<u64> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(got, vec![n - 3, n - 2, n - 1]);
    // end is exclusive.
    assert_eq!(entries(&api, 2, 5, None).await.len(), 3);
    assert_eq!(entries(&api, n - 1, n, None).await.len(), 1);

    for query in [
        format!("start={n}"),
        format!("start={}", n + 10),
        format!("start=0&end={}", n + 1),
        "start=3&end=3".to_owned(),
        "start=3&end=2".to_owned(),
        "start=0&end=1001".to_owned(),
        "start=abc".to_owned(),
        "start=-1".to_owned(),
        "start=0&end=-1".to_owned(),
        "start=1.5".to_owned(),
        "start=18446744073709551616".to_owned(),
        "start=18446744073709551615".to_owned(),
        "end=3".to_owned(),
        String::new(),
        "start=0&bogus=1".to_owned(),
    ] {
        api.get(&format!("/v1/audit/entries?{query}"), None)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "BAD_REQUEST");
    }

    // A key that is presented must be a real one: never silently anonymous.
    for bad in [
        "bfk_adm_0000000000000000000000000000000000000000",
        "bfk_iss_0000000000000000000000000000000000000000",
        "not-a-key",
        "bfk_",
    ] {
        api.get("/v1/audit/entries?start=0", Some(bad))
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
    let r = h
        .http
        .get(format!("{}/v1/audit/entries?start=0", h.base))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = h
        .http
        .get(format!("{}/v1/audit/entries?start=0", h.base))
        .header(
            "x-api-key",
            "bfk_iss_0000000000000000000000000000000000000000",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A real key by X-API-Key works like Bearer.
    let r = h
        .http
        .get(format!("{}/v1/audit/entries?start=0", h.base))
        .header("x-api-key", &h.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert!(v["entries"][0]["entry"].is_string(), "{v}");
}

// ---------------------------------------------------------------------------------
// Proofs

#[tokio::test]
async fn inclusion_proofs_check_against_checkpoints_and_any_tree_size() {
    let h = start_with_config(unpublished()).await;
    let api = Api::of(&h);
    let log = log_of(&h).await;
    let key = h.issuer("inc.example").await;
    let (_, token) = agent(&h, &key, "I", &["read:x"]).await;
    for i in 0..12 {
        h.verify(json!({"token": token, "scopes_requested": [if i % 2 == 0 { "read:x" } else { "write:x" }]}))
            .await;
    }
    let n = size(&h).await;
    let cp = wait_checkpoint(&api, &log, n).await;
    assert_eq!(cp.size, n);
    let rows = all_entries(&h, Some(&h.admin)).await;
    let leaves: Vec<Hash> = rows.iter().map(|r| r.leaf).collect();
    assert_eq!(cp.root, mth(&leaves));

    for row in &rows {
        let i = row.index;
        // By index, against the signed checkpoint.
        let v = api
            .get(&format!("/v1/audit/proof/inclusion?index={i}"), None)
            .await
            .json();
        assert_eq!(v["index"].as_u64(), Some(i), "{v}");
        assert_eq!(v["tree_size"].as_u64(), Some(cp.size), "{v}");
        assert_eq!(hash_b64(&v["leaf_hash"]), row.leaf);
        let proof = hashes(&v["hashes"]);
        merkle::check_record(&proof, cp.size, &cp.root, i, &row.leaf).unwrap();
        // The same proof does not prove a neighbour, nor against another root.
        if i + 1 < n {
            assert!(merkle::check_record(&proof, cp.size, &cp.root, i + 1, &row.leaf).is_err());
            assert!(
                merkle::check_record(&proof, cp.size, &cp.root, i, &leaves[i as usize + 1])
                    .is_err()
            );
        }
        // By leaf hash: the same answer.
        let w = api
            .get(
                &format!(
                    "/v1/audit/proof/inclusion?leaf_hash={}",
                    q(&row.leaf.to_base64())
                ),
                None,
            )
            .await
            .json();
        assert_eq!(w, v);
        // In every tree that contains it, against a root computed here.
        for t in (i + 1)..=n {
            let v = api
                .get(
                    &format!("/v1/audit/proof/inclusion?index={i}&tree_size={t}"),
                    None,
                )
                .await
                .json();
            assert_eq!(v["tree_size"].as_u64(), Some(t));
            merkle::check_record(
                &hashes(&v["hashes"]),
                t,
                &mth(&leaves[..t as usize]),
                i,
                &row.leaf,
            )
            .unwrap_or_else(|e| panic!("index {i} tree {t}: {e}"));
        }
        let v = api
            .get(
                &format!(
                    "/v1/audit/proof/inclusion?leaf_hash={}&tree_size={}",
                    q(&row.leaf.to_base64()),
                    i + 1
                ),
                None,
            )
            .await
            .json();
        merkle::check_record(
            &hashes(&v["hashes"]),
            i + 1,
            &mth(&leaves[..=i as usize]),
            i,
            &row.leaf,
        )
        .unwrap();
    }
}

#[tokio::test]
async fn inclusion_proof_requests_are_checked() {
    let h = start_with_config(unpublished()).await;
    let api = Api::of(&h);
    let n = size(&h).await;
    let leaf0 = entries(&api, 0, 1, None).await[0].leaf.to_base64();
    let bad = [
        format!("index=0&leaf_hash={}", q(&leaf0)),
        String::new(),
        "tree_size=1".to_owned(),
        "leaf_hash=not-base64!".to_owned(),
        format!("leaf_hash={}", q(&Hash([7; 32]).to_base64()[..40])),
        format!("leaf_hash={}", q("AAAA")),
        format!("index={n}"),
        format!("index={}", u64::MAX),
        format!("index=0&tree_size={}", n + 1),
        "index=1&tree_size=1".to_owned(),
        "index=0&tree_size=0".to_owned(),
        "index=-1".to_owned(),
        "index=x".to_owned(),
        "index=0&bogus=1".to_owned(),
        "index=0&index=1".to_owned(),
        format!("leaf_hash={}&tree_size={}", q(&leaf0), n + 1),
    ];
    for query in bad {
        let r = api
            .get(&format!("/v1/audit/proof/inclusion?{query}"), None)
            .await;
        r.assert_error(StatusCode::BAD_REQUEST, "BAD_REQUEST");
    }
    // A well-formed leaf hash that is not in the log.
    api.get(
        &format!(
            "/v1/audit/proof/inclusion?leaf_hash={}",
            q(&Hash([7; 32]).to_base64())
        ),
        None,
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    // The leaf hash of a valid-looking entry that was never logged.
    let stranger =
        merkle::leaf_hash(br#"{"actor":{"kind":"admin"},"time_ms":1,"type":"key.added","v":1}"#);
    api.get(
        &format!(
            "/v1/audit/proof/inclusion?leaf_hash={}",
            q(&stranger.to_base64())
        ),
        None,
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
}

#[tokio::test]
async fn consistency_proofs_link_every_pair_of_checkpoints() {
    let h = start_with_config(unpublished()).await;
    let api = Api::of(&h);
    let log = log_of(&h).await;
    let key = h.issuer("cons.example").await;
    let (_, token) = agent(&h, &key, "C", &["read:x"]).await;
    let mut cps: Vec<Cp> = vec![wait_checkpoint(&api, &log, size(&h).await).await];
    // Grow by odd and even steps so the proofs take different shapes.
    for step in [1u64, 2, 3, 5, 8] {
        for _ in 0..step {
            h.verify_token(&token).await;
        }
        let n = size(&h).await;
        let cp = wait_checkpoint(&api, &log, n).await;
        assert_eq!(cp.size, n);
        assert!(cp.size > cps.last().unwrap().size);
        cps.push(cp);
    }
    let leaves: Vec<Hash> = all_entries(&h, None).await.iter().map(|r| r.leaf).collect();
    for cp in &cps {
        assert_eq!(
            cp.root,
            mth(&leaves[..cp.size as usize]),
            "checkpoint {}",
            cp.size
        );
    }
    for (x, old) in cps.iter().enumerate() {
        for new in &cps[x..] {
            let v = api
                .get(
                    &format!(
                        "/v1/audit/proof/consistency?first={}&second={}",
                        old.size, new.size
                    ),
                    None,
                )
                .await
                .json();
            assert_eq!(v["first"].as_u64(), Some(old.size), "{v}");
            assert_eq!(v["second"].as_u64(), Some(new.size), "{v}");
            let proof = hashes(&v["hashes"]);
            merkle::check_tree(&proof, new.size, &new.root, old.size, &old.root)
                .unwrap_or_else(|e| panic!("{} -> {}: {e}", old.size, new.size));
            if old.size < new.size {
                // The proof binds the roots: a different old root does not pass.
                assert!(
                    merkle::check_tree(&proof, new.size, &new.root, old.size, &new.root).is_err()
                );
            } else {
                assert!(proof.is_empty());
            }
        }
    }
    // Without `second`: up to the latest signed checkpoint.
    let latest = cps.last().unwrap().clone();
    let v = api
        .get(
            &format!("/v1/audit/proof/consistency?first={}", cps[0].size),
            None,
        )
        .await
        .json();
    assert_eq!(v["second"].as_u64(), Some(latest.size), "{v}");
    merkle::check_tree(
        &hashes(&v["hashes"]),
        latest.size,
        &latest.root,
        cps[0].size,
        &cps[0].root,
    )
    .unwrap();
    // From the empty tree: no hashes.
    let v = api
        .get("/v1/audit/proof/consistency?first=0&second=3", None)
        .await
        .json();
    assert_eq!(v["hashes"], json!([]), "{v}");
    // Any two sizes, against roots computed here.
    let n = leaves.len() as u64;
    for a in 1..=n {
        for b in [a, a + 1, (a + n) / 2, n] {
            if b < a || b > n {
                continue;
            }
            let v = api
                .get(
                    &format!("/v1/audit/proof/consistency?first={a}&second={b}"),
                    None,
                )
                .await
                .json();
            merkle::check_tree(
                &hashes(&v["hashes"]),
                b,
                &mth(&leaves[..b as usize]),
                a,
                &mth(&leaves[..a as usize]),
            )
            .unwrap_or_else(|e| panic!("{a} -> {b}: {e}"));
        }
    }
    for query in [
        "first=3&second=2".to_owned(),
        format!("first=1&second={}", n + 1),
        format!("first={}", latest.size + 1),
        "first=-1".to_owned(),
        "first=x".to_owned(),
        String::new(),
        "first=1&bogus=2".to_owned(),
    ] {
        api.get(&format!("/v1/audit/proof/consistency?{query}"), None)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "BAD_REQUEST");
    }
}

#[tokio::test]
async fn tlog_proof_bundles_verify_offline() {
    let h = start_with_config(unpublished()).await;
    let api = Api::of(&h);
    let log = log_of(&h).await;
    let (issuer_id, key) = issuer_with_id(&h, "bundle.example").await;
    let (other_id, other_key) = issuer_with_id(&h, "other.example").await;
    let (agent_id, token) = agent(&h, &key, "T", &["read:x"]).await;
    for _ in 0..4 {
        h.verify_token(&token).await;
    }
    let rows = all_entries(&h, Some(&h.admin)).await;
    let n = rows.len() as u64;
    let verifiers = [log.verifier.clone()];
    let mut extras_for_issuer = 0;
    for row in &rows {
        // The `extra` line carries the entry for callers who may read it, and only
        // for them; the proof authenticates it.
        let e = decode(row.entry.as_deref().unwrap());
        let mine = e.issuer.as_deref() == Some(issuer_id.as_str())
            || e.agent.as_deref() == Some(agent_id.as_str());
        for (caller, shown) in [
            (None, false),
            (Some(h.admin.as_str()), true),
            (Some(key.as_str()), mine),
            (
                Some(other_key.as_str()),
                e.issuer.as_deref() == Some(other_id.as_str()),
            ),
        ] {
            let r = api
                .get(
                    &format!("/v1/audit/proof/bundle?index={}", row.index),
                    caller,
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
            let proof = tlog_proof::TlogProof::parse(&r.text()).unwrap();
            if shown {
                let extra = proof.extra.clone().expect("the entry rides along");
                assert_eq!(extra, row.entry.as_deref().unwrap().as_bytes());
                tlog_proof::verify_tlog_proof(&proof, &extra, &log.origin, &verifiers).unwrap();
            } else {
                assert_eq!(proof.extra, None, "entry {} shown to {caller:?}", row.index);
            }
        }
        extras_for_issuer += usize::from(mine);
        api.get(
            &format!("/v1/audit/proof/bundle?index={}", row.index),
            Some("bfk_adm_0000000000000000000000000000000000000000"),
        )
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");

        // Anyone's bundle verifies against the entry and the log key alone.
        let r = api
            .get(&format!("/v1/audit/proof/bundle?index={}", row.index), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert!(r.header("content-type").starts_with("text/plain"));
        let text = r.text();
        let entry = row.entry.as_deref().unwrap().as_bytes();
        let ok = tlog_proof::verify_tlog_proof_text(&text, entry, &log.origin, &verifiers)
            .unwrap_or_else(|e| panic!("bundle for {} does not verify ({e}):\n{text}", row.index));
        assert_eq!(ok.index(), row.index);
        assert!(ok.tree_size() > row.index && ok.tree_size() <= n);
        assert_eq!(ok.leaf_hash(), &row.leaf);
        // The bundle's checkpoint is one the log serves and signed.
        let cp = api.checkpoint(&log).await;
        assert!(ok.tree_size() <= cp.size);
        // Another entry's bytes, another origin or another key: refused.
        let other = rows[((row.index + 1) % n) as usize]
            .entry
            .as_deref()
            .unwrap()
            .as_bytes();
        assert!(tlog_proof::verify_tlog_proof_text(&text, other, &log.origin, &verifiers).is_err());
        assert!(
            tlog_proof::verify_tlog_proof_text(&text, entry, "other/audit", &verifiers).is_err()
        );
        let stranger = NoteSigner::generate(&log.origin).unwrap();
        assert!(
            tlog_proof::verify_tlog_proof_text(
                &text,
                entry,
                &log.origin,
                &[stranger.verifier().clone()]
            )
            .is_err()
        );
    }
    // Issuer created, agent registered, four decisions.
    assert_eq!(extras_for_issuer, 6);
    for query in [
        format!("index={n}"),
        "index=-1".to_owned(),
        String::new(),
        "index=0&tree_size=1".to_owned(),
    ] {
        api.get(&format!("/v1/audit/proof/bundle?{query}"), None)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "BAD_REQUEST");
    }
}

// ---------------------------------------------------------------------------------
// Tiles

#[tokio::test]
async fn tiles_hold_the_leaf_hashes_and_rebuild_the_checkpoint_root() {
    let h = start_with_config(unpublished()).await;
    let api = Api::of(&h);
    let log = log_of(&h).await;
    let (ia, ka) = issuer_with_id(&h, "tile.example").await;
    let (_, token) = agent(&h, &ka, "T", &["read:x"]).await;
    for _ in 0..6 {
        h.verify_token(&token).await;
    }
    let n = size(&h).await;
    let cp = wait_checkpoint(&api, &log, n).await;
    assert_eq!(cp.size, n);
    assert!(n < 256);
    let rows = all_entries(&h, Some(&h.admin)).await;

    // Level 0, partial: the leaf hashes, in order; they rebuild the signed root.
    let r = api.get(&format!("/v1/audit/tile/0/000.p/{n}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("content-type"), "application/octet-stream");
    assert_eq!(r.body.len() as u64, n * 32);
    let tile: Vec<Hash> = r
        .body
        .chunks(32)
        .map(|c| Hash::try_from(c).unwrap())
        .collect();
    assert_eq!(tile, rows.iter().map(|r| r.leaf).collect::<Vec<_>>());
    assert_eq!(mth(&tile), cp.root);
    // Narrower partial tiles of earlier trees are served too, as prefixes.
    for w in 1..n {
        let r = api.get(&format!("/v1/audit/tile/0/000.p/{w}"), None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.body.as_slice(),
            &api.get(&format!("/v1/audit/tile/0/000.p/{n}"), None)
                .await
                .body[..w as usize * 32]
        );
    }

    // Beyond the tree: 404.
    for path in [
        "0/000".to_owned(),
        format!("0/000.p/{}", n + 1),
        "0/001.p/1".to_owned(),
        "1/000.p/1".to_owned(),
        "0/x001/000".to_owned(),
        "7/000.p/1".to_owned(),
        "8/000.p/1".to_owned(),
        "63/000.p/1".to_owned(),
        // u64::MAX as the tile index: no overflow, just not there.
        "0/x018/x446/x744/x073/x709/x551/615".to_owned(),
        "1/x018/x446/x744/x073/x709/x551/615.p/255".to_owned(),
        "entries/001.p/1".to_owned(),
        "entries/x018/x446/x744/x073/x709/x551/615".to_owned(),
    ] {
        let key = if path.starts_with("entries") {
            Some(h.admin.as_str())
        } else {
            None
        };
        api.get(&format!("/v1/audit/tile/{path}"), key)
            .await
            .assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    }
    api.get(
        &format!("/v1/audit/tile/entries/000.p/{}", n + 1),
        Some(&h.admin),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    // Malformed: 400.
    for path in [
        "0/1",
        "0/x000/001",
        "64/000",
        "0/000.p/0",
        "0/000.p/256",
        "00/000",
        "0/000.p/01",
        "0/0000",
        "0/000/",
        "0/000.p/",
        "0/-01",
        "x/000",
        "0",
        "entries/1",
        "entries/000.p/0",
        "entries/000.p/256",
        "entries/x000/001",
    ] {
        let key = if path.starts_with("entries") {
            Some(h.admin.as_str())
        } else {
            None
        };
        api.get(&format!("/v1/audit/tile/{path}"), key)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "BAD_REQUEST");
    }

    // Entry bundles: full entries, u16 length-prefixed; admins only here.
    let r = api
        .get(&format!("/v1/audit/tile/entries/000.p/{n}"), Some(&h.admin))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("content-type"), "application/octet-stream");
    let mut bundle = Vec::new();
    let mut rest = r.body.as_slice();
    while !rest.is_empty() {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        bundle.push(String::from_utf8(rest[2..2 + len].to_vec()).unwrap());
        rest = &rest[2 + len..];
    }
    assert_eq!(
        bundle,
        rows.iter()
            .map(|r| r.entry.clone().unwrap())
            .collect::<Vec<_>>()
    );
    for (entry, leaf) in bundle.iter().zip(&tile) {
        assert_eq!(&merkle::leaf_hash(entry.as_bytes()), leaf);
    }
    api.get(&format!("/v1/audit/tile/entries/000.p/{n}"), None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    // The issuer's own entries are in there, but so are others': 403.
    assert!(
        rows.iter()
            .any(|r| decode(r.entry.as_deref().unwrap()).issuer.as_deref() == Some(ia.as_str()))
    );
    api.get(&format!("/v1/audit/tile/entries/000.p/{n}"), Some(&ka))
        .await
        .assert_error(StatusCode::FORBIDDEN, "FORBIDDEN");
    // A wrong key is a 401 on hash tiles too.
    api.get(
        &format!("/v1/audit/tile/0/000.p/{n}"),
        Some("bfk_adm_0000000000000000000000000000000000000000"),
    )
    .await
    .assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
}

// ---------------------------------------------------------------------------------
// Consistency over time, under concurrency

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Allow,
    ScopeDeny,
    Revoked,
    Garbage,
    Get,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_log_stays_consistent_while_it_grows_concurrently() {
    let h = start_with_config(fast_checkpoints()).await;
    let api = Api::of(&h);
    let log = log_of(&h).await;
    let (_, ka) = issuer_with_id(&h, "grow-a.example").await;
    let (_, kb) = issuer_with_id(&h, "grow-b.example").await;
    let (_, good) = agent(&h, &ka, "Good", &["read:x"]).await;
    let (gone_id, gone) = agent(&h, &ka, "Gone", &["read:x"]).await;
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/agents/{gone_id}/revoke"),
            Some(&ka),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let start_size = size(&h).await;

    // A monitor polls checkpoints the whole time and keeps every one it sees.
    let stop = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (api, log, stop) = (api.clone(), log.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut seen: Vec<Cp> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let cp = api.checkpoint(&log).await;
                if seen.last() != Some(&cp) {
                    if let Some(last) = seen.last() {
                        // Checkpoints only grow.
                        assert!(
                            cp.size > last.size,
                            "checkpoint went from {} to {}",
                            last.size,
                            cp.size
                        );
                    }
                    seen.push(cp);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            seen
        })
    };

    const WAVES: usize = 5;
    const PER_WAVE: usize = 260;
    let mut received: BTreeMap<u64, (String, Kind)> = BTreeMap::new();
    let mut gets = 0u64;
    let mut garbage = 0u64;
    let mut early_proofs: Vec<(u64, (u64, Vec<Hash>))> = Vec::new();
    // The checkpoint before any of it, then one after each wave.
    let mut waited: Vec<Cp> = vec![wait_checkpoint(&api, &log, start_size).await];
    for wave in 0..WAVES {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..PER_WAVE {
            let api = api.clone();
            let kind = [
                Kind::Allow,
                Kind::ScopeDeny,
                Kind::Revoked,
                Kind::Garbage,
                Kind::Get,
            ][i % 5];
            let token = match kind {
                Kind::Allow | Kind::ScopeDeny | Kind::Get => good.clone(),
                Kind::Revoked => gone.clone(),
                Kind::Garbage => format!("garbage.{wave}.{i}"),
            };
            set.spawn(async move {
                let r = match kind {
                    Kind::Get => api.get(&format!("/v1/verify/{token}"), None).await,
                    Kind::ScopeDeny => {
                        api.send(
                            "POST",
                            "/v1/verify",
                            None,
                            Some(json!({"token": token, "scopes_requested": ["write:x"]})),
                        )
                        .await
                    }
                    _ => {
                        api.send(
                            "POST",
                            "/v1/verify",
                            None,
                            Some(json!({"token": token, "scopes_requested": ["read:x"]})),
                        )
                        .await
                    }
                };
                assert_eq!(r.status, StatusCode::OK, "{}", r.text());
                let v = r.json();
                let index = v["audit_index"].as_u64();
                // A GET answers no index; garbage concerns no agent and is not logged.
                assert_eq!(
                    index.is_some(),
                    !matches!(kind, Kind::Get | Kind::Garbage),
                    "{v}"
                );
                // A client that asks for its proof right away, while the log grows,
                // gets one into a signed checkpoint (checked below).
                let proof = match index {
                    Some(i) => {
                        let r = api
                            .get(&format!("/v1/audit/proof/inclusion?index={i}"), None)
                            .await;
                        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
                        let p = r.json();
                        Some((p["tree_size"].as_u64().unwrap(), hashes(&p["hashes"])))
                    }
                    None => None,
                };
                (index, token, kind, proof)
            });
        }
        while let Some(done) = set.join_next().await {
            let (index, token, kind, proof) = done.unwrap();
            match index {
                Some(i) => {
                    assert!(
                        received.insert(i, (token, kind)).is_none(),
                        "index {i} given twice"
                    );
                    early_proofs.push((i, proof.unwrap()));
                }
                None if kind == Kind::Garbage => garbage += 1,
                None => gets += 1,
            }
        }
        let n = size(&h).await;
        waited.push(wait_checkpoint(&api, &log, n).await);
    }
    stop.store(true, Ordering::Relaxed);
    let mut seen = monitor.await.unwrap();
    let final_size = size(&h).await;
    assert_eq!(final_size, start_size + (WAVES * PER_WAVE) as u64 - garbage);
    assert_eq!(
        received.len() as u64 + gets + garbage,
        (WAVES * PER_WAVE) as u64
    );
    // Every index a client received is a distinct, real position.
    assert!(received.keys().all(|&i| i >= start_size && i < final_size));

    // All checkpoints seen, by the monitor or by waiting.
    seen.extend(waited);
    let mut by_size: BTreeMap<u64, Cp> = BTreeMap::new();
    for cp in seen {
        if let Some(other) = by_size.get(&cp.size) {
            assert_eq!(other.root, cp.root, "two roots for size {}", cp.size);
        }
        by_size.insert(cp.size, cp);
    }
    assert!(by_size.len() > WAVES, "{} checkpoints", by_size.len());
    let last = by_size.values().last().unwrap().clone();
    assert_eq!(last.size, final_size);

    let rows = all_entries(&h, Some(&h.admin)).await;
    let leaves: Vec<Hash> = rows.iter().map(|r| r.leaf).collect();
    let cps: Vec<&Cp> = by_size.values().collect();
    for cp in &cps {
        assert_eq!(
            cp.root,
            mth(&leaves[..cp.size as usize]),
            "checkpoint {}",
            cp.size
        );
    }
    // Every checkpoint the server ever signed (its own table, read behind its back)
    // opens with the log key and is a prefix of the final tree: it never signed two
    // inconsistent ones.
    let mut db = h.db().await;
    let signed: Vec<(i64, Vec<u8>, String)> =
        sqlx::query_as("SELECT size, root, note FROM audit_checkpoints ORDER BY size")
            .fetch_all(&mut db)
            .await
            .unwrap();
    let mut signed_roots: BTreeMap<u64, Hash> = BTreeMap::new();
    for (size, root, text) in &signed {
        let opened = note::open_checkpoint(text, &log.origin, std::slice::from_ref(&log.verifier))
            .unwrap_or_else(|e| panic!("stored checkpoint {size} does not open: {e}"));
        let size = u64::try_from(*size).unwrap();
        assert_eq!(opened.checkpoint().size, size);
        assert_eq!(
            opened.checkpoint().root.as_bytes().as_slice(),
            root.as_slice()
        );
        assert_eq!(
            opened.checkpoint().root,
            mth(&leaves[..size as usize]),
            "checkpoint {size}"
        );
        signed_roots.insert(size, opened.checkpoint().root);
    }
    for cp in &cps {
        assert_eq!(signed_roots.get(&cp.size), Some(&cp.root));
    }
    // The proofs clients got while the log grew are into signed checkpoints.
    assert_eq!(early_proofs.len(), received.len());
    for (i, (tree_size, proof)) in &early_proofs {
        let root = signed_roots.get(tree_size).unwrap_or_else(|| {
            panic!("entry {i}: proof into tree {tree_size}, which was never signed")
        });
        merkle::check_record(proof, *tree_size, root, *i, &leaves[*i as usize])
            .unwrap_or_else(|e| panic!("entry {i} in checkpoint {tree_size}: {e}"));
    }
    // Consistency between every pair of checkpoints seen.
    for (x, old) in cps.iter().enumerate() {
        for new in &cps[x + 1..] {
            let v = api
                .get(
                    &format!(
                        "/v1/audit/proof/consistency?first={}&second={}",
                        old.size, new.size
                    ),
                    None,
                )
                .await
                .json();
            merkle::check_tree(
                &hashes(&v["hashes"]),
                new.size,
                &new.root,
                old.size,
                &old.root,
            )
            .unwrap_or_else(|e| panic!("{} -> {}: {e}", old.size, new.size));
        }
    }
    // Every index a client received holds its decision and proves into the latest
    // checkpoint and into the first checkpoint that covered it.
    let mut get_entries = 0;
    for row in &rows[start_size as usize..] {
        let e = decode(row.entry.as_deref().unwrap());
        assert_eq!(e.event, EventType::Verify);
        if !received.contains_key(&row.index) {
            assert_eq!(e.token_sha256, Some(token_sha256(&good)));
            assert!(e.scopes.is_empty());
            assert_eq!(e.decision, Some(Decision::Allow));
            get_entries += 1;
        }
    }
    assert_eq!(get_entries, gets);
    for (&i, (token, kind)) in &received {
        let row = &rows[i as usize];
        let e = decode(row.entry.as_deref().unwrap());
        assert_eq!(e.token_sha256, Some(token_sha256(token)), "entry {i}");
        let (decision, reasons): (Decision, &[&str]) = match kind {
            Kind::Allow => (Decision::Allow, &[]),
            Kind::ScopeDeny => (Decision::Deny, &["SCOPE_NOT_GRANTED"]),
            Kind::Revoked => (Decision::Deny, &["TOKEN_REVOKED"]),
            Kind::Garbage => (Decision::Deny, &["TOKEN_INVALID"]),
            Kind::Get => unreachable!(),
        };
        assert_eq!(e.decision, Some(decision), "entry {i}");
        assert_eq!(
            e.reasons,
            reasons.iter().map(|r| r.to_string()).collect::<Vec<_>>()
        );
        let v = api
            .get(&format!("/v1/audit/proof/inclusion?index={i}"), None)
            .await
            .json();
        assert_eq!(v["tree_size"].as_u64(), Some(last.size), "{v}");
        merkle::check_record(&hashes(&v["hashes"]), last.size, &last.root, i, &row.leaf).unwrap();
        let first = cps.iter().find(|cp| cp.size > i).unwrap();
        let v = api
            .get(
                &format!(
                    "/v1/audit/proof/inclusion?index={i}&tree_size={}",
                    first.size
                ),
                None,
            )
            .await
            .json();
        merkle::check_record(&hashes(&v["hashes"]), first.size, &first.root, i, &row.leaf)
            .unwrap_or_else(|e| panic!("entry {i} in checkpoint {}: {e}", first.size));
    }

    // Ranges over a log of more than 1000 entries.
    assert!(final_size > 1001);
    assert_eq!(entries(&api, 1, 1001, None).await.len(), 1000);
    api.get("/v1/audit/entries?start=0&end=1001", None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "BAD_REQUEST");
    let v = api.get("/v1/audit/entries?start=5", None).await.json();
    assert_eq!(v["entries"].as_array().unwrap().len(), 100);
    assert_eq!(v["entries"][99]["index"].as_u64(), Some(104));

    // Tiles over more than 256 entries: full level-0 tiles are the leaf hashes and
    // immutable; level-1 hashes are the roots of the 256-leaf subtrees; together
    // they rebuild the signed root.
    let full = final_size / 256;
    let mut from_tiles: Vec<Hash> = Vec::new();
    for t in 0..full {
        let r = api.get(&format!("/v1/audit/tile/0/{t:03}"), None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            r.header("cache-control").contains("immutable"),
            "{}",
            r.header("cache-control")
        );
        from_tiles.extend(r.body.chunks(32).map(|c| Hash::try_from(c).unwrap()));
    }
    let partial = final_size % 256;
    if partial > 0 {
        let r = api
            .get(&format!("/v1/audit/tile/0/{full:03}.p/{partial}"), None)
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(!r.header("cache-control").contains("immutable"));
        from_tiles.extend(r.body.chunks(32).map(|c| Hash::try_from(c).unwrap()));
    }
    assert_eq!(from_tiles, leaves);
    assert_eq!(mth(&from_tiles), last.root);
    let r = api
        .get(&format!("/v1/audit/tile/1/000.p/{full}"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let level1: Vec<Hash> = r
        .body
        .chunks(32)
        .map(|c| Hash::try_from(c).unwrap())
        .collect();
    assert_eq!(level1.len() as u64, full);
    for (t, hash) in level1.iter().enumerate() {
        assert_eq!(
            *hash,
            mth(&leaves[t * 256..(t + 1) * 256]),
            "level-1 hash {t}"
        );
    }
    api.get(&format!("/v1/audit/tile/1/000.p/{}", full + 1), None)
        .await
        .assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");

    // A bundle of only issuer A's entries: pad the log to a tile boundary with
    // changes that concern no issuer (receivers created), then log three of A's.
    let mut next = final_size;
    while next % 256 != 0 {
        let (st, v) = h
            .call(
                "POST",
                "/v1/receivers",
                Some(&h.admin),
                Some(json!({"name": format!("pad-{next}")})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        next += 1;
        assert_eq!(size(&h).await, next);
    }
    for _ in 0..3 {
        h.verify_token(&good).await;
    }
    let path = format!("/v1/audit/tile/entries/{:03}.p/3", next / 256);
    let as_a = api.get(&path, Some(&ka)).await;
    assert_eq!(as_a.status, StatusCode::OK, "{}", as_a.text());
    let as_admin = api.get(&path, Some(&h.admin)).await;
    assert_eq!(as_admin.status, StatusCode::OK);
    assert_eq!(as_a.body, as_admin.body);
    let mine = entries(&api, next, next + 3, Some(&ka)).await;
    let mut expected = Vec::new();
    for row in &mine {
        let text = row.entry.as_deref().expect("A sees its agents' decisions");
        assert_eq!(decode(text).token_sha256, Some(token_sha256(&good)));
        expected.extend_from_slice(&u16::try_from(text.len()).unwrap().to_be_bytes());
        expected.extend_from_slice(text.as_bytes());
    }
    assert_eq!(as_a.body, expected);
    api.get(&path, Some(&kb))
        .await
        .assert_error(StatusCode::FORBIDDEN, "FORBIDDEN");
    api.get(&path, None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    // One more entry that is not A's makes the wider bundle forbidden to A.
    let (st, _) = h
        .call(
            "POST",
            "/v1/receivers",
            Some(&h.admin),
            Some(json!({"name": "not-a"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    api.get(
        &format!("/v1/audit/tile/entries/{:03}.p/4", next / 256),
        Some(&ka),
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "FORBIDDEN");
}

// ---------------------------------------------------------------------------------
// Tampering behind the server's back

#[tokio::test]
async fn a_tampered_store_is_never_signed_over() {
    use sqlx::Connection;
    let h = start_with_config(fast_checkpoints()).await;
    let api = Api::of(&h);
    let log = log_of(&h).await;
    let key = h.issuer("tamper.example").await;
    let (agent_id, token) = agent(&h, &key, "T", &["read:x"]).await;
    // An odd size: the last leaf hash is on the tree's right edge, so every later
    // tree and every consistency proof from this one depends on it.
    if size(&h).await % 2 == 0 {
        h.verify_token(&token).await;
    }
    let n = size(&h).await;
    assert_eq!(n % 2, 1);
    let old = wait_checkpoint(&api, &log, n).await;
    assert_eq!(old.size, n);

    let mut db = h.db().await;
    let changed = sqlx::query("UPDATE audit_log SET leaf_hash = ? WHERE idx = ?")
        .bind(vec![0xA5u8; 32])
        .bind(i64::try_from(n - 1).unwrap())
        .execute(&mut db)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(changed, 1);

    // The registry keeps working: new entries are appended and answered.
    let v = h.verify_token(&token).await;
    assert_eq!(v["audit_index"].as_u64(), Some(n));
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/agents/{agent_id}/issue-token"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    for _ in 0..4 {
        h.verify_token(&token).await;
    }
    let m = size(&h).await;
    assert_eq!(m, n + 6);

    // Asking for a checkpoint covering the new entries makes the server try to sign
    // one now: it must refuse (503), not sign, not panic.
    api.get(&format!("/v1/audit/proof/inclusion?index={n}"), None)
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "AUDIT_UNAVAILABLE");
    api.get(&format!("/v1/audit/proof/bundle?index={}", m - 1), None)
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "AUDIT_UNAVAILABLE");
    // Meanwhile the background signer keeps trying (every 50 ms); the served
    // checkpoint stays the old one and the endpoint stays up.
    for _ in 0..30 {
        let cp = api.checkpoint(&log).await;
        assert_eq!(cp, old, "a checkpoint over the tampered log was served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let v = api.get("/v1/audit/proof/consistency?first=1", None).await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.text());
    assert_eq!(v.json()["second"].as_u64(), Some(n));
    // Nothing beyond the old checkpoint was signed into the store either.
    let (max, count): (i64, i64) =
        sqlx::query_as("SELECT MAX(size), COUNT(*) FROM audit_checkpoints WHERE size > ?")
            .bind(i64::try_from(n).unwrap())
            .fetch_one(&mut db)
            .await
            .map(|(m, c): (Option<i64>, i64)| (m.unwrap_or(0), c))
            .unwrap();
    assert_eq!((max, count), (0, 0));
    let stored: Vec<(i64, Vec<u8>)> = sqlx::query_as("SELECT size, root FROM audit_checkpoints")
        .fetch_all(&mut db)
        .await
        .unwrap();
    assert!(
        stored
            .iter()
            .any(|(s, r)| *s as u64 == n && r.as_slice() == old.root.as_bytes())
    );
    db.close().await.unwrap();
}

#[tokio::test]
async fn a_rolled_back_store_is_never_signed_over() {
    use sqlx::Connection;
    let h = start_with_config(fast_checkpoints()).await;
    let api = Api::of(&h);
    let log = log_of(&h).await;
    let key = h.issuer("rollback.example").await;
    let (_, token) = agent(&h, &key, "R", &["read:x"]).await;
    for _ in 0..3 {
        h.verify_token(&token).await;
    }
    let n = size(&h).await;
    let old = wait_checkpoint(&api, &log, n).await;
    assert_eq!(old.size, n);

    // Drop the last two entries behind the server's back.
    let mut db = h.db().await;
    let deleted = sqlx::query("DELETE FROM audit_log WHERE idx >= ?")
        .bind(i64::try_from(n - 2).unwrap())
        .execute(&mut db)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(deleted, 2);
    assert_eq!(size(&h).await, n - 2);
    // The signed checkpoint is still what is served.
    for _ in 0..10 {
        assert_eq!(api.checkpoint(&log).await, old);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // New decisions refill the log past the old size with other entries.
    for _ in 0..4 {
        h.verify_token(&token).await;
    }
    let m = size(&h).await;
    assert_eq!(m, n + 2);
    api.get(&format!("/v1/audit/proof/inclusion?index={}", m - 1), None)
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "AUDIT_UNAVAILABLE");
    for _ in 0..10 {
        assert_eq!(api.checkpoint(&log).await, old);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let newer: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_checkpoints WHERE size > ?")
        .bind(i64::try_from(n).unwrap())
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(newer, 0, "a checkpoint over the rewritten log was signed");
    db.close().await.unwrap();
}

// ---------------------------------------------------------------------------------
// Restart

/// A server on `dir` (a registry restarted on its data dir keeps its log).
async fn boot(
    dir: &std::path::Path,
) -> (
    Api,
    Arc<bonafide_server::AppState>,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), bonafide_server::ServerError>>,
) {
    let store = bonafide_store::SqliteStore::open(dir).await.unwrap();
    let server = bonafide_server::Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        fast_checkpoints(),
        Arc::new(store),
    )
    .await
    .unwrap();
    let api = Api {
        base: format!("http://{}", server.local_addr().unwrap()),
        http: reqwest::Client::new(),
    };
    let state = server.state();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    (api, state, tx, task)
}

async fn log_at(api: &Api) -> Log {
    let v = api
        .get("/.well-known/bonafide-configuration", None)
        .await
        .json();
    Log {
        origin: v["audit_log"]["origin"].as_str().unwrap().to_owned(),
        verifier: NoteVerifier::from_key_string(v["audit_log"]["log_key"].as_str().unwrap())
            .unwrap(),
    }
}

#[tokio::test]
async fn a_restarted_registry_extends_the_same_log() {
    use bonafide_core::apikey::{ApiKey, KeyKind};
    let dir = tempfile::tempdir().unwrap();
    let admin = ApiKey::from_random(KeyKind::Admin, common::rand20());
    {
        let store = bonafide_store::SqliteStore::open(dir.path()).await.unwrap();
        bonafide_store::Store::add_admin_key(&store, &admin.hash(), 0, &common::admin_key_audit())
            .await
            .unwrap();
    }
    let admin = admin.expose_secret().to_owned();

    let (api, state, stop, task) = boot(dir.path()).await;
    let log1 = log_at(&api).await;
    let v = api
        .send(
            "POST",
            "/v1/issuers",
            Some(&admin),
            Some(json!({"name": "restart.example"})),
        )
        .await
        .json();
    let key = v["api_key"].as_str().unwrap().to_owned();
    let reg = api
        .send(
            "POST",
            "/v1/agents/register",
            Some(&key),
            Some(json!({"name": "S", "scopes": ["read:x"]})),
        )
        .await
        .json();
    let token = reg["token"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        let r = api
            .send("POST", "/v1/verify", None, Some(json!({"token": token})))
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let n = state.store.audit_size().await.unwrap();
    let cp1 = wait_checkpoint(&api, &log1, n).await;
    assert_eq!(cp1.size, n);
    let before = entries(&api, 0, n, Some(&admin)).await;
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    drop(state);

    // Another port, so another default public URL: the log keeps its origin and key.
    let (api, state, stop, task) = boot(dir.path()).await;
    let log2 = log_at(&api).await;
    assert_eq!(log2.origin, log1.origin);
    assert_eq!(log2.verifier.key_string(), log1.verifier.key_string());
    // Restarting appends nothing (the signing key exists) and serves the same checkpoint.
    assert_eq!(state.store.audit_size().await.unwrap(), n);
    assert_eq!(api.checkpoint(&log2).await, cp1);
    let after = entries(&api, 0, n, Some(&admin)).await;
    for (a, b) in before.iter().zip(&after) {
        assert_eq!((a.leaf, &a.entry), (b.leaf, &b.entry));
    }
    // The log continues where it was, and the next checkpoint extends the old one.
    // (A verify of `token` would not do: its `iss` is the old URL, so it does not
    // verify and concerns no agent, and such decisions are not logged.)
    let v = api
        .send("POST", "/v1/verify", None, Some(json!({"token": token})))
        .await
        .json();
    assert_eq!(v["error"]["code"], "ISSUER_UNKNOWN", "{v}");
    assert_eq!(v.get("audit_index"), None, "{v}");
    let created = api
        .send(
            "POST",
            "/v1/receivers",
            Some(&admin),
            Some(json!({"name": "after-restart"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(state.store.audit_size().await.unwrap(), n + 1);
    let cp2 = wait_checkpoint(&api, &log2, n + 1).await;
    assert_eq!(cp2.size, n + 1);
    let c = api
        .get(
            &format!(
                "/v1/audit/proof/consistency?first={}&second={}",
                cp1.size, cp2.size
            ),
            None,
        )
        .await
        .json();
    merkle::check_tree(
        &hashes(&c["hashes"]),
        cp2.size,
        &cp2.root,
        cp1.size,
        &cp1.root,
    )
    .unwrap();
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_largest_decision_a_caller_can_ask_for_is_logged_whole_and_more_is_refused() {
    // Entries are at most 65535 bytes (u16 lengths in entry bundles). Every field a
    // caller sends is bounded well below that (issue 13), so the largest decision a
    // request can cause is logged whole and bundled intact, and anything over a
    // field's bound is a 422 with nothing appended, never cut.
    let h = start_with_config(unpublished()).await;
    let api = Api::of(&h);
    let (_, key) = issuer_with_id(&h, "largest.example").await;
    let (_, token) = agent(&h, &key, "bot", &["read:data"]).await;
    let scopes = |pad: usize| -> Vec<String> {
        (0..64)
            .map(|i| format!("s{i:02}:{}", "a".repeat(pad)))
            .collect()
    };
    let before = size(&h).await;
    let big = scopes(60);
    let r = api
        .send(
            "POST",
            "/v1/verify",
            None,
            Some(json!({"token": token, "scopes_requested": big})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let i = r.json()["audit_index"].as_u64().unwrap();
    assert_eq!(i, before);
    let (e, text) = entry_at(&h, i).await;
    assert_eq!(e.scopes, big);
    assert!(text.len() > 4_000 && text.len() <= 65_535, "{}", text.len());
    let bundle = api
        .get(
            &format!("/v1/audit/tile/entries/000.p/{}", i + 1),
            Some(&h.admin),
        )
        .await;
    assert_eq!(bundle.status, StatusCode::OK);
    let tail = &bundle.body[bundle.body.len() - text.len() - 2..];
    assert_eq!(
        usize::from(u16::from_be_bytes([tail[0], tail[1]])),
        text.len()
    );
    assert_eq!(&tail[2..], text.as_bytes());

    for pad in [61, 300] {
        let r = api
            .send(
                "POST",
                "/v1/verify",
                None,
                Some(json!({"token": token, "scopes_requested": scopes(pad)})),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
        assert_eq!(
            size(&h).await,
            before + 1,
            "an oversized decision was appended"
        );
    }
}

/// RFC 7662 introspection is a verification too: each answer about a token that
/// verifies is an audit entry (one that does not concerns no agent and is only
/// counted), and a wrong key presented is a 401, not an anonymous call.
#[tokio::test]
async fn introspection_decisions_are_logged() {
    let h = start_with_config(unpublished()).await;
    let (_, key) = issuer_with_id(&h, "introspect.example").await;
    let (agent_id, token) = agent(&h, &key, "bot", &["read:data"]).await;
    for (body, active) in [(token.clone(), true), (format!("{token}x"), false)] {
        let before = size(&h).await;
        let resp = h
            .http
            .post(format!("{}/v1/introspect", h.base))
            .form(&[("token", body.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["active"], active, "{v}");
        if !active {
            assert_eq!(size(&h).await, before, "a forged token was logged");
            continue;
        }
        assert_eq!(size(&h).await, before + 1);
        let (entry, text) = entry_at(&h, before).await;
        assert_eq!(entry.event, EventType::Verify);
        assert_eq!(entry.token_sha256, Some(token_sha256(&body)));
        let decision = if active {
            Decision::Allow
        } else {
            Decision::Deny
        };
        assert_eq!(entry.decision, Some(decision));
        assert_eq!(entry.agent.is_some(), active, "{text}");
        if active {
            assert_eq!(entry.agent.as_deref(), Some(agent_id.as_str()));
        }
        assert!(!text.contains(&body));
    }
    let before = size(&h).await;
    let resp = h
        .http
        .post(format!("{}/v1/introspect", h.base))
        .header("X-API-Key", "bfk_rcv_not-a-key")
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(size(&h).await, before);
}
