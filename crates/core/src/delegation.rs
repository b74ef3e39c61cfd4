//! Delegation by token exchange (RFC 8693): the pure rules for minting a child token
//! that lets a sub-agent act for its parent's subject, and for reading the chain back.
//!
//! `POST /v1/token` (docs/design.md, "HTTP API") takes the parent agent's token (`subject_token`), the
//! sub-agent's own token (`actor_token`) and what the child should carry (a
//! [`Request`]). The server verifies both tokens and their status, then calls
//! [`child_claims`], which refuses anything wider than the parent and returns the
//! child's claims for the registry to sign. This module decides; it reads no clock and
//! stores nothing.
//!
//! # Claim shape (RFC 8693 §4.1)
//!
//! The child keeps the parent's `sub` (the subject whose authority is delegated) and
//! records the sub-agent as the current actor in `act`, the parent's own actors
//! nested inside it; `ancestor_jtis` lists the ancestor tokens, root first (see
//! [`AgentClaims::ancestor_jtis`]). A token three hops from the root:
//!
//! ```json
//! {
//!   "iss": "https://registry.example", "sub": "agt_root…", "aud": ["bank.example"],
//!   "iat": 1767225600, "nbf": 1767225600, "exp": 1767227400, "jti": "tok_hop3…",
//!   "agent": {"name": "Portfolio assistant", "issuer": "apexwealth.com", "scopes": ["read:portfolio"]},
//!   "scope": "read:portfolio",
//!   "act": {"sub": "agt_hop3…", "act": {"sub": "agt_hop2…", "act": {"sub": "agt_hop1…"}}},
//!   "ancestor_jtis": ["tok_root…", "tok_hop1…", "tok_hop2…"]
//! }
//! ```
//!
//! `agent` still describes the subject, with the child's (narrower) scopes. `cnf`, when
//! the server sets it, binds the current actor's key: the actor presents the token.
//!
//! # What "narrower" means ([`check_narrower`])
//!
//! Every dimension is checked and every widening reported ([`Widenings`]), so the
//! server can answer `DELEGATION_WIDENS` with all of them at once. One rule runs
//! through all of them: a child never gains a grant its parent lacks, and a dimension
//! the parent constrains and the child leaves out is a widening (absence is the
//! widest value), except where the request's absence means "keep the parent's"
//! (audience, policy):
//!
//! - `scope`: each requested scope is one the parent holds. Scopes have no wildcards
//!   or hierarchy ([`crate::scopes`]), so "covers" is equality.
//! - `audience`: a parent without `aud` is for any receiver, so any child audience is
//!   narrower; otherwise the child's audiences are a subset of the parent's. A request
//!   without an audience inherits the parent's.
//! - `exp`: at most the parent's.
//! - `depth`: the child's `act` nesting is at most the configured cap (default
//!   [`DEFAULT_MAX_DEPTH`], never above [`MAX_ACT_DEPTH`]).
//! - `cnf`: a parent bound to a key needs a proof with every request, so its child is
//!   bound too (to its actor's key, [`Request::cnf`]): a bearer child would be wider.
//! - `policy`: a request without a policy inherits the parent's. A parent without a
//!   policy grants no action and no spending (the verifier refuses any `action` and
//!   any amount for it), and every policy grants at least one action, so a child of
//!   such a parent may not carry one. Under a parent with a policy, with the
//!   semantics of [`Policy::evaluate`]:
//!   - `policy.actions`: a subset of the parent's (actions compare exactly).
//!   - `policy.resources`: under a parent that lists resources, the child lists some
//!     too (an empty list would allow requests naming none), and each child rule is
//!     covered by parent rules of the same `type`: each id is a parent id or under a
//!     parent prefix, each prefix starts with a parent prefix on a segment boundary.
//!     Under a strict parent that lists none (it grants no named resource) the child
//!     lists none. Under a non-strict parent that lists none, anything goes.
//!   - `policy.limits`: a parent policy without `limits` grants no spending, so a
//!     child with `limits` widens; a parent with `limits` allows only requests that
//!     state an amount within them, so a child without `limits` (which would allow
//!     requests without an amount) widens too.
//!   - `policy.currency`: the child's limits are in the parent's currency (amounts
//!     in different currencies are not compared, there is no exchange rate).
//!   - `policy.limits.per_txn`: when the parent has one, the child has one, no larger.
//!     (Stricter than needed: a child whose `per_period` is below the parent's
//!     `per_txn` is refused without its own `per_txn`.)
//!   - `policy.limits.per_period`: when the parent has one, the child has one for the
//!     same period, no larger. The server also charges every ancestor's budget.
//!   - `policy.time`: when the parent has a window, the child has one in the same
//!     zone, and every wall-clock minute of the week the child allows, the parent
//!     allows (checked minute by minute, so windows across midnight and `dow` are
//!     exact; same zone, so daylight saving moves both alike).
//!   - `policy.strict`: a strict parent has a strict child.
//!
//!   What a policy does not constrain is not compared: `id` and `meta` grant
//!   nothing, and the zone of a child's budget periods may differ from its parent's
//!   (the server charges every ancestor's budget in the ancestor's own periods).
//!
//! The child also keeps the parent's `user` and `agent`; a request cannot change them.
//!
//! `tests/delegation.rs` checks the rule as a property: for random parent and child
//! policies, whatever an accepted child allows, its parent allows.

use std::fmt;

use crate::ids::{AgentId, TokenId};
use crate::policy::money::minor_units;
use crate::policy::{
    Currency, Decimal, Limits, Policy, ResourceRule, SEPARATORS, TimeWindow, prefix_matches,
};
use crate::scopes::{self, ScopeError};
use crate::token::{Actor, AgentClaims, AgentInfo, Audience, Confirmation, MAX_ACT_DEPTH};

/// Default cap on delegation depth: a root token's child is depth 1, and a chain may
/// go four hops from the root.
pub const DEFAULT_MAX_DEPTH: usize = 4;

/// What a token exchange asks the child token to carry.
#[derive(Debug, Clone)]
pub struct Request {
    /// Requested scopes (the RFC 8693 `scope` parameter, split).
    pub scopes: Vec<String>,
    /// Requested audiences; `None` keeps the parent's.
    pub audience: Option<Vec<String>>,
    /// Expiry of the child, Unix seconds (the server computes it from `expires_in`).
    pub exp: i64,
    /// A narrower policy; `None` keeps the parent's.
    pub policy: Option<Policy>,
    /// The key the child is bound to (the actor's current key), or `None` for a
    /// bearer child, refused under a bound parent.
    pub cnf: Option<Confirmation>,
}

