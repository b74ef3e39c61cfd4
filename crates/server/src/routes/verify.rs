//! Receiver endpoints: verify a token (ImaRobot GET shape, KairosAI POST shape) and
//! RFC 7662 introspection. No key is needed (a key adds attribution in the audit log).
//! The decision itself reads only memory (keys and revocation sets); each verify
//! decision is then written to the audit log, and the answer waits until it is
//! durable (see [`crate::audit`]).

use std::sync::Arc;

use axum::Form;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bonafide_api::{ErrorCode, ErrorDetail};
use bonafide_core::audit::{AuditEntry, Decision, EventType, token_sha256};
use bonafide_core::ids::{AgentId, ReceiptId, ReceiverId, TokenId};
use bonafide_core::policy::money_from_json;
use bonafide_core::receipt::RequestFacts;
use bonafide_core::token::{self, AudienceRule, TokenError, VerifiedToken};
use bonafide_store::{DecisionItem, DecisionOutcome, IdempotencyClaim, NonceClaim};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

pub use bonafide_api::verify::{IntrospectResponse, SimpleVerify};

use crate::auth::Caller;
use crate::decision::{Asked, Checked, Deciding, ValidToken};
pub use crate::decision::{VerifiedAgent, VerifyResponse};
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::proof::{self, Possession, ProofInput};
use crate::routes::random16;
use crate::state::AppState;
use crate::time::{rfc3339_ms, rfc3339_s};

/// The one reason a decision can gain from the budget's real spending.
const LIMIT_PER_PERIOD: &str = "LIMIT_PER_PERIOD";

/// Most scopes one verify may ask about.
const MAX_SCOPES_REQUESTED: usize = 64;

/// Longest scope one verify may ask about, in bytes (the scope grammar allows 64
/// ASCII characters; a longer one is a malformed request, not a decision to log).
const MAX_SCOPE_BYTES: usize = 64;

use crate::token_check::{Denied, TokenCheck, check_token, second_reason};

/// One verify decision, for the audit log.
struct Decided<'a> {
    token: &'a str,
    subject: Option<(&'a AgentId, &'a TokenId)>,
    allowed: bool,
    reasons: &'a [String],
    scopes: &'a [String],
    target: Option<&'a str>,
}

/// The reasons and the (agent, token id) of a token check, for its audit entry.
fn facts(checked: &Result<VerifiedToken, Denied>) -> (Vec<String>, Option<(&AgentId, &TokenId)>) {
    match checked {
        Ok(v) => (Vec::new(), Some((&v.claims.sub, &v.claims.jti))),
        Err(d) => (
            std::iter::once(d.error.code().as_str())
                .chain(second_reason(&d.error))
                .map(str::to_owned)
                .collect(),
            d.subject.as_ref().map(|(a, j)| (a, j)),
        ),
    }
}

/// Steps 1–5 with no audience or scopes asked (GET verify, introspection), and the
/// decision written to the audit log before anything is answered.
///
/// With `proof_required` (GET verify, which cannot carry a proof), a token bound to
/// the agent's key is `PROOF_REQUIRED`: nothing shows its bearer holds the key.
/// Introspection leaves that to its caller (RFC 9449 §6.2: it answers `cnf`).
async fn check_and_audit(
    state: &AppState,
    caller: &Caller,
    text: &str,
    audience: Option<&str>,
    now_ms: i64,
    proof_required: bool,
) -> Result<TokenCheck, ApiError> {
    let rule = audience_rule(state, caller, audience).await?;
    let checked = match check_token(state, text, rule, now_ms).await?.token() {
        Ok(v) if proof_required && v.claims.cnf.is_some() => Err(Denied {
            error: TokenError::ProofRequired,
            subject: Some((v.claims.sub, v.claims.jti)),
        }),
        other => other,
    };
    let (reasons, subject) = facts(&checked);
    if subject.is_none() {
        // Concerns no agent: counted, never written to the permanent log.
        state.count_unverifiable(
            reasons
                .first()
                .map_or(ErrorCode::TokenInvalid.as_str(), String::as_str),
        );
        return Ok(checked.into());
    }
    audit_decision(
        state,
        caller,
        now_ms,
        Decided {
            token: text,
            subject,
            allowed: checked.is_ok(),
            reasons: &reasons,
            scopes: &[],
            target: None,
        },
    )
    .await?;
    Ok(checked.into())
}

