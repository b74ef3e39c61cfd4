//! `--replica-spends` (issue 16): spends on ONE budget over `--replicas` (default 3)
//! replicas on one PostgreSQL database. The targets are `--compare-policy`'s, with
//! their connections spread over every replica: `no-policy` (a plain verify with a
//! receiver key) and `policy-spend` (a spend of 0.01 USD charged to one agent's
//! monthly budget). No goal: throughput and p99 are recorded. Two checks, each
//! failing the run:
//!
//! - after the load, every replica reads back (`POST /v1/simulate`) exactly 0.01 USD
//!   per allowed spend the harness was answered;
//! - then a burst of [`BURST_FACTOR`] × cap/amount spends against a second agent
//!   whose cap ([`BURST_CAP`]) does run out, over every replica and every
//!   connection at once: exactly cap/amount allowed (the setup's check included), no
//!   more, every other refused `LIMIT_PER_PERIOD`, and every replica reads back the
//!   cap spent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, anyhow, ensure};
use bonafide_core::policy::Decimal;
use hyper::header::HeaderValue;
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use crate::cluster::ReplicaSet;
use crate::load::{self, Target};
use crate::modes::policy::{self, CURRENCY, NO_POLICY, POLICY_SUBJECT, SPEND, Spends};
use crate::modes::{endpoints, processes_line, with_postgres};
use crate::pair::{Bench, Ctx};
use crate::report::{Goal, Latency, Section, Spec};
use crate::setup::{self, Made, decimal};

pub const SPEC: Spec = Spec {
    baseline: NO_POLICY,
    subject: POLICY_SUBJECT,
    title: "spends on one shared budget over several replicas on one PostgreSQL vs plain \
            verifies over the same replicas",
    goal: Goal::None,
    p99_goal_us: None,
    record_baseline_p99: true,
    fsync_latency_factor: None,
};

/// The burst's agent's monthly cap: 500 spends of [`SPEND`].
const BURST_CAP: &str = "5.00";
/// Spends sent in the burst, per spend the cap allows.
const BURST_FACTOR: u64 = 3;

pub async fn setup(ctx: &Ctx<'_>) -> Result<Bench> {
    let n = ctx.args.replicas.unwrap_or(3);
    ensure!(n >= 1, "--replicas must be at least 1");
    let (mut servers, bin, database) = with_postgres(ctx.args).await?;
    let dir = servers
        .dir
        .as_ref()
        .map(|d| d.path().to_owned())
        .context("no temp dir")?;
    let pg = servers.postgres.as_mut().context("no PostgreSQL")?;
    let set = ReplicaSet::start(pg, &bin, &dir, "spends", n).await?;
    let http = setup::http_client()?;
    let bases: Vec<String> = set.replicas.iter().map(|r| r.url.clone()).collect();
    let first = bases.first().context("no replica")?;
    let made = Made::issuer_and_agent(&http, first, &set.admin).await?;
    for base in &bases {
        setup::check_bonafide(&http, base, &made.token, true).await?;
    }
    let spends = Spends::setup(
        &http,
        &bases,
        &set.admin,
        &made.issuer_key,
        &made.token,
        "PaymentsBot",
        policy::PER_PERIOD_CAP,
    )
    .await?;
    let on = |name| Target {
        on_postgres: true,
        ..Target::on_processes(
            name,
            endpoints(&set.replicas),
            "/v1/verify",
            bytes::Bytes::new(),
        )
    };
    let targets = vec![
        spends.no_policy_target(on(NO_POLICY))?,
        spends.spend_target(on(POLICY_SUBJECT))?,
    ];
    let burst = Burst {
        bases: bases.clone(),
        endpoint_target: on(POLICY_SUBJECT),
        receiver_key: spends.receiver_key.clone(),
        issuer_key: made.issuer_key.clone(),
        plain_token: made.token.clone(),
        connections: ctx.connections,
    };
    servers.replicas.extend(set.replicas);
    let db_root = servers.postgres.as_ref().and_then(|p| p.postmaster_pid());
    let mut bench = Bench::new(
        SPEC,
        targets,
        servers,
        policy::requests_line(&format!(
            "with connections spread over {n} replicas on one PostgreSQL database (one agent's \
             budget charged through all of them)"
        )),
    );
    bench.sections.push(database);
    bench.db_root = db_root;
    bench.processes = Some(processes_line(
        &bin,
        &format!("{n} replicas on one fresh PostgreSQL database"),
    ));
    let budget = spends.budget;
    bench.after.push(Box::new(move |runs| {
        Box::pin(async move { budget.final_check(&runs).await?.section() })
    }));
    bench.after.push(Box::new(move |_| {
        Box::pin(async move { burst.run().await })
    }));
    Ok(bench)
}

