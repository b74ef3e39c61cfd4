//! The one write path: a store operation, then the change it made reflected in the
//! read model, together.
//!
//! Every route that changes something verifies read from memory (revocations,
//! suspensions, signing and issuer keys, verified domains, agent keys) goes through
//! [`AppState::commit`]: the store call and the [`Change`] it returns are applied to
//! the read model in one task a client hang-up cannot cancel (a dropped request
//! future would otherwise leave the commit without its change), under the read
//! model's one lock, which its refresh takes too, so an older snapshot never
//! replaces a newer one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bonafide_core::ids::AgentId;

use crate::error::ApiError;
use crate::state::AppState;
pub use crate::state::Change;
use crate::state::read_model::RefreshAt;

/// The part of the read model a write changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Revoked agents and tokens.
    Revocations,
    /// Suspended agents.
    Suspensions,
    /// The registry's signing keys.
    SigningKeys,
    /// Issuers' own keys.
    IssuerKeys,
    /// Issuers' verified domains.
    IssuerDomains,
    /// One agent's cached keys: dropped after the write, whatever its outcome (a
    /// write that failed late may still have committed; the next verify reads the
    /// store).
    AgentKeys(AgentId),
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
        let mut writer = self.model.lock().await;
        let written = write(Arc::clone(&self)).await;
        if let Part::AgentKeys(agent) = &part {
            self.forget_agent_keys(agent);
        }
        let (value, change) = written?;
        let at = RefreshAt {
            now_s: self.now_ms() / 1000,
            leeway_s: self.config.leeway_secs,
        };
        writer.apply_change(self.store.as_ref(), change, at).await?;
        drop(writer);
        self.note_committed();
        Ok(value)
    }
}
