//! `--compare-issuer-signed` (issue 6): ONE real server in the default configuration
//! (EdDSA registry key), an issuer with an agent and an Ed25519 key of its own
//! registered with `POST /v1/issuer/keys` (generated here; the private half stays in
//! this process). The baseline `registry-signed` verifies the agent's registry token;
//! the subject `issuer-signed` a token for the same agent the harness signs with the
//! issuer's key (`iss` = the issuer id, same scopes, same expiry). Goal: cost ≤ 1.05×,
//! cost = registry-signed / issuer-signed throughput. `--unaudited` runs the server
//! with `audit_verify: false` (measurement only).

use anyhow::{Context, Result, anyhow, ensure};
use bonafide_core::b64;
use bonafide_core::ids::TokenId;
use bonafide_core::keys::{Algorithm, SigningKey};
use bonafide_core::token::{AgentClaims, AgentInfo};
use bonafide_server::Config;
use bytes::Bytes;
use serde::Serialize;
use serde_json::json;

use crate::load::Target;
use crate::pair::{Bench, Ctx};
use crate::report::{Goal, Section, Spec};
use crate::setup::{self, GRANTED, ISSUER_NAME, Local, REQUESTED, call};

const REGISTRY_SIGNED: &str = "registry-signed";
const ISSUER_SIGNED: &str = "issuer-signed";

pub const SPEC: Spec = Spec {
    baseline: REGISTRY_SIGNED,
    subject: ISSUER_SIGNED,
    title: "POST /v1/verify of an issuer-signed token vs a registry-signed one (same agent, \
            same server)",
    goal: Goal::CostAtMost(1.05),
    p99_goal_us: None,
    record_baseline_p99: false,
    fsync_latency_factor: None,
};

/// What the two tokens are.
#[derive(Debug, Clone, Serialize)]
struct SignedPair {
    /// Length of the registry-signed token, bytes.
    registry_signed_bytes: usize,
    /// Length of the issuer-signed token, bytes.
    issuer_signed_bytes: usize,
    /// `kid` of the registry's signing key (its token's header).
    registry_kid: String,
    /// `kid` of the issuer's registered key (RFC 7638 thumbprint).
    issuer_kid: String,
    /// The issuer id: the issuer-signed token's `iss`.
    issuer_id: String,
    /// The agent both tokens are for.
    agent_id: String,
    /// Whether the server audits verify decisions (false with `--unaudited`).
    audit_verify: bool,
}

