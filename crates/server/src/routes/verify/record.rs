//! Writing a verify decision: its audit entry (through the group committer), and for
//! `POST /v1/verify` the ledger batch (idempotency, single-use proofs, budget,
//! receipt) and the answer's bytes.

use super::*;

/// One verify decision, for the audit log.
pub(super) struct Decided<'a> {
    token: &'a str,
    subject: Option<(&'a AgentId, &'a TokenId)>,
    allowed: bool,
    reasons: &'a [String],
    scopes: &'a [String],
    target: Option<&'a str>,
}

/// The reasons and the (agent, token id) of a token check, for its audit entry.
pub(super) fn facts(
    checked: &Result<VerifiedToken, Denied>,
) -> (Vec<String>, Option<(&AgentId, &TokenId)>) {
    match checked {
        Ok(v) => (Vec::new(), Some((&v.claims.sub, &v.claims.jti))),
        Err(d) => (
            std::iter::once(d.error.code().as_str())
                .chain(second_reason(&d.error))
                .map(str::to_owned)
                .collect(),
            d.subject.as_ref().map(|(a, j)| (a, j)),
        ),
    }
}

/// Steps 1–5 with no audience or scopes asked (GET verify, introspection), and the
/// decision written to the audit log before anything is answered.
///
/// With `proof_required` (GET verify, which cannot carry a proof), a token bound to
/// the agent's key is `PROOF_REQUIRED`: nothing shows its bearer holds the key.
/// Introspection leaves that to its caller (RFC 9449 §6.2: it answers `cnf`).
pub(super) async fn check_and_audit(
    state: &AppState,
    caller: &Caller,
    text: &str,
    audience: Option<&str>,
    now_ms: i64,
    proof_required: bool,
    counting: &crate::quota::Counting,
) -> Result<TokenCheck, ApiError> {
    let rule = audience_rule(state, caller, audience).await?;
    let checked = match check_token(state, text, rule, now_ms).await?.token() {
        Ok(v) if proof_required && v.claims.cnf.is_some() => Err(Denied {
            error: TokenError::ProofRequired,
            subject: Some((v.claims.sub, v.claims.jti)),
        }),
        other => other,
    };
    let agent = match &checked {
        Ok(v) => Some(&v.claims.sub),
        Err(d) => d.subject.as_ref().map(|(agent, _)| agent),
    };
    crate::ratelimit::charge_token_issuer(state, caller, agent).await?;
    let (reasons, subject) = facts(&checked);
    if subject.is_none() {
        // Concerns no agent: counted, never written to the permanent log.
        state.count_unverifiable(
            reasons
                .first()
                .map_or(ErrorCode::TokenInvalid.as_str(), String::as_str),
        );
        counting.alone(state).await?;
        return Ok(checked.into());
    }
    audit_decision(
        state,
        caller,
        now_ms,
        counting,
        Decided {
            token: text,
            subject,
            allowed: checked.is_ok(),
            reasons: &reasons,
            scopes: &[],
            target: None,
        },
    )
    .await?;
    Ok(checked.into())
}

/// Writes a verify decision to the audit log, counted against its quota in the same
/// transaction; its index once durable, or `None` when verify decisions are not
/// audited ([`crate::Config::audit_verify`]: then it is counted on its own).
pub(super) async fn audit_decision(
    state: &AppState,
    caller: &Caller,
    now_ms: i64,
    counting: &crate::quota::Counting,
    d: Decided<'_>,
) -> Result<Option<u64>, ApiError> {
    if !state.config.audit_verify {
        counting.alone(state).await?;
        return Ok(None);
    }
    let mut entry = AuditEntry::new(EventType::Verify, now_ms, caller.actor());
    entry.agent = d.subject.map(|(agent, _)| agent.to_string());
    entry.jti = d.subject.map(|(_, jti)| jti.to_string());
    entry.token_sha256 = Some(token_sha256(d.token));
    entry.decision = Some(if d.allowed {
        Decision::Allow
    } else {
        Decision::Deny
    });
    entry.reasons = d.reasons.to_vec();
    entry.scopes = d.scopes.to_vec();
    entry.target = d.target.map(str::to_owned);
    entry.request_id = Some(crate::request_id::current().to_string());
    let record = crate::audit::record(&entry, d.subject.map(|(agent, _)| agent), None)
        .map_err(|e| {
            ApiError::invalid(format!(
                "this request cannot be audited: {e}; send fewer or shorter `scopes_requested`, or a shorter audience"
            ))
        })?;
    match state
        .audit
        .append_counted(record, None, counting.claim())
        .await?
    {
        crate::audit::Appended::At { index, quota } => {
            counting.granted(state, quota);
            Ok(Some(index))
        }
        crate::audit::Appended::QuotaExceeded { used } => Err(counting.exceeded(state, used)),
        crate::audit::Appended::NonceReplayed => Err(ApiError::internal(
            "a verify decision that claims no single-use value was refused as a replay",
        )),
    }
}

