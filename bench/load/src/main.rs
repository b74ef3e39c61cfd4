//! `bonafide-load`: HTTP load harness for `POST /v1/verify` (docs/design.md, "Performance
//! model"), measured against its floor in the same run.
//!
//! One process, one command:
//!
//! 1. starts the real Bonafide server on 127.0.0.1:0 (temp SQLite data dir, EdDSA
//!    signing key), creates an issuer and registers an agent over HTTP to get a token;
//! 2. starts the baseline: a minimal axum endpoint `POST /verify` that splits the
//!    compact JWS, base64url-decodes the signature and does one Ed25519 verify with a
//!    pre-parsed key (the registry's key, read from its JWKS), answering `{"valid":…}`;
//! 3. drives both with the same closed-loop load generator: C HTTP/1.1 keep-alive
//!    connections per target (hyper client, one task per connection), a warm-up,
//!    then a measured window; every response must be 200 and valid (and allowed).
//!    By default the targets run one after the other (baseline, then Bonafide) and
//!    the round is repeated (`--rounds`, default 2), keeping the best run of each.
//!    `--interleave` instead keeps both connection sets open and alternates which
//!    target sends every `--slice-ms`, so both see the same machine: a robust ratio
//!    on a shared machine. `--breakdown` adds two diagnostic endpoints on the same
//!    registry state (`check`: the verification pipeline behind a bare route;
//!    `handler`: the real handler without the middleware) to split the cost;
//! 4. prints, per run, throughput, latency p50/p90/p99/max, the CPU used by the load
//!    generator, by the process and by the rest of the machine, and server CPU per
//!    request; then the ratio Bonafide / baseline (goal ≥ 0.8). `--json FILE` also
//!    writes everything as JSON.
//!
//! `--compare-audit` measures the audit log instead: the baseline is the real server
//! with verify decisions not audited (`Config { audit_verify: false }`, as
//! `serve --no-audit-verify`), the target the same registry (same store, key, token and
//! request) with them audited (the default), at 32 connections unless told; goals:
//! audited ≥ 0.8× unaudited throughput and audited p99 ≤ 5 ms.
//!
//! `--compare-policy` measures consent policies and budgets (issue 5): ONE real
//! server in the default configuration (every decision audited and given a signed
//! receipt), an issuer, a receiver (`POST /v1/receivers`) and two agents registered
//! over HTTP, one with scopes only and one with a `pol.v0.2` consent policy whose
//! monthly budget ([`PER_PERIOD_CAP`]) cannot run out during a run. Both targets send
//! the receiver's key in `X-API-Key`; the baseline `no-policy` asks
//! `{token, scopes_requested}` of the plain token, the target `policy-spend` asks the
//! policy token for a spend: `{token, scopes_requested, action: "payments.send",
//! resource: {type: "merchant", id: "acct/42"}, amount: "0.01", currency: "USD"}`,
//! which charges the budget atomically. Every answer must be 200, valid and allowed,
//! and carry `audit_index` and `receipt_id` (and `remaining` for the spends); 32
//! connections unless told. Goal: policy-spend ≥ 0.8× no-policy throughput; the p99 of
//! both is recorded. Afterwards the budget must have spent exactly 0.01 USD for every
//! allowed spend answer the harness received (the setup's check included), read back
//! with `POST /v1/simulate` of the same request; a mismatch fails the run.
//!
//! `--compare-issuer-signed` measures self-custody (issue 6): ONE real server in the
//! default configuration (EdDSA registry key), an issuer and one agent registered over
//! HTTP, and an issuer key registered with `POST /v1/issuer/keys` (the public JWK of an
//! Ed25519 key this harness generates and keeps). The baseline `registry-signed` is the
//! agent's token from its registration; the target `issuer-signed` is a token for the
//! same agent that the harness signs with its own key (`iss` = the issuer id, same
//! scopes, same expiry), so both signatures are Ed25519 and both go through the
//! server's key lookup; the issuer-signed one also through the issuer-key ring and the
//! agent check. Same body `{token, scopes_requested}`; both answers must be valid and
//! allowed. Goal: cost ≤ 1.05×, where cost = registry-signed / issuer-signed
//! throughput (and, recorded beside it, issuer-signed / registry-signed server CPU per
//! request). `--unaudited` runs that server with `audit_verify: false` (measurement
//! only: the audit log's group commit dominates latency and can hide a per-request
//! difference).
//!
//! `--compare-verify-action` measures signed action verification (issue 6): ONE real
//! server in the default configuration (decisions audited), an issuer and one agent
//! registered over HTTP with its own `public_key` (the Ed25519 JWK of a key this
//! harness generates and keeps). The baseline `verify` is `POST /v1/verify {token,
//! scopes_requested}` of a bearer token of a second agent with the same scopes and no
//! key (a token bound to a key needs a proof of possession); the target `verify-action` is `POST
//! /v1/agents/{id}/verify-action {action, resource, timestamp, nonce, signature}` with
//! a fresh nonce (random prefix + counter) and signature per request. The signed
//! bodies are pre-computed before the runs (rounds × (warm-up + seconds) ×
//! [`ACTION_BODIES_PER_S`], capped at [`ACTION_BODIES_MAX`]), so the load generator
//! signs nothing in the window unless they run out (then it signs each request itself,
//! and the count is reported). Every answer must be 200 and allowed with an
//! `audit_index` (a `REPLAY` counts as an error). No goal: throughput, p50/p99 and the
//! ratio verify-action / verify are recorded.
//!
//! All servers share one multi-thread tokio runtime (default worker count = CPUs);
//! the load generator runs on its own single-threaded runtime on the main thread, as
//! an external `wrk -t1` would. No tracing subscriber is installed, so the server's
//! per-request access log is off. All traffic stays on 127.0.0.1; everything stops by
//! itself.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use aws_lc_rs::signature::{self, ParsedPublicKey};
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use bonafide_core::apikey::{ApiKey, KeyKind};
use bonafide_core::b64;
use bonafide_core::ids::TokenId;
use bonafide_core::keys::{Algorithm, SigningKey};
use bonafide_core::policy::Decimal;
use bonafide_core::token::{AgentClaims, AgentInfo};
use bonafide_server::{Config, Server};
use bonafide_store::{SqliteStore, Store};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Scopes granted to the benchmark agent.
const GRANTED: [&str; 2] = ["read:portfolio", "read:transactions"];
/// Scope asked about on every Bonafide verify.
const REQUESTED: &str = "read:portfolio";

/// `--compare-policy`: the target that spends under a consent policy.
const POLICY_SUBJECT: &str = "policy-spend";
/// `--compare-policy`: the consent policy (`pol.v0.2`) and the spend asked of it.
const POLICY_ID: &str = "pol_bench";
const ACTION: &str = "payments.send";
const RESOURCE_TYPE: &str = "merchant";
const RESOURCE_ID: &str = "acct/42";
const SPEND: &str = "0.01";
const CURRENCY: &str = "USD";
const PER_TXN: &str = "100.00";
/// The policy's monthly budget: 10^10 spends of [`SPEND`], more than any run makes.
const PER_PERIOD_CAP: &str = "100000000.00";

/// `--compare-issuer-signed`: the baseline (the registry's token) and the target (the
/// issuer's own token for the same agent).
const REGISTRY_SIGNED: &str = "registry-signed";
const ISSUER_SIGNED: &str = "issuer-signed";

/// `--compare-verify-action`: the baseline (`POST /v1/verify` of the agent's token)
/// and the target (`POST /v1/agents/{id}/verify-action`, signed by the agent's key).
const VERIFY: &str = "verify";
const VERIFY_ACTION: &str = "verify-action";
/// `--compare-verify-action`: what the agent signs (the action is [`REQUESTED`], one
/// of its scopes).
const ACTION_RESOURCE: &str = "portfolio";
/// `--compare-verify-action`: signed bodies pre-computed per second of load (warm-up
/// included) and round, and the most pre-computed; past them the load generator
/// signs each request itself (counted as `signed_live`).
const ACTION_BODIES_PER_S: usize = 20_000;
const ACTION_BODIES_MAX: usize = 2_000_000;

/// What is measured against what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    /// Bonafide's `POST /v1/verify` against the one-Ed25519-verify endpoint.
    Baseline,
    /// Bonafide with verify decisions audited against the same server without.
    CompareAudit,
    /// A verify with a consent policy and a spend against one without a policy, on
    /// the same (default, audited) server.
    ComparePolicy,
    /// An issuer-signed token's verify against a registry-signed one's, same agent,
    /// same server.
    CompareIssuerSigned,
    /// A signed action's `verify-action` against the same agent's token `verify`,
    /// same (default, audited) server.
    CompareVerifyAction,
}

impl Mode {
    fn default_connections(self) -> usize {
        match self {
            Mode::Baseline => 16,
            Mode::CompareAudit
            | Mode::ComparePolicy
            | Mode::CompareIssuerSigned
            | Mode::CompareVerifyAction => 32,
        }
    }

    /// Names of the floor and of the target measured against it.
    fn pair(self) -> (&'static str, &'static str) {
        match self {
            Mode::Baseline => ("baseline", "bonafide"),
            Mode::CompareAudit => ("unaudited", "audited"),
            Mode::ComparePolicy => ("no-policy", POLICY_SUBJECT),
            Mode::CompareIssuerSigned => (REGISTRY_SIGNED, ISSUER_SIGNED),
            Mode::CompareVerifyAction => (VERIFY, VERIFY_ACTION),
        }
    }

    /// Whether the goal is a ceiling on the cost ratio (baseline / subject
    /// throughput) rather than a floor on the throughput ratio.
    fn goal_on_cost(self) -> bool {
        self == Mode::CompareIssuerSigned
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "bonafide-load",
    about = "POST /v1/verify (EdDSA token, scope check) vs a minimal one-Ed25519-verify \
             axum endpoint: same machine, same run, same connections."
)]
struct Args {
    /// Concurrent HTTP/1.1 keep-alive connections per target. Default 16, or 32 with
    /// `--compare-audit`, `--compare-policy` or `--compare-issuer-signed`.
    #[arg(long)]
    connections: Option<usize>,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Warm-up seconds before each measured run (same connections, not recorded).
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Rounds of (baseline, then Bonafide); the best run of each target is reported.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Instead of one target after the other, open every target's connections at
    /// once and let one target send at a time, switching every `--slice-ms`; each
    /// target's throughput is over its share of the window. Both then see the same
    /// machine, which makes the ratio robust to other load on a shared machine.
    #[arg(long)]
    interleave: bool,
    /// Slice length for `--interleave`, milliseconds.
    #[arg(long, default_value_t = 200, value_name = "MS")]
    slice_ms: u64,
    /// Also load two diagnostic endpoints on the same registry state, to split
    /// Bonafide's cost: `check` (bonafide_server's `check_token` plus the scope check
    /// behind a bare axum route) and `handler` (the real `verify_post` handler on a
    /// bare router: no request-id, access-log, catch-panic or body-limit layers).
    #[arg(long)]
    breakdown: bool,
    /// Instead of the one-verify baseline, compare two real Bonafide servers on the
    /// same store, same token, same request: `unaudited` (`audit_verify: false`, as
    /// `serve --no-audit-verify`) as the baseline, and `audited` (the default: every
    /// decision group-committed to the audit log and answered once durable). Goal:
    /// audited ≥ 0.8× unaudited throughput and audited p99 ≤ 5 ms.
    #[arg(long, conflicts_with = "breakdown")]
    compare_audit: bool,
    /// Instead of the one-verify baseline, compare on ONE real Bonafide server (the
    /// default configuration: decisions audited, receipts signed) a verify with a
    /// consent policy and a spend (`policy-spend`: action, resource, amount 0.01 USD,
    /// charged to the policy's budget) against a verify of a token without a policy
    /// (`no-policy`), both with a receiver key. Goal: policy-spend ≥ 0.8× no-policy
    /// throughput, p99 of both recorded. Afterwards the budget spent must equal
    /// 0.01 USD × the allowed spends answered (checked with `POST /v1/simulate`).
    #[arg(long, conflicts_with_all = ["breakdown", "compare_audit"])]
    compare_policy: bool,
    /// Instead of the one-verify baseline, compare on ONE real Bonafide server (the
    /// default configuration, EdDSA registry key) the verify of a token the issuer
    /// signed with its own registered key (`issuer-signed`: an Ed25519 key generated
    /// here, its public JWK registered with `POST /v1/issuer/keys`) against the verify
    /// of the same agent's registry-signed token (`registry-signed`), same request
    /// shape. Goal: registry-signed / issuer-signed throughput ≤ 1.05×; the server CPU
    /// per request ratio is reported beside it.
    #[arg(long, conflicts_with_all = ["breakdown", "compare_audit", "compare_policy"])]
    compare_issuer_signed: bool,
    /// Measurement only, with `--compare-issuer-signed`: run the server with verify
    /// decisions not audited (`Config { audit_verify: false }`, as `serve
    /// --no-audit-verify`), so that the audit log's group commit, which dominates
    /// latency, does not hide a per-request difference. Not a deployment setting to
    /// judge the goal by alone.
    #[arg(long, requires = "compare_issuer_signed")]
    unaudited: bool,
    /// Instead of the one-verify baseline, compare on ONE real Bonafide server (the
    /// default configuration: decisions audited) `POST /v1/agents/{id}/verify-action`
    /// of an action signed by the agent's own Ed25519 key (registered as its
    /// `public_key`; a fresh nonce and signature per request, pre-computed before the
    /// runs) against `POST /v1/verify` of the same agent's token (`verify`). Every
    /// answer must be 200 and allowed. No goal: throughput, p50/p99 and the ratio are
    /// recorded.
    #[arg(long, conflicts_with_all = ["breakdown", "compare_audit", "compare_policy", "compare_issuer_signed"])]
    compare_verify_action: bool,
    /// Directory in which the temporary data dir (SQLite store) is created. Default:
    /// the system temp dir. With `--compare-audit`, `--compare-policy` or
    /// `--compare-issuer-signed` (audited) it must be on a real disk: on a tmpfs fsync
    /// is free and the audit log looks cheaper than it is.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

// The same allocator as the `bonafide` binary, for both targets in this process.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bonafide-load: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args = Args::parse();
    let mode = if args.compare_audit {
        Mode::CompareAudit
    } else if args.compare_policy {
        Mode::ComparePolicy
    } else if args.compare_issuer_signed {
        Mode::CompareIssuerSigned
    } else if args.compare_verify_action {
        Mode::CompareVerifyAction
    } else {
        Mode::Baseline
    };
    let connections = args.connections.unwrap_or(mode.default_connections());
    ensure!(
        (1..=4096).contains(&connections),
        "--connections must be 1..=4096"
    );
    ensure!(args.seconds >= 1, "--seconds must be at least 1");
    ensure!(args.rounds >= 1, "--rounds must be at least 1");
    ensure!(args.slice_ms >= 10, "--slice-ms must be at least 10");
    let command = command_line();
    let date = bonafide_server::time::rfc3339_s(bonafide_server::time::now_ms() / 1000);
    let machine = Machine::read();

