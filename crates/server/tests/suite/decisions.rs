//! End-to-end tests of consent-policy decisions over HTTP (issue 5): receivers,
//! `POST /v1/policies/lint`, registration with a policy, `POST /v1/verify` with
//! action, resource and amount, exact budgets under concurrency, idempotent retries,
//! `POST /v1/simulate`, and the signed receipts, checked with core's receipt verifier
//! and, as an outside client, with PyJWT from the JWKS alone.
//!
//! The real server on 127.0.0.1:0 with a temp SQLite data dir (see `common`). Budgets
//! here are monthly in UTC: a run that straddles the first instant of a month would
//! see its budget reset halfway (the expected `period_ends` is computed from the clock
//! before the requests).

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bonafide_core::apikey::{ApiKey, KeyKind};
use bonafide_core::ids::{ReceiptId, ReceiverId};
use bonafide_core::keys::Jwks;
use bonafide_core::policy::{Currency, Decimal, Money};
use bonafide_core::receipt::{self, RequestFacts};
use bonafide_core::token::KeySet;
use bonafide_core::{b64, hex, sha256};
use bonafide_server::Config;
use common::{Harness, start, start_with_config};
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

/// An answer: status, the `idempotent-replayed` header, and the body (JSON, or the
/// text as a JSON string when it is not JSON).
#[derive(Debug)]
struct Resp {
    status: StatusCode,
    replayed: Option<String>,
    body: Value,
}

impl Resp {
    /// The body of a 200.
    fn ok(self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        self.body
    }

    /// An error answer with this status and code (and a message and request id).
    fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        let v = &self.body;
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
        assert!(
            v["error"]["request_id"]
                .as_str()
                .is_some_and(|m| m.starts_with("req_")),
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

    async fn send(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Resp {
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
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let replayed = resp
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Resp {
            status,
            replayed,
            body,
        }
    }

    async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> Resp {
        self.send("POST", path, key, Some(serde_json::to_vec(body).unwrap()))
            .await
    }

    async fn get(&self, path: &str, key: Option<&str>) -> Resp {
        self.send("GET", path, key, None).await
    }

    async fn verify(&self, key: Option<&str>, body: &Value) -> Resp {
        self.post("/v1/verify", key, body).await
    }

    async fn simulate(&self, key: Option<&str>, body: &Value) -> Resp {
        self.post("/v1/simulate", key, body).await
    }

    async fn lint(&self, text: &[u8]) -> Value {
        self.send("POST", "/v1/policies/lint", None, Some(text.to_vec()))
            .await
            .ok()
    }
}

/// Creates a receiver: (receiver id, its API key).
async fn receiver(h: &Harness, name: &str) -> (String, String) {
    let r = Api::of(h)
        .post("/v1/receivers", Some(&h.admin), &json!({"name": name}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    (
        r.body["receiver_id"].as_str().unwrap().to_owned(),
        r.body["api_key"].as_str().unwrap().to_owned(),
    )
}

const USER: &str = "did:example:alice";
const SCOPES: [&str; 2] = ["payments:write", "read:account"];

/// A registered agent.
#[derive(Debug, Clone)]
struct Agent {
    id: String,
    token: String,
    jti: String,
    reg: Value,
}

/// Registers an agent with `policy` (if any) on behalf of [`USER`].
async fn agent(h: &Harness, key: &str, name: &str, policy: Option<Value>) -> Agent {
    let mut body = json!({"name": name, "scopes": SCOPES, "user": USER});
    if let Some(p) = policy {
        body["policy"] = p;
    }
    let reg = h.register(key, body).await;
    let token = reg["token"].as_str().unwrap().to_owned();
    let jti = payload(&token)["jti"].as_str().unwrap().to_owned();
    Agent {
        id: reg["agent_id"].as_str().unwrap().to_owned(),
        token,
        jti,
        reg,
    }
}

/// The claims of a compact JWS, unverified.
fn payload(jws: &str) -> Value {
    let middle = jws.split('.').nth(1).unwrap();
    serde_json::from_slice(&b64::decode(middle).unwrap()).unwrap()
}

fn sha256_hex(text: &str) -> String {
    hex(&sha256(text.as_bytes()))
}

/// A shop policy: two actions, accounts `acct/999` and those under `acct/12`, at most
/// 50.00 USD a payment and 100.00 USD a month.
fn shop_policy(id: &str) -> Value {
    json!({
        "version": "pol.v0.2",
        "id": id,
        "actions": ["payments.send", "payments.refund"],
        "resources": [{"type": "account", "match": {"ids": ["acct/999"], "prefixes": ["acct/12"]}}],
        "limits": {
            "per_txn": {"amount": "50.00", "currency": "USD"},
            "per_period": {"amount": "100.00", "currency": "USD", "period": "month"}
        }
    })
}

/// A policy with only a monthly budget of `cap` USD for `payments.send`.
fn budget_policy(id: &str, cap: &str) -> Value {
    json!({
        "version": "pol.v0.2",
        "id": id,
        "actions": ["payments.send"],
        "limits": {"per_period": {"amount": cap, "currency": "USD", "period": "month"}}
    })
}

/// `payments.send` of `amount` USD to account `account` (none if empty).
fn spend(token: &str, account: &str, amount: &str) -> Value {
    let mut v =
        json!({"token": token, "action": "payments.send", "amount": amount, "currency": "USD"});
    if !account.is_empty() {
        v["resource"] = json!({"type": "account", "id": account});
    }
    v
}

/// What is left of the budget: a simulate that states no amount is refused with
/// `AMOUNT_REQUIRED` and reports the budget as it stands.
async fn left(api: &Api, token: &str, account: &str) -> String {
    let mut body = json!({"token": token, "action": "payments.send"});
    if !account.is_empty() {
        body["resource"] = json!({"type": "account", "id": account});
    }
    let v = api.simulate(None, &body).await.ok();
    let reasons = v["reasons"].as_array().unwrap();
    assert_eq!(reasons.last().unwrap(), "AMOUNT_REQUIRED", "{v}");
    assert_eq!(v["simulated"], true, "{v}");
    v["remaining"]["amount"].as_str().unwrap().to_owned()
}

/// Cents of a decimal text with at most two decimals.
fn cents(s: &str) -> i64 {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    assert!(frac.len() <= 2, "{s}");
    let frac = format!("{frac:0<2}");
    whole.parse::<i64>().unwrap() * 100 + frac.parse::<i64>().unwrap()
}

/// Cents as a USD amount text (`"87.50"`).
fn usd(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// The first instant of the next UTC month, as answers write `period_ends`.
fn next_month_utc() -> String {
    let now = jiff::tz::TimeZone::UTC.to_datetime(jiff::Timestamp::now());
    let (y, m) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    format!("{y:04}-{m:02}-01T00:00:00Z")
}

fn utc_hour() -> i32 {
    i32::from(
        jiff::tz::TimeZone::UTC
            .to_datetime(jiff::Timestamp::now())
            .hour(),
    )
}

/// `"HH:00"` of an hour taken modulo 24.
fn hh(hour: i32) -> String {
    format!("{:02}:00", hour.rem_euclid(24))
}

/// A copy of `v` with the member at JSON pointer `ptr` set (added if absent).
fn with(v: &Value, ptr: &str, new: Value) -> Value {
    let mut out = v.clone();
    let (parent, name) = ptr.rsplit_once('/').unwrap();
    out.pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .insert(name.to_owned(), new);
    out
}

/// The stored log size (an oracle behind the server's back).
async fn audit_size(h: &Harness) -> u64 {
    h.state.store.audit_size().await.unwrap()
}

/// Every row of every table of the SQLite store, read behind the server's back,
/// except the checkpoints the background signer adds on its own schedule.
async fn snapshot(h: &Harness) -> BTreeMap<String, Vec<String>> {
    use sqlx::Connection;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&h.db_path)
        .read_only(true)
        .busy_timeout(Duration::from_secs(10));
    let mut db = sqlx::sqlite::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        // What the checkpoint task writes on its own schedule (a checkpoint, and the
        // leaf index it extends up to it) is left out: it may land between two
        // snapshots whatever the request did; the audit log itself is compared.
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT IN ('audit_checkpoints', 'audit_leaf_index', 'audit_leaf_progress') ORDER BY name",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    for t in [
        "audit_log",
        "budgets",
        "idempotency",
        "receipts",
        "receivers",
    ] {
        assert!(tables.iter().any(|n| n == t), "no table {t} in {tables:?}");
    }
    let mut out = BTreeMap::new();
    for t in tables {
        let cols: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?)")
            .bind(&t)
            .fetch_all(&mut db)
            .await
            .unwrap();
        let row = cols
            .iter()
            .map(|c| format!("quote(\"{c}\")"))
            .collect::<Vec<_>>()
            .join(" || '|' || ");
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT {row} FROM \"{t}\" ORDER BY 1"
        )))
        .fetch_all(&mut db)
        .await
        .unwrap();
        out.insert(t, rows);
    }
    db.close().await.unwrap();
    out
}

/// The registry's JWKS as a key set.
/// The receipt key set, from the registry's receipt JWKS.
async fn jwks(api: &Api) -> KeySet {
    let r = api.get("/.well-known/receipt-jwks.json", None).await;
    let jwks: Jwks = serde_json::from_value(r.ok()).unwrap();
    KeySet::from_jwks(&jwks).unwrap()
}

/// `GET /v1/receipts/{id}` as `key`.
async fn get_receipt(api: &Api, id: &str, key: Option<&str>) -> Resp {
    api.get(&format!("/v1/receipts/{id}"), key).await
}

/// Asserts the decision members that `verify` and `simulate` must agree on.
fn same_decision(a: &Value, b: &Value) {
    for m in [
        "valid",
        "allowed",
        "reasons",
        "reason",
        "agent",
        "user",
        "expires_at",
        "remaining",
    ] {
        assert_eq!(a.get(m), b.get(m), "`{m}` differs:\n{a}\n{b}");
    }
    // The same error, each with its own request's id.
    for m in ["code", "message"] {
        assert_eq!(
            a["error"][m], b["error"][m],
            "`error.{m}` differs:\n{a}\n{b}"
        );
    }
    assert_eq!(a["error"].is_object(), b["error"].is_object(), "{a}\n{b}");
}