/// The burst against a cap that runs out.
struct Burst {
    bases: Vec<String>,
    /// A target on every replica (its body and key replaced).
    endpoint_target: Target,
    receiver_key: String,
    issuer_key: String,
    plain_token: String,
    connections: usize,
}

/// What the burst found.
#[derive(Debug, Serialize)]
struct BurstCheck {
    cap: String,
    spend: String,
    currency: &'static str,
    replicas: usize,
    connections: usize,
    /// Spends sent in the burst.
    requests: u64,
    /// cap / spend.
    expected_allowed: u64,
    /// Allowed: the burst's and the setup's check.
    allowed: u64,
    /// Of them, the setup's check.
    setup_spends: u64,
    refused_limit: u64,
    /// Anything else (another status, refusal or shape). Any fails the check.
    errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_error: Option<String>,
    /// Spent as read back on each replica (`POST /v1/simulate`).
    spent_per_replica: Vec<String>,
    /// Burst throughput and latency (allowed and refused alike).
    seconds: f64,
    throughput_rps: f64,
    latency_us: Latency,
    /// allowed == expected_allowed, no errors, every replica read back the cap.
    exact: bool,
}

/// Tallies of one burst connection.
#[derive(Default)]
struct Tally {
    allowed: u64,
    refused: u64,
    errors: u64,
    first_error: Option<String>,
    latencies: Vec<u32>,
}