    // Servers: one multi-thread runtime, default worker count (= CPUs).
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("server")
        .build()
        .context("building the server runtime")?;
    let server_workers = server_rt.metrics().num_workers();
    // `--compare-verify-action`: signed bodies for every request of every round at
    // up to ACTION_BODIES_PER_S (capped).
    let action_bodies = usize::try_from(args.warmup + args.seconds)
        .unwrap_or(usize::MAX)
        .saturating_mul(args.rounds)
        .saturating_mul(ACTION_BODIES_PER_S)
        .min(ACTION_BODIES_MAX);
    let servers = server_rt.block_on(start_servers(
        mode,
        args.breakdown,
        args.unaudited,
        args.data_dir.as_deref(),
        action_bodies,
    ))?;
    let tokens = servers.tokens.clone();
    let actions = servers.actions.clone();
    let data_dir = servers.data_dir();

    // Load generator: a single-threaded runtime on this thread.
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the client runtime")?;
    let warmup = Duration::from_secs(args.warmup);
    let window = Duration::from_secs(args.seconds);
    let targets = servers.targets.clone();
    let mut runs = Vec::new();
    let slice = Duration::from_millis(args.slice_ms);
    let load: Result<()> = client_rt.block_on(async {
        for round in 1..=args.rounds {
            let groups: Vec<&[Target]> = if args.interleave {
                vec![&targets[..]]
            } else {
                targets.chunks(1).collect()
            };
            for group in groups {
                let names: Vec<&str> = group.iter().map(|t| t.name).collect();
                eprintln!(
                    "round {round}/{}: {} ({} connections each, {}s warm-up + {}s{})…",
                    args.rounds,
                    names.join(" + "),
                    connections,
                    args.warmup,
                    args.seconds,
                    if group.len() > 1 {
                        format!(", interleaved in {} ms slices", args.slice_ms)
                    } else {
                        String::new()
                    }
                );
                let group_runs =
                    run_group(group, round, connections, warmup, window, slice).await?;
                for r in group_runs {
                    eprintln!(
                        "  {}: {:.0} req/s, p50 {} µs, p99 {} µs, errors {}",
                        r.target, r.throughput_rps, r.latency_us.p50, r.latency_us.p99, r.errors
                    );
                    runs.push(r);
                }
            }
        }
        Ok(())
    });
    drop(client_rt);
    // `--compare-policy`: read the budget back while the server still runs (only
    // after a completed load: otherwise the count means nothing).
    let budget = match (&load, &servers.policy) {
        (Ok(()), Some(policy)) => Some(server_rt.block_on(policy.final_check(&runs))),
        _ => None,
    };
    // Stop the servers whatever happened to the load.
    let stopped = server_rt.block_on(servers.stop());
    load?;
    stopped?;
    let budget = budget.transpose()?;

    let report = Report::new(
        mode,
        date,
        command,
        machine,
        Settings {
            connections,
            warmup_s: args.warmup,
            seconds: args.seconds,
            rounds: args.rounds,
            schedule: {
                let names: Vec<&str> = targets.iter().map(|t| t.name).collect();
                if args.interleave {
                    format!(
                        "interleaved: each round opens every target's connections at once and \
                         lets one target send at a time ({}), switching every {} ms through \
                         warm-up and window; throughput is over each target's share of the \
                         window",
                        names.join(", "),
                        args.slice_ms
                    )
                } else {
                    format!(
                        "sequential: each round loads {} one after the other, each alone with \
                         fresh connections and its own warm-up",
                        names.join(", then ")
                    )
                }
            },
            server_runtime: format!("tokio multi-thread, {server_workers} workers"),
            client_runtime: "tokio current-thread (1 thread), hyper 1 HTTP/1.1 client \
                             connection per task, closed loop"
                .to_owned(),
            selection: "best throughput of each target over the rounds".to_owned(),
            logging: "off: no tracing subscriber installed, so the server's access-log \
                      `tracing::info!` callsites are disabled"
                .to_owned(),
            data_dir,
        },
        runs,
        budget,
    )?
    .with_tokens(tokens)
    .with_actions(actions.as_deref().map(ActionBodies::info));
    report.print();
    if let Some(path) = &args.json {
        write_json(path, &report)?;
        println!("\nJSON written to {}", path.display());
    }
    let errors: u64 = report.runs.iter().map(|r| r.errors).sum();
    if errors > 0 {
        let first = report
            .runs
            .iter()
            .find_map(|r| r.first_error.clone())
            .unwrap_or_default();
        bail!("{errors} failed requests (first: {first}); the figures above are not valid");
    }
    if let Some(b) = &report.budget
        && !b.consistent
    {
        bail!(
            "the budget spent {} {CURRENCY}, but the harness counted {} allowed spends of \
             {SPEND} {CURRENCY} = {} {CURRENCY}; the figures above are not valid",
            b.spent,
            b.spends_counted,
            b.expected_spent
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Servers

/// One endpoint to load.
#[derive(Debug, Clone)]
struct Target {
    name: &'static str,
    addr: SocketAddr,
    path: &'static str,
    body: Bytes,
    /// Whether the answer must also say `"allowed": true`.
    expect_allowed: bool,
    /// Whether the answer must carry an `audit_index` (`Some(true)`), must not
    /// (`Some(false)`), or either.
    expect_audit_index: Option<bool>,
    /// Sent as `X-API-Key` (a receiver's key), when set.
    api_key: Option<HeaderValue>,
    /// Whether the answer must carry a `receipt_id`.
    expect_receipt: bool,
    /// Whether the answer must carry `remaining`: each allowed answer charged a
    /// budget, and the run counts them ([`Run::spends`]).
    expect_remaining: bool,
    /// `--compare-verify-action`: when set, each request's body is the next one of
    /// these (a fresh nonce and signature each) instead of `body`, and the answer is a
    /// verify-action answer (no `valid` member; `allowed` must be true).
    bodies: Option<Arc<ActionBodies>>,
}

/// A spawned server and how to stop it.
#[derive(Debug)]
struct Running {
    name: &'static str,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), String>>,
}

#[derive(Debug)]
struct Servers {
    /// In the order they are loaded each round.
    targets: Vec<Target>,
    running: Vec<Running>,
    /// The store's data dir, removed on drop.
    dir: tempfile::TempDir,
    /// `--compare-policy`: the budget the `policy-spend` target charges.
    policy: Option<PolicyBudget>,
    /// `--compare-issuer-signed`: the two tokens loaded.
    tokens: Option<SignedPair>,
    /// `--compare-verify-action`: the signed bodies loaded.
    actions: Option<Arc<ActionBodies>>,
}

/// `--compare-issuer-signed`: what the two tokens are.
#[derive(Debug, Clone, Serialize)]
struct SignedPair {
    /// Length of the registry-signed token, bytes.
    registry_signed_bytes: usize,
    /// Length of the issuer-signed token, bytes.
    issuer_signed_bytes: usize,
    /// `kid` of the registry's signing key (its token's header).
    registry_kid: String,
    /// `kid` of the issuer's registered key (RFC 7638 thumbprint).
    issuer_kid: String,
    /// The issuer id: the issuer-signed token's `iss`.
    issuer_id: String,
    /// The agent both tokens are for.
    agent_id: String,
    /// Whether the server audits verify decisions (false with `--unaudited`).
    audit_verify: bool,
}

impl Servers {
    /// The data dir and the file system it is on.
    fn data_dir(&self) -> String {
        let path = self.dir.path();
        format!("{} ({})", path.display(), file_system(path))
    }

    async fn stop(self) -> Result<()> {
        for Running { name, stop, task } in self.running {
            // The receiver is gone only if the server already stopped.
            let _ = stop.send(());
            match tokio::time::timeout(Duration::from_secs(10), task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => bail!("{name} server failed: {e}"),
                Ok(Err(e)) => bail!("{name} server task: {e}"),
                Err(_) => bail!("{name} server did not stop within 10 s"),
            }
        }
        Ok(())
    }
}

/// Serves `app` on 127.0.0.1:0 until stopped.
async fn spawn_axum(name: &'static str, app: Router) -> Result<(SocketAddr, Running)> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .with_context(|| format!("binding the {name} server"))?;
    let addr = listener
        .local_addr()
        .with_context(|| format!("{name} server address"))?;
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
            .map_err(|e| e.to_string())
    });
    Ok((addr, Running { name, stop, task }))
}

/// Public URL of the registry in `--compare-audit`: both servers issue and accept
/// tokens with this `iss` (by default it would be each one's own address).
const PUBLIC_URL: &str = "https://registry.bench.example";

/// Starts a real Bonafide server on 127.0.0.1:0.
async fn spawn_bonafide(
    name: &'static str,
    config: Config,
    store: Arc<dyn Store>,
) -> Result<(SocketAddr, Running, Arc<bonafide_server::AppState>)> {
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let server = Server::bind(loopback, config, store)
        .await
        .with_context(|| format!("binding the {name} server"))?;
    let addr = server
        .local_addr()
        .with_context(|| format!("{name} server address"))?;
    let state = server.state();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .run(async {
                let _ = rx.await;
            })
            .await
            .map_err(|e| e.to_string())
    });
    Ok((addr, Running { name, stop, task }, state))
}

