//! Token exchange (`POST /v1/token`, RFC 8693) answers. Its errors are RFC 6749's
//! shape, not [`crate::ErrorBody`] (see there).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/token` answer (RFC 8693 §2.2.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenExchangeResponse {
    /// The child token.
    pub access_token: String,
    /// `urn:ietf:params:oauth:token-type:jwt`.
    pub issued_token_type: String,
    /// `N_A`: an agent token is presented to receivers, who verify it, not used as an
    /// OAuth access token.
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// Its scopes, space-separated.
    pub scope: String,
    /// Its `jti` (`POST /v1/tokens/revoke` revokes it and its descendants).
    pub jti: String,
}
