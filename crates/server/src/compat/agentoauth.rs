//! AgentOAuth's hosted verifier under `/compat/agentoauth`: the same paths as
//! `verifier.agentoauth.org` below that base (`POST /verify`, `/simulate`, `/revoke`,
//! `/lint/policy`, `/lint/token`, `GET /receipts/{id}`, `/health`, the receipt JWKS at
//! `/.well-known/jwks.json`), answering in its shapes: a verify answer is `{valid,
//! payload, policy_decision: {allowed, reason, remaining, receipt_id, receipt}}` with
//! the receipt in AgentOAuth's `receipt.v0.2` shape.
//!
//! Verify and simulate call the native `POST /v1/verify` and `/v1/simulate` handlers
//! (token check, verdict, policy, budget, ledger, audit entry, receipt), revoke the
//! native `POST /v1/tokens/revoke` (by `policy_id`, `POST /v1/policies/revoke`),
//! receipts `GET /v1/receipts/{id}`, lint the native policy lint; this module only
//! translates the request and reshapes the answer.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bonafide_api::agents::RevokeToken;
use bonafide_api::verify::VerifyResponse;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::auth::{Caller, IssuerAuth};
use crate::cors;
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::routes::verify::{self, ResourceInput, VerifyRequest};
use crate::routes::{agents, meta, policies, receipts};
use crate::state::AppState;

/// Where the AgentOAuth surface lives: an AgentOAuth user's verifier URL
/// (`https://verifier.agentoauth.org`) becomes `https://<registry>/compat/agentoauth`.
pub const BASE: &str = "/compat/agentoauth";

/// The receipt format this surface shows (AgentOAuth's hosted verifier's).
const RECEIPT_VERSION: &str = "receipt.v0.2";

/// Most bytes of a native answer this surface reads back to reshape (a verify answer
/// is a few KB; the bound only keeps a bug from buffering without limit).
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The AgentOAuth routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/compat/agentoauth/verify", post(verify))
        .route("/compat/agentoauth/simulate", post(simulate))
        .route("/compat/agentoauth/revoke", post(revoke))
        .route("/compat/agentoauth/receipts/{id}", get(receipt))
        .route("/compat/agentoauth/lint/policy", post(lint_policy))
        .route("/compat/agentoauth/lint/token", post(lint_token))
        .route(
            "/compat/agentoauth/health",
            get(health).options(cors::preflight),
        )
        .route(
            "/compat/agentoauth/.well-known/jwks.json",
            get(meta::receipt_jwks).options(cors::preflight),
        )
        .route(
            "/compat/agentoauth/playground/issue-demo-token",
            post(super::playground::issue),
        )
        .route(
            "/compat/agentoauth/playground/.well-known/jwks.json",
            get(super::playground::jwks).options(cors::preflight),
        )
}

/// An error in AgentOAuth's shape: `error` and `code` as strings (the code in both;
/// `message` says why), `valid: false` where the route answers `valid`. Its status is
/// the native one, so a refusal stays a refusal.
pub(crate) fn refusal(e: ApiError, valid: bool) -> Response {
    let mut extra = Map::new();
    extra.insert("code".into(), Value::String(e.code.as_str().to_owned()));
    if valid {
        extra.insert("valid".into(), Value::Bool(false));
    }
    e.into_string_error_response(extra)
}

/// `POST /verify` and `/simulate` body: AgentOAuth's request members, each the
/// native one of the same name (unknown members are refused, as natively).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentOAuthRequest {
    /// The consent (or any agent) token.
    pub token: String,
    /// Who verifies: must be one of the token's audiences when it has any.
    #[serde(default)]
    pub audience: Option<String>,
    /// The action asked; AgentOAuth's verifier takes the token's `scope` when absent.
    #[serde(default)]
    pub action: Option<String>,
    /// `{type, id}`.
    #[serde(default)]
    pub resource: Option<ResourceInput>,
    /// A JSON number or decimal string, read exactly (never through a float).
    #[serde(default)]
    pub amount: Option<Box<RawValue>>,
    /// ISO 4217.
    #[serde(default)]
    pub currency: Option<Value>,
    /// Makes a retry answer the first decision without spending twice.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

