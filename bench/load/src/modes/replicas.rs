//! `--compare-replicas` (issue 16): two replicas on one PostgreSQL database
//! (`two-replicas`: the connections split evenly between them) vs one of them alone
//! (`one-replica`), same total connections, audited `POST /v1/verify` of one token.
//! No goal: on a small machine the point is that throughput does not fall; the CPU
//! per request of each replica is recorded.

use anyhow::{Context, Result, ensure};

use crate::cluster::ReplicaSet;
use crate::load::Target;
use crate::modes::{endpoints, processes_line, with_postgres};
use crate::pair::{Bench, Ctx};
use crate::report::{Goal, Spec};
use crate::setup::{self, Made, REQUESTED};

pub const SPEC: Spec = Spec {
    baseline: "one-replica",
    subject: "two-replicas",
    title: "audited POST /v1/verify on two replicas on one PostgreSQL vs one replica, same \
            total connections",
    goal: Goal::None,
    p99_goal_us: None,
    record_baseline_p99: true,
    fsync_latency_factor: None,
};

pub async fn setup(ctx: &Ctx<'_>) -> Result<Bench> {
    ensure!(
        ctx.args.replicas.is_none_or(|n| n == 2),
        "--compare-replicas compares two replicas with one: --replicas must be 2"
    );
    ensure!(
        ctx.connections >= 2,
        "--compare-replicas needs at least 2 connections"
    );
    let (mut servers, bin, database) = with_postgres(ctx.args).await?;
    let dir = servers
        .dir
        .as_ref()
        .map(|d| d.path().to_owned())
        .context("no temp dir")?;
    let pg = servers.postgres.as_mut().context("no PostgreSQL")?;
    let set = ReplicaSet::start(pg, &bin, &dir, "replicas", 2).await?;
    let http = setup::http_client()?;
    let first = &set.replicas[0];
    let made = Made::issuer_and_agent(&http, &first.url, &set.admin).await?;
    // Both replicas accept the token (one registry).
    for r in &set.replicas {
        setup::check_bonafide(&http, &r.url, &made.token, true).await?;
    }
    let body = setup::verify_body(&made.token)?;
    let target = |name, replicas| Target {
        expect_audit_index: Some(true),
        on_postgres: true,
        ..Target::on_processes(name, endpoints(replicas), "/v1/verify", body.clone())
    };
    let targets = vec![
        target(SPEC.baseline, &set.replicas[..1]),
        target(SPEC.subject, &set.replicas[..]),
    ];
    servers.replicas.extend(set.replicas);
    let db_root = servers.postgres.as_ref().and_then(|p| p.postmaster_pid());
    let mut bench = Bench::new(
        SPEC,
        targets,
        servers,
        format!(
            "both POST /v1/verify {{token, scopes_requested:[\"{REQUESTED}\"]}} of one token, \
             decisions audited, no receiver key; one-replica: every connection to replica 0; \
             two-replicas: the same number of connections, alternately to replica 0 and 1; \
             must be valid and allowed with an audit_index"
        ),
    );
    bench.sections.push(database);
    bench.db_root = db_root;
    bench.processes = Some(processes_line(
        &bin,
        "2 replicas on one fresh PostgreSQL database",
    ));
    Ok(bench)
}
