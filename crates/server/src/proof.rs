//! Proof of possession for tokens bound to the agent's own key (`cnf.jkt`): pipeline
//! step 6 of docs/design.md, for `POST /v1/verify` and `POST /v1/simulate`.
//!
//! The receiver passes on what it received: a DPoP proof (RFC 9449) with the method
//! and URL it saw, or an HTTP message signature (RFC 9421, Web Bot Auth profile) with
//! the method, URL and headers it saw. The proof is checked here against the key the
//! token is bound to and nothing else:
//!
//! - DPoP: the proof's `jwk` header is used only once its RFC 7638 thumbprint equals
//!   `cnf.jkt` ([`bonafide_core::dpop`]); `htm`, `htu`, `iat` (300 s back, 60 s
//!   ahead) and `ath` (the hash of this token) must match.
//! - HTTP message signature: `keyid` must be `cnf.jkt`, and the key is the agent's
//!   *registered* key with that thumbprint (within its grace period if rotated out);
//!   `tag="web-bot-auth"`, `created` and `expires` are required, `@authority` must be
//!   covered, and so must `Signature-Agent` when it is sent; `nonce` is required.
//!
//! A proof is single use: its DPoP `jti` (per key) or its signature `nonce` (per key)
//! is claimed in the same store transaction as the decision's audit entry
//! ([`bonafide_store::NonceClaim`]), for as long as the proof could still be accepted
//! (the `replay_until` core's verifiers return with the proof), so a replay answers
//! `REPLAY` even after a restart. A simulation checks the proof but
//! claims nothing.
//!
//! What is an error of the request, not of the proof (a 4xx, not a decision): an
//! unknown proof `type` or missing members (400/422 from the body's schema), a
//! malformed `htm`/`htu`/`method`/`url`, a proof for a token that is not bound
//! (`PROOF_NOT_APPLICABLE`: the receiver should not have sent one), and a covered
//! header that is missing from `headers` (`PROOF_INCOMPLETE`: the receiver must pass
//! every header the signature covers). Everything about the proof itself that fails
//! is a decision: `valid: false` with `PROOF_INVALID`.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use bonafide_core::dpop::{self, ProofCheck};
use bonafide_core::httpsig::{self, HttpSigError, Message};
use bonafide_core::keys::VerifyingKey;
use bonafide_core::token::{AgentClaims, TokenError};
use bonafide_store::NonceClaim;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// Most headers a signature proof may carry.
const MAX_HEADERS: usize = 64;

/// Longest method, in bytes.
const MAX_METHOD: usize = 32;

/// Longest URL, in bytes.
const MAX_URL: usize = 4096;

/// `proof` of a verify request: what the agent sent the receiver to prove it holds
/// the key its token is bound to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum ProofInput {
    /// A DPoP proof (RFC 9449): the `DPoP` header's JWT, with the method and the
    /// full URL of the request as the receiver saw them.
    #[serde(rename = "dpop")]
    Dpop {
        /// The proof JWT (`typ dpop+jwt`).
        jwt: String,
        /// The request's method (`POST`).
        htm: String,
        /// The request's URL (`https://api.example/orders?x=1`; query and fragment
        /// are ignored, as RFC 9449 says).
        htu: String,
    },
    /// An HTTP message signature (RFC 9421, Web Bot Auth profile): the request's
    /// method, URL and headers as the receiver saw them, including `Signature`,
    /// `Signature-Input`, `Signature-Agent` (if sent) and every covered header.
    #[serde(rename = "http-signature")]
    HttpSignature {
        /// The request's method.
        method: String,
        /// The request's absolute URL.
        url: String,
        /// Header name → value (or values, for a repeated header).
        #[schema(value_type = Object)]
        headers: BTreeMap<String, HeaderValues>,
    },
}

impl ProofInput {
    /// Lowercase hex SHA-256 of the proof as sent (its JSON form, which is
    /// unambiguous): a request with another proof is another request.
    pub fn sha256_hex(&self) -> String {
        let value = match self {
            ProofInput::Dpop { jwt, htm, htu } => {
                serde_json::json!({"type": "dpop", "jwt": jwt, "htm": htm, "htu": htu})
            }
            ProofInput::HttpSignature {
                method,
                url,
                headers,
            } => {
                let headers: BTreeMap<&str, Vec<&str>> = headers
                    .iter()
                    .map(|(name, v)| {
                        let values = match v {
                            HeaderValues::One(one) => vec![one.as_str()],
                            HeaderValues::Many(many) => many.iter().map(String::as_str).collect(),
                        };
                        (name.as_str(), values)
                    })
                    .collect();
                serde_json::json!({"type": "http-signature", "method": method, "url": url, "headers": headers})
            }
        };
        bonafide_core::hex(&bonafide_core::sha256(value.to_string().as_bytes()))
    }
}

/// One header's value, or the values of a repeated header.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum HeaderValues {
    /// A single value.
    One(String),
    /// Every value, in order.
    Many(Vec<String>),
}

