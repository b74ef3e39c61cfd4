//! What a verify request may ask: its body and query, checked before anything is
//! read (audience, scopes, action, amount, proof), and who the caller verifies as.

use super::*;

/// The most bytes of a caller's `audience` (as registrations take them): the value
/// reaches the audit log and receipts.
pub(super) const MAX_AUDIENCE_BYTES: usize = 256;

/// Checks an `audience` a caller named (body, `target_resource` or `?audience=`):
/// 1 to 256 bytes, and none of the characters names refuse (controls, invisible,
/// bidirectional-control, line separators: it is shown in the audit log); 422
/// otherwise.
pub fn check_named_audience(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > MAX_AUDIENCE_BYTES {
        return Err(ApiError::invalid(format!(
            "`{field}` must be 1 to {MAX_AUDIENCE_BYTES} bytes"
        )));
    }
    if let Some(c) = bonafide_core::names::forbidden_char(value) {
        return Err(ApiError::invalid(format!(
            "`{field}` contains {}, which is not allowed",
            bonafide_core::names::describe(c)
        )));
    }
    Ok(())
}

/// Who the caller verifies as (issue 13, "a receiver verifies as itself"). With a
/// receiver key: one of the receiver's registered audiences; a named `audience`
/// must be one of them (403 `AUDIENCE_FORBIDDEN` otherwise), else any of them will
/// do. Without one: the audience the request names, or none, in which case a token
/// that carries `aud` is refused (RFC 7519 §4.1.3).
pub async fn audience_rule(
    state: &AppState,
    caller: &Caller,
    named: Option<&str>,
) -> Result<AudienceRule, ApiError> {
    if let Some(n) = named {
        check_named_audience("audience", n)?;
    }
    let Caller::Receiver(id) = caller else {
        return Ok(AudienceRule::from(named.map(str::to_owned)));
    };
    let own = match ReceiverId::try_from(id.as_str()) {
        Ok(id) => state.receiver_audiences(&id).await?,
        Err(_) => None,
    };
    let own =
        own.ok_or_else(|| ApiError::unauthorized("this receiver key's receiver no longer exists"))?;
    match named {
        None => Ok(AudienceRule::AnyOf(own.to_vec())),
        Some(n) if own.iter().any(|a| a == n) => Ok(AudienceRule::one(n)),
        Some(n) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::AudienceForbidden,
            format!(
                "`{}` is not one of this receiver's audiences ({}): a receiver verifies as itself; register the audience with PUT /v1/receivers/{{id}}/audiences",
                n.chars().take(64).collect::<String>(),
                own.join(", ")
            ),
        )),
    }
}

/// `?audience=` of `GET /v1/verify/{token}` and `POST /v1/introspect`: who the
/// caller verifies as (see [`audience_rule`]).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AudienceQuery {
    /// One of the token's audiences (`aud`): required for a token that has them.
    #[serde(default)]
    #[param(value_type = Option<crate::openapi::values::NamedAudience>)]
    pub audience: Option<String>,
}

/// `resource` of a verify request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceInput {
    /// Resource type (`merchant`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Resource id (`acct/12/sub`).
    pub id: String,
}

/// `POST /v1/verify` and `POST /v1/simulate` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The agent token.
    pub token: String,
    /// The receiver's identifier; a token with `aud` must name it.
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::values::NamedAudience>)]
    pub audience: Option<String>,
    /// The receiver's service (KairosAI); used as the audience when `audience` is absent.
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::values::NamedAudience>)]
    pub target_resource: Option<String>,
    /// Scopes this request needs; all must be granted for `allowed`.
    #[serde(default)]
    pub scopes_requested: Option<Vec<String>>,
    /// The action the agent asks to take (`payments.send`), checked against the
    /// token's consent policy.
    #[serde(default)]
    pub action: Option<String>,
    /// What it acts on.
    #[serde(default)]
    pub resource: Option<ResourceInput>,
    /// Amount to spend: an exact decimal as a string (`"12.50"`) or a JSON number
    /// (`12.50`, read from its digits, never through a binary float). Needs
    /// `currency`, `action` and a receiver key. Kept as the text the client sent, so
    /// a number's digits are not lost to a float.
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::values::Amount>)]
    pub amount: Option<Box<serde_json::value::RawValue>>,
    /// ISO 4217 code of `amount`; only with `amount`.
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::values::Currency>)]
    pub currency: Option<Value>,
    /// Makes a retried request return the first decision without spending twice
    /// (scoped to the receiver; needs a receiver key). 1 to 255 visible ASCII characters.
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::values::IdempotencyKey>)]
    pub idempotency_key: Option<String>,
    /// Proof of possession the agent sent with its request, for a token bound to
    /// its key (`cnf.jkt`): required for such a token (`PROOF_REQUIRED`), refused
    /// for any other (422 `PROOF_NOT_APPLICABLE`). See [`crate::proof`].
    #[serde(default)]
    pub proof: Option<ProofInput>,
}

