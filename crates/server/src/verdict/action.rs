//! The verdict on a signed action (AIM's flow, `POST /v1/agents/{id}/verify-action`):
//! one pure function, like the token verdict.
//!
//! The route gathers the facts ([`ActionFacts`]: the agent's record, its keys, its
//! parsed policy); [`decide`] checks, in this order, the timestamp window, that the
//! agent has a key in force (core's one key-validity rule), the signature, the
//! agent's standing (revoked, then suspended: only after the signature, so nobody
//! else learns it), then the grant (scopes, or the policy alone if there is one).

use bonafide_core::ids::{AgentId, IssuerId};
use bonafide_core::keys::{Algorithm, KeyValidity};
use bonafide_core::policy::{Decimal, Policy, PolicyRequest, ResourceRef};

use super::Snapshot;
use crate::state::AgentKeyEntry;

/// Largest difference between the request's `timestamp` and the registry's clock.
pub const ACTION_WINDOW_S: i64 = 300;

/// What an agent signed: `{agent}:{action}:{resource}:{timestamp}:{nonce}`.
#[derive(Debug)]
pub struct SignedAction<'a> {
    /// The agent that claims to have signed.
    pub agent: &'a AgentId,
    /// What it does: a scope or an action of its policy.
    pub action: &'a str,
    /// What it acts on (`type/id` for a policy's resource rules).
    pub resource: &'a str,
    /// When it signed, Unix seconds.
    pub timestamp_s: i64,
    /// Single use per agent.
    pub nonce: &'a str,
    /// The signature, base64 in either alphabet.
    pub signature: &'a str,
}

impl SignedAction<'_> {
    /// The exact bytes the agent signs.
    pub fn message(&self) -> String {
        format!(
            "{}:{}:{}:{}:{}",
            self.agent, self.action, self.resource, self.timestamp_s, self.nonce
        )
    }
}

/// The facts of the store and caches the verdict needs.
#[derive(Debug)]
pub struct ActionFacts<'a> {
    /// The agent's registered scopes.
    pub scopes: &'a [String],
    /// The agent's keys, current and retired.
    pub keys: &'a [AgentKeyEntry],
    /// The agent's consent policy, parsed, if it has one.
    pub policy: Option<&'a Policy>,
    /// The agent's issuer: whose revocation of the policy's id counts.
    pub issuer: &'a IssuerId,
}

/// Why an action is refused: the wire code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `TIMESTAMP_OUT_OF_WINDOW`, `SIGNATURE_INVALID`, a policy's code, …
    pub code: &'static str,
    /// For a person.
    pub message: String,
}

impl Refusal {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionVerdict {
    /// Refused before the signature checked out: it concerns no agent, so it is
    /// counted and never written to the permanent log, and the nonce is not spent.
    Unsigned(Refusal),
    /// The agent signed it and is in good standing: the nonce is spent with the
    /// decision; `None` means allowed.
    Standing(Option<Refusal>),
    /// The agent signed it but is revoked or suspended: logged, nonce not spent.
    Fallen(Refusal),
}

/// The verdict on `req`, from the read model's snapshot, the gathered facts and the
/// time. No I/O, no clock, no await: [`authenticate`], then [`judge`].
pub fn decide(
    snapshot: &impl Snapshot,
    facts: &ActionFacts<'_>,
    req: &SignedAction<'_>,
    now_ms: i64,
) -> ActionVerdict {
    match authenticate(facts.keys, req, now_ms) {
        Err(refusal) => ActionVerdict::Unsigned(refusal),
        Ok(()) => judge(
            snapshot,
            facts.scopes,
            facts.policy,
            facts.issuer,
            req,
            now_ms,
        ),
    }
}

/// The checks before anything about the agent is told or costly is read: the
/// timestamp window, a registered Ed25519 key in force (core's `KeyValidity`), and the
/// signature by one of them. A refusal here concerns no agent (counted, not logged).
pub fn authenticate(
    keys: &[AgentKeyEntry],
    req: &SignedAction<'_>,
    now_ms: i64,
) -> Result<(), Refusal> {
    authenticate_message(
        keys,
        req.message().as_bytes(),
        req.signature,
        req.timestamp_s,
        now_ms,
    )
}

/// [`authenticate`] for any message an agent signs at `timestamp_s` (AIM's SDK signs
/// its own layouts: `compat::aim`): the same window, key and signature checks.
pub fn authenticate_message(
    keys: &[AgentKeyEntry],
    message: &[u8],
    signature: &str,
    timestamp_s: i64,
    now_ms: i64,
) -> Result<(), Refusal> {
    if now_ms.div_euclid(1000).abs_diff(timestamp_s) > ACTION_WINDOW_S.unsigned_abs() {
        return Err(Refusal::new(
            "TIMESTAMP_OUT_OF_WINDOW",
            format!("`timestamp` is more than {ACTION_WINDOW_S} s from the registry's clock"),
        ));
    }
    let mut usable = keys
        .iter()
        .filter(|k| {
            k.key.alg() == Algorithm::EdDSA
                && KeyValidity::agent_key(k.record.expires_at_ms, k.record.grace_until_ms)
                    .usable(now_ms)
        })
        .peekable();
    if usable.peek().is_none() {
        return Err(Refusal::new(
            "NO_AGENT_KEY",
            "the agent has no registered Ed25519 key in force: its issuer registers one with `PUT /v1/agents/{id}/keys`",
        ));
    }
    let genuine =
        decode_signature(signature).is_some_and(|sig| usable.any(|k| k.key.verify(message, &sig)));
    if !genuine {
        return Err(Refusal::new(
            "SIGNATURE_INVALID",
            "the signature is not by any registered key of this agent",
        ));
    }
    Ok(())
}

/// The verdict on an action [`authenticate`] accepted: the agent's standing (revoked,
/// then suspended: told only now, after the signature), then the grant (scopes, or
/// the policy alone if there is one).
pub fn judge(
    snapshot: &impl Snapshot,
    scopes: &[String],
    policy: Option<&Policy>,
    issuer: &IssuerId,
    req: &SignedAction<'_>,
    now_ms: i64,
) -> ActionVerdict {
    let act = Act {
        agent: req.agent,
        action: req.action,
        resource: Some(req.resource),
    };
    judge_act(snapshot, scopes, policy, issuer, &act, now_ms)
}

/// What an authenticated agent asks to do, whatever layout it signed.
#[derive(Debug)]
pub struct Act<'a> {
    /// The agent that signed.
    pub agent: &'a AgentId,
    /// A scope or an action of its policy.
    pub action: &'a str,
    /// What it acts on, if it says (AIM's SDK may send none).
    pub resource: Option<&'a str>,
}