pub async fn setup(ctx: &Ctx<'_>) -> Result<Bench> {
    // Default: every verify decision is audited. `--unaudited` (measurement only)
    // turns that off.
    let config = Config {
        audit_verify: !ctx.args.unaudited,
        ..Config::default()
    };
    let local = Local::start(SPEC.subject, config, ctx.args.data_dir.as_deref()).await?;
    let audited = local.config.audit_verify;
    let (http, base) = (&local.http, &local.base);
    setup::check_bonafide(http, base, &local.token, audited).await?;
    // The issuer's own Ed25519 key: the private half stays in this process, the public
    // JWK is registered over HTTP.
    let signing = SigningKey::generate(Algorithm::EdDSA)
        .map_err(|e| anyhow!("generating the issuer's Ed25519 key: {e}"))?;
    // With the proof of possession the registry requires: the key signs
    // `bonafide-key-proof+jwt` for this issuer at this registry.
    let proof = bonafide_core::key_proof::sign(
        &signing,
        &bonafide_core::key_proof::KeyProofClaims {
            iss: local.issuer_id.clone(),
            aud: local.state.config.public_url.clone(),
            iat: setup::now_s(),
            jkt: signing.kid().to_owned(),
            jti: None,
        },
    )
    .map_err(|e| anyhow!("signing the key proof: {e}"))?;
    let added = call(
        http,
        &format!("{base}/v1/issuer/keys"),
        Some(&local.issuer_key),
        Some(json!({ "jwk": signing.verifying_key().jwk(), "proof": proof })),
        201,
    )
    .await?;
    ensure!(
        added["kid"] == signing.kid() && added["alg"] == "EdDSA",
        "POST /v1/issuer/keys answered another kid or alg than the key's ({}, EdDSA): {added}",
        signing.kid()
    );
    let token = &local.token;
    let issuer_token = issuer_signed_token(&signing, token, &local.issuer_id, &local.agent_id)?;
    // One checked request of each through the real endpoint before loading: both
    // valid and allowed, for the same agent, shown with the issuer's registered name.
    for (what, t) in [(REGISTRY_SIGNED, token), (ISSUER_SIGNED, &issuer_token)] {
        let answer = call(
            http,
            &format!("{base}/v1/verify"),
            None,
            Some(json!({"token": t, "scopes_requested": [REQUESTED]})),
            200,
        )
        .await?;
        ensure!(
            answer["valid"] == true && answer["allowed"] == true,
            "{what}: the check request was not valid and allowed: {answer}"
        );
        ensure!(
            answer["agent"]["id"] == local.agent_id.as_str()
                && answer["agent"]["issuer"] == ISSUER_NAME,
            "{what}: the answer is not about agent {} of {ISSUER_NAME}: {answer}",
            local.agent_id
        );
        ensure!(
            answer["audit_index"].is_u64() == audited,
            "{what}: `audit_index` {} but verify decisions are {}audited: {answer}",
            if answer["audit_index"].is_u64() {
                "present"
            } else {
                "absent"
            },
            if audited { "" } else { "not " }
        );
    }
    let pair = SignedPair {
        registry_signed_bytes: token.len(),
        issuer_signed_bytes: issuer_token.len(),
        registry_kid: setup::jws_header(token)
            .and_then(|h| h["kid"].as_str().map(str::to_owned))
            .ok_or_else(|| anyhow!("the token's header has no `kid`"))?,
        issuer_kid: signing.kid().to_owned(),
        issuer_id: local.issuer_id.clone(),
        agent_id: local.agent_id.clone(),
        audit_verify: audited,
    };
    let targets = vec![
        Target {
            expect_audit_index: Some(audited),
            ..Target::new(
                REGISTRY_SIGNED,
                local.addr,
                "/v1/verify",
                setup::verify_body(token)?,
            )
        },
        Target {
            expect_audit_index: Some(audited),
            ..Target::new(
                ISSUER_SIGNED,
                local.addr,
                "/v1/verify",
                Bytes::from(
                    serde_json::to_vec(&json!({
                        "token": issuer_token,
                        "scopes_requested": [REQUESTED],
                    }))
                    .context("encoding the issuer-signed request")?,
                ),
            )
        },
    ];
    let audit = if audited {
        "verify decisions audited (default; answers carry the durable audit_index)"
    } else {
        "verify decisions NOT audited (--unaudited: Config { audit_verify: false }, \
         measurement only; no audit_index)"
    };
    let line = format!(
        "tokens:   agent {}; registry-signed {} bytes (kid {}); issuer-signed {} bytes (iss {}, \
         kid {}: an Ed25519 key generated by the harness, public JWK registered with POST \
         /v1/issuer/keys)",
        pair.agent_id,
        pair.registry_signed_bytes,
        pair.registry_kid,
        pair.issuer_signed_bytes,
        pair.issuer_id,
        pair.issuer_kid
    );
    let mut bench = Bench::new(
        SPEC,
        targets,
        local.servers,
        format!(
            "both POST /v1/verify {{token, scopes_requested:[\"{REQUESTED}\"]}} to one server, \
             EdDSA registry key, {audit}; must be valid and allowed"
        ),
    );
    bench.sections.push(Section {
        header: vec![line],
        ..Section::json("tokens", &pair)?
    });
    Ok(bench)
}

/// A token for the agent of `registry_token`, signed with the issuer's own key: `iss`
/// and `agent.issuer` the issuer id, a fresh `jti`, `iat`/`nbf` now, and the registry
/// token's agent name, description, scopes and expiry (so both tokens carry the same
/// grant for the same time; any other claim is the registry token's too).
fn issuer_signed_token(
    key: &SigningKey,
    registry_token: &str,
    issuer_id: &str,
    agent_id: &str,
) -> Result<String> {
    let payload = registry_token
        .split('.')
        .nth(1)
        .ok_or_else(|| anyhow!("the registry's token is not a compact JWS"))?;
    let registry: AgentClaims = serde_json::from_slice(
        &b64::decode(payload).context("the registry's token payload is not base64url")?,
    )
    .context("the registry's token payload is not agent claims")?;
    ensure!(
        registry.sub.as_str() == agent_id,
        "the registry's token is for {}, not the registered agent {agent_id}",
        registry.sub
    );
    let mut random = [0u8; 16];
    aws_lc_rs::rand::fill(&mut random).map_err(|_| anyhow!("no randomness for the jti"))?;
    let now = setup::now_s();
    let claims = AgentClaims {
        iss: issuer_id.to_owned(),
        iat: now,
        nbf: Some(now),
        jti: TokenId::from_random(random),
        agent: AgentInfo {
            issuer: issuer_id.to_owned(),
            scopes: GRANTED.map(str::to_owned).to_vec(),
            ..registry.agent
        },
        scope: Some(GRANTED.join(" ")),
        ..registry
    };
    bonafide_core::token::sign(key, &claims).map_err(|e| anyhow!("signing the issuer's token: {e}"))
}
