//! A token check, for every route that takes a token: core verifies the signature,
//! header and claims with the right key set (the registry's keys, an issuer's own key,
//! an AgentOAuth consent token's issuer key); the facts the verdict needs are gathered
//! (the only awaits); [`crate::verdict`] decides.

use std::sync::Arc;

use bonafide_core::consent;
use bonafide_core::ids::IssuerId;
use bonafide_core::ids::{AgentId, TokenId};
use bonafide_core::jws::{self, Compact, Header};
use bonafide_core::keys::{Algorithm, VerifyingKey};
use bonafide_core::token::{
    self, AgentInfo, AudienceRule, KeyResolver, KeySet, Revoked, TokenError, VerifiedToken,
    VerifyOptions,
};

use crate::error::ApiError;
use crate::state::{AppState, IssuerKeyEntry, IssuerKeyRing};

pub use crate::verdict::{Denied, IssuerSigned, TokenCheck};

/// Most of one issuer's EdDSA keys tried for a consent token whose `kid` is not a
/// thumbprint: it bounds the signature checks one token can cost. An issuer with more
/// keys makes its consent tokens name the key by its thumbprint.
pub const MAX_CONSENT_KEYS: usize = 8;

/// True if a consent token's `iss` names this key's issuer: its id (`iss_…`), or
/// (if `iss` is not an issuer id) the name the issuer holds, in any spelling
/// [`bonafide_core::names::issuer_name_key`] makes one (case, `https://`, trailing
/// dots). Ids are unique and a name has at most one holder, so an `iss` names at most
/// one issuer.
fn names_issuer(iss: &str, entry: &IssuerKeyEntry) -> bool {
    if IssuerId::try_from(iss).is_ok() {
        return iss == entry.issuer_id.as_str();
    }
    entry
        .issuer_name_key
        .as_deref()
        .is_some_and(|key| key == bonafide_core::names::issuer_name_key(iss))
}

/// An AgentOAuth consent token ([`consent`]), verified with a registered EdDSA issuer
/// key, never one the token offers. The header `kid` is the issuer's own name for the
/// key: if it is a registered thumbprint that key is used; otherwise the unverified
/// `iss` only picks the issuer ([`names_issuer`]: exactly one), and its EdDSA keys,
/// no other issuer's, are tried (unrevoked first, at most [`MAX_CONSENT_KEYS`]); the
/// token is accepted only if one verifies and its `iss` names that key's issuer. The
/// `agent` must be an `agt_…` id or the agent's `did:web` (`AGENT_UNKNOWN` otherwise;
/// [`check_token`] then checks it is that issuer's). The result is in the agent-token
/// shape, so every later rule applies unchanged.
fn verify_consent(
    state: &AppState,
    ring: &IssuerKeyRing,
    text: &str,
    candidate: &consent::dangerous::Candidate,
    opts: &VerifyOptions,
    now_s: i64,
) -> Result<(VerifiedToken, Option<IssuerSigned>), TokenError> {
    let named = ring
        .get(&candidate.header.kid)
        .filter(|e| e.key.alg() == Algorithm::EdDSA);
    let entries: Vec<&IssuerKeyEntry> = match (named, &candidate.iss) {
        (Some(entry), _) => vec![entry],
        (None, None) => return Err(TokenError::Claims("`iss` is required".into())),
        (None, Some(iss)) => {
            let mut found: Vec<_> = ring
                .entries()
                .filter(|e| e.key.alg() == Algorithm::EdDSA && names_issuer(iss, e))
                .collect();
            // `names_issuer` names one issuer at most (ids and name keys are unique);
            // were that ever broken, no issuer is picked rather than a mix whose
            // keys crowd each other out.
            let first = found.first().map(|e| e.issuer_id.clone());
            if found.is_empty() || found.iter().any(|e| Some(&e.issuer_id) != first.as_ref()) {
                return Err(TokenError::IssuerUnknown(iss.chars().take(128).collect()));
            }
            found.sort_by(|a, b| {
                (
                    a.revoked_at_ms.is_some(),
                    std::cmp::Reverse(a.revoked_at_ms),
                    a.key.kid(),
                )
                    .cmp(&(
                        b.revoked_at_ms.is_some(),
                        std::cmp::Reverse(b.revoked_at_ms),
                        b.key.kid(),
                    ))
            });
            found.truncate(MAX_CONSENT_KEYS);
            found
        }
    };
    let mut error = TokenError::UnknownKey;
    for entry in entries {
        let mut opts = opts.clone();
        // The token's own spelling of the issuer, once it names this key's issuer;
        // any other `iss` fails as `ISSUER_UNKNOWN` after the signature.
        opts.issuers = match &candidate.iss {
            Some(iss) if names_issuer(iss, entry) => vec![iss.clone()],
            _ => vec![entry.issuer_id.to_string()],
        };
        let verified = match consent::verify(text, &entry.key, &opts, now_s) {
            Ok(v) => v,
            Err(TokenError::BadSignature) => {
                error = TokenError::BadSignature;
                continue;
            }
            Err(e) => return Err(e),
        };
        let agent_id = verified
            .agent_id(&state.agent_did(""))
            .ok_or(TokenError::AgentUnknown)?;
        let header = verified.header.clone();
        let version = verified.claims.version;
        let consent_scopes = verified.claims.scope.as_ref().map(|s| {
            s.split(' ')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        });
        // Name, description and scopes come from the registration in `check_token`.
        let agent = AgentInfo {
            name: String::new(),
            issuer: entry.issuer_name.clone(),
            scopes: Vec::new(),
            description: None,
        };
        let claims = verified.into_agent_claims(&entry.issuer_id, agent_id, agent, now_s)?;
        let signer = IssuerSigned {
            kid: entry.key.kid().to_owned(),
            issuer_id: entry.issuer_id.clone(),
            issuer_name: entry.issuer_name.clone(),
            revoked_at_ms: entry.revoked_at_ms,
            consent: Some(version),
            consent_scopes,
        };
        return Ok((VerifiedToken { header, claims }, Some(signer)));
    }
    Err(error)
}

