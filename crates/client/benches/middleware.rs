//! The receiver layer's cost (bench/RESULTS.md §8), every ratio from one run:
//!
//! - `offline_verify/{alg}/…`: a bearer token (one signature) against a DPoP-bound
//!   token with its proof (two signatures), in core alone (`core_*`) and through
//!   [`Receiver::authenticate`] (`receiver_*`: header parsing, clock, key cache,
//!   replay cache). Goal: DPoP ≤ 2.1× bearer.
//! - `hello/{bearer,dpop}/…`: a hello-world axum handler behind the layer, called with
//!   `tower::ServiceExt::oneshot` (`layer`), against core's verify called directly
//!   and then the same handler body (`direct`), and against the router without the
//!   layer whose handler calls core itself (`router_core`). Goal: layer ≤ 1.1× direct.
//!
//! Proofs are single-use (the replay cache refuses a second use), so each DPoP
//! iteration gets a fresh proof, signed in criterion's untimed setup; bearer
//! iterations build their request the same way, so both sides pay the same setup.
//!
//! `cargo bench -p bonafide-client --bench middleware`, or, for ratios that survive
//! a VM whose speed drifts, `BONAFIDE_INTERLEAVED=1 cargo bench -p bonafide-client
//! --bench middleware` (rounds of every variant in rotating order; medians).

use std::hint::black_box;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request};
use axum::routing::get;
use bonafide_client::receiver::{Config, JwksSource, Receiver, VerifiedAgent};
use bonafide_core::dpop::{self, ProofCheck};
use bonafide_core::keys::{Algorithm, Jwks, SigningKey, VerifyingKey};
use bonafide_core::token::{AgentClaims, KeySet, VerifyOptions};
use criterion::{BatchSize, Criterion, criterion_group};
use serde_json::json;
use tower::ServiceExt;

const ISSUER: &str = "https://registry.test";
const BASE: &str = "https://api.example";
const URL: &str = "https://api.example/hello";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn token(key: &SigningKey, jkt: Option<&str>) -> String {
    let t = now();
    let mut claims = json!({
        "iss": ISSUER, "sub": "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa", "aud": "https://api.example",
        "iat": t, "exp": t + 3600, "jti": "tok_aaaaaaaaaaaaaaaaaaaaaaaaaa",
        "agent": {"name": "ledger-bot", "issuer": "Apex Wealth",
                  "scopes": ["read:portfolio", "read:transactions"]},
        "scope": "read:portfolio read:transactions",
    });
    if let Some(jkt) = jkt {
        claims["cnf"] = json!({ "jkt": jkt });
    }
    let claims: AgentClaims = serde_json::from_value(claims).expect("claims");
    bonafide_core::token::sign(key, &claims).expect("sign")
}

struct Setup {
    jwks: Jwks,
    keys: KeySet,
    opts: VerifyOptions,
    agent: SigningKey,
    /// The agent's key as a receiver keeps it once seen (by thumbprint), as the
    /// layer does: proofs are then checked with `dpop::verify_with_key`.
    agent_public: VerifyingKey,
    bearer: String,
    bound: String,
    receiver: Receiver,
    rt: tokio::runtime::Runtime,
}

fn setup(alg: Algorithm) -> Setup {
    let registry = SigningKey::generate(alg).expect("key");
    let agent = SigningKey::generate(alg).expect("key");
    let jwks = Jwks {
        keys: vec![registry.verifying_key().jwk().clone()],
    };
    let mut opts = VerifyOptions::for_issuer(ISSUER);
    opts.audience = bonafide_core::token::AudienceRule::one(BASE);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let receiver = rt
        .block_on(Receiver::new(
            Config::offline(JwksSource::Static(jwks.clone()), ISSUER)
                .public_base_url(BASE)
                .audience(BASE),
        ))
        .expect("receiver");
    Setup {
        keys: KeySet::from_jwks(&jwks).expect("keys"),
        jwks,
        opts,
        bearer: token(&registry, None),
        bound: token(&registry, Some(agent.kid())),
        agent_public: VerifyingKey::from_jwk(agent.verifying_key().jwk()).expect("key"),
        agent,
        receiver,
        rt,
    }
}

/// A fresh proof id per iteration (the replay cache remembers every one).
fn proof(s: &Setup) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let jti = format!("bench-{}", N.fetch_add(1, Ordering::Relaxed));
    dpop::sign(&s.agent, "GET", URL, &s.bound, now(), &jti).expect("proof")
}

fn request(auth: &str, dpop: Option<String>) -> Request<Body> {
    let mut b = Request::builder()
        .method(Method::GET)
        .uri("/hello")
        .header("authorization", auth)
        .header("host", "api.example");
    if let Some(p) = dpop {
        b = b.header("dpop", p);
    }
    b.body(Body::empty()).expect("request")
}

async fn hello(agent: VerifiedAgent) -> String {
    format!("hello {}", agent.name)
}

fn hello_direct(claims: &AgentClaims) -> String {
    format!("hello {}", claims.agent.name)
}

