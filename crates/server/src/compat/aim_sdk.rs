//! The aim-sdk (Python, 2.x) Tier 1 surface (issue 21): what `secure(name)` and
//! `@agent.perform_action(...)` call, so an AIM user keeps the SDK unchanged and
//! points it at Bonafide.
//!
//! - `POST /api/v1/sdk-api/verifications`: the SDK signs, with the agent's Ed25519
//!   key, Python's `json.dumps({action_type, agent_id, context, resource, timestamp},
//!   sort_keys=True, separators=(", ", ": "))`. The message is rebuilt here from the
//!   body ([`python_dumps`]) and handed to the native signed-action verdict
//!   (`verdict::action`): the same window, registered keys (never the `publicKey` the
//!   SDK sends), standing, scopes and policy, and the same audit entry and single-use
//!   claim (the message's hash stands for the nonce the SDK does not send). Allowed:
//!   201; refused: 403 with `denialReason`; not signed by the agent: 401.
//! - `GET /api/v1/sdk-api/verifications/{id}`: the SDK's signed poll. A verification
//!   has a random id (`ver_` and 22 base64url characters) mapped to its audit entry,
//!   read back for the agent that signed the poll only.
//! - `POST …/verifications/{id}/result` and `…/execution-status`: the SDK's unsigned
//!   reports of how the action went. Holding the random id (only the agent was told
//!   it) is what lets a caller report; one report of each kind is kept beside the
//!   decision (a retry is accepted, a different second report is a 409), shown by the
//!   poll, and dropped with the receipts (`--receipt-retention`).
//! - `POST /api/v1/sdk-api/agents/{id}/capabilities/register`: signed; it grants
//!   nothing (scopes are granted by the agent's issuer) and says so.
//! - `GET /api/v1/agents/{id}`: what the SDK checks cached credentials with: 404 only
//!   for an agent the registry does not know.
//!
//! Every error under these paths has a string `error` (the SDK calls `.lower()` on
//! it), and every other `/api/v1/…` path is a 404 of that shape.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use bonafide_core::audit::{AuditEntry, Decision, EventType};
use bonafide_core::ids::AgentId;
use bonafide_core::keys::{Algorithm, KeyValidity};
use bonafide_store::{NewSdkVerification, ReportOutcome, SdkReportKind, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiPath, ErrorCode};
use crate::routes::verify_action::{self, Spend};
use crate::state::AppState;
use crate::verdict::Standing;
use crate::verdict::action::{self, Act, Refusal};

/// The SDK's routes, merged into [`crate::compat::routes`].
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/sdk-api/verifications", post(create))
        .route("/api/v1/sdk-api/verifications/{id}", get(poll))
        .route(
            "/api/v1/sdk-api/verifications/{id}/result",
            post(report_result),
        )
        .route(
            "/api/v1/sdk-api/verifications/{id}/execution-status",
            post(report_execution),
        )
        .route(
            "/api/v1/sdk-api/agents/{id}/capabilities/register",
            post(register_capability),
        )
        .route("/api/v1/agents/{id}", get(agent))
        // Every other `/api/v1` path (the products' own routes match first).
        .route("/api/v1/{*rest}", any(not_served))
}

/// AIM's organisations choose "strict" or "monitoring"; Bonafide only enforces.
const ENFORCEMENT_MODE: &str = "strict";

/// The prefix of a verification id: 16 random bytes in base64url follow.
const ID_PREFIX: &str = "ver_";

/// Most characters of a report's free text (`result_summary`, `error_message`,
/// `executionError`): a report is a note beside a decision, not a log.
const MAX_REPORT_TEXT: usize = 2048;

/// An error in AIM's shape: `error` a string (the code), `message`, `request_id`,
/// and `extra` beside them.
#[derive(Debug)]
pub struct AimError {
    error: ApiError,
    extra: Map<String, Value>,
}

impl AimError {
    fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }
}

impl From<ApiError> for AimError {
    fn from(error: ApiError) -> Self {
        AimError {
            error,
            extra: Map::new(),
        }
    }
}