// ---------------------------------------------------------------------------------
// 1. Receivers

#[tokio::test]
async fn receivers_are_created_by_admins_only() {
    let h = start().await;
    let api = Api::of(&h);
    let before = audit_size(&h).await;
    let r = api
        .post(
            "/v1/receivers",
            Some(&h.admin),
            &json!({"name": "api.shop.example"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["receiver_id"].as_str().unwrap().to_owned();
    let key = r.body["api_key"].as_str().unwrap().to_owned();
    assert!(id.starts_with("rcv_"), "{id}");
    assert_eq!(
        ReceiverId::try_from(id.as_str()).unwrap().to_string(),
        id,
        "ids are `rcv_` and 26 base32 characters"
    );
    assert!(key.starts_with("bfk_rcv_"), "{key}");
    assert_eq!(ApiKey::parse(&key).unwrap().kind(), KeyKind::Receiver);
    assert_eq!(r.body["name"], "api.shop.example");
    assert_eq!(
        audit_size(&h).await,
        before + 1,
        "creating a receiver is one state change"
    );

    // A second receiver gets its own id and key.
    let (id2, key2) = receiver(&h, "api.other.example").await;
    assert_ne!(id2, id);
    assert_ne!(key2, key);

    // The key is a receiver's: it may spend and send idempotency keys (tested below),
    // and it is no admin key.
    let issuer_key = h.issuer("issuer.example").await;
    let body = json!({"name": "x.example"});
    let r = api.post("/v1/receivers", None, &body).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let unknown = ApiKey::from_random(KeyKind::Admin, common::rand20());
    let r = api
        .post("/v1/receivers", Some(unknown.expose_secret()), &body)
        .await;
    r.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let r = api.post("/v1/receivers", Some(&issuer_key), &body).await;
    r.assert_error(StatusCode::FORBIDDEN, "FORBIDDEN");
    let r = api.post("/v1/receivers", Some(&key), &body).await;
    r.assert_error(StatusCode::FORBIDDEN, "FORBIDDEN");

    // Names are unique.
    let r = api
        .post(
            "/v1/receivers",
            Some(&h.admin),
            &json!({"name": "api.shop.example"}),
        )
        .await;
    r.assert_error(StatusCode::CONFLICT, "CONFLICT");

    // An unknown member is refused the way `POST /v1/issuers` refuses one (the
    // API's convention for well-formed JSON with a member it does not define).
    let extra = json!({"name": "ok.example", "monthly_quota": 5, "colour": "red"});
    let as_issuer = api.post("/v1/issuers", Some(&h.admin), &extra).await;
    let r = api.post("/v1/receivers", Some(&h.admin), &extra).await;
    assert_eq!(
        r.status, as_issuer.status,
        "{} vs {}",
        r.body, as_issuer.body
    );
    r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{}",
        r.body
    );
    for bad in [
        json!({"name": ""}),
        json!({"name": "   "}),
        json!({}),
        json!({"name": 5}),
        json!({"name": "a\u{0007}b"}),
        json!({"name": "x".repeat(300)}),
    ] {
        let r = api.post("/v1/receivers", Some(&h.admin), &bad).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            r.body
        );
        assert!(r.body["error"]["code"].is_string(), "{}", r.body);
    }
    let r = api
        .send(
            "POST",
            "/v1/receivers",
            Some(&h.admin),
            Some(b"{\"name\": ".to_vec()),
        )
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "MALFORMED_JSON");
    assert_eq!(
        audit_size(&h).await,
        before + 3,
        "two receivers and one issuer were created; the refusals logged nothing"
    );
}

// ---------------------------------------------------------------------------------
// 2. Lint

#[tokio::test]
async fn lint_gives_the_canonical_form_and_its_hash() {
    let h = start().await;
    let api = Api::of(&h);

    // A small policy whose canonical form is written out by hand.
    let v = api
        .lint(br#"{ "version": "pol.v0.2", "id": "p1", "actions": ["b.c", "a.b"] }"#)
        .await;
    let canonical = r#"{"actions":["b.c","a.b"],"id":"p1","version":"pol.v0.2"}"#;
    assert_eq!(
        v,
        json!({
            "valid": true,
            "errors": [],
            "policy_hash": format!("sha256:{}", sha256_hex(canonical)),
            "canonical": canonical,
        })
    );

    let policy = with(
        &shop_policy("pol_lint"),
        "/constraints",
        json!({"time": {"dow": ["Mon", "Fri"], "start": "22:00", "end": "06:00", "tz": "America/New_York"}}),
    );
    let policy = with(&policy, "/meta", json!({"note": "é ✓", "n": 1}));
    let v = api.lint(&serde_json::to_vec(&policy).unwrap()).await;
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["errors"], json!([]), "{v}");
    let canonical = v["canonical"].as_str().unwrap();
    let hash = v["policy_hash"].as_str().unwrap();
    assert_eq!(hash, format!("sha256:{}", sha256_hex(canonical)));
    assert_eq!(
        serde_json::from_str::<Value>(canonical).unwrap(),
        policy,
        "the canonical form is the policy itself"
    );
    assert!(
        canonical.starts_with(r#"{"actions":["payments.send","payments.refund"],"constraints":"#)
    );

    // Reordered members and other whitespace: the same canonical form and hash.
    let reordered = r#"
    {
      "meta": {"n": 1, "note": "\u00e9 \u2713"},
      "limits": {
        "per_period": {"period": "month", "currency": "USD", "amount": "100.00"},
        "per_txn":    {"currency": "USD", "amount": "50.00"}
      },
      "constraints": {"time": {"tz": "America/New_York", "end": "06:00", "start": "22:00", "dow": ["Mon", "Fri"]}},
      "resources": [{"match": {"prefixes": ["acct/12"], "ids": ["acct/999"]}, "type": "account"}],
      "actions": ["payments.send", "payments.refund"],
      "id": "pol_lint",
      "version": "pol.v0.2"
    }"#;
    let v2 = api.lint(reordered.as_bytes()).await;
    assert_eq!(v2, v);

    // Amounts hash as written: an integer is not the same text as a string.
    let int = with(&policy, "/limits/per_txn/amount", json!(50));
    let v3 = api.lint(&serde_json::to_vec(&int).unwrap()).await;
    assert_eq!(v3["valid"], true, "{v3}");
    assert_ne!(v3["policy_hash"], v["policy_hash"]);
    // And a different policy has a different hash.
    let other = with(&policy, "/id", json!("pol_lint2"));
    let v4 = api.lint(&serde_json::to_vec(&other).unwrap()).await;
    assert_ne!(v4["policy_hash"], v["policy_hash"]);

    // Invalid policies: valid false, one error naming the field, no hash.
    let time = |start: &str, end: &str, tz: &str| {
        with(
            &policy,
            "/constraints",
            json!({"time": {"start": start, "end": end, "tz": tz}}),
        )
    };
    let cases: Vec<(Value, &str)> = vec![
        (with(&policy, "/colour", json!("red")), "colour"),
        (
            with(&policy, "/limits/per_txn/max", json!(5)),
            "limits.per_txn.max",
        ),
        (with(&policy, "/version", json!("pol.v0.1")), "version"),
        (
            with(&policy, "/limits/per_txn/amount", json!(10.5)),
            "limits.per_txn.amount",
        ),
        (
            with(&policy, "/limits/per_txn/amount", json!("1e3")),
            "limits.per_txn.amount",
        ),
        (
            with(&policy, "/limits/per_txn/amount", json!("-1")),
            "limits.per_txn.amount",
        ),
        (
            with(&policy, "/limits/per_txn/amount", json!(-1)),
            "limits.per_txn.amount",
        ),
        (
            with(&policy, "/limits/per_txn/amount", json!("10.001")),
            "limits.per_txn.amount",
        ),
        (
            with(&policy, "/limits/per_txn/amount", json!("NaN")),
            "limits.per_txn.amount",
        ),
        (
            with(
                &policy,
                "/limits/per_period/amount",
                json!("1000000000000000"),
            ),
            "limits.per_period.amount",
        ),
        (
            with(&policy, "/limits/per_txn/currency", json!("XYZ")),
            "limits.per_txn.currency",
        ),
        (
            with(&policy, "/limits/per_txn/currency", json!("DEM")),
            "limits.per_txn.currency",
        ),
        (
            with(&policy, "/limits/per_period/period", json!("fortnight")),
            "limits.per_period.period",
        ),
        (time("08:00", "20:00", "Mars/Base"), "constraints.time.tz"),
        (
            time("08:00", "20:00", "america/new_york"),
            "constraints.time.tz",
        ),
        (time("08:00", "08:00", "UTC"), "constraints.time.end"),
        (time("25:00", "08:00", "UTC"), "constraints.time.start"),
        (time("08:00", "8:30", "UTC"), "constraints.time.end"),
        (with(&policy, "/actions", json!([])), "actions"),
    ];
    for (bad, path) in cases {
        let v = api.lint(&serde_json::to_vec(&bad).unwrap()).await;
        assert_eq!(v["valid"], false, "{path}: {v}");
        let errors = v["errors"].as_array().unwrap();
        assert!(!errors.is_empty(), "{path}: {v}");
        assert_eq!(errors[0]["path"], path, "{v}");
        assert!(
            errors[0]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{v}"
        );
        assert!(v.get("policy_hash").is_none_or(Value::is_null), "{v}");
        assert!(v.get("canonical").is_none_or(Value::is_null), "{v}");
    }
    // The withdrawn code is called that, and the misspelt zone gets its right name.
    let v = api
        .lint(
            &serde_json::to_vec(&with(&policy, "/limits/per_txn/currency", json!("DEM"))).unwrap(),
        )
        .await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("withdrawn"),
        "{v}"
    );
    let v = api
        .lint(&serde_json::to_vec(&time("08:00", "20:00", "america/new_york")).unwrap())
        .await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("America/New_York"),
        "{v}"
    );
    // Not a policy at all: still an answer, without a path.
    for text in [&b"{"[..], b"[1]", b"{\"id\":\"a\",\"id\":\"b\"}"] {
        let v = api.lint(text).await;
        assert_eq!(v["valid"], false, "{v}");
        assert!(
            v["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
    }
}

#[tokio::test]
async fn lint_reports_every_problem_with_its_path() {
    let h = start().await;
    let api = Api::of(&h);
    let policy = shop_policy("pol_many");
    let bad = with(
        &with(
            &with(&policy, "/limits/per_txn/currency", json!("DEM")),
            "/actions",
            json!(["pay", "pay"]),
        ),
        "/strict",
        json!("yes"),
    );
    let v = api.lint(&serde_json::to_vec(&bad).unwrap()).await;
    assert_eq!(v["valid"], false, "{v}");
    let paths: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["actions[1]", "limits.per_txn.currency", "strict"],
        "{v}"
    );
}

