//! `delegation.json`: delegation by token exchange (RFC 8693).
//!
//! - `exchanges`: a parent token's claims, the actor and what the child should carry;
//!   the registry must mint exactly `expect.claims` or refuse with the code (and, for
//!   `DELEGATION_WIDENS`, every dimension that widened).
//! - `tokens`: delegated tokens (`act` chains with `ancestor_jtis`) as a verifier meets
//!   them, with what is known revoked or suspended; the answer: valid with the chain,
//!   or the wire code.

use bonafide_core::delegation::{self, DelegationError, Issue, Request};
use bonafide_core::ids::{AgentId, TokenId};
use bonafide_core::keys::{SigningKey, VerifyingKey};
use bonafide_core::policy::Policy;
use bonafide_core::token::{self, AgentClaims, Confirmation, KeySet, TokenError, VerifyOptions};
use serde_json::{Value, json};

use crate::{VectorError, VectorFile, ed25519, pretty};

const NOW: i64 = 1_800_000_000;
const REGISTRY: &str = "https://registry.example";
const MAX_DEPTH: usize = delegation::DEFAULT_MAX_DEPTH;

fn build<E: std::fmt::Display>(case: &str) -> impl Fn(E) -> VectorError + '_ {
    move |e| VectorError::Build {
        case: case.to_owned(),
        message: e.to_string(),
    }
}

fn agent(n: u8) -> AgentId {
    AgentId::from_random([n; 16])
}

fn tok(n: u8) -> TokenId {
    TokenId::from_random([0x80 | n; 16])
}

/// `act` for a chain of actors, least recent first: `[1, 2]` is
/// `{"sub": 2, "act": {"sub": 1}}`.
fn act(actors: &[u8]) -> Value {
    let mut out = Value::Null;
    for &a in actors {
        out = if out.is_null() {
            json!({"sub": agent(a).as_str()})
        } else {
            json!({"sub": agent(a).as_str(), "act": out})
        };
    }
    out
}

/// A root token's claims (agent 1), or a child's at `actors` hops.
fn claims(actors: &[u8]) -> Value {
    let mut c = json!({
        "iss": REGISTRY,
        "sub": agent(1).as_str(),
        "aud": ["https://bank.example", "https://shop.example"],
        "iat": NOW - 10,
        "exp": NOW + 3600,
        "jti": tok(actors.last().copied().unwrap_or(1)).as_str(),
        "agent": {
            "name": "PortfolioBot",
            "issuer": "apexwealth.example",
            "scopes": ["read:portfolio", "read:transactions", "payments:write"]
        }
    });
    if !actors.is_empty() {
        c["act"] = act(actors);
        let ancestors: Vec<String> = std::iter::once(1)
            .chain(actors.iter().copied())
            .take(actors.len())
            .map(|a| tok(a).as_str().to_owned())
            .collect();
        c["ancestor_jtis"] = json!(ancestors);
    }
    c
}

struct Exchange {
    name: &'static str,
    rule: &'static str,
    parent: Value,
    actor: u8,
    request: Value,
    /// `Ok(())` for a child, or `Err((code, widened))`.
    expect: Result<(), (&'static str, Vec<&'static str>)>,
}

fn request(scopes: &[&str], audience: Option<&[&str]>, exp: i64) -> Value {
    json!({"scopes": scopes, "audience": audience, "exp": exp, "policy": null, "cnf": null})
}