/// A resolver of exactly one key, with the header segment already matched to it when
/// the token's header is byte for byte the one Bonafide writes for that key.
struct OneKey<'a> {
    key: &'a VerifyingKey,
    known: Option<(&'a str, &'a Header)>,
}

impl KeyResolver for OneKey<'_> {
    fn key(&self, kid: &str) -> Option<&VerifyingKey> {
        (kid == self.key.kid()).then_some(self.key)
    }

    fn known_header(&self, header_b64: &str) -> Option<(&Header, &VerifyingKey)> {
        let (b64, header) = self.known?;
        (b64 == header_b64).then_some((header, self.key))
    }
}

/// The registered issuer key a token's header `kid` names, if it names one and not a
/// key of the registry's own (the registry's keys are looked up first). Anything
/// malformed is left to [`token::verify`] to refuse with its precise error.
fn issuer_key_for<'a>(
    registry: &KeySet,
    issuer_keys: &'a IssuerKeyRing,
    compact: Option<&Compact<'_>>,
    opts: &VerifyOptions,
) -> Option<&'a IssuerKeyEntry> {
    if issuer_keys.is_empty() {
        return None;
    }
    let header = jws::decode_header(compact?.header_b64, opts.json).ok()?;
    if registry.key(&header.kid).is_some() {
        return None;
    }
    issuer_keys.get(&header.kid)
}

/// Pipeline steps 1–4 with the key the token's header `kid` picks: the registry's
/// keys first, else a registered issuer key. An issuer-signed token must carry that
/// key's issuer id in `iss` (any other `iss` is `ISSUER_UNKNOWN`, so one issuer's key
/// never speaks for another issuer). Revocation of the issuer key is not checked here:
/// the caller decides what a revoked key means (see [`check_token`]).
pub fn verify_signed(
    state: &AppState,
    text: &str,
    opts: &VerifyOptions,
    now_s: i64,
) -> Result<(VerifiedToken, Option<IssuerSigned>), TokenError> {
    let keys = state.keys.load();
    let issuer_keys = state.issuer_keys.load();
    let compact = Compact::split(text, opts.max_token_bytes).ok();
    // The header is read once: a header the registry writes (the common case) or one
    // `bonafide token sign` writes for a registered key picks its key by map lookup.
    let header_b64 = compact.as_ref().map(|c| c.header_b64);
    if let Some(b64) = header_b64 {
        if keys.verifying.known_header(b64).is_some() {
            return token::verify(text, &keys.verifying, opts, now_s).map(|v| (v, None));
        }
        if let Some((header, entry)) = issuer_keys.known_header(b64) {
            let resolver = OneKey {
                key: &entry.key,
                known: Some((b64, header)),
            };
            return verify_issuer_signed(text, entry, &resolver, opts, now_s);
        }
    }
    if !issuer_keys.is_empty()
        && let Some(candidate) = consent::dangerous::candidate(text, opts)
    {
        return verify_consent(state, &issuer_keys, text, &candidate, opts, now_s);
    }
    if let Some(entry) = issuer_key_for(&keys.verifying, &issuer_keys, compact.as_ref(), opts) {
        let resolver = OneKey {
            key: &entry.key,
            known: None,
        };
        return verify_issuer_signed(text, entry, &resolver, opts, now_s);
    }
    token::verify(text, &keys.verifying, opts, now_s).map(|v| (v, None))
}