// ---------------------------------------------------------------------------------
// 3. Registration

#[tokio::test]
async fn registration_puts_policy_user_and_hash_in_the_token() {
    let h = start().await;
    let api = Api::of(&h);
    let key = h.issuer("shop-agents.example").await;
    let policy = with(&shop_policy("pol_reg"), "/limits/per_txn/amount", json!(50));
    let lint = api.lint(&serde_json::to_vec(&policy).unwrap()).await;
    let hash = lint["policy_hash"].as_str().unwrap().to_owned();

    let a = agent(&h, &key, "Shopper", Some(policy.clone())).await;
    assert_eq!(a.reg["policy_hash"], hash.as_str(), "{}", a.reg);
    assert_eq!(a.reg["user"], USER, "{}", a.reg);
    let claims = payload(&a.token);
    assert_eq!(claims["policy"], policy, "the policy as given");
    assert_eq!(claims["policy_hash"], hash.as_str());
    assert_eq!(
        hash,
        format!("sha256:{}", sha256_hex(lint["canonical"].as_str().unwrap()))
    );
    assert_eq!(claims["user"], USER);
    assert_eq!(claims["sub"], a.id.as_str());

    let (st, v) = h
        .call("GET", &format!("/v1/agents/{}", a.id), Some(&key), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["policy_hash"], hash.as_str(), "{v}");
    assert_eq!(v["user"], USER, "{v}");
    assert_eq!(v["policy"], policy, "{v}");

    // A token re-issued for the agent carries the same policy.
    let (st, v) = h
        .call(
            "POST",
            &format!("/v1/agents/{}/issue-token", a.id),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let again = payload(v["token"].as_str().unwrap());
    assert_eq!(again["policy"], policy);
    assert_eq!(again["policy_hash"], hash.as_str());
    assert_eq!(again["user"], USER);

    // The token verifies, and the answer names the user. Its policy grants named
    // actions only: a request that names none is refused (deny by default).
    let v = h.verify_token(&a.token).await;
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(v["reasons"], json!(["POLICY_ACTION"]), "{v}");
    assert_eq!(v["user"], USER, "{v}");

    // An agent without a policy: no policy claims.
    let plain = agent(&h, &key, "Plain", None).await;
    let claims = payload(&plain.token);
    assert!(claims.get("policy").is_none(), "{claims}");
    assert!(claims.get("policy_hash").is_none(), "{claims}");
    assert!(plain.reg.get("policy_hash").is_none(), "{}", plain.reg);

    // Invalid policies are refused whole: nothing registered, nothing logged.
    let count = |h: &Harness| {
        let key = key.clone();
        let api = Api::of(h);
        async move {
            let v = api.get("/v1/agents?limit=200", Some(&key)).await.ok();
            v["agents"].as_array().unwrap().len()
        }
    };
    let agents_before = count(&h).await;
    assert_eq!(agents_before, 2);
    let log_before = audit_size(&h).await;
    for (bad, path) in [
        (with(&policy, "/version", json!("pol.v0.1")), "version"),
        (with(&policy, "/surprise", json!(true)), "surprise"),
        (
            with(&policy, "/limits/per_txn/amount", json!(10.5)),
            "limits.per_txn.amount",
        ),
        (
            with(&policy, "/limits/per_txn/currency", json!("XYZ")),
            "limits.per_txn.currency",
        ),
        (
            with(
                &policy,
                "/constraints",
                json!({"time": {"start": "08:00", "end": "20:00", "tz": "Mars/Base"}}),
            ),
            "constraints.time.tz",
        ),
        (json!("pol.v0.2"), "policy"),
    ] {
        let body = json!({"name": "Bad", "scopes": SCOPES, "policy": bad});
        let r = api.post("/v1/agents/register", Some(&key), &body).await;
        r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "POLICY_INVALID");
        assert!(
            r.body["error"]["message"].as_str().unwrap().contains(path),
            "{path}: {}",
            r.body
        );
    }
    let r = api
        .post(
            "/v1/agents/register",
            Some(&key),
            &json!({"name": "Bad", "scopes": SCOPES, "policy": policy, "user": "  "}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(count(&h).await, agents_before);
    assert_eq!(audit_size(&h).await, log_before);

    // A token whose policy was changed after signing (same hash) is not genuine, even
    // when signed with the registry's own key: TOKEN_INVALID.
    let mut forged = h.claims(&a.id);
    forged["policy"] = with(&policy, "/limits/per_txn/amount", json!(5000));
    forged["policy_hash"] = json!(hash);
    let forged = h.sign_raw(&forged.to_string());
    let v = h.verify_token(&forged).await;
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["error"]["code"], "TOKEN_INVALID", "{v}");
    assert_eq!(v["reasons"], json!(["TOKEN_INVALID"]), "{v}");
    // The same with the right hash of the changed policy verifies.
    let changed = with(&policy, "/limits/per_txn/amount", json!(5000));
    let changed_hash =
        api.lint(&serde_json::to_vec(&changed).unwrap()).await["policy_hash"].clone();
    let mut resigned = h.claims(&a.id);
    resigned["policy"] = changed;
    resigned["policy_hash"] = changed_hash;
    let v = h.verify_token(&h.sign_raw(&resigned.to_string())).await;
    assert_eq!(v["valid"], true, "{v}");
}

// ---------------------------------------------------------------------------------
// 4. Decisions

#[tokio::test]
async fn an_allowed_spend_reports_what_is_left() {
    let h = start().await;
    let api = Api::of(&h);
    let key = h.issuer("shop-agents.example").await;
    let (_, rcv) = receiver(&h, "api.shop.example").await;
    let a = agent(&h, &key, "Shopper", Some(shop_policy("pol_left"))).await;
    let period_ends = next_month_utc();

    let v = api
        .verify(Some(&rcv), &spend(&a.token, "acct/12", "12.50"))
        .await
        .ok();
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["reasons"], json!([]), "{v}");
    assert!(v.get("reason").is_none(), "{v}");
    assert!(v.get("error").is_none(), "{v}");
    assert!(v.get("simulated").is_none(), "{v}");
    assert_eq!(
        v["remaining"],
        json!({"amount": "87.50", "currency": "USD", "period": "month", "period_ends": period_ends})
    );
    assert_eq!(v["agent"]["id"], a.id.as_str(), "{v}");
    assert_eq!(v["user"], USER, "{v}");
    assert!(v["receipt_id"].as_str().unwrap().starts_with("rcp_"), "{v}");
    assert!(v["audit_index"].is_u64(), "{v}");

    // An integer amount, then one with one decimal.
    let mut body = spend(&a.token, "acct/999", "");
    body["amount"] = json!(30);
    let v = api.verify(Some(&rcv), &body).await.ok();
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["remaining"]["amount"], "57.50", "{v}");
    let v = api
        .verify(Some(&rcv), &spend(&a.token, "acct/12:y", "0.5"))
        .await
        .ok();
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["remaining"]["amount"], "57.00", "{v}");
    assert_eq!(left(&api, &a.token, "acct/12").await, "57.00");

    // A spend from another agent of the same issuer under the same policy id draws on
    // the same budget (issuer, policy id, period); another issuer's does not.
    let b = agent(&h, &key, "Shopper 2", Some(shop_policy("pol_left"))).await;
    assert_eq!(left(&api, &b.token, "acct/12").await, "57.00");
    let v = api
        .verify(Some(&rcv), &spend(&b.token, "acct/12", "7.00"))
        .await
        .ok();
    assert_eq!(v["remaining"]["amount"], "50.00", "{v}");
    assert_eq!(left(&api, &a.token, "acct/12").await, "50.00");
    let other_key = h.issuer("other-shop.example").await;
    let c = agent(&h, &other_key, "Other", Some(shop_policy("pol_left"))).await;
    assert_eq!(left(&api, &c.token, "acct/12").await, "100.00");
    let d = agent(&h, &key, "Shopper 3", Some(shop_policy("pol_left_2"))).await;
    assert_eq!(left(&api, &d.token, "acct/12").await, "100.00");
}

