//! Delegated tokens (RFC 8693 token exchange, `POST /v1/token`) on every verify: the
//! status of the whole chain, the chain shown in answers, and the ancestors' budgets.
//!
//! A child token keeps its root's `sub` and names its actors in `act` and its
//! ancestor tokens in `ancestor_jtis` ([`bonafide_core::delegation`]). Three things
//! follow for a verifier:
//!
//! - **Cascade** ([`check`], called from `check_token` after the token's own status):
//!   every agent of the chain and every ancestor token must be unrevoked and
//!   unsuspended, so revoking or suspending any ancestor makes every descendant fail
//!   on its next verify (`TOKEN_REVOKED` / `AGENT_SUSPENDED`), from memory alone.
//!   Revocations come before suspensions over the whole chain, as for one token.
//! - **Only the registry delegates**: a token with `act` must be one the registry
//!   signed and recorded at exchange time (`Store::delegation`); an issuer-signed
//!   token carrying `act` is `TOKEN_INVALID` (its narrowing was never checked).
//! - **Budgets**: the ancestors' policies are in the ancestor tokens, which a verify of
//!   the child never sees; the exchange records the policies that have a `per_period`
//!   budget ([`bonafide_store::DelegationRecord`]), and a spend of the child charges
//!   each of those budgets too ([`ancestor_budgets`]; the store refuses a charge over
//!   any cap and the decision sees the tightest remaining).
//!
//! Records are read through a cache ([`Cache`]): a delegation never changes, and the
//! chain's agent names never change either, so an entry never goes stale.

use std::collections::HashMap;
use std::sync::Arc;

pub use bonafide_api::verify::Hop;
use bonafide_core::delegation;
use bonafide_core::ids::IssuerId;
use bonafide_core::policy::{self, Policy, Timestamp};
use bonafide_core::token::{AgentClaims, TokenError};
use bonafide_store::{AncestorBudget, AncestorKey, BudgetCharge, BudgetKey, StoreError};

use crate::error::ApiError;
use crate::state::AppState;

/// What a verifier needs of a delegated token beyond its claims.
#[derive(Debug)]
pub struct Chain {
    /// The chain, root first: the subject, then each actor to the current one.
    pub hops: Vec<Hop>,
    /// The keys behind every ancestor token, root first (the issuer key that signed
    /// an issuer-signed root, the agent keys ancestors were bound to).
    pub ancestor_keys: Vec<AncestorKey>,
    /// The parsed policies of the ancestor tokens that have a `per_period` budget,
    /// root first.
    pub ancestor_policies: Vec<Arc<Policy>>,
}

/// Whether a delegated token's chain still stands (see [`check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainStatus {
    /// Every ancestor agent, token and key stands (or the token has no `act`).
    Alive,
    /// What ended it.
    Ended(TokenError),
}

/// The status of a delegated token's chain (a no-op for a token without `act`):
/// `Err` with the token error when the token is not one the registry made by
/// exchange, when an ancestor agent or token is revoked or an ancestor agent
/// suspended, when the issuer key that signed the root token is revoked
/// (`KEY_REVOKED`), or when an agent key an ancestor was bound to was rotated out
/// past its grace period or expired (`KEY_ROTATED`, `KEY_EXPIRED`): whatever ends a
/// parent ends its descendants. The token's own `sub` and `jti` are checked before.
pub async fn check(
    state: &AppState,
    snapshot: &crate::state::Snapshot,
    claims: &AgentClaims,
    now_ms: i64,
) -> Result<ChainStatus, ApiError> {
    let Some(act) = &claims.act else {
        return Ok(ChainStatus::Alive);
    };
    // First whether the registry made it at all: a forged `act` learns nothing about
    // the status of the agents it names.
    if claims.iss != state.config.public_url {
        return Ok(ChainStatus::Ended(TokenError::Claims(
            "a delegated token (`act`) is made only by this registry's token exchange (`POST /v1/token`)".into(),
        )));
    }
    let Some(chain) = chain_of(state, claims).await? else {
        return Ok(ChainStatus::Ended(TokenError::Claims(
            "this delegated token was not made by this registry's token exchange".into(),
        )));
    };
    let actors: Vec<&bonafide_core::ids::AgentId> = act.iter().map(|a| &a.sub).collect();
    if let Some(error) = crate::verdict::chain_standing(
        snapshot,
        &claims.sub,
        &claims.jti,
        &actors,
        claims.ancestor_jtis.as_deref().unwrap_or_default(),
    ) {
        return Ok(ChainStatus::Ended(error));
    }
    for key in &chain.ancestor_keys {
        // An ancestor's consent policy revoked by its issuer (the child may carry a
        // narrower policy of another `id`).
        if let Some(id) = &key.policy_revocation
            && snapshot.revoked(&claims.sub, id).is_some()
        {
            return Ok(ChainStatus::Ended(TokenError::Revoked(
                bonafide_core::token::Revoked::Policy,
            )));
        }
        let agent_keys = match key.jkt {
            Some(_) => state.agent_keys(&key.agent).await?,
            None => Arc::from([]),
        };
        if let Some(error) =
            crate::verdict::key_standing(&snapshot.issuer_keys, &agent_keys, key, now_ms)
        {
            return Ok(ChainStatus::Ended(error));
        }
    }
    Ok(ChainStatus::Alive)
}

