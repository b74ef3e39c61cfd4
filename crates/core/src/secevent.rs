//! Security Event Tokens (RFC 8417) the registry pushes to receivers (issue 19 item
//! 4), with the Shared Signals Framework's subject identifier (`sub_id`, RFC 9493)
//! and CAEP / RISC event types where one fits:
//!
//! | what happened                | event type                                  | `sub_id`            |
//! |------------------------------|---------------------------------------------|---------------------|
//! | a token revoked              | CAEP `session-revoked`                      | opaque `tok_…`      |
//! | an agent revoked (for good)  | RISC `account-purged`                       | opaque `agt_…`      |
//! | an agent suspended           | RISC `account-disabled`                     | opaque `agt_…`      |
//! | an agent reactivated         | RISC `account-enabled`                      | opaque `agt_…`      |
//! | keys rotated (registry, an issuer's, an agent's) | CAEP `credential-change` (`change_type` `update`) | `uri` of the registry, or opaque `iss_…` / `agt_…` |
//!
//! CAEP's `credential_type` names no JWS signing key; `app` (a software credential)
//! is the nearest of its values and is what these events carry.
//!
//! A SET is `typ secevent+jwt`, signed by the registry's event key (which signs
//! nothing else) and verified here by `kid` through [`jws::open`]. Its `jti` is
//! `evt-<feed position>`: the same event has the same `jti` whichever replica signed it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::jws::{self, JwsError};
use crate::keys::{KeyError, SigningKey};
use crate::token::{KeyResolver, Segment, TokenError};

/// The `typ` of a Security Event Token (RFC 8417 §2.3).
pub const SET_TYP: &str = "secevent+jwt";
/// Longest SET accepted, in bytes.
pub const MAX_SET_BYTES: usize = 8 * 1024;

/// CAEP Session Revoked.
pub const SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// CAEP Credential Change.
pub const CREDENTIAL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/credential-change";
/// RISC Account Purged.
pub const ACCOUNT_PURGED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-purged";
/// RISC Account Disabled.
pub const ACCOUNT_DISABLED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
/// RISC Account Enabled.
pub const ACCOUNT_ENABLED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-enabled";

/// What an event says, as the registry makes it and a receiver reads it back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Event {
    /// A token (by `jti`) is revoked.
    TokenRevoked(String),
    /// An agent is revoked for good: refuse every token of it.
    AgentRevoked(String),
    /// An agent is suspended: refuse its tokens until it is reactivated.
    AgentSuspended(String),
    /// An agent's suspension ended.
    AgentReactivated(String),
    /// Keys changed: the registry's (its URL), an issuer's or an agent's (their id).
    KeysChanged(Subject),
}

/// An RFC 9493 subject identifier, of the two formats these events use.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "lowercase")]
pub enum Subject {
    /// `{"format":"opaque","id":…}`: a registry id (`tok_…`, `agt_…`, `iss_…`).
    Opaque {
        /// The id.
        id: String,
    },
    /// `{"format":"uri","uri":…}`: the registry itself.
    Uri {
        /// The URI.
        uri: String,
    },
}

impl Event {
    /// The event type URI.
    pub fn type_uri(&self) -> &'static str {
        match self {
            Event::TokenRevoked(_) => SESSION_REVOKED,
            Event::AgentRevoked(_) => ACCOUNT_PURGED,
            Event::AgentSuspended(_) => ACCOUNT_DISABLED,
            Event::AgentReactivated(_) => ACCOUNT_ENABLED,
            Event::KeysChanged(_) => CREDENTIAL_CHANGE,
        }
    }

    /// A short name (the SSE `event:` field): `token.revoked`, `agent.revoked`,
    /// `agent.suspended`, `agent.reactivated`, `keys.changed`.
    pub fn name(&self) -> &'static str {
        match self {
            Event::TokenRevoked(_) => "token.revoked",
            Event::AgentRevoked(_) => "agent.revoked",
            Event::AgentSuspended(_) => "agent.suspended",
            Event::AgentReactivated(_) => "agent.reactivated",
            Event::KeysChanged(_) => "keys.changed",
        }
    }

    /// The subject (`sub_id`).
    pub fn subject(&self) -> Subject {
        match self {
            Event::TokenRevoked(id)
            | Event::AgentRevoked(id)
            | Event::AgentSuspended(id)
            | Event::AgentReactivated(id) => Subject::Opaque { id: id.clone() },
            Event::KeysChanged(s) => s.clone(),
        }
    }
}

/// The claims of a SET. Read leniently (unknown claims are ignored, as RFC 8417
/// lets a profile add them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetClaims {
    /// The registry's public URL.
    pub iss: String,
    /// `evt-<feed position>`.
    pub jti: String,
    /// When it was signed, Unix seconds.
    pub iat: i64,
    /// When the event happened, Unix seconds, where the registry recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toe: Option<i64>,
    /// Whom it concerns (SSF 1.0's top-level `sub_id`).
    pub sub_id: Subject,
    /// Exactly one event: its type URI and its payload.
    pub events: Map<String, Value>,
}