impl From<StoreError> for AimError {
    fn from(e: StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for AimError {
    fn into_response(self) -> Response {
        self.error.into_string_error_response(self.extra)
    }
}

/// A refusal before the signature checked out: 401, its code as `reason`.
fn unauthenticated(refusal: Refusal) -> AimError {
    AimError::from(ApiError::unauthorized(refusal.message)).with("reason", refusal.code)
}

/// `POST /api/v1/sdk-api/verifications` body, as aim-sdk 2.x sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SdkVerification {
    agent_id: String,
    capability: String,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    context: Option<Map<String, Value>>,
    /// `datetime.utcnow().isoformat() + "Z"`.
    timestamp: String,
    signature: String,
    /// Ignored: only the agent's registered keys verify.
    #[serde(default)]
    #[allow(dead_code)]
    public_key: Option<Value>,
    /// Ignored: the verdict does not read it.
    #[serde(default)]
    #[allow(dead_code)]
    risk_level: Option<Value>,
}

/// AIM's verification answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Verification {
    id: String,
    /// `approved` or `denied`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    denial_reason: Option<String>,
    enforcement_mode: &'static str,
    /// The refusal's code (Bonafide's), when denied.
    reasons: Vec<String>,
    /// The decision's audit entry.
    audit_index: u64,
    /// The SDK's `result` report, once made (poll only).
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
    /// The SDK's `execution-status` report, once made (poll only).
    #[serde(skip_serializing_if = "Option::is_none")]
    execution_status: Option<Value>,
}

impl Verification {
    fn respond(self) -> Response {
        let status = if self.status == "approved" {
            StatusCode::CREATED
        } else {
            StatusCode::FORBIDDEN
        };
        (status, ApiJson(self)).into_response()
    }
}

fn parse_agent(text: &str) -> Result<AgentId, AimError> {
    AgentId::try_from(text).map_err(|_| ApiError::not_found("agent").into())
}

