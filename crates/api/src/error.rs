//! Error codes and the one shape of `error` in every answer.
//!
//! An error answer's body is [`ErrorBody`], `{"error":{"code","message","request_id"}}`;
//! a verify answer that is not valid carries the same [`ErrorDetail`] as its `error`
//! member. The one exception is token exchange (`POST /v1/token`), which answers RFC
//! 6749 §5.2 errors (`error` a string, `error_description`, and Bonafide's `code`
//! beside them) because OAuth clients read that shape.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

/// A code no variant of this version knows, as a newer registry may send it. Only
/// reading an answer makes one ([`ErrorCode::from_wire`], deserialising): the
/// server constructs known variants only, so every code it sends is in the
/// OpenAPI document's enum.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnknownCode(String);

impl UnknownCode {
    /// The code as received.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = $wire:literal,)*) => {
        /// A stable, machine-readable error code: what a client branches on. On the
        /// wire it is the SCREAMING_SNAKE string (`TOKEN_REVOKED`). New codes may be
        /// added in later versions; they read as [`ErrorCode::Unknown`], to be
        /// treated by the answer's HTTP status.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
            /// A code this version does not know (see [`UnknownCode`]).
            Unknown(UnknownCode),
        }

        impl ErrorCode {
            /// Every known code, in the order of the OpenAPI enum.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The wire form, e.g. `TOKEN_INVALID`.
            pub fn as_str(&self) -> &str {
                match self {
                    $(ErrorCode::$variant => $wire,)*
                    ErrorCode::Unknown(c) => c.as_str(),
                }
            }

            /// The code a client read: a known variant, else [`ErrorCode::Unknown`].
            pub fn from_wire(text: &str) -> ErrorCode {
                match text {
                    $($wire => ErrorCode::$variant,)*
                    other => ErrorCode::Unknown(UnknownCode(other.to_owned())),
                }
            }
        }
    };
}

