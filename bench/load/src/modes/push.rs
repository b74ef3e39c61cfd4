//! `--push-events` (issue 19 item 4): revocation to refusal at subscribed receivers
//! over Server-Sent Events. One in-process registry (SQLite on `--data-dir`,
//! `max_connections` raised for the streams) and `--receivers` (default 250)
//! receivers in this process, each a `bonafide_client` receiver layer verifying
//! offline (the registry's JWKS) with its own `events::Subscription` (its own HTTP
//! connection to `GET /v1/events?issuer=…`, SETs verified with the event JWKS,
//! acknowledgements off unless `--push-acks`) feeding its `RevokedSet`. For each of
//! `--revocations` (default 200) tokens of one agent in turn: `POST
//! /v1/tokens/revoke` is sent, and each receiver, woken by its set changing, checks
//! the token through its layer (`Receiver::authenticate`) until it refuses it with
//! `TOKEN_REVOKED`. A sample is the time from sending the revoke to one receiver's
//! refusal; per revocation also the time until the last receiver refused (all
//! receivers). Goal: p99 ≤ 1 s (per receiver). Everything on 127.0.0.1, in one
//! process: the registry, its streams and the 250 receivers share the machine's CPUs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use bonafide_client::events::{RevokedSet, Subscription};
use bonafide_client::receiver::{Config as ReceiverConfig, JwksSource, Receiver};
use bonafide_core::keys::Jwks;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

use crate::report::{self, Latency, Machine};
use crate::setup::{self, Local, call};
use crate::{Args, Mode};

/// A revocation not refused by every receiver by then fails the run.
const GIVE_UP: Duration = Duration::from_secs(10);
/// The goal: p99 at most this.
const GOAL_P99: Duration = Duration::from_secs(1);
/// The best published figure found: 868 ms median to 250 receivers.
const PUBLISHED_MEDIAN_US: u32 = 868_000;

#[derive(Debug, Serialize)]
struct PushReport {
    mode: Mode,
    date: String,
    command: String,
    machine: Machine,
    receivers: usize,
    revocations: usize,
    acknowledgements: bool,
    /// From sending a revoke to one receiver's refusal, µs (every receiver, every
    /// revocation).
    per_receiver_us: Latency,
    /// From sending a revoke to the last receiver's refusal, µs (per revocation).
    all_receivers_us: Latency,
    /// How long a revoke took to be answered, µs.
    revoke_us: Latency,
    goal_p99_us: u32,
    goal_met: bool,
    published_median_us: u32,
}

pub fn run(args: &Args) -> Result<()> {
    let command = report::command_line();
    let date = bonafide_server::time::rfc3339_s(bonafide_server::time::now_ms() / 1000);
    let machine = Machine::read();
    let n = args.receivers;
    ensure!((1..=1000).contains(&n), "--receivers must be 1..=1000");
    ensure!(args.revocations >= 1, "--revocations must be at least 1");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the runtime")?;
    let (samples, all, revokes) = rt.block_on(async {
        let config = bonafide_server::Config {
            // The streams hold a connection each, beside the harness's own calls.
            max_connections: n + 64,
            ..bonafide_server::Config::default()
        };
        let local = Local::start("registry", config, args.data_dir.as_deref()).await?;
        let measured = measure(&local, n, args.revocations, args.push_acks).await;
        let stopped = local.servers.stop().await;
        let m = measured?;
        stopped?;
        Ok::<_, anyhow::Error>(m)
    })?;
    let sort = |mut v: Vec<u32>| {
        v.sort_unstable();
        Latency::from_sorted(&v)
    };
    let per_receiver = sort(samples);
    let goal_us = u32::try_from(GOAL_P99.as_micros()).unwrap_or(u32::MAX);
    let report = PushReport {
        mode: Mode::PushEvents,
        date,
        command,
        machine,
        receivers: n,
        revocations: args.revocations,
        acknowledgements: args.push_acks,
        goal_met: per_receiver.p99 <= goal_us,
        per_receiver_us: per_receiver,
        all_receivers_us: sort(all),
        revoke_us: sort(revokes),
        goal_p99_us: goal_us,
        published_median_us: PUBLISHED_MEDIAN_US,
    };
    print(&report);
    if let Some(path) = &args.json {
        let mut text = serde_json::to_string_pretty(&report).context("encoding the JSON report")?;
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("\nJSON written to {}", path.display());
    }
    Ok(())
}

/// What the receivers watch: the token being revoked and when its revoke was sent.
struct Round {
    index: usize,
    token: String,
    sent: Instant,
}

type Measured = (Vec<u32>, Vec<u32>, Vec<u32>);

