//! Verify receipts: the registry's signed statement of one `POST /v1/verify` decision
//! (docs/design.md, "Receipts").
//!
//! A receipt is a compact JWS (RFC 7515 §7.1) with header `typ: "receipt+jwt"`, signed
//! by the registry's receipt key, published in its own JWKS (not the token JWKS), and
//! with `iat` and `sub` (the receipt's own id), so it cannot pass for an agent token. It binds what was decided ([`ReceiptClaims`]:
//! decision, reasons, the token's SHA-256, agent, `jti`, remaining budget, audit
//! index) to what was asked: `request_sha256`, the SHA-256 of the request's canonical
//! form ([`RequestFacts::canonical`]). Anyone holding the request body can recompute
//! that digest ([`RequestFacts::from_request_json`]) and check it ([`check_request`]),
//! so a receipt cannot be shown for a request other than the one it approved.
//!
//! This module is pure: signing and verifying take their keys as arguments, the
//! caller supplies `iat` and `verified_at`, and nothing here reads a clock or a file.
//! It is not a token verifier: a receipt says what the registry decided at
//! `verified_at`, not whether the token is still good now.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ids::{AgentId, ReceiptId, ReceiverId, TokenId};
use crate::json::{self, JsonLimits};
use crate::jws::{self, JwsError};
use crate::keys::{KeyError, SigningKey};
use crate::policy::{self, Money, money};
use crate::token::{KeyResolver, Segment, TokenError};

/// `typ` of receipts.
pub const RECEIPT_TYP: &str = "receipt+jwt";

/// Longest receipt accepted, in bytes. A receipt holds a few digests, ids and at
/// most a few dozen reason codes: about 1 KiB.
pub const MAX_RECEIPT_BYTES: usize = 16 * 1024;

/// The members a `POST /v1/verify` body may have (docs/design.md, "HTTP API").
const REQUEST_MEMBERS: [&str; 10] = [
    "token",
    "proof",
    "audience",
    "target_resource",
    "scopes_requested",
    "action",
    "resource",
    "amount",
    "currency",
    "idempotency_key",
];

/// Why a receipt, or the request it is checked against, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// Size, framing, header, key or signature: not a genuine receipt of these keys.
    #[error("receipt does not verify: {0}")]
    Jws(TokenError),
    /// The header's `typ` is not `receipt+jwt` (an agent token, for instance).
    #[error("not a receipt: its type is `{found}`, not `receipt+jwt`")]
    WrongType {
        /// What the header said (empty if absent), at most 64 characters.
        found: String,
    },
    /// The signature holds but the claims are malformed or inconsistent.
    #[error("receipt claims are invalid: {0}")]
    Claims(String),
    /// A verify request body that cannot be read as one.
    #[error("invalid verify request: {0}")]
    Request(String),
    /// The receipt was issued for another request.
    #[error(
        "the receipt is for another request: it names request_sha256 {expected}, this request is {found}"
    )]
    RequestMismatch {
        /// `request_sha256` in the receipt.
        expected: String,
        /// The digest of the request given.
        found: String,
    },
}

/// What a verify request asked, as far as a receipt binds it.
///
/// `token` and `proof` are not part of it: the receipt names the token by
/// `token_sha256`, and a proof is single-use material.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFacts {
    /// The action (`payments.send`).
    pub action: Option<String>,
    /// The resource acted on: (type, id).
    pub resource: Option<(String, String)>,
    /// The amount and its currency.
    pub money: Option<Money>,
    /// The receiver's identifier: `audience`, else `target_resource`.
    pub audience: Option<String>,
    /// Scopes the request needs, as given (the canonical form sorts them).
    pub scopes_requested: Vec<String>,
    /// The caller's idempotency key.
    pub idempotency_key: Option<String>,
}

