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
        status: None,
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
        cnf: None,
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
        cnf: None,
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
        cnf: None,
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
        cnf: None,
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

// ---- whatever the child allows, the parent allows --------------------------------
//
// Random parent/child policy pairs from small pools (so that many children are
// accepted and many requests allowed), and random requests. The child is derived
// from the parent field by field: kept, replaced by a random value, or left out, so
// that every "absent in the child" case is tried against every parent value.

use bonafide_core::policy::{Decimal, Money, PolicyRequest, ResourceRef, Timestamp};

const ACTIONS: [&str; 4] = ["pay.send", "pay.refund", "acct.read", "acct.close"];
const KINDS: [&str; 2] = ["merchant", "account"];
const IDS: [&str; 10] = [
    "x",
    "x/1",
    "x/12",
    "x/12/a",
    "x/12:b",
    "x/123",
    "x/",
    "y",
    "x/12/../13",
    "x/12/a/b",
];
const CURRENCIES: [&str; 2] = ["USD", "EUR"];
const AMOUNTS: [&str; 5] = ["0", "5", "10", "20", "40"];
const PERIODS: [&str; 2] = ["day", "week"];
const ZONES: [&str; 2] = ["UTC", "America/New_York"];
const MINUTES: [u16; 6] = [0, 360, 720, 1320, 1410, 1439];
const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
/// 2026-01-05T00:00:00Z, a Monday; requests fall in the two weeks after it.
const MONDAY: i64 = 1_767_571_200;

#[derive(Debug, Clone)]
struct RuleSpec {
    kind: usize,
    ids: Vec<usize>,
    prefixes: Vec<usize>,
}

#[derive(Debug, Clone)]
struct LimitSpec {
    currency: usize,
    per_txn: Option<usize>,
    per_period: Option<(usize, usize)>,
}

#[derive(Debug, Clone)]
struct TimeSpec {
    zone: usize,
    days: Option<u8>,
    hours: Option<(usize, usize)>,
}

#[derive(Debug, Clone)]
struct PolicySpec {
    actions: Vec<usize>,
    resources: Option<Vec<RuleSpec>>,
    limits: Option<LimitSpec>,
    time: Option<TimeSpec>,
    strict: Option<bool>,
}

fn rule_spec() -> impl Strategy<Value = RuleSpec> {
    (
        0..KINDS.len(),
        proptest::collection::vec(0..IDS.len(), 0..3),
        proptest::collection::vec(0..IDS.len(), 0..3),
    )
        .prop_filter("a rule matches something", |(_, i, p)| {
            !i.is_empty() || !p.is_empty()
        })
        .prop_map(|(kind, ids, prefixes)| RuleSpec {
            kind,
            ids,
            prefixes,
        })
}

fn limit_spec() -> impl Strategy<Value = LimitSpec> {
    (
        0..CURRENCIES.len(),
        proptest::option::of(0..AMOUNTS.len()),
        proptest::option::of((0..AMOUNTS.len(), 0..PERIODS.len())),
    )
        .prop_filter("limits need one of the two", |(_, t, p)| {
            t.is_some() || p.is_some()
        })
        .prop_map(|(currency, per_txn, per_period)| LimitSpec {
            currency,
            per_txn,
            per_period,
        })
}

fn time_spec() -> impl Strategy<Value = TimeSpec> {
    (
        0..ZONES.len(),
        proptest::option::of(1u8..128),
        proptest::option::of((0..MINUTES.len(), 0..MINUTES.len())),
    )
        .prop_map(|(zone, days, hours)| TimeSpec {
            zone,
            // `start` equal to `end` is refused at parsing.
            hours: hours.filter(|(s, e)| s != e),
            days,
        })
}

fn policy_spec() -> impl Strategy<Value = PolicySpec> {
    (
        proptest::collection::vec(0..ACTIONS.len(), 1..4),
        proptest::option::of(proptest::collection::vec(rule_spec(), 0..3)),
        proptest::option::of(limit_spec()),
        proptest::option::of(time_spec()),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(actions, resources, limits, time, strict)| PolicySpec {
            actions,
            resources,
            limits,
            time,
            strict,
        })
}

/// How a child field comes from its parent's: kept, the random value, or left out.
#[derive(Debug, Clone, Copy)]
enum Derive {
    Keep,
    Random,
    Absent,
}

fn derive_how() -> impl Strategy<Value = Derive> {
    prop_oneof![
        Just(Derive::Keep),
        Just(Derive::Random),
        Just(Derive::Absent)
    ]
}