impl Burst {
    async fn run(self) -> Result<Section> {
        let http = setup::http_client()?;
        let spends = Spends::with_receiver(
            &http,
            &self.bases,
            self.receiver_key.clone(),
            &self.issuer_key,
            &self.plain_token,
            "CapBot",
            BURST_CAP,
        )
        .await?;
        let cap = decimal(BURST_CAP)?;
        let amount = decimal(SPEND)?;
        let expected: u64 = (cap / amount)
            .normalize()
            .to_string()
            .parse()
            .map_err(|_| anyhow!("{BURST_CAP} / {SPEND} is not a whole count"))?;
        let total = expected * BURST_FACTOR;
        let target = Arc::new(spends.spend_target(self.endpoint_target.clone())?);
        let next = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..self.connections {
            let endpoint = target
                .endpoints
                .get(i % target.endpoints.len().max(1))
                .context("no endpoint")?
                .clone();
            let mut sender = load::connect(endpoint.addr).await?;
            let (target, next) = (Arc::clone(&target), Arc::clone(&next));
            let host =
                HeaderValue::from_str(&endpoint.addr.to_string()).context("the host header")?;
            tasks.push(tokio::spawn(async move {
                let mut t = Tally::default();
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    let t0 = Instant::now();
                    let outcome = load::exchange(&mut sender, &target, &host).await;
                    t.latencies
                        .push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                    match outcome.and_then(|(status, body)| classify(status, &body)) {
                        Ok(true) => t.allowed += 1,
                        Ok(false) => t.refused += 1,
                        Err(e) => {
                            t.errors += 1;
                            t.first_error.get_or_insert(e);
                        }
                    }
                }
                t
            }));
        }
        let mut sum = Tally::default();
        for task in tasks {
            let t = task.await.context("a burst task panicked")?;
            sum.allowed += t.allowed;
            sum.refused += t.refused;
            sum.errors += t.errors;
            if sum.first_error.is_none() {
                sum.first_error = t.first_error;
            }
            sum.latencies.extend(t.latencies);
        }
        let seconds = started.elapsed().as_secs_f64();
        sum.latencies.sort_unstable();
        let budget = &spends.budget;
        let mut spent = Vec::new();
        for base in &self.bases {
            let sim = budget.simulate(&http, base).await?;
            ensure!(
                sim.period_ends == budget.period_ends,
                "the budget's month changed during the burst; run again"
            );
            spent.push(sim.spent);
        }
        let allowed = sum.allowed + budget.setup_spends;
        let exact = allowed == expected && sum.errors == 0 && spent.iter().all(|s| *s == cap);
        let check = BurstCheck {
            cap: cap.to_string(),
            spend: amount.to_string(),
            currency: CURRENCY,
            replicas: self.bases.len(),
            connections: self.connections,
            requests: total,
            expected_allowed: expected,
            allowed,
            setup_spends: budget.setup_spends,
            refused_limit: sum.refused,
            errors: sum.errors,
            first_error: sum.first_error,
            spent_per_replica: spent.iter().map(Decimal::to_string).collect(),
            seconds,
            throughput_rps: total as f64 / seconds,
            latency_us: Latency::from_sorted(&sum.latencies),
            exact,
        };
        let line = format!(
            "cap burst: {} spends of {} {cur} against a monthly cap of {} {cur} over {} replicas \
             on {} connections at once ({:.0} req/s, p50 {} µs, p99 {} µs): {} allowed incl. the \
             setup's check (cap/amount = {}: {}), {} refused LIMIT_PER_PERIOD, {} other \
             answers; spent as read on each replica: {}",
            check.requests,
            check.spend,
            check.cap,
            check.replicas,
            check.connections,
            check.throughput_rps,
            check.latency_us.p50,
            check.latency_us.p99,
            check.allowed,
            check.expected_allowed,
            if exact { "exact" } else { "MISMATCH" },
            check.refused_limit,
            check.errors,
            check.spent_per_replica.join(", "),
            cur = CURRENCY,
        );
        let failure = (!exact).then(|| {
            format!(
                "the cap burst allowed {} spends of {SPEND} {CURRENCY} against a cap of \
                 {BURST_CAP} {CURRENCY} (exactly {} expected), with {} other answers (first: \
                 {}), spent read back {}; the budget is not exact across replicas",
                check.allowed,
                check.expected_allowed,
                check.errors,
                check.first_error.as_deref().unwrap_or("none"),
                check.spent_per_replica.join(" / ")
            )
        });
        Ok(Section {
            footer: vec![line],
            failure,
            ..Section::json("cap_burst", &check)?
        })
    }
}

/// A burst answer: allowed (`true`), refused for the period's limit (`false`), or
/// anything else.
fn classify(status: hyper::StatusCode, body: &[u8]) -> Result<bool, String> {
    let text = || String::from_utf8_lossy(body).into_owned();
    if status != hyper::StatusCode::OK {
        return Err(format!("status {status}: {}", text()));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("{e}: {}", text()))?;
    if v["valid"] != true || !v["audit_index"].is_u64() {
        return Err(format!("not valid or no audit_index: {}", text()));
    }
    match v["allowed"].as_bool() {
        Some(true) => Ok(true),
        Some(false) if v["reasons"] == serde_json::json!(["LIMIT_PER_PERIOD"]) => Ok(false),
        _ => Err(format!("neither allowed nor LIMIT_PER_PERIOD: {}", text())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_answers() {
        let ok = hyper::StatusCode::OK;
        let allowed = br#"{"valid":true,"allowed":true,"audit_index":3}"#;
        let limit =
            br#"{"valid":true,"allowed":false,"audit_index":4,"reasons":["LIMIT_PER_PERIOD"]}"#;
        let other = br#"{"valid":true,"allowed":false,"audit_index":5,"reasons":["SCOPE"]}"#;
        assert_eq!(classify(ok, allowed), Ok(true));
        assert_eq!(classify(ok, limit), Ok(false));
        assert!(classify(ok, other).is_err());
        assert!(classify(hyper::StatusCode::SERVICE_UNAVAILABLE, allowed).is_err());
    }
}