/// The core path a hand-written receiver would take: the header, the token, the
/// proof when there is one.
fn core_verify(s: &Setup, req: &Request<Body>) -> AgentClaims {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let (scheme, tok) = auth.split_once(' ').unwrap_or_default();
    let verified = bonafide_core::token::verify(tok, &s.keys, &s.opts, now()).expect("token");
    if scheme == "DPoP" {
        let p = req
            .headers()
            .get("dpop")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let jkt = verified.claims.cnf.as_ref().map_or("", |c| c.jkt.as_str());
        let htu = format!("{BASE}{}", req.uri().path());
        let check = ProofCheck::new("GET", &htu, jkt, tok, now());
        dpop::verify_with_key(p, &check, &s.agent_public).expect("proof");
    }
    verified.claims
}

fn core_bearer(s: &Setup) -> AgentClaims {
    bonafide_core::token::verify(black_box(&s.bearer), &s.keys, &s.opts, now())
        .expect("ok")
        .claims
}

fn core_dpop(s: &Setup, p: String) -> AgentClaims {
    let t = bonafide_core::token::verify(black_box(&s.bound), &s.keys, &s.opts, now()).expect("ok");
    let jkt = t.claims.cnf.as_ref().map_or("", |c| c.jkt.as_str());
    let check = ProofCheck::new("GET", URL, jkt, &s.bound, now());
    dpop::verify_with_key(&p, &check, &s.agent_public).expect("proof");
    t.claims
}

fn receiver(s: &Setup, req: Request<Body>) -> VerifiedAgent {
    s.rt.block_on(
        s.receiver
            .authenticate(req.method(), req.uri(), req.headers()),
    )
    .expect("ok")
}

fn bearer_request(s: &Setup) -> Request<Body> {
    request(&format!("Bearer {}", s.bearer), None)
}

fn dpop_request(s: &Setup) -> Request<Body> {
    request(&format!("DPoP {}", s.bound), Some(proof(s)))
}

fn layered(s: &Setup) -> Router {
    Router::new()
        .route("/hello", get(hello))
        .layer(s.receiver.layer())
}

/// The router without the layer; its handler calls core itself.
fn plain(s: &Setup) -> Router {
    let keys = std::sync::Arc::new(KeySet::from_jwks(&s.jwks).expect("keys"));
    let opts = s.opts.clone();
    Router::new().route(
        "/hello",
        get(move |req: Request<Body>| {
            let keys = keys.clone();
            let opts = opts.clone();
            async move {
                let auth = req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let tok = auth.split_once(' ').map_or("", |(_, t)| t);
                let t = bonafide_core::token::verify(tok, &*keys, &opts, now()).expect("ok");
                hello_direct(&t.claims)
            }
        }),
    )
}

fn oneshot(s: &Setup, router: &Router, req: Request<Body>) -> axum::response::Response {
    let resp =
        s.rt.block_on(router.clone().oneshot(req))
            .expect("infallible");
    assert!(resp.status().is_success());
    resp
}

fn offline_verify(c: &mut Criterion) {
    for alg in [Algorithm::EdDSA, Algorithm::ES256] {
        let s = setup(alg);
        let mut g = c.benchmark_group(format!("offline_verify/{alg}"));
        g.bench_function("core_bearer", |b| b.iter(|| core_bearer(&s)));
        g.bench_function("core_dpop", |b| {
            b.iter_batched(|| proof(&s), |p| core_dpop(&s, p), BatchSize::SmallInput)
        });
        g.bench_function("receiver_bearer", |b| {
            b.iter_batched(
                || bearer_request(&s),
                |r| receiver(&s, r),
                BatchSize::SmallInput,
            )
        });
        g.bench_function("receiver_dpop", |b| {
            b.iter_batched(
                || dpop_request(&s),
                |r| receiver(&s, r),
                BatchSize::SmallInput,
            )
        });
        g.finish();
    }
}

fn hello_world(c: &mut Criterion) {
    let s = setup(Algorithm::EdDSA);
    let (layered, plain) = (layered(&s), plain(&s));
    for kind in ["bearer", "dpop"] {
        let make = || match kind {
            "bearer" => bearer_request(&s),
            _ => dpop_request(&s),
        };
        let mut g = c.benchmark_group(format!("hello/{kind}"));
        g.bench_function("direct", |b| {
            b.iter_batched(
                make,
                |req| hello_direct(&core_verify(&s, &req)),
                BatchSize::SmallInput,
            )
        });
        g.bench_function("layer", |b| {
            b.iter_batched(
                make,
                |req| oneshot(&s, &layered, req),
                BatchSize::SmallInput,
            )
        });
        if kind == "bearer" {
            g.bench_function("router_core", |b| {
                b.iter_batched(make, |req| oneshot(&s, &plain, req), BatchSize::SmallInput)
            });
        }
        g.finish();
    }
}

