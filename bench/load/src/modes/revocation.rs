//! `--revocation-propagation` (issue 16): how long a revocation acknowledged by one
//! replica takes to be enforced by another. `--replicas` (default 2) replicas on one
//! PostgreSQL database; `--revocations` (default 200) agents, agent i registered on
//! replica a = i mod N. For each in turn: its token is verified valid on replica
//! b = (i + 1) mod N (so b knows it), `POST /v1/agents/{id}/revoke` is sent to a, and
//! from a's 200 the token is verified on b in a closed loop ([`POLL_PAUSE`] between
//! answers) until refused (`AGENT_REVOKED` or `TOKEN_REVOKED`): the time from the
//! 200 to that refusal is one sample. Goal: p99 ≤ 1 s. Not a paired load: its own
//! report. A sample past [`GIVE_UP`], or a refusal for another reason, fails the run.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use bytes::Bytes;
use hyper::header::HeaderValue;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::cluster::ReplicaSet;
use crate::load::{self, Sender, Target};
use crate::modes::{processes_line, with_postgres};
use crate::report::{self, Latency, Machine};
use crate::setup::{self, GRANTED, Made, call};
use crate::{Args, Mode};

/// Between two verifies of the polling loop: keeps the loop from being a load of its
/// own on the replica it waits for.
const POLL_PAUSE: Duration = Duration::from_millis(1);
/// A revocation not enforced by then fails the run (5 s is the replicas' periodic
/// catch-up, so past it the notification path did not work).
const GIVE_UP: Duration = Duration::from_secs(10);
/// The goal: p99 at most this.
const GOAL_P99: Duration = Duration::from_secs(1);
/// The refusals that say the revocation arrived.
const REVOKED: [&str; 2] = ["AGENT_REVOKED", "TOKEN_REVOKED"];

#[derive(Debug, Serialize)]
struct RevocationReport {
    mode: Mode,
    date: String,
    command: String,
    machine: Machine,
    servers: String,
    /// The PostgreSQL server (as the paired reports' `database`).
    database: Option<Box<serde_json::value::RawValue>>,
    replicas: usize,
    revocations: usize,
    /// From a revoke's 200 on one replica to the first refusal on the next, µs.
    propagation_us: Latency,
    /// Each sample, µs, in order.
    samples_us: Vec<u32>,
    /// Polls per sample (verifies until refused), mean.
    mean_polls: f64,
    /// One polling verify's round trip, µs: the measurement's resolution.
    poll_us: Latency,
    /// How long a revoke took to be answered, µs.
    revoke_us: Latency,
    goal_p99_us: u32,
    goal_met: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let command = report::command_line();
    let date = bonafide_server::time::rfc3339_s(bonafide_server::time::now_ms() / 1000);
    let machine = Machine::read();
    let n = args.replicas.unwrap_or(2);
    ensure!(n >= 2, "--revocation-propagation needs at least 2 replicas");
    ensure!(args.revocations >= 1, "--revocations must be at least 1");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the runtime")?;
    let (mut servers, bin, database) = rt.block_on(with_postgres(args))?;
    let measured = rt.block_on(async {
        let dir = servers
            .dir
            .as_ref()
            .map(|d| d.path().to_owned())
            .context("no temp dir")?;
        let pg = servers.postgres.as_mut().context("no PostgreSQL")?;
        let set = ReplicaSet::start(pg, &bin, &dir, "revoke", n).await?;
        let bases: Vec<String> = set.replicas.iter().map(|r| r.url.clone()).collect();
        let addrs: Vec<_> = set.replicas.iter().map(|r| r.addr).collect();
        servers.replicas.extend(set.replicas);
        measure(args.revocations, &set.admin, &bases, &addrs).await
    });
    // Stop everything whatever happened.
    let stopped = rt.block_on(servers.stop());
    let (samples, polls, poll_rtts, revokes) = measured?;
    stopped?;

    let mut sorted = samples.clone();
    sorted.sort_unstable();
    let propagation = Latency::from_sorted(&sorted);
    let goal_us = u32::try_from(GOAL_P99.as_micros()).unwrap_or(u32::MAX);
    let mut poll_rtts = poll_rtts;
    poll_rtts.sort_unstable();
    let mut revokes = revokes;
    revokes.sort_unstable();
    let report = RevocationReport {
        mode: Mode::RevocationPropagation,
        date,
        command,
        machine,
        servers: processes_line(
            &bin,
            &format!("{n} replicas on one fresh PostgreSQL database"),
        ),
        database: database.json.map(|(_, value)| value),
        replicas: n,
        revocations: samples.len(),
        goal_met: propagation.p99 <= goal_us,
        propagation_us: propagation,
        samples_us: samples,
        mean_polls: polls as f64 / args.revocations as f64,
        poll_us: Latency::from_sorted(&poll_rtts),
        revoke_us: Latency::from_sorted(&revokes),
        goal_p99_us: goal_us,
    };
    print(&report, &database.header);
    if let Some(path) = &args.json {
        let mut text = serde_json::to_string_pretty(&report).context("encoding the JSON report")?;
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("\nJSON written to {}", path.display());
    }
    Ok(())
}

/// Per revocation: µs from the revoke's 200 to the refusal; the polls in all; every
/// poll's and every revoke's round trip, µs.
type Measured = (Vec<u32>, u64, Vec<u32>, Vec<u32>);

