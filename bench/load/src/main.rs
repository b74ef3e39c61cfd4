//! `bonafide-load`: HTTP load harness for `POST /v1/verify` (docs/design.md, "Performance
//! model"), measured against its floor in the same run.
//!
//! One process, one command, one comparison ([`Mode`]) per run. Every paired
//! comparison has the same shape (`pair`): a setup in its own module (`modes/`) starts
//! the servers and returns two or more [`load::Target`]s; the same closed-loop load
//! generator (`load`) drives them, one after the other or interleaved
//! (`--interleave`), for `--rounds` rounds; `report` prints per run throughput,
//! latency p50/p90/p99/max, the CPU of the load generator, of the servers and of the
//! rest of the machine, server CPU per request, and the ratio of the subject to its
//! baseline against the comparison's goal. `--json FILE` also writes everything.
//!
//! The comparisons (bench/README.md describes each):
//!
//! - default: Bonafide's `POST /v1/verify` vs a one-Ed25519-verify axum endpoint
//!   (`--breakdown` adds two diagnostic endpoints), in this process;
//! - `--compare-audit`: verify decisions audited vs not, same store;
//! - `--compare-policy`: a verify with a consent policy and a spend vs without;
//! - `--compare-issuer-signed`: an issuer-signed token's verify vs a registry-signed one;
//! - `--compare-verify-action`: a signed action's verify-action vs a token verify;
//! - `--compare-backend`: audited verify on PostgreSQL vs on SQLite, one `bonafide
//!   serve` process each (issue 16);
//! - `--compare-replicas`: two replicas on one PostgreSQL vs one, same connections;
//! - `--replica-spends`: spends on one shared budget over three replicas vs plain
//!   verifies, then a burst against a small cap that must allow exactly cap/amount;
//! - `--revocation-propagation`: time from a revoke's 200 on one replica to the
//!   first refusal on another (not a paired load: its own report);
//! - `--push-events`: time from a revoke to its refusal at 250 receivers subscribed
//!   over SSE (issue 19; its own report);
//! - `--audit-storage N`: database bytes per audited verify, per table and index
//!   (issue 17 goal 6; its own report).
//!
//! In-process servers share one multi-thread tokio runtime (default worker count =
//! CPUs); the load generator runs on its own single-threaded runtime on the main
//! thread, as an external `wrk -t1` would. No tracing subscriber is installed, so the
//! server's per-request access log is off (replica processes run with
//! `RUST_LOG=warn` for the same reason). All traffic stays on 127.0.0.1; everything
//! stops by itself.

mod cluster;
mod cpu;
mod fsync;
mod load;
mod modes;
mod pair;
mod report;
mod setup;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, ensure};
use clap::{ArgGroup, Parser};
use serde::Serialize;

/// What is measured against what: one variant per comparison, each set up in its own
/// module under `modes/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Bonafide's `POST /v1/verify` against the one-Ed25519-verify endpoint.
    Baseline,
    /// Bonafide with verify decisions audited against the same server without.
    CompareAudit,
    /// Verify with rate limits on against the same store's server with them off.
    CompareRateLimits,
    /// A verify with a consent policy and a spend against one without a policy, on
    /// the same (default, audited) server.
    ComparePolicy,
    /// An issuer-signed token's verify against a registry-signed one's, same agent,
    /// same server.
    CompareIssuerSigned,
    /// A signed action's `verify-action` against the same agent's token `verify`,
    /// same (default, audited) server.
    CompareVerifyAction,
    /// Audited verify on a PostgreSQL replica against a SQLite one (processes).
    CompareBackend,
    /// Two replicas on one PostgreSQL against one, same total connections.
    CompareReplicas,
    /// Spends on one budget over several replicas against plain verifies.
    ReplicaSpends,
    /// Revocation on one replica until refused by another.
    RevocationPropagation,
    /// Revocation until refused by receivers subscribed over SSE (issue 19).
    PushEvents,
    /// Database bytes per audited verify (issue 17 goal 6).
    AuditStorage,
}