#[tokio::test]
async fn every_policy_check_has_its_reason_and_a_refusal_spends_nothing() {
    let h = start().await;
    let api = Api::of(&h);
    let key = h.issuer("shop-agents.example").await;
    let (_, rcv) = receiver(&h, "api.shop.example").await;
    let a = agent(&h, &key, "Shopper", Some(shop_policy("pol_reasons"))).await;
    let t = a.token.as_str();
    let period_ends = next_month_utc();

    // (request, the reasons it is refused for, in check order)
    let refused = |v: Value, reasons: Value| (v, reasons);
    let mut action = spend(t, "acct/12", "10.00");
    action["action"] = json!("payments.delete");
    let mut merchant = spend(t, "acct/12", "10.00");
    merchant["resource"]["type"] = json!("merchant");
    let mut eur = spend(t, "acct/12", "10.00");
    eur["currency"] = json!("EUR");
    let no_amount = json!({"token": t, "action": "payments.send", "resource": {"type": "account", "id": "acct/12"}});
    let mut scope = spend(t, "acct/12", "10.00");
    scope["scopes_requested"] = json!(["payments:write", "admin:all"]);
    let mut three = spend(t, "acct/123", "60.00");
    three["action"] = json!("payments.delete");
    let cases = vec![
        refused(action, json!(["POLICY_ACTION"])),
        refused(spend(t, "acct/123", "10.00"), json!(["POLICY_RESOURCE"])),
        refused(spend(t, "acct/1", "10.00"), json!(["POLICY_RESOURCE"])),
        refused(
            spend(t, "acct/1234/12", "10.00"),
            json!(["POLICY_RESOURCE"]),
        ),
        refused(
            spend(t, "acct/12/../13", "10.00"),
            json!(["POLICY_RESOURCE"]),
        ),
        refused(spend(t, "acct/9999", "10.00"), json!(["POLICY_RESOURCE"])),
        refused(merchant, json!(["POLICY_RESOURCE"])),
        refused(spend(t, "", "10.00"), json!(["POLICY_RESOURCE"])),
        refused(spend(t, "acct/12", "50.01"), json!(["LIMIT_PER_TXN"])),
        refused(eur, json!(["CURRENCY_MISMATCH"])),
        refused(no_amount, json!(["AMOUNT_REQUIRED"])),
        refused(scope, json!(["SCOPE_NOT_GRANTED"])),
        refused(
            three,
            json!(["POLICY_ACTION", "POLICY_RESOURCE", "LIMIT_PER_TXN"]),
        ),
    ];
    let log_before = audit_size(&h).await;
    for (body, reasons) in &cases {
        let v = api.verify(Some(&rcv), body).await.ok();
        assert_eq!(v["valid"], true, "{body}: {v}");
        assert_eq!(v["allowed"], false, "{body}: {v}");
        assert_eq!(&v["reasons"], reasons, "{body}: {v}");
        assert!(
            v["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{body}: {v}"
        );
        assert!(v.get("error").is_none(), "{body}: {v}");
        assert!(v["receipt_id"].as_str().unwrap().starts_with("rcp_"), "{v}");
        assert_eq!(
            v["remaining"],
            json!({"amount": "100.00", "currency": "USD", "period": "month", "period_ends": period_ends}),
            "a refusal spends nothing: {body}: {v}"
        );
        assert_eq!(left(&api, t, "acct/12").await, "100.00", "{body}");
    }
    assert_eq!(
        audit_size(&h).await,
        log_before + cases.len() as u64,
        "each decision is one entry"
    );

    // Allowed, on a segment boundary and by exact id; then to the cap exactly.
    for (account, amount, after) in [
        ("acct/12/sub", "50.00", "50.00"),
        ("acct/999", "40.00", "10.00"),
    ] {
        let v = api
            .verify(Some(&rcv), &spend(t, account, amount))
            .await
            .ok();
        assert_eq!(v["allowed"], true, "{account}: {v}");
        assert_eq!(v["remaining"]["amount"], after, "{v}");
    }
    let v = api
        .verify(Some(&rcv), &spend(t, "acct/12", "10.01"))
        .await
        .ok();
    assert_eq!(v["reasons"], json!(["LIMIT_PER_PERIOD"]), "{v}");
    assert_eq!(v["remaining"]["amount"], "10.00", "{v}");
    assert_eq!(left(&api, t, "acct/12").await, "10.00");
    let v = api
        .verify(Some(&rcv), &spend(t, "acct/12", "10.00"))
        .await
        .ok();
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["remaining"]["amount"], "0.00", "{v}");
    for (amount, reasons) in [
        ("0.01", json!(["LIMIT_PER_PERIOD"])),
        ("60.00", json!(["LIMIT_PER_TXN", "LIMIT_PER_PERIOD"])),
    ] {
        let v = api
            .verify(Some(&rcv), &spend(t, "acct/12", amount))
            .await
            .ok();
        assert_eq!(v["reasons"], reasons, "{v}");
        assert_eq!(v["remaining"]["amount"], "0.00", "{v}");
    }
    // With the budget spent, a refusal for another reason still reports it.
    let mut scope = spend(t, "acct/12", "1.00");
    scope["scopes_requested"] = json!(["admin:all"]);
    let v = api.verify(Some(&rcv), &scope).await.ok();
    assert_eq!(
        v["reasons"],
        json!(["SCOPE_NOT_GRANTED", "LIMIT_PER_PERIOD"]),
        "{v}"
    );
    assert_eq!(left(&api, t, "acct/12").await, "0.00");
}

#[tokio::test]
async fn time_windows_are_read_in_the_policys_zone() {
    let h = start().await;
    let api = Api::of(&h);
    let key = h.issuer("shop-agents.example").await;
    let (_, rcv) = receiver(&h, "api.shop.example").await;
    let hour = utc_hour();
    // (policy id, start hour, zone, allowed). Tokyo is UTC+9 all year.
    let cases = [
        ("pol_far", hour + 12, "UTC", false),
        ("pol_near", hour - 1, "UTC", true),
        ("pol_tokyo_utc_hours", hour - 1, "Asia/Tokyo", false),
        ("pol_tokyo", hour + 9 - 1, "Asia/Tokyo", true),
    ];
    for (id, start_hour, tz, allowed) in cases {
        // A window of one hour far away, or of three hours around now (an hour either
        // side of the current one, so the test does not race the clock).
        let end_hour = if allowed {
            start_hour + 3
        } else {
            start_hour + 1
        };
        let policy = with(
            &budget_policy(id, "100.00"),
            "/constraints",
            json!({"time": {"start": hh(start_hour), "end": hh(end_hour), "tz": tz}}),
        );
        let a = agent(&h, &key, id, Some(policy)).await;
        assert_eq!(left(&api, &a.token, "").await, "100.00");
        let v = api
            .verify(Some(&rcv), &spend(&a.token, "", "5.00"))
            .await
            .ok();
        assert_eq!(v["allowed"], allowed, "{id}: {v}");
        if allowed {
            assert_eq!(v["reasons"], json!([]), "{id}: {v}");
            assert_eq!(v["remaining"]["amount"], "95.00", "{id}: {v}");
            assert_eq!(left(&api, &a.token, "").await, "95.00", "{id}");
        } else {
            assert_eq!(v["reasons"], json!(["TIME_WINDOW"]), "{id}: {v}");
            assert_eq!(
                v["remaining"]["amount"], "100.00",
                "refused for the hour, nothing is charged: {id}: {v}"
            );
            assert_eq!(left(&api, &a.token, "").await, "100.00", "{id}");
        }
    }
}

#[tokio::test]
async fn spending_needs_a_receiver_key_and_exact_money() {
    let h = start().await;
    let api = Api::of(&h);
    let key = h.issuer("shop-agents.example").await;
    let (_, rcv) = receiver(&h, "api.shop.example").await;
    let a = agent(&h, &key, "Shopper", Some(shop_policy("pol_money"))).await;
    let t = a.token.as_str();
    let no_limits = agent(
        &h,
        &key,
        "Reader",
        Some(json!({"version": "pol.v0.2", "id": "pol_read", "actions": ["payments.send", "accounts.read"]})),
    )
    .await;
    let plain = agent(&h, &key, "Plain", None).await;
    let log_before = audit_size(&h).await;

    // A spend, or an idempotency key, needs a receiver key.
    let r = api.verify(None, &spend(t, "acct/12", "10.00")).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let mut idem = json!({"token": t, "action": "payments.send", "resource": {"type": "account", "id": "acct/12"}});
    idem["idempotency_key"] = json!("k-1");
    let r = api.verify(None, &idem).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let mut idem_only = json!({"token": t});
    idem_only["idempotency_key"] = json!("k-2");
    let r = api.verify(None, &idem_only).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");

    // An amount for a token whose policy has no limits, or that has no policy.
    for token in [&no_limits.token, &plain.token] {
        let r = api.verify(Some(&rcv), &spend(token, "", "10.00")).await;
        r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "AMOUNT_NOT_ALLOWED");
    }

    // A JSON number is read from its digits (AgentOAuth's clients send numbers): the
    // same decimal as the string, charged exactly.
    for amount in [json!(10.5), json!(10.0), json!(3)] {
        let mut body = spend(t, "acct/12", "1.00");
        body["amount"] = amount.clone();
        let r = api.simulate(Some(&rcv), &body).await;
        assert_eq!(r.status, StatusCode::OK, "{amount}: {}", r.body);
        assert_eq!(r.body["allowed"], true, "{amount}: {}", r.body);
    }
    // Amounts must be exact decimals within the currency's minor units, as numbers too.
    let bad_amounts = [
        json!(10.505),
        json!(1e300),
        json!(-5.5),
        json!("1e3"),
        json!("1E3"),
        json!("-5"),
        json!(-5),
        json!("0.001"),
        json!("10.505"),
        json!("abc"),
        json!("NaN"),
        json!("Infinity"),
        json!(""),
        json!(" 5"),
        json!("5 "),
        json!("+5"),
        json!("1,000"),
        json!("007"),
        json!(".5"),
        json!("5."),
        json!("0x10"),
        json!(true),
        json!({"value": "5"}),
        json!(["5"]),
        json!("1000000000000000"),
        json!("9".repeat(400)),
        json!(u64::MAX),
        json!(1e300),
        json!(null),
    ];
    for amount in bad_amounts {
        let mut body = spend(t, "acct/12", "1.00");
        body["amount"] = amount.clone();
        let r = api.verify(Some(&rcv), &body).await;
        r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "AMOUNT_INVALID");
        let r = api.simulate(Some(&rcv), &body).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{amount}: {}",
            r.body
        );
    }
    // JPY has no minor unit.
    let mut jpy = spend(t, "acct/12", "1.5");
    jpy["currency"] = json!("JPY");
    api.verify(Some(&rcv), &jpy)
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "AMOUNT_INVALID");
    // Currencies must be active ISO 4217 codes one can spend.
    for currency in [
        json!("XYZ"),
        json!("usd"),
        json!("Usd"),
        json!("DEM"),
        json!("XXX"),
        json!("XAU"),
        json!("XTS"),
        json!("US"),
        json!(""),
        json!(840),
        json!(["USD"]),
        json!(null),
    ] {
        let mut body = spend(t, "acct/12", "1.00");
        body["currency"] = currency.clone();
        let r = api.verify(Some(&rcv), &body).await;
        r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "AMOUNT_INVALID");
    }
    // An amount without a currency and the reverse; money without an action.
    let mut no_currency = spend(t, "acct/12", "1.00");
    no_currency.as_object_mut().unwrap().remove("currency");
    let mut no_amount = spend(t, "acct/12", "1.00");
    no_amount.as_object_mut().unwrap().remove("amount");
    for body in [no_currency, no_amount] {
        let r = api.verify(Some(&rcv), &body).await;
        r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "AMOUNT_INVALID");
    }
    let mut no_action = spend(t, "acct/12", "1.00");
    no_action.as_object_mut().unwrap().remove("action");
    let r = api.verify(Some(&rcv), &no_action).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(
        audit_size(&h).await,
        log_before,
        "refused requests decide nothing and log nothing"
    );
    assert_eq!(left(&api, t, "acct/12").await, "100.00");

    // An action on a token without any policy is granted by nothing.
    let body = json!({"token": plain.token, "action": "payments.send"});
    for key in [None, Some(rcv.as_str())] {
        let v = api.verify(key, &body).await.ok();
        assert_eq!(v["valid"], true, "{v}");
        assert_eq!(v["allowed"], false, "{v}");
        assert_eq!(v["reasons"], json!(["POLICY_ACTION"]), "{v}");
        assert!(v.get("remaining").is_none(), "{v}");
    }
    // And the same token with no action asked is simply valid.
    let v = api.verify(None, &json!({"token": plain.token})).await.ok();
    assert_eq!(v["allowed"], true, "{v}");
    // An action the no-limits policy grants, without an amount: allowed.
    let v = api
        .verify(
            None,
            &json!({"token": no_limits.token, "action": "accounts.read"}),
        )
        .await
        .ok();
    assert_eq!(v["allowed"], true, "{v}");
    assert!(v.get("remaining").is_none(), "{v}");
}