/// The chain of a delegated token, from memory or else the store; `None` for a token
/// without `act`, or one whose delegation the registry never recorded.
pub async fn chain_of(
    state: &AppState,
    claims: &AgentClaims,
) -> Result<Option<Arc<Chain>>, ApiError> {
    if claims.act.is_none() {
        return Ok(None);
    }
    if let Some(c) = state.delegations.get(&claims.jti) {
        return Ok(Some(c));
    }
    let Some(record) = state.store.delegation(&claims.jti).await? else {
        return Ok(None);
    };
    let mut hops = Vec::new();
    for agent in delegation::chain(claims) {
        let name = state
            .agent_record(agent)
            .await?
            .map(|a| a.name.clone())
            .unwrap_or_default();
        hops.push(Hop {
            agent_id: agent.to_string(),
            name,
        });
    }
    let ancestor_policies = record
        .ancestor_policies
        .iter()
        .map(|text| {
            Policy::parse(text.as_bytes()).map(Arc::new).map_err(|e| {
                ApiError::from(StoreError::Backend(format!(
                    "stored ancestor policy of {}: {e}",
                    claims.jti
                )))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let chain = Arc::new(Chain {
        hops,
        ancestor_keys: record.ancestor_keys.clone(),
        ancestor_policies,
    });
    state
        .delegations
        .insert(claims.jti.clone(), Arc::clone(&chain));
    Ok(Some(chain))
}

/// The chain for a verify answer: root first; empty for a token without `act`.
pub async fn hops(state: &AppState, claims: &AgentClaims) -> Result<Vec<Hop>, ApiError> {
    Ok(chain_of(state, claims)
        .await?
        .map(|c| c.hops.clone())
        .unwrap_or_default())
}

/// The budget a policy's `per_period` limit makes for `issuer` at `now`: one per
/// issuer, policy (`id#hash`: two policies reusing an id never share one), period
/// and currency. `None` for a policy without a period budget.
pub fn budget_of(
    policy: &Policy,
    issuer: &IssuerId,
    now: Timestamp,
) -> Option<(BudgetKey, policy::Decimal)> {
    let limits = policy.limits()?;
    let (cap, period) = limits.per_period?;
    let window = policy::period_of(period, policy.zone(), now).ok()?;
    Some((
        BudgetKey {
            issuer_id: issuer.clone(),
            policy_id: format!("{}#{}", policy.id(), policy.hash()),
            period_key: window.key,
            currency: limits.currency.code().to_owned(),
        },
        cap,
    ))
}

/// The ancestors' budgets a spend of a delegated token also charges, at `now`.
/// Each in its own policy's zone (its period may start at another instant than the
/// child's). Exchange refuses a child whose limits are in another currency than its
/// parent's, so all share the child's currency.
pub fn ancestor_budgets(
    chain: Option<&Chain>,
    issuer: &IssuerId,
    now: Timestamp,
) -> Vec<AncestorBudget> {
    chain
        .map(|c| {
            c.ancestor_policies
                .iter()
                .filter_map(|p| budget_of(p, issuer, now))
                .map(|(key, cap)| AncestorBudget { key, cap })
                .collect()
        })
        .unwrap_or_default()
}

/// What a decision charging `charge` sees as spent, read from the store now (for
/// `POST /v1/simulate`, which records nothing): the tightest of its own and its
/// ancestors' budgets ([`BudgetCharge::seen_spent`]).
pub async fn seen_spent(
    state: &AppState,
    charge: &BudgetCharge,
) -> Result<policy::Decimal, ApiError> {
    let mut spent = HashMap::new();
    for key in std::iter::once(&charge.key).chain(charge.ancestors.iter().map(|a| &a.key)) {
        if !spent.contains_key(key) {
            spent.insert(key.clone(), state.store.budget_spent(key).await?);
        }
    }
    Ok(charge.seen_spent(|k| spent.get(k).copied().unwrap_or_default()))
}
