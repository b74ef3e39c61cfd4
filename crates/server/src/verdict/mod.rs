//! The verdict on a token whose signature checked out: one pure function.
//!
//! [`crate::token_check::check_token_signed`] gathers the facts a decision needs
//! from the caches and the store ([`Facts`]: the only awaits of a token check); the
//! verdict decides, from those facts, the read model's snapshot ([`Snapshot`]:
//! revocations, suspensions, parsed policies) and the time, with no I/O, no clock and
//! no await, so every rule of it is tested with plain `#[test]`s (below). It is two
//! halves, [`standing`] then [`binding`], so that a token refused by the first (a
//! revoked one, another issuer's agent) costs no store read for the second.

use std::sync::Arc;

use bonafide_core::ids::{AgentId, TokenId};
use bonafide_core::keys::KeyValidity;
use bonafide_core::policy::Policy;
use bonafide_core::token::{AgentClaims, Revoked, TokenError, VerifiedToken};
use bonafide_core::verifier::IssuerSigned;
use bonafide_store::Agent;

pub mod action;

use crate::delegation::ChainStatus;
use crate::state::AgentKeyEntry;

/// A token that did not verify, with what is known about it.
#[derive(Debug)]
pub struct Denied {
    /// Why.
    pub error: TokenError,
    /// Agent and token id, when the signature checked out (revoked tokens).
    pub subject: Option<(AgentId, TokenId)>,
}

/// A token check's outcome: the token as the registry vouches for it, with the kid
/// of the issuer key that verified it when an issuer signed it itself, or why it is
/// refused. (A failure to check at all, a store error, is the `Err` around it.)
#[derive(Debug)]
// The valid token is the common case, moved once: boxing it would cost an
// allocation per verify for nothing (the `Result` this replaced had the same size).
#[allow(clippy::large_enum_variant)]
pub enum TokenCheck {
    /// Valid.
    Valid(VerifiedToken, Option<String>),
    /// Refused.
    Denied(Denied),
}

impl TokenCheck {
    /// The token, or why it is refused.
    pub fn token(self) -> Result<VerifiedToken, Denied> {
        match self {
            TokenCheck::Valid(v, _) => Ok(v),
            TokenCheck::Denied(d) => Err(d),
        }
    }
}

impl From<Result<VerifiedToken, Denied>> for TokenCheck {
    fn from(r: Result<VerifiedToken, Denied>) -> Self {
        match r {
            Ok(v) => TokenCheck::Valid(v, None),
            Err(d) => TokenCheck::Denied(d),
        }
    }
}

/// What the standing of a token reads of the read model: revocations and
/// suspensions, synchronous, in memory.
pub trait Standing {
    /// Whether the agent or the token is revoked, and which.
    fn revoked(&self, agent: &AgentId, jti: &TokenId) -> Option<Revoked>;
    /// Whether the agent is revoked (whatever its tokens).
    fn agent_revoked(&self, agent: &AgentId) -> bool;
    /// Whether the agent is suspended.
    fn suspended(&self, agent: &AgentId) -> bool;
}

/// What a verdict reads of the read model: synchronous, in memory.
pub trait Snapshot: Standing {
    /// The token's parsed policy (step 7: its hash must be `policy_hash`).
    fn policy_of(&self, claims: &AgentClaims) -> Result<Option<Arc<Policy>>, TokenError>;
}

/// Every fact of the store and caches a verdict needs, gathered before it.
#[derive(Debug)]
pub struct Facts {
    /// For an issuer-signed token: its agent as registered, if it is the signing
    /// issuer's (`None`: unknown, or another issuer's).
    pub registered: Option<Arc<Agent>>,
    /// The delegation chain's status (`Alive` for a token without `act`).
    pub chain: ChainStatus,
    /// For a token bound to a key (`cnf`): the presenting agent's keys.
    pub holder_keys: Option<Arc<[AgentKeyEntry]>>,
    /// For an unbound token: whether its presenting agent accepts only bound ones.
    pub bearer_refused: bool,
    /// For a token carrying a consent policy: the id its agent's issuer would have
    /// revoked that policy under ([`bonafide_core::token::policy_revocation_id`]).
    pub policy_revocation: Option<TokenId>,
}

