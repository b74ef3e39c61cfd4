//! A Token Status List of 1,000,000 entries (2 bits, as the registry publishes them):
//! the time to rebuild it from its revoked indexes, compress it and sign the Status
//! List Token (what the publisher does per version), the time a receiver takes to
//! decode it, and its compressed size (printed once per case), for 0 %, 0.1 %, 1 % and
//! 10 % of entries revoked at random.
//!
//! Run: `cargo bench -p bonafide-core --bench status_list -- --warm-up-time 1 --measurement-time 3`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;

use bonafide_core::keys::{Algorithm, SigningKey};
use bonafide_core::status_list::{self, Bits, Status, StatusList, StatusListClaims};
use criterion::{Criterion, criterion_group, criterion_main};

const ENTRIES: u64 = 1_000_000;

/// `n` distinct pseudo-random indexes below `ENTRIES` (a fixed LCG: the same set every
/// run, spread like random allocations).
fn indexes(n: u64) -> Vec<u64> {
    let mut seen = std::collections::HashSet::new();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while (seen.len() as u64) < n {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        seen.insert((x >> 11) % ENTRIES);
    }
    seen.into_iter().collect()
}

fn rebuild_and_sign(revoked: &[u64], key: &SigningKey) -> String {
    let mut list = StatusList::new(Bits::TWO, ENTRIES).unwrap();
    for &i in revoked {
        list.set(i, Status::Invalid).unwrap();
    }
    let claims = StatusListClaims {
        iss: Some("https://registry.example".into()),
        sub: "https://registry.example/v1/status-lists/1".into(),
        iat: 1_800_000_000,
        exp: Some(1_800_086_400),
        ttl: Some(60),
        status_list: list.encode(),
        extra: serde_json::Map::new(),
    };
    status_list::sign(key, &claims).unwrap()
}

fn bench(c: &mut Criterion) {
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    for (name, n) in [
        ("0", 0),
        ("0.1pct", 1_000),
        ("1pct", 10_000),
        ("10pct", 100_000),
    ] {
        let revoked = indexes(n);
        let token = rebuild_and_sign(&revoked, &key);
        let claims: StatusListClaims = serde_json::from_slice(
            &bonafide_core::b64::decode(token.split('.').nth(1).unwrap()).unwrap(),
        )
        .unwrap();
        eprintln!(
            "status_list/1M/{name}: {} revoked, lst {} bytes, token {} bytes (raw list {} bytes)",
            n,
            claims.status_list.lst.len(),
            token.len(),
            ENTRIES / 4
        );
        c.bench_function(&format!("status_list/1M/rebuild_and_sign/{name}"), |b| {
            b.iter(|| rebuild_and_sign(black_box(&revoked), &key));
        });
        c.bench_function(&format!("status_list/1M/decode/{name}"), |b| {
            b.iter(|| StatusList::decode(black_box(&claims.status_list)).unwrap());
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
