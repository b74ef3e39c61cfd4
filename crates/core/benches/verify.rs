//! Token verification cost per algorithm, against its floor and against `jsonwebtoken`.
//!
//! For each of EdDSA, ES256 and RS256 (2048-bit), one typical agent token (claims as in
//! docs/design.md, "Token") is verified three ways in the same run:
//!
//! - `verify/<alg>/raw`: AWS-LC's signature check of the token's signing input with a
//!   pre-parsed key; nothing else. The floor (docs/design.md, "Performance model").
//! - `verify/<alg>/bonafide`: `bonafide_core::token::verify` with a `KeySet` holding
//!   the key: size, shape, strict base64url, header, signature, duplicate-key and depth
//!   checks, typed claims, times (leeway 60 s), audience and issuer.
//! - `verify/<alg>/jsonwebtoken`: `jsonwebtoken` 11 (AWS-LC backend) `decode` into the
//!   same claims type with a `DecodingKey` built once and the same checks (alg, exp and
//!   nbf with leeway 60, aud, iss, required exp/nbf/aud/iss/sub).
//!
//! Run: `cargo bench -p bonafide-core --bench verify -- --warm-up-time 1 --measurement-time 3`
//! Drift-resistant ratios: `BONAFIDE_INTERLEAVED=1 cargo bench -p bonafide-core --bench verify`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rsa::PublicKeyComponents;
use aws_lc_rs::signature::{self, ParsedPublicKey};
use bonafide_core::b64;
use bonafide_core::ids::{AgentId, TokenId};
use bonafide_core::jws::Compact;
use bonafide_core::keys::{Algorithm, SigningKey, VerifyingKey};
use bonafide_core::token::{self, AgentClaims, AgentInfo, Audience, KeySet, VerifyOptions};
use criterion::{Criterion, criterion_group};

const ISS: &str = "https://registry.example";
const AUD: &str = "https://api.receiver.example";

fn claims(now: i64) -> AgentClaims {
    AgentClaims {
        iss: ISS.to_owned(),
        sub: AgentId::from_random([0x5a; 16]),
        aud: Some(Audience::One(AUD.to_owned())),
        iat: now - 10,
        nbf: Some(now - 10),
        // Long enough that the token stays valid for the whole run: jsonwebtoken reads
        // the clock itself.
        exp: now + 24 * 3600,
        jti: TokenId::from_random([0xa5; 16]),
        agent: AgentInfo {
            name: "Portfolio assistant".to_owned(),
            issuer: "apexwealth.com".to_owned(),
            scopes: vec!["read:portfolio".to_owned(), "read:transactions".to_owned()],
            description: Some("Summarises the user's portfolio and transactions".to_owned()),
        },
        scope: Some("read:portfolio read:transactions".to_owned()),
        user: None,
        policy: None,
        policy_hash: None,
        cnf: None,
        act: None,
        ancestor_jtis: None,
        status: None,
    }
}

fn member(key: &VerifyingKey, name: &str) -> Vec<u8> {
    let jwk = key.jwk();
    let v = match name {
        "x" => &jwk.x,
        "y" => &jwk.y,
        "n" => &jwk.n,
        "e" => &jwk.e,
        _ => unreachable!(),
    };
    b64::decode(v.as_deref().unwrap()).unwrap()
}

fn jwk_text(key: &VerifyingKey, name: &str) -> String {
    let jwk = key.jwk();
    match name {
        "x" => jwk.x.clone(),
        "y" => jwk.y.clone(),
        "n" => jwk.n.clone(),
        "e" => jwk.e.clone(),
        _ => unreachable!(),
    }
    .unwrap()
}

/// The floor: AWS-LC's own public key, parsed once.
fn raw_key(key: &VerifyingKey) -> ParsedPublicKey {
    match key.alg() {
        Algorithm::EdDSA => ParsedPublicKey::new(&signature::ED25519, member(key, "x")).unwrap(),
        Algorithm::ES256 => {
            let mut point = vec![0x04];
            point.extend(member(key, "x"));
            point.extend(member(key, "y"));
            ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).unwrap()
        }
        Algorithm::RS256 => {
            let (n, e) = (member(key, "n"), member(key, "e"));
            PublicKeyComponents {
                n: n.as_slice(),
                e: e.as_slice(),
            }
            .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
            .unwrap()
        }
    }
}

fn jwt_key(key: &VerifyingKey) -> jsonwebtoken::DecodingKey {
    match key.alg() {
        Algorithm::EdDSA => jsonwebtoken::DecodingKey::from_ed_components(&jwk_text(key, "x")),
        Algorithm::ES256 => {
            jsonwebtoken::DecodingKey::from_ec_components(&jwk_text(key, "x"), &jwk_text(key, "y"))
        }
        Algorithm::RS256 => {
            jsonwebtoken::DecodingKey::from_rsa_components(&jwk_text(key, "n"), &jwk_text(key, "e"))
        }
    }
    .unwrap()
}

fn jwt_validation(alg: Algorithm) -> jsonwebtoken::Validation {
    let mut v = jsonwebtoken::Validation::new(match alg {
        Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
        Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
    });
    v.leeway = 60;
    v.validate_exp = true;
    v.validate_nbf = true;
    v.set_audience(&[AUD]);
    v.set_issuer(&[ISS]);
    v.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
    v
}