async fn start_servers(
    mode: Mode,
    breakdown: bool,
    unaudited: bool,
    parent: Option<&Path>,
    action_bodies: usize,
) -> Result<Servers> {
    // The real server: temp data dir, EdDSA signing key, one admin key.
    let dir = match parent {
        Some(p) => tempfile::tempdir_in(p),
        None => tempfile::tempdir(),
    }
    .context("creating a temp data dir")?;
    let store = SqliteStore::open(dir.path())
        .await
        .context("opening the SQLite store")?;
    let mut random = [0u8; 20];
    aws_lc_rs::rand::fill(&mut random).map_err(|_| anyhow!("no randomness for the admin key"))?;
    let admin = ApiKey::from_random(KeyKind::Admin, random);
    store
        .add_admin_key(
            &admin.hash(),
            0,
            &bonafide_server::audit::record(
                &bonafide_core::audit::AuditEntry::new(
                    bonafide_core::audit::EventType::KeyAdded,
                    0,
                    bonafide_core::audit::Actor::Registry,
                ),
                None,
                None,
            )?,
        )
        .await
        .context("adding the admin key")?;
    let store: Arc<dyn Store> = Arc::new(store);
    let config = Config {
        signing_alg: Algorithm::EdDSA,
        public_url: match mode {
            Mode::Baseline
            | Mode::ComparePolicy
            | Mode::CompareIssuerSigned
            | Mode::CompareVerifyAction => String::new(),
            Mode::CompareAudit => PUBLIC_URL.to_owned(),
        },
        // Default: every verify decision is audited. `--unaudited` (measurement only,
        // `--compare-issuer-signed`) turns that off.
        audit_verify: !unaudited,
        ..Config::default()
    };
    let (subject_name, audited_subject) = match mode {
        Mode::Baseline => ("bonafide", config.audit_verify),
        Mode::CompareAudit => ("audited", true),
        Mode::ComparePolicy => (POLICY_SUBJECT, config.audit_verify),
        Mode::CompareIssuerSigned => (ISSUER_SIGNED, config.audit_verify),
        Mode::CompareVerifyAction => (VERIFY_ACTION, config.audit_verify),
    };
    let (bonafide_addr, bonafide_running, state) =
        spawn_bonafide(subject_name, config.clone(), Arc::clone(&store)).await?;

    // Issuer, agent, token, public key — over HTTP, as a deployment would.
    let base = format!("http://{bonafide_addr}");
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .context("building the setup HTTP client")?;
    let (token, public_key, issuer_key, issuer_id, agent_id) = {
        let issuer = call(
            &http,
            &format!("{base}/v1/issuers"),
            Some(admin.expose_secret()),
            Some(json!({"name": "apexwealth.com"})),
            201,
        )
        .await?;
        let issuer_key = str_member(&issuer, "api_key")?;
        let issuer_id = str_member(&issuer, "issuer_id")?;
        let agent = call(
            &http,
            &format!("{base}/v1/agents/register"),
            Some(&issuer_key),
            Some(json!({
                "name": "PortfolioBot",
                "description": "Reads portfolio data",
                "scopes": GRANTED,
            })),
            201,
        )
        .await?;
        let token = str_member(&agent, "token")?;
        let agent_id = str_member(&agent, "agent_id")?;
        let jwks = call(
            &http,
            &format!("{base}/.well-known/jwks.json"),
            None,
            None,
            200,
        )
        .await?;
        let public_key = ed25519_key_from_jwks(&jwks, &token)?;
        (token, public_key, issuer_key, issuer_id, agent_id)
    };
    // One checked verify through the real endpoint before loading it.
    check_bonafide(&http, &base, &token, audited_subject).await?;
    ensure!(
        baseline_valid(&public_key, &token),
        "the JWKS key does not verify the registry's token"
    );

    let bonafide_body = Bytes::from(
        serde_json::to_vec(&json!({
            "token": token,
            "scopes_requested": [REQUESTED],
        }))
        .context("encoding the Bonafide request")?,
    );
    let baseline_body = Bytes::from(
        serde_json::to_vec(&json!({ "token": token })).context("encoding the baseline request")?,
    );
    let mut targets = Vec::new();
    let mut running = Vec::new();
    let mut subject = Target {
        name: subject_name,
        addr: bonafide_addr,
        path: "/v1/verify",
        body: bonafide_body.clone(),
        expect_allowed: true,
        expect_audit_index: (mode == Mode::CompareAudit).then_some(true),
        api_key: None,
        expect_receipt: false,
        expect_remaining: false,
        bodies: None,
    };
    let mut policy = None;
    let mut tokens = None;
    let mut actions = None;

    match mode {
        Mode::Baseline => {
            // The baseline: one route, one Ed25519 verify.
            let app = Router::new()
                .route("/verify", post(baseline_verify))
                .with_state(Arc::new(public_key));
            let (addr, handle) = spawn_axum("baseline", app).await?;
            running.push(handle);
            targets.push(Target {
                name: "baseline",
                addr,
                path: "/verify",
                body: baseline_body,
                expect_allowed: false,
                expect_audit_index: None,
                api_key: None,
                expect_receipt: false,
                expect_remaining: false,
                bodies: None,
            });
        }
        Mode::CompareAudit => {
            // The same registry (same store, keys, token) with verify decisions not
            // audited, as `serve --no-audit-verify`. Bound after the setup so it loads
            // the signing key the first server made. Its checkpoint signer is idle: on
            // its own, with audit_verify off, the log would not grow under this load.
            let config = Config {
                audit_verify: false,
                checkpoint_interval: Duration::from_secs(3600),
                ..config
            };
            let (addr, handle, _) = spawn_bonafide("unaudited", config, Arc::clone(&store)).await?;
            running.push(handle);
            check_bonafide(&http, &format!("http://{addr}"), &token, false).await?;
            targets.push(Target {
                name: "unaudited",
                addr,
                path: "/v1/verify",
                body: bonafide_body.clone(),
                expect_allowed: true,
                expect_audit_index: Some(false),
                api_key: None,
                expect_receipt: false,
                expect_remaining: false,
                bodies: None,
            });
        }
        Mode::ComparePolicy => {
            // A receiver (spends need its key) and an agent with a consent policy,
            // on the same server; the plain agent above is the baseline's.
            let receiver = call(
                &http,
                &format!("{base}/v1/receivers"),
                Some(admin.expose_secret()),
                Some(json!({"name": "shop.bench.example"})),
                201,
            )
            .await?;
            let receiver_key = str_member(&receiver, "api_key")?;
            let agent = call(
                &http,
                &format!("{base}/v1/agents/register"),
                Some(&issuer_key),
                Some(json!({
                    "name": "PaymentsBot",
                    "description": "Pays merchants within its monthly budget",
                    "scopes": GRANTED,
                    "policy": bench_policy(),
                })),
                201,
            )
            .await?;
            ensure!(
                agent["policy_hash"].is_string(),
                "the agent registered with a policy has no `policy_hash`: {agent}"
            );
            let policy_token = str_member(&agent, "token")?;
            let plain = json!({"token": token, "scopes_requested": [REQUESTED]});
            let spend = spend_request(&policy_token);
            let header = HeaderValue::from_str(&receiver_key)
                .context("the receiver key is not a header value")?;

            // One checked request of each, with the receiver key, before loading.
            check_decision(&http, &base, &receiver_key, &plain, false).await?;
            let first = check_decision(&http, &base, &receiver_key, &spend, true).await?;
            let budget = PolicyBudget {
                base: base.clone(),
                receiver_key,
                request: spend.clone(),
                cap: decimal(PER_PERIOD_CAP)?,
                amount: decimal(SPEND)?,
                setup_spends: 1,
                period_ends: str_member(&first["remaining"], "period_ends")?,
            };
            // The first spend of a fresh budget leaves exactly cap − amount.
            let left = decimal(&str_member(&first["remaining"], "amount")?)?;
            ensure!(
                left == budget.cap - budget.amount,
                "the first spend of {SPEND} {CURRENCY} left `remaining` {left}, not {}: {first}",
                budget.cap - budget.amount
            );
            let before = budget.simulate(&http).await?;
            ensure!(
                before.spent == budget.amount,
                "after one spend of {SPEND} {CURRENCY}, POST /v1/simulate implies {} spent \
                 (remaining {}, simulated spend {}allowed)",
                before.spent,
                before.remaining,
                if before.allowed { "" } else { "not " }
            );

            targets.push(Target {
                name: "no-policy",
                addr: bonafide_addr,
                path: "/v1/verify",
                body: Bytes::from(
                    serde_json::to_vec(&plain).context("encoding the no-policy request")?,
                ),
                expect_allowed: true,
                expect_audit_index: Some(true),
                api_key: Some(header.clone()),
                expect_receipt: true,
                expect_remaining: false,
                bodies: None,
            });
            subject.body = Bytes::from(
                serde_json::to_vec(&spend).context("encoding the policy-spend request")?,
            );
            subject.expect_audit_index = Some(true);
            subject.api_key = Some(header);
            subject.expect_receipt = true;
            subject.expect_remaining = true;
            policy = Some(budget);
        }
        Mode::CompareIssuerSigned => {
            // The issuer's own Ed25519 key: the private half stays in this process,
            // the public JWK is registered over HTTP.
            let signing = SigningKey::generate(Algorithm::EdDSA)
                .map_err(|e| anyhow!("generating the issuer's Ed25519 key: {e}"))?;
            // With the proof of possession the registry requires: the key signs
            // `bonafide-key-proof+jwt` for this issuer at this registry.
            let proof = bonafide_core::key_proof::sign(
                &signing,
                &bonafide_core::key_proof::KeyProofClaims {
                    iss: issuer_id.clone(),
                    aud: state.config.public_url.clone(),
                    iat: bonafide_server::time::now_ms() / 1000,
                    jkt: signing.kid().to_owned(),
                    jti: None,
                },
            )
            .map_err(|e| anyhow!("signing the key proof: {e}"))?;
            let added = call(
                &http,
                &format!("{base}/v1/issuer/keys"),
                Some(&issuer_key),
                Some(json!({ "jwk": signing.verifying_key().jwk(), "proof": proof })),
                201,
            )
            .await?;
            ensure!(
                added["kid"] == signing.kid() && added["alg"] == "EdDSA",
                "POST /v1/issuer/keys answered another kid or alg than the key's \
                 ({}, EdDSA): {added}",
                signing.kid()
            );
            let issuer_token = issuer_signed_token(&signing, &token, &issuer_id, &agent_id)?;
            let issuer_name = "apexwealth.com";
            // One checked request of each through the real endpoint before loading:
            // both valid and allowed, for the same agent, shown with the issuer's
            // registered name.
            for (what, t) in [(REGISTRY_SIGNED, &token), (ISSUER_SIGNED, &issuer_token)] {
                let answer = call(
                    &http,
                    &format!("{base}/v1/verify"),
                    None,
                    Some(json!({"token": t, "scopes_requested": [REQUESTED]})),
                    200,
                )
                .await?;
                ensure!(
                    answer["valid"] == true && answer["allowed"] == true,
                    "{what}: the check request was not valid and allowed: {answer}"
                );
                ensure!(
                    answer["agent"]["id"] == agent_id.as_str()
                        && answer["agent"]["issuer"] == issuer_name,
                    "{what}: the answer is not about agent {agent_id} of {issuer_name}: {answer}"
                );
                ensure!(
                    answer["audit_index"].is_u64() == audited_subject,
                    "{what}: `audit_index` {} but verify decisions are {}audited: {answer}",
                    if answer["audit_index"].is_u64() {
                        "present"
                    } else {
                        "absent"
                    },
                    if audited_subject { "" } else { "not " }
                );
            }
            tokens = Some(SignedPair {
                registry_signed_bytes: token.len(),
                issuer_signed_bytes: issuer_token.len(),
                registry_kid: header_kid(&token)?,
                issuer_kid: signing.kid().to_owned(),
                issuer_id: issuer_id.clone(),
                agent_id: agent_id.clone(),
                audit_verify: audited_subject,
            });
            targets.push(Target {
                name: REGISTRY_SIGNED,
                addr: bonafide_addr,
                path: "/v1/verify",
                body: bonafide_body.clone(),
                expect_allowed: true,
                expect_audit_index: Some(audited_subject),
                api_key: None,
                expect_receipt: false,
                expect_remaining: false,
                bodies: None,
            });
            subject.body = Bytes::from(
                serde_json::to_vec(&json!({
                    "token": issuer_token,
                    "scopes_requested": [REQUESTED],
                }))
                .context("encoding the issuer-signed request")?,
            );
            subject.expect_audit_index = Some(audited_subject);
        }
        Mode::CompareVerifyAction => {
            // An agent with its own Ed25519 key, the public JWK registered with it;
            // the private half stays in this process.
            let agent_key = SigningKey::generate(Algorithm::EdDSA)
                .map_err(|e| anyhow!("generating the agent's Ed25519 key: {e}"))?;
            let agent = call(
                &http,
                &format!("{base}/v1/agents/register"),
                Some(&issuer_key),
                Some(json!({
                    "name": "SignerBot",
                    "description": "Signs its actions with its own key",
                    "scopes": GRANTED,
                    "public_key": agent_key.verifying_key().jwk(),
                })),
                201,
            )
            .await?;
            let signer_id = str_member(&agent, "agent_id")?;
            // The baseline verifies a bearer token of an agent with the same scopes and
            // no key: a token bound to a key needs a proof of possession per request
            // (PROOF_REQUIRED), which would make the baseline something else.
            let bearer = call(
                &http,
                &format!("{base}/v1/agents/register"),
                Some(&issuer_key),
                Some(json!({
                    "name": "BearerBot",
                    "description": "Presents a bearer token",
                    "scopes": GRANTED,
                })),
                201,
            )
            .await?;
            let signer_token = str_member(&bearer, "token")?;
            let path: &'static str =
                Box::leak(format!("/v1/agents/{signer_id}/verify-action").into_boxed_str());
            let verify_body = json!({"token": signer_token, "scopes_requested": [REQUESTED]});
            // One checked verify of the token and one signed action (then its replay,
            // which must be refused) through the real endpoints before loading.
            let answer = call(
                &http,
                &format!("{base}/v1/verify"),
                None,
                Some(verify_body.clone()),
                200,
            )
            .await?;
            ensure!(
                answer["valid"] == true
                    && answer["allowed"] == true
                    && answer["audit_index"].is_u64() == audited_subject,
                "verify: the check request was not valid and allowed (audited: \
                 {audited_subject}): {answer}"
            );
            let mut prefix = [0u8; 9];
            aws_lc_rs::rand::fill(&mut prefix).map_err(|_| anyhow!("no randomness"))?;
            let signer = ActionSigner {
                key: agent_key,
                agent_id: signer_id.clone(),
                nonce_prefix: b64::encode(&prefix),
            };
            let check: Value = serde_json::from_slice(&signer.body(u64::MAX, now_s())?)
                .context("decoding the check action")?;
            let answer = call(
                &http,
                &format!("{base}{path}"),
                None,
                Some(check.clone()),
                200,
            )
            .await?;
            ensure!(
                answer["allowed"] == true && answer["audit_index"].is_u64() == audited_subject,
                "verify-action: the signed check action was not allowed: {answer}"
            );
            let replay = call(&http, &format!("{base}{path}"), None, Some(check), 200).await?;
            ensure!(
                answer_refused(&replay, "REPLAY"),
                "verify-action: the replayed check action was not refused as REPLAY: {replay}"
            );
            let bodies = Arc::new(ActionBodies::build(signer, action_bodies)?);
            eprintln!(
                "pre-computed {} signed verify-action bodies in {:.1} s",
                bodies.pool.len(),
                bodies.build_s
            );
            targets.push(Target {
                name: VERIFY,
                addr: bonafide_addr,
                path: "/v1/verify",
                body: Bytes::from(
                    serde_json::to_vec(&verify_body).context("encoding the verify request")?,
                ),
                expect_allowed: true,
                expect_audit_index: Some(audited_subject),
                api_key: None,
                expect_receipt: false,
                expect_remaining: false,
                bodies: None,
            });
            subject.path = path;
            subject.body = Bytes::new();
            subject.expect_audit_index = Some(audited_subject);
            subject.bodies = Some(Arc::clone(&bodies));
            actions = Some(bodies);
        }
    }

    if breakdown {
        let app = Router::new()
            .route("/v1/verify", post(check_verify))
            .with_state(Arc::clone(&state));
        let (addr, handle) = spawn_axum("check", app).await?;
        running.push(handle);
        targets.push(Target {
            name: "check",
            addr,
            path: "/v1/verify",
            body: bonafide_body.clone(),
            expect_allowed: true,
            expect_audit_index: None,
            api_key: None,
            expect_receipt: false,
            expect_remaining: false,
            bodies: None,
        });
        let app = Router::new()
            .route(
                "/v1/verify",
                post(bonafide_server::routes::verify::verify_post),
            )
            .with_state(Arc::clone(&state));
        let (addr, handle) = spawn_axum("handler", app).await?;
        running.push(handle);
        targets.push(Target {
            name: "handler",
            addr,
            path: "/v1/verify",
            body: bonafide_body.clone(),
            expect_allowed: true,
            expect_audit_index: None,
            api_key: None,
            expect_receipt: false,
            expect_remaining: false,
            bodies: None,
        });
    }

    targets.push(subject);
    running.push(bonafide_running);
    Ok(Servers {
        targets,
        running,
        dir,
        policy,
        tokens,
        actions,
    })
}

