//! Verify receipts (`GET /v1/receipts/{id}`).

use bonafide_core::receipt::ReceiptClaims;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /v1/receipts/{id}` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReceiptView {
    /// `rcp_…`.
    pub receipt_id: String,
    /// The receipt: a compact JWS (`typ receipt+jwt`, EdDSA) signed by the registry's
    /// receipt key, which is in `/.well-known/receipt-jwks.json` (`receipt_jwks_uri`
    /// in discovery), never in the token JWKS.
    pub jws: String,
    /// Its claims, decoded (the same as inside `jws`).
    #[schema(value_type = Object)]
    pub receipt: ReceiptClaims,
}