codes! {
    // Shared by every operation.
    /// 400: a path or query parameter of the wrong type, or a body that cannot be read.
    BadRequest = "BAD_REQUEST",
    /// 400: the body is not JSON.
    MalformedJson = "MALFORMED_JSON",
    /// 401: no API key, or a malformed or unknown one.
    Unauthorized = "UNAUTHORIZED",
    /// 403: an API key of another kind.
    Forbidden = "FORBIDDEN",
    /// 404: not found, or another issuer's.
    NotFound = "NOT_FOUND",
    /// 405.
    MethodNotAllowed = "METHOD_NOT_ALLOWED",
    /// 408: the body did not arrive within the request timeout.
    RequestTimeout = "REQUEST_TIMEOUT",
    /// 409: conflicts with the registry's state.
    Conflict = "CONFLICT",
    /// 413: the body is over the size limit.
    PayloadTooLarge = "PAYLOAD_TOO_LARGE",
    /// 415: the body is not of the media type the operation takes.
    UnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE",
    /// 422: well-formed but invalid.
    InvalidRequest = "INVALID_REQUEST",
    /// 429: over a rate limit; `Retry-After` says when to try again, `RateLimit` and
    /// `RateLimit-Policy` which limit.
    RateLimited = "RATE_LIMITED",
    /// 429: the organisation's monthly verification quota is used up; `Retry-After`
    /// and the error's `reset` say when the next month (UTC) begins.
    QuotaExceeded = "QUOTA_EXCEEDED",
    /// 500: the detail is in the server log under the request id.
    Internal = "INTERNAL",
    /// 503: the registry's storage is full; nothing was written.
    StorageFull = "STORAGE_FULL",
    /// 503: the store cannot take writes now; nothing was written.
    StoreUnavailable = "STORE_UNAVAILABLE",
    /// 503: the audit log cannot take the decision.
    AuditUnavailable = "AUDIT_UNAVAILABLE",
    /// 503: the audit log's pruned records are served from its export
    /// (`serve --audit-archive`), which is not configured or cannot be read now.
    AuditArchiveUnavailable = "AUDIT_ARCHIVE_UNAVAILABLE",
    /// 502: a tile read from the audit log's export does not hash to the tile root the
    /// registry kept: the export was altered; nothing of it is served.
    AuditArchiveMismatch = "AUDIT_ARCHIVE_MISMATCH",
    /// 503: the answer took longer than the request timeout.
    Timeout = "TIMEOUT",
    /// 503: a status list is not published yet (a new list is within a second), or no
    /// free index was found for a token's status (retry).
    StatusListUnavailable = "STATUS_LIST_UNAVAILABLE",

    // A token that does not verify (verify answers' `error`, and operations that
    // take a token).
    /// Malformed, badly signed, or otherwise not a genuine token.
    TokenInvalid = "TOKEN_INVALID",
    /// Past `exp` (plus leeway).
    TokenExpired = "TOKEN_EXPIRED",
    /// Before `nbf` or `iat` (minus leeway).
    TokenNotYetValid = "TOKEN_NOT_YET_VALID",
    /// The token, its agent or its key has been revoked.
    TokenRevoked = "TOKEN_REVOKED",
    /// The token's `aud` does not name the verifier.
    AudienceMismatch = "AUDIENCE_MISMATCH",
    /// `iss` is not an issuer this registry knows.
    IssuerUnknown = "ISSUER_UNKNOWN",
    /// The agent is suspended (its tokens verify again once it is reactivated); also
    /// 409 for operations on a suspended agent.
    AgentSuspended = "AGENT_SUSPENDED",
    /// An issuer-signed token names an agent its issuer has not registered.
    AgentUnknown = "AGENT_UNKNOWN",
    /// A token bound to a key came without a proof of possession.
    ProofRequired = "PROOF_REQUIRED",
    /// The proof of possession does not hold.
    ProofInvalid = "PROOF_INVALID",
    /// The proof was already used.
    Replay = "REPLAY",

    // An operation's own refusals.
    /// 403: a receiver key naming an audience that is not the receiver's.
    AudienceForbidden = "AUDIENCE_FORBIDDEN",
    /// 409: another receiver holds the audience.
    AudienceTaken = "AUDIENCE_TAKEN",
    /// 422: an `amount` without `currency` (or the reverse), or not a valid amount.
    AmountInvalid = "AMOUNT_INVALID",
    /// 422: an `amount` for a token whose policy grants no spending.
    AmountNotAllowed = "AMOUNT_NOT_ALLOWED",
    /// 409: an `idempotency_key` already used for another request.
    IdempotencyConflict = "IDEMPOTENCY_CONFLICT",
    /// 422: a proof of possession for a token that is not bound to a key.
    ProofNotApplicable = "PROOF_NOT_APPLICABLE",
    /// 422: a proof of possession that lacks what checking it needs.
    ProofIncomplete = "PROOF_INCOMPLETE",
    /// 422: a consent policy that does not parse or does not narrow.
    PolicyInvalid = "POLICY_INVALID",
    /// 409: the agent is revoked.
    AgentRevoked = "AGENT_REVOKED",
    /// 422: an unusable key.
    KeyInvalid = "KEY_INVALID",
    /// 409: the agent's key is past its expiry.
    KeyExpired = "KEY_EXPIRED",
    /// 409: the key is already registered.
    KeyAlreadyRegistered = "KEY_ALREADY_REGISTERED",
    /// 422: the key proof does not hold.
    KeyProofInvalid = "KEY_PROOF_INVALID",
    /// 400: private key material was sent.
    PrivateKeyRefused = "PRIVATE_KEY_REFUSED",
    /// 409: the agent has no key of its own.
    NoAgentKey = "NO_AGENT_KEY",
    /// 409: the last admin key cannot be revoked.
    LastAdminKey = "LAST_ADMIN_KEY",
    /// 422: not a domain name the registry verifies.
    DomainInvalid = "DOMAIN_INVALID",
    /// 422: the domain proof does not hold.
    DomainProofInvalid = "DOMAIN_PROOF_INVALID",
    /// 422: the domain's JWKS does not show the issuer's key.
    DomainNotVerified = "DOMAIN_NOT_VERIFIED",
    /// 422: the domain's JWKS cannot be fetched from where it points.
    JwksUrlRefused = "JWKS_URL_REFUSED",

    // Token exchange (`code` beside the RFC 6749 `error`).
    /// `grant_type` is not token exchange.
    UnsupportedGrantType = "UNSUPPORTED_GRANT_TYPE",
    /// A token type other than a JWT.
    UnsupportedTokenType = "UNSUPPORTED_TOKEN_TYPE",
    /// `resource` is not supported.
    ResourceUnsupported = "RESOURCE_UNSUPPORTED",
    /// A requested scope is malformed.
    ScopeInvalid = "SCOPE_INVALID",
    /// The child would be wider than its parent.
    DelegationWidens = "DELEGATION_WIDENS",
    /// The actor is already in the chain.
    DelegationLoop = "DELEGATION_LOOP",

    // People and sessions (issue 18).
    /// 401: the email, password or second factor is wrong (one answer for all, so
    /// nobody learns whether an email has an account).
    InvalidCredentials = "INVALID_CREDENTIALS",
    /// 401 at login: the account has two-factor authentication; send `totp_code` or
    /// `recovery_code`. 403 elsewhere: the organisation (or the role) needs a session
    /// made with a second factor.
    TwoFactorRequired = "TWO_FACTOR_REQUIRED",
    /// 429: too many failed logins for this account or address; retry after
    /// `Retry-After` seconds.
    LoginThrottled = "LOGIN_THROTTLED",
}

impl ErrorCode {
    /// True for a code this version knows.
    pub fn is_known(&self) -> bool {
        !matches!(self, ErrorCode::Unknown(_))
    }
}