/// Unix seconds now.
fn now_s() -> i64 {
    bonafide_server::time::now_ms() / 1000
}

/// Whether a verify-action answer refused with exactly `code`.
fn answer_refused(answer: &Value, code: &str) -> bool {
    answer["allowed"] == false && answer["reasons"] == json!([code])
}

/// `--compare-verify-action`: signs actions as the agent would.
#[derive(Debug)]
struct ActionSigner {
    key: SigningKey,
    agent_id: String,
    /// Random, so that nonces differ from any earlier run's on the same store.
    nonce_prefix: String,
}

impl ActionSigner {
    /// The body of `POST /v1/agents/{id}/verify-action` for action [`REQUESTED`] on
    /// [`ACTION_RESOURCE`] at `timestamp`, nonce `{prefix}-{n}`, signed over
    /// `{agent_id}:{action}:{resource}:{timestamp}:{nonce}` (standard padded base64).
    fn body(&self, n: u64, timestamp: i64) -> Result<Bytes> {
        let nonce = format!("{}-{n}", self.nonce_prefix);
        let message = format!(
            "{}:{REQUESTED}:{ACTION_RESOURCE}:{timestamp}:{nonce}",
            self.agent_id
        );
        let sig = self
            .key
            .sign(message.as_bytes())
            .map_err(|e| anyhow!("signing an action: {e}"))?;
        let body = json!({
            "action": REQUESTED,
            "resource": ACTION_RESOURCE,
            "timestamp": timestamp,
            "nonce": nonce,
            "signature": standard_base64(&sig),
        });
        Ok(Bytes::from(
            serde_json::to_vec(&body).context("encoding a verify-action body")?,
        ))
    }
}

/// Standard padded base64 (`+`, `/`, `=`) of `bytes`.
fn standard_base64(bytes: &[u8]) -> String {
    let mut s: String = b64::encode(bytes)
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            other => other,
        })
        .collect();
    while !s.len().is_multiple_of(4) {
        s.push('=');
    }
    s
}

/// `--compare-verify-action`: the bodies the `verify-action` target sends, one per
/// request, each with a fresh nonce: pre-computed before the runs (so the load
/// generator does no signing in the window), then, if they run out, signed by the
/// load generator per request (counted).
#[derive(Debug)]
struct ActionBodies {
    signer: ActionSigner,
    pool: Vec<Bytes>,
    /// Seconds spent pre-computing `pool`.
    build_s: f64,
    /// Timestamp of the pre-computed bodies.
    pool_timestamp: i64,
    /// Bodies handed out so far (pool first).
    next: AtomicU64,
    /// Bodies signed during the load because the pool ran out.
    signed_live: AtomicU64,
}

impl ActionBodies {
    /// Pre-computes `n` signed bodies, timestamp now, on every CPU.
    fn build(signer: ActionSigner, n: usize) -> Result<Self> {
        let started = std::time::Instant::now();
        let timestamp = now_s();
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let chunk = n.div_ceil(threads).max(1);
        let parts: Vec<Result<Vec<Bytes>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..n)
                .step_by(chunk)
                .map(|from| {
                    let signer = &signer;
                    let to = (from + chunk).min(n);
                    scope.spawn(move || {
                        (from..to)
                            .map(|i| signer.body(i as u64, timestamp))
                            .collect::<Result<Vec<Bytes>>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("a signing thread panicked")))
                })
                .collect()
        });
        let mut pool = Vec::with_capacity(n);
        for part in parts {
            pool.extend(part?);
        }
        Ok(ActionBodies {
            signer,
            pool,
            build_s: started.elapsed().as_secs_f64(),
            pool_timestamp: timestamp,
            next: AtomicU64::new(0),
            signed_live: AtomicU64::new(0),
        })
    }

    /// The next body: a pre-computed one while they last, else one signed now.
    fn next_body(&self) -> Result<Bytes, String> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        if let Some(body) = usize::try_from(i).ok().and_then(|i| self.pool.get(i)) {
            return Ok(body.clone());
        }
        self.signed_live.fetch_add(1, Ordering::Relaxed);
        self.signer
            .body(i, now_s())
            .map_err(|e| format!("signing: {e}"))
    }

    fn info(&self) -> ActionInfo {
        let used = self.next.load(Ordering::Relaxed);
        ActionInfo {
            agent_id: self.signer.agent_id.clone(),
            action: REQUESTED,
            resource: ACTION_RESOURCE,
            pool_bodies: self.pool.len(),
            pool_build_s: self.build_s,
            pool_timestamp: self.pool_timestamp,
            bodies_sent: used,
            signed_live: self.signed_live.load(Ordering::Relaxed),
        }
    }
}

/// `--compare-verify-action`: what the `verify-action` target sent.
#[derive(Debug, Clone, Serialize)]
struct ActionInfo {
    agent_id: String,
    action: &'static str,
    resource: &'static str,
    /// Signed bodies pre-computed before the runs.
    pool_bodies: usize,
    /// Seconds that took (all CPUs, before any run).
    pool_build_s: f64,
    /// Their `timestamp` (Unix seconds).
    pool_timestamp: i64,
    /// Bodies sent (warm-up included; the setup's check excluded).
    bodies_sent: u64,
    /// Of those, signed by the load generator during the load (pool exhausted).
    signed_live: u64,
}

/// `--compare-issuer-signed`: a token for the agent of `registry_token`, signed with
/// the issuer's own key: `iss` and `agent.issuer` the issuer id, a fresh `jti`,
/// `iat`/`nbf` now, and the registry token's agent name, description, scopes and
/// expiry (so both tokens carry the same grant for the same time; any other claim is
/// the registry token's too).
fn issuer_signed_token(
    key: &SigningKey,
    registry_token: &str,
    issuer_id: &str,
    agent_id: &str,
) -> Result<String> {
    let payload = registry_token
        .split('.')
        .nth(1)
        .ok_or_else(|| anyhow!("the registry's token is not a compact JWS"))?;
    let registry: AgentClaims = serde_json::from_slice(
        &b64::decode(payload).context("the registry's token payload is not base64url")?,
    )
    .context("the registry's token payload is not agent claims")?;
    ensure!(
        registry.sub.as_str() == agent_id,
        "the registry's token is for {}, not the registered agent {agent_id}",
        registry.sub
    );
    let mut random = [0u8; 16];
    aws_lc_rs::rand::fill(&mut random).map_err(|_| anyhow!("no randomness for the jti"))?;
    let now = bonafide_server::time::now_ms() / 1000;
    let claims = AgentClaims {
        iss: issuer_id.to_owned(),
        iat: now,
        nbf: Some(now),
        jti: TokenId::from_random(random),
        agent: AgentInfo {
            issuer: issuer_id.to_owned(),
            scopes: GRANTED.map(str::to_owned).to_vec(),
            ..registry.agent
        },
        scope: Some(GRANTED.join(" ")),
        ..registry
    };
    bonafide_core::token::sign(key, &claims).map_err(|e| anyhow!("signing the issuer's token: {e}"))
}

/// The `kid` of a compact JWS's header.
fn header_kid(token: &str) -> Result<String> {
    token
        .split('.')
        .next()
        .and_then(|h| b64::decode(h).ok())
        .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
        .and_then(|h| h["kid"].as_str().map(str::to_owned))
        .ok_or_else(|| anyhow!("the token's header has no `kid`"))
}

/// One verify of `token` through `base`'s real endpoint; it must be valid and allowed,
/// and carry an `audit_index` exactly when decisions are audited.
async fn check_bonafide(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    audited: bool,
) -> Result<()> {
    let check = call(
        http,
        &format!("{base}/v1/verify"),
        None,
        Some(json!({"token": token, "scopes_requested": [REQUESTED]})),
        200,
    )
    .await?;
    ensure!(
        check["valid"] == true && check["allowed"] == true,
        "{base} did not accept the registry's token: {check}"
    );
    ensure!(
        check["audit_index"].is_u64() == audited,
        "{base}: `audit_index` {} but verify decisions are {}audited: {check}",
        if check["audit_index"].is_u64() {
            "present"
        } else {
            "absent"
        },
        if audited { "" } else { "not " }
    );
    Ok(())
}

