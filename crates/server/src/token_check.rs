//! A token check, for every route that takes a token: core verifies the signature,
//! header and claims with the right key set (the registry's keys, an issuer's own key,
//! an AgentOAuth consent token's issuer key); the facts the verdict needs are gathered
//! (the only awaits); [`crate::verdict`] decides.

use std::sync::Arc;

use bonafide_core::ids::{AgentId, TokenId};
use bonafide_core::token::{self, AudienceRule, Revoked, TokenError, VerifiedToken, VerifyOptions};
pub use bonafide_core::verifier::{IssuerSigned, MAX_CONSENT_KEYS, Verified};

use crate::error::ApiError;
use crate::state::{AppState, Snapshot, View};

pub use crate::verdict::{Denied, TokenCheck};

/// Pipeline steps 1–4 against `snapshot`'s key sets: core's [`Verified`] token and
/// the issuer key behind it (token-kind dispatch is core's
/// [`bonafide_core::verifier::Verifier`]).
pub fn verify_in(
    state: &AppState,
    snapshot: &Snapshot,
    text: &str,
    opts: &VerifyOptions,
    now_s: i64,
) -> Result<Verified, TokenError> {
    snapshot
        .verifier(state.did_prefix())
        .verify(text, opts, now_s)
}

/// [`verify_in`] against the current snapshot, as the token and its signer.
pub fn verify_signed(
    state: &AppState,
    text: &str,
    opts: &VerifyOptions,
    now_s: i64,
) -> Result<(VerifiedToken, Option<IssuerSigned>), TokenError> {
    verify_in(state, &state.snapshot(), text, opts, now_s).map(|v| (v.token, v.signer))
}

/// Runs pipeline steps 1–5 and the policy-hash check of step 7 against the in-memory
/// keys, revocations, suspensions and parsed policies.
///
/// For an issuer-signed token, after the signature: `sub` must be an agent of the
/// key's issuer (`AGENT_UNKNOWN` otherwise), its scopes must all have been granted to
/// that agent at registration (`TOKEN_INVALID`), and a revoked key makes it
/// `TOKEN_REVOKED` ([`Revoked::Key`]). Its `agent.name`, `agent.issuer` and
/// `agent.description` are the issuer's own words: they are replaced by the
/// registered agent's name and description and the issuer's registered name, so
/// answers show what the registry knows. The agent record is read through
/// [`AppState::agent_record`] (memory, else the store: the only store read of a
/// verify, and only on a cache miss); a store failure there is the `Err`.
pub async fn check_token(
    state: &AppState,
    text: &str,
    audience: AudienceRule,
    now_ms: i64,
) -> Result<TokenCheck, ApiError> {
    check_token_signed(state, text, audience, now_ms).await
}

/// [`check_token`], with the kid (RFC 7638 thumbprint) of the registered issuer key
/// that verified the token, when an issuer signed it itself. That key, never what the
/// token's header names (an AgentOAuth consent token's `kid` is the issuer's own name
/// for its key), is "the key behind" the token: what a delegation records, so that
/// revoking it ends every descendant.
pub async fn check_token_signed(
    state: &AppState,
    text: &str,
    audience: AudienceRule,
    now_ms: i64,
) -> Result<TokenCheck, ApiError> {
    let view = state.view();
    let opts = state.verify_options(audience);
    let checked = verify_in(state, &view.snapshot, text, &opts, now_ms / 1000);
    let Verified {
        token: verified,
        signer,
    } = match checked {
        Ok(v) => v,
        Err(error) => {
            let subject = genuine_subject(state, &view, text, &error, now_ms).await?;
            return Ok(TokenCheck::Denied(Denied { error, subject }));
        }
    };
    // A playground demo token: only the playground's own verifier takes it.
    if let Some(s) = &signer
        && crate::compat::playground::refused_here(&s.issuer_name)
    {
        return Ok(TokenCheck::Denied(Denied {
            error: token::TokenError::Claims(crate::compat::playground::DEMO_ELSEWHERE.into()),
            subject: Some((verified.claims.sub.clone(), verified.claims.jti.clone())),
        }));
    }
    let signer_kid = signer.as_ref().map(|s| s.kid.clone());
    let registered = match &signer {
        Some(_) => state.agent_record(&verified.claims.sub).await?,
        None => None,
    };
    let standing = crate::verdict::standing(
        &view,
        verified,
        signer.as_ref(),
        registered.as_ref(),
        now_ms,
    );
    let verified = match standing {
        Ok(v) => v,
        Err(denied) => return Ok(TokenCheck::Denied(denied)),
    };
    let facts = gather(state, &view.snapshot, &verified.claims, registered, now_ms).await?;
    Ok(
        match crate::verdict::binding(&view, verified, &facts, now_ms) {
            Ok(verified) => TokenCheck::Valid(verified, signer_kid),
            Err(denied) => TokenCheck::Denied(denied),
        },
    )
}

/// The facts the second half of the verdict ([`crate::verdict::binding`]) needs
/// from the caches and the store, for a token in good standing.
async fn gather(
    state: &AppState,
    snapshot: &Snapshot,
    claims: &token::AgentClaims,
    registered: Option<Arc<bonafide_store::Agent>>,
    now_ms: i64,
) -> Result<crate::verdict::Facts, ApiError> {
    let chain = crate::delegation::check(state, snapshot, claims, now_ms).await?;
    let (holder_keys, bearer_refused) = match &claims.cnf {
        // The presenting agent's key: a delegated token is bound to its current actor.
        Some(_) => {
            let holder = bonafide_core::delegation::current_actor(claims);
            (Some(state.agent_keys(holder).await?), false)
        }
        None => (None, bearer_refused(state, claims).await?),
    };
    let policy_revocation = policy_revocation(state, claims, registered.as_deref()).await?;
    Ok(crate::verdict::Facts {
        registered,
        chain,
        holder_keys,
        bearer_refused,
        policy_revocation,
    })
}