pub(super) fn json_response(status: StatusCode, body: Vec<u8>, replayed: bool) -> Response {
    let mut res = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if replayed {
        res.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    res
}

/// Counts a decision answered (not a replayed one) in the metrics.
fn count_decision(state: &AppState, deciding: &Deciding, o: &crate::decision::Outcome) {
    let (outcome, code) = match &deciding.checked {
        Checked::Invalid { code, .. } => ("invalid", Some(code.as_str())),
        Checked::Valid(_) if o.allowed => ("allowed", None),
        Checked::Valid(_) => ("denied", o.reasons.first().map(String::as_str)),
    };
    state.metrics.observe_decision(outcome, code);
}

/// Records a decision (budget charge, idempotency record, receipt, audit entry and
/// the proof's single-use value, together) and answers it.
///
/// Idempotency remembers the spend, nothing else: only a decision about a token that
/// checked out (signature, status, keys, proof: all decided afresh on every request)
/// makes or replays an idempotency record. A retry whose token or proof no longer
/// checks out is decided as the denial it is, and a request with another proof (or
/// none) is another request: the same key for it is a conflict.
pub(super) async fn record_decision(
    state: &AppState,
    deciding: Deciding,
    nonce: Option<NonceClaim>,
    replayed_kind: &'static str,
    audited: bool,
    proof_sha256: Option<&str>,
    counting: &crate::quota::Counting,
) -> Result<Response, ApiError> {
    let budget = deciding.budget();
    let idempotency = match (
        &deciding.checked,
        &deciding.receiver,
        &deciding.asked.idempotency_key,
    ) {
        (Checked::Valid(_), Some(receiver), Some(key)) => Some(IdempotencyClaim {
            receiver_id: receiver.clone(),
            key: key.clone(),
            // The same key must come with the same token, request and proof.
            request_sha256: bonafide_core::sha256(
                format!(
                    "{}\n{}\n{}",
                    deciding.token_sha256,
                    deciding.asked.request_sha256,
                    proof_sha256.unwrap_or("-")
                )
                .as_bytes(),
            ),
        }),
        _ => None,
    };
    if !audited && budget.is_none() && idempotency.is_none() && nonce.is_none() {
        // Nothing to write: counted on its own.
        counting.alone(state).await?;
        let o = deciding.outcome(None);
        count_decision(state, &deciding, &o);
        let body = serde_json::to_vec(&deciding.response(&o, None))
            .map_err(|e| ApiError::internal(e.to_string()))?;
        return Ok(json_response(StatusCode::OK, body, false));
    }
    // Fail here, with a clear 422, rather than inside the store's transaction: the
    // entry as decided with nothing spent, made once. Without a budget it is the
    // entry the store writes (handed to `decided`); with one, the real spending can
    // only add `LIMIT_PER_PERIOD` (known inside the transaction), so size for it.
    let cannot_audit = |e: bonafide_core::audit::AuditError| {
        ApiError::invalid(format!(
            "this request cannot be audited: {e}; send fewer or shorter `scopes_requested`, or a shorter audience, resource or idempotency key"
        ))
    };
    let mut unspent = None;
    if audited {
        if budget.is_none() {
            unspent = Some(deciding.unspent_record().map_err(cannot_audit)?);
        } else {
            let mut probe = deciding.audit_entry(&deciding.outcome(None));
            if !probe.reasons.iter().any(|r| r == LIMIT_PER_PERIOD) {
                probe.reasons.push(LIMIT_PER_PERIOD.to_owned());
            }
            crate::audit::record(&probe, None, None).map_err(cannot_audit)?;
        }
    }
    let deciding = Arc::new(deciding);
    let inner = Arc::clone(&deciding);
    let item = DecisionItem {
        nonce,
        budget,
        idempotency,
        quota: counting.claim(),
        // The store runs this inside the committer's transaction: a panic must not
        // unwind through the committer (it would stop every later decision).
        decide: Box::new(move |spent| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                inner.decided(spent, audited, unspent.as_ref())
            }))
            .unwrap_or_else(|_| {
                Err(bonafide_store::StoreError::Backend(
                    "the decision panicked".into(),
                ))
            })
        }),
    };
    match state.audit.decide(item).await? {
        DecisionOutcome::Recorded {
            audit_index,
            spent_before,
            quota,
        } => {
            counting.granted(state, quota);
            let o = deciding.outcome(spent_before);
            count_decision(state, &deciding, &o);
            if let Some(amount) = o.charge {
                tracing::info!(
                    receipt_id = ?deciding.receipt_id.as_ref().map(ToString::to_string),
                    %amount,
                    "budget charged"
                );
            }
            let body = serde_json::to_vec(&deciding.response(&o, audit_index))
                .map_err(|e| ApiError::internal(e.to_string()))?;
            Ok(json_response(StatusCode::OK, body, false))
        }
        DecisionOutcome::Replay {
            answer,
            audit_index,
        } => {
            let mut first: Value = serde_json::from_slice(&answer)
                .map_err(|e| ApiError::internal(format!("stored answer: {e}")))?;
            if let (Some(obj), Some(i)) = (first.as_object_mut(), audit_index) {
                obj.insert("audit_index".into(), Value::from(i));
            }
            let body = serde_json::to_vec(&first).map_err(|e| ApiError::internal(e.to_string()))?;
            Ok(json_response(StatusCode::OK, body, true))
        }
        DecisionOutcome::QuotaExceeded { used } => Err(counting.exceeded(state, used)),
        DecisionOutcome::IdempotencyConflict => Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::IdempotencyConflict,
            "this `idempotency_key` was already used for a different request (another token, action, resource, amount, currency, audience or scopes): use a new key",
        )),
        DecisionOutcome::NonceReplayed => {
            // The proof was used before: the same request decided again as a replay
            // (nothing was written for it), without a proof to claim.
            let mut replay = Deciding::clone(&deciding);
            let subject = match &replay.checked {
                Checked::Valid(v) => Some((v.agent.clone(), v.jti.clone())),
                Checked::Invalid { subject, .. } => subject.clone(),
            };
            let error = TokenError::Replay(replayed_kind);
            replay.checked = Checked::Invalid {
                code: ErrorCode::from(&error),
                second_reason: None,
                message: error.to_string(),
                subject,
            };
            replay.trust_level = None;
            replay.issuer_domain = None;
            Box::pin(record_decision(
                state,
                replay,
                None,
                replayed_kind,
                audited,
                proof_sha256,
                counting,
            ))
            .await
        }
    }
}