/// The verdict on `verified` (its signature, header and claims already checked by
/// core), signed by `signer` when an issuer signed it itself: the token as the
/// registry vouches for it (an issuer-signed token's name, description and scopes
/// are the registration's), or why it is refused. [`standing`], then [`binding`].
pub fn verdict(
    snapshot: &impl Snapshot,
    verified: VerifiedToken,
    signer: Option<&IssuerSigned>,
    facts: &Facts,
    now_ms: i64,
) -> Result<VerifiedToken, Denied> {
    let verified = standing(
        snapshot,
        verified,
        signer,
        facts.registered.as_ref(),
        now_ms,
    )?;
    binding(snapshot, verified, facts, now_ms)
}

fn deny(error: TokenError, v: VerifiedToken) -> Denied {
    Denied {
        error,
        subject: Some((v.claims.sub, v.claims.jti)),
    }
}

/// The first half of the verdict, from memory and the registered agent only (so a
/// refused token costs no further store read): an issuer-signed token's agent is
/// that issuer's (`registered`), its scopes registered ones, its key not revoked;
/// then the token and agent not revoked, the agent not suspended.
pub fn standing(
    snapshot: &impl Snapshot,
    mut verified: VerifiedToken,
    signer: Option<&IssuerSigned>,
    registered: Option<&Arc<Agent>>,
    now_ms: i64,
) -> Result<VerifiedToken, Denied> {
    if let Some(signer) = signer {
        let Some(agent) = registered.filter(|a| a.issuer_id == signer.issuer_id) else {
            // Unknown, or another issuer's: nothing about that agent is recorded.
            return Err(Denied {
                error: TokenError::AgentUnknown,
                subject: None,
            });
        };
        if let Some(extra) = verified
            .claims
            .agent
            .scopes
            .iter()
            .find(|s| !agent.scopes.contains(s))
        {
            let shown: String = extra.chars().take(64).collect();
            return Err(deny(
                TokenError::Claims(format!(
                    "scope `{shown}` was not granted to this agent at registration: an issuer-signed token may carry only its agent's registered scopes"
                )),
                verified,
            ));
        }
        if !KeyValidity::issuer_key(signer.revoked_at_ms).usable(now_ms) {
            return Err(deny(TokenError::Revoked(Revoked::Key), verified));
        }
        verified.claims.agent.name.clone_from(&agent.name);
        if signer.consent.is_some() {
            // A consent token grants its agent's registered scopes, narrowed to its
            // own `scope` when it has one: what the user consented to is never
            // widened by what the agent was registered with.
            verified.claims.agent.scopes = match &signer.consent_scopes {
                Some(asked) => agent
                    .scopes
                    .iter()
                    .filter(|s| asked.contains(s))
                    .cloned()
                    .collect(),
                None => agent.scopes.clone(),
            };
        }
        verified.claims.agent.issuer.clone_from(&signer.issuer_name);
        verified
            .claims
            .agent
            .description
            .clone_from(&agent.description);
    }
    if let Some(what) = snapshot.revoked(&verified.claims.sub, &verified.claims.jti) {
        return Err(deny(TokenError::Revoked(what), verified));
    }
    // A consent token revoked under the id consent tokens had before: still revoked.
    if let Some(legacy) = signer.and_then(|s| s.legacy_id.as_ref())
        && snapshot.revoked(&verified.claims.sub, legacy).is_some()
    {
        return Err(deny(TokenError::Revoked(Revoked::Token), verified));
    }
    // After revocation: a revoked agent stays TOKEN_REVOKED, suspended or not.
    if snapshot.suspended(&verified.claims.sub) {
        return Err(deny(TokenError::Suspended, verified));
    }
    Ok(verified)
}