fn pick<T: Clone>(how: Derive, parent: &Option<T>, random: &Option<T>) -> Option<T> {
    match how {
        Derive::Keep => parent.clone(),
        Derive::Random => random.clone(),
        Derive::Absent => None,
    }
}

/// The child of `parent`: each field chosen by `how` (actions: kept, random, or the
/// first of the parent's, since a policy cannot leave its actions out).
fn derive(parent: &PolicySpec, random: &PolicySpec, how: [Derive; 5]) -> PolicySpec {
    PolicySpec {
        actions: match how[0] {
            Derive::Keep => parent.actions.clone(),
            Derive::Random => random.actions.clone(),
            Derive::Absent => parent.actions[..1].to_vec(),
        },
        resources: pick(how[1], &parent.resources, &random.resources),
        limits: pick(how[2], &parent.limits, &random.limits),
        time: pick(how[3], &parent.time, &random.time),
        strict: pick(how[4], &parent.strict, &random.strict),
    }
}

fn dedup(picks: &[usize], pool: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in picks {
        let s = pool[*i].to_owned();
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

fn policy_value(id: &str, s: &PolicySpec) -> Value {
    let mut v = json!({"version": "pol.v0.2", "id": id, "actions": dedup(&s.actions, &ACTIONS)});
    if let Some(rules) = &s.resources {
        let rules: Vec<Value> = rules
            .iter()
            .map(|r| {
                let mut m = json!({});
                if !r.ids.is_empty() {
                    m["ids"] = json!(dedup(&r.ids, &IDS));
                }
                if !r.prefixes.is_empty() {
                    m["prefixes"] = json!(dedup(&r.prefixes, &IDS));
                }
                json!({"type": KINDS[r.kind], "match": m})
            })
            .collect();
        v["resources"] = json!(rules);
    }
    if let Some(l) = &s.limits {
        let currency = CURRENCIES[l.currency];
        let mut limits = json!({});
        if let Some(a) = l.per_txn {
            limits["per_txn"] = json!({"amount": AMOUNTS[a], "currency": currency});
        }
        if let Some((a, p)) = l.per_period {
            limits["per_period"] =
                json!({"amount": AMOUNTS[a], "currency": currency, "period": PERIODS[p]});
        }
        v["limits"] = limits;
    }
    if let Some(t) = &s.time {
        let mut time = json!({"tz": ZONES[t.zone]});
        if let Some(days) = t.days {
            let dow: Vec<&str> = (0..7)
                .filter(|d| days & (1 << d) != 0)
                .map(|d| DAY_NAMES[d])
                .collect();
            time["dow"] = json!(dow);
        }
        if let Some((s, e)) = t.hours {
            let hhmm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
            time["start"] = json!(hhmm(MINUTES[s]));
            time["end"] = json!(hhmm(MINUTES[e]));
        }
        v["constraints"] = json!({"time": time});
    }
    if let Some(strict) = s.strict {
        v["strict"] = json!(strict);
    }
    v
}

/// One request: action, resource, money, instant, what the period already spent.
type Ask = (
    usize,
    Option<(usize, usize)>,
    Option<(usize, usize)>,
    i64,
    usize,
);

fn ask() -> impl Strategy<Value = Ask> {
    (
        0..ACTIONS.len(),
        proptest::option::of((0..KINDS.len(), 0..IDS.len())),
        proptest::option::of((0..AMOUNTS.len(), 0..CURRENCIES.len())),
        0i64..14 * 86_400,
        0..AMOUNTS.len(),
    )
}

/// What one parent/child pair showed: whether the child was accepted, and how many
/// requests the child allowed.
#[derive(Debug, Default)]
struct Seen {
    accepted: bool,
    child_allowed: usize,
}

/// Builds the child of a root token with policy `parent` (none: a token without a
/// policy, which grants no action) and checks: when the exchange accepts `child`,
/// every request the built child token's policy allows, the parent's allows too,
/// charging the same amount. Both see the same spending so far: the budgets are
/// separate, but the server charges every ancestor's own budget with each spend of a
/// child, so the child's cap only has to be within the parent's.
fn only_narrows(
    parent: Option<&PolicySpec>,
    child: &PolicySpec,
    asks: &[Ask],
) -> Result<Seen, String> {
    let mut case = json!({"scopes": ["read:portfolio"], "exp": IAT + 3600});
    if let Some(p) = parent {
        case["policy"] = policy_value("pol_parent", p);
    }
    let (parent_claims, parent_policy) = parent_of(&case);
    let child_value = policy_value("pol_child", child);
    let req = Request {
        scopes: vec!["read:portfolio".to_owned()],
        audience: None,
        exp: IAT + 600,
        policy: Some(Policy::from_value(child_value.clone()).unwrap()),
        cnf: None,
    };
    let built = match child_claims(
        &parent_claims,
        parent_policy.as_ref(),
        &agent(2),
        &req,
        issue(),
        DEFAULT_MAX_DEPTH,
    ) {
        Ok(c) => c,
        Err(DelegationError::Widens(_)) => return Ok(Seen::default()),
        Err(e) => return Err(format!("unexpected error {e}")),
    };
    let child_policy = token::policy_of(&built).unwrap().unwrap();
    let mut seen = Seen {
        accepted: true,
        child_allowed: 0,
    };
    for (action, resource, money, offset, spent) in asks {
        let request = PolicyRequest {
            action: ACTIONS[*action],
            resource: resource.map(|(k, i)| ResourceRef {
                kind: KINDS[k],
                id: IDS[i],
            }),
            money: money.map(|(a, c)| Money {
                amount: AMOUNTS[a].parse::<Decimal>().unwrap(),
                currency: bonafide_core::policy::money::parse_currency(CURRENCIES[c]).unwrap(),
            }),
        };
        let now = Timestamp::from_second(MONDAY + offset).unwrap();
        let spent: Decimal = AMOUNTS[*spent].parse().unwrap();
        let by_child = child_policy.evaluate(&request, now, spent);
        if !by_child.allowed {
            continue;
        }
        seen.child_allowed += 1;
        let Some(parent_policy) = &parent_policy else {
            return Err(format!(
                "{request:?} at {now}: the child {child_value} allows it, the parent has no policy (grants no action)"
            ));
        };
        let by_parent = parent_policy.evaluate(&request, now, spent);
        if !by_parent.allowed {
            return Err(format!(
                "{request:?} at {now}, spent {spent}: the child {child_value} allows it, the parent {} refuses it: {}",
                parent_policy.as_value(),
                by_parent.message()
            ));
        }
        if let (Some(c), Some(p)) = (&by_child.spend, &by_parent.spend)
            && c.amount != p.amount
        {
            return Err(format!("charges differ: {c:?} vs {p:?}"));
        }
    }
    Ok(seen)
}

type Pair = (Option<PolicySpec>, PolicySpec, [Derive; 5], Vec<Ask>);

fn pair() -> impl Strategy<Value = Pair> {
    (
        proptest::option::weighted(0.9, policy_spec()),
        policy_spec(),
        [
            derive_how(),
            derive_how(),
            derive_how(),
            derive_how(),
            derive_how(),
        ],
        proptest::collection::vec(ask(), 48),
    )
}

fn child_of((parent, random, how, _): &Pair) -> PolicySpec {
    match parent {
        Some(p) => derive(p, random, *how),
        None => random.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Delegation only narrows: for random parent/child policies, if the exchange
    /// accepts the child, whatever the child allows (action, resource, amount and
    /// currency, time, spending so far) the parent allows too.
    #[test]
    fn whatever_the_child_allows_the_parent_allows(p in pair()) {
        let child = child_of(&p);
        if let Err(e) = only_narrows(p.0.as_ref(), &child, &p.3) {
            prop_assert!(false, "{}", e);
        }
    }
}

/// The property above is not vacuous: with its generator, many children are accepted
/// and many requests allowed by them (a generator that only made refused children
/// would pass it trivially).
#[test]
fn the_narrowing_property_sees_accepted_children_allowing_requests() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRng, TestRunner};

    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    );
    let (mut accepted, mut allowed, mut with_limits) = (0, 0, 0);
    for _ in 0..300 {
        let p = pair().new_tree(&mut runner).unwrap().current();
        let child = child_of(&p);
        let seen = only_narrows(p.0.as_ref(), &child, &p.3).unwrap();
        if seen.accepted {
            accepted += 1;
            allowed += seen.child_allowed;
            if child.limits.is_some() && seen.child_allowed > 0 {
                with_limits += 1;
            }
        }
    }
    assert!(accepted >= 30, "only {accepted} of 300 children accepted");
    assert!(
        allowed >= 100,
        "accepted children allowed only {allowed} requests"
    );
    assert!(
        with_limits >= 5,
        "only {with_limits} spending children allowed a request"
    );
}