fn exchanges() -> Vec<Exchange> {
    let ok = request(
        &["read:portfolio"],
        Some(&["https://bank.example"]),
        NOW + 1800,
    );
    let bound = {
        let mut p = claims(&[]);
        p["cnf"] = json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"});
        p
    };
    let with_policy = {
        let mut r = ok.clone();
        r["policy"] = json!({"version": "pol.v0.2", "id": "pol_child_001", "actions": ["payments.send"], "limits": {"per_txn": {"amount": 50, "currency": "EUR"}}});
        r
    };
    let widens = |dims: Vec<&'static str>| Err(("DELEGATION_WIDENS", dims));
    vec![
        Exchange {
            name: "narrower_child",
            rule: "fewer scopes, one of the parent's audiences, an earlier `exp`: the child keeps `sub`, records the actor in `act` and the parent's `jti` in `ancestor_jtis`",
            parent: claims(&[]),
            actor: 2,
            request: ok.clone(),
            expect: Ok(()),
        },
        Exchange {
            name: "audience_kept",
            rule: "no audience requested: the parent's is kept",
            parent: claims(&[]),
            actor: 2,
            request: request(&["read:portfolio"], None, NOW + 1800),
            expect: Ok(()),
        },
        Exchange {
            name: "second_hop",
            rule: "a child of a child: the new actor outermost, the earlier one nested, both ancestors listed root first",
            parent: claims(&[2]),
            actor: 3,
            request: ok.clone(),
            expect: Ok(()),
        },
        Exchange {
            name: "depth_at_limit",
            rule: "the child would be `max_depth` hops from the root: allowed",
            parent: claims(&[2, 3, 4]),
            actor: 5,
            request: ok.clone(),
            expect: Ok(()),
        },
        Exchange {
            name: "depth_over_limit",
            rule: "the child would be `max_depth` + 1 hops from the root",
            parent: claims(&[2, 3, 4, 5]),
            actor: 6,
            request: ok.clone(),
            expect: widens(vec!["depth"]),
        },
        Exchange {
            name: "scope_widening",
            rule: "a scope the parent does not hold",
            parent: claims(&[]),
            actor: 2,
            request: request(&["read:portfolio", "admin:all"], None, NOW + 1800),
            expect: widens(vec!["scope"]),
        },
        Exchange {
            name: "audience_widening",
            rule: "an audience the parent is not for",
            parent: claims(&[]),
            actor: 2,
            request: request(
                &["read:portfolio"],
                Some(&["https://evil.example"]),
                NOW + 1800,
            ),
            expect: widens(vec!["audience"]),
        },
        Exchange {
            name: "exp_widening",
            rule: "an `exp` after the parent's",
            parent: claims(&[]),
            actor: 2,
            request: request(&["read:portfolio"], None, NOW + 3601),
            expect: widens(vec!["exp"]),
        },
        Exchange {
            name: "every_widening_reported",
            rule: "scope, audience and exp all wider: each is reported",
            parent: claims(&[]),
            actor: 2,
            request: request(&["admin:all"], Some(&["https://evil.example"]), NOW + 7200),
            expect: widens(vec!["scope", "audience", "exp"]),
        },
        Exchange {
            name: "bearer_child_of_bound_parent",
            rule: "a parent bound to a key (`cnf`) has only bound children",
            parent: bound,
            actor: 2,
            request: ok.clone(),
            expect: widens(vec!["cnf"]),
        },
        Exchange {
            name: "policy_under_no_policy",
            rule: "a parent without a policy grants no action or spending: a child may not add a policy",
            parent: claims(&[]),
            actor: 2,
            request: with_policy,
            expect: widens(vec!["policy"]),
        },
        Exchange {
            name: "actor_already_in_chain",
            rule: "the actor is the subject: a chain never names an agent twice",
            parent: claims(&[2]),
            actor: 1,
            request: ok.clone(),
            expect: Err(("DELEGATION_LOOP", vec![])),
        },
        Exchange {
            name: "no_scopes",
            rule: "an empty scope list",
            parent: claims(&[]),
            actor: 2,
            request: request(&[], None, NOW + 1800),
            expect: Err(("SCOPE_INVALID", vec![])),
        },
    ]
}

