//! `--compare-verify-action` (issue 6): ONE real server in the default configuration
//! (decisions audited), an agent registered with its own Ed25519 `public_key`
//! (generated here, kept here). The baseline `verify` is `POST /v1/verify` of a bearer
//! token of a second agent with the same scopes and no key (a token bound to a key
//! needs a proof of possession); the subject `verify-action` is `POST
//! /v1/agents/{id}/verify-action {action, resource, timestamp, nonce, signature}` with
//! a fresh nonce and signature per request, pre-computed before the runs
//! (rounds × (warm-up + seconds) × [`ACTION_BODIES_PER_S`], capped at
//! [`ACTION_BODIES_MAX`]; past them the load generator signs each request itself, and
//! the count is reported). Every answer must be 200 and allowed with an
//! `audit_index` (a `REPLAY` counts as an error). No goal.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, anyhow, ensure};
use bonafide_core::b64;
use bonafide_core::keys::{Algorithm, SigningKey};
use bonafide_server::Config;
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Value, json};

use crate::load::Target;
use crate::pair::{Bench, Ctx};
use crate::report::{Goal, Section, Spec};
use crate::setup::{self, GRANTED, Local, REQUESTED, call, now_s, str_member};

const VERIFY: &str = "verify";
const VERIFY_ACTION: &str = "verify-action";
/// What the agent signs (the action is [`REQUESTED`], one of its scopes).
const ACTION_RESOURCE: &str = "portfolio";
/// Signed bodies pre-computed per second of load (warm-up included) and round, and the
/// most pre-computed; past them the load generator signs each request itself (counted
/// as `signed_live`).
const ACTION_BODIES_PER_S: usize = 20_000;
const ACTION_BODIES_MAX: usize = 2_000_000;

pub const SPEC: Spec = Spec {
    baseline: VERIFY,
    subject: VERIFY_ACTION,
    title: "POST /v1/agents/{id}/verify-action of a signed action vs POST /v1/verify of the \
            same agent's token (same server)",
    goal: Goal::None,
    p99_goal_us: None,
    record_baseline_p99: true,
    fsync_latency_factor: None,
};

pub async fn setup(ctx: &Ctx<'_>) -> Result<Bench> {
    let args = ctx.args;
    let local = Local::start(SPEC.subject, Config::default(), args.data_dir.as_deref()).await?;
    let audited = local.config.audit_verify;
    let (http, base) = (&local.http, &local.base);
    setup::check_bonafide(http, base, &local.token, audited).await?;
    // An agent with its own Ed25519 key, the public JWK registered with it; the
    // private half stays in this process.
    let agent_key = SigningKey::generate(Algorithm::EdDSA)
        .map_err(|e| anyhow!("generating the agent's Ed25519 key: {e}"))?;
    let agent = call(
        http,
        &format!("{base}/v1/agents/register"),
        Some(&local.issuer_key),
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
    // The baseline verifies a bearer token of an agent with the same scopes and no
    // key: a token bound to a key needs a proof of possession per request
    // (PROOF_REQUIRED), which would make the baseline something else.
    let bearer = call(
        http,
        &format!("{base}/v1/agents/register"),
        Some(&local.issuer_key),
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
    // One checked verify of the token and one signed action (then its replay, which
    // must be refused) through the real endpoints before loading.
    let answer = call(
        http,
        &format!("{base}/v1/verify"),
        None,
        Some(verify_body.clone()),
        200,
    )
    .await?;
    ensure!(
        answer["valid"] == true
            && answer["allowed"] == true
            && answer["audit_index"].is_u64() == audited,
        "verify: the check request was not valid and allowed (audited: {audited}): {answer}"
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
        http,
        &format!("{base}{path}"),
        None,
        Some(check.clone()),
        200,
    )
    .await?;
    ensure!(
        answer["allowed"] == true && answer["audit_index"].is_u64() == audited,
        "verify-action: the signed check action was not allowed: {answer}"
    );
    let replay = call(http, &format!("{base}{path}"), None, Some(check), 200).await?;
    ensure!(
        answer_refused(&replay, "REPLAY"),
        "verify-action: the replayed check action was not refused as REPLAY: {replay}"
    );
    // Signed bodies for every request of every round at up to ACTION_BODIES_PER_S
    // (capped).
    let count = usize::try_from(args.warmup + args.seconds)
        .unwrap_or(usize::MAX)
        .saturating_mul(args.rounds)
        .saturating_mul(ACTION_BODIES_PER_S)
        .min(ACTION_BODIES_MAX);
    let bodies = Arc::new(ActionBodies::build(signer, count)?);
    eprintln!(
        "pre-computed {} signed verify-action bodies in {:.1} s",
        bodies.pool.len(),
        bodies.build_s
    );
    let targets = vec![
        Target {
            expect_audit_index: Some(audited),
            ..Target::new(
                VERIFY,
                local.addr,
                "/v1/verify",
                Bytes::from(
                    serde_json::to_vec(&verify_body).context("encoding the verify request")?,
                ),
            )
        },
        Target {
            expect_audit_index: Some(audited),
            bodies: Some(Arc::clone(&bodies)),
            ..Target::new(VERIFY_ACTION, local.addr, path, Bytes::new())
        },
    ];
    let mut bench = Bench::new(
        SPEC,
        targets,
        local.servers,
        format!(
            "one server in the default configuration (decisions audited); verify POST \
             /v1/verify {{token, scopes_requested:[\"{REQUESTED}\"]}} of the agent's token; \
             verify-action POST /v1/agents/{{id}}/verify-action {{action:\"{REQUESTED}\", \
             resource:\"{ACTION_RESOURCE}\", timestamp, nonce, signature}}, a fresh nonce and \
             Ed25519 signature (by the agent's registered public_key) per request; all must be \
             200, allowed, with audit_index (a REPLAY or any refusal is an error)"
        ),
    );
    // What was sent is known only after the load.
    bench.after.push(Box::new(move |_| {
        Box::pin(async move {
            let a = bodies.info();
            let line = format!(
                "actions:  agent {}; {} signed bodies pre-computed in {:.1} s before the runs \
                 (timestamp {}); {} sent, {} of them signed by the load generator during the \
                 load (pool exhausted)",
                a.agent_id,
                a.pool_bodies,
                a.pool_build_s,
                a.pool_timestamp,
                a.bodies_sent,
                a.signed_live
            );
            Ok(Section {
                header: vec![line],
                ..Section::json("actions", &a)?
            })
        })
    }));
    Ok(bench)
}

/// Whether a verify-action answer refused with exactly `code`.
fn answer_refused(answer: &Value, code: &str) -> bool {
    answer["allowed"] == false && answer["reasons"] == json!([code])
}

/// Signs actions as the agent would.
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

/// The bodies the `verify-action` target sends, one per
/// request, each with a fresh nonce: pre-computed before the runs (so the load
/// generator does no signing in the window), then, if they run out, signed by the
/// load generator per request (counted).
#[derive(Debug)]
pub struct ActionBodies {
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
    pub fn next_body(&self) -> Result<Bytes, String> {
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

/// What the `verify-action` target sent.
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