pub(super) fn invalid_field(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

/// Checks the request members (before the token): 422 for bad values, 401 when a
/// spend or an idempotency key comes without a receiver key.
pub(super) fn check_request(req: &VerifyRequest, caller: &Caller) -> Result<Asked, ApiError> {
    if let Some(proof) = &req.proof {
        proof::check_shape(proof)?;
    }
    let scopes = req.scopes_requested.clone().unwrap_or_default();
    if scopes.len() > MAX_SCOPES_REQUESTED {
        return Err(ApiError::invalid(format!(
            "at most {MAX_SCOPES_REQUESTED} `scopes_requested`"
        )));
    }
    // Everything a caller sends that reaches the audit log or a receipt is bounded
    // as registration bounds it (issue 13: no kilobytes in the log for free).
    if let Some(s) = scopes
        .iter()
        .find(|s| s.is_empty() || s.len() > MAX_SCOPE_BYTES || s.chars().any(char::is_control))
    {
        return Err(ApiError::invalid(format!(
            "each of `scopes_requested` must be 1 to {MAX_SCOPE_BYTES} bytes without control characters (got {} bytes)",
            s.len()
        )));
    }
    if let Some(a) = &req.audience {
        check_named_audience("audience", a)?;
    }
    if let Some(t) = &req.target_resource {
        check_named_audience("target_resource", t)?;
    }
    // One audience per request: two that differ would let one be checked and the
    // other be recorded.
    if let (Some(a), Some(t)) = (&req.audience, &req.target_resource)
        && a != t
    {
        return Err(ApiError::invalid(
            "`audience` and `target_resource` name the same thing: send one (or the same value)",
        ));
    }
    // Values are decided and bound into the receipt exactly as written (never
    // trimmed), so a receipt always matches the request that was sent.
    let name_like = |field: &str, v: &str| -> Result<String, ApiError> {
        let ok = !v.is_empty()
            && v.len() <= 128
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_:.-".contains(&b));
        if !ok {
            return Err(ApiError::invalid(format!(
                "`{field}` must be 1 to 128 characters of [a-zA-Z0-9_:.-]"
            )));
        }
        Ok(v.to_owned())
    };
    let action = req
        .action
        .as_deref()
        .map(|a| name_like("action", a))
        .transpose()?;
    let resource = match &req.resource {
        None => None,
        Some(r) => {
            let kind = name_like("resource.type", &r.kind)?;
            if r.id.is_empty() || r.id.len() > 256 || r.id.chars().any(char::is_control) {
                return Err(ApiError::invalid(
                    "`resource.id` must be 1 to 256 bytes without control characters",
                ));
            }
            Some((kind, r.id.clone()))
        }
    };
    let money = match (&req.amount, &req.currency) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(invalid_field(
                ErrorCode::AmountInvalid,
                "`amount` needs a `currency` (ISO 4217, such as `USD`)",
            ));
        }
        (None, Some(_)) => {
            return Err(invalid_field(
                ErrorCode::AmountInvalid,
                "`currency` needs an `amount`",
            ));
        }
        (Some(a), Some(c)) => Some(
            money_from_literal(a.get(), c)
                .map_err(|e| invalid_field(ErrorCode::AmountInvalid, e.to_string()))?,
        ),
    };
    if (money.is_some() || resource.is_some()) && action.is_none() {
        return Err(ApiError::invalid(
            "`amount` and `resource` describe an `action`: name the action too",
        ));
    }
    let idempotency_key = match &req.idempotency_key {
        None => None,
        Some(k) => {
            if k.is_empty() || k.len() > 255 || !k.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ApiError::invalid(
                    "`idempotency_key` must be 1 to 255 visible ASCII characters",
                ));
            }
            Some(k.clone())
        }
    };
    if !matches!(caller, Caller::Receiver(_)) {
        let what = if money.is_some() {
            "a request with an `amount` spends a budget"
        } else if idempotency_key.is_some() {
            "`idempotency_key` is scoped to a receiver"
        } else {
            ""
        };
        if !what.is_empty() {
            // No key at all is a 401; another kind of key is a 403 (not yours to do).
            return Err(if *caller == Caller::Anonymous {
                ApiError::unauthorized(format!(
                    "{what}: send a receiver key (`bfk_rcv_…`) in `Authorization: Bearer …` or `X-API-Key`"
                ))
            } else {
                ApiError::forbidden(format!(
                    "{what}: it needs a receiver key (`bfk_rcv_…`), not an admin or issuer key"
                ))
            });
        }
    }
    let audience = req.audience.clone().or_else(|| req.target_resource.clone());
    let facts = RequestFacts {
        action: action.clone(),
        resource: resource.clone(),
        money,
        audience: audience.clone(),
        scopes_requested: scopes.clone(),
        idempotency_key: idempotency_key.clone(),
    };
    Ok(Asked {
        audience,
        scopes,
        action,
        resource,
        money,
        idempotency_key,
        request_sha256: facts.sha256_hex(),
    })
}