/// One dimension in which a requested child would be wider than its parent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Widening {
    /// Scopes the parent does not hold.
    #[error("scope: {} not granted to the parent token", list(.extra))]
    Scope {
        /// The requested scopes the parent lacks.
        extra: Vec<String>,
    },
    /// Audiences the parent is not for.
    #[error("audience: {} not among the parent token's audiences", list(.extra))]
    Audience {
        /// The requested audiences the parent lacks.
        extra: Vec<String>,
    },
    /// Expiry after the parent's.
    #[error("exp: {requested} is after the parent token's {parent}")]
    Exp {
        /// Requested `exp`.
        requested: i64,
        /// Parent's `exp`.
        parent: i64,
    },
    /// Too many hops from the root.
    #[error("depth: the child would be {depth} hops from the root, at most {max} allowed")]
    Depth {
        /// The child's depth.
        depth: usize,
        /// The cap.
        max: usize,
    },
    /// An unbound (bearer) child of a parent bound to a key.
    #[error(
        "cnf: the parent token is bound to a key and the child would not be (its actor has no current key): a bearer child is wider"
    )]
    Cnf,
    /// A policy under a parent token without one, which grants no action.
    #[error(
        "policy: the parent token carries no consent policy, so it grants no action and no spending; its child cannot carry one"
    )]
    Policy,
    /// Actions the parent's policy does not grant.
    #[error("policy.actions: {} not granted by the parent's policy", list(.extra))]
    PolicyActions {
        /// The child's actions the parent lacks.
        extra: Vec<String>,
    },
    /// Resources the parent's policy does not grant.
    #[error("policy.resources: {0}")]
    PolicyResources(ResourceWidening),
    /// Limits under a parent policy that grants no spending.
    #[error("policy.limits: the parent's policy has no `limits`, so it grants no spending")]
    PolicySpending,
    /// No limits under a parent policy with limits, which allows only requests that
    /// state an amount within them.
    #[error(
        "policy.limits: the parent's policy has `limits` and the child's has none, so it would allow requests without an amount"
    )]
    PolicyLimitsDropped,
    /// Limits in another currency than the parent's.
    #[error("policy.currency: `{child}` differs from the parent's `{parent}`")]
    PolicyCurrency {
        /// Parent's currency code.
        parent: String,
        /// Child's currency code.
        child: String,
    },
    /// A per-transaction limit above the parent's, or none under a parent with one.
    #[error("policy.limits.per_txn: {} is above the parent's {parent}", .child.as_deref().unwrap_or("no limit"))]
    PolicyPerTxn {
        /// Parent's limit (`"500.00 USD"`).
        parent: String,
        /// Child's limit, if it has one.
        child: Option<String>,
    },
    /// A period budget above the parent's, for another period, or none under a
    /// parent with one.
    #[error("policy.limits.per_period: {} is above the parent's {parent}", .child.as_deref().unwrap_or("no limit"))]
    PolicyPerPeriod {
        /// Parent's budget (`"1500.00 USD per week"`).
        parent: String,
        /// Child's budget, if it has one.
        child: Option<String>,
    },
    /// A time window not inside the parent's.
    #[error("policy.time: {0}")]
    PolicyTime(TimeWidening),
    /// A non-strict policy under a strict one.
    #[error("policy.strict: the parent's policy is strict and the child's is not")]
    PolicyStrict,
}

impl Widening {
    /// The dimension that widened, as reported on the wire (`scope`, `audience`, `exp`,
    /// `depth`, `cnf`, `policy`, `policy.actions`, `policy.resources`, `policy.limits`,
    /// `policy.currency`, `policy.limits.per_txn`, `policy.limits.per_period`,
    /// `policy.time`, `policy.strict`).
    pub fn dimension(&self) -> &'static str {
        match self {
            Widening::Scope { .. } => "scope",
            Widening::Audience { .. } => "audience",
            Widening::Exp { .. } => "exp",
            Widening::Depth { .. } => "depth",
            Widening::Cnf => "cnf",
            Widening::Policy => "policy",
            Widening::PolicyActions { .. } => "policy.actions",
            Widening::PolicyResources(_) => "policy.resources",
            Widening::PolicySpending | Widening::PolicyLimitsDropped => "policy.limits",
            Widening::PolicyCurrency { .. } => "policy.currency",
            Widening::PolicyPerTxn { .. } => "policy.limits.per_txn",
            Widening::PolicyPerPeriod { .. } => "policy.limits.per_period",
            Widening::PolicyTime(_) => "policy.time",
            Widening::PolicyStrict => "policy.strict",
        }
    }
}

/// How a child's resources go beyond its parent's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResourceWidening {
    /// The parent lists resources and the child none (so it would allow requests that
    /// name no resource, or any resource).
    #[error("the parent's policy lists resources and the child's lists none")]
    Unrestricted,
    /// The parent is strict and lists no resource (it grants none); the child lists
    /// some.
    #[error("the parent's strict policy grants no named resource and the child's lists some")]
    ParentGrantsNone,
    /// Ids or prefixes of one child rule that no parent rule of its type covers.
    #[error("type `{kind}`: {}{}{} not granted by the parent's policy",
        list(.ids),
        if .ids.is_empty() || .prefixes.is_empty() { "" } else { " and prefixes " },
        if .prefixes.is_empty() { String::new() } else { list(.prefixes) })]
    NotCovered {
        /// The rule's resource type.
        kind: String,
        /// Ids not covered.
        ids: Vec<String>,
        /// Prefixes not covered.
        prefixes: Vec<String>,
    },
}

/// How a child's time window goes beyond its parent's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeWidening {
    /// The parent has a window and the child none.
    #[error("the parent's policy has a time window and the child's has none")]
    Unrestricted,
    /// The windows are in different zones.
    #[error("zone `{child}` differs from the parent's `{parent}`")]
    Zone {
        /// Parent's IANA zone.
        parent: String,
        /// Child's IANA zone.
        child: String,
    },
    /// The child allows a wall-clock minute the parent does not.
    #[error("the child's window allows {example}, outside the parent's window")]
    Outside {
        /// The first such minute of the week (`"Sat 02:00"`).
        example: String,
    },
}

/// Every way a requested child is wider than its parent, in the order of
/// [`check_narrower`]'s checks (scope, audience, exp, depth, cnf, then the policy). Never
/// empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Widenings(pub Vec<Widening>);

impl Widenings {
    /// The widened dimensions, in order (see [`Widening::dimension`]).
    pub fn dimensions(&self) -> Vec<&'static str> {
        self.0.iter().map(Widening::dimension).collect()
    }

    /// The widenings.
    pub fn iter(&self) -> impl Iterator<Item = &Widening> {
        self.0.iter()
    }
}

impl fmt::Display for Widenings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, w) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{w}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Widenings {}