impl AgentOAuthRequest {
    /// The native request. AgentOAuth's verifier evaluates a token's policy for
    /// `action || payload.scope`; for a token that carries a `policy`, its `scope`
    /// fills a missing `action` when it names exactly one scope (a token without a
    /// policy is asked nothing, as there). It is only the question asked: the token is
    /// then checked as always, and a forged or widened `scope` gains nothing (the
    /// policy in the same signed token decides).
    fn into_native(self) -> VerifyRequest {
        let action = self.action.or_else(|| single_scope(&self.token));
        VerifyRequest {
            token: self.token,
            audience: self.audience,
            target_resource: None,
            scopes_requested: None,
            action,
            resource: self.resource,
            amount: self.amount,
            currency: self.currency,
            idempotency_key: self.idempotency_key,
            proof: None,
        }
    }
}

/// A JWS's payload as a JSON object, without checking anything: for showing a token
/// the native check accepted, and for the `action` default above.
fn payload_of(token: &str) -> Option<Map<String, Value>> {
    let compact =
        bonafide_core::jws::Compact::split(token, bonafide_core::token::DEFAULT_MAX_TOKEN_BYTES)
            .ok()?;
    let bytes = bonafide_core::b64::decode(compact.payload_b64).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The `scope` of a token carrying a `policy`, when it names exactly one scope (a
/// string without spaces, or an array of one).
fn single_scope(token: &str) -> Option<String> {
    let mut payload = payload_of(token)?;
    payload.get("policy")?;
    match payload.remove("scope")? {
        Value::String(s) if !s.is_empty() && !s.contains(' ') => Some(s),
        Value::Array(mut a) if a.len() == 1 => match a.pop() {
            Some(Value::String(s)) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// A decimal the native answer wrote as text (`"1099.50"`), as a JSON number with
/// exactly those digits (AgentOAuth's amounts are numbers; through a float `1099.50`
/// would come out `1099.5`); the text as a string if it is not a number literal
/// (never the case for an amount the registry wrote).
fn exact_number(text: &str) -> Result<Box<RawValue>, ApiError> {
    let number = serde_json::from_str::<Value>(text).is_ok_and(|v| v.is_number());
    let raw = if number {
        RawValue::from_string(text.to_owned())
    } else {
        serde_json::value::to_raw_value(text)
    };
    raw.map_err(|e| ApiError::internal(format!("an amount of the native answer: {e}")))
}

/// `remaining` as AgentOAuth's verifier writes it beside a decision:
/// `{period: <amount left this period>, currency}`, with the period's end.
#[derive(Debug, Serialize)]
struct RemainingDecision {
    period: Box<RawValue>,
    currency: String,
    period_ends: String,
}

/// `remaining` in a `receipt.v0.2`.
#[derive(Debug, Serialize)]
struct RemainingReceipt {
    amount: Box<RawValue>,
    currency: String,
    period_ends: String,
}

/// `receipt.v0.2`'s members for one decision.
#[derive(Debug, Serialize)]
struct ReceiptV02 {
    version: &'static str,
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_id: Option<String>,
    decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    remaining: Option<RemainingReceipt>,
}

/// `policy_decision`.
#[derive(Debug, Serialize)]
struct PolicyDecision {
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// The registry's reason codes, in check order (`LIMIT_PER_TXN`, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remaining: Option<RemainingDecision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    receipt_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    receipt: Option<ReceiptV02>,
}

/// The verify and simulate answer.
#[derive(Debug, Serialize)]
struct Answer {
    valid: bool,
    decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<String>,
    policy_decision: PolicyDecision,
    #[serde(skip_serializing_if = "Option::is_none")]
    audit_index: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    simulation: bool,
    /// A token of the playground's demo issuer (AgentOAuth's marking).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    demo_token: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<&'static str>,
}

/// `ALLOW` or `DENY`, as AgentOAuth writes a decision.
fn decision_word(allowed: bool) -> &'static str {
    if allowed { "ALLOW" } else { "DENY" }
}

/// The native answer in AgentOAuth's shape. `payload` is shown only for a token the
/// native check found valid (never claims nobody vouched for).
fn shape(
    state: &AppState,
    answer: VerifyResponse,
    token: &str,
    simulation: bool,
) -> Result<Answer, ApiError> {
    let payload = answer.valid.then(|| payload_of(token)).flatten();
    let warning = super::playground::demo_warning(
        state,
        payload
            .as_ref()
            .and_then(|p| p.get("iss"))
            .and_then(Value::as_str),
    );
    let policy_id = payload
        .as_ref()
        .and_then(|p| p.get("policy"))
        .and_then(|p| p.get("id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let reason = answer
        .reason
        .clone()
        .or_else(|| answer.error.as_ref().map(|e| e.message.clone()));
    let timestamp = answer
        .verified_at
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|e| ApiError::internal(format!("the native answer's verified_at: {e}")))?;
    let (remaining, receipt_remaining) = match &answer.remaining {
        Some(r) => (
            Some(RemainingDecision {
                period: exact_number(&r.amount)?,
                currency: r.currency.clone(),
                period_ends: r.period_ends.clone(),
            }),
            Some(RemainingReceipt {
                amount: exact_number(&r.amount)?,
                currency: r.currency.clone(),
                period_ends: r.period_ends.clone(),
            }),
        ),
        None => (None, None),
    };
    let receipt = answer.receipt_id.as_ref().map(|id| ReceiptV02 {
        version: RECEIPT_VERSION,
        id: id.clone(),
        policy_id,
        decision: decision_word(answer.allowed),
        reason: reason.clone(),
        timestamp,
        remaining: receipt_remaining,
    });
    let (error, code) = match &answer.error {
        Some(e) => (Some(e.message.clone()), Some(e.code.as_str().to_owned())),
        None => (None, None),
    };
    Ok(Answer {
        valid: answer.valid,
        decision: decision_word(answer.allowed),
        payload,
        error,
        code,
        policy_decision: PolicyDecision {
            allowed: answer.allowed,
            reason,
            reasons: answer.reasons,
            remaining,
            receipt_id: answer.receipt_id,
            receipt,
        },
        audit_index: answer.audit_index,
        simulation,
        demo_token: warning.is_some(),
        warning,
    })
}

/// The status AgentOAuth's verifier answers a decision with: 200 allowed, 403 denied
/// (a valid token outside its grant, or one revoked or suspended), 400 for a token it
/// cannot accept. The body says the same in full either way.
fn decision_status(answer: &VerifyResponse) -> StatusCode {
    use bonafide_api::ErrorCode;
    match (&answer.error, answer.valid, answer.allowed) {
        (_, true, true) => StatusCode::OK,
        (_, true, false) => StatusCode::FORBIDDEN,
        (Some(e), false, _)
            if matches!(
                e.code,
                ErrorCode::TokenRevoked | ErrorCode::AgentRevoked | ErrorCode::AgentSuspended
            ) =>
        {
            StatusCode::FORBIDDEN
        }
        _ => StatusCode::BAD_REQUEST,
    }
}

/// The native answer's body read back as the api type (it is always 200 JSON when the
/// handler succeeds; an idempotent replay keeps its header).
async fn read_answer(resp: Response) -> Result<(VerifyResponse, Option<HeaderValue>), ApiError> {
    let replayed = resp.headers().get("idempotent-replayed").cloned();
    let bytes = axum::body::to_bytes(resp.into_body(), MAX_ANSWER_BYTES)
        .await
        .map_err(|e| ApiError::internal(format!("reading the native verify answer: {e}")))?;
    let answer = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::internal(format!("the native verify answer: {e}")))?;
    Ok((answer, replayed))
}

/// `POST /compat/agentoauth/verify`: the native `POST /v1/verify` (the same check,
/// decision, budget charge, audit entry and receipt), in AgentOAuth's shape.
pub async fn verify(
    state: State<Arc<AppState>>,
    caller: Result<Caller, ApiError>,
    body: Result<ApiJson<AgentOAuthRequest>, ApiError>,
) -> Response {
    let answer = async {
        let caller = caller?;
        let ApiJson(body) = body?;
        let token = body.token.clone();
        let native = verify::verify_post(
            State(Arc::clone(&state.0)),
            caller,
            ApiJson(body.into_native()),
        );
        let resp = super::playground::accepting_demo(&state, native).await?;
        let (answer, replayed) = read_answer(resp).await?;
        let status = decision_status(&answer);
        Ok::<_, ApiError>((status, shape(&state, answer, &token, false)?, replayed))
    }
    .await;
    match answer {
        Ok((status, v, replayed)) => {
            let mut resp = (status, ApiJson(v)).into_response();
            if let Some(h) = replayed {
                resp.headers_mut().insert("idempotent-replayed", h);
            }
            resp
        }
        Err(e) => refusal(e, true),
    }
}

/// `POST /compat/agentoauth/simulate`: the native `POST /v1/simulate` (decides
/// against the budget as it stands; records, spends and signs nothing).
pub async fn simulate(
    state: State<Arc<AppState>>,
    caller: Result<Caller, ApiError>,
    body: Result<ApiJson<AgentOAuthRequest>, ApiError>,
) -> Response {
    let answer = async {
        let caller = caller?;
        let ApiJson(body) = body?;
        let token = body.token.clone();
        let native = verify::simulate(
            State(Arc::clone(&state.0)),
            caller,
            ApiJson(body.into_native()),
        );
        let ApiJson(answer) = super::playground::accepting_demo(&state, native).await?;
        let status = decision_status(&answer);
        Ok::<_, ApiError>((status, shape(&state, answer, &token, true)?))
    }
    .await;
    match answer {
        Ok((status, v)) => (status, ApiJson(v)).into_response(),
        Err(e) => refusal(e, true),
    }
}

/// `POST /revoke` body: AgentOAuth's `{jti}` (the token's own `jti`, any kind of
/// token the caller's issuer signed, or a registry id), or the token itself; the
/// agent for a token the registry has never seen. Or AgentOAuth's `{policy_id}`:
/// every token carrying that consent policy, alone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentOAuthRevoke {
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    policy_id: Option<String>,
}

/// AgentOAuth's answer to a revocation by `policy_id`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PolicyRevokedAnswer {
    success: bool,
    #[serde(rename = "policy_id")]
    policy_id: String,
    revoked_at: String,
    already_revoked: bool,
}

/// `POST /compat/agentoauth/revoke`: the native `POST /v1/tokens/revoke` with the
/// issuer's key (AgentOAuth's is keyless; here only the token's issuer may revoke),
/// or for `{policy_id}` the native `POST /v1/policies/revoke` (the caller's own
/// policy of that id: another issuer's is another policy), answered as AgentOAuth
/// does (`{success, policy_id, revokedAt, alreadyRevoked}`).
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    issuer: Result<IssuerAuth, ApiError>,
    body: Result<ApiJson<AgentOAuthRevoke>, ApiError>,
) -> Response {
    let answer = async {
        let IssuerAuth(issuer) = issuer?;
        let ApiJson(body) = body?;
        if let Some(policy_id) = body.policy_id {
            if body.jti.is_some() || body.token.is_some() || body.agent_id.is_some() {
                return Err(ApiError::invalid(
                    "`policy_id` goes alone: revoke a token (`jti`, `token`) in another request",
                ));
            }
            let (record, first) = policies::revoke_policy(&state, &issuer, &policy_id).await?;
            return Ok::<_, ApiError>(
                ApiJson(PolicyRevokedAnswer {
                    success: true,
                    policy_id: record.policy_id,
                    revoked_at: crate::time::rfc3339_ms(record.revoked_at_ms),
                    already_revoked: !first,
                })
                .into_response(),
            );
        }
        let req = RevokeToken {
            jti: body.jti,
            token: body.token,
            agent_id: body.agent_id,
        };
        let ApiJson(r) =
            agents::revoke_token(State(state), IssuerAuth(issuer), ApiJson(req)).await?;
        Ok(ApiJson(r).into_response())
    }
    .await;
    match answer {
        Ok(r) => r,
        Err(e) => refusal(e, false),
    }
}

/// `GET /compat/agentoauth/receipts/{id}`: the native receipt read (the receiver that
/// asked or the agent's issuer, by key; anyone else a 404), answered as AgentOAuth
/// does, the signed receipt as `application/jwt`.
pub async fn receipt(
    state: State<Arc<AppState>>,
    caller: Result<Caller, ApiError>,
    path: Result<ApiPath<String>, ApiError>,
) -> Response {
    let answer = async {
        let caller = caller?;
        let path = path?;
        let ApiJson(view) = receipts::get(state, caller, path).await?;
        Ok::<_, ApiError>(view.jws)
    }
    .await;
    match answer {
        Ok(jws) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jwt"),
            )],
            jws,
        )
            .into_response(),
        Err(e) => refusal(e, false),
    }
}