/// The one place core's token error codes become the API's (core knows nothing of
/// the API). Core's codes are all here by name; the test below checks the strings.
impl From<bonafide_core::token::ErrorCode> for ErrorCode {
    fn from(code: bonafide_core::token::ErrorCode) -> Self {
        use bonafide_core::token::ErrorCode as Core;
        match code {
            Core::TokenInvalid => ErrorCode::TokenInvalid,
            Core::TokenExpired => ErrorCode::TokenExpired,
            Core::TokenNotYetValid => ErrorCode::TokenNotYetValid,
            Core::TokenRevoked => ErrorCode::TokenRevoked,
            Core::AudienceMismatch => ErrorCode::AudienceMismatch,
            Core::IssuerUnknown => ErrorCode::IssuerUnknown,
            Core::AgentSuspended => ErrorCode::AgentSuspended,
            Core::AgentUnknown => ErrorCode::AgentUnknown,
            Core::ProofRequired => ErrorCode::ProofRequired,
            Core::ProofInvalid => ErrorCode::ProofInvalid,
            Core::Replay => ErrorCode::Replay,
            // Core's enum is non-exhaustive: a code it adds reads by its wire name
            // until it is named here.
            other => ErrorCode::from_wire(other.as_str()),
        }
    }
}

impl From<&bonafide_core::token::TokenError> for ErrorCode {
    fn from(e: &bonafide_core::token::TokenError) -> Self {
        e.code().into()
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ErrorCode {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(ErrorCode::from_wire(s))
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(d)?;
        Ok(ErrorCode::from_wire(&text))
    }
}

impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(ErrorCode::ALL.iter().map(ErrorCode::as_str)))
            .description(Some(
                "Stable, machine-readable code: what a client branches on. An operation's own codes are named in its answers' descriptions. New codes may be added: treat an unknown one by its HTTP status.",
            ))
            .into()
    }
}

impl ToSchema for ErrorCode {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ErrorCode")
    }
}

/// The body of every error answer: `{"error":{"code","message","request_id"}}`.
///
/// Token exchange (`POST /v1/token`) is the one operation that answers otherwise: RFC
/// 6749 §5.2 errors (`{"error": "invalid_request", "error_description", "code",
/// "request_id"}`), since OAuth clients read that shape; its `code` is an
/// [`ErrorCode`] too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong: the `error` member of an [`ErrorBody`] and of a verify answer
/// whose token is not valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable code: what a client branches on.
    pub code: ErrorCode,
    /// What went wrong, in words, for a person; never a secret or a token.
    pub message: String,
    /// The id of the request that decided it (also the `X-Request-Id` header): the
    /// server log's lines about it carry the same id.
    #[schema(pattern = "^req_[0-9a-f]{32}$")]
    pub request_id: String,
    /// `QUOTA_EXCEEDED` only: when the quota is full again (the next month's start,
    /// UTC, RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_as_itself() {
        for code in ErrorCode::ALL {
            let wire = serde_json::to_string(code).unwrap();
            assert_eq!(wire, format!("\"{}\"", code.as_str()));
            let back: ErrorCode = serde_json::from_str(&wire).unwrap();
            assert_eq!(&back, code);
            assert!(back.is_known());
            // SCREAMING_SNAKE, as the schema's pattern promised before it was an enum.
            assert!(
                code.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
                "{code}"
            );
        }
        let mut seen: Vec<&str> = ErrorCode::ALL.iter().map(ErrorCode::as_str).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), ErrorCode::ALL.len(), "a wire string twice");
    }

    #[test]
    fn an_unknown_code_is_kept_not_refused() {
        let body: ErrorBody = serde_json::from_str(
            r#"{"error":{"code":"COFFEE_REQUIRED","message":"m","request_id":"req_1"}}"#,
        )
        .unwrap();
        assert!(!body.error.code.is_known());
        assert_eq!(body.error.code.as_str(), "COFFEE_REQUIRED");
        assert_eq!(
            body.error.code,
            ErrorCode::Unknown(UnknownCode("COFFEE_REQUIRED".into()))
        );
        // And written back as received.
        assert_eq!(
            serde_json::to_value(&body).unwrap()["error"]["code"],
            "COFFEE_REQUIRED"
        );
        assert!(serde_json::from_str::<ErrorCode>("7").is_err());
    }

    #[test]
    fn core_codes_map_to_the_same_wire_string() {
        use bonafide_core::token::ErrorCode as Core;
        for core in [
            Core::TokenInvalid,
            Core::TokenExpired,
            Core::TokenNotYetValid,
            Core::TokenRevoked,
            Core::AudienceMismatch,
            Core::IssuerUnknown,
            Core::AgentSuspended,
            Core::AgentUnknown,
            Core::ProofRequired,
            Core::ProofInvalid,
            Core::Replay,
        ] {
            let api = ErrorCode::from(core);
            assert!(api.is_known(), "{}", core.as_str());
            assert_eq!(api.as_str(), core.as_str());
        }
    }

    #[test]
    fn the_schema_lists_every_known_code() {
        let schema = serde_json::to_value(<ErrorCode as utoipa::PartialSchema>::schema()).unwrap();
        let listed: Vec<&str> = schema["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let all: Vec<&str> = ErrorCode::ALL.iter().map(ErrorCode::as_str).collect();
        assert_eq!(listed, all);
    }
}