/// Why a child token cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DelegationError {
    /// The request is wider than the parent (`DELEGATION_WIDENS`).
    #[error("delegation widens the parent token: {0}")]
    Widens(Widenings),
    /// The actor is already in the parent's chain (the subject or an actor): a chain
    /// never names an agent twice.
    #[error("agent `{0}` is already in the delegation chain")]
    ActorInChain(AgentId),
    /// The requested scopes are empty, too many or malformed.
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// An empty audience list (omit it to keep the parent's).
    #[error("`audience` is empty: name at least one receiver, or omit it")]
    EmptyAudience,
    /// `exp` not after the issue time.
    #[error("`exp` {exp} is not after the issue time {iat}")]
    ExpiresBeforeIssued {
        /// Requested `exp`.
        exp: i64,
        /// Issue time.
        iat: i64,
    },
    /// The parsed parent policy passed in is not the parent token's (a caller bug).
    #[error("the parent policy given does not match the parent token's `policy_hash`")]
    ParentPolicyMismatch,
}

/// What the registry adds to a child token: its own identity and the issue time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// `iss`: the registry URL (children are always registry-signed).
    pub iss: String,
    /// The child's `jti`.
    pub jti: TokenId,
    /// Issue time, Unix seconds (`iat`, and `nbf` unless the parent's is later).
    pub iat: i64,
}

/// Delegation depth of a token: 0 for a root token, 1 for its child, and so on.
pub fn depth(claims: &AgentClaims) -> usize {
    claims.act.as_ref().map_or(0, Actor::depth)
}

/// The agent that presents the token: the current actor (outermost `act.sub`), or
/// `sub` for a token without `act`. A `cnf` binding is to this agent's key.
pub fn current_actor(claims: &AgentClaims) -> &AgentId {
    claims.act.as_ref().map_or(&claims.sub, |a| &a.sub)
}

/// The delegation chain, **root first**: the subject (`sub`), then each actor from
/// the least recent to the current one. One entry for a token without `act`; its
/// length is [`depth`] + 1. This is the order of the verify answer's `delegation`
/// list ("A delegated to B, who delegated to C"), the reverse of `act` nesting.
pub fn chain(claims: &AgentClaims) -> Vec<&AgentId> {
    let mut out: Vec<&AgentId> = claims
        .act
        .iter()
        .flat_map(|a| a.iter().map(|x| &x.sub))
        .collect();
    out.push(&claims.sub);
    out.reverse();
    out
}

/// The `act` of a child of `parent` presented by `actor`: `actor` becomes the
/// current actor and the parent's actors nest inside it (RFC 8693 §4.1).
pub fn child_act(parent: &AgentClaims, actor: &AgentId) -> Result<Actor, DelegationError> {
    if chain(parent).contains(&actor) {
        return Err(DelegationError::ActorInChain(actor.clone()));
    }
    Ok(Actor {
        sub: actor.clone(),
        act: parent.act.clone().map(Box::new),
    })
}

/// Checks that `req` is no wider than `parent` (whose parsed policy is
/// `parent_policy`, from [`crate::token::policy_of`]) in any dimension, with at most
/// `max_depth` hops from the root (capped at [`MAX_ACT_DEPTH`]). Reports every
/// widening, not only the first. See the module docs for the rules.
pub fn check_narrower(
    parent: &AgentClaims,
    parent_policy: Option<&Policy>,
    req: &Request,
    max_depth: usize,
) -> Result<(), Widenings> {
    let mut out = Vec::new();

    let extra: Vec<String> = req
        .scopes
        .iter()
        .filter(|s| !parent.agent.scopes.contains(*s))
        .cloned()
        .collect();
    if !extra.is_empty() {
        out.push(Widening::Scope { extra });
    }

    if let (Some(parent_aud), Some(child_aud)) = (&parent.aud, &req.audience) {
        let extra: Vec<String> = child_aud
            .iter()
            .filter(|a| !parent_aud.contains(a.as_str()))
            .cloned()
            .collect();
        if !extra.is_empty() {
            out.push(Widening::Audience { extra });
        }
    }

    if req.exp > parent.exp {
        out.push(Widening::Exp {
            requested: req.exp,
            parent: parent.exp,
        });
    }

    let child_depth = depth(parent).saturating_add(1);
    let max = max_depth.min(MAX_ACT_DEPTH);
    if child_depth > max {
        out.push(Widening::Depth {
            depth: child_depth,
            max,
        });
    }

    if parent.cnf.is_some() && req.cnf.is_none() {
        out.push(Widening::Cnf);
    }

    match (parent_policy, &req.policy) {
        // Kept: the child carries the parent's policy.
        (_, None) => {}
        (None, Some(_)) => out.push(Widening::Policy),
        (Some(p), Some(c)) => policy_widenings(p, c, &mut out),
    }

    if out.is_empty() {
        Ok(())
    } else {
        Err(Widenings(out))
    }
}

/// The claims of the child token: checks `req` ([`check_narrower`] and its own
/// validity), then builds them from `parent`. The child keeps the parent's `sub`,
/// `agent` (with the new scopes) and `user`; takes the requested audience, expiry
/// and policy, or the parent's when the request has none; and records `actor` in
/// `act` and the parent's `jti` at the end of `ancestor_jtis`. `cnf` is the
/// request's (the server passes the actor's current key, if it has one).
pub fn child_claims(
    parent: &AgentClaims,
    parent_policy: Option<&Policy>,
    actor: &AgentId,
    req: &Request,
    issue: Issue,
    max_depth: usize,
) -> Result<AgentClaims, DelegationError> {
    let policy_matches = match (&parent.policy_hash, parent_policy) {
        (None, None) => true,
        (Some(h), Some(p)) => p.hash_matches(h),
        _ => false,
    };
    if !policy_matches {
        return Err(DelegationError::ParentPolicyMismatch);
    }
    let scopes = scopes::validate_all(&req.scopes)?;
    if req.audience.as_ref().is_some_and(Vec::is_empty) {
        return Err(DelegationError::EmptyAudience);
    }
    if req.exp <= issue.iat {
        return Err(DelegationError::ExpiresBeforeIssued {
            exp: req.exp,
            iat: issue.iat,
        });
    }
    let act = child_act(parent, actor)?;
    check_narrower(parent, parent_policy, req, max_depth).map_err(DelegationError::Widens)?;

    let mut ancestors = parent.ancestor_jtis.clone().unwrap_or_default();
    ancestors.push(parent.jti.clone());
    let aud = match &req.audience {
        None => parent.aud.clone(),
        Some(list) => Some(match list.as_slice() {
            [one] => Audience::One(one.clone()),
            many => Audience::Many(many.to_vec()),
        }),
    };
    let (policy, policy_hash) = match &req.policy {
        Some(p) => (Some(p.as_value().clone()), Some(p.hash().to_owned())),
        None => (parent.policy.clone(), parent.policy_hash.clone()),
    };
    Ok(AgentClaims {
        iss: issue.iss,
        sub: parent.sub.clone(),
        aud,
        iat: issue.iat,
        nbf: Some(parent.nbf.map_or(issue.iat, |n| n.max(issue.iat))),
        exp: req.exp,
        jti: issue.jti,
        agent: AgentInfo {
            scopes: scopes.clone(),
            ..parent.agent.clone()
        },
        scope: Some(scopes.join(" ")),
        user: parent.user.clone(),
        policy,
        policy_hash,
        cnf: req.cnf.clone(),
        act: Some(act),
        ancestor_jtis: Some(ancestors),
        status: None,
    })
}