// ---------------------------------------------------------------------------------
// 5. Concurrency

/// Fires every body at once from its own task; the answers in order.
async fn fire(api: &Api, key: &str, bodies: Vec<Value>) -> Vec<Value> {
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let api = api.clone();
            let key = key.to_owned();
            tokio::spawn(async move { api.verify(Some(&key), &body).await })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap().ok());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_spends_never_exceed_the_cap() {
    let h = start().await;
    let api = Api::of(&h);
    let key = h.issuer("shop-agents.example").await;
    let (_, rcv) = receiver(&h, "api.shop.example").await;

    // 300 spends of 1.00 from two agents sharing one budget of 100.00: exactly 100 go
    // through.
    let a = agent(&h, &key, "A", Some(budget_policy("pol_race", "100.00"))).await;
    let b = agent(&h, &key, "B", Some(budget_policy("pol_race", "100.00"))).await;
    let bodies = (0..300)
        .map(|i| spend(if i % 2 == 0 { &a.token } else { &b.token }, "", "1.00"))
        .collect();
    let answers = fire(&api, &rcv, bodies).await;
    let allowed: Vec<&Value> = answers.iter().filter(|v| v["allowed"] == true).collect();
    assert_eq!(allowed.len(), 100);
    for v in &answers {
        if v["allowed"] == false {
            assert_eq!(v["reasons"], json!(["LIMIT_PER_PERIOD"]), "{v}");
            assert_eq!(v["remaining"]["amount"], "0.00", "{v}");
        }
    }
    // Each allowed answer saw a different budget: 99.00, 98.00, …, 0.00.
    let mut seen: Vec<i64> = allowed
        .iter()
        .map(|v| cents(v["remaining"]["amount"].as_str().unwrap()))
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..100).map(|i| i * 100).collect::<Vec<_>>());
    assert_eq!(left(&api, &a.token, "").await, "0.00");
    assert_eq!(left(&api, &b.token, "").await, "0.00");

    // 300 spends of 1.00 to 7.00 against 100.00: what was allowed sums to the cap less
    // what is left, and every refusal asked for more than was left at the end.
    let c = agent(&h, &key, "C", Some(budget_policy("pol_race_2", "100.00"))).await;
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let amounts: Vec<i64> = (0..300)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            100 + i64::try_from(seed % 601).unwrap()
        })
        .collect();
    assert!(amounts.iter().sum::<i64>() > 10_000);
    let bodies = amounts
        .iter()
        .map(|&c_| spend(&c.token, "", &usd(c_)))
        .collect();
    let answers = fire(&api, &rcv, bodies).await;
    let final_left = cents(&left(&api, &c.token, "").await);
    let mut granted: Vec<(u64, i64, i64)> = Vec::new(); // (audit index, amount, left after)
    for (v, &amount) in answers.iter().zip(&amounts) {
        let after = cents(v["remaining"]["amount"].as_str().unwrap());
        if v["allowed"] == true {
            granted.push((v["audit_index"].as_u64().unwrap(), amount, after));
        } else {
            assert_eq!(v["reasons"], json!(["LIMIT_PER_PERIOD"]), "{v}");
            assert!(
                amount > after && amount > final_left,
                "{} refused with {} left then and {} left at the end",
                usd(amount),
                usd(after),
                usd(final_left)
            );
        }
    }
    let total: i64 = granted.iter().map(|g| g.1).sum();
    assert!(total <= 10_000, "spent {} of a 100.00 cap", usd(total));
    assert_eq!(total, 10_000 - final_left);
    // In the order the decisions were logged, each allowed answer's `remaining` is the
    // previous one less its amount: the charges were applied one at a time.
    granted.sort_unstable();
    let mut budget = 10_000;
    for (index, amount, after) in &granted {
        budget -= amount;
        assert_eq!(*after, budget, "audit index {index}: {}", usd(*amount));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_and_retries_hold_with_verify_logging_off() {
    let h = start_with_config(Config {
        audit_verify: false,
        ..common::config()
    })
    .await;
    let api = Api::of(&h);
    let key = h.issuer("shop-agents.example").await;
    let (_, rcv) = receiver(&h, "api.shop.example").await;
    let a = agent(&h, &key, "A", Some(budget_policy("pol_nolog", "10.00"))).await;
    let answers = fire(
        &api,
        &rcv,
        (0..40).map(|_| spend(&a.token, "", "1.00")).collect(),
    )
    .await;
    assert_eq!(answers.iter().filter(|v| v["allowed"] == true).count(), 10);
    assert_eq!(left(&api, &a.token, "").await, "0.00");
    let b = agent(&h, &key, "B", Some(budget_policy("pol_nolog_2", "10.00"))).await;
    let mut body = spend(&b.token, "", "4.00");
    body["idempotency_key"] = json!("nolog-1");
    let first = api.verify(Some(&rcv), &body).await;
    let again = api.verify(Some(&rcv), &body).await;
    assert_eq!(again.replayed.as_deref(), Some("true"));
    assert_eq!(first.ok(), again.ok());
    assert_eq!(left(&api, &b.token, "").await, "6.00");
}

// ---------------------------------------------------------------------------------
// 6. Idempotency

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retries_charge_once() {
    let h = start().await;
    let api = Api::of(&h);
    let key = h.issuer("shop-agents.example").await;
    let (_, rcv_a) = receiver(&h, "api.shop.example").await;
    let (_, rcv_b) = receiver(&h, "api.other.example").await;
    let a = agent(&h, &key, "Shopper", Some(shop_policy("pol_idem"))).await;
    let t = a.token.as_str();

    let mut body = spend(t, "acct/12", "10.00");
    body["idempotency_key"] = json!("order-1");
    let first = api.verify(Some(&rcv_a), &body).await;
    assert_eq!(first.replayed, None);
    let first = first.ok();
    assert_eq!(first["allowed"], true, "{first}");
    assert_eq!(first["remaining"]["amount"], "90.00");
    let log = audit_size(&h).await;
    for _ in 0..2 {
        let again = api.verify(Some(&rcv_a), &body).await;
        assert_eq!(again.replayed.as_deref(), Some("true"), "{}", again.body);
        let again = again.ok();
        assert_eq!(again, first, "the first answer, whole");
        assert_eq!(again["receipt_id"], first["receipt_id"]);
        assert_eq!(again["audit_index"], first["audit_index"]);
    }
    assert_eq!(left(&api, t, "acct/12").await, "90.00", "charged once");
    assert_eq!(audit_size(&h).await, log, "a replay is no new decision");

    // The same key for another request is a conflict, and charges nothing.
    let mut other_amount = body.clone();
    other_amount["amount"] = json!("11.00");
    let mut other_account = body.clone();
    other_account["resource"]["id"] = json!("acct/12/b");
    let mut other_scopes = body.clone();
    other_scopes["scopes_requested"] = json!(["payments:write"]);
    let b = agent(&h, &key, "Shopper 2", Some(shop_policy("pol_idem"))).await;
    let mut other_token = body.clone();
    other_token["token"] = json!(b.token);
    let mut no_money = body.clone();
    no_money.as_object_mut().unwrap().remove("amount");
    no_money.as_object_mut().unwrap().remove("currency");
    for conflict in [
        other_amount,
        other_account,
        other_scopes,
        other_token,
        no_money,
    ] {
        let r = api.verify(Some(&rcv_a), &conflict).await;
        r.assert_error(StatusCode::CONFLICT, "IDEMPOTENCY_CONFLICT");
    }
    // The same amount written differently is the same request.
    let mut same = body.clone();
    same["amount"] = json!(10);
    let r = api.verify(Some(&rcv_a), &same).await;
    assert_eq!(r.replayed.as_deref(), Some("true"), "{}", r.body);
    assert_eq!(r.ok()["receipt_id"], first["receipt_id"]);
    assert_eq!(left(&api, t, "acct/12").await, "90.00");

    // Keys are per receiver: another receiver's `order-1` is its own request.
    let theirs = api.verify(Some(&rcv_b), &body).await;
    assert_eq!(theirs.replayed, None);
    let theirs = theirs.ok();
    assert_eq!(theirs["allowed"], true, "{theirs}");
    assert_ne!(theirs["receipt_id"], first["receipt_id"]);
    assert_ne!(theirs["audit_index"], first["audit_index"]);
    assert_eq!(theirs["remaining"]["amount"], "80.00");
    let again = api.verify(Some(&rcv_b), &body).await;
    assert_eq!(again.replayed.as_deref(), Some("true"));
    assert_eq!(again.ok(), theirs);
    assert_eq!(left(&api, t, "acct/12").await, "80.00");

    // A refusal is replayed too.
    let mut big = spend(t, "acct/12", "45.00");
    big["idempotency_key"] = json!("order-2");
    let mut fill = spend(t, "acct/12", "40.00");
    fill["idempotency_key"] = json!("order-3");
    let v = api.verify(Some(&rcv_a), &fill).await.ok();
    assert_eq!(v["remaining"]["amount"], "40.00", "{v}");
    let refused = api.verify(Some(&rcv_a), &big).await.ok();
    assert_eq!(refused["reasons"], json!(["LIMIT_PER_PERIOD"]), "{refused}");
    let r = api.verify(Some(&rcv_a), &big).await;
    assert_eq!(r.replayed.as_deref(), Some("true"));
    assert_eq!(r.ok(), refused);

    // Sixteen retries racing each other: one decision, one charge.
    let mut race = spend(t, "acct/999", "5.00");
    race["idempotency_key"] = json!("order-4");
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let api = api.clone();
            let (rcv, race) = (rcv_a.clone(), race.clone());
            tokio::spawn(async move { api.verify(Some(&rcv), &race).await })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let fresh = answers.iter().filter(|r| r.replayed.is_none()).count();
    assert_eq!(fresh, 1, "exactly one request decided");
    let one = &answers[0].body;
    for r in &answers {
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body, *one);
    }
    assert_eq!(one["allowed"], true, "{one}");
    assert_eq!(one["remaining"]["amount"], "35.00", "{one}");
    assert_eq!(left(&api, t, "acct/12").await, "35.00");

    // Malformed keys.
    for bad in [
        json!(""),
        json!("a b"),
        json!("é"),
        json!("k".repeat(256)),
        json!(5),
    ] {
        let mut body = spend(t, "acct/12", "1.00");
        body["idempotency_key"] = bad.clone();
        let r = api.verify(Some(&rcv_a), &body).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            r.body
        );
    }
}

