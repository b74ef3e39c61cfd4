//! `--compare-backend` (issue 16): audited `POST /v1/verify` on PostgreSQL vs on
//! SQLite, one `bonafide serve` process each (same binary, same flags but the store),
//! same request, same connections; interleaved with `--interleave`. Each is its own
//! registry (issuer, agent, token made over HTTP). Goal: postgres ≥ 0.8× sqlite.
//! Server CPU per request counts the replica, plus for PostgreSQL its cluster's
//! processes when the harness started it: SQLite does that work inside the replica.

use std::ffi::OsString;

use anyhow::{Context, Result};

use crate::cluster::{Replica, ReplicaSet};
use crate::load::Target;
use crate::modes::{endpoints, processes_line, with_postgres};
use crate::pair::{Bench, Ctx};
use crate::report::{Goal, Spec};
use crate::setup::{self, Made, REQUESTED};

pub const SPEC: Spec = Spec {
    baseline: "sqlite",
    subject: "postgres",
    title: "audited POST /v1/verify on PostgreSQL vs on SQLite (one `bonafide serve` process \
            each, same binary, same load)",
    goal: Goal::AtLeast(0.8),
    p99_goal_us: None,
    record_baseline_p99: true,
    fsync_latency_factor: None,
};

pub async fn setup(ctx: &Ctx<'_>) -> Result<Bench> {
    let (mut servers, bin, database) = with_postgres(ctx.args).await?;
    let dir = servers
        .dir
        .as_ref()
        .map(|d| d.path().to_owned())
        .context("no temp dir")?;
    // SQLite: the data dir under the run's temp dir (a real disk with --data-dir),
    // its key-encryption key made there on first start, as by default.
    let admin = crate::cluster::bonafide_output(&bin, &["keys", "new-admin-key"])?;
    let sqlite_dir = dir.join("sqlite");
    let store: Vec<OsString> = vec!["--data-dir".into(), sqlite_dir.clone().into()];
    let sqlite = Replica::spawn(&bin, "sqlite", &store, &admin)?;
    let pg = servers.postgres.as_mut().context("no PostgreSQL")?;
    let set = ReplicaSet::start(pg, &bin, &dir, "backend", 1).await?;
    let http = setup::http_client()?;
    let mut targets = Vec::new();
    for (name, replica, admin, on_postgres) in [
        (SPEC.baseline, &sqlite, admin.as_str(), false),
        (SPEC.subject, &set.replicas[0], set.admin.as_str(), true),
    ] {
        let made = Made::issuer_and_agent(&http, &replica.url, admin).await?;
        setup::check_bonafide(&http, &replica.url, &made.token, true).await?;
        targets.push(Target {
            expect_audit_index: Some(true),
            on_postgres,
            ..Target::on_processes(
                name,
                endpoints(std::slice::from_ref(replica)),
                "/v1/verify",
                setup::verify_body(&made.token)?,
            )
        });
    }
    let sqlite_line = format!(
        "sqlite: data dir {} ({}), WAL, synchronous=FULL",
        sqlite_dir.display(),
        crate::report::file_system(&sqlite_dir)
    );
    servers.replicas.push(sqlite);
    servers.replicas.extend(set.replicas);
    let db_root = servers.postgres.as_ref().and_then(|p| p.postmaster_pid());
    let mut database = database;
    database.header.push(format!("          {sqlite_line}"));
    let mut bench = Bench::new(
        SPEC,
        targets,
        servers,
        format!(
            "both POST /v1/verify {{token, scopes_requested:[\"{REQUESTED}\"]}} of their own \
             registry's token, decisions audited (the default), no receiver key; must be valid \
             and allowed with an audit_index"
        ),
    );
    bench.sections.push(database);
    bench.db_root = db_root;
    bench.processes = Some(processes_line(
        &bin,
        "2 (sqlite: --data-dir; postgres: --database-url on a fresh database)",
    ));
    Ok(bench)
}