// ---- policy ---------------------------------------------------------------------

fn policy_widenings(parent: &Policy, child: &Policy, out: &mut Vec<Widening>) {
    let extra: Vec<String> = child
        .actions()
        .iter()
        .filter(|a| !parent.actions().contains(*a))
        .cloned()
        .collect();
    if !extra.is_empty() {
        out.push(Widening::PolicyActions { extra });
    }

    resource_widenings(parent, child, out);

    match (parent.limits(), child.limits()) {
        (None, None) => {}
        (Some(_), None) => out.push(Widening::PolicyLimitsDropped),
        (None, Some(_)) => out.push(Widening::PolicySpending),
        (Some(p), Some(c)) => limit_widenings(p, c, out),
    }

    if let Some(w) = time_widening(parent, child) {
        out.push(Widening::PolicyTime(w));
    }

    if parent.strict() && !child.strict() {
        out.push(Widening::PolicyStrict);
    }
}

fn resource_widenings(parent: &Policy, child: &Policy, out: &mut Vec<Widening>) {
    let (p, c) = (parent.resources(), child.resources());
    match (p.is_empty(), c.is_empty()) {
        // A non-strict parent that lists none allows any resource or none; a strict
        // one grants none, and so does a strict child that lists none (strictness
        // is checked on its own).
        (true, true) => {}
        (true, false) => {
            if parent.strict() {
                out.push(Widening::PolicyResources(
                    ResourceWidening::ParentGrantsNone,
                ));
            }
        }
        (false, true) => out.push(Widening::PolicyResources(ResourceWidening::Unrestricted)),
        (false, false) => {
            for rule in c {
                if let Some(w) = uncovered(p, rule) {
                    out.push(Widening::PolicyResources(w));
                }
            }
        }
    }
}

fn uncovered(parent: &[ResourceRule], rule: &ResourceRule) -> Option<ResourceWidening> {
    let same_kind = || parent.iter().filter(|p| p.kind == rule.kind);
    let ids: Vec<String> = rule
        .ids
        .iter()
        .filter(|id| {
            !same_kind()
                .any(|p| p.ids.contains(id) || p.prefixes.iter().any(|q| prefix_matches(q, id)))
        })
        .cloned()
        .collect();
    let prefixes: Vec<String> = rule
        .prefixes
        .iter()
        .filter(|c| !same_kind().any(|p| p.prefixes.iter().any(|q| prefix_covers(q, c))))
        .cloned()
        .collect();
    (!ids.is_empty() || !prefixes.is_empty()).then(|| ResourceWidening::NotCovered {
        kind: rule.kind.clone(),
        ids,
        prefixes,
    })
}

/// True if every id that prefix `child` matches, prefix `parent` matches too: `child`
/// extends `parent` on a segment boundary (`acct/12` covers `acct/12` and
/// `acct/12/x`, not `acct/123`).
fn prefix_covers(parent: &str, child: &str) -> bool {
    let Some(rest) = child.strip_prefix(parent) else {
        return false;
    };
    rest.is_empty() || parent.ends_with(SEPARATORS) || rest.starts_with(SEPARATORS)
}

fn limit_widenings(p: &Limits, c: &Limits, out: &mut Vec<Widening>) {
    if p.currency != c.currency {
        out.push(Widening::PolicyCurrency {
            parent: p.currency.code().to_owned(),
            child: c.currency.code().to_owned(),
        });
        // Amounts in different currencies do not compare.
        return;
    }
    if let Some(cap) = p.per_txn
        && c.per_txn.is_none_or(|mine| mine > cap)
    {
        out.push(Widening::PolicyPerTxn {
            parent: money(cap, p.currency),
            child: c.per_txn.map(|m| money(m, c.currency)),
        });
    }
    if let Some((cap, period)) = p.per_period
        && c.per_period
            .is_none_or(|(mine, per)| per != period || mine > cap)
    {
        out.push(Widening::PolicyPerPeriod {
            parent: format!("{} per {}", money(cap, p.currency), period.as_str()),
            child: c
                .per_period
                .map(|(m, per)| format!("{} per {}", money(m, c.currency), per.as_str())),
        });
    }
}

fn money(amount: Decimal, currency: Currency) -> String {
    let mut d = amount;
    d.rescale(minor_units(currency));
    format!("{d} {}", currency.code())
}

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

fn time_widening(parent: &Policy, child: &Policy) -> Option<TimeWidening> {
    let pw = parent.time_window()?;
    let Some(cw) = child.time_window() else {
        return Some(TimeWidening::Unrestricted);
    };
    let (pz, cz) = (parent.zone().iana_name(), child.zone().iana_name());
    if pz != cz {
        return Some(TimeWidening::Zone {
            parent: pz.unwrap_or("?").to_owned(),
            child: cz.unwrap_or("?").to_owned(),
        });
    }
    // 7 × 1440 minutes: exact for any mix of day sets and windows across midnight.
    for day in 0u8..7 {
        for minute in 0u16..1440 {
            if allows(cw, day, minute) && !allows(pw, day, minute) {
                let name = DAY_NAMES.get(usize::from(day)).copied().unwrap_or("?");
                return Some(TimeWidening::Outside {
                    example: format!("{name} {:02}:{:02}", minute / 60, minute % 60),
                });
            }
        }
    }
    None
}

/// Whether `w` allows minute `minute` of weekday `day` (0 = Monday) on the wall clock:
/// the same rule as [`TimeWindow::contains`] (a test checks the two agree).
fn allows(w: &TimeWindow, day: u8, minute: u16) -> bool {
    let on = |d: u8| w.days & (1u8 << (d % 7)) != 0;
    match w.hours {
        None => on(day),
        Some((start, end)) if start < end => on(day) && start <= minute && minute < end,
        // Across midnight: the evening belongs to today's window, the morning to
        // yesterday's.
        Some((start, end)) => (minute >= start && on(day)) || (minute < end && on(day + 6)),
    }
}