async fn measure(local: &Local, n: usize, count: usize, acks: bool) -> Result<Measured> {
    let http = &local.http;
    let base = &local.base;
    let receiver_key = call(
        http,
        &format!("{base}/v1/receivers"),
        Some(local.admin.expose_secret()),
        Some(json!({"name": "push-bench.example"})),
        201,
    )
    .await?;
    let receiver_key = setup::str_member(&receiver_key, "api_key")?;
    let mut tokens = Vec::with_capacity(count);
    for _ in 0..count {
        let t = call(
            http,
            &format!("{base}/v1/agents/{}/issue-token", local.agent_id),
            Some(&local.issuer_key),
            Some(json!({})),
            201,
        )
        .await?;
        tokens.push(setup::str_member(&t, "token")?);
    }
    let jwks: Jwks = serde_json::from_value(
        call(
            http,
            &format!("{base}/.well-known/jwks.json"),
            None,
            None,
            200,
        )
        .await?,
    )
    .context("the registry's JWKS")?;

    let (round_tx, round_rx) = watch::channel::<Option<Arc<Round>>>(None);
    let samples = Arc::new(Mutex::new(Vec::with_capacity(n * count)));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let mut streams = Vec::with_capacity(n);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let revoked = RevokedSet::new();
        let mut config = ReceiverConfig::offline(JwksSource::Static(jwks.clone()), base.clone());
        config.revoked = Some(Arc::clone(&revoked));
        let receiver = Receiver::new(config).await.context("a receiver layer")?;
        let stream = Subscription::new(base, &receiver_key)
            .issuer(&local.issuer_id)
            .acknowledge(acks)
            .spawn(Arc::clone(&revoked))
            .context("a subscription")?;
        streams.push(stream);
        let mut applied = revoked.watch();
        let mut round_rx = round_rx.clone();
        let done_tx = done_tx.clone();
        let samples = Arc::clone(&samples);
        tasks.spawn(async move {
            let mut refused_upto: Option<usize> = None;
            loop {
                tokio::select! {
                    changed = applied.changed() => if changed.is_err() { return },
                    changed = round_rx.changed() => if changed.is_err() { return },
                }
                let Some(round) = round_rx.borrow_and_update().clone() else {
                    continue;
                };
                if refused_upto.is_some_and(|r| r >= round.index) {
                    continue;
                }
                let mut headers = HeaderMap::new();
                let Ok(value) = HeaderValue::from_str(&format!("Bearer {}", round.token)) else {
                    return;
                };
                headers.insert("authorization", value);
                match receiver
                    .authenticate(&Method::GET, &Uri::from_static("/"), &headers)
                    .await
                {
                    Err(r) if r.code() == "TOKEN_REVOKED" => {
                        let now = Instant::now();
                        samples.lock().await.push(micros(now - round.sent));
                        refused_upto = Some(round.index);
                        let _ = done_tx.send((round.index, now));
                    }
                    _ => {}
                }
            }
        });
    }
    for s in &streams {
        tokio::time::timeout(GIVE_UP, s.connected())
            .await
            .context("a receiver's stream did not connect")?;
    }
    eprintln!("{n} receivers subscribed; revoking {count} tokens one by one…");
    let mut all = Vec::with_capacity(count);
    let mut revokes = Vec::with_capacity(count);
    let refused = AtomicUsize::new(0);
    for (index, token) in tokens.iter().enumerate() {
        let sent = Instant::now();
        round_tx.send_replace(Some(Arc::new(Round {
            index,
            token: token.clone(),
            sent,
        })));
        call(
            http,
            &format!("{base}/v1/tokens/revoke"),
            Some(&local.issuer_key),
            Some(json!({"token": token})),
            200,
        )
        .await?;
        revokes.push(micros(Instant::now() - sent));
        let mut left = n;
        let mut last = sent;
        while left > 0 {
            match tokio::time::timeout_at(sent + GIVE_UP, done_rx.recv()).await {
                Ok(Some((i, at))) if i == index => {
                    left -= 1;
                    last = last.max(at);
                    refused.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Some(_)) => {}
                Ok(None) => bail!("the receivers stopped"),
                Err(_) => bail!(
                    "{left} of {n} receivers still accepted token {index} {} s after its revoke",
                    GIVE_UP.as_secs()
                ),
            }
        }
        all.push(micros(last - sent));
    }
    tasks.abort_all();
    drop(streams);
    let samples = std::mem::take(&mut *samples.lock().await);
    ensure!(
        samples.len() == n * count,
        "{} refusals for {} receivers × {count} revocations",
        samples.len(),
        n
    );
    Ok((samples, all, revokes))
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn ms(us: u32) -> String {
    format!("{:.1} ms", f64::from(us) / 1000.0)
}

fn print(r: &PushReport) {
    println!();
    println!(
        "Bonafide load harness: push events, revocation to refusal at subscribed receivers (SSE)"
    );
    println!("date:     {}", r.date);
    println!("command:  {}", r.command);
    println!(
        "machine:  {} CPUs, {}, {}",
        r.machine.cpus, r.machine.cpu_model, r.machine.kernel
    );
    println!(
        "method:   one in-process registry (SQLite), {} receivers in this process, each a \
         bonafide_client receiver layer (offline, static JWKS) fed by its own SSE \
         subscription (issuer filter; acknowledgements {}); {} tokens revoked one by one; \
         a sample is from sending POST /v1/tokens/revoke to a receiver's layer refusing \
         the token (TOKEN_REVOKED)",
        r.receivers,
        if r.acknowledgements { "on" } else { "off" },
        r.revocations
    );
    let p = &r.per_receiver_us;
    println!(
        "per receiver ({} samples): p50 {}, p90 {}, p99 {}, max {}, mean {:.1} ms",
        r.receivers * r.revocations,
        ms(p.p50),
        ms(p.p90),
        ms(p.p99),
        ms(p.max),
        p.mean / 1000.0
    );
    let a = &r.all_receivers_us;
    println!(
        "all {} receivers refused: p50 {}, p90 {}, p99 {}, max {}",
        r.receivers,
        ms(a.p50),
        ms(a.p90),
        ms(a.p99),
        ms(a.max)
    );
    println!(
        "revoke answered: p50 {}, p99 {}",
        ms(r.revoke_us.p50),
        ms(r.revoke_us.p99)
    );
    println!(
        "per-receiver p99: {}  (goal ≤ {}: {}); median to all receivers {} vs the published {} median",
        ms(p.p99),
        ms(r.goal_p99_us),
        if r.goal_met { "met" } else { "NOT met" },
        ms(a.p50),
        ms(r.published_median_us)
    );
}