/// `POST /compat/agentoauth/lint/policy`: the native lint (the one policy parser),
/// 400 with its errors when the policy is not valid, as AgentOAuth answers.
pub async fn lint_policy(body: Bytes) -> Response {
    match policies::lint(body).await {
        Ok(ApiJson(r)) if r.valid => ApiJson(r).into_response(),
        Ok(ApiJson(r)) => (StatusCode::BAD_REQUEST, ApiJson(r)).into_response(),
        Err(e) => refusal(e, true),
    }
}

/// `POST /lint/token` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LintToken {
    token: String,
}

/// `POST /compat/agentoauth/lint/token`: the token's header and claims decoded, as
/// AgentOAuth's lint does. Only the form is looked at (strict JSON, no duplicate
/// members); nothing is verified: `POST /verify` does that.
pub async fn lint_token(body: Result<ApiJson<LintToken>, ApiError>) -> Response {
    let answer = body.and_then(|ApiJson(LintToken { token })| {
        let compact = bonafide_core::jws::Compact::split(
            &token,
            bonafide_core::token::DEFAULT_MAX_TOKEN_BYTES,
        )
        .map_err(|e| ApiError::bad_request(format!("not a compact JWS: {e}")))?;
        let part = |name: &str, b64: &str| -> Result<Value, ApiError> {
            let bytes = bonafide_core::b64::decode(b64)
                .map_err(|_| ApiError::bad_request(format!("the {name} is not base64url")))?;
            bonafide_core::json::check(&bytes, bonafide_core::json::JsonLimits::default())
                .map_err(|e| ApiError::bad_request(format!("the {name}: {e}")))?;
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(v @ Value::Object(_)) => Ok(v),
                _ => Err(ApiError::bad_request(format!(
                    "the {name} is not a JSON object"
                ))),
            }
        };
        Ok(serde_json::json!({
            "valid": true,
            "verified": false,
            "header": part("header", compact.header_b64)?,
            "payload": part("payload", compact.payload_b64)?,
        }))
    });
    match answer {
        Ok(v) => ApiJson(v).into_response(),
        Err(e) => refusal(e, true),
    }
}

/// `GET /compat/agentoauth/health`: the native health check (the same store checks
/// and 503s), with AgentOAuth's `features` list and `endpoints` map.
pub async fn health(state: State<Arc<AppState>>) -> Response {
    match meta::health(state).await {
        Ok(ApiJson(h)) => {
            let f = &h.features;
            let mut features = vec!["act.v0.2", "act.v0.3"];
            for (on, name) in [
                (f.policies, "policy-eval"),
                (f.policies, "stateful-budgets"),
                (f.receipts, "receipts"),
                (f.audit_log, "audit-log"),
                (f.self_custody, "revocation-by-jti"),
            ] {
                if on {
                    features.push(name);
                }
            }
            ApiJson(serde_json::json!({
                "status": h.status,
                "service": "bonafide",
                "version": h.version,
                "features": features,
                "storage": f.storage,
                "endpoints": {
                    "verify": "POST /verify",
                    "simulate": "POST /simulate",
                    "revoke": "POST /revoke",
                    "receipts": "GET /receipts/:id",
                    "lint_policy": "POST /lint/policy",
                    "lint_token": "POST /lint/token",
                    "jwks": "GET /.well-known/jwks.json",
                },
            }))
            .into_response()
        }
        Err(e) => refusal(e, false),
    }
}
