//! KairosAI Identity at its own paths (`/api/v1/…`, `/api/badge/verified.svg`,
//! `/verified`), so a KairosAI user changes only the host and the key.
//!
//! - `POST /api/v1/verify` is the native `POST /v1/verify` (which already takes
//!   `target_resource` and `scopes_requested` and answers `allowed` and
//!   `agent.{did,active_scopes}`), plus `decision`: `ALLOWED`, `REVOKED`, `EXPIRED` or
//!   `DENIED`, from the native answer's codes.
//! - `POST /api/v1/agents/register` is the native registration with `capabilities` as
//!   scopes and `signing_key_pub` + `key_algorithm` as the agent's key. KairosAI always
//!   sends a key, and its plain `/verify` carries no proof; so the first token is
//!   unbound (the agent accepts bearer tokens) unless the issuer sends `"bind_token":
//!   true`, which binds it to the key as the native registration does.
//! - The verified badge and its page are static: they say the site verifies agents
//!   with this registry.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bonafide_api::ErrorCode;
use serde::{Deserialize, Serialize};

use crate::auth::{Caller, IssuerAuth};
use crate::cors;
use crate::error::{ApiError, ApiJson};
use crate::routes::agents::{self, FirstToken, RegisterAgent};
use crate::routes::meta;
use crate::routes::verify::{self, VerifyRequest};
use crate::state::AppState;
use crate::time::rfc3339_ms;

/// The KairosAI routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/verify", post(verify_post))
        .route(
            "/api/v1/.well-known/jwks.json",
            get(meta::jwks).options(cors::preflight),
        )
        .route("/api/v1/agents/register", post(register))
        .route("/api/badge/verified.svg", get(badge))
        .route("/verified", get(verified_page))
}

/// KairosAI's `decision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Decision {
    /// Valid token, every scope asked granted, policy passed.
    Allowed,
    /// Anything else refused.
    Denied,
    /// The token, its agent or its issuer key is revoked.
    Revoked,
    /// The token or its key is past its expiry.
    Expired,
}

impl Decision {
    /// From a native verify answer: `allowed`, else its error's code (a token that
    /// checked out but was refused for its scopes or policy has none: `DENIED`).
    pub fn of(allowed: bool, code: Option<&ErrorCode>) -> Decision {
        match (allowed, code) {
            (true, _) => Decision::Allowed,
            (false, Some(ErrorCode::TokenRevoked | ErrorCode::AgentRevoked)) => Decision::Revoked,
            (false, Some(ErrorCode::TokenExpired | ErrorCode::KeyExpired)) => Decision::Expired,
            (false, _) => Decision::Denied,
        }
    }
}

/// Largest native verify answer read back (they are a few KiB).
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// `POST /api/v1/verify`: the native `POST /v1/verify` (token check, proof, policy,
/// budget, receipt, audit entry: one decision), its answer with `decision` added.
/// The native answer is read back as written (an idempotent replay is the first
/// answer's bytes), so nothing it says is lost.
pub async fn verify_post(
    state: State<Arc<AppState>>,
    caller: Caller,
    body: ApiJson<VerifyRequest>,
) -> Result<Response, ApiError> {
    let resp = verify::verify_post(state, caller, body).await?;
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_ANSWER_BYTES)
        .await
        .map_err(|e| ApiError::internal(format!("verify answer: {e}")))?;
    let typed: bonafide_api::verify::VerifyResponse = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::internal(format!("verify answer: {e}")))?;
    let mut value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::internal(format!("verify answer: {e}")))?;
    let decision = Decision::of(typed.allowed, typed.error.as_ref().map(|e| &e.code));
    let obj = value
        .as_object_mut()
        .ok_or_else(|| ApiError::internal("verify answer is not an object"))?;
    obj.insert(
        "decision".into(),
        serde_json::to_value(decision).map_err(|e| ApiError::internal(e.to_string()))?,
    );
    let out = serde_json::to_vec(&value).map_err(|e| ApiError::internal(e.to_string()))?;
    parts.headers.remove(header::CONTENT_LENGTH);
    Ok(Response::from_parts(parts, Body::from(out)))
}

/// `POST /api/v1/agents/register` body (KairosAI's members, and Bonafide's
/// `bind_token`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KairosRegister {
    /// Display name.
    pub name: String,
    /// What the agent does.
    #[serde(default)]
    pub description: Option<String>,
    /// Scopes to grant (KairosAI's scopes, or any that follows the grammar).
    pub capabilities: Vec<String>,
    /// The agent's public key, PEM SubjectPublicKeyInfo.
    #[serde(default)]
    pub signing_key_pub: Option<String>,
    /// `ES256` (KairosAI's), `Ed25519`…
    #[serde(default)]
    pub key_algorithm: Option<String>,
    /// Token lifetime, seconds (as the native `expiry_seconds`).
    #[serde(default)]
    pub expiry_seconds: Option<i64>,
    /// Bind the token to `signing_key_pub` (`cnf.jkt`), as KairosAI does: every
    /// verify then needs the agent's proof of possession, and the agent accepts
    /// only bound tokens. Default false: an unbound token any holder may present.
    #[serde(default)]
    pub bind_token: bool,
}

