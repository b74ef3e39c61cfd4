//! Verify receipts: the signed record of what a decision approved or refused.

use std::sync::Arc;

use axum::extract::State;
use bonafide_core::ids::ReceiptId;
use bonafide_core::receipt::{self, ReceiptClaims};

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::state::AppState;
pub use bonafide_api::receipts::ReceiptView;

/// A receipt, for the receiver that asked for the decision (with its key) or the issuer
/// of the agent concerned. Anyone else gets 404, as for a missing one.
#[utoipa::path(get, path = "/v1/receipts/{id}", tag = "receiver",
    params(("id" = crate::openapi::values::ReceiptId, Path, description = "`rcp_…` (any other text is a 400)")),
    security((), ("api_key" = [])),
    responses((status = 200, body = ReceiptView), (status = 400), (status = 401), (status = 404)))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<ReceiptView>, ApiError> {
    let id = ReceiptId::try_from(id.as_str()).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let record = state
        .store
        .receipt(&id)
        .await?
        .ok_or_else(|| not_found(&state))?;
    let readable = match &caller {
        // The rule: the receiver that asked and the agent's issuer, nobody
        // else (an admin reads the decision in the audit log instead).
        Caller::Admin => false,
        Caller::Issuer(issuer) => record.issuer_id.as_ref() == Some(issuer),
        Caller::Receiver(receiver) => record
            .receiver_id
            .as_ref()
            .is_some_and(|r| r.as_str() == receiver),
        Caller::Anonymous => false,
    };
    if !readable {
        return Err(not_found(&state));
    }
    let mut stored: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&record.claims)
            .map_err(|e| ApiError::internal(format!("stored receipt {id}: {e}")))?;
    // Receipts stored before `sub` was a claim get it on read: it is always the
    // receipt's own id.
    stored
        .entry("sub")
        .or_insert_with(|| serde_json::Value::String(id.to_string()));
    let mut claims: ReceiptClaims = serde_json::from_value(serde_json::Value::Object(stored))
        .map_err(|e| ApiError::internal(format!("stored receipt {id}: {e}")))?;
    claims.audit_index = record.audit_index;
    // Ed25519 signatures are deterministic: every read gives the same JWS.
    let jws = receipt::sign(&state.receipt_key, &claims)?;
    Ok(ApiJson(ReceiptView {
        receipt_id: id.to_string(),
        jws,
        receipt: claims,
    }))
}

/// The one 404 for a receipt that is missing, purged, or not the caller's: the same
/// words in every case, so it never tells whether a receipt exists.
fn not_found(state: &AppState) -> ApiError {
    match state.config.receipt_retention {
        Some(kept) => ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            crate::error::ErrorCode::NotFound,
            format!(
                "receipt not found (receipts are kept for {}; the decision stays in the \
                 audit log)",
                crate::time::human_duration(kept)
            ),
        ),
        None => ApiError::not_found("receipt"),
    }
}
