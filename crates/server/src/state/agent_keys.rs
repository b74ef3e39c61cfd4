//! Agents' own keys, ready to verify, and the rule for the key a token is bound to.

use std::sync::Arc;

use bonafide_core::keys::{Jwk, KeyUnusable, KeyValidity, VerifyingKey};
use bonafide_core::token::TokenError;
use bonafide_store::AgentKey;

/// One of an agent's own keys, ready to verify.
#[derive(Debug)]
pub struct AgentKeyEntry {
    /// The stored record.
    pub record: AgentKey,
    /// The key itself.
    pub key: VerifyingKey,
}

/// The agent key a token's `cnf.jkt` names, if it may still be used at `now_ms`:
/// unknown to the agent is `TOKEN_INVALID`; retired by a rotation and past its grace
/// period is `TOKEN_REVOKED` ([`Revoked::AgentKeyRotated`], reason `KEY_ROTATED`);
/// past its `key_expires_at` is `TOKEN_EXPIRED` ([`TokenError::AgentKeyExpired`],
/// reason `KEY_EXPIRED`).
///
/// [`Revoked::AgentKeyRotated`]: bonafide_core::token::Revoked::AgentKeyRotated
pub fn bound_key<'a>(
    keys: &'a [AgentKeyEntry],
    jkt: &str,
    now_ms: i64,
) -> Result<&'a AgentKeyEntry, TokenError> {
    let entry = keys.iter().find(|k| k.record.jkt == jkt).ok_or_else(|| {
        TokenError::Claims("`cnf.jkt` names no registered key of this agent".into())
    })?;
    // The one key-validity rule (core); agent keys are never revoked, only rotated.
    match KeyValidity::agent_key(entry.record.expires_at_ms, entry.record.grace_until_ms)
        .check(now_ms)
    {
        Ok(()) => Ok(entry),
        Err(KeyUnusable::Expired { expires_at_ms }) => Err(TokenError::AgentKeyExpired {
            expired_at_s: expires_at_ms.div_euclid(1000),
        }),
        Err(KeyUnusable::RotatedOut { .. } | KeyUnusable::Revoked { .. }) => Err(
            TokenError::Revoked(bonafide_core::token::Revoked::AgentKeyRotated),
        ),
    }
}

/// Parses stored agent keys; one that no longer parses is skipped with a warning (its
/// tokens then fail as bound to an unknown key) rather than failing every verify.
pub(crate) fn load_agent_keys(records: Vec<AgentKey>) -> Arc<[AgentKeyEntry]> {
    records
        .into_iter()
        .filter_map(|record| {
            let parsed = serde_json::from_str::<Jwk>(&record.jwk)
                .map_err(|e| e.to_string())
                .and_then(|jwk| VerifyingKey::from_jwk(&jwk).map_err(|e| e.to_string()));
            match parsed {
                Ok(key) if key.kid() == record.jkt => Some(AgentKeyEntry { record, key }),
                Ok(_) => {
                    tracing::warn!(agent_id = %record.agent_id, jkt = %record.jkt, "stored agent key does not match its record; ignored");
                    None
                }
                Err(e) => {
                    tracing::warn!(agent_id = %record.agent_id, jkt = %record.jkt, error = %e, "stored agent key does not parse; ignored");
                    None
                }
            }
        })
        .collect()
}

/// A stored key entry for `sk` (agent `agt_` of 7s), for tests: expiring at
/// `expires_at_ms`, and retired with a grace until `grace_until_ms` if given.
#[cfg(test)]
pub(crate) fn test_entry(
    sk: &bonafide_core::keys::SigningKey,
    expires_at_ms: i64,
    grace_until_ms: Option<i64>,
) -> AgentKeyEntry {
    let key = VerifyingKey::from_jwk(sk.verifying_key().jwk()).expect("a generated key");
    AgentKeyEntry {
        record: AgentKey {
            agent_id: bonafide_core::ids::AgentId::from_random([7; 16]),
            jkt: key.kid().to_owned(),
            jwk: serde_json::to_string(key.jwk()).expect("a JWK serialises"),
            alg: key.alg(),
            created_at_ms: 0,
            expires_at_ms,
            retired_at_ms: grace_until_ms.map(|_| 0),
            grace_until_ms,
        },
        key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bonafide_core::keys::{Algorithm, SigningKey};

    fn agent_key(grace_until_ms: Option<i64>, expires_at_ms: i64) -> AgentKeyEntry {
        let sk = SigningKey::generate(Algorithm::EdDSA).unwrap();
        test_entry(&sk, expires_at_ms, grace_until_ms)
    }

    #[test]
    fn a_bound_key_is_usable_until_its_grace_and_its_expiry() {
        use bonafide_core::token::Revoked;
        let current = agent_key(None, 1_000);
        let grace = agent_key(Some(500), 1_000);
        let keys = [current, grace];
        let (cur, old) = (keys[0].record.jkt.clone(), keys[1].record.jkt.clone());
        assert!(bound_key(&keys, &cur, 999).is_ok());
        assert_eq!(
            bound_key(&keys, &cur, 1_000).unwrap_err(),
            TokenError::AgentKeyExpired { expired_at_s: 1 }
        );
        assert!(bound_key(&keys, &old, 499).is_ok());
        // At the edge: grace_until == now is over.
        assert_eq!(
            bound_key(&keys, &old, 500).unwrap_err(),
            TokenError::Revoked(Revoked::AgentKeyRotated)
        );
        assert!(matches!(
            bound_key(&keys, "no-such-key", 0),
            Err(TokenError::Claims(_))
        ));
    }
}