/// For a token carrying a consent policy: the id under which its agent's issuer
/// revokes that policy ([`token::policy_revocation_id`] of the issuer and the
/// policy's `id`), whoever signed the token. `None` for a token without a policy, or
/// one whose policy does not match its `policy_hash` (refused by the verdict anyway).
/// The agent record is the one already read for an issuer-signed token, else the
/// verify cache's (the store only on a miss).
async fn policy_revocation(
    state: &AppState,
    claims: &token::AgentClaims,
    registered: Option<&bonafide_store::Agent>,
) -> Result<Option<TokenId>, ApiError> {
    let Ok(Some(policy)) = state.policy_of(claims) else {
        return Ok(None);
    };
    let issuer = match registered {
        Some(agent) => agent.issuer_id.clone(),
        None => match state.agent_record(&claims.sub).await? {
            Some(agent) => agent.issuer_id.clone(),
            // No record of the agent: nothing its issuer revoked can be found.
            None => return Ok(None),
        },
    };
    Ok(Some(token::policy_revocation_id(&issuer, policy.id())))
}

/// The agent and token of a genuine token refused for its claims only (expired, not
/// yet valid, too long-lived, for another audience): its signature verifies with a
/// key of this registry or of the agent's own issuer, so the decision concerns that
/// agent and is logged for its issuer to see. `None` for anything else (a token that
/// does not verify concerns no agent).
async fn genuine_subject(
    state: &AppState,
    view: &View<'_>,
    text: &str,
    error: &TokenError,
    now_ms: i64,
) -> Result<Option<(AgentId, TokenId)>, ApiError> {
    let claims_only = matches!(
        error,
        TokenError::Expired { .. }
            | TokenError::NotYetValid { .. }
            | TokenError::AudienceMismatch(_)
            | TokenError::AudienceUnnamed
            | TokenError::LifetimeTooLong { .. }
    );
    if !claims_only {
        return Ok(None);
    }
    let mut opts = state.verify_options(AudienceRule::Unchecked).into_owned();
    opts.time = token::TimeCheck::Skip;
    opts.max_lifetime_secs = None;
    let Ok(Verified { token: v, signer }) =
        verify_in(state, &view.snapshot, text, &opts, now_ms / 1000)
    else {
        return Ok(None);
    };
    if let Some(signer) = signer {
        // Only an agent of the key's own issuer is named.
        match state.agent_record(&v.claims.sub).await? {
            Some(a) if a.issuer_id == signer.issuer_id => {}
            _ => return Ok(None),
        }
    }
    Ok(Some((v.claims.sub, v.claims.jti)))
}

/// True if an unbound token (no `cnf`) of this presenting agent must be refused: the
/// agent has its own key (registered with it or given one later, so tokens issued
/// before are caught too) and its issuer did not opt out at registration
/// (`allow_bearer_tokens`). Both reads are the verify caches (agent keys, agent
/// record), so the store is touched only on a miss.
async fn bearer_refused(state: &AppState, claims: &token::AgentClaims) -> Result<bool, ApiError> {
    agent_refuses_bearer(state, bonafide_core::delegation::current_actor(claims)).await
}

/// The rule of [`bearer_refused`] for one agent (the token's holder): its tokens must
/// be bound to one of its keys (`cnf.jkt`). A status-list slot asked for such an
/// agent must name that key too (`POST /v1/status-lists/allocations`), or the slot
/// would not follow the key's rotation.
pub(crate) async fn agent_refuses_bearer(
    state: &AppState,
    holder: &AgentId,
) -> Result<bool, ApiError> {
    if state.agent_keys(holder).await?.is_empty() {
        return Ok(false);
    }
    Ok(match state.agent_record(holder).await? {
        Some(agent) => !agent.allow_bearer_tokens,
        // A key without its agent cannot be; refusing is the safe answer.
        None => true,
    })
}

/// The reason that follows the error code when a key or a policy decided it:
/// `POLICY_REVOKED` after `TOKEN_REVOKED` when the token's consent policy was revoked
/// by its agent's issuer, `KEY_REVOKED` after
/// `TOKEN_REVOKED` when the issuer key that signed the token is revoked, `KEY_ROTATED`
/// after `TOKEN_REVOKED` when the agent key it is bound to was rotated out and its
/// grace period is over, `KEY_EXPIRED` after `TOKEN_EXPIRED` when that agent key is
/// past its `key_expires_at`.
pub fn second_reason(error: &TokenError) -> Option<&'static str> {
    match error {
        TokenError::Revoked(Revoked::Key) => Some("KEY_REVOKED"),
        TokenError::Revoked(Revoked::AgentKeyRotated) => Some("KEY_ROTATED"),
        TokenError::Revoked(Revoked::Policy) => Some("POLICY_REVOKED"),
        TokenError::AgentKeyExpired { .. } => Some("KEY_EXPIRED"),
        TokenError::BindingRequired => Some("BINDING_REQUIRED"),
        _ => None,
    }
}