async fn measure(
    count: usize,
    admin: &str,
    bases: &[String],
    addrs: &[std::net::SocketAddr],
) -> Result<Measured> {
    let http = setup::http_client()?;
    let first = bases.first().context("no replica")?;
    let made = Made::issuer_and_agent(&http, first, admin).await?;
    let n = bases.len();
    // The agents first, so that registering is not part of any sample.
    let mut agents = Vec::with_capacity(count);
    for i in 0..count {
        let base = &bases[i % n];
        let agent = call(
            &http,
            &format!("{base}/v1/agents/register"),
            Some(&made.issuer_key),
            Some(json!({"name": format!("Revoked{i}"), "scopes": GRANTED})),
            201,
        )
        .await?;
        agents.push((
            setup::str_member(&agent, "agent_id")?,
            setup::str_member(&agent, "token")?,
        ));
    }
    eprintln!("registered {count} agents over {n} replicas; revoking them one by one…");
    // One keep-alive connection per replica for the polls, as a receiver would hold.
    let mut pollers = Vec::with_capacity(n);
    for addr in addrs {
        let host = HeaderValue::from_str(&addr.to_string()).context("the host header")?;
        pollers.push((load::connect(*addr).await?, host, *addr));
    }
    let (mut samples, mut polls, mut rtts, mut revokes) =
        (Vec::new(), 0u64, Vec::new(), Vec::new());
    for (i, (id, token)) in agents.iter().enumerate() {
        let (a, b) = (i % n, (i + 1) % n);
        let (sender, host, addr) = pollers.get_mut(b).context("no poller")?;
        let target = Target::new(
            "poll",
            *addr,
            "/v1/verify",
            Bytes::from(serde_json::to_vec(&json!({"token": token})).context("encoding a verify")?),
        );
        // Replica b accepts the token before the revocation.
        let (valid, _) = verify(sender, &target, host).await?;
        ensure!(
            valid.is_none(),
            "replica {b} refused agent {id}'s token before its revocation: {valid:?}"
        );
        let sent = Instant::now();
        call(
            &http,
            &format!("{}/v1/agents/{id}/revoke", bases[a]),
            Some(&made.issuer_key),
            Some(json!({})),
            200,
        )
        .await?;
        let acknowledged = Instant::now();
        revokes.push(micros(acknowledged - sent));
        loop {
            let t0 = Instant::now();
            let (refused, _) = verify(sender, &target, host).await?;
            let now = Instant::now();
            rtts.push(micros(now - t0));
            polls += 1;
            if let Some(code) = refused {
                ensure!(
                    REVOKED.contains(&code.as_str()),
                    "replica {b} refused agent {id}'s token with {code}, not {REVOKED:?}"
                );
                samples.push(micros(now - acknowledged));
                break;
            }
            if now - acknowledged > GIVE_UP {
                bail!(
                    "replica {b} still accepts agent {id}'s token {} s after replica {a} \
                     acknowledged its revocation",
                    GIVE_UP.as_secs()
                );
            }
            tokio::time::sleep(POLL_PAUSE).await;
        }
    }
    Ok((samples, polls, rtts, revokes))
}

/// One `POST /v1/verify {token}`: `None` if valid, else the refusal's code.
async fn verify(
    sender: &mut Sender,
    target: &Target,
    host: &HeaderValue,
) -> Result<(Option<String>, Value)> {
    let (status, body) = load::exchange(sender, target, host)
        .await
        .map_err(|e| anyhow!("polling verify: {e}"))?;
    let text = String::from_utf8_lossy(&body);
    ensure!(
        status == hyper::StatusCode::OK,
        "polling verify: status {status}: {text}"
    );
    let v: Value =
        serde_json::from_slice(&body).with_context(|| format!("polling verify: {text}"))?;
    match v["valid"].as_bool() {
        Some(true) => Ok((None, v)),
        Some(false) => Ok((
            Some(v["error"]["code"].as_str().unwrap_or("?").to_owned()),
            v,
        )),
        None => bail!("polling verify: no `valid`: {text}"),
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn ms(us: u32) -> String {
    format!("{:.1} ms", f64::from(us) / 1000.0)
}

fn print(r: &RevocationReport, database: &[String]) {
    println!();
    println!("Bonafide load harness: revocation propagation between replicas on one PostgreSQL");
    println!("date:     {}", r.date);
    println!("command:  {}", r.command);
    println!(
        "machine:  {} CPUs, {}, {}",
        r.machine.cpus, r.machine.cpu_model, r.machine.kernel
    );
    println!("servers:  {}", r.servers);
    for line in database {
        println!("{line}");
    }
    println!(
        "method:   {} agents, agent i registered on replica i mod {n}; for each: its token \
         verified valid on replica (i+1) mod {n}, POST /v1/agents/{{id}}/revoke on replica i mod \
         {n}, then from its 200 POST /v1/verify {{token}} on replica (i+1) mod {n} in a closed \
         loop ({} ms pause) until refused ({}); a sample is the time from the 200 to the \
         refusal's answer",
        r.revocations,
        POLL_PAUSE.as_millis(),
        REVOKED.join(" or "),
        n = r.replicas,
    );
    println!(
        "polls:    {:.1} verifies per revocation on average; one verify p50 {} µs, p99 {} µs \
         (the resolution); the revoke itself p50 {} µs, p99 {} µs",
        r.mean_polls, r.poll_us.p50, r.poll_us.p99, r.revoke_us.p50, r.revoke_us.p99
    );
    println!();
    let p = &r.propagation_us;
    println!(
        "propagation over {} revocations: p50 {}, p90 {}, p99 {}, max {}, mean {:.1} ms",
        r.revocations,
        ms(p.p50),
        ms(p.p90),
        ms(p.p99),
        ms(p.max),
        p.mean / 1000.0
    );
    println!(
        "propagation p99: {}  (goal ≤ {}: {})",
        ms(p.p99),
        ms(r.goal_p99_us),
        if r.goal_met { "met" } else { "NOT met" }
    );
}