impl SetClaims {
    /// The claims of `event`.
    pub fn new(event: &Event, iss: &str, jti: String, iat: i64, toe: Option<i64>) -> Self {
        let mut payload = Map::new();
        if let Some(t) = toe {
            payload.insert("event_timestamp".into(), json!(t));
        }
        if let Event::KeysChanged(_) = event {
            payload.insert("credential_type".into(), json!("app"));
            payload.insert("change_type".into(), json!("update"));
        }
        let mut events = Map::new();
        events.insert(event.type_uri().into(), Value::Object(payload));
        SetClaims {
            iss: iss.to_owned(),
            jti,
            iat,
            toe,
            sub_id: event.subject(),
            events,
        }
    }

    /// The event these claims carry, if it is one of [`Event`]'s (exactly one event
    /// of a known type, with a subject of the right format).
    pub fn event(&self) -> Option<Event> {
        if self.events.len() != 1 {
            return None;
        }
        let uri = self.events.keys().next()?;
        let opaque = match &self.sub_id {
            Subject::Opaque { id } => Some(id.clone()),
            Subject::Uri { .. } => None,
        };
        Some(match uri.as_str() {
            SESSION_REVOKED => Event::TokenRevoked(opaque?),
            ACCOUNT_PURGED => Event::AgentRevoked(opaque?),
            ACCOUNT_DISABLED => Event::AgentSuspended(opaque?),
            ACCOUNT_ENABLED => Event::AgentReactivated(opaque?),
            CREDENTIAL_CHANGE => Event::KeysChanged(self.sub_id.clone()),
            _ => return None,
        })
    }
}

/// Why a SET was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SetError {
    /// Size, framing, header, key or signature: not a genuine SET of these keys.
    #[error("security event token does not verify: {0}")]
    Jws(TokenError),
    /// The header's `typ` is not `secevent+jwt`.
    #[error("not a security event token: its type is `{found}`, not `secevent+jwt`")]
    WrongType {
        /// What the header said (empty if absent).
        found: String,
    },
    /// The signature holds but the claims are malformed.
    #[error("security event token claims are invalid: {0}")]
    Claims(String),
}

impl From<JwsError> for SetError {
    fn from(e: JwsError) -> Self {
        match e {
            JwsError::WrongType { found, .. } => SetError::WrongType {
                found: found.unwrap_or_default(),
            },
            JwsError::Json(Segment::Payload, e) => SetError::Claims(e.to_string()),
            JwsError::ClaimsNotObject => SetError::Claims("claims are not a JSON object".into()),
            JwsError::Claims(m) => SetError::Claims(m),
            e => SetError::Jws(e.into()),
        }
    }
}

/// Signs `claims` as a compact JWS, `typ secevent+jwt`.
pub fn sign(key: &SigningKey, claims: &SetClaims) -> Result<String, KeyError> {
    let payload = serde_json::to_vec(claims).map_err(|_| KeyError::Sign)?;
    jws::sign_compact(key, SET_TYP, &payload)
}

/// Verifies a SET with the key its `kid` names among `keys` (the registry's event
/// JWKS), `typ` and `alg` checked before the payload is read.
pub fn verify(set: &str, keys: &impl KeyResolver) -> Result<SetClaims, SetError> {
    let rules = jws::Rules::kid(jws::Typ::Is(SET_TYP), MAX_SET_BYTES);
    let opened = jws::open::<SetClaims, _>(set, &rules, |h: &jws::Protected| {
        keys.key(h.kid())
            .map(jws::Key::Borrowed)
            .ok_or(SetError::Jws(TokenError::UnknownKey))
    })?;
    Ok(opened.claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Algorithm;
    use crate::token::KeySet;

    #[test]
    fn every_event_round_trips_through_a_signed_set() {
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let mut keys = KeySet::new();
        keys.insert(crate::keys::VerifyingKey::from_jwk(key.verifying_key().jwk()).unwrap());
        let events = [
            Event::TokenRevoked("tok_1".into()),
            Event::AgentRevoked("agt_1".into()),
            Event::AgentSuspended("agt_1".into()),
            Event::AgentReactivated("agt_1".into()),
            Event::KeysChanged(Subject::Uri {
                uri: "https://registry.example".into(),
            }),
            Event::KeysChanged(Subject::Opaque { id: "iss_1".into() }),
        ];
        for (i, event) in events.iter().enumerate() {
            let claims = SetClaims::new(
                event,
                "https://registry.example",
                format!("evt-{i}"),
                100,
                Some(99),
            );
            let set = sign(&key, &claims).unwrap();
            let back = verify(&set, &keys).unwrap();
            assert_eq!(back, claims);
            assert_eq!(back.event().as_ref(), Some(event));
        }
    }

    #[test]
    fn another_type_or_key_is_refused() {
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let other = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let mut keys = KeySet::new();
        keys.insert(crate::keys::VerifyingKey::from_jwk(key.verifying_key().jwk()).unwrap());
        let claims = SetClaims::new(
            &Event::TokenRevoked("tok_1".into()),
            "x",
            "evt-1".into(),
            1,
            None,
        );
        let payload = serde_json::to_vec(&claims).unwrap();
        let wrong_typ = jws::sign_compact(&key, "JWT", &payload).unwrap();
        assert!(matches!(
            verify(&wrong_typ, &keys),
            Err(SetError::WrongType { .. })
        ));
        let wrong_key = sign(&other, &claims).unwrap();
        assert!(matches!(verify(&wrong_key, &keys), Err(SetError::Jws(_))));
    }
}