impl Mode {
    fn from_args(args: &Args) -> Mode {
        [
            (args.compare_audit, Mode::CompareAudit),
            (args.compare_rate_limits, Mode::CompareRateLimits),
            (args.compare_policy, Mode::ComparePolicy),
            (args.compare_issuer_signed, Mode::CompareIssuerSigned),
            (args.compare_verify_action, Mode::CompareVerifyAction),
            (args.compare_backend, Mode::CompareBackend),
            (args.compare_replicas, Mode::CompareReplicas),
            (args.replica_spends, Mode::ReplicaSpends),
            (args.revocation_propagation, Mode::RevocationPropagation),
            (args.push_events, Mode::PushEvents),
            (args.audit_storage.is_some(), Mode::AuditStorage),
        ]
        .into_iter()
        .find_map(|(set, mode)| set.then_some(mode))
        .unwrap_or(Mode::Baseline)
    }

    fn default_connections(self) -> usize {
        match self {
            Mode::Baseline => 16,
            _ => 32,
        }
    }

    /// Whether the comparison runs `bonafide serve` processes on PostgreSQL.
    fn uses_postgres(self) -> bool {
        matches!(
            self,
            Mode::CompareBackend
                | Mode::CompareReplicas
                | Mode::ReplicaSpends
                | Mode::RevocationPropagation
        )
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "bonafide-load",
    about = "POST /v1/verify (EdDSA token, scope check) vs a minimal one-Ed25519-verify \
             axum endpoint: same machine, same run, same connections. Other comparisons \
             with the --compare-* flags (at most one).",
    group(ArgGroup::new("mode").multiple(false).args([
        "compare_audit", "compare_policy", "compare_issuer_signed", "compare_verify_action",
        "compare_backend", "compare_replicas", "replica_spends", "revocation_propagation",
        "push_events", "compare_rate_limits", "audit_storage",
    ]))
)]
pub struct Args {
    /// Concurrent HTTP/1.1 keep-alive connections per target. Default 16, or 32 with
    /// any `--compare-*` or replica mode (a target on several replicas spreads them).
    #[arg(long)]
    pub connections: Option<usize>,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Warm-up seconds before each measured run (same connections, not recorded).
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Rounds of (baseline, then Bonafide); the best run of each target is reported.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// Instead of one target after the other, open every target's connections at
    /// once and let one target send at a time, switching every `--slice-ms`; each
    /// target's throughput is over its share of the window. Both then see the same
    /// machine, which makes the ratio robust to other load on a shared machine.
    #[arg(long)]
    pub interleave: bool,
    /// Slice length for `--interleave`, milliseconds.
    #[arg(long, default_value_t = 200, value_name = "MS")]
    pub slice_ms: u64,
    /// Also load two diagnostic endpoints on the same registry state, to split
    /// Bonafide's cost: `check` (bonafide_server's `check_token` plus the scope check
    /// behind a bare axum route) and `handler` (the real `verify_post` handler on a
    /// bare router: no request-id, access-log, catch-panic or body-limit layers).
    #[arg(long, conflicts_with = "mode")]
    pub breakdown: bool,
    /// Instead of the one-verify baseline, compare two real Bonafide servers on the
    /// same store, same token, same request: `unaudited` (`audit_verify: false`, as
    /// `serve --no-audit-verify`) as the baseline, and `audited` (the default: every
    /// decision group-committed to the audit log and answered once durable). Goal:
    /// audited ≥ 0.8× unaudited throughput and audited p99 ≤ 5 ms.
    #[arg(long)]
    pub compare_audit: bool,
    /// Instead of the one-verify baseline, compare two real Bonafide servers on the
    /// same store, same token, same anonymous request, both audited: `unlimited`
    /// (`serve --rate-limits off`) as the baseline, and `limited` (rate limits on;
    /// the address and issuer quotas raised so that nothing is refused: the cost of
    /// counting and of the leases from the store's shared buckets). Goal: limited ≥
    /// 0.95× unlimited throughput.
    #[arg(long)]
    pub compare_rate_limits: bool,
    /// Instead of the one-verify baseline, compare on ONE real Bonafide server (the
    /// default configuration: decisions audited, receipts signed) a verify with a
    /// consent policy and a spend (`policy-spend`: action, resource, amount 0.01 USD,
    /// charged to the policy's budget) against a verify of a token without a policy
    /// (`no-policy`), both with a receiver key. Goal: policy-spend ≥ 0.8× no-policy
    /// throughput, p99 of both recorded. Afterwards the budget spent must equal
    /// 0.01 USD × the allowed spends answered (checked with `POST /v1/simulate`).
    #[arg(long)]
    pub compare_policy: bool,
    /// Instead of the one-verify baseline, compare on ONE real Bonafide server (the
    /// default configuration, EdDSA registry key) the verify of a token the issuer
    /// signed with its own registered key (`issuer-signed`: an Ed25519 key generated
    /// here, its public JWK registered with `POST /v1/issuer/keys`) against the verify
    /// of the same agent's registry-signed token (`registry-signed`), same request
    /// shape. Goal: registry-signed / issuer-signed throughput ≤ 1.05×; the server CPU
    /// per request ratio is reported beside it.
    #[arg(long)]
    pub compare_issuer_signed: bool,
    /// Measurement only, with `--compare-issuer-signed` or the default comparison:
    /// run the server with verify decisions not audited (`Config { audit_verify:
    /// false }`, as `serve --no-audit-verify`), so that the audit log's group commit,
    /// which dominates latency, does not hide a per-request difference (the default
    /// comparison's target is then named `unaudited`). Not a deployment setting to
    /// judge a goal by alone.
    #[arg(long, conflicts_with_all = [
        "compare_audit", "compare_policy", "compare_verify_action", "compare_backend",
        "compare_replicas", "replica_spends", "revocation_propagation", "compare_rate_limits",
    ])]
    pub unaudited: bool,
    /// Instead of the one-verify baseline, compare on ONE real Bonafide server (the
    /// default configuration: decisions audited) `POST /v1/agents/{id}/verify-action`
    /// of an action signed by the agent's own Ed25519 key (registered as its
    /// `public_key`; a fresh nonce and signature per request, pre-computed before the
    /// runs) against `POST /v1/verify` of the same agent's token (`verify`). Every
    /// answer must be 200 and allowed. No goal: throughput, p50/p99 and the ratio are
    /// recorded.
    #[arg(long)]
    pub compare_verify_action: bool,
    /// Audited `POST /v1/verify` on PostgreSQL (`postgres`: one `bonafide serve
    /// --database-url` process) vs on SQLite (`sqlite`: one `bonafide serve --data-dir`
    /// process), same binary, same request, same connections. Goal: postgres ≥ 0.8×
    /// sqlite throughput. Server CPU per request counts the replica and, for
    /// PostgreSQL, its server processes (when the harness started the cluster).
    #[arg(long)]
    pub compare_backend: bool,
    /// Two replicas on one PostgreSQL (`two-replicas`: the connections split between
    /// them) vs one of them alone (`one-replica`), same total connections, audited
    /// `POST /v1/verify`. No goal (on 2 cores the point is that it does not fall);
    /// throughput, p50/p99 and each replica's CPU per request are recorded.
    #[arg(long)]
    pub compare_replicas: bool,
    /// Spends on ONE shared budget over `--replicas` (default 3) replicas on one
    /// PostgreSQL (`policy-spend`) vs plain verifies over the same replicas
    /// (`no-policy`); afterwards every replica must read back exactly 0.01 USD × the
    /// allowed spends, and a burst of spends against a small cap over all replicas must
    /// allow exactly cap/amount, no more.
    #[arg(long)]
    pub replica_spends: bool,
    /// Revocation propagation: `--revocations` agents revoked one by one on one
    /// replica (`POST /v1/agents/{id}/revoke`), each polled on another replica until
    /// refused; the time from the revoke's 200 to the first refusal, p50/p99. Goal:
    /// p99 ≤ 1 s.
    #[arg(long)]
    pub revocation_propagation: bool,
    /// Replicas: `--compare-replicas` 2 (only 2), `--replica-spends` 3,
    /// `--revocation-propagation` 2 (revoked on replica i mod N, polled on i+1 mod N).
    #[arg(long, value_name = "N")]
    pub replicas: Option<usize>,
    /// Revocation to refusal at `--receivers` receivers subscribed to the registry's
    /// push events over SSE (issue 19), each a `bonafide_client` receiver layer
    /// verifying offline and fed by its own subscription; `--revocations` tokens
    /// revoked one by one. Goal p99 ≤ 1 s. Not a paired load: its own report.
    #[arg(long)]
    pub push_events: bool,
    /// Database bytes per audited verify (issue 17 goal 6): N audited `POST
    /// /v1/verify` with a receiver key (each a log entry and a stored receipt) on one
    /// server's SQLite data dir, then the database's pages per table and index
    /// (`dbstat`) before and after, per verify. Goal ≤ 500 B. Not a paired load: its
    /// own report; `--connections` (default 32) sends them.
    #[arg(long, value_name = "N")]
    pub audit_storage: Option<u64>,
    /// `--push-events`: subscribed receivers.
    #[arg(long, default_value_t = 250, value_name = "N")]
    pub receivers: usize,
    /// `--push-events`: receivers acknowledge each event (`POST /v1/events/ack`).
    #[arg(long)]
    pub push_acks: bool,
    /// `--revocation-propagation`, `--push-events`: revocations measured.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub revocations: usize,
    /// The PostgreSQL server for the replica modes: a URL whose role may create
    /// databases; a fresh database is created for the run and dropped at the end.
    /// Default: a throwaway cluster started with `scripts/pg-test-cluster` under
    /// `--data-dir` (or the system temp dir), restarted with `fsync`,
    /// `synchronous_commit` and `full_page_writes` on (the script turns them off), and
    /// stopped at the end.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// The `bonafide` binary the replica modes run. Default: `bonafide` next to this
    /// executable (`bench/run-load.sh` builds both in release).
    #[arg(long, value_name = "PATH")]
    pub bonafide_bin: Option<PathBuf>,
    /// Directory in which the temporary data dir (SQLite store) is created. Default:
    /// the system temp dir. With `--compare-audit`, `--compare-policy`,
    /// `--compare-issuer-signed` (audited) and the replica modes it must be on a real
    /// disk: on a tmpfs fsync is free and the audit log looks cheaper than it is.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The disk's durable-write latency, measured in the same run: N appends of
    /// 4 KiB, each followed by fdatasync, on a file under `--data-dir` (removed
    /// after), before and after the load; p50/p90/p99/max in the report (`fsync`).
    /// Default 500 with `--compare-audit` (its latency goal is judged against it),
    /// otherwise 0 (off); any paired comparison takes it.
    #[arg(long, value_name = "N")]
    pub fsync_samples: Option<usize>,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