// ---------------------------------------------------------------------------------
// 7. Simulate

#[tokio::test]
async fn simulate_decides_the_same_and_changes_nothing() {
    let h = start().await;
    let api = Api::of(&h);
    let key = h.issuer("shop-agents.example").await;
    let (_, rcv) = receiver(&h, "api.shop.example").await;
    let a = agent(&h, &key, "Shopper", Some(budget_policy("pol_sim", "20.00"))).await;
    let t = a.token.as_str();
    // State to leave alone: a budget row, an idempotency row, a receipt.
    let mut first = spend(t, "", "5.00");
    first["idempotency_key"] = json!("k-0");
    let v = api.verify(Some(&rcv), &first).await.ok();
    assert_eq!(v["remaining"]["amount"], "15.00", "{v}");

    let mut action = spend(t, "", "1.00");
    action["action"] = json!("payments.delete");
    let mut keyed = spend(t, "", "5.00");
    keyed["idempotency_key"] = json!("k-new");
    let mut scope = spend(t, "", "1.00");
    scope["scopes_requested"] = json!(["admin:all"]);
    let steps = [
        (spend(t, "", "10.00"), json!([])), // 5.00 left
        (spend(t, "", "6.00"), json!(["LIMIT_PER_PERIOD"])),
        (action, json!(["POLICY_ACTION"])),
        (scope, json!(["SCOPE_NOT_GRANTED"])),
        (
            json!({"token": "garbage.garbage.garbage"}),
            json!(["TOKEN_INVALID"]),
        ),
        (
            json!({"token": t, "action": "payments.send"}),
            json!(["AMOUNT_REQUIRED"]),
        ),
        (keyed, json!([])), // 0.00 left
    ];
    for (body, reasons) in &steps {
        let before = snapshot(&h).await;
        let log = audit_size(&h).await;
        let s = api.simulate(Some(&rcv), body).await;
        assert_eq!(s.replayed, None);
        let s = s.ok();
        assert_eq!(s["simulated"], true, "{s}");
        assert!(s.get("receipt_id").is_none(), "{s}");
        assert!(s.get("audit_index").is_none(), "{s}");
        assert_eq!(&s["reasons"], reasons, "{body}: {s}");
        assert_eq!(s["allowed"], reasons == &json!([]), "{body}: {s}");
        assert_eq!(audit_size(&h).await, log);
        assert_eq!(
            snapshot(&h).await,
            before,
            "simulate changed the store: {body}"
        );

        let v = api.verify(Some(&rcv), body).await;
        assert_eq!(v.replayed, None, "simulate left no idempotency record");
        let v = v.ok();
        same_decision(&s, &v);
        assert!(v.get("simulated").is_none(), "{v}");
        if reasons == &json!(["TOKEN_INVALID"]) {
            // A token that does not verify is answered, not logged (issue 13).
            assert!(v.get("receipt_id").is_none(), "{v}");
            assert_eq!(audit_size(&h).await, log);
            continue;
        }
        assert!(v["receipt_id"].as_str().unwrap().starts_with("rcp_"), "{v}");
        assert_eq!(audit_size(&h).await, log + 1);
        assert_ne!(snapshot(&h).await, before, "the snapshot sees a verify");
    }
    assert_eq!(left(&api, t, "").await, "0.00");

    // Simulating a request whose key was used changes nothing either, and the real
    // retry still replays the first answer.
    let before = snapshot(&h).await;
    let s = api.simulate(Some(&rcv), &first).await;
    assert_eq!(s.replayed, None);
    assert_eq!(s.body["simulated"], true, "{}", s.body);
    assert_eq!(snapshot(&h).await, before);
    let r = api.verify(Some(&rcv), &first).await;
    assert_eq!(r.replayed.as_deref(), Some("true"));
    assert_eq!(r.ok()["remaining"]["amount"], "15.00");
}

// ---------------------------------------------------------------------------------
// 8. Receipts