/// The most bytes of a caller's `audience` (as registrations take them): the value
/// reaches the audit log and receipts.
const MAX_AUDIENCE_BYTES: usize = 256;

/// Checks an `audience` a caller named (body, `target_resource` or `?audience=`):
/// 1 to 256 bytes, and none of the characters names refuse (controls, invisible,
/// bidirectional-control, line separators: it is shown in the audit log); 422
/// otherwise.
pub fn check_named_audience(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > MAX_AUDIENCE_BYTES {
        return Err(ApiError::invalid(format!(
            "`{field}` must be 1 to {MAX_AUDIENCE_BYTES} bytes"
        )));
    }
    if let Some(c) = bonafide_core::names::forbidden_char(value) {
        return Err(ApiError::invalid(format!(
            "`{field}` contains {}, which is not allowed",
            bonafide_core::names::describe(c)
        )));
    }
    Ok(())
}

/// Who the caller verifies as (issue 13, "a receiver verifies as itself"). With a
/// receiver key: one of the receiver's registered audiences; a named `audience`
/// must be one of them (403 `AUDIENCE_FORBIDDEN` otherwise), else any of them will
/// do. Without one: the audience the request names, or none, in which case a token
/// that carries `aud` is refused (RFC 7519 §4.1.3).
pub async fn audience_rule(
    state: &AppState,
    caller: &Caller,
    named: Option<&str>,
) -> Result<AudienceRule, ApiError> {
    if let Some(n) = named {
        check_named_audience("audience", n)?;
    }
    let Caller::Receiver(id) = caller else {
        return Ok(AudienceRule::from(named.map(str::to_owned)));
    };
    let own = match ReceiverId::try_from(id.as_str()) {
        Ok(id) => state.receiver_audiences(&id).await?,
        Err(_) => None,
    };
    let own =
        own.ok_or_else(|| ApiError::unauthorized("this receiver key's receiver no longer exists"))?;
    match named {
        None => Ok(AudienceRule::AnyOf(own.to_vec())),
        Some(n) if own.iter().any(|a| a == n) => Ok(AudienceRule::one(n)),
        Some(n) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::AudienceForbidden,
            format!(
                "`{}` is not one of this receiver's audiences ({}): a receiver verifies as itself; register the audience with PUT /v1/receivers/{{id}}/audiences",
                n.chars().take(64).collect::<String>(),
                own.join(", ")
            ),
        )),
    }
}

/// Writes a verify decision to the audit log; its index once durable, or `None` when
/// verify decisions are not audited ([`crate::Config::audit_verify`]).
async fn audit_decision(
    state: &AppState,
    caller: &Caller,
    now_ms: i64,
    d: Decided<'_>,
) -> Result<Option<u64>, ApiError> {
    if !state.config.audit_verify {
        return Ok(None);
    }
    let mut entry = AuditEntry::new(EventType::Verify, now_ms, caller.actor());
    entry.agent = d.subject.map(|(agent, _)| agent.to_string());
    entry.jti = d.subject.map(|(_, jti)| jti.to_string());
    entry.token_sha256 = Some(token_sha256(d.token));
    entry.decision = Some(if d.allowed {
        Decision::Allow
    } else {
        Decision::Deny
    });
    entry.reasons = d.reasons.to_vec();
    entry.scopes = d.scopes.to_vec();
    entry.target = d.target.map(str::to_owned);
    entry.request_id = Some(crate::request_id::current().to_string());
    let record = crate::audit::record(&entry, d.subject.map(|(agent, _)| agent), None)
        .map_err(|e| {
            ApiError::invalid(format!(
                "this request cannot be audited: {e}; send fewer or shorter `scopes_requested`, or a shorter audience"
            ))
        })?;
    Ok(Some(state.audit.append(record).await?))
}

