//! ImaRobot under `/compat/imarobot`: the same paths as ImaRobot's API below that
//! base (`GET /v1/verify/{token}`, `POST /v1/agents/register`, issue-token,
//! `/.well-known/public-key.pem`, `/health`), answering in ImaRobot's shapes: a
//! verify answer is exactly `{valid, agent_id, name, issuer, scopes, expires_at,
//! verified_at}` or `{valid: false, error: "TOKEN_REVOKED" | "TOKEN_EXPIRED" |
//! "TOKEN_INVALID"}`, and every other error has `error` as a string.
//!
//! The verify calls the native `GET /v1/verify/{token}` handler (token check, verdict,
//! audit entry), registration and issue-token the functions the native routes call.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bonafide_api::ErrorCode;
use bonafide_api::verify::SimpleVerify;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::auth::{Caller, IssuerAuth};
use crate::cors;
use crate::error::{ApiError, ApiJson, ApiPath, JsonOrEmpty};
use crate::routes::agents::{self, FirstToken, IssueToken, RegisterAgent};
use crate::routes::meta;
use crate::routes::verify::{self, AudienceQuery};
use crate::state::AppState;

/// Where the ImaRobot surface lives: an ImaRobot user's base URL becomes
/// `https://<registry>/compat/imarobot`.
pub const BASE: &str = "/compat/imarobot";

/// The ImaRobot routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/compat/imarobot/v1/verify/{*token}",
            get(verify_get).options(cors::preflight),
        )
        .route("/compat/imarobot/v1/agents/register", post(register))
        .route(
            "/compat/imarobot/v1/agents/{id}/issue-token",
            post(issue_token),
        )
        .route(
            "/compat/imarobot/.well-known/public-key.pem",
            get(meta::public_key_pem).options(cors::preflight),
        )
        .route(
            "/compat/imarobot/health",
            get(meta::health).options(cors::preflight),
        )
}

/// ImaRobot's answer for a valid token: exactly these members.
#[derive(Debug, Serialize)]
struct Valid {
    valid: bool,
    agent_id: String,
    name: String,
    issuer: String,
    scopes: Vec<String>,
    expires_at: String,
    verified_at: String,
}

/// ImaRobot's answer for a token that is not valid: exactly these members.
#[derive(Debug, Serialize)]
struct Invalid {
    valid: bool,
    error: &'static str,
}

/// ImaRobot's three failure codes, from Bonafide's: a token that can never verify
/// again (revoked token, agent or issuer key; a suspended agent, for as long as it is
/// suspended) is `TOKEN_REVOKED`; one past its or its key's expiry `TOKEN_EXPIRED`;
/// every other refusal `TOKEN_INVALID`. The native code is in the audit entry and on
/// the native endpoint.
pub fn failure_code(code: &ErrorCode) -> &'static str {
    match code {
        ErrorCode::TokenRevoked | ErrorCode::AgentRevoked | ErrorCode::AgentSuspended => {
            "TOKEN_REVOKED"
        }
        ErrorCode::TokenExpired | ErrorCode::KeyExpired => "TOKEN_EXPIRED",
        _ => "TOKEN_INVALID",
    }
}

/// ImaRobot's shape of the native answer; `None` if a valid answer lacks a member
/// ImaRobot's has (then the caller refuses rather than invent one).
fn shape(v: SimpleVerify) -> Option<Response> {
    if !v.valid {
        let code = v
            .error
            .as_ref()
            .map_or("TOKEN_INVALID", |e| failure_code(&e.code));
        return Some(
            ApiJson(Invalid {
                valid: false,
                error: code,
            })
            .into_response(),
        );
    }
    // A delegated token: ImaRobot's answer can name only one agent and would present
    // the root as the one acting, so this surface refuses it (the native answer
    // carries the chain).
    if !v.delegation.is_empty() {
        return Some(
            ApiJson(Invalid {
                valid: false,
                error: "TOKEN_INVALID",
            })
            .into_response(),
        );
    }
    Some(
        ApiJson(Valid {
            valid: true,
            agent_id: v.agent_id?,
            name: v.name?,
            issuer: v.issuer?,
            scopes: v.scopes?,
            expires_at: v.expires_at?,
            verified_at: v.verified_at?,
        })
        .into_response(),
    )
}

/// An error that is not a verdict (a wrong key, a bad query, a store that cannot
/// audit): its own status, `valid: false` and the code as a string.
fn refusal(e: ApiError) -> Response {
    let mut extra = Map::new();
    extra.insert("valid".into(), Value::Bool(false));
    e.into_string_error_response(extra)
}

/// `GET /compat/imarobot/v1/verify/{token}`: the native `GET /v1/verify/{token}`
/// (same check, same audit entry), in ImaRobot's shape.
pub async fn verify_get(
    state: State<Arc<AppState>>,
    caller: Result<Caller, ApiError>,
    path: Result<ApiPath<String>, ApiError>,
    query: Result<Query<AudienceQuery>, QueryRejection>,
) -> Response {
    let answer = match (caller, path) {
        (Ok(caller), Ok(path)) => verify::verify_get(state, caller, path, query).await,
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    match answer {
        Ok(ApiJson(v)) => shape(v).unwrap_or_else(|| {
            refusal(ApiError::internal(
                "a valid verify answer without an ImaRobot member",
            ))
        }),
        Err(e) => refusal(e),
    }
}

/// The URLs an answer of this surface names, under its base.
fn urls(state: &AppState) -> (String, String) {
    let base = format!("{}{BASE}", state.config.public_url);
    (
        format!("{base}/v1/verify"),
        format!("{base}/.well-known/public-key.pem"),
    )
}

/// `POST /compat/imarobot/v1/agents/register`: the native registration (its body,
/// `issuer_domain` included, and every rule), its `verify_url` under this base.
pub async fn register(
    State(state): State<Arc<AppState>>,
    issuer: Result<IssuerAuth, ApiError>,
    body: Result<ApiJson<RegisterAgent>, ApiError>,
) -> Response {
    let answer = async {
        let IssuerAuth(issuer) = issuer?;
        let ApiJson(body) = body?;
        let r = agents::register_agent(&state, issuer, body, FirstToken::Bound).await?;
        let (verify_base, pem) = urls(&state);
        agents::registered_answer(r, verify_base, pem)
    }
    .await;
    match answer {
        Ok(a) => (StatusCode::CREATED, ApiJson(a)).into_response(),
        Err(e) => e.into_string_error_response(Map::new()),
    }
}

/// `POST /compat/imarobot/v1/agents/{id}/issue-token`: the native issue-token, its
/// `verify_url` under this base.
pub async fn issue_token(
    State(state): State<Arc<AppState>>,
    issuer: Result<IssuerAuth, ApiError>,
    path: Result<ApiPath<String>, ApiError>,
    body: Result<JsonOrEmpty<IssueToken>, ApiError>,
) -> Response {
    let answer = async {
        let IssuerAuth(issuer) = issuer?;
        let ApiPath(id) = path?;
        let JsonOrEmpty(body) = body?;
        let (token, record) = agents::issue_token_for(&state, &issuer, &id, body).await?;
        let (verify_base, _) = urls(&state);
        Ok::<_, ApiError>(agents::token_issued(token, &record, &verify_base))
    }
    .await;
    match answer {
        Ok(a) => (StatusCode::CREATED, ApiJson(a)).into_response(),
        Err(e) => e.into_string_error_response(Map::new()),
    }
}