/// `POST /api/v1/agents/register` answer.
#[derive(Debug, Serialize)]
pub struct KairosRegistered {
    /// The agent's DID (`did:web:…`).
    pub did: String,
    /// `agt_…`.
    pub agent_id: String,
    /// The agent's token (`AGENT_TOKEN`).
    pub token: String,
    /// When it expires (RFC 3339).
    pub token_expires_at: String,
    /// When the agent was registered (RFC 3339).
    pub created_at: String,
    /// The scopes granted.
    pub capabilities: Vec<String>,
    /// Whether the token is bound to the agent's key.
    pub token_bound: bool,
}

/// `POST /api/v1/agents/register`: the native registration (every rule, the agent
/// key's included: a key another issuer's agent holds is a 409), in KairosAI's shape.
pub async fn register(
    State(state): State<Arc<AppState>>,
    IssuerAuth(issuer): IssuerAuth,
    ApiJson(body): ApiJson<KairosRegister>,
) -> Result<(StatusCode, ApiJson<KairosRegistered>), ApiError> {
    let has_key = body.signing_key_pub.is_some();
    if body.bind_token && !has_key {
        return Err(ApiError::invalid(
            "`bind_token` binds the token to `signing_key_pub`: send the key too",
        ));
    }
    let unbound = has_key && !body.bind_token;
    let native = RegisterAgent {
        name: body.name,
        description: body.description,
        scopes: body.capabilities,
        expiry_seconds: body.expiry_seconds,
        audience: None,
        policy: None,
        user: None,
        public_key: None,
        signing_key_pub: body.signing_key_pub,
        key_algorithm: body.key_algorithm,
        key_expires_in: None,
        // An agent with a key refuses unbound tokens unless it accepts bearer tokens.
        allow_bearer_tokens: unbound,
        issuer_domain: None,
    };
    let first = if unbound {
        FirstToken::Unbound
    } else {
        FirstToken::Bound
    };
    let r = agents::register_agent(&state, issuer, native, first).await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(KairosRegistered {
            did: state.agent_did(r.agent.id.as_str()),
            agent_id: r.agent.id.to_string(),
            token_expires_at: crate::time::rfc3339_s(r.record.expires_at_s),
            created_at: rfc3339_ms(r.agent.created_at_ms),
            capabilities: r.agent.scopes,
            token_bound: has_key && !unbound,
            token: r.token,
        }),
    ))
}

/// The badge: "Verified by | Bonafide", 24 px high like KairosAI's.
const BADGE: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" width="148" height="24" viewBox="0 0 148 24" role="img" aria-label="Verified by Bonafide"><title>Verified by Bonafide</title><rect width="148" height="24" rx="4" fill="#1f2937"/><rect x="74" width="74" height="24" rx="4" fill="#15803d"/><rect x="74" width="8" height="24" fill="#15803d"/><g fill="#ffffff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11" text-anchor="middle"><text x="37" y="16">Verified by</text><text x="111" y="16">Bonafide</text></g></svg>"##;

/// `GET /api/badge/verified.svg`: the verified badge (static SVG).
pub async fn badge() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // An image: nothing in it may run or load.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        BADGE,
    )
        .into_response()
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `GET /verified`: the page the badge links to.
pub async fn verified_page(State(state): State<Arc<AppState>>) -> Response {
    let base = escape(&state.config.public_url);
    let page = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Verified by Bonafide</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 2em auto; line-height: 1.5">
<h1><img src="{base}/api/badge/verified.svg" alt="Verified by Bonafide" height="24"> Verified by Bonafide</h1>
<p>The site that links here checks every AI agent that calls it with the Bonafide registry at <code>{base}</code>.</p>
<p>Each agent's token is checked on each request: its signature, its expiry, whether the agent or the token was revoked or suspended, and the scopes it was granted. Every decision is written to a tamper-evident audit log whose signed checkpoint anyone can read at <code>{base}/v1/audit/checkpoint</code>.</p>
<p>The registry's public keys: <code>{base}/.well-known/jwks.json</code>.</p>
</body></html>
"#
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // Static text: nothing runs; only the badge loads.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'",
            ),
        ],
        page,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_follow_the_native_codes() {
        assert_eq!(Decision::of(true, None), Decision::Allowed);
        assert_eq!(Decision::of(false, None), Decision::Denied);
        assert_eq!(
            Decision::of(false, Some(&ErrorCode::AgentRevoked)),
            Decision::Revoked
        );
        assert_eq!(
            Decision::of(false, Some(&ErrorCode::TokenExpired)),
            Decision::Expired
        );
        assert_eq!(
            Decision::of(false, Some(&ErrorCode::AgentSuspended)),
            Decision::Denied
        );
        assert_eq!(
            Decision::of(false, Some(&ErrorCode::ProofRequired)),
            Decision::Denied
        );
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
