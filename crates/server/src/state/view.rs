//! The verdict's view of the read model.

use std::sync::Arc;

use bonafide_core::ids::{AgentId, TokenId};
use bonafide_core::policy::Policy;
use bonafide_core::token::{AgentClaims, TokenError};

use super::{AppState, Snapshot};

/// The verdict's view of the read model: one snapshot, and the policy cache.
#[derive(Debug)]
pub struct View<'a> {
    /// The snapshot every rule of one decision reads.
    pub snapshot: Arc<Snapshot>,
    state: &'a AppState,
}

impl AppState {
    /// One snapshot for one decision (see [`View`]).
    pub fn view(&self) -> View<'_> {
        View {
            snapshot: self.snapshot(),
            state: self,
        }
    }
}

impl crate::verdict::Standing for View<'_> {
    fn revoked(&self, agent: &AgentId, jti: &TokenId) -> Option<bonafide_core::token::Revoked> {
        self.snapshot.revoked(agent, jti)
    }
    fn agent_revoked(&self, agent: &AgentId) -> bool {
        self.snapshot.agent_revoked(agent)
    }
    fn suspended(&self, agent: &AgentId) -> bool {
        self.snapshot.suspended(agent)
    }
}

impl crate::verdict::Standing for Snapshot {
    fn revoked(&self, agent: &AgentId, jti: &TokenId) -> Option<bonafide_core::token::Revoked> {
        Snapshot::revoked(self, agent, jti)
    }
    fn agent_revoked(&self, agent: &AgentId) -> bool {
        Snapshot::agent_revoked(self, agent)
    }
    fn suspended(&self, agent: &AgentId) -> bool {
        Snapshot::suspended(self, agent)
    }
}

impl crate::verdict::Snapshot for View<'_> {
    fn policy_of(&self, claims: &AgentClaims) -> Result<Option<Arc<Policy>>, TokenError> {
        self.state.policy_of(claims)
    }
}
