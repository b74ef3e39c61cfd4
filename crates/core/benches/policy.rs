//! Consent-policy evaluation against one EdDSA signature verification, same run.
//!
//! - `policy/eddsa_verify`: AWS-LC's Ed25519 check of a typical token signing input
//!   (≈ 450 bytes) with a pre-parsed key: the floor of a verification.
//! - `policy/evaluate_allow`: `Policy::evaluate` of an allowed spend on a full policy
//!   (2 actions, 2 resource rules with ids and prefixes, per-txn and weekly limits,
//!   a Friday-night window across midnight in America/New_York): action, resource,
//!   window, currency, both limits, the ISO week and the `Spend` it returns.
//! - `policy/evaluate_deny`: the same request outside the window and over the
//!   per-txn limit (reasons with formatted messages).
//! - `policy/parse_and_hash`: `Policy::parse` of the same policy (duplicate-key pass,
//!   field walk, JCS, SHA-256), the cost when a policy is not cached.
//!
//! Goal (issue 5): `evaluate_allow` ≤ 0.05 × `eddsa_verify`.
//!
//! Run: `cargo bench -p bonafide-core --bench policy -- --warm-up-time 1 --measurement-time 3`
//! Drift-resistant ratios: `BONAFIDE_INTERLEAVED=1 cargo bench -p bonafide-core --bench policy`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;

use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair, ParsedPublicKey};
use bonafide_core::policy::{
    Currency, Decimal, Money, Policy, PolicyRequest, ResourceRef, Timestamp,
};
use criterion::{Criterion, criterion_group};

const POLICY: &str = r#"{
  "version": "pol.v0.2",
  "id": "pol_travel_001",
  "actions": ["payments.send", "payments.quote"],
  "resources": [
    {"type": "merchant", "match": {"ids": ["airbnb", "expedia", "booking"]}},
    {"type": "account", "match": {"ids": ["acct/7"], "prefixes": ["acct/12", "bank:eu/"]}}
  ],
  "limits": {
    "per_txn": {"amount": "500.00", "currency": "USD"},
    "per_period": {"amount": "1500", "currency": "USD", "period": "week"}
  },
  "constraints": {"time": {"dow": ["Fri", "Sat"], "start": "22:00", "end": "06:00", "tz": "America/New_York"}},
  "strict": false,
  "meta": {"purpose": "travel bookings"}
}"#;

struct Case {
    policy: Policy,
    inside: Timestamp,
    outside: Timestamp,
    msg: Vec<u8>,
    sig: Vec<u8>,
    key: ParsedPublicKey,
}

impl Case {
    fn new() -> Case {
        let policy = Policy::parse(POLICY.as_bytes()).unwrap();
        let pair = Ed25519KeyPair::generate().unwrap();
        let msg: Vec<u8> = (0..450u32).map(|i| b'A' + (i % 26) as u8).collect();
        let sig = pair.sign(&msg).as_ref().to_vec();
        let key = ParsedPublicKey::new(&signature::ED25519, pair.public_key().as_ref()).unwrap();
        let case = Case {
            policy,
            // Saturday 2026-11-28 01:30 in New York: Friday night's window.
            inside: "2026-11-28T06:30:00Z".parse().unwrap(),
            // Wednesday noon.
            outside: "2026-11-25T17:00:00Z".parse().unwrap(),
            msg,
            sig,
            key,
        };
        // Every path must do what it claims, or the numbers mean nothing.
        case.eddsa();
        let d = case.allow();
        assert!(d.allowed && d.spend.is_some(), "{d:?}");
        let d = case.deny();
        assert_eq!(d.codes(), ["TIME_WINDOW", "LIMIT_PER_TXN"]);
        case
    }

    fn eddsa(&self) {
        self.key
            .verify_sig(black_box(&self.msg), black_box(&self.sig))
            .unwrap();
    }

    fn request(amount: Decimal) -> PolicyRequest<'static> {
        PolicyRequest {
            action: "payments.send",
            resource: Some(ResourceRef {
                kind: "account",
                id: "acct/12/cards/3",
            }),
            money: Some(Money {
                amount,
                currency: Currency::USD,
            }),
        }
    }

    fn allow(&self) -> bonafide_core::policy::Decision {
        self.policy.evaluate(
            black_box(&Self::request(Decimal::new(12_550, 2))),
            black_box(self.inside),
            black_box(Decimal::new(40_000, 2)),
        )
    }

    fn deny(&self) -> bonafide_core::policy::Decision {
        self.policy.evaluate(
            black_box(&Self::request(Decimal::new(60_000, 2))),
            black_box(self.outside),
            black_box(Decimal::new(40_000, 2)),
        )
    }

    fn parse(&self) -> Policy {
        Policy::parse(black_box(POLICY.as_bytes())).unwrap()
    }
}

fn bench_policy(c: &mut Criterion) {
    let case = Case::new();
    let mut group = c.benchmark_group("policy");
    group.bench_function("eddsa_verify", |b| b.iter(|| case.eddsa()));
    group.bench_function("evaluate_allow", |b| b.iter(|| case.allow()));
    group.bench_function("evaluate_deny", |b| b.iter(|| case.deny()));
    group.bench_function("parse_and_hash", |b| b.iter(|| case.parse()));
    group.finish();
}

/// Alternating short rounds so clock drift hits every path alike; per-round median
/// ratios against the EdDSA verification.
fn interleaved() {
    const ROUNDS: usize = 300;
    const PER_ROUND: u32 = 200;
    let case = Case::new();
    let mut t = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for round in 0..ROUNDS {
        for k in 0..4 {
            let path = (round + k) % 4;
            let started = std::time::Instant::now();
            for _ in 0..PER_ROUND {
                match path {
                    0 => case.eddsa(),
                    1 => drop(black_box(case.allow())),
                    2 => drop(black_box(case.deny())),
                    _ => drop(black_box(case.parse())),
                }
            }
            t[path].push(started.elapsed().as_secs_f64() * 1e6 / f64::from(PER_ROUND));
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ratio = |a: &[f64]| median(a.iter().zip(&t[0]).map(|(x, y)| x / y).collect());
    println!("interleaved: {ROUNDS} rounds x {PER_ROUND} per path; medians over rounds");
    println!("eddsa_verify   {:>8.3} us", median(t[0].clone()));
    for (i, name) in [
        (1, "evaluate_allow"),
        (2, "evaluate_deny"),
        (3, "parse_and_hash"),
    ] {
        println!(
            "{name:<14} {:>8.3} us  ratio to eddsa_verify {:.4}",
            median(t[i].clone()),
            ratio(&t[i])
        );
    }
}

criterion_group!(benches, bench_policy);

fn main() {
    if std::env::var_os("BONAFIDE_INTERLEAVED").is_some() {
        interleaved();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
