//! One module per comparison: each sets up its servers and targets and says what is
//! compared with what ([`crate::report::Spec`]); `pair` runs them all the same way.
//! A new comparison is a new module here, a [`Mode`] variant and its flag.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::Mode;
use crate::cluster::{self, Postgres, Replica};
use crate::load::Endpoint;
use crate::pair::{Bench, Ctx};
use crate::report::Section;
use crate::setup::{self, Servers};

pub mod audit;
pub mod backend;
pub mod baseline;
pub mod issuer_signed;
pub mod policy;
pub mod push;
pub mod rate_limits;
pub mod replicas;
pub mod revocation;
pub mod shared_budget;
pub mod storage;
pub mod verify_action;

pub async fn setup(mode: Mode, ctx: &Ctx<'_>) -> Result<Bench> {
    match mode {
        Mode::Baseline => baseline::setup(ctx).await,
        Mode::CompareAudit => audit::setup(ctx).await,
        Mode::CompareRateLimits => rate_limits::setup(ctx).await,
        Mode::ComparePolicy => policy::setup(ctx).await,
        Mode::CompareIssuerSigned => issuer_signed::setup(ctx).await,
        Mode::CompareVerifyAction => verify_action::setup(ctx).await,
        Mode::CompareBackend => backend::setup(ctx).await,
        Mode::CompareReplicas => replicas::setup(ctx).await,
        Mode::ReplicaSpends => shared_budget::setup(ctx).await,
        // Not a paired load: `main` runs it on its own.
        Mode::RevocationPropagation => anyhow::bail!("revocation propagation is not paired"),
        Mode::PushEvents => anyhow::bail!("push events are not paired"),
        Mode::AuditStorage => anyhow::bail!("audit storage is not paired"),
    }
}

/// What the replica modes start from: a temporary dir (key-encryption keys, SQLite
/// data) and the PostgreSQL server in `servers`, the `bonafide` binary, and the
/// report's `database` section.
pub async fn with_postgres(args: &crate::Args) -> Result<(Servers, PathBuf, Section)> {
    let bin = cluster::bonafide_bin(args.bonafide_bin.as_deref())?;
    let dir = setup::temp_dir(args.data_dir.as_deref())?;
    let pg = Postgres::start(args.database_url.as_deref(), args.data_dir.as_deref())?;
    let (line, json) = pg
        .describe()
        .await
        .context("asking PostgreSQL its settings")?;
    let section = Section {
        header: vec![format!("database: {line}")],
        ..Section::json("database", json)?
    };
    let servers = Servers {
        dir: Some(dir),
        postgres: Some(pg),
        ..Servers::default()
    };
    Ok((servers, bin, section))
}

/// Where a target's connections go for `replicas`.
pub fn endpoints(replicas: &[Replica]) -> Vec<Endpoint> {
    replicas
        .iter()
        .map(|r| Endpoint {
            addr: r.addr,
            pid: r.pid(),
        })
        .collect()
}

/// The `servers:` line for `n` replica processes of `bin`.
pub fn processes_line(bin: &std::path::Path, what: &str) -> String {
    format!(
        "{what}: `{} serve` processes (RUST_LOG=warn, --signing-alg EdDSA, one --public-url)",
        bin.display()
    )
}
