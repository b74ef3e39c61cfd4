//! The caches of store records that never change once written (parsed policies,
//! agent records, agents' keys, receivers' audiences, API keys until revoked), beside
//! the read model's snapshot: each one [`Bounded`](crate::bounded::Bounded); a local
//! write drops what it changed, and the change feed what other processes changed.

use std::sync::Arc;

use bonafide_core::apikey::ApiKeyHash;
use bonafide_core::ids::{AgentId, IssuerId, ReceiverId};
use bonafide_core::policy::Policy;
use bonafide_core::token::{self, AgentClaims, TokenError};
use bonafide_store::{Agent, ApiKeyRecord, StoreError};

use super::agent_keys::load_agent_keys;
use super::{AgentKeyEntry, AppState};

/// How often a key's `last_used_at` is written, at most, per process.
pub const KEY_USE_EVERY_MS: i64 = 60_000;
/// Most keys whose last write time is remembered.
const MAX_KEY_USES: usize = 1 << 16;

impl AppState {
    /// Pipeline step 7 for a token's policy, through the cache: the parsed policy
    /// whose JSON equals the token's and whose hash is the token's `policy_hash`.
    pub fn policy_of(&self, claims: &AgentClaims) -> Result<Option<Arc<Policy>>, TokenError> {
        let (Some(value), Some(hash)) = (&claims.policy, &claims.policy_hash) else {
            return token::policy_of(claims).map(|p| p.map(Arc::new));
        };
        // Same hash text and same JSON: the cached parse is this token's policy.
        if let Some(p) = self.policies.get_if(hash, |p| p.as_value() == value) {
            return Ok(Some(p));
        }
        let Some(parsed) = token::policy_of(claims)? else {
            return Ok(None);
        };
        let parsed = Arc::new(parsed);
        self.policies.insert(hash.clone(), Arc::clone(&parsed));
        Ok(Some(parsed))
    }

    /// The issuer of an agent, from memory or else the store; `None` if the agent is
    /// not registered here.
    pub async fn issuer_of(&self, agent: &AgentId) -> Result<Option<IssuerId>, StoreError> {
        Ok(self.agent_record(agent).await?.map(|a| a.issuer_id.clone()))
    }

    /// An agent's record as registered, from memory or else the store; `None` if the
    /// agent is not registered here (not cached: it may be registered later). Only
    /// what never changes may be read from it: not `status`, nor its times.
    pub async fn agent_record(&self, agent: &AgentId) -> Result<Option<Arc<Agent>>, StoreError> {
        if let Some(a) = self.agents.get(agent) {
            return Ok(Some(a));
        }
        let Some(record) = self.store.agent(agent).await? else {
            return Ok(None);
        };
        let record = Arc::new(record);
        self.agents.insert(agent.clone(), Arc::clone(&record));
        Ok(Some(record))
    }

    /// An agent's own keys (current and retired, oldest first), from memory if read
    /// from the store less than [`Config::key_refresh`] ago, else from the store.
    pub async fn agent_keys(&self, agent: &AgentId) -> Result<Arc<[AgentKeyEntry]>, StoreError> {
        if let Some(keys) = self.agent_keys.get(agent) {
            return Ok(keys);
        }
        // Kept only if no key write dropped an entry meanwhile: read before a
        // registration or rotation committed, it would hide the new key.
        let fill = self.agent_keys.start_fill(agent);
        let keys = load_agent_keys(self.store.agent_keys(agent).await?);
        self.agent_keys.fill(fill, agent.clone(), Arc::clone(&keys));
        Ok(keys)
    }

    /// The audiences a receiver verifies as (`None`: no such receiver), through a
    /// cache like [`AppState::agent_keys`]'s.
    pub async fn receiver_audiences(
        &self,
        receiver: &ReceiverId,
    ) -> Result<Option<Arc<[String]>>, StoreError> {
        if let Some(list) = self.receiver_audiences.get(receiver) {
            return Ok(Some(list));
        }
        let fill = self.receiver_audiences.start_fill(receiver);
        let Some(record) = self.store.receiver(receiver).await? else {
            return Ok(None);
        };
        let list: Arc<[String]> = record.audiences.into();
        self.receiver_audiences
            .fill(fill, receiver.clone(), Arc::clone(&list));
        Ok(Some(list))
    }

    /// The API key stored with this hash (`None`: unknown or revoked), from memory or
    /// else the store: every authenticated request asks.
    pub async fn api_key(
        &self,
        hash: &ApiKeyHash,
    ) -> Result<Option<Arc<ApiKeyRecord>>, StoreError> {
        if let Some(record) = self.api_keys.get(hash) {
            return Ok(Some(record));
        }
        // Cached only if no revocation was applied while the store was read: the
        // record read may predate it, and a revoked key must never come back.
        let fill = self.api_keys.start_fill(hash);
        let Some(record) = self.store.api_key(hash).await? else {
            return Ok(None);
        };
        let record = Arc::new(record);
        self.api_keys.fill(fill, *hash, Arc::clone(&record));
        Ok(Some(record))
    }

    /// Drops a revoked API key from the cache; a lookup reading the store meanwhile
    /// does not put it back.
    ///
    /// INVARIANT: call after the revocation commits and before answering, and for
    /// every `ApiKeyRevoked` the change feed brings.
    pub fn forget_api_key(&self, hash: &ApiKeyHash) {
        self.api_keys.remove(hash);
    }

    /// Records that a key authenticated a request: its `last_used_at` is written at
    /// most once a [`KEY_USE_EVERY_MS`] per key and process, by a task of its own, so
    /// the request (a verify) never waits on a write. A failed write is only logged:
    /// the time is telemetry.
    pub fn note_key_use(&self, hash: &ApiKeyHash) {
        let now = self.now_ms();
        {
            let mut uses = self
                .key_uses
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if uses
                .get(hash)
                .is_some_and(|&at| now - at < KEY_USE_EVERY_MS)
            {
                return;
            }
            // Keys are few; the bound only keeps a pathological registry from
            // growing this without end (a cleared map costs one write per key).
            if uses.len() >= MAX_KEY_USES {
                uses.clear();
            }
            uses.insert(*hash, now);
        }
        let store = Arc::clone(&self.store);
        let hash = *hash;
        tokio::spawn(async move {
            if let Err(e) = store.touch_api_key(&hash, now).await {
                tracing::warn!(key = %hash.public_id(), error = %e, "could not record a key's last use");
            }
        });
    }

    /// Drops the cached audiences of a receiver.
    ///
    /// INVARIANT: call after a local change commits and before answering.
    pub fn forget_receiver(&self, receiver: &ReceiverId) {
        self.receiver_audiences.remove(receiver);
    }

    /// Drops the cached keys of an agent, and refuses every fill of its bucket (its
    /// own among them) read before (it may predate the change).
    ///
    /// INVARIANT: call after a local key change (a registration with a key, a
    /// rotation) commits and before answering, so the next verify in this process
    /// reads the new key set.
    pub fn forget_agent_keys(&self, agent: &AgentId) {
        self.agent_keys.remove(agent);
    }
}