/// Verifies a token given in the path. Always 200 with `valid` true or false.
#[utoipa::path(get, path = "/v1/verify/{token}", tag = "receiver",
    params(("token" = String, Path, description = "the agent token"), AudienceQuery),
    security((), ("api_key" = [])),
    responses((status = 200, body = SimpleVerify), (status = 401),
              (status = 403, description = "a receiver key with an `audience` that is not the receiver's (`AUDIENCE_FORBIDDEN`)"),
              (status = 422, description = "an unknown query parameter, or an `audience` that is empty, too long or holds a forbidden character"),
              (status = 503, description = "the audit log cannot take the decision")))]
pub async fn verify_get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(text): ApiPath<String>,
    query: Result<Query<AudienceQuery>, QueryRejection>,
) -> Result<ApiJson<SimpleVerify>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid(format!("query: {}", e.body_text())))?;
    let now = state.now_ms();
    let checked =
        check_and_audit(&state, &caller, &text, query.audience.as_deref(), now, true).await?;
    Ok(ApiJson(match checked.token() {
        Ok(v) => {
            let trust_level = state.trust_level(&v.claims.sub, now).await?;
            let issuer_domain = state.issuer_domain(&v.claims.sub, now).await?;
            let delegation = crate::delegation::hops(&state, &v.claims).await?;
            let c = v.claims;
            SimpleVerify {
                delegation,
                valid: true,
                error: None,
                agent_id: Some(c.sub.to_string()),
                name: Some(c.agent.name),
                issuer: Some(c.agent.issuer),
                scopes: Some(c.agent.scopes),
                description: c.agent.description,
                issued_at: Some(rfc3339_s(c.iat)),
                expires_at: Some(rfc3339_s(c.exp)),
                verified_at: Some(rfc3339_ms(now)),
                trust_level: trust_level.map(str::to_owned),
                issuer_domain,
            }
        }
        Err(d) => SimpleVerify::invalid(ErrorDetail {
            code: ErrorCode::from(&d.error),
            message: d.error.to_string(),
            request_id: crate::request_id::current().to_string(),
        }),
    }))
}

/// `?audience=` of `GET /v1/verify/{token}` and `POST /v1/introspect`: who the
/// caller verifies as (see [`audience_rule`]).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AudienceQuery {
    /// One of the token's audiences (`aud`): required for a token that has them.
    #[serde(default)]
    #[param(value_type = Option<crate::openapi::values::NamedAudience>)]
    pub audience: Option<String>,
}

/// `resource` of a verify request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceInput {
    /// Resource type (`merchant`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Resource id (`acct/12/sub`).
    pub id: String,
}

/// `POST /v1/verify` and `POST /v1/simulate` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The agent token.
    pub token: String,
    /// The receiver's identifier; a token with `aud` must name it.
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::values::NamedAudience>)]
    pub audience: Option<String>,
    /// The receiver's service (KairosAI); used as the audience when `audience` is absent.
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::values::NamedAudience>)]
    pub target_resource: Option<String>,
    /// Scopes this request needs; all must be granted for `allowed`.
    #[serde(default)]
    pub scopes_requested: Option<Vec<String>>,
    /// The action the agent asks to take (`payments.send`), checked against the
    /// token's consent policy.
    #[serde(default)]
    pub action: Option<String>,
    /// What it acts on.
    #[serde(default)]
    pub resource: Option<ResourceInput>,
    /// Amount to spend: an exact decimal as a string (`"12.50"`) or an integer; never
    /// a JSON float. Needs `currency`, `action` and a receiver key.
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::values::Amount>)]
    pub amount: Option<Value>,
    /// ISO 4217 code of `amount`; only with `amount`.
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::values::Currency>)]
    pub currency: Option<Value>,
    /// Makes a retried request return the first decision without spending twice
    /// (scoped to the receiver; needs a receiver key). 1 to 255 visible ASCII characters.
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::values::IdempotencyKey>)]
    pub idempotency_key: Option<String>,
    /// Proof of possession the agent sent with its request, for a token bound to
    /// its key (`cnf.jkt`): required for such a token (`PROOF_REQUIRED`), refused
    /// for any other (422 `PROOF_NOT_APPLICABLE`). See [`crate::proof`].
    #[serde(default)]
    pub proof: Option<ProofInput>,
}

