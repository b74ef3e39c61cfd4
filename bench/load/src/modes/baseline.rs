//! Default mode: Bonafide's `POST /v1/verify` against its floor, a bare axum route
//! doing one Ed25519 verify of the same token with a pre-parsed key (the registry's,
//! from its JWKS). `--breakdown` adds two diagnostic endpoints on the same registry
//! state: `check` (the token pipeline behind a bare route) and `handler` (the real
//! handler without the middleware).

use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use aws_lc_rs::signature::ParsedPublicKey;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use bonafide_server::Config;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::load::Target;
use crate::pair::{Bench, Ctx};
use crate::report::{Goal, Spec};
use crate::setup::{self, Local, REQUESTED};

pub const SPEC: Spec = Spec {
    baseline: "baseline",
    subject: "bonafide",
    title: "POST /v1/verify vs a one-Ed25519-verify axum endpoint",
    goal: Goal::AtLeast(0.8),
    p99_goal_us: None,
    record_baseline_p99: false,
    fsync_latency_factor: None,
};

/// With `--unaudited` (measurement only): the same, the server as `serve
/// --no-audit-verify`.
pub const SPEC_UNAUDITED: Spec = Spec {
    subject: "unaudited",
    title: "POST /v1/verify, verify decisions NOT audited (--unaudited), vs a \
            one-Ed25519-verify axum endpoint",
    ..SPEC
};

pub async fn setup(ctx: &Ctx<'_>) -> Result<Bench> {
    let spec = if ctx.args.unaudited {
        SPEC_UNAUDITED
    } else {
        SPEC
    };
    let config = Config {
        audit_verify: !ctx.args.unaudited,
        ..Config::default()
    };
    let mut local = Local::start(spec.subject, config, ctx.args.data_dir.as_deref()).await?;
    // One checked verify through the real endpoint before loading it.
    setup::check_bonafide(
        &local.http,
        &local.base,
        &local.token,
        local.config.audit_verify,
    )
    .await?;
    ensure!(
        baseline_valid(&local.public_key, &local.token),
        "the JWKS key does not verify the registry's token"
    );
    let body = setup::verify_body(&local.token)?;
    let app = Router::new()
        .route("/verify", post(baseline_verify))
        .with_state(Arc::clone(&local.public_key));
    let (addr, handle) = setup::spawn_axum("baseline", app).await?;
    local.servers.running.push(handle);
    let mut targets = vec![Target {
        expect_allowed: false,
        ..Target::new(
            "baseline",
            addr,
            "/verify",
            Bytes::from(
                serde_json::to_vec(&json!({ "token": local.token }))
                    .context("encoding the baseline request")?,
            ),
        )
    }];
    if ctx.args.breakdown {
        let app = Router::new()
            .route("/v1/verify", post(check_verify))
            .with_state(Arc::clone(&local.state));
        let (addr, handle) = setup::spawn_axum("check", app).await?;
        local.servers.running.push(handle);
        targets.push(Target::new("check", addr, "/v1/verify", body.clone()));
        let app = Router::new()
            .route(
                "/v1/verify",
                post(bonafide_server::routes::verify::verify_post),
            )
            .with_state(Arc::clone(&local.state));
        let (addr, handle) = setup::spawn_axum("handler", app).await?;
        local.servers.running.push(handle);
        targets.push(Target::new("handler", addr, "/v1/verify", body.clone()));
    }
    targets.push(Target {
        expect_audit_index: Some(local.config.audit_verify),
        ..Target::new(spec.subject, local.addr, "/v1/verify", body)
    });
    Ok(Bench::new(
        spec,
        targets,
        local.servers,
        format!(
            "{} POST /v1/verify {{token, scopes_requested:[\"{REQUESTED}\"]}} (must be valid \
             and allowed; {}); baseline POST /verify {{token}} (must be valid)",
            spec.subject,
            if local.config.audit_verify {
                "Config { audit_verify: true }, the default: decisions audited"
            } else {
                "Config { audit_verify: false }, as serve --no-audit-verify: decisions not \
                 audited, no audit_index"
            }
        ),
    ))
}

#[derive(Debug, Deserialize)]
struct BaselineRequest {
    token: String,
}

#[derive(Debug, Serialize)]
struct BaselineAnswer {
    valid: bool,
}

/// The floor: split, base64url-decode the signature, one Ed25519 verify. No claims.
fn baseline_valid(key: &ParsedPublicKey, token: &str) -> bool {
    let Some((signing_input, sig_b64)) = token.rsplit_once('.') else {
        return false;
    };
    let Ok(sig) = bonafide_core::b64::decode(sig_b64) else {
        return false;
    };
    key.verify_sig(signing_input.as_bytes(), &sig).is_ok()
}

async fn baseline_verify(
    State(key): State<Arc<ParsedPublicKey>>,
    Json(req): Json<BaselineRequest>,
) -> Json<BaselineAnswer> {
    Json(BaselineAnswer {
        valid: baseline_valid(&key, &req.token),
    })
}

#[derive(Debug, Deserialize)]
struct CheckRequest {
    token: String,
    #[serde(default)]
    scopes_requested: Vec<String>,
}

#[derive(Debug, Serialize)]
struct CheckAnswer {
    valid: bool,
    allowed: bool,
}

/// Diagnostic (`--breakdown`): Bonafide's verification pipeline (token checks and the
/// in-memory revocation check) and the scope check, behind a bare route, with a
/// minimal answer.
async fn check_verify(
    State(state): State<Arc<bonafide_server::AppState>>,
    Json(req): Json<CheckRequest>,
) -> Json<CheckAnswer> {
    let now = bonafide_server::time::now_ms();
    match bonafide_server::token_check::check_token(
        &state,
        &req.token,
        bonafide_core::token::AudienceRule::Unnamed,
        now,
    )
    .await
    .map(bonafide_server::verdict::TokenCheck::token)
    {
        Ok(Ok(v)) => Json(CheckAnswer {
            valid: true,
            allowed: req
                .scopes_requested
                .iter()
                .all(|s| v.claims.agent.scopes.contains(s)),
        }),
        Ok(Err(_)) | Err(_) => Json(CheckAnswer {
            valid: false,
            allowed: false,
        }),
    }
}