/// `POST /api/v1/sdk-api/verifications`: the signed-action verdict on what the SDK
/// signed; 201 approved, 403 denied (with the verification in the body), 401 when
/// the agent did not sign it.
async fn create(
    State(state): State<Arc<AppState>>,
    caller: Result<Caller, ApiError>,
    body: Result<ApiJson<SdkVerification>, ApiError>,
) -> Result<Response, AimError> {
    let caller = caller?;
    let ApiJson(req) = body?;
    verify_action::check_action("capability", &req.capability)?;
    // Counted against the receiver's organisation as the native verify-action is.
    let counting = crate::quota::counting(&state, &caller).await?;
    // An empty resource is the SDK's "none" as AIM reads it.
    let resource = req.resource.as_deref().filter(|r| !r.is_empty());
    if resource.is_some_and(|r| !verify_action::resource_in_bounds(r)) {
        return Err(ApiError::invalid(
            "`resource` must be at most 256 characters, no control, invisible or bidirectional-control characters",
        )
        .into());
    }
    let timestamp_s = req
        .timestamp
        .parse::<jiff::Timestamp>()
        .map_err(|_| {
            ApiError::invalid(
                "`timestamp` must be an RFC 3339 time such as 2026-01-02T03:04:05.123456Z",
            )
        })?
        .as_second();
    let id = parse_agent(&req.agent_id)?;
    let agent = state
        .agent_record(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    let now = state.now_ms();
    let mut signed = Map::new();
    signed.insert("action_type".into(), req.capability.clone().into());
    signed.insert("agent_id".into(), req.agent_id.clone().into());
    signed.insert(
        "context".into(),
        Value::Object(req.context.clone().unwrap_or_default()),
    );
    signed.insert(
        "resource".into(),
        req.resource.clone().map_or(Value::Null, Value::String),
    );
    signed.insert("timestamp".into(), req.timestamp.clone().into());
    let message = python_dumps(&Value::Object(signed)).map_err(|e| {
        AimError::from(ApiError::unauthorized(format!(
            "the signed request cannot be rebuilt: {e}"
        )))
        .with("reason", "SIGNATURE_INVALID")
    })?;
    let keys = state.agent_keys(&id).await?;
    if let Err(refusal) =
        action::authenticate_message(&keys, message.as_bytes(), &req.signature, timestamp_s, now)
    {
        state.count_unverifiable(refusal.code);
        // A verification answered (its refusal), as the native verify-action counts it.
        counting.alone(&state).await?;
        return Err(unauthenticated(refusal));
    }
    let policy = verify_action::stored_policy(&agent)?;
    let view = state.view();
    let act = Act {
        agent: &id,
        action: &req.capability,
        resource,
    };
    let verdict = action::judge_act(
        &view,
        &agent.scopes,
        policy.as_ref(),
        &agent.issuer_id,
        &act,
        now,
    );
    // The SDK sends no nonce: the signed message is single use instead (`:` keeps it
    // apart from every `verify-action` nonce, which may not contain one).
    let nonce = format!(
        "aim-sdk:{}",
        bonafide_core::b64::encode(&bonafide_core::sha256(message.as_bytes()))
    );
    let decided = verify_action::record_verdict(
        &state,
        &caller,
        &id,
        &req.capability,
        now,
        verdict,
        Spend {
            nonce: &nonce,
            timestamp_s,
            counting: &counting,
        },
    )
    .await?;
    let audit_index = decided
        .audit_index
        .ok_or_else(|| ApiError::internal("a signed action's decision has no audit index"))?;
    let verification_id = format!(
        "{ID_PREFIX}{}",
        bonafide_core::b64::encode(&crate::routes::random16()?)
    );
    // The decision is durable already (its audit entry); without this record the SDK
    // could not poll or report on it, so a failure here is the answer's failure.
    state
        .store
        .record_sdk_verification(&NewSdkVerification {
            id_sha256: bonafide_core::sha256(verification_id.as_bytes()),
            audit_index,
            agent_id: id.clone(),
            created_at_ms: now,
        })
        .await?;
    let allowed = decided.code.is_none();
    Ok(Verification {
        id: verification_id,
        status: if allowed { "approved" } else { "denied" },
        denial_reason: (!allowed).then_some(decided.message),
        enforcement_mode: ENFORCEMENT_MODE,
        reasons: decided.code.map(str::to_owned).into_iter().collect(),
        audit_index,
        result: None,
        execution_status: None,
    }
    .respond())
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Unix seconds in a header: digits only.
fn header_seconds(text: &str) -> Option<i64> {
    (!text.is_empty() && text.len() <= 18 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// Checks a request the SDK signed in its headers: `agent_header`, `time_header`
/// and `sig_header` carry the agent, Unix seconds and the signature over the
/// message `layout` makes from the agent id and the time. Returns the agent.
async fn signed_by(
    state: &AppState,
    headers: &HeaderMap,
    [agent_header, time_header, sig_header]: [&str; 3],
    layout: impl FnOnce(&str, &str) -> String,
) -> Result<(AgentId, Arc<bonafide_store::Agent>), AimError> {
    let (Some(agent_text), Some(ts), Some(signature)) = (
        header(headers, agent_header),
        header(headers, time_header),
        header(headers, sig_header),
    ) else {
        return Err(ApiError::unauthorized(format!(
            "this call must be signed by the agent: {agent_header}, {time_header} and {sig_header}"
        ))
        .into());
    };
    let Some(timestamp_s) = header_seconds(ts) else {
        return Err(ApiError::unauthorized(format!("{time_header} must be Unix seconds")).into());
    };
    let id = parse_agent(agent_text)?;
    let agent = state
        .agent_record(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    let keys = state.agent_keys(&id).await?;
    let message = layout(agent_text, ts);
    if let Err(refusal) = action::authenticate_message(
        &keys,
        message.as_bytes(),
        signature,
        timestamp_s,
        state.now_ms(),
    ) {
        state.count_unverifiable(refusal.code);
        return Err(unauthenticated(refusal));
    }
    Ok((id, agent))
}

/// The stored verification a presented id names; `None` for an id of the wrong shape
/// or one never given (or purged).
async fn stored(
    state: &AppState,
    vid: &str,
) -> Result<Option<bonafide_store::SdkVerification>, StoreError> {
    let well_formed = vid.strip_prefix(ID_PREFIX).is_some_and(|rest| {
        rest.len() == 22
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if !well_formed {
        return Ok(None);
    }
    state
        .store
        .sdk_verification(&bonafide_core::sha256(vid.as_bytes()))
        .await
}

/// A stored report's JSON, for the poll (a row the server wrote is always JSON).
fn report_json(report: Option<&bonafide_store::SdkReport>) -> Option<Value> {
    report.and_then(|r| serde_json::from_str(&r.body).ok())
}

/// `GET /api/v1/sdk-api/verifications/{id}`: the SDK's poll, signed over
/// `GET\n/api/v1/sdk-api/verifications/{id}\n{agent}\n{ts}`; the verification's
/// decision as its audit entry records it, with the reports made since, to the agent
/// it concerns only (anything else: 404).
async fn poll(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    path: Result<ApiPath<String>, ApiError>,
) -> Result<Response, AimError> {
    let ApiPath(vid) = path?;
    let (id, _) = signed_by(
        &state,
        &headers,
        ["x-aim-agent-id", "x-aim-timestamp", "x-aim-signature"],
        |agent, ts| format!("GET\n/api/v1/sdk-api/verifications/{vid}\n{agent}\n{ts}"),
    )
    .await?;
    let missing = || AimError::from(ApiError::not_found("verification"));
    let verification = stored(&state, &vid)
        .await?
        .filter(|v| v.record.agent_id == id)
        .ok_or_else(missing)?;
    let index = verification.record.audit_index;
    let rows = state
        .audit
        .entries(index, index.saturating_add(1))
        .await
        .map_err(crate::routes::audit::read_error)?;
    let entry = rows
        .first()
        .filter(|row| row.index == index)
        .and_then(|row| AuditEntry::from_canonical(&row.entry).ok())
        .filter(|e| e.event == EventType::Verify && e.agent.as_deref() == Some(id.as_str()))
        .ok_or_else(|| {
            AimError::from(ApiError::internal(
                "a verification's audit entry is missing or is not its decision",
            ))
        })?;
    let allowed = entry.decision == Some(Decision::Allow);
    Ok((
        StatusCode::OK,
        ApiJson(Verification {
            id: vid,
            status: if allowed { "approved" } else { "denied" },
            denial_reason: (!allowed).then(|| entry.reasons.join(", ")),
            enforcement_mode: ENFORCEMENT_MODE,
            reasons: entry.reasons,
            audit_index: index,
            result: report_json(verification.result.as_ref()),
            execution_status: report_json(verification.execution.as_ref()),
        }),
    )
        .into_response())
}

/// `POST …/verifications/{id}/result` body, as aim-sdk 2.x sends it.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ResultReport {
    /// `success` or `failure`.
    result: String,
    #[serde(default)]
    result_summary: Option<String>,
    #[serde(default)]
    error_message: Option<String>,
    /// When the SDK says the action finished (RFC 3339).
    timestamp: String,
}

/// `POST …/verifications/{id}/execution-status` body, as aim-sdk 2.x sends it.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ExecutionReport {
    /// Whether the wrapped function ran.
    executed: bool,
    /// Whether the SDK enforced the decision (`AIM_STRICT_MODE`).
    strict_mode: bool,
    /// When (RFC 3339).
    executed_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    execution_error: Option<String>,
}

fn check_report_time(name: &str, text: &str) -> Result<(), ApiError> {
    text.parse::<jiff::Timestamp>().map(|_| ()).map_err(|_| {
        ApiError::invalid(format!(
            "`{name}` must be an RFC 3339 time such as 2026-01-02T03:04:05.123456+00:00"
        ))
    })
}

fn check_report_text(name: &str, text: Option<&str>) -> Result<(), ApiError> {
    match text {
        Some(t) if t.chars().count() > MAX_REPORT_TEXT => Err(ApiError::invalid(format!(
            "`{name}` must be at most {MAX_REPORT_TEXT} characters"
        ))),
        _ => Ok(()),
    }
}

/// Records a report about the verification `vid` names: 200 when recorded (or the
/// same report again), 404 for an id never given, 409 when a different report of the
/// kind came first (it stays).
async fn record_report(
    state: &AppState,
    vid: &str,
    kind: SdkReportKind,
    body: String,
) -> Result<Response, AimError> {
    let missing = || AimError::from(ApiError::not_found("verification"));
    if stored(state, vid).await?.is_none() {
        return Err(missing());
    }
    let outcome = state
        .store
        .report_sdk_verification(
            &bonafide_core::sha256(vid.as_bytes()),
            kind,
            &body,
            state.now_ms(),
        )
        .await?;
    let recorded = match outcome {
        ReportOutcome::Recorded => true,
        ReportOutcome::AlreadyRecorded => false,
        ReportOutcome::UnknownVerification => return Err(missing()),
        ReportOutcome::Conflict => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::Conflict,
                "another report of this kind was recorded for this verification first; it stays",
            )
            .into());
        }
    };
    let answer = serde_json::json!({"id": vid, "recorded": recorded});
    Ok((StatusCode::OK, ApiJson(answer)).into_response())
}

/// `POST /api/v1/sdk-api/verifications/{id}/result`: how the action went.
async fn report_result(
    State(state): State<Arc<AppState>>,
    path: Result<ApiPath<String>, ApiError>,
    body: Result<ApiJson<ResultReport>, ApiError>,
) -> Result<Response, AimError> {
    let ApiPath(vid) = path?;
    let ApiJson(report) = body?;
    if !matches!(report.result.as_str(), "success" | "failure") {
        return Err(ApiError::invalid("`result` must be `success` or `failure`").into());
    }
    check_report_text("result_summary", report.result_summary.as_deref())?;
    check_report_text("error_message", report.error_message.as_deref())?;
    check_report_time("timestamp", &report.timestamp)?;
    let body = serde_json::to_string(&report)
        .map_err(|_| ApiError::internal("a report could not be written as JSON"))?;
    record_report(&state, &vid, SdkReportKind::Result, body).await
}

/// `POST /api/v1/sdk-api/verifications/{id}/execution-status`: whether it ran.
async fn report_execution(
    State(state): State<Arc<AppState>>,
    path: Result<ApiPath<String>, ApiError>,
    body: Result<ApiJson<ExecutionReport>, ApiError>,
) -> Result<Response, AimError> {
    let ApiPath(vid) = path?;
    let ApiJson(report) = body?;
    check_report_text("executionError", report.execution_error.as_deref())?;
    check_report_time("executedAt", &report.executed_at)?;
    let body = serde_json::to_string(&report)
        .map_err(|_| ApiError::internal("a report could not be written as JSON"))?;
    record_report(&state, &vid, SdkReportKind::Execution, body).await
}

/// `capabilities/register` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CapabilityRegister {
    capability_type: String,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    risk_level: Option<String>,
}

/// `POST /api/v1/sdk-api/agents/{id}/capabilities/register`, signed over
/// `POST\n{path}\n{ts}\n{body}`: a capability the agent already holds is
/// `already_exists`; any other is refused (403), since only the agent's issuer
/// grants scopes. Nothing is written either way.
async fn register_capability(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    path: Result<ApiPath<String>, ApiError>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, AimError> {
    let ApiPath(path_id) = path?;
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                "request body is too large",
            )
        } else {
            ApiError::bad_request("request body could not be read")
        }
    })?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("request body is not UTF-8"))?;
    let endpoint = format!("/api/v1/sdk-api/agents/{path_id}/capabilities/register");
    let (id, agent) = signed_by(
        &state,
        &headers,
        ["x-agent-id", "x-timestamp", "x-signature"],
        |_, ts| {
            if text.is_empty() {
                format!("POST\n{endpoint}\n{ts}")
            } else {
                format!("POST\n{endpoint}\n{ts}\n{text}")
            }
        },
    )
    .await?;
    if id.as_str() != path_id {
        return Err(ApiError::forbidden("an agent registers capabilities for itself only").into());
    }
    let req: CapabilityRegister = serde_json::from_str(text).map_err(|e| {
        ApiError::invalid(format!(
            "invalid request body: {}",
            e.to_string()
                .rsplit_once(" at line ")
                .map_or(e.to_string(), |(m, _)| m.to_owned())
        ))
    })?;
    if agent.scopes.contains(&req.capability_type) {
        let answer = serde_json::json!({
            "capabilityType": req.capability_type,
            "status": "already_exists",
            "message": "granted by the agent's issuer",
        });
        return Ok((StatusCode::OK, ApiJson(answer)).into_response());
    }
    Err(AimError::from(ApiError::forbidden(format!(
        "`{}` is not one of this agent's scopes: Bonafide never grants a scope at an agent's request; the agent's issuer grants scopes",
        req.capability_type
    )))
    .with("status", "not_granted")
    .with("capabilityType", req.capability_type))
}

