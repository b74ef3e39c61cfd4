//! Revoked agents and tokens, as every verify reads them.

use imbl::{HashMap, HashSet, OrdSet};

use bonafide_core::ids::{AgentId, TokenId};

/// Revoked agents and tokens, mirrored from the store. Agents stay (there are no more
/// of them than agents registered); a token stays only until it is past `exp` plus
/// leeway, when it can no longer verify anyway ([`RevokedSet::forget_expired`]), so
/// memory holds the revocations of live tokens only.
///
/// Persistent collections: a clone is O(1) and shares structure, so the read model
/// makes a new snapshot per revocation without copying the set.
#[derive(Debug, Default, Clone)]
pub struct RevokedSet {
    /// Revoked agents.
    pub agents: HashSet<AgentId>,
    /// Revoked tokens and their `exp` (Unix seconds).
    pub(crate) tokens: HashMap<TokenId, i64>,
    /// The same tokens by `exp`, so the dead ones are found without a scan.
    pub(crate) by_expiry: OrdSet<(i64, TokenId)>,
}

impl RevokedSet {
    /// Adds a revoked token. The same `jti` revoked with another `exp` (an issuer may
    /// reuse a `jti` in tokens it signs itself) is kept until the later one.
    pub fn insert_token(&mut self, jti: TokenId, expires_at_s: i64) {
        if let Some(&known) = self.tokens.get(&jti) {
            if known >= expires_at_s {
                return;
            }
            self.by_expiry.remove(&(known, jti.clone()));
        }
        self.by_expiry.insert((expires_at_s, jti.clone()));
        self.tokens.insert(jti, expires_at_s);
    }

    /// True if the token is revoked (and not yet forgotten as expired).
    pub fn contains_token(&self, jti: &TokenId) -> bool {
        self.tokens.contains_key(jti)
    }

    /// The earliest `exp` of a held token, if any: when [`RevokedSet::forget_expired`]
    /// next has something to do.
    pub fn earliest_expiry(&self) -> Option<i64> {
        self.by_expiry.get_min().map(|(exp, _)| *exp)
    }

    /// How many revoked tokens are held.
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// Forgets the tokens that can no longer verify at `now_s`: core refuses a token
    /// as expired once `now - leeway >= exp`, so those with `exp <= now_s - leeway_s`.
    /// Returns how many were forgotten.
    pub fn forget_expired(&mut self, now_s: i64, leeway_s: i64) -> usize {
        let dead_by = now_s.saturating_sub(leeway_s);
        let mut forgotten = 0;
        while let Some((exp, _)) = self.by_expiry.get_min()
            && *exp <= dead_by
        {
            if let Some((_, jti)) = self.by_expiry.remove_min() {
                self.tokens.remove(&jti);
                forgotten += 1;
            }
        }
        forgotten
    }
}

/// Something just revoked in the store.
#[derive(Debug)]
pub enum Revoked {
    /// An agent (and so all its tokens).
    Agent(AgentId),
    /// One token, remembered until its `exp` (plus leeway).
    Token {
        /// Its `jti`.
        jti: TokenId,
        /// Its `exp`, Unix seconds, as stored.
        expires_at_s: i64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jti(n: u8) -> TokenId {
        TokenId::from_random([n; 16])
    }

    #[test]
    fn revoked_tokens_are_forgotten_once_past_exp_plus_leeway() {
        let mut set = RevokedSet::default();
        let agent = AgentId::from_random([9; 16]);
        set.agents.insert(agent.clone());
        set.insert_token(jti(1), 1_000);
        set.insert_token(jti(2), 2_000);
        // Core still accepts a token at now - leeway < exp: it must stay revoked.
        assert_eq!(set.forget_expired(1_059, 60), 0);
        assert!(set.contains_token(&jti(1)));
        // At the edge, now - leeway == exp, core refuses it as expired.
        assert_eq!(set.forget_expired(1_060, 60), 1);
        assert!(!set.contains_token(&jti(1)));
        assert!(set.contains_token(&jti(2)));
        assert_eq!(set.token_count(), 1);
        // Agents are never forgotten: their tokens have no single expiry.
        assert_eq!(set.forget_expired(i64::MAX, 0), 1);
        assert_eq!(set.token_count(), 0);
        assert!(set.agents.contains(&agent));
        // Far from the clock's ends, nothing overflows.
        set.insert_token(jti(3), i64::MIN);
        assert_eq!(set.forget_expired(i64::MIN, i64::MAX), 1);
    }

    #[test]
    fn a_jti_revoked_twice_is_kept_until_its_later_expiry() {
        let mut set = RevokedSet::default();
        set.insert_token(jti(1), 2_000);
        set.insert_token(jti(1), 1_000);
        set.insert_token(jti(1), 1_500);
        assert_eq!(set.forget_expired(1_600, 0), 0);
        assert!(set.contains_token(&jti(1)));
        assert_eq!(set.forget_expired(2_000, 0), 1);
        assert!(!set.contains_token(&jti(1)));
        assert_eq!(set.by_expiry.len(), 0);
    }
}
