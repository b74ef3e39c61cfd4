//! CORS for the public reads (ImaRobot: "CORS `*`"): a browser page on any origin
//! may read a token's verdict (`GET /v1/verify/{token}`), the keys, the discovery
//! documents, the audit checkpoint and the scopes catalog, and its preflight gets a
//! 204, never a 405.
//!
//! Only routes in [`ROUTES`] are opened, and never one that takes a key to act: `*`
//! carries no credentials (browsers send no cookies with it), and the preflight
//! allows no `Authorization` or `X-API-Key` header, so a cross-origin page can only
//! read what anyone may read anonymously.

use axum::extract::{MatchedPath, Request};
use axum::http;
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_MAX_AGE,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::layers::Hook;

/// Route templates (as in [`crate::router`]) open to every origin.
pub const ROUTES: &[&str] = &[
    "/v1/verify/{*token}",
    "/.well-known/jwks.json",
    "/.well-known/receipt-jwks.json",
    "/.well-known/status-list-jwks.json",
    "/v1/status-lists/{id}",
    "/.well-known/event-jwks.json",
    "/.well-known/public-key.pem",
    "/.well-known/bonafide-configuration",
    "/v1/audit/checkpoint",
    "/v1/scopes",
    "/health",
    // The compatibility surfaces' equivalents (`crate::compat`).
    "/compat/imarobot/v1/verify/{*token}",
    "/compat/imarobot/.well-known/public-key.pem",
    "/compat/imarobot/health",
    "/api/v1/.well-known/jwks.json",
    "/compat/agentoauth/.well-known/jwks.json",
    "/compat/agentoauth/health",
    "/compat/agentoauth/playground/.well-known/jwks.json",
];

/// Methods a preflight allows: these routes are reads.
const METHODS: &str = "GET, HEAD, OPTIONS";
/// Request headers a preflight allows: none that carries a key.
const HEADERS: &str = "Accept, Content-Type";
/// How long a browser may keep a preflight's answer, seconds.
const MAX_AGE: &str = "86400";

fn is_open(route: &str) -> bool {
    ROUTES.contains(&route)
}

/// Route layer: every answer of a route in [`ROUTES`], errors included (so a page
/// can read why), carries `Access-Control-Allow-Origin: *`.
#[derive(Clone)]
pub(crate) struct AllowAnyOrigin;

impl Hook for AllowAnyOrigin {
    type Noted = bool;

    fn before(&self, req: &Request) -> bool {
        req.extensions()
            .get::<MatchedPath>()
            .is_some_and(|p| is_open(p.as_str()))
    }

    fn after<B>(&self, open: bool, resp: &mut http::Response<B>) {
        if open {
            resp.headers_mut()
                .insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        }
    }
}

/// `OPTIONS` on a route in [`ROUTES`]: the CORS preflight, 204.
pub async fn preflight() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (ACCESS_CONTROL_ALLOW_METHODS, METHODS),
            (ACCESS_CONTROL_ALLOW_HEADERS, HEADERS),
            (ACCESS_CONTROL_MAX_AGE, MAX_AGE),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_routes_are_not_open() {
        for route in [
            "/v1/verify",
            "/v1/agents/register",
            "/v1/agents/{id}/issue-token",
            "/v1/audit/entries",
            "/v1/audit/tile/{*path}",
            "/compat/imarobot/v1/agents/register",
            "/api/v1/verify",
            "/api/v1/agents/register",
        ] {
            assert!(!is_open(route), "{route}");
        }
        // The preflight names no header that carries a key.
        assert!(!HEADERS.to_ascii_lowercase().contains("authorization"));
        assert!(!HEADERS.to_ascii_lowercase().contains("api-key"));
    }
}
