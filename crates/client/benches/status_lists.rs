//! Offline verify with a cached status list against without one, same run
//! (bench/RESULTS.md §13; goal ≤ 1.02×): a bearer token that names its entry in a
//! status list, through [`Receiver::authenticate`] with status lists (the list fetched
//! once from a list server on 127.0.0.1 in another thread, then cached: ttl and
//! staleness bound of an hour, so no refetch during the run) and without
//! (`without_status_lists`). Also the status check alone (`StatusLists::check`).
//!
//! `cargo bench -p bonafide-client --bench status_lists`; for a ratio that survives a
//! shared machine whose speed drifts, `BONAFIDE_INTERLEAVED=1 cargo bench -p
//! bonafide-client --bench status_lists` (rounds alternating both variants, the
//! median of the per-round ratios).

use std::hint::black_box;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, header};
use axum::response::IntoResponse;
use axum::routing::get;
use bonafide_client::receiver::{Config, JwksSource, Receiver, VerifiedAgent};
use bonafide_client::status::{StatusListConfig, StatusLists};
use bonafide_core::keys::{Algorithm, Jwks, SigningKey};
use bonafide_core::status_list::{self, Bits, StatusList, StatusListClaims};
use bonafide_core::token::AgentClaims;
use criterion::{Criterion, criterion_group};
use serde_json::json;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

struct Setup {
    token: String,
    claims: AgentClaims,
    with: Receiver,
    without: Receiver,
    lists: StatusLists,
    rt: tokio::runtime::Runtime,
}

/// A list server in its own thread and runtime: `/v1/status-lists/1` (ttl 1 h) and
/// the list key at `/.well-known/status-list-jwks.json`.
fn list_server(key: SigningKey) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let base = format!("http://{}", listener.local_addr().expect("addr"));
            let _ = tx.send(base.clone());
            // Signed once: the list does not change during the run.
            let list = StatusList::new(Bits::TWO, 1 << 20).expect("list");
            let claims = StatusListClaims {
                iss: Some(base.clone()),
                sub: format!("{base}/v1/status-lists/1"),
                iat: now(),
                exp: Some(now() + 86_400),
                ttl: Some(3600),
                status_list: list.encode(),
                extra: serde_json::Map::new(),
            };
            let jws = status_list::sign(&key, &claims).expect("sign");
            let list_jwks = axum::Json(Jwks {
                keys: vec![key.verifying_key().jwk().clone()],
            });
            let app = axum::Router::new()
                .route(
                    "/.well-known/status-list-jwks.json",
                    get(move || {
                        let j = list_jwks.clone();
                        async move { j }
                    }),
                )
                .route(
                    "/v1/status-lists/1",
                    get(move || {
                        let jws = jws.clone();
                        async move {
                            (
                                [(header::CONTENT_TYPE, status_list::STATUS_LIST_MEDIA_TYPE)],
                                jws,
                            )
                                .into_response()
                        }
                    }),
                );
            axum::serve(listener, app).await.expect("serve");
        });
    });
    rx.recv().expect("list server")
}

fn setup() -> Setup {
    let token_key = SigningKey::generate(Algorithm::EdDSA).expect("key");
    let list_key = SigningKey::generate(Algorithm::EdDSA).expect("key");
    let jwks = Jwks {
        keys: vec![token_key.verifying_key().jwk().clone()],
    };
    let base = list_server(list_key);
    let t = now();
    let claims: AgentClaims = serde_json::from_value(json!({
        "iss": base, "sub": "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa",
        "iat": t, "exp": t + 3 * 3600, "jti": "tok_aaaaaaaaaaaaaaaaaaaaaaaaaa",
        "agent": {"name": "ledger-bot", "issuer": "Apex Wealth",
                  "scopes": ["read:portfolio", "read:transactions"]},
        "status": {"status_list": {"idx": 123_457, "uri": format!("{base}/v1/status-lists/1")}},
    }))
    .expect("claims");
    let token = bonafide_core::token::sign(&token_key, &claims).expect("sign");
    let config = StatusListConfig::for_registry(&base).max_staleness(Duration::from_secs(3600));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let offline = || Config::offline(JwksSource::Static(jwks.clone()), base.clone());
    let with = rt
        .block_on(Receiver::new(offline().status_lists(config.clone())))
        .expect("receiver");
    let without = rt
        .block_on(Receiver::new(offline().without_status_lists()))
        .expect("receiver");
    let s = Setup {
        lists: StatusLists::new(config).expect("lists"),
        token,
        claims,
        with,
        without,
        rt,
    };
    // Warm: the list fetched once by each.
    let a = receive(&s, &s.with);
    assert!(a.revocation_checked, "the list is cached and read");
    assert!(!receive(&s, &s.without).revocation_checked);
    assert!(check(&s));
    s
}

fn receive(s: &Setup, r: &Receiver) -> VerifiedAgent {
    let req = Request::builder()
        .method(Method::GET)
        .uri("/hello")
        .header("authorization", format!("Bearer {}", s.token))
        .body(Body::empty())
        .expect("request");
    s.rt.block_on(r.authenticate(req.method(), req.uri(), req.headers()))
        .expect("ok")
}

fn check(s: &Setup) -> bool {
    let now_ms = bonafide_client::status::unix_now_ms();
    s.rt.block_on(s.lists.check(black_box(&s.claims), now_ms))
        .expect("ok")
        .revocation_checked()
}

fn status_lists(c: &mut Criterion) {
    let s = setup();
    let mut g = c.benchmark_group("offline_status/EdDSA");
    g.bench_function("receiver_without_list", |b| {
        b.iter(|| receive(&s, &s.without))
    });
    g.bench_function("receiver_cached_list", |b| b.iter(|| receive(&s, &s.with)));
    g.bench_function("check_alone", |b| b.iter(|| check(&s)));
    g.finish();
}

fn timed(n: usize, run: impl Fn()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        run();
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Rounds of both variants, alternating which goes first.
fn interleaved() {
    let rounds: usize = std::env::var("BONAFIDE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let n = 50;
    let s = setup();
    let (mut without, mut with, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let run_without = || timed(n, || drop(black_box(receive(&s, &s.without))));
        let run_with = || timed(n, || drop(black_box(receive(&s, &s.with))));
        let (a, b) = if round % 2 == 0 {
            let a = run_without();
            (a, run_with())
        } else {
            let b = run_with();
            (run_without(), b)
        };
        without.push(a);
        with.push(b);
        ratios.push(b / a);
    }
    println!(
        "interleaved, {rounds} rounds of {n} calls each:\n  receiver_without_list  median {:.2} µs\n  receiver_cached_list   median {:.2} µs\n  ratio (median of per-round ratios) {:.4}",
        median(&mut without),
        median(&mut with),
        median(&mut ratios)
    );
}

criterion_group!(benches, status_lists);

fn main() {
    if std::env::var_os("BONAFIDE_INTERLEAVED").is_some() {
        interleaved();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