fn bad_proof(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

/// Checks the request members of a proof that need no token (before the token is
/// verified, so a malformed request is refused without a decision).
pub fn check_shape(proof: &ProofInput) -> Result<(), ApiError> {
    let method_ok = |m: &str| {
        !m.is_empty()
            && m.len() <= MAX_METHOD
            && m.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    match proof {
        ProofInput::Dpop { jwt, htm, htu } => {
            if jwt.is_empty() {
                return Err(ApiError::invalid("`proof.jwt` is empty"));
            }
            if !method_ok(htm) {
                return Err(ApiError::invalid(
                    "`proof.htm` must be the request's HTTP method (`GET`, `POST`, …)",
                ));
            }
            if htu.len() > MAX_URL || dpop::normalize_htu(htu).is_err() {
                return Err(ApiError::invalid(
                    "`proof.htu` must be the request's absolute http(s) URL, as the receiver saw it",
                ));
            }
        }
        ProofInput::HttpSignature {
            method,
            url,
            headers,
        } => {
            if !method_ok(method) {
                return Err(ApiError::invalid(
                    "`proof.method` must be the request's HTTP method (`GET`, `POST`, …)",
                ));
            }
            if url.len() > MAX_URL || httpsig::check_url(url).is_err() {
                return Err(ApiError::invalid(
                    "`proof.url` must be the request's absolute http(s) URL, as the receiver saw it",
                ));
            }
            let count: usize = headers
                .values()
                .map(|v| match v {
                    HeaderValues::One(_) => 1,
                    HeaderValues::Many(all) => all.len(),
                })
                .sum();
            if count > MAX_HEADERS {
                return Err(ApiError::invalid(format!(
                    "`proof.headers` holds more than {MAX_HEADERS} values"
                )));
            }
            for name in ["signature", "signature-input"] {
                if !headers.keys().any(|k| k.eq_ignore_ascii_case(name)) {
                    return Err(ApiError::invalid(format!(
                        "`proof.headers` has no `{name}` header: pass the request's headers as received"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// What step 6 found (see [`check`]).
#[derive(Debug)]
pub enum Possession {
    /// A proof holds: its single-use value, to claim with the decision.
    Proven(NonceClaim),
    /// An unbound token, presented without a proof.
    Unbound,
    /// The proof is missing or does not hold.
    Refused(TokenError),
}

/// Step 6 for a token that passed steps 1–5: [`Possession::Proven`] with the claim
/// when a proof holds (the caller claims its single-use value with the decision),
/// [`Possession::Unbound`] for an unbound token without a proof,
/// [`Possession::Refused`] when the proof is missing or does not hold, and `Err` for
/// a request error (see the module docs).
pub async fn check(
    state: &AppState,
    claims: &AgentClaims,
    token: &str,
    proof: Option<&ProofInput>,
    now_ms: i64,
) -> Result<Possession, ApiError> {
    let Some(cnf) = &claims.cnf else {
        return match proof {
            None => Ok(Possession::Unbound),
            Some(_) => Err(bad_proof(
                ErrorCode::ProofNotApplicable,
                "this token is not bound to a key (it has no `cnf.jkt`), so there is nothing to prove: send it without `proof`",
            )),
        };
    };
    let Some(proof) = proof else {
        return Ok(Possession::Refused(TokenError::ProofRequired));
    };
    let now_s = now_ms.div_euclid(1000);
    // The agent that holds the bound key: the subject, or for a delegated token the
    // current actor (the sub-agent presenting it).
    let holder = bonafide_core::delegation::current_actor(claims);
    let claim = |nonce: String, until_s: i64| NonceClaim {
        agent: holder.clone(),
        nonce,
        expires_at_ms: until_s.saturating_add(1).saturating_mul(1000),
        now_ms,
    };
    match proof {
        ProofInput::Dpop { jwt, htm, htu } => {
            let check = ProofCheck::new(htm, htu, &cnf.jkt, token, now_s);
            match dpop::verify(jwt, &check) {
                // Remembered for as long as core says the proof is acceptable.
                Ok(v) => Ok(Possession::Proven(claim(
                    format!("dpop:{}:{}", cnf.jkt, v.jti),
                    v.replay_until,
                ))),
                Err(e) => Ok(Possession::Refused(TokenError::ProofInvalid(format!(
                    "DPoP: {e}"
                )))),
            }
        }
        ProofInput::HttpSignature {
            method,
            url,
            headers,
        } => {
            let headers: Vec<(String, String)> = headers
                .iter()
                .flat_map(|(name, values)| {
                    let values: Vec<&String> = match values {
                        HeaderValues::One(v) => vec![v],
                        HeaderValues::Many(all) => all.iter().collect(),
                    };
                    values
                        .into_iter()
                        .map(move |v| (name.clone(), v.clone()))
                        .collect::<Vec<_>>()
                })
                .collect();
            let message = Message::Request {
                method,
                url,
                headers: &headers,
            };
            let mut check = httpsig::Check::web_bot_auth(now_s);
            check.require_nonce = true;
            // The bound key only, as registered (never a key the request offers).
            let keys = state.agent_keys(holder).await?;
            let key_for = |keyid: &str| -> Option<VerifyingKey> {
                if keyid != cnf.jkt {
                    return None;
                }
                let entry = keys.iter().find(|k| k.record.jkt == keyid)?;
                VerifyingKey::from_jwk(entry.key.jwk()).ok()
            };
            match httpsig::verify(&message, &check, key_for) {
                Ok(v) => {
                    let Some(nonce) = v.nonce else {
                        return Ok(Possession::Refused(TokenError::ProofInvalid(
                            "HTTP message signature: `nonce` is required".into(),
                        )));
                    };
                    Ok(Possession::Proven(claim(
                        format!("sig:{}:{nonce}", v.keyid),
                        v.replay_until,
                    )))
                }
                Err(HttpSigError::MissingComponent(name)) => Err(bad_proof(
                    ErrorCode::ProofIncomplete,
                    format!(
                        "the signature covers the `{}` header, which is not in `proof.headers`: pass every header the signature covers, as received",
                        name.chars().take(64).collect::<String>()
                    ),
                )),
                Err(HttpSigError::UnknownKey(_)) => Ok(Possession::Refused(TokenError::ProofInvalid(
                    "HTTP message signature: `keyid` is not the thumbprint of the key this token is bound to".into(),
                ))),
                Err(e) => Ok(Possession::Refused(TokenError::ProofInvalid(format!(
                    "HTTP message signature: {e}"
                )))),
            }
        }
    }
}
