//! Delegation (RFC 8693 token exchange): table-driven narrowing cases from
//! `tests/vectors/delegation/`, the claim shape on the wire, and property tests.
//!
//! Each case file (described in `tests/vectors/delegation/README.md`) is one parent
//! token and one exchange request; `widenings` lists every widening expected, in
//! order, with its exact message (empty: the child is allowed). A `fail_` prefix marks
//! a refused request.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::path::{Path, PathBuf};

use bonafide_core::delegation::{
    self, DEFAULT_MAX_DEPTH, DelegationError, Issue, Request, check_narrower, child_claims,
};
use bonafide_core::ids::{AgentId, TokenId};
use bonafide_core::keys::{Algorithm, SigningKey, VerifyingKey};
use bonafide_core::policy::Policy;
use bonafide_core::token::{
    self, Actor, AgentClaims, AgentInfo, Audience, KeySet, TimeCheck, VerifyOptions,
};
use proptest::prelude::*;
use serde_json::{Value, json};

const ISS: &str = "https://registry.example";
const IAT: i64 = 1_767_225_600;

fn agent(n: u8) -> AgentId {
    AgentId::from_random([n; 16])
}

fn tok(n: u8) -> TokenId {
    TokenId::from_random([n; 16])
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/delegation")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// A parent token `depth` hops from its root, from a case's `parent` object.
fn parent_of(p: &Value) -> (AgentClaims, Option<Policy>) {
    let scopes = strings(&p["scopes"]);
    let depth = usize::try_from(p["depth"].as_u64().unwrap_or(0)).unwrap();
    let policy = p
        .get("policy")
        .map(|v| Policy::from_value(v.clone()).unwrap());
    let mut act: Option<Actor> = None;
    let mut jtis = Vec::new();
    for n in 0..depth {
        let n = u8::try_from(n).unwrap();
        act = Some(Actor {
            sub: agent(10 + n),
            act: act.map(Box::new),
        });
        jtis.push(tok(10 + n));
    }
    let claims = AgentClaims {
        iss: ISS.to_owned(),
        sub: agent(1),
        aud: p.get("aud").map(|a| Audience::Many(strings(a))),
        iat: IAT,
        nbf: Some(IAT),
        exp: p["exp"].as_i64().unwrap(),
        jti: tok(1),
        agent: AgentInfo {
            name: "Portfolio assistant".to_owned(),
            issuer: "apexwealth.com".to_owned(),
            scopes: scopes.clone(),
            description: None,
        },
        scope: Some(scopes.join(" ")),
        user: None,
        policy: policy.as_ref().map(|p| p.as_value().clone()),
        policy_hash: policy.as_ref().map(|p| p.hash().to_owned()),
        cnf: None,
        ancestor_jtis: act.as_ref().map(|_| jtis),
        act,
    };
    (claims, policy)
}

fn request_of(r: &Value) -> Request {
    Request {
        scopes: strings(&r["scopes"]),
        audience: r.get("audience").map(strings),
        exp: r["exp"].as_i64().unwrap(),
        policy: r
            .get("policy")
            .map(|v| Policy::from_value(v.clone()).unwrap()),
    }
}

fn issue() -> Issue {
    Issue {
        iss: ISS.to_owned(),
        jti: tok(99),
        iat: IAT + 60,
    }
}

#[test]
fn every_case_file_gives_its_widenings() {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 10, "case files are missing");
    let mut failures = Vec::new();
    for path in &paths {
        let name = path.file_stem().unwrap().to_str().unwrap();
        let case: Value = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
        let (parent, parent_policy) = parent_of(&case["parent"]);
        let req = request_of(&case["request"]);
        let max = case.get("max_depth").map_or(DEFAULT_MAX_DEPTH, |m| {
            usize::try_from(m.as_u64().unwrap()).unwrap()
        });
        let want: Vec<(String, String)> = case["widenings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                (
                    w["dimension"].as_str().unwrap().to_owned(),
                    w["message"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            name.starts_with("fail_"),
            !want.is_empty(),
            "{name}: the `fail_` prefix marks exactly the refused cases"
        );
        let got: Vec<(String, String)> =
            match check_narrower(&parent, parent_policy.as_ref(), &req, max) {
                Ok(()) => vec![],
                Err(w) => w
                    .iter()
                    .map(|w| (w.dimension().to_owned(), w.to_string()))
                    .collect(),
            };
        if got != want {
            failures.push(format!("{name}:\n  want {want:?}\n  got  {got:?}"));
            continue;
        }
        // The full exchange agrees, and an allowed child is a consistent token one
        // hop deeper than its parent.
        let built = child_claims(
            &parent,
            parent_policy.as_ref(),
            &agent(2),
            &req,
            issue(),
            max,
        );
        match built {
            Ok(child) => {
                assert!(want.is_empty(), "{name}: built a wider child");
                assert_eq!(delegation::depth(&child), delegation::depth(&parent) + 1);
                assert_eq!(delegation::current_actor(&child), &agent(2));
                assert_eq!(token::policy_of(&child).unwrap().is_some(), {
                    req.policy.is_some() || parent_policy.is_some()
                });
                signed_round_trip(&child);
            }
            Err(DelegationError::Widens(w)) => {
                assert_eq!(w.0.len(), want.len(), "{name}");
            }
            Err(e) => failures.push(format!("{name}: unexpected error {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Signs `claims` and verifies them back through the token pipeline.
fn signed_round_trip(claims: &AgentClaims) {
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let mut keys = KeySet::new();
    keys.insert(VerifyingKey::from_jwk(key.verifying_key().jwk()).unwrap());
    let mut opts = VerifyOptions::for_issuer(ISS);
    opts.time = TimeCheck::Skip;
    // A round trip of the claims, whoever they are for.
    opts.audience = bonafide_core::token::AudienceRule::Unchecked;
    let text = token::sign(&key, claims).unwrap();
    let verified = token::verify(&text, &keys, &opts, IAT).unwrap();
    assert_eq!(&verified.claims, claims);
}

#[test]
fn a_three_hop_token_has_the_rfc_8693_shape() {
    let root_case = json!({"scopes": ["read:portfolio", "read:transactions"], "aud": ["bank.example"], "exp": IAT + 3600});
    let (root, _) = parent_of(&root_case);
    let req = |exp| Request {
        scopes: vec!["read:portfolio".to_owned()],
        audience: None,
        exp,
        policy: None,
    };
    let at = |n: u8| Issue {
        iss: ISS.to_owned(),
        jti: tok(n),
        iat: IAT + i64::from(n),
    };
    let hop1 = child_claims(&root, None, &agent(2), &req(IAT + 3000), at(2), 4).unwrap();
    let hop2 = child_claims(&hop1, None, &agent(3), &req(IAT + 2000), at(3), 4).unwrap();
    let hop3 = child_claims(&hop2, None, &agent(4), &req(IAT + 1000), at(4), 4).unwrap();
    let v = serde_json::to_value(&hop3).unwrap();
    assert_eq!(
        v,
        json!({
            "iss": ISS,
            "sub": agent(1).as_str(),
            "aud": ["bank.example"],
            "iat": IAT + 4,
            "nbf": IAT + 4,
            "exp": IAT + 1000,
            "jti": tok(4).as_str(),
            "agent": {"name": "Portfolio assistant", "issuer": "apexwealth.com", "scopes": ["read:portfolio"]},
            "scope": "read:portfolio",
            "act": {"sub": agent(4).as_str(), "act": {"sub": agent(3).as_str(), "act": {"sub": agent(2).as_str()}}},
            "ancestor_jtis": [tok(1).as_str(), tok(2).as_str(), tok(3).as_str()]
        })
    );
    assert_eq!(
        delegation::chain(&hop3),
        vec![&agent(1), &agent(2), &agent(3), &agent(4)]
    );
    signed_round_trip(&hop3);
    // A token without `act` still serialises without it.
    let plain = serde_json::to_value(&root).unwrap();
    assert!(plain.get("act").is_none() && plain.get("ancestor_jtis").is_none());
}

#[test]
fn verify_refuses_malformed_delegation_claims() {
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let mut keys = KeySet::new();
    keys.insert(VerifyingKey::from_jwk(key.verifying_key().jwk()).unwrap());
    let opts = VerifyOptions::for_issuer(ISS);
    let (root, _) = parent_of(&json!({"scopes": ["read:portfolio"], "exp": IAT + 3600}));
    let req = Request {
        scopes: vec!["read:portfolio".to_owned()],
        audience: None,
        exp: IAT + 600,
        policy: None,
    };
    let child = child_claims(&root, None, &agent(2), &req, issue(), 4).unwrap();
    let sign_value = |v: &Value| {
        let payload = serde_json::to_vec(v).unwrap();
        bonafide_core::jws::sign_compact(&key, token::AGENT_TOKEN_TYP, &payload).unwrap()
    };
    let good = serde_json::to_value(&child).unwrap();
    token::verify(&sign_value(&good), &keys, &opts, IAT + 60).unwrap();
    let cases: Vec<(&str, Value)> = vec![
        ("act is a string", json!("agt_x")),
        ("act names a user", json!({"sub": "user@example.com"})),
        (
            "act carries exp",
            json!({"sub": agent(2).as_str(), "exp": IAT}),
        ),
        (
            "act without sub",
            json!({"act": {"sub": agent(2).as_str()}}),
        ),
        (
            "act one level deeper than ancestor_jtis",
            json!({"sub": agent(2).as_str(), "act": {"sub": agent(3).as_str()}}),
        ),
        ("act names the subject", json!({"sub": agent(1).as_str()})),
    ];
    for (what, act) in cases {
        let mut v = good.clone();
        v["act"] = act;
        let err = token::verify(&sign_value(&v), &keys, &opts, IAT + 60).unwrap_err();
        assert_eq!(err.code().as_str(), "TOKEN_INVALID", "{what}");
    }
    let mut v = good.clone();
    v.as_object_mut().unwrap().remove("ancestor_jtis");
    let err = token::verify(&sign_value(&v), &keys, &opts, IAT + 60).unwrap_err();
    assert_eq!(
        err.to_string(),
        "token claims are invalid: `act` without `ancestor_jtis`"
    );
}

const POOL: [&str; 8] = [
    "read:portfolio",
    "read:transactions",
    "write:calendar",
    "read:email",
    "write:email",
    "read:files",
    "browse:web",
    "call:agents",
];

fn subset(mask: u8) -> Vec<String> {
    POOL.iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, s)| (*s).to_owned())
        .collect()
}

fn holding(scopes: Vec<String>) -> AgentClaims {
    let (mut c, _) = parent_of(&json!({"scopes": [], "exp": IAT + 3600}));
    c.scope = Some(scopes.join(" "));
    c.agent.scopes = scopes;
    c
}

fn asks(scopes: Vec<String>) -> Request {
    Request {
        scopes,
        audience: None,
        exp: IAT + 600,
        policy: None,
    }
}

proptest! {
    /// Scope narrowing is transitive: if the parent narrows the grandparent and the
    /// child narrows the parent, the child narrows the grandparent; and a request is
    /// refused exactly when it holds a scope its parent lacks.
    #[test]
    fn scope_narrowing_is_transitive(g in 1u8.., p in 1u8.., c in 1u8..) {
        let (gs, ps, cs) = (subset(g), subset(p), subset(c));
        let gp = holding(gs.clone());
        let parent = holding(ps.clone());
        let p_ok = check_narrower(&gp, None, &asks(ps.clone()), 4).is_ok();
        let c_ok = check_narrower(&parent, None, &asks(cs.clone()), 4).is_ok();
        let direct = check_narrower(&gp, None, &asks(cs.clone()), 4).is_ok();
        prop_assert_eq!(p_ok, ps.iter().all(|s| gs.contains(s)));
        prop_assert_eq!(c_ok, cs.iter().all(|s| ps.contains(s)));
        if p_ok && c_ok {
            prop_assert!(direct);
        }
    }

    /// A built child never verifies as wider than its parent along a chain of random
    /// requests: each hop's scopes are a subset of the hop before and its `exp` no
    /// later, and its chain grows by exactly the new actor.
    #[test]
    fn built_chains_only_narrow(masks in proptest::collection::vec(1u8.., 1..6)) {
        let mut cur = holding(subset(u8::MAX));
        for (i, m) in masks.iter().enumerate() {
            let n = u8::try_from(i).unwrap();
            let req = Request { exp: cur.exp - 10, ..asks(subset(*m)) };
            let issue = Issue { iss: ISS.to_owned(), jti: tok(50 + n), iat: IAT };
            match child_claims(&cur, None, &agent(50 + n), &req, issue, 8) {
                Ok(child) => {
                    prop_assert!(child.agent.scopes.iter().all(|s| cur.agent.scopes.contains(s)));
                    prop_assert!(child.exp <= cur.exp);
                    let mut chain = delegation::chain(&cur);
                    let actor = agent(50 + n);
                    chain.push(&actor);
                    prop_assert_eq!(delegation::chain(&child), chain);
                    cur = child;
                }
                Err(DelegationError::Widens(w)) => {
                    prop_assert_eq!(w.dimensions(), vec!["scope"]);
                }
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }
    }
}
