//! `Cache-Control` for every answer. Answers carry API keys (`POST /v1/issuers`,
//! `/v1/receivers`), tokens (`register`, `issue-token`, agent key rotation, `POST
//! /v1/token`) or what only their caller may see, so the default is `no-store`: no
//! cache, shared or private, keeps them. Only the public documents in [`PUBLIC`] may
//! be cached, and only when they succeed.
//!
//! Architecture invariant: a route is cacheable only if it is listed in [`PUBLIC`];
//! every other answer (errors, the fallback's 404 and 405, a caught panic's 500
//! included) is `no-store` unless its handler set a stricter header itself.

use axum::extract::{MatchedPath, Request};
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderValue, Response};

use crate::layers::Hook;

/// Keys change only by rotation, and a rotated-out key stays published until its
/// tokens expire, so five minutes of caching never hides a key a token needs.
const KEYS: &str = "public, max-age=300";
/// May change at any moment (a new checkpoint, an agent key rotated with no grace to
/// kill a leaked key): anyone may store it, but must ask again before using it.
const REVALIDATE: &str = "public, no-cache";

/// Route templates (as in [`crate::router`]) whose successful answers are the same for
/// every caller and hold no secret, with the `Cache-Control` they get when their
/// handler sets none. Handlers that set their own keep it: the JWKS and PEM key
/// (`max-age=300`), the checkpoint (`no-cache`), tiles (full hash tiles immutable,
/// entry bundles `private` since they need a key) and proof bundles (`no-store` when
/// they carry the entry the caller may read).
pub const PUBLIC: &[(&str, &str)] = &[
    ("/.well-known/jwks.json", KEYS),
    ("/.well-known/public-key.pem", KEYS),
    // Names the signing kid, which changes only by rotation, like the JWKS.
    ("/.well-known/bonafide-configuration", KEYS),
    // Push events' transmitter metadata names the event JWKS, which changes never.
    ("/.well-known/ssf-configuration", KEYS),
    ("/v1/audit/checkpoint", REVALIDATE),
    ("/v1/audit/tile/{*path}", REVALIDATE),
    ("/v1/audit/proof/inclusion", REVALIDATE),
    ("/v1/audit/proof/consistency", REVALIDATE),
    ("/v1/audit/proof/bundle", REVALIDATE),
    ("/agents/{id}/did.json", REVALIDATE),
    (
        "/agents/{id}/.well-known/http-message-signatures-directory",
        REVALIDATE,
    ),
    // The compatibility surfaces' copies of the keys (`crate::compat`).
    ("/compat/imarobot/.well-known/public-key.pem", KEYS),
    ("/api/v1/.well-known/jwks.json", KEYS),
    // Fixed by the build (the badge and its page set their own, longer).
    ("/v1/scopes", KEYS),
    ("/api/badge/verified.svg", KEYS),
    ("/verified", KEYS),
    ("/openapi.json", KEYS),
];

/// The header a successful answer of this route gets when its handler sets none.
fn public_value(route: &str) -> Option<&'static str> {
    PUBLIC
        .iter()
        .find(|(template, _)| *template == route)
        .map(|(_, value)| *value)
}

/// Route layer: a successful answer of a route in [`PUBLIC`] without a
/// `Cache-Control` of its own gets the route's.
#[derive(Clone)]
pub(crate) struct PublicRoutes;

impl Hook for PublicRoutes {
    type Noted = Option<&'static str>;

    fn before(&self, req: &Request) -> Self::Noted {
        req.extensions()
            .get::<MatchedPath>()
            .and_then(|p| public_value(p.as_str()))
    }

    fn after<B>(&self, public: Self::Noted, resp: &mut Response<B>) {
        if let Some(value) = public
            && resp.status().is_success()
            && !resp.headers().contains_key(CACHE_CONTROL)
        {
            resp.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static(value));
        }
    }
}

/// Outer layer: every answer still without a `Cache-Control` gets `no-store`.
#[derive(Clone)]
pub(crate) struct NoStoreByDefault;

impl Hook for NoStoreByDefault {
    type Noted = ();

    fn before(&self, _: &Request) {}

    fn after<B>(&self, (): (), resp: &mut Response<B>) {
        resp.headers_mut()
            .entry(CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_carrying_routes_are_not_public() {
        for route in [
            "/v1/issuers",
            "/v1/receivers",
            "/v1/agents/register",
            "/v1/agents/{id}/issue-token",
            "/v1/agents/{id}/keys",
            "/v1/admin/keys/rotate",
            "/v1/token",
            "/v1/verify/{*token}",
            "/v1/audit/entries",
        ] {
            assert_eq!(public_value(route), None, "{route}");
        }
        assert_eq!(public_value("/.well-known/jwks.json"), Some(KEYS));
    }
}