fn invalid_field(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

/// Checks the request members (before the token): 422 for bad values, 401 when a
/// spend or an idempotency key comes without a receiver key.
fn check_request(req: &VerifyRequest, caller: &Caller) -> Result<Asked, ApiError> {
    if let Some(proof) = &req.proof {
        proof::check_shape(proof)?;
    }
    let scopes = req.scopes_requested.clone().unwrap_or_default();
    if scopes.len() > MAX_SCOPES_REQUESTED {
        return Err(ApiError::invalid(format!(
            "at most {MAX_SCOPES_REQUESTED} `scopes_requested`"
        )));
    }
    // Everything a caller sends that reaches the audit log or a receipt is bounded
    // as registration bounds it (issue 13: no kilobytes in the log for free).
    if let Some(s) = scopes
        .iter()
        .find(|s| s.is_empty() || s.len() > MAX_SCOPE_BYTES || s.chars().any(char::is_control))
    {
        return Err(ApiError::invalid(format!(
            "each of `scopes_requested` must be 1 to {MAX_SCOPE_BYTES} bytes without control characters (got {} bytes)",
            s.len()
        )));
    }
    if let Some(a) = &req.audience {
        check_named_audience("audience", a)?;
    }
    if let Some(t) = &req.target_resource {
        check_named_audience("target_resource", t)?;
    }
    // One audience per request: two that differ would let one be checked and the
    // other be recorded.
    if let (Some(a), Some(t)) = (&req.audience, &req.target_resource)
        && a != t
    {
        return Err(ApiError::invalid(
            "`audience` and `target_resource` name the same thing: send one (or the same value)",
        ));
    }
    // Values are decided and bound into the receipt exactly as written (never
    // trimmed), so a receipt always matches the request that was sent.
    let name_like = |field: &str, v: &str| -> Result<String, ApiError> {
        let ok = !v.is_empty()
            && v.len() <= 128
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_:.-".contains(&b));
        if !ok {
            return Err(ApiError::invalid(format!(
                "`{field}` must be 1 to 128 characters of [a-zA-Z0-9_:.-]"
            )));
        }
        Ok(v.to_owned())
    };
    let action = req
        .action
        .as_deref()
        .map(|a| name_like("action", a))
        .transpose()?;
    let resource = match &req.resource {
        None => None,
        Some(r) => {
            let kind = name_like("resource.type", &r.kind)?;
            if r.id.is_empty() || r.id.len() > 256 || r.id.chars().any(char::is_control) {
                return Err(ApiError::invalid(
                    "`resource.id` must be 1 to 256 bytes without control characters",
                ));
            }
            Some((kind, r.id.clone()))
        }
    };
    let money = match (&req.amount, &req.currency) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(invalid_field(
                ErrorCode::AmountInvalid,
                "`amount` needs a `currency` (ISO 4217, such as `USD`)",
            ));
        }
        (None, Some(_)) => {
            return Err(invalid_field(
                ErrorCode::AmountInvalid,
                "`currency` needs an `amount`",
            ));
        }
        (Some(a), Some(c)) => Some(
            money_from_json(a, c)
                .map_err(|e| invalid_field(ErrorCode::AmountInvalid, e.to_string()))?,
        ),
    };
    if (money.is_some() || resource.is_some()) && action.is_none() {
        return Err(ApiError::invalid(
            "`amount` and `resource` describe an `action`: name the action too",
        ));
    }
    let idempotency_key = match &req.idempotency_key {
        None => None,
        Some(k) => {
            if k.is_empty() || k.len() > 255 || !k.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ApiError::invalid(
                    "`idempotency_key` must be 1 to 255 visible ASCII characters",
                ));
            }
            Some(k.clone())
        }
    };
    if !matches!(caller, Caller::Receiver(_)) {
        let what = if money.is_some() {
            "a request with an `amount` spends a budget"
        } else if idempotency_key.is_some() {
            "`idempotency_key` is scoped to a receiver"
        } else {
            ""
        };
        if !what.is_empty() {
            // No key at all is a 401; another kind of key is a 403 (not yours to do).
            return Err(if *caller == Caller::Anonymous {
                ApiError::unauthorized(format!(
                    "{what}: send a receiver key (`bfk_rcv_…`) in `Authorization: Bearer …` or `X-API-Key`"
                ))
            } else {
                ApiError::forbidden(format!(
                    "{what}: it needs a receiver key (`bfk_rcv_…`), not an admin or issuer key"
                ))
            });
        }
    }
    let audience = req.audience.clone().or_else(|| req.target_resource.clone());
    let facts = RequestFacts {
        action: action.clone(),
        resource: resource.clone(),
        money,
        audience: audience.clone(),
        scopes_requested: scopes.clone(),
        idempotency_key: idempotency_key.clone(),
    };
    Ok(Asked {
        audience,
        scopes,
        action,
        resource,
        money,
        idempotency_key,
        request_sha256: facts.sha256_hex(),
    })
}