/// `GET /api/v1/agents/{id}`: 404 only for an agent the registry does not know.
/// Its issuer (or an admin) sees its name and scopes; anyone else what the public
/// DID document shows (status, key); another issuer's key is a 403.
async fn agent(
    State(state): State<Arc<AppState>>,
    caller: Result<Caller, ApiError>,
    path: Result<ApiPath<String>, ApiError>,
) -> Result<Response, AimError> {
    let caller = caller?;
    let ApiPath(text) = path?;
    let id = parse_agent(&text)?;
    let agent = state
        .agent_record(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    let full = match &caller {
        Caller::Admin => true,
        Caller::Issuer(issuer) if *issuer == agent.issuer_id => true,
        Caller::Issuer(_) => {
            return Err(ApiError::forbidden("this agent belongs to another issuer").into());
        }
        Caller::Anonymous | Caller::Receiver(_) => false,
    };
    let view = state.view();
    let status = if view.agent_revoked(&id) {
        "revoked"
    } else if view.suspended(&id) {
        "suspended"
    } else {
        "active"
    };
    let now = state.now_ms();
    let keys = state.agent_keys(&id).await?;
    // The SDK's encoding of a key: standard base64 of the 32 raw bytes.
    let public_key = keys
        .iter()
        .filter(|k| {
            k.key.alg() == Algorithm::EdDSA
                && KeyValidity::agent_key(k.record.expires_at_ms, k.record.grace_until_ms)
                    .usable(now)
        })
        .find_map(|k| k.key.jwk().x.as_deref())
        .and_then(|x| bonafide_core::b64::decode(x).ok())
        .map(|raw| std_base64(&raw));
    let mut answer = serde_json::json!({
        "id": id.as_str(),
        "status": status,
        "publicKey": public_key,
    });
    if let (true, Some(obj)) = (full, answer.as_object_mut()) {
        obj.insert("name".into(), agent.name.clone().into());
        obj.insert("capabilities".into(), agent.scopes.clone().into());
        obj.insert(
            "createdAt".into(),
            crate::time::rfc3339_ms(agent.created_at_ms).into(),
        );
    }
    Ok((StatusCode::OK, ApiJson(answer)).into_response())
}

/// Any other `/api/v1/…` path: a 404 in the SDK's shape.
async fn not_served() -> AimError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "Bonafide does not serve this call under /api/v1 (see the README's \"Moving from another product\")",
    )
    .into()
}

