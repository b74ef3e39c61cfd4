//! The load generator: per target, C HTTP/1.1 keep-alive connections (hyper client,
//! one task per connection) in a closed loop, a warm-up then a measured window; every
//! answer checked; the CPU used while each target was active.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cpu;
use crate::modes::policy::CURRENCY;
use crate::modes::verify_action::ActionBodies;
use crate::report::{Latency, ProcessUse, ReplicaUse, Run};

/// Where a target's connections go: connection i to endpoint i mod N.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// The server process answering there, whose CPU is measured from `/proc`; `None`
    /// for a server in this process (its CPU is this process's minus the client's).
    pub pid: Option<u32>,
}

/// One endpoint (or set of replicas) to load.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: &'static str,
    pub endpoints: Vec<Endpoint>,
    pub path: &'static str,
    pub body: Bytes,
    /// Whether the answer must also say `"allowed": true`.
    pub expect_allowed: bool,
    /// Whether the answer must carry an `audit_index` (`Some(true)`), must not
    /// (`Some(false)`), or either.
    pub expect_audit_index: Option<bool>,
    /// Sent as `X-API-Key` (a receiver's key), when set.
    pub api_key: Option<HeaderValue>,
    /// Whether the answer must carry a `receipt_id`.
    pub expect_receipt: bool,
    /// Whether the answer must carry `remaining`: each allowed answer charged a
    /// budget, and the run counts them ([`Run::spends`]).
    pub expect_remaining: bool,
    /// `--compare-verify-action`: when set, each request's body is the next one of
    /// these (a fresh nonce and signature each) instead of `body`, and the answer is a
    /// verify-action answer (no `valid` member; `allowed` must be true).
    pub bodies: Option<Arc<ActionBodies>>,
    /// Whether the PostgreSQL cluster's CPU counts as this target's server CPU (its
    /// replicas are on it).
    pub on_postgres: bool,
}

impl Target {
    /// A `POST` of `body` to a server in this process, whose answer must be valid and
    /// allowed; the rest expected of it is set by the caller.
    pub fn new(name: &'static str, addr: SocketAddr, path: &'static str, body: Bytes) -> Self {
        Target {
            name,
            endpoints: vec![Endpoint { addr, pid: None }],
            path,
            body,
            expect_allowed: true,
            expect_audit_index: None,
            api_key: None,
            expect_receipt: false,
            expect_remaining: false,
            bodies: None,
            on_postgres: false,
        }
    }

    /// The same, to server processes (replicas), connections spread over them.
    pub fn on_processes(
        name: &'static str,
        endpoints: Vec<Endpoint>,
        path: &'static str,
        body: Bytes,
    ) -> Self {
        Target {
            endpoints,
            ..Target::new(name, ([127, 0, 0, 1], 0).into(), path, body)
        }
    }

    fn external(&self) -> bool {
        self.endpoints.iter().any(|e| e.pid.is_some())
    }
}

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

pub type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

