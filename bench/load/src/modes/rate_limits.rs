//! `--compare-rate-limits`: two real servers in this process on ONE store (same signing
//! key, token and request, both audited): `unlimited` (`serve --rate-limits off`)
//! against `limited` (rate limits on, as `serve` starts by default, with the per-address
//! and per-issuer quotas raised so that no request of the run is refused: what is
//! measured is the cost of counting, the middleware, the issuer lookup and the leases
//! taken from the shared buckets in the store, not the refusals).

use std::sync::Arc;

use anyhow::{Result, anyhow};
use bonafide_server::Config;
use bonafide_server::ratelimit::RateLimits;

use crate::load::Target;
use crate::pair::{Bench, Ctx};
use crate::report::{Goal, Spec};
use crate::setup::{self, Local, PUBLIC_URL, REQUESTED};

pub const SPEC: Spec = Spec {
    baseline: "unlimited",
    subject: "limited",
    title: "POST /v1/verify with rate limits on vs off (same store, same token, both audited)",
    goal: Goal::AtLeast(0.95),
    p99_goal_us: None,
    record_baseline_p99: true,
    fsync_latency_factor: None,
};

/// The limits of the `limited` target: the seeds' defaults with the two buckets an
/// anonymous verify spends (its address, its token's issuer) raised to a billion a
/// minute, so none refuses.
pub fn limits() -> Result<RateLimits> {
    let mut limits = RateLimits::seeds();
    for a in ["ip=1000000000/min", "iss=1000000000/min"] {
        limits.apply(a).map_err(|e| anyhow!(e))?;
    }
    Ok(limits)
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
    let config = Config {
        rate_limits: limits()?,
        ..local.config.clone()
    };
    let (addr, handle, _) =
        setup::spawn_bonafide(SPEC.subject, config, Arc::clone(&local.store)).await?;
    local.servers.running.insert(0, handle);
    setup::check_bonafide(&local.http, &format!("http://{addr}"), &local.token, true).await?;
    let targets = vec![
        Target {
            expect_audit_index: Some(true),
            ..Target::new(SPEC.baseline, local.addr, "/v1/verify", body.clone())
        },
        Target {
            expect_audit_index: Some(true),
            ..Target::new(SPEC.subject, addr, "/v1/verify", body)
        },
    ];
    Ok(Bench::new(
        SPEC,
        targets,
        local.servers,
        format!(
            "both anonymous POST /v1/verify {{token, scopes_requested:[\"{REQUESTED}\"]}}, must be \
             valid, allowed and audited; limited: rate limits on ({}), so each request spends \
             its address's and its issuer's buckets (leases from the store's shared buckets); \
             unlimited: serve --rate-limits off",
            limits()?.describe()
        ),
    ))
}
