//! The facts of one `POST /v1/verify` decision: the token check, proof of possession,
//! and the inputs of the policy's evaluation.

use super::*;

/// Steps 1–7 for a verify request, and the agent's issuer when known; with the
/// proof's single-use value to claim with the decision, when a proof held.
pub(super) async fn check_for_decision(
    state: &AppState,
    caller: &Caller,
    req: &VerifyRequest,
    asked: Asked,
    now: i64,
    receipt: bool,
) -> Result<(Deciding, Option<NonceClaim>), ApiError> {
    let mut nonce = None;
    let rule = audience_rule(state, caller, asked.audience.as_deref()).await?;
    let token = match check_token(state, &req.token, rule, now).await?.token() {
        // Step 6: proof of possession, for a token bound to the agent's key.
        Ok(v) => match proof::check(state, &v.claims, &req.token, req.proof.as_ref(), now).await? {
            Possession::Proven(claim) => {
                nonce = Some(claim);
                Ok(v)
            }
            Possession::Unbound => Ok(v),
            Possession::Refused(error) => Err(Denied {
                error,
                subject: Some((v.claims.sub, v.claims.jti)),
            }),
        },
        Err(d) => Err(d),
    };
    let agent = match &token {
        Ok(v) => Some(&v.claims.sub),
        Err(d) => d.subject.as_ref().map(|(agent, _)| agent),
    };
    crate::ratelimit::charge_token_issuer(state, caller, agent).await?;
    let checked = match token {
        Err(d) => Checked::Invalid {
            code: ErrorCode::from(&d.error),
            second_reason: second_reason(&d.error),
            message: d.error.to_string(),
            subject: d.subject,
        },
        Ok(v) => match state.policy_of(&v.claims) {
            Err(e) => Checked::Invalid {
                code: ErrorCode::from(&e),
                second_reason: None,
                message: e.to_string(),
                subject: Some((v.claims.sub, v.claims.jti)),
            },
            Ok(policy) => {
                let c = v.claims;
                // The bound key was just checked through the same cache.
                let key_expires_at_ms = match &c.cnf {
                    Some(cnf) => state
                        .agent_keys(bonafide_core::delegation::current_actor(&c))
                        .await?
                        .iter()
                        .find(|k| k.record.jkt == cnf.jkt)
                        .map(|k| k.record.expires_at_ms),
                    None => None,
                };
                let delegation = crate::delegation::chain_of(state, &c).await?;
                Checked::Valid(Box::new(ValidToken {
                    delegation,
                    key_expires_at_ms,
                    agent: c.sub,
                    jti: c.jti,
                    name: c.agent.name,
                    issuer_name: c.agent.issuer,
                    scopes: c.agent.scopes,
                    user: c.user,
                    exp: c.exp,
                    policy,
                }))
            }
        },
    };
    if let Checked::Valid(v) = &checked
        && asked.money.is_some()
        && v.policy.as_ref().and_then(|p| p.limits()).is_none()
    {
        return Err(invalid_field(
            ErrorCode::AmountNotAllowed,
            if v.policy.is_none() {
                "this token carries no consent policy, so it grants no spending: send no `amount`"
            } else {
                "this token's consent policy has no `limits`, so it grants no spending: send no `amount`"
            },
        ));
    }
    let subject = match &checked {
        Checked::Valid(v) => Some(&v.agent),
        Checked::Invalid { subject, .. } => subject.as_ref().map(|(a, _)| a),
    };
    let issuer_id = match subject {
        Some(agent) => state.issuer_of(agent).await?,
        None => None,
    };
    let issuer_domain = match (&checked, &issuer_id) {
        (Checked::Valid(_), Some(issuer)) => state.verified_domain(&state.snapshot(), issuer, now),
        _ => None,
    };
    let trust_level = match (&checked, &issuer_id) {
        (Checked::Valid(_), Some(_)) => Some(if issuer_domain.is_some() {
            "domain_verified"
        } else {
            "registered"
        }),
        _ => None,
    };
    // A token that did not verify concerns no agent: no receipt (issue 13).
    let receipt_id = if receipt && subject.is_some() {
        // Time-prefixed: a batch's receipts share index pages (see the constructor).
        let random = random16()?;
        let mut tail = [0u8; ReceiptId::TIMED_RANDOM_BYTES];
        tail.copy_from_slice(&random[..ReceiptId::TIMED_RANDOM_BYTES]);
        Some(ReceiptId::from_time_and_random(
            u64::try_from(now).unwrap_or(0),
            tail,
        ))
    } else {
        None
    };
    let receiver = match caller {
        Caller::Receiver(id) => ReceiverId::try_from(id.as_str()).ok(),
        _ => None,
    };
    let deciding = Deciding {
        now_ms: now,
        registry: state.config.public_url.clone(),
        did: subject.map(|a| state.agent_did(a.as_str())),
        actor: caller.actor(),
        receiver,
        request_id: crate::request_id::current().to_string(),
        token_sha256: token_sha256(&req.token),
        asked,
        checked,
        issuer_id,
        trust_level,
        issuer_domain,
        receipt_id,
    };
    Ok((deciding, nonce))
}
