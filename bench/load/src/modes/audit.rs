//! `--compare-audit`: two real servers in this process on ONE store (same signing key,
//! token and request): `unaudited` (`audit_verify: false`, as `serve
//! --no-audit-verify`) against `audited` (the default: every decision group-committed
//! to the audit log and answered once durable).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bonafide_server::Config;

use crate::load::Target;
use crate::pair::{Bench, Ctx};
use crate::report::{Goal, Spec};
use crate::setup::{self, Local, PUBLIC_URL, REQUESTED};

pub const SPEC: Spec = Spec {
    baseline: "unaudited",
    subject: "audited",
    title: "POST /v1/verify with verify decisions audited vs not (same store, same token)",
    goal: Goal::AtLeast(0.8),
    p99_goal_us: Some(5_000),
    record_baseline_p99: false,
    fsync_latency_factor: Some(3.0),
};

pub async fn setup(ctx: &Ctx<'_>) -> Result<Bench> {
    // Both servers issue and accept tokens with one `iss`.
    let config = Config {
        public_url: PUBLIC_URL.to_owned(),
        ..Config::default()
    };
    let mut local = Local::start(SPEC.subject, config, ctx.args.data_dir.as_deref()).await?;
    setup::check_bonafide(&local.http, &local.base, &local.token, true).await?;
    let body = setup::verify_body(&local.token)?;
    // The same registry (same store, keys, token) with verify decisions not audited,
    // as `serve --no-audit-verify`. Bound after the setup so it loads the signing key
    // the first server made. Its checkpoint signer is idle: on its own, with
    // audit_verify off, the log would not grow under this load.
    let config = Config {
        audit_verify: false,
        checkpoint_interval: Duration::from_secs(3600),
        ..local.config.clone()
    };
    let (addr, handle, _) =
        setup::spawn_bonafide(SPEC.baseline, config, Arc::clone(&local.store)).await?;
    local.servers.running.insert(0, handle);
    setup::check_bonafide(&local.http, &format!("http://{addr}"), &local.token, false).await?;
    let targets = vec![
        Target {
            expect_audit_index: Some(false),
            ..Target::new(SPEC.baseline, addr, "/v1/verify", body.clone())
        },
        Target {
            expect_audit_index: Some(true),
            ..Target::new(SPEC.subject, local.addr, "/v1/verify", body)
        },
    ];
    Ok(Bench::new(
        SPEC,
        targets,
        local.servers,
        format!(
            "both POST /v1/verify {{token, scopes_requested:[\"{REQUESTED}\"]}}, must be valid \
             and allowed; audited: Config {{ audit_verify: true }} (default; answers carry the \
             durable audit_index), unaudited: audit_verify: false (serve --no-audit-verify; no \
             audit_index)"
        ),
    ))
}
