//! One `POST /v1/verify` decision, from checked token to answer, receipt and audit
//! entry (docs/design.md, pipeline steps 7–9).
//!
//! A decision that charges a budget can only be made once the budget's spending is
//! known, and that is only known for sure inside the store's write transaction (other
//! requests, in this process or another replica, charge the same budget). So the
//! decision is a value, [`Deciding`], that owns everything it depends on; the store
//! runs [`Deciding::decided`] inside its transaction with the budget's current
//! spending, and the handler then runs [`Deciding::outcome`] again with the same
//! spending (the store returns it) to build the answer. Both are pure functions of
//! the same inputs, so the answer, the receipt and the audit entry always agree.

use std::sync::Arc;

use bonafide_core::audit::{Actor, AuditEntry, Decision, EventType};
use bonafide_core::ids::{AgentId, IssuerId, ReceiptId, ReceiverId, TokenId};
use bonafide_core::policy::{
    self, BudgetPeriod, Decimal, Money, Policy, PolicyRequest, ResourceRef, Timestamp,
};
use bonafide_core::receipt::ReceiptClaims;
use bonafide_store::{
    AuditRecord, BudgetCharge, BudgetKey, ConflictKind, Decided, ReceiptRecord, StoreError,
};

pub use bonafide_api::verify::{RemainingView, VerifiedAgent, VerifyResponse};
use bonafide_api::{ErrorCode, ErrorDetail};

use crate::time::{rfc3339_ms, rfc3339_s};

/// What a verify request asks, validated.
#[derive(Debug, Clone, Default)]
pub struct Asked {
    /// The receiver's identifier (`audience`, else `target_resource`).
    pub audience: Option<String>,
    /// Scopes this request needs.
    pub scopes: Vec<String>,
    /// The action (`payments.send`).
    pub action: Option<String>,
    /// `resource {type, id}`.
    pub resource: Option<(String, String)>,
    /// Amount and currency.
    pub money: Option<Money>,
    /// The receiver's idempotency key.
    pub idempotency_key: Option<String>,
    /// Lowercase hex SHA-256 of the request's canonical form (what receipts bind).
    pub request_sha256: String,
}

/// What the token checks (steps 1–7) found.
#[derive(Debug, Clone)]
pub enum Checked {
    /// Not valid: the error code and text, and the agent and token when the
    /// signature checked out (a revoked token).
    Invalid {
        /// `TOKEN_INVALID`, `TOKEN_REVOKED`, …
        code: ErrorCode,
        /// A reason that follows `code` in `reasons`: `KEY_REVOKED` after
        /// `TOKEN_REVOKED` when the issuer key that signed the token is revoked.
        second_reason: Option<&'static str>,
        /// In words.
        message: String,
        /// Agent and token id, when known for sure.
        subject: Option<(AgentId, TokenId)>,
    },
    /// Genuine and live.
    Valid(Box<ValidToken>),
}

/// The parts of a valid token a decision uses.
#[derive(Debug, Clone)]
pub struct ValidToken {
    /// `sub`.
    pub agent: AgentId,
    /// `jti`.
    pub jti: TokenId,
    /// `agent.name`.
    pub name: String,
    /// `agent.issuer` (the issuer's name).
    pub issuer_name: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// `user`.
    pub user: Option<String>,
    /// `exp`.
    pub exp: i64,
    /// The parsed consent policy.
    pub policy: Option<Arc<Policy>>,
    /// `key_expires_at` of the agent key the token is bound to (`cnf.jkt`).
    pub key_expires_at_ms: Option<i64>,
    /// The delegation chain of a token made by token exchange (its ancestors'
    /// budgets are charged too).
    pub delegation: Option<Arc<crate::delegation::Chain>>,
}

/// A bound agent key expiring within this is warned about (`KEY_EXPIRES_SOON`).
pub const KEY_EXPIRY_WARNING_MS: i64 = 14 * 86_400_000;

/// The decision itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Allowed.
    pub allowed: bool,
    /// Reason codes in order.
    pub reasons: Vec<String>,
    /// Human sentence when not allowed.
    pub reason: Option<String>,
    /// Budget left after this decision.
    pub remaining: Option<RemainingView>,
    /// Amount to charge (allowed, with a per-period budget).
    pub charge: Option<Decimal>,
}