/// Standard, padded base64 (the SDK's alphabet), from core's base64url.
fn std_base64(bytes: &[u8]) -> String {
    let mut out: String = bonafide_core::b64::encode(bytes)
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !out.len().is_multiple_of(4) {
        out.push('=');
    }
    out
}

/// Why a value has no Python `json.dumps` text this adapter can reproduce.
#[derive(Debug, thiserror::Error)]
pub enum DumpsError {
    /// A number JSON allows but Python would have read otherwise (an integer beyond
    /// 64 bits, which Python keeps exact).
    #[error("the number {0} cannot be reproduced as Python wrote it")]
    Number(String),
}

/// Python's `json.dumps(value, sort_keys=True, separators=(", ", ": "))` with its
/// defaults (`ensure_ascii=True`): the bytes aim-sdk signs.
pub fn python_dumps(value: &Value) -> Result<String, DumpsError> {
    let mut out = String::new();
    dump(value, &mut out)?;
    Ok(out)
}

fn dump(value: &Value, out: &mut String) -> Result<(), DumpsError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else {
                let f = n
                    .as_f64()
                    .ok_or_else(|| DumpsError::Number(n.to_string()))?;
                out.push_str(&python_float(f).ok_or_else(|| DumpsError::Number(n.to_string()))?);
            }
        }
        Value::String(s) => dump_str(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                dump(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Python sorts by code point; UTF-8 byte order is the same order.
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                dump_str(key, out);
                out.push_str(": ");
                if let Some(v) = map.get(key) {
                    dump(v, out)?;
                }
            }
            out.push('}');
        }
    }
    Ok(())
}

