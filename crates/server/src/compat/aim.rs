//! AIM's signed-action call as its product page writes it (issue 21): `POST
//! /api/v1/agents/{id}/verify-action` with the agent's JWT as `Authorization: Bearer`,
//! a digit timestamp (number or string) and a standard-base64 nonce. It is the native
//! `POST /v1/agents/{id}/verify-action` (the same verdict, nonce claim and audit
//! entry); what differs is only what AIM's clients send and expect:
//! - a bearer that is a compact JWS is the agent's own token, which AIM's example
//!   sends and which proves nothing here (the signature does): it is ignored, as no
//!   key, instead of being refused as a wrong key;
//! - `timestamp` may be a string of digits;
//! - a refusal is HTTP 403 (AIM's clients branch on the status), with the same body.

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::routes::verify_action::{self, VerifyActionRequest};
use crate::state::AppState;

/// AIM's route, merged into [`crate::compat::routes`].
pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/api/v1/agents/{id}/verify-action", post(verify))
}

/// AIM's body: the native one, with `timestamp` a number or a string of digits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AimAction {
    action: String,
    resource: String,
    signature: String,
    timestamp: Timestamp,
    nonce: String,
    #[serde(default)]
    public_key: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Timestamp {
    Number(i64),
    Text(String),
}

impl Timestamp {
    fn seconds(&self) -> Result<i64, ApiError> {
        match self {
            Timestamp::Number(n) => Ok(*n),
            Timestamp::Text(t)
                if !t.is_empty() && t.len() <= 18 && t.bytes().all(|b| b.is_ascii_digit()) =>
            {
                t.parse()
                    .map_err(|_| ApiError::invalid("`timestamp` must be Unix seconds"))
            }
            Timestamp::Text(_) => Err(ApiError::invalid(
                "`timestamp` must be Unix seconds: a number, or a string of digits",
            )),
        }
    }
}

/// Who called: a Bonafide API key when one is presented (a wrong or malformed one is
/// a 401, as natively). Only a bearer that is a compact JWS (three dot-separated
/// segments: the agent's own token, which AIM's example sends) is ignored; anything
/// else goes through the native key check, so a mistyped key is told, not dropped.
async fn caller(parts: &mut Parts, state: &Arc<AppState>) -> Result<Caller, ApiError> {
    let agent_token = !parts.headers.contains_key("x-api-key")
        && parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .is_some_and(|(scheme, rest)| {
                scheme.eq_ignore_ascii_case("bearer") && rest.trim().split('.').count() == 3
            });
    if agent_token {
        // An access token issued for an API key is that key (counted and limited as
        // it); any other JWS is the agent's own token, ignored here.
        if let Ok(crate::auth::Credential::Key(record)) =
            crate::auth::credential(parts, state).await
        {
            return crate::auth::caller_of_record(&record);
        }
        return Ok(Caller::Anonymous);
    }
    Caller::from_request_parts(parts, state).await
}

async fn verify(
    State(state): State<Arc<AppState>>,
    mut parts: Parts,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AimAction>,
) -> Result<Response, ApiError> {
    let caller = caller(&mut parts, &state).await?;
    let req = VerifyActionRequest {
        timestamp: body.timestamp.seconds()?,
        action: body.action,
        resource: body.resource,
        nonce: body.nonce,
        signature: body.signature,
        public_key: body.public_key,
    };
    let ApiJson(answer) =
        verify_action::verify_action(State(state), caller, ApiPath(id), ApiJson(req)).await?;
    let status = if answer.allowed {
        StatusCode::OK
    } else {
        StatusCode::FORBIDDEN
    };
    Ok((status, ApiJson(answer)).into_response())
}