/// Everything one decision depends on, owned (see the module docs).
#[derive(Debug, Clone)]
pub struct Deciding {
    /// When it is decided.
    pub now_ms: i64,
    /// The registry URL (receipt `iss`).
    pub registry: String,
    /// The agent's `did:web`, when valid.
    pub did: Option<String>,
    /// Who asked.
    pub actor: Actor,
    /// The receiver that asked, when it presented its key.
    pub receiver: Option<ReceiverId>,
    /// The HTTP request id.
    pub request_id: String,
    /// SHA-256 of the token text.
    pub token_sha256: String,
    /// What was asked.
    pub asked: Asked,
    /// What the token checks found.
    pub checked: Checked,
    /// The agent's issuer (for the receipt's readers and the budget).
    pub issuer_id: Option<IssuerId>,
    /// `domain_verified` or `registered`, when the token is valid.
    pub trust_level: Option<&'static str>,
    /// The verified domain, with `domain_verified`.
    pub issuer_domain: Option<String>,
    /// The receipt to make, when decisions are logged.
    pub receipt_id: Option<ReceiptId>,
}

impl Deciding {
    /// True if the decision is about a known agent: the token's signature verified
    /// (valid, or refused for its status). Only such decisions reach the audit log
    /// and get receipts.
    pub fn concerns_agent(&self) -> bool {
        match &self.checked {
            Checked::Valid(_) => true,
            Checked::Invalid { subject, .. } => subject.is_some(),
        }
    }

    /// The budget a decision may charge: with a valid token whose policy has a
    /// per-period limit, when an action is asked.
    pub fn budget(&self) -> Option<BudgetCharge> {
        let Checked::Valid(v) = &self.checked else {
            return None;
        };
        let policy = v.policy.as_ref()?;
        self.asked.action.as_ref()?;
        let limits = policy.limits()?;
        let (cap, period) = limits.per_period?;
        let window = policy::period_of(period, policy.zone(), self.now()).ok()?;
        Some(BudgetCharge {
            key: BudgetKey {
                issuer_id: self.issuer_id.clone()?,
                // One budget per policy: two policies that reuse an id (another cap,
                // another zone) must not share, or charge against, one total.
                policy_id: format!("{}#{}", policy.id(), policy.hash()),
                period_key: window.key,
                currency: limits.currency.code().to_owned(),
            },
            cap,
            ancestors: crate::delegation::ancestor_budgets(
                v.delegation.as_deref(),
                self.issuer_id.as_ref()?,
                self.now(),
            ),
        })
    }

    fn now(&self) -> Timestamp {
        crate::time::timestamp_ms(self.now_ms)
    }

    /// The decision, given what the budget has spent (zero when it has no budget).
    pub fn outcome(&self, spent: Option<Decimal>) -> Outcome {
        let v = match &self.checked {
            Checked::Invalid {
                code,
                second_reason,
                message,
                ..
            } => {
                return Outcome {
                    allowed: false,
                    reasons: std::iter::once(code.as_str())
                        .chain(*second_reason)
                        .map(str::to_owned)
                        .collect(),
                    reason: Some(message.clone()),
                    remaining: None,
                    charge: None,
                };
            }
            Checked::Valid(v) => v,
        };
        let mut reasons = Vec::new();
        let mut messages = Vec::new();
        let missing: Vec<&String> = self
            .asked
            .scopes
            .iter()
            .filter(|s| !v.scopes.contains(s))
            .collect();
        if !missing.is_empty() {
            let names: Vec<String> = missing
                .iter()
                .map(|s| format!("`{}`", s.chars().take(64).collect::<String>()))
                .collect();
            reasons.push("SCOPE_NOT_GRANTED".to_owned());
            messages.push(format!(
                "scope {} not granted to this agent",
                names.join(", ")
            ));
        }
        let mut remaining = None;
        let mut charge = None;
        if self.asked.action.is_none() && v.policy.is_some() {
            // Deny by default: the policy grants named actions only, so a request that
            // names none is within nothing it grants (its time window included).
            reasons.push("POLICY_ACTION".to_owned());
            messages.push(
                "the token carries a consent policy, which grants named actions only: name the `action`"
                    .to_owned(),
            );
        }
        if let Some(action) = &self.asked.action {
            match &v.policy {
                None => {
                    reasons.push("POLICY_ACTION".to_owned());
                    messages.push(
                        "the token carries no consent policy, so it grants no action".to_owned(),
                    );
                }
                Some(policy) => {
                    let req = PolicyRequest {
                        action,
                        resource: self
                            .asked
                            .resource
                            .as_ref()
                            .map(|(kind, id)| ResourceRef { kind, id }),
                        money: self.asked.money,
                    };
                    let d = policy.evaluate(&req, self.now(), spent.unwrap_or(Decimal::ZERO));
                    for r in &d.reasons {
                        reasons.push(r.code.as_str().to_owned());
                        messages.push(r.message.clone());
                    }
                    let scopes_ok = missing.is_empty();
                    remaining = d.remaining.map(|mut r| {
                        // The policy alone would allow it, but the scopes do not:
                        // nothing is charged, so nothing comes off the budget.
                        if let (false, Some(s)) = (scopes_ok, &d.spend) {
                            r.amount += s.amount;
                        }
                        remaining_view(&r)
                    });
                    if scopes_ok {
                        charge = d.spend.map(|s| s.amount);
                    }
                }
            }
        }
        let allowed = reasons.is_empty();
        Outcome {
            allowed,
            reason: (!allowed).then(|| messages.join("; ")),
            reasons,
            remaining,
            charge,
        }
    }