/// One algorithm's token and the three ways of verifying it, each checked to accept.
struct Case {
    alg: Algorithm,
    now: i64,
    token: String,
    input: Vec<u8>,
    sig: Vec<u8>,
    raw: ParsedPublicKey,
    keys: KeySet,
    opts: VerifyOptions,
    decoding_key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
}

impl Case {
    fn new(alg: Algorithm, now: i64) -> Case {
        let signer = SigningKey::generate(alg).unwrap();
        let key = signer.verifying_key();
        let expected = claims(now);
        let token = token::sign(&signer, &expected).unwrap();
        let compact = Compact::split(&token, usize::MAX).unwrap();
        let input = compact.signing_input.as_bytes().to_vec();
        let sig = b64::decode(compact.signature_b64).unwrap();
        let mut keys = KeySet::new();
        keys.insert(VerifyingKey::from_jwk(key.jwk()).unwrap());
        let mut opts = VerifyOptions::for_issuer(ISS);
        opts.audience = bonafide_core::token::AudienceRule::one(AUD);
        let case = Case {
            alg,
            now,
            raw: raw_key(key),
            decoding_key: jwt_key(key),
            validation: jwt_validation(alg),
            token,
            input,
            sig,
            keys,
            opts,
        };
        // Every path must accept the token, or the numbers mean nothing.
        case.raw();
        assert_eq!(case.bonafide().claims, expected);
        assert_eq!(case.jsonwebtoken().claims, expected);
        case
    }

    fn raw(&self) {
        self.raw
            .verify_sig(black_box(&self.input), black_box(&self.sig))
            .unwrap();
    }

    fn bonafide(&self) -> token::VerifiedToken {
        token::verify(
            black_box(&self.token),
            &self.keys,
            &self.opts,
            black_box(self.now),
        )
        .unwrap()
    }

    fn jsonwebtoken(&self) -> jsonwebtoken::TokenData<AgentClaims> {
        jsonwebtoken::decode::<AgentClaims>(
            black_box(&self.token),
            &self.decoding_key,
            &self.validation,
        )
        .unwrap()
    }
}

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

const ALGS: [Algorithm; 3] = [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256];

fn bench_verify(c: &mut Criterion) {
    for alg in ALGS {
        let case = Case::new(alg, now());
        let mut group = c.benchmark_group(format!("verify/{}", alg.as_str()));
        group.bench_function("raw", |b| b.iter(|| case.raw()));
        group.bench_function("bonafide", |b| b.iter(|| case.bonafide()));
        group.bench_function("jsonwebtoken", |b| b.iter(|| case.jsonwebtoken()));
        group.finish();
    }
}

/// `BONAFIDE_INTERLEAVED=1 cargo bench -p bonafide-core --bench verify`: the same three
/// paths in alternating short rounds (order rotated each round), so clock-speed drift
/// on a shared or virtual machine hits all three alike; prints per-round median ratios.
fn interleaved() {
    const ROUNDS: usize = 300;
    const PER_ROUND: u32 = 40;
    println!("interleaved: {ROUNDS} rounds x {PER_ROUND} verifies per path; medians over rounds");
    for alg in ALGS {
        let case = Case::new(alg, now());
        let mut t = [Vec::new(), Vec::new(), Vec::new()];
        for round in 0..ROUNDS {
            for k in 0..3 {
                let path = (round + k) % 3;
                let started = std::time::Instant::now();
                for _ in 0..PER_ROUND {
                    match path {
                        0 => case.raw(),
                        1 => drop(case.bonafide()),
                        _ => drop(case.jsonwebtoken()),
                    }
                }
                t[path].push(started.elapsed().as_secs_f64() * 1e6 / f64::from(PER_ROUND));
            }
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let ratio = |a: &[f64], b: &[f64]| median(a.iter().zip(b).map(|(x, y)| x / y).collect());
        println!(
            "{:<6} raw {:>7.2} us  bonafide {:>7.2} us  jsonwebtoken {:>7.2} us  bonafide/raw {:.3}  bonafide/jsonwebtoken {:.3}",
            case.alg.as_str(),
            median(t[0].clone()),
            median(t[1].clone()),
            median(t[2].clone()),
            ratio(&t[1], &t[0]),
            ratio(&t[1], &t[2]),
        );
    }
}

/// Why core decodes base64url with the `base64` crate rather than `base64ct`: the same
/// typical payload segment, both strict (no padding, canonical trailing bits).
fn bench_base64(c: &mut Criterion) {
    use base64ct::Encoding;
    let signer = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let token = token::sign(&signer, &claims(1_700_000_000)).unwrap();
    let payload = token.split('.').nth(1).unwrap().to_owned();
    assert_eq!(
        base64ct::Base64UrlUnpadded::decode_vec(&payload).unwrap(),
        b64::decode(&payload).unwrap()
    );
    let mut group = c.benchmark_group("b64_decode_payload");
    group.bench_function("base64ct", |b| {
        b.iter(|| base64ct::Base64UrlUnpadded::decode_vec(black_box(&payload)).unwrap());
    });
    group.bench_function("base64", |b| {
        b.iter(|| b64::decode(black_box(&payload)).unwrap());
    });
    group.finish();
}

criterion_group!(benches, bench_verify, bench_base64);

fn main() {
    if std::env::var_os("BONAFIDE_INTERLEAVED").is_some() {
        interleaved();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
