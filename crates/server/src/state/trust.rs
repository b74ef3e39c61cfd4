//! What an agent's answers say of its issuer's trust: `domain_verified` while the
//! issuer's domain verification is in force, else `registered`.

use bonafide_core::ids::{AgentId, IssuerId};
use bonafide_store::StoreError;

use super::{AppState, Snapshot};

impl AppState {
    /// The domain an issuer has verified, if that verification is in force (memory
    /// only: hot path): verified less than [`Config::domain_verification_ttl`] ago,
    /// with a key that is still the issuer's and unrevoked.
    pub fn verified_domain(
        &self,
        snapshot: &Snapshot,
        issuer: &IssuerId,
        now_ms: i64,
    ) -> Option<String> {
        let ttl =
            i64::try_from(self.config.domain_verification_ttl.as_millis()).unwrap_or(i64::MAX);
        snapshot.verified_domain(issuer, now_ms, ttl)
    }

    /// `domain_verified` if the agent's issuer has a verified domain in force (see
    /// [`AppState::verified_domain`]), else `registered`; `None` for an agent not
    /// registered here.
    pub async fn trust_level(
        &self,
        agent: &AgentId,
        now_ms: i64,
    ) -> Result<Option<&'static str>, StoreError> {
        Ok(self.issuer_domain_of(agent, now_ms).await?.map(|domain| {
            if domain.is_some() {
                "domain_verified"
            } else {
                "registered"
            }
        }))
    }

    /// The domain the agent's issuer has verified and that is in force (see
    /// [`AppState::verified_domain`]): what `trust_level: "domain_verified"` is about,
    /// for answers to show beside it as `issuer_domain`. `None` otherwise, and for an
    /// agent not registered here.
    pub async fn issuer_domain(
        &self,
        agent: &AgentId,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        Ok(self.issuer_domain_of(agent, now_ms).await?.flatten())
    }

    /// `None` for an agent not registered here, else its issuer's domain in force.
    async fn issuer_domain_of(
        &self,
        agent: &AgentId,
        now_ms: i64,
    ) -> Result<Option<Option<String>>, StoreError> {
        let Some(issuer) = self.issuer_of(agent).await? else {
            return Ok(None);
        };
        Ok(Some(self.verified_domain(
            &self.snapshot(),
            &issuer,
            now_ms,
        )))
    }
}