    /// The answer for an outcome.
    pub fn response(&self, o: &Outcome, audit_index: Option<u64>) -> VerifyResponse {
        let warnings = match &self.checked {
            Checked::Valid(v)
                if v.key_expires_at_ms
                    .is_some_and(|at| at - self.now_ms <= KEY_EXPIRY_WARNING_MS) =>
            {
                vec!["KEY_EXPIRES_SOON".to_owned()]
            }
            _ => Vec::new(),
        };
        let (valid, error, agent, user, expires_at) = match &self.checked {
            Checked::Invalid { code, message, .. } => (
                false,
                Some(ErrorDetail {
                    code: code.clone(),
                    message: message.clone(),
                    request_id: self.request_id.clone(),
                    reset: None,
                }),
                None,
                None,
                None,
            ),
            Checked::Valid(v) => {
                let all_granted = self.asked.scopes.iter().all(|s| v.scopes.contains(s));
                let active = if all_granted && !self.asked.scopes.is_empty() {
                    self.asked.scopes.clone()
                } else {
                    v.scopes.clone()
                };
                (
                    true,
                    None,
                    Some(VerifiedAgent {
                        id: v.agent.to_string(),
                        did: self.did.clone().unwrap_or_default(),
                        name: v.name.clone(),
                        issuer: v.issuer_name.clone(),
                        active_scopes: active,
                    }),
                    v.user.clone(),
                    Some(rfc3339_s(v.exp)),
                )
            }
        };
        VerifyResponse {
            valid,
            allowed: o.allowed,
            error,
            reason: o.reason.clone(),
            reasons: o.reasons.clone(),
            trust_level: match &self.checked {
                Checked::Valid(_) => self.trust_level.map(str::to_owned),
                Checked::Invalid { .. } => None,
            },
            issuer_domain: match &self.checked {
                Checked::Valid(_) => self.issuer_domain.clone(),
                Checked::Invalid { .. } => None,
            },
            agent,
            delegation: match &self.checked {
                Checked::Valid(v) => v
                    .delegation
                    .as_ref()
                    .map(|c| c.hops.clone())
                    .unwrap_or_default(),
                Checked::Invalid { .. } => Vec::new(),
            },
            user,
            expires_at,
            verified_at: rfc3339_ms(self.now_ms),
            remaining: o.remaining.clone(),
            warnings,
            receipt_id: self.receipt_id.as_ref().map(ToString::to_string),
            audit_index,
            simulated: false,
        }
    }

    fn subject(&self) -> Option<(&AgentId, &TokenId)> {
        match &self.checked {
            Checked::Invalid { subject, .. } => subject.as_ref().map(|(a, j)| (a, j)),
            Checked::Valid(v) => Some((&v.agent, &v.jti)),
        }
    }

    fn policy_hash(&self) -> Option<String> {
        match &self.checked {
            Checked::Valid(v) => v.policy.as_ref().map(|p| p.hash().to_owned()),
            Checked::Invalid { .. } => None,
        }
    }

    /// The audit entry of an outcome.
    pub fn audit_entry(&self, o: &Outcome) -> AuditEntry {
        let subject = self.subject();
        let mut entry = AuditEntry::new(EventType::Verify, self.now_ms, self.actor.clone());
        entry.agent = subject.map(|(a, _)| a.to_string());
        entry.jti = subject.map(|(_, j)| j.to_string());
        entry.token_sha256 = Some(self.token_sha256.clone());
        entry.decision = Some(if o.allowed {
            Decision::Allow
        } else {
            Decision::Deny
        });
        entry.reasons.clone_from(&o.reasons);
        entry.scopes.clone_from(&self.asked.scopes);
        entry.target.clone_from(&self.asked.audience);
        entry.request_id = Some(self.request_id.clone());
        entry.receipt = self.receipt_id.as_ref().map(ToString::to_string);
        entry.request_sha256 = Some(self.asked.request_sha256.clone());
        entry.policy_hash = self.policy_hash();
        entry.amount = self.asked.money.map(fmt_money);
        entry
    }