/// Steps 1–7 for a verify request, and the agent's issuer when known; with the
/// proof's single-use value to claim with the decision, when a proof held.
async fn check_for_decision(
    state: &AppState,
    caller: &Caller,
    req: &VerifyRequest,
    asked: Asked,
    now: i64,
    receipt: bool,
) -> Result<(Deciding, Option<NonceClaim>), ApiError> {
    let mut nonce = None;
    let rule = audience_rule(state, caller, asked.audience.as_deref()).await?;
    let token = match check_token(state, &req.token, rule, now).await?.token() {
        // Step 6: proof of possession, for a token bound to the agent's key.
        Ok(v) => match proof::check(state, &v.claims, &req.token, req.proof.as_ref(), now).await? {
            Possession::Proven(claim) => {
                nonce = Some(claim);
                Ok(v)
            }
            Possession::Unbound => Ok(v),
            Possession::Refused(error) => Err(Denied {
                error,
                subject: Some((v.claims.sub, v.claims.jti)),
            }),
        },
        Err(d) => Err(d),
    };
    let checked = match token {
        Err(d) => Checked::Invalid {
            code: ErrorCode::from(&d.error),
            second_reason: second_reason(&d.error),
            message: d.error.to_string(),
            subject: d.subject,
        },
        Ok(v) => match state.policy_of(&v.claims) {
            Err(e) => Checked::Invalid {
                code: ErrorCode::from(&e),
                second_reason: None,
                message: e.to_string(),
                subject: Some((v.claims.sub, v.claims.jti)),
            },
            Ok(policy) => {
                let c = v.claims;
                // The bound key was just checked through the same cache.
                let key_expires_at_ms = match &c.cnf {
                    Some(cnf) => state
                        .agent_keys(bonafide_core::delegation::current_actor(&c))
                        .await?
                        .iter()
                        .find(|k| k.record.jkt == cnf.jkt)
                        .map(|k| k.record.expires_at_ms),
                    None => None,
                };
                let delegation = crate::delegation::chain_of(state, &c).await?;
                Checked::Valid(Box::new(ValidToken {
                    delegation,
                    key_expires_at_ms,
                    agent: c.sub,
                    jti: c.jti,
                    name: c.agent.name,
                    issuer_name: c.agent.issuer,
                    scopes: c.agent.scopes,
                    user: c.user,
                    exp: c.exp,
                    policy,
                }))
            }
        },
    };
    if let Checked::Valid(v) = &checked
        && asked.money.is_some()
        && v.policy.as_ref().and_then(|p| p.limits()).is_none()
    {
        return Err(invalid_field(
            ErrorCode::AmountNotAllowed,
            if v.policy.is_none() {
                "this token carries no consent policy, so it grants no spending: send no `amount`"
            } else {
                "this token's consent policy has no `limits`, so it grants no spending: send no `amount`"
            },
        ));
    }
    let subject = match &checked {
        Checked::Valid(v) => Some(&v.agent),
        Checked::Invalid { subject, .. } => subject.as_ref().map(|(a, _)| a),
    };
    let issuer_id = match subject {
        Some(agent) => state.issuer_of(agent).await?,
        None => None,
    };
    let issuer_domain = match (&checked, &issuer_id) {
        (Checked::Valid(_), Some(issuer)) => state.verified_domain(&state.snapshot(), issuer, now),
        _ => None,
    };
    let trust_level = match (&checked, &issuer_id) {
        (Checked::Valid(_), Some(_)) => Some(if issuer_domain.is_some() {
            "domain_verified"
        } else {
            "registered"
        }),
        _ => None,
    };
    // A token that did not verify concerns no agent: no receipt (issue 13).
    let receipt_id = if receipt && subject.is_some() {
        Some(ReceiptId::from_random(random16()?))
    } else {
        None
    };
    let receiver = match caller {
        Caller::Receiver(id) => ReceiverId::try_from(id.as_str()).ok(),
        _ => None,
    };
    let deciding = Deciding {
        now_ms: now,
        registry: state.config.public_url.clone(),
        did: subject.map(|a| state.agent_did(a.as_str())),
        actor: caller.actor(),
        receiver,
        request_id: crate::request_id::current().to_string(),
        token_sha256: token_sha256(&req.token),
        asked,
        checked,
        issuer_id,
        trust_level,
        issuer_domain,
        receipt_id,
    };
    Ok((deciding, nonce))
}