/// Revocation and suspension along a delegated token's chain, from memory: an agent
/// acting in it (`actors`) or an ancestor token revoked (`TOKEN_REVOKED`), else an
/// actor suspended (`AGENT_SUSPENDED`); `None` if the chain stands. The one cascade
/// rule: verify ([`crate::delegation::check`]) and the status lists
/// ([`list_status`]) both apply it. `sub` and `jti` are the token's own, checked by
/// the caller (the snapshot answers for an agent and a token at once).
pub fn chain_standing(
    snapshot: &impl Standing,
    sub: &AgentId,
    jti: &TokenId,
    actors: &[&AgentId],
    ancestor_jtis: &[TokenId],
) -> Option<TokenError> {
    if actors.iter().any(|a| snapshot.revoked(a, jti).is_some()) {
        return Some(TokenError::Revoked(Revoked::Agent));
    }
    if ancestor_jtis
        .iter()
        .any(|j| snapshot.revoked(sub, j).is_some())
    {
        return Some(TokenError::Revoked(Revoked::Token));
    }
    if actors.iter().any(|a| snapshot.suspended(a)) {
        return Some(TokenError::Suspended);
    }
    None
}

/// Whether a key behind a token or one of its ancestors still stands: the issuer key
/// that signed it known and not revoked (`TOKEN_REVOKED`, `KEY_REVOKED`), the agent key
/// it is bound to registered and usable (`agent_keys`: that agent's keys; rotated out
/// past its grace: `KEY_ROTATED`; past its `key_expires_at`: expired). The one key
/// rule of a chain: verify ([`crate::delegation::check`]) and the status lists apply
/// it; a token's own binding is [`binding`]'s (the same [`crate::state::bound_key`]).
pub fn key_standing(
    issuer_keys: &bonafide_core::verifier::IssuerKeyRing,
    agent_keys: &[AgentKeyEntry],
    key: &bonafide_store::AncestorKey,
    now_ms: i64,
) -> Option<TokenError> {
    if let Some(kid) = &key.issuer_kid
        && issuer_keys
            .get(kid)
            .is_none_or(|k| !KeyValidity::issuer_key(k.revoked_at_ms).usable(now_ms))
    {
        return Some(TokenError::Revoked(Revoked::Key));
    }
    if let Some(jkt) = &key.jkt {
        return crate::state::bound_key(agent_keys, jkt, now_ms).err();
    }
    None
}

/// The status a Token Status List shows for a token: revoked (`Invalid`) when the
/// token, its agent or anything of its chain is, else suspended when its agent or an
/// actor is, else valid — what a verify of it would find of its standing, from the
/// same snapshot ([`standing`]'s revocation and suspension, [`chain_standing`]).
pub fn list_status(
    snapshot: &impl Standing,
    sub: &AgentId,
    jti: &TokenId,
    actors: &[AgentId],
    ancestor_jtis: &[TokenId],
) -> bonafide_core::status_list::Status {
    use bonafide_core::status_list::Status;
    if snapshot.revoked(sub, jti).is_some() {
        return Status::Invalid;
    }
    let actors: Vec<&AgentId> = actors.iter().collect();
    match chain_standing(snapshot, sub, jti, &actors, ancestor_jtis) {
        Some(TokenError::Revoked(_)) => Status::Invalid,
        Some(_) => Status::Suspended,
        None if snapshot.suspended(sub) => Status::Suspended,
        None => Status::Valid,
    }
}