fn list(items: &[String]) -> String {
    let shown: Vec<String> = items
        .iter()
        .take(16)
        .map(|s| format!("`{}`", s.chars().take(64).collect::<String>()))
        .collect();
    let more = items.len().saturating_sub(16);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::policy::{PolicyRequest, ResourceRef, Timestamp};

    fn agent(n: u8) -> AgentId {
        AgentId::from_random([n; 16])
    }

    fn tok(n: u8) -> TokenId {
        TokenId::from_random([n; 16])
    }

    fn root() -> AgentClaims {
        AgentClaims {
            iss: "https://registry.example".into(),
            sub: agent(1),
            aud: Some(Audience::Many(vec![
                "bank.example".into(),
                "shop.example".into(),
            ])),
            iat: 1000,
            nbf: Some(1000),
            exp: 5000,
            jti: tok(1),
            agent: AgentInfo {
                name: "Root".into(),
                issuer: "apexwealth.com".into(),
                scopes: vec!["read:portfolio".into(), "read:transactions".into()],
                description: None,
            },
            scope: Some("read:portfolio read:transactions".into()),
            user: Some("user@example.com".into()),
            policy: None,
            policy_hash: None,
            cnf: None,
            act: None,
            ancestor_jtis: None,
            status: None,
        }
    }

    fn pol(v: Value) -> Policy {
        Policy::from_value(v).unwrap()
    }

    fn base_policy() -> Value {
        json!({
            "version": "pol.v0.2", "id": "pol_parent",
            "actions": ["payments.send", "payments.refund"],
            "resources": [{"type": "merchant", "match": {"ids": ["airbnb"], "prefixes": ["acct/12"]}}],
            "limits": {
                "per_txn": {"amount": "500", "currency": "USD"},
                "per_period": {"amount": "1500", "currency": "USD", "period": "week"}
            },
            "constraints": {"time": {"dow": ["Mon", "Fri"], "start": "22:00", "end": "06:00", "tz": "America/New_York"}}
        })
    }

    fn with_policy(mut claims: AgentClaims, p: &Policy) -> AgentClaims {
        claims.policy = Some(p.as_value().clone());
        claims.policy_hash = Some(p.hash().to_owned());
        claims
    }

    fn req() -> Request {
        Request {
            scopes: vec!["read:portfolio".into()],
            audience: None,
            exp: 4000,
            policy: None,
            cnf: None,
        }
    }

    fn issue(n: u8, iat: i64) -> Issue {
        Issue {
            iss: "https://registry.example".into(),
            jti: tok(n),
            iat,
        }
    }

    /// The widened dimensions of `child` under `parent`'s policy (a root token).
    fn policy_dims(parent: Value, child: Value) -> Vec<&'static str> {
        let (p, c) = (pol(parent), pol(child));
        let parent_claims = with_policy(root(), &p);
        let r = Request {
            policy: Some(c),
            ..req()
        };
        match check_narrower(&parent_claims, Some(&p), &r, DEFAULT_MAX_DEPTH) {
            Ok(()) => vec![],
            Err(w) => w.dimensions(),
        }
    }

    fn edit(mut v: Value, path: &[&str], new: Value) -> Value {
        let mut at = &mut v;
        for k in &path[..path.len() - 1] {
            at = &mut at[*k];
        }
        let last = path[path.len() - 1];
        if new.is_null() {
            at.as_object_mut().unwrap().remove(last);
        } else {
            at[last] = new;
        }
        v
    }

    #[test]
    fn a_narrower_child_is_built_with_the_chain() {
        let parent = root();
        let r = Request {
            audience: Some(vec!["bank.example".into()]),
            ..req()
        };
        let child = child_claims(&parent, None, &agent(2), &r, issue(2, 1100), 4).unwrap();
        assert_eq!(child.sub, parent.sub);
        assert_eq!(child.act, Some(Actor::new(agent(2))));
        assert_eq!(child.ancestor_jtis, Some(vec![tok(1)]));
        assert_eq!(child.aud, Some(Audience::One("bank.example".into())));
        assert_eq!(child.scope.as_deref(), Some("read:portfolio"));
        assert_eq!(child.agent.scopes, vec!["read:portfolio"]);
        assert_eq!(child.agent.name, "Root");
        assert_eq!(child.user, parent.user);
        assert_eq!((child.iat, child.nbf, child.exp), (1100, Some(1100), 4000));
        assert_eq!(current_actor(&child), &agent(2));
        assert_eq!(depth(&child), 1);
        // Two more hops: the chain reads root first, `act` nests current first.
        let grandchild = child_claims(&child, None, &agent(3), &req(), issue(3, 1200), 4).unwrap();
        let hop3 = child_claims(&grandchild, None, &agent(4), &req(), issue(4, 1300), 4).unwrap();
        assert_eq!(
            chain(&hop3),
            vec![&agent(1), &agent(2), &agent(3), &agent(4)]
        );
        assert_eq!(depth(&hop3), 3);
        assert_eq!(current_actor(&hop3), &agent(4));
        assert_eq!(hop3.ancestor_jtis, Some(vec![tok(1), tok(2), tok(3)]));
        // The audience was inherited from the child.
        assert_eq!(hop3.aud, Some(Audience::One("bank.example".into())));
        let v = serde_json::to_value(&hop3).unwrap();
        assert_eq!(
            v["act"],
            json!({"sub": agent(4).as_str(), "act": {"sub": agent(3).as_str(), "act": {"sub": agent(2).as_str()}}})
        );
        hop3.check_consistent().unwrap();
        // And it round-trips.
        let back: AgentClaims = serde_json::from_value(v).unwrap();
        assert_eq!(back, hop3);
    }

    #[test]
    fn root_chain_is_the_subject_alone() {
        let c = root();
        assert_eq!(chain(&c), vec![&agent(1)]);
        assert_eq!(depth(&c), 0);
        assert_eq!(current_actor(&c), &agent(1));
    }

    #[test]
    fn scope_audience_and_exp_widenings_are_all_reported() {
        let r = Request {
            scopes: vec![
                "read:portfolio".into(),
                "write:email".into(),
                "read:files".into(),
            ],
            audience: Some(vec!["bank.example".into(), "evil.example".into()]),
            exp: 5001,
            policy: None,
            cnf: None,
        };
        let w = check_narrower(&root(), None, &r, 4).unwrap_err();
        assert_eq!(w.dimensions(), vec!["scope", "audience", "exp"]);
        assert_eq!(
            w.to_string(),
            "scope: `write:email`, `read:files` not granted to the parent token; \
             audience: `evil.example` not among the parent token's audiences; \
             exp: 5001 is after the parent token's 5000"
        );
        let err = child_claims(&root(), None, &agent(2), &r, issue(2, 1100), 4).unwrap_err();
        assert!(matches!(err, DelegationError::Widens(_)));
        assert!(
            err.to_string()
                .starts_with("delegation widens the parent token: scope:")
        );
    }

    #[test]
    fn any_audience_narrows_a_parent_without_one() {
        let mut parent = root();
        parent.aud = None;
        let r = Request {
            audience: Some(vec!["anything.example".into()]),
            ..req()
        };
        assert_eq!(check_narrower(&parent, None, &r, 4), Ok(()));
        // Equal exp is allowed.
        let r = Request { exp: 5000, ..req() };
        assert_eq!(check_narrower(&root(), None, &r, 4), Ok(()));
    }

    #[test]
    fn request_errors() {
        let r = Request {
            audience: Some(vec![]),
            ..req()
        };
        assert_eq!(
            child_claims(&root(), None, &agent(2), &r, issue(2, 1100), 4),
            Err(DelegationError::EmptyAudience)
        );
        let r = Request {
            scopes: vec![],
            ..req()
        };
        assert_eq!(
            child_claims(&root(), None, &agent(2), &r, issue(2, 1100), 4),
            Err(DelegationError::Scope(ScopeError::Empty))
        );
        let r = Request { exp: 1100, ..req() };
        assert_eq!(
            child_claims(&root(), None, &agent(2), &r, issue(2, 1100), 4),
            Err(DelegationError::ExpiresBeforeIssued {
                exp: 1100,
                iat: 1100
            })
        );
        // The subject, or an actor already in the chain, cannot be the new actor.
        assert_eq!(
            child_claims(&root(), None, &agent(1), &req(), issue(2, 1100), 4),
            Err(DelegationError::ActorInChain(agent(1)))
        );
        let child = child_claims(&root(), None, &agent(2), &req(), issue(2, 1100), 4).unwrap();
        assert_eq!(
            child_claims(&child, None, &agent(2), &req(), issue(3, 1100), 4),
            Err(DelegationError::ActorInChain(agent(2)))
        );
        // A parsed policy that is not the parent's.
        let p = pol(base_policy());
        assert_eq!(
            child_claims(&root(), Some(&p), &agent(2), &req(), issue(2, 1100), 4),
            Err(DelegationError::ParentPolicyMismatch)
        );
        assert_eq!(
            child_claims(
                &with_policy(root(), &p),
                None,
                &agent(2),
                &req(),
                issue(2, 1100),
                4
            ),
            Err(DelegationError::ParentPolicyMismatch)
        );
    }

    #[test]
    fn depth_is_capped() {
        let mut claims = root();
        for n in 2..=5u8 {
            claims = child_claims(&claims, None, &agent(n), &req(), issue(n, 1100), 4).unwrap();
        }
        assert_eq!(depth(&claims), 4);
        let w = check_narrower(&claims, None, &req(), 4).unwrap_err();
        assert_eq!(w.0, vec![Widening::Depth { depth: 5, max: 4 }]);
        assert_eq!(
            w.to_string(),
            "depth: the child would be 5 hops from the root, at most 4 allowed"
        );
        // The configured cap never goes above the structural bound.
        for n in 6..=9u8 {
            claims = child_claims(&claims, None, &agent(n), &req(), issue(n, 1100), 100).unwrap();
        }
        assert_eq!(depth(&claims), MAX_ACT_DEPTH);
        let w = check_narrower(&claims, None, &req(), 100).unwrap_err();
        assert_eq!(w.0, vec![Widening::Depth { depth: 9, max: 8 }]);
    }

    #[test]
    fn policy_is_inherited_or_narrowed() {
        let p = pol(base_policy());
        let parent = with_policy(root(), &p);
        // No policy in the request: inherited, not a widening.
        let child = child_claims(&parent, Some(&p), &agent(2), &req(), issue(2, 1100), 4).unwrap();
        assert_eq!(child.policy_hash.as_deref(), Some(p.hash()));
        assert_eq!(
            crate::token::policy_of(&child).unwrap().unwrap().hash(),
            p.hash()
        );
        // A parent without a policy grants no action: a child with one widens it,
        // however narrow the policy.
        let narrowest = pol(json!({
            "version": "pol.v0.2", "id": "p", "actions": ["read.one"],
            "resources": [{"type": "t", "match": {"ids": ["1"]}}], "strict": true
        }));
        for policy in [p.clone(), narrowest] {
            let r = Request {
                policy: Some(policy),
                ..req()
            };
            let w = check_narrower(&root(), None, &r, 4).unwrap_err();
            assert_eq!(w.0, vec![Widening::Policy]);
            assert_eq!(
                w.to_string(),
                "policy: the parent token carries no consent policy, so it grants no action and no spending; its child cannot carry one"
            );
            assert!(matches!(
                child_claims(&root(), None, &agent(2), &r, issue(2, 1100), 4),
                Err(DelegationError::Widens(_))
            ));
        }
        // Without a policy in the request, the child has none either.
        let child = child_claims(&root(), None, &agent(2), &req(), issue(2, 1100), 4).unwrap();
        assert_eq!((child.policy, child.policy_hash), (None, None));
        // The same policy is not wider than itself.
        assert_eq!(
            policy_dims(base_policy(), base_policy()),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn actions() {
        let c = edit(base_policy(), &["actions"], json!(["payments.send"]));
        assert!(policy_dims(base_policy(), c).is_empty());
        let c = edit(
            base_policy(),
            &["actions"],
            json!(["payments.send", "payments.payout"]),
        );
        assert_eq!(policy_dims(base_policy(), c), vec!["policy.actions"]);
    }

    #[test]
    fn resources() {
        let rs = |v: Value| edit(base_policy(), &["resources"], v);
        let ok = [
            json!([{"type": "merchant", "match": {"ids": ["airbnb"]}}]),
            json!([{"type": "merchant", "match": {"ids": ["acct/12", "acct/12/x", "acct/12:y"]}}]),
            json!([{"type": "merchant", "match": {"prefixes": ["acct/12", "acct/12/x"]}}]),
        ];
        for c in ok {
            assert!(policy_dims(base_policy(), rs(c.clone())).is_empty(), "{c}");
        }
        let wide = [
            json!([{"type": "merchant", "match": {"ids": ["booking"]}}]),
            json!([{"type": "merchant", "match": {"ids": ["acct/123"]}}]),
            json!([{"type": "merchant", "match": {"ids": ["acct/12/../13"]}}]),
            json!([{"type": "merchant", "match": {"prefixes": ["acct/1"]}}]),
            json!([{"type": "merchant", "match": {"prefixes": ["acct/123"]}}]),
            json!([{"type": "merchant", "match": {"prefixes": ["airbnb"]}}]),
            json!([{"type": "account", "match": {"ids": ["airbnb"]}}]),
            json!([]),
        ];
        for c in wide {
            assert_eq!(
                policy_dims(base_policy(), rs(c.clone())),
                vec!["policy.resources"],
                "{c}"
            );
        }
        let p = pol(base_policy());
        let c = pol(rs(json!([
            {"type": "merchant", "match": {"ids": ["airbnb", "booking"], "prefixes": ["acct/1"]}},
            {"type": "account", "match": {"ids": ["x"]}}
        ])));
        let mut out = Vec::new();
        resource_widenings(&p, &c, &mut out);
        let shown: Vec<String> = out.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![
                "policy.resources: type `merchant`: `booking` and prefixes `acct/1` not granted by the parent's policy",
                "policy.resources: type `account`: `x` not granted by the parent's policy",
            ]
        );
        // A parent listing no resource: anything under a non-strict one, nothing
        // under a strict one.
        let open = edit(base_policy(), &["resources"], Value::Null);
        assert!(policy_dims(open.clone(), base_policy()).is_empty());
        let closed = edit(open.clone(), &["strict"], json!(true));
        let strict_child = edit(base_policy(), &["strict"], json!(true));
        assert_eq!(
            policy_dims(closed.clone(), strict_child),
            vec!["policy.resources"]
        );
        let strict_open_child = edit(open, &["strict"], json!(true));
        assert!(policy_dims(closed, strict_open_child).is_empty());
    }

    #[test]
    fn prefix_rules_agree_with_the_evaluator() {
        let ids = [
            "acct/12",
            "acct/12/x",
            "acct/12:x",
            "acct/123",
            "acct/1",
            "acct/",
            "acct/9",
            "acct/12/../13",
            "acct/12//x",
            "acct/12/./x",
            "account",
            "acct",
        ];
        for prefix in ["acct/12", "acct/", "acct", "acct:"] {
            let p = pol(json!({
                "version": "pol.v0.2", "id": "p", "actions": ["a"],
                "resources": [{"type": "t", "match": {"prefixes": [prefix]}}]
            }));
            for id in ids {
                let d = p.evaluate(
                    &PolicyRequest {
                        action: "a",
                        resource: Some(ResourceRef { kind: "t", id }),
                        money: None,
                    },
                    Timestamp::UNIX_EPOCH,
                    Decimal::ZERO,
                );
                assert_eq!(prefix_matches(prefix, id), d.allowed, "{prefix} {id}");
            }
        }
        assert!(prefix_covers("acct/12", "acct/12"));
        assert!(prefix_covers("acct/12", "acct/12/x"));
        assert!(prefix_covers("acct/12", "acct/12:x"));
        assert!(prefix_covers("acct/", "acct/9"));
        assert!(!prefix_covers("acct/12", "acct/123"));
        assert!(!prefix_covers("acct/12", "acct/1"));
        assert!(!prefix_covers("acct", "account"));
    }

    #[test]
    fn limits() {
        let b = base_policy;
        let with = |path: &[&str], v: Value| edit(b(), path, v);
        assert!(
            policy_dims(b(), with(&["limits", "per_txn", "amount"], json!("499.99"))).is_empty()
        );
        // A child without limits would allow requests without an amount, which the
        // parent refuses (AMOUNT_REQUIRED).
        assert_eq!(
            policy_dims(b(), with(&["limits"], Value::Null)),
            vec!["policy.limits"]
        );
        let c = pol(with(&["limits"], Value::Null));
        let w = check_narrower(
            &with_policy(root(), &pol(b())),
            Some(&pol(b())),
            &Request {
                policy: Some(c),
                ..req()
            },
            4,
        )
        .unwrap_err();
        assert_eq!(
            w.to_string(),
            "policy.limits: the parent's policy has `limits` and the child's has none, so it would allow requests without an amount"
        );
        assert_eq!(
            policy_dims(b(), with(&["limits", "per_txn", "amount"], json!("500.01"))),
            vec!["policy.limits.per_txn"]
        );
        assert_eq!(
            policy_dims(b(), with(&["limits", "per_txn"], Value::Null)),
            vec!["policy.limits.per_txn"]
        );
        assert_eq!(
            policy_dims(b(), with(&["limits", "per_period", "amount"], json!(1501))),
            vec!["policy.limits.per_period"]
        );
        assert_eq!(
            policy_dims(b(), with(&["limits", "per_period", "period"], json!("day"))),
            vec!["policy.limits.per_period"]
        );
        assert_eq!(
            policy_dims(b(), with(&["limits", "per_period"], Value::Null)),
            vec!["policy.limits.per_period"]
        );
        // Another currency: only the currency is reported, amounts are not compared.
        let eur = json!({
            "per_txn": {"amount": "1", "currency": "EUR"},
            "per_period": {"amount": "1", "currency": "EUR", "period": "week"}
        });
        assert_eq!(
            policy_dims(b(), with(&["limits"], eur)),
            vec!["policy.currency"]
        );
        // A parent without limits grants no spending.
        assert_eq!(
            policy_dims(with(&["limits"], Value::Null), b()),
            vec!["policy.limits"]
        );
        // A parent with only a per-period budget: any per-transaction limit narrows.
        let only_period = with(&["limits", "per_txn"], Value::Null);
        assert!(policy_dims(only_period, b()).is_empty());

        let p = pol(b());
        let c = pol(with(&["limits", "per_period", "period"], json!("month")));
        let mut out = Vec::new();
        limit_widenings(p.limits().unwrap(), c.limits().unwrap(), &mut out);
        assert_eq!(
            out[0].to_string(),
            "policy.limits.per_period: 1500.00 USD per month is above the parent's 1500.00 USD per week"
        );
        let c = pol(with(&["limits", "per_txn"], Value::Null));
        let mut out = Vec::new();
        limit_widenings(p.limits().unwrap(), c.limits().unwrap(), &mut out);
        assert_eq!(
            out[0].to_string(),
            "policy.limits.per_txn: no limit is above the parent's 500.00 USD"
        );
    }

    #[test]
    fn time_windows() {
        let t = |v: Value| edit(base_policy(), &["constraints", "time"], v);
        let tz = "America/New_York";
        // Parent: Mon and Fri, 22:00-06:00 (so also Tue and Sat mornings).
        let ok = [
            json!({"dow": ["Mon"], "start": "22:00", "end": "06:00", "tz": tz}),
            json!({"dow": ["Fri"], "start": "23:00", "end": "01:00", "tz": tz}),
            json!({"dow": ["Tue"], "start": "01:00", "end": "05:59", "tz": tz}),
            // Friday night's window, on Saturday morning.
            json!({"dow": ["Sat"], "start": "01:00", "end": "02:00", "tz": tz}),
            json!({"dow": ["Mon", "Fri"], "start": "22:30", "end": "23:30", "tz": tz}),
        ];
        for c in ok {
            assert!(policy_dims(base_policy(), t(c.clone())).is_empty(), "{c}");
        }
        let wide = [
            (
                json!({"dow": ["Mon"], "start": "21:59", "end": "06:00", "tz": tz}),
                "Mon 21:59",
            ),
            (
                json!({"dow": ["Mon"], "start": "22:00", "end": "06:01", "tz": tz}),
                "Tue 06:00",
            ),
            (
                json!({"dow": ["Tue"], "start": "22:00", "end": "06:00", "tz": tz}),
                "Tue 22:00",
            ),
            (
                json!({"dow": ["Sun"], "start": "01:00", "end": "02:00", "tz": tz}),
                "Sun 01:00",
            ),
            (json!({"dow": ["Mon"], "tz": tz}), "Mon 00:00"),
        ];
        for (c, example) in wide {
            let p = pol(base_policy());
            let c = pol(t(c));
            assert_eq!(
                time_widening(&p, &c),
                Some(TimeWidening::Outside {
                    example: example.to_owned()
                })
            );
        }
        let p = pol(base_policy());
        let c = pol(t(
            json!({"dow": ["Mon"], "start": "22:00", "end": "06:00", "tz": "Europe/Paris"}),
        ));
        assert_eq!(
            time_widening(&p, &c),
            Some(TimeWidening::Zone {
                parent: tz.into(),
                child: "Europe/Paris".into()
            })
        );
        let c = pol(edit(base_policy(), &["constraints"], Value::Null));
        assert_eq!(time_widening(&p, &c), Some(TimeWidening::Unrestricted));
        // A parent without a window allows any child window, or none.
        assert!(
            policy_dims(
                edit(base_policy(), &["constraints"], Value::Null),
                base_policy()
            )
            .is_empty()
        );
    }

    #[test]
    fn window_rule_agrees_with_the_evaluator() {
        let windows = [
            json!({"dow": ["Mon", "Fri"], "start": "22:00", "end": "06:00", "tz": "UTC"}),
            json!({"dow": ["Sun"], "start": "23:00", "end": "00:30", "tz": "UTC"}),
            json!({"start": "08:00", "end": "20:00", "tz": "UTC"}),
            json!({"dow": ["Wed", "Sat"], "tz": "UTC"}),
        ];
        for w in windows {
            let p = pol(edit(base_policy(), &["constraints", "time"], w.clone()));
            let tw = p.time_window().unwrap();
            // 2024-01-01 is a Monday; step 7 minutes through two weeks.
            let monday = Timestamp::from_second(1_704_067_200).unwrap();
            for step in 0..(2 * 7 * 1440 / 7) {
                let minutes = step * 7;
                let now = Timestamp::from_second(monday.as_second() + minutes * 60).unwrap();
                let day = u8::try_from((minutes / 1440) % 7).unwrap();
                let minute = u16::try_from(minutes % 1440).unwrap();
                assert_eq!(
                    allows(tw, day, minute),
                    tw.contains(p.zone(), now),
                    "{w} {minutes}"
                );
            }
        }
    }

    #[test]
    fn strict_cannot_be_dropped() {
        let strict = edit(base_policy(), &["strict"], json!(true));
        assert_eq!(
            policy_dims(strict.clone(), base_policy()),
            vec!["policy.strict"]
        );
        assert!(policy_dims(base_policy(), strict.clone()).is_empty());
        assert!(policy_dims(strict.clone(), strict).is_empty());
    }

    #[test]
    fn a_bound_parent_needs_a_bound_child() {
        let bound = |jkt: &str| Confirmation { jkt: jkt.into() };
        let mut parent = root();
        parent.cnf = Some(bound("parent-key"));
        let w = check_narrower(&parent, None, &req(), 4).unwrap_err();
        assert_eq!(w.dimensions(), vec!["cnf"]);
        // Bound to the actor's key: accepted, and the child carries that binding.
        let r = Request {
            cnf: Some(bound("actor-key")),
            ..req()
        };
        let child = child_claims(&parent, None, &agent(2), &r, issue(2, 1100), 4).unwrap();
        assert_eq!(child.cnf, Some(bound("actor-key")));
        // An unbound parent: a bound child narrows it, an unbound one is as wide.
        assert_eq!(check_narrower(&root(), None, &r, 4), Ok(()));
        assert_eq!(check_narrower(&root(), None, &req(), 4), Ok(()));
        let child = child_claims(&root(), None, &agent(2), &req(), issue(2, 1100), 4).unwrap();
        assert_eq!(child.cnf, None);
    }

    #[test]
    fn every_policy_dimension_at_once() {
        let child = json!({
            "version": "pol.v0.2", "id": "pol_child",
            "actions": ["payments.payout"],
            "resources": [{"type": "merchant", "match": {"ids": ["booking"]}}],
            "limits": {"per_txn": {"amount": "10", "currency": "EUR"}},
            "constraints": {"time": {"tz": "Europe/Paris", "dow": ["Sun"]}},
            "strict": false
        });
        let parent = edit(base_policy(), &["strict"], json!(true));
        assert_eq!(
            policy_dims(parent, child),
            vec![
                "policy.actions",
                "policy.resources",
                "policy.currency",
                "policy.time",
                "policy.strict"
            ]
        );
    }

    #[test]
    fn malformed_act_is_refused() {
        let child = child_claims(&root(), None, &agent(2), &req(), issue(2, 1100), 4).unwrap();
        let bad = |edit: &dyn Fn(&mut AgentClaims)| {
            let mut c = child.clone();
            edit(&mut c);
            c.check_consistent().unwrap_err().to_string()
        };
        assert_eq!(
            bad(&|c| c.ancestor_jtis = None),
            "token claims are invalid: `act` without `ancestor_jtis`"
        );
        assert_eq!(
            bad(&|c| c.act = None),
            "token claims are invalid: `ancestor_jtis` without `act`"
        );
        assert_eq!(
            bad(&|c| c.ancestor_jtis = Some(vec![tok(1), tok(9)])),
            "token claims are invalid: `ancestor_jtis` does not have one entry per `act` level"
        );
        assert_eq!(
            bad(&|c| c.act = Some(Actor::new(agent(1)))),
            "token claims are invalid: `act` names an agent twice in the delegation chain"
        );
        assert_eq!(
            bad(&|c| c.ancestor_jtis = Some(vec![tok(2)])),
            "token claims are invalid: `ancestor_jtis` names a token twice"
        );
        let mut deep = Actor::new(agent(100));
        for n in 101..=108u8 {
            deep = Actor {
                sub: agent(n),
                act: Some(Box::new(deep)),
            };
        }
        assert_eq!(deep.depth(), 9);
        assert_eq!(
            bad(&|c| {
                c.act = Some(deep.clone());
                c.ancestor_jtis = Some((100..109).map(tok).collect());
            }),
            "token claims are invalid: `act` is nested too deep"
        );
        // Members other than `sub` and `act` are refused, as is a missing `sub`.
        for act in [
            json!({"sub": agent(2).as_str(), "exp": 1}),
            json!({"act": {"sub": agent(2).as_str()}}),
            json!({"sub": "user@example.com"}),
            json!("agt_x"),
        ] {
            let mut v = serde_json::to_value(&child).unwrap();
            v["act"] = act.clone();
            assert!(serde_json::from_value::<AgentClaims>(v).is_err(), "{act}");
        }
    }
}