fn run_exchange(
    e: &Exchange,
    issue: &Value,
) -> Result<Result<Value, (String, Vec<String>)>, VectorError> {
    let parent: AgentClaims = serde_json::from_value(e.parent.clone()).map_err(build(e.name))?;
    let r = &e.request;
    let policy = match &r["policy"] {
        Value::Null => None,
        v => Some(Policy::from_value(v.clone()).map_err(build(e.name))?),
    };
    let req = Request {
        scopes: serde_json::from_value(r["scopes"].clone()).map_err(build(e.name))?,
        audience: serde_json::from_value(r["audience"].clone()).map_err(build(e.name))?,
        exp: r["exp"].as_i64().unwrap_or_default(),
        policy,
        cnf: serde_json::from_value::<Option<Confirmation>>(r["cnf"].clone())
            .map_err(build(e.name))?,
    };
    let issue = Issue {
        iss: issue["iss"].as_str().unwrap_or_default().to_owned(),
        jti: serde_json::from_value(issue["jti"].clone()).map_err(build(e.name))?,
        iat: issue["iat"].as_i64().unwrap_or_default(),
    };
    Ok(
        match delegation::child_claims(&parent, None, &agent(e.actor), &req, issue, MAX_DEPTH) {
            Ok(child) => Ok(serde_json::to_value(child).map_err(build(e.name))?),
            Err(DelegationError::Widens(w)) => Err((
                "DELEGATION_WIDENS".into(),
                w.dimensions().into_iter().map(str::to_owned).collect(),
            )),
            Err(DelegationError::ActorInChain(_)) => Err(("DELEGATION_LOOP".into(), vec![])),
            Err(DelegationError::Scope(_)) => Err(("SCOPE_INVALID".into(), vec![])),
            Err(other) => Err((format!("{other}"), vec![])),
        },
    )
}

struct TokenCase {
    name: &'static str,
    rule: &'static str,
    claims: Value,
    revoked_jtis: Vec<String>,
    revoked_agents: Vec<String>,
    suspended_agents: Vec<String>,
    /// `Ok(chain)` (agent numbers, root first) or the wire code.
    expect: Result<Vec<u8>, &'static str>,
}

fn token_cases() -> Vec<TokenCase> {
    let t = |name, rule, claims, expect| TokenCase {
        name,
        rule,
        claims,
        revoked_jtis: vec![],
        revoked_agents: vec![],
        suspended_agents: vec![],
        expect,
    };
    let mut no_ancestors = claims(&[2]);
    if let Some(o) = no_ancestors.as_object_mut() {
        o.remove("ancestor_jtis");
    }
    let mut short_ancestors = claims(&[2, 3]);
    short_ancestors["ancestor_jtis"] = json!([tok(1).as_str()]);
    let mut unknown_member = claims(&[2]);
    unknown_member["act"]["iss"] = json!(REGISTRY);
    let mut twice = claims(&[2, 3]);
    twice["act"] = act(&[2, 2]);
    let mut expired = claims(&[2]);
    expired["iat"] = json!(NOW - 700);
    expired["exp"] = json!(NOW - 60);
    let nine: Vec<u8> = (2..=10).collect();
    let mut revoked_root = t(
        "ancestor_token_revoked",
        "the root token (an entry of `ancestor_jtis`) is revoked",
        claims(&[2, 3]),
        Err("TOKEN_REVOKED"),
    );
    revoked_root.revoked_jtis = vec![tok(1).as_str().to_owned()];
    let mut revoked_agent = t(
        "prior_actor_revoked",
        "an agent earlier in the chain (agent 2) is revoked",
        claims(&[2, 3]),
        Err("TOKEN_REVOKED"),
    );
    revoked_agent.revoked_agents = vec![agent(2).as_str().to_owned()];
    let mut suspended = t(
        "current_actor_suspended",
        "the current actor (agent 3) is suspended",
        claims(&[2, 3]),
        Err("AGENT_SUSPENDED"),
    );
    suspended.suspended_agents = vec![agent(3).as_str().to_owned()];
    let mut unrelated = t(
        "unrelated_revocations",
        "revocations of other tokens and agents do not touch the chain",
        claims(&[2, 3]),
        Ok(vec![1, 2, 3]),
    );
    unrelated.revoked_jtis = vec![tok(9).as_str().to_owned()];
    unrelated.revoked_agents = vec![agent(9).as_str().to_owned()];
    vec![
        t(
            "one_hop",
            "agent 2 acting for agent 1",
            claims(&[2]),
            Ok(vec![1, 2]),
        ),
        t(
            "two_hops",
            "agent 3 acting for agent 1 through agent 2",
            claims(&[2, 3]),
            Ok(vec![1, 2, 3]),
        ),
        unrelated,
        revoked_root,
        revoked_agent,
        suspended,
        t(
            "child_expired",
            "the delegated token itself expired",
            expired,
            Err("TOKEN_EXPIRED"),
        ),
        t(
            "act_without_ancestor_jtis",
            "`act` without `ancestor_jtis`",
            no_ancestors,
            Err("TOKEN_INVALID"),
        ),
        t(
            "ancestor_jtis_short",
            "`ancestor_jtis` without one entry per `act` level",
            short_ancestors,
            Err("TOKEN_INVALID"),
        ),
        t(
            "agent_twice",
            "`act` names an agent twice",
            twice,
            Err("TOKEN_INVALID"),
        ),
        t(
            "act_unknown_member",
            "`act` has a member other than `sub` and `act`",
            unknown_member,
            Err("TOKEN_INVALID"),
        ),
        t(
            "act_too_deep",
            "`act` nested 9 levels (at most 8)",
            claims(&nine),
            Err("TOKEN_INVALID"),
        ),
    ]
}