/// [`judge`] for any authenticated [`Act`].
pub fn judge_act(
    snapshot: &impl Snapshot,
    scopes: &[String],
    policy: Option<&Policy>,
    issuer: &IssuerId,
    req: &Act<'_>,
    now_ms: i64,
) -> ActionVerdict {
    if snapshot.agent_revoked(req.agent) {
        return ActionVerdict::Fallen(Refusal::new("AGENT_REVOKED", "the agent is revoked"));
    }
    // The agent's policy revoked by its issuer (`POST /v1/policies/revoke`): what a
    // token carrying it gets at verify, an action under it gets here.
    if let Some(p) = policy
        && snapshot
            .revoked(
                req.agent,
                &bonafide_core::token::policy_revocation_id(issuer, p.id()),
            )
            .is_some()
    {
        return ActionVerdict::Fallen(Refusal::new(
            "POLICY_REVOKED",
            format!(
                "the agent's consent policy `{}` was revoked by its issuer",
                p.id()
            ),
        ));
    }
    if snapshot.suspended(req.agent) {
        return ActionVerdict::Fallen(Refusal::new(
            "AGENT_SUSPENDED",
            "the agent is suspended by its issuer",
        ));
    }
    ActionVerdict::Standing(not_granted(
        scopes,
        policy,
        req.action,
        req.resource,
        now_ms,
    ))
}

/// Base64 in either alphabet, padded or not, to bytes; `None` if it is neither.
fn decode_signature(text: &str) -> Option<Vec<u8>> {
    let trimmed = text.strip_suffix("==").or_else(|| text.strip_suffix('='));
    let unpadded = trimmed.unwrap_or(text);
    if trimmed.is_some() && !text.len().is_multiple_of(4) {
        return None;
    }
    let url: String = unpadded
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            other => other,
        })
        .collect();
    bonafide_core::b64::decode(&url).ok()
}

