//! Access tokens for people who log in (issue 18): JWTs per RFC 9068 (`typ at+jwt`),
//! signed by a registry key that signs nothing else and is published in its own
//! JWKS, so no verifier configured with the agent-token keys can take one for an
//! agent token, nor the reverse.
//!
//! Claims (RFC 9068 §2.2): `iss` (the registry), `sub` (the person, `usr_…`), `aud`
//! (the registry's API), `exp`, `iat`, `jti`, `client_id`, plus `sid` (the session,
//! so a revoked session ends its access tokens at once) and `amr` (RFC 8176: `pwd`,
//! and `otp` when a second factor was checked). Roles are not in the token: they are
//! read fresh on every request, so a role taken away counts from the next one.

use serde::{Deserialize, Serialize};

use crate::jws::{self, JwsError};
use crate::keys::{KeyError, SigningKey};
use crate::token::{KeyResolver, Segment, TokenError};

/// The `typ` of every access token (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// Longest access token accepted, bytes.
pub const MAX_ACCESS_TOKEN_BYTES: usize = 4096;

/// The claims of an access token. Unknown claims are refused: the registry is the
/// only signer and writes exactly these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessClaims {
    /// The registry's public URL.
    pub iss: String,
    /// The person (`usr_…`).
    pub sub: String,
    /// The resource: the registry's API (`<public_url>/v1`).
    pub aud: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Unique id of this token.
    pub jti: String,
    /// The client the session was made for (`bonafide`, or a client's id).
    pub client_id: String,
    /// The session (`ses_…`).
    pub sid: String,
    /// How the person authenticated (RFC 8176 values).
    pub amr: Vec<String>,
}

impl AccessClaims {
    /// Whether a second factor was checked when the session began.
    pub fn two_factor(&self) -> bool {
        self.amr.iter().any(|m| m == "otp")
    }
}

/// Why an access token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccessTokenError {
    /// Size, framing, header, key or signature: not a genuine access token.
    #[error("access token does not verify: {0}")]
    Jws(TokenError),
    /// The header's `typ` is not `at+jwt` (an agent token, a receipt…).
    #[error("not an access token: its type is `{found}`, not `at+jwt`")]
    WrongType {
        /// What the header said (empty if absent).
        found: String,
    },
    /// The signature holds but the claims are malformed.
    #[error("access token claims are invalid: {0}")]
    Claims(String),
    /// Another issuer or audience than this registry's.
    #[error("access token is for another registry")]
    WrongAudience,
    /// Past `exp` (plus leeway).
    #[error("access token expired")]
    Expired,
    /// `iat` in the future (beyond leeway).
    #[error("access token is not valid yet")]
    NotYetValid,
}

impl From<JwsError> for AccessTokenError {
    fn from(e: JwsError) -> Self {
        match e {
            JwsError::WrongType { found, .. } => AccessTokenError::WrongType {
                found: found.unwrap_or_default(),
            },
            JwsError::Json(Segment::Payload, e) => AccessTokenError::Claims(e.to_string()),
            JwsError::ClaimsNotObject => {
                AccessTokenError::Claims("claims are not a JSON object".into())
            }
            JwsError::Claims(m) => AccessTokenError::Claims(m),
            e => AccessTokenError::Jws(e.into()),
        }
    }
}

/// Signs `claims` as a compact JWS, `typ at+jwt`.
pub fn sign(key: &SigningKey, claims: &AccessClaims) -> Result<String, KeyError> {
    let payload = serde_json::to_vec(claims).map_err(|_| KeyError::Sign)?;
    jws::sign_compact(key, ACCESS_TOKEN_TYP, &payload)
}

/// What a verifier expects of an access token.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// `iss`: the registry's public URL.
    pub issuer: &'a str,
    /// `aud`: the registry's API.
    pub audience: &'a str,
    /// Now, Unix seconds.
    pub now_s: i64,
    /// Clock-skew leeway, seconds.
    pub leeway_s: i64,
}

/// Verifies an access token with the key its `kid` names among `keys` (the session
/// JWKS only), `typ` and `alg` checked before the payload is read, then `iss`, `aud`
/// and the times (RFC 9068 §4).
pub fn verify(
    token: &str,
    keys: &impl KeyResolver,
    expect: Expect<'_>,
) -> Result<AccessClaims, AccessTokenError> {
    let rules = jws::Rules::kid(jws::Typ::Is(ACCESS_TOKEN_TYP), MAX_ACCESS_TOKEN_BYTES);
    let opened = jws::open::<AccessClaims, _>(token, &rules, |h: &jws::Protected| {
        keys.key(h.kid())
            .map(jws::Key::Borrowed)
            .ok_or(AccessTokenError::Jws(TokenError::UnknownKey))
    })?;
    let claims = opened.claims;
    if claims.iss != expect.issuer || claims.aud != expect.audience {
        return Err(AccessTokenError::WrongAudience);
    }
    if expect.now_s >= claims.exp.saturating_add(expect.leeway_s) {
        return Err(AccessTokenError::Expired);
    }
    if claims.iat > expect.now_s.saturating_add(expect.leeway_s) {
        return Err(AccessTokenError::NotYetValid);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Algorithm, VerifyingKey};
    use crate::token::KeySet;

    fn claims() -> AccessClaims {
        AccessClaims {
            iss: "https://reg.example".into(),
            sub: "usr_1".into(),
            aud: "https://reg.example/v1".into(),
            exp: 1_900,
            iat: 1_000,
            jti: "j1".into(),
            client_id: "bonafide".into(),
            sid: "ses_1".into(),
            amr: vec!["pwd".into()],
        }
    }

    fn expect(now_s: i64) -> Expect<'static> {
        Expect {
            issuer: "https://reg.example",
            audience: "https://reg.example/v1",
            now_s,
            leeway_s: 60,
        }
    }

    #[test]
    fn round_trip_and_each_refusal() {
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let mut keys = KeySet::new();
        keys.insert(VerifyingKey::from_jwk(key.verifying_key().jwk()).unwrap());
        let token = sign(&key, &claims()).unwrap();
        assert_eq!(verify(&token, &keys, expect(1_500)).unwrap(), claims());
        assert_eq!(
            verify(&token, &keys, expect(1_960)),
            Err(AccessTokenError::Expired)
        );
        assert_eq!(
            verify(&token, &keys, expect(900)),
            Err(AccessTokenError::NotYetValid)
        );
        let mut other = expect(1_500);
        other.audience = "https://other.example/v1";
        assert_eq!(
            verify(&token, &keys, other),
            Err(AccessTokenError::WrongAudience)
        );
        // Another kind of JWS by the same key is refused by its typ.
        let payload = serde_json::to_vec(&claims()).unwrap();
        let jwt = jws::sign_compact(&key, "JWT", &payload).unwrap();
        assert!(matches!(
            verify(&jwt, &keys, expect(1_500)),
            Err(AccessTokenError::WrongType { .. })
        ));
        // Another key: unknown kid.
        let stranger = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let forged = sign(&stranger, &claims()).unwrap();
        assert!(matches!(
            verify(&forged, &keys, expect(1_500)),
            Err(AccessTokenError::Jws(_))
        ));
        // A claim the registry never writes.
        let mut v = serde_json::to_value(claims()).unwrap();
        v["roles"] = serde_json::json!(["owner"]);
        let extra = jws::sign_compact(&key, ACCESS_TOKEN_TYP, v.to_string().as_bytes()).unwrap();
        assert!(matches!(
            verify(&extra, &keys, expect(1_500)),
            Err(AccessTokenError::Claims(_))
        ));
    }
}