/// A string as `json.dumps` writes it with `ensure_ascii`: everything outside
/// `' '..='~'` escaped, `\uXXXX` in lower-case hex (surrogate pairs above U+FFFF).
fn dump_str(s: &str, out: &mut String) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    // Writing to a String cannot fail.
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: the shortest digits that read back as the same double,
/// in fixed notation for exponents -5 < e < 16 (with `.0` when integral), else
/// `d.ddde±XX`. `None` for NaN and infinities (not JSON).
fn python_float(f: f64) -> Option<String> {
    if !f.is_finite() {
        return None;
    }
    // Rust's `{:e}` gives the same shortest round-trip digits: `1.5e-7`, `-2e0`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e')?;
    let exp: i32 = exp.parse().ok()?;
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::from(sign);
    if !(-5 < exp && exp < 16) {
        let (first, rest) = digits.split_at_checked(1)?;
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.unsigned_abs()));
        return Some(out);
    }
    let point = exp + 1; // digits before the decimal point
    if point <= 0 {
        out.push_str("0.");
        out.push_str(&"0".repeat(point.unsigned_abs() as usize));
        out.push_str(&digits);
    } else {
        let point = point as usize;
        if digits.len() <= point {
            out.push_str(&digits);
            out.push_str(&"0".repeat(point - digits.len()));
            out.push_str(".0");
        } else {
            let (whole, fraction) = digits.split_at_checked(point)?;
            out.push_str(whole);
            out.push('.');
            out.push_str(fraction);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_read_as_python_writes_them() {
        for (f, text) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123456.789, "123456.789"),
            (-0.0, "-0.0"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ] {
            assert_eq!(python_float(f).as_deref(), Some(text), "{f}");
        }
        assert_eq!(python_float(f64::NAN), None);
    }

    #[test]
    fn dumps_matches_python_sorted_spaced_and_ascii_only() {
        // Python: json.dumps({"b": [1, 2.5, None, True], "a": "é\u2028😀\"\\\n\x7f", "c": {}},
        //                    sort_keys=True, separators=(", ", ": "))
        let v: Value =
            serde_json::from_str(r#"{"b": [1, 2.5, null, true], "a": "é\u2028😀\"\\\n", "c": {}}"#)
                .unwrap();
        let mut v = v;
        if let Some(Value::String(s)) = v.get_mut("a") {
            s.push('\u{7f}');
        }
        assert_eq!(
            python_dumps(&v).unwrap(),
            r#"{"a": "\u00e9\u2028\ud83d\ude00\"\\\n\u007f", "b": [1, 2.5, null, true], "c": {}}"#
        );
    }

    #[test]
    fn std_base64_is_padded() {
        assert_eq!(std_base64(&[0xfb, 0xff]), "+/8=");
        assert_eq!(std_base64(&[1, 2, 3]), "AQID");
    }
}