impl RequestFacts {
    /// The RFC 8785 (JCS) form that `request_sha256` hashes: an object with members
    /// `action`, `resource {type, id}`, `amount`, `currency`, `audience`,
    /// `scopes_requested` and `idempotency_key`, each left out when absent.
    ///
    /// - `amount` is a string written with exactly the currency's ISO 4217 minor
    ///   units (`"10.00"` USD, `"5"` JPY, `"1.500"` KWD), so `"10"`, `10` and
    ///   `"10.00"` give the same bytes. An amount more precise than its currency
    ///   (only a caller-built [`Money`] can be) keeps its extra digits rather than
    ///   being rounded, so two different amounts never share a form.
    /// - `currency` is the ISO 4217 code.
    /// - `scopes_requested` is sorted by Unicode code point (the order of Rust's
    ///   `str` and Python's `sorted`), deduplicated, and left out when empty.
    ///
    /// ```text
    /// {"action":"payments.send","amount":"10.00","audience":"https://api.shop.example","currency":"USD","resource":{"id":"airbnb","type":"merchant"},"scopes_requested":["payments:write","read:account"]}
    /// ```
    pub fn canonical(&self) -> Vec<u8> {
        // Written directly, members in RFC 8785 order (`crate::jcs`); held to the
        // general canonicalizer of `to_value` by `tests::the_direct_writer_is_rfc_8785`.
        let mut out = Vec::with_capacity(128);
        let mut o = crate::jcs::Object::open(&mut out);
        o.opt_string("action", self.action.as_deref());
        if let Some(m) = &self.money {
            o.string("amount", &amount_text(m));
        }
        o.opt_string("audience", self.audience.as_deref());
        if let Some(m) = &self.money {
            o.string("currency", m.currency.code());
        }
        o.opt_string("idempotency_key", self.idempotency_key.as_deref());
        if let Some((kind, id)) = &self.resource {
            let mut r = crate::jcs::Object::open(o.member("resource"));
            r.string("id", id);
            r.string("type", kind);
            r.close();
        }
        let mut scopes: Vec<&str> = self.scopes_requested.iter().map(String::as_str).collect();
        scopes.sort_unstable();
        scopes.dedup();
        o.strings("scopes_requested", scopes);
        o.close();
        out
    }

    /// Lowercase hex SHA-256 of [`RequestFacts::canonical`]: the `request_sha256` of
    /// receipts and audit entries.
    pub fn sha256_hex(&self) -> String {
        crate::hex(&crate::sha256(&self.canonical()))
    }

    /// The facts as a JSON value, for the general canonicalizer the direct writer is
    /// tested against.
    #[cfg(test)]
    fn to_value(&self) -> Value {
        let mut out = Map::new();
        let mut put = |name: &str, value: Value| {
            out.insert(name.to_owned(), value);
        };
        if let Some(action) = &self.action {
            put("action", Value::String(action.clone()));
        }
        if let Some((kind, id)) = &self.resource {
            put("resource", serde_json::json!({ "type": kind, "id": id }));
        }
        if let Some(m) = &self.money {
            put("amount", Value::String(amount_text(m)));
            put("currency", Value::String(m.currency.code().to_owned()));
        }
        if let Some(audience) = &self.audience {
            put("audience", Value::String(audience.clone()));
        }
        let mut scopes: Vec<&String> = self.scopes_requested.iter().collect();
        scopes.sort_unstable();
        scopes.dedup();
        if !scopes.is_empty() {
            put(
                "scopes_requested",
                Value::Array(scopes.into_iter().cloned().map(Value::String).collect()),
            );
        }
        if let Some(key) = &self.idempotency_key {
            put("idempotency_key", Value::String(key.clone()));
        }
        Value::Object(out)
    }