/// What a verifier that knows these revocations answers: the core's verification,
/// then the chain's status (the token, each ancestor token, each agent of the chain).
fn verify_token(keys: &KeySet, text: &str, case: &TokenCase) -> Result<Vec<String>, String> {
    let mut opts = VerifyOptions::for_issuer(REGISTRY);
    opts.audience = token::AudienceRule::one("https://bank.example");
    let v = token::verify(text, keys, &opts, NOW).map_err(|e| e.code().as_str().to_owned())?;
    let c = &v.claims;
    let refused = |e: TokenError| Err(e.code().as_str().to_owned());
    let jtis = std::iter::once(&c.jti).chain(c.ancestor_jtis.iter().flatten());
    if jtis
        .into_iter()
        .any(|j| case.revoked_jtis.iter().any(|r| r == j.as_str()))
    {
        return refused(TokenError::Revoked(token::Revoked::Token));
    }
    let chain: Vec<String> = delegation::chain(c)
        .into_iter()
        .map(|a| a.as_str().to_owned())
        .collect();
    if chain.iter().any(|a| case.revoked_agents.contains(a)) {
        return refused(TokenError::Revoked(token::Revoked::Agent));
    }
    if chain.iter().any(|a| case.suspended_agents.contains(a)) {
        return refused(TokenError::Suspended);
    }
    Ok(chain)
}