/// Mean µs of one call of `run` over `n` inputs made (untimed) by `make`; outputs are
/// dropped after the clock stops, as criterion's `iter_batched` does.
fn timed<I, O>(n: usize, make: impl Fn() -> I, run: impl Fn(I) -> O) -> f64 {
    let inputs: Vec<I> = (0..n).map(|_| make()).collect();
    let mut outs = Vec::with_capacity(n);
    let start = Instant::now();
    for i in inputs {
        outs.push(black_box(run(i)));
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    drop(outs);
    us
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Every variant in each round, in rotating order; per-variant medians and the
/// median of the per-round ratios.
fn interleaved() {
    let rounds: usize = std::env::var("BONAFIDE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let n = 20;
    let ed = setup(Algorithm::EdDSA);
    let es = setup(Algorithm::ES256);
    let (lay, pla) = (layered(&ed), plain(&ed));
    type Run<'a> = Box<dyn Fn() -> f64 + 'a>;
    let variants: Vec<(&str, Run<'_>)> = vec![
        (
            "EdDSA core_bearer",
            Box::new(|| timed(n, || (), |()| core_bearer(&ed))),
        ),
        (
            "EdDSA core_dpop",
            Box::new(|| timed(n, || proof(&ed), |p| core_dpop(&ed, p))),
        ),
        (
            "EdDSA receiver_bearer",
            Box::new(|| timed(n, || bearer_request(&ed), |r| receiver(&ed, r))),
        ),
        (
            "EdDSA receiver_dpop",
            Box::new(|| timed(n, || dpop_request(&ed), |r| receiver(&ed, r))),
        ),
        (
            "ES256 core_bearer",
            Box::new(|| timed(n, || (), |()| core_bearer(&es))),
        ),
        (
            "ES256 core_dpop",
            Box::new(|| timed(n, || proof(&es), |p| core_dpop(&es, p))),
        ),
        (
            "ES256 receiver_bearer",
            Box::new(|| timed(n, || bearer_request(&es), |r| receiver(&es, r))),
        ),
        (
            "ES256 receiver_dpop",
            Box::new(|| timed(n, || dpop_request(&es), |r| receiver(&es, r))),
        ),
        (
            "hello bearer direct",
            Box::new(|| {
                timed(
                    n,
                    || bearer_request(&ed),
                    |r| hello_direct(&core_verify(&ed, &r)),
                )
            }),
        ),
        (
            "hello bearer layer",
            Box::new(|| timed(n, || bearer_request(&ed), |r| oneshot(&ed, &lay, r))),
        ),
        (
            "hello bearer router_core",
            Box::new(|| timed(n, || bearer_request(&ed), |r| oneshot(&ed, &pla, r))),
        ),
        (
            "hello dpop direct",
            Box::new(|| {
                timed(
                    n,
                    || dpop_request(&ed),
                    |r| hello_direct(&core_verify(&ed, &r)),
                )
            }),
        ),
        (
            "hello dpop layer",
            Box::new(|| timed(n, || dpop_request(&ed), |r| oneshot(&ed, &lay, r))),
        ),
    ];
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); variants.len()];
    for _ in 0..3 {
        for (_, run) in &variants {
            run(); // warm-up
        }
    }
    for round in 0..rounds {
        for k in 0..variants.len() {
            let i = (k + round) % variants.len();
            samples[i].push((variants[i].1)());
        }
    }
    let pairs = [
        ("EdDSA core_dpop", "EdDSA core_bearer"),
        ("EdDSA receiver_dpop", "EdDSA receiver_bearer"),
        ("ES256 core_dpop", "ES256 core_bearer"),
        ("ES256 receiver_dpop", "ES256 receiver_bearer"),
        ("EdDSA receiver_bearer", "EdDSA core_bearer"),
        ("EdDSA receiver_dpop", "EdDSA core_dpop"),
        ("hello bearer layer", "hello bearer direct"),
        ("hello bearer layer", "hello bearer router_core"),
        ("hello bearer router_core", "hello bearer direct"),
        ("hello dpop layer", "hello dpop direct"),
    ];
    println!("interleaved: {rounds} rounds x {n} calls per variant, medians in µs");
    let idx = |name: &str| variants.iter().position(|(v, _)| *v == name).unwrap_or(0);
    for (i, (name, _)) in variants.iter().enumerate() {
        println!("{name:<28} {:>8.1}", median(&mut samples[i].clone()));
    }
    for (a, b) in pairs {
        let (ia, ib) = (idx(a), idx(b));
        let mut per_round: Vec<f64> = samples[ia]
            .iter()
            .zip(&samples[ib])
            .map(|(x, y)| x / y)
            .collect();
        let of_medians = median(&mut samples[ia].clone()) / median(&mut samples[ib].clone());
        println!(
            "{a} / {b}: {of_medians:.3} (median of per-round ratios {:.3})",
            median(&mut per_round)
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6));
    targets = offline_verify, hello_world
}

fn main() {
    if std::env::var_os("BONAFIDE_INTERLEAVED").is_some() {
        interleaved();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