    /// Reads a `POST /v1/verify` body: `{token, proof, audience, target_resource,
    /// scopes_requested, action, resource {type, id}, amount, currency,
    /// idempotency_key}`, every member optional.
    ///
    /// As the server reads it: `token` and `proof` are ignored (a receiver may strip
    /// the token before keeping the body), `audience` falls back to
    /// `target_resource`, and a member whose value is `null` counts as absent.
    /// `amount` and `currency` go together and follow the policy money rules
    /// ([`policy::money_from_json`]: no floats, exponents, negatives, or codes that
    /// are not spendable ISO 4217 currencies). Refused: anything but a JSON object,
    /// duplicate members and deep nesting ([`json::check`]), unknown members, and
    /// members of the wrong type; the error names the member.
    pub fn from_request_json(bytes: &[u8]) -> Result<Self, ReceiptError> {
        let bad = |msg: String| ReceiptError::Request(msg);
        json::check(bytes, JsonLimits::default()).map_err(|e| bad(e.to_string()))?;
        if !json::is_object(bytes) {
            return Err(bad("a verify request is a JSON object".into()));
        }
        let members: Map<String, Value> = serde_json::from_slice(bytes)
            .map_err(|_| bad("a verify request is a JSON object".into()))?;
        let mut facts = RequestFacts::default();
        let mut target_resource = None;
        let mut amount = None;
        let mut currency = None;
        for (name, value) in &members {
            if !REQUEST_MEMBERS.contains(&name.as_str()) {
                return Err(bad(format!(
                    "unknown member `{}` (expected one of {})",
                    clip(name),
                    REQUEST_MEMBERS.join(", ")
                )));
            }
            if value.is_null() {
                continue;
            }
            match name.as_str() {
                "audience" => facts.audience = Some(string(name, value)?),
                "target_resource" => target_resource = Some(string(name, value)?),
                "action" => facts.action = Some(string(name, value)?),
                "idempotency_key" => facts.idempotency_key = Some(string(name, value)?),
                "scopes_requested" => facts.scopes_requested = strings(name, value)?,
                "resource" => facts.resource = Some(resource(value)?),
                "amount" => amount = Some(value),
                "currency" => currency = Some(value),
                // `token` and `proof`: not part of what a receipt binds.
                _ => {}
            }
        }
        if facts.audience.is_none() {
            facts.audience = target_resource;
        }
        facts.money = match (amount, currency) {
            (Some(a), Some(c)) => {
                Some(policy::money_from_json(a, c).map_err(|e| bad(e.to_string()))?)
            }
            (None, None) => None,
            (Some(_), None) => return Err(bad("`amount` needs a `currency`".into())),
            (None, Some(_)) => return Err(bad("`currency` needs an `amount`".into())),
        };
        Ok(facts)
    }
}

/// The amount as [`RequestFacts::canonical`] writes it.
fn amount_text(m: &Money) -> String {
    let minor = money::minor_units(m.currency);
    let mut d = m.amount.normalize();
    if d.is_zero() {
        // `-0` and `0` are one amount.
        d.set_sign_positive(true);
    }
    if d.scale() < minor {
        d.rescale(minor);
    }
    d.to_string()
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

fn string(name: &str, value: &Value) -> Result<String, ReceiptError> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ReceiptError::Request(format!("`{name}` must be a string")))
}

fn strings(name: &str, value: &Value) -> Result<Vec<String>, ReceiptError> {
    let wrong = || ReceiptError::Request(format!("`{name}` must be an array of strings"));
    value
        .as_array()
        .ok_or_else(wrong)?
        .iter()
        .map(|v| v.as_str().map(str::to_owned).ok_or_else(wrong))
        .collect()
}

fn resource(value: &Value) -> Result<(String, String), ReceiptError> {
    let obj = value
        .as_object()
        .ok_or_else(|| ReceiptError::Request("`resource` must be an object `{type, id}`".into()))?;
    if let Some(other) = obj.keys().find(|k| *k != "type" && *k != "id") {
        return Err(ReceiptError::Request(format!(
            "unknown member `resource.{}` (expected type, id)",
            clip(other)
        )));
    }
    let member = |name: &str| match obj.get(name) {
        Some(v) => string(&format!("resource.{name}"), v),
        None => Err(ReceiptError::Request(format!(
            "`resource.{name}` is missing"
        ))),
    };
    Ok((member("type")?, member("id")?))
}

/// `remaining` of a receipt and of the verify answer: the period budget after the
/// decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemainingClaim {
    /// Left to spend, with the currency's minor units (`"1099.50"`).
    pub amount: String,
    /// ISO 4217 code.
    pub currency: String,
    /// `hour`, `day`, `week` or `month`.
    pub period: String,
    /// RFC 3339: when the next period begins.
    pub period_ends: String,
}

