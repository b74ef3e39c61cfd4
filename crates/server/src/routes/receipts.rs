//! Verify receipts: the signed record of what a decision approved or refused.

use std::sync::Arc;

use axum::extract::State;
use bonafide_core::audit::{Actor, AuditEntry};
use bonafide_core::ids::{ReceiptId, ReceiverId};
use bonafide_core::receipt::{self, ReceiptClaims};

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::state::AppState;
use crate::stored_receipt::{Stored, StoredReceipt};
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
    // Callers who read no receipt get the one 404 before anything is read (a pruned
    // one comes from the archive, whose errors would tell that the receipt exists).
    if matches!(caller, Caller::Admin | Caller::Anonymous) {
        return Err(not_found(&state));
    }
    let record = state
        .store
        .receipt(&id)
        .await?
        .ok_or_else(|| not_found(&state))?;
    let internal = |e: String| ApiError::internal(format!("stored receipt {id}: {e}"));
    // Who may read it (its agent's issuer, the receiver that asked) and its claims.
    let (issuer, receiver, mut claims): (_, _, ReceiptClaims) =
        match StoredReceipt::parse(&record.claims).map_err(internal)? {
            Stored::Full(mut stored) => {
                // Receipts stored before `sub` was a claim get it on read: it is always
                // the receipt's own id.
                stored
                    .entry("sub")
                    .or_insert_with(|| serde_json::Value::String(id.to_string()));
                let claims = serde_json::from_value(serde_json::Value::Object(stored))
                    .map_err(|e| internal(e.to_string()))?;
                (record.issuer_id, record.receiver_id, claims)
            }
            // The rest is in the decision's audit entry: the claims, the receiver (the
            // entry's actor) and the agent's issuer (the entry's owner).
            Stored::FromEntry(stored) => {
                let index = record
                    .audit_index
                    .ok_or_else(|| internal("no audit index".to_owned()))?;
                let row = state
                    .audit
                    .entries(index, index.saturating_add(1))
                    .await
                    .map_err(crate::routes::audit::read_error)?
                    .into_iter()
                    .next()
                    .ok_or_else(|| internal(format!("audit entry {index} is not stored")))?;
                let entry =
                    AuditEntry::from_canonical(&row.entry).map_err(|e| internal(e.to_string()))?;
                let receiver = match &entry.actor {
                    Actor::Receiver { id } => Some(
                        ReceiverId::try_from(id.as_str()).map_err(|e| internal(e.to_string()))?,
                    ),
                    _ => None,
                };
                let claims = stored
                    .claims(&id, receiver.clone(), &entry)
                    .map_err(internal)?;
                (row.owner, receiver, claims)
            }
        };
    let readable = match &caller {
        // The rule: the receiver that asked and the agent's issuer, nobody
        // else (an admin reads the decision in the audit log instead).
        Caller::Admin => false,
        Caller::Issuer(caller) => issuer.as_ref() == Some(caller),
        Caller::Receiver(caller) => receiver.as_ref().is_some_and(|r| r.as_str() == caller),
        Caller::Anonymous => false,
    };
    if !readable {
        return Err(not_found(&state));
    }
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