/// `--compare-policy`: the consent policy of the spending agent. No time window, so
/// its zone (and the month of its budget) is UTC.
fn bench_policy() -> Value {
    json!({
        "version": "pol.v0.2",
        "id": POLICY_ID,
        "actions": [ACTION],
        "resources": [{"type": RESOURCE_TYPE, "match": {"prefixes": ["acct/"]}}],
        "limits": {
            "per_txn": {"amount": PER_TXN, "currency": CURRENCY},
            "per_period": {"amount": PER_PERIOD_CAP, "currency": CURRENCY, "period": "month"},
        },
    })
}

/// `--compare-policy`: the `policy-spend` request (and the simulated one).
fn spend_request(token: &str) -> Value {
    json!({
        "token": token,
        "scopes_requested": [REQUESTED],
        "action": ACTION,
        "resource": {"type": RESOURCE_TYPE, "id": RESOURCE_ID},
        "amount": SPEND,
        "currency": CURRENCY,
    })
}

fn decimal(text: &str) -> Result<Decimal> {
    text.parse()
        .with_context(|| format!("`{text}` is not a decimal amount"))
}

/// `--compare-policy`: one verify through the real endpoint with the receiver key;
/// it must be valid and allowed, carry `audit_index` and `receipt_id`, and carry a
/// `remaining` in `CURRENCY` per month exactly when it is a spend. Returns the answer.
async fn check_decision(
    http: &reqwest::Client,
    base: &str,
    receiver_key: &str,
    body: &Value,
    spend: bool,
) -> Result<Value> {
    let what = if spend { POLICY_SUBJECT } else { "no-policy" };
    let url = format!("{base}/v1/verify");
    let answer = call_as_receiver(http, &url, receiver_key, body, 200).await?;
    ensure!(
        answer["valid"] == true && answer["allowed"] == true,
        "{what}: the check request was not valid and allowed: {answer}"
    );
    ensure!(
        answer["audit_index"].is_u64(),
        "{what}: the answer has no `audit_index`: {answer}"
    );
    ensure!(
        answer["receipt_id"]
            .as_str()
            .is_some_and(|r| r.starts_with("rcp_")),
        "{what}: the answer has no `receipt_id`: {answer}"
    );
    let remaining = &answer["remaining"];
    if spend {
        ensure!(
            remaining["currency"] == CURRENCY
                && remaining["period"] == "month"
                && remaining["amount"].is_string()
                && remaining["period_ends"].is_string(),
            "{what}: the answer has no monthly `remaining` in {CURRENCY}: {answer}"
        );
    } else {
        ensure!(
            remaining.is_null(),
            "{what}: a request without a policy answered a `remaining`: {answer}"
        );
    }
    Ok(answer)
}

/// `--compare-policy`: the budget the `policy-spend` target charges, and how to read
/// it back.
#[derive(Debug)]
struct PolicyBudget {
    /// The registry's base URL.
    base: String,
    /// The receiver's API key.
    receiver_key: String,
    /// The spend request, also the one simulated.
    request: Value,
    /// The policy's `per_period` amount.
    cap: Decimal,
    /// One spend.
    amount: Decimal,
    /// Spends made before the load (the setup's check).
    setup_spends: u64,
    /// `remaining.period_ends` of the setup's check: the budget's period.
    period_ends: String,
}

/// What `POST /v1/simulate` says about the budget.
#[derive(Debug)]
struct Simulated {
    /// Whether the simulated spend would be allowed.
    allowed: bool,
    /// `remaining.amount`: what would be left after the simulated spend if allowed.
    remaining: Decimal,
    /// `remaining.period_ends`.
    period_ends: String,
    /// Spent in the period so far: cap − remaining, less the simulated spend when it
    /// would be allowed.
    spent: Decimal,
}

impl PolicyBudget {
    /// `POST /v1/simulate` of the spend request: the same evaluation, nothing spent.
    async fn simulate(&self, http: &reqwest::Client) -> Result<Simulated> {
        let url = format!("{}/v1/simulate", self.base);
        let answer = call_as_receiver(http, &url, &self.receiver_key, &self.request, 200).await?;
        ensure!(
            answer["simulated"] == true,
            "POST /v1/simulate answered without `simulated: true`: {answer}"
        );
        let r = &answer["remaining"];
        ensure!(
            r["currency"] == CURRENCY && r["period"] == "month",
            "POST /v1/simulate: no monthly `remaining` in {CURRENCY}: {answer}"
        );
        let allowed = answer["allowed"] == true;
        let remaining = decimal(&str_member(r, "amount")?)?;
        let simulated_spend = if allowed { self.amount } else { Decimal::ZERO };
        Ok(Simulated {
            allowed,
            remaining,
            period_ends: str_member(r, "period_ends")?,
            spent: self.cap - remaining - simulated_spend,
        })
    }

    /// After the load: the budget spent must be `amount` × every allowed spend
    /// answer (the load's, warm-up included, and the setup's check).
    async fn final_check(&self, runs: &[Run]) -> Result<BudgetCheck> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .context("building the HTTP client")?;
        let in_load: u64 = runs.iter().filter_map(|r| r.spends).sum();
        let counted = in_load + self.setup_spends;
        let expected = self.amount * Decimal::from(counted);
        let sim = self.simulate(&http).await?;
        ensure!(
            sim.period_ends == self.period_ends,
            "the budget's month changed during the run (period ends {} at the start, {} now): \
             its spending restarted, so it cannot be checked; run again",
            self.period_ends,
            sim.period_ends
        );
        Ok(BudgetCheck {
            cap: self.cap.to_string(),
            spend: self.amount.to_string(),
            currency: CURRENCY,
            spends_in_load: in_load,
            setup_spends: self.setup_spends,
            spends_counted: counted,
            expected_spent: expected.to_string(),
            simulated_remaining: sim.remaining.to_string(),
            simulated_allowed: sim.allowed,
            spent: sim.spent.to_string(),
            period_ends: sim.period_ends,
            consistent: sim.spent == expected,
        })
    }
}

/// One setup call; fails unless the status is `want`.
async fn call(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    body: Option<Value>,
    want: u16,
) -> Result<Value> {
    let mut req = match &body {
        Some(b) => http.post(url).json(b),
        None => http.get(url),
    };
    if let Some(key) = bearer {
        req = req.bearer_auth(key);
    }
    finish(req, url, want).await
}

/// One `POST` with a receiver key in `X-API-Key`; fails unless the status is `want`.
async fn call_as_receiver(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    body: &Value,
    want: u16,
) -> Result<Value> {
    finish(
        http.post(url).header("x-api-key", key).json(body),
        url,
        want,
    )
    .await
}

async fn finish(req: reqwest::RequestBuilder, url: &str, want: u16) -> Result<Value> {
    let resp = req.send().await.with_context(|| format!("calling {url}"))?;
    let status = resp.status().as_u16();
    let text = resp
        .text()
        .await
        .with_context(|| format!("reading the answer of {url}"))?;
    ensure!(
        status == want,
        "{url}: status {status}, want {want}: {text}"
    );
    serde_json::from_str(&text).with_context(|| format!("{url}: answer is not JSON: {text}"))
}

fn str_member(v: &Value, name: &str) -> Result<String> {
    v[name]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("answer has no string `{name}`: {v}"))
}

/// The Ed25519 key that signed `token` from the registry's JWK Set (the one with the
/// token's `kid`; the set also holds the receipt key): `x`, raw 32 bytes.
fn ed25519_key_from_jwks(jwks: &Value, token: &str) -> Result<ParsedPublicKey> {
    let keys = jwks["keys"]
        .as_array()
        .ok_or_else(|| anyhow!("JWKS has no `keys` array: {jwks}"))?;
    let header = token
        .split('.')
        .next()
        .and_then(|h| b64::decode(h).ok())
        .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
        .ok_or_else(|| anyhow!("the registry's token has no readable header"))?;
    let jwk = keys
        .iter()
        .find(|k| k["kty"] == "OKP" && k["crv"] == "Ed25519" && k["kid"] == header["kid"])
        .ok_or_else(|| {
            anyhow!(
                "JWKS has no OKP/Ed25519 key with the token's kid {}: {jwks}",
                header["kid"]
            )
        })?;
    let x = jwk["x"]
        .as_str()
        .ok_or_else(|| anyhow!("Ed25519 JWK has no `x`"))?;
    let raw = b64::decode(x).context("Ed25519 JWK `x` is not base64url")?;
    ensure!(raw.len() == 32, "Ed25519 JWK `x` is {} bytes", raw.len());
    ParsedPublicKey::new(&signature::ED25519, raw)
        .map_err(|_| anyhow!("AWS-LC refused the Ed25519 public key"))
}

#[derive(Debug, Deserialize)]
struct BaselineRequest {
    token: String,
}

#[derive(Debug, Serialize)]
struct BaselineAnswer {
    valid: bool,
}

/// The floor: split, base64url-decode the signature, one Ed25519 verify. No claims.
fn baseline_valid(key: &ParsedPublicKey, token: &str) -> bool {
    let Some((signing_input, sig_b64)) = token.rsplit_once('.') else {
        return false;
    };
    let Ok(sig) = b64::decode(sig_b64) else {
        return false;
    };
    key.verify_sig(signing_input.as_bytes(), &sig).is_ok()
}

#[derive(Debug, Deserialize)]
struct CheckRequest {
    token: String,
    #[serde(default)]
    scopes_requested: Vec<String>,
}

#[derive(Debug, Serialize)]
struct CheckAnswer {
    valid: bool,
    allowed: bool,
}

/// Diagnostic (`--breakdown`): Bonafide's verification pipeline (token checks and the
/// in-memory revocation check) and the scope check, behind a bare route, with a
/// minimal answer.
async fn check_verify(
    State(state): State<Arc<bonafide_server::AppState>>,
    Json(req): Json<CheckRequest>,
) -> Json<CheckAnswer> {
    let now = bonafide_server::time::now_ms();
    match bonafide_server::token_check::check_token(
        &state,
        &req.token,
        bonafide_core::token::AudienceRule::Unnamed,
        now,
    )
    .await
    .map(bonafide_server::verdict::TokenCheck::token)
    {
        Ok(Ok(v)) => Json(CheckAnswer {
            valid: true,
            allowed: req
                .scopes_requested
                .iter()
                .all(|s| v.claims.agent.scopes.contains(s)),
        }),
        Ok(Err(_)) | Err(_) => Json(CheckAnswer {
            valid: false,
            allowed: false,
        }),
    }
}

async fn baseline_verify(
    State(key): State<Arc<ParsedPublicKey>>,
    Json(req): Json<BaselineRequest>,
) -> Json<BaselineAnswer> {
    Json(BaselineAnswer {
        valid: baseline_valid(&key, &req.token),
    })
}

// ---------------------------------------------------------------------------------
// Load generator

/// What every answer must say.
#[derive(Debug, Deserialize)]
struct Answer<'a> {
    /// Absent from verify-action answers.
    #[serde(default)]
    valid: Option<bool>,
    #[serde(default)]
    allowed: Option<bool>,
    #[serde(default)]
    audit_index: Option<u64>,
    #[serde(default, borrow)]
    receipt_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    remaining: Option<RemainingAnswer<'a>>,
}

/// `remaining` of a spend's answer (its shape; the amounts are checked at the end).
#[derive(Debug, Deserialize)]
struct RemainingAnswer<'a> {
    #[serde(borrow)]
    amount: Cow<'a, str>,
    #[serde(borrow)]
    currency: Cow<'a, str>,
}

#[derive(Debug, Default)]
struct TaskOutcome {
    /// Latency of each successful response completed in the window, µs.
    latencies: Vec<u32>,
    /// Failed requests, at any time (warm-up included).
    errors: u64,
    first_error: Option<String>,
    /// Answers that said `"allowed": true`, at any time (warm-up included), whether
    /// or not the rest of the answer was right.
    allowed_answers: u64,
}

impl TaskOutcome {
    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what);
        }
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true).context("TCP_NODELAY")?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .with_context(|| format!("HTTP/1.1 handshake with {addr}"))?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes; errors surface there.
        let _ = conn.await;
    });
    Ok(sender)
}

/// One request: whether the answer was a 200 saying `"allowed": true` (for a spend:
/// the budget was charged), and `Err` describing what was wrong with it.
async fn one_request(
    sender: &mut Sender,
    target: &Target,
    host: &HeaderValue,
) -> (bool, Result<(), String>) {
    match exchange(sender, target, host).await {
        Ok((status, body)) => check_answer(target, status, &body),
        Err(e) => (false, Err(e)),
    }
}