/// The claims of a receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptClaims {
    /// The registry's URL.
    pub iss: String,
    /// Signed at (Unix seconds).
    pub iat: i64,
    /// The receipt's subject is the receipt itself: its `rcp_…` id, equal to
    /// `receipt_id`. Never an agent id, so no JWT library that checks `sub` can take
    /// a receipt for an agent's token (the agent is in `agent_id`).
    pub sub: ReceiptId,
    /// This receipt: `rcp_…`.
    pub receipt_id: ReceiptId,
    /// Allow or deny.
    pub decision: crate::audit::Decision,
    /// Whether the token was genuine and live (pipeline steps 1–7).
    pub valid: bool,
    /// Machine-readable reasons for a deny (`SCOPE_NOT_GRANTED`, `TOKEN_EXPIRED`, …);
    /// always present, empty for an allow.
    pub reasons: Vec<String>,
    /// Lowercase hex SHA-256 of the token text.
    pub token_sha256: String,
    /// The agent, when the token's signature checked out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    /// The token's `jti`, when its signature checked out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<TokenId>,
    /// `sha256:<hex>` of the token's consent policy, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_hash: Option<String>,
    /// [`RequestFacts::sha256_hex`] of the request decided.
    pub request_sha256: String,
    /// RFC 3339 with milliseconds: when the decision was made.
    pub verified_at: String,
    /// The period budget after this decision, when the policy has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<RemainingClaim>,
    /// Index of the decision's entry in the audit log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_index: Option<u64>,
    /// The receiver that asked, when it presented a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<ReceiverId>,
}