#[tokio::test]
async fn every_decision_gets_a_receipt_that_says_what_was_asked() {
    let h = start().await;
    let api = Api::of(&h);
    let key = h.issuer("shop-agents.example").await;
    let other_issuer = h.issuer("other.example").await;
    let (rcv_id, rcv) = receiver(&h, "api.shop.example").await;
    let (_, other_rcv) = receiver(&h, "api.other.example").await;
    let policy = shop_policy("pol_receipts");
    let a = agent(&h, &key, "Shopper", Some(policy)).await;
    let hash = a.reg["policy_hash"].as_str().unwrap().to_owned();
    let keys = jwks(&api).await;
    let (_, conf) = h
        .call("GET", "/.well-known/bonafide-configuration", None, None)
        .await;
    let receipt_kid = conf["receipt_signing_kid"].as_str().unwrap().to_owned();
    let token_kid = jws_header(&a.token)["kid"].as_str().unwrap().to_owned();
    assert_ne!(receipt_kid, token_kid, "receipts have their own key");

    // An allowed spend, with the exact bytes sent kept for the digest.
    let body = json!({
        "token": a.token, "action": "payments.send",
        "resource": {"type": "account", "id": "acct/12/x"},
        "amount": "12.5", "currency": "USD",
        "scopes_requested": ["read:account", "payments:write"],
        "idempotency_key": "order-77"
    });
    let bytes = serde_json::to_vec(&body).unwrap();
    let v = api
        .send("POST", "/v1/verify", Some(&rcv), Some(bytes.clone()))
        .await
        .ok();
    assert_eq!(v["allowed"], true, "{v}");
    let id = v["receipt_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("rcp_"), "{id}");
    assert_eq!(ReceiptId::try_from(id.as_str()).unwrap().to_string(), id);
    let index = v["audit_index"].as_u64().unwrap();

    let view = get_receipt(&api, &id, Some(&rcv)).await.ok();
    assert_eq!(view["receipt_id"], id.as_str());
    let jws = view["jws"].as_str().unwrap();
    let header = jws_header(jws);
    assert_eq!(header["typ"], "receipt+jwt", "{header}");
    assert_eq!(header["alg"], "EdDSA", "{header}");
    assert_eq!(header["kid"], receipt_kid.as_str(), "{header}");
    let claims = receipt::verify(jws, &keys).unwrap();
    let claims_json = serde_json::to_value(&claims).unwrap();
    assert_eq!(
        claims_json, view["receipt"],
        "the decoded form is the signed one"
    );
    assert_eq!(claims_json, payload(jws));
    let facts = RequestFacts {
        action: Some("payments.send".into()),
        resource: Some(("account".into(), "acct/12/x".into())),
        money: Some(Money {
            amount: Decimal::new(1250, 2),
            currency: Currency::USD,
        }),
        audience: None,
        scopes_requested: vec!["payments:write".into(), "read:account".into()],
        idempotency_key: Some("order-77".into()),
    };
    assert_eq!(
        RequestFacts::from_request_json(&bytes)
            .unwrap()
            .sha256_hex(),
        facts.sha256_hex(),
        "the body, read as a receipt checker reads it"
    );
    assert_eq!(
        claims_json,
        json!({
            "iss": h.base,
            "iat": claims.iat,
            "sub": id,
            "receipt_id": id,
            "decision": "allow",
            "valid": true,
            "reasons": [],
            "token_sha256": sha256_hex(&a.token),
            "agent_id": a.id,
            "jti": a.jti,
            "policy_hash": hash,
            "request_sha256": facts.sha256_hex(),
            "verified_at": v["verified_at"],
            "remaining": v["remaining"],
            "audit_index": index,
            "receiver": rcv_id,
        })
    );
    assert_eq!(v["remaining"]["amount"], "87.50");
    receipt::check_request(&claims, &facts).unwrap();
    let mut other = facts.clone();
    other.money = Some(Money {
        amount: Decimal::new(1251, 2),
        currency: Currency::USD,
    });
    assert!(receipt::check_request(&claims, &other).is_err());
    let iat_ms = claims.iat * 1000;
    let verified_ms = claims
        .verified_at
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_millisecond();
    assert!(
        (iat_ms - verified_ms).abs() < 2000,
        "iat {} and verified_at {}",
        claims.iat,
        claims.verified_at
    );

    // Ed25519 is deterministic: the same JWS on every read, for every reader.
    let by_issuer = get_receipt(&api, &id, Some(&key)).await.ok();
    assert_eq!(by_issuer, view);
    for (who, k) in [
        // Only the receiver that asked and the agent's issuer may read it.
        ("an admin", Some(h.admin.as_str())),
        ("another receiver", Some(other_rcv.as_str())),
        ("another issuer", Some(other_issuer.as_str())),
        ("anonymous", None),
    ] {
        let r = get_receipt(&api, &id, k).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{who}: {}", r.body);
        r.assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    }
    let missing = ReceiptId::from_random([7; 16]).to_string();
    get_receipt(&api, &missing, Some(&h.admin))
        .await
        .assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
    for bad in [
        "rcp_x",
        "abc",
        "rcv_aaaaaaaaaaaaaaaaaaaaaaaaaa",
        "RCP_AAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let r = get_receipt(&api, bad, Some(&rcv)).await;
        r.assert_error(StatusCode::BAD_REQUEST, "BAD_REQUEST");
    }
    let bad_key = ApiKey::from_random(KeyKind::Receiver, common::rand20());
    let r = get_receipt(&api, &id, Some(bad_key.expose_secret())).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");

    // The decision's audit entry, as the issuer sees it, names the receipt.
    let entry = audit_entry(&api, index, &key).await;
    assert_eq!(entry["type"], "verify", "{entry}");
    assert_eq!(entry["receipt"], id.as_str(), "{entry}");
    assert_eq!(entry["decision"], "allow", "{entry}");
    assert_eq!(entry["request_sha256"], facts.sha256_hex(), "{entry}");
    assert_eq!(entry["token_sha256"], sha256_hex(&a.token), "{entry}");
    assert_eq!(entry["policy_hash"], hash.as_str(), "{entry}");
    assert_eq!(entry["amount"], "12.50 USD", "{entry}");
    assert_eq!(entry["agent"], a.id.as_str(), "{entry}");
    assert_eq!(entry["jti"], a.jti.as_str(), "{entry}");
    assert_eq!(
        entry["actor"],
        json!({"kind": "receiver", "id": rcv_id}),
        "{entry}"
    );

    // Refusals have receipts too: a policy refusal, anonymous and by a receiver.
    let mut refused = spend(&a.token, "acct/123", "1.00");
    refused["scopes_requested"] = json!(["admin:all"]);
    let v = api.verify(Some(&rcv), &refused).await.ok();
    let claims = check_receipt(&api, &keys, &v, Some(&rcv)).await;
    assert_eq!(claims["decision"], "deny");
    assert_eq!(claims["valid"], true);
    assert_eq!(
        claims["reasons"],
        json!(["SCOPE_NOT_GRANTED", "POLICY_RESOURCE"])
    );
    assert_eq!(claims["remaining"]["amount"], "87.50");
    assert_eq!(claims["policy_hash"], hash.as_str());
    let v = api
        .verify(
            None,
            &json!({"token": a.token, "action": "payments.delete"}),
        )
        .await
        .ok();
    let claims = check_receipt(&api, &keys, &v, Some(&key)).await;
    assert_eq!(claims["decision"], "deny");
    assert_eq!(
        claims["reasons"],
        json!(["POLICY_ACTION", "POLICY_RESOURCE", "AMOUNT_REQUIRED"])
    );
    assert!(claims.get("receiver").is_none(), "{claims}");
    let r = get_receipt(&api, v["receipt_id"].as_str().unwrap(), Some(&rcv)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "not this receiver's");

    // Tokens that are not valid: garbage, tampered, revoked, and one signed with the
    // receipt key (it signs receipts only). Only the revoked one verified: it alone
    // gets a receipt.
    let parts: Vec<&str> = a.token.split('.').collect();
    let mut tampered_claims = payload(&a.token);
    tampered_claims["scope"] = json!("admin:all");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64::encode(tampered_claims.to_string().as_bytes()),
        parts[2]
    );
    let with_receipt_key = bonafide_core::jws::sign_compact(
        &h.state.receipt_key,
        "agent+jwt",
        payload(&a.token).to_string().as_bytes(),
    )
    .unwrap();
    let revoked = agent(&h, &key, "Revoked", Some(shop_policy("pol_receipts"))).await;
    let (st, _) = h
        .call(
            "POST",
            &format!("/v1/agents/{}/revoke", revoked.id),
            Some(&key),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    for (token, error) in [
        ("garbage.garbage.garbage", "TOKEN_INVALID"),
        (tampered.as_str(), "TOKEN_INVALID"),
        (with_receipt_key.as_str(), "TOKEN_INVALID"),
        (revoked.token.as_str(), "TOKEN_REVOKED"),
    ] {
        let body = json!({"token": token, "action": "payments.send"});
        let v = api.verify(Some(&rcv), &body).await.ok();
        assert_eq!(v["valid"], false, "{v}");
        assert_eq!(v["error"]["code"], error, "{v}");
        assert_eq!(v["reasons"], json!([error]), "{v}");
        if error != "TOKEN_REVOKED" {
            // It does not verify: it concerns no agent, so no receipt (issue 13).
            assert!(v.get("receipt_id").is_none(), "{v}");
            assert!(v.get("audit_index").is_none(), "{v}");
            continue;
        }
        let claims = check_receipt(&api, &keys, &v, Some(&rcv)).await;
        assert_eq!(claims["decision"], "deny");
        assert_eq!(claims["valid"], false);
        assert_eq!(claims["reasons"], json!([error]));
        assert_eq!(claims["token_sha256"], sha256_hex(token));
        assert!(claims.get("policy_hash").is_none(), "{claims}");
        assert!(claims.get("remaining").is_none(), "{claims}");
        let by_issuer = get_receipt(&api, v["receipt_id"].as_str().unwrap(), Some(&key)).await;
        if error == "TOKEN_REVOKED" {
            // The signature checked out: the agent, and so its issuer, is known.
            assert_eq!(claims["agent_id"], revoked.id.as_str());
            assert_eq!(claims["jti"], revoked.jti.as_str());
            assert_eq!(by_issuer.status, StatusCode::OK, "{}", by_issuer.body);
        } else {
            assert!(claims.get("agent_id").is_none(), "{claims}");
            assert_eq!(
                by_issuer.status,
                StatusCode::NOT_FOUND,
                "{}",
                by_issuer.body
            );
        }
    }
}

/// A receipt binds the request as it was sent: a receipt checker
/// (`bonafide receipt verify --request REQ.json`, `RequestFacts::from_request_json`)
/// recomputes `request_sha256` from the body the receiver kept. A resource written with
/// surrounding spaces must then be refused, or decided and bound as written, never
/// decided as another (trimmed) request whose digest the body does not give.
#[tokio::test]
async fn a_receipt_binds_the_request_as_sent() {
    let h = start().await;
    let api = Api::of(&h);
    let key = h.issuer("shop-agents.example").await;
    let (_, rcv) = receiver(&h, "api.shop.example").await;
    let a = agent(&h, &key, "Shopper", Some(shop_policy("pol_sent"))).await;
    let keys = jwks(&api).await;
    let mut mismatches = Vec::new();
    let (mut decided, mut refused) = (0, 0);
    for (kind, id) in [
        ("account", "acct/12"),
        ("account", "acct/12 "),
        ("account", " acct/12"),
        ("account ", "acct/12"),
    ] {
        let body = json!({"token": a.token, "action": "payments.send",
            "resource": {"type": kind, "id": id}, "amount": "1.00", "currency": "USD"});
        let bytes = serde_json::to_vec(&body).unwrap();
        let r = api
            .send("POST", "/v1/verify", Some(&rcv), Some(bytes.clone()))
            .await;
        if r.status == StatusCode::UNPROCESSABLE_ENTITY {
            // Only a type outside the name pattern is refused outright.
            assert_eq!(kind, "account ", "{id:?}: {}", r.body);
            refused += 1;
            continue;
        }
        let v = r.ok();
        decided += 1;
        // Decided as written: a padded id is not the granted `acct/12`.
        assert_eq!(v["allowed"], id == "acct/12", "{id:?}: {v}");
        let claims = check_receipt(&api, &keys, &v, Some(&rcv)).await;
        let as_sent = RequestFacts::from_request_json(&bytes)
            .unwrap()
            .sha256_hex();
        if claims["request_sha256"] != as_sent.as_str() {
            mismatches.push(format!(
                "resource {{type: {kind:?}, id: {id:?}}}: allowed {}, receipt request_sha256 {}, the body gives {as_sent}",
                v["allowed"], claims["request_sha256"]
            ));
        }
    }
    assert_eq!((decided, refused), (3, 1));
    assert!(
        mismatches.is_empty(),
        "receipts that do not match the request as sent:\n{}",
        mismatches.join("\n")
    );
}

/// The protected header of a compact JWS.
fn jws_header(jws: &str) -> Value {
    serde_json::from_slice(&b64::decode(jws.split('.').next().unwrap()).unwrap()).unwrap()
}

/// The audit entry at `index` as `key` sees it, parsed.
async fn audit_entry(api: &Api, index: u64, key: &str) -> Value {
    let v = api
        .get(
            &format!("/v1/audit/entries?start={index}&end={}", index + 1),
            Some(key),
        )
        .await
        .ok();
    let e = &v["entries"][0];
    assert_eq!(e["index"], index, "{v}");
    serde_json::from_str(
        e["entry"]
            .as_str()
            .unwrap_or_else(|| panic!("no entry shown: {v}")),
    )
    .unwrap()
}

/// Fetches the receipt of a verify answer as `reader`, verifies it with the JWKS and
/// checks it against the answer; its claims.
async fn check_receipt(api: &Api, keys: &KeySet, answer: &Value, reader: Option<&str>) -> Value {
    let id = answer["receipt_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no receipt: {answer}"));
    assert!(id.starts_with("rcp_"), "{id}");
    let view = get_receipt(api, id, reader).await.ok();
    let claims = receipt::verify(view["jws"].as_str().unwrap(), keys).unwrap();
    let claims = serde_json::to_value(&claims).unwrap();
    assert_eq!(claims, view["receipt"]);
    assert_eq!(claims["receipt_id"], id);
    assert_eq!(claims["reasons"], answer["reasons"]);
    assert_eq!(claims["valid"], answer["valid"]);
    assert_eq!(
        claims["decision"],
        if answer["allowed"] == true {
            "allow"
        } else {
            "deny"
        }
    );
    assert_eq!(claims["audit_index"], answer["audit_index"]);
    assert_eq!(claims["verified_at"], answer["verified_at"]);
    assert_eq!(claims.get("remaining"), answer.get("remaining"));
    claims
}