/// Steps 1–4 for a token signed by a registered issuer key: its `iss` must be that
/// key's issuer id.
fn verify_issuer_signed(
    text: &str,
    entry: &IssuerKeyEntry,
    resolver: &OneKey<'_>,
    opts: &VerifyOptions,
    now_s: i64,
) -> Result<(VerifiedToken, Option<IssuerSigned>), TokenError> {
    let mut opts = opts.clone();
    opts.issuers = vec![entry.issuer_id.to_string()];
    let mut verified = token::verify(text, resolver, &opts, now_s)?;
    // The issuer chose `jti`: from here on the token is known by (issuer, jti).
    verified.claims.jti = token::issuer_signed_token_id(&entry.issuer_id, &verified.claims.jti);
    let signer = IssuerSigned {
        kid: entry.key.kid().to_owned(),
        issuer_id: entry.issuer_id.clone(),
        issuer_name: entry.issuer_name.clone(),
        revoked_at_ms: entry.revoked_at_ms,
        consent: None,
        consent_scopes: None,
    };
    Ok((verified, Some(signer)))
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
    let checked = verify_signed(state, text, &state.verify_options(audience), now_ms / 1000);
    let (verified, signer) = match checked {
        Ok(v) => v,
        Err(error) => {
            let subject = genuine_subject(state, text, &error, now_ms).await?;
            return Ok(TokenCheck::Denied(Denied { error, subject }));
        }
    };
    let signer_kid = signer.as_ref().map(|s| s.kid.clone());
    let registered = match &signer {
        Some(_) => state.agent_record(&verified.claims.sub).await?,
        None => None,
    };
    let standing = crate::verdict::standing(
        state,
        verified,
        signer.as_ref(),
        registered.as_ref(),
        now_ms,
    );
    let verified = match standing {
        Ok(v) => v,
        Err(denied) => return Ok(TokenCheck::Denied(denied)),
    };
    let facts = gather(state, &verified.claims, registered, now_ms).await?;
    Ok(
        match crate::verdict::binding(state, verified, &facts, now_ms) {
            Ok(verified) => TokenCheck::Valid(verified, signer_kid),
            Err(denied) => TokenCheck::Denied(denied),
        },
    )
}

/// The facts the second half of the verdict ([`crate::verdict::binding`]) needs
/// from the caches and the store, for a token in good standing.
async fn gather(
    state: &AppState,
    claims: &token::AgentClaims,
    registered: Option<Arc<bonafide_store::Agent>>,
    now_ms: i64,
) -> Result<crate::verdict::Facts, ApiError> {
    let chain = crate::delegation::check(state, claims, now_ms).await?;
    let (holder_keys, bearer_refused) = match &claims.cnf {
        // The presenting agent's key: a delegated token is bound to its current actor.
        Some(_) => {
            let holder = bonafide_core::delegation::current_actor(claims);
            (Some(state.agent_keys(holder).await?), false)
        }
        None => (None, bearer_refused(state, claims).await?),
    };
    Ok(crate::verdict::Facts {
        registered,
        chain,
        holder_keys,
        bearer_refused,
    })
}

/// The agent and token of a genuine token refused for its claims only (expired, not
/// yet valid, too long-lived, for another audience): its signature verifies with a
/// key of this registry or of the agent's own issuer, so the decision concerns that
/// agent and is logged for its issuer to see. `None` for anything else (a token that
/// does not verify concerns no agent).
async fn genuine_subject(
    state: &AppState,
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
    let Ok((v, signer)) = verify_signed(state, text, &opts, now_ms / 1000) else {
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
    let holder = bonafide_core::delegation::current_actor(claims);
    if state.agent_keys(holder).await?.is_empty() {
        return Ok(false);
    }
    Ok(match state.agent_record(holder).await? {
        Some(agent) => !agent.allow_bearer_tokens,
        // A key without its agent cannot be; refusing is the safe answer.
        None => true,
    })
}

/// The reason that follows the error code when a key decided it: `KEY_REVOKED` after
/// `TOKEN_REVOKED` when the issuer key that signed the token is revoked, `KEY_ROTATED`
/// after `TOKEN_REVOKED` when the agent key it is bound to was rotated out and its
/// grace period is over, `KEY_EXPIRED` after `TOKEN_EXPIRED` when that agent key is
/// past its `key_expires_at`.
pub fn second_reason(error: &TokenError) -> Option<&'static str> {
    match error {
        TokenError::Revoked(Revoked::Key) => Some("KEY_REVOKED"),
        TokenError::Revoked(Revoked::AgentKeyRotated) => Some("KEY_ROTATED"),
        TokenError::AgentKeyExpired { .. } => Some("KEY_EXPIRED"),
        TokenError::BindingRequired => Some("BINDING_REQUIRED"),
        _ => None,
    }
}