impl ReceiptClaims {
    /// Checks what serde cannot: `sub` is `receipt_id`, digests are 64 lowercase hex
    /// digits, `policy_hash` is `sha256:` and one, `verified_at` is an RFC 3339 time,
    /// and an allow is for a valid token.
    fn check_consistent(&self) -> Result<(), ReceiptError> {
        let claims = |msg: &str| Err(ReceiptError::Claims(msg.to_owned()));
        if self.sub != self.receipt_id {
            return claims("`sub` is not the receipt's own `receipt_id`");
        }
        if !is_sha256_hex(&self.token_sha256) {
            return claims("`token_sha256` is not 64 lowercase hex digits");
        }
        if !is_sha256_hex(&self.request_sha256) {
            return claims("`request_sha256` is not 64 lowercase hex digits");
        }
        if let Some(hash) = &self.policy_hash
            && !hash.strip_prefix("sha256:").is_some_and(is_sha256_hex)
        {
            return claims("`policy_hash` is not `sha256:` and 64 lowercase hex digits");
        }
        if self.verified_at.parse::<jiff::Timestamp>().is_err() {
            return claims("`verified_at` is not an RFC 3339 time");
        }
        if self.decision == crate::audit::Decision::Allow && !self.valid {
            return claims("`decision` is allow but `valid` is false");
        }
        Ok(())
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Signs `claims` as a compact JWS with header `{"alg","typ":"receipt+jwt","kid"}`.
pub fn sign(key: &SigningKey, claims: &ReceiptClaims) -> Result<String, KeyError> {
    let payload = serde_json::to_vec(claims).map_err(|_| KeyError::Sign)?;
    jws::sign_compact(key, RECEIPT_TYP, &payload)
}

/// Verifies a receipt and returns its claims.
///
/// In order, the first failure deciding: size (at most [`MAX_RECEIPT_BYTES`]) and
/// shape; header (as for agent tokens: no `crit`, no key material) with `typ`
/// `receipt+jwt`; the key named by `kid` ([`KeyResolver::key`]; never the
/// agent-token fast path [`KeyResolver::known_header`]) and its algorithm equal to
/// `alg`; the signature, before the payload is read; then the claims (no duplicate
/// members, bounded depth, an object of exactly the [`ReceiptClaims`] members, and
/// consistent). Time is not checked: a receipt stays a true record after its token
/// expires.
pub fn verify(jws: &str, keys: &impl KeyResolver) -> Result<ReceiptClaims, ReceiptError> {
    let rules = jws::Rules::kid(jws::Typ::Is(RECEIPT_TYP), MAX_RECEIPT_BYTES);
    let opened = jws::open::<ReceiptClaims, _>(jws, &rules, |h: &jws::Protected| {
        keys.key(h.kid())
            .map(jws::Key::Borrowed)
            .ok_or(ReceiptError::Jws(TokenError::UnknownKey))
    })?;
    opened.claims.check_consistent()?;
    Ok(opened.claims)
}

impl From<JwsError> for ReceiptError {
    /// Framing, header, key and signature as the agent-token error; the type; the
    /// claims as text.
    fn from(e: JwsError) -> Self {
        match e {
            JwsError::WrongType { found, .. } => ReceiptError::WrongType {
                found: found.unwrap_or_default(),
            },
            JwsError::Json(Segment::Payload, e) => ReceiptError::Claims(e.to_string()),
            JwsError::ClaimsNotObject => {
                ReceiptError::Claims("claims are not a JSON object".into())
            }
            JwsError::Claims(m) => ReceiptError::Claims(m),
            e => ReceiptError::Jws(e.into()),
        }
    }
}

/// Checks that `claims` were issued for the request `facts` describe: their
/// `request_sha256` equals [`RequestFacts::sha256_hex`]. The digests are public, so
/// plain equality is enough.
pub fn check_request(claims: &ReceiptClaims, facts: &RequestFacts) -> Result<(), ReceiptError> {
    let found = facts.sha256_hex();
    if claims.request_sha256 == found {
        Ok(())
    } else {
        Err(ReceiptError::RequestMismatch {
            expected: clip(&claims.request_sha256),
            found,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]

    use super::*;
    use crate::audit::Decision;
    use crate::b64;
    use crate::keys::{Algorithm, VerifyingKey};
    use crate::policy::{Currency, Decimal};
    use crate::token::{self, AGENT_TOKEN_TYP, KeySet};

    fn claims() -> ReceiptClaims {
        ReceiptClaims {
            iss: "https://registry.example".into(),
            iat: 1_764_052_418,
            sub: ReceiptId::from_random([3; 16]),
            receipt_id: ReceiptId::from_random([3; 16]),
            decision: Decision::Allow,
            valid: true,
            reasons: Vec::new(),
            token_sha256: crate::audit::token_sha256("a.b.c"),
            agent_id: Some(AgentId::from_random([1; 16])),
            jti: Some(TokenId::from_random([2; 16])),
            policy_hash: None,
            request_sha256: RequestFacts::default().sha256_hex(),
            verified_at: "2025-11-25T06:33:38.123Z".into(),
            remaining: Some(RemainingClaim {
                amount: "90.00".into(),
                currency: "USD".into(),
                period: "day".into(),
                period_ends: "2025-11-26T00:00:00Z".into(),
            }),
            audit_index: Some(7),
            receiver: None,
        }
    }

    fn keyset(keys: &[&SigningKey]) -> KeySet {
        let mut set = KeySet::new();
        for k in keys {
            set.insert(VerifyingKey::from_jwk(k.verifying_key().jwk()).unwrap());
        }
        set
    }

    /// Signs arbitrary payload bytes as a receipt.
    fn sign_raw(key: &SigningKey, typ: &str, payload: &[u8]) -> String {
        jws::sign_compact(key, typ, payload).unwrap()
    }

    #[test]
    fn round_trip_with_every_algorithm() {
        for alg in [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256] {
            let key = SigningKey::generate(alg).unwrap();
            let jws = sign(&key, &claims()).unwrap();
            assert_eq!(verify(&jws, &keyset(&[&key])).unwrap(), claims(), "{alg}");
        }
    }

    #[test]
    fn header_is_alg_typ_kid() {
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let jws = sign(&key, &claims()).unwrap();
        let header = b64::decode(jws.split('.').next().unwrap()).unwrap();
        assert_eq!(
            String::from_utf8(header).unwrap(),
            format!(
                r#"{{"alg":"EdDSA","typ":"receipt+jwt","kid":"{}"}}"#,
                key.kid()
            )
        );
    }

    #[test]
    fn optional_claims_are_left_out_and_reasons_kept() {
        let mut c = claims();
        c.decision = Decision::Deny;
        c.valid = false;
        c.agent_id = None;
        c.jti = None;
        c.remaining = None;
        c.audit_index = None;
        let v: Value = serde_json::to_value(&c).unwrap();
        let names: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "decision",
                "iat",
                "iss",
                "reasons",
                "receipt_id",
                "request_sha256",
                "sub",
                "token_sha256",
                "valid",
                "verified_at"
            ]
        );
        assert_eq!(v["reasons"], serde_json::json!([]));
    }

    #[test]
    fn tampered_or_foreign_receipts_are_refused() {
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let other = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let keys = keyset(&[&key]);
        let jws = sign(&key, &claims()).unwrap();

        // Payload swapped for another receipt's: the signature no longer covers it.
        let mut forged = claims();
        forged.decision = Decision::Allow;
        forged.audit_index = Some(8);
        let forged_payload = b64::encode(&serde_json::to_vec(&forged).unwrap());
        let parts: Vec<&str> = jws.split('.').collect();
        let tampered = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
        assert_eq!(
            verify(&tampered, &keys),
            Err(ReceiptError::Jws(TokenError::BadSignature))
        );

        // Signed by a key not in the set.
        let foreign = sign(&other, &claims()).unwrap();
        assert_eq!(
            verify(&foreign, &keys),
            Err(ReceiptError::Jws(TokenError::UnknownKey))
        );

        // Too large, not three segments.
        let huge = "a".repeat(MAX_RECEIPT_BYTES + 1);
        assert!(matches!(
            verify(&huge, &keys),
            Err(ReceiptError::Jws(TokenError::TooLarge { .. }))
        ));
        assert_eq!(
            verify("a.b", &keys),
            Err(ReceiptError::Jws(TokenError::Shape))
        );
    }

    #[test]
    fn an_agent_token_is_not_a_receipt_and_a_receipt_not_a_token() {
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let keys = keyset(&[&key]);
        let payload = serde_json::to_vec(&claims()).unwrap();
        let as_token = sign_raw(&key, AGENT_TOKEN_TYP, &payload);
        assert_eq!(
            verify(&as_token, &keys),
            Err(ReceiptError::WrongType {
                found: "agent+jwt".into()
            })
        );
        let untyped = sign_raw(&key, "", &payload);
        assert_eq!(
            verify(&untyped, &keys),
            Err(ReceiptError::WrongType { found: "".into() })
        );
        // RFC 7515 §4.1.9: the `application/` prefix may be written out.
        let long_typ = sign_raw(&key, "application/receipt+jwt", &payload);
        assert_eq!(verify(&long_typ, &keys).unwrap(), claims());

        let receipt = sign(&key, &claims()).unwrap();
        let opts = token::VerifyOptions::for_issuer("https://registry.example");
        assert!(matches!(
            token::verify(&receipt, &keys, &opts, 1_764_052_418),
            Err(TokenError::WrongType { .. })
        ));
    }

    /// A resolver that offers one key for every `kid`, to reach the algorithm check.
    struct AnyKid(VerifyingKey);

    impl KeyResolver for AnyKid {
        fn key(&self, _kid: &str) -> Option<&VerifyingKey> {
            Some(&self.0)
        }
    }

    #[test]
    fn alg_must_be_the_keys() {
        let ed = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let es = SigningKey::generate(Algorithm::ES256).unwrap();
        let resolver = AnyKid(VerifyingKey::from_jwk(es.verifying_key().jwk()).unwrap());
        let jws = sign(&ed, &claims()).unwrap();
        assert_eq!(
            verify(&jws, &resolver),
            Err(ReceiptError::Jws(TokenError::AlgorithmKeyMismatch))
        );
    }

    #[test]
    fn signed_but_malformed_claims_are_refused() {
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let keys = keyset(&[&key]);
        let good: Value = serde_json::to_value(claims()).unwrap();
        let signed = |v: &Value| sign_raw(&key, RECEIPT_TYP, &serde_json::to_vec(v).unwrap());
        let claims_err = |jws: &str| match verify(jws, &keys) {
            Err(ReceiptError::Claims(m)) => m,
            other => panic!("expected a claims error, got {other:?}"),
        };

        let mut extra = good.clone();
        extra["surprise"] = true.into();
        assert!(claims_err(&signed(&extra)).contains("surprise"));

        let mut no_reasons = good.clone();
        no_reasons.as_object_mut().unwrap().remove("reasons");
        assert!(claims_err(&signed(&no_reasons)).contains("reasons"));

        let mut bad_id = good.clone();
        bad_id["receipt_id"] = "rcp_x".into();
        assert!(claims_err(&signed(&bad_id)).contains("rcp_x"));

        let mut other_sub = good.clone();
        other_sub["sub"] = ReceiptId::from_random([4; 16]).to_string().into();
        assert_eq!(
            claims_err(&signed(&other_sub)),
            "`sub` is not the receipt's own `receipt_id`"
        );
        let mut agent_sub = good.clone();
        agent_sub["sub"] = good["agent_id"].clone();
        assert!(claims_err(&signed(&agent_sub)).contains("agt_"));
        let mut no_sub = good.clone();
        no_sub.as_object_mut().unwrap().remove("sub");
        assert!(claims_err(&signed(&no_sub)).contains("sub"));

        let mut bad_digest = good.clone();
        bad_digest["request_sha256"] = "ABC".into();
        assert_eq!(
            claims_err(&signed(&bad_digest)),
            "`request_sha256` is not 64 lowercase hex digits"
        );

        let mut bad_policy = good.clone();
        bad_policy["policy_hash"] = "md5:00".into();
        assert!(claims_err(&signed(&bad_policy)).starts_with("`policy_hash`"));

        let mut bad_time = good.clone();
        bad_time["verified_at"] = "yesterday".into();
        assert_eq!(
            claims_err(&signed(&bad_time)),
            "`verified_at` is not an RFC 3339 time"
        );

        let mut allow_invalid = good.clone();
        allow_invalid["valid"] = false.into();
        assert_eq!(
            claims_err(&signed(&allow_invalid)),
            "`decision` is allow but `valid` is false"
        );

        let array = sign_raw(&key, RECEIPT_TYP, b"[]");
        assert_eq!(claims_err(&array), "claims are not a JSON object");

        let dup = sign_raw(&key, RECEIPT_TYP, br#"{"iss":"a","iss":"b"}"#);
        assert_eq!(claims_err(&dup), "duplicate member `iss`");
    }

    fn usd(amount: &str) -> RequestFacts {
        RequestFacts {
            action: Some("payments.send".into()),
            money: Some(Money {
                amount: amount.parse().unwrap(),
                currency: Currency::USD,
            }),
            ..RequestFacts::default()
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]
        /// The direct writer's bytes are the general RFC 8785 canonicalizer's.
        #[test]
        fn the_direct_writer_is_rfc_8785(
            action in proptest::option::of("(?s).{0,12}"),
            resource in proptest::option::of(("(?s).{0,8}", "(?s).{0,8}")),
            money in proptest::option::of((-100_000i64..100_000, 0u32..5, 0usize..3)),
            audience in proptest::option::of("(?s).{0,12}"),
            scopes_requested in proptest::collection::vec("[a-z:é\"\\\n]{0,6}", 0..4),
            idempotency_key in proptest::option::of("(?s).{0,12}"),
        ) {
            let currencies = [Currency::USD, Currency::JPY, Currency::EUR];
            let facts = RequestFacts {
                action,
                resource,
                money: money.map(|(n, scale, c)| Money {
                    amount: Decimal::new(n, scale),
                    currency: currencies[c],
                }),
                audience,
                scopes_requested,
                idempotency_key,
            };
            let general = serde_json_canonicalizer::to_vec(&facts.to_value()).unwrap();
            let direct = facts.canonical();
            proptest::prop_assert_eq!(
                String::from_utf8_lossy(&direct),
                String::from_utf8_lossy(&general)
            );
        }
    }

    fn canonical_text(f: &RequestFacts) -> String {
        String::from_utf8(f.canonical()).unwrap()
    }

    #[test]
    fn canonical_form_of_a_full_request() {
        let facts = RequestFacts {
            action: Some("payments.send".into()),
            resource: Some(("merchant".into(), "airbnb".into())),
            money: Some(Money {
                amount: Decimal::new(10, 0),
                currency: Currency::USD,
            }),
            audience: Some("https://api.shop.example".into()),
            scopes_requested: vec![
                "read:account".into(),
                "payments:write".into(),
                "read:account".into(),
            ],
            idempotency_key: Some("k-1".into()),
        };
        assert_eq!(
            canonical_text(&facts),
            r#"{"action":"payments.send","amount":"10.00","audience":"https://api.shop.example","currency":"USD","idempotency_key":"k-1","resource":{"id":"airbnb","type":"merchant"},"scopes_requested":["payments:write","read:account"]}"#
        );
        assert_eq!(canonical_text(&RequestFacts::default()), "{}");
        assert_eq!(
            RequestFacts::default().sha256_hex(),
            // SHA-256 of the two bytes `{}`.
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn amounts_are_written_with_the_currencys_minor_units() {
        assert_eq!(usd("10").canonical(), usd("10.00").canonical());
        assert_eq!(usd("10").canonical(), usd("10.0").canonical());
        assert_ne!(usd("10").canonical(), usd("10.01").canonical());
        assert!(canonical_text(&usd("0.5")).contains(r#""amount":"0.50""#));
        // Caller-built amounts beyond the minor units are not rounded into another.
        assert_ne!(usd("10.005").canonical(), usd("10.01").canonical());
        assert!(canonical_text(&usd("10.0050")).contains(r#""amount":"10.005""#));
        let mut zero = usd("0");
        zero.money = zero.money.map(|mut m| {
            m.amount.set_sign_negative(true);
            m
        });
        assert_eq!(zero.canonical(), usd("0.00").canonical());
        let jpy = RequestFacts {
            money: Some(Money {
                amount: Decimal::new(500, 2),
                currency: Currency::JPY,
            }),
            ..RequestFacts::default()
        };
        assert_eq!(canonical_text(&jpy), r#"{"amount":"5","currency":"JPY"}"#);
    }

    #[test]
    fn request_json_is_read_as_the_server_reads_it() {
        let f = RequestFacts::from_request_json(
            br#"{"token":"t","proof":{"any":1},"target_resource":"svc","amount":10,"currency":"USD","action":"payments.send","scopes_requested":["b","a"]}"#,
        )
        .unwrap();
        assert_eq!(f.audience.as_deref(), Some("svc"));
        assert_eq!(f, {
            let mut want = usd("10.00");
            want.audience = Some("svc".into());
            want.scopes_requested = vec!["b".into(), "a".into()];
            want
        });
        let both =
            RequestFacts::from_request_json(br#"{"audience":"a","target_resource":"t"}"#).unwrap();
        assert_eq!(both.audience.as_deref(), Some("a"));
        let nulls = RequestFacts::from_request_json(br#"{"audience":null,"amount":null}"#).unwrap();
        assert_eq!(nulls, RequestFacts::default());
        assert!(matches!(
            RequestFacts::from_request_json(br#"{"amout":null}"#),
            Err(ReceiptError::Request(m)) if m.starts_with("unknown member `amout`")
        ));
    }

    #[test]
    fn bad_request_json_names_the_member() {
        let err = |body: &str| match RequestFacts::from_request_json(body.as_bytes()) {
            Err(ReceiptError::Request(m)) => m,
            other => panic!("{body}: expected a request error, got {other:?}"),
        };
        assert!(err(r#"{"amout":"1"}"#).starts_with("unknown member `amout`"));
        assert_eq!(err(r#"{"action":1}"#), "`action` must be a string");
        assert_eq!(
            err(r#"{"scopes_requested":"a b"}"#),
            "`scopes_requested` must be an array of strings"
        );
        assert_eq!(
            err(r#"{"resource":{"type":"m"}}"#),
            "`resource.id` is missing"
        );
        assert_eq!(
            err(r#"{"resource":{"type":"m","id":"x","ids":[]}}"#),
            "unknown member `resource.ids` (expected type, id)"
        );
        assert_eq!(err(r#"{"amount":"1"}"#), "`amount` needs a `currency`");
        assert_eq!(err(r#"{"currency":"USD"}"#), "`currency` needs an `amount`");
        assert_eq!(
            err(r#"{"amount":"1e3","currency":"USD"}"#),
            "amount: exponent form `1e3` is refused: write the digits out"
        );
        assert_eq!(err("[]"), "a verify request is a JSON object");
        assert_eq!(err(r#"{"a":1,"a":2}"#), "duplicate member `a`");
    }

    #[test]
    fn check_request_compares_digests() {
        let facts = usd("10");
        let mut c = claims();
        c.request_sha256 = facts.sha256_hex();
        assert_eq!(check_request(&c, &usd("10.00")), Ok(()));
        assert_eq!(
            check_request(&c, &usd("11")),
            Err(ReceiptError::RequestMismatch {
                expected: facts.sha256_hex(),
                found: usd("11").sha256_hex(),
            })
        );
    }
}