/// Why `action` on `resource` is not granted, if it is not: without a policy the
/// action must be one of the agent's scopes (`SCOPE_NOT_GRANTED`); with one, the
/// policy decides alone (a matching scope never bypasses it): its action, resource
/// and time window are evaluated at `now_ms`, and a policy with spending limits
/// refuses the action (`AMOUNT_REQUIRED`: a signed action carries no amount).
/// `resource` is read as `type/id` (split at the first `/`) for the policy's
/// resource rules; one without `/` has no type and matches no rule, and none at all
/// is evaluated as the policy evaluates a request naming no resource.
fn not_granted(
    scopes: &[String],
    policy: Option<&Policy>,
    action: &str,
    resource: Option<&str>,
    now_ms: i64,
) -> Option<Refusal> {
    let Some(policy) = policy else {
        return (!scopes.iter().any(|s| s == action)).then(|| {
            Refusal::new(
                "SCOPE_NOT_GRANTED",
                "the action is not one of this agent's scopes",
            )
        });
    };
    let req = PolicyRequest {
        action,
        resource: resource.map(|r| {
            let (kind, id) = r.split_once('/').unwrap_or(("", r));
            ResourceRef { kind, id }
        }),
        money: None,
    };
    let now = crate::time::timestamp_ms(now_ms);
    let decision = policy.evaluate(&req, now, Decimal::ZERO);
    let code = decision.reasons.first()?.code.as_str();
    Some(Refusal::new(code, decision.message()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use bonafide_core::ids::TokenId;
    use bonafide_core::keys::SigningKey;
    use bonafide_core::token::{AgentClaims, Revoked, TokenError};

    use super::*;

    #[derive(Default)]
    struct Memory {
        revoked: HashSet<AgentId>,
        revoked_tokens: HashSet<TokenId>,
        suspended: HashSet<AgentId>,
    }

    impl crate::verdict::Standing for Memory {
        fn revoked(&self, agent: &AgentId, jti: &TokenId) -> Option<Revoked> {
            if self.revoked.contains(agent) {
                Some(Revoked::Agent)
            } else {
                self.revoked_tokens.contains(jti).then_some(Revoked::Token)
            }
        }
        fn agent_revoked(&self, agent: &AgentId) -> bool {
            self.revoked.contains(agent)
        }
        fn suspended(&self, agent: &AgentId) -> bool {
            self.suspended.contains(agent)
        }
    }

    impl Snapshot for Memory {
        fn policy_of(&self, _: &AgentClaims) -> Result<Option<Arc<Policy>>, TokenError> {
            Ok(None)
        }
    }

    const NOW_MS: i64 = 1_700_000_000_000;

    fn agent() -> AgentId {
        AgentId::from_random([1; 16])
    }

    fn key(sk: &SigningKey, expires_at_ms: i64, grace_until_ms: Option<i64>) -> AgentKeyEntry {
        crate::state::test_entry(sk, expires_at_ms, grace_until_ms)
    }

    /// The action `read:docs` on `doc/1`, signed by `sk` at `NOW_MS`, with the
    /// verdict for `keys` and `memory`.
    fn verdict(
        sk: &SigningKey,
        keys: &[AgentKeyEntry],
        memory: &Memory,
        timestamp_s: i64,
    ) -> ActionVerdict {
        let id = agent();
        let mut req = SignedAction {
            agent: &id,
            action: "read:docs",
            resource: "doc/1",
            timestamp_s,
            nonce: "n-1",
            signature: "",
        };
        let sig = bonafide_core::b64::encode(&sk.sign(req.message().as_bytes()).unwrap());
        req.signature = &sig;
        let scopes = ["read:docs".to_owned()];
        let facts = ActionFacts {
            scopes: &scopes,
            keys,
            policy: None,
            issuer: &IssuerId::from_random([9; 16]),
        };
        decide(memory, &facts, &req, NOW_MS)
    }

    fn code(v: &ActionVerdict) -> Option<&'static str> {
        match v {
            ActionVerdict::Unsigned(r) | ActionVerdict::Fallen(r) => Some(r.code),
            ActionVerdict::Standing(r) => r.as_ref().map(|r| r.code),
        }
    }

    #[test]
    fn a_fresh_action_signed_by_a_key_in_force_and_granted_is_allowed() {
        let sk = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let keys = [key(&sk, i64::MAX, None)];
        let v = verdict(&sk, &keys, &Memory::default(), NOW_MS / 1000);
        assert_eq!(v, ActionVerdict::Standing(None));
    }

    #[test]
    fn the_window_is_checked_first_and_its_edge_is_inside() {
        let sk = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let keys = [key(&sk, i64::MAX, None)];
        let m = Memory::default();
        let now_s = NOW_MS / 1000;
        assert_eq!(code(&verdict(&sk, &keys, &m, now_s - 300)), None);
        assert_eq!(code(&verdict(&sk, &keys, &m, now_s + 300)), None);
        let late = verdict(&sk, &keys, &m, now_s - 301);
        assert!(
            matches!(late, ActionVerdict::Unsigned(ref r) if r.code == "TIMESTAMP_OUT_OF_WINDOW")
        );
        // Before anything else: no key at all still answers the window.
        assert_eq!(
            code(&verdict(&sk, &[], &m, now_s + 301)),
            Some("TIMESTAMP_OUT_OF_WINDOW")
        );
    }

    #[test]
    fn only_a_registered_key_in_force_signs() {
        let sk = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let other = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let m = Memory::default();
        let now_s = NOW_MS / 1000;
        assert_eq!(code(&verdict(&sk, &[], &m, now_s)), Some("NO_AGENT_KEY"));
        // Expired, and rotated out past its grace: not in force.
        let expired = [key(&sk, NOW_MS, None)];
        assert_eq!(
            code(&verdict(&sk, &expired, &m, now_s)),
            Some("NO_AGENT_KEY")
        );
        let rotated = [key(&sk, i64::MAX, Some(NOW_MS))];
        assert_eq!(
            code(&verdict(&sk, &rotated, &m, now_s)),
            Some("NO_AGENT_KEY")
        );
        // Within its grace it still signs.
        let grace = [key(&sk, i64::MAX, Some(NOW_MS + 1))];
        assert_eq!(code(&verdict(&sk, &grace, &m, now_s)), None);
        // Another key's signature is refused, unsigned.
        let keys = [key(&sk, i64::MAX, None)];
        let forged = verdict(&other, &keys, &m, now_s);
        assert!(matches!(forged, ActionVerdict::Unsigned(ref r) if r.code == "SIGNATURE_INVALID"));
    }

    #[test]
    fn standing_is_told_only_after_the_signature_and_revocation_comes_first() {
        let sk = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let other = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let keys = [key(&sk, i64::MAX, None)];
        let mut m = Memory::default();
        m.revoked.insert(agent());
        m.suspended.insert(agent());
        let now_s = NOW_MS / 1000;
        assert_eq!(
            code(&verdict(&other, &keys, &m, now_s)),
            Some("SIGNATURE_INVALID")
        );
        let v = verdict(&sk, &keys, &m, now_s);
        assert!(matches!(v, ActionVerdict::Fallen(ref r) if r.code == "AGENT_REVOKED"));
        m.revoked.clear();
        assert_eq!(
            code(&verdict(&sk, &keys, &m, now_s)),
            Some("AGENT_SUSPENDED")
        );
    }

    #[test]
    fn without_a_policy_the_action_must_be_a_scope() {
        let sk = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let keys = [key(&sk, i64::MAX, None)];
        let id = agent();
        let mut req = SignedAction {
            agent: &id,
            action: "write:docs",
            resource: "doc/1",
            timestamp_s: NOW_MS / 1000,
            nonce: "n",
            signature: "",
        };
        let sig = bonafide_core::b64::encode(&sk.sign(req.message().as_bytes()).unwrap());
        req.signature = &sig;
        let scopes = ["read:docs".to_owned()];
        let facts = ActionFacts {
            scopes: &scopes,
            keys: &keys,
            policy: None,
            issuer: &IssuerId::from_random([9; 16]),
        };
        let v = decide(&Memory::default(), &facts, &req, NOW_MS);
        assert!(matches!(v, ActionVerdict::Standing(Some(ref r)) if r.code == "SCOPE_NOT_GRANTED"));
    }

    #[test]
    fn an_action_under_a_revoked_policy_is_refused_for_its_issuer_only() {
        let policy = Policy::from_value(serde_json::json!({
            "version": "pol.v0.2",
            "id": "pol_actions",
            "actions": ["read:docs"],
        }))
        .unwrap();
        let (issuer, other) = (
            IssuerId::from_random([1; 16]),
            IssuerId::from_random([2; 16]),
        );
        let agent = agent();
        let memory = Memory {
            revoked_tokens: HashSet::from([bonafide_core::token::policy_revocation_id(
                &issuer,
                "pol_actions",
            )]),
            ..Memory::default()
        };
        let act = Act {
            agent: &agent,
            action: "read:docs",
            resource: None,
        };
        let judged =
            |issuer: &IssuerId| judge_act(&memory, &[], Some(&policy), issuer, &act, NOW_MS);
        assert!(
            matches!(judged(&issuer), ActionVerdict::Fallen(ref r) if r.code == "POLICY_REVOKED"),
            "{:?}",
            judged(&issuer)
        );
        assert_eq!(judged(&other), ActionVerdict::Standing(None));
    }

    #[test]
    fn signatures_decode_from_either_alphabet() {
        let bytes: Vec<u8> = (0..64).map(|i| (i * 37 % 256) as u8).collect();
        let url = bonafide_core::b64::encode(&bytes);
        let std_padded = format!("{}==", url.replace('-', "+").replace('_', "/"));
        assert_eq!(decode_signature(&url), Some(bytes.clone()));
        assert_eq!(decode_signature(&std_padded), Some(bytes));
        assert_eq!(decode_signature("a="), None);
        assert_eq!(decode_signature("!!!!"), None);
    }
}