// The same allocator as the `bonafide` binary, for every target in this process.
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
    let mode = Mode::from_args(&args);
    let connections = args.connections.unwrap_or(mode.default_connections());
    ensure!(
        (1..=4096).contains(&connections),
        "--connections must be 1..=4096"
    );
    ensure!(args.seconds >= 1, "--seconds must be at least 1");
    ensure!(args.rounds >= 1, "--rounds must be at least 1");
    ensure!(args.slice_ms >= 10, "--slice-ms must be at least 10");
    ensure!(
        args.replicas.is_none() || mode.uses_postgres(),
        "--replicas is for the replica modes"
    );
    ensure!(
        args.database_url.is_none() && args.bonafide_bin.is_none() || mode.uses_postgres(),
        "--database-url and --bonafide-bin are for the replica modes"
    );
    ensure!(
        args.fsync_samples.is_none()
            || !matches!(
                mode,
                Mode::RevocationPropagation | Mode::PushEvents | Mode::AuditStorage
            ),
        "--fsync-samples is for the paired comparisons"
    );
    if mode == Mode::RevocationPropagation {
        return modes::revocation::run(&args);
    }
    if mode == Mode::PushEvents {
        return modes::push::run(&args);
    }
    if let Some(verifies) = args.audit_storage {
        return modes::storage::run(&args, verifies, connections);
    }
    pair::run(mode, &args, connections)
}