fn json_response(status: StatusCode, body: Vec<u8>, replayed: bool) -> Response {
    let mut res = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if replayed {
        res.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    res
}

/// Verifies a token and decides one request: scopes, then the token's consent policy
/// (action, resource, time window, amount), charging the policy's budget atomically
/// when allowed. Every decision, allow or deny, is written to the audit log and gets
/// a signed receipt before the answer is sent.
#[utoipa::path(post, path = "/v1/verify", tag = "receiver", request_body = VerifyRequest,
    security((), ("api_key" = [])),
    responses((status = 200, body = VerifyResponse), (status = 400), (status = 401, description = "an `amount` or `idempotency_key` without a key, or a wrong key"),
              (status = 403, description = "an `amount` or `idempotency_key` with an admin or issuer key"),
              (status = 409, description = "`idempotency_key` already used for another request"),
              (status = 413), (status = 422),
              (status = 503, description = "the audit log cannot take the decision")))]
pub async fn verify_post(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> Result<Response, ApiError> {
    let asked = check_request(&req, &caller)?;
    let now = state.now_ms();
    let (deciding, nonce) =
        check_for_decision(&state, &caller, &req, asked, now, state.config.audit_verify).await?;
    // A token that did not verify concerns no agent: it is counted and answered,
    // never written to the permanent log (issue 13).
    let audited = state.config.audit_verify && deciding.concerns_agent();
    if let Checked::Invalid {
        code,
        subject: None,
        ..
    } = &deciding.checked
    {
        state.count_unverifiable(code.as_str());
    }
    let replayed_kind = match &req.proof {
        Some(ProofInput::Dpop { .. }) => "jti",
        _ => "nonce",
    };
    let proof_sha256 = req.proof.as_ref().map(ProofInput::sha256_hex);
    record_decision(
        &state,
        deciding,
        nonce,
        replayed_kind,
        audited,
        proof_sha256.as_deref(),
    )
    .await
}

/// Records a decision (budget charge, idempotency record, receipt, audit entry and
/// the proof's single-use value, together) and answers it.
///
/// Idempotency remembers the spend, nothing else: only a decision about a token that
/// checked out (signature, status, keys, proof: all decided afresh on every request)
/// makes or replays an idempotency record. A retry whose token or proof no longer
/// checks out is decided as the denial it is, and a request with another proof (or
/// none) is another request: the same key for it is a conflict.
async fn record_decision(
    state: &AppState,
    deciding: Deciding,
    nonce: Option<NonceClaim>,
    replayed_kind: &'static str,
    audited: bool,
    proof_sha256: Option<&str>,
) -> Result<Response, ApiError> {
    let budget = deciding.budget();
    let idempotency = match (
        &deciding.checked,
        &deciding.receiver,
        &deciding.asked.idempotency_key,
    ) {
        (Checked::Valid(_), Some(receiver), Some(key)) => Some(IdempotencyClaim {
            receiver_id: receiver.clone(),
            key: key.clone(),
            // The same key must come with the same token, request and proof.
            request_sha256: bonafide_core::sha256(
                format!(
                    "{}\n{}\n{}",
                    deciding.token_sha256,
                    deciding.asked.request_sha256,
                    proof_sha256.unwrap_or("-")
                )
                .as_bytes(),
            ),
        }),
        _ => None,
    };
    if !audited && budget.is_none() && idempotency.is_none() && nonce.is_none() {
        let o = deciding.outcome(None);
        let body = serde_json::to_vec(&deciding.response(&o, None))
            .map_err(|e| ApiError::internal(e.to_string()))?;
        return Ok(json_response(StatusCode::OK, body, false));
    }
    if audited {
        // Fail here, with a clear 422, rather than inside the store's transaction.
        // The entry as decided with nothing spent; the budget's real spending can
        // only add `LIMIT_PER_PERIOD` (known inside the transaction), so size for it.
        let mut probe = deciding.audit_entry(&deciding.outcome(None));
        if budget.is_some() && !probe.reasons.iter().any(|r| r == LIMIT_PER_PERIOD) {
            probe.reasons.push(LIMIT_PER_PERIOD.to_owned());
        }
        crate::audit::record(&probe, None, None).map_err(|e| {
            ApiError::invalid(format!(
                "this request cannot be audited: {e}; send fewer or shorter `scopes_requested`, or a shorter audience, resource or idempotency key"
            ))
        })?;
    }
    let deciding = Arc::new(deciding);
    let inner = Arc::clone(&deciding);
    let item = DecisionItem {
        nonce,
        budget,
        idempotency,
        // The store runs this inside the committer's transaction: a panic must not
        // unwind through the committer (it would stop every later decision).
        decide: Box::new(move |spent| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                inner.decided(spent, audited)
            }))
            .unwrap_or_else(|_| {
                Err(bonafide_store::StoreError::Backend(
                    "the decision panicked".into(),
                ))
            })
        }),
    };
    match state.audit.decide(item).await? {
        DecisionOutcome::Recorded {
            audit_index,
            spent_before,
        } => {
            let o = deciding.outcome(spent_before);
            if let Some(amount) = o.charge {
                tracing::info!(
                    receipt_id = ?deciding.receipt_id.as_ref().map(ToString::to_string),
                    %amount,
                    "budget charged"
                );
            }
            let body = serde_json::to_vec(&deciding.response(&o, audit_index))
                .map_err(|e| ApiError::internal(e.to_string()))?;
            Ok(json_response(StatusCode::OK, body, false))
        }
        DecisionOutcome::Replay {
            answer,
            audit_index,
        } => {
            let mut first: Value = serde_json::from_slice(&answer)
                .map_err(|e| ApiError::internal(format!("stored answer: {e}")))?;
            if let (Some(obj), Some(i)) = (first.as_object_mut(), audit_index) {
                obj.insert("audit_index".into(), Value::from(i));
            }
            let body = serde_json::to_vec(&first).map_err(|e| ApiError::internal(e.to_string()))?;
            Ok(json_response(StatusCode::OK, body, true))
        }
        DecisionOutcome::IdempotencyConflict => Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::IdempotencyConflict,
            "this `idempotency_key` was already used for a different request (another token, action, resource, amount, currency, audience or scopes): use a new key",
        )),
        DecisionOutcome::NonceReplayed => {
            // The proof was used before: the same request decided again as a replay
            // (nothing was written for it), without a proof to claim.
            let mut replay = Deciding::clone(&deciding);
            let subject = match &replay.checked {
                Checked::Valid(v) => Some((v.agent.clone(), v.jti.clone())),
                Checked::Invalid { subject, .. } => subject.clone(),
            };
            let error = TokenError::Replay(replayed_kind);
            replay.checked = Checked::Invalid {
                code: ErrorCode::from(&error),
                second_reason: None,
                message: error.to_string(),
                subject,
            };
            replay.trust_level = None;
            replay.issuer_domain = None;
            Box::pin(record_decision(
                state,
                replay,
                None,
                replayed_kind,
                audited,
                proof_sha256,
            ))
            .await
        }
    }
}