pub(crate) fn file() -> Result<VectorFile, VectorError> {
    let registry: SigningKey = ed25519(1)?;
    let mut keys = KeySet::new();
    keys.insert(VerifyingKey::from_jwk(registry.verifying_key().jwk()).map_err(build("keys"))?);

    let mut ex_out = Vec::new();
    for (i, e) in exchanges().iter().enumerate() {
        let issue = json!({"iss": REGISTRY, "jti": TokenId::from_random([0x40 + i as u8; 16]).as_str(), "iat": NOW});
        let found = run_exchange(e, &issue)?;
        let expect = match (&e.expect, found) {
            (Ok(()), Ok(child)) => {
                // What the case states by hand: the subject kept, the actor outermost,
                // the parent's jti last among the ancestors, the scopes requested.
                let parent_depth = e.parent["ancestor_jtis"].as_array().map_or(0, Vec::len);
                let checks = [
                    child["sub"] == e.parent["sub"],
                    child["act"]["sub"] == json!(agent(e.actor).as_str()),
                    child["ancestor_jtis"].as_array().map(Vec::len) == Some(parent_depth + 1),
                    child["ancestor_jtis"].as_array().and_then(|a| a.last())
                        == Some(&e.parent["jti"]),
                    child["agent"]["scopes"] == e.request["scopes"],
                    child["jti"] == issue["jti"],
                ];
                if checks.contains(&false) {
                    return Err(VectorError::Disagrees {
                        case: e.name.into(),
                        expected: "the child the rules describe".into(),
                        found: child.to_string(),
                    });
                }
                json!({"valid": true, "claims": child})
            }
            (Err((code, dims)), Err((found, found_dims)))
                if *code == found && *dims == found_dims =>
            {
                let mut v = json!({"valid": false, "code": code});
                if !dims.is_empty() {
                    v["widened"] = json!(dims);
                }
                v
            }
            (expected, found) => {
                return Err(VectorError::Disagrees {
                    case: e.name.into(),
                    expected: format!("{expected:?}"),
                    found: format!("{found:?}"),
                });
            }
        };
        ex_out.push(json!({
            "name": e.name,
            "rule": e.rule,
            "parent": e.parent,
            "actor": agent(e.actor).as_str(),
            "request": e.request,
            "issue": issue,
            "expect": expect,
        }));
    }

    let mut tok_out = Vec::new();
    for case in token_cases() {
        let text = crate::raw_jws(
            &registry,
            &json!({"alg": "EdDSA", "typ": "agent+jwt", "kid": registry.kid()}),
            case.claims.to_string().as_bytes(),
            case.name,
        )?;
        let found = verify_token(&keys, &text, &case);
        let expected = case
            .expect
            .clone()
            .map(|c| {
                c.iter()
                    .map(|&a| agent(a).as_str().to_owned())
                    .collect::<Vec<_>>()
            })
            .map_err(str::to_owned);
        if found != expected {
            return Err(VectorError::Disagrees {
                case: case.name.into(),
                expected: format!("{expected:?}"),
                found: format!("{found:?}"),
            });
        }
        let expect = match expected {
            Ok(chain) => json!({
                "valid": true,
                "sub": agent(1).as_str(),
                "actor": chain.last(),
                "chain": chain,
            }),
            Err(code) => json!({"valid": false, "code": code}),
        };
        tok_out.push(json!({
            "name": case.name,
            "rule": case.rule,
            "token": text,
            "revoked_jtis": case.revoked_jtis,
            "revoked_agents": case.revoked_agents,
            "suspended_agents": case.suspended_agents,
            "expect": expect,
        }));
    }
    pretty(
        "delegation.json",
        &json!({
            "description": "Delegation by token exchange (RFC 8693). `exchanges`: the registry mints a child of `parent` (claims of a verified parent token, no policy) for `actor` with `request` (`scopes`; `audience`, null to keep the parent's; `exp`; `policy`, null to keep the parent's; `cnf`, the actor's key binding or null) and `issue` (the child's `iss`, `jti`, `iat`), at most `max_depth` hops from the root. `expect`: `claims`, exactly the child's claims; or the `code` (DELEGATION_WIDENS with `widened`, every dimension that widened, in the order scope, audience, exp, depth, cnf, policy…; DELEGATION_LOOP; SCOPE_INVALID). `tokens`: delegated agent tokens verified at `now` with `jwks`, `issuer` and `audience` (the `tokens.json` rules: `act` holds only `sub` and `act`, at most 8 levels, `ancestor_jtis` one entry per level, no agent or token twice), then refused if the token's `jti` or any of its `ancestor_jtis` is in `revoked_jtis` (TOKEN_REVOKED), else if any agent of the chain is in `revoked_agents` (TOKEN_REVOKED), else in `suspended_agents` (AGENT_SUSPENDED). A valid answer gives `sub`, the current `actor` (outermost `act.sub`) and the `chain`, root first.",
            "now": NOW,
            "issuer": REGISTRY,
            "audience": "https://bank.example",
            "max_depth": MAX_DEPTH,
            "jwks": keys.to_jwks(),
            "exchanges": ex_out,
            "tokens": tok_out,
        }),
    )
}