/// Sends `target`'s request; the status and body of the answer.
async fn exchange(
    sender: &mut Sender,
    target: &Target,
    host: &HeaderValue,
) -> Result<(hyper::StatusCode, Bytes), String> {
    let body = match &target.bodies {
        Some(bodies) => bodies.next_body()?,
        None => target.body.clone(),
    };
    let mut req = hyper::Request::new(Full::new(body));
    *req.method_mut() = hyper::Method::POST;
    *req.uri_mut() = hyper::Uri::from_static(target.path);
    req.headers_mut().insert(HOST, host.clone());
    req.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(key) = &target.api_key {
        req.headers_mut().insert(X_API_KEY, key.clone());
    }
    sender
        .ready()
        .await
        .map_err(|e| format!("connection: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading body: {e}"))?
        .to_bytes();
    Ok((status, body))
}

/// Checks an answer against what `target` expects; see [`one_request`].
fn check_answer(
    target: &Target,
    status: hyper::StatusCode,
    body: &[u8],
) -> (bool, Result<(), String>) {
    if status != hyper::StatusCode::OK {
        return (
            false,
            Err(format!(
                "status {status}: {}",
                String::from_utf8_lossy(body)
            )),
        );
    }
    let answer: Answer = match serde_json::from_slice(body) {
        Ok(a) => a,
        Err(e) => {
            return (
                false,
                Err(format!(
                    "answer is not the expected JSON ({e}): {}",
                    String::from_utf8_lossy(body)
                )),
            );
        }
    };
    (
        answer.allowed == Some(true),
        answer_ok(target, &answer, body),
    )
}

fn answer_ok(target: &Target, answer: &Answer<'_>, body: &[u8]) -> Result<(), String> {
    // A verify-action answer has no `valid`; every other must say `"valid": true`.
    let valid = target.bodies.is_some() || answer.valid == Some(true);
    if !valid || (target.expect_allowed && answer.allowed != Some(true)) {
        return Err(format!(
            "not valid/allowed: {}",
            String::from_utf8_lossy(body)
        ));
    }
    if let Some(want) = target.expect_audit_index
        && answer.audit_index.is_some() != want
    {
        return Err(format!(
            "audit_index {}: {}",
            if want { "missing" } else { "unexpected" },
            String::from_utf8_lossy(body)
        ));
    }
    if target.expect_receipt && answer.receipt_id.as_deref().is_none_or(str::is_empty) {
        return Err(format!(
            "receipt_id missing: {}",
            String::from_utf8_lossy(body)
        ));
    }
    if target.expect_remaining
        && !answer
            .remaining
            .as_ref()
            .is_some_and(|r| !r.amount.is_empty() && r.currency == CURRENCY)
    {
        return Err(format!(
            "remaining missing: {}",
            String::from_utf8_lossy(body)
        ));
    }
    Ok(())
}

const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Which target may send now, in interleaved runs; [`STOP`] ends every task.
type Gate = watch::Receiver<usize>;
const STOP: usize = usize::MAX;

/// Closed loop on one connection until `end` (or until the gate says [`STOP`]),
/// sending only while the gate names `index`; records responses completed in
/// `[start, end)`.
async fn drive(
    mut sender: Sender,
    target: Target,
    index: usize,
    mut gate: Gate,
    start: Instant,
    end: Instant,
    capacity: usize,
) -> TaskOutcome {
    let mut out = TaskOutcome {
        latencies: Vec::with_capacity(capacity),
        ..TaskOutcome::default()
    };
    let host = match HeaderValue::from_str(&target.addr.to_string()) {
        Ok(h) => h,
        Err(e) => {
            out.error(format!("host header: {e}"));
            return out;
        }
    };
    loop {
        let active = *gate.borrow_and_update();
        if active == STOP {
            break;
        }
        if active != index {
            if gate.changed().await.is_err() {
                break;
            }
            continue;
        }
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        let (allowed, result) = one_request(&mut sender, &target, &host).await;
        let t1 = Instant::now();
        if allowed {
            out.allowed_answers += 1;
        }
        match result {
            Ok(()) => {
                if t1 >= start && t1 < end {
                    let us = u32::try_from(t1.duration_since(t0).as_micros()).unwrap_or(u32::MAX);
                    out.latencies.push(us);
                }
            }
            Err(e) => {
                let dead = e.starts_with("connection:") || e.starts_with("request:");
                out.error(e);
                if dead {
                    // The connection is unusable; the run is already failed.
                    break;
                }
            }
        }
    }
    out
}

/// CPU time (ns) of this thread, and of the whole process, from `schedstat`.
fn cpu_ns() -> (Option<u64>, Option<u64>) {
    fn first_field(path: &Path) -> Option<u64> {
        std::fs::read_to_string(path)
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }
    let thread = first_field(Path::new("/proc/thread-self/schedstat"));
    let process = std::fs::read_dir("/proc/self/task").ok().map(|dir| {
        dir.filter_map(|e| e.ok())
            .filter_map(|e| first_field(&e.path().join("schedstat")))
            .sum()
    });
    (thread, process)
}

/// Busy CPU time of the whole machine (ns), from the `cpu` line of `/proc/stat`:
/// user, nice, system, irq, softirq and steal, in USER_HZ (100 on Linux) ticks.
fn machine_busy_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| f.get(i).copied().unwrap_or(0))
        .sum::<u64>();
    Some(busy.saturating_mul(10_000_000))
}

fn pct_of_core(used_ns: Option<u64>, window: Duration) -> Option<f64> {
    Some(used_ns? as f64 / window.as_nanos() as f64 * 100.0)
}

/// Server CPU per request, µs: process CPU minus the load generator's.
fn server_us_per_request(
    client_ns: Option<u64>,
    process_ns: Option<u64>,
    requests: u64,
) -> Option<f64> {
    let server = process_ns?.checked_sub(client_ns?)?;
    (requests > 0).then(|| server as f64 / 1000.0 / requests as f64)
}

/// CPU counters at one instant.
#[derive(Debug, Clone, Copy)]
struct Sample {
    client: Option<u64>,
    process: Option<u64>,
    machine: Option<u64>,
}

impl Sample {
    /// Must run on the load-generator thread (`client` is this thread's CPU).
    fn now() -> Self {
        let (client, process) = cpu_ns();
        Sample {
            client,
            process,
            machine: machine_busy_ns(),
        }
    }
}

/// CPU used between samples, summed over the intervals a target was active.
#[derive(Debug, Default, Clone, Copy)]
struct CpuUse {
    intervals: u32,
    active: Duration,
    client: Option<u64>,
    process: Option<u64>,
    machine: Option<u64>,
}

impl CpuUse {
    fn add(&mut self, from: Sample, to: Sample, active: Duration) {
        fn acc(sum: &mut Option<u64>, a: Option<u64>, b: Option<u64>, first: bool) {
            let d = b.zip(a).and_then(|(b, a)| b.checked_sub(a));
            *sum = match (first, *sum, d) {
                (true, _, d) => d,
                (false, Some(s), Some(d)) => Some(s + d),
                _ => None,
            };
        }
        let first = self.intervals == 0;
        self.intervals += 1;
        acc(&mut self.client, from.client, to.client, first);
        acc(&mut self.process, from.process, to.process, first);
        acc(&mut self.machine, from.machine, to.machine, first);
        self.active += active;
    }
}

/// Loads `targets` with `connections` connections each for a warm-up, then a measured
/// `window`. With one target it is loaded alone. With several and a `slice`, all
/// connections are open at once but only one target's connections send at a time,
/// switching every `slice` (both in warm-up and window), so every target sees the same
/// machine; each target's throughput is over the time it was active.
async fn run_group(
    targets: &[Target],
    round: usize,
    connections: usize,
    warmup: Duration,
    window: Duration,
    slice: Duration,
) -> Result<Vec<Run>> {
    let mut senders = Vec::with_capacity(targets.len());
    for target in targets {
        let mut conns = Vec::with_capacity(connections);
        for _ in 0..connections {
            conns.push(connect(target.addr).await?);
        }
        senders.push(conns);
    }
    let begin = Instant::now();
    let start = begin + warmup;
    let end = start + window;
    // Room for ~50k req/s in total without reallocating; capped per connection.
    let capacity = usize::try_from(window.as_secs().saturating_mul(50_000) / connections as u64)
        .unwrap_or(1 << 20)
        .min(1 << 20);
    let (gate_tx, gate) = watch::channel(0usize);
    let mut tasks: Vec<(usize, JoinHandle<TaskOutcome>)> = Vec::new();
    for (index, (target, conns)) in targets.iter().zip(senders).enumerate() {
        for s in conns {
            let task = drive(s, target.clone(), index, gate.clone(), start, end, capacity);
            tasks.push((index, tokio::spawn(task)));
        }
    }

    // This task runs on the client thread: switch targets, sample CPU at each switch
    // inside the window and charge it to the target that was active.
    let mut cpu = vec![CpuUse::default(); targets.len()];
    let interleaved = targets.len() > 1;
    let mut active = 0usize;
    let mut next_switch = begin + slice;
    let mut last: Option<(Instant, Sample)> = None;
    loop {
        let now = Instant::now();
        if last.is_none() && now >= start {
            last = Some((now, Sample::now()));
        }
        let at_end = now >= end;
        let switching = interleaved && now >= next_switch && !at_end;
        if (at_end || switching)
            && let Some((at, sample)) = last
        {
            let current = Sample::now();
            if let Some(c) = cpu.get_mut(active) {
                c.add(sample, current, now.min(end).duration_since(at));
            }
            last = Some((now, current));
        }
        if at_end {
            break;
        }
        if switching {
            active = (active + 1) % targets.len();
            next_switch = now + slice;
            // Receivers live as long as the tasks; none gone means nothing to do.
            let _ = gate_tx.send(active);
        }
        let mut wake = end;
        if interleaved {
            wake = wake.min(next_switch);
        }
        if last.is_none() {
            wake = wake.min(start);
        }
        tokio::time::sleep_until(wake).await;
    }
    let _ = gate_tx.send(STOP);

    let mut per_target: Vec<TaskOutcome> = targets.iter().map(|_| TaskOutcome::default()).collect();
    for (index, task) in tasks {
        let out = task.await.context("load task panicked")?;
        if let Some(t) = per_target.get_mut(index) {
            t.latencies.extend_from_slice(&out.latencies);
            t.errors += out.errors;
            t.allowed_answers += out.allowed_answers;
            if t.first_error.is_none() {
                t.first_error = out.first_error;
            }
        }
    }
    let mut runs = Vec::with_capacity(targets.len());
    for ((target, mut out), use_) in targets.iter().zip(per_target).zip(cpu) {
        out.latencies.sort_unstable();
        let requests = out.latencies.len() as u64;
        let active = if use_.intervals == 0 || use_.active.is_zero() {
            window
        } else {
            use_.active
        };
        // Everything else busy on the machine (other processes, hypervisor steal).
        let others = use_
            .machine
            .zip(use_.process)
            .map(|(m, p)| m.saturating_sub(p));
        runs.push(Run {
            target: target.name,
            round,
            measured_s: active.as_secs_f64(),
            requests,
            errors: out.errors,
            first_error: out.first_error,
            spends: target.expect_remaining.then_some(out.allowed_answers),
            throughput_rps: requests as f64 / active.as_secs_f64(),
            latency_us: Latency::from_sorted(&out.latencies),
            client_cpu_pct_of_core: pct_of_core(use_.client, active),
            process_cpu_pct_of_core: pct_of_core(use_.process, active),
            others_cpu_pct_of_core: pct_of_core(others, active),
            server_cpu_us_per_request: server_us_per_request(use_.client, use_.process, requests),
        });
    }
    Ok(runs)
}

// ---------------------------------------------------------------------------------
// Results

#[derive(Debug, Clone, Serialize)]
struct Latency {
    p50: u32,
    p90: u32,
    p99: u32,
    max: u32,
    mean: f64,
}

