//! `--compare-rate-limits`: two real servers in this process on ONE store (same signing
//! key, token, request and receiver key, both audited): `unlimited` (`serve
//! --rate-limits off --quotas off`) against `limited` (rate limits and quotas on, as
//! `serve` starts by default, with the key's rate limit and the organisation's plan
//! raised so that no request of the run is refused). The receiver key belongs to an
//! organisation, so every `limited` verify spends the key's bucket (leases from the
//! store's shared buckets), is counted against the organisation's monthly quota (one
//! store transaction per batch of verifications, before the decision), and is counted
//! in the usage table (in memory, flushed every `key_refresh`): what is measured is the
//! cost of the counting, not of refusals.

use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use bonafide_server::Config;
use bonafide_server::quota::{MAX_PLAN_LIMIT, Plans};
use bonafide_server::ratelimit::RateLimits;
use hyper::header::HeaderValue;
use serde_json::json;

use crate::load::Target;
use crate::pair::{Bench, Ctx};
use crate::report::{Goal, Spec};
use crate::setup::{self, Local, PUBLIC_URL, REQUESTED, call, str_member};

pub const SPEC: Spec = Spec {
    baseline: "unlimited",
    subject: "limited",
    title: "POST /v1/verify with rate limits and quota counting on vs off (same store, token and organisation's receiver key, both audited)",
    goal: Goal::AtLeast(0.95),
    p99_goal_us: None,
    record_baseline_p99: true,
    fsync_latency_factor: None,
};

/// The limits of the `limited` target: the seeds' defaults with the buckets a verify
/// may spend (its key's; an anonymous one's address and token issuer) raised to a
/// billion a minute, so none refuses.
pub fn limits() -> Result<RateLimits> {
    let mut limits = RateLimits::seeds();
    for a in [
        "api-key=1000000000/min",
        "ip=1000000000/min",
        "iss=1000000000/min",
    ] {
        limits.apply(a).map_err(|e| anyhow!(e))?;
    }
    Ok(limits)
}

/// The plans of the `limited` target: on, the default plan as large as a plan may be.
pub fn plans() -> Result<Plans> {
    let mut plans = Plans::seeds();
    plans
        .apply(&format!("free={MAX_PLAN_LIMIT}"))
        .map_err(|e| anyhow!(e))?;
    Ok(plans)
}

/// An organisation (admin key) owning a receiver: the receiver's key.
async fn org_receiver(local: &Local) -> Result<String> {
    let admin = local.admin.expose_secret();
    let org = call(
        &local.http,
        &format!("{}/v1/orgs", local.base),
        Some(admin),
        Some(json!({"name": "bench-org", "owner_email": "owner@bench.example"})),
        201,
    )
    .await?;
    let org_id = str_member(&org, "org_id")?;
    let receiver = call(
        &local.http,
        &format!("{}/v1/receivers", local.base),
        Some(admin),
        Some(json!({"name": "api.bench.example"})),
        201,
    )
    .await?;
    call(
        &local.http,
        &format!("{}/v1/orgs/{org_id}/adopt", local.base),
        Some(admin),
        Some(json!({"receiver_id": str_member(&receiver, "receiver_id")?})),
        200,
    )
    .await?;
    str_member(&receiver, "api_key")
}

pub async fn setup(ctx: &Ctx<'_>) -> Result<Bench> {
    let config = Config {
        public_url: PUBLIC_URL.to_owned(),
        rate_limits: RateLimits::off(),
        ..Config::default()
    };
    let mut local = Local::start(SPEC.baseline, config, ctx.args.data_dir.as_deref()).await?;
    setup::check_bonafide(&local.http, &local.base, &local.token, true).await?;
    let body = setup::verify_body(&local.token)?;
    // The same registry (same store, keys, token) with rate limits on. Its checkpoint
    // signer runs too: both servers' decisions grow the one log.
    let receiver_key = org_receiver(&local).await?;
    let key = HeaderValue::from_str(&receiver_key).context("the receiver key")?;
    let config = Config {
        rate_limits: limits()?,
        plans: plans()?,
        ..local.config.clone()
    };
    let (addr, handle, _) =
        setup::spawn_bonafide(SPEC.subject, config, Arc::clone(&local.store)).await?;
    local.servers.running.insert(0, handle);
    setup::check_bonafide(&local.http, &format!("http://{addr}"), &local.token, true).await?;
    // The quota counts on `limited` only: one verify with the key there, counted.
    let subject_base = format!("http://{addr}");
    call(
        &local.http,
        &format!("{subject_base}/v1/verify"),
        Some(&receiver_key),
        Some(json!({"token": local.token, "scopes_requested": [REQUESTED]})),
        200,
    )
    .await?;
    let usage = call(
        &local.http,
        &format!("{subject_base}/v1/usage"),
        Some(&receiver_key),
        None,
        200,
    )
    .await?;
    anyhow::ensure!(
        usage["quota"]["used"] == 1 && usage["quota"]["enabled"] == true,
        "the limited server did not count the verify against the quota: {usage}"
    );
    let targets = vec![
        Target {
            expect_audit_index: Some(true),
            api_key: Some(key.clone()),
            ..Target::new(SPEC.baseline, local.addr, "/v1/verify", body.clone())
        },
        Target {
            expect_audit_index: Some(true),
            api_key: Some(key),
            ..Target::new(SPEC.subject, addr, "/v1/verify", body)
        },
    ];
    Ok(Bench::new(
        SPEC,
        targets,
        local.servers,
        format!(
            "both POST /v1/verify {{token, scopes_requested:[\"{REQUESTED}\"]}} with the \
             X-API-Key of a receiver an organisation owns, must be valid, allowed and audited; \
             limited: rate limits on ({}), so each request spends its key's bucket (leases \
             from the store's shared buckets), and quotas on (plan free={MAX_PLAN_LIMIT}), so \
             each is counted against the organisation's monthly quota in the store before it \
             is decided, and in the usage table; unlimited: serve --rate-limits off --quotas off",
            limits()?.describe()
        ),
    ))
}