// ---------------------------------------------------------------------------------
// 9. PyJWT

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `interop/python/receipt_client.py` (PyJWT): (exit code, stdout JSON, all output).
fn pyjwt_receipt(jwks_url: &str, receipt_file: &Path, issuer: &str) -> (i32, Value, String) {
    let root = repo();
    let python = std::env::var_os("BONAFIDE_INTEROP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".interop/venv/bin/python"));
    assert!(
        python.exists(),
        "no interop virtualenv at {}: run `bash scripts/interop-setup.sh` first (the README's test command does)",
        python.display()
    );
    let out = Command::new(&python)
        .arg(root.join("interop/python/receipt_client.py"))
        .args(["--jwks", jwks_url, "--issuer", issuer, "--receipt-file"])
        .arg(receipt_file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let code = out.status.code().unwrap_or(-1);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_ne!(code, 3, "environment error, no verdict: {all}");
    assert_ne!(code, 2, "usage error: {all}");
    (
        code,
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
        all,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_verify_with_pyjwt_from_the_jwks_alone() {
    let h = start_with_config(common::config()).await; // RS256 token keys
    let api = Api::of(&h);
    let key = h.issuer("shop-agents.example").await;
    let (rcv_id, rcv) = receiver(&h, "api.shop.example").await;
    let a = agent(&h, &key, "Shopper", Some(shop_policy("pol_py"))).await;
    assert_eq!(jws_header(&a.token)["alg"], "RS256");
    let jwks_url = format!("{}/.well-known/receipt-jwks.json", h.base);
    let dir = tempfile::tempdir().unwrap();

    let allowed = api
        .verify(Some(&rcv), &spend(&a.token, "acct/12", "20.00"))
        .await
        .ok();
    let denied = api
        .verify(Some(&rcv), &spend(&a.token, "acct/123", "20.00"))
        .await
        .ok();
    for (n, answer) in [allowed, denied].iter().enumerate() {
        let view = get_receipt(&api, answer["receipt_id"].as_str().unwrap(), Some(&rcv))
            .await
            .ok();
        let jws = view["jws"].as_str().unwrap();
        let file = dir.path().join(format!("receipt-{n}"));
        std::fs::write(&file, jws).unwrap();
        let (code, out, all) = pyjwt_receipt(&jwks_url, &file, &h.base);
        assert_eq!(code, 0, "{all}");
        assert_eq!(out["valid"], true, "{all}");
        assert_eq!(
            out["claims"], view["receipt"],
            "PyJWT reads the same claims"
        );
        assert_eq!(out["claims"]["receipt_id"], answer["receipt_id"]);
        assert_eq!(out["claims"]["sub"], answer["receipt_id"]);
        assert_eq!(out["claims"]["audit_index"], answer["audit_index"]);
        assert_eq!(out["claims"]["reasons"], answer["reasons"]);
        assert_eq!(out["claims"]["receiver"], rcv_id.as_str());
        assert_eq!(out["header"]["typ"], "receipt+jwt");
        assert_eq!(out["header"]["alg"], "EdDSA");

        // The token JWKS does not hold the receipt key.
        let token_jwks = format!("{}/.well-known/jwks.json", h.base);
        let (code, _, all) = pyjwt_receipt(&token_jwks, &file, &h.base);
        assert_eq!(code, 1, "{all}");
        assert!(all.contains("no key with kid"), "{all}");

        // The wrong issuer is refused (a control: the check can fail).
        let (code, out, all) = pyjwt_receipt(&jwks_url, &file, "https://elsewhere.example");
        assert_eq!(code, 1, "{all}");
        assert_eq!(out["valid"], false, "{all}");

        // A changed decision under the genuine signature is refused.
        let parts: Vec<&str> = jws.split('.').collect();
        let mut claims = payload(jws);
        claims["decision"] = json!(if claims["decision"] == "allow" {
            "deny"
        } else {
            "allow"
        });
        claims["valid"] = json!(true);
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            b64::encode(claims.to_string().as_bytes()),
            parts[2]
        );
        let file = dir.path().join(format!("tampered-{n}"));
        std::fs::write(&file, &tampered).unwrap();
        let (code, out, all) = pyjwt_receipt(&jwks_url, &file, &h.base);
        assert_eq!(code, 1, "{all}");
        assert_eq!(out["valid"], false, "{all}");
        assert!(
            out["error"].as_str().unwrap().contains("Signature"),
            "{all}"
        );
        assert!(receipt::verify(&tampered, &jwks(&api).await).is_err());
    }

    // An agent token is no receipt, even to PyJWT, and a receipt-typed JWS signed by
    // the receipt key but over a token's claims still needs `typ receipt+jwt`.
    let file = dir.path().join("token");
    std::fs::write(&file, &a.token).unwrap();
    let (code, _, all) = pyjwt_receipt(&jwks_url, &file, &h.base);
    assert_eq!(code, 1, "{all}");
    let typed_as_token = bonafide_core::jws::sign_compact(
        &h.state.receipt_key,
        "agent+jwt",
        payload(&a.token).to_string().as_bytes(),
    )
    .unwrap();
    let file = dir.path().join("typed-as-token");
    std::fs::write(&file, &typed_as_token).unwrap();
    let (code, out, all) = pyjwt_receipt(&jwks_url, &file, &h.base);
    assert_eq!(code, 1, "{all}");
    assert!(out["error"].as_str().unwrap().contains("typ"), "{all}");
}

/// Receipts past the configured retention are dropped by the purge, and only those;
/// their decisions' audit entries stay (naming the receipt); reading a dropped one is
/// a 404 that says how long receipts are kept. Without a retention nothing goes.
#[tokio::test]
async fn receipts_past_their_retention_are_dropped_and_their_audit_entries_stay() {
    let clock = std::sync::Arc::new(bonafide_server::time::ManualClock::now());
    let h = start_with_config(Config {
        clock: clock.clone(),
        receipt_retention: Some(Duration::from_secs(7 * 86_400)),
        ..common::config()
    })
    .await;
    let api = Api::of(&h);
    let key = h.issuer("keep.example").await;
    let (_, rcv) = receiver(&h, "api.keep.example").await;
    let a = agent(&h, &key, "Keeper", Some(shop_policy("pol_keep"))).await;
    let old = api
        .verify(Some(&rcv), &spend(&a.token, "acct/12", "1.00"))
        .await
        .ok();
    clock.advance(Duration::from_secs(6 * 86_400));
    let new = api
        .verify(Some(&rcv), &spend(&a.token, "acct/12", "1.00"))
        .await
        .ok();
    // Nothing is past seven days yet.
    assert_eq!(h.state.purge_receipts().await.unwrap(), 0);
    clock.advance(Duration::from_secs(2 * 86_400));
    assert_eq!(h.state.purge_receipts().await.unwrap(), 1);
    assert_eq!(h.state.purge_receipts().await.unwrap(), 0);

    let gone = get_receipt(&api, old["receipt_id"].as_str().unwrap(), Some(&rcv)).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "{:?}", gone.body);
    assert_eq!(gone.body["error"]["code"], "NOT_FOUND", "{:?}", gone.body);
    let message = gone.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("kept for 7 days"), "{message}");
    let kept = get_receipt(&api, new["receipt_id"].as_str().unwrap(), Some(&rcv)).await;
    assert_eq!(kept.status, StatusCode::OK, "{:?}", kept.body);
    // Someone else's existing receipt reads exactly as a purged one: the 404 never
    // tells whether a receipt exists.
    for who in [None, Some(h.admin.as_str())] {
        let theirs = get_receipt(&api, new["receipt_id"].as_str().unwrap(), who).await;
        assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{:?}", theirs.body);
        assert_eq!(
            theirs.body["error"]["message"],
            gone.body["error"]["message"]
        );
    }

    // The dropped receipt's decision is still in the log, naming it.
    let index = old["audit_index"].as_u64().unwrap();
    let r = api
        .get(
            &format!("/v1/audit/entries?start={index}&end={}", index + 1),
            Some(&h.admin),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let entry = r.body["entries"][0]["entry"].as_str().unwrap();
    let entry: Value = serde_json::from_str(entry).unwrap();
    assert_eq!(entry["receipt"], old["receipt_id"], "{entry}");

    // A registry without a retention keeps every receipt.
    let clock = std::sync::Arc::new(bonafide_server::time::ManualClock::now());
    let h = start_with_config(Config {
        clock: clock.clone(),
        ..common::config()
    })
    .await;
    let api = Api::of(&h);
    let key = h.issuer("forever.example").await;
    let (_, rcv) = receiver(&h, "api.forever.example").await;
    let a = agent(&h, &key, "Forever", Some(shop_policy("pol_forever"))).await;
    let v = api
        .verify(Some(&rcv), &spend(&a.token, "acct/12", "1.00"))
        .await
        .ok();
    clock.advance(Duration::from_secs(3650 * 86_400));
    assert_eq!(h.state.purge_receipts().await.unwrap(), 0);
    let r = get_receipt(&api, v["receipt_id"].as_str().unwrap(), Some(&rcv)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let missing = ReceiptId::from_random([9; 16]).to_string();
    let r = get_receipt(&api, &missing, Some(&rcv)).await;
    assert_eq!(
        r.body["error"]["message"], "receipt not found",
        "{:?}",
        r.body
    );
}