impl Latency {
    /// Nearest-rank percentiles of sorted samples.
    fn from_sorted(sorted: &[u32]) -> Self {
        let rank = |p: f64| -> u32 {
            if sorted.is_empty() {
                return 0;
            }
            let idx = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
            sorted
                .get(idx.saturating_sub(1).min(sorted.len() - 1))
                .copied()
                .unwrap_or(0)
        };
        let mean = if sorted.is_empty() {
            0.0
        } else {
            sorted.iter().map(|&v| f64::from(v)).sum::<f64>() / sorted.len() as f64
        };
        Latency {
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: sorted.last().copied().unwrap_or(0),
            mean,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct Run {
    target: &'static str,
    round: usize,
    /// Seconds this target was loaded in the measured window (all of it when run
    /// alone; its share of the slices when interleaved).
    measured_s: f64,
    /// Successful responses completed in the measured window.
    requests: u64,
    /// Failed requests (warm-up included). Any makes the run invalid.
    errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_error: Option<String>,
    /// Targets that spend (`policy-spend`): answers that said allowed, each of which
    /// charged the budget, at any time (warm-up included).
    #[serde(skip_serializing_if = "Option::is_none")]
    spends: Option<u64>,
    throughput_rps: f64,
    latency_us: Latency,
    /// CPU used by the load generator thread during the window, % of one core.
    client_cpu_pct_of_core: Option<f64>,
    /// CPU used by the whole process (servers + load generator), % of one core.
    process_cpu_pct_of_core: Option<f64>,
    /// CPU used by everything else on the machine during the window (other processes,
    /// hypervisor steal), % of one core. High values mean the run was disturbed.
    others_cpu_pct_of_core: Option<f64>,
    /// Server CPU time per request, µs (process minus load generator, over the window).
    server_cpu_us_per_request: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpus: usize,
    cpu_model: String,
    kernel: String,
}

impl Machine {
    fn read() -> Self {
        let cpus = std::thread::available_parallelism().map_or(0, usize::from);
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| format!("Linux {}", s.trim()))
            .unwrap_or_else(|_| std::env::consts::OS.to_owned());
        Machine {
            cpus,
            cpu_model,
            kernel,
        }
    }
}

#[derive(Debug, Serialize)]
struct Settings {
    connections: usize,
    warmup_s: u64,
    seconds: u64,
    rounds: usize,
    schedule: String,
    server_runtime: String,
    client_runtime: String,
    selection: String,
    logging: String,
    /// The store's temporary data dir and its file system.
    data_dir: String,
}

/// `--compare-policy`: the budget after the run, read back with `POST /v1/simulate`.
#[derive(Debug, Serialize)]
struct BudgetCheck {
    /// The policy's monthly `per_period` amount.
    cap: String,
    /// One spend.
    spend: String,
    currency: &'static str,
    /// Allowed spend answers under load, warm-up included, every round.
    spends_in_load: u64,
    /// Allowed spends made by the setup's check request.
    setup_spends: u64,
    /// `spends_in_load + setup_spends`.
    spends_counted: u64,
    /// `spend × spends_counted`.
    expected_spent: String,
    /// `remaining.amount` of `POST /v1/simulate` with the spend request: what would be
    /// left after one more spend, if it would be allowed.
    simulated_remaining: String,
    /// Whether that simulated spend would be allowed.
    simulated_allowed: bool,
    /// Spent this month: `cap − simulated_remaining − (spend if simulated_allowed)`.
    spent: String,
    /// When the budget's month ends.
    period_ends: String,
    /// `spent == expected_spent`. False fails the run.
    consistent: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    /// `baseline` (Bonafide vs the one-verify endpoint), `compare-audit` or
    /// `compare-policy`.
    mode: Mode,
    /// The floor: `baseline`, `unaudited` or `no-policy`.
    baseline: &'static str,
    /// What is measured against it: `bonafide`, `audited` or `policy-spend`.
    subject: &'static str,
    date: String,
    command: String,
    machine: Machine,
    settings: Settings,
    runs: Vec<Run>,
    best_baseline: Run,
    best_subject: Run,
    /// Subject / baseline throughput, best runs.
    ratio: f64,
    /// Subject / baseline throughput within each round (paired in time).
    round_ratios: Vec<f64>,
    /// Median of `round_ratios`.
    median_round_ratio: f64,
    /// Baseline / subject server CPU per request, best runs: the throughput ratio if
    /// server CPU were the only limit. Less sensitive to other load on the machine.
    cpu_per_request_ratio: Option<f64>,
    /// `compare-issuer-signed`: the cost of the subject relative to the baseline,
    /// baseline / subject throughput, best runs (1 / `ratio`).
    #[serde(skip_serializing_if = "Option::is_none")]
    cost_ratio: Option<f64>,
    /// `compare-issuer-signed`: baseline / subject throughput within each round.
    #[serde(skip_serializing_if = "Option::is_none")]
    round_cost_ratios: Option<Vec<f64>>,
    /// `compare-issuer-signed`: median of `round_cost_ratios`.
    #[serde(skip_serializing_if = "Option::is_none")]
    median_round_cost_ratio: Option<f64>,
    /// `compare-issuer-signed`: subject / baseline server CPU per request, best runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_cost_ratio: Option<f64>,
    /// `compare-issuer-signed`: subject / baseline server CPU per request within each
    /// round.
    #[serde(skip_serializing_if = "Option::is_none")]
    round_cpu_cost_ratios: Option<Vec<f64>>,
    /// `compare-issuer-signed`: median of `round_cpu_cost_ratios`.
    #[serde(skip_serializing_if = "Option::is_none")]
    median_round_cpu_cost_ratio: Option<f64>,
    /// What `goal` bounds: `ratio` (at least `goal`) or, for `compare-issuer-signed`,
    /// `cost_ratio` (at most `goal`).
    goal_on: &'static str,
    /// The goal: `ratio` ≥ this, or `cost_ratio` ≤ this (see `goal_on`).
    goal: f64,
    goal_met: bool,
    /// Latency goal (`compare-audit`): the subject's p99 at most this in every run.
    #[serde(skip_serializing_if = "Option::is_none")]
    p99_goal_us: Option<u32>,
    /// The subject's highest p99 over its runs.
    worst_subject_p99_us: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    p99_goal_met: Option<bool>,
    /// The baseline's highest p99 over its runs (`compare-policy`, which records both).
    #[serde(skip_serializing_if = "Option::is_none")]
    worst_baseline_p99_us: Option<u32>,
    /// `compare-policy`: the budget spent, against the spends counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    budget: Option<BudgetCheck>,
    /// `compare-issuer-signed`: the two tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens: Option<SignedPair>,
    /// `compare-verify-action`: the signed bodies sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    actions: Option<ActionInfo>,
}

const GOAL: f64 = 0.8;
/// `--compare-issuer-signed`: issuer-signed cost (registry-signed / issuer-signed
/// throughput) at most this.
const ISSUER_SIGNED_COST_GOAL: f64 = 1.05;
/// `--compare-audit`: the audited server's p99 at most this, µs.
const AUDIT_P99_GOAL_US: u32 = 5_000;
/// CPU used by the rest of the machine above which a run is flagged as disturbed.
const DISTURBED_PCT: f64 = 20.0;

impl Report {
    fn new(
        mode: Mode,
        date: String,
        command: String,
        machine: Machine,
        settings: Settings,
        runs: Vec<Run>,
        budget: Option<BudgetCheck>,
    ) -> Result<Self> {
        let best = |name: &str| -> Result<Run> {
            runs.iter()
                .filter(|r| r.target == name)
                .max_by(|a, b| a.throughput_rps.total_cmp(&b.throughput_rps))
                .cloned()
                .ok_or_else(|| anyhow!("no {name} run"))
        };
        let (baseline, subject) = mode.pair();
        let best_baseline = best(baseline)?;
        let best_subject = best(subject)?;
        ensure!(
            best_baseline.throughput_rps > 0.0,
            "the {baseline} target completed no requests"
        );
        let ratio = best_subject.throughput_rps / best_baseline.throughput_rps;
        // Per round: (baseline, subject) throughput and server CPU per request.
        let mut paired = Vec::new();
        for round in 1..=settings.rounds {
            let get = |name: &str| runs.iter().find(|r| r.round == round && r.target == name);
            if let (Some(b), Some(f)) = (get(baseline), get(subject)) {
                paired.push((b, f));
            }
        }
        let round_ratios: Vec<f64> = paired
            .iter()
            .filter(|(b, _)| b.throughput_rps > 0.0)
            .map(|(b, f)| f.throughput_rps / b.throughput_rps)
            .collect();
        let median_round_ratio = median(&round_ratios).unwrap_or(ratio);
        let cpu_per_request_ratio = best_baseline
            .server_cpu_us_per_request
            .zip(best_subject.server_cpu_us_per_request)
            .map(|(b, f)| b / f);
        let on_cost = mode.goal_on_cost();
        let cost_ratio =
            on_cost.then(|| best_baseline.throughput_rps / best_subject.throughput_rps);
        let round_cost_ratios: Option<Vec<f64>> = on_cost.then(|| {
            paired
                .iter()
                .filter(|(_, f)| f.throughput_rps > 0.0)
                .map(|(b, f)| b.throughput_rps / f.throughput_rps)
                .collect()
        });
        let median_round_cost_ratio = round_cost_ratios.as_deref().and_then(median);
        let cpu_cost_ratio = cpu_per_request_ratio.filter(|_| on_cost).map(|r| 1.0 / r);
        let round_cpu_cost_ratios: Option<Vec<f64>> = on_cost.then(|| {
            paired
                .iter()
                .filter_map(|(b, f)| {
                    let (b, f) = b
                        .server_cpu_us_per_request
                        .zip(f.server_cpu_us_per_request)?;
                    (b > 0.0).then(|| f / b)
                })
                .collect()
        });
        let median_round_cpu_cost_ratio = round_cpu_cost_ratios.as_deref().and_then(median);
        let (goal_on, goal, goal_met) = match cost_ratio {
            Some(c) => (
                "cost_ratio",
                ISSUER_SIGNED_COST_GOAL,
                c <= ISSUER_SIGNED_COST_GOAL,
            ),
            None if mode == Mode::CompareVerifyAction => ("none", 0.0, true),
            None => ("ratio", GOAL, ratio >= GOAL),
        };
        let worst_subject_p99_us = runs
            .iter()
            .filter(|r| r.target == subject)
            .map(|r| r.latency_us.p99)
            .max()
            .unwrap_or(0);
        let worst_baseline_p99_us = matches!(mode, Mode::ComparePolicy | Mode::CompareVerifyAction)
            .then(|| {
                runs.iter()
                    .filter(|r| r.target == baseline)
                    .map(|r| r.latency_us.p99)
                    .max()
                    .unwrap_or(0)
            });
        let p99_goal_us = (mode == Mode::CompareAudit).then_some(AUDIT_P99_GOAL_US);
        Ok(Report {
            mode,
            baseline,
            subject,
            date,
            command,
            machine,
            settings,
            runs,
            best_baseline,
            best_subject,
            ratio,
            round_ratios,
            median_round_ratio,
            cpu_per_request_ratio,
            cost_ratio,
            round_cost_ratios,
            median_round_cost_ratio,
            cpu_cost_ratio,
            round_cpu_cost_ratios,
            median_round_cpu_cost_ratio,
            goal_on,
            goal,
            goal_met,
            p99_goal_us,
            worst_subject_p99_us,
            p99_goal_met: p99_goal_us.map(|g| worst_subject_p99_us <= g),
            worst_baseline_p99_us,
            budget,
            tokens: None,
            actions: None,
        })
    }

    /// `--compare-verify-action`: records the signed bodies.
    fn with_actions(self, actions: Option<ActionInfo>) -> Self {
        Report { actions, ..self }
    }

    /// `--compare-issuer-signed`: records the two tokens.
    fn with_tokens(self, tokens: Option<SignedPair>) -> Self {
        Report { tokens, ..self }
    }

    fn print(&self) {
        let s = &self.settings;
        let (baseline, subject) = (self.baseline, self.subject);
        println!();
        if self.mode == Mode::CompareAudit {
            println!(
                "Bonafide load harness: POST /v1/verify with verify decisions audited vs not \
                 (same store, same token)"
            );
        } else if self.mode == Mode::ComparePolicy {
            println!(
                "Bonafide load harness: POST /v1/verify with a consent policy and a spend vs \
                 without a policy (same server)"
            );
        } else if self.mode == Mode::CompareIssuerSigned {
            println!(
                "Bonafide load harness: POST /v1/verify of an issuer-signed token vs a \
                 registry-signed one (same agent, same server)"
            );
        } else if self.mode == Mode::CompareVerifyAction {
            println!(
                "Bonafide load harness: POST /v1/agents/{{id}}/verify-action of a signed action vs \
                 POST /v1/verify of the same agent's token (same server)"
            );
        } else {
            println!(
                "Bonafide load harness: POST /v1/verify vs a one-Ed25519-verify axum endpoint"
            );
        }
        println!("date:     {}", self.date);
        println!("command:  {}", self.command);
        println!(
            "machine:  {} CPUs, {}, {}",
            self.machine.cpus, self.machine.cpu_model, self.machine.kernel
        );
        println!("servers:  {} (all servers, same process)", s.server_runtime);
        println!("client:   {}", s.client_runtime);
        println!(
            "load:     {} connections per target, {} s warm-up + {} s measured, {} round(s); {}",
            s.connections, s.warmup_s, s.seconds, s.rounds, s.selection
        );
        println!("schedule: {}", s.schedule);
        println!("logging:  {}", s.logging);
        println!("data dir: {}", s.data_dir);
        if self.mode == Mode::CompareAudit {
            println!(
                "requests: both POST /v1/verify {{token, scopes_requested:[\"{REQUESTED}\"]}}, \
                 must be valid and allowed; audited: Config {{ audit_verify: true }} (default; \
                 answers carry the durable audit_index), unaudited: audit_verify: false \
                 (serve --no-audit-verify; no audit_index)"
            );
        } else if self.mode == Mode::ComparePolicy {
            println!(
                "requests: both POST /v1/verify with a receiver key (X-API-Key) to one server in \
                 the default configuration (decisions audited, receipts signed); no-policy \
                 {{token, scopes_requested:[\"{REQUESTED}\"]}} of a token without a policy; \
                 policy-spend {{token, scopes_requested:[\"{REQUESTED}\"], action:\"{ACTION}\", \
                 resource:{{type:\"{RESOURCE_TYPE}\", id:\"{RESOURCE_ID}\"}}, amount:\"{SPEND}\", \
                 currency:\"{CURRENCY}\"}} of a token with policy {POLICY_ID} (per_txn {PER_TXN}, \
                 per_period {PER_PERIOD_CAP} {CURRENCY}/month), each allowed one charging the \
                 budget; all must be valid and allowed with audit_index and receipt_id, \
                 spends also with remaining"
            );
        } else if self.mode == Mode::CompareIssuerSigned {
            let audit = match &self.tokens {
                Some(t) if !t.audit_verify => {
                    "verify decisions NOT audited (--unaudited: Config { audit_verify: false }, \
                     measurement only; no audit_index)"
                }
                _ => "verify decisions audited (default; answers carry the durable audit_index)",
            };
            println!(
                "requests: both POST /v1/verify {{token, scopes_requested:[\"{REQUESTED}\"]}} to \
                 one server, EdDSA registry key, {audit}; must be valid and allowed"
            );
            if let Some(t) = &self.tokens {
                println!(
                    "tokens:   agent {}; registry-signed {} bytes (kid {}); issuer-signed {} \
                     bytes (iss {}, kid {}: an Ed25519 key generated by the harness, public JWK \
                     registered with POST /v1/issuer/keys)",
                    t.agent_id,
                    t.registry_signed_bytes,
                    t.registry_kid,
                    t.issuer_signed_bytes,
                    t.issuer_id,
                    t.issuer_kid
                );
            }
        } else if self.mode == Mode::CompareVerifyAction {
            println!(
                "requests: one server in the default configuration (decisions audited); verify \
                 POST /v1/verify {{token, scopes_requested:[\"{REQUESTED}\"]}} of the agent's \
                 token; verify-action POST /v1/agents/{{id}}/verify-action {{action:\"{REQUESTED}\", \
                 resource:\"{ACTION_RESOURCE}\", timestamp, nonce, signature}}, a fresh nonce and \
                 Ed25519 signature (by the agent's registered public_key) per request; all must \
                 be 200, allowed, with audit_index (a REPLAY or any refusal is an error)"
            );
            if let Some(a) = &self.actions {
                println!(
                    "actions:  agent {}; {} signed bodies pre-computed in {:.1} s before the runs \
                     (timestamp {}); {} sent, {} of them signed by the load generator during \
                     the load (pool exhausted)",
                    a.agent_id,
                    a.pool_bodies,
                    a.pool_build_s,
                    a.pool_timestamp,
                    a.bodies_sent,
                    a.signed_live
                );
            }
        } else {
            println!(
                "requests: bonafide POST /v1/verify {{token, scopes_requested:[\"{REQUESTED}\"]}} \
                 (must be valid and allowed); baseline POST /verify {{token}} (must be valid)"
            );
        }
        // Target column: 9 wide, or the longest name (`policy-spend`).
        let w = self
            .runs
            .iter()
            .map(|r| r.target.chars().count())
            .max()
            .unwrap_or(0)
            .max(9);
        println!();
        println!(
            "{:>5}  {:<w$}  {:>9}  {:>10}  {:>7}  {:>7}  {:>7}  {:>7}  {:>8}  {:>6}  {:>6}  {:>6}  {:>10}",
            "round",
            "target",
            "requests",
            "req/s",
            "p50 µs",
            "p90 µs",
            "p99 µs",
            "max µs",
            "mean µs",
            "client",
            "total",
            "others",
            "srv µs/req"
        );
        for r in &self.runs {
            println!(
                "{:>5}  {:<w$}  {:>9}  {:>10.0}  {:>7}  {:>7}  {:>7}  {:>7}  {:>8.1}  {:>6}  {:>6}  {:>6}  {:>10}{}",
                r.round,
                r.target,
                r.requests,
                r.throughput_rps,
                r.latency_us.p50,
                r.latency_us.p90,
                r.latency_us.p99,
                r.latency_us.max,
                r.latency_us.mean,
                pct(r.client_cpu_pct_of_core),
                pct(r.process_cpu_pct_of_core),
                pct(r.others_cpu_pct_of_core),
                r.server_cpu_us_per_request
                    .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}")),
                if r.errors > 0 {
                    format!("  ERRORS: {}", r.errors)
                } else {
                    String::new()
                }
            );
        }
        println!(
            "(client / total / others: CPU of the load-generator thread / this whole process / \
             everything else on the machine, % of one core;\n srv µs/req: server CPU per \
             request = (total - client) / requests)"
        );
        let disturbed: Vec<String> = self
            .runs
            .iter()
            .filter(|r| r.others_cpu_pct_of_core.is_some_and(|p| p > DISTURBED_PCT))
            .map(|r| format!("{} round {}", r.target, r.round))
            .collect();
        if !disturbed.is_empty() {
            println!(
                "WARNING: other load on the machine (> {DISTURBED_PCT:.0}% of a core) during: {}; \
                 their throughput is understated. Re-run on a quiet machine, or compare srv µs/req.",
                disturbed.join(", ")
            );
        }
        println!();
        let mut names: Vec<&str> = Vec::new();
        for r in &self.runs {
            if !names.contains(&r.target) {
                names.push(r.target);
            }
        }
        for name in names {
            let best = self
                .runs
                .iter()
                .filter(|r| r.target == name)
                .max_by(|a, b| a.throughput_rps.total_cmp(&b.throughput_rps));
            if let Some(r) = best {
                println!(
                    "{name:<w$} (best, round {}): {:>6.0} req/s, p50 {} µs, p99 {} µs, \
                     server CPU {} µs/request",
                    r.round,
                    r.throughput_rps,
                    r.latency_us.p50,
                    r.latency_us.p99,
                    r.server_cpu_us_per_request
                        .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
                );
            }
        }
        let verdict = if self.goal_met { "met" } else { "NOT met" };
        if let Some(cost) = self.cost_ratio {
            println!(
                "ratio {subject}/{baseline} throughput: {:.3}×  (within each round: {}; median \
                 {:.3}×)",
                self.ratio,
                ratios(&self.round_ratios),
                self.median_round_ratio
            );
            println!(
                "cost of {subject} = {baseline}/{subject} throughput: {cost:.3}×  (goal ≤ {:.2}×: \
                 {verdict})",
                self.goal
            );
            if let (Some(rounds), Some(med)) =
                (&self.round_cost_ratios, self.median_round_cost_ratio)
            {
                println!(
                    "cost within each round: {}  (median {med:.3}×)",
                    ratios(rounds)
                );
            }
            if let Some(c) = self.cpu_cost_ratio {
                let per_round = match (
                    &self.round_cpu_cost_ratios,
                    self.median_round_cpu_cost_ratio,
                ) {
                    (Some(r), Some(m)) => {
                        format!("; within each round: {} (median {m:.3}×)", ratios(r))
                    }
                    _ => String::new(),
                };
                println!(
                    "server CPU per request, {subject}/{baseline}: {c:.3}× best runs{per_round}"
                );
            }
        } else if self.goal_on == "none" {
            println!(
                "ratio {subject}/{baseline} throughput: {:.3}×  (best runs; no goal)",
                self.ratio
            );
            println!(
                "ratio within each round: {}  (median {:.3}×)",
                ratios(&self.round_ratios),
                self.median_round_ratio
            );
            if let Some(r) = self.cpu_per_request_ratio {
                println!(
                    "server CPU per request, {baseline}/{subject}: {r:.3}×  (the throughput ratio \
                     if server CPU were the only limit)"
                );
            }
        } else {
            println!(
                "ratio {subject}/{baseline} throughput: {:.3}×  (goal ≥ {:.1}×: {verdict})",
                self.ratio, self.goal,
            );
            println!(
                "ratio within each round: {}  (median {:.3}×)",
                ratios(&self.round_ratios),
                self.median_round_ratio
            );
            if let Some(r) = self.cpu_per_request_ratio {
                println!(
                    "server CPU per request, {baseline}/{subject}: {r:.3}×  (the throughput ratio \
                     if server CPU were the only limit)"
                );
            }
        }
        let (b, f) = (
            &self.best_baseline.latency_us,
            &self.best_subject.latency_us,
        );
        println!(
            "latency {subject}/{baseline}, best runs: p50 {:.2}×, p99 {:.2}×",
            f64::from(f.p50) / f64::from(b.p50.max(1)),
            f64::from(f.p99) / f64::from(b.p99.max(1))
        );
        if let (Some(goal), Some(met)) = (self.p99_goal_us, self.p99_goal_met) {
            println!(
                "{subject} p99, worst run: {} µs  (goal ≤ {goal} µs in every run: {})",
                self.worst_subject_p99_us,
                if met { "met" } else { "NOT met" }
            );
        }
        if let Some(worst_baseline) = self.worst_baseline_p99_us {
            println!(
                "p99 (recorded, no goal): {baseline} {} µs best run, {worst_baseline} µs worst \
                 run; {subject} {} µs best run, {} µs worst run",
                b.p99, f.p99, self.worst_subject_p99_us
            );
        }
        if let Some(c) = &self.budget {
            println!(
                "budget: {} allowed spends counted ({} under load, warm-up included, + {} setup \
                 check) × {} {cur} = {} {cur} expected; POST /v1/simulate: remaining {} {cur} \
                 after a further spend ({}), so {} {cur} spent of {} {cur} this month (ends {}): {}",
                c.spends_counted,
                c.spends_in_load,
                c.setup_spends,
                c.spend,
                c.expected_spent,
                c.simulated_remaining,
                if c.simulated_allowed {
                    "allowed"
                } else {
                    "NOT allowed: nothing subtracted"
                },
                c.spent,
                c.cap,
                c.period_ends,
                if c.consistent {
                    "consistent"
                } else {
                    "MISMATCH"
                },
                cur = c.currency,
            );
        }
    }
}

/// Median of `values` (mean of the middle two for an even count); `None` if empty.
fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let hi = sorted.get(n / 2).copied()?;
    if n % 2 == 1 {
        Some(hi)
    } else {
        Some((sorted.get(n / 2 - 1).copied()? + hi) / 2.0)
    }
}

fn ratios(values: &[f64]) -> String {
    values
        .iter()
        .map(|r| format!("{r:.3}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |p| format!("{p:.0}%"))
}

fn write_json(path: &Path, report: &Report) -> Result<()> {
    let mut text = serde_json::to_string_pretty(report).context("encoding the JSON report")?;
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The command line as run, shell-quoted where needed.
fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+".contains(c))
            {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The file system `path` is on, from the longest matching mount point in
/// `/proc/self/mounts`: `ext4 (/dev/vda on /)`.
fn file_system(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            Some((f.next()?, f.next()?, f.next()?))
        })
        .filter(|(_, mount, _)| path.starts_with(mount))
        .max_by_key(|(_, mount, _)| mount.len())
        .map_or_else(
            || "file system unknown".to_owned(),
            |(device, mount, fs)| format!("{fs}, {device} on {mount}"),
        )
}
