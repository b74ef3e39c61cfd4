//! The one write path: a store operation, then the change it made reflected in the
//! read model, together.
//!
//! Every route that changes something verifies read from memory (revocations,
//! suspensions, issuer keys, verified domains, agent keys) goes through
//! [`AppState::commit`]: the store call and the in-memory change run in one task a
//! client hang-up cannot cancel (a dropped request future would otherwise leave the
//! commit without its mirror), under the lock that serialises that part of the read
//! model with its periodic refresh, so an older snapshot never replaces a newer one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bonafide_core::ids::AgentId;
use bonafide_store::Agent;

use crate::error::ApiError;
use crate::state::{AppState, Revoked};

/// The part of the read model a write changes: which lock it takes first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Revoked agents and tokens (a set only ever added to: no lock needed).
    Revocations,
    /// Suspended agents.
    Suspensions,
    /// Issuers' own keys (reloaded whole).
    IssuerKeys,
    /// Issuers' verified domains (reloaded whole).
    IssuerDomains,
    /// One agent's cached keys: dropped after the write, whatever its outcome (the
    /// next verify reads the store).
    AgentKeys(AgentId),
}

/// What a committed write changed, for the read model.
#[derive(Debug)]
pub enum Change {
    /// An agent or a token revoked.
    Revoked(Revoked),
    /// An agent's suspension state as stored now.
    Suspension(Box<Agent>),
    /// The part's whole snapshot must be read again (issuer keys, domains), or its
    /// entry dropped (agent keys).
    Reload,
}

/// A store write: runs once, in the commit task.
pub type Write<T> = Box<
    dyn FnOnce(Arc<AppState>) -> Pin<Box<dyn Future<Output = Result<(T, Change), ApiError>> + Send>>
        + Send,
>;

impl AppState {
    /// Runs `write` (a store operation returning its result and what it changed) and
    /// applies the change to the read model, in a task a client hang-up cannot cancel,
    /// holding `part`'s lock across both. `what` names the task in the error if it
    /// panics.
    pub async fn commit<T: Send + 'static>(
        self: &Arc<Self>,
        what: &'static str,
        part: Part,
        write: Write<T>,
    ) -> Result<T, ApiError> {
        let state = Arc::clone(self);
        tokio::spawn(async move { state.commit_here(part, write).await })
            .await
            .map_err(|e| ApiError::internal(format!("{what} task: {e}")))?
    }

    async fn commit_here<T>(self: Arc<Self>, part: Part, write: Write<T>) -> Result<T, ApiError> {
        match part {
            Part::Revocations => {
                let (value, change) = write(Arc::clone(&self)).await?;
                if let Change::Revoked(what) = change {
                    self.mark_revoked(what);
                }
                Ok(value)
            }
            Part::Suspensions => {
                let suspensions = self.suspensions().await;
                let (value, change) = write(Arc::clone(&self)).await?;
                if let Change::Suspension(agent) = &change {
                    suspensions.mirror(agent);
                }
                Ok(value)
            }
            Part::IssuerKeys => {
                let serial = self.issuer_key_write().await;
                let (value, _) = write(Arc::clone(&self)).await?;
                self.reload_issuer_keys(&serial).await?;
                Ok(value)
            }
            Part::IssuerDomains => {
                let serial = self.issuer_domain_write().await;
                let (value, _) = write(Arc::clone(&self)).await?;
                self.reload_issuer_domains(&serial).await?;
                Ok(value)
            }
            Part::AgentKeys(agent) => {
                let written = write(Arc::clone(&self)).await;
                self.forget_agent_keys(&agent);
                written.map(|(value, _)| value)
            }
        }
    }
}