/// Decides a request exactly as `POST /v1/verify` would, against the budget as it
/// stands, and changes nothing: no budget spent, no idempotency record, no receipt,
/// no audit entry. The answer says `simulated: true`.
#[utoipa::path(post, path = "/v1/simulate", tag = "receiver", request_body = VerifyRequest,
    security((), ("api_key" = [])),
    responses((status = 200, body = VerifyResponse), (status = 400), (status = 401), (status = 403), (status = 413), (status = 422)))]
pub async fn simulate(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> Result<ApiJson<VerifyResponse>, ApiError> {
    let asked = check_request(&req, &caller)?;
    let now = state.now_ms();
    let (deciding, _proof_not_claimed) =
        check_for_decision(&state, &caller, &req, asked, now, false).await?;
    let spent = match deciding.budget() {
        Some(b) => Some(crate::delegation::seen_spent(&state, &b).await?),
        None => None,
    };
    let o = deciding.outcome(spent);
    let mut answer = deciding.response(&o, None);
    answer.simulated = true;
    Ok(ApiJson(answer))
}

/// RFC 7662 §2.1 request (form-encoded).
#[derive(Debug, Deserialize, ToSchema)]
pub struct IntrospectRequest {
    /// The token.
    pub token: String,
    /// Ignored hint (RFC 7662 allows ignoring it).
    #[serde(default)]
    pub token_type_hint: Option<String>,
    /// Who the caller verifies as (or `?audience=`): one of the token's audiences,
    /// required for a token that has them (see [`audience_rule`]).
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::values::NamedAudience>)]
    pub audience: Option<String>,
}