/// The second half, for a token in good standing: the delegation chain alive, the
/// bound key usable (or a bearer token allowed), and the policy the one its hash
/// names.
pub fn binding(
    snapshot: &impl Snapshot,
    verified: VerifiedToken,
    facts: &Facts,
    now_ms: i64,
) -> Result<VerifiedToken, Denied> {
    // Its consent policy revoked by the agent's issuer: every token carrying it,
    // whoever signed it and whether or not the registry ever saw it.
    if let Some(id) = &facts.policy_revocation
        && snapshot.revoked(&verified.claims.sub, id).is_some()
    {
        return Err(deny(TokenError::Revoked(Revoked::Policy), verified));
    }
    // A delegated token: every ancestor agent and token too (crate::delegation).
    if let ChainStatus::Ended(error) = &facts.chain {
        return Err(deny(error.clone(), verified));
    }
    // A token bound to the agent's own key (`cnf.jkt`): the key must be registered,
    // within its grace period if rotated out, and not past its `key_expires_at`.
    // Proof of possession is checked by the caller that has the request
    // (`crate::proof`).
    if let Some(cnf) = &verified.claims.cnf {
        let keys = facts.holder_keys.as_deref().unwrap_or_default();
        if let Err(error) = crate::state::bound_key(keys, &cnf.jkt, now_ms) {
            return Err(deny(error, verified));
        }
    } else if facts.bearer_refused {
        return Err(deny(TokenError::BindingRequired, verified));
    }
    // Step 7: a policy whose hash is not `policy_hash` makes the token invalid on every
    // path (GET verify and introspection too), not only where the policy is used.
    if let Err(error) = snapshot.policy_of(&verified.claims) {
        return Err(deny(error, verified));
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use bonafide_core::consent::ActVersion;
    use bonafide_core::ids::IssuerId;
    use bonafide_core::jws::Header;
    use bonafide_core::keys::Algorithm;
    use bonafide_store::AgentStatus;
    use serde_json::json;

    use super::*;

    /// A read model in plain sets.
    #[derive(Default)]
    struct Memory {
        revoked_agents: HashSet<AgentId>,
        revoked_tokens: HashSet<TokenId>,
        suspended: HashSet<AgentId>,
        bad_policy: bool,
    }

    impl Standing for Memory {
        fn revoked(&self, agent: &AgentId, jti: &TokenId) -> Option<Revoked> {
            if self.revoked_agents.contains(agent) {
                Some(Revoked::Agent)
            } else if self.revoked_tokens.contains(jti) {
                Some(Revoked::Token)
            } else {
                None
            }
        }
        fn agent_revoked(&self, agent: &AgentId) -> bool {
            self.revoked_agents.contains(agent)
        }
        fn suspended(&self, agent: &AgentId) -> bool {
            self.suspended.contains(agent)
        }
    }

    impl Snapshot for Memory {
        fn policy_of(&self, _: &AgentClaims) -> Result<Option<Arc<Policy>>, TokenError> {
            if self.bad_policy {
                return Err(TokenError::Claims("policy_hash does not match".into()));
            }
            Ok(None)
        }
    }

    const NOW_MS: i64 = 1_800_000_000_000;

    fn agent_id() -> AgentId {
        AgentId::from_random([1; 16])
    }

    fn issuer_id() -> IssuerId {
        IssuerId::from_random([2; 16])
    }

    fn token(scopes: &[&str], cnf: Option<&str>) -> VerifiedToken {
        let mut claims = json!({
            "iss": "https://reg.example",
            "sub": agent_id().as_str(),
            "iat": NOW_MS / 1000,
            "exp": NOW_MS / 1000 + 3600,
            "jti": TokenId::from_random([3; 16]).as_str(),
            "agent": {"name": "from the token", "issuer": "claimed", "scopes": scopes},
        });
        if let Some(jkt) = cnf {
            claims["cnf"] = json!({ "jkt": jkt });
        }
        VerifiedToken {
            header: Header {
                alg: Algorithm::EdDSA,
                kid: "k".into(),
                typ: Some("agent+jwt".into()),
            },
            claims: serde_json::from_value(claims).unwrap_or_else(|e| panic!("claims: {e}")),
        }
    }

    fn registered(scopes: &[&str]) -> Arc<Agent> {
        Arc::new(Agent {
            id: agent_id(),
            issuer_id: issuer_id(),
            name: "RegisteredName".into(),
            description: Some("as registered".into()),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            audience: None,
            token_ttl_s: 3600,
            status: AgentStatus::Active,
            created_at_ms: 0,
            revoked_at_ms: None,
            revoke_reason: None,
            suspended_at_ms: None,
            suspend_reason: None,
            policy: None,
            user: None,
            allow_bearer_tokens: false,
        })
    }

    fn facts() -> Facts {
        Facts {
            registered: None,
            chain: ChainStatus::Alive,
            holder_keys: None,
            bearer_refused: false,
            policy_revocation: None,
        }
    }

    fn signer(revoked_at_ms: Option<i64>) -> IssuerSigned {
        IssuerSigned {
            kid: "kid".into(),
            issuer_id: issuer_id(),
            issuer_name: "issuer.example".into(),
            revoked_at_ms,
            consent: None,
            consent_scopes: None,
            legacy_id: None,
        }
    }

    fn code(r: &Result<VerifiedToken, Denied>) -> &'static str {
        match r {
            Ok(_) => "OK",
            Err(d) => d.error.code().as_str(),
        }
    }

    #[test]
    fn a_registry_token_with_nothing_against_it_is_valid() {
        let r = verdict(
            &Memory::default(),
            token(&["read"], None),
            None,
            &facts(),
            NOW_MS,
        );
        assert_eq!(code(&r), "OK");
    }

    #[test]
    fn revocation_comes_before_suspension_and_both_name_the_subject() {
        let mut m = Memory::default();
        m.suspended.insert(agent_id());
        let r = verdict(&m, token(&["read"], None), None, &facts(), NOW_MS);
        assert_eq!(code(&r), "AGENT_SUSPENDED");
        m.revoked_agents.insert(agent_id());
        let r = verdict(&m, token(&["read"], None), None, &facts(), NOW_MS);
        assert_eq!(code(&r), "TOKEN_REVOKED");
        let subject = r.err().and_then(|d| d.subject).map(|(a, _)| a);
        assert_eq!(subject, Some(agent_id()));
    }

    #[test]
    fn a_revoked_policy_refuses_the_token_carrying_it_and_only_that() {
        let revoked = bonafide_core::token::policy_revocation_id(&issuer_id(), "pol_1");
        let mut m = Memory::default();
        m.revoked_tokens.insert(revoked.clone());
        let carrying = Facts {
            policy_revocation: Some(revoked),
            ..facts()
        };
        let r = verdict(&m, token(&["read"], None), None, &carrying, NOW_MS);
        assert!(matches!(
            &r,
            Err(Denied {
                error: TokenError::Revoked(Revoked::Policy),
                subject: Some(_),
            })
        ));
        assert_eq!(code(&r), "TOKEN_REVOKED");
        // Another policy id (or another issuer's) is another revocation id.
        let other = Facts {
            policy_revocation: Some(bonafide_core::token::policy_revocation_id(
                &issuer_id(),
                "pol_2",
            )),
            ..facts()
        };
        let r = verdict(&m, token(&["read"], None), None, &other, NOW_MS);
        assert_eq!(code(&r), "OK");
        // A token without a policy is not concerned.
        let r = verdict(&m, token(&["read"], None), None, &facts(), NOW_MS);
        assert_eq!(code(&r), "OK");
    }

    #[test]
    fn a_dead_chain_a_refused_bearer_and_a_bad_policy_each_deny() {
        let dead = Facts {
            chain: ChainStatus::Ended(TokenError::Revoked(Revoked::Token)),
            ..facts()
        };
        let r = verdict(
            &Memory::default(),
            token(&["read"], None),
            None,
            &dead,
            NOW_MS,
        );
        assert_eq!(code(&r), "TOKEN_REVOKED");
        let bearer = Facts {
            bearer_refused: true,
            ..facts()
        };
        let r = verdict(
            &Memory::default(),
            token(&["read"], None),
            None,
            &bearer,
            NOW_MS,
        );
        assert!(matches!(
            r,
            Err(Denied {
                error: TokenError::BindingRequired,
                ..
            })
        ));
        let m = Memory {
            bad_policy: true,
            ..Memory::default()
        };
        let r = verdict(&m, token(&["read"], None), None, &facts(), NOW_MS);
        assert_eq!(code(&r), "TOKEN_INVALID");
    }

    #[test]
    fn a_token_bound_to_an_unknown_key_is_refused_whatever_bearer_says() {
        let keyless = Facts {
            holder_keys: Some(Arc::from(Vec::new())),
            ..facts()
        };
        let r = verdict(
            &Memory::default(),
            token(&["read"], Some("jkt")),
            None,
            &keyless,
            NOW_MS,
        );
        assert_eq!(code(&r), "TOKEN_INVALID");
    }

    #[test]
    fn an_issuer_signed_token_is_its_registration() {
        // Not the signing issuer's agent (or unknown): AGENT_UNKNOWN, no subject.
        let r = verdict(
            &Memory::default(),
            token(&["read"], None),
            Some(&signer(None)),
            &facts(),
            NOW_MS,
        );
        assert!(matches!(
            r,
            Err(Denied {
                error: TokenError::AgentUnknown,
                subject: None
            })
        ));
        // A scope it was not registered with.
        let known = Facts {
            registered: Some(registered(&["read"])),
            ..facts()
        };
        let r = verdict(
            &Memory::default(),
            token(&["read", "write"], None),
            Some(&signer(None)),
            &known,
            NOW_MS,
        );
        assert_eq!(code(&r), "TOKEN_INVALID");
        // A key revoked before now: KEY_REVOKED's TOKEN_REVOKED.
        let r = verdict(
            &Memory::default(),
            token(&["read"], None),
            Some(&signer(Some(NOW_MS - 1))),
            &known,
            NOW_MS,
        );
        assert!(matches!(
            r,
            Err(Denied {
                error: TokenError::Revoked(Revoked::Key),
                ..
            })
        ));
        // Valid: name, issuer and description are the registration's.
        let r = verdict(
            &Memory::default(),
            token(&["read"], None),
            Some(&signer(None)),
            &known,
            NOW_MS,
        );
        let v = r.unwrap_or_else(|d| panic!("{d:?}"));
        assert_eq!(v.claims.agent.name, "RegisteredName");
        assert_eq!(v.claims.agent.issuer, "issuer.example");
        assert_eq!(v.claims.agent.description.as_deref(), Some("as registered"));
    }

    #[test]
    fn a_consent_token_revoked_under_its_former_id_stays_revoked() {
        let known = Facts {
            registered: Some(registered(&["read"])),
            ..facts()
        };
        let legacy = TokenId::from_random([42; 16]);
        let consent = IssuerSigned {
            consent: Some(bonafide_core::consent::ActVersion::V0_2),
            legacy_id: Some(legacy.clone()),
            ..signer(None)
        };
        let ok = verdict(
            &Memory::default(),
            token(&["read"], None),
            Some(&consent),
            &known,
            NOW_MS,
        );
        assert_eq!(code(&ok), "OK");
        let revoked = Memory {
            revoked_tokens: HashSet::from([legacy]),
            ..Memory::default()
        };
        let r = verdict(
            &revoked,
            token(&["read"], None),
            Some(&consent),
            &known,
            NOW_MS,
        );
        assert_eq!(code(&r), "TOKEN_REVOKED");
    }

    #[test]
    fn a_consent_token_grants_registered_scopes_narrowed_by_its_own() {
        let known = Facts {
            registered: Some(registered(&["read", "write", "pay"])),
            ..facts()
        };
        let mut consent = signer(None);
        consent.consent = Some(ActVersion::V0_2);
        consent.consent_scopes = Some(vec!["pay".into(), "admin".into()]);
        let r = verdict(
            &Memory::default(),
            token(&[], None),
            Some(&consent),
            &known,
            NOW_MS,
        );
        let v = r.unwrap_or_else(|d| panic!("{d:?}"));
        assert_eq!(v.claims.agent.scopes, ["pay"]);
    }
}