    /// The receipt claims of an outcome (without the audit index, which the store
    /// assigns).
    pub fn receipt_claims(&self, o: &Outcome) -> Option<ReceiptClaims> {
        let receipt_id = self.receipt_id.clone()?;
        let subject = self.subject();
        Some(ReceiptClaims {
            iss: self.registry.clone(),
            iat: self.now_ms.div_euclid(1000),
            sub: receipt_id.clone(),
            receipt_id,
            decision: if o.allowed {
                Decision::Allow
            } else {
                Decision::Deny
            },
            valid: matches!(self.checked, Checked::Valid(_)),
            reasons: o.reasons.clone(),
            token_sha256: self.token_sha256.clone(),
            agent_id: subject.map(|(a, _)| a.clone()),
            jti: subject.map(|(_, j)| j.clone()),
            policy_hash: self.policy_hash(),
            request_sha256: self.asked.request_sha256.clone(),
            verified_at: rfc3339_ms(self.now_ms),
            remaining: o.remaining.clone().map(Into::into),
            audit_index: None,
            receiver: self.receiver.clone(),
        })
    }

    /// What the store writes for this decision: run inside its transaction.
    /// `unspent`: the audit record already made for this decision with nothing spent
    /// ([`Deciding::unspent_record`]), used as is when the store reports no spending
    /// (it is the same entry: everything else it says is fixed before the store runs).
    pub fn decided(
        &self,
        spent: Option<Decimal>,
        audited: bool,
        unspent: Option<&AuditRecord>,
    ) -> Result<Decided, StoreError> {
        let o = self.outcome(spent);
        let audit = if let (true, None, Some(record)) = (audited, spent, unspent) {
            Some(record.clone())
        } else if audited {
            let entry = self.audit_entry(&o);
            Some(
                crate::audit::record(&entry, self.subject().map(|(a, _)| a), None).map_err(
                    |e| {
                        tracing::warn!(error = %e, "a decision cannot be audited");
                        StoreError::Conflict(ConflictKind::Unauditable)
                    },
                )?,
            )
        } else {
            None
        };
        let receipt = match (audited, self.receipt_claims(&o)) {
            (true, Some(claims)) => Some(ReceiptRecord {
                id: claims.receipt_id.clone(),
                // Who may read it is in the audit entry too: its actor, its agent's
                // issuer (`crate::stored_receipt`).
                receiver_id: None,
                issuer_id: None,
                // Only what the audit entry does not say (`crate::stored_receipt`).
                claims: serde_json::to_vec(&crate::stored_receipt::StoredReceipt::of(&claims))
                    .map_err(|e| StoreError::Backend(format!("receipt claims: {e}")))?,
                audit_index: None,
                created_at_ms: self.now_ms,
            }),
            _ => None,
        };
        let answer = if self.asked.idempotency_key.is_some() {
            serde_json::to_vec(&self.response(&o, None))
                .map_err(|e| StoreError::Backend(format!("answer: {e}")))?
        } else {
            Vec::new()
        };
        Ok(Decided {
            audit,
            receipt,
            charge: o.charge,
            answer,
        })
    }
}

impl Deciding {
    /// The audit record of this decision with nothing spent, as [`Deciding::decided`]
    /// makes it: made before the store's transaction (off the committer's path), and
    /// so checked to be auditable before anything is asked of the store.
    pub fn unspent_record(&self) -> Result<AuditRecord, bonafide_core::audit::AuditError> {
        let mut record = crate::audit::record(
            &self.audit_entry(&self.outcome(None)),
            self.subject().map(|(a, _)| a),
            None,
        )?;
        // Its leaf hash and packed form made here, on the request's task: off the
        // store's one commit path, which every audited verify waits on.
        record.prepare();
        Ok(record)
    }
}

/// `"12.50 USD"`.
pub fn fmt_money(m: Money) -> String {
    let mut a = m.amount;
    a.rescale(policy::money::minor_units(m.currency));
    format!("{a} {}", m.currency.code())
}

fn remaining_view(r: &policy::Remaining) -> RemainingView {
    let mut amount = r.amount;
    amount.rescale(policy::money::minor_units(r.currency));
    RemainingView {
        amount: amount.to_string(),
        currency: r.currency.code().to_owned(),
        period: period_name(r.period).to_owned(),
        period_ends: r.period_ends.to_string(),
    }
}

fn period_name(p: BudgetPeriod) -> &'static str {
    p.as_str()
}