/// RFC 7662 token introspection. Open like `/v1/verify`: it reveals nothing the
/// token holder could not read from the token itself.
#[utoipa::path(post, path = "/v1/introspect", tag = "receiver", params(AudienceQuery),
    request_body(content = IntrospectRequest, content_type = "application/x-www-form-urlencoded"),
    security((), ("api_key" = [])),
    responses((status = 200, body = IntrospectResponse), (status = 400), (status = 401),
              (status = 403, description = "a receiver key with an `audience` that is not the receiver's (`AUDIENCE_FORBIDDEN`)"),
              (status = 415, description = "the body is not `application/x-www-form-urlencoded` (`UNSUPPORTED_MEDIA_TYPE`)"),
              (status = 422, description = "an unknown query parameter, or an `audience` that is invalid or given twice with different values"),
              (status = 503, description = "the audit log cannot take the decision")))]
pub async fn introspect(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    query: Result<Query<AudienceQuery>, QueryRejection>,
    form: Result<Form<IntrospectRequest>, axum::extract::rejection::FormRejection>,
) -> Result<ApiJson<IntrospectResponse>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid(format!("query: {}", e.body_text())))?;
    let Form(req) = form.map_err(|r| match r.status() {
        axum::http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            r.status(),
            ErrorCode::PayloadTooLarge,
            "request body is too large",
        ),
        axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            r.status(),
            ErrorCode::UnsupportedMediaType,
            "send `token=…` as application/x-www-form-urlencoded (RFC 7662 §2.1)",
        ),
        _ => ApiError::bad_request(
            "send `token=…` as application/x-www-form-urlencoded (RFC 7662 §2.1)",
        ),
    })?;
    let inactive = IntrospectResponse::inactive();
    let now = state.now_ms();
    // Introspection is a verification too: it is logged like one.
    let audience = match (query.audience.as_deref(), req.audience.as_deref()) {
        (Some(q), Some(f)) if q != f => {
            return Err(ApiError::invalid(
                "`audience` given twice (query and form) with different values",
            ));
        }
        (q, f) => q.or(f),
    };
    let checked = check_and_audit(&state, &caller, &req.token, audience, now, false).await?;
    Ok(ApiJson(match checked.token() {
        Ok(v) => {
            let trust_level = state.trust_level(&v.claims.sub, now).await?;
            let issuer_domain = state.issuer_domain(&v.claims.sub, now).await?;
            let c = v.claims;
            IntrospectResponse {
                active: true,
                scope: Some(c.agent.scopes.join(" ")),
                token_type: Some(token::AGENT_TOKEN_TYP.to_owned()),
                exp: Some(c.exp),
                iat: Some(c.iat),
                nbf: c.nbf,
                sub: Some(c.sub.to_string()),
                aud: c.aud.map(|a| a.to_vec()),
                iss: Some(c.iss),
                jti: Some(c.jti.to_string()),
                username: Some(c.agent.name),
                cnf: c.cnf,
                trust_level: trust_level.map(str::to_owned),
                issuer_domain,
            }
        }
        Err(_) => inactive,
    }))
}
