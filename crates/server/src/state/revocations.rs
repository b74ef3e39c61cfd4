//! Revoked agents and tokens, as every verify reads them.

use std::collections::{BTreeSet, HashMap, HashSet};

use bonafide_core::ids::{AgentId, TokenId};
use bonafide_store::RevocationFeed;

/// Revoked agents and tokens, mirrored from the store. Agents stay (there are no more
/// of them than agents registered); a token stays only until it is past `exp` plus
/// leeway, when it can no longer verify anyway ([`RevokedSet::forget_expired`]), so
/// memory holds the revocations of live tokens only.
#[derive(Debug, Default)]
pub struct RevokedSet {
    /// Revoked agents.
    pub agents: HashSet<AgentId>,
    /// Revoked tokens and their `exp` (Unix seconds).
    pub(crate) tokens: HashMap<TokenId, i64>,
    /// The same tokens by `exp`, so the dead ones are found without a scan.
    pub(crate) by_expiry: BTreeSet<(i64, TokenId)>,
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
        while let Some((exp, _)) = self.by_expiry.first()
            && *exp <= dead_by
        {
            if let Some((_, jti)) = self.by_expiry.pop_first() {
                self.tokens.remove(&jti);
                forgotten += 1;
            }
        }
        forgotten
    }

    /// Merges a read of the store's revocation feed (revocation is permanent: this
    /// only adds; expiry alone removes).
    pub fn apply(&mut self, feed: RevocationFeed) {
        self.agents.extend(feed.agents);
        for t in feed.tokens {
            self.insert_token(t.jti, t.expires_at_s);
        }
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