pub async fn connect(addr: SocketAddr) -> Result<Sender> {
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
pub async fn exchange(
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
#[allow(clippy::too_many_arguments)]
async fn drive(
    mut sender: Sender,
    target: Target,
    addr: SocketAddr,
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
    let host = match HeaderValue::from_str(&addr.to_string()) {
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

/// The server processes watched while loading: every target's replicas (by pid) and,
/// when known, the PostgreSQL postmaster whose process tree is the database's CPU.
#[derive(Debug, Clone, Default)]
pub struct Watched {
    pids: Vec<u32>,
    db_root: Option<u32>,
}

impl Watched {
    pub fn new(targets: &[Target], db_root: Option<u32>) -> Self {
        let mut pids: Vec<u32> = Vec::new();
        for pid in targets
            .iter()
            .flat_map(|t| t.endpoints.iter().filter_map(|e| e.pid))
        {
            if !pids.contains(&pid) {
                pids.push(pid);
            }
        }
        Watched { pids, db_root }
    }

    fn slot(&self, pid: u32) -> Option<usize> {
        self.pids.iter().position(|&p| p == pid)
    }
}

/// CPU counters at one instant.
#[derive(Debug, Clone)]
struct Sample {
    client: Option<u64>,
    process: Option<u64>,
    machine: Option<u64>,
    /// Per watched pid, in [`Watched`]'s order.
    pids: Vec<Option<u64>>,
    db: Option<u64>,
}

impl Sample {
    /// Must run on the load-generator thread (`client` is this thread's CPU).
    fn now(watched: &Watched) -> Self {
        let (client, process) = cpu::self_ns();
        Sample {
            client,
            process,
            machine: cpu::machine_busy_ns(),
            pids: watched.pids.iter().map(|&p| cpu::process_ns(p)).collect(),
            db: watched.db_root.and_then(cpu::tree_ns),
        }
    }
}

/// CPU used between samples, summed over the intervals a target was active.
#[derive(Debug, Default, Clone)]
struct CpuUse {
    intervals: u32,
    active: Duration,
    client: Option<u64>,
    process: Option<u64>,
    machine: Option<u64>,
    pids: Vec<Option<u64>>,
    db: Option<u64>,
}

fn acc(sum: &mut Option<u64>, a: Option<u64>, b: Option<u64>, first: bool) {
    let d = b.zip(a).and_then(|(b, a)| b.checked_sub(a));
    *sum = match (first, *sum, d) {
        (true, _, d) => d,
        (false, Some(s), Some(d)) => Some(s + d),
        _ => None,
    };
}

impl CpuUse {
    fn add(&mut self, from: &Sample, to: &Sample, active: Duration) {
        let first = self.intervals == 0;
        self.intervals += 1;
        acc(&mut self.client, from.client, to.client, first);
        acc(&mut self.process, from.process, to.process, first);
        acc(&mut self.machine, from.machine, to.machine, first);
        acc(&mut self.db, from.db, to.db, first);
        self.pids.resize(to.pids.len(), None);
        for (i, sum) in self.pids.iter_mut().enumerate() {
            let (a, b) = (
                from.pids.get(i).copied().flatten(),
                to.pids.get(i).copied().flatten(),
            );
            acc(sum, a, b, first);
        }
        self.active += active;
    }

    /// Everything the watched processes used.
    fn watched_total(&self) -> Option<u64> {
        self.pids
            .iter()
            .chain(std::iter::once(&self.db))
            .try_fold(0u64, |s, v| match v {
                Some(v) => Some(s + v),
                // An unknown database (external server) adds nothing.
                None => Some(s),
            })
    }
}

/// Loads `targets` with `connections` connections each for a warm-up, then a measured
/// `window`. With one target it is loaded alone. With several and a `slice`, all
/// connections are open at once but only one target's connections send at a time,
/// switching every `slice` (both in warm-up and window), so every target sees the same
/// machine; each target's throughput is over the time it was active. A target on
/// several endpoints spreads its connections over them (same total).
pub async fn run_group(
    targets: &[Target],
    round: usize,
    connections: usize,
    warmup: Duration,
    window: Duration,
    slice: Duration,
    watched: &Watched,
) -> Result<Vec<Run>> {
    // Per target, per connection: (endpoint index, sender).
    let mut senders = Vec::with_capacity(targets.len());
    for target in targets {
        let mut conns = Vec::with_capacity(connections);
        for i in 0..connections {
            let e = i % target.endpoints.len().max(1);
            let addr = target
                .endpoints
                .get(e)
                .map(|e| e.addr)
                .context("a target without endpoints")?;
            conns.push((e, addr, connect(addr).await?));
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
    let mut tasks: Vec<(usize, usize, JoinHandle<TaskOutcome>)> = Vec::new();
    for (index, (target, conns)) in targets.iter().zip(senders).enumerate() {
        for (e, addr, s) in conns {
            let task = drive(
                s,
                target.clone(),
                addr,
                index,
                gate.clone(),
                start,
                end,
                capacity,
            );
            tasks.push((index, e, tokio::spawn(task)));
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
            last = Some((now, Sample::now(watched)));
        }
        let at_end = now >= end;
        let switching = interleaved && now >= next_switch && !at_end;
        if (at_end || switching)
            && let Some((at, sample)) = &last
        {
            let current = Sample::now(watched);
            if let Some(c) = cpu.get_mut(active) {
                c.add(sample, &current, now.min(end).duration_since(*at));
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
    let mut per_endpoint: Vec<Vec<u64>> =
        targets.iter().map(|t| vec![0; t.endpoints.len()]).collect();
    for (index, e, task) in tasks {
        let out = task.await.context("load task panicked")?;
        if let Some(n) = per_endpoint.get_mut(index).and_then(|v| v.get_mut(e)) {
            *n += out.latencies.len() as u64;
        }
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
    for (((target, mut out), use_), counts) in
        targets.iter().zip(per_target).zip(cpu).zip(per_endpoint)
    {
        out.latencies.sort_unstable();
        let requests = out.latencies.len() as u64;
        let active = if use_.intervals == 0 || use_.active.is_zero() {
            window
        } else {
            use_.active
        };
        let (process, server_us, processes) = if target.external() {
            external_use(target, &use_, &counts, watched, requests, active)
        } else {
            (
                use_.process,
                cpu::server_us_per_request(use_.client, use_.process, requests),
                None,
            )
        };
        // Everything else busy on the machine (other processes, hypervisor steal).
        let others = use_.machine.zip(process).map(|(m, p)| m.saturating_sub(p));
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
            client_cpu_pct_of_core: cpu::pct_of_core(use_.client, active),
            process_cpu_pct_of_core: cpu::pct_of_core(process, active),
            others_cpu_pct_of_core: cpu::pct_of_core(others, active),
            server_cpu_us_per_request: server_us,
            processes,
        });
    }
    Ok(runs)
}

/// For a target on server processes: the CPU of the whole benchmark (this process and
/// every watched process), the target's server CPU per request (its replicas and the
/// database), and the split per replica.
fn external_use(
    target: &Target,
    use_: &CpuUse,
    counts: &[u64],
    watched: &Watched,
    requests: u64,
    active: Duration,
) -> (Option<u64>, Option<f64>, Option<ProcessUse>) {
    let total = use_.process.zip(use_.watched_total()).map(|(p, w)| p + w);
    let mut server: Option<u64> = Some(0);
    let mut replicas = Vec::new();
    for (endpoint, &n) in target.endpoints.iter().zip(counts) {
        let ns = endpoint
            .pid
            .and_then(|pid| watched.slot(pid))
            .and_then(|slot| use_.pids.get(slot).copied().flatten());
        server = server.zip(ns).map(|(s, n)| s + n);
        replicas.push(ReplicaUse {
            addr: endpoint.addr.to_string(),
            pid: endpoint.pid,
            requests: n,
            cpu_pct_of_core: cpu::pct_of_core(ns, active),
            cpu_us_per_request: cpu::us_per_request(ns, n),
        });
    }
    // The database counts for the targets on it; it idles while another is loaded.
    let db = use_.db.filter(|_| target.on_postgres);
    let server = match (server, db) {
        (Some(s), Some(db)) => Some(s + db),
        (s, _) => s,
    };
    let processes = ProcessUse {
        replicas,
        db_cpu_pct_of_core: cpu::pct_of_core(db, active),
        db_cpu_us_per_request: cpu::us_per_request(db, requests),
    };
    (
        total,
        cpu::us_per_request(server, requests),
        Some(processes),
    )
}
